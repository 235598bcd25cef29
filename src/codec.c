/*
 * codec.c - delta chunks as wire frames, and back (docs/FORMAT.md,
 * "Delta frames").  The only module that includes zstd.h.
 *
 * The encoder sorts the rows of a chunk by (table, key), prefix-compresses
 * the keys, gathers the chunk's stamps into one table that rows refer to
 * by index, and chooses per column the cheapest of a few value encodings
 * (plain, fixed-width, delta, scaled decimal) by measuring each exactly.
 * The decoder trusts nothing: every length and count is bounded before it
 * sizes anything, every reference is checked, and a frame is verified
 * whole (checksum, then structure) before a delta is handed out.
 *
 * Pure bytes: the codec stands on util, hash and the delta types alone
 * (no storage), so the decoder of untrusted input can be read, tested and
 * fuzzed as a closed unit.
 */
#include "internal.h"

#include "codec.h"
#include "delta.h"
#include "hash.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

#ifndef SYNC_OMIT_ZSTD
#ifndef SYNC_OMIT_ENCODER
#include <zdict.h>
#endif
#include <zstd.h>
#include <zstd_errors.h>
#endif

#define SX_FMAGIC0 0xd5
#define SX_FMAJOR 1
#define SX_FMINOR 4
#define SX_FF_ZSTD 0x1u
#define SX_FF_DICT 0x2u
/* A standalone frame with fold records after its last section (format
 * 10): code before folds refuses the flag, as it must (it would merge an
 * heir's contributions without dropping what they hold). */
#define SX_FF_FOLDS 0x4u
#define SX_FHEAD_MAX (7 + 2 * SX_VARINT_MAX + 4)
#define SX_FSUM 8

/* Row head bits */
#define SX_RH_TABLE 0x01u /* var table id follows */
#define SX_RH_KLEN 0x02u  /* var key length follows */
#define SX_RH_STAMP 0x04u /* var row stamp index follows */
#define SX_RH_CL 0x08u    /* var causal length follows (else 1) */
#define SX_RH_PART 0x10u  /* explicit column list */
#define SX_RH_CST 0x20u   /* var column stamp index (else the row stamp) */
#define SX_RH_BASE 0x40u  /* var base stamp index (else no base) */
#define SX_RH_CTL 0x80u   /* a control varint before each column */

/* Column control bits (SX_RH_CTL rows) */
#define SX_CC_NULL 0x1u
#define SX_CC_STAMP 0x2u
#define SX_CC_BASE 0x4u

/* Column encodings: type | mode << 3 */
#define SX_ENC_PLAIN 0
#define SX_ENC_FIXED 1 /* INTEGER: 8 bytes LE */
#define SX_ENC_DELTA 2 /* INTEGER: zig-zag delta to the previous value */
#define SX_ENC_DEC 1   /* REAL: modes 1..16, scaled decimal, scale mode-1 */
#define SX_ENC_REP 1   /* TEXT, BLOB (session frames): 0 repeats the
                          previous value, else length + 1 */
#define SX_DEC_SCALES 16
#define SX_MANT_MAX (INT64_C(1) << 53)

#define SX_DEF_MAX_FRAME ((size_t)4 << 20)
#define SX_DEF_MAX_BODY ((size_t)4 << 20)
#define SX_DEF_MAX_ROWS ((size_t)100000)
#define SX_MAX_SITES 65536u
#define SX_WINDOW_LOG_MAX 24

static const double sx_p10[SX_DEC_SCALES] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
    1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

/* ---------------------------------------------------------------------
 * Session frames (major 3): the context both ends of a direction hold
 * ------------------------------------------------------------------- */
/* Chunk flags of a session frame (a varint): what the body holds beyond
 * the context. */
/* The flags a steady stream sets come first, so that they fit the
 * varint's first byte. */
#define SX_CF_LAST 0x001u
#define SX_CF_SNEXT 0x002u   /* a row without its stamp index has the one
                                after the previous row's (else the same) */
#define SX_CF_TABLES 0x004u  /* the tables section is the previous frame's */
#define SX_CF_ENDROW 0x008u  /* the end cursor is in the initial stream of
                                the start, at the last row's table and key */
#define SX_CF_END 0x010u     /* the end cursor whole */
#define SX_CF_PARTIAL 0x020u
#define SX_CF_COMPLETE 0x040u
#define SX_CF_MARK 0x080u    /* u64 mark id, var mark start */
#define SX_CF_SCOPE 0x100u   /* the scope */
#define SX_CF_EXITS 0x200u   /* var E >= 1, exit markers */
#define SX_CF_START 0x400u   /* the start cursor */
#define SX_CF_GCCL 0x800u    /* var G >= 1, collected causal lengths */
#define SX_CF_RENEW 0x1000u  /* var R >= 1, renewal records */
#define SX_CF_LINEAGE 0x2000u /* the mark's lineage */
#define SX_CF_IDS 0x4000u    /* sender and receiver ids */
#define SX_CF_HASH 0x8000u   /* the schema hash */
#define SX_CF_FOLDS 0x10000u /* var F >= 1, fold records */
#define SX_CF_ALL 0x1ffffu
/* A signed HLC difference is written as (magnitude << 1 | negative),
 * below this magnitude; larger ones escape to the whole HLC. */
#define SX_HDELTA_MAX (UINT64_C(1) << 62)

static int sx_site_cmp(const uint8_t *a, const uint8_t *b) {
  return memcmp(a, b, SX_SITE_LEN);
}

/* Position of id in c->byid (where it would go when absent); *found. */
static size_t sx_fctx_find(const sx_fctx *c, const uint8_t *id, int *found) {
  size_t lo = 0, hi = c->nsites;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int k = sx_site_cmp(c->sites[c->byid[mid]], id);
    if (k == 0) {
      *found = 1;
      return mid;
    }
    if (k < 0) lo = mid + 1;
    else hi = mid;
  }
  *found = 0;
  return lo;
}

/* Append id as the next session index (the table has room). */
static int sx_fctx_add(sx_fctx *c, const uint8_t *id) {
  int found, rc;
  size_t at;
  if ((rc = sx_grow(&c->al, (void **)&c->sites, &c->capsites, c->nsites + 1,
                    SX_SITE_LEN)) ||
      (rc = sx_grow(&c->al, (void **)&c->byid, &c->capbyid, c->nsites + 1,
                    sizeof(uint32_t))) ||
      (rc = sx_grow(&c->al, (void **)&c->hl, &c->caphl, c->nsites + 1,
                    sizeof(uint64_t))) ||
      (rc = sx_grow(&c->al, (void **)&c->vl, &c->capvl, c->nsites + 1,
                    sizeof(uint64_t))))
    return rc;
  c->hl[c->nsites] = c->vl[c->nsites] = 0;
  at = sx_fctx_find(c, id, &found);
  memcpy(c->sites[c->nsites], id, SX_SITE_LEN);
  memmove(c->byid + at + 1, c->byid + at, (c->nsites - at) * sizeof *c->byid);
  c->byid[at] = (uint32_t)c->nsites;
  c->nsites++;
  return 0;
}

SYNC_PRIVATE int sx_fctx_init(sx_fctx *c, const sx_alloc *al,
                              const uint8_t *sender, const uint8_t *receiver,
                              uint64_t hash) {
  int rc;
  memset(c, 0, sizeof *c);
  c->al = *al;
  c->schema_hash = hash;
  c->start.mode = SX_MODE_LOG;
  if ((rc = sx_fctx_add(c, sender)) || (rc = sx_fctx_add(c, receiver))) {
    sx_fctx_free(c);
    return rc;
  }
  return 0;
}

SYNC_PRIVATE void sx_fctx_free(sx_fctx *c) {
  if (!c) return;
  sx_free(&c->al, c->sites);
  sx_free(&c->al, c->byid);
  sx_free(&c->al, c->ref);
  sx_free(&c->al, c->hl);
  sx_free(&c->al, c->vl);
  sx_free(&c->al, c->map);
  c->sites = NULL;
  c->byid = NULL;
  c->ref = NULL;
  c->hl = c->vl = NULL;
  c->map = NULL;
  c->nsites = c->capsites = c->capbyid = c->nref = c->capref = 0;
  c->caphl = c->capvl = c->capmap = 0;
}

static int sx_stamp_site_cmp(const void *a, const void *b) {
  return sx_site_cmp(((const sync_stamp *)a)->site,
                     ((const sync_stamp *)b)->site);
}

SYNC_PRIVATE int sx_fctx_request(sx_fctx *c, const sync_request *req) {
  int rc;
  c->start = req->cur;
  c->mark = req->mark;
  c->scope = req->scope;
  if ((rc = sx_grow(&c->al, (void **)&c->ref, &c->capref, req->nvv + 1,
                    sizeof(sync_stamp))))
    return rc;
  if (req->nvv) memcpy(c->ref, req->vv, req->nvv * sizeof(sync_stamp));
  c->nref = req->nvv;
  qsort(c->ref, c->nref, sizeof *c->ref, sx_stamp_site_cmp);
  return 0;
}

/* The requester's vector entry for site id (0 when it names none). */
static uint64_t sx_fctx_ref(const sx_fctx *c, const uint8_t *id) {
  size_t lo = 0, hi = c->nref;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int k = sx_site_cmp(c->ref[mid].site, id);
    if (k == 0) return c->ref[mid].hlc;
    if (k < 0) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* What the first stamp of chunk site i of d is written against: the
 * largest stamp of its site in the session's last frame that had one,
 * else the requester's vector entry. */
static uint64_t sx_fctx_sref(const sx_fctx *c, const sync_delta *d,
                             size_t i) {
  uint32_t x = c->map[i];
  if (x != UINT32_MAX && c->hl[x]) return c->hl[x];
  return sx_fctx_ref(c, d->sites[i]);
}

/* What chunk site i's vector entry is written against: the entry the
 * session's last frame gave its site (an initial stream repeats the
 * whole vector in every chunk), else the largest stamp of the site in
 * this chunk (mx, 0 when none), else the requester's entry. */
static uint64_t sx_fctx_vref(const sx_fctx *c, const sync_delta *d, size_t i,
                             uint64_t mx) {
  uint32_t x = c->map[i];
  if (x != UINT32_MAX && c->vl[x]) return c->vl[x];
  return mx ? mx : sx_fctx_ref(c, d->sites[i]);
}

/* A frame went through (written or read): each of its stamps (chunk
 * site, HLC) and its vector become what the next frame's are written
 * against. */
static void sx_fctx_seen_stamp(sx_fctx *c, const sync_delta *d, uint32_t site,
                               uint64_t h) {
  uint32_t x = site < d->nsites ? c->map[site] : UINT32_MAX;
  if (x != UINT32_MAX && h > c->hl[x]) c->hl[x] = h;
}

static void sx_fctx_seen_vector(sx_fctx *c, const sync_delta *d) {
  size_t i;
  for (i = 0; i < d->nsites && i < d->nvv; i++)
    if (c->map[i] != UINT32_MAX && d->vv[i]) c->vl[c->map[i]] = d->vv[i];
}

/* A frame went through: its last row (NULL: it had none) and its tables
 * section (NULL: the one before was repeated) are what the next frame
 * is written against. */
static void sx_fctx_seen_frame(sx_fctx *c, const sync_delta *d,
                               const sx_drow *last, const unsigned char *tabs,
                               size_t tlen) {
  if (last) {
    c->ktid = last->tid;
    c->klen = last->klen;
    memcpy(c->key, d->arena.p + last->koff, last->klen);
  }
  if (tabs) {
    c->tlen = tlen <= SX_FCTX_TABS ? tlen : 0;
    if (c->tlen) memcpy(c->tabs, tabs, tlen);
  }
}

#ifndef SYNC_OMIT_ENCODER
static int sx_fcur_eq(const sx_cursor *a, const sx_cursor *b) {
  if (a->mode != b->mode) return 0;
  if (a->mode == SX_MODE_LOG)
    return a->version == b->version && a->seq == b->seq;
  return a->v0 == b->v0 && a->tid == b->tid && a->klen == b->klen &&
         !memcmp(a->key, b->key, a->klen);
}

static int sx_fscope_eq(const sx_scope *a, const sx_scope *b) {
  if (a->flags != b->flags) return 0;
  if (!(a->flags & SX_SCOPE_ON)) return 1;
  return a->fver == b->fver && !memcmp(a->tables, b->tables, SX_TBYTES) &&
         !memcmp(a->held, b->held, SX_TBYTES);
}

/* The bytes of HLC h against ref: zero escapes to the whole HLC; else
 * zero + 1 + (|h - ref| << 1 | h < ref).  p needs 2 * SX_VARINT_MAX
 * bytes. */
static unsigned char *sx_whdelta(unsigned char *p, uint64_t h, uint64_t ref,
                                 unsigned zero) {
  uint64_t mag = h >= ref ? h - ref : ref - h;
  /* Far from ref (or no ref at all), the HLC itself is shorter. */
  if (mag >= SX_HDELTA_MAX ||
      sx_varint_len(zero + 1 + (mag << 1)) > 1 + sx_varint_len(h)) {
    p = sx_wv(p, zero);
    return sx_wv(p, h);
  }
  return sx_wv(p, zero + 1 + ((mag << 1) | (h < ref ? 1u : 0u)));
}

/* A session frame's stamp h after the previous stamp prev of its group
 * (h > prev), as milliseconds and counter apart, the milliseconds
 * against the group's gap before (*pg, 0 at a group's first), since
 * stamps of readings come at a steady pace with a zero counter: var a,
 * where a = 0 is prev + 1; a = 1 the same millisecond, then var
 * (counter - prev's counter - 2); else g = *pg + unzigzag((a >> 1) - 1)
 * milliseconds on (g >= 1, and *pg becomes g), with a zero counter
 * when a is even, else var (counter - 1) follows. */
static unsigned char *sx_wsgap(unsigned char *p, uint64_t prev, uint64_t h,
                               uint64_t *pg) {
  uint64_t g = (h >> 16) - (prev >> 16), c = h & 0xffffu, a;
  if (h == prev + 1) return sx_wv(p, 0);
  if (g == 0) {
    p = sx_wv(p, 1);
    return sx_wv(p, c - (prev & 0xffffu) - 2);
  }
  a = (sx_zigzag((int64_t)g - (int64_t)*pg) + 1) << 1;
  *pg = g;
  if (c == 0) return sx_wv(p, a);
  p = sx_wv(p, a | 1);
  return sx_wv(p, c - 1);
}
#endif

/* Read what sx_wsgap wrote after prev into *h (*pg as there): 0, or 1
 * when the bytes name no stamp above prev. */
static int sx_rsgap(sx_rd *r, uint64_t prev, uint64_t *h, uint64_t *pg) {
  uint64_t a = sx_rv(r), c, ms = prev >> 16;
  int64_t g;
  if (a == 0) {
    if (prev == UINT64_MAX) return 1;
    *h = prev + 1;
    return 0;
  }
  if (a == 1) {
    c = sx_rv(r);
    if ((prev & 0xffffu) > 0xffffu - 2 || c > 0xffffu - 2 - (prev & 0xffffu))
      return 1;
    *h = (prev & ~(uint64_t)0xffffu) | ((prev & 0xffffu) + 2 + c);
    return 0;
  }
  /* Both *pg and the milliseconds stay below 2^48. */
  g = sx_unzigzag((a >> 1) - 1);
  if (g > (INT64_C(1) << 48) || g < -(INT64_C(1) << 48)) return 1;
  g += (int64_t)*pg;
  if (g < 1 || (uint64_t)g > (UINT64_MAX >> 16) - ms) return 1;
  c = (a & 1) ? sx_rv(r) : 0;
  if ((a & 1) && c >= 0xffffu) return 1;
  *pg = (uint64_t)g;
  *h = (ms + (uint64_t)g) << 16 | (c + ((a & 1) ? 1 : 0));
  return 0;
}

/* Read what sx_whdelta wrote (u: its first varint, already read, at
 * least zero); 0, or 1 when the HLC would leave 0..2^64-1. */
static int sx_rhdelta(sx_rd *r, uint64_t u, uint64_t ref, unsigned zero,
                      uint64_t *h) {
  uint64_t v, mag;
  if (u == zero) {
    *h = sx_rv(r);
    return 0;
  }
  v = u - zero - 1;
  mag = v >> 1;
  if (v & 1) {
    if (mag > ref) return 1;
    *h = ref - mag;
  } else {
    if (mag > UINT64_MAX - ref) return 1;
    *h = ref + mag;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Encoder (left out under SYNC_OMIT_ENCODER: a decoder-only build)
 * ------------------------------------------------------------------- */
#ifndef SYNC_OMIT_ENCODER
struct sync_encoder {
  sx_alloc al;
  int level;
  uint32_t dict_id;
  sx_buf body, frame;
  size_t raw_len, pos;
  int have;
#ifndef SYNC_OMIT_ZSTD
  ZSTD_CCtx *cctx;
  ZSTD_CDict *cdict;
#endif
  /* scratch, kept between frames */
  size_t *order;
  size_t cap_order;
  struct sx_encol *ec;
  size_t cap_ec;
};

/* Per (table, column) of a chunk: its type and chosen encoding. */
typedef struct sx_encol {
  unsigned tid, col;
  int type;
  unsigned enc;
  int64_t prev; /* delta and decimal state while writing */
} sx_encol;

typedef struct sx_stampv {
  uint32_t site;
  uint64_t hlc;
} sx_stampv;

SYNC_API int sync_encoder_create(const sync_allocator *alloc,
                                 const sync_codec_opts *o,
                                 sync_encoder **out) {
  sync_encoder *e;
  sx_alloc al;
  int level = o ? o->level : 0;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (sx_alloc_from(alloc, &al)) return SYNC_EINVAL;
  if (level < 0 || level > 19) return SYNC_EINVAL;
#ifdef SYNC_OMIT_ZSTD
  if (level > 0 || (o && o->dict)) return SYNC_ENOTSUP;
#endif
  e = (sync_encoder *)sx_malloc(&al, sizeof *e);
  if (!e) return SYNC_ENOMEM;
  memset(e, 0, sizeof *e);
  e->al = al;
  e->level = level;
  sx_buf_init(&e->body, &e->al);
  sx_buf_init(&e->frame, &e->al);
#ifndef SYNC_OMIT_ZSTD
  if (level > 0) {
    e->cctx = ZSTD_createCCtx();
    if (!e->cctx) {
      sync_encoder_free(e);
      return SYNC_ENOMEM;
    }
    /* Our header carries the body's size and the dictionary's id, so
     * zstd's own copies of them would only cost bytes. */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_compressionLevel,
                                            level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_contentSizeFlag,
                                            0)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_dictIDFlag, 0))) {
      sync_encoder_free(e);
      return SYNC_ENOMEM;
    }
    if (o->dict) {
      e->cdict = ZSTD_createCDict(o->dict, o->dict_len, level);
      if (!e->cdict || ZSTD_isError(ZSTD_CCtx_refCDict(e->cctx, e->cdict))) {
        sync_encoder_free(e);
        return SYNC_EINVAL;
      }
      e->dict_id = ZSTD_getDictID_fromCDict(e->cdict);
    }
  }
