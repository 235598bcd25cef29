/*
 * cut.c - producing deltas: cutting chunks from the log or the initial
 * stream under a scope and a row filter.
 */
#include "cut.h"

#include <stdlib.h>

/* ---------------------------------------------------------------------
 * Making deltas
 * ------------------------------------------------------------------- */
/* Counter cell c (column col of a stored row) into d->cols: the
 * contributions whose HLC is above the requester's entry for their site
 * (all of them with whole), as sx_ctr records in the arena, sites still
 * local (sx_cut_close renumbers them); none left: no column.  *cnews
 * counts cells with a contribution the requester lacks. */
static int sx_delta_ctr(sync_delta *d, sync_txn *x, const sx_row *r,
                        size_t col, const uint64_t *rvv, int whole,
                        size_t *cnews, size_t *bytes) {
  const sx_rcol *c = &r->cols[col];
  sx_dcol *dc;
  sx_ctr *a;
  size_t n = 0, k, keep = 0, fresh = 0, off;
  int rc;
  (void)sx_ctr_check((const unsigned char *)c->v.data,
                     (const unsigned char *)c->v.data + c->v.len, &n);
  if ((rc = sx_buf_reserve(&x->ctrs, n * sizeof(sx_ctr)))) return rc;
  a = (sx_ctr *)(void *)x->ctrs.p;
  sx_ctr_read(&c->v, a);
  for (k = 0; k < n; k++) {
    if (a[k].site >= x->nsites) return SYNC_ECORRUPT;
    if (a[k].hlc > rvv[a[k].site]) fresh++;
    else if (!whole) continue;
    a[keep++] = a[k];
  }
  if (!keep) return 0;
  if (fresh) (*cnews)++;
  off = SX_CTR_ALIGN(d->arena.len);
  if ((rc = sx_buf_reserve(&d->arena, off - d->arena.len +
                                          keep * sizeof(sx_ctr))))
    return rc;
  memcpy(d->arena.p + off, a, keep * sizeof(sx_ctr));
  d->arena.len = off + keep * sizeof(sx_ctr);
  dc = &d->cols[d->ncols++];
  dc->col = (unsigned)col;
  dc->hlc = r->stamps[c->st].hlc;
  dc->site = r->stamps[c->st].site;
  dc->bhlc = 0;
  dc->bsite = 0;
  dc->v = sync_null();
  dc->v.type = SX_TAG_COUNTER;
  dc->v.data = (const void *)(uintptr_t)off; /* NOLINT(performance-no-int-to-ptr) */
  dc->v.len = keep;
  *bytes += 10 + 12 * keep;
  return 0;
}

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
  size_t i, n0 = d->ncols, cnews = 0;
  int rc, need = cs->hlc > rvv[cs->site];
  if ((rc = sx_grow(&d->al, (void **)&d->cols, &d->capcols,
                    d->ncols + r->ncols, sizeof(sx_dcol))))
    return rc;
  for (i = 0; i < r->ncols && (r->cl & 1); i++) {
    const sx_rcol *c = &r->cols[i];
    sx_dcol *dc;
    if (c->st == SX_NOSTAMP) continue;
    if (i < tb->ncols && (tb->cols[i].flags & SYNC_COL_LOCAL)) continue;
    if (c->v.type == SX_TAG_COUNTER) {
      /* The contributions the requester lacks: their sites' own entries
       * decide, not the column's stamp (the newest add's). */
      if ((rc = sx_delta_ctr(d, x, r, i, rvv, o && o->whole_rows, &cnews,
                             bytes)))
        return rc;
      continue;
    }
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
      if (d->cols[j].v.type != SX_TAG_COUNTER &&
          d->cols[j].hlc > rvv[d->cols[j].site])
        news++;
    if (!news && !cnews) {
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
    vals[j] = sx_col_value(r, j, tb->cols[j].type);
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

/* Seek it to the log position right after at. */
static int sx_log_after(sx_logit *it, const sx_cursor *at) {
  if (at->seq != UINT32_MAX) return sx_logit_seek(it, at->version, at->seq + 1);
  if (at->version == UINT64_MAX)
    return sx_logit_seek(it, UINT64_MAX, UINT32_MAX);
  return sx_logit_seek(it, at->version + 1, 0);
}

/* Log pass: rows whose log entry follows d->start. */
static int sx_delta_log(sync_delta *d, sync_txn *x, const uint64_t *rvv,
                        sx_cut *cut, size_t max_rows, size_t max_bytes) {
  sx_logit lit, *it = &lit;
  size_t bytes = 0;
  int rc;
  d->end = d->start;
  if ((rc = sx_logit_open(x, it))) return rc;
  rc = sx_log_after(it, &d->start);
  while (!rc) {
    const sx_lent *e = &it->e;
    rc = sx_logit_next(it);
    if (rc == SYNC_NOTFOUND) {
      d->last = 1;
      rc = 0;
      break;
    }
    if (rc) break;
    /* Full: this entry opens the next chunk.  Looking first means a
     * chunk that takes the log's last entries says it is the last. */
    if (d->nrows + d->nx >= max_rows || bytes >= max_bytes) break;
    rc = sx_log_current(x, &x->old, e);
    if (rc == 0) {
      /* Exits only from the tables served: a row of another table never
       * reached the requester from us, or left with its table. */
      int selected =
          !cut->o || !cut->o->tables || sx_bit(cut->o->tables, e->tid);
      if (selected || !cut->exits)
        rc = sx_cut_row(cut, d, x, e->tid, e->key, e->klen, &x->old, rvv, 0,
                        selected, &bytes);
      else
        d->partial = 1;
    } else if (rc == SYNC_NOTFOUND) {
      rc = 0; /* a stale entry: the row's current one comes later */
    }
    if (rc) break;
    d->end.version = e->version;
    d->end.seq = e->seq;
  }
  (void)sx_logit_close(it); /* read only: writes nothing */
  return rc;
}

/* Priority pass (sync_delta_opts.priority and priority_row): rows of the
 * priority tables, and rows the callback names, whose log entry follows
 * the chunk's end join it, up to max_rows of them, so that they reach
 * the receiver now rather than behind the backlog.  With tables only,
 * the walk reads just each entry's table id; the callback needs each
 * row read.  The rows it takes come again when the log pass reaches
 * them, and the receiver finds them unchanged.  Rows out of scope are
 * left to the log pass. */
static int sx_delta_ahead(sync_delta *d, sync_txn *x, const uint64_t *rvv,
                          sx_cut *cut, size_t max_rows, size_t max_bytes) {
  const unsigned char *prio = cut->o->priority;
  sync_row_filter_fn pf = cut->o->priority_row;
  sx_logit lit, *it = &lit;
  size_t bytes = 0, n0 = d->nrows;
  int rc;
  if ((rc = sx_logit_open(x, it))) return rc;
  rc = sx_log_after(it, &d->end);
  while (!rc && d->nrows - n0 < max_rows && bytes < max_bytes &&
         (rc = sx_logit_next(it)) == 0) {
    const sx_lent *e = &it->e;
    int table_first = prio && sx_bit(prio, e->tid);
    if (!table_first && !pf) continue;
    rc = sx_log_current(x, &x->old, e);
    if (rc == SYNC_NOTFOUND) {
      rc = 0; /* a stale entry */
      continue;
    }
    if (rc) break;
    if (!table_first &&
        !sx_filter_row(x, pf, cut->o->priority_row_ctx, cut->peer, e->tid,
                       e->key, e->klen, &x->old, cut->vals))
      continue;
    if (sx_in_scope(cut, x, e->tid, e->key, e->klen, &x->old) &&
        (rc = sx_delta_add(d, x, e->tid, e->key, e->klen, &x->old, rvv, cut->o,
                           0, &bytes)))
      break;
  }
  (void)sx_logit_close(it); /* read only: writes nothing */
  return rc == SYNC_NOTFOUND ? 0 : rc;
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
    uintptr_t page = 0;
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
    op = SX_AFTER;
    for (;;) {
      rc = sx_cur_walk(env->st, c, &op, &k, &v);
      if (rc == 0) break;
      if (rc < 0) return rc;
      /* Full: this row opens the next chunk (so a chunk that takes the
       * last rows ends the stream itself). */
      if (d->nrows + d->nx >= max_rows || bytes >= max_bytes) return 0;
      sx_walk_ahead(env->st, &page, v.p);
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

SYNC_PRIVATE void sx_scope_served(const sync_env *env,
                                  const sync_delta_opts *o, sx_scope *sc) {
  unsigned t, nt = env->schema->ntables;
  memset(sc, 0, sizeof *sc);
  sc->flags = SX_SCOPE_ON | (o->filter ? SX_SCOPE_FILTER : 0);
  sc->fver = o->filter ? o->filter_version : 0;
  for (t = 0; t < nt; t++)
    if (!o->tables || sx_bit(o->tables, t))
      sc->tables[t >> 3] |= (unsigned char)(1u << (t & 7));
  memcpy(sc->held, sc->tables, SX_TBYTES);
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
  sx_scope_served(x->env, o, sc);
  same = served &&
         (rs->flags & (SX_SCOPE_ON | SX_SCOPE_FILTER)) == sc->flags &&
         rs->fver == sc->fver && !memcmp(rs->tables, sc->tables, SX_TBYTES);
  *restart = 0;
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


/* May this replica cut for req?  0, or an error with the message set. */
static int sx_cut_admit(sync_txn *x, const sync_request *req) {
  sync_env *env = x->env;
  uint64_t held;
  int rc;
  if (memcmp(req->sender, x->self, SX_SITE_LEN) ||
      !memcmp(req->requester, x->self, SX_SITE_LEN))
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
  return sx_claim_check(x, req, &held);
}

/* What the requester holds, per local site index (rvv: x->nsites
 * entries), less the claims that a renewal record voids: the requester
 * may still make them (it has not heard of the record). */
static int sx_cut_rvv(sync_txn *x, const sync_request *req, uint64_t *rvv) {
  size_t i;
  int rc = 0;
  memset(rvv, 0, sizeof(uint64_t) * x->nsites);
  for (i = 0; i < req->nvv && !rc; i++) {
    uint32_t idx;
    uint64_t h = req->vv[i].hlc;
    if (sx_site_index(x, req->vv[i].site, 0, &idx) != 0) continue;
    rc = sx_renew_cap(x, req->vv[i].site, &h);
    rvv[idx] = h;
  }
  return rc;
}

/* What this replica collected: a receiver whose vector this run raises
 * past those deletes starts new rows above them. */
static int sx_cut_gccl(sync_txn *x, sync_delta *d) {
  uint64_t fresh;
  unsigned t;
  int rc;
  x->gccl_ok = 0;
  sx_free(&x->env->al, x->gccl);
  x->gccl = NULL;
  rc = sx_fresh_cl(x, 0, &fresh);
  for (t = 0; !rc && x->gccl && t < x->env->schema->ntables; t++)
    if (x->gccl[t]) {
      d->gccl[d->ngccl].tid = t;
      d->gccl[d->ngccl].cl = x->gccl[t];
      d->ngccl++;
    }
  return rc;
}

static int sx_ctr_sitecmp(const void *p, const void *q) {
  const sx_ctr *a = (const sx_ctr *)p, *b = (const sx_ctr *)q;
  return a->site < b->site ? -1 : a->site > b->site;
}

/* Renumber the chunk's site indexes by map (local index -> index in the
 * chunk's table). */
static void sx_cut_renumber(sync_delta *d, const uint32_t *map) {
  size_t i;
  for (i = 0; i < d->nrows; i++) d->rows[i].clsite = map[d->rows[i].clsite];
  for (i = 0; i < d->ncols; i++) {
    d->cols[i].site = map[d->cols[i].site];
    d->cols[i].bsite = map[d->cols[i].bsite];
    if (d->cols[i].v.type == SX_TAG_COUNTER) {
      /* Chunk indexes need not keep local order: sort again. */
      sx_ctr *a = sx_dctr(d, d->cols[i].v.data);
      size_t k;
      for (k = 0; k < d->cols[i].v.len; k++) a[k].site = map[a[k].site];
      qsort(a, d->cols[i].v.len, sizeof *a, sx_ctr_sitecmp);
    }
  }
  for (i = 0; i < d->nx; i++) d->xrows[i].clsite = map[d->xrows[i].clsite];
  for (i = 0; i < d->nxc; i++) {
    d->xcols[i].site = map[d->xcols[i].site];
    d->xcols[i].bsite = map[d->xcols[i].bsite];
  }
  for (i = 0; i < d->nrenew; i++) d->renew[i].site = map[d->renew[i].site];
  for (i = 0; i < d->nfold; i++) d->fold[i].heir = map[d->fold[i].heir];
  sx_fold_sort(d);
}

/* The site table a chunk carries, with this replica's vector (vv is
 * taken), and the renewal records with a run's last chunk.  A chunk of
 * the log names only the sites it needs: this replica (index 0), the
 * sites its stamps name, and on a run's last chunk those whose entry
 * here is above the requester's (rvv; what the run raises), and those
 * of the renewal records it carries.  A run of a table selection or a
 * row filter leaves rows out, so its receiver does not raise its vector
 * with it (or, if nothing was left out after all, raises less: a lower
 * vector only ever costs rows sent again): such chunks leave the vector
 * out.  A site left out is one whose entry the requester already holds
 * at least as high, and a receiver raises its vector entry by entry to
 * the larger, so leaving it out changes nothing; a server that knows ten
 * thousand devices so does not send ten thousand site ids in every
 * chunk.  An initial stream carries the whole table: a complete one
 * bounds the receiver's deletes with this vector. */
static int sx_cut_close(sync_txn *x, sync_delta *d, uint64_t **vv,
                        const uint64_t *rvv, int keyed,
                        const sync_delta_opts *o) {
  uint32_t *map, n = 0, i;
  size_t j;
  int rc = 0, all = keyed || d->end.mode != SX_MODE_LOG || d->complete,
      raise = d->last && !d->partial && !(o && o->filter);
  for (i = 0; raise && o && o->tables && i < x->env->schema->ntables; i++)
    if (!sx_bit(o->tables, i)) raise = 0;
  d->nsites = x->nsites;
  if (d->last) {
    /* The renewal records the requester may lack (renew.c): those it
     * lacks past the chunk's SX_RENEW_MAX come with the next run, which
     * starts below them. */
    uint64_t rest;
    if ((rc = sx_renew_attach(x, d, rvv[0], &rest))) return rc;
    if (rest && (*vv)[0] >= rest) (*vv)[0] = rest - 1;
  }
  map = (uint32_t *)sx_malloc(&x->env->al, sizeof(uint32_t) * x->nsites);
  if (!map) return SYNC_ENOMEM;
  for (i = 0; i < x->nsites; i++)
    map[i] = all || i == 0 || (raise && (*vv)[i] > rvv[i]) ? 0 : SX_NONE;
  for (j = 0; j < d->nrows; j++) map[d->rows[j].clsite] = 0;
  for (j = 0; j < d->ncols; j++) {
    map[d->cols[j].site] = map[d->cols[j].bsite] = 0;
    if (d->cols[j].v.type == SX_TAG_COUNTER) {
      const sx_ctr *a = sx_dctr(d, d->cols[j].v.data);
      size_t k;
      for (k = 0; k < d->cols[j].v.len; k++) map[a[k].site] = 0;
    }
  }
  for (j = 0; j < d->nx; j++) map[d->xrows[j].clsite] = 0;
  for (j = 0; j < d->nxc; j++) map[d->xcols[j].site] = map[d->xcols[j].bsite] = 0;
  for (j = 0; j < d->nrenew; j++) map[d->renew[j].site] = 0;
  /* Fold records of the heirs named so far (fold.c): an heir's record
   * names no site the table lacks, the retired one going by its id. */
  if ((rc = sx_fold_attach(x, d, rvv, map, *vv))) {
    sx_free(&x->env->al, map);
    return rc;
  }
  for (i = 0; i < x->nsites; i++)
    if (map[i] == 0) map[i] = n++;
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(&d->al, (size_t)n * SX_SITE_LEN);
  d->vv = (uint64_t *)sx_malloc(&d->al, sizeof(uint64_t) * n);
  if (!d->sites || !d->vv) {
    sx_free(&x->env->al, map);
    return SYNC_ENOMEM;
  }
  for (i = 0; i < x->nsites; i++)
    if (map[i] != SX_NONE) {
      memcpy(d->sites[map[i]], x->sites[i], SX_SITE_LEN);
      d->vv[map[i]] = (*vv)[i];
    }
  d->nsites = n;
  d->nvv = n;
  sx_cut_renumber(d, map);
  sx_free(&x->env->al, map);
  return 0;
}

/* Cut the rows of the chunk: a stream of the tables in key order (from
 * nothing, or restarted under a new scope) or the log after the cursor. */
static int sx_cut_rows(sync_txn *x, sync_delta *d, const uint64_t *rvv,
                       sx_cut *cut, int restart, size_t max_rows,
                       size_t max_bytes) {
  int rc;
  if (restart || d->start.mode == SX_MODE_INITIAL ||
      (d->start.version == 0 && d->start.seq == 0)) {
    /* After a collection whose deletes the requester may lack, a stream
     * names every row: what it leaves out of its range, the receiver
     * drops (sx_apply_horizon). */
    if ((rc = sx_need_complete(x, rvv, &d->complete))) return rc;
    rc = sx_delta_keys(d, x, rvv, cut, d->complete, restart, max_rows,
                       max_bytes);
  } else {
    rc = sx_delta_log(d, x, rvv, cut, max_rows, max_bytes);
    /* An initial stream comes in key order (the receiver appends and
     * drops what a complete one leaves out): priority is for the log. */
    if (!rc && !d->last && cut->o &&
        (cut->o->priority || cut->o->priority_row))
      rc = sx_delta_ahead(d, x, rvv, cut, max_rows, max_bytes);
  }
  if (cut->track && d->end.mode == SX_MODE_LOG) {
    /* Past the stream: the requester holds rows of the served tables
     * only, and what follows is the log. */
    memcpy(d->scope.held, d->scope.tables, SX_TBYTES);
    d->scope.flags &= ~SX_SCOPE_EXITS;
  }
  return rc;
}

SYNC_API int sync_delta_make(sync_txn *x, const sync_request *req,
                             const sync_delta_opts *opts, sync_delta **out) {
  sync_env *env;
  sync_delta *d;
  uint64_t *vv = NULL, *rvv = NULL;
  size_t max_rows = 1000, max_bytes = (size_t)1 << 20;
  sx_cut cut;
  int rc, restart = 0, keyed;
  memset(&cut, 0, sizeof cut);
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || !req) return SYNC_EINVAL;
  env = x->env;
  if ((rc = sx_cut_admit(x, req))) return rc;
  if (opts && opts->max_rows) max_rows = opts->max_rows;
  if (opts && opts->max_bytes) max_bytes = opts->max_bytes;
  if ((rc = sx_scratch(x)) || (rc = sx_vv_load(x, &vv))) return rc;
  rvv = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * x->nsites);
  d = sx_delta_new(&env->al);
  if (!rvv || !d) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  if ((rc = sx_cut_rvv(x, req, rvv))) goto done;
  memcpy(d->sender, x->self, SX_SITE_LEN);
  memcpy(d->receiver, req->requester, SX_SITE_LEN);
  d->schema_hash = env->schema->hash;
  d->start = req->cur;
  cut.o = opts;
  cut.peer = req->requester;
  if (opts && opts->scope) {
    cut.track = 1;
    sx_scope_plan(x, req, opts, &d->scope, &restart, &cut.exits);
  }
  if (opts && (opts->filter || opts->priority_row)) {
    cut.vals = (sync_value *)sx_malloc(
        &env->al, sizeof(sync_value) * (SYNC_MAX_COLUMNS + 1));
    if (!cut.vals) {
      rc = SYNC_ENOMEM;
      goto done;
    }
  }
  keyed = restart || d->start.mode == SX_MODE_INITIAL ||
          (d->start.version == 0 && d->start.seq == 0);
  rc = sx_cut_rows(x, d, rvv, &cut, restart, max_rows, max_bytes);
  if (!rc) rc = sx_mark_of(x, sx_cursor_version(&d->end), &d->mark);
  /* A requester moved to another epoch than it held learns the epochs
   * before it (what a restored copy of this file looks for there). */
  if (!rc && (d->mark.id != req->mark.id || d->mark.start != req->mark.start))
    rc = sx_lineage_of(x, &d->mark, &d->lineage);
  if (!rc) rc = sx_cut_gccl(x, d);
  if (!rc) rc = sx_cut_close(x, d, &vv, rvv, keyed, opts);
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
