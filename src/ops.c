/*
 * ops.c - the public row API: tracked writes (the only place rows are
 * stored), reads, and cursors.
 *
 * A write transaction takes its stamp (HLC) and local version at its first
 * change and uses them for every row it touches; a transaction that
 * changes nothing consumes neither.
 */
#include "ops.h"

#define SX_OP_PUT 0
#define SX_OP_UPDATE 1
#define SX_OP_DELETE 2

static int sx_check_key(sync_txn *x, unsigned tid, const void *key,
                        size_t klen) {
  if (!x || !key) return SYNC_EINVAL;
  if (tid >= x->env->schema->ntables) return SYNC_EINVAL;
  if (klen == 0) return SYNC_EINVAL;
  if (klen > SYNC_MAX_KEY) return SYNC_ETOOBIG;
  if (x->env->schema->tables[tid].key_type == SYNC_INTEGER && klen != 8)
    return SYNC_EINVAL;
  return 0;
}

static int sx_check_value(const sx_column *c, const sync_value *v) {
  /* A counter changes by sync_counter_add alone; put passes NULL. */
  if (c->type == SYNC_COUNTER) return v->type == SYNC_NULL ? 0 : SYNC_ETYPE;
  if (v->type == SYNC_NULL)
    return (c->flags & SYNC_COL_NOTNULL) ? SYNC_ECONSTRAINT : 0;
  if (v->type != c->type) return SYNC_ETYPE;
  if (v->type == SYNC_TEXT || v->type == SYNC_BLOB) {
    if (v->len > SYNC_MAX_VALUE) return SYNC_ETOOBIG;
    if (v->len && !v->data) return SYNC_EINVAL;
  }
  return 0;
}

static sx_stamp sx_mkstamp(uint64_t hlc, uint32_t site) {
  sx_stamp s;
  s.hlc = hlc;
  s.site = site;
  return s;
}

/* x->nw as the live row x->old, with its stamps and values. */
static void sx_build_keep(sync_txn *x, const sx_table *tb) {
  sx_row *o = &x->old, *w = &x->nw;
  unsigned i;
  w->cl = o->cl;
  w->cl_stamp = sx_row_stamp(w, o->stamps[o->cl_stamp]);
  /* Keep columns a newer schema wrote, beyond what we know. */
  w->ncols = o->ncols > tb->ncols ? o->ncols : tb->ncols;
  for (i = 0; i < w->ncols; i++) {
    sx_rcol *c = &w->cols[i];
    if (i < o->ncols && o->cols[i].st != SX_NOSTAMP) {
      c->st = sx_row_stamp(w, o->stamps[o->cols[i].st]);
      c->base = o->cols[i].base == SX_NOSTAMP
                    ? SX_NOSTAMP
                    : sx_row_stamp(w, o->stamps[o->cols[i].base]);
      c->v = o->cols[i].v;
    } else {
      c->st = c->base = SX_NOSTAMP;
      c->v = sync_null();
    }
  }
}

/* Build x->nw from the old row (if any) and the operation.  Returns 1
 * when something changes, 0 when nothing does, or an error. */
static int sx_build(sync_txn *x, const sx_table *tb, int found, int op,
                    const unsigned *cols, const sync_value *vals, unsigned n,
                    uint64_t fresh_cl) {
  sx_row *o = &x->old, *w = &x->nw;
  sx_stamp now = sx_mkstamp(x->hlc, 0);
  unsigned i;
  int live = found && (o->cl & 1);
  int changed = 0;
  w->nstamps = 0;
  if (!live) {
    if (op != SX_OP_PUT) return SYNC_NOTFOUND;
    /* A new row, or one written again over its tombstone, starts above
     * every causal length collected in the table (fresh_cl): the
     * tombstone here may be a horizon's or a repair's, below a delete
     * that others keep. */
    w->cl = found && o->cl + 1 > fresh_cl ? o->cl + 1 : fresh_cl;
    w->cl_stamp = sx_row_stamp(w, now);
    w->ncols = tb->ncols;
    for (i = 0; i < tb->ncols; i++) {
      /* A new incarnation's counters start from 0: unset. */
      int ctr = tb->cols[i].type == SYNC_COUNTER;
      w->cols[i].st = ctr ? SX_NOSTAMP : w->cl_stamp;
      w->cols[i].base = SX_NOSTAMP;
      w->cols[i].v = ctr ? sync_null() : vals[i];
    }
    return 1;
  }
  if (op == SX_OP_DELETE) {
    w->cl = o->cl + 1;
    w->cl_stamp = sx_row_stamp(w, now);
    w->ncols = 0;
    return 1;
  }
  sx_build_keep(x, tb);
  for (i = 0; i < n; i++) {
    unsigned j = cols ? cols[i] : i;
    sx_rcol *c = &w->cols[j];
    int had = j < o->ncols && o->cols[j].st != SX_NOSTAMP;
    if (tb->cols[j].type == SYNC_COUNTER) continue; /* put's NULL */
    if (had ? sx_value_eq(&c->v, &vals[i]) : vals[i].type == SYNC_NULL)
      continue;
    c->base = had ? c->st : SX_NOSTAMP;
    c->st = sx_row_stamp(w, now);
    c->v = vals[i];
    changed = 1;
  }
  return changed;
}

