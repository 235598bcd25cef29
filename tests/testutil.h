/*
 * testutil.h - helpers shared by the public-API tests: scratch database
 * paths, a counting allocator that can fail its Nth allocation, a
 * deterministic clock and random source, a small PRNG and assertion
 * macros that print sync error codes by name.
 *
 * Everything here is static inline, so a test that uses only part of it
 * compiles warning-free.  Include it instead of cmocka.h: cmocka needs
 * its system headers first.
 */
#ifndef SYNC_TESTUTIL_H
#define SYNC_TESTUTIL_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "sync.h"

/* ---------------------------------------------------------------------
 * Assertions on return codes: print the code, its name and the call.
 * ------------------------------------------------------------------- */
#define TU_RC(expr, want)                                                      \
  do {                                                                         \
    int tu_rc_ = (expr);                                                       \
    int tu_want_ = (want);                                                     \
    if (tu_rc_ != tu_want_) {                                                  \
      print_error("%s:%d: %s\n  returned %d (%s), expected %d (%s)\n",         \
                  __FILE__, __LINE__, #expr, tu_rc_, sync_strerror(tu_rc_),    \
                  tu_want_, sync_strerror(tu_want_));                          \
      fail();                                                                  \
    }                                                                          \
  } while (0)
#define TU_OK(expr) TU_RC(expr, SYNC_OK)

