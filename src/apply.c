/*
 * apply.c - applying a delta: checks, policies, the collection horizon,
 * exit markers and the cursor and vector moves that follow.
 */
#include "apply.h"

#include <stdio.h>

/* Is counter value c of chunk d malformed: contributions beyond the
 * arena, none, more than the chunk has sites, sites not increasing, or
 * an HLC of 0 or above the column's stamp (its newest add's)?  The
 * decoder refuses the same; this guards chunks made in memory. */
static int sx_ctr_bad(const sync_delta *d, const sx_dcol *c) {
  uintptr_t off = (uintptr_t)c->v.data;
  const sx_ctr *a;
  size_t i;
  if (c->v.len == 0 || c->v.len > d->nsites || (off & 7u) ||
      off > d->arena.len || c->v.len > (d->arena.len - off) / sizeof(sx_ctr))
    return 1;
  a = sx_dctr(d, c->v.data);
  for (i = 0; i < c->v.len; i++)
    if (a[i].site >= d->nsites || (i && a[i].site <= a[i - 1].site) ||
        a[i].hlc == 0 || a[i].hlc > c->hlc)
      return 1;
  return 0;
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
          c->v.type > SYNC_COUNTER)
        return SYNC_EINVAL;
      if (c->v.type == SYNC_COUNTER && sx_ctr_bad(d, c)) return SYNC_EINVAL;
      if (tb && c->col < tb->ncols && tb->cols[c->col].type == SYNC_COUNTER &&
          c->v.type == SYNC_NULL)
        return SYNC_ETYPE; /* a counter is never NULL */
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
SYNC_PRIVATE int sx_vv_lower_site(sync_txn *x, uint32_t idx, uint64_t hlc) {
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

/* The contributions of counter column c of chunk d (none for other
 * columns): n and the array. */
static const sx_ctr *sx_dcol_ctrs(const sync_delta *d, const sx_dcol *c,
                                  size_t *n) {
  *n = c && c->v.type == SYNC_COUNTER ? c->v.len : 0;
  return *n ? sx_dctr(d, c->v.data) : NULL;
}

/* Does stored counter cell col of o hold local site ls's contribution
 * at HLC hlc or later?  Read in place: judging allocates nothing. */
static int sx_ctr_held(const sx_row *o, unsigned col, uint32_t ls,
                       uint64_t hlc) {
  const sx_rcol *c = col < o->ncols ? &o->cols[col] : NULL;
  sx_ctrwalk it;
  if (!c || c->st == SX_NOSTAMP || c->v.type != SX_TAG_COUNTER ||
      ls == SX_NONE)
    return 0;
  sx_ctr_walk(&it, c->v.data, c->v.len);
  while (sx_ctr_step(&it))
    if (it.c.site == ls) return it.c.hlc >= hlc;
  return 0;
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
    if (lvv && j) {
      /* So is each add a counter carries. */
      size_t n, k;
      const sx_ctr *ct = sx_dcol_ctrs(d, &d->cols[dr->col0 + j - 1], &n);
      for (k = 0; k < n; k++)
        if (ct[k].site != sender && (a->smap[ct[k].site] == SX_NONE ||
                                     ct[k].hlc > lvv[a->smap[ct[k].site]]))
          return 0;
    }
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
    /* A counter's stamp is its newest add's: older adds may be news. */
    if (c->v.type == SYNC_COUNTER) return 1;
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
    if (lvv) {
      /* A counter's adds are changes of their sites, each one. */
      size_t n, k;
      const sx_ctr *ct = sx_dcol_ctrs(d, c, &n);
      for (k = 0; k < n; k++) {
        uint32_t cs = ct[k].site;
        if (cs == sender || (a->smap[cs] != SX_NONE &&
                             ct[k].hlc <= lvv[a->smap[cs]]))
          continue;
        if (found && o->cl == dr->cl &&
            sx_ctr_held(o, c->col, a->smap[cs], ct[k].hlc))
          continue;
        *reason = SYNC_REFUSE_RELAY;
        snprintf(text, SYNC_REFUSE_TEXT_MAX + 1,
                 "an add of another site to a counter, and this peer may "
                 "not relay");
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
      if (c->v.type == SYNC_COUNTER) {
        /* Shown as the sum of the adds the row carries. */
        size_t n;
        const sx_ctr *ct = sx_dcol_ctrs(d, c, &n);
        ws->vals[j] = sync_int(sx_ctr_total(ct, n));
      }
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
        ws->svals[i] = set ? sx_rcol_value(&o->cols[i], tb->cols[i].type)
                           : sync_null();
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

/* The apply, timed and counted for the stats (not dry runs); local-only
 * columns a sender should not have sent are left out first. */
static int sx_apply_timed(sync_txn *x, const sync_delta *d,
                          const sync_apply_opts *ao, sync_apply_report *rep,
                          int hold) {
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
  rc = sx_delta_apply_opts(x, strip ? strip : d, ao, rep, hold);
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

SYNC_API int sync_delta_apply_opts(sync_txn *x, const sync_delta *d,
                                   const sync_apply_opts *ao,
                                   sync_apply_report *rep) {
  return sx_apply_timed(x, d, ao, rep, 0);
}

SYNC_PRIVATE int sx_delta_apply_held(sync_txn *x, const sync_delta *d,
                                     const sync_apply_opts *ao,
                                     sync_apply_report *rep) {
  return sx_apply_timed(x, d, ao, rep, 1);
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

/* The sender's largest collected causal length in table tid (0: none). */
static uint64_t sx_delta_gccl(const sync_delta *d, unsigned tid) {
  unsigned i;
  for (i = 0; i < d->ngccl; i++)
    if (d->gccl[i].tid == tid) return d->gccl[i].cl;
  return 0;
}

/* After an initial-stream chunk: the chunk names every row the sender
 * held in the key range it covers (start exclusive, end inclusive).  A
 * live row of ours in that range that the chunk leaves out, whose insert
 * the sender's vector covers and whose causal length is below one the
 * sender collected in the table, is one the sender held, deleted and
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
      /* The sender deleted the row and collected the delete only if a
       * collection of the table went above its causal length.  Its
       * vector alone proves nothing: a sender restored from a backup
       * claims the writes it lost (its own entry is its clock). */
      if (sx_delta_gccl(d, tid) <= x->old.cl) continue;
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
    (*vals)[j] = sx_col_value(r, j, tb->cols[j].type);
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

/* Stamp i of row dr of d: 0 the row stamp, then its columns' (1 ..
 * ncols), as a delta site index and an HLC. */
static void sx_drow_stamp(const sync_delta *d, const sx_drow *dr, size_t i,
                          uint32_t *site, uint64_t *hlc) {
  *site = i ? d->cols[dr->col0 + i - 1].site : dr->clsite;
  *hlc = i ? d->cols[dr->col0 + i - 1].hlc : dr->clhlc;
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
    uint32_t site;
    uint64_t hlc, held = 0;
    sx_drow_stamp(d, dr, i, &site, &hlc);
    (void)sx_pair_hlc(g.p, g.n, d->sites[site], &held);
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

/* One apply of a chunk: what its stages share. */
typedef struct sx_run {
  sx_apply a;
  const sync_apply_opts *ao;
  int hold;       /* the session's apply (sx_delta_apply_held) */
  int checks;     /* rows are judged (rights, relay, clock, check) */
  int keyed;      /* an initial stream (rows in key order) */
  int scoped;     /* the sender has a scope: kept rows may have to exit */
  int contiguous; /* the chunk starts at the sender's cursor */
  sx_peer peer;
  uint64_t *lvv;  /* our vector */
  uint64_t *rvv;  /* the vector judged against (NULL: relay) */
  uint64_t ahead; /* the newest stamp taken (max_ahead_ms) */
  uint32_t sender; /* the sender's delta site index */
  sx_wscratch ws;
  sync_value *svals; /* scratch of sx_scope_of */
  int lost;          /* a stamp of our id our history never made */
  uint64_t lost_held; /* what the file holds of the id for sure */
  int reason;
  /* Rows stored with room (sx_apply_room), taken back before the apply
   * returns: table id (4 bytes), key length (2), key. */
  sx_buf roomed;
  size_t app_bytes; /* appended since the last row with room */
  char text[SYNC_REFUSE_TEXT_MAX + 1];
  /* Rows of an initial stream past the table's last key go on the end,
   * without a search: the table whose last key is known, and the key. */
  unsigned app_tid;
  int app_any;
  size_t app_len;
  unsigned char app_last[SYNC_MAX_KEY];
} sx_run;

/* May this chunk be applied here at all?  0, or an error with the
 * message set. */
static int sx_apply_admit(sync_txn *x, const sync_delta *d,
                          const sync_apply_opts *ao, int policy) {
  sync_env *env = x->env;
  int rc, base = policy & ~SYNC_APPLY_DRY_RUN;
  if (base < SYNC_APPLY_MERGE || base > SYNC_APPLY_APPEND) return SYNC_EINVAL;
  if (!memcmp(d->sender, x->self, SX_SITE_LEN)) return SYNC_EINVAL;
  if (!sx_compat_ok(env, d->schema_hash))
    return sx_fail(env, SYNC_ESCHEMA,
                   "the delta was cut under another schema (hash %016llx), "
                   "not known to be compatible with this one",
                   (unsigned long long)d->schema_hash);
  /* A chunk leaves out what its receiver holds: applied elsewhere it
   * would move a cursor past rows that replica never got. */
  if (memcmp(d->receiver, x->self, SX_SITE_LEN))
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
  return 0;
}

/* Map the delta's sites to ours (added as they come; a dry run maps
 * unknown ones past the end, which only comparisons by id use), and take
 * the sender's vector and ours. */
static int sx_apply_sites(sx_run *r) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  size_t i;
  int rc;
  r->a.smap = (uint32_t *)sx_malloc(&x->env->al, sizeof(uint32_t) * d->nsites);
  if (!r->a.smap) return SYNC_ENOMEM;
  for (i = 0; i < d->nsites; i++) {
    rc = sx_site_index(x, d->sites[i], !r->a.dry, &r->a.smap[i]);
    if (rc == SYNC_NOTFOUND && r->a.dry) {
      r->a.smap[i] = SX_NONE;
      rc = 0;
    }
    if (rc) return rc;
  }
  if ((rc = sx_sender_vv(x, d, &r->a.svv))) return rc;
  /* The sender's claim on our own id: a clock our history never stood
   * at is one of a history of our id that is not this file's. */
  for (i = 0; i < d->nvv; i++) {
    uint64_t held;
    if (r->a.smap[i] != 0 || !r->a.svv[i]) continue;
    if ((rc = sx_hist_foreign(x, r->a.svv[i], x->hlc_last, 1, &held)) < 0)
      return rc;
    if (rc) {
      r->lost = 1;
      r->lost_held = held;
    }
  }
  /* A renewal record of our own id: the fleet gave it up, so this file
   * is a restore of a replica that renewed after the backup, and it
   * claims writes of its id it lost.  Renew as for a write of our id we
   * never made, claiming none above the record. */
  for (i = 0; i < d->nrenew; i++)
    if (r->a.smap[d->renew[i].site] == 0 &&
        (!r->lost || d->renew[i].held < r->lost_held)) {
      r->lost = 1;
      r->lost_held = d->renew[i].held;
    }
  /* Our vector tells a row we never had from one we deleted and
   * collected (its insert is covered, yet no row or tombstone is left). */
  return sx_vv_load(x, &r->lvv);
}

/* refuse_whole: every row judged against the stored one before anything
 * is written; every refusal reported, then the chunk refused. */
static int sx_apply_judge_all(sx_run *r) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  sync_env *env = x->env;
  size_t i, nref = 0;
  char first[SYNC_REFUSE_TEXT_MAX + 1];
  int rc;
  for (i = 0; i < d->nrows; i++) {
    int found;
    if (d->rows[i].tid >= env->schema->ntables) continue; /* held */
    found = sx_stored_row(x, d, &d->rows[i]);
    if (found < 0) return found;
    rc = sx_judge(&r->a, r->ao, &d->rows[i], found, r->rvv, r->sender,
                  r->ahead, &r->ws, &r->reason, r->text);
    if (rc < 0) return rc;
    if (rc) {
      if (!nref++) memcpy(first, r->text, sizeof first);
      r->a.rep->refused++;
      if ((rc = sx_report_refusal(&r->a, r->ao, &d->rows[i], r->reason,
                                  r->text)))
        return rc;
    }
  }
  if (nref)
    return sx_fail(env, SYNC_EPERM,
                   "the chunk holds %zu rows the sender may not write "
                   "(the first: %s)", nref, first);
  return 0;
}

/* The checks of sync_apply_opts: what judging rows needs. */
static int sx_apply_checks(sx_run *r) {
  const sync_apply_opts *ao = r->ao;
  const sync_delta *d = r->a.d;
  sync_env *env = r->a.x->env;
  size_t i;
  int rc;
  for (i = 0; i < d->nsites; i++)
    if (!memcmp(d->sites[i], d->sender, SX_SITE_LEN)) r->sender = (uint32_t)i;
  r->rvv = ao->relay ? NULL : r->lvv; /* the relay check needs our vector */
  if (ao->max_ahead_ms) {
    uint64_t now = env->clock(env->clock_ctx);
    r->ahead = ((now + ao->max_ahead_ms) << 16) | 0xffff;
  }
  if (ao->check && (rc = sx_wscratch_make(&env->al, d, env->schema, &r->ws)))
    return rc;
  return ao->refuse_whole ? sx_apply_judge_all(r) : 0;
}

/* The clock follows everything in the delta before any local stamp (a
 * resolver's) is taken, so ours come after all of them; stamps of
 * refused rows must not move it. */
static void sx_apply_clock(sx_run *r) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  uint64_t maxhlc = 0;
  size_t i, j;
  for (i = 0; i < d->nrows; i++) {
    const sx_drow *dr = &d->rows[i];
    if (dr->tid >= x->env->schema->ntables) continue; /* not applied */
    if (r->checks &&
        !sx_row_ok(&r->a, r->ao, dr, r->rvv, r->sender, r->ahead))
      continue;
    if (dr->clhlc > maxhlc) maxhlc = dr->clhlc;
    for (j = 0; j < dr->ncols; j++)
      if (d->cols[dr->col0 + j].hlc > maxhlc)
        maxhlc = d->cols[dr->col0 + j].hlc;
  }
  if (maxhlc > x->hlc_seen) x->hlc_seen = maxhlc;
}

/* Find the stored row of dr with cursor cur: 1 found (decoded into
 * x->old), 0 not, or an error.  *append: the row goes on the table's
 * end (an initial stream past the last key), so no search was made. */
static int sx_apply_find(sx_run *r, const sx_drow *dr, sx_scur *cur,
                         int *append) {
  sync_txn *x = r->a.x;
  sync_env *env = x->env;
  const unsigned char *key = r->a.d->arena.p + dr->koff;
  sx_slice k, v;
  int rc;
  *append = 0;
  if (r->keyed && !r->a.dry) {
    if (dr->tid != r->app_tid) {
      r->app_tid = dr->tid;
      k.p = NULL;
      k.n = 0;
      rc = sx_cur_get(env->st, cur, SX_LAST, &k, &v);
      if (rc && rc != SYNC_NOTFOUND) return rc;
      r->app_len = rc ? 0 : k.n;
      if (!rc) memcpy(r->app_last, k.p, k.n);
      r->app_any = rc == 0;
    }
    *append = !r->app_any ||
              sx_keycmp(key, dr->klen, r->app_last, r->app_len) > 0;
  }
  if (*append) return 0;
  return sx_old_row(x, dr->tid, cur, key, dr->klen);
}

/* A row went on the table's end: it is the last key now. */
static void sx_apply_appended(sx_run *r, const sx_drow *dr) {
  memcpy(r->app_last, r->a.d->arena.p + dr->koff, dr->klen);
  r->app_len = dr->klen;
  r->app_any = 1;
}

/* Does dr carry a stamp of an id this file gave up, within what the file
 * claims of it, that the file's history never made (site.c, "Former
 * ids")?  Then the claim is one the file it was copied from made of
 * writes it had lost, and the row is not one we deleted.  1, 0, or an
 * error. */
static int sx_apply_former_lacks(sx_run *r, const sx_drow *dr) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  sx_buf b;
  size_t i;
  int rc;
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_former_load(x, &b)) || !b.len) goto done;
  for (i = 0; i <= dr->ncols && !rc; i++) {
    uint32_t site;
    uint64_t hlc, bound, held;
    sx_drow_stamp(d, dr, i, &site, &hlc);
    if (sx_pair_hlc(b.p, b.len, d->sites[site], &bound) && hlc <= bound)
      rc = sx_hist_foreign(x, hlc, bound, 0, &held);
  }
done:
  sx_buf_free(&b);
  return rc;
}

/* Has this replica deleted dr's row and collected the tombstone?  1, 0,
 * or an error. */
static int sx_apply_was_collected(sx_run *r, const sx_drow *dr) {
  sync_txn *x = r->a.x;
  uint32_t li = r->a.smap[dr->clsite];
  int rc;
  if (!(dr->cl & 1) || li == SX_NONE || li >= x->nsites ||
      dr->clhlc > r->lvv[li])
    return 0;
  rc = sx_gc_covers(x, r->a.d, dr);
  if (rc > 0) rc = sx_collected_above(x, dr->tid, dr->cl);
  if (rc > 0 && (rc = sx_apply_former_lacks(r, dr)) >= 0) rc = !rc;
  return rc;
}

/* Does dr carry a stamp of our own site id that this file's history
 * never made (sx_hist_foreign)?  Then the file was restored from a backup
 * or copied, and the write is one the fleet holds and the file lost: the
 * row is merged as any other (never taken for one we deleted and
 * collected, though our vector and gcvv cover it: our own entry is the
 * clock, past the lost writes), and the apply takes a new site id at
 * its end.  Stamps the stored row holds (found) are not looked up.  1
 * (r->lost set), 0, or an error. */
static int sx_apply_foreign(sx_run *r, const sx_drow *dr, int found) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  size_t i;
  int any = 0;
  for (i = 0; i <= dr->ncols; i++) {
    uint32_t site;
    uint64_t hlc, held;
    unsigned j;
    int rc, have = 0;
    sx_drow_stamp(d, dr, i, &site, &hlc);
    if (r->a.smap[site] != 0) continue;
    for (j = 0; found && j < x->old.nstamps && !have; j++)
      have = x->old.stamps[j].site == 0 && x->old.stamps[j].hlc == hlc;
    if (have) continue;
    if ((rc = sx_hist_foreign(x, hlc, x->hlc_last, 0, &held)) < 0) return rc;
    if (!rc) continue;
    if (!r->lost || held < r->lost_held) r->lost_held = held;
    r->lost = any = 1;
  }
  return any;
}

