/*
 * peer.c - what a replica keeps of its peers: log positions and cursors,
 * peer records, the version vector, and requests.
 *
 * A receiver's position in a sender's log is a cursor (peer record,
 * stored by the receiver):
 *   log mode      (version, seq): every log entry up to it is held;
 *   initial mode  the sender streams its tables in key order; (table,
 *                 last key) says how far, v0 the sender's version when
 *                 the stream began.  When the stream ends the cursor
 *                 becomes (v0, max seq) in log mode, so whatever changed
 *                 during the stream follows from the log.
 * A chunk carries the cursor it starts from and the one it ends at.  The
 * receiver moves its cursor only when the chunk starts where it stands,
 * and raises its version vector to the sender's (sent with every chunk)
 * only when such a chunk is the last.  Everything else is plain merging,
 * which is commutative, associative and idempotent.
 *
 * Sender-side stores: sx.vv (site index u32 BE -> highest HLC held of
 * that site; this replica's own entry is the state HLC), sx.peers (site id
 * -> peer record), sx.conflicts (id u64 BE -> conflict record).
 */
#include "peer.h"

SYNC_PRIVATE int sx_bit(const unsigned char *set, unsigned i) {
  return (set[i >> 3] >> (i & 7)) & 1;
}

SYNC_PRIVATE int sx_stampcmp(uint64_t ha, const uint8_t *sa, uint64_t hb,
                             const uint8_t *sb) {
  if (ha != hb) return ha < hb ? -1 : 1;
  return memcmp(sa, sb, SX_SITE_LEN);
}

SYNC_PRIVATE int sx_poscmp(uint64_t va, uint32_t sa, uint64_t vb, uint32_t sb) {
  if (va != vb) return va < vb ? -1 : 1;
  return sa < sb ? -1 : sa > sb;
}

SYNC_PRIVATE int sx_cursor_eq(const sx_cursor *a, const sx_cursor *b) {
  if (a->mode != b->mode) return 0;
  if (a->mode == SX_MODE_LOG) return a->version == b->version && a->seq == b->seq;
  return a->v0 == b->v0 && a->tid == b->tid && a->klen == b->klen &&
         !memcmp(a->key, b->key, a->klen);
}

SYNC_PRIVATE int sx_cursor_covers(const sx_cursor *cur, const sx_cursor *p) {
  if (cur->mode == SX_MODE_LOG && p->mode == SX_MODE_LOG)
    return (cur->version || cur->seq) &&
           sx_poscmp(p->version, p->seq, cur->version, cur->seq) <= 0;
  if (cur->mode == SX_MODE_LOG && p->mode == SX_MODE_INITIAL)
    return (cur->version || cur->seq) && p->v0 <= cur->version;
  if (cur->mode == SX_MODE_INITIAL && p->mode == SX_MODE_INITIAL)
    return p->v0 == cur->v0 &&
           (p->tid < cur->tid ||
            (p->tid == cur->tid && p->klen &&
             sx_keycmp(p->key, p->klen, cur->key, cur->klen) <= 0));
  return 0;
}

/* Peer record: u8 mode, u64 version, u32 seq, u64 v0, u32 tid, u64
 * acked version, u32 acked seq, u16 klen, key.  All little-endian. */
#define SX_PEER_FIXED 39

