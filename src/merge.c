/*
 * merge.c - the merge of one row: compare stamps column by column, choose,
 * ask the resolver, record the conflict.
 */
#include "merge.h"

#include <stdlib.h>


static const uint8_t *sx_lsite(sync_txn *x, uint32_t idx) {
  return idx == 0 ? x->self : x->sites[idx];
}

SYNC_PRIVATE sync_value sx_dval(const sync_delta *d, const sx_dcol *c) {
  sync_value v = c->v;
  if (v.type == SYNC_TEXT || v.type == SYNC_BLOB)
    v.data = d->arena.p + (uintptr_t)c->v.data;
  return v;
}

SYNC_PRIVATE int sx_cmp_lr(sync_txn *x, const sx_row *r, unsigned i,
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

SYNC_PRIVATE sx_stamp sx_mkstamp_local(sync_txn *x) {
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

/* The sender's write r of its column, with its stamps, into x->nw. */
static void sx_merge_take(sx_apply *a, const sx_dcol *r,
                          const sync_value *v) {
  sx_row *w = &a->x->nw;
  sx_rcol *c = &w->cols[r->col];
  c->st = sx_row_stamp(w, sx_rstamp(a, r->hlc, r->site));
  c->base =
      r->bhlc ? sx_row_stamp(w, sx_rstamp(a, r->bhlc, r->bsite)) : SX_NOSTAMP;
  c->v = *v;
}

static int sx_ctr_sitecmp_m(const void *p, const void *q) {
  const sx_ctr *a = (const sx_ctr *)p, *b = (const sx_ctr *)q;
  return a->site < b->site ? -1 : a->site > b->site;
}

/* Bytes of x->cpay that merging dr's counter cells into x->old's may
 * take, each cell's payload after the one before (sx_merge_ctr): room
 * made before the first, so that no payload moves while x->nw points at
 * it. */
static int sx_ctr_room(sync_txn *x, const sync_delta *d, const sx_drow *dr) {
  const sx_dcol *rc0 = d->cols ? d->cols + dr->col0 : NULL;
  size_t i, need = 0;
  x->cpay.len = 0;
  for (i = 0; i < dr->ncols; i++) {
    const sx_dcol *r = &rc0[i];
    if (r->v.type != SX_TAG_COUNTER) continue;
    need += SX_VARINT_MAX + r->v.len * 4 * SX_VARINT_MAX;
    if (r->col < x->old.ncols && x->old.cols[r->col].st != SX_NOSTAMP &&
        x->old.cols[r->col].v.type == SX_TAG_COUNTER)
      need += x->old.cols[r->col].v.len;
  }
  return need ? sx_buf_reserve(&x->cpay, need) : 0;
}

/* Counter cell r->col of x->nw (as copied from x->old, or unset: keep
 * set) merged with the sender's contributions r: per site the larger P,
 * the larger N and the later HLC, so that a contribution delivered twice
 * or out of order counts once; the column's stamp becomes the later of
 * the two (each side's is its newest contribution's).  Without keep the
 * cell is the sender's alone (its causal length won).  *changed is set
 * when the cell changes. */
static int sx_merge_ctr(sx_apply *a, const sx_drow *dr, const sx_dcol *r,
                        int keep, int *changed) {
  sync_txn *x = a->x;
  sx_row *w = &x->nw;
  sx_rcol *c = &w->cols[r->col];
  const sx_ctr *rr = sx_dctr(a->d, r->v.data);
  size_t nl = 0, n, i, k;
  sx_ctr *t;
  sync_value nv;
  int rc, have = keep && c->st != SX_NOSTAMP && c->v.type == SX_TAG_COUNTER;
  const sx_schema *sc = x->env->schema;
  /* A cell of a column beyond our schema: a file that holds one must
   * say so to code without counters. */
  if (!a->dry && (dr->tid >= sc->ntables ||
                  r->col >= sc->tables[dr->tid].ncols) &&
      (rc = sx_format_counters(x)))
    return rc;
  if (have)
    (void)sx_ctr_check((const unsigned char *)c->v.data,
                       (const unsigned char *)c->v.data + c->v.len, &nl);
  if ((rc = sx_buf_reserve(&x->ctrs, (nl + r->v.len) * sizeof(sx_ctr))))
    return rc;
  t = (sx_ctr *)(void *)x->ctrs.p;
  if (have) sx_ctr_read(&c->v, t);
  for (i = 0; i < r->v.len; i++) {
    t[nl + i] = rr[i];
    t[nl + i].site = a->smap[rr[i].site];
  }
  n = nl + r->v.len;
  qsort(t, n, sizeof *t, sx_ctr_sitecmp_m);
  for (i = k = 0; i < n; i++) {
    if (k && t[k - 1].site == t[i].site) {
      if (t[i].p > t[k - 1].p) t[k - 1].p = t[i].p;
      if (t[i].n > t[k - 1].n) t[k - 1].n = t[i].n;
      if (t[i].hlc > t[k - 1].hlc) t[k - 1].hlc = t[i].hlc;
      continue;
    }
    t[k++] = t[i];
  }
  /* A retired site's contribution goes where its heir's holds it. */
  if ((rc = sx_fold_cell(x, t, &k, &a->rep->retired_adds))) return rc;
  if (SX_NEVER(x->cpay.len + sx_ctr_size(t, k) > x->cpay.cap))
    return SYNC_ECORRUPT;
  nv = sync_null();
  nv.type = SX_TAG_COUNTER;
  nv.data = x->cpay.p + x->cpay.len;
  nv.len = sx_ctr_put(x->cpay.p + x->cpay.len, t, k);
  x->cpay.len += nv.len;
  if (have && sx_value_eq(&nv, &c->v)) return 0;
  /* c->st, when kept, is the stored row's: a local site index. */
  if (!have || sx_stampcmp(w->stamps[c->st].hlc,
                           sx_lsite(x, w->stamps[c->st].site), r->hlc,
                           a->d->sites[r->site]) < 0)
    c->st = sx_row_stamp(w, sx_rstamp(a, r->hlc, r->site));
  c->base = SX_NOSTAMP;
  c->v = nv;
  *changed = 1;
  return 0;
}

/* w's columns sized for dr's and emptied. */
static void sx_merge_clear(sx_row *w, const sx_drow *dr, const sx_dcol *rc0) {
  size_t i;
  unsigned j;
  w->ncols = 0;
  for (i = 0; i < dr->ncols; i++)
    if (rc0[i].col + 1 > w->ncols) w->ncols = rc0[i].col + 1;
  for (j = 0; j < w->ncols; j++) {
    w->cols[j].st = w->cols[j].base = SX_NOSTAMP;
    w->cols[j].v = sync_null();
  }
}

/* A conflict of kind on dr's row (col SYNC_ROW: the whole row; a column
 * conflict sets col after), stamps and sites set by the caller. */
static void sx_merge_rowcfl(sx_cfl *c, const sx_apply *a, const sx_drow *dr,
                            int kind) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->tid = dr->tid;
  c->col = SYNC_ROW;
  c->key = a->d->arena.p + dr->koff;
  c->klen = dr->klen;
}

/* Record conflict c and count it. */
static int sx_merge_log(sx_apply *a, const sx_cfl *c) {
  int err = sx_conflict_record(a->x, c);
  if (!err) a->rep->conflicts++;
  return err;
}

/* The sender deleted the row we hold live: was ours changed after the
 * delete?  Then it is a conflict, and the resolver may keep our row (1:
 * x->nw holds it, re-inserted above the delete with a new stamp). */
static int sx_merge_deleted_source(sx_apply *a, const sx_drow *dr, int *cls) {
  sync_txn *x = a->x;
  sx_row *o = &x->old, *w = &x->nw;
  unsigned j;
  int err;
  for (j = 0; j < o->ncols; j++) {
    sx_cfl c;
    sync_value none;
    /* An add to a counter is never a conflict (the delete resets it). */
    if (o->cols[j].st == SX_NOSTAMP || o->cols[j].v.type == SX_TAG_COUNTER ||
        o->stamps[o->cols[j].st].hlc <= dr->clhlc)
      continue;
    sx_merge_rowcfl(&c, a, dr, SYNC_DELETED_SOURCE);
    c.lhlc = o->stamps[o->cols[j].st].hlc;
    c.lsite = sx_lsite(x, o->stamps[o->cols[j].st].site);
    c.rhlc = dr->clhlc;
    c.rsite = a->d->sites[dr->clsite];
    c.remote_won = 1;
    *cls = SYNC_DELETED_SOURCE;
    if (!(dr->cl & 1) && sx_ask(a, &c, &none) == SYNC_RESOLVE_LOCAL) {
      /* Keep our row: re-insert it above the sender's delete, with a new
       * stamp, so that the choice wins everywhere. */
      c.remote_won = 0;
      if ((err = sx_merge_log(a, &c))) return err;
      sx_stamp_txn(x);
      w->cl = dr->cl + 1;
      w->cl_stamp = sx_row_stamp(w, sx_mkstamp_local(x));
      w->ncols = o->ncols;
      for (j = 0; j < o->ncols; j++) {
        w->cols[j].st = w->cols[j].base = SX_NOSTAMP;
        w->cols[j].v = sync_null();
        if (o->cols[j].st == SX_NOSTAMP) continue;
        if (o->cols[j].v.type == SX_TAG_COUNTER) {
          /* The count the row had comes back with it, as it was. */
          w->cols[j].st = sx_row_stamp(w, o->stamps[o->cols[j].st]);
          w->cols[j].v = o->cols[j].v;
          continue;
        }
        sx_force(x, j, &o->cols[j].v);
      }
      return 1;
    }
    return sx_merge_log(a, &c);
  }
  return 0;
}

/* The sender's causal length wins: its columns replace ours.  Returns 1
 * (the row changes) or an error. */
static int sx_merge_theirs(sx_apply *a, const sx_drow *dr, int found,
                           int *cls) {
  const sync_delta *d = a->d;
  sx_row *o = &a->x->old, *w = &a->x->nw;
  const sx_dcol *rc0 = d->cols ? d->cols + dr->col0 : NULL;
  size_t i;
  int err;
  if (found && (o->cl & 1)) {
    if ((err = sx_merge_deleted_source(a, dr, cls))) return err;
    if (*cls == SYNC_NO_CONFLICT) *cls = SYNC_SOURCE_MODIFIED;
  }
  w->cl = dr->cl;
  w->cl_stamp = sx_row_stamp(w, sx_rstamp(a, dr->clhlc, dr->clsite));
  w->ncols = 0;
  if (!(dr->cl & 1)) return 1;
  sx_merge_clear(w, dr, rc0);
  if ((err = sx_ctr_room(a->x, d, dr))) return err;
  for (i = 0; i < dr->ncols; i++) {
    sync_value v = sx_dval(d, &rc0[i]);
    int ch;
    if (v.type == SX_TAG_COUNTER) {
      if ((err = sx_merge_ctr(a, dr, &rc0[i], 0, &ch))) return err;
      continue;
    }
    sx_merge_take(a, &rc0[i], &v);
  }
  return 1;
}

/* Ours wins by causal length (or both are deleted at the same one).  An
 * update we never saw, to a row we deleted, is a conflict, and the
 * resolver may bring the row back (1), else 0. */
static int sx_merge_ours(sx_apply *a, const sx_drow *dr, int *cls) {
  sync_txn *x = a->x;
  const sync_delta *d = a->d;
  sx_row *o = &x->old, *w = &x->nw;
  const sx_dcol *rc0 = d->cols ? d->cols + dr->col0 : NULL;
  uint64_t del;
  size_t i, q;
  int err;
  if (o->cl & 1) {
    if (*cls == SYNC_NO_CONFLICT) *cls = SYNC_TARGET_MODIFIED;
    return 0;
  }
  del = o->stamps[o->cl_stamp].hlc;
  for (i = 0; i < dr->ncols; i++) {
    sx_cfl c;
    sync_value rv, scratch;
    if (rc0[i].hlc <= del || rc0[i].v.type == SX_TAG_COUNTER) continue;
    rv = sx_dval(d, &rc0[i]);
    sx_merge_rowcfl(&c, a, dr, SYNC_DELETED_TARGET);
    c.lhlc = del;
    c.lsite = sx_lsite(x, o->stamps[o->cl_stamp].site);
    c.rhlc = rc0[i].hlc;
    c.rsite = d->sites[rc0[i].site];
    c.rv = &rv;
    *cls = SYNC_DELETED_TARGET;
    if (sx_ask(a, &c, &scratch) != SYNC_RESOLVE_REMOTE)
      return sx_merge_log(a, &c);
    /* Bring the row back with the sender's columns, above our delete,
     * with a new stamp. */
    c.remote_won = 1;
    if ((err = sx_merge_log(a, &c))) return err;
    sx_stamp_txn(x);
    w->cl = o->cl + 1;
    w->cl_stamp = sx_row_stamp(w, sx_mkstamp_local(x));
    sx_merge_clear(w, dr, rc0);
    if ((err = sx_ctr_room(x, d, dr))) return err;
    for (q = 0; q < dr->ncols; q++) {
      sync_value qv = sx_dval(d, &rc0[q]);
      int ch;
      if (qv.type == SX_TAG_COUNTER) {
        if ((err = sx_merge_ctr(a, dr, &rc0[q], 0, &ch))) return err;
        continue;
      }
      sx_force(x, rc0[q].col, &qv);
    }
    return 1;
  }
  if (*cls == SYNC_NO_CONFLICT) *cls = SYNC_TARGET_MODIFIED;
  return 0;
}

/* Both sides wrote column r->col and neither write knew of the other: a
 * conflict.  The later stamp wins (under NEWER the sender's: the row as a
 * whole was found newer), then the resolver may choose. */
static int sx_merge_both(sx_apply *a, const sx_drow *dr, const sx_dcol *r,
                         const sync_value *rv, int cmp, int *changed) {
  sync_txn *x = a->x;
  const sx_row *o = &x->old;
  const sx_rcol *l = &o->cols[r->col];
  sync_value lv = l->v;
  sx_cfl c;
  int err;
  sx_merge_rowcfl(&c, a, dr, SYNC_BOTH_MODIFIED);
  c.col = r->col;
  c.lhlc = o->stamps[l->st].hlc;
  c.lsite = sx_lsite(x, o->stamps[l->st].site);
  c.rhlc = r->hlc;
  c.rsite = a->d->sites[r->site];
  c.lv = &lv;
  c.rv = rv;
  c.remote_won = cmp < 0 || a->policy == SYNC_APPLY_NEWER;
  if (c.remote_won) {
    sx_merge_take(a, r, rv);
    *changed = 1;
  }
  /* The record says what was applied, so it follows the resolver; under
   * NEWER the policy has decided and no resolver is asked. */
  if (a->policy != SYNC_APPLY_NEWER &&
      (err = sx_call_resolver(a, &c, changed)))
    return err;
  return sx_merge_log(a, &c);
}

/* One column of the sender's row at the same causal length, both live:
 * *take says whether the sender's write replaces ours; *ccls its class.
 * 1 when the column is settled already (the same write, or a conflict
 * handled by sx_merge_both), 0, or an error. */
static int sx_merge_col(sx_apply *a, const sx_drow *dr, const sx_dcol *r,
                        const sync_value *rv, int *take, int *ccls,
                        int *changed) {
  sync_txn *x = a->x;
  const sx_row *o = &x->old;
  const sx_rcol *l = r->col < o->ncols ? &o->cols[r->col] : NULL;
  const uint8_t *lsite;
  int cmp, err;
  *take = 1;
  *ccls = SYNC_SOURCE_MODIFIED;
  if (!l || l->st == SX_NOSTAMP) return 0;
  cmp = sx_cmp_lr(x, o, l->st, a->d, r->hlc, r->site);
  lsite = sx_lsite(x, o->stamps[l->st].site);
  if (cmp == 0) {
    *ccls = SYNC_NO_CONFLICT; /* the same write */
    return 1;
  }
  if (r->bhlc && o->stamps[l->st].hlc == r->bhlc &&
      !memcmp(lsite, a->d->sites[r->bsite], SX_SITE_LEN))
    return 0; /* the sender wrote over our value */
  if (l->base != SX_NOSTAMP &&
      sx_cmp_lr(x, o, l->base, a->d, r->hlc, r->site) == 0) {
    *take = 0; /* we wrote over theirs */
    *ccls = SYNC_TARGET_MODIFIED;
    return 0;
  }
  if (!memcmp(lsite, a->d->sites[r->site], SX_SITE_LEN)) {
    *take = cmp < 0; /* one writer's writes are ordered */
    *ccls = *take ? SYNC_SOURCE_MODIFIED : SYNC_TARGET_MODIFIED;
    return 0;
  }
  *ccls = SYNC_BOTH_MODIFIED;
  if ((err = sx_merge_both(a, dr, r, rv, cmp, changed))) return err;
  return 1;
}

/* Same causal length, both live: column by column.  1 if the row
 * changes, 0 if not, or an error. */
static int sx_merge_columns(sx_apply *a, const sx_drow *dr, int ctr_only,
                            int *cls) {
  sync_txn *x = a->x;
  const sync_delta *d = a->d;
  sx_row *o = &x->old, *w = &x->nw;
  const sx_dcol *rc0 = d->cols ? d->cols + dr->col0 : NULL;
  size_t i;
  unsigned j;
  int changed = 0, rcmp, err;
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
  if ((err = sx_ctr_room(x, d, dr))) return err;
  for (i = 0; i < dr->ncols; i++) {
    const sx_dcol *r = &rc0[i];
    sync_value rv = sx_dval(d, r);
    int take, ccls;
    if (rv.type == SX_TAG_COUNTER) {
      /* Never a conflict: both sides' adds count. */
      int ch = 0;
      if ((err = sx_merge_ctr(a, dr, r, 1, &ch))) return err;
      if (ch) {
        changed = 1;
        if (*cls < SYNC_SOURCE_MODIFIED) *cls = SYNC_SOURCE_MODIFIED;
      }
      continue;
    }
    if (ctr_only) continue;
    if ((err = sx_merge_col(a, dr, r, &rv, &take, &ccls, &changed)) < 0)
      return err;
    if (ccls > *cls) *cls = ccls;
    if (err) continue; /* settled */
    if (a->policy == SYNC_APPLY_NEWER) take = 1;
    if (!take) continue;
    sx_merge_take(a, r, &rv);
    changed = 1;
  }
  if (rcmp < 0 && !ctr_only) changed = 1; /* only the row stamp moves */
  if (ctr_only && rcmp < 0)
    w->cl_stamp = sx_row_stamp(w, o->stamps[o->cl_stamp]);
  return changed;
}

SYNC_PRIVATE int sx_merge_row(sx_apply *a, const sx_drow *dr, int found,
                              int *cls) {
  sync_txn *x = a->x;
  const sync_delta *d = a->d;
  sx_row *o = &x->old, *w = &x->nw;
  const sx_dcol *rc0 = d->cols ? d->cols + dr->col0 : NULL;
  uint64_t lcl = found ? o->cl : 0;
  size_t i;
  unsigned j;
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
      /* The row is older as a whole, but its adds still count. */
      for (i = 0; i < dr->ncols; i++)
        if (rc0[i].v.type == SX_TAG_COUNTER && dr->cl == lcl && (lcl & 1))
          return sx_merge_columns(a, dr, 1, cls);
      return 0;
    }
  }
  if (!found || dr->cl > lcl) return sx_merge_theirs(a, dr, found, cls);
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
  if (dr->cl < lcl || !(lcl & 1)) return sx_merge_ours(a, dr, cls);
  return sx_merge_columns(a, dr, 0, cls);
}
