/*
 * The machinery behind 'synctl serve': the credentials file and the rights
 * and row filter it gives each peer, one poll loop over the listening
 * sockets, the sync sessions (sans-IO, fed from non-blocking sockets) and
 * the HTTP connections that scrape the metrics.
 */
#include "synctl.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 256
#define MAX_CRED 64
#define IDLE_SECONDS 60

typedef struct cred {
  char token[128];
  sync_rights rights;
  int bound; /* site= given: only that replica may use the token */
  uint8_t site[16];
  /* where=COLUMN=VALUE: the peer's scope is the rows whose column of that
   * name holds VALUE (as an integer when it reads as one); tables
   * without such a column pass whole */
  char wcol[64], wval[128];
  int where;
} cred;

typedef struct server {
  sync_env *env;
  const char *db;
  cred creds[MAX_CRED];
  int ncreds, quiet;
  uint64_t fver; /* the filter version: a hash of every where= */
  struct {
    uint8_t site[16];
    int cred;
  } peers[MAX_CONN]; /* which credential each peer last showed */
  unsigned npeers, next_peer;
} server;

/* The serve filter (docs/PROTOCOL.md, "Scope"): a peer whose credential
 * has where=COLUMN=VALUE sees the rows holding VALUE in COLUMN. */
static int serve_filter(void *ctx, const uint8_t peer[16], unsigned table,
                        const void *key, size_t klen, const sync_value *vals,
                        unsigned nvals) {
  server *sv = (server *)ctx;
  const cred *c = NULL;
  unsigned i, col;
  char *end;
  long long iv;
  (void)key;
  (void)klen;
  for (i = 0; i < sv->npeers; i++)
    if (!memcmp(sv->peers[i].site, peer, 16)) c = &sv->creds[sv->peers[i].cred];
  if (!c || !c->where) return 1;
  if (!vals) return 1; /* a delete: the peer may hold the row */
  if (sync_env_column(sv->env, table, c->wcol, &col) || col >= nvals) return 1;
  switch (vals[col].type) {
  case SYNC_INTEGER:
    errno = 0;
    iv = strtoll(c->wval, &end, 10);
    return !errno && !*end && end != c->wval && iv == vals[col].i;
  case SYNC_TEXT:
  case SYNC_BLOB:
    return vals[col].len == strlen(c->wval) &&
           !memcmp(vals[col].data, c->wval, vals[col].len);
  default: return 0;
  }
}

typedef struct conn {
  int fd, http;
  sync_session *s;
  unsigned char out[16384];
  size_t olen, ooff;
  char *hbuf; /* http: the request, then the response */
  size_t hlen, hoff;
  int hdone;
  time_t last;
} conn;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int set_tables(sync_env *env, const char *db, char *list,
                      unsigned char *bits) {
  char *save = NULL, *t;
  for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    unsigned id;
    if (!strcmp(t, "*")) {
      memset(bits, 0xff, SYNC_RIGHTS_BYTES);
      continue;
    }
    if (ctl_find_table(env, db, t, &id)) return -1;
    bits[id >> 3] |= (unsigned char)(1u << (id & 7));
  }
  return 0;
}

/* word, "where=COLUMN=VALUE", into c. */
static int cred_where(server *sv, cred *c, const char *word,
                      const char *where) {
  const char *w = word + 6, *eq = strchr(w, '=');
  size_t i, cl = eq ? (size_t)(eq - w) : 0;
  if (!eq || !cl || cl >= sizeof c->wcol || strlen(eq + 1) >= sizeof c->wval) {
    ctl_say("%s: where= wants COLUMN=VALUE, not '%s'", where, w);
    return -1;
  }
  memcpy(c->wcol, w, cl);
  c->wcol[cl] = 0;
  snprintf(c->wval, sizeof c->wval, "%s", eq + 1);
  c->where = 1;
  /* The filter's version: FNV-1a over every token's clause, so a
   * changed file restarts each peer's stream. */
  if (!sv->fver) sv->fver = 0xcbf29ce484222325ull;
  for (i = 0; word[i]; i++)
    sv->fver = (sv->fver ^ (unsigned char)word[i]) * 0x100000001b3ull;
  for (i = 0; c->token[i]; i++)
    sv->fver = (sv->fver ^ (unsigned char)c->token[i]) * 0x100000001b3ull;
  return 0;
}

/* site=HEX32 (w is what follows site=) into c.  The site id in HELLO is
 * self-asserted: binding the token to one site is what stops a holder of
 * the token from writing as another device (SECURITY.md). */
