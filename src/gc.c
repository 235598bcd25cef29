/*
 * gc.c - tombstone collection, the collection horizon, and the health
 * report.
 */
#include "gc.h"

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
  {
    sx_fold *f;
    size_t nf;
    if ((rc = sx_folds(x, &f, &nf))) return rc;
    out->folds = nf;
    rc = sx_get(x->env->st, x->t, x->env->meta, "foldpos", 7, &hz);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    out->fold_pending = rc == 0;
  }
  return sync_tombstones(x, &out->tombstones);
}

/* Walk the log from position *from (a log key: u64 BE version, u32 BE
 * seq; NULL: its start) up to (hv, hs), counting tombstones; with
 * collect, delete them, at most limit of them.  When the walk stops at
 * the limit, *more is set and *from becomes the position of the last one
 * deleted: every entry before it was live or is gone, so a later batch
 * may start there (an entry whose row changes moves to the log's end). */
static int sx_tomb_walk(sync_txn *x, uint64_t hv, uint32_t hs, int collect,
                        uint64_t limit, unsigned char *from, int *more,
                        uint64_t *count, uint64_t *maxcl) {
  sync_env *env = x->env;
  sx_logit it;
  const sx_lent *e = &it.e;
  int rc, rc2;
  *count = 0;
  if (more) *more = 0;
  if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
  if ((rc = sx_logit_open(x, &it))) return rc;
  if (from) rc = sx_logit_seek(&it, sx_get_be64(from), sx_get_be32(from + 8));
  while (!rc) {
    rc = sx_logit_next(&it);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (sx_poscmp(e->version, e->seq, hv, hs) > 0) break;
    rc = sx_log_current(x, &x->old, e);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      continue;
    }
    if (rc) break;
    if (x->old.cl & 1) continue;
    /* A tombstone whose version record history keeps holds the row's
     * versions to its key: it goes once retention removes the record. */
    if (collect && sx_rh_on(env, e->tid)) {
      int pin = sx_rh_pinned(x, e->tid, &x->old);
      if (pin < 0) {
        rc = pin;
        break;
      }
      if (pin) continue;
    }
    if (collect && *count == limit) {
      if (more) *more = 1;
      break;
    }
    (*count)++;
    if (!collect) continue;
    if (x->old.cl > maxcl[e->tid]) maxcl[e->tid] = x->old.cl;
    /* The table's sums lose the tombstone (repair counts them). */
    if ((rc = sx_sums_drop(x, e->tid, e->key, e->klen, &x->old))) break;
    if ((rc = sx_del(env->st, x->t, env->tdbi[e->tid], e->key, e->klen))) {
      x->failed = 1;
      break;
    }
    sx_logit_del(&it);
    x->log_added--;
    if (from) sx_logkey(from, e->version, e->seq);
    x->gen++;
  }
  rc2 = sx_logit_close(&it); /* writes the records it deleted from */
  return rc ? rc : rc2;
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

