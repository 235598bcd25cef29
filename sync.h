/*
 * sync.h - embedded storage engine on LMDB with change tracking for
 * replication.  This is the only header a user includes; if it is not in
 * this file, it is not API.
 *
 * Use: copy sync.h and sync.c into the project, compile sync.c as C11 and
 * link -llmdb -lzstd -lxxhash.  Or, with the single-header build
 * (amalgamate.py --single-header), #define SYNC_IMPLEMENTATION in exactly
 * one translation unit before including it.
 *
 * Conventions (after LMDB): objects are env -> txn -> cursor; every call
 * returns int, 0 on success or a negative SYNC_E* code; new objects come
 * back through a trailing **out; destructors accept NULL.  Errors never
 * carry errno: sync_env_native_error() tells what LMDB or the OS said.
 *
 * Memory: every allocation of the library goes through the sync_allocator
 * given to sync_env_create().  LMDB itself allocates through libc; that is
 * outside the library's control.
 *
 * Compile-time options (define before compiling sync.c; none of them
 * changes the layout of a public struct or the ABI):
 *   SYNC_MAX_TABLES        tables per database (default 64, at most 1000)
 *   SYNC_MAX_COLUMNS       columns per table (default 64, at most 4096)
 *   SYNC_MAX_VALUE         bytes of one TEXT/BLOB value (default 16 MiB)
 *   SYNC_DEFAULT_MAPSIZE   initial map size in bytes (default 64 MiB on
 *                          32-bit targets, 1 GiB on 64-bit ones)
 *   SYNC_OMIT_DEFAULT_RANDOM  no /dev/urandom default for site ids; the
 *                          application must call sync_env_set_random()
 *                          before creating a database (firmware builds)
 */
#ifndef SYNC_H
#define SYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SYNC_API
#define SYNC_API
#endif

#define SYNC_VERSION_MAJOR 0
#define SYNC_VERSION_MINOR 1
#define SYNC_VERSION_PATCH 0
#define SYNC_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------
 * Errors.  One range, -1 .. -99.  SYNC_NOTFOUND is a normal outcome
 * (absent row, end of iteration), not a failure.  The "fatal" tier
 * (SYNC_ECORRUPT, SYNC_EPANIC) means the environment should be closed.
 * ------------------------------------------------------------------- */
