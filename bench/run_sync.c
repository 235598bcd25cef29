/*
 * run_sync.c - whole sessions over loopback TCP between two processes
 * (DESIGN.md section 6, W1 rows), side by side with SQLite.
 *
 *  - Initial sync: a server process holding the W1 rows serves one
 *    session; this process pulls into an empty replica.  Timed from
 *    connect to the end of the session: encode, send, decode, apply and
 *    commit.  Peer: SQLite building its session changeset for the same
 *    rows and applying it to an empty database, in one process (no
 *    network, which favours it).
 *  - Heap: the peak of the library's own heap on each side, through the
 *    allocator hook, for 100,000 rows and for the full W1 size: bounded
 *    by the chunk, not the data.
 *  - Incremental: 1,000 rows changed on the server, then a session into
 *    the populated replica; its wall time beside the time to commit the
 *    same 1,000 rows locally, and its bytes on the wire beside the bytes
 *    of the frames that carried the rows.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "peers.h"
#include "tools/net/net.h"
#include "w1.h"
#include "workloads.h"

#define SYNC_INCR_ROWS 1000
#define SYNC_SEED_INCR UINT64_C(0x1DC0FFEE00000021)

/* ---- a counting allocator: the library's heap, live and peak ---------- */
typedef struct heap {
  size_t live, peak;
} heap;
typedef struct heap_hdr {
  size_t n;
  size_t pad; /* keeps what follows 16-byte aligned */
} heap_hdr;

static void *heap_malloc(void *ctx, size_t n) {
  heap *h = ctx;
  heap_hdr *p = malloc(sizeof *p + n);
  if (!p)
    return NULL;
  p->n = n;
  h->live += n;
  if (h->live > h->peak)
    h->peak = h->live;
  return p + 1;
}
static void heap_free(void *ctx, void *q) {
  heap *h = ctx;
  heap_hdr *p;
  if (!q)
    return;
  p = (heap_hdr *)q - 1;
  h->live -= p->n;
  free(p);
}
static void *heap_realloc(void *ctx, void *q, size_t n) {
  heap *h = ctx;
  heap_hdr *p, *np;
  if (!q)
    return heap_malloc(ctx, n);
  p = (heap_hdr *)q - 1;
  np = realloc(p, sizeof *np + n);
  if (!np)
    return NULL;
  h->live = h->live - np->n + n;
  np->n = n;
  if (h->live > h->peak)
    h->peak = h->live;
  return np + 1;
}

static sync_env *open_counted(const char *path, heap *h, int fresh) {
  sync_allocator a = {h, heap_malloc, heap_realloc, heap_free};
  return peer_sync_env(path, &a, &w1_table, fresh);
}

typedef struct served {
  int status;
  uint64_t heap_peak;
} served;

/* The write check of the authorized push: allows every row, after
 * looking at what a real one would (the stored row and the owner
 * column), so that what is measured is the cost of the path. */
static int allow_all(void *ctx, const sync_write *w, int *reason, char *text,
                     size_t cap) {
  unsigned long *seen = (unsigned long *)ctx;
  (void)reason;
  (void)text;
  (void)cap;
  if (w->stored && w->stored_values[0].type == SYNC_NULL)
    (*seen)++;
  if (w->ncolumns && w->values[0].type == SYNC_INTEGER)
    (*seen)++;
  return 0;
}

/* How the server process serves: 0 as a plain sender (pull), 1 as a
 * receiver of a push, 2 the same with the write check. */
static int serve_mode;
/* The client's link: 0 straight to the server, else through a proxy that
 * holds the bytes this many milliseconds each way (link.c). */
static int link_delay_ms;

/* Child: serve one session from path, then report and exit. */
static void serve_once(const char *path, int lfd, int out) {
  heap h = {0, 0};
  unsigned long seen = 0;
  sync_env *env = open_counted(path, &h, serve_mode != 0);
  sync_session_opts so;
  sync_session *s;
  served r;
  /* Requests are small and each waits for its answer: no Nagle delay. */
  int fd = net_accept(lfd);
  sync_transport t;
  net_transport(&fd, &t);
  memset(&so, 0, sizeof so);
  so.server = 1;
  if (serve_mode == 2) {
    so.check_write = allow_all;
    so.check_write_ctx = &seen;
  }
  if (fd < 0)
    _exit(3);
  peer_sync_check(env, sync_session_create(env, &so, &s), "sync_session_create");
  r.status = sync_session_run(s, &t);
  r.heap_peak = h.peak;
  sync_session_free(s);
  close(fd);
  sync_env_close(env);
  if (write(out, &r, sizeof r) != (ssize_t)sizeof r)
    _exit(4);
  _exit(0);
}

