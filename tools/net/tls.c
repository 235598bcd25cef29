/*
 * tls.c - TLS for sync's programs, through OpenSSL: contexts (also
 * handed to libmosquitto, for MQTT over TLS), the layer a loop
 * connection reads and writes through (non-blocking; the handshake runs
 * inside the first reads and writes), and a blocking link for
 * sync_retry_run.  See tls.h for what TLS adds and what it does not.
 */
#include "tools/net/tls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

struct net_tls {
  SSL_CTX *ctx;
  int server;
  int has_cert;   /* a certificate of its own to show */
  char verr[200]; /* net_tls_ssl_ctx: why a certificate check failed */
};

/* The reason OpenSSL queued last, or fallback; the queue is emptied. */
static void ssl_reason(char *err, size_t cap, const char *fallback) {
  unsigned long e, last = 0;
  while ((e = ERR_get_error())) last = e;
  if (last)
    snprintf(err, cap, "%s", ERR_reason_error_string(last)
                                 ? ERR_reason_error_string(last)
                                 : "TLS error");
  else
    snprintf(err, cap, "%s", fallback);
}

/* Load cert and key into ctx.  0, or -1 (err says which file). */
static int load_pair(SSL_CTX *ctx, const char *cert, const char *key,
                     char *err, size_t cap) {
  char why[200];
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    ssl_reason(why, sizeof why, "unreadable");
    snprintf(err, cap, "cannot read the certificate %s: %s", cert, why);
    return -1;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    ssl_reason(why, sizeof why, "unreadable");
    snprintf(err, cap, "cannot read the key %s: %s", key, why);
    return -1;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    snprintf(err, cap, "%s: the key does not match the certificate %s", key,
             cert);
    return -1;
  }
  return 0;
}

static int load_ca(SSL_CTX *ctx, const char *ca, char *err, size_t cap) {
  char why[200];
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    ssl_reason(why, sizeof why, "unreadable");
    snprintf(err, cap, "cannot read the CA file %s: %s", ca, why);
    return -1;
  }
  return 0;
}

