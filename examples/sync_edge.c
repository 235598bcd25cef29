/*
 * sync_edge.c - an edge device: records readings in its own database and
 * syncs them with a server over TCP, retrying with backoff when the tcp_link
 * fails.
 *
 *   sync_edge DB HOST:PORT [--name NAME] [--write N] [--token TOKEN]
 *             [--mode both|pull|push] [--dry-run] [--max-message BYTES]
 *             [--quiet]
 *
 * It writes N readings (keys NAME-000001, ...), runs one session (pull,
 * then push, by default) and prints what moved and the database digest,
 * which equals the server's once both hold the same rows.
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

static int write_readings(sync_env *env, const char *name, long n) {
  sync_txn *x;
  long i;
  uint64_t have = 0;
  int rc;
  if ((rc = sync_txn_begin(env, 0, &x))) return rc;
  sync_count(x, DEMO_READINGS, &have);
  for (i = 0; i < n && !rc; i++) {
    char key[96];
    sync_value v[3];
    long seq = (long)have + i + 1;
    snprintf(key, sizeof key, "%s-%06ld", name, seq);
    v[0] = sync_real(20.0 + (double)(seq % 50) / 10.0);
    v[1] = sync_int(100 - seq % 100);
    v[2] = sync_text(seq % 50 ? "ok" : "warn", seq % 50 ? 2 : 4);
    rc = sync_put(x, DEMO_READINGS, key, strlen(key), v, 3);
  }
  if (rc) {
    sync_txn_abort(x);
    return rc;
  }
  return sync_txn_commit(x);
}

int main(int argc, char **argv) {
  const char *db = NULL, *addr = NULL, *name = "edge", *token = NULL;
  long nwrite = 0;
  int mode = SYNC_BOTH, dry = 0, quiet = 0, rc, i;
  size_t maxmsg = 0;
  sync_env *env = NULL;
  sync_session_opts so;
  sync_session_stats st;
  sync_retry_opts ro;
  sync_retry *r;
  sync_retry_stats rs;
  tcp_link l;
  for (i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
    else if (!strcmp(argv[i], "--write") && i + 1 < argc) nwrite = atol(argv[++i]);
    else if (!strcmp(argv[i], "--token") && i + 1 < argc) token = argv[++i];
    else if (!strcmp(argv[i], "--max-message") && i + 1 < argc)
      maxmsg = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      const char *m = argv[++i];
      mode = !strcmp(m, "pull") ? SYNC_PULL : !strcmp(m, "push") ? SYNC_PUSH
             : !strcmp(m, "both")                                 ? SYNC_BOTH
                                                                  : 0;
      if (!mode) db = NULL, i = argc;
    } else if (!strcmp(argv[i], "--dry-run")) dry = 1;
    else if (!strcmp(argv[i], "--quiet")) quiet = 1;
    else if (!db) db = argv[i];
    else if (!addr) addr = argv[i];
    else db = NULL, i = argc;
  }
  if (!db || !addr) {
    fprintf(stderr, "usage: sync_edge DB HOST:PORT [--name NAME] [--write N] "
                    "[--token TOKEN] [--mode both|pull|push] [--dry-run] "
                    "[--max-message BYTES] [--quiet]\n");
    return 2;
  }
  if ((rc = sync_env_create(NULL, &env)) ||
      (rc = sync_env_set_schema(env, demo_tables, 2)) ||
      (rc = sync_env_open(env, db, 0))) {
    fprintf(stderr, "sync_edge: cannot open %s: %s %s\n", db, sync_strerror(rc),
            env ? sync_env_errmsg(env) : "");
    sync_env_close(env);
    return 1;
  }
  if (nwrite > 0 && (rc = write_readings(env, name, nwrite))) {
    fprintf(stderr, "sync_edge: writing readings: %s\n", sync_strerror(rc));
    sync_env_close(env);
    return 1;
  }
  if (!quiet && nwrite > 0) printf("%s: recorded %ld readings\n", name, nwrite);
  memset(&so, 0, sizeof so);
  so.mode = mode;
  so.dry_run = dry;
  so.level = 3;
  so.max_message = maxmsg;
  so.credential = token;
  so.credential_len = token ? strlen(token) : 0;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 6;
  ro.base_delay_ms = 100;
  ro.max_delay_ms = 2000;
  l.addr = addr;
  l.fd = -1;
  if ((rc = sync_retry_create(NULL, &ro, &r))) return 1;
  memset(&st, 0, sizeof st);
  rc = sync_retry_run(r, env, &so, tcp_connect, tcp_close, &l, &st);
  sync_retry_stats_get(r, &rs);
  sync_retry_free(r);
  if (rc) {
    fprintf(stderr, "%s: sync with %s failed after %llu attempts: %s\n", name,
            addr, (unsigned long long)rs.attempts, sync_strerror(rc));
    sync_env_close(env);
    return 1;
  }
  {
    sync_txn *x;
    uint64_t dg = 0, n = 0;
    if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) == 0) {
      sync_digest(x, SYNC_ALL_TABLES, &dg);
      sync_count(x, DEMO_READINGS, &n);
      sync_txn_abort(x);
    }
    if (!quiet) {
      printf("%s: %s%s: got %llu rows, sent %llu rows (%llu bytes in, %llu "
             "out)%s\n",
             name, dry ? "dry run against " : "synced with ", addr,
             (unsigned long long)st.rows_received,
             (unsigned long long)st.rows_sent,
             (unsigned long long)st.bytes_received,
             (unsigned long long)st.bytes_sent,
             rs.retries ? ", after retries" : "");
      if (dry)
        printf("%s: would insert %llu and update %llu here, insert %llu and "
               "update %llu there\n",
               name, (unsigned long long)st.applied.inserted,
               (unsigned long long)st.applied.updated,
               (unsigned long long)st.peer_applied.inserted,
               (unsigned long long)st.peer_applied.updated);
      if (st.peer_applied.refused)
        printf("%s: the server refused %llu rows (outside this device's "
               "rights)\n",
               name, (unsigned long long)st.peer_applied.refused);
      printf("%s: %llu readings, digest %016llx\n", name, (unsigned long long)n,
             (unsigned long long)dg);
    }
  }
  sync_env_close(env);
  return 0;
}
