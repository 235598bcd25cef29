/*
 * session_msg.c - what every part of a session sends with: the failure
 * that ends it with an ERROR, the framing of control messages (cut to the
 * peer's size), and the requests and phases of a sync (docs/PROTOCOL.md,
 * "Messages" and "Phases").  The handlers that read messages come after
 * it, in session_refused.c, session_repair.c, session_hello.c and
 * session.c.
 */
#include "session.h"

#include "hash.h"

#include <stdarg.h>
#include <stdio.h>

/* ---------------------------------------------------------------------
 * Failure
 * ------------------------------------------------------------------- */
static void sx_sess_msg(sync_session *s, const char *fmt, va_list ap) {
  /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
  vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
}

SYNC_PRIVATE int sx_sess_renewed(sync_session *s, sync_txn *x, int rc,
                                 const char *why) {
  if (rc)
    sync_txn_abort(x);
  else
    rc = sync_txn_commit(x); /* frees x in any case */
  if (rc)
    return sx_sess_fail(s, rc, "%s; taking a new site id failed: %s", why,
                        sync_strerror(rc));
  return sx_sess_fail(s, SYNC_EHISTORY, "%s: it took a new site id; sync again",
                      why);
}

/* End the session with rc: tell the peer (code and words) and fail once
 * that is sent. */
SYNC_PRIVATE int sx_sess_fail(sync_session *s, int rc, const char *fmt, ...) {
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

SYNC_PRIVATE size_t sx_msg_room(const sync_session *s) {
  return s->peer_max - 1 - sx_varint_len(s->peer_max) - 4;
}

/* Queue a control message, cut to the peer's size. */
SYNC_PRIVATE int sx_msg_put(sync_session *s, unsigned type,
                            const unsigned char *p, size_t n) {
  size_t room = sx_msg_room(s), off = 0;
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
 * Requests on the wire: u8 flags, 16 requester, 16 sender, u64 schema
 * hash, cursor, mark, scope, var n, n x (16 site, var hlc); FINAL adds
 * the report, WINDOW the window's size.
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
  p = sx_wv(p, r->exited);
  return sx_wv(p, r->retired_adds);
}

SYNC_PRIVATE void sx_report_add(sync_apply_report *a,
                                const sync_apply_report *b) {
  a->rows += b->rows;
  a->inserted += b->inserted;
  a->updated += b->updated;
  a->deleted += b->deleted;
  a->unchanged += b->unchanged;
  a->conflicts += b->conflicts;
  a->refused += b->refused;
  a->exited += b->exited;
  a->unknown += b->unknown;
  a->retired_adds += b->retired_adds;
}

SYNC_PRIVATE int sx_send_request(sync_session *s, int final) {
  sync_txn *x;
  sync_request *req = NULL;
  unsigned char *b, *p;
  size_t cap, i;
  int rc, opens;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  rc = sync_request_make(x, s->peer, &req);
  sync_txn_abort(x);
  if (rc) return sx_sess_fail(s, rc, "request: %s", sync_strerror(rc));
  if ((s->dry || s->held) && s->vcur_ok) { /* nothing was committed */
    req->cur = s->vcur;
    if (s->vmark.id != req->mark.id || s->vmark.start != req->mark.start) {
      req->mark = s->vmark;
      req->lineage = s->vlin;
    }
    req->scope = s->vscope;
  }
  /* In a window, only the opening request carries the vector: the
   * sender cuts the whole run against it, and the acknowledgements that
   * follow stay small. */
  opens = !final && !s->rwin && !s->o.server && s->o.window != 1;
  if (s->rwin) req->nvv = 0;
  cap = 1 + 2 * SX_SITE_LEN + 8 + SX_CURSOR_MAX + 8 + 2 * SX_VARINT_MAX +
        SX_LINEAGE_WMAX + SX_SCOPE_MAX +
        req->nvv * (SX_SITE_LEN + SX_VARINT_MAX) +
        9 * SX_VARINT_MAX; /* FINAL's counts, or the window */
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
                         (s->o.policy == SYNC_APPLY_NEWER ? SX_RQ_WHOLE : 0) |
                         (opens ? SX_RQ_WINDOW : 0) |
                         (s->rwin && !final ? SX_RQ_ACK : 0) |
                         (s->lin_req ? SX_RQ_LINEAGE : 0));
  memcpy(p, req->requester, SX_SITE_LEN);
  p += SX_SITE_LEN;
  memcpy(p, req->sender, SX_SITE_LEN);
  p += SX_SITE_LEN;
  sx_put_le64(p, req->schema_hash);
  p += 8;
  p = sx_wcursor(p, &req->cur);
  sx_put_le64(p, req->mark.id);
  p = sx_wv(p + 8, req->mark.start);
  if (s->lin_req) p = sx_wlineage(p, &req->lineage);
  p = sx_wscope(p, &req->scope);
  p = sx_wv(p, req->nvv);
  for (i = 0; i < req->nvv; i++) {
    memcpy(p, req->vv[i].site, SX_SITE_LEN);
    p += SX_SITE_LEN;
    p = sx_wv(p, req->vv[i].hlc);
  }
  if (final) p = sx_put_report(p, &s->phase_rep);
  if (opens) {
    p = sx_wv(p, s->o.window ? s->o.window : SX_WIN_DEFAULT);
    s->rwin = 1;
  }
  /* What the sender reads here, the chunks it answers with leave out. */
  if (!(b[0] & SX_RQ_ACK) && (rc = sx_fctx_request(&s->rx, req))) {
    sync_request_free(req);
    sx_free(&s->al, b);
    return sx_sess_fail(s, rc, "out of memory");
  }
  sync_request_free(req);
  rc = sx_msg_put(s, SX_M_REQUEST, b, (size_t)(p - b));
  sx_free(&s->al, b);
  return rc ? sx_sess_fail(s, rc, "out of memory") : 0;
}

