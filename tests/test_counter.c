/*
 * test_counter.c - SYNC_COUNTER columns (PN-counters): local adds and
 * their errors, storage and format version, the frame encoding and a
 * decoder facing hostile contributions, and a property test: replicas
 * add concurrently (and write LWW columns, delete and re-insert) while
 * chunks are duplicated, held back, delivered ahead or dropped and runs
 * are cut, a quarter of the scenarios collecting every tombstone and
 * writing on; at the end every replica's counter equals the model's sum
 * of the adds made in the row's final incarnation, and digests agree.
 * Also: sessions over a faulty link, a copied file, range repair, relay
 * rights and a relay without the column, allocation failures.
 *
 * SYNC_TEST_SEED and SYNC_TEST_COUNTER_SCENARIOS choose the property
 * test's scenarios (scenario i uses seed + i); a failure prints its seed.
 */
#include "sess_util.h"

#include <inttypes.h>
#include <xxhash.h>

/* key TEXT; n INTEGER, c COUNTER, s TEXT, d COUNTER */
#define CT_N 0u
#define CT_C 1u
#define CT_S 2u
#define CT_D 3u
#define CT_NCOLS 4u
static const sync_column_def ct_cols[CT_NCOLS] = {
    {"n", SYNC_INTEGER, 0},
    {"c", SYNC_COUNTER, 0},
    {"s", SYNC_TEXT, 0},
    {"d", SYNC_COUNTER, 0},
};
static const sync_table_def ct_tables[1] = {
    {"t", SYNC_TEXT, ct_cols, CT_NCOLS},
};

static uint64_t ct_now = UINT64_C(1700000000000);

static void ct_open(mu_rep *r, const char *path, uint8_t site) {
  uint8_t id[16];
  mu_site(id, site);
  mu_open_schema(r, path, id, &ct_now, 0, ct_tables, 1);
}

static int ct_add(mu_rep *r, const char *key, unsigned col, int64_t delta) {
  sync_txn *x;
  int rc;
  TU_OK(sync_txn_begin(r->env, 0, &x));
  rc = sync_counter_add(x, 0, key, strlen(key), col, delta);
  if (rc) {
    sync_txn_abort(x);
    return rc;
  }
  return sync_txn_commit(x);
}

/* Value of counter col of key (SYNC_NOTFOUND: no live row). */
static int ct_get(mu_rep *r, const char *key, unsigned col, int64_t *out) {
  sync_txn *x;
  sync_value v[CT_NCOLS];
  int rc;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  rc = sync_get(x, 0, key, strlen(key), v, col + 1);
  sync_txn_abort(x);
  if (rc) return rc;
  assert_int_equal(v[col].type, SYNC_INTEGER);
  *out = v[col].i;
  return 0;
}

static int64_t ct_val(mu_rep *r, const char *key, unsigned col) {
  int64_t v = 0;
  TU_OK(ct_get(r, key, col, &v));
  return v;
}

/* Everything r lacks of s, through the frame codec (the wire bytes). */
static size_t ct_pull_wire(mu_rep *r, mu_rep *s, size_t *frame_bytes) {
  sync_encoder *e;
  sync_decoder *dec;
  size_t rows = 0;
  int n;
  TU_OK(sync_encoder_create(NULL, NULL, &e));
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  for (n = 0; n < 100000; n++) {
    sync_delta *d = mu_cut(r, s, 0, 1), *d2 = NULL;
    const void *f;
    size_t flen;
    int last = sync_delta_last(d);
    TU_OK(sync_encoder_begin(e, d, &flen, NULL));
    TU_OK(sync_encoder_frame(e, &f, &flen));
    if (frame_bytes) *frame_bytes += flen;
    TU_OK(sync_decoder_decode(dec, f, flen, &d2));
    rows += sync_delta_rows(d2);
    mu_apply(r, d2, SYNC_APPLY_MERGE, NULL);
    sync_delta_free(d);
    sync_delta_free(d2);
    if (last) break;
  }
  sync_encoder_free(e);
  sync_decoder_free(dec);
  return rows;
}

static uint32_t ct_format_of(const char *path);

/* d's standalone frame (stored, no zstd) copied into buf (cap bytes);
 * returns its length. */
static size_t ct_frame_bytes(const sync_delta *d, unsigned char *buf,
                             size_t cap) {
  sync_encoder *e;
  const void *f;
  size_t n;
  TU_OK(sync_encoder_create(NULL, NULL, &e));
  TU_OK(sync_encoder_begin(e, d, &n, NULL));
  TU_OK(sync_encoder_frame(e, &f, &n));
  assert_true(n <= cap);
  memcpy(buf, f, n);
  sync_encoder_free(e);
  return n;
}

/* Conflicts r has recorded. */
static uint64_t ct_conflicts(mu_rep *r) {
  sync_txn *x;
  sync_conflicts *it;
  sync_conflict c;
  uint64_t n = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_conflicts_open(x, 0, &it));
  while (sync_conflicts_next(it, &c) == 0) n++;
  sync_conflicts_close(it);
  sync_txn_abort(x);
  return n;
}

/* ---------------------------------------------------------------------
 * Local adds
 * ------------------------------------------------------------------- */
static void test_add_reads_as_integer(void **state) {
  mu_rep a;
  sync_txn *x;
  sync_value v[CT_NCOLS];
  sync_cursor *cur;
  sync_key k;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  /* Adding to a missing row creates it, other columns NULL. */
  TU_OK(ct_add(&a, "k", CT_C, 5));
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_get(x, 0, "k", 1, v, CT_NCOLS));
  assert_int_equal(v[CT_N].type, SYNC_NULL);
  assert_int_equal(v[CT_S].type, SYNC_NULL);
  assert_int_equal(v[CT_C].type, SYNC_INTEGER);
  assert_int_equal(v[CT_C].i, 5);
  assert_int_equal(v[CT_D].type, SYNC_INTEGER); /* never added: 0 */
  assert_int_equal(v[CT_D].i, 0);
  sync_txn_abort(x);
  TU_OK(ct_add(&a, "k", CT_C, -8));
  TU_OK(ct_add(&a, "k", CT_D, 2));
  assert_int_equal(ct_val(&a, "k", CT_C), -3);
  assert_int_equal(ct_val(&a, "k", CT_D), 2);
  /* Several adds in one transaction. */
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sync_counter_add(x, 0, "k", 1, CT_C, 10));
  TU_OK(sync_counter_add(x, 0, "k", 1, CT_C, 1));
  TU_OK(sync_txn_commit(x));
  assert_int_equal(ct_val(&a, "k", CT_C), 8);
  /* A put keeps the count (NULL is its placeholder); cursors see it. */
  v[CT_N] = sync_int(7);
  v[CT_C] = sync_null();
  v[CT_S] = sync_text("x", 1);
  v[CT_D] = sync_null();
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sync_put(x, 0, "k", 1, v, CT_NCOLS));
  TU_OK(sync_txn_commit(x));
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_cursor_open(x, 0, &cur));
  TU_OK(sync_cursor_next(cur, &k, v, CT_NCOLS));
  assert_int_equal(v[CT_N].i, 7);
  assert_int_equal(v[CT_C].type, SYNC_INTEGER);
  assert_int_equal(v[CT_C].i, 8);
  assert_int_equal(v[CT_D].i, 2);
  assert_int_equal(sync_cursor_next(cur, &k, v, CT_NCOLS), SYNC_NOTFOUND);
  sync_cursor_close(cur);
  sync_txn_abort(x);
  /* The change log shows the sum too. */
  {
    sync_changes *it;
    sync_change ch;
    sync_value cv;
    TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_changes_open(x, 0, &it));
    TU_OK(sync_changes_next(it, &ch));
    TU_OK(sync_changes_column(it, CT_C, &cv, NULL, NULL));
    assert_int_equal(cv.type, SYNC_INTEGER);
    assert_int_equal(cv.i, 8);
    sync_changes_close(it);
    sync_txn_abort(x);
  }
  /* delta 0 creates nothing. */
  TU_OK(ct_add(&a, "none", CT_C, 0));
  assert_int_equal(ct_get(&a, "none", CT_C, &(int64_t){0}), SYNC_NOTFOUND);
  mu_close(&a);
}

static void test_delete_resets(void **state) {
  mu_rep a;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  TU_OK(ct_add(&a, "k", CT_C, 40));
  mu_delete(&a, "k");
  assert_int_equal(ct_get(&a, "k", CT_C, &(int64_t){0}), SYNC_NOTFOUND);
  /* An add re-inserts the row; its counters start from 0. */
  TU_OK(ct_add(&a, "k", CT_C, 2));
  assert_int_equal(ct_val(&a, "k", CT_C), 2);
  mu_delete(&a, "k");
  {
    sync_value v[CT_NCOLS] = {sync_int(1), sync_null(), sync_null(),
                              sync_null()};
    sync_txn *x;
    TU_OK(sync_txn_begin(a.env, 0, &x));
    TU_OK(sync_put(x, 0, "k", 1, v, CT_NCOLS));
    TU_OK(sync_txn_commit(x));
  }
  assert_int_equal(ct_val(&a, "k", CT_C), 0);
  mu_close(&a);
}

static void test_bad_calls(void **state) {
  mu_rep a;
  sync_txn *x;
  sync_value v[CT_NCOLS] = {sync_int(1), sync_int(3), sync_null(),
                            sync_null()};
  unsigned col = CT_C;
  sync_value one = sync_int(1);
  static const sync_column_def nn_cols[2] = {{"req", SYNC_INTEGER,
                                              SYNC_COL_NOTNULL},
                                             {"c", SYNC_COUNTER, 0}};
  static const sync_table_def nn[1] = {{"t", SYNC_TEXT, nn_cols, 2}};
  uint8_t id[16];
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  TU_OK(sync_txn_begin(a.env, 0, &x));
  /* An add on a column that is not a counter. */
  assert_int_equal(sync_counter_add(x, 0, "k", 1, CT_N, 1), SYNC_ETYPE);
  assert_int_equal(sync_counter_add(x, 0, "k", 1, CT_S, 1), SYNC_ETYPE);
  assert_int_equal(sync_counter_add(x, 0, "k", 1, CT_NCOLS, 1), SYNC_EINVAL);
  assert_int_equal(sync_counter_add(x, 1, "k", 1, CT_C, 1), SYNC_EINVAL);
  /* A value for a counter in a put, any value in an update. */
  assert_int_equal(sync_put(x, 0, "k", 1, v, CT_NCOLS), SYNC_ETYPE);
  v[CT_C] = sync_null();
  TU_OK(sync_put(x, 0, "k", 1, v, CT_NCOLS));
  assert_int_equal(sync_update(x, 0, "k", 1, &col, &one, 1), SYNC_ETYPE);
  one = sync_null();
  assert_int_equal(sync_update(x, 0, "k", 1, &col, &one, 1), SYNC_ETYPE);
  TU_OK(sync_txn_commit(x));
  /* A read-only transaction. */
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  assert_int_equal(sync_counter_add(x, 0, "k", 1, CT_C, 1), SYNC_EREADONLY);
  sync_txn_abort(x);
  mu_close(&a);
  /* Creating a row that would leave a NOT NULL column NULL. */
  mu_site(id, 0xa2);
  mu_open_schema(&a, "ct_a.db", id, &ct_now, 0, nn, 1);
  TU_OK(sync_txn_begin(a.env, 0, &x));
  assert_int_equal(sync_counter_add(x, 0, "k", 1, 1, 1), SYNC_ECONSTRAINT);
  v[0] = sync_int(1);
  v[1] = sync_null();
  TU_OK(sync_put(x, 0, "k", 1, v, 2));
  TU_OK(sync_counter_add(x, 0, "k", 1, 1, 4)); /* live: fine */
  TU_OK(sync_txn_commit(x));
  mu_close(&a);
}

/* This replica's own share of a cell: its own adds, not a peer's;
 * reset by a delete; and setting it to a total kept elsewhere (an add
 * of the total minus the share) is idempotent. */
static void test_counter_own(void **state) {
  mu_rep a, b;
  sync_txn *x;
  uint64_t p = 1, n = 1;
  int i;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_counter_own(x, 0, "k", 1, CT_C, &p, &n), SYNC_NOTFOUND);
  TU_U64(p, 0);
  TU_U64(n, 0);
  sync_txn_abort(x);
  TU_OK(ct_add(&a, "k", CT_C, 7));
  TU_OK(ct_add(&a, "k", CT_C, -2));
  TU_OK(ct_add(&b, "k", CT_C, 100));
  TU_OK(ct_add(&b, "k", CT_D, 1));
  ct_pull_wire(&a, &b, NULL);
  assert_int_equal(ct_val(&a, "k", CT_C), 105);
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_counter_own(x, 0, "k", 1, CT_C, &p, &n));
  TU_U64(p, 7);
  TU_U64(n, 2);
  TU_OK(sync_counter_own(x, 0, "k", 1, CT_D, &p, NULL)); /* b's only */
  TU_U64(p, 0);
  TU_OK(sync_counter_own(x, 0, "k", 1, CT_C, NULL, NULL));
  TU_RC(sync_counter_own(x, 0, "k", 1, CT_N, &p, &n), SYNC_ETYPE);
  TU_RC(sync_counter_own(x, 0, "k", 1, CT_NCOLS, &p, &n), SYNC_EINVAL);
  TU_RC(sync_counter_own(x, 0, "", 0, CT_C, &p, &n), SYNC_EINVAL);
  sync_txn_abort(x);
  /* Bringing a's share to 30 twice: the second time adds nothing. */
  for (i = 0; i < 2; i++) {
    uint64_t v0 = mu_version(&a);
    TU_OK(sync_txn_begin(a.env, 0, &x));
    TU_OK(sync_counter_own(x, 0, "k", 1, CT_C, &p, &n));
    TU_OK(sync_counter_add(x, 0, "k", 1, CT_C, 30 - (int64_t)(p - n)));
    TU_OK(sync_txn_commit(x));
    assert_int_equal(ct_val(&a, "k", CT_C), 130);
    if (i) TU_U64(mu_version(&a), v0);
  }
  /* A delete ends the incarnation: its shares go with it. */
  mu_delete(&a, "k");
  TU_OK(ct_add(&a, "k", CT_D, 3));
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_counter_own(x, 0, "k", 1, CT_C, &p, &n));
  TU_U64(p, 0);
  TU_U64(n, 0);
  TU_OK(sync_counter_own(x, 0, "k", 1, CT_D, &p, &n));
  TU_U64(p, 3);
  sync_txn_abort(x);
  mu_close(&a);
  mu_close(&b);
}

