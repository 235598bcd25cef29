/*
 * merge.h - the in-memory form of requests and delta chunks, shared by
 * the merge engine (merge.c), which makes and applies them, and the wire
 * codec (codec.c), which turns chunks into frames and back.
 */
#ifndef SX_MERGE_H
#define SX_MERGE_H

#include "db.h"
#include "delta.h"

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
/* codec.c: body bytes of the last frame dec decoded. */
SYNC_PRIVATE size_t sx_decoder_last_raw(const sync_decoder *dec);
#define SX_CURSOR_MAX (1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY)

#endif
