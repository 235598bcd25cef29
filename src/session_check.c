/*
 * session_check.c - the quick check (docs/PROTOCOL.md, "Quick check").
 * A client that synced with a server before, and has nothing of its own
 * to send it, asks in one short message (CHECK) whether anything changed
 * since; the server answers in one byte (CHECKED), and only when
 * something did does the full handshake follow.  Each side hashes what
 * it holds of the other (cursors, history marks, the scope, the schema,
 * the renewal records) in the same layout, so that equal hashes mean
 * that the two agree on where they stand; the server then cuts the chunk
 * the client would ask for, crediting the client with its own writes
 * only, and answers "unchanged" when that chunk is empty.  Every doubt
 * answers "changed": the check can cost a round trip, never a row.
 */
#include "session.h"

#include "hash.h"

#define SX_CK_MODE 0x3u /* CHECK flags: the session's mode */
#define SX_CK_ALL 0x4u  /* the client selects every table */

/* What one side holds of the other, as both hash it. */
typedef struct sx_ck {
  uint8_t client[SX_SITE_LEN], server[SX_SITE_LEN];
  uint64_t schema_hash;
  unsigned mode;
  uint64_t pv, pmark, pstart; /* pull: the client's cursor in the */
  uint32_t ps;                /* server's log and the server's mark there */
  sx_scope scope;             /* pull: the scope it was served with */
  uint64_t av, amark, astart; /* push: the server's cursor in the */
  uint32_t as;                /* client's log and the client's mark there */
  uint64_t renewed;           /* the renewal records, as a set */
} sx_ck;

static uint64_t sx_ck_tag(const sx_ck *k) {
  unsigned char b[2 * SX_SITE_LEN + 8 + 1 + 2 * (8 + 4 + 16) + 1 + 8 +
                  2 * SX_TBYTES + 8],
      *p = b;
  memcpy(p, k->client, SX_SITE_LEN);
  memcpy(p + SX_SITE_LEN, k->server, SX_SITE_LEN);
  p += 2 * SX_SITE_LEN;
  sx_put_le64(p, k->schema_hash);
  p[8] = (unsigned char)k->mode;
  p += 9;
  if (k->mode & SYNC_PULL) {
    sx_put_le64(p, k->pv);
    sx_put_le32(p + 8, k->ps);
    sx_put_le64(p + 12, k->pmark);
    sx_put_le64(p + 20, k->pstart);
    p[28] = (unsigned char)(k->scope.flags & (SX_SCOPE_ON | SX_SCOPE_FILTER));
    sx_put_le64(p + 29, k->scope.fver);
    memcpy(p + 37, k->scope.tables, SX_TBYTES);
    memcpy(p + 37 + SX_TBYTES, k->scope.held, SX_TBYTES);
    p += 37 + 2 * SX_TBYTES;
  }
  if (k->mode & SYNC_PUSH) {
    sx_put_le64(p, k->av);
    sx_put_le32(p + 8, k->as);
    sx_put_le64(p + 12, k->amark);
    sx_put_le64(p + 20, k->astart);
    p += 28;
  }
  sx_put_le64(p, k->renewed);
  p += 8;
  return sx_hash64(b, (size_t)(p - b), 0);
}

/* Would a chunk cut for requester from position (v, s) of this replica's
 * log (mark m there), crediting the requester with every write of its own and nothing
 * else, be empty?  *quiet 1 when it would hold no row and no exit and
 * end the run; anything the cut refuses (a stale position, another
 * history) is not quiet either, and the full session says why. */
