/*
 * test_env.c - the environment lifecycle through the public API: create
 * with and without an allocator, open, reopen, read-only use, durability
 * modes, error strings, and the map that grows (or cannot).
 */
#include "testutil.h"

#include <lmdb.h>
#include <string.h>
#include <sys/stat.h>

#define DB "t_env.db"
#define DB2 "t_env2.db"

static const sync_column_def cols[] = {
    {"n", SYNC_INTEGER, 0},
    {"payload", SYNC_BLOB, 0},
};
static const sync_table_def tables[] = {
    {"items", SYNC_TEXT, cols, 2},
};

static int setup(void **state) {
  (void)state;
  tu_remove_db(DB);
  tu_remove_db(DB2);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_remove_db(DB);
  tu_remove_db(DB2);
  return 0;
}

/* Write row key -> (n, payload of len bytes filled from n) and commit. */
static void put_row(sync_env *env, const char *key, int64_t n, size_t len) {
  sync_txn *txn;
  unsigned char buf[256];
  sync_value v[2];
  assert_true(len <= sizeof buf);
  memset(buf, (int)(n & 0xff), len);
  v[0] = sync_int(n);
  v[1] = sync_blob(buf, len);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_put(txn, 0, key, strlen(key), v, 2));
  TU_OK(sync_txn_commit(txn));
}

static void expect_row(sync_env *env, const char *key, int64_t n) {
  sync_txn *txn;
  sync_value v[2];
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, key, strlen(key), v, 2));
  assert_int_equal(v[0].type, SYNC_INTEGER);
  assert_true(v[0].i == n);
  sync_txn_abort(txn);
}

/* ------------------------------------------------------------------ */

static void test_create_with_null_allocator_gives_env(void **state) {
  sync_env *env = NULL;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  assert_non_null(env);
  sync_env_close(env);
}

static void test_create_with_null_out_is_einval(void **state) {
  (void)state;
  TU_RC(sync_env_create(NULL, NULL), SYNC_EINVAL);
}

static void test_custom_allocator_is_used_and_all_freed(void **state) {
  tu_alloc a;
  sync_allocator al;
  sync_env *env = NULL;
  (void)state;
  memset(&a, 0, sizeof a);
  al = tu_allocator(&a);
  TU_OK(sync_env_create(&al, &env));
  assert_non_null(env);
  assert_true(a.calls > 0);
  assert_true(a.live_blocks > 0);
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  put_row(env, "k", 7, 10);
  expect_row(env, "k", 7);
  sync_env_close(env);
  assert_int_equal(a.live_blocks, 0);
  assert_int_equal(a.live_bytes, 0);
}

static void test_allocator_struct_is_copied(void **state) {
  tu_alloc a;
  sync_allocator al;
  sync_env *env = NULL;
  unsigned long before;
  (void)state;
  memset(&a, 0, sizeof a);
  al = tu_allocator(&a);
  TU_OK(sync_env_create(&al, &env));
  /* The caller's struct may go away: the env keeps its own copy. */
  memset(&al, 0, sizeof al);
  before = a.calls;
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  put_row(env, "k", 1, 4);
  assert_true(a.calls > before);
  sync_env_close(env);
  assert_int_equal(a.live_blocks, 0);
}

static void test_create_rejects_partial_allocator(void **state) {
  tu_alloc a;
  sync_allocator al;
  sync_env *env;
  (void)state;
  memset(&a, 0, sizeof a);

  al = tu_allocator(&a);
  al.malloc = NULL;
  env = NULL;
  TU_RC(sync_env_create(&al, &env), SYNC_EINVAL);

  al = tu_allocator(&a);
  al.realloc = NULL;
  TU_RC(sync_env_create(&al, &env), SYNC_EINVAL);

  al = tu_allocator(&a);
  al.free = NULL;
  TU_RC(sync_env_create(&al, &env), SYNC_EINVAL);

  al = tu_allocator(&a);
  al.malloc = NULL;
  al.free = NULL;
  TU_RC(sync_env_create(&al, &env), SYNC_EINVAL);
  assert_int_equal(a.live_blocks, 0);
}

