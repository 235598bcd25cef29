/*
 * types.h - the objects every engine module shares: the environment, the
 * transaction, cursors and change iterators, at the foot of the engine so
 * that each module after it can use them.
 */
#ifndef SX_TYPES_H
#define SX_TYPES_H

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
/* The storage format (FORMAT.md, "File"); a writable open upgrades an
 * older file.  9: the change log in records (log.c); 10: counter fold
 * records (fold.c), which code before them would not apply; 11: the
 * renewal records and the fold records in stores of their own. */
#define SX_FORMAT_VERSION 11
/* The first format with the change log in records: a read-only open of
 * an older file fails (only a writable open moves the log). */
#define SX_FORMAT_LOGREC 9
/* The first format with the renewal records in sx.renew: a read-only
 * open of an older file fails too (only a writable open moves them). */
#define SX_FORMAT_RENEW 11
/* Format 8 brought counter cells (row tag 5).  Code before it, which
 * would take them for damage, refuses every format-8 file with
 * SYNC_EVERSION; a file whose schema gains a counter column says at
 * least 8 at once (sx_format_counters). */
#define SX_FORMAT_COUNTER 8
#define SX_TSUM_LEN 32 /* per-table record: u64 live, content, meta, rows (LE) */
#define SX_EXTRA_DBS 16 /* meta, sites, log and room for later stores */
#define SX_LOGKEY 12
/* Largest value of a change log record (log.c, FORMAT.md "Change log"):
 * four of them and their LMDB node headers fill a 4 KiB page, and one
 * stays far below LMDB's limit for a value kept in its page. */
