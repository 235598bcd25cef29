/*
 * What 'synctl serve' adds to the network helper (tools/net/: the poll
 * loop, TCP and the credentials file): the database it serves, the
 * sessions it opens for peers, the lines it prints as each ends (one for
 * a person on stdout, one key=value line for a log search on stderr),
 * the HTTP connections that scrape the metrics (the library's, and the
 * server's own gauges), and SIGHUP, which reads the credentials again.
 */
#include "synctl.h"

#include "tools/net/net.h"
#include "tools/net/tls.h"

#include "serve_mesh.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IDLE_SECONDS 60
#define L_SYNC 0 /* the listeners, in the order serve adds them */
#define L_METRICS 1
#define MAX_SEEN 1024 /* peers whose last sync the server remembers */

/* When a peer last ended a session well (net_mono_seconds). */
typedef struct peer_seen {
  uint8_t site[16];
  double when;
} peer_seen;

typedef struct server {
  sync_env *env;
  const char *db, *credfile;
  int quiet, checked; /* checked: a credentials file was given */
  net_creds creds;
  peer_seen seen[MAX_SEEN];
  unsigned nseen;
  net_tls *tls;      /* --tls-cert: sessions speak TLS */
  net_tls *peer_tls; /* the client side, for the mesh peers */
  ctl_mesh *mesh;    /* --peer: the other servers */
} server;

/* An HTTP connection: the request, then the response. */
typedef struct http_conn {
  char *buf;
  size_t len, off;
  int done;
} http_conn;

static volatile sig_atomic_t g_stop, g_reload;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}
static void on_hup(int sig) {
  (void)sig;
  g_reload = 1;
}

/* A text that grows: printf onto its end.  oom: a malloc failed (the
 * text is then cut). */
typedef struct text {
  char *p;
  size_t len, cap;
  int oom;
} text;

static int text_room(text *t, size_t more) {
  char *n;
  size_t cap = t->cap ? t->cap : 1024;
  if (t->len + more < t->cap) return 0;
  while (cap <= t->len + more) cap *= 2;
  if (!(n = (char *)realloc(t->p, cap))) {
    t->oom = 1;
    return -1;
  }
  t->p = n;
  t->cap = cap;
  return 0;
}

static void text_add(text *t, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || text_room(t, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  t->len += (size_t)n;
}

/* s as a quoted value ("..." with \" and \\; control bytes as spaces), for
 * a key=value line or a Prometheus label. */
static void text_quoted(text *t, const char *s) {
  text_add(t, "\"");
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      text_add(t, "\\%c", ch);
    else
      text_add(t, "%c", ch < 0x20 || ch == 0x7f ? ' ' : ch);
  }
  text_add(t, "\"");
}

/* One key=value line on stderr (logfmt, for a log search): the time in
 * UTC, then what t holds. */
