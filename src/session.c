/*
 * session.c - the sync protocol (docs/PROTOCOL.md) as a sans-IO state
 * machine, its driver over caller callbacks, and the retry helper.
 *
 * Bytes come in through sync_session_recv() and go out through
 * sync_session_send().  Messages are framed (type, length, payload,
 * checksum) and never larger than the peer accepts; control messages
 * larger than that travel in fragments, delta frames in DATA messages
 * that the frame decoder reassembles.  A session is a list of phases, in
 * each of which this side either receives (it asks with REQUEST, applies
 * each chunk and asks again, then sends FINAL with its report) or sends
 * (it answers each REQUEST with the next chunk).  The client pulls, then
 * pushes; the server mirrors it.
 */
#include "reject.h"
#include "codec.h"
#include "repair.h"

#include "hash.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#define SX_PROTO 4
#define SX_MSG_FLOOR 256 /* every side accepts this much, before and after
                            the handshake */
#define SX_MSG_DEFAULT ((size_t)64 << 10)
#define SX_MSG_MAX ((size_t)16 << 20)
#define SX_MSG_OVERHEAD (1 + SX_VARINT_MAX + 4)
#define SX_CTL_MAX ((size_t)4 << 20) /* a reassembled control message */
#define SX_CRED_MAX 1024
#define SX_MORE 0x80u

#define SX_M_HELLO 1
#define SX_M_WELCOME 2
#define SX_M_REQUEST 3
#define SX_M_DATA 4
#define SX_M_ERROR 5
#define SX_M_PLAN 6
#define SX_M_REPAIR 7
#define SX_M_REFUSED 8  /* server -> client: rows of its chunk refused */
#define SX_M_REVERTED 9 /* client -> server: those rows taken back */

#define SX_RF_MAX 4096        /* refusals kept from one chunk */
#define SX_RF_PART 256        /* refusals per REFUSED message */
#define SX_RF_ROUNDS 16       /* chunks refused whole in a row */
#define SX_RF_ENTRY_MAX (3 * SX_VARINT_MAX + SYNC_MAX_KEY + 2 + \
                         SYNC_REFUSE_TEXT_MAX)
#define SX_M_SCHEMA 10 /* client -> server: its schema, when they differ */

#define SX_RQ_FINAL 0x1u /* no chunk wanted: the phase is complete */
#define SX_RQ_DRY 0x2u   /* a dry run: do not record an acknowledgement */
#define SX_RQ_WHOLE 0x4u /* whole rows (the requester applies NEWER) */

#define SX_HF_DRY 0x1u /* HELLO flags */
#define SX_HF_REPAIR 0x2u

enum { SX_ROLE_RECV, SX_ROLE_SEND };
enum {
  SX_ST_HELLO,   /* server: waiting for HELLO */
  SX_ST_WELCOME, /* client: waiting for WELCOME */
  SX_ST_SCHEMA,  /* server: the schemas differ, waiting for the client's */
  SX_ST_RECV,    /* receiving phase: waiting for a chunk */
  SX_ST_SEND,    /* sending phase: waiting for a request */
  SX_ST_REPAIR,  /* repair: waiting for the peer's turn (or its frame) */
  SX_ST_ANSWER,  /* server: refusals sent, waiting for REVERTED */
  SX_ST_END,     /* every phase done: ends once the output is flushed */
  SX_ST_FAILING, /* an ERROR is queued: fails once it is flushed */
  SX_ST_OVER     /* status is final */
};

struct sync_session {
  sync_env *env;
  sx_alloc al;
  sync_session_opts o;
  int state, status;
  int roles[2], nphase, phase;
  int mode, dry;
  uint8_t peer[SX_SITE_LEN];
  int have_peer;
  size_t peer_max; /* largest message the peer accepts */
  size_t own_max;
  unsigned char send_mask[SYNC_RIGHTS_BYTES]; /* tables we may send */
  unsigned char recv_mask[SYNC_RIGHTS_BYTES]; /* tables we may apply */
  unsigned char read_mask[SYNC_RIGHTS_BYTES]; /* server: the client's read
                                                 rights */
  int relay;
  sync_encoder *enc;
  sync_decoder *dec;
  int frame_out; /* encoder holds a frame still to send */
  /* input: the message being read */
  unsigned char hdr[1 + SX_VARINT_MAX];
  size_t hdr_len, need; /* need: payload + checksum once the header is known */
  sx_buf msg;
  sx_buf ctl;      /* control message being reassembled */
  int ctl_type;    /* its type while fragments are coming, else 0 */
  /* output */
  sx_buf out;
  size_t out_pos;
  /* receiving phase */
  sx_cursor vcur; /* dry run: where the next request starts */
  sx_mark vmark;  /* and the sender's mark there */
  sx_scope vscope; /* and the scope it was served with */
  int vcur_ok;
  uint64_t peer_hash; /* server: the client's schema hash (HELLO) */
  int held;       /* a chunk held rows of tables we lack: the cursor
                     stays, the phase goes on from vcur */
  sync_apply_report phase_rep;
  sync_session_stats st;
  int failed_code; /* code to send in the queued ERROR */
  int state_was_recv; /* the peer's ERROR came in a receiving phase */
  char errmsg[256];
  uint64_t t0; /* made at, for the stats */
  int repair;      /* a repair session (repair.c) */
  sx_repair *rp;
  int rp_frame;    /* the peer's turn announced a frame: DATA is due */
  /* refusals (docs/PROTOCOL.md, "Refusals") */
  sx_buf rf;       /* server: entries of the chunk's refused rows; client:
                      the REFUSED message being answered */
  size_t rf_n, rf_pos, rf_part; /* entries, next to send, in flight */
  int rf_over;     /* server: more refusals than SX_RF_MAX */
  int rf_whole;    /* server: the chunk was not applied */
  unsigned rf_rounds; /* server: chunks refused whole in a row */
  sx_cursor rf_start, rf_end; /* server: the answered chunk's range */
  sx_mark rf_mark;
  int rf_last;
  int rf_frame;    /* client: REFUSED announced the server's rows */
  uint64_t sent_snap; /* client: snapshot version of the last chunk cut */
};

/* ---------------------------------------------------------------------
 * Failure
 * ------------------------------------------------------------------- */
static void sx_sess_msg(sync_session *s, const char *fmt, va_list ap) {
  vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
}

static int sx_msg_put(sync_session *s, unsigned type, const unsigned char *p,
                      size_t n);

/* End the session with rc: tell the peer (code and words) and fail once
 * that is sent. */
static int sx_sess_fail(sync_session *s, int rc, const char *fmt, ...) {
  va_list ap;
  unsigned char b[2 * SX_VARINT_MAX + sizeof s->errmsg], *p = b;
  size_t n;
  if (s->state == SX_ST_FAILING || s->state == SX_ST_OVER) return rc;
  va_start(ap, fmt);
  sx_sess_msg(s, fmt, ap);
  va_end(ap);
  s->failed_code = rc;
  s->frame_out = 0; /* the rest of a frame being sent is dropped */
  n = strlen(s->errmsg);
  p = sx_wv(p, sx_zigzag(rc));
  p = sx_wv(p, n);
  memcpy(p, s->errmsg, n);
  p += n;
  s->state = SX_ST_FAILING;
  if (sx_msg_put(s, SX_M_ERROR, b, (size_t)(p - b))) {
    s->state = SX_ST_OVER; /* not even the error fits: stop here */
    s->status = rc;
  }
  return rc;
}

/* ---------------------------------------------------------------------
 * Messages: u8 type (| SX_MORE: a fragment, more follow), var payload
 * length, payload, u32 LE low bits of XXH3-64 over the bytes before it.
 * ------------------------------------------------------------------- */
static int sx_frag_put(sync_session *s, unsigned type, const unsigned char *p,
                       size_t n) {
  unsigned char *q;
  size_t start = s->out.len;
  int rc;
  if ((rc = sx_buf_reserve(&s->out, n + SX_MSG_OVERHEAD))) return rc;
  q = s->out.p + start;
  *q++ = (unsigned char)type;
  q = sx_wv(q, n);
  if (n) memcpy(q, p, n);
  q += n;
  sx_put_le32(q, (uint32_t)sx_hash64(s->out.p + start,
                                     (size_t)(q - (s->out.p + start)), 0));
  s->out.len = (size_t)(q + 4 - s->out.p);
  s->st.messages_sent++;
  return 0;
}

/* Queue a control message, cut to the peer's size. */
static int sx_msg_put(sync_session *s, unsigned type, const unsigned char *p,
                      size_t n) {
  size_t room = s->peer_max - SX_MSG_OVERHEAD, off = 0;
  int rc;
  do {
    size_t k = n - off > room ? room : n - off;
    unsigned t = type | (off + k < n ? SX_MORE : 0u);
    if ((rc = sx_frag_put(s, t, p + off, k))) return rc;
    off += k;
  } while (off < n);
  return 0;
}

/* ---------------------------------------------------------------------
 * Handshake
 * ------------------------------------------------------------------- */
static void sx_mask_all(unsigned char *m) { memset(m, 0xff, SYNC_RIGHTS_BYTES); }

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
#define SX_VIEW_SIZE (SX_SITE_LEN + 2 * SX_VARINT_MAX + 8)

typedef struct sx_views {
  unsigned char *p;
  unsigned n;
} sx_views;

