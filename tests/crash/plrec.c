/*
 * plrec.c - LD_PRELOAD recorder for the power-loss simulation
 * (powerloss.c).  It wraps the calls through which LMDB changes its data
 * file and appends what they did to a log, so that the file can later be
 * rebuilt as it would be after a power cut at any point.
 *
 * Environment: PL_TARGET is the database path exactly as the program
 * opens it; PL_LOG the log to write.  Only descriptors opened on
 * PL_TARGET are recorded (LMDB's lock file is not data).
 *
 * Records (native endianness, the reader is the same machine): a header
 * {u32 type, u32 flags, u64 off, u64 len} and, for writes, the len bytes
 * written.  Types:
 *   'W'  write that reached the page cache (pwrite, write, writev, ...)
 *   'D'  write on a descriptor opened with O_DSYNC/O_SYNC: durable when
 *        the call returned (LMDB writes its meta page this way in
 *        SYNC_DURABLE_FULL mode)
 *   'S'  fsync or fdatasync of the file: every earlier write is durable
 *   'T'  ftruncate to off
 *   'X'  msync: LMDB only uses it with MDB_WRITEMAP, which sync never
 *        sets; the replay refuses a log that has one, since writes
 *        through a writable map are invisible here
 *   'M'  marker from the workload (pl_mark): commit number off acknowledged
 *   'Y'  marker: sync_env_sync() returned 0 after commit off
 * Only writes that succeeded are recorded, with the bytes the call says
 * it wrote.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PL_MAXFD 1024

typedef struct pl_hdr {
  uint32_t type, flags;
  uint64_t off, len;
} pl_hdr;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static int (*real_ftruncate)(int, off_t);

/* Per descriptor: 0 not the target, 1 target, 2 target opened O_DSYNC. */
static unsigned char pl_fd_kind[PL_MAXFD];
static int pl_log = -1;
static const char *pl_target;

#define PL_RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void pl_init(void) {
  const char *log = getenv("PL_LOG");
  PL_RESOLVE(open);
  PL_RESOLVE(open64);
  PL_RESOLVE(close);
  PL_RESOLVE(pwrite);
  PL_RESOLVE(pwrite64);
  PL_RESOLVE(write);
  PL_RESOLVE(writev);
  PL_RESOLVE(pwritev);
  PL_RESOLVE(fsync);
  PL_RESOLVE(fdatasync);
  PL_RESOLVE(msync);
  PL_RESOLVE(ftruncate);
  pl_target = getenv("PL_TARGET");
  if (log && real_open)
    pl_log = real_open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
}

/* Append all of p[0..n) to the log; a short log would make the replay
 * wrong, so a failure ends the process. */
static void pl_put(const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  while (n) {
    ssize_t w = real_write(pl_log, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(97);
    b += w;
    n -= (size_t)w;
  }
}

/* A record's header and data go out together: the group-commit workload
 * marks its acknowledgements from several threads while the batch's
 * leader writes. */
static pthread_mutex_t pl_mu = PTHREAD_MUTEX_INITIALIZER;

static void pl_rec(uint32_t type, uint64_t off, const void *data,
                   uint64_t len) {
  pl_hdr h;
  int saved = errno;
  if (pl_log < 0) return;
  h.type = type;
  h.flags = 0;
  h.off = off;
  h.len = data ? len : 0;
  pthread_mutex_lock(&pl_mu);
  pl_put(&h, sizeof h);
  if (data && len) pl_put(data, (size_t)len);
  pthread_mutex_unlock(&pl_mu);
  errno = saved;
}

static int pl_kind(int fd) {
  return fd >= 0 && fd < PL_MAXFD ? pl_fd_kind[fd] : 0;
}

static void pl_opened(const char *path, int flags, int fd) {
  if (fd < 0 || fd >= PL_MAXFD) return;
  pl_fd_kind[fd] = 0;
  if (pl_target && path && strcmp(path, pl_target) == 0)
    pl_fd_kind[fd] = (flags & (O_DSYNC | O_SYNC)) ? 2 : 1;
}

/* Marker from the workload, found with dlsym(RTLD_DEFAULT, "pl_mark"). */
void pl_mark(int type, uint64_t value) { pl_rec((uint32_t)type, value, 0, 0); }

int open(const char *path, int flags, ...) {
  mode_t mode = 0;
  int fd;
  if (flags & O_CREAT) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  fd = real_open(path, flags, mode);
  pl_opened(path, flags, fd);
  return fd;
}

int open64(const char *path, int flags, ...) {
  mode_t mode = 0;
  int fd;
  if (flags & O_CREAT) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  fd = (real_open64 ? real_open64 : real_open)(path, flags, mode);
  pl_opened(path, flags, fd);
  return fd;
}

int close(int fd) {
  if (fd >= 0 && fd < PL_MAXFD) pl_fd_kind[fd] = 0;
  return real_close(fd);
}

static void pl_wrote(int fd, uint64_t off, const void *p, ssize_t n) {
  int k = pl_kind(fd);
  if (k && n > 0) pl_rec(k == 2 ? 'D' : 'W', off, p, (uint64_t)n);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off) {
  ssize_t w = real_pwrite(fd, p, n, off);
  pl_wrote(fd, (uint64_t)off, p, w);
  return w;
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off) {
  ssize_t w = (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, p, n, off);
  pl_wrote(fd, (uint64_t)off, p, w);
  return w;
}

ssize_t write(int fd, const void *p, size_t n) {
  off_t off = pl_kind(fd) ? lseek(fd, 0, SEEK_CUR) : 0;
  ssize_t w = real_write(fd, p, n);
  pl_wrote(fd, (uint64_t)off, p, w);
  return w;
}

/* The bytes of iov that a vectored write of w bytes wrote, recorded as
 * one write (they are contiguous in the file). */
static void pl_wrotev(int fd, uint64_t off, const struct iovec *iov, int cnt,
                      ssize_t w) {
  int i, k = pl_kind(fd);
  size_t left;
  unsigned char *buf;
  size_t at = 0;
  if (!k || w <= 0) return;
  left = (size_t)w;
  buf = (unsigned char *)malloc(left);
  if (!buf) _exit(98);
  for (i = 0; i < cnt && left; i++) {
    size_t c = iov[i].iov_len < left ? iov[i].iov_len : left;
    memcpy(buf + at, iov[i].iov_base, c);
    at += c;
    left -= c;
  }
  pl_rec(k == 2 ? 'D' : 'W', off, buf, (uint64_t)w);
  free(buf);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  off_t off = pl_kind(fd) ? lseek(fd, 0, SEEK_CUR) : 0;
  ssize_t w = real_writev(fd, iov, cnt);
  pl_wrotev(fd, (uint64_t)off, iov, cnt, w);
  return w;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  ssize_t w = real_pwritev(fd, iov, cnt, off);
  pl_wrotev(fd, (uint64_t)off, iov, cnt, w);
  return w;
}

int fsync(int fd) {
  int rc = real_fsync(fd);
  if (rc == 0 && pl_kind(fd)) pl_rec('S', 0, 0, 0);
  return rc;
}

int fdatasync(int fd) {
  int rc = real_fdatasync(fd);
  if (rc == 0 && pl_kind(fd)) pl_rec('S', 0, 0, 0);
  return rc;
}

int msync(void *addr, size_t len, int flags) {
  pl_rec('X', (uint64_t)len, 0, 0);
  return real_msync(addr, len, flags);
}

int ftruncate(int fd, off_t len) {
  int rc = real_ftruncate(fd, len);
  if (rc == 0 && pl_kind(fd)) pl_rec('T', (uint64_t)len, 0, 0);
  return rc;
}
