/*
 * sync_server.c - a server peer: serves many edge devices at once over
 * TCP, one sans-IO session per connection, driven by poll().  Each
 * device's credential is checked against a credentials file that maps
 * tokens to table rights; a device that misbehaves or vanishes
 * mid-session ends its own session only.
 *
 *   sync_server DB HOST:PORT [--credentials FILE] [--sessions N]
 *               [--port-file FILE] [--quiet]
 *
 * PORT 0 picks a free port (written to --port-file).  --sessions N stops
 * after N sessions have ended (tests, demos); otherwise it serves until
 * SIGINT or SIGTERM.  Credentials file, one device per line:
 *   TOKEN read=TABLE[,TABLE...] write=TABLE[,...] [relay] [name=NAME] [own]
 * ("*" for every table).  Without a file every device may read and write
 * every table.  name=NAME: the device owns the readings whose keys start
 * with "NAME-"; the server refuses its writes to any other reading, and
 * any battery level outside 0..100 (a write check, answered to the
 * device, which takes the server's row back).  own: the device holds
 * only its own readings that are not retired (status "retired"), and
 * every setting: a row filter that defines its share, by key and by
 * value, so a reading an operator retires leaves the device (an exit
 * marker) and stays on the server.  The server keeps its own schema:
 * devices with a newer one (appended columns) sync with it, and it
 * stores and forwards their new columns unread.  `synctl serve`
 * (tools/synctl/) has the full version of this server.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "demo_schema.h"

#define MAX_CONN 256
#define MAX_CRED 64
#define IDLE_SECONDS 60

#define MAX_BIND 256

typedef struct cred {
  char token[128];
  char name[64]; /* owner of the readings "NAME-..." (empty: no check) */
  int own;       /* holds only its own readings */
  sync_rights rights;
} cred;

/* Which credential a site id presented: the write check and the row
 * filter see the site, and judge by what its credential allows. */
typedef struct site_cred {
  uint8_t site[16];
  int cred;
} site_cred;

typedef struct server {
  sync_env *env;
  cred creds[MAX_CRED];
  int ncreds, quiet;
  int checked; /* devices are checked against a credentials file */
  site_cred binds[MAX_BIND];
  int nbinds;
} server;

typedef struct conn {
  int fd;
  sync_session *s;
  unsigned char out[16384]; /* bytes the socket has not taken yet */
  size_t olen, ooff;
  time_t last; /* last activity */
} conn;

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int set_tables(sync_env *env, char *list, unsigned char *bits) {
  char *save = NULL, *t;
  for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    unsigned id;
    if (!strcmp(t, "*")) {
      memset(bits, 0xff, SYNC_RIGHTS_BYTES);
      continue;
    }
    if (sync_env_table(env, t, &id) != 0) {
      fprintf(stderr, "sync_server: no table '%s' in the schema\n", t);
      return -1;
    }
    bits[id >> 3] |= (unsigned char)(1u << (id & 7));
  }
  return 0;
}

