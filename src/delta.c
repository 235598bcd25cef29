/*
 * delta.c - the delta object's life (new, free, the two public getters)
 * and the byte form of cursors and scopes, which frames, session messages
 * and peer records share.  Pure memory and bytes, below the storage, so
 * that the codec and the peer records build on it alone.
 */
#include "delta.h"

SYNC_PRIVATE sync_delta *sx_delta_new(const sx_alloc *al) {
  sync_delta *d = (sync_delta *)sx_malloc(al, sizeof *d);
  if (!d) return NULL;
  memset(d, 0, sizeof *d);
  d->al = *al;
  sx_buf_init(&d->arena, &d->al);
  return d;
}

SYNC_API void sync_delta_free(sync_delta *d) {
  sx_alloc al;
  if (!d) return;
  al = d->al;
  sx_free(&al, d->sites);
  sx_free(&al, d->vv);
  sx_free(&al, d->rows);
  sx_free(&al, d->cols);
  sx_free(&al, d->xrows);
  sx_free(&al, d->xcols);
  sx_free(&al, d->renew);
  sx_free(&al, d->fold);
  sx_buf_free(&d->arena);
  sx_free(&al, d);
}

SYNC_API size_t sync_delta_rows(const sync_delta *d) {
  return d ? d->nrows : 0;
}

SYNC_API int sync_delta_last(const sync_delta *d) { return d ? d->last : 0; }

SYNC_PRIVATE unsigned char *sx_wcursor(unsigned char *p, const sx_cursor *c) {
  *p++ = (unsigned char)c->mode;
  if (c->mode == SX_MODE_LOG) {
    p = sx_wv(p, c->version);
    return sx_wv(p, c->seq);
  }
  p = sx_wv(p, c->v0);
  p = sx_wv(p, c->tid);
  p = sx_wv(p, c->klen);
  memcpy(p, c->key, c->klen);
  return p + c->klen;
}

/* Bytes of a table set worth writing: trailing zero bytes left out. */
static size_t sx_tset_len(const unsigned char *t) {
  size_t n = SX_TBYTES;
  while (n && !t[n - 1]) n--;
  return n;
}

SYNC_PRIVATE unsigned char *sx_wscope(unsigned char *p, const sx_scope *s) {
  size_t n;
  *p++ = (unsigned char)s->flags;
  if (!(s->flags & SX_SCOPE_ON)) return p;
  sx_put_le64(p, s->fver);
  p += 8;
  n = sx_tset_len(s->tables);
  p = sx_wv(p, n);
  memcpy(p, s->tables, n);
  p += n;
  n = sx_tset_len(s->held);
  p = sx_wv(p, n);
  memcpy(p, s->held, n);
  return p + n;
}

SYNC_PRIVATE int sx_rscope(sx_rd *r, sx_scope *s) {
  const unsigned char *q = sx_rbytes(r, 1);
  uint64_t n;
  memset(s, 0, sizeof *s);
  if (!q ||
      (q[0] & ~(SX_SCOPE_ON | SX_SCOPE_FILTER | SX_SCOPE_EXITS |
                SX_SCOPE_RESTART)) ||
      (q[0] && !(q[0] & SX_SCOPE_ON)))
    return SYNC_EFORMAT;
  s->flags = q[0];
  if (!s->flags) return 0;
  if (!(q = sx_rbytes(r, 8))) return SYNC_EFORMAT;
  s->fver = sx_get_le64(q);
  n = sx_rvb(r, SX_TBYTES + 1);
  if (r->bad || !(q = sx_rbytes(r, (size_t)n))) return SYNC_EFORMAT;
  memcpy(s->tables, q, (size_t)n);
  n = sx_rvb(r, SX_TBYTES + 1);
  if (r->bad || !(q = sx_rbytes(r, (size_t)n))) return SYNC_EFORMAT;
  memcpy(s->held, q, (size_t)n);
  return 0;
}

SYNC_PRIVATE unsigned char *sx_wlineage(unsigned char *p,
                                        const sx_lineage *l) {
  unsigned i;
  p = sx_wv(p, l->n);
  for (i = 0; i < l->n; i++) {
    sx_put_le64(p, l->e[i].id);
    p = sx_wv(p + 8, l->e[i].start);
  }
  return p;
}

SYNC_PRIVATE int sx_rlineage(sx_rd *r, const sx_mark *m, sx_lineage *l) {
  uint64_t n = sx_rvb(r, SX_LINEAGE_MAX + 1), below = m->start;
  unsigned i;
  memset(l, 0, sizeof *l);
  if (r->bad || (n && !m->id)) return SYNC_EFORMAT;
  for (i = 0; i < n; i++) {
    const unsigned char *q = sx_rbytes(r, 8);
    uint64_t start = sx_rv(r);
    if (!q || r->bad || !sx_get_le64(q) || start >= below)
      return SYNC_EFORMAT;
    l->e[i].id = sx_get_le64(q);
    l->e[i].start = below = start;
  }
  l->n = (unsigned)n;
  return 0;
}

SYNC_PRIVATE int sx_rcursor(sx_rd *r, sx_cursor *c) {
  const unsigned char *m = sx_rbytes(r, 1);
  memset(c, 0, sizeof *c);
  if (!m) return SYNC_EFORMAT;
  c->mode = m[0];
  if (c->mode == SX_MODE_LOG) {
    c->version = sx_rv(r);
    c->seq = (uint32_t)sx_rvb(r, (uint64_t)UINT32_MAX + 1);
  } else if (c->mode == SX_MODE_INITIAL) {
    const unsigned char *k;
    c->v0 = sx_rv(r);
    c->tid = (uint32_t)sx_rvb(r, SYNC_MAX_TABLES + 1);
    c->klen = (size_t)sx_rvb(r, SYNC_MAX_KEY + 1);
    k = sx_rbytes(r, c->klen);
    if (k && c->klen) memcpy(c->key, k, c->klen);
  } else {
    return SYNC_EFORMAT;
  }
  return r->bad ? SYNC_EFORMAT : 0;
}
