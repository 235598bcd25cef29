/*
 * test_rows.c - rows through the public API: every type, constraints,
 * keys, put / update / delete / get, batches, counts, cursors and ranges,
 * transaction atomicity and snapshot isolation.
 */
#include "testutil.h"

#include <math.h>

#define DB "t_rows.db"

/* Table 0 "t": TEXT keys, one column per type and a NOT NULL one. */
#define C_I 0
#define C_R 1
#define C_S 2
#define C_B 3
#define C_REQ 4
#define NC 5
static const sync_column_def t_cols[] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
    {"req", SYNC_INTEGER, SYNC_COL_NOTNULL},
};
/* Table 1 "nums": INTEGER keys. */
static const sync_column_def n_cols[] = {{"v", SYNC_INTEGER, 0}};
static const sync_table_def schema[] = {
    {"t", SYNC_TEXT, t_cols, NC},
    {"nums", SYNC_INTEGER, n_cols, 1},
};
#define T0 0
#define T1 1

static int setup(void **state) {
  tu_remove_db(DB);
  *state = tu_open_env(DB, schema, 2, 0);
  return 0;
}

static int teardown(void **state) {
  sync_env_close((sync_env *)*state);
  tu_remove_db(DB);
  return 0;
}

/* A row with every column set from n. */
static void row_vals(sync_value *v, int64_t n) {
  v[C_I] = sync_int(n);
  v[C_R] = sync_real((double)n / 4);
  v[C_S] = sync_text("text", 4);
  v[C_B] = sync_blob("\0\1\2", 3);
  v[C_REQ] = sync_int(-n);
}

static int put_n(sync_txn *txn, const char *key, int64_t n) {
  sync_value v[NC];
  row_vals(v, n);
  return sync_put(txn, T0, key, strlen(key), v, NC);
}

/* Get key's column i in txn; NOTFOUND returns INT64_MIN. */
static int64_t get_i(sync_txn *txn, const char *key) {
  sync_value v[NC];
  int rc = sync_get(txn, T0, key, strlen(key), v, NC);
  if (rc == SYNC_NOTFOUND) return INT64_MIN;
  TU_OK(rc);
  assert_int_equal(v[C_I].type, SYNC_INTEGER);
  return v[C_I].i;
}

static uint64_t count(sync_txn *txn, unsigned table) {
  uint64_t n = 12345;
  TU_OK(sync_count(txn, table, &n));
  return n;
}

static void commit_put(sync_env *env, const char *key, int64_t n) {
  sync_txn *txn;
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(put_n(txn, key, n));
  TU_OK(sync_txn_commit(txn));
}

/* Put key -> one value in column col (others NULL, req = 1) and read it
 * back, in the write txn and after commit in a read txn. */
static void round_trip(sync_env *env, const char *key, unsigned col,
                       sync_value val) {
  sync_txn *txn;
  sync_value v[NC], got[NC];
  unsigned i;
  for (i = 0; i < NC; i++) v[i] = sync_null();
  v[C_REQ] = sync_int(1);
  v[col] = val;
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_put(txn, T0, key, strlen(key), v, NC));
  TU_OK(sync_get(txn, T0, key, strlen(key), got, NC));
  TU_VALUE_EQ(&got[col], &val);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, key, strlen(key), got, NC));
  for (i = 0; i < NC; i++) TU_VALUE_EQ(&got[i], &v[i]);
  sync_txn_abort(txn);
}

/* ------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------ */

static void test_integer_round_trips_extremes(void **state) {
  sync_env *env = (sync_env *)*state;
  round_trip(env, "min", C_I, sync_int(INT64_MIN));
  round_trip(env, "max", C_I, sync_int(INT64_MAX));
  round_trip(env, "zero", C_I, sync_int(0));
  round_trip(env, "m1", C_I, sync_int(-1));
  round_trip(env, "2^32", C_I, sync_int(INT64_C(4294967296)));
}

static void test_real_round_trips_special_values(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value got[NC];
  double nz = -0.0, nan_v;
  uint64_t nan_bits = UINT64_C(0x7ff8000000000123); /* payload kept */
  memcpy(&nan_v, &nan_bits, sizeof nan_v);
  round_trip(env, "negzero", C_R, sync_real(nz));
  round_trip(env, "inf", C_R, sync_real(HUGE_VAL));
  round_trip(env, "-inf", C_R, sync_real(-HUGE_VAL));
  round_trip(env, "nan", C_R, sync_real(nan_v));
  round_trip(env, "tiny", C_R, sync_real(4.9406564584124654e-324));
  round_trip(env, "big", C_R, sync_real(1.7976931348623157e308));
  round_trip(env, "pi", C_R, sync_real(3.141592653589793));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, "negzero", 7, got, NC));
  assert_true(got[C_R].r == 0.0 && signbit(got[C_R].r));
  TU_OK(sync_get(txn, T0, "nan", 3, got, NC));
  assert_true(isnan(got[C_R].r));
  sync_txn_abort(txn);
}

