/*
 * history.c - row history (docs/FORMAT.md, "Row history").
 *
 * The store keeps what a table's rows were, not what they are: when a
 * write replaces a row of a table with history, the transaction records
 * the bytes of the version it replaces (as stored, row.h) under the
 * position of its own change, (table, version, seq): the position the
 * new row's header names.  So the versions of a row form a chain with no
 * pointer of their own: the row names the record of the change that made
 * it, whose bytes are the version before, whose header names the record
 * before that.  A write costs one appended record (the key grows with
 * the local version) holding the old row, and nothing at all for tables
 * without history.  The record of a change also says when it committed
 * and whether it came from a peer, so each version's commit is known
 * from the record at its own position.
 *
 * Retention removes records from the old end of chains, the age rule
 * in key order (times never decrease with versions, so the oldest come
 * first), the count rule along the chain of each row written.  What a
 * removed record held is gone for every row alike: the table's floor
 * (the newest version whose predecessor any row lost) rises to its
 * position, and as-of points below it fail with SYNC_EPRUNED.  Above the
 * floor a point is answered from the chain of each row in the store:
 * the newest version at or before the point, or none when the chain
 * ends in an insert after it.  Rows that leave the store without a
 * tombstone (exit markers, refused inserts) would take their chains
 * with them, so they raise the floor to their transaction instead; a
 * tombstone whose record is kept is not collected.
 */
#include "history.h"
#include "ops.h"

#define SX_RH_KEY 14     /* u16 BE table, u64 BE version, u32 BE seq */
#define SX_RH_OPTLEN 40  /* the table record, below */
#define SX_RH_NOPREV 1u  /* record flag: the change inserted the row */
#define SX_RH_PEER 2u    /* record flag: the change came from a peer */
#define SX_RH_CLOCK "clock"

/* A table's record (key: u16 BE table id): u64 LE max_versions,
 * max_age_ms, the version history started at, the floor version and
 * the floor time. */
typedef struct sx_rhrec {
  uint64_t max_versions, max_age_ms, since, floor, ftime;
} sx_rhrec;

/* What a transaction does to history beyond its records. */
typedef struct sx_rhtx {
  uint64_t ct;      /* the commit's time (0: not taken yet) */
  uint64_t written; /* records written, the age rule's budget */
  unsigned char w[(SYNC_MAX_TABLES + 7) / 8]; /* tables written */
  unsigned char f[(SYNC_MAX_TABLES + 7) / 8]; /* floors raised */
  uint64_t floor[SYNC_MAX_TABLES], ftime[SYNC_MAX_TABLES];
} sx_rhtx;

static void sx_rh_key(unsigned char *k, unsigned tid, uint64_t v, uint32_t s) {
  k[0] = (unsigned char)(tid >> 8);
  k[1] = (unsigned char)tid;
  sx_put_be64(k + 2, v);
  sx_put_be32(k + 10, s);
}

static int sx_rh_opt_get(sync_env *env, sx_stxn *t, unsigned tid,
                         sx_rhrec *o) {
  unsigned char k[2];
  sx_slice v;
  int rc;
  if (!env->hist_ok) return SYNC_NOTFOUND;
  k[0] = (unsigned char)(tid >> 8);
  k[1] = (unsigned char)tid;
  if ((rc = sx_get(env->st, t, env->hist, k, 2, &v))) return rc;
  if (v.n != SX_RH_OPTLEN) return SYNC_ECORRUPT;
  o->max_versions = sx_get_le64(v.p);
  o->max_age_ms = sx_get_le64(v.p + 8);
  o->since = sx_get_le64(v.p + 16);
  o->floor = sx_get_le64(v.p + 24);
  o->ftime = sx_get_le64(v.p + 32);
  return 0;
}

static int sx_rh_opt_put(sync_env *env, sx_stxn *t, unsigned tid,
                         const sx_rhrec *o) {
  unsigned char k[2], v[SX_RH_OPTLEN];
  k[0] = (unsigned char)(tid >> 8);
  k[1] = (unsigned char)tid;
  sx_put_le64(v, o->max_versions);
  sx_put_le64(v + 8, o->max_age_ms);
  sx_put_le64(v + 16, o->since);
  sx_put_le64(v + 24, o->floor);
  sx_put_le64(v + 32, o->ftime);
  return sx_put(env->st, t, env->hist, k, 2, v, SX_RH_OPTLEN, 0);
}

/* The log position a stored row names: its version and seq. */
static int sx_rh_rowpos(const sx_slice *b, uint64_t *v, uint32_t *s) {
  sx_rd r;
  uint64_t seq;
  r.p = b->p;
  r.end = b->p + b->n;
  r.bad = 0;
  sx_rbytes(&r, 4); /* checksum */
  sx_rv(&r);        /* causal length */
  *v = sx_rv(&r);
  seq = sx_rv(&r);
  if (r.bad || seq > UINT32_MAX) return SYNC_ECORRUPT;
  *s = (uint32_t)seq;
  return 0;
}

/* A record: var flags, var time, then the replaced row's bytes (none
 * with SX_RH_NOPREV). */
static int sx_rh_rec(const sx_slice *val, unsigned *flags, uint64_t *time,
                     sx_slice *prev) {
  sx_rd r;
  uint64_t f;
  r.p = val->p;
  r.end = val->p + val->n;
  r.bad = 0;
  f = sx_rv(&r);
  *time = sx_rv(&r);
  if (r.bad || f > 3) return SYNC_ECORRUPT;
  *flags = (unsigned)f;
  prev->p = r.p;
  prev->n = (size_t)(r.end - r.p);
  if (!(f & SX_RH_NOPREV) && prev->n < 5) return SYNC_ECORRUPT;
  return 0;
}

