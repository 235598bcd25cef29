/*
 * store.h - the storage layer: an LMDB environment in one file, named
 * databases, transactions, cursors, automatic map growth, and the mapping
 * of LMDB and OS errors onto SYNC_E* codes.  The only module that includes
 * lmdb.h; everything above it sees byte slices.
 */
#ifndef SX_STORE_H
#define SX_STORE_H

#include "util.h"

typedef struct sx_store sx_store;
typedef struct sx_stxn sx_stxn; /* an LMDB transaction */
typedef struct sx_scur sx_scur; /* an LMDB cursor */
typedef unsigned sx_dbi;

typedef struct sx_slice {
  const unsigned char *p;
  size_t n;
} sx_slice;

typedef struct sx_store_opts {
  int durability; /* SYNC_DURABLE_* */
  size_t mapsize, mapmax;
  unsigned maxdbs;
  int rdonly, nocreate;
} sx_store_opts;

/* Open the file.  On failure *out is NULL; msg says which call failed. */
SYNC_PRIVATE int sx_store_open(const sx_alloc *al, const char *path,
                               const sx_store_opts *o, sx_store **out,
                               char *msg, size_t msgsz);
SYNC_PRIVATE void sx_store_close(sx_store *st);
SYNC_PRIVATE int sx_store_sync(sx_store *st);
/* Native code (LMDB or errno) of the last failure mapped by this store. */
SYNC_PRIVATE int sx_store_native(const sx_store *st);
/* The file's device and inode numbers (SYNC_ENOTSUP where there are
 * none): a copy of the file, or one restored from a backup as a new
 * file, has others. */
SYNC_PRIVATE int sx_store_ident(sx_store *st, uint64_t *dev, uint64_t *ino);
/* The path the store was opened at; owned by st, valid until it closes. */
SYNC_PRIVATE const char *sx_store_path(sx_store *st);
/* Write a compacted copy of the store's last committed state to the new
 * file out (SYNC_EEXIST if it exists), from one read transaction, synced
 * to disk before it returns.  Every named database is rewritten in key
 * order by appending, so that its pages are full and free pages are left
 * out.  (LMDB's own compacting copy, MDB_CP_COMPACT, leaves out the free
 * pages but copies the others as they are: after deleting half of the
 * rows at random the copy was 93% of the file.)  ident_db: the copy is to
 * take the source's place (store.c, "In place"): the item at ident_key
 * of that database holds the new file's device and inode (u64 LE each),
 * and its last transaction number has the parity of the source's.  On
 * failure out is removed.  Errors:
 * SYNC_EEXIST, SYNC_ENOSPC, SYNC_EMAPFULL, SYNC_EACCES, SYNC_EIO,
 * SYNC_ENOTDB (a database this layer did not make), SYNC_ENOMEM. */
SYNC_PRIVATE int sx_store_compact(sx_store *st, const char *out,
                                  const char *ident_db, const void *ident_key,
                                  size_t ident_kn, char *msg, size_t msgsz);
/* Make sure no other process has the file open, and keep it so: an
 * exclusive lock on the lock file's first byte, where every process with
 * the environment open holds a shared one (LMDB's own protocol: a process
 * opening it meanwhile waits in its open until the lock goes back to
 * shared).  POSIX drops a process's locks on a file when any descriptor
 * of it closes, so the descriptor taken here stays open, held by st,
 * until LMDB has closed its own.  SYNC_EBUSY when another process has
 * the file open; SYNC_ENOTSUP where there are no such locks.  Other envs
 * of this process cannot be seen (LMDB forbids opening one file twice in
 * a process).  See store.c, "In place", for what this allows. */
SYNC_PRIVATE int sx_store_excl(sx_store *st);
/* Back to the shared lock LMDB holds: processes waiting in their open go
 * on. */
SYNC_PRIVATE void sx_store_excl_end(sx_store *st);
/* Put file tmp in the place of path (rename, then sync the directory so
 * that the new name survives a power cut). */
SYNC_PRIVATE int sx_file_replace(const char *tmp, const char *path);
/* Remove a file and its lock file, if they exist. */
SYNC_PRIVATE void sx_file_remove(const char *path);
/* Transactions of this store still open (schema changes need none). */
SYNC_PRIVATE int sx_store_active(const sx_store *st);

SYNC_PRIVATE int sx_txn_begin(sx_store *st, int rdonly, sx_stxn **out);
/* Commit a write transaction: it returns once the transaction is as
 * durable as the store's mode says. */
SYNC_PRIVATE int sx_txn_commit(sx_store *st, sx_stxn *t);
/* End a read-only transaction. */
SYNC_PRIVATE int sx_txn_commit_read(sx_store *st, sx_stxn *t);
SYNC_PRIVATE void sx_txn_abort(sx_store *st, sx_stxn *t);

