/*
 * gc.h - tombstone collection, the collection horizon, and the health
 * report.
 */
#ifndef SX_GC_H
#define SX_GC_H

#include "renew.h"

/* Raise meta "gccl" (per table id: the largest causal length collected)
 * to maxcl (ntables entries), entry by entry. */
SYNC_PRIVATE int sx_gccl_raise(sync_txn *x, const uint64_t *maxcl);
/* meta "gcvv": what this replica held when it last collected
 * tombstones, or took a collector's horizon (the collector's vector), as
 * (16-byte site id, u64 LE hlc) pairs; every delete it collected, or
 * applied as the horizon's, is below it.  A requester whose vector covers
 * it got those deletes; one whose vector does not may hold rows they
 * removed.  Raised entry by entry to this replica's vector, or to from
 * (per local site index) when given. */
SYNC_PRIVATE int sx_gcvv_raise(sync_txn *x, const uint64_t *from);
/* Must an initial stream to a requester holding rvv (per local site
 * index) name every row?  Only after a collection whose deletes the
 * requester may lack. */
SYNC_PRIVATE int sx_need_complete(sync_txn *x, const uint64_t *rvv, int *out);

#endif
