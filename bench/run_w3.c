/*
 * run_w3.c - workload W3, conflicts (DESIGN.md section 7): 5 replicas
 * share the first K W1 keys; each makes 2K random column updates, 10% of
 * them deletes or re-inserts, in 100-op transactions; then they pull from
 * each other pairwise in a fixed-seed random order until all five digests
 * agree.  The pulls are timed: rows applied per second, plus the pulls it
 * took and the conflicts the replicas logged.
 *
 * Replicas get fixed site ids and a clock the workload drives (one
 * millisecond per round of transactions, one per pull), so every run and
 * every machine does the same work, pull for pull.  See bench/README.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

#define W3_REPLICAS 5
#define W3_TXN_OPS 100
#define W3_CHUNK 1000       /* rows per delta chunk: the default */
#define W3_MAX_PULLS 100000 /* die rather than loop forever */

#define W3_SEED_SITES UINT64_C(0x5715C0DE00000031)
#define W3_SEED_OPS UINT64_C(0x5715C0DE00000032)
#define W3_SEED_PULLS UINT64_C(0x5715C0DE00000033)
#define W3_EPOCH_MS UINT64_C(1700000000000) /* 2023-11-14, for the HLC */

typedef struct w3_replica {
  peer_sync p;
  const char *path;
  uint8_t site[16];
} w3_replica;

typedef struct w3_ctx {
  w1_row *rows; /* the shared keys' rows, in W1 write order */
  size_t nkeys;
  size_t ops; /* per replica */
  w3_replica rep[W3_REPLICAS];
  uint64_t now; /* the clock every replica reads, in ms */
  /* results of the last round, and whether every round agreed */
  uint64_t rows_applied, conflicts, pulls, live;
  int rounds_done, rounds_differ;
} w3_ctx;

static uint64_t w3_clock(void *ctx) { return *(const uint64_t *)ctx; }

static int w3_random(void *ctx, void *buf, size_t n) {
  const uint8_t *site = ctx;
  for (size_t i = 0; i < n; i++)
    ((uint8_t *)buf)[i] = site[i % 16];
  return 0;
}

/* peer_sync_open, plus the fixed site id and the driven clock. */
static void w3_open(w3_ctx *c, w3_replica *r) {
  size_t map = peer_mapsize();
  sync_env *env = NULL;
  bench_unlink_db(r->path);
  peer_sync_check(NULL, sync_env_create(NULL, &env), "sync_env_create");
  r->p.env = env;
  peer_sync_check(env, sync_env_set_durability(env, SYNC_DURABLE_NOSYNC),
                  "sync_env_set_durability");
  peer_sync_check(env, sync_env_set_mapsize(env, map, map),
                  "sync_env_set_mapsize");
  peer_sync_check(env, sync_env_set_random(env, w3_random, r->site),
                  "sync_env_set_random");
  peer_sync_check(env, sync_env_set_clock(env, w3_clock, &c->now),
                  "sync_env_set_clock");
  peer_sync_check(env, sync_env_set_schema(env, &w1_table, 1),
                  "sync_env_set_schema");
  peer_sync_check(env, sync_env_open(env, r->path, 0), "sync_env_open");
  peer_sync_check(env, sync_env_table(env, w1_table.name, &r->p.table),
                  "sync_env_table");
}

