/*
 * sync_edge.c - an edge device: records readings in its own database and
 * syncs them with a server over TCP, retrying with backoff when the tcp_link
 * fails.
 *
 *   sync_edge DB HOST:PORT [--name NAME] [--write N] [--token TOKEN]
 *             [--mode both|pull|push] [--dry-run] [--max-message BYTES]
 *             [--schema 1|2] [--put KEY BATTERY] [--status TEXT]
 *             [--setting KEY VALUE] [--tables TABLE,...] [--show KEY]
 *             [--quiet]
 *
 * It writes N readings (keys NAME-000001, ...), runs one session (pull,
 * then push, by default) and prints what moved and the database digest,
 * which equals the server's once both hold the same rows.  --put writes
 * one reading under KEY first (a server with a write check may refuse
 * it: the device prints the refusals from its rejection log, and holds
 * the server's version of the row again); --status gives its status
 * ("ok" by default).  --schema 2 declares the
 * upgraded schema (readings gain humidity), which a server of version 1
 * syncs with and relays.  --setting writes one setting (the server lets
 * only devices with the right write them).  --tables syncs only those
 * tables: rows of a table dropped from the selection leave the device
 * (not deleted anywhere else), a table added comes whole; rows the
 * server's row filter no longer lets through leave it the same way (exit
 * markers), and the device says how many.  --show prints one reading
 * after the session.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "demo_schema.h"

/* The network code: one blocking TCP connection per attempt, with a
 * receive timeout, under sync_retry_run.  `synctl` has the full version
 * in tools/net/ (TCP, poll loop, credentials file, retries);
 * this example keeps only what a device needs. */
typedef struct tcp_link {
  const char *addr;
  int fd;
} tcp_link;

static int64_t tcp_send(void *ctx, const void *b, size_t n) {
  ssize_t k = send(((tcp_link *)ctx)->fd, b, n, MSG_NOSIGNAL);
  return k > 0 ? (int64_t)k : SYNC_ECLOSED;
}

static int64_t tcp_recv(void *ctx, void *b, size_t n) {
  ssize_t k = recv(((tcp_link *)ctx)->fd, b, n, 0);
  if (k >= 0) return (int64_t)k;
  return errno == EAGAIN || errno == EWOULDBLOCK ? SYNC_ETIMEOUT : SYNC_EIO;
}

/* One attempt: connect, with a receive timeout so a silent server does
 * not hang the device. */
static int tcp_connect(void *ctx, sync_transport *t) {
  tcp_link *l = (tcp_link *)ctx;
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  struct timeval tv = {30, 0};
  if (demo_split_addr(l->addr, host, sizeof host, port, sizeof port))
    return SYNC_EINVAL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &ai)) return SYNC_ECLOSED;
  l->fd = -1;
  for (p = ai; p; p = p->ai_next) {
    l->fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (l->fd < 0) continue;
    if (connect(l->fd, p->ai_addr, p->ai_addrlen) == 0) break;
    close(l->fd);
    l->fd = -1;
  }
  freeaddrinfo(ai);
  if (l->fd < 0) return SYNC_ECLOSED;
  setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  {
    /* Requests are small and each waits for its answer: no Nagle delay. */
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  t->ctx = l;
  t->send = tcp_send;
  t->recv = tcp_recv;
  return 0;
}

static void tcp_close(void *ctx, sync_transport *t) {
  (void)t;
  close(((tcp_link *)ctx)->fd);
}

/* The rejection log: writes the server refused, each printed once. */
static void print_rejects(sync_env *env, const char *name) {
  sync_txn *x;
  sync_rejects *it;
  sync_reject r;
  uint64_t n = 0;
  if (sync_txn_begin(env, 0, &x)) return;
  if (sync_rejects_open(x, &it) == 0) {
    while (sync_rejects_next(it, &r) == 0)
      printf("%s: refused by the server: %.*s: %.*s (%s)\n", name,
             (int)r.key.len, (const char *)r.key.data, (int)r.text_len,
             r.text, r.reverted ? "taken back" : "kept: written again since");
    sync_rejects_close(it);
  }
  if (sync_rejects_clear(x, &n) != 0) sync_txn_abort(x);
  else (void)sync_txn_commit(x);
}

