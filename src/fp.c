/*
 * fp.c - row fingerprints and the per-table records (live count and
 * fingerprint sums) kept at every commit.
 */
#include "fp.h"

/* A table's stored record: count and fingerprint sums ("n" + u16 BE id).
 * Absent means an empty table; any other size than SX_TSUM_LEN is
 * damage (records of formats 1 and 2 never reach this: open upgrades
 * them). */
static void sx_tsum_key(unsigned char *k, unsigned tid) {
  k[0] = 'n';
  k[1] = (unsigned char)(tid >> 8);
  k[2] = (unsigned char)tid;
}

SYNC_PRIVATE int sx_tsum_get(sync_env *env, sx_stxn *t, unsigned tid, sx_tsum *out) {
  unsigned char k[3];
  sx_slice v;
  int rc;
  memset(out, 0, sizeof *out);
  sx_tsum_key(k, tid);
  rc = sx_get(env->st, t, env->meta, k, 3, &v);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.n != SX_TSUM_LEN)
    return sx_fail(env, SYNC_ECORRUPT, "table '%s': row count record damaged",
                   env->schema->tables[tid].name);
  out->live = sx_get_le64(v.p);
  out->content = sx_get_le64(v.p + 8);
  out->meta = sx_get_le64(v.p + 16);
  out->rows = sx_get_le64(v.p + 24);
  return 0;
}

SYNC_PRIVATE int sx_tsum_put(sync_env *env, sx_stxn *t, unsigned tid,
                             const sx_tsum *s) {
  unsigned char k[3], v[SX_TSUM_LEN];
  sx_tsum_key(k, tid);
  sx_put_le64(v, s->live);
  sx_put_le64(v + 8, s->content);
  sx_put_le64(v + 16, s->meta);
  sx_put_le64(v + 24, s->rows);
  return sx_put(env->st, t, env->meta, k, 3, v, SX_TSUM_LEN, 0);
}

/* ---------------------------------------------------------------------
 * Fingerprints.  Both hashes run over a small buffer built per row:
 * content: var klen, key, then per replicated column j of the schema
 *          holding a non-NULL value: var j, u8 tag, payload;
 * meta:    var klen, key, var causal length, var hlc + 16-byte site of
 *          its stamp, then per replicated column j written: var j, var
 *          hlc + 16-byte site of its stamp, u8 tag, payload (a
 *          counter: its sum as a zig-zag varint in content; in meta the
 *          u64 LE sum of sx_ctr_hash over its contributions); for a
 *          tombstone (no content): var klen, key, var causal length,
 *          var hlc + 16-byte site of its stamp, under its own seed.
 * Base stamps and local versions are left out: they differ between
 * replicas that hold the same row.
 * ------------------------------------------------------------------- */
#define SX_FP_SEED_CONTENT UINT64_C(0x73796e632d633031) /* "sync-c01" */
#define SX_FP_SEED_META UINT64_C(0x73796e632d6d3031)    /* "sync-m01" */
#define SX_FP_SEED_TOMB UINT64_C(0x73796e632d743031)    /* "sync-t01" */
#define SX_FP_SEED_CTR UINT64_C(0x73796e632d6b3031)     /* "sync-k01" */


#ifndef SYNC_OMIT_REPAIR /* only range repair reads the meta hash */
SYNC_PRIVATE uint64_t sx_ctr_hash(const uint8_t *site, uint64_t p,
                                  uint64_t n, uint64_t hlc) {
  unsigned char b[SX_SITE_LEN + 3 * SX_VARINT_MAX], *q = b;
  memcpy(q, site, SX_SITE_LEN);
  q += SX_SITE_LEN;
  q = sx_wv(q, p);
  q = sx_wv(q, n);
  q = sx_wv(q, hlc);
  return sx_hash64(b, (size_t)(q - b), SX_FP_SEED_CTR);
}

/* The meta hash of stored counter cell v: the sum of its contributions'
 * (sx_ctr_hash), so that the order of local site indexes is left out. */
static int sx_ctr_meta(sync_txn *x, const sync_value *v, uint64_t *out) {
  sx_ctrwalk it;
  *out = 0;
  sx_ctr_walk(&it, v->data, v->len);
  while (sx_ctr_step(&it)) {
    if (it.c.site >= x->nsites) return SYNC_ECORRUPT;
    *out += sx_ctr_hash(x->sites[it.c.site], it.c.p, it.c.n, it.c.hlc);
  }
  return 0;
}
#endif