/* Where sx_put_row puts a row that was not found. */
#define SX_AT_SEARCH 0 /* a search finds its place */
#define SX_AT_END 1    /* its key sorts after every key of the table */
#define SX_AT_NEW 2    /* unless the key is there: then 1, nothing done */

static int sx_put_row(sync_txn *x, unsigned tid, sx_scur *cur, const void *key,
                      size_t klen, int found, int at, size_t room);
static int sx_row_at(sync_txn *x, unsigned tid, sx_scur *cur, const void *key,
                     size_t klen, int op, sx_slice *stored);

/* The one write path: put, update and delete of one row. */
static int sx_write(sync_txn *x, unsigned tid, const void *key, size_t klen,
                    int op, const unsigned *cols, const sync_value *vals,
                    unsigned n) {
  sync_env *env;
  const sx_table *tb;
  sx_scur *cur;
  uint64_t fresh = 1;
  unsigned i;
  int rc, found;
  if ((rc = sx_check_key(x, tid, key, klen))) return rc;
  env = x->env;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  tb = &env->schema->tables[tid];
  if (op == SX_OP_PUT && (n != tb->ncols || !vals)) return SYNC_EINVAL;
  if (op == SX_OP_UPDATE) {
    if (n == 0 || n > tb->ncols || !cols || !vals) return SYNC_EINVAL;
    for (i = 0; i < n; i++)
      if (cols[i] >= tb->ncols) return SYNC_EINVAL;
    for (i = 0; i < n; i++)
      if (tb->cols[cols[i]].type == SYNC_COUNTER) return SYNC_ETYPE;
  }
  for (i = 0; i < n; i++)
    if ((rc = sx_check_value(&tb->cols[cols ? cols[i] : i], &vals[i])))
      return rc;
  if ((rc = sx_scratch(x)) || (rc = sx_table_cursor(x, tid, &cur))) return rc;
  sx_stamp_txn(x);
  if (op == SX_OP_PUT) {
    /* Most puts insert: put the new row where the key is not, and build
     * it again over the old one only when the key is there (one search
     * of the tree either way, not a search and then the put's own). */
    if ((rc = sx_fresh_cl(x, tid, &fresh)) ||
        (rc = sx_build(x, tb, 0, op, cols, vals, n, fresh)) < 0 ||
        (rc = sx_put_row(x, tid, cur, key, klen, 0, SX_AT_NEW, 0)) <= 0)
      return rc;
    found = sx_row_at(x, tid, cur, key, klen, SX_GET_CURRENT, NULL);
  } else {
    found = sx_old_row(x, tid, cur, key, klen);
  }
  if (found < 0) return found;
  if ((!found || !(x->old.cl & 1)) && (rc = sx_fresh_cl(x, tid, &fresh)))
    return rc;
  rc = sx_build(x, tb, found, op, cols, vals, n, fresh);
  if (rc <= 0) return rc;
  return sx_store_row(x, tid, cur, key, klen, found, 0);
}

SYNC_PRIVATE int sx_fresh_cl(sync_txn *x, unsigned tid, uint64_t *cl) {
  sync_env *env = x->env;
  *cl = 1;
  if (!x->gccl_ok) {
    sx_slice v;
    unsigned i, n = env->schema->ntables;
    int rc = sx_get(env->st, x->t, env->meta, "gccl", 4, &v);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (rc == 0) {
      x->gccl = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (n ? n : 1));
      if (!x->gccl) return SYNC_ENOMEM;
      for (i = 0; i < n; i++)
        x->gccl[i] = 8 * (size_t)i + 8 <= v.n ? sx_get_le64(v.p + 8 * i) : 0;
    }
    x->gccl_ok = 1;
  }
  if (x->gccl && tid < env->schema->ntables && x->gccl[tid])
    *cl = x->gccl[tid] | 1; /* an even causal length + 1 */
  return 0;
}

SYNC_PRIVATE void sx_stamp_txn(sync_txn *x) {
  uint64_t last;
  if (x->stamped) return;
  last = x->hlc_last > x->hlc_seen ? x->hlc_last : x->hlc_seen;
  x->hlc = sx_hlc_next(last, x->env->clock(x->env->clock_ctx));
  x->stamped = 1;
}

