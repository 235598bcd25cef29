/*
 * store.c - LMDB underneath.
 *
 * Map growth: LMDB can only resize its map while the process has no open
 * transaction, and a transaction that hits a full map is dead.  So the map
 * grows ahead of need: at the start of a write transaction, if more than
 * half of it is used (or the last transaction ran out), it doubles, up to
 * the configured maximum, provided no other transaction of this process is
 * open.  On Linux and the BSDs the map is address space, not disk, so a
 * generous map costs nothing until pages are written.
 */
#include "store.h"
#include "stats.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#endif

/* Group commit needs a mutex and a condition variable: POSIX threads
 * (LMDB itself uses them there).  Elsewhere, or with
 * SYNC_OMIT_GROUP_COMMIT, a group transaction is a plain one. */
#if !defined(_WIN32) && !defined(SYNC_OMIT_GROUP_COMMIT)
#define SX_GROUP_COMMIT 1
#include <pthread.h>
#include <time.h>
#else
#define SX_GROUP_COMMIT 0
#endif

/* Without C11 atomics the library is for one thread per env. */
#if defined(__STDC_NO_ATOMICS__)
typedef int sx_counter;
#define SX_DEC(c) (--(c))
#define SX_LOAD(c) (c)
#define SX_STORE(c, v) ((c) = (v))
static int sx_cas(sx_counter *c, int *expect, int want) {
  if (*c != *expect) {
    *expect = *c;
    return 0;
  }
  *c = want;
  return 1;
}
#else
#include <stdatomic.h>
typedef atomic_int sx_counter;
#define SX_DEC(c) atomic_fetch_sub(&(c), 1)
#define SX_LOAD(c) atomic_load(&(c))
#define SX_STORE(c, v) atomic_store(&(c), (v))
static int sx_cas(sx_counter *c, int *expect, int want) {
  return atomic_compare_exchange_strong(c, expect, want);
}
#endif

/* st->active counts the transactions of this process that are open or
 * being begun; SX_GROWING in it means one thread is resizing the map and
 * no transaction may begin until it is done.  A transaction reserves its
 * place before mdb_txn_begin and a resize takes the counter from 0, so
 * the map is never remapped under a transaction of another thread. */
#define SX_GROWING (-(1 << 28))

#if SX_GROUP_COMMIT
/* The open batch of group commit (store.h).  Members take turns in the
 * one child slot; the leader waits for every thread queued to join, then
 * commits.  A batch holds at most SX_GROUP_MAX members, so that a steady
 * stream of new threads cannot keep it open. */
#define SX_GROUP_MAX 64
typedef struct sx_group {
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* threads beginning: a batch to lead or the slot */
  pthread_cond_t lead; /* the leader, waiting for its batch to fill */
  pthread_cond_t done; /* members, waiting for their batch's result */
  MDB_txn *top;        /* the batch's transaction, or NULL */
  int opening;         /* a leader is beginning top */
  int closing;         /* the leader is committing top */
  int busy;            /* a member's child transaction is open */
  unsigned waiting;    /* threads waiting for the child slot */
  unsigned n;          /* members merged into top */
  unsigned back;       /* members of ended batches not begun again */
  uint64_t commit_ns;  /* how long the last batch's commit took */
  sx_gmember *members; /* ... waiting for top's result */
} sx_group;

/* Make g's mutex and conditions; nonzero (none made) when one fails. */
static int sx_group_init(sx_group *g) {
  if (pthread_mutex_init(&g->mu, NULL)) return -1;
  if (pthread_cond_init(&g->cv, NULL)) goto no_cv;
  if (pthread_cond_init(&g->lead, NULL)) goto no_lead;
  if (pthread_cond_init(&g->done, NULL)) goto no_done;
  return 0;
no_done:
  pthread_cond_destroy(&g->lead);
no_lead:
  pthread_cond_destroy(&g->cv);
no_cv:
  pthread_mutex_destroy(&g->mu);
  return -1;
}

static void sx_group_destroy(sx_group *g) {
  pthread_cond_destroy(&g->done);
  pthread_cond_destroy(&g->lead);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
}
#endif

struct sx_store {
  const sx_alloc *al;
  MDB_env *env;
  size_t mapsize, mapmax;
  int rdonly;
  size_t psize; /* LMDB's page size, for sx_walk_ahead */
  sx_counter want_grow; /* a transaction ran out of map */
  sx_counter native;
  sx_counter active;
  int xfd; /* the lock file, opened by sx_store_excl, or -1 */
  unsigned maxdbs;
  /* SYNC_DURABLE_FULL: LMDB runs with MDB_NOMETASYNC (it syncs the data
   * pages before it writes the meta page, under its writer lock), and
   * the store syncs the meta page after the commit, outside that lock,
   * where the next writer's work overlaps that sync (sx_txn_commit). */
  int metasync;
#if SX_GROUP_COMMIT
  int group_ok; /* g's mutex and condition were made */
  sx_group g;
#endif
};

/* Whether the file of LMDB environment env may not grow: the file
 * system holding it has no block left, or the file reached this
 * process's file size limit (RLIMIT_FSIZE: a write stops there, short,
 * and the next one fails with EFBIG), within a page of LMDB's largest. */
static int sx_env_full(MDB_env *env) {
#ifndef _WIN32
  struct statvfs sv;
  struct rlimit rl;
  struct stat sb;
  mdb_filehandle_t fd;
  if (!env || mdb_env_get_fd(env, &fd) != 0) return 0;
  if (fstatvfs(fd, &sv) == 0 && sv.f_bavail == 0) return 1;
  return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
         fstat(fd, &sb) == 0 && sb.st_size >= 0 &&
         (rlim_t)sb.st_size + 65536 > rl.rlim_cur;
#else
  (void)env;
  return 0;
#endif
}

