/*
 * merge.c - replication between replicas: requests, delta chunks, the
 * CRDT merge with conflict classes, the conflict log, version vectors,
 * peers, tombstone collection and the content digest.
 *
 * A receiver's position in a sender's log is a cursor (peer record,
 * stored by the receiver):
 *   log mode      (version, seq): every log entry up to it is held;
 *   initial mode  the sender streams its tables in key order; (table,
 *                 last key) says how far, v0 the sender's version when
 *                 the stream began.  When the stream ends the cursor
 *                 becomes (v0, max seq) in log mode, so whatever changed
 *                 during the stream follows from the log.
 * A chunk carries the cursor it starts from and the one it ends at.  The
 * receiver moves its cursor only when the chunk starts where it stands,
 * and raises its version vector to the sender's (sent with every chunk)
 * only when such a chunk is the last.  Everything else is plain merging,
 * which is commutative, associative and idempotent.
 *
 * Sender-side stores: sx.vv (site index u32 BE -> highest HLC held of
 * that site; this replica's own entry is the state HLC), sx.peers (site id
 * -> peer record), sx.conflicts (id u64 BE -> conflict record).
 */
#include "merge.h"

#include "clock.h"
#include "hash.h"

#include <stdio.h>
#include <stdlib.h>

struct sync_conflicts {
  sx_alloc al;
  sync_txn *x;
  sx_scur *c;
  unsigned flags;
  int started;
  unsigned char last[8];
};

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */
static int sx_bit(const unsigned char *set, unsigned i) {
  return (set[i >> 3] >> (i & 7)) & 1;
}

static int sx_stampcmp(uint64_t ha, const uint8_t *sa, uint64_t hb,
                       const uint8_t *sb) {
  if (ha != hb) return ha < hb ? -1 : 1;
  return memcmp(sa, sb, SX_SITE_LEN);
}

SYNC_PRIVATE int sx_poscmp(uint64_t va, uint32_t sa, uint64_t vb, uint32_t sb) {
  if (va != vb) return va < vb ? -1 : 1;
  return sa < sb ? -1 : sa > sb;
}

static int sx_cursor_eq(const sx_cursor *a, const sx_cursor *b) {
  if (a->mode != b->mode) return 0;
  if (a->mode == SX_MODE_LOG) return a->version == b->version && a->seq == b->seq;
  return a->v0 == b->v0 && a->tid == b->tid && a->klen == b->klen &&
         !memcmp(a->key, b->key, a->klen);
}

/* Does cursor cur (where a receiver stands) already include position p? */
static int sx_cursor_covers(const sx_cursor *cur, const sx_cursor *p) {
  if (cur->mode == SX_MODE_LOG && p->mode == SX_MODE_LOG)
    return (cur->version || cur->seq) &&
           sx_poscmp(p->version, p->seq, cur->version, cur->seq) <= 0;
  if (cur->mode == SX_MODE_LOG && p->mode == SX_MODE_INITIAL)
    return (cur->version || cur->seq) && p->v0 <= cur->version;
  if (cur->mode == SX_MODE_INITIAL && p->mode == SX_MODE_INITIAL)
    return p->v0 == cur->v0 &&
           (p->tid < cur->tid ||
            (p->tid == cur->tid && p->klen &&
             sx_keycmp(p->key, p->klen, cur->key, cur->klen) <= 0));
  return 0;
}

/* Peer record: u8 mode, u64 version, u32 seq, u64 v0, u32 tid, u64
 * acked version, u32 acked seq, u16 klen, key.  All little-endian. */
#define SX_PEER_FIXED 39

SYNC_PRIVATE int sx_peer_get(sync_txn *x, const uint8_t *site, sx_peer *p) {
  sx_slice v;
  int rc;
  memset(p, 0, sizeof *p);
  rc = sx_get(x->env->st, x->t, x->env->peers, site, SX_SITE_LEN, &v);
  if (rc == SYNC_NOTFOUND) return SYNC_NOTFOUND;
  if (rc) return rc;
  if (v.n < SX_PEER_FIXED) return SYNC_ECORRUPT;
  p->cur.mode = v.p[0] & 0x3f;
  p->tainted = v.p[0] >> 7;
  p->stale = (v.p[0] >> 6) & 1;
  p->cur.version = sx_get_le64(v.p + 1);
  p->cur.seq = sx_get_le32(v.p + 9);
  p->cur.v0 = sx_get_le64(v.p + 13);
  p->cur.tid = sx_get_le32(v.p + 21);
  p->acked_version = sx_get_le64(v.p + 25);
  p->acked_seq = sx_get_le32(v.p + 33);
  p->cur.klen = (size_t)v.p[37] | ((size_t)v.p[38] << 8);
  if (p->cur.mode > SX_MODE_INITIAL || p->cur.klen > SYNC_MAX_KEY ||
      (v.n != SX_PEER_FIXED + p->cur.klen &&
       v.n < SX_PEER_FIXED + p->cur.klen + 16))
    return SYNC_ECORRUPT;
  memcpy(p->cur.key, v.p + SX_PEER_FIXED, p->cur.klen);
  if (v.n >= SX_PEER_FIXED + p->cur.klen + 16) {
    /* The mark, since storage format 2. */
    p->mark.id = sx_get_le64(v.p + SX_PEER_FIXED + p->cur.klen);
    p->mark.start = sx_get_le64(v.p + SX_PEER_FIXED + p->cur.klen + 8);
  }
  if (v.n > SX_PEER_FIXED + p->cur.klen + 16) {
    /* The scope the cursor was served with, since storage format 4. */
    sx_rd r;
    r.p = v.p + SX_PEER_FIXED + p->cur.klen + 16;
    r.end = v.p + v.n;
    r.bad = 0;
    if (sx_rscope(&r, &p->scope) || r.bad || r.p != r.end)
      return SYNC_ECORRUPT;
  }
  return 0;
}

SYNC_PRIVATE uint64_t sx_cursor_version(const sx_cursor *c) {
  return c->mode == SX_MODE_LOG ? c->version : c->v0;
}

SYNC_PRIVATE int sx_peer_put(sync_txn *x, const uint8_t *site,
                             const sx_peer *p) {
  unsigned char b[SX_PEER_FIXED + SYNC_MAX_KEY + 16 + SX_SCOPE_MAX], *e;
  int rc;
  b[0] = (unsigned char)(p->cur.mode | (p->tainted ? 0x80 : 0) |
                         (p->stale ? 0x40 : 0));
  sx_put_le64(b + 1, p->cur.version);
  sx_put_le32(b + 9, p->cur.seq);
  sx_put_le64(b + 13, p->cur.v0);
  sx_put_le32(b + 21, p->cur.tid);
  sx_put_le64(b + 25, p->acked_version);
  sx_put_le32(b + 33, p->acked_seq);
  b[37] = (unsigned char)p->cur.klen;
  b[38] = (unsigned char)(p->cur.klen >> 8);
  memcpy(b + SX_PEER_FIXED, p->cur.key, p->cur.klen);
  sx_put_le64(b + SX_PEER_FIXED + p->cur.klen, p->mark.id);
  sx_put_le64(b + SX_PEER_FIXED + p->cur.klen + 8, p->mark.start);
  e = b + SX_PEER_FIXED + p->cur.klen + 16;
  if (p->scope.flags) e = sx_wscope(e, &p->scope);
  rc = sx_put(x->env->st, x->t, x->env->peers, site, SX_SITE_LEN, b,
              (size_t)(e - b), 0);
  if (rc) x->failed = 1;
  return rc;
}

/* Call fn on every peer record, in site id order; stops at fn's first
 * nonzero return, which it returns. */
SYNC_PRIVATE int sx_peers_each(sync_txn *x,
                               int (*fn)(void *ctx, const uint8_t *site,
                                         const sx_peer *p),
                               void *ctx) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  int rc, op = SX_FIRST;
  if ((rc = sx_cur_open(env->st, x->t, env->peers, &c))) return rc;
  for (;;) {
    sx_peer p;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != SX_SITE_LEN) {
      rc = SYNC_ECORRUPT;
      break;
    }
    if ((rc = sx_peer_get(x, k.p, &p)) || (rc = fn(ctx, k.p, &p))) break;
  }
  sx_cur_close(c);
  return rc;
}

/* The version vector of this replica, per local site index (own entry:
 * the state HLC).  *out has x->nsites entries, allocated. */
static int sx_vv_load(sync_txn *x, uint64_t **out) {
  sync_env *env = x->env;
  uint64_t *vv;
  sx_scur *c;
  sx_slice k, v;
  int rc, op = SX_FIRST;
  *out = NULL;
  if ((rc = sx_sites_load(x))) return rc;
  vv = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * x->nsites);
  if (!vv) return SYNC_ENOMEM;
  memset(vv, 0, sizeof(uint64_t) * x->nsites);
  if ((rc = sx_cur_open(env->st, x->t, env->vv, &c))) {
    sx_free(&env->al, vv);
    return rc;
  }
  for (;;) {
    uint32_t i;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != 4 || v.n != 8) {
      rc = SYNC_ECORRUPT;
      break;
    }
    i = sx_get_be32(k.p);
    if (i < x->nsites) vv[i] = sx_get_le64(v.p);
  }
  sx_cur_close(c);
  if (rc) {
    sx_free(&env->al, vv);
    return rc;
  }
  vv[0] = x->hlc_last;
  {
    /* Rows of ours that left our scope are gone: our own entry claims no
     * more than what we still hold (sx_vv_lower). */
    sx_slice f;
    rc = sx_get(env->st, x->t, env->meta, "xfloor", 6, &f);
    if (rc == 0 && f.n == 8 && sx_get_le64(f.p) < vv[0])
      vv[0] = sx_get_le64(f.p);
    if (rc && rc != SYNC_NOTFOUND) {
      sx_free(&env->al, vv);
      return rc;
    }
  }
  *out = vv;
  return 0;
}

/* ---------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------- */
SYNC_API int sync_request_make(sync_txn *x, const uint8_t sender[16],
                               sync_request **out) {
  sync_env *env;
  sync_request *r;
  sx_peer p;
  uint64_t *vv = NULL;
  uint32_t i;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || !sender) return SYNC_EINVAL;
  env = x->env;
  if (!memcmp(sender, env->site, SX_SITE_LEN)) return SYNC_EINVAL;
  rc = sx_peer_get(x, sender, &p);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if ((rc = sx_vv_load(x, &vv))) return rc;
  r = (sync_request *)sx_malloc(&env->al, sizeof *r);
  if (!r) {
    sx_free(&env->al, vv);
    return SYNC_ENOMEM;
  }
  memset(r, 0, sizeof *r);
  r->al = env->al;
  r->vv = (sync_stamp *)sx_malloc(&env->al, sizeof(sync_stamp) * x->nsites);
  if (!r->vv) {
    sx_free(&env->al, vv);
    sx_free(&env->al, r);
    return SYNC_ENOMEM;
  }
  for (i = 0; i < x->nsites; i++) {
    if (!vv[i]) continue;
    r->vv[r->nvv].hlc = vv[i];
    memcpy(r->vv[r->nvv].site, x->sites[i], SX_SITE_LEN);
    r->nvv++;
  }
  sx_free(&env->al, vv);
  memcpy(r->requester, env->site, SX_SITE_LEN);
  memcpy(r->sender, sender, SX_SITE_LEN);
  r->schema_hash = env->schema->hash;
  r->cur = p.cur;
  r->mark = p.mark;
  r->scope = p.scope;
  *out = r;
  return 0;
}

SYNC_API void sync_request_free(sync_request *r) {
  sx_alloc al;
  if (!r) return;
  al = r->al;
  sx_free(&al, r->vv);
  sx_free(&al, r);
}

SYNC_API int sync_request_ack(sync_txn *x, const sync_request *r) {
  sx_peer p;
  int rc;
  if (!x || !r || memcmp(r->sender, x->env->site, SX_SITE_LEN) ||
      !memcmp(r->requester, x->env->site, SX_SITE_LEN))
    return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  /* A position that is not in our history acknowledges nothing of it
   * (tombstone collection would trust it). */
  if ((rc = sx_history_check(x, sx_cursor_version(&r->cur), &r->mark)))
    return rc;
  rc = sx_peer_get(x, r->requester, &p);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  /* Only log mode positions acknowledge log entries; an initial stream
   * in progress acknowledges nothing yet. */
  if (r->cur.mode == SX_MODE_LOG &&
      sx_poscmp(r->cur.version, r->cur.seq, p.acked_version, p.acked_seq) > 0) {
    p.acked_version = r->cur.version;
    p.acked_seq = r->cur.seq;
  }
  return sx_peer_put(x, r->requester, &p);
}

/* ---------------------------------------------------------------------
 * Making deltas
 * ------------------------------------------------------------------- */
SYNC_PRIVATE sync_delta *sx_delta_new(const sx_alloc *al) {
  sync_delta *d = (sync_delta *)sx_malloc(al, sizeof *d);
  if (!d) return NULL;
  memset(d, 0, sizeof *d);
  d->al = *al;
  sx_buf_init(&d->arena, &d->al);
  return d;
}

SYNC_API void sync_delta_free(sync_delta *d) {
  sx_alloc al;
  if (!d) return;
  al = d->al;
  sx_free(&al, d->sites);
  sx_free(&al, d->vv);
  sx_free(&al, d->rows);
  sx_free(&al, d->cols);
  sx_free(&al, d->xrows);
  sx_free(&al, d->xcols);
  sx_free(&al, d->renew);
  sx_buf_free(&d->arena);
  sx_free(&al, d);
}

SYNC_API size_t sync_delta_rows(const sync_delta *d) {
  return d ? d->nrows : 0;
}

SYNC_API int sync_delta_last(const sync_delta *d) { return d ? d->last : 0; }

/* Add row r (decoded, local stamps) to d, leaving out what the requester
 * already holds (rvv, per local site index) and local-only columns.
 * *bytes grows by the value bytes added. */
SYNC_PRIVATE int sx_delta_add(sync_delta *d, sync_txn *x, unsigned tid,
                              const unsigned char *key, size_t klen,
                              const sx_row *r, const uint64_t *rvv,
                              const sync_delta_opts *o, int keyed,
                              size_t *bytes) {
  const sx_table *tb = &x->env->schema->tables[tid];
  const sx_stamp *cs = &r->stamps[r->cl_stamp];
  sx_drow *row;
  size_t i, n0 = d->ncols;
  int rc, need = cs->hlc > rvv[cs->site];
  if ((rc = sx_grow(&d->al, (void **)&d->cols, &d->capcols,
                    d->ncols + r->ncols, sizeof(sx_dcol))))
    return rc;
  for (i = 0; i < r->ncols && (r->cl & 1); i++) {
    const sx_rcol *c = &r->cols[i];
    sx_dcol *dc;
    if (c->st == SX_NOSTAMP) continue;
    if (i < tb->ncols && (tb->cols[i].flags & SYNC_COL_LOCAL)) continue;
    if (r->stamps[c->st].hlc <= rvv[r->stamps[c->st].site] &&
        !(o && o->whole_rows))
      continue;
    dc = &d->cols[d->ncols++];
    dc->col = (unsigned)i;
    dc->hlc = r->stamps[c->st].hlc;
    dc->site = r->stamps[c->st].site;
    dc->bhlc = c->base == SX_NOSTAMP ? 0 : r->stamps[c->base].hlc;
    dc->bsite = c->base == SX_NOSTAMP ? 0 : r->stamps[c->base].site;
    dc->v = c->v;
    if (c->v.type == SYNC_TEXT || c->v.type == SYNC_BLOB) {
      size_t off = d->arena.len;
      if ((rc = sx_buf_reserve(&d->arena, c->v.len))) return rc;
      if (c->v.len) memcpy(d->arena.p + off, c->v.data, c->v.len);
      d->arena.len += c->v.len;
      /* The arena moves as it grows: keep the offset, sx_dval adds the base. */
      dc->v.data = (const void *)(uintptr_t)off; /* NOLINT(performance-no-int-to-ptr) */
      *bytes += c->v.len;
    }
    *bytes += 10;
  }
  /* The requester has it all.  An initial stream still names the row
   * (key, causal length, stamp): there, a row the receiver holds that the
   * stream leaves out is one this replica deleted and collected. */
  if (!need && !keyed) {
    /* Whole rows: a row is still left out when all of it is held. */
    size_t j, news = 0;
    for (j = n0; j < d->ncols; j++)
      if (d->cols[j].hlc > rvv[d->cols[j].site]) news++;
    if (!news) {
      d->ncols = n0;
      return 0;
    }
  }
  if ((rc = sx_grow(&d->al, (void **)&d->rows, &d->caprows, d->nrows + 1,
                    sizeof(sx_drow))))
    return rc;
  row = &d->rows[d->nrows];
  row->tid = tid;
  row->koff = d->arena.len;
  row->klen = klen;
  if ((rc = sx_buf_reserve(&d->arena, klen))) return rc;
  memcpy(d->arena.p + d->arena.len, key, klen);
  d->arena.len += klen;
  row->cl = r->cl;
  row->clhlc = cs->hlc;
  row->clsite = cs->site;
  row->col0 = n0;
  row->ncols = d->ncols - n0;
  d->nrows++;
  *bytes += klen + 20;
  return 0;
}

/* What a chunk is cut under: the sender's options, the requester, and
 * whether rows out of its scope go as exit markers. */
typedef struct sx_cut {
  const sync_delta_opts *o; /* may be NULL */
  const uint8_t *peer;      /* the requester */
  int track;                /* o->scope: d->scope says the tables */
  int exits;                /* the requester may hold rows out of scope */
  sync_value *vals;         /* the filter's values, one per column */
} sx_cut;

/* Is stored row r (table tid) in the requester's scope: a selected table
 * and a filter that says yes? */
SYNC_PRIVATE int sx_filter_row(sync_txn *x, sync_row_filter_fn filter,
                               void *ctx, const uint8_t *peer, unsigned tid,
                               const unsigned char *key, size_t klen,
                               const sx_row *r, sync_value *vals) {
  const sx_table *tb = &x->env->schema->tables[tid];
  unsigned j;
  if (!(r->cl & 1)) return filter(ctx, peer, tid, key, klen, NULL, 0) != 0;
  for (j = 0; j < tb->ncols; j++)
    vals[j] = j < r->ncols && r->cols[j].st != SX_NOSTAMP ? r->cols[j].v
                                                          : sync_null();
  return filter(ctx, peer, tid, key, klen, vals, tb->ncols) != 0;
}

static int sx_in_scope(sx_cut *c, sync_txn *x, unsigned tid,
                       const unsigned char *key, size_t klen,
                       const sx_row *r) {
  const sync_delta_opts *o = c->o;
  if (!o) return 1;
  if (o->tables && !sx_bit(o->tables, tid)) return 0;
  if (!o->filter) return 1;
  return sx_filter_row(x, o->filter, o->filter_ctx, c->peer, tid, key, klen,
                       r, c->vals);
}

/* Add an exit marker for stored row r: its key, causal length and
 * stamps (no values), so the receiver can tell whether its copy holds
 * anything this replica lacks. */