static int load_creds(server *sv, const char *path) {
  FILE *f = fopen(path, "r");
  char line[1024];
  int lineno = 0;
  if (!f) {
    fprintf(stderr, "sync_server: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
    cred *c;
    lineno++;
    if (!w || w[0] == '#') continue;
    if (sv->ncreds == MAX_CRED || strlen(w) >= sizeof c->token) {
      fprintf(stderr, "sync_server: %s:%d: too many or too long\n", path, lineno);
      fclose(f);
      return -1;
    }
    c = &sv->creds[sv->ncreds++];
    memset(c, 0, sizeof *c);
    strcpy(c->token, w);
    while ((w = strtok_r(NULL, " \t\r\n", &save))) {
      int rc = 0;
      if (!strncmp(w, "read=", 5)) rc = set_tables(sv->env, w + 5, c->rights.read);
      else if (!strncmp(w, "write=", 6)) rc = set_tables(sv->env, w + 6, c->rights.write);
      else if (!strcmp(w, "relay")) c->rights.relay = 1;
      else if (!strcmp(w, "own")) c->own = 1;
      else if (!strncmp(w, "name=", 5) && strlen(w + 5) < sizeof c->name)
        strcpy(c->name, w + 5);
      else rc = -1;
      if (rc) {
        fprintf(stderr, "sync_server: %s:%d: cannot read '%s'\n", path, lineno, w);
        fclose(f);
        return -1;
      }
    }
  }
  fclose(f);
  return 0;
}

static int authorize(void *ctx, const uint8_t site[16], const void *cr,
                     size_t len, sync_rights *rights) {
  server *sv = (server *)ctx;
  int i, b;
  for (i = 0; i < sv->ncreds; i++)
    if (strlen(sv->creds[i].token) == len && !memcmp(sv->creds[i].token, cr, len)) {
      for (b = 0; b < sv->nbinds && memcmp(sv->binds[b].site, site, 16); b++) {
      }
      if (b == sv->nbinds) {
        if (b == MAX_BIND) return SYNC_EPERM; /* full: a demo's limit */
        sv->nbinds++;
        memcpy(sv->binds[b].site, site, 16);
      }
      sv->binds[b].cred = i;
      *rights = sv->creds[i].rights;
      return 0;
    }
  return SYNC_EPERM;
}

static const cred *cred_of(const server *sv, const uint8_t *site) {
  int b;
  for (b = 0; b < sv->nbinds; b++)
    if (!memcmp(sv->binds[b].site, site, 16)) return &sv->creds[sv->binds[b].cred];
  return NULL;
}

/* Is key one of the readings that device c owns ("NAME-...")? */
static int owns(const cred *c, const void *key, size_t klen) {
  size_t n = strlen(c->name);
  return klen > n && !memcmp(key, c->name, n) && ((const char *)key)[n] == '-';
}

/* The write check: a named device writes only its own readings, and a
 * battery level must be 0..100.  The key names the owner here; a check
 * by an owner column would read the stored row (w->stored_values), never
 * the incoming one, which the device chose. */
static int check_write(void *ctx, const sync_write *w, int *reason,
                       char *text, size_t cap) {
  const cred *c = cred_of((const server *)ctx, w->sender);
  unsigned i;
  if (!c || !c->name[0] || w->table != DEMO_READINGS) return 0;
  if (!owns(c, w->key.data, w->key.len)) {
    *reason = SYNC_REFUSE_APP;
    snprintf(text, cap, "reading %.*s belongs to another device",
             (int)w->key.len, (const char *)w->key.data);
    return 1;
  }
  for (i = 0; i < w->ncolumns; i++)
    if (w->columns[i] == 1 && w->values[i].type == SYNC_INTEGER &&
        (w->values[i].i < 0 || w->values[i].i > 100)) {
      *reason = SYNC_REFUSE_APP + 1;
      snprintf(text, cap, "battery %lld is not within 0..100",
               (long long)w->values[i].i);
      return 1;
    }
  return 0;
}

/* The share of a device with "own": its readings that are not retired,
 * and every setting.  vals are the server's row (NULL for a delete, which
 * goes to the owner). */
static int share(void *ctx, const uint8_t peer[16], unsigned table,
                 const void *key, size_t klen, const sync_value *vals,
                 unsigned nvals) {
  const cred *c = cred_of((const server *)ctx, peer);
  if (!c || !c->own || table != DEMO_READINGS) return 1;
  if (nvals > 2 && vals[2].type == SYNC_TEXT && vals[2].len == 7 &&
      !memcmp(vals[2].data, "retired", 7))
    return 0;
  return owns(c, key, klen);
}

/* The network code: a listening socket, and a poll() loop (serve, below)
 * that moves bytes between each non-blocking socket and its session.
 * `synctl serve` has the full version in tools/net/ (TCP, poll loop,
 * credentials file, retries); this example keeps only what serving the
 * demo's devices needs. */
static int listen_on(const char *addr, int *port_out) {
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  int fd = -1, one = 1, rc;
  if (demo_split_addr(addr, host, sizeof host, port, sizeof port)) {
    fprintf(stderr, "sync_server: address must be HOST:PORT, not '%s'\n", addr);
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if ((rc = getaddrinfo(host, port, &hints, &ai))) {
    fprintf(stderr, "sync_server: %s: %s\n", addr, gai_strerror(rc));
    return -1;
  }
  for (p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, p->ai_addr, p->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    fprintf(stderr, "sync_server: cannot listen on %s: %s\n", addr, strerror(errno));
    return -1;
  }
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ph[64], pp[16];
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, ph, sizeof ph, pp, sizeof pp,
                NI_NUMERICHOST | NI_NUMERICSERV);
    *port_out = atoi(pp);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* A session ended: say how, in plain words, and free it. */
static void finish(server *sv, conn *c) {
  int st = sync_session_status(c->s);
  sync_session_stats x;
  uint8_t site[16];
  char hex[33] = "unknown device";
  sync_session_stats_get(c->s, &x);
  if (sync_session_peer(c->s, site) == 0) demo_hex(site, 8, hex);
  if (!sv->quiet) {
    if (st == 1)
      printf("server: device %s: received %llu rows, sent %llu rows, "
             "%llu bytes in, %llu out; done\n",
             hex, (unsigned long long)x.rows_received,
             (unsigned long long)x.rows_sent, (unsigned long long)x.bytes_received,
             (unsigned long long)x.bytes_sent);
    else
      printf("server: device %s: session ended: %s (%s)\n", hex,
             sync_strerror(st ? st : SYNC_ECLOSED), sync_session_errmsg(c->s));
    if (x.applied.refused)
      printf("server: device %s: %llu rows refused (rights or write check)\n",
             hex, (unsigned long long)x.applied.refused);
    fflush(stdout);
  }
  sync_session_free(c->s);
  close(c->fd);
  c->s = NULL;
  c->fd = -1;
}

/* The poll set: the listening socket first, then every connection with
 * what its session wants; idx[k] is the connection of entry k. */
static int poll_set(const conn *conns, int lfd, struct pollfd *pf, int *idx) {
  int n = 0, i;
  pf[n].fd = lfd;
  pf[n].events = POLLIN;
  idx[n++] = -1;
  for (i = 0; i < MAX_CONN; i++) {
    if (conns[i].fd < 0) continue;
    pf[n].fd = conns[i].fd;
    pf[n].events = (short)((sync_session_want_read(conns[i].s) ? POLLIN : 0) |
                           (conns[i].olen > conns[i].ooff ||
                                    sync_session_want_write(conns[i].s)
                                ? POLLOUT
                                : 0));
    idx[n++] = i;
  }
  return n;
}

/* A device connects: a session of its own, or the door shut when every
 * slot is taken (the device retries later). */
static void accept_one(server *sv, int lfd, conn *conns) {
  sync_session_opts so;
  int fd = accept(lfd, NULL, NULL), i, one = 1;
  if (fd < 0) return;
  for (i = 0; i < MAX_CONN && conns[i].fd >= 0; i++) {
  }
  memset(&so, 0, sizeof so);
  so.server = 1;
  so.authorize = sv->checked ? authorize : NULL;
  so.authorize_ctx = sv;
  if (sv->checked) {
    so.check_write = check_write;
    so.check_write_ctx = sv;
    so.filter = share;
    so.filter_ctx = sv;
    so.filter_version = 1; /* the rules of share() */
  }
  so.level = 3;
  if (i == MAX_CONN || sync_session_create(sv->env, &so, &conns[i].s)) {
    close(fd);
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  conns[i].fd = fd;
  conns[i].olen = conns[i].ooff = 0;
  conns[i].last = time(NULL);
}

/* Write what the socket takes; a device that stops reading only stalls
 * its own session. */
static void flush_out(conn *c) {
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
    c->ooff = c->olen; /* nobody left to take it */
    break;
  }
}

/* One connection after poll(): what arrived into its session, what the
 * session has to say out, and a watch for silence.  Returns 1 when its
 * session ended (and was freed). */
static int step(server *sv, conn *c, short revents) {
  unsigned char buf[16384];
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    ssize_t k = read(c->fd, buf, sizeof buf);
    if (k > 0) {
      sync_inbuf in = {buf, (size_t)k, 0};
      sync_session_recv(c->s, &in);
    } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
      sync_session_abort(c->s, SYNC_ECLOSED); /* it vanished */
    }
  }
  flush_out(c);
  if (revents)
    c->last = time(NULL);
  else if (time(NULL) - c->last > IDLE_SECONDS) {
    sync_session_abort(c->s, SYNC_ETIMEOUT); /* silent for too long */
    c->ooff = c->olen;
  }
  if (sync_session_status(c->s) != 0 && c->ooff == c->olen) {
    finish(sv, c);
    return 1;
  }
  return 0;
}

