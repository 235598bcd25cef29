/*
 * commit.c - committing a transaction: state, change log, table records,
 * then the callbacks.
 */
#include "commit.h"

/* Write the state record and the row counts and fingerprint sums this
 * transaction changed. */
static int sx_txn_finish(sync_txn *x) {
  sync_env *env = x->env;
  unsigned char state[24];
  unsigned i;
  int rc;
  uint64_t hlc = x->hlc_last;
  if (x->rh && (rc = sx_rh_finish(x))) return rc;
  if (x->stamped && x->hlc > hlc) hlc = x->hlc;
  if (x->hlc_seen > hlc) hlc = x->hlc_seen; /* the clock follows what it saw */
  sx_state_put(state, hlc, x->wrote ? x->version : x->base_version,
               x->schema_version);
  if ((rc = sx_put(env->st, x->t, env->meta, "state", 5, state, 24, 0)))
    return rc;
  if ((hlc > x->hlc_last || (x->wrote && x->stamped)) &&
      (rc = sx_epoch_note(x, hlc)))
    return rc;
  if ((rc = sx_log_flush(x))) return rc;
  if ((x->log_added || x->log_stale) && (rc = sx_log_finish(x))) return rc;
  for (i = 0; x->delta && i < env->schema->ntables; i++) {
    sx_tsum s;
    if (!x->delta[i] && !x->dsum[i][0] && !x->dsum[i][1] && !x->dsum[i][2])
      continue;
    if ((rc = sx_tsum_get(env, x->t, i, &s))) return rc;
    s.live += (uint64_t)x->delta[i];
    s.content += x->dsum[i][0];
    s.meta += x->dsum[i][1];
    s.rows += x->dsum[i][2];
    if ((rc = sx_tsum_put(env, x->t, i, &s))) return rc;
  }
  return 0;
}

/* After a commit: tell the application which rows changed and which
 * conflicts were recorded. */
static void sx_txn_notify(sync_txn *x) {
  sync_env *env = x->env;
  const unsigned char *p = x->changed.p, *end;
  if (!env->on_change || !p) p = NULL;
  end = p ? p + x->changed.len : NULL;
  while (p && p < end) {
    uint64_t tid, klen;
    size_t a = sx_get_varint(p, end, &tid), b;
    if (!a || !(b = sx_get_varint(p + a, end, &klen))) break;
    env->on_change(env->on_change_ctx, (unsigned)tid, p + a + b, (size_t)klen);
    p += a + b + klen;
  }
  if (env->notify_conflicts && x->conflicts.len) env->notify_conflicts(x);
}

SYNC_API int sync_txn_commit(sync_txn *x) {
  sync_env *env;
  int rc = 0, counted;
  uint64_t t0 = 0, rows;
  if (!x) return SYNC_EINVAL;
  env = x->env;
  counted = !x->rdonly && (x->wrote || x->dirty);
  rows = x->rows_written;
  if (counted) t0 = sx_now_ns();
  if (x->failed) {
    sync_txn_abort(x);
    return sx_fail(env, SYNC_ETXN, "transaction failed earlier: %s",
                   env->errmsg);
  }
  if (x->wrote || x->dirty) rc = sx_txn_finish(x);
  if (rc) {
    sync_txn_abort(x);
  } else {
    sx_txn_close_cursors(x);
    rc = x->group    ? sx_txn_commit_group(env->st, &x->gm, x->t)
         : x->rdonly ? sx_txn_commit_read(env->st, x->t)
                     : sx_txn_commit(env->st, x->t);
    if (!rc && counted) {
      uint64_t t1 = sx_now_ns();
      sx_stats_add(&env->stats, SX_ST_COMMITS, 1);
      sx_stats_add(&env->stats, SX_ST_ROWS_WRITTEN, rows);
      sx_stats_time(&env->stats, SX_H_COMMIT, t1 > t0 ? t1 - t0 : 0);
    }
    if (!rc) sx_txn_notify(x);
    sx_txn_free(x);
  }
  if (rc) return sx_fail(env, rc, "commit failed: %s", sync_strerror(rc));
  return 0;
}
