/*
 * test_corrupt.c - damaged files: a row whose bytes changed on disk is
 * reported as SYNC_ECORRUPT by every read path (never returned as data)
 * while the other rows still read; a truncated file is refused at open.
 */
#include "testutil.h"

#include <unistd.h>

#define DB "t_corrupt.db"

static const sync_column_def cols[] = {
    {"n", SYNC_INTEGER, 0},
    {"payload", SYNC_BLOB, 0},
};
static const sync_table_def schema[] = {
    {"t", SYNC_TEXT, cols, 2},
};

/* 40 bytes that appear nowhere else in the file. */
static void pattern(unsigned char *p) {
  static const char s[] = "<<sync-corruption-pattern-0123456789!!>>";
  memcpy(p, s, 40);
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

#define NROWS 60
#define VICTIM "m-victim"

static void row_key(char *k, int i) {
  sprintf(k, "%c-%03d", i < NROWS / 2 ? 'a' : 'z', i);
}

/* Rows before and after the victim in key order, the victim in its own
 * transaction; then close. */
static void make_db(void) {
  sync_env *env = tu_open_env(DB, schema, 1, 0);
  sync_txn *txn;
  unsigned char pat[40], other[40];
  sync_value v[2];
  char key[16];
  int i;
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < NROWS; i++) {
    memset(other, 'a' + i % 26, sizeof other);
    row_key(key, i);
    v[0] = sync_int(i);
    v[1] = sync_blob(other, sizeof other);
    TU_OK(sync_put(txn, 0, key, strlen(key), v, 2));
  }
  TU_OK(sync_txn_commit(txn));
  pattern(pat);
  TU_OK(sync_txn_begin(env, 0, &txn));
  v[0] = sync_int(-1);
  v[1] = sync_blob(pat, sizeof pat);
  TU_OK(sync_put(txn, 0, VICTIM, strlen(VICTIM), v, 2));
  TU_OK(sync_txn_commit(txn));
  sync_env_close(env);
}

/* Flip one byte inside every copy of the pattern in the file (an old
 * copy may remain in a freed page); returns the copies found. */
static int damage_pattern(void) {
  unsigned char pat[40], *file;
  size_t n = 0, at = 0;
  int found = 0;
  pattern(pat);
  file = tu_read_file(DB, &n);
  assert_non_null(file);
  while ((at = tu_find(file, n, pat, sizeof pat, at)) != (size_t)-1) {
    file[at + 17] ^= 0x20;
    at += sizeof pat;
    found++;
  }
  if (found) assert_int_equal(tu_write_file(DB, file, n), 0);
  free(file);
  return found;
}

