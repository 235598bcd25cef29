/*
 * hash.h - XXH3-64, the one checksum of the project (stored rows, batch
 * frames, digests).  The only module that includes xxhash.h.
 */
#ifndef SX_HASH_H
#define SX_HASH_H

#include "internal.h"

SYNC_PRIVATE uint64_t sx_hash64(const void *p, size_t n, uint64_t seed);

#endif
