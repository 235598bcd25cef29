/*
 * commit.h - committing a transaction: state, change log, table records,
 * then the callbacks.
 */
#ifndef SX_COMMIT_H
#define SX_COMMIT_H

#include "ops.h"

/* A write transaction that made stamps of its own commits: the first in
 * its epoch records its HLC there (open.c, "Writes of this replica's own
 * site id"). */
SYNC_PRIVATE int sx_epoch_stamped(sync_txn *x);

#endif