static int sx_note_changed(sync_txn *x, unsigned tid, const void *key,
                           size_t klen);

/* A write to the table failed after LMDB was modified: the transaction
 * can only be aborted. */
static int sx_write_failed(sync_txn *x, unsigned tid, int rc) {
  x->failed = 1;
  return sx_fail(x->env, rc, "write to table '%s' failed: %s",
                 x->env->schema->tables[tid].name, sync_strerror(rc));
}

static int sx_put_row(sync_txn *x, unsigned tid, sx_scur *cur, const void *key,
                      size_t klen, int found, int at, size_t room) {
  sync_env *env = x->env;
  uint64_t oc = 0, om = 0, nc, nm, version = x->version;
  size_t size, noted = x->changed.len;
  int rc, reuse, was_live = found && (x->old.cl & 1), wrote = x->wrote;
  int rh = sx_rh_on(env, tid);
  if ((rc = sx_txn_tables(x))) return rc;
  /* Something changes: this transaction now takes its version. */
  if (!x->wrote) {
    x->wrote = 1;
    x->version = x->base_version + 1;
  }
  reuse = found && x->old.version == x->version;
  x->nw.version = x->version;
  x->nw.seq = reuse ? x->old.seq : x->seq;
  sx_row_compact(&x->nw);
  /* The table's fingerprint sums trade the old row for the new one.  Now,
   * while x->old's values still point at its unmodified stored bytes. */
  if (found &&
      (rc = sx_row_fp(x, tid, (const unsigned char *)key, klen, &x->old, &oc,
                      &om)) < 0)
    return rc;
  if ((rc = sx_row_fp(x, tid, (const unsigned char *)key, klen, &x->nw, &nc,
                      &nm)) < 0)
    return rc;
  size = sx_row_size(&x->nw);
  if (rh) room = 0; /* its record follows the row in enc */
  if ((rc = sx_buf_reserve(&x->enc, size + room))) return rc;
  sx_row_encode(&x->nw, key, klen, x->enc.p, size, room);
  /* Remember the row for on_change (once per transaction). */
  if (!reuse && (rc = sx_note_changed(x, tid, key, klen))) return rc;
  /* From here on LMDB is modified: a failure leaves the txn unusable. */
  /* The row's older log entry stays where it is, stale: deleting it would
   * dirty a random log page per row.  Compaction (sx_log_compact) removes
   * stale entries in log order, many per page. */
  if (found && !reuse) x->log_stale++;
  /* A row's history record is written before the row replaces it (it
   * copies the stored row); an insert's, once the insert took place. */
  if (rh && at != SX_AT_NEW && (rc = sx_rh_note(x, tid, cur, found, reuse)))
    goto fail;
  rc = sx_cur_put(env->st, cur, key, klen, x->enc.p, size + room,
                  found              ? SX_CUR_CURRENT
                  : at == SX_AT_END  ? SX_PUT_APPEND
                  : at == SX_AT_NEW  ? SX_PUT_NOOVERWRITE
                                     : 0u);
  if (rc == SYNC_EEXIST && at == SX_AT_NEW) {
    /* Nothing changed: as before the call. */
    x->changed.len = noted;
    x->wrote = wrote;
    x->version = version;
    return 1;
  }
  if (rc) goto fail;
  if (rh && at == SX_AT_NEW && (rc = sx_rh_note(x, tid, cur, 0, 0)))
    goto fail;
  if (!reuse) {
    if ((rc = sx_log_append(x, tid, key, klen))) goto fail;
    x->seq++;
    x->log_added++;
    x->rows_written++;
  }
  x->delta[tid] += (int)(x->nw.cl & 1) - was_live;
  x->dsum[tid][0] += nc - oc;
  x->dsum[tid][1] += nm - om;
  x->dsum[tid][2] += (uint64_t)!found;
  x->gen++;
  return 0;
fail:
  return sx_write_failed(x, tid, rc);
}

SYNC_PRIVATE int sx_store_row(sync_txn *x, unsigned tid, sx_scur *cur,
                              const void *key, size_t klen, int found,
                              int append) {
  return sx_put_row(x, tid, cur, key, klen, found,
                    append ? SX_AT_END : SX_AT_SEARCH, 0);
}

SYNC_PRIVATE int sx_store_row_room(sync_txn *x, unsigned tid, sx_scur *cur,
                                   const void *key, size_t klen, size_t room) {
  return sx_put_row(x, tid, cur, key, klen, 0, SX_AT_END, room);
}

