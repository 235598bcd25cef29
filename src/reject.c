/*
 * reject.c - the writer's side of a refused write and the rejection log.
 */
#include "reject.h"

#include <stdlib.h>

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
    need += 1 + SX_VARINT_MAX +
            (r->cols[i].st == SX_NOSTAMP ? 0 : sx_payload_size(&r->cols[i].v));
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
    if (c->v.type == SX_TAG_COUNTER) {
      /* The record keeps what a reader saw: the counter's sum. */
      sync_value sv = sx_rcol_value(c, SYNC_COUNTER);
      *p++ = (unsigned char)SYNC_INTEGER;
      p += sx_payload_put(p, &sv);
      continue;
    }
    *p++ = (unsigned char)c->v.type;
    p += sx_payload_put(p, &c->v);
  }
  b->len = (size_t)(p - b->p);
  return 0;
}

static int sx_ctr_sitecmp_r(const void *p, const void *q) {
  const sx_ctr *a = (const sx_ctr *)p, *b = (const sx_ctr *)q;
  return a->site < b->site ? -1 : a->site > b->site;
}

/* The peer's counter cell c of chunk sd as a stored cell in *out, its
 * payload appended to x->cpay, where the caller made room for the row's
 * cells (so none moves). */
static int sx_reject_ctr(sync_txn *x, const sync_delta *sd, const sx_dcol *c,
                         sync_value *out) {
  const sx_ctr *rr = sx_dctr(sd, c->v.data);
  sx_ctr *t;
  size_t i;
  int rc;
  if ((rc = sx_buf_reserve(&x->ctrs, c->v.len * sizeof(sx_ctr)))) return rc;
  t = (sx_ctr *)(void *)x->ctrs.p;
  for (i = 0; i < c->v.len; i++) {
    t[i] = rr[i];
    if ((rc = sx_site_index(x, sd->sites[rr[i].site], 1, &t[i].site)))
      return rc;
  }
  qsort(t, c->v.len, sizeof *t, sx_ctr_sitecmp_r);
  if (SX_NEVER(x->cpay.len + sx_ctr_size(t, c->v.len) > x->cpay.cap))
    return SYNC_ECORRUPT;
  *out = sync_null();
  out->type = SX_TAG_COUNTER;
  out->data = x->cpay.p + x->cpay.len;
  out->len = sx_ctr_put(x->cpay.p + x->cpay.len, t, c->v.len);
  x->cpay.len += out->len;
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
  if ((found = sx_old_row(x, tid, cur, key, klen)) < 0) return found;
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
      size_t room = 0;
      for (i = 0; i < srow->ncols; i++)
        if (sd->cols[srow->col0 + i].v.type == SX_TAG_COUNTER)
          room += SX_VARINT_MAX +
                  sd->cols[srow->col0 + i].v.len * 4 * SX_VARINT_MAX;
      x->cpay.len = 0;
      if ((rc = sx_buf_reserve(&x->cpay, room))) goto done;
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
        if (c->v.type == SX_TAG_COUNTER &&
            (rc = sx_reject_ctr(x, sd, c, &rcol->v)))
          goto done;
      }
    }
    if ((rc = sx_store_row(x, tid, cur, key, klen, found, 0))) goto done;
  } else {
    /* The peer holds no row: the insert goes, without a tombstone
     * (nothing to replicate: the row never was anywhere else's). */
    if ((rc = sx_sums_drop(x, tid, key, klen, &x->old))) goto done;
    if ((sx_rh_on(env, tid) && (rc = sx_rh_forget(x, tid))) ||
        (rc = sx_cur_del(env->st, cur))) {
      x->failed = 1;
      goto done;
    }
    rc = sx_log_del(x, x->old.version, x->old.seq);
    if (rc && rc != SYNC_NOTFOUND) {
      x->failed = 1;
      goto done;
    }
    if (!rc) x->log_added--;
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
