/*
 * sync.h - embedded storage engine on LMDB with change tracking for
 * replication.  This is the only header a user includes; if it is not in
 * this file, it is not API.
 *
 * Use: copy sync.h and sync.c into the project, compile sync.c as C11 and
 * link -llmdb -lzstd -lxxhash.  Or, with the single-header build
 * (amalgamate.py --single-header), #define SYNC_IMPLEMENTATION in exactly
 * one translation unit before including it, best ahead of any other
 * #include there: the implementation uses POSIX calls and defines
 * _POSIX_C_SOURCE when the program did not.  After other includes it
 * still compiles, but a strict ISO C build then hides CLOCK_MONOTONIC
 * and the stats fall back to timespec_get (README.md, "Embedding").
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
 *   SYNC_OMIT_ZSTD         no compression: frames are written stored, and
 *                          a compressed frame decodes to SYNC_ENOTSUP
 *                          (smallest builds; no -lzstd needed)
 *   SYNC_OMIT_REPAIR       no range repair: a repair session (either
 *                          side) ends with SYNC_ENOTSUP (firmware that
 *                          syncs only; about 11 KiB less on armhf)
 *   SYNC_OMIT_ENCODER      decoder only: sync_encoder_create and
 *                          sync_dict_train return SYNC_ENOTSUP, and so
 *                          does sync_session_create (a session sends
 *                          frames); frames still decode, to be applied
 *                          with sync_delta_apply (firmware that only
 *                          receives)
 *   SYNC_OMIT_DEFAULT_SLEEP no nanosleep default for the retry helper:
 *                          sync_retry_opts.sleep is required
 *   SYNC_OMIT_DEFAULT_RANDOM  no /dev/urandom default for site ids; the
 *                          application must call sync_env_set_random()
 *                          before creating a database (firmware builds)
 *   SYNC_OMIT_GROUP_COMMIT no group commit: SYNC_TXN_GROUP begins a plain
 *                          write transaction (builds without pthreads;
 *                          implied on Windows)
 *   SYNC_OMIT_ATOMICS      stats counters as plain integers instead of
 *                          C11 atomics (targets without them; the stats
 *                          are then exact only with one thread per env)
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
                                 short as EIO: where the file then may
                                 not grow (no block left, or at its size
                                 limit) that is SYNC_ENOSPC too, with
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
#define SYNC_EFORMAT (-21)    /* malformed batch frame (bad magic, lengths,
                                 references or order) */
#define SYNC_ECHECKSUM (-22)  /* batch frame fails its XXH3-64 checksum */
#define SYNC_EDICT (-23)      /* frame compressed with a dictionary this
                                 decoder does not have */
#define SYNC_ENOTSUP (-24)    /* feature left out of this build (e.g.
                                 compression under SYNC_OMIT_ZSTD) */
#define SYNC_EPERM (-25)      /* refused by the rights granted to the peer */
#define SYNC_EPROTO (-26)     /* protocol violation: unexpected or malformed
                                 session message */
#define SYNC_EPEER (-27)      /* the peer ended the session with an error
                                 (sync_session_errmsg says which) */
#define SYNC_ECLOSED (-28)    /* the transport closed before the session
                                 was done */
#define SYNC_ETIMEOUT (-29)   /* the peer said nothing for too long */
#define SYNC_ESTALE (-30)     /* the requester is behind the sender's last
                                 tombstone collection: reset and sync from
                                 the start (sync_peer_reset) */
#define SYNC_EHISTORY (-31)   /* a peer holds a log of this replica that is
                                 not this file's: it was restored from a
                                 backup or copied.  A session takes a new
                                 site id itself (sync_site_renew) and ends
                                 with this code: sync again, nothing is
                                 lost */
#define SYNC_EPRUNED (-32)    /* an as-of point before what a table's
                                 history keeps (its retention removed
                                 the versions it needs), or a table that
                                 keeps no history (sync_env_set_history) */

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
/* Column type only: a counter (a PN-counter CRDT) that replicas add to
 * concurrently without losing an add.  It reads as SYNC_INTEGER (the sum
 * of every add of the row's current incarnation; 0 before the first),
 * changes only through sync_counter_add, and takes no value from
 * sync_put (pass SYNC_NULL there) or sync_update (SYNC_ETYPE).
 * docs/FORMAT.md, "Counter columns". */
#define SYNC_COUNTER 5

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
#define SYNC_COL_LOCAL 0x2u   /* kept on this device, never replicated:
                                 never sent, and a peer's value for it
                                 (a peer whose schema does not mark it
                                 local) is ignored */