/* We held this row and collected its tombstone: the sender kept an old
 * copy.  Bringing it back would invent data; leaving it would leave the
 * sender with it for good.  A delete of ours (causal length + 1) says
 * again what we knew, and goes back to the sender with everything else
 * (a repair frame's answer). */
static int sx_apply_redelete(sx_run *r, const sx_drow *dr, sx_scur *cur,
                             int append) {
  sync_txn *x = r->a.x;
  int rc;
  if (r->a.d->repair)
    r->a.rep->deleted++;
  else
    r->a.rep->unchanged++;
  if (r->a.dry) return 0;
  sx_stamp_txn(x);
  x->nw.nstamps = 0;
  x->nw.cl = dr->cl + 1;
  x->nw.cl_stamp = sx_row_stamp(&x->nw, sx_mkstamp_local(x));
  x->nw.ncols = 0;
  if ((rc = sx_store_row(x, dr->tid, cur, r->a.d->arena.p + dr->koff,
                         dr->klen, 0, append)))
    return rc;
  if (append) sx_apply_appended(r, dr);
  return 0;
}

/* Ours stays; if it is out of the sender's scope, the sender's copy must
 * exit: log the row again so its next chunk says so. */
static int sx_apply_kept(sx_run *r, const sx_drow *dr, sx_scur *cur) {
  sync_txn *x = r->a.x;
  const unsigned char *key = r->a.d->arena.p + dr->koff;
  int rc, in = 1;
  if (sx_bit(r->ao->scope_tables, dr->tid) &&
      (rc = sx_scope_of(x, r->ao, r->a.d->sender, dr->tid, key, dr->klen,
                        &x->old, &r->svals, &in)))
    return rc;
  return in ? 0 : sx_relog(x, dr->tid, cur, key, dr->klen);
}

