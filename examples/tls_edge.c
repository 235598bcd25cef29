/*
 * tls_edge.c - an edge device that syncs over TLS through mbedTLS, the
 * TLS library firmware uses: it checks the server's certificate against
 * the CA it was given and the server's name, then runs the same session
 * as sync_edge inside the channel.  It syncs with 'synctl serve
 * --tls-cert ... --tls-key ...' (OpenSSL on the server side).
 *
 *   tls_edge DB HOST:PORT --ca FILE [--cert FILE --key FILE]
 *            [--server-name NAME] [--name NAME] [--write N] [--token T]
 *
 * It writes N readings (keys NAME-000001, ...), syncs once (both ways)
 * and prints what moved and the digest, which equals the server's once
 * both hold the same rows.  --server-name is the name the server's
 * certificate must carry (default: HOST); --cert and --key give a client
 * certificate for a server that requires one.  A certificate that does
 * not check out ends the run before anything is sent.
 *
 * On a board the socket calls would be the board's (lwIP and the like):
 * mbedtls_ssl_set_bio takes any send and receive functions.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "demo_schema.h"

/* What every connection shares: the trusted CA, this device's own
 * certificate if any, and the random generator. */
typedef struct tls_conf {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca, own;
  mbedtls_pk_context key;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
} tls_conf;

/* One connection: the socket and the TLS state over it. */
typedef struct tls_link {
  tls_conf *tc;
  const char *addr, *server_name;
  mbedtls_net_context net;
  mbedtls_ssl_context ssl;
  int open;
  char err[256]; /* why the last attempt failed */
} tls_link;

static void tls_strerror(int rc, char *buf, size_t cap) {
  mbedtls_strerror(rc, buf, cap);
}

/* The shared configuration: a client that requires the server's
 * certificate to check out.  0, or -1 (said). */
static int conf_init(tls_conf *t, const char *ca, const char *cert,
                     const char *key) {
  static const char pers[] = "sync tls_edge";
  char why[160];
  int rc;
  mbedtls_ssl_config_init(&t->conf);
  mbedtls_x509_crt_init(&t->ca);
  mbedtls_x509_crt_init(&t->own);
  mbedtls_pk_init(&t->key);
  mbedtls_entropy_init(&t->entropy);
  mbedtls_ctr_drbg_init(&t->drbg);
  if ((rc = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
                                  (const unsigned char *)pers,
                                  sizeof pers - 1))) {
    tls_strerror(rc, why, sizeof why);
    fprintf(stderr, "tls_edge: random generator: %s\n", why);
    return -1;
  }
  if ((rc = mbedtls_x509_crt_parse_file(&t->ca, ca))) {
    tls_strerror(rc, why, sizeof why);
    fprintf(stderr, "tls_edge: cannot read the CA file %s: %s\n", ca, why);
    return -1;
  }
  if ((rc = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
                                        MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT)))
    return -1;
  mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
  mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
  /* A silent server must not hang the device: 30 s per read. */
  mbedtls_ssl_conf_read_timeout(&t->conf, 30000);
  if (cert) {
    if ((rc = mbedtls_x509_crt_parse_file(&t->own, cert)) ||
        (rc = mbedtls_pk_parse_keyfile(&t->key, key, NULL)) ||
        (rc = mbedtls_ssl_conf_own_cert(&t->conf, &t->own, &t->key))) {
      tls_strerror(rc, why, sizeof why);
      fprintf(stderr, "tls_edge: cannot use %s and %s: %s\n", cert, key, why);
      return -1;
    }
  }
  return 0;
}

static void conf_free(tls_conf *t) {
  mbedtls_ssl_config_free(&t->conf);
  mbedtls_x509_crt_free(&t->ca);
  mbedtls_x509_crt_free(&t->own);
  mbedtls_pk_free(&t->key);
  mbedtls_ctr_drbg_free(&t->drbg);
  mbedtls_entropy_free(&t->entropy);
}