static int sx_rh_tx(sync_txn *x) {
  if (x->rh) return 0;
  x->rh = (sx_rhtx *)sx_malloc(&x->env->al, sizeof *x->rh);
  if (!x->rh) return SYNC_ENOMEM;
  memset(x->rh, 0, sizeof *x->rh);
  return 0;
}

/* The transaction's commit time: the env's clock, never below the last
 * commit's (kept in the store), so that times order as versions do. */
static int sx_rh_time(sync_txn *x, uint64_t *ct) {
  sync_env *env = x->env;
  sx_slice v;
  uint64_t now, last = 0;
  int rc;
  if ((rc = sx_rh_tx(x))) return rc;
  if (!x->rh->ct) {
    rc = sx_get(env->st, x->t, env->hist, SX_RH_CLOCK, 5, &v);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (!rc && v.n == 8) last = sx_get_le64(v.p);
    now = env->clock(env->clock_ctx);
    x->rh->ct = now > last ? now : last;
    if (!x->rh->ct) x->rh->ct = 1;
  }
  *ct = x->rh->ct;
  return 0;
}

static void sx_rh_raise(sync_txn *x, unsigned tid, uint64_t v, uint64_t t) {
  sx_rhtx *h = x->rh;
  if (!(h->f[tid >> 3] & (1u << (tid & 7)))) {
    h->f[tid >> 3] |= (unsigned char)(1u << (tid & 7));
    h->floor[tid] = h->ftime[tid] = 0;
  }
  if (v > h->floor[tid]) h->floor[tid] = v;
  if (t > h->ftime[tid]) h->ftime[tid] = t;
  x->dirty = 1;
}

/* Walk the chain of a row from the record at (v, s), the d-th of the
 * row, and remove those past the keep-th, raising the floor.  *removed
 * (may be NULL) counts them. */
static int sx_rh_trim(sync_txn *x, unsigned tid, uint64_t v, uint32_t s,
                      uint64_t d, uint64_t keep, uint64_t *removed) {
  sync_env *env = x->env;
  int rc;
  if ((rc = sx_rh_tx(x))) return rc;
  for (;; d++) {
    unsigned char k[SX_RH_KEY];
    sx_slice val, prev;
    unsigned flags;
    uint64_t time, pv = 0;
    uint32_t ps = 0;
    sx_rh_key(k, tid, v, s);
    rc = sx_get(env->st, x->t, env->hist, k, SX_RH_KEY, &val);
    if (rc == SYNC_NOTFOUND) return 0;
    if (rc) return rc;
    if ((rc = sx_rh_rec(&val, &flags, &time, &prev))) return rc;
    if (!(flags & SX_RH_NOPREV) && (rc = sx_rh_rowpos(&prev, &pv, &ps)))
      return rc;
    if (d > keep) {
      sx_rh_raise(x, tid, v, time);
      if ((rc = sx_del(env->st, x->t, env->hist, k, SX_RH_KEY))) {
        x->failed = 1;
        return rc;
      }
      if (removed) (*removed)++;
    }
    if (flags & SX_RH_NOPREV) return 0;
    v = pv;
    s = ps;
  }
}

/* Whether x->nw is a write of this transaction's own (it carries its
 * stamp), not a peer's version applied. */
static int sx_rh_local(const sync_txn *x) {
  const sx_row *r = &x->nw;
  unsigned i;
  if (!x->stamped) return 0;
#define SX_RH_OWN(i) \
  ((i) < r->nstamps && r->stamps[i].site == 0 && r->stamps[i].hlc == x->hlc)
  if (SX_RH_OWN(r->cl_stamp)) return 1;
  for (i = 0; i < r->ncols; i++)
    if (r->cols[i].st != SX_NOSTAMP && SX_RH_OWN(r->cols[i].st)) return 1;
#undef SX_RH_OWN
  return 0;
}

SYNC_PRIVATE int sx_rh_note(sync_txn *x, unsigned tid, sx_scur *cur,
                            int found, int reuse) {
  sync_env *env = x->env;
  const sx_rhopt *o = &env->rh[tid];
  unsigned char k[SX_RH_KEY], hd[2 * SX_VARINT_MAX];
  uint64_t ct, keep = o->max_versions ? o->max_versions - 1 : UINT64_MAX;
  sx_slice ok, ov;
  size_t hn;
  unsigned flags = 0;
  int rc;
  /* A second change of the row in this transaction: its record, of the
   * version before the transaction, is written already. */
  if (reuse) return 0;
  if ((rc = sx_rh_time(x, &ct))) return rc;
  x->rh->w[tid >> 3] |= (unsigned char)(1u << (tid & 7));
  ov.p = NULL;
  ov.n = 0;
  if (found) {
    ok.p = NULL;
    ok.n = 0;
    if ((rc = sx_cur_get(env->st, cur, SX_GET_CURRENT, &ok, &ov))) return rc;
  } else {
    flags |= SX_RH_NOPREV;
  }
  if (!sx_rh_local(x)) flags |= SX_RH_PEER;
  if (keep == 0) {
    /* Nothing replaced is kept: the row's past is gone from now on. */
    sx_rh_raise(x, tid, x->version, ct);
  } else {
    hn = sx_put_varint(hd, flags);
    hn += sx_put_varint(hd + hn, ct);
    {
      /* x->enc holds the new row; the record is built after it. */
      size_t off = sx_row_size(&x->nw);
      if ((rc = sx_buf_reserve(&x->enc, off + hn + ov.n))) return rc;
      memcpy(x->enc.p + off, hd, hn);
      if (ov.n) memcpy(x->enc.p + off + hn, ov.p, ov.n);
      sx_rh_key(k, tid, x->version, x->nw.seq);
      /* Keys grow with the version: appending skips the search, unless
       * a table with a larger id holds records already (LMDB refuses
       * the append before changing anything). */
      rc = sx_put(env->st, x->t, env->hist, k, SX_RH_KEY, x->enc.p + off,
                  hn + ov.n, SX_PUT_APPEND);
      if (rc == SYNC_EEXIST)
        rc = sx_put(env->st, x->t, env->hist, k, SX_RH_KEY, x->enc.p + off,
                    hn + ov.n, 0);
      if (rc) return rc;
    }
    x->rh->written++;
  }
  if (found && o->max_versions) {
    uint64_t pv;
    uint32_t ps;
    if ((rc = sx_rh_rowpos(&ov, &pv, &ps))) return rc;
    return sx_rh_trim(x, tid, pv, ps, keep == 0 ? 1 : 2, keep, NULL);
  }
  return 0;
}

