/*
 * db.h - the env and transaction objects and the row-level primitives that
 * the public calls (db.c) and the merge engine (merge.c) share.
 */
#ifndef SX_DB_H
#define SX_DB_H

#include "internal.h"

#include "clock.h"
#include "hash.h"
#include "row.h"
#include "schema.h"
#include "stats.h"
#include "store.h"
#include "util.h"

/* Taken by the thread writing errmsg (a failing call), so that threads
 * failing at once do not write the message together. */
#if defined(__STDC_NO_ATOMICS__)
typedef int sx_errlock;
#else
#include <stdatomic.h>
typedef atomic_int sx_errlock;
#endif

/* A slot of the peers' schemas (sync_env.compat), filled once. */
#if defined(__STDC_NO_ATOMICS__)
typedef sx_schema *sx_aschema;
#define SX_PLOAD(p) (*(p))
#else
typedef sx_schema *_Atomic sx_aschema;
#define SX_PLOAD(p) atomic_load_explicit((p), memory_order_acquire)
#endif

#define SX_MAGIC "sync-db\0"
/* 2: the per-table record ("n" + id) holds the live count and the sums of
 * the row fingerprints.  A writable open upgrades a format-1 file. */
#define SX_FORMAT_VERSION 5
#define SX_TSUM_LEN 32 /* per-table record: u64 live, content, meta, rows (LE) */
#define SX_EXTRA_DBS 16 /* meta, sites, log and room for later stores */
#define SX_LOGKEY 12

#define SX_COMPAT_MAX 16

struct sync_env {
  sx_alloc al;
  int durability;
  size_t mapsize, mapmax;
  sync_clock_fn clock;
  void *clock_ctx;
  sync_random_fn random;
  void *random_ctx;
  sx_schema *decl;   /* declared by the program, compared at open */
  sx_schema *schema; /* in force */
  sx_store *st;
  int rdonly;
  sx_dbi meta, sites, log;
  sx_dbi tdbi[SYNC_MAX_TABLES];
  sx_dbi vv, peers, conflicts;
  sx_dbi rejects;  /* the rejection log (merge.c, "Rejections") */
  int rejects_ok;  /* the store exists (older files gain it when opened
                      for writing) */
  sx_dbi epochs;   /* history marks (db.c, "Epochs") */
  int epochs_ok;   /* the store exists (files of older versions may lack
                      it until opened for writing) */
  uint8_t site[SX_SITE_LEN];
  char errmsg[256];
  int native;
  sx_errlock errlock;
  sync_change_fn on_change;
  void *on_change_ctx;
  sync_conflict_fn on_conflict;
  void *on_conflict_ctx;
  sync_resolver_fn resolver;
  void *resolver_ctx;
  sx_stats stats; /* operating counters (stats.h) */
  /* Peers' schemas found compatible with ours (a handshake, or
   * sync_env_schema_accept): deltas and requests made under their hashes
   * are accepted, and the values a delta brings for tables and columns
   * beyond ours are checked against the sender's.  Slots fill in order
   * and are never replaced while the env is open, so readers need no
   * lock; emptied when our schema changes (no transaction is active
   * then) and at close. */
  sx_aschema compat[SX_COMPAT_MAX];
};

struct sync_txn {
  sync_env *env;
  sx_stxn *t;
  int rdonly;
  int failed; /* an LMDB write failed: only abort remains */
  int wrote;   /* took a version: rows changed */
  int dirty;   /* state to write at commit (cursors, tombstones) */
  int stamped;
  uint64_t base_version, hlc_last, schema_version;
  uint64_t version, hlc;
  uint32_t seq;
  unsigned long gen; /* bumped by every write, for open iterators */
  int64_t *delta;    /* live-row count change per table */
  uint64_t (*dsum)[3]; /* per table: content sum, meta sum and row count
                          change, mod 2^64 */
  sx_scur **cur;     /* cached cursor per table */
  unsigned ncur;
  int scratch_ok;
  sx_row old, nw;
  sx_buf enc;
  sync_cursor *cursors; /* user cursors, invalidated at the end */
  sync_changes *changes;
  uint64_t hlc_seen; /* highest remote stamp applied: the clock follows */
  int64_t log_added; /* log entries added (or removed, negative) */
  uint64_t rows_written; /* rows stored, for the stats */
  int64_t log_stale; /* entries left behind by rows that changed again */
  uint64_t *gccl;    /* per table: largest causal length collected (gc) */
  int gccl_ok;       /* gccl loaded (NULL then means all zero) */
  sx_buf changed;    /* (table, key) of changed rows, for on_change */
  sx_buf fpbuf;      /* scratch of sx_row_fp */
  sx_buf conflicts;  /* ids of recorded conflicts, for on_conflict */
  sx_buf cpend;      /* conflict records waiting for their row's write */
  uint8_t (*sites)[SX_SITE_LEN]; /* site table, loaded on demand */
  uint32_t nsites, sites_cap;
  int sites_ok;
};

