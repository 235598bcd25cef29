/*
 * run_history.c - row history (docs/API.md, "Row history"): the W1 writes
 * into a table that keeps history against the same table without it,
 * side by side (inserts, which record that each row was new, then an
 * update of every row, which records each replaced row whole), and a
 * restore of 100,000 rows to their state before such an update.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

typedef struct hist_ctx {
  const w1_row *rows;
  size_t nrows;
  const char *path;
  int history; /* the table keeps history (no limits) */
} hist_ctx;

static double rate(size_t n, double t0, double t1) {
  double dt = t1 - t0;
  return dt > 0 ? (double)n / dt : 0.0;
}

static void hist_open(const hist_ctx *c, peer_sync *p) {
  peer_sync_open(p, c->path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  if (c->history) {
    sync_history_opts o = {0, 0};
    peer_sync_check(p->env, sync_env_set_history(p->env, p->table, &o),
                    "sync_env_set_history");
  }
}

/* Write rows [0, n), W1_TXN_ROWS per transaction; bump: each row's
 * integer column plus bump (an update of every row when it is not 0). */
static void hist_write(peer_sync *p, const w1_row *rows, size_t n,
                       int64_t bump) {
  sync_txn *txn;
  for (size_t i = 0; i < n; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < n ? i + W1_TXN_ROWS : n;
    peer_sync_check(p->env, sync_txn_begin(p->env, 0, &txn), "sync_txn_begin");
    for (size_t j = i; j < end; j++) {
      sync_value v[W1_NCOLUMNS];
      w1_values(&rows[j], v);
      v[0].i += bump;
      peer_sync_check(p->env,
                      sync_put(txn, p->table, rows[j].key, W1_KEY_LEN, v,
                               W1_NCOLUMNS),
                      "sync_put");
    }
    peer_sync_check(p->env, sync_txn_commit(txn), "sync_txn_commit");
  }
}

static double hist_insert(void *arg) {
  hist_ctx *c = arg;
  peer_sync p;
  double t0, t1;
  hist_open(c, &p);
  t0 = bench_now();
  hist_write(&p, c->rows, c->nrows, 0);
  t1 = bench_now();
  peer_sync_close(&p);
  bench_flush_file(c->path);
  return rate(c->nrows, t0, t1);
}

/* The rows written untimed, then every row updated, timed. */
static double hist_update(void *arg) {
  hist_ctx *c = arg;
  peer_sync p;
  double t0, t1;
  hist_open(c, &p);
  hist_write(&p, c->rows, c->nrows, 0);
  t0 = bench_now();
  hist_write(&p, c->rows, c->nrows, 1);
  t1 = bench_now();
  peer_sync_close(&p);
  bench_flush_file(c->path);
  return rate(c->nrows, t0, t1);
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

void bench_history(const bench_opts *o) {
  size_t n = o->rows, nr = n < 100000 ? n : 100000;
  w1_row *rows = w1_generate(n);
  hist_ctx plain = {rows, n, bench_path("hist-plain.db"), 0};
  hist_ctx hist = {rows, n, bench_path("hist-on.db"), 1};
  bench_side s[2];

  bench_note("history: %zu W1 rows, %d rows/txn, a table with history "
             "(no limits) against the same without; best of %d "
             "alternating rounds",
             n, W1_TXN_ROWS, o->reps);
  s[0] = (bench_side){"history", hist_insert, &hist, 0};
  s[1] = (bench_side){"plain", hist_insert, &plain, 0};
  bench_rounds("w1.write.history", s, 2, o->reps);
  bench_rate("w1.write.history.rows_per_s", s[0].best);
  bench_ratio("w1.write.history.ratio_vs_plain", ratio(s[0].best, s[1].best));

  s[0] = (bench_side){"history", hist_update, &hist, 0};
  s[1] = (bench_side){"plain", hist_update, &plain, 0};
  bench_rounds("w1.update.history", s, 2, o->reps);
  bench_rate("w1.update.history.rows_per_s", s[0].best);
  bench_ratio("w1.update.history.ratio_vs_plain", ratio(s[0].best, s[1].best));
  bench_unlink_db(plain.path);

  /* The first row of an as-of cursor on the file of the last round, at
   * the version after the inserts (each row's version one step back):
   * the median of several opens. */
  {
    peer_sync p;
    sync_txn *txn;
    sync_cursor *c;
    sync_key k;
    sync_value v[W1_NCOLUMNS];
    double ms[9], t0;
    uint64_t at = (n + W1_TXN_ROWS - 1) / W1_TXN_ROWS;
    int i, j;
    peer_sync_open(&p, hist.path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
    for (i = 0; i < 9; i++) {
      t0 = bench_now();
      peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &txn),
                      "sync_txn_begin");
      peer_sync_check(p.env,
                      sync_cursor_open_asof(txn, p.table, SYNC_ASOF_VERSION,
                                            at, &c),
                      "sync_cursor_open_asof");
      peer_sync_check(p.env, sync_cursor_next(c, &k, v, W1_NCOLUMNS),
                      "sync_cursor_next");
      ms[i] = (bench_now() - t0) * 1000;
      sync_cursor_close(c);
      sync_txn_abort(txn);
    }
    peer_sync_close(&p);
    for (i = 1; i < 9; i++) /* insertion sort for the median */
      for (j = i; j > 0 && ms[j - 1] > ms[j]; j--) {
        double tmp = ms[j];
        ms[j] = ms[j - 1];
        ms[j - 1] = tmp;
      }
    bench_note("asof: first row of a cursor at version %" PRIu64
               " over %zu rows, each updated once since; median of 9",
               at, n);
    bench_ms("asof.1m.first_row_ms", ms[4]);
  }

  /* A restore: nr rows written, every one updated, then the table put
   * back as of the version after the inserts (every row written again). */
  {
    peer_sync p;
    sync_txn *txn;
    uint64_t v0, changed = 0;
    double t0, t1, best = 0;
    int r;
    for (r = 0; r < o->reps; r++) {
      hist.nrows = nr;
      hist_open(&hist, &p);
      hist_write(&p, rows, nr, 0);
      peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &txn),
                      "sync_txn_begin");
      v0 = sync_txn_version(txn);
      sync_txn_abort(txn);
      hist_write(&p, rows, nr, 1);
      t0 = bench_now();
      peer_sync_check(p.env, sync_txn_begin(p.env, 0, &txn), "sync_txn_begin");
      peer_sync_check(p.env,
                      sync_table_restore(txn, p.table, SYNC_ASOF_VERSION, v0,
                                         &changed),
                      "sync_table_restore");
      peer_sync_check(p.env, sync_txn_commit(txn), "sync_txn_commit");
      t1 = bench_now();
      if (changed != nr)
        bench_die("history: restore wrote %" PRIu64 " rows, not %zu", changed,
                  nr);
      peer_sync_close(&p);
      if (rate(nr, t0, t1) > best) best = rate(nr, t0, t1);
    }
    bench_note("restore: %zu rows, each updated once, put back in one "
               "transaction; best of %d",
               nr, o->reps);
    bench_rate("restore.100k.rows_per_s", best);
  }
  bench_unlink_db(hist.path);
  free(rows);
}
