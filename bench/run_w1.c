/*
 * run_w1.c - workload W1 (DESIGN.md section 7): write the W1 rows, 1,000
 * per transaction, through ours with change tracking, raw LMDB and SQLite
 * with a session attached, then read random keys back through ours and raw
 * LMDB.  Plain runs sync nothing at commit; the .durable runs sync every
 * commit.  Then half of the rows are deleted on both sides, our
 * tombstones collected (sync_env_gc) and both files compacted, each step
 * measured by file size against raw LMDB's.  See bench/README.md for
 * what each figure means.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

typedef struct w1_ctx {
  const w1_row *rows;
  size_t nrows;
  const char *path;
  int durable;
  /* point gets */
  const char *keys; /* ngets * W1_KEY_LEN */
  const uint32_t *picks;
  size_t ngets;
  /* SQLite: bytes of the session's changeset, measured once */
  double changeset_bytes;
} w1_ctx;

/* Where the timed read loops put what they read, so that no compiler can
 * skip touching the value. */
static volatile uint64_t w1_sink;

/* Rows checked after each timed loop (untimed): every row written is
 * counted, and this many gets are compared value by value. */
#define W1_VERIFY_GETS 1000

static double rate(size_t n, double t0, double t1) {
  double dt = t1 - t0;
  return dt > 0 ? (double)n / dt : 0.0;
}

/* ---- writes ---------------------------------------------------------- */

static double w1_write_sync(void *arg) {
  w1_ctx *c = arg;
  peer_sync p;
  sync_txn *txn;
  uint64_t count = 0;
  double t0, t1;
  peer_sync_open(&p, c->path,
                 c->durable ? SYNC_DURABLE_FULL : SYNC_DURABLE_NOSYNC,
                 &w1_table, 1);
  t0 = bench_now();
  for (size_t i = 0; i < c->nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nrows ? i + W1_TXN_ROWS : c->nrows;
    peer_sync_check(p.env, sync_txn_begin(p.env, 0, &txn), "sync_txn_begin");
    for (size_t j = i; j < end; j++) {
      const w1_row *r = &c->rows[j];
      sync_value v[W1_NCOLUMNS];
      w1_values(r, v);
      peer_sync_check(
          p.env, sync_put(txn, p.table, r->key, W1_KEY_LEN, v, W1_NCOLUMNS),
          "sync_put");
    }
    peer_sync_check(p.env, sync_txn_commit(txn), "sync_txn_commit");
  }
  t1 = bench_now();
  peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(p.env, sync_count(txn, p.table, &count), "sync_count");
  sync_txn_abort(txn);
  if (count != c->nrows)
    bench_die("w1 sync: %" PRIu64 " rows after writing %zu", count, c->nrows);
  peer_sync_close(&p);
  bench_flush_file(c->path);
  return rate(c->nrows, t0, t1);
}

