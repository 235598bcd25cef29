/*
 * repair.c - range repair: find where two replicas differ by comparing
 * fingerprints of a hash-prefix tree, and exchange only the rows of the
 * leaves that differ (docs/PROTOCOL.md, "Repair", is the spec).
 *
 * A node at depth L of a table's tree is the set of its rows whose key
 * hash (sx_key_hash) starts with a given 4L-bit prefix; its fingerprint
 * is the sum of the rows' meta fingerprints and their count.  Bounds are
 * implicit, so a node costs only its fingerprint on the wire, and a node
 * is named by its place in the previous turn's lists, never by bytes of
 * its own.  Nothing here holds a table's rows or hashes: every turn is
 * one or two cursor passes over the tables involved, computing only the
 * sums of the nodes asked for (and, when they are few, their rows).
 *
 * In file order: row fingerprints, node sets and the repair's life; the
 * peer's turn, read one section per sx_rp_read_* step (sx_rp_on_turn),
 * and its frame (sx_rp_on_frame); the scans; and this side's turn,
 * written in steps (sx_rp_turn: open a pass or answer the peer, fill the
 * frame, close the turn).
 */
#include "repair.h"

#ifndef SYNC_OMIT_REPAIR

#include "hash.h"
#include "renew.h"

#include <stdio.h>
#include <stdlib.h>

/* The hash of a key that places it in the tree (docs/FORMAT.md,
 * "Fingerprints"). */
#define SX_FP_SEED_KEY UINT64_C(0x73796e632d6b3031) /* "sync-k01" */
static uint64_t sx_key_hash(unsigned tid, const unsigned char *key,
                            size_t klen) {
  return sx_hash64(key, klen, SX_FP_SEED_KEY + tid);
}

#define SX_RT_FRAME 0x01u /* a DATA frame follows this turn */
#define SX_RT_ROOTS 0x02u /* the sender's table roots follow */
#define SX_RT_DONE 0x04u  /* the repair is over */
#define SX_RT_PROGRESS                                                         \
  0x08u                   /* the sender changed rows or deferred nodes         \
                             in this pass */
#define SX_RT_EQUAL 0x10u /* with DONE: the roots were equal */
#define SX_RT_FIRST 0x20u /* the opening turn: the sender's version */
#define SX_RT_VECTOR                                                           \
  0x40u /* with ROOTS or DONE | EQUAL: the sender's version vector */
#define SX_RT_KNOWN 0x7fu
#define SX_RP_MAXVV 65536u /* vector entries in a turn, as sites in a frame */

#define SX_RP_SEED_TOMB UINT64_C(0x73796e632d743031) /* "sync-t01" */
#define SX_RP_SEED_META UINT64_C(0x73796e632d6d3031) /* as fp.c's meta */
#define SX_RP_GOLD UINT64_C(0x9E3779B97F4A7C15)
#define SX_RP_MIX UINT64_C(0xD6E8FEB86659FD93)
#define SX_RP_FPB 3       /* bytes of a node fingerprint below the root */
#define SX_RP_MASKS 0xffu /* a node answered by masks, not a list */

typedef struct sx_rnode {
  uint64_t pre; /* the top 4 * depth bits of the key hashes, right-aligned */
  unsigned tid, depth;
} sx_rnode;

typedef struct sx_racc {
  uint64_t sum, live, total, bytes;
} sx_racc;

/* A node the peer split: the fingerprints it listed for its children. */
typedef struct sx_ropen {
  sx_rnode n;
  unsigned mask; /* children the peer holds rows in (tombstones too) */
  uint32_t fp[16];
} sx_ropen;

#define SX_Q_SELF 1 /* sums of the node itself */
#define SX_Q_KIDS 2 /* sums of its 16 children */
#define SX_Q_ROWS 3 /* its rows into the frame */
#define SX_Q_DIFF 4 /* its rows compared with the received frame (diff) */

typedef struct sx_rq {
  sx_rnode n;
  int kind;
  int filter; /* ROWS: leave out the rows the peer just sent */
  int diff;   /* compare its rows with the received frame (dry run) */
  size_t acc; /* first accumulator */
} sx_rq;

/* A set of nodes for lookups by key hash: sorted keys, and per table the
 * depths present. */
typedef struct sx_rkey {
  unsigned tid, depth;
  uint64_t pre;
  size_t i;
} sx_rkey;

typedef struct sx_rset {
  sx_rkey *k;
  size_t n;
  uint32_t depths[SYNC_MAX_TABLES];
} sx_rset;

#define SX_LIST(T, name)                                                       \
  T *name;                                                                     \
  size_t n##name, cap##name

struct sx_repair {
  sync_env *env;
  sx_alloc al;
  sx_rp_opts o;
  unsigned tids[SYNC_MAX_TABLES], nt;
  /* what this side listed in its last turn */
  SX_LIST(sx_rnode, mysplit);
  SX_LIST(sx_rnode, myleaf);
  int sent_roots;
  /* what the peer's last turn asks of this side */
  SX_LIST(sx_ropen, open);
  SX_LIST(sx_rnode, pleaf);
  SX_LIST(sx_rnode, answered); /* this side's leaves the peer answered */
  int vopen;                   /* the peer sent its roots: compare them */
  uint64_t psum[SYNC_MAX_TABLES], pcnt[SYNC_MAX_TABLES];
  int frame_due, got_first, peer_progress, progress;
  sync_delta *frame; /* dry run: the received frame, for the diff */
  unsigned char *matched;
  SX_LIST(uint64_t, fps); /* fingerprints of the rows just received */
  /* scratch of a turn */
  SX_LIST(sx_rq, q);
  SX_LIST(sx_racc, acc);
  SX_LIST(sx_rnode, nsplit);
  SX_LIST(sx_rnode, nleaf);
  uint64_t *zvv;
  size_t nzvv;
  unsigned char *pskip; /* per pleaf: not answered with rows */
  size_t cappskip;
  sx_row row;
  sx_buf msg, fpb;
  sx_buf pvb;  /* the peer's vector from its last roots (vec) */
  int have_pvv;
  sx_rp_stats st;
  char err[160];
};

static int sx_rp_grow(sx_repair *rp, void **p, size_t *cap, size_t need,
                      size_t elem) {
  return sx_grow(&rp->al, p, cap, need, elem);
}