/* Store a new row on the table's end.  LMDB fills such pages whole, so
 * the first later change that makes one of their rows larger (an update
 * adds a stamp) would split the page in two half-empty ones.  Every half
 * page of appended rows, one row goes in with 1/32 of a page of room
 * after it, given back to the page when the apply ends (sx_apply_unroom):
 * about 1/16 of each page stays free for the rows to grow into. */
static int sx_apply_append(sx_run *r, const sx_drow *dr, sx_scur *cur) {
  sync_txn *x = r->a.x;
  const unsigned char *key = r->a.d->arena.p + dr->koff;
  size_t psize = sx_store_psize(x->env->st), at = r->roomed.len;
  int rc;
  if (r->app_bytes < psize / 2)
    rc = sx_store_row(x, dr->tid, cur, key, dr->klen, 0, 1);
  else if (!(rc = sx_buf_reserve(&r->roomed, at + 6 + dr->klen)) &&
           !(rc = sx_store_row_room(x, dr->tid, cur, key, dr->klen,
                                    psize / 32))) {
    sx_put_le32(r->roomed.p + at, dr->tid);
    r->roomed.p[at + 4] = (unsigned char)(dr->klen >> 8);
    r->roomed.p[at + 5] = (unsigned char)dr->klen;
    memcpy(r->roomed.p + at + 6, key, dr->klen);
    r->roomed.len = at + 6 + dr->klen;
    r->app_bytes = 0;
  }
  if (rc) return rc;
  /* An LMDB leaf entry: a node header of 8 bytes and a 2-byte pointer. */
  r->app_bytes += dr->klen + sx_row_size(&x->nw) + 10;
  return 0;
}

