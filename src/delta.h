/*
 * delta.h - the in-memory form of requests and delta chunks: cursors,
 * scopes, rows and column stamps as the engine makes and applies them and
 * the codec (codec.c) turns them into frames and back.  Types only, on
 * util, clock and the public header, so that the codec needs nothing of
 * the storage.
 */
#ifndef SX_DELTA_H
#define SX_DELTA_H

#include "internal.h"

#include "clock.h"
#include "util.h"

#define SX_MODE_LOG 0
#define SX_MODE_INITIAL 1
#define SX_NONE UINT32_MAX
#define SX_TAG_NONE 7

typedef struct sx_cursor {
  int mode;
  uint64_t version; /* log mode: position held */
  uint32_t seq;
  uint64_t v0;      /* initial mode */
  uint32_t tid;
  size_t klen;      /* 0: the table's stream has not started */
  unsigned char key[SYNC_MAX_KEY];
} sx_cursor;

/* The scope a receiver's cursor was served with (docs/PROTOCOL.md,
 * "Scope"): kept by the receiver with its cursor, sent back in its
 * requests, and carried by the chunks of a sender that tracks it. */
#define SX_TBYTES ((SYNC_MAX_TABLES + 7) / 8)
#define SX_SCOPE_ON 0x1u     /* served under a scope */
#define SX_SCOPE_FILTER 0x2u /* with a row filter */
#define SX_SCOPE_EXITS 0x4u  /* the initial stream in progress restarted a
                                served receiver: rows out of scope exit */
#define SX_SCOPE_RESTART 0x8u /* chunks only: this chunk starts its stream
                                 from the beginning, as from a zero cursor */
typedef struct sx_scope {
  unsigned flags;        /* SX_SCOPE_*; 0: none (unknown) */
  uint64_t fver;         /* the filter version */
  unsigned char tables[SX_TBYTES]; /* tables served */
  unsigned char held[SX_TBYTES];   /* tables the receiver may hold rows
                                      of: the served ones, and during a
                                      restarted stream those of the scope
                                      before, until their rows exit */
} sx_scope;

struct sync_request {
  sx_alloc al;
  uint8_t requester[SX_SITE_LEN], sender[SX_SITE_LEN];
  uint64_t schema_hash;
  sx_cursor cur;
  sx_mark mark; /* the sender's history mark at cur, as the requester
                   holds it */
  sx_lineage lineage; /* and the epochs before it */
  sx_scope scope; /* the scope the requester was last served with */
  size_t nvv;
  sync_stamp *vv;
};

/* One contribution to a counter cell: the site's sums of its positive
 * adds (p) and of its negated negative adds (n), and its last add's HLC.
 * site is an index: into the replica's site table in a stored row, into
 * the chunk's in a chunk (after the cut renumbers it). */
typedef struct sx_ctr {
  uint64_t p, n, hlc;
  uint32_t site;
} sx_ctr;

/* A counter column's value in a chunk: v.type SYNC_COUNTER, v.len
 * contributions (sx_ctr, sites strictly increasing) at arena offset
 * v.data, which is a multiple of 8 (SX_CTR_ALIGN). */
#define SX_CTR_ALIGN(off) (((off) + 7u) & ~(size_t)7u)
static inline sx_ctr *sx_dctr(const sync_delta *d, const void *data);

typedef struct sx_dcol {
  unsigned col;
  uint64_t hlc, bhlc; /* bhlc 0: no base */
  uint32_t site, bsite; /* indexes into the delta's site table */
  sync_value v;       /* TEXT/BLOB: data is an offset into the arena */
} sx_dcol;

typedef struct sx_drow {
  unsigned tid;
  size_t koff, klen;
  uint64_t cl, clhlc;
  uint32_t clsite;
  size_t col0, ncols;
} sx_drow;

/* The most renewal records a chunk carries (a replica keeps any number). */
#define SX_RENEW_MAX 1024
typedef struct sx_renew {
  uint32_t site;
  uint64_t held;
} sx_renew;

/* About how many fold records a run's last chunk carries beyond those its
 * counter cells need (a replica keeps any number; a frame's bytes bound
 * how many it carries). */
#define SX_FOLD_MAX 4096
/* A fold record as a chunk carries it (frame flag FOLDS, fold.c): the
 * retired site's id, its heir by site index (a local index while the
 * chunk is cut), the heir's HLC from which its contributions hold the
 * site's, and what the heir held of the site. */
typedef struct sx_dfold {
  uint8_t site[SX_SITE_LEN];
  uint32_t heir;
  uint64_t hlc, held;
} sx_dfold;