static int cred_site(cred *c, const char *w, const char *where) {
  size_t n = 0;
  unsigned char *b = strlen(w) == 32 ? ctl_from_hex(w, 32, &n) : NULL;
  int rc = 0;
  if (!b || n != 16) {
    ctl_say("%s: site= wants 32 hex digits (a site id), not '%s'", where, w);
    rc = -1;
  } else {
    memcpy(c->site, b, 16);
    c->bound = 1;
  }
  free(b);
  return rc;
}

/* One word after the token. */
static int cred_word(server *sv, cred *c, char *w, const char *where) {
  if (!strncmp(w, "read=", 5))
    return set_tables(sv->env, where, w + 5, c->rights.read);
  if (!strncmp(w, "write=", 6))
    return set_tables(sv->env, where, w + 6, c->rights.write);
  if (!strcmp(w, "relay")) {
    c->rights.relay = 1;
    return 0;
  }
  if (!strncmp(w, "where=", 6)) return cred_where(sv, c, w, where);
  if (!strncmp(w, "site=", 5)) return cred_site(c, w + 5, where);
  ctl_say("%s: cannot read '%s' (read=TABLES, write=TABLES, relay, "
          "site=HEX32 or where=COLUMN=VALUE)",
          where, w);
  return -1;
}

/* One line of the credentials file: TOKEN and its words, or a comment. */
static int cred_line(void *ctx, char *line, const char *where) {
  server *sv = (server *)ctx;
  char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
  cred *c;
  if (!w || w[0] == '#') return 0;
  if (sv->ncreds == MAX_CRED || strlen(w) >= sizeof c->token) {
    ctl_say("%s: too many credentials, or a token over 127 bytes", where);
    return -1;
  }
  c = &sv->creds[sv->ncreds++];
  memset(c, 0, sizeof *c);
  snprintf(c->token, sizeof c->token, "%s", w);
  while ((w = strtok_r(NULL, " \t\r\n", &save)))
    if (cred_word(sv, c, w, where)) return -1;
  return 0;
}

static int load_creds(server *sv, const char *path) {
  return ctl_each_line(path, cred_line, sv);
}

static int authorize(void *ctx, const uint8_t site[16], const void *cr,
                     size_t len, sync_rights *rights) {
  server *sv = (server *)ctx;
  int i;
  for (i = 0; i < sv->ncreds; i++)
    if (strlen(sv->creds[i].token) == len &&
        !memcmp(sv->creds[i].token, cr, len)) {
      if (sv->creds[i].bound && memcmp(sv->creds[i].site, site, 16)) {
        char got[33], want[33];
        ctl_hex_str(site, 16, got);
        ctl_hex_str(sv->creds[i].site, 16, want);
        if (!sv->quiet) {
          printf("serve: peer %s: refused: its credential is bound to site "
                 "%s\n",
                 got, want);
          fflush(stdout);
        }
        return SYNC_EPERM;
      }
      *rights = sv->creds[i].rights;
      {
        /* Remember the peer's credential for the filter. */
        unsigned j;
        for (j = 0; j < sv->npeers && memcmp(sv->peers[j].site, site, 16);
             j++) {
        }
        if (j == sv->npeers) {
          if (sv->npeers < MAX_CONN)
            sv->npeers++;
          else
            j = sv->next_peer++ % MAX_CONN;
        }
        memcpy(sv->peers[j].site, site, 16);
        sv->peers[j].cred = i;
      }
      return 0;
    }
  return SYNC_EPERM;
}