static int64_t tls_send(void *ctx, const void *b, size_t n) {
  tls_link *l = (tls_link *)ctx;
  int k;
  do
    k = mbedtls_ssl_write(&l->ssl, (const unsigned char *)b, n);
  while (k == MBEDTLS_ERR_SSL_WANT_READ || k == MBEDTLS_ERR_SSL_WANT_WRITE);
  return k > 0 ? (int64_t)k : SYNC_ECLOSED;
}

static int64_t tls_recv(void *ctx, void *b, size_t n) {
  tls_link *l = (tls_link *)ctx;
  int k;
  do
    k = mbedtls_ssl_read(&l->ssl, (unsigned char *)b, n);
  while (k == MBEDTLS_ERR_SSL_WANT_READ || k == MBEDTLS_ERR_SSL_WANT_WRITE);
  if (k >= 0) return (int64_t)k;
  if (k == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return 0;
  if (k == MBEDTLS_ERR_SSL_TIMEOUT) return SYNC_ETIMEOUT;
  return SYNC_EIO;
}

static void tls_close(void *ctx, sync_transport *t) {
  tls_link *l = (tls_link *)ctx;
  (void)t;
  if (!l->open) return;
  mbedtls_ssl_close_notify(&l->ssl);
  mbedtls_ssl_free(&l->ssl);
  mbedtls_net_free(&l->net);
  l->open = 0;
}

/* One attempt: connect, then the handshake, which checks the server's
 * certificate against the CA and the name.  A certificate that fails is
 * SYNC_EPERM, which ends the retries: trying again will not mend it. */
static int tls_connect(void *ctx, sync_transport *t) {
  tls_link *l = (tls_link *)ctx;
  char host[256], port[32], why[160];
  int rc;
  if (demo_split_addr(l->addr, host, sizeof host, port, sizeof port))
    return SYNC_EINVAL;
  mbedtls_net_init(&l->net);
  mbedtls_ssl_init(&l->ssl);
  l->open = 1;
  if ((rc = mbedtls_net_connect(&l->net, host, port, MBEDTLS_NET_PROTO_TCP))) {
    tls_strerror(rc, why, sizeof why);
    snprintf(l->err, sizeof l->err, "cannot connect to %s: %s", l->addr, why);
    tls_close(l, t);
    return SYNC_ECLOSED;
  }
  if ((rc = mbedtls_ssl_setup(&l->ssl, &l->tc->conf)) ||
      (rc = mbedtls_ssl_set_hostname(
           &l->ssl, l->server_name ? l->server_name : host))) {
    tls_close(l, t);
    return SYNC_ENOMEM;
  }
  mbedtls_ssl_set_bio(&l->ssl, &l->net, mbedtls_net_send, mbedtls_net_recv,
                      mbedtls_net_recv_timeout);
  do
    rc = mbedtls_ssl_handshake(&l->ssl);
  while (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE);
  if (rc) {
    uint32_t flags = mbedtls_ssl_get_verify_result(&l->ssl);
    if (flags && flags != (uint32_t)-1) {
      mbedtls_x509_crt_verify_info(why, sizeof why, "", flags);
      why[strcspn(why, "\n")] = 0;
      snprintf(l->err, sizeof l->err,
               "the server's certificate does not check out: %s", why);
    } else {
      tls_strerror(rc, why, sizeof why);
      snprintf(l->err, sizeof l->err, "TLS handshake failed: %s", why);
    }
    tls_close(l, t);
    return SYNC_EPERM;
  }
  t->ctx = l;
  t->send = tls_send;
  t->recv = tls_recv;
  return 0;
}

/* n readings, keys NAME-000001 on from what the device holds. */
static int write_readings(sync_env *env, const char *name, long n) {
  sync_txn *x;
  uint64_t have = 0;
  long i;
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
    v[2] = sync_text("ok", 2);
    rc = sync_put(x, DEMO_READINGS, key, strlen(key), v, 3);
  }
  if (rc) {
    sync_txn_abort(x);
    return rc;
  }
  return sync_txn_commit(x);
}

