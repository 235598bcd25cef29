/*
 * config_test.c - the library built with one compile-time option set
 * (mk/config.mk builds this program once per configuration, each from
 * sync.c with its own -D flags, and runs them all in make test).  It
 * checks what the options promise: the limits hold where they are set,
 * compression is refused (not faked) without zstd, the omitted defaults
 * are really gone, and two replicas still sync in every configuration.
 */
#include "testutil.h"

#include "sess_util.h"

#include <pthread.h>

#ifndef SYNC_MAX_TABLES
#define CFG_MAX_TABLES 64
#else
#define CFG_MAX_TABLES SYNC_MAX_TABLES
#endif
#ifndef SYNC_MAX_COLUMNS
#define CFG_MAX_COLUMNS 64
#else
#define CFG_MAX_COLUMNS SYNC_MAX_COLUMNS
#endif

static void test_sync_works(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  uint8_t id[16];
  sync_session_opts co, so;
  unsigned i;
  (void)state;
  mu_site(id, 0xa1);
  mu_open(&a, "cfg-a.db", id, &now, 0);
  mu_site(id, 0xb2);
  mu_open(&b, "cfg-b.db", id, &now, 0);
  for (i = 0; i < 200; i++) {
    char key[32];
    snprintf(key, sizeof key, "k%04u", i);
    mu_put(i % 2 ? &a : &b, key, i, i / 3.0, "x");
  }
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.chunk_rows = so.chunk_rows = 17;
  co.max_message = so.max_message = 256;
  assert_int_equal(su_sync(&a, &b, &co, &so, NULL, NULL), 1);
  assert_true(mu_digest(&a) == mu_digest(&b));
  TU_U64(mu_count(&a), 200);
  mu_close(&a);
  mu_close(&b);
}

static void test_compression(void **state) {
  sync_codec_opts o;
  sync_encoder *e = NULL;
  (void)state;
  memset(&o, 0, sizeof o);
  o.level = 3;
#ifdef SYNC_OMIT_ZSTD
  TU_RC(sync_encoder_create(NULL, &o, &e), SYNC_ENOTSUP);
  assert_null(e);
#else
  TU_OK(sync_encoder_create(NULL, &o, &e));
  sync_encoder_free(e);
#endif
}

/* Range repair is there, or refused at once when left out. */
static void test_repair(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  uint8_t id[16];
  sync_session_opts co;
  sync_session *s = NULL;
  (void)state;
  mu_site(id, 0xa3);
  mu_open(&a, "cfg-a.db", id, &now, 0);
  mu_site(id, 0xb4);
  mu_open(&b, "cfg-b.db", id, &now, 0);
  mu_put(&a, "k", 1, 1.0, "x");
  memset(&co, 0, sizeof co);
  co.repair = 1;
#ifdef SYNC_OMIT_REPAIR
  TU_RC(sync_session_create(a.env, &co, &s), SYNC_ENOTSUP);
  assert_null(s);
#else
  assert_int_equal(su_sync(&b, &a, &co, NULL, NULL, NULL), 1);
  assert_true(mu_digest(&a) == mu_digest(&b));
#endif
  (void)s;
  mu_close(&a);
  mu_close(&b);
}

