/*
 * What 'synctl serve' adds to the network helper (tools/net/: the poll
 * loop, TCP and the credentials file): the database it serves, the
 * sessions it opens for peers, the line it prints as each ends, and the
 * HTTP connections that scrape the metrics.
 */
#include "synctl.h"

#include "tools/net/net.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IDLE_SECONDS 60
#define L_SYNC 0 /* the listeners, in the order serve adds them */
#define L_METRICS 1

typedef struct server {
  sync_env *env;
  const char *db;
  int quiet, checked; /* checked: a credentials file was given */
  net_creds creds;
} server;

/* An HTTP connection: the request, then the response. */
typedef struct http_conn {
  char *buf;
  size_t len, off;
  int done;
} http_conn;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void bound_refused(void *ctx, const uint8_t site[16],
                          const uint8_t bound[16]) {
  server *sv = (server *)ctx;
  char got[33], want[33];
  ctl_hex_str(site, 16, got);
  ctl_hex_str(bound, 16, want);
  if (!sv->quiet) {
    printf("serve: peer %s: refused: its credential is bound to site %s\n", got,
           want);
    fflush(stdout);
  }
}

/* A session is over: say how it went. */
static void session_done(void *ctx, net_conn *c) {
  server *sv = (server *)ctx;
  int st = sync_session_status(c->s);
  sync_session_stats x;
  uint8_t site[16];
  char hex[33] = "unknown";
  sync_session_stats_get(c->s, &x);
  if (sync_session_peer(c->s, site) == 0) ctl_hex_str(site, 8, hex);
  if (!sv->quiet) {
    if (st == 1)
      printf("serve: peer %s: received %llu rows, sent %llu rows (%llu bytes "
             "in, %llu out)\n",
             hex, (unsigned long long)x.rows_received,
             (unsigned long long)x.rows_sent,
             (unsigned long long)x.bytes_received,
             (unsigned long long)x.bytes_sent);
    else if (st == SYNC_ESTALE)
      printf("serve: peer %s: behind this replica's tombstone collection: "
             "refused as stale; it must reset and sync again, or repair "
             "(%s)\n",
             hex, sync_session_errmsg(c->s));
    else
      printf("serve: peer %s: session ended: %s (%s)\n", hex,
             sync_strerror(st ? st : SYNC_ECLOSED), sync_session_errmsg(c->s));
    if (x.applied.refused)
      printf("serve: peer %s: %llu rows refused by its rights\n", hex,
             (unsigned long long)x.applied.refused);
    fflush(stdout);
  }
}

/* An HTTP request has arrived whole: answer it. */
static void http_answer(server *sv, http_conn *h) {
  static sync_stats st;
  char head[256], *body = NULL;
  const char *status = "200 OK";
  int64_t n = 0;
  size_t hl;
  int ok =
      !strncmp(h->buf, "GET /metrics ", 13) || !strncmp(h->buf, "GET / ", 6);
  if (ok) {
    sync_env_stats(sv->env, &st);
    n = sync_stats_prometheus(&st, NULL, 0);
    body = (char *)malloc((size_t)n + 1);
    if (!body)
      n = 0, status = "500 Internal Server Error";
    else
      sync_stats_prometheus(&st, body, (size_t)n + 1);
  } else if (!strncmp(h->buf, "GET ", 4)) {
    status = "404 Not Found";
  } else {
    status = "405 Method Not Allowed";
  }
  hl = (size_t)snprintf(
      head, sizeof head,
      "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; "
      "charset=utf-8\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
      status, (long long)n);
  free(h->buf);
  h->buf = (char *)malloc(hl + (size_t)n);
  if (!h->buf) {
    free(body);
    h->len = 0;
    return;
  }
  memcpy(h->buf, head, hl);
  if (n) memcpy(h->buf + hl, body, (size_t)n);
  free(body);
  h->len = hl + (size_t)n;
  h->off = 0;
  h->done = 1;
}

