/*
 * session_repair.c - range repair inside a session: the two sides
 * alternate turns (repair.c computes them), each a REPAIR message and,
 * when it carries rows, one DATA frame after it; at the end, what the
 * peer collected and where its log continues are recorded.
 */
#include "session.h"

#include <stdio.h>

#ifndef SYNC_OMIT_REPAIR
/* The roots were equal over every table: this replica holds what the
 * peer held, and now claims what the peer claimed, as at the end of a
 * complete stream.  A claim on our own id that our history never made
 * shows a restore: take a new site id instead. */
static int sx_repair_take_vv(sync_session *s, const sx_rp_stats *rs) {
  char why[sizeof s->errmsg];
  uint64_t held;
  sync_txn *x;
  int rc = sync_txn_begin(s->env, 0, &x);
  if (rc)
    return sx_sess_fail(s, rc, "cannot write this replica: %s",
                        sync_strerror(rc));
  rc = sx_vv_take(x, rs->pvv, rs->npvv, &held);
  if (rc == SYNC_EHISTORY) {
    snprintf(why, sizeof why, "%s", sync_env_errmsg(s->env));
    rc = sx_site_renew_held(x, held == UINT64_MAX ? 0 : held);
    return sx_sess_renewed(s, x, rc, why);
  }
  if (rc) {
    sync_txn_abort(x);
    return sx_sess_fail(s, rc, "taking the peer's version vector: %s",
                        sync_strerror(rc));
  }
  if ((rc = sync_txn_commit(x)))
    return sx_sess_fail(s, rc, "taking the peer's version vector: %s",
                        sync_strerror(rc));
  return 0;
}

static int sx_repair_done(sync_session *s) {
  const sx_rp_stats *rs = sx_rp_stats_of(s->rp);
  s->st.repair_equal = rs->equal;
  if (!s->dry && rs->nt) {
    /* New rows start above what the peer collected: a key written here
     * again beats the tombstones other replicas still keep of it. */
    unsigned nt = s->env->schema->ntables, i;
    uint64_t *maxcl =
        (uint64_t *)sx_malloc(&s->al, sizeof(uint64_t) * (nt ? nt : 1));
    sync_txn *x;
    int rc = maxcl ? 0 : SYNC_ENOMEM, any = 0;
    if (maxcl) memset(maxcl, 0, sizeof(uint64_t) * (nt ? nt : 1));
    for (i = 0; !rc && i < rs->nt; i++)
      if (rs->tid[i] < nt && rs->gccl[i]) {
        maxcl[rs->tid[i]] = rs->gccl[i];
        any = 1;
      }
    if (!rc && any && !(rc = sync_txn_begin(s->env, 0, &x))) {
      rc = sx_gccl_raise(x, maxcl);
      if (rc)
        sync_txn_abort(x);
      else
        rc = sync_txn_commit(x);
    }
    sx_free(&s->al, maxcl);
    if (rc)
      return sx_sess_fail(s, rc, "recording what the peer collected: %s",
                          sync_strerror(rc));
  }
  if (!s->dry && rs->take_vv) {
    int rc = sx_repair_take_vv(s, rs);
    if (rc) return rc;
  }
  if (!s->o.server && !s->dry && rs->equal && rs->have_v0) {
    /* Everything the server held at the start is here now: its log
     * continues from there (the vector stays as it is). */
    sync_txn *x;
    sx_peer p;
    int rc = sync_txn_begin(s->env, 0, &x);
    if (!rc) {
      rc = sx_peer_get(x, s->peer, &p);
      if (rc == SYNC_NOTFOUND) {
        memset(&p, 0, sizeof p);
        rc = 0;
      }
      if (!rc &&
          (p.cur.mode != SX_MODE_LOG ||
           sx_poscmp(p.cur.version, p.cur.seq, rs->v0, UINT32_MAX) < 0)) {
        memset(&p.cur, 0, sizeof p.cur);
        p.cur.mode = SX_MODE_LOG;
        p.cur.version = rs->v0;
        p.cur.seq = UINT32_MAX;
        /* The server's mark there is not known: none, until the next
         * chunk brings one. */
        memset(&p.mark, 0, sizeof p.mark);
        memset(&p.lineage, 0, sizeof p.lineage);
        /* It holds the repaired tables as an unfiltered stream would
         * have left them: that scope (and, as held, whatever it may
         * still hold of the scope before, for a server that filters). */
        {
          sx_scope sc;
          unsigned t, i;
          memset(&sc, 0, sizeof sc);
          sc.flags = SX_SCOPE_ON;
          for (t = 0; t < s->env->schema->ntables && t < 8 * SX_TBYTES; t++)
            if ((s->recv_mask[t >> 3] >> (t & 7)) & 1)
              sc.tables[t >> 3] |= (unsigned char)(1u << (t & 7));
          for (i = 0; i < SX_TBYTES; i++)
            sc.held[i] = (unsigned char)(sc.tables[i] |
                                         (p.scope.flags ? p.scope.held[i] |
                                                              p.scope.tables[i]
                                                        : 0));
          p.scope = sc;
        }
        rc = sx_peer_put(x, s->peer, &p);
      }
      if (rc)
        sync_txn_abort(x);
      else
        rc = sync_txn_commit(x);
    }
    if (rc)
      return sx_sess_fail(s, rc, "recording the repair's position: %s",
                          sync_strerror(rc));
  }
  s->state = SX_ST_END;
  return 0;
}