static void test_overflow_and_saturation(void **state) {
  mu_rep a, b;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  TU_OK(ct_add(&a, "k", CT_C, INT64_MAX));
  TU_OK(ct_add(&a, "k", CT_C, INT64_MAX));
  TU_OK(ct_add(&a, "k", CT_C, 1)); /* P = 2^64 - 1 */
  /* This replica's positive total would pass 2^64 - 1. */
  assert_int_equal(ct_add(&a, "k", CT_C, 1), SYNC_ELIMIT);
  /* The read saturates. */
  assert_int_equal(ct_val(&a, "k", CT_C), INT64_MAX);
  TU_OK(ct_add(&a, "k", CT_C, INT64_MIN)); /* N = 2^63 */
  assert_int_equal(ct_val(&a, "k", CT_C), INT64_MAX); /* 2^63 - 1 */
  TU_OK(ct_add(&a, "k", CT_C, -1));
  assert_int_equal(ct_val(&a, "k", CT_C), INT64_MAX - 1);
  /* The negative side too, and the sum over two sites stays exact. */
  TU_OK(ct_add(&b, "k", CT_C, INT64_MIN));
  TU_OK(ct_add(&b, "k", CT_C, INT64_MIN + 1)); /* N = 2^64 - 1 */
  assert_int_equal(ct_add(&b, "k", CT_C, -1), SYNC_ELIMIT);
  assert_int_equal(ct_val(&b, "k", CT_C), INT64_MIN);
  /* a: 2^64 - 1 - (2^63 + 1); b: -(2^64 - 1): the sum is -2^63 - 1,
   * below INT64_MIN: saturated, on both replicas alike. */
  ct_pull_wire(&a, &b, NULL);
  ct_pull_wire(&b, &a, NULL);
  assert_int_equal(ct_val(&a, "k", CT_C), INT64_MIN);
  assert_int_equal(ct_val(&b, "k", CT_C), INT64_MIN);
  TU_OK(ct_add(&b, "k", CT_C, 2));
  ct_pull_wire(&a, &b, NULL);
  assert_int_equal(ct_val(&a, "k", CT_C), INT64_MIN + 1);
  assert_true(mu_digest(&a) == mu_digest(&b));
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Replication
 * ------------------------------------------------------------------- */
static void test_concurrent_adds_all_count(void **state) {
  mu_rep r[3];
  int i, j;
  (void)state;
  ct_open(&r[0], "ct_a.db", 0xa1);
  ct_open(&r[1], "ct_b.db", 0xb1);
  ct_open(&r[2], "ct_c.db", 0xc1);
  for (i = 0; i < 3; i++) TU_OK(ct_add(&r[i], "k", CT_C, 1 + i));
  TU_OK(ct_add(&r[2], "k", CT_D, -4));
  mu_update(&r[1], "k", CT_N, sync_int(9));
  for (i = 0; i < 3; i++)
    for (j = 0; j < 3; j++)
      if (i != j) ct_pull_wire(&r[i], &r[j], NULL);
  for (i = 0; i < 3; i++) {
    mu_row row;
    assert_int_equal(ct_val(&r[i], "k", CT_C), 6);
    assert_int_equal(ct_val(&r[i], "k", CT_D), -4);
    (void)row;
    assert_true(mu_digest(&r[i]) == mu_digest(&r[0]));
  }
  /* Applying again, in any order, counts nothing twice. */
  TU_OK(ct_add(&r[0], "k", CT_C, 10));
  {
    sync_delta *d = mu_cut(&r[1], &r[0], 0, 0);
    mu_apply(&r[1], d, SYNC_APPLY_MERGE, NULL);
    mu_apply(&r[1], d, SYNC_APPLY_MERGE, NULL);
    sync_delta_free(d);
  }
  assert_int_equal(ct_val(&r[1], "k", CT_C), 16);
  /* No conflict is ever recorded for a counter, and a relay (r1 -> r2)
   * carries r0's adds on. */
  ct_pull_wire(&r[2], &r[1], NULL);
  assert_int_equal(ct_val(&r[2], "k", CT_C), 16);
  for (i = 0; i < 3; i++) mu_close(&r[i]);
}

static void test_policies(void **state) {
  mu_rep a, b;
  sync_apply_report rep;
  sync_delta *d;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  TU_OK(ct_add(&a, "k", CT_C, 3));
  ct_pull_wire(&b, &a, NULL);
  TU_OK(ct_add(&a, "k", CT_C, 4));
  ct_now += 10;
  TU_OK(ct_add(&b, "k", CT_C, 1)); /* b's row is the newer one */
  /* Dry run: reports the change, records no conflict, writes nothing. */
  d = mu_cut_whole(&b, &a, 0, 0, 1);
  {
    sync_txn *x;
    uint64_t v0 = mu_version(&b);
    TU_OK(sync_txn_begin(b.env, 0, &x));
    TU_OK(sync_delta_apply(x, d, SYNC_APPLY_DRY_RUN, &rep));
    TU_OK(sync_txn_commit(x));
    TU_U64(rep.conflicts, 0);
    TU_U64(rep.updated, 1);
    TU_U64(mu_version(&b), v0);
    assert_int_equal(ct_val(&b, "k", CT_C), 4);
  }
  /* NEWER: a's row is older as a whole, yet its add counts. */
  mu_apply(&b, d, SYNC_APPLY_NEWER, &rep);
  TU_U64(rep.conflicts, 0);
  assert_int_equal(ct_val(&b, "k", CT_C), 8);
  sync_delta_free(d);
  /* MERGE on a concurrent add: no conflict. */
  ct_pull_wire(&a, &b, NULL);
  assert_int_equal(ct_val(&a, "k", CT_C), 8);
  TU_U64(ct_conflicts(&a) + ct_conflicts(&b), 0);
  mu_close(&a);
  mu_close(&b);
}

/* A copied file takes a new site id at its first open: its own adds so
 * far stay under the old id (the original's), so that they count once,
 * and its later adds count under the new one. */
static void test_copied_file_counts_once(void **state) {
  mu_rep a, b, c;
  uint8_t sa[16], sc[16];
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  TU_OK(ct_add(&a, "k", CT_C, 5));
  TU_OK(ct_add(&a, "k", CT_D, -2));
  sync_env_close(a.env);
  mu_copy_rep(&c, &a, "ct_c.db");
  mu_reopen_schema(&a, ct_tables, 1);
  mu_reopen_schema(&c, ct_tables, 1);
  TU_OK(sync_env_site_id(a.env, sa));
  TU_OK(sync_env_site_id(c.env, sc));
  assert_memory_not_equal(sa, sc, 16);
  ct_now += 100;
  TU_OK(ct_add(&c, "k", CT_C, 1));
  TU_OK(ct_add(&a, "k", CT_C, 10));
  ct_pull_wire(&b, &c, NULL);
  ct_pull_wire(&b, &a, NULL);
  ct_pull_wire(&a, &b, NULL);
  ct_pull_wire(&c, &b, NULL);
  assert_int_equal(ct_val(&a, "k", CT_C), 16);
  assert_int_equal(ct_val(&b, "k", CT_C), 16);
  assert_int_equal(ct_val(&c, "k", CT_C), 16);
  assert_int_equal(ct_val(&c, "k", CT_D), -2);
  assert_true(mu_digest(&a) == mu_digest(&b));
  assert_true(mu_digest(&c) == mu_digest(&b));
  mu_close(&a);
  mu_close(&b);
  mu_close(&c);
}

/* Range repair (docs/PROTOCOL.md, "Repair") compares meta fingerprints:
 * a counter cell's must not depend on the order of each replica's site
 * indexes.  Two replicas that added to the same rows (in another order
 * of sites), repaired, end equal, and a dry repair then finds equal
 * roots at once. */
static void test_repair_with_counters(void **state) {
  mu_rep a, b, c;
  sync_session_opts co;
  sync_session_stats cs;
  int i;
  char key[8];
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  ct_open(&c, "ct_c.db", 0xc1);
  /* a learns of c before b; b of b's own, then c's: other indexes. */
  for (i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "k%02d", i);
    TU_OK(ct_add(&c, key, CT_C, i + 1));
  }
  ct_pull_wire(&a, &c, NULL);
  for (i = 0; i < 20; i += 2) {
    snprintf(key, sizeof key, "k%02d", i);
    TU_OK(ct_add(&a, key, CT_C, 100));
    TU_OK(ct_add(&b, key, CT_D, -7));
  }
  ct_pull_wire(&b, &c, NULL);
  memset(&co, 0, sizeof co);
  co.repair = 1;
  TU_RC(su_sync(&b, &a, &co, NULL, &cs, NULL), 1);
  for (i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "k%02d", i);
    assert_int_equal(ct_val(&a, key, CT_C), i + 1 + (i % 2 ? 0 : 100));
    assert_int_equal(ct_val(&b, key, CT_C), ct_val(&a, key, CT_C));
    assert_int_equal(ct_val(&a, key, CT_D), i % 2 ? 0 : -7);
    assert_int_equal(ct_val(&b, key, CT_D), ct_val(&a, key, CT_D));
  }
  assert_true(mu_digest(&a) == mu_digest(&b));
  co.dry_run = 1;
  TU_RC(su_sync(&b, &a, &co, NULL, &cs, NULL), 1);
  assert_int_equal(cs.repair_equal, 1);
  TU_U64(cs.repair_passes, 0);
  mu_close(&a);
  mu_close(&b);
  mu_close(&c);
}

/* A peer without relay rights may send its own adds only: a counter
 * carrying another site's contribution that this replica lacks is
 * refused, even when the row's stamps are all the sender's own; once
 * this replica holds that contribution, the row passes. */
static void test_relay_rights_per_contribution(void **state) {
  mu_rep s, dev, t;
  sync_apply_opts ao;
  sync_apply_report rep;
  sync_txn *x;
  sync_delta *d;
  (void)state;
  ct_open(&s, "ct_s.db", 0x51);
  ct_open(&dev, "ct_d0.db", 0x61);
  ct_open(&t, "ct_t.db", 0x71);
  /* dev's row carries t's add, and every stamp it has is dev's: the
   * insert (later than t's) and the column's (its newest add). */
  TU_OK(ct_add(&t, "k", CT_C, 7));
  ct_now += 5;
  TU_OK(ct_add(&dev, "k", CT_C, 1));
  ct_pull_wire(&dev, &t, NULL);
  assert_int_equal(ct_val(&dev, "k", CT_C), 8);
  memset(&ao, 0, sizeof ao);
  ao.policy = SYNC_APPLY_MERGE;
  ao.relay = 0;
  d = mu_cut(&s, &dev, 0, 0);
  TU_OK(sync_txn_begin(s.env, 0, &x));
  TU_OK(sync_delta_apply_opts(x, d, &ao, &rep));
  TU_OK(sync_txn_commit(x));
  TU_U64(rep.refused, 1);
  assert_int_equal(ct_get(&s, "k", CT_C, &(int64_t){0}), SYNC_NOTFOUND);
  sync_delta_free(d);
  /* s gets t's add from t itself; dev's row then brings only news of
   * its own. */
  ct_pull_wire(&s, &t, NULL);
  /* The refused row was left behind the cursor: ask from the start. */
  TU_OK(sync_txn_begin(s.env, 0, &x));
  TU_OK(sync_peer_reset(x, dev.site));
  TU_OK(sync_txn_commit(x));
  d = mu_cut(&s, &dev, 0, 0);
  TU_OK(sync_txn_begin(s.env, 0, &x));
  TU_OK(sync_delta_apply_opts(x, d, &ao, &rep));
  TU_OK(sync_txn_commit(x));
  TU_U64(rep.refused, 0);
  sync_delta_free(d);
  assert_int_equal(ct_val(&s, "k", CT_C), 8);
  mu_close(&s);
  mu_close(&dev);
  mu_close(&t);
}

/* A rolling schema change: a relay whose schema lacks the counter column
 * keeps the cells it receives (as it keeps any column beyond its schema)
 * and merges and forwards them; replicas on both sides of it count every
 * add, and the relay reads the counter once it declares the column. */
