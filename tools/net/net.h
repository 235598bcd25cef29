/*
 * net.h - the POSIX network side of sync's programs, outside the library
 * (which is sans-IO and holds no socket): synctl, the bench and the tests
 * that talk over sockets share it.  Not API: sync.h is the only public
 * header.  The examples stay standalone and carry short copies.
 *
 *   tcp.c    addresses, dial, listen, accept, and a sync_transport over a
 *            blocking socket (for sync_session_run and sync_retry_run)
 *   loop.c   a poll loop over listening sockets and connections; the
 *            non-blocking step that moves what it can between a session
 *            and its socket
 *   creds.c  the credentials file of a server: each token's rights,
 *            bound site and row filter
 *
 * Functions that fail return -1 with errno set, unless they say
 * otherwise; none prints.
 */
#ifndef SYNC_NET_H
#define SYNC_NET_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "sync.h"

/* ---------------------------------------------------------------------
 * TCP (tcp.c)
 * ------------------------------------------------------------------- */
/* Whether addr is HOST:PORT (or [V6]:PORT) with a decimal port of 0 to
 * 65535.  0, or -1 with the reason in err ("malformed address 'x': ..."). */
int net_addr_check(const char *addr, char *err, size_t errcap);
/* HOST:PORT (or [V6]:PORT) into host and port.  0, or -1 when addr is not
 * one (net_addr_check says why) or does not fit. */
int net_split_addr(const char *addr, char *host, size_t hcap, char *port,
                   size_t pcap);
/* A socket connected to addr, with TCP_NODELAY and a receive timeout of
 * timeout_s seconds (0: none). */
int net_dial(const char *addr, int timeout_s);
/* net_dial, and when it fails the reason in err (err may be NULL):
 * "malformed address 'x': ...", "cannot resolve HOST: ...", "connection
 * refused by HOST:PORT" or "cannot connect to HOST:PORT: ...". */
int net_dial_err(const char *addr, int timeout_s, char *err, size_t errcap);
/* A non-blocking socket whose connection to addr is under way (for a
 * poll loop that must not wait on a far host): POLLOUT says when it is
 * made, a read or write error that it failed.  -1 with the reason in
 * err when no attempt could start (a malformed address, a name that
 * does not resolve). */
int net_dial_start(const char *addr, char *err, size_t errcap);
/* A blocking socket listening on addr (port 0: any free one), and the
 * port it got.  -1 with the reason in err (as "address must be
 * HOST:PORT, not 'x'", "x: Name or service not known" or "cannot listen
 * on x: ..."). */
int net_listen(const char *addr, int *port_out, char *err, size_t errcap);
/* The next connection on lfd, with TCP_NODELAY. */
int net_accept(int lfd);
void net_nodelay(int fd);
void net_nonblock(int fd);

/* A transport over the blocking socket *fd: send and recv retry when a
 * signal interrupts them; a receive timeout is SYNC_ETIMEOUT, a peer that
 * closed SYNC_ECLOSED. */
void net_transport(int *fd, sync_transport *t);

/* A connection to addr for sync_retry_run (net_connect as its connect,
 * net_disconnect as its close, the link as ctx) or for one
 * sync_session_run. */
typedef struct net_link {
  const char *addr;
  int timeout_s; /* the receive timeout; 0: none */
  int fd;
  char err[256]; /* why the last dial failed (net_dial_err's words) */
} net_link;
/* Dial l->addr and set t over it: 0, or SYNC_ECLOSED. */
int net_connect(void *l, sync_transport *t);
void net_disconnect(void *l, sync_transport *t);

/* ---------------------------------------------------------------------
 * The poll loop (loop.c)
 * ------------------------------------------------------------------- */
#define NET_MAX_CONN 256
#define NET_MAX_LISTEN 4

/* A connection of the loop: a sync session over a non-blocking socket, or
 * another protocol its owner drives (user). */
typedef struct net_conn {
  int fd;       /* -1: a free slot */
  int listener; /* the index of the listener it came in on */
  sync_session *s;
  unsigned char out[16384]; /* what the session gave and the socket has
                               not taken yet */
  size_t olen, ooff;
  void *user;
  time_t last;   /* when it last moved */
  double opened; /* when it was accepted (net_mono_seconds) */
  /* A layer between the session and the socket (TLS, tls.c): read and
   * write as on the non-blocking socket (-1 with errno EAGAIN when they
   * must wait; io_wants then holds the poll events they wait for, which
   * may be the other direction's), and io_free when c closes.  NULL: the
   * socket itself. */
  ssize_t (*io_read)(struct net_conn *c, void *buf, size_t n);
  ssize_t (*io_write)(struct net_conn *c, const void *buf, size_t n);
  void (*io_free)(struct net_conn *c);
  void *io;
  short io_wants;
} net_conn;

/* Move what can move between c->s and its non-blocking socket: read what
 * revents says has come, then write until the socket is full or the
 * session has nothing more.  A socket that fails aborts the session
 * (SYNC_ECLOSED). */
void net_conn_step(net_conn *c, short revents);
/* The poll events c's session waits for. */
short net_conn_events(const net_conn *c);
/* Take fd, a socket connected to a server, into a free slot of l with
 * the client session s (l owns both from now on; listener
 * NET_OUTGOING).  The slot, or NULL when the loop is full (fd and s are
 * then the caller's). */
