/*
 * run_repair.c - range repair (docs/PROTOCOL.md, "Repair") over W1 rows,
 * two replicas in one process, sessions pumped in memory.
 *
 * Replica B is filled from A by a plain session, so both hold the same
 * rows with the same stamps.  Then, for 0, 1, 10 and 1,000 rows changed on
 * B (column a updated, keys drawn at random), one repair session with B
 * as the client: the bytes of both directions together, the round trips
 * (the server's turns: the client waits for each) and the wall time.
 * Each figure is checked: the repair must end with equal roots, and the
 * digests of the two replicas must agree afterwards.  With --reps N each
 * difference is made and repaired N times (other rows each time); the
 * figures printed are the best time, and the bytes and round trips of
 * that run.
 *
 *   bench: repair.1m.diff10.bytes|round_trips|ms
 *
 * ("1m" is the W1 size name; --rows or --quick run fewer rows and print
 * the count in the name, e.g. repair.100k.diff10.bytes.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

#define REPAIR_SEED UINT64_C(0x5715C0DE00000031)

/* One session between client c and server s; dies unless both end well. */
static void pump_session(peer_sync *c, peer_sync *s, const sync_session_opts *co,
                         sync_session_stats *st) {
  sync_session_opts so;
  sync_session *a, *b;
  memset(&so, 0, sizeof so);
  so.server = 1;
  so.chunk_rows = co->chunk_rows;
  peer_sync_check(c->env, sync_session_create(c->env, co, &a),
                  "sync_session_create");
  peer_sync_check(s->env, sync_session_create(s->env, &so, &b),
                  "sync_session_create");
  for (;;) {
    size_t n = bench_pump(a, b) + bench_pump(b, a);
    if (sync_session_status(a) && sync_session_status(b))
      break;
    if (!n)
      break;
  }
  if (sync_session_status(a) != 1 || sync_session_status(b) != 1)
    bench_die("repair: session: %s / %s", sync_session_errmsg(a),
              sync_session_errmsg(b));
  sync_session_stats_get(a, st);
  sync_session_free(a);
  sync_session_free(b);
}

static uint64_t digest(peer_sync *p) {
  sync_txn *x;
  uint64_t h = 0;
  peer_sync_check(p->env, sync_txn_begin(p->env, SYNC_TXN_RDONLY, &x),
                  "sync_txn_begin");
  peer_sync_check(p->env, sync_digest(x, SYNC_ALL_TABLES, &h), "sync_digest");
  sync_txn_abort(x);
  return h;
}

static void size_name(char *out, size_t cap, size_t rows) {
  if (rows % 1000000 == 0)
    snprintf(out, cap, "%zum", rows / 1000000);
  else if (rows % 1000 == 0)
    snprintf(out, cap, "%zuk", rows / 1000);
  else
    snprintf(out, cap, "%zu", rows);
}

void bench_repair(const bench_opts *o) {
  static const unsigned diffs[] = {0, 1, 10, 1000};
  const char *pa = bench_path("repair-a.db"), *pb = bench_path("repair-b.db");
  peer_sync a, b;
  w1_row *rows = w1_generate(o->rows);
  bench_rng g = {REPAIR_SEED};
  sync_session_opts co;
  sync_session_stats st;
  char sz[32];
  double t0;
  size_t i;
  size_name(sz, sizeof sz, o->rows);
  bench_note("repair: %zu W1 rows, replicas in memory sessions", o->rows);
  peer_sync_open(&a, pa, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  peer_sync_open(&b, pb, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  w1_put_rows(a.env, a.table, rows, o->rows);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  co.chunk_rows = 10000;
  t0 = bench_now();
  pump_session(&b, &a, &co, &st);
  bench_note("repair: B filled from A in %.1f s", bench_now() - t0);
  for (size_t di = 0; di < sizeof diffs / sizeof diffs[0]; di++) {
    double best = 0;
    uint64_t bytes = 0, rts = 0;
    for (int rep = 0; rep < o->reps; rep++) {
      double ms;
      if (diffs[di]) {
        sync_txn *x;
        peer_sync_check(b.env, sync_txn_begin(b.env, 0, &x), "sync_txn_begin");
        for (unsigned k = 0; k < diffs[di]; k++) {
          const w1_row *r = &rows[bench_rng_below(&g, o->rows)];
          unsigned col = 0;
          sync_value v = sync_int((int64_t)bench_rng_next(&g));
          peer_sync_check(b.env,
                          sync_update(x, b.table, r->key, W1_KEY_LEN, &col, &v,
                                      1),
                          "sync_update");
        }
        peer_sync_check(b.env, sync_txn_commit(x), "sync_txn_commit");
      }
      memset(&co, 0, sizeof co);
      co.repair = 1;
      t0 = bench_now();
      pump_session(&b, &a, &co, &st);
      ms = (bench_now() - t0) * 1000.0;
      if (!st.repair_equal || digest(&a) != digest(&b))
        bench_die("repair: diff%u: the replicas did not end equal", diffs[di]);
      bench_note("repair: diff%u round %d: %.1f ms, %llu bytes, %llu round "
                 "trips, %llu rows, %llu nodes",
                 diffs[di], rep + 1, ms,
                 (unsigned long long)(st.bytes_sent + st.bytes_received),
                 (unsigned long long)((st.repair_turns + 1) / 2),
                 (unsigned long long)st.repair_rows,
                 (unsigned long long)st.repair_nodes);
      if (rep == 0 || ms < best) {
        best = ms;
        bytes = st.bytes_sent + st.bytes_received;
        rts = (st.repair_turns + 1) / 2;
      }
    }
    {
      char name[64];
      snprintf(name, sizeof name, "repair.%s.diff%u.bytes", sz, diffs[di]);
      bench_value(name, (double)bytes, "bytes");
      snprintf(name, sizeof name, "repair.%s.diff%u.round_trips", sz,
               diffs[di]);
      bench_value(name, (double)rts, "round_trips");
      snprintf(name, sizeof name, "repair.%s.diff%u.ms", sz, diffs[di]);
      bench_value(name, best, "ms");
    }
  }
  peer_sync_close(&a);
  peer_sync_close(&b);
  bench_unlink_db(pa);
  bench_unlink_db(pb);
  free(rows); /* pa and pb belong to the scratch list (bench_path) */
}
