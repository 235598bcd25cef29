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

#endif