#endif
  *out = e;
  return 0;
}

SYNC_API void sync_encoder_free(sync_encoder *e) {
  sx_alloc al;
  if (!e) return;
  al = e->al;
#ifndef SYNC_OMIT_ZSTD
  ZSTD_freeCDict(e->cdict);
  ZSTD_freeCCtx(e->cctx);
#endif
  sx_buf_free(&e->body);
  sx_buf_free(&e->frame);
  sx_free(&al, e->order);
  sx_free(&al, e->ec);
  sx_free(&al, e);
}

/* Sorting rows by (table, key): qsort has no context pointer, so the
 * comparison works on records that carry what it needs. */
typedef struct sx_sortrow {
  unsigned tid;
  const unsigned char *key;
  size_t klen, idx;
} sx_sortrow;

static int sx_sortrow_cmp(const void *a, const void *b) {
  const sx_sortrow *x = (const sx_sortrow *)a, *y = (const sx_sortrow *)b;
  if (x->tid != y->tid) return x->tid < y->tid ? -1 : 1;
  return sx_keycmp(x->key, x->klen, y->key, y->klen);
}

static int sx_stampv_cmp(const void *a, const void *b) {
  const sx_stampv *x = (const sx_stampv *)a, *y = (const sx_stampv *)b;
  if (x->site != y->site) return x->site < y->site ? -1 : 1;
  if (x->hlc != y->hlc) return x->hlc < y->hlc ? -1 : 1;
  return 0;
}

/* Append (site, hlc) to t[0..n) unless it repeats the last entry;
 * returns the new count. */
static size_t sx_stamp_push(sx_stampv *t, size_t n, uint32_t site,
                            uint64_t hlc) {
  if (n && t[n - 1].site == site && t[n - 1].hlc == hlc) return n;
  t[n].site = site;
  t[n].hlc = hlc;
  return n + 1;
}

/* Index of stamp (site, hlc) in the sorted table t[0..n). */
static size_t sx_stamp_find(const sx_stampv *t, size_t n, uint32_t site,
                            uint64_t hlc) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t[mid].site < site || (t[mid].site == site && t[mid].hlc < hlc))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static sx_encol *sx_encol_find(sx_encol *ec, size_t n, unsigned tid,
                               unsigned col) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ec[mid].tid < tid || (ec[mid].tid == tid && ec[mid].col < col))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && ec[lo].tid == tid && ec[lo].col == col ? &ec[lo] : NULL;
}

/* First entry of table tid in ec[0..n) (n when none). */
static size_t sx_encol_lb(const sx_encol *ec, size_t n, unsigned tid) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ec[mid].tid < tid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}


/* The mantissa of v at decimal scale s, when v is exactly the double
 * nearest to m / 10^s (so the decoder's division gives v back). */
static int sx_decimal(double v, unsigned s, int64_t *m) {
  double t;
  if (!isfinite(v)) return 0;
  t = v * sx_p10[s];
  if (!(t > -(double)SX_MANT_MAX && t < (double)SX_MANT_MAX)) return 0;
  /* Round half away from zero; |t| < 2^53 so the conversion is exact
   * (and no libm is needed). */
  *m = (int64_t)(t < 0 ? t - 0.5 : t + 0.5);
  {
    volatile double back = (double)*m / sx_p10[s];
    return sx_double_bits(back) == sx_double_bits(v);
  }
}

/* Bytes of a decimal-delta value: 0 escapes to 8 raw bytes. */
static size_t sx_dec_len(double v, unsigned s, int64_t *prev) {
  int64_t m;
  if (!sx_decimal(v, s, &m)) return 1 + 8;
  {
    size_t n = sx_varint_len(sx_zigzag(m - *prev) + 1);
    *prev = m;
    return n;
  }
}

/* Whether TEXT or BLOB values a and b of chunk d are the same bytes. */
static int sx_same_bytes(const sync_delta *d, const sx_dcol *a,
                         const sx_dcol *b) {
  return a->v.len == b->v.len &&
         (!a->v.len || !memcmp(d->arena.p + (uintptr_t)a->v.data,
                               d->arena.p + (uintptr_t)b->v.data, a->v.len));
}

/* A TEXT or BLOB column of a session frame: repeats of the previous
 * value (a status, a unit, a firmware name) as one byte each, when that
 * makes the chunk's values smaller. */
static void sx_choose_rep(sync_encoder *e, const sync_delta *d, sx_encol *c) {
  const sx_dcol *prev = NULL;
  uint64_t plain = 0, rep = 0;
  size_t i, j;
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *r = &d->rows[e->order[i]];
    if (r->tid != c->tid) continue;
    for (j = 0; j < r->ncols; j++) {
      const sx_dcol *dc = &d->cols[r->col0 + j];
      if (dc->col != c->col || dc->v.type == SYNC_NULL) continue;
      plain += sx_varint_len(dc->v.len) + dc->v.len;
      rep += prev && sx_same_bytes(d, prev, dc)
                 ? 1
                 : sx_varint_len((uint64_t)dc->v.len + 1) + dc->v.len;
      prev = dc;
    }
  }
  if (rep < plain) c->enc = SX_ENC_REP;
}

/* Choose the encoding of every (table, column) of the sorted chunk by
 * measuring each candidate on its values; sess: a session frame, which
 * has encodings of its own. */
static int sx_choose(sync_encoder *e, const sync_delta *d, size_t nec,
                     int sess) {
  size_t k;
  for (k = 0; k < nec; k++) {
    sx_encol *c = &e->ec[k];
    uint64_t plain = 0, fixed = 0, delta = 0, dec = 0;
    int64_t prevd = 0, previ = 0;
    size_t i, j, nsample = 0, nrep = 0;
    unsigned s, scale = 0;
    c->enc = SX_ENC_PLAIN;
    if (sess && (c->type == SYNC_TEXT || c->type == SYNC_BLOB))
      sx_choose_rep(e, d, c);
    if (c->type != SYNC_INTEGER && c->type != SYNC_REAL) continue;
    if (c->type == SYNC_REAL) {
      /* The scale: the smallest that covers the first values, which a
       * time series or a sensor keeps (measured on all values below). */
      for (i = 0; i < d->nrows && nsample < 32; i++) {
        const sx_drow *r = &d->rows[e->order[i]];
        if (r->tid != c->tid) continue;
        for (j = 0; j < r->ncols; j++) {
          const sx_dcol *dc = &d->cols[r->col0 + j];
          int64_t m;
          if (dc->col != c->col || dc->v.type != SYNC_REAL) continue;
          nsample++;
          for (s = 0; s < SX_DEC_SCALES; s++)
            if (sx_decimal(dc->v.r, s, &m)) break;
          if (s < SX_DEC_SCALES) {
            nrep++;
            if (s > scale) scale = s;
          }
        }
      }
      if (nrep * 2 < nsample) continue; /* mostly not decimal: plain */
    }
    for (i = 0; i < d->nrows; i++) {
      const sx_drow *r = &d->rows[e->order[i]];
      if (r->tid != c->tid) continue;
      for (j = 0; j < r->ncols; j++) {
        const sx_dcol *dc = &d->cols[r->col0 + j];
        if (dc->col != c->col || dc->v.type == SYNC_NULL) continue;
        if (c->type == SYNC_INTEGER) {
          plain += sx_varint_len(sx_zigzag(dc->v.i));
          fixed += 8;
          delta += sx_varint_len(
              sx_zigzag((int64_t)((uint64_t)dc->v.i - (uint64_t)previ)));
          previ = dc->v.i;
        } else {
          plain += 8;
          dec += sx_dec_len(dc->v.r, scale, &prevd);
        }
      }
    }
    if (c->type == SYNC_INTEGER) {
      if (fixed < plain && fixed <= delta) c->enc = SX_ENC_FIXED;
      else if (delta < plain) c->enc = SX_ENC_DELTA;
    } else if (dec < plain) {
      c->enc = SX_ENC_DEC + scale;
    }
  }
  return 0;
}

static unsigned char *sx_wvalue(unsigned char *p, sx_encol *c,
                                const sync_delta *d, const sx_dcol *dc) {
  switch (c->type) {
  case SYNC_INTEGER:
    if (c->enc == SX_ENC_FIXED) {
      sx_put_le64(p, (uint64_t)dc->v.i);
      return p + 8;
    }
    if (c->enc == SX_ENC_DELTA) {
      int64_t dv = (int64_t)((uint64_t)dc->v.i - (uint64_t)c->prev);
      c->prev = dc->v.i;
      return sx_wv(p, sx_zigzag(dv));
    }
    return sx_wv(p, sx_zigzag(dc->v.i));
  case SYNC_REAL:
    if (c->enc >= SX_ENC_DEC) {
      int64_t m;
      if (sx_decimal(dc->v.r, c->enc - SX_ENC_DEC, &m)) {
        p = sx_wv(p, sx_zigzag(m - c->prev) + 1);
        c->prev = m;
        return p;
      }
      *p++ = 0;
    }
    sx_put_le64(p, sx_double_bits(dc->v.r));
    return p + 8;
  case SYNC_COUNTER: {
    /* var n, then per contribution var site gap (sites increasing),
     * var P, var N, var HLC. */
    const sx_ctr *a = sx_dctr(d, dc->v.data);
    size_t i;
    p = sx_wv(p, dc->v.len);
    for (i = 0; i < dc->v.len; i++) {
      p = sx_wv(p, a[i].site - (i ? a[i - 1].site + 1 : 0));
      p = sx_wv(p, a[i].p);
      p = sx_wv(p, a[i].n);
      p = sx_wv(p, a[i].hlc);
    }
    return p;
  }
  default: /* TEXT, BLOB */
    if (c->enc == SX_ENC_REP) {
      /* prev: 1 + the index in d->cols of this column's last value. */
      const sx_dcol *last = c->prev ? &d->cols[c->prev - 1] : NULL;
      c->prev = (int64_t)(dc - d->cols) + 1;
      if (last && sx_same_bytes(d, last, dc)) {
        *p++ = 0;
        return p;
      }
      p = sx_wv(p, (uint64_t)dc->v.len + 1);
    } else {
      p = sx_wv(p, dc->v.len);
    }
    if (dc->v.len)
      memcpy(p, d->arena.p + (uintptr_t)dc->v.data, dc->v.len);
    return p + dc->v.len;
  }
}

/* Note column (tid, col) with a value of type t in the sorted set e->ec
 * of n entries: each pair once, with the one non-NULL type its values
 * have (SYNC_NULL while all are NULL). */
static int sx_encol_add(sync_encoder *e, size_t *n, unsigned tid, unsigned col,
                        int t) {
  size_t lo = 0, hi = *n;
  int rc;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (e->ec[mid].tid < tid || (e->ec[mid].tid == tid && e->ec[mid].col < col))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < *n && e->ec[lo].tid == tid && e->ec[lo].col == col) {
    sx_encol *c = &e->ec[lo];
    if (c->type == SYNC_NULL) c->type = t;
    else if (t != SYNC_NULL && t != c->type) return SYNC_EINVAL;
    return 0;
  }
  if ((rc = sx_grow(&e->al, (void **)&e->ec, &e->cap_ec, *n + 1,
                    sizeof(sx_encol))))
    return rc;
  memmove(e->ec + lo + 1, e->ec + lo, (*n - lo) * sizeof *e->ec);
  e->ec[lo].tid = tid;
  e->ec[lo].col = col;
  e->ec[lo].type = t;
  e->ec[lo].enc = SX_ENC_PLAIN;
  e->ec[lo].prev = 0;
  (*n)++;
  return 0;
}

/* The most bytes row r can take in a body. */
static size_t sx_row_bound(const sync_delta *d, const sx_drow *r) {
  size_t n = 8 * SX_VARINT_MAX + r->klen + r->ncols * SX_VARINT_MAX, j;
  for (j = 0; j < r->ncols; j++) {
    const sx_dcol *c = &d->cols[r->col0 + j];
    n += 4 * SX_VARINT_MAX + 9 +
         (c->v.type == SYNC_TEXT || c->v.type == SYNC_BLOB ? c->v.len : 0) +
         (c->v.type == SYNC_COUNTER ? c->v.len * 4 * SX_VARINT_MAX : 0);
  }
  return n;
}

/* A body being written: the chunk, what the stages before writing found
 * (order, stamp table, columns), where the writing stands, and what the
 * row before the current one leaves for it. */
typedef struct sx_ebody {
  sync_encoder *e;
  const sync_delta *d;
  sx_sortrow *sr; /* rows (then exits) by (table, key) */
  sx_stampv *st;  /* the stamp table, sorted, each stamp once */
  size_t nst, nec, ntab;
  size_t bound;     /* the most bytes of the body up to its rows */
  unsigned char *p; /* the next byte to write in e->body */
  /* the previous row (its key: in the chunk's arena, or the session's
   * context for a session frame's first row) */
  unsigned ptid;
  const unsigned char *pkey;
  size_t pklen, pstamp;
  sx_encol *tcols, *tend; /* its table's entries in e->ec */
  /* a session frame (major 3): its context and chunk flags */
  sx_fctx *cx;
  unsigned cflags;
} sx_ebody;

/* One row's head bits and stamp indexes (SIZE_MAX: no base). */
typedef struct sx_erow {
  unsigned head;
  size_t rst, cst, bst;
  int ctl;
} sx_erow;

/* Make room for need more bytes at b->p: the buffer grows with what is
 * written, not with a bound for the whole chunk. */
static int sx_enc_room(sx_ebody *b, size_t need) {
  size_t at = (size_t)(b->p - b->e->body.p);
  int rc;
  b->e->body.len = at;
  rc = sx_buf_reserve(&b->e->body, need);
  b->p = b->e->body.p + at;
  return rc;
}