/* One reading as this device holds it (all its schema's columns). */
static void show(sync_env *env, const char *name, const char *key,
                 unsigned ncols) {
  sync_txn *x;
  sync_value v[4];
  unsigned c;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x)) return;
  if (sync_get(x, DEMO_READINGS, key, strlen(key), v, ncols) != 0) {
    printf("%s: %s: no such reading\n", name, key);
  } else {
    printf("%s: %s:", name, key);
    for (c = 0; c < ncols; c++) {
      if (v[c].type == SYNC_REAL) printf(" %g", v[c].r);
      else if (v[c].type == SYNC_INTEGER) printf(" %lld", (long long)v[c].i);
      else if (v[c].type == SYNC_TEXT)
        printf(" %.*s", (int)v[c].len, (const char *)v[c].data);
      else printf(" null");
    }
    printf("\n");
  }
  sync_txn_abort(x);
}

static int write_readings(sync_env *env, const char *name, long n,
                          unsigned ncols) {
  sync_txn *x;
  long i;
  uint64_t have = 0;
  int rc;
  if ((rc = sync_txn_begin(env, 0, &x))) return rc;
  sync_count(x, DEMO_READINGS, &have);
  for (i = 0; i < n && !rc; i++) {
    char key[96];
    sync_value v[4];
    long seq = (long)have + i + 1;
    snprintf(key, sizeof key, "%s-%06ld", name, seq);
    v[0] = sync_real(20.0 + (double)(seq % 50) / 10.0);
    v[1] = sync_int(100 - seq % 100);
    v[2] = sync_text(seq % 50 ? "ok" : "warn", seq % 50 ? 2 : 4);
    v[3] = sync_real(40.0 + (double)(seq % 20) / 2.0); /* version 2 only */
    rc = sync_put(x, DEMO_READINGS, key, strlen(key), v, ncols);
  }
  if (rc) {
    sync_txn_abort(x);
    return rc;
  }
  return sync_txn_commit(x);
}

/* The command line. */
typedef struct edge_opts {
  const char *db, *addr, *name, *token;
  const char *putkey, *showkey, *setkey, *setval, *status;
  char *tables; /* --tables, split in place */
  long nwrite, putbat;
  unsigned ncols; /* columns of readings: 3 (schema 1) or 4 (schema 2) */
  int mode, dry, quiet;
  size_t maxmsg;
} edge_opts;

/* Returns 0, or -1 for a command line it cannot read. */
static int parse_args(int argc, char **argv, edge_opts *o) {
  int i;
  memset(o, 0, sizeof *o);
  o->name = "edge";
  o->status = "ok";
  o->ncols = 3;
  o->mode = SYNC_BOTH;
  for (i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--name") && i + 1 < argc) o->name = argv[++i];
    else if (!strcmp(argv[i], "--write") && i + 1 < argc)
      o->nwrite = atol(argv[++i]);
    else if (!strcmp(argv[i], "--token") && i + 1 < argc) o->token = argv[++i];
    else if (!strcmp(argv[i], "--max-message") && i + 1 < argc)
      o->maxmsg = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      const char *m = argv[++i];
      o->mode = !strcmp(m, "pull") ? SYNC_PULL : !strcmp(m, "push") ? SYNC_PUSH
                : !strcmp(m, "both")                                 ? SYNC_BOTH
                                                                     : 0;
      if (!o->mode) return -1;
    } else if (!strcmp(argv[i], "--schema") && i + 1 < argc) {
      o->ncols = !strcmp(argv[++i], "2") ? 4 : 3;
    } else if (!strcmp(argv[i], "--put") && i + 2 < argc) {
      o->putkey = argv[++i];
      o->putbat = atol(argv[++i]);
    } else if (!strcmp(argv[i], "--status") && i + 1 < argc) {
      o->status = argv[++i];
    } else if (!strcmp(argv[i], "--setting") && i + 2 < argc) {
      o->setkey = argv[++i];
      o->setval = argv[++i];
    } else if (!strcmp(argv[i], "--tables") && i + 1 < argc) {
      o->tables = argv[++i];
    } else if (!strcmp(argv[i], "--show") && i + 1 < argc) {
      o->showkey = argv[++i];
    } else if (!strcmp(argv[i], "--dry-run")) o->dry = 1;
    else if (!strcmp(argv[i], "--quiet")) o->quiet = 1;
    else if (!o->db) o->db = argv[i];
    else if (!o->addr) o->addr = argv[i];
    else return -1;
  }
  return o->db && o->addr ? 0 : -1;
}