static int sx_ck_quiet(sync_txn *x, const uint8_t *requester, uint64_t v,
                       uint32_t s, const sx_mark *m, const sx_scope *scope,
                       const sync_delta_opts *o, int *quiet) {
  sync_request req;
  sync_stamp own;
  sync_delta *d = NULL;
  int rc;
  *quiet = 0;
  memset(&req, 0, sizeof req);
  req.al = x->env->al;
  memcpy(req.requester, requester, SX_SITE_LEN);
  memcpy(req.sender, x->self, SX_SITE_LEN);
  req.schema_hash = x->env->schema->hash;
  req.cur.mode = SX_MODE_LOG;
  req.cur.version = v;
  req.cur.seq = s;
  req.mark = *m;
  if (scope) req.scope = *scope;
  memcpy(own.site, requester, SX_SITE_LEN);
  own.hlc = UINT64_MAX;
  req.vv = &own;
  req.nvv = 1;
  rc = sync_delta_make(x, &req, o, &d);
  if (rc == 0) {
    *quiet = d->last && d->nrows == 0 && d->nx == 0;
    sync_delta_free(d);
  } else if (rc != SYNC_ENOMEM && rc != SYNC_EIO && rc != SYNC_ECORRUPT) {
    rc = 0;
  }
  return rc;
}

/* The selected tables as CHECK carries them: n + n bytes, trailing zero
 * bytes left out. */
static size_t sx_ck_sel_len(const unsigned char *sel) {
  size_t n = SX_TBYTES;
  while (n && !sel[n - 1]) n--;
  return n;
}

/* ---------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------- */

/* Fill k from this client's records of the server it last synced with;
 * *ok 0 when there is nothing to check against, or this side has
 * changes to send. */
static int sx_ck_client(sync_session *s, sync_txn *x, sx_ck *k, int *ok) {
  sx_peer p;
  sx_slice v;
  sx_mark m;
  uint64_t nrenew;
  int rc;
  *ok = 0;
  memset(k, 0, sizeof *k);
  rc = sx_get(s->env->st, x->t, s->env->meta, "server", 6, &v);
  if (rc == SYNC_NOTFOUND || (rc == 0 && v.n != SX_SITE_LEN)) return 0;
  if (rc) return rc;
  memcpy(k->server, v.p, SX_SITE_LEN);
  rc = sx_peer_get(x, k->server, &p);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  memcpy(k->client, s->self, SX_SITE_LEN);
  k->schema_hash = s->env->schema->hash;
  k->mode = (unsigned)s->mode;
  if (s->mode & SYNC_PULL) {
    if (p.cur.mode != SX_MODE_LOG || (!p.cur.version && !p.cur.seq) ||
        p.stale)
      return 0;
    k->pv = p.cur.version;
    k->ps = p.cur.seq;
    k->pmark = p.mark.id;
    k->pstart = p.mark.start;
    k->scope = p.scope;
  }
  if (s->mode & SYNC_PUSH) {
    sync_delta_opts o;
    int quiet;
    if (!p.acked_version && !p.acked_seq) return 0;
    if ((rc = sx_mark_of(x, p.acked_version, &m))) return rc;
    memset(&o, 0, sizeof o);
    o.max_rows = 1; /* one row is enough to say no */
    o.tables = s->o.tables;
    o.filter = s->o.filter;
    o.filter_ctx = s->o.filter_ctx;
    rc = sx_ck_quiet(x, k->server, p.acked_version, p.acked_seq, &m, NULL, &o,
                     &quiet);
    if (rc || !quiet) return rc;
    k->av = p.acked_version;
    k->as = p.acked_seq;
    k->amark = m.id;
    k->astart = m.start;
  }
  if ((rc = sx_renew_sum(x, &nrenew, &k->renewed))) return rc;
  *ok = 1;
  return 0;
}

