/*
 * txn.h - the transaction object: begin, abort, its per-table cursors and
 * row scratch, and the site table it loads.
 */
#ifndef SX_TXN_H
#define SX_TXN_H

#include "env.h"

/* Make the per-table cursors and row scratch of a transaction. */
SYNC_PRIVATE int sx_scratch(sync_txn *x);
/* Make x->rd, the row public reads decode into. */
SYNC_PRIVATE int sx_read_scratch(sync_txn *x);
SYNC_PRIVATE int sx_table_cursor(sync_txn *x, unsigned tid, sx_scur **out);
/* Per-table cursor and count arrays. */
SYNC_PRIVATE int sx_txn_tables(sync_txn *x);
/* Load the site table into x->sites. */
SYNC_PRIVATE int sx_sites_load(sync_txn *x);
/* 16-byte id of local site index idx. */
SYNC_PRIVATE int sx_site_id(sync_txn *x, uint32_t idx, uint8_t *out);
/* Local index of a site id, adding it (write txns) when add is set;
 * SYNC_NOTFOUND when absent and not added. */
SYNC_PRIVATE int sx_site_index(sync_txn *x, const uint8_t *id, int add,
                               uint32_t *out);
/* A walk of the tables that goes on across transactions keeps its place
 * in a meta record: hlen bytes of the walk's own (head), u32 LE table
 * id, then the key of the row it took last (none: from the table's
 * first row).  get: SYNC_NOTFOUND when there is none, SYNC_ECORRUPT when
 * it is malformed; key holds SYNC_MAX_KEY bytes.  put: x is failed when
 * the write fails. */
SYNC_PRIVATE int sx_walkpos_get(sync_txn *x, const char *name,
                                unsigned char *head, size_t hlen,
                                unsigned *tid, unsigned char *key,
                                size_t *klen);
SYNC_PRIVATE int sx_walkpos_put(sync_txn *x, const char *name,
                                const unsigned char *head, size_t hlen,
                                unsigned tid, const void *key, size_t klen);
/* Add id to the site table at the next index, found there or not (a
 * renewal gives the old id a second index for a while: site.c). */
SYNC_PRIVATE int sx_site_append(sync_txn *x, const uint8_t *id,
                                uint32_t *out);
/* Close every cursor of the transaction.  Must precede its end: LMDB
 * frees a write transaction's cursors itself when it commits.  Iterators
 * still open die with the transaction; closing them later only frees
 * them. */
SYNC_PRIVATE void sx_txn_close_cursors(sync_txn *x);
/* Free the transaction object once its LMDB transaction has ended. */
SYNC_PRIVATE void sx_txn_free(sync_txn *x);
/* A transaction object for env with no LMDB transaction yet (x->t NULL):
 * sync_txn_begin's, or one borrowed around a transaction of the open's
 * (set x->t; sx_txn_free leaves it).  NULL when out of memory. */
SYNC_PRIVATE sync_txn *sx_txn_new(sync_env *env);
SYNC_PRIVATE void sx_state_put(unsigned char *b, uint64_t hlc, uint64_t version,
                               uint64_t schema_version);

#endif