static int sx_view_put(void *ctx, const uint8_t *site, const sx_peer *peer) {
  sx_views *v = (sx_views *)ctx;
  if (v->n == SX_VIEWS_MAX) return 0;
  if (!peer->mark.id && !sx_cursor_version(&peer->cur)) return 0;
  memcpy(v->p, site, SX_SITE_LEN);
  v->p += SX_SITE_LEN;
  v->p = sx_wv(v->p, sx_cursor_version(&peer->cur));
  sx_put_le64(v->p, peer->mark.id);
  v->p = sx_wv(v->p + 8, peer->mark.start);
  v->n++;
  return 0;
}

/* var n, n x (16 site, var version, u64 mark id, var mark start).  p
 * needs 1 + SX_VIEWS_MAX * SX_VIEW_SIZE bytes. */
static int sx_put_views(sync_session *s, unsigned char *p, unsigned char **end) {
  unsigned char tmp[SX_VIEWS_MAX * SX_VIEW_SIZE];
  sx_views v;
  sync_txn *x;
  int rc;
  v.p = tmp;
  v.n = 0;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x))) return rc;
  rc = sx_peers_each(x, sx_view_put, &v);
  sync_txn_abort(x);
  if (rc) return rc;
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

static int sx_send_hello(sync_session *s) {
  unsigned char b[64 + SX_CRED_MAX + SYNC_RIGHTS_BYTES + 1 +
                  SX_VIEWS_MAX * SX_VIEW_SIZE],
      *p = b;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  sx_mask_all(sel);
  sx_mask_and(sel, s->o.tables);
  *p++ = SX_PROTO;
  *p++ = 1; /* frame format major version */
  memcpy(p, s->env->site, SX_SITE_LEN);
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

static int sx_phase_start(sync_session *s);
static int sx_repair_start(sync_session *s);
static int sx_on_repair_delta(sync_session *s, sync_delta *d);

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
  rc = sx_compat_check(s->env, p, s->o.server ? "on the server" : "on the client",
                       s->o.server ? "on the client" : "on the server",
                       !s->o.server);
  sx_schema_free(&s->al, p);
  if (rc) return sx_sess_fail(s, rc, "incompatible schemas: %s",
                              sync_env_errmsg(s->env));
  return 0;
}

/* What this side holds of the peer's log (its version and the peer's
 * history mark there), for the peer to check against its own history:
 * var version, u64 mark id, var mark start.  p needs 2 * SX_VARINT_MAX
 * + 8 bytes. */
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
  p = sx_wv(p, sx_cursor_version(&peer.cur));
  sx_put_le64(p, peer.mark.id);
  p = sx_wv(p + 8, peer.mark.start);
  *end = p;
  return 0;
}

/* The peer holds this replica's log up to version v with mark m: if that
 * is not this file's history (restored from a backup, or copied), take a
 * new site id and end the session with SYNC_EHISTORY; the next one syncs
 * as the new site. */
static int sx_check_view(sync_session *s, uint64_t v, const sx_mark *m) {
  sync_txn *x;
  int rc;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  rc = sx_history_check(x, v, m);
  sync_txn_abort(x);
  if (rc == 0) return 0;
  if (rc != SYNC_EHISTORY)
    return sx_sess_fail(s, rc, "%s", sync_strerror(rc));
  {
    char why[sizeof s->errmsg];
    snprintf(why, sizeof why, "%s", sync_env_errmsg(s->env));
    if (s->dry) /* a dry run writes nothing: say it, change nothing */
      return sx_sess_fail(s, SYNC_EHISTORY, "%s", why);
    rc = sync_txn_begin(s->env, 0, &x);
    if (!rc) {
      rc = sx_site_renew_after(x, m);
      if (rc) sync_txn_abort(x);
      else rc = sync_txn_commit(x);
    }
    if (rc)
      return sx_sess_fail(s, rc, "%s; taking a new site id failed: %s", why,
                          sync_strerror(rc));
    return sx_sess_fail(s, SYNC_EHISTORY,
                        "%s: it took a new site id; sync again", why);
  }
}

