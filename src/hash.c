/*
 * hash.c - XXH3-64 through libxxhash.
 */
#include "hash.h"

#include <xxhash.h>

SYNC_PRIVATE uint64_t sx_hash64(const void *p, size_t n, uint64_t seed) {
  return (uint64_t)XXH3_64bits_withSeed(p, n, (XXH64_hash_t)seed);
}
