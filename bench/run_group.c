/*
 * run_group.c - durable single-row commits from several threads: group
 * commit (SYNC_TXN_GROUP) against raw LMDB's one sync per commit, in the
 * same run.  Every side syncs every commit it acknowledges
 * (SYNC_DURABLE_FULL; raw LMDB without MDB_NOSYNC).  See bench/README.md.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

#define GROUP_MAX_THREADS 4

typedef struct group_ctx {
  const w1_row *rows;
  size_t per_thread; /* commits per thread */
  int nthreads;
  int mode; /* 0 raw LMDB, 1 ours with SYNC_TXN_GROUP, 2 ours plain */
  const char *path;
} group_ctx;

typedef struct group_thread {
  pthread_t th;
  const group_ctx *c;
  int id;
  peer_sync *ps;
  peer_lmdb *pl;
} group_thread;

static void *group_worker(void *arg) {
  group_thread *t = arg;
  const group_ctx *c = t->c;
  for (size_t i = 0; i < c->per_thread; i++) {
    const w1_row *r = &c->rows[(size_t)t->id * c->per_thread + i];
    if (c->mode == 0) {
      MDB_txn *txn;
      MDB_val k = {W1_KEY_LEN, (void *)r->key};
      MDB_val v = {W1_VAL_LEN, (void *)&r->a};
      peer_lmdb_check(mdb_txn_begin(t->pl->env, NULL, 0, &txn),
                      "mdb_txn_begin");
      peer_lmdb_check(mdb_put(txn, t->pl->dbi, &k, &v, 0), "mdb_put");
      peer_lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
    } else {
      sync_txn *txn;
      sync_value v[W1_NCOLUMNS];
      w1_values(r, v);
      peer_sync_check(t->ps->env,
                      sync_txn_begin(t->ps->env,
                                     c->mode == 1 ? SYNC_TXN_GROUP : 0, &txn),
                      "sync_txn_begin");
      peer_sync_check(t->ps->env,
                      sync_put(txn, t->ps->table, r->key, W1_KEY_LEN, v,
                               W1_NCOLUMNS),
                      "sync_put");
      peer_sync_check(t->ps->env, sync_txn_commit(txn), "sync_txn_commit");
    }
  }
  return NULL;
}

/* Commits per second of c->nthreads threads, each making c->per_thread
 * one-row durable commits into a fresh file. */
static double group_run(void *arg) {
  group_ctx *c = arg;
  group_thread t[GROUP_MAX_THREADS];
  peer_sync ps;
  peer_lmdb pl;
  size_t n = c->per_thread * (size_t)c->nthreads;
  double t0, t1;
  if (c->mode == 0)
    peer_lmdb_open(&pl, c->path, 1, 1);
  else
    peer_sync_open(&ps, c->path, SYNC_DURABLE_FULL, &w1_table, 1);
  t0 = bench_now();
  for (int i = 0; i < c->nthreads; i++) {
    t[i].c = c;
    t[i].id = i;
    t[i].ps = &ps;
    t[i].pl = &pl;
    if (pthread_create(&t[i].th, NULL, group_worker, &t[i]))
      bench_die("group: pthread_create failed");
  }
  for (int i = 0; i < c->nthreads; i++)
    pthread_join(t[i].th, NULL);
  t1 = bench_now();
  /* Untimed: every commit is there. */
  if (c->mode == 0) {
    MDB_txn *txn;
    MDB_stat st;
    peer_lmdb_check(mdb_txn_begin(pl.env, NULL, MDB_RDONLY, &txn),
                    "mdb_txn_begin");
    peer_lmdb_check(mdb_stat(txn, pl.dbi, &st), "mdb_stat");
    mdb_txn_abort(txn);
    if (st.ms_entries != n)
      bench_die("group lmdb: %zu rows after %zu commits",
                (size_t)st.ms_entries, n);
    peer_lmdb_close(&pl);
  } else {
    sync_txn *txn;
    uint64_t count = 0;
    peer_sync_check(ps.env, sync_txn_begin(ps.env, SYNC_TXN_RDONLY, &txn),
                    "sync_txn_begin");
    peer_sync_check(ps.env, sync_count(txn, ps.table, &count), "sync_count");
    sync_txn_abort(txn);
    if (count != n)
      bench_die("group sync: %llu rows after %zu commits",
                (unsigned long long)count, n);
    peer_sync_close(&ps);
  }
  bench_unlink_db(c->path);
  return t1 > t0 ? (double)n / (t1 - t0) : 0.0;
}

/* A rate of commits, printed as bench_rate prints rows/s. */
static void group_rate(const char *name, double per_s) {
  bench_value(name, (double)(int64_t)(per_s + 0.5), "commits/s");
}

void bench_group(const bench_opts *o) {
  /* 2,000 commits a side (400 with --quick): a few seconds of syncs. */
  size_t total = o->rows >= 1000000 ? 2000 : 400;
  size_t per = total / GROUP_MAX_THREADS;
  w1_row *rows = w1_generate(total);
  group_ctx lmdb = {rows, per, 4, 0, bench_path("group-lmdb.db")};
  group_ctx g4 = {rows, per, 4, 1, bench_path("group-sync.db")};
  group_ctx p4 = {rows, per, 4, 2, bench_path("group-sync.db")};
  group_ctx g1 = {rows, per * 4, 1, 1, bench_path("group-sync.db")};
  bench_side s[4];

  bench_note("group: %zu durable one-row commits a side (W1 rows), 4 "
             "threads (and 1); every commit synced; best of %d alternating "
             "rounds",
             total, o->reps);
  bench_value("durable.group.commits", (double)total, "commits");
  s[0] = (bench_side){"lmdb4", group_run, &lmdb, 0};
  s[1] = (bench_side){"group4", group_run, &g4, 0};
  s[2] = (bench_side){"plain4", group_run, &p4, 0};
  s[3] = (bench_side){"group1", group_run, &g1, 0};
  bench_rounds("durable.group", s, 4, o->reps);
  group_rate("durable.group4.commits_per_s", s[1].best);
  group_rate("durable.plain4.commits_per_s", s[2].best);
  group_rate("durable.group1.commits_per_s", s[3].best);
  group_rate("durable.group4.lmdb_commits_per_s", s[0].best);
  bench_ratio("durable.group4.ratio_vs_lmdb",
              s[0].best > 0 ? s[1].best / s[0].best : 0.0);
  bench_ratio("durable.plain4.ratio_vs_lmdb",
              s[0].best > 0 ? s[2].best / s[0].best : 0.0);
  free(rows);
}