static void test_relay_without_the_column(void **state) {
  static const sync_column_def old_cols[1] = {{"n", SYNC_INTEGER, 0}};
  static const sync_table_def old_t[1] = {{"t", SYNC_TEXT, old_cols, 1}};
  mu_rep a, b, c;
  uint8_t id[16];
  int i;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  mu_site(id, 0xb1);
  mu_open_schema(&b, "ct_b.db", id, &ct_now, 0, old_t, 1);
  ct_open(&c, "ct_c.db", 0xc1);
  TU_OK(ct_add(&a, "k", CT_C, 5));
  TU_OK(ct_add(&c, "k", CT_C, 3));
  TU_OK(ct_add(&c, "k", CT_D, -1));
  for (i = 0; i < 2; i++) {
    TU_RC(su_sync(&b, &a, NULL, NULL, NULL, NULL), 1);
    TU_RC(su_sync(&b, &c, NULL, NULL, NULL, NULL), 1);
  }
  assert_int_equal(ct_val(&a, "k", CT_C), 8);
  assert_int_equal(ct_val(&c, "k", CT_C), 8);
  assert_int_equal(ct_val(&a, "k", CT_D), -1);
  assert_true(mu_digest(&a) == mu_digest(&c));
  /* Another add on a reaches c through b alone. */
  TU_OK(ct_add(&a, "k", CT_C, 10));
  TU_RC(su_sync(&b, &a, NULL, NULL, NULL, NULL), 1);
  TU_RC(su_sync(&b, &c, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(ct_val(&c, "k", CT_C), 18);
  /* b's file holds counter cells, though its schema has no counter:
   * code without counters must refuse it, not call its rows damaged. */
  sync_env_close(b.env);
  b.env = NULL;
  assert_int_equal(ct_format_of("ct_b.db"), 11);
  assert_int_equal(ct_format_of("ct_a.db"), 11);
  /* b upgrades: the cells it kept read as counters. */
  mu_reopen_schema(&b, ct_tables, 1);
  assert_int_equal(ct_val(&b, "k", CT_C), 18);
  assert_int_equal(ct_val(&b, "k", CT_D), -1);
  assert_true(mu_digest(&b) == mu_digest(&c));
  mu_close(&a);
  mu_close(&b);
  mu_close(&c);
}

/* Only the sites that added since the receiver's vector travel: a
 * counter many devices add to costs each pull what changed. */
static void test_wire_sends_only_news(void **state) {
  mu_rep srv, dev[8];
  size_t bytes0 = 0, bytes1 = 0;
  int i;
  char path[32];
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  for (i = 0; i < 8; i++) {
    snprintf(path, sizeof path, "ct_d%d.db", i);
    ct_open(&dev[i], path, (uint8_t)(0x60 + i));
    TU_OK(ct_add(&dev[i], "k", CT_C, 1));
    ct_pull_wire(&srv, &dev[i], NULL);
  }
  assert_int_equal(ct_val(&srv, "k", CT_C), 8);
  ct_pull_wire(&dev[0], &srv, &bytes0);
  assert_int_equal(ct_val(&dev[0], "k", CT_C), 8);
  /* One more add on device 1: device 0 gets one contribution. */
  TU_OK(ct_add(&dev[1], "k", CT_C, 1));
  ct_pull_wire(&srv, &dev[1], NULL);
  ct_pull_wire(&dev[0], &srv, &bytes1);
  assert_int_equal(ct_val(&dev[0], "k", CT_C), 9);
  assert_true(bytes1 < bytes0);
  print_message("counter wire: all 8 sites %zu bytes, 1 news %zu bytes\n",
                bytes0, bytes1);
  for (i = 0; i < 8; i++) mu_close(&dev[i]);
  mu_close(&srv);
}

/* ---------------------------------------------------------------------
 * Hostile frames
 * ------------------------------------------------------------------- */

/* A frame of one row (key "k") whose counter column c carries the
 * contributions given as raw varint bytes: the real encoder's frame for a
 * row with one contribution, with that value's bytes replaced. */
static void ct_frame(mu_rep *a, mu_rep *b, unsigned char *out, size_t *len,
                     size_t *voff, size_t *vlen) {
  sync_delta *d;
  size_t flen;
  TU_OK(ct_add(a, "k", CT_C, 0x55));
  d = mu_cut(b, a, 0, 0);
  flen = ct_frame_bytes(d, out, 4096);
  *len = flen;
  sync_delta_free(d);
  /* The value: var 1 (n), var 0 (site gap), var 0x55 (P), var 0 (N),
   * then the HLC (found as the bytes before the checksum's 8: the row
   * ends the body, then the frame's later sections). */
  {
    const unsigned char pat[4] = {1, 0, 0x55, 0};
    size_t at = tu_find(out, flen, pat, 4, 0);
    assert_true(at < flen);
    *voff = at;
    *vlen = 4 + 1;
    while (out[at + *vlen - 1] & 0x80) (*vlen)++;
  }
}

/* Rewrite frame f (a stored body) with the value bytes at voff replaced
 * by nv, fixing the body length and the checksum. */
static size_t ct_patch(const unsigned char *f, size_t flen, size_t voff,
                       size_t vlen, const unsigned char *nv, size_t nvlen,
                       unsigned char *out);

static void test_hostile_contributions(void **state) {
  mu_rep a, b;
  unsigned char f[4096], g[8192];
  size_t flen, voff, vlen, glen, k;
  sync_decoder *dec;
  sync_delta *d = NULL;
  unsigned char hlc[10];
  size_t hn;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  ct_frame(&a, &b, f, &flen, &voff, &vlen);
  hn = vlen - 4;
  memcpy(hlc, f + voff + 4, hn);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  /* The untouched frame decodes and applies. */
  glen = ct_patch(f, flen, voff, vlen, f + voff, vlen, g);
  TU_OK(sync_decoder_decode(dec, g, glen, &d));
  mu_apply(&b, d, SYNC_APPLY_MERGE, NULL);
  sync_delta_free(d);
  assert_int_equal(ct_val(&b, "k", CT_C), 0x55);
  {
    struct {
      const char *what;
      unsigned char v[64];
      size_t n;
    } bad[6];
    memset(bad, 0, sizeof bad);
    /* Two contributions of one site (gap would have to be negative: the
     * second names site 1, which the frame lacks). */
    bad[0].what = "site past the frame's table";
    bad[0].v[0] = 2;
    bad[0].v[1] = 0, bad[0].v[2] = 1, bad[0].v[3] = 0;
    memcpy(bad[0].v + 4, hlc, hn);
    bad[0].v[4 + hn] = 0, bad[0].v[5 + hn] = 1, bad[0].v[6 + hn] = 0;
    memcpy(bad[0].v + 7 + hn, hlc, hn);
    bad[0].n = 7 + 2 * hn;
    /* More contributions than the frame has sites. */
    bad[1].what = "count over the sites";
    bad[1].v[0] = 0x80, bad[1].v[1] = 0x80, bad[1].v[2] = 0x04;
    memcpy(bad[1].v + 3, f + voff + 1, vlen - 1);
    bad[1].n = 3 + vlen - 1;
    /* None at all. */
    bad[2].what = "no contribution";
    bad[2].v[0] = 0;
    bad[2].n = 1;
    /* An HLC of 0. */
    bad[3].what = "HLC 0";
    bad[3].v[0] = 1, bad[3].v[1] = 0, bad[3].v[2] = 0x55, bad[3].v[3] = 0;
    bad[3].v[4] = 0;
    bad[3].n = 5;
    /* An HLC above the column's stamp (absurdly far ahead). */
    bad[4].what = "HLC above the column's";
    bad[4].v[0] = 1, bad[4].v[1] = 0, bad[4].v[2] = 0x55, bad[4].v[3] = 0;
    for (k = 0; k < 9; k++) bad[4].v[4 + k] = 0xff;
    bad[4].v[13] = 0x01;
    bad[4].n = 14;
    /* A site gap that wraps. */
    bad[5].what = "huge site gap";
    bad[5].v[0] = 1;
    for (k = 0; k < 9; k++) bad[5].v[1 + k] = 0xff;
    bad[5].v[10] = 0x01;
    bad[5].v[11] = 1, bad[5].v[12] = 0;
    memcpy(bad[5].v + 13, hlc, hn);
    bad[5].n = 13 + hn;
    for (k = 0; k < 6; k++) {
      int rc;
      d = NULL;
      glen = ct_patch(f, flen, voff, vlen, bad[k].v, bad[k].n, g);
      rc = sync_decoder_decode(dec, g, glen, &d);
      if (rc != SYNC_EFORMAT)
        fail_msg("%s: got %d (%s)", bad[k].what, rc, sync_decoder_reason(dec));
      assert_null(d);
    }
  }
  /* Nothing reached b. */
  assert_int_equal(ct_val(&b, "k", CT_C), 0x55);
  sync_decoder_free(dec);
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Folds: retired sites handed to their heirs (sync_site_retire)
 * ------------------------------------------------------------------- */

/* Sites counter col of key's row holds on r. */
static size_t ct_nsites(mu_rep *r, const char *key, unsigned col) {
  sync_txn *x;
  size_t n = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_counter_sites(x, 0, key, strlen(key), col, NULL, 0, &n));
  sync_txn_abort(x);
  return n;
}

/* Whether counter col of key's row on r holds a contribution of site. */
static int ct_holds(mu_rep *r, const char *key, unsigned col,
                    const uint8_t site[16]) {
  sync_txn *x;
  uint8_t ids[8][16];
  size_t n = 0, i;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_counter_sites(x, 0, key, strlen(key), col, ids, 8, &n));
  sync_txn_abort(x);
  assert_true(n <= 8);
  for (i = 0; i < n; i++)
    if (!memcmp(ids[i], site, 16)) return 1;
  return 0;
}

static int ct_retire(mu_rep *r, const uint8_t site[16]) {
  sync_txn *x;
  int rc;
  TU_OK(sync_txn_begin(r->env, 0, &x));
  rc = sync_site_retire(x, site);
  if (rc) {
    sync_txn_abort(x);
    return rc;
  }
  return sync_txn_commit(x);
}

static sync_health ct_health(mu_rep *r) {
  sync_txn *x;
  sync_health h;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_health_get(x, &h));
  sync_txn_abort(x);
  return h;
}

/* Pull everything r lacks of s through the codec; the reports' sum of
 * retired_adds. */
static uint64_t ct_pull_late(mu_rep *r, mu_rep *s) {
  uint64_t late = 0;
  int n;
  for (n = 0; n < 1000; n++) {
    sync_apply_report rep;
    sync_delta *d = mu_cut(r, s, 0, 1);
    int last = sync_delta_last(d);
    mu_apply(r, d, SYNC_APPLY_MERGE, &rep);
    late += rep.retired_adds;
    sync_delta_free(d);
    if (last) return late;
  }
  fail_msg("pull did not end");
  return 0;
}

/* A server, two devices: d1 stops, the server retires it; its adds stay
 * counted, once, and no cell carries it any more, wherever its stale
 * contribution comes from. */
static void test_retire_folds_into_heir(void **state) {
  mu_rep srv, d1, d2, old;
  uint8_t s1[16], ss[16];
  sync_fold fo[2];
  size_t n = 0;
  int i;
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&d1, "ct_a.db", 0xa1);
  ct_open(&d2, "ct_b.db", 0xb1);
  mu_site(s1, 0xa1);
  mu_site(ss, 0x51);
  TU_OK(ct_add(&d1, "k", CT_C, 5));
  TU_OK(ct_add(&d1, "j", CT_D, -3));
  TU_OK(ct_add(&d2, "k", CT_C, 7));
  TU_OK(ct_add(&srv, "k", CT_C, 1));
  TU_OK(ct_add(&d2, "j", CT_D, 2));
  ct_pull_wire(&srv, &d1, NULL);
  ct_pull_wire(&srv, &d2, NULL);
  ct_pull_wire(&d1, &srv, NULL);
  ct_pull_wire(&d2, &srv, NULL);
  for (i = 0; i < 3; i++) {
    mu_rep *r = i == 0 ? &srv : i == 1 ? &d1 : &d2;
    assert_int_equal(ct_val(r, "k", CT_C), 13);
    assert_int_equal(ct_val(r, "j", CT_D), -1);
    assert_int_equal(ct_nsites(r, "k", CT_C), 3);
  }
  /* d1 is taken out of service; a copy of its last state stays around
   * (a stale replica that still has its contributions to give). */
  sync_env_close(d1.env);
  mu_copy_rep(&old, &d1, "ct_old.db");
  d1.env = NULL;
  mu_close(&d1);
  mu_reopen_schema(&old, ct_tables, 1);
  TU_OK(ct_retire(&srv, s1));
  assert_int_equal(ct_retire(&srv, s1), SYNC_EEXIST);
  assert_true(ct_health(&srv).fold_pending);
  TU_U64(ct_health(&srv).folds, 1);
  /* The heir's add folds the cell it writes at once. */
  TU_OK(ct_add(&srv, "j", CT_D, 10));
  assert_false(ct_holds(&srv, "j", CT_D, s1));
  assert_int_equal(ct_val(&srv, "j", CT_D), 9);
  assert_true(ct_holds(&srv, "k", CT_C, s1)); /* not folded yet */
  TU_OK(sync_env_gc(srv.env, NULL));
  assert_false(ct_health(&srv).fold_pending);
  assert_false(ct_holds(&srv, "k", CT_C, s1));
  assert_int_equal(ct_nsites(&srv, "k", CT_C), 2);
  assert_int_equal(ct_val(&srv, "k", CT_C), 13);
  /* The stale copy's contributions count nothing twice, on the heir or
   * on a device that learns the fold from the heir first. */
  TU_U64(ct_pull_late(&d2, &srv), 0);
  TU_U64(ct_pull_late(&srv, &old), 0);
  TU_U64(ct_pull_late(&d2, &old), 0);
  for (i = 0; i < 2; i++) {
    mu_rep *r = i == 0 ? &srv : &d2;
    assert_int_equal(ct_val(r, "k", CT_C), 13);
    assert_int_equal(ct_val(r, "j", CT_D), 9);
    assert_false(ct_holds(r, "k", CT_C, s1));
    assert_false(ct_holds(r, "j", CT_D, s1));
    assert_int_equal(ct_nsites(r, "k", CT_C), 2);
  }
  assert_true(mu_digest(&srv) == mu_digest(&d2));
  {
    sync_txn *x;
    TU_OK(sync_txn_begin(d2.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_folds_get(x, fo, 2, &n));
    sync_txn_abort(x);
    TU_U64(n, 1);
    assert_memory_equal(fo[0].site, s1, 16);
    assert_memory_equal(fo[0].heir, ss, 16);
    assert_true(fo[0].hlc > fo[0].held);
  }
  /* A range repair between the two finds them equal. */
  {
    sync_session_opts ro;
    sync_session_stats st;
    memset(&ro, 0, sizeof ro);
    ro.repair = 1;
    ro.dry_run = 1;
    assert_int_equal(su_sync(&d2, &srv, &ro, NULL, &st, NULL), 1);
    assert_true(st.repair_equal);
  }
  mu_close(&old);
  mu_close(&srv);
  mu_close(&d2);
}

