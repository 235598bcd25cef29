/*
 * tcp.c - TCP for sync's programs: HOST:PORT addresses, dialling,
 * listening and accepting, and the sync_transport over a blocking socket
 * that sync_session_run and sync_retry_run drive.
 */
#include "tools/net/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* The port text of an address: decimal digits, 0 to 65535.  Checked here
 * because getaddrinfo takes the number modulo 65536 (99999 listened on
 * 34463) and would take a service name as well. */
static int port_ok(const char *p) {
  unsigned long v = 0;
  if (!*p) return 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    v = v * 10 + (unsigned long)(*p - '0');
    if (v > 65535) return 0;
  }
  return 1;
}

int net_addr_check(const char *addr, char *err, size_t errcap) {
  const char *colon = addr ? strrchr(addr, ':') : NULL;
  const char *p;
  if (!colon || colon == addr || !colon[1]) {
    snprintf(err, errcap, "malformed address '%s': it must be HOST:PORT",
             addr ? addr : "");
    return -1;
  }
  for (p = colon + 1; *p; p++)
    if (*p < '0' || *p > '9') {
      snprintf(err, errcap,
               "malformed address '%s': the port must be a number (0 to "
               "65535)",
               addr);
      return -1;
    }
  if (!port_ok(colon + 1)) {
    snprintf(err, errcap,
             "malformed address '%s': port %s is not in 0 to 65535", addr,
             colon + 1);
    return -1;
  }
  if (addr[0] == '[' && colon[-1] != ']') {
    snprintf(err, errcap, "malformed address '%s': it must be [V6]:PORT",
             addr);
    return -1;
  }
  return 0;
}

int net_split_addr(const char *addr, char *host, size_t hcap, char *port,
                   size_t pcap) {
  const char *colon = addr ? strrchr(addr, ':') : NULL;
  size_t hl;
  if (!colon || colon == addr || !port_ok(colon + 1)) return -1;
  hl = (size_t)(colon - addr);
  if (addr[0] == '[' && hl > 2 && addr[hl - 1] == ']')
    addr++, hl -= 2; /* [::1]:port */
  if (hl >= hcap || strlen(colon + 1) >= pcap) return -1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  snprintf(port, pcap, "%s", colon + 1);
  return 0;
}

void net_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void net_nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* The addresses HOST:PORT names, for a connection, into *ai (the caller
 * frees them).  0, or -1 with errno and the words in err. */
static int net_resolve(const char *addr, struct addrinfo **ai, char *err,
                       size_t errcap) {
  char host[256], port[32];
  struct addrinfo hints;
  int rc;
  err[0] = 0;
  if (net_addr_check(addr, err, errcap) ||
      net_split_addr(addr, host, sizeof host, port, sizeof port)) {
    if (!err[0]) snprintf(err, errcap, "malformed address '%s'", addr);
    errno = EINVAL;
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if ((rc = getaddrinfo(host, port, &hints, ai))) {
    snprintf(err, errcap, "cannot resolve %s: %s", host,
             rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    errno = EHOSTUNREACH;
    return -1;
  }
  return 0;
}

int net_dial_err(const char *addr, int timeout_s, char *err, size_t errcap) {
  char dummy[8];
  struct addrinfo *ai, *p;
  struct timeval tv;
  int fd = -1, refused = 1, e = 0;
  if (!err) err = dummy, errcap = sizeof dummy;
  if (net_resolve(addr, &ai, err, errcap)) return -1;
  for (p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) {
      e = errno, refused = 0;
      continue;
    }
    if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) break;
    e = errno;
    if (e != ECONNREFUSED) refused = 0;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    if (refused && e)
      snprintf(err, errcap, "connection refused by %s", addr);
    else
      snprintf(err, errcap, "cannot connect to %s: %s", addr, strerror(e));
    errno = e;
    return -1;
  }
  if (timeout_s > 0) {
    tv.tv_sec = timeout_s;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  net_nodelay(fd);
  return fd;
}

int net_dial_start(const char *addr, char *err, size_t errcap) {
  struct addrinfo *ai, *p;
  int fd = -1, e = 0;
  if (net_resolve(addr, &ai, err, errcap)) return -1;
  /* The first address only: trying the next needs the outcome of this
   * one, which a caller that must not wait learns later. */
  for (p = ai; p && fd < 0; p = p->ai_next) {
    if ((fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol)) < 0) {
      e = errno;
      continue;
    }
    net_nonblock(fd);
    if (connect(fd, p->ai_addr, p->ai_addrlen) && errno != EINPROGRESS) {
      e = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    snprintf(err, errcap, "cannot connect to %s: %s", addr, strerror(e));
    errno = e;
    return -1;
  }
  net_nodelay(fd);
  return fd;
}

int net_dial(const char *addr, int timeout_s) {
  return net_dial_err(addr, timeout_s, NULL, 0);
}

/* The port fd is bound to. */
static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char ph[64], pp[16];
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  getnameinfo((struct sockaddr *)&ss, sl, ph, sizeof ph, pp, sizeof pp,
              NI_NUMERICHOST | NI_NUMERICSERV);
  return atoi(pp);
}

int net_listen(const char *addr, int *port_out, char *err, size_t errcap) {
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  int fd = -1, one = 1, rc;
  if (net_addr_check(addr, err, errcap)) return -1;
  if (net_split_addr(addr, host, sizeof host, port, sizeof port)) {
    snprintf(err, errcap, "malformed address '%s': the host is too long",
             addr);
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if ((rc = getaddrinfo(host, port, &hints, &ai))) {
    snprintf(err, errcap, "%s: %s", addr, gai_strerror(rc));
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
    snprintf(err, errcap, "cannot listen on %s: %s", addr, strerror(errno));
    return -1;
  }
  *port_out = bound_port(fd);
  return fd;
}

int net_accept(int lfd) {
  int fd = accept(lfd, NULL, NULL);
  if (fd >= 0) net_nodelay(fd);
  return fd;
}

/* ---------------------------------------------------------------------
 * A transport for sync_session_run and sync_retry_run
 * ------------------------------------------------------------------- */
static int64_t fd_send(void *ctx, const void *b, size_t n) {
  for (;;) {
    ssize_t k = send(*(int *)ctx, b, n, MSG_NOSIGNAL);
    if (k > 0) return (int64_t)k;
    if (k < 0 && errno == EINTR) continue;
    return SYNC_ECLOSED;
  }
}

static int64_t fd_recv(void *ctx, void *b, size_t n) {
  for (;;) {
    ssize_t k = recv(*(int *)ctx, b, n, 0);
    if (k >= 0) return (int64_t)k;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? SYNC_ETIMEOUT : SYNC_EIO;
  }
}

void net_transport(int *fd, sync_transport *t) {
  t->ctx = fd;
  t->send = fd_send;
  t->recv = fd_recv;
}

int net_connect(void *ctx, sync_transport *t) {
  net_link *l = (net_link *)ctx;
  if ((l->fd = net_dial_err(l->addr, l->timeout_s, l->err, sizeof l->err)) <
      0)
    return SYNC_ECLOSED;
  net_transport(&l->fd, t);
  return 0;
}

void net_disconnect(void *ctx, sync_transport *t) {
  net_link *l = (net_link *)ctx;
  (void)t;
  close(l->fd);
  l->fd = -1;
}