SYNC_PRIVATE int sx_unroom_row(sync_txn *x, unsigned tid, const void *key,
                               size_t klen) {
  sx_scur *cur;
  sx_slice v;
  size_t n;
  int rc;
  if ((rc = sx_table_cursor(x, tid, &cur)) ||
      (rc = sx_row_at(x, tid, cur, key, klen, SX_SET_KEY, &v)) <= 0)
    return rc; /* 0: removed since */
  if (!x->old.room) return 0;
  /* The same bytes, shorter: only the checksum changes.  Copied out of
   * the page first, since the put rewrites that page. */
  n = v.n - x->old.room;
  if ((rc = sx_buf_reserve(&x->enc, n))) return rc;
  memcpy(x->enc.p, v.p, n);
  sx_row_seal(x->enc.p, n, key, klen);
  if ((rc = sx_cur_put(x->env->st, cur, key, klen, x->enc.p, n,
                       SX_CUR_CURRENT)))
    return sx_write_failed(x, tid, rc);
  return 0;
}

/* Table tid's key for on_change (var table id, var length, key). */
static int sx_note_changed(sync_txn *x, unsigned tid, const void *key,
                           size_t klen) {
  unsigned char lv[2 * SX_VARINT_MAX];
  size_t hn;
  int rc;
  if (!x->env->on_change) return 0;
  hn = sx_put_varint(lv, tid);
  hn += sx_put_varint(lv + hn, klen);
  if ((rc = sx_buf_reserve(&x->changed, hn + klen))) return rc;
  memcpy(x->changed.p + x->changed.len, lv, hn);
  memcpy(x->changed.p + x->changed.len + hn, key, klen);
  x->changed.len += hn + klen;
  return 0;
}

SYNC_PRIVATE int sx_sums_drop(sync_txn *x, unsigned tid, const void *key,
                              size_t klen, const sx_row *r) {
  uint64_t content, meta;
  int rc;
  if ((rc = sx_txn_tables(x))) return rc;
  if ((rc = sx_row_fp(x, tid, (const unsigned char *)key, klen, r, &content,
                      &meta)) < 0)
    return rc;
  x->delta[tid] -= (int64_t)(r->cl & 1);
  x->dsum[tid][0] -= content;
  x->dsum[tid][1] -= meta;
  x->dsum[tid][2]--;
  x->dirty = 1; /* the commit writes the sums */
  x->gen++;
  return 0;
}

SYNC_PRIVATE int sx_remove_row(sync_txn *x, unsigned tid, sx_scur *cur,
                               const void *key, size_t klen) {
  sync_env *env = x->env;
  int rc;
  if ((rc = sx_sums_drop(x, tid, key, klen, &x->old)) ||
      (rc = sx_note_changed(x, tid, key, klen)))
    return rc;
  if ((sx_rh_on(env, tid) && (rc = sx_rh_forget(x, tid))) ||
      (rc = sx_cur_del(env->st, cur))) {
    x->failed = 1;
    return sx_fail(env, rc, "removing a row of table '%s' failed: %s",
                   env->schema->tables[tid].name, sync_strerror(rc));
  }
  /* Its log entry now names a row that is gone: readers skip it, and
   * compaction deletes it. */
  x->log_stale++;
  x->rows_written++;
  return 0;
}

SYNC_API int sync_put(sync_txn *x, unsigned table, const void *key,
                      size_t klen, const sync_value *vals, unsigned nvals) {
  return sx_write(x, table, key, klen, SX_OP_PUT, NULL, vals, nvals);
}

SYNC_API int sync_update(sync_txn *x, unsigned table, const void *key,
                         size_t klen, const unsigned *cols,
                         const sync_value *vals, unsigned n) {
  return sx_write(x, table, key, klen, SX_OP_UPDATE, cols, vals, n);
}

SYNC_API int sync_delete(sync_txn *x, unsigned table, const void *key,
                         size_t klen) {
  return sx_write(x, table, key, klen, SX_OP_DELETE, NULL, NULL, 0);
}

/* Add mag (neg: subtract it) to this replica's contribution in counter
 * cell col of x->nw (sx_ctr with site 0: index 0, sites being
 * increasing), stamped with the transaction's HLC, which is above every
 * stamp the cell holds: so the column's stamp, the newest
 * contribution's, becomes ours.  The contributions of sites retired to
 * this replica join ours (fold.c), so mag 0 folds a cell.  The new
 * payload is appended to x->cpay: the caller empties it first, or
 * reserves room for every cell it bumps (earlier cells point into it). */
