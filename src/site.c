/*
 * site.c - taking a new site id: this replica's stamps after a point in
 * its history move to the new id, the old one becomes an ordinary site.
 * Used when a file turns out to be a copy (a restore or a clone); the
 * renewal records that tell peers about it are in renew.c.
 */
#include "site.h"

#include <stdlib.h>

static int sx_ctr_sitecmp_s(const void *p, const void *q) {
  const sx_ctr *a = (const sx_ctr *)p, *b = (const sx_ctr *)q;
  return a->site < b->site ? -1 : a->site > b->site;
}

/* The counter cells of x->old: this replica's contribution goes to site
 * index k (the old id) when its last add is at or below t, as the
 * stamps do.  One made by adds on both sides of t stays with the new
 * id (docs/FORMAT.md, "Counter columns": a restore can count the adds
 * before t twice).  *any is set when a cell changes; the new payloads
 * are in x->cpay until the row is stored. */
static int sx_relabel_counters(sync_txn *x, uint32_t k, uint64_t t,
                               int *any) {
  sx_row *r = &x->old;
  size_t room = 0;
  unsigned j;
  int rc;
  for (j = 0; j < r->ncols; j++)
    if (r->cols[j].st != SX_NOSTAMP && r->cols[j].v.type == SX_TAG_COUNTER)
      room += r->cols[j].v.len + 2 * SX_VARINT_MAX;
  if (!room) return 0;
  x->cpay.len = 0;
  if ((rc = sx_buf_reserve(&x->cpay, room))) return rc;
  for (j = 0; j < r->ncols; j++) {
    sx_rcol *c = &r->cols[j];
    size_t n = 0;
    sx_ctr *a;
    if (c->st == SX_NOSTAMP || c->v.type != SX_TAG_COUNTER) continue;
    (void)sx_ctr_check((const unsigned char *)c->v.data,
                       (const unsigned char *)c->v.data + c->v.len, &n);
    if ((rc = sx_buf_reserve(&x->ctrs, n * sizeof(sx_ctr)))) return rc;
    a = (sx_ctr *)(void *)x->ctrs.p;
    sx_ctr_read(&c->v, a);
    /* Site 0 sorts first. */
    if (!n || a[0].site != 0 || a[0].hlc > t) continue;
    a[0].site = k;
    qsort(a, n, sizeof *a, sx_ctr_sitecmp_s);
    if (SX_NEVER(x->cpay.len + sx_ctr_size(a, n) > x->cpay.cap))
      return SYNC_ECORRUPT;
    c->v.data = x->cpay.p + x->cpay.len;
    c->v.len = sx_ctr_put(x->cpay.p + x->cpay.len, a, n);
    x->cpay.len += c->v.len;
    *any = 1;
  }
  return 0;
}

/* Rewrite the stamps of this replica's own site in the rows from table
 * *tid, key pos (exclusive: the last row done; *plen 0: the table's
 * first row) on: those up to hlc t go to site index k (the old id),
 * later ones stay at 0 (the new id).  Neither the versions nor the log
 * change.  At most budget rows are read (0: no bound); *tid and pos then
 * say where to go on, and *tid reaches the number of tables at the end.
 * pos holds SYNC_MAX_KEY bytes. */