typedef struct edge_opts {
  const char *db, *addr, *ca, *cert, *key, *server_name, *name, *token;
  long nwrite;
} edge_opts;

static int parse_args(int argc, char **argv, edge_opts *o) {
  int i;
  memset(o, 0, sizeof *o);
  o->name = "tls-edge";
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--ca") && v) o->ca = v, i++;
    else if (!strcmp(a, "--cert") && v) o->cert = v, i++;
    else if (!strcmp(a, "--key") && v) o->key = v, i++;
    else if (!strcmp(a, "--server-name") && v) o->server_name = v, i++;
    else if (!strcmp(a, "--name") && v) o->name = v, i++;
    else if (!strcmp(a, "--token") && v) o->token = v, i++;
    else if (!strcmp(a, "--write") && v) o->nwrite = atol(v), i++;
    else if (a[0] == '-') return -1;
    else if (!o->db) o->db = a;
    else if (!o->addr) o->addr = a;
    else return -1;
  }
  if (!o->db || !o->addr || !o->ca || !o->cert != !o->key) return -1;
  return 0;
}

/* One session, retried with backoff while the link fails. */
static int sync_over_tls(sync_env *env, const edge_opts *o, tls_link *l,
                         sync_session_stats *st) {
  sync_session_opts so;
  sync_retry_opts ro;
  sync_retry *r;
  int rc;
  memset(&so, 0, sizeof so);
  so.mode = SYNC_BOTH;
  so.level = 3;
  so.credential = o->token;
  so.credential_len = o->token ? strlen(o->token) : 0;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 4;
  ro.base_delay_ms = 100;
  ro.max_delay_ms = 1000;
  if ((rc = sync_retry_create(NULL, &ro, &r))) return rc;
  memset(st, 0, sizeof *st);
  rc = sync_retry_run(r, env, &so, tls_connect, tls_close, l, st);
  sync_retry_free(r);
  return rc;
}

int main(int argc, char **argv) {
  edge_opts o;
  tls_conf tc;
  tls_link l;
  sync_env *env = NULL;
  sync_session_stats st;
  sync_txn *x;
  uint64_t dg = 0, n = 0;
  int rc;
  if (parse_args(argc, argv, &o)) {
    fprintf(stderr, "usage: tls_edge DB HOST:PORT --ca FILE [--cert FILE "
                    "--key FILE] [--server-name NAME] [--name NAME] "
                    "[--write N] [--token T]\n");
    return 2;
  }
  if (conf_init(&tc, o.ca, o.cert, o.key)) {
    conf_free(&tc);
    return 1;
  }
  if ((rc = sync_env_create(NULL, &env)) ||
      (rc = sync_env_set_schema(env, demo_tables, 2)) ||
      (rc = sync_env_open(env, o.db, 0)) ||
      (rc = write_readings(env, o.name, o.nwrite))) {
    fprintf(stderr, "tls_edge: %s: %s\n", o.db, sync_strerror(rc));
    sync_env_close(env);
    conf_free(&tc);
    return 1;
  }
  memset(&l, 0, sizeof l);
  l.tc = &tc;
  l.addr = o.addr;
  l.server_name = o.server_name;
  rc = sync_over_tls(env, &o, &l, &st);
  if (rc) {
    fprintf(stderr, "%s: sync with %s over TLS failed: %s\n", o.name, o.addr,
            l.err[0] ? l.err : sync_strerror(rc));
  } else if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) == 0) {
    sync_digest(x, SYNC_ALL_TABLES, &dg);
    sync_count(x, DEMO_READINGS, &n);
    sync_txn_abort(x);
    printf("%s: synced with %s over TLS (mbedTLS): got %llu rows, sent %llu "
           "rows\n%s: %llu readings, digest %016llx\n",
           o.name, o.addr, (unsigned long long)st.rows_received,
           (unsigned long long)st.rows_sent, o.name, (unsigned long long)n,
           (unsigned long long)dg);
  }
  sync_env_close(env);
  conf_free(&tc);
  return rc ? 1 : 0;
}