static void test_text_round_trips_empty_and_one_mib(void **state) {
  sync_env *env = (sync_env *)*state;
  size_t n = (size_t)1 << 20, i;
  char *big = (char *)malloc(n);
  sync_txn *txn;
  sync_value got[NC];
  assert_non_null(big);
  for (i = 0; i < n; i++) big[i] = (char)('a' + (i * 7 + i / 26) % 26);
  round_trip(env, "empty", C_S, sync_text("", 0));
  round_trip(env, "big", C_S, sync_text(big, n));
  round_trip(env, "nul", C_S, sync_text("a\0b", 3));
  /* Empty text is TEXT of length 0, not NULL. */
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, "empty", 5, got, NC));
  assert_int_equal(got[C_S].type, SYNC_TEXT);
  assert_int_equal(got[C_S].len, 0);
  sync_txn_abort(txn);
  free(big);
}

static void test_blob_round_trips_zero_bytes(void **state) {
  sync_env *env = (sync_env *)*state;
  unsigned char b[64];
  size_t i;
  for (i = 0; i < sizeof b; i++) b[i] = (unsigned char)(i % 3 ? 0 : i);
  round_trip(env, "zeros", C_B, sync_blob(b, sizeof b));
  memset(b, 0, sizeof b);
  round_trip(env, "allzero", C_B, sync_blob(b, sizeof b));
  round_trip(env, "empty", C_B, sync_blob(b, 0));
}

static void test_null_in_nullable_column_reads_null(void **state) {
  sync_env *env = (sync_env *)*state;
  round_trip(env, "n-i", C_I, sync_null());
  round_trip(env, "n-r", C_R, sync_null());
  round_trip(env, "n-s", C_S, sync_null());
  round_trip(env, "n-b", C_B, sync_null());
}

static void test_null_in_not_null_column_is_econstraint(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  unsigned col = C_REQ;
  sync_value nul = sync_null();
  TU_OK(sync_txn_begin(env, 0, &txn));
  row_vals(v, 1);
  v[C_REQ] = sync_null();
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ECONSTRAINT);
  TU_RC(sync_contains(txn, T0, "k", 1), 0);
  TU_OK(put_n(txn, "k", 1));
  TU_RC(sync_update(txn, T0, "k", 1, &col, &nul, 1), SYNC_ECONSTRAINT);
  TU_OK(sync_get(txn, T0, "k", 1, v, NC));
  assert_true(v[C_REQ].i == -1);
  TU_OK(sync_txn_commit(txn));
}

static void test_wrong_type_is_etype(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  unsigned col;
  sync_value val;
  TU_OK(sync_txn_begin(env, 0, &txn));
  row_vals(v, 1);
  v[C_R] = sync_int(3); /* no silent conversion */
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETYPE);
  row_vals(v, 1);
  v[C_I] = sync_real(3.0);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETYPE);
  row_vals(v, 1);
  v[C_B] = sync_text("x", 1);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETYPE);
  row_vals(v, 1);
  v[C_S] = sync_blob("x", 1);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETYPE);
  row_vals(v, 1);
  v[C_S].type = 77;
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETYPE);
  TU_RC(sync_contains(txn, T0, "k", 1), 0);
  TU_OK(put_n(txn, "k", 1));
  col = C_S;
  val = sync_int(5);
  TU_RC(sync_update(txn, T0, "k", 1, &col, &val, 1), SYNC_ETYPE);
  TU_OK(sync_get(txn, T0, "k", 1, v, NC));
  assert_memory_equal(v[C_S].data, "text", 4);
  TU_OK(sync_txn_commit(txn));
}

static void test_validation_errors_leave_txn_usable(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(put_n(txn, "a", 1));
  row_vals(v, 2);
  v[C_I] = sync_text("no", 2);
  TU_RC(sync_put(txn, T0, "b", 1, v, NC), SYNC_ETYPE);
  TU_RC(sync_put(txn, T0, "", 0, v, NC), SYNC_EINVAL);
  TU_RC(sync_delete(txn, T0, "zz", 2), SYNC_NOTFOUND);
  TU_OK(put_n(txn, "c", 3));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  assert_true(get_i(txn, "a") == 1);
  assert_true(get_i(txn, "b") == INT64_MIN);
  assert_true(get_i(txn, "c") == 3);
  TU_U64(count(txn, T0), 2);
  sync_txn_abort(txn);
}

static void test_value_count_mismatch_is_einval(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC + 1];
  row_vals(v, 1);
  v[NC] = sync_int(0);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_put(txn, T0, "k", 1, v, NC - 1), SYNC_EINVAL);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC + 1), SYNC_EINVAL);
  TU_RC(sync_put(txn, T0, "k", 1, v, 0), SYNC_EINVAL);
  TU_RC(sync_contains(txn, T0, "k", 1), 0);
  TU_OK(sync_put(txn, T0, "k", 1, v, NC));
  /* get reads at most the column count. */
  TU_RC(sync_get(txn, T0, "k", 1, v, NC + 1), SYNC_EINVAL);
  TU_OK(sync_get(txn, T0, "k", 1, v, 2));
  assert_true(v[C_I].i == 1);
  TU_OK(sync_txn_commit(txn));
}

static void test_bad_table_is_einval(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  uint64_t n;
  sync_cursor *cur = NULL;
  row_vals(v, 1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_put(txn, 2, "k", 1, v, NC), SYNC_EINVAL);
  TU_RC(sync_get(txn, 2, "k", 1, v, 1), SYNC_EINVAL);
  TU_RC(sync_delete(txn, 99, "k", 1), SYNC_EINVAL);
  TU_RC(sync_count(txn, 2, &n), SYNC_EINVAL);
  TU_RC(sync_cursor_open(txn, 2, &cur), SYNC_EINVAL);
  sync_txn_abort(txn);
}

