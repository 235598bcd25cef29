/*
 * link.c - a slow link for the bench: a TCP proxy on loopback that holds
 * every byte it forwards for a fixed delay in each direction, as a
 * cellular or satellite link would (bandwidth is not limited: only the
 * round trip).  It serves one connection in a thread of its own and ends
 * when both sides have closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "tools/net/net.h"

/* Bytes read at one moment, due at the other side at `due`. */
typedef struct link_seg {
  struct link_seg *next;
  double due;
  size_t len, off;
  unsigned char data[];
} link_seg;

/* One direction: bytes from `from` wait in the queue, then go to `to`. */
typedef struct link_dir {
  int from, to;
  link_seg *head, *tail;
  int eof, shut;
} link_dir;

struct bench_link {
  pthread_t thread;
  int lfd;
  double delay;
  char target[64];
};

static void link_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Read what `from` has and queue it; 0 at end of stream. */
static void link_read(link_dir *d, double now, double delay) {
  unsigned char buf[65536];
  ssize_t n = read(d->from, buf, sizeof buf);
  link_seg *s;
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    d->eof = 1;
    return;
  }
  s = malloc(sizeof *s + (size_t)n);
  if (!s) bench_die("link: out of memory");
  s->next = NULL;
  s->due = now + delay;
  s->len = (size_t)n;
  s->off = 0;
  memcpy(s->data, buf, (size_t)n);
  if (d->tail)
    d->tail->next = s;
  else
    d->head = s;
  d->tail = s;
}

/* Write what is due; stops at a full socket. */
static void link_write(link_dir *d, double now) {
  while (d->head && d->head->due <= now) {
    link_seg *s = d->head;
    ssize_t n = write(d->to, s->data + s->off, s->len - s->off);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      d->eof = 1; /* the other side is gone: drop what is left */
      n = (ssize_t)(s->len - s->off);
    }
    s->off += (size_t)n;
    if (s->off < s->len) return;
    d->head = s->next;
    if (!d->head) d->tail = NULL;
    free(s);
  }
  if (d->eof && !d->head && !d->shut) {
    shutdown(d->to, SHUT_WR);
    d->shut = 1;
  }
}

/* Milliseconds until the first queued segment of d is due (-1: none, or
 * due already and waiting for room in the socket). */
static int link_wait_ms(const link_dir *d, double now) {
  double ms;
  if (!d->head || d->head->due <= now) return -1; /* POLLOUT wakes us */
  ms = (d->head->due - now) * 1000.0;
  return ms <= 0 ? 0 : (int)ms + 1;
}

static void *link_main(void *arg) {
  bench_link *l = arg;
  link_dir dir[2];
  int a = net_accept(l->lfd), b, i;
  if (a < 0) bench_die("link: accept: %s", strerror(errno));
  if ((b = net_dial(l->target, 0)) < 0)
    bench_die("link: connect %s: %s", l->target, strerror(errno));
  link_nonblock(a);
  link_nonblock(b);
  memset(dir, 0, sizeof dir);
  dir[0].from = a, dir[0].to = b;
  dir[1].from = b, dir[1].to = a;
  while (!(dir[0].shut && dir[1].shut)) {
    struct pollfd pf[2];
    double now = bench_now();
    int wait = -1;
    for (i = 0; i < 2; i++) {
      int w;
      link_write(&dir[i], now);
      w = link_wait_ms(&dir[i], now);
      if (w >= 0 && (wait < 0 || w < wait)) wait = w;
    }
    for (i = 0; i < 2; i++) {
      pf[i].fd = dir[i].from;
      pf[i].events = dir[i].eof ? 0 : POLLIN;
      /* A segment due but not taken by a full socket: wait for room. */
      if (dir[1 - i].head && dir[1 - i].head->due <= now)
        pf[i].events |= POLLOUT;
      pf[i].revents = 0;
    }
    if (poll(pf, 2, wait) < 0 && errno != EINTR)
      bench_die("link: poll: %s", strerror(errno));
    now = bench_now();
    for (i = 0; i < 2; i++)
      if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) link_read(&dir[i], now, l->delay);
  }
  close(a);
  close(b);
  return NULL;
}

bench_link *bench_link_start(const char *target, int one_way_ms,
                             char *addr, size_t cap) {
  bench_link *l = calloc(1, sizeof *l);
  char err[256];
  int port;
  if (!l) bench_die("link: out of memory");
  l->delay = one_way_ms / 1000.0;
  snprintf(l->target, sizeof l->target, "%s", target);
  l->lfd = net_listen("127.0.0.1:0", &port, err, sizeof err);
  if (l->lfd < 0) bench_die("link: loopback socket: %s", err);
  snprintf(addr, cap, "127.0.0.1:%d", port);
  if (pthread_create(&l->thread, NULL, link_main, l))
    bench_die("link: cannot start its thread");
  return l;
}

void bench_link_stop(bench_link *l) {
  pthread_join(l->thread, NULL);
  close(l->lfd);
  free(l);
}