static void test_open_creates_missing_file(void **state) {
  sync_env *env;
  (void)state;
  assert_false(tu_file_exists(DB));
  env = tu_open_env(DB, tables, 1, 0);
  assert_true(tu_file_exists(DB));
  assert_int_equal(sync_env_table_count(env), 1);
  sync_env_close(env);
}

static void test_site_id_comes_from_random_source(void **state) {
  tu_random r1 = {0x40, 0, 0}, r2 = {0x90, 0, 0};
  sync_env *env;
  uint8_t id[16], id2[16];
  size_t i;
  (void)state;

  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_random(env, tu_random_fn, &r1));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  assert_true(r1.calls > 0);
  TU_OK(sync_env_site_id(env, id));
  for (i = 0; i < 16; i++) assert_int_equal(id[i], tu_random_byte(0x40, i));
  sync_env_close(env);

  /* A second database made with another source has that source's id. */
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_random(env, tu_random_fn, &r2));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB2, 0));
  TU_OK(sync_env_site_id(env, id2));
  for (i = 0; i < 16; i++) assert_int_equal(id2[i], tu_random_byte(0x90, i));
  sync_env_close(env);
}

static void test_reopen_keeps_data_and_site_id(void **state) {
  tu_random r1 = {0x40, 0, 0}, r2 = {0x90, 0, 0};
  sync_env *env;
  uint8_t id[16], id2[16];
  (void)state;

  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_random(env, tu_random_fn, &r1));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  TU_OK(sync_env_site_id(env, id));
  put_row(env, "alpha", 42, 16);
  put_row(env, "beta", -3, 0);
  sync_env_close(env);

  /* Reopen with a different random source: the id comes from the file. */
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_random(env, tu_random_fn, &r2));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  TU_OK(sync_env_site_id(env, id2));
  assert_memory_equal(id, id2, 16);
  expect_row(env, "alpha", 42);
  expect_row(env, "beta", -3);
  sync_env_close(env);
}

static void test_site_id_of_unopened_env_is_einval(void **state) {
  sync_env *env;
  uint8_t id[16];
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_site_id(env, id), SYNC_EINVAL);
  sync_env_close(env);
}

static void test_nocreate_on_missing_file_is_notfound(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_RC(sync_env_open(env, DB, SYNC_OPEN_NOCREATE), SYNC_NOTFOUND);
  assert_false(tu_file_exists(DB));
  sync_env_close(env);
}

static void test_rdonly_on_missing_file_is_notfound(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_open(env, DB, SYNC_OPEN_RDONLY), SYNC_NOTFOUND);
  assert_false(tu_file_exists(DB));
  sync_env_close(env);
}

/* An empty file: for a read-only or NOCREATE open it is not a database,
 * and nothing is written to it or beside it (no lock file). */
static void empty_file_is_enotdb(unsigned flags) {
  sync_env *env;
  FILE *f = fopen(DB, "w");
  struct stat sb;
  char lock[1024];
  assert_non_null(f);
  fclose(f);
  tu_lock_path(DB, lock, sizeof lock);
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_open(env, DB, flags), SYNC_ENOTDB);
  assert_non_null(strstr(sync_env_errmsg(env), "empty file"));
  sync_env_close(env);
  assert_int_equal(stat(DB, &sb), 0);
  assert_int_equal(sb.st_size, 0);
  assert_false(tu_file_exists(lock));
}

static void test_rdonly_on_empty_file_is_enotdb_and_writes_nothing(
    void **state) {
  (void)state;
  empty_file_is_enotdb(SYNC_OPEN_RDONLY);
}

static void test_nocreate_on_empty_file_is_enotdb_and_writes_nothing(
    void **state) {
  (void)state;
  empty_file_is_enotdb(SYNC_OPEN_NOCREATE);
}

static void test_open_makes_an_empty_file_a_database(void **state) {
  sync_env *env;
  FILE *f = fopen(DB, "w");
  (void)state;
  assert_non_null(f);
  fclose(f);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  put_row(env, "k", 5, 1);
  expect_row(env, "k", 5);
  sync_env_close(env);
}

