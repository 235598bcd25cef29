/*
 * test_codec.c - delta frames: round trips against the in-memory path on
 * random histories, canonical bytes, fragmentation down to one byte,
 * every single-byte corruption and truncation, limits, decompression
 * bombs, dictionaries, newer minor versions, allocation failure, and the
 * golden vectors in tests/vectors/.
 */
#include "testutil.h"

#include "merge_util.h"

#include <xxhash.h>
#include <zstd.h>

/* A second table: INTEGER keys and a column that never leaves the device. */
static const sync_column_def cx_mcols[3] = {
    {"n", SYNC_INTEGER, 0},
    {"x", SYNC_REAL, 0},
    {"loc", SYNC_TEXT, SYNC_COL_LOCAL},
};
static const sync_table_def cx_tables[2] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
    {"m", SYNC_INTEGER, cx_mcols, 3},
};

static void cx_open(mu_rep *r, const char *path, uint8_t site, uint64_t *now) {
  uint8_t id[16];
  mu_site(id, site);
  mu_open_schema(r, path, id, now, 0, cx_tables, 2);
}

/* ---------------------------------------------------------------------
 * Random histories
 * ------------------------------------------------------------------- */
static sync_value cx_rand_value(tu_rng *g, int type, unsigned char *buf,
                                size_t cap) {
  if (tu_below(g, 8) == 0) return sync_null();
  switch (type) {
  case SYNC_INTEGER:
    switch (tu_below(g, 4)) {
    case 0: return sync_int((int64_t)tu_below(g, 100));
    case 1: return sync_int(-(int64_t)tu_below(g, 1000000));
    case 2: return sync_int(INT64_MIN + (int64_t)tu_below(g, 3));
    default: return sync_int((int64_t)tu_next(g));
    }
  case SYNC_REAL:
    switch (tu_below(g, 6)) {
    case 0: return sync_real((double)(int64_t)tu_below(g, 100000) / 100.0);
    case 1: return sync_real(-(double)tu_below(g, 1000) / 10.0);
    case 2: return sync_real(-0.0);
    case 3: {
      uint64_t u = tu_next(g);
      double d;
      memcpy(&d, &u, 8);
      return sync_real(d); /* any bits, NaNs and infinities included */
    }
    default: return sync_real((double)tu_next(g) / 3.0);
    }
  default: {
    size_t n = tu_below(g, 4) == 0 ? tu_below(g, cap + 1) : tu_below(g, 24);
    size_t i;
    for (i = 0; i < n; i++)
      buf[i] = type == SYNC_TEXT ? (unsigned char)('a' + tu_below(g, 26))
                                 : (unsigned char)tu_next(g);
    return type == SYNC_TEXT ? sync_text((const char *)buf, n)
                             : sync_blob(buf, n);
  }
  }
}

/* One random write transaction of up to 8 operations on r. */
static void cx_random_txn(mu_rep *r, tu_rng *g, unsigned nkeys) {
  static unsigned char bufs[MU_NCOLS][1024];
  sync_txn *txn;
  unsigned nops = 1 + (unsigned)tu_below(g, 8), k;
  TU_OK(sync_txn_begin(r->env, 0, &txn));
  for (k = 0; k < nops; k++) {
    char key[600];
    unsigned kn = (unsigned)tu_below(g, nkeys), c;
    size_t klen;
    int op = (int)tu_below(g, 10);
    if (tu_below(g, 16) == 0) { /* a long key, up to the limit */
      memset(key, 'k', SYNC_MAX_KEY);
      klen = (size_t)snprintf(key, 32, "long-%u-", kn);
      key[klen] = 'k';
      klen = SYNC_MAX_KEY - tu_below(g, 4);
    } else {
      klen = (size_t)snprintf(key, sizeof key, "key-%05u", kn);
    }
    if (tu_below(g, 5) == 0) { /* the INTEGER-keyed table */
      unsigned char ik[8];
      sync_value v[3];
      sync_key_int((int64_t)kn - 50, ik);
      if (op < 2) {
        int rc = sync_delete(txn, 1, ik, 8);
        assert_true(rc == 0 || rc == SYNC_NOTFOUND);
        continue;
      }
      v[0] = cx_rand_value(g, SYNC_INTEGER, NULL, 0);
      v[1] = cx_rand_value(g, SYNC_REAL, NULL, 0);
      v[2] = sync_text("here only", 9);
      TU_OK(sync_put(txn, 1, ik, 8, v, 3));
      continue;
    }
    if (op < 2) {
      int rc = sync_delete(txn, 0, key, klen);
      assert_true(rc == 0 || rc == SYNC_NOTFOUND);
    } else if (op < 5) {
      unsigned col = (unsigned)tu_below(g, MU_NCOLS);
      sync_value v = cx_rand_value(g, (int)mu_cols[col].type, bufs[col],
                                   sizeof bufs[col]);
      int rc = sync_update(txn, 0, key, klen, &col, &v, 1);
      assert_true(rc == 0 || rc == SYNC_NOTFOUND);
    } else {
      sync_value v[MU_NCOLS];
      for (c = 0; c < MU_NCOLS; c++)
        v[c] = cx_rand_value(g, (int)mu_cols[c].type, bufs[c], sizeof bufs[c]);
      TU_OK(sync_put(txn, 0, key, klen, v, MU_NCOLS));
    }
  }
  TU_OK(sync_txn_commit(txn));
}

/* ---------------------------------------------------------------------
 * Pulls through frames
 * ------------------------------------------------------------------- */
typedef struct cx_wire {
  sync_encoder *enc, *enc2;
  sync_decoder *dec;
  size_t frames, bytes, raw;
} cx_wire;

static void cx_wire_open(cx_wire *w, int level, const void *dict,
                         size_t dlen) {
  sync_codec_opts o;
  memset(w, 0, sizeof *w);
  memset(&o, 0, sizeof o);
  o.level = level;
  o.dict = dict;
  o.dict_len = dlen;
  TU_OK(sync_encoder_create(NULL, &o, &w->enc));
  TU_OK(sync_encoder_create(NULL, &o, &w->enc2));
  TU_OK(sync_decoder_create(NULL, &o, &w->dec));
}

static void cx_wire_close(cx_wire *w) {
  sync_encoder_free(w->enc);
  sync_encoder_free(w->enc2);
  sync_decoder_free(w->dec);
}

