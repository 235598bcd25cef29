/*
 * Unit tests of the byte-level modules: varints and zig-zag (util), the
 * stored row codec and its checksum (row), the hybrid logical clock
 * (clock), a mark's lineage as frames and peer records carry it
 * (delta).  Built against the src/ objects, where internals are visible.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "delta.h"
#include "row.h"
#include "util.h"

static void test_varint_round_trips_edges(void **state) {
  static const uint64_t cases[] = {0,         1,          127,
                                   128,       16383,      16384,
                                   UINT32_MAX, UINT64_MAX >> 1, UINT64_MAX};
  unsigned char buf[SX_VARINT_MAX];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t out = 12345;
    size_t n = sx_put_varint(buf, cases[i]);
    assert_int_equal(n, sx_varint_len(cases[i]));
    assert_int_equal(sx_get_varint(buf, buf + n, &out), n);
    assert_true(out == cases[i]);
  }
  assert_int_equal(sx_put_varint(buf, UINT64_MAX), 10);
}

static void test_varint_rejects_truncated_and_overlong(void **state) {
  unsigned char buf[12];
  uint64_t out;
  size_t n;
  (void)state;
  n = sx_put_varint(buf, UINT64_C(1) << 40);
  assert_int_equal(sx_get_varint(buf, buf + n - 1, &out), 0);
  assert_int_equal(sx_get_varint(buf, buf, &out), 0);
  /* Eleven continuation bytes: longer than any 64-bit value. */
  memset(buf, 0x80, sizeof buf);
  assert_int_equal(sx_get_varint(buf, buf + sizeof buf, &out), 0);
  /* Ten bytes whose last carries more than bit 63. */
  memset(buf, 0xff, 9);
  buf[9] = 0x02;
  assert_int_equal(sx_get_varint(buf, buf + 10, &out), 0);
}

static void test_zigzag_maps_small_magnitudes_to_small_codes(void **state) {
  (void)state;
  assert_true(sx_zigzag(0) == 0);
  assert_true(sx_zigzag(-1) == 1);
  assert_true(sx_zigzag(1) == 2);
  assert_true(sx_zigzag(INT64_MIN) == UINT64_MAX);
  assert_true(sx_unzigzag(sx_zigzag(INT64_MIN)) == INT64_MIN);
  assert_true(sx_unzigzag(sx_zigzag(INT64_MAX)) == INT64_MAX);
  assert_true(sx_unzigzag(sx_zigzag(-123456789)) == -123456789);
}

static void test_endian_helpers_are_byte_exact(void **state) {
  unsigned char b[8];
  (void)state;
  sx_put_le64(b, UINT64_C(0x0102030405060708));
  assert_int_equal(b[0], 8);
  assert_int_equal(b[7], 1);
  assert_true(sx_get_le64(b) == UINT64_C(0x0102030405060708));
  sx_put_be64(b, UINT64_C(0x0102030405060708));
  assert_int_equal(b[0], 1);
  assert_true(sx_get_be64(b) == UINT64_C(0x0102030405060708));
  sx_put_le32(b, 0xa1b2c3d4u);
  assert_int_equal(b[0], 0xd4);
  assert_true(sx_get_le32(b) == 0xa1b2c3d4u);
}

static void test_hlc_strictly_increases(void **state) {
  uint64_t h = 0, prev;
  int i;
  (void)state;
  h = sx_hlc_next(h, 1000);
  assert_true(h == (UINT64_C(1000) << 16));
  prev = h;
  /* Same millisecond: the counter moves. */
  h = sx_hlc_next(h, 1000);
  assert_true(h == prev + 1);
  /* Clock steps back: still after the last stamp. */
  prev = h;
  h = sx_hlc_next(h, 10);
  assert_true(h > prev);
  /* Clock moves on: the millisecond field takes it. */
  h = sx_hlc_next(h, 2000);
  assert_true(h == (UINT64_C(2000) << 16));
  /* 70,000 stamps in one millisecond carry into the ms field, in order. */
  for (i = 0; i < 70000; i++) {
    prev = h;
    h = sx_hlc_next(h, 2000);
    assert_true(h > prev);
  }
  assert_true(SX_HLC_MS(h) == 2001);
}