SYNC_PRIVATE int sx_gcvv_raise(sync_txn *x, const uint64_t *from) {
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

SYNC_PRIVATE int sx_need_complete(sync_txn *x, const uint64_t *rvv, int *out) {
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
  return sx_tomb_walk(x, UINT64_MAX, UINT32_MAX, 0, 0, NULL, NULL, out, NULL);
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

/* One batch of sync_gc: at most limit tombstones, from log position
 * from (NULL: the start; see sx_tomb_walk), in x. */
static int sx_gc_batch(sync_txn *x, uint64_t limit, unsigned char *from,
                       int *more, uint64_t *collected) {
  sync_env *env;
  sx_least hz;
  uint64_t hv, n = 0, peers;
  uint32_t hs;
  int rc;
  *collected = 0;
  *more = 0;
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
    rc = sx_tomb_walk(x, hv, hs, 1, limit, from, more, &n, maxcl);
    if (!rc && n) {
      rc = sx_gccl_raise(x, maxcl);
      if (!rc) rc = sx_gcvv_raise(x, NULL);
      if (!rc) {
        /* The horizon, for telling peers that come back from behind it
         * that tombstones they needed are gone (SYNC_ESTALE). */
        unsigned char pos[12];
        sx_put_le64(pos, hv);
        sx_put_le32(pos + 8, hs);
        if ((rc = sx_put(env->st, x->t, env->meta, "gcpos", 5, pos, 12, 0)))
          x->failed = 1;
      }
    }
    sx_free(&env->al, maxcl);
  }
  *collected = n;
  if (!rc) sx_stats_add(&env->stats, SX_ST_TOMBSTONES_COLLECTED, n);
  return rc;
}

/* ---------------------------------------------------------------------
 * Counter folds (fold.c): retiring a site, and folding the cells that
 * hold its contribution, in batches.  Meta "foldpos" (u32 LE table id,
 * then the key after which the walk goes on; absent: nothing to fold)
 * is where the walk of a retirement stands.
 * ------------------------------------------------------------------- */
static int sx_foldpos_put(sync_txn *x, unsigned tid, const void *key,
                          size_t klen) {
  x->dirty = 1;
  return sx_walkpos_put(x, "foldpos", NULL, 0, tid, key, klen);
}

SYNC_API int sync_site_retire(sync_txn *x, const uint8_t site[16]) {
  sync_env *env;
  sx_fold *f;
  sx_buf chain;
  uint64_t *vv = NULL, held;
  uint32_t ls;
  size_t n, i;
  int rc, added;
  if (!x || !site) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  env = x->env;
  if (!memcmp(site, x->self, SX_SITE_LEN))
    return sx_fail(env, SYNC_EINVAL, "a replica cannot retire its own site id");
  if ((rc = sx_folds(x, &f, &n))) return rc;
  for (i = 0; i < n; i++)
    if (!memcmp(f[i].site, site, SX_SITE_LEN))
      return sx_fail(env, SYNC_EEXIST, "that site is retired already");
  rc = sx_site_index(x, site, 0, &ls);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if (!rc && (rc = sx_vv_load(x, &vv))) return rc;
  held = vv ? vv[ls] : 0;
  sx_free(&env->al, vv);
  if (!held)
    return sx_fail(env, SYNC_NOTFOUND,
                   "this replica holds no change of that site: only a "
                   "replica that holds its adds can retire it");
  /* The sites it was heir of come to us with it. */
  sx_buf_init(&chain, &env->al);
  for (i = 0; !rc && i < n; i++)
    if (!memcmp(f[i].heir, site, SX_SITE_LEN) &&
        !(rc = sx_buf_reserve(&chain, 24))) {
      memcpy(chain.p + chain.len, f[i].site, SX_SITE_LEN);
      sx_put_le64(chain.p + chain.len + SX_SITE_LEN, f[i].held);
      chain.len += 24;
    }
  sx_stamp_txn(x);
  if (!rc) rc = sx_fold_put(x, site, x->self, x->hlc, held, &added);
  for (i = 0; !rc && i < chain.len; i += 24)
    rc = sx_fold_put(x, chain.p + i, x->self, x->hlc,
                     sx_get_le64(chain.p + i + SX_SITE_LEN), &added);
  sx_buf_free(&chain);
  /* The walk starts again from the first table. */
  if (!rc) rc = sx_foldpos_put(x, 0, NULL, 0);
  return rc;
}

/* One batch of the fold walk: at most limit rows folded, at most 64
 * times as many read.  *more when the walk is not over. */
static int sx_fold_batch(sync_txn *x, uint64_t limit, uint64_t *folded,
                         int *more) {
  sync_env *env = x->env;
  unsigned char key[SYNC_MAX_KEY];
  size_t klen;
  unsigned tid;
  uint64_t read = 0;
  sx_buf keys;
  int rc;
  *folded = 0;
  *more = 0;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  rc = sx_walkpos_get(x, "foldpos", NULL, 0, &tid, key, &klen);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc == SYNC_ECORRUPT)
    return sx_fail(env, SYNC_ECORRUPT, "malformed fold position");
  if (rc) return rc;
  if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
  sx_buf_init(&keys, &env->al);
  for (; !rc && tid < env->schema->ntables; tid++, klen = 0) {
    const sx_table *tb = &env->schema->tables[tid];
    sx_scur *c;
    sx_slice k, rv;
    size_t nk = 0, at;
    int op = SX_AFTER, stop = 0, got;
    if (!sx_table_counters(tb)) continue;
    keys.len = 0;
    if ((rc = sx_cur_open(env->st, x->t, env->tdbi[tid], &c))) break;
    k.p = key;
    k.n = klen;
    while ((got = sx_cur_walk(env->st, c, &op, &k, &rv)) == 1) {
      if ((rc = sx_row_decode(rv.p, rv.n, k.p, k.n, &x->old))) break;
      read++;
      if (sx_row_foldable(x, &x->old)) {
        if ((rc = sx_buf_reserve(&keys, 2 + k.n))) break;
        keys.p[keys.len] = (unsigned char)(k.n >> 8);
        keys.p[keys.len + 1] = (unsigned char)k.n;
        memcpy(keys.p + keys.len + 2, k.p, k.n);
        keys.len += 2 + k.n;
        nk++;
      }
      if (nk >= limit || read >= 64 * limit) {
        memcpy(key, k.p, k.n);
        klen = k.n;
        stop = 1;
        break;
      }
    }
    if (!rc && got < 0) rc = got;
    sx_cur_close(c);
    for (at = 0; !rc && at < keys.len;) {
      size_t n = (size_t)keys.p[at] << 8 | keys.p[at + 1];
      int fo;
      rc = sx_counter_fold(x, tid, keys.p + at + 2, n, &fo);
      *folded += (uint64_t)fo;
      at += 2 + n;
    }
    if (!rc && stop) {
      rc = sx_foldpos_put(x, tid, key, klen);
      *more = 1;
      break;
    }
  }
  sx_buf_free(&keys);
  if (!rc && !*more) {
    rc = sx_del(env->st, x->t, env->meta, "foldpos", 7);
    if (rc == SYNC_NOTFOUND) rc = 0;
    if (rc) x->failed = 1;
    x->dirty = 1;
  }
  return rc;
}