static void conn_close(conn *c) {
  if (c->s) sync_session_free(c->s);
  free(c->hbuf);
  close(c->fd);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

static void session_done(server *sv, conn *c) {
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
  conn_close(c);
}

/* An HTTP request has arrived whole: answer it. */
static void http_answer(server *sv, conn *c) {
  static sync_stats st;
  char head[256], *body = NULL;
  const char *status = "200 OK";
  int64_t n = 0;
  size_t hl;
  int ok =
      !strncmp(c->hbuf, "GET /metrics ", 13) || !strncmp(c->hbuf, "GET / ", 6);
  if (ok) {
    sync_env_stats(sv->env, &st);
    n = sync_stats_prometheus(&st, NULL, 0);
    body = (char *)malloc((size_t)n + 1);
    if (!body)
      n = 0, status = "500 Internal Server Error";
    else
      sync_stats_prometheus(&st, body, (size_t)n + 1);
  } else if (!strncmp(c->hbuf, "GET ", 4)) {
    status = "404 Not Found";
  } else {
    status = "405 Method Not Allowed";
  }
  hl = (size_t)snprintf(
      head, sizeof head,
      "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; "
      "charset=utf-8\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
      status, (long long)n);
  free(c->hbuf);
  c->hbuf = (char *)malloc(hl + (size_t)n);
  if (!c->hbuf) {
    free(body);
    c->hlen = 0;
    return;
  }
  memcpy(c->hbuf, head, hl);
  if (n) memcpy(c->hbuf + hl, body, (size_t)n);
  free(body);
  c->hlen = hl + (size_t)n;
  c->hoff = 0;
  c->hdone = 1;
}

/* Returns 1 when the connection is finished. */
static int http_step(server *sv, conn *c, short revents) {
  if (!c->hdone && (revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[2048];
    ssize_t k = read(c->fd, buf, sizeof buf);
    char *n;
    if (k <= 0) return !(k < 0 && (errno == EAGAIN || errno == EINTR));
    if (c->hlen + (size_t)k > 16384) return 1; /* not a metrics scraper */
    if (!(n = (char *)realloc(c->hbuf, c->hlen + (size_t)k + 1))) return 1;
    c->hbuf = n;
    memcpy(c->hbuf + c->hlen, buf, (size_t)k);
    c->hlen += (size_t)k;
    c->hbuf[c->hlen] = 0;
    if (strstr(c->hbuf, "\r\n\r\n") || strstr(c->hbuf, "\n\n"))
      http_answer(sv, c);
  }
  if (c->hdone) {
    while (c->hoff < c->hlen) {
      ssize_t k = write(c->fd, c->hbuf + c->hoff, c->hlen - c->hoff);
      if (k > 0) {
        c->hoff += (size_t)k;
        continue;
      }
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
      return 1;
    }
    return 1;
  }
  return 0;
}

static void session_step(conn *c, short revents) {
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    unsigned char buf[16384];
    ssize_t k = read(c->fd, buf, sizeof buf);
    if (k > 0) {
      sync_inbuf in = {buf, (size_t)k, 0};
      sync_session_recv(c->s, &in);
    } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
      sync_session_abort(c->s, SYNC_ECLOSED);
    }
  }
  for (;;) {
    ssize_t k;
    if (c->ooff == c->olen) {
      sync_outbuf out = {c->out, sizeof c->out, 0};
      if (sync_session_status(c->s) != 0 || !sync_session_want_write(c->s))
        break;
      sync_session_send(c->s, &out);
      c->olen = out.pos;
      c->ooff = 0;
      if (!c->olen) break;
    }
    k = write(c->fd, c->out + c->ooff, c->olen - c->ooff);
    if (k > 0) {
      c->ooff += (size_t)k;
      continue;
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      break;
    sync_session_abort(c->s, SYNC_ECLOSED);
    c->ooff = c->olen;
    break;
  }
}

/* ---------------------------------------------------------------------
 * The poll loop
 * ------------------------------------------------------------------- */
static server sv;
static conn conns[MAX_CONN];

/* Open the database, read the credentials, listen, write the port files
 * and say so.  -1 when one of them fails (said already). */
static int serve_start(const ctl_serve_opts *o, int *lfd, int *mfd) {
  int port, mport = 0;
  if (ctl_open_db(o->db, 0, &sv.env)) return -1;
  sv.db = o->db;
  if (o->credfile && load_creds(&sv, o->credfile)) return -1;
  if ((*lfd = ctl_tcp_listen(o->addr, &port)) < 0) return -1;
  if (o->maddr && (*mfd = ctl_tcp_listen(o->maddr, &mport)) < 0) return -1;
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

/* The descriptors to wait on: the listeners first (idx -1 for sessions,
 * -2 for metrics), then each connection (idx its slot).  Returns how
 * many. */
static int serve_pollset(int lfd, int mfd, struct pollfd *pf, int *idx) {
  int i, n = 0;
  pf[n].fd = lfd, pf[n].events = POLLIN, idx[n++] = -1;
  if (mfd >= 0) pf[n].fd = mfd, pf[n].events = POLLIN, idx[n++] = -2;
  for (i = 0; i < MAX_CONN; i++) {
    conn *c = &conns[i];
    if (c->fd < 0) continue;
    pf[n].fd = c->fd;
    if (c->http)
      pf[n].events = (short)(c->hdone ? POLLOUT : POLLIN);
    else
      pf[n].events =
          (short)((sync_session_want_read(c->s) ? POLLIN : 0) |
                  (c->olen > c->ooff || sync_session_want_write(c->s) ? POLLOUT
                                                                      : 0));
    idx[n++] = i;
  }
  return n;
}

/* A server session for a new peer on fd; checked: the credentials file
 * gives its rights and its rows.  0, or -1 when none could be made. */
static int serve_session(conn *c, int fd, int checked) {
  sync_session_opts so;
  int one = 1;
  memset(&so, 0, sizeof so);
  so.server = 1;
  so.authorize = checked ? authorize : NULL;
  so.authorize_ctx = &sv;
  if (checked) {
    so.filter = serve_filter;
    so.filter_ctx = &sv;
    so.filter_version = sv.fver;
  }
  so.level = 3;
  if (sync_session_create(sv.env, &so, &c->s)) return -1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return 0;
}

/* A connection waiting on lfd, into a free slot (closed when there is
 * none: the peer retries later). */
static void serve_accept(int lfd, int http, int checked) {
  int fd = accept(lfd, NULL, NULL), i;
  if (fd < 0) return;
  for (i = 0; i < MAX_CONN && conns[i].fd >= 0; i++) {
  }
  if (i == MAX_CONN) {
    close(fd); /* full: the peer retries later */
    return;
  }
  memset(&conns[i], 0, sizeof conns[i]);
  conns[i].http = http;
  if (!http && serve_session(&conns[i], fd, checked)) {
    close(fd);
    conns[i].fd = -1;
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  conns[i].fd = fd;
  conns[i].last = time(NULL);
}

/* One connection's turn after poll.  Returns 1 when a session ended. */
static int serve_conn(conn *c, short revents) {
  if (c->fd < 0) return 0;
  if (c->http) {
    if (http_step(&sv, c, revents) || (!revents && time(NULL) - c->last > 10))
      conn_close(c);
    else if (revents)
      c->last = time(NULL);
    return 0;
  }
  session_step(c, revents);
  if (revents)
    c->last = time(NULL);
  else if (time(NULL) - c->last > IDLE_SECONDS) {
    sync_session_abort(c->s, SYNC_ETIMEOUT);
    c->ooff = c->olen;
  }
  if (sync_session_status(c->s) != 0 && c->ooff == c->olen) {
    session_done(&sv, c);
    return 1;
  }
  return 0;
}

/* Until SIGINT or SIGTERM, or until o->max_sessions sessions ended. */
static void serve_loop(const ctl_serve_opts *o, int lfd, int mfd) {
  long ended = 0;
  int i;
  for (i = 0; i < MAX_CONN; i++) conns[i].fd = -1;
  while (!g_stop && (o->max_sessions < 0 || ended < o->max_sessions)) {
    struct pollfd pf[MAX_CONN + 2];
    int idx[MAX_CONN + 2], n = serve_pollset(lfd, mfd, pf, idx), k;
    if (poll(pf, (nfds_t)n, 1000) < 0) {
      if (errno == EINTR) continue;
      ctl_say("poll: %s", strerror(errno));
      break;
    }
    for (k = 0; k < n && idx[k] < 0; k++)
      if (pf[k].revents & POLLIN)
        serve_accept(pf[k].fd, idx[k] == -2, o->credfile != NULL);
    for (; k < n; k++) ended += serve_conn(&conns[idx[k]], pf[k].revents);
  }
}

/* End every connection (a running session as closed), then the digest. */
static void serve_stop(int lfd, int mfd) {
  int i;
  uint64_t dg;
  for (i = 0; i < MAX_CONN; i++)
    if (conns[i].fd >= 0) {
      if (conns[i].s) {
        sync_session_abort(conns[i].s, SYNC_ECLOSED);
        session_done(&sv, &conns[i]);
      } else {
        conn_close(&conns[i]);
      }
    }
  close(lfd);
  if (mfd >= 0) close(mfd);
  dg = ctl_digest_all(sv.env);
  if (!sv.quiet)
    printf("serve: stopped; digest %016llx\n", (unsigned long long)dg);
  sync_env_close(sv.env);
}

int ctl_serve(const ctl_serve_opts *o) {
  int lfd = -1, mfd = -1;
  memset(&sv, 0, sizeof sv);
  sv.quiet = o->quiet;
  if (serve_start(o, &lfd, &mfd)) {
    sync_env_close(sv.env);
    return EX_FAIL;
  }
  serve_loop(o, lfd, mfd);
  serve_stop(lfd, mfd);
  return EX_OK;
}