/* Equality of unsigned 64-bit quantities, printed in decimal. */
#define TU_U64(a, b)                                                           \
  do {                                                                         \
    uint64_t tu_a_ = (uint64_t)(a), tu_b_ = (uint64_t)(b);                     \
    if (tu_a_ != tu_b_) {                                                      \
      print_error("%s:%d: %s == %s\n  got %llu, expected %llu\n", __FILE__,    \
                  __LINE__, #a, #b, (unsigned long long)tu_a_,                 \
                  (unsigned long long)tu_b_);                                  \
      fail();                                                                  \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------------------------
 * Scratch files (tests run in build/, so paths are relative).
 * ------------------------------------------------------------------- */
static inline void tu_lock_path(const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s-lock", path);
}

static inline void tu_remove_db(const char *path) {
  char lock[1024];
  tu_lock_path(path, lock, sizeof lock);
  remove(path);
  remove(lock);
}

/* In a child process that stands for a full disk: every file may grow
 * to size bytes and no further (RLIMIT_FSIZE, hard and soft), a write
 * past it failing (EFBIG) or stopping short, and SIGXFSZ is ignored so
 * that the write returns instead of ending the process.  0 or -1. */
static inline int tu_limit_file_size(size_t size) {
  struct rlimit rl;
  signal(SIGXFSZ, SIG_IGN);
  rl.rlim_cur = rl.rlim_max = (rlim_t)size;
  return setrlimit(RLIMIT_FSIZE, &rl);
}

static inline int tu_file_exists(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  fclose(f);
  return 1;
}

/* Read a whole file into a malloc'd buffer; NULL on failure. */
static inline unsigned char *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  unsigned char *p = NULL;
  size_t cap = 0, n = 0;
  if (!f) return NULL;
  for (;;) {
    size_t got;
    if (n == cap) {
      unsigned char *q;
      cap = cap ? cap * 2 : 65536;
      q = (unsigned char *)realloc(p, cap);
      if (!q) {
        free(p);
        fclose(f);
        return NULL;
      }
      p = q;
    }
    got = fread(p + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  *len = n;
  return p;
}

static inline int tu_write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok;
  if (!f) return -1;
  ok = fwrite(p, 1, n, f) == n;
  if (fclose(f) != 0) ok = 0;
  return ok ? 0 : -1;
}

/* First occurrence of needle in hay at or after from; (size_t)-1 if none. */
static inline size_t tu_find(const unsigned char *hay, size_t hn,
                             const unsigned char *needle, size_t nn,
                             size_t from) {
  size_t i;
  if (nn == 0 || hn < nn) return (size_t)-1;
  for (i = from; i + nn <= hn; i++)
    if (hay[i] == needle[0] && memcmp(hay + i, needle, nn) == 0) return i;
  return (size_t)-1;
}

/* ---------------------------------------------------------------------
 * Counting allocator.  Counts every call that asks for memory (malloc,
 * and realloc with a non-zero size), fails the fail_at-th one (1-based;
 * 0 = never), and tracks live blocks and bytes so a test can assert that
 * everything was freed.
 * ------------------------------------------------------------------- */
typedef union tu_hdr {
  max_align_t align;
  size_t size;
} tu_hdr;

typedef struct tu_alloc {
  unsigned long calls;    /* allocation requests seen */
  unsigned long fail_at;  /* request number to fail; 0 = never */
  int fail_rest;          /* also fail every request after fail_at */
  unsigned long failures; /* requests refused */
  long live_blocks;
  size_t live_bytes, peak_bytes;
  unsigned long frees;
} tu_alloc;

static inline int tu_alloc_should_fail(tu_alloc *a) {
  a->calls++;
  if (a->fail_at &&
      (a->calls == a->fail_at || (a->fail_rest && a->calls > a->fail_at))) {
    a->failures++;
    return 1;
  }
  return 0;
}

static inline void *tu_malloc(void *ctx, size_t n) {
  tu_alloc *a = (tu_alloc *)ctx;
  tu_hdr *h;
  if (tu_alloc_should_fail(a)) return NULL;
  h = (tu_hdr *)malloc(sizeof *h + n);
  if (!h) return NULL;
  h->size = n;
  a->live_blocks++;
  a->live_bytes += n;
  if (a->live_bytes > a->peak_bytes) a->peak_bytes = a->live_bytes;
  return h + 1;
}

static inline void tu_free(void *ctx, void *p) {
  tu_alloc *a = (tu_alloc *)ctx;
  tu_hdr *h;
  if (!p) return;
  h = (tu_hdr *)p - 1;
  a->live_blocks--;
  a->live_bytes -= h->size;
  a->frees++;
  free(h);
}

static inline void *tu_realloc(void *ctx, void *p, size_t n) {
  tu_alloc *a = (tu_alloc *)ctx;
  tu_hdr *h, *q;
  size_t old;
  if (!p) return tu_malloc(ctx, n);
  if (tu_alloc_should_fail(a)) return NULL; /* p stays valid */
  h = (tu_hdr *)p - 1;
  old = h->size;
  q = (tu_hdr *)realloc(h, sizeof *q + n);
  if (!q) return NULL;
  q->size = n;
  a->live_bytes = a->live_bytes - old + n;
  if (a->live_bytes > a->peak_bytes) a->peak_bytes = a->live_bytes;
  return q + 1;
}

static inline sync_allocator tu_allocator(tu_alloc *a) {
  sync_allocator s;
  s.ctx = a;
  s.malloc = tu_malloc;
  s.realloc = tu_realloc;
  s.free = tu_free;
  return s;
}

/* ---------------------------------------------------------------------
 * Deterministic clock: returns now, then adds step.
 * ------------------------------------------------------------------- */
typedef struct tu_clock {
  uint64_t now;
  uint64_t step;
  unsigned long calls;
} tu_clock;

static inline uint64_t tu_clock_fn(void *ctx) {
  tu_clock *c = (tu_clock *)ctx;
  uint64_t t = c->now;
  c->now += c->step;
  c->calls++;
  return t;
}

/* ---------------------------------------------------------------------
 * Deterministic random source: byte i of a request is base + 7 * i.
 * ------------------------------------------------------------------- */
typedef struct tu_random {
  uint8_t base;
  unsigned long calls;
  int fail; /* nonzero: report failure */
} tu_random;

static inline uint8_t tu_random_byte(uint8_t base, size_t i) {
  return (uint8_t)(base + 7u * (unsigned)i);
}

static inline int tu_random_fn(void *ctx, void *buf, size_t n) {
  tu_random *r = (tu_random *)ctx;
  unsigned char *p = (unsigned char *)buf;
  size_t i;
  r->calls++;
  if (r->fail) return -1;
  /* A site id (16 bytes) is the base's bytes; other draws (epoch ids)
   * differ on every call. */
  for (i = 0; i < n; i++)
    p[i] = (uint8_t)(tu_random_byte(r->base, i) ^
                     (n != 16 ? (uint8_t)(0x5b * r->calls + 3 * i) : 0));
  return 0;
}

/* ---------------------------------------------------------------------
 * PRNG (splitmix64) for data and property tests.
 * ------------------------------------------------------------------- */
typedef struct tu_rng {
  uint64_t s;
} tu_rng;

static inline uint64_t tu_next(tu_rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static inline uint64_t tu_below(tu_rng *r, uint64_t n) {
  return tu_next(r) % n;
}

static inline void tu_fill(tu_rng *r, void *buf, size_t n) {
  unsigned char *p = (unsigned char *)buf;
  size_t i;
  for (i = 0; i < n; i++) p[i] = (unsigned char)tu_next(r);
}

/* ---------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------- */
static inline int tu_value_equal(const sync_value *a, const sync_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case SYNC_NULL:
    return 1;
  case SYNC_INTEGER:
    return a->i == b->i;
  case SYNC_REAL:
    return memcmp(&a->r, &b->r, sizeof a->r) == 0; /* bits, so NaN, -0.0 */
  case SYNC_TEXT:
  case SYNC_BLOB:
    return a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
  default:
    return 0;
  }
}

#define TU_VALUE_EQ(got, want)                                                 \
  do {                                                                         \
    const sync_value *tu_g_ = (got), *tu_w_ = (want);                          \
    if (!tu_value_equal(tu_g_, tu_w_)) {                                       \
      print_error("%s:%d: value %s differs from %s (types %d, %d)\n",          \
                  __FILE__, __LINE__, #got, #want, tu_g_->type, tu_w_->type);  \
      fail();                                                                  \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------------------------
 * Environments
 * ------------------------------------------------------------------- */

/* Create an env with the given schema (NULL: none declared), a
 * deterministic site id and open it at path.  Asserts success. */
static inline sync_env *tu_open_env(const char *path,
                                    const sync_table_def *tables,
                                    unsigned ntables, unsigned flags) {
  static tu_random rnd = {0x11, 0, 0};
  sync_env *env = NULL;
  TU_OK(sync_env_create(NULL, &env));
  assert_non_null(env);
  TU_OK(sync_env_set_random(env, tu_random_fn, &rnd));
  if (tables) TU_OK(sync_env_set_schema(env, tables, ntables));
  TU_OK(sync_env_open(env, path, flags));
  return env;
}

#endif