static void test_retire_errors(void **state) {
  mu_rep a, b;
  uint8_t sa[16], sb[16], sz[16];
  sync_txn *x;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  mu_site(sa, 0xa1);
  mu_site(sb, 0xb1);
  mu_site(sz, 0x77);
  assert_int_equal(ct_retire(&a, sa), SYNC_EINVAL);  /* itself */
  assert_int_equal(ct_retire(&a, sz), SYNC_NOTFOUND); /* never met */
  assert_int_equal(ct_retire(&a, sb), SYNC_NOTFOUND); /* holds nothing of b */
  TU_OK(ct_add(&b, "k", CT_C, 1));
  ct_pull_wire(&a, &b, NULL);
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  assert_int_equal(sync_site_retire(x, sb), SYNC_EREADONLY);
  assert_int_equal(sync_site_retire(x, NULL), SYNC_EINVAL);
  sync_txn_abort(x);
  assert_int_equal(sync_site_retire(NULL, sb), SYNC_EINVAL);
  TU_OK(ct_retire(&a, sb));
  assert_int_equal(ct_retire(&a, sb), SYNC_EEXIST);
  mu_close(&a);
  mu_close(&b);
}

/* A retired site that goes on adding breaks the contract: where its
 * later contribution meets its heir's it is dropped and counted; the
 * site itself is told by the first chunk that brings it the record (a
 * session takes a new id and ends; the next one syncs), and its adds
 * under the new id count. */
static void test_retired_site_that_adds_again(void **state) {
  mu_rep srv, d1;
  uint8_t s1[16], now1[16];
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&d1, "ct_a.db", 0xa1);
  mu_site(s1, 0xa1);
  TU_OK(ct_add(&d1, "k", CT_C, 5));
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, NULL, NULL), 1);
  TU_OK(ct_retire(&srv, s1));
  TU_OK(sync_env_gc(srv.env, NULL));
  TU_OK(ct_add(&d1, "k", CT_C, 2)); /* after its retirement */
  {
    /* A push session reports the dropped add on both sides (the
     * server's count reaches the device with FINAL), and commits
     * nothing of the chunk but the drop. */
    sync_session_opts co;
    sync_session_stats cst, sst;
    memset(&co, 0, sizeof co);
    co.mode = SYNC_PUSH;
    assert_int_equal(su_sync(&d1, &srv, &co, NULL, &cst, &sst), 1);
    TU_U64(sst.applied.retired_adds, 1);
    TU_U64(cst.peer_applied.retired_adds, 1);
  }
  TU_U64(ct_pull_late(&srv, &d1), 0); /* nothing new: the run ended */
  assert_int_equal(ct_val(&srv, "k", CT_C), 5);
  {
    sync_delta *d = mu_cut(&d1, &srv, 0, 0);
    sync_txn *x;
    sync_apply_report rep;
    TU_OK(sync_txn_begin(d1.env, 0, &x));
    assert_int_equal(sync_delta_apply(x, d, SYNC_APPLY_MERGE, &rep),
                     SYNC_EHISTORY);
    sync_txn_abort(x);
    sync_delta_free(d);
  }
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, NULL, NULL), SYNC_EHISTORY);
  TU_OK(sync_env_site_id(d1.env, now1));
  assert_memory_not_equal(now1, s1, 16);
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(ct_val(&d1, "k", CT_C), 5);
  TU_OK(ct_add(&d1, "k", CT_C, 4));
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(ct_val(&srv, "k", CT_C), 9);
  assert_int_equal(ct_val(&d1, "k", CT_C), 9);
  assert_false(ct_holds(&srv, "k", CT_C, s1));
  assert_false(ct_holds(&d1, "k", CT_C, s1));
  mu_close(&srv);
  mu_close(&d1);
}

/* A chain: d1 retired to a relay, the relay retired to the server; a
 * device that held all three contributions ends with the server's
 * alone, and the sum. */
static void test_retire_chain(void **state) {
  mu_rep srv, rel, d1, d2;
  uint8_t s1[16], sr[16];
  size_t n = 0;
  sync_txn *x;
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&rel, "ct_r.db", 0x61);
  ct_open(&d1, "ct_a.db", 0xa1);
  ct_open(&d2, "ct_b.db", 0xb1);
  mu_site(s1, 0xa1);
  mu_site(sr, 0x61);
  TU_OK(ct_add(&d1, "k", CT_C, 5));
  TU_OK(ct_add(&rel, "k", CT_C, 3));
  TU_OK(ct_add(&srv, "k", CT_C, 100));
  ct_pull_wire(&rel, &d1, NULL);
  ct_pull_wire(&srv, &rel, NULL);
  ct_pull_wire(&d2, &srv, NULL);
  assert_int_equal(ct_nsites(&d2, "k", CT_C), 3);
  TU_OK(ct_retire(&rel, s1)); /* not folded before the relay stops */
  ct_pull_wire(&srv, &rel, NULL);
  TU_OK(ct_retire(&srv, sr));
  TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_folds_get(x, NULL, 0, &n));
  sync_txn_abort(x);
  TU_U64(n, 3); /* d1 -> rel, rel -> srv, d1 -> srv */
  TU_OK(sync_env_gc(srv.env, NULL));
  assert_int_equal(ct_nsites(&srv, "k", CT_C), 1);
  assert_int_equal(ct_val(&srv, "k", CT_C), 108);
  TU_U64(ct_pull_late(&d2, &srv), 0);
  TU_U64(ct_pull_late(&d2, &d1), 0); /* stale, both */
  TU_U64(ct_pull_late(&d2, &rel), 0);
  assert_int_equal(ct_nsites(&d2, "k", CT_C), 1);
  assert_int_equal(ct_val(&d2, "k", CT_C), 108);
  assert_true(mu_digest(&srv) == mu_digest(&d2));
  mu_close(&srv);
  mu_close(&rel);
  mu_close(&d1);
  mu_close(&d2);
}

/* An heir copied while its fold walk is pending: the copy takes a new
 * id at its first open and keeps the record, which names the original;
 * the original folds, the copy learns it from the original's rows, and
 * adds on both sides count once. */
static void test_heir_copied_mid_fold(void **state) {
  mu_rep srv, cp, d1;
  uint8_t s1[16], sc[16], ss[16];
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&d1, "ct_a.db", 0xa1);
  mu_site(s1, 0xa1);
  mu_site(ss, 0x51);
  TU_OK(ct_add(&d1, "k", CT_C, 5));
  TU_OK(ct_add(&d1, "j", CT_C, 6));
  TU_OK(ct_add(&srv, "k", CT_C, 1));
  ct_pull_wire(&srv, &d1, NULL);
  TU_OK(ct_retire(&srv, s1));
  assert_true(ct_health(&srv).fold_pending);
  sync_env_close(srv.env);
  mu_copy_rep(&cp, &srv, "ct_c.db");
  mu_reopen_schema(&srv, ct_tables, 1);
  mu_reopen_schema(&cp, ct_tables, 1);
  TU_OK(sync_env_site_id(cp.env, sc));
  assert_memory_not_equal(sc, ss, 16);
  /* The copy is no heir: its walk finds nothing of its own to fold. */
  TU_OK(sync_env_gc(cp.env, NULL));
  assert_false(ct_health(&cp).fold_pending);
  assert_true(ct_holds(&cp, "j", CT_C, s1));
  TU_OK(sync_env_gc(srv.env, NULL));
  assert_false(ct_holds(&srv, "j", CT_C, s1));
  ct_now += 10;
  TU_OK(ct_add(&cp, "j", CT_C, 100));
  TU_OK(ct_add(&srv, "j", CT_C, 1000));
  TU_U64(ct_pull_late(&cp, &srv), 0);
  TU_U64(ct_pull_late(&srv, &cp), 0);
  TU_U64(ct_pull_late(&cp, &d1), 0); /* the retired device, stale */
  TU_U64(ct_pull_late(&srv, &d1), 0);
  assert_int_equal(ct_val(&srv, "j", CT_C), 1106);
  assert_int_equal(ct_val(&cp, "j", CT_C), 1106);
  assert_int_equal(ct_val(&srv, "k", CT_C), 6);
  assert_int_equal(ct_val(&cp, "k", CT_C), 6);
  assert_false(ct_holds(&cp, "j", CT_C, s1));
  assert_false(ct_holds(&cp, "k", CT_C, s1));
  assert_true(mu_digest(&srv) == mu_digest(&cp));
  mu_close(&srv);
  mu_close(&cp);
  mu_close(&d1);
}

/* The heir restored from a backup made before the retirement: it
 * holds the retired site's contribution and no record; a device that
 * took the fold brings it back the record with the heir's folded
 * contributions, and every sum stays exact. */
static void test_heir_restored_before_the_fold(void **state) {
  mu_rep srv, d1, d2;
  uint8_t s1[16];
  unsigned char *backup;
  size_t blen = 0, n = 0;
  int i, rc = 0;
  sync_txn *x;
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&d1, "ct_a.db", 0xa1);
  ct_open(&d2, "ct_b.db", 0xb1);
  mu_site(s1, 0xa1);
  TU_OK(ct_add(&d1, "k", CT_C, 5));
  TU_OK(ct_add(&d2, "k", CT_C, 7));
  TU_OK(ct_add(&srv, "k", CT_C, 1));
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&d2, &srv, NULL, NULL, NULL, NULL), 1);
  sync_env_close(srv.env);
  backup = tu_read_file(srv.path, &blen);
  assert_non_null(backup);
  mu_reopen_schema(&srv, ct_tables, 1);
  ct_now += 10;
  TU_OK(ct_retire(&srv, s1));
  TU_OK(sync_env_gc(srv.env, NULL));
  assert_int_equal(su_sync(&d2, &srv, NULL, NULL, NULL, NULL), 1);
  assert_false(ct_holds(&d2, "k", CT_C, s1));
  assert_int_equal(ct_val(&d2, "k", CT_C), 13);
  /* The restore. */
  sync_env_close(srv.env);
  assert_int_equal(tu_write_file(srv.path, backup, blen), 0);
  free(backup);
  mu_reopen_schema(&srv, ct_tables, 1);
  assert_true(ct_holds(&srv, "k", CT_C, s1));
  for (i = 0; i < 6 && (rc = su_sync(&d2, &srv, NULL, NULL, NULL, NULL)) != 1;
       i++)
    assert_int_equal(rc, SYNC_EHISTORY);
  assert_int_equal(rc, 1);
  assert_int_equal(su_sync(&d2, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(ct_val(&srv, "k", CT_C), 13);
  assert_int_equal(ct_val(&d2, "k", CT_C), 13);
  assert_false(ct_holds(&srv, "k", CT_C, s1));
  TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_folds_get(x, NULL, 0, &n));
  sync_txn_abort(x);
  TU_U64(n, 1);
  /* The retired device, stale, counts nothing twice there either. */
  TU_U64(ct_pull_late(&srv, &d1), 0);
  assert_int_equal(ct_val(&srv, "k", CT_C), 13);
  assert_true(mu_digest(&srv) == mu_digest(&d2));
  mu_close(&srv);
  mu_close(&d1);
  mu_close(&d2);
}

/* Fold sections a decoder refuses, and one it takes only from a sender
 * with the relay right. */