static int sx_counter_bump(sync_txn *x, unsigned col, int neg, uint64_t mag) {
  sx_rcol *c = &x->nw.cols[col];
  size_t n = 0, i;
  sx_ctr *a;
  int rc;
  if (c->st != SX_NOSTAMP && c->v.type == SX_TAG_COUNTER)
    (void)sx_ctr_check((const unsigned char *)c->v.data,
                       (const unsigned char *)c->v.data + c->v.len, &n);
  if ((rc = sx_buf_reserve(&x->ctrs, (n + 1) * sizeof(sx_ctr)))) return rc;
  a = (sx_ctr *)(void *)x->ctrs.p;
  if (n) sx_ctr_read(&c->v, a);
  if (!n || a[0].site != 0) {
    memmove(a + 1, a, n * sizeof *a);
    memset(a, 0, sizeof *a);
    n++;
  }
  if ((rc = sx_fold_absorb(x, a, &n))) return rc;
  if (!neg) {
    if (a[0].p > UINT64_MAX - mag) return SYNC_ELIMIT;
    a[0].p += mag;
  } else {
    if (a[0].n > UINT64_MAX - mag) return SYNC_ELIMIT;
    a[0].n += mag;
  }
  a[0].hlc = x->hlc;
  for (i = 1; i < n; i++)
    if (SX_NEVER(a[i].hlc >= x->hlc)) return SYNC_ECORRUPT;
  if ((rc = sx_buf_reserve(&x->cpay, sx_ctr_size(a, n)))) return rc;
  c->v = sync_null();
  c->v.type = SX_TAG_COUNTER;
  c->v.data = x->cpay.p + x->cpay.len;
  c->v.len = sx_ctr_put(x->cpay.p + x->cpay.len, a, n);
  x->cpay.len += c->v.len;
  c->st = sx_row_stamp(&x->nw, sx_mkstamp(x->hlc, 0));
  c->base = SX_NOSTAMP;
  return 0;
}

/* Whether stored counter cell c holds a contribution of a site retired
 * to this replica. */
static int sx_cell_foldable(sync_txn *x, const sx_rcol *c) {
  sx_ctrwalk it;
  if (c->st == SX_NOSTAMP || c->v.type != SX_TAG_COUNTER) return 0;
  sx_ctr_walk(&it, c->v.data, c->v.len);
  while (sx_ctr_step(&it))
    if (sx_fold_mine(x, it.c.site)) return 1;
  return 0;
}

SYNC_PRIVATE int sx_row_foldable(sync_txn *x, const sx_row *r) {
  unsigned j;
  if (!(r->cl & 1)) return 0;
  for (j = 0; j < r->ncols; j++)
    if (sx_cell_foldable(x, &r->cols[j])) return 1;
  return 0;
}

SYNC_PRIVATE int sx_counter_fold(sync_txn *x, unsigned tid, const void *key,
                                 size_t klen, int *folded) {
  const sx_table *tb = &x->env->schema->tables[tid];
  const unsigned char *base;
  sx_scur *cur;
  size_t room = 0;
  unsigned j;
  int rc, found;
  *folded = 0;
  if ((rc = sx_scratch(x)) || (rc = sx_table_cursor(x, tid, &cur))) return rc;
  if ((found = sx_old_row(x, tid, cur, key, klen)) <= 0) return found;
  if (!(x->old.cl & 1)) return 0;
  for (j = 0; j < x->old.ncols; j++)
    if (sx_cell_foldable(x, &x->old.cols[j]))
      room += x->old.cols[j].v.len + 4 * SX_VARINT_MAX;
  if (!room) return 0;
  sx_stamp_txn(x);
  x->nw.nstamps = 0;
  sx_build_keep(x, tb);
  /* Room for every folded cell first: each points into x->cpay, which
   * must not move (a cell grows by its own contribution at most). */
  x->cpay.len = 0;
  if ((rc = sx_buf_reserve(&x->cpay, room))) return rc;
  base = x->cpay.p;
  for (j = 0; j < x->old.ncols; j++)
    if (sx_cell_foldable(x, &x->old.cols[j]) &&
        (rc = sx_counter_bump(x, j, 0, 0)))
      return rc;
  if (SX_NEVER(x->cpay.p != base)) return SYNC_ECORRUPT;
  *folded = 1;
  return sx_store_row(x, tid, cur, key, klen, found, 0);
}

SYNC_API int sync_counter_add(sync_txn *x, unsigned table, const void *key,
                              size_t klen, unsigned col, int64_t delta) {
  /* |INT64_MIN| too */
  return sx_counter_add(x, table, key, klen, col, delta < 0,
                        delta < 0 ? (uint64_t)(-(delta + 1)) + 1
                                  : (uint64_t)delta);
}