static void sx_repair_stats(sync_session *s) {
  const sx_rp_stats *rs = sx_rp_stats_of(s->rp);
  s->st.repair_turns = rs->turns;
  s->st.repair_nodes = rs->nodes;
  s->st.repair_rows = rs->rows;
  s->st.repair_passes = rs->passes;
  s->st.applied = rs->applied;
}

/* This side's turn. */
static int sx_repair_turn(sync_session *s, int first) {
  const unsigned char *m;
  size_t n;
  sync_delta *d = NULL;
  int rc = sx_rp_turn(s->rp, first, &m, &n, &d);
  if (rc)
    return sx_sess_fail(s, rc, "%s (%s)", sx_rp_errmsg(s->rp),
                        sync_env_errmsg(s->env));
  if ((rc = sx_msg_put(s, SX_M_REPAIR, m, n))) {
    sync_delta_free(d);
    return sx_sess_fail(s, rc, "out of memory");
  }
  if (d) {
    rc = sx_frame_start(s, d);
    sync_delta_free(d);
    if (rc) return sx_sess_fail(s, rc, "a repair frame: %s", sync_strerror(rc));
  }
  sx_repair_stats(s);
  sx_progress(s);
  if (sx_rp_stats_of(s->rp)->done) return sx_repair_done(s);
  s->state = SX_ST_REPAIR;
  return 0;
}

SYNC_PRIVATE int sx_repair_start(sync_session *s) {
  sx_rp_opts ro;
  int rc;
  memset(&ro, 0, sizeof ro);
  ro.tables = s->o.server ? s->send_mask : s->recv_mask;
  ro.writable = s->recv_mask;
  ro.relay = s->relay;
  ro.max_ahead_ms = s->o.max_ahead_ms;
  if (s->o.server) {
    ro.check = s->o.check_write;
    ro.check_ctx = s->o.check_write_ctx;
  }
  ro.dry = s->dry;
  ro.budget = s->o.chunk_rows;
  ro.max_bytes = s->o.chunk_bytes;
  ro.peer = s->peer;
  ro.server = s->o.server;
  ro.on_diff = s->o.server ? NULL : s->o.on_diff;
  ro.on_diff_ctx = s->o.on_diff_ctx;
  /* Equal roots prove equal rows everywhere only when both hold the same
   * tables and every one of them is repaired. */
  ro.vec = !s->dry && s->peer_hash == s->env->schema->hash;
  {
    unsigned t;
    for (t = 0; t < s->env->schema->ntables; t++)
      if (!((ro.tables[t >> 3] >> (t & 7)) & 1)) ro.vec = 0;
  }
  if ((rc = sx_rp_new(s->env, &ro, &s->rp)))
    return sx_sess_fail(s, rc, "out of memory");
  s->state = SX_ST_REPAIR;
  if (s->o.server) return sx_repair_turn(s, 1);
  return 0;
}

SYNC_PRIVATE int sx_on_repair(sync_session *s, const unsigned char *b,
                              size_t n) {
  int frame = 0, rc = sx_rp_on_turn(s->rp, b, n, &frame);
  if (rc) return sx_sess_fail(s, rc, "%s", sx_rp_errmsg(s->rp));
  sx_repair_stats(s);
  if (sx_rp_stats_of(s->rp)->done) return sx_repair_done(s);
  if (frame) {
    s->rp_frame = 1;
    return 0;
  }
  return sx_repair_turn(s, 0);
}

SYNC_PRIVATE int sx_on_repair_delta(sync_session *s, sync_delta *d) {
  int rc;
  s->rp_frame = 0;
  if (memcmp(d->sender, s->peer, SX_SITE_LEN)) {
    sync_delta_free(d);
    return sx_sess_fail(s, SYNC_EPROTO, "a chunk from another sender");
  }
  s->st.frames_received++;
  s->st.rows_received += sync_delta_rows(d);
  if ((rc = sx_rp_on_frame(s->rp, d)))
    return sx_sess_fail(s, rc, "%s", sx_rp_errmsg(s->rp));
  return sx_repair_turn(s, 0);
}
#else
SYNC_PRIVATE int sx_repair_start(sync_session *s) {
  return sx_sess_fail(s, SYNC_ENOTSUP, "this build has no repair");
}

SYNC_PRIVATE int sx_on_repair(sync_session *s, const unsigned char *b,
                              size_t n) {
  (void)b;
  (void)n;
  return sx_sess_fail(s, SYNC_ENOTSUP, "this build has no repair");
}

SYNC_PRIVATE int sx_on_repair_delta(sync_session *s, sync_delta *d) {
  sync_delta_free(d);
  return sx_sess_fail(s, SYNC_ENOTSUP, "this build has no repair");
}
#endif
