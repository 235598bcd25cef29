/*
 * log.c - the change log: its records (the only code that knows their
 * layout), appending, the entry iterator with deletion, checking an entry
 * is its row's current one, compaction at commit, and the upgrade of a
 * format-8 log.
 */
#include "log.h"

/* ---------------------------------------------------------------------
 * Records.  The log is a sequence of entries (version, seq, table, key)
 * in position order; sx.logrec holds them in records of many entries:
 * key the position of the record's first entry (u64 BE version, u32 BE
 * seq), value the entries, each after the one before it:
 *
 *   var h: bit 0 the version differs from the previous entry's, bit 1
 *          a table id follows, bits 2 and up g;
 *   with bit 0: var dv, the version is the previous one + 1 + dv and
 *          the seq is g; without: the seq is the previous one + 1 + g;
 *   with bit 1: var table id (else the previous entry's);
 *   var bytes of the key shared with the previous entry's key, var
 *          length of the rest, the rest.
 *
 * The first entry of a record has h = 2 (its position is the record's
 * key) and shares nothing.  A record ends at SX_LOGREC_MAX bytes, so it
 * stays inside one LMDB page: a write appends its entry to the log's
 * last record (written back whole, in the page the transaction already
 * dirtied) or starts a new one, so that readers of the transaction see
 * it at once and an abort, of a nested transaction too, undoes it with
 * the rest.  Nothing outside this file knows the layout.
 * ------------------------------------------------------------------- */

/* Encode e after prev (NULL: the first entry of a record) at o (room
 * for SX_LENT_MAX bytes); returns its length. */
static size_t sx_lent_put(unsigned char *o, const sx_lent *prev,
                          const sx_lent *e) {
  size_t n, sh = 0;
  uint64_t h = 2;
  int nv = 0, nt = 1;
  if (prev) {
    nv = e->version != prev->version;
    nt = e->tid != prev->tid;
    h = (nv ? (uint64_t)e->seq : (uint64_t)(e->seq - prev->seq - 1)) << 2 |
        (uint64_t)nt << 1 | (uint64_t)nv;
    while (sh < prev->klen && sh < e->klen && prev->key[sh] == e->key[sh]) sh++;
  }
  n = sx_put_varint(o, h);
  if (nv) n += sx_put_varint(o + n, e->version - prev->version - 1);
  if (nt) n += sx_put_varint(o + n, e->tid);
  n += sx_put_varint(o + n, sh);
  n += sx_put_varint(o + n, e->klen - sh);
  memcpy(o + n, e->key + sh, e->klen - sh);
  return n + e->klen - sh;
}

/* Decode the entry at *p (up to end) over e, which holds the entry
 * before it (first: none; rk is the record's key).  0, or
 * SYNC_ECORRUPT for an entry that breaks the rules. */
static int sx_lent_get(const unsigned char **p, const unsigned char *end,
                       const unsigned char *rk, int first, sx_lent *e) {
  const unsigned char *q = *p;
  uint64_t h, g, d, sh, rest;
  size_t n;
  if (!(n = sx_get_varint2(q, end, &h))) return SYNC_ECORRUPT;
  q += n;
  g = h >> 2;
  if (first) {
    if (h != 2) return SYNC_ECORRUPT;
    e->version = sx_get_be64(rk);
    e->seq = sx_get_be32(rk + 8);
    e->klen = 0; /* shares nothing */
  } else if (h & 1) {
    if (!(n = sx_get_varint2(q, end, &d))) return SYNC_ECORRUPT;
    q += n;
    if (d >= UINT64_MAX - e->version || g > UINT32_MAX) return SYNC_ECORRUPT;
    e->version += d + 1;
    e->seq = (uint32_t)g;
  } else {
    if (g >= (uint64_t)UINT32_MAX - e->seq) return SYNC_ECORRUPT;
    e->seq += (uint32_t)g + 1;
  }
  if (h & 2) {
    if (!(n = sx_get_varint2(q, end, &d)) || d > UINT32_MAX)
      return SYNC_ECORRUPT;
    q += n;
    e->tid = (unsigned)d;
  }
  if (!(n = sx_get_varint2(q, end, &sh))) return SYNC_ECORRUPT;
  q += n;
  if (!(n = sx_get_varint2(q, end, &rest))) return SYNC_ECORRUPT;
  q += n;
  if (sh > e->klen || rest > (uint64_t)(end - q) || sh + rest > SYNC_MAX_KEY ||
      sh + rest == 0)
    return SYNC_ECORRUPT;
  memcpy(e->key + sh, q, (size_t)rest);
  e->klen = (size_t)(sh + rest);
  *p = q + rest;
  return 0;
}