typedef struct tcp_result {
  double seconds;
  sync_session_stats st;
  uint64_t heap_client, heap_server;
} tcp_result;

/* Pull everything the replica at send_path holds into recv_path over a
 * loopback connection to a server process; with push (1, or 2 with the
 * server's write check), the client at send_path pushes into a fresh
 * server replica at recv_path instead. */
static void tcp_session(const char *send_path, const char *recv_path,
                        int fresh, int push, tcp_result *res) {
  char addr[64], err[256];
  int lfd, fd, p[2], status, rc, port;
  pid_t pid;
  served r;
  heap h = {0, 0};
  sync_env *env;
  sync_session_opts co;
  sync_session *s;
  sync_transport t;
  bench_link *link = NULL;
  double t0, t1;
  lfd = net_listen("127.0.0.1:0", &port, err, sizeof err);
  if (lfd < 0)
    bench_die("sync: loopback socket: %s", err);
  if (pipe(p))
    bench_die("sync: pipe: %s", strerror(errno));
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  fflush(stdout);
  pid = fork();
  if (pid < 0)
    bench_die("sync: fork: %s", strerror(errno));
  if (pid == 0) {
    close(p[0]);
    serve_mode = push;
    serve_once(push ? recv_path : send_path, lfd, p[1]);
  }
  close(p[1]);
  close(lfd);
  env = open_counted(push ? send_path : recv_path, &h, push ? 0 : fresh);
  memset(&co, 0, sizeof co);
  co.mode = push ? SYNC_PUSH : SYNC_PULL;
  if (link_delay_ms)
    link = bench_link_start(addr, link_delay_ms, addr, sizeof addr);
  t0 = bench_now();
  if ((fd = net_dial(addr, 0)) < 0)
    bench_die("sync: connect: %s", strerror(errno));
  net_transport(&fd, &t);
  peer_sync_check(env, sync_session_create(env, &co, &s), "sync_session_create");
  rc = sync_session_run(s, &t);
  t1 = bench_now();
  if (rc)
    bench_die("sync: session failed: %s (%s)", sync_strerror(rc),
              sync_session_errmsg(s));
  sync_session_stats_get(s, &res->st);
  sync_session_free(s);
  close(fd);
  if (link) bench_link_stop(link);
  if (read(p[0], &r, sizeof r) != (ssize_t)sizeof r)
    bench_die("sync: the server process reported nothing");
  close(p[0]);
  waitpid(pid, &status, 0);
  if (r.status)
    bench_die("sync: the server's session failed: %s", sync_strerror(r.status));
  sync_env_close(env);
  res->seconds = t1 - t0;
  res->heap_client = h.peak;
  res->heap_server = r.heap_peak;
}

static void tcp_pull(const char *send_path, const char *recv_path, int fresh,
                     tcp_result *res) {
  tcp_session(send_path, recv_path, fresh, 0, res);
}

static uint64_t digest_at(const char *path) {
  heap h = {0, 0};
  sync_env *env = open_counted(path, &h, 0);
  uint64_t d = peer_sync_digest(env);
  sync_env_close(env);
  return d;
}