static void test_key_length_limits(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  unsigned char key[SYNC_MAX_KEY + 1];
  sync_value v[NC];
  unsigned col = C_I;
  sync_value one = sync_int(1);
  memset(key, 'k', sizeof key);
  key[0] = 0; /* keys are bytes */
  row_vals(v, 7);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_put(txn, T0, key, 0, v, NC), SYNC_EINVAL);
  TU_RC(sync_get(txn, T0, key, 0, v, NC), SYNC_EINVAL);
  TU_RC(sync_put(txn, T0, key, SYNC_MAX_KEY + 1, v, NC), SYNC_ETOOBIG);
  TU_RC(sync_get(txn, T0, key, SYNC_MAX_KEY + 1, v, NC), SYNC_ETOOBIG);
  TU_RC(sync_update(txn, T0, key, SYNC_MAX_KEY + 1, &col, &one, 1),
        SYNC_ETOOBIG);
  TU_RC(sync_delete(txn, T0, key, SYNC_MAX_KEY + 1), SYNC_ETOOBIG);
  TU_OK(sync_put(txn, T0, key, SYNC_MAX_KEY, v, NC));
  TU_OK(sync_put(txn, T0, key, 1, v, NC));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, key, SYNC_MAX_KEY, v, NC));
  assert_true(v[C_I].i == 7);
  TU_RC(sync_contains(txn, T0, key, 1), 1);
  TU_RC(sync_contains(txn, T0, key, 2), 0);
  TU_U64(count(txn, T0), 2);
  sync_txn_abort(txn);
}

static void test_value_over_max_is_etoobig(void **state) {
  sync_env *env = (sync_env *)*state;
  size_t max = (size_t)16 << 20; /* the default SYNC_MAX_VALUE */
  unsigned char *big = (unsigned char *)calloc(1, max + 1);
  sync_txn *txn;
  sync_value v[NC], got[NC];
  unsigned col = C_B;
  assert_non_null(big);
  big[max - 1] = 0xAB;
  row_vals(v, 1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  v[C_B] = sync_blob(big, max + 1);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETOOBIG);
  v[C_B] = sync_null();
  v[C_S] = sync_text((const char *)big, max + 1);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_ETOOBIG);
  TU_RC(sync_contains(txn, T0, "k", 1), 0);
  /* Exactly the maximum is fine. */
  row_vals(v, 1);
  v[C_B] = sync_blob(big, max);
  TU_OK(sync_put(txn, T0, "k", 1, v, NC));
  v[C_B] = sync_blob(big, max + 1);
  TU_RC(sync_update(txn, T0, "k", 1, &col, &v[C_B], 1), SYNC_ETOOBIG);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, "k", 1, got, NC));
  assert_int_equal(got[C_B].len, max);
  assert_memory_equal(got[C_B].data, big, max);
  sync_txn_abort(txn);
  free(big);
}

static void test_null_pointers_are_einval(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  uint64_t n;
  row_vals(v, 1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_put(txn, T0, NULL, 1, v, NC), SYNC_EINVAL);
  TU_RC(sync_put(txn, T0, "k", 1, NULL, NC), SYNC_EINVAL);
  TU_RC(sync_get(txn, T0, NULL, 1, v, NC), SYNC_EINVAL);
  TU_RC(sync_delete(txn, T0, NULL, 1), SYNC_EINVAL);
  TU_RC(sync_count(txn, T0, NULL), SYNC_EINVAL);
  TU_RC(sync_count(NULL, T0, &n), SYNC_EINVAL);
  /* A TEXT value of 5 bytes at NULL. */
  v[C_S] = sync_text(NULL, 5);
  TU_RC(sync_put(txn, T0, "k", 1, v, NC), SYNC_EINVAL);
  TU_RC(sync_contains(txn, T0, "k", 1), 0);
  sync_txn_abort(txn);
}

/* ------------------------------------------------------------------
 * Put, update, delete
 * ------------------------------------------------------------------ */

static void test_put_replaces_existing_row(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  commit_put(env, "k", 1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  row_vals(v, 2);
  v[C_S] = sync_null();
  TU_OK(sync_put(txn, T0, "k", 1, v, NC));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, "k", 1, v, NC));
  assert_true(v[C_I].i == 2);
  assert_int_equal(v[C_S].type, SYNC_NULL);
  TU_U64(count(txn, T0), 1);
  sync_txn_abort(txn);
}

static void test_update_changes_only_chosen_columns(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC], want[NC];
  unsigned cols[2] = {C_S, C_I};
  sync_value vals[2];
  commit_put(env, "k", 10);
  vals[0] = sync_text("changed", 7);
  vals[1] = sync_int(99);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_update(txn, T0, "k", 1, cols, vals, 2));
  TU_OK(sync_txn_commit(txn));
  row_vals(want, 10);
  want[C_S] = vals[0];
  want[C_I] = vals[1];
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, "k", 1, v, NC));
  TU_VALUE_EQ(&v[C_I], &want[C_I]);
  TU_VALUE_EQ(&v[C_R], &want[C_R]);
  TU_VALUE_EQ(&v[C_S], &want[C_S]);
  TU_VALUE_EQ(&v[C_B], &want[C_B]);
  TU_VALUE_EQ(&v[C_REQ], &want[C_REQ]);
  sync_txn_abort(txn);
}