static int sx_on_hello(sync_session *s, const unsigned char *b, size_t n) {
  sx_rd r;
  const unsigned char *q;
  uint64_t hash, ver, maxm, clen, vver = 0;
  unsigned mode, flags;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  sync_rights rights;
  sx_mark vmark;
  int rc, view = 0;
  memset(&vmark, 0, sizeof vmark);
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  q = sx_rbytes(&r, 2 + SX_SITE_LEN + 8);
  if (!q) return sx_sess_fail(s, SYNC_EPROTO, "malformed HELLO");
  if (q[0] != SX_PROTO)
    return sx_sess_fail(s, SYNC_EVERSION,
                        "protocol version %u here, %u from the peer",
                        SX_PROTO, q[0]);
  if (q[1] != 1)
    return sx_sess_fail(s, SYNC_EVERSION,
                        "frame format 1 here, %u from the peer", q[1]);
  memcpy(s->peer, q + 2, SX_SITE_LEN);
  hash = sx_get_le64(q + 2 + SX_SITE_LEN);
  ver = sx_rv(&r);
  q = sx_rbytes(&r, 2);
  maxm = sx_rv(&r);
  if (!q || r.bad || sx_get_mask(&r, sel))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed HELLO");
  mode = q[0];
  flags = q[1];
  clen = sx_rvb(&r, SX_CRED_MAX + 1);
  q = sx_rbytes(&r, (size_t)clen);
  {
    /* The client's views: ours, if it has one, is checked below. */
    uint64_t nv = sx_rvb(&r, SX_VIEWS_MAX + 1), i;
    for (i = 0; i < nv && !r.bad; i++) {
      const unsigned char *site = sx_rbytes(&r, SX_SITE_LEN), *m;
      uint64_t ver = sx_rv(&r);
      sx_mark mk;
      m = sx_rbytes(&r, 8);
      mk.start = sx_rv(&r);
      if (!site || !m) break;
      mk.id = sx_get_le64(m);
      if (!memcmp(site, s->env->site, SX_SITE_LEN)) {
        view = 1;
        vver = ver;
        vmark = mk;
      }
    }
  }
  if (r.bad || r.p != r.end || mode < SYNC_PULL || mode > SYNC_BOTH ||
      (flags & ~(SX_HF_DRY | SX_HF_REPAIR)) || maxm < SX_MSG_FLOOR)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed HELLO");
  if (!memcmp(s->peer, s->env->site, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "the peer has this replica's site id");
  s->have_peer = 1;
  s->repair = (flags & SX_HF_REPAIR) != 0;
  memset(&rights, 0, sizeof rights);
  if (s->o.authorize) {
    rc = s->o.authorize(s->o.authorize_ctx, s->peer, q, (size_t)clen, &rights);
    if (rc)
      return sx_sess_fail(s, rc < 0 ? rc : SYNC_EPERM,
                          "the credential was refused");
  } else {
    sx_mask_all(rights.read);
    sx_mask_all(rights.write);
    rights.relay = 1;
  }
  /* Schemas differ: a repair compares fingerprints table by table, so
   * it needs equal ones; a sync goes on once the client's schema, which
   * it sends after this WELCOME with ours, is found compatible (only an
   * authorized client's: the env keeps a few). */
  if (hash != s->env->schema->hash && s->repair)
    return sx_sess_fail(s, SYNC_ESCHEMA,
                        "range repair needs equal schemas: this side has "
                        "schema version %llu (hash %016llx), the peer "
                        "version %llu (hash %016llx); sync both to the same "
                        "schema first",
                        (unsigned long long)s->env->schema->version,
                        (unsigned long long)s->env->schema->hash,
                        (unsigned long long)ver, (unsigned long long)hash);
  s->peer_hash = hash;
  /* Only an authorized client's view may make this replica renew. */
  if (view && (rc = sx_check_view(s, vver, &vmark))) return rc;
  s->mode = (int)mode;
  s->dry = (flags & SX_HF_DRY) != 0;
  s->repair = (flags & SX_HF_REPAIR) != 0;
  s->peer_max = maxm < SX_MSG_MAX ? (size_t)maxm : SX_MSG_MAX;
  memcpy(s->read_mask, rights.read, SYNC_RIGHTS_BYTES);
  memcpy(s->send_mask, rights.read, SYNC_RIGHTS_BYTES);
  sx_mask_and(s->send_mask, sel);
  memcpy(s->recv_mask, rights.write, SYNC_RIGHTS_BYTES);
  sx_mask_and(s->recv_mask, sel);
  s->relay = rights.relay;
  s->nphase = 0;
  if (mode & SYNC_PULL) s->roles[s->nphase++] = SX_ROLE_SEND;
  if (mode & SYNC_PUSH) s->roles[s->nphase++] = SX_ROLE_RECV;
  {
    /* WELCOME: who we are, and what the client may send and get. */
    unsigned char b2[64 + 2 * SYNC_RIGHTS_BYTES + 3 * SX_VARINT_MAX + 8],
        *p = b2;
    *p++ = SX_PROTO;
    memcpy(p, s->env->site, SX_SITE_LEN);
    p += SX_SITE_LEN;
    sx_put_le64(p, s->env->schema->hash);
    p += 8;
    p = sx_wv(p, s->own_max);
    p = sx_put_mask(p, s->recv_mask);
    p = sx_put_mask(p, s->send_mask);
    if ((rc = sx_put_view(s, p, &p))) return rc;
    rc = hash == s->env->schema->hash
             ? sx_msg_put(s, SX_M_WELCOME, b2, (size_t)(p - b2))
             : sx_put_with_schema(s, SX_M_WELCOME, b2, (size_t)(p - b2));
    if (rc) return sx_sess_fail(s, rc, "out of memory");
  }
  s->phase = 0;
  if (hash != s->env->schema->hash) {
    s->state = SX_ST_SCHEMA;
    return 0;
  }
  if (s->repair) return sx_repair_start(s);
  return sx_phase_start(s);
}

static int sx_on_welcome(sync_session *s, const unsigned char *b, size_t n) {
  sx_rd r;
  const unsigned char *q;
  uint64_t hash, maxm, vver;
  sx_mark vmark;
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
                        "protocol version %u here, %u from the peer",
                        SX_PROTO, q[0]);
  memcpy(s->peer, q + 1, SX_SITE_LEN);
  hash = sx_get_le64(q + 1 + SX_SITE_LEN);
  maxm = sx_rv(&r);
  if (r.bad || sx_get_mask(&r, wr) || sx_get_mask(&r, rd))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  vver = sx_rv(&r);
  q = sx_rbytes(&r, 8);
  vmark.start = sx_rv(&r);
  if (!q || r.bad || maxm < SX_MSG_FLOOR)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  vmark.id = sx_get_le64(q);
  sq = NULL;
  sn = 0;
  if (hash != s->env->schema->hash) {
    if ((rc = sx_get_peer_schema(s, &r, &sq, &sn))) return rc;
  } else if (r.p != r.end) {
    return sx_sess_fail(s, SYNC_EPROTO, "malformed WELCOME");
  }
  if (!memcmp(s->peer, s->env->site, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "the peer has this replica's site id");
  s->have_peer = 1;
  if (sq) {
    /* The server waits for ours before the first phase. */
    if ((rc = sx_check_peer_schema(s, sq, sn, hash))) return rc;
    if ((rc = sx_put_with_schema(s, SX_M_SCHEMA, NULL, 0)))
      return sx_sess_fail(s, rc, "out of memory");
  }
  if ((rc = sx_check_view(s, vver, &vmark))) return rc;
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
static int sx_on_schema(sync_session *s, const unsigned char *b, size_t n) {
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

/* ---------------------------------------------------------------------
 * Requests on the wire: u8 flags, 16 requester, 16 sender, u64 schema
 * hash, cursor, var n, n x (16 site, var hlc); FINAL adds the report.
 * ------------------------------------------------------------------- */
static unsigned char *sx_put_report(unsigned char *p,
                                    const sync_apply_report *r) {
  p = sx_wv(p, r->rows);
  p = sx_wv(p, r->inserted);
  p = sx_wv(p, r->updated);
  p = sx_wv(p, r->deleted);
  p = sx_wv(p, r->unchanged);
  p = sx_wv(p, r->conflicts);
  p = sx_wv(p, r->refused);
  return sx_wv(p, r->exited);
}

static void sx_report_add(sync_apply_report *a, const sync_apply_report *b) {
  a->rows += b->rows;
  a->inserted += b->inserted;
  a->updated += b->updated;
  a->deleted += b->deleted;
  a->unchanged += b->unchanged;
  a->conflicts += b->conflicts;
  a->refused += b->refused;
  a->exited += b->exited;
  a->unknown += b->unknown;
}

static int sx_send_request(sync_session *s, int final) {
  sync_txn *x;
  sync_request *req = NULL;
  unsigned char *b, *p;
  size_t cap, i;
  int rc;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  rc = sync_request_make(x, s->peer, &req);
  sync_txn_abort(x);
  if (rc) return sx_sess_fail(s, rc, "request: %s", sync_strerror(rc));
  if ((s->dry || s->held) && s->vcur_ok) { /* nothing was committed */
    req->cur = s->vcur;
    req->mark = s->vmark;
    req->scope = s->vscope;
  }
  cap = 1 + 2 * SX_SITE_LEN + 8 + SX_CURSOR_MAX + 8 + 2 * SX_VARINT_MAX +
        SX_SCOPE_MAX + req->nvv * (SX_SITE_LEN + SX_VARINT_MAX) +
        8 * SX_VARINT_MAX; /* FINAL's counts */
  b = (unsigned char *)sx_malloc(&s->al, cap);
  if (!b) {
    sync_request_free(req);
    return sx_sess_fail(s, SYNC_ENOMEM, "out of memory");
  }
  p = b;
  /* Held past our cursor, the position asked from is not one we hold:
   * it must not be acknowledged (the sender would collect tombstones of
   * the rows we could not take). */
  *p++ = (unsigned char)((final ? SX_RQ_FINAL : 0) |
                         (s->dry || (s->held && s->vcur_ok) ? SX_RQ_DRY : 0) |
                         (s->o.policy == SYNC_APPLY_NEWER ? SX_RQ_WHOLE : 0));
  memcpy(p, req->requester, SX_SITE_LEN);
  p += SX_SITE_LEN;
  memcpy(p, req->sender, SX_SITE_LEN);
  p += SX_SITE_LEN;
  sx_put_le64(p, req->schema_hash);
  p += 8;
  p = sx_wcursor(p, &req->cur);
  sx_put_le64(p, req->mark.id);
  p = sx_wv(p + 8, req->mark.start);
  p = sx_wscope(p, &req->scope);
  p = sx_wv(p, req->nvv);
  for (i = 0; i < req->nvv; i++) {
    memcpy(p, req->vv[i].site, SX_SITE_LEN);
    p += SX_SITE_LEN;
    p = sx_wv(p, req->vv[i].hlc);
  }
  if (final) p = sx_put_report(p, &s->phase_rep);
  sync_request_free(req);
  rc = sx_msg_put(s, SX_M_REQUEST, b, (size_t)(p - b));
  sx_free(&s->al, b);
  return rc ? sx_sess_fail(s, rc, "out of memory") : 0;
}

static int sx_phase_start(sync_session *s) {
  memset(&s->phase_rep, 0, sizeof s->phase_rep);
  s->vcur_ok = 0;
  s->held = 0;
  if (s->phase >= s->nphase) {
    s->state = SX_ST_END;
    return 0;
  }
  if (s->roles[s->phase] == SX_ROLE_SEND) {
    s->state = SX_ST_SEND;
    return 0;
  }
  s->state = SX_ST_RECV;
  return sx_send_request(s, 0);
}

static void sx_progress(sync_session *s) {
  if (s->o.progress) s->o.progress(s->o.progress_ctx, &s->st);
}

/* Rows of the tables we send, for the progress of an initial stream. */
static uint64_t sx_rows_expected(sync_session *s, sync_txn *x) {
  uint64_t total = 0, n;
  unsigned t;
  for (t = 0; t < s->env->schema->ntables; t++)
    if ((s->send_mask[t >> 3] >> (t & 7)) & 1)
      if (sync_count(x, t, &n) == 0) total += n;
  return total;
}

/* A request arrived in a sending phase: acknowledge it, then answer with
 * the next chunk (or, for FINAL, move to the next phase). */
static int sx_on_request(sync_session *s, const unsigned char *b, size_t n) {
  sx_rd r;
  const unsigned char *q;
  sync_request req;
  unsigned flags;
  uint64_t nvv, i;
  sync_txn *x;
  int rc;
  memset(&req, 0, sizeof req);
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  q = sx_rbytes(&r, 1 + 2 * SX_SITE_LEN + 8);
  if (!q || (q[0] & ~(SX_RQ_FINAL | SX_RQ_DRY | SX_RQ_WHOLE)))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST");
  flags = q[0];
  req.al = s->al;
  memcpy(req.requester, q + 1, SX_SITE_LEN);
  memcpy(req.sender, q + 1 + SX_SITE_LEN, SX_SITE_LEN);
  req.schema_hash = sx_get_le64(q + 1 + 2 * SX_SITE_LEN);
  if (sx_rcursor(&r, &req.cur) || !(q = sx_rbytes(&r, 8)))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST cursor");
  req.mark.id = sx_get_le64(q);
  req.mark.start = sx_rv(&r);
  if (sx_rscope(&r, &req.scope))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST scope");
  nvv = sx_rv(&r);
  if (r.bad || nvv > (uint64_t)(r.end - r.p) / (SX_SITE_LEN + 1))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST vector");
  if (memcmp(req.requester, s->peer, SX_SITE_LEN) ||
      memcmp(req.sender, s->env->site, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "REQUEST names other replicas");
  req.vv = (sync_stamp *)sx_malloc(&s->al, (size_t)(nvv ? nvv : 1) *
                                               sizeof(sync_stamp));
  if (!req.vv) return sx_sess_fail(s, SYNC_ENOMEM, "out of memory");
  req.nvv = (size_t)nvv;
  for (i = 0; i < nvv; i++) {
    q = sx_rbytes(&r, SX_SITE_LEN);
    if (q) memcpy(req.vv[i].site, q, SX_SITE_LEN);
    req.vv[i].hlc = sx_rv(&r);
  }
  if (flags & SX_RQ_FINAL) {
    sync_apply_report rep;
    memset(&rep, 0, sizeof rep);
    rep.rows = sx_rv(&r);
    rep.inserted = sx_rv(&r);
    rep.updated = sx_rv(&r);
    rep.deleted = sx_rv(&r);
    rep.unchanged = sx_rv(&r);
    rep.conflicts = sx_rv(&r);
    rep.refused = sx_rv(&r);
    rep.exited = sx_rv(&r);
    if (!r.bad) sx_report_add(&s->st.peer_applied, &rep);
  }
  if (r.bad || r.p != r.end) {
    sx_free(&s->al, req.vv);
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST");
  }
  /* The requester's view of our log must be this file's history. */
  if ((rc = sx_check_view(s, sx_cursor_version(&req.cur), &req.mark))) {
    sx_free(&s->al, req.vv);
    return rc;
  }
  /* What the requester holds of us lets tombstones go; a dry run holds
   * nothing new. */
  if (!(flags & SX_RQ_DRY) && !s->dry) {
    rc = sync_txn_begin(s->env, 0, &x);
    if (!rc) {
      rc = sync_request_ack(x, &req);
      if (rc) sync_txn_abort(x);
      else rc = sync_txn_commit(x);
    }
    if (rc) {
      sx_free(&s->al, req.vv);
      return sx_sess_fail(s, rc, "recording the peer's position: %s",
                          sync_strerror(rc));
    }
  }
  if (flags & SX_RQ_FINAL) {
    sx_free(&s->al, req.vv);
    sx_progress(s);
    s->phase++;
    return sx_phase_start(s);
  }
  {
    sync_delta *d = NULL;
    sync_delta_opts o;
    size_t flen = 0, raw = 0;
    memset(&o, 0, sizeof o);
    o.max_rows = s->o.chunk_rows;
    o.max_bytes = s->o.chunk_bytes;
    o.tables = s->send_mask;
    o.filter = s->o.filter;
    o.filter_ctx = s->o.filter_ctx;
    o.whole_rows = (flags & SX_RQ_WHOLE) != 0;
    /* The server follows the client's scope: rows leave it as exit
     * markers, and a new scope restarts its stream. */
    o.scope = s->o.server;
    o.filter_version = s->o.filter_version;
    o.visible = s->o.server ? s->read_mask : NULL;
    rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x);
    if (!rc) {
      int initial = req.cur.mode == SX_MODE_LOG && req.cur.version == 0 &&
                    req.cur.seq == 0;
      rc = sync_delta_make(x, &req, &o, &d);
      s->sent_snap = sync_txn_version(x);
      if (!rc && initial) {
        unsigned char pb[SX_VARINT_MAX];
        uint64_t total = sx_rows_expected(s, x);
        rc = sx_msg_put(s, SX_M_PLAN, pb, (size_t)(sx_wv(pb, total) - pb));
      }
      sync_txn_abort(x);
    }
    sx_free(&s->al, req.vv);
    if (!rc) rc = sync_encoder_begin(s->enc, d, &flen, &raw);
    if (rc) {
      sync_delta_free(d);
      return sx_sess_fail(s, rc, "cutting a chunk: %s (%s)", sync_strerror(rc),
                          sync_env_errmsg(s->env));
    }
    s->frame_out = 1;
    s->st.frames_sent++;
    s->st.rows_sent += sync_delta_rows(d);
    s->st.frame_bytes_sent += flen;
    s->st.raw_bytes_sent += raw;
    sync_delta_free(d);
    sx_progress(s);
  }
  return 0;
}

/* on_refused of the server's apply: keep the refusal for the answer. */
static int sx_rf_collect(void *ctx, const sync_refused *r) {
  sync_session *s = (sync_session *)ctx;
  size_t tl = strlen(r->text);
  unsigned char *p;
  if (s->rf_n >= SX_RF_MAX) {
    s->rf_over = 1;
    return SYNC_ELIMIT; /* the chunk is refused whole: bounded memory */
  }
  if (tl > SYNC_REFUSE_TEXT_MAX) tl = SYNC_REFUSE_TEXT_MAX;
  if (sx_buf_reserve(&s->rf, SX_RF_ENTRY_MAX)) return SYNC_ENOMEM;
  p = s->rf.p + s->rf.len;
  p = sx_wv(p, r->table);
  p = sx_wv(p, r->key.len);
  memcpy(p, r->key.data, r->key.len);
  p += r->key.len;
  p = sx_wv(p, (uint64_t)r->reason);
  p = sx_wv(p, tl);
  memcpy(p, r->text, tl);
  p += tl;
  s->rf.len = (size_t)(p - s->rf.p);
  s->rf_n++;
  return 0;
}

static int sx_rf_send(sync_session *s);

/* A chunk arrived in a receiving phase: apply it with its cursor (the
 * server: answer the rows it refused first), then ask for the next one,
 * or end the phase. */
static int sx_on_delta(sync_session *s, sync_delta *d) {
  sync_apply_opts ao;
  sync_apply_report rep;
  sync_txn *x;
  int rc, last = d->last, answer;
  if (memcmp(d->sender, s->peer, SX_SITE_LEN)) {
    sync_delta_free(d);
    return sx_sess_fail(s, SYNC_EPROTO, "a chunk from another sender");
  }
  memset(&ao, 0, sizeof ao);
  ao.policy = s->o.policy | (s->dry ? SYNC_APPLY_DRY_RUN : 0);
  ao.writable = s->recv_mask;
  ao.relay = s->relay;
  ao.max_ahead_ms = s->o.max_ahead_ms;
  ao.refuse_whole = s->o.refuse_whole;
  ao.refuse_exits = s->o.server; /* a client never removes server rows */
  /* A server answers the rows it refuses (not in a dry run: nothing is
   * written on either side). */
  answer = s->o.server && !s->dry;
  if (s->o.server) {
    /* A row the client holds outside its scope that we keep as it is
     * would never reach it again: log it, so it exits. */
    ao.scope_tables = s->send_mask;
    ao.scope_filter = s->o.filter;
    ao.scope_filter_ctx = s->o.filter_ctx;
    ao.check = s->o.check_write;
    ao.check_ctx = s->o.check_write_ctx;
  }
  if (answer) {
    ao.on_refused = sx_rf_collect;
    ao.on_refused_ctx = s;
    s->rf.len = 0;
    s->rf_n = s->rf_pos = 0;
    s->rf_over = 0;
  }
  rc = sync_txn_begin(s->env, 0, &x);
  if (!rc) {
    rc = answer ? sx_delta_apply_held(x, d, &ao, &rep)
                : sync_delta_apply_opts(x, d, &ao, &rep);
    if (answer && s->rf_n &&
        (s->rf_over || (rc == SYNC_EPERM && s->o.refuse_whole))) {
      /* Nothing of the chunk applies: the refused rows are answered and
       * the same range is asked for again once they are taken back. */
      sync_txn_abort(x);
      s->rf_whole = 1;
      rc = 0;
    } else if (rc || s->dry) {
      sync_txn_abort(x);
    } else {
      s->rf_whole = 0;
      rc = sync_txn_commit(x);
    }
  }
  s->st.frames_received++;
  s->st.rows_received += sync_delta_rows(d);
  if (rc) {
    int err = rc;
    sync_delta_free(d);
    return sx_sess_fail(s, err, "applying a chunk: %s (%s)",
                        sync_strerror(err), sync_env_errmsg(s->env));
  }
  if (rep.unknown) s->held = 1;
  if (s->dry || s->held) {
    s->vcur = d->end;
    s->vmark = d->mark;
    s->vscope = d->scope;
    s->vcur_ok = 1;
  }
  if (answer && s->rf_n) {
    s->rf_start = d->start;
    s->rf_end = d->end;
    s->rf_mark = d->mark;
    s->rf_last = last;
    sync_delta_free(d);
    if (s->rf_whole) {
      /* Only the refusals count: the rows are sent again. */
      memset(&rep, 0, sizeof rep);
      rep.refused = s->rf_n;
      if (++s->rf_rounds > SX_RF_ROUNDS)
        return sx_sess_fail(s, SYNC_EPERM,
                            "%u chunks in a row refused whole: the peer "
                            "keeps sending refused rows",
                            (unsigned)s->rf_rounds - 1);
    } else {
      s->rf_rounds = 0;
    }
    sx_report_add(&s->phase_rep, &rep);
    sx_report_add(&s->st.applied, &rep);
    sx_progress(s);
    s->state = SX_ST_ANSWER;
    return sx_rf_send(s);
  }
  s->rf_rounds = 0;
  sync_delta_free(d);
  sx_report_add(&s->phase_rep, &rep);
  sx_report_add(&s->st.applied, &rep);
  sx_progress(s);
  if (!last) return sx_send_request(s, 0);
  if ((rc = sx_send_request(s, 1))) return rc;
  s->phase++;
  return sx_phase_start(s);
}

/* ---------------------------------------------------------------------
 * Refusals.  REFUSED: u8 flags (1 = a frame of the server's rows
 * follows), var n, n x (var table, var key length, key, var reason, var
 * text length, text).  REVERTED: var n (the entries taken back).
 * ------------------------------------------------------------------- */

/* Read one entry at r. */
static int sx_rf_read(sx_rd *r, unsigned ntables, unsigned *tid,
                      const unsigned char **key, size_t *klen, int *reason,
                      const char **text, size_t *tlen) {
  uint64_t t = sx_rv(r), kl, rs, tl;
  kl = sx_rvb(r, SYNC_MAX_KEY + 1);
  *key = sx_rbytes(r, (size_t)kl);
  rs = sx_rv(r);
  tl = sx_rvb(r, SYNC_REFUSE_TEXT_MAX + 1);
  *text = (const char *)sx_rbytes(r, (size_t)tl);
  if (r->bad || !*key || !*text || t >= ntables || !kl || rs > 65535)
    return SYNC_EPROTO;
  *tid = (unsigned)t;
  *klen = (size_t)kl;
  *reason = (int)rs;
  *tlen = (size_t)tl;
  return 0;
}

/* Server: is the stored row in x->old (table tid) in the client's share,
 * as the row filter says?  1 or 0, or SYNC_ENOMEM (*vals: the values'
 * room, made on first use, freed by the caller). */
static int sx_rf_in_share(sync_session *s, sync_txn *x, unsigned tid,
                          const unsigned char *key, size_t klen,
                          sync_value **vals) {
  if (!s->o.filter) return 1;
  if (!*vals &&
      !(*vals = (sync_value *)sx_malloc(
            &s->al, sizeof(sync_value) * (SYNC_MAX_COLUMNS + 1))))
    return SYNC_ENOMEM;
  return sx_filter_row(x, s->o.filter, s->o.filter_ctx, s->peer, tid, key,
                       klen, &x->old, *vals);
}

/* Server: the next REFUSED message, with its rows. */
static int sx_rf_send(sync_session *s) {
  sx_rd r;
  sync_txn *x;
  sync_delta *d = NULL;
  sync_value *fvals = NULL;
  uint64_t *zero = NULL;
  unsigned char *b = NULL, *p;
  size_t start = s->rf_pos, k = 0, bytes = 0, maxb, flen = 0, raw = 0;
  int rc;
  maxb = s->o.chunk_bytes ? s->o.chunk_bytes : ((size_t)1 << 20);
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  if ((rc = sx_scratch(x)) || (rc = sx_sites_load(x))) goto done;
  d = sx_delta_new(&s->al);
  zero = (uint64_t *)sx_malloc(&s->al, sizeof(uint64_t) * (x->nsites + 1));
  if (!d || !zero) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  memset(zero, 0, sizeof(uint64_t) * (x->nsites + 1));
  r.p = s->rf.p + s->rf_pos;
  r.end = s->rf.p + s->rf.len;
  r.bad = 0;
  while (k < SX_RF_PART && s->rf_pos < s->rf.len && (!k || bytes < maxb)) {
    unsigned tid;
    const unsigned char *key;
    const char *text;
    size_t klen, tlen;
    int reason;
    sx_slice v;
    if ((rc = sx_rf_read(&r, s->env->schema->ntables, &tid, &key, &klen,
                         &reason, &text, &tlen)))
      goto done;
    /* The server's row goes back only in a table the client may read:
     * in another, a refused row is dropped there. */
    rc = (s->send_mask[tid >> 3] >> (tid & 7)) & 1
             ? sx_get(s->env->st, x->t, s->env->tdbi[tid], key, klen, &v)
             : SYNC_NOTFOUND;
    if (rc == 0) {
      if ((rc = sx_row_decode(v.p, v.n, key, klen, &x->old))) goto done;
      /* Nor a row outside the client's share (the row filter): the
       * client drops its copy, as it leaves a row that exits. */
      if ((rc = sx_rf_in_share(s, x, tid, key, klen, &fvals)) < 0) goto done;
      if (rc &&
          (rc = sx_delta_add(d, x, tid, key, klen, &x->old, zero, NULL, 1,
                             &bytes)))
        goto done;
      rc = 0;
    } else if (rc != SYNC_NOTFOUND) {
      goto done;
    }
    s->rf_pos = (size_t)(r.p - s->rf.p);
    k++;
  }
  memcpy(d->sender, s->env->site, SX_SITE_LEN);
  memcpy(d->receiver, s->peer, SX_SITE_LEN);
  d->schema_hash = s->env->schema->hash;
  d->last = 1;
  d->nsites = x->nsites;
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(
      &s->al, (size_t)(x->nsites ? x->nsites : 1) * SX_SITE_LEN);
  d->vv = (uint64_t *)sx_malloc(&s->al,
                                sizeof(uint64_t) * (x->nsites ? x->nsites : 1));
  if (!d->sites || !d->vv) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  memcpy(d->sites, x->sites, (size_t)x->nsites * SX_SITE_LEN);
  memset(d->vv, 0, sizeof(uint64_t) * (x->nsites ? x->nsites : 1));
  d->nvv = x->nsites;
  b = (unsigned char *)sx_malloc(&s->al, 1 + SX_VARINT_MAX +
                                             (s->rf_pos - start));
  if (!b) {
    rc = SYNC_ENOMEM;
    goto done;
  }
  p = b;
  *p++ = (unsigned char)(d->nrows ? 1 : 0);
  p = sx_wv(p, k);
  memcpy(p, s->rf.p + start, s->rf_pos - start);
  p += s->rf_pos - start;
  s->rf_part = k;
  if ((rc = sx_msg_put(s, SX_M_REFUSED, b, (size_t)(p - b)))) goto done;
  s->st.refusals += k;
  if (d->nrows) {
    if ((rc = sync_encoder_begin(s->enc, d, &flen, &raw))) goto done;
    s->frame_out = 1;
    s->st.frames_sent++;
    s->st.rows_sent += d->nrows;
    s->st.frame_bytes_sent += flen;
    s->st.raw_bytes_sent += raw;
  }
done:
  sync_txn_abort(x);
  sync_delta_free(d);
  sx_free(&s->al, zero);
  sx_free(&s->al, fvals);
  sx_free(&s->al, b);
  if (rc)
    return sx_sess_fail(s, rc, "answering refused rows: %s",
                        sync_strerror(rc));
  return 0;
}

/* Server: the client took back the last REFUSED message's rows. */
static int sx_on_reverted(sync_session *s, const unsigned char *b, size_t n) {
  sx_rd r;
  uint64_t k;
  sync_txn *x;
  int rc;
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  k = sx_rv(&r);
  if (r.bad || r.p != r.end || k != s->rf_part)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REVERTED");
  if (s->rf_pos < s->rf.len) return sx_rf_send(s);
  s->rf.len = 0;
  s->rf_n = s->rf_pos = 0;
  s->state = SX_ST_RECV;
  if (s->rf_whole) return sx_send_request(s, 0); /* the same range again */
  /* Every refusal is answered: the run moves past the chunk. */
  rc = sync_txn_begin(s->env, 0, &x);
  if (!rc) {
    rc = sx_peer_advance(x, s->peer, &s->rf_start, &s->rf_end, &s->rf_mark,
                         s->rf_last);
    if (rc) sync_txn_abort(x);
    else rc = sync_txn_commit(x);
  }
  if (rc)
    return sx_sess_fail(s, rc, "recording the peer's cursor: %s",
                        sync_strerror(rc));
  if (!s->rf_last) return sx_send_request(s, 0);
  if ((rc = sx_send_request(s, 1))) return rc;
  s->phase++;
  return sx_phase_start(s);
}

/* Client: take back the refused rows (the server's versions in d, or
 * none), log them, and say so. */
static int sx_rf_apply(sync_session *s, sync_delta *d) {
  sx_rd r;
  sync_txn *x;
  uint64_t n, i;
  size_t j = 0;
  unsigned char pb[SX_VARINT_MAX];
  int rc;
  if (d && (memcmp(d->sender, s->peer, SX_SITE_LEN) ||
            memcmp(d->receiver, s->env->site, SX_SITE_LEN) ||
            d->schema_hash != s->env->schema->hash ||
            sx_delta_valid(d, s->env->schema))) {
    sync_delta_free(d);
    return sx_sess_fail(s, SYNC_EPROTO, "a malformed frame of refused rows");
  }
  r.p = s->rf.p + 1;
  r.end = s->rf.p + s->rf.len;
  r.bad = 0;
  n = sx_rv(&r);
  if ((rc = sync_txn_begin(s->env, 0, &x))) {
    sync_delta_free(d);
    return sx_sess_fail(s, rc, "cannot write this replica: %s",
                        sync_strerror(rc));
  }
  for (i = 0; i < n && !rc; i++) {
    unsigned tid;
    const unsigned char *key;
    const char *text;
    size_t klen, tlen;
    int reason;
    const sx_drow *srow = NULL;
    if ((rc = sx_rf_read(&r, s->env->schema->ntables, &tid, &key, &klen,
                         &reason, &text, &tlen)))
      break;
    if (d && j < d->nrows && d->rows[j].tid == tid &&
        d->rows[j].klen == klen &&
        !memcmp(d->arena.p + d->rows[j].koff, key, klen))
      srow = &d->rows[j++];
    rc = sx_reject_apply(x, s->peer, tid, key, klen, reason, text, tlen, d,
                         srow, s->sent_snap);
    if (rc > 0) {
      s->st.reverted++;
      rc = 0;
    }
  }
  if (!rc && (r.bad || r.p != r.end || (d && j != d->nrows)))
    rc = SYNC_EPROTO;
  if (rc) sync_txn_abort(x);
  else rc = sync_txn_commit(x);
  sync_delta_free(d);
  s->rf_frame = 0;
  s->rf.len = 0;
  if (rc)
    return sx_sess_fail(s, rc, "taking back refused rows: %s (%s)",
                        sync_strerror(rc), sync_env_errmsg(s->env));
  s->st.refusals += n;
  return sx_msg_put(s, SX_M_REVERTED, pb, (size_t)(sx_wv(pb, n) - pb))
             ? sx_sess_fail(s, SYNC_ENOMEM, "out of memory")
             : 0;
}

/* Client: REFUSED arrived in a sending phase. */
static int sx_on_refused(sync_session *s, const unsigned char *b, size_t n) {
  sx_rd r;
  uint64_t k, i;
  int rc;
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  if (n < 1 || (b[0] & ~1u))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REFUSED");
  r.p++;
  k = sx_rvb(&r, SX_RF_PART + 1);
  if (!k) r.bad = 1; /* a REFUSED names at least one row */
  for (i = 0; i < k && !r.bad; i++) {
    unsigned tid;
    const unsigned char *key;
    const char *text;
    size_t klen, tlen;
    int reason;
    if (sx_rf_read(&r, s->env->schema->ntables, &tid, &key, &klen, &reason,
                   &text, &tlen))
      r.bad = 1;
  }
  if (r.bad || r.p != r.end)
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REFUSED");
  s->rf.len = 0;
  if ((rc = sx_buf_reserve(&s->rf, n)))
    return sx_sess_fail(s, rc, "out of memory");
  memcpy(s->rf.p, b, n);
  s->rf.len = n;
  if (b[0] & 1) {
    s->rf_frame = 1; /* the server's rows come in the next frame */
    return 0;
  }
  return sx_rf_apply(s, NULL);
}

static int sx_on_data(sync_session *s, const unsigned char *b, size_t n) {
  sync_inbuf in;
  s->st.frame_bytes_received += n;
  in.ptr = b;
  in.size = n;
  in.pos = 0;
  while (in.pos < in.size) {
    sync_delta *d = NULL;
    int rc = sync_decoder_feed(s->dec, &in, &d);
    if (rc)
      return sx_sess_fail(s, rc, "a chunk from the peer: %s (%s)",
                          sync_strerror(rc), sync_decoder_reason(s->dec));
    if (d) {
      s->st.raw_bytes_received += sx_decoder_last_raw(s->dec);
      if (in.pos != in.size) {
        sync_delta_free(d);
        return sx_sess_fail(s, SYNC_EPROTO, "bytes after a chunk");
      }
      if (s->state == SX_ST_REPAIR) return sx_on_repair_delta(s, d);
      if (s->state == SX_ST_SEND) {
        s->st.frames_received++;
        s->st.rows_received += sync_delta_rows(d);
        return sx_rf_apply(s, d);
      }
      return sx_on_delta(s, d);
    }
  }
  return 0;
}

static int sx_on_error(sync_session *s, const unsigned char *b, size_t n) {
  sx_rd r;
  uint64_t code, len;
  const unsigned char *q;
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  code = sx_rv(&r);
  len = sx_rv(&r);
  q = sx_rbytes(&r, (size_t)len);
  s->state_was_recv = s->state == SX_ST_RECV;
  s->state = SX_ST_OVER;
  s->status = SYNC_EPEER;
  if (q) {
    int c = (int)sx_unzigzag(code);
    snprintf(s->errmsg, sizeof s->errmsg, "the peer ended the session: %.*s (%s)",
             (int)(len < 200 ? len : 200), (const char *)q, sync_strerror(c));
    /* What no retry can mend keeps its own code. */
    if (c == SYNC_ESCHEMA || c == SYNC_EVERSION || c == SYNC_EPERM ||
        c == SYNC_ESTALE || c == SYNC_EHISTORY)
      s->status = c;
    if (c == SYNC_ESTALE && s->state_was_recv && s->have_peer && !s->dry) {
      /* We may lack deletes of this sender: say so (sync_health_get). */
      sync_txn *x;
      if (sync_txn_begin(s->env, 0, &x) == 0) {
        if (sx_peer_set_stale(x, s->peer)) sync_txn_abort(x);
        else (void)sync_txn_commit(x);
      }
    }
  } else {
    snprintf(s->errmsg, sizeof s->errmsg, "the peer ended the session");
  }
  return s->status;
}

/* ---------------------------------------------------------------------
 * Repair (repair.c): the two sides alternate turns, each a REPAIR
 * message and, when it carries rows, one DATA frame after it.
 * ------------------------------------------------------------------- */
#ifndef SYNC_OMIT_REPAIR
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
      if (rc) sync_txn_abort(x);
      else rc = sync_txn_commit(x);
    }
    sx_free(&s->al, maxcl);
    if (rc)
      return sx_sess_fail(s, rc, "recording what the peer collected: %s",
                          sync_strerror(rc));
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
      if (!rc && (p.cur.mode != SX_MODE_LOG ||
                  sx_poscmp(p.cur.version, p.cur.seq, rs->v0, UINT32_MAX) <
                      0)) {
        memset(&p.cur, 0, sizeof p.cur);
        p.cur.mode = SX_MODE_LOG;
        p.cur.version = rs->v0;
        p.cur.seq = UINT32_MAX;
        /* The server's mark there is not known: none, until the next
         * chunk brings one. */
        memset(&p.mark, 0, sizeof p.mark);
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
      if (rc) sync_txn_abort(x);
      else rc = sync_txn_commit(x);
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
  size_t n, flen = 0, raw = 0;
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
    rc = sync_encoder_begin(s->enc, d, &flen, &raw);
    if (rc) {
      sync_delta_free(d);
      return sx_sess_fail(s, rc, "a repair frame: %s", sync_strerror(rc));
    }
    s->frame_out = 1;
    s->st.frames_sent++;
    s->st.rows_sent += sync_delta_rows(d);
    s->st.frame_bytes_sent += flen;
    s->st.raw_bytes_sent += raw;
    sync_delta_free(d);
  }
  sx_repair_stats(s);
  sx_progress(s);
  if (sx_rp_stats_of(s->rp)->done) return sx_repair_done(s);
  s->state = SX_ST_REPAIR;
  return 0;
}

static int sx_repair_start(sync_session *s) {
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
  if ((rc = sx_rp_new(s->env, &ro, &s->rp)))
    return sx_sess_fail(s, rc, "out of memory");
  s->state = SX_ST_REPAIR;
  if (s->o.server) return sx_repair_turn(s, 1);
  return 0;
}

static int sx_on_repair(sync_session *s, const unsigned char *b, size_t n) {
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

static int sx_on_repair_delta(sync_session *s, sync_delta *d) {
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
static int sx_repair_start(sync_session *s) {
  return sx_sess_fail(s, SYNC_ENOTSUP, "this build has no repair");
}

static int sx_on_repair(sync_session *s, const unsigned char *b, size_t n) {
  (void)b;
  (void)n;
  return sx_sess_fail(s, SYNC_ENOTSUP, "this build has no repair");
}

static int sx_on_repair_delta(sync_session *s, sync_delta *d) {
  sync_delta_free(d);
  return sx_sess_fail(s, SYNC_ENOTSUP, "this build has no repair");
}
#endif

/* A whole control message (reassembled) or DATA payload. */
static int sx_dispatch(sync_session *s, unsigned type, const unsigned char *b,
                       size_t n) {
  if (type == SX_M_ERROR) return sx_on_error(s, b, n);
  switch (s->state) {
  case SX_ST_HELLO:
    if (type == SX_M_HELLO) return sx_on_hello(s, b, n);
    break;
  case SX_ST_WELCOME:
    if (type == SX_M_WELCOME) return sx_on_welcome(s, b, n);
    break;
  case SX_ST_SCHEMA:
    if (type == SX_M_SCHEMA) return sx_on_schema(s, b, n);
    break;
  case SX_ST_RECV:
    if (type == SX_M_DATA) return sx_on_data(s, b, n);
    if (type == SX_M_PLAN) {
      sx_rd r;
      r.p = b;
      r.end = b + n;
      r.bad = 0;
      s->st.rows_expected = sx_rv(&r);
      if (r.bad || r.p != r.end)
        return sx_sess_fail(s, SYNC_EPROTO, "malformed PLAN");
      return 0;
    }
    break;
  case SX_ST_SEND:
    if (s->frame_out) break; /* the peer answers only a whole frame */
    if (s->rf_frame) {
      if (type == SX_M_DATA) return sx_on_data(s, b, n);
      break;
    }
    if (type == SX_M_REQUEST) return sx_on_request(s, b, n);
    if (type == SX_M_REFUSED && !s->o.server) return sx_on_refused(s, b, n);
    break;
  case SX_ST_ANSWER:
    if (type == SX_M_REVERTED && !s->frame_out)
      return sx_on_reverted(s, b, n);
    break;
  case SX_ST_REPAIR:
    if (s->frame_out) break; /* the peer speaks only after our frame */
    if (type == SX_M_DATA && s->rp_frame) return sx_on_data(s, b, n);
    if (type == SX_M_REPAIR && !s->rp_frame) return sx_on_repair(s, b, n);
    break;
  default:
    break;
  }
  return sx_sess_fail(s, SYNC_EPROTO, "unexpected message %u in state %d",
                      type, s->state);
}

/* One verified message (or fragment). */
static int sx_on_message(sync_session *s, unsigned type, const unsigned char *b,
                         size_t n) {
  unsigned base = type & ~SX_MORE;
  int rc;
  s->st.messages_received++;
  if (s->ctl_type && (int)base != s->ctl_type)
    return sx_sess_fail(s, SYNC_EPROTO, "fragments of two messages mixed");
  if (base == SX_M_DATA) {
    if (type & SX_MORE) return sx_sess_fail(s, SYNC_EPROTO, "fragmented DATA");
    return sx_dispatch(s, base, b, n);
  }
  if (base < SX_M_HELLO || base > SX_M_SCHEMA)
    return sx_sess_fail(s, SYNC_EPROTO, "unknown message type %u", base);
  if (!(type & SX_MORE) && !s->ctl_type) return sx_dispatch(s, base, b, n);
  if (n > SX_CTL_MAX - s->ctl.len)
    return sx_sess_fail(s, SYNC_ELIMIT, "a control message over %u bytes",
                        (unsigned)SX_CTL_MAX);
  if (n) {
    if ((rc = sx_buf_reserve(&s->ctl, n)))
      return sx_sess_fail(s, rc, "out of memory");
    memcpy(s->ctl.p + s->ctl.len, b, n);
    s->ctl.len += n;
  }
  s->ctl_type = (int)base; /* a message is open until its last fragment */
  if (type & SX_MORE) return 0;
  s->ctl_type = 0;
  {
    static const unsigned char none[1] = {0};
    size_t len = s->ctl.len;
    s->ctl.len = 0;
    rc = sx_dispatch(s, base, len ? s->ctl.p : none, len);
  }
  return rc;
}

/* ---------------------------------------------------------------------
 * Public calls
 * ------------------------------------------------------------------- */
SYNC_API int sync_session_create(sync_env *env, const sync_session_opts *o,
                                 sync_session **out) {
  sync_session *s;
  sync_codec_opts co;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!env || !o || !env->schema || !env->st) return SYNC_EINVAL;
  if (o->mode < 0 || o->mode > SYNC_BOTH || o->credential_len > SX_CRED_MAX ||
      (o->credential_len && !o->credential) ||
      (o->max_message && (o->max_message < SX_MSG_FLOOR ||
                          o->max_message > SX_MSG_MAX)) ||
      o->policy < SYNC_APPLY_MERGE || o->policy > SYNC_APPLY_APPEND)
    return SYNC_EINVAL;
  s = (sync_session *)sx_malloc(&env->al, sizeof *s);
  if (!s) return SYNC_ENOMEM;
  memset(s, 0, sizeof *s);
  s->env = env;
  s->al = env->al;
  s->o = *o;
  if (!s->o.max_ahead_ms) s->o.max_ahead_ms = 3600u * 1000u;
  s->own_max = o->max_message ? o->max_message : SX_MSG_DEFAULT;
  s->peer_max = SX_MSG_FLOOR;
  s->mode = o->mode ? o->mode : SYNC_BOTH;
  s->dry = o->dry_run != 0;
#ifdef SYNC_OMIT_REPAIR
  if (o->repair) {
    sx_free(&env->al, s);
    return SYNC_ENOTSUP;
  }
#endif
  s->repair = o->repair != 0;
  sx_buf_init(&s->msg, &s->al);
  sx_buf_init(&s->ctl, &s->al);
  sx_buf_init(&s->out, &s->al);
  sx_buf_init(&s->rf, &s->al);
  memset(&co, 0, sizeof co);
  co.level = o->level;
  co.dict = o->dict;
  co.dict_len = o->dict_len;
  co.max_frame = co.max_body = o->max_frame;
  if ((rc = sync_encoder_create(&env->al.a, &co, &s->enc)) ||
      (rc = sync_decoder_create(&env->al.a, &co, &s->dec)) ||
      (rc = sx_buf_reserve(&s->msg, SX_MSG_FLOOR))) {
    sync_session_free(s);
    return rc;
  }
  if (o->server) {
    s->state = SX_ST_HELLO;
  } else {
    s->nphase = 0;
    if (s->mode & SYNC_PULL) s->roles[s->nphase++] = SX_ROLE_RECV;
    if (s->mode & SYNC_PUSH) s->roles[s->nphase++] = SX_ROLE_SEND;
    s->state = SX_ST_WELCOME;
    if ((rc = sx_send_hello(s))) {
      sync_session_free(s);
      return rc;
    }
  }
  s->t0 = sx_now_ns(); /* from here on it counts in the stats */
  *out = s;
  return 0;
}

/* Add a finished session to its env's stats. */
static void sx_sess_count(sync_session *s) {
  sx_stats *x = &s->env->stats;
  uint64_t t1 = sx_now_ns();
  sx_stats_add(x, SX_ST_SESSIONS, 1);
  sx_stats_add(x, SX_ST_SESSIONS_FAILED, sync_session_status(s) != 1);
  sx_stats_add(x, SX_ST_CHUNKS_SENT, s->st.frames_sent);
  sx_stats_add(x, SX_ST_CHUNKS_RECEIVED, s->st.frames_received);
  sx_stats_add(x, SX_ST_ROWS_SENT, s->st.rows_sent);
  sx_stats_add(x, SX_ST_ROWS_RECEIVED, s->st.rows_received);
  sx_stats_add(x, SX_ST_BYTES_SENT, s->st.bytes_sent);
  sx_stats_add(x, SX_ST_BYTES_RECEIVED, s->st.bytes_received);
  sx_stats_add(x, SX_ST_FRAME_BYTES_SENT, s->st.frame_bytes_sent);
  sx_stats_add(x, SX_ST_FRAME_BYTES_RECEIVED, s->st.frame_bytes_received);
  sx_stats_add(x, SX_ST_RAW_BYTES_SENT, s->st.raw_bytes_sent);
  sx_stats_add(x, SX_ST_RAW_BYTES_RECEIVED, s->st.raw_bytes_received);
  sx_stats_time(x, SX_H_SESSION, t1 > s->t0 ? t1 - s->t0 : 0);
}

SYNC_API void sync_session_free(sync_session *s) {
  sx_alloc al;
  if (!s) return;
  if (s->t0) sx_sess_count(s);
  al = s->al;
  sync_encoder_free(s->enc);
  sync_decoder_free(s->dec);
#ifndef SYNC_OMIT_REPAIR
  sx_rp_free(s->rp);
#endif
  sx_buf_free(&s->msg);
  sx_buf_free(&s->ctl);
  sx_buf_free(&s->out);
  sx_buf_free(&s->rf);
  sx_free(&al, s);
}

/* After output drained: END and FAILING become final. */
static void sx_settle(sync_session *s) {
  if (s->out_pos < s->out.len || s->frame_out) return;
  if (s->state == SX_ST_END) {
    s->state = SX_ST_OVER;
    s->status = 1;
  } else if (s->state == SX_ST_FAILING) {
    s->state = SX_ST_OVER;
    s->status = s->failed_code;
  }
}

SYNC_API int sync_session_recv(sync_session *s, sync_inbuf *in) {
  if (!s || !in || in->pos > in->size || (!in->ptr && in->size))
    return SYNC_EINVAL;
  while (in->pos < in->size) {
    const unsigned char *src = (const unsigned char *)in->ptr + in->pos;
    size_t avail = in->size - in->pos, take;
    if (s->state == SX_ST_OVER || s->state == SX_ST_FAILING ||
        s->state == SX_ST_END) {
      in->pos = in->size; /* nothing more is read */
      s->st.bytes_received += avail;
      break;
    }
    if (!s->need) {
      uint64_t len;
      size_t k;
      s->hdr[s->hdr_len++] = src[0];
      in->pos++;
      s->st.bytes_received++;
      if (s->hdr_len < 2) continue;
      k = sx_get_varint(s->hdr + 1, s->hdr + s->hdr_len, &len);
      if (!k) {
        if (s->hdr_len == sizeof s->hdr)
          sx_sess_fail(s, SYNC_EPROTO, "malformed message length");
        continue;
      }
      if (len + SX_MSG_OVERHEAD > s->own_max) {
        sx_sess_fail(s, SYNC_ELIMIT,
                     "a message of %llu bytes; this side accepts %zu",
                     (unsigned long long)len, s->own_max);
        continue;
      }
      /* The header goes first in msg: the checksum covers it too. */
      s->need = s->hdr_len + (size_t)len + 4;
      s->msg.len = 0;
      if (sx_buf_reserve(&s->msg, s->need)) {
        sx_sess_fail(s, SYNC_ENOMEM, "out of memory");
        continue;
      }
      memcpy(s->msg.p, s->hdr, s->hdr_len);
      s->msg.len = s->hdr_len;
      continue;
    }
    take = s->need - s->msg.len;
    if (take > avail) take = avail;
    memcpy(s->msg.p + s->msg.len, src, take);
    s->msg.len += take;
    in->pos += take;
    s->st.bytes_received += take;
    if (s->msg.len == s->need) {
      size_t hl = s->hdr_len, body = s->need - 4;
      s->need = 0;
      s->hdr_len = 0;
      if ((uint32_t)sx_hash64(s->msg.p, body, 0) !=
          sx_get_le32(s->msg.p + body)) {
        sx_sess_fail(s, SYNC_ECHECKSUM, "a message failed its checksum");
        continue;
      }
      sx_on_message(s, s->msg.p[0], s->msg.p + hl, body - hl);
    }
  }
  sx_settle(s);
  return s->state == SX_ST_FAILING ? s->failed_code
         : s->status < 0           ? s->status
                                   : 0;
}

SYNC_API int64_t sync_session_send(sync_session *s, sync_outbuf *out) {
  size_t written = 0;
  if (!s || !out || out->pos > out->size) return SYNC_EINVAL;
  for (;;) {
    size_t n = s->out.len - s->out_pos, room = out->size - out->pos;
    if (n) {
      if (n > room) n = room;
      memcpy((unsigned char *)out->ptr + out->pos, s->out.p + s->out_pos, n);
      out->pos += n;
      s->out_pos += n;
      written += n;
      s->st.bytes_sent += n;
      if (s->out_pos < s->out.len) break; /* out is full */
    }
    s->out.len = s->out_pos = 0;
    if (!s->frame_out || s->state == SX_ST_OVER) break;
    {
      /* The next DATA message, straight from the encoder. */
      size_t cap = s->peer_max - SX_MSG_OVERHEAD;
      unsigned char *q;
      int64_t left;
      sync_outbuf ob;
      int rc = sx_buf_reserve(&s->out, s->peer_max);
      if (rc) {
        sx_sess_fail(s, rc, "out of memory");
        continue;
      }
      /* Type and length are written once the payload size is known. */
      q = s->out.p + 1 + SX_VARINT_MAX;
      ob.ptr = q;
      ob.size = cap - SX_VARINT_MAX;
      ob.pos = 0;
      left = sync_encoder_read(s->enc, &ob);
      if (left == 0) s->frame_out = 0;
      {
        unsigned char head[1 + SX_VARINT_MAX], *h = head;
        size_t hl;
        *h++ = SX_M_DATA;
        h = sx_wv(h, ob.pos);
        hl = (size_t)(h - head);
        memmove(s->out.p + hl, q, ob.pos);
        memcpy(s->out.p, head, hl);
        sx_put_le32(s->out.p + hl + ob.pos,
                    (uint32_t)sx_hash64(s->out.p, hl + ob.pos, 0));
        s->out.len = hl + ob.pos + 4;
        s->st.messages_sent++;
      }
    }
  }
  sx_settle(s);
  return (int64_t)written;
}

SYNC_API int sync_session_want_read(const sync_session *s) {
  return s && (s->state == SX_ST_HELLO || s->state == SX_ST_WELCOME ||
               s->state == SX_ST_SCHEMA ||
               s->state == SX_ST_RECV ||
               (s->state == SX_ST_REPAIR && !s->frame_out) ||
               (s->state == SX_ST_ANSWER && !s->frame_out) ||
               (s->state == SX_ST_SEND && !s->frame_out));
}

SYNC_API int sync_session_want_write(const sync_session *s) {
  return s && s->state != SX_ST_OVER &&
         (s->out_pos < s->out.len || s->frame_out);
}

SYNC_API int sync_session_status(const sync_session *s) {
  if (!s) return SYNC_EINVAL;
  return s->state == SX_ST_OVER ? s->status : 0;
}

SYNC_API const char *sync_session_errmsg(const sync_session *s) {
  return s ? s->errmsg : "";
}

SYNC_API int sync_session_peer(const sync_session *s, uint8_t site[16]) {
  if (!s || !site) return SYNC_EINVAL;
  if (!s->have_peer) return SYNC_NOTFOUND;
  memcpy(site, s->peer, SX_SITE_LEN);
  return 0;
}

SYNC_API void sync_session_stats_get(const sync_session *s,
                                     sync_session_stats *out) {
  if (!out) return;
  if (!s) {
    memset(out, 0, sizeof *out);
    return;
  }
  *out = s->st;
}

SYNC_API void sync_session_abort(sync_session *s, int err) {
  if (!s || s->state == SX_ST_OVER) return;
  if (!s->errmsg[0])
    snprintf(s->errmsg, sizeof s->errmsg, "the transport ended: %s",
             sync_strerror(err < 0 ? err : SYNC_ECLOSED));
  s->state = SX_ST_OVER;
  s->status = err < 0 ? err : SYNC_ECLOSED;
  s->frame_out = 0;
}

SYNC_API int sync_session_run(sync_session *s, const sync_transport *t) {
  unsigned char buf[16384];
  int st;
  if (!s || !t || !t->send || !t->recv) return SYNC_EINVAL;
  while (sync_session_status(s) == 0) {
    if (sync_session_want_write(s)) {
      sync_outbuf out;
      size_t off = 0;
      int64_t n;
      out.ptr = buf;
      out.size = sizeof buf;
      out.pos = 0;
      if ((n = sync_session_send(s, &out)) < 0) return (int)n;
      while (off < out.pos) {
        int64_t k = t->send(t->ctx, buf + off, out.pos - off);
        if (k <= 0) {
          sync_session_abort(s, k < 0 ? (int)k : SYNC_ECLOSED);
          break;
        }
        off += (size_t)k;
      }
      continue;
    }
    if (sync_session_want_read(s)) {
      sync_inbuf in;
      int64_t n = t->recv(t->ctx, buf, sizeof buf);
      if (n <= 0) {
        sync_session_abort(s, n < 0 ? (int)n : SYNC_ECLOSED);
        break;
      }
      in.ptr = buf;
      in.size = (size_t)n;
      in.pos = 0;
      sync_session_recv(s, &in);
      continue;
    }
    /* Neither: only END/FAILING with nothing to flush, settled above. */
    break;
  }
  st = sync_session_status(s);
  return st == 1 ? 0 : st ? st : SYNC_EPROTO;
}

/* ---------------------------------------------------------------------
 * Retries
 * ------------------------------------------------------------------- */
struct sync_retry {
  sx_alloc al;
  sync_retry_opts o;
  sync_retry_stats st;
  unsigned fails; /* failed runs in a row */
  uint64_t open_until;
  uint64_t rng;
};

SYNC_API int sync_retry_create(const sync_allocator *alloc,
                               const sync_retry_opts *o, sync_retry **out) {
  sync_retry *r;
  sx_alloc al;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (sx_alloc_from(alloc, &al)) return SYNC_EINVAL;
#ifdef SYNC_OMIT_DEFAULT_SLEEP
  if (!o || !o->sleep) return SYNC_EINVAL;
#endif
  r = (sync_retry *)sx_malloc(&al, sizeof *r);
  if (!r) return SYNC_ENOMEM;
  memset(r, 0, sizeof *r);
  r->al = al;
  if (o) r->o = *o;
  if (!r->o.attempts) r->o.attempts = 5;
  if (!r->o.base_delay_ms) r->o.base_delay_ms = 200;
  if (!r->o.max_delay_ms) r->o.max_delay_ms = 30000;
  if (!r->o.breaker_failures) r->o.breaker_failures = 3;
  if (!r->o.breaker_cooldown_ms) r->o.breaker_cooldown_ms = 60000;
  r->rng = r->o.seed;
  *out = r;
  return 0;
}

SYNC_API void sync_retry_free(sync_retry *r) {
  sx_alloc al;
  if (!r) return;
  al = r->al;
  sx_free(&al, r);
}

SYNC_API void sync_retry_stats_get(const sync_retry *r, sync_retry_stats *out) {
  if (!out) return;
  if (!r) {
    memset(out, 0, sizeof *out);
    return;
  }
  *out = r->st;
}

static uint64_t sx_retry_rand(sync_retry *r) {
  uint64_t z = (r->rng += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

#ifndef SYNC_OMIT_DEFAULT_SLEEP
static void sx_sleep_ms(void *ctx, uint64_t ms) {
  struct timespec ts;
  (void)ctx;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}
#endif

/* Errors another attempt cannot mend. */
static int sx_retry_final(int rc) {
  return rc == SYNC_ESCHEMA || rc == SYNC_EVERSION || rc == SYNC_EPERM ||
         rc == SYNC_ESTALE ||
         rc == SYNC_EINVAL || rc == SYNC_ENOTSUP || rc == SYNC_ECORRUPT ||
         rc == SYNC_EPANIC || rc == SYNC_EREADONLY;
}

SYNC_API int sync_retry_run(sync_retry *r, sync_env *env,
                            const sync_session_opts *so,
                            sync_connect_fn connect, sync_disconnect_fn close,
                            void *ctx, sync_session_stats *st) {
  uint64_t now;
  unsigned k;
  int rc = SYNC_EINVAL;
  if (!r || !env || !so || !connect) return SYNC_EINVAL;
  now = r->o.now ? r->o.now(r->o.now_ctx) : env->clock(env->clock_ctx);
  if (!r->rng) r->rng = now ^ UINT64_C(0x5EED);
  r->st.runs++;
  if (r->st.breaker_open) {
    if (now < r->open_until) {
      r->st.breaker_refused++;
      return SYNC_EBUSY;
    }
    r->st.breaker_open = 0; /* half open: one run decides */
  }
  for (k = 0; k < r->o.attempts; k++) {
    sync_transport t;
    sync_session *s = NULL;
    if (k) {
      /* Full jitter: uniform in [0, min(max, base * 2^k)). */
      uint64_t cap = r->o.base_delay_ms << (k - 1 < 20 ? k - 1 : 20);
      uint64_t d;
      if (cap > r->o.max_delay_ms || cap < r->o.base_delay_ms)
        cap = r->o.max_delay_ms;
      d = sx_retry_rand(r) % (cap + 1);
      r->st.retries++;
      sx_stats_add(&env->stats, SX_ST_RETRIES, 1);
      r->st.last_delay_ms = d;
#ifndef SYNC_OMIT_DEFAULT_SLEEP
      (r->o.sleep ? r->o.sleep : sx_sleep_ms)(r->o.sleep_ctx, d);
#else
      r->o.sleep(r->o.sleep_ctx, d);
#endif
    }
    r->st.attempts++;
    memset(&t, 0, sizeof t);
    rc = connect(ctx, &t);
    if (rc == 0) {
      rc = sync_session_create(env, so, &s);
      if (rc == 0) {
        rc = sync_session_run(s, &t);
        if (st) sync_session_stats_get(s, st);
        sync_session_free(s);
      }
      if (close) close(ctx, &t);
    } else if (rc > 0) {
      rc = SYNC_EIO;
    }
    r->st.last_error = rc;
    if (rc == 0 || sx_retry_final(rc)) break;
  }
  if (rc == 0) {
    r->fails = 0;
    return 0;
  }
  r->st.failed_runs++;
  if (++r->fails >= r->o.breaker_failures) {
    now = r->o.now ? r->o.now(r->o.now_ctx) : env->clock(env->clock_ctx);
    r->open_until = now + r->o.breaker_cooldown_ms;
    r->st.breaker_open = 1;
    r->st.breaker_opened++;
    r->fails = 0;
  }
  return rc;
}