static void sx_lent_copy(sx_lent *to, const sx_lent *e) {
  to->version = e->version;
  to->seq = e->seq;
  to->tid = e->tid;
  to->klen = e->klen;
  memcpy(to->key, e->key, e->klen);
}

/* Add e to record r if it fits: 1 if it did, 0 if r is full (or
 * empty: then nothing is added). */
static int sx_lrec_add(sx_lrec *r, const sx_lent *e) {
  unsigned char b[SX_LENT_MAX];
  size_t n;
  if (!r->n) return 0;
  n = sx_lent_put(b, &r->last, e);
  if (r->n + n > SX_LOGREC_MAX) return 0;
  memcpy(r->v + r->n, b, n);
  r->n += n;
  sx_lent_copy(&r->last, e);
  return 1;
}

/* Make r a new record holding e alone. */
static void sx_lrec_start(sx_lrec *r, const sx_lent *e) {
  sx_logkey(r->rk, e->version, e->seq);
  r->n = sx_lent_put(r->v, NULL, e);
  sx_lent_copy(&r->last, e);
}

/* Add e to the records written through r (key order): the record in r
 * is put once full, with flags. */
static int sx_lrec_write(sync_env *env, sx_stxn *t, sx_dbi d, sx_lrec *r,
                         const sx_lent *e, unsigned flags) {
  int rc;
  if (sx_lrec_add(r, e)) return 0;
  if (r->n && (rc = sx_put(env->st, t, d, r->rk, SX_LOGKEY, r->v, r->n, flags)))
    return rc;
  sx_lrec_start(r, e);
  return 0;
}

static int sx_log_corrupt(sync_env *env) {
  return sx_fail(env, SYNC_ECORRUPT, "change log record malformed");
}

/* Whether (v, s) lies after e's position. */
static int sx_lent_before(const sx_lent *e, uint64_t v, uint32_t s) {
  return e->version < v || (e->version == v && e->seq < s);
}

SYNC_PRIVATE int sx_log_append(sync_txn *x, unsigned tid, const void *key,
                               size_t klen) {
  sync_env *env = x->env;
  sx_lrec *r = &x->lt;
  sx_lent e;
  int rc;
  if (!x->lt_ok) {
    /* The log's last record, and its last entry to encode against. */
    sx_scur *c;
    sx_slice k, v;
    if ((rc = sx_cur_open(env->st, x->t, env->log, &c))) return rc;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, SX_LAST, &k, &v);
    r->n = 0;
    if (rc == 0) {
      const unsigned char *p, *end;
      int first = 1;
      if (k.n != SX_LOGKEY || v.n < 1 || v.n > SX_LOGREC_MAX)
        rc = SYNC_ECORRUPT;
      else {
        memcpy(r->rk, k.p, SX_LOGKEY);
        memcpy(r->v, v.p, v.n);
        r->n = v.n;
      }
      for (p = r->v, end = r->v + r->n; !rc && p < end; first = 0)
        if (!(rc = sx_lent_get(&p, end, r->rk, first, &r->last)) &&
            r->last.tid >= env->schema->ntables)
          rc = SYNC_ECORRUPT;
    }
    sx_cur_close(c);
    if (rc == SYNC_ECORRUPT) return sx_log_corrupt(env);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    x->lt_ok = 1;
    x->lt_dirty = x->lt_new = 0;
  }
  e.version = x->version;
  e.seq = x->seq;
  e.tid = tid;
  e.klen = klen;
  memcpy(e.key, key, klen);
  if (r->n && !sx_lent_before(&r->last, e.version, e.seq)) {
    x->lt_ok = 0;
    return sx_log_corrupt(env);
  }
  if (!sx_lrec_add(r, &e)) {
    /* Full (or no record yet): the next one begins with e. */
    if ((rc = sx_log_flush(x))) return rc;
    sx_lrec_start(r, &e);
    x->lt_new = 1;
  }
  x->lt_dirty = 1;
  return 0;
}

SYNC_PRIVATE int sx_log_flush(sync_txn *x) {
  sync_env *env = x->env;
  sx_lrec *r = &x->lt;
  int rc;
  if (!x->lt_ok || !x->lt_dirty) return 0;
  rc = sx_put(env->st, x->t, env->log, r->rk, SX_LOGKEY, r->v, r->n,
              x->lt_new ? SX_PUT_APPEND : 0u);
  x->lt_dirty = x->lt_new = 0;
  if (rc) {
    x->lt_ok = 0;
    x->failed = 1;
  }
  return rc;
}