static int sx_relabel_rows(sync_txn *x, uint32_t k, uint64_t t, unsigned *tid,
                           unsigned char *pos, size_t *plen, size_t budget) {
  sync_env *env = x->env;
  size_t n = 0;
  for (; *tid < env->schema->ntables; (*tid)++, *plen = 0) {
    sx_scur *c;
    sx_slice kk, v;
    int rc, op = SX_AFTER;
    if ((rc = sx_table_cursor(x, *tid, &c))) return rc;
    kk.p = pos;
    kk.n = *plen;
    for (;;) {
      size_t size;
      unsigned i;
      int any = 0;
      rc = sx_cur_walk(env->st, c, &op, &kk, &v);
      if (rc == 0) break;
      if (rc < 0) return rc;
      if (kk.n > SYNC_MAX_KEY) return SYNC_ECORRUPT;
      memcpy(pos, kk.p, kk.n);
      *plen = kk.n;
      if ((rc = sx_row_decode(v.p, v.n, kk.p, kk.n, &x->old))) return rc;
      for (i = 0; i < x->old.nstamps; i++)
        if (x->old.stamps[i].site == 0 && x->old.stamps[i].hlc <= t) {
          x->old.stamps[i].site = k;
          any = 1;
        }
      if ((rc = sx_relabel_counters(x, k, t, &any)) < 0) return rc;
      if (any) {
        size = sx_row_size(&x->old);
        if ((rc = sx_buf_reserve(&x->enc, size))) return rc;
        sx_row_encode(&x->old, pos, *plen, x->enc.p, size, 0);
        if ((rc = sx_cur_put(env->st, c, pos, *plen, x->enc.p, size,
                             SX_CUR_CURRENT))) {
          x->failed = 1;
          return rc;
        }
      }
      if (budget && ++n == budget) return 0; /* go on from pos */
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Former ids (meta "former": 16-byte site id, u64 LE bound, per id, the
 * newest SX_FORMER_MAX kept): ids this file's history wrote under before
 * it took a new one, each with the HLC up to which it claims that id's
 * writes.  A stamp of such an id at or below its bound that the file's
 * epochs show its history never made (sx_hist_foreign) is a write the
 * claim covers and the file lacks: the file it was copied from was a
 * restore nobody had found out yet.
 * ------------------------------------------------------------------- */
SYNC_PRIVATE int sx_meta_pairs(sync_txn *x, const char *key, size_t max,
                               sx_buf *b) {
  sx_slice v;
  int rc = sx_get(x->env->st, x->t, x->env->meta, key, strlen(key), &v);
  b->len = 0;
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.n % 24 || v.n / 24 > max) return SYNC_ECORRUPT;
  if ((rc = sx_buf_reserve(b, v.n))) return rc;
  memcpy(b->p, v.p, v.n);
  b->len = v.n;
  return 0;
}

SYNC_PRIVATE int sx_pair_hlc(const unsigned char *p, size_t n,
                             const uint8_t *site, uint64_t *h) {
  size_t j;
  int found = 0;
  for (j = 0; j + 24 <= n; j += 24)
    if (!memcmp(p + j, site, SX_SITE_LEN)) {
      *h = sx_get_le64(p + j + SX_SITE_LEN);
      found = 1;
    }
  return found;
}

SYNC_PRIVATE int sx_former_load(sync_txn *x, sx_buf *b) {
  return sx_meta_pairs(x, "former", SX_FORMER_MAX, b);
}

SYNC_PRIVATE int sx_former_add(sync_txn *x, const uint8_t *id,
                               uint64_t bound) {
  sx_buf b;
  size_t skip = 0;
  int rc;
  if (!bound) return 0; /* claims nothing */
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_former_load(x, &b)) || (rc = sx_buf_reserve(&b, 24))) goto done;
  memcpy(b.p + b.len, id, SX_SITE_LEN);
  sx_put_le64(b.p + b.len + SX_SITE_LEN, bound);
  b.len += 24;
  if (b.len / 24 > SX_FORMER_MAX) skip = 24; /* the oldest goes */
  if ((rc = sx_put(x->env->st, x->t, x->env->meta, "former", 6, b.p + skip,
                   b.len - skip, 0)))
    x->failed = 1;
done:
  sx_buf_free(&b);
  return rc;
}

/* Give the old id (still index 0's) a second index, returned in *k, for
 * the stamps that keep it: until sx_renew_switch both indexes name it. */
static int sx_renew_alias(sync_txn *x, uint32_t *k) {
  int rc;
  if ((rc = sx_scratch(x)) || (rc = sx_site_index(x, x->self, 0, k)))
    return rc;
  if (*k != 0) return SYNC_ECORRUPT;
  return sx_site_append(x, x->self, k);
}

/* Take a new id for index 0, the old one staying at index k (rows
 * relabelled), held up to hlc held (0: nothing claimed). */
static int sx_renew_switch(sync_txn *x, uint32_t k, uint64_t held) {
  sync_env *env = x->env;
  uint8_t old[SX_SITE_LEN], nid[SX_SITE_LEN];
  unsigned char kb[4], vb[8];
  uint32_t i;
  int rc, tries;
  memcpy(old, x->self, SX_SITE_LEN);
  for (tries = 0;; tries++) {
    int clash = 0;
    if (tries == 8 || env->random(env->random_ctx, nid, SX_SITE_LEN) != 0)
      return sx_fail(env, SYNC_EIO,
                     "the random source failed to give a new site id");
    for (i = 0; i < x->nsites; i++)
      if (!memcmp(x->sites[i], nid, SX_SITE_LEN)) clash = 1;
    if (!clash) break;
  }
  sx_put_be32(kb, 0);
  if ((rc = sx_put(env->st, x->t, env->sites, kb, 4, nid, SX_SITE_LEN, 0)))
    goto fail;
  memcpy(x->sites[0], nid, SX_SITE_LEN);
  memcpy(x->self, nid, SX_SITE_LEN);
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
  }
  sx_put_be32(kb, k);
  sx_put_le64(vb, held);
  if (held && ((rc = sx_put(env->st, x->t, env->vv, kb, 4, vb, 8, 0)) ||
               (rc = sx_former_add(x, old, held))))
    goto fail;
  if ((rc = sx_put(env->st, x->t, env->meta, "site", 4, nid, SX_SITE_LEN, 0)))
    goto fail;
  x->dirty = 1;
  return 0;