/* The poll loop: until SIGINT or SIGTERM, or until max_sessions sessions
 * have ended (max_sessions < 0: no limit). */
static void serve(server *sv, int lfd, conn *conns, long max_sessions) {
  long ended = 0;
  while (!stop && (max_sessions < 0 || ended < max_sessions)) {
    struct pollfd pf[MAX_CONN + 1];
    int idx[MAX_CONN + 1], n = poll_set(conns, lfd, pf, idx), i;
    if (poll(pf, (nfds_t)n, 1000) < 0) {
      if (errno == EINTR) continue;
      perror("sync_server: poll");
      break;
    }
    if (pf[0].revents & POLLIN) accept_one(sv, lfd, conns);
    for (i = 1; i < n; i++) ended += step(sv, &conns[idx[i]], pf[i].revents);
  }
}

/* The command line. */
typedef struct server_opts {
  const char *db, *addr, *credfile, *portfile;
  long max_sessions; /* -1: serve until a signal */
  int quiet;
} server_opts;

/* Returns 0, or -1 for a command line it cannot read. */
static int parse_args(int argc, char **argv, server_opts *o) {
  int i;
  memset(o, 0, sizeof *o);
  o->max_sessions = -1;
  for (i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--credentials") && i + 1 < argc)
      o->credfile = argv[++i];
    else if (!strcmp(argv[i], "--sessions") && i + 1 < argc)
      o->max_sessions = atol(argv[++i]);
    else if (!strcmp(argv[i], "--port-file") && i + 1 < argc)
      o->portfile = argv[++i];
    else if (!strcmp(argv[i], "--quiet"))
      o->quiet = 1;
    else if (!o->db)
      o->db = argv[i];
    else if (!o->addr)
      o->addr = argv[i];
    else
      return -1;
  }
  return o->db && o->addr ? 0 : -1;
}

