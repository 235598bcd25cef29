/*
 * commit.h - committing a transaction: state, change log, table records,
 * then the callbacks.
 */
#ifndef SX_COMMIT_H
#define SX_COMMIT_H

#include "ops.h"

/* A write transaction commits with the state clock at hlc: the first in
 * its epoch that made stamps of its own, and the first that moved the
 * clock, are recorded there (open.c, "Writes of this replica's own site
 * id"). */
SYNC_PRIVATE int sx_epoch_note(sync_txn *x, uint64_t hlc);

#endif
