/*
 * renew.c - site renewal: taking a new site id after a restore, and the
 * renewal records that void a restored file's old claims.
 */
#include "renew.h"

#include <stdlib.h>

/* The sites of the peer records, collected first: they are rewritten
 * once the walk over them is done. */
static int sx_site_collect(void *ctx, const uint8_t *site, const sx_peer *p) {
  sx_buf *b = (sx_buf *)ctx;
  int rc;
  (void)p;
  if ((rc = sx_buf_reserve(b, SX_SITE_LEN))) return rc;
  memcpy(b->p + b->len, site, SX_SITE_LEN);
  b->len += SX_SITE_LEN;
  return 0;
}

/* ---------------------------------------------------------------------
 * Renewal records
 *
 * A replica restored from a backup claims, until a peer shows it the
 * restore, the writes of its own site that it lost: its own vector entry
 * is its clock.  Peers that take its vector in that time leave those
 * writes out of what they ask for, past cursors that move on.  When it
 * finds out it gives the site id up and records the HLC up to which its
 * file holds that id's writes: the id's claims above it are void.  The
 * record (meta "renewed": 16-byte site id, u64 LE HLC, per id) goes with
 * the last chunk of every run, so it reaches every replica the way
 * changes do.  A replica that learns it lowers its vector entry (and its
 * gcvv entry) for the id to that HLC and, when the entry was higher,
 * starts its runs again, so that its peers send it what it left out; a
 * vector it takes later is capped there too, whoever sends it.
 * ------------------------------------------------------------------- */

SYNC_PRIVATE int sx_renew_load(sync_txn *x, sx_buf *b) {
  return sx_meta_pairs(x, "renewed", SX_RENEW_MAX, b);
}

SYNC_PRIVATE uint64_t sx_renew_cap(const sx_buf *b, const uint8_t *site, uint64_t h) {
  uint64_t held;
  return sx_pair_hlc(b->p, b->len, site, &held) && h > held ? held : h;
}

/* Start every run again: peers stream all this replica's vector does not
 * cover.  (The sites are collected first: records are rewritten once the
 * walk over them is done.) */
static int sx_runs_restart(sync_txn *x) {
  sx_buf sites;
  size_t i;
  int rc;
  sx_buf_init(&sites, &x->env->al);
  rc = sx_peers_each(x, sx_site_collect, &sites);
  for (i = 0; !rc && i + SX_SITE_LEN <= sites.len; i += SX_SITE_LEN) {
    sx_peer p;
    if ((rc = sx_peer_get(x, sites.p + i, &p))) break;
    memset(&p.cur, 0, sizeof p.cur);
    memset(&p.mark, 0, sizeof p.mark);
    memset(&p.lineage, 0, sizeof p.lineage);
    p.tainted = 0;
    rc = sx_peer_put(x, sites.p + i, &p);
  }
  sx_buf_free(&sites);
  return rc;
}

/* Lower the gcvv entry of site to held (0: drop it). */
static int sx_gcvv_cap(sync_txn *x, const uint8_t *site, uint64_t held) {
  sync_env *env = x->env;
  sx_slice g;
  sx_buf b;
  size_t j;
  int rc, changed = 0;
  rc = sx_get(env->st, x->t, env->meta, "gcvv", 4, &g);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  sx_buf_init(&b, &env->al);
  if ((rc = sx_buf_reserve(&b, g.n))) return rc;
  for (j = 0; j + 24 <= g.n; j += 24) {
    uint64_t h = sx_get_le64(g.p + j + 16);
    if (!memcmp(g.p + j, site, SX_SITE_LEN) && h > held) {
      changed = 1;
      if (!held) continue;
      h = held;
    }
    memcpy(b.p + b.len, g.p + j, SX_SITE_LEN);
    sx_put_le64(b.p + b.len + 16, h);
    b.len += 24;
  }
  if (changed &&
      (rc = sx_put(env->st, x->t, env->meta, "gcvv", 4, b.p, b.len, 0)))
    x->failed = 1;
  sx_buf_free(&b);
  return rc;
}

/* Take the renewal record (site, held): keep it (the lower HLC wins), and
 * lower this replica's vector and gcvv entries for site to held; *lowered
 * is set when the vector entry fell.  A record naming this replica's own
 * id is not taken (it never claims less than it holds of itself). */