static uint64_t w3_digest(w3_replica *r) {
  sync_txn *txn;
  uint64_t h = 0;
  peer_sync_check(r->p.env, sync_txn_begin(r->p.env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(r->p.env, sync_digest(txn, SYNC_ALL_TABLES, &h),
                  "sync_digest");
  sync_txn_abort(txn);
  return h;
}

/* Entries of r's conflict log, and its live rows. */
static uint64_t w3_logged(w3_replica *r, uint64_t *live) {
  sync_txn *txn;
  sync_conflicts *it;
  sync_conflict cf;
  uint64_t n = 0;
  int rc;
  peer_sync_check(r->p.env, sync_txn_begin(r->p.env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(r->p.env, sync_conflicts_open(txn, 0, &it),
                  "sync_conflicts_open");
  while ((rc = sync_conflicts_next(it, &cf)) == 0)
    n++;
  if (rc != SYNC_NOTFOUND)
    peer_sync_check(r->p.env, rc, "sync_conflicts_next");
  sync_conflicts_close(it);
  if (live)
    peer_sync_check(r->p.env, sync_count(txn, r->p.table, live), "sync_count");
  sync_txn_abort(txn);
  return n;
}

typedef struct w3_pull {
  uint64_t rows, conflicts, chunks;
} w3_pull;

/* recv pulls from send until the last chunk (bench_pull_chunk: request in
 * a receiver read transaction, chunk cut in a sender read transaction,
 * apply + commit in a receiver write transaction). */
static void w3_pull_all(w3_replica *recv, w3_replica *send, w3_pull *st) {
  sync_delta_opts opts = {W3_CHUNK, 0};
  memset(st, 0, sizeof *st);
  for (;;) {
    bench_chunk c;
    bench_pull_chunk(recv->p.env, send->p.env, send->site, &opts, &c);
    sync_delta_free(c.d);
    st->rows += c.rep.rows;
    st->conflicts += c.rep.conflicts;
    st->chunks++;
    if (!c.rep.cursor_moved)
      bench_die("w3: chunk %" PRIu64 " of a pull did not move the cursor",
                st->chunks);
    if (c.last)
      break;
  }
}

/* New values for the columns in mask (bit i: column i) of vals; TEXT and
 * BLOB bytes go to c and d. */
static void w3_new_values(bench_rng *rng, unsigned mask, char c[W1_TEXT_LEN],
                          unsigned char d[W1_BLOB_LEN], unsigned *cols,
                          sync_value *vals, unsigned *n) {
  *n = 0;
  for (unsigned i = 0; i < W1_NCOLUMNS; i++) {
    if (!(mask & (1u << i)))
      continue;
    cols[*n] = i;
    switch (i) {
    case 0:
      vals[*n] = sync_int((int64_t)bench_rng_next(rng));
      break;
    case 1:
      vals[*n] = sync_real((bench_rng_unit(rng) - 0.5) * 2e6);
      break;
    case 2:
      for (size_t j = 0; j < W1_TEXT_LEN; j++)
        c[j] = (char)('a' + bench_rng_below(rng, 26));
      vals[*n] = sync_text(c, W1_TEXT_LEN);
      break;
    default:
      for (size_t j = 0; j < W1_BLOB_LEN; j += 8) {
        uint64_t x = bench_rng_next(rng);
        memcpy(d + j, &x, 8);
      }
      vals[*n] = sync_blob(d, W1_BLOB_LEN);
      break;
    }
    (*n)++;
  }
}

/* One operation of replica r in txn: 10% delete (a live row) or
 * re-insert (a deleted one) of a random key, else an update of a random
 * non-empty subset of the columns of a random live row. */
static void w3_op(w3_ctx *c, w3_replica *r, sync_txn *txn, bench_rng *rng) {
  sync_env *env = r->p.env;
  unsigned t = r->p.table, cols[W1_NCOLUMNS], n;
  sync_value vals[W1_NCOLUMNS];
  char text[W1_TEXT_LEN];
  unsigned char blob[W1_BLOB_LEN];
  const char *key = c->rows[bench_rng_below(rng, c->nkeys)].key;
  int live = sync_contains(txn, t, key, W1_KEY_LEN);
  if (live < 0)
    peer_sync_check(env, live, "sync_contains");
  if (bench_rng_below(rng, 10) == 0) {
    if (live) {
      peer_sync_check(env, sync_delete(txn, t, key, W1_KEY_LEN),
                      "sync_delete");
    } else {
      w3_new_values(rng, (1u << W1_NCOLUMNS) - 1, text, blob, cols, vals, &n);
      peer_sync_check(env, sync_put(txn, t, key, W1_KEY_LEN, vals, n),
                      "sync_put");
    }
    return;
  }
  /* An update needs a live row: draw again until one is. */
  for (int tries = 0; !live; tries++) {
    if (tries == 1000)
      bench_die("w3: no live row found to update");
    key = c->rows[bench_rng_below(rng, c->nkeys)].key;
    live = sync_contains(txn, t, key, W1_KEY_LEN);
    if (live < 0)
      peer_sync_check(env, live, "sync_contains");
  }
  w3_new_values(rng, 1 + (unsigned)bench_rng_below(rng, 15), text, blob, cols,
                vals, &n);
  peer_sync_check(env, sync_update(txn, t, key, W1_KEY_LEN, cols, vals, n),
                  "sync_update");
}

/* Untimed: five replicas holding the shared rows, then their local
 * operations, interleaved transaction by transaction. */
static void w3_setup(w3_ctx *c) {
  bench_rng rng = {W3_SEED_OPS};
  w3_pull st;
  c->now = W3_EPOCH_MS;
  for (int i = 0; i < W3_REPLICAS; i++)
    w3_open(c, &c->rep[i]);
  {
    peer_sync *p = &c->rep[0].p;
    for (size_t i = 0; i < c->nkeys; i += W1_TXN_ROWS) {
      size_t end = i + W1_TXN_ROWS < c->nkeys ? i + W1_TXN_ROWS : c->nkeys;
      sync_txn *txn;
      peer_sync_check(p->env, sync_txn_begin(p->env, 0, &txn),
                      "sync_txn_begin");
      for (size_t j = i; j < end; j++) {
        sync_value v[W1_NCOLUMNS];
        w1_values(&c->rows[j], v);
        peer_sync_check(p->env,
                        sync_put(txn, p->table, c->rows[j].key, W1_KEY_LEN, v,
                                 W1_NCOLUMNS),
                        "sync_put");
      }
      peer_sync_check(p->env, sync_txn_commit(txn), "sync_txn_commit");
    }
  }
  c->now++;
  for (int i = 1; i < W3_REPLICAS; i++) {
    w3_pull_all(&c->rep[i], &c->rep[0], &st);
    if (st.rows != c->nkeys)
      bench_die("w3: initial sync of replica %d sent %" PRIu64 " rows", i,
                st.rows);
    c->now++;
  }
  for (size_t done = 0; done < c->ops; done += W3_TXN_OPS) {
    size_t n = c->ops - done < W3_TXN_OPS ? c->ops - done : W3_TXN_OPS;
    for (int i = 0; i < W3_REPLICAS; i++) {
      sync_env *env = c->rep[i].p.env;
      sync_txn *txn;
      peer_sync_check(env, sync_txn_begin(env, 0, &txn), "sync_txn_begin");
      for (size_t k = 0; k < n; k++)
        w3_op(c, &c->rep[i], txn, &rng);
      peer_sync_check(env, sync_txn_commit(txn), "sync_txn_commit");
    }
    c->now++;
  }
  for (int i = 0; i < W3_REPLICAS; i++)
    peer_sync_check(c->rep[i].p.env, sync_env_sync(c->rep[i].p.env),
                    "sync_env_sync");
}

static double w3_run(void *arg) {
  w3_ctx *c = arg;
  bench_rng rng = {W3_SEED_PULLS};
  uint64_t dig[W3_REPLICAS], before = 0, after = 0, rows = 0, conflicts = 0;
  uint64_t pulls = 0, live = 0;
  double spent = 0;
  int agree = 0;

  w3_setup(c);
  for (int i = 0; i < W3_REPLICAS; i++) {
    before += w3_logged(&c->rep[i], NULL);
    dig[i] = w3_digest(&c->rep[i]);
  }
  while (!agree) {
    int ri = (int)bench_rng_below(&rng, W3_REPLICAS);
    int si = (int)bench_rng_below(&rng, W3_REPLICAS - 1);
    w3_pull st;
    double t0, t1;
    if (si >= ri)
      si++;
    if (pulls == W3_MAX_PULLS)
      bench_die("w3: no convergence after %d pulls", W3_MAX_PULLS);
    t0 = bench_now();
    w3_pull_all(&c->rep[ri], &c->rep[si], &st);
    t1 = bench_now();
    spent += t1 - t0;
    pulls++;
    rows += st.rows;
    conflicts += st.conflicts;
    c->now++;
    /* Untimed: only the receiver's digest can have changed. */
    dig[ri] = w3_digest(&c->rep[ri]);
    agree = 1;
    for (int i = 1; i < W3_REPLICAS; i++)
      agree &= dig[i] == dig[0];
  }
  /* Untimed: the conflicts the reports counted are in the logs. */
  for (int i = 0; i < W3_REPLICAS; i++) {
    uint64_t l;
    after += w3_logged(&c->rep[i], &l);
    if (i && l != live)
      bench_die("w3: replica %d holds %" PRIu64 " rows, replica 0 %" PRIu64,
                i, l, live);
    live = l;
  }
  if (after - before != conflicts)
    bench_die("w3: the apply reports counted %" PRIu64
              " conflicts, the conflict logs hold %" PRIu64,
              conflicts, after - before);
  for (int i = 0; i < W3_REPLICAS; i++) {
    peer_sync_close(&c->rep[i].p);
    bench_unlink_db(c->rep[i].path);
  }
  if (c->rounds_done &&
      (rows != c->rows_applied || conflicts != c->conflicts ||
       pulls != c->pulls || live != c->live))
    c->rounds_differ = 1;
  c->rows_applied = rows;
  c->conflicts = conflicts;
  c->pulls = pulls;
  c->live = live;
  c->rounds_done++;
  return spent > 0 ? (double)rows / spent : 0.0;
}

void bench_w3(const bench_opts *o) {
  w3_ctx c;
  bench_side s;
  bench_rng sites = {W3_SEED_SITES};
  size_t nkeys = o->rows / 100 ? o->rows / 100 : 1;
  double t0 = bench_now();

  memset(&c, 0, sizeof c);
  c.nkeys = nkeys;
  c.ops = 2 * nkeys;
  c.rows = w1_generate(nkeys);
  for (int i = 0; i < W3_REPLICAS; i++) {
    char name[32];
    snprintf(name, sizeof name, "w3-replica-%d.db", i);
    c.rep[i].path = bench_path(name);
    for (int j = 0; j < 16; j += 8) {
      uint64_t x = bench_rng_next(&sites);
      memcpy(c.rep[i].site + j, &x, 8);
    }
  }
  bench_note("w3: %d replicas share %zu W1 keys; each makes %zu operations "
             "(10%% deletes or re-inserts), %d per txn; pulls in chunks of "
             "%d rows in a fixed-seed random order until the digests agree; "
             "best of %d rounds",
             W3_REPLICAS, nkeys, c.ops, W3_TXN_OPS, W3_CHUNK, o->reps);
  bench_value("w3.keys", (double)nkeys, "rows");
  bench_value("w3.ops_per_replica", (double)c.ops, "ops");

  s = (bench_side){"sync", w3_run, &c, 0};
  bench_rounds("w3.merge", &s, 1, o->reps);
  if (c.rounds_differ)
    bench_note("w3: the rounds did not all do the same work; the counts "
               "below are the last round's");
  bench_note("w3: %.2f s in all, setup included", bench_now() - t0);
  bench_rate("w3.merge.rows_per_s", s.best);
  bench_value("w3.rows_applied", (double)c.rows_applied, "rows");
  bench_value("w3.conflicts_logged", (double)c.conflicts, "conflicts");
  bench_value("w3.rounds", (double)c.pulls, "pulls");
  bench_value("w3.live_rows", (double)c.live, "rows");
  free(c.rows);
}