/* ---------------------------------------------------------------------
 * The iterator.  It holds a copy of one record and decodes it entry by
 * entry; deletions mark entries, and the record is written again
 * without them when the iterator leaves it (sx_logit_flush).
 * ------------------------------------------------------------------- */
SYNC_PRIVATE int sx_logit_open(sync_txn *x, sx_logit *it) {
  it->x = x;
  it->held = it->pend = it->reseek = it->end = 0;
  it->ndel = 0;
  it->e.klen = 0;
  memset(it->del, 0, sizeof it->del);
  return sx_cur_open(x->env->st, x->t, x->env->log, &it->c);
}

/* Take the record at (k, v) as the one held. */
static int sx_logit_hold(sx_logit *it, const sx_slice *k, const sx_slice *v) {
  if (k->n != SX_LOGKEY || v->n < 1 || v->n > SX_LOGREC_MAX)
    return sx_log_corrupt(it->x->env);
  memcpy(it->rk, k->p, SX_LOGKEY);
  memcpy(it->rec, v->p, v->n);
  it->rn = v->n;
  it->off = 0;
  it->idx = 0;
  it->held = 1;
  it->reseek = 0;
  it->end = 0;
  return 0;
}

/* The held record's next entry into it->e: 0, or SYNC_NOTFOUND at its
 * end. */
static int sx_logit_step(sx_logit *it) {
  const unsigned char *p = it->rec + it->off;
  if (it->off >= it->rn) return SYNC_NOTFOUND;
  if (sx_lent_get(&p, it->rec + it->rn, it->rk, it->idx == 0, &it->e) ||
      it->e.tid >= it->x->env->schema->ntables || it->idx >= 8 * sizeof it->del)
    return sx_log_corrupt(it->x->env);
  it->off = (size_t)(p - it->rec);
  it->idx++;
  return 0;
}

/* Write the held record again without the entries deleted from it. */
static int sx_logit_flush(sx_logit *it) {
  sync_txn *x = it->x;
  sync_env *env = x->env;
  const unsigned char *p, *end;
  sx_lrec w;
  sx_lent e;
  unsigned i;
  int rc;
  if (!it->ndel) return 0;
  it->ndel = 0;
  it->reseek = 1;
  x->lt_ok = 0;
  if ((rc = sx_del(env->st, x->t, env->log, it->rk, SX_LOGKEY))) goto fail;
  w.n = 0;
  e.klen = 0;
  for (i = 0, p = it->rec, end = p + it->rn; p < end; i++) {
    if (sx_lent_get(&p, end, it->rk, i == 0, &e)) {
      rc = sx_log_corrupt(env);
      goto fail;
    }
    if (it->del[i >> 3] & (1u << (i & 7))) continue;
    if ((rc = sx_lrec_write(env, x->t, env->log, &w, &e, 0))) goto fail;
  }
  memset(it->del, 0, sizeof it->del);
  if (w.n &&
      (rc = sx_put(env->st, x->t, env->log, w.rk, SX_LOGKEY, w.v, w.n, 0)))
    goto fail;
  return 0;
fail:
  x->failed = 1;
  return rc;
}