SYNC_PRIVATE int sx_counter_add(sync_txn *x, unsigned table, const void *key,
                                size_t klen, unsigned col, int neg,
                                uint64_t mag) {
  sync_env *env;
  const sx_table *tb;
  sx_scur *cur;
  uint64_t fresh = 1;
  unsigned i;
  int rc, found, live;
  if ((rc = sx_check_key(x, table, key, klen))) return rc;
  env = x->env;
  tb = &env->schema->tables[table];
  if (col >= tb->ncols) return SYNC_EINVAL;
  if (tb->cols[col].type != SYNC_COUNTER) return SYNC_ETYPE;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if (mag == 0) return 0;
  if ((rc = sx_scratch(x)) || (rc = sx_table_cursor(x, table, &cur)))
    return rc;
  if ((found = sx_old_row(x, table, cur, key, klen)) < 0) return found;
  live = found && (x->old.cl & 1);
  if (!live) {
    for (i = 0; i < tb->ncols; i++)
      if ((tb->cols[i].flags & SYNC_COL_NOTNULL) &&
          tb->cols[i].type != SYNC_COUNTER)
        return SYNC_ECONSTRAINT;
    if ((rc = sx_fresh_cl(x, table, &fresh))) return rc;
  }
  sx_stamp_txn(x);
  x->nw.nstamps = 0;
  if (live) {
    sx_build_keep(x, tb);
  } else {
    /* Created, or re-inserted above its delete (as sx_build's put),
     * with every column unset: a put elsewhere at the same causal
     * length fills them. */
    x->nw.cl = found && x->old.cl + 1 > fresh ? x->old.cl + 1 : fresh;
    x->nw.cl_stamp = sx_row_stamp(&x->nw, sx_mkstamp(x->hlc, 0));
    x->nw.ncols = tb->ncols;
    for (i = 0; i < tb->ncols; i++) {
      x->nw.cols[i].st = x->nw.cols[i].base = SX_NOSTAMP;
      x->nw.cols[i].v = sync_null();
    }
  }
  x->cpay.len = 0;
  if ((rc = sx_counter_bump(x, col, neg, mag))) return rc;
  return sx_store_row(x, table, cur, key, klen, found, 0);
}

/* sx_old_row with op SX_SET_KEY (a search) or SX_GET_CURRENT (the row
 * the cursor stands on, whose key is key); *stored (if not NULL): the
 * stored bytes. */
static int sx_row_at(sync_txn *x, unsigned tid, sx_scur *cur, const void *key,
                     size_t klen, int op, sx_slice *stored) {
  sx_slice k, v;
  int rc;
  k.p = (const unsigned char *)key;
  k.n = klen;
  rc = sx_cur_get(x->env->st, cur, op, &k, &v);
  if (stored) *stored = v;
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if ((rc = sx_row_decode(v.p, v.n, key, klen, &x->old)))
    return sx_fail(x->env, rc, "table '%s': stored row fails its checksum",
                   x->env->schema->tables[tid].name);
  return 1;
}

SYNC_PRIVATE int sx_old_row(sync_txn *x, unsigned tid, sx_scur *cur,
                            const void *key, size_t klen) {
  return sx_row_at(x, tid, cur, key, klen, SX_SET_KEY, NULL);
}

/* Read and decode the row at key into r; SYNC_NOTFOUND when absent or a
 * tombstone (with *tomb set for the latter, if given). */
static int sx_read(sync_txn *x, unsigned tid, const void *key, size_t klen,
                   sx_row *r) {
  sx_slice v;
  int rc;
  rc = sx_get(x->env->st, x->t, x->env->tdbi[tid], key, klen, &v);
  if (rc) return rc;
  if ((rc = sx_row_decode(v.p, v.n, key, klen, r)))
    return sx_fail(x->env, rc, "table '%s': stored row fails its checksum",
                   x->env->schema->tables[tid].name);
  return (r->cl & 1) ? 0 : SYNC_NOTFOUND;
}

SYNC_PRIVATE void sx_fill(const sx_table *tb, const sx_row *r,
                          sync_value *vals, unsigned nvals) {
  unsigned i;
  for (i = 0; i < nvals; i++)
    vals[i] = sx_col_value(r, i, tb->cols[i].type);
}

SYNC_API int sync_get(sync_txn *x, unsigned table, const void *key,
                      size_t klen, sync_value *vals, unsigned nvals) {
  int rc;
  if ((rc = sx_check_key(x, table, key, klen))) return rc;
  if (nvals > x->env->schema->tables[table].ncols || (nvals && !vals))
    return SYNC_EINVAL;
  if ((rc = sx_read_scratch(x))) return rc;
  if ((rc = sx_read(x, table, key, klen, &x->rd))) return rc;
  sx_fill(&x->env->schema->tables[table], &x->rd, vals, nvals);
  return 0;
}

