/*
 * run_counter.c - counter columns (issue 19).
 *
 *  - counter.add.ratio_vs_put: adds of 1 to a counter column of random
 *    rows, against puts of an integer column of the same rows (the row's
 *    other column NULL), 1,000 per transaction, each side on its own
 *    file of 10,000 rows made untimed, in alternating rounds;
 *  - counter.wire.bytes_per_add: D devices (1,000 by default, the
 *    issue's fleet; --rows below 1,000,000 scales it down) each add once
 *    to each of 100 counters of one table and a server pulls from each in
 *    turn: frame bytes (stored, no zstd) over the adds they carry;
 *  - counter.wire.fanout_bytes_per_add: one device then pulls everything
 *    from the server (every other device's contribution to each counter);
 *  - counter.wire.news_bytes_per_add: 10 devices add once more to each
 *    counter and push; the device that holds everything pulls again: only
 *    those 10 sites' contributions travel, not the 1,000 of each cell;
 *  - counter.fold.*: the server retires every device but those 10
 *    (sync_site_retire, then sync_env_gc folds the cells), timed; the
 *    sites a cell carries before and after, and what a new device pulls
 *    per counter before (device 0's first pull) and after, with the
 *    ratio.  Every sum stays as it was.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "workloads.h"

static const sync_column_def ctr_cols[2] = {{"n", SYNC_INTEGER, 0},
                                            {"c", SYNC_COUNTER, 0}};
static const sync_table_def ctr_table = {"ctr", SYNC_TEXT, ctr_cols, 2};

#define CTR_ROWS 10000
#define CTR_TXN 1000
#define CTR_COUNTERS 100

typedef struct ctr_ctx {
  const char *path;
  const uint32_t *picks; /* row of each op */
  size_t nops;
  int add; /* 1: counter adds, 0: integer puts */
} ctr_ctx;

static void ctr_key(char *k, uint32_t i) { snprintf(k, 16, "row-%08u", i); }

static double ctr_run(void *arg) {
  ctr_ctx *c = arg;
  sync_env *env = peer_sync_env(c->path, NULL, &ctr_table, 1);
  sync_txn *x;
  char key[16];
  double t0, t1;
  size_t i, j;
  uint32_t r;
  /* The rows exist before the clock starts: both sides then change
   * live rows only. */
  peer_sync_check(env, sync_txn_begin(env, 0, &x), "sync_txn_begin");
  for (r = 0; r < CTR_ROWS; r++) {
    sync_value v[2] = {sync_int(0), sync_null()};
    ctr_key(key, r);
    peer_sync_check(env, sync_put(x, 0, key, 12, v, 2), "sync_put");
  }
  peer_sync_check(env, sync_txn_commit(x), "sync_txn_commit");
  t0 = bench_now();
  for (i = 0; i < c->nops; i += CTR_TXN) {
    size_t end = i + CTR_TXN < c->nops ? i + CTR_TXN : c->nops;
    peer_sync_check(env, sync_txn_begin(env, 0, &x), "sync_txn_begin");
    for (j = i; j < end; j++) {
      ctr_key(key, c->picks[j]);
      if (c->add) {
        peer_sync_check(env, sync_counter_add(x, 0, key, 12, 1, 1),
                        "sync_counter_add");
      } else {
        sync_value v[2] = {sync_int((int64_t)j + 1), sync_null()};
        peer_sync_check(env, sync_put(x, 0, key, 12, v, 2), "sync_put");
      }
    }
    peer_sync_check(env, sync_txn_commit(x), "sync_txn_commit");
  }
  t1 = bench_now();
  if (c->add) {
    /* Every add counted: the sum over the rows is the number of ops. */
    sync_cursor *cur;
    sync_value v[2];
    int64_t sum = 0;
    peer_sync_check(env, sync_txn_begin(env, SYNC_TXN_RDONLY, &x), "begin");
    peer_sync_check(env, sync_cursor_open(x, 0, &cur), "sync_cursor_open");
    while (sync_cursor_next(cur, NULL, v, 2) == 0) sum += v[1].i;
    sync_cursor_close(cur);
    sync_txn_abort(x);
    if (sum != (int64_t)c->nops)
      bench_die("counter: sum %" PRId64 " after %zu adds", sum, c->nops);
  }
  sync_env_close(env);
  bench_unlink_db(c->path);
  return t1 > t0 ? (double)c->nops / (t1 - t0) : 0.0;
}

/* Pull everything recv lacks of send through the frame codec; returns
 * the frame bytes and adds *rows. */