SYNC_PRIVATE int sx_logit_seek(sx_logit *it, uint64_t version, uint32_t seq) {
  sync_env *env = it->x->env;
  unsigned char at[SX_LOGKEY];
  sx_slice k, v;
  int rc;
  /* The transaction's own entries not yet written: as if they were. */
  if ((rc = sx_log_flush(it->x)) || (rc = sx_logit_flush(it))) return rc;
  it->held = it->pend = it->end = 0;
  sx_logkey(at, version, seq);
  k.p = at;
  k.n = SX_LOGKEY;
  rc = sx_cur_get(env->st, it->c, SX_SET_RANGE, &k, &v);
  if (rc == 0 && !memcmp(k.p, at, SX_LOGKEY)) return sx_logit_hold(it, &k, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  /* The entry may be inside the record before. */
  k.p = NULL;
  k.n = 0;
  rc = sx_cur_get(env->st, it->c, rc ? SX_LAST : SX_PREV, &k, &v);
  if (rc == SYNC_NOTFOUND) {
    /* None before: from the first record, if any. */
    rc = sx_cur_get(env->st, it->c, SX_FIRST, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      it->end = 1;
      return 0;
    }
    return rc ? rc : sx_logit_hold(it, &k, &v);
  }
  if (rc || (rc = sx_logit_hold(it, &k, &v))) return rc;
  while ((rc = sx_logit_step(it)) == 0)
    if (!sx_lent_before(&it->e, version, seq)) {
      it->pend = 1;
      return 0;
    }
  return rc == SYNC_NOTFOUND ? 0 : rc; /* next() goes on to the next one */
}

SYNC_PRIVATE int sx_logit_next(sx_logit *it) {
  sync_env *env = it->x->env;
  unsigned char at[SX_LOGKEY];
  sx_slice k, v;
  int rc;
  if (it->pend) {
    it->pend = 0;
    return 0;
  }
  if ((rc = sx_log_flush(it->x))) return rc;
  for (;;) {
    if (it->end) return SYNC_NOTFOUND;
    if (!it->held) {
      /* Not positioned: from the start. */
      k.p = NULL;
      k.n = 0;
      rc = sx_cur_get(env->st, it->c, SX_FIRST, &k, &v);
    } else {
      uint64_t lv;
      uint32_t ls;
      if ((rc = sx_logit_step(it)) != SYNC_NOTFOUND) return rc;
      /* The record is done: on to the next, which must start after
       * its last entry. */
      if ((rc = sx_logit_flush(it))) return rc;
      lv = it->e.version;
      ls = it->e.seq;
      if (it->reseek) {
        if (ls == UINT32_MAX && lv == UINT64_MAX) {
          it->end = 1;
          return SYNC_NOTFOUND;
        }
        if (ls == UINT32_MAX)
          sx_logkey(at, lv + 1, 0);
        else
          sx_logkey(at, lv, ls + 1);
        k.p = at;
        k.n = SX_LOGKEY;
        rc = sx_cur_get(env->st, it->c, SX_SET_RANGE, &k, &v);
      } else {
        k.p = NULL;
        k.n = 0;
        rc = sx_cur_get(env->st, it->c, SX_NEXT, &k, &v);
      }
      if (rc == 0 && k.n == SX_LOGKEY &&
          !sx_lent_before(&it->e, sx_get_be64(k.p), sx_get_be32(k.p + 8)))
        return sx_log_corrupt(env); /* records overlap */
    }
    if (rc == SYNC_NOTFOUND) {
      it->held = 0;
      it->end = 1;
      return SYNC_NOTFOUND;
    }
    if (rc || (rc = sx_logit_hold(it, &k, &v))) return rc;
  }
}

SYNC_PRIVATE void sx_logit_del(sx_logit *it) {
  unsigned i = it->idx - 1;
  it->del[i >> 3] |= (unsigned char)(1u << (i & 7));
  it->ndel++;
}

SYNC_PRIVATE int sx_logit_close(sx_logit *it) {
  int rc = it->c ? sx_logit_flush(it) : 0;
  sx_cur_close(it->c);
  it->c = NULL;
  return rc;
}

SYNC_PRIVATE int sx_log_del(sync_txn *x, uint64_t version, uint32_t seq) {
  sx_logit it;
  int rc, rc2;
  if ((rc = sx_logit_open(x, &it))) return rc;
  if (!(rc = sx_logit_seek(&it, version, seq)) && !(rc = sx_logit_next(&it))) {
    if (it.e.version == version && it.e.seq == seq)
      sx_logit_del(&it);
    else
      rc = SYNC_NOTFOUND;
  }
  rc2 = sx_logit_close(&it); /* writes the record without the entry */
  return rc ? rc : rc2;
}

SYNC_PRIVATE int sx_log_upgrade(sync_env *env, sx_stxn *t) {
  sx_dbi old = 0;
  sx_scur *c;
  sx_slice k, v;
  sx_lrec *w;
  sx_lent *e;
  int rc, op = SX_FIRST;
  rc = sx_dbi_open(env->st, t, "sx.log", 0, &old);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  w = (sx_lrec *)sx_malloc(&env->al, sizeof *w + sizeof *e);
  if (!w) return SYNC_ENOMEM;
  e = (sx_lent *)(void *)(w + 1);
  w->n = 0;
  if ((rc = sx_cur_open(env->st, t, old, &c))) goto done;
  while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    uint64_t tid;
    size_t n = sx_get_varint(v.p, v.p + v.n, &tid);
    if (k.n != SX_LOGKEY || !n || tid >= env->schema->ntables || v.n - n < 1 ||
        v.n - n > SYNC_MAX_KEY ||
        (w->n &&
         !sx_lent_before(&w->last, sx_get_be64(k.p), sx_get_be32(k.p + 8)))) {
      rc = SYNC_ECORRUPT;
      break;
    }
    e->version = sx_get_be64(k.p);
    e->seq = sx_get_be32(k.p + 8);
    e->tid = (unsigned)tid;
    e->klen = v.n - n;
    memcpy(e->key, v.p + n, e->klen);
    if ((rc = sx_lrec_write(env, t, env->log, w, e, SX_PUT_APPEND))) break;
  }
  sx_cur_close(c);
  if (!rc && w->n)
    rc = sx_put(env->st, t, env->log, w->rk, SX_LOGKEY, w->v, w->n,
                SX_PUT_APPEND);
  if (!rc) rc = sx_dbi_drop(env->st, t, old);
done:
  sx_free(&env->al, w);
  return rc;
}