SYNC_PRIVATE int sx_phase_start(sync_session *s) {
  memset(&s->phase_rep, 0, sizeof s->phase_rep);
  s->vcur_ok = 0;
  s->held = 0;
  s->rwin = 0;
  s->phase_chunks = 0;
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

/* The type of column col of table tid in schema sc, as sx_fctx wants
 * it. */
static int sx_coltype_of(const sx_schema *sc, unsigned tid, unsigned col) {
  if (!sc || tid >= sc->ntables) return -1;
  if (col >= sc->tables[tid].ncols) return 0;
  return sc->tables[tid].cols[col].type;
}

/* Frames we send are cut under our schema... */
static int sx_coltype_own(const void *cx, unsigned tid, unsigned col) {
  const sync_session *s = (const sync_session *)cx;
  return sx_coltype_of(s->env->schema, tid, col);
}

/* ...and those we receive under the peer's: ours, or the one its
 * handshake brought (kept by the env as compatible). */
static int sx_coltype_peer(const void *cx, unsigned tid, unsigned col) {
  const sync_session *s = (const sync_session *)cx;
  const sx_schema *sc = s->peer_hash == s->env->schema->hash
                            ? s->env->schema
                            : sx_compat_find(s->env, s->peer_hash);
  return sx_coltype_of(sc, tid, col);
}

SYNC_PRIVATE int sx_fctx_setup(sync_session *s, uint64_t peer_hash) {
  int rc;
  s->peer_hash = peer_hash;
  sx_fctx_free(&s->tx);
  sx_fctx_free(&s->rx);
  if ((rc = sx_fctx_init(&s->tx, &s->al, s->self, s->peer,
                         s->env->schema->hash)) ||
      (rc = sx_fctx_init(&s->rx, &s->al, s->peer, s->self, peer_hash)))
    return sx_sess_fail(s, rc, "out of memory");
  s->tx.coltype = sx_coltype_own;
  s->tx.coltype_cx = s;
  s->rx.coltype = sx_coltype_peer;
  s->rx.coltype_cx = s;
  return 0;
}

/* Start sending d as the next frame (sync_session_send reads it from the
 * encoder in DATA messages), and count it. */
SYNC_PRIVATE int sx_frame_start(sync_session *s, const sync_delta *d) {
  size_t flen = 0, raw = 0;
  int rc;
  if (SX_NEVER(!s->tx.sites)) return SYNC_EINVAL; /* before the handshake */
  rc = sx_encoder_begin_ctx(s->enc, &s->tx, d, &flen, &raw);
  if (rc) return rc;
  s->frame_out = 1;
  s->st.frames_sent++;
  s->st.rows_sent += sync_delta_rows(d);
  s->st.frame_bytes_sent += flen;
  s->st.raw_bytes_sent += raw;
  return 0;
}

SYNC_PRIVATE void sx_progress(sync_session *s) {
  if (s->o.progress) s->o.progress(s->o.progress_ctx, &s->st);
}
