/*
 * test_alloc.c - allocation failure injection.  A full scenario (create,
 * declare, open, write, schema change, read back through get, cursor and
 * change log, close) runs once to count its allocations K, then once per
 * N in 1..K with allocation N failing.  Each run must stop cleanly with
 * SYNC_ENOMEM, free every block, and leave the file either with the
 * whole write transaction or with none of it.
 */
#include "testutil.h"

#define DB "t_alloc.db"

#define NC 4
static const sync_column_def cols[] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
};
static const sync_table_def schema[] = {
    {"t", SYNC_TEXT, cols, NC},
};
static const sync_table_def schema2 = {"t2", SYNC_INTEGER, cols, 2};

#define NROWS 40
#define DELETED(i) ((i) % 10 == 3)
#define UPDATED(i) ((i) % 10 == 5)

#define BIGLEN 70000
static char big_text[BIGLEN];

static void key_of(char *k, int i) { sprintf(k, "key-%03d", i); }

static void vals_of(sync_value *v, int i, char *text, unsigned char *blob) {
  sprintf(text, "text of row %d", i);
  memset(blob, i, 100);
  v[0] = sync_int(i * 1000);
  v[1] = sync_real(i + 0.5);
  v[2] = sync_text(text, strlen(text));
  v[3] = sync_blob(blob, 100);
}

/* What a run reached. */
typedef struct outcome {
  int rc;        /* first failure, 0 if none */
  int step;      /* step number of the first failure */
  int committed; /* the write transaction's commit returned 0 */
  int schema_ok; /* add_column returned 0 */
  int table_ok;  /* add_table returned 0 */
} outcome;

/* Check rc: 0 continues; SYNC_ENOMEM stops the run; anything else is a
 * failure of the test. */
#define STEP(expr)                                                             \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    step++;                                                                    \
    if (rc_ != 0) {                                                            \
      if (rc_ != SYNC_ENOMEM)                                                  \
        fail_msg("step %d: %s returned %d (%s), expected 0 or SYNC_ENOMEM",    \
                 step, #expr, rc_, sync_strerror(rc_));                        \
      out->rc = rc_;                                                           \
      out->step = step;                                                        \
      goto done;                                                               \
    }                                                                          \
  } while (0)