static int sx_renew_learn(sync_txn *x, const uint8_t *site, uint64_t held,
                          int *lowered) {
  sync_env *env = x->env;
  unsigned char kk[4], vb[8];
  sx_slice old;
  sx_buf b;
  size_t j;
  uint32_t idx;
  int rc, found = 0;
  if (!memcmp(site, x->self, SX_SITE_LEN)) return 0;
  sx_buf_init(&b, &env->al);
  if ((rc = sx_renew_load(x, &b))) goto done;
  for (j = 0; j + 24 <= b.len; j += 24)
    if (!memcmp(b.p + j, site, SX_SITE_LEN)) {
      found = 1;
      if (sx_get_le64(b.p + j + 16) <= held) goto done; /* known */
      sx_put_le64(b.p + j + 16, held);
    }
  if (!found) {
    if (b.len / 24 >= SX_RENEW_MAX) {
      rc = sx_fail(env, SYNC_ELIMIT,
                   "this replica keeps %d renewal records, the most it can",
                   SX_RENEW_MAX);
      goto done;
    }
    if ((rc = sx_buf_reserve(&b, 24))) goto done;
    memcpy(b.p + b.len, site, SX_SITE_LEN);
    sx_put_le64(b.p + b.len + 16, held);
    b.len += 24;
  }
  if ((rc = sx_put(env->st, x->t, env->meta, "renewed", 7, b.p, b.len, 0))) {
    x->failed = 1;
    goto done;
  }
  x->dirty = 1;
  if ((rc = sx_gcvv_cap(x, site, held))) goto done;
  if ((rc = sx_sites_load(x))) goto done;
  rc = sx_site_index(x, site, 0, &idx);
  if (rc == SYNC_NOTFOUND || (rc == 0 && idx == 0)) {
    rc = 0;
    goto done;
  }
  if (rc) goto done;
  sx_put_be32(kk, idx);
  rc = sx_get(env->st, x->t, env->vv, kk, 4, &old);
  if (rc == SYNC_NOTFOUND) {
    rc = 0;
    goto done;
  }
  if (rc || old.n != 8 || sx_get_le64(old.p) <= held) goto done;
  sx_put_le64(vb, held);
  rc = held ? sx_put(env->st, x->t, env->vv, kk, 4, vb, 8, 0)
            : sx_del(env->st, x->t, env->vv, kk, 4);
  if (rc) {
    x->failed = 1;
    goto done;
  }
  *lowered = 1;
done:
  sx_buf_free(&b);
  return rc;
}

SYNC_PRIVATE int sx_apply_renewals(sync_txn *x, const sync_delta *d) {
  size_t i;
  int rc = 0, lowered = 0;
  for (i = 0; i < d->nrenew && !rc; i++)
    rc = sx_renew_learn(x, d->sites[d->renew[i].site], d->renew[i].held,
                        &lowered);
  if (!rc && lowered) rc = sx_runs_restart(x);
  return rc;
}

static int sx_renew_site_cmp(const void *a, const void *b) {
  uint32_t x = ((const sx_renew *)a)->site, y = ((const sx_renew *)b)->site;
  return x < y ? -1 : x > y;
}

SYNC_PRIVATE int sx_renew_attach(sync_txn *x, sync_delta *d) {
  sx_buf b;
  size_t j;
  int rc;
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_renew_load(x, &b)) || !b.len) goto done;
  d->renew = (sx_renew *)sx_malloc(&d->al, b.len / 24 * sizeof(sx_renew));
  if (!d->renew) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  for (j = 0; j + 24 <= b.len; j += 24) {
    uint32_t idx;
    rc = sx_site_index(x, b.p + j, 0, &idx);
    if (rc == SYNC_NOTFOUND) continue;
    if (rc) goto done;
    if (idx == 0 || idx >= d->nsites) continue;
    d->renew[d->nrenew].site = idx;
    d->renew[d->nrenew].held = sx_get_le64(b.p + j + 16);
    d->nrenew++;
  }
  rc = 0;
  qsort(d->renew, d->nrenew, sizeof *d->renew, sx_renew_site_cmp);
done:
  sx_buf_free(&b);
  return rc;
}

SYNC_PRIVATE int sx_sender_vv(sync_txn *x, const sync_delta *d, uint64_t **out) {
  sx_buf b;
  uint64_t *v;
  size_t i;
  int rc;
  *out = NULL;
  v = (uint64_t *)sx_malloc(&x->env->al,
                            sizeof(uint64_t) * (d->nsites ? d->nsites : 1));
  if (!v) return SYNC_ENOMEM;
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_renew_load(x, &b))) {
    sx_free(&x->env->al, v);
    return rc;
  }
  for (i = 0; i < d->nsites; i++)
    v[i] = i < d->nvv ? sx_renew_cap(&b, d->sites[i], d->vv[i]) : 0;
  for (i = 0; i < d->nrenew; i++)
    if (v[d->renew[i].site] > d->renew[i].held)
      v[d->renew[i].site] = d->renew[i].held;
  sx_buf_free(&b);
  *out = v;
  return 0;
}