static int sx_disk_full(sx_store *st) { return st && sx_env_full(st->env); }

/* LMDB or errno -> SYNC_E*.  Every failure passes through here, which
 * remembers the native code for sync_env_native_error(). */
static int sx_map_err(sx_store *st, int rc) {
  if (rc == 0) return 0;
  if (rc == MDB_NOTFOUND) return SYNC_NOTFOUND;
  /* LMDB reports a short write as EIO: where the file may not grow (no
   * block left, or its size limit), that is a full disk, and the caller
   * may free room. */
  if (rc == EIO && sx_disk_full(st)) rc = ENOSPC;
  if (st) SX_STORE(st->native, rc);
  switch (rc) {
  case MDB_MAP_FULL:
    if (st) SX_STORE(st->want_grow, 1);
    return SYNC_EMAPFULL;
  case MDB_TXN_FULL:
  case MDB_DBS_FULL:
  case MDB_CURSOR_FULL:
  case MDB_PAGE_FULL:
    return SYNC_ELIMIT;
  case MDB_KEYEXIST: return SYNC_EEXIST;
  case MDB_PAGE_NOTFOUND:
  case MDB_CORRUPTED: return SYNC_ECORRUPT;
  case MDB_PANIC: return SYNC_EPANIC;
  case MDB_VERSION_MISMATCH: return SYNC_EVERSION;
  case MDB_INVALID:
  case MDB_INCOMPATIBLE: return SYNC_ENOTDB;
  case MDB_READERS_FULL:
  case MDB_TLS_FULL:
  case MDB_BAD_RSLOT: return SYNC_EBUSY;
  case MDB_BAD_TXN: return SYNC_ETXN;
  case MDB_BAD_VALSIZE: return SYNC_ETOOBIG;
  case MDB_BAD_DBI: return SYNC_EINVAL;
  case MDB_MAP_RESIZED: return SYNC_EBUSY;
  case ENOMEM: return SYNC_ENOMEM;
  case ENOENT: return SYNC_NOTFOUND;
  case ENOSPC: return SYNC_ENOSPC;
  /* The file may not grow further (RLIMIT_FSIZE, the file system's file
   * size limit): to the application that is a full disk, not a failing
   * one. */
  case EFBIG: return SYNC_ENOSPC;
#ifdef EDQUOT
  case EDQUOT: return SYNC_ENOSPC;
#endif
  case EACCES:
  case EPERM: return SYNC_EACCES;
#ifdef EROFS
  case EROFS: return SYNC_EREADONLY;
#endif
  case EINVAL: return SYNC_EINVAL;
#ifdef EAGAIN
  case EAGAIN: return SYNC_EBUSY;
#endif
#ifdef EBUSY
  case EBUSY: return SYNC_EBUSY;
#endif
  default: return SYNC_EIO;
  }
}

SYNC_PRIVATE int sx_store_native(const sx_store *st) {
  return SX_LOAD(((sx_store *)st)->native);
}
SYNC_PRIVATE int sx_store_active(const sx_store *st) {
  int n = SX_LOAD(((sx_store *)st)->active);
  return n < 0 ? 0 : n; /* a resize in progress: nothing is open */
}

SYNC_PRIVATE void sx_store_close(sx_store *st) {
  if (!st) return;
  if (st->env) mdb_env_close(st->env);
#ifndef _WIN32
  /* Only now: closing it drops every lock of this process on the lock
   * file, LMDB's shared one too. */
  if (st->xfd >= 0) close(st->xfd);
#endif
#if SX_GROUP_COMMIT
  if (st->group_ok) sx_group_destroy(&st->g);
#endif
  sx_free(st->al, st);
}

/* Refuse a file shorter than its own header says: LMDB would fault on the
 * missing pages instead of returning an error. */
static int sx_check_size(sx_store *st, char *msg, size_t msgsz) {
#ifndef _WIN32
  MDB_envinfo info;
  MDB_stat ms;
  mdb_filehandle_t fd;
  struct stat sb;
  uint64_t need;
  int rc;
  if ((rc = mdb_env_info(st->env, &info)) || (rc = mdb_env_stat(st->env, &ms)))
    return sx_map_err(st, rc);
  if ((rc = mdb_env_get_fd(st->env, &fd))) return sx_map_err(st, rc);
  if (fstat(fd, &sb) != 0) return sx_map_err(st, errno);
  need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
  if ((uint64_t)sb.st_size < need) {
    snprintf(msg, msgsz,
             "file is %llu bytes but its header needs %llu: truncated",
             (unsigned long long)sb.st_size, (unsigned long long)need);
    return SYNC_ECORRUPT;
  }
#else
  (void)st;
  (void)msg;
  (void)msgsz;
#endif
  return 0;
}

SYNC_PRIVATE int sx_store_ident(sx_store *st, uint64_t *dev, uint64_t *ino) {
#ifndef _WIN32
  mdb_filehandle_t fd;
  struct stat sb;
  int rc;
  if ((rc = mdb_env_get_fd(st->env, &fd))) return sx_map_err(st, rc);
  if (fstat(fd, &sb) != 0) return sx_map_err(st, errno);
  *dev = (uint64_t)sb.st_dev;
  *ino = (uint64_t)sb.st_ino;
  return 0;
#else
  (void)st;
  *dev = *ino = 0;
  return SYNC_ENOTSUP;
#endif
}

#ifndef _WIN32
/* The lock file LMDB makes beside a database is a memory map: on a full
 * disk, the first touch of a page the file system has no room for kills
 * the process (SIGBUS) rather than failing a call.  So a missing lock
 * file is made here first, its pages written (LMDB keeps a lock file at
 * least the size it needs: 126 readers of 64 bytes and a header), under
 * a name of its own and then linked into place, so that a process that
 * opens the database meanwhile never sees it half written.  0, or
 * SYNC_ENOSPC (or another error) with nothing left behind. */