/* Take back the room of the rows sx_apply_append stored with some. */
static int sx_apply_unroom(sx_run *r) {
  sync_txn *x = r->a.x;
  size_t at = 0;
  int rc = 0;
  while (at < r->roomed.len && !rc) {
    const unsigned char *p = r->roomed.p + at;
    size_t klen = ((size_t)p[4] << 8) | p[5];
    rc = sx_unroom_row(x, (unsigned)sx_get_le32(p), p + 6, klen);
    at += 6 + klen;
  }
  r->roomed.len = 0;
  return rc;
}

/* Merge one row of the chunk: judge it, merge it, store it, count it. */
static int sx_apply_row(sx_run *r, const sx_drow *dr) {
  sync_txn *x = r->a.x;
  sync_apply_report *rep = r->a.rep;
  sx_scur *cur;
  int rc, found, cls, was_live, now_live, append;
  rep->rows++;
  if (dr->tid >= x->env->schema->ntables) {
    /* A table of a newer schema: nowhere to keep it yet.  The cursor
     * stays before the chunk, so that the run brings it again once an
     * upgrade added the table (docs/PROTOCOL.md, "Schemas"). */
    rep->unknown++;
    return 0;
  }
  if ((rc = sx_table_cursor(x, dr->tid, &cur))) return rc;
  if ((found = sx_apply_find(r, dr, cur, &append)) < 0) return found;
  if (r->checks && !r->ao->refuse_whole) { /* whole: judged above */
    rc = sx_judge(&r->a, r->ao, dr, found, r->rvv, r->sender, r->ahead,
                  &r->ws, &r->reason, r->text);
    if (rc < 0) return rc;
    if (rc) {
      rep->refused++; /* never applied; the run still moves past it */
      return sx_report_refusal(&r->a, r->ao, dr, r->reason, r->text);
    }
  }
  if ((rc = sx_apply_foreign(r, dr, found)) < 0) return rc;
  if (!rc && !found && (rc = sx_apply_was_collected(r, dr)) != 0)
    return rc < 0 ? rc : sx_apply_redelete(r, dr, cur, append);
  x->cpend.len = 0;
  if ((rc = sx_merge_row(&r->a, dr, found, &cls)) < 0) return rc;
  was_live = found && (x->old.cl & 1);
  now_live = (x->nw.cl & 1) != 0;
  if (rc == 0) {
    rep->unchanged++;
    if (r->scoped && !r->a.dry && (rc = sx_apply_kept(r, dr, cur))) return rc;
  } else {
    if (now_live && !was_live) rep->inserted++;
    else if (!now_live && was_live) rep->deleted++;
    else if (now_live) rep->updated++;
    else rep->unchanged++;
    if (!r->a.dry && (rc = append ? sx_apply_append(r, dr, cur)
                                  : sx_store_row(x, dr->tid, cur,
                                                 r->a.d->arena.p + dr->koff,
                                                 dr->klen, found, 0)))
      return rc;
    if (append) sx_apply_appended(r, dr);
  }
  if (!r->a.dry && (rc = sx_conflicts_flush(x))) return rc;
  x->cpend.len = 0;
  return 0;
}

