/*
 * history.h - row history: the superseded versions of the rows of tables
 * that keep history, in the store sx.hist, written by the transaction
 * that supersedes them; retention, as-of reads, diffs and restores
 * (docs/FORMAT.md, "Row history").
 */
#ifndef SX_HISTORY_H
#define SX_HISTORY_H

#include "log.h"

/* Whether table tid keeps history: the one test a write of a table
 * without history pays. */
static inline int sx_rh_on(const sync_env *env, unsigned tid) {
  return env->rh && env->rh[tid].on;
}

/* Row (tid, key) is about to be stored as x->nw at the transaction's
 * version; found: x->old was decoded from the bytes at cur, still
 * unmodified.  Records the version it supersedes (or that there was
 * none) and applies the count rule to the row.  Call only when
 * sx_rh_on. */
SYNC_PRIVATE int sx_rh_note(sync_txn *x, unsigned tid, sx_scur *cur,
                            int found, int reuse);
/* Row x->old of table tid leaves the store without a trace (an exit
 * marker, a refused insert): its versions go, and as-of reads of the
 * table no longer reach before this transaction.  Call only when
 * sx_rh_on. */
SYNC_PRIVATE int sx_rh_forget(sync_txn *x, unsigned tid);
/* 1 when tombstone r of table tid must stay for history (its version
 * record is kept: a collected tombstone would cut the row's versions
 * off its key), 0 when it may be collected, or an error. */
SYNC_PRIVATE int sx_rh_pinned(sync_txn *x, unsigned tid, const sx_row *r);
/* Stamps of site 0 up to hlc t in kept versions move to site index k, as
 * sx_relabel_rows does for the rows (site.c). */
SYNC_PRIVATE int sx_rh_relabel(sync_txn *x, uint32_t k, uint64_t t);
/* At commit, before the state record: the clock record, raised floors
 * and the age rule of the tables the transaction wrote (bounded work). */
SYNC_PRIVATE int sx_rh_finish(sync_txn *x);
/* At open (transaction t): find sx.hist and load the tables' settings. */
SYNC_PRIVATE int sx_rh_load(sync_env *env, sx_stxn *t);
/* For an as-of cursor: replace *row (the stored bytes of key, a live row
 * or tombstone) by the bytes of the row's version at the cursor's point.
 * 1: *row is that version; 0: the row did not exist then; or an error. */
SYNC_PRIVATE int sx_rh_cursor_at(sync_cursor *c, const sx_slice *key,
                                 sx_slice *row);

#endif