static void make_row(sx_row *r) {
  static const char text[] = "hello";
  static const unsigned char blob[] = {0, 1, 2, 0xff};
  sx_stamp a = {UINT64_C(0x1234567890) << 16, 0};
  sx_stamp b = {(UINT64_C(0x1234567890) << 16) + 7, 3};
  r->nstamps = 0;
  r->cl = 3;
  r->version = 70000;
  r->seq = 12;
  r->cl_stamp = sx_row_stamp(r, a);
  r->ncols = 6;
  r->cols[0].st = sx_row_stamp(r, a);
  r->cols[0].base = SX_NOSTAMP;
  r->cols[0].v = sync_int(INT64_MIN);
  r->cols[1].st = sx_row_stamp(r, b);
  r->cols[1].base = sx_row_stamp(r, a);
  r->cols[1].v = sync_real(-0.0);
  r->cols[2].st = sx_row_stamp(r, b);
  r->cols[2].base = SX_NOSTAMP;
  r->cols[2].v = sync_text(text, 5);
  r->cols[3].st = sx_row_stamp(r, a);
  r->cols[3].base = sx_row_stamp(r, b);
  r->cols[3].v = sync_blob(blob, sizeof blob);
  r->cols[4].st = sx_row_stamp(r, a);
  r->cols[4].base = SX_NOSTAMP;
  r->cols[4].v = sync_null();
  r->cols[5].st = SX_NOSTAMP;
  r->cols[5].base = SX_NOSTAMP;
  r->cols[5].v = sync_null();
}

static void test_row_round_trips_every_field(void **state) {
  sx_alloc al;
  sx_row r, d;
  unsigned char buf[512];
  size_t n;
  unsigned i;
  (void)state;
  sx_alloc_default(&al);
  assert_int_equal(sx_row_init(&al, &r, 8), 0);
  assert_int_equal(sx_row_init(&al, &d, 8), 0);
  make_row(&r);
  assert_int_equal(r.nstamps, 2); /* stamps are deduplicated */
  n = sx_row_size(&r);
  assert_true(n <= sizeof buf);
  sx_row_encode(&r, "key", 3, buf, n);
  assert_int_equal(sx_row_decode(buf, n, "key", 3, &d), 0);
  assert_true(d.cl == 3 && d.version == 70000 && d.seq == 12);
  assert_int_equal(d.nstamps, 2);
  assert_true(d.stamps[1].hlc == r.stamps[1].hlc && d.stamps[1].site == 3);
  assert_int_equal(d.ncols, 6);
  for (i = 0; i < 6; i++) {
    assert_int_equal(d.cols[i].st, r.cols[i].st);
    assert_int_equal(d.cols[i].base, r.cols[i].base);
    assert_true(sx_value_eq(&d.cols[i].v, &r.cols[i].v));
  }
  assert_true(d.cols[0].v.i == INT64_MIN);
  assert_true(sx_double_bits(d.cols[1].v.r) == sx_double_bits(-0.0));
  sx_row_free(&al, &r);
  sx_row_free(&al, &d);
}

static void test_row_checksum_catches_every_flipped_byte(void **state) {
  sx_alloc al;
  sx_row r, d;
  unsigned char buf[512];
  size_t n, i;
  int bit;
  (void)state;
  sx_alloc_default(&al);
  assert_int_equal(sx_row_init(&al, &r, 8), 0);
  assert_int_equal(sx_row_init(&al, &d, 8), 0);
  make_row(&r);
  n = sx_row_size(&r);
  sx_row_encode(&r, "key", 3, buf, n);
  for (i = 0; i < n; i++)
    for (bit = 0; bit < 8; bit++) {
      buf[i] ^= (unsigned char)(1u << bit);
      assert_int_equal(sx_row_decode(buf, n, "key", 3, &d), SYNC_ECORRUPT);
      buf[i] ^= (unsigned char)(1u << bit);
    }
  /* Truncated, and filed under another key. */
  for (i = 0; i < n; i++)
    assert_int_equal(sx_row_decode(buf, i, "key", 3, &d), SYNC_ECORRUPT);
  assert_int_equal(sx_row_decode(buf, n, "kez", 3, &d), SYNC_ECORRUPT);
  assert_int_equal(sx_row_decode(buf, n, "key", 3, &d), 0);
  sx_row_free(&al, &r);
  sx_row_free(&al, &d);
}