/* n rows of d (rows or exits) sorted by (table, key) into *out (NULL
 * when n is 0). */
static int sx_enc_sortrows(const sx_alloc *al, const sync_delta *d,
                           const sx_drow *rows, size_t n, sx_sortrow **out) {
  sx_sortrow *sr;
  size_t i;
  *out = NULL;
  if (!n) return 0;
  sr = (sx_sortrow *)sx_malloc(al, n * sizeof *sr);
  if (!sr) return SYNC_ENOMEM;
  for (i = 0; i < n; i++) {
    sr[i].tid = rows[i].tid;
    sr[i].key = d->arena.p + rows[i].koff;
    sr[i].klen = rows[i].klen;
    sr[i].idx = i;
  }
  qsort(sr, n, sizeof *sr, sx_sortrow_cmp);
  *out = sr;
  return 0;
}

/* Stage 1: the order of the rows, by (table, key), in e->order. */
static int sx_enc_order(sx_ebody *b) {
  sync_encoder *e = b->e;
  size_t i;
  int rc;
  if ((rc = sx_enc_sortrows(&e->al, b->d, b->d->rows, b->d->nrows, &b->sr)))
    return rc;
  /* Both arrays exist even for a chunk with no row or no column, so that
   * the pointer arithmetic of the later stages never starts from NULL. */
  if ((rc = sx_grow(&e->al, (void **)&e->order, &e->cap_order, b->d->nrows + 1,
                    sizeof(size_t))) ||
      (rc = sx_grow(&e->al, (void **)&e->ec, &e->cap_ec, 1, sizeof(sx_encol))))
    return rc;
  for (i = 0; i < b->d->nrows; i++) {
    if (i && sx_sortrow_cmp(&b->sr[i - 1], &b->sr[i]) == 0)
      return SYNC_EINVAL; /* a key twice: a chunk never has that */
    e->order[i] = b->sr[i].idx;
  }
  return 0;
}

/* Stage 2: the stamp table, the (table, column) list and the tables,
 * with the bound on the body's size up to its rows. */
static int sx_enc_tally(sx_ebody *b) {
  const sync_delta *d = b->d;
  sync_encoder *e = b->e;
  size_t i, j, nst = 0;
  int rc;
  b->st = (sx_stampv *)sx_malloc(&e->al,
                                 (d->nrows + 2 * d->ncols + 1) * sizeof *b->st);
  if (!b->st) return SYNC_ENOMEM;
  b->bound = 64 + 2 * SX_SITE_LEN + 2 * (SYNC_MAX_KEY + 4 * SX_VARINT_MAX) +
             (size_t)d->nsites * (SX_SITE_LEN + SX_VARINT_MAX);
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *r = &d->rows[i];
    /* Columns mostly share their row's stamp: listing a stamp once per
     * run keeps the sort short. */
    nst = sx_stamp_push(b->st, nst, r->clsite, r->clhlc);
    for (j = 0; j < r->ncols; j++) {
      const sx_dcol *c = &d->cols[r->col0 + j];
      nst = sx_stamp_push(b->st, nst, c->site, c->hlc);
      if (c->bhlc) nst = sx_stamp_push(b->st, nst, c->bsite, c->bhlc);
      if ((rc = sx_encol_add(e, &b->nec, r->tid, c->col, c->v.type))) return rc;
    }
  }
  qsort(b->st, nst, sizeof *b->st, sx_stampv_cmp);
  for (i = j = 0; i < nst; i++)
    if (!j || sx_stampv_cmp(&b->st[j - 1], &b->st[i])) b->st[j++] = b->st[i];
  b->nst = j;
  b->bound +=
      b->nst * SX_VARINT_MAX + ((size_t)d->nsites + 1) * 3 * SX_VARINT_MAX;
  /* Every table of the chunk is listed, also one with only tombstones. */
  for (i = 0; i < d->nrows; i++)
    if (!i || d->rows[e->order[i]].tid != d->rows[e->order[i - 1]].tid)
      b->ntab++;
  b->bound += b->ntab * (3 * SX_VARINT_MAX + SYNC_MAX_COLUMNS);
  return 0;
}

/* Stage 3: the frame's fixed fields, cursors and site table. */
static void sx_enc_head(sx_ebody *b) {
  const sync_delta *d = b->d;
  unsigned char *p = b->p;
  size_t i;
  *p++ = (unsigned char)((d->last ? 1 : 0) | (d->partial ? 2 : 0));
  memcpy(p, d->sender, SX_SITE_LEN);
  p += SX_SITE_LEN;
  memcpy(p, d->receiver, SX_SITE_LEN);
  p += SX_SITE_LEN;
  sx_put_le64(p, d->schema_hash);
  p += 8;
  p = sx_wcursor(p, &d->start);
  p = sx_wcursor(p, &d->end);
  p = sx_wv(p, d->nsites);
  for (i = 0; i < d->nsites; i++) {
    memcpy(p, d->sites[i], SX_SITE_LEN);
    p += SX_SITE_LEN;
  }
  for (i = 0; i < d->nsites; i++) p = sx_wv(p, i < d->nvv ? d->vv[i] : 0);
  b->p = p;
}

/* Stage 4: the stamp table, in groups of one site.  A group's first HLC
 * is plain in a frame of its own, and in a session frame a delta against
 * what the session last said of its site (sx_fctx_sref). */
static void sx_enc_stamps(sx_ebody *b) {
  const sx_stampv *st = b->st;
  unsigned char *p = b->p;
  size_t i, j, ng = 0;
  uint64_t pg;
  for (i = 0; i < b->nst; i++)
    if (!i || st[i].site != st[i - 1].site) ng++;
  p = sx_wv(p, ng);
  for (i = 0; i < b->nst;) {
    size_t n = 1;
    while (i + n < b->nst && st[i + n].site == st[i].site) n++;
    p = sx_wv(p, st[i].site);
    p = sx_wv(p, n);
    if (b->cx)
      p = sx_whdelta(p, st[i].hlc, sx_fctx_sref(b->cx, b->d, st[i].site), 0);
    else
      p = sx_wv(p, st[i].hlc);
    for (j = 1, pg = 0; j < n; j++)
      p = b->cx ? sx_wsgap(p, st[i + j - 1].hlc, st[i + j].hlc, &pg)
                : sx_wv(p, st[i + j].hlc - st[i + j - 1].hlc - 1);
    i += n;
  }
  b->p = p;
}

/* Major 3, stage 3: what the chunk holds beyond the context (its chunk
 * flags, in b->cflags), the cursors, and the chunk's sites as session
 * indexes, new ones in full (and into the context). */
/* Whether the rows' stamps mostly follow each other in the stamp table
 * (each row written by its own transaction: readings, a log of events)
 * rather than repeat (rows written together): then a row without a
 * stamp index has the next one (SX_CF_SNEXT). */
static int sx_enc_snext(const sx_ebody *b) {
  const sync_delta *d = b->d;
  size_t i, prev = SIZE_MAX, same = 0, next = 0;
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *r = &d->rows[b->e->order[i]];
    size_t st = sx_stamp_find(b->st, b->nst, r->clsite, r->clhlc);
    if (prev != SIZE_MAX) {
      if (st == prev) same++;
      else if (st == prev + 1) next++;
    }
    prev = st;
  }
  return next > same + 1; /* the flag may cost the flags varint a byte */
}

static unsigned sx_enc2_flags(const sx_ebody *b) {
  const sync_delta *d = b->d;
  const sx_fctx *c = b->cx;
  unsigned f = (d->last ? SX_CF_LAST : 0) | (d->partial ? SX_CF_PARTIAL : 0) |
               (d->complete ? SX_CF_COMPLETE : 0);
  if (d->mark.id != c->mark.id || d->mark.start != c->mark.start)
    f |= SX_CF_MARK;
  if (!sx_fscope_eq(&d->scope, &c->scope)) f |= SX_CF_SCOPE;
  if (d->nx) f |= SX_CF_EXITS;
  if (!sx_fcur_eq(&d->start, &c->start)) f |= SX_CF_START;
  if (d->nrows && d->start.mode == SX_MODE_INITIAL &&
      d->end.mode == SX_MODE_INITIAL && d->end.v0 == d->start.v0) {
    /* An initial stream mostly ends a chunk at the last row it sends. */
    const sx_drow *r = &d->rows[b->e->order[d->nrows - 1]];
    if (r->tid == d->end.tid && r->klen == d->end.klen &&
        !memcmp(d->arena.p + r->koff, d->end.key, r->klen))
      f |= SX_CF_ENDROW;
  }
  if (!(f & SX_CF_ENDROW) &&
      (d->start.mode != SX_MODE_LOG || d->end.mode != SX_MODE_LOG))
    f |= SX_CF_END;
  if (d->ngccl) f |= SX_CF_GCCL;
  if (d->nrenew) f |= SX_CF_RENEW;
  if (d->lineage.n) f |= SX_CF_LINEAGE;
  if (d->nfold) f |= SX_CF_FOLDS;
  if (sx_site_cmp(d->sender, c->sites[0]) ||
      sx_site_cmp(d->receiver, c->sites[1]))
    f |= SX_CF_IDS;
  if (d->schema_hash != c->schema_hash) f |= SX_CF_HASH;
  if (sx_enc_snext(b)) f |= SX_CF_SNEXT;
  return f;
}

static void sx_enc_tables(sx_ebody *b);

static int sx_enc2_head(sx_ebody *b) {
  const sync_delta *d = b->d;
  sx_fctx *c = b->cx;
  unsigned char *p = b->p;
  size_t i;
  int rc;
  /* Chunk index 0 is the sender, as in major 1; a session frame never
   * spells it out. */
  if (d->nsites == 0 || d->nsites > SX_MAX_SITES ||
      sx_site_cmp(d->sites[0], d->sender))
    return SYNC_EINVAL;
  if ((rc = sx_grow(&c->al, (void **)&c->map, &c->capmap, d->nsites,
                    sizeof(uint32_t))))
    return rc;
  b->cflags = sx_enc2_flags(b);
  {
    /* The tables section, on trial where the head goes: the same as the
     * previous frame's is a flag. */
    size_t n;
    sx_enc_tables(b);
    n = (size_t)(b->p - p);
    if (c->tlen && n == c->tlen && !memcmp(p, c->tabs, n))
      b->cflags |= SX_CF_TABLES;
    b->p = p;
  }
  c->map[0] = (b->cflags & SX_CF_IDS) ? UINT32_MAX : 0;
  p = sx_wv(p, b->cflags);
  if (b->cflags & SX_CF_IDS) {
    memcpy(p, d->sender, SX_SITE_LEN);
    memcpy(p + SX_SITE_LEN, d->receiver, SX_SITE_LEN);
    p += 2 * SX_SITE_LEN;
  }
  if (b->cflags & SX_CF_HASH) {
    sx_put_le64(p, d->schema_hash);
    p += 8;
  }
  if (b->cflags & SX_CF_START) p = sx_wcursor(p, &d->start);
  if (b->cflags & SX_CF_END) {
    p = sx_wcursor(p, &d->end);
  } else if (!(b->cflags & SX_CF_ENDROW)) {
    /* Mostly a few versions on from the start. */
    p = sx_whdelta(p, d->end.version, d->start.version, 0);
    p = sx_wv(p, d->end.seq);
  }
  p = sx_wv(p, d->nsites);
  for (i = 1; i < d->nsites; i++) {
    int found;
    size_t at = sx_fctx_find(c, d->sites[i], &found);
    if (found) {
      c->map[i] = c->byid[at];
      p = sx_wv(p, c->byid[at]);
      continue;
    }
    *p++ = 0;
    memcpy(p, d->sites[i], SX_SITE_LEN);
    p += SX_SITE_LEN;
    c->map[i] = UINT32_MAX;
    if (c->nsites < SX_FCTX_SITES) {
      c->map[i] = (uint32_t)c->nsites;
      if ((rc = sx_fctx_add(c, d->sites[i]))) return rc;
    }
  }
  b->p = p;
  return 0;
}

/* Major 3, after the stamp table: the sender's vector, each entry
 * against the largest stamp of its site in the chunk (or the requester's
 * entry when the chunk has none). */
static void sx_enc2_vector(sx_ebody *b) {
  const sync_delta *d = b->d;
  const sx_stampv *st = b->st;
  unsigned char *p = b->p;
  size_t i, g;
  for (i = g = 0; i < d->nsites; i++) {
    uint64_t v = i < d->nvv ? d->vv[i] : 0, mx = 0;
    while (g < b->nst && st[g].site < i) g++;
    if (g < b->nst && st[g].site == i) {
      while (g + 1 < b->nst && st[g + 1].site == i) g++;
      mx = st[g].hlc;
    }
    if (!v) *p++ = 0;
    else p = sx_whdelta(p, v, sx_fctx_vref(b->cx, d, i, mx), 1);
  }
  b->p = p;
}

/* Major 3, stage 5: the tables.  A table whose every column is written
 * plain with the type the sender's schema gives it, and that has as many
 * columns in the chunk as in the schema (what a chunk of whole rows
 * usually is), takes one byte instead of one per column. */
static int sx_enc2_schema_form(const sx_ebody *b, unsigned tid, size_t k,
                               unsigned ncols) {
  const sx_fctx *c = b->cx;
  const sx_encol *ec = b->e->ec;
  unsigned col;
  /* The form names the schema of the context's hash, no other. */
  if (!c->coltype || (b->cflags & SX_CF_HASH) ||
      c->coltype(c->coltype_cx, tid, ncols) != 0)
    return 0;
  for (col = 0; col < ncols; col++) {
    int t = c->coltype(c->coltype_cx, tid, col);
    if (t <= 0) return 0;
    if (k < b->nec && ec[k].tid == tid && ec[k].col == col) {
      if (ec[k].enc != SX_ENC_PLAIN ||
          (ec[k].type != SYNC_NULL && ec[k].type != t))
        return 0;
      k++;
    }
  }
  return 1;
}

/* Stage 5: the tables: id, column count, one encoding byte per column.
 * A session frame writes the count + 1, or 0 for the schema form. */
static void sx_enc_tables(sx_ebody *b) {
  const sync_delta *d = b->d;
  sx_encol *ec = b->e->ec;
  unsigned char *p = sx_wv(b->p, b->ntab);
  size_t i, j, k = 0;
  for (i = 0; i < d->nrows; i++) {
    unsigned tid = d->rows[b->e->order[i]].tid, ncols = 0, col;
    if (i && tid == d->rows[b->e->order[i - 1]].tid) continue;
    while (k < b->nec && ec[k].tid < tid) k++;
    for (j = k; j < b->nec && ec[j].tid == tid; j++) ncols = ec[j].col + 1;
    p = sx_wv(p, tid);
    if (b->cx && ncols && sx_enc2_schema_form(b, tid, k, ncols)) {
      *p++ = 0;
      for (j = k; j < b->nec && ec[j].tid == tid; j++) ec[j].prev = 0;
      continue;
    }
    p = sx_wv(p, (uint64_t)ncols + (b->cx ? 1 : 0));
    for (col = 0, j = k; col < ncols; col++) {
      if (j < b->nec && ec[j].tid == tid && ec[j].col == col) {
        *p++ = (unsigned char)(ec[j].type | (ec[j].enc << 3));
        ec[j].prev = 0;
        j++;
      } else {
        *p++ = 0; /* a column no row of the chunk carries */
      }
    }
  }
  b->p = p;
}