static void test_update_to_null_clears_column(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  unsigned col = C_B;
  sync_value nul = sync_null();
  commit_put(env, "k", 3);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_update(txn, T0, "k", 1, &col, &nul, 1));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, T0, "k", 1, v, NC));
  assert_int_equal(v[C_B].type, SYNC_NULL);
  assert_true(v[C_I].i == 3);
  sync_txn_abort(txn);
}

static void test_update_missing_row_is_notfound(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  unsigned col = C_I;
  sync_value one = sync_int(1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_update(txn, T0, "nope", 4, &col, &one, 1), SYNC_NOTFOUND);
  TU_RC(sync_contains(txn, T0, "nope", 4), 0);
  /* Also for a deleted row. */
  TU_OK(put_n(txn, "gone", 1));
  TU_OK(sync_delete(txn, T0, "gone", 4));
  TU_RC(sync_update(txn, T0, "gone", 4, &col, &one, 1), SYNC_NOTFOUND);
  TU_RC(sync_contains(txn, T0, "gone", 4), 0);
  TU_OK(sync_txn_commit(txn));
}

static void test_get_returns_notfound_after_delete(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  commit_put(env, "k", 1);
  commit_put(env, "other", 2);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "k", 1));
  TU_RC(sync_get(txn, T0, "k", 1, v, NC), SYNC_NOTFOUND);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_RC(sync_get(txn, T0, "k", 1, v, NC), SYNC_NOTFOUND);
  assert_true(get_i(txn, "other") == 2);
  sync_txn_abort(txn);
}

static void test_delete_missing_row_is_notfound(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  commit_put(env, "k", 1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_delete(txn, T0, "never", 5), SYNC_NOTFOUND);
  TU_OK(sync_delete(txn, T0, "k", 1));
  TU_RC(sync_delete(txn, T0, "k", 1), SYNC_NOTFOUND);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_delete(txn, T0, "k", 1), SYNC_NOTFOUND);
  sync_txn_abort(txn);
}

static void test_reinsert_after_delete_gives_new_row(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  commit_put(env, "k", 1);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "k", 1));
  TU_OK(sync_txn_commit(txn));
  commit_put(env, "k", 2);
  TU_OK(sync_txn_begin(env, 0, &txn));
  assert_true(get_i(txn, "k") == 2);
  /* Delete and re-insert inside one transaction too. */
  TU_OK(sync_delete(txn, T0, "k", 1));
  TU_OK(put_n(txn, "k", 3));
  assert_true(get_i(txn, "k") == 3);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  assert_true(get_i(txn, "k") == 3);
  TU_U64(count(txn, T0), 1);
  TU_RC(sync_contains(txn, T0, "k", 1), 1);
  sync_txn_abort(txn);
}

static void test_contains_reports_live_rows_only(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_contains(txn, T0, "a", 1), 0);
  TU_OK(put_n(txn, "a", 1));
  TU_OK(put_n(txn, "b", 1));
  TU_RC(sync_contains(txn, T0, "a", 1), 1);
  TU_OK(sync_delete(txn, T0, "b", 1));
  TU_RC(sync_contains(txn, T0, "b", 1), 0);
  TU_RC(sync_contains(txn, T0, "ab", 2), 0);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_RC(sync_contains(txn, T0, "a", 1), 1);
  TU_RC(sync_contains(txn, T0, "b", 1), 0);
  sync_txn_abort(txn);
}

static void test_count_follows_puts_deletes_reinserts_and_aborts(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  char key[16];
  int i;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(count(txn, T0), 0);
  TU_U64(count(txn, T1), 0);
  sync_txn_abort(txn);

  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < 10; i++) {
    sprintf(key, "k%d", i);
    TU_OK(put_n(txn, key, i));
  }
  TU_U64(count(txn, T0), 10);
  TU_OK(put_n(txn, "k3", 33)); /* replace: no new row */
  TU_U64(count(txn, T0), 10);
  TU_OK(sync_txn_commit(txn));

  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "k1", 2));
  TU_OK(sync_delete(txn, T0, "k2", 2));
  TU_U64(count(txn, T0), 8);
  TU_OK(put_n(txn, "k1", 1));
  TU_U64(count(txn, T0), 9);
  TU_OK(sync_txn_commit(txn));

  /* An aborted transaction changes no count. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "k5", 2));
  TU_OK(put_n(txn, "new", 1));
  TU_OK(put_n(txn, "new2", 1));
  TU_U64(count(txn, T0), 10);
  sync_txn_abort(txn);

  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(count(txn, T0), 9);
  TU_U64(count(txn, T1), 0);
  sync_txn_abort(txn);

  /* And it survives a reopen. */
  sync_env_close(env);
  env = tu_open_env(DB, schema, 2, 0);
  *state = env;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(count(txn, T0), 9);
  sync_txn_abort(txn);
}

static void test_abort_discards_everything(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  unsigned col = C_I;
  sync_value v = sync_int(1000);
  commit_put(env, "keep", 1);
  commit_put(env, "gone", 2);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(put_n(txn, "new", 3));
  TU_OK(sync_update(txn, T0, "keep", 4, &col, &v, 1));
  TU_OK(sync_delete(txn, T0, "gone", 4));
  sync_txn_abort(txn);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  assert_true(get_i(txn, "keep") == 1);
  assert_true(get_i(txn, "gone") == 2);
  assert_true(get_i(txn, "new") == INT64_MIN);
  TU_U64(count(txn, T0), 2);
  sync_txn_abort(txn);
}