/* Encode d, decode it back (fed in fragments from g, or whole when g is
 * NULL), and check that the decoded chunk encodes to the same bytes
 * (uncompressed frames only: zstd's output is its own business). */
static sync_delta *cx_through(cx_wire *w, const sync_delta *d, tu_rng *g,
                              int level) {
  const void *f, *f2;
  size_t n, n2, raw;
  sync_delta *back = NULL;
  TU_OK(sync_encoder_begin(w->enc, d, &n, &raw));
  TU_OK(sync_encoder_frame(w->enc, &f, &n2));
  assert_int_equal(n, n2);
  w->frames++;
  w->bytes += n;
  w->raw += raw;
  if (!g) {
    TU_OK(sync_decoder_decode(w->dec, f, n, &back));
  } else {
    sync_inbuf in = {f, 0, 0};
    while (!back) {
      size_t step = 1 + tu_below(g, tu_below(g, 2) ? 4 : 512);
      in.size = in.size + step > n ? n : in.size + step;
      TU_OK(sync_decoder_feed(w->dec, &in, &back));
      assert_true(back || in.pos == in.size);
      assert_true(in.size < n || back);
    }
    assert_int_equal(in.pos, n);
  }
  assert_non_null(back);
  assert_int_equal(sync_delta_rows(back), sync_delta_rows(d));
  assert_int_equal(sync_delta_last(back), sync_delta_last(d));
  if (level == 0) {
    TU_OK(sync_encoder_begin(w->enc2, back, NULL, NULL));
    TU_OK(sync_encoder_frame(w->enc2, &f2, &n2));
    assert_int_equal(n, n2);
    assert_memory_equal(f, f2, n);
  }
  return back;
}

/* Pull everything r lacks of s through frames. */
static void cx_wire_pull(mu_rep *r, mu_rep *s, size_t max_rows, cx_wire *w,
                         tu_rng *g, int level) {
  unsigned long n;
  for (n = 0; n < 100000; n++) {
    sync_apply_report rep;
    sync_delta *d = mu_cut(r, s, max_rows, 1);
    sync_delta *back = cx_through(w, d, g, level);
    int last = sync_delta_last(d);
    sync_delta_free(d);
    mu_apply(r, back, SYNC_APPLY_MERGE, &rep);
    sync_delta_free(back);
    assert_true(rep.cursor_moved);
    if (last) return;
  }
  fail_msg("wire pull did not end");
}

static void cx_vv_equal(mu_rep *a, mu_rep *b) {
  sync_txn *ta, *tb;
  sync_stamp va[16], vb[16];
  size_t na, nb, i, j;
  TU_OK(sync_txn_begin(a->env, SYNC_TXN_RDONLY, &ta));
  TU_OK(sync_txn_begin(b->env, SYNC_TXN_RDONLY, &tb));
  TU_OK(sync_vv_get(ta, va, 16, &na));
  TU_OK(sync_vv_get(tb, vb, 16, &nb));
  sync_txn_abort(ta);
  sync_txn_abort(tb);
  /* Each replica lists itself too; compare the entries of other sites. */
  for (i = 0; i < na; i++) {
    if (!memcmp(va[i].site, a->site, 16) || !memcmp(va[i].site, b->site, 16))
      continue;
    for (j = 0; j < nb; j++)
      if (!memcmp(va[i].site, vb[j].site, 16)) break;
    assert_true(j < nb);
    TU_U64(va[i].hlc, vb[j].hlc);
  }
}

/* Property: for random histories of two writers (one relayed through the
 * sender), random chunk sizes and compression levels, pulling through
 * frames gives the same rows and vectors as the in-memory path, and
 * every frame re-encodes to itself. */
static void test_roundtrip_random(void **state) {
  unsigned seed;
  uint64_t now = 1700000000000ull;
  (void)state;
  for (seed = 1; seed <= 120; seed++) {
    tu_rng g = {0x9e3779b97f4a7c15ull * seed};
    mu_rep a, o, b, c;
    cx_wire w;
    int level = (int)tu_below(&g, 3) == 0 ? 0 : (int)tu_below(&g, 4);
    unsigned round, nkeys = 5 + (unsigned)tu_below(&g, 200);
    cx_open(&a, "codec-a.db", 0xa1, &now);
    cx_open(&o, "codec-o.db", 0xb2, &now);
    cx_open(&b, "codec-b.db", 0xc3, &now);
    cx_open(&c, "codec-c.db", 0xd4, &now);
    cx_wire_open(&w, level, NULL, 0);
    for (round = 0; round < 3; round++) {
      unsigned t, ntx = 1 + (unsigned)tu_below(&g, 30);
      size_t chunk = 1 + tu_below(&g, 60);
      for (t = 0; t < ntx; t++) {
        now += tu_below(&g, 3);
        cx_random_txn(tu_below(&g, 3) ? &a : &o, &g, nkeys);
      }
      mu_pull(&a, &o, 0, 1, NULL); /* o's writes relay through a */
      cx_wire_pull(&b, &a, chunk, &w, tu_below(&g, 2) ? &g : NULL, level);
      mu_pull(&c, &a, chunk, 1, NULL);
      if (mu_digest(&b) != mu_digest(&a) || mu_digest(&c) != mu_digest(&a)) {
        fail_msg("seed %u round %u: digests differ (level %d)", seed, round,
                 level);
      }
      cx_vv_equal(&b, &c);
    }
    cx_wire_close(&w);
    mu_close(&a);
    mu_close(&o);
    mu_close(&b);
    mu_close(&c);
  }
}

/* A replica with n rows of varied values, and one chunk of all of them
 * for a fresh receiver. */
static void cx_fill(mu_rep *a, unsigned n, uint64_t *now) {
  tu_rng g = {42};
  unsigned i;
  for (i = 0; i < n; i++) {
    char key[32], s[32];
    snprintf(key, sizeof key, "row-%06u", i);
    snprintf(s, sizeof s, "value %u", (unsigned)tu_below(&g, 1000));
    *now += 1;
    mu_put(a, key, (int64_t)tu_next(&g) >> (i % 60),
           (double)(int64_t)tu_below(&g, 100000) / 100.0, s);
  }
}

