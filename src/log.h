/*
 * log.h - the change log: its records, appending, the entry iterator with
 * deletion, checking an entry is its row's current one, compaction at
 * commit and the upgrade of a format-8 log.  The sync_changes_* iterator
 * over it is in changes.c.
 */
#ifndef SX_LOG_H
#define SX_LOG_H

#include "txn.h"

SYNC_PRIVATE void sx_logkey(unsigned char *k, uint64_t version, uint32_t seq);
/* Append the entry (x->version, x->seq, table tid, key) to the log.  The
 * log's last record is kept in x and written when it is full, when the
 * log is read (sx_logit_open) and at commit (sx_log_flush): a record
 * written again per entry cost a tree search and a copy of the record
 * each time. */
SYNC_PRIVATE int sx_log_append(sync_txn *x, unsigned tid, const void *key,
                               size_t klen);
/* Write the log's last record if it has entries not yet written (x is
 * then failed on an error). */
SYNC_PRIVATE int sx_log_flush(sync_txn *x);
/* Delete the entry at (version, seq): 0, SYNC_NOTFOUND if there is none,
 * or an error (x is then failed if the log was being written). */
SYNC_PRIVATE int sx_log_del(sync_txn *x, uint64_t version, uint32_t seq);
/* The log's entries in order, from a position.  Open, then
 * sx_logit_seek (or start at the log's first entry), then
 * sx_logit_next for each entry: 0 with it->e set, SYNC_NOTFOUND past the
 * last, SYNC_ECORRUPT for a malformed record.  it->e stays valid until
 * the next call.  sx_logit_del deletes the entry the iterator stands
 * on; the record is written again when the iterator leaves it or
 * closes, so sx_logit_close must be called, and its result checked,
 * when anything was deleted (then x is failed on an error).  The
 * iterator reads a copy of each record: after writes to the log by
 * others in the transaction, seek again. */
SYNC_PRIVATE int sx_logit_open(sync_txn *x, sx_logit *it);
SYNC_PRIVATE int sx_logit_seek(sx_logit *it, uint64_t version, uint32_t seq);
SYNC_PRIVATE int sx_logit_next(sx_logit *it);
SYNC_PRIVATE void sx_logit_del(sx_logit *it);
SYNC_PRIVATE int sx_logit_close(sx_logit *it);
/* Check that log entry e is its row's current one: 0 with the row
 * decoded into r; SYNC_NOTFOUND for an entry a later change left behind
 * (or whose row was collected). */
SYNC_PRIVATE int sx_log_current(sync_txn *x, sx_row *r, const sx_lent *e);
/* In the open's transaction t: move a log of format 8 or before
 * (sx.log, one item per entry) into records of env->log and drop it;
 * nothing to do without it. */
SYNC_PRIVATE int sx_log_upgrade(sync_env *env, sx_stxn *t);
SYNC_PRIVATE int sx_log_finish(sync_txn *x);
/* Stamp idx of decoded row r with its site id (zeros for SX_NOSTAMP). */
SYNC_PRIVATE int sx_stamp_out(sync_txn *x, const sx_row *r, unsigned idx,
                              sync_stamp *out);
/* Column col of decoded row r of table tid as sync_changes_column gives
 * it: the value as reads see it (a counter's sum), stamp and base with
 * site ids; SYNC_NOTFOUND for a tombstone or a column never written. */
SYNC_PRIVATE int sx_row_column(sync_txn *x, unsigned tid, const sx_row *r,
                               unsigned col, sync_value *val,
                               sync_stamp *stamp, sync_stamp *base);

#endif