struct sync_cursor {
  sx_alloc al;
  sync_txn *x;
  unsigned tid;
  sx_scur *c;
  int started, done, dead;
  unsigned long gen;
  size_t lolen, hilen, lastlen;
  int has_lo, has_hi;
  unsigned char lo[SYNC_MAX_KEY], hi[SYNC_MAX_KEY], last[SYNC_MAX_KEY];
  sx_row row;
  sync_cursor *next;
};

struct sync_changes {
  sx_alloc al;
  sync_txn *x;
  sx_scur *c;
  uint64_t since;
  int started, dead;
  unsigned long gen;
  unsigned char last[SX_LOGKEY];
  unsigned tid;
  sx_row row;
  sync_changes *next;
};

/* Record a failure: message into env->errmsg; returns rc. */
SYNC_PRIVATE int sx_fail(sync_env *env, int rc, const char *fmt, ...);
/* Make the per-table cursors and row scratch of a transaction. */
SYNC_PRIVATE int sx_scratch(sync_txn *x);
SYNC_PRIVATE int sx_table_cursor(sync_txn *x, unsigned tid, sx_scur **out);
/* Take the transaction's stamp (at its first change). */
SYNC_PRIVATE void sx_stamp_txn(sync_txn *x);
/* Store x->nw at key (replacing x->old when found, which must have been
 * decoded from the same key), with its log entry; keeps counts and the
 * change list.  The only place rows are written.  append: the key sorts
 * after every key of the table. */
SYNC_PRIVATE int sx_store_row(sync_txn *x, unsigned tid, sx_scur *cur,
                              const void *key, size_t klen, int found,
                              int append);
/* Remove the row at cur (x->old, decoded from key) without a trace: no
 * tombstone, no log entry; keeps counts, sums and the change list.  For
 * rows that left this replica's scope (exit markers). */
SYNC_PRIVATE int sx_remove_row(sync_txn *x, unsigned tid, sx_scur *cur,
                               const void *key, size_t klen);
/* Row r of table tid (key) is about to be deleted from the store: the
 * table's counts and fingerprint sums lose it (before the delete: r's
 * values may point into the stored bytes). */
SYNC_PRIVATE int sx_sums_drop(sync_txn *x, unsigned tid, const void *key,
                              size_t klen, const sx_row *r);
/* Causal length for a new row of table tid: above every tombstone this
 * replica ever collected, so that a re-insert after gc still wins over
 * peers that kept the tombstone. */
SYNC_PRIVATE int sx_fresh_cl(sync_txn *x, unsigned tid, uint64_t *cl);
/* Per-table cursor and count arrays. */
SYNC_PRIVATE int sx_txn_tables(sync_txn *x);
/* Load the site table into x->sites. */
SYNC_PRIVATE int sx_sites_load(sync_txn *x);
/* 16-byte id of local site index idx. */
SYNC_PRIVATE int sx_site_id(sync_txn *x, uint32_t idx, uint8_t *out);
/* Local index of a site id, adding it (write txns) when add is set;
 * SYNC_NOTFOUND when absent and not added. */
SYNC_PRIVATE int sx_site_index(sync_txn *x, const uint8_t *id, int add,
                               uint32_t *out);