#define SX_LOCK_ROOM 16384
static int sx_lock_room(const char *path, char *msg, size_t msgsz) {
  char lock[4096], tmp[4096 + 32];
  static const unsigned char zero[4096];
  struct stat sb;
  size_t done = 0;
  int fd, err = 0;
  if (snprintf(lock, sizeof lock, "%s-lock", path) >= (int)sizeof lock)
    return 0; /* LMDB will say */
  if (stat(lock, &sb) == 0 || errno != ENOENT) return 0;
  snprintf(tmp, sizeof tmp, "%s.%ld", lock, (long)getpid());
  if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
    return 0; /* a read-only directory: LMDB decides */
  while (done < SX_LOCK_ROOM && !err) {
    ssize_t n = write(fd, zero, sizeof zero);
    if (n > 0) done += (size_t)n;
    else if (errno != EINTR) err = errno ? errno : EIO;
  }
  if (close(fd) && !err) err = errno;
  if (!err && link(tmp, lock) && errno != EEXIST) err = errno;
  unlink(tmp);
  if (!err) return 0;
  err = sx_map_err(NULL, err);
  snprintf(msg, msgsz, "%.180s: %s (making the lock file)", lock,
           sync_strerror(err));
  return err;
}
#endif

SYNC_PRIVATE int sx_store_open(const sx_alloc *al, const char *path,
                               const sx_store_opts *o, sx_store **out,
                               char *msg, size_t msgsz) {
  sx_store *st;
  unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
  int rc;
  *out = NULL;
#ifndef _WIN32
  if (o->rdonly || o->nocreate) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
      snprintf(msg, msgsz, "%s: no such database file", path);
      return errno == ENOENT ? SYNC_NOTFOUND : sx_map_err(NULL, errno);
    }
    /* An empty file holds no database, and LMDB would write one into it
     * (and a lock file beside it) before anything could say so: a read
     * must not write, and NOCREATE must not create. */
    if (S_ISREG(sb.st_mode) && sb.st_size == 0) {
      snprintf(msg, msgsz, "%s: empty file, not a sync database", path);
      return SYNC_ENOTDB;
    }
  }
#endif
  st = (sx_store *)sx_malloc(al, sizeof *st);
  if (!st) return SYNC_ENOMEM;
  memset(st, 0, sizeof *st);
  st->al = al;
  st->mapsize = o->mapsize;
  st->mapmax = o->mapmax;
  st->rdonly = o->rdonly;
  st->xfd = -1;
  st->maxdbs = o->maxdbs;
#if SX_GROUP_COMMIT
  if (sx_group_init(&st->g)) {
    sx_free(al, st);
    return SYNC_ENOMEM;
  }
  st->group_ok = 1;
#endif
  if (o->rdonly) flags |= MDB_RDONLY;
  if (o->durability == SYNC_DURABLE_NOMETASYNC) flags |= MDB_NOMETASYNC;
  if (o->durability == SYNC_DURABLE_NOSYNC) flags |= MDB_NOSYNC;
  if (o->durability == SYNC_DURABLE_FULL && !o->rdonly) {
    flags |= MDB_NOMETASYNC;
    st->metasync = 1;
  }
  if ((rc = mdb_env_create(&st->env))) {
    st->env = NULL;
    rc = sx_map_err(st, rc);
    goto fail;
  }
  if ((rc = mdb_env_set_maxdbs(st->env, o->maxdbs)) ||
      (rc = mdb_env_set_mapsize(st->env, st->mapsize))) {
    rc = sx_map_err(st, rc);
    goto fail;
  }
#ifndef _WIN32
  if ((rc = sx_lock_room(path, msg, msgsz))) goto fail;
#endif
  if ((rc = mdb_env_open(st->env, path, flags, 0644))) {
    int native = rc;
    rc = sx_map_err(st, rc);
    snprintf(msg, msgsz, "%s: %s", path, mdb_strerror(native));
    goto fail;
  }
  {
    /* An existing file may have a larger map than we asked for. */
    MDB_envinfo info;
    MDB_stat ms;
    if (!mdb_env_info(st->env, &info) && info.me_mapsize > st->mapsize)
      st->mapsize = info.me_mapsize;
    if (st->mapmax < st->mapsize) st->mapmax = st->mapsize;
    st->psize = mdb_env_stat(st->env, &ms) ? 4096 : ms.ms_psize;
  }
  if ((rc = sx_check_size(st, msg, msgsz))) goto fail;
  *out = st;
  return 0;
fail:
  sx_store_close(st);
  return rc;
}

SYNC_PRIVATE const char *sx_store_path(sx_store *st) {
  const char *p = NULL;
  if (mdb_env_get_path(st->env, &p)) return NULL;
  return p;
}

/* Items appended per write transaction of a repack: few commits, each
 * far from LMDB's limit of dirty pages. */
#define SX_REPACK_TXN 65536

/* Append every item of the source database sd, in order, to database dd
 * of the new file, committing every SX_REPACK_TXN items (*wt is then a
 * new transaction). */
static int sx_repack_db(MDB_txn *rt, MDB_dbi sd, MDB_env *d, MDB_txn **wt,
                        MDB_dbi dd, size_t *n) {
  MDB_cursor *sc = NULL, *dc = NULL;
  MDB_val k, v;
  int rc, op = MDB_FIRST;
  if ((rc = mdb_cursor_open(rt, sd, &sc))) return rc;
  if ((rc = mdb_cursor_open(*wt, dd, &dc))) goto done;
  while ((rc = mdb_cursor_get(sc, &k, &v, op)) == 0) {
    op = MDB_NEXT;
    if ((rc = mdb_cursor_put(dc, &k, &v, MDB_APPEND))) goto done;
    if (++*n % SX_REPACK_TXN == 0) {
      mdb_cursor_close(dc);
      dc = NULL;
      rc = mdb_txn_commit(*wt);
      *wt = NULL;
      if (rc || (rc = mdb_txn_begin(d, NULL, 0, wt)) ||
          (rc = mdb_cursor_open(*wt, dd, &dc)))
        goto done;
    }
  }
  if (rc == MDB_NOTFOUND) rc = 0;
done:
  if (dc) mdb_cursor_close(dc);
  mdb_cursor_close(sc);
  return rc;
}