SYNC_PRIVATE int sx_log_current(sync_txn *x, sx_row *r, const sx_lent *e) {
  sync_env *env = x->env;
  sx_slice rv;
  int rc = sx_get(env->st, x->t, env->tdbi[e->tid], e->key, e->klen, &rv);
  if (rc == SYNC_NOTFOUND) return SYNC_NOTFOUND; /* collected since */
  if (rc) return rc;
  if ((rc = sx_row_decode(rv.p, rv.n, e->key, e->klen, r)))
    return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                   env->schema->tables[e->tid].name);
  if (r->version != e->version || r->seq != e->seq) return SYNC_NOTFOUND;
  return 0;
}

/* Log bookkeeping (meta "logst"): u64 entries, u64 stale entries, u64 +
 * u32 position where compaction resumes. */
#define SX_LOGST 28

/* Remove stale log entries, scanning at most budget entries from
 * position (*v, *s) on (wrapping to the start once); updates the counts
 * and the position. */
static int sx_log_compact(sync_txn *x, uint64_t *n, uint64_t *stale,
                          uint64_t *v, uint32_t *s, size_t budget) {
  sx_logit it;
  int rc, rc2, wrapped = 0;
  if ((rc = sx_logit_open(x, &it))) return rc;
  rc = sx_logit_seek(&it, *v, *s);
  while (!rc && budget > 0 && *stale > 0) {
    rc = sx_logit_next(&it);
    if (rc == SYNC_NOTFOUND) {
      if (wrapped) {
        rc = 0;
        break;
      }
      wrapped = 1;
      *v = 0;
      *s = 0;
      rc = sx_logit_seek(&it, 0, 0);
      continue;
    }
    if (rc) break;
    budget--;
    rc = sx_log_current(x, &x->old, &it.e);
    if (rc == SYNC_NOTFOUND) {
      sx_logit_del(&it);
      (*stale)--;
      (*n)--;
      rc = 0;
    }
    if (rc) break;
    /* Resume after this entry. */
    if (it.e.seq == UINT32_MAX) {
      *v = it.e.version + 1;
      *s = 0;
    } else {
      *v = it.e.version;
      *s = it.e.seq + 1;
    }
  }
  rc2 = sx_logit_close(&it);
  return rc ? rc : rc2;
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
  /* Keep stale entries at most as many as live ones: then each record
   * the scan rewrites gives up many entries. */
  if (stale >= 1024 && stale * 2 >= n) {
    uint64_t pv = sx_get_le64(b + 16);
    uint32_t ps = sx_get_le32(b + 24);
    /* The entries this transaction touched: added, or removed (a
     * negative count: tombstone collection, a refused insert). */
    uint64_t touched = (uint64_t)(x->log_added < 0 ? -x->log_added
                                                   : x->log_added) +
                       (uint64_t)x->log_stale;
    size_t budget = (size_t)(8 * touched + 256);
    if ((rc = sx_log_compact(x, &n, &stale, &pv, &ps, budget))) return rc;
    sx_put_le64(b + 16, pv);
    sx_put_le32(b + 24, ps);
  }
  sx_put_le64(b, n);
  sx_put_le64(b + 8, stale);
  return sx_put(env->st, x->t, env->meta, "logst", 5, b, SX_LOGST, 0);
}

SYNC_PRIVATE void sx_logkey(unsigned char *k, uint64_t version, uint32_t seq) {
  sx_put_be64(k, version);
  sx_put_be32(k + 8, seq);
}

SYNC_PRIVATE int sx_stamp_out(sync_txn *x, const sx_row *r, unsigned idx,
                              sync_stamp *out) {
  if (idx == SX_NOSTAMP) {
    memset(out, 0, sizeof *out);
    return 0;
  }
  out->hlc = r->stamps[idx].hlc;
  return sx_site_id(x, r->stamps[idx].site, out->site);
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