static void test_large_txn_is_all_or_nothing(void **state) {
  enum { N = 5000 };
  sync_env *env = (sync_env *)*state;
  sync_txn *txn, *rd;
  char key[16];
  int i;
  /* Aborted: none of it. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < N; i++) {
    sprintf(key, "r%05d", i);
    TU_OK(put_n(txn, key, i));
  }
  sync_txn_abort(txn);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &rd));
  TU_U64(count(rd, T0), 0);
  TU_RC(sync_contains(rd, T0, "r00000", 6), 0);
  TU_RC(sync_contains(rd, T0, "r04999", 6), 0);
  sync_txn_abort(rd);

  /* Committed: a reader that started before sees none, one after all. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < N; i++) {
    sprintf(key, "r%05d", i);
    TU_OK(put_n(txn, key, i));
  }
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &rd));
  TU_U64(count(rd, T0), 0);
  TU_OK(sync_txn_commit(txn));
  TU_U64(count(rd, T0), 0);
  TU_RC(sync_contains(rd, T0, "r02500", 6), 0);
  sync_txn_abort(rd);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &rd));
  TU_U64(count(rd, T0), N);
  for (i = 0; i < N; i += 97) {
    sprintf(key, "r%05d", i);
    assert_true(get_i(rd, key) == i);
  }
  sync_txn_abort(rd);
}

/* ------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------ */

static void test_put_many_writes_rows_and_reports_done(void **state) {
  enum { N = 6 };
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  static const char *names[N] = {"b0", "b1", "b2", "b3", "b4", "b5"};
  sync_key keys[N];
  sync_value vals[N * NC];
  size_t done = 999, i;
  for (i = 0; i < N; i++) {
    keys[i].data = names[i];
    keys[i].len = 2;
    row_vals(vals + i * NC, (int64_t)i * 10);
  }
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_put_many(txn, T0, keys, vals, N, &done));
  assert_int_equal(done, N);
  TU_OK(sync_put_many(txn, T0, keys, vals, N, NULL));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(count(txn, T0), N);
  for (i = 0; i < N; i++) assert_true(get_i(txn, names[i]) == (int64_t)i * 10);
  sync_txn_abort(txn);
}

static void test_put_many_stops_at_first_failure(void **state) {
  enum { N = 6 };
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  static const char *names[N] = {"b0", "b1", "b2", "b3", "b4", "b5"};
  sync_key keys[N];
  sync_value vals[N * NC];
  size_t done = 999, i;
  for (i = 0; i < N; i++) {
    keys[i].data = names[i];
    keys[i].len = 2;
    row_vals(vals + i * NC, (int64_t)i);
  }
  vals[3 * NC + C_R] = sync_text("bad", 3);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_put_many(txn, T0, keys, vals, N, &done), SYNC_ETYPE);
  assert_int_equal(done, 3);
  TU_RC(sync_contains(txn, T0, "b2", 2), 1);
  TU_RC(sync_contains(txn, T0, "b3", 2), 0);
  TU_RC(sync_contains(txn, T0, "b4", 2), 0);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(count(txn, T0), 3);
  sync_txn_abort(txn);
}

static void test_get_many_fills_found_and_values(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_key keys[4] = {{"a", 1}, {"missing", 7}, {"c", 1}, {"deleted", 7}};
  sync_value vals[4 * 2];
  int found[4] = {7, 7, 7, 7};
  size_t i;
  commit_put(env, "a", 1);
  commit_put(env, "c", 3);
  commit_put(env, "deleted", 4);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "deleted", 7));
  TU_OK(sync_txn_commit(txn));
  for (i = 0; i < 8; i++) vals[i] = sync_int(-42);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get_many(txn, T0, keys, 4, vals, 2, found));
  assert_int_equal(found[0], 1);
  assert_int_equal(found[1], 0);
  assert_int_equal(found[2], 1);
  assert_int_equal(found[3], 0);
  assert_true(vals[0].type == SYNC_INTEGER && vals[0].i == 1);
  assert_true(vals[1].type == SYNC_REAL && vals[1].r == 0.25);
  assert_int_equal(vals[2].type, SYNC_NULL);
  assert_int_equal(vals[3].type, SYNC_NULL);
  assert_true(vals[4].type == SYNC_INTEGER && vals[4].i == 3);
  assert_int_equal(vals[6].type, SYNC_NULL);
  assert_int_equal(vals[7].type, SYNC_NULL);
  sync_txn_abort(txn);
}

static void test_delete_many_counts_and_skips_absent(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_key keys[5] = {{"a", 1}, {"nope", 4}, {"c", 1}, {"a", 1}, {"d", 1}};
  size_t n = 999;
  commit_put(env, "a", 1);
  commit_put(env, "b", 2);
  commit_put(env, "c", 3);
  commit_put(env, "d", 4);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete_many(txn, T0, keys, 5, &n));
  assert_int_equal(n, 3);
  TU_OK(sync_delete_many(txn, T0, keys, 5, &n));
  assert_int_equal(n, 0);
  TU_OK(sync_delete_many(txn, T0, keys, 1, NULL));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(count(txn, T0), 1);
  assert_true(get_i(txn, "b") == 2);
  sync_txn_abort(txn);
}

/* ------------------------------------------------------------------
 * Keys and cursors
 * ------------------------------------------------------------------ */