#define NET_OUTGOING NET_MAX_LISTEN
struct net_loop;
net_conn *net_loop_add(struct net_loop *l, int fd, sync_session *s);

/* What the owner of a loop does with its connections.  ctx is theirs. */
typedef struct net_loop_ops {
  void *ctx;
  /* c->fd is new on listener c->listener: make c->s (a session) or set
   * c->user.  Nonzero: c is closed. */
  int (*open)(void *ctx, net_conn *c);
  /* For a connection without a session: the poll events it waits for,
   * and its turn after each poll (revents 0: nothing came).  Nonzero
   * from step: it is finished and closed. */
  short (*events)(void *ctx, const net_conn *c);
  int (*step)(void *ctx, net_conn *c, short revents);
  /* c's session is over (and its output written, or the loop stops). */
  void (*ended)(void *ctx, net_conn *c);
  /* c closes: free c->user (may be NULL). */
  void (*close)(void *ctx, net_conn *c);
  /* Called before each poll, at least once a second (may be NULL): the
   * place to act on what a signal handler flagged. */
  void (*tick)(void *ctx);
} net_loop_ops;

typedef struct net_loop {
  const net_loop_ops *ops;
  int lfd[NET_MAX_LISTEN], nlisten;
  int idle_seconds; /* a session silent this long is aborted */
  net_conn conns[NET_MAX_CONN];
} net_loop;

void net_loop_init(net_loop *l, const net_loop_ops *ops, int idle_seconds);
/* Add listening socket lfd (made non-blocking); its index, or -1 when the
 * loop has NET_MAX_LISTEN. */
int net_loop_listen(net_loop *l, int lfd);
/* Accept (each connection with TCP_NODELAY) and serve until *stop is
 * set, or until max_sessions sessions (< 0: any number) have ended.  0,
 * or -1 when poll failed (errno). */
int net_loop_run(net_loop *l, volatile sig_atomic_t *stop, long max_sessions);
/* End every connection (a running session as closed, told to ended) and
 * close the listeners. */
void net_loop_stop(net_loop *l);
/* Seconds on a monotonic clock, for durations and ages. */
double net_mono_seconds(void);

/* ---------------------------------------------------------------------
 * Credentials (creds.c)
 * ------------------------------------------------------------------- */
#define NET_MAX_CRED 64

/* One line of the file: TOKEN [read=TABLES] [write=TABLES] [relay]
 * [site=HEX32] [where=COLUMN=VALUE] [name=NAME]. */
typedef struct net_cred {
  char token[128];
  sync_rights rights;
  int bound; /* site= given: only that replica may use the token */
  uint8_t site[16];
  /* where=COLUMN=VALUE: the peer's scope is the rows whose column of that
   * name holds VALUE (as an integer when it reads as one); tables
   * without such a column pass whole */
  char wcol[64], wval[128];
  int where;
  char name[64]; /* name=: the device, for logs ("" when not given) */
} net_cred;

typedef struct net_creds {
  sync_env *env;
  /* How the parser says what is wrong (a line, no newline), and finds a
   * table by name (saying so when there is none: -1).  Set both. */
  void (*say)(const char *fmt, ...);
  int (*table)(sync_env *env, const char *where, const char *name,
               unsigned *id);
  /* Told when a bound token comes from another site (may be NULL). */
  void (*refused)(void *ctx, const uint8_t site[16], const uint8_t bound[16]);
  void *refused_ctx;
  net_cred c[NET_MAX_CRED];
  int n;
  uint64_t fver; /* the filter version: a hash of every where= */
  struct {
    uint8_t site[16];
    int cred;            /* -1: one a reload removed */
  } peers[NET_MAX_CONN]; /* which credential each peer last showed */
  unsigned npeers, next_peer;
} net_creds;

/* One line of a credentials file into cr (ctx); where ("FILE:LINE")
 * starts its messages.  0 (a credential, a comment or a blank line), or
 * -1 (said).  Fits a line reader's callback. */
int net_creds_line(void *cr, char *line, const char *where);
/* Take the credentials of from (a file read again) into cr, keeping the
 * peers cr has seen: a peer whose token is gone is filtered to nothing
 * from now on (its running session keeps the rights HELLO gave it). */
void net_creds_replace(net_creds *cr, const net_creds *from);
/* The name= of the credential site last showed, or NULL (none shown,
 * none named, or removed). */
const char *net_creds_name(const net_creds *cr, const uint8_t site[16]);
/* A server's session options as synctl serves: zstd level 3 and, with
 * cr, the rights and rows of its credentials (NULL: every right). */
void net_creds_server_opts(net_creds *cr, sync_session_opts *so);
/* A sync_authorize_fn (ctx: the net_creds): the rights of the token,
 * SYNC_EPERM for an unknown one or one bound to another site. */
int net_creds_authorize(void *cr, const uint8_t site[16], const void *token,
                        size_t len, sync_rights *rights);
/* A sync_row_filter_fn (ctx: the net_creds): a peer whose credential has
 * where=COLUMN=VALUE sees the rows holding VALUE in COLUMN. */
int net_creds_filter(void *cr, const uint8_t peer[16], unsigned table,
                     const void *key, size_t klen, const sync_value *vals,
                     unsigned nvals);

#endif
