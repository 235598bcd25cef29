/*
 * Unit tests of the byte-level modules: varints and zig-zag (util), the
 * stored row codec and its checksum (row), the hybrid logical clock
 * (clock), a mark's lineage as frames and peer records carry it
 * (delta), session frames and their context (codec).  Built against the
 * src/ objects, where internals are visible.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "clock.h"
#include "codec.h"
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

/* sx_get_varint2, the inline reader of rows and log entries, reads what
 * sx_get_varint reads and refuses what it refuses: every value of one to
 * three bytes and some longer ones, cut at every length, and the
 * overlong encodings of one and two bytes' worth. */
static void test_varint2_reads_as_varint(void **state) {
  static const uint64_t longer[] = {UINT32_MAX, UINT64_MAX >> 1, UINT64_MAX};
  unsigned char buf[SX_VARINT_MAX];
  uint64_t v, a, b;
  size_t n, cut, i;
  (void)state;
  for (v = 0; v < (UINT64_C(1) << 21) + sizeof longer / sizeof longer[0];
       v += v < 300 || v > (UINT64_C(1) << 21) - 300 ? 1 : 97) {
    uint64_t x = v < (UINT64_C(1) << 21) ? v : longer[v - (UINT64_C(1) << 21)];
    n = sx_put_varint(buf, x);
    for (cut = 0; cut <= n; cut++) {
      a = b = 7;
      assert_int_equal(sx_get_varint2(buf, buf + cut, &a),
                       sx_get_varint(buf, buf + cut, &b));
      assert_true(a == b);
    }
    assert_int_equal(sx_get_varint2(buf, buf + n, &a), n);
    assert_true(a == x);
  }
  /* 0x80 0x00 (zero in two bytes) and 0xff 0x80 0x00: each reader reads
   * the same value from them. */
  for (i = 0; i < 2; i++) {
    static const unsigned char odd[2][3] = {{0x80, 0x00, 0}, {0xff, 0x80, 0x00}};
    a = b = 7;
    assert_int_equal(sx_get_varint2(odd[i], odd[i] + 2 + i, &a),
                     sx_get_varint(odd[i], odd[i] + 2 + i, &b));
    assert_true(a == b);
  }
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
  sx_row_encode(&r, "key", 3, buf, n, 0);
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
  sx_row_encode(&r, "key", 3, buf, n, 0);
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
  sx_row_encode(&r, "k", 1, buf, n, 0);
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

/* ---------------------------------------------------------------------
 * Session frames (major 3): round trips through a context per side,
 * and hostile bytes
 * ------------------------------------------------------------------- */
#define SF_H0 (UINT64_C(1700000000000) << 16)

static void sf_site(uint8_t out[16], unsigned i) {
  memset(out, 0xee, 16);
  sx_put_le32(out, i);
}

/* Table 0 is (INTEGER, REAL), as the chunks below write it. */
static int sf_coltype(const void *cx, unsigned tid, unsigned col) {
  (void)cx;
  if (tid != 0) return -1;
  return col == 0 ? SYNC_INTEGER : col == 1 ? SYNC_REAL : 0;
}

/* A chunk of n rows of table 0 (keys k<off>.. k<off + n - 1>) from
 * start version v, naming nsites sites: row r's stamp is of site
 * (off + r) % nsites, every other row has a base of another site, every
 * fifth a column of its own stamp; vector entries of sites past 0 rise
 * with the chunk (rows of a later chunk, a later vector). */
static sync_delta *sf_chunk(unsigned nsites, unsigned n, unsigned off,
                            uint64_t v, uint64_t later) {
  sx_alloc al;
  sync_delta *d;
  unsigned i;
  assert_int_equal(sx_alloc_from(NULL, &al), 0);
  d = sx_delta_new(&al);
  assert_non_null(d);
  sf_site(d->sender, 0);
  memset(d->receiver, 0xd1, 16);
  d->schema_hash = 0x1234;
  d->start.mode = d->end.mode = SX_MODE_LOG;
  d->start.version = v;
  d->end.version = v + n;
  d->end.seq = off & 3;
  d->mark.id = 77;
  d->mark.start = 1;
  d->nsites = nsites;
  d->nvv = nsites;
  d->sites = (uint8_t(*)[16])sx_malloc(&al, (size_t)nsites * 16);
  d->vv = (uint64_t *)sx_malloc(&al, (size_t)nsites * sizeof(uint64_t));
  d->rows = (sx_drow *)sx_malloc(&al, (n + 1) * sizeof(sx_drow));
  d->cols = (sx_dcol *)sx_malloc(&al, (2 * n + 1) * sizeof(sx_dcol));
  assert_true(d->sites && d->vv && d->rows && d->cols);
  for (i = 0; i < nsites; i++) {
    sf_site(d->sites[i], i);
    d->vv[i] = i % 7 == 3 ? 0 : SF_H0 + (uint64_t)i * 100000 + later;
  }
  assert_int_equal(sx_buf_reserve(&d->arena, 16 * n), 0);
  for (i = 0; i < n; i++) {
    sx_drow *r = &d->rows[i];
    sx_dcol *c = &d->cols[2 * i];
    unsigned k = off + i, site = k % nsites;
    char key[16];
    int kl = snprintf(key, sizeof key, "k%06u", k);
    memcpy(d->arena.p + d->arena.len, key, (size_t)kl);
    r->tid = 0;
    r->koff = d->arena.len;
    r->klen = (size_t)kl;
    d->arena.len += (size_t)kl;
    r->cl = 1;
    r->clsite = site;
    r->clhlc = SF_H0 + (uint64_t)site * 100000 + later - 50 + (k & 7);
    r->col0 = 2 * i;
    r->ncols = 2;
    memset(c, 0, 2 * sizeof *c);
    c[0].col = 0;
    c[0].v = sync_int((int64_t)k * 7919 - 100000);
    c[1].col = 1;
    c[1].v = sync_real((double)k / 8.0);
    c[0].site = c[1].site = site;
    c[0].hlc = c[1].hlc = r->clhlc;
    if (i & 1) {
      c[0].bsite = c[1].bsite = (site + 1) % nsites;
      c[0].bhlc = c[1].bhlc = SF_H0 - 1000 + k;
    }
    if (i % 5 == 4) {
      c[1].site = (site + 2) % nsites;
      c[1].hlc = SF_H0 + 3;
    }
  }
  d->nrows = n;
  d->ncols = 2 * n;
  return d;
}

static void sf_same(const sync_delta *a, const sync_delta *b) {
  size_t i, j;
  assert_memory_equal(a->sender, b->sender, 16);
  assert_memory_equal(a->receiver, b->receiver, 16);
  assert_true(a->schema_hash == b->schema_hash);
  assert_int_equal(a->start.mode, b->start.mode);
  assert_true(a->start.version == b->start.version);
  assert_int_equal(a->start.seq, b->start.seq);
  assert_true(a->end.version == b->end.version);
  assert_int_equal(a->end.seq, b->end.seq);
  assert_int_equal(a->end.mode, b->end.mode);
  if (a->end.mode == SX_MODE_INITIAL) {
    assert_true(a->end.v0 == b->end.v0 && a->end.tid == b->end.tid);
    assert_int_equal(a->end.klen, b->end.klen);
    assert_memory_equal(a->end.key, b->end.key, a->end.klen);
  }
  assert_int_equal(a->last, b->last);
  assert_true(a->mark.id == b->mark.id && a->mark.start == b->mark.start);
  assert_int_equal(a->nsites, b->nsites);
  assert_memory_equal(a->sites, b->sites, (size_t)a->nsites * 16);
  for (i = 0; i < a->nsites; i++) assert_true(a->vv[i] == b->vv[i]);
  assert_int_equal(a->nrows, b->nrows);
  for (i = 0; i < a->nrows; i++) {
    const sx_drow *x = &a->rows[i], *y = &b->rows[i];
    assert_int_equal(x->klen, y->klen);
    assert_memory_equal(a->arena.p + x->koff, b->arena.p + y->koff, x->klen);
    assert_true(x->cl == y->cl && x->clhlc == y->clhlc);
    assert_int_equal(x->clsite, y->clsite);
    assert_int_equal(x->ncols, y->ncols);
    for (j = 0; j < x->ncols; j++) {
      const sx_dcol *c = &a->cols[x->col0 + j], *e = &b->cols[y->col0 + j];
      assert_int_equal(c->col, e->col);
      assert_true(c->hlc == e->hlc && c->site == e->site);
      assert_true(c->bhlc == e->bhlc);
      if (c->bhlc) assert_int_equal(c->bsite, e->bsite);
      assert_int_equal(c->v.type, e->v.type);
      if (c->v.type == SYNC_INTEGER) assert_true(c->v.i == e->v.i);
      if (c->v.type == SYNC_REAL) assert_true(c->v.r == e->v.r);
      if (c->v.type == SYNC_TEXT || c->v.type == SYNC_BLOB) {
        assert_int_equal(c->v.len, e->v.len);
        if (c->v.len)
          assert_memory_equal(a->arena.p + (uintptr_t)c->v.data,
                              b->arena.p + (uintptr_t)e->v.data, c->v.len);
      }
    }
  }
}

/* A pair of contexts, the sender's and the receiver's, after a request
 * whose vector names sites 0..3 a little behind the chunks. */
static void sf_pair(sx_fctx *tx, sx_fctx *rx) {
  sx_alloc al;
  uint8_t snd[16], rcv[16];
  sync_request req;
  sync_stamp vv[4];
  unsigned i;
  assert_int_equal(sx_alloc_from(NULL, &al), 0);
  sf_site(snd, 0);
  memset(rcv, 0xd1, 16);
  assert_int_equal(sx_fctx_init(tx, &al, snd, rcv, 0x1234), 0);
  assert_int_equal(sx_fctx_init(rx, &al, snd, rcv, 0x1234), 0);
  tx->coltype = rx->coltype = sf_coltype;
  memset(&req, 0, sizeof req);
  req.cur.mode = SX_MODE_LOG;
  req.cur.version = 100;
  req.mark.id = 77;
  req.mark.start = 1;
  for (i = 0; i < 4; i++) {
    sf_site(vv[i].site, 3 - i); /* not sorted: the context sorts */
    vv[i].hlc = SF_H0 + (uint64_t)(3 - i) * 100000 - 900;
  }
  req.vv = vv;
  req.nvv = 4;
  assert_int_equal(sx_fctx_request(tx, &req), 0);
  assert_int_equal(sx_fctx_request(rx, &req), 0);
}

/* Encode d under tx, decode it under rx, in pieces of the given size. */
static sync_delta *sf_through(sync_encoder *enc, sync_decoder *dec,
                              sx_fctx *tx, sx_fctx *rx, const sync_delta *d,
                              size_t piece, size_t *flen) {
  const void *f;
  sync_delta *out = NULL;
  size_t off = 0;
  assert_int_equal(sx_encoder_begin_ctx(enc, tx, d, flen, NULL), 0);
  assert_int_equal(sync_encoder_frame(enc, &f, flen), 0);
  assert_int_equal(((const unsigned char *)f)[0] >> 4, 3);
  while (off < *flen) {
    sync_inbuf in;
    in.ptr = (const unsigned char *)f + off;
    in.size = *flen - off < piece ? *flen - off : piece;
    in.pos = 0;
    assert_null(out);
    assert_int_equal(sx_decoder_feed_ctx(dec, rx, &in, &out), 0);
    assert_int_equal(in.pos, in.size);
    off += in.size;
  }
  assert_non_null(out);
  return out;
}

/* Many chunks of a session, zstd off and on: each comes back as it was
 * cut; a site travels whole only the first time (a frame of a known
 * site table is much smaller than the first), also past the table's
 * cap, where sites travel whole each time; a chunk that starts
 * elsewhere than the last one ended says so. */
static void test_session_frames_round_trip(void **state) {
  int level;
  (void)state;
  for (level = 0; level <= 3; level += 3) {
    sx_fctx tx, rx;
    sync_encoder *enc;
    sync_decoder *dec;
    sync_codec_opts co;
    size_t first = 0, flen, k;
    uint64_t v = 100;
    memset(&co, 0, sizeof co);
    co.level = level;
    assert_int_equal(sync_encoder_create(NULL, &co, &enc), 0);
    assert_int_equal(sync_decoder_create(NULL, &co, &dec), 0);
    sf_pair(&tx, &rx);
    for (k = 0; k < 8; k++) {
      unsigned nsites = k == 5 || k == 6 ? SX_FCTX_SITES + 50 : 300;
      sync_delta *d = sf_chunk(nsites, 40, (unsigned)k * 40, v, k * 10), *got;
      if (k == 4) d->start.version = v + 1000; /* not where the last ended */
      d->last = k == 7;
      got = sf_through(enc, dec, &tx, &rx, d, k & 1 ? 1 : 4096, &flen);
      sf_same(d, got);
      if (k == 0) first = flen;
      if (!level && (k == 1 || k == 7)) assert_true(flen * 2 < first);
      /* Past the cap, the sites beyond it are named whole again. */
      if (k == 6) assert_true(level || flen > 50 * 16);
      v = d->end.version;
      sync_delta_free(d);
      sync_delta_free(got);
      assert_int_equal(tx.nsites, rx.nsites);
      assert_true(tx.frames == k + 1 && rx.frames == k + 1);
    }
    assert_int_equal(tx.nsites, SX_FCTX_SITES);
    sx_fctx_free(&tx);
    sx_fctx_free(&rx);
    sync_encoder_free(enc);
    sync_decoder_free(dec);
  }
}

/* A chunk of table 1 (TEXT, BLOB; not in the session's schema, so its
 * encodings travel) of n rows, each with its own stamp of site 0 when
 * own, else all with one: HLCs a millisecond apart, within one
 * millisecond, across a counter that wraps, far apart; statuses that
 * repeat, blobs empty, repeated or not, now and then NULL. */
static sync_delta *sf_lean_chunk(unsigned n, int own, unsigned off,
                                  int initial) {
  static const char *const status[] = {"ok", "ok", "ok", "warn", "ok",
                                       "fault", "fault", "ok"};
  static const uint64_t step[] = {1, 5, UINT64_C(1000) << 16,
                                  (UINT64_C(1000) << 16) + 7, 65536 * 3 + 1,
                                  UINT64_C(1) << 40};
  sx_alloc al;
  sync_delta *d;
  uint64_t h = SF_H0 + 0xfff0 + (uint64_t)off * 3; /* a counter near its top */
  unsigned i;
  assert_int_equal(sx_alloc_from(NULL, &al), 0);
  d = sx_delta_new(&al);
  assert_non_null(d);
  sf_site(d->sender, 0);
  memset(d->receiver, 0xd1, 16);
  d->schema_hash = 0x1234;
  d->start.mode = d->end.mode = SX_MODE_LOG;
  d->start.version = 100 + off;
  d->end.version = 100 + off + n;
  if (initial) {
    /* An initial stream from the key after the previous chunk's last
     * to this one's last. */
    d->start.mode = d->end.mode = SX_MODE_INITIAL;
    d->start.version = d->end.version = 0;
    d->start.v0 = d->end.v0 = 90;
    d->start.tid = d->end.tid = 1;
    if (off)
      d->start.klen = (size_t)snprintf((char *)d->start.key,
                                       sizeof d->start.key, "k%06u", off - 1);
    d->end.klen = (size_t)snprintf((char *)d->end.key, sizeof d->end.key,
                                   "k%06u", off + n - 1);
  }
  d->mark.id = 77;
  d->mark.start = 1;
  d->nsites = d->nvv = 1;
  d->sites = (uint8_t(*)[16])sx_malloc(&al, 16);
  d->vv = (uint64_t *)sx_malloc(&al, sizeof(uint64_t));
  d->rows = (sx_drow *)sx_malloc(&al, (n + 1) * sizeof(sx_drow));
  d->cols = (sx_dcol *)sx_malloc(&al, (2 * n + 1) * sizeof(sx_dcol));
  assert_true(d->sites && d->vv && d->rows && d->cols);
  sf_site(d->sites[0], 0);
  d->vv[0] = 0;
  assert_int_equal(sx_buf_reserve(&d->arena, 40 * n), 0);
  for (i = 0; i < n; i++) {
    sx_drow *r = &d->rows[i];
    sx_dcol *c = &d->cols[2 * i];
    const char *st = status[i % 8];
    unsigned char blob[3] = {(unsigned char)(i / 3), 7, 9};
    size_t blen = i % 4 == 0 ? 0 : i % 4 == 1 ? 1 : 3;
    char key[16];
    int kl = snprintf(key, sizeof key, "k%06u", off + i);
    if (own && i) h += step[i % 6];
    r->tid = 1;
    r->koff = d->arena.len;
    r->klen = (size_t)kl;
    memcpy(d->arena.p + d->arena.len, key, (size_t)kl);
    d->arena.len += (size_t)kl;
    r->cl = 1;
    r->clsite = 0;
    r->clhlc = h;
    r->col0 = 2 * i;
    r->ncols = 2;
    memset(c, 0, 2 * sizeof *c);
    c[0].col = 0;
    c[0].v.type = SYNC_TEXT;
    c[0].v.len = strlen(st);
    c[0].v.data = (const void *)(uintptr_t)d->arena.len;
    memcpy(d->arena.p + d->arena.len, st, c[0].v.len);
    d->arena.len += c[0].v.len;
    c[1].col = 1;
    if (i % 9 == 8) {
      c[1].v = sync_null();
    } else {
      c[1].v.type = SYNC_BLOB;
      c[1].v.len = blen;
      c[1].v.data = (const void *)(uintptr_t)d->arena.len;
      memcpy(d->arena.p + d->arena.len, blob, blen);
      d->arena.len += blen;
    }
    c[0].site = c[1].site = 0;
    c[0].hlc = c[1].hlc = h;
    if (h > d->vv[0]) d->vv[0] = h;
  }
  d->nrows = n;
  d->ncols = 2 * n;
  return d;
}

/* The chunk flags of session frame f. */
static uint64_t sf_flags(const void *f, size_t len) {
  const unsigned char *p = (const unsigned char *)f, *e = p + len;
  uint64_t u;
  size_t k = 1 + sx_get_varint(p + 1, e, &u); /* header byte, length */
  assert_true(k > 1);
  assert_true(sx_get_varint(p + k, e, &u) > 0);
  return u;
}

/* What session frames write beyond standalone ones: stamps of one site
 * as milliseconds and counter apart, rows that take the next stamp
 * (chunk flag 0x02), TEXT and BLOB values that repeat the previous one
 * as one byte, the tables section of the frame before as a flag (0x04),
 * an initial stream's end cursor at the last row as a flag (0x08), and
 * a first key that shares bytes of the frame before's last: all come
 * back as they were, and frames are smaller than standalone ones. */
static void test_session_frames_lean_round_trip(void **state) {
  int own, initial;
  (void)state;
  for (initial = 0; initial < 2; initial++)
    for (own = 0; own < 2; own++) {
      sx_fctx tx, rx;
      sync_encoder *enc, *alone;
      sync_decoder *dec;
      unsigned k;
      assert_int_equal(sync_encoder_create(NULL, NULL, &enc), 0);
      assert_int_equal(sync_encoder_create(NULL, NULL, &alone), 0);
      assert_int_equal(sync_decoder_create(NULL, NULL, &dec), 0);
      sf_pair(&tx, &rx);
      if (initial) {
        /* The request's cursor: where the first chunk starts. */
        sync_delta *d0 = sf_lean_chunk(30, own, 0, 1);
        tx.start = rx.start = d0->start;
        sync_delta_free(d0);
      }
      for (k = 0; k < 3; k++) {
        sync_delta *d = sf_lean_chunk(30, own, 30 * k, initial), *back;
        const void *f;
        size_t flen, slen;
        uint64_t flags;
        back = sf_through(enc, dec, &tx, &rx, d, 7, &flen);
        sf_same(d, back);
        sync_delta_free(back);
        assert_int_equal(sync_encoder_frame(enc, &f, &flen), 0);
        flags = sf_flags(f, flen);
        /* Each row its own stamp, in key order: the next one. */
        assert_int_equal((flags & 0x02) != 0, own);
        assert_int_equal((flags & 0x04) != 0, k > 0);
        assert_int_equal((flags & 0x08) != 0, initial);
        assert_int_equal((flags & 0x10) != 0, 0);
        assert_int_equal(sync_encoder_begin(alone, d, &slen, NULL), 0);
        printf("lean: %s, %s stamps, frame %u: %zu bytes in a session, "
               "%zu alone\n", initial ? "initial" : "log",
               own ? "own" : "shared", k, flen, slen);
        assert_true(flen + 60 < slen);
        if (k) {
          /* The same chunk as a session's first frame repeats its tables
           * section and its first key whole. */
          sx_fctx t2, r2;
          size_t fresh;
          sf_pair(&t2, &r2);
          t2.start = d->start;
          assert_int_equal(sx_encoder_begin_ctx(alone, &t2, d, &fresh, NULL),
                           0);
          assert_true(flen < fresh);
          sx_fctx_free(&t2);
          sx_fctx_free(&r2);
        }
        sync_delta_free(d);
      }
      sx_fctx_free(&tx);
      sx_fctx_free(&rx);
      sync_encoder_free(enc);
      sync_encoder_free(alone);
      sync_decoder_free(dec);
    }
}

/* A frame of body b (n bytes) as the next frame of rx: its header and
 * its checksum, seeded with the frame's number. */
static size_t sf_frame(unsigned char *f, const sx_fctx *rx,
                       const unsigned char *b, size_t n) {
  uint64_t sum;
  size_t k = 0;
  int i;
  f[k++] = 0x30;
  f[k++] = (unsigned char)n;
  memcpy(f + k, b, n);
  k += n;
  sum = XXH3_64bits_withSeed(f, k, rx->frames);
  for (i = 0; i < 8; i++) f[k++] = (unsigned char)(sum >> (8 * i));
  return k;
}

static int sf_decode(const unsigned char *b, size_t n, uint64_t ref0,
                     const char **why) {
  static char reason[128];
  sx_fctx tx, rx;
  sync_decoder *dec;
  sync_delta *out = NULL;
  unsigned char f[300];
  sync_inbuf in;
  int rc;
  sf_pair(&tx, &rx);
  rx.ref[0].hlc = ref0; /* site 0's entry (the ids sort by their first byte) */
  assert_int_equal(sync_decoder_create(NULL, NULL, &dec), 0);
  in.ptr = f;
  in.size = sf_frame(f, &rx, b, n);
  in.pos = 0;
  rc = sx_decoder_feed_ctx(dec, &rx, &in, &out);
  snprintf(reason, sizeof reason, "%s", sync_decoder_reason(dec));
  *why = reason;
  assert_true(rc ? out == NULL : out != NULL);
  sync_delta_free(out);
  out = NULL;
  if (rc) {
    /* The context takes no more frames. */
    in.pos = 0;
    assert_int_equal(sx_decoder_feed_ctx(dec, &rx, &in, &out), SYNC_EINVAL);
  }
  sync_decoder_free(dec);
  sx_fctx_free(&tx);
  sx_fctx_free(&rx);
  return rc;
}

/* Hostile session frames, each with a good checksum: a site index past
 * the session's table, bodies cut short anywhere, stamp and vector
 * deltas that leave 0..2^64-1, unknown chunk flags, a schema form for a
 * table the sender's schema lacks, bytes after the end, a frame of major
 * version 1: SYNC_EFORMAT with a reason (SYNC_EVERSION for the last). */
static void test_session_frames_hostile(void **state) {
  /* flags, end (+0, seq 0), 1 site, one group: site 0, 1 stamp, HLC
   * +100 on the requester's entry, vector: nothing, one table (0,
   * schema form), one row (T L S: k, stamp 0, two values) */
  static const unsigned char good[] = {
      0x00, 0x01, 0x00, 0x01, 0x01, 0x00, 0x01, 0xc9, 0x01, 0x00,
      0x01, 0x00, 0x00, 0x01, 0x07, 0x00, 0x00, 0x01, 'k', 0x00,
      0x0e, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
  unsigned char b[64];
  const char *why;
  size_t i;
  (void)state;
  if (sf_decode(good, sizeof good, SF_H0, &why)) fail_msg("good: %s", why);
  for (i = 0; i < sizeof good; i++) {
    int rc = sf_decode(good, i, SF_H0, &why);
    if (rc != SYNC_EFORMAT)
      fail_msg("cut at %zu: %d (%s)", i, rc, why);
  }
  /* A site the session never named: index 5 of a table of 2. */
  memcpy(b, good, 3);
  b[3] = 0x02;
  b[4] = 0x05;
  memcpy(b + 5, good + 4, 6); /* the stamps, site 0's vector entry */
  b[11] = 0x00;               /* site 1's */
  memcpy(b + 12, good + 10, sizeof good - 10);
  assert_int_equal(sf_decode(b, sizeof good + 2, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "site index past the session's site table");
  /* Index 1 (the receiver) is known: the same frame with it decodes. */
  b[4] = 0x01;
  if (sf_decode(b, sizeof good + 2, SF_H0, &why)) fail_msg("index 1: %s", why);
  /* The stamp 100 above an entry 50 below 2^64. */
  assert_int_equal(sf_decode(good, sizeof good, UINT64_MAX - 50, &why),
                   SYNC_EFORMAT);
  assert_string_equal(why, "stamp HLC overflows");
  /* 100 below an entry of 40. */
  memcpy(b, good, sizeof good);
  b[7] = 0xca; /* 1 + (100 << 1 | 1) */
  assert_int_equal(sf_decode(b, sizeof good, 40, &why), SYNC_EFORMAT);
  assert_string_equal(why, "stamp HLC overflows");
  /* Exactly down to 0. */
  assert_int_equal(sf_decode(b, sizeof good, 100, &why), SYNC_EFORMAT);
  assert_string_equal(why, "stamp with HLC 0");
  /* A vector entry 1,000 above the chunk's stamp, 100 below 2^64. */
  memcpy(b, good, sizeof good);
  b[9] = 0xd2; /* 2 + (1000 << 1) */
  b[10] = 0x0f;
  memcpy(b + 11, good + 10, sizeof good - 10);
  assert_int_equal(sf_decode(b, sizeof good + 1, UINT64_MAX - 200, &why),
                   SYNC_EFORMAT);
  assert_string_equal(why, "vector entry overflows");
  if (sf_decode(b, sizeof good + 1, SF_H0, &why)) fail_msg("vector: %s", why);
  /* Fold records said (0x10000) but none follow. */
  b[0] = 0x80;
  b[1] = 0x80;
  b[2] = 0x04;
  memcpy(b + 3, good + 1, sizeof good - 1);
  assert_int_equal(sf_decode(b, sizeof good + 2, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "bad fold record count");
  /* Unknown chunk flags (0x20000). */
  b[2] = 0x08;
  assert_int_equal(sf_decode(b, sizeof good + 2, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "unknown chunk flags");
  /* A second stamp in the same millisecond whose counter passes 0xffff
   * (100 + 2 + 65535). */
  memcpy(b, good, 6);
  b[6] = 0x02; /* two stamps */
  memcpy(b + 7, good + 7, 2);
  b[9] = 0x01; /* the same millisecond, a counter delta follows */
  b[10] = 0xff;
  b[11] = 0xff;
  b[12] = 0x03;
  memcpy(b + 13, good + 9, sizeof good - 9);
  assert_int_equal(sf_decode(b, sizeof good + 4, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "stamp HLC overflows");
  /* 65,433 (65535 - 100 - 2) is the last counter that fits. */
  b[10] = 0x99;
  b[11] = 0xff;
  b[12] = 0x03;
  if (sf_decode(b, sizeof good + 4, SF_H0, &why)) fail_msg("0xffff: %s", why);
  /* 2^48 milliseconds on: past the HLC's 48 bits of them. */
  memcpy(b, good, 6);
  b[6] = 0x02;
  memcpy(b + 7, good + 7, 2);
  /* a = (zigzag(2^48) + 1) << 1 */
  memcpy(b + 9, "\x82\x80\x80\x80\x80\x80\x80\x02", 8);
  memcpy(b + 17, good + 9, sizeof good - 9);
  assert_int_equal(sf_decode(b, sizeof good + 8, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "stamp HLC overflows");
  /* A gap of 0 milliseconds said as a gap (a = 2: the gap before, 0). */
  b[9] = 0x02;
  memcpy(b + 10, good + 9, sizeof good - 9);
  assert_int_equal(sf_decode(b, sizeof good + 1, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "stamp HLC overflows");
  /* a = 6: one millisecond on ((zigzag(1) + 1) << 1). */
  b[9] = 0x06;
  if (sf_decode(b, sizeof good + 1, SF_H0, &why)) fail_msg("1 ms: %s", why);
  /* Rows that take the next stamp (chunk flag 0x02): the second row
   * past a table of one stamp. */
  {
    static const unsigned char next[] = {
        0x02, 0x01, 0x00, 0x01, 0x01, 0x00, 0x01, 0xc9, 0x01, 0x00,
        0x01, 0x00, 0x00, 0x02, 0x07, 0x00, 0x00, 0x01, 'k', 0x00,
        0x0e, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,
        0x00, 0x00, 'l', 0x0e, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
    assert_int_equal(sf_decode(next, sizeof next, SF_H0, &why),
                     SYNC_EFORMAT);
    assert_string_equal(why, "stamp index past the stamp table");
  }
  /* A TEXT column whose first value repeats a value before it. */
  {
    static const unsigned char rep0[] = {
        0x00, 0x01, 0x00, 0x01, 0x01, 0x00, 0x01, 0xc9, 0x01, 0x00,
        0x01, 0x01, 0x02, 0x0b, 0x01, 0x07, 0x01, 0x00, 0x01, 'k', 0x00,
        0x00};
    assert_int_equal(sf_decode(rep0, sizeof rep0, SF_H0, &why), SYNC_EFORMAT);
    assert_string_equal(why, "a repeat of no value");
  }
  /* The previous frame's tables section (0x04) in a first frame. */
  memcpy(b, good, sizeof good);
  b[0] = 0x04;
  memmove(b + 10, good + 13, sizeof good - 13); /* no tables section */
  assert_int_equal(sf_decode(b, sizeof good - 3, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "a repeat of no tables section");
  /* An end cursor at the last row (0x08) of a stream in log mode, and
   * with a whole end cursor (0x10) too. */
  b[0] = 0x08;
  memcpy(b + 1, good + 3, sizeof good - 3); /* no end cursor */
  assert_int_equal(sf_decode(b, sizeof good - 2, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "an end cursor at no row of an initial stream");
  b[0] = 0x18;
  assert_int_equal(sf_decode(b, sizeof good - 2, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "two end cursors");
  /* The schema form for table 1, which the sender's schema lacks. */
  memcpy(b, good, sizeof good);
  b[11] = 0x01;
  assert_int_equal(sf_decode(b, sizeof good, SF_H0, &why), SYNC_EFORMAT);
  /* A byte after the last section. */
  memcpy(b, good, sizeof good);
  b[sizeof good] = 0;
  assert_int_equal(sf_decode(b, sizeof good + 1, SF_H0, &why), SYNC_EFORMAT);
  assert_string_equal(why, "bytes after the last section");
  /* A standalone frame (major 1) where a session frame belongs. */
  {
    sx_fctx tx, rx;
    sync_decoder *dec;
    sync_delta *out = NULL;
    static const unsigned char m1[] = {0xd5, 'S', 'Y', 'N', 1, 4, 0, 0};
    sync_inbuf in = {m1, sizeof m1, 0};
    sf_pair(&tx, &rx);
    assert_int_equal(sync_decoder_create(NULL, NULL, &dec), 0);
    assert_int_equal(sx_decoder_feed_ctx(dec, &rx, &in, &out), SYNC_EVERSION);
    sync_decoder_free(dec);
    sx_fctx_free(&tx);
    sx_fctx_free(&rx);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_varint_round_trips_edges),
      cmocka_unit_test(test_varint_rejects_truncated_and_overlong),
      cmocka_unit_test(test_varint2_reads_as_varint),
      cmocka_unit_test(test_zigzag_maps_small_magnitudes_to_small_codes),
      cmocka_unit_test(test_endian_helpers_are_byte_exact),
      cmocka_unit_test(test_hlc_strictly_increases),
      cmocka_unit_test(test_row_round_trips_every_field),
      cmocka_unit_test(test_row_checksum_catches_every_flipped_byte),
      cmocka_unit_test(test_row_tombstone_has_no_columns),
      cmocka_unit_test(test_lineage_round_trips_and_refuses_malformed),
      cmocka_unit_test(test_session_frames_round_trip),
      cmocka_unit_test(test_session_frames_lean_round_trip),
      cmocka_unit_test(test_session_frames_hostile),
  };
  return cmocka_run_group_tests_name("internal_codec", tests, NULL, NULL);
}