static void test_row_tombstone_has_no_columns(void **state) {
  sx_alloc al;
  sx_row r, d;
  unsigned char buf[64];
  size_t n;
  sx_stamp s = {99, 0};
  (void)state;
  sx_alloc_default(&al);
  assert_int_equal(sx_row_init(&al, &r, 4), 0);
  assert_int_equal(sx_row_init(&al, &d, 4), 0);
  r.nstamps = 0;
  r.cl = 2;
  r.version = 5;
  r.seq = 0;
  r.cl_stamp = sx_row_stamp(&r, s);
  r.ncols = 0;
  n = sx_row_size(&r);
  sx_row_encode(&r, "k", 1, buf, n);
  assert_int_equal(sx_row_decode(buf, n, "k", 1, &d), 0);
  assert_true(d.cl == 2 && d.ncols == 0 && d.stamps[d.cl_stamp].hlc == 99);
  sx_row_free(&al, &r);
  sx_row_free(&al, &d);
}

/* A mark's lineage round-trips, and every malformed one is refused. */
static void test_lineage_round_trips_and_refuses_malformed(void **state) {
  unsigned char b[SX_LINEAGE_WMAX + 16], *e;
  sx_mark m = {UINT64_C(0x1111), 900};
  sx_lineage l, out;
  sx_rd r;
  unsigned i;
  (void)state;
  memset(&l, 0, sizeof l);
  for (i = 0; i < SX_LINEAGE_MAX; i++) {
    l.e[i].id = UINT64_C(0xa000) + i;
    l.e[i].start = 800 - 100 * (uint64_t)i; /* 800 .. 100: below 900 */
  }
  l.n = SX_LINEAGE_MAX;
  e = sx_wlineage(b, &l);
  assert_true((size_t)(e - b) <= SX_LINEAGE_WMAX);
  r.p = b;
  r.end = e;
  r.bad = 0;
  assert_int_equal(sx_rlineage(&r, &m, &out), 0);
  assert_true(r.p == e);
  assert_int_equal(out.n, SX_LINEAGE_MAX);
  assert_memory_equal(out.e, l.e, sizeof l.e);
  /* Truncated anywhere. */
  for (i = 0; i < (unsigned)(e - b); i++) {
    r.p = b;
    r.end = b + i;
    r.bad = 0;
    assert_int_equal(sx_rlineage(&r, &m, &out), SYNC_EFORMAT);
  }
  {
    /* An epoch not below the mark's start; starts that do not fall; an
     * id of 0; a lineage without a mark; one entry too many. */
    sx_lineage bad[5];
    sx_mark none = {0, 0};
    const sx_mark *marks[5];
    for (i = 0; i < 5; i++) {
      bad[i] = l;
      marks[i] = &m;
    }
    bad[0].e[0].start = 900;
    bad[1].e[3].start = bad[1].e[2].start;
    bad[2].e[5].id = 0;
    bad[3].n = 1;
    marks[3] = &none;
    for (i = 0; i < 4; i++) {
      e = sx_wlineage(b, &bad[i]);
      r.p = b;
      r.end = e;
      r.bad = 0;
      assert_int_equal(sx_rlineage(&r, marks[i], &out), SYNC_EFORMAT);
    }
    b[0] = SX_LINEAGE_MAX + 1;
    r.p = b;
    r.end = b + sizeof b;
    r.bad = 0;
    assert_int_equal(sx_rlineage(&r, &m, &out), SYNC_EFORMAT);
  }
  /* None. */
  memset(&l, 0, sizeof l);
  e = sx_wlineage(b, &l);
  assert_int_equal(e - b, 1);
  r.p = b;
  r.end = e;
  r.bad = 0;
  assert_int_equal(sx_rlineage(&r, &m, &out), 0);
  assert_int_equal(out.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_varint_round_trips_edges),
      cmocka_unit_test(test_varint_rejects_truncated_and_overlong),
      cmocka_unit_test(test_zigzag_maps_small_magnitudes_to_small_codes),
      cmocka_unit_test(test_endian_helpers_are_byte_exact),
      cmocka_unit_test(test_hlc_strictly_increases),
      cmocka_unit_test(test_row_round_trips_every_field),
      cmocka_unit_test(test_row_checksum_catches_every_flipped_byte),
      cmocka_unit_test(test_row_tombstone_has_no_columns),
      cmocka_unit_test(test_lineage_round_trips_and_refuses_malformed),
  };
  return cmocka_run_group_tests_name("internal_codec", tests, NULL, NULL);
}