static size_t ctr_pull(sync_env *recv, sync_env *send, sync_encoder *e,
                       size_t *rows) {
  uint8_t site[16];
  size_t bytes = 0;
  int n;
  peer_sync_check(send, sync_env_site_id(send, site), "sync_env_site_id");
  for (n = 0; n < 1000000; n++) {
    bench_chunk c;
    size_t flen;
    int last;
    bench_pull_chunk(recv, send, site, NULL, &c);
    peer_sync_check(send, sync_encoder_begin(e, c.d, &flen, NULL),
                    "sync_encoder_begin");
    bytes += flen;
    *rows += sync_delta_rows(c.d);
    last = c.last;
    sync_delta_free(c.d);
    if (last) return bytes;
  }
  bench_die("counter: a pull did not end");
  return 0;
}

static void ctr_add_all(sync_env *env) {
  sync_txn *x;
  char key[16];
  uint32_t k;
  peer_sync_check(env, sync_txn_begin(env, 0, &x), "sync_txn_begin");
  for (k = 0; k < CTR_COUNTERS; k++) {
    ctr_key(key, k);
    peer_sync_check(env, sync_counter_add(x, 0, key, 12, 1, 1),
                    "sync_counter_add");
  }
  peer_sync_check(env, sync_txn_commit(x), "sync_txn_commit");
}

static int64_t ctr_sum(sync_env *env) {
  sync_txn *x;
  sync_cursor *cur;
  sync_value v[2];
  int64_t sum = 0;
  peer_sync_check(env, sync_txn_begin(env, SYNC_TXN_RDONLY, &x), "begin");
  peer_sync_check(env, sync_cursor_open(x, 0, &cur), "sync_cursor_open");
  while (sync_cursor_next(cur, NULL, v, 2) == 0) sum += v[1].i;
  sync_cursor_close(cur);
  sync_txn_abort(x);
  return sum;
}

#define CTR_KEEP 10 /* devices kept for the second round */

/* Sites counter cell 0 of the server carries. */
static size_t ctr_sites(sync_env *env) {
  sync_txn *x;
  char key[16];
  size_t n = 0;
  ctr_key(key, 0);
  peer_sync_check(env, sync_txn_begin(env, SYNC_TXN_RDONLY, &x), "begin");
  peer_sync_check(env, sync_counter_sites(x, 0, key, 12, 1, NULL, 0, &n),
                  "sync_counter_sites");
  sync_txn_abort(x);
  return n;
}

/* The server retires devices CTR_KEEP.. (their files are gone) and
 * folds; a new device then pulls everything.  before: what device 0's
 * first pull cost per counter. */
static void ctr_fold(sync_env *srv, const uint8_t (*ids)[16], size_t ndev,
                     sync_encoder *e, double before, int64_t want) {
  char *npath = bench_path("ctr_new.db");
  size_t i, s0 = ctr_sites(srv), s1, rows = 0, after;
  sync_env *nd;
  sync_txn *x;
  double t0 = bench_now(), ms;
  peer_sync_check(srv, sync_txn_begin(srv, 0, &x), "sync_txn_begin");
  for (i = CTR_KEEP; i < ndev; i++)
    peer_sync_check(srv, sync_site_retire(x, ids[i]), "sync_site_retire");
  peer_sync_check(srv, sync_txn_commit(x), "sync_txn_commit");
  peer_sync_check(srv, sync_env_gc(srv, NULL), "sync_env_gc");
  ms = (bench_now() - t0) * 1000.0;
  s1 = ctr_sites(srv);
  if (ctr_sum(srv) != want)
    bench_die("counter: the server's sum moved in the fold");
  nd = peer_sync_env(npath, NULL, &ctr_table, 1);
  after = ctr_pull(nd, srv, e, &rows);
  if (ctr_sum(nd) != want) bench_die("counter: a new device misses adds");
  sync_env_close(nd);
  bench_unlink_db(npath);
  bench_note("counter fold: %zu of %zu devices retired, %d cells", ndev -
             CTR_KEEP, ndev, CTR_COUNTERS);
  bench_ms("counter.fold.ms", ms);
  bench_value("counter.fold.sites_before", (double)s0, "sites");
  bench_value("counter.fold.sites_after", (double)s1, "sites");
  bench_value("counter.fold.pull_bytes_per_counter_before", before, "bytes");
  bench_value("counter.fold.pull_bytes_per_counter",
              (double)after / CTR_COUNTERS, "bytes");
  bench_ratio("counter.fold.pull_ratio_vs_before",
              before > 0 ? (double)after / CTR_COUNTERS / before : 0);
}

