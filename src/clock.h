/*
 * clock.h - the hybrid logical clock, site ids and history marks.
 *
 * An HLC value is 48 bits of milliseconds since the Unix epoch and 16 bits
 * of counter.  A replica's stamps strictly increase even when its wall
 * clock stalls or steps back; the counter carries into the millisecond
 * field if more than 65,536 stamps are taken in one millisecond, which
 * keeps the order and merely runs logical time ahead.
 */
#ifndef SX_CLOCK_H
#define SX_CLOCK_H

#include "internal.h"

#define SX_SITE_LEN 16
#define SX_HLC_MS(h) ((h) >> 16)
#define SX_HLC_MAX_MS ((UINT64_C(1) << 48) - 1)

/* Epochs: every writable open starts one, a random id for the versions
 * it writes from the next one on.  (epoch id, start version) marks a
 * position of this replica's log in its history: a peer holding a mark
 * this replica does not have at that position holds the log of another
 * copy of this file (one restored from a backup, or cloned). */
typedef struct sx_mark {
  uint64_t id, start; /* id 0: no mark (unknown) */
} sx_mark;

/* A mark's lineage: the epochs of the log before the mark's, newest
 * first, as many as SX_LINEAGE_MAX.  A replica restored from a backup
 * finds in it the last epoch it shares with the peer's view of its log,
 * and so where its history left the fleet's (renew.c). */
#define SX_LINEAGE_MAX 8
typedef struct sx_lineage {
  unsigned n;
  sx_mark e[SX_LINEAGE_MAX];
} sx_lineage;

/* Next local stamp after last, given the wall clock now_ms. */
SYNC_PRIVATE uint64_t sx_hlc_next(uint64_t last, uint64_t now_ms);

/* Defaults for the time and randomness callbacks. */
SYNC_PRIVATE uint64_t sx_default_clock(void *ctx);
SYNC_PRIVATE int sx_default_random(void *ctx, void *buf, size_t n);

#endif