SYNC_PRIVATE int sx_store_compact(sx_store *st, const char *out,
                                  const char *ident_db, const void *ident_key,
                                  size_t ident_kn, char *msg, size_t msgsz) {
#ifndef _WIN32
  MDB_env *d = NULL;
  MDB_txn *wt = NULL;
  MDB_cursor *names = NULL;
  sx_stxn *rt = NULL;
  MDB_envinfo info;
  MDB_stat ms;
  MDB_val k, v;
  unsigned char idb[16];
  size_t n = 0, map, src_txnid = 0;
  MDB_dbi idd = 0;
  int fd, rc, made = 0, op = MDB_FIRST, have_idd = 0;
  /* A new file: never one that exists. */
  fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    int err = errno;
    snprintf(msg, msgsz, "%s: %s", out, strerror(err));
    SX_STORE(st->native, err);
    return err == EEXIST ? SYNC_EEXIST : sx_map_err(st, err);
  }
  made = 1;
  close(fd);
  if ((rc = mdb_env_info(st->env, &info)) || (rc = mdb_env_stat(st->env, &ms)))
    goto fail;
  /* Room for what the source holds, and for the pages that the commits
   * between batches leave behind. */
  map = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
  if (map + map / 4 + ((size_t)1 << 20) > map)
    map += map / 4 + ((size_t)1 << 20);
  if (map < info.me_mapsize) map = info.me_mapsize;
  if ((rc = mdb_env_create(&d))) {
    d = NULL;
    goto fail;
  }
  /* Nobody else knows the file yet: no lock file, and one sync at the
   * end instead of one per commit. */
  if ((rc = mdb_env_set_maxdbs(d, st->maxdbs)) ||
      (rc = mdb_env_set_mapsize(d, map)) ||
      (rc = mdb_env_open(d, out, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC, 0644)))
    goto fail;
  if (ident_db) {
    mdb_filehandle_t dfd;
    struct stat sb;
    if ((rc = mdb_env_get_fd(d, &dfd))) goto fail;
    if (fstat(dfd, &sb) != 0) {
      rc = errno;
      goto fail;
    }
    sx_put_le64(idb, (uint64_t)sb.st_dev);
    sx_put_le64(idb + 8, (uint64_t)sb.st_ino);
  }
  if ((rc = sx_txn_begin(st, 1, &rt))) {
    mdb_env_close(d);
    unlink(out);
    snprintf(msg, msgsz, "%s: cannot begin reading the source: %s", out,
             sync_strerror(rc));
    return rc;
  }
  src_txnid = mdb_txn_id((MDB_txn *)rt);
  if ((rc = mdb_txn_begin(d, NULL, 0, &wt)) ||
      (rc = mdb_cursor_open((MDB_txn *)rt, 1 /* the main database */, &names)))
    goto fail;
  /* The main database names the others: copy each, in name order. */
  while ((rc = mdb_cursor_get(names, &k, &v, op)) == 0) {
    char name[256];
    MDB_dbi sd, dd;
    unsigned fl = 0;
    op = MDB_NEXT;
    if (k.mv_size >= sizeof name || memchr(k.mv_data, 0, k.mv_size)) {
      rc = MDB_INCOMPATIBLE; /* not a name of ours */
      break;
    }
    memcpy(name, k.mv_data, k.mv_size);
    name[k.mv_size] = 0;
    if ((rc = mdb_dbi_open((MDB_txn *)rt, name, 0, &sd)) ||
        (rc = mdb_dbi_flags((MDB_txn *)rt, sd, &fl)))
      break;
    if (fl & ~(unsigned)MDB_REVERSEKEY) {
      rc = MDB_INCOMPATIBLE; /* no store of ours has other flags */
      break;
    }
    if ((rc = mdb_dbi_open(wt, name, MDB_CREATE | fl, &dd))) break;
    if (ident_db && !strcmp(name, ident_db)) {
      idd = dd;
      have_idd = 1;
    }
    if ((rc = sx_repack_db((MDB_txn *)rt, sd, d, &wt, dd, &n))) break;
  }
  if (rc != MDB_NOTFOUND) goto fail;
  mdb_cursor_close(names);
  names = NULL;
  sx_txn_abort(st, rt);
  rt = NULL;
  rc = mdb_txn_commit(wt);
  wt = NULL;
  if (rc) goto fail;
  if (ident_db) {
    /* The copy's own ident, written after the repack.  The copy takes the
     * source's place, and a process that waited to open the file may find
     * LMDB's lock file as the source left it, naming the source's last
     * transaction: it picks the meta page by that number's parity.  So
     * the copy's last transaction gets the same parity, and that page is
     * the copy's newest: the ident is written again until it has.  (A
     * commit that rewrites the ident dirties a page, so it takes a
     * number.) */
    MDB_envinfo di;
    MDB_val ik, iv;
    int i;
    if (!have_idd) {
      rc = MDB_INCOMPATIBLE;
      goto fail;
    }
    ik.mv_data = (void *)ident_key;
    ik.mv_size = ident_kn;
    iv.mv_data = idb;
    iv.mv_size = sizeof idb;
    for (i = 0;; i++) {
      if (i) {
        if ((rc = mdb_env_info(d, &di))) goto fail;
        if ((di.me_last_txnid & 1) == (src_txnid & 1)) break;
        if (i == 3) {
          rc = EIO; /* LMDB numbered the commits otherwise than it does */
          goto fail;
        }
      }
      if ((rc = mdb_txn_begin(d, NULL, 0, &wt)) ||
          (i && (rc = mdb_del(wt, idd, &ik, NULL))) ||
          (rc = mdb_put(wt, idd, &ik, &iv, 0)))
        goto fail;
      rc = mdb_txn_commit(wt);
      wt = NULL;
      if (rc) goto fail;
    }
  }
  if ((rc = mdb_env_sync(d, 1))) goto fail;
  mdb_env_close(d);
  return 0;