static void test_hostile_folds(void **state) {
  mu_rep srv, d1, d2;
  uint8_t s1[16];
  unsigned char f[4096], g[8192];
  size_t flen, at, glen, k;
  sync_decoder *dec;
  sync_delta *d = NULL;
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&d1, "ct_a.db", 0xa1);
  ct_open(&d2, "ct_b.db", 0xb1);
  mu_site(s1, 0xa1);
  TU_OK(ct_add(&d1, "k", CT_C, 5));
  ct_pull_wire(&srv, &d1, NULL);
  TU_OK(ct_retire(&srv, s1));
  TU_OK(sync_env_gc(srv.env, NULL));
  d = mu_cut(&d2, &srv, 0, 0);
  flen = ct_frame_bytes(d, f, sizeof f);
  sync_delta_free(d);
  assert_true(f[6] & 0x4); /* the frame flag FOLDS */
  {
    unsigned char pat[17];
    pat[0] = 1;
    memset(pat + 1, 0xa1, 16);
    size_t from = 0;
    at = flen;
    while ((from = tu_find(f, flen, pat, 17, from)) < flen) at = from++;
    assert_true(at < flen); /* the last: the section ends the body */
  }
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  {
    /* The section runs to the body's end: count, site, heir index,
     * HLC, held. */
    size_t slen = flen - 8 - at;
    struct {
      const char *what;
      unsigned char v[64];
      size_t n;
    } bad[5];
    memset(bad, 0, sizeof bad);
    for (k = 0; k < 5; k++) {
      memcpy(bad[k].v, f + at, slen);
      bad[k].n = slen;
    }
    bad[0].what = "no record";
    bad[0].v[0] = 0;
    bad[0].n = 1;
    bad[1].what = "heir past the site table";
    bad[1].v[17] = 0x7f;
    bad[2].what = "fold at HLC 0";
    bad[2].v[18] = 0;
    bad[2].n = 19 + 1;
    bad[2].v[19] = 0;
    bad[3].what = "a site folded into itself";
    bad[4].what = "two records out of order";
    bad[4].v[0] = 2;
    memcpy(bad[4].v + slen, f + at + 1, slen - 1);
    bad[4].n = 2 * slen - 1;
    bad[4].v[1] = 0xff; /* the first record's site sorts last */
    for (k = 0; k < 5; k++) {
      int rc;
      if (k == 3) {
        /* The heir's own id as the retired site: the sender is the
         * frame's site 0, the heir here. */
        uint8_t ss[16];
        mu_site(ss, 0x51);
        memcpy(bad[3].v, f + at, slen);
        memcpy(bad[3].v + 1, ss, 16);
        bad[3].n = slen;
      }
      d = NULL;
      glen = ct_patch(f, flen, at, slen, bad[k].v, bad[k].n, g);
      rc = sync_decoder_decode(dec, g, glen, &d);
      if (rc != SYNC_EFORMAT)
        fail_msg("%s: got %d (%s)", bad[k].what, rc, sync_decoder_reason(dec));
      assert_null(d);
    }
  }
  /* The frame as it is: a receiver that trusts the sender to relay
   * takes the record; one that does not refuses the chunk whole. */
  TU_OK(sync_decoder_decode(dec, f, flen, &d));
  {
    sync_txn *x;
    sync_apply_opts ao;
    sync_apply_report rep;
    memset(&ao, 0, sizeof ao);
    ao.relay = 0;
    TU_OK(sync_txn_begin(d2.env, 0, &x));
    assert_int_equal(sync_delta_apply_opts(x, d, &ao, &rep), SYNC_EPERM);
    sync_txn_abort(x);
    ao.relay = 1;
    TU_OK(sync_txn_begin(d2.env, 0, &x));
    TU_OK(sync_delta_apply_opts(x, d, &ao, &rep));
    TU_OK(sync_txn_commit(x));
  }
  sync_delta_free(d);
  assert_int_equal(ct_val(&d2, "k", CT_C), 5);
  assert_false(ct_holds(&d2, "k", CT_C, s1));
  sync_decoder_free(dec);
  mu_close(&srv);
  mu_close(&d1);
  mu_close(&d2);
}

/* ---------------------------------------------------------------------
 * Storage format
 * ------------------------------------------------------------------- */

/* u32 format version of the file at path (the meta "format" record). */
static uint32_t ct_format_of(const char *path) {
  size_t n = 0, at;
  unsigned char *p = tu_read_file(path, &n);
  const unsigned char magic[8] = {'s', 'y', 'n', 'c', '-', 'd', 'b', 0};
  uint32_t v;
  assert_non_null(p);
  at = tu_find(p, n, magic, 8, 0);
  assert_true(at + 12 <= n);
  v = (uint32_t)p[at + 8] | (uint32_t)p[at + 9] << 8 |
      (uint32_t)p[at + 10] << 16 | (uint32_t)p[at + 11] << 24;
  free(p);
  return v;
}

static void test_format_version(void **state) {
  mu_rep a;
  uint8_t id[16];
  static const sync_column_def plain_cols[1] = {{"n", SYNC_INTEGER, 0}};
  static const sync_table_def plain[1] = {{"t", SYNC_TEXT, plain_cols, 1}};
  static const sync_column_def grown_cols[2] = {{"n", SYNC_INTEGER, 0},
                                                {"hits", SYNC_COUNTER, 0}};
  static const sync_table_def grown[1] = {{"t", SYNC_TEXT, grown_cols, 2}};
  sync_column_def more = {"more", SYNC_COUNTER, 0};
  (void)state;
  /* Format 8 brought row history and counter cells together, format 9
   * the change log in records, format 10 the fold records, format 11
   * the renewal records' own store: every writable open writes 11, with
   * counters or without, and a counter never sets the record back. */
  mu_site(id, 0xa3);
  mu_open_schema(&a, "ct_f.db", id, &ct_now, 0, plain, 1);
  {
    sync_txn *x;
    sync_value v = sync_int(1);
    TU_OK(sync_txn_begin(a.env, 0, &x));
    TU_OK(sync_put(x, 0, "x", 1, &v, 1));
    TU_OK(sync_txn_commit(x));
  }
  sync_env_close(a.env);
  assert_int_equal(ct_format_of("ct_f.db"), 11);
  /* A rolling upgrade that adds a counter column marks the file, and the
   * row written before reads the new counter as 0. */
  mu_reopen_schema(&a, grown, 1);
  assert_int_equal(ct_val(&a, "x", 1), 0);
  TU_OK(ct_add(&a, "x", 1, 3));
  assert_int_equal(ct_val(&a, "x", 1), 3);
  /* And sync_env_add_column takes one too. */
  TU_OK(sync_env_add_column(a.env, 0, &more));
  {
    sync_txn *x;
    sync_value v[3];
    TU_OK(sync_txn_begin(a.env, 0, &x));
    TU_OK(sync_counter_add(x, 0, "x", 1, 2, -2));
    TU_OK(sync_get(x, 0, "x", 1, v, 3));
    assert_int_equal(v[1].i, 3);
    assert_int_equal(v[2].i, -2);
    TU_OK(sync_txn_commit(x));
  }
  sync_env_close(a.env);
  a.env = NULL;
  assert_int_equal(ct_format_of("ct_f.db"), 11);
  tu_remove_db("ct_f.db");
}


/* ---------------------------------------------------------------------
 * Property: concurrent adds over a faulty link
 * ------------------------------------------------------------------- */
#define PT_MAXREP 5
#define PT_MAXKEYS 6
#define PT_MAXHELD 8
#define PT_MAXADDS 4096
static const char *const pt_keys[PT_MAXKEYS] = {"a", "bb", "c", "dd", "e",
                                                "ff"};

typedef struct pt_add {
  int k;
  unsigned col;
  int64_t delta;
  uint64_t cl; /* the row's causal length right after the add */
} pt_add;

typedef struct pt_scn {
  uint64_t seed, now;
  const char *phase;
  tu_rng rng;
  int nrep, nkeys;
  mu_rep rep[PT_MAXREP];
  struct {
    sync_delta *d;
    int to;
  } held[PT_MAXHELD];
  int nheld;
  pt_add adds[PT_MAXADDS];
  size_t nadds;
  sync_encoder *enc;
  sync_decoder *dec;
  unsigned long wired, dups, late, dropped, cut, ahead, reinserts;
  uint64_t collected;
  /* Retirements (sync_site_retire), drawn from an RNG of their own so
   * that scenarios without them run as they did before folds. */
  tu_rng frng;
  int stopped[PT_MAXREP]; /* the replica adds and receives no more */
  int retired[PT_MAXREP]; /* and its heir retired it */
  unsigned long retirements, folds_checked;
} pt_scn;

static pt_scn pt_mem;
static pt_scn *pt_cur;

static uint64_t pt_below(pt_scn *s, uint64_t n) { return tu_below(&s->rng, n); }

/* Causal length of key's row as txn sees it (0: never written). */
static uint64_t pt_cl(sync_txn *t, const char *key) {
  sync_changes *it;
  sync_change c;
  uint64_t cl = 0;
  size_t kl = strlen(key);
  int rc;
  TU_OK(sync_changes_open(t, 0, &it));
  while ((rc = sync_changes_next(it, &c)) == 0)
    if (c.key.len == kl && !memcmp(c.key.data, key, kl)) cl = c.causal_length;
  assert_int_equal(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  return cl;
}

/* One local transaction of 1-3 operations on replica ri: adds (most),
 * puts and updates of the LWW columns, deletes. */
static void pt_local_txn(pt_scn *s, int ri) {
  mu_rep *r = &s->rep[ri];
  sync_txn *t;
  size_t n0 = s->nadds;
  int nops = 1 + (int)pt_below(s, 3), op, abort_it;
  if (s->stopped[ri]) return;
  if (pt_below(s, 100) < 40) s->now += pt_below(s, 3);
  abort_it = pt_below(s, 100) < 4;
  TU_OK(sync_txn_begin(r->env, 0, &t));
  for (op = 0; op < nops; op++) {
    int k = (int)pt_below(s, (uint64_t)s->nkeys);
    const char *key = pt_keys[k];
    size_t kl = strlen(key);
    unsigned p = (unsigned)pt_below(s, 100);
    int live = sync_contains(t, 0, key, kl);
    assert_true(live == 0 || live == 1);
    if (p < 60 || (!live && p < 80)) {
      pt_add *a = &s->adds[s->nadds];
      assert_true(s->nadds < PT_MAXADDS);
      a->k = k;
      a->col = pt_below(s, 4) ? CT_C : CT_D;
      a->delta = (int64_t)pt_below(s, 11) - 5;
      if (pt_below(s, 20) == 0) a->delta *= INT64_C(1000000007);
      if (!a->delta) a->delta = 1;
      if (!live) s->reinserts++;
      TU_OK(sync_counter_add(t, 0, key, kl, a->col, a->delta));
      a->cl = pt_cl(t, key);
      s->nadds++;
    } else if (p < 85 || !live) {
      sync_value v[CT_NCOLS];
      char txt[8];
      snprintf(txt, sizeof txt, "r%d", ri);
      v[CT_N] = sync_int((int64_t)pt_below(s, 1000));
      v[CT_C] = sync_null();
      v[CT_S] = sync_text(txt, strlen(txt));
      v[CT_D] = sync_null();
      if (live && pt_below(s, 2)) {
        unsigned col = CT_N;
        TU_OK(sync_update(t, 0, key, kl, &col, &v[CT_N], 1));
      } else {
        TU_OK(sync_put(t, 0, key, kl, v, CT_NCOLS));
      }
    } else {
      TU_OK(sync_delete(t, 0, key, kl));
    }
  }
  if (abort_it) {
    sync_txn_abort(t);
    s->nadds = n0; /* never happened */
    return;
  }
  TU_OK(sync_txn_commit(t));
}

/* d as the receiver would have it from the wire: encoded and decoded. */
static sync_delta *pt_wire(pt_scn *s, sync_delta *d) {
  const void *f;
  size_t flen;
  sync_delta *d2 = NULL;
  TU_OK(sync_encoder_begin(s->enc, d, &flen, NULL));
  TU_OK(sync_encoder_frame(s->enc, &f, &flen));
  TU_OK(sync_decoder_decode(s->dec, f, flen, &d2));
  sync_delta_free(d);
  s->wired++;
  return d2;
}

static void pt_hold(pt_scn *s, sync_delta *d, int to) {
  if (s->nheld == PT_MAXHELD) {
    sync_delta_free(s->held[0].d);
    memmove(s->held, s->held + 1, sizeof s->held[0] * (PT_MAXHELD - 1));
    s->nheld--;
    s->dropped++;
  }
  s->held[s->nheld].d = d;
  s->held[s->nheld].to = to;
  s->nheld++;
}

static void pt_deliver(pt_scn *s, int i) {
  sync_delta *d = s->held[i].d;
  int to = s->held[i].to;
  memmove(s->held + i, s->held + i + 1,
          sizeof s->held[0] * (size_t)(s->nheld - i - 1));
  s->nheld--;
  if (!s->stopped[to]) {
    mu_apply(&s->rep[to], d, SYNC_APPLY_MERGE, NULL);
    s->late++;
  }
  sync_delta_free(d);
}

/* Receiver ri pulls from si: chunks go through the codec or not, are
 * applied twice, held back, delivered ahead of their predecessor, or
 * lost, and the run may stop anywhere. */
static void pt_exchange(pt_scn *s, int ri, int si) {
  mu_rep *r = &s->rep[ri], *snd = &s->rep[si];
  size_t max_rows = 1 + (size_t)pt_below(s, 3);
  int ack = pt_below(s, 4) != 0, iter;
  if (s->stopped[ri]) return;
  for (iter = 0; iter < 10000; iter++) {
    sync_delta *d;
    unsigned p;
    int last;
    if (pt_below(s, 100) < 4) {
      s->cut++;
      return;
    }
    if (pt_below(s, 100) < 6) pt_local_txn(s, pt_below(s, 2) ? ri : si);
    d = mu_cut(r, snd, max_rows, ack);
    if (pt_below(s, 2)) d = pt_wire(s, d);
    last = sync_delta_last(d);
    p = (unsigned)pt_below(s, 100);
    if (p < 60) {
      mu_apply(r, d, SYNC_APPLY_MERGE, NULL);
      if (p >= 50) {
        uint64_t d0 = mu_digest(r);
        mu_apply(r, d, SYNC_APPLY_MERGE, NULL); /* counts nothing twice */
        TU_U64(mu_digest(r), d0);
        s->dups++;
      }
      if (p < 6)
        pt_hold(s, d, ri); /* and again, later */
      else
        sync_delta_free(d);
      if (last) return;
    } else if (p < 75) {
      pt_hold(s, d, ri);
    } else if (p < 85) {
      /* The next chunk first: apply d in a transaction thrown away, ask
       * for what follows, deliver that, and d later or never. */
      sync_txn *t;
      sync_request *req;
      sync_delta *d2;
      sync_txn *st;
      sync_delta_opts o;
      sync_apply_report rep;
      memset(&o, 0, sizeof o);
      o.max_rows = max_rows;
      TU_OK(sync_txn_begin(r->env, 0, &t));
      TU_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, &rep));
      TU_OK(sync_request_make(t, snd->site, &req));
      sync_txn_abort(t);
      TU_OK(sync_txn_begin(snd->env, SYNC_TXN_RDONLY, &st));
      TU_OK(sync_delta_make(st, req, &o, &d2));
      sync_txn_abort(st);
      sync_request_free(req);
      if (pt_below(s, 2)) d2 = pt_wire(s, d2);
      mu_apply(r, d2, SYNC_APPLY_MERGE, NULL);
      sync_delta_free(d2);
      pt_hold(s, d, ri);
      s->ahead++;
    } else {
      sync_delta_free(d);
      s->dropped++;
    }
    if (s->nheld && pt_below(s, 100) < 15)
      pt_deliver(s, (int)pt_below(s, (uint64_t)s->nheld));
  }
  fail_msg("exchange did not end");
}

