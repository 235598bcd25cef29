/*
 * util.h - byte-level helpers shared by the storage and wire code:
 * LEB128 varints, zig-zag, little-endian loads and stores, a growable
 * buffer on our allocator.  Decoders are bounded by an end pointer and
 * never read past it.
 */
#ifndef SX_UTIL_H
#define SX_UTIL_H

#include "internal.h"

#define SX_VARINT_MAX 10

/* Write v as LEB128 at p (room for SX_VARINT_MAX bytes); returns bytes. */
SYNC_PRIVATE size_t sx_put_varint(unsigned char *p, uint64_t v);
/* Bytes sx_put_varint would write. */
SYNC_PRIVATE size_t sx_varint_len(uint64_t v);
/* Read a varint from [p, end); returns bytes read, or 0 when truncated,
 * longer than 10 bytes or over 64 bits. */
SYNC_PRIVATE size_t sx_get_varint(const unsigned char *p,
                                  const unsigned char *end, uint64_t *out);
/* sx_get_varint inline for one and two bytes, for what every row of a
 * scan reads: row heads, stamps and columns, and log entries. */
static inline size_t sx_get_varint2(const unsigned char *p,
                                    const unsigned char *end, uint64_t *out) {
  size_t left = (size_t)(end - p);
  if (left >= 1 && p[0] < 0x80) {
    *out = p[0];
    return 1;
  }
  if (left >= 2 && p[1] < 0x80) {
    *out = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
    return 2;
  }
  return sx_get_varint(p, end, out);
}

static inline uint64_t sx_zigzag(int64_t v) {
  return ((uint64_t)v << 1) ^ (uint64_t)(0 - (int64_t)((uint64_t)v >> 63));
}
static inline int64_t sx_unzigzag(uint64_t u) {
  return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

static inline void sx_put_le64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint64_t sx_get_le64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static inline void sx_put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}
static inline uint32_t sx_get_le32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}
static inline void sx_put_be64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (56 - 8 * i));
}
static inline uint64_t sx_get_be64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}
static inline void sx_put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}
static inline uint32_t sx_get_be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Doubles travel as their IEEE-754 bits, little-endian. */
static inline uint64_t sx_double_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}
static inline double sx_bits_double(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* A bounded reader over [p, end). */
typedef struct sx_rd {
  const unsigned char *p, *end;
  int bad;
} sx_rd;

static inline uint64_t sx_rv(sx_rd *r) {
  uint64_t v = 0;
  size_t n = r->bad ? 0 : sx_get_varint(r->p, r->end, &v);
  if (!n) {
    r->bad = 1;
    return 0;
  }
  r->p += n;
  return v;
}

static inline const unsigned char *sx_rbytes(sx_rd *r, size_t n) {
  const unsigned char *q = r->p;
  if (r->bad || n > (size_t)(r->end - r->p)) {
    r->bad = 1;
    return NULL;
  }
  r->p += n;
  return q;
}

/* A varint that must fit below lim. */
static inline uint64_t sx_rvb(sx_rd *r, uint64_t lim) {
  uint64_t v = sx_rv(r);
  if (v >= lim) r->bad = 1;
  return r->bad ? 0 : v;
}

/* Write varint v at p; returns the byte after it. */
static inline unsigned char *sx_wv(unsigned char *p, uint64_t v) {
  return p + sx_put_varint(p, v);
}

/* A growable byte buffer.  Memory from al; sx_buf_free releases it. */
typedef struct sx_buf {
  unsigned char *p;
  size_t len, cap;
  const sx_alloc *al;
} sx_buf;

SYNC_PRIVATE void sx_buf_init(sx_buf *b, const sx_alloc *al);
/* Make room for extra more bytes.  SYNC_ENOMEM or SYNC_ETOOBIG. */
SYNC_PRIVATE int sx_buf_reserve(sx_buf *b, size_t extra);
SYNC_PRIVATE void sx_buf_free(sx_buf *b);

/* The allocator a names (libc when NULL); SYNC_EINVAL for a partial
 * one. */
SYNC_PRIVATE int sx_alloc_from(const sync_allocator *a, sx_alloc *al);
/* Grow array *p of elem-byte items to hold need items (doubling). */
SYNC_PRIVATE int sx_grow(const sx_alloc *al, void **p, size_t *cap, size_t need,
                         size_t elem);
/* Byte order of keys, a shorter prefix first (LMDB's default order). */
SYNC_PRIVATE int sx_keycmp(const unsigned char *a, size_t an,
                           const unsigned char *b, size_t bn);

#endif
