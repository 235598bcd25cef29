/*
 * renew.h - site renewal: taking a new site id after a restore, and the
 * renewal records that void a restored file's old claims.
 */
#ifndef SX_RENEW_H
#define SX_RENEW_H

#include "conflict.h"

/* sync_site_renew after a peer showed a view of this replica's log (mark
 * m) that is not this file's history, or a claim on its id its history
 * never made (claim: where the history left the fleet's, else
 * UINT64_MAX): the renewal record keeps what the file's epochs show it
 * holds of the old id (renew.c, "Renewal records"). */
SYNC_PRIVATE int sx_site_renew_after(sync_txn *x, const sx_mark *m,
                                     const sx_lineage *lin, uint64_t claim);
/* sync_site_renew keeping the old id's claims up to held: the clock the
 * file stood at where its history left the fleet's. */
SYNC_PRIVATE int sx_site_renew_held(sync_txn *x, uint64_t held);
/* The records a chunk carries, taken; runs start again when one of them
 * lowered this replica's vector. */
SYNC_PRIVATE int sx_apply_renewals(sync_txn *x, const sync_delta *d);
/* The sender's vector of d per delta site index, capped by the renewal
 * records this replica keeps and those d carries. */
SYNC_PRIVATE int sx_sender_vv(sync_txn *x, const sync_delta *d, uint64_t **out);
/* The renewal record of site: 0 with its HLC in *held, SYNC_NOTFOUND, or
 * an error. */
SYNC_PRIVATE int sx_renew_get(sync_txn *x, const uint8_t *site, uint64_t *held);
/* *h, capped by the renewal record of site if there is one. */
SYNC_PRIVATE int sx_renew_cap(sync_txn *x, const uint8_t *site, uint64_t *h);
/* How many renewal records this replica keeps (*n), and the sum of their
 * hashes (*sum: the set, whatever order they came in). */
SYNC_PRIVATE int sx_renew_sum(sync_txn *x, uint64_t *n, uint64_t *sum);
/* The renewal records a run's last chunk d carries to a requester whose
 * vector entry for this replica is own: those witnessed above it, by the
 * site indexes of d, as many as SX_RENEW_MAX.  *rest: 0, or the witness
 * of the first left out (the vector entry the chunk sends for this
 * replica must stay below it). */
SYNC_PRIVATE int sx_renew_attach(sync_txn *x, sync_delta *d, uint64_t own,
                                 uint64_t *rest);
/* In the open's transaction t of a file of format 10 or before: move the
 * records from meta "renewed" into sx.renew. */
SYNC_PRIVATE int sx_renew_upgrade(sync_env *env, sx_stxn *t);

#endif
