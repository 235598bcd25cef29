/*
 * log.c - the change log: log keys, checking an entry is its row's current
 * one, compaction at commit, and the sync_changes_* iterator.
 */
#include "log.h"

SYNC_PRIVATE int sx_log_current(sync_txn *x, sx_row *r,
                                const unsigned char *lk, size_t lkn,
                                const unsigned char *v, size_t vn,
                                unsigned *tid, sx_slice *key) {
  sync_env *env = x->env;
  sx_slice rv;
  uint64_t t;
  size_t n = sx_get_varint(v, v + vn, &t);
  int rc;
  if (lkn != SX_LOGKEY || !n || t >= env->schema->ntables || vn - n < 1 ||
      vn - n > SYNC_MAX_KEY)
    return sx_fail(env, SYNC_ECORRUPT, "change log entry malformed");
  *tid = (unsigned)t;
  key->p = v + n;
  key->n = vn - n;
  rc = sx_get(env->st, x->t, env->tdbi[t], key->p, key->n, &rv);
  if (rc == SYNC_NOTFOUND) return SYNC_NOTFOUND; /* collected since */
  if (rc) return rc;
  if ((rc = sx_row_decode(rv.p, rv.n, key->p, key->n, r)))
    return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                   env->schema->tables[t].name);
  if (r->version != sx_get_be64(lk) || r->seq != sx_get_be32(lk + 8))
    return SYNC_NOTFOUND;
  return 0;
}

/* Log bookkeeping (meta "logst"): u64 entries, u64 stale entries, u64 +
 * u32 position where compaction resumes. */
#define SX_LOGST 28

/* Remove stale log entries, scanning at most budget entries from *pos on
 * (wrapping to the start once); updates the counts. */
static int sx_log_compact(sync_txn *x, uint64_t *n, uint64_t *stale,
                          unsigned char *pos, size_t budget) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v, key;
  unsigned char at[SX_LOGKEY];
  int rc, wrapped = 0;
  unsigned tid;
  if ((rc = sx_cur_open(env->st, x->t, env->log, &c))) return rc;
  memcpy(at, pos, SX_LOGKEY);
  while (budget-- > 0 && *stale > 0) {
    k.p = at;
    k.n = SX_LOGKEY;
    rc = sx_cur_get(env->st, c, SX_SET_RANGE, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      if (wrapped) break;
      wrapped = 1;
      memset(at, 0, SX_LOGKEY);
      continue;
    }
    if (rc) break;
    memcpy(at, k.p, SX_LOGKEY);
    rc = sx_log_current(x, &x->old, k.p, k.n, v.p, v.n, &tid, &key);
    if (rc == SYNC_NOTFOUND) {
      /* The lookup moved nothing: the cursor still sits on the entry. */
      if ((rc = sx_cur_del(env->st, c))) break;
      (*stale)--;
      (*n)--;
      continue; /* the next entry is found again from at */
    }
    if (rc) break;
    /* Step past a current entry. */
    if (sx_get_be32(at + 8) == UINT32_MAX)
      sx_logkey(at, sx_get_be64(at) + 1, 0);
    else
      sx_logkey(at, sx_get_be64(at), sx_get_be32(at + 8) + 1);
  }
  sx_cur_close(c);
  memcpy(pos, at, SX_LOGKEY);
  return rc;
}

SYNC_PRIVATE int sx_log_finish(sync_txn *x) {
  sync_env *env = x->env;
  unsigned char b[SX_LOGST];
  sx_slice v;
  uint64_t n = 0, stale = 0;
  int rc;
  memset(b, 0, sizeof b);
  rc = sx_get(env->st, x->t, env->meta, "logst", 5, &v);
  if (rc == 0 && v.n == SX_LOGST) {
    memcpy(b, v.p, SX_LOGST);
    n = sx_get_le64(b);
    stale = sx_get_le64(b + 8);
  } else if (rc && rc != SYNC_NOTFOUND) {
    return rc;
  }
  n += (uint64_t)x->log_added;
  stale += (uint64_t)x->log_stale;
  if (stale > n) stale = n; /* never trust a count past what exists */
  /* Keep stale entries at most as many as live ones: then each page the
   * scan dirties gives up many entries. */
  if (stale >= 1024 && stale * 2 >= n) {
    unsigned char pos[SX_LOGKEY];
    size_t budget = 8 * (size_t)(x->log_added + x->log_stale) + 256;
    sx_logkey(pos, sx_get_le64(b + 16), sx_get_le32(b + 24));
    if ((rc = sx_log_compact(x, &n, &stale, pos, budget))) return rc;
    sx_put_le64(b + 16, sx_get_be64(pos));
    sx_put_le32(b + 24, sx_get_be32(pos + 8));
  }
  sx_put_le64(b, n);
  sx_put_le64(b + 8, stale);
  return sx_put(env->st, x->t, env->meta, "logst", 5, b, SX_LOGST, 0);
}