#define SYNC_OK 0
#define SYNC_NOTFOUND (-1)    /* no such row, table or column; end of data */
#define SYNC_EINVAL (-2)      /* invalid argument or call out of order */
#define SYNC_ENOMEM (-3)      /* the allocator returned NULL */
#define SYNC_EIO (-4)         /* the OS reported an I/O error */
#define SYNC_ENOSPC (-5)      /* the file system is full, the quota is
                                 used up, or the file reached its size
                                 limit (EFBIG: RLIMIT_FSIZE, the file
                                 system's maximum); the native error
                                 tells which.  LMDB reports a write cut
                                 short by a full disk as EIO, so a full
                                 disk may also show as SYNC_EIO with
                                 native error EIO */
#define SYNC_EMAPFULL (-6)    /* the map is full and cannot grow further */
#define SYNC_EREADONLY (-7)   /* write on a read-only env or transaction */
#define SYNC_ESCHEMA (-8)     /* declared schema differs from the file's */
#define SYNC_ENOTDB (-9)      /* the file is not a sync database */
#define SYNC_EVERSION (-10)   /* file made by an incompatible version */
#define SYNC_EBUSY (-11)      /* resource busy: readers full, txn active */
#define SYNC_ETOOBIG (-12)    /* key or value longer than allowed */
#define SYNC_ETYPE (-13)      /* value type does not match the column */
#define SYNC_ECONSTRAINT (-14) /* NULL into a NOT NULL column */
#define SYNC_ELIMIT (-15)     /* too many tables, columns or values */
#define SYNC_EEXIST (-16)     /* table or column already exists */
#define SYNC_ETXN (-17)       /* transaction failed earlier; abort it */
#define SYNC_EACCES (-18)     /* permission denied by the OS */
#define SYNC_ECORRUPT (-19)   /* fatal: checksum mismatch or damaged file */
#define SYNC_EPANIC (-20)     /* fatal: LMDB reported an unrecoverable state */

/* A static English description of err; never NULL, also for unknown
 * codes. */
SYNC_API const char *sync_strerror(int err);

/* ---------------------------------------------------------------------
 * Values and schema
 * ------------------------------------------------------------------- */
#define SYNC_NULL 0
#define SYNC_INTEGER 1
#define SYNC_REAL 2
#define SYNC_TEXT 3
#define SYNC_BLOB 4

/* A typed value.  TEXT and BLOB point at bytes that the caller owns when
 * writing; values read back point into the database map and stay valid
 * until the transaction ends (in a write transaction: until its next
 * write). TEXT is not NUL-terminated. */
typedef struct sync_value {
  int type; /* SYNC_NULL .. SYNC_BLOB */
  union {
    int64_t i; /* SYNC_INTEGER */
    double r;  /* SYNC_REAL */
    struct {
      const void *data; /* SYNC_TEXT, SYNC_BLOB */
      size_t len;
    };
  };
} sync_value;

static inline sync_value sync_null(void) {
  sync_value v;
  v.type = SYNC_NULL;
  v.data = NULL;
  v.len = 0;
  return v;
}
static inline sync_value sync_int(int64_t i) {
  sync_value v;
  v.type = SYNC_INTEGER;
  v.data = NULL;
  v.len = 0;
  v.i = i;
  return v;
}
static inline sync_value sync_real(double r) {
  sync_value v;
  v.type = SYNC_REAL;
  v.data = NULL;
  v.len = 0;
  v.r = r;
  return v;
}
static inline sync_value sync_text(const char *s, size_t len) {
  sync_value v;
  v.type = SYNC_TEXT;
  v.data = s;
  v.len = len;
  return v;
}
static inline sync_value sync_blob(const void *p, size_t len) {
  sync_value v;
  v.type = SYNC_BLOB;
  v.data = p;
  v.len = len;
  return v;
}

/* A primary key: bytes, compared with memcmp order (shorter first on a
 * common prefix).  1 to SYNC_MAX_KEY bytes. */
#define SYNC_MAX_KEY 511
typedef struct sync_key {
  const void *data;
  size_t len;
} sync_key;

/* INTEGER primary keys are stored as 8 bytes that sort in numeric order.
 * sync_key_int writes them to out; sync_key_int_decode reads them back. */
SYNC_API void sync_key_int(int64_t v, unsigned char out[8]);
SYNC_API int64_t sync_key_int_decode(const unsigned char in[8]);

/* Column flags */
#define SYNC_COL_NOTNULL 0x1u /* NULL is refused with SYNC_ECONSTRAINT */
#define SYNC_COL_LOCAL 0x2u   /* kept on this device, never replicated */

typedef struct sync_column_def {
  const char *name; /* 1..63 bytes, unique in its table */
  int type;         /* SYNC_INTEGER, SYNC_REAL, SYNC_TEXT or SYNC_BLOB */
  unsigned flags;   /* SYNC_COL_* */
} sync_column_def;

typedef struct sync_table_def {
  const char *name; /* 1..63 bytes, unique in the database */
  int key_type;     /* SYNC_TEXT, SYNC_BLOB or SYNC_INTEGER (8-byte keys
                       made by sync_key_int) */
  const sync_column_def *columns;
  unsigned ncolumns; /* 1..SYNC_MAX_COLUMNS */
} sync_table_def;

/* ---------------------------------------------------------------------
 * Environment
 * ------------------------------------------------------------------- */
typedef struct sync_env sync_env;
typedef struct sync_txn sync_txn;
typedef struct sync_cursor sync_cursor;
typedef struct sync_changes sync_changes;

/* Allocator hooks: all three or none.  ctx is passed back unchanged.
 * realloc(ctx, NULL, n) must behave as malloc; free(ctx, NULL) must be
 * harmless. */
typedef struct sync_allocator {
  void *ctx;
  void *(*malloc)(void *ctx, size_t size);
  void *(*realloc)(void *ctx, void *ptr, size_t size);
  void (*free)(void *ctx, void *ptr);
} sync_allocator;

/* Make an environment handle.  alloc may be NULL for libc; it is copied.
 * Errors: SYNC_EINVAL (out NULL, or a partial allocator), SYNC_ENOMEM. */
SYNC_API int sync_env_create(const sync_allocator *alloc, sync_env **out);

/* Durability modes (see DESIGN and docs/API.md):
 *  SYNC_DURABLE_FULL      data and meta page synced at every commit: a
 *                         power cut loses no commit that returned 0.
 *  SYNC_DURABLE_NOMETASYNC  meta page not synced: a power cut may lose the
 *                         last commit, never corrupts the file.
 *  SYNC_DURABLE_NOSYNC    nothing synced at commit: survives a crash of
 *                         the process, NOT of the system - LMDB documents
 *                         that a system crash or power cut may then
 *                         corrupt the file.  sync_env_sync() flushes, but
 *                         unsynced commits after it can still make a
 *                         power cut lose or damage what it flushed.
 * In every mode, a power cut while sync_env_open() creates a new file,
 * before that first commit is on disk, can leave a file LMDB refuses:
 * open then fails with SYNC_ENOTDB.  Nothing had been committed; remove
 * the file (and its -lock) and create it again.  docs/RELIABILITY.md has
 * the tests behind these sentences. */
#define SYNC_DURABLE_FULL 0
#define SYNC_DURABLE_NOMETASYNC 1
#define SYNC_DURABLE_NOSYNC 2

/* Set before sync_env_open().  Errors: SYNC_EINVAL (bad mode, or the env
 * is already open). */
SYNC_API int sync_env_set_durability(sync_env *env, int mode);

/* Map size: the map starts at initial bytes and doubles (at the start of
 * a write transaction, when more than half is in use) up to max bytes.
 * 0 keeps the default.  Set before open.  Errors: SYNC_EINVAL. */
SYNC_API int sync_env_set_mapsize(sync_env *env, size_t initial, size_t max);

/* Time source for the hybrid logical clock: milliseconds since the Unix
 * epoch.  Default: C11 timespec_get().  May be set before or after open;
 * it must not be changed while a transaction is open.  Errors:
 * SYNC_EINVAL. */
typedef uint64_t (*sync_clock_fn)(void *ctx);
SYNC_API int sync_env_set_clock(sync_env *env, sync_clock_fn now_ms, void *ctx);

/* Randomness for the site id made when a database is created: fill buf
 * with n unpredictable bytes, return 0, or nonzero on failure.  Default:
 * /dev/urandom.  Set before open (SYNC_EINVAL after).  Errors:
 * SYNC_EINVAL. */
typedef int (*sync_random_fn)(void *ctx, void *buf, size_t n);
SYNC_API int sync_env_set_random(sync_env *env, sync_random_fn fill,
                                 void *ctx);

/* Declare the schema this program expects.  The definitions are copied.
 * At open, a new file takes this schema; an existing file must hold the
 * same one (same tables, columns, types and flags, in the same order),
 * else open fails with SYNC_ESCHEMA and sync_env_errmsg() says what
 * differs.  Without a declared schema, open takes the file's.  Errors:
 * SYNC_EINVAL (bad names, types, duplicates, env already open),
 * SYNC_ELIMIT, SYNC_ENOMEM. */
SYNC_API int sync_env_set_schema(sync_env *env, const sync_table_def *tables,
                                 unsigned ntables);

/* Open flags */
#define SYNC_OPEN_RDONLY 0x1u   /* no writes; the file must exist */
#define SYNC_OPEN_NOCREATE 0x2u /* fail with SYNC_NOTFOUND if absent */

/* Open (or create) the database in the single file at path, plus LMDB's
 * lock file path-lock.  Errors: SYNC_EINVAL, SYNC_NOTFOUND (absent with
 * NOCREATE/RDONLY), SYNC_ENOTDB, SYNC_EVERSION, SYNC_ESCHEMA, SYNC_EACCES,
 * SYNC_EIO, SYNC_ENOSPC, SYNC_ECORRUPT (file shorter than its header
 * says), SYNC_ENOMEM.  On failure the env may be configured and opened
 * again. */
SYNC_API int sync_env_open(sync_env *env, const char *path, unsigned flags);

/* Close and free.  All transactions must have ended.  NULL is ignored. */
SYNC_API void sync_env_close(sync_env *env);

/* Flush to disk (for SYNC_DURABLE_NOSYNC / NOMETASYNC).  Errors:
 * SYNC_EIO, SYNC_EINVAL. */
SYNC_API int sync_env_sync(sync_env *env);

/* This replica's 16-byte site id.  Errors: SYNC_EINVAL (not open). */
SYNC_API int sync_env_site_id(sync_env *env, uint8_t out[16]);

/* A description of the last failure on env (what differed, which native
 * call failed); "" when none.  Owned by env, valid until its next call.
 * Not meaningful when several threads fail at once: the first of them
 * writes it, and a thread reading it while another fails may see either
 * message. */
SYNC_API const char *sync_env_errmsg(sync_env *env);
/* The native LMDB or errno code behind the last failure, 0 if none. */
SYNC_API int sync_env_native_error(sync_env *env);

/* Schema introspection, valid after open. */
SYNC_API unsigned sync_env_table_count(sync_env *env);
/* Table id by name. Errors: SYNC_NOTFOUND, SYNC_EINVAL. */
SYNC_API int sync_env_table(sync_env *env, const char *name, unsigned *out);
/* The definition of table id; pointers owned by env, valid until the
 * schema changes or the env closes.  Errors: SYNC_NOTFOUND, SYNC_EINVAL. */
SYNC_API int sync_env_table_def(sync_env *env, unsigned table,
                                sync_table_def *out);
/* Column index by name.  Errors: SYNC_NOTFOUND, SYNC_EINVAL. */
SYNC_API int sync_env_column(sync_env *env, unsigned table, const char *name,
                             unsigned *out);
/* Schema version (starts at 1, +1 per change) and hash (XXH3 of the
 * canonical definition; equal on replicas with equal schemas). */
SYNC_API int sync_env_schema_info(sync_env *env, uint64_t *version,
                                  uint64_t *hash);

/* Schema changes, each in its own committed write transaction.  No other
 * transaction of this env may be active (SYNC_EBUSY).  Existing rows read
 * the new column as NULL until written, so a new column must allow NULL
 * (SYNC_ECONSTRAINT otherwise).  Errors: SYNC_EEXIST, SYNC_EINVAL,
 * SYNC_ELIMIT, SYNC_EREADONLY, SYNC_ECONSTRAINT, I/O errors. */
SYNC_API int sync_env_add_column(sync_env *env, unsigned table,
                                 const sync_column_def *col);
SYNC_API int sync_env_add_table(sync_env *env, const sync_table_def *def,
                                unsigned *out);

/* ---------------------------------------------------------------------
 * Transactions.  One write transaction at a time per database (LMDB
 * serialises writers, also across processes); any number of read
 * transactions, each a consistent snapshot that a writer never disturbs.
 * A transaction belongs to one thread at a time, and may be handed to
 * another thread between calls.
 * ------------------------------------------------------------------- */
#define SYNC_TXN_RDONLY 0x1u

/* Errors: SYNC_EINVAL, SYNC_EREADONLY (write txn on a read-only env),
 * SYNC_EBUSY (too many readers), SYNC_ESCHEMA (another process changed
 * the schema: reopen), SYNC_ENOMEM, SYNC_EIO, SYNC_ECORRUPT. */
SYNC_API int sync_txn_begin(sync_env *env, unsigned flags, sync_txn **out);

/* Commit and free the transaction, whatever the result.  All changes are
 * stamped with one hybrid logical clock value and one local version.
 * Errors: SYNC_ETXN (an earlier call in this txn failed in a way that
 * left it unusable; nothing is committed), SYNC_EMAPFULL, SYNC_ENOSPC,
 * SYNC_EIO. */
SYNC_API int sync_txn_commit(sync_txn *txn);

/* Discard and free. NULL is ignored. */
SYNC_API void sync_txn_abort(sync_txn *txn);

/* The local version of the snapshot (read) or the last committed one
 * (write, before its own changes).  0 for an empty database. */
SYNC_API uint64_t sync_txn_version(sync_txn *txn);

/* ---------------------------------------------------------------------
 * Rows.  table is the id from the schema (declaration order).  Writes
 * need a write transaction (SYNC_EREADONLY otherwise).  Errors common to
 * all: SYNC_EINVAL (bad table, NULL pointers, empty key),
 * SYNC_ETOOBIG (key > SYNC_MAX_KEY, value > SYNC_MAX_VALUE),
 * SYNC_ECORRUPT (a stored row failed its checksum), SYNC_EMAPFULL,
 * SYNC_ENOSPC, SYNC_EIO, SYNC_ENOMEM.  After EMAPFULL, ENOSPC, EIO or
 * ENOMEM inside LMDB the transaction is unusable: commit returns
 * SYNC_ETXN; abort it, and the next transaction starts with a grown map.
 * ------------------------------------------------------------------- */

/* Insert or replace the row: vals holds one value per column (nvals must
 * equal the column count, SYNC_EINVAL otherwise).  Only columns whose
 * value changes are stamped and logged.  Errors: SYNC_ETYPE,
 * SYNC_ECONSTRAINT. */
SYNC_API int sync_put(sync_txn *txn, unsigned table, const void *key,
                      size_t klen, const sync_value *vals, unsigned nvals);

/* Set the columns cols[0..n) of an existing row to vals[0..n).  Errors:
 * SYNC_NOTFOUND (no live row), SYNC_ETYPE, SYNC_ECONSTRAINT. */
SYNC_API int sync_update(sync_txn *txn, unsigned table, const void *key,
                         size_t klen, const unsigned *cols,
                         const sync_value *vals, unsigned n);

/* Delete the row, leaving a tombstone that replication needs.  Errors:
 * SYNC_NOTFOUND (no live row). */
SYNC_API int sync_delete(sync_txn *txn, unsigned table, const void *key,
                         size_t klen);

/* Read the row into vals[0..nvals) (nvals <= column count; columns added
 * after the row was written read as NULL).  Errors: SYNC_NOTFOUND. */
SYNC_API int sync_get(sync_txn *txn, unsigned table, const void *key,
                      size_t klen, sync_value *vals, unsigned nvals);

/* 1 if a live row has this key, 0 if not, or a negative error. */
SYNC_API int sync_contains(sync_txn *txn, unsigned table, const void *key,
                           size_t klen);

/* Number of live rows in table, as of the transaction's view. */
SYNC_API int sync_count(sync_txn *txn, unsigned table, uint64_t *out);

/* Batches.  put_many writes nrows rows; vals holds nrows * ncolumns
 * values, row after row.  It stops at the first failure and returns it;
 * *done (may be NULL) says how many rows were written before it. */
SYNC_API int sync_put_many(sync_txn *txn, unsigned table, const sync_key *keys,
                           const sync_value *vals, size_t nrows, size_t *done);
/* Delete each key that has a live row; *ndeleted (may be NULL) counts
 * them; absent keys are skipped, not an error. */
SYNC_API int sync_delete_many(sync_txn *txn, unsigned table,
                              const sync_key *keys, size_t n,
                              size_t *ndeleted);
/* Read n rows: found[i] is 1 and vals[i*nvals ..] filled when key i has a
 * live row, else found[i] is 0 and its values are NULL. */
SYNC_API int sync_get_many(sync_txn *txn, unsigned table, const sync_key *keys,
                           size_t n, sync_value *vals, unsigned nvals,
                           int *found);

/* ---------------------------------------------------------------------
 * Cursors: live rows in key order, optionally within [lo, hi).
 * ------------------------------------------------------------------- */

/* Errors: SYNC_EINVAL, SYNC_ENOMEM. */
SYNC_API int sync_cursor_open(sync_txn *txn, unsigned table,
                              sync_cursor **out);
/* Restrict to lo <= key < hi and restart from the beginning; a NULL bound
 * is open.  Errors: SYNC_EINVAL. */
SYNC_API int sync_cursor_range(sync_cursor *cur, const void *lo, size_t lolen,
                               const void *hi, size_t hilen);
/* The next live row: key (pointing into the map) and up to nvals values.
 * Returns SYNC_NOTFOUND after the last row.  Writes through the same
 * transaction restart nothing: the cursor continues after the last key it
 * returned. */
SYNC_API int sync_cursor_next(sync_cursor *cur, sync_key *key, sync_value *vals,
                              unsigned nvals);
/* Free the cursor; must precede the end of its transaction.  NULL ok. */
SYNC_API void sync_cursor_close(sync_cursor *cur);

/* ---------------------------------------------------------------------
 * Change tracking.  Every committed write takes the next local version;
 * each row remembers the version that last changed it, its causal length
 * (odd = live, even = deleted) and, per column, the stamp that wrote it
 * and the stamp it replaced (its base).
 * ------------------------------------------------------------------- */
typedef struct sync_stamp {
  uint64_t hlc;     /* 48 bits of milliseconds, 16 bits of counter */
  uint8_t site[16]; /* the replica that wrote it */
} sync_stamp;

typedef struct sync_change {
  unsigned table;
  sync_key key;        /* points into the map, valid until the next call */
  uint64_t version;    /* local version that last changed the row */
  uint64_t causal_length; /* odd: live; even: deleted (a tombstone) */
  sync_stamp row_stamp;   /* stamp of the insert or delete that set it */
  unsigned ncolumns;      /* columns stored in the row (0 for tombstones) */
} sync_change;

/* Iterate rows changed after local version `since`, in version order, each
 * row once (its latest state).  Errors: SYNC_EINVAL, SYNC_ENOMEM. */
SYNC_API int sync_changes_open(sync_txn *txn, uint64_t since,
                               sync_changes **out);
/* Next changed row, or SYNC_NOTFOUND at the end.  Errors: SYNC_ECORRUPT. */
SYNC_API int sync_changes_next(sync_changes *it, sync_change *out);
/* Column col of the current row: its value, the stamp that wrote it and
 * the stamp it replaced (base->hlc == 0 when it replaced nothing).  Any
 * out pointer may be NULL.  Returns SYNC_NOTFOUND for a column never
 * written (added later, or a tombstone). */
SYNC_API int sync_changes_column(sync_changes *it, unsigned col,
                                 sync_value *val, sync_stamp *stamp,
                                 sync_stamp *base);
SYNC_API void sync_changes_close(sync_changes *it);

/* ---------------------------------------------------------------------
 * Replication between replicas, in process.  A receiver describes what it
 * has (sync_request_make: its cursor in the sender's log and its version
 * vector); the sender cuts the next delta chunk for it (sync_delta_make);
 * the receiver applies the chunk atomically with its new cursor
 * (sync_delta_apply).  Repeat until a chunk says it was the last.
 * Chunks may be lost, repeated or reordered: a repeated chunk changes
 * nothing, a chunk past a gap is merged but does not move the cursor, and
 * the version vector rises only when an unbroken run of chunks reaches
 * the last one.  Merge: per column last-writer-wins by (causal length,
 * HLC, site id); deletes and re-inserts by causal length.
 * ------------------------------------------------------------------- */
typedef struct sync_request sync_request;
typedef struct sync_delta sync_delta;

/* Receiver side: what this replica holds of sender's data.  Errors:
 * SYNC_EINVAL (sender is this replica), SYNC_ENOMEM. */
SYNC_API int sync_request_make(sync_txn *txn, const uint8_t sender[16],
                               sync_request **out);
SYNC_API void sync_request_free(sync_request *req);
/* Sender side: record that the requester holds everything of this
 * replica up to the cursor in req (what it asks for next).  Tombstones are
 * collected only once every known peer has acknowledged them.  Needs a
 * write transaction.  Errors: SYNC_EINVAL, SYNC_EREADONLY. */
SYNC_API int sync_request_ack(sync_txn *txn, const sync_request *req);

typedef struct sync_delta_opts {
  size_t max_rows;  /* rows per chunk; 0 = 1,000 */
  size_t max_bytes; /* approximate value bytes per chunk; 0 = 1 MiB */
} sync_delta_opts;

/* Sender side: the next chunk for the requester, cut from txn's snapshot
 * (a read transaction is enough).  Rows whose every change the requester
 * already has are left out, and so are SYNC_COL_LOCAL columns.  When the
 * requester holds nothing of this replica yet, rows come table by table in
 * key order (initial sync).  opts may be NULL.  Errors: SYNC_EINVAL
 * (request meant for another sender, or from this replica), SYNC_ENOMEM,
 * SYNC_ECORRUPT. */
SYNC_API int sync_delta_make(sync_txn *txn, const sync_request *req,
                             const sync_delta_opts *opts, sync_delta **out);
/* Rows in the chunk, and whether it is the last one of its delta. */
SYNC_API size_t sync_delta_rows(const sync_delta *d);
SYNC_API int sync_delta_last(const sync_delta *d);
SYNC_API void sync_delta_free(sync_delta *d);

/* Apply policies */
#define SYNC_APPLY_MERGE 0  /* LWW merge (default) */
#define SYNC_APPLY_NEWER 1  /* take a remote row only if its newest stamp is
                               newer than the local row's newest */
#define SYNC_APPLY_APPEND 2 /* insert rows that are absent; never touch a
                               row that exists (live or deleted) */
#define SYNC_APPLY_DRY_RUN 0x100 /* flag: count what would change, write
                                    nothing, do not move the cursor */

typedef struct sync_apply_report {
  uint64_t rows;      /* rows in the chunk */
  uint64_t inserted;  /* rows that became live (new or re-inserted) */
  uint64_t updated;   /* live rows with at least one column taken */
  uint64_t deleted;   /* rows that became tombstones */
  uint64_t unchanged; /* rows where the local state already won */
  uint64_t conflicts; /* conflicts recorded (or, in a dry run, found) */
  int cursor_moved;   /* the chunk continued the run: cursor advanced */
  int vector_raised;  /* the run reached the last chunk */
} sync_apply_report;

/* Apply chunk d in the write transaction txn, together with the sender's
 * new cursor; commit txn to make both durable at once.  rep may be NULL.
 * A chunk that ends at or before this replica's cursor was already
 * brought by the run and is skipped whole (all rows unchanged).
 * Errors: SYNC_EINVAL (d comes from this replica, or was cut for another
 * one: it leaves out what that one holds), SYNC_ESCHEMA (d was cut under
 * another schema), SYNC_EREADONLY, storage errors. */
SYNC_API int sync_delta_apply(sync_txn *txn, const sync_delta *d, int policy,
                              sync_apply_report *rep);

/* Conflict classes of an incoming row against the local one */
#define SYNC_NO_CONFLICT 0     /* local row absent or identical */
#define SYNC_SOURCE_MODIFIED 1 /* only the sender changed it: clean update */
#define SYNC_TARGET_MODIFIED 2 /* only this replica changed it: kept */
#define SYNC_BOTH_MODIFIED 3   /* both changed the same column */
#define SYNC_DELETED_SOURCE 4  /* sender deleted what this replica updated */
#define SYNC_DELETED_TARGET 5  /* sender updated what this replica deleted */

/* Resolver: called during apply for each real conflict (BOTH_MODIFIED per
 * column; DELETED_* per row with column SYNC_ROW).  Return
 * SYNC_RESOLVE_DEFAULT to keep the LWW outcome, SYNC_RESOLVE_LOCAL or
 * SYNC_RESOLVE_REMOTE to force one side, or SYNC_RESOLVE_MERGED after
 * filling *merged (columns only; value bytes must stay valid until apply
 * returns).  A forced or merged outcome is written with a new local stamp,
 * so it wins and replicates.  For rows: LOCAL on DELETED_SOURCE keeps this
 * replica's row (re-inserted above the sender's delete); REMOTE on
 * DELETED_TARGET brings the row back with the sender's columns; the other
 * choices keep the delete.  Conflicts are detected from stamps: a column
 * whose incoming base is not the local stamp (and not one writer's later
 * write); a delete versus an update whose HLC is later than the delete's
 * (an update with an earlier HLC may have been seen by the deleter, so it
 * is not reported; the delete wins either way). */
#define SYNC_ROW 0xffffffffu
#define SYNC_RESOLVE_DEFAULT 0
#define SYNC_RESOLVE_LOCAL 1
#define SYNC_RESOLVE_REMOTE 2
#define SYNC_RESOLVE_MERGED 3
typedef struct sync_conflict {
  uint64_t id;     /* position in the conflict log */
  int kind;        /* SYNC_BOTH_MODIFIED, SYNC_DELETED_* */
  unsigned table;
  sync_key key;
  unsigned column; /* SYNC_ROW for row-level conflicts */
  sync_value local, remote;
  sync_stamp local_stamp, remote_stamp;
  int remote_won;  /* the outcome applied */
  int resolved;    /* marked resolved by the application */
} sync_conflict;
typedef int (*sync_resolver_fn)(void *ctx, const sync_conflict *c,
                                sync_value *merged);
SYNC_API int sync_env_set_resolver(sync_env *env, sync_resolver_fn fn,
                                   void *ctx);

/* Callbacks after a successful commit (local writes or applied deltas):
 * one call per changed row (table, key) and per recorded conflict.  They
 * run on the committing thread, after the data is durable; they must not
 * begin a write transaction on the same env. */
typedef void (*sync_change_fn)(void *ctx, unsigned table, const void *key,
                               size_t klen);
typedef void (*sync_conflict_fn)(void *ctx, const sync_conflict *c);
SYNC_API int sync_env_set_on_change(sync_env *env, sync_change_fn fn,
                                    void *ctx);
SYNC_API int sync_env_set_on_conflict(sync_env *env, sync_conflict_fn fn,
                                      void *ctx);

/* The conflict log.  Iterate recorded conflicts (all, or only unresolved
 * with SYNC_CONFLICTS_UNRESOLVED); values point into the map, valid until
 * the next call. */
#define SYNC_CONFLICTS_UNRESOLVED 0x1u
typedef struct sync_conflicts sync_conflicts;
SYNC_API int sync_conflicts_open(sync_txn *txn, unsigned flags,
                                 sync_conflicts **out);
SYNC_API int sync_conflicts_next(sync_conflicts *it, sync_conflict *out);
SYNC_API void sync_conflicts_close(sync_conflicts *it);
/* Mark one conflict resolved (SYNC_NOTFOUND if no such id), or all of
 * them (*n counts those marked; may be NULL). */
SYNC_API int sync_conflict_resolve(sync_txn *txn, uint64_t id);
SYNC_API int sync_conflicts_resolve_all(sync_txn *txn, uint64_t *n);

/* Version vector: sites and the highest HLC this replica holds all changes
 * of.  Writes up to cap entries and the total count to *n. */
SYNC_API int sync_vv_get(sync_txn *txn, sync_stamp *out, size_t cap,
                         size_t *n);

/* Tombstones: delete those every known peer has acknowledged (received in
 * a completed delta).  *collected (may be NULL) counts them.  New rows of
 * a table then start above the largest causal length collected, so a key
 * re-inserted after collection still wins over peers that kept the
 * tombstone.  A replica that knows no peer collects nothing. */
SYNC_API int sync_gc(sync_txn *txn, uint64_t *collected);
/* Tombstones still kept. */
SYNC_API int sync_tombstones(sync_txn *txn, uint64_t *out);

/* Content digest: XXH3-64 over the live rows in key order (keys and
 * values of replicated columns; SYNC_COL_LOCAL columns, stamps and other
 * metadata excluded), of one table or, with
 * SYNC_ALL_TABLES, of all tables in order.  Replicas holding the same data
 * have the same digest. */
#define SYNC_ALL_TABLES 0xffffffffu
SYNC_API int sync_digest(sync_txn *txn, unsigned table, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* SYNC_H */