static int sx_delta_exit(sync_delta *d, sync_txn *x, unsigned tid,
                         const unsigned char *key, size_t klen,
                         const sx_row *r, size_t *bytes) {
  const sx_table *tb = &x->env->schema->tables[tid];
  sx_drow *e;
  size_t i;
  int rc;
  if ((rc = sx_grow(&d->al, (void **)&d->xrows, &d->capx, d->nx + 1,
                    sizeof(sx_drow))) ||
      (rc = sx_grow(&d->al, (void **)&d->xcols, &d->capxc,
                    d->nxc + r->ncols + 1, sizeof(sx_dcol))) ||
      (rc = sx_buf_reserve(&d->arena, klen)))
    return rc;
  e = &d->xrows[d->nx];
  memset(e, 0, sizeof *e);
  e->tid = tid;
  e->koff = d->arena.len;
  e->klen = klen;
  memcpy(d->arena.p + d->arena.len, key, klen);
  d->arena.len += klen;
  e->cl = r->cl;
  e->clhlc = r->stamps[r->cl_stamp].hlc;
  e->clsite = r->stamps[r->cl_stamp].site;
  e->col0 = d->nxc;
  for (i = 0; i < r->ncols && (r->cl & 1); i++) {
    const sx_rcol *c = &r->cols[i];
    sx_dcol *dc;
    if (c->st == SX_NOSTAMP) continue;
    if (i < tb->ncols && (tb->cols[i].flags & SYNC_COL_LOCAL)) continue;
    dc = &d->xcols[d->nxc++];
    memset(dc, 0, sizeof *dc);
    dc->col = (unsigned)i;
    dc->hlc = r->stamps[c->st].hlc;
    dc->site = r->stamps[c->st].site;
    dc->v = sync_null();
  }
  e->ncols = d->nxc - e->col0;
  d->nx++;
  *bytes += klen + 20 + 10 * e->ncols;
  return 0;
}

/* One stored row met by a pass: sent, sent as an exit, or left out. */
static int sx_cut_row(sx_cut *c, sync_delta *d, sync_txn *x, unsigned tid,
                      const unsigned char *key, size_t klen, const sx_row *r,
                      const uint64_t *rvv, int keyed, int selected,
                      size_t *bytes) {
  if (selected && sx_in_scope(c, x, tid, key, klen, r))
    return sx_delta_add(d, x, tid, key, klen, r, rvv, c->o, keyed, bytes);
  d->partial = 1; /* left out: the receiver must not raise its vector */
  return c->exits ? sx_delta_exit(d, x, tid, key, klen, r, bytes) : 0;
}

/* Log pass: rows whose log entry follows d->start. */
static int sx_delta_log(sync_delta *d, sync_txn *x, const uint64_t *rvv,
                        sx_cut *cut, size_t max_rows, size_t max_bytes) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  unsigned char start[SX_LOGKEY];
  size_t bytes = 0;
  int rc, op = SX_SET_RANGE;
  if (d->start.seq == UINT32_MAX) sx_logkey(start, d->start.version + 1, 0);
  else sx_logkey(start, d->start.version, d->start.seq + 1);
  d->end = d->start;
  if ((rc = sx_cur_open(env->st, x->t, env->log, &c))) return rc;
  k.p = start;
  k.n = SX_LOGKEY;
  for (;;) {
    sx_slice key;
    unsigned tid;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      d->last = 1;
      rc = 0;
      break;
    }
    if (rc) break;
    /* Full: this entry opens the next chunk.  Looking first means a
     * chunk that takes the log's last entries says it is the last. */
    if (d->nrows + d->nx >= max_rows || bytes >= max_bytes) break;
    rc = sx_log_current(x, &x->old, k.p, k.n, v.p, v.n, &tid, &key);
    if (rc == 0) {
      /* Exits only from the tables served: a row of another table never
       * reached the requester from us, or left with its table. */
      int selected = !cut->o || !cut->o->tables || sx_bit(cut->o->tables, tid);
      if (selected || !cut->exits)
        rc = sx_cut_row(cut, d, x, tid, key.p, key.n, &x->old, rvv, 0,
                        selected, &bytes);
      else
        d->partial = 1;
    } else if (rc == SYNC_NOTFOUND) {
      rc = 0; /* a stale entry: the row's current one comes later */
    }
    if (rc) break;
    d->end.version = sx_get_be64(k.p);
    d->end.seq = sx_get_be32(k.p + 8);
  }
  sx_cur_close(c);
  return rc;
}

/* Initial pass: the tables in key order, from the cursor on (from the
 * start when fresh: a stream restarted for a new scope). */
static int sx_delta_keys(sync_delta *d, sync_txn *x, const uint64_t *rvv,
                         sx_cut *cut, int all, int fresh, size_t max_rows,
                         size_t max_bytes) {
  sync_env *env = x->env;
  const sync_delta_opts *o = cut->o;
  size_t bytes = 0;
  int rc;
  d->end = d->start;
  if (d->end.mode != SX_MODE_INITIAL || fresh) {
    memset(&d->end, 0, sizeof d->end);
    d->end.mode = SX_MODE_INITIAL;
    d->end.v0 = x->base_version;
  }
  while (d->end.tid < env->schema->ntables) {
    sx_scur *c;
    sx_slice k, v;
    int op, selected = !o || !o->tables || sx_bit(o->tables, d->end.tid);
    /* A table not selected is skipped whole, unless the requester may
     * still hold rows of it from the scope before: they exit. */
    if (!selected &&
        !(cut->exits && cut->track && sx_bit(d->scope.held, d->end.tid))) {
      d->partial = 1;
      d->end.tid++;
      d->end.klen = 0;
      continue;
    }
    if ((rc = sx_table_cursor(x, d->end.tid, &c))) return rc;
    k.p = d->end.key;
    k.n = d->end.klen;
    op = d->end.klen ? SX_SET_RANGE : SX_FIRST;
    for (;;) {
      rc = sx_cur_get(env->st, c, op, &k, &v);
      op = SX_NEXT;
      if (rc == SYNC_NOTFOUND) break;
      if (rc) return rc;
      if (d->end.klen && sx_keycmp(k.p, k.n, d->end.key, d->end.klen) <= 0)
        continue;
      /* Full: this row opens the next chunk (so a chunk that takes the
       * last rows ends the stream itself). */
      if (d->nrows + d->nx >= max_rows || bytes >= max_bytes) return 0;
      if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &x->old)))
        return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                       env->schema->tables[d->end.tid].name);
      if ((rc = sx_cut_row(cut, d, x, d->end.tid, k.p, k.n, &x->old, rvv,
                           all, selected, &bytes)))
        return rc;
      memcpy(d->end.key, k.p, k.n);
      d->end.klen = k.n;
    }
    d->end.tid++;
    d->end.klen = 0;
  }
  /* Stream done: continue from the log where it stood at the start. */
  {
    uint64_t v0 = d->end.v0;
    memset(&d->end, 0, sizeof d->end);
    d->end.mode = SX_MODE_LOG;
    d->end.version = v0;
    d->end.seq = UINT32_MAX;
    if (x->base_version == v0) d->last = 1; /* nothing changed meanwhile */
  }
  return 0;
}

/* The scope a chunk for req is cut under (sync_delta_opts.scope), and
 * how: *restart when the requester was served another scope (its stream
 * starts again from its cursor), *exits when it may hold rows out of
 * the scope (it was served before: rows out of scope go as exits). */
static void sx_scope_plan(sync_txn *x, const sync_request *req,
                          const sync_delta_opts *o, sx_scope *sc,
                          int *restart, int *exits) {
  const sx_scope *rs = &req->scope;
  unsigned t, nt = x->env->schema->ntables;
  int zero = req->cur.mode == SX_MODE_LOG && !req->cur.version &&
             !req->cur.seq,
      same, served = rs->flags != 0;
  memset(sc, 0, sizeof *sc);
  sc->flags = SX_SCOPE_ON | (o->filter ? SX_SCOPE_FILTER : 0);
  sc->fver = o->filter ? o->filter_version : 0;
  for (t = 0; t < nt; t++)
    if (!o->tables || sx_bit(o->tables, t))
      sc->tables[t >> 3] |= (unsigned char)(1u << (t & 7));
  same = served &&
         (rs->flags & (SX_SCOPE_ON | SX_SCOPE_FILTER)) == sc->flags &&
         rs->fver == sc->fver && !memcmp(rs->tables, sc->tables, SX_TBYTES);
  *restart = 0;
  memcpy(sc->held, sc->tables, SX_TBYTES);
  if (zero) {
    *exits = served; /* a reset: it may still hold rows of before */
  } else if (!same) {
    *restart = 1; /* log mode, or a stream of another scope */
    *exits = 1;
  } else if (req->cur.mode == SX_MODE_INITIAL) {
    *exits = (rs->flags & SX_SCOPE_EXITS) != 0;
  } else {
    *exits = 1;
  }
  if (served && *exits)
    for (t = 0; t < nt; t++) {
      /* Only tables the requester may see: its word is not proof.  (The
       * caller's sets are read up to this schema's tables only.) */
      if (!sx_bit(rs->held, t) && !sx_bit(rs->tables, t)) continue;
      if (o->visible && !sx_bit(o->visible, t)) continue;
      sc->held[t >> 3] |= (unsigned char)(1u << (t & 7));
    }
  if (*exits) sc->flags |= SX_SCOPE_EXITS;
  if (*restart || zero) sc->flags |= SX_SCOPE_RESTART;
}

static int sx_need_complete(sync_txn *x, const uint64_t *rvv, int *out);
static int sx_gcvv_raise(sync_txn *x, const uint64_t *from);
static int sx_renew_load(sync_txn *x, sx_buf *b);
static uint64_t sx_renew_cap(const sx_buf *b, const uint8_t *site, uint64_t h);
static int sx_renew_attach(sync_txn *x, sync_delta *d);

SYNC_API int sync_delta_make(sync_txn *x, const sync_request *req,
                             const sync_delta_opts *opts, sync_delta **out) {
  sync_env *env;
  sync_delta *d;
  uint64_t *vv = NULL, *rvv = NULL;
  size_t max_rows = 1000, max_bytes = (size_t)1 << 20, i;
  sx_cut cut;
  int rc, restart = 0;
  memset(&cut, 0, sizeof cut);
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || !req) return SYNC_EINVAL;
  env = x->env;
  if (memcmp(req->sender, env->site, SX_SITE_LEN) ||
      !memcmp(req->requester, env->site, SX_SITE_LEN))
    return SYNC_EINVAL;
  if (!sx_compat_ok(env, req->schema_hash))
    return sx_fail(env, SYNC_ESCHEMA,
                   "the requester has another schema (hash %016llx), not "
                   "known to be compatible with this one",
                   (unsigned long long)req->schema_hash);
  if (req->cur.mode == SX_MODE_LOG && (req->cur.version || req->cur.seq)) {
    /* A requester that stands before our last collection may miss
     * deletes whose tombstones are gone: it must start again. */
    sx_slice hz;
    rc = sx_get(env->st, x->t, env->meta, "gcpos", 5, &hz);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (rc == 0 && hz.n == 12 &&
        sx_poscmp(req->cur.version, req->cur.seq, sx_get_le64(hz.p),
                  sx_get_le32(hz.p + 8)) < 0)
      return sx_fail(env, SYNC_ESTALE,
                     "the requester stands at version %llu, before tombstones "
                     "collected up to version %llu: it must sync again from "
                     "the start (sync_peer_reset)",
                     (unsigned long long)req->cur.version,
                     (unsigned long long)sx_get_le64(hz.p));
  }
  /* The requester's view of our log must be our history: a cursor past
   * our log's end, or in an epoch we do not have there, was made by
   * another copy of this file. */
  if ((rc = sx_history_check(x, sx_cursor_version(&req->cur), &req->mark)))
    return rc;
  if (opts && opts->max_rows) max_rows = opts->max_rows;
  if (opts && opts->max_bytes) max_bytes = opts->max_bytes;
  if ((rc = sx_scratch(x)) || (rc = sx_vv_load(x, &vv))) return rc;
  rvv = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * x->nsites);
  d = sx_delta_new(&env->al);
  if (!rvv || !d) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  /* What the requester holds, per local site index. */
  memset(rvv, 0, sizeof(uint64_t) * x->nsites);
  for (i = 0; i < req->nvv; i++) {
    uint32_t idx;
    if (sx_site_index(x, req->vv[i].site, 0, &idx) == 0)
      rvv[idx] = req->vv[i].hlc;
  }
  {
    /* Claims that a renewal record voids, the requester may still make
     * (it has not heard of the record): leave them out. */
    sx_buf b;
    sx_buf_init(&b, &env->al);
    rc = sx_renew_load(x, &b);
    for (i = 0; !rc && i < x->nsites; i++)
      rvv[i] = sx_renew_cap(&b, x->sites[i], rvv[i]);
    sx_buf_free(&b);
    if (rc) goto done;
  }
  memcpy(d->sender, env->site, SX_SITE_LEN);
  memcpy(d->receiver, req->requester, SX_SITE_LEN);
  d->schema_hash = env->schema->hash;
  d->start = req->cur;
  memset(&cut, 0, sizeof cut);
  cut.o = opts;
  cut.peer = req->requester;
  if (opts && opts->scope) {
    cut.track = 1;
    sx_scope_plan(x, req, opts, &d->scope, &restart, &cut.exits);
  }
  if (opts && opts->filter) {
    cut.vals = (sync_value *)sx_malloc(
        &env->al, sizeof(sync_value) * (SYNC_MAX_COLUMNS + 1));
    if (!cut.vals) {
      rc = SYNC_ENOMEM;
      goto done;
    }
  }
  if (restart || d->start.mode == SX_MODE_INITIAL ||
      (d->start.version == 0 && d->start.seq == 0)) {
    /* After a collection whose deletes the requester may lack, a stream
     * names every row: what it leaves out of its range, the receiver
     * drops (sx_apply_horizon). */
    if ((rc = sx_need_complete(x, rvv, &d->complete))) goto done;
    rc = sx_delta_keys(d, x, rvv, &cut, d->complete, restart, max_rows,
                       max_bytes);
  } else {
    rc = sx_delta_log(d, x, rvv, &cut, max_rows, max_bytes);
  }
  if (cut.track && d->end.mode == SX_MODE_LOG) {
    /* Past the stream: the requester holds rows of the served tables
     * only, and what follows is the log. */
    memcpy(d->scope.held, d->scope.tables, SX_TBYTES);
    d->scope.flags &= ~SX_SCOPE_EXITS;
  }
  if (!rc) rc = sx_mark_of(x, sx_cursor_version(&d->end), &d->mark);
  if (!rc) {
    /* What this replica collected: a receiver whose vector this run
     * raises past those deletes starts new rows above them. */
    uint64_t fresh;
    unsigned t;
    x->gccl_ok = 0;
    sx_free(&env->al, x->gccl);
    x->gccl = NULL;
    rc = sx_fresh_cl(x, 0, &fresh);
    for (t = 0; !rc && x->gccl && t < env->schema->ntables; t++)
      if (x->gccl[t]) {
        d->gccl[d->ngccl].tid = t;
        d->gccl[d->ngccl].cl = x->gccl[t];
        d->ngccl++;
      }
  }
  if (rc) goto done;
  /* The site table and this replica's vector go with every chunk. */
  d->nsites = x->nsites;
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(&env->al,
                                                 (size_t)x->nsites * SX_SITE_LEN);
  if (!d->sites) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  memcpy(d->sites, x->sites, (size_t)x->nsites * SX_SITE_LEN);
  d->vv = vv;
  d->nvv = x->nsites;
  vv = NULL;
  /* The renewal records go with the run's last chunk. */
  if (d->last) rc = sx_renew_attach(x, d);
done:
  sx_free(&env->al, vv);
  sx_free(&env->al, rvv);
  sx_free(&env->al, cut.vals);
  if (rc) {
    sync_delta_free(d);
    return rc;
  }
  *out = d;
  return 0;
}

/* ---------------------------------------------------------------------
 * Conflict log.  Record: u8 kind, u8 flags (1 resolved, 2 remote won),
 * var table, var column + 1 (0 = row), var key length, key, then local
 * and remote: var hlc, 16-byte site, u8 tag (7 = none) + payload.
 * ------------------------------------------------------------------- */
typedef struct sx_cfl {
  int kind;
  unsigned tid, col;
  const unsigned char *key;
  size_t klen;
  uint64_t lhlc, rhlc;
  const uint8_t *lsite, *rsite;
  const sync_value *lv, *rv; /* NULL: none */
  int remote_won;
} sx_cfl;

/* Encode a conflict record into x->cpend (u32 length + record).  Nothing
 * is written to LMDB here: the values may point into the map, which a
 * write could move.  sx_conflicts_flush stores them once the row is. */