SYNC_PRIVATE void sx_logkey(unsigned char *k, uint64_t version, uint32_t seq) {
  sx_put_be64(k, version);
  sx_put_be32(k + 8, seq);
}

static int sx_stamp_out(sync_txn *x, const sx_row *r, unsigned idx,
                        sync_stamp *out) {
  if (idx == SX_NOSTAMP) {
    memset(out, 0, sizeof *out);
    return 0;
  }
  out->hlc = r->stamps[idx].hlc;
  return sx_site_id(x, r->stamps[idx].site, out->site);
}

SYNC_API int sync_changes_open(sync_txn *x, uint64_t since,
                               sync_changes **out) {
  sync_changes *it;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x) return SYNC_EINVAL;
  it = (sync_changes *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  if ((rc = sx_row_init(&it->al, &it->row, SYNC_MAX_COLUMNS))) {
    sx_free(&it->al, it);
    return rc;
  }
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->log, &it->c))) {
    sx_row_free(&it->al, &it->row);
    sx_free(&it->al, it);
    return rc;
  }
  it->x = x;
  it->since = since;
  it->next = x->changes;
  x->changes = it;
  *out = it;
  return 0;
}

SYNC_API int sync_changes_next(sync_changes *it, sync_change *out) {
  sync_txn *x;
  sx_slice k, v, key;
  unsigned char start[SX_LOGKEY];
  unsigned tid;
  int rc, op;
  if (!it || it->dead || !out) return SYNC_EINVAL;
  x = it->x;
  if (!it->started) {
    if (it->since == UINT64_MAX) return SYNC_NOTFOUND;
    sx_logkey(start, it->since + 1, 0);
    k.p = start;
    k.n = SX_LOGKEY;
    op = SX_SET_RANGE;
  } else if (it->gen != x->gen) {
    k.p = it->last;
    k.n = SX_LOGKEY;
    op = SX_SET_RANGE;
  } else {
    k.p = NULL;
    k.n = 0;
    op = SX_NEXT;
  }
  for (;;) {
    if ((rc = sx_cur_get(x->env->st, it->c, op, &k, &v))) return rc;
    op = SX_NEXT;
    if (k.n != SX_LOGKEY) return SYNC_ECORRUPT;
    if (it->started && memcmp(k.p, it->last, SX_LOGKEY) <= 0) continue;
    it->started = 1;
    memcpy(it->last, k.p, SX_LOGKEY);
    rc = sx_log_current(x, &it->row, k.p, k.n, v.p, v.n, &tid, &key);
    if (rc == SYNC_NOTFOUND) continue; /* left behind by a later change */
    if (rc) return rc;
    break;
  }
  it->gen = x->gen;
  /* sx_log_current set tid: it returned 0. */
  it->tid = tid; /* NOLINT(clang-analyzer-core.uninitialized.Assign) */
  out->table = tid;
  out->key.data = key.p;
  out->key.len = key.n;
  out->version = it->row.version;
  out->causal_length = it->row.cl;
  out->ncolumns = (it->row.cl & 1) ? it->row.ncols : 0;
  return sx_stamp_out(x, &it->row, it->row.cl_stamp, &out->row_stamp);
}

SYNC_PRIVATE int sx_row_column(sync_txn *x, unsigned tid, const sx_row *r,
                               unsigned col, sync_value *val,
                               sync_stamp *stamp, sync_stamp *base) {
  const sx_table *tb = &x->env->schema->tables[tid];
  int rc;
  if (!(r->cl & 1) || col >= r->ncols || r->cols[col].st == SX_NOSTAMP)
    return SYNC_NOTFOUND;
  if (val)
    *val = sx_rcol_value(&r->cols[col],
                         col < tb->ncols ? tb->cols[col].type : SYNC_NULL);
  if (stamp && (rc = sx_stamp_out(x, r, r->cols[col].st, stamp))) return rc;
  if (base && (rc = sx_stamp_out(x, r, r->cols[col].base, base))) return rc;
  return 0;
}

SYNC_API int sync_changes_column(sync_changes *it, unsigned col,
                                 sync_value *val, sync_stamp *stamp,
                                 sync_stamp *base) {
  if (!it || it->dead || !it->started) return SYNC_EINVAL;
  return sx_row_column(it->x, it->tid, &it->row, col, val, stamp, base);
}

SYNC_API void sync_changes_close(sync_changes *it) {
  sync_changes **pp;
  sx_alloc al;
  if (!it) return;
  if (it->x) {
    for (pp = &it->x->changes; *pp; pp = &(*pp)->next)
      if (*pp == it) {
        *pp = it->next;
        break;
      }
    sx_cur_close(it->c);
  }
  al = it->al;
  sx_row_free(&al, &it->row);
  sx_free(&al, it);
}