static void test_get_of_damaged_row_is_ecorrupt(void **state) {
  sync_env *env;
  sync_txn *txn;
  sync_value v[2];
  char key[16];
  int i;
  (void)state;
  make_db();
  assert_true(damage_pattern() > 0);
  env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  memset(v, 0, sizeof v);
  TU_RC(sync_get(txn, 0, VICTIM, strlen(VICTIM), v, 2), SYNC_ECORRUPT);
  /* Every other row still reads, with its own data. */
  for (i = 0; i < NROWS; i++) {
    row_key(key, i);
    TU_OK(sync_get(txn, 0, key, strlen(key), v, 2));
    assert_true(v[0].i == i);
    assert_int_equal(v[1].len, 40);
    assert_int_equal(((const unsigned char *)v[1].data)[39], 'a' + i % 26);
  }
  sync_txn_abort(txn);
  /* In a write transaction too. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_get(txn, 0, VICTIM, strlen(VICTIM), v, 2), SYNC_ECORRUPT);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_cursor_reaching_damaged_row_is_ecorrupt(void **state) {
  sync_env *env;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key k;
  sync_value v[2];
  int i, rc;
  (void)state;
  make_db();
  assert_true(damage_pattern() > 0);
  env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_cursor_open(txn, 0, &cur));
  /* The rows before it come back intact, then the error. */
  for (i = 0; i < NROWS / 2; i++) {
    TU_OK(sync_cursor_next(cur, &k, v, 2));
    assert_true(v[0].i == i);
  }
  rc = sync_cursor_next(cur, &k, v, 2);
  TU_RC(rc, SYNC_ECORRUPT);
  sync_cursor_close(cur);
  /* A range that avoids it reads fine. */
  TU_OK(sync_cursor_open(txn, 0, &cur));
  TU_OK(sync_cursor_range(cur, "n", 1, NULL, 0));
  for (i = NROWS / 2; i < NROWS; i++) {
    TU_OK(sync_cursor_next(cur, &k, v, 2));
    assert_true(v[0].i == i);
  }
  TU_RC(sync_cursor_next(cur, &k, v, 2), SYNC_NOTFOUND);
  sync_cursor_close(cur);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_change_log_reaching_damaged_row_is_ecorrupt(void **state) {
  sync_env *env;
  sync_txn *txn;
  sync_changes *it;
  sync_change c;
  int i, rc;
  (void)state;
  make_db();
  assert_true(damage_pattern() > 0);
  env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_changes_open(txn, 0, &it));
  /* Version 1: the other rows; version 2: the victim. */
  for (i = 0; i < NROWS; i++) {
    TU_OK(sync_changes_next(it, &c));
    TU_U64(c.version, 1);
  }
  rc = sync_changes_next(it, &c);
  TU_RC(rc, SYNC_ECORRUPT);
  sync_changes_close(it);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_change_scan_reaching_damaged_row_is_ecorrupt(void **state) {
  sync_env *env;
  sync_txn *txn;
  sync_changes *it;
  sync_change c;
  int i;
  (void)state;
  make_db();
  assert_true(damage_pattern() > 0);
  env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  /* Every row changed since 0: a scan, in key order ("a-..." first). */
  TU_OK(sync_changes_open_flags(txn, 0, SYNC_CHANGES_UNORDERED, &it));
  for (i = 0; i < NROWS / 2; i++) {
    TU_OK(sync_changes_next(it, &c));
    assert_true(c.key.len == 5 && ((const char *)c.key.data)[0] == 'a');
  }
  TU_RC(sync_changes_next(it, &c), SYNC_ECORRUPT);
  sync_changes_close(it);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_undamaged_file_reads_pattern_row(void **state) {
  /* The control: without the flip, the same row reads back. */
  sync_env *env;
  sync_txn *txn;
  sync_value v[2];
  unsigned char pat[40];
  (void)state;
  make_db();
  env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, VICTIM, strlen(VICTIM), v, 2));
  pattern(pat);
  assert_int_equal(v[1].len, 40);
  assert_memory_equal(v[1].data, pat, 40);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_truncated_file_is_refused_at_open(void **state) {
  sync_env *env;
  sync_txn *txn;
  unsigned char big[2000];
  sync_value v[2];
  char key[16];
  int i, rc;
  (void)state;
  env = tu_open_env(DB, schema, 1, 0);
  memset(big, 0x5c, sizeof big);
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < 500; i++) {
    sprintf(key, "row%04d", i);
    v[0] = sync_int(i);
    v[1] = sync_blob(big, sizeof big);
    TU_OK(sync_put(txn, 0, key, strlen(key), v, 2));
  }
  TU_OK(sync_txn_commit(txn));
  sync_env_close(env);
  /* Keep the two meta pages and a little more: the header now names
   * pages past the end of the file. */
  assert_int_equal(truncate(DB, 4 * 4096), 0);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, schema, 1));
  rc = sync_env_open(env, DB, 0);
  TU_RC(rc, SYNC_ECORRUPT);
  assert_true(strlen(sync_env_errmsg(env)) > 0);
  sync_env_close(env);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_undamaged_file_reads_pattern_row),
      T(test_get_of_damaged_row_is_ecorrupt),
      T(test_cursor_reaching_damaged_row_is_ecorrupt),
      T(test_change_log_reaching_damaged_row_is_ecorrupt),
      T(test_change_scan_reaching_damaged_row_is_ecorrupt),
      T(test_truncated_file_is_refused_at_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