static int sx_conflict_record(sync_txn *x, const sx_cfl *c) {
  sx_buf *b = &x->cpend;
  size_t need, start;
  int rc;
  need = 4 + 2 + 3 * SX_VARINT_MAX + c->klen + 2 * (SX_VARINT_MAX + 16 + 1) +
         (c->lv ? SX_VARINT_MAX + 8 + sx_payload_size(c->lv) : 0) +
         (c->rv ? SX_VARINT_MAX + 8 + sx_payload_size(c->rv) : 0);
  if ((rc = sx_buf_reserve(b, need))) return rc;
  start = b->len;
  {
    unsigned char *p = b->p + start + 4;
    p[0] = (unsigned char)c->kind;
    p[1] = c->remote_won ? 2 : 0;
    p += 2;
    p += sx_put_varint(p, c->tid);
    p += sx_put_varint(p, c->col == SYNC_ROW ? 0 : (uint64_t)c->col + 1);
    p += sx_put_varint(p, c->klen);
    memcpy(p, c->key, c->klen);
    p += c->klen;
    p += sx_put_varint(p, c->lhlc);
    memcpy(p, c->lsite, SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = c->lv ? (unsigned char)c->lv->type : SX_TAG_NONE;
    if (c->lv) p += sx_payload_put(p, c->lv);
    p += sx_put_varint(p, c->rhlc);
    memcpy(p, c->rsite, SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = c->rv ? (unsigned char)c->rv->type : SX_TAG_NONE;
    if (c->rv) p += sx_payload_put(p, c->rv);
    sx_put_le32(b->p + start, (uint32_t)(p - (b->p + start + 4)));
    b->len = (size_t)(p - b->p);
  }
  return 0;
}

/* Store the pending conflict records under the next ids. */
static int sx_conflicts_flush(sync_txn *x) {
  sync_env *env = x->env;
  size_t off = 0;
  uint64_t id;
  int rc;
  if (!x->cpend.len) return 0;
  {
    sx_scur *cur;
    sx_slice kk, vv;
    if ((rc = sx_cur_open(env->st, x->t, env->conflicts, &cur))) return rc;
    kk.p = NULL;
    kk.n = 0;
    rc = sx_cur_get(env->st, cur, SX_LAST, &kk, &vv);
    id = rc == 0 && kk.n == 8 ? sx_get_be64(kk.p) + 1 : 1;
    sx_cur_close(cur);
    if (rc && rc != SYNC_NOTFOUND) return rc;
  }
  while (off < x->cpend.len) {
    unsigned char k[8];
    uint32_t n = sx_get_le32(x->cpend.p + off);
    if ((rc = sx_buf_reserve(&x->conflicts, 8))) return rc;
    sx_put_be64(k, id);
    if ((rc = sx_put(env->st, x->t, env->conflicts, k, 8, x->cpend.p + off + 4,
                     n, SX_PUT_APPEND))) {
      x->failed = 1;
      return rc;
    }
    memcpy(x->conflicts.p + x->conflicts.len, k, 8);
    x->conflicts.len += 8;
    off += 4 + (size_t)n;
    id++;
  }
  x->cpend.len = 0;
  return 0;
}

static int sx_conflict_decode(const unsigned char *p, size_t n, uint64_t id,
                              sync_conflict *out) {
  const unsigned char *end = p + n;
  uint64_t v, klen;
  size_t k;
  int side;
  memset(out, 0, sizeof *out);
  out->id = id;
  if (n < 2 || p[0] < SYNC_BOTH_MODIFIED || p[0] > SYNC_DELETED_TARGET)
    return SYNC_ECORRUPT;
  out->kind = p[0];
  out->resolved = (p[1] & 1) != 0;
  out->remote_won = (p[1] & 2) != 0;
  p += 2;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_MAX_TABLES) return SYNC_ECORRUPT;
  out->table = (unsigned)v;
  p += k;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_MAX_COLUMNS) return SYNC_ECORRUPT;
  out->column = v ? (unsigned)(v - 1) : SYNC_ROW;
  p += k;
  if (!(k = sx_get_varint(p, end, &klen)) || klen > SYNC_MAX_KEY ||
      klen > (uint64_t)(end - p) - k)
    return SYNC_ECORRUPT;
  out->key.data = p + k;
  out->key.len = (size_t)klen;
  p += k + klen;
  for (side = 0; side < 2; side++) {
    sync_stamp *st = side ? &out->remote_stamp : &out->local_stamp;
    sync_value *val = side ? &out->remote : &out->local;
    int tag;
    if (!(k = sx_get_varint(p, end, &st->hlc))) return SYNC_ECORRUPT;
    p += k;
    if (end - p < SX_SITE_LEN + 1) return SYNC_ECORRUPT;
    memcpy(st->site, p, SX_SITE_LEN);
    p += SX_SITE_LEN;
    tag = *p++;
    if (tag == SX_TAG_NONE) {
      *val = sync_null();
      continue;
    }
    if (tag > SYNC_BLOB) return SYNC_ECORRUPT;
    k = sx_payload_get(tag, p, end, val);
    if (!k && tag != SYNC_NULL) return SYNC_ECORRUPT;
    p += k;
  }
  return p == end ? 0 : SYNC_ECORRUPT;
}

SYNC_PRIVATE void sx_notify_conflicts(sync_txn *x) {
  sync_env *env = x->env;
  sync_txn *r;
  size_t i;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &r)) return;
  for (i = 0; i + 8 <= x->conflicts.len; i += 8) {
    sx_slice v;
    sync_conflict c;
    if (sx_get(env->st, r->t, env->conflicts, x->conflicts.p + i, 8, &v))
      continue;
    if (sx_conflict_decode(v.p, v.n, sx_get_be64(x->conflicts.p + i), &c))
      continue;
    env->on_conflict(env->on_conflict_ctx, &c);
  }
  sync_txn_abort(r);
}

SYNC_API int sync_conflicts_open(sync_txn *x, unsigned flags,
                                 sync_conflicts **out) {
  sync_conflicts *it;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || (flags & ~SYNC_CONFLICTS_UNRESOLVED)) return SYNC_EINVAL;
  it = (sync_conflicts *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  it->x = x;
  it->flags = flags;
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->conflicts, &it->c))) {
    sx_free(&it->al, it);
    return rc;
  }
  *out = it;
  return 0;
}

/* The next entry of a log keyed by u64 BE id (conflicts, rejections)
 * after last (the first when not started), sought again by key: clearing
 * or resolving entries in between may have moved pages.  On success last
 * is the entry's key. */
static int sx_id_log_next(sx_store *st, sx_scur *c, int *started,
                          unsigned char last[8], sx_slice *k, sx_slice *v) {
  int rc;
  if (!*started) {
    k->p = NULL;
    k->n = 0;
    rc = sx_cur_get(st, c, SX_FIRST, k, v);
  } else {
    k->p = last;
    k->n = 8;
    rc = sx_cur_get(st, c, SX_SET_RANGE, k, v);
    if (!rc && k->n == 8 && !memcmp(k->p, last, 8))
      rc = sx_cur_get(st, c, SX_NEXT, k, v);
  }
  if (rc) return rc;
  *started = 1;
  if (k->n != 8) return SYNC_ECORRUPT;
  memcpy(last, k->p, 8);
  return 0;
}

SYNC_API int sync_conflicts_next(sync_conflicts *it, sync_conflict *out) {
  sx_slice k, v;
  int rc;
  if (!it || !out) return SYNC_EINVAL;
  for (;;) {
    if ((rc = sx_id_log_next(it->x->env->st, it->c, &it->started, it->last,
                             &k, &v)))
      return rc;
    if ((rc = sx_conflict_decode(v.p, v.n, sx_get_be64(k.p), out)))
      return sx_fail(it->x->env, rc, "conflict log entry malformed");
    if ((it->flags & SYNC_CONFLICTS_UNRESOLVED) && out->resolved) continue;
    return 0;
  }
}

SYNC_API void sync_conflicts_close(sync_conflicts *it) {
  sx_alloc al;
  if (!it) return;
  al = it->al;
  /* A write transaction's cursors die with it; ours closes only while
   * the transaction is still open, which the API requires. */
  sx_cur_close(it->c);
  sx_free(&al, it);
}

static int sx_resolve_one(sync_txn *x, const unsigned char *k) {
  sx_slice v;
  int rc;
  rc = sx_get(x->env->st, x->t, x->env->conflicts, k, 8, &v);
  if (rc) return rc;
  if (v.n < 2) return SYNC_ECORRUPT;
  if (v.p[1] & 1) return 0;
  if ((rc = sx_buf_reserve(&x->enc, v.n))) return rc;
  memcpy(x->enc.p, v.p, v.n);
  x->enc.p[1] |= 1;
  if ((rc = sx_put(x->env->st, x->t, x->env->conflicts, k, 8, x->enc.p, v.n,
                   0)))
    x->failed = 1;
  return rc ? rc : 1;
}

SYNC_API int sync_conflict_resolve(sync_txn *x, uint64_t id) {
  unsigned char k[8];
  int rc;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  sx_put_be64(k, id);
  rc = sx_resolve_one(x, k);
  return rc < 0 ? rc : 0;
}

SYNC_API int sync_conflicts_resolve_all(sync_txn *x, uint64_t *n) {
  sx_scur *c;
  sx_slice k, v;
  uint64_t count = 0;
  unsigned char key[8];
  int rc, op = SX_FIRST;
  if (n) *n = 0;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->conflicts, &c))) return rc;
  for (;;) {
    k.p = key;
    k.n = 8;
    rc = sx_cur_get(x->env->st, c, op, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != 8) {
      rc = SYNC_ECORRUPT;
      break;
    }
    memcpy(key, k.p, 8);
    if (v.n >= 2 && !(v.p[1] & 1)) {
      if ((rc = sx_resolve_one(x, key)) < 0) break;
      count++;
      /* The put may have moved the cursor's page: find our place. */
      k.p = key;
      k.n = 8;
      if ((rc = sx_cur_get(x->env->st, c, SX_SET_KEY, &k, &v))) break;
    }
    op = SX_NEXT;
  }
  sx_cur_close(c);
  if (n) *n = count;
  return rc;
}

/* ---------------------------------------------------------------------
 * Applying deltas
 * ------------------------------------------------------------------- */
typedef struct sx_apply {
  sync_txn *x;
  const sync_delta *d;
  int policy, dry;
  uint32_t *smap; /* delta site index -> local site index */
  uint64_t *svv;  /* the sender's vector per delta site index, capped by
                     the renewal records (sx_sender_vv) */
  sync_apply_report *rep;
} sx_apply;

static int sx_sender_vv(sync_txn *x, const sync_delta *d, uint64_t **out);
static int sx_apply_renewals(sync_txn *x, const sync_delta *d);

static const uint8_t *sx_lsite(sync_txn *x, uint32_t idx) {
  return idx == 0 ? x->env->site : x->sites[idx];
}

static sync_value sx_dval(const sync_delta *d, const sx_dcol *c) {
  sync_value v = c->v;
  if (v.type == SYNC_TEXT || v.type == SYNC_BLOB)
    v.data = d->arena.p + (uintptr_t)c->v.data;
  return v;
}

/* Compare local stamp (row r, index i) with remote column stamp. */
static int sx_cmp_lr(sync_txn *x, const sx_row *r, unsigned i,
                     const sync_delta *d, uint64_t hlc, uint32_t dsite) {
  return sx_stampcmp(r->stamps[i].hlc, sx_lsite(x, r->stamps[i].site), hlc,
                     d->sites[dsite]);
}

static sx_stamp sx_rstamp(const sx_apply *a, uint64_t hlc, uint32_t dsite) {
  sx_stamp s;
  s.hlc = hlc;
  s.site = a->smap[dsite];
  return s;
}

static sx_stamp sx_mkstamp_local(sync_txn *x) {
  sx_stamp s;
  s.hlc = x->hlc;
  s.site = 0;
  return s;
}

/* Write a resolver's outcome for column j of x->nw with a new stamp. */
static void sx_force(sync_txn *x, unsigned j, const sync_value *v) {
  sx_stamp_txn(x);
  x->nw.cols[j].base = x->nw.cols[j].st;
  x->nw.cols[j].st = sx_row_stamp(&x->nw, sx_mkstamp_local(x));
  x->nw.cols[j].v = *v;
}

/* Ask the application's resolver about conflict c; returns its choice
 * (SYNC_RESOLVE_DEFAULT when there is none, or in a dry run). */
static int sx_ask(sx_apply *a, const sx_cfl *c, sync_value *merged) {
  sync_env *env = a->x->env;
  sync_conflict pc;
  if (!env->resolver || a->dry) return SYNC_RESOLVE_DEFAULT;
  memset(&pc, 0, sizeof pc);
  pc.kind = c->kind;
  pc.table = c->tid;
  pc.key.data = c->key;
  pc.key.len = c->klen;
  pc.column = c->col;
  pc.local = c->lv ? *c->lv : sync_null();
  pc.remote = c->rv ? *c->rv : sync_null();
  pc.local_stamp.hlc = c->lhlc;
  memcpy(pc.local_stamp.site, c->lsite, SX_SITE_LEN);
  pc.remote_stamp.hlc = c->rhlc;
  memcpy(pc.remote_stamp.site, c->rsite, SX_SITE_LEN);
  pc.remote_won = c->remote_won;
  return env->resolver(env->resolver_ctx, &pc, merged);
}

/* A column conflict: apply the resolver's choice to x->nw. */
static int sx_call_resolver(sx_apply *a, sx_cfl *c, int *changed) {
  sync_txn *x = a->x;
  sync_env *env = x->env;
  sync_value merged = sync_null();
  int choice = sx_ask(a, c, &merged);
  if (choice == SYNC_RESOLVE_LOCAL && c->remote_won) {
    sx_force(x, c->col, c->lv);
    c->remote_won = 0;
    *changed = 1;
  } else if (choice == SYNC_RESOLVE_REMOTE && !c->remote_won) {
    sx_force(x, c->col, c->rv);
    c->remote_won = 1;
    *changed = 1;
  } else if (choice == SYNC_RESOLVE_MERGED) {
    const sx_column *col = c->col < env->schema->tables[c->tid].ncols
                               ? &env->schema->tables[c->tid].cols[c->col]
                               : NULL;
    if (col && (merged.type == SYNC_NULL ? !(col->flags & SYNC_COL_NOTNULL)
                                         : merged.type == col->type)) {
      sx_force(x, c->col, &merged);
      c->remote_won = 0; /* neither side's value: a new one */
      *changed = 1;
    }
  }
  return 0;
}

/* Merge delta row dr into x->nw given the local row (x->old when found).
 * Returns 1 if the row changes, 0 if not, or an error. */
static int sx_merge_row(sx_apply *a, const sx_drow *dr, int found,
                        int *cls) {
  sync_txn *x = a->x;
  const sync_delta *d = a->d;
  sx_row *o = &x->old, *w = &x->nw;
  const sx_dcol *rc0 = d->cols ? d->cols + dr->col0 : NULL;
  const unsigned char *key = d->arena.p + dr->koff;
  uint64_t lcl = found ? o->cl : 0;
  size_t i;
  unsigned j;
  int changed = 0, rcmp, err;
  *cls = SYNC_NO_CONFLICT;
  w->nstamps = 0;
  /* A chunk without a column array has no row with columns. */
  if (SX_NEVER(!rc0 && dr->ncols)) return SYNC_ECORRUPT;
  if (a->policy == SYNC_APPLY_APPEND && found) return 0;
  if (a->policy == SYNC_APPLY_NEWER && found) {
    /* The remote row as a whole must be newer than the local one. */
    uint64_t rmax = dr->clhlc, lmax = 0;
    for (i = 0; i < dr->ncols; i++)
      if (rc0[i].hlc > rmax) rmax = rc0[i].hlc;
    for (j = 0; j < o->nstamps; j++)
      if (o->stamps[j].hlc > lmax) lmax = o->stamps[j].hlc;
    if (rmax <= lmax) {
      *cls = SYNC_TARGET_MODIFIED;
      return 0;
    }
  }
  if (!found || dr->cl > lcl) {
    /* The sender's causal length wins: its columns replace ours. */
    if (found && (o->cl & 1)) {
      /* We had a live row: was it changed after the sender's delete? */
      for (j = 0; j < o->ncols; j++)
        if (o->cols[j].st != SX_NOSTAMP && o->stamps[o->cols[j].st].hlc > dr->clhlc) {
          sx_cfl c;
          sync_value none;
          memset(&c, 0, sizeof c);
          c.kind = SYNC_DELETED_SOURCE;
          c.tid = dr->tid;
          c.col = SYNC_ROW;
          c.key = key;
          c.klen = dr->klen;
          c.lhlc = o->stamps[o->cols[j].st].hlc;
          c.lsite = sx_lsite(x, o->stamps[o->cols[j].st].site);
          c.rhlc = dr->clhlc;
          c.rsite = d->sites[dr->clsite];
          c.remote_won = 1;
          *cls = SYNC_DELETED_SOURCE;
          if (!(dr->cl & 1) && sx_ask(a, &c, &none) == SYNC_RESOLVE_LOCAL) {
            /* Keep our row: re-insert it above the sender's delete, with
             * a new stamp, so that the choice wins everywhere. */
            c.remote_won = 0;
            if ((err = sx_conflict_record(x, &c))) return err;
            a->rep->conflicts++;
            sx_stamp_txn(x);
            w->cl = dr->cl + 1;
            w->cl_stamp = sx_row_stamp(w, sx_mkstamp_local(x));
            w->ncols = o->ncols;
            for (j = 0; j < o->ncols; j++) {
              w->cols[j].st = w->cols[j].base = SX_NOSTAMP;
              w->cols[j].v = sync_null();
              if (o->cols[j].st != SX_NOSTAMP) sx_force(x, j, &o->cols[j].v);
            }
            return 1;
          }
          if ((err = sx_conflict_record(x, &c))) return err;
          a->rep->conflicts++;
          break;
        }
      if (*cls == SYNC_NO_CONFLICT) *cls = SYNC_SOURCE_MODIFIED;
    }
    w->cl = dr->cl;
    w->cl_stamp = sx_row_stamp(w, sx_rstamp(a, dr->clhlc, dr->clsite));
    w->ncols = 0;
    if (dr->cl & 1) {
      for (i = 0; i < dr->ncols; i++)
        if (rc0[i].col + 1 > w->ncols) w->ncols = rc0[i].col + 1;
      for (j = 0; j < w->ncols; j++) {
        w->cols[j].st = w->cols[j].base = SX_NOSTAMP;
        w->cols[j].v = sync_null();
      }
      for (i = 0; i < dr->ncols; i++) {
        sx_rcol *c = &w->cols[rc0[i].col];
        c->st = sx_row_stamp(w, sx_rstamp(a, rc0[i].hlc, rc0[i].site));
        c->base = rc0[i].bhlc
                      ? sx_row_stamp(w, sx_rstamp(a, rc0[i].bhlc, rc0[i].bsite))
                      : SX_NOSTAMP;
        c->v = sx_dval(d, &rc0[i]);
      }
    }
    return 1;
  }
  if (dr->cl == lcl && !(lcl & 1) && !dr->ncols &&
      sx_cmp_lr(x, o, o->cl_stamp, d, dr->clhlc, dr->clsite) < 0) {
    /* Both deleted at the same causal length: the later delete's stamp
     * stays, as for a live row's, so that replicas hold equal tombstones
     * (range repair compares them). */
    w->cl = lcl;
    w->cl_stamp = sx_row_stamp(w, sx_rstamp(a, dr->clhlc, dr->clsite));
    w->ncols = 0;
    *cls = SYNC_TARGET_MODIFIED;
    return 1;
  }
  if (dr->cl < lcl || !(lcl & 1)) {
    /* Ours wins by causal length (or both are deleted at the same one).
     * An update we never saw, to a row we deleted, is a conflict. */
    if (!(lcl & 1)) {
      uint64_t del = o->stamps[o->cl_stamp].hlc;
      for (i = 0; i < dr->ncols; i++)
        if (rc0[i].hlc > del) {
          sx_cfl c;
          sync_value rv = sx_dval(d, &rc0[i]), scratch;
          memset(&c, 0, sizeof c);
          c.kind = SYNC_DELETED_TARGET;
          c.tid = dr->tid;
          c.col = SYNC_ROW;
          c.key = key;
          c.klen = dr->klen;
          c.lhlc = del;
          c.lsite = sx_lsite(x, o->stamps[o->cl_stamp].site);
          c.rhlc = rc0[i].hlc;
          c.rsite = d->sites[rc0[i].site];
          c.rv = &rv;
          *cls = SYNC_DELETED_TARGET;
          if (sx_ask(a, &c, &scratch) == SYNC_RESOLVE_REMOTE) {
            /* Bring the row back with the sender's columns, above our
             * delete, with a new stamp. */
            size_t q;
            c.remote_won = 1;
            if ((err = sx_conflict_record(x, &c))) return err;
            a->rep->conflicts++;
            sx_stamp_txn(x);
            w->cl = lcl + 1;
            w->cl_stamp = sx_row_stamp(w, sx_mkstamp_local(x));
            w->ncols = 0;
            for (q = 0; q < dr->ncols; q++)
              if (rc0[q].col + 1 > w->ncols) w->ncols = rc0[q].col + 1;
            for (j = 0; j < w->ncols; j++) {
              w->cols[j].st = w->cols[j].base = SX_NOSTAMP;
              w->cols[j].v = sync_null();
            }
            for (q = 0; q < dr->ncols; q++) {
              sync_value qv = sx_dval(d, &rc0[q]);
              sx_force(x, rc0[q].col, &qv);
            }
            return 1;
          }
          if ((err = sx_conflict_record(x, &c))) return err;
          a->rep->conflicts++;
          break;
        }
    }
    if (*cls == SYNC_NO_CONFLICT) *cls = SYNC_TARGET_MODIFIED;
    return 0;
  }
  /* Same causal length, both live: column by column. */
  w->cl = o->cl;
  rcmp = sx_cmp_lr(x, o, o->cl_stamp, d, dr->clhlc, dr->clsite);
  w->cl_stamp = rcmp >= 0 ? sx_row_stamp(w, o->stamps[o->cl_stamp])
                          : sx_row_stamp(w, sx_rstamp(a, dr->clhlc, dr->clsite));
  w->ncols = o->ncols;
  for (i = 0; i < dr->ncols; i++)
    if (rc0[i].col + 1 > w->ncols) w->ncols = rc0[i].col + 1;
  for (j = 0; j < w->ncols; j++) {
    sx_rcol *c = &w->cols[j];
    if (j < o->ncols && o->cols[j].st != SX_NOSTAMP) {
      c->st = sx_row_stamp(w, o->stamps[o->cols[j].st]);
      c->base = o->cols[j].base == SX_NOSTAMP
                    ? SX_NOSTAMP
                    : sx_row_stamp(w, o->stamps[o->cols[j].base]);
      c->v = o->cols[j].v;
    } else {
      c->st = c->base = SX_NOSTAMP;
      c->v = sync_null();
    }
  }
  for (i = 0; i < dr->ncols; i++) {
    const sx_dcol *r = &rc0[i];
    unsigned col = r->col;
    const sx_rcol *l = col < o->ncols ? &o->cols[col] : NULL;
    sync_value rv = sx_dval(d, r);
    int take, ccls;
    if (!l || l->st == SX_NOSTAMP) {
      take = 1;
      ccls = SYNC_SOURCE_MODIFIED;
    } else {
      int cmp = sx_cmp_lr(x, o, l->st, d, r->hlc, r->site);
      const uint8_t *lsite = sx_lsite(x, o->stamps[l->st].site);
      if (cmp == 0) continue; /* the same write */
      if (r->bhlc && o->stamps[l->st].hlc == r->bhlc &&
          !memcmp(lsite, d->sites[r->bsite], SX_SITE_LEN)) {
        take = 1; /* the sender wrote over our value */
        ccls = SYNC_SOURCE_MODIFIED;
      } else if (l->base != SX_NOSTAMP &&
                 sx_cmp_lr(x, o, l->base, d, r->hlc, r->site) == 0) {
        take = 0; /* we wrote over theirs */
        ccls = SYNC_TARGET_MODIFIED;
      } else if (!memcmp(lsite, d->sites[r->site], SX_SITE_LEN)) {
        take = cmp < 0; /* one writer's writes are ordered */
        ccls = take ? SYNC_SOURCE_MODIFIED : SYNC_TARGET_MODIFIED;
      } else {
        sx_cfl c;
        sync_value lv = l->v;
        /* Under NEWER the row as a whole was found newer: its column
         * replaces ours whatever the column stamps say. */
        take = cmp < 0 || a->policy == SYNC_APPLY_NEWER;
        ccls = SYNC_BOTH_MODIFIED;
        memset(&c, 0, sizeof c);
        c.kind = SYNC_BOTH_MODIFIED;
        c.tid = dr->tid;
        c.col = col;
        c.key = key;
        c.klen = dr->klen;
        c.lhlc = o->stamps[l->st].hlc;
        c.lsite = lsite;
        c.rhlc = r->hlc;
        c.rsite = d->sites[r->site];
        c.lv = &lv;
        c.rv = &rv;
        c.remote_won = take;
        if (take) {
          sx_rcol *wc = &w->cols[col];
          wc->st = sx_row_stamp(w, sx_rstamp(a, r->hlc, r->site));
          wc->base = r->bhlc ? sx_row_stamp(w, sx_rstamp(a, r->bhlc, r->bsite))
                             : SX_NOSTAMP;
          wc->v = rv;
          changed = 1;
        }
        /* The record says what was applied, so it follows the resolver;
         * under NEWER the policy has decided and no resolver is asked. */
        if (a->policy != SYNC_APPLY_NEWER &&
            (err = sx_call_resolver(a, &c, &changed)))
          return err;
        if ((err = sx_conflict_record(x, &c))) return err;
        a->rep->conflicts++;
        if (ccls > *cls) *cls = ccls;
        continue;
      }
    }
    if (ccls > *cls) *cls = ccls;
    if (a->policy == SYNC_APPLY_NEWER) take = 1;
    if (!take) continue;
    w->cols[col].st = sx_row_stamp(w, sx_rstamp(a, r->hlc, r->site));
    w->cols[col].base =
        r->bhlc ? sx_row_stamp(w, sx_rstamp(a, r->bhlc, r->bsite)) : SX_NOSTAMP;
    w->cols[col].v = rv;
    changed = 1;
  }
  if (rcmp < 0) changed = 1; /* only the row stamp moves */
  return changed;
}

