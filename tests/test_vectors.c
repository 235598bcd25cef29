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

#include <xxhash.h>

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

/* ---------------------------------------------------------------------
 * The digest recomputed from docs/FORMAT.md ("Fingerprints", "Digest")
 * by this file alone, bytes built by hand: a second implementation that
 * must agree with the library.
 * ------------------------------------------------------------------- */
#define FP_SEED_CONTENT UINT64_C(0x73796e632d633031) /* "sync-c01" */

typedef struct fp_buf {
  unsigned char b[256];
  size_t n;
} fp_buf;

static void fp_var(fp_buf *f, uint64_t v) {
  while (v >= 0x80) {
    f->b[f->n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  f->b[f->n++] = (unsigned char)v;
}

static void fp_bytes(fp_buf *f, const void *p, size_t n) {
  memcpy(f->b + f->n, p, n);
  f->n += n;
}

static void fp_le64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* var j, tag, payload of one non-NULL column. */
static void fp_int(fp_buf *f, unsigned j, int64_t v) {
  fp_var(f, j);
  f->b[f->n++] = SYNC_INTEGER;
  fp_var(f, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void fp_real(fp_buf *f, unsigned j, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  fp_var(f, j);
  f->b[f->n++] = SYNC_REAL;
  fp_le64(f->b + f->n, u);
  f->n += 8;
}

static void fp_lenval(fp_buf *f, unsigned j, int tag, const void *p,
                      size_t n) {
  fp_var(f, j);
  f->b[f->n++] = (unsigned char)tag;
  fp_var(f, n);
  fp_bytes(f, p, n);
}

static void fp_key(fp_buf *f, const void *k, size_t n) {
  f->n = 0;
  fp_var(f, n);
  fp_bytes(f, k, n);
}

static uint64_t fp_table_digest(uint64_t sum, uint64_t live) {
  unsigned char b[16];
  fp_le64(b, sum);
  fp_le64(b + 8, live);
  return XXH3_64bits_withSeed(b, 16, 0);
}

static void test_digest_follows_the_spec(void **state) {
  static const unsigned char blob[] = {0x00, 0xff, 0x10, 0x80};
  sync_env *env = tu_open_env(DB, tables, 2, 0);
  sync_txn *txn;
  fp_buf f;
  unsigned char k[8], all[16];
  uint64_t sum0 = 0, sum1 = 0, d0, d1, h0 = 0, h1 = 0, hall = 0;
  (void)state;
  put_rows(env);
  /* things: "a", "bb", "c" live ("gone" is a tombstone: left out). */
  fp_key(&f, "a", 1);
  fp_int(&f, 0, -123456789);
  fp_real(&f, 1, -0.5);
  fp_lenval(&f, 2, SYNC_TEXT, "alpha", 5);
  fp_lenval(&f, 3, SYNC_BLOB, blob, sizeof blob);
  sum0 += XXH3_64bits_withSeed(f.b, f.n, FP_SEED_CONTENT);
  fp_key(&f, "bb", 2);
  fp_int(&f, 0, INT64_MAX);
  fp_real(&f, 1, 1e300);
  fp_lenval(&f, 3, SYNC_BLOB, "", 0); /* column 2 is NULL: absent */
  sum0 += XXH3_64bits_withSeed(f.b, f.n, FP_SEED_CONTENT);
  fp_key(&f, "c", 1);
  fp_real(&f, 1, 0.0);
  fp_lenval(&f, 2, SYNC_TEXT, "", 0);
  sum0 += XXH3_64bits_withSeed(f.b, f.n, FP_SEED_CONTENT);
  /* counts: key -5, n = 42; "seen" is local: left out. */
  sync_key_int(-5, k);
  fp_key(&f, k, 8);
  fp_int(&f, 0, 42);
  sum1 += XXH3_64bits_withSeed(f.b, f.n, FP_SEED_CONTENT);
  d0 = fp_table_digest(sum0, 3);
  d1 = fp_table_digest(sum1, 1);
  fp_le64(all, d0);
  fp_le64(all + 8, d1);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_digest(txn, 0, &h0));
  TU_OK(sync_digest(txn, 1, &h1));
  TU_OK(sync_digest(txn, SYNC_ALL_TABLES, &hall));
  sync_txn_abort(txn);
  TU_U64(h0, d0);
  TU_U64(h1, d1);
  TU_U64(hall, XXH3_64bits_withSeed(all, 16, 0));
  sync_env_close(env);
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
  TU_U64(h0, UINT64_C(0x6c9e9416a7c392b5));
  TU_U64(h1, UINT64_C(0xac0f6eac9079341e));
  TU_U64(all, UINT64_C(0xe7c06a85d48abf5a));
  sync_env_close(env);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_int_keys_have_fixed_bytes),
      cmocka_unit_test_setup_teardown(test_schema_hash_is_fixed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_digest_is_fixed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_digest_follows_the_spec, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