SYNC_PRIVATE int sx_client_start(sync_session *s) {
  unsigned char b[2 + SX_SITE_LEN + 1 + SX_VARINT_MAX + SX_TBYTES +
                  SX_VARINT_MAX + SX_CRED_MAX + 8],
      *p = b;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  sync_txn *x;
  sx_ck k;
  int rc, ok = 0;
  s->state = SX_ST_WELCOME;
  if (s->o.no_check || s->dry || s->repair) return sx_send_hello(s);
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x))) return rc;
  rc = sx_ck_client(s, x, &k, &ok);
  sync_txn_abort(x);
  if (rc) return rc;
  if (!ok) return sx_send_hello(s);
  memset(sel, 0xff, sizeof sel);
  if (s->o.tables) {
    size_t i;
    for (i = 0; i < SYNC_RIGHTS_BYTES; i++) sel[i] &= s->o.tables[i];
  }
  *p++ = SX_PROTO;
  memcpy(p, s->self, SX_SITE_LEN);
  p += SX_SITE_LEN;
  if (!s->o.tables) {
    *p++ = (unsigned char)(s->mode | SX_CK_ALL);
  } else {
    size_t n = sx_ck_sel_len(sel);
    *p++ = (unsigned char)s->mode;
    p = sx_wv(p, n);
    memcpy(p, sel, n);
    p += n;
  }
  p = sx_wv(p, s->o.credential_len);
  if (s->o.credential_len) memcpy(p, s->o.credential, s->o.credential_len);
  p += s->o.credential_len;
  sx_put_le64(p, sx_ck_tag(&k));
  p += 8;
  memcpy(s->peer, k.server, SX_SITE_LEN);
  s->state = SX_ST_CHECK;
  return sx_msg_put(s, SX_M_CHECK, b, (size_t)(p - b));
}

SYNC_PRIVATE int sx_on_checked(sync_session *s, const unsigned char *b,
                               size_t n) {
  if (n != 1 || b[0] > 1)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed CHECKED");
  if (b[0] == 0) {
    /* Nothing changed on either side: the session is done. */
    s->have_peer = 1;
    s->st.unchanged = 1;
    s->state = SX_ST_END;
    return 0;
  }
  s->state = SX_ST_WELCOME;
  return sx_send_hello(s);
}

/* Record the server a client syncs with (meta "server"), in one of the
 * client's write transactions of the session, when it is another. */