/* The head bits of row r and its stamp indexes. */
static void sx_enc_row_plan(sx_ebody *b, const sx_drow *r, sx_erow *w) {
  const sync_delta *d = b->d;
  const sx_dcol *c0 = d->cols ? d->cols + r->col0 : NULL;
  size_t j, tcount;
  int all = 1;
  memset(w, 0, sizeof *w);
  w->rst = w->cst = sx_stamp_find(b->st, b->nst, r->clsite, r->clhlc);
  w->bst = SIZE_MAX;
  if (r->tid != b->ptid) {
    sx_encol *ec = b->e->ec;
    w->head |= SX_RH_TABLE;
    b->pklen = 0;
    /* A session frame's first row shares bytes of the key the previous
     * frame ended with, if of the same table. */
    if (b->ptid == SX_NONE && b->cx && b->cx->klen && b->cx->ktid == r->tid) {
      b->pkey = b->cx->key;
      b->pklen = b->cx->klen;
    }
    b->tcols = ec + sx_encol_lb(ec, b->nec, r->tid);
    b->tend = b->tcols;
    while (b->tend < ec + b->nec && b->tend->tid == r->tid) b->tend++;
  }
  tcount = b->tend > b->tcols ? b->tend[-1].col + 1 : 0;
  if (r->klen != b->pklen) w->head |= SX_RH_KLEN;
  if (b->pstamp == SIZE_MAX ||
      w->rst != b->pstamp + ((b->cflags & SX_CF_SNEXT) ? 1 : 0))
    w->head |= SX_RH_STAMP;
  if (r->cl != 1) w->head |= SX_RH_CL;
  /* (c0 is NULL only for a delta without columns, where ncols is 0.) */
  if (r->ncols && (r->cl & 1) && c0) {
    w->cst = sx_stamp_find(b->st, b->nst, c0[0].site, c0[0].hlc);
    if (c0[0].bhlc)
      w->bst = sx_stamp_find(b->st, b->nst, c0[0].bsite, c0[0].bhlc);
    if (r->ncols != tcount) all = 0;
    for (j = 0; j < r->ncols; j++) {
      const sx_dcol *c = &c0[j];
      if (c->col != j) all = 0;
      if (c->v.type == SYNC_NULL || c->hlc != c0[0].hlc ||
          c->site != c0[0].site || c->bhlc != c0[0].bhlc ||
          (c->bhlc && c->bsite != c0[0].bsite))
        w->ctl = 1;
    }
    if (w->cst != w->rst) w->head |= SX_RH_CST;
    if (w->bst != SIZE_MAX) w->head |= SX_RH_BASE;
    if (!all) w->head |= SX_RH_PART;
    if (w->ctl) w->head |= SX_RH_CTL;
  } else if (r->cl & 1) {
    w->head |= SX_RH_PART; /* a live row with no column to send */
  }
}

/* The columns of live row r: the column list, the shared stamps, then
 * per column its control varint (SX_RH_CTL) and value. */
static unsigned char *sx_enc_cols(sx_ebody *b, const sx_drow *r,
                                  const sx_erow *w, unsigned char *p) {
  const sx_dcol *c0 = b->d->cols ? b->d->cols + r->col0 : NULL;
  size_t j;
  if (w->head & SX_RH_PART) {
    unsigned prev = 0;
    p = sx_wv(p, r->ncols);
    /* c0 is NULL only for a delta without columns (ncols 0 then). */
    for (j = 0; j < r->ncols; j++) {
      p = sx_wv(p, c0[j].col - (j ? prev + 1 : 0)); /* NOLINT */
      prev = c0[j].col;
    }
  }
  if (w->head & SX_RH_CST) p = sx_wv(p, w->cst);
  if (w->head & SX_RH_BASE) p = sx_wv(p, w->bst);
  for (j = 0; j < r->ncols; j++) {
    const sx_dcol *c = &c0[j];
    sx_encol *ec = sx_encol_find(b->tcols, (size_t)(b->tend - b->tcols),
                                 r->tid, c->col); /* NOLINT: as above */
    if (w->ctl) {
      size_t s = sx_stamp_find(b->st, b->nst, c->site, c->hlc);
      size_t bs =
          c->bhlc ? sx_stamp_find(b->st, b->nst, c->bsite, c->bhlc) : SIZE_MAX;
      unsigned cc = 0;
      if (c->v.type == SYNC_NULL) cc |= SX_CC_NULL;
      if (s != w->cst) cc |= SX_CC_STAMP;
      if (bs != w->bst) cc |= SX_CC_BASE;
      p = sx_wv(p, cc);
      if (cc & SX_CC_STAMP) p = sx_wv(p, s);
      if (cc & SX_CC_BASE) p = sx_wv(p, bs == SIZE_MAX ? 0 : bs + 1);
      if (cc & SX_CC_NULL) continue;
    }
    p = sx_wvalue(p, ec, b->d, c);
  }
  return p;
}

/* One row: head, table, key as a suffix of the previous key, stamp,
 * causal length, columns. */
static void sx_enc_row(sx_ebody *b, const sx_drow *r) {
  const unsigned char *key = b->d->arena.p + r->koff;
  unsigned char *p = b->p;
  size_t shared = 0;
  sx_erow w;
  sx_enc_row_plan(b, r, &w);
  {
    size_t lim = r->klen < b->pklen ? r->klen : b->pklen;
    while (shared < lim && key[shared] == b->pkey[shared]) shared++;
  }
  p = sx_wv(p, w.head);
  if (w.head & SX_RH_TABLE) p = sx_wv(p, r->tid);
  p = sx_wv(p, shared);
  if (w.head & SX_RH_KLEN) p = sx_wv(p, r->klen);
  memcpy(p, key + shared, r->klen - shared);
  p += r->klen - shared;
  if (w.head & SX_RH_STAMP) p = sx_wv(p, w.rst);
  if (w.head & SX_RH_CL) p = sx_wv(p, r->cl);
  if (r->cl & 1) p = sx_enc_cols(b, r, &w, p);
  b->p = p;
  b->ptid = r->tid;
  b->pkey = key;
  b->pklen = r->klen;
  b->pstamp = w.rst;
}

/* Stage 6: the rows, in (table, key) order. */
static int sx_enc_rows(sx_ebody *b) {
  size_t i;
  int rc;
  b->p = sx_wv(b->p, b->d->nrows);
  b->ptid = SX_NONE;
  b->pstamp = SIZE_MAX;
  for (i = 0; i < b->d->nrows; i++) {
    const sx_drow *r = &b->d->rows[b->e->order[i]];
    if ((rc = sx_enc_room(b, sx_row_bound(b->d, r)))) return rc;
    sx_enc_row(b, r);
  }
  return 0;
}

/* Stage 7 (minor 1): the chunk's history section. */
static int sx_enc_history(sx_ebody *b) {
  const sync_delta *d = b->d;
  unsigned char *p;
  size_t i;
  int rc;
  if ((rc = sx_enc_room(b, 1 + 8 + 2 * SX_VARINT_MAX +
                               (size_t)d->ngccl * 2 * SX_VARINT_MAX)))
    return rc;
  p = b->p;
  if (b->cx) {
    /* Major 3: the complete flag is a chunk flag; the mark only when it
     * is not the context's; the causal lengths only when there are. */
    if (b->cflags & SX_CF_MARK) {
      sx_put_le64(p, d->mark.id);
      p = sx_wv(p + 8, d->mark.start);
    }
    if (b->cflags & SX_CF_GCCL) p = sx_wv(p, d->ngccl);
    for (i = 0; i < d->ngccl; i++) {
      p = sx_wv(p, d->gccl[i].tid);
      p = sx_wv(p, d->gccl[i].cl);
    }
    b->p = p;
    return 0;
  }
  *p++ = d->complete ? 1 : 0;
  sx_put_le64(p, d->mark.id);
  p += 8;
  p = sx_wv(p, d->mark.start);
  p = sx_wv(p, d->ngccl);
  for (i = 0; i < d->ngccl; i++) {
    p = sx_wv(p, d->gccl[i].tid);
    p = sx_wv(p, d->gccl[i].cl);
  }
  b->p = p;
  return 0;
}

/* One exit marker whose key shares its first shared bytes with the
 * previous exit's. */
static unsigned char *sx_enc_exit(unsigned char *p, const sync_delta *d,
                                  const sx_drow *x, size_t shared) {
  size_t j;
  unsigned prev = 0;
  p = sx_wv(p, x->tid);
  p = sx_wv(p, shared);
  p = sx_wv(p, x->klen - shared);
  memcpy(p, d->arena.p + x->koff + shared, x->klen - shared);
  p += x->klen - shared;
  p = sx_wv(p, x->cl);
  p = sx_wv(p, x->clsite);
  p = sx_wv(p, x->clhlc);
  p = sx_wv(p, x->ncols);
  for (j = 0; j < x->ncols; j++) {
    const sx_dcol *c = &d->xcols[x->col0 + j];
    p = sx_wv(p, c->col - (j ? prev + 1 : 0));
    prev = c->col;
    p = sx_wv(p, c->site);
    p = sx_wv(p, c->hlc);
  }
  return p;
}

/* Stage 8 (minor 2): the scope section and the exit markers. */
static int sx_enc_exits(sx_ebody *b) {
  const sync_delta *d = b->d;
  size_t need = SX_SCOPE_MAX + SX_VARINT_MAX, pklen = 0, i;
  const unsigned char *pkey = NULL;
  unsigned ptid = 0;
  int rc;
  for (i = 0; i < d->nx; i++)
    need += 6 * SX_VARINT_MAX + d->xrows[i].klen +
            d->xrows[i].ncols * 3 * SX_VARINT_MAX;
  if ((rc = sx_enc_room(b, need))) return rc;
  /* Exits are cut in log order, like rows: sorted here. */
  sx_free(&b->e->al, b->sr);
  if ((rc = sx_enc_sortrows(&b->e->al, d, d->xrows, d->nx, &b->sr))) return rc;
  if (!b->cx || (b->cflags & SX_CF_SCOPE)) b->p = sx_wscope(b->p, &d->scope);
  if (!b->cx || (b->cflags & SX_CF_EXITS)) b->p = sx_wv(b->p, d->nx);
  for (i = 0; i < d->nx; i++) {
    const sx_drow *x = &d->xrows[b->sr[i].idx];
    const unsigned char *key = d->arena.p + x->koff;
    size_t shared = 0;
    if (i && (x->tid < ptid ||
              (x->tid == ptid && sx_keycmp(key, x->klen, pkey, pklen) <= 0)))
      return SYNC_EINVAL; /* exits out of order */
    if (i && x->tid == ptid) {
      size_t lim = x->klen < pklen ? x->klen : pklen;
      while (shared < lim && key[shared] == pkey[shared]) shared++;
    }
    b->p = sx_enc_exit(b->p, d, x, shared);
    ptid = x->tid;
    pkey = key;
    pklen = x->klen;
  }
  return 0;
}

/* Stage 9 (minor 3): the renewal records. */
static int sx_enc_renewals(sx_ebody *b) {
  const sync_delta *d = b->d;
  size_t i;
  int rc;
  if ((rc = sx_enc_room(b, (1 + 2 * d->nrenew) * SX_VARINT_MAX))) return rc;
  if (!b->cx || (b->cflags & SX_CF_RENEW)) b->p = sx_wv(b->p, d->nrenew);
  for (i = 0; i < d->nrenew; i++) {
    if (d->renew[i].site == 0 || d->renew[i].site >= d->nsites ||
        (i && d->renew[i].site <= d->renew[i - 1].site))
      return SYNC_EINVAL;
    b->p = sx_wv(b->p, d->renew[i].site);
    b->p = sx_wv(b->p, d->renew[i].held);
  }
  return 0;
}

/* Stage 10 (minor 4): the mark's lineage.  Written only when the chunk
 * has one (the frame is minor 3 otherwise). */
static int sx_enc_lineage(sx_ebody *b) {
  int rc;
  if (!b->d->lineage.n) return 0;
  if ((rc = sx_enc_room(b, SX_LINEAGE_WMAX))) return rc;
  b->p = sx_wlineage(b->p, &b->d->lineage);
  return 0;
}

/* The fold records (frame flag FOLDS; session chunk flag FOLDS): var F,
 * then per record the retired site's id, var heir site index, var HLC,
 * var held; sorted by site id then heir index. */
static int sx_enc_folds(sx_ebody *b) {
  const sync_delta *d = b->d;
  size_t i;
  int rc;
  if (!d->nfold) return 0;
  if ((rc = sx_enc_room(b, SX_VARINT_MAX +
                               d->nfold * (SX_SITE_LEN + 3 * SX_VARINT_MAX))))
    return rc;
  b->p = sx_wv(b->p, d->nfold);
  for (i = 0; i < d->nfold; i++) {
    const sx_dfold *f = &d->fold[i];
    if (f->heir >= d->nsites || !f->hlc ||
        !memcmp(f->site, d->sites[f->heir], SX_SITE_LEN) ||
        (i && (memcmp(f[-1].site, f->site, SX_SITE_LEN) > 0 ||
               (!memcmp(f[-1].site, f->site, SX_SITE_LEN) &&
                f[-1].heir >= f->heir))))
      return SYNC_EINVAL;
    memcpy(b->p, f->site, SX_SITE_LEN);
    b->p = sx_wv(b->p + SX_SITE_LEN, f->heir);
    b->p = sx_wv(b->p, f->hlc);
    b->p = sx_wv(b->p, f->held);
  }
  return 0;
}

/* Write the body of chunk d into e->body: the stages in frame order. */
static int sx_encode_body(sync_encoder *e, sx_fctx *cx, const sync_delta *d) {
  sx_ebody b;
  size_t toff = 0, tlen = 0;
  int rc;
  memset(&b, 0, sizeof b);
  b.e = e;
  b.d = d;
  b.cx = cx;
  rc = sx_enc_order(&b);
  if (!rc) rc = sx_enc_tally(&b);
  if (!rc) rc = sx_choose(e, d, b.nec, cx != NULL);
  if (!rc) {
    e->body.len = 0;
    /* A session frame may spend a little more per site (a varint of
     * index, another for its vector entry's escape). */
    if (cx) b.bound += ((size_t)d->nsites + 1) * 4 * SX_VARINT_MAX;
    rc = sx_buf_reserve(&e->body, b.bound);
  }
  if (!rc && cx) {
    b.p = e->body.p;
    rc = sx_enc2_head(&b);
    if (!rc) {
      sx_enc_stamps(&b);
      sx_enc2_vector(&b);
      toff = (size_t)(b.p - e->body.p);
      if (!(b.cflags & SX_CF_TABLES)) sx_enc_tables(&b);
      tlen = (size_t)(b.p - e->body.p) - toff;
      rc = sx_enc_rows(&b);
    }
  } else if (!rc) {
    /* Up to the rows, the body fits the bound just reserved. */
    b.p = e->body.p;
    sx_enc_head(&b);
    sx_enc_stamps(&b);
    sx_enc_tables(&b);
    rc = sx_enc_rows(&b);
  }
  if (!rc) rc = sx_enc_history(&b);
  if (!rc) rc = sx_enc_exits(&b);
  if (!rc) rc = sx_enc_renewals(&b);
  if (!rc) rc = sx_enc_lineage(&b);
  if (!rc) rc = sx_enc_folds(&b);
  if (!rc) {
    e->body.len = (size_t)(b.p - e->body.p);
    if (SX_NEVER(e->body.len > e->body.cap)) rc = SYNC_EINVAL;
  }
  if (!rc && cx) {
    size_t i;
    for (i = 0; i < b.nst; i++)
      sx_fctx_seen_stamp(cx, d, b.st[i].site, b.st[i].hlc);
    sx_fctx_seen_vector(cx, d);
    sx_fctx_seen_frame(cx, d, d->nrows ? &d->rows[e->order[d->nrows - 1]] : NULL,
                       (b.cflags & SX_CF_TABLES) ? NULL : e->body.p + toff,
                       tlen);
  }
  sx_free(&e->al, b.sr);
  sx_free(&e->al, b.st);
  return rc;
}