/* The --tables selection as a bit per table; 2 for a table the schema
 * does not have. */
static int table_bits(sync_env *env, char *tables, unsigned char *bits) {
  char *save = NULL, *t;
  memset(bits, 0, SYNC_RIGHTS_BYTES);
  if (!tables) return 0;
  for (t = strtok_r(tables, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    unsigned id;
    if (sync_env_table(env, t, &id) != 0) {
      fprintf(stderr, "sync_edge: no table '%s'\n", t);
      return 2;
    }
    bits[id >> 3] |= (unsigned char)(1u << (id & 7));
  }
  return 0;
}

/* One row written in its own transaction. */
static int put_one(sync_env *env, unsigned table, const char *key,
                   const sync_value *v, unsigned n) {
  sync_txn *x;
  int rc;
  if ((rc = sync_txn_begin(env, 0, &x))) return rc;
  rc = sync_put(x, table, key, strlen(key), v, n);
  if (rc)
    sync_txn_abort(x);
  else
    rc = sync_txn_commit(x);
  return rc;
}

/* What the device writes before it syncs: --setting, --put, --write.
 * Returns 0, or the exit status. */
static int write_local(sync_env *env, const edge_opts *o) {
  int rc;
  if (o->setkey) {
    sync_value v = sync_text(o->setval, strlen(o->setval));
    if ((rc = put_one(env, DEMO_SETTINGS, o->setkey, &v, 1))) {
      fprintf(stderr, "sync_edge: writing %s: %s\n", o->setkey,
              sync_strerror(rc));
      return 1;
    }
  }
  if (o->putkey) {
    sync_value v[4];
    v[0] = sync_real(21.0);
    v[1] = sync_int(o->putbat);
    v[2] = sync_text(o->status, strlen(o->status));
    v[3] = sync_real(50.0);
    if ((rc = put_one(env, DEMO_READINGS, o->putkey, v, o->ncols))) {
      fprintf(stderr, "sync_edge: writing %s: %s\n", o->putkey,
              sync_strerror(rc));
      return 1;
    }
    if (!o->quiet)
      printf("%s: wrote %s with battery %ld, status %s\n", o->name, o->putkey,
             o->putbat, o->status);
  }
  if (o->nwrite > 0 &&
      (rc = write_readings(env, o->name, o->nwrite, o->ncols))) {
    fprintf(stderr, "sync_edge: writing readings: %s\n", sync_strerror(rc));
    return 1;
  }
  if (!o->quiet && o->nwrite > 0)
    printf("%s: recorded %ld readings\n", o->name, o->nwrite);
  return 0;
}

/* One session with the server, retried with backoff (sync_retry_run
 * calls tcp_connect and tcp_close around each attempt). */
static int sync_with_server(sync_env *env, const edge_opts *o,
                            const unsigned char *tbits, sync_session_stats *st,
                            sync_retry_stats *rs) {
  sync_session_opts so;
  sync_retry_opts ro;
  sync_retry *r;
  tcp_link l;
  int rc;
  memset(&so, 0, sizeof so);
  so.mode = o->mode;
  so.dry_run = o->dry;
  so.level = 3;
  so.max_message = o->maxmsg;
  so.tables = o->tables ? tbits : NULL;
  so.credential = o->token;
  so.credential_len = o->token ? strlen(o->token) : 0;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 6;
  ro.base_delay_ms = 100;
  ro.max_delay_ms = 2000;
  l.addr = o->addr;
  l.fd = -1;
  if ((rc = sync_retry_create(NULL, &ro, &r))) return rc;
  memset(st, 0, sizeof *st);
  rc = sync_retry_run(r, env, &so, tcp_connect, tcp_close, &l, st);
  sync_retry_stats_get(r, rs);
  sync_retry_free(r);
  if (rc)
    fprintf(stderr, "%s: sync with %s failed after %llu attempts: %s\n",
            o->name, o->addr, (unsigned long long)rs->attempts,
            sync_strerror(rc));
  return rc;
}

/* What moved, what the server refused, and the digest. */
static void report(sync_env *env, const edge_opts *o,
                   const sync_session_stats *st, const sync_retry_stats *rs) {
  const char *name = o->name;
  sync_txn *x;
  uint64_t dg = 0, n = 0, ns = 0;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) == 0) {
    sync_digest(x, SYNC_ALL_TABLES, &dg);
    sync_count(x, DEMO_READINGS, &n);
    sync_count(x, DEMO_SETTINGS, &ns);
    sync_txn_abort(x);
  }
  printf(
      "%s: %s%s: got %llu rows, sent %llu rows (%llu bytes in, %llu "
      "out)%s\n",
      name, o->dry ? "dry run against " : "synced with ", o->addr,
      (unsigned long long)st->rows_received, (unsigned long long)st->rows_sent,
      (unsigned long long)st->bytes_received,
      (unsigned long long)st->bytes_sent, rs->retries ? ", after retries" : "");
  if (o->dry)
    printf("%s: would insert %llu and update %llu here, insert %llu and "
           "update %llu there\n",
           name, (unsigned long long)st->applied.inserted,
           (unsigned long long)st->applied.updated,
           (unsigned long long)st->peer_applied.inserted,
           (unsigned long long)st->peer_applied.updated);
  if (st->peer_applied.refused)
    printf("%s: the server refused %llu rows (outside this device's "
           "rights or its write check)\n",
           name, (unsigned long long)st->peer_applied.refused);
  if (st->applied.exited)
    printf("%s: %llu rows left this device's share and were removed here "
           "(exit markers; not deleted anywhere else)\n",
           name, (unsigned long long)st->applied.exited);
  print_rejects(env, name);
  if (o->showkey) show(env, name, o->showkey, o->ncols);
  if (ns || o->tables)
    printf("%s: %llu settings\n", name, (unsigned long long)ns);
  printf("%s: %llu readings, digest %016llx\n", name, (unsigned long long)n,
         (unsigned long long)dg);
}

