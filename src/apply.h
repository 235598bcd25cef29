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

#endif
