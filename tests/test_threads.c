/*
 * test_threads.c - concurrent readers and one writer on one env.  The
 * writer keeps invariants in every transaction it commits: the balances
 * of all accounts sum to a constant, the meta row holds the number of
 * accounts, and the meta row's generation is the local version minus
 * one.  Readers running read transactions on other threads check every
 * snapshot they see against the invariants (no torn reads) and that a
 * snapshot does not move while they hold it.
 *
 * cmocka's assertions are not thread-safe: reader threads record
 * failures, and the main thread asserts on them after joining.
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define DB "t_threads.db"

#define NREADERS 4
#define NACCOUNTS 64
#define START_BALANCE 1000
#define TOTAL ((int64_t)NACCOUNTS * START_BALANCE)
#define NTXNS 100

static const sync_column_def acct_cols[] = {
    {"balance", SYNC_INTEGER, SYNC_COL_NOTNULL},
    {"note", SYNC_TEXT, 0},
};
static const sync_column_def meta_cols[] = {
    {"accounts", SYNC_INTEGER, 0},
    {"generation", SYNC_INTEGER, 0},
};
static const sync_table_def schema[] = {
    {"accounts", SYNC_INTEGER, acct_cols, 2},
    {"meta", SYNC_TEXT, meta_cols, 2},
};

typedef struct reader {
  pthread_t thread;
  sync_env *env;
  atomic_int *stop;
  atomic_int *ready; /* readers that finished a first snapshot */
  unsigned long snapshots, rows;
  atomic_int failed; /* read by the main thread while running */
  char why[256];
} reader;

static void reader_fail(reader *rd, const char *fmt, ...) {
  va_list ap;
  if (atomic_load(&rd->failed)) return;
  va_start(ap, fmt);
  vsnprintf(rd->why, sizeof rd->why, fmt, ap);
  va_end(ap);
  atomic_store(&rd->failed, 1);
}

/* Sum the balances with a cursor; returns 0 or an error code. */
static int scan(sync_txn *txn, int64_t *sum, uint64_t *rows) {
  sync_cursor *cur;
  sync_key k;
  sync_value v[2];
  int rc;
  *sum = 0;
  *rows = 0;
  if ((rc = sync_cursor_open(txn, 0, &cur))) return rc;
  while ((rc = sync_cursor_next(cur, &k, v, 2)) == 0) {
    if (k.len != 8 || v[0].type != SYNC_INTEGER) {
      rc = SYNC_ECORRUPT;
      break;
    }
    *sum += v[0].i;
    (*rows)++;
  }
  sync_cursor_close(cur);
  return rc == SYNC_NOTFOUND ? 0 : rc;
}

static void check_snapshot(reader *rd) {
  sync_txn *txn;
  sync_value meta[2];
  int64_t sum, sum2;
  uint64_t rows, rows2, count, ver;
  int rc;
  if ((rc = sync_txn_begin(rd->env, SYNC_TXN_RDONLY, &txn))) {
    reader_fail(rd, "begin: %s", sync_strerror(rc));
    return;
  }
  ver = sync_txn_version(txn);
  if ((rc = sync_get(txn, 1, "meta", 4, meta, 2))) {
    reader_fail(rd, "get meta: %s", sync_strerror(rc));
    goto out;
  }
  if ((rc = scan(txn, &sum, &rows))) {
    reader_fail(rd, "scan: %s", sync_strerror(rc));
    goto out;
  }
  if ((rc = sync_count(txn, 0, &count))) {
    reader_fail(rd, "count: %s", sync_strerror(rc));
    goto out;
  }
  if (sum != TOTAL)
    reader_fail(rd, "version %llu: balances sum to %lld, not %lld",
                (unsigned long long)ver, (long long)sum, (long long)TOTAL);
  if ((int64_t)rows != meta[0].i || count != rows)
    reader_fail(rd, "version %llu: %llu rows, count %llu, meta says %lld",
                (unsigned long long)ver, (unsigned long long)rows,
                (unsigned long long)count, (long long)meta[0].i);
  if ((uint64_t)meta[1].i + 1 != ver)
    reader_fail(rd, "version %llu holds generation %lld",
                (unsigned long long)ver, (long long)meta[1].i);
  /* The snapshot does not move while held. */
  sched_yield();
  if ((rc = scan(txn, &sum2, &rows2))) {
    reader_fail(rd, "rescan: %s", sync_strerror(rc));
    goto out;
  }
  if (sum2 != sum || rows2 != rows || sync_txn_version(txn) != ver)
    reader_fail(rd, "snapshot moved: %llu rows then %llu",
                (unsigned long long)rows, (unsigned long long)rows2);
  rd->snapshots++;
  rd->rows += rows;
out:
  sync_txn_abort(txn);
}