/* Every replica holds, per key, the model's row: absent when the final
 * causal length is even, else each counter the sum of the adds made at
 * that causal length. */
static void pt_check(pt_scn *s) {
  int i, k;
  for (k = 0; k < s->nkeys; k++) {
    sync_txn *t;
    uint64_t cl;
    int64_t want[2] = {0, 0};
    size_t j;
    for (i = 0; s->stopped[i]; i++) {
    }
    TU_OK(sync_txn_begin(s->rep[i].env, SYNC_TXN_RDONLY, &t));
    cl = pt_cl(t, pt_keys[k]);
    sync_txn_abort(t);
    for (j = 0; j < s->nadds; j++)
      if (s->adds[j].k == k && s->adds[j].cl == cl)
        want[s->adds[j].col == CT_D] += s->adds[j].delta;
    for (i = 0; i < s->nrep; i++) {
      int64_t c = 0, d = 0;
      int rc;
      if (s->stopped[i]) continue;
      rc = ct_get(&s->rep[i], pt_keys[k], CT_C, &c);
      if (cl == 0 || !(cl & 1)) {
        if (rc != SYNC_NOTFOUND)
          fail_msg("key %s: replica %d has a row, model: causal length %" PRIu64,
                   pt_keys[k], i, cl);
        continue;
      }
      TU_OK(rc);
      TU_OK(ct_get(&s->rep[i], pt_keys[k], CT_D, &d));
      if (c != want[0] || d != want[1])
        fail_msg("key %s (cl %" PRIu64 "): replica %d has c=%" PRId64
                 " d=%" PRId64 ", model c=%" PRId64 " d=%" PRId64,
                 pt_keys[k], cl, i, c, d, want[0], want[1]);
    }
  }
  /* Counters are never a conflict. */
  for (i = 0; i < s->nrep; i++) {
    sync_txn *t;
    sync_conflicts *it;
    sync_conflict c;
    TU_OK(sync_txn_begin(s->rep[i].env, SYNC_TXN_RDONLY, &t));
    TU_OK(sync_conflicts_open(t, 0, &it));
    while (sync_conflicts_next(it, &c) == 0)
      assert_true(c.column != CT_C && c.column != CT_D);
    sync_conflicts_close(it);
    sync_txn_abort(t);
  }
}

/* No cell of a replica still adding holds a contribution of a retired
 * site: its heir's holds it. */
static void pt_check_folds(pt_scn *s) {
  int i, j, k;
  unsigned c;
  for (i = 0; i < s->nrep; i++) {
    if (s->stopped[i]) continue;
    for (k = 0; k < s->nkeys; k++)
      for (c = CT_C; c <= CT_D; c += CT_D - CT_C) {
        int64_t v;
        if (ct_get(&s->rep[i], pt_keys[k], c, &v) == SYNC_NOTFOUND) continue;
        for (j = 0; j < s->nrep; j++)
          if (s->retired[j] && ct_holds(&s->rep[i], pt_keys[k], c,
                                         s->rep[j].site))
            fail_msg("key %s: replica %d still holds retired replica %d's "
                     "contribution", pt_keys[k], i, j);
        s->folds_checked++;
      }
  }
}

/* Replica ri stops for good: an heir pulls all it has, and retires it
 * (when it holds a change of it: a replica that never wrote has nothing
 * to fold).  At least two replicas keep adding. */
static void pt_retire(pt_scn *s) {
  int live = 0, i, ri, hi, rc;
  sync_txn *t;
  for (i = 0; i < s->nrep; i++) live += !s->stopped[i];
  if (live < 3) return;
  do ri = (int)tu_below(&s->frng, (uint64_t)s->nrep);
  while (s->stopped[ri]);
  do hi = (int)tu_below(&s->frng, (uint64_t)s->nrep);
  while (s->stopped[hi] || hi == ri);
  s->phase = "retiring a replica";
  ct_pull_wire(&s->rep[hi], &s->rep[ri], NULL);
  s->stopped[ri] = 1;
  TU_OK(sync_txn_begin(s->rep[hi].env, 0, &t));
  rc = sync_site_retire(t, s->rep[ri].site);
  if (rc == SYNC_NOTFOUND) {
    sync_txn_abort(t);
  } else {
    TU_OK(rc);
    TU_OK(sync_txn_commit(t));
    s->retired[ri] = 1;
    s->retirements++;
  }
  s->phase = "random adds, writes and exchanges";
}

static void pt_free(pt_scn *s) {
  int i;
  for (i = 0; i < s->nheld; i++) sync_delta_free(s->held[i].d);
  s->nheld = 0;
  for (i = 0; i < PT_MAXREP; i++)
    if (s->rep[i].env || s->rep[i].path[0]) mu_close(&s->rep[i]);
  sync_encoder_free(s->enc);
  sync_decoder_free(s->dec);
  s->enc = NULL;
  s->dec = NULL;
}

/* Every replica has acknowledged every other's log: each collects its
 * tombstones.  Rows written again start above the collected causal
 * lengths, which the model reads back like any other. */
static void pt_gc(pt_scn *s) {
  int i, k, r;
  s->phase = "gc";
  /* Twice: the first round brings every cursor to its log's end (the
   * last clean pulls logged rows again), the second acknowledges it. */
  for (r = 0; r < 2; r++)
    for (i = 0; i < s->nrep; i++)
      for (k = 0; k < s->nrep; k++)
        if (i != k) mu_pull(&s->rep[i], &s->rep[k], 0, 1, NULL);
  for (i = 0; i < s->nrep; i++) {
    sync_txn *t;
    uint64_t collected, after;
    TU_OK(sync_txn_begin(s->rep[i].env, 0, &t));
    TU_OK(sync_gc(t, &collected));
    TU_OK(sync_tombstones(t, &after));
    TU_OK(sync_txn_commit(t));
    TU_U64(after, 0);
    s->collected += collected;
  }
}

static void pt_scenario(pt_scn *s, uint64_t seed) {
  int i, j, step, steps, round, e, epochs;
  memset(s, 0, sizeof *s);
  pt_cur = s;
  s->seed = seed;
  s->rng.s = seed;
  s->frng.s = seed ^ UINT64_C(0xf01df01df01df01d);
  s->phase = "setup";
  s->nrep = 3 + (int)pt_below(s, 3);
  s->nkeys = 1 + (int)pt_below(s, PT_MAXKEYS);
  s->now = UINT64_C(1700000000000);
  TU_OK(sync_encoder_create(NULL, NULL, &s->enc));
  TU_OK(sync_decoder_create(NULL, NULL, &s->dec));
  for (i = 0; i < s->nrep; i++) {
    uint8_t site[16];
    char path[32];
    tu_fill(&s->rng, site, 16);
    site[0] = (uint8_t)((site[0] & 0xf0) | (uint8_t)i);
    snprintf(path, sizeof path, "t_ct%d.db", i);
    mu_open_schema(&s->rep[i], path, site, &s->now,
                   (int64_t)pt_below(s, 5) - 2, ct_tables, 1);
  }
  epochs = pt_below(s, 4) == 0 ? 2 : 1;
  for (e = 0; e < epochs; e++) {
    if (e) pt_gc(s);
    s->phase = "random adds, writes and exchanges";
    steps = 40 + (int)pt_below(s, 40 * (uint64_t)s->nrep);
    for (step = 0; step < steps; step++) {
      uint64_t p;
      /* Retirements in the last epoch of a scenario that collected
       * tombstones first (every replica knows every other then). */
      if (epochs == 2 && e == 1 && tu_below(&s->frng, 100) < 3) {
        pt_retire(s);
        continue;
      }
      p = pt_below(s, 100);
      if (p < 55) {
        pt_local_txn(s, (int)pt_below(s, (uint64_t)s->nrep));
      } else if (p < 95) {
        int a = (int)pt_below(s, (uint64_t)s->nrep);
        int b = (int)pt_below(s, (uint64_t)s->nrep - 1);
        if (b >= a) b++;
        pt_exchange(s, a, b);
      } else if (s->nheld) {
        pt_deliver(s, (int)pt_below(s, (uint64_t)s->nheld));
      }
    }
    while (s->nheld) {
      if (pt_below(s, 2)) {
        pt_deliver(s, (int)pt_below(s, (uint64_t)s->nheld));
      } else {
        sync_delta_free(s->held[s->nheld - 1].d);
        s->nheld--;
      }
    }
    if (s->retirements) {
      /* The heirs fold the cells they hold. */
      s->phase = "folding";
      for (i = 0; i < s->nrep; i++)
        if (!s->stopped[i]) TU_OK(sync_env_gc(s->rep[i].env, NULL));
    }
    s->phase = "clean pulls";
    for (round = 1;; round++) {
      int same = 1;
      for (i = 0; i < s->nrep; i++)
        for (j = 0; j < s->nrep; j++)
          if (i != j && !s->stopped[i]) {
            if (pt_below(s, 2))
              ct_pull_wire(&s->rep[i], &s->rep[j], NULL);
            else
              mu_pull(&s->rep[i], &s->rep[j], 1 + pt_below(s, 3), 1, NULL);
          }
      for (i = 0; i < s->nrep; i++)
        for (j = i + 1; j < s->nrep; j++)
          if (!s->stopped[i] && !s->stopped[j] &&
              mu_digest(&s->rep[i]) != mu_digest(&s->rep[j]))
            same = 0;
      if (same) break;
      if (round == 3)
        fail_msg("digests differ after %d rounds of pulls", round);
    }
    s->phase = "model check";
    pt_check(s);
    if (s->retirements) pt_check_folds(s);
  }
  pt_free(s);
  pt_cur = NULL;
}

static int pt_teardown(void **state) {
  (void)state;
  if (pt_cur) {
    fprintf(stderr,
            "FAILED counter scenario seed 0x%016" PRIx64 " during %s; replay "
            "with SYNC_TEST_SEED=0x%016" PRIx64
            " SYNC_TEST_COUNTER_SCENARIOS=1\n",
            pt_cur->seed, pt_cur->phase, pt_cur->seed);
    pt_free(pt_cur);
    pt_cur = NULL;
  }
  return 0;
}

static uint64_t pt_env(const char *name, uint64_t dflt) {
  const char *v = getenv(name);
  return v && *v ? (uint64_t)strtoull(v, NULL, 0) : dflt;
}

static void test_property_concurrent_adds(void **state) {
  uint64_t seed = pt_env("SYNC_TEST_SEED", UINT64_C(0xc0a7e001));
  uint64_t n = pt_env("SYNC_TEST_COUNTER_SCENARIOS", 200), i;
  unsigned long adds = 0, wired = 0, dups = 0, late = 0, ahead = 0, cut = 0,
                reins = 0, collected = 0, retirements = 0, fchecked = 0;
  (void)state;
  for (i = 0; i < n; i++) {
    pt_scenario(&pt_mem, seed + i);
    adds += (unsigned long)pt_mem.nadds;
    wired += pt_mem.wired;
    dups += pt_mem.dups;
    late += pt_mem.late;
    ahead += pt_mem.ahead;
    cut += pt_mem.cut;
    reins += pt_mem.reinserts;
    collected += (unsigned long)pt_mem.collected;
    retirements += pt_mem.retirements;
    fchecked += pt_mem.folds_checked;
  }
  print_message("counter property: %" PRIu64 " scenarios, %lu adds (%lu "
                "re-inserting), %lu chunks through the codec, %lu applied "
                "twice, %lu late, %lu ahead, %lu runs cut, %lu tombstones "
                "collected, %lu replicas retired (%lu cells checked free of "
                "them)\n",
                n, adds, reins, wired, dups, late, ahead, cut, collected,
                retirements, fchecked);
}


/* Sessions over a link that drops, duplicates, reorders and cuts bytes
 * (sess_util.h), in random fragments, between a server and 3 devices
 * that all add to one row's counters (each creating it on its own at
 * first): once the link is clean, every add counts exactly once. */