static void cx_frame_of(mu_rep *a, mu_rep *b, int level, unsigned char **frame,
                        size_t *len) {
  sync_encoder *e;
  sync_codec_opts o;
  sync_delta *d = mu_cut(b, a, 0, 0);
  const void *f;
  memset(&o, 0, sizeof o);
  o.level = level;
  TU_OK(sync_encoder_create(NULL, &o, &e));
  TU_OK(sync_encoder_begin(e, d, NULL, NULL));
  TU_OK(sync_encoder_frame(e, &f, len));
  *frame = (unsigned char *)malloc(*len);
  memcpy(*frame, f, *len);
  sync_encoder_free(e);
  sync_delta_free(d);
}

/* Several frames back to back, fed in random fragments (one byte at a
 * time in part), come out one by one; the encoder's read side hands
 * out the same bytes through small output buffers. */
static void test_fragmented_stream(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  sync_encoder *e;
  sync_decoder *dec;
  unsigned char stream[1 << 16];
  size_t total = 0, k, got = 0;
  tu_rng g = {7};
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_fill(&a, 300, &now);
  TU_OK(sync_encoder_create(NULL, NULL, &e));
  for (k = 0; k < 5; k++) {
    sync_delta *d = mu_cut(&b, &a, 60, 0);
    size_t n;
    int64_t left;
    unsigned char small[7];
    TU_OK(sync_encoder_begin(e, d, &n, NULL));
    assert_true(total + n <= sizeof stream);
    do {
      sync_outbuf out = {small, 1 + tu_below(&g, sizeof small), 0};
      left = sync_encoder_read(e, &out);
      assert_true(left >= 0);
      memcpy(stream + total, small, out.pos);
      total += out.pos;
    } while (left > 0);
    /* the next chunk continues where this one ended */
    {
      sync_delta *back;
      const void *f;
      TU_OK(sync_decoder_create(NULL, NULL, &dec));
      TU_OK(sync_encoder_frame(e, &f, &n));
      TU_OK(sync_decoder_decode(dec, f, n, &back));
      mu_apply(&b, back, SYNC_APPLY_DRY_RUN, NULL);
      sync_delta_free(back);
      sync_decoder_free(dec);
    }
    {
      sync_txn *t;
      TU_OK(sync_txn_begin(b.env, 0, &t));
      TU_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, NULL));
      TU_OK(sync_txn_commit(t));
    }
    sync_delta_free(d);
  }
  sync_encoder_free(e);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  {
    sync_inbuf in = {stream, 0, 0};
    while (in.pos < total) {
      sync_delta *back = NULL;
      in.size += 1 + tu_below(&g, tu_below(&g, 2) ? 1 : 300);
      if (in.size > total) in.size = total;
      while (in.pos < in.size) {
        TU_OK(sync_decoder_feed(dec, &in, &back));
        if (back) {
          got++;
          assert_int_equal(sync_delta_rows(back), 60);
          sync_delta_free(back);
          back = NULL;
        }
      }
    }
  }
  assert_int_equal(got, 5);
  sync_decoder_free(dec);
  mu_close(&a);
  mu_close(&b);
}

/* Every single-byte change of a frame, plain and compressed, is refused;
 * so is every truncation, and a prefix fed to the stream decoder is
 * waited on, never misread. */
static void test_corrupt_every_byte(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  int level;
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_fill(&a, 40, &now);
  for (level = 0; level <= 3; level += 3) {
    unsigned char *f;
    size_t n, i;
    sync_decoder *dec;
    sync_delta *d;
    cx_frame_of(&a, &b, level, &f, &n);
    TU_OK(sync_decoder_create(NULL, NULL, &dec));
    TU_OK(sync_decoder_decode(dec, f, n, &d));
    sync_delta_free(d);
    for (i = 0; i < n; i++) {
      unsigned flip;
      for (flip = 0; flip < 2; flip++) {
        int rc;
        f[i] ^= flip ? 0xff : 0x01;
        rc = sync_decoder_decode(dec, f, n, &d);
        f[i] ^= flip ? 0xff : 0x01;
        if (rc == 0) fail_msg("level %d: byte %zu flipped was accepted", level, i);
        assert_null(d);
        assert_true(rc == SYNC_ECHECKSUM || rc == SYNC_EFORMAT ||
                    rc == SYNC_EVERSION || rc == SYNC_ELIMIT);
      }
    }
    for (i = 0; i < n; i++) {
      sync_inbuf in = {f, i, 0};
      assert_true(sync_decoder_decode(dec, f, i, &d) < 0);
      TU_OK(sync_decoder_feed(dec, &in, &d));
      assert_null(d);
      assert_int_equal(in.pos, i);
    }
    sync_decoder_free(dec);
    free(f);
  }
  mu_close(&a);
  mu_close(&b);
}

/* Frame f (uncompressed) made again: major and minor version as given,
 * its body less its last cut bytes and then tn bytes of tail (NULL:
 * 0x5a), and a new checksum. */
static unsigned char *cx_rebuild(const unsigned char *f, size_t n, int minor,
                                 int major, size_t cut,
                                 const unsigned char *tail, size_t tn,
                                 size_t *out) {
  uint64_t stored = 0;
  size_t k = 7, shift = 0, hlen, m;
  unsigned char *g;
  while (f[k] & 0x80) stored |= (uint64_t)(f[k++] & 0x7f) << shift, shift += 7;
  stored |= (uint64_t)f[k++] << shift;
  hlen = k;
  assert_int_equal(hlen + stored + 8, n);
  assert_true(cut <= stored);
  g = (unsigned char *)malloc(n + tn + 16);
  memcpy(g, f, 7);
  g[4] = (unsigned char)major;
  g[5] = (unsigned char)minor;
  m = 7;
  {
    uint64_t v = stored - cut + tn;
    while (v >= 0x80) g[m++] = (unsigned char)(v | 0x80), v >>= 7;
    g[m++] = (unsigned char)v;
  }
  memcpy(g + m, f + hlen, stored - cut);
  m += stored - cut;
  if (tail) memcpy(g + m, tail, tn);
  else memset(g + m, 0x5a, tn);
  m += tn;
  {
    uint64_t h = XXH3_64bits(g, m);
    int i;
    for (i = 0; i < 8; i++) g[m + i] = (unsigned char)(h >> (8 * i));
  }
  *out = m + 8;
  return g;
}

/* Rewrite the header of an uncompressed frame (minor version, extra
 * body bytes) and its checksum. */
