/*
 * merge.h - the in-memory form of requests and delta chunks, shared by
 * the merge engine (merge.c), which makes and applies them, and the wire
 * codec (codec.c), which turns chunks into frames and back.
 */
#ifndef SX_MERGE_H
#define SX_MERGE_H

#include "db.h"

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

typedef struct sx_peer {
  sx_cursor cur;    /* what this replica holds of the peer */
  int tainted;      /* the run since the cursor was last zero left rows
                       out (partial or refused chunks): it cannot raise
                       the version vector */
  int stale;        /* the peer said our cursor is behind its tombstone
                       collection (SYNC_ESTALE); cleared when a run from
                       it completes */
  uint64_t acked_version; /* what the peer holds of this replica */
  uint32_t acked_seq;
  sx_mark mark;     /* the peer's history mark at the cursor (db.h) */
  sx_scope scope;   /* the scope the peer served the cursor with */
} sx_peer;

struct sync_request {
  sx_alloc al;
  uint8_t requester[SX_SITE_LEN], sender[SX_SITE_LEN];
  uint64_t schema_hash;
  sx_cursor cur;
  sx_mark mark; /* the sender's history mark at cur, as the requester
                   holds it */
  sx_scope scope; /* the scope the requester was last served with */
  size_t nvv;
  sync_stamp *vv;
};

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

/* The most renewal records a replica keeps, and a frame carries. */
#define SX_RENEW_MAX 1024
typedef struct sx_renew {
  uint32_t site;
  uint64_t held;
} sx_renew;

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
   * its claims are void above (merge.c, "Renewal records"). */
  sx_renew *renew;
  size_t nrenew;
  sx_buf arena;
};

/* Order of log positions (version, seq). */
SYNC_PRIVATE int sx_poscmp(uint64_t va, uint32_t sa, uint64_t vb, uint32_t sb);
/* The log version a cursor stands at (its stream's start in initial
 * mode). */
SYNC_PRIVATE uint64_t sx_cursor_version(const sx_cursor *c);
/* The peer record of site: 0, SYNC_NOTFOUND, or SYNC_ECORRUPT. */
SYNC_PRIVATE int sx_peer_get(sync_txn *x, const uint8_t *site, sx_peer *p);
/* Call fn on every peer record, in site id order; stops at fn's first
 * nonzero return, which it returns. */
SYNC_PRIVATE int sx_peers_each(sync_txn *x,
                               int (*fn)(void *ctx, const uint8_t *site,
                                         const sx_peer *p),
                               void *ctx);
/* Raise meta "gccl" (per table id: the largest causal length collected)
 * to maxcl (ntables entries), entry by entry. */
SYNC_PRIVATE int sx_gccl_raise(sync_txn *x, const uint64_t *maxcl);
/* sync_site_renew after a peer showed a view of this replica's log (mark
 * m) that is not this file's history: the renewal record keeps what the
 * file's epochs show it holds of the old id (merge.c, "Renewal
 * records"). */
SYNC_PRIVATE int sx_site_renew_after(sync_txn *x, const sx_mark *m);
/* Record that peer site answered SYNC_ESTALE (session, receiving side). */
SYNC_PRIVATE int sx_peer_set_stale(sync_txn *x, const uint8_t *site);
/* The peer record of site written back (write transactions). */
SYNC_PRIVATE int sx_peer_put(sync_txn *x, const uint8_t *site, const sx_peer *p);
/* What row filter says of stored row r (table tid, key) for peer: 1 to
 * send it, 0 not; a tombstone is asked with no values.  vals: room for
 * the table's column count, filled with the row's values. */
SYNC_PRIVATE int sx_filter_row(sync_txn *x, sync_row_filter_fn filter,
                               void *ctx, const uint8_t *peer, unsigned tid,
                               const unsigned char *key, size_t klen,
                               const sx_row *r, sync_value *vals);