typedef struct sync_column_def {
  const char *name; /* 1..63 bytes, unique in its table */
  int type;         /* SYNC_INTEGER, SYNC_REAL, SYNC_TEXT, SYNC_BLOB or
                       SYNC_COUNTER */
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
 *                         (The meta page's sync runs after LMDB's writer
 *                         lock is let go, so the next writer's work
 *                         overlaps it; a commit that then fails with
 *                         SYNC_EIO is in the file but not known to be on
 *                         disk.)
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
 * same one (same tables, columns, types and flags, in the same order) or
 * a prefix of it: a writable open then appends the tables and columns
 * the file lacks (the upgrade of a rolling schema change: one version
 * more, the sums of tables that gained columns rescanned, O(rows); values
 * peers with the newer schema sent before are kept and appear at once).
 * Anything else (a type, a name, a flag, a key type changed, or a new
 * column in an existing table declared NOT NULL) fails with SYNC_ESCHEMA
 * (SYNC_ECONSTRAINT for the NOT NULL) and sync_env_errmsg() says what
 * differs; so does a read-only open that would need the upgrade.
 * Without a declared schema, open takes the file's.  Errors:
 * SYNC_EINVAL (bad names, types, duplicates, env already open),
 * SYNC_ELIMIT, SYNC_ENOMEM. */
SYNC_API int sync_env_set_schema(sync_env *env, const sync_table_def *tables,
                                 unsigned ntables);

/* Open flags */
#define SYNC_OPEN_RDONLY 0x1u   /* no writes; the file must exist */
#define SYNC_OPEN_NOCREATE 0x2u /* fail with SYNC_NOTFOUND if absent */

/* Open (or create) the database in the single file at path, plus LMDB's
 * lock file path-lock.  Errors: SYNC_EINVAL, SYNC_NOTFOUND (absent with
 * NOCREATE/RDONLY), SYNC_ENOTDB (not a sync database; with NOCREATE or
 * RDONLY an empty file, too, which is left as it is and gets no lock
 * file: a plain open makes an empty file a database), SYNC_EVERSION,
 * SYNC_ESCHEMA, SYNC_EACCES,
 * SYNC_EIO, SYNC_ENOSPC, SYNC_ECORRUPT (file shorter than its header
 * says, or a damaged row or log entry met by the upgrade below),
 * SYNC_ENOMEM.  On failure the env may be configured and opened again.
 * A file of an older storage format (1 to 8; docs/FORMAT.md, "File") is
 * upgraded by a writable open, in its transaction: formats 1 and 2 by
 * one scan per table, O(rows), format 3 by its format record (the
 * scope in peer records) and an empty rejection log, and every one of
 * them by moving its change log into records, O(log entries).  A
 * read-only open of such a file fails with SYNC_EVERSION, and
 * sync_env_errmsg() says to open it writable once. */
SYNC_API int sync_env_open(sync_env *env, const char *path, unsigned flags);

/* Close and free.  All transactions must have ended.  NULL is ignored. */
SYNC_API void sync_env_close(sync_env *env);

/* Flush to disk (for SYNC_DURABLE_NOSYNC / NOMETASYNC).  Errors:
 * SYNC_EIO, SYNC_EINVAL. */
SYNC_API int sync_env_sync(sync_env *env);

/* Compaction, like SQLite's VACUUM: a copy of the database in which every
 * tree is written again in key order, its pages full, with no free pages
 * (LMDB's own compacting copy leaves the free pages out too, but keeps
 * each page as empty as deletes left it).  LMDB never shrinks a file:
 * pages freed by deletes, tombstone collection or rewrites are reused by
 * later writes, but the file keeps its largest size, and rows written in
 * random order fill pages about two thirds.  Compact after removing much
 * for good (a large sync_env_gc, a table emptied) when the disk space
 * matters; a file that grows back soon gains little, as its next writes
 * split the full pages again.  It reads the whole file and needs room
 * for the copy.
 *
 * out not NULL: write the compacted copy to the new file out (SYNC_EEXIST
 * if it exists; no lock file is made), from one read snapshot, synced
 * before the call returns; env stays as it was and other transactions,
 * also writes, may run meanwhile.  env may be read-only.  The copy is a
 * copy: opened writable, it takes a new site id (sync_site_renew), as
 * any copied file does, so that two live files never share one.  Use it
 * for backups, or to move a replica's data to another machine.
 *
 * out NULL: compact env's own file in place.  The replica stays itself:
 * same site id, rows, log, version vector and peer cursors, nothing
 * renewed, so its peers continue incrementally.  This needs the file
 * alone: no other process may have it open (SYNC_EBUSY; checked through
 * LMDB's lock file, whose lock is then held so that a process opening
 * the file meanwhile waits until the new file is in place; one opening
 * it read-only may go on reading the old file until it reopens), and no
 * transaction of env may be open (SYNC_EBUSY) nor begin on another
 * thread during the call.  The copy goes to path.compact beside the file
 * (removed on failure, and when left by a crash, by the next compaction)
 * and is renamed over it, with the writer lock held from the snapshot to
 * the rename; a crash leaves either the old file or the new one, whole.
 * Afterwards env works on the new file.  If that reopening fails (the
 * error says so) env holds no file: close it and open the file again.
 * Opening the same file twice in one process is not allowed by LMDB, and
 * cannot be detected here.
 *
 * Errors: SYNC_EINVAL (env NULL or not open, out ""), SYNC_EEXIST,
 * SYNC_EBUSY, SYNC_EREADONLY (in place on a read-only env), SYNC_ENOSPC
 * (no room for the copy: the original is untouched), SYNC_EMAPFULL,
 * SYNC_EACCES, SYNC_ENOTSUP (in place, on a platform without POSIX file
 * locks), SYNC_EIO, SYNC_ENOMEM.  sync_env_errmsg() names the file and
 * the cause. */
SYNC_API int sync_env_compact(sync_env *env, const char *out);

/* This replica's 16-byte site id, as the file holds it now.  It changes
 * when the replica finds it is a copy or a restore (sync_site_renew),
 * whichever process with the file open renews it: every transaction
 * reads it from the file when it begins.  Errors: SYNC_EINVAL (not
 * open), and those of sync_txn_begin. */
SYNC_API int sync_env_site_id(sync_env *env, uint8_t out[16]);

/* Take a new site id, in write transaction txn, with no other transaction
 * of env open.  For a replica restored from a backup or copied from
 * another's file: its rows keep their stamps, the old id becomes an
 * ordinary site of which this replica claims to hold nothing, and every
 * peer's cursor starts again (so peers send back whatever of the old id
 * they hold that the file lost, also what they left out while it
 * claimed it), and what it writes from now on carries the new id.  The library does it by itself
 * when it can tell: sync_env_open when the file is not the one last
 * opened for writing at that path (another device or inode: then every
 * write of the old id the file holds is claimed), a session when the
 * peer holds a log of this replica that is not this file's or claims its
 * writes up to a clock the file never stood at, and an apply that meets
 * a write of its id the file never made (sync_apply_report.renewed); a
 * session then ends with SYNC_EHISTORY: sync again.  It also keeps a renewal record that
 * reaches every replica with runs: replicas that took the old id's claims from
 * this file lower them and start their runs again, so that the writes
 * the file lost reach them too (docs/FORMAT.md, "Version vector"; called
 * here, the record voids every claim of the old id).  Rewrites every row
 * that carries a stamp of this replica.  Errors: SYNC_EINVAL,
 * SYNC_EREADONLY, SYNC_ETXN, SYNC_EIO (the random source failed),
 * storage errors. */
SYNC_API int sync_site_renew(sync_txn *txn);

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

/* This replica's schema in the form peers exchange (docs/PROTOCOL.md,
 * "Schemas"): the canonical bytes whose XXH3-64 is the schema hash.
 * Writes them to buf when they fit in cap bytes and returns their
 * length either way (call with cap 0 to size buf).  Errors (negative):
 * SYNC_EINVAL, SYNC_ENOMEM. */
SYNC_API int64_t sync_env_schema_export(sync_env *env, void *buf, size_t cap);

/* Check a peer's schema (as sync_env_schema_export gave it there)
 * against this replica's: the same tables, key types, and column names,
 * types and NOT NULL flags at every position both have; either side may
 * have columns and tables appended.  On success deltas and requests made
 * under that schema are accepted from now on (until this replica's
 * schema changes), and values they bring for columns and tables beyond
 * this replica's are checked against it; sessions do this in their
 * handshake.  env keeps up to 16 such schemas while it is open.  Errors:
 * SYNC_ESCHEMA (incompatible: sync_env_errmsg() names the table and the
 * column as each side declares it), SYNC_EFORMAT (malformed bytes),
 * SYNC_ELIMIT (16 other schemas kept already: reopen env), SYNC_EINVAL,
 * SYNC_ENOMEM. */
SYNC_API int sync_env_schema_accept(sync_env *env, const void *schema,
                                    size_t len);

/* Schema changes, each in its own committed write transaction.  No other
 * transaction of this env may be active (SYNC_EBUSY).  Existing rows read
 * the new column as NULL until written (a SYNC_COUNTER column as 0), so a
 * new column must allow NULL (SYNC_ECONSTRAINT otherwise).  A counter
 * column makes the file one that code without counters refuses
 * (docs/FORMAT.md, "Schema").  add_column rescans the table (O(rows)):
 * rows written under a newer schema may hold values for the new column,
 * which the digest counts from now on.  Errors: SYNC_EEXIST, SYNC_EINVAL,
 * SYNC_ELIMIT, SYNC_EREADONLY, SYNC_ECONSTRAINT, SYNC_ECORRUPT (a damaged
 * row met by the rescan), SYNC_ENOMEM, I/O errors. */
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
/* Group commit: a write transaction that may share its commit, and the
 * sync of it, with the SYNC_TXN_GROUP transactions other threads of this
 * env commit at the same time.  The first of them begins one LMDB write
 * transaction (the batch) and leads it; each member's work is a nested
 * transaction inside it, one member after another, each seeing the
 * batch's earlier members as committed transactions before it; when the
 * leader commits and no other thread is waiting to join (nor, for at
 * most one commit's time, a thread whose last group commit just
 * returned), it commits the batch with the env's durability (under
 * SYNC_DURABLE_FULL: one sync of data and one of the meta page for the
 * whole batch) and every member's sync_txn_commit returns then, with the
 * batch's result.  So the promise
 * is a plain commit's: 0 only once the transaction is as durable as the
 * mode says, and a power cut loses no commit that returned 0.  What
 * differs:
 *  - a member's commit may fail because the batch's commit failed
 *    (SYNC_ENOSPC, SYNC_EIO, SYNC_EMAPFULL ...): then none of the batch
 *    is committed, as if each had failed alone;
 *  - the leader's sync_txn_commit waits for the members queued behind
 *    it, and its sync_txn_abort commits what they did (it may wait for a
 *    sync); a member's abort ends only its own work;
 *  - a group transaction must end on the thread that began it (the
 *    leader holds LMDB's writer lock), and a thread must not begin a
 *    second write transaction of this env while one of its own is open
 *    (it would wait for itself, as with two plain ones);
 *  - many large transactions in one batch can reach LMDB's limit of
 *    dirty pages per transaction (SYNC_ELIMIT): batch small ones.
 * Use it for many threads making small durable commits: with 4 threads
 * of one-row commits the batch takes the place of 4 syncs.  A single
 * thread gains nothing (its batch holds itself).  Plain and group write
 * transactions may be mixed; they queue for LMDB's writer lock.  Builds
 * without POSIX threads (or with SYNC_OMIT_GROUP_COMMIT) make it a plain
 * write transaction.  docs/API.md, "Group commit". */
#define SYNC_TXN_GROUP 0x2u

/* Errors: SYNC_EINVAL (unknown flags, or RDONLY with GROUP),
 * SYNC_EREADONLY (write txn on a read-only env),
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
 * value changes are stamped and logged.  A SYNC_COUNTER column takes
 * SYNC_NULL and keeps its count (a new row's starts at 0).  Errors:
 * SYNC_ETYPE (also a non-NULL value for a counter), SYNC_ECONSTRAINT. */
SYNC_API int sync_put(sync_txn *txn, unsigned table, const void *key,
                      size_t klen, const sync_value *vals, unsigned nvals);

/* Set the columns cols[0..n) of an existing row to vals[0..n).  Errors:
 * SYNC_NOTFOUND (no live row), SYNC_ETYPE (also any value for a
 * SYNC_COUNTER column: use sync_counter_add), SYNC_ECONSTRAINT. */
SYNC_API int sync_update(sync_txn *txn, unsigned table, const void *key,
                         size_t klen, const unsigned *cols,
                         const sync_value *vals, unsigned n);

/* Add delta (signed) to counter column col of the row: this replica's
 * own running sums of positive and of negated negative adds (each an
 * unsigned 64-bit total that only grows) take it, so adds made on any
 * number of replicas all count, once each, whatever the order,
 * duplication or cutting of the sessions that carry them.  A missing row
 * (or a tombstone) is created (re-inserted above the delete, with every
 * other column unset: NULL, and counters from 0); deleting the row and
 * writing it again starts its counters from 0 (the delete wins over the
 * adds it saw; an add made concurrently with the delete, at the same
 * causal length, is lost with the row, as a concurrent update is).  A
 * read sums the contributions and saturates at INT64_MIN / INT64_MAX.
 * delta 0 changes nothing (no row is created).  Errors: SYNC_EINVAL
 * (col out of range), SYNC_ETYPE (col is not a SYNC_COUNTER column),
 * SYNC_ECONSTRAINT (creating the row would leave a NOT NULL column
 * NULL), SYNC_ELIMIT (this replica's positive or negative total for the
 * cell would pass 2^64 - 1: the add is refused, nothing changes). */
SYNC_API int sync_counter_add(sync_txn *txn, unsigned table, const void *key,
                              size_t klen, unsigned col, int64_t delta);

/* This replica's own share of counter column col of the row: the
 * running totals of its positive adds (*pos) and of its negated
 * negative adds (*neg) in the row's current incarnation; 0 and 0 when
 * it has not added to it since the row was last inserted (by anyone).
 * The value read is the sum of every replica's pos - neg, this one's
 * included.  A program that mirrors a counter elsewhere can set its own
 * share to a total it keeps (add the total minus pos - neg): doing so
 * twice adds nothing the second time.  After a site renewal
 * (sync_site_renew) the adds made before it belong to the old id and
 * no longer count here; after a retirement to this replica
 * (sync_site_retire) its share holds the retired site's totals too, so a
 * total kept from before would take them back out.  pos and neg may be
 * NULL.  Errors:
 * SYNC_NOTFOUND (no live row), SYNC_EINVAL (col out of range),
 * SYNC_ETYPE (col is not a SYNC_COUNTER column). */
SYNC_API int sync_counter_own(sync_txn *txn, unsigned table, const void *key,
                              size_t klen, unsigned col, uint64_t *pos,
                              uint64_t *neg);
/* The sites whose contributions counter column col of the row holds
 * (the metadata it carries: one contribution per site that added to it
 * since the row was last inserted, less the retired sites folded into
 * their heirs, sync_site_retire): up to cap site ids in out, their
 * number in *n.  out may be NULL with cap 0 to count.  Errors: as
 * sync_counter_own. */
SYNC_API int sync_counter_sites(sync_txn *txn, unsigned table, const void *key,
                                size_t klen, unsigned col, uint8_t (*out)[16],
                                size_t cap, size_t *n);

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

/* Number of live rows in table, as of the transaction's view (O(1): a
 * stored count).  Errors: SYNC_EINVAL, SYNC_ECORRUPT (a damaged count
 * record), storage errors. */
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
/* sync_changes_open with flags (0: the same).  SYNC_CHANGES_UNORDERED:
 * the same rows, each once, in an order the library picks by what is
 * cheaper.  When the changes since `since` are many beside the tables'
 * rows (one in 16 or more), it scans the tables, table by table in key
 * order, and lists the rows whose version is above `since`: a sequential
 * read instead of one lookup in the table per change (docs/API.md,
 * "Reading changes").  Else it lists them in version order.  For a
 * reader that takes a whole set at once (an export, a bridge) and does
 * not resume from the version of a row in the middle.  Rows this
 * transaction writes while a scan runs are listed if the scan has not
 * passed their keys yet.  Errors: SYNC_EINVAL (unknown flags),
 * SYNC_ENOMEM, and the storage's. */
#define SYNC_CHANGES_UNORDERED 0x1u
SYNC_API int sync_changes_open_flags(sync_txn *txn, uint64_t since,
                                     unsigned flags, sync_changes **out);
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
 * Row history (docs/API.md, "Row history"; docs/FORMAT.md, "Row
 * history").  A table may keep the versions of its rows that later
 * writes replaced: their values and stamps, the local version and time
 * of the commit that made each, and whether it was a local write or
 * applied from a peer, deletes included.  History is a local policy of
 * one replica: it is not replicated, not part of the schema, and costs
 * tables without it nothing.  A version is recorded by the transaction
 * that replaces it, in that transaction: an aborted one records nothing.
 *
 * Points in the past are local versions (sync_txn_version) or times in
 * milliseconds of the env's clock (sync_env_set_clock): the time of a
 * version is its commit's, never below an earlier commit's, so "as of
 * time T" means after every commit made at or before T.  A point before
 * what the table keeps (before history was turned on, or before a
 * version the retention removed: see sync_history_opts) gives
 * SYNC_EPRUNED, never a partial answer; a point after the newest commit
 * reads as now.
 * ------------------------------------------------------------------- */
#define SYNC_ASOF_VERSION 0 /* the point is a local version */
#define SYNC_ASOF_TIME 1    /* the point is a time, ms of the env clock */

/* Retention.  A version older than what the rules keep is removed, at
 * the commit of a transaction that writes the table (a bounded amount
 * per commit: rows written are trimmed to max_versions, and the oldest
 * versions past max_age_ms go a few at a time) or by
 * sync_history_prune (all of it).  As-of reads of the table then start
 * at the table's floor: the newest commit that replaced a version now
 * removed (with max_versions, that is recent for a table with a busy
 * row; with max_age_ms, at most max_age_ms before the last prune). */
typedef struct sync_history_opts {
  /* Versions kept per row, its current one included (1 keeps none of
   * the replaced ones); 0 = no limit.  The oldest kept version may read
   * with origin SYNC_ORIGIN_UNKNOWN and time 0: what the commit that
   * made it was is kept with the version it replaced. */
  uint64_t max_versions;
  /* Versions replaced more than this many ms ago (env clock) go; 0 = no
   * limit.  As-of reads within the last max_age_ms always work. */
  uint64_t max_age_ms;
} sync_history_opts;

/* Turn history of table on (opts) or off (NULL), or change its
 * retention, on an open writable env with no transaction open (its own
 * write transaction, committed).  Kept in the file.  Turning it on
 * starts at the last committed version: earlier points give
 * SYNC_EPRUNED.  Changing the limits keeps what is kept (the next
 * commits and sync_history_prune apply the new ones); turning it off
 * removes every kept version of the table (O(versions)).  Other
 * processes with the file open see the change when they reopen it: make
 * it while they are not writing.  Errors: SYNC_EINVAL (env not open,
 * bad table), SYNC_EREADONLY, SYNC_EBUSY (a transaction is open),
 * storage errors. */
SYNC_API int sync_env_set_history(sync_env *env, unsigned table,
                                  const sync_history_opts *opts);
/* The table's retention into *out.  Errors: SYNC_NOTFOUND (the table
 * keeps no history), SYNC_EINVAL. */
SYNC_API int sync_env_history(sync_env *env, unsigned table,
                              sync_history_opts *out);

/* Apply the retention rules to every kept version of table, in write
 * transaction txn (O(rows + versions) of the table).  *removed (may be
 * NULL) counts the versions removed.  Errors: SYNC_EINVAL,
 * SYNC_EREADONLY, SYNC_NOTFOUND (no history), SYNC_ECORRUPT, storage
 * errors. */
SYNC_API int sync_history_prune(sync_txn *txn, unsigned table,
                                uint64_t *removed);

/* The origin of a version */
#define SYNC_ORIGIN_UNKNOWN 0 /* made before history was on, or its record
                                 went with retention */
#define SYNC_ORIGIN_LOCAL 1   /* a write of this replica (also a resolver's
                                 or a restore's) */
#define SYNC_ORIGIN_PEER 2    /* applied from a peer's delta */

typedef struct sync_version {
  uint64_t version;       /* local version that made it */
  uint64_t time_ms;       /* its commit's time (0: unknown) */
  int origin;             /* SYNC_ORIGIN_* */
  int deleted;            /* 1: a delete (a tombstone; no values) */
  uint64_t causal_length;
  sync_stamp row_stamp;   /* of the insert or delete that set it */
  uint8_t site[16];       /* who made it: this replica for a local
                             write, else the site of its newest stamp */
  unsigned ncolumns;      /* columns stored (0 for a delete) */
} sync_version;
typedef struct sync_versions sync_versions;

/* The versions of one row, newest first: the current one (live or a
 * tombstone), then each one it replaced that the table keeps.  A table
 * without history lists the current one only; a key without a stored
 * row lists nothing.  Errors: SYNC_EINVAL (bad table or key),
 * SYNC_ETOOBIG, SYNC_ENOMEM. */
SYNC_API int sync_versions_open(sync_txn *txn, unsigned table,
                                const void *key, size_t klen,
                                sync_versions **out);
/* The next version into *out and its first nvals values into vals
 * (NULL for a delete and for columns it lacks); values point into the
 * map, valid until the next call.  SYNC_NOTFOUND after the last.
 * Errors: SYNC_EINVAL (also once txn wrote after the first call: open
 * it again), SYNC_ECORRUPT (a damaged version). */
SYNC_API int sync_versions_next(sync_versions *it, sync_version *out,
                                sync_value *vals, unsigned nvals);
/* Column col of the current version: value, the stamp that wrote it and
 * the one it replaced (base->hlc 0: none), as sync_changes_column.  Any
 * out pointer may be NULL.  SYNC_NOTFOUND for a column never written. */
SYNC_API int sync_versions_column(sync_versions *it, unsigned col,
                                  sync_value *val, sync_stamp *stamp,
                                  sync_stamp *base);
/* Must precede the end of the transaction.  NULL ok. */
SYNC_API void sync_versions_close(sync_versions *it);

/* A cursor over table as of a point (kind SYNC_ASOF_*, at): the rows
 * live then, with the values they had, in key order, through
 * sync_cursor_next, sync_cursor_range and sync_cursor_close.  Errors:
 * SYNC_EPRUNED (a point before what the table keeps, or no history),
 * SYNC_EINVAL, SYNC_ENOMEM, storage errors. */
SYNC_API int sync_cursor_open_asof(sync_txn *txn, unsigned table, int kind,
                                   uint64_t at, sync_cursor **out);

/* Rows that differ between two points of table (kind SYNC_ASOF_*, a and
 * b), in key order: fn gets the key, what changed (SYNC_DIFF_*) and the
 * values at a and at b (nvals each, NULL where the row was absent;
 * valid during the call).  fn returns 0 to go on, anything else stops
 * the walk and is returned.  Reads every stored row of the table and
 * the versions kept after the earlier point.  Errors: SYNC_EPRUNED,
 * SYNC_EINVAL, SYNC_ECORRUPT, SYNC_ENOMEM, storage errors. */
#define SYNC_DIFF_ADDED 1   /* absent at a, live at b */
#define SYNC_DIFF_REMOVED 2 /* live at a, absent at b */
#define SYNC_DIFF_CHANGED 3 /* live at both, some value differs */
typedef int (*sync_history_diff_fn)(void *ctx, const void *key, size_t klen,
                                    int kind, const sync_value *a,
                                    const sync_value *b, unsigned nvals);
SYNC_API int sync_history_diff(sync_txn *txn, unsigned table, int kind,
                               uint64_t a, uint64_t b, sync_history_diff_fn fn,
                               void *ctx);

/* Put table back as it was at a point, in write transaction txn: each
 * row whose values differ is written with them, each row live now that
 * was absent then is deleted (sync_delete), so the restore is made of
 * ordinary stamped changes that replicate like any others.  A row's
 * LWW columns are written by a sync_put of their values then, which
 * stamps only the columns that differ (and inserts the row again over
 * a tombstone); a SYNC_COUNTER column is brought back by one add
 * (sync_counter_add) of its value then minus its exact sum now, or of
 * its whole value then when the row is inserted again (its counters
 * start from 0).  So the restore replicates as adds: adds that other
 * replicas made concurrently still count, once each, on top of the
 * restored value, except those to a row the restore deletes (lost with
 * it, as for any add concurrent with a delete).  Rows equal then and
 * now are not touched.  Reads every stored row of the table (and the
 * versions kept after the point), in one transaction: for a large
 * table, mind LMDB's dirty page limit (SYNC_ELIMIT).  *changed (may be
 * NULL) counts the rows written, also when it fails; after a failure
 * the transaction holds the rows written before it: abort it.  Errors:
 * SYNC_EPRUNED, SYNC_EINVAL, SYNC_EREADONLY, SYNC_ETXN, SYNC_ELIMIT
 * (also: a counter's difference that this replica's own positive or
 * negative total for the cell cannot take, as for sync_counter_add;
 * that row is left as it was), those of sync_put and sync_delete. */
SYNC_API int sync_table_restore(sync_txn *txn, unsigned table, int kind,
                                uint64_t at, uint64_t *changed);

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
 * write transaction.  Errors: SYNC_EINVAL, SYNC_EREADONLY, SYNC_EHISTORY
 * (the cursor, or the vector's claim on this replica, is not in this
 * file's history: sync_delta_make). */
SYNC_API int sync_request_ack(sync_txn *txn, const sync_request *req);
/* sync_site_renew after sync_delta_make or sync_request_ack answered
 * SYNC_EHISTORY for req: the requester holds a log of this replica that
 * is not this file's.  The renewal record keeps the old id's claims up to
 * what this file shares with the requester's view of it (the newest epoch
 * of its mark and the mark's lineage that the file has: the state a
 * backup was at), so that deletes the fleet collected since stay proven;
 * when the requester's vector claims this replica's writes up to a clock
 * the file never stood at, no further than the clock the epoch where
 * that claim falls began at; with neither, it voids every claim, as
 * sync_site_renew does.
 * Errors: those of sync_site_renew, and SYNC_EINVAL when req was made for
 * another sender. */
SYNC_API int sync_site_renew_from(sync_txn *txn, const sync_request *req);

/* Row filter on the sending side (docs/PROTOCOL.md, "Scope"): return
 * nonzero to send the row, 0 to leave it out.  peer is the replica the
 * chunk is cut for (the requester), so one filter can serve many peers;
 * table and key name the row; vals[0..nvals) are its values, one per
 * column of the table (columns never written and values of a newer
 * schema's columns read as NULL; TEXT and BLOB point into the database
 * map, valid during the call only).  A tombstone comes with vals NULL
 * and nvals 0: return nonzero to send the delete.  The answer may depend
 * on anything the application likes, as long as an answer that changes
 * for a row that did not change comes with a new filter_version (a row
 * that changes is judged again by itself).  It may read through the
 * transaction the chunk is cut in (sync_get, sync_contains, cursors),
 * never write in it. */
typedef int (*sync_row_filter_fn)(void *ctx, const uint8_t peer[16],
                                  unsigned table, const void *key,
                                  size_t klen, const sync_value *vals,
                                  unsigned nvals);

typedef struct sync_delta_opts {
  size_t max_rows;  /* rows per chunk; 0 = 1,000 */
  size_t max_bytes; /* approximate value bytes per chunk; 0 = 1 MiB */
  /* Tables to send: bit (t & 7) of tables[t >> 3] set for table id t;
   * NULL sends every table.  Rows of other tables, and rows the filter
   * refuses, are left out, and a chunk that left anything out does not
   * raise the receiver's version vector (it has not got everything the
   * sender holds).  Without scope (below), widening the selection later
   * does not resend what was left out before the receiver's cursor:
   * reset the peer for that (sync_peer_reset). */
  const unsigned char *tables;
  sync_row_filter_fn filter; /* NULL: every row */
  void *filter_ctx;
  /* Nonzero: every row sent carries all its columns, also those the
   * requester's vector covers.  A requester that applies with
   * SYNC_APPLY_NEWER asks for it (sessions do), so that a newer row
   * replaces its row whole. */
  int whole_rows;
  /* Nonzero: follow the requester's scope (tables and filter;
   * docs/PROTOCOL.md, "Scope").  A changed row of a selected table that
   * the filter now refuses goes as an exit marker, which makes the
   * receiver drop its copy without a delete; and when the scope differs
   * from the one the requester was last served with (its request says),
   * the stream starts again from the requester's cursor: rows newly in
   * scope come without sync_peer_reset, and rows that left it (a table
   * no longer selected, a filter that now says no) go as exit markers.
   * Sessions set it on the server's side. */
  int scope;
  /* The identity of the filter's rules (with scope): change it whenever
   * the filter may answer differently for rows that did not change; the
   * next request of every peer then restarts its stream.  0 is a
   * version like any other. */
  uint64_t filter_version;
  /* With scope: the tables whose rows exit markers may name (bit t & 7 of
   * visible[t >> 3]; NULL: every table), e.g. the requester's read
   * rights.  A requester's word about which tables it held before is
   * only trusted within these, so no marker names a key of a table it
   * may not read. */
  const unsigned char *visible;
  /* Tables whose changes go first (bit t & 7 of priority[t >> 3]; NULL:
   * none).  Besides the rows in log order, the chunk takes up to
   * max_rows changed rows of these tables from anywhere after its end,
   * so that they reach the receiver in this chunk however long the
   * backlog before them.  Each comes again when the log reaches it (the
   * receiver finds it unchanged).  An initial stream (a requester that
   * holds nothing yet) goes in key order without it.  Sessions set it
   * on the first chunk of each phase (sync_session_opts.priority). */
  const unsigned char *priority;
  /* Rows that go first, as a callback (e.g. an alarm among readings of
   * one table): called with each row changed after the chunk's end (its
   * values; NULL and 0 for a delete) unless its table is in priority
   * already; nonzero sends it first, as for priority tables.  It reads
   * every such row once, so it costs a pass over the backlog; NULL:
   * none. */
  sync_row_filter_fn priority_row;
  void *priority_row_ctx;
} sync_delta_opts;

/* Sender side: the next chunk for the requester, cut from txn's snapshot
 * (a read transaction is enough).  Rows whose every change the requester
 * already has are left out, and so are SYNC_COL_LOCAL columns.  When the
 * requester holds nothing of this replica yet, rows come table by table in
 * key order (initial sync); after a tombstone collection whose deletes the
 * requester may lack, such a stream names every row (without the values
 * the requester holds), and the receiver deletes rows of the range it
 * covers that it leaves out (sync_apply_report.collected).  opts may be
 * NULL.  Errors: SYNC_EINVAL (request meant for another sender, or from
 * this replica), SYNC_ESTALE (the requester's cursor is before tombstones
 * this replica collected: it may lack deletes; it must reset its cursor
 * and sync from the start), SYNC_EHISTORY (the requester's cursor is not
 * in this file's history, or its vector claims this replica's writes up
 * to a clock this file never stood at: this replica was restored or
 * copied and must take a new site id, sync_site_renew_from),
 * SYNC_ENOMEM, SYNC_ECORRUPT. */
SYNC_API int sync_delta_make(sync_txn *txn, const sync_request *req,
                             const sync_delta_opts *opts, sync_delta **out);
/* Rows in the chunk, and whether it is the last one of its delta. */
SYNC_API size_t sync_delta_rows(const sync_delta *d);
SYNC_API int sync_delta_last(const sync_delta *d);
SYNC_API void sync_delta_free(sync_delta *d);

/* Apply policies */
#define SYNC_APPLY_MERGE 0  /* LWW merge (default) */
#define SYNC_APPLY_NEWER 1  /* take a remote row only if its newest HLC is
                               strictly larger than the local row's newest;
                               then every column it carries replaces ours
                               (docs/API.md: what the conflict log keeps) */
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
  uint64_t refused;   /* rows refused by sync_apply_opts (never applied) */
  uint64_t collected; /* rows this replica held live that an initial
                         stream showed the sender had deleted and whose
                         tombstones it had collected: deleted here too
                         (not rows of the chunk: not in rows or deleted) */
  uint64_t exited;    /* rows removed by the chunk's exit markers: they left
                         this replica's scope (no tombstone, nothing
                         replicated; docs/PROTOCOL.md, "Scope") */
  uint64_t unknown;   /* rows of tables this replica does not have yet (a
                         peer with a newer schema): not applied, and the
                         cursor does not move, so the run brings them
                         again once this replica has the table (a
                         session counts them on the receiving side; its
                         FINAL report does not carry them) */
  int renewed;        /* the chunk held a write of this replica's own site
                         id that its file never made, or a renewal record
                         of that id (it was restored from a backup or
                         copied, and nobody had shown it yet): the rows
                         were merged as usual, and the
                         replica took a new site id in txn, keeping a
                         renewal record (sync_renewals_get) unless its
                         clock never passed what it holds of the old id.  The run is
                         over: later chunks were cut for the old id
                         (SYNC_EINVAL); sync again.  A session ends with
                         SYNC_EHISTORY after committing the chunk. */
  uint64_t retired_adds; /* counter contributions of retired sites
                         (sync_site_retire) dropped because their heir's
                         contribution holds them, that were newer than
                         what the heir held when it retired the site:
                         adds made after the retirement, which the heir
                         may have missed (0 when every retired site had
                         stopped, as it must) */
} sync_apply_report;

/* Apply chunk d in the write transaction txn, together with the sender's
 * new cursor; commit txn to make both durable at once.  rep may be NULL.
 * A chunk that ends at or before this replica's cursor was already
 * brought by the run and is skipped whole (all rows unchanged).
 * Errors: SYNC_EINVAL (d comes from this replica, or was cut for another
 * one: it leaves out what that one holds), SYNC_ESCHEMA (d was cut under
 * another schema not known to be compatible: sync_env_schema_accept),
 * SYNC_EREADONLY, storage errors.  Columns beyond this replica's schema
 * (a newer peer's) are stored with their stamps, unread until the column
 * is added, and sent on to others as they came. */
SYNC_API int sync_delta_apply(sync_txn *txn, const sync_delta *d, int policy,
                              sync_apply_report *rep);

/* Reasons a receiver refuses a row (sync_refused.reason, the rejection
 * log): the library's own checks use 1..15, an authorization callback
 * its own codes from SYNC_REFUSE_APP (16) up to 65535. */
#define SYNC_REFUSE_TABLE 1  /* the sender may not write the table */
#define SYNC_REFUSE_RELAY 2  /* a change of another site that this replica
                                does not hold, from a sender without the
                                relay right */
#define SYNC_REFUSE_FUTURE 3 /* a stamp more than max_ahead_ms ahead of
                                this replica's clock */
#define SYNC_REFUSE_APP 16
#define SYNC_REFUSE_TEXT_MAX 200 /* bytes of a refusal's text */

/* One incoming change as an authorization callback sees it: the row as
 * the chunk brings it (the columns it carries, with their stamps) and
 * the row this replica stores under the key.  Every pointer is valid
 * during the call only. */
typedef struct sync_write {
  unsigned table;
  sync_key key;
  const uint8_t *sender;  /* the peer whose chunk it is (16 bytes) */
  uint64_t causal_length; /* odd: a live row; even: a delete */
  sync_stamp row_stamp;   /* of the insert or delete that set it */
  unsigned ncolumns;      /* columns the change carries (0 for a delete) */
  const unsigned *columns;   /* their ids, ascending */
  const sync_value *values;  /* their new values */
  const sync_stamp *stamps;  /* and the stamps that wrote them */
  int stored;             /* 0: no stored row; 1: a live row; 2: a
                             tombstone */
  uint64_t stored_causal_length;
  unsigned stored_ncolumns;  /* the table's column count (0: no row) */
  const sync_value *stored_values; /* NULL when no live row; columns
                                      never written read as NULL */
  const sync_stamp *stored_stamps; /* hlc 0 for a column never written */
} sync_write;

/* Authorization of each incoming change (server side): return 0 to
 * allow it, 1 to refuse it, after setting *reason (SYNC_REFUSE_APP or
 * above; left 0 it becomes SYNC_REFUSE_APP) and writing up to cap - 1
 * bytes of NUL-terminated text for the writer; or a negative SYNC_E* to
 * fail the apply with it.  Judge on the stored row, never on owner
 * columns of the incoming one.  It is called for the changes that would
 * change the stored row (one that brings only what this replica holds
 * is not a change, and is not asked about), after the table, relay and
 * clock checks, on the applying thread, inside its write transaction:
 * it must not use the env. */
typedef int (*sync_write_check_fn)(void *ctx, const sync_write *w,
                                   int *reason, char *text, size_t cap);

/* A refused row, as an apply reports it. */
typedef struct sync_refused {
  unsigned table;
  sync_key key;       /* valid during the call */
  int reason;         /* SYNC_REFUSE_* or the callback's code */
  const char *text;   /* NUL-terminated, valid during the call */
  uint64_t hlc;       /* the newest stamp the refused change carries */
} sync_refused;
/* Return 0 to go on, or a negative SYNC_E* to stop the apply with it
 * (abort the transaction then). */
typedef int (*sync_refused_fn)(void *ctx, const sync_refused *r);

/* What a receiver accepts from a sender it does not fully trust (the
 * server side of a session): rights per table, relayed changes, clock
 * bounds, and a callback per change.  Checks use this replica's own
 * state, never columns of the incoming rows.  Each refusal has a reason
 * (SYNC_REFUSE_*), goes to on_refused, and is counted. */
typedef struct sync_apply_opts {
  int policy; /* SYNC_APPLY_*, optionally | SYNC_APPLY_DRY_RUN */
  /* Tables the sender may write: bit (t & 7) of writable[t >> 3];
   * NULL = all. */
  const unsigned char *writable;
  /* 0: every change the row brings that this replica does not hold yet
   * must carry the sender's own site id (a device originates changes
   * only as itself); nonzero: the sender may relay other sites'. */
  int relay;
  /* Refuse rows with a stamp more than this many milliseconds ahead of
   * this replica's clock (a peer must not win every future write with a
   * huge HLC); 0 = no bound. */
  uint64_t max_ahead_ms;
  /* What a refused row does: 0 = it alone is left out (counted in
   * rep->refused; the rest of the chunk applies and the cursor moves),
   * nonzero = the whole chunk is refused with SYNC_EPERM before anything
   * is written (on_refused hears of every refused row first). */
  int refuse_whole;
  /* Nonzero: a chunk with exit markers is refused with SYNC_EPERM before
   * anything is written (a server never lets a client remove its rows);
   * 0: exit markers remove the rows they name, whatever writable says. */
  int refuse_exits;
  /* The sender's scope as this replica serves it (a server applying a
   * client's push; sessions set it): a row of scope_tables that the
   * chunk leaves as it was here (this replica's state wins) and that
   * scope_filter refuses for the sender is logged again, unchanged, so
   * the next chunk cut for the sender carries an exit marker for it: the
   * sender holds a copy outside its scope (e.g. a row it inserted that
   * collided with one of ours it never got).  NULL filter: none. */
  const unsigned char *scope_tables;
  sync_row_filter_fn scope_filter;
  void *scope_filter_ctx;
  sync_write_check_fn check; /* NULL: no callback */
  void *check_ctx;
  sync_refused_fn on_refused; /* NULL: refusals are only counted */
  void *on_refused_ctx;
} sync_apply_opts;

/* sync_delta_apply with the checks of opts (NULL: none, SYNC_APPLY_MERGE).
 * Errors: as sync_delta_apply, and SYNC_EPERM (refuse_whole and a row
 * outside the rights; sync_env_errmsg() names it). */
SYNC_API int sync_delta_apply_opts(sync_txn *txn, const sync_delta *d,
                                   const sync_apply_opts *opts,
                                   sync_apply_report *rep);

/* Forget what this replica holds of peer's log (its cursor), so the next
 * request asks for everything again, as an initial stream; the version
 * vector is not lowered, and the scope it was served with is kept.  For
 * a replica told SYNC_ESTALE (a sender with sync_delta_opts.scope needs
 * no reset when the selection widens).  Errors: SYNC_EINVAL,
 * SYNC_EREADONLY. */
SYNC_API int sync_peer_reset(sync_txn *txn, const uint8_t peer[16]);

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
 * is not reported; the delete wins either way).  The resolver may read
 * through the transaction that applies (sync_get, sync_contains,
 * cursors), never write in it. */
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

/* The rejection log: writes of this replica that a peer refused (the
 * server's answer in a session, docs/PROTOCOL.md "Refusals"), oldest
 * first.  key and text point into the map, valid until the next call of
 * the iterator or the end of the transaction.  reverted: the row went
 * back to the peer's version (or, for a refused insert the peer never
 * held, was removed without a tombstone); 0: the row was written again
 * after the refused chunk was cut, and that write goes to the peer next.
 * hlc: the newest stamp of the row here when the answer came. */
typedef struct sync_reject {
  uint64_t id;     /* position in the rejection log */
  unsigned table;
  sync_key key;
  int reason;      /* SYNC_REFUSE_* or the peer's own code */
  const char *text; /* the peer's words, text_len bytes, not NUL-ended */
  size_t text_len;
  uint8_t peer[16]; /* the replica that refused */
  uint64_t hlc;
  int reverted;
  /* The refused row as it was here when the answer came (what was
   * written, to show or write again): ncolumns values, columns never
   * written as NULL; 0 for a delete.  Valid as key is. */
  unsigned ncolumns;
  const sync_value *values;
} sync_reject;
typedef struct sync_rejects sync_rejects;
/* Errors: SYNC_EINVAL, SYNC_ENOMEM, storage errors. */
SYNC_API int sync_rejects_open(sync_txn *txn, sync_rejects **out);
/* The next entry, or SYNC_NOTFOUND after the last.  Errors: SYNC_EINVAL,
 * SYNC_ECORRUPT (a malformed entry). */
SYNC_API int sync_rejects_next(sync_rejects *it, sync_reject *out);
SYNC_API void sync_rejects_close(sync_rejects *it);
/* Remove one entry (SYNC_NOTFOUND if no such id), or all of them (*n
 * counts those removed; may be NULL).  Write transactions: SYNC_EREADONLY
 * otherwise. */
SYNC_API int sync_reject_clear(sync_txn *txn, uint64_t id);
SYNC_API int sync_rejects_clear(sync_txn *txn, uint64_t *n);

/* Version vector: sites and the highest HLC this replica holds all changes
 * of.  Writes up to cap entries and the total count to *n. */
SYNC_API int sync_vv_get(sync_txn *txn, sync_stamp *out, size_t cap,
                         size_t *n);

/* Renewal records: site ids that a replica restored from a backup gave
 * up (this one, or one it heard of), each with the HLC up to which that
 * id's claims stand (0: none do; docs/FORMAT.md, "Version vector"), in
 * site id order.  A replica keeps every record it learns, for its life.
 * Writes up to cap entries and the total count to *n.  Errors:
 * SYNC_EINVAL, SYNC_ECORRUPT (a malformed record). */
SYNC_API int sync_renewals_get(sync_txn *txn, sync_stamp *out, size_t cap,
                               size_t *n);

/* Tombstones: delete those every known peer has acknowledged (received in
 * a completed delta), at most SYNC_GC_BATCH of them per call, oldest
 * first.  *collected (may be NULL) counts them; when it equals
 * SYNC_GC_BATCH, more may be left: commit and call again in a new
 * transaction (or use sync_env_gc, which does that).  The bound is what
 * keeps the file from growing: LMDB reuses the pages a transaction frees
 * only in later transactions, and each tombstone dirties a page of its
 * own, so collecting 500,000 tombstones at once copied about every page
 * of the table and grew the file by two thirds.  New rows of a table (and rows written again over a tombstone) then start above the
 * largest causal length collected, so a key re-inserted after collection
 * still wins over peers that kept the tombstone.  A replica that knows no peer collects nothing.  A version
 * of a collected row written concurrently with its delete, on a replica
 * this one never heard of, cannot be told from a new row when it arrives
 * later and comes back (docs/FORMAT.md, "Tombstones": in a star topology
 * collect on the server).  Errors: SYNC_EINVAL (txn NULL), SYNC_EREADONLY,
 * SYNC_ETXN, SYNC_ENOMEM, storage errors (SYNC_ECORRUPT, SYNC_EIO,
 * SYNC_EMAPFULL). */
#define SYNC_GC_BATCH 256
/* sync_gc also goes on with the counter folds of sites retired to this
 * replica (sync_site_retire): at most SYNC_GC_BATCH rows a call. */
SYNC_API int sync_gc(sync_txn *txn, uint64_t *collected);
/* Collect every tombstone sync_gc would, in batches of SYNC_GC_BATCH,
 * each in a write transaction of its own that this call begins and
 * commits: the way to collect many, and what `synctl gc` does.  Each
 * batch takes the horizon afresh and starts where the last stopped, so
 * the whole run reads the log once.  A batch reuses the pages the
 * batches two or more before it freed, so the file grows by a few
 * batches' worth of pages at most (about 1 MiB with 4 KiB pages), however
 * many tombstones go, and usually not at all: the writes and deletes
 * before left free pages enough (500,000 of 1,000,000 W1 rows collected:
 * no growth).  That holds while no read transaction of any process stays
 * open across the run: pages freed after a reader's snapshot cannot be
 * reused while it lives.  The file does not shrink: sync_env_compact
 * gives the space back.  Must not be called while this thread has a write
 * transaction of env open (it would wait for itself); other writers
 * interleave between batches.  *collected (may be NULL) counts what all
 * batches collected, also when a later batch fails (the earlier ones stay
 * committed).  Errors: SYNC_EINVAL (env NULL or not open),
 * SYNC_EREADONLY, and those of sync_txn_begin, sync_gc and
 * sync_txn_commit (SYNC_ENOSPC, SYNC_EMAPFULL, SYNC_EIO ...). */
SYNC_API int sync_env_gc(sync_env *env, uint64_t *collected);
/* Tombstones still kept. */
SYNC_API int sync_tombstones(sync_txn *txn, uint64_t *out);

/* Counter folds (docs/FORMAT.md, "Counter columns", "Folds").  A
 * counter cell holds one contribution per site that added to it; a site
 * that will never add again is retired, on one replica that holds all
 * its adds (its heir, usually the server the site synced with), so that
 * the cells stop carrying it.  From the retirement on, the heir's own
 * contribution to every counter cell holds the retired site's (its
 * totals added to the heir's), and wherever the heir's contribution
 * from then on meets the retired site's, on any replica, the retired
 * one is dropped: sums stay exact and a cell keeps the contributions of
 * the sites still adding, plus their heirs.  The heir folds the cells it
 * holds in batches: sync_gc and sync_env_gc go on with them (at most
 * SYNC_GC_BATCH rows a batch; sync_health.fold_pending until done), and
 * an add of the heir folds the cell it writes.  A fold record (site,
 * heir, the heir's HLC at the retirement, what it held of the site)
 * travels with the chunks that need it; a replica keeps every one it
 * makes or learns, for its life (about 80 bytes of file each), and loads
 * them into memory in each transaction that merges or cuts counter
 * cells (56 bytes each).
 *
 * Retire a site only once it has stopped for good (a device taken out
 * of service, an id given up by sync_site_renew) and its last changes
 * reached this replica: the heir's count of it is what this replica
 * holds.  A contribution the retired site makes later is dropped where
 * it meets the heir's (counted in sync_apply_report.retired_adds), and a
 * replica still using a retired id is told so by the first chunk that
 * brings it the record (SYNC_EHISTORY; a session takes a new site id by
 * itself, keeping its claims, and ends; with sync_delta_apply call
 * sync_site_renew).  Every replica that syncs a table with counters must
 * run code that knows folds (storage format 10, protocol 10): a frame
 * with fold records is refused by code before them.
 *
 * sync_site_retire: a write transaction.  The sites this one was heir of
 * are retired to this replica with it.  Errors: SYNC_EINVAL (txn or site
 * NULL, or this replica's own id), SYNC_EREADONLY, SYNC_ETXN,
 * SYNC_NOTFOUND (this replica holds no change of site: it cannot be its
 * heir), SYNC_EEXIST (site is retired already, here or by a record this
 * replica holds), storage errors. */
SYNC_API int sync_site_retire(sync_txn *txn, const uint8_t site[16]);
typedef struct sync_fold {
  uint8_t site[16]; /* the retired site */
  uint8_t heir[16]; /* the replica whose contributions hold its adds */
  uint64_t hlc;     /* the heir's HLC at the retirement: its
                       contributions from here on hold the site's */
  uint64_t held;    /* the heir's version vector entry for the site then:
                       the site's adds it held */
} sync_fold;
/* The fold records this replica keeps (made here or brought by chunks),
 * sorted by site then heir: up to cap of them in out, their total in
 * *n.  out may be NULL with cap 0 to count.  Errors: SYNC_EINVAL,
 * SYNC_ECORRUPT (a malformed record), storage errors. */
SYNC_API int sync_folds_get(sync_txn *txn, sync_fold *out, size_t cap,
                            size_t *n);

/* Content digest of one table or, with SYNC_ALL_TABLES, of all tables in
 * order: XXH3-64 over the sum of per-row fingerprints of the live rows
 * (keys and values of replicated columns; SYNC_COL_LOCAL columns, stamps
 * and other metadata excluded) and their count (docs/FORMAT.md,
 * "Digest").  Replicas holding the same data have the same digest.  O(1):
 * the sums are kept at every commit; in a write transaction the digest
 * includes its uncommitted changes.  Errors: SYNC_EINVAL (NULL argument,
 * no such table), SYNC_ECORRUPT (a damaged count record), storage errors
 * (SYNC_EIO). */
#define SYNC_ALL_TABLES 0xffffffffu
SYNC_API int sync_digest(sync_txn *txn, unsigned table, uint64_t *out);


/* ---------------------------------------------------------------------
 * Wire format: delta chunks as frames (docs/FORMAT.md, "Delta frames").
 * A frame is self-contained: header, body (optionally zstd-compressed,
 * optionally with a dictionary) and an XXH3-64 checksum over the whole
 * frame, verified before anything is decoded.  The same chunk gives the
 * same bytes on every architecture.  Rows travel sorted by (table, key)
 * with keys prefix-compressed and stamps in a per-frame table; per
 * column, the encoder picks the smallest of a few value encodings.
 *
 * Memory: an encoder holds one frame (and its compressed copy); a
 * decoder holds at most one frame of max_frame bytes plus its body of at
 * most max_body bytes.  Neither grows with the data behind the chunk.
 * zstd allocates its own contexts through libc (its allocator hooks are
 * part of zstd's experimental, static-only API).
 *
 * Caller buffers follow zstd's streaming convention: bytes are read from
 * or written to ptr + pos, pos advances, size never changes.
 * ------------------------------------------------------------------- */
typedef struct sync_inbuf {
  const void *ptr;
  size_t size;
  size_t pos;
} sync_inbuf;
typedef struct sync_outbuf {
  void *ptr;
  size_t size;
  size_t pos;
} sync_outbuf;

typedef struct sync_codec_opts {
  int level;        /* encoder: zstd level 1..19; 0 stores the body as it
                       is.  Under SYNC_OMIT_ZSTD only 0 is accepted. */
  const void *dict; /* zstd dictionary (see sync_dict_train), or NULL;
                       used by reference: keep it until the codec is freed */
  size_t dict_len;
  size_t max_frame; /* decoder: largest frame accepted, header and checksum
                       included; 0 = 4 MiB */
  size_t max_body;  /* decoder: largest body after decompression;
                       0 = 4 MiB */
  size_t max_rows;  /* decoder: rows in one frame; 0 = 100,000 */
} sync_codec_opts;

typedef struct sync_encoder sync_encoder;
typedef struct sync_decoder sync_decoder;

/* Make an encoder.  alloc may be NULL (libc); opts may be NULL (stored
 * frames, no dictionary).  Errors: SYNC_EINVAL (bad level, partial
 * allocator, dictionary zstd rejects), SYNC_ENOTSUP (level > 0 under
 * SYNC_OMIT_ZSTD; always under SYNC_OMIT_ENCODER), SYNC_ENOMEM. */
SYNC_API int sync_encoder_create(const sync_allocator *alloc,
                                 const sync_codec_opts *opts,
                                 sync_encoder **out);
/* Encode chunk d into the encoder as one frame, replacing the previous
 * one.  *frame_len and *raw_len (either may be NULL) receive the frame's
 * size and the size its body had before compression.  Errors:
 * SYNC_EINVAL (d is inconsistent: rows repeated or values of mixed types
 * in one column), SYNC_ENOMEM, SYNC_ELIMIT (frame over 4 GiB). */
SYNC_API int sync_encoder_begin(sync_encoder *e, const sync_delta *d,
                                size_t *frame_len, size_t *raw_len);
/* Copy the rest of the current frame into out (as much as fits).
 * Returns the bytes still to copy (0: the frame is complete), or
 * SYNC_EINVAL. */
SYNC_API int64_t sync_encoder_read(sync_encoder *e, sync_outbuf *out);
/* The whole current frame, owned by e, valid until the next begin or
 * free.  Errors: SYNC_EINVAL (no frame yet). */
SYNC_API int sync_encoder_frame(const sync_encoder *e, const void **frame,
                                size_t *len);
SYNC_API void sync_encoder_free(sync_encoder *e);

/* Make a decoder with the limits in opts (NULL: defaults; level is
 * ignored).  Errors: SYNC_EINVAL, SYNC_ENOMEM. */
SYNC_API int sync_decoder_create(const sync_allocator *alloc,
                                 const sync_codec_opts *opts,
                                 sync_decoder **out);
/* Feed bytes from in, in any fragmentation (one byte per call works).
 * Bytes are taken up to the end of the current frame and never past it.
 * When a frame completes it is checked and decoded: returns 0 with *out
 * a new delta, owned by the caller (sync_delta_free).  While more bytes
 * are needed, returns 0 with *out NULL.  Errors (the partial frame is
 * dropped and the decoder starts afresh at the next byte):
 * SYNC_EFORMAT, SYNC_ECHECKSUM, SYNC_EVERSION (another major format
 * version), SYNC_ELIMIT (frame, body or rows over the limits),
 * SYNC_EDICT, SYNC_ENOTSUP, SYNC_ENOMEM, SYNC_EINVAL. */
SYNC_API int sync_decoder_feed(sync_decoder *dec, sync_inbuf *in,
                               sync_delta **out);
/* Decode exactly one frame of len bytes (trailing bytes: SYNC_EFORMAT).
 * Drops any partial frame fed before.  Errors as sync_decoder_feed. */
SYNC_API int sync_decoder_decode(sync_decoder *dec, const void *frame,
                                 size_t len, sync_delta **out);
/* Why the last sync_decoder_feed or sync_decoder_decode on dec failed:
 * a short static string naming the fault ("checksum mismatch", "site
 * index past the site table", "truncated stamp table", ...; "out of
 * memory" for SYNC_ENOMEM), for logs and error messages, not for
 * programs to parse (the wording may change; the error code is the
 * contract).  "" when that call succeeded (also while it waits for more
 * bytes), failed with SYNC_EINVAL, or dec is NULL.  Never NULL; the
 * string is constant and never freed. */
SYNC_API const char *sync_decoder_reason(const sync_decoder *dec);
SYNC_API void sync_decoder_free(sync_decoder *dec);

/* Train a zstd dictionary for the frames of table from its live rows
 * (at most max_rows of them, 0 = 10,000), for small batches that
 * compress poorly alone.  Writes at most cap bytes to dict and the size
 * to *len.  Give the same dictionary to the encoders and decoders of
 * every replica.  Errors: SYNC_NOTFOUND (no such table),
 * SYNC_ELIMIT (too few rows to train on), SYNC_ENOTSUP (SYNC_OMIT_ZSTD
 * or SYNC_OMIT_ENCODER), SYNC_EINVAL, SYNC_ENOMEM, storage errors. */
SYNC_API int sync_dict_train(sync_txn *txn, unsigned table, size_t max_rows,
                             void *dict, size_t cap, size_t *len);

/* ---------------------------------------------------------------------
 * Sessions: two replicas, one conversation, converged (docs/PROTOCOL.md).
 *
 * The session is sans-IO: it reads bytes given to sync_session_recv(), in
 * any fragmentation, and hands out bytes from sync_session_send(); it
 * owns no socket, thread or timer.  Database work (cutting chunks,
 * applying them, each applied chunk committed with the sender's cursor)
 * happens inside those two calls.  sync_session_run() drives a session
 * over caller-supplied send/recv callbacks.
 *
 * One side starts (the client, e.g. a device) and chooses the mode: pull
 * (the client receives), push (the client sends) or both (pull, then
 * push).  The other side (the server) checks the client's credential
 * through its authorize callback, which grants the tables the client may
 * read and write.  Rows outside those rights are never sent, and rows
 * that arrive outside them (or that the server's write check refuses)
 * are refused and counted, never applied, and answered to the writer,
 * whose replica returns to the server's version of each (the rejection
 * log lists them, with what was written).
 *
 * Resumable: every applied chunk commits the receiver's cursor with it,
 * so a session cut at any byte continues, next time, after the last
 * applied chunk; nothing is applied twice and nothing is lost.
 * ------------------------------------------------------------------- */
typedef struct sync_session sync_session;

#define SYNC_PULL 1
#define SYNC_PUSH 2
#define SYNC_BOTH 3

/* Rights of a peer, per table id t: bit (t & 7) of read[t >> 3]. */
#define SYNC_RIGHTS_BYTES 128
typedef struct sync_rights {
  unsigned char read[SYNC_RIGHTS_BYTES];  /* tables the peer may read */
  unsigned char write[SYNC_RIGHTS_BYTES]; /* tables the peer may write */
  int relay; /* the peer may pass on changes of other sites */
} sync_rights;

/* Server side: decide what the peer (site id, credential from its
 * handshake) may do.  Fill *rights (it comes zeroed: nothing) and return
 * 0 to accept, or a negative SYNC_E* (e.g. SYNC_EPERM) to refuse the
 * session; the peer is told it was refused. */
typedef int (*sync_authorize_fn)(void *ctx, const uint8_t site[16],
                                 const void *cred, size_t cred_len,
                                 sync_rights *rights);

typedef struct sync_session_stats {
  uint64_t messages_sent, messages_received;
  uint64_t bytes_sent, bytes_received;           /* all session bytes */
  uint64_t frames_sent, frames_received;         /* delta chunks */
  uint64_t rows_sent, rows_received;
  uint64_t frame_bytes_sent, frame_bytes_received; /* frames as sent */
  uint64_t raw_bytes_sent, raw_bytes_received;   /* their bodies before
                                                    compression */
  uint64_t rows_expected; /* rows the current initial stream holds, as its
                             sender counted them; 0 when not known */
  sync_apply_report applied; /* sums over the chunks this side applied
                                (or, in a dry run, would have) */
  sync_apply_report peer_applied; /* what the peer reported of ours */
  /* Repair sessions (sync_session_opts.repair): */
  uint64_t repair_turns;  /* REPAIR messages sent and received */
  uint64_t repair_nodes;  /* tree nodes this side compared */
  uint64_t repair_rows;   /* rows in repair frames, sent and received */
  uint64_t repair_passes; /* root-to-leaf passes */
  uint64_t refusals;      /* rows answered as refused (sent by the
                             server, taken back by the client) */
  uint64_t reverted;      /* client: of those, rows that went back to
                             the server's version or were removed */
  int repair_equal;       /* the repair ended with equal roots */
  uint64_t window_waits;  /* sender: times a chunk was ready to cut but
                             the window was full, so the stream waited
                             for an acknowledgement */
  int unchanged;          /* the quick check found nothing to do: the
                             session ended after it */
} sync_session_stats;

/* Diff (a repair session with dry_run): called on the client for each
 * row the two replicas hold differently, once the leaf holding it was
 * compared.  side: SYNC_DIFF_LOCAL (only this replica holds the row, live
 * or as a tombstone), SYNC_DIFF_REMOTE (only the peer does) or
 * SYNC_DIFF_BOTH (both do, in different states: values, stamps or causal
 * length).  key is valid during the call only. */
#define SYNC_DIFF_LOCAL 1
#define SYNC_DIFF_REMOTE 2
#define SYNC_DIFF_BOTH 3
typedef void (*sync_diff_fn)(void *ctx, unsigned table, const void *key,
                             size_t klen, int side);

/* Progress: called after each chunk sent or applied. */
typedef void (*sync_progress_fn)(void *ctx, const sync_session_stats *st);

typedef struct sync_session_opts {
  int server;   /* 0: this side starts the session; 1: it answers */
  int mode;     /* client: SYNC_PULL, SYNC_PUSH or SYNC_BOTH (0 = both) */
  int dry_run;  /* client: write nothing on either side; the stats say
                   what would have changed (applied, peer_applied) */
  int policy;   /* SYNC_APPLY_MERGE (0), _NEWER or _APPEND for the chunks
                   this side receives */
  const unsigned char *tables; /* client: tables to sync, as in
                                  sync_rights; NULL = all.  Another
                                  selection in a later session brings
                                  the new tables' rows and removes those
                                  of tables no longer selected, with no
                                  reset (docs/PROTOCOL.md, "Scope") */
  sync_row_filter_fn filter;   /* rows this side sends; NULL = all.  On
                                  the server it defines the client's
                                  scope (docs/PROTOCOL.md, "Scope") */
  void *filter_ctx;
  uint64_t filter_version;     /* server: the identity of the filter's
                                  rules (sync_delta_opts.filter_version) */
  const void *credential;      /* sent in the handshake, <= 1024 bytes */
  size_t credential_len;
  sync_authorize_fn authorize; /* server: NULL grants every table and
                                  relaying (a trusted network only) */
  void *authorize_ctx;
  int refuse_whole;     /* server: a pushed chunk with a refused row is
                           not applied at all: the refused rows are
                           answered, the client takes them back, and the
                           server asks for the same range again (the
                           other rows then apply); default: the refused
                           rows alone are left out and answered, the rest
                           applies.  Counted in applied.refused either
                           way */
  uint64_t max_ahead_ms; /* refuse received stamps further ahead of this
                            replica's clock; 0 = 1 hour */
  /* server: judge each change the client pushes (sync_write_check_fn);
   * NULL allows all that the rights allow.  Refused rows are answered
   * to the client one by one (key, reason, text) with the server's
   * version of the row, which the client takes back, and listed in the
   * client's rejection log (sync_rejects_open). */
  sync_write_check_fn check_write;
  void *check_write_ctx;
  size_t max_message;   /* largest message this side accepts, 64 bytes
                           to 16 MiB; 0 = 64 KiB.  Each side sends
                           messages no larger than the other accepts
                           (before the handshake, at most 256 bytes and
                           the client's own size: a client on a link of
                           64-byte messages sets 64 and sends nothing
                           larger) */
  size_t chunk_rows;    /* rows per chunk this side sends; 0 = 1,000 */
  size_t chunk_bytes;   /* value bytes per chunk; 0 = 1 MiB */
  int level;            /* zstd level of the chunks this side sends (0 =
                           none) */
  size_t max_frame;     /* largest chunk frame this side accepts; 0 = 4 MiB.
                           A row with values near or over that needs more
                           (up to SYNC_MAX_VALUE plus a little): the
                           decoder may use about 60 times this for a
                           hostile frame, so keep it as small as the data
                           allows */
  const void *dict;     /* zstd dictionary for both directions, or NULL */
  size_t dict_len;
  sync_progress_fn progress;
  void *progress_ctx;
  /* client: a repair session instead of a sync (docs/PROTOCOL.md,
   * "Repair"): the two replicas compare fingerprints of hash-prefix
   * trees of the selected tables and exchange only the rows where they
   * differ, merged by the usual rules and rights; no cursor is needed
   * and none moves, and no version vector rises.  After a complete
   * repair (not dry) the client's cursor for the server stands at the
   * server's log position of the repair's start, so that a replica told
   * SYNC_ESTALE syncs normally afterwards.  mode is ignored.  With
   * dry_run it is a diff: nothing is written on either side and on_diff
   * hears of every differing row. */
  int repair;
  sync_diff_fn on_diff; /* client, repair with dry_run; NULL: none */
  void *on_diff_ctx;
  /* client: chunks the server may send ahead of this side's
   * acknowledgements when pulling (docs/PROTOCOL.md, "Window"), so that a
   * long stream waits for the link's round trip once per window, not once
   * per chunk.  Each chunk is still applied and committed on its own, in
   * order; memory does not grow with the window.  0 = 256; 1 = one chunk
   * per request; at most 4,096. */
  size_t window;
  /* Tables whose changes this side sends first, as in sync_rights (e.g.
   * alarms behind a backlog of readings): the first chunk of each phase
   * carries them, wherever they stand in the log
   * (sync_delta_opts.priority).  NULL: log order only. */
  const unsigned char *priority;
  /* Rows whose changes this side sends first, as a callback
   * (sync_delta_opts.priority_row); NULL: none. */
  sync_row_filter_fn priority_row;
  void *priority_row_ctx;
  /* client: always start with the full handshake.  By default a client
   * that synced with a server before and has nothing to send it first
   * asks, in about 40 bytes both ways, whether anything changed since
   * (docs/PROTOCOL.md, "Quick check"); when something did, the full
   * handshake follows, one round trip later. */
  int no_check;
} sync_session_opts;

/* Make a session on an open env.  opts is copied (tables, credential and
 * dict by reference: keep them until the session is freed).  Errors:
 * SYNC_EINVAL, SYNC_ENOTSUP, SYNC_ENOMEM. */
SYNC_API int sync_session_create(sync_env *env, const sync_session_opts *opts,
                                 sync_session **out);
/* Feed bytes from the peer; in->pos advances over what was taken (all of
 * it unless the session ended).  Returns 0, or the error that ended the
 * session (see sync_session_status). */
SYNC_API int sync_session_recv(sync_session *s, sync_inbuf *in);
/* Write pending bytes for the peer into out.  Returns the bytes written
 * (0: nothing pending now), or a negative error. */
SYNC_API int64_t sync_session_send(sync_session *s, sync_outbuf *out);
/* Whether the session waits for bytes from the peer / has bytes to send. */
SYNC_API int sync_session_want_read(const sync_session *s);
SYNC_API int sync_session_want_write(const sync_session *s);
/* 1 when done (both directions complete), 0 while running, or the
 * negative error that ended it: its own (SYNC_EPROTO, SYNC_ESCHEMA, a
 * storage error...), or SYNC_EPEER when the peer ended it - except that
 * the peer's SYNC_ESCHEMA, SYNC_EVERSION, SYNC_EPERM and SYNC_ESTALE
 * keep their code, since no retry mends them, and so does SYNC_EHISTORY
 * (the replica that was a copy took a new site id: the next session
 * works). */
SYNC_API int sync_session_status(const sync_session *s);
/* What went wrong, in words (the peer's own words after SYNC_EPEER);
 * "" while all is well.  Owned by s. */
SYNC_API const char *sync_session_errmsg(const sync_session *s);
/* The peer's site id, once the handshake is done.  Errors: SYNC_NOTFOUND
 * (not yet), SYNC_EINVAL. */
SYNC_API int sync_session_peer(const sync_session *s, uint8_t site[16]);
SYNC_API void sync_session_stats_get(const sync_session *s,
                                     sync_session_stats *out);
/* Tell the session its transport is gone (the peer vanished): a running
 * session ends with SYNC_ECLOSED.  What was applied stays applied. */
SYNC_API void sync_session_abort(sync_session *s, int err);
SYNC_API void sync_session_free(sync_session *s);

/* A byte transport: send returns bytes taken (> 0) or a negative SYNC_E*;
 * recv returns bytes read (> 0), 0 when the peer closed, or a negative
 * SYNC_E* (SYNC_ETIMEOUT for a timeout). */
typedef struct sync_transport {
  void *ctx;
  int64_t (*send)(void *ctx, const void *buf, size_t n);
  int64_t (*recv)(void *ctx, void *buf, size_t cap);
} sync_transport;

/* Run s over t until it is done (returns 0) or fails (returns the error;
 * sync_session_errmsg() says more).  Blocking, as t is. */
SYNC_API int sync_session_run(sync_session *s, const sync_transport *t);

/* ---------------------------------------------------------------------
 * Retries: run whole sessions with exponential backoff and jitter, and a
 * circuit breaker that stops trying a peer that keeps failing.
 * ------------------------------------------------------------------- */
typedef struct sync_retry sync_retry;

typedef struct sync_retry_opts {
  unsigned attempts;       /* tries per sync_retry_run; 0 = 5 */
  uint64_t base_delay_ms;  /* first backoff; 0 = 200 */
  uint64_t max_delay_ms;   /* backoff cap; 0 = 30,000 */
  unsigned breaker_failures; /* failed runs in a row that open the
                                breaker; 0 = 3 */
  uint64_t breaker_cooldown_ms; /* how long it stays open; 0 = 60,000 */
  sync_clock_fn now;       /* ms clock; NULL = the env's clock */
  void *now_ctx;
  void (*sleep)(void *ctx, uint64_t ms); /* NULL = nanosleep (required
                                            under SYNC_OMIT_DEFAULT_SLEEP) */
  void *sleep_ctx;
  uint64_t seed;           /* jitter; 0 = from the clock */
} sync_retry_opts;

typedef struct sync_retry_stats {
  uint64_t runs, attempts, retries, failed_runs;
  uint64_t breaker_opened, breaker_refused;
  int breaker_open;     /* refusing runs right now */
  int last_error;       /* of the last attempt (0: it succeeded) */
  uint64_t last_delay_ms;
} sync_retry_stats;

/* Open a transport for one attempt (e.g. connect a socket): 0 and *t
 * filled, or a negative SYNC_E*. close ends it (called after every
 * attempt that connected). */
typedef int (*sync_connect_fn)(void *ctx, sync_transport *t);
typedef void (*sync_disconnect_fn)(void *ctx, sync_transport *t);

/* Errors: SYNC_EINVAL, SYNC_ENOMEM. */
SYNC_API int sync_retry_create(const sync_allocator *alloc,
                               const sync_retry_opts *opts, sync_retry **out);
SYNC_API void sync_retry_free(sync_retry *r);
/* Run a session (made from sopts on env) until one succeeds, up to the
 * attempts, sleeping base * 2^k ms with full jitter between them.
 * Errors that another try cannot fix (SYNC_ESCHEMA, SYNC_EVERSION,
 * SYNC_EPERM, SYNC_EINVAL, a refused credential) end the run at once.
 * While the breaker is open, returns SYNC_EBUSY without trying.  st (may
 * be NULL) gets the last session's stats.  Returns 0 or the last error. */
SYNC_API int sync_retry_run(sync_retry *r, sync_env *env,
                            const sync_session_opts *sopts,
                            sync_connect_fn connect, sync_disconnect_fn close,
                            void *ctx, sync_session_stats *st);
SYNC_API void sync_retry_stats_get(const sync_retry *r, sync_retry_stats *out);


/* ---------------------------------------------------------------------
 * Operating stats: counters and latency histograms per env, in fixed
 * memory (about 16 KiB per env), for dashboards and tools (docs/API.md,
 * "Stats").  Updates are C11 atomics (relaxed): hooks on any thread and
 * concurrent readers never race, but a copy is not one snapshot across
 * fields.  (Built with SYNC_OMIT_ATOMICS or without C11 atomics, they are
 * plain integers, exact only while one thread at a time uses the env.)
 * ------------------------------------------------------------------- */

/* A log-linear histogram of non-negative integers (the library records
 * nanoseconds).  Values 0..15 have a bucket each; above, every power of
 * two [2^e, 2^(e+1)) is cut into 16 equal buckets, up to 2^44 (values
 * above share the last bucket).  A quantile is the middle of the bucket
 * holding the sample of that rank, clamped to [min, max], so it is within
 * 1/32 (3.125%) of the exact sample of that rank for values below 2^44
 * (exact below 16).  count, sum, min and max are exact. */
#define SYNC_HIST_BUCKETS 656
typedef struct sync_histogram {
  uint64_t count, sum, min, max; /* min and max are 0 while count is 0 */
  uint64_t buckets[SYNC_HIST_BUCKETS];
} sync_histogram;

/* Add one sample v to h (a zeroed histogram is empty).  NULL ignored. */
SYNC_API void sync_histogram_add(sync_histogram *h, uint64_t v);
/* The q-quantile (0 <= q <= 1) of h: the sample of rank ceil(q * count)
 * (at least 1) to within the bound above; 0 for an empty histogram or a q
 * out of range. */
SYNC_API uint64_t sync_histogram_quantile(const sync_histogram *h, double q);
/* The smallest value that falls in bucket i (i < SYNC_HIST_BUCKETS);
 * bucket i holds [sync_histogram_bucket_low(i),
 * sync_histogram_bucket_low(i + 1)). */
SYNC_API uint64_t sync_histogram_bucket_low(unsigned i);

typedef struct sync_stats {
  uint64_t commits;      /* write transactions committed that changed rows
                            or state (sessions' applied chunks included) */
  uint64_t rows_written; /* rows those transactions wrote (local writes,
                            applied changes, deletes) */
  uint64_t sessions;        /* sessions ended (counted when freed) */
  uint64_t sessions_failed; /* of which ended with an error */
  uint64_t chunks_sent, chunks_received; /* delta chunks (frames) */
  uint64_t rows_sent, rows_received;     /* rows in those chunks */
  uint64_t bytes_sent, bytes_received;   /* all session bytes */
  uint64_t frame_bytes_sent, frame_bytes_received; /* frames as sent
                                                      (compressed) */
  uint64_t raw_bytes_sent, raw_bytes_received; /* their bodies before
                                                  compression */
  uint64_t applies;       /* chunks applied (sync_delta_apply*, not dry) */
  uint64_t rows_applied;  /* rows in them */
  uint64_t conflicts;     /* conflicts recorded by those applies */
  uint64_t refused;       /* rows refused by the sender's rights */
  uint64_t retries;       /* session retries by sync_retry_run */
  uint64_t corrupt;       /* SYNC_ECORRUPT failures detected (damaged
                             rows, log entries, records) */
  uint64_t tombstones_collected; /* by sync_gc */
  sync_histogram commit_ns;  /* sync_txn_commit of write transactions */
  sync_histogram apply_ns;   /* sync_delta_apply* (merge, not commit) */
  sync_histogram session_ns; /* sessions, created to freed */
} sync_stats;

/* Copy env's stats into *out (about 16 KiB).  Counts since the env was
 * created; they are not stored in the file.  Errors: SYNC_EINVAL. */
SYNC_API int sync_env_stats(sync_env *env, sync_stats *out);

/* Write st as Prometheus text exposition format (version 0.0.4) into buf:
 * "# HELP" and "# TYPE" lines, a sync_build_info gauge (the version as
 * a label), counters named sync_*_total (directions as a label), and each
 * histogram as a Prometheus histogram in seconds (cumulative _bucket
 * series at le = 2^10 .. 2^40 ns and +Inf, _sum, _count) plus a _max
 * gauge.  Writes at most cap bytes,
 * NUL-terminated when cap > 0, like snprintf.  Returns the length of the
 * whole text (a return >= cap means it was cut: call again with more
 * room), or SYNC_EINVAL (st NULL, or buf NULL with cap > 0). */
SYNC_API int64_t sync_stats_prometheus(const sync_stats *st, char *buf,
                                       size_t cap);

/* Peers this replica has exchanged deltas with (docs/FORMAT.md, "Peer
 * record"). */
typedef struct sync_peer_info {
  uint8_t site[16];
  int initial;          /* 1: our cursor is inside an initial stream */
  int partial;          /* the run since the cursor started left rows out */
  uint64_t version;     /* log mode: we hold the peer's log up to here */
  uint32_t seq;
  uint64_t v0;          /* initial mode: the peer's version at its start */
  unsigned table;       /* initial mode: table being streamed */
  uint64_t acked_version; /* the peer holds our log up to here */
  uint32_t acked_seq;
  uint64_t tombstones_pending; /* tombstones the peer has not acknowledged
                                  (gc keeps them for it) */
  int scoped;           /* the peer served our cursor under a scope: */
  uint64_t filter_version; /* its filter version, and */
  unsigned char tables[SYNC_RIGHTS_BYTES]; /* the tables it served */
} sync_peer_info;

/* What a replica can say of its own state (synctl verify prints it). */
typedef struct sync_health {
  int may_miss_deletes;  /* 1: a peer answered SYNC_ESTALE (this replica's
                            cursor is behind tombstones it collected) and
                            no full run from it has completed since: rows
                            it deleted may still be live here.
                            sync_peer_reset of that peer and a sync clear
                            it (the stream is complete) */
  int collected;         /* this replica has collected tombstones */
  uint64_t peers;        /* known peers */
  uint64_t peers_stale;  /* of which answered SYNC_ESTALE, as above */
  uint64_t peers_behind_horizon; /* of which acknowledged less than this
                            replica's last collection: their next pull
                            gets SYNC_ESTALE */
  uint64_t tombstones;   /* tombstones kept (sync_tombstones) */
  uint64_t folds;        /* fold records kept (sync_folds_get) */
  int fold_pending;      /* a site retired here (sync_site_retire) still
                            has counter cells to fold: sync_gc and
                            sync_env_gc go on with them */
} sync_health;

/* Fill *out from txn's snapshot.  Walks the peer records and the log.
 * Errors: SYNC_EINVAL, SYNC_ECORRUPT, storage errors. */
SYNC_API int sync_health_get(sync_txn *txn, sync_health *out);

/* Write up to cap peers (ordered by site id) to out and their total to
 * *n.  out may be NULL with cap 0 to count.  Errors: SYNC_EINVAL,
 * SYNC_ECORRUPT (a damaged peer record), storage errors. */
SYNC_API int sync_peers_get(sync_txn *txn, sync_peer_info *out, size_t cap,
                            size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* SYNC_H */