SYNC_PRIVATE void sx_logkey(unsigned char *k, uint64_t version, uint32_t seq);
/* Check that log entry (lk, value) is its row's current one: 0 with the
 * row decoded into r and *tid / *key set; SYNC_NOTFOUND for an entry a
 * later change left behind (or whose row was collected); SYNC_ECORRUPT
 * for a malformed one. */
SYNC_PRIVATE int sx_log_current(sync_txn *x, sx_row *r,
                                const unsigned char *lk, size_t lkn,
                                const unsigned char *v, size_t vn,
                                unsigned *tid, sx_slice *key);
/* Fingerprints of one stored row (docs/FORMAT.md, "Fingerprints").
 * *content hashes what sync_digest covers (key and the values of the
 * replicated columns); *meta hashes that plus the causal length and every
 * stamp (as site ids, so equal rows hash equal on every replica), for
 * range repair.  A tombstone has neither: both are 0 and the call
 * returns 0 (a live row returns 1).  Needs the site table (loaded on
 * demand), so it can fail with a storage error. */
SYNC_PRIVATE int sx_row_fp(sync_txn *x, unsigned tid, const unsigned char *key,
                           size_t klen, const sx_row *r, uint64_t *content,
                           uint64_t *meta);
/* A table's sums, mod 2^64, of the content fingerprints of its live rows
 * and of the meta fingerprints of all its rows (tombstones too), the
 * number of live rows and of all rows.  O(1): read from the table's stored record
 * (kept at every commit by sx_store_row) plus the open transaction's
 * changes; always equal to what a scan computes (sx_table_scan). */
typedef struct sx_tsum {
  uint64_t content, meta, live, rows;
} sx_tsum;
SYNC_PRIVATE int sx_table_sum(sync_txn *x, unsigned tid, sx_tsum *out);
/* The same sums by a scan of every row of the table: for the format
 * upgrade and schema changes, which rebuild the stored record. */
SYNC_PRIVATE int sx_table_scan(sync_txn *x, unsigned tid, sx_tsum *out);
/* The mark of version v of this replica's log (id 0 when none). */
SYNC_PRIVATE int sx_mark_of(sync_txn *x, uint64_t v, sx_mark *out);
/* Does a peer's view of this replica's log, "held up to version v, with
 * mark m", fit this replica's history?  0 if so, SYNC_EHISTORY (with the
 * message set) if not, or a storage error. */
SYNC_PRIVATE int sx_history_check(sync_txn *x, uint64_t v, const sx_mark *m);
/* The HLC this replica's clock stood at when the epoch after epoch m
 * began (the state of the file at that open): 0, or SYNC_NOTFOUND when
 * the file has no epoch m, or none after it. */
SYNC_PRIVATE int sx_epoch_next_hlc(sync_txn *x, const sx_mark *m,
                                   uint64_t *hlc);
/* Take a new site id: this replica's stamps up to hlc t keep the old id,
 * later ones move to the new one; the old id becomes an ordinary site
 * held up to hlc held (0: nothing claimed). */
SYNC_PRIVATE int sx_site_renew(sync_txn *x, uint64_t t, uint64_t held);
/* merge.c: hand the conflicts a committed transaction recorded to the
 * on_conflict callback. */
SYNC_PRIVATE void sx_notify_conflicts(sync_txn *x);
/* May a delta or request made under schema hash h be taken?  Ours, or a
 * peer's found compatible by sx_compat_check. */
SYNC_PRIVATE int sx_compat_ok(sync_env *env, uint64_t h);
/* The peer schema with hash h that sx_compat_check kept (NULL when none,
 * or when h is ours); valid until our schema changes or the env closes. */
SYNC_PRIVATE const sx_schema *sx_compat_find(sync_env *env, uint64_t h);
SYNC_PRIVATE void sx_compat_clear(sync_env *env);
/* Check peer schema p against ours: 0 (and a copy of p kept), or
 * SYNC_ESCHEMA with env's message naming the table and the column as
 * each side declares it (ours and theirs say where each is; peer_first:
 * the peer's is named first), SYNC_ELIMIT (SX_COMPAT_MAX other schemas
 * met since the open), SYNC_ENOMEM. */
SYNC_PRIVATE int sx_compat_check(sync_env *env, const sx_schema *p,
                                 const char *ours, const char *theirs,
                                 int peer_first);

#endif