SYNC_PRIVATE int sx_note_server(sync_session *s, sync_txn *x) {
  sx_slice v;
  int rc;
  if (s->o.server || s->noted || !s->have_peer) return 0;
  rc = sx_get(s->env->st, x->t, s->env->meta, "server", 6, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  if (rc || v.n != SX_SITE_LEN || memcmp(v.p, s->peer, SX_SITE_LEN)) {
    rc = sx_put(s->env->st, x->t, s->env->meta, "server", 6, s->peer,
                SX_SITE_LEN, 0);
    if (rc) {
      x->failed = 1;
      return rc;
    }
    x->dirty = 1;
  }
  s->noted = 1;
  return 0;
}

/* ---------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------- */

/* CHECK's fields: the client's site into s->peer. */
typedef struct sx_check {
  unsigned mode;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  const unsigned char *cred;
  size_t clen;
  uint64_t tag;
} sx_check;

static int sx_read_check(sync_session *s, const unsigned char *b, size_t n,
                         sx_check *c) {
  sx_rd r;
  const unsigned char *q;
  unsigned f;
  memset(c, 0, sizeof *c);
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  q = sx_rbytes(&r, 1 + SX_SITE_LEN + 1);
  if (!q) return sx_sess_fail(s, SYNC_EPROTO, "malformed CHECK");
  if (q[0] != SX_PROTO)
    return sx_sess_fail(s, SYNC_EVERSION,
                        "protocol version %u here, %u from the peer", SX_PROTO,
                        q[0]);
  memcpy(s->peer, q + 1, SX_SITE_LEN);
  f = q[1 + SX_SITE_LEN];
  c->mode = f & SX_CK_MODE;
  if (f & SX_CK_ALL) {
    memset(c->sel, 0xff, sizeof c->sel);
  } else {
    size_t k = (size_t)sx_rvb(&r, SX_TBYTES + 1);
    const unsigned char *m = sx_rbytes(&r, k);
    if (m) memcpy(c->sel, m, k);
  }
  c->clen = (size_t)sx_rvb(&r, SX_CRED_MAX + 1);
  c->cred = sx_rbytes(&r, c->clen);
  q = sx_rbytes(&r, 8);
  if (!q || r.bad || r.p != r.end || !c->mode ||
      (f & ~(SX_CK_MODE | SX_CK_ALL)))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed CHECK");
  c->tag = sx_get_le64(q);
  return 0;
}

/* Fill k from the server's records of the client and its rights; then
 * *same 1 when the tags agree and the client would get nothing. */
static int sx_ck_server(sync_session *s, sync_txn *x, const sx_check *c,
                        const sync_rights *rights, int *same) {
  unsigned char send[SYNC_RIGHTS_BYTES];
  sx_peer p;
  sx_ck k;
  sx_mark m;
  sync_delta_opts o;
  uint64_t nrenew;
  size_t i;
  int rc;
  *same = 0;
  rc = sx_peer_get(x, s->peer, &p);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  memset(&k, 0, sizeof k);
  memcpy(k.client, s->peer, SX_SITE_LEN);
  memcpy(k.server, s->self, SX_SITE_LEN);
  k.schema_hash = s->env->schema->hash;
  k.mode = c->mode;
  for (i = 0; i < SYNC_RIGHTS_BYTES; i++) send[i] = rights->read[i] & c->sel[i];
  /* The chunk the client would ask for, as sx_send_chunk cuts it. */
  memset(&o, 0, sizeof o);
  o.max_rows = 1; /* one row is enough to say no */
  o.tables = send;
  o.filter = s->o.filter;
  o.filter_ctx = s->o.filter_ctx;
  o.filter_version = s->o.filter_version;
  o.scope = 1;
  o.visible = rights->read;
  if (c->mode & SYNC_PULL) {
    if (!p.acked_version && !p.acked_seq) return 0;
    rc = sx_mark_of(x, p.acked_version, &m);
    if (rc) return rc == SYNC_ENOMEM || rc == SYNC_EIO ? rc : 0;
    k.pv = p.acked_version;
    k.ps = p.acked_seq;
    k.pmark = m.id;
    k.pstart = m.start;
    sx_scope_served(s->env, &o, &k.scope);
  }
  if (c->mode & SYNC_PUSH) {
    if (p.cur.mode != SX_MODE_LOG || (!p.cur.version && !p.cur.seq)) return 0;
    k.av = p.cur.version;
    k.as = p.cur.seq;
    k.amark = p.mark.id;
    k.astart = p.mark.start;
  }
  if ((rc = sx_renew_sum(x, &nrenew, &k.renewed))) return rc;
  if (sx_ck_tag(&k) != c->tag) return 0;
  if (c->mode & SYNC_PULL)
    return sx_ck_quiet(x, s->peer, p.acked_version, p.acked_seq, &m, &k.scope,
                       &o, same);
  *same = 1;
  return 0;
}

SYNC_PRIVATE int sx_on_check(sync_session *s, const unsigned char *b,
                             size_t n) {
  sx_check c;
  sync_rights rights;
  sync_txn *x;
  unsigned char answer;
  int rc, same = 0;
  if (s->checked)
    return sx_sess_fail(s, SYNC_EPROTO, "a second CHECK in one session");
  s->checked = 1;
  if ((rc = sx_read_check(s, b, n, &c))) return rc;
  if (!memcmp(s->peer, s->self, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "the peer has this replica's site id");
  if ((rc = sx_grant(s, c.cred, c.clen, &rights))) return rc;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  rc = sx_ck_server(s, x, &c, &rights, &same);
  sync_txn_abort(x);
  if (rc)
    return sx_sess_fail(s, rc, "the quick check: %s", sync_strerror(rc));
  answer = same ? 0 : 1;
  if ((rc = sx_msg_put(s, SX_M_CHECKED, &answer, 1)))
    return sx_sess_fail(s, rc, "out of memory");
  if (same) {
    s->have_peer = 1;
    s->st.unchanged = 1;
    s->state = SX_ST_END;
  }
  return 0; /* else the client's HELLO follows */
}
