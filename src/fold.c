/*
 * fold.c - counter folds.
 *
 * A counter cell holds one contribution per site that added to it.  A
 * site that will never add again (a device taken out of service, an id
 * given up) is retired on one replica, its heir (sync_site_retire, in
 * gc.c): from then on every contribution the heir writes to a cell holds
 * the retired site's contribution to it, added to its own totals, and
 * the retired site's is dropped.  The fold record (site, heir, hlc,
 * held) says so to everyone: a contribution of the heir at or above hlc
 * holds the site's, so wherever both meet in a cell the site's goes.  A
 * cell therefore holds the contributions of the sites still adding, plus
 * their heirs, whatever number of sites came and went.
 *
 * The heir folds every cell it holds in batches (gc.c) and folds a cell
 * whenever it adds to it; it holds every add of the site when it retires
 * it (the caller says the site stopped and synced), so what it adds up
 * is the site's final count.  The records travel with the chunks that
 * need them: one that carries an heir's contribution at or above a fold
 * carries the record, unless the requester's vector shows it holds it
 * already; a run's last chunk carries the records of the heirs it names
 * beyond the requester's vector (a replica whose vector covers an heir's
 * fold holds its record).  When an heir is retired in turn, its heir
 * writes a record of its own for every site the first one held: the
 * chain ends at a live replica.
 * ------------------------------------------------------------------- */
#include "fold.h"

#include <stdlib.h>

static int sx_foldcmp(const uint8_t *s1, const uint8_t *h1, const uint8_t *s2,
                      const uint8_t *h2) {
  int c = memcmp(s1, s2, SX_SITE_LEN);
  return c ? c : memcmp(h1, h2, SX_SITE_LEN);
}

SYNC_PRIVATE int sx_folds(sync_txn *x, sx_fold **out, size_t *n) {
  sync_env *env = x->env;
  sx_slice v;
  size_t i, m;
  int rc;
  *out = NULL;
  *n = 0;
  if (!x->folds_ok) {
    rc = sx_get(env->st, x->t, env->meta, "folds", 5, &v);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    m = rc ? 0 : v.n / SX_FOLD_REC;
    if (!rc && (v.n % SX_FOLD_REC || m > SX_FOLD_MAX))
      return sx_fail(env, SYNC_ECORRUPT, "malformed fold records");
    if (m) {
      x->folds = (sx_fold *)sx_malloc(&env->al, m * sizeof(sx_fold));
      if (!x->folds) return SYNC_ENOMEM;
    }
    for (i = 0; i < m; i++) {
      const unsigned char *p = v.p + i * SX_FOLD_REC;
      sx_fold *f = &x->folds[i];
      memcpy(f->site, p, SX_SITE_LEN);
      memcpy(f->heir, p + 16, SX_SITE_LEN);
      f->hlc = sx_get_le64(p + 32);
      f->held = sx_get_le64(p + 40);
      f->lheir = SX_NONE;
      if (!f->hlc || !memcmp(f->site, f->heir, SX_SITE_LEN) ||
          (i && sx_foldcmp(f[-1].site, f[-1].heir, f->site, f->heir) >= 0)) {
        sx_free(&env->al, x->folds);
        x->folds = NULL;
        return sx_fail(env, SYNC_ECORRUPT, "malformed fold records");
      }
    }
    x->nfolds = m;
    x->folds_map = 0;
    x->folds_ok = 1;
  }
  *out = x->folds;
  *n = x->nfolds;
  return 0;
}

SYNC_PRIVATE int sx_fold_put(sync_txn *x, const uint8_t *site,
                             const uint8_t *heir, uint64_t hlc,
                             uint64_t held, int *added) {
  sync_env *env = x->env;
  sx_fold *f, *nf;
  size_t n, i, lo = 0;
  unsigned char *b;
  int rc;
  *added = 0;
  if ((rc = sx_folds(x, &f, &n))) return rc;
  for (lo = 0; lo < n && sx_foldcmp(f[lo].site, f[lo].heir, site, heir) < 0;)
    lo++;
  if (lo < n && !sx_foldcmp(f[lo].site, f[lo].heir, site, heir)) {
    if (f[lo].hlc <= hlc) return 0;
    f[lo].hlc = hlc; /* the earlier fold holds as much */
  } else {
    if (n >= SX_FOLD_MAX)
      return sx_fail(env, SYNC_ELIMIT, "more than %d fold records",
                     SX_FOLD_MAX);
    nf = (sx_fold *)sx_realloc(&env->al, f, (n + 1) * sizeof *nf);
    if (!nf) return SYNC_ENOMEM;
    memmove(nf + lo + 1, nf + lo, (n - lo) * sizeof *nf);
    memcpy(nf[lo].site, site, SX_SITE_LEN);
    memcpy(nf[lo].heir, heir, SX_SITE_LEN);
    nf[lo].hlc = hlc;
    nf[lo].held = held;
    nf[lo].lheir = SX_NONE;
    x->folds = nf;
    x->nfolds = ++n;
    x->folds_map = 0;
    *added = 1;
  }
  b = (unsigned char *)sx_malloc(&env->al, n * SX_FOLD_REC);
  if (!b) return SYNC_ENOMEM;
  for (i = 0; i < n; i++) {
    unsigned char *p = b + i * SX_FOLD_REC;
    memcpy(p, x->folds[i].site, SX_SITE_LEN);
    memcpy(p + 16, x->folds[i].heir, SX_SITE_LEN);
    sx_put_le64(p + 32, x->folds[i].hlc);
    sx_put_le64(p + 40, x->folds[i].held);
  }
  rc = sx_put(env->st, x->t, env->meta, "folds", 5, b, n * SX_FOLD_REC, 0);
  sx_free(&env->al, b);
  if (rc) x->failed = 1;
  x->dirty = 1;
  return rc;
}