/* Add stored row r of table tid to d, leaving out columns and rows whose
 * stamps rvv (per local site index) covers (a row is still named when
 * keyed is set: complete initial streams); o (may be NULL) says whether
 * to send whole rows.  The caller has decided the row is in scope.
 * *bytes grows by the value bytes added. */
SYNC_PRIVATE int sx_delta_add(sync_delta *d, sync_txn *x, unsigned tid,
                              const unsigned char *key, size_t klen,
                              const sx_row *r, const uint64_t *rvv,
                              const sync_delta_opts *o, int keyed,
                              size_t *bytes);
/* codec.c: a scope as frames and session messages carry it: u8 flags,
 * then with SX_SCOPE_ON u64 filter version, var n + n bytes of served
 * tables, var n + n bytes of held tables (n <= SX_TBYTES, trailing zero
 * bytes left out).  sx_wscope needs SX_SCOPE_MAX bytes. */
#define SX_SCOPE_MAX (1 + 8 + 2 * (SX_VARINT_MAX + SX_TBYTES))
SYNC_PRIVATE unsigned char *sx_wscope(unsigned char *p, const sx_scope *s);
SYNC_PRIVATE int sx_rscope(sx_rd *r, sx_scope *s);
/* A new empty delta on allocator al (NULL when out of memory). */
SYNC_PRIVATE sync_delta *sx_delta_new(const sx_alloc *al);
/* Grow array *p of elem-byte items to hold need items (doubling). */
SYNC_PRIVATE int sx_grow(const sx_alloc *al, void **p, size_t *cap, size_t need,
                         size_t elem);

/* The session's apply (server side): as sync_delta_apply_opts, but a
 * chunk with refused rows leaves the sender's cursor where it was, for
 * sx_peer_advance once the writer has answered. */
SYNC_PRIVATE int sx_delta_apply_held(sync_txn *x, const sync_delta *d,
                                     const sync_apply_opts *ao,
                                     sync_apply_report *rep);
/* Move the cursor for site from start to end (and mark) after a chunk
 * with refused rows was answered; the run can no longer raise the
 * vector.  Nothing when the cursor is not at start any more. */
SYNC_PRIVATE int sx_peer_advance(sync_txn *x, const uint8_t *site,
                                 const sx_cursor *start, const sx_cursor *end,
                                 const sx_mark *mark, int last);
/* The writer's side of a refusal (merge.c, "Rejections"): in write
 * transaction x, row (tid, key) returns to the peer's version srow of
 * delta sd (NULL: the peer holds no row, the row is removed without a
 * tombstone), if this replica has not changed it after version snap;
 * the refusal goes to the rejection log either way.  Vector entries of
 * other sites whose changes the row drops are lowered below them.
 * Returns 1 when the row was taken back, 0 when not, or an error. */
SYNC_PRIVATE int sx_reject_apply(sync_txn *x, const uint8_t *peer,
                                 unsigned tid, const unsigned char *key,
                                 size_t klen, int reason, const char *text,
                                 size_t tlen, const sync_delta *sd,
                                 const sx_drow *srow, uint64_t snap);

/* The structural checks an apply makes (tables, columns, sites, value
 * lengths): 0 or an error. */
SYNC_PRIVATE int sx_delta_valid(const sync_delta *d, const sx_schema *s);

/* codec.c: a cursor as frames and session messages carry it (u8 mode,
 * then var fields; see docs/FORMAT.md).  sx_wcursor needs room for
 * 1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY bytes. */
SYNC_PRIVATE unsigned char *sx_wcursor(unsigned char *p, const sx_cursor *c);
SYNC_PRIVATE int sx_rcursor(sx_rd *r, sx_cursor *c);
/* codec.c: the allocator a names (libc when NULL); SYNC_EINVAL for a
 * partial one. */
SYNC_PRIVATE int sx_alloc_from(const sync_allocator *a, sx_alloc *al);
/* codec.c: body bytes of the last frame dec decoded. */
SYNC_PRIVATE size_t sx_decoder_last_raw(const sync_decoder *dec);
#define SX_CURSOR_MAX (1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY)

#endif