SYNC_API int sync_gc(sync_txn *x, uint64_t *collected) {
  uint64_t n = 0, folded;
  int more, rc = sx_gc_batch(x, SYNC_GC_BATCH, NULL, &more, &n);
  if (!rc) rc = sx_fold_batch(x, SYNC_GC_BATCH, &folded, &more);
  if (collected) *collected = n;
  return rc;
}

SYNC_API int sync_folds_get(sync_txn *x, sync_fold *out, size_t cap,
                            size_t *n) {
  sx_fold *f;
  size_t m, i;
  int rc;
  if (!x || !n || (cap && !out)) return SYNC_EINVAL;
  if ((rc = sx_folds(x, &f, &m))) return rc;
  for (i = 0; i < m && i < cap; i++) {
    memcpy(out[i].site, f[i].site, SX_SITE_LEN);
    memcpy(out[i].heir, f[i].heir, SX_SITE_LEN);
    out[i].hlc = f[i].hlc;
    out[i].held = f[i].held;
  }
  *n = m;
  return 0;
}

SYNC_API int sync_env_gc(sync_env *env, uint64_t *collected) {
  unsigned char from[SX_LOGKEY];
  uint64_t total = 0;
  int rc = 0, more = 1, fmore = 1;
  if (collected) *collected = 0;
  if (!env || !env->st) return SYNC_EINVAL;
  if (env->rdonly) return SYNC_EREADONLY;
  memset(from, 0, sizeof from); /* below every log key: the start */
  /* One transaction per batch: LMDB reuses the pages a transaction frees
   * only in later ones, so a single large one would grow the file by
   * about every page it touches.  Each batch starts where the last one
   * stopped and takes the horizon afresh (a peer met meanwhile lowers
   * it). */
  while (more || fmore) {
    sync_txn *x;
    uint64_t n = 0, folded = 0;
    if ((rc = sync_txn_begin(env, 0, &x))) break;
    if (more) rc = sx_gc_batch(x, SYNC_GC_BATCH, from, &more, &n);
    if (!rc && fmore) rc = sx_fold_batch(x, SYNC_GC_BATCH, &folded, &fmore);
    if (rc) {
      sync_txn_abort(x);
      break;
    }
    if ((rc = sync_txn_commit(x))) break;
    total += n;
  }
  if (collected) *collected = total;
  return rc;
}