static void test_env_can_open_again_after_failed_open(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_RC(sync_env_open(env, DB, SYNC_OPEN_NOCREATE), SYNC_NOTFOUND);
  TU_OK(sync_env_open(env, DB, 0));
  put_row(env, "k", 5, 1);
  expect_row(env, "k", 5);
  sync_env_close(env);
}

static void test_open_twice_is_einval(void **state) {
  sync_env *env;
  (void)state;
  env = tu_open_env(DB, tables, 1, 0);
  TU_RC(sync_env_open(env, DB2, 0), SYNC_EINVAL);
  /* The first database is still the one in use. */
  put_row(env, "k", 9, 1);
  expect_row(env, "k", 9);
  sync_env_close(env);
  assert_false(tu_file_exists(DB2));
}

static void test_open_garbage_file_is_enotdb_and_left_intact(void **state) {
  enum { N = 64 * 1024 };
  unsigned char *junk = (unsigned char *)malloc(N), *after;
  tu_rng rng = {12345};
  sync_env *env;
  size_t n = 0;
  (void)state;
  assert_non_null(junk);
  tu_fill(&rng, junk, N);
  assert_int_equal(tu_write_file(DB, junk, N), 0);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_RC(sync_env_open(env, DB, 0), SYNC_ENOTDB);
  sync_env_close(env);
  after = tu_read_file(DB, &n);
  assert_non_null(after);
  assert_int_equal(n, N);
  assert_memory_equal(after, junk, N);
  free(after);
  free(junk);
}

static void test_open_text_file_is_enotdb(void **state) {
  static const char text[] =
      "This is a plain text file.\nIt is not a database at all.\n";
  sync_env *env;
  (void)state;
  assert_int_equal(tu_write_file(DB, text, sizeof text - 1), 0);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_RC(sync_env_open(env, DB, 0), SYNC_ENOTDB);
  sync_env_close(env);
}

static void test_open_plain_lmdb_file_is_enotdb(void **state) {
  MDB_env *m;
  MDB_txn *t;
  MDB_dbi d;
  MDB_val k, v;
  sync_env *env;
  (void)state;
  assert_int_equal(mdb_env_create(&m), 0);
  assert_int_equal(mdb_env_open(m, DB, MDB_NOSUBDIR, 0644), 0);
  assert_int_equal(mdb_txn_begin(m, NULL, 0, &t), 0);
  assert_int_equal(mdb_dbi_open(t, NULL, 0, &d), 0);
  k.mv_data = (void *)"hello";
  k.mv_size = 5;
  v.mv_data = (void *)"world";
  v.mv_size = 5;
  assert_int_equal(mdb_put(t, d, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(t), 0);
  mdb_env_close(m);

  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_RC(sync_env_open(env, DB, 0), SYNC_ENOTDB);
  assert_true(strlen(sync_env_errmsg(env)) > 0);
  sync_env_close(env);
}

static void test_rdonly_env_refuses_write_txn(void **state) {
  sync_env *env;
  sync_txn *txn = NULL;
  sync_value v[2];
  sync_column_def extra = {"extra", SYNC_TEXT, 0};
  uint64_t n = 0;
  (void)state;
  env = tu_open_env(DB, tables, 1, 0);
  put_row(env, "a", 1, 3);
  put_row(env, "b", 2, 3);
  sync_env_close(env);

  env = tu_open_env(DB, tables, 1, SYNC_OPEN_RDONLY);
  TU_RC(sync_txn_begin(env, 0, &txn), SYNC_EREADONLY);
  TU_RC(sync_env_add_column(env, 0, &extra), SYNC_EREADONLY);
  /* Reads work. */
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_count(txn, 0, &n));
  TU_U64(n, 2);
  TU_OK(sync_get(txn, 0, "b", 1, v, 2));
  assert_true(v[0].i == 2);
  v[0] = sync_int(3);
  v[1] = sync_null();
  TU_RC(sync_put(txn, 0, "c", 1, v, 2), SYNC_EREADONLY);
  sync_txn_abort(txn);
  TU_OK(sync_env_sync(env));
  sync_env_close(env);
}

