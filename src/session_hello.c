/*
 * session_hello.c - the handshake: HELLO (the client's site, schema,
 * mode, message size, tables, credential and views of peers' logs),
 * WELCOME (the server's answer with the rights it grants) and SCHEMA
 * (the client's schema when the two differ), and the check that what the
 * peer holds of this replica's log is this file's history.
 */
#include "session.h"

#include <stdio.h>

static void sx_mask_all(unsigned char *m) {
  memset(m, 0xff, SYNC_RIGHTS_BYTES);
}

static void sx_mask_and(unsigned char *m, const unsigned char *other) {
  size_t i;
  if (!other) return;
  for (i = 0; i < SYNC_RIGHTS_BYTES; i++) m[i] &= other[i];
}

static unsigned char *sx_put_mask(unsigned char *p, const unsigned char *m) {
  /* Only as many bytes as the schema has tables. */
  size_t n = (SYNC_MAX_TABLES + 7) / 8;
  p = sx_wv(p, n);
  memcpy(p, m, n);
  return p + n;
}

static int sx_get_mask(sx_rd *r, unsigned char *m) {
  size_t n = (size_t)sx_rvb(r, SYNC_RIGHTS_BYTES + 1);
  const unsigned char *q = sx_rbytes(r, n);
  memset(m, 0, SYNC_RIGHTS_BYTES);
  if (!q) return SYNC_EPROTO;
  memcpy(m, q, n);
  return 0;
}

/* HELLO carries at most this many views of peers' logs. */
#define SX_VIEWS_MAX 16
#define SX_VIEW_SIZE (SX_SITE_LEN + 2 * SX_VARINT_MAX + 8 + SX_LINEAGE_WMAX)

typedef struct sx_views {
  unsigned char *p;
  unsigned n, left; /* views written, and left out (over SX_VIEWS_MAX) */
} sx_views;

/* A view of a peer's log, as HELLO and WELCOME carry it: var version,
 * u64 mark id, var mark start, the mark's lineage (SX_VIEW_SIZE bytes
 * with the site). */
typedef struct sx_view {
  uint64_t ver;
  sx_mark mark;
  sx_lineage lin;
} sx_view;

static unsigned char *sx_wview(unsigned char *p, const sx_peer *peer) {
  p = sx_wv(p, sx_cursor_version(&peer->cur));
  sx_put_le64(p, peer->mark.id);
  p = sx_wv(p + 8, peer->mark.start);
  return sx_wlineage(p, &peer->lineage);
}

/* 0, or nonzero for a malformed view (r->bad set). */
static int sx_rview(sx_rd *r, sx_view *v) {
  const unsigned char *m;
  v->ver = sx_rv(r);
  m = sx_rbytes(r, 8);
  v->mark.start = sx_rv(r);
  if (m && !r->bad) {
    v->mark.id = sx_get_le64(m);
    if (!sx_rlineage(r, &v->mark, &v->lin)) return 0;
  }
  r->bad = 1;
  return 1;
}

static int sx_view_put(void *ctx, const uint8_t *site, const sx_peer *peer) {
  sx_views *v = (sx_views *)ctx;
  if (!peer->mark.id && !sx_cursor_version(&peer->cur)) return 0;
  if (v->n == SX_VIEWS_MAX) {
    v->left++;
    return 0;
  }
  memcpy(v->p, site, SX_SITE_LEN);
  v->p = sx_wview(v->p + SX_SITE_LEN, peer);
  v->n++;
  return 0;
}

/* var n, n x (16 site, var version, u64 mark id, var mark start, the
 * mark's lineage).  p needs 1 + SX_VIEWS_MAX * SX_VIEW_SIZE bytes.  When
 * views were left out, the server's may be one of them: the REQUESTs of
 * this session then carry the lineage (s->lin_req). */
static int sx_put_views(sync_session *s, unsigned char *p,
                        unsigned char **end) {
  unsigned char tmp[SX_VIEWS_MAX * SX_VIEW_SIZE];
  sx_views v;
  sync_txn *x;
  int rc;
  v.p = tmp;
  v.n = v.left = 0;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x))) return rc;
  rc = sx_peers_each(x, sx_view_put, &v);
  sync_txn_abort(x);
  if (rc) return rc;
  s->lin_req = v.left > 0;
  *p++ = (unsigned char)v.n;
  memcpy(p, tmp, (size_t)(v.p - tmp));
  *end = p + (v.p - tmp);
  return 0;
}

