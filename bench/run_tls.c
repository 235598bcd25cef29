/*
 * run_tls.c - W1 rows pulled over loopback by a session inside TLS
 * (tools/net/tls.c, OpenSSL), beside the same session over plain TCP, in
 * the same run with the same rows (rounds interleaved).  The server is a
 * child process running the poll loop that 'synctl serve' runs
 * (tools/net/loop.c), with or without the TLS layer; the client is the
 * blocking link 'synctl sync' uses.  Uncompressed frames, so that TLS's
 * cost is not hidden behind zstd's.  The certificate is a throwaway
 * self-signed P-256 one made here.
 *
 * Built in only where the bench links OpenSSL (BENCH_HAVE_TLS, set by
 * mk/tls.mk for the native bench); cross builds print a note instead.
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
#include "w1.h"
#include "workloads.h"

#ifndef BENCH_HAVE_TLS
void bench_tls(const bench_opts *o) {
  (void)o;
  bench_note("tls: not built in (the bench links OpenSSL natively only)");
}
#else
#include "tools/net/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define TLS_MAX_ROWS 200000 /* a few seconds a round on a small VM */

/* A self-signed certificate for "localhost" and its key, as PEM files. */
static void make_cert(const char *crt, const char *key) {
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509_NAME *nm;
  FILE *f;
  if (!pk || !x) bench_die("tls: cannot make a key");
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pk);
  nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                             (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, nm);
  if (!X509_sign(x, pk, EVP_sha256())) bench_die("tls: cannot sign");
  if (!(f = fopen(crt, "w")) || !PEM_write_X509(f, x) || fclose(f))
    bench_die("tls: cannot write %s", crt);
  if (!(f = fopen(key, "w")) ||
      !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) || fclose(f))
    bench_die("tls: cannot write %s", key);
  X509_free(x);
  EVP_PKEY_free(pk);
}

typedef struct tls_ctx {
  const w1_row *rows;
  size_t nrows;
  const char *send_path, *recv_path, *crt, *key;
  uint64_t digest;
  int use_tls; /* of the side running now */
  net_tls *server_tls;
} tls_ctx;

static tls_ctx *g_ctx; /* the child's loop callbacks reach it here */
static sync_env *g_env;
static volatile sig_atomic_t g_stop;

static int child_open(void *ctx, net_conn *c) {
  sync_session_opts so;
  (void)ctx;
  memset(&so, 0, sizeof so);
  so.server = 1;
  if (sync_session_create(g_env, &so, &c->s)) return -1;
  return g_ctx->use_tls ? net_tls_conn(g_ctx->server_tls, c, NULL) : 0;
}
static void child_ended(void *ctx, net_conn *c) {
  (void)ctx;
  if (sync_session_status(c->s) != 1) _exit(5);
}
static short child_events(void *ctx, const net_conn *c) {
  (void)ctx;
  (void)c;
  return 0;
}
static int child_step(void *ctx, net_conn *c, short r) {
  (void)ctx;
  (void)c;
  (void)r;
  return 1;
}
static const net_loop_ops child_ops = {NULL,       child_open,  child_events,
                                       child_step, child_ended, NULL,
                                       NULL};
static net_loop g_loop;

/* Child: serve one session from send_path in the poll loop, then exit. */
static void serve_once(tls_ctx *c, int lfd) {
  g_ctx = c;
  if (sync_env_create(NULL, &g_env) ||
      sync_env_set_durability(g_env, SYNC_DURABLE_NOSYNC) ||
      sync_env_set_mapsize(g_env, peer_mapsize(), 0) ||
      sync_env_set_schema(g_env, &w1_table, 1) ||
      sync_env_open(g_env, c->send_path, 0))
    _exit(3);
  net_loop_init(&g_loop, &child_ops, 60);
  net_loop_listen(&g_loop, lfd);
  net_loop_run(&g_loop, &g_stop, 1);
  net_loop_stop(&g_loop);
  sync_env_close(g_env);
  _exit(0);
}

