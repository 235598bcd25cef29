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
 * record reaches every replica the way changes do, with the last chunk
 * of a run.  A replica that learns it lowers its vector entry (and its
 * gcvv entry) for the id to that HLC and, when the entry was higher,
 * starts its runs again, so that its peers send it what it left out; a
 * vector it takes later is capped there too, whoever sends it.
 *
 * A fleet keeps every record for its whole life (one per restore of any
 * replica), so a record must not travel with every run.  Each replica
 * notes the clock it learned a record at, one above any clock it stood at
 * before, and moves its clock there (the witness).  A run's last chunk
 * carries the records witnessed above the requester's vector entry for
 * the sender: a requester whose entry for replica W is at or above a
 * witness of W's holds that record (or a lower one for the same id),
 * because its entry only rose to a vector W sent after learning it, with
 * the record, or to one a replica sent that held the record itself by the
 * same rule.  A converged fleet sends none; a new replica gets them all
 * with its first run (SX_RENEW_MAX per chunk: the vector entry sent for
 * the sender stops below the first left out, so the next run goes on
 * there).
 *
 * sx.renew (format 11):
 *   's' + 16-byte site id               -> u64 LE held, u64 LE witness
 *   'w' + u64 BE witness + site id      -> u64 LE held
 *   'n'                                 -> u64 LE records, u64 LE sum of
 *                                          their hashes (the set, for the
 *                                          quick check)
 * ------------------------------------------------------------------- */

#define SX_RN_SKEY (1 + SX_SITE_LEN)
#define SX_RN_WKEY (1 + 8 + SX_SITE_LEN)

static void sx_rn_skey(unsigned char *k, const uint8_t *site) {
  k[0] = 's';
  memcpy(k + 1, site, SX_SITE_LEN);
}

static void sx_rn_wkey(unsigned char *k, uint64_t wit, const uint8_t *site) {
  k[0] = 'w';
  sx_put_be64(k + 1, wit);
  memcpy(k + 9, site, SX_SITE_LEN);
}

/* A record's share of the set's sum. */
static uint64_t sx_rn_hash(const uint8_t *site, uint64_t held) {
  unsigned char b[SX_SITE_LEN + 8];
  memcpy(b, site, SX_SITE_LEN);
  sx_put_le64(b + SX_SITE_LEN, held);
  return sx_hash64(b, sizeof b, 0);
}

static int sx_rn_read(sync_env *env, sx_stxn *t, const uint8_t *site,
                      uint64_t *held, uint64_t *wit) {
  unsigned char k[SX_RN_SKEY];
  sx_slice v;
  int rc;
  sx_rn_skey(k, site);
  if ((rc = sx_get(env->st, t, env->renew, k, sizeof k, &v))) return rc;
  if (v.n != 16) return SYNC_ECORRUPT;
  *held = sx_get_le64(v.p);
  *wit = sx_get_le64(v.p + 8);
  return 0;
}

static int sx_rn_count(sync_env *env, sx_stxn *t, uint64_t *n, uint64_t *sum) {
  sx_slice v;
  int rc = sx_get(env->st, t, env->renew, "n", 1, &v);
  *n = *sum = 0;
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.n != 16) return SYNC_ECORRUPT;
  *n = sx_get_le64(v.p);
  *sum = sx_get_le64(v.p + 8);
  return 0;
}

/* Keep the record (site, held), witnessed at wit, in place of the one
 * the site had. */
static int sx_rn_write(sync_env *env, sx_stxn *t, const uint8_t *site,
                       uint64_t held, uint64_t wit) {
  unsigned char k[SX_RN_WKEY], v[16];
  uint64_t oheld, owit, n, sum;
  int rc = sx_rn_read(env, t, site, &oheld, &owit), had = rc == 0;
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if (had) {
    sx_rn_wkey(k, owit, site);
    if ((rc = sx_del(env->st, t, env->renew, k, SX_RN_WKEY))) return rc;
  }
  if ((rc = sx_rn_count(env, t, &n, &sum))) return rc;
  if (had) sum -= sx_rn_hash(site, oheld);
  else n++;
  sum += sx_rn_hash(site, held);
  sx_put_le64(v, held);
  sx_put_le64(v + 8, wit);
  sx_rn_skey(k, site);
  if ((rc = sx_put(env->st, t, env->renew, k, SX_RN_SKEY, v, 16, 0)))
    return rc;
  sx_rn_wkey(k, wit, site);
  if ((rc = sx_put(env->st, t, env->renew, k, SX_RN_WKEY, v, 8, 0)))
    return rc;
  sx_put_le64(v, n);
  sx_put_le64(v + 8, sum);
  return sx_put(env->st, t, env->renew, "n", 1, v, 16, 0);
}