SYNC_API int sync_contains(sync_txn *x, unsigned table, const void *key,
                           size_t klen) {
  int rc;
  if ((rc = sx_check_key(x, table, key, klen))) return rc;
  if ((rc = sx_read_scratch(x))) return rc;
  rc = sx_read(x, table, key, klen, &x->rd);
  if (rc == SYNC_NOTFOUND) return 0;
  return rc ? rc : 1;
}

/* The stored cell of counter column col of a live row (NULL: the row
 * has fewer columns, never added to), after the checks the counter
 * reads share. */
static int sx_counter_cell(sync_txn *x, unsigned table, const void *key,
                           size_t klen, unsigned col, const sx_rcol **out) {
  const sx_table *tb;
  int rc;
  *out = NULL;
  if ((rc = sx_check_key(x, table, key, klen))) return rc;
  tb = &x->env->schema->tables[table];
  if (col >= tb->ncols) return SYNC_EINVAL;
  if (tb->cols[col].type != SYNC_COUNTER) return SYNC_ETYPE;
  if ((rc = sx_read_scratch(x)) || (rc = sx_read(x, table, key, klen, &x->rd)))
    return rc;
  if (col < x->rd.ncols) *out = &x->rd.cols[col];
  return 0;
}

SYNC_API int sync_counter_own(sync_txn *x, unsigned table, const void *key,
                              size_t klen, unsigned col, uint64_t *pos,
                              uint64_t *neg) {
  const sx_rcol *c;
  uint64_t p = 0, n = 0, lo;
  int64_t hi;
  int rc;
  if (pos) *pos = 0;
  if (neg) *neg = 0;
  if ((rc = sx_counter_cell(x, table, key, klen, col, &c))) return rc;
  if (c) sx_rcol_ctr(c, &hi, &lo, &p, &n);
  if (pos) *pos = p;
  if (neg) *neg = n;
  return 0;
}

SYNC_API int sync_counter_sites(sync_txn *x, unsigned table, const void *key,
                                size_t klen, unsigned col, uint8_t (*out)[16],
                                size_t cap, size_t *n) {
  const sx_rcol *c;
  sx_ctrwalk it;
  size_t k = 0;
  int rc;
  if (!n || (cap && !out)) return SYNC_EINVAL;
  *n = 0;
  if ((rc = sx_counter_cell(x, table, key, klen, col, &c))) return rc;
  if (!c || c->st == SX_NOSTAMP || c->v.type != SX_TAG_COUNTER) return 0;
  sx_ctr_walk(&it, c->v.data, c->v.len);
  while (sx_ctr_step(&it)) {
    if (k < cap && (rc = sx_site_id(x, it.c.site, out[k]))) return rc;
    k++;
  }
  *n = k;
  return 0;
}

SYNC_API int sync_count(sync_txn *x, unsigned table, uint64_t *out) {
  sx_tsum s;
  int rc;
  if (!x || !out || table >= x->env->schema->ntables) return SYNC_EINVAL;
  if ((rc = sx_table_sum(x, table, &s))) return rc;
  *out = s.live;
  return 0;
}

SYNC_API int sync_put_many(sync_txn *x, unsigned table, const sync_key *keys,
                           const sync_value *vals, size_t nrows,
                           size_t *done) {
  size_t i, nc;
  int rc = 0;
  if (done) *done = 0;
  if (!x || !keys || (nrows && !vals) || table >= x->env->schema->ntables)
    return SYNC_EINVAL;
  nc = x->env->schema->tables[table].ncols;
  for (i = 0; i < nrows; i++) {
    rc = sx_write(x, table, keys[i].data, keys[i].len, SX_OP_PUT, NULL,
                  vals + i * nc, (unsigned)nc);
    if (rc) break;
    if (done) *done = i + 1;
  }
  return rc;
}

SYNC_API int sync_delete_many(sync_txn *x, unsigned table,
                              const sync_key *keys, size_t n,
                              size_t *ndeleted) {
  size_t i, d = 0;
  int rc = 0;
  if (ndeleted) *ndeleted = 0;
  if (!x || (n && !keys)) return SYNC_EINVAL;
  for (i = 0; i < n; i++) {
    rc = sx_write(x, table, keys[i].data, keys[i].len, SX_OP_DELETE, NULL,
                  NULL, 0);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      continue;
    }
    if (rc) break;
    d++;
  }
  if (ndeleted) *ndeleted = d;
  return rc;
}

