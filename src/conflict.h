/*
 * conflict.h - the conflict log: recording conflicts, reading and resolving
 * them, the resolver and the commit-time callback.
 */
#ifndef SX_CONFLICT_H
#define SX_CONFLICT_H

#include "peer.h"

/* ---------------------------------------------------------------------
 * Conflict log.  Record: u8 kind, u8 flags (1 resolved, 2 remote won),
 * var table, var column + 1 (0 = row), var key length, key, then local
 * and remote: var hlc, 16-byte site, u8 tag (7 = none) + payload.
 * ------------------------------------------------------------------- */
typedef struct sx_cfl {
  int kind;
  unsigned tid, col;
  const unsigned char *key;
  size_t klen;
  uint64_t lhlc, rhlc;
  const uint8_t *lsite, *rsite;
  const sync_value *lv, *rv; /* NULL: none */
  int remote_won;
} sx_cfl;

/* Encode a conflict record into x->cpend (u32 length + record).  Nothing
 * is written to LMDB here: the values may point into the map, which a
 * write could move.  sx_conflicts_flush stores them once the row is. */
SYNC_PRIVATE int sx_conflict_record(sync_txn *x, const sx_cfl *c);
/* Store the pending conflict records under the next ids. */
SYNC_PRIVATE int sx_conflicts_flush(sync_txn *x);
/* The next entry of a log keyed by u64 BE id (conflicts, rejections)
 * after last (the first when not started), sought again by key: clearing
 * or resolving entries in between may have moved pages.  On success last
 * is the entry's key. */
SYNC_PRIVATE int sx_id_log_next(sx_store *st, sx_scur *c, int *started,
                                unsigned char last[8], sx_slice *k, sx_slice *v);

#endif