static void ctr_wire(const bench_opts *o) {
  size_t ndev = o->rows >= 1000000 ? 1000
                 : o->rows / 1000 < 20 ? 20
                                       : o->rows / 1000;
  char *spath = bench_path("ctr_server.db");
  char name[32];
  char *dpath[CTR_KEEP];
  uint8_t (*ids)[16];
  sync_env *srv = peer_sync_env(spath, NULL, &ctr_table, 1), *d0;
  sync_encoder *e;
  size_t i, up = 0, down = 0, news = 0, rows = 0;
  int64_t want;
  peer_sync_check(NULL, sync_encoder_create(NULL, NULL, &e),
                  "sync_encoder_create");
  ids = bench_xmalloc(16 * ndev);
  for (i = 0; i < ndev; i++) {
    char *p;
    sync_env *dev;
    snprintf(name, sizeof name, "ctr_dev%zu.db", i);
    p = bench_path(name);
    dev = peer_sync_env(p, NULL, &ctr_table, 1);
    ctr_add_all(dev);
    up += ctr_pull(srv, dev, e, &rows);
    peer_sync_check(dev, sync_env_site_id(dev, ids[i]), "sync_env_site_id");
    sync_env_close(dev);
    if (i < CTR_KEEP) {
      dpath[i] = p;
    } else {
      bench_unlink_db(p); /* bench_path keeps p, and frees nothing */
    }
  }
  want = (int64_t)(ndev * CTR_COUNTERS);
  if (ctr_sum(srv) != want)
    bench_die("counter: server sum %" PRId64 ", want %" PRId64, ctr_sum(srv),
              want);
  bench_note("counter wire: %zu devices x %d counters, one add each", ndev,
             CTR_COUNTERS);
  bench_value("counter.wire.bytes_per_add", (double)up / (double)want,
              "bytes");
  /* Device 0 takes every other device's contributions. */
  d0 = peer_sync_env(dpath[0], NULL, &ctr_table, 0);
  down = ctr_pull(d0, srv, e, &rows);
  if (ctr_sum(d0) != want) bench_die("counter: device 0 misses adds");
  bench_value("counter.wire.fanout_bytes_per_add",
              (double)down / (double)(want - CTR_COUNTERS), "bytes");
  /* Devices 1..9 add again and push; device 0 gets just those. */
  for (i = 1; i < CTR_KEEP; i++) {
    sync_env *dev = peer_sync_env(dpath[i], NULL, &ctr_table, 0);
    ctr_add_all(dev);
    ctr_pull(srv, dev, e, &rows);
    sync_env_close(dev);
  }
  news = ctr_pull(d0, srv, e, &rows);
  want += (CTR_KEEP - 1) * CTR_COUNTERS;
  if (ctr_sum(d0) != want) bench_die("counter: device 0 misses new adds");
  bench_value("counter.wire.news_bytes_per_add",
              (double)news / (double)((CTR_KEEP - 1) * CTR_COUNTERS), "bytes");
  sync_env_close(d0);
  ctr_fold(srv, ids, ndev, e, (double)down / CTR_COUNTERS, want);
  free(ids);
  sync_env_close(srv);
  sync_encoder_free(e);
  for (i = 0; i < CTR_KEEP && i < ndev; i++) bench_unlink_db(dpath[i]);
  bench_unlink_db(spath);
}

void bench_counter(const bench_opts *o) {
  size_t nops = o->rows < 200000 ? o->rows : 200000, i;
  uint32_t *picks = bench_xmalloc(sizeof(uint32_t) * (nops ? nops : 1));
  bench_rng g = {UINT64_C(0xc0a7e0001)};
  char *pa = bench_path("ctr_add.db"), *pp = bench_path("ctr_put.db");
  ctr_ctx ca = {pa, picks, nops, 1}, cp = {pp, picks, nops, 0};
  bench_side sides[2] = {{"sync add", ctr_run, &ca, 0},
                         {"sync put", ctr_run, &cp, 0}};
  for (i = 0; i < nops; i++) picks[i] = (uint32_t)bench_rng_below(&g, CTR_ROWS);
  bench_rounds("counter adds vs integer puts", sides, 2, o->reps);
  bench_rate("counter.add", sides[0].best);
  bench_rate("counter.put", sides[1].best);
  bench_ratio("counter.add.ratio_vs_put",
              sides[1].best > 0 ? sides[0].best / sides[1].best : 0);
  free(picks);
  ctr_wire(o);
}