/* A frame of d: standalone (major 1), or a session frame under cx. */
static int sx_encoder_begin(sync_encoder *e, sx_fctx *cx, const sync_delta *d,
                            size_t *frame_len, size_t *raw_len) {
  unsigned char head[SX_FHEAD_MAX], *p = head;
  unsigned flags = 0;
  const unsigned char *stored;
  size_t nstored, hlen;
  int rc;
  if (!e || !d) return SYNC_EINVAL;
  e->have = 0;
  e->pos = 0;
  if ((rc = sx_encode_body(e, cx, d))) return rc;
  if (e->body.len > UINT32_MAX) return SYNC_ELIMIT;
  e->raw_len = e->body.len;
  stored = e->body.p;
  nstored = e->body.len;
  e->frame.len = 0;
#ifndef SYNC_OMIT_ZSTD
  if (e->level > 0) {
    size_t bound = ZSTD_compressBound(e->body.len), n;
    flags |= SX_FF_ZSTD;
    if (e->cdict) flags |= SX_FF_DICT;
    if ((rc = sx_buf_reserve(&e->frame, SX_FHEAD_MAX + bound + SX_FSUM)))
      return rc;
    n = ZSTD_compress2(e->cctx, e->frame.p + SX_FHEAD_MAX, bound, e->body.p,
                       e->body.len);
    if (ZSTD_isError(n)) return SYNC_ENOMEM;
    if (cx && n + sx_varint_len(e->raw_len) >= e->body.len) {
      /* A small session frame that zstd cannot shrink travels raw. */
      flags = 0;
    } else {
      stored = e->frame.p + SX_FHEAD_MAX;
      nstored = n;
    }
  }
#endif
  if (cx) {
    /* The session knows what this is: one byte of major and flags. */
    *p++ = (unsigned char)(SX_FMAJOR_SESS << 4 | flags);
  } else {
    *p++ = SX_FMAGIC0;
    *p++ = 'S';
    *p++ = 'Y';
    *p++ = 'N';
    *p++ = SX_FMAJOR;
    *p++ = d->lineage.n ? SX_FMINOR : SX_FMINOR - 1;
    *p++ = (unsigned char)(flags | (d->nfold ? SX_FF_FOLDS : 0));
  }
  p = sx_wv(p, nstored);
  if (flags & SX_FF_ZSTD) p = sx_wv(p, e->raw_len);
  if (flags & SX_FF_DICT) {
    sx_put_le32(p, e->dict_id);
    p += 4;
  }
  hlen = (size_t)(p - head);
  if ((rc = sx_buf_reserve(&e->frame, SX_FHEAD_MAX + nstored + SX_FSUM)))
    return rc;
  if (flags & SX_FF_ZSTD) /* the body sits at SX_FHEAD_MAX: close the gap */
    memmove(e->frame.p + hlen, e->frame.p + SX_FHEAD_MAX, nstored);
  else
    memcpy(e->frame.p + hlen, stored, nstored);
  memcpy(e->frame.p, head, hlen);
  /* A session frame's checksum is seeded with its number in the
   * direction: a frame lost, repeated or out of order (contexts that
   * went apart) fails it. */
  sx_put_le64(e->frame.p + hlen + nstored,
              sx_hash64(e->frame.p, hlen + nstored, cx ? cx->frames : 0));
  e->frame.len = hlen + nstored + SX_FSUM;
  e->have = 1;
  if (cx) {
    cx->start = d->end;
    cx->mark = d->mark;
    cx->scope = d->scope;
    cx->frames++;
  }
  if (frame_len) *frame_len = e->frame.len;
  if (raw_len) *raw_len = e->raw_len;
  return 0;
}

SYNC_API int sync_encoder_begin(sync_encoder *e, const sync_delta *d,
                                size_t *frame_len, size_t *raw_len) {
  return sx_encoder_begin(e, NULL, d, frame_len, raw_len);
}

SYNC_PRIVATE int sx_encoder_begin_ctx(sync_encoder *e, sx_fctx *c,
                                      const sync_delta *d, size_t *frame_len,
                                      size_t *raw_len) {
  int rc;
  if (!c || c->broken) return SYNC_EINVAL;
  /* A frame not made may have moved the context half way: the session
   * ends there. */
  if ((rc = sx_encoder_begin(e, c, d, frame_len, raw_len))) c->broken = 1;
  return rc;
}

SYNC_API int64_t sync_encoder_read(sync_encoder *e, sync_outbuf *out) {
  size_t n;
  if (!e || !out || !e->have || out->pos > out->size) return SYNC_EINVAL;
  n = e->frame.len - e->pos;
  if (n > out->size - out->pos) n = out->size - out->pos;
  if (n) memcpy((unsigned char *)out->ptr + out->pos, e->frame.p + e->pos, n);
  out->pos += n;
  e->pos += n;
  return (int64_t)(e->frame.len - e->pos);
}

SYNC_API int sync_encoder_frame(const sync_encoder *e, const void **frame,
                                size_t *len) {
  if (!e || !frame || !len || !e->have) return SYNC_EINVAL;
  *frame = e->frame.p;
  *len = e->frame.len;
  return 0;
}

#else
/* The calls stay (options never change the ABI) and refuse. */
SYNC_API int sync_encoder_create(const sync_allocator *alloc,
                                 const sync_codec_opts *o,
                                 sync_encoder **out) {
  (void)alloc;
  (void)o;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  return SYNC_ENOTSUP;
}

SYNC_API void sync_encoder_free(sync_encoder *e) { (void)e; }

SYNC_API int sync_encoder_begin(sync_encoder *e, const sync_delta *d,
                                size_t *frame_len, size_t *raw_len) {
  (void)e;
  (void)d;
  (void)frame_len;
  (void)raw_len;
  return SYNC_ENOTSUP;
}

SYNC_API int64_t sync_encoder_read(sync_encoder *e, sync_outbuf *out) {
  (void)e;
  (void)out;
  return SYNC_ENOTSUP;
}

SYNC_API int sync_encoder_frame(const sync_encoder *e, const void **frame,
                                size_t *len) {
  (void)e;
  (void)frame;
  (void)len;
  return SYNC_ENOTSUP;
}

SYNC_PRIVATE int sx_encoder_begin_ctx(sync_encoder *e, sx_fctx *c,
                                      const sync_delta *d, size_t *frame_len,
                                      size_t *raw_len) {
  (void)e;
  (void)c;
  (void)d;
  (void)frame_len;
  (void)raw_len;
  return SYNC_ENOTSUP;
}
#endif /* SYNC_OMIT_ENCODER */

/* ---------------------------------------------------------------------
 * Decoder
 * ------------------------------------------------------------------- */
struct sync_decoder {
  sx_alloc al;
  size_t max_frame, max_body, max_rows;
  sx_buf in;         /* the frame being received */
  size_t need;       /* its total length once the header is known, or 0 */
  sx_buf raw;        /* decompressed body */
  uint32_t dict_id;
  size_t last_raw;   /* body bytes of the last frame decoded */
  const char *reason; /* why the last decode failed ("" when it did not) */
#ifndef SYNC_OMIT_ZSTD
  ZSTD_DCtx *dctx;
  ZSTD_DDict *ddict;
#endif
  uint64_t *stamps;   /* scratch: stamp table (hlc) */
  uint32_t *ssite;    /* and sites */
  size_t cap_stamps, cap_ssite;
  unsigned char *enc; /* scratch: column encodings per table */
  unsigned *ncols;
  int64_t *prev;      /* per (table slot, column): delta state */
  size_t cap_enc;
  sx_fctx *cx;        /* session frames (major 3): their context, for the
                         time of one sx_decoder_feed_ctx call */
};

SYNC_API int sync_decoder_create(const sync_allocator *alloc,
                                 const sync_codec_opts *o,
                                 sync_decoder **out) {
  sync_decoder *dec;
  sx_alloc al;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (sx_alloc_from(alloc, &al)) return SYNC_EINVAL;
#ifdef SYNC_OMIT_ZSTD
  if (o && o->dict) return SYNC_ENOTSUP;
#endif
  dec = (sync_decoder *)sx_malloc(&al, sizeof *dec);
  if (!dec) return SYNC_ENOMEM;
  memset(dec, 0, sizeof *dec);
  dec->reason = "";
  dec->al = al;
  dec->max_frame = o && o->max_frame ? o->max_frame : SX_DEF_MAX_FRAME;
  dec->max_body = o && o->max_body ? o->max_body : SX_DEF_MAX_BODY;
  dec->max_rows = o && o->max_rows ? o->max_rows : SX_DEF_MAX_ROWS;
  if (dec->max_frame > UINT32_MAX) dec->max_frame = UINT32_MAX;
  if (dec->max_body > UINT32_MAX) dec->max_body = UINT32_MAX;
  sx_buf_init(&dec->in, &dec->al);
  sx_buf_init(&dec->raw, &dec->al);
#ifndef SYNC_OMIT_ZSTD
  if (o && o->dict) {
    dec->ddict = ZSTD_createDDict(o->dict, o->dict_len);
    if (!dec->ddict) {
      sync_decoder_free(dec);
      return SYNC_EINVAL;
    }
    dec->dict_id = ZSTD_getDictID_fromDDict(dec->ddict);
  }
#endif
  *out = dec;
  return 0;
}

SYNC_API void sync_decoder_free(sync_decoder *dec) {
  sx_alloc al;
  if (!dec) return;
  al = dec->al;
#ifndef SYNC_OMIT_ZSTD
  ZSTD_freeDDict(dec->ddict);
  ZSTD_freeDCtx(dec->dctx);
#endif
  sx_buf_free(&dec->in);
  sx_buf_free(&dec->raw);
  sx_free(&al, dec->stamps);
  sx_free(&al, dec->ssite);
  sx_free(&al, dec->enc);
  sx_free(&al, dec->ncols);
  sx_free(&al, dec->prev);
  sx_free(&al, dec);
}

/* A body being decoded: the reader, the delta it fills, and what the
 * stages before the rows found (the stamp table in dec->stamps and
 * dec->ssite, the tables' slots).  Each stage returns 0 or an error; a
 * fault of the bytes is SYNC_EFORMAT with its reason in dec->reason. */
typedef struct sx_dbody {
  sync_decoder *dec;
  sx_rd r;
  sync_delta *d;
  const unsigned char *b;          /* the body: values are offsets from here */
  uint64_t nst;                    /* stamps in the table */
  size_t slot_of[SYNC_MAX_TABLES]; /* table id -> slot in dec->ncols */
  unsigned cflags;                 /* a session frame's chunk flags */
} sx_dbody;

/* What a row (or exit) leaves for the next one. */
typedef struct sx_dprev {
  uint64_t tid, stamp; /* UINT64_MAX: no row yet */
  size_t k, klen, slot;
} sx_dprev;

/* Record why the frame failed (a static string) and return rc. */
static int sx_dec_fail(sync_decoder *dec, int rc, const char *why) {
  dec->reason = why;
  return rc;
}
#define SX_BAD(s, why) sx_dec_fail((s)->dec, SYNC_EFORMAT, why)

/* Stage 1: flags, sender, receiver, schema hash, the two cursors. */
static int sx_dec_head(sx_dbody *s) {
  sync_delta *d = s->d;
  const unsigned char *q = sx_rbytes(&s->r, 1 + 2 * SX_SITE_LEN + 8);
  if (!q) return SX_BAD(s, "truncated chunk head");
  if (q[0] & ~3u) return SX_BAD(s, "unknown chunk flags");
  d->last = q[0] & 1;
  d->partial = (q[0] & 2) != 0;
  memcpy(d->sender, q + 1, SX_SITE_LEN);
  memcpy(d->receiver, q + 1 + SX_SITE_LEN, SX_SITE_LEN);
  d->schema_hash = sx_get_le64(q + 1 + 2 * SX_SITE_LEN);
  if (sx_rcursor(&s->r, &d->start)) return SX_BAD(s, "bad start cursor");
  if (sx_rcursor(&s->r, &d->end)) return SX_BAD(s, "bad end cursor");
  return 0;
}

/* Stage 2: the site table and the sender's vector over it. */
static int sx_dec_sites(sx_dbody *s) {
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  const unsigned char *q;
  uint32_t i;
  d->nsites = (uint32_t)sx_rvb(r, SX_MAX_SITES + 1);
  if (r->bad || d->nsites == 0 ||
      d->nsites > (size_t)(r->end - r->p) / (SX_SITE_LEN + 1))
    return SX_BAD(s, "bad site count");
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(&s->dec->al, (size_t)d->nsites *
                                                                 SX_SITE_LEN);
  d->vv =
      (uint64_t *)sx_malloc(&s->dec->al, (size_t)d->nsites * sizeof(uint64_t));
  if (!d->sites || !d->vv) return SYNC_ENOMEM;
  d->nvv = d->nsites;
  q = sx_rbytes(r, (size_t)d->nsites * SX_SITE_LEN);
  if (!q) return SX_BAD(s, "truncated site table");
  memcpy(d->sites, q, (size_t)d->nsites * SX_SITE_LEN);
  for (i = 0; i < d->nsites; i++) d->vv[i] = sx_rv(r);
  return r->bad ? SX_BAD(s, "truncated vector") : 0;
}

/* Major 3, stage 1: the chunk flags, what they say follows (ids, schema
 * hash, start cursor), the end cursor; the rest from the context. */
static int sx_dec2_head(sx_dbody *s) {
  sync_delta *d = s->d;
  const sx_fctx *c = s->dec->cx;
  sx_rd *r = &s->r;
  const unsigned char *q;
  uint64_t f = sx_rv(r);
  if (r->bad) return SX_BAD(s, "truncated chunk flags");
  if (f & ~(uint64_t)SX_CF_ALL) return SX_BAD(s, "unknown chunk flags");
  if ((f & SX_CF_END) && (f & SX_CF_ENDROW))
    return SX_BAD(s, "two end cursors");
  s->cflags = (unsigned)f;
  d->last = (f & SX_CF_LAST) != 0;
  d->partial = (f & SX_CF_PARTIAL) != 0;
  d->complete = (f & SX_CF_COMPLETE) != 0;
  if (f & SX_CF_IDS) {
    if (!(q = sx_rbytes(r, 2 * SX_SITE_LEN)))
      return SX_BAD(s, "truncated chunk head");
    memcpy(d->sender, q, SX_SITE_LEN);
    memcpy(d->receiver, q + SX_SITE_LEN, SX_SITE_LEN);
  } else {
    memcpy(d->sender, c->sites[0], SX_SITE_LEN);
    memcpy(d->receiver, c->sites[1], SX_SITE_LEN);
  }
  d->schema_hash = c->schema_hash;
  if (f & SX_CF_HASH) {
    if (!(q = sx_rbytes(r, 8))) return SX_BAD(s, "truncated chunk head");
    d->schema_hash = sx_get_le64(q);
  }
  d->start = c->start;
  if ((f & SX_CF_START) && sx_rcursor(r, &d->start))
    return SX_BAD(s, "bad start cursor");
  if (f & SX_CF_END) {
    if (sx_rcursor(r, &d->end)) return SX_BAD(s, "bad end cursor");
  } else if (!(f & SX_CF_ENDROW)) {
    uint64_t u = sx_rv(r);
    if (d->start.mode != SX_MODE_LOG)
      return SX_BAD(s, "end cursor as a delta from a start not in log mode");
    memset(&d->end, 0, sizeof d->end);
    d->end.mode = SX_MODE_LOG;
    if (r->bad || sx_rhdelta(r, u, d->start.version, 0, &d->end.version))
      return SX_BAD(s, "bad end cursor");
    d->end.seq = (uint32_t)sx_rvb(r, (uint64_t)UINT32_MAX + 1);
    if (r->bad) return SX_BAD(s, "bad end cursor");
  }
  d->mark = c->mark;
  d->scope = c->scope;
  return 0;
}

/* Major 3, stage 2: the chunk's sites, index 0 the sender, the others by
 * session index or in full (and then into the session's table). */
static int sx_dec2_sites(sx_dbody *s) {
  sync_delta *d = s->d;
  sx_fctx *c = s->dec->cx;
  sx_rd *r = &s->r;
  const unsigned char *q;
  uint32_t i;
  int rc;
  d->nsites = (uint32_t)sx_rvb(r, SX_MAX_SITES + 1);
  if (r->bad || d->nsites == 0 ||
      d->nsites - 1 > (size_t)(r->end - r->p))
    return SX_BAD(s, "bad site count");
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(&s->dec->al, (size_t)d->nsites *
                                                                 SX_SITE_LEN);
  d->vv =
      (uint64_t *)sx_malloc(&s->dec->al, (size_t)d->nsites * sizeof(uint64_t));
  if (!d->sites || !d->vv) return SYNC_ENOMEM;
  d->nvv = d->nsites;
  if ((rc = sx_grow(&c->al, (void **)&c->map, &c->capmap, d->nsites,
                    sizeof(uint32_t))))
    return rc;
  memcpy(d->sites[0], d->sender, SX_SITE_LEN);
  c->map[0] = (s->cflags & SX_CF_IDS) ? UINT32_MAX : 0;
  for (i = 1; i < d->nsites; i++) {
    uint64_t ref = sx_rv(r);
    if (r->bad) return SX_BAD(s, "truncated site table");
    if (ref == 0) {
      if (!(q = sx_rbytes(r, SX_SITE_LEN)))
        return SX_BAD(s, "truncated site table");
      memcpy(d->sites[i], q, SX_SITE_LEN);
      c->map[i] = UINT32_MAX;
      if (c->nsites < SX_FCTX_SITES) {
        c->map[i] = (uint32_t)c->nsites;
        if ((rc = sx_fctx_add(c, q))) return rc;
      }
    } else if (ref >= c->nsites) {
      return SX_BAD(s, "site index past the session's site table");
    } else {
      c->map[i] = (uint32_t)ref;
      memcpy(d->sites[i], c->sites[ref], SX_SITE_LEN);
    }
  }
  return 0;
}