/* Group commit (docs/API.md, "Group commit").  A member's transaction is
 * a nested LMDB transaction inside one write transaction that the first
 * member (the leader) began; the others' children follow one another in
 * it, and the leader commits it, with the env's durability, once no
 * member is left waiting to join: one sync for the batch.  Each member's
 * commit returns the batch's result, so it returns 0 only once durable.
 * The leader must end its own transaction on the thread that began it
 * (it holds LMDB's writer lock); sx_txn_abort_group may then wait for
 * the batch.  Without threads (SX_GROUP_COMMIT 0) a member's transaction
 * is a plain write transaction. */
typedef struct sx_gmember {
  struct sx_gmember *next; /* the batch's members */
  int leader;              /* began the batch's transaction */
  int done, rc;            /* the batch's result, set by the leader */
} sx_gmember;
SYNC_PRIVATE int sx_txn_begin_group(sx_store *st, sx_gmember *m,
                                    sx_stxn **out);
SYNC_PRIVATE int sx_txn_commit_group(sx_store *st, sx_gmember *m,
                                     sx_stxn *t);
SYNC_PRIVATE void sx_txn_abort_group(sx_store *st, sx_gmember *m, sx_stxn *t);
/* Open (create) a named database within a transaction. */
SYNC_PRIVATE int sx_dbi_open(sx_store *st, sx_stxn *t, const char *name,
                             int create, sx_dbi *out);
/* Number of entries in the main database (0 for a new file). */
SYNC_PRIVATE int sx_main_entries(sx_store *st, sx_stxn *t, size_t *out);

SYNC_PRIVATE int sx_get(sx_store *st, sx_stxn *t, sx_dbi d, const void *k,
                        size_t kn, sx_slice *v);
#define SX_PUT_APPEND 1u
#define SX_PUT_NOOVERWRITE 2u
SYNC_PRIVATE int sx_put(sx_store *st, sx_stxn *t, sx_dbi d, const void *k,
                        size_t kn, const void *v, size_t vn, unsigned flags);
SYNC_PRIVATE int sx_del(sx_store *st, sx_stxn *t, sx_dbi d, const void *k,
                        size_t kn);
/* Delete named database d with everything in it; its handle is closed. */
SYNC_PRIVATE int sx_dbi_drop(sx_store *st, sx_stxn *t, sx_dbi d);

#define SX_FIRST 0
#define SX_NEXT 1
#define SX_SET_RANGE 2 /* first key >= k */
#define SX_SET_KEY 3   /* exactly k */
#define SX_LAST 4
#define SX_GET_CURRENT 5
#define SX_PREV 6
SYNC_PRIVATE int sx_cur_open(sx_store *st, sx_stxn *t, sx_dbi d, sx_scur **out);
/* sx_cur_walk only: the first key after k (strictly), or the first key
 * when k is empty: where a walk that stopped at k goes on. */
#define SX_AFTER 7
/* One step of a walk: the entry op finds (SX_FIRST, SX_SET_RANGE at k,
 * SX_AFTER k), then each next one (*op becomes SX_NEXT).  1: an entry in
 * k and v; 0: the walk is over; else the error (negative). */
SYNC_PRIVATE int sx_cur_walk(sx_store *st, sx_scur *c, int *op, sx_slice *k,
                             sx_slice *v);
SYNC_PRIVATE int sx_cur_get(sx_store *st, sx_scur *c, int op, sx_slice *k,
                            sx_slice *v);
/* A hint for a walk that reads every entry: when at (a key or value a
 * walk just returned) lies on another page than *page, ask the CPU for
 * all of that page now, so that its entries arrive together rather than
 * one cache miss at a time; *page starts at 0.  Changes nothing. */
SYNC_PRIVATE void sx_walk_ahead(const sx_store *st, uintptr_t *page,
                                const void *at);
/* LMDB's page size. */
SYNC_PRIVATE size_t sx_store_psize(const sx_store *st);
/* Put with the cursor.  SX_CUR_CURRENT replaces the item at the cursor
 * (k must equal its key) without searching the tree again.
 * SX_PUT_NOOVERWRITE: when k is there, SYNC_EEXIST, nothing written and
 * the cursor on the item (no native error noted). */
#define SX_CUR_CURRENT 4u
SYNC_PRIVATE int sx_cur_put(sx_store *st, sx_scur *c, const void *k,
                            size_t kn, const void *v, size_t vn,
                            unsigned flags);
/* Delete the item at the cursor; re-position before the next get. */
SYNC_PRIVATE int sx_cur_del(sx_store *st, sx_scur *c);
SYNC_PRIVATE void sx_cur_close(sx_scur *c);

#endif