struct sync_delta {
  sx_alloc al;
  uint8_t sender[SX_SITE_LEN], receiver[SX_SITE_LEN];
  uint64_t schema_hash;
  sx_cursor start, end;
  int last;
  int partial; /* rows were left out (tables, filter): vector not raised */
  int complete; /* an initial-stream chunk naming every row the sender
                   held in its key range (sent by a sender that collected
                   tombstones: what it leaves out, the sender deleted) */
  sx_mark mark; /* the sender's history mark at the end position */
  sx_lineage lineage; /* the epochs of the sender's log before the
                         mark's (frame minor 4), when the chunk moves
                         the requester to another epoch than it held */
  unsigned ngccl;   /* tables listed in gccl */
  struct {
    unsigned tid;
    uint64_t cl;
  } gccl[SYNC_MAX_TABLES]; /* the sender's largest collected causal
                              length per table (those above 0) */
  int repair;  /* a repair frame (repair.c), set by its receiver: merged by
                  the usual rules, but it never moves the cursor or raises
                  the vector, and a live row whose tombstone this replica
                  collected is answered with a new tombstone */
  uint32_t nsites;
  uint8_t (*sites)[SX_SITE_LEN];
  size_t nvv;
  uint64_t *vv; /* per delta site: the sender's vector (0 = nothing) */
  sx_drow *rows;
  size_t nrows, caprows;
  sx_dcol *cols;
  size_t ncols, capcols;
  /* Exit markers (frame minor 2): rows that left the receiver's scope,
   * with the sender's causal length and stamps (xcols: column stamps,
   * no values), sorted by (table, key) like rows. */
  sx_scope scope; /* the scope the chunk was cut under (flags 0: none) */
  sx_drow *xrows;
  size_t nx, capx;
  sx_dcol *xcols;
  size_t nxc, capxc;
  /* Renewal records (frame minor 3): site ids that a restored replica
   * gave up, by delta site index (>= 1, increasing), each with the HLC
   * its claims are void above (renew.c, "Renewal records"). */
  sx_renew *renew;
  size_t nrenew;
  /* Fold records (fold.c), sorted by site id then heir index. */
  sx_dfold *fold;
  size_t nfold;
  sx_buf arena;
};

static inline sx_ctr *sx_dctr(const sync_delta *d, const void *data) {
  return (sx_ctr *)(void *)(d->arena.p + (uintptr_t)data);
}

/* delta.c: a new empty delta on allocator al (NULL when out of memory). */
SYNC_PRIVATE sync_delta *sx_delta_new(const sx_alloc *al);
/* delta.c: a scope as frames and session messages carry it: u8 flags,
 * then with SX_SCOPE_ON u64 filter version, var n + n bytes of served
 * tables, var n + n bytes of held tables (n <= SX_TBYTES, trailing zero
 * bytes left out).  sx_wscope needs SX_SCOPE_MAX bytes. */
#define SX_SCOPE_MAX (1 + 8 + 2 * (SX_VARINT_MAX + SX_TBYTES))
SYNC_PRIVATE unsigned char *sx_wscope(unsigned char *p, const sx_scope *s);
SYNC_PRIVATE int sx_rscope(sx_rd *r, sx_scope *s);
/* delta.c: a mark's lineage as frames, session messages and peer
 * records carry it: var n (<= SX_LINEAGE_MAX), then n x (u64 epoch id,
 * var start version), newest first.  sx_rlineage refuses (SYNC_EFORMAT)
 * ids of 0, starts that do not fall strictly from mark m's, and a
 * lineage without a mark.  sx_wlineage needs SX_LINEAGE_WMAX bytes. */
#define SX_LINEAGE_WMAX \
  (SX_VARINT_MAX + SX_LINEAGE_MAX * (8 + SX_VARINT_MAX))
SYNC_PRIVATE unsigned char *sx_wlineage(unsigned char *p,
                                        const sx_lineage *l);
SYNC_PRIVATE int sx_rlineage(sx_rd *r, const sx_mark *m, sx_lineage *l);
/* delta.c: a cursor as frames and session messages carry it (u8 mode,
 * then var fields; see docs/FORMAT.md).  sx_wcursor needs room for
 * 1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY bytes. */
SYNC_PRIVATE unsigned char *sx_wcursor(unsigned char *p, const sx_cursor *c);
SYNC_PRIVATE int sx_rcursor(sx_rd *r, sx_cursor *c);
#define SX_CURSOR_MAX (1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY)

#endif
