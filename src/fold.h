/*
 * fold.h - counter folds: the contributions of a retired site handed to
 * its heir, and the records that let every replica drop them (fold.c).
 */
#ifndef SX_FOLD_H
#define SX_FOLD_H

#include "fp.h"

/* A fold record as kept (sx.folds, by site then heir): every
 * contribution of heir to a counter cell whose HLC is at or above hlc
 * holds site's contribution to that cell; held is what heir held of site
 * when it retired it (its vector entry). */
typedef struct sx_fold {
  uint8_t site[SX_SITE_LEN], heir[SX_SITE_LEN];
  uint64_t hlc, held;
  uint32_t lheir; /* heir's local index, SX_NONE while not found */
} sx_fold;
#define SX_FOLD_REC 48 /* a record of format 10's meta "folds" */

/* Load x's fold records (once a transaction): *out and *n (n 0: none).
 * SYNC_ECORRUPT for a malformed record. */
SYNC_PRIVATE int sx_folds(sync_txn *x, sx_fold **out, size_t *n);
/* Add a record (kept sorted; an equal (site, heir) keeps the lower hlc).
 * *added is set when it was new. */
SYNC_PRIVATE int sx_fold_put(sync_txn *x, const uint8_t *site,
                             const uint8_t *heir, uint64_t hlc,
                             uint64_t held, int *added);
/* Drop from t[0..*k) (a counter cell, local site indexes increasing) the
 * contributions that a fold record says an heir's contribution in the
 * same cell holds.  *late (may be NULL) counts those dropped that are
 * newer than what their heir held at the retirement: adds a retired
 * site made after it, which its heir may not have had. */
SYNC_PRIVATE int sx_fold_cell(sync_txn *x, sx_ctr *t, size_t *k,
                              uint64_t *late);
/* In a[0..*n) (a counter cell with this replica's own contribution at
 * a[0], site 0): add to it every contribution of a site retired to this
 * replica and drop those.  SYNC_ELIMIT when a sum would pass 2^64 - 1. */
SYNC_PRIVATE int sx_fold_absorb(sync_txn *x, sx_ctr *a, size_t *n);
/* Whether local site s has a record naming this replica as its heir. */
SYNC_PRIVATE int sx_fold_mine(sync_txn *x, uint32_t s);
/* The records chunk d carries (d->fold), taken (those this replica
 * lacks).  SYNC_EHISTORY when one retires this replica's own id; without
 * trusted (a sender without the relay right), SYNC_EPERM for a record
 * this replica does not hold already. */
SYNC_PRIVATE int sx_fold_take(sync_txn *x, const sync_delta *d, int trusted);
/* Lower vv (per local site) below the first fold of every heir: a
 * vector sent where fold records do not go with it (a repair) claims no
 * heir's changes past a fold, so the records go with the rows that need
 * them. */
#ifndef SYNC_OMIT_REPAIR
SYNC_PRIVATE int sx_fold_cap(sync_txn *x, uint64_t *vv);
#endif
/* The records a chunk cut for a requester holding rvv (per local site)
 * carries, by local heir index in d->fold[].heir: those whose heir has a
 * contribution at or above the fold in one of the chunk's counter
 * cells, and with a run's last chunk those of every heir the chunk names
 * (named: per local site, 0 when named; NULL: none), where the
 * requester's entry for the heir (rvv NULL: none) is below the fold.  Of
 * the last chunk's, about SX_FOLD_MAX, the oldest; the entry of the
 * chunk's vector vv (per local site; NULL: none) for the heir of each
 * left out is lowered below it. */
SYNC_PRIVATE int sx_fold_attach(sync_txn *x, sync_delta *d,
                                const uint64_t *rvv, const uint32_t *named,
                                uint64_t *vv);
/* In the open's transaction t of a file of format 10: move the records
 * from meta "folds" into sx.folds. */
SYNC_PRIVATE int sx_fold_upgrade(sync_env *env, sx_stxn *t);
/* Whether chunk d carries a fold record retiring site. */
SYNC_PRIVATE int sx_delta_retires(const sync_delta *d, const uint8_t *site);
/* Sort d's records as frames carry them, once their heirs are indexes of
 * d's site table. */
SYNC_PRIVATE void sx_fold_sort(sync_delta *d);

#endif
