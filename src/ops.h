/*
 * ops.h - the public row API: tracked writes (the only place rows are
 * stored), reads, and cursors.
 */
#ifndef SX_OPS_H
#define SX_OPS_H

#include "fold.h"

/* Fold the live row of table tid at key (fold.c): each counter cell
 * holding a contribution of a site retired to this replica gets it added
 * to this replica's, as a write of its own.  *folded: the row changed. */
SYNC_PRIVATE int sx_counter_fold(sync_txn *x, unsigned tid, const void *key,
                                 size_t klen, int *folded);
/* Whether live row r has a counter cell sx_counter_fold would fold. */
SYNC_PRIVATE int sx_row_foldable(sync_txn *x, const sx_row *r);
/* Take the transaction's stamp (at its first change). */
SYNC_PRIVATE void sx_stamp_txn(sync_txn *x);
/* Store x->nw at key (replacing x->old when found, which must have been
 * decoded from the same key), with its log entry; keeps counts and the
 * change list.  The only place rows are written.  append: the key sorts
 * after every key of the table. */
SYNC_PRIVATE int sx_store_row(sync_txn *x, unsigned tid, sx_scur *cur,
                              const void *key, size_t klen, int found,
                              int append);
/* sx_store_row of a new row whose key sorts after every key of the
 * table, stored with room zero bytes after it (none in a table that
 * keeps row history).  The caller takes the room back, with
 * sx_unroom_row, before anything else may read the table: an apply
 * leaves pages it fills in key order that much free space. */
SYNC_PRIVATE int sx_store_row_room(sync_txn *x, unsigned tid, sx_scur *cur,
                                   const void *key, size_t klen, size_t room);
/* Store the row at key again without its room (nothing when it has
 * none, as when it was written again since, or is gone). */
SYNC_PRIVATE int sx_unroom_row(sync_txn *x, unsigned tid, const void *key,
                               size_t klen);
/* Remove the row at cur (x->old, decoded from key) without a trace: no
 * tombstone, no log entry; keeps counts, sums and the change list.  For
 * rows that left this replica's scope (exit markers). */
SYNC_PRIVATE int sx_remove_row(sync_txn *x, unsigned tid, sx_scur *cur,
                               const void *key, size_t klen);
/* Row r of table tid (key) is about to be deleted from the store: the
 * table's counts and fingerprint sums lose it (before the delete: r's
 * values may point into the stored bytes). */
SYNC_PRIVATE int sx_sums_drop(sync_txn *x, unsigned tid, const void *key,
                              size_t klen, const sx_row *r);
/* Causal length for a new row of table tid: above every tombstone this
 * replica ever collected, so that a re-insert after gc still wins over
 * peers that kept the tombstone. */
SYNC_PRIVATE int sx_fresh_cl(sync_txn *x, unsigned tid, uint64_t *cl);
/* Put cur (table tid's) on the stored row at key and decode it into
 * x->old: 1 when there is one (live or a tombstone), 0 when not, or an
 * error (SYNC_ECORRUPT with the table named for a damaged row). */
SYNC_PRIVATE int sx_old_row(sync_txn *x, unsigned tid, sx_scur *cur,
                            const void *key, size_t klen);
/* The first nvals values of decoded row r of table tb, as reads give
 * them (a counter's sum, NULL or 0 for a column never written). */
SYNC_PRIVATE void sx_fill(const sx_table *tb, const sx_row *r,
                          sync_value *vals, unsigned nvals);
/* sync_counter_add of a magnitude up to 2^64 - 1 (neg: subtracted), as
 * one add: a difference that does not fit in an int64_t goes in one
 * piece, refused whole (SYNC_ELIMIT) or added whole. */
SYNC_PRIVATE int sx_counter_add(sync_txn *x, unsigned table, const void *key,
                                size_t klen, unsigned col, int neg,
                                uint64_t mag);

#endif