/* Major 3, after the stamps: the sender's vector, each entry against the
 * largest stamp of its site in the chunk, or the requester's entry. */
static int sx_dec2_vector(sx_dbody *s) {
  sync_decoder *dec = s->dec;
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  uint64_t g = 0;
  uint32_t i;
  for (i = 0; i < d->nsites; i++) {
    uint64_t u = sx_rv(r), mx = 0;
    if (r->bad) return SX_BAD(s, "truncated vector");
    while (g < s->nst && dec->ssite[g] < i) g++;
    if (g < s->nst && dec->ssite[g] == i) {
      while (g + 1 < s->nst && dec->ssite[g + 1] == i) g++;
      mx = dec->stamps[g];
    }
    d->vv[i] = 0;
    if (u && sx_rhdelta(r, u, sx_fctx_vref(dec->cx, d, i, mx), 1, &d->vv[i]))
      return SX_BAD(s, "vector entry overflows");
  }
  return r->bad ? SX_BAD(s, "truncated vector") : 0;
}

/* Stage 3: the stamp table, in groups of one site, increasing. */
static int sx_dec_stamps(sx_dbody *s) {
  sync_decoder *dec = s->dec;
  sx_rd *r = &s->r;
  uint64_t ng = sx_rvb(r, (uint64_t)s->d->nsites + 1), psite = 0, i, j, pg;
  int rc;
  if (r->bad) return SX_BAD(s, "bad stamp group count");
  for (i = 0; i < ng; i++) {
    uint64_t site = sx_rv(r), cnt = sx_rv(r), h;
    if (r->bad) return SX_BAD(s, "truncated stamp table");
    if (site >= s->d->nsites)
      return SX_BAD(s, "site index past the site table");
    /* Every stamp after a group's first costs a byte at least. */
    if (cnt == 0 || cnt - 1 > (uint64_t)(r->end - r->p))
      return SX_BAD(s, "bad stamp count");
    if (i && site <= psite) return SX_BAD(s, "stamp groups out of order");
    if ((rc = sx_grow(&dec->al, (void **)&dec->stamps, &dec->cap_stamps,
                      (size_t)(s->nst + cnt), sizeof(uint64_t))) ||
        (rc = sx_grow(&dec->al, (void **)&dec->ssite, &dec->cap_ssite,
                      (size_t)(s->nst + cnt), sizeof(uint32_t))))
      return rc;
    psite = site;
    h = sx_rv(r);
    /* A session frame: the first HLC against the requester's entry. */
    if (dec->cx && !r->bad &&
        sx_rhdelta(r, h, sx_fctx_sref(dec->cx, s->d, (size_t)site), 0, &h))
      return SX_BAD(s, "stamp HLC overflows");
    if (h == 0) return SX_BAD(s, "stamp with HLC 0");
    for (j = 0, pg = 0; j < cnt; j++) {
      if (j && dec->cx) {
        if (sx_rsgap(r, h, &h, &pg)) return SX_BAD(s, "stamp HLC overflows");
      } else if (j) {
        uint64_t gap = sx_rv(r);
        if (gap >= UINT64_MAX - h) return SX_BAD(s, "stamp HLC overflows");
        h += gap + 1;
      }
      dec->stamps[s->nst] = h;
      dec->ssite[s->nst++] = (uint32_t)site;
    }
    if (r->bad) return SX_BAD(s, "truncated stamp table");
  }
  return 0;
}

/* The tables' first pass: ids increasing, and the count of their column
 * encodings in *total, to allocate the arrays once. */
/* A session frame's table in the schema form: its column count in the
 * sender's schema (0 when the schema lacks the table). */
static unsigned sx_dec2_schema_cols(const sx_fctx *c, unsigned tid) {
  unsigned n = 0;
  if (!c->coltype) return 0;
  while (n < SYNC_MAX_COLUMNS && c->coltype(c->coltype_cx, tid, n) > 0) n++;
  return n;
}

/* A table's column count: a varint, in a session frame 0 for the schema
 * form (*schema set) or the count + 1. */
static uint64_t sx_dec_table_ncols(sx_dbody *s, uint64_t tid, int *schema) {
  sx_rd *r = &s->r;
  uint64_t nc;
  *schema = 0;
  if (!s->dec->cx) return sx_rvb(r, SYNC_MAX_COLUMNS + 1);
  nc = sx_rvb(r, SYNC_MAX_COLUMNS + 2);
  if (r->bad) return 0;
  if (nc) return nc - 1;
  *schema = 1;
  nc = (s->cflags & SX_CF_HASH)
           ? 0 /* the form names the schema of the context's hash */
           : sx_dec2_schema_cols(s->dec->cx, (unsigned)tid);
  if (!nc) r->bad = 1;
  return nc;
}

static int sx_dec_tables_size(sx_dbody *s, uint64_t ntab, size_t *total) {
  sx_rd *r = &s->r;
  uint64_t ptid = 0, i;
  for (i = 0; i < ntab; i++) {
    uint64_t tid = sx_rvb(r, SYNC_MAX_TABLES), nc;
    int schema;
    if (r->bad || (i && tid <= ptid))
      return SX_BAD(s, "bad table id in the table section");
    ptid = tid;
    nc = sx_dec_table_ncols(s, tid, &schema);
    if (r->bad)
      return SX_BAD(s, s->dec->cx ? "bad column count or a table the "
                                    "sender's schema lacks"
                                  : "truncated table section");
    if (!schema && !sx_rbytes(r, (size_t)nc))
      return SX_BAD(s, "truncated table section");
    *total += (size_t)nc;
  }
  return 0;
}

/* Room in dec for total column encodings and the tables' slots. */
static int sx_dec_tables_room(sync_decoder *dec, size_t total) {
  if (dec->cap_enc < total + 1) {
    sx_free(&dec->al, dec->enc);
    sx_free(&dec->al, dec->prev);
    dec->enc = (unsigned char *)sx_malloc(&dec->al, total + 1);
    dec->prev = (int64_t *)sx_malloc(&dec->al, (total + 1) * sizeof(int64_t));
    dec->cap_enc = dec->enc && dec->prev ? total + 1 : 0;
    if (!dec->cap_enc) return SYNC_ENOMEM;
  }
  if (!dec->ncols) {
    dec->ncols =
        (unsigned *)sx_malloc(&dec->al, 2 * SYNC_MAX_TABLES * sizeof(unsigned));
    if (!dec->ncols) return SYNC_ENOMEM;
  }
  return 0;
}

/* Stage 4: the tables, each with one encoding byte per column. */
static int sx_dec_tables(sx_dbody *s) {
  sync_decoder *dec = s->dec;
  sx_rd *r = &s->r;
  uint64_t ntab = sx_rvb(r, SYNC_MAX_TABLES + 1), i, j;
  const unsigned char *save;
  size_t total = 0;
  int rc;
  if (r->bad) return SX_BAD(s, "bad table count");
  save = r->p;
  for (i = 0; i < SYNC_MAX_TABLES; i++) s->slot_of[i] = SIZE_MAX;
  if ((rc = sx_dec_tables_size(s, ntab, &total)) ||
      (rc = sx_dec_tables_room(dec, total)))
    return rc;
  r->p = save;
  total = 0;
  for (i = 0; i < ntab; i++) {
    uint64_t tid = sx_rv(r), nc;
    int schema;
    const unsigned char *e;
    nc = sx_dec_table_ncols(s, tid, &schema);
    e = schema ? NULL : sx_rbytes(r, (size_t)nc);
    s->slot_of[tid] = (size_t)i;
    dec->ncols[2 * i] = (unsigned)nc;
    dec->ncols[2 * i + 1] = (unsigned)total; /* first encoding */
    if (schema) {
      /* Plain, with the types of the sender's schema. */
      for (j = 0; j < nc; j++) {
        int t = dec->cx->coltype(dec->cx->coltype_cx, (unsigned)tid,
                                 (unsigned)j);
        dec->enc[total + j] =
            (unsigned char)(t > 0 && (t <= SYNC_BLOB || t == SYNC_COUNTER) ? t : 0);
        dec->prev[total + j] = 0;
      }
      total += (size_t)nc;
      continue;
    }
    for (j = 0; j < nc; j++) {
      unsigned t = e[j] & 7u, m = e[j] >> 3;
      if ((t > SYNC_BLOB && t != SYNC_COUNTER) || (t == SYNC_NULL && m) ||
          (t == SYNC_COUNTER && m) ||
          (t == SYNC_INTEGER && m > SX_ENC_DELTA) ||
          (t == SYNC_REAL && m > SX_DEC_SCALES) ||
          ((t == SYNC_TEXT || t == SYNC_BLOB) &&
           m > (dec->cx ? SX_ENC_REP : SX_ENC_PLAIN)))
        return SX_BAD(s, "unknown column encoding");
      dec->enc[total + j] = e[j];
      dec->prev[total + j] = 0;
    }
    total += (size_t)nc;
  }
  return 0;
}

/* A row's key: shared bytes of the previous key, then its own suffix,
 * rebuilt in the arena; keys strictly increase within a table. */
static int sx_dec_key(sx_dbody *s, const sx_dprev *pv, uint64_t head,
                      sx_drow *row) {
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  uint64_t shared = sx_rvb(r, (uint64_t)pv->klen + 1), klen;
  const unsigned char *suffix;
  int rc;
  klen = (head & SX_RH_KLEN) ? sx_rvb(r, SYNC_MAX_KEY + 1) : pv->klen;
  if (r->bad || klen == 0 || shared > klen) return SX_BAD(s, "bad row key");
  suffix = sx_rbytes(r, (size_t)(klen - shared));
  if (!suffix) return SX_BAD(s, "truncated row key");
  if ((rc = sx_buf_reserve(&d->arena, (size_t)klen))) return rc;
  row->koff = d->arena.len;
  row->klen = (size_t)klen;
  if (shared)
    memcpy(d->arena.p + row->koff, d->arena.p + pv->k, (size_t)shared);
  memcpy(d->arena.p + row->koff + shared, suffix, (size_t)(klen - shared));
  d->arena.len += (size_t)klen;
  if (!(head & SX_RH_TABLE) &&
      sx_keycmp(d->arena.p + pv->k, pv->klen, d->arena.p + row->koff,
                row->klen) >= 0)
    return SX_BAD(s, "row keys out of order");
  return 0;
}

/* One value of column encoding e (type | mode << 3) into c. */
static int sx_dec_value(sx_dbody *s, sx_dcol *c, unsigned e, int64_t *prev) {
  sx_rd *r = &s->r;
  unsigned t = e & 7u, m = e >> 3;
  const unsigned char *x;
  c->v = sync_null();
  c->v.type = (int)t;
  switch (t) {
  case SYNC_INTEGER:
    if (m == SX_ENC_FIXED) {
      if (!(x = sx_rbytes(r, 8))) return SX_BAD(s, "truncated value");
      c->v.i = (int64_t)sx_get_le64(x);
    } else if (m == SX_ENC_DELTA) {
      *prev = (int64_t)((uint64_t)*prev + (uint64_t)sx_unzigzag(sx_rv(r)));
      c->v.i = *prev;
    } else {
      c->v.i = sx_unzigzag(sx_rv(r));
    }
    break;
  case SYNC_REAL:
    if (m >= SX_ENC_DEC) {
      uint64_t u = sx_rv(r);
      if (u) {
        int64_t dm = sx_unzigzag(u - 1), mm;
        if (dm > SX_MANT_MAX || dm < -SX_MANT_MAX)
          return SX_BAD(s, "decimal mantissa out of range");
        mm = *prev + dm;
        if (mm > SX_MANT_MAX || mm < -SX_MANT_MAX)
          return SX_BAD(s, "decimal mantissa out of range");
        *prev = mm;
        {
          volatile double v = (double)mm / sx_p10[m - SX_ENC_DEC];
          c->v.r = v;
        }
        break;
      }
    }
    if (!(x = sx_rbytes(r, 8))) return SX_BAD(s, "truncated value");
    c->v.r = sx_bits_double(sx_get_le64(x));
    break;
  case SYNC_TEXT:
  case SYNC_BLOB: {
    uint64_t len;
    if (m == SX_ENC_REP) {
      /* prev: 1 + the index in d->cols of this column's last value. */
      uint64_t u = sx_rvb(r, (uint64_t)SYNC_MAX_VALUE + 2);
      size_t last = (size_t)*prev;
      *prev = (int64_t)(c - s->d->cols) + 1;
      if (r->bad) return SX_BAD(s, "bad value length");
      if (u == 0) {
        if (!last) return SX_BAD(s, "a repeat of no value");
        c->v.len = s->d->cols[last - 1].v.len;
        c->v.data = s->d->cols[last - 1].v.data;
        break;
      }
      len = u - 1;
    } else {
      len = sx_rvb(r, (uint64_t)SYNC_MAX_VALUE + 1);
    }
    if (!(x = sx_rbytes(r, (size_t)len))) return SX_BAD(s, "bad value length");
    c->v.len = (size_t)len;
    /* An offset into the arena, as chunks keep their values. */
    c->v.data = (const void *)(uintptr_t)(size_t)(x - s->b); /* NOLINT(performance-no-int-to-ptr) */
    break;
  }
  case SYNC_COUNTER: {
    /* At most one contribution per site of the frame, each site once
     * (increasing), each with an HLC in (0, the column's stamp]: the
     * column's stamp is its newest add's, so nothing a counter brings
     * is newer than what the row's stamps show. */
    uint64_t n = sx_rvb(r, (uint64_t)s->d->nsites + 1), i, site = 0;
    size_t off;
    sx_ctr *a;
    int rc;
    if (r->bad || n == 0 || n > (uint64_t)(r->end - r->p) / 4)
      return SX_BAD(s, "bad counter contribution count");
    off = SX_CTR_ALIGN(s->d->arena.len);
    if ((rc = sx_buf_reserve(&s->d->arena, off - s->d->arena.len +
                                               (size_t)n * sizeof(sx_ctr))))
      return rc;
    a = (sx_ctr *)(void *)(s->d->arena.p + off);
    for (i = 0; i < n; i++) {
      uint64_t gap = sx_rv(r);
      if (r->bad || gap >= s->d->nsites ||
          (site = (i ? site + 1 : 0) + gap) >= s->d->nsites)
        return SX_BAD(s, "bad counter site");
      a[i].site = (uint32_t)site;
      a[i].p = sx_rv(r);
      a[i].n = sx_rv(r);
      a[i].hlc = sx_rv(r);
      if (r->bad) return SX_BAD(s, "truncated counter");
      if (a[i].hlc == 0 || a[i].hlc > c->hlc)
        return SX_BAD(s, "counter contribution stamp out of range");
    }
    s->d->arena.len = off + (size_t)n * sizeof(sx_ctr);
    c->v.data = (const void *)(uintptr_t)off; /* NOLINT(performance-no-int-to-ptr) */
    c->v.len = (size_t)n;
    break;
  }
  default: /* a column the table section says no row carries */
    return SX_BAD(s, "value in a column the table section leaves out");
  }
  return r->bad ? SX_BAD(s, "truncated value") : 0;
}

/* One column of a row: its control varint (SX_RH_CTL), stamps, value. */
static int sx_dec_col(sx_dbody *s, uint64_t head, sx_dcol *c, unsigned first,
                      uint64_t cst, uint64_t bst) {
  sync_decoder *dec = s->dec;
  sx_rd *r = &s->r;
  uint64_t st = cst, bs = bst;
  int isnull = 0;
  if (head & SX_RH_CTL) {
    uint64_t cc = sx_rv(r);
    if (cc & ~(uint64_t)(SX_CC_NULL | SX_CC_STAMP | SX_CC_BASE))
      return SX_BAD(s, "unknown column control bits");
    if (cc & SX_CC_STAMP) st = sx_rvb(r, s->nst);
    if (cc & SX_CC_BASE) {
      bs = sx_rvb(r, s->nst + 1);
      bs = bs ? bs - 1 : UINT64_MAX;
    }
    isnull = (cc & SX_CC_NULL) != 0;
    if (r->bad) return SX_BAD(s, "bad column stamps");
  }
  c->hlc = dec->stamps[st];
  c->site = dec->ssite[st];
  c->bhlc = bs == UINT64_MAX ? 0 : dec->stamps[bs];
  c->bsite = bs == UINT64_MAX ? 0 : dec->ssite[bs];
  if (isnull) {
    c->v = sync_null();
    return 0;
  }
  return sx_dec_value(s, c, dec->enc[first + c->col],
                      &dec->prev[first + c->col]);
}

