/*
 * apply.h - applying a delta: checks, policies, the collection horizon,
 * exit markers and the cursor and vector moves that follow.
 */
#ifndef SX_APPLY_H
#define SX_APPLY_H

#include "merge.h"

/* The session's apply (server side): as sync_delta_apply_opts, but a
 * chunk with refused rows leaves the sender's cursor where it was, for
 * sx_peer_advance once the writer has answered. */
SYNC_PRIVATE int sx_delta_apply_held(sync_txn *x, const sync_delta *d,
                                     const sync_apply_opts *ao,
                                     sync_apply_report *rep);
/* The structural checks an apply makes (tables, columns, sites, value
 * lengths): 0 or an error. */
SYNC_PRIVATE int sx_delta_valid(const sync_delta *d, const sx_schema *s);
/* Lower this replica's vector entry of local site idx (another site's)
 * below hlc. */
SYNC_PRIVATE int sx_vv_lower_site(sync_txn *x, uint32_t idx, uint64_t hlc);
/* A repair found this replica holding exactly a peer's rows: take the
 * peer's version vector pv (n entries of 16-byte site and u64 LE HLC)
 * as our claims, capped by our renewal records, and as the bound of the
 * deletes we claim without tombstones (gcvv).  The peer's entry for our
 * own id goes through sx_claim_own first: SYNC_EHISTORY with *held set
 * when it shows a restore. */
#ifndef SYNC_OMIT_REPAIR
SYNC_PRIVATE int sx_vv_take(sync_txn *x, const unsigned char *pv, size_t n,
                            uint64_t *held);
#endif

#endif