/* The sender's collection bounds: its largest collected causal length
 * per table and, after a complete stream, its vector as the bound of the
 * deletes we now claim without tombstones. */
static int sx_apply_gccl(sx_run *r) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  sync_env *env = x->env;
  uint64_t *maxcl, *from;
  size_t i;
  int rc;
  maxcl = (uint64_t *)sx_malloc(&env->al,
                                sizeof(uint64_t) * (env->schema->ntables + 1));
  if (!maxcl) return SYNC_ENOMEM;
  memset(maxcl, 0, sizeof(uint64_t) * (env->schema->ntables + 1));
  for (i = 0; i < d->ngccl; i++)
    if (d->gccl[i].tid < env->schema->ntables)
      maxcl[d->gccl[i].tid] = d->gccl[i].cl;
  rc = sx_gccl_raise(x, maxcl);
  sx_free(&env->al, maxcl);
  if (rc || !d->complete) return rc;
  /* We hold what the collector held (its horizon removed the rest): its
   * vector bounds the deletes we now claim without tombstones, as our own
   * collection's would. */
  from = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (x->nsites + 1));
  if (!from) return SYNC_ENOMEM;
  memset(from, 0, sizeof(uint64_t) * (x->nsites + 1));
  for (i = 0; i < d->nvv; i++)
    if (r->a.smap[i] != SX_NONE && r->a.smap[i] < x->nsites)
      from[r->a.smap[i]] = r->a.svv[i];
  rc = sx_gcvv_raise(x, from);
  sx_free(&env->al, from);
  return rc;
}