/* The witness of the records x learns: one above every clock this
 * replica stood at before x, which x's commit moves the clock to. */
static uint64_t sx_renew_witness(sync_txn *x) {
  if (!x->renew_wit) {
    uint64_t h = x->hlc_last > x->hlc_seen ? x->hlc_last : x->hlc_seen;
    if (x->stamped && x->hlc > h) h = x->hlc;
    x->renew_wit = h + 1;
    x->hlc_seen = x->renew_wit;
  }
  return x->renew_wit;
}

SYNC_PRIVATE int sx_renew_get(sync_txn *x, const uint8_t *site, uint64_t *held) {
  uint64_t wit;
  return sx_rn_read(x->env, x->t, site, held, &wit);
}

SYNC_PRIVATE int sx_renew_cap(sync_txn *x, const uint8_t *site, uint64_t *h) {
  uint64_t held, n, sum;
  int rc;
  if (!*h) return 0;
  /* Most files keep none: one look a transaction, not one a site. */
  if (!x->renew_some) {
    if ((rc = sx_rn_count(x->env, x->t, &n, &sum))) return rc;
    x->renew_some = n ? 2 : 1;
  }
  if (x->renew_some == 1) return 0;
  rc = sx_renew_get(x, site, &held);
  if (rc == SYNC_NOTFOUND) return 0;
  if (!rc && *h > held) *h = held;
  return rc;
}

SYNC_PRIVATE int sx_renew_sum(sync_txn *x, uint64_t *n, uint64_t *sum) {
  return sx_rn_count(x->env, x->t, n, sum);
}

/* Format 10 and before kept the records in meta "renewed", as many as
 * 1024 (24 bytes each).  They move into sx.renew, witnessed at one above
 * the clock, which moves there; each site gets an index, which the
 * records' chunks name it by (through a transaction object borrowed
 * around the open's transaction t, for the site table). */
SYNC_PRIVATE int sx_renew_upgrade(sync_env *env, sx_stxn *t) {
  unsigned char state[24];
  sync_txn *x = sx_txn_new(env);
  sx_slice s;
  sx_buf b;
  uint64_t wit;
  size_t j;
  int rc;
  if (!x) return SYNC_ENOMEM;
  x->t = t;
  sx_buf_init(&b, &env->al);
  if ((rc = sx_meta_pairs(x, "renewed", SX_RENEW_MAX, &b)) || !b.len)
    goto done;
  if ((rc = sx_get(env->st, t, env->meta, "state", 5, &s)) ||
      (s.n != 24 && (rc = SYNC_ECORRUPT)))
    goto done;
  memcpy(state, s.p, 24);
  wit = sx_get_le64(state) + 1;
  sx_put_le64(state, wit);
  if ((rc = sx_put(env->st, t, env->meta, "state", 5, state, 24, 0)))
    goto done;
  for (j = 0; j < b.len && !rc; j += 24) {
    uint32_t idx;
    if (!(rc = sx_site_index(x, b.p + j, 1, &idx)))
      rc = sx_rn_write(env, t, b.p + j, sx_get_le64(b.p + j + 16), wit);
  }
  if (!rc) rc = sx_del(env->st, t, env->meta, "renewed", 7);
done:
  sx_buf_free(&b);
  sx_txn_free(x);
  return rc;
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
  uint64_t had;
  uint32_t idx;
  int rc;
  if (!memcmp(site, x->self, SX_SITE_LEN)) return 0;
  rc = sx_renew_get(x, site, &had);
  if (rc == 0 && had <= held) return 0; /* known */
  if (rc && rc != SYNC_NOTFOUND) return rc;
  /* The chunks that take the record on name the site by its index. */
  if ((rc = sx_site_index(x, site, 1, &idx))) return rc;
  if ((rc = sx_rn_write(env, x->t, site, held, sx_renew_witness(x)))) {
    x->failed = 1;
    return rc;
  }
  x->renew_some = 2;
  x->dirty = 1;
  if ((rc = sx_gcvv_cap(x, site, held))) return rc;
  if (idx == 0) return 0;
  sx_put_be32(kk, idx);
  rc = sx_get(env->st, x->t, env->vv, kk, 4, &old);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc || old.n != 8 || sx_get_le64(old.p) <= held) return rc;
  sx_put_le64(vb, held);
  rc = held ? sx_put(env->st, x->t, env->vv, kk, 4, vb, 8, 0)
            : sx_del(env->st, x->t, env->vv, kk, 4);
  if (rc) {
    x->failed = 1;
    return rc;
  }
  *lowered = 1;
  return 0;
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

