/*
 * TCP for synctl: addresses, dialling and listening, the port files serve
 * writes, the blocking transport sync and repair run sessions over, and
 * the HTTP GET that fetches a server's metrics for 'synctl stats'.
 */
#include "synctl.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int ctl_is_address(const char *s) {
  const char *c = strrchr(s, ':');
  if (!c || c == s || !c[1] || ctl_file_exists(s)) return 0;
  for (c++; *c; c++)
    if (*c < '0' || *c > '9') return 0;
  return 1;
}

static int split_addr(const char *addr, char *host, size_t hcap, char *port,
                      size_t pcap) {
  const char *colon = addr ? strrchr(addr, ':') : NULL;
  size_t hl;
  if (!colon || colon == addr || !colon[1]) return -1;
  hl = (size_t)(colon - addr);
  if (addr[0] == '[' && hl > 2 && addr[hl - 1] == ']')
    addr++, hl -= 2; /* [::1]:port */
  if (hl >= hcap || strlen(colon + 1) >= pcap) return -1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  snprintf(port, pcap, "%s", colon + 1);
  return 0;
}

int ctl_tcp_dial(const char *addr, int timeout_s) {
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  struct timeval tv;
  int fd = -1, one = 1;
  if (split_addr(addr, host, sizeof host, port, sizeof port)) {
    errno = EINVAL;
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &ai)) {
    errno = EHOSTUNREACH;
    return -1;
  }
  for (p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) return -1;
  tv.tv_sec = timeout_s;
  tv.tv_usec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int ctl_tcp_listen(const char *addr, int *port_out) {
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  int fd = -1, one = 1, rc;
  if (split_addr(addr, host, sizeof host, port, sizeof port)) {
    ctl_say("address must be HOST:PORT, not '%s'", addr);
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if ((rc = getaddrinfo(host, port, &hints, &ai))) {
    ctl_say("%s: %s", addr, gai_strerror(rc));
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
    ctl_say("cannot listen on %s: %s", addr, strerror(errno));
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

int ctl_write_port(const char *file, int port) {
  FILE *f;
  char tmp[4096];
  if (!file) return 0;
  /* Written whole, then renamed: a reader never sees half a number. */
  snprintf(tmp, sizeof tmp, "%s.tmp", file);
  f = fopen(tmp, "w");
  if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmp, file)) {
    ctl_say("cannot write %s: %s", file, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * A transport for sync_session_run and sync_retry_run
 * ------------------------------------------------------------------- */
static int64_t tcp_send(void *ctx, const void *b, size_t n) {
  ssize_t k = send(((ctl_tcp_link *)ctx)->fd, b, n, MSG_NOSIGNAL);
  return k > 0 ? (int64_t)k : SYNC_ECLOSED;
}

static int64_t tcp_recv(void *ctx, void *b, size_t n) {
  ssize_t k = recv(((ctl_tcp_link *)ctx)->fd, b, n, 0);
  if (k >= 0) return (int64_t)k;
  return errno == EAGAIN || errno == EWOULDBLOCK ? SYNC_ETIMEOUT : SYNC_EIO;
}

int ctl_tcp_connect(void *ctx, sync_transport *t) {
  ctl_tcp_link *l = (ctl_tcp_link *)ctx;
  if ((l->fd = ctl_tcp_dial(l->addr, 30)) < 0) return SYNC_ECLOSED;
  t->ctx = l;
  t->send = tcp_send;
  t->recv = tcp_recv;
  return 0;
}

void ctl_tcp_close(void *ctx, sync_transport *t) {
  (void)t;
  close(((ctl_tcp_link *)ctx)->fd);
}

/* ---------------------------------------------------------------------
 * Metrics of a running server (synctl stats HOST:PORT)
 * ------------------------------------------------------------------- */
int ctl_stats_remote(const char *addr) {
  int fd = ctl_tcp_dial(addr, 10);
  char req[] = "GET /metrics HTTP/1.0\r\nAccept: text/plain\r\n\r\n";
  char buf[8192], *all = NULL, *body;
  size_t len = 0;
  ssize_t k;
  if (fd < 0) {
    ctl_say("%s: cannot connect: %s", addr, strerror(errno));
    return EX_FAIL;
  }
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    ctl_say("%s: %s", addr, strerror(errno));
    close(fd);
    return EX_FAIL;
  }
  while ((k = read(fd, buf, sizeof buf)) > 0) {
    char *n = (char *)realloc(all, len + (size_t)k + 1);
    if (!n) break;
    all = n;
    memcpy(all + len, buf, (size_t)k);
    len += (size_t)k;
    all[len] = 0;
  }
  close(fd);
  if (!all || strncmp(all, "HTTP/1.", 7) || !(body = strstr(all, "\r\n\r\n"))) {
    ctl_say("%s: not an HTTP metrics endpoint", addr);
    free(all);
    return EX_FAIL;
  }
  if (strncmp(all + 8, " 200", 4)) {
    ctl_say("%s: the server answered %.*s", addr, (int)strcspn(all, "\r\n"),
            all);
    free(all);
    return EX_FAIL;
  }
  fputs(body + 4, stdout);
  free(all);
  return EX_OK;
}