#define SX_LOGREC_MAX 998
/* Largest encoded log entry: four varints, a key length and the key. */
#define SX_LENT_MAX (4 * SX_VARINT_MAX + 2 + SYNC_MAX_KEY)
/* One change log entry: a position and the row it names. */
typedef struct sx_lent {
  uint64_t version;
  uint32_t seq;
  unsigned tid;
  size_t klen;
  unsigned char key[SYNC_MAX_KEY];
} sx_lent;
/* A log record being built: key, value so far and its last entry. */
typedef struct sx_lrec {
  unsigned char rk[SX_LOGKEY];
  unsigned char v[SX_LOGREC_MAX];
  size_t n; /* 0: no record */
  sx_lent last;
} sx_lrec;
/* Iterator over the change log's entries (log.h). */
typedef struct sx_logit {
  sync_txn *x;
  sx_scur *c;
  int held;   /* rec holds a record (a copy) */
  int pend;   /* e is an entry found by a seek, not yet returned */
  int reseek; /* the cursor no longer stands on rec: search again */
  int end;    /* past the last record */
  unsigned char rk[SX_LOGKEY];
  unsigned char rec[SX_LOGREC_MAX];
  size_t rn, off; /* rec's length; the next entry's offset */
  unsigned idx;   /* entries of rec decoded */
  unsigned ndel;  /* entries of rec deleted (bits in del) */
  unsigned char del[SX_LOGREC_MAX / 24 + 1];
  sx_lent e; /* the entry the iterator stands on */
} sx_logit;
#define SX_COMPAT_MAX 16
/* A table's history settings as the env holds them (history.c). */
typedef struct sx_rhopt {
  uint64_t max_versions, max_age_ms; /* 0: no limit */
  int on;
} sx_rhopt;
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
  sx_dbi rejects;  /* the rejection log (reject.c, "Rejections") */
  int rejects_ok;  /* the store exists (older files gain it when opened
                      for writing) */
  sx_dbi epochs;   /* history marks (open.c, "Epochs") */
  int epochs_ok;   /* the store exists (files of older versions may lack
                      it until opened for writing) */
  sx_dbi hist;     /* row history (history.c); made by the first table
                      that keeps history */
  sx_dbi renew;    /* renewal records (renew.c, "Renewal records") */
  sx_dbi folds;    /* counter fold records (fold.c) */
  int hist_ok;
  sx_rhopt *rh;    /* SYNC_MAX_TABLES settings, NULL when no table keeps
                      history */
  char errmsg[256];
  int native;
  sx_errlock errlock;
  sync_change_fn on_change;
  void *on_change_ctx;
  sync_conflict_fn on_conflict;
  void *on_conflict_ctx;
  /* Installed by the conflict module with on_conflict (conflict.c): hands
   * a committed transaction's conflicts to it, so the commit needs no
   * call up to that module. */
  void (*notify_conflicts)(sync_txn *x);
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
  /* This replica's site id as the file held it when the transaction
   * began (meta "site"), then as the transaction renews it: another
   * process may have renewed it since this env opened. */
  uint8_t self[SX_SITE_LEN];
  sx_stxn *t;
  int rdonly;
  int group;      /* SYNC_TXN_GROUP: t is a member of a batch (store.h) */
  sx_gmember gm;
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
  /* The row a public read decodes (sync_get, sync_contains, counter
   * reads, sync_peers_get), apart from old and nw: the application may
   * read through the transaction from a callback (a row filter, the
   * resolver) while a cut or a merge holds its row in old. */
  int rd_ok;
  sx_row rd;
  sx_buf enc;
  sync_cursor *cursors; /* user cursors, invalidated at the end */
  sync_changes *changes;
  uint64_t hlc_seen; /* highest remote stamp applied: the clock follows */
  uint64_t renew_wit; /* the clock this transaction's renewal records are
                         known at (renew.c), 0 until one is taken */
  int renew_some;     /* renewal records: 0 not looked at yet, 1 none,
                         2 some (renew.c) */
  int64_t log_added; /* log entries added (or removed, negative) */
  uint64_t rows_written; /* rows stored, for the stats */
  int64_t log_stale; /* entries left behind by rows that changed again */
  uint64_t *gccl;    /* per table: largest causal length collected (gc) */
  int gccl_ok;       /* gccl loaded (NULL then means all zero) */
  sx_buf changed;    /* (table, key) of changed rows, for on_change */
  sx_buf fpbuf;      /* scratch of sx_row_fp */
  sx_buf ctrs, cpay; /* scratch of counter cells: contributions, and the
                        payloads of x->nw's counter columns */
  int ctr_format;    /* the format record says 8 (sx_format_counters) */
  struct sx_fold *folds; /* fold records (fold.c), loaded on demand */
  size_t nfolds;
  int folds_ok;
  uint32_t folds_map; /* x->nsites when the heirs' indexes were found */
  sx_buf fmark;      /* scratch of sx_fold_cell */
  sx_buf conflicts;  /* ids of recorded conflicts, for on_conflict */
  sx_buf cpend;      /* conflict records waiting for their row's write */
  uint8_t (*sites)[SX_SITE_LEN]; /* site table, loaded on demand */
  uint32_t nsites, sites_cap;
  int sites_ok;
  struct sx_rhtx *rh; /* history work of the transaction (history.c) */
  int lt_ok;          /* lt is the log's last record (log.c) */
  int lt_dirty;       /* ... with entries not yet written (sx_log_flush) */
  int lt_new;         /* ... not in the log yet at all */
  sx_lrec lt;
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
  int asof;           /* rows as of a point (sync_cursor_open_asof) */
  int asof_kind;      /* SYNC_ASOF_VERSION or SYNC_ASOF_TIME */
  uint64_t asof_at;
  uint64_t asof_floor; /* the table's floor version when opened */
};
struct sync_changes {
  sx_alloc al;
  sync_txn *x;
  sx_logit it;
  uint64_t since;
  int started, dead;
  int scan; /* SYNC_CHANGES_UNORDERED chose a scan of the tables */
  unsigned long gen;
  uint64_t lastv; /* position of the last entry returned */
  uint32_t lasts;
  unsigned tid;
  sx_row row;
  /* A scan: its cursor on table tid (NULL: open it next), and the key
   * of the last row returned, where it resumes after writes. */
  sx_scur *sc;
  uintptr_t page; /* sx_walk_ahead's */
  size_t klen;
  unsigned char key[SYNC_MAX_KEY];
  sync_changes *next;
};
/* A table's sums, mod 2^64, of the content fingerprints of its live rows
 * and of the meta fingerprints of all its rows (tombstones too), the
 * number of live rows and of all rows.  O(1): read from the table's stored record
 * (kept at every commit by sx_store_row) plus the open transaction's
 * changes; always equal to what a scan computes (sx_table_scan). */
typedef struct sx_tsum {
  uint64_t content, meta, live, rows;
} sx_tsum;

#endif