static void scenario(tu_alloc *a, outcome *out) {
  static tu_random rnd = {0x33, 0, 0};
  tu_clock clk = {UINT64_C(1700000000000), 1, 0};
  sync_allocator al = tu_allocator(a);
  sync_env *env = NULL;
  sync_txn *txn = NULL;
  sync_cursor *cur = NULL;
  sync_changes *ch = NULL;
  sync_column_def extra = {"extra", SYNC_TEXT, 0};
  sync_key gk[3] = {{"key-001", 7}, {"key-003", 7}, {"nope", 4}};
  sync_value gv[3 * NC];
  int found[3];
  char key[32], text[64];
  unsigned char blob[100];
  sync_value v[NC + 1];
  sync_key k;
  sync_change c;
  uint64_t n;
  int i, step = 0, rc;

  memset(out, 0, sizeof *out);
  STEP(sync_env_create(&al, &env));
  STEP(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  STEP(sync_env_set_random(env, tu_random_fn, &rnd));
  STEP(sync_env_set_clock(env, tu_clock_fn, &clk));
  STEP(sync_env_set_schema(env, schema, 1));
  STEP(sync_env_open(env, DB, 0));

  /* One write transaction: puts, updates, deletes. */
  STEP(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < NROWS / 2; i++) {
    key_of(key, i);
    vals_of(v, i, text, blob);
    STEP(sync_put(txn, 0, key, strlen(key), v, NC));
  }
  for (i = NROWS / 2; i < NROWS; i += 10) {
    /* The other half in batches of 10. */
    static char kb[10][32], tb[10][64];
    static unsigned char bb[10][100];
    sync_key keys[10];
    sync_value bv[10 * NC];
    size_t done = 0;
    int j;
    for (j = 0; j < 10; j++) {
      key_of(kb[j], i + j);
      keys[j].data = kb[j];
      keys[j].len = strlen(kb[j]);
      vals_of(bv + j * NC, i + j, tb[j], bb[j]);
    }
    STEP(sync_put_many(txn, 0, keys, bv, 10, &done));
  }
  /* A large value, so that buffers grow. */
  memset(big_text, 'q', BIGLEN);
  v[2] = sync_text(big_text, BIGLEN);
  STEP(sync_put(txn, 0, "big", 3, v, NC));
  for (i = 0; i < NROWS; i++) {
    key_of(key, i);
    if (UPDATED(i)) {
      unsigned col = 2;
      sync_value s = sync_text("updated", 7);
      STEP(sync_update(txn, 0, key, strlen(key), &col, &s, 1));
    }
    if (DELETED(i) && i < NROWS / 2)
      STEP(sync_delete(txn, 0, key, strlen(key)));
  }
  {
    static char kb[NROWS][32];
    sync_key keys[NROWS];
    size_t nk = 0, ndel = 0;
    for (i = NROWS / 2; i < NROWS; i++)
      if (DELETED(i)) {
        key_of(kb[nk], i);
        keys[nk].data = kb[nk];
        keys[nk].len = strlen(kb[nk]);
        nk++;
      }
    STEP(sync_delete_many(txn, 0, keys, nk, &ndel));
  }
  rc = sync_txn_commit(txn);
  txn = NULL;
  STEP(rc);
  out->committed = 1;

  /* A schema change in its own transaction. */
  STEP(sync_env_add_column(env, 0, &extra));
  out->schema_ok = 1;
  STEP(sync_env_add_table(env, &schema2, NULL));
  out->table_ok = 1;

  /* Read back: get, cursor, change log. */
  STEP(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  key_of(key, 1);
  STEP(sync_get(txn, 0, key, strlen(key), v, NC + 1));
  STEP(sync_count(txn, 0, &n));
  STEP(sync_get_many(txn, 0, gk, 3, gv, NC, found));
  STEP(sync_cursor_open(txn, 0, &cur));
  while ((rc = sync_cursor_next(cur, &k, v, NC)) == 0) {
  }
  if (rc != SYNC_NOTFOUND) STEP(rc);
  sync_cursor_close(cur);
  cur = NULL;
  STEP(sync_changes_open(txn, 0, &ch));
  while ((rc = sync_changes_next(ch, &c)) == 0) {
    sync_value cv;
    sync_stamp st, base;
    rc = sync_changes_column(ch, 0, &cv, &st, &base);
    if (rc != 0 && rc != SYNC_NOTFOUND) break;
  }
  if (rc != SYNC_NOTFOUND) STEP(rc);
  sync_changes_close(ch);
  ch = NULL;
  rc = sync_txn_commit(txn);
  txn = NULL;
  STEP(rc);
done:
  sync_changes_close(ch);
  sync_cursor_close(cur);
  sync_txn_abort(txn);
  sync_env_close(env);
}

/* With libc allocation: the file holds all of the write transaction or
 * none of it, as the commit said. */
static void verify_file(const outcome *o) {
  sync_env *env;
  sync_txn *txn;
  sync_value v[NC + 1];
  char key[32], text[64];
  unsigned char blob[100];
  uint64_t n, ver;
  int i, live = 0;
  if (!tu_file_exists(DB)) {
    assert_false(o->committed);
    return;
  }
  env = tu_open_env(DB, NULL, 0, 0); /* take the stored schema */
  if (sync_env_table_count(env) == 0) {
    /* The run failed before the database was made: LMDB left an empty
     * file, which this open just initialised without tables. */
    assert_false(o->committed);
    sync_env_close(env);
    return;
  }
  TU_OK(sync_env_schema_info(env, &ver, NULL));
  TU_U64(ver, 1u + (unsigned)o->schema_ok + (unsigned)o->table_ok);
  assert_int_equal(sync_env_table_count(env), o->table_ok ? 2 : 1);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_count(txn, 0, &n));
  if (!o->committed) {
    TU_U64(n, 0);
    TU_U64(sync_txn_version(txn), 0);
  } else {
    for (i = 0; i < NROWS; i++) {
      sync_value want[NC];
      int rc;
      key_of(key, i);
      vals_of(want, i, text, blob);
      rc = sync_get(txn, 0, key, strlen(key), v, o->schema_ok ? NC + 1 : NC);
      if (DELETED(i)) {
        TU_RC(rc, SYNC_NOTFOUND);
        continue;
      }
      TU_OK(rc);
      live++;
      if (UPDATED(i)) want[2] = sync_text("updated", 7);
      TU_VALUE_EQ(&v[0], &want[0]);
      TU_VALUE_EQ(&v[1], &want[1]);
      TU_VALUE_EQ(&v[2], &want[2]);
      TU_VALUE_EQ(&v[3], &want[3]);
      if (o->schema_ok) assert_int_equal(v[4].type, SYNC_NULL);
    }
    TU_OK(sync_get(txn, 0, "big", 3, v, NC));
    assert_int_equal(v[2].len, BIGLEN);
    assert_memory_equal(v[2].data, big_text, BIGLEN);
    TU_U64(n, live + 1);
    TU_U64(sync_txn_version(txn), 1);
  }
  sync_txn_abort(txn);
  sync_env_close(env);
}

static int setup(void **state) {
  (void)state;
  tu_remove_db(DB);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_remove_db(DB);
  return 0;
}

static void test_scenario_uses_allocator_and_frees_all(void **state) {
  tu_alloc a;
  outcome o;
  (void)state;
  memset(&a, 0, sizeof a);
  scenario(&a, &o);
  TU_OK(o.rc);
  assert_true(o.committed && o.schema_ok && o.table_ok);
  assert_true(a.calls > 0);
  assert_true(a.peak_bytes > 0);
  assert_int_equal(a.live_blocks, 0);
  assert_int_equal(a.live_bytes, 0);
  verify_file(&o);
}

static void test_every_allocation_failure_is_clean(void **state) {
  tu_alloc a;
  outcome o;
  unsigned long k, nth, enomem = 0;
  (void)state;
  memset(&a, 0, sizeof a);
  scenario(&a, &o);
  TU_OK(o.rc);
  k = a.calls;
  assert_true(k > 0);
  tu_remove_db(DB);
  for (nth = 1; nth <= k; nth++) {
    memset(&a, 0, sizeof a);
    a.fail_at = nth;
    scenario(&a, &o);
    if (a.failures == 0)
      fail_msg("allocation %lu of %lu was never requested", nth, k);
    if (a.live_blocks != 0)
      fail_msg("allocation %lu failing: %ld blocks (%zu bytes) leaked", nth,
               a.live_blocks, a.live_bytes);
    if (o.rc) enomem++;
    verify_file(&o);
    tu_remove_db(DB);
  }
  print_message("%lu allocations; %lu failures surfaced as SYNC_ENOMEM\n", k,
                enomem);
  /* Most failures must surface; a few may be absorbed (a cache that is
   * only an optimisation), but never all of them. */
  assert_true(enomem > 0);
}

static void test_all_allocations_failing_after_n_is_clean(void **state) {
  tu_alloc a;
  outcome o;
  unsigned long k, nth;
  (void)state;
  memset(&a, 0, sizeof a);
  scenario(&a, &o);
  k = a.calls;
  tu_remove_db(DB);
  /* Every request from the nth on fails: cleanup paths must not need
   * memory either. */
  for (nth = 1; nth <= k; nth += 1 + nth / 8) {
    memset(&a, 0, sizeof a);
    a.fail_at = nth;
    a.fail_rest = 1;
    scenario(&a, &o);
    if (a.live_blocks != 0)
      fail_msg("allocations from %lu failing: %ld blocks leaked", nth,
               a.live_blocks);
    verify_file(&o);
    tu_remove_db(DB);
  }
}

static void test_create_without_memory_is_enomem(void **state) {
  tu_alloc a;
  sync_allocator al;
  sync_env *env = NULL;
  (void)state;
  memset(&a, 0, sizeof a);
  a.fail_at = 1;
  al = tu_allocator(&a);
  TU_RC(sync_env_create(&al, &env), SYNC_ENOMEM);
  assert_int_equal(a.live_blocks, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_create_without_memory_is_enomem),
      T(test_scenario_uses_allocator_and_frees_all),
      T(test_every_allocation_failure_is_clean),
      T(test_all_allocations_failing_after_n_is_clean),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