/* Check a delta's structure before anything is applied: tables, columns,
 * key lengths, site and stamp references, value types and lengths.
 * Tables and columns beyond ours (a newer sender's) are checked against
 * the sender's schema ps (sx_compat_find; NULL: the sender's is ours, or
 * one that relays them: it checked them when it took them), so that a
 * value stored unread here is one the newer schema allows. */
static int sx_delta_check(const sync_delta *d, const sx_schema *s,
                          const sx_schema *ps) {
  size_t i, j;
  if (d->nsites == 0 || d->nvv != d->nsites) return SYNC_EINVAL;
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *r = &d->rows[i];
    const sx_table *tb = r->tid < s->ntables ? &s->tables[r->tid] : NULL;
    const sx_table *pt = ps && r->tid < ps->ntables ? &ps->tables[r->tid] : NULL;
    if (!tb && ps && !pt) return SYNC_EINVAL; /* not even the sender's */
    if (pt && (!tb || pt->ncols > tb->ncols)) tb = pt;
    if (r->tid >= SYNC_MAX_TABLES || r->klen == 0 || r->klen > SYNC_MAX_KEY ||
        r->koff > d->arena.len || r->klen > d->arena.len - r->koff ||
        r->cl == 0 || r->clsite >= d->nsites || r->col0 > d->ncols ||
        r->ncols > d->ncols - r->col0 || r->ncols > SYNC_MAX_COLUMNS)
      return SYNC_EINVAL;
    if (!(r->cl & 1) && r->ncols) return SYNC_EINVAL;
    /* No history reaches 2^62 deletes and re-inserts; a larger causal
     * length would let one row win forever and wrap at the next local
     * delete. */
    if (r->cl > (UINT64_C(1) << 62)) return SYNC_EINVAL;
    /* What sync_put refuses (sx_check_key), apply refuses too. */
    if (tb && tb->key_type == SYNC_INTEGER && r->klen != 8)
      return SYNC_EINVAL;
    for (j = 0; j < r->ncols; j++) {
      const sx_dcol *c = &d->cols[r->col0 + j];
      if (c->col >= SYNC_MAX_COLUMNS || c->site >= d->nsites ||
          c->bsite >= d->nsites || c->hlc == 0 || c->v.type < SYNC_NULL ||
          c->v.type > SYNC_BLOB)
        return SYNC_EINVAL;
      if (tb && c->col < tb->ncols && c->v.type != SYNC_NULL &&
          c->v.type != tb->cols[c->col].type)
        return SYNC_ETYPE;
      /* NOT NULL is part of the schema hash: only a forged chunk breaks it. */
      if (tb && c->col < tb->ncols && c->v.type == SYNC_NULL &&
          (tb->cols[c->col].flags & SYNC_COL_NOTNULL))
        return SYNC_ECONSTRAINT;
      if ((c->v.type == SYNC_TEXT || c->v.type == SYNC_BLOB) &&
          ((uintptr_t)c->v.data > d->arena.len ||
           c->v.len > d->arena.len - (uintptr_t)c->v.data))
        return SYNC_EINVAL;
      if (j && c->col <= d->cols[r->col0 + j - 1].col) return SYNC_EINVAL;
    }
  }
  for (i = 0; i < d->nx; i++) {
    const sx_drow *r = &d->xrows[i];
    if (r->tid >= s->ntables || r->klen == 0 || r->klen > SYNC_MAX_KEY ||
        r->koff > d->arena.len || r->klen > d->arena.len - r->koff ||
        r->cl == 0 || r->cl > (UINT64_C(1) << 62) || r->clsite >= d->nsites ||
        r->col0 > d->nxc || r->ncols > d->nxc - r->col0 ||
        (!(r->cl & 1) && r->ncols))
      return SYNC_EINVAL;
    for (j = 0; j < r->ncols; j++) {
      const sx_dcol *c = &d->xcols[r->col0 + j];
      if (c->col >= SYNC_MAX_COLUMNS || c->site >= d->nsites ||
          (j && c->col <= d->xcols[r->col0 + j - 1].col))
        return SYNC_EINVAL;
    }
  }
  return 0;
}

/* Does exit marker e (the sender's causal length and stamps of the row)
 * cover local row o: o holds no write the sender's row does not hold or
 * supersede?  Then o may go; else it holds changes of its own (edits
 * not yet sent) and stays, to leave with a later exit once the sender
 * has them. */
static int sx_exit_covers(sync_txn *x, const sync_delta *d, const sx_drow *e,
                          const sx_row *o) {
  const sx_table *tb = &x->env->schema->tables[e->tid];
  unsigned j;
  size_t i = 0;
  if (o->cl != e->cl) return o->cl < e->cl;
  if (sx_cmp_lr(x, o, o->cl_stamp, d, e->clhlc, e->clsite) > 0) return 0;
  if (!(o->cl & 1)) return 1;
  for (j = 0; j < o->ncols; j++) {
    const sx_dcol *c;
    if (o->cols[j].st == SX_NOSTAMP) continue;
    if (j < tb->ncols && (tb->cols[j].flags & SYNC_COL_LOCAL)) continue;
    while (i < e->ncols && d->xcols[e->col0 + i].col < j) i++;
    if (i == e->ncols) return 0;
    c = &d->xcols[e->col0 + i];
    if (c->col != j || sx_cmp_lr(x, o, o->cols[j].st, d, c->hlc, c->site) > 0)
      return 0;
  }
  return 1;
}

/* Row o leaves this replica: its stamps are no longer held, so the
 * vector stops claiming them (another site's entry drops below the
 * stamp; our own entry, which is our clock, is capped by meta "xfloor").
 * Without this a row coming back into scope would look like one we had
 * deleted and collected, and a complete run from us would make a peer
 * claim it too. */
/* Lower this replica's vector entry of local site idx (another site's)
 * below hlc. */
static int sx_vv_lower_site(sync_txn *x, uint32_t idx, uint64_t hlc) {
  sync_env *env = x->env;
  unsigned char kk[4], vb[8];
  sx_slice old;
  int rc;
  if (idx == 0 || !hlc) return 0; /* our own writes: the HLC says those */
  sx_put_be32(kk, idx);
  rc = sx_get(env->st, x->t, env->vv, kk, 4, &old);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (old.n != 8 || sx_get_le64(old.p) < hlc) return 0;
  sx_put_le64(vb, hlc - 1);
  if ((rc = sx_put(env->st, x->t, env->vv, kk, 4, vb, 8, 0))) {
    x->failed = 1;
    return rc;
  }
  x->dirty = 1;
  return 0;
}

static int sx_vv_lower(sync_txn *x, const sx_row *o) {
  sync_env *env = x->env;
  unsigned j;
  for (j = 0; j <= o->ncols; j++) {
    unsigned si = j == o->ncols ? o->cl_stamp : o->cols[j].st;
    unsigned char vb[8];
    sx_slice old;
    uint64_t h;
    int rc;
    if (si == SX_NOSTAMP || si >= o->nstamps || !o->stamps[si].hlc) continue;
    if (o->stamps[si].site != 0) {
      if ((rc = sx_vv_lower_site(x, o->stamps[si].site, o->stamps[si].hlc)))
        return rc;
      continue;
    }
    h = o->stamps[si].hlc - 1;
    rc = sx_get(env->st, x->t, env->meta, "xfloor", 6, &old);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (rc == 0 && old.n == 8 && sx_get_le64(old.p) <= h) continue;
    sx_put_le64(vb, h);
    if ((rc = sx_put(env->st, x->t, env->meta, "xfloor", 6, vb, 8, 0))) {
      x->failed = 1;
      return rc;
    }
    x->dirty = 1;
  }
  return 0;
}

/* The chunk's exit markers: each local row they cover leaves, with no
 * tombstone and no log entry (nothing of it replicates). */
static int sx_apply_exits(sx_apply *a) {
  sync_txn *x = a->x;
  sync_env *env = x->env;
  const sync_delta *d = a->d;
  size_t i;
  int rc;
  for (i = 0; i < d->nx; i++) {
    const sx_drow *e = &d->xrows[i];
    const unsigned char *key = d->arena.p + e->koff;
    sx_scur *cur;
    sx_slice k, v;
    if ((rc = sx_table_cursor(x, e->tid, &cur))) return rc;
    k.p = key;
    k.n = e->klen;
    rc = sx_cur_get(env->st, cur, SX_SET_KEY, &k, &v);
    if (rc == SYNC_NOTFOUND) continue;
    if (rc) return rc;
    if ((rc = sx_row_decode(v.p, v.n, key, e->klen, &x->old)))
      return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                     env->schema->tables[e->tid].name);
    if (!sx_exit_covers(x, d, e, &x->old)) continue;
    a->rep->exited++;
    if (a->dry) continue;
    if ((rc = sx_vv_lower(x, &x->old)) ||
        (rc = sx_remove_row(x, e->tid, cur, key, e->klen)))
      return rc;
  }
  return 0;
}

SYNC_PRIVATE int sx_delta_valid(const sync_delta *d, const sx_schema *s) {
  return sx_delta_check(d, s, NULL);
}

/* May row dr be applied under ao?  lvv: this replica's vector per local
 * site index (NULL when relay is allowed); sender: the delta's site index
 * of its sender (SX_NONE if absent); ahead: the largest HLC accepted. */
static int sx_row_ok(const sx_apply *a, const sync_apply_opts *ao,
                     const sx_drow *dr, const uint64_t *lvv, uint32_t sender,
                     uint64_t ahead) {
  const sync_delta *d = a->d;
  size_t j;
  if (ao->writable && !sx_bit(ao->writable, dr->tid)) return 0;
  for (j = 0; j <= dr->ncols; j++) {
    uint64_t hlc = j ? d->cols[dr->col0 + j - 1].hlc : dr->clhlc;
    uint32_t site = j ? d->cols[dr->col0 + j - 1].site : dr->clsite;
    if (ao->max_ahead_ms && hlc > ahead) return 0;
    /* A change of another site is news only if our vector lacks it. */
    if (lvv && site != sender &&
        (a->smap[site] == SX_NONE || hlc > lvv[a->smap[site]]))
      return 0;
  }
  return 1;
}

/* Would row dr change the stored row o (found, decoded)?  Under the
 * merge rule a row at a lower causal length, or one whose every stamp
 * the stored row already has or beats, changes nothing: it is no change
 * to authorize (a peer sending back the receiver's own version, after a
 * refusal, is not refused again).  Other policies: always a change.
 * With a resolver, which may take the losing side of a conflict, only a
 * row that carries exactly the stored stamps is no change. */
static int sx_row_news(const sx_apply *a, const sx_drow *dr, const sx_row *o) {
  sync_txn *x = a->x;
  const sync_delta *d = a->d;
  int exact = x->env->resolver != NULL;
  size_t j;
  if (a->policy != SYNC_APPLY_MERGE) return 1;
  if (dr->cl != o->cl) return exact || dr->cl > o->cl;
  if (sx_cmp_lr(x, o, o->cl_stamp, d, dr->clhlc, dr->clsite) < 0) return 1;
  for (j = 0; j < dr->ncols; j++) {
    const sx_dcol *c = &d->cols[dr->col0 + j];
    int cmp;
    if (c->col >= o->ncols || o->cols[c->col].st == SX_NOSTAMP) return 1;
    cmp = sx_cmp_lr(x, o, o->cols[c->col].st, d, c->hlc, c->site);
    if (cmp < 0 || (exact && cmp)) return 1;
  }
  return 0;
}

/* Scratch of the authorization callback: the incoming and stored rows
 * as sync_write shows them. */
typedef struct sx_wscratch {
  unsigned cap;
  unsigned *cols;
  sync_value *vals, *svals;
  sync_stamp *stamps, *sstamps;
} sx_wscratch;

static void sx_wscratch_free(const sx_alloc *al, sx_wscratch *w) {
  sx_free(al, w->cols);
  sx_free(al, w->vals);
  sx_free(al, w->svals);
  sx_free(al, w->stamps);
  sx_free(al, w->sstamps);
  memset(w, 0, sizeof *w);
}

static int sx_wscratch_make(const sx_alloc *al, const sync_delta *d,
                            const sx_schema *s, sx_wscratch *w) {
  size_t i, cap = 1;
  for (i = 0; i < s->ntables; i++)
    if (s->tables[i].ncols > cap) cap = s->tables[i].ncols;
  for (i = 0; i < d->nrows; i++)
    if (d->rows[i].ncols > cap) cap = d->rows[i].ncols;
  memset(w, 0, sizeof *w);
  w->cap = (unsigned)cap;
  w->cols = (unsigned *)sx_malloc(al, cap * sizeof(unsigned));
  w->vals = (sync_value *)sx_malloc(al, cap * sizeof(sync_value));
  w->svals = (sync_value *)sx_malloc(al, cap * sizeof(sync_value));
  w->stamps = (sync_stamp *)sx_malloc(al, cap * sizeof(sync_stamp));
  w->sstamps = (sync_stamp *)sx_malloc(al, cap * sizeof(sync_stamp));
  if (!w->cols || !w->vals || !w->svals || !w->stamps || !w->sstamps) {
    sx_wscratch_free(al, w);
    return SYNC_ENOMEM;
  }
  return 0;
}

/* The newest stamp row dr carries. */
static uint64_t sx_drow_newest(const sync_delta *d, const sx_drow *dr) {
  uint64_t h = dr->clhlc;
  size_t j;
  for (j = 0; j < dr->ncols; j++)
    if (d->cols[dr->col0 + j].hlc > h) h = d->cols[dr->col0 + j].hlc;
  return h;
}

/* Judge row dr (the stored row in x->old when found): 0 allowed, 1
 * refused (*reason and text set), or an error.  The table, clock and
 * relay checks first, then the application's callback; a row that
 * changes nothing is allowed (it is counted unchanged). */
