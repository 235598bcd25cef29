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

/* sx.folds (format 11): key 16-byte site id + 16-byte heir id, value
 * u64 LE hlc, u64 LE held; in key order, the order x->folds keeps. */
#define SX_FOLD_KEY (2 * SX_SITE_LEN)

static int sx_fold_bad(sync_env *env) {
  return sx_fail(env, SYNC_ECORRUPT, "malformed fold records");
}

SYNC_PRIVATE int sx_folds(sync_txn *x, sx_fold **out, size_t *n) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  size_t cap = 0, m = 0;
  int op = SX_FIRST, rc;
  *out = NULL;
  *n = 0;
  if (!x->folds_ok) {
    if ((rc = sx_cur_open(env->st, x->t, env->folds, &c))) return rc;
    while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
      sx_fold *f;
      if (k.n != SX_FOLD_KEY || v.n != 16 ||
          !memcmp(k.p, k.p + SX_SITE_LEN, SX_SITE_LEN) || !sx_get_le64(v.p)) {
        rc = sx_fold_bad(env);
        break;
      }
      if (m == cap) {
        size_t ncap = cap ? 2 * cap : 16;
        f = (sx_fold *)sx_realloc(&env->al, x->folds, ncap * sizeof *f);
        if (!f) {
          rc = SYNC_ENOMEM;
          break;
        }
        x->folds = f;
        cap = ncap;
      }
      f = &x->folds[m++];
      memcpy(f->site, k.p, SX_SITE_LEN);
      memcpy(f->heir, k.p + SX_SITE_LEN, SX_SITE_LEN);
      f->hlc = sx_get_le64(v.p);
      f->held = sx_get_le64(v.p + 8);
      f->lheir = SX_NONE;
    }
    sx_cur_close(c);
    if (rc < 0) {
      sx_free(&env->al, x->folds);
      x->folds = NULL;
      return rc;
    }
    x->nfolds = m;
    x->folds_map = 0;
    x->folds_ok = 1;
  }
  *out = x->folds;
  *n = x->nfolds;
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

static int sx_fold_write(sync_env *env, sx_stxn *t, const uint8_t *site,
                         const uint8_t *heir, uint64_t hlc, uint64_t held) {
  unsigned char k[SX_FOLD_KEY], v[16];
  memcpy(k, site, SX_SITE_LEN);
  memcpy(k + SX_SITE_LEN, heir, SX_SITE_LEN);
  sx_put_le64(v, hlc);
  sx_put_le64(v + 8, held);
  return sx_put(env->st, t, env->folds, k, sizeof k, v, sizeof v, 0);
}