/* Send message type whose first n bytes are at b, followed by this
 * replica's schema (var length, the peer form of sx_schema_encode_peer):
 * WELCOME when the client's schema hash is not ours, and SCHEMA. */
static int sx_put_with_schema(sync_session *s, unsigned type,
                              const unsigned char *b, size_t n) {
  sx_buf m;
  int rc;
  sx_buf_init(&m, &s->al);
  rc = sx_buf_reserve(&m, n + SX_VARINT_MAX);
  if (!rc) {
    if (n) memcpy(m.p, b, n);
    m.len = n + SX_VARINT_MAX; /* the length goes here, once known */
    rc = sx_schema_encode_peer(s->env->schema, &m);
  }
  if (!rc) {
    size_t len = m.len - n - SX_VARINT_MAX;
    unsigned char lb[SX_VARINT_MAX];
    size_t k = (size_t)(sx_wv(lb, len) - lb);
    memmove(m.p + n + k, m.p + n + SX_VARINT_MAX, len);
    memcpy(m.p + n, lb, k);
    m.len = n + k + len;
    rc = sx_msg_put(s, type, m.p, m.len);
  }
  sx_buf_free(&m);
  return rc;
}

SYNC_PRIVATE int sx_send_hello(sync_session *s) {
  unsigned char
      b[64 + SX_CRED_MAX + SYNC_RIGHTS_BYTES + 1 + SX_VIEWS_MAX * SX_VIEW_SIZE],
      *p = b;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  sx_mask_all(sel);
  sx_mask_and(sel, s->o.tables);
  *p++ = SX_PROTO;
  *p++ = SX_FMAJOR_SESS;
  memcpy(p, s->self, SX_SITE_LEN);
  p += SX_SITE_LEN;
  sx_put_le64(p, s->env->schema->hash);
  p += 8;
  p = sx_wv(p, s->env->schema->version);
  *p++ = (unsigned char)s->mode;
  *p++ = (unsigned char)((s->dry ? SX_HF_DRY : 0) |
                         (s->repair ? SX_HF_REPAIR : 0));
  p = sx_wv(p, s->own_max);
  p = sx_put_mask(p, sel);
  p = sx_wv(p, s->o.credential_len);
  if (s->o.credential_len) memcpy(p, s->o.credential, s->o.credential_len);
  p += s->o.credential_len;
  {
    /* What this client holds of its peers' logs: the server, whichever
     * it is, checks its own history against its entry (any kind of
     * session, also those in which it never gets a REQUEST). */
    int rc = sx_put_views(s, p, &p);
    if (rc) return rc;
  }
  return sx_msg_put(s, SX_M_HELLO, b, (size_t)(p - b));
}

/* The peer's schema, the last field of HELLO and WELCOME (var length,
 * then the peer form; r at it): *q and *n, the message's end checked. */
static int sx_get_peer_schema(sync_session *s, sx_rd *r,
                              const unsigned char **q, size_t *n) {
  uint64_t len = sx_rvb(r, SX_CTL_MAX);
  *n = (size_t)len;
  *q = sx_rbytes(r, *n);
  if (!*q || r->bad || r->p != r->end)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed schema in the handshake");
  return 0;
}

/* The peer's schema (q, n): equal to ours (hash), or compatible
 * (sx_schema_compat: tables and columns appended on either side); then
 * the env accepts deltas cut under it.  A repair session compares
 * fingerprints table by table, so it needs equal ones. */
static int sx_check_peer_schema(sync_session *s, const unsigned char *q,
                                size_t n, uint64_t hash) {
  sx_schema *p;
  int rc;
  if (hash == s->env->schema->hash) return 0;
  rc = sx_schema_decode_peer(&s->al, q, n, &p);
  if (rc == SYNC_ENOMEM) return sx_sess_fail(s, rc, "out of memory");
  if (rc || p->hash != hash) {
    sx_schema_free(&s->al, p);
    return sx_sess_fail(s, SYNC_EPROTO,
                        "the peer's schema is malformed or not the one its "
                        "hash names");
  }
  /* Said as "the server" and "the client", the server's first, so that
   * the words are the same on the side that gets them in the ERROR. */
  rc = sx_compat_check(
      s->env, p, s->o.server ? "on the server" : "on the client",
      s->o.server ? "on the client" : "on the server", !s->o.server);
  sx_schema_free(&s->al, p);
  if (rc)
    return sx_sess_fail(s, rc, "incompatible schemas: %s",
                        sync_env_errmsg(s->env));
  return 0;
}