SYNC_PRIVATE int sx_rh_forget(sync_txn *x, unsigned tid) {
  uint64_t ct;
  int rc;
  if ((rc = sx_rh_time(x, &ct))) return rc;
  /* The removal must have a version of its own: the state just before
   * it held the row, the state after it does not. */
  if (!x->wrote) {
    x->wrote = 1;
    x->version = x->base_version + 1;
  }
  sx_rh_raise(x, tid, x->version, ct);
  return sx_rh_trim(x, tid, x->old.version, x->old.seq, 1, 0, NULL);
}

SYNC_PRIVATE int sx_rh_pinned(sync_txn *x, unsigned tid, const sx_row *r) {
  unsigned char k[SX_RH_KEY];
  sx_slice v;
  int rc;
  if (!sx_rh_on(x->env, tid)) return 0;
  sx_rh_key(k, tid, r->version, r->seq);
  rc = sx_get(x->env->st, x->t, x->env->hist, k, SX_RH_KEY, &v);
  if (rc == SYNC_NOTFOUND) return 0;
  return rc ? rc : 1;
}

/* Put c on table tid's first record at or after key k: 1 with it in
 * *kk and *v, 0 past the table's last, or an error. */
static int sx_rh_seek(sync_env *env, sx_scur *c, unsigned tid,
                      const unsigned char *k, sx_slice *kk, sx_slice *v) {
  int rc;
  kk->p = k;
  kk->n = SX_RH_KEY;
  rc = sx_cur_get(env->st, c, SX_SET_RANGE, kk, v);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  return kk->n == SX_RH_KEY && kk->p[0] == (unsigned char)(tid >> 8) &&
         kk->p[1] == (unsigned char)tid;
}

/* The age rule on table tid: remove records of changes made before
 * cutoff, oldest first, looking at no more than budget of them. */
static int sx_rh_age(sync_txn *x, unsigned tid, uint64_t cutoff,
                     uint64_t budget, uint64_t *removed) {
  sync_env *env = x->env;
  unsigned char k[SX_RH_KEY];
  sx_scur *c;
  sx_slice kk, v, prev;
  int rc;
  if ((rc = sx_rh_tx(x))) return rc;
  if ((rc = sx_cur_open(env->st, x->t, env->hist, &c))) return rc;
  sx_rh_key(k, tid, 0, 0);
  while (budget--) {
    unsigned flags;
    uint64_t time;
    if ((rc = sx_rh_seek(env, c, tid, k, &kk, &v)) <= 0) break;
    if ((rc = sx_rh_rec(&v, &flags, &time, &prev))) break;
    if (time >= cutoff) break;
    memcpy(k, kk.p, SX_RH_KEY);
    sx_rh_raise(x, tid, sx_get_be64(k + 2), time);
    if ((rc = sx_cur_del(env->st, c))) {
      x->failed = 1;
      break;
    }
    if (removed) (*removed)++;
  }
  sx_cur_close(c);
  return rc;
}

SYNC_PRIVATE int sx_rh_finish(sync_txn *x) {
  sync_env *env = x->env;
  sx_rhtx *h = x->rh;
  unsigned tid, n = env->schema->ntables;
  uint64_t budget = 2 * h->written + 64;
  unsigned char cv[8];
  int rc;
  for (tid = 0; tid < n; tid++) {
    uint64_t got = 0;
    if (!(h->w[tid >> 3] & (1u << (tid & 7))) || !sx_rh_on(env, tid) ||
        !env->rh[tid].max_age_ms || h->ct <= env->rh[tid].max_age_ms)
      continue;
    if ((rc = sx_rh_age(x, tid, h->ct - env->rh[tid].max_age_ms, budget,
                        &got)))
      return rc;
    budget -= got < budget ? got : budget;
  }
  for (tid = 0; tid < n; tid++) {
    sx_rhrec o;
    if (!(h->f[tid >> 3] & (1u << (tid & 7)))) continue;
    rc = sx_rh_opt_get(env, x->t, tid, &o);
    if (rc == SYNC_NOTFOUND) continue; /* turned off in this transaction */
    if (rc) return rc;
    if (h->floor[tid] <= o.floor && h->ftime[tid] <= o.ftime) continue;
    if (h->floor[tid] > o.floor) o.floor = h->floor[tid];
    if (h->ftime[tid] > o.ftime) o.ftime = h->ftime[tid];
    if ((rc = sx_rh_opt_put(env, x->t, tid, &o))) return rc;
  }
  if (!h->ct) return 0;
  sx_put_le64(cv, h->ct);
  return sx_put(env->st, x->t, env->hist, SX_RH_CLOCK, 5, cv, 8, 0);
}

