/*
 * tls.h - TLS for sync's programs (OpenSSL), beside tcp.c and loop.c:
 * a context holding a certificate and what it trusts, a blocking link
 * for sync_retry_run (synctl sync), and TLS on a connection of the poll
 * loop (synctl serve, and its mesh peering), non-blocking like the rest.
 *
 * The session protocol runs unchanged inside the TLS channel: TLS adds
 * privacy, the server's identity (its certificate checked against a CA
 * file and the host name dialled) and, when the server asks for one, an
 * admission check of the client's certificate.  The token of the
 * handshake stays what the credentials file judges (SECURITY.md, "TLS").
 *
 * Functions that fail return -1 with the reason in err; none prints.
 */
#ifndef SYNC_NET_TLS_H
#define SYNC_NET_TLS_H

#include "tools/net/net.h"

typedef struct net_tls net_tls;

/* What a side of TLS holds.  Server: cert and key (required); client_ca:
 * require a client certificate signed by one of its CAs.  Client: ca (the
 * CAs that sign servers' certificates; required), and cert and key when
 * the server asks for a client certificate. */
typedef struct net_tls_opts {
  const char *cert, *key; /* PEM files */
  const char *ca;         /* client: the CAs to verify the server with */
  const char *client_ca;  /* server: require clients signed by these */
} net_tls_opts;

/* A server (server 1) or client (0) context from o.  0, or -1 with
 * "cannot read FILE: ...", "FILE: the key does not match the
 * certificate" and the like in err. */
int net_tls_create(const net_tls_opts *o, int server, net_tls **out,
                   char *err, size_t errcap);
void net_tls_free(net_tls *t); /* NULL is fine */

/* The OpenSSL SSL_CTX of client context t, for a library that makes
 * its own TLS connections with it (libmosquitto's MOSQ_OPT_SSL_CTX):
 * from now on a peer's certificate must also name name (a DNS name or
 * an IP address), and why a check failed is kept for
 * net_tls_verify_err.  t keeps owning the SSL_CTX (a library that holds
 * on to it takes a reference of its own).  One connection at a time:
 * the reason is the context's. */
void *net_tls_ssl_ctx(net_tls *t, const char *name);
/* Why the last certificate check on net_tls_ssl_ctx's context failed:
 * 1 with "certificate verify failed: REASON" in err (and forgotten), or
 * 0 when none failed since the last call. */
int net_tls_verify_err(net_tls *t, char *err, size_t errcap);

/* TLS on the loop's connection c (its socket connected): the server side
 * of the handshake (host NULL), or the client side verifying that the
 * peer's certificate names host.  The handshake runs within c's first
 * reads and writes.  0, or -1 (no memory). */
int net_tls_conn(net_tls *t, net_conn *c, const char *host);
/* Why c's TLS failed ("" when it did not). */
const char *net_tls_conn_err(const net_conn *c);
/* The subject of the certificate c's peer showed ("" when none). */
const char *net_tls_conn_subject(const net_conn *c);

/* A blocking TLS connection to tcp.addr for sync_retry_run
 * (net_tls_connect, net_tls_disconnect, the link as ctx), the server's
 * certificate checked against the context's CAs and name (NULL: the
 * host of tcp.addr).  When the handshake or a later read fails, err
 * says why ("certificate verify failed: ...", "the server refused the
 * connection: ..."). */
typedef struct net_tls_link {
  net_link tcp;
  net_tls *tls;
  const char *name;
  void *ssl;
  int got; /* the server has sent something */
  char err[300];
} net_tls_link;
int net_tls_connect(void *l, sync_transport *t);
void net_tls_disconnect(void *l, sync_transport *t);

#endif
