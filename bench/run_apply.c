/*
 * run_apply.c - the merge engine: how fast a replica applies what it
 * pulls (DESIGN.md section 7, W1 rows), side by side with its peers.
 *
 *  - Initial sync: an empty receiver pulls all W1 rows from a sender
 *    (request, delta chunk, apply + commit, until the last chunk); only
 *    apply + commit is timed.  Peer: SQLite applying the changeset its
 *    session recorded for the same rows.
 *  - Incremental: the populated receiver pulls N/10 random-key updates
 *    made on the sender.  Peer: raw LMDB putting the same updated rows, in
 *    the same order and 1,000 per transaction, into a populated file.
 *
 * See bench/README.md for what each figure means.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "workloads.h"

/* Rows per delta chunk.  The initial stream is cut in chunks of
 * APPLY_INITIAL_CHUNK rows (max_bytes raised so that it, not the byte
 * limit, ends a chunk); the incremental pull uses the default 1,000, the
 * transaction size of its raw LMDB peer. */
#define APPLY_INITIAL_CHUNK 10000
#define APPLY_INITIAL_CHUNK_BYTES ((size_t)64 << 20)
#define APPLY_INCR_CHUNK 1000

#define APPLY_SEED_UPDATES UINT64_C(0x5715C0DE00000011)

typedef struct apply_ctx {
  const w1_row *rows; /* W1 rows, in W1 write order */
  size_t nrows;
  peer_sync *send;      /* the sender, open for the whole workload */
  uint64_t send_digest; /* its digest, as the receiver must end with */
  const char *recv_path;   /* receiver of the initial rounds */
  const char *recv_inc;    /* a copy of it, per incremental round */
  sync_delta_opts initial; /* chunking of the initial stream */
  sync_delta_opts incr;    /* chunking of the incremental pull */
  double make_best;        /* best sync_delta_make rate of the rounds */
  double incr_make_best;
  /* incremental updates, in the order they were made */
  const w1_row *upd;
  size_t nupd;
  /* reading the change log: the sender's changes after this version */
  uint64_t changes_since;
  uint64_t changes_sum; /* of column a, every round must agree */
  /* raw LMDB */
  const char *lmdb_base; /* W1 rows in key order, made once */
  const char *lmdb_path; /* a copy of it, per round */
#if BENCH_HAVE_SQLITE
  const char *lite_path;
  void *changeset;
  int changeset_bytes;
#endif
} apply_ctx;

static double rate(double n, double dt) { return dt > 0 ? n / dt : 0.0; }
static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

/* ---- helpers (untimed) ----------------------------------------------- */

static void copy_file(const char *src, const char *dst) {
  enum { BUF = 1 << 20 };
  char *buf = bench_xmalloc(BUF);
  int in, out;
  bench_unlink_db(dst);
  in = open(src, O_RDONLY);
  if (in < 0)
    bench_die("open %s: %s", src, strerror(errno));
  out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0)
    bench_die("open %s: %s", dst, strerror(errno));
  for (;;) {
    ssize_t n = read(in, buf, BUF), off = 0;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      bench_die("read %s: %s", src, strerror(errno));
    if (n == 0)
      break;
    while (off < n) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        bench_die("write %s: %s", dst, strerror(errno));
      off += w;
    }
  }
  if (fsync(out) != 0)
    bench_die("fsync %s: %s", dst, strerror(errno));
  if (close(out) != 0)
    bench_die("close %s: %s", dst, strerror(errno));
  close(in);
  free(buf);
}

