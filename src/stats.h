/*
 * stats.h - per-env operating counters and latency histograms in fixed
 * memory (docs/API.md, "Stats").  The env owns one sx_stats; the engine
 * and session.c add to it at their hook points and sync_env_stats() copies
 * it out.
 *
 * Concurrency: every field is a C11 atomic updated with relaxed order, so
 * hooks on several threads (sessions of one env on different threads, a
 * writer and a reader of the stats) never race.  A copy is not a snapshot
 * across fields: a counter read a moment after another may include one
 * more event.  Builds without C11 atomics (__STDC_NO_ATOMICS__, or
 * SYNC_OMIT_ATOMICS) use plain integers: then the stats are exact only
 * while one thread at a time uses the env.
 */
#ifndef SX_STATS_H
#define SX_STATS_H

#include "internal.h"

#if defined(__STDC_NO_ATOMICS__) || defined(SYNC_OMIT_ATOMICS)
typedef uint64_t sx_a64;
#define SX_ALOAD(p) (*(p))
#define SX_AADD(p, v) (*(p) += (v))
#define SX_ASTORE(p, v) (*(p) = (v))
#else
#include <stdatomic.h>
typedef _Atomic uint64_t sx_a64;
#define SX_ALOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define SX_AADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define SX_ASTORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#endif

/* Counters, in the order of the fields of sync_stats. */
enum {
  SX_ST_COMMITS,
  SX_ST_ROWS_WRITTEN,
  SX_ST_SESSIONS,
  SX_ST_SESSIONS_FAILED,
  SX_ST_CHUNKS_SENT,
  SX_ST_CHUNKS_RECEIVED,
  SX_ST_ROWS_SENT,
  SX_ST_ROWS_RECEIVED,
  SX_ST_BYTES_SENT,
  SX_ST_BYTES_RECEIVED,
  SX_ST_FRAME_BYTES_SENT,
  SX_ST_FRAME_BYTES_RECEIVED,
  SX_ST_RAW_BYTES_SENT,
  SX_ST_RAW_BYTES_RECEIVED,
  SX_ST_APPLIES,
  SX_ST_ROWS_APPLIED,
  SX_ST_CONFLICTS,
  SX_ST_REFUSED,
  SX_ST_RETRIES,
  SX_ST_CORRUPT,
  SX_ST_TOMBSTONES_COLLECTED,
  SX_ST_NCOUNTERS
};

enum { SX_H_COMMIT, SX_H_APPLY, SX_H_SESSION, SX_H_N };

typedef struct sx_hist {
  sx_a64 count, sum, min, max;
  sx_a64 b[SYNC_HIST_BUCKETS];
} sx_hist;

typedef struct sx_stats {
  sx_a64 c[SX_ST_NCOUNTERS];
  sx_hist h[SX_H_N];
} sx_stats;

SYNC_PRIVATE void sx_stats_init(sx_stats *s);
static inline void sx_stats_add(sx_stats *s, int counter, uint64_t n) {
  if (n) SX_AADD(&s->c[counter], n);
}
/* Record one latency sample of ns nanoseconds in histogram h. */
SYNC_PRIVATE void sx_stats_time(sx_stats *s, int h, uint64_t ns);
/* A nanosecond clock for latencies: monotonic where POSIX offers one,
 * else C11 timespec_get (wall clock: a step back records 0). */
SYNC_PRIVATE uint64_t sx_now_ns(void);
/* Copy the stats out (sync_env_stats). */
SYNC_PRIVATE void sx_stats_copy(const sx_stats *s, sync_stats *out);
/* Bucket of value v (0 .. SYNC_HIST_BUCKETS-1). */
SYNC_PRIVATE unsigned sx_hist_bucket(uint64_t v);

#endif
