/*
 * util.c - varints, the growable buffer, the default allocator and the
 * error strings.
 */
#include "util.h"

#include <stdlib.h>

SYNC_PRIVATE size_t sx_put_varint(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (unsigned char)v;
  return n;
}

SYNC_PRIVATE size_t sx_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

SYNC_PRIVATE size_t sx_get_varint(const unsigned char *p,
                                  const unsigned char *end, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  if (p < end && p[0] < 0x80) { /* most are one byte */
    *out = p[0];
    return 1;
  }
  for (i = 0; i < SX_VARINT_MAX && p + i < end; i++) {
    uint64_t b = p[i];
    /* The tenth byte may carry only the top bit of 64. */
    if (i == 9 && b > 1) return 0;
    v |= (b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *out = v;
      return i + 1;
    }
  }
  return 0;
}

static void *sx_libc_malloc(void *ctx, size_t n) {
  (void)ctx;
  return malloc(n);
}
static void *sx_libc_realloc(void *ctx, void *p, size_t n) {
  (void)ctx;
  return realloc(p, n);
}
static void sx_libc_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

SYNC_PRIVATE void sx_alloc_default(sx_alloc *al) {
  al->a.ctx = NULL;
  al->a.malloc = sx_libc_malloc;
  al->a.realloc = sx_libc_realloc;
  al->a.free = sx_libc_free;
}

SYNC_PRIVATE void *sx_malloc(const sx_alloc *al, size_t n) {
  return al->a.malloc(al->a.ctx, n ? n : 1);
}
SYNC_PRIVATE void *sx_realloc(const sx_alloc *al, void *p, size_t n) {
  return al->a.realloc(al->a.ctx, p, n ? n : 1);
}
SYNC_PRIVATE void sx_free(const sx_alloc *al, void *p) {
  if (p) al->a.free(al->a.ctx, p);
}

SYNC_PRIVATE void sx_buf_init(sx_buf *b, const sx_alloc *al) {
  b->p = NULL;
  b->len = b->cap = 0;
  b->al = al;
}

SYNC_PRIVATE int sx_buf_reserve(sx_buf *b, size_t extra) {
  size_t need, cap;
  unsigned char *np;
  if (extra > SIZE_MAX / 2 - b->len) return SYNC_ETOOBIG;
  need = b->len + extra;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  np = (unsigned char *)sx_realloc(b->al, b->p, cap);
  if (!np) return SYNC_ENOMEM;
  b->p = np;
  b->cap = cap;
  return 0;
}

SYNC_PRIVATE void sx_buf_free(sx_buf *b) {
  sx_free(b->al, b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

SYNC_API const char *sync_strerror(int err) {
  switch (err) {
  case SYNC_OK: return "success";
  case SYNC_NOTFOUND: return "not found";
  case SYNC_EINVAL: return "invalid argument";
  case SYNC_ENOMEM: return "out of memory";
  case SYNC_EIO: return "I/O error";
  case SYNC_ENOSPC: return "no space left on the file system";
  case SYNC_EMAPFULL: return "database map is full and cannot grow";
  case SYNC_EREADONLY: return "database or transaction is read-only";
  case SYNC_ESCHEMA: return "schema differs from the database's";
  case SYNC_ENOTDB: return "file is not a sync database";
  case SYNC_EVERSION: return "database made by an incompatible version";
  case SYNC_EBUSY: return "resource busy";
  case SYNC_ETOOBIG: return "key or value too large";
  case SYNC_ETYPE: return "value type does not match the column";
  case SYNC_ECONSTRAINT: return "NULL in a NOT NULL column";
  case SYNC_ELIMIT: return "limit exceeded";
  case SYNC_EEXIST: return "already exists";
  case SYNC_ETXN: return "transaction failed earlier and must be aborted";
  case SYNC_EACCES: return "permission denied";
  case SYNC_ECORRUPT: return "database corrupt: checksum mismatch";
  case SYNC_EPANIC: return "fatal database error; close the environment";
  case SYNC_EFORMAT: return "malformed batch frame";
  case SYNC_ECHECKSUM: return "batch frame fails its checksum";
  case SYNC_EDICT: return "batch frame needs another compression dictionary";
  case SYNC_ENOTSUP: return "not supported by this build";
  case SYNC_EPERM: return "refused by the rights granted to the peer";
  case SYNC_EPROTO: return "protocol violation by the peer";
  case SYNC_EPEER: return "the peer ended the session with an error";
  case SYNC_ECLOSED: return "connection closed before the session was done";
  case SYNC_ETIMEOUT: return "timed out waiting for the peer";
  case SYNC_ESTALE: return "peer is behind collected tombstones: sync from the start";
  case SYNC_EHISTORY: return "this replica was restored or copied: it takes a new site id; sync again";
  case SYNC_EPRUNED: return "point before what the table's history keeps";
  default: return "unknown error";
  }
}

SYNC_PRIVATE int sx_alloc_from(const sync_allocator *a, sx_alloc *al) {
  if (!a) {
    sx_alloc_default(al);
    return 0;
  }
  if (!a->malloc || !a->realloc || !a->free) return SYNC_EINVAL;
  al->a = *a;
  return 0;
}

SYNC_PRIVATE int sx_grow(const sx_alloc *al, void **p, size_t *cap, size_t need,
                         size_t elem) {
  size_t ncap;
  void *np;
  if (need <= *cap) return 0;
  ncap = *cap ? *cap * 2 : 64;
  while (ncap < need) ncap *= 2;
  np = sx_realloc(al, *p, ncap * elem);
  if (!np) return SYNC_ENOMEM;
  *p = np;
  *cap = ncap;
  return 0;
}

SYNC_PRIVATE int sx_keycmp(const unsigned char *a, size_t an,
                           const unsigned char *b, size_t bn) {
  int d = memcmp(a, b, an < bn ? an : bn);
  if (d) return d;
  return an < bn ? -1 : an > bn;
}