static void test_key_int_decode_round_trips(void **state) {
  static const int64_t vals[] = {
      INT64_MIN, INT64_MIN + 1, -65536, -256,          -1,       0, 1,
      255,       256,           65536,  INT64_MAX - 1, INT64_MAX};
  size_t i, n = sizeof vals / sizeof vals[0];
  unsigned char k[8], prev[8];
  (void)state;
  for (i = 0; i < n; i++) {
    sync_key_int(vals[i], k);
    assert_true(sync_key_int_decode(k) == vals[i]);
    /* Byte order follows numeric order. */
    if (i) assert_true(memcmp(prev, k, 8) < 0);
    memcpy(prev, k, 8);
  }
}

static void test_integer_keys_iterate_in_numeric_order(void **state) {
  static const int64_t ins[] = {5,  -5,   INT64_MAX, 0, 256,
                                -1, -256, INT64_MIN, 1, 255};
  static const int64_t sorted[] = {INT64_MIN, -256, -5,  -1,  0,
                                   1,         5,    255, 256, INT64_MAX};
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key key;
  sync_value v;
  size_t i, n = sizeof ins / sizeof ins[0];
  unsigned char k[8];
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < n; i++) {
    sync_value val = sync_int(ins[i] / 2);
    sync_key_int(ins[i], k);
    TU_OK(sync_put(txn, T1, k, 8, &val, 1));
  }
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_cursor_open(txn, T1, &cur));
  for (i = 0; i < n; i++) {
    TU_OK(sync_cursor_next(cur, &key, &v, 1));
    assert_int_equal(key.len, 8);
    assert_true(sync_key_int_decode((const unsigned char *)key.data) ==
                sorted[i]);
    assert_true(v.i == sorted[i] / 2);
  }
  TU_RC(sync_cursor_next(cur, &key, &v, 1), SYNC_NOTFOUND);
  TU_RC(sync_cursor_next(cur, &key, &v, 1), SYNC_NOTFOUND);
  sync_cursor_close(cur);
  sync_txn_abort(txn);
}

/* Iterate table T0 with cur; check the keys are exactly want[0..n). */
static void expect_keys(sync_cursor *cur, const char *const *want, size_t n) {
  sync_key key;
  sync_value v[NC];
  size_t i;
  for (i = 0; i < n; i++) {
    int rc = sync_cursor_next(cur, &key, v, NC);
    if (rc) fail_msg("row %zu (\"%s\"): cursor returned %d", i, want[i], rc);
    if (key.len != strlen(want[i]) || memcmp(key.data, want[i], key.len))
      fail_msg("row %zu: got \"%.*s\", expected \"%s\"", i, (int)key.len,
               (const char *)key.data, want[i]);
  }
  TU_RC(sync_cursor_next(cur, &key, v, NC), SYNC_NOTFOUND);
}

static void test_cursor_iterates_in_key_order_skipping_deleted(void **state) {
  static const char *ins[] = {"b", "aa", "a", "ba", "c", "ab", "a\x01", "bb"};
  static const char *want[] = {"a", "a\x01", "aa", "b", "bb", "c"};
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key key;
  sync_value v[NC];
  size_t i;
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < sizeof ins / sizeof ins[0]; i++)
    TU_OK(put_n(txn, ins[i], (int64_t)i));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "ab", 2));
  TU_OK(sync_delete(txn, T0, "ba", 2));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_cursor_open(txn, T0, &cur));
  expect_keys(cur, want, sizeof want / sizeof want[0]);
  /* Values come with the keys. */
  TU_OK(sync_cursor_range(cur, "c", 1, NULL, 0));
  TU_OK(sync_cursor_next(cur, &key, v, NC));
  assert_true(v[C_I].i == 4);
  assert_true(v[C_REQ].i == -4);
  assert_memory_equal(v[C_B].data, "\0\1\2", 3);
  sync_cursor_close(cur);
  TU_OK(sync_cursor_open(txn, T1, &cur));
  TU_RC(sync_cursor_next(cur, &key, v, 1), SYNC_NOTFOUND);
  sync_cursor_close(cur);
  sync_txn_abort(txn);
}

static void test_cursor_range_is_half_open(void **state) {
  static const char *all[] = {"k00", "k01", "k02", "k03", "k04",
                              "k05", "k06", "k07", "k08", "k09"};
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key key;
  sync_value v[NC];
  size_t i;
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < 10; i++) TU_OK(put_n(txn, all[i], (int64_t)i));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_cursor_open(txn, T0, &cur));

  TU_OK(sync_cursor_range(cur, "k03", 3, "k06", 3));
  expect_keys(cur, all + 3, 3);
  TU_OK(sync_cursor_range(cur, NULL, 0, "k02", 3));
  expect_keys(cur, all, 2);
  TU_OK(sync_cursor_range(cur, "k08", 3, NULL, 0));
  expect_keys(cur, all + 8, 2);
  TU_OK(sync_cursor_range(cur, NULL, 0, NULL, 0));
  expect_keys(cur, all, 10);
  /* Bounds that are not keys. */
  TU_OK(sync_cursor_range(cur, "k035", 4, "k065", 4));
  expect_keys(cur, all + 4, 3);
  TU_OK(sync_cursor_range(cur, "k", 1, "k01", 3));
  expect_keys(cur, all, 1);
  /* Empty ranges. */
  TU_OK(sync_cursor_range(cur, "k05", 3, "k05", 3));
  expect_keys(cur, NULL, 0);
  TU_OK(sync_cursor_range(cur, "z", 1, NULL, 0));
  expect_keys(cur, NULL, 0);
  /* Setting a range restarts from its beginning. */
  TU_OK(sync_cursor_range(cur, "k01", 3, NULL, 0));
  TU_OK(sync_cursor_next(cur, &key, v, NC));
  TU_OK(sync_cursor_next(cur, &key, v, NC));
  TU_OK(sync_cursor_range(cur, "k01", 3, "k03", 3));
  expect_keys(cur, all + 1, 2);
  sync_cursor_close(cur);
  sync_txn_abort(txn);
}