static void *reader_main(void *arg) {
  reader *rd = (reader *)arg;
  int64_t last_gen = -1;
  while (!rd->failed) {
    int stop = atomic_load(rd->stop);
    sync_txn *txn;
    sync_value meta[2];
    check_snapshot(rd);
    if (rd->snapshots == 1) atomic_fetch_add(rd->ready, 1);
    if (!sync_txn_begin(rd->env, SYNC_TXN_RDONLY, &txn)) {
      if (!sync_get(txn, 1, "meta", 4, meta, 2)) {
        if (meta[1].i < last_gen)
          reader_fail(rd, "generation went back from %lld to %lld",
                      (long long)last_gen, (long long)meta[1].i);
        last_gen = meta[1].i;
      }
      sync_txn_abort(txn);
    }
    if (stop) break;
  }
  return NULL;
}

static void key_of(int64_t id, unsigned char k[8]) { sync_key_int(id, k); }

static void write_meta(sync_txn *txn, int64_t accounts, int64_t gen) {
  sync_value v[2];
  v[0] = sync_int(accounts);
  v[1] = sync_int(gen);
  TU_OK(sync_put(txn, 1, "meta", 4, v, 2));
}

static int64_t balance(sync_txn *txn, int64_t id) {
  unsigned char k[8];
  sync_value v;
  key_of(id, k);
  TU_OK(sync_get(txn, 0, k, 8, &v, 1));
  return v.i;
}

static void set_balance(sync_txn *txn, int64_t id, int64_t b) {
  unsigned char k[8];
  sync_value v[2];
  key_of(id, k);
  v[0] = sync_int(b);
  v[1] = sync_text("acct", 4);
  TU_OK(sync_put(txn, 0, k, 8, v, 2));
}

