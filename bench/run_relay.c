/*
 * run_relay.c - a rolling schema change (docs/PROTOCOL.md, "Schemas"):
 * how fast a replica that has not upgraded yet relays W1 rows that carry
 * a column it does not know, beside the same relay for rows without it.
 *
 * Upstream U holds the W1 rows; a relay R with the W1 schema pulls them
 * all from U (apply + commit), then an empty downstream D pulls them all
 * from R (R cuts the chunks, D applies + commits).  Timed: R's applies,
 * R's sync_delta_make and D's applies, i.e. what the rows cost on their
 * way through R.  Two cases, in alternating rounds of the same run:
 *
 *  - same: U, R and D all have the W1 schema;
 *  - unknown: U and D have W1 plus a column "e" INTEGER, R has W1 only;
 *    R stores e unread, with its stamp, and sends it on.  D must end with
 *    U's digest (e included): the column came through unchanged.
 *
 * Lines: relay.rows, relay.same.rows_per_s, relay.unknown.rows_per_s and
 * relay.unknown_column.ratio (unknown / same; the budget is >= 0.8).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

#define RELAY_CHUNK 10000
#define RELAY_CHUNK_BYTES ((size_t)64 << 20)

static const sync_column_def relay_cols2[W1_NCOLUMNS + 1] = {
    {"a", SYNC_INTEGER, 0}, {"b", SYNC_REAL, 0}, {"c", SYNC_TEXT, 0},
    {"d", SYNC_BLOB, 0},    {"e", SYNC_INTEGER, 0},
};
static const sync_table_def relay_table2 = {"t", SYNC_TEXT, relay_cols2,
                                            W1_NCOLUMNS + 1};

typedef struct relay_ctx {
  size_t nrows;
  peer_sync *up;     /* the upstream of this case, open throughout */
  uint64_t up_digest;
  const sync_table_def *relay_def, *down_def;
  const char *relay_path, *down_path;
} relay_ctx;

static double rate(double n, double dt) { return dt > 0 ? n / dt : 0.0; }

/* What the in-process API needs before replicas with different schemas
 * exchange chunks (a session's handshake does it): each accepts the
 * other's schema.  Untimed. */
static void accept_both(peer_sync *a, peer_sync *b) {
  unsigned char buf[4096];
  int64_t n;
  n = sync_env_schema_export(a->env, buf, sizeof buf);
  if (n < 0 || (size_t)n > sizeof buf) bench_die("relay: schema export");
  peer_sync_check(b->env, sync_env_schema_accept(b->env, buf, (size_t)n),
                  "sync_env_schema_accept");
  n = sync_env_schema_export(b->env, buf, sizeof buf);
  if (n < 0 || (size_t)n > sizeof buf) bench_die("relay: schema export");
  peer_sync_check(a->env, sync_env_schema_accept(a->env, buf, (size_t)n),
                  "sync_env_schema_accept");
}

/* recv pulls everything from send; returns the seconds of the timed
 * steps (the sender's sync_delta_make when time_make, the receiver's
 * apply + commit always) and adds the rows to *rows. */
static double pull_all(peer_sync *recv, peer_sync *send, int time_make,
                       uint64_t *rows) {
  sync_delta_opts o;
  uint8_t site[16];
  double dt = 0;
  memset(&o, 0, sizeof o);
  o.max_rows = RELAY_CHUNK;
  o.max_bytes = RELAY_CHUNK_BYTES;
  peer_sync_check(send->env, sync_env_site_id(send->env, site),
                  "sync_env_site_id");
  for (;;) {
    bench_chunk c;
    bench_pull_chunk(recv->env, send->env, site, &o, &c);
    sync_delta_free(c.d);
    if (!c.rep.cursor_moved) bench_die("relay: a chunk did not move the cursor");
    dt += (time_make ? c.make_s : 0) + c.apply_s;
    *rows += c.rep.rows;
    if (c.last) break;
  }
  return dt;
}