static void test_cursor_continues_after_last_key_across_writes(void **state) {
  static const char *all[] = {"k00", "k01", "k02", "k03", "k04",
                              "k05", "k06", "k07", "k08", "k09"};
  static const char *rest[] = {"k05", "k055", "k07", "k08", "k09"};
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key key;
  sync_value v[NC];
  size_t i;
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < 10; i++) TU_OK(put_n(txn, all[i], (int64_t)i));
  TU_OK(sync_cursor_open(txn, T0, &cur));
  for (i = 0; i < 5; i++) {
    TU_OK(sync_cursor_next(cur, &key, v, NC));
    assert_memory_equal(key.data, all[i], 3);
  }
  /* Behind the cursor: not seen; ahead: seen; deleted ahead: skipped;
   * the last key returned itself rewritten: not repeated. */
  TU_OK(put_n(txn, "k015", 1));
  TU_OK(put_n(txn, "k055", 1));
  TU_OK(sync_delete(txn, T0, "k06", 3));
  TU_OK(put_n(txn, "k04", 44));
  expect_keys(cur, rest, 5);
  sync_cursor_close(cur);
  TU_OK(sync_txn_commit(txn));
}

static void test_cursor_continues_after_deleting_its_last_key(void **state) {
  static const char *all[] = {"k0", "k1", "k2", "k3", "k4"};
  static const char *rest[] = {"k3", "k4"};
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key key;
  sync_value v[NC];
  size_t i;
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < 5; i++) TU_OK(put_n(txn, all[i], (int64_t)i));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_cursor_open(txn, T0, &cur));
  for (i = 0; i < 3; i++) TU_OK(sync_cursor_next(cur, &key, v, NC));
  assert_memory_equal(key.data, "k2", 2);
  TU_OK(sync_delete(txn, T0, "k2", 2));
  TU_OK(sync_delete(txn, T0, "k1", 2));
  expect_keys(cur, rest, 2);
  sync_cursor_close(cur);
  TU_OK(sync_txn_commit(txn));
}

static void test_cursor_sees_uncommitted_writes_of_its_txn(void **state) {
  static const char *want[] = {"a", "c"};
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  commit_put(env, "a", 1);
  commit_put(env, "b", 2);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_delete(txn, T0, "b", 1));
  TU_OK(put_n(txn, "c", 3));
  TU_OK(sync_cursor_open(txn, T0, &cur));
  expect_keys(cur, want, 2);
  sync_cursor_close(cur);
  sync_txn_abort(txn);
}

/* ------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------ */

static void test_read_txn_keeps_its_snapshot(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *old, *w, *fresh;
  sync_cursor *cur;
  unsigned col = C_I;
  sync_value v = sync_int(500);
  static const char *before[] = {"a", "b", "c"};
  static const char *after[] = {"a", "c", "d"};
  commit_put(env, "a", 1);
  commit_put(env, "b", 2);
  commit_put(env, "c", 3);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &old));
  assert_true(get_i(old, "a") == 1);

  TU_OK(sync_txn_begin(env, 0, &w));
  TU_OK(sync_update(w, T0, "a", 1, &col, &v, 1));
  TU_OK(sync_delete(w, T0, "b", 1));
  TU_OK(put_n(w, "d", 4));
  TU_OK(put_n(w, "e", 5));
  TU_OK(sync_delete(w, T0, "e", 1));
  TU_OK(sync_txn_commit(w));

  /* The old reader: values, count, iteration as before. */
  assert_true(get_i(old, "a") == 1);
  assert_true(get_i(old, "b") == 2);
  assert_true(get_i(old, "d") == INT64_MIN);
  TU_U64(count(old, T0), 3);
  TU_OK(sync_cursor_open(old, T0, &cur));
  expect_keys(cur, before, 3);
  sync_cursor_close(cur);

  /* A new reader sees the commit. */
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &fresh));
  assert_true(get_i(fresh, "a") == 500);
  assert_true(get_i(fresh, "b") == INT64_MIN);
  assert_true(get_i(fresh, "d") == 4);
  TU_U64(count(fresh, T0), 3);
  TU_OK(sync_cursor_open(fresh, T0, &cur));
  expect_keys(cur, after, 3);
  sync_cursor_close(cur);
  sync_txn_abort(fresh);
  sync_txn_abort(old);
}

static void test_rdonly_txn_refuses_writes(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_value v[NC];
  unsigned col = C_I;
  sync_key k = {"k", 1};
  size_t n;
  commit_put(env, "k", 1);
  row_vals(v, 2);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_RC(sync_put(txn, T0, "x", 1, v, NC), SYNC_EREADONLY);
  TU_RC(sync_update(txn, T0, "k", 1, &col, v, 1), SYNC_EREADONLY);
  TU_RC(sync_delete(txn, T0, "k", 1), SYNC_EREADONLY);
  TU_RC(sync_put_many(txn, T0, &k, v, 1, &n), SYNC_EREADONLY);
  TU_RC(sync_delete_many(txn, T0, &k, 1, &n), SYNC_EREADONLY);
  assert_true(get_i(txn, "k") == 1);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  assert_true(get_i(txn, "k") == 1);
  TU_U64(count(txn, T0), 1);
  sync_txn_abort(txn);
}

