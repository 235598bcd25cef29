/*
 * site.c - taking a new site id: this replica's stamps after a point in
 * its history move to the new id, the old one becomes an ordinary site.
 * Used when a file turns out to be a copy (a restore or a clone); the
 * renewal records that tell peers about it are in renew.c.
 */
#include "site.h"

/* Rewrite the stamps of this replica's own site in every row: those up
 * to hlc t go to site index k (the old id), later ones stay at 0 (the new
 * id).  Neither the versions nor the log change. */
static int sx_relabel_rows(sync_txn *x, uint32_t k, uint64_t t) {
  sync_env *env = x->env;
  unsigned tid;
  int rc = 0;
  for (tid = 0; tid < env->schema->ntables && !rc; tid++) {
    sx_scur *c;
    sx_slice kk, v;
    int op = SX_FIRST;
    if ((rc = sx_table_cursor(x, tid, &c))) break;
    for (;;) {
      unsigned char key[SYNC_MAX_KEY];
      size_t klen, size;
      unsigned i;
      int any = 0;
      kk.p = NULL;
      kk.n = 0;
      rc = sx_cur_get(env->st, c, op, &kk, &v);
      op = SX_NEXT;
      if (rc == SYNC_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc) break;
      if ((rc = sx_row_decode(v.p, v.n, kk.p, kk.n, &x->old))) break;
      for (i = 0; i < x->old.nstamps; i++)
        if (x->old.stamps[i].site == 0 && x->old.stamps[i].hlc <= t) {
          x->old.stamps[i].site = k;
          any = 1;
        }
      if (!any) continue;
      klen = kk.n;
      memcpy(key, kk.p, klen);
      size = sx_row_size(&x->old);
      if ((rc = sx_buf_reserve(&x->enc, size))) break;
      sx_row_encode(&x->old, key, klen, x->enc.p, size);
      if ((rc = sx_cur_put(env->st, c, key, klen, x->enc.p, size,
                           SX_CUR_CURRENT))) {
        x->failed = 1;
        break;
      }
      kk.p = key;
      kk.n = klen;
    }
  }
  return rc;
}

/* Take a new site id.  This replica's writes with stamps up to hlc t keep
 * the old id, later ones move to the new id; the old id becomes an
 * ordinary site, held up to hlc held (0: nothing claimed, so peers send
 * back every change of it they hold). */
SYNC_PRIVATE int sx_site_renew(sync_txn *x, uint64_t t, uint64_t held) {
  sync_env *env = x->env;
  uint8_t old[SX_SITE_LEN], nid[SX_SITE_LEN];
  unsigned char kb[4], vb[8];
  uint32_t k, i;
  int rc, tries;
  if ((rc = sx_scratch(x)) || (rc = sx_sites_load(x))) return rc;
  memcpy(old, env->site, SX_SITE_LEN);
  for (tries = 0;; tries++) {
    int clash = 0;
    if (tries == 8 || env->random(env->random_ctx, nid, SX_SITE_LEN) != 0)
      return sx_fail(env, SYNC_EIO,
                     "the random source failed to give a new site id");
    for (i = 0; i < x->nsites; i++)
      if (!memcmp(x->sites[i], nid, SX_SITE_LEN)) clash = 1;
    if (!clash) break;
  }
  /* The old id gets the next index, the new one index 0. */
  if ((rc = sx_site_index(x, old, 0, &k)) || k != 0)
    return rc ? rc : SYNC_ECORRUPT;
  sx_put_be32(kb, 0);
  if ((rc = sx_put(env->st, x->t, env->sites, kb, 4, nid, SX_SITE_LEN, 0)))
    goto fail;
  memcpy(x->sites[0], nid, SX_SITE_LEN);
  memcpy(env->site, nid, SX_SITE_LEN);
  if ((rc = sx_site_index(x, old, 1, &k))) goto fail;
  if ((rc = sx_relabel_rows(x, k, t))) goto fail;
  {
    /* xfloor capped what we claimed of our own writes, some of which
     * left our scope: they keep the old id, and the new one has lost
     * none.  (The old id is held no further than held, and a held above
     * xfloor would claim them: no caller passes one.) */
    sx_slice f;
    rc = sx_get(env->st, x->t, env->meta, "xfloor", 6, &f);
    if (rc && rc != SYNC_NOTFOUND) goto fail;
    if (rc == 0) {
      if (f.n == 8 && held > sx_get_le64(f.p)) held = sx_get_le64(f.p);
      if ((rc = sx_del(env->st, x->t, env->meta, "xfloor", 6))) goto fail;
    }
    rc = 0;
  }
  sx_put_be32(kb, k);
  sx_put_le64(vb, held);
  if (held && (rc = sx_put(env->st, x->t, env->vv, kb, 4, vb, 8, 0))) goto fail;
  if ((rc = sx_put(env->st, x->t, env->meta, "site", 4, nid, SX_SITE_LEN, 0)))
    goto fail;
  x->dirty = 1;
  return 0;
fail:
  x->failed = 1;
  memcpy(env->site, old, SX_SITE_LEN);
  return rc;
}