static void test_readers_never_see_torn_snapshots(void **state) {
  sync_env *env;
  sync_txn *txn;
  reader rd[NREADERS];
  atomic_int stop, ready;
  tu_rng rng = {99};
  int64_t ids[NACCOUNTS * 2];
  int64_t next_id = 0;
  size_t nids = 0, i;
  int t;
  (void)state;
  tu_remove_db(DB);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_schema(env, schema, 2));
  TU_OK(sync_env_open(env, DB, 0));

  /* Version 1, generation 0. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < NACCOUNTS; i++) {
    ids[nids++] = next_id;
    set_balance(txn, next_id++, START_BALANCE);
  }
  write_meta(txn, (int64_t)nids, 0);
  TU_OK(sync_txn_commit(txn));

  atomic_init(&stop, 0);
  atomic_init(&ready, 0);
  for (i = 0; i < NREADERS; i++) {
    memset(&rd[i], 0, sizeof rd[i]);
    atomic_init(&rd[i].failed, 0);
    rd[i].env = env;
    rd[i].stop = &stop;
    rd[i].ready = &ready;
    assert_int_equal(pthread_create(&rd[i].thread, NULL, reader_main, &rd[i]),
                     0);
  }

  /* Every reader is running before the writer starts. */
  while (atomic_load(&ready) < NREADERS) {
    int failed = 0;
    for (i = 0; i < NREADERS; i++) failed |= rd[i].failed;
    if (failed) break;
    sched_yield();
  }

  /* 100 transactions: transfers, and accounts opened or closed. */
  for (t = 1; t <= NTXNS; t++) {
    int j;
    TU_OK(sync_txn_begin(env, 0, &txn));
    for (j = 0; j < 10; j++) {
      size_t a = (size_t)tu_below(&rng, nids), b = (size_t)tu_below(&rng, nids);
      int64_t amt = (int64_t)tu_below(&rng, 50), ba, bb;
      if (a == b) continue;
      ba = balance(txn, ids[a]);
      bb = balance(txn, ids[b]);
      set_balance(txn, ids[a], ba - amt);
      set_balance(txn, ids[b], bb + amt);
    }
    if (t % 3 == 0 && nids > 2) {
      /* Close an account: its balance moves to another one. */
      size_t a = (size_t)tu_below(&rng, nids), b = (a + 1) % nids;
      unsigned char k[8];
      int64_t ba = balance(txn, ids[a]);
      set_balance(txn, ids[b], balance(txn, ids[b]) + ba);
      key_of(ids[a], k);
      TU_OK(sync_delete(txn, 0, k, 8));
      ids[a] = ids[--nids];
    } else if (t % 3 == 1 && nids < NACCOUNTS * 2) {
      /* Open one, funded from another. */
      size_t a = (size_t)tu_below(&rng, nids);
      set_balance(txn, ids[a], balance(txn, ids[a]) - 10);
      ids[nids++] = next_id;
      set_balance(txn, next_id++, 10);
    }
    write_meta(txn, (int64_t)nids, t);
    TU_OK(sync_txn_commit(txn));
    if (t % 10 == 0) sched_yield();
  }
  atomic_store(&stop, 1);
  for (i = 0; i < NREADERS; i++) pthread_join(rd[i].thread, NULL);

  for (i = 0; i < NREADERS; i++) {
    if (rd[i].failed) fail_msg("reader %zu: %s", i, rd[i].why);
    assert_true(rd[i].snapshots > 0);
    print_message("reader %zu: %lu snapshots\n", i, rd[i].snapshots);
  }
  /* The final state holds the invariants too. */
  {
    reader me;
    memset(&me, 0, sizeof me);
    atomic_init(&me.failed, 0);
    me.env = env;
    check_snapshot(&me);
    if (me.failed) fail_msg("final state: %s", me.why);
    TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
    TU_U64(sync_txn_version(txn), NTXNS + 1);
    sync_txn_abort(txn);
  }
  sync_env_close(env);
  tu_remove_db(DB);
}

typedef struct handoff {
  sync_txn *txn;
  int rc;
  int64_t sum, gen;
  uint64_t rows;
} handoff;

/* Use a transaction begun on another thread, then end it here. */
static void *use_and_end(void *arg) {
  handoff *h = (handoff *)arg;
  sync_value meta[2];
  h->rc = sync_get(h->txn, 1, "meta", 4, meta, 2);
  if (!h->rc) {
    h->gen = meta[1].i;
    h->rc = scan(h->txn, &h->sum, &h->rows);
  }
  sync_txn_abort(h->txn);
  return NULL;
}

static void test_txn_can_move_between_threads(void **state) {
  sync_env *env;
  sync_txn *txn;
  pthread_t th;
  handoff h;
  (void)state;
  tu_remove_db(DB);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, schema, 2));
  TU_OK(sync_env_open(env, DB, 0));
  TU_OK(sync_txn_begin(env, 0, &txn));
  set_balance(txn, 1, TOTAL);
  write_meta(txn, 1, 0);
  TU_OK(sync_txn_commit(txn));
  /* A read snapshot begun here, used and ended on another thread, while
   * this thread commits a change it must not see. */
  memset(&h, 0, sizeof h);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &h.txn));
  TU_OK(sync_txn_begin(env, 0, &txn));
  set_balance(txn, 2, 5);
  write_meta(txn, 2, 1);
  TU_OK(sync_txn_commit(txn));
  assert_int_equal(pthread_create(&th, NULL, use_and_end, &h), 0);
  pthread_join(th, NULL);
  TU_OK(h.rc);
  assert_true(h.gen == 0);
  assert_true(h.sum == TOTAL);
  TU_U64(h.rows, 1);
  /* The env is fine afterwards: a schema change needs no txn open. */
  {
    sync_column_def c = {"extra", SYNC_TEXT, 0};
    TU_OK(sync_env_add_column(env, 1, &c));
  }
  sync_env_close(env);
  tu_remove_db(DB);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_readers_never_see_torn_snapshots),
      cmocka_unit_test(test_txn_can_move_between_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