static void test_durability_modes_keep_committed_data(void **state) {
  static const int modes[] = {SYNC_DURABLE_FULL, SYNC_DURABLE_NOMETASYNC,
                              SYNC_DURABLE_NOSYNC};
  size_t m;
  (void)state;
  for (m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    sync_env *env;
    tu_remove_db(DB);
    TU_OK(sync_env_create(NULL, &env));
    TU_OK(sync_env_set_durability(env, modes[m]));
    TU_OK(sync_env_set_schema(env, tables, 1));
    TU_OK(sync_env_open(env, DB, 0));
    put_row(env, "one", 100 + (int64_t)m, 8);
    put_row(env, "two", 200 + (int64_t)m, 8);
    TU_OK(sync_env_sync(env));
    sync_env_close(env);

    /* Reopen in the default mode: both commits are there. */
    env = tu_open_env(DB, tables, 1, 0);
    expect_row(env, "one", 100 + (int64_t)m);
    expect_row(env, "two", 200 + (int64_t)m);
    sync_env_close(env);
  }
}

static void test_set_durability_rejects_invalid_mode(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_set_durability(env, -1), SYNC_EINVAL);
  TU_RC(sync_env_set_durability(env, 3), SYNC_EINVAL);
  TU_RC(sync_env_set_durability(env, 99), SYNC_EINVAL);
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  sync_env_close(env);
}

static void test_setters_after_open_are_einval(void **state) {
  sync_env *env;
  (void)state;
  env = tu_open_env(DB, tables, 1, 0);
  TU_RC(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC), SYNC_EINVAL);
  TU_RC(sync_env_set_mapsize(env, (size_t)1 << 20, (size_t)1 << 24),
        SYNC_EINVAL);
  TU_RC(sync_env_set_schema(env, tables, 1), SYNC_EINVAL);
  /* The env is still usable. */
  put_row(env, "k", 1, 1);
  expect_row(env, "k", 1);
  sync_env_close(env);
}

static void test_env_sync_needs_open_env(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_sync(env), SYNC_EINVAL);
  TU_RC(sync_env_sync(NULL), SYNC_EINVAL);
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  put_row(env, "k", 1, 1);
  TU_OK(sync_env_sync(env));
  sync_env_close(env);
}

static void test_strerror_describes_every_code(void **state) {
  static const int unknown[] = {12345, -999, -21, -100, 1, INT32_MIN};
  const char *known[21];
  int c, d;
  size_t i;
  (void)state;
  assert_non_null(sync_strerror(0));
  for (c = -1; c >= -20; c--) {
    const char *s = sync_strerror(c);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    known[-c] = s;
  }
  /* Each code has its own description. */
  for (c = 1; c <= 20; c++)
    for (d = c + 1; d <= 20; d++)
      if (strcmp(known[c], known[d]) == 0)
        fail_msg("codes %d and %d share the description \"%s\"", -c, -d,
                 known[c]);
  for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *s = sync_strerror(unknown[i]);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
  }
}

static void test_errmsg_is_empty_until_a_failure(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  assert_string_equal(sync_env_errmsg(env), "");
  assert_int_equal(sync_env_native_error(env), 0);
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_RC(sync_env_open(env, DB, SYNC_OPEN_NOCREATE), SYNC_NOTFOUND);
  assert_true(strlen(sync_env_errmsg(env)) > 0);
  sync_env_close(env);
}

static void test_null_handles_are_ignored(void **state) {
  sync_env *env;
  sync_txn *txn;
  (void)state;
  sync_env_close(NULL);
  sync_txn_abort(NULL);
  sync_cursor_close(NULL);
  sync_changes_close(NULL);
  /* And nothing was disturbed: a normal round trip still works. */
  env = tu_open_env(DB, tables, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_txn_begin_on_unopened_env_is_einval(void **state) {
  sync_env *env;
  sync_txn *txn = NULL;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn), SYNC_EINVAL);
  TU_RC(sync_txn_begin(env, 0, &txn), SYNC_EINVAL);
  sync_env_close(env);
}

/* ------------------------------------------------------------------
 * Map size
 * ------------------------------------------------------------------ */

