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
/* h, capped by the record of site in b if there is one. */
SYNC_PRIVATE uint64_t sx_renew_cap(const sx_buf *b, const uint8_t *site, uint64_t h);
/* The renewal records this replica keeps, by the site indexes of d (the
 * last chunk of a run carries them). */
SYNC_PRIVATE int sx_renew_attach(sync_txn *x, sync_delta *d);
/* The renewal records, copied into b (24 bytes each). */
SYNC_PRIVATE int sx_renew_load(sync_txn *x, sx_buf *b);

#endif