fail:
  if (names) mdb_cursor_close(names);
  if (rt) sx_txn_abort(st, rt);
  if (wt) mdb_txn_abort(wt);
  /* A short write to the copy (EIO) is a full disk where the copy may
   * not grow: asked of the copy's file, which may lie on another file
   * system than the source's. */
  if (rc == EIO && sx_env_full(d)) rc = ENOSPC;
  if (d) mdb_env_close(d);
  if (made) unlink(out);
  snprintf(msg, msgsz, "%s: compacting failed: %s", out, mdb_strerror(rc));
  return sx_map_err(st, rc);
#else
  (void)st;
  (void)out;
  (void)ident_db;
  (void)ident_key;
  (void)ident_kn;
  snprintf(msg, msgsz, "compacting is not built for this platform");
  return SYNC_ENOTSUP;
#endif
}

/* In place.  Putting a compacted copy in the place of the file while
 * this process has it open, with LMDB's lock file kept (other processes
 * share it, and may be waiting on it):
 *  1. sx_store_excl: the exclusive lock on the lock file's first byte.
 *     No other process has the file open; one that opens it now waits
 *     in its open (LMDB takes the shared lock there first, before the
 *     data file: read-only opens excepted, which open the data file
 *     first and so may read the old file until they reopen).
 *  2. The copy (sx_store_compact with ident_db), then its rename over
 *     the file, with the writer lock held throughout.
 *  3. sx_store_excl_end: back to shared.  The waiters go on, open the
 *     new file and find the lock file as this process's env left it:
 *     its mutexes whole, and the number of the old file's last
 *     transaction, whose parity picks their meta page; the copy's last
 *     transaction has the same parity, so that page is its newest.
 *  4. Close the old store: with a waiter holding the shared lock, LMDB
 *     leaves the mutexes alone; without one it destroys them, and the
 *     next open (ours, or another process's) makes them afresh.
 * What must not happen is a waiter going on after the lock file was
 * left with destroyed mutexes, which 3 before 4 rules out. */
SYNC_PRIVATE int sx_store_excl(sx_store *st) {
#ifndef _WIN32
  char path[4096];
  const char *p = sx_store_path(st);
  struct flock fl;
  int rc;
  if (!p || snprintf(path, sizeof path, "%s-lock", p) >= (int)sizeof path)
    return SYNC_EINVAL;
  if (st->xfd < 0 && (st->xfd = open(path, O_RDWR)) < 0)
    return sx_map_err(st, errno);
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  while ((rc = fcntl(st->xfd, F_SETLK, &fl)) != 0 && errno == EINTR) {
  }
  if (rc != 0) {
    int err = errno;
    SX_STORE(st->native, err);
    return err == EAGAIN || err == EACCES ? SYNC_EBUSY : sx_map_err(st, err);
  }
  return 0;
#else
  (void)st;
  return SYNC_ENOTSUP;
#endif
}

SYNC_PRIVATE void sx_store_excl_end(sx_store *st) {
#ifndef _WIN32
  struct flock fl;
  if (st->xfd < 0) return;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  while (fcntl(st->xfd, F_SETLK, &fl) != 0 && errno == EINTR) {
  }
#else
  (void)st;
#endif
}