/* Rows of ~1 KiB whose bytes derive from their number. */
#define BIG 1000
static void big_payload(unsigned char *buf, unsigned i) {
  unsigned j;
  for (j = 0; j < BIG; j++) buf[j] = (unsigned char)(i * 31u + j * 7u);
}

static void big_key(char *k, unsigned i) { sprintf(k, "row-%08u", i); }

/* Write rows [from, to) in transactions of per_txn rows.  A transaction
 * that runs out of map is aborted and run again, up to attempts times in
 * all: each retry starts with a map twice as large.  Returns the
 * retries. */
static unsigned write_big_rows(sync_env *env, unsigned from, unsigned to,
                               unsigned per_txn, int attempts) {
  unsigned char buf[BIG];
  char key[32];
  unsigned start, retries = 0;
  for (start = from; start < to; start += per_txn) {
    unsigned end = start + per_txn < to ? start + per_txn : to, i;
    int attempt, rc = 0;
    for (attempt = 0; attempt < attempts; attempt++) {
      sync_txn *txn;
      TU_OK(sync_txn_begin(env, 0, &txn));
      for (i = start; i < end; i++) {
        sync_value v[2];
        big_payload(buf, i);
        big_key(key, i);
        v[0] = sync_int(i);
        v[1] = sync_blob(buf, BIG);
        if ((rc = sync_put(txn, 0, key, strlen(key), v, 2))) break;
      }
      if (rc) {
        sync_txn_abort(txn);
      } else {
        rc = sync_txn_commit(txn);
      }
      if (rc != SYNC_EMAPFULL) break;
      retries++;
    }
    TU_OK(rc);
  }
  return retries;
}

static void check_big_rows(sync_env *env, unsigned nrows, unsigned step) {
  sync_txn *txn;
  unsigned char buf[BIG];
  char key[32];
  unsigned i;
  uint64_t n = 0;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_count(txn, 0, &n));
  TU_U64(n, nrows);
  for (i = 0; i < nrows; i += step) {
    sync_value v[2];
    big_payload(buf, i);
    big_key(key, i);
    TU_OK(sync_get(txn, 0, key, strlen(key), v, 2));
    assert_true(v[0].i == (int64_t)i);
    assert_int_equal(v[1].len, BIG);
    assert_memory_equal(v[1].data, buf, BIG);
  }
  sync_txn_abort(txn);
}

static sync_env *open_sized(size_t initial, size_t max) {
  sync_env *env;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_mapsize(env, initial, max));
  TU_OK(sync_env_set_schema(env, tables, 1));
  TU_OK(sync_env_open(env, DB, 0));
  return env;
}

/* Transactions of ~100 KiB never see the map fill: it doubles at the
 * start of a write transaction once half of it is in use, so at least
 * 512 KiB are free when each one begins.  20 MB in all. */
static void test_map_grows_without_emapfull_when_txns_fit(void **state) {
  enum { ROWS = 20000 };
  sync_env *env;
  (void)state;
  env = open_sized((size_t)1 << 20, (size_t)256 << 20);
  assert_int_equal(write_big_rows(env, 0, ROWS, 100, 1), 0);
  check_big_rows(env, ROWS, 1);
  sync_env_close(env);
  env = tu_open_env(DB, tables, 1, 0);
  check_big_rows(env, ROWS, 7);
  sync_env_close(env);
}

/* Transactions of 1,000 rows (~1 MB) in a map that starts at 1 MiB: a
 * transaction larger than the free map may fail with SYNC_EMAPFULL
 * (LMDB cannot resize inside a transaction), but each next one starts
 * with a doubled map, so a transaction succeeds within 9 attempts (1 MiB
 * doubled 8 times is the 256 MiB maximum). */
static void test_map_grows_after_emapfull_and_retry_fits(void **state) {
  enum { ROWS = 20000 };
  sync_env *env;
  (void)state;
  env = open_sized((size_t)1 << 20, (size_t)256 << 20);
  write_big_rows(env, 0, ROWS, 1000, 9);
  check_big_rows(env, ROWS, 1);
  sync_env_close(env);
  env = tu_open_env(DB, tables, 1, 0);
  check_big_rows(env, ROWS, 7);
  sync_env_close(env);
}

