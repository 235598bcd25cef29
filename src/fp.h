/*
 * fp.h - row fingerprints and the per-table records (live count and
 * fingerprint sums) kept at every commit.
 */
#ifndef SX_FP_H
#define SX_FP_H

#include "history.h"

/* Fingerprints of one stored row (docs/FORMAT.md, "Fingerprints").
 * *content hashes what sync_digest covers (key and the values of the
 * replicated columns); *meta hashes that plus the causal length and every
 * stamp (as site ids, so equal rows hash equal on every replica), for
 * range repair.  A tombstone has neither: both are 0 and the call
 * returns 0 (a live row returns 1).  Needs the site table (loaded on
 * demand), so it can fail with a storage error. */
#ifndef SYNC_OMIT_REPAIR
/* The meta hash of one counter contribution (site id, p, n, HLC); a
 * cell's is the sum of its contributions', mod 2^64. */
SYNC_PRIVATE uint64_t sx_ctr_hash(const uint8_t *site, uint64_t p,
                                  uint64_t n, uint64_t hlc);
#endif
SYNC_PRIVATE int sx_row_fp(sync_txn *x, unsigned tid, const unsigned char *key,
                           size_t klen, const sx_row *r, uint64_t *content,
                           uint64_t *meta);
SYNC_PRIVATE int sx_table_sum(sync_txn *x, unsigned tid, sx_tsum *out);
/* The same sums by a scan of every row of the table: for the format
 * upgrade and schema changes, which rebuild the stored record. */
SYNC_PRIVATE int sx_table_scan(sync_txn *x, unsigned tid, sx_tsum *out);
SYNC_PRIVATE int sx_tsum_get(sync_env *env, sx_stxn *t, unsigned tid, sx_tsum *out);
SYNC_PRIVATE int sx_tsum_put(sync_env *env, sx_stxn *t, unsigned tid,
                             const sx_tsum *s);

#endif
