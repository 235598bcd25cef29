/*
 * changes.c - the sync_changes_* iterator: the rows changed after a local
 * version, each once.  In version order it walks the change log and
 * reads each entry's row (one lookup in the table per change); with
 * SYNC_CHANGES_UNORDERED and a change set that is a large share of the
 * tables' rows, it scans the tables instead and keeps the rows whose
 * version is above the one asked for (a row records the version of its
 * log entry, so the set is the same).  Stands after fp.c, whose table
 * records give the row counts the choice needs.
 */
#include "fp.h"

/* A scan when the log holds at least one entry after `since` for every
 * SX_SCAN_SHARE rows of the tables.  A scan reads a row in tens of
 * nanoseconds, a lookup takes about a microsecond in a table larger
 * than the caches: a scan costs less from about one change in 20 rows;
 * stale entries make the count an overestimate. */
#define SX_SCAN_SHARE 16

/* Whether to scan for the changes after since (*scan), counting log
 * entries until there are enough. */
static int sx_changes_pick(sync_txn *x, uint64_t since, int *scan) {
  uint64_t rows = 0, n = 0;
  unsigned tid;
  sx_logit it;
  int rc, rc2;
  *scan = 0;
  if (since == UINT64_MAX) return 0;
  for (tid = 0; tid < x->env->schema->ntables; tid++) {
    sx_tsum s;
    if ((rc = sx_table_sum(x, tid, &s))) return rc;
    rows += s.rows;
  }
  if (rows == 0) return 0;
  if ((rc = sx_logit_open(x, &it))) return rc;
  rc = sx_logit_seek(&it, since + 1, 0);
  while (!rc && !(rc = sx_logit_next(&it)))
    if (++n * SX_SCAN_SHARE >= rows) {
      *scan = 1;
      break;
    }
  if (rc == SYNC_NOTFOUND) rc = 0;
  rc2 = sx_logit_close(&it); /* read only: writes nothing */
  return rc ? rc : rc2;
}

SYNC_API int sync_changes_open_flags(sync_txn *x, uint64_t since,
                                     unsigned flags, sync_changes **out) {
  sync_changes *it;
  int rc, scan = 0;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || (flags & ~SYNC_CHANGES_UNORDERED)) return SYNC_EINVAL;
  if ((flags & SYNC_CHANGES_UNORDERED) &&
      (rc = sx_changes_pick(x, since, &scan)))
    return rc;
  it = (sync_changes *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  if ((rc = sx_row_init(&it->al, &it->row, SYNC_MAX_COLUMNS))) {
    sx_free(&it->al, it);
    return rc;
  }
  /* A scan reads the tables alone: no log cursor (it->it.c stays NULL,
   * which sx_logit_close takes as nothing to close). */
  if (!scan && (rc = sx_logit_open(x, &it->it))) {
    sx_row_free(&it->al, &it->row);
    sx_free(&it->al, it);
    return rc;
  }
  it->x = x;
  it->since = since;
  it->scan = scan;
  it->next = x->changes;
  x->changes = it;
  *out = it;
  return 0;
}

SYNC_API int sync_changes_open(sync_txn *x, uint64_t since,
                               sync_changes **out) {
  return sync_changes_open_flags(x, since, 0, out);
}

/* The next changed row in log order: it->row, it->tid and *key. */
static int sx_changes_log(sync_changes *it, sync_key *key) {
  sync_txn *x = it->x;
  const sx_lent *e = &it->it.e;
  int rc;
  if (!it->started) {
    if (it->since == UINT64_MAX) return SYNC_NOTFOUND;
    if ((rc = sx_logit_seek(&it->it, it->since + 1, 0))) return rc;
  } else if (it->gen != x->gen) {
    /* Written since: the record copy may be old, find the place again. */
    if (it->lasts == UINT32_MAX && it->lastv == UINT64_MAX)
      return SYNC_NOTFOUND;
    rc = it->lasts == UINT32_MAX
             ? sx_logit_seek(&it->it, it->lastv + 1, 0)
             : sx_logit_seek(&it->it, it->lastv, it->lasts + 1);
    if (rc) return rc;
  }
  it->gen = x->gen;
  for (;;) {
    if ((rc = sx_logit_next(&it->it))) return rc;
    it->started = 1;
    it->lastv = e->version;
    it->lasts = e->seq;
    rc = sx_log_current(x, &it->row, e);
    if (rc == SYNC_NOTFOUND) continue; /* left behind by a later change */
    if (rc) return rc;
    break;
  }
  it->tid = e->tid;
  key->data = e->key;
  key->len = e->klen;
  return 0;
}

/* The next changed row of a scan, table by table in key order. */
static int sx_changes_scan(sync_changes *it, sync_key *key) {
  sync_txn *x = it->x;
  sync_env *env = x->env;
  sx_slice k, v;
  int rc, op = SX_NEXT;
  if (it->since == UINT64_MAX) return SYNC_NOTFOUND;
  if (it->sc && it->gen != x->gen) {
    /* Written since: go on after the last row returned, by its key. */
    k.p = it->key;
    k.n = it->klen;
    op = SX_AFTER;
  }
  it->gen = x->gen;
  for (;;) {
    uint64_t version;
    if (!it->sc) {
      if (it->tid >= env->schema->ntables) return SYNC_NOTFOUND;
      if ((rc = sx_txn_tables(x)) ||
          (rc = sx_cur_open(env->st, x->t, env->tdbi[it->tid], &it->sc)))
        return rc;
      op = SX_FIRST;
    }
    rc = sx_cur_walk(env->st, it->sc, &op, &k, &v);
    if (rc < 0) return rc;
    if (rc == 0) {
      sx_cur_close(it->sc);
      it->sc = NULL;
      it->tid++;
      continue;
    }
    sx_walk_ahead(env->st, &it->page, v.p);
    if (sx_row_head(v.p, v.n, &version))
      version = UINT64_MAX; /* the decode below says what is wrong */
    if (version <= it->since) continue;
    if (k.n > SYNC_MAX_KEY || sx_row_decode(v.p, v.n, k.p, k.n, &it->row))
      return sx_fail(env, SYNC_ECORRUPT,
                     "table '%s': stored row fails its checksum",
                     env->schema->tables[it->tid].name);
    break;
  }
  it->started = 1;
  memcpy(it->key, k.p, k.n);
  it->klen = k.n;
  key->data = it->key;
  key->len = it->klen;
  return 0;
}

SYNC_API int sync_changes_next(sync_changes *it, sync_change *out) {
  int rc;
  if (!it || it->dead || !out) return SYNC_EINVAL;
  rc = it->scan ? sx_changes_scan(it, &out->key)
                : sx_changes_log(it, &out->key);
  if (rc) return rc;
  out->table = it->tid;
  out->version = it->row.version;
  out->causal_length = it->row.cl;
  out->ncolumns = (it->row.cl & 1) ? it->row.ncols : 0;
  return sx_stamp_out(it->x, &it->row, it->row.cl_stamp, &out->row_stamp);
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
    (void)sx_logit_close(&it->it); /* read only: writes nothing */
    sx_cur_close(it->sc);
  }
  al = it->al;
  sx_row_free(&al, &it->row);
  sx_free(&al, it);
}