static void test_limits(void **state) {
  static sync_column_def cols[CFG_MAX_COLUMNS + 1];
  static char names[CFG_MAX_COLUMNS + 1][16];
  sync_table_def t;
  sync_env *env;
  unsigned i;
  (void)state;
  for (i = 0; i <= CFG_MAX_COLUMNS; i++) {
    snprintf(names[i], sizeof names[i], "c%u", i);
    cols[i].name = names[i];
    cols[i].type = SYNC_INTEGER;
    cols[i].flags = 0;
  }
  t.name = "t";
  t.key_type = SYNC_TEXT;
  t.columns = cols;
  t.ncolumns = CFG_MAX_COLUMNS + 1;
  TU_OK(sync_env_create(NULL, &env));
  assert_true(sync_env_set_schema(env, &t, 1) < 0); /* one column too many */
  t.ncolumns = CFG_MAX_COLUMNS;
  TU_OK(sync_env_set_schema(env, &t, 1));
  sync_env_close(env);
  {
    static sync_table_def many[CFG_MAX_TABLES + 1];
    static char tn[CFG_MAX_TABLES + 1][16];
    for (i = 0; i <= CFG_MAX_TABLES; i++) {
      snprintf(tn[i], sizeof tn[i], "t%u", i);
      many[i] = t;
      many[i].name = tn[i];
      many[i].ncolumns = 1;
    }
    TU_OK(sync_env_create(NULL, &env));
    assert_true(sync_env_set_schema(env, many, CFG_MAX_TABLES + 1) < 0);
    TU_OK(sync_env_set_schema(env, many, CFG_MAX_TABLES));
    sync_env_close(env);
  }
}

static void test_omitted_defaults(void **state) {
  sync_retry *r = NULL;
  sync_retry_opts ro;
  (void)state;
  memset(&ro, 0, sizeof ro);
#ifdef SYNC_OMIT_DEFAULT_SLEEP
  TU_RC(sync_retry_create(NULL, &ro, &r), SYNC_EINVAL);
  assert_null(r);
#else
  TU_OK(sync_retry_create(NULL, &ro, &r));
  sync_retry_free(r);
#endif
#ifdef SYNC_OMIT_DEFAULT_RANDOM
  {
    /* Without a random source there is no site id for a new file. */
    sync_env *env;
    tu_remove_db("cfg-r.db");
    TU_OK(sync_env_create(NULL, &env));
    TU_OK(sync_env_set_schema(env, mu_tables, 1));
    assert_true(sync_env_open(env, "cfg-r.db", 0) < 0);
    sync_env_close(env);
    tu_remove_db("cfg-r.db");
  }
#endif
}

/* Group commit: batches where threads are (default), a plain write
 * transaction under SYNC_OMIT_GROUP_COMMIT; in both, every commit of
 * two threads is there. */
typedef struct cfg_writer {
  sync_env *env;
  const char *name; /* key prefix */
} cfg_writer;

static void *cfg_group_writer(void *arg) {
  const cfg_writer *wr = (const cfg_writer *)arg;
  int i, rc = 0;
  for (i = 0; i < 20 && !rc; i++) {
    sync_txn *txn;
    sync_value v[MU_NCOLS];
    char key[32];
    snprintf(key, sizeof key, "%s%02d", wr->name, i);
    v[0] = sync_int(i);
    v[1] = sync_real(i);
    v[2] = sync_null();
    v[3] = sync_null();
    if ((rc = sync_txn_begin(wr->env, SYNC_TXN_GROUP, &txn))) break;
    if ((rc = sync_put(txn, 0, key, strlen(key), v, MU_NCOLS))) {
      sync_txn_abort(txn);
      break;
    }
    rc = sync_txn_commit(txn);
  }
  return (void *)(intptr_t)rc;
}

static void test_group_commit(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a;
  cfg_writer w[2];
  uint8_t id[16];
  pthread_t th[2];
  void *rc[2];
  (void)state;
  mu_site(id, 0xc3);
  mu_open(&a, "cfg-g.db", id, &now, 0);
  w[0].env = w[1].env = a.env;
  w[0].name = "ga";
  w[1].name = "gb";
  assert_int_equal(pthread_create(&th[0], NULL, cfg_group_writer, &w[0]), 0);
  assert_int_equal(pthread_create(&th[1], NULL, cfg_group_writer, &w[1]), 0);
  pthread_join(th[0], &rc[0]);
  pthread_join(th[1], &rc[1]);
  TU_OK((int)(intptr_t)rc[0]);
  TU_OK((int)(intptr_t)rc[1]);
  TU_U64(mu_count(&a), 40);
  mu_close(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sync_works),
      cmocka_unit_test(test_compression),
      cmocka_unit_test(test_repair),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_omitted_defaults),
      cmocka_unit_test(test_group_commit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