static int sx_judge(sx_apply *a, const sync_apply_opts *ao, const sx_drow *dr,
                    int found, const uint64_t *lvv, uint32_t sender,
                    uint64_t ahead, sx_wscratch *ws, int *reason, char *text) {
  sync_txn *x = a->x;
  sync_env *env = x->env;
  const sync_delta *d = a->d;
  const sx_row *o = &x->old;
  size_t j;
  *reason = 0;
  text[0] = 0;
  if (found && !sx_row_news(a, dr, o)) return 0;
  if (ao->writable && !sx_bit(ao->writable, dr->tid)) {
    *reason = SYNC_REFUSE_TABLE;
    snprintf(text, SYNC_REFUSE_TEXT_MAX + 1,
             "table '%s' is not writable by this peer",
             env->schema->tables[dr->tid].name);
    return 1;
  }
  for (j = 0; j <= dr->ncols; j++) {
    const sx_dcol *c = j ? &d->cols[dr->col0 + j - 1] : NULL;
    uint64_t hlc = c ? c->hlc : dr->clhlc;
    uint32_t site = c ? c->site : dr->clsite;
    if (ao->max_ahead_ms && hlc > ahead) {
      *reason = SYNC_REFUSE_FUTURE;
      snprintf(text, SYNC_REFUSE_TEXT_MAX + 1,
               "a stamp more than %llu ms ahead of this replica's clock",
               (unsigned long long)ao->max_ahead_ms);
      return 1;
    }
    if (lvv && site != sender &&
        (a->smap[site] == SX_NONE || hlc > lvv[a->smap[site]])) {
      /* Another site's change this replica lacks; unless the stored row
       * holds it already (or better), which is no news. */
      int held = 0;
      if (found && o->cl == dr->cl) {
        if (!c)
          held = sx_cmp_lr(x, o, o->cl_stamp, d, hlc, site) >= 0;
        else if (c->col < o->ncols && o->cols[c->col].st != SX_NOSTAMP)
          held = sx_cmp_lr(x, o, o->cols[c->col].st, d, hlc, site) >= 0;
      }
      if (!held) {
        *reason = SYNC_REFUSE_RELAY;
        snprintf(text, SYNC_REFUSE_TEXT_MAX + 1,
                 "a change of another site, and this peer may not relay");
        return 1;
      }
    }
  }
  if (ao->check) {
    sync_write w;
    int rc;
    unsigned i;
    memset(&w, 0, sizeof w);
    w.table = dr->tid;
    w.key.data = d->arena.p + dr->koff;
    w.key.len = dr->klen;
    w.sender = d->sender;
    w.causal_length = dr->cl;
    w.row_stamp.hlc = dr->clhlc;
    memcpy(w.row_stamp.site, d->sites[dr->clsite], SX_SITE_LEN);
    w.ncolumns = (unsigned)dr->ncols;
    /* A chunk without a column array has no row with columns. */
    if (SX_NEVER(!d->cols && dr->ncols)) return SYNC_ECORRUPT;
    for (j = 0; j < dr->ncols; j++) {
      const sx_dcol *c = &d->cols[dr->col0 + j];
      ws->cols[j] = c->col;
      ws->vals[j] = sx_dval(d, c);
      ws->stamps[j].hlc = c->hlc;
      memcpy(ws->stamps[j].site, d->sites[c->site], SX_SITE_LEN);
    }
    w.columns = ws->cols;
    w.values = ws->vals;
    w.stamps = ws->stamps;
    if (found) {
      const sx_table *tb = &env->schema->tables[dr->tid];
      w.stored = (o->cl & 1) ? 1 : 2;
      w.stored_causal_length = o->cl;
      w.stored_ncolumns = tb->ncols;
      for (i = 0; i < tb->ncols && i < ws->cap; i++) {
        int set = i < o->ncols && o->cols[i].st != SX_NOSTAMP && (o->cl & 1);
        ws->svals[i] = set ? o->cols[i].v : sync_null();
        memset(&ws->sstamps[i], 0, sizeof ws->sstamps[i]);
        if (set) {
          const sx_stamp *st = &o->stamps[o->cols[i].st];
          ws->sstamps[i].hlc = st->hlc;
          if ((rc = sx_site_id(x, st->site, ws->sstamps[i].site))) return rc;
        }
      }
      w.stored_values = (o->cl & 1) ? ws->svals : NULL;
      w.stored_stamps = (o->cl & 1) ? ws->sstamps : NULL;
    }
    rc = ao->check(ao->check_ctx, &w, reason, text, SYNC_REFUSE_TEXT_MAX + 1);
    if (rc < 0) return sx_fail(env, rc, "the write check failed: %s",
                               sync_strerror(rc));
    if (rc) {
      text[SYNC_REFUSE_TEXT_MAX] = 0;
      if (*reason < SYNC_REFUSE_APP || *reason > 65535)
        *reason = SYNC_REFUSE_APP;
      return 1;
    }
  }
  return 0;
}

/* Tell ao->on_refused of a refusal. */
static int sx_report_refusal(const sx_apply *a, const sync_apply_opts *ao,
                             const sx_drow *dr, int reason, const char *text) {
  sync_refused r;
  if (!ao->on_refused) return 0;
  memset(&r, 0, sizeof r);
  r.table = dr->tid;
  r.key.data = a->d->arena.p + dr->koff;
  r.key.len = dr->klen;
  r.reason = reason;
  r.text = text;
  r.hlc = sx_drow_newest(a->d, dr);
  return ao->on_refused(ao->on_refused_ctx, &r);
}

static int sx_delta_apply_opts(sync_txn *x, const sync_delta *d,
                               const sync_apply_opts *ao,
                               sync_apply_report *rep, int hold);

/* Columns this replica keeps local (SYNC_COL_LOCAL, not part of the
 * schema hash, so a peer may see them as replicated) never take a
 * remote value: *out becomes a copy of d without them, or stays NULL
 * when d carries none (or is malformed: the apply reports that).  The
 * copy shares d's arena, sites and vector: free only its rows, columns
 * and itself. */
static int sx_strip_local(const sx_alloc *al, const sx_schema *s,
                          const sync_delta *d, sync_delta **out) {
  sync_delta *c;
  size_t i, j, k = 0;
  int any = 0;
  *out = NULL;
  for (i = 0; i < s->ntables && !any; i++)
    for (j = 0; j < s->tables[i].ncols; j++)
      if (s->tables[i].cols[j].flags & SYNC_COL_LOCAL) any = 1;
  if (!any) return 0; /* the common case: the apply checks d itself */
  any = 0;
  if (sx_delta_check(d, s, NULL)) return 0;
  for (i = 0; i < d->nrows && !any; i++) {
    const sx_table *tb;
    if (d->rows[i].tid >= s->ntables) continue; /* a table we lack */
    tb = &s->tables[d->rows[i].tid];
    for (j = 0; j < d->rows[i].ncols; j++) {
      unsigned col = d->cols[d->rows[i].col0 + j].col;
      if (col < tb->ncols && (tb->cols[col].flags & SYNC_COL_LOCAL)) any = 1;
    }
  }
  if (!any) return 0;
  c = (sync_delta *)sx_malloc(al, sizeof *c);
  if (!c) return SYNC_ENOMEM;
  *c = *d;
  c->rows = (sx_drow *)sx_malloc(al, d->nrows * sizeof(sx_drow));
  c->cols = (sx_dcol *)sx_malloc(al, (d->ncols ? d->ncols : 1) * sizeof(sx_dcol));
  if (!c->rows || !c->cols) {
    sx_free(al, c->rows);
    sx_free(al, c->cols);
    sx_free(al, c);
    return SYNC_ENOMEM;
  }
  c->caprows = d->nrows;
  c->capcols = d->ncols;
  for (i = 0; i < d->nrows; i++) {
    const sx_table *tb =
        d->rows[i].tid < s->ntables ? &s->tables[d->rows[i].tid] : NULL;
    c->rows[i] = d->rows[i];
    c->rows[i].col0 = k;
    for (j = 0; j < d->rows[i].ncols; j++) {
      const sx_dcol *dc = &d->cols[d->rows[i].col0 + j];
      if (tb && dc->col < tb->ncols &&
          (tb->cols[dc->col].flags & SYNC_COL_LOCAL))
        continue;
      c->cols[k++] = *dc;
    }
    c->rows[i].ncols = k - c->rows[i].col0;
  }
  c->ncols = k;
  *out = c;
  return 0;
}

/* The apply, timed and counted for the stats (not dry runs). */
SYNC_API int sync_delta_apply_opts(sync_txn *x, const sync_delta *d,
                                   const sync_apply_opts *ao,
                                   sync_apply_report *rep) {
  sync_apply_report dummy;
  uint64_t t0 = sx_now_ns(), t1;
  sync_delta *strip = NULL;
  int rc;
  if (!rep) rep = &dummy;
  if (x && d && x->env->schema &&
      (rc = sx_strip_local(&x->env->al, x->env->schema, d, &strip))) {
    memset(rep, 0, sizeof *rep);
    return rc;
  }
  rc = sx_delta_apply_opts(x, strip ? strip : d, ao, rep, 0);
  if (strip) {
    sx_free(&x->env->al, strip->rows);
    sx_free(&x->env->al, strip->cols);
    sx_free(&x->env->al, strip);
  }
  t1 = sx_now_ns();
  if (!rc && x && !(ao && (ao->policy & SYNC_APPLY_DRY_RUN))) {
    sx_stats *st = &x->env->stats;
    sx_stats_add(st, SX_ST_APPLIES, 1);
    sx_stats_add(st, SX_ST_ROWS_APPLIED, rep->rows);
    sx_stats_add(st, SX_ST_CONFLICTS, rep->conflicts);
    sx_stats_add(st, SX_ST_REFUSED, rep->refused);
    sx_stats_time(st, SX_H_APPLY, t1 > t0 ? t1 - t0 : 0);
  }
  return rc;
}

SYNC_API int sync_delta_apply(sync_txn *x, const sync_delta *d, int policy,
                              sync_apply_report *rep) {
  sync_apply_opts o;
  memset(&o, 0, sizeof o);
  o.policy = policy;
  o.relay = 1;
  return sync_delta_apply_opts(x, d, &o, rep);
}

/* Keys of an initial-stream chunk in strictly increasing (table, key)
 * order, as sx_delta_keys makes them: only then can what the chunk leaves
 * out be read as absent at the sender. */
static int sx_rows_sorted(const sync_delta *d) {
  size_t i;
  for (i = 1; i < d->nrows; i++) {
    const sx_drow *a = &d->rows[i - 1], *b = &d->rows[i];
    if (a->tid != b->tid ? a->tid > b->tid
                         : sx_keycmp(d->arena.p + a->koff, a->klen,
                                     d->arena.p + b->koff, b->klen) >= 0)
      return 0;
  }
  return 1;
}

/* After an initial-stream chunk: the chunk names every row the sender
 * held in the key range it covers (start exclusive, end inclusive).  A
 * live row of ours in that range that the chunk leaves out, and whose
 * insert the sender's vector covers, is one the sender held, deleted and
 * collected: it goes here too, as a delete of ours (causal length + 1,
 * our stamp), so that it reaches replicas still holding the row.  Without
 * this, the vector this run raises would claim deletes we never got. */
static int sx_apply_horizon(sx_apply *a, const sync_apply_opts *ao) {
  sync_txn *x = a->x;
  sync_env *env = x->env;
  const sync_delta *d = a->d;
  uint64_t *svv;
  unsigned tid, last_tid;
  size_t j = 0, i;
  int rc = 0;
  if (!sx_rows_sorted(d)) return 0;
  svv = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (x->nsites + 1));
  if (!svv) return SYNC_ENOMEM;
  memset(svv, 0, sizeof(uint64_t) * (x->nsites + 1));
  for (i = 0; i < d->nsites; i++)
    if (a->smap[i] != SX_NONE && a->smap[i] < x->nsites)
      svv[a->smap[i]] = a->svv[i];
  tid = d->start.mode == SX_MODE_INITIAL ? d->start.tid : 0;
  last_tid = d->end.mode == SX_MODE_INITIAL ? d->end.tid : env->schema->ntables;
  for (; tid < env->schema->ntables && tid <= last_tid && !rc; tid++) {
    const unsigned char *lo = NULL, *hi = NULL;
    size_t lon = 0, hin = 0;
    sx_scur *cur;
    sx_slice k, v;
    int op;
    if (d->end.mode == SX_MODE_INITIAL && tid == d->end.tid) {
      if (!d->end.klen) break; /* this table's stream has not started */
      hi = d->end.key;
      hin = d->end.klen;
    }
    if (d->start.mode == SX_MODE_INITIAL && tid == d->start.tid &&
        d->start.klen) {
      lo = d->start.key;
      lon = d->start.klen;
    }
    if (ao && ao->writable && !sx_bit(ao->writable, tid)) continue;
    if ((rc = sx_table_cursor(x, tid, &cur))) break;
    k.p = lo;
    k.n = lon;
    op = lo ? SX_SET_RANGE : SX_FIRST;
    for (;;) {
      unsigned char key[SYNC_MAX_KEY];
      size_t klen;
      const sx_stamp *cs;
      int cmp = 1;
      rc = sx_cur_get(env->st, cur, op, &k, &v);
      op = SX_NEXT;
      if (rc == SYNC_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc) break;
      if (lo && sx_keycmp(k.p, k.n, lo, lon) <= 0) continue;
      if (hi && sx_keycmp(k.p, k.n, hi, hin) > 0) break;
      /* Step the chunk's rows up to this key. */
      while (j < d->nrows &&
             (d->rows[j].tid < tid ||
              (d->rows[j].tid == tid &&
               (cmp = sx_keycmp(d->arena.p + d->rows[j].koff,
                                d->rows[j].klen, k.p, k.n)) < 0)))
        j++;
      if (j < d->nrows && d->rows[j].tid == tid && cmp == 0) continue;
      if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &x->old))) {
        rc = sx_fail(env, rc, "table '%s': stored row fails its checksum",
                     env->schema->tables[tid].name);
        break;
      }
      if (!(x->old.cl & 1)) continue;
      cs = &x->old.stamps[x->old.cl_stamp];
      if (cs->site >= x->nsites || cs->hlc > svv[cs->site]) continue;
      a->rep->collected++;
      if (a->dry) continue;
      klen = k.n;
      memcpy(key, k.p, klen);
      sx_stamp_txn(x);
      x->nw.nstamps = 0;
      x->nw.cl = x->old.cl + 1;
      x->nw.cl_stamp = sx_row_stamp(&x->nw, sx_mkstamp_local(x));
      x->nw.ncols = 0;
      if ((rc = sx_store_row(x, tid, cur, key, klen, 1, 0))) break;
      /* The cursor still stands on the row it rewrote. */
      k.p = key;
      k.n = klen;
    }
  }
  sx_free(&env->al, svv);
  return rc;
}

/* Is stored row r in the scope ao gives the sender (ao->scope_filter)?
 * *vals: the filter's values, allocated at the first call. */
static int sx_scope_of(sync_txn *x, const sync_apply_opts *ao,
                       const uint8_t *sender, unsigned tid,
                       const unsigned char *key, size_t klen, const sx_row *r,
                       sync_value **vals, int *in) {
  const sx_table *tb = &x->env->schema->tables[tid];
  unsigned j;
  if (!(r->cl & 1)) {
    *in = ao->scope_filter(ao->scope_filter_ctx, sender, tid, key, klen, NULL,
                           0) != 0;
    return 0;
  }
  if (!*vals) {
    *vals = (sync_value *)sx_malloc(&x->env->al,
                                    sizeof(sync_value) * (SYNC_MAX_COLUMNS + 1));
    if (!*vals) return SYNC_ENOMEM;
  }
  for (j = 0; j < tb->ncols; j++)
    (*vals)[j] = j < r->ncols && r->cols[j].st != SX_NOSTAMP ? r->cols[j].v
                                                              : sync_null();
  *in = ao->scope_filter(ao->scope_filter_ctx, sender, tid, key, klen, *vals,
                         tb->ncols) != 0;
  return 0;
}

/* Log stored row x->old (table tid, at cur) again, unchanged. */
static int sx_relog(sync_txn *x, unsigned tid, sx_scur *cur,
                    const unsigned char *key, size_t klen) {
  sx_row *o = &x->old, *w = &x->nw;
  if (SX_NEVER(o->nstamps > SX_ROW_STAMP_CAP(w->cap_cols) ||
               o->ncols > w->cap_cols))
    return SYNC_ECORRUPT;
  w->cl = o->cl;
  w->cl_stamp = o->cl_stamp;
  w->nstamps = o->nstamps;
  memcpy(w->stamps, o->stamps, sizeof(sx_stamp) * o->nstamps);
  w->ncols = o->ncols;
  memcpy(w->cols, o->cols, sizeof(sx_rcol) * o->ncols);
  return sx_store_row(x, tid, cur, key, klen, 1, 0);
}

/* Could this replica have collected the tombstone of a row of table tid
 * at causal length cl?  Only if it ever collected one above cl in that
 * table (sx_fresh_cl keeps the largest).  1 yes, 0 no, or an error.  A
 * row our vector covers that we do not hold, and could not have
 * collected, is one this file lost (a restore not yet found out): it is
 * merged as any other. */
static int sx_collected_above(sync_txn *x, unsigned tid, uint64_t cl) {
  uint64_t fresh;
  int rc = sx_fresh_cl(x, tid, &fresh); /* loads x->gccl */
  if (rc) return rc;
  return x->gccl && x->gccl[tid] > cl;
}

/* Did this replica hold every write of row dr (its row stamp and every
 * column's) when it last collected tombstones (gcvv, or a collector's
 * vector taken with its horizon)?  Only then can a row it lacks be one
 * it deleted and collected.  Its vector is no proof: a peer restored
 * from a backup claims the writes it lost (its own entry is its last
 * HLC, which new writes raise past them), and a row that comes back
 * with such a write, or with changes made since the collection, is one
 * the fleet still holds.  1 yes, 0 no, or an error. */
static int sx_gc_covers(sync_txn *x, const sync_delta *d, const sx_drow *dr) {
  sync_env *env = x->env;
  sx_slice g;
  size_t i;
  int rc = sx_get(env->st, x->t, env->meta, "gcvv", 4, &g);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  for (i = 0; i <= dr->ncols; i++) {
    uint32_t site = i ? d->cols[dr->col0 + i - 1].site : dr->clsite;
    uint64_t hlc = i ? d->cols[dr->col0 + i - 1].hlc : dr->clhlc, held = 0;
    size_t j;
    for (j = 0; j + 24 <= g.n; j += 24)
      if (!memcmp(g.p + j, d->sites[site], SX_SITE_LEN))
        held = sx_get_le64(g.p + j + 16);
    if (hlc > held) return 0;
  }
  return 1;
}

/* Look up and decode the stored row of dr into x->old: 1 found, 0 not,
 * or an error. */
static int sx_stored_row(sync_txn *x, const sync_delta *d, const sx_drow *dr) {
  sync_env *env = x->env;
  sx_slice v;
  int rc = sx_get(env->st, x->t, env->tdbi[dr->tid], d->arena.p + dr->koff,
                  dr->klen, &v);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if ((rc = sx_row_decode(v.p, v.n, d->arena.p + dr->koff, dr->klen,
                          &x->old)))
    return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                   env->schema->tables[dr->tid].name);
  return 1;
}