/* What this side holds of the peer's log (its version and the peer's
 * history mark there), for the peer to check against its own history:
 * var version, u64 mark id, var mark start, the mark's lineage.  p needs
 * 2 * SX_VARINT_MAX + 8 + SX_LINEAGE_WMAX bytes. */
static int sx_put_view(sync_session *s, unsigned char *p, unsigned char **end) {
  sync_txn *x;
  sx_peer peer;
  int rc;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  rc = sx_peer_get(x, s->peer, &peer);
  sync_txn_abort(x);
  if (rc && rc != SYNC_NOTFOUND)
    return sx_sess_fail(s, rc, "peer record: %s", sync_strerror(rc));
  *end = sx_wview(p, &peer);
  return 0;
}

/* The peer holds this replica's log up to version v with mark m: if that
 * is not this file's history (restored from a backup, or copied), take a
 * new site id and end the session with SYNC_EHISTORY; the next one syncs
 * as the new site. */
SYNC_PRIVATE int sx_check_view(sync_session *s, uint64_t v, const sx_mark *m,
                              const sx_lineage *lin,
                              const sync_request *req) {
  sync_txn *x;
  uint64_t claim = UINT64_MAX;
  int rc;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  rc = sx_history_check(x, v, m);
  if (!rc && req) rc = sx_claim_check(x, req, &claim);
  sync_txn_abort(x);
  if (rc == 0) return 0;
  if (rc != SYNC_EHISTORY) return sx_sess_fail(s, rc, "%s", sync_strerror(rc));
  {
    char why[sizeof s->errmsg];
    snprintf(why, sizeof why, "%s", sync_env_errmsg(s->env));
    if (s->dry) /* a dry run writes nothing: say it, change nothing */
      return sx_sess_fail(s, SYNC_EHISTORY, "%s", why);
    x = NULL;
    rc = sync_txn_begin(s->env, 0, &x);
    if (!rc) rc = sx_site_renew_after(x, m, lin, claim);
    return sx_sess_renewed(s, x, rc, why);
  }
}

/* HELLO as read by sx_read_hello. */
typedef struct sx_hello {
  uint64_t hash, ver, maxm; /* the client's schema; its largest message */
  unsigned mode, flags;
  unsigned char sel[SYNC_RIGHTS_BYTES]; /* the tables it selected */
  const unsigned char *cred;
  size_t clen;
  int view; /* it holds this replica's log: v */
  sx_view v;
} sx_hello;

/* The client's views of its peers' logs (r at them): ours, if it has
 * one, into h, to be checked once the client is authorized. */
static void sx_read_views(sync_session *s, sx_rd *r, sx_hello *h) {
  uint64_t nv = sx_rvb(r, SX_VIEWS_MAX + 1), i;
  for (i = 0; i < nv && !r->bad; i++) {
    const unsigned char *site = sx_rbytes(r, SX_SITE_LEN);
    sx_view v;
    if (sx_rview(r, &v) || !site) break;
    if (!memcmp(site, s->self, SX_SITE_LEN)) {
      h->view = 1;
      h->v = v;
    }
  }
}

/* HELLO's fields into h (the client's site into s->peer).  0, or the
 * session fails. */
static int sx_read_hello(sync_session *s, const unsigned char *b, size_t n,
                         sx_hello *h) {
  sx_rd r;
  const unsigned char *q;
  memset(h, 0, sizeof *h);
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  q = sx_rbytes(&r, 2 + SX_SITE_LEN + 8);
  if (!q) return sx_sess_fail(s, SYNC_EPROTO, "malformed HELLO");
  if (q[0] != SX_PROTO)
    return sx_sess_fail(s, SYNC_EVERSION,
                        "protocol version %u here, %u from the peer", SX_PROTO,
                        q[0]);
  if (q[1] != SX_FMAJOR_SESS)
    return sx_sess_fail(s, SYNC_EVERSION, "frame format %u here, %u from the peer",
                        SX_FMAJOR_SESS, q[1]);
  memcpy(s->peer, q + 2, SX_SITE_LEN);
  h->hash = sx_get_le64(q + 2 + SX_SITE_LEN);
  h->ver = sx_rv(&r);
  q = sx_rbytes(&r, 2);
  h->maxm = sx_rv(&r);
  if (!q || r.bad || sx_get_mask(&r, h->sel))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed HELLO");
  h->mode = q[0];
  h->flags = q[1];
  h->clen = (size_t)sx_rvb(&r, SX_CRED_MAX + 1);
  h->cred = sx_rbytes(&r, h->clen);
  sx_read_views(s, &r, h);
  if (r.bad || r.p != r.end || h->mode < SYNC_PULL || h->mode > SYNC_BOTH ||
      (h->flags & ~(SX_HF_DRY | SX_HF_REPAIR)) || h->maxm < SX_MSG_MIN)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed HELLO");
  return 0;
}

