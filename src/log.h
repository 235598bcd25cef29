/*
 * log.h - the change log: log keys, checking an entry is its row's current
 * one, compaction at commit, and the sync_changes_* iterator.
 */
#ifndef SX_LOG_H
#define SX_LOG_H

#include "txn.h"

SYNC_PRIVATE void sx_logkey(unsigned char *k, uint64_t version, uint32_t seq);
/* Check that log entry (lk, value) is its row's current one: 0 with the
 * row decoded into r and *tid / *key set; SYNC_NOTFOUND for an entry a
 * later change left behind (or whose row was collected); SYNC_ECORRUPT
 * for a malformed one. */
SYNC_PRIVATE int sx_log_current(sync_txn *x, sx_row *r,
                                const unsigned char *lk, size_t lkn,
                                const unsigned char *v, size_t vn,
                                unsigned *tid, sx_slice *key);
SYNC_PRIVATE int sx_log_finish(sync_txn *x);
/* Column col of decoded row r of table tid as sync_changes_column gives
 * it: the value as reads see it (a counter's sum), stamp and base with
 * site ids; SYNC_NOTFOUND for a tombstone or a column never written. */
SYNC_PRIVATE int sx_row_column(sync_txn *x, unsigned tid, const sx_row *r,
                               unsigned col, sync_value *val,
                               sync_stamp *stamp, sync_stamp *base);

#endif