/* The records, with every heir's local index found (once per growth of
 * the site table: an heir first met later gets one). */
static int sx_folds_mapped(sync_txn *x, sx_fold **out, size_t *n) {
  size_t i;
  int rc;
  if ((rc = sx_folds(x, out, n)) || !*n) return rc;
  if ((rc = sx_sites_load(x))) return rc;
  if (x->folds_map != x->nsites) {
    for (i = 0; i < *n; i++) {
      uint32_t idx;
      if ((*out)[i].lheir != SX_NONE) continue;
      rc = sx_site_index(x, (*out)[i].heir, 0, &idx);
      if (rc && rc != SYNC_NOTFOUND) return rc;
      if (!rc) (*out)[i].lheir = idx;
    }
    x->folds_map = x->nsites;
  }
  return 0;
}

/* The first record of site (16 bytes), or n. */
static size_t sx_fold_first(const sx_fold *f, size_t n, const uint8_t *site) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (memcmp(f[mid].site, site, SX_SITE_LEN) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The contribution of local site s in t[0..k), or NULL. */
static const sx_ctr *sx_ctr_of(const sx_ctr *t, size_t k, uint32_t s) {
  size_t lo = 0, hi = k;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t[mid].site < s)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < k && t[lo].site == s ? &t[lo] : NULL;
}

SYNC_PRIVATE int sx_fold_cell(sync_txn *x, sx_ctr *t, size_t *k,
                              uint64_t *late) {
  sx_fold *f;
  size_t n, i, j, m;
  unsigned char *drop;
  int rc, any = 0;
  if ((rc = sx_folds_mapped(x, &f, &n)) || !n || *k < 2) return rc;
  if ((rc = sx_buf_reserve(&x->fmark, *k))) return rc;
  drop = x->fmark.p;
  memset(drop, 0, *k);
  /* Judged on the cell as it is, before any drop: an heir dropped in
   * turn (its heir holds it) still shows what it held. */
  for (i = 0; i < *k; i++) {
    if (t[i].site >= x->nsites) return SYNC_ECORRUPT;
    for (j = sx_fold_first(f, n, x->sites[t[i].site]);
         j < n && !memcmp(f[j].site, x->sites[t[i].site], SX_SITE_LEN); j++) {
      const sx_ctr *h;
      if (f[j].lheir == SX_NONE) continue;
      h = sx_ctr_of(t, *k, f[j].lheir);
      if (h && h->hlc >= f[j].hlc) {
        drop[i] = 1;
        if (late && t[i].hlc > f[j].held) (*late)++;
        any = 1;
        break;
      }
    }
  }
  if (!any) return 0;
  for (i = m = 0; i < *k; i++)
    if (!drop[i]) t[m++] = t[i];
  *k = m;
  return 0;
}

SYNC_PRIVATE int sx_fold_mine(sync_txn *x, uint32_t s) {
  sx_fold *f;
  size_t n, j;
  if (sx_folds(x, &f, &n) || !n || s == 0 || sx_sites_load(x) ||
      s >= x->nsites)
    return 0;
  for (j = sx_fold_first(f, n, x->sites[s]);
       j < n && !memcmp(f[j].site, x->sites[s], SX_SITE_LEN); j++)
    if (!memcmp(f[j].heir, x->self, SX_SITE_LEN)) return 1;
  return 0;
}

SYNC_PRIVATE int sx_fold_absorb(sync_txn *x, sx_ctr *a, size_t *n) {
  size_t i, m;
  sx_fold *f;
  size_t nf;
  int rc;
  if ((rc = sx_folds(x, &f, &nf)) || !nf) return rc;
  if (SX_NEVER(!*n || a[0].site != 0)) return SYNC_ECORRUPT;
  for (i = m = 1; i < *n; i++) {
    if (!sx_fold_mine(x, a[i].site)) {
      a[m++] = a[i];
      continue;
    }
    if (a[0].p > UINT64_MAX - a[i].p || a[0].n > UINT64_MAX - a[i].n)
      return sx_fail(x->env, SYNC_ELIMIT,
                     "folding a retired site's counter contribution would "
                     "pass 2^64 - 1");
    a[0].p += a[i].p;
    a[0].n += a[i].n;
  }
  *n = m;
  return 0;
}