static int sx_delta_apply_opts(sync_txn *x, const sync_delta *d,
                               const sync_apply_opts *ao,
                               sync_apply_report *rep, int hold) {
  sync_env *env;
  sx_wscratch ws;
  char text[SYNC_REFUSE_TEXT_MAX + 1];
  int reason;
  uint64_t *lvv = NULL, *rvv = NULL, ahead = UINT64_MAX;
  uint32_t sender = SX_NONE;
  int checks, policy = ao ? ao->policy : SYNC_APPLY_MERGE;
  sync_apply_report dummy;
  sx_apply a;
  sx_peer peer;
  uint64_t maxhlc = 0;
  size_t i, app_len = 0;
  unsigned char app_last[SYNC_MAX_KEY];
  unsigned app_tid = SX_NONE;
  int rc, contiguous, base = policy & ~SYNC_APPLY_DRY_RUN, app_any = 0, keyed,
      scoped = ao && ao->scope_filter && ao->scope_tables;
  sync_value *svals = NULL;
  if (!rep) rep = &dummy;
  memset(rep, 0, sizeof *rep);
  memset(&ws, 0, sizeof ws);
  if (!x || !d) return SYNC_EINVAL;
  env = x->env;
  if (base < SYNC_APPLY_MERGE || base > SYNC_APPLY_APPEND) return SYNC_EINVAL;
  if (!memcmp(d->sender, env->site, SX_SITE_LEN)) return SYNC_EINVAL;
  if (!sx_compat_ok(env, d->schema_hash))
    return sx_fail(env, SYNC_ESCHEMA,
                   "the delta was cut under another schema (hash %016llx), "
                   "not known to be compatible with this one",
                   (unsigned long long)d->schema_hash);
  /* A chunk leaves out what its receiver holds: applied elsewhere it
   * would move a cursor past rows that replica never got. */
  if (memcmp(d->receiver, env->site, SX_SITE_LEN))
    return sx_fail(env, SYNC_EINVAL, "the delta was cut for another replica");
  if (!(policy & SYNC_APPLY_DRY_RUN) && x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if ((rc = sx_delta_check(d, env->schema,
                            sx_compat_find(env, d->schema_hash))))
    return sx_fail(env, rc, "the delta is malformed");
  if (d->repair && d->nx)
    return sx_fail(env, SYNC_EPROTO, "a repair frame holds exit markers");
  if (ao && ao->refuse_exits && d->nx)
    return sx_fail(env, SYNC_EPERM,
                   "the chunk holds exit markers (%zu), which this replica "
                   "does not take from its sender",
                   d->nx);
  if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
  memset(&a, 0, sizeof a);
  a.x = x;
  a.d = d;
  a.policy = base;
  a.dry = (policy & SYNC_APPLY_DRY_RUN) != 0;
  a.rep = rep;
  rc = sx_peer_get(x, d->sender, &peer);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  contiguous = !d->repair && sx_cursor_eq(&peer.cur, &d->start);
  if (!contiguous && !d->repair && sx_cursor_covers(&peer.cur, &d->end)) {
    /* Every row of this chunk sits at or before our cursor: the run
     * already brought it (or a later state of its rows).  Applying it
     * again would change nothing but re-log its conflicts. */
    rep->rows = rep->unchanged = d->nrows;
    return 0;
  }
  keyed = !d->repair && (d->start.mode == SX_MODE_INITIAL ||
          d->end.mode == SX_MODE_INITIAL ||
          (d->start.mode == SX_MODE_LOG && d->start.version == 0 &&
           d->start.seq == 0));
  /* Map the delta's sites to ours (added as they come; a dry run maps
   * unknown ones past the end, which only comparisons by id use). */
  a.smap = (uint32_t *)sx_malloc(&env->al, sizeof(uint32_t) * d->nsites);
  if (!a.smap) return SYNC_ENOMEM;
  for (i = 0; i < d->nsites; i++) {
    rc = sx_site_index(x, d->sites[i], !a.dry, &a.smap[i]);
    if (rc == SYNC_NOTFOUND && a.dry) {
      a.smap[i] = SX_NONE;
      rc = 0;
    }
    if (rc) goto done;
  }
  if ((rc = sx_sender_vv(x, d, &a.svv))) goto done;
  checks = ao && (ao->writable || !ao->relay || ao->max_ahead_ms ||
                  ao->check);
  /* Our vector tells a row we never had from one we deleted and
   * collected (its insert is covered, yet no row or tombstone is left). */
  if ((rc = sx_vv_load(x, &lvv))) goto done;
  if (checks) {
    for (i = 0; i < d->nsites; i++)
      if (!memcmp(d->sites[i], d->sender, SX_SITE_LEN)) sender = (uint32_t)i;
    rvv = ao->relay ? NULL : lvv; /* the relay check needs our vector */
    if (ao->max_ahead_ms) {
      uint64_t now = env->clock(env->clock_ctx);
      ahead = ((now + ao->max_ahead_ms) << 16) | 0xffff;
    }
    if (ao->check &&
        (rc = sx_wscratch_make(&env->al, d, env->schema, &ws)))
      goto done;
    if (ao->refuse_whole) {
      /* Every row judged against the stored one before anything is
       * written; every refusal reported, then the chunk refused. */
      size_t nref = 0;
      char first[SYNC_REFUSE_TEXT_MAX + 1];
      for (i = 0; i < d->nrows; i++) {
        int found;
        if (d->rows[i].tid >= env->schema->ntables) continue; /* held */
        found = sx_stored_row(x, d, &d->rows[i]);
        if (found < 0) {
          rc = found;
          goto done;
        }
        rc = sx_judge(&a, ao, &d->rows[i], found, rvv, sender, ahead, &ws,
                      &reason, text);
        if (rc < 0) goto done;
        if (rc) {
          if (!nref++) memcpy(first, text, sizeof first);
          rep->refused++;
          if ((rc = sx_report_refusal(&a, ao, &d->rows[i], reason, text)))
            goto done;
        }
      }
      rc = 0;
      if (nref) {
        rc = sx_fail(env, SYNC_EPERM,
                     "the chunk holds %zu rows the sender may not write "
                     "(the first: %s)", nref, first);
        goto done;
      }
    }
  }
  /* The clock follows everything in the delta before any local stamp
   * (a resolver's) is taken, so ours come after all of them; stamps of
   * refused rows must not move it. */
  for (i = 0; i < d->nrows; i++) {
    size_t j;
    if (d->rows[i].tid >= env->schema->ntables) continue; /* not applied */
    if (checks && !sx_row_ok(&a, ao, &d->rows[i], rvv, sender, ahead)) continue;
    if (d->rows[i].clhlc > maxhlc) maxhlc = d->rows[i].clhlc;
    for (j = 0; j < d->rows[i].ncols; j++)
      if (d->cols[d->rows[i].col0 + j].hlc > maxhlc)
        maxhlc = d->cols[d->rows[i].col0 + j].hlc;
  }
  if (maxhlc > x->hlc_seen) x->hlc_seen = maxhlc;
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *dr = &d->rows[i];
    const unsigned char *key = d->arena.p + dr->koff;
    sx_scur *cur;
    sx_slice k, v;
    int found, cls, was_live, now_live, append = 0;
    rep->rows++;
    if (dr->tid >= env->schema->ntables) {
      /* A table of a newer schema: nowhere to keep it yet.  The cursor
       * stays before the chunk, so that the run brings it again once an
       * upgrade added the table (docs/PROTOCOL.md, "Schemas"). */
      rep->unknown++;
      continue;
    }
    if ((rc = sx_table_cursor(x, dr->tid, &cur))) goto done;
    if (keyed && !a.dry) {
      /* Rows of an initial stream come in key order: past the table's
       * last key they are new and go on the end, without a search. */
      if (dr->tid != app_tid) {
        app_tid = dr->tid;
        k.p = NULL;
        k.n = 0;
        rc = sx_cur_get(env->st, cur, SX_LAST, &k, &v);
        if (rc && rc != SYNC_NOTFOUND) goto done;
        app_len = rc ? 0 : k.n;
        if (!rc) memcpy(app_last, k.p, k.n);
        app_any = rc == 0;
      }
      append = !app_any || sx_keycmp(key, dr->klen, app_last, app_len) > 0;
    }
    if (append) {
      rc = SYNC_NOTFOUND;
    } else {
      k.p = key;
      k.n = dr->klen;
      rc = sx_cur_get(env->st, cur, SX_SET_KEY, &k, &v);
    }
    if (rc && rc != SYNC_NOTFOUND) goto done;
    found = rc == 0;
    if (found && (rc = sx_row_decode(v.p, v.n, key, dr->klen, &x->old))) {
      sx_fail(env, rc, "table '%s': stored row fails its checksum",
              env->schema->tables[dr->tid].name);
      goto done;
    }
    if (checks && !ao->refuse_whole) { /* whole: judged above */
      rc = sx_judge(&a, ao, dr, found, rvv, sender, ahead, &ws, &reason,
                    text);
      if (rc < 0) goto done;
      if (rc) {
        rep->refused++; /* never applied; the run still moves past it */
        if ((rc = sx_report_refusal(&a, ao, dr, reason, text))) goto done;
        continue;
      }
    }
    rc = 0;
    if (!found && (dr->cl & 1) && a.smap[dr->clsite] != SX_NONE &&
        a.smap[dr->clsite] < x->nsites &&
        dr->clhlc <= lvv[a.smap[dr->clsite]]) {
      rc = sx_gc_covers(x, d, dr);
      if (rc > 0) rc = sx_collected_above(x, dr->tid, dr->cl);
      if (rc < 0) goto done;
    }
    if (rc) {
      /* We held this row and collected its tombstone: the sender kept
       * an old copy.  Bringing it back would invent data; leaving it
       * would leave the sender with it for good.  A delete of ours
       * (causal length + 1) says again what we knew, and goes back to
       * the sender with everything else (a repair frame's answer). */
      if (d->repair)
        rep->deleted++;
      else
        rep->unchanged++;
      if (!a.dry) {
        sx_stamp_txn(x);
        x->nw.nstamps = 0;
        x->nw.cl = dr->cl + 1;
        x->nw.cl_stamp = sx_row_stamp(&x->nw, sx_mkstamp_local(x));
        x->nw.ncols = 0;
        if ((rc = sx_store_row(x, dr->tid, cur, key, dr->klen, 0, append)))
          goto done;
        if (append) {
          memcpy(app_last, key, dr->klen);
          app_len = dr->klen;
          app_any = 1;
        }
      }
      rc = 0;
      continue;
    }
    x->cpend.len = 0;
    if ((rc = sx_merge_row(&a, dr, found, &cls)) < 0) goto done;
    was_live = found && (x->old.cl & 1);
    now_live = (x->nw.cl & 1) != 0;
    if (rc == 0) {
      rep->unchanged++;
      if (scoped && !a.dry) {
        /* Ours stays; if it is out of the sender's scope, the sender's
         * copy must exit: log the row again so its next chunk says so. */
        int in = 1;
        if (sx_bit(ao->scope_tables, dr->tid)) {
          if ((rc = sx_scope_of(x, ao, d->sender, dr->tid, key, dr->klen,
                                &x->old, &svals, &in)))
            goto done;
        }
        if (!in && (rc = sx_relog(x, dr->tid, cur, key, dr->klen))) goto done;
      }
    } else {
      if (now_live && !was_live) rep->inserted++;
      else if (!now_live && was_live) rep->deleted++;
      else if (now_live) rep->updated++;
      else rep->unchanged++;
      if (!a.dry &&
          (rc = sx_store_row(x, dr->tid, cur, key, dr->klen, found, append)))
        goto done;
      if (append) {
        memcpy(app_last, key, dr->klen);
        app_len = dr->klen;
        app_any = 1;
      }
    }
    if (!a.dry && (rc = sx_conflicts_flush(x))) goto done;
    x->cpend.len = 0;
    rc = 0;
  }
  /* Rows that left this replica's scope. */
  if (d->nx && (rc = sx_apply_exits(&a))) goto done;
  /* What an initial stream leaves out of the range it covers, the
   * sender no longer holds. */
  if (keyed && d->complete && !d->partial && !d->nx &&
      (rc = sx_apply_horizon(&a, ao)))
    goto done;
  if (!a.dry && contiguous && hold && rep->refused) {
    /* The session moves the cursor once the writer has taken back what
     * was refused (sx_peer_advance): a cut before that sends the chunk
     * again, and the refusals with it. */
    x->dirty = 1;
  } else if (!a.dry && contiguous && !rep->unknown) {
    /* A run that starts from nothing starts clean; one that left rows
     * out stays unable to raise the vector until it starts again. */
    if ((d->start.mode == SX_MODE_LOG && !d->start.version && !d->start.seq) ||
        (d->scope.flags & SX_SCOPE_RESTART))
      peer.tainted = 0;
    if (d->partial || rep->refused || d->nx) peer.tainted = 1;
    peer.cur = d->end;
    peer.mark = d->mark;
    peer.scope = d->scope; /* served with it (none: the sender tracks none) */
    if (d->last) peer.stale = 0; /* a run from the peer completed */
    if ((rc = sx_peer_put(x, d->sender, &peer))) goto done;
    rep->cursor_moved = 1;
    if (d->last && !peer.tainted) {
      /* The run is complete: we hold all the sender held. */
      for (i = 0; i < d->nvv; i++) {
        unsigned char kk[4], vb[8];
        sx_slice old;
        uint32_t li = a.smap[i];
        if (!a.svv[i] || li == 0) continue;
        sx_put_be32(kk, li);
        rc = sx_get(env->st, x->t, env->vv, kk, 4, &old);
        if (rc && rc != SYNC_NOTFOUND) goto done;
        if (rc == 0 && old.n == 8 && sx_get_le64(old.p) >= a.svv[i]) continue;
        sx_put_le64(vb, a.svv[i]);
        if ((rc = sx_put(env->st, x->t, env->vv, kk, 4, vb, 8, 0))) {
          x->failed = 1;
          goto done;
        }
      }
      rc = 0;
      if (d->ngccl) {
        uint64_t *maxcl = (uint64_t *)sx_malloc(
            &env->al, sizeof(uint64_t) * (env->schema->ntables + 1));
        if (!maxcl) {
          rc = SYNC_ENOMEM;
          goto done;
        }
        memset(maxcl, 0, sizeof(uint64_t) * (env->schema->ntables + 1));
        for (i = 0; i < d->ngccl; i++)
          if (d->gccl[i].tid < env->schema->ntables)
            maxcl[d->gccl[i].tid] = d->gccl[i].cl;
        rc = sx_gccl_raise(x, maxcl);
        sx_free(&env->al, maxcl);
        if (rc) goto done;
        if (d->complete) {
          /* We hold what the collector held (its horizon removed the
           * rest): its vector bounds the deletes we now claim without
           * tombstones, as our own collection's would. */
          uint64_t *from = (uint64_t *)sx_malloc(
              &env->al, sizeof(uint64_t) * (x->nsites + 1));
          if (!from) {
            rc = SYNC_ENOMEM;
            goto done;
          }
          memset(from, 0, sizeof(uint64_t) * (x->nsites + 1));
          for (i = 0; i < d->nvv; i++)
            if (a.smap[i] != SX_NONE && a.smap[i] < x->nsites)
              from[a.smap[i]] = a.svv[i];
          rc = sx_gcvv_raise(x, from);
          sx_free(&env->al, from);
          if (rc) goto done;
        }
      }
      rep->vector_raised = 1;
    }
    x->dirty = 1; /* the clock may have moved with what we saw */
  }
  /* Renewal records: taken whatever the cursor did (they only lower). */
  if (!a.dry && d->nrenew) rc = sx_apply_renewals(x, d);
done:
  sx_free(&env->al, a.svv);
  sx_free(&env->al, a.smap);
  sx_free(&env->al, lvv);
  sx_free(&env->al, svals);
  sx_wscratch_free(&env->al, &ws);
  return rc;
}

SYNC_PRIVATE int sx_delta_apply_held(sync_txn *x, const sync_delta *d,
                                     const sync_apply_opts *ao,
                                     sync_apply_report *rep) {
  sync_apply_report dummy;
  sync_delta *strip = NULL;
  uint64_t t0 = sx_now_ns(), t1;
  int rc;
  if (!rep) rep = &dummy;
  if ((rc = sx_strip_local(&x->env->al, x->env->schema, d, &strip))) {
    memset(rep, 0, sizeof *rep);
    return rc;
  }
  rc = sx_delta_apply_opts(x, strip ? strip : d, ao, rep, 1);
  if (strip) {
    sx_free(&x->env->al, strip->rows);
    sx_free(&x->env->al, strip->cols);
    sx_free(&x->env->al, strip);
  }
  t1 = sx_now_ns();
  if (!rc && !(ao->policy & SYNC_APPLY_DRY_RUN)) {
    sx_stats *st = &x->env->stats;
    sx_stats_add(st, SX_ST_APPLIES, 1);
    sx_stats_add(st, SX_ST_ROWS_APPLIED, rep->rows);
    sx_stats_add(st, SX_ST_CONFLICTS, rep->conflicts);
    sx_stats_add(st, SX_ST_REFUSED, rep->refused);
    sx_stats_time(st, SX_H_APPLY, t1 > t0 ? t1 - t0 : 0);
  }
  return rc;
}

SYNC_PRIVATE int sx_peer_advance(sync_txn *x, const uint8_t *site,
                                 const sx_cursor *start, const sx_cursor *end,
                                 const sx_mark *mark, int last) {
  sx_peer peer;
  int rc = sx_peer_get(x, site, &peer);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if (rc == SYNC_NOTFOUND) memset(&peer, 0, sizeof peer);
  if (!sx_cursor_eq(&peer.cur, start)) return 0; /* another run moved it */
  peer.tainted = 1; /* rows were refused: the vector stays */
  peer.cur = *end;
  peer.mark = *mark;
  if (last) peer.stale = 0;
  return sx_peer_put(x, site, &peer);
}

SYNC_API int sync_peer_reset(sync_txn *x, const uint8_t peer[16]) {
  sx_peer p;
  int rc;
  if (!x || !peer || !memcmp(peer, x->env->site, SX_SITE_LEN))
    return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  rc = sx_peer_get(x, peer, &p);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  memset(&p.cur, 0, sizeof p.cur);
  memset(&p.mark, 0, sizeof p.mark);
  return sx_peer_put(x, peer, &p);
}

SYNC_PRIVATE int sx_peer_set_stale(sync_txn *x, const uint8_t *site) {
  sx_peer p;
  int rc = sx_peer_get(x, site, &p);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  p.stale = 1;
  return sx_peer_put(x, site, &p);
}

typedef struct sx_hctx {
  sync_health *h;
  int have_hz;
  uint64_t hv;
  uint32_t hs;
} sx_hctx;

static int sx_health_peer(void *ctx, const uint8_t *site, const sx_peer *p) {
  sx_hctx *c = (sx_hctx *)ctx;
  (void)site;
  c->h->peers++;
  if (p->stale) c->h->peers_stale++;
  if (c->have_hz && sx_poscmp(p->acked_version, p->acked_seq, c->hv, c->hs) < 0)
    c->h->peers_behind_horizon++;
  return 0;
}

