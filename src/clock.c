/*
 * clock.c - HLC arithmetic and the default time and random sources.  The
 * library never reads the time or randomness except through the callbacks
 * in the env, so tests can drive both.
 */
#include "clock.h"

#include <stdio.h>
#include <time.h>

SYNC_PRIVATE uint64_t sx_hlc_next(uint64_t last, uint64_t now_ms) {
  uint64_t pt;
  if (now_ms > SX_HLC_MAX_MS) now_ms = SX_HLC_MAX_MS;
  pt = now_ms << 16;
  return pt > last ? pt : last + 1;
}

SYNC_PRIVATE uint64_t sx_default_clock(void *ctx) {
  struct timespec ts;
  (void)ctx;
  if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

SYNC_PRIVATE int sx_default_random(void *ctx, void *buf, size_t n) {
#ifdef SYNC_OMIT_DEFAULT_RANDOM
  (void)ctx;
  (void)buf;
  (void)n;
  return -1; /* the application must supply sync_env_set_random() */
#else
  FILE *f;
  size_t got;
  (void)ctx;
  f = fopen("/dev/urandom", "rb");
  if (!f) return -1;
  got = fread(buf, 1, n, f);
  fclose(f);
  return got == n ? 0 : -1;
#endif
}
