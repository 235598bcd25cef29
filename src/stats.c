/*
 * stats.c - operating counters and latency histograms of an env, and
 * their Prometheus text form.
 *
 * Histograms are log-linear (as HdrHistogram does it, with 4 bits of
 * sub-bucket precision): exact below 16, then 16 buckets per power of two
 * up to 2^44, so the memory is fixed (SYNC_HIST_BUCKETS counters) whatever
 * the number or size of samples, and a quantile read from the middle of
 * its bucket is within 1/32 of the exact sample.
 */
#include "stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#define SX_SUB_BITS 4
#define SX_SUB 16u
#define SX_TOP_EXP 44 /* 2^44 ns is almost 5 hours */

SYNC_PRIVATE unsigned sx_hist_bucket(uint64_t v) {
  unsigned e = 0;
  uint64_t t = v;
  if (v < SX_SUB) return (unsigned)v;
  if (v >= (UINT64_C(1) << SX_TOP_EXP)) return SYNC_HIST_BUCKETS - 1;
  /* e = floor(log2 v), without compiler builtins. */
  if (t >> 32) e += 32, t >>= 32;
  if (t >> 16) e += 16, t >>= 16;
  if (t >> 8) e += 8, t >>= 8;
  if (t >> 4) e += 4, t >>= 4;
  if (t >> 2) e += 2, t >>= 2;
  if (t >> 1) e += 1;
  return SX_SUB + (e - SX_SUB_BITS) * SX_SUB +
         (unsigned)((v >> (e - SX_SUB_BITS)) - SX_SUB);
}

SYNC_API uint64_t sync_histogram_bucket_low(unsigned i) {
  unsigned g, m;
  if (i < SX_SUB) return i;
  if (i >= SYNC_HIST_BUCKETS) return UINT64_C(1) << SX_TOP_EXP;
  g = (i - SX_SUB) / SX_SUB;
  m = (i - SX_SUB) % SX_SUB;
  return (uint64_t)(SX_SUB + m) << g;
}

SYNC_API void sync_histogram_add(sync_histogram *h, uint64_t v) {
  if (!h) return;
  if (!h->count || v < h->min) h->min = v;
  if (v > h->max) h->max = v;
  h->count++;
  h->sum += v;
  h->buckets[sx_hist_bucket(v)]++;
}

SYNC_API uint64_t sync_histogram_quantile(const sync_histogram *h, double q) {
  uint64_t total = 0, rank, seen = 0, lo, hi, mid;
  unsigned i;
  if (!h || !(q >= 0.0 && q <= 1.0)) return 0;
  /* The total from the buckets themselves: a copy taken while samples
   * arrive may have a count a little off theirs. */
  for (i = 0; i < SYNC_HIST_BUCKETS; i++) total += h->buckets[i];
  if (!total) return 0;
  rank = (uint64_t)(q * (double)total);
  if ((double)rank < q * (double)total) rank++; /* ceil */
  if (rank < 1) rank = 1;
  if (rank > total) rank = total;
  for (i = 0; i < SYNC_HIST_BUCKETS; i++) {
    seen += h->buckets[i];
    if (seen >= rank) break;
  }
  if (i == SYNC_HIST_BUCKETS) i--;
  lo = sync_histogram_bucket_low(i);
  hi = i + 1 < SYNC_HIST_BUCKETS ? sync_histogram_bucket_low(i + 1) : lo + 1;
  mid = lo + (hi - lo - 1) / 2;
  if (mid < h->min) mid = h->min;
  if (h->max && mid > h->max) mid = h->max;
  return mid;
}

SYNC_PRIVATE void sx_stats_init(sx_stats *s) {
  unsigned i, j;
  for (i = 0; i < SX_ST_NCOUNTERS; i++) SX_ASTORE(&s->c[i], 0);
  for (j = 0; j < SX_H_N; j++) {
    sx_hist *h = &s->h[j];
    SX_ASTORE(&h->count, 0);
    SX_ASTORE(&h->sum, 0);
    SX_ASTORE(&h->min, UINT64_MAX);
    SX_ASTORE(&h->max, 0);
    for (i = 0; i < SYNC_HIST_BUCKETS; i++) SX_ASTORE(&h->b[i], 0);
  }
}

SYNC_PRIVATE void sx_stats_time(sx_stats *s, int which, uint64_t ns) {
  sx_hist *h = &s->h[which];
  SX_AADD(&h->b[sx_hist_bucket(ns)], 1);
  SX_AADD(&h->sum, ns);
  SX_AADD(&h->count, 1);
#if defined(__STDC_NO_ATOMICS__) || defined(SYNC_OMIT_ATOMICS)
  if (ns < h->min) h->min = ns;
  if (ns > h->max) h->max = ns;
#else
  {
    uint64_t cur = SX_ALOAD(&h->min);
    while (ns < cur &&
           !atomic_compare_exchange_weak_explicit(
               &h->min, &cur, ns, memory_order_relaxed, memory_order_relaxed)) {
    }
    cur = SX_ALOAD(&h->max);
    while (ns > cur &&
           !atomic_compare_exchange_weak_explicit(
               &h->max, &cur, ns, memory_order_relaxed, memory_order_relaxed)) {
    }
  }
#endif
}