SYNC_API int sync_health_get(sync_txn *x, sync_health *out) {
  sx_slice hz;
  sx_hctx c;
  int rc;
  if (!x || !out) return SYNC_EINVAL;
  memset(out, 0, sizeof *out);
  memset(&c, 0, sizeof c);
  c.h = out;
  rc = sx_get(x->env->st, x->t, x->env->meta, "gcpos", 5, &hz);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  c.have_hz = rc == 0 && hz.n == 12;
  if (c.have_hz) {
    c.hv = sx_get_le64(hz.p);
    c.hs = sx_get_le32(hz.p + 8);
  }
  if ((rc = sx_peers_each(x, sx_health_peer, &c))) return rc;
  out->may_miss_deletes = out->peers_stale > 0;
  out->collected = c.have_hz;
  return sync_tombstones(x, &out->tombstones);
}

/* The sites of the peer records, collected first: they are rewritten
 * once the walk over them is done. */
static int sx_site_collect(void *ctx, const uint8_t *site, const sx_peer *p) {
  sx_buf *b = (sx_buf *)ctx;
  int rc;
  (void)p;
  if ((rc = sx_buf_reserve(b, SX_SITE_LEN))) return rc;
  memcpy(b->p + b->len, site, SX_SITE_LEN);
  b->len += SX_SITE_LEN;
  return 0;
}

/* ---------------------------------------------------------------------
 * Renewal records
 *
 * A replica restored from a backup claims, until a peer shows it the
 * restore, the writes of its own site that it lost: its own vector entry
 * is its clock.  Peers that take its vector in that time leave those
 * writes out of what they ask for, past cursors that move on.  When it
 * finds out it gives the site id up and records the HLC up to which its
 * file holds that id's writes: the id's claims above it are void.  The
 * record (meta "renewed": 16-byte site id, u64 LE HLC, per id) goes with
 * the last chunk of every run, so it reaches every replica the way
 * changes do.  A replica that learns it lowers its vector entry (and its
 * gcvv entry) for the id to that HLC and, when the entry was higher,
 * starts its runs again, so that its peers send it what it left out; a
 * vector it takes later is capped there too, whoever sends it.
 * ------------------------------------------------------------------- */

/* The renewal records, copied into b (24 bytes each). */
static int sx_renew_load(sync_txn *x, sx_buf *b) {
  sx_slice v;
  int rc = sx_get(x->env->st, x->t, x->env->meta, "renewed", 7, &v);
  b->len = 0;
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.n % 24 || v.n / 24 > SX_RENEW_MAX) return SYNC_ECORRUPT;
  if ((rc = sx_buf_reserve(b, v.n))) return rc;
  memcpy(b->p, v.p, v.n);
  b->len = v.n;
  return 0;
}

/* h, capped by the record of site in b if there is one. */
static uint64_t sx_renew_cap(const sx_buf *b, const uint8_t *site, uint64_t h) {
  size_t j;
  for (j = 0; j + 24 <= b->len; j += 24)
    if (!memcmp(b->p + j, site, SX_SITE_LEN) && h > sx_get_le64(b->p + j + 16))
      return sx_get_le64(b->p + j + 16);
  return h;
}

/* Start every run again: peers stream all this replica's vector does not
 * cover.  (The sites are collected first: records are rewritten once the
 * walk over them is done.) */
static int sx_runs_restart(sync_txn *x) {
  sx_buf sites;
  size_t i;
  int rc;
  sx_buf_init(&sites, &x->env->al);
  rc = sx_peers_each(x, sx_site_collect, &sites);
  for (i = 0; !rc && i + SX_SITE_LEN <= sites.len; i += SX_SITE_LEN) {
    sx_peer p;
    if ((rc = sx_peer_get(x, sites.p + i, &p))) break;
    memset(&p.cur, 0, sizeof p.cur);
    memset(&p.mark, 0, sizeof p.mark);
    p.tainted = 0;
    rc = sx_peer_put(x, sites.p + i, &p);
  }
  sx_buf_free(&sites);
  return rc;
}

/* Lower the gcvv entry of site to held (0: drop it). */
static int sx_gcvv_cap(sync_txn *x, const uint8_t *site, uint64_t held) {
  sync_env *env = x->env;
  sx_slice g;
  sx_buf b;
  size_t j;
  int rc, changed = 0;
  rc = sx_get(env->st, x->t, env->meta, "gcvv", 4, &g);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  sx_buf_init(&b, &env->al);
  if ((rc = sx_buf_reserve(&b, g.n))) return rc;
  for (j = 0; j + 24 <= g.n; j += 24) {
    uint64_t h = sx_get_le64(g.p + j + 16);
    if (!memcmp(g.p + j, site, SX_SITE_LEN) && h > held) {
      changed = 1;
      if (!held) continue;
      h = held;
    }
    memcpy(b.p + b.len, g.p + j, SX_SITE_LEN);
    sx_put_le64(b.p + b.len + 16, h);
    b.len += 24;
  }
  if (changed &&
      (rc = sx_put(env->st, x->t, env->meta, "gcvv", 4, b.p, b.len, 0)))
    x->failed = 1;
  sx_buf_free(&b);
  return rc;
}

/* Take the renewal record (site, held): keep it (the lower HLC wins), and
 * lower this replica's vector and gcvv entries for site to held; *lowered
 * is set when the vector entry fell.  A record naming this replica's own
 * id is not taken (it never claims less than it holds of itself). */
static int sx_renew_learn(sync_txn *x, const uint8_t *site, uint64_t held,
                          int *lowered) {
  sync_env *env = x->env;
  unsigned char kk[4], vb[8];
  sx_slice old;
  sx_buf b;
  size_t j;
  uint32_t idx;
  int rc, found = 0;
  if (!memcmp(site, env->site, SX_SITE_LEN)) return 0;
  sx_buf_init(&b, &env->al);
  if ((rc = sx_renew_load(x, &b))) goto done;
  for (j = 0; j + 24 <= b.len; j += 24)
    if (!memcmp(b.p + j, site, SX_SITE_LEN)) {
      found = 1;
      if (sx_get_le64(b.p + j + 16) <= held) goto done; /* known */
      sx_put_le64(b.p + j + 16, held);
    }
  if (!found) {
    if (b.len / 24 >= SX_RENEW_MAX) {
      rc = sx_fail(env, SYNC_ELIMIT,
                   "this replica keeps %d renewal records, the most it can",
                   SX_RENEW_MAX);
      goto done;
    }
    if ((rc = sx_buf_reserve(&b, 24))) goto done;
    memcpy(b.p + b.len, site, SX_SITE_LEN);
    sx_put_le64(b.p + b.len + 16, held);
    b.len += 24;
  }
  if ((rc = sx_put(env->st, x->t, env->meta, "renewed", 7, b.p, b.len, 0))) {
    x->failed = 1;
    goto done;
  }
  x->dirty = 1;
  if ((rc = sx_gcvv_cap(x, site, held))) goto done;
  if ((rc = sx_sites_load(x))) goto done;
  rc = sx_site_index(x, site, 0, &idx);
  if (rc == SYNC_NOTFOUND || (rc == 0 && idx == 0)) {
    rc = 0;
    goto done;
  }
  if (rc) goto done;
  sx_put_be32(kk, idx);
  rc = sx_get(env->st, x->t, env->vv, kk, 4, &old);
  if (rc == SYNC_NOTFOUND) {
    rc = 0;
    goto done;
  }
  if (rc || old.n != 8 || sx_get_le64(old.p) <= held) goto done;
  sx_put_le64(vb, held);
  rc = held ? sx_put(env->st, x->t, env->vv, kk, 4, vb, 8, 0)
            : sx_del(env->st, x->t, env->vv, kk, 4);
  if (rc) {
    x->failed = 1;
    goto done;
  }
  *lowered = 1;
done:
  sx_buf_free(&b);
  return rc;
}

/* The records a chunk carries, taken; runs start again when one of them
 * lowered this replica's vector. */
static int sx_apply_renewals(sync_txn *x, const sync_delta *d) {
  size_t i;
  int rc = 0, lowered = 0;
  for (i = 0; i < d->nrenew && !rc; i++)
    rc = sx_renew_learn(x, d->sites[d->renew[i].site], d->renew[i].held,
                        &lowered);
  if (!rc && lowered) rc = sx_runs_restart(x);
  return rc;
}

static int sx_renew_site_cmp(const void *a, const void *b) {
  uint32_t x = ((const sx_renew *)a)->site, y = ((const sx_renew *)b)->site;
  return x < y ? -1 : x > y;
}

/* The renewal records this replica keeps, by the site indexes of d (the
 * last chunk of a run carries them). */
static int sx_renew_attach(sync_txn *x, sync_delta *d) {
  sx_buf b;
  size_t j;
  int rc;
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_renew_load(x, &b)) || !b.len) goto done;
  d->renew = (sx_renew *)sx_malloc(&d->al, b.len / 24 * sizeof(sx_renew));
  if (!d->renew) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  for (j = 0; j + 24 <= b.len; j += 24) {
    uint32_t idx;
    rc = sx_site_index(x, b.p + j, 0, &idx);
    if (rc == SYNC_NOTFOUND) continue;
    if (rc) goto done;
    if (idx == 0 || idx >= d->nsites) continue;
    d->renew[d->nrenew].site = idx;
    d->renew[d->nrenew].held = sx_get_le64(b.p + j + 16);
    d->nrenew++;
  }
  rc = 0;
  qsort(d->renew, d->nrenew, sizeof *d->renew, sx_renew_site_cmp);
done:
  sx_buf_free(&b);
  return rc;
}

/* The sender's vector of d per delta site index, capped by the renewal
 * records this replica keeps and those d carries. */
static int sx_sender_vv(sync_txn *x, const sync_delta *d, uint64_t **out) {
  sx_buf b;
  uint64_t *v;
  size_t i;
  int rc;
  *out = NULL;
  v = (uint64_t *)sx_malloc(&x->env->al,
                            sizeof(uint64_t) * (d->nsites ? d->nsites : 1));
  if (!v) return SYNC_ENOMEM;
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_renew_load(x, &b))) {
    sx_free(&x->env->al, v);
    return rc;
  }
  for (i = 0; i < d->nsites; i++)
    v[i] = i < d->nvv ? sx_renew_cap(&b, d->sites[i], d->vv[i]) : 0;
  for (i = 0; i < d->nrenew; i++)
    if (v[d->renew[i].site] > d->renew[i].held)
      v[d->renew[i].site] = d->renew[i].held;
  sx_buf_free(&b);
  *out = v;
  return 0;
}

/* Give up this replica's site id after a peer showed it holds a log of
 * it that is not this file's (view: version v with mark m, or none).
 * The renewal record says up to which HLC the file holds the old id's
 * writes: when the file has the peer's epoch, what the file held when the
 * epoch after it began (the backup's state, as the first open after the
 * restore found it); otherwise nothing. */
static int sx_site_renew_view(sync_txn *x, const sx_mark *m) {
  uint8_t old[SX_SITE_LEN];
  uint64_t held = 0;
  int rc, lowered = 0;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if (m && m->id) {
    rc = sx_epoch_next_hlc(x, m, &held);
    if (rc == SYNC_NOTFOUND) held = 0;
    else if (rc) return rc;
  }
  memcpy(old, x->env->site, SX_SITE_LEN);
  /* A file restored from a backup lost old-id writes the fleet holds,
   * and while it claimed them (its own vector entry), peers left them
   * out of what they sent, past cursors that have moved on since.  So
   * claim none of the old id, and start every run again: peers send
   * back all they hold of it.  The rows keep their stamps: the fleet may
   * hold those writes too. */
  if ((rc = sx_site_renew(x, x->hlc_last, 0))) return rc;
  if ((rc = sx_renew_learn(x, old, held, &lowered))) return rc;
  return sx_runs_restart(x);
}

SYNC_API int sync_site_renew(sync_txn *x) {
  if (!x) return SYNC_EINVAL;
  return sx_site_renew_view(x, NULL);
}

SYNC_PRIVATE int sx_site_renew_after(sync_txn *x, const sx_mark *m) {
  if (!x || !m) return SYNC_EINVAL;
  return sx_site_renew_view(x, m);
}

/* ---------------------------------------------------------------------
 * Version vector, tombstones, digest
 * ------------------------------------------------------------------- */
SYNC_API int sync_vv_get(sync_txn *x, sync_stamp *out, size_t cap,
                         size_t *n) {
  uint64_t *vv;
  uint32_t i;
  size_t k = 0;
  int rc;
  if (!x || !n || (cap && !out)) return SYNC_EINVAL;
  if ((rc = sx_vv_load(x, &vv))) return rc;
  for (i = 0; i < x->nsites; i++) {
    if (!vv[i]) continue;
    if (k < cap) {
      out[k].hlc = vv[i];
      memcpy(out[k].site, x->sites[i], SX_SITE_LEN);
    }
    k++;
  }
  sx_free(&x->env->al, vv);
  *n = k;
  return 0;
}

/* Walk the log up to (hv, hs), calling fn on tombstones. */
static int sx_tomb_walk(sync_txn *x, uint64_t hv, uint32_t hs, int collect,
                        uint64_t *count, uint64_t *maxcl) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  unsigned char key[SX_LOGKEY];
  int rc, op = SX_FIRST;
  *count = 0;
  if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
  if ((rc = sx_cur_open(env->st, x->t, env->log, &c))) return rc;
  for (;;) {
    sx_slice rkey;
    unsigned tid;
    k.p = key;
    k.n = SX_LOGKEY;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != SX_LOGKEY) {
      rc = SYNC_ECORRUPT;
      break;
    }
    if (sx_poscmp(sx_get_be64(k.p), sx_get_be32(k.p + 8), hv, hs) > 0) break;
    rc = sx_log_current(x, &x->old, k.p, k.n, v.p, v.n, &tid, &rkey);
    if (rc == SYNC_NOTFOUND) continue;
    if (rc) break;
    if (x->old.cl & 1) continue;
    (*count)++;
    if (!collect) continue;
    if (x->old.cl > maxcl[tid]) maxcl[tid] = x->old.cl;
    {
      unsigned char rk[SYNC_MAX_KEY];
      size_t rkn = rkey.n;
      memcpy(key, k.p, SX_LOGKEY);
      memcpy(rk, rkey.p, rkn);
      /* The table's sums lose the tombstone (repair counts them). */
      if ((rc = sx_sums_drop(x, tid, rk, rkn, &x->old))) break;
      if ((rc = sx_del(env->st, x->t, env->tdbi[tid], rk, rkn)) ||
          (rc = sx_del(env->st, x->t, env->log, key, SX_LOGKEY))) {
        x->failed = 1;
        break;
      }
      x->log_added--;
      /* Our cursor sat on the deleted entry: find the next one. */
      k.p = key;
      k.n = SX_LOGKEY;
      rc = sx_cur_get(env->st, c, SX_SET_RANGE, &k, &v);
      if (rc == SYNC_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc) break;
      op = SX_GET_CURRENT;
      x->gen++;
    }
  }
  sx_cur_close(c);
  return rc;
}

/* Raise meta "gccl" (u64 LE per table: the largest causal length of a
 * collected tombstone) to maxcl, entry by entry; fresh rows start above
 * it (sx_fresh_cl).  A run that raises our vector past deletes a sender
 * collected raises it too, so that a key written here again beats the
 * tombstones other replicas still keep. */
SYNC_PRIVATE int sx_gccl_raise(sync_txn *x, const uint64_t *maxcl) {
  sync_env *env = x->env;
  unsigned nt = env->schema->ntables, i;
  unsigned char *b;
  uint64_t dummy;
  int rc, any = 0;
  if (!nt) return 0;
  x->gccl_ok = 0; /* reload what is stored, then raise it */
  sx_free(&env->al, x->gccl);
  x->gccl = NULL;
  if ((rc = sx_fresh_cl(x, 0, &dummy))) return rc;
  b = (unsigned char *)sx_malloc(&env->al, 8 * (size_t)nt);
  if (!b) return SYNC_ENOMEM;
  for (i = 0; i < nt; i++) {
    uint64_t old = x->gccl ? x->gccl[i] : 0;
    if (maxcl[i] > old) any = 1;
    sx_put_le64(b + 8 * i, maxcl[i] > old ? maxcl[i] : old);
  }
  if (any && (rc = sx_put(env->st, x->t, env->meta, "gccl", 4, b, 8 * (size_t)nt, 0)))
    x->failed = 1;
  sx_free(&env->al, b);
  /* The next fresh row reads the new values. */
  x->gccl_ok = 0;
  sx_free(&env->al, x->gccl);
  x->gccl = NULL;
  return rc;
}

/* meta "gcvv": what this replica held when it last collected
 * tombstones, or took a collector's horizon (the collector's vector), as
 * (16-byte site id, u64 LE hlc) pairs; every delete it collected, or
 * applied as the horizon's, is below it.  A requester whose vector covers
 * it got those deletes; one whose vector does not may hold rows they
 * removed.  Raised entry by entry to this replica's vector, or to from
 * (per local site index) when given. */
static int sx_gcvv_raise(sync_txn *x, const uint64_t *from) {
  sync_env *env = x->env;
  uint64_t *vv;
  unsigned char *b;
  sx_slice old;
  uint32_t i;
  size_t n = 0, j;
  int rc;
  if ((rc = sx_vv_load(x, &vv))) return rc;
  if (from)
    for (i = 0; i < x->nsites; i++) vv[i] = from[i];
  b = (unsigned char *)sx_malloc(&env->al, (size_t)x->nsites * 24);
  if (!b) {
    sx_free(&env->al, vv);
    return SYNC_ENOMEM;
  }
  rc = sx_get(env->st, x->t, env->meta, "gcvv", 4, &old);
  if (rc && rc != SYNC_NOTFOUND) goto done;
  for (i = 0; i < x->nsites; i++) {
    uint64_t h = vv[i];
    /* Keep what an earlier collection held, if more. */
    for (j = 0; rc == 0 && j + 24 <= old.n; j += 24)
      if (!memcmp(old.p + j, x->sites[i], SX_SITE_LEN) &&
          sx_get_le64(old.p + j + 16) > h)
        h = sx_get_le64(old.p + j + 16);
    if (!h) continue;
    memcpy(b + n, x->sites[i], SX_SITE_LEN);
    sx_put_le64(b + n + 16, h);
    n += 24;
  }
  rc = sx_put(env->st, x->t, env->meta, "gcvv", 4, b, n, 0);
  if (rc) x->failed = 1;
done:
  sx_free(&env->al, b);
  sx_free(&env->al, vv);
  return rc;
}

/* Must an initial stream to a requester holding rvv (per local site
 * index) name every row?  Only after a collection whose deletes the
 * requester may lack. */
static int sx_need_complete(sync_txn *x, const uint64_t *rvv, int *out) {
  sync_env *env = x->env;
  sx_slice hz, g;
  size_t j;
  int rc;
  *out = 0;
  rc = sx_get(env->st, x->t, env->meta, "gcvv", 4, &g);
  if (rc == SYNC_NOTFOUND) {
    /* A collection made before the vector was kept: complete. */
    rc = sx_get(env->st, x->t, env->meta, "gcpos", 5, &hz);
    if (rc == SYNC_NOTFOUND) return 0;
    if (rc) return rc;
    *out = 1;
    return 0;
  }
  if (rc) return rc;
  for (j = 0; j + 24 <= g.n; j += 24) {
    uint32_t idx;
    rc = sx_site_index(x, g.p + j, 0, &idx);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (rc || rvv[idx] < sx_get_le64(g.p + j + 16)) {
      *out = 1;
      return 0;
    }
  }
  return 0;
}