SYNC_PRIVATE int sx_row_fp(sync_txn *x, unsigned tid, const unsigned char *key,
                           size_t klen, const sx_row *r, uint64_t *content,
                           uint64_t *meta) {
  const sx_table *tb = &x->env->schema->tables[tid];
  unsigned char *p, *m;
  size_t need;
  unsigned j;
  int rc;
  *content = *meta = 0;
  if (!(r->cl & 1)) {
#ifndef SYNC_OMIT_REPAIR
    /* A tombstone: key, causal length and its stamp. */
    unsigned char b[3 * SX_VARINT_MAX + SYNC_MAX_KEY + SX_SITE_LEN];
    if ((rc = sx_sites_load(x))) return rc;
    if (r->stamps[r->cl_stamp].site >= x->nsites) return SYNC_ECORRUPT;
    p = sx_wv(b, klen);
    memcpy(p, key, klen);
    p += klen;
    p = sx_wv(p, r->cl);
    p = sx_wv(p, r->stamps[r->cl_stamp].hlc);
    memcpy(p, x->sites[r->stamps[r->cl_stamp].site], SX_SITE_LEN);
    p += SX_SITE_LEN;
    *meta = sx_hash64(b, (size_t)(p - b), SX_FP_SEED_TOMB);
#endif
    return 0;
  }
  if ((rc = sx_sites_load(x))) return rc;
  /* Our own buffer: the caller may hold the row being stored in x->enc.
   * A column's value goes in twice, once per encoding. */
  need = 2 * (SX_VARINT_MAX + klen) + 2 * SX_VARINT_MAX + SX_SITE_LEN;
  for (j = 0; j < r->ncols; j++)
    if (r->cols[j].st != SX_NOSTAMP)
      need += 5 * SX_VARINT_MAX + SX_SITE_LEN + 2 +
              2 * sx_payload_size(&r->cols[j].v);
  if ((rc = sx_buf_reserve(&x->fpbuf, need))) return rc;
  p = x->fpbuf.p;
  p = sx_wv(p, klen);
  memcpy(p, key, klen);
  p += klen;
  for (j = 0; j < tb->ncols && j < r->ncols; j++) {
    const sx_rcol *c = &r->cols[j];
    if (c->st == SX_NOSTAMP || c->v.type == SYNC_NULL) continue;
    if (tb->cols[j].flags & SYNC_COL_LOCAL) continue;
    p = sx_wv(p, j);
    *p++ = (unsigned char)c->v.type;
    if (c->v.type == SX_TAG_COUNTER)
      p = sx_wv(p, sx_zigzag(sx_rcol_value(c, SYNC_COUNTER).i));
    else
      p += sx_payload_put(p, &c->v);
  }
  *content = sx_hash64(x->fpbuf.p, (size_t)(p - x->fpbuf.p), SX_FP_SEED_CONTENT);
#ifndef SYNC_OMIT_REPAIR /* only range repair reads the meta hash */
  m = p;
  p = sx_wv(p, klen);
  memcpy(p, key, klen);
  p += klen;
  p = sx_wv(p, r->cl);
  p = sx_wv(p, r->stamps[r->cl_stamp].hlc);
  if (r->stamps[r->cl_stamp].site >= x->nsites) return SYNC_ECORRUPT;
  memcpy(p, x->sites[r->stamps[r->cl_stamp].site], SX_SITE_LEN);
  p += SX_SITE_LEN;
  for (j = 0; j < r->ncols; j++) {
    const sx_rcol *c = &r->cols[j];
    const sx_stamp *s;
    if (c->st == SX_NOSTAMP) continue;
    if (j < tb->ncols && (tb->cols[j].flags & SYNC_COL_LOCAL)) continue;
    s = &r->stamps[c->st];
    if (s->site >= x->nsites) return SYNC_ECORRUPT;
    p = sx_wv(p, j);
    p = sx_wv(p, s->hlc);
    memcpy(p, x->sites[s->site], SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = (unsigned char)c->v.type;
    if (c->v.type == SX_TAG_COUNTER) {
      /* Site indexes differ between replicas: the contributions count
       * by site id, in any order. */
      uint64_t h;
      if ((rc = sx_ctr_meta(x, &c->v, &h))) return rc;
      sx_put_le64(p, h);
      p += 8;
    } else {
      p += sx_payload_put(p, &c->v);
    }
  }
  *meta = sx_hash64(m, (size_t)(p - m), SX_FP_SEED_META);
#else
  m = p;
  (void)m;
#endif
  return 1;
}

SYNC_PRIVATE int sx_table_sum(sync_txn *x, unsigned tid, sx_tsum *out) {
  int rc;
  if ((rc = sx_tsum_get(x->env, x->t, tid, out))) return rc;
  if (x->delta) {
    out->live += (uint64_t)x->delta[tid];
    out->content += x->dsum[tid][0];
    out->meta += x->dsum[tid][1];
    out->rows += x->dsum[tid][2];
  }
  return 0;
}

SYNC_PRIVATE int sx_table_scan(sync_txn *x, unsigned tid, sx_tsum *out) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  uintptr_t page = 0;
  int rc, op = SX_FIRST;
  memset(out, 0, sizeof *out);
  if ((rc = sx_scratch(x))) return rc;
  if ((rc = sx_cur_open(env->st, x->t, env->tdbi[tid], &c))) return rc;
  k.p = NULL;
  k.n = 0;
  while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    uint64_t hc, hm;
    sx_walk_ahead(env->st, &page, v.p);
    if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &x->old))) break;
    if ((rc = sx_row_fp(x, tid, k.p, k.n, &x->old, &hc, &hm)) < 0) break;
    out->meta += hm;
    out->rows++;
    if (!(x->old.cl & 1)) continue;
    out->content += hc;
    out->live++;
  }
  sx_cur_close(c);
  return rc < 0 ? rc : 0;
}