SYNC_PRIVATE int sx_renew_attach(sync_txn *x, sync_delta *d, uint64_t own,
                                 uint64_t *rest) {
  sync_env *env = x->env;
  unsigned char k0[9];
  sx_scur *c;
  sx_slice k, v;
  sx_buf b;
  size_t j;
  int op = SX_SET_RANGE, rc;
  *rest = 0;
  if (own == UINT64_MAX) return 0;
  k0[0] = 'w';
  sx_put_be64(k0 + 1, own + 1);
  k.p = k0;
  k.n = sizeof k0;
  sx_buf_init(&b, &env->al);
  if ((rc = sx_cur_open(env->st, x->t, env->renew, &c))) return rc;
  while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    if (k.p[0] != 'w') break; /* past the witnesses */
    if (k.n != SX_RN_WKEY || v.n != 8) {
      rc = SYNC_ECORRUPT;
      break;
    }
    if (b.len / 24 == SX_RENEW_MAX) {
      *rest = sx_get_be64(k.p + 1);
      break;
    }
    if ((rc = sx_buf_reserve(&b, 24))) break; /* site id, HLC */
    memcpy(b.p + b.len, k.p + 9, SX_SITE_LEN);
    memcpy(b.p + b.len + SX_SITE_LEN, v.p, 8);
    b.len += 24;
  }
  sx_cur_close(c);
  if (rc > 0) rc = 0;
  if (!rc && b.len) {
    d->renew = (sx_renew *)sx_malloc(&d->al, b.len / 24 * sizeof(sx_renew));
    if (!d->renew) rc = SYNC_ENOMEM;
  }
  for (j = 0; !rc && j < b.len; j += 24) {
    uint32_t idx;
    /* Every record's site has an index (sx_renew_learn), but this
     * replica's own while a copy's renewal keeps the old id at 0. */
    rc = sx_site_index(x, b.p + j, 0, &idx);
    if (rc == SYNC_NOTFOUND) rc = SYNC_ECORRUPT;
    if (rc || idx == 0) continue;
    d->renew[d->nrenew].site = idx;
    d->renew[d->nrenew].held = sx_get_le64(b.p + j + SX_SITE_LEN);
    d->nrenew++;
  }
  sx_buf_free(&b);
  if (!rc && d->nrenew > 1)
    qsort(d->renew, d->nrenew, sizeof *d->renew, sx_renew_site_cmp);
  return rc;
}

SYNC_PRIVATE int sx_sender_vv(sync_txn *x, const sync_delta *d, uint64_t **out) {
  uint64_t *v;
  size_t i;
  int rc = 0;
  *out = NULL;
  v = (uint64_t *)sx_malloc(&x->env->al,
                            sizeof(uint64_t) * (d->nsites ? d->nsites : 1));
  if (!v) return SYNC_ENOMEM;
  for (i = 0; i < d->nsites && !rc; i++) {
    v[i] = i < d->nvv ? d->vv[i] : 0;
    rc = sx_renew_cap(x, d->sites[i], &v[i]);
  }
  if (rc) {
    sx_free(&x->env->al, v);
    return rc;
  }
  for (i = 0; i < d->nrenew; i++)
    if (v[d->renew[i].site] > d->renew[i].held)
      v[d->renew[i].site] = d->renew[i].held;
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
  sync_env *env;
  unsigned char k0[1] = {'s'};
  sx_scur *c;
  sx_slice k, v;
  size_t j = 0;
  int op = SX_SET_RANGE, rc;
  if (!x || !n || (cap && !out)) return SYNC_EINVAL;
  env = x->env;
  k.p = k0;
  k.n = 1;
  if ((rc = sx_cur_open(env->st, x->t, env->renew, &c))) return rc;
  while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    if (k.p[0] != 's') break;
    if (k.n != SX_RN_SKEY || v.n != 16) {
      rc = SYNC_ECORRUPT;
      break;
    }
    if (j < cap) {
      memcpy(out[j].site, k.p + 1, SX_SITE_LEN);
      out[j].hlc = sx_get_le64(v.p);
    }
    j++;
  }
  sx_cur_close(c);
  if (rc < 0) return rc;
  *n = j;
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