SYNC_PRIVATE uint64_t sx_now_ns(void) {
  struct timespec ts;
#if defined(CLOCK_MONOTONIC) && !defined(_WIN32)
  if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
#endif
  if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return 0;
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void sx_hist_copy(const sx_hist *h, sync_histogram *o) {
  unsigned i;
  o->count = SX_ALOAD(&h->count);
  o->sum = SX_ALOAD(&h->sum);
  o->min = SX_ALOAD(&h->min);
  o->max = SX_ALOAD(&h->max);
  if (!o->count) o->min = o->max = 0;
  for (i = 0; i < SYNC_HIST_BUCKETS; i++) o->buckets[i] = SX_ALOAD(&h->b[i]);
}

/* sync_env_stats (env.c) needs the env; this
 * copies the part that is ours. */
SYNC_PRIVATE void sx_stats_copy(const sx_stats *s, sync_stats *out) {
  uint64_t c[SX_ST_NCOUNTERS];
  unsigned i;
  for (i = 0; i < SX_ST_NCOUNTERS; i++) c[i] = SX_ALOAD(&s->c[i]);
  memset(out, 0, sizeof *out);
  out->commits = c[SX_ST_COMMITS];
  out->rows_written = c[SX_ST_ROWS_WRITTEN];
  out->sessions = c[SX_ST_SESSIONS];
  out->sessions_failed = c[SX_ST_SESSIONS_FAILED];
  out->chunks_sent = c[SX_ST_CHUNKS_SENT];
  out->chunks_received = c[SX_ST_CHUNKS_RECEIVED];
  out->rows_sent = c[SX_ST_ROWS_SENT];
  out->rows_received = c[SX_ST_ROWS_RECEIVED];
  out->bytes_sent = c[SX_ST_BYTES_SENT];
  out->bytes_received = c[SX_ST_BYTES_RECEIVED];
  out->frame_bytes_sent = c[SX_ST_FRAME_BYTES_SENT];
  out->frame_bytes_received = c[SX_ST_FRAME_BYTES_RECEIVED];
  out->raw_bytes_sent = c[SX_ST_RAW_BYTES_SENT];
  out->raw_bytes_received = c[SX_ST_RAW_BYTES_RECEIVED];
  out->applies = c[SX_ST_APPLIES];
  out->rows_applied = c[SX_ST_ROWS_APPLIED];
  out->conflicts = c[SX_ST_CONFLICTS];
  out->refused = c[SX_ST_REFUSED];
  out->retries = c[SX_ST_RETRIES];
  out->corrupt = c[SX_ST_CORRUPT];
  out->tombstones_collected = c[SX_ST_TOMBSTONES_COLLECTED];
  sx_hist_copy(&s->h[SX_H_COMMIT], &out->commit_ns);
  sx_hist_copy(&s->h[SX_H_APPLY], &out->apply_ns);
  sx_hist_copy(&s->h[SX_H_SESSION], &out->session_ns);
}

/* ---------------------------------------------------------------------
 * Prometheus text exposition format
 * ------------------------------------------------------------------- */
typedef struct sx_pw {
  char *buf;
  size_t cap, len;
} sx_pw;

static void sx_pf(sx_pw *w, const char *fmt, ...) {
  va_list ap;
  int n;
  char *at = w->len < w->cap ? w->buf + w->len : NULL;
  size_t room = w->len < w->cap ? w->cap - w->len : 0;
  va_start(ap, fmt);
  n = vsnprintf(at, room, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
  va_end(ap);
  if (n > 0) w->len += (size_t)n;
}

static void sx_pcounter(sx_pw *w, const char *name, const char *help,
                        uint64_t v) {
  sx_pf(w,
        "# HELP sync_%s_total %s\n# TYPE sync_%s_total counter\n"
        "sync_%s_total %llu\n",
        name, help, name, name, (unsigned long long)v);
}

static void sx_pdir(sx_pw *w, const char *name, const char *help, uint64_t sent,
                    uint64_t received) {
  sx_pf(w,
        "# HELP sync_%s_total %s\n# TYPE sync_%s_total counter\n"
        "sync_%s_total{direction=\"sent\"} %llu\n"
        "sync_%s_total{direction=\"received\"} %llu\n",
        name, help, name, name, (unsigned long long)sent, name,
        (unsigned long long)received);
}

/* Nanoseconds as exact decimal seconds ("0.000001024"): an le label is
 * matched as text by whoever aggregates the series, so it must not
 * depend on how a double rounds. */
static void sx_psec(char *out, size_t cap, uint64_t ns) {
  int n =
      snprintf(out, cap, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
               (unsigned long long)(ns % 1000000000u));
  while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.') out[--n] = 0;
}

/* A histogram in seconds.  The buckets are the library's own, merged at
 * each power of two from 2^SX_LE_LO ns (about 1 us) to 2^SX_LE_HI ns
 * (about 18 minutes): a power of two is an edge of the log-linear
 * buckets, so each le counts exactly the samples below it, and every
 * server of a fleet has the same edges (histogram_quantile sums them). */
#define SX_LE_LO 10
#define SX_LE_HI 40
static void sx_phist(sx_pw *w, const char *name, const char *help,
                     const sync_histogram *h) {
  uint64_t cum = 0;
  unsigned i = 0, e;
  char le[32];
  sx_pf(w, "# HELP sync_%s_seconds %s\n# TYPE sync_%s_seconds histogram\n",
        name, help, name);
  for (e = SX_LE_LO; e <= SX_LE_HI; e++) {
    uint64_t edge = UINT64_C(1) << e;
    for (; i < SYNC_HIST_BUCKETS && sync_histogram_bucket_low(i) < edge; i++)
      cum += h->buckets[i];
    sx_psec(le, sizeof le, edge);
    sx_pf(w, "sync_%s_seconds_bucket{le=\"%s\"} %llu\n", name, le,
          (unsigned long long)cum);
  }
  /* +Inf from the buckets too, so it is never below the last le even in
   * a copy taken while samples arrive; _count is the same number. */
  for (; i < SYNC_HIST_BUCKETS; i++) cum += h->buckets[i];
  sx_pf(w, "sync_%s_seconds_bucket{le=\"+Inf\"} %llu\n", name,
        (unsigned long long)cum);
  sx_pf(w, "sync_%s_seconds_sum %.9f\nsync_%s_seconds_count %llu\n", name,
        (double)h->sum / 1e9, name, (unsigned long long)cum);
  sx_pf(w,
        "# HELP sync_%s_seconds_max Largest sample of sync_%s_seconds.\n"
        "# TYPE sync_%s_seconds_max gauge\nsync_%s_seconds_max %.9f\n",
        name, name, name, name, (double)h->max / 1e9);
}

SYNC_API int64_t sync_stats_prometheus(const sync_stats *st, char *buf,
                                       size_t cap) {
  sx_pw w;
  if (!st || (!buf && cap)) return SYNC_EINVAL;
  w.buf = buf;
  w.cap = cap;
  w.len = 0;
  if (cap) buf[0] = 0;
  sx_pf(&w,
        "# HELP sync_build_info The library's version (the value is 1).\n"
        "# TYPE sync_build_info gauge\nsync_build_info{version=\"%s\"} 1\n",
        SYNC_VERSION_STRING);
  sx_pcounter(&w, "commits", "Write transactions committed.", st->commits);
  sx_pcounter(&w, "rows_written", "Rows written by committed transactions.",
              st->rows_written);
  sx_pcounter(&w, "sessions", "Sessions ended.", st->sessions);
  sx_pcounter(&w, "sessions_failed", "Sessions that ended with an error.",
              st->sessions_failed);
  sx_pdir(&w, "chunks", "Delta chunks exchanged in sessions.", st->chunks_sent,
          st->chunks_received);
  sx_pdir(&w, "rows", "Rows in the delta chunks exchanged.", st->rows_sent,
          st->rows_received);
  sx_pdir(&w, "bytes", "Session bytes on the transport.", st->bytes_sent,
          st->bytes_received);
  sx_pdir(&w, "frame_bytes", "Delta frame bytes as sent (compressed).",
          st->frame_bytes_sent, st->frame_bytes_received);
  sx_pdir(&w, "raw_bytes", "Delta frame bodies before compression.",
          st->raw_bytes_sent, st->raw_bytes_received);
  sx_pcounter(&w, "applies", "Delta chunks applied.", st->applies);
  sx_pcounter(&w, "rows_applied", "Rows in the chunks applied.",
              st->rows_applied);
  sx_pcounter(&w, "conflicts", "Conflicts recorded.", st->conflicts);
  sx_pcounter(&w, "refused", "Rows refused by the sender's rights.",
              st->refused);
  sx_pcounter(&w, "retries", "Session retries.", st->retries);
  sx_pcounter(&w, "corrupt", "Corruption detected (SYNC_ECORRUPT).",
              st->corrupt);
  sx_pcounter(&w, "tombstones_collected", "Tombstones collected by gc.",
              st->tombstones_collected);
  sx_phist(&w, "commit", "Latency of write transaction commits.",
           &st->commit_ns);
  sx_phist(&w, "apply", "Latency of applying one delta chunk.", &st->apply_ns);
  sx_phist(&w, "session", "Duration of whole sessions.", &st->session_ns);
  return (int64_t)w.len;
}
