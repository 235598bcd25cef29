/*
 * peer.h - what a replica keeps of its peers: log positions and cursors,
 * peer records, the version vector, and requests.
 */
#ifndef SX_PEER_H
#define SX_PEER_H

#include "open.h"
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
  sx_mark mark;     /* the peer's history mark at the cursor (clock.h) */
  sx_lineage lineage; /* the epochs of the peer's log before the mark's */
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
/* Record that peer site answered SYNC_ESTALE (session, receiving side). */
SYNC_PRIVATE int sx_peer_set_stale(sync_txn *x, const uint8_t *site);
/* The peer record of site written back (write transactions). */
SYNC_PRIVATE int sx_peer_put(sync_txn *x, const uint8_t *site, const sx_peer *p);
/* Move the cursor for site from start to end (and mark) after a chunk
 * with refused rows was answered; the run can no longer raise the
 * vector.  Nothing when the cursor is not at start any more. */
SYNC_PRIVATE int sx_peer_advance(sync_txn *x, const uint8_t *site,
                                 const sx_cursor *start, const sx_cursor *end,
                                 const sx_mark *mark,
                                 const sx_lineage *lin, int last);
/* A chunk moved the cursor to a position marked m, with lineage l (n 0:
 * the chunk carried none): set *pm and *pl.  A sender sends the lineage
 * whenever the mark is not the one the requester held, so a chunk
 * without one keeps the lineage held with the same mark, and leaves
 * none with another (the mark of a log's first epoch). */
SYNC_PRIVATE void sx_mark_move(sx_mark *pm, sx_lineage *pl, const sx_mark *m,
                               const sx_lineage *l);
/* The version vector of this replica, per local site index (own entry:
 * the state HLC).  *out has x->nsites entries, allocated. */
SYNC_PRIVATE int sx_vv_load(sync_txn *x, uint64_t **out);
/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */
SYNC_PRIVATE int sx_bit(const unsigned char *set, unsigned i);
SYNC_PRIVATE int sx_stampcmp(uint64_t ha, const uint8_t *sa, uint64_t hb,
                             const uint8_t *sb);
SYNC_PRIVATE int sx_cursor_eq(const sx_cursor *a, const sx_cursor *b);
/* Does cursor cur (where a receiver stands) already include position p? */
SYNC_PRIVATE int sx_cursor_covers(const sx_cursor *cur, const sx_cursor *p);
/* Does req claim writes of this replica's own id up to a clock its file
 * never stood at (a vector entry sx_hist_foreign finds, claim 1)?  0 if
 * not, or SYNC_EHISTORY with the message set and *held the clock the
 * file's history left the fleet's at (else UINT64_MAX), or an error. */
SYNC_PRIVATE int sx_claim_check(sync_txn *x, const sync_request *req,
                                uint64_t *held);
/* The same for one claim: a peer's vector entry hlc for this replica's
 * own id. */
SYNC_PRIVATE int sx_claim_own(sync_txn *x, uint64_t hlc, uint64_t *held);

#endif