static unsigned char *cx_reframe(const unsigned char *f, size_t n, int minor,
                                 int major, size_t extra, size_t *out) {
  return cx_rebuild(f, n, minor, major, 0, NULL, extra, out);
}

/* Frame f (uncompressed, minor 3, no renewal records: its body ends with
 * R = 0) with that last byte replaced by tail. */
static unsigned char *cx_retail(const unsigned char *f, size_t n,
                                const unsigned char *tail, size_t tn,
                                size_t *out) {
  assert_int_equal(f[n - 9], 0); /* R = 0, the body's last byte */
  return cx_rebuild(f, n, f[5], f[4], 1, tail, tn, out);
}

/* Replicas a, o and b, and in *f a frame from a to b whose site table
 * holds two sites (a, o), uncompressed, minor 3, with no renewal record. */
static void cx_two_sites(mu_rep *a, mu_rep *o, mu_rep *b, uint64_t *now,
                         unsigned char **f, size_t *n) {
  cx_open(a, "codec-a.db", 0xa1, now);
  cx_open(o, "codec-o.db", 0xb2, now);
  cx_open(b, "codec-b.db", 0xc3, now);
  mu_put(o, "delta", 9, 9.75, "relayed");
  *now += 5;
  mu_pull(a, o, 0, 1, NULL); /* a's site table: a, o */
  mu_put(a, "alpha", 1, 21.5, "ok");
  cx_frame_of(a, b, 0, f, n);
}

/* The renewal section (minor 3) of a hostile sender: a site index of 0
 * (the sender itself), indexes not increasing, one past the site table,
 * more records than sites, or a count no bytes back: SYNC_EFORMAT.  A
 * well-formed record decodes, and a receiver that takes it caps the
 * vector it takes from the sender there. */
static void test_renewal_section(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, o, b;
  unsigned char *f, *g;
  size_t n, m, i;
  sync_decoder *dec;
  sync_delta *d;
  static const struct {
    unsigned char t[8];
    size_t n;
    int rc;
  } bad[] = {
      {{1, 0, 5}, 3, SYNC_EFORMAT},        /* site 0: the sender */
      {{2, 1, 5, 1, 6}, 5, SYNC_EFORMAT},  /* not increasing */
      {{1, 2, 5}, 3, SYNC_EFORMAT},        /* past the two sites */
      {{2, 1, 5, 2, 6}, 5, SYNC_EFORMAT},  /* two records, two sites */
      {{0x7f}, 1, SYNC_EFORMAT},           /* no bytes for them */
      {{1, 1}, 2, SYNC_EFORMAT},           /* the HLC cut off */
  };
  (void)state;
  cx_two_sites(&a, &o, &b, &now, &f, &n);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    g = cx_retail(f, n, bad[i].t, bad[i].n, &m);
    TU_RC(sync_decoder_decode(dec, g, m, &d), bad[i].rc);
    free(g);
  }
  {
    /* o's claims above HLC 1 are void: b holds all of o's rows after the
     * run, yet takes o's entry no higher than 1. */
    static const unsigned char ok[] = {1, 1, 1};
    sync_stamp vv[4];
    size_t nv, k;
    g = cx_retail(f, n, ok, sizeof ok, &m);
    TU_OK(sync_decoder_decode(dec, g, m, &d));
    mu_apply(&b, d, SYNC_APPLY_MERGE, NULL);
    sync_delta_free(d);
    free(g);
    {
      sync_txn *t;
      TU_OK(sync_txn_begin(b.env, SYNC_TXN_RDONLY, &t));
      TU_OK(sync_vv_get(t, vv, 4, &nv));
      sync_txn_abort(t);
    }
    for (k = 0; k < nv; k++)
      if (!memcmp(vv[k].site, o.site, 16)) assert_true(vv[k].hlc <= 1);
    assert_true(mu_digest(&a) == mu_digest(&b));
  }
  sync_decoder_free(dec);
  free(f);
  mu_close(&a);
  mu_close(&o);
  mu_close(&b);
}

/* The varint at f[*k], and *k past it. */
static uint64_t cx_varint(const unsigned char *f, size_t *k) {
  uint64_t v = 0;
  unsigned shift = 0;
  while (f[*k] & 0x80) v |= (uint64_t)(f[(*k)++] & 0x7f) << shift, shift += 7;
  return v | (uint64_t)f[(*k)++] << shift;
}

/* Offset in uncompressed frame f of the first stamp group's site index,
 * and the size of the site table in *nsites. */
static size_t cx_stamp_site_at(const unsigned char *f, uint64_t *nsites) {
  size_t k = 7, i, c;
  cx_varint(f, &k);         /* stored length: the body follows */
  k += 1 + 2 * 16 + 8;      /* flags, sender, receiver, schema hash */
  for (c = 0; c < 2; c++) { /* start and end cursors */
    if (f[k++] == 0) {
      cx_varint(f, &k);
      cx_varint(f, &k);
    } else {
      cx_varint(f, &k);
      cx_varint(f, &k);
      k += cx_varint(f, &k);
    }
  }
  *nsites = cx_varint(f, &k);
  k += *nsites * 16;
  for (i = 0; i < *nsites; i++) cx_varint(f, &k);
  assert_true(cx_varint(f, &k) > 0); /* stamp groups */
  return k;
}

/* Frame f of n bytes with the checksum written again. */
static void cx_resum(unsigned char *f, size_t n) {
  uint64_t h = XXH3_64bits(f, n - 8);
  int i;
  for (i = 0; i < 8; i++) f[n - 8 + i] = (unsigned char)(h >> (8 * i));
}

/* Each refused frame says why, through the decoder, whole or fed; a
 * frame that decodes clears the reason. */
