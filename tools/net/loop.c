/*
 * loop.c - one poll loop over listening sockets and their connections,
 * for a server of many peers at once.  A sync session is sans-IO: the
 * loop feeds it from its non-blocking socket (net_conn_step) and writes
 * what it gives; connections of other protocols (a metrics endpoint) are
 * their owner's to step.
 */
#include "tools/net/net.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static ssize_t conn_read(net_conn *c, void *buf, size_t n) {
  return c->io_read ? c->io_read(c, buf, n) : read(c->fd, buf, n);
}

static ssize_t conn_write(net_conn *c, const void *buf, size_t n) {
  return c->io_write ? c->io_write(c, buf, n) : write(c->fd, buf, n);
}

void net_conn_step(net_conn *c, short revents) {
  /* A layer (TLS) may hold bytes the socket no longer signals, or wait
   * on the other direction: it is read until it has nothing more. */
  while (c->io_read || (revents & (POLLIN | POLLHUP | POLLERR))) {
    unsigned char buf[16384];
    ssize_t k = conn_read(c, buf, sizeof buf);
    if (k > 0) {
      sync_inbuf in = {buf, (size_t)k, 0};
      sync_session_recv(c->s, &in);
      if (c->io_read && sync_session_status(c->s) == 0) continue;
    } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
      sync_session_abort(c->s, SYNC_ECLOSED);
    }
    break;
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
    k = conn_write(c, c->out + c->ooff, c->olen - c->ooff);
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

short net_conn_events(const net_conn *c) {
  return (short)(c->io_wants | (sync_session_want_read(c->s) ? POLLIN : 0) |
                 (c->olen > c->ooff || sync_session_want_write(c->s) ? POLLOUT
                                                                     : 0));
}

void net_loop_init(net_loop *l, const net_loop_ops *ops, int idle_seconds) {
  int i;
  memset(l, 0, sizeof *l);
  l->ops = ops;
  l->idle_seconds = idle_seconds;
  for (i = 0; i < NET_MAX_CONN; i++) l->conns[i].fd = -1;
}

int net_loop_listen(net_loop *l, int lfd) {
  if (l->nlisten == NET_MAX_LISTEN) return -1;
  net_nonblock(lfd);
  l->lfd[l->nlisten] = lfd;
  return l->nlisten++;
}

static void conn_close(net_loop *l, net_conn *c) {
  if (c->io_free) c->io_free(c);
  if (c->s) sync_session_free(c->s);
  if (l->ops->close) l->ops->close(l->ops->ctx, c);
  close(c->fd);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

/* The descriptors to wait on: the listeners first (idx -1 - their
 * index), then each connection (idx its slot).  Returns how many. */
static int loop_pollset(net_loop *l, struct pollfd *pf, int *idx) {
  int i, n = 0;
  for (i = 0; i < l->nlisten; i++)
    pf[n].fd = l->lfd[i], pf[n].events = POLLIN, idx[n++] = -1 - i;
  for (i = 0; i < NET_MAX_CONN; i++) {
    net_conn *c = &l->conns[i];
    if (c->fd < 0) continue;
    pf[n].fd = c->fd;
    pf[n].events = c->s ? net_conn_events(c) : l->ops->events(l->ops->ctx, c);
    idx[n++] = i;
  }
  return n;
}

/* A connection waiting on listener li, into a free slot (closed when
 * there is none: the peer retries later). */
static void loop_accept(net_loop *l, int li) {
  int fd = accept(l->lfd[li], NULL, NULL), i;
  net_conn *c;
  if (fd < 0) return;
  /* Sessions wait for answers, and TLS can use no byte of a record
   * before all of it came: Nagle's algorithm would hold back the tail
   * of each burst until the peer acknowledged what went before (on
   * loopback, whose MSS is 64 KiB, every 16 KiB TLS record is a small
   * segment). */
  net_nodelay(fd);
  for (i = 0; i < NET_MAX_CONN && l->conns[i].fd >= 0; i++) {
  }
  if (i == NET_MAX_CONN) {
    close(fd); /* full: the peer retries later */
    return;
  }
  c = &l->conns[i];
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->listener = li;
  c->opened = net_mono_seconds();
  if (l->ops->open(l->ops->ctx, c)) {
    conn_close(l, c);
    return;
  }
  net_nonblock(fd);
  c->last = time(NULL);
}

net_conn *net_loop_add(net_loop *l, int fd, sync_session *s) {
  int i;
  net_conn *c;
  for (i = 0; i < NET_MAX_CONN && l->conns[i].fd >= 0; i++) {
  }
  if (i == NET_MAX_CONN) return NULL;
  c = &l->conns[i];
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->listener = NET_OUTGOING;
  c->s = s;
  c->opened = net_mono_seconds();
  c->last = time(NULL);
  net_nonblock(fd);
  return c;
}

double net_mono_seconds(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts)) return 0;
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One connection's turn after poll.  Returns 1 when a session ended. */
static int loop_conn(net_loop *l, net_conn *c, short revents) {
  if (c->fd < 0) return 0;
  if (!c->s) {
    if (l->ops->step(l->ops->ctx, c, revents))
      conn_close(l, c);
    else if (revents)
      c->last = time(NULL);
    return 0;
  }
  net_conn_step(c, revents);
  if (revents)
    c->last = time(NULL);
  else if (time(NULL) - c->last > l->idle_seconds) {
    sync_session_abort(c->s, SYNC_ETIMEOUT);
    c->ooff = c->olen;
  }
  if (sync_session_status(c->s) != 0 && c->ooff == c->olen) {
    l->ops->ended(l->ops->ctx, c);
    conn_close(l, c);
    return 1;
  }
  return 0;
}

int net_loop_run(net_loop *l, volatile sig_atomic_t *stop, long max_sessions) {
  long ended = 0;
  while (!*stop && (max_sessions < 0 || ended < max_sessions)) {
    struct pollfd pf[NET_MAX_CONN + NET_MAX_LISTEN];
    int idx[NET_MAX_CONN + NET_MAX_LISTEN], n, k;
    if (l->ops->tick) l->ops->tick(l->ops->ctx);
    n = loop_pollset(l, pf, idx);
    if (poll(pf, (nfds_t)n, 1000) < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    for (k = 0; k < n && idx[k] < 0; k++)
      if (pf[k].revents & POLLIN) loop_accept(l, -1 - idx[k]);
    for (; k < n; k++) ended += loop_conn(l, &l->conns[idx[k]], pf[k].revents);
  }
  return 0;
}

void net_loop_stop(net_loop *l) {
  int i;
  for (i = 0; i < NET_MAX_CONN; i++) {
    net_conn *c = &l->conns[i];
    if (c->fd < 0) continue;
    if (c->s) {
      sync_session_abort(c->s, SYNC_ECLOSED);
      l->ops->ended(l->ops->ctx, c);
    }
    conn_close(l, c);
  }
  for (i = 0; i < l->nlisten; i++) close(l->lfd[i]);
  l->nlisten = 0;
}