/* Raise our vector entry of local site li (not our own) to h. */
static int sx_vv_raise_site(sync_txn *x, uint32_t li, uint64_t h) {
  sync_env *env = x->env;
  unsigned char kk[4], vb[8];
  sx_slice old;
  int rc;
  if (!h || li == 0) return 0;
  sx_put_be32(kk, li);
  rc = sx_get(env->st, x->t, env->vv, kk, 4, &old);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if (rc == 0 && old.n == 8 && sx_get_le64(old.p) >= h) return 0;
  sx_put_le64(vb, h);
  if ((rc = sx_put(env->st, x->t, env->vv, kk, 4, vb, 8, 0))) x->failed = 1;
  return rc;
}

/* The run is complete: we hold all the sender held.  Raise our vector
 * to the sender's, and take its collection's bounds. */
static int sx_apply_raise(sx_run *r) {
  const sync_delta *d = r->a.d;
  size_t i;
  int rc;
  for (i = 0; i < d->nvv; i++)
    if ((rc = sx_vv_raise_site(r->a.x, r->a.smap[i], r->a.svv[i]))) return rc;
  return d->ngccl ? sx_apply_gccl(r) : 0;
}

#ifndef SYNC_OMIT_REPAIR /* only a repair's end takes a vector */
SYNC_PRIVATE int sx_vv_take(sync_txn *x, const unsigned char *pv, size_t n,
                            uint64_t *held) {
  sync_env *env = x->env;
  uint64_t *from = NULL, *h;
  uint32_t *li;
  size_t i;
  int rc = 0;
  *held = UINT64_MAX;
  if (x->rdonly) return SYNC_EREADONLY;
  /* Our own entry is our clock: a peer's above what our history made
   * shows this file is not the one the fleet knows (a restore). */
  for (i = 0; i < n; i++)
    if (!memcmp(pv + 24 * i, x->self, SX_SITE_LEN) &&
        (rc = sx_claim_own(x, sx_get_le64(pv + 24 * i + SX_SITE_LEN), held)))
      return rc;
  li = (uint32_t *)sx_malloc(&env->al, sizeof(uint32_t) * (n ? n : 1));
  h = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (n ? n : 1));
  if (!li || !h) rc = SYNC_ENOMEM;
  for (i = 0; !rc && i < n; i++) {
    const unsigned char *e = pv + 24 * i;
    li[i] = 0;
    h[i] = sx_get_le64(e + SX_SITE_LEN);
    if (!memcmp(e, x->self, SX_SITE_LEN)) continue;
    if (!(rc = sx_renew_cap(x, e, &h[i])) && h[i])
      rc = sx_site_index(x, e, 1, &li[i]);
  }
  if (!rc) {
    from = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (x->nsites + 1));
    if (!from) rc = SYNC_ENOMEM;
  }
  if (!rc) {
    memset(from, 0, sizeof(uint64_t) * (x->nsites + 1));
    for (i = 0; !rc && i < n; i++) {
      if (!li[i] || li[i] >= x->nsites) continue;
      if (h[i] > from[li[i]]) from[li[i]] = h[i];
      rc = sx_vv_raise_site(x, li[i], h[i]);
    }
  }
  /* As after a complete stream: the peer's vector bounds the deletes we
   * now claim without tombstones. */
  if (!rc) rc = sx_gcvv_raise(x, from);
  sx_free(&env->al, from);
  sx_free(&env->al, h);
  sx_free(&env->al, li);
  if (rc) x->failed = 1;
  return rc;
}
#endif