static void test_sessions_faulty_link(void **state) {
  mu_rep srv, dev[3];
  tu_rng g = {UINT64_C(0xc0a7e5e5)};
  static const su_faults faults = {20, 20, 20, 0, 8};
  int64_t want[2] = {0, 0};
  int i, round;
  (void)state;
  ct_open(&srv, "ct_s.db", 0x51);
  ct_open(&dev[0], "ct_d0.db", 0x61);
  ct_open(&dev[1], "ct_d1.db", 0x62);
  ct_open(&dev[2], "ct_d2.db", 0x63);
  for (round = 0; round < 80; round++) {
    int who = (int)tu_below(&g, 4); /* 3: the server */
    int dcol = tu_below(&g, 3) == 0;
    int64_t delta = (int64_t)tu_below(&g, 9) - 4;
    sync_session_opts co, so;
    sync_session *a, *b;
    su_pump p;
    if (!delta) delta = 7;
    TU_OK(ct_add(who == 3 ? &srv : &dev[who], "k", dcol ? CT_D : CT_C, delta));
    want[dcol] += delta;
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    so.server = 1;
    TU_OK(sync_session_create(dev[(int)tu_below(&g, 3)].env, &co, &a));
    TU_OK(sync_session_create(srv.env, &so, &b));
    memset(&p, 0, sizeof p);
    p.g = &g;
    p.max_piece = 1 + (size_t)tu_below(&g, 300);
    p.faults = &faults;
    su_run(&p, a, b);
    sync_session_free(a);
    sync_session_free(b);
  }
  /* Clean sessions: every device to the server, then back. */
  for (round = 0; round < 2; round++)
    for (i = 0; i < 3; i++)
      TU_RC(su_sync(&dev[i], &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(ct_val(&srv, "k", CT_C), want[0]);
  assert_int_equal(ct_val(&srv, "k", CT_D), want[1]);
  for (i = 0; i < 3; i++) {
    assert_int_equal(ct_val(&dev[i], "k", CT_C), want[0]);
    assert_int_equal(ct_val(&dev[i], "k", CT_D), want[1]);
    assert_true(mu_digest(&dev[i]) == mu_digest(&srv));
  }
  mu_close(&srv);
  for (i = 0; i < 3; i++) mu_close(&dev[i]);
}


/* ---------------------------------------------------------------------
 * Allocation failures
 * ------------------------------------------------------------------- */

/* The frame a replica gets from s (site 0x5e): s's adds of 10 to k0..k2
 * and of 5 to k3, with t's (0x7e) of 20 to k0 merged in. */
static unsigned char al_frame[8192];
static size_t al_flen;

static void al_make_frame(void) {
  mu_rep s, t, r;
  sync_delta *d;
  char key[4];
  int i;
  ct_open(&s, "ct_s.db", 0x5e);
  ct_open(&t, "ct_t.db", 0x7e);
  ct_open(&r, "ct_al.db", 0x3e); /* the receiver's site, for the request */
  TU_OK(ct_add(&t, "k0", CT_C, 20));
  ct_pull_wire(&s, &t, NULL);
  for (i = 0; i < 3; i++) {
    snprintf(key, sizeof key, "k%d", i);
    TU_OK(ct_add(&s, key, CT_C, 10));
  }
  TU_OK(ct_add(&s, "k3", CT_D, 5));
  d = mu_cut(&r, &s, 0, 0);
  assert_true(sync_delta_last(d));
  al_flen = ct_frame_bytes(d, al_frame, sizeof al_frame);
  sync_delta_free(d);
  mu_close(&s);
  mu_close(&t);
  mu_close(&r);
}

/* Open ct_al.db (site 0x3e) on allocator a, add 1 to k0..k2 in one
 * transaction, decode the frame and apply it in another, read back.
 * Returns the first error. */
static int al_scenario(tu_alloc *a) {
  sync_allocator al = tu_allocator(a);
  mu_rep r;
  sync_env *env = NULL;
  sync_txn *x = NULL;
  sync_decoder *dec = NULL;
  sync_delta *d = NULL;
  sync_apply_report rep;
  sync_value v[CT_NCOLS];
  int rc, i;
  char key[4];
  memset(&r, 0, sizeof r);
  mu_site(r.site, 0x3e);
  r.now = &ct_now;
  if ((rc = sync_env_create(&al, &env))) return rc;
  TU_OK(sync_env_set_random(env, mu_random_fn, &r));
  TU_OK(sync_env_set_clock(env, mu_clock_fn, &r));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  if ((rc = sync_env_set_schema(env, ct_tables, 1)) ||
      (rc = sync_env_open(env, "ct_al.db", 0)))
    goto out;
  if ((rc = sync_txn_begin(env, 0, &x))) goto out;
  for (i = 0; i < 3 && !rc; i++) {
    snprintf(key, sizeof key, "k%d", i);
    rc = sync_counter_add(x, 0, key, 2, CT_C, 1);
  }
  if (rc) goto out;
  rc = sync_txn_commit(x);
  x = NULL;
  if (rc) goto out;
  if ((rc = sync_decoder_create(&al, NULL, &dec)) ||
      (rc = sync_decoder_decode(dec, al_frame, al_flen, &d)))
    goto out;
  if ((rc = sync_txn_begin(env, 0, &x)) ||
      (rc = sync_delta_apply(x, d, SYNC_APPLY_MERGE, &rep)))
    goto out;
  rc = sync_txn_commit(x);
  x = NULL;
  if (rc) goto out;
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &x)) ||
      (rc = sync_get(x, 0, "k0", 2, v, CT_NCOLS)))
    goto out;
  assert_int_equal(v[CT_C].i, 31);
out:
  sync_txn_abort(x);
  sync_delta_free(d);
  sync_decoder_free(dec);
  sync_env_close(env);
  return rc;
}

/* What the file holds after a run: each transaction whole or not at
 * all. */
static void al_verify(void) {
  mu_rep r;
  int64_t k0, k1, k3 = 0, d3 = 0;
  int has3;
  if (!tu_file_exists("ct_al.db")) return;
  memset(&r, 0, sizeof r);
  mu_site(r.site, 0x3e);
  r.random_calls = 1;
  r.now = &ct_now;
  snprintf(r.path, sizeof r.path, "ct_al.db");
  TU_OK(sync_env_create(NULL, &r.env));
  TU_OK(sync_env_set_random(r.env, mu_random_fn, &r));
  TU_OK(sync_env_set_clock(r.env, mu_clock_fn, &r));
  TU_OK(sync_env_set_schema(r.env, ct_tables, 1));
  if (sync_env_open(r.env, "ct_al.db", 0)) {
    /* Failed before the file was a database: nothing in it. */
    sync_env_close(r.env);
    return;
  }
  has3 = ct_get(&r, "k3", CT_D, &d3) == 0;
  (void)k3;
  if (ct_get(&r, "k0", CT_C, &k0)) k0 = 0;
  if (ct_get(&r, "k1", CT_C, &k1)) k1 = 0;
  /* nothing, the adds, or the adds and the frame */
  if (!((k0 == 0 && k1 == 0 && !has3) || (k0 == 1 && k1 == 1 && !has3) ||
        (k0 == 31 && k1 == 11 && has3 && d3 == 5)))
    fail_msg("torn state: k0 %" PRId64 ", k1 %" PRId64 ", k3 %s", k0, k1,
             has3 ? "present" : "absent");
  sync_env_close(r.env);
}

/* ---------------------------------------------------------------------
 * Row history: restores of a table with counters
 * ------------------------------------------------------------------- */
#define RS_NK 6
#define RS_MAXS 200

/* A row of the model: n and s are LWW (s: an index in rs_strs, -1
 * NULL; n_null: n is NULL), c and d counters. */
typedef struct rs_row {
  int live, n_null, s;
  int64_t n, c, d;
} rs_row;

static const char *rs_strs[3] = {"x", "yy", "zzz"};

typedef struct rs_model {
  rs_row cur[RS_NK];
  rs_row snap[RS_MAXS][RS_NK];
  uint64_t snap_ver[RS_MAXS], snap_time[RS_MAXS];
  size_t nsnap;
} rs_model;

static void rs_key(int k, char *buf) { snprintf(buf, 4, "r%d", k); }

static int rs_lww_eq(const rs_row *a, const rs_row *b) {
  return a->n_null == b->n_null && (a->n_null || a->n == b->n) && a->s == b->s;
}

static int rs_eq(const rs_row *a, const rs_row *b) {
  if (a->live != b->live) return 0;
  return !a->live || (rs_lww_eq(a, b) && a->c == b->c && a->d == b->d);
}

static void rs_vals(const rs_row *r, sync_value *v) {
  v[CT_N] = r->n_null ? sync_null() : sync_int(r->n);
  v[CT_C] = sync_null();
  v[CT_S] =
      r->s < 0 ? sync_null() : sync_text(rs_strs[r->s], strlen(rs_strs[r->s]));
  v[CT_D] = sync_null();
}

/* Values read back (v, NULL: absent) equal the model row r. */
static int rs_vals_eq(const sync_value *v, const rs_row *r) {
  sync_value w[CT_NCOLS];
  if (!v || !r->live) return !v && !r->live;
  rs_vals(r, w);
  w[CT_C] = sync_int(r->c);
  w[CT_D] = sync_int(r->d);
  return tu_value_equal(&v[CT_N], &w[CT_N]) &&
         tu_value_equal(&v[CT_S], &w[CT_S]) &&
         tu_value_equal(&v[CT_C], &w[CT_C]) &&
         tu_value_equal(&v[CT_D], &w[CT_D]);
}

static void rs_check(mu_rep *r, const rs_row *want, const char *what) {
  sync_txn *x;
  int k;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  for (k = 0; k < RS_NK; k++) {
    char key[4];
    sync_value v[CT_NCOLS];
    int rc;
    rs_key(k, key);
    rc = sync_get(x, 0, key, strlen(key), v, CT_NCOLS);
    if (rc != SYNC_NOTFOUND) TU_OK(rc);
    if (!rs_vals_eq(rc ? NULL : v, &want[k]))
      fail_msg("%s: %s: row %s differs from the model (live %d, c %" PRId64
               ", d %" PRId64 "; read c %" PRId64 ", d %" PRId64 ")",
               r->path, what, key, want[k].live, want[k].c, want[k].d,
               rc ? 0 : v[CT_C].i, rc ? 0 : v[CT_D].i);
  }
  sync_txn_abort(x);
}

static void rs_snap(rs_model *m, mu_rep *a) {
  assert_true(m->nsnap < RS_MAXS);
  memcpy(m->snap[m->nsnap], m->cur, sizeof m->cur);
  m->snap_ver[m->nsnap] = mu_version(a);
  m->snap_time[m->nsnap] = ct_now;
  m->nsnap++;
}

/* One random write of key k in x, mirrored on the model row. */
static void rs_op(sync_txn *x, tu_rng *g, int k, rs_row *r) {
  char key[4];
  int kind = (int)tu_below(g, 6);
  rs_key(k, key);
  if (kind == 0 && r->live) {
    TU_OK(sync_delete(x, 0, key, strlen(key)));
    r->live = 0;
  } else if (kind <= 1 || (kind == 2 && !r->live)) {
    sync_value v[CT_NCOLS];
    rs_row n = *r;
    n.n_null = tu_below(g, 4) == 0;
    n.n = (int64_t)tu_below(g, 3);
    n.s = (int)tu_below(g, 4) - 1;
    if (!r->live) n.c = n.d = 0; /* a re-insert starts them from 0 */
    n.live = 1;
    rs_vals(&n, v);
    TU_OK(sync_put(x, 0, key, strlen(key), v, CT_NCOLS));
    *r = n;
  } else if (kind == 2) {
    unsigned col = CT_N;
    sync_value v = sync_int((int64_t)tu_below(g, 3));
    TU_OK(sync_update(x, 0, key, strlen(key), &col, &v, 1));
    r->n_null = 0;
    r->n = v.i;
  } else {
    int dcol = kind == 5;
    int64_t delta = (int64_t)tu_below(g, 11) - 5;
    if (!delta) delta = 6;
    TU_OK(sync_counter_add(x, 0, key, strlen(key), dcol ? CT_D : CT_C, delta));
    if (!r->live) {
      /* An add re-inserts the row with its columns unset. */
      memset(r, 0, sizeof *r);
      r->live = r->n_null = 1;
      r->s = -1;
    }
    *(dcol ? &r->d : &r->c) += delta;
  }
}

/* What a diff reports, checked against the model's two states. */
typedef struct rs_diffck {
  const rs_row *a, *b;
  int seen;
} rs_diffck;

static int rs_diff_fn(void *ctx, const void *key, size_t klen, int kind,
                      const sync_value *va, const sync_value *vb,
                      unsigned nvals) {
  rs_diffck *d = (rs_diffck *)ctx;
  int k = ((const char *)key)[1] - '0';
  assert_int_equal(klen, 2);
  assert_int_equal(nvals, CT_NCOLS);
  assert_false(rs_eq(&d->a[k], &d->b[k]));
  assert_int_equal(kind, !d->a[k].live   ? SYNC_DIFF_ADDED
                         : !d->b[k].live ? SYNC_DIFF_REMOVED
                                         : SYNC_DIFF_CHANGED);
  assert_true(rs_vals_eq(va, &d->a[k]));
  assert_true(rs_vals_eq(vb, &d->b[k]));
  d->seen++;
  return 0;
}

