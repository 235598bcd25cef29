/*
 * test_vectors.c - values that must come out the same on every
 * architecture: the integer key encoding, the schema hash peers compare in
 * the handshake, and the content digest (docs/FORMAT.md) that proves two
 * replicas hold the same rows.  The expected values were computed once on
 * x86_64; `make cross-test` runs this file on aarch64, 32-bit armhf and
 * big-endian s390x, where an encoding that leaked the host's byte order or
 * word size would give other bytes.
 */
#include "testutil.h"

#define DB "t_vectors.db"

static const sync_column_def cols[] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"t", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
};
static const sync_column_def local_cols[] = {
    {"n", SYNC_INTEGER, 0},
    {"seen", SYNC_INTEGER, SYNC_COL_LOCAL},
};
static const sync_table_def tables[] = {
    {"things", SYNC_TEXT, cols, 4},
    {"counts", SYNC_INTEGER, local_cols, 2},
};

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

static void test_int_keys_have_fixed_bytes(void **state) {
  static const struct {
    int64_t v;
    unsigned char k[8];
  } vec[] = {
      {0, {0x80, 0, 0, 0, 0, 0, 0, 0}},
      {1, {0x80, 0, 0, 0, 0, 0, 0, 1}},
      {-1, {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
      {INT64_C(0x0102030405060708), {0x81, 2, 3, 4, 5, 6, 7, 8}},
      {INT64_MIN, {0, 0, 0, 0, 0, 0, 0, 0}},
  };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof vec / sizeof vec[0]; i++) {
    unsigned char k[8];
    sync_key_int(vec[i].v, k);
    assert_memory_equal(k, vec[i].k, 8);
    assert_true(sync_key_int_decode(vec[i].k) == vec[i].v);
  }
}

static void test_schema_hash_is_fixed(void **state) {
  sync_env *env = tu_open_env(DB, tables, 2, 0);
  uint64_t version = 0, hash = 0;
  (void)state;
  TU_OK(sync_env_schema_info(env, &version, &hash));
  TU_U64(version, 1);
  TU_U64(hash, UINT64_C(0x971ddf3f7788d880));
  sync_env_close(env);
}

/* Rows of every type, negative and extreme integers, NULLs and empty
 * values, a deleted row, and a local column that must not count. */
static void put_rows(sync_env *env) {
  static const unsigned char blob[] = {0x00, 0xff, 0x10, 0x80};
  sync_txn *txn;
  sync_value v[4];
  unsigned char k[8];
  TU_OK(sync_txn_begin(env, 0, &txn));
  v[0] = sync_int(-123456789);
  v[1] = sync_real(-0.5);
  v[2] = sync_text("alpha", 5);
  v[3] = sync_blob(blob, sizeof blob);
  TU_OK(sync_put(txn, 0, "a", 1, v, 4));
  v[0] = sync_int(INT64_MAX);
  v[1] = sync_real(1e300);
  v[2] = sync_null();
  v[3] = sync_blob("", 0);
  TU_OK(sync_put(txn, 0, "bb", 2, v, 4));
  v[0] = sync_int(7);
  TU_OK(sync_put(txn, 0, "gone", 4, v, 4));
  v[0] = sync_null();
  v[1] = sync_real(0.0);
  v[2] = sync_text("", 0);
  v[3] = sync_null();
  TU_OK(sync_put(txn, 0, "c", 1, v, 4));
  TU_OK(sync_delete(txn, 0, "gone", 4));
  sync_key_int(-5, k);
  v[0] = sync_int(42);
  v[1] = sync_int(1000);
  TU_OK(sync_put(txn, 1, k, 8, v, 2));
  TU_OK(sync_txn_commit(txn));
}

static void test_digest_is_fixed(void **state) {
  sync_env *env = tu_open_env(DB, tables, 2, 0);
  sync_txn *txn;
  uint64_t h0 = 0, h1 = 0, all = 0;
  (void)state;
  put_rows(env);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_digest(txn, 0, &h0));
  TU_OK(sync_digest(txn, 1, &h1));
  TU_OK(sync_digest(txn, SYNC_ALL_TABLES, &all));
  sync_txn_abort(txn);
  TU_U64(h0, UINT64_C(0xdf8b417760ef93f7));
  TU_U64(h1, UINT64_C(0x0d41660490e8b092));
  TU_U64(all, UINT64_C(0x7867ccbaf07edf0e));
  sync_env_close(env);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_int_keys_have_fixed_bytes),
      cmocka_unit_test_setup_teardown(test_schema_hash_is_fixed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_digest_is_fixed, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