SYNC_PRIVATE int sx_rh_load(sync_env *env, sx_stxn *t) {
  unsigned tid;
  int rc, any = 0;
  sx_free(&env->al, env->rh);
  env->rh = NULL;
  env->hist_ok = 0;
  rc = sx_dbi_open(env->st, t, "sx.hist", 0, &env->hist);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  env->hist_ok = 1;
  env->rh = (sx_rhopt *)sx_malloc(&env->al, sizeof(sx_rhopt) * SYNC_MAX_TABLES);
  if (!env->rh) return SYNC_ENOMEM;
  memset(env->rh, 0, sizeof(sx_rhopt) * SYNC_MAX_TABLES);
  for (tid = 0; tid < env->schema->ntables; tid++) {
    sx_rhrec o;
    rc = sx_rh_opt_get(env, t, tid, &o);
    if (rc == SYNC_NOTFOUND) continue;
    if (rc) return rc;
    env->rh[tid].on = 1;
    env->rh[tid].max_versions = o.max_versions;
    env->rh[tid].max_age_ms = o.max_age_ms;
    any = 1;
  }
  if (!any) {
    sx_free(&env->al, env->rh);
    env->rh = NULL;
  }
  return 0;
}

/* Rewrite record (k, val) of a row of key with stamps of site 0 up to t
 * moved to site index idx. */
static int sx_rh_relabel_rec(sync_txn *x, const unsigned char *k,
                             const sx_slice *val, const sx_slice *key,
                             uint32_t idx, uint64_t t, sx_buf *b) {
  sync_env *env = x->env;
  sx_slice prev;
  unsigned flags, i;
  uint64_t time;
  size_t hn, size;
  int rc, any = 0;
  if ((rc = sx_rh_rec(val, &flags, &time, &prev))) return rc;
  if (flags & SX_RH_NOPREV) return 0;
  if ((rc = sx_row_decode(prev.p, prev.n, key->p, key->n, &x->nw))) return rc;
  for (i = 0; i < x->nw.nstamps; i++)
    if (x->nw.stamps[i].site == 0 && x->nw.stamps[i].hlc <= t) {
      x->nw.stamps[i].site = idx;
      any = 1;
    }
  if (!any) return 0;
  b->len = 0;
  size = sx_row_size(&x->nw);
  if ((rc = sx_buf_reserve(b, 2 * SX_VARINT_MAX + size))) return rc;
  hn = sx_put_varint(b->p, flags);
  hn += sx_put_varint(b->p + hn, time);
  sx_row_encode(&x->nw, key->p, key->n, b->p + hn, size, 0);
  if ((rc = sx_put(env->st, x->t, env->hist, k, SX_RH_KEY, b->p, hn + size,
                   0)))
    x->failed = 1;
  return rc;
}

SYNC_PRIVATE int sx_rh_relabel(sync_txn *x, uint32_t idx, uint64_t t) {
  sync_env *env = x->env;
  unsigned tid;
  sx_buf b;
  int rc = 0;
  if (!env->rh) return 0;
  if ((rc = sx_scratch(x))) return rc;
  sx_buf_init(&b, &env->al);
  for (tid = 0; tid < env->schema->ntables && !rc; tid++) {
    sx_scur *c;
    sx_slice kk, v;
    int op = SX_FIRST;
    if (!sx_rh_on(env, tid)) continue;
    if ((rc = sx_cur_open(env->st, x->t, env->tdbi[tid], &c))) break;
    while ((rc = sx_cur_walk(env->st, c, &op, &kk, &v)) == 1) {
      uint64_t pv;
      uint32_t ps;
      if ((rc = sx_rh_rowpos(&v, &pv, &ps))) break;
      for (;;) {
        unsigned char k[SX_RH_KEY];
        sx_slice val, prev;
        unsigned flags;
        uint64_t time;
        sx_rh_key(k, tid, pv, ps);
        rc = sx_get(env->st, x->t, env->hist, k, SX_RH_KEY, &val);
        if (rc == SYNC_NOTFOUND) {
          rc = 0;
          break;
        }
        if (rc || (rc = sx_rh_rec(&val, &flags, &time, &prev))) break;
        if (flags & SX_RH_NOPREV) break;
        if ((rc = sx_rh_rowpos(&prev, &pv, &ps)) ||
            (rc = sx_rh_relabel_rec(x, k, &val, &kk, idx, t, &b)))
          break;
      }
      if (rc) break;
    }
    sx_cur_close(c);
  }
  sx_buf_free(&b);
  return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------------
 * Reading the past
 * ------------------------------------------------------------------- */

/* The version of a row at a point: from the bytes cur stored now
 * (NULL: no stored row), follow the chain to the newest version at or
 * before the point.  1 with *out set, 0 when the row did not exist then,
 * or an error: SYNC_EPRUNED when a record the answer needs is gone (a
 * version above the floor without its record: never a guess). */
static int sx_rh_state(sync_txn *x, unsigned tid, int kind, uint64_t at,
                       uint64_t floor, const sx_slice *cur, sx_slice *out) {
  sync_env *env = x->env;
  sx_slice b = *cur;
  for (;;) {
    unsigned char k[SX_RH_KEY];
    sx_slice val, prev;
    unsigned flags;
    uint64_t v, time;
    uint32_t s;
    int rc;
    if ((rc = sx_rh_rowpos(&b, &v, &s))) return rc;
    if (kind == SYNC_ASOF_VERSION && v <= at) break;
    sx_rh_key(k, tid, v, s);
    rc = sx_get(env->st, x->t, env->hist, k, SX_RH_KEY, &val);
    if (rc == SYNC_NOTFOUND) {
      if (v <= floor) break; /* made at or before the floor: in force */
      return SYNC_EPRUNED;
    }
    if (rc || (rc = sx_rh_rec(&val, &flags, &time, &prev))) return rc;
    if (kind == SYNC_ASOF_TIME && time <= at) break;
    if (flags & SX_RH_NOPREV) return 0;
    b = prev;
  }
  *out = b;
  return 1;
}

/* Check a point against table tid's floor: 0 with *floor set, or
 * SYNC_EPRUNED (before it, or no history), SYNC_EINVAL. */
static int sx_rh_point(sync_txn *x, unsigned tid, int kind, uint64_t at,
                       uint64_t *floor) {
  sx_rhrec o;
  int rc;
  if (kind != SYNC_ASOF_VERSION && kind != SYNC_ASOF_TIME) return SYNC_EINVAL;
  if (!sx_rh_on(x->env, tid))
    return sx_fail(x->env, SYNC_EPRUNED, "table '%s' keeps no history",
                   x->env->schema->tables[tid].name);
  rc = sx_rh_opt_get(x->env, x->t, tid, &o);
  if (rc == SYNC_NOTFOUND) rc = SYNC_EPRUNED;
  if (rc) return rc;
  if (kind == SYNC_ASOF_VERSION ? at < o.floor : at < o.ftime)
    return sx_fail(x->env, SYNC_EPRUNED,
                   "table '%s': %s %llu is before what its history keeps "
                   "(version %llu, time %llu)",
                   x->env->schema->tables[tid].name,
                   kind == SYNC_ASOF_VERSION ? "version" : "time",
                   (unsigned long long)at, (unsigned long long)o.floor,
                   (unsigned long long)o.ftime);
  *floor = o.floor;
  return 0;
}

SYNC_PRIVATE int sx_rh_cursor_at(sync_cursor *c, const sx_slice *key,
                                 sx_slice *row) {
  sx_slice cur = *row;
  (void)key;
  return sx_rh_state(c->x, c->tid, c->asof_kind, c->asof_at, c->asof_floor,
                     &cur, row);
}

SYNC_API int sync_cursor_open_asof(sync_txn *x, unsigned table, int kind,
                                   uint64_t at, sync_cursor **out) {
  uint64_t floor = 0;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || table >= x->env->schema->ntables) return SYNC_EINVAL;
  if ((rc = sx_rh_point(x, table, kind, at, &floor))) return rc;
  if ((rc = sync_cursor_open(x, table, out))) return rc;
  (*out)->asof = 1;
  (*out)->asof_kind = kind;
  (*out)->asof_at = at;
  (*out)->asof_floor = floor;
  return 0;
}

