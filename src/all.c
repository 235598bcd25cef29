/*
 * all.c - the library as one translation unit, and the list of modules in
 * amalgamation order.  amalgamate.py inlines these files, in this order, to
 * write sync.c; compiling this file alone builds the same library from
 * src/.  Each module may use only the modules above it.
 */
#define SYNC_AMALGAMATION 1
#include "internal.h"
#include "util.c"
#include "hash.c"
#include "clock.c"
#include "delta.c"
#include "stats.c"
#include "schema.c"
#include "store.c"
#include "row.c"
#include "env.c"
#include "txn.c"
#include "log.c"
#include "fp.c"
#include "ops.c"
#include "commit.c"
#include "site.c"
#include "open.c"
#include "peer.c"
#include "conflict.c"
#include "renew.c"
#include "gc.c"
#include "cut.c"
#include "merge.c"
#include "apply.c"
#include "digest.c"
#include "reject.c"
#include "codec.c"
#include "dict.c"
#include "repair.c"
#include "session.c"