SYNC_API int sync_tombstones(sync_txn *x, uint64_t *out) {
  if (!x || !out) return SYNC_EINVAL;
  return sx_tomb_walk(x, UINT64_MAX, UINT32_MAX, 0, out, NULL);
}

typedef struct sx_least {
  uint64_t v, n;
  uint32_t s;
} sx_least;

static int sx_gc_least(void *ctx, const uint8_t *site, const sx_peer *p) {
  sx_least *l = (sx_least *)ctx;
  (void)site;
  l->n++;
  if (sx_poscmp(p->acked_version, p->acked_seq, l->v, l->s) < 0) {
    l->v = p->acked_version;
    l->s = p->acked_seq;
  }
  return 0;
}

SYNC_API int sync_gc(sync_txn *x, uint64_t *collected) {
  sync_env *env;
  sx_least hz;
  uint64_t hv, n = 0, peers;
  uint32_t hs;
  int rc;
  if (collected) *collected = 0;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  env = x->env;
  /* The horizon: the least any known peer has acknowledged. */
  memset(&hz, 0, sizeof hz);
  hz.v = UINT64_MAX;
  hz.s = UINT32_MAX;
  if ((rc = sx_peers_each(x, sx_gc_least, &hz))) return rc;
  hv = hz.v;
  hs = hz.s;
  peers = hz.n;
  /* With no known peer nobody can have acknowledged anything: a replica
   * that has never synchronised keeps its tombstones. */
  if (!peers) return 0;
  {
    /* Remember, per table, the largest causal length collected: new rows
     * start above it (sx_fresh_cl). */
    unsigned nt = env->schema->ntables;
    uint64_t *maxcl = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (nt ? nt : 1));
    if (!maxcl) return SYNC_ENOMEM;
    memset(maxcl, 0, sizeof(uint64_t) * (nt ? nt : 1));
    rc = sx_tomb_walk(x, hv, hs, 1, &n, maxcl);
    if (!rc && n) {
      rc = sx_gccl_raise(x, maxcl);
      if (!rc) rc = sx_gcvv_raise(x, NULL);
      if (!rc) {
        /* The horizon, for telling peers that come back from behind it
         * that tombstones they needed are gone (SYNC_ESTALE). */
        unsigned char hz[12];
        sx_put_le64(hz, hv);
        sx_put_le32(hz + 8, hs);
        if ((rc = sx_put(env->st, x->t, env->meta, "gcpos", 5, hz, 12, 0)))
          x->failed = 1;
      }
    }
    sx_free(&env->al, maxcl);
  }
  if (collected) *collected = n;
  if (!rc) sx_stats_add(&env->stats, SX_ST_TOMBSTONES_COLLECTED, n);
  return rc;
}

/* Digest of one table: XXH3 of (content fingerprint sum, live count),
 * u64 LE each (docs/FORMAT.md, "Digest").  O(1): both are kept at commit
 * (sx_table_sum). */
static int sx_digest_table(sync_txn *x, unsigned tid, uint64_t *out) {
  unsigned char b[16];
  sx_tsum s;
  int rc;
  if ((rc = sx_table_sum(x, tid, &s))) return rc;
  sx_put_le64(b, s.content);
  sx_put_le64(b + 8, s.live);
  *out = sx_hash64(b, sizeof b, 0);
  return 0;
}

SYNC_API int sync_digest(sync_txn *x, unsigned table, uint64_t *out) {
  unsigned char all[8 * SYNC_MAX_TABLES];
  unsigned i;
  int rc;
  if (!x || !out) return SYNC_EINVAL;
  if (table != SYNC_ALL_TABLES) {
    if (table >= x->env->schema->ntables) return SYNC_EINVAL;
    return sx_digest_table(x, table, out);
  }
  for (i = 0; i < x->env->schema->ntables; i++) {
    uint64_t h;
    if ((rc = sx_digest_table(x, i, &h))) return rc;
    sx_put_le64(all + 8 * i, h);
  }
  *out = sx_hash64(all, 8 * (size_t)x->env->schema->ntables, 0);
  return 0;
}

/* ---------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------- */
SYNC_API int sync_env_set_resolver(sync_env *env, sync_resolver_fn fn,
                                   void *ctx) {
  if (!env) return SYNC_EINVAL;
  env->resolver = fn;
  env->resolver_ctx = ctx;
  return 0;
}

SYNC_API int sync_env_set_on_change(sync_env *env, sync_change_fn fn,
                                    void *ctx) {
  if (!env) return SYNC_EINVAL;
  env->on_change = fn;
  env->on_change_ctx = ctx;
  return 0;
}

SYNC_API int sync_env_set_on_conflict(sync_env *env, sync_conflict_fn fn,
                                      void *ctx) {
  if (!env) return SYNC_EINVAL;
  env->on_conflict = fn;
  env->on_conflict_ctx = ctx;
  return 0;
}

/* ---------------------------------------------------------------------
 * Rejections (the writer's side of a refused write).  sx.rejects: key
 * u64 BE id -> u8 flags (1 reverted), var table, var reason, 16-byte
 * site of the refusing peer, var hlc (the newest stamp of the row here
 * when the answer came), var key length, key, var text length, text.
 * ------------------------------------------------------------------- */
struct sync_rejects {
  sx_alloc al;
  sync_txn *x;
  sx_scur *c;
  int started;
  unsigned char last[8];
  sync_value *vals; /* the current entry's values */
  unsigned cap;
};

/* Does row srow of sd carry stamp (hlc, site id)? */
static int sx_drow_has(const sync_delta *sd, const sx_drow *srow, uint64_t hlc,
                       const uint8_t *site) {
  size_t j;
  if (!srow) return 0;
  if (srow->clhlc == hlc && !memcmp(sd->sites[srow->clsite], site, SX_SITE_LEN))
    return 1;
  for (j = 0; j < srow->ncols; j++) {
    const sx_dcol *c = &sd->cols[srow->col0 + j];
    if (c->hlc == hlc && !memcmp(sd->sites[c->site], site, SX_SITE_LEN))
      return 1;
  }
  return 0;
}

/* Encode a rejection record into b (nothing is written: r's values
 * point into the map, which a write may move).  r: the refused row here
 * (its values go with the record when it is live), or NULL. */
static int sx_reject_encode(sync_txn *x, sx_buf *b, const uint8_t *peer,
                            unsigned tid, const unsigned char *key,
                            size_t klen, int reason, const char *text,
                            size_t tlen, uint64_t hlc, int reverted,
                            const sx_row *r) {
  size_t need;
  unsigned i, nc = r && (r->cl & 1) ? r->ncols : 0;
  unsigned char *p;
  int rc;
  if (nc > x->env->schema->tables[tid].ncols)
    nc = x->env->schema->tables[tid].ncols;
  need = 1 + 6 * SX_VARINT_MAX + SX_SITE_LEN + klen + tlen;
  for (i = 0; i < nc; i++)
    need += 1 + (r->cols[i].st == SX_NOSTAMP ? 0
                                             : sx_payload_size(&r->cols[i].v));
  b->len = 0;
  if ((rc = sx_buf_reserve(b, need))) return rc;
  p = b->p;
  *p++ = (unsigned char)(reverted ? 1 : 0);
  p += sx_put_varint(p, tid);
  p += sx_put_varint(p, (uint64_t)reason);
  memcpy(p, peer, SX_SITE_LEN);
  p += SX_SITE_LEN;
  p += sx_put_varint(p, hlc);
  p += sx_put_varint(p, klen);
  memcpy(p, key, klen);
  p += klen;
  p += sx_put_varint(p, tlen);
  if (tlen) memcpy(p, text, tlen);
  p += tlen;
  p += sx_put_varint(p, nc);
  for (i = 0; i < nc; i++) {
    const sx_rcol *c = &r->cols[i];
    if (c->st == SX_NOSTAMP) {
      *p++ = SX_TAG_NONE;
      continue;
    }
    *p++ = (unsigned char)c->v.type;
    p += sx_payload_put(p, &c->v);
  }
  b->len = (size_t)(p - b->p);
  return 0;
}

/* Append record b to the rejection log under the next id. */
static int sx_reject_put(sync_txn *x, const sx_buf *b) {
  sync_env *env = x->env;
  sx_scur *cur;
  sx_slice kk, vv;
  unsigned char k[8];
  uint64_t id;
  int rc;
  if (!env->rejects_ok) return 0;
  if ((rc = sx_cur_open(env->st, x->t, env->rejects, &cur))) return rc;
  kk.p = NULL;
  kk.n = 0;
  rc = sx_cur_get(env->st, cur, SX_LAST, &kk, &vv);
  id = rc == 0 && kk.n == 8 ? sx_get_be64(kk.p) + 1 : 1;
  sx_cur_close(cur);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  sx_put_be64(k, id);
  if ((rc = sx_put(env->st, x->t, env->rejects, k, 8, b->p, b->len,
                   SX_PUT_APPEND)))
    x->failed = 1;
  x->dirty = 1;
  return rc;
}

SYNC_PRIVATE int sx_reject_apply(sync_txn *x, const uint8_t *peer,
                                 unsigned tid, const unsigned char *key,
                                 size_t klen, int reason, const char *text,
                                 size_t tlen, const sync_delta *sd,
                                 const sx_drow *srow, uint64_t snap) {
  sync_env *env = x->env;
  const sx_table *tb;
  sx_scur *cur;
  sx_slice k, v;
  sx_buf rec;
  uint64_t newest = 0;
  int rc, found, reverted = 0;
  unsigned i;
  if (tid >= env->schema->ntables || !klen || klen > SYNC_MAX_KEY)
    return SYNC_EINVAL;
  tb = &env->schema->tables[tid];
  if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x)) ||
      (rc = sx_table_cursor(x, tid, &cur)))
    return rc;
  k.p = key;
  k.n = klen;
  rc = sx_cur_get(env->st, cur, SX_SET_KEY, &k, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  found = rc == 0;
  if (found && (rc = sx_row_decode(v.p, v.n, key, klen, &x->old)))
    return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                   tb->name);
  if (found)
    for (i = 0; i < x->old.nstamps; i++)
      if (x->old.stamps[i].hlc > newest) newest = x->old.stamps[i].hlc;
  /* Written again after the refused chunk was cut: that write goes to
   * the peer next, and is judged in its turn.  No row here and none
   * there: already as the peer has it. */
  reverted = !(found && x->old.version > snap);
  sx_buf_init(&rec, &env->al);
  if ((rc = sx_reject_encode(x, &rec, peer, tid, key, klen, reason, text,
                             tlen, newest, reverted, found ? &x->old : NULL)))
    goto done;
  if (!reverted || (!found && !srow)) goto log;
  if (srow) {
    /* The peer's version, stamps and all (not merged: ours lost). */
    sx_row *w = &x->nw;
    uint32_t li;
    sx_stamp st;
    w->nstamps = 0;
    w->cl = srow->cl;
    if ((rc = sx_site_index(x, sd->sites[srow->clsite], 1, &li))) goto done;
    st.hlc = srow->clhlc;
    st.site = li;
    w->cl_stamp = sx_row_stamp(w, st);
    w->ncols = 0;
    if (srow->cl & 1) {
      w->ncols = tb->ncols;
      for (i = 0; i < w->ncols; i++) {
        w->cols[i].st = w->cols[i].base = SX_NOSTAMP;
        w->cols[i].v = sync_null();
        /* Columns kept on this device stay as they are here. */
        if ((tb->cols[i].flags & SYNC_COL_LOCAL) && found &&
            (x->old.cl & 1) && i < x->old.ncols &&
            x->old.cols[i].st != SX_NOSTAMP) {
          w->cols[i].st = sx_row_stamp(w, x->old.stamps[x->old.cols[i].st]);
          w->cols[i].v = x->old.cols[i].v;
        }
      }
      for (i = 0; i < srow->ncols; i++) {
        const sx_dcol *c = &sd->cols[srow->col0 + i];
        sx_rcol *rcol;
        if (c->col >= tb->ncols || (tb->cols[c->col].flags & SYNC_COL_LOCAL))
          continue;
        rcol = &w->cols[c->col];
        if ((rc = sx_site_index(x, sd->sites[c->site], 1, &li))) goto done;
        st.hlc = c->hlc;
        st.site = li;
        rcol->st = sx_row_stamp(w, st);
        if (c->bhlc) {
          if ((rc = sx_site_index(x, sd->sites[c->bsite], 1, &li))) goto done;
          st.hlc = c->bhlc;
          st.site = li;
          rcol->base = sx_row_stamp(w, st);
        }
        rcol->v = sx_dval(sd, c);
      }
    }
    if ((rc = sx_store_row(x, tid, cur, key, klen, found, 0))) goto done;
  } else {
    /* The peer holds no row: the insert goes, without a tombstone
     * (nothing to replicate: the row never was anywhere else's). */
    unsigned char lk[SX_LOGKEY];
    if ((rc = sx_sums_drop(x, tid, key, klen, &x->old))) goto done;
    sx_logkey(lk, x->old.version, x->old.seq);
    if ((rc = sx_cur_del(env->st, cur))) {
      x->failed = 1;
      goto done;
    }
    rc = sx_del(env->st, x->t, env->log, lk, SX_LOGKEY);
    if (rc && rc != SYNC_NOTFOUND) {
      x->failed = 1;
      goto done;
    }
    if (!rc) x->log_added--;
    rc = 0;
  }
  /* Changes of other sites the row dropped may come again: our vector
   * must not claim them.  (x->old's stamps are ours, not the map's.) */
  for (i = 0; found && i < x->old.nstamps; i++) {
    uint8_t id[SX_SITE_LEN];
    const sx_stamp *st = &x->old.stamps[i];
    if (st->site == 0) continue;
    if ((rc = sx_site_id(x, st->site, id))) goto done;
    if (sx_drow_has(sd, srow, st->hlc, id)) continue;
    if ((rc = sx_vv_lower_site(x, st->site, st->hlc))) goto done;
  }
log:
  rc = sx_reject_put(x, &rec);
done:
  sx_buf_free(&rec);
  if (rc) return rc;
  return reverted;
}

static int sx_reject_decode(sync_rejects *it, const unsigned char *p,
                            size_t n, uint64_t id, sync_reject *out) {
  const unsigned char *end = p + n;
  uint64_t v;
  size_t k;
  memset(out, 0, sizeof *out);
  out->id = id;
  if (n < 1 || p[0] > 1) return SYNC_ECORRUPT;
  out->reverted = p[0] & 1;
  p++;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_MAX_TABLES)
    return SYNC_ECORRUPT;
  out->table = (unsigned)v;
  p += k;
  if (!(k = sx_get_varint(p, end, &v)) || v > 65535) return SYNC_ECORRUPT;
  out->reason = (int)v;
  p += k;
  if (end - p < SX_SITE_LEN) return SYNC_ECORRUPT;
  memcpy(out->peer, p, SX_SITE_LEN);
  p += SX_SITE_LEN;
  if (!(k = sx_get_varint(p, end, &out->hlc))) return SYNC_ECORRUPT;
  p += k;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_MAX_KEY ||
      v > (uint64_t)(end - p) - k)
    return SYNC_ECORRUPT;
  out->key.data = p + k;
  out->key.len = (size_t)v;
  p += k + v;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_REFUSE_TEXT_MAX ||
      v > (uint64_t)(end - p) - k)
    return SYNC_ECORRUPT;
  out->text = (const char *)(p + k);
  out->text_len = (size_t)v;
  p += k + v;
  if (!(k = sx_get_varint(p, end, &v)) || v > it->cap) return SYNC_ECORRUPT;
  p += k;
  out->ncolumns = (unsigned)v;
  out->values = it->vals;
  for (k = 0; k < out->ncolumns; k++) {
    int tag;
    size_t m;
    if (p == end) return SYNC_ECORRUPT;
    tag = *p++;
    if (tag == SX_TAG_NONE) {
      it->vals[k] = sync_null();
      continue;
    }
    if (tag > SYNC_BLOB) return SYNC_ECORRUPT;
    m = sx_payload_get(tag, p, end, &it->vals[k]);
    if (!m && tag != SYNC_NULL) return SYNC_ECORRUPT;
    p += m;
  }
  return p == end ? 0 : SYNC_ECORRUPT;
}

SYNC_API int sync_rejects_open(sync_txn *x, sync_rejects **out) {
  sync_rejects *it;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x) return SYNC_EINVAL;
  it = (sync_rejects *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  it->x = x;
  {
    unsigned t;
    for (t = 0; t < x->env->schema->ntables; t++)
      if (x->env->schema->tables[t].ncols > it->cap)
        it->cap = x->env->schema->tables[t].ncols;
  }
  it->vals = (sync_value *)sx_malloc(&it->al,
                                     (it->cap ? it->cap : 1) * sizeof(sync_value));
  if (!it->vals) {
    sx_free(&it->al, it);
    return SYNC_ENOMEM;
  }
  if (x->env->rejects_ok &&
      (rc = sx_cur_open(x->env->st, x->t, x->env->rejects, &it->c))) {
    sx_free(&it->al, it->vals);
    sx_free(&it->al, it);
    return rc;
  }
  *out = it;
  return 0;
}

SYNC_API int sync_rejects_next(sync_rejects *it, sync_reject *out) {
  sx_slice k, v;
  int rc;
  if (!it || !out) return SYNC_EINVAL;
  if (!it->c) return SYNC_NOTFOUND;
  if ((rc = sx_id_log_next(it->x->env->st, it->c, &it->started, it->last, &k,
                           &v)))
    return rc;
  if ((rc = sx_reject_decode(it, v.p, v.n, sx_get_be64(k.p), out)))
    return sx_fail(it->x->env, rc, "rejection log entry malformed");
  return 0;
}

SYNC_API void sync_rejects_close(sync_rejects *it) {
  sx_alloc al;
  if (!it) return;
  al = it->al;
  sx_cur_close(it->c);
  sx_free(&al, it->vals);
  sx_free(&al, it);
}

SYNC_API int sync_reject_clear(sync_txn *x, uint64_t id) {
  unsigned char k[8];
  int rc;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if (!x->env->rejects_ok) return SYNC_NOTFOUND;
  sx_put_be64(k, id);
  rc = sx_del(x->env->st, x->t, x->env->rejects, k, 8);
  if (rc && rc != SYNC_NOTFOUND) x->failed = 1;
  if (!rc) x->dirty = 1;
  return rc;
}

SYNC_API int sync_rejects_clear(sync_txn *x, uint64_t *n) {
  sx_scur *c;
  sx_slice k, v;
  uint64_t count = 0;
  int rc;
  if (n) *n = 0;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if (!x->env->rejects_ok) return 0;
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->rejects, &c))) return rc;
  for (;;) {
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(x->env->st, c, SX_FIRST, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if ((rc = sx_cur_del(x->env->st, c))) {
      x->failed = 1;
      break;
    }
    count++;
  }
  sx_cur_close(c);
  if (count) x->dirty = 1;
  if (n) *n = count;
  return rc;
}