#define SX_PUSH(rp, name, val)                                                 \
  (sx_rp_grow((rp), (void **)&(rp)->name, &(rp)->cap##name, (rp)->n##name + 1, \
              sizeof *(rp)->name)                                              \
       ? SYNC_ENOMEM                                                           \
       : ((rp)->name[(rp)->n##name++] = (val), 0))

static int sx_rp_proto(sx_repair *rp, const char *what) {
  snprintf(rp->err, sizeof rp->err, "malformed REPAIR turn: %s", what);
  return SYNC_EPROTO;
}

static int sx_rp_bit(const unsigned char *set, unsigned i) {
  return (set[i >> 3] >> (i & 7)) & 1;
}

static uint64_t sx_rp_pre(uint64_t h, unsigned depth) {
  return depth ? h >> (64 - 4 * depth) : 0;
}

static sx_rnode sx_rp_child(const sx_rnode *n, unsigned c) {
  sx_rnode k;
  k.tid = n->tid;
  k.depth = n->depth + 1;
  k.pre = (n->pre << 4) | c;
  return k;
}

/* A node's fingerprint on the wire below the root: 24 bits of the sum
 * and count, mixed with the pass number, so that a collision that hid a
 * difference in one pass does not hide it in the next. */
static uint32_t sx_rp_fpw(const sx_racc *a, uint64_t pass) {
  uint64_t z = a->sum + a->total * SX_RP_GOLD + pass * SX_RP_MIX;
  z ^= z >> 32;
  z *= SX_RP_MIX;
  z ^= z >> 29;
  return (uint32_t)(z >> 40);
}

/* ---------------------------------------------------------------------
 * Row fingerprints: the meta fingerprint (sx_row_fp) of a stored row, and
 * the same of a row in a frame: equal rows hash equal, live rows over
 * key, causal length, stamps and values, tombstones over key, causal
 * length and stamp.
 * ------------------------------------------------------------------- */
static int sx_rp_sfp(sync_txn *x, unsigned tid, const unsigned char *key,
                     size_t klen, const sx_row *r, uint64_t *fp) {
  uint64_t c;
  int rc = sx_row_fp(x, tid, key, klen, r, &c, fp);
  return rc < 0 ? rc : 0;
}

static int sx_rp_dfp(sx_repair *rp, const sync_delta *d, size_t i,
                     uint64_t *fp) {
  const sx_drow *dr = &d->rows[i];
  const sx_table *tb = &rp->env->schema->tables[dr->tid];
  const unsigned char *key = d->arena.p + dr->koff;
  sx_buf *b = &rp->fpb;
  unsigned char *p, *m;
  size_t need = 3 * SX_VARINT_MAX + dr->klen + SX_SITE_LEN, j;
  int rc;
  if (dr->clsite >= d->nsites) return SYNC_EPROTO;
  for (j = 0; j < dr->ncols; j++) {
    const sx_dcol *dc = &d->cols[dr->col0 + j];
    need += 3 * SX_VARINT_MAX + SX_SITE_LEN + 1 +
            (dc->v.type == SX_TAG_COUNTER ? 8 : sx_payload_size(&dc->v));
    if (dc->site >= d->nsites) return SYNC_EPROTO;
  }
  b->len = 0;
  if ((rc = sx_buf_reserve(b, need))) return rc;
  p = m = b->p;
  p = sx_wv(p, dr->klen);
  memcpy(p, key, dr->klen);
  p += dr->klen;
  p = sx_wv(p, dr->cl);
  p = sx_wv(p, dr->clhlc);
  memcpy(p, d->sites[dr->clsite], SX_SITE_LEN);
  p += SX_SITE_LEN;
  if (!(dr->cl & 1)) {
    *fp = sx_hash64(m, (size_t)(p - m), SX_RP_SEED_TOMB);
    return 0;
  }
  p = m;
  p = sx_wv(p, dr->klen);
  memcpy(p, key, dr->klen);
  p += dr->klen;
  p = sx_wv(p, dr->cl);
  p = sx_wv(p, dr->clhlc);
  memcpy(p, d->sites[dr->clsite], SX_SITE_LEN);
  p += SX_SITE_LEN;
  for (j = 0; j < dr->ncols; j++) {
    const sx_dcol *dc = &d->cols[dr->col0 + j];
    sync_value v = dc->v;
    if (dc->col < tb->ncols && (tb->cols[dc->col].flags & SYNC_COL_LOCAL))
      continue;
    if (v.type == SYNC_TEXT || v.type == SYNC_BLOB)
      v.data = d->arena.p + (uintptr_t)dc->v.data;
    p = sx_wv(p, dc->col);
    p = sx_wv(p, dc->hlc);
    memcpy(p, d->sites[dc->site], SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = (unsigned char)v.type;
    if (v.type == SX_TAG_COUNTER) {
      /* As fp.c's: the sum of the contributions' hashes, by site id. */
      const sx_ctr *a = sx_dctr(d, dc->v.data);
      uint64_t h = 0;
      size_t k;
      for (k = 0; k < dc->v.len; k++) {
        if (a[k].site >= d->nsites) return SYNC_EPROTO;
        h += sx_ctr_hash(d->sites[a[k].site], a[k].p, a[k].n, a[k].hlc);
      }
      sx_put_le64(p, h);
      p += 8;
      continue;
    }
    p += sx_payload_put(p, &v);
  }
  *fp = sx_hash64(m, (size_t)(p - m), SX_RP_SEED_META);
  return 0;
}

static int sx_u64cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int sx_rp_hasfp(const sx_repair *rp, uint64_t fp) {
  return rp->nfps &&
         bsearch(&fp, rp->fps, rp->nfps, sizeof(uint64_t), sx_u64cmp) != NULL;
}

/* ---------------------------------------------------------------------
 * Node sets
 * ------------------------------------------------------------------- */
static int sx_rkeycmp(const void *a, const void *b) {
  const sx_rkey *x = (const sx_rkey *)a, *y = (const sx_rkey *)b;
  if (x->tid != y->tid) return x->tid < y->tid ? -1 : 1;
  if (x->depth != y->depth) return x->depth < y->depth ? -1 : 1;
  if (x->pre != y->pre) return x->pre < y->pre ? -1 : 1;
  return 0;
}

static int sx_rset_add(sx_repair *rp, sx_rset *s, size_t *cap,
                       const sx_rnode *n, size_t i) {
  if (sx_grow(&rp->al, (void **)&s->k, cap, s->n + 1, sizeof(sx_rkey)))
    return SYNC_ENOMEM;
  s->k[s->n].tid = n->tid;
  s->k[s->n].depth = n->depth;
  s->k[s->n].pre = n->pre;
  s->k[s->n].i = i;
  s->n++;
  s->depths[n->tid] |= (uint32_t)1 << n->depth;
  return 0;
}

static void sx_rset_sort(sx_rset *s) {
  if (s->n > 1) qsort(s->k, s->n, sizeof(sx_rkey), sx_rkeycmp);
}

/* Entries holding key hash h of table tid, one per depth: calls back
 * through *out (up to 17). */
static size_t sx_rset_find(const sx_rset *s, unsigned tid, uint64_t h,
                           const sx_rkey **out) {
  uint32_t m = tid < SYNC_MAX_TABLES ? s->depths[tid] : 0;
  size_t n = 0;
  unsigned d;
  if (!s->n) return 0;
  for (d = 0; m; d++, m >>= 1) {
    sx_rkey k;
    const sx_rkey *f;
    if (!(m & 1)) continue;
    k.i = 0;
    k.tid = tid;
    k.depth = d;
    k.pre = sx_rp_pre(h, d);
    f = (const sx_rkey *)bsearch(&k, s->k, s->n, sizeof(sx_rkey), sx_rkeycmp);
    if (f) out[n++] = f;
  }
  return n;
}

/* ---------------------------------------------------------------------
 * Life
 * ------------------------------------------------------------------- */
SYNC_PRIVATE int sx_rp_new(sync_env *env, const sx_rp_opts *o,
                           sx_repair **out) {
  sx_repair *rp;
  unsigned t;
  *out = NULL;
  rp = (sx_repair *)sx_malloc(&env->al, sizeof *rp);
  if (!rp) return SYNC_ENOMEM;
  memset(rp, 0, sizeof *rp);
  rp->env = env;
  rp->al = env->al;
  rp->o = *o;
  if (!rp->o.budget) rp->o.budget = 1000;
  if (!rp->o.max_bytes) rp->o.max_bytes = (size_t)1 << 20;
  for (t = 0; t < env->schema->ntables; t++)
    if (!o->tables || sx_rp_bit(o->tables, t)) {
      rp->st.tid[rp->nt] = t;
      rp->tids[rp->nt++] = t;
    }
  rp->st.nt = rp->nt;
  sx_buf_init(&rp->msg, &rp->al);
  sx_buf_init(&rp->fpb, &rp->al);
  sx_buf_init(&rp->pvb, &rp->al);
  rp->got_first = o->server; /* only a client is opened to */
  if (sx_row_init(&rp->al, &rp->row, SYNC_MAX_COLUMNS)) {
    sx_buf_free(&rp->msg);
    sx_free(&rp->al, rp);
    return SYNC_ENOMEM;
  }
  *out = rp;
  return 0;
}

SYNC_PRIVATE void sx_rp_free(sx_repair *rp) {
  sx_alloc al;
  if (!rp) return;
  al = rp->al;
  sx_free(&al, rp->mysplit);
  sx_free(&al, rp->myleaf);
  sx_free(&al, rp->open);
  sx_free(&al, rp->pleaf);
  sx_free(&al, rp->answered);
  sx_free(&al, rp->fps);
  sx_free(&al, rp->q);
  sx_free(&al, rp->acc);
  sx_free(&al, rp->nsplit);
  sx_free(&al, rp->nleaf);
  sx_free(&al, rp->zvv);
  sx_free(&al, rp->matched);
  sync_delta_free(rp->frame);
  sx_row_free(&al, &rp->row);
  sx_buf_free(&rp->msg);
  sx_buf_free(&rp->fpb);
  sx_buf_free(&rp->pvb);
  sx_free(&al, rp->pskip);
  sx_free(&al, rp);
}

SYNC_PRIVATE const sx_rp_stats *sx_rp_stats_of(const sx_repair *rp) {
  return &rp->st;
}

SYNC_PRIVATE const char *sx_rp_errmsg(const sx_repair *rp) { return rp->err; }

/* ---------------------------------------------------------------------
 * The peer's turn
 * ------------------------------------------------------------------- */
static unsigned sx_rd16(sx_rd *r) {
  const unsigned char *q = sx_rbytes(r, 2);
  return q ? (unsigned)q[0] | ((unsigned)q[1] << 8) : 0;
}

/* The head of the peer's turn: its flags, and with the opening turn the
 * peer's log version. */
static int sx_rp_read_head(sx_repair *rp, sx_rd *r, unsigned *flags) {
  const unsigned char *q = sx_rbytes(r, 1);
  if (!q || (q[0] & ~SX_RT_KNOWN)) return sx_rp_proto(rp, "flags");
  *flags = q[0];
  rp->st.turns++;
  rp->npleaf = rp->nanswered = rp->nopen = rp->nnsplit = 0;
  rp->vopen = 0;
  if (!rp->got_first != !!(*flags & SX_RT_FIRST))
    return sx_rp_proto(rp, "opening turn");
  if (*flags & SX_RT_FIRST) {
    rp->got_first = 1;
    rp->st.v0 = sx_rv(r);
    rp->st.have_v0 = !r->bad;
    if (!(*flags & SX_RT_ROOTS)) return sx_rp_proto(rp, "opening turn");
  }
  if (*flags & SX_RT_PROGRESS) rp->peer_progress = 1;
  return 0;
}

/* The peer's version vector (VECTOR): var n, n x (16-byte site, var
 * HLC), kept in rp->pvb as 24-byte entries. */
static int sx_rp_read_vv(sx_repair *rp, sx_rd *r) {
  uint64_t n = sx_rv(r), i;
  rp->have_pvv = 0;
  rp->pvb.len = 0;
  if (r->bad || n > SX_RP_MAXVV ||
      n > (uint64_t)(r->end - r->p) / (SX_SITE_LEN + 1))
    return sx_rp_proto(rp, "vector");
  if (sx_buf_reserve(&rp->pvb, (size_t)n * 24)) return SYNC_ENOMEM;
  for (i = 0; i < n; i++) {
    const unsigned char *q = sx_rbytes(r, SX_SITE_LEN);
    uint64_t h = sx_rv(r);
    if (!q || r->bad || !h) return sx_rp_proto(rp, "vector");
    memcpy(rp->pvb.p + rp->pvb.len, q, SX_SITE_LEN);
    sx_put_le64(rp->pvb.p + rp->pvb.len + SX_SITE_LEN, h);
    rp->pvb.len += 24;
  }
  rp->have_pvv = 1;
  return 0;
}

/* Equal roots with the peer's vector: this side holds what the peer
 * held, and may claim what it claimed. */
static void sx_rp_take_vv(sx_repair *rp) {
  if (!rp->o.vec || !rp->have_pvv) return;
  rp->st.take_vv = 1;
  rp->st.pvv = rp->pvb.p;
  rp->st.npvv = rp->pvb.len / 24;
}

/* The peer ends the repair: only after this side's roots, and nothing
 * may follow (but its vector, when it found the roots equal). */
static int sx_rp_read_done(sx_repair *rp, sx_rd *r, unsigned flags) {
  int rc;
  if (!rp->sent_roots || (flags & (SX_RT_FRAME | SX_RT_ROOTS)) ||
      ((flags & SX_RT_VECTOR) && !(flags & SX_RT_EQUAL)))
    return sx_rp_proto(rp, "DONE");
  if ((flags & SX_RT_VECTOR) && (rc = sx_rp_read_vv(rp, r))) return rc;
  if (r->bad || r->p != r->end) return sx_rp_proto(rp, "DONE");
  rp->st.done = 1;
  rp->st.equal = (flags & SX_RT_EQUAL) != 0;
  if (rp->st.equal && (flags & SX_RT_VECTOR)) sx_rp_take_vv(rp);
  return 0;
}

/* The peer compared our roots: a leaf and a split mask over the tables,
 * which opens a pass on this side too. */
static int sx_rp_read_root_masks(sx_repair *rp, sx_rd *r, unsigned flags) {
  size_t mb = (rp->nt + 7) / 8;
  const unsigned char *lm = sx_rbytes(r, mb), *sm = sx_rbytes(r, mb);
  unsigned i;
  rp->st.passes++;
  rp->progress = 0;
  rp->peer_progress = (flags & SX_RT_PROGRESS) != 0;
  if (!lm || !sm) return sx_rp_proto(rp, "root masks");
  for (i = 0; i < rp->nt; i++) {
    sx_rnode root;
    int l = sx_rp_bit(lm, i), s = sx_rp_bit(sm, i);
    root.tid = rp->tids[i];
    root.depth = 0;
    root.pre = 0;
    if (l && s) return sx_rp_proto(rp, "a root both leaf and split");
    if ((l && SX_PUSH(rp, pleaf, root)) || (s && SX_PUSH(rp, nsplit, root)))
      return SYNC_ENOMEM;
  }
  for (i = rp->nt; i < 8 * mb; i++)
    if (sx_rp_bit(lm, i) || sx_rp_bit(sm, i))
      return sx_rp_proto(rp, "root mask bits");
  return 0;
}

/* The peer's answer mask over the leaves this side listed: a set bit
 * splits the leaf, a clear one says the peer answered it. */
static int sx_rp_read_answers(sx_repair *rp, sx_rd *r) {
  size_t mb = (rp->nmyleaf + 7) / 8, j;
  const unsigned char *am = sx_rbytes(r, mb);
  if (!am && mb) return sx_rp_proto(rp, "answer mask");
  for (j = 0; j < rp->nmyleaf; j++) {
    if (sx_rp_bit(am, (unsigned)j)) {
      if (rp->myleaf[j].depth >= SX_RP_DEPTH)
        return sx_rp_proto(rp, "a split below the last level");
      if (SX_PUSH(rp, nsplit, rp->myleaf[j])) return SYNC_ENOMEM;
    } else if (SX_PUSH(rp, answered, rp->myleaf[j])) {
      return SYNC_ENOMEM;
    }
  }
  for (j = mb * 8; j-- > rp->nmyleaf;)
    if (sx_rp_bit(am, (unsigned)j)) return sx_rp_proto(rp, "answer bits");
  return 0;
}

/* The peer's verdict on the children of one node this side split: the
 * leaves (*lm) and splits (*sm), as two masks or as a short list. */
static int sx_rp_read_kids(sx_repair *rp, sx_rd *r, unsigned *lm,
                           unsigned *sm) {
  const unsigned char *h = sx_rbytes(r, 1);
  *lm = *sm = 0;
  if (h && *h == SX_RP_MASKS) {
    *lm = sx_rd16(r);
    *sm = sx_rd16(r);
  } else if (h && *h <= 16) {
    /* a short list: one byte per child, index | kind << 4 */
    unsigned e, ne = *h;
    for (e = 0; e < ne; e++) {
      const unsigned char *b1 = sx_rbytes(r, 1);
      unsigned bit;
      if (!b1 || (*b1 >> 4) < 1 || (*b1 >> 4) > 2)
        return sx_rp_proto(rp, "node list");
      bit = 1u << (*b1 & 15);
      if ((*lm | *sm) & bit) return sx_rp_proto(rp, "a child listed twice");
      if ((*b1 >> 4) == 1)
        *lm |= bit;
      else
        *sm |= bit;
    }
  } else {
    return sx_rp_proto(rp, "node masks");
  }
  if (r->bad) return sx_rp_proto(rp, "node masks");
  if (*lm & *sm) return sx_rp_proto(rp, "a node both leaf and split");
  return 0;
}

/* The children of the nodes this side split: the peer's leaves, and the
 * nodes it split in turn. */
static int sx_rp_read_splits(sx_repair *rp, sx_rd *r) {
  size_t j;
  int rc;
  for (j = 0; j < rp->nmysplit; j++) {
    unsigned lm, sm, c;
    if ((rc = sx_rp_read_kids(rp, r, &lm, &sm))) return rc;
    for (c = 0; c < 16; c++) {
      sx_rnode ch = sx_rp_child(&rp->mysplit[j], c);
      if ((lm >> c) & 1) {
        if (SX_PUSH(rp, pleaf, ch)) return SYNC_ENOMEM;
      } else if ((sm >> c) & 1) {
        if (ch.depth >= SX_RP_DEPTH)
          return sx_rp_proto(rp, "a split below the last level");
        if (SX_PUSH(rp, nsplit, ch)) return SYNC_ENOMEM;
      }
    }
    if (rp->nnsplit > SX_RP_MAXOPEN || rp->npleaf > SX_RP_MAXLEAF)
      return sx_rp_proto(rp, "too many nodes");
  }
  return 0;
}

/* Children fingerprints of the nodes the peer split. */
static int sx_rp_read_open(sx_repair *rp, sx_rd *r) {
  size_t j;
  for (j = 0; j < rp->nnsplit; j++) {
    sx_ropen o;
    unsigned c;
    memset(&o, 0, sizeof o);
    o.n = rp->nsplit[j];
    o.mask = sx_rd16(r);
    for (c = 0; c < 16; c++)
      if ((o.mask >> c) & 1) {
        const unsigned char *q = sx_rbytes(r, SX_RP_FPB);
        if (q)
          o.fp[c] =
              (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16);
      }
    if (r->bad) return sx_rp_proto(rp, "fingerprints");
    if (SX_PUSH(rp, open, o)) return SYNC_ENOMEM;
  }
  rp->nnsplit = 0;
  return 0;
}

/* The peer's roots: per table its sum, its count and the largest causal
 * length it collected. */
static void sx_rp_read_roots(sx_repair *rp, sx_rd *r) {
  unsigned i;
  for (i = 0; i < rp->nt; i++) {
    const unsigned char *q = sx_rbytes(r, 8);
    uint64_t cl;
    if (q) rp->psum[i] = sx_get_le64(q);
    rp->pcnt[i] = sx_rv(r);
    cl = sx_rv(r);
    if (cl > rp->st.gccl[i]) rp->st.gccl[i] = cl;
  }
}

SYNC_PRIVATE int sx_rp_on_turn(sx_repair *rp, const unsigned char *b, size_t n,
                               int *frame) {
  sx_rd r = {b, b + n, 0};
  unsigned flags = 0;
  int rc;
  *frame = 0;
  if ((rc = sx_rp_read_head(rp, &r, &flags))) return rc;
  if (flags & SX_RT_DONE) return sx_rp_read_done(rp, &r, flags);
  if (rp->sent_roots)
    rc = sx_rp_read_root_masks(rp, &r, flags);
  else if (!(rc = sx_rp_read_answers(rp, &r)))
    rc = sx_rp_read_splits(rp, &r);
  if (rc) return rc;
  if (rp->nnsplit > SX_RP_MAXOPEN || rp->npleaf > SX_RP_MAXLEAF)
    return sx_rp_proto(rp, "too many nodes");
  if ((rc = sx_rp_read_open(rp, &r))) return rc;
  /* The roots come last: the sender knows only at the end of its turn
   * that it asks nothing more. */
  if (flags & SX_RT_ROOTS) {
    sx_rp_read_roots(rp, &r);
    rp->have_pvv = 0;
    if ((flags & SX_RT_VECTOR) && (rc = sx_rp_read_vv(rp, &r))) return rc;
  } else if (flags & SX_RT_VECTOR) {
    return sx_rp_proto(rp, "a vector without roots");
  }
  if (r.bad || r.p != r.end) return sx_rp_proto(rp, "length");
  if (flags & SX_RT_ROOTS) {
    if (rp->nopen || rp->npleaf) return sx_rp_proto(rp, "roots with nodes");
    rp->vopen = 1;
  }
  if (flags & SX_RT_FRAME) {
    if (!rp->npleaf && !rp->nanswered)
      return sx_rp_proto(rp, "a frame for no leaf");
    *frame = 1;
  }
  rp->frame_due = *frame;
  return 0;
}

/* Sets of the leaves of the peer's turn (its own) and of ours it
 * answered: where received rows may lie.  Entries of pleaf come first
 * (i < npleaf). */
static int sx_rp_leafset(sx_repair *rp, sx_rset *s) {
  size_t cap = 0, i;
  int rc = 0;
  memset(s, 0, sizeof *s);
  for (i = 0; i < rp->npleaf && !rc; i++)
    rc = sx_rset_add(rp, s, &cap, &rp->pleaf[i], i);
  for (i = 0; i < rp->nanswered && !rc; i++)
    rc = sx_rset_add(rp, s, &cap, &rp->answered[i], rp->npleaf + i);
  if (!rc) sx_rset_sort(s);
  return rc;
}

SYNC_PRIVATE int sx_rp_on_frame(sx_repair *rp, sync_delta *d) {
  sync_env *env = rp->env;
  sx_rset ls;
  size_t i;
  int rc;
  if (!rp->frame_due) {
    sync_delta_free(d);
    return sx_rp_proto(rp, "a frame out of turn");
  }
  rp->frame_due = 0;
  if ((rc = sx_rp_leafset(rp, &ls))) {
    sync_delta_free(d);
    return rc;
  }
  /* Every row must lie in a leaf of this exchange. */
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *dr = &d->rows[i];
    const sx_rkey *hit[SX_RP_DEPTH + 1];
    uint64_t h = sx_key_hash(dr->tid, d->arena.p + dr->koff, dr->klen);
    if (dr->tid >= SYNC_MAX_TABLES || !sx_rset_find(&ls, dr->tid, h, hit)) {
      sx_free(&rp->al, ls.k);
      sync_delta_free(d);
      return sx_rp_proto(rp, "a row outside the leaves");
    }
  }
  sx_free(&rp->al, ls.k);
  rp->st.rows += d->nrows;
  rp->nfps = 0;
  if (rp->o.dry) {
    sync_delta_free(rp->frame);
    sx_free(&rp->al, rp->matched);
    rp->matched = (unsigned char *)sx_malloc(&rp->al, d->nrows + 1);
    if (!rp->matched) {
      sync_delta_free(d);
      rp->frame = NULL;
      return SYNC_ENOMEM;
    }
    memset(rp->matched, 0, d->nrows + 1);
    rp->frame = d;
    return 0;
  }
  /* What the peer holds now: answers leave those rows out. */
  if (sx_grow(&rp->al, (void **)&rp->fps, &rp->capfps, d->nrows + 1,
              sizeof(uint64_t))) {
    sync_delta_free(d);
    return SYNC_ENOMEM;
  }
  for (i = 0; i < d->nrows; i++)
    if ((rc = sx_rp_dfp(rp, d, i, &rp->fps[rp->nfps++]))) {
      sync_delta_free(d);
      return rc == SYNC_EPROTO ? sx_rp_proto(rp, "frame sites") : rc;
    }
  if (rp->nfps > 1) qsort(rp->fps, rp->nfps, sizeof(uint64_t), sx_u64cmp);
  {
    sync_txn *x;
    sync_apply_opts ao;
    sync_apply_report rep;
    memset(&ao, 0, sizeof ao);
    ao.writable = rp->o.writable;
    ao.relay = rp->o.relay;
    ao.max_ahead_ms = rp->o.max_ahead_ms;
    /* A repair frame is incoming changes like any other: the write check
     * judges them (refused rows are counted, not answered: the repair
     * then ends without equal roots). */
    ao.check = rp->o.check;
    ao.check_ctx = rp->o.check_ctx;
    d->repair = 1;
    rc = sync_txn_begin(env, 0, &x);
    if (!rc) {
      rc = sync_delta_apply_opts(x, d, &ao, &rep);
      if (rc)
        sync_txn_abort(x);
      else
        rc = sync_txn_commit(x);
    }
    if (rc) {
      sync_delta_free(d);
      snprintf(rp->err, sizeof rp->err, "applying a repair frame: %s (%.100s)",
               sync_strerror(rc), sync_env_errmsg(env));
      return rc;
    }
    if (rep.renewed) {
      /* Committed with the frame; the peer cuts for the old id. */
      sync_delta_free(d);
      snprintf(rp->err, sizeof rp->err,
               "a repair frame held a write of this replica's site id that "
               "its file never made (restored from a backup or copied): it "
               "took a new site id; repair again");
      return SYNC_EHISTORY;
    }
    /* kept for this side's turn: answers leave out what it holds */
    sync_delta_free(rp->frame);
    rp->frame = d;
    rp->st.applied.rows += rep.rows;
    rp->st.applied.inserted += rep.inserted;
    rp->st.applied.updated += rep.updated;
    rp->st.applied.deleted += rep.deleted;
    rp->st.applied.unchanged += rep.unchanged;
    rp->st.applied.conflicts += rep.conflicts;
    rp->st.applied.refused += rep.refused;
    if (rep.inserted || rep.updated || rep.deleted) rp->progress = 1;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Scans: one cursor pass per table over the rows of the queried nodes.
 * ------------------------------------------------------------------- */
static int sx_rp_q(sx_repair *rp, const sx_rnode *n, int kind, int filter,
                   int diff) {
  sx_rq q;
  size_t na = kind == SX_Q_KIDS ? 16 : kind == SX_Q_SELF ? 1 : 0;
  q.n = *n;
  q.kind = kind;
  q.filter = filter;
  q.diff = diff;
  q.acc = rp->nacc;
  if (na) {
    if (sx_rp_grow(rp, (void **)&rp->acc, &rp->capacc, rp->nacc + na,
                   sizeof(sx_racc)))
      return SYNC_ENOMEM;
    memset(rp->acc + rp->nacc, 0, na * sizeof(sx_racc));
    rp->nacc += na;
  }
  return SX_PUSH(rp, q, q);
}

/* The received row (dry run) with this key, or SIZE_MAX. */
static size_t sx_rp_frame_find(const sx_repair *rp, unsigned tid,
                               const unsigned char *key, size_t klen) {
  const sync_delta *d = rp->frame;
  size_t lo = 0, hi = d ? d->nrows : 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const sx_drow *dr = &d->rows[mid];
    int c = dr->tid != tid
                ? (dr->tid < tid ? -1 : 1)
                : sx_keycmp(d->arena.p + dr->koff, dr->klen, key, klen);
    if (c == 0) return mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return SIZE_MAX;
}

static int sx_rp_diff_row(sx_repair *rp, unsigned tid, const unsigned char *key,
                          size_t klen, uint64_t fp) {
  size_t j = sx_rp_frame_find(rp, tid, key, klen);
  uint64_t pf;
  int rc;
  if (j == SIZE_MAX) {
    rp->o.on_diff(rp->o.on_diff_ctx, tid, key, klen, SYNC_DIFF_LOCAL);
    return 0;
  }
  rp->matched[j] = 1;
  if ((rc = sx_rp_dfp(rp, rp->frame, j, &pf))) return rc;
  if (pf != fp)
    rp->o.on_diff(rp->o.on_diff_ctx, tid, key, klen, SYNC_DIFF_BOTH);
  return 0;
}

/* An answer to a row the peer just sent: the columns it sent with the
 * very stamps this row has are left out (it holds them). */
static void sx_rp_strip(sx_repair *rp, sync_txn *x, sync_delta *d, unsigned tid,
                        const unsigned char *key, size_t klen) {
  const sync_delta *f = rp->frame;
  size_t j = sx_rp_frame_find(rp, tid, key, klen), i, k, n;
  sx_drow *row;
  const sx_drow *fr;
  if (j == SIZE_MAX || !d->nrows) return;
  row = &d->rows[d->nrows - 1];
  fr = &f->rows[j];
  if (row->col0 + row->ncols != d->ncols) return; /* not the last added */
  for (i = k = 0, n = row->ncols; i < n; i++) {
    const sx_dcol *c = &d->cols[row->col0 + i];
    size_t m;
    int held = 0;
    for (m = 0; m < fr->ncols && !held; m++) {
      const sx_dcol *fc = &f->cols[fr->col0 + m];
      held = fc->col == c->col && fc->hlc == c->hlc && fc->site < f->nsites &&
             c->site < x->nsites &&
             !memcmp(f->sites[fc->site], x->sites[c->site], SX_SITE_LEN);
    }
    if (!held) d->cols[row->col0 + k++] = *c;
  }
  row->ncols = k;
  d->ncols = row->col0 + k;
}

static int sx_rp_scan(sx_repair *rp, sync_txn *x, sync_delta *d) {
  sync_env *env = rp->env;
  sx_rset s;
  size_t cap = 0, i, bytes = 0;
  unsigned ti;
  int rc = 0;
  memset(&s, 0, sizeof s);
  for (i = 0; i < rp->nq && !rc; i++)
    rc = sx_rset_add(rp, &s, &cap, &rp->q[i].n, i);
  if (rc) goto done;
  sx_rset_sort(&s);
  for (ti = 0; ti < rp->nt && !rc; ti++) {
    unsigned tid = rp->tids[ti];
    sx_scur *c;
    sx_slice k, v;
    int op = SX_FIRST;
    if (!s.depths[tid]) continue;
    if ((rc = sx_cur_open(env->st, x->t, env->tdbi[tid], &c))) break;
    for (;;) {
      const sx_rkey *hit[SX_RP_DEPTH + 1];
      size_t nh, h_i;
      uint64_t h, fp = 0, meta = 0, content;
      int live = 0, decoded = 0, added = 0;
      k.p = NULL;
      k.n = 0;
      rc = sx_cur_get(env->st, c, op, &k, &v);
      op = SX_NEXT;
      if (rc == SYNC_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc) break;
      h = sx_key_hash(tid, k.p, k.n);
      nh = sx_rset_find(&s, tid, h, hit);
      for (h_i = 0; h_i < nh && !rc; h_i++) {
        const sx_rq *q = &rp->q[hit[h_i]->i];
        if (!decoded) {
          if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &rp->row))) {
            sx_fail(env, rc, "table '%s': stored row fails its checksum",
                    env->schema->tables[tid].name);
            break;
          }
          if ((rc = sx_row_fp(x, tid, k.p, k.n, &rp->row, &content, &meta)) < 0)
            break;
          live = rc == 1;
          rc = 0;
          decoded = 1;
        }
        if (q->kind == SX_Q_SELF || q->kind == SX_Q_KIDS) {
          sx_racc *a = &rp->acc[q->acc];
          if (q->kind == SX_Q_KIDS) a += (h >> (60 - 4 * q->n.depth)) & 15;
          a->total++;
          a->bytes += v.n;
          a->sum += meta; /* tombstones count: a repaired replica holds
                             the deletes its vector will claim */
          if (live) a->live++;
          continue;
        }
        if ((q->filter || q->diff) &&
            (rc = sx_rp_sfp(x, tid, k.p, k.n, &rp->row, &fp)))
          break;
        if (q->diff && rp->frame &&
            (rc = sx_rp_diff_row(rp, tid, k.p, k.n, fp)))
          break;
        if (q->kind == SX_Q_DIFF) continue;
        if (added || (q->filter && sx_rp_hasfp(rp, fp))) continue;
        if ((rc = sx_delta_add(d, x, tid, k.p, k.n, &rp->row, rp->zvv, NULL, 1,
                               &bytes)))
          break;
        added = 1;
        if (q->filter && rp->frame) sx_rp_strip(rp, x, d, tid, k.p, k.n);
      }
      if (rc) break;
    }
    sx_cur_close(c);
  }
done:
  sx_free(&rp->al, s.k);
  return rc;
}

/* ---------------------------------------------------------------------
 * This side's turn
 * ------------------------------------------------------------------- */
static unsigned char *sx_w16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  return p + 2;
}

/* Diff: received rows of the leaves compared that this side lacks, for
 * the peer's leaves this side answered (pleaves) or for our leaves the
 * peer answered. */
static int sx_rp_unmatched(sx_repair *rp, int pleaves) {
  sx_rset ls;
  size_t j;
  int rc;
  if ((rc = sx_rp_leafset(rp, &ls))) return rc;
  for (j = 0; j < rp->frame->nrows; j++) {
    const sx_drow *dr = &rp->frame->rows[j];
    const unsigned char *key = rp->frame->arena.p + dr->koff;
    const sx_rkey *hit[SX_RP_DEPTH + 1];
    size_t nh, h_i;
    int in = 0;
    if (rp->matched[j]) continue;
    nh = sx_rset_find(&ls, dr->tid, sx_key_hash(dr->tid, key, dr->klen), hit);
    for (h_i = 0; h_i < nh; h_i++) {
      size_t i = hit[h_i]->i;
      if (pleaves ? i < rp->npleaf && !rp->pskip[i] : i >= rp->npleaf) in = 1;
    }
    if (in)
      rp->o.on_diff(rp->o.on_diff_ctx, dr->tid, key, dr->klen,
                    SYNC_DIFF_REMOTE);
  }
  sx_free(&rp->al, ls.k);
  return 0;
}

static int sx_rp_roots(sx_repair *rp, sync_txn *x, uint64_t *sum,
                       uint64_t *cnt) {
  unsigned i;
  int rc;
  for (i = 0; i < rp->nt; i++) {
    sx_tsum ts;
    if ((rc = sx_table_sum(x, rp->tids[i], &ts))) return rc;
    sum[i] = ts.meta;
    cnt[i] = ts.rows;
  }
  return 0;
}

/* Room in the message buffer. */
static int sx_rp_room(sx_repair *rp, unsigned char **p, size_t more) {
  size_t off = (size_t)(*p - rp->msg.p);
  rp->msg.len = off;
  if (sx_buf_reserve(&rp->msg, more)) return SYNC_ENOMEM;
  *p = rp->msg.p + off;
  return 0;
}

/* The ROOTS section: per table u64 S, var N and var the largest causal
 * length collected in it (so that a replica repaired against a collector
 * writes new rows above the deletes it never got). */
static int sx_rp_put_roots(sx_repair *rp, sync_txn *x, unsigned char **p,
                           uint64_t *sum, uint64_t *cnt) {
  unsigned i;
  int rc;
  if ((rc = sx_rp_roots(rp, x, sum, cnt))) return rc;
  if ((rc = sx_rp_room(rp, p, rp->nt * (8 + 2 * SX_VARINT_MAX)))) return rc;
  for (i = 0; i < rp->nt; i++) {
    uint64_t fresh;
    if ((rc = sx_fresh_cl(x, rp->tids[i], &fresh))) return rc;
    sx_put_le64(*p, sum[i]);
    *p = sx_wv(*p + 8, cnt[i]);
    *p = sx_wv(*p, x->gccl ? x->gccl[rp->tids[i]] : 0);
  }
  return 0;
}

/* VECTOR: this side's version vector as its requests claim it (vec
 * only).  Only once a pass ran: replicas found equal at the first
 * comparison spend no bytes on it (rows that moved come from a pass).  A
 * vector of more sites than a turn may carry is left out, and the peer
 * then takes none. */
static int sx_rp_put_vv(sx_repair *rp, sync_txn *x, unsigned char **p,
                        unsigned *flags) {
  uint64_t *vv, nrenew, sum;
  uint32_t i, n = 0;
  int rc;
  if (!rp->o.vec || !rp->st.passes) return 0;
  /* A replica that keeps renewal records sends them with the runs whose
   * vector a requester takes (renew.c): a vector taken here, without
   * them, would let its runs leave them out. */
  if ((rc = sx_renew_sum(x, &nrenew, &sum)) || nrenew) return rc;
  if ((rc = sx_vv_load(x, &vv))) return rc;
  if ((rc = sx_fold_cap(x, vv))) {
    sx_free(&rp->al, vv);
    return rc;
  }
  for (i = 0; i < x->nsites; i++)
    if (vv[i]) n++;
  if (n <= SX_RP_MAXVV &&
      !(rc = sx_rp_room(rp, p, SX_VARINT_MAX +
                                   (size_t)n * (SX_SITE_LEN + SX_VARINT_MAX)))) {
    *p = sx_wv(*p, n);
    for (i = 0; i < x->nsites; i++) {
      if (!vv[i]) continue;
      memcpy(*p, x->sites[i], SX_SITE_LEN);
      *p = sx_wv(*p + SX_SITE_LEN, vv[i]);
    }
    *flags |= SX_RT_VECTOR;
  }
  sx_free(&rp->al, vv);
  return rc;
}

static int sx_rp_fits(const sx_repair *rp, const sx_racc *a, size_t rows,
                      size_t bytes) {
  return a->total <= rp->o.budget - rows &&
         (rows == 0 ||
          (bytes < rp->o.max_bytes && a->bytes <= rp->o.max_bytes - bytes));
}

/* Leaf, split or defer a node that differs, from this side's sums. */
#define SX_DEC_LEAF 1
#define SX_DEC_SPLIT 2
#define SX_DEC_DEFER 3
static int sx_rp_decide(sx_repair *rp, const sx_rnode *n, const sx_racc *a,
                        size_t *rows, size_t *bytes) {
  int fits = sx_rp_fits(rp, a, *rows, *bytes);
  if (a->live <= SX_RP_LEAF && fits) {
    *rows += (size_t)a->total;
    *bytes += (size_t)a->bytes;
    return SX_DEC_LEAF;
  }
  if (n->depth < SX_RP_DEPTH && rp->nnsplit < SX_RP_MAXOPEN)
    return SX_DEC_SPLIT;
  if (fits) {
    *rows += (size_t)a->total;
    *bytes += (size_t)a->bytes;
    return SX_DEC_LEAF;
  }
  rp->progress = 1; /* left for the next pass */
  return SX_DEC_DEFER;
}

static int sx_rp_newdelta(sx_repair *rp, sync_txn *x, sync_delta **out) {
  sync_env *env = rp->env;
  sync_delta *d;
  int rc;
  *out = NULL;
  if ((rc = sx_scratch(x)) || (rc = sx_sites_load(x))) return rc;
  if (rp->nzvv < x->nsites) {
    sx_free(&rp->al, rp->zvv);
    rp->zvv = (uint64_t *)sx_malloc(&rp->al, sizeof(uint64_t) * x->nsites);
    rp->nzvv = rp->zvv ? x->nsites : 0;
    if (!rp->zvv) return SYNC_ENOMEM;
    memset(rp->zvv, 0, sizeof(uint64_t) * x->nsites);
  }
  d = sx_delta_new(&env->al);
  if (!d) return SYNC_ENOMEM;
  memcpy(d->sender, x->self, SX_SITE_LEN);
  memcpy(d->receiver, rp->o.peer, SX_SITE_LEN);
  d->schema_hash = env->schema->hash;
  d->last = 1;
  d->repair = 1;
  *out = d;
  return 0;
}

static int sx_rp_seal(sx_repair *rp, sync_txn *x, sync_delta *d) {
  sync_env *env = rp->env;
  d->nsites = x->nsites;
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(
      &env->al, (size_t)(x->nsites ? x->nsites : 1) * SX_SITE_LEN);
  d->vv = (uint64_t *)sx_malloc(&env->al,
                                sizeof(uint64_t) * (x->nsites ? x->nsites : 1));
  if (!d->sites || !d->vv) return SYNC_ENOMEM;
  memcpy(d->sites, x->sites, (size_t)x->nsites * SX_SITE_LEN);
  memset(d->vv, 0, sizeof(uint64_t) * x->nsites);
  d->nvv = x->nsites;
  /* The fold records its counter cells need: the peer's vector is not
   * known here, so every one they need. */
  {
    int rc = sx_fold_attach(x, d, NULL, NULL, NULL);
    if (rc) return rc;
  }
  sx_fold_sort(d);
  return 0;
}

/* This side's turn being written. */
typedef struct sx_rturn {
  unsigned char *p; /* the message, written up to here */
  unsigned flags;
  int dodiff;         /* a dry run with on_diff, and a received frame */
  size_t rows, bytes; /* what the frame will carry */
  sync_delta *d;      /* the frame being cut */
  sync_delta *out;    /* the frame to send, once sealed */
  uint64_t sum[SYNC_MAX_TABLES], cnt[SYNC_MAX_TABLES]; /* our roots */
} sx_rturn;

/* Diff: the peer's answers to our leaves, against our rows there. */
static int sx_rp_diff_answered(sx_repair *rp, sync_txn *x, sx_rturn *t) {
  size_t j;
  int rc;
  for (j = 0; j < rp->nanswered; j++)
    if ((rc = sx_rp_q(rp, &rp->answered[j], SX_Q_DIFF, 0, 1))) return rc;
  if ((rc = sx_rp_scan(rp, x, t->d)) || (rc = sx_rp_unmatched(rp, 0)))
    return rc;
  rp->nq = rp->nacc = 0;
  return 0;
}

/* Another pass only when the last one changed rows or deferred nodes, or
 * once more (not in a diff) in case fingerprints collided: rows refused
 * by the rights, or written meanwhile, end it so.  nd: the tables whose
 * roots differ. */
static int sx_rp_pass_ends(const sx_repair *rp, unsigned nd) {
  return !nd || rp->st.passes >= SX_RP_MAXPASS ||
         (rp->st.passes && !rp->progress && !rp->peer_progress &&
          (rp->o.dry || rp->st.passes >= 2));
}

/* The peer's roots against ours: equal ends the repair, else a pass
 * opens with a leaf and a split mask over the tables that differ. */
static int sx_rp_open_pass(sx_repair *rp, sync_txn *x, sx_rturn *t) {
  size_t mb = (rp->nt + 7) / 8, qa;
  unsigned char lm[(SYNC_MAX_TABLES + 7) / 8], sm[(SYNC_MAX_TABLES + 7) / 8];
  sx_rnode roots[SYNC_MAX_TABLES];
  unsigned nd = 0, dt[SYNC_MAX_TABLES], i;
  int rc;
  if ((rc = sx_rp_roots(rp, x, t->sum, t->cnt))) return rc;
  rp->st.nodes += rp->nt;
  for (i = 0; i < rp->nt; i++)
    if (t->sum[i] != rp->psum[i] || t->cnt[i] != rp->pcnt[i]) dt[nd++] = i;
  if (sx_rp_pass_ends(rp, nd)) {
    t->flags = SX_RT_DONE | (nd ? 0 : SX_RT_EQUAL);
    rp->st.done = 1;
    rp->st.equal = !nd;
    if (nd) return 0;
    /* Equal: we hold the peer's rows as its roots stood; it holds ours
     * as they stand here. */
    sx_rp_take_vv(rp);
    return sx_rp_put_vv(rp, x, &t->p, &t->flags);
  }
  rp->st.passes++;
  rp->progress = rp->peer_progress = 0;
  memset(lm, 0, sizeof lm);
  memset(sm, 0, sizeof sm);
  for (i = 0; i < nd; i++) {
    roots[i].tid = rp->tids[dt[i]];
    roots[i].depth = 0;
    roots[i].pre = 0;
    /* A root with many live rows splits: no need to count its rows. */
    if (t->cnt[dt[i]] <= SX_RP_LEAF &&
        (rc = sx_rp_q(rp, &roots[i], SX_Q_SELF, 0, 0)))
      return rc;
  }
  if (rp->nq && (rc = sx_rp_scan(rp, x, t->d))) return rc;
  qa = 0;
  for (i = 0; i < nd; i++) {
    sx_racc big;
    int dec;
    memset(&big, 0, sizeof big);
    big.live = big.total = t->cnt[dt[i]];
    big.bytes = SIZE_MAX;
    dec = sx_rp_decide(rp, &roots[i],
                       t->cnt[dt[i]] <= SX_RP_LEAF ? &rp->acc[rp->q[qa++].acc]
                                                   : &big,
                       &t->rows, &t->bytes);
    if (dec == SX_DEC_LEAF) {
      lm[dt[i] >> 3] |= (unsigned char)(1u << (dt[i] & 7));
      if ((rc = SX_PUSH(rp, nleaf, roots[i]))) return rc;
    } else if (dec == SX_DEC_SPLIT) {
      sm[dt[i] >> 3] |= (unsigned char)(1u << (dt[i] & 7));
      if ((rc = SX_PUSH(rp, nsplit, roots[i]))) return rc;
    }
  }
  if ((rc = sx_rp_room(rp, &t->p, 2 * mb))) return rc;
  memcpy(t->p, lm, mb);
  memcpy(t->p + mb, sm, mb);
  t->p += 2 * mb;
  return 0;
}

/* The peer's leaves, from this side's sums: answered with rows into the
 * frame, split (bit set in am), or left for the next pass. */
static int sx_rp_answer_leaves(sx_repair *rp, sx_rturn *t, unsigned char *am) {
  size_t j;
  int rc;
  for (j = 0; j < rp->npleaf; j++) {
    const sx_racc *a = &rp->acc[rp->q[j].acc];
    int fits = sx_rp_fits(rp, a, t->rows, t->bytes);
    rp->st.nodes++;
    if (!fits && rp->pleaf[j].depth < SX_RP_DEPTH &&
        rp->nnsplit < SX_RP_MAXOPEN) {
      am[j >> 3] |= (unsigned char)(1u << (j & 7));
      if ((rc = SX_PUSH(rp, nsplit, rp->pleaf[j]))) return rc;
      rp->pskip[j] = 1;
    } else if (!fits) {
      rp->progress = 1; /* answered empty: the next pass finds it */
      rp->pskip[j] = 1;
    } else {
      t->rows += (size_t)a->total;
      t->bytes += (size_t)a->bytes;
    }
  }
  return 0;
}

/* The verdict on a node's children: whichever is shorter, a list of the
 * children answered, or two masks. */
static unsigned char *sx_rp_put_kids(unsigned char *p, unsigned lmask,
                                     unsigned smask) {
  unsigned m = lmask | smask, ne = 0, c;
  for (c = 0; c < 16; c++) ne += (m >> c) & 1;
  if (ne + 1 < 5) {
    *p++ = (unsigned char)ne;
    for (c = 0; c < 16; c++)
      if ((m >> c) & 1)
        *p++ = (unsigned char)(c | ((lmask >> c) & 1 ? 0x10u : 0x20u));
    return p;
  }
  *p++ = SX_RP_MASKS;
  return sx_w16(sx_w16(p, lmask), smask);
}

/* A node the peer split, compared child by child with this side's sums
 * (a: its 16 accumulators): each child that differs becomes a leaf, a
 * split or is deferred. */
static int sx_rp_compare_open(sx_repair *rp, sx_rturn *t, const sx_ropen *o,
                              const sx_racc *a) {
  unsigned lmask = 0, smask = 0, c;
  int rc;
  for (c = 0; c < 16; c++) {
    int mine = a[c].total != 0, theirs = (int)((o->mask >> c) & 1u);
    sx_rnode ch = sx_rp_child(&o->n, c);
    int dec;
    rp->st.nodes++;
    if (mine == theirs &&
        (!mine || sx_rp_fpw(&a[c], rp->st.passes) == o->fp[c]))
      continue;
    dec = sx_rp_decide(rp, &ch, &a[c], &t->rows, &t->bytes);
    if (dec == SX_DEC_LEAF) {
      lmask |= 1u << c;
      if ((rc = SX_PUSH(rp, nleaf, ch))) return rc;
    } else if (dec == SX_DEC_SPLIT) {
      smask |= 1u << c;
      if ((rc = SX_PUSH(rp, nsplit, ch))) return rc;
    }
  }
  t->p = sx_rp_put_kids(t->p, lmask, smask);
  return 0;
}

/* Answers to the peer's leaves, and its splits compared with ours. */
static int sx_rp_answer(sx_repair *rp, sync_txn *x, sx_rturn *t) {
  size_t mb = (rp->npleaf + 7) / 8, j;
  unsigned char *am;
  int rc;
  if ((rc = sx_rp_grow(rp, (void **)&rp->pskip, &rp->cappskip, rp->npleaf + 1,
                       1)))
    return rc;
  memset(rp->pskip, 0, rp->npleaf + 1);
  for (j = 0; j < rp->npleaf; j++)
    if ((rc = sx_rp_q(rp, &rp->pleaf[j], SX_Q_SELF, 0, 0))) return rc;
  for (j = 0; j < rp->nopen; j++)
    if ((rc = sx_rp_q(rp, &rp->open[j].n, SX_Q_KIDS, 0, 0))) return rc;
  if ((rc = sx_rp_scan(rp, x, t->d))) return rc;
  if ((rc = sx_rp_room(rp, &t->p, mb + 5 * rp->nopen))) return rc;
  am = t->p;
  memset(am, 0, mb);
  t->p += mb;
  /* the queries: the peer's leaves first, then its open nodes */
  if ((rc = sx_rp_answer_leaves(rp, t, am))) return rc;
  for (j = 0; j < rp->nopen; j++)
    if ((rc = sx_rp_compare_open(rp, t, &rp->open[j],
                                 &rp->acc[rp->q[rp->npleaf + j].acc])))
      return rc;
  return 0;
}

/* Second pass: the frame's rows and the fingerprints of the splits. */
static int sx_rp_fill(sx_repair *rp, sync_txn *x, sx_rturn *t) {
  size_t j, qa;
  int rc;
  rp->nq = rp->nacc = 0;
  for (j = 0; j < rp->npleaf; j++)
    if (!rp->pskip[j] &&
        (rc = sx_rp_q(rp, &rp->pleaf[j], SX_Q_ROWS, !rp->o.dry, t->dodiff)))
      return rc;
  for (j = 0; j < rp->nnleaf; j++)
    if ((rc = sx_rp_q(rp, &rp->nleaf[j], SX_Q_ROWS, 0, 0))) return rc;
  qa = rp->nq;
  for (j = 0; j < rp->nnsplit; j++)
    if ((rc = sx_rp_q(rp, &rp->nsplit[j], SX_Q_KIDS, 0, 0))) return rc;
  if (rp->nq && (rc = sx_rp_scan(rp, x, t->d))) return rc;
  if ((rc = sx_rp_room(rp, &t->p, rp->nnsplit * (2 + 16 * SX_RP_FPB))))
    return rc;
  for (j = 0; j < rp->nnsplit; j++) {
    const sx_racc *a = &rp->acc[rp->q[qa + j].acc];
    unsigned mask = 0, c;
    for (c = 0; c < 16; c++)
      if (a[c].total) mask |= 1u << c;
    t->p = sx_w16(t->p, mask);
    for (c = 0; c < 16; c++)
      if (a[c].total) {
        uint32_t f = sx_rp_fpw(&a[c], rp->st.passes);
        t->p[0] = (unsigned char)f;
        t->p[1] = (unsigned char)(f >> 8);
        t->p[2] = (unsigned char)(f >> 16);
        t->p += SX_RP_FPB;
      }
  }
  return 0;
}

/* The end of the turn: the diff of the peer's leaves, our roots when
 * nothing more is asked of the peer, and the frame sealed. */
static int sx_rp_close(sx_repair *rp, sync_txn *x, sx_rturn *t) {
  int rc;
  if (t->dodiff && (rc = sx_rp_unmatched(rp, 1))) return rc;
  if (!rp->nnsplit && !rp->nnleaf) {
    /* Nothing more asked of the peer: our roots close the pass. */
    if ((rc = sx_rp_put_roots(rp, x, &t->p, t->sum, t->cnt)) ||
        (rc = sx_rp_put_vv(rp, x, &t->p, &t->flags)))
      return rc;
    t->flags |= SX_RT_ROOTS;
  }
  if (t->d->nrows) {
    t->flags |= SX_RT_FRAME;
    rp->st.rows += t->d->nrows;
    if ((rc = sx_rp_seal(rp, x, t->d))) return rc;
    t->out = t->d;
    t->d = NULL;
  }
  return 0;
}

/* A turn after the opening one: the nodes asked of this side answered,
 * and the nodes it asks of the peer listed. */
static int sx_rp_turn_nodes(sx_repair *rp, sync_txn *x, sx_rturn *t) {
  int rc;
  if ((rc = sx_rp_newdelta(rp, x, &t->d))) return rc;
  if (t->dodiff && rp->nanswered && (rc = sx_rp_diff_answered(rp, x, t)))
    return rc;
  if (rp->vopen) {
    if ((rc = sx_rp_open_pass(rp, x, t))) return rc;
    if (t->flags & SX_RT_DONE) return 0;
  } else if ((rc = sx_rp_answer(rp, x, t))) {
    return rc;
  }
  if ((rc = sx_rp_fill(rp, x, t))) return rc;
  return sx_rp_close(rp, x, t);
}

/* The turn is written: the flags in front, and what we listed becomes
 * what the peer's next turn refers to. */
static void sx_rp_turn_end(sx_repair *rp, sx_rturn *t) {
  sx_rnode *n;
  size_t tc;
  if (rp->progress) t->flags |= SX_RT_PROGRESS;
  rp->msg.p[0] = (unsigned char)t->flags;
  rp->msg.len = (size_t)(t->p - rp->msg.p);
  rp->sent_roots = (t->flags & SX_RT_ROOTS) != 0;
  n = rp->mysplit, rp->mysplit = rp->nsplit, rp->nsplit = n;
  tc = rp->capmysplit, rp->capmysplit = rp->capnsplit, rp->capnsplit = tc;
  rp->nmysplit = rp->nnsplit;
  n = rp->myleaf, rp->myleaf = rp->nleaf, rp->nleaf = n;
  tc = rp->capmyleaf, rp->capmyleaf = rp->capnleaf, rp->capnleaf = tc;
  rp->nmyleaf = rp->nnleaf;
  rp->nnsplit = rp->nnleaf = 0;
  rp->npleaf = rp->nopen = rp->nanswered = 0;
  rp->vopen = 0;
  rp->st.turns++;
  sync_delta_free(rp->frame);
  rp->frame = NULL;
}

static int sx_rp_turn_x(sx_repair *rp, sync_txn *x, int first,
                        sync_delta **dout) {
  sx_rturn t;
  int rc;
  memset(&t, 0, sizeof t);
  t.dodiff = rp->o.dry && rp->o.on_diff && rp->frame;
  rp->msg.len = 0;
  rp->nq = rp->nacc = rp->nnsplit = rp->nnleaf = 0;
  if ((rc = sx_buf_reserve(&rp->msg, 1 + SX_VARINT_MAX))) return rc;
  t.p = rp->msg.p + 1; /* flags go in front once known */
  if (first) {
    t.flags = SX_RT_FIRST | SX_RT_ROOTS;
    t.p = sx_wv(t.p, x->base_version);
    rc = sx_rp_put_roots(rp, x, &t.p, t.sum, t.cnt);
    if (!rc) rc = sx_rp_put_vv(rp, x, &t.p, &t.flags);
  } else {
    rc = sx_rp_turn_nodes(rp, x, &t);
  }
  sync_delta_free(t.d);
  if (rc) {
    sync_delta_free(t.out);
    return rc;
  }
  sx_rp_turn_end(rp, &t);
  *dout = t.out;
  return 0;
}

SYNC_PRIVATE int sx_rp_turn(sx_repair *rp, int first, const unsigned char **msg,
                            size_t *n, sync_delta **d) {
  sync_txn *x;
  int rc;
  *d = NULL;
  *msg = NULL;
  *n = 0;
  if ((rc = sync_txn_begin(rp->env, SYNC_TXN_RDONLY, &x))) return rc;
  rc = sx_rp_turn_x(rp, x, first, d);
  sync_txn_abort(x);
  if (rc) {
    if (!rp->err[0])
      snprintf(rp->err, sizeof rp->err, "repair: %s", sync_strerror(rc));
    return rc;
  }
  *msg = rp->msg.p;
  *n = rp->msg.len;
  return 0;
}

#endif /* SYNC_OMIT_REPAIR */
