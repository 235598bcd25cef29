/*
 * bench.h - the harness shared by every workload: options, a seeded PRNG,
 * the clock, scratch files, alternating rounds and the `bench:` output
 * lines.  A workload is one function in the table in bench.c; it makes its
 * data before any timer starts and reports through bench_rate() and
 * bench_ratio().
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

/* The SQLite + session peer is built in unless the build says otherwise
 * with -DBENCH_NO_SQLITE (`make bench NO_SQLITE=1`, and cross builds for a
 * target without libsqlite3-dev).  Code tests BENCH_HAVE_SQLITE; without
 * it the SQLite sides are not run and their `bench:` lines are not
 * printed, every other figure is. */
#ifdef BENCH_NO_SQLITE
#define BENCH_HAVE_SQLITE 0
#else
#define BENCH_HAVE_SQLITE 1
#endif
/* The `#` line a workload prints where it skips SQLite's figures. */
#define BENCH_SQLITE_SKIPPED "sqlite: not built in, its figures are skipped"

typedef struct bench_opts {
  size_t rows;         /* W1 rows (--rows, --quick) */
  size_t durable_rows; /* rows of the fully synced runs (--durable-rows) */
  int reps;            /* rounds per comparison (--reps) */
  const char *dir;     /* scratch directory, resolved by main */
} bench_opts;

/* Output.  Every figure is one line `bench: NAME VALUE UNIT`; anything
 * else the harness prints starts with `#`. */
void bench_rate(const char *name, double rows_per_s);
void bench_ratio(const char *name, double ratio);
void bench_value(const char *name, double value, const char *unit);
/* A duration in milliseconds, `%.4f ms` (O(1) reads take microseconds). */
void bench_ms(const char *name, double ms);
void bench_note(const char *fmt, ...);

/* Print the message and `bench: error` to stderr, remove the scratch
 * files and exit(1). */
void bench_die(const char *fmt, ...);

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* splitmix64: small, fast and of our own, so that every run and every
 * machine makes the same data from the same seed. */
typedef struct bench_rng {
  uint64_t s;
} bench_rng;
uint64_t bench_rng_next(bench_rng *r);
/* Uniform in [0, n), n > 0 (modulo bias below n / 2^64). */
uint64_t bench_rng_below(bench_rng *r, uint64_t n);
/* Uniform in [0, 1). */
double bench_rng_unit(bench_rng *r);
/* A fixed-seed Fisher-Yates permutation of 0..n-1 (malloc'd). */
uint32_t *bench_permutation(size_t n, uint64_t seed);

/* Scratch files.  bench_path() returns DIR/name (malloc'd) and remembers
 * it, so that exit - normal or through bench_die() - removes it with its
 * companions (-lock, -wal, -shm, -journal). */
char *bench_path(const char *name);
/* Remove a database file and its companions; absent files are fine. */
void bench_unlink_db(const char *path);
/* fsync one file, if it exists (untimed: keeps the write-back of one run
 * out of the next). */
void bench_flush_file(const char *path);
/* Set up the scratch directory (mkdtemp under /tmp when dir is NULL) and
 * its removal at exit. Returns the directory. */
const char *bench_scratch_init(const char *dir);

void *bench_xmalloc(size_t n);

/* Alternating rounds.  Each side is one engine doing the same work; fn
 * runs it once and returns its rate.  Round r runs the sides in order when
 * r is even and in reverse when odd (ABBA), so that slow drift of a shared
 * machine weighs on every side alike; each side keeps its best rate. */
typedef double (*bench_run_fn)(void *ctx);
typedef struct bench_side {
  const char *label;
  bench_run_fn fn;
  void *ctx;
  double best; /* out: highest rate of all rounds */
} bench_side;
void bench_rounds(const char *what, bench_side *sides, int nsides, int reps);

/* One chunk of a pull, as a session moves it: a request made in a
 * receiver read transaction, the chunk cut in a sender read transaction
 * and its apply and commit in a receiver write transaction.  site is the
 * sender's site id.  make_s times the sender's begin .. sync_delta_make,
 * apply_s the receiver's begin .. commit; the caller checks the report
 * and frees d.  Dies on any error. */
typedef struct bench_chunk {
  sync_delta *d;
  sync_apply_report rep;
  int last; /* sync_delta_last(d) */
  double make_s, apply_s;
} bench_chunk;
void bench_pull_chunk(sync_env *recv, sync_env *send, const uint8_t site[16],
                      const sync_delta_opts *opts, bench_chunk *c);

/* Move everything session a has to send into session b, in one process;
 * returns the bytes moved. */
size_t bench_pump(sync_session *a, sync_session *b);

/* A slow link (link.c): a loopback TCP proxy to target that holds the
 * bytes one_way_ms in each direction.  Its address goes to addr; it
 * serves one connection and stop waits for both sides to close. */
typedef struct bench_link bench_link;
bench_link *bench_link_start(const char *target, int one_way_ms, char *addr,
                             size_t cap);
void bench_link_stop(bench_link *l);

#endif /* BENCH_H */