static void test_read_values_stay_valid_until_txn_end(void **state) {
  enum { N = 50, LEN = 3000 };
  sync_env *env = (sync_env *)*state;
  sync_txn *rd, *w;
  sync_value got[N][NC];
  unsigned char blob[LEN];
  char key[16];
  int i, j;
  TU_OK(sync_txn_begin(env, 0, &w));
  for (i = 0; i < N; i++) {
    sync_value v[NC];
    row_vals(v, i);
    memset(blob, i, LEN);
    v[C_B] = sync_blob(blob, LEN);
    sprintf(key, "v%02d", i);
    TU_OK(sync_put(w, T0, key, strlen(key), v, NC));
  }
  TU_OK(sync_txn_commit(w));

  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &rd));
  for (i = 0; i < N; i++) {
    sprintf(key, "v%02d", i);
    TU_OK(sync_get(rd, T0, key, strlen(key), got[i], NC));
  }
  /* Rewrite and delete every row, several times, in other txns. */
  for (j = 0; j < 3; j++) {
    TU_OK(sync_txn_begin(env, 0, &w));
    for (i = 0; i < N; i++) {
      sync_value v[NC];
      row_vals(v, 1000 + i);
      memset(blob, 0xEE, LEN);
      v[C_B] = sync_blob(blob, LEN);
      sprintf(key, "v%02d", i);
      if (j == 2)
        TU_OK(sync_delete(w, T0, key, strlen(key)));
      else
        TU_OK(sync_put(w, T0, key, strlen(key), v, NC));
    }
    TU_OK(sync_txn_commit(w));
  }
  /* Every value read earlier is intact. */
  for (i = 0; i < N; i++) {
    assert_true(got[i][C_I].i == i);
    assert_int_equal(got[i][C_B].len, LEN);
    memset(blob, i, LEN);
    assert_memory_equal(got[i][C_B].data, blob, LEN);
    assert_memory_equal(got[i][C_S].data, "text", 4);
  }
  sync_txn_abort(rd);
}

static void test_txn_version_starts_at_zero(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(sync_txn_version(txn), 0);
  sync_txn_abort(txn);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_U64(sync_txn_version(txn), 0);
  TU_OK(put_n(txn, "k", 1));
  TU_U64(sync_txn_version(txn), 0);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_U64(sync_txn_version(txn), 1);
  sync_txn_abort(txn);
}

static void test_cursor_left_open_dies_with_txn(void **state) {
  sync_env *env = (sync_env *)*state;
  sync_txn *txn;
  sync_cursor *cur;
  sync_key key;
  sync_value v[NC];
  commit_put(env, "a", 1);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_cursor_open(txn, T0, &cur));
  sync_txn_abort(txn);
  /* docs/API.md: the next call on it returns SYNC_EINVAL; close frees. */
  TU_RC(sync_cursor_next(cur, &key, v, NC), SYNC_EINVAL);
  sync_cursor_close(cur);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_integer_round_trips_extremes),
      T(test_real_round_trips_special_values),
      T(test_text_round_trips_empty_and_one_mib),
      T(test_blob_round_trips_zero_bytes),
      T(test_null_in_nullable_column_reads_null),
      T(test_null_in_not_null_column_is_econstraint),
      T(test_wrong_type_is_etype),
      T(test_validation_errors_leave_txn_usable),
      T(test_value_count_mismatch_is_einval),
      T(test_bad_table_is_einval),
      T(test_key_length_limits),
      T(test_value_over_max_is_etoobig),
      T(test_null_pointers_are_einval),
      T(test_put_replaces_existing_row),
      T(test_update_changes_only_chosen_columns),
      T(test_update_to_null_clears_column),
      T(test_update_missing_row_is_notfound),
      T(test_get_returns_notfound_after_delete),
      T(test_delete_missing_row_is_notfound),
      T(test_reinsert_after_delete_gives_new_row),
      T(test_contains_reports_live_rows_only),
      T(test_count_follows_puts_deletes_reinserts_and_aborts),
      T(test_abort_discards_everything),
      T(test_large_txn_is_all_or_nothing),
      T(test_put_many_writes_rows_and_reports_done),
      T(test_put_many_stops_at_first_failure),
      T(test_get_many_fills_found_and_values),
      T(test_delete_many_counts_and_skips_absent),
      T(test_key_int_decode_round_trips),
      T(test_integer_keys_iterate_in_numeric_order),
      T(test_cursor_iterates_in_key_order_skipping_deleted),
      T(test_cursor_range_is_half_open),
      T(test_cursor_continues_after_last_key_across_writes),
      T(test_cursor_continues_after_deleting_its_last_key),
      T(test_cursor_sees_uncommitted_writes_of_its_txn),
      T(test_read_txn_keeps_its_snapshot),
      T(test_rdonly_txn_refuses_writes),
      T(test_read_values_stay_valid_until_txn_end),
      T(test_txn_version_starts_at_zero),
      T(test_cursor_left_open_dies_with_txn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