static void test_decode_reasons(void **state) {
  uint64_t now = 1700000000000ull, nsites;
  mu_rep a, o, b;
  unsigned char *f, *g;
  size_t n, m, at;
  sync_decoder *dec;
  sync_delta *d = NULL;
  sync_inbuf in;
  static const unsigned char past[] = {1, 2, 5}, own[] = {1, 0, 5};
  (void)state;
  cx_two_sites(&a, &o, &b, &now, &f, &n);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  assert_string_equal(sync_decoder_reason(dec), "");
  assert_string_equal(sync_decoder_reason(NULL), "");

  /* A truncated frame, whole and fed. */
  TU_RC(sync_decoder_decode(dec, f, n - 1, &d), SYNC_EFORMAT);
  assert_string_equal(sync_decoder_reason(dec),
                      "frame length differs from header");
  TU_RC(sync_decoder_decode(dec, f, 5, &d), SYNC_EFORMAT);
  assert_string_equal(sync_decoder_reason(dec), "truncated frame header");
  g = cx_rebuild(f, n, f[5], f[4], 1, NULL, 0, &m); /* body less R */
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  assert_string_equal(sync_decoder_reason(dec), "bad renewal count");
  free(g);

  /* A flipped byte; then a good frame fed clears the reason. */
  g = (unsigned char *)malloc(n);
  memcpy(g, f, n);
  g[n / 2] ^= 0x10;
  TU_RC(sync_decoder_decode(dec, g, n, &d), SYNC_ECHECKSUM);
  assert_string_equal(sync_decoder_reason(dec), "checksum mismatch");
  in.ptr = f;
  in.size = n;
  in.pos = 0;
  TU_OK(sync_decoder_feed(dec, &in, &d));
  assert_non_null(d);
  sync_delta_free(d);
  assert_string_equal(sync_decoder_reason(dec), "");

  /* A stamp group of a site past the site table (a, o). */
  at = cx_stamp_site_at(g, &nsites);
  TU_U64(nsites, 2);
  memcpy(g, f, n);
  g[at] = (unsigned char)nsites;
  cx_resum(g, n);
  in.ptr = g;
  in.pos = 0;
  TU_RC(sync_decoder_feed(dec, &in, &d), SYNC_EFORMAT);
  assert_string_equal(sync_decoder_reason(dec),
                      "site index past the site table");
  free(g);

  /* Bad renewal sections. */
  g = cx_retail(f, n, past, sizeof past, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  assert_string_equal(sync_decoder_reason(dec),
                      "renewal site past the site table");
  free(g);
  g = cx_retail(f, n, own, sizeof own, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  assert_string_equal(sync_decoder_reason(dec),
                      "renewal of the sender's own site");
  free(g);

  /* Over a limit, and another major version. */
  g = cx_reframe(f, n, 3, 2, 0, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EVERSION);
  assert_string_equal(sync_decoder_reason(dec), "another major version");
  free(g);
  sync_decoder_free(dec);
  {
    sync_codec_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.max_frame = 16;
    TU_OK(sync_decoder_create(NULL, &lo, &dec));
    TU_RC(sync_decoder_decode(dec, f, n, &d), SYNC_ELIMIT);
    assert_string_equal(sync_decoder_reason(dec), "frame over max_frame");
    sync_decoder_free(dec);
  }
  free(f);
  mu_close(&a);
  mu_close(&o);
  mu_close(&b);
}

/* A newer minor version (5) may append what this reader skips; the same
 * bytes under this minor version (4) or an older one, or another major
 * version, are refused. */
static void test_versions(void **state) {
  static const unsigned char t5[] = {0, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a};
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  unsigned char *f, *g;
  size_t n, m;
  sync_decoder *dec;
  sync_delta *d;
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_fill(&a, 10, &now);
  cx_frame_of(&a, &b, 0, &f, &n);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  /* Minor 5: an empty lineage (minor 4's section), then what this reader
   * skips. */
  g = cx_rebuild(f, n, 5, 1, 0, t5, sizeof t5, &m);
  TU_OK(sync_decoder_decode(dec, g, m, &d));
  assert_int_equal(sync_delta_rows(d), 10);
  mu_apply(&b, d, SYNC_APPLY_MERGE, NULL);
  sync_delta_free(d);
  assert_true(mu_digest(&a) == mu_digest(&b));
  free(g);
  g = cx_rebuild(f, n, 4, 1, 0, t5, sizeof t5, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  free(g);
  g = cx_rebuild(f, n, 4, 1, 0, t5, 1, &m); /* minor 4, no lineage */
  TU_OK(sync_decoder_decode(dec, g, m, &d));
  assert_int_equal(sync_delta_rows(d), 10);
  sync_delta_free(d);
  free(g);
  g = cx_reframe(f, n, 3, 1, 5, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  free(g);
  g = cx_reframe(f, n, 2, 1, 5, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  free(g);
  g = cx_reframe(f, n, 1, 1, 5, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  free(g);
  g = cx_reframe(f, n, 0, 1, 5, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  free(g);
  g = cx_reframe(f, n, 0, 2, 0, &m);
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EVERSION);
  free(g);
  g = cx_reframe(f, n, 3, 1, 0, &m);
  assert_int_equal(m, n);
  assert_memory_equal(f, g, n);
  g[6] = 0x8; /* an unknown flag */
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  g[0] = 'X';
  TU_RC(sync_decoder_decode(dec, g, m, &d), SYNC_EFORMAT);
  free(g);
  sync_decoder_free(dec);
  free(f);
  mu_close(&a);
  mu_close(&b);
}

/* Frames over the decoder's limits are refused before anything is sized
 * by them; a zstd body larger than its header says, or a header that
 * claims a huge body, never gets decompressed. */
static void test_limits_and_bombs(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  unsigned char *f;
  size_t n;
  sync_decoder *dec;
  sync_delta *d;
  sync_codec_opts o;
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_fill(&a, 100, &now);
  cx_frame_of(&a, &b, 0, &f, &n);
  memset(&o, 0, sizeof o);
  o.max_frame = n - 1;
  TU_OK(sync_decoder_create(NULL, &o, &dec));
  TU_RC(sync_decoder_decode(dec, f, n, &d), SYNC_ELIMIT);
  {
    sync_inbuf in = {f, n, 0};
    TU_RC(sync_decoder_feed(dec, &in, &d), SYNC_ELIMIT);
    assert_true(in.pos < 64); /* refused at the header */
  }
  sync_decoder_free(dec);
  memset(&o, 0, sizeof o);
  o.max_rows = 99;
  TU_OK(sync_decoder_create(NULL, &o, &dec));
  TU_RC(sync_decoder_decode(dec, f, n, &d), SYNC_ELIMIT);
  sync_decoder_free(dec);
  free(f);

  /* Bombs: 64 MiB of zeros compress to a few KiB. */
  {
    size_t big = (size_t)64 << 20, cap = ZSTD_compressBound(big), z, m, k;
    unsigned char *zeros = (unsigned char *)calloc(1, big);
    unsigned char *frame = (unsigned char *)malloc(cap + 64);
    z = ZSTD_compress(frame + 32, cap, zeros, big, 3);
    assert_false(ZSTD_isError(z));
    for (k = 0; k < 2; k++) {
      /* k = 0: the header tells the truth (64 MiB: over the limit);
       * k = 1: the header claims 1 KiB. */
      uint64_t claim = k ? 1024 : big, h;
      unsigned char head[32];
      size_t hl = 0;
      uint64_t v = z;
      head[hl++] = 0xd5, head[hl++] = 'S', head[hl++] = 'Y', head[hl++] = 'N';
      head[hl++] = 1, head[hl++] = 0, head[hl++] = 1;
      while (v >= 0x80) head[hl++] = (unsigned char)(v | 0x80), v >>= 7;
      head[hl++] = (unsigned char)v;
      v = claim;
      while (v >= 0x80) head[hl++] = (unsigned char)(v | 0x80), v >>= 7;
      head[hl++] = (unsigned char)v;
      memmove(frame + hl, frame + 32, z);
      memcpy(frame, head, hl);
      m = hl + z;
      h = XXH3_64bits(frame, m);
      for (v = 0; v < 8; v++) frame[m + v] = (unsigned char)(h >> (8 * v));
      TU_OK(sync_decoder_create(NULL, NULL, &dec));
      TU_RC(sync_decoder_decode(dec, frame, m + 8, &d),
            k ? SYNC_EFORMAT : SYNC_ELIMIT);
      sync_decoder_free(dec);
      memmove(frame + 32, frame + hl, z);
    }
    free(zeros);
    free(frame);
  }
  mu_close(&a);
  mu_close(&b);
}

/* A trained dictionary shrinks small frames; a decoder without it says
 * so with SYNC_EDICT; with it, the rows arrive intact. */
static void test_dictionary(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  sync_txn *t;
  static unsigned char dict[16384];
  size_t dlen = 0, plain_n, dict_n;
  sync_codec_opts o;
  sync_encoder *e;
  sync_decoder *dec;
  sync_delta *d, *back;
  const void *f;
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_fill(&a, 2000, &now);
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &t));
  TU_RC(sync_dict_train(t, 7, 0, dict, sizeof dict, &dlen), SYNC_NOTFOUND);
  TU_OK(sync_dict_train(t, 0, 0, dict, sizeof dict, &dlen));
  sync_txn_abort(t);
  assert_true(dlen > 0 && dlen <= sizeof dict);
  d = mu_cut(&b, &a, 5, 0);
  memset(&o, 0, sizeof o);
  o.level = 3;
  TU_OK(sync_encoder_create(NULL, &o, &e));
  TU_OK(sync_encoder_begin(e, d, &plain_n, NULL));
  sync_encoder_free(e);
  o.dict = dict;
  o.dict_len = dlen;
  TU_OK(sync_encoder_create(NULL, &o, &e));
  TU_OK(sync_encoder_begin(e, d, &dict_n, NULL));
  if (dict_n >= plain_n)
    fail_msg("with a dictionary %zu bytes, without %zu", dict_n, plain_n);
  TU_OK(sync_encoder_frame(e, &f, &dict_n));
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  TU_RC(sync_decoder_decode(dec, f, dict_n, &back), SYNC_EDICT);
  sync_decoder_free(dec);
  TU_OK(sync_decoder_create(NULL, &o, &dec));
  TU_OK(sync_decoder_decode(dec, f, dict_n, &back));
  assert_int_equal(sync_delta_rows(back), 5);
  mu_apply(&b, back, SYNC_APPLY_MERGE, NULL);
  sync_delta_free(back);
  sync_decoder_free(dec);
  sync_encoder_free(e);
  sync_delta_free(d);
  mu_close(&a);
  mu_close(&b);
}

/* Every allocation of an encode and of a decode fails in turn: a clear
 * SYNC_ENOMEM, nothing leaked, and the next attempt works. */
static void test_alloc_failure(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b;
  sync_delta *d;
  unsigned long k;
  unsigned char *f;
  size_t n;
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_fill(&a, 50, &now);
  d = mu_cut(&b, &a, 0, 0);
  cx_frame_of(&a, &b, 0, &f, &n);
  for (k = 1;; k++) {
    tu_alloc ta;
    sync_allocator al;
    sync_encoder *e = NULL;
    sync_decoder *dec = NULL;
    sync_delta *back = NULL;
    int rc;
    memset(&ta, 0, sizeof ta);
    ta.fail_at = k;
    al = tu_allocator(&ta);
    rc = sync_encoder_create(&al, NULL, &e);
    if (!rc) rc = sync_encoder_begin(e, d, NULL, NULL);
    if (!rc) rc = sync_decoder_create(&al, NULL, &dec);
    if (!rc) rc = sync_decoder_decode(dec, f, n, &back);
    sync_delta_free(back);
    sync_decoder_free(dec);
    sync_encoder_free(e);
    assert_int_equal(ta.live_blocks, 0);
    if (ta.failures == 0) {
      TU_OK(rc);
      break;
    }
    TU_RC(rc, SYNC_ENOMEM);
  }
  assert_true(k > 5);
  sync_delta_free(d);
  free(f);
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Golden vectors: frames made by a fixed history, and what they mean
 * once applied to an empty replica (every row, value and stamp, listed
 * through the change API) with the receiver's digest.  SYNC_WRITE_VECTORS=1
 * rewrites them (after a deliberate format change only).
 * ------------------------------------------------------------------- */
static void cx_hex(FILE *o, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  size_t i;
  for (i = 0; i < n; i++) fprintf(o, "%02x", b[i]);
}

static void cx_dump(mu_rep *r, FILE *o) {
  sync_txn *t;
  sync_changes *it;
  sync_change ch;
  uint64_t dg;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_changes_open(t, 0, &it));
  while (sync_changes_next(it, &ch) == 0) {
    unsigned c;
    fprintf(o, "row table=%u key=", ch.table);
    cx_hex(o, ch.key.data, ch.key.len);
    fprintf(o, " cl=%llu stamp=%llu@", (unsigned long long)ch.causal_length,
            (unsigned long long)ch.row_stamp.hlc);
    cx_hex(o, ch.row_stamp.site, 2);
    fprintf(o, "\n");
    for (c = 0; c < ch.ncolumns; c++) {
      sync_value v;
      sync_stamp s, bs;
      if (sync_changes_column(it, c, &v, &s, &bs) != 0) continue;
      fprintf(o, "  col %u ", c);
      switch (v.type) {
      case SYNC_NULL: fprintf(o, "null"); break;
      case SYNC_INTEGER: fprintf(o, "int %lld", (long long)v.i); break;
      case SYNC_REAL: {
        uint64_t u;
        memcpy(&u, &v.r, 8);
        fprintf(o, "real %016llx", (unsigned long long)u);
        break;
      }
      default:
        fprintf(o, "%s ", v.type == SYNC_TEXT ? "text" : "blob");
        cx_hex(o, v.data, v.len);
      }
      fprintf(o, " stamp=%llu@", (unsigned long long)s.hlc);
      cx_hex(o, s.site, 2);
      fprintf(o, " base=%llu\n", (unsigned long long)bs.hlc);
    }
  }
  sync_changes_close(it);
  TU_OK(sync_digest(t, SYNC_ALL_TABLES, &dg));
  fprintf(o, "digest %016llx\n", (unsigned long long)dg);
  sync_txn_abort(t);
}

/* The fixed history behind the vectors: a sender with rows of every
 * type, updates, deletes and a relayed writer. */
static void cx_vector_history(mu_rep *a, mu_rep *o, uint64_t *now) {
  sync_txn *t;
  unsigned char ik[8];
  sync_value v[MU_NCOLS];
  static const unsigned char blob[5] = {0, 1, 2, 0xfe, 0xff};
  unsigned col;
  mu_put(a, "alpha", 1, 21.5, "ok");
  mu_put(a, "alphabet", -7, -0.0, "warn");
  mu_put(a, "beta", INT64_MAX, 3.14159, NULL);
  *now += 5;
  TU_OK(sync_txn_begin(a->env, 0, &t));
  v[0] = sync_int(123456789);
  v[1] = sync_real(1e300);
  v[2] = sync_text("", 0);
  v[3] = sync_blob(blob, sizeof blob);
  TU_OK(sync_put(t, 0, "gamma", 5, v, MU_NCOLS));
  sync_key_int(-3, ik);
  v[0] = sync_int(40);
  v[1] = sync_real(0.25);
  v[2] = sync_text("x", 1);
  TU_OK(sync_put(t, 1, ik, 8, v, 3));
  TU_OK(sync_txn_commit(t));
  *now += 5;
  mu_put(o, "delta", 9, 9.75, "relayed");
  mu_pull(a, o, 0, 1, NULL);
  *now += 5;
  col = MU_COL_S;
  mu_update(a, "alpha", col, sync_text("fault", 5));
  mu_delete(a, "beta");
}

static void test_vectors(void **state) {
  static const struct {
    const char *name;
    int level;
    int incremental; /* cut after a first pull: log mode with bases */
  } vec[] = {{"initial", 0, 0}, {"incremental", 0, 1}, {"zstd3", 3, 0}};
  const char *write = getenv("SYNC_WRITE_VECTORS");
  size_t i;
  (void)state;
  for (i = 0; i < sizeof vec / sizeof vec[0]; i++) {
    uint64_t now = 1700000000000ull;
    mu_rep a, o, b;
    char bin[256], txt[256];
    unsigned char *f, *want;
    size_t n, wn = 0;
    sync_decoder *dec;
    sync_delta *d;
    FILE *out;
    char *got;
    size_t gotn;
    /* Tests run in build/; SYNC_VECTORS names the folder elsewhere (the
     * cross tests run each program in a scratch folder of its own). */
    const char *vdir = getenv("SYNC_VECTORS") ? getenv("SYNC_VECTORS")
                                              : "../tests/vectors";
    snprintf(bin, sizeof bin, "%s/%s.bin", vdir, vec[i].name);
    snprintf(txt, sizeof txt, "%s/%s.txt", vdir, vec[i].name);
    cx_open(&a, "codec-a.db", 0xa1, &now);
    cx_open(&o, "codec-o.db", 0xb2, &now);
    cx_open(&b, "codec-b.db", 0xc3, &now);
    if (vec[i].incremental) {
      mu_put(&a, "alpha", 0, 0.5, "first");
      mu_put(&a, "beta", 0, 0.5, "first");
      mu_pull(&b, &a, 0, 1, NULL);
      now += 5;
    }
    cx_vector_history(&a, &o, &now);
    cx_frame_of(&a, &b, vec[i].level, &f, &n);
    if (write && !strcmp(write, "1")) {
      assert_true(tu_write_file(bin, f, n) == 0);
    }
    want = tu_read_file(bin, &wn);
    if (!want) fail_msg("%s missing (SYNC_WRITE_VECTORS=1 writes it)", bin);
    /* Uncompressed frames are canonical: our encoder must make the
     * committed bytes exactly. */
    if (vec[i].level == 0) {
      assert_int_equal(n, wn);
      assert_memory_equal(f, want, n);
    }
    TU_OK(sync_decoder_create(NULL, NULL, &dec));
    TU_OK(sync_decoder_decode(dec, want, wn, &d));
    mu_apply(&b, d, SYNC_APPLY_MERGE, NULL);
    sync_delta_free(d);
    sync_decoder_free(dec);
    out = open_memstream(&got, &gotn);
    cx_dump(&b, out);
    fclose(out);
    if (write && !strcmp(write, "1"))
      assert_true(tu_write_file(txt, got, gotn) == 0);
    {
      size_t tn = 0;
      unsigned char *t = tu_read_file(txt, &tn);
      if (!t) fail_msg("%s missing", txt);
      if (tn != gotn || memcmp(t, got, tn))
        fail_msg("%s: decoded meaning differs:\n%.*s", txt, (int)gotn, got);
      free(t);
    }
    free(got);
    free(want);
    free(f);
    mu_close(&a);
    mu_close(&o);
    mu_close(&b);
  }
}

/* The fold vector (tests/vectors/folds.*): a device adds to counters,
 * its heir pulls it, retires it and folds; the heir's chunk for a new
 * replica carries the fold section (docs/FORMAT.md, "Fold section").
 * The frame must come out byte for byte, and mean, applied, the records,
 * the sums and the sites each cell keeps. */
static const sync_column_def cx_ccols[2] = {{"hits", SYNC_COUNTER, 0},
                                            {"note", SYNC_TEXT, 0}};
static const sync_table_def cx_ctables[1] = {{"c", SYNC_TEXT, cx_ccols, 2}};

static void cx_cadd(mu_rep *r, const char *key, int64_t n, uint64_t *now) {
  sync_txn *t;
  TU_OK(sync_txn_begin(r->env, 0, &t));
  TU_OK(sync_counter_add(t, 0, key, strlen(key), 0, n));
  TU_OK(sync_txn_commit(t));
  *now += 2;
}

static void test_fold_vector(void **state) {
  static const char *const keys[3] = {"j", "k", "solo"};
  uint64_t now = 1700000000000ull;
  mu_rep d, h, n;
  uint8_t id[16];
  unsigned char *f, *want;
  size_t fn, wn = 0, i, nf, k;
  const char *write = getenv("SYNC_WRITE_VECTORS");
  const char *vdir =
      getenv("SYNC_VECTORS") ? getenv("SYNC_VECTORS") : "../tests/vectors";
  char bin[256], txt[256];
  sync_decoder *dec;
  sync_delta *dl;
  sync_txn *t;
  sync_fold fo[4];
  FILE *out;
  char *got;
  size_t gotn;
  (void)state;
  snprintf(bin, sizeof bin, "%s/folds.bin", vdir);
  snprintf(txt, sizeof txt, "%s/folds.txt", vdir);
  mu_site(id, 0xd4);
  mu_open_schema(&d, "codec-d.db", id, &now, 0, cx_ctables, 1);
  mu_site(id, 0xe5);
  mu_open_schema(&h, "codec-h.db", id, &now, 0, cx_ctables, 1);
  mu_site(id, 0xf6);
  mu_open_schema(&n, "codec-n.db", id, &now, 0, cx_ctables, 1);
  cx_cadd(&d, "k", 5, &now);
  cx_cadd(&d, "j", -3, &now);
  cx_cadd(&d, "solo", 40, &now);
  cx_cadd(&h, "k", 1, &now);
  mu_pull(&h, &d, 0, 1, NULL);
  mu_site(id, 0xd4);
  TU_OK(sync_txn_begin(h.env, 0, &t));
  TU_OK(sync_site_retire(t, id));
  TU_OK(sync_txn_commit(t));
  now += 2;
  TU_OK(sync_env_gc(h.env, NULL));
  now += 2;
  cx_frame_of(&h, &n, 0, &f, &fn);
  assert_true(f[6] & 4); /* FOLDS */
  if (write && !strcmp(write, "1")) assert_true(tu_write_file(bin, f, fn) == 0);
  want = tu_read_file(bin, &wn);
  if (!want) fail_msg("%s missing (SYNC_WRITE_VECTORS=1 writes it)", bin);
  assert_int_equal(fn, wn);
  assert_memory_equal(f, want, fn);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  TU_OK(sync_decoder_decode(dec, want, wn, &dl));
  mu_apply(&n, dl, SYNC_APPLY_MERGE, NULL);
  sync_delta_free(dl);
  sync_decoder_free(dec);
  out = open_memstream(&got, &gotn);
  TU_OK(sync_txn_begin(n.env, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_folds_get(t, fo, 4, &nf));
  for (i = 0; i < nf && i < 4; i++) {
    fprintf(out, "fold site=");
    cx_hex(out, fo[i].site, 16);
    fprintf(out, " heir=");
    cx_hex(out, fo[i].heir, 16);
    fprintf(out, " hlc=%llu held=%llu\n", (unsigned long long)fo[i].hlc,
            (unsigned long long)fo[i].held);
  }
  for (k = 0; k < 3; k++) {
    sync_value v[2];
    uint8_t sites[4][16];
    size_t ns = 0;
    TU_OK(sync_get(t, 0, keys[k], strlen(keys[k]), v, 1));
    TU_OK(sync_counter_sites(t, 0, keys[k], strlen(keys[k]), 0, sites, 4,
                             &ns));
    fprintf(out, "row %s hits=%lld sites", keys[k], (long long)v[0].i);
    for (i = 0; i < ns && i < 4; i++) {
      fprintf(out, " ");
      cx_hex(out, sites[i], 2);
    }
    fprintf(out, "\n");
  }
  sync_txn_abort(t);
  fclose(out);
  if (write && !strcmp(write, "1"))
    assert_true(tu_write_file(txt, got, gotn) == 0);
  {
    size_t tn = 0;
    unsigned char *tx = tu_read_file(txt, &tn);
    if (!tx) fail_msg("%s missing", txt);
    if (tn != gotn || memcmp(tx, got, tn))
      fail_msg("%s: decoded meaning differs:\n%.*s", txt, (int)gotn, got);
    free(tx);
  }
  free(got);
  free(want);
  free(f);
  mu_close(&d);
  mu_close(&h);
  mu_close(&n);
}

/* A decoded chunk is only a chunk: it is refused by a replica it was not
 * cut for, exactly as the in-memory one. */
static void test_decoded_checks(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep a, b, c;
  unsigned char *f;
  size_t n;
  sync_decoder *dec;
  sync_delta *d;
  sync_txn *t;
  (void)state;
  cx_open(&a, "codec-a.db", 0xa1, &now);
  cx_open(&b, "codec-b.db", 0xb2, &now);
  cx_open(&c, "codec-c.db", 0xc3, &now);
  cx_fill(&a, 10, &now);
  cx_frame_of(&a, &b, 0, &f, &n);
  TU_OK(sync_decoder_create(NULL, NULL, &dec));
  TU_OK(sync_decoder_decode(dec, f, n, &d));
  TU_OK(sync_txn_begin(c.env, 0, &t));
  TU_RC(sync_delta_apply(t, d, SYNC_APPLY_MERGE, NULL), SYNC_EINVAL);
  sync_txn_abort(t);
  assert_int_equal(mu_count(&c), 0);
  sync_delta_free(d);
  sync_decoder_free(dec);
  free(f);
  mu_close(&a);
  mu_close(&b);
  mu_close(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_random),
      cmocka_unit_test(test_fragmented_stream),
      cmocka_unit_test(test_corrupt_every_byte),
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_renewal_section),
      cmocka_unit_test(test_decode_reasons),
      cmocka_unit_test(test_limits_and_bombs),
      cmocka_unit_test(test_dictionary),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_fold_vector),
      cmocka_unit_test(test_decoded_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