SYNC_PRIVATE int sx_peer_get(sync_txn *x, const uint8_t *site, sx_peer *p) {
  sx_slice v;
  int rc;
  memset(p, 0, sizeof *p);
  rc = sx_get(x->env->st, x->t, x->env->peers, site, SX_SITE_LEN, &v);
  if (rc == SYNC_NOTFOUND) return SYNC_NOTFOUND;
  if (rc) return rc;
  if (v.n < SX_PEER_FIXED) return SYNC_ECORRUPT;
  p->cur.mode = v.p[0] & 0x3f;
  p->tainted = v.p[0] >> 7;
  p->stale = (v.p[0] >> 6) & 1;
  p->cur.version = sx_get_le64(v.p + 1);
  p->cur.seq = sx_get_le32(v.p + 9);
  p->cur.v0 = sx_get_le64(v.p + 13);
  p->cur.tid = sx_get_le32(v.p + 21);
  p->acked_version = sx_get_le64(v.p + 25);
  p->acked_seq = sx_get_le32(v.p + 33);
  p->cur.klen = (size_t)v.p[37] | ((size_t)v.p[38] << 8);
  if (p->cur.mode > SX_MODE_INITIAL || p->cur.klen > SYNC_MAX_KEY ||
      (v.n != SX_PEER_FIXED + p->cur.klen &&
       v.n < SX_PEER_FIXED + p->cur.klen + 16))
    return SYNC_ECORRUPT;
  memcpy(p->cur.key, v.p + SX_PEER_FIXED, p->cur.klen);
  if (v.n >= SX_PEER_FIXED + p->cur.klen + 16) {
    /* The mark, since storage format 2. */
    p->mark.id = sx_get_le64(v.p + SX_PEER_FIXED + p->cur.klen);
    p->mark.start = sx_get_le64(v.p + SX_PEER_FIXED + p->cur.klen + 8);
  }
  if (v.n > SX_PEER_FIXED + p->cur.klen + 16) {
    /* The scope the cursor was served with, since storage format 4, and
     * the mark's lineage, since format 6. */
    sx_rd r;
    r.p = v.p + SX_PEER_FIXED + p->cur.klen + 16;
    r.end = v.p + v.n;
    r.bad = 0;
    if (sx_rscope(&r, &p->scope) || r.bad ||
        (r.p != r.end && sx_rlineage(&r, &p->mark, &p->lineage)) ||
        r.bad || r.p != r.end)
      return SYNC_ECORRUPT;
  }
  return 0;
}

SYNC_PRIVATE uint64_t sx_cursor_version(const sx_cursor *c) {
  return c->mode == SX_MODE_LOG ? c->version : c->v0;
}

SYNC_PRIVATE int sx_peer_put(sync_txn *x, const uint8_t *site,
                             const sx_peer *p) {
  unsigned char b[SX_PEER_FIXED + SYNC_MAX_KEY + 16 + SX_SCOPE_MAX +
                  SX_LINEAGE_WMAX], *e;
  int rc;
  b[0] = (unsigned char)(p->cur.mode | (p->tainted ? 0x80 : 0) |
                         (p->stale ? 0x40 : 0));
  sx_put_le64(b + 1, p->cur.version);
  sx_put_le32(b + 9, p->cur.seq);
  sx_put_le64(b + 13, p->cur.v0);
  sx_put_le32(b + 21, p->cur.tid);
  sx_put_le64(b + 25, p->acked_version);
  sx_put_le32(b + 33, p->acked_seq);
  b[37] = (unsigned char)p->cur.klen;
  b[38] = (unsigned char)(p->cur.klen >> 8);
  memcpy(b + SX_PEER_FIXED, p->cur.key, p->cur.klen);
  sx_put_le64(b + SX_PEER_FIXED + p->cur.klen, p->mark.id);
  sx_put_le64(b + SX_PEER_FIXED + p->cur.klen + 8, p->mark.start);
  e = b + SX_PEER_FIXED + p->cur.klen + 16;
  if (p->scope.flags || p->lineage.n) e = sx_wscope(e, &p->scope);
  if (p->lineage.n) e = sx_wlineage(e, &p->lineage);
  rc = sx_put(x->env->st, x->t, x->env->peers, site, SX_SITE_LEN, b,
              (size_t)(e - b), 0);
  if (rc) x->failed = 1;
  return rc;
}

/* Call fn on every peer record, in site id order; stops at fn's first
 * nonzero return, which it returns. */
SYNC_PRIVATE int sx_peers_each(sync_txn *x,
                               int (*fn)(void *ctx, const uint8_t *site,
                                         const sx_peer *p),
                               void *ctx) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  int rc, ret = 0, op = SX_FIRST;
  if ((rc = sx_cur_open(env->st, x->t, env->peers, &c))) return rc;
  k.p = NULL;
  k.n = 0;
  while (!ret && (rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    sx_peer p;
    if (k.n != SX_SITE_LEN)
      ret = SYNC_ECORRUPT;
    else if (!(ret = sx_peer_get(x, k.p, &p)))
      ret = fn(ctx, k.p, &p);
  }
  sx_cur_close(c);
  return ret ? ret : rc < 0 ? rc : 0;
}