fail:
  x->failed = 1;
  memcpy(x->self, old, SX_SITE_LEN);
  return rc;
}

/* Take a new site id.  This replica's writes with stamps up to hlc t keep
 * the old id, later ones move to the new id; the old id becomes an
 * ordinary site, held up to hlc held (0: nothing claimed, so peers send
 * back every change of it they hold). */
SYNC_PRIVATE int sx_site_renew(sync_txn *x, uint64_t t, uint64_t held) {
  unsigned char pos[SYNC_MAX_KEY];
  size_t plen = 0;
  unsigned tid = 0;
  uint32_t k;
  int rc;
  if ((rc = sx_renew_alias(x, &k)) ||
      (rc = sx_relabel_rows(x, k, t, &tid, pos, &plen, 0)) ||
      (rc = sx_rh_relabel(x, k, t))) {
    x->failed = 1;
    return rc;
  }
  return sx_renew_switch(x, k, held);
}

/* ---------------------------------------------------------------------
 * A copy's renewal in batches (meta "relabel": u32 LE k, u64 LE t, u64
 * LE held, u32 LE table, the key of the last row done, to the end).  A
 * copy of a large file would rewrite every row in one transaction, and
 * LMDB reuses no page a transaction frees before it commits: the file
 * would double.  So the old id first gets a second index (both name it,
 * so every state between batches reads as the file did), the rows move
 * to it a batch per transaction, freed pages serving the next, and the
 * transaction that finds them all moved takes the new id.  A crash in between leaves the
 * record, and the next writable open goes on from it.
 * ------------------------------------------------------------------- */
#define SX_RELABEL_HEAD 20 /* k, t, held; then the walk's place */

static int sx_relabel_damaged(sync_txn *x) {
  x->failed = 1;
  return sx_fail(x->env, SYNC_ECORRUPT, "meta record relabel damaged");
}

SYNC_PRIVATE int sx_copy_renew_step(sync_txn *x, uint64_t t, uint64_t held,
                                    size_t budget, int *done) {
  unsigned char head[SX_RELABEL_HEAD], pos[SYNC_MAX_KEY];
  size_t plen = 0;
  unsigned tid = 0;
  uint32_t k = 0;
  int rc;
  *done = 0;
  rc = sx_walkpos_get(x, "relabel", head, SX_RELABEL_HEAD, &tid, pos, &plen);
  if (rc == SYNC_NOTFOUND) {
    /* The first step: the old id's second index, then rows. */
    if ((rc = sx_renew_alias(x, &k))) goto fail;
    sx_put_le32(head, k);
    sx_put_le64(head + 4, t);
    sx_put_le64(head + 12, held);
  } else if (rc == SYNC_ECORRUPT) {
    return sx_relabel_damaged(x);
  } else if (rc || (rc = sx_scratch(x)) || (rc = sx_sites_load(x))) {
    goto fail;
  } else {
    k = sx_get_le32(head);
    t = sx_get_le64(head + 4);
    held = sx_get_le64(head + 12);
    if (k == 0 || k >= x->nsites) return sx_relabel_damaged(x);
    if (memcmp(x->sites[k], x->self, SX_SITE_LEN)) {
      /* Code older than the record took the new id since (it relabels
       * the rows to the old id's second index as this would): done. */
      if ((rc = sx_del(x->env->st, x->t, x->env->meta, "relabel", 7)))
        goto fail;
      *done = 1;
      return 0;
    }
  }
  if (tid < x->env->schema->ntables) {
    if ((rc = sx_relabel_rows(x, k, t, &tid, pos, &plen, budget))) goto fail;
    if (tid < x->env->schema->ntables)
      return sx_walkpos_put(x, "relabel", head, SX_RELABEL_HEAD, tid, pos,
                            plen);
  }
  /* Every row done (a small file: in the first step): row history, then
   * the new id. */
  if ((rc = sx_rh_relabel(x, k, t))) goto fail;
  rc = sx_del(x->env->st, x->t, x->env->meta, "relabel", 7);
  if (rc && rc != SYNC_NOTFOUND) goto fail;
  *done = 1;
  return sx_renew_switch(x, k, held);
fail:
  x->failed = 1;
  return rc;
}
