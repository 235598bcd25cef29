/*
 * site.h - taking a new site id (site.c).
 */
#ifndef SX_SITE_H
#define SX_SITE_H

#include "commit.h"

/* Take a new site id: this replica's stamps up to hlc t keep the old id,
 * later ones move to the new one; the old id becomes an ordinary site
 * held up to hlc held (0: nothing claimed). */
SYNC_PRIVATE int sx_site_renew(sync_txn *x, uint64_t t, uint64_t held);
/* One step of the renewal of a copy (site.c, "A copy's renewal in
 * batches"), each in a transaction of its own, until *done: each moves
 * the own stamps of up to budget rows to the old id (those up to hlc t;
 * it is held up to held) and records where it stopped, and the step that
 * finds every row done takes the new id.  A step after a crash goes on
 * where the record says (t and held are then the record's). */
SYNC_PRIVATE int sx_copy_renew_step(sync_txn *x, uint64_t t, uint64_t held,
                                    size_t budget, int *done);
/* A meta record of (16-byte site id, u64 LE HLC) pairs, at most max,
 * copied into b (none when absent). */
SYNC_PRIVATE int sx_meta_pairs(sync_txn *x, const char *key, size_t max,
                               sx_buf *b);
/* The HLC paired with site in n bytes of (site id, u64 LE HLC) pairs
 * at p: 1 with *h set, or 0 when site has none (the last pair wins). */
SYNC_PRIVATE int sx_pair_hlc(const unsigned char *p, size_t n,
                             const uint8_t *site, uint64_t *h);
/* The most former ids a file keeps (the newest). */
#define SX_FORMER_MAX 1024
/* The former ids of this file (site.c, "Former ids"), copied into b (24
 * bytes each: id, bound). */
SYNC_PRIVATE int sx_former_load(sync_txn *x, sx_buf *b);
/* Record id as a former id claimed up to bound (0: nothing). */
SYNC_PRIVATE int sx_former_add(sync_txn *x, const uint8_t *id,
                               uint64_t bound);

#endif