SYNC_PRIVATE int sx_fold_put(sync_txn *x, const uint8_t *site,
                             const uint8_t *heir, uint64_t hlc,
                             uint64_t held, int *added) {
  sync_env *env = x->env;
  sx_fold *f, *nf;
  size_t n, lo;
  int rc;
  *added = 0;
  if ((rc = sx_folds(x, &f, &n))) return rc;
  /* The site's heirs are few: past them to heir's place. */
  for (lo = sx_fold_first(f, n, site);
       lo < n && sx_foldcmp(f[lo].site, f[lo].heir, site, heir) < 0;)
    lo++;
  if (lo < n && !sx_foldcmp(f[lo].site, f[lo].heir, site, heir)) {
    if (f[lo].hlc <= hlc) return 0;
    f[lo].hlc = hlc; /* the earlier fold holds as much */
    held = f[lo].held;
  } else {
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
  if ((rc = sx_fold_write(env, x->t, site, heir, hlc, held))) x->failed = 1;
  x->dirty = 1;
  return rc;
}

SYNC_PRIVATE int sx_fold_upgrade(sync_env *env, sx_stxn *t) {
  sx_slice v;
  unsigned char *b;
  size_t i, m;
  int rc = sx_get(env->st, t, env->meta, "folds", 5, &v);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.n % SX_FOLD_REC) return sx_fold_bad(env);
  /* v points into the tree the puts below change. */
  if (!(b = (unsigned char *)sx_malloc(&env->al, v.n ? v.n : 1)))
    return SYNC_ENOMEM;
  memcpy(b, v.p, v.n);
  m = v.n / SX_FOLD_REC;
  for (i = 0; !rc && i < m; i++) {
    const unsigned char *p = b + i * SX_FOLD_REC;
    if (!sx_get_le64(p + 32) || !memcmp(p, p + 16, SX_SITE_LEN))
      rc = sx_fold_bad(env);
    else
      rc = sx_fold_write(env, t, p, p + 16, sx_get_le64(p + 32),
                         sx_get_le64(p + 40));
  }
  sx_free(&env->al, b);
  return rc ? rc : sx_del(env->st, t, env->meta, "folds", 5);
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

/* Fold records waiting for a chunk: index into the records, and hlc. */
typedef struct sx_fcand {
  size_t i;
  uint64_t hlc;
} sx_fcand;

static int sx_fcand_cmp(const void *p, const void *q) {
  const sx_fcand *a = (const sx_fcand *)p, *b = (const sx_fcand *)q;
  return a->hlc < b->hlc ? -1 : a->hlc > b->hlc ? 1 : a->i < b->i ? -1 : a->i > b->i;
}

SYNC_PRIVATE int sx_fold_attach(sync_txn *x, sync_delta *d,
                                const uint64_t *rvv, const uint32_t *named,
                                uint64_t *vv) {
  sx_fold *f;
  sx_fcand *c = NULL;
  size_t n, i, j, k, must = 0, more = 0;
  uint64_t *top;
  int rc = 0;
  d->nfold = 0;
  if ((rc = sx_folds_mapped(x, &f, &n)) || !n) return rc;
  /* The newest contribution of each site in the chunk's cells. */
  top = (uint64_t *)sx_malloc(&x->env->al, sizeof(uint64_t) * x->nsites);
  c = (sx_fcand *)sx_malloc(&x->env->al, sizeof(sx_fcand) * n);
  if (!top || !c) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  memset(top, 0, sizeof(uint64_t) * x->nsites);
  for (j = 0; j < d->ncols; j++)
    if (d->cols[j].v.type == SX_TAG_COUNTER) {
      const sx_ctr *a = sx_dctr(d, d->cols[j].v.data);
      for (k = 0; k < d->cols[j].v.len; k++)
        if (a[k].site < x->nsites && a[k].hlc > top[a[k].site])
          top[a[k].site] = a[k].hlc;
    }
  /* Those the chunk's cells need first (c[0..must)), then those of the
   * heirs a run's last chunk names (c[must..must + more)). */
  for (i = 0; i < n; i++) {
    uint32_t h = f[i].lheir;
    if (h == SX_NONE || h >= x->nsites || (rvv && rvv[h] >= f[i].hlc))
      continue;
    if (top[h] >= f[i].hlc) {
      c[must + more] = c[must];
      c[must].i = i;
      c[must++].hlc = f[i].hlc;
    } else if (d->last && named && named[h] == 0) {
      c[must + more].i = i;
      c[must + more++].hlc = f[i].hlc;
    }
  }
  /* Of those the cells do not need, a chunk carries about SX_FOLD_MAX:
   * the oldest, and all of the same HLC as the last one taken.  The
   * vector entry it sends for the heir of each left out stays below it,
   * so that the requester's next run carries that one (every record of
   * the heir left out is newer than every one taken). */
  if (more > SX_FOLD_MAX) {
    size_t take = SX_FOLD_MAX;
    qsort(c + must, more, sizeof *c, sx_fcand_cmp);
    while (take < more && c[must + take].hlc == c[must + take - 1].hlc) take++;
    for (j = must + take; j < must + more; j++) {
      uint32_t h = f[c[j].i].lheir;
      if (vv && vv[h] >= c[j].hlc) vv[h] = c[j].hlc - 1;
    }
    more = take;
  }
  if (must + more) {
    d->fold = (sx_dfold *)sx_malloc(&d->al, (must + more) * sizeof(sx_dfold));
    if (!d->fold) {
      rc = SYNC_ENOMEM;
      goto done;
    }
  }
  for (j = 0; j < must + more; j++) {
    const sx_fold *g = &f[c[j].i];
    memcpy(d->fold[d->nfold].site, g->site, SX_SITE_LEN);
    d->fold[d->nfold].heir = g->lheir;
    d->fold[d->nfold].hlc = g->hlc;
    d->fold[d->nfold].held = g->held;
    d->nfold++;
  }
done:
  sx_free(&x->env->al, c);
  sx_free(&x->env->al, top);
  return rc;
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