/* Give up this replica's site id after a peer showed it holds a log of
 * it that is not this file's (view: mark m with lineage lin, or none).
 * The renewal record says up to which HLC the file holds the old id's
 * writes.  The newest epoch of the view (the mark's, then its lineage,
 * newest first) that the file has is the last one both histories share:
 * the file's next epoch began where they parted (the backup's state, as
 * the first open after the restore found it), and what the file held
 * then is the fleet's too.  With none of them here, nothing is known to
 * be shared. */
static int sx_site_renew_view(sync_txn *x, const sx_mark *m,
                              const sx_lineage *lin, uint64_t claim) {
  uint64_t held = 0;
  unsigned i;
  int rc = SYNC_NOTFOUND;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if (m && m->id) rc = sx_epoch_next_hlc(x, m, &held);
  for (i = 0; rc == SYNC_NOTFOUND && lin && i < lin->n; i++)
    rc = sx_epoch_next_hlc(x, &lin->e[i], &held);
  if (rc == SYNC_NOTFOUND) held = claim == UINT64_MAX ? 0 : claim;
  else if (rc) return rc;
  else if (claim < held) held = claim; /* where a claim showed the split */
  return sx_site_renew_held(x, held);
}

SYNC_PRIVATE int sx_site_renew_held(sync_txn *x, uint64_t held) {
  uint8_t old[SX_SITE_LEN];
  int rc, lowered = 0;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  memcpy(old, x->self, SX_SITE_LEN);
  /* A file restored from a backup lost old-id writes the fleet holds,
   * and while it claimed them (its own vector entry), peers left them
   * out of what they sent, past cursors that have moved on since.  So
   * claim none of the old id, and start every run again: peers send
   * back all they hold of it.  The rows keep their stamps: the fleet may
   * hold those writes too.  Stamps of the old id this transaction took
   * from a peer go with them (at most hlc_seen); those it made itself
   * are the new id's. */
  if ((rc = sx_site_renew(x, x->hlc_seen > x->hlc_last ? x->hlc_seen
                                                        : x->hlc_last, 0)))
    return rc;
  /* The record voids, wherever it goes, the old id's claims above held:
   * claims this file made past what it holds (its own vector entry, its
   * clock), which peers took from it.  A file whose clock never passed
   * held made none, and the claims others hold of the old id are their
   * own: voiding them would only leave deletes they collected unproven.
   * It keeps the bound to itself. */
  if (x->hlc_last > held)
    rc = sx_renew_learn(x, old, held, &lowered);
  else
    rc = sx_gcvv_cap(x, old, held);
  if (rc || (rc = sx_former_add(x, old, held))) return rc;
  return sx_runs_restart(x);
}

SYNC_API int sync_renewals_get(sync_txn *x, sync_stamp *out, size_t cap,
                               size_t *n) {
  sx_buf b;
  size_t j, k = 0;
  int rc;
  if (!x || !n || (cap && !out)) return SYNC_EINVAL;
  sx_buf_init(&b, &x->env->al);
  if ((rc = sx_renew_load(x, &b))) return rc;
  for (j = 0; j + 24 <= b.len; j += 24, k++)
    if (k < cap) {
      memcpy(out[k].site, b.p + j, SX_SITE_LEN);
      out[k].hlc = sx_get_le64(b.p + j + 16);
    }
  sx_buf_free(&b);
  *n = k;
  return 0;
}

SYNC_API int sync_site_renew(sync_txn *x) {
  if (!x) return SYNC_EINVAL;
  return sx_site_renew_view(x, NULL, NULL, UINT64_MAX);
}

SYNC_API int sync_site_renew_from(sync_txn *x, const sync_request *req) {
  uint64_t claim;
  int rc;
  if (!x || !req || memcmp(req->sender, x->self, SX_SITE_LEN))
    return SYNC_EINVAL;
  rc = sx_claim_check(x, req, &claim);
  if (rc && rc != SYNC_EHISTORY) return rc;
  return sx_site_renew_view(x, &req->mark, &req->lineage, claim);
}

SYNC_PRIVATE int sx_site_renew_after(sync_txn *x, const sx_mark *m,
                                     const sx_lineage *lin, uint64_t claim) {
  if (!x || !m) return SYNC_EINVAL;
  return sx_site_renew_view(x, m, lin, claim);
}