static double relay_round(void *arg) {
  relay_ctx *c = arg;
  peer_sync r, d;
  uint64_t in = 0, out = 0, h;
  double dt;
  peer_sync_open(&r, c->relay_path, SYNC_DURABLE_NOSYNC, c->relay_def, 1);
  peer_sync_open(&d, c->down_path, SYNC_DURABLE_NOSYNC, c->down_def, 1);
  accept_both(c->up, &r);
  accept_both(&r, &d);
  dt = pull_all(&r, c->up, 0, &in);  /* into the relay */
  dt += pull_all(&d, &r, 1, &out);   /* through it */
  /* Untimed: everything came through, the extra column included. */
  if (in != c->nrows || out != c->nrows)
    bench_die("relay: %" PRIu64 " rows in, %" PRIu64 " out, not %zu", in, out,
              c->nrows);
  h = peer_sync_digest(d.env);
  if (h != c->up_digest)
    bench_die("relay: the downstream digest %016" PRIx64
              " differs from the upstream's %016" PRIx64,
              h, c->up_digest);
  peer_sync_close(&r);
  peer_sync_close(&d);
  bench_unlink_db(c->relay_path);
  bench_unlink_db(c->down_path);
  return rate((double)c->nrows, dt);
}

/* Write rows[0..n) to p, 1,000 per transaction, with e = the row's a
 * when ncols says p has it. */
static void write_rows(peer_sync *p, const w1_row *rows, size_t n,
                       unsigned ncols) {
  for (size_t i = 0; i < n; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < n ? i + W1_TXN_ROWS : n;
    sync_txn *txn;
    peer_sync_check(p->env, sync_txn_begin(p->env, 0, &txn), "sync_txn_begin");
    for (size_t j = i; j < end; j++) {
      sync_value v[W1_NCOLUMNS + 1];
      w1_values(&rows[j], v);
      v[W1_NCOLUMNS] = sync_int(rows[j].a ^ 0x5a5a);
      peer_sync_check(p->env,
                      sync_put(txn, p->table, rows[j].key, W1_KEY_LEN, v, ncols),
                      "sync_put");
    }
    peer_sync_check(p->env, sync_txn_commit(txn), "sync_txn_commit");
  }
}

void bench_relay(const bench_opts *o) {
  /* Half the W1 rows, and at least five rounds a side: a round is short
   * and the two cases differ by one column, so noise would decide. */
  size_t n = o->rows / 2 ? o->rows / 2 : 1;
  int reps = o->reps > 5 ? o->reps : 5;
  w1_row *rows = w1_generate(n);
  const char *up1 = bench_path("relay-up1.db"), *up2 = bench_path("relay-up2.db");
  peer_sync u1, u2;
  relay_ctx same, unk;
  bench_side s[2];
  double t0 = bench_now();

  bench_note("relay: %zu W1 rows pulled by an old-schema relay and from it "
             "by an empty replica, in chunks of %d; rows with a column the "
             "relay does not know against rows without; best of %d "
             "alternating rounds",
             n, RELAY_CHUNK, reps);
  bench_value("relay.rows", (double)n, "rows");
  peer_sync_open(&u1, up1, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  peer_sync_open(&u2, up2, SYNC_DURABLE_NOSYNC, &relay_table2, 1);
  write_rows(&u1, rows, n, W1_NCOLUMNS);
  write_rows(&u2, rows, n, W1_NCOLUMNS + 1);
  bench_note("relay: upstreams made in %.2f s (untimed)", bench_now() - t0);

  same = (relay_ctx){n, &u1, peer_sync_digest(u1.env), &w1_table, &w1_table,
                     bench_path("relay-r1.db"), bench_path("relay-d1.db")};
  unk = (relay_ctx){n, &u2, peer_sync_digest(u2.env), &w1_table, &relay_table2,
                    bench_path("relay-r2.db"), bench_path("relay-d2.db")};
  s[0] = (bench_side){"same", relay_round, &same, 0};
  s[1] = (bench_side){"unknown", relay_round, &unk, 0};
  bench_rounds("relay.unknown_column", s, 2, reps);
  bench_rate("relay.same.rows_per_s", s[0].best);
  bench_rate("relay.unknown.rows_per_s", s[1].best);
  bench_ratio("relay.unknown_column.ratio",
              s[0].best > 0 ? s[1].best / s[0].best : 0.0);

  peer_sync_close(&u1);
  peer_sync_close(&u2);
  bench_unlink_db(up1);
  bench_unlink_db(up2);
  free(rows);
}