/* The database, the credentials and the listening socket (its port in
 * --port-file).  Returns the socket, or -1 once stderr says why. */
static int server_open(server *sv, const server_opts *o) {
  int lfd, port, rc;
  if ((rc = sync_env_create(NULL, &sv->env)) ||
      (rc = sync_env_set_schema(sv->env, demo_tables, 2)) ||
      (rc = sync_env_open(sv->env, o->db, 0))) {
    fprintf(stderr, "sync_server: cannot open %s: %s %s\n", o->db,
            sync_strerror(rc), sv->env ? sync_env_errmsg(sv->env) : "");
    sync_env_close(sv->env);
    return -1;
  }
  if (o->credfile && load_creds(sv, o->credfile)) return -1;
  if ((lfd = listen_on(o->addr, &port)) < 0) return -1;
  if (o->portfile) {
    FILE *f = fopen(o->portfile, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f)) {
      fprintf(stderr, "sync_server: cannot write %s\n", o->portfile);
      return -1;
    }
  }
  if (!sv->quiet) {
    printf("server: serving %s on port %d%s\n", o->db, port,
           o->credfile ? ", devices checked against the credentials file"
                       : ", every device may read and write");
    fflush(stdout);
  }
  return lfd;
}

/* Every session still open ends; the digest says what the server holds. */
static void server_close(server *sv, int lfd, conn *conns) {
  sync_txn *x;
  uint64_t dg = 0;
  int i;
  for (i = 0; i < MAX_CONN; i++)
    if (conns[i].fd >= 0) {
      sync_session_abort(conns[i].s, SYNC_ECLOSED);
      finish(sv, &conns[i]);
    }
  close(lfd);
  if (sync_txn_begin(sv->env, SYNC_TXN_RDONLY, &x) == 0) {
    sync_digest(x, SYNC_ALL_TABLES, &dg);
    sync_txn_abort(x);
  }
  printf("server: stopped; digest %016llx\n", (unsigned long long)dg);
  sync_env_close(sv->env);
}

int main(int argc, char **argv) {
  server sv;
  server_opts o;
  conn conns[MAX_CONN];
  int lfd, i;
  if (parse_args(argc, argv, &o)) {
    fprintf(stderr, "usage: sync_server DB HOST:PORT [--credentials FILE] "
                    "[--sessions N] [--port-file FILE] [--quiet]\n");
    return 2;
  }
  memset(&sv, 0, sizeof sv);
  sv.quiet = o.quiet;
  sv.checked = o.credfile != NULL;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if ((lfd = server_open(&sv, &o)) < 0) return 1;
  for (i = 0; i < MAX_CONN; i++) conns[i].fd = -1, conns[i].s = NULL;
  serve(&sv, lfd, conns, o.max_sessions);
  server_close(&sv, lfd, conns);
  return 0;
}