int net_tls_create(const net_tls_opts *o, int server, net_tls **out,
                   char *err, size_t errcap) {
  net_tls *t = (net_tls *)calloc(1, sizeof *t);
  SSL_CTX *ctx;
  *out = NULL;
  if (!t) {
    snprintf(err, errcap, "out of memory");
    return -1;
  }
  ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  t->ctx = ctx;
  t->server = server;
  if (!ctx) {
    snprintf(err, errcap, "cannot make a TLS context");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* A peer that closes its socket after the session's last message is
   * not an attack on a protocol that has its own end. */
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (server && (!o->cert || !o->key)) {
    snprintf(err, errcap, "a TLS server needs a certificate and its key");
    goto fail;
  }
  if (!server && !o->ca) {
    snprintf(err, errcap, "a TLS client needs the CA file that signs the "
                          "server's certificate");
    goto fail;
  }
  if ((o->cert || o->key) && (!o->cert || !o->key)) {
    snprintf(err, errcap, "a certificate needs its key, and a key its "
                          "certificate");
    goto fail;
  }
  if (o->cert && load_pair(ctx, o->cert, o->key, err, errcap)) goto fail;
  t->has_cert = o->cert != NULL;
  if (!server) {
    if (load_ca(ctx, o->ca, err, errcap)) goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  } else if (o->client_ca) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
    if (load_ca(ctx, o->client_ca, err, errcap)) goto fail;
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  *out = t;
  return 0;
fail:
  net_tls_free(t);
  return -1;
}

void net_tls_free(net_tls *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  free(t);
}

/* Why a handshake or a read on ssl failed, in words for a person: the
 * certificate check's own reason when that was it. */
static void tls_fail(SSL *ssl, int rc, char *err, size_t cap) {
  int e = SSL_get_error(ssl, rc);
  long v = SSL_get_verify_result(ssl);
  char why[200];
  if (v != X509_V_OK) {
    ERR_clear_error();
    snprintf(err, cap, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
    return;
  }
  if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
    snprintf(err, cap, "the connection closed during TLS%s%s",
             errno ? ": " : "", errno ? strerror(errno) : "");
    return;
  }
  ssl_reason(why, sizeof why, "TLS error");
  snprintf(err, cap, "%s", why);
}

/* Whether name is an IP address, which certificates list apart from DNS
 * names. */
static int is_ip(const char *name) {
  unsigned char a[16];
  return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* The name the peer's certificate must carry: a DNS name (sent as SNI
 * too), or an IP address. */
static void set_peer_name(SSL *ssl, const char *name) {
  if (is_ip(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
    return;
  }
  SSL_set_tlsext_host_name(ssl, name);
  SSL_set1_host(ssl, name);
}

/* ---------------------------------------------------------------------
 * A context for a library that makes its own connections
 * ------------------------------------------------------------------- */
/* OpenSSL's verify callback: ok as OpenSSL judged, and when it failed
 * the reason kept in the context's net_tls, since the library that
 * runs the handshake says only "certificate verify failed". */
static int verify_note(int ok, X509_STORE_CTX *x) {
  SSL *ssl = (SSL *)X509_STORE_CTX_get_ex_data(
      x, SSL_get_ex_data_X509_STORE_CTX_idx());
  net_tls *t =
      ssl ? (net_tls *)SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
  if (!ok && t)
    snprintf(t->verr, sizeof t->verr, "certificate verify failed: %s",
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
  return ok;
}

void *net_tls_ssl_ctx(net_tls *t, const char *name) {
  X509_VERIFY_PARAM *p = SSL_CTX_get0_param(t->ctx);
  if (is_ip(name))
    X509_VERIFY_PARAM_set1_ip_asc(p, name);
  else
    X509_VERIFY_PARAM_set1_host(p, name, 0);
  SSL_CTX_set_app_data(t->ctx, t);
  SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_note);
  t->verr[0] = 0;
  return t->ctx;
}

int net_tls_verify_err(net_tls *t, char *err, size_t errcap) {
  if (!t || !t->verr[0]) return 0;
  snprintf(err, errcap, "%s", t->verr);
  t->verr[0] = 0;
  return 1;
}

/* ---------------------------------------------------------------------
 * A connection of the poll loop
 * ------------------------------------------------------------------- */
typedef struct tls_conn {
  SSL *ssl;
  char err[300];
  char subject[256];
} tls_conn;

/* After SSL_read or SSL_write returned rc <= 0: -1 with errno EAGAIN
 * (and the poll events it waits for in io_wants) when it must wait,
 * else -1 with errno EPROTO (or 0 for a clean close), the reason kept. */
static ssize_t tls_wait(net_conn *c, int rc) {
  tls_conn *tc = (tls_conn *)c->io;
  int e = SSL_get_error(tc->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    c->io_wants = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  if (!tc->err[0]) tls_fail(tc->ssl, rc, tc->err, sizeof tc->err);
  errno = EPROTO;
  return -1;
}

/* The peer's certificate subject, once the handshake is through. */
static void tls_note_subject(tls_conn *tc) {
  X509 *x;
  if (tc->subject[0] || !SSL_is_init_finished(tc->ssl)) return;
  if ((x = SSL_get1_peer_certificate(tc->ssl))) {
    X509_NAME_oneline(X509_get_subject_name(x), tc->subject,
                      sizeof tc->subject);
    X509_free(x);
  }
}

static ssize_t tls_read(net_conn *c, void *buf, size_t n) {
  tls_conn *tc = (tls_conn *)c->io;
  int rc;
  c->io_wants = 0;
  ERR_clear_error();
  rc = SSL_read(tc->ssl, buf, (int)(n > 1 << 30 ? 1 << 30 : n));
  tls_note_subject(tc);
  return rc > 0 ? (ssize_t)rc : tls_wait(c, rc);
}

static ssize_t tls_write(net_conn *c, const void *buf, size_t n) {
  tls_conn *tc = (tls_conn *)c->io;
  int rc;
  c->io_wants = 0;
  ERR_clear_error();
  rc = SSL_write(tc->ssl, buf, (int)(n > 1 << 30 ? 1 << 30 : n));
  tls_note_subject(tc);
  return rc > 0 ? (ssize_t)rc : tls_wait(c, rc);
}

static void tls_conn_free(net_conn *c) {
  tls_conn *tc = (tls_conn *)c->io;
  if (!tc) return;
  if (SSL_is_init_finished(tc->ssl)) SSL_shutdown(tc->ssl); /* one try */
  SSL_free(tc->ssl);
  free(tc);
  c->io = NULL;
}

int net_tls_conn(net_tls *t, net_conn *c, const char *host) {
  tls_conn *tc = (tls_conn *)calloc(1, sizeof *tc);
  if (!tc || !(tc->ssl = SSL_new(t->ctx))) {
    free(tc);
    return -1;
  }
  SSL_set_fd(tc->ssl, c->fd);
  if (host) {
    set_peer_name(tc->ssl, host);
    SSL_set_connect_state(tc->ssl);
  } else {
    SSL_set_accept_state(tc->ssl);
  }
  c->io = tc;
  c->io_read = tls_read;
  c->io_write = tls_write;
  c->io_free = tls_conn_free;
  return 0;
}

const char *net_tls_conn_err(const net_conn *c) {
  return c->io && c->io_read == tls_read ? ((tls_conn *)c->io)->err : "";
}

const char *net_tls_conn_subject(const net_conn *c) {
  return c->io && c->io_read == tls_read ? ((tls_conn *)c->io)->subject : "";
}

/* ---------------------------------------------------------------------
 * A blocking link for sync_retry_run
 * ------------------------------------------------------------------- */
/* Cut before the server said a word: with TLS 1.3 a server that refuses
 * the client's certificate (or its lack of one) may reset the connection
 * before its alert is read, so that is the likely cause. */
static int cut_early(net_tls_link *l) {
  if (l->got || l->err[0]) return 0;
  snprintf(l->err, sizeof l->err,
           "the server closed the connection before the session began (%s): "
           "%s (see its log)",
           errno ? strerror(errno) : "end of file",
           l->tls->has_cert ? "it may not accept this client's certificate"
                            : "it may require a client certificate");
  return 1;
}

static int64_t link_send(void *ctx, const void *b, size_t n) {
  net_tls_link *l = (net_tls_link *)ctx;
  int rc;
  ERR_clear_error();
  rc = SSL_write((SSL *)l->ssl, b, (int)(n > 1 << 30 ? 1 << 30 : n));
  if (rc > 0) return rc;
  if (SSL_get_error((SSL *)l->ssl, rc) != SSL_ERROR_SYSCALL || !cut_early(l))
    if (!l->err[0]) tls_fail((SSL *)l->ssl, rc, l->err, sizeof l->err);
  return SYNC_ECLOSED;
}

static int64_t link_recv(void *ctx, void *b, size_t n) {
  net_tls_link *l = (net_tls_link *)ctx;
  int rc, e;
  ERR_clear_error();
  rc = SSL_read((SSL *)l->ssl, b, (int)(n > 1 << 30 ? 1 << 30 : n));
  if (rc > 0) {
    l->got = 1;
    return rc;
  }
  e = SSL_get_error((SSL *)l->ssl, rc);
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  /* SO_RCVTIMEO ran out */
  if (e == SSL_ERROR_WANT_READ ||
      (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)))
    return SYNC_ETIMEOUT;
  if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
    cut_early(l);
    return 0; /* closed */
  }
  /* An alert from the server: with TLS 1.3 a refused client certificate
   * is only heard of here, after the client's side of the handshake. */
  if (!l->err[0]) {
    char why[200];
    tls_fail((SSL *)l->ssl, rc, why, sizeof why);
    snprintf(l->err, sizeof l->err, "the server refused the connection: %s",
             why);
  }
  return SYNC_EPERM; /* not transient: no retry */
}

int net_tls_connect(void *ctx, sync_transport *t) {
  net_tls_link *l = (net_tls_link *)ctx;
  char host[256], port[32];
  const char *name = l->name;
  SSL *ssl;
  int rc;
  l->err[0] = 0;
  l->got = 0;
  if (net_connect(&l->tcp, t)) {
    snprintf(l->err, sizeof l->err, "%s", l->tcp.err);
    return SYNC_ECLOSED;
  }
  if (!name && net_split_addr(l->tcp.addr, host, sizeof host, port,
                              sizeof port) == 0)
    name = host;
  if (!(ssl = SSL_new(l->tls->ctx))) {
    snprintf(l->err, sizeof l->err, "out of memory");
    net_disconnect(&l->tcp, t);
    return SYNC_ENOMEM;
  }
  SSL_set_fd(ssl, l->tcp.fd);
  if (name) set_peer_name(ssl, name);
  ERR_clear_error();
  if ((rc = SSL_connect(ssl)) != 1) {
    char why[200];
    /* A refused certificate is not transient (no retry); a connection
     * cut in the handshake may be. */
    int perm = SSL_get_error(ssl, rc) == SSL_ERROR_SSL;
    tls_fail(ssl, rc, why, sizeof why);
    snprintf(l->err, sizeof l->err, "TLS with %s failed: %s", l->tcp.addr,
             why);
    SSL_free(ssl);
    net_disconnect(&l->tcp, t);
    return perm ? SYNC_EPERM : SYNC_ECLOSED;
  }
  l->ssl = ssl;
  t->ctx = l;
  t->send = link_send;
  t->recv = link_recv;
  return 0;
}

void net_tls_disconnect(void *ctx, sync_transport *t) {
  net_tls_link *l = (net_tls_link *)ctx;
  if (l->ssl) {
    SSL_shutdown((SSL *)l->ssl);
    SSL_free((SSL *)l->ssl);
    l->ssl = NULL;
  }
  net_disconnect(&l->tcp, t);
}
