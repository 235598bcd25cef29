/*
 * fuzz_frame.h - how the fuzz targets read their input.  The first byte
 * selects a mode; the rest is a frame, or a frame body that the target
 * wraps in a valid header and XXH3-64 checksum itself, so that mutations
 * reach the body decoder (and merge) instead of dying at the checksum.
 *
 *   byte 0, bits 0-1  0: the rest is a raw frame, used as it is
 *                     1: the rest is a body: stored frame (flags 0)
 *                     2: the rest is a body: zstd level 1 frame
 *                     3: the rest is flags (1 byte), raw length (varint,
 *                        only with the zstd flag), dictionary id (4 bytes,
 *                        only with the dictionary flag), then the stored
 *                        bytes: header fields of the fuzzer's choosing,
 *                        e.g. malformed zstd data, behind a valid checksum
 *           bit 2     minor version 1 instead of 0 (a newer minor
 *                     version may append what a reader skips)
 *           bits 3-7  seed of the fragment sizes fed to sync_decoder_feed
 *
 * Header-only (static inline functions), shared by the targets, the corpus
 * generator and the replay driver.  FORMAT: magic d5 'S' 'Y' 'N', major 1,
 * minor, flags, varint stored length, [varint raw length], [u32 dict id],
 * stored bytes, u64 LE XXH3_64bits of everything before.
 */
#ifndef SYNC_FUZZ_FRAME_H
#define SYNC_FUZZ_FRAME_H

#include "sync.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#define FZ_MODE_RAW 0u
#define FZ_MODE_BODY 1u
#define FZ_MODE_BODY_ZSTD 2u
#define FZ_MODE_FIELDS 3u
#define FZ_MODE_MINOR1 4u

/* Stop the process with a message: libFuzzer records it as a crash. */
#define FZ_BUG(...)                                                          \
  do {                                                                       \
    fprintf(stderr, "fuzz: " __VA_ARGS__);                                   \
    fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__);                       \
    abort();                                                                 \
  } while (0)

static inline size_t fz_put_varint(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) p[n++] = (unsigned char)(v | 0x80), v >>= 7;
  p[n++] = (unsigned char)v;
  return n;
}

static inline size_t fz_get_varint(const unsigned char *p, size_t n, uint64_t *v) {
  size_t i;
  *v = 0;
  for (i = 0; i < n && i < 10; i++) {
    *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) return i + 1;
  }
  return 0;
}

/* Header + stored bytes + checksum into a new buffer (free()). */
static inline unsigned char *fz_frame(unsigned minor, unsigned flags, int has_raw,
                               uint64_t raw, int has_dict, uint32_t dict,
                               const unsigned char *stored, size_t n,
                               size_t *len) {
  unsigned char *f = (unsigned char *)malloc(n + 64);
  size_t m = 0;
  uint64_t h;
  int i;
  if (!f) FZ_BUG("out of memory");
  f[m++] = 0xd5;
  f[m++] = 'S';
  f[m++] = 'Y';
  f[m++] = 'N';
  f[m++] = 1;
  f[m++] = (unsigned char)minor;
  f[m++] = (unsigned char)flags;
  m += fz_put_varint(f + m, n);
  if (has_raw) m += fz_put_varint(f + m, raw);
  if (has_dict) {
    for (i = 0; i < 4; i++) f[m++] = (unsigned char)(dict >> (8 * i));
  }
  if (n) memcpy(f + m, stored, n);
  m += n;
  h = XXH3_64bits(f, m);
  for (i = 0; i < 8; i++) f[m + (size_t)i] = (unsigned char)(h >> (8 * i));
  *len = m + 8;
  return f;
}

/* The frame an input stands for (see the top of this file), in a new
 * buffer (free()), and the fragment seed.  NULL for an empty input. */
static inline unsigned char *fz_input_frame(const uint8_t *data, size_t size,
                                     size_t *len, unsigned *seed) {
  unsigned mode, minor;
  const unsigned char *p = data + 1;
  size_t n = size ? size - 1 : 0;
  unsigned char *f;
  if (!size) return NULL;
  mode = data[0] & 3u;
  minor = (data[0] & FZ_MODE_MINOR1) ? 1 : 0;
  *seed = data[0] >> 3;
  switch (mode) {
  case FZ_MODE_RAW:
    f = (unsigned char *)malloc(n ? n : 1);
    if (!f) FZ_BUG("out of memory");
    if (n) memcpy(f, p, n);
    *len = n;
    return f;
  case FZ_MODE_BODY:
    return fz_frame(minor, 0, 0, 0, 0, 0, p, n, len);
  case FZ_MODE_BODY_ZSTD: {
    size_t cap = ZSTD_compressBound(n), z;
    unsigned char *zb = (unsigned char *)malloc(cap ? cap : 1);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    if (!zb || !cc) FZ_BUG("out of memory");
    /* As the encoder writes them: no content size, no dictionary id. */
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_dictIDFlag, 0);
    z = ZSTD_compress2(cc, zb, cap, p, n);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(z)) FZ_BUG("zstd: %s", ZSTD_getErrorName(z));
    f = fz_frame(minor, 1, 1, n, 0, 0, zb, z, len);
    free(zb);
    return f;
  }
  default: { /* FZ_MODE_FIELDS */
    unsigned flags = n ? p[0] : 0;
    uint64_t raw = 0;
    uint32_t dict = 0;
    size_t k;
    if (n) p++, n--;
    if (flags & 1u) {
      k = fz_get_varint(p, n, &raw);
      p += k, n -= k;
    }
    if ((flags & 2u) && n >= 4) {
      dict = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
             (uint32_t)p[3] << 24;
      p += 4, n -= 4;
    }
    return fz_frame(minor, flags, (flags & 1u) != 0, raw, (flags & 2u) != 0,
                    dict, p, n, len);
  }
  }
}

/* Fragment sizes for sync_decoder_feed: a small xorshift stream from the
 * seed; seed 0 feeds one byte at a time, others mix tiny and large. */
static inline size_t fz_next_fragment(uint32_t *state, unsigned seed) {
  uint32_t x = *state;
  if (seed == 0) return 1;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  switch (x & 3u) {
  case 0: return 1;
  case 1: return 1 + ((x >> 8) % 8);
  case 2: return 1 + ((x >> 8) % (64 * seed));
  default: return 1 + ((x >> 8) % 4096);
  }
}

#endif