/* Returns 1 when the connection is finished. */
static int http_move(server *sv, net_conn *c, http_conn *h, short revents) {
  if (!h->done && (revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[2048];
    ssize_t k = read(c->fd, buf, sizeof buf);
    char *n;
    if (k <= 0) return !(k < 0 && (errno == EAGAIN || errno == EINTR));
    if (h->len + (size_t)k > 16384) return 1; /* not a metrics scraper */
    if (!(n = (char *)realloc(h->buf, h->len + (size_t)k + 1))) return 1;
    h->buf = n;
    memcpy(h->buf + h->len, buf, (size_t)k);
    h->len += (size_t)k;
    h->buf[h->len] = 0;
    if (strstr(h->buf, "\r\n\r\n") || strstr(h->buf, "\n\n"))
      http_answer(sv, h);
  }
  if (h->done) {
    while (h->off < h->len) {
      ssize_t k = write(c->fd, h->buf + h->off, h->len - h->off);
      if (k > 0) {
        h->off += (size_t)k;
        continue;
      }
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
      return 1;
    }
    return 1;
  }
  return 0;
}

/* A metrics connection's turn; one silent for 10 seconds is closed. */
static int http_step(void *ctx, net_conn *c, short revents) {
  return http_move((server *)ctx, c, (http_conn *)c->user, revents) ||
         (!revents && time(NULL) - c->last > 10);
}

static short http_events(void *ctx, const net_conn *c) {
  (void)ctx;
  return (short)(((const http_conn *)c->user)->done ? POLLOUT : POLLIN);
}

static void http_close(void *ctx, net_conn *c) {
  http_conn *h = (http_conn *)c->user;
  (void)ctx;
  if (h) free(h->buf);
  free(h);
}

/* A new connection: a metrics scraper, or a peer to serve a session
 * (checked: the credentials file gives its rights and its rows).  0, or
 * -1 when none could be made. */
static int serve_open(void *ctx, net_conn *c) {
  server *sv = (server *)ctx;
  sync_session_opts so;
  if (c->listener == L_METRICS) {
    c->user = calloc(1, sizeof(http_conn));
    return c->user ? 0 : -1;
  }
  memset(&so, 0, sizeof so);
  so.server = 1;
  if (sv->checked) {
    so.authorize = net_creds_authorize;
    so.authorize_ctx = &sv->creds;
    so.filter = net_creds_filter;
    so.filter_ctx = &sv->creds;
    so.filter_version = sv->creds.fver;
  }
  so.level = 3;
  if (sync_session_create(sv->env, &so, &c->s)) return -1;
  net_nodelay(c->fd);
  return 0;
}

static server sv;
static net_loop loop;
static const net_loop_ops serve_ops = {&sv,       serve_open,   http_events,
                                       http_step, session_done, http_close};

/* Listen on addr, as the loop's next listener.  -1 when not (said). */
static int serve_listen(const char *addr, int *port) {
  char err[512];
  int fd = net_listen(addr, port, err, sizeof err);
  if (fd < 0) {
    ctl_say("%s", err);
    return -1;
  }
  net_loop_listen(&loop, fd);
  return 0;
}

/* Open the database, read the credentials, listen, write the port files
 * and say so.  -1 when one of them fails (said already). */
static int serve_start(const ctl_serve_opts *o) {
  int port, mport = 0;
  if (ctl_open_db(o->db, 0, &sv.env)) return -1;
  sv.db = o->db;
  sv.creds.env = sv.env;
  sv.creds.say = ctl_say;
  sv.creds.table = ctl_find_table;
  sv.creds.refused = bound_refused;
  sv.creds.refused_ctx = &sv;
  sv.checked = o->credfile != NULL;
  if (o->credfile && ctl_each_line(o->credfile, net_creds_line, &sv.creds))
    return -1;
  if (serve_listen(o->addr, &port) ||
      (o->maddr && serve_listen(o->maddr, &mport)))
    return -1;
  if (ctl_write_port(o->portfile, port) ||
      (o->maddr && ctl_write_port(o->mportfile, mport)))
    return -1;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (!sv.quiet) {
    printf("serve: %s on port %d%s", o->db, port,
           o->credfile ? ", peers checked against the credentials file"
                       : ", every peer may read and write");
    if (o->maddr) printf("; metrics on port %d", mport);
    printf("\n");
    fflush(stdout);
  }
  return 0;
}

int ctl_serve(const ctl_serve_opts *o) {
  uint64_t dg;
  memset(&sv, 0, sizeof sv);
  sv.quiet = o->quiet;
  net_loop_init(&loop, &serve_ops, IDLE_SECONDS);
  if (serve_start(o)) {
    net_loop_stop(&loop);
    sync_env_close(sv.env);
    return EX_FAIL;
  }
  if (net_loop_run(&loop, &g_stop, o->max_sessions))
    ctl_say("poll: %s", strerror(errno));
  /* Every connection ends (a running session as closed), then the
   * digest. */
  net_loop_stop(&loop);
  dg = ctl_digest_all(sv.env);
  if (!sv.quiet)
    printf("serve: stopped; digest %016llx\n", (unsigned long long)dg);
  sync_env_close(sv.env);
  return EX_OK;
}