SYNC_PRIVATE int sx_vv_load(sync_txn *x, uint64_t **out) {
  sync_env *env = x->env;
  uint64_t *vv;
  sx_scur *c;
  sx_slice k, v;
  int rc, op = SX_FIRST;
  *out = NULL;
  if ((rc = sx_sites_load(x))) return rc;
  vv = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * x->nsites);
  if (!vv) return SYNC_ENOMEM;
  memset(vv, 0, sizeof(uint64_t) * x->nsites);
  if ((rc = sx_cur_open(env->st, x->t, env->vv, &c))) {
    sx_free(&env->al, vv);
    return rc;
  }
  for (;;) {
    uint32_t i;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != 4 || v.n != 8) {
      rc = SYNC_ECORRUPT;
      break;
    }
    i = sx_get_be32(k.p);
    if (i < x->nsites) vv[i] = sx_get_le64(v.p);
  }
  sx_cur_close(c);
  if (rc) {
    sx_free(&env->al, vv);
    return rc;
  }
  vv[0] = x->hlc_last;
  {
    /* Rows of ours that left our scope are gone: our own entry claims no
     * more than what we still hold (sx_vv_lower). */
    sx_slice f;
    rc = sx_get(env->st, x->t, env->meta, "xfloor", 6, &f);
    if (rc == 0 && f.n == 8 && sx_get_le64(f.p) < vv[0])
      vv[0] = sx_get_le64(f.p);
    if (rc && rc != SYNC_NOTFOUND) {
      sx_free(&env->al, vv);
      return rc;
    }
  }
  *out = vv;
  return 0;
}

/* ---------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------- */
SYNC_API int sync_request_make(sync_txn *x, const uint8_t sender[16],
                               sync_request **out) {
  sync_env *env;
  sync_request *r;
  sx_peer p;
  uint64_t *vv = NULL;
  uint32_t i;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || !sender) return SYNC_EINVAL;
  env = x->env;
  if (!memcmp(sender, x->self, SX_SITE_LEN)) return SYNC_EINVAL;
  rc = sx_peer_get(x, sender, &p);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if ((rc = sx_vv_load(x, &vv))) return rc;
  r = (sync_request *)sx_malloc(&env->al, sizeof *r);
  if (!r) {
    sx_free(&env->al, vv);
    return SYNC_ENOMEM;
  }
  memset(r, 0, sizeof *r);
  r->al = env->al;
  r->vv = (sync_stamp *)sx_malloc(&env->al, sizeof(sync_stamp) * x->nsites);
  if (!r->vv) {
    sx_free(&env->al, vv);
    sx_free(&env->al, r);
    return SYNC_ENOMEM;
  }
  for (i = 0; i < x->nsites; i++) {
    if (!vv[i]) continue;
    r->vv[r->nvv].hlc = vv[i];
    memcpy(r->vv[r->nvv].site, x->sites[i], SX_SITE_LEN);
    r->nvv++;
  }
  sx_free(&env->al, vv);
  memcpy(r->requester, x->self, SX_SITE_LEN);
  memcpy(r->sender, sender, SX_SITE_LEN);
  r->schema_hash = env->schema->hash;
  r->cur = p.cur;
  r->mark = p.mark;
  r->lineage = p.lineage;
  r->scope = p.scope;
  *out = r;
  return 0;
}

SYNC_API void sync_request_free(sync_request *r) {
  sx_alloc al;
  if (!r) return;
  al = r->al;
  sx_free(&al, r->vv);
  sx_free(&al, r);
}

SYNC_PRIVATE int sx_claim_own(sync_txn *x, uint64_t hlc, uint64_t *held) {
  int rc;
  *held = UINT64_MAX;
  rc = sx_hist_foreign(x, hlc, x->hlc_last, 1, held);
  if (rc <= 0) {
    *held = UINT64_MAX;
    return rc;
  }
  return sx_fail(x->env, SYNC_EHISTORY,
                 "a peer claims writes of this replica's site id up to a "
                 "clock its file never stood at (%016llx): it was "
                 "restored from a backup or copied",
                 (unsigned long long)hlc);
}

SYNC_PRIVATE int sx_claim_check(sync_txn *x, const sync_request *req,
                                uint64_t *held) {
  size_t i;
  *held = UINT64_MAX;
  for (i = 0; i < req->nvv; i++)
    if (!memcmp(req->vv[i].site, x->self, SX_SITE_LEN))
      return sx_claim_own(x, req->vv[i].hlc, held);
  return 0;
}