static void test_map_at_max_gives_emapfull_and_keeps_data(void **state) {
  enum { PER_TXN = 50, MORE = 3000 };
  sync_env *env;
  sync_txn *txn;
  unsigned char buf[BIG];
  char key[32];
  unsigned i, committed = 0;
  int rc = 0;
  (void)state;
  env = open_sized((size_t)1 << 20, (size_t)1 << 20);
  /* 1 MiB holds well under 1,000 rows of 1 KiB. */
  while (committed < 2000) {
    unsigned j;
    TU_OK(sync_txn_begin(env, 0, &txn));
    for (j = 0; j < PER_TXN; j++) {
      sync_value v[2];
      i = committed + j;
      big_payload(buf, i);
      big_key(key, i);
      v[0] = sync_int(i);
      v[1] = sync_blob(buf, BIG);
      rc = sync_put(txn, 0, key, strlen(key), v, 2);
      if (rc) break;
    }
    if (rc) {
      TU_RC(rc, SYNC_EMAPFULL);
      /* The transaction is unusable: commit says so and commits
       * nothing. */
      TU_RC(sync_txn_commit(txn), SYNC_ETXN);
      break;
    }
    rc = sync_txn_commit(txn);
    if (rc) {
      TU_RC(rc, SYNC_EMAPFULL);
      break;
    }
    committed += PER_TXN;
  }
  TU_RC(rc, SYNC_EMAPFULL);
  assert_true(committed > 0);

  /* Committed data is intact, and nothing of the failed txn is there. */
  check_big_rows(env, committed, 1);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  big_key(key, committed);
  TU_RC(sync_contains(txn, 0, key, strlen(key)), 0);
  sync_txn_abort(txn);
  /* A new write transaction can still begin. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  sync_txn_abort(txn);
  sync_env_close(env);

  /* Reopened with a larger maximum, more fits. */
  env = open_sized((size_t)1 << 20, (size_t)64 << 20);
  check_big_rows(env, committed, 1);
  assert_int_equal(write_big_rows(env, committed, committed + MORE, PER_TXN, 1),
                   0);
  check_big_rows(env, committed + MORE, 1);
  sync_env_close(env);
}

static void test_set_mapsize_rejects_max_below_initial(void **state) {
  sync_env *env;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_set_mapsize(env, (size_t)4 << 20, (size_t)1 << 20),
        SYNC_EINVAL);
  sync_env_close(env);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_create_with_null_allocator_gives_env),
      T(test_create_with_null_out_is_einval),
      T(test_custom_allocator_is_used_and_all_freed),
      T(test_allocator_struct_is_copied),
      T(test_create_rejects_partial_allocator),
      T(test_open_creates_missing_file),
      T(test_site_id_comes_from_random_source),
      T(test_reopen_keeps_data_and_site_id),
      T(test_site_id_of_unopened_env_is_einval),
      T(test_nocreate_on_missing_file_is_notfound),
      T(test_rdonly_on_missing_file_is_notfound),
      T(test_rdonly_on_empty_file_is_enotdb_and_writes_nothing),
      T(test_nocreate_on_empty_file_is_enotdb_and_writes_nothing),
      T(test_open_makes_an_empty_file_a_database),
      T(test_env_can_open_again_after_failed_open),
      T(test_open_twice_is_einval),
      T(test_open_garbage_file_is_enotdb_and_left_intact),
      T(test_open_text_file_is_enotdb),
      T(test_open_plain_lmdb_file_is_enotdb),
      T(test_rdonly_env_refuses_write_txn),
      T(test_durability_modes_keep_committed_data),
      T(test_set_durability_rejects_invalid_mode),
      T(test_setters_after_open_are_einval),
      T(test_env_sync_needs_open_env),
      T(test_strerror_describes_every_code),
      T(test_errmsg_is_empty_until_a_failure),
      T(test_null_handles_are_ignored),
      T(test_txn_begin_on_unopened_env_is_einval),
      T(test_map_grows_without_emapfull_when_txns_fit),
      T(test_map_grows_after_emapfull_and_retry_fits),
      T(test_map_at_max_gives_emapfull_and_keeps_data),
      T(test_set_mapsize_rejects_max_below_initial),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
