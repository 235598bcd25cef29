/*
 * run_mesh.c - how fast a mesh of three servers converges: three
 * 'synctl serve --peer' processes on loopback (each a full replica, each
 * the peer of the other two), and 10,000 W1 rows written on three
 * devices, a third each, each device pushing to its own server.  Timed
 * from the first push until all three servers hold every row with equal
 * digests: the devices' sessions, then the servers relaying to each
 * other (on change, without echo).  synctl is found beside the bench
 * binary (make bench builds both).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "peers.h"
#include "tools/net/net.h"
#include "w1.h"
#include "workloads.h"

#define MESH_ROWS 10000
#define MESH_N 3

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* build/synctl, beside this binary; "" when it is not there. */
static void synctl_path(char *out, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  char *slash;
  out[0] = 0;
  if (n <= 0) return;
  self[n] = 0;
  if (!(slash = strrchr(self, '/'))) return;
  *slash = 0;
  snprintf(out, cap, "%s/synctl", self);
  if (access(out, X_OK)) out[0] = 0;
}

/* Three free loopback ports (bound, then let go for the servers). */
static void free_ports(int *port) {
  char err[256];
  int fd[MESH_N], i;
  for (i = 0; i < MESH_N; i++)
    if ((fd[i] = net_listen("127.0.0.1:0", &port[i], err, sizeof err)) < 0)
      bench_die("mesh: %s", err);
  for (i = 0; i < MESH_N; i++) close(fd[i]);
}