/* The columns of a live row: which ones (all of its table's, or a list),
 * their shared stamps, then each column. */
static int sx_dec_cols(sx_dbody *s, const sx_dprev *pv, uint64_t head,
                       sx_drow *row) {
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  unsigned ncols = s->dec->ncols[2 * pv->slot];
  unsigned first = s->dec->ncols[2 * pv->slot + 1];
  size_t ncol_row = ncols, k;
  uint64_t cst, bst = UINT64_MAX;
  int rc;
  if (head & SX_RH_PART) ncol_row = (size_t)sx_rvb(r, (uint64_t)ncols + 1);
  if (r->bad) return SX_BAD(s, "bad column count");
  if ((rc = sx_grow(&s->dec->al, (void **)&d->cols, &d->capcols,
                    d->ncols + ncol_row, sizeof(sx_dcol))))
    return rc;
  if (head & SX_RH_PART) {
    uint64_t col = 0;
    for (k = 0; k < ncol_row; k++) {
      uint64_t gap = sx_rvb(r, ncols);
      col = k ? col + 1 + gap : gap;
      if (r->bad || col >= ncols) return SX_BAD(s, "column past the table's");
      d->cols[d->ncols + k].col = (unsigned)col;
    }
  } else {
    for (k = 0; k < ncol_row; k++) d->cols[d->ncols + k].col = (unsigned)k;
  }
  cst = (head & SX_RH_CST) ? sx_rvb(r, s->nst) : pv->stamp;
  if (head & SX_RH_BASE) bst = sx_rvb(r, s->nst);
  if (r->bad) return SX_BAD(s, "bad column stamps");
  for (k = 0; k < ncol_row; k++)
    if ((rc = sx_dec_col(s, head, &d->cols[d->ncols + k], first, cst, bst)))
      return rc;
  d->ncols += ncol_row;
  row->ncols = ncol_row;
  return 0;
}

/* One row: head bits, table, key, stamp, causal length, columns. */
static int sx_dec_row(sx_dbody *s, sx_dprev *pv, sx_drow *row) {
  sx_rd *r = &s->r;
  const sx_fctx *c = s->dec->cx;
  uint64_t head = sx_rv(r);
  int rc, first = pv->tid == UINT64_MAX;
  if (r->bad || head > 0xff) return SX_BAD(s, "bad row head");
  if (head & SX_RH_TABLE) {
    uint64_t tid = sx_rvb(r, SYNC_MAX_TABLES);
    if (r->bad || s->slot_of[tid] == SIZE_MAX)
      return SX_BAD(s, "row of a table the table section leaves out");
    if (pv->tid != UINT64_MAX && tid <= pv->tid)
      return SX_BAD(s, "row tables out of order");
    pv->tid = tid;
    pv->slot = s->slot_of[tid];
    pv->klen = 0;
    if (first && c && c->klen && c->ktid == tid) {
      /* A session frame's first row shares bytes of the key the
       * previous frame ended with: that key goes into the arena. */
      if ((rc = sx_buf_reserve(&s->d->arena, c->klen))) return rc;
      pv->k = s->d->arena.len;
      pv->klen = c->klen;
      memcpy(s->d->arena.p + pv->k, c->key, c->klen);
      s->d->arena.len += c->klen;
    }
  } else if (pv->tid == UINT64_MAX) {
    return SX_BAD(s, "first row names no table");
  }
  if ((rc = sx_dec_key(s, pv, head, row))) return rc;
  row->tid = (unsigned)pv->tid;
  if (head & SX_RH_STAMP) {
    uint64_t st = sx_rv(r);
    if (r->bad) return SX_BAD(s, "truncated row");
    if (st >= s->nst) return SX_BAD(s, "stamp index past the stamp table");
    pv->stamp = st;
  } else if (pv->stamp == UINT64_MAX) {
    return SX_BAD(s, "first row has no stamp");
  } else if (s->cflags & SX_CF_SNEXT) {
    if (pv->stamp + 1 >= s->nst)
      return SX_BAD(s, "stamp index past the stamp table");
    pv->stamp++;
  }
  row->cl = (head & SX_RH_CL) ? sx_rv(r) : 1;
  if (r->bad || row->cl == 0) return SX_BAD(s, "bad causal length");
  row->clhlc = s->dec->stamps[pv->stamp];
  row->clsite = s->dec->ssite[pv->stamp];
  row->col0 = s->d->ncols;
  row->ncols = 0;
  if (!(row->cl & 1)) {
    if (head & (SX_RH_PART | SX_RH_CST | SX_RH_BASE | SX_RH_CTL))
      return SX_BAD(s, "column bits on a tombstone");
  } else if ((rc = sx_dec_cols(s, pv, head, row))) {
    return rc;
  }
  pv->k = row->koff;
  pv->klen = row->klen;
  s->d->nrows++;
  return 0;
}

/* Stage 5: the rows, each taking two bytes at least. */
static int sx_dec_rows(sx_dbody *s) {
  sync_decoder *dec = s->dec;
  sx_rd *r = &s->r;
  uint64_t nr = sx_rv(r);
  sx_dprev pv;
  size_t i;
  int rc;
  if (r->bad) return SX_BAD(s, "truncated row count");
  if (nr > dec->max_rows)
    return sx_dec_fail(dec, SYNC_ELIMIT, "more rows than max_rows");
  if (nr > (uint64_t)(r->end - r->p) / 2)
    return SX_BAD(s, "more rows than the body holds");
  if (nr) {
    s->d->rows = (sx_drow *)sx_malloc(&dec->al, (size_t)nr * sizeof(sx_drow));
    if (!s->d->rows) return SYNC_ENOMEM;
    s->d->caprows = (size_t)nr;
  }
  memset(&pv, 0, sizeof pv);
  pv.tid = pv.stamp = UINT64_MAX;
  for (i = 0; i < (size_t)nr; i++)
    if ((rc = sx_dec_row(s, &pv, &s->d->rows[i]))) return rc;
  return 0;
}

/* Stage 6 (minor 1): the history section: u8 flags (1 complete), u64
 * mark id, var mark start, then the collected causal lengths. */
static int sx_dec_history(sx_dbody *s) {
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  const unsigned char *q;
  unsigned i;
  if (s->dec->cx) {
    /* Major 3: complete is a chunk flag, the mark and the causal lengths
     * come only when the flags say so. */
    if (s->cflags & SX_CF_MARK) {
      if (!(q = sx_rbytes(r, 8))) return SX_BAD(s, "bad history section");
      d->mark.id = sx_get_le64(q);
      d->mark.start = sx_rv(r);
    }
    if (s->cflags & SX_CF_GCCL)
      d->ngccl = (unsigned)sx_rvb(r, SYNC_MAX_TABLES + 1);
  } else {
    q = sx_rbytes(r, 9);
    if (!q || (q[0] & ~1u)) return SX_BAD(s, "bad history section");
    d->complete = q[0] & 1;
    d->mark.id = sx_get_le64(q + 1);
    d->mark.start = sx_rv(r);
    d->ngccl = (unsigned)sx_rvb(r, SYNC_MAX_TABLES + 1);
  }
  for (i = 0; i < d->ngccl && !r->bad; i++) {
    d->gccl[i].tid = (unsigned)sx_rvb(r, SYNC_MAX_TABLES);
    d->gccl[i].cl = sx_rvb(r, (UINT64_C(1) << 62) + 1);
    if (i && d->gccl[i].tid <= d->gccl[i - 1].tid) r->bad = 1;
  }
  return r->bad ? SX_BAD(s, "bad collected causal lengths") : 0;
}

/* One exit marker: table, key (sharing bytes only with the previous
 * exit of its table), causal length and stamp, column stamps. */
static int sx_dec_exit(sx_dbody *s, int first, sx_dprev *pv, sx_drow *x) {
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  uint64_t tid = sx_rvb(r, SYNC_MAX_TABLES), shared, rest, nc, prev = 0, j;
  const unsigned char *kb;
  int rc;
  shared = sx_rv(r);
  rest = sx_rv(r);
  if (r->bad || (!first && tid < pv->tid) ||
      ((first || tid != pv->tid) && shared) || shared > pv->klen ||
      shared + rest < 1 || shared + rest > SYNC_MAX_KEY ||
      !(kb = sx_rbytes(r, (size_t)rest)))
    return SX_BAD(s, "bad exit key");
  if ((rc = sx_buf_reserve(&d->arena, (size_t)(shared + rest)))) return rc;
  x->tid = (unsigned)tid;
  x->koff = d->arena.len;
  x->klen = (size_t)(shared + rest);
  if (shared) memcpy(d->arena.p + x->koff, d->arena.p + pv->k, (size_t)shared);
  memcpy(d->arena.p + x->koff + shared, kb, (size_t)rest);
  d->arena.len += x->klen;
  if (!first && tid == pv->tid &&
      sx_keycmp(d->arena.p + x->koff, x->klen, d->arena.p + pv->k, pv->klen) <=
          0)
    return SX_BAD(s, "exit keys out of order");
  x->cl = sx_rv(r);
  x->clsite = (uint32_t)sx_rvb(r, d->nsites);
  x->clhlc = sx_rv(r);
  nc = sx_rvb(r, SYNC_MAX_COLUMNS + 1);
  if (r->bad || !x->cl || x->cl >= (UINT64_C(1) << 62) ||
      ((x->cl & 1) == 0 && nc) || nc > (uint64_t)(r->end - r->p) / 3)
    return SX_BAD(s, "bad exit marker");
  x->col0 = d->nxc;
  x->ncols = (size_t)nc;
  if (nc && (rc = sx_grow(&s->dec->al, (void **)&d->xcols, &d->capxc,
                          d->nxc + (size_t)nc, sizeof(sx_dcol))))
    return rc;
  for (j = 0; j < nc; j++) {
    sx_dcol *c = &d->xcols[d->nxc + j];
    uint64_t gap = sx_rv(r);
    uint64_t col = j ? prev + 1 + gap : gap;
    memset(c, 0, sizeof *c);
    if (r->bad || gap >= SYNC_MAX_COLUMNS || col >= SYNC_MAX_COLUMNS)
      return SX_BAD(s, "bad exit column");
    c->col = (unsigned)col;
    c->site = (uint32_t)sx_rvb(r, d->nsites);
    c->hlc = sx_rv(r);
    c->v = sync_null();
    prev = col;
  }
  if (r->bad) return SX_BAD(s, "site index past the site table");
  d->nxc += (size_t)nc;
  pv->tid = tid;
  pv->k = x->koff;
  pv->klen = x->klen;
  return 0;
}

/* Stage 7 (minor 2): the scope section and the exit markers. */
static int sx_dec_exits(sx_dbody *s) {
  sync_decoder *dec = s->dec;
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  uint64_t nx, i;
  sx_dprev pv;
  int rc;
  if ((!dec->cx || (s->cflags & SX_CF_SCOPE)) && sx_rscope(r, &d->scope))
    return SX_BAD(s, "bad scope section");
  nx = !dec->cx || (s->cflags & SX_CF_EXITS) ? sx_rv(r) : 0;
  /* An exit takes at least 6 bytes; rows and exits share max_rows. */
  if (nx > (uint64_t)(r->end - r->p) / 6)
    return SX_BAD(s, "more exits than the body holds");
  /* (A truncated count reads as 0 and is refused as SYNC_ELIMIT.) */
  if (r->bad || nx > dec->max_rows -
                         (d->nrows < dec->max_rows ? d->nrows : dec->max_rows))
    return sx_dec_fail(dec, SYNC_ELIMIT, "more rows and exits than max_rows");
  if (nx) {
    d->xrows = (sx_drow *)sx_malloc(&dec->al, (size_t)nx * sizeof(sx_drow));
    if (!d->xrows) return SYNC_ENOMEM;
    d->capx = (size_t)nx;
  }
  memset(&pv, 0, sizeof pv);
  for (i = 0; i < nx; i++) {
    if ((rc = sx_dec_exit(s, i == 0, &pv, &d->xrows[i]))) return rc;
    d->nx++;
  }
  return 0;
}

/* Stage 8 (minor 3): the renewal records: site indexes increasing from
 * 1, each with the HLC that site's claims are void above. */
static int sx_dec_renewals(sx_dbody *s) {
  sync_delta *d = s->d;
  sx_rd *r = &s->r;
  uint64_t nr = !s->dec->cx || (s->cflags & SX_CF_RENEW) ? sx_rv(r) : 0;
  uint64_t prev = 0, i;
  if (r->bad || nr > (uint64_t)(r->end - r->p) / 2 || nr >= d->nsites)
    return SX_BAD(s, "bad renewal count");
  if (nr > SX_RENEW_MAX)
    return sx_dec_fail(s->dec, SYNC_ELIMIT,
                       "more renewal records than a chunk carries");
  if (nr) {
    d->renew =
        (sx_renew *)sx_malloc(&s->dec->al, (size_t)nr * sizeof(sx_renew));
    if (!d->renew) return SYNC_ENOMEM;
  }
  for (i = 0; i < nr; i++) {
    uint64_t site = sx_rvb(r, d->nsites);
    if (r->bad) return SX_BAD(s, "renewal site past the site table");
    if (site <= prev)
      return SX_BAD(s, i ? "renewal sites out of order"
                         : "renewal of the sender's own site");
    d->renew[i].site = (uint32_t)site;
    d->renew[i].held = sx_rv(r);
    prev = site;
  }
  if (r->bad) return SX_BAD(s, "truncated renewal section");
  d->nrenew = (size_t)nr;
  return 0;
}

/* After the last section: the fold records (see sx_enc_folds). */
static int sx_dec_folds(sx_dbody *s) {
  sx_rd *r = &s->r;
  sync_delta *d = s->d;
  uint64_t nf = sx_rv(r), i;
  if (r->bad || nf == 0) return SX_BAD(s, "bad fold record count");
  if (nf > (uint64_t)(r->end - r->p) / (SX_SITE_LEN + 2))
    return SX_BAD(s, "truncated fold section");
  d->fold = (sx_dfold *)sx_malloc(&s->dec->al, (size_t)nf * sizeof(sx_dfold));
  if (!d->fold) return SYNC_ENOMEM;
  for (i = 0; i < nf; i++) {
    sx_dfold *f = &d->fold[i];
    const unsigned char *q = sx_rbytes(r, SX_SITE_LEN);
    uint64_t heir;
    if (!q) return SX_BAD(s, "truncated fold section");
    memcpy(f->site, q, SX_SITE_LEN);
    heir = sx_rv(r);
    f->hlc = sx_rv(r);
    f->held = sx_rv(r);
    if (r->bad) return SX_BAD(s, "truncated fold section");
    if (heir >= d->nsites) return SX_BAD(s, "fold heir past the site table");
    f->heir = (uint32_t)heir;
    if (!f->hlc) return SX_BAD(s, "fold at HLC 0");
    if (!memcmp(f->site, d->sites[f->heir], SX_SITE_LEN))
      return SX_BAD(s, "a site folded into itself");
    if (i && (memcmp(f[-1].site, f->site, SX_SITE_LEN) > 0 ||
              (!memcmp(f[-1].site, f->site, SX_SITE_LEN) &&
               f[-1].heir >= f->heir)))
      return SX_BAD(s, "fold records out of order");
  }
  d->nfold = (size_t)nf;
  return 0;
}

/* Stage 9 (minor 4): the lineage of the history section's mark. */
static int sx_dec_lineage(sx_dbody *s) {
  if (sx_rlineage(&s->r, &s->d->mark, &s->d->lineage))
    return SX_BAD(s, "bad lineage section");
  return 0;
}

/* Major 3, stage 5: the tables section, or with SX_CF_TABLES the one of
 * the previous frame, read again under this frame's flags. */
static int sx_dec2_tables(sx_dbody *s) {
  sx_fctx *c = s->dec->cx;
  sx_rd body = s->r;
  int rc;
  if (!(s->cflags & SX_CF_TABLES)) return sx_dec_tables(s);
  if (!c->tlen) return SX_BAD(s, "a repeat of no tables section");
  s->r.p = c->tabs;
  s->r.end = c->tabs + c->tlen;
  s->r.bad = 0;
  rc = sx_dec_tables(s);
  if (!rc && s->r.p != s->r.end) rc = SX_BAD(s, "bad tables section");
  s->r = body;
  return rc;
}

