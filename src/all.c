/*
 * all.c - the library as one translation unit, and the list of modules in
 * amalgamation order.  amalgamate.py inlines these files, in this order, to
 * write sync.c; compiling this file alone builds the same library from
 * src/.  Each module may use only the modules above it.
 */
#define SYNC_AMALGAMATION 1
#include "internal.h"
/* Below the engine: bytes, hashes, clocks, counters, schemas, LMDB, rows. */
#include "util.c"
#include "hash.c"
#include "clock.c"
#include "delta.c"
#include "stats.c"
#include "schema.c"
#include "store.c"
#include "row.c"
/* The engine (types.h): the objects, the change log and the row API. */
#include "env.c"
#include "txn.c"
#include "log.c"
#include "history.c"
#include "fp.c"
#include "changes.c"
#include "fold.c"
#include "ops.c"
#include "commit.c"
#include "site.c"
#include "open.c"
/* Replication: peers, conflicts, collection, cutting and applying. */
#include "peer.c"
#include "conflict.c"
#include "renew.c"
#include "gc.c"
#include "compact.c"
#include "cut.c"
#include "merge.c"
#include "apply.c"
#include "digest.c"
#include "reject.c"
/* The wire and the sessions over it. */
#include "codec.c"
#include "dict.c"
#include "repair.c"
#include "session_msg.c"
#include "session_refused.c"
#include "session_repair.c"
#include "session_hello.c"
#include "session_check.c"
#include "session.c"
#include "session_drive.c"
#include "retry.c"