/* Move the sender's cursor past the chunk, and with the last chunk of a
 * clean run raise the vector. */
static int sx_apply_advance(sx_run *r) {
  const sync_delta *d = r->a.d;
  sx_peer *peer = &r->peer;
  int rc;
  /* A run that starts from nothing starts clean; one that left rows out
   * stays unable to raise the vector until it starts again. */
  if ((d->start.mode == SX_MODE_LOG && !d->start.version && !d->start.seq) ||
      (d->scope.flags & SX_SCOPE_RESTART))
    peer->tainted = 0;
  if (d->partial || r->a.rep->refused || d->nx) peer->tainted = 1;
  peer->cur = d->end;
  sx_mark_move(&peer->mark, &peer->lineage, &d->mark, &d->lineage);
  peer->scope = d->scope; /* served with it (none: the sender tracks none) */
  if (d->last) peer->stale = 0; /* a run from the peer completed */
  if ((rc = sx_peer_put(r->a.x, d->sender, peer))) return rc;
  r->a.rep->cursor_moved = 1;
  if (d->last && !peer->tainted) {
    if ((rc = sx_apply_raise(r))) return rc;
    r->a.rep->vector_raised = 1;
  }
  r->a.x->dirty = 1; /* the clock may have moved with what we saw */
  return 0;
}

/* After the rows: exits, the stream's horizon, the cursor and vector,
 * renewal records. */