int main(int argc, char **argv) {
  edge_opts o;
  unsigned char tbits[SYNC_RIGHTS_BYTES];
  sync_env *env = NULL;
  sync_session_stats st;
  sync_retry_stats rs;
  int rc;
  if (parse_args(argc, argv, &o)) {
    fprintf(stderr, "usage: sync_edge DB HOST:PORT [--name NAME] [--write N] "
                    "[--token TOKEN] [--mode both|pull|push] [--dry-run] "
                    "[--max-message BYTES] [--schema 1|2] "
                    "[--put KEY BATTERY] [--status TEXT] "
                    "[--setting KEY VALUE] [--tables TABLE,...] [--show KEY] "
                    "[--quiet]\n");
    return 2;
  }
  if ((rc = sync_env_create(NULL, &env)) ||
      (rc = sync_env_set_schema(
           env, o.ncols == 4 ? demo_tables_v2 : demo_tables, 2)) ||
      (rc = sync_env_open(env, o.db, 0))) {
    fprintf(stderr, "sync_edge: cannot open %s: %s %s\n", o.db,
            sync_strerror(rc), env ? sync_env_errmsg(env) : "");
    sync_env_close(env);
    return 1;
  }
  rc = table_bits(env, o.tables, tbits);
  if (!rc) rc = write_local(env, &o);
  if (!rc && sync_with_server(env, &o, tbits, &st, &rs)) rc = 1;
  if (!rc && !o.quiet) report(env, &o, &st, &rs);
  sync_env_close(env);
  return rc;
}