/* The stamp of column col of key's row, or hlc 0. */
static uint64_t rs_stamp(mu_rep *r, const char *key, unsigned col) {
  sync_txn *x;
  sync_versions *it;
  sync_version ver;
  sync_stamp s;
  uint64_t hlc = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_versions_open(x, 0, key, strlen(key), &it));
  if (sync_versions_next(it, &ver, NULL, 0) == 0 &&
      sync_versions_column(it, col, NULL, &s, NULL) == 0)
    hlc = s.hlc;
  sync_versions_close(it);
  sync_txn_abort(x);
  return hlc;
}

/* A table with LWW and counter columns, history on: puts, updates,
 * adds and deletes over time; a restore to a random earlier point
 * brings back every value of the model's state then (counters by
 * adds of the difference, LWW columns by a put of what differs, rows
 * deleted or inserted again), diffs report what the model says, and a
 * second replica that added concurrently converges, over sessions, to
 * the restored values plus its own adds (lost only where the restore
 * deleted the row they went to). */
static void test_restore_with_counters(void **state) {
  static rs_model m;
  mu_rep a, b;
  tu_rng g = {UINT64_C(0x7e5707ec)};
  sync_history_opts ho;
  /* cases met: rows changed at both points, only by a counter,
   * inserted again, deleted; b's adds kept, lost, inserting a row */
  unsigned long both = 0, ctr_only = 0, reins = 0, dels = 0, kept = 0, lost = 0,
                b_ins = 0;
  int round;
  (void)state;
  memset(&m, 0, sizeof m);
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  memset(&ho, 0, sizeof ho);
  TU_OK(sync_env_set_history(a.env, 0, &ho));
  rs_snap(&m, &a);
  for (round = 0; round < 8; round++) {
    int64_t badd[RS_NK][2];
    rs_row then[RS_NK], before[RS_NK];
    uint64_t lww_stamp[RS_NK], changed = 0, want_changed = 0;
    rs_diffck dc;
    sync_txn *x;
    size_t j;
    int i, k;
    for (i = 0; i < 12; i++) {
      int nops = 1 + (int)tu_below(&g, 3), o;
      ct_now += 5;
      TU_OK(sync_txn_begin(a.env, 0, &x));
      for (o = 0; o < nops; o++) {
        k = (int)tu_below(&g, RS_NK);
        rs_op(x, &g, k, &m.cur[k]);
      }
      TU_OK(sync_txn_commit(x));
      rs_snap(&m, &a);
    }
    rs_check(&a, m.cur, "after the writes");
    ct_now += 5;
    TU_RC(su_sync(&b, &a, NULL, NULL, NULL, NULL), 1);
    rs_check(&b, m.cur, "synced");
    /* b adds, concurrently with the restore below (to live rows, and to
     * deleted ones, which its adds insert again). */
    memset(badd, 0, sizeof badd);
    for (i = 0; i < 4; i++) {
      int dcol = (int)tu_below(&g, 2);
      int64_t delta = (int64_t)tu_below(&g, 21) - 10;
      char key[4];
      if (!delta) delta = 11;
      k = (int)tu_below(&g, RS_NK);
      rs_key(k, key);
      ct_now += 1;
      TU_OK(ct_add(&b, key, dcol ? CT_D : CT_C, delta));
      badd[k][dcol] += delta;
    }
    /* The point: a version or a time, any since history began. */
    j = (size_t)tu_below(&g, m.nsnap);
    memcpy(then, m.snap[j], sizeof then);
    memcpy(before, m.cur, sizeof before);
    for (k = 0; k < RS_NK; k++) {
      char key[4];
      rs_key(k, key);
      lww_stamp[k] = rs_stamp(&a, key, CT_N);
      if (rs_eq(&then[k], &before[k])) continue;
      want_changed++;
      if (then[k].live && before[k].live) {
        both++;
        ctr_only += rs_lww_eq(&then[k], &before[k]);
      }
      reins += then[k].live && !before[k].live;
      dels += !then[k].live;
    }
    /* The diff from the point to now says what the restore undoes. */
    dc.a = then;
    dc.b = before;
    dc.seen = 0;
    TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_history_diff(x, 0, SYNC_ASOF_VERSION, m.snap_ver[j],
                            mu_version(&a), rs_diff_fn, &dc));
    sync_txn_abort(x);
    assert_int_equal((uint64_t)dc.seen, want_changed);
    ct_now += 5;
    TU_OK(sync_txn_begin(a.env, 0, &x));
    if (round & 1)
      TU_OK(sync_table_restore(x, 0, SYNC_ASOF_TIME, m.snap_time[j], &changed));
    else
      TU_OK(
          sync_table_restore(x, 0, SYNC_ASOF_VERSION, m.snap_ver[j], &changed));
    TU_OK(sync_txn_commit(x));
    TU_U64(changed, want_changed);
    rs_check(&a, then, "restored");
    /* Only what differed was written: a row live at both points whose
     * LWW columns were equal keeps their stamps. */
    for (k = 0; k < RS_NK; k++) {
      char key[4];
      rs_key(k, key);
      if (then[k].live && before[k].live && rs_lww_eq(&then[k], &before[k]))
        TU_U64(rs_stamp(&a, key, CT_N), lww_stamp[k]);
    }
    /* The model after both sides met. */
    for (k = 0; k < RS_NK; k++) {
      rs_row *r = &m.cur[k];
      int added = badd[k][0] || badd[k][1];
      *r = then[k];
      kept += added && then[k].live;
      lost += added && !then[k].live && before[k].live;
      b_ins += added && !then[k].live && !before[k].live;
      if (then[k].live) {
        r->c += badd[k][0];
        r->d += badd[k][1];
      } else if (added && !before[k].live) {
        /* b's adds inserted the row again; a wrote nothing to it. */
        memset(r, 0, sizeof *r);
        r->live = r->n_null = 1;
        r->s = -1;
        r->c = badd[k][0];
        r->d = badd[k][1];
      } /* else the restore deleted the row b added to: lost with it */
    }
    ct_now += 5;
    TU_RC(su_sync(&b, &a, NULL, NULL, NULL, NULL), 1);
    ct_now += 5;
    TU_RC(su_sync(&b, &a, NULL, NULL, NULL, NULL), 1);
    rs_check(&a, m.cur, "converged");
    rs_check(&b, m.cur, "converged");
    assert_true(mu_digest(&a) == mu_digest(&b));
    rs_snap(&m, &a);
  }
  print_message("counter restore: rows restored: %lu live at both points "
                "(%lu by counters alone), %lu inserted again, %lu deleted; "
                "concurrent adds: %lu kept, %lu lost with a deleted row, %lu "
                "inserting a row\n",
                both, ctr_only, reins, dels, kept, lost, b_ins);
  assert_true(both && ctr_only && reins && dels && kept && lost && b_ins);
  mu_close(&a);
  mu_close(&b);
}

/* Restoring a counter whose difference does not fit in 64 bits signed,
 * whose value now is past what a read shows (the exact sum counts), and
 * one whose difference this replica's total cannot take (SYNC_ELIMIT,
 * as sync_counter_add: the row keeps its value). */
static void test_restore_counter_limits(void **state) {
  mu_rep a, b;
  sync_history_opts ho;
  sync_txn *x;
  uint64_t v1, v2, changed;
  (void)state;
  ct_open(&a, "ct_a.db", 0xa1);
  ct_open(&b, "ct_b.db", 0xb1);
  memset(&ho, 0, sizeof ho);
  TU_OK(sync_env_set_history(a.env, 0, &ho));
  TU_OK(ct_add(&a, "k", CT_C, INT64_MAX)); /* P = 2^63 - 1 */
  TU_OK(ct_add(&a, "j", CT_C, 5));
  v1 = mu_version(&a);
  TU_OK(ct_add(&a, "k", CT_C, INT64_MIN)); /* N = 2^63: -1 */
  assert_int_equal(ct_val(&a, "k", CT_C), -1);
  /* j: b adds 2^64 - 1 in all; a reads INT64_MAX, its sum is 2^64 + 4. */
  TU_OK(ct_add(&b, "j", CT_C, INT64_MAX));
  TU_OK(ct_add(&b, "j", CT_C, INT64_MAX));
  TU_OK(ct_add(&b, "j", CT_C, 1));
  ct_pull_wire(&a, &b, NULL);
  assert_int_equal(ct_val(&a, "j", CT_C), INT64_MAX);
  v2 = mu_version(&a);
  /* k: + 2^63 (P = 2^64 - 1); j: - (2^64 - 1) (N = 2^64 - 1). */
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sync_table_restore(x, 0, SYNC_ASOF_VERSION, v1, &changed));
  TU_OK(sync_txn_commit(x));
  TU_U64(changed, 2);
  assert_int_equal(ct_val(&a, "k", CT_C), INT64_MAX);
  assert_int_equal(ct_val(&a, "j", CT_C), 5);
  ct_pull_wire(&b, &a, NULL);
  assert_int_equal(ct_val(&b, "k", CT_C), INT64_MAX);
  assert_int_equal(ct_val(&b, "j", CT_C), 5);
  /* k back to -1 would take N to 2^64: refused. */
  TU_OK(ct_add(&a, "k", CT_C, -1)); /* N = 2^63 + 1 */
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_RC(sync_table_restore(x, 0, SYNC_ASOF_VERSION, v2, &changed), SYNC_ELIMIT);
  sync_txn_abort(x);
  /* k up by one needs P + 1: refused too, the row as it was. */
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_RC(sync_table_restore(x, 0, SYNC_ASOF_VERSION, v1, &changed), SYNC_ELIMIT);
  {
    sync_value v[CT_NCOLS];
    TU_OK(sync_get(x, 0, "k", 1, v, CT_NCOLS));
    assert_int_equal(v[CT_C].i, INT64_MAX - 1);
  }
  sync_txn_abort(x);
  mu_close(&a);
  mu_close(&b);
}

static void test_allocation_failures(void **state) {
  tu_alloc a;
  unsigned long k, nth, enomem = 0;
  (void)state;
  al_make_frame();
  memset(&a, 0, sizeof a);
  tu_remove_db("ct_al.db");
  TU_OK(al_scenario(&a));
  assert_int_equal(a.live_blocks, 0);
  al_verify();
  k = a.calls;
  for (nth = 1; nth <= k; nth++) {
    int rc;
    tu_remove_db("ct_al.db");
    memset(&a, 0, sizeof a);
    a.fail_at = nth;
    rc = al_scenario(&a);
    if (a.live_blocks != 0)
      fail_msg("allocation %lu failing: %ld blocks leaked", nth, a.live_blocks);
    if (rc) {
      if (rc != SYNC_ENOMEM)
        fail_msg("allocation %lu failing: %s", nth, sync_strerror(rc));
      enomem++;
    }
    al_verify();
  }
  tu_remove_db("ct_al.db");
  print_message("counter: %lu allocations, %lu failures surfaced\n", k,
                enomem);
  assert_true(enomem > 0);
}

static size_t ct_patch(const unsigned char *f, size_t flen, size_t voff,
                       size_t vlen, const unsigned char *nv, size_t nvlen,
                       unsigned char *out) {
  /* Header: magic 4, major, minor, flags (stored: 0, or FOLDS alone),
   * var body length. */
  uint64_t blen = 0, h;
  size_t k = 7, shift = 0, o, nb;
  int i;
  assert_int_equal(f[6] & ~4, 0);
  do {
    blen |= (uint64_t)(f[k] & 0x7f) << shift;
    shift += 7;
  } while (f[k++] & 0x80);
  assert_true(k + blen + 8 == flen && voff > k && voff + vlen <= k + blen);
  nb = (size_t)blen - vlen + nvlen;
  memcpy(out, f, 7);
  o = 7;
  {
    size_t v = nb;
    do {
      out[o++] = (unsigned char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      v >>= 7;
    } while (v);
  }
  memcpy(out + o, f + k, voff - k);
  o += voff - k;
  memcpy(out + o, nv, nvlen);
  o += nvlen;
  memcpy(out + o, f + voff + vlen, k + (size_t)blen - voff - vlen);
  o += k + (size_t)blen - voff - vlen;
  h = XXH3_64bits(out, o);
  for (i = 0; i < 8; i++) out[o + (size_t)i] = (unsigned char)(h >> (8 * i));
  return o + 8;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_reads_as_integer),
      cmocka_unit_test(test_delete_resets),
      cmocka_unit_test(test_bad_calls),
      cmocka_unit_test(test_overflow_and_saturation),
      cmocka_unit_test(test_counter_own),
      cmocka_unit_test(test_concurrent_adds_all_count),
      cmocka_unit_test(test_policies),
      cmocka_unit_test(test_copied_file_counts_once),
      cmocka_unit_test(test_repair_with_counters),
      cmocka_unit_test(test_relay_rights_per_contribution),
      cmocka_unit_test(test_relay_without_the_column),
      cmocka_unit_test(test_wire_sends_only_news),
      cmocka_unit_test(test_hostile_contributions),
      cmocka_unit_test(test_retire_folds_into_heir),
      cmocka_unit_test(test_retire_errors),
      cmocka_unit_test(test_retired_site_that_adds_again),
      cmocka_unit_test(test_retire_chain),
      cmocka_unit_test(test_heir_copied_mid_fold),
      cmocka_unit_test(test_heir_restored_before_the_fold),
      cmocka_unit_test(test_hostile_folds),
      cmocka_unit_test(test_format_version),
      cmocka_unit_test(test_sessions_faulty_link),
      cmocka_unit_test(test_restore_with_counters),
      cmocka_unit_test(test_restore_counter_limits),
      cmocka_unit_test(test_allocation_failures),
      cmocka_unit_test_teardown(test_property_concurrent_adds, pt_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