/* Major 3, after the rows: an end cursor at the last row (SX_CF_ENDROW). */
static int sx_dec2_endrow(sx_dbody *s) {
  sync_delta *d = s->d;
  const sx_drow *r;
  if (!d->nrows || d->start.mode != SX_MODE_INITIAL)
    return SX_BAD(s, "an end cursor at no row of an initial stream");
  r = &d->rows[d->nrows - 1];
  memset(&d->end, 0, sizeof d->end);
  d->end.mode = SX_MODE_INITIAL;
  d->end.v0 = d->start.v0;
  d->end.tid = r->tid;
  d->end.klen = r->klen;
  memcpy(d->end.key, d->arena.p + r->koff, r->klen);
  return 0;
}

/* Decode the body [b, b + n) into a new delta: the stages in frame
 * order, the sections of later minors as the frame's minor has them. */
static int sx_decode_body(sync_decoder *dec, const unsigned char *b, size_t n,
                          unsigned minor, unsigned flags, sync_delta **out) {
  sx_dbody s;
  int rc;
  memset(&s, 0, sizeof s);
  s.dec = dec;
  s.b = b;
  s.r.p = b;
  s.r.end = b + n;
  s.d = sx_delta_new(&dec->al);
  if (!s.d) return SYNC_ENOMEM;
  /* The arena: the body itself (values are offsets into it), then the
   * keys as rebuilt. */
  if (!(rc = sx_buf_reserve(&s.d->arena, n + 64))) {
    memcpy(s.d->arena.p, b, n);
    s.d->arena.len = n;
    rc = dec->cx ? sx_dec2_head(&s) : sx_dec_head(&s);
  }
  if (dec->cx) {
    /* A session frame (major 3, minor 0): every section is there, the
     * optional ones as its chunk flags say. */
    const unsigned char *tabs;
    size_t tlen;
    if (!rc) rc = sx_dec2_sites(&s);
    if (!rc) rc = sx_dec_stamps(&s);
    if (!rc) rc = sx_dec2_vector(&s);
    tabs = s.r.p;
    if (!rc) rc = sx_dec2_tables(&s);
    tlen = (size_t)(s.r.p - tabs);
    if (!rc) rc = sx_dec_rows(&s);
    if (!rc && (s.cflags & SX_CF_ENDROW)) rc = sx_dec2_endrow(&s);
    if (!rc) rc = sx_dec_history(&s);
    if (!rc) rc = sx_dec_exits(&s);
    if (!rc) rc = sx_dec_renewals(&s);
    if (!rc && (s.cflags & SX_CF_LINEAGE)) rc = sx_dec_lineage(&s);
    if (!rc && (s.cflags & SX_CF_FOLDS)) rc = sx_dec_folds(&s);
    if (!rc && s.r.bad) rc = SX_BAD(&s, "truncated body");
    if (!rc && s.r.p != s.r.end)
      rc = SX_BAD(&s, "bytes after the last section");
    if (rc) {
      dec->cx->broken = 1;
    } else {
      uint64_t i;
      for (i = 0; i < s.nst; i++)
        sx_fctx_seen_stamp(dec->cx, s.d, dec->ssite[i], dec->stamps[i]);
      sx_fctx_seen_vector(dec->cx, s.d);
      sx_fctx_seen_frame(dec->cx, s.d,
                         s.d->nrows ? &s.d->rows[s.d->nrows - 1] : NULL,
                         (s.cflags & SX_CF_TABLES) ? NULL : tabs, tlen);
      dec->cx->start = s.d->end;
      dec->cx->mark = s.d->mark;
      dec->cx->scope = s.d->scope;
      dec->cx->frames++;
    }
  } else {
    if (!rc) rc = sx_dec_sites(&s);
    if (!rc) rc = sx_dec_stamps(&s);
    if (!rc) rc = sx_dec_tables(&s);
    if (!rc) rc = sx_dec_rows(&s);
    if (!rc && minor >= 1) rc = sx_dec_history(&s);
    if (!rc && minor >= 2) rc = sx_dec_exits(&s);
    if (!rc && minor >= 3) rc = sx_dec_renewals(&s);
    if (!rc && minor >= 4) rc = sx_dec_lineage(&s);
    /* Fold records follow the sections of the frame's minor; a frame of
     * a newer minor with them would put them after sections this reader
     * does not know, so it is refused. */
    if (!rc && (flags & SX_FF_FOLDS)) {
      if (minor > SX_FMINOR)
        rc = sx_dec_fail(dec, SYNC_EVERSION,
                         "fold records after sections of a newer minor");
      else
        rc = sx_dec_folds(&s);
    }
    /* A newer minor version may append sections a reader skips. */
    if (!rc && s.r.bad) rc = SX_BAD(&s, "truncated body");
    if (!rc && s.r.p != s.r.end && minor <= SX_FMINOR)
      rc = SX_BAD(&s, "bytes after the last section");
  }
  if (rc) {
    sync_delta_free(s.d);
    return rc;
  }
  *out = s.d;
  return 0;
}

/* Parse the header in [p, p + n): SYNC_NOTFOUND when more bytes are
 * needed.  Sets *hlen, *stored, *raw, *flags, *minor, *dict. */
static int sx_frame_head(sync_decoder *dec, const unsigned char *p, size_t n,
                         size_t *hlen, size_t *stored, size_t *raw,
                         unsigned *flags, unsigned *minor, uint32_t *dict) {
  const unsigned char *q = p + 7, *end = p + n;
  uint64_t v;
  size_t k;
  if (dec->cx) {
    /* A session frame: one byte, the major version above the flags. */
    if (n < 1) return SYNC_NOTFOUND;
    if (p[0] >> 4 != SX_FMAJOR_SESS)
      return sx_dec_fail(dec, SYNC_EVERSION,
                         "another major version (a session frame is 2)");
    if (p[0] & 0x0cu)
      return sx_dec_fail(dec, SYNC_EFORMAT, "unknown frame flags");
    if ((p[0] & SX_FF_DICT) && !(p[0] & SX_FF_ZSTD))
      return sx_dec_fail(dec, SYNC_EFORMAT, "dictionary flag without zstd");
    *minor = 0;
    *flags = p[0] & 3u;
    q = p + 1;
  } else {
    if ((n >= 1 && p[0] != SX_FMAGIC0) || (n >= 2 && p[1] != 'S') ||
        (n >= 3 && p[2] != 'Y') || (n >= 4 && p[3] != 'N'))
      return sx_dec_fail(dec, SYNC_EFORMAT, "bad magic");
    if (n >= 5 && p[4] != SX_FMAJOR)
      return sx_dec_fail(dec, SYNC_EVERSION, "another major version");
    if (n >= 7 && (p[6] & ~(SX_FF_ZSTD | SX_FF_DICT | SX_FF_FOLDS)))
      return sx_dec_fail(dec, SYNC_EFORMAT, "unknown frame flags");
    if (n >= 7 && (p[6] & SX_FF_DICT) && !(p[6] & SX_FF_ZSTD))
      return sx_dec_fail(dec, SYNC_EFORMAT, "dictionary flag without zstd");
    if (n < 7) return SYNC_NOTFOUND;
    *minor = p[5];
    *flags = p[6];
  }
  k = sx_get_varint(q, end, &v);
  if (!k)
    return (size_t)(end - q) >= SX_VARINT_MAX
               ? sx_dec_fail(dec, SYNC_EFORMAT, "bad stored length")
               : SYNC_NOTFOUND;
  q += k;
  if (v > dec->max_frame)
    return sx_dec_fail(dec, SYNC_ELIMIT, "frame over max_frame");
  *stored = (size_t)v;
  *raw = *stored;
  if (*flags & SX_FF_ZSTD) {
    k = sx_get_varint(q, end, &v);
    if (!k)
      return (size_t)(end - q) >= SX_VARINT_MAX
                 ? sx_dec_fail(dec, SYNC_EFORMAT, "bad body length")
                 : SYNC_NOTFOUND;
    q += k;
    *raw = (size_t)(v > dec->max_body ? dec->max_body + 1 : v);
  }
  if (*raw > dec->max_body)
    return sx_dec_fail(dec, SYNC_ELIMIT, "body over max_body");
  *dict = 0;
  if (*flags & SX_FF_DICT) {
    if ((size_t)(end - q) < 4) return SYNC_NOTFOUND;
    *dict = sx_get_le32(q);
    q += 4;
  }
  *hlen = (size_t)(q - p);
  if (dec->max_frame < *hlen + SX_FSUM ||
      *stored > dec->max_frame - *hlen - SX_FSUM)
    return sx_dec_fail(dec, SYNC_ELIMIT, "frame over max_frame");
  return 0;
}

/* Check and decode the complete frame in [p, p + n). */
static int sx_frame_decode(sync_decoder *dec, const unsigned char *p, size_t n,
                           sync_delta **out) {
  size_t hlen, stored, raw;
  unsigned flags, minor;
  uint32_t dict;
  const unsigned char *body;
  int rc =
      sx_frame_head(dec, p, n, &hlen, &stored, &raw, &flags, &minor, &dict);
  if (rc == SYNC_NOTFOUND)
    return sx_dec_fail(dec, SYNC_EFORMAT, "truncated frame header");
  if (rc) return rc;
  if (n != hlen + stored + SX_FSUM)
    return sx_dec_fail(dec, SYNC_EFORMAT, "frame length differs from header");
  if (sx_get_le64(p + hlen + stored) !=
      sx_hash64(p, hlen + stored, dec->cx ? dec->cx->frames : 0))
    return sx_dec_fail(dec, SYNC_ECHECKSUM, "checksum mismatch");
  body = p + hlen;
  if (flags & SX_FF_ZSTD) {
#ifdef SYNC_OMIT_ZSTD
    (void)dict;
    return sx_dec_fail(dec, SYNC_ENOTSUP,
                       "compressed frame, built without zstd");
#else
    size_t got;
    if ((flags & SX_FF_DICT) && (!dec->ddict || dict != dec->dict_id))
      return sx_dec_fail(dec, SYNC_EDICT, "dictionary not loaded");
    /* One zstd frame, exactly: no trailing or skippable frames. */
    if (ZSTD_findFrameCompressedSize(body, stored) != stored)
      return sx_dec_fail(dec, SYNC_EFORMAT, "not one zstd frame");
    if (!dec->dctx) {
      dec->dctx = ZSTD_createDCtx();
      if (!dec->dctx) return SYNC_ENOMEM;
    }
    ZSTD_DCtx_reset(dec->dctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dec->dctx, ZSTD_d_windowLogMax,
                                            SX_WINDOW_LOG_MAX)))
      return SYNC_ENOMEM;
    if ((flags & SX_FF_DICT) &&
        ZSTD_isError(ZSTD_DCtx_refDDict(dec->dctx, dec->ddict)))
      return sx_dec_fail(dec, SYNC_EDICT, "dictionary refused by zstd");
    dec->raw.len = 0;
    if ((rc = sx_buf_reserve(&dec->raw, raw + 1))) return rc;
    /* The output buffer is the size the header promised: a body that
     * inflates past it stops there (a bomb costs max_body, no more). */
    got = ZSTD_decompressDCtx(dec->dctx, dec->raw.p, raw, body, stored);
    if (ZSTD_isError(got)) {
      if (ZSTD_getErrorCode(got) == ZSTD_error_dictionary_wrong)
        return sx_dec_fail(dec, SYNC_EDICT, "wrong dictionary");
      if (ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation)
        return SYNC_ENOMEM;
      return sx_dec_fail(dec, SYNC_EFORMAT, "corrupt zstd body");
    }
    if (got != raw)
      return sx_dec_fail(dec, SYNC_EFORMAT,
                         "body shorter than its header says");
    body = dec->raw.p;
#endif
  }
  dec->last_raw = raw;
  return sx_decode_body(dec, body, raw, minor, flags, out);
}

SYNC_PRIVATE size_t sx_decoder_last_raw(const sync_decoder *dec) {
  return dec->last_raw;
}

/* After a failed call: a reason for every failure (the bytes' faults
 * name theirs where they are found). */
static int sx_decoder_failed(sync_decoder *dec, int rc) {
  if (rc && !dec->reason[0]) {
    if (rc == SYNC_ENOMEM || rc == SYNC_ETOOBIG)
      dec->reason = "out of memory";
    else if (SX_NEVER(rc != SYNC_EINVAL))
      dec->reason = "malformed frame";
  }
  return rc;
}

static void sx_decoder_restart(sync_decoder *dec) {
  dec->in.len = 0;
  dec->need = 0;
}

SYNC_API int sync_decoder_feed(sync_decoder *dec, sync_inbuf *in,
                               sync_delta **out) {
  int rc;
  if (dec) dec->reason = "";
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!dec || !in || in->pos > in->size || (!in->ptr && in->size))
    return SYNC_EINVAL;
  while (in->pos < in->size) {
    const unsigned char *src = (const unsigned char *)in->ptr + in->pos;
    size_t avail = in->size - in->pos, take;
    if (!dec->need) {
      /* Header: take bytes one varint's worth at a time, never past the
       * frame, until its length is known. */
      size_t hlen, stored, raw;
      unsigned flags, minor;
      uint32_t dict;
      take = SX_FHEAD_MAX - dec->in.len;
      if (take > avail) take = avail;
      if ((rc = sx_buf_reserve(&dec->in, SX_FHEAD_MAX)))
        return sx_decoder_failed(dec, rc);
      memcpy(dec->in.p + dec->in.len, src, take);
      rc = sx_frame_head(dec, dec->in.p, dec->in.len + take, &hlen, &stored,
                         &raw, &flags, &minor, &dict);
      if (rc == SYNC_NOTFOUND) {
        dec->in.len += take;
        in->pos += take;
        continue;
      }
      if (rc) {
        /* Only the bytes up to the fault are consumed. */
        in->pos += take;
        sx_decoder_restart(dec);
        return sx_decoder_failed(dec, rc);
      }
      dec->need = hlen + stored + SX_FSUM;
      /* Of what was copied, keep only the frame's own bytes. */
      if (dec->in.len + take > dec->need) take = dec->need - dec->in.len;
      dec->in.len += take;
      in->pos += take;
      if ((rc = sx_buf_reserve(&dec->in, dec->need - dec->in.len))) {
        sx_decoder_restart(dec);
        return sx_decoder_failed(dec, rc);
      }
    } else {
      take = dec->need - dec->in.len;
      if (take > avail) take = avail;
      memcpy(dec->in.p + dec->in.len, src, take);
      dec->in.len += take;
      in->pos += take;
    }
    if (dec->need && dec->in.len == dec->need) {
      rc = sx_frame_decode(dec, dec->in.p, dec->in.len, out);
      sx_decoder_restart(dec);
      return sx_decoder_failed(dec, rc);
    }
  }
  return 0;
}

SYNC_PRIVATE int sx_decoder_feed_ctx(sync_decoder *dec, sx_fctx *c,
                                     sync_inbuf *in, sync_delta **out) {
  int rc;
  if (!dec || !c || c->broken) return SYNC_EINVAL;
  dec->cx = c;
  rc = sync_decoder_feed(dec, in, out);
  dec->cx = NULL;
  return rc;
}

SYNC_API int sync_decoder_decode(sync_decoder *dec, const void *frame,
                                 size_t len, sync_delta **out) {
  if (dec) dec->reason = "";
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!dec || (!frame && len)) return SYNC_EINVAL;
  sx_decoder_restart(dec);
  return sx_decoder_failed(
      dec, sx_frame_decode(dec, (const unsigned char *)frame, len, out));
}

SYNC_API const char *sync_decoder_reason(const sync_decoder *dec) {
  return dec ? dec->reason : "";
}

/* ---------------------------------------------------------------------
 * Dictionary training (the samples come from dict.c)
 * ------------------------------------------------------------------- */
#if !defined(SYNC_OMIT_ZSTD) && !defined(SYNC_OMIT_ENCODER)
SYNC_PRIVATE int sx_dict_from_samples(void *dict, size_t cap,
                                      const void *samples, const size_t *sizes,
                                      unsigned n, size_t *len) {
  size_t got = ZDICT_trainFromBuffer(dict, cap, samples, sizes, n);
  if (ZDICT_isError(got))
    return SYNC_ELIMIT; /* too little material for zstd to find patterns */
  *len = got;
  return 0;
}
#endif
