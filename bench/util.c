/*
 * util.c - the harness: output lines, errors, clock, PRNG, scratch files,
 * alternating rounds and one chunk of a pull.  Shared by every workload.
 */
#include "bench.h"
#include "peers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- output ---------------------------------------------------------- */

void bench_rate(const char *name, double rows_per_s) {
  printf("bench: %s %.0f rows/s\n", name, rows_per_s);
  fflush(stdout);
}

void bench_ratio(const char *name, double ratio) {
  printf("bench: %s %.3f x\n", name, ratio);
  fflush(stdout);
}

void bench_value(const char *name, double value, const char *unit) {
  printf("bench: %s %.*f %s\n", name, value == (double)(int64_t)value ? 0 : 1,
         value, unit);
  fflush(stdout);
}

void bench_ms(const char *name, double ms) {
  printf("bench: %s %.4f ms\n", name, ms);
  fflush(stdout);
}

void bench_note(const char *fmt, ...) {
  va_list ap;
  fputs("# ", stdout);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

void bench_die(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fputs("bench: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1); /* atexit removes the scratch files */
}

void *bench_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    bench_die("out of memory (%zu bytes)", n);
  return p;
}

/* ---- clock and PRNG -------------------------------------------------- */

double bench_now(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    bench_die("clock_gettime: %s", strerror(errno));
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t bench_rng_next(bench_rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

uint64_t bench_rng_below(bench_rng *r, uint64_t n) {
  return bench_rng_next(r) % n;
}

double bench_rng_unit(bench_rng *r) {
  return (double)(bench_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint32_t *bench_permutation(size_t n, uint64_t seed) {
  uint32_t *p = bench_xmalloc(n * sizeof *p);
  bench_rng r = {seed};
  if (n > UINT32_MAX)
    bench_die("permutation of %zu elements is too large", n);
  for (size_t i = 0; i < n; i++)
    p[i] = (uint32_t)i;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)bench_rng_below(&r, i);
    uint32_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
  }
  return p;
}

/* ---- scratch files --------------------------------------------------- */

static const char *const companions[] = {"", "-lock", "-wal", "-shm",
                                         "-journal"};

static struct {
  char dir[4096];
  int made_dir; /* we created dir, so we remove it */
  char **paths;
  size_t npaths;
} scratch;

void bench_unlink_db(const char *path) {
  size_t n = strlen(path);
  char *buf = bench_xmalloc(n + 16);
  for (size_t i = 0; i < sizeof companions / sizeof companions[0]; i++) {
    memcpy(buf, path, n);
    strcpy(buf + n, companions[i]);
    if (unlink(buf) != 0 && errno != ENOENT)
      fprintf(stderr, "bench: cannot remove %s: %s\n", buf, strerror(errno));
  }
  free(buf);
}

static void scratch_cleanup(void) {
  for (size_t i = 0; i < scratch.npaths; i++) {
    bench_unlink_db(scratch.paths[i]);
    free(scratch.paths[i]);
  }
  free(scratch.paths);
  scratch.paths = NULL;
  scratch.npaths = 0;
  if (scratch.made_dir && rmdir(scratch.dir) != 0)
    fprintf(stderr, "bench: cannot remove %s: %s\n", scratch.dir,
            strerror(errno));
  scratch.made_dir = 0;
}

const char *bench_scratch_init(const char *dir) {
  if (dir) {
    if (strlen(dir) >= sizeof scratch.dir)
      bench_die("--dir: path too long");
    strcpy(scratch.dir, dir);
    if (mkdir(dir, 0700) == 0)
      scratch.made_dir = 1;
    else if (errno != EEXIST)
      bench_die("mkdir %s: %s", dir, strerror(errno));
  } else {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
      tmp = "/tmp";
    if ((size_t)snprintf(scratch.dir, sizeof scratch.dir,
                         "%s/sync-bench-XXXXXX", tmp) >= sizeof scratch.dir)
      bench_die("TMPDIR too long");
    if (!mkdtemp(scratch.dir))
      bench_die("mkdtemp %s: %s", scratch.dir, strerror(errno));
    scratch.made_dir = 1;
  }
  if (atexit(scratch_cleanup) != 0)
    bench_die("atexit failed");
  return scratch.dir;
}

char *bench_path(const char *name) {
  size_t n = strlen(scratch.dir) + 1 + strlen(name) + 1;
  char *p = bench_xmalloc(n);
  char **grown;
  snprintf(p, n, "%s/%s", scratch.dir, name);
  grown = realloc(scratch.paths, (scratch.npaths + 1) * sizeof *grown);
  if (!grown)
    bench_die("out of memory");
  scratch.paths = grown;
  scratch.paths[scratch.npaths++] = p;
  return p;
}

void bench_flush_file(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    if (errno == ENOENT)
      return;
    bench_die("open %s: %s", path, strerror(errno));
  }
  if (fsync(fd) != 0)
    bench_die("fsync %s: %s", path, strerror(errno));
  close(fd);
}

/* ---- rounds ---------------------------------------------------------- */

void bench_rounds(const char *what, bench_side *sides, int nsides, int reps) {
  char line[512];
  for (int i = 0; i < nsides; i++)
    sides[i].best = 0;
  for (int r = 0; r < reps; r++) {
    size_t len = 0;
    line[0] = '\0';
    for (int k = 0; k < nsides; k++) {
      int i = (r % 2 == 0) ? k : nsides - 1 - k;
      double rate = sides[i].fn(sides[i].ctx);
      if (rate > sides[i].best)
        sides[i].best = rate;
      if (len < sizeof line)
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s %.0f",
                                k ? ", " : "", sides[i].label, rate);
    }
    bench_note("%s round %d/%d (rows/s): %s", what, r + 1, reps, line);
  }
}

/* ---- sessions in one process ---------------------------------------- */

size_t bench_pump(sync_session *a, sync_session *b) {
  static unsigned char buf[1 << 16];
  size_t total = 0;
  while (sync_session_want_write(a)) {
    sync_outbuf out = {buf, sizeof buf, 0};
    sync_inbuf in;
    int64_t n = sync_session_send(a, &out);
    if (n <= 0) break;
    in.ptr = buf;
    in.size = (size_t)n;
    in.pos = 0;
    sync_session_recv(b, &in);
    total += (size_t)n;
  }
  return total;
}

/* ---- one chunk of a pull --------------------------------------------- */

void bench_pull_chunk(sync_env *recv, sync_env *send, const uint8_t site[16],
                      const sync_delta_opts *opts, bench_chunk *c) {
  sync_txn *txn;
  sync_request *req = NULL;
  double t0, t1, t2;
  memset(c, 0, sizeof *c);
  peer_sync_check(recv, sync_txn_begin(recv, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin (receiver)");
  peer_sync_check(recv, sync_request_make(txn, site, &req),
                  "sync_request_make");
  sync_txn_abort(txn);

  t0 = bench_now();
  peer_sync_check(send, sync_txn_begin(send, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin (sender)");
  peer_sync_check(send, sync_delta_make(txn, req, opts, &c->d),
                  "sync_delta_make");
  t1 = bench_now();
  sync_txn_abort(txn);
  sync_request_free(req);
  c->last = sync_delta_last(c->d);

  t2 = bench_now();
  peer_sync_check(recv, sync_txn_begin(recv, 0, &txn),
                  "sync_txn_begin (receiver)");
  peer_sync_check(recv, sync_delta_apply(txn, c->d, SYNC_APPLY_MERGE, &c->rep),
                  "sync_delta_apply");
  peer_sync_check(recv, sync_txn_commit(txn), "sync_txn_commit");
  c->make_s = t1 - t0;
  c->apply_s = bench_now() - t2;
}