SYNC_API int sync_request_ack(sync_txn *x, const sync_request *r) {
  sx_peer p;
  uint64_t held;
  int rc;
  if (!x || !r || memcmp(r->sender, x->self, SX_SITE_LEN) ||
      !memcmp(r->requester, x->self, SX_SITE_LEN))
    return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  /* A position that is not in our history acknowledges nothing of it
   * (tombstone collection would trust it). */
  if ((rc = sx_history_check(x, sx_cursor_version(&r->cur), &r->mark)) ||
      (rc = sx_claim_check(x, r, &held)))
    return rc;
  rc = sx_peer_get(x, r->requester, &p);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  /* Only log mode positions acknowledge log entries; an initial stream
   * in progress acknowledges nothing yet. */
  if (r->cur.mode == SX_MODE_LOG &&
      sx_poscmp(r->cur.version, r->cur.seq, p.acked_version, p.acked_seq) > 0) {
    p.acked_version = r->cur.version;
    p.acked_seq = r->cur.seq;
  }
  return sx_peer_put(x, r->requester, &p);
}

SYNC_PRIVATE int sx_peer_advance(sync_txn *x, const uint8_t *site,
                                 const sx_cursor *start, const sx_cursor *end,
                                 const sx_mark *mark,
                                 const sx_lineage *lin, int last) {
  sx_peer peer;
  int rc = sx_peer_get(x, site, &peer);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if (rc == SYNC_NOTFOUND) memset(&peer, 0, sizeof peer);
  if (!sx_cursor_eq(&peer.cur, start)) return 0; /* another run moved it */
  peer.tainted = 1; /* rows were refused: the vector stays */
  peer.cur = *end;
  sx_mark_move(&peer.mark, &peer.lineage, mark, lin);
  if (last) peer.stale = 0;
  return sx_peer_put(x, site, &peer);
}

SYNC_PRIVATE void sx_mark_move(sx_mark *pm, sx_lineage *pl, const sx_mark *m,
                               const sx_lineage *l) {
  if (l->n || pm->id != m->id || pm->start != m->start) *pl = *l;
  *pm = *m;
}

SYNC_API int sync_peer_reset(sync_txn *x, const uint8_t peer[16]) {
  sx_peer p;
  int rc;
  if (!x || !peer || !memcmp(peer, x->self, SX_SITE_LEN))
    return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  rc = sx_peer_get(x, peer, &p);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  memset(&p.cur, 0, sizeof p.cur);
  memset(&p.mark, 0, sizeof p.mark);
  memset(&p.lineage, 0, sizeof p.lineage);
  return sx_peer_put(x, peer, &p);
}

SYNC_PRIVATE int sx_peer_set_stale(sync_txn *x, const uint8_t *site) {
  sx_peer p;
  int rc = sx_peer_get(x, site, &p);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  p.stale = 1;
  return sx_peer_put(x, site, &p);
}

/* ---------------------------------------------------------------------
 * Version vector
 * ------------------------------------------------------------------- */
SYNC_API int sync_vv_get(sync_txn *x, sync_stamp *out, size_t cap,
                         size_t *n) {
  uint64_t *vv;
  uint32_t i;
  size_t k = 0;
  int rc;
  if (!x || !n || (cap && !out)) return SYNC_EINVAL;
  if ((rc = sx_vv_load(x, &vv))) return rc;
  for (i = 0; i < x->nsites; i++) {
    if (!vv[i]) continue;
    if (k < cap) {
      out[k].hlc = vv[i];
      memcpy(out[k].site, x->sites[i], SX_SITE_LEN);
    }
    k++;
  }
  sx_free(&x->env->al, vv);
  *n = k;
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
    sx_logit it;
    const sx_lent *e = &it.e;
    if ((rc = sx_read_scratch(x)) || (rc = sx_txn_tables(x))) return rc;
    if ((rc = sx_logit_open(x, &it))) return rc;
    while ((rc = sx_logit_next(&it)) == 0) {
      rc = sx_log_current(x, &x->rd, e);
      if (rc == SYNC_NOTFOUND) continue;
      if (rc) break;
      if (x->rd.cl & 1) continue; /* live */
      for (i = 0; i < m; i++)
        if (sx_poscmp(e->version, e->seq, out[i].acked_version,
                      out[i].acked_seq) > 0)
          out[i].tombstones_pending++;
    }
    (void)sx_logit_close(&it); /* read only: writes nothing */
    if (rc == SYNC_NOTFOUND) rc = 0;
    if (rc) return rc;
  }
  *n = cnt;
  return 0;
}