static uint64_t sync_digest_of(peer_sync *p) {
  sync_txn *txn;
  uint64_t h = 0;
  peer_sync_check(p->env, sync_txn_begin(p->env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(p->env, sync_digest(txn, SYNC_ALL_TABLES, &h),
                  "sync_digest");
  sync_txn_abort(txn);
  return h;
}

static uint64_t sync_count_of(peer_sync *p) {
  sync_txn *txn;
  uint64_t n = 0;
  peer_sync_check(p->env, sync_txn_begin(p->env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(p->env, sync_count(txn, p->table, &n), "sync_count");
  sync_txn_abort(txn);
  return n;
}

/* ---- the pull -------------------------------------------------------- */

typedef struct pull_stats {
  double apply_s; /* receiver: write txn begin .. commit returned */
  double make_s;  /* sender: read txn begin .. sync_delta_make returned */
  uint64_t rows, chunks, conflicts;
} pull_stats;

/* recv pulls everything from send, chunk by chunk (bench_pull_chunk):
 * only the sender's cut and the receiver's apply + commit are timed, each
 * on its own. */
static void pull_all(peer_sync *recv, peer_sync *send,
                     const sync_delta_opts *opts, pull_stats *st) {
  uint8_t site[16];
  memset(st, 0, sizeof *st);
  peer_sync_check(send->env, sync_env_site_id(send->env, site),
                  "sync_env_site_id");
  for (;;) {
    bench_chunk c;
    bench_pull_chunk(recv->env, send->env, site, opts, &c);
    sync_delta_free(c.d);
    st->make_s += c.make_s;
    st->apply_s += c.apply_s;
    st->rows += c.rep.rows;
    st->conflicts += c.rep.conflicts;
    st->chunks++;
    if (!c.rep.cursor_moved)
      bench_die("apply: chunk %" PRIu64 " of a pull did not move the cursor",
                st->chunks);
    if (c.last)
      break;
  }
}

/* ---- initial sync ---------------------------------------------------- */

static double initial_sync(void *arg) {
  apply_ctx *c = arg;
  peer_sync recv;
  pull_stats st;
  uint64_t h;
  peer_sync_open(&recv, c->recv_path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  pull_all(&recv, c->send, &c->initial, &st);
  /* Untimed: every row arrived and both replicas hold the same data. */
  if (st.rows != c->nrows)
    bench_die("apply: the initial sync sent %" PRIu64 " rows, not %zu",
              st.rows, c->nrows);
  if (sync_count_of(&recv) != c->nrows)
    bench_die("apply: the receiver holds %" PRIu64 " rows, not %zu",
              sync_count_of(&recv), c->nrows);
  h = sync_digest_of(&recv);
  if (h != c->send_digest)
    bench_die("apply: digest after the initial sync %016" PRIx64
              " differs from the sender's %016" PRIx64,
              h, c->send_digest);
  if (st.conflicts)
    bench_die("apply: the initial sync recorded %" PRIu64 " conflicts",
              st.conflicts);
  peer_sync_close(&recv);
  bench_flush_file(c->recv_path);
  if (rate((double)st.rows, st.make_s) > c->make_best)
    c->make_best = rate((double)st.rows, st.make_s);
  return rate((double)st.rows, st.apply_s);
}

#if BENCH_HAVE_SQLITE
/* Record the changeset of inserting the W1 rows (untimed, once). */
static void sqlite_make_changeset(apply_ctx *c) {
  peer_sqlite p;
  sqlite3_stmt *ins;
  peer_sqlite_open(&p, c->lite_path, 0, w1_sqlite_create, "t");
  ins = peer_sqlite_prepare(&p, w1_sqlite_insert);
  for (size_t i = 0; i < c->nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nrows ? i + W1_TXN_ROWS : c->nrows;
    peer_sqlite_exec(&p, "BEGIN");
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
    peer_sqlite_exec(&p, "COMMIT");
  }
  sqlite3_finalize(ins);
  peer_sqlite_check(&p,
                    sqlite3session_changeset(p.session, &c->changeset_bytes,
                                             &c->changeset),
                    SQLITE_OK, "sqlite3session_changeset");
  if (!c->changeset || c->changeset_bytes <= 0)
    bench_die("apply sqlite: the session recorded nothing");
  peer_sqlite_close(&p);
  bench_unlink_db(c->lite_path);
}

static int sqlite_conflict(void *ctx, int kind, sqlite3_changeset_iter *it) {
  (void)it;
  *(int *)ctx = kind;
  return SQLITE_CHANGESET_ABORT;
}

static double initial_sqlite(void *arg) {
  apply_ctx *c = arg;
  peer_sqlite p;
  sqlite3_stmt *count;
  int conflict = 0, rc;
  double t0, t1;
  peer_sqlite_open(&p, c->lite_path, 0, w1_sqlite_create, "t");
  /* The target only applies: no session of its own. */
  sqlite3session_delete(p.session);
  p.session = NULL;
  t0 = bench_now();
  rc = sqlite3changeset_apply(p.db, c->changeset_bytes, c->changeset, NULL,
                              sqlite_conflict, &conflict);
  t1 = bench_now();
  if (conflict)
    bench_die("apply sqlite: conflict %d applying the changeset", conflict);
  peer_sqlite_check(&p, rc, SQLITE_OK, "sqlite3changeset_apply");
  count = peer_sqlite_prepare(&p, "SELECT count(*) FROM t");
  peer_sqlite_check(&p, sqlite3_step(count), SQLITE_ROW, "count");
  if ((uint64_t)sqlite3_column_int64(count, 0) != c->nrows)
    bench_die("apply sqlite: %lld rows after applying %zu",
              (long long)sqlite3_column_int64(count, 0), c->nrows);
  sqlite3_finalize(count);
  peer_sqlite_close(&p);
  bench_unlink_db(c->lite_path);
  return rate((double)c->nrows, t1 - t0);
}
#endif

/* ---- incremental ----------------------------------------------------- */

static double incr_sync(void *arg) {
  apply_ctx *c = arg;
  peer_sync recv;
  pull_stats st;
  uint64_t h;
  copy_file(c->recv_path, c->recv_inc);
  peer_sync_open(&recv, c->recv_inc, SYNC_DURABLE_NOSYNC, &w1_table, 0);
  pull_all(&recv, c->send, &c->incr, &st);
  if (st.rows != c->nupd)
    bench_die("apply: the incremental pull sent %" PRIu64 " rows, not %zu",
              st.rows, c->nupd);
  h = sync_digest_of(&recv);
  if (h != c->send_digest)
    bench_die("apply: digest after the incremental pull %016" PRIx64
              " differs from the sender's %016" PRIx64,
              h, c->send_digest);
  if (st.conflicts)
    bench_die("apply: the incremental pull recorded %" PRIu64 " conflicts",
              st.conflicts);
  peer_sync_close(&recv);
  bench_unlink_db(c->recv_inc);
  if (rate((double)st.rows, st.make_s) > c->incr_make_best)
    c->incr_make_best = rate((double)st.rows, st.make_s);
  return rate((double)st.rows, st.apply_s);
}

/* The raw LMDB file every round starts from: all W1 rows put in key order
 * with MDB_APPEND, as our receiver's initial sync stores them. */
static void lmdb_make_base(apply_ctx *c) {
  peer_lmdb p;
  peer_lmdb_open(&p, c->lmdb_base, 0, 1);
  for (size_t i = 0; i < c->nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nrows ? i + W1_TXN_ROWS : c->nrows;
    MDB_txn *txn;
    peer_lmdb_check(mdb_txn_begin(p.env, NULL, 0, &txn), "mdb_txn_begin");
    for (size_t j = i; j < end; j++) {
      w1_row r;
      MDB_val k, v;
      w1_fill_row(&r, (uint32_t)j);
      k.mv_size = W1_KEY_LEN;
      k.mv_data = r.key;
      v.mv_size = W1_VAL_LEN;
      v.mv_data = &r.a;
      peer_lmdb_check(mdb_put(txn, p.dbi, &k, &v, MDB_APPEND), "mdb_put");
    }
    peer_lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  peer_lmdb_close(&p);
}

static double incr_lmdb(void *arg) {
  apply_ctx *c = arg;
  peer_lmdb p;
  MDB_txn *txn;
  MDB_stat ms;
  double t0, t1;
  copy_file(c->lmdb_base, c->lmdb_path);
  peer_lmdb_open(&p, c->lmdb_path, 0, 0);
  t0 = bench_now();
  for (size_t i = 0; i < c->nupd; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nupd ? i + W1_TXN_ROWS : c->nupd;
    peer_lmdb_check(mdb_txn_begin(p.env, NULL, 0, &txn), "mdb_txn_begin");
    for (size_t j = i; j < end; j++) {
      const w1_row *r = &c->upd[j];
      MDB_val k = {W1_KEY_LEN, (void *)r->key};
      MDB_val v = {W1_VAL_LEN, (void *)&r->a};
      peer_lmdb_check(mdb_put(txn, p.dbi, &k, &v, 0), "mdb_put");
    }
    peer_lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  t1 = bench_now();
  /* Untimed: no row added, and a sample of the updates reads back. */
  peer_lmdb_check(mdb_txn_begin(p.env, NULL, MDB_RDONLY, &txn),
                  "mdb_txn_begin");
  peer_lmdb_check(mdb_stat(txn, p.dbi, &ms), "mdb_stat");
  if (ms.ms_entries != c->nrows)
    bench_die("apply lmdb: %zu rows after the updates, not %zu",
              (size_t)ms.ms_entries, c->nrows);
  for (size_t i = 0; i < c->nupd; i += c->nupd / 1000 + 1) {
    MDB_val k = {W1_KEY_LEN, (void *)c->upd[i].key}, v;
    peer_lmdb_check(mdb_get(txn, p.dbi, &k, &v), "mdb_get");
    if (v.mv_size != W1_VAL_LEN ||
        memcmp(v.mv_data, &c->upd[i].a, W1_VAL_LEN) != 0)
      bench_die("apply lmdb: row %.16s does not read back updated",
                c->upd[i].key);
  }
  mdb_txn_abort(txn);
  peer_lmdb_close(&p);
  bench_unlink_db(c->lmdb_path);
  return rate((double)c->nupd, t1 - t0);
}

/* ---- reading the change log ----------------------------------------- */

/* How a side reads the changes: sync_changes_open_flags' flags. */
typedef struct changes_side {
  apply_ctx *c;
  unsigned flags;
} changes_side;

/* The sender's changes since the updates began (the N/10 updated rows of
 * N), through sync_changes_*, every column read, in one read
 * transaction; rows/s.  Either flags give the same rows (the sum of
 * column a must agree). */
static double changes_sync(void *arg) {
  changes_side *cs = arg;
  apply_ctx *c = cs->c;
  sync_txn *txn;
  sync_changes *it;
  sync_change ch;
  uint64_t n = 0, sum = 0;
  double t0, t1;
  int rc;
  peer_sync_check(c->send->env,
                  sync_txn_begin(c->send->env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  t0 = bench_now();
  peer_sync_check(c->send->env,
                  sync_changes_open_flags(txn, c->changes_since, cs->flags, &it),
                  "sync_changes_open_flags");
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    for (unsigned j = 0; j < ch.ncolumns; j++) {
      sync_value v;
      sync_stamp st;
      peer_sync_check(c->send->env, sync_changes_column(it, j, &v, &st, NULL),
                      "sync_changes_column");
      if (j == 0)
        sum += (uint64_t)v.i;
    }
    n++;
  }
  t1 = bench_now();
  if (rc != SYNC_NOTFOUND)
    peer_sync_check(c->send->env, rc, "sync_changes_next");
  sync_changes_close(it);
  sync_txn_abort(txn);
  if (n != c->nupd)
    bench_die("changes: %" PRIu64 " rows read, %zu changed", n, c->nupd);
  if (c->changes_sum && sum != c->changes_sum)
    bench_die("changes: two rounds read different values");
  c->changes_sum = sum;
  return rate((double)n, t1 - t0);
}

/* Where the scan puts what it read, so that no compiler skips it. */
static volatile uint64_t changes_sink;

/* Raw LMDB: a cursor walk of all N rows of the base file, each value
 * touched; rows/s. */
static double changes_lmdb_scan(void *arg) {
  apply_ctx *c = arg;
  peer_lmdb p;
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val k, v;
  uint64_t n = 0, sum = 0;
  double t0, t1;
  int rc;
  peer_lmdb_open(&p, c->lmdb_base, 0, 0);
  peer_lmdb_check(mdb_txn_begin(p.env, NULL, MDB_RDONLY, &txn),
                  "mdb_txn_begin");
  t0 = bench_now();
  peer_lmdb_check(mdb_cursor_open(txn, p.dbi, &cur), "mdb_cursor_open");
  while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
    int64_t a;
    memcpy(&a, v.mv_data, sizeof a);
    sum += (uint64_t)a;
    n++;
  }
  t1 = bench_now();
  if (rc != MDB_NOTFOUND)
    peer_lmdb_check(rc, "mdb_cursor_get");
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  peer_lmdb_close(&p);
  if (n != c->nrows)
    bench_die("changes lmdb: %" PRIu64 " rows scanned, %zu held", n,
              c->nrows);
  changes_sink = sum;
  return rate((double)n, t1 - t0);
}

/* nupd distinct keys (the first nupd of a fixed-seed permutation of the
 * row numbers), each with new values in all four columns. */
static w1_row *make_updates(size_t nrows, size_t nupd) {
  uint32_t *perm = bench_permutation(nrows, APPLY_SEED_UPDATES);
  w1_row *upd = bench_xmalloc(nupd * sizeof *upd);
  for (size_t i = 0; i < nupd; i++) {
    w1_row old;
    w1_fill_row(&old, perm[i]);
    /* The values of a row number past the table: new in every column. */
    w1_fill_row(&upd[i], (uint32_t)(nrows + i));
    memcpy(upd[i].key, old.key, W1_KEY_LEN);
  }
  free(perm);
  return upd;
}

/* ---- the workload ---------------------------------------------------- */

void bench_apply(const bench_opts *o) {
  size_t n = o->rows, nupd = o->rows / 10 ? o->rows / 10 : 1;
  double t0 = bench_now();
  w1_row *rows = w1_generate(n);
  w1_row *upd = make_updates(n, nupd);
  const char *send_path = bench_path("apply-send.db");
  peer_sync send;
  apply_ctx c;
  bench_side s[3];
  int ns = 1;

  memset(&c, 0, sizeof c);
  c.rows = rows;
  c.nrows = n;
  c.send = &send;
  c.recv_path = bench_path("apply-recv.db");
  c.recv_inc = bench_path("apply-recv-inc.db");
  c.initial.max_rows = APPLY_INITIAL_CHUNK;
  c.initial.max_bytes = APPLY_INITIAL_CHUNK_BYTES;
  c.incr.max_rows = APPLY_INCR_CHUNK;
  c.upd = upd;
  c.nupd = nupd;
  c.lmdb_base = bench_path("apply-lmdb-base.db");
  c.lmdb_path = bench_path("apply-lmdb.db");
#if BENCH_HAVE_SQLITE
  c.lite_path = bench_path("apply-sqlite.db");
#endif

  bench_note("apply: %zu W1 rows pulled by an empty receiver in chunks of "
             "%d rows, then %zu random-key updates (all four columns) in "
             "chunks of %d; best of %d alternating rounds",
             n, APPLY_INITIAL_CHUNK, nupd, APPLY_INCR_CHUNK, o->reps);
  bench_value("apply.rows", (double)n, "rows");
  bench_value("apply.updates", (double)nupd, "rows");

  /* Untimed: the sender with the W1 rows, SQLite's changeset of them. */
  peer_sync_open(&send, send_path, SYNC_DURABLE_NOSYNC,
                 &w1_table, 1);
  w1_put_rows(send.env, send.table, rows, n);
  peer_sync_check(send.env, sync_env_sync(send.env), "sync_env_sync");
  c.send_digest = sync_digest_of(&send);
#if BENCH_HAVE_SQLITE
  sqlite_make_changeset(&c);
  bench_value("apply.sqlite.changeset_bytes_per_row",
              (double)c.changeset_bytes / (double)n, "bytes/row");
#endif
  bench_note("apply: sender and changeset made in %.2f s (untimed)",
             bench_now() - t0);

  /* Initial sync: ours versus SQLite's changeset apply. */
  s[0] = (bench_side){"sync", initial_sync, &c, 0};
#if BENCH_HAVE_SQLITE
  s[1] = (bench_side){"sqlite", initial_sqlite, &c, 0};
  ns = 2;
#endif
  bench_rounds("w1.initial_apply", s, ns, o->reps);
  bench_rate("w1.initial_apply.rows_per_s", s[0].best);
  bench_rate("w1.initial_make.rows_per_s", c.make_best);
#if BENCH_HAVE_SQLITE
  bench_rate("w1.initial_apply.sqlite_rows_per_s", s[1].best);
  bench_ratio("w1.initial_apply.ratio_vs_sqlite", ratio(s[0].best, s[1].best));
  sqlite3_free(c.changeset);
  c.changeset = NULL;
#else
  bench_note(BENCH_SQLITE_SKIPPED);
#endif

  /* Incremental: the updates are made on the sender (untimed); every
   * round starts from a copy of the last initial round's receiver, and
   * raw LMDB from a copy of a file holding the same rows. */
  t0 = bench_now();
  {
    sync_txn *txn;
    peer_sync_check(send.env, sync_txn_begin(send.env, SYNC_TXN_RDONLY, &txn),
                    "sync_txn_begin");
    c.changes_since = sync_txn_version(txn);
    sync_txn_abort(txn);
  }
  w1_put_rows(send.env, send.table, upd, nupd);
  peer_sync_check(send.env, sync_env_sync(send.env), "sync_env_sync");
  c.send_digest = sync_digest_of(&send);
  lmdb_make_base(&c);
  bench_note("apply: updates and the raw LMDB base made in %.2f s (untimed)",
             bench_now() - t0);
  s[0] = (bench_side){"sync", incr_sync, &c, 0};
  s[1] = (bench_side){"lmdb", incr_lmdb, &c, 0};
  bench_rounds("w1.incremental_apply", s, 2, o->reps);
  bench_rate("w1.incremental_apply.rows_per_s", s[0].best);
  bench_rate("w1.incremental_make.rows_per_s", c.incr_make_best);
  bench_rate("w1.incremental_apply.lmdb_rows_per_s", s[1].best);
  bench_ratio("w1.incremental_apply.ratio_vs_lmdb",
              ratio(s[0].best, s[1].best));

  /* Reading the change log (issue 16): the N/10 changes of N rows on the
   * sender, as a set (SYNC_CHANGES_UNORDERED: a scan, at this share) and
   * in version order (a lookup per change), against a raw LMDB scan of
   * all N rows. */
  {
    changes_side set = {&c, SYNC_CHANGES_UNORDERED}, ordered = {&c, 0};
    s[0] = (bench_side){"sync", changes_sync, &set, 0};
    s[1] = (bench_side){"sync_ordered", changes_sync, &ordered, 0};
    s[2] = (bench_side){"lmdb_scan", changes_lmdb_scan, &c, 0};
    bench_rounds("changes", s, 3, o->reps);
  }
  bench_value("changes.rows", (double)nupd, "rows");
  bench_rate("changes.rows_per_s", s[0].best);
  bench_rate("changes.version_order.rows_per_s", s[1].best);
  bench_rate("changes.lmdb_scan_rows_per_s", s[2].best);
  bench_ratio("changes.ratio_vs_lmdb_scan", ratio(s[0].best, s[2].best));
  bench_ratio("changes.version_order.ratio_vs_lmdb_scan",
              ratio(s[1].best, s[2].best));

  peer_sync_close(&send);
  bench_unlink_db(send_path);
  bench_unlink_db(c.recv_path);
  bench_unlink_db(c.lmdb_base);
  free(upd);
  free(rows);
}
