/*
 * open.h - opening a file: creating or loading it, format upgrades, epochs
 * and history marks, peers' schemas and schema changes.
 */
#ifndef SX_OPEN_H
#define SX_OPEN_H

#include "site.h"

/* The mark of version v of this replica's log (id 0 when none). */
SYNC_PRIVATE int sx_mark_of(sync_txn *x, uint64_t v, sx_mark *out);
/* In write transaction x, make the file's format record 8 (if it is
 * not): it is about to hold a counter cell of a column beyond its
 * schema (a relay in a rolling upgrade), which code without counters
 * must not take for damage.  Once per transaction. */
SYNC_PRIVATE int sx_format_counters(sync_txn *x);
/* The store options of env's file (durability, map size, databases). */
SYNC_PRIVATE void sx_env_store_opts(const sync_env *env, sx_store_opts *o);
/* The handles of a loaded file's named databases, sx.meta and the schema
 * aside (writable: sx.epochs and sx.rejects are made when missing; with
 * upgrade, sx.logrec too); path names the file in errors. */
SYNC_PRIVATE int sx_env_dbis(sync_env *env, sx_stxn *t, const char *path,
                             int upgrade);
/* Does a peer's view of this replica's log, "held up to version v, with
 * mark m", fit this replica's history?  0 if so, SYNC_EHISTORY (with the
 * message set) if not, or a storage error. */
SYNC_PRIVATE int sx_history_check(sync_txn *x, uint64_t v, const sx_mark *m);
/* The lineage of mark m of this replica's log: the epochs before m's,
 * newest first, as many as SX_LINEAGE_MAX (none for no mark). */
SYNC_PRIVATE int sx_lineage_of(sync_txn *x, const sx_mark *m,
                               sx_lineage *out);
/* The HLC this replica's clock stood at when the epoch after epoch m
 * began (the state of the file at that open): 0, or SYNC_NOTFOUND when
 * the file has no epoch m, or none after it. */
SYNC_PRIVATE int sx_epoch_next_hlc(sync_txn *x, const sx_mark *m,
                                   uint64_t *hlc);
/* Is h the HLC of a stamp of an id this file's history wrote under, up
 * to HLC clock, that the history never made (open.c, "Writes of this
 * replica's own site id")?  1 with *held set to the clock the file stood
 * at when the epoch where h falls began (all of the id it holds for
 * sure), 0 if not or unknown (epochs of files before format 7), or an
 * error.  For this replica's own id clock is its clock (x->hlc_last); for
 * an id it gave up (site.c, "Former ids"), the bound it kept.  claim: h is a vector entry, not a stamp (a clock the
 * history stood at, or one below a stamp of its own). */
SYNC_PRIVATE int sx_hist_foreign(sync_txn *x, uint64_t h, uint64_t clock,
                                 int claim, uint64_t *held);

/* May a delta or request made under schema hash h be taken?  Ours, or a
 * peer's found compatible by sx_compat_check. */
SYNC_PRIVATE int sx_compat_ok(sync_env *env, uint64_t h);
/* The peer schema with hash h that sx_compat_check kept (NULL when none,
 * or when h is ours); valid until our schema changes or the env closes. */
SYNC_PRIVATE const sx_schema *sx_compat_find(sync_env *env, uint64_t h);
SYNC_PRIVATE void sx_compat_clear(sync_env *env);
/* Check peer schema p against ours: 0 (and a copy of p kept), or
 * SYNC_ESCHEMA with env's message naming the table and the column as
 * each side declares it (ours and theirs say where each is; peer_first:
 * the peer's is named first), SYNC_ELIMIT (SX_COMPAT_MAX other schemas
 * met since the open), SYNC_ENOMEM. */
SYNC_PRIVATE int sx_compat_check(sync_env *env, const sx_schema *p,
                                 const char *ours, const char *theirs,
                                 int peer_first);

#endif