/* Values of row r for a table of n columns (NULL where none). */

struct sync_versions {
  sx_alloc al;
  sync_txn *x;
  unsigned tid;
  unsigned char key[SYNC_MAX_KEY];
  size_t klen;
  int started, done, have;
  unsigned long gen; /* the transaction's writes when it started */
  sx_slice next;     /* bytes of the next version to list (in the map) */
  sx_row row;    /* the current one */
};

SYNC_API int sync_versions_open(sync_txn *x, unsigned table, const void *key,
                                size_t klen, sync_versions **out) {
  sync_versions *it;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || !key || !klen || table >= x->env->schema->ntables)
    return SYNC_EINVAL;
  if (klen > SYNC_MAX_KEY) return SYNC_ETOOBIG;
  it = (sync_versions *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  if ((rc = sx_row_init(&it->al, &it->row, SYNC_MAX_COLUMNS))) {
    sx_free(&it->al, it);
    return rc;
  }
  it->x = x;
  it->tid = table;
  memcpy(it->key, key, klen);
  it->klen = klen;
  *out = it;
  return 0;
}

SYNC_API int sync_versions_next(sync_versions *it, sync_version *out,
                                sync_value *vals, unsigned nvals) {
  sync_txn *x;
  sync_env *env;
  sx_row *r;
  sx_slice b;
  unsigned i, newest;
  int rc;
  if (!it || !out || (nvals && !vals)) return SYNC_EINVAL;
  x = it->x;
  env = x->env;
  if (nvals > env->schema->tables[it->tid].ncols) return SYNC_EINVAL;
  if (it->done) return SYNC_NOTFOUND;
  /* A write may have moved the pages it->next points into. */
  if (it->started && it->gen != x->gen) return SYNC_EINVAL;
  if (!it->started) {
    it->started = 1;
    it->gen = x->gen;
    rc = sx_get(env->st, x->t, env->tdbi[it->tid], it->key, it->klen, &b);
    if (rc == SYNC_NOTFOUND) it->done = 1;
    if (rc) return rc;
  } else {
    b = it->next;
  }
  r = &it->row;
  if ((rc = sx_row_decode(b.p, b.n, it->key, it->klen, r)))
    return sx_fail(env, rc, "table '%s': a version of a row fails its "
                   "checksum", env->schema->tables[it->tid].name);
  memset(out, 0, sizeof *out);
  out->version = r->version;
  out->deleted = !(r->cl & 1);
  out->causal_length = r->cl;
  out->ncolumns = r->ncols;
  it->done = 1;
  if (sx_rh_on(env, it->tid)) {
    unsigned char k[SX_RH_KEY];
    sx_slice val, prev;
    unsigned flags;
    uint64_t time;
    sx_rh_key(k, it->tid, r->version, r->seq);
    rc = sx_get(env->st, x->t, env->hist, k, SX_RH_KEY, &val);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (!rc) {
      if ((rc = sx_rh_rec(&val, &flags, &time, &prev)))
        return sx_fail(env, rc, "table '%s': a history record is malformed",
                       env->schema->tables[it->tid].name);
      out->time_ms = time;
      out->origin = (flags & SX_RH_PEER) ? SYNC_ORIGIN_PEER : SYNC_ORIGIN_LOCAL;
      if (!(flags & SX_RH_NOPREV)) {
        it->next = prev;
        it->done = 0;
      }
    }
  }
  if (r->cl_stamp < r->nstamps) {
    out->row_stamp.hlc = r->stamps[r->cl_stamp].hlc;
    if ((rc = sx_site_id(x, r->stamps[r->cl_stamp].site, out->row_stamp.site)))
      return rc;
  }
  newest = r->cl_stamp;
  for (i = 0; i < r->ncols; i++)
    if (r->cols[i].st != SX_NOSTAMP && r->cols[i].st < r->nstamps &&
        (newest >= r->nstamps || r->stamps[r->cols[i].st].hlc >
                                     r->stamps[newest].hlc))
      newest = r->cols[i].st;
  if (out->origin == SYNC_ORIGIN_LOCAL) memcpy(out->site, x->self, 16);
  else if (newest < r->nstamps &&
           (rc = sx_site_id(x, r->stamps[newest].site, out->site)))
    return rc;
  it->have = 1;
  if (out->deleted) {
    for (i = 0; i < nvals; i++) vals[i] = sync_null();
  } else {
    sx_fill(&env->schema->tables[it->tid], r, vals, nvals);
  }
  return 0;
}