static void log_line(text *t) {
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  if (!gmtime_r(&now, &tm) ||
      !strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(ts, sizeof ts, "-");
  if (!t->oom && t->p) fprintf(stderr, "ts=%s %s\n", ts, t->p);
  fflush(stderr);
  free(t->p);
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

/* Remember that site ended a session well, now. */
static void peer_synced(server *sv, const uint8_t site[16]) {
  unsigned i;
  for (i = 0; i < sv->nseen && memcmp(sv->seen[i].site, site, 16); i++) {
  }
  if (i == MAX_SEEN) { /* full: the one synced longest ago goes */
    unsigned j;
    for (i = 0, j = 1; j < MAX_SEEN; j++)
      if (sv->seen[j].when < sv->seen[i].when) i = j;
  } else if (i == sv->nseen) {
    sv->nseen++;
  }
  memcpy(sv->seen[i].site, site, 16);
  sv->seen[i].when = net_mono_seconds();
}

/* The session's key=value line: who (the credential's name= and the site
 * id), what moved each way, how long, and how it ended. */
static void session_log(server *sv, net_conn *c, int st,
                        const sync_session_stats *x, const uint8_t *site) {
  text t = {0};
  char hex[33] = "-";
  const char *dev =
      site && sv->checked ? net_creds_name(&sv->creds, site) : NULL;
  if (site) ctl_hex_str(site, 16, hex);
  text_add(
      &t,
      "event=session device=%s site=%s result=%s code=%d rows_in=%llu "
      "rows_out=%llu bytes_in=%llu bytes_out=%llu refused_rows=%llu "
      "duration_ms=%.0f",
      dev ? dev : "-", hex, st == 1 ? "ok" : "error", st == 1 ? 0 : st,
      (unsigned long long)x->rows_received, (unsigned long long)x->rows_sent,
      (unsigned long long)x->bytes_received, (unsigned long long)x->bytes_sent,
      (unsigned long long)x->applied.refused,
      (net_mono_seconds() - c->opened) * 1000);
  if (sv->tls) {
    text_add(&t, " tls_subject=");
    text_quoted(&t, net_tls_conn_subject(c));
  }
  if (st != 1) {
    text_add(&t, " error=");
    text_quoted(&t, sync_strerror(st ? st : SYNC_ECLOSED));
    text_add(&t, " msg=");
    text_quoted(&t, net_tls_conn_err(c)[0] ? net_tls_conn_err(c)
                                           : sync_session_errmsg(c->s));
  }
  log_line(&t);
}

/* A session is over: say how it went. */
static void session_done(void *ctx, net_conn *c) {
  server *sv = (server *)ctx;
  int st = sync_session_status(c->s), known;
  sync_session_stats x;
  uint8_t site[16];
  char hex[33] = "unknown";
  if (ctl_mesh_ended(sv->mesh, c)) return;
  sync_session_stats_get(c->s, &x);
  known = sync_session_peer(c->s, site) == 0;
  if (known) ctl_hex_str(site, 8, hex);
  if (known && st == 1) peer_synced(sv, site);
  if (st == 1 && x.applied.inserted + x.applied.updated + x.applied.deleted)
    ctl_mesh_changed(sv->mesh); /* the other servers lack these rows */
  session_log(sv, c, st, &x, known ? site : NULL);
  if (!sv->quiet) {
    if (st == 1)
      printf("serve: peer %s: received %llu rows, sent %llu rows (%llu bytes "
             "in, %llu out)\n",
             hex, (unsigned long long)x.rows_received,
             (unsigned long long)x.rows_sent,
             (unsigned long long)x.bytes_received,
             (unsigned long long)x.bytes_sent);
    else if (net_tls_conn_err(c)[0])
      printf("serve: peer %s: TLS failed: %s\n", hex, net_tls_conn_err(c));
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

static net_loop loop;

/* The server's own gauges, after the library's text: rows per table,
 * the file's size, open connections, and the age of each peer's last
 * good session (since this server started: it keeps them in memory). */
static void server_gauges(server *sv, text *t) {
  sync_txn *x;
  struct stat sb;
  unsigned nt = sync_env_table_count(sv->env), i;
  int nconn[2] = {0, 0};
  double now = net_mono_seconds();
  text_add(t, "# HELP sync_rows Live rows per table.\n"
              "# TYPE sync_rows gauge\n");
  if (sync_txn_begin(sv->env, SYNC_TXN_RDONLY, &x) == 0) {
    for (i = 0; i < nt; i++) {
      sync_table_def d;
      uint64_t n = 0;
      if (sync_env_table_def(sv->env, i, &d) || sync_count(x, i, &n)) continue;
      text_add(t, "sync_rows{table=");
      text_quoted(t, d.name);
      text_add(t, "} %llu\n", (unsigned long long)n);
    }
    sync_txn_abort(x);
  }
  if (stat(sv->db, &sb) == 0)
    text_add(t,
             "# HELP sync_file_bytes Size of the database file.\n"
             "# TYPE sync_file_bytes gauge\nsync_file_bytes %lld\n",
             (long long)sb.st_size);
  for (i = 0; i < NET_MAX_CONN; i++)
    if (loop.conns[i].fd >= 0 && loop.conns[i].listener <= L_METRICS)
      nconn[loop.conns[i].listener]++;
  text_add(t,
           "# HELP sync_server_connections Open connections of the server.\n"
           "# TYPE sync_server_connections gauge\n"
           "sync_server_connections{listener=\"sync\"} %d\n"
           "sync_server_connections{listener=\"metrics\"} %d\n",
           nconn[L_SYNC], nconn[L_METRICS]);
  text_add(t, "# HELP sync_peer_last_sync_age_seconds Seconds since the "
              "peer last ended a session well (peers seen since the server "
              "started).\n"
              "# TYPE sync_peer_last_sync_age_seconds gauge\n");
  for (i = 0; i < sv->nseen; i++) {
    char hex[33];
    ctl_hex_str(sv->seen[i].site, 16, hex);
    text_add(t, "sync_peer_last_sync_age_seconds{site=\"%s\"} %.3f\n", hex,
             now - sv->seen[i].when);
  }
}

/* An HTTP request has arrived whole: answer it. */
static void http_answer(server *sv, http_conn *h) {
  static sync_stats st;
  char head[256];
  text body = {0};
  const char *status = "200 OK";
  size_t hl;
  int ok =
      !strncmp(h->buf, "GET /metrics ", 13) || !strncmp(h->buf, "GET / ", 6);
  if (ok) {
    int64_t n;
    sync_env_stats(sv->env, &st);
    n = sync_stats_prometheus(&st, NULL, 0);
    if (n > 0 && !text_room(&body, (size_t)n)) {
      sync_stats_prometheus(&st, body.p, (size_t)n + 1);
      body.len = (size_t)n;
    }
    server_gauges(sv, &body);
    if (body.oom) {
      body.len = 0;
      status = "500 Internal Server Error";
    }
  } else if (!strncmp(h->buf, "GET ", 4)) {
    status = "404 Not Found";
  } else {
    status = "405 Method Not Allowed";
  }
  hl = (size_t)snprintf(
      head, sizeof head,
      "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; "
      "charset=utf-8\r\nContent-Length: %llu\r\nConnection: close\r\n\r\n",
      status, (unsigned long long)body.len);
  free(h->buf);
  h->buf = (char *)malloc(hl + body.len);
  if (!h->buf) {
    free(body.p);
    h->len = 0;
    return;
  }
  memcpy(h->buf, head, hl);
  if (body.len) memcpy(h->buf + hl, body.p, body.len);
  free(body.p);
  h->len = hl + body.len;
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
  net_creds_server_opts(sv->checked ? &sv->creds : NULL, &so);
  if (sync_session_create(sv->env, &so, &c->s)) return -1;
  if (sv->tls && net_tls_conn(sv->tls, c, NULL)) return -1;
  return 0;
}

/* SIGHUP: read the credentials file again.  A file that fails to parse
 * keeps the credentials in force, and the log says why. */
static net_creds fresh;
static char reload_why[512];
static void reload_say(const char *fmt, ...) {
  va_list ap;
  if (reload_why[0]) return; /* the first reason is the one to fix */
  va_start(ap, fmt);
  vsnprintf(reload_why, sizeof reload_why, fmt, ap);
  va_end(ap);
}

/* ctl_find_table says its message itself; a reload wants it in the log. */
static int reload_table(sync_env *env, const char *where, const char *name,
                        unsigned *id) {
  if (sync_env_table(env, name, id) == 0) return 0;
  reload_say("%s: no table '%s'", where, name);
  return -1;
}

static void creds_reload(server *sv) {
  text t = {0};
  FILE *f;
  text_add(&t, "event=reload credentials=");
  text_quoted(&t, sv->credfile ? sv->credfile : "");
  reload_why[0] = 0;
  if (!sv->checked) {
    snprintf(reload_why, sizeof reload_why,
             "no credentials file (--credentials): nothing to reload");
  } else if (!(f = fopen(sv->credfile, "r"))) {
    snprintf(reload_why, sizeof reload_why, "%s: %s", sv->credfile,
             strerror(errno));
  } else {
    fclose(f);
    memset(&fresh, 0, sizeof fresh);
    fresh.env = sv->env;
    fresh.say = reload_say;
    fresh.table = reload_table;
    fresh.refused = sv->creds.refused;
    fresh.refused_ctx = sv->creds.refused_ctx;
    if (ctl_each_line(sv->credfile, net_creds_line, &fresh) == 0) {
      net_creds_replace(&sv->creds, &fresh);
      text_add(&t, " result=ok tokens=%d", sv->creds.n);
      log_line(&t);
      return;
    }
    if (!reload_why[0]) snprintf(reload_why, sizeof reload_why, "unreadable");
  }
  text_add(&t, " result=error msg=");
  text_quoted(&t, reload_why);
  text_add(&t, " kept=old");
  log_line(&t);
}

static void serve_tick(void *ctx) {
  ctl_mesh_tick(((server *)ctx)->mesh);
  if (!g_reload) return;
  g_reload = 0;
  creds_reload((server *)ctx);
}

static server sv;
static const net_loop_ops serve_ops = {&sv,       serve_open,   http_events,
                                       http_step, session_done, http_close,
                                       serve_tick};

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

/* The TLS contexts and the mesh of o.  -1 when one fails (said). */
static int serve_tls_mesh(const ctl_serve_opts *o) {
  char err[512];
  net_tls_opts to;
  ctl_mesh_opts mo;
  int i;
  memset(&to, 0, sizeof to);
  to.cert = o->tls_cert;
  to.key = o->tls_key;
  to.client_ca = o->tls_client_ca;
  if ((o->tls_cert || o->tls_key) &&
      net_tls_create(&to, 1, &sv.tls, err, sizeof err)) {
    ctl_say("%s", err);
    return -1;
  }
  if (!o->npeers) return 0;
  /* Peers speak what this server speaks: with TLS, their certificates
   * checked against --tls-ca, this server's own shown to them. */
  if (sv.tls) {
    to.ca = o->tls_ca;
    to.client_ca = NULL;
    if (net_tls_create(&to, 0, &sv.peer_tls, err, sizeof err)) {
      ctl_say("--peer over TLS: %s", err);
      return -1;
    }
  }
  memset(&mo, 0, sizeof mo);
  for (i = 0; i < o->npeers; i++) mo.peers[i] = o->peers[i];
  mo.npeers = o->npeers;
  mo.interval_s = o->peer_interval ? o->peer_interval : 10;
  mo.token = o->peer_token;
  mo.tls = sv.peer_tls;
  mo.quiet = o->quiet;
  if (ctl_mesh_create(&mo, sv.env, &loop, &sv.mesh)) {
    ctl_say("out of memory");
    return -1;
  }
  return 0;
}

/* Open the database, read the credentials, listen, write the port files
 * and say so.  -1 when one of them fails (said already). */
static int serve_start(const ctl_serve_opts *o) {
  int port, mport = 0;
  if (ctl_open_db(o->db, 0, &sv.env)) return -1;
  if (serve_tls_mesh(o)) return -1;
  sv.db = o->db;
  sv.creds.env = sv.env;
  sv.creds.say = ctl_say;
  sv.creds.table = ctl_find_table;
  sv.creds.refused = bound_refused;
  sv.creds.refused_ctx = &sv;
  sv.checked = o->credfile != NULL;
  sv.credfile = o->credfile;
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
  {
    /* sigaction, not signal: in strict C11 builds glibc's signal() resets
     * the handler after one delivery, and a second SIGHUP would kill. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
  }
  if (!sv.quiet) {
    printf("serve: %s on port %d%s", o->db, port,
           o->credfile ? ", peers checked against the credentials file"
                       : ", every peer may read and write");
    if (o->maddr) printf("; metrics on port %d", mport);
    if (sv.tls)
      printf("; TLS%s", o->tls_client_ca ? ", client certificates required"
                                         : "");
    if (o->npeers)
      printf("; in step with %d mesh peer%s every %u s and on change",
             o->npeers, o->npeers == 1 ? "" : "s",
             o->peer_interval ? o->peer_interval : 10);
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
    ctl_mesh_free(sv.mesh);
    net_tls_free(sv.tls);
    net_tls_free(sv.peer_tls);
    sync_env_close(sv.env);
    return EX_FAIL;
  }
  if (net_loop_run(&loop, &g_stop, o->max_sessions))
    ctl_say("poll: %s", strerror(errno));
  /* Every connection ends (a running session as closed), then the
   * digest. */
  net_loop_stop(&loop);
  ctl_mesh_free(sv.mesh);
  net_tls_free(sv.tls);
  net_tls_free(sv.peer_tls);
  dg = ctl_digest_all(sv.env);
  if (!sv.quiet)
    printf("serve: stopped; digest %016llx\n", (unsigned long long)dg);
  sync_env_close(sv.env);
  return EX_OK;
}
