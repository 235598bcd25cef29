/*
 * ops.c - calls for operating a replica: the env's stats and the list of
 * peers with what each holds and what it still keeps from collection.
 */
#include "merge.h"

SYNC_API int sync_env_stats(sync_env *env, sync_stats *out) {
  if (!env || !out) return SYNC_EINVAL;
  sx_stats_copy(&env->stats, out);
  return 0;
}

static int sx_poscmp2(uint64_t av, uint32_t as, uint64_t bv, uint32_t bs) {
  if (av != bv) return av < bv ? -1 : 1;
  return as < bs ? -1 : as > bs;
}

/* Peer record (docs/FORMAT.md): u8 mode, u64 version, u32 seq, u64 v0,
 * u32 table, u64 acked version, u32 acked seq, u16 klen, key. */
#define SX_OPS_PEER_FIXED 39

SYNC_API int sync_peers_get(sync_txn *x, sync_peer_info *out, size_t cap,
                            size_t *n) {
  sync_env *env;
  sx_scur *c;
  sx_slice k, v;
  size_t cnt = 0, i;
  int rc, op = SX_FIRST;
  if (!x || !n || (cap && !out)) return SYNC_EINVAL;
  *n = 0;
  env = x->env;
  if ((rc = sx_cur_open(env->st, x->t, env->peers, &c))) return rc;
  for (;; op = SX_NEXT) {
    size_t klen;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != SX_SITE_LEN || v.n < SX_OPS_PEER_FIXED) {
      rc = sx_fail(env, SYNC_ECORRUPT, "peer record damaged");
      break;
    }
    klen = (size_t)v.p[37] | ((size_t)v.p[38] << 8);
    if ((v.p[0] & 0x7f) > 1 || v.n != SX_OPS_PEER_FIXED + klen) {
      rc = sx_fail(env, SYNC_ECORRUPT, "peer record damaged");
      break;
    }
    if (cnt < cap) {
      sync_peer_info *p = &out[cnt];
      memset(p, 0, sizeof *p);
      memcpy(p->site, k.p, SX_SITE_LEN);
      p->initial = (v.p[0] & 0x7f) == 1;
      p->partial = v.p[0] >> 7;
      p->version = sx_get_le64(v.p + 1);
      p->seq = sx_get_le32(v.p + 9);
      p->v0 = sx_get_le64(v.p + 13);
      p->table = sx_get_le32(v.p + 21);
      p->acked_version = sx_get_le64(v.p + 25);
      p->acked_seq = sx_get_le32(v.p + 33);
    }
    cnt++;
  }
  sx_cur_close(c);
  if (rc) return rc;
  /* Tombstones each listed peer has not acknowledged: one walk of the
   * log, current entries of deleted rows only. */
  if (cap && cnt) {
    size_t m = cnt < cap ? cnt : cap;
    unsigned char lk[SX_LOGKEY];
    if ((rc = sx_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
    if ((rc = sx_cur_open(env->st, x->t, env->log, &c))) return rc;
    for (op = SX_FIRST;; op = SX_NEXT) {
      unsigned tid;
      sx_slice key;
      uint64_t ver;
      uint32_t seq;
      k.p = lk;
      k.n = SX_LOGKEY;
      rc = sx_cur_get(env->st, c, op, &k, &v);
      if (rc == SYNC_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc) break;
      rc = sx_log_current(x, &x->old, k.p, k.n, v.p, v.n, &tid, &key);
      if (rc == SYNC_NOTFOUND) continue;
      if (rc) break;
      if (x->old.cl & 1) continue; /* live */
      ver = sx_get_be64(k.p);
      seq = sx_get_be32(k.p + 8);
      for (i = 0; i < m; i++)
        if (sx_poscmp2(ver, seq, out[i].acked_version, out[i].acked_seq) > 0)
          out[i].tombstones_pending++;
    }
    sx_cur_close(c);
    if (rc) return rc;
  }
  *n = cnt;
  return 0;
}