SYNC_API int sync_get_many(sync_txn *x, unsigned table, const sync_key *keys,
                           size_t n, sync_value *vals, unsigned nvals,
                           int *found) {
  size_t i;
  unsigned j;
  int rc;
  if (!x || (n && (!keys || !found || (nvals && !vals))) ||
      table >= x->env->schema->ntables)
    return SYNC_EINVAL;
  for (i = 0; i < n; i++) {
    rc = sync_get(x, table, keys[i].data, keys[i].len,
                  nvals ? vals + i * nvals : NULL, nvals);
    found[i] = rc == 0;
    if (rc == SYNC_NOTFOUND) {
      for (j = 0; j < nvals; j++) vals[i * nvals + j] = sync_null();
      continue;
    }
    if (rc) return rc;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Cursors
 * ------------------------------------------------------------------- */
SYNC_API int sync_cursor_open(sync_txn *x, unsigned table, sync_cursor **out) {
  sync_cursor *c;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || table >= x->env->schema->ntables) return SYNC_EINVAL;
  c = (sync_cursor *)sx_malloc(&x->env->al, sizeof *c);
  if (!c) return SYNC_ENOMEM;
  memset(c, 0, sizeof *c);
  c->al = x->env->al;
  if ((rc = sx_row_init(&c->al, &c->row, SYNC_MAX_COLUMNS))) {
    sx_free(&c->al, c);
    return rc;
  }
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->tdbi[table], &c->c))) {
    sx_row_free(&c->al, &c->row);
    sx_free(&c->al, c);
    return rc;
  }
  c->x = x;
  c->tid = table;
  c->next = x->cursors;
  x->cursors = c;
  *out = c;
  return 0;
}

SYNC_API int sync_cursor_range(sync_cursor *c, const void *lo, size_t lolen,
                               const void *hi, size_t hilen) {
  if (!c || c->dead) return SYNC_EINVAL;
  if ((lo && lolen > SYNC_MAX_KEY) || (hi && hilen > SYNC_MAX_KEY))
    return SYNC_ETOOBIG;
  c->has_lo = lo != NULL;
  c->has_hi = hi != NULL;
  c->lolen = lo ? lolen : 0;
  c->hilen = hi ? hilen : 0;
  if (lo && lolen) memcpy(c->lo, lo, lolen);
  if (hi && hilen) memcpy(c->hi, hi, hilen);
  c->started = c->done = 0;
  return 0;
}

SYNC_API int sync_cursor_next(sync_cursor *c, sync_key *key, sync_value *vals,
                              unsigned nvals) {
  sync_txn *x;
  sx_slice k, v;
  int rc, op;
  if (!c || c->dead) return SYNC_EINVAL;
  x = c->x;
  if (nvals > x->env->schema->tables[c->tid].ncols || (nvals && !vals))
    return SYNC_EINVAL;
  if (c->done) return SYNC_NOTFOUND;
  if (!c->started) {
    k.p = c->lo;
    k.n = c->lolen;
    op = c->has_lo && c->lolen ? SX_SET_RANGE : SX_FIRST;
  } else if (c->gen != x->gen) {
    /* The transaction wrote since: go on after our place, by key. */
    k.p = c->last;
    k.n = c->lastlen;
    op = SX_AFTER;
  } else {
    k.p = NULL;
    k.n = 0;
    op = SX_NEXT;
  }
  for (;;) {
    rc = sx_cur_walk(x->env->st, c->c, &op, &k, &v);
    if (rc == 0) break;
    if (rc < 0) return rc;
    if (c->has_hi && sx_keycmp(k.p, k.n, c->hi, c->hilen) >= 0) break;
    /* An as-of cursor reads the row's version at its point instead. */
    if (c->asof && (rc = sx_rh_cursor_at(c, &k, &v)) <= 0) {
      if (rc < 0) return rc;
      c->started = 1;
      c->gen = x->gen;
      memcpy(c->last, k.p, k.n);
      c->lastlen = k.n;
      continue;
    }
    if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &c->row)))
      return sx_fail(x->env, rc, "table '%s': stored row fails its checksum",
                     x->env->schema->tables[c->tid].name);
    c->started = 1;
    c->gen = x->gen;
    memcpy(c->last, k.p, k.n);
    c->lastlen = k.n;
    if (!(c->row.cl & 1)) continue;
    if (key) {
      key->data = k.p;
      key->len = k.n;
    }
    sx_fill(&x->env->schema->tables[c->tid], &c->row, vals, nvals);
    return 0;
  }
  c->done = 1;
  return SYNC_NOTFOUND;
}

SYNC_API void sync_cursor_close(sync_cursor *c) {
  sync_cursor **pp;
  sx_alloc al;
  if (!c) return;
  if (c->x) {
    for (pp = &c->x->cursors; *pp; pp = &(*pp)->next)
      if (*pp == c) {
        *pp = c->next;
        break;
      }
    sx_cur_close(c->c);
  }
  al = c->al;
  sx_row_free(&al, &c->row);
  sx_free(&al, c);
}
