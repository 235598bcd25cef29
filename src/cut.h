/*
 * cut.h - producing deltas: cutting chunks from the log or the initial
 * stream under a scope and a row filter.
 */
#ifndef SX_CUT_H
#define SX_CUT_H

#include "gc.h"

/* What row filter says of stored row r (table tid, key) for peer: 1 to
 * send it, 0 not; a tombstone is asked with no values.  vals: room for
 * the table's column count, filled with the row's values. */
SYNC_PRIVATE int sx_filter_row(sync_txn *x, sync_row_filter_fn filter,
                               void *ctx, const uint8_t *peer, unsigned tid,
                               const unsigned char *key, size_t klen,
                               const sx_row *r, sync_value *vals);
/* The scope a chunk cut under o (o->scope set) serves: o's tables
 * (NULL: all of the schema's), its filter and filter version; held =
 * served, as after a run in log mode. */
SYNC_PRIVATE void sx_scope_served(const sync_env *env,
                                  const sync_delta_opts *o, sx_scope *sc);
/* Add stored row r of table tid to d, leaving out columns and rows whose
 * stamps rvv (per local site index) covers (a row is still named when
 * keyed is set: complete initial streams); o (may be NULL) says whether
 * to send whole rows.  The caller has decided the row is in scope.
 * *bytes grows by the value bytes added. */
SYNC_PRIVATE int sx_delta_add(sync_delta *d, sync_txn *x, unsigned tid,
                              const unsigned char *key, size_t klen,
                              const sx_row *r, const uint64_t *rvv,
                              const sync_delta_opts *o, int keyed,
                              size_t *bytes);

#endif