SYNC_API int sync_versions_column(sync_versions *it, unsigned col,
                                  sync_value *val, sync_stamp *stamp,
                                  sync_stamp *base) {
  if (!it || !it->have) return SYNC_EINVAL;
  return sx_row_column(it->x, it->tid, &it->row, col, val, stamp, base);
}

SYNC_API void sync_versions_close(sync_versions *it) {
  sx_alloc al;
  if (!it) return;
  al = it->al;
  sx_row_free(&al, &it->row);
  sx_free(&al, it);
}

/* Two rows (NULL: absent) hold the same values in the table's n
 * columns. */
static int sx_rh_same(const sx_table *tb, const sx_row *a, const sx_row *b,
                      unsigned n, sync_value *va, sync_value *vb) {
  unsigned i;
  if (!a || !b) return !a && !b;
  sx_fill(tb, a, va, n);
  sx_fill(tb, b, vb, n);
  for (i = 0; i < n; i++)
    if (!sx_value_eq(&va[i], &vb[i])) return 0;
  return 1;
}

/* Decode the version at a point of the stored row (key, cur) into r:
 * r when it was live then, NULL when absent or deleted. */
static int sx_rh_live_at(sync_txn *x, unsigned tid, int kind, uint64_t at,
                         uint64_t floor, const sx_slice *key,
                         const sx_slice *cur, sx_row *r, sx_row **out) {
  sx_slice b = {NULL, 0};
  int rc = sx_rh_state(x, tid, kind, at, floor, cur, &b);
  *out = NULL;
  if (rc <= 0) return rc;
  if ((rc = sx_row_decode(b.p, b.n, key->p, key->n, r)))
    return sx_fail(x->env, rc, "table '%s': a version of a row fails its "
                   "checksum", x->env->schema->tables[tid].name);
  if (r->cl & 1) *out = r;
  return 0;
}

/* A counter's add of a restore: mag, subtracted when neg. */
typedef struct sx_rhadd {
  uint64_t mag;
  int neg;
} sx_rhadd;

/* Scratch of a diff or a restore: two rows and their values, and a
 * restore's adds. */
typedef struct sx_rhwork {
  sx_row ra, rb;
  sync_value *va, *vb;
  sx_rhadd *add;
  sx_buf copy;
} sx_rhwork;

static int sx_rhwork_init(sync_env *env, sx_rhwork *w) {
  memset(w, 0, sizeof *w);
  sx_buf_init(&w->copy, &env->al);
  w->va = (sync_value *)sx_malloc(&env->al,
                                  2 * sizeof(sync_value) * SYNC_MAX_COLUMNS);
  if (!w->va) return SYNC_ENOMEM;
  w->vb = w->va + SYNC_MAX_COLUMNS;
  w->add = (sx_rhadd *)sx_malloc(&env->al, sizeof(sx_rhadd) * SYNC_MAX_COLUMNS);
  if (!w->add) return SYNC_ENOMEM;
  /* A failed init leaves freed pointers behind: forget them. */
  if (sx_row_init(&env->al, &w->ra, SYNC_MAX_COLUMNS)) {
    memset(&w->ra, 0, sizeof w->ra);
    return SYNC_ENOMEM;
  }
  if (sx_row_init(&env->al, &w->rb, SYNC_MAX_COLUMNS)) {
    memset(&w->rb, 0, sizeof w->rb);
    return SYNC_ENOMEM;
  }
  return 0;
}

static void sx_rhwork_free(sync_env *env, sx_rhwork *w) {
  if (w->ra.cols) sx_row_free(&env->al, &w->ra);
  if (w->rb.cols) sx_row_free(&env->al, &w->rb);
  sx_free(&env->al, w->va);
  sx_free(&env->al, w->add);
  sx_buf_free(&w->copy);
}

SYNC_API int sync_history_diff(sync_txn *x, unsigned table, int kind,
                               uint64_t a, uint64_t b, sync_history_diff_fn fn,
                               void *ctx) {
  sync_env *env;
  sx_rhwork w;
  sx_scur *c = NULL;
  sx_slice k, v;
  uint64_t fa = 0, fb = 0;
  unsigned n;
  int rc, op = SX_FIRST;
  if (!x || !fn || table >= x->env->schema->ntables) return SYNC_EINVAL;
  env = x->env;
  n = env->schema->tables[table].ncols;
  if ((rc = sx_rh_point(x, table, kind, a, &fa)) ||
      (rc = sx_rh_point(x, table, kind, b, &fb)))
    return rc;
  if ((rc = sx_rhwork_init(env, &w))) goto done;
  if ((rc = sx_cur_open(env->st, x->t, env->tdbi[table], &c))) goto done;
  while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    sx_row *pa, *pb;
    int what;
    if ((rc = sx_rh_live_at(x, table, kind, a, fa, &k, &v, &w.ra, &pa)) ||
        (rc = sx_rh_live_at(x, table, kind, b, fb, &k, &v, &w.rb, &pb)))
      break;
    if (sx_rh_same(&env->schema->tables[table], pa, pb, n, w.va, w.vb)) continue;
    what = !pa ? SYNC_DIFF_ADDED : !pb ? SYNC_DIFF_REMOVED : SYNC_DIFF_CHANGED;
    if (pa) sx_fill(&env->schema->tables[table], pa, w.va, n);
    if (pb) sx_fill(&env->schema->tables[table], pb, w.vb, n);
    if ((rc = fn(ctx, k.p, k.n, what, pa ? w.va : NULL, pb ? w.vb : NULL, n)))
      break;
  }