SYNC_PRIVATE int sx_fold_take(sync_txn *x, const sync_delta *d,
                              int trusted) {
  sx_fold *f;
  size_t i, n, j;
  int rc, added;
  for (i = 0; i < d->nfold; i++)
    if (!memcmp(d->fold[i].site, x->self, SX_SITE_LEN))
      return sx_fail(x->env, SYNC_EHISTORY,
                     "a peer retired this replica's site id (its counter "
                     "contributions were folded into another replica's): "
                     "it must take a new one (sync_site_renew)");
  if ((rc = sx_folds(x, &f, &n))) return rc;
  for (i = 0; !trusted && i < d->nfold; i++) {
    const sx_dfold *g = &d->fold[i];
    for (j = sx_fold_first(f, n, g->site);
         j < n && !memcmp(f[j].site, g->site, SX_SITE_LEN); j++)
      if (!memcmp(f[j].heir, d->sites[g->heir], SX_SITE_LEN) &&
          f[j].hlc <= g->hlc)
        break;
    if (j == n || memcmp(f[j].site, g->site, SX_SITE_LEN))
      return sx_fail(x->env, SYNC_EPERM,
                     "a fold record this replica lacks, from a sender "
                     "without the relay right");
  }
  for (i = 0; i < d->nfold; i++)
    if ((rc = sx_fold_put(x, d->fold[i].site, d->sites[d->fold[i].heir],
                          d->fold[i].hlc, d->fold[i].held, &added)))
      return rc;
  return 0;
}

SYNC_PRIVATE int sx_fold_attach(sync_txn *x, sync_delta *d,
                                const uint64_t *rvv, const uint32_t *named) {
  sx_fold *f;
  size_t n, i, j, k;
  uint64_t *top;
  int rc;
  d->nfold = 0;
  if ((rc = sx_folds_mapped(x, &f, &n)) || !n) return rc;
  /* The newest contribution of each site in the chunk's cells. */
  top = (uint64_t *)sx_malloc(&x->env->al, sizeof(uint64_t) * x->nsites);
  if (!top) return SYNC_ENOMEM;
  memset(top, 0, sizeof(uint64_t) * x->nsites);
  for (j = 0; j < d->ncols; j++)
    if (d->cols[j].v.type == SX_TAG_COUNTER) {
      const sx_ctr *a = sx_dctr(d, d->cols[j].v.data);
      for (k = 0; k < d->cols[j].v.len; k++)
        if (a[k].site < x->nsites && a[k].hlc > top[a[k].site])
          top[a[k].site] = a[k].hlc;
    }
  for (i = 0; i < n; i++) {
    uint32_t h = f[i].lheir;
    if (h == SX_NONE || h >= x->nsites || (rvv && rvv[h] >= f[i].hlc))
      continue;
    if (top[h] < f[i].hlc && !(d->last && named && named[h] == 0)) continue;
    if (!d->fold) {
      d->fold = (sx_dfold *)sx_malloc(&d->al, n * sizeof(sx_dfold));
      if (!d->fold) {
        sx_free(&x->env->al, top);
        return SYNC_ENOMEM;
      }
    }
    memcpy(d->fold[d->nfold].site, f[i].site, SX_SITE_LEN);
    d->fold[d->nfold].heir = h;
    d->fold[d->nfold].hlc = f[i].hlc;
    d->fold[d->nfold].held = f[i].held;
    d->nfold++;
  }
  sx_free(&x->env->al, top);
  return 0;
}

static int sx_dfoldcmp(const void *p, const void *q) {
  const sx_dfold *a = (const sx_dfold *)p, *b = (const sx_dfold *)q;
  int c = memcmp(a->site, b->site, SX_SITE_LEN);
  return c ? c : a->heir < b->heir ? -1 : a->heir > b->heir;
}

SYNC_PRIVATE void sx_fold_sort(sync_delta *d) {
  if (d->nfold > 1) qsort(d->fold, d->nfold, sizeof *d->fold, sx_dfoldcmp);
}

#ifndef SYNC_OMIT_REPAIR
SYNC_PRIVATE int sx_fold_cap(sync_txn *x, uint64_t *vv) {
  sx_fold *f;
  size_t n, i;
  int rc;
  if ((rc = sx_folds_mapped(x, &f, &n))) return rc;
  for (i = 0; i < n; i++)
    if (f[i].lheir != SX_NONE && f[i].lheir < x->nsites &&
        vv[f[i].lheir] >= f[i].hlc)
      vv[f[i].lheir] = f[i].hlc - 1;
  return 0;
}
#endif

SYNC_PRIVATE int sx_delta_retires(const sync_delta *d, const uint8_t *site) {
  size_t i;
  for (i = 0; i < d->nfold; i++)
    if (!memcmp(d->fold[i].site, site, SX_SITE_LEN)) return 1;
  return 0;
}