static int sx_apply_finish(sx_run *r) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  int rc;
  /* Rows that left this replica's scope. */
  if (d->nx && (rc = sx_apply_exits(&r->a))) return rc;
  /* What an initial stream leaves out of the range it covers, the sender
   * no longer holds. */
  if (r->keyed && d->complete && !d->partial && !d->nx &&
      (rc = sx_apply_horizon(&r->a, r->ao)))
    return rc;
  if (!r->a.dry && r->contiguous && r->hold && r->a.rep->refused) {
    /* The session moves the cursor once the writer has taken back what
     * was refused (sx_peer_advance): a cut before that sends the chunk
     * again, and the refusals with it. */
    x->dirty = 1;
  } else if (!r->a.dry && r->contiguous && !r->a.rep->unknown) {
    if ((rc = sx_apply_advance(r))) return rc;
  }
  /* Renewal records: taken whatever the cursor did (they only lower). */
  if (!r->a.dry && d->nrenew) return sx_apply_renewals(x, d);
  return 0;
}

/* Set up the run: the sender's cursor, the site map and vectors, the
 * checks.  1 when the chunk is already held (nothing to do), 0, or an
 * error. */
static int sx_apply_setup(sx_run *r) {
  sync_txn *x = r->a.x;
  const sync_delta *d = r->a.d;
  const sync_apply_opts *ao = r->ao;
  int rc = sx_peer_get(x, d->sender, &r->peer);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  r->contiguous = !d->repair && sx_cursor_eq(&r->peer.cur, &d->start);
  if (!r->contiguous && !d->repair &&
      sx_cursor_covers(&r->peer.cur, &d->end)) {
    /* Every row of this chunk sits at or before our cursor: the run
     * already brought it (or a later state of its rows).  Applying it
     * again would change nothing but re-log its conflicts. */
    r->a.rep->rows = r->a.rep->unchanged = d->nrows;
    return 1;
  }
  r->keyed = !d->repair && (d->start.mode == SX_MODE_INITIAL ||
             d->end.mode == SX_MODE_INITIAL ||
             (d->start.mode == SX_MODE_LOG && d->start.version == 0 &&
              d->start.seq == 0));
  if ((rc = sx_apply_sites(r))) return rc;
  /* Fold records before the rows: a cell they carry may hold an heir's
   * contribution that holds a retired site's we keep (fold.c). */
  if (d->nfold && !r->a.dry &&
      (rc = sx_fold_take(x, d, !ao || ao->relay)))
    return rc;
  r->checks = ao && (ao->writable || !ao->relay || ao->max_ahead_ms ||
                     ao->check);
  return r->checks ? sx_apply_checks(r) : 0;
}

static int sx_delta_apply_opts(sync_txn *x, const sync_delta *d,
                               const sync_apply_opts *ao,
                               sync_apply_report *rep, int hold) {
  sync_apply_report dummy;
  sx_run r;
  size_t i;
  int rc, policy = ao ? ao->policy : SYNC_APPLY_MERGE;
  if (!rep) rep = &dummy;
  memset(rep, 0, sizeof *rep);
  if (!x || !d) return SYNC_EINVAL;
  if ((rc = sx_apply_admit(x, d, ao, policy))) return rc;
  if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
  memset(&r, 0, offsetof(sx_run, text));
  r.a.x = x;
  r.a.d = d;
  r.a.policy = policy & ~SYNC_APPLY_DRY_RUN;
  r.a.dry = (policy & SYNC_APPLY_DRY_RUN) != 0;
  r.a.rep = rep;
  r.ao = ao;
  r.hold = hold;
  r.scoped = ao && ao->scope_filter && ao->scope_tables;
  r.ahead = UINT64_MAX;
  r.sender = SX_NONE;
  r.app_tid = SX_NONE;
  r.app_any = 0;
  r.app_len = 0;
  sx_buf_init(&r.roomed, &x->env->al);
  rc = sx_apply_setup(&r);
  if (rc == 1) rc = 0;
  else if (!rc) {
    sx_apply_clock(&r);
    for (i = 0; i < d->nrows && !rc; i++) rc = sx_apply_row(&r, &d->rows[i]);
    if (!rc) rc = sx_apply_finish(&r);
    /* A write of our id this file never made: it was restored or
     * copied.  Give the id up, keeping its claims up to what the file
     * holds for sure; the next run of every peer brings back the rest. */
    if (!rc && r.lost && !r.a.dry &&
        !(rc = sx_site_renew_held(x, r.lost_held)))
      rep->renewed = 1;
  }
  /* Whatever happened, no row keeps its room past this call (a failed
   * transaction commits nothing). */
  if (r.roomed.len && !x->failed) {
    int rc2 = sx_apply_unroom(&r);
    if (!rc) rc = rc2;
  }
  sx_buf_free(&r.roomed);
  sx_free(&x->env->al, r.a.svv);
  sx_free(&x->env->al, r.a.smap);
  sx_free(&x->env->al, r.lvv);
  sx_free(&x->env->al, r.svals);
  sx_wscratch_free(&x->env->al, &r.ws);
  return rc;
}