SYNC_PRIVATE int sx_grant(sync_session *s, const void *cred, size_t clen,
                          sync_rights *rights) {
  int rc;
  memset(rights, 0, sizeof *rights);
  if (!s->o.authorize) {
    sx_mask_all(rights->read);
    sx_mask_all(rights->write);
    rights->relay = 1;
    return 0;
  }
  rc = s->o.authorize(s->o.authorize_ctx, s->peer, cred, clen, rights);
  if (rc)
    return sx_sess_fail(s, rc < 0 ? rc : SYNC_EPERM,
                        "the credential was refused");
  return 0;
}

/* The client's choices, bounded by its rights, and its phases. */
static void sx_hello_apply(sync_session *s, const sx_hello *h,
                           const sync_rights *rights) {
  s->mode = (int)h->mode;
  s->dry = (h->flags & SX_HF_DRY) != 0;
  s->repair = (h->flags & SX_HF_REPAIR) != 0;
  s->peer_max = h->maxm < SX_MSG_MAX ? (size_t)h->maxm : SX_MSG_MAX;
  memcpy(s->read_mask, rights->read, SYNC_RIGHTS_BYTES);
  memcpy(s->send_mask, rights->read, SYNC_RIGHTS_BYTES);
  sx_mask_and(s->send_mask, h->sel);
  memcpy(s->recv_mask, rights->write, SYNC_RIGHTS_BYTES);
  sx_mask_and(s->recv_mask, h->sel);
  s->relay = rights->relay;
  s->nphase = 0;
  if (h->mode & SYNC_PULL) s->roles[s->nphase++] = SX_ROLE_SEND;
  if (h->mode & SYNC_PUSH) s->roles[s->nphase++] = SX_ROLE_RECV;
}

/* WELCOME: who we are, and what the client may send and get (and our
 * schema when the client's hash is not ours). */
static int sx_send_welcome(sync_session *s, uint64_t client_hash) {
  unsigned char
      b[64 + 2 * SYNC_RIGHTS_BYTES + 3 * SX_VARINT_MAX + 8 + SX_LINEAGE_WMAX],
      *p = b;
  int rc;
  *p++ = SX_PROTO;
  memcpy(p, s->self, SX_SITE_LEN);
  p += SX_SITE_LEN;
  sx_put_le64(p, s->env->schema->hash);
  p += 8;
  p = sx_wv(p, s->own_max);
  p = sx_put_mask(p, s->recv_mask);
  p = sx_put_mask(p, s->send_mask);
  if ((rc = sx_put_view(s, p, &p))) return rc;
  rc = client_hash == s->env->schema->hash
           ? sx_msg_put(s, SX_M_WELCOME, b, (size_t)(p - b))
           : sx_put_with_schema(s, SX_M_WELCOME, b, (size_t)(p - b));
  if (rc) return sx_sess_fail(s, rc, "out of memory");
  return 0;
}

