/*
 * digest.c - the content digest of a table.
 */
#include "digest.h"

/* Digest of one table: XXH3 of (content fingerprint sum, live count),
 * u64 LE each (docs/FORMAT.md, "Digest").  O(1): both are kept at commit
 * (sx_table_sum). */
static int sx_digest_table(sync_txn *x, unsigned tid, uint64_t *out) {
  unsigned char b[16];
  sx_tsum s;
  int rc;
  if ((rc = sx_table_sum(x, tid, &s))) return rc;
  sx_put_le64(b, s.content);
  sx_put_le64(b + 8, s.live);
  *out = sx_hash64(b, sizeof b, 0);
  return 0;
}

SYNC_API int sync_digest(sync_txn *x, unsigned table, uint64_t *out) {
  unsigned char all[8 * SYNC_MAX_TABLES];
  unsigned i;
  int rc;
  if (!x || !out) return SYNC_EINVAL;
  if (table != SYNC_ALL_TABLES) {
    if (table >= x->env->schema->ntables) return SYNC_EINVAL;
    return sx_digest_table(x, table, out);
  }
  for (i = 0; i < x->env->schema->ntables; i++) {
    uint64_t h;
    if ((rc = sx_digest_table(x, i, &h))) return rc;
    sx_put_le64(all + 8 * i, h);
  }
  *out = sx_hash64(all, 8 * (size_t)x->env->schema->ntables, 0);
  return 0;
}