SYNC_PRIVATE int sx_file_replace(const char *tmp, const char *path) {
#ifndef _WIN32
  char dir[4096];
  const char *slash = strrchr(path, '/');
  int fd;
  if (rename(tmp, path) != 0) return sx_map_err(NULL, errno);
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else if ((size_t)(slash - path) < sizeof dir)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else
    return 0;
  /* Some file systems refuse to sync a directory: the rename stands. */
  if ((fd = open(dir, O_RDONLY)) >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  return 0;
#else
  (void)tmp;
  (void)path;
  return SYNC_ENOTSUP;
#endif
}

SYNC_PRIVATE void sx_file_remove(const char *path) {
#ifndef _WIN32
  char lock[4096];
  unlink(path);
  if (snprintf(lock, sizeof lock, "%s-lock", path) < (int)sizeof lock)
    unlink(lock);
#else
  (void)path;
#endif
}

SYNC_PRIVATE int sx_store_sync(sx_store *st) {
  return sx_map_err(st, mdb_env_sync(st->env, 1));
}

/* Take the counter from 0 to SX_GROWING: no transaction of this process
 * is open and none can begin until sx_grow_end. */
static int sx_grow_begin(sx_store *st) {
  int zero = 0;
  return sx_cas(&st->active, &zero, SX_GROWING);
}
static void sx_grow_end(sx_store *st) { SX_STORE(st->active, 0); }

/* Reserve a place for a transaction, waiting out a resize (it takes as
 * long as an munmap and an mmap). */
static void sx_enter(sx_store *st) {
  int n = SX_LOAD(st->active);
  for (;;) {
    if (n < 0) {
      n = SX_LOAD(st->active);
      continue;
    }
    if (sx_cas(&st->active, &n, n + 1)) return;
  }
}

static void sx_maybe_grow(sx_store *st) {
  MDB_envinfo info;
  MDB_stat ms;
  size_t used, want;
  if (!sx_grow_begin(st)) return; /* LMDB cannot remap under a txn */
  if (mdb_env_info(st->env, &info) || mdb_env_stat(st->env, &ms)) {
    sx_grow_end(st);
    return;
  }
  st->mapsize = info.me_mapsize;
  used = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
  if ((SX_LOAD(st->want_grow) || used > st->mapsize / 2) &&
      st->mapsize < st->mapmax) {
    want = st->mapsize > st->mapmax / 2 ? st->mapmax : st->mapsize * 2;
    if (mdb_env_set_mapsize(st->env, want) == 0) {
      st->mapsize = want;
      SX_STORE(st->want_grow, 0);
    }
  }
  sx_grow_end(st);
}

SYNC_PRIVATE int sx_txn_begin(sx_store *st, int rdonly, sx_stxn **out) {
  MDB_txn *txn;
  int rc, tries;
  *out = NULL;
  if (!rdonly && st->rdonly) return SYNC_EREADONLY;
  for (tries = 0; tries < 2; tries++) {
    if (!rdonly) sx_maybe_grow(st);
    sx_enter(st);
    rc = mdb_txn_begin(st->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
    if (rc == 0) break;
    SX_DEC(st->active);
    if (rc != MDB_MAP_RESIZED) break;
    /* Another process grew the map: adopt its size. */
    if (sx_grow_begin(st)) {
      mdb_env_set_mapsize(st->env, 0);
      sx_grow_end(st);
    }
  }
  if (rc) return sx_map_err(st, rc);
  *out = (sx_stxn *)txn;
  return 0;
}

/* Commit write transaction t.  Under SYNC_DURABLE_FULL its meta page
 * is then written but not yet synced: *wrote says whether LMDB wrote one
 * (a transaction that changed nothing writes none, and syncs nothing). */
static int sx_commit_write(sx_store *st, MDB_txn *t, int *wrote) {
  size_t id = mdb_txn_id(t);
  MDB_envinfo info;
  int rc = mdb_txn_commit(t);
  SX_DEC(st->active);
  *wrote = 0;
  if (rc == 0 && st->metasync && mdb_env_info(st->env, &info) == 0)
    *wrote = info.me_last_txnid >= id; /* (or another writer's since) */
  return sx_map_err(st, rc);
}

/* The sync that makes the meta page of a commit durable (LMDB synced
 * the data pages it names before it wrote it), outside LMDB's writer
 * lock.  A failure leaves the transaction committed in the file but not
 * known to be on disk: the commit reports it. */
static int sx_meta_sync(sx_store *st) {
  return sx_map_err(st, mdb_env_sync(st->env, 1));
}

SYNC_PRIVATE int sx_txn_commit(sx_store *st, sx_stxn *t) {
  int wrote, rc = sx_commit_write(st, (MDB_txn *)t, &wrote);
  return rc || !wrote ? rc : sx_meta_sync(st);
}

SYNC_PRIVATE int sx_txn_commit_read(sx_store *st, sx_stxn *t) {
  int rc = mdb_txn_commit((MDB_txn *)t);
  SX_DEC(st->active);
  return sx_map_err(st, rc);
}

SYNC_PRIVATE void sx_txn_abort(sx_store *st, sx_stxn *t) {
  if (!t) return;
  mdb_txn_abort((MDB_txn *)t);
  SX_DEC(st->active);
}

#if SX_GROUP_COMMIT
/* The leader waits (g->mu held) for the batch to fill: while a member's
 * child is open or a thread waits to join, and then, while members of
 * earlier batches have not begun again (they are likely to: a thread
 * making many small commits), at most as long as the last batch's commit
 * took, since each of them would otherwise pay a commit of its own.
 * Those that miss the wait are counted out: the next leader waits for
 * none of them.  It returns with no child open. */
static void sx_group_fill(sx_group *g) {
  struct timespec until;
  int timed = 0, over = 0;
  for (;;) {
    if (g->busy || (g->waiting && g->n < SX_GROUP_MAX)) {
      pthread_cond_wait(&g->lead, &g->mu);
      continue;
    }
    if (over || !g->back || !g->commit_ns || g->n >= SX_GROUP_MAX) return;
    if (!timed) {
      uint64_t ns;
      /* pthread_cond_timedwait's clock (CLOCK_REALTIME) */
      if (timespec_get(&until, TIME_UTC) != TIME_UTC) return;
      ns = (uint64_t)until.tv_nsec + g->commit_ns;
      until.tv_sec += (time_t)(ns / 1000000000u);
      until.tv_nsec = (long)(ns % 1000000000u);
      timed = 1;
    }
    /* A thread may join as the time runs out: look again either way. */
    if (pthread_cond_timedwait(&g->lead, &g->mu, &until) == ETIMEDOUT) {
      g->back = 0;
      over = 1;
    }
  }
}

/* The leader ends the batch (g->mu held, its own child ended): wait for
 * it to fill, commit top with the env's durability (abort it when no
 * member is left), and hand every member the result.  Under
 * SYNC_DURABLE_FULL the next batch may begin while this one's meta page
 * is synced. */
static void sx_group_finish(sx_store *st) {
  sx_group *g = &st->g;
  sx_gmember *m, *next, *members;
  MDB_txn *top;
  unsigned n;
  uint64_t t0;
  int rc = 0, wrote = 0;
  sx_group_fill(g);
  g->closing = 1; /* from here on nobody joins: top and n stay */
  top = g->top;
  n = g->n;
  members = g->members;
  pthread_mutex_unlock(&g->mu);
  t0 = sx_now_ns();
  if (n) rc = sx_commit_write(st, top, &wrote);
  else sx_txn_abort(st, (sx_stxn *)top);
  pthread_mutex_lock(&g->mu);
  g->members = NULL;
  g->n = 0;
  g->top = NULL;
  g->closing = 0;
  pthread_cond_broadcast(&g->cv); /* the next batch may begin */
  if (wrote) {
    pthread_mutex_unlock(&g->mu);
    rc = sx_meta_sync(st);
    pthread_mutex_lock(&g->mu);
  }
  if (n) g->commit_ns = sx_now_ns() - t0;
  for (m = members; m; m = next) {
    next = m->next; /* m may be gone once done is seen */
    m->rc = rc;
    m->done = 1;
    g->back++;
  }
  pthread_cond_broadcast(&g->done);
}

/* The slot is free again (g->mu held): threads waiting to take it, and
 * the leader, which may have waited for it. */
static void sx_group_slot_free(sx_group *g) {
  g->busy = 0;
  pthread_cond_broadcast(&g->cv);
  pthread_cond_signal(&g->lead);
}

SYNC_PRIVATE int sx_txn_begin_group(sx_store *st, sx_gmember *m,
                                    sx_stxn **out) {
  sx_group *g = &st->g;
  MDB_txn *child = NULL;
  int rc;
  *out = NULL;
  memset(m, 0, sizeof *m);
  if (st->rdonly) return SYNC_EREADONLY;
  pthread_mutex_lock(&g->mu);
  if (g->back) g->back--;
  for (;;) {
    if (!g->top && !g->opening) {
      sx_stxn *top;
      /* Lead a new batch.  Beginning may wait for LMDB's writer lock
       * (another process, or a plain writer): not under our mutex. */
      g->opening = 1;
      pthread_mutex_unlock(&g->mu);
      rc = sx_txn_begin(st, 0, &top);
      pthread_mutex_lock(&g->mu);
      g->opening = 0;
      if (rc) {
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        return rc;
      }
      g->top = (MDB_txn *)top;
      m->leader = 1;
    }
    /* The leader takes the slot first: it never let go of the mutex. */
    if (g->top && !g->closing && !g->busy) break;
    g->waiting++;
    pthread_cond_wait(&g->cv, &g->mu);
    g->waiting--;
  }
  rc = mdb_txn_begin(st->env, g->top, 0, &child);
  if (rc) {
    rc = sx_map_err(st, rc);
    sx_group_slot_free(g); /* it was free: the others may take it */
    if (m->leader) sx_group_finish(st);
    pthread_mutex_unlock(&g->mu);
    return rc;
  }
  g->busy = 1;
  pthread_mutex_unlock(&g->mu);
  *out = (sx_stxn *)child;
  return 0;
}

SYNC_PRIVATE int sx_txn_commit_group(sx_store *st, sx_gmember *m,
                                     sx_stxn *t) {
  sx_group *g = &st->g;
  /* Merges the child into top: no I/O, and no other thread touches top
   * while the slot is ours.  (Mapped to SYNC_E* at the end.) */
  int native = mdb_txn_commit((MDB_txn *)t), rc = 0;
  pthread_mutex_lock(&g->mu);
  if (!native) {
    m->done = 0;
    m->next = g->members;
    g->members = m;
    g->n++;
  }
  sx_group_slot_free(g);
  if (m->leader) sx_group_finish(st);
  else
    while (!native && !m->done) pthread_cond_wait(&g->done, &g->mu);
  if (!native) rc = m->rc;
  pthread_mutex_unlock(&g->mu);
  return native ? sx_map_err(st, native) : rc;
}

SYNC_PRIVATE void sx_txn_abort_group(sx_store *st, sx_gmember *m,
                                     sx_stxn *t) {
  sx_group *g = &st->g;
  if (!t) return;
  mdb_txn_abort((MDB_txn *)t);
  pthread_mutex_lock(&g->mu);
  sx_group_slot_free(g);
  if (m->leader) sx_group_finish(st); /* the others' work still commits */
  pthread_mutex_unlock(&g->mu);
}
#else
SYNC_PRIVATE int sx_txn_begin_group(sx_store *st, sx_gmember *m,
                                    sx_stxn **out) {
  memset(m, 0, sizeof *m);
  return sx_txn_begin(st, 0, out);
}
SYNC_PRIVATE int sx_txn_commit_group(sx_store *st, sx_gmember *m,
                                     sx_stxn *t) {
  (void)m;
  return sx_txn_commit(st, t);
}
SYNC_PRIVATE void sx_txn_abort_group(sx_store *st, sx_gmember *m,
                                     sx_stxn *t) {
  (void)m;
  sx_txn_abort(st, t);
}
#endif

SYNC_PRIVATE int sx_dbi_open(sx_store *st, sx_stxn *t, const char *name,
                             int create, sx_dbi *out) {
  MDB_dbi d = 0;
  int rc = mdb_dbi_open((MDB_txn *)t, name, create ? MDB_CREATE : 0, &d);
  if (rc) return sx_map_err(st, rc);
  *out = (sx_dbi)d;
  return 0;
}

SYNC_PRIVATE int sx_main_entries(sx_store *st, sx_stxn *t, size_t *out) {
  MDB_stat ms;
  int rc = mdb_stat((MDB_txn *)t, 1 /* MAIN_DBI */, &ms);
  if (rc) return sx_map_err(st, rc);
  *out = ms.ms_entries;
  return 0;
}

SYNC_PRIVATE int sx_get(sx_store *st, sx_stxn *t, sx_dbi d, const void *k,
                        size_t kn, sx_slice *v) {
  MDB_val key, val;
  int rc;
  v->p = NULL; /* outputs are defined on every path */
  v->n = 0;
  key.mv_data = (void *)k;
  key.mv_size = kn;
  rc = mdb_get((MDB_txn *)t, (MDB_dbi)d, &key, &val);
  if (rc) return sx_map_err(st, rc);
  v->p = (const unsigned char *)val.mv_data;
  v->n = val.mv_size;
  return 0;
}

SYNC_PRIVATE int sx_put(sx_store *st, sx_stxn *t, sx_dbi d, const void *k,
                        size_t kn, const void *v, size_t vn, unsigned flags) {
  MDB_val key, val;
  unsigned f = 0;
  key.mv_data = (void *)k;
  key.mv_size = kn;
  val.mv_data = (void *)v;
  val.mv_size = vn;
  if (flags & SX_PUT_APPEND) f |= MDB_APPEND;
  if (flags & SX_PUT_NOOVERWRITE) f |= MDB_NOOVERWRITE;
  return sx_map_err(st, mdb_put((MDB_txn *)t, (MDB_dbi)d, &key, &val, f));
}

SYNC_PRIVATE int sx_del(sx_store *st, sx_stxn *t, sx_dbi d, const void *k,
                        size_t kn) {
  MDB_val key;
  key.mv_data = (void *)k;
  key.mv_size = kn;
  return sx_map_err(st, mdb_del((MDB_txn *)t, (MDB_dbi)d, &key, NULL));
}

SYNC_PRIVATE int sx_dbi_drop(sx_store *st, sx_stxn *t, sx_dbi d) {
  return sx_map_err(st, mdb_drop((MDB_txn *)t, (MDB_dbi)d, 1));
}

SYNC_PRIVATE int sx_cur_open(sx_store *st, sx_stxn *t, sx_dbi d,
                             sx_scur **out) {
  MDB_cursor *c = NULL;
  int rc = mdb_cursor_open((MDB_txn *)t, (MDB_dbi)d, &c);
  *out = NULL;
  if (rc) return sx_map_err(st, rc);
  *out = (sx_scur *)c;
  return 0;
}

SYNC_PRIVATE int sx_cur_get(sx_store *st, sx_scur *c, int op, sx_slice *k,
                            sx_slice *v) {
  static const MDB_cursor_op ops[] = {MDB_FIRST,   MDB_NEXT, MDB_SET_RANGE,
                                      MDB_SET_KEY, MDB_LAST, MDB_GET_CURRENT,
                                      MDB_PREV};
  MDB_val key, val;
  int rc;
  key.mv_data = (void *)k->p;
  key.mv_size = k->n;
  val.mv_data = NULL;
  val.mv_size = 0;
  rc = mdb_cursor_get((MDB_cursor *)c, &key, &val, ops[op]);
  if (v) {
    v->p = NULL;
    v->n = 0;
  }
  if (rc) return sx_map_err(st, rc);
  k->p = (const unsigned char *)key.mv_data;
  k->n = key.mv_size;
  if (v) {
    v->p = (const unsigned char *)val.mv_data;
    v->n = val.mv_size;
  }
  return 0;
}

SYNC_PRIVATE int sx_cur_walk(sx_store *st, sx_scur *c, int *op, sx_slice *k,
                             sx_slice *v) {
  int rc;
  if (*op == SX_AFTER && k->n) {
    sx_slice at = *k;
    rc = sx_cur_get(st, c, SX_SET_RANGE, k, v);
    if (!rc && k->n == at.n && !memcmp(k->p, at.p, at.n))
      rc = sx_cur_get(st, c, SX_NEXT, k, v);
  } else {
    rc = sx_cur_get(st, c, *op == SX_AFTER ? SX_FIRST : *op, k, v);
  }
  *op = SX_NEXT;
  if (rc == SYNC_NOTFOUND) return 0;
  return rc ? rc : 1;
}

SYNC_PRIVATE size_t sx_store_psize(const sx_store *st) { return st->psize; }

SYNC_PRIVATE void sx_walk_ahead(const sx_store *st, uintptr_t *page,
                                const void *at) {
#if defined(__GNUC__) || defined(__clang__)
  /* LMDB's page size is the system's, a power of two. */
  uintptr_t off = (uintptr_t)at & (uintptr_t)(st->psize - 1);
  const char *q = (const char *)at - off, *end = q + st->psize;
  if ((uintptr_t)at - off == *page) return;
  *page = (uintptr_t)at - off;
  /* A line at a time by pointer: measured here, indexing from the page
   * (base + offset) made the same hints far less useful. */
  for (; q < end; q += 64) __builtin_prefetch(q);
#else
  (void)st;
  (void)page;
  (void)at;
#endif
}

SYNC_PRIVATE int sx_cur_put(sx_store *st, sx_scur *c, const void *k,
                            size_t kn, const void *v, size_t vn,
                            unsigned flags) {
  MDB_val key, val;
  unsigned f = 0;
  int rc;
  key.mv_data = (void *)k;
  key.mv_size = kn;
  val.mv_data = (void *)v;
  val.mv_size = vn;
  if (flags & SX_CUR_CURRENT) f |= MDB_CURRENT;
  if (flags & SX_PUT_APPEND) f |= MDB_APPEND;
  if (flags & SX_PUT_NOOVERWRITE) f |= MDB_NOOVERWRITE;
  rc = mdb_cursor_put((MDB_cursor *)c, &key, &val, f);
  /* An insert that found the key: expected, the cursor now on it. */
  if (rc == MDB_KEYEXIST && (flags & SX_PUT_NOOVERWRITE)) return SYNC_EEXIST;
  return sx_map_err(st, rc);
}

SYNC_PRIVATE int sx_cur_del(sx_store *st, sx_scur *c) {
  return sx_map_err(st, mdb_cursor_del((MDB_cursor *)c, 0));
}

SYNC_PRIVATE void sx_cur_close(sx_scur *c) {
  if (c) mdb_cursor_close((MDB_cursor *)c);
}