static sync_env *open_recv(const char *path) {
  peer_sync p;
  peer_sync_open(&p, path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  return p.env;
}

/* One pull of every row into a fresh replica, over TLS or TCP. */
static double pull(tls_ctx *c, int use_tls) {
  char addr[64], err[256];
  int lfd, port, status, rc;
  pid_t pid;
  sync_env *env;
  sync_session_opts co;
  sync_session *s;
  sync_transport t;
  sync_session_stats st;
  net_tls_link tl;
  net_link l;
  net_tls *client = NULL;
  net_tls_opts to;
  double t0, t1;
  uint64_t d = 0;
  sync_txn *x;
  c->use_tls = use_tls;
  if ((lfd = net_listen("127.0.0.1:0", &port, err, sizeof err)) < 0)
    bench_die("tls: loopback socket: %s", err);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  fflush(stdout);
  if ((pid = fork()) < 0) bench_die("tls: fork: %s", strerror(errno));
  if (pid == 0) serve_once(c, lfd);
  close(lfd);
  env = open_recv(c->recv_path);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  memset(&to, 0, sizeof to);
  to.ca = c->crt;
  if (use_tls && net_tls_create(&to, 0, &client, err, sizeof err))
    bench_die("tls: %s", err);
  memset(&tl, 0, sizeof tl);
  tl.tcp.addr = addr;
  tl.tcp.fd = -1;
  tl.tls = client;
  tl.name = "localhost";
  memset(&l, 0, sizeof l);
  l.addr = addr;
  l.fd = -1;
  t0 = bench_now();
  rc = use_tls ? net_tls_connect(&tl, &t) : net_connect(&l, &t);
  if (rc)
    bench_die("tls: connect: %s", use_tls ? tl.err : l.err);
  peer_sync_check(env, sync_session_create(env, &co, &s), "session");
  rc = sync_session_run(s, &t);
  t1 = bench_now();
  if (rc)
    bench_die("tls: session failed: %s (%s)", sync_strerror(rc),
              sync_session_errmsg(s));
  sync_session_stats_get(s, &st);
  sync_session_free(s);
  if (use_tls)
    net_tls_disconnect(&tl, &t);
  else
    net_disconnect(&l, &t);
  net_tls_free(client);
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status))
    bench_die("tls: the server process failed");
  if (st.rows_received != c->nrows)
    bench_die("tls: %" PRIu64 " rows received of %zu", st.rows_received,
              c->nrows);
  peer_sync_check(env, sync_txn_begin(env, SYNC_TXN_RDONLY, &x), "begin");
  peer_sync_check(env, sync_digest(x, SYNC_ALL_TABLES, &d), "digest");
  sync_txn_abort(x);
  sync_env_close(env);
  if (d != c->digest) bench_die("tls: the receiver's digest differs");
  return (double)c->nrows / (t1 - t0);
}

static double side_tls(void *arg) { return pull((tls_ctx *)arg, 1); }
static double side_tcp(void *arg) { return pull((tls_ctx *)arg, 0); }

void bench_tls(const bench_opts *o) {
  tls_ctx c;
  bench_side sides[2];
  peer_sync p;
  sync_txn *x;
  char err[256];
  net_tls_opts to;
  memset(&c, 0, sizeof c);
  c.nrows = o->rows < TLS_MAX_ROWS ? o->rows : TLS_MAX_ROWS;
  c.rows = w1_generate(c.nrows);
  c.send_path = bench_path("tls-send.db");
  c.recv_path = bench_path("tls-recv.db");
  c.crt = bench_path("tls-cert.pem");
  c.key = bench_path("tls-key.pem");
  bench_note("tls: %zu W1 rows pulled over loopback, TLS (OpenSSL, P-256) "
             "against plain TCP, the server in the poll loop of synctl "
             "serve, uncompressed frames",
             c.nrows);
  signal(SIGPIPE, SIG_IGN);
  make_cert(c.crt, c.key);
  memset(&to, 0, sizeof to);
  to.cert = c.crt;
  to.key = c.key;
  if (net_tls_create(&to, 1, &c.server_tls, err, sizeof err))
    bench_die("tls: %s", err);
  peer_sync_open(&p, c.send_path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  for (size_t i = 0; i < c.nrows; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < c.nrows ? i + W1_TXN_ROWS : c.nrows;
    peer_sync_check(p.env, sync_txn_begin(p.env, 0, &x), "begin");
    for (size_t j = i; j < end; j++) {
      sync_value v[W1_NCOLUMNS];
      w1_values(&c.rows[j], v);
      peer_sync_check(p.env,
                      sync_put(x, p.table, c.rows[j].key, W1_KEY_LEN, v,
                               W1_NCOLUMNS),
                      "sync_put");
    }
    peer_sync_check(p.env, sync_txn_commit(x), "commit");
  }
  peer_sync_check(p.env, sync_txn_begin(p.env, SYNC_TXN_RDONLY, &x), "begin");
  peer_sync_check(p.env, sync_digest(x, SYNC_ALL_TABLES, &c.digest), "digest");
  sync_txn_abort(x);
  peer_sync_close(&p);
  sides[0] = (bench_side){"tls", side_tls, &c, 0};
  sides[1] = (bench_side){"tcp", side_tcp, &c, 0};
  bench_rounds("w1.sync_tls", sides, 2, o->reps);
  bench_rate("w1.sync_tls.rows_per_s", sides[0].best);
  bench_rate("w1.sync_tls.tcp_rows_per_s", sides[1].best);
  bench_ratio("w1.sync_tls.ratio_vs_tcp", sides[0].best / sides[1].best);
  net_tls_free(c.server_tls);
  bench_unlink_db(c.send_path);
  bench_unlink_db(c.recv_path);
  free((void *)c.rows);
}
#endif