static pid_t start_server(const char *synctl, const char *db, const int *port,
                          int k) {
  char addr[MESH_N][64];
  char *argv[16];
  int i, a = 0, null;
  pid_t pid;
  for (i = 0; i < MESH_N; i++)
    snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", port[i]);
  argv[a++] = (char *)synctl;
  argv[a++] = (char *)"serve";
  argv[a++] = (char *)db;
  argv[a++] = addr[k];
  for (i = 0; i < MESH_N; i++)
    if (i != k) {
      argv[a++] = (char *)"--peer";
      argv[a++] = addr[i];
    }
  argv[a++] = (char *)"--peer-interval";
  argv[a++] = (char *)"1";
  argv[a++] = (char *)"--quiet";
  argv[a] = NULL;
  fflush(stdout);
  if ((pid = fork()) < 0) bench_die("mesh: fork: %s", strerror(errno));
  if (pid == 0) {
    if ((null = open("/dev/null", O_WRONLY)) >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    execv(synctl, argv);
    _exit(127);
  }
  return pid;
}

/* Push everything the device at path holds to the server at addr. */
static void push(const char *path, const char *addr) {
  peer_sync p;
  sync_session_opts so;
  sync_session *s;
  sync_transport t;
  net_link l;
  int rc;
  peer_sync_open(&p, path, SYNC_DURABLE_NOSYNC, &w1_table, 0);
  memset(&so, 0, sizeof so);
  so.mode = SYNC_PUSH;
  memset(&l, 0, sizeof l);
  l.addr = addr;
  l.fd = -1;
  if (net_connect(&l, &t)) bench_die("mesh: %s", l.err);
  peer_sync_check(p.env, sync_session_create(p.env, &so, &s), "session");
  if ((rc = sync_session_run(s, &t)))
    bench_die("mesh: push failed: %s (%s)", sync_strerror(rc),
              sync_session_errmsg(s));
  sync_session_free(s);
  net_disconnect(&l, &t);
  peer_sync_close(&p);
}

/* Whether the three servers hold all rows with one digest. */
static int converged(peer_sync *srv) {
  uint64_t d[MESH_N], n;
  int i;
  for (i = 0; i < MESH_N; i++) {
    sync_txn *x;
    peer_sync_check(srv[i].env, sync_txn_begin(srv[i].env, SYNC_TXN_RDONLY, &x),
                    "begin");
    n = 0;
    sync_count(x, srv[i].table, &n);
    sync_digest(x, SYNC_ALL_TABLES, &d[i]);
    sync_txn_abort(x);
    if (n != MESH_ROWS || d[i] != d[0]) return 0;
  }
  return 1;
}

/* One run: fresh servers and devices; the milliseconds to converge. */
static double mesh_run(const char *synctl, const w1_row *rows) {
  char *sdb[MESH_N], *ddb[MESH_N], name[64], addr[64];
  peer_sync srv[MESH_N];
  pid_t pid[MESH_N];
  int port[MESH_N], i, up;
  double t0, t1, deadline;
  for (i = 0; i < MESH_N; i++) {
    peer_sync p;
    snprintf(name, sizeof name, "mesh-server%d.db", i);
    sdb[i] = bench_path(name);
    peer_sync_open(&p, sdb[i], SYNC_DURABLE_NOSYNC, &w1_table, 1);
    peer_sync_close(&p);
    snprintf(name, sizeof name, "mesh-device%d.db", i);
    ddb[i] = bench_path(name);
    peer_sync_open(&p, ddb[i], SYNC_DURABLE_NOSYNC, &w1_table, 1);
    for (size_t r = (size_t)i; r < MESH_ROWS;) {
      sync_txn *x;
      peer_sync_check(p.env, sync_txn_begin(p.env, 0, &x), "begin");
      for (size_t k = 0; k < W1_TXN_ROWS && r < MESH_ROWS; k++, r += MESH_N) {
        sync_value v[W1_NCOLUMNS];
        w1_values(&rows[r], v);
        peer_sync_check(p.env,
                        sync_put(x, p.table, rows[r].key, W1_KEY_LEN, v,
                                 W1_NCOLUMNS),
                        "sync_put");
      }
      peer_sync_check(p.env, sync_txn_commit(x), "commit");
    }
    peer_sync_close(&p);
  }
  free_ports(port);
  for (i = 0; i < MESH_N; i++) pid[i] = start_server(synctl, sdb[i], port, i);
  /* Each server up (its port answers); they have met by then or meet
   * within their first tick. */
  deadline = bench_now() + 10;
  for (i = 0, up = 0; i < MESH_N && bench_now() < deadline;) {
    int fd;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port[i]);
    if ((fd = net_dial(addr, 0)) >= 0) {
      close(fd);
      i++, up++;
    } else {
      sleep_ms(10);
    }
  }
  if (up < MESH_N) bench_die("mesh: the servers did not start");
  sleep_ms(200);
  for (i = 0; i < MESH_N; i++)
    peer_sync_open(&srv[i], sdb[i], SYNC_DURABLE_NOSYNC, &w1_table, 0);
  t0 = bench_now();
  for (i = 0; i < MESH_N; i++) {
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port[i]);
    push(ddb[i], addr);
  }
  deadline = t0 + 60;
  while (!converged(srv)) {
    if (bench_now() > deadline) bench_die("mesh: no convergence in 60 s");
    sleep_ms(2);
  }
  t1 = bench_now();
  for (i = 0; i < MESH_N; i++) {
    int st;
    peer_sync_close(&srv[i]);
    kill(pid[i], SIGTERM);
    waitpid(pid[i], &st, 0);
    bench_unlink_db(sdb[i]);
    bench_unlink_db(ddb[i]);
  }
  return (t1 - t0) * 1e3;
}

void bench_mesh(const bench_opts *o) {
  char synctl[PATH_MAX];
  w1_row *rows;
  double best = 0;
  int r;
  synctl_path(synctl, sizeof synctl);
  if (!synctl[0]) {
    bench_note("mesh: no synctl beside the bench binary (make build/synctl): "
               "skipped");
    return;
  }
  bench_note("mesh: %d W1 rows written on 3 devices (a third each), each "
             "pushed to its own server of 3 'synctl serve --peer' processes; "
             "timed until all 3 servers hold every row with one digest",
             MESH_ROWS);
  rows = w1_generate(MESH_ROWS);
  for (r = 0; r < o->reps; r++) {
    double ms = mesh_run(synctl, rows);
    bench_note("mesh round %d/%d: %.0f ms", r + 1, o->reps, ms);
    if (r == 0 || ms < best) best = ms;
  }
  bench_value("mesh.3servers.converge_ms", best, "ms");
  free(rows);
}