static double w1_write_lmdb(void *arg) {
  w1_ctx *c = arg;
  peer_lmdb p;
  MDB_txn *txn;
  MDB_stat st;
  double t0, t1;
  peer_lmdb_open(&p, c->path, c->durable, 1);
  t0 = bench_now();
  for (size_t i = 0; i < c->nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nrows ? i + W1_TXN_ROWS : c->nrows;
    peer_lmdb_check(mdb_txn_begin(p.env, NULL, 0, &txn), "mdb_txn_begin");
    for (size_t j = i; j < end; j++) {
      const w1_row *r = &c->rows[j];
      MDB_val k = {W1_KEY_LEN, (void *)r->key};
      MDB_val v = {W1_VAL_LEN, (void *)&r->a};
      peer_lmdb_check(mdb_put(txn, p.dbi, &k, &v, 0), "mdb_put");
    }
    peer_lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  t1 = bench_now();
  peer_lmdb_check(mdb_txn_begin(p.env, NULL, MDB_RDONLY, &txn),
                  "mdb_txn_begin");
  peer_lmdb_check(mdb_stat(txn, p.dbi, &st), "mdb_stat");
  mdb_txn_abort(txn);
  if (st.ms_entries != c->nrows)
    bench_die("w1 lmdb: %zu rows after writing %zu", (size_t)st.ms_entries,
              c->nrows);
  peer_lmdb_close(&p);
  bench_flush_file(c->path);
  return rate(c->nrows, t0, t1);
}

#if BENCH_HAVE_SQLITE
static double w1_write_sqlite(void *arg) {
  w1_ctx *c = arg;
  peer_sqlite p;
  sqlite3_stmt *ins, *begin, *commit, *count;
  double t0, t1;
  peer_sqlite_open(&p, c->path, c->durable, w1_sqlite_create, "t");
  ins = peer_sqlite_prepare(&p, w1_sqlite_insert);
  begin = peer_sqlite_prepare(&p, "BEGIN");
  commit = peer_sqlite_prepare(&p, "COMMIT");
  t0 = bench_now();
  for (size_t i = 0; i < c->nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nrows ? i + W1_TXN_ROWS : c->nrows;
    peer_sqlite_check(&p, sqlite3_step(begin), SQLITE_DONE, "BEGIN");
    sqlite3_reset(begin);
    for (size_t j = i; j < end; j++) {
      const w1_row *r = &c->rows[j];
      int rc = sqlite3_bind_text(ins, 1, r->key, W1_KEY_LEN, SQLITE_STATIC);
      if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(ins, 2, r->a);
      if (rc == SQLITE_OK)
        rc = sqlite3_bind_double(ins, 3, r->b);
      if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(ins, 4, r->c, W1_TEXT_LEN, SQLITE_STATIC);
      if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(ins, 5, r->d, W1_BLOB_LEN, SQLITE_STATIC);
      peer_sqlite_check(&p, rc, SQLITE_OK, "sqlite3_bind");
      peer_sqlite_check(&p, sqlite3_step(ins), SQLITE_DONE, "INSERT");
      peer_sqlite_check(&p, sqlite3_reset(ins), SQLITE_OK, "reset");
    }
    peer_sqlite_check(&p, sqlite3_step(commit), SQLITE_DONE, "COMMIT");
    sqlite3_reset(commit);
  }
  t1 = bench_now();
  count = peer_sqlite_prepare(&p, "SELECT count(*) FROM t");
  peer_sqlite_check(&p, sqlite3_step(count), SQLITE_ROW, "count");
  if ((uint64_t)sqlite3_column_int64(count, 0) != c->nrows)
    bench_die("w1 sqlite: %lld rows after writing %zu",
              (long long)sqlite3_column_int64(count, 0), c->nrows);
  if (sqlite3session_isempty(p.session))
    bench_die("w1 sqlite: the session recorded nothing");
  if (c->changeset_bytes == 0) {
    int n = 0;
    void *buf = NULL;
    peer_sqlite_check(&p, sqlite3session_changeset(p.session, &n, &buf),
                      SQLITE_OK, "sqlite3session_changeset");
    sqlite3_free(buf);
    c->changeset_bytes = n;
  }
  sqlite3_finalize(count);
  sqlite3_finalize(ins);
  sqlite3_finalize(begin);
  sqlite3_finalize(commit);
  peer_sqlite_close(&p);
  bench_unlink_db(c->path); /* not read again */
  return rate(c->nrows, t0, t1);
}
#endif

/* ---- point gets ------------------------------------------------------ */

static double w1_get_sync(void *arg) {
  w1_ctx *c = arg;
  peer_sync p;
  sync_txn *txn;
  sync_value v[W1_NCOLUMNS];
  uint64_t sum = 0;
  double t0, t1;
  peer_sync_open(&p, c->path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
  peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  t0 = bench_now();
  for (size_t i = 0; i < c->ngets; i++) {
    peer_sync_check(p.env,
                    sync_get(txn, p.table, c->keys + i * W1_KEY_LEN, W1_KEY_LEN,
                             v, W1_NCOLUMNS),
                    "sync_get");
    sum += (uint64_t)v[0].i;
  }
  t1 = bench_now();
  w1_sink = sum;
  for (size_t i = 0; i < c->ngets; i += c->ngets / W1_VERIFY_GETS + 1) {
    const w1_row *r = &c->rows[c->picks[i]];
    peer_sync_check(p.env,
                    sync_get(txn, p.table, r->key, W1_KEY_LEN, v, W1_NCOLUMNS),
                    "sync_get");
    if (!w1_same(r, v))
      bench_die("w1 sync: row %.16s reads back different values", r->key);
  }
  sync_txn_abort(txn);
  peer_sync_close(&p);
  return rate(c->ngets, t0, t1);
}

static double w1_get_lmdb(void *arg) {
  w1_ctx *c = arg;
  peer_lmdb p;
  MDB_txn *txn;
  uint64_t sum = 0;
  double t0, t1;
  peer_lmdb_open(&p, c->path, 0, 0);
  peer_lmdb_check(mdb_txn_begin(p.env, NULL, MDB_RDONLY, &txn),
                  "mdb_txn_begin");
  t0 = bench_now();
  for (size_t i = 0; i < c->ngets; i++) {
    MDB_val k = {W1_KEY_LEN, (void *)(c->keys + i * W1_KEY_LEN)};
    MDB_val v;
    int64_t a;
    peer_lmdb_check(mdb_get(txn, p.dbi, &k, &v), "mdb_get");
    memcpy(&a, v.mv_data, sizeof a);
    sum += (uint64_t)a;
  }
  t1 = bench_now();
  w1_sink = sum;
  for (size_t i = 0; i < c->ngets; i += c->ngets / W1_VERIFY_GETS + 1) {
    const w1_row *r = &c->rows[c->picks[i]];
    MDB_val k = {W1_KEY_LEN, (void *)r->key};
    MDB_val v;
    peer_lmdb_check(mdb_get(txn, p.dbi, &k, &v), "mdb_get");
    if (v.mv_size != W1_VAL_LEN || memcmp(v.mv_data, &r->a, W1_VAL_LEN) != 0)
      bench_die("w1 lmdb: row %.16s reads back different values", r->key);
  }
  mdb_txn_abort(txn);
  peer_lmdb_close(&p);
  return rate(c->ngets, t0, t1);
}

/* ---- the digest ------------------------------------------------------ */

/* sync_digest of every table on the replica the plain writes built (N
 * rows), each call in a read transaction of its own (begun and ended
 * untimed): the median and the worst of W1_DIGEST_CALLS calls, the first
 * (cold) one included.  Every call must give the same digest. */
#define W1_DIGEST_CALLS 1001

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double w1_digest_ms(const w1_ctx *c, double *worst, double *first) {
  peer_sync p;
  sync_txn *txn;
  uint64_t dg0 = 0, count = 0;
  double *ms = malloc(sizeof(double) * W1_DIGEST_CALLS), med;
  if (!ms) bench_die("out of memory");
  peer_sync_open(&p, c->path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
  for (size_t i = 0; i < W1_DIGEST_CALLS; i++) {
    uint64_t dg;
    double t0, t1;
    peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &txn),
                    "sync_txn_begin");
    t0 = bench_now();
    peer_sync_check(p.env, sync_digest(txn, SYNC_ALL_TABLES, &dg),
                    "sync_digest");
    t1 = bench_now();
    if (i == 0) {
      dg0 = dg;
      peer_sync_check(p.env, sync_count(txn, p.table, &count), "sync_count");
    }
    sync_txn_abort(txn);
    if (dg != dg0) bench_die("w1 digest: two calls gave two digests");
    ms[i] = (t1 - t0) * 1e3;
  }
  peer_sync_close(&p);
  if (count != c->nrows)
    bench_die("w1 digest: %" PRIu64 " rows, %zu written", count, c->nrows);
  *first = ms[0];
  qsort(ms, W1_DIGEST_CALLS, sizeof *ms, cmp_double);
  med = ms[W1_DIGEST_CALLS / 2];
  *worst = ms[W1_DIGEST_CALLS - 1];
  free(ms);
  bench_note("digest: %zu rows, digest %016" PRIx64, c->nrows, dg0);
  return med;
}

/* ---- collection and compaction --------------------------------------- */

/* Every second row of the write order deleted, W1_TXN_ROWS deletes per
 * transaction, on both sides; a peer of ours pulls all and acknowledges
 * it, so that every tombstone may be collected; sync_env_gc collects
 * them; then each file is compacted.  Both files went through the same
 * writes and deletes, so raw LMDB's is the floor at each step: it holds
 * the same remaining rows with no tombstones to collect. */
static void w1_delete_half(const w1_ctx *ours, const w1_ctx *lmdb,
                           size_t *deleted) {
  peer_sync p;
  peer_lmdb l;
  sync_txn *txn = NULL;
  MDB_txn *lt = NULL;
  size_t i, in_txn = 0;
  *deleted = 0;
  peer_sync_open(&p, ours->path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
  peer_lmdb_open(&l, lmdb->path, 0, 0);
  for (i = 0; i < ours->nrows; i += 2) {
    const w1_row *r = &ours->rows[i];
    MDB_val k = {W1_KEY_LEN, (void *)r->key};
    if (!txn) {
      peer_sync_check(p.env, sync_txn_begin(p.env, 0, &txn), "sync_txn_begin");
      peer_lmdb_check(mdb_txn_begin(l.env, NULL, 0, &lt), "mdb_txn_begin");
    }
    peer_sync_check(p.env, sync_delete(txn, p.table, r->key, W1_KEY_LEN),
                    "sync_delete");
    peer_lmdb_check(mdb_del(lt, l.dbi, &k, NULL), "mdb_del");
    (*deleted)++;
    if (++in_txn == W1_TXN_ROWS || i + 2 >= ours->nrows) {
      peer_sync_check(p.env, sync_txn_commit(txn), "sync_txn_commit");
      peer_lmdb_check(mdb_txn_commit(lt), "mdb_txn_commit");
      txn = NULL;
      in_txn = 0;
    }
  }
  peer_sync_close(&p);
  peer_lmdb_close(&l);
}

/* peer pulls everything from env, every request acknowledged, and one
 * more request after the last chunk: env knows the peer holds it all. */
static void w1_pull_acked(sync_env *peer, sync_env *env) {
  uint8_t site[16];
  int last = 0;
  peer_sync_check(env, sync_env_site_id(env, site), "sync_env_site_id");
  while (!last) {
    sync_txn *txn;
    sync_request *req = NULL;
    sync_delta *d = NULL;
    sync_delta_opts o;
    sync_apply_report rep;
    memset(&o, 0, sizeof o);
    peer_sync_check(peer, sync_txn_begin(peer, SYNC_TXN_RDONLY, &txn),
                    "sync_txn_begin (peer)");
    peer_sync_check(peer, sync_request_make(txn, site, &req),
                    "sync_request_make");
    sync_txn_abort(txn);
    peer_sync_check(env, sync_txn_begin(env, 0, &txn), "sync_txn_begin");
    peer_sync_check(env, sync_request_ack(txn, req), "sync_request_ack");
    peer_sync_check(env, sync_delta_make(txn, req, &o, &d), "sync_delta_make");
    peer_sync_check(env, sync_txn_commit(txn), "sync_txn_commit");
    sync_request_free(req);
    last = sync_delta_last(d) && sync_delta_rows(d) == 0;
    peer_sync_check(peer, sync_txn_begin(peer, 0, &txn),
                    "sync_txn_begin (peer)");
    peer_sync_check(peer, sync_delta_apply(txn, d, SYNC_APPLY_MERGE, &rep),
                    "sync_delta_apply");
    peer_sync_check(peer, sync_txn_commit(txn), "sync_txn_commit (peer)");
    sync_delta_free(d);
  }
}

static double ratio(double a, double b);
static double file_bytes(const char *path);

/* Raw LMDB's floor after compaction: a new file holding the rows of
 * src, appended in key order, so that its pages are full, as
 * sync_env_compact writes ours. */
static void w1_lmdb_repack(const char *src, const char *dst) {
  peer_lmdb s, d;
  MDB_txn *rt, *wt;
  MDB_cursor *c;
  MDB_val k, v;
  size_t n = 0;
  int rc, op = MDB_FIRST;
  peer_lmdb_open(&s, src, 0, 0);
  peer_lmdb_open(&d, dst, 0, 1);
  peer_lmdb_check(mdb_txn_begin(s.env, NULL, MDB_RDONLY, &rt), "mdb_txn_begin");
  peer_lmdb_check(mdb_cursor_open(rt, s.dbi, &c), "mdb_cursor_open");
  peer_lmdb_check(mdb_txn_begin(d.env, NULL, 0, &wt), "mdb_txn_begin");
  while ((rc = mdb_cursor_get(c, &k, &v, op)) == 0) {
    op = MDB_NEXT;
    peer_lmdb_check(mdb_put(wt, d.dbi, &k, &v, MDB_APPEND), "mdb_put");
    if (++n % 65536 == 0) {
      peer_lmdb_check(mdb_txn_commit(wt), "mdb_txn_commit");
      peer_lmdb_check(mdb_txn_begin(d.env, NULL, 0, &wt), "mdb_txn_begin");
    }
  }
  if (rc != MDB_NOTFOUND) peer_lmdb_check(rc, "mdb_cursor_get");
  peer_lmdb_check(mdb_txn_commit(wt), "mdb_txn_commit");
  mdb_cursor_close(c);
  mdb_txn_abort(rt);
  peer_lmdb_close(&s);
  peer_lmdb_close(&d);
}

static void w1_gc_compact(const w1_ctx *ours, const w1_ctx *lmdb) {
  char *peer_path = bench_path("w1-peer.db");
  char *lmdb_cpath = bench_path("w1-lmdb-compact.db");
  char *lmdb_rpath = bench_path("w1-lmdb-repacked.db");
  size_t deleted = 0;
  uint64_t collected = 0, left = 0, count = 0, dg;
  double t0, t1, before, after_gc, lmdb_after, ours_c, lmdb_c, lmdb_r;
  peer_sync p;
  peer_lmdb l;
  sync_env *peer;
  sync_txn *txn;

  w1_delete_half(ours, lmdb, &deleted);
  peer_sync_open(&p, ours->path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
  peer = peer_sync_env(peer_path, NULL, &w1_table, 1);
  w1_pull_acked(peer, p.env);
  sync_env_close(peer);
  bench_unlink_db(peer_path);
  before = file_bytes(ours->path);
  t0 = bench_now();
  peer_sync_check(p.env, sync_env_gc(p.env, &collected), "sync_env_gc");
  t1 = bench_now();
  peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(p.env, sync_tombstones(txn, &left), "sync_tombstones");
  peer_sync_check(p.env, sync_count(txn, p.table, &count), "sync_count");
  peer_sync_check(p.env, sync_digest(txn, SYNC_ALL_TABLES, &dg), "sync_digest");
  sync_txn_abort(txn);
  if (collected != deleted || left || count != ours->nrows - deleted)
    bench_die("w1 gc: %" PRIu64 " of %zu tombstones collected, %" PRIu64
              " left, %" PRIu64 " rows",
              collected, deleted, left, count);
  after_gc = file_bytes(ours->path);
  lmdb_after = file_bytes(lmdb->path);
  bench_note("gc: %zu of %zu rows deleted (%d per txn), %" PRIu64
             " tombstones collected in %.2f s in batches of %d; file %.1f MB "
             "before, %.1f MB after; raw LMDB after the same deletes "
             "%.1f MB",
             deleted, ours->nrows, W1_TXN_ROWS, collected, t1 - t0,
             SYNC_GC_BATCH, before / 1e6, after_gc / 1e6, lmdb_after / 1e6);
  bench_value("w1.file_after_gc.bytes_per_row",
              after_gc / (double)(ours->nrows - deleted), "bytes/row");
  bench_value("w1.file_after_gc.lmdb_bytes_per_row",
              lmdb_after / (double)(ours->nrows - deleted), "bytes/row");
  bench_ratio("w1.file_after_gc.ratio_vs_lmdb", ratio(after_gc, lmdb_after));

  /* Compaction: ours in place; raw LMDB's rows appended in key order to
   * a new file (the floor), and for reference LMDB's compacting copy,
   * which leaves out free pages but keeps the others as they are. */
  t0 = bench_now();
  peer_sync_check(p.env, sync_env_compact(p.env, NULL), "sync_env_compact");
  t1 = bench_now();
  if (peer_sync_digest(p.env) != dg) bench_die("w1 compact: digest changed");
  peer_sync_close(&p);
  peer_lmdb_open(&l, lmdb->path, 0, 0);
  bench_unlink_db(lmdb_cpath);
  peer_lmdb_check(mdb_env_copy2(l.env, lmdb_cpath, MDB_CP_COMPACT),
                  "mdb_env_copy2");
  peer_lmdb_close(&l);
  bench_unlink_db(lmdb_rpath);
  w1_lmdb_repack(lmdb->path, lmdb_rpath);
  ours_c = file_bytes(ours->path);
  lmdb_c = file_bytes(lmdb_cpath);
  lmdb_r = file_bytes(lmdb_rpath);
  bench_note("compact: %.1f MB in %.2f s; raw LMDB's rows in key order "
             "%.1f MB (its MDB_CP_COMPACT copy %.1f MB)",
             ours_c / 1e6, t1 - t0, lmdb_r / 1e6, lmdb_c / 1e6);
  bench_value("w1.file_after_compact.bytes_per_row",
              ours_c / (double)(ours->nrows - deleted), "bytes/row");
  bench_value("w1.file_after_compact.lmdb_bytes_per_row",
              lmdb_r / (double)(ours->nrows - deleted), "bytes/row");
  bench_ratio("w1.file_after_compact.ratio_vs_lmdb", ratio(ours_c, lmdb_r));
  bench_unlink_db(lmdb_cpath);
  bench_unlink_db(lmdb_rpath);
}

/* ---- the workload ---------------------------------------------------- */

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

static double file_bytes(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    bench_die("stat %s failed", path);
  return (double)st.st_size;
}

void bench_w1(const bench_opts *o) {
  size_t n = o->rows, nd = o->durable_rows < n ? o->durable_rows : n;
  double t0 = bench_now();
  w1_row *rows = w1_generate(n);
  uint32_t *picks = NULL;
  char *keys = w1_get_keys(rows, n, n, &picks);
  w1_ctx ours = {rows, n, bench_path("w1-sync.db"), 0, keys, picks, n, 0};
  w1_ctx lmdb = {rows, n, bench_path("w1-lmdb.db"), 0, keys, picks, n, 0};
  bench_side s[3];
  int ns = 2;
#if BENCH_HAVE_SQLITE
  w1_ctx lite = {rows, n, bench_path("w1-sqlite.db"), 0, NULL, NULL, 0, 0};
#endif

  bench_note("w1: %zu rows (key row-%%012d in a fixed pseudo-random order), "
             "%d rows/txn, %zu point gets; durable runs: %zu rows; "
             "best of %d alternating rounds",
             n, W1_TXN_ROWS, n, nd, o->reps);
  bench_note("w1: data generated in %.2f s (untimed)", bench_now() - t0);
  bench_value("w1.rows", (double)n, "rows");
  bench_value("w1.durable.rows", (double)nd, "rows");

  /* Writes, nothing synced at commit. */
  s[0] = (bench_side){"sync", w1_write_sync, &ours, 0};
  s[1] = (bench_side){"lmdb", w1_write_lmdb, &lmdb, 0};
#if BENCH_HAVE_SQLITE
  s[2] = (bench_side){"sqlite", w1_write_sqlite, &lite, 0};
  ns = 3;
#endif
  bench_rounds("w1.write", s, ns, o->reps);
  bench_rate("w1.write.rows_per_s", s[0].best);
  bench_rate("w1.write.lmdb_rows_per_s", s[1].best);
  bench_ratio("w1.write.ratio_vs_lmdb", ratio(s[0].best, s[1].best));
#if BENCH_HAVE_SQLITE
  bench_rate("w1.write.sqlite_rows_per_s", s[2].best);
  bench_ratio("w1.write.ratio_vs_sqlite", ratio(s[0].best, s[2].best));
  bench_value("w1.sqlite.changeset_bytes_per_row",
              lite.changeset_bytes / (double)n, "bytes/row");
#else
  bench_note(BENCH_SQLITE_SKIPPED);
#endif
  bench_value("w1.file.bytes_per_row", file_bytes(ours.path) / (double)n,
              "bytes/row");
  bench_value("w1.file.lmdb_bytes_per_row", file_bytes(lmdb.path) / (double)n,
              "bytes/row");
  bench_ratio("w1.file.ratio_vs_lmdb",
              ratio(file_bytes(ours.path), file_bytes(lmdb.path)));

  /* Point gets on the files of the last write round. */
  s[0] = (bench_side){"sync", w1_get_sync, &ours, 0};
  s[1] = (bench_side){"lmdb", w1_get_lmdb, &lmdb, 0};
  bench_rounds("w1.get", s, 2, o->reps);
  bench_rate("w1.get.rows_per_s", s[0].best);
  bench_rate("w1.get.lmdb_rows_per_s", s[1].best);
  bench_ratio("w1.get.ratio_vs_lmdb", ratio(s[0].best, s[1].best));

  /* The digest of the same file: O(1), read from the stored sums. */
  {
    double worst, first, med = w1_digest_ms(&ours, &worst, &first);
    bench_note("digest: median of %d calls %.4f ms, first %.4f ms, worst "
               "%.4f ms",
               W1_DIGEST_CALLS, med, first, worst);
    bench_ms("digest.1m.ms", med);
  }

  /* Half of the rows deleted, the tombstones collected, the files
   * compacted: the files of the same write round. */
  w1_gc_compact(&ours, &lmdb);
  bench_unlink_db(ours.path);
  bench_unlink_db(lmdb.path);

  /* Writes with every commit synced, on the first nd rows. */
  ours.nrows = lmdb.nrows = nd;
  ours.durable = lmdb.durable = 1;
  s[0] = (bench_side){"sync", w1_write_sync, &ours, 0};
  s[1] = (bench_side){"lmdb", w1_write_lmdb, &lmdb, 0};
#if BENCH_HAVE_SQLITE
  lite.nrows = nd;
  lite.durable = 1;
  s[2] = (bench_side){"sqlite", w1_write_sqlite, &lite, 0};
#endif
  bench_rounds("w1.write.durable", s, ns, o->reps);
  bench_rate("w1.write.durable.rows_per_s", s[0].best);
  bench_rate("w1.write.durable.lmdb_rows_per_s", s[1].best);
  bench_ratio("w1.write.durable.ratio_vs_lmdb", ratio(s[0].best, s[1].best));
#if BENCH_HAVE_SQLITE
  bench_rate("w1.write.durable.sqlite_rows_per_s", s[2].best);
  bench_ratio("w1.write.durable.ratio_vs_sqlite", ratio(s[0].best, s[2].best));
#endif
  bench_unlink_db(ours.path);
  bench_unlink_db(lmdb.path);

  free(keys);
  free(picks);
  free(rows);
}