static void write_rows(const char *path, const w1_row *rows, size_t n) {
  peer_sync p;
  peer_sync_open(&p, path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  w1_put_rows(p.env, p.table, rows, n);
  peer_sync_close(&p);
}

typedef struct sync_ctx {
  const w1_row *rows;
  size_t nrows;
  const char *send_path, *recv_path, *lite_path, *push_path;
  uint64_t digest;
  tcp_result last;
} sync_ctx;

static double ours_initial(void *arg) {
  sync_ctx *c = arg;
  tcp_pull(c->send_path, c->recv_path, 1, &c->last);
  if (c->last.st.rows_received != c->nrows)
    bench_die("sync: %" PRIu64 " rows received of %zu",
              c->last.st.rows_received, c->nrows);
  if (digest_at(c->recv_path) != c->digest)
    bench_die("sync: the receiver's digest differs from the sender's");
  return (double)c->nrows / c->last.seconds;
}

/* The initial pull over a link with 100 ms of round trip (50 ms each
 * way through link.c's proxy). */
static double ours_rtt100(void *arg) {
  double r;
  link_delay_ms = 50;
  r = ours_initial(arg);
  link_delay_ms = 0;
  return r;
}

/* W1 pushed by the client into a fresh server, with and without the
 * server's write check (same run, rounds interleaved). */
static double push_plain(void *arg) {
  sync_ctx *c = arg;
  tcp_session(c->send_path, c->push_path, 1, 1, &c->last);
  if (c->last.st.rows_sent != c->nrows)
    bench_die("sync: %" PRIu64 " rows pushed of %zu", c->last.st.rows_sent,
              c->nrows);
  if (digest_at(c->push_path) != c->digest)
    bench_die("sync: the server's digest differs after the push");
  return (double)c->nrows / c->last.seconds;
}

static double push_checked(void *arg) {
  sync_ctx *c = arg;
  tcp_session(c->send_path, c->push_path, 1, 2, &c->last);
  if (c->last.st.rows_sent != c->nrows || c->last.st.refusals)
    bench_die("sync: %" PRIu64 " rows pushed of %zu, %" PRIu64 " refused",
              c->last.st.rows_sent, c->nrows, c->last.st.refusals);
  if (digest_at(c->push_path) != c->digest)
    bench_die("sync: the server's digest differs after the checked push");
  return (double)c->nrows / c->last.seconds;
}

#ifndef BENCH_NO_SQLITE
static int lite_conflict(void *ctx, int kind, sqlite3_changeset_iter *it) {
  (void)it;
  *(int *)ctx = kind;
  return SQLITE_CHANGESET_ABORT;
}

/* SQLite: record the inserts in a session (untimed), then build the
 * changeset and apply it to an empty database (timed). */
static double lite_initial(void *arg) {
  sync_ctx *c = arg;
  peer_sqlite src, dst;
  sqlite3_stmt *ins;
  void *cs = NULL;
  int ncs = 0, conflict = 0;
  char dst_path[4096];
  double t0, t1;
  snprintf(dst_path, sizeof dst_path, "%s-dst", c->lite_path);
  peer_sqlite_open(&src, c->lite_path, 0, w1_sqlite_create, "t");
  ins = peer_sqlite_prepare(&src, w1_sqlite_insert);
  for (size_t i = 0; i < c->nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c->nrows ? i + W1_TXN_ROWS : c->nrows;
    peer_sqlite_exec(&src, "BEGIN");
    for (size_t j = i; j < end; j++) {
      const w1_row *r = &c->rows[j];
      sqlite3_bind_text(ins, 1, r->key, W1_KEY_LEN, SQLITE_STATIC);
      sqlite3_bind_int64(ins, 2, r->a);
      sqlite3_bind_double(ins, 3, r->b);
      sqlite3_bind_text(ins, 4, r->c, W1_TEXT_LEN, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 5, r->d, W1_BLOB_LEN, SQLITE_STATIC);
      peer_sqlite_check(&src, sqlite3_step(ins), SQLITE_DONE, "INSERT");
      sqlite3_reset(ins);
    }
    peer_sqlite_exec(&src, "COMMIT");
  }
  sqlite3_finalize(ins);
  peer_sqlite_open(&dst, dst_path, 0, w1_sqlite_create, "t");
  sqlite3session_delete(dst.session);
  dst.session = NULL;
  t0 = bench_now();
  peer_sqlite_check(&src, sqlite3session_changeset(src.session, &ncs, &cs),
                    SQLITE_OK, "sqlite3session_changeset");
  peer_sqlite_check(&dst,
                    sqlite3changeset_apply(dst.db, ncs, cs, NULL, lite_conflict,
                                           &conflict),
                    SQLITE_OK, "sqlite3changeset_apply");
  t1 = bench_now();
  if (conflict)
    bench_die("sync sqlite: conflict %d", conflict);
  sqlite3_free(cs);
  peer_sqlite_close(&src);
  peer_sqlite_close(&dst);
  bench_unlink_db(c->lite_path);
  bench_unlink_db(dst_path);
  return (double)c->nrows / (t1 - t0);
}
#endif

/* Heap peak of a whole initial sync of n rows (max of both sides). */
static uint64_t heap_of_sync(sync_ctx *c, size_t n) {
  tcp_result r;
  uint64_t peak;
  write_rows(c->send_path, c->rows, n);
  tcp_pull(c->send_path, c->recv_path, 1, &r);
  peak = r.heap_client > r.heap_server ? r.heap_client : r.heap_server;
  bench_note("sync heap, %zu rows: client %" PRIu64 " bytes, server %" PRIu64
             " bytes",
             n, r.heap_client, r.heap_server);
  return peak;
}

/* The write check on the server: W1 pushed with a check that allows
 * every row, against the same push without one. */
static void bench_push(sync_ctx *c, const bench_opts *o) {
  bench_side ps[2];
  ps[0] = (bench_side){"push", push_plain, c, 0};
  ps[1] = (bench_side){"push_authorized", push_checked, c, 0};
  bench_rounds("w1.sync_tcp_push", ps, 2, o->reps);
  bench_rate("w1.sync_tcp_push.rows_per_s", ps[0].best);
  bench_rate("w1.sync_tcp_authorized.rows_per_s", ps[1].best);
  bench_ratio("w1.sync_tcp_authorized.ratio_vs_unauthorized",
              ps[1].best / ps[0].best);
}

/* Incremental: 1,000 random rows changed on the server, then a session.
 * The session's wall time beside the time to commit the same rows
 * locally, and its bytes on the wire beside the bytes of its frames. */
static void bench_incremental(sync_ctx *c, const bench_opts *o) {
  peer_sync p;
  bench_rng g = {SYNC_SEED_INCR};
  size_t n = c->nrows < SYNC_INCR_ROWS ? c->nrows : SYNC_INCR_ROWS;
  double t0, t1, commit_s = 0, sync_s = 0, wire = 0, frames = 0;
  int round;
  for (round = 0; round < o->reps; round++) {
    tcp_result r;
    sync_txn *txn;
    peer_sync_open(&p, c->send_path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
    t0 = bench_now();
    peer_sync_check(p.env, sync_txn_begin(p.env, 0, &txn), "sync_txn_begin");
    for (size_t i = 0; i < n; i++) {
      w1_row row = c->rows[bench_rng_below(&g, c->nrows)];
      sync_value v[W1_NCOLUMNS];
      row.a = (int64_t)bench_rng_next(&g);
      row.b = bench_rng_unit(&g);
      w1_values(&row, v);
      peer_sync_check(p.env,
                      sync_put(txn, p.table, row.key, W1_KEY_LEN, v,
                               W1_NCOLUMNS),
                      "sync_put");
    }
    peer_sync_check(p.env, sync_txn_commit(txn), "sync_txn_commit");
    t1 = bench_now();
    peer_sync_close(&p);
    tcp_pull(c->send_path, c->recv_path, 0, &r);
    if (digest_at(c->recv_path) != digest_at(c->send_path))
      bench_die("sync: digests differ after the incremental session");
    if (round == 0 || t1 - t0 < commit_s)
      commit_s = t1 - t0;
    if (round == 0 || r.seconds < sync_s) {
      sync_s = r.seconds;
      wire = (double)(r.st.bytes_sent + r.st.bytes_received);
      frames = (double)r.st.frame_bytes_received;
    }
  }
  bench_note("incremental: %zu rows; session %.2f ms, local commit %.2f ms; "
             "%.0f bytes on the wire, %.0f in frames",
             n, sync_s * 1e3, commit_s * 1e3, wire, frames);
  bench_value("incremental_sync.ms", sync_s * 1e3, "ms");
  bench_value("incremental_sync.local_commit_ms", commit_s * 1e3, "ms");
  bench_ratio("incremental_sync.ratio_vs_local_commit", sync_s / commit_s);
  bench_ratio("incremental_sync.wire_ratio", wire / frames);
}

/* Move all a has to send into b; returns the bytes moved. */
static size_t move_all(sync_session *a, sync_session *b) {
  unsigned char buf[65536];
  size_t total = 0;
  while (sync_session_want_write(a)) {
    sync_outbuf out = {buf, sizeof buf, 0};
    sync_inbuf in;
    if (sync_session_send(a, &out) <= 0) break;
    in.ptr = buf;
    in.size = out.pos;
    in.pos = 0;
    sync_session_recv(b, &in);
    total += out.pos;
  }
  return total;
}

/* One session in process between client cli (options co) and server srv
 * (so; server is set here), each side sending all it can before the
 * other answers.  The client's stats into st; returns the turns the
 * conversation took, its round trips (the handshake is the first). */
static uint64_t run_in_process(sync_env *cli, sync_env *srv,
                               const sync_session_opts *co,
                               sync_session_opts so, sync_session_stats *st) {
  sync_session *ss, *cs;
  uint64_t turns = 0;
  so.server = 1;
  peer_sync_check(srv, sync_session_create(srv, &so, &ss), "session");
  peer_sync_check(cli, sync_session_create(cli, co, &cs), "session");
  while (!sync_session_status(cs) || !sync_session_status(ss)) {
    size_t n = move_all(cs, ss);
    n += move_all(ss, cs);
    turns++;
    if (!n) break;
  }
  if (sync_session_status(cs) != 1 || sync_session_status(ss) != 1)
    bench_die("sync: an in-process session failed: %s / %s",
              sync_session_errmsg(cs), sync_session_errmsg(ss));
  if (st) sync_session_stats_get(cs, st);
  sync_session_free(cs);
  sync_session_free(ss);
  return turns;
}

/* The initial pull with the given window, in process. */
static uint64_t pull_turns(sync_ctx *c, size_t window) {
  heap hs = {0, 0}, hc = {0, 0};
  sync_env *srv = open_counted(c->send_path, &hs, 0);
  sync_env *cli = open_counted(c->recv_path, &hc, 1);
  sync_session_opts so, co;
  uint64_t turns;
  memset(&so, 0, sizeof so);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  co.window = window;
  turns = run_in_process(cli, srv, &co, so, NULL);
  sync_env_close(cli);
  sync_env_close(srv);
  return turns;
}

/* A session in mode both, uncompressed, in max_message bytes (full:
 * with the full handshake, no quick check). */
static void small_session(sync_env *cli, sync_env *srv, size_t max_message,
                          int full, sync_session_stats *st) {
  sync_session_opts so, co;
  memset(&so, 0, sizeof so);
  memset(&co, 0, sizeof co);
  so.max_message = co.max_message = max_message;
  co.no_check = full;
  run_in_process(cli, srv, &co, so, st);
}

/* What a session costs on a tiny link once two replicas know each other:
 * with nothing to send, and with one W1 row (16-byte key, 80 bytes of
 * values) written on the server. */
static void bench_small(sync_ctx *c) {
  heap hs = {0, 0}, hc = {0, 0};
  const char *sp = bench_path("small-srv.db"), *cp = bench_path("small-cli.db");
  sync_env *srv = open_counted(sp, &hs, 1), *cli = open_counted(cp, &hc, 1);
  sync_session_stats st;
  uint64_t noop;
  size_t m;
  w1_put_rows(srv, 0, c->rows, 1);
  small_session(cli, srv, 0, 0, &st); /* they meet */
  small_session(cli, srv, 0, 0, &st);
  if (!st.unchanged) bench_die("sync: the quick check did not end the session");
  noop = st.bytes_sent + st.bytes_received;
  bench_value("session.noop.bytes", (double)noop, "bytes");
  small_session(cli, srv, 0, 1, &st);
  bench_value("session.noop_full.bytes",
              (double)(st.bytes_sent + st.bytes_received), "bytes");
  w1_put_rows(srv, 0, c->rows + 1, 1);
  small_session(cli, srv, 0, 0, &st);
  if (st.rows_received != 1)
    bench_die("sync: the one-row session moved %" PRIu64 " rows",
              st.rows_received);
  bench_value("session.one_row.bytes",
              (double)(st.bytes_sent + st.bytes_received), "bytes");
  bench_value("session.one_row.overhead_bytes",
              (double)st.frame_bytes_received - (W1_KEY_LEN + W1_VAL_LEN),
              "bytes");
  for (m = 64; m <= 256; m *= 4) {
    char name[64];
    /* A row of its own each time: the same row again changes nothing. */
    w1_put_rows(srv, 0, c->rows + (m == 64 ? 2 : 3), 1);
    small_session(cli, srv, m, 0, &st);
    if (st.rows_received != 1)
      bench_die("sync: the one-row session at %zu-byte messages moved %" PRIu64
                " rows", m, st.rows_received);
    snprintf(name, sizeof name, "session.one_row_msg%zu.bytes", m);
    bench_value(name, (double)(st.bytes_sent + st.bytes_received), "bytes");
  }
  bench_note("session.*: both directions of a whole session (mode both, "
             "uncompressed) between replicas that synced before; noop: the "
             "quick check, noop_full: the full handshake; overhead: "
             "the frame's bytes beyond the row's 96 (key and values); "
             "_msgN: with N-byte messages");
  sync_env_close(cli);
  sync_env_close(srv);
  bench_unlink_db(sp);
  bench_unlink_db(cp);
}

/* The initial pull straight and over a 100 ms link, rounds interleaved.
 * The extra time over the slow link, in round trips, is how often the
 * stream waited for the other side: the handshake, the window's waits
 * and FINAL. */
static void bench_rtt(sync_ctx *c, const bench_opts *o) {
  bench_side sides[2];
  double direct_s, slow_s;
  sides[0] = (bench_side){"direct", ours_initial, c, 0};
  sides[1] = (bench_side){"rtt100", ours_rtt100, c, 0};
  bench_note("sync over a link with 100 ms of round trip: a proxy holds "
             "the bytes 50 ms each way; the client's window is the "
             "default (256 chunks)");
  bench_rounds("w1.sync_rtt100", sides, 2, o->reps);
  direct_s = (double)c->nrows / sides[0].best;
  slow_s = (double)c->nrows / sides[1].best;
  bench_rate("w1.sync_rtt100.rows_per_s", sides[1].best);
  bench_rate("w1.sync_rtt100.direct_rows_per_s", sides[0].best);
  bench_ratio("w1.sync_rtt100.ratio_vs_direct", sides[1].best / sides[0].best);
  bench_value("w1.sync_rtt100.added_s", slow_s - direct_s, "s");
  bench_value("w1.sync.round_trips", (double)pull_turns(c, 0), "round_trips");
  bench_value("w1.sync.round_trips_window1", (double)pull_turns(c, 1),
              "round_trips");
  bench_note("w1.sync.round_trips: turns of an in-process pull of %zu rows "
             "in chunks of 1,000, the handshake included, with the default "
             "window and with none (window 1)", c->nrows);
}

void bench_sync(const bench_opts *o) {
  sync_ctx c;
  bench_side sides[2];
  int nsides = 0;
  memset(&c, 0, sizeof c);
  c.nrows = o->rows;
  c.rows = w1_generate(c.nrows);
  c.send_path = bench_path("sync-send.db");
  c.recv_path = bench_path("sync-recv.db");
  c.lite_path = bench_path("sync-lite.db");
  c.push_path = bench_path("sync-push.db");
  bench_note("sync: %zu W1 rows over loopback TCP between two processes, "
             "uncompressed frames, 1,000 rows per chunk, 64 KiB messages",
             c.nrows);
  signal(SIGPIPE, SIG_IGN);

  /* Heap first, with the small size (the sender is rewritten below). */
  {
    size_t small = c.nrows < 100000 ? c.nrows : 100000;
    uint64_t h = heap_of_sync(&c, small);
    bench_value("sync.heap_peak_bytes.100k", (double)h, "bytes");
  }
  write_rows(c.send_path, c.rows, c.nrows);
  c.digest = digest_at(c.send_path);

  sides[nsides++] = (bench_side){"sync", ours_initial, &c, 0};
#ifndef BENCH_NO_SQLITE
  sides[nsides++] = (bench_side){"sqlite", lite_initial, &c, 0};
#endif
  bench_rounds("w1.sync_tcp", sides, nsides, o->reps);
  bench_rate("w1.sync_tcp.rows_per_s", sides[0].best);
  if (c.nrows >= 1000000) {
    uint64_t h = c.last.heap_client > c.last.heap_server ? c.last.heap_client
                                                          : c.last.heap_server;
    bench_note("sync heap, %zu rows: client %" PRIu64 " bytes, server %" PRIu64
               " bytes",
               c.nrows, c.last.heap_client, c.last.heap_server);
    bench_value("sync.heap_peak_bytes.1m", (double)h, "bytes");
  } else {
    bench_note("sync.heap_peak_bytes.1m: not measured with %zu rows", c.nrows);
  }
#ifndef BENCH_NO_SQLITE
  bench_rate("w1.sync_tcp.sqlite_rows_per_s", sides[1].best);
  bench_ratio("w1.sync_tcp.ratio_vs_sqlite", sides[0].best / sides[1].best);
#endif

  bench_small(&c);
  bench_rtt(&c, o);
  bench_push(&c, o);
  bench_incremental(&c, o);
  bench_unlink_db(c.send_path);
  bench_unlink_db(c.recv_path);
  bench_unlink_db(c.push_path);
  free((void *)c.rows);
}