SYNC_PRIVATE int sx_on_hello(sync_session *s, const unsigned char *b,
                             size_t n) {
  sx_hello h;
  sync_rights rights;
  int rc;
  if ((rc = sx_read_hello(s, b, n, &h))) return rc;
  if (!memcmp(s->peer, s->self, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "the peer has this replica's site id");
  s->have_peer = 1;
  s->repair = (h.flags & SX_HF_REPAIR) != 0;
  if ((rc = sx_grant(s, h.cred, h.clen, &rights))) return rc;
  /* Schemas differ: a repair compares fingerprints table by table, so
   * it needs equal ones; a sync goes on once the client's schema, which
   * it sends after this WELCOME with ours, is found compatible (only an
   * authorized client's: the env keeps a few). */
  if (h.hash != s->env->schema->hash && s->repair)
    return sx_sess_fail(s, SYNC_ESCHEMA,
                        "range repair needs equal schemas: this side has "
                        "schema version %llu (hash %016llx), the peer "
                        "version %llu (hash %016llx); sync both to the same "
                        "schema first",
                        (unsigned long long)s->env->schema->version,
                        (unsigned long long)s->env->schema->hash,
                        (unsigned long long)h.ver, (unsigned long long)h.hash);
  if ((rc = sx_fctx_setup(s, h.hash))) return rc;
  /* Only an authorized client's view may make this replica renew. */
  if (h.view && (rc = sx_check_view(s, h.v.ver, &h.v.mark, &h.v.lin, NULL)))
    return rc;
  sx_hello_apply(s, &h, &rights);
  if ((rc = sx_send_welcome(s, h.hash))) return rc;
  s->phase = 0;
  if (h.hash != s->env->schema->hash) {
    s->state = SX_ST_SCHEMA;
    return 0;
  }
  if (s->repair) return sx_repair_start(s);
  return sx_phase_start(s);
}

SYNC_PRIVATE int sx_on_welcome(sync_session *s, const unsigned char *b,
                               size_t n) {
  sx_rd r;
  const unsigned char *q;
  uint64_t hash, maxm;
  sx_view vw;
  unsigned char wr[SYNC_RIGHTS_BYTES], rd[SYNC_RIGHTS_BYTES];
  const unsigned char *sq;
  size_t sn;
  int rc;
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  q = sx_rbytes(&r, 1 + SX_SITE_LEN + 8);
  if (!q) return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  if (q[0] != SX_PROTO)
    return sx_sess_fail(s, SYNC_EVERSION,
                        "protocol version %u here, %u from the peer", SX_PROTO,
                        q[0]);
  memcpy(s->peer, q + 1, SX_SITE_LEN);
  hash = sx_get_le64(q + 1 + SX_SITE_LEN);
  s->peer_hash = hash;
  maxm = sx_rv(&r);
  if (r.bad || sx_get_mask(&r, wr) || sx_get_mask(&r, rd))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  if (sx_rview(&r, &vw) || maxm < SX_MSG_MIN)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  sq = NULL;
  sn = 0;
  if (hash != s->env->schema->hash) {
    if ((rc = sx_get_peer_schema(s, &r, &sq, &sn))) return rc;
  } else if (r.p != r.end) {
    return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  }
  if (!memcmp(s->peer, s->self, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "the peer has this replica's site id");
  s->have_peer = 1;
  if ((rc = sx_fctx_setup(s, hash))) return rc;
  if (sq) {
    /* The server waits for ours before the first phase. */
    if ((rc = sx_check_peer_schema(s, sq, sn, hash))) return rc;
    if ((rc = sx_put_with_schema(s, SX_M_SCHEMA, NULL, 0)))
      return sx_sess_fail(s, rc, "out of memory");
  }
  if ((rc = sx_check_view(s, vw.ver, &vw.mark, &vw.lin, NULL))) return rc;
  s->peer_max = maxm < SX_MSG_MAX ? (size_t)maxm : SX_MSG_MAX;
  /* Send what the server lets us write, and what it lets us read (a
   * write there is refused and answered with the server's row, which
   * this replica takes back); apply what we selected. */
  {
    unsigned char wrd[SYNC_RIGHTS_BYTES];
    size_t i;
    for (i = 0; i < SYNC_RIGHTS_BYTES; i++) wrd[i] = wr[i] | rd[i];
    sx_mask_all(s->send_mask);
    sx_mask_and(s->send_mask, s->o.tables);
    sx_mask_and(s->send_mask, wrd);
  }
  sx_mask_all(s->recv_mask);
  sx_mask_and(s->recv_mask, s->o.tables);
  s->relay = 1;
  s->phase = 0;
  if (s->repair) {
    /* Repair what both may read: what the server lets us read. */
    sx_mask_and(s->recv_mask, rd);
    return sx_repair_start(s);
  }
  return sx_phase_start(s);
}

/* SCHEMA (server, the schemas differ): the client's, as WELCOME's hash
 * check left it to the client to send; then the first phase. */
SYNC_PRIVATE int sx_on_schema(sync_session *s, const unsigned char *b,
                              size_t n) {
  const unsigned char *sq;
  size_t sn;
  sx_rd r;
  int rc;
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  if ((rc = sx_get_peer_schema(s, &r, &sq, &sn))) return rc;
  if ((rc = sx_check_peer_schema(s, sq, sn, s->peer_hash))) return rc;
  if (s->repair) return sx_repair_start(s);
  return sx_phase_start(s);
}
