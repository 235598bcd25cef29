/*
 * merge.h - the merge of one row: compare stamps column by column, choose,
 * ask the resolver, record the conflict.
 */
#ifndef SX_MERGE_H
#define SX_MERGE_H

#include "cut.h"

/* ---------------------------------------------------------------------
 * Applying deltas
 * ------------------------------------------------------------------- */
typedef struct sx_apply {
  sync_txn *x;
  const sync_delta *d;
  int policy, dry;
  uint32_t *smap; /* delta site index -> local site index */
  uint64_t *svv;  /* the sender's vector per delta site index, capped by
                     the renewal records (sx_sender_vv) */
  sync_apply_report *rep;
} sx_apply;
SYNC_PRIVATE sx_stamp sx_mkstamp_local(sync_txn *x);
SYNC_PRIVATE sync_value sx_dval(const sync_delta *d, const sx_dcol *c);
/* Merge delta row dr into x->nw given the local row (x->old when found).
 * Returns 1 if the row changes, 0 if not, or an error. */
SYNC_PRIVATE int sx_merge_row(sx_apply *a, const sx_drow *dr, int found,
                              int *cls);
/* Compare local stamp (row r, index i) with remote column stamp. */
SYNC_PRIVATE int sx_cmp_lr(sync_txn *x, const sx_row *r, unsigned i,
                           const sync_delta *d, uint64_t hlc, uint32_t dsite);

#endif
