/*
 * reject.h - the writer's side of a refused write and the rejection log.
 */
#ifndef SX_REJECT_H
#define SX_REJECT_H

#include "digest.h"

/* The writer's side of a refusal (reject.c, "Rejections"): in write
 * transaction x, row (tid, key) returns to the peer's version srow of
 * delta sd (NULL: the peer holds no row, the row is removed without a
 * tombstone), if this replica has not changed it after version snap;
 * the refusal goes to the rejection log either way.  Vector entries of
 * other sites whose changes the row drops are lowered below them.
 * Returns 1 when the row was taken back, 0 when not, or an error. */
SYNC_PRIVATE int sx_reject_apply(sync_txn *x, const uint8_t *peer,
                                 unsigned tid, const unsigned char *key,
                                 size_t klen, int reason, const char *text,
                                 size_t tlen, const sync_delta *sd,
                                 const sx_drow *srow, uint64_t snap);

#endif
