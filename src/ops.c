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
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != SX_SITE_LEN) {
      rc = sx_fail(env, SYNC_ECORRUPT, "peer record damaged");
      break;
    }
    if (cnt < cap) {
      sync_peer_info *p = &out[cnt];
      sx_peer pr;
      if ((rc = sx_peer_get(x, k.p, &pr))) {
        rc = sx_fail(env, rc, "peer record damaged");
        break;
      }
      memset(p, 0, sizeof *p);
      memcpy(p->site, k.p, SX_SITE_LEN);
      p->initial = pr.cur.mode == SX_MODE_INITIAL;
      p->partial = pr.tainted;
      p->version = pr.cur.version;
      p->seq = pr.cur.seq;
      p->v0 = pr.cur.v0;
      p->table = pr.cur.tid;
      p->acked_version = pr.acked_version;
      p->acked_seq = pr.acked_seq;
      p->scoped = (pr.scope.flags & SX_SCOPE_ON) != 0;
      p->filter_version = pr.scope.fver;
      memcpy(p->tables, pr.scope.tables,
             SX_TBYTES < SYNC_RIGHTS_BYTES ? SX_TBYTES : SYNC_RIGHTS_BYTES);
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
        if (sx_poscmp(ver, seq, out[i].acked_version, out[i].acked_seq) > 0)
          out[i].tombstones_pending++;
    }
    sx_cur_close(c);
    if (rc) return rc;
  }
  *n = cnt;
  return 0;
}