done:
  sx_cur_close(c);
  sx_rhwork_free(env, &w);
  return rc; /* 0 at the end, an error, or what fn stopped with */
}

/* Write row then (live) back over now (NULL: a tombstone) at key.  The
 * LWW columns by a put, which writes only those that differ (and
 * inserts the row again over a tombstone, its counters from 0); each
 * counter by one add of its value then minus its exact sum now (the
 * whole value after a re-insert), so that the restore replicates as
 * adds and adds made elsewhere meanwhile still count.  The adds are
 * checked before anything is written: a difference this replica's own
 * total cannot take is SYNC_ELIMIT, as for sync_counter_add, and the
 * row is left as it is.  now's values point into the map: read before
 * the first write. */
static int sx_rh_put_back(sync_txn *x, unsigned tid, const void *key,
                          size_t klen, const sx_row *then, const sx_row *now,
                          sx_rhwork *w) {
  const sx_table *tb = &x->env->schema->tables[tid];
  unsigned i, n = tb->ncols;
  int rc;
  sx_fill(tb, then, w->va, n);
  for (i = 0; i < n; i++) {
    sx_rhadd *a = &w->add[i];
    uint64_t t, lo = 0, dlo, own_p = 0, own_n = 0;
    int64_t hi = 0, dhi;
    a->mag = 0;
    a->neg = 0;
    if (tb->cols[i].type != SYNC_COUNTER) continue;
    t = (uint64_t)w->va[i].i;
    w->va[i] = sync_null(); /* a put keeps the count */
    if (now && i < now->ncols)
      sx_rcol_ctr(&now->cols[i], &hi, &lo, &own_p, &own_n);
    /* then - now in 128 bits (two's complement words) */
    dlo = t - lo;
    dhi = (t >> 63 ? -1 : 0) - hi - (t < lo);
    if (dhi == 0) {
      a->mag = dlo;
    } else if (dhi == -1 && dlo != 0) {
      a->neg = 1;
      a->mag = 0 - dlo;
    } else {
      return SYNC_ELIMIT; /* 2^64 or more: no one total takes it */
    }
    if (a->mag && (a->neg ? own_n : own_p) > UINT64_MAX - a->mag)
      return SYNC_ELIMIT;
  }
  if ((rc = sync_put(x, tid, key, klen, w->va, n))) return rc;
  for (i = 0; i < n; i++)
    if (w->add[i].mag && (rc = sx_counter_add(x, tid, key, klen, i,
                                              w->add[i].neg, w->add[i].mag)))
      return rc;
  return 0;
}

SYNC_API int sync_table_restore(sync_txn *x, unsigned table, int kind,
                                uint64_t at, uint64_t *changed) {
  sync_env *env;
  sx_rhwork w;
  sx_scur *c = NULL;
  sx_slice k, v;
  unsigned char key[SYNC_MAX_KEY];
  size_t klen = 0;
  uint64_t floor = 0, done = 0;
  unsigned n;
  int rc, op = SX_FIRST;
  if (changed) *changed = 0;
  if (!x || table >= x->env->schema->ntables) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  env = x->env;
  n = env->schema->tables[table].ncols;
  if ((rc = sx_rh_point(x, table, kind, at, &floor))) return rc;
  if ((rc = sx_rhwork_init(env, &w))) goto done;
  if ((rc = sx_cur_open(env->st, x->t, env->tdbi[table], &c))) goto done;
  k.p = NULL;
  k.n = 0;
  for (;;) {
    sx_row *then = NULL, *now;
    sx_slice b = {NULL, 0};
    rc = sx_cur_walk(env->st, c, &op, &k, &v);
    if (rc <= 0) break;
    klen = k.n;
    memcpy(key, k.p, klen);
    rc = sx_rh_state(x, table, kind, at, floor, &v, &b);
    if (rc < 0) break;
    if (rc == 1 && SX_ALWAYS(b.p != NULL)) {
      /* Copied: the writes below move pages. */
      w.copy.len = 0;
      if ((rc = sx_buf_reserve(&w.copy, b.n))) break;
      memcpy(w.copy.p, b.p, b.n);
      if ((rc = sx_row_decode(w.copy.p, b.n, key, klen, &w.ra))) break;
      if (w.ra.cl & 1) then = &w.ra;
    }
    if ((rc = sx_row_decode(v.p, v.n, key, klen, &w.rb))) break;
    now = (w.rb.cl & 1) ? &w.rb : NULL;
    if (sx_rh_same(&env->schema->tables[table], then, now, n, w.va, w.vb)) continue;
    if (then) {
      rc = sx_rh_put_back(x, table, key, klen, then, now, &w);
    } else {
      rc = sync_delete(x, table, key, klen);
    }
    if (rc) break;
    done++;
    /* After a write the walk goes on after the key written. */
    op = SX_AFTER;
    k.p = key;
    k.n = klen;
  }
done:
  sx_cur_close(c);
  sx_rhwork_free(env, &w);
  if (changed) *changed = done;
  return rc;
}

/* ---------------------------------------------------------------------
 * Settings and pruning
 * ------------------------------------------------------------------- */

/* Remove every record of table tid (history turned off). */
static int sx_rh_drop(sync_txn *x, unsigned tid) {
  sync_env *env = x->env;
  unsigned char k[SX_RH_KEY];
  sx_scur *c;
  sx_slice kk, v;
  int rc;
  if ((rc = sx_cur_open(env->st, x->t, env->hist, &c))) return rc;
  sx_rh_key(k, tid, 0, 0);
  for (;;) {
    if ((rc = sx_rh_seek(env, c, tid, k, &kk, &v)) <= 0) break;
    if ((rc = sx_cur_del(env->st, c))) break;
  }
  sx_cur_close(c);
  return rc;
}

SYNC_API int sync_env_set_history(sync_env *env, unsigned table,
                                  const sync_history_opts *opts) {
  sync_txn *x = NULL;
  sx_rhrec o;
  sx_dbi d = 0;
  uint64_t ct;
  int rc, was;
  if (!env || !env->st || !env->schema || table >= env->schema->ntables)
    return SYNC_EINVAL;
  if (env->rdonly) return SYNC_EREADONLY;
  if (sx_store_active(env->st))
    return sx_fail(env, SYNC_EBUSY, "history settings need no open "
                   "transaction");
  if (!opts && !sx_rh_on(env, table)) return 0;
  if ((rc = sync_txn_begin(env, 0, &x))) return rc;
  if (!env->hist_ok) {
    /* The store is made with the first table that keeps history; its
     * handle counts once the transaction commits. */
    if ((rc = sx_dbi_open(env->st, x->t, "sx.hist", 1, &d))) goto fail;
    env->hist = d;
    env->hist_ok = 1;
  }
  rc = sx_rh_opt_get(env, x->t, table, &o);
  if (rc && rc != SYNC_NOTFOUND) goto fail;
  was = rc == 0;
  if ((rc = sx_rh_time(x, &ct))) goto fail;
  if (!opts) {
    unsigned char k[2];
    k[0] = (unsigned char)(table >> 8);
    k[1] = (unsigned char)table;
    if ((rc = sx_del(env->st, x->t, env->hist, k, 2)) ||
        (rc = sx_rh_drop(x, table)))
      goto fail;
  } else {
    if (!was) {
      o.since = o.floor = x->base_version;
      o.ftime = ct;
    }
    o.max_versions = opts->max_versions;
    o.max_age_ms = opts->max_age_ms;
    if ((rc = sx_rh_opt_put(env, x->t, table, &o))) goto fail;
  }
  x->dirty = 1;
  rc = sync_txn_commit(x);
  x = NULL;
  if (rc) goto fail;
  if (!env->rh) {
    env->rh = (sx_rhopt *)sx_malloc(&env->al,
                                    sizeof(sx_rhopt) * SYNC_MAX_TABLES);
    if (!env->rh) {
      /* Committed, but this env cannot hold it: reopening loads it. */
      rc = SYNC_ENOMEM;
      goto fail;
    }
    memset(env->rh, 0, sizeof(sx_rhopt) * SYNC_MAX_TABLES);
  }
  env->rh[table].on = opts != NULL;
  env->rh[table].max_versions = opts ? opts->max_versions : 0;
  env->rh[table].max_age_ms = opts ? opts->max_age_ms : 0;
  return 0;
fail:
  if (x) sync_txn_abort(x);
  if (!env->rh) env->hist_ok = 0; /* an aborted creation made nothing */
  return sx_fail(env, rc, "setting the history of table '%s' failed: %s",
                 env->schema->tables[table].name, sync_strerror(rc));
}

SYNC_API int sync_env_history(sync_env *env, unsigned table,
                              sync_history_opts *out) {
  if (!env || !env->schema || !out || table >= env->schema->ntables)
    return SYNC_EINVAL;
  if (!sx_rh_on(env, table)) return SYNC_NOTFOUND;
  out->max_versions = env->rh[table].max_versions;
  out->max_age_ms = env->rh[table].max_age_ms;
  return 0;
}

SYNC_API int sync_history_prune(sync_txn *x, unsigned table,
                                uint64_t *removed) {
  sync_env *env;
  const sx_rhopt *o;
  uint64_t got = 0, ct;
  int rc = 0;
  if (removed) *removed = 0;
  if (!x || table >= x->env->schema->ntables) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  env = x->env;
  if (!sx_rh_on(env, table)) return SYNC_NOTFOUND;
  o = &env->rh[table];
  if ((rc = sx_rh_time(x, &ct))) return rc;
  x->dirty = 1;
  if (o->max_age_ms && ct > o->max_age_ms &&
      (rc = sx_rh_age(x, table, ct - o->max_age_ms, UINT64_MAX, &got)))
    return rc;
  if (o->max_versions) {
    sx_scur *c;
    sx_slice k, v;
    int op = SX_FIRST;
    if ((rc = sx_cur_open(env->st, x->t, env->tdbi[table], &c))) return rc;
    k.p = NULL; /* SX_FIRST reads no key; the analyzers cannot tell */
    k.n = 0;
    while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
      uint64_t pv;
      uint32_t ps;
      if ((rc = sx_rh_rowpos(&v, &pv, &ps)) ||
          (rc = sx_rh_trim(x, table, pv, ps, 1, o->max_versions - 1, &got)))
        break;
    }
    sx_cur_close(c);
  }
  if (removed) *removed = got;
  if (got) x->gen++; /* open version iterators may point at what went */
  return rc < 0 ? rc : 0;
}
