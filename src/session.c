/*
 * session.c - the sync protocol (docs/PROTOCOL.md) as a sans-IO state
 * machine: bytes come in through sync_session_recv() and go out through
 * sync_session_send().
 *
 * Messages are framed (type, length, payload, checksum) and never larger
 * than the peer accepts; control messages larger than that travel in
 * fragments, delta frames in DATA messages that the frame decoder
 * reassembles.  A session is a list of phases, in each of which this side
 * either receives (it asks with REQUEST, applies each chunk and asks
 * again, then sends FINAL with its report) or sends (it answers each
 * REQUEST with the next chunk).  The client pulls, then pushes; the
 * server mirrors it.  This file holds those handlers, the dispatch of
 * messages by state, and the public calls; the handshake, refusals and
 * repair are in the session_*.c files before it.
 */
#include "session.h"

#include "hash.h"

#include <stdio.h>

/* Rows of the tables we send, for the progress of an initial stream. */
static uint64_t sx_rows_expected(sync_session *s, sync_txn *x) {
  uint64_t total = 0, n;
  unsigned t;
  for (t = 0; t < s->env->schema->ntables; t++)
    if ((s->send_mask[t >> 3] >> (t & 7)) & 1)
      if (sync_count(x, t, &n) == 0) total += n;
  return total;
}

/* FINAL's report (r at it). */
static void sx_read_report(sx_rd *r, sync_apply_report *rep) {
  memset(rep, 0, sizeof *rep);
  rep->rows = sx_rv(r);
  rep->inserted = sx_rv(r);
  rep->updated = sx_rv(r);
  rep->deleted = sx_rv(r);
  rep->unchanged = sx_rv(r);
  rep->conflicts = sx_rv(r);
  rep->refused = sx_rv(r);
  rep->exited = sx_rv(r);
  rep->retired_adds = sx_rv(r);
}

/* REQUEST's fields into req, *flags and *window (when it opens one);
 * FINAL's report is added to what the peer applied.  0 with req->vv allocated (the caller frees it), or
 * the session fails. */
static int sx_read_request(sync_session *s, const unsigned char *b, size_t n,
                           sync_request *req, unsigned *flags,
                           size_t *window) {
  sx_rd r;
  const unsigned char *q;
  uint64_t nvv, i;
  memset(req, 0, sizeof *req);
  r.p = b;
  r.end = b + n;
  r.bad = 0;
  q = sx_rbytes(&r, 1 + 2 * SX_SITE_LEN + 8);
  if (!q ||
      (q[0] & ~(SX_RQ_FINAL | SX_RQ_DRY | SX_RQ_WHOLE | SX_RQ_WINDOW |
                SX_RQ_ACK | SX_RQ_LINEAGE)) ||
      ((q[0] & SX_RQ_WINDOW) && (q[0] & (SX_RQ_FINAL | SX_RQ_ACK))) ||
      ((q[0] & SX_RQ_FINAL) && (q[0] & SX_RQ_ACK)))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST");
  *flags = q[0];
  req->al = s->al;
  memcpy(req->requester, q + 1, SX_SITE_LEN);
  memcpy(req->sender, q + 1 + SX_SITE_LEN, SX_SITE_LEN);
  req->schema_hash = sx_get_le64(q + 1 + 2 * SX_SITE_LEN);
  if (sx_rcursor(&r, &req->cur) || !(q = sx_rbytes(&r, 8)))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST cursor");
  req->mark.id = sx_get_le64(q);
  req->mark.start = sx_rv(&r);
  if ((*flags & SX_RQ_LINEAGE) && sx_rlineage(&r, &req->mark, &req->lineage))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST lineage");
  if (sx_rscope(&r, &req->scope))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST scope");
  nvv = sx_rv(&r);
  if (r.bad || nvv > (uint64_t)(r.end - r.p) / (SX_SITE_LEN + 1))
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST vector");
  if (memcmp(req->requester, s->peer, SX_SITE_LEN) ||
      memcmp(req->sender, s->self, SX_SITE_LEN))
    return sx_sess_fail(s, SYNC_EPROTO, "REQUEST names other replicas");
  req->vv = (sync_stamp *)sx_malloc(&s->al, (size_t)(nvv ? nvv : 1) *
                                                sizeof(sync_stamp));
  if (!req->vv) return sx_sess_fail(s, SYNC_ENOMEM, "out of memory");
  req->nvv = (size_t)nvv;
  for (i = 0; i < nvv; i++) {
    q = sx_rbytes(&r, SX_SITE_LEN);
    if (q) memcpy(req->vv[i].site, q, SX_SITE_LEN);
    req->vv[i].hlc = sx_rv(&r);
  }
  if (*flags & SX_RQ_FINAL) {
    sync_apply_report rep;
    sx_read_report(&r, &rep);
    if (!r.bad) sx_report_add(&s->st.peer_applied, &rep);
  }
  if (*flags & SX_RQ_WINDOW) {
    uint64_t w = sx_rv(&r);
    if (w < 1 || w > SX_WIN_MAX) r.bad = 1;
    *window = (size_t)w;
  }
  if (r.bad || r.p != r.end) {
    sx_free(&s->al, req->vv);
    req->vv = NULL;
    return sx_sess_fail(s, SYNC_EPROTO, "malformed REQUEST");
  }
  return 0;
}

/* What the requester holds of us lets tombstones go. */
static int sx_ack_request(sync_session *s, const sync_request *req) {
  sync_txn *x;
  int rc = sync_txn_begin(s->env, 0, &x);
  if (!rc) {
    rc = sync_request_ack(x, req);
    if (!rc) rc = sx_note_server(s, x);
    if (rc)
      sync_txn_abort(x);
    else
      rc = sync_txn_commit(x);
  }
  if (rc)
    return sx_sess_fail(s, rc, "recording the peer's position: %s",
                        sync_strerror(rc));
  return 0;
}

/* Answer req with the next chunk (PLAN first, when it starts an initial
 * stream). */
static int sx_send_chunk(sync_session *s, const sync_request *req,
                         unsigned flags) {
  sync_delta *d = NULL;
  sync_delta_opts o;
  sync_txn *x;
  int rc;
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
  /* Priority rows jump the backlog once a phase: later chunks of the
   * phase take them in log order (a long run would else send them in
   * every chunk). */
  o.priority = s->phase_chunks ? NULL : s->o.priority;
  o.priority_row = s->phase_chunks ? NULL : s->o.priority_row;
  o.priority_row_ctx = s->o.priority_row_ctx;
  rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x);
  if (!rc) {
    int initial = req->cur.mode == SX_MODE_LOG && req->cur.version == 0 &&
                  req->cur.seq == 0;
    rc = sync_delta_make(x, req, &o, &d);
    s->sent_snap = sync_txn_version(x);
    if (!rc && initial) {
      unsigned char pb[SX_VARINT_MAX];
      uint64_t total = sx_rows_expected(s, x);
      rc = sx_msg_put(s, SX_M_PLAN, pb, (size_t)(sx_wv(pb, total) - pb));
    }
    sync_txn_abort(x);
  }
  if (!rc) rc = sx_frame_start(s, d);
  if (!rc) s->phase_chunks++;
  if (!rc && s->win) {
    /* The next chunk of the window starts where this one ends. */
    s->win_req.cur = d->end;
    s->win_req.mark = d->mark;
    s->win_req.scope = d->scope;
    s->win_last = d->last;
    s->win_out++;
    s->win_waiting = 0;
  }
  sync_delta_free(d);
  if (rc)
    return sx_sess_fail(s, rc, "cutting a chunk: %s (%s)", sync_strerror(rc),
                        sync_env_errmsg(s->env));
  sx_progress(s);
  return 0;
}

/* In a window, cut the next chunk once the last one is on its way, while
 * fewer than the window's chunks wait for their acknowledgement. */
static int sx_win_pump(sync_session *s) {
  if (!s->win || s->win_last || s->frame_out || s->state != SX_ST_SEND)
    return 0;
  if (s->win_out >= s->win) {
    if (!s->win_waiting) s->st.window_waits++;
    s->win_waiting = 1;
    return 0;
  }
  return sx_send_chunk(s, &s->win_req, s->win_flags);
}

static void sx_win_close(sync_session *s) {
  sx_free(&s->al, s->win_req.vv);
  memset(&s->win_req, 0, sizeof s->win_req);
  s->win = s->win_out = 0;
  s->win_last = s->win_waiting = 0;
}

/* Where a request stands in the window: an acknowledgement takes one
 * chunk out of flight; a request that opens a window, or asks for one
 * chunk, needs none in flight; FINAL comes after the last chunk only. */
static int sx_win_check(sync_session *s, unsigned flags) {
  if (flags & SX_RQ_ACK) {
    if (!s->win || s->win_out == 0)
      return sx_sess_fail(s, SYNC_EPROTO,
                          "an acknowledgement with no chunk in flight");
    s->win_out--;
    return 0;
  }
  if (!s->win) return 0;
  if (!(flags & SX_RQ_FINAL) || !s->win_last || s->win_out != 1)
    return sx_sess_fail(s, SYNC_EPROTO,
                        "a request while %zu chunks are in flight",
                        s->win_out);
  s->win_out = 0;
  return 0;
}

/* A request arrived in a sending phase: acknowledge it (a dry run holds
 * nothing new), then answer with the next chunk (or, for FINAL, move to
 * the next phase). */
static int sx_on_request(sync_session *s, const unsigned char *b, size_t n) {
  sync_request req;
  unsigned flags = 0;
  size_t window = 0;
  int rc;
  if ((rc = sx_read_request(s, b, n, &req, &flags, &window))) return rc;
  rc = sx_win_check(s, flags);
  /* The chunks that answer it leave out what it says (an
   * acknowledgement says nothing new). */
  if (!rc && !(flags & SX_RQ_ACK) && sx_fctx_request(&s->tx, &req))
    rc = sx_sess_fail(s, SYNC_ENOMEM, "out of memory");
  /* The requester's view of our log must be this file's history. */
  if (!rc)
    rc = sx_check_view(s, sx_cursor_version(&req.cur), &req.mark, &req.lineage,
                       &req);
  if (!rc && !(flags & SX_RQ_DRY) && !s->dry) rc = sx_ack_request(s, &req);
  if (!rc && (flags & SX_RQ_WINDOW)) {
    /* The run is cut against this request's vector; it stays. */
    s->win_req = req;
    s->win = window;
    s->win_flags = flags;
    req.vv = NULL;
    rc = sx_send_chunk(s, &s->win_req, flags);
  } else if (!rc && (flags & SX_RQ_ACK)) {
    rc = sx_win_pump(s);
  } else if (!rc && !(flags & SX_RQ_FINAL)) {
    rc = sx_send_chunk(s, &req, flags);
  }
  sx_free(&s->al, req.vv);
  if (rc || !(flags & SX_RQ_FINAL)) return rc;
  sx_win_close(s);
  sx_progress(s);
  s->phase++;
  return sx_phase_start(s);
}

/* The options a chunk is applied with (answer: refusals are collected
 * to be answered). */
static void sx_apply_opts_of(sync_session *s, int answer, sync_apply_opts *ao) {
  memset(ao, 0, sizeof *ao);
  ao->policy = s->o.policy | (s->dry ? SYNC_APPLY_DRY_RUN : 0);
  ao->writable = s->recv_mask;
  ao->relay = s->relay;
  ao->max_ahead_ms = s->o.max_ahead_ms;
  ao->refuse_whole = s->o.refuse_whole;
  ao->refuse_exits = s->o.server; /* a client never removes server rows */
  if (s->o.server) {
    /* A row the client holds outside its scope that we keep as it is
     * would never reach it again: log it, so it exits. */
    ao->scope_tables = s->send_mask;
    ao->scope_filter = s->o.filter;
    ao->scope_filter_ctx = s->o.filter_ctx;
    ao->check = s->o.check_write;
    ao->check_ctx = s->o.check_write_ctx;
  }
  if (answer) {
    ao->on_refused = sx_rf_collect;
    ao->on_refused_ctx = s;
    s->rf.len = 0;
    s->rf_n = s->rf_pos = 0;
    s->rf_over = 0;
  }
}

/* Apply d in a transaction of its own (answer: collecting refusals), and
 * commit it unless this is a dry run or the chunk is refused whole. */
static int sx_apply_chunk(sync_session *s, const sync_delta *d, int answer,
                          sync_apply_report *rep) {
  sync_apply_opts ao;
  sync_txn *x;
  int rc;
  sx_apply_opts_of(s, answer, &ao);
  if ((rc = sync_txn_begin(s->env, 0, &x))) return rc;
  rc = answer ? sx_delta_apply_held(x, d, &ao, rep)
              : sync_delta_apply_opts(x, d, &ao, rep);
  if (!rc && !s->dry) rc = sx_note_server(s, x);
  if (answer && s->rf_n &&
      (s->rf_over || (rc == SYNC_EPERM && s->o.refuse_whole))) {
    /* Nothing of the chunk applies: the refused rows are answered and
     * the same range is asked for again once they are taken back. */
    sync_txn_abort(x);
    s->rf_whole = 1;
    return 0;
  }
  if (rc || s->dry) {
    sync_txn_abort(x);
    return rc;
  }
  s->rf_whole = 0;
  return sync_txn_commit(x);
}

/* A chunk arrived in a receiving phase: apply it with its cursor (the
 * server: answer the rows it refused first), then ask for the next one,
 * or end the phase. */
static int sx_on_delta(sync_session *s, sync_delta *d) {
  sync_apply_report rep;
  int rc, last = d->last, answer;
  if (memcmp(d->sender, s->peer, SX_SITE_LEN)) {
    sync_delta_free(d);
    return sx_sess_fail(s, SYNC_EPROTO, "a chunk from another sender");
  }
  /* A server answers the rows it refuses (not in a dry run: nothing is
   * written on either side). */
  answer = s->o.server && !s->dry;
  rc = sx_apply_chunk(s, d, answer, &rep);
  s->st.frames_received++;
  s->st.rows_received += sync_delta_rows(d);
  if (rc == SYNC_EHISTORY && !s->dry && sx_delta_retires(d, s->self)) {
    /* A peer retired our id (fold.c): take a new one, keeping every
     * claim (the file holds its own writes), and sync again under it. */
    sync_txn *x = NULL;
    sync_delta_free(d);
    if (!(rc = sync_txn_begin(s->env, 0, &x)))
      rc = sx_site_renew_held(x, x->hlc_last);
    return sx_sess_renewed(s, x, rc, "a peer retired this replica's site id");
  }
  if (rc) {
    sync_delta_free(d);
    return sx_sess_fail(s, rc, "applying a chunk: %s (%s)", sync_strerror(rc),
                        sync_env_errmsg(s->env));
  }
  if (rep.renewed) {
    /* Committed with the chunk; the peer cut the rest for the old id. */
    sync_delta_free(d);
    return sx_sess_fail(s, SYNC_EHISTORY,
                        "a chunk held a write of this replica's site id that "
                        "its file never made (restored from a backup or "
                        "copied): it took a new site id; sync again");
  }
  if (rep.unknown) s->held = 1;
  if (s->dry || s->held) {
    s->vcur = d->end;
    sx_mark_move(&s->vmark, &s->vlin, &d->mark, &d->lineage);
    s->vscope = d->scope;
    s->vcur_ok = 1;
  }
  if (answer && s->rf_n) return sx_rf_answer(s, d, last, &rep);
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

static int sx_on_data(sync_session *s, const unsigned char *b, size_t n) {
  sync_inbuf in;
  s->st.frame_bytes_received += n;
  in.ptr = b;
  in.size = n;
  in.pos = 0;
  while (in.pos < in.size) {
    sync_delta *d = NULL;
    int rc = SX_NEVER(!s->rx.sites)
                 ? SYNC_EPROTO /* no DATA is taken before the handshake */
                 : sx_decoder_feed_ctx(s->dec, &s->rx, &in, &d);
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
  s->state_was_check = s->state == SX_ST_CHECK;
  s->state = SX_ST_OVER;
  s->status = SYNC_EPEER;
  if (q) {
    int c = (int)sx_unzigzag(code);
    snprintf(s->errmsg, sizeof s->errmsg,
             "the peer ended the session: %.*s (%s)",
             (int)(len < 200 ? len : 200), (const char *)q, sync_strerror(c));
    /* A server before protocol 6 knows no CHECK. */
    if (c == SYNC_EPROTO && s->state_was_check) {
      c = SYNC_EVERSION;
      snprintf(s->errmsg, sizeof s->errmsg,
               "the server does not know the quick check (a protocol before "
               "%d): %.*s",
               SX_PROTO, (int)(len < 160 ? len : 160), (const char *)q);
    }
    /* What no retry can mend keeps its own code. */
    if (c == SYNC_ESCHEMA || c == SYNC_EVERSION || c == SYNC_EPERM ||
        c == SYNC_ESTALE || c == SYNC_EHISTORY)
      s->status = c;
    if (c == SYNC_ESTALE && s->state_was_recv && s->have_peer && !s->dry) {
      /* We may lack deletes of this sender: say so (sync_health_get). */
      sync_txn *x;
      if (sync_txn_begin(s->env, 0, &x) == 0) {
        if (sx_peer_set_stale(x, s->peer))
          sync_txn_abort(x);
        else
          (void)sync_txn_commit(x);
      }
    }
  } else {
    snprintf(s->errmsg, sizeof s->errmsg, "the peer ended the session");
  }
  return s->status;
}

/* A whole control message (reassembled) or DATA payload. */
static int sx_dispatch(sync_session *s, unsigned type, const unsigned char *b,
                       size_t n) {
  if (type == SX_M_ERROR) return sx_on_error(s, b, n);
  switch (s->state) {
  case SX_ST_HELLO:
    if (type == SX_M_HELLO) return sx_on_hello(s, b, n);
    if (type == SX_M_CHECK) return sx_on_check(s, b, n);
    break;
  case SX_ST_CHECK:
    if (type == SX_M_CHECKED) return sx_on_checked(s, b, n);
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
    /* The peer answers only a whole frame; in a window it acknowledges
     * earlier chunks while this one is still going out. */
    if (s->frame_out && !(s->win && type == SX_M_REQUEST)) break;
    if (s->rf_frame) {
      if (type == SX_M_DATA) return sx_on_data(s, b, n);
      break;
    }
    if (type == SX_M_REQUEST) return sx_on_request(s, b, n);
    if (type == SX_M_REFUSED && !s->o.server) return sx_on_refused(s, b, n);
    break;
  case SX_ST_ANSWER:
    if (type == SX_M_REVERTED && !s->frame_out) return sx_on_reverted(s, b, n);
    break;
  case SX_ST_REPAIR:
    if (s->frame_out) break; /* the peer speaks only after our frame */
    if (type == SX_M_DATA && s->rp_frame) return sx_on_data(s, b, n);
    if (type == SX_M_REPAIR && !s->rp_frame) return sx_on_repair(s, b, n);
    break;
  default: break;
  }
  return sx_sess_fail(s, SYNC_EPROTO, "unexpected message %u in state %d", type,
                      s->state);
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
  if (base < SX_M_HELLO || base > SX_M_CHECKED)
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
      (o->max_message &&
       (o->max_message < SX_MSG_MIN || o->max_message > SX_MSG_MAX)) ||
      o->policy < SYNC_APPLY_MERGE || o->policy > SYNC_APPLY_APPEND)
    return SYNC_EINVAL;
  s = (sync_session *)sx_malloc(&env->al, sizeof *s);
  if (!s) return SYNC_ENOMEM;
  memset(s, 0, sizeof *s);
  if ((rc = sync_env_site_id(env, s->self))) {
    sx_free(&env->al, s);
    return rc;
  }
  s->env = env;
  s->al = env->al;
  s->o = *o;
  if (!s->o.max_ahead_ms) s->o.max_ahead_ms = 3600u * 1000u;
  s->own_max = o->max_message ? o->max_message : SX_MSG_DEFAULT;
  /* Before the handshake the peer accepts SX_MSG_FLOOR; a client on a
   * link of smaller messages sends its HELLO in pieces of its own size. */
  s->peer_max = s->own_max < SX_MSG_FLOOR ? s->own_max : SX_MSG_FLOOR;
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
    if ((rc = sx_client_start(s))) {
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
  sx_fctx_free(&s->tx);
  sx_fctx_free(&s->rx);
#ifndef SYNC_OMIT_REPAIR
  sx_rp_free(s->rp);
#endif
  sx_buf_free(&s->msg);
  sx_buf_free(&s->ctl);
  sx_buf_free(&s->out);
  sx_buf_free(&s->rf);
  sx_free(&al, s->win_req.vv);
  sx_free(&al, s);
}

/* The largest message this side takes now: its own size, and before the
 * handshake at least what every side accepts then. */
static size_t sx_own_limit(const sync_session *s) {
  int early = s->state == SX_ST_HELLO || s->state == SX_ST_CHECK ||
              s->state == SX_ST_WELCOME;
  return early && s->own_max < SX_MSG_FLOOR ? SX_MSG_FLOOR : s->own_max;
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
      if (len + s->hdr_len + 4 > sx_own_limit(s)) {
        sx_sess_fail(s, SYNC_ELIMIT,
                     "a message of %llu bytes; this side accepts %zu",
                     (unsigned long long)len + s->hdr_len + 4,
                     sx_own_limit(s));
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
    if (!s->frame_out && s->win) {
      sx_win_pump(s); /* the next chunk of the window, or an ERROR */
      if (s->out.len) continue;
    }
    if (!s->frame_out || s->state == SX_ST_OVER) break;
    {
      /* The next DATA message, straight from the encoder. */
      unsigned char *q;
      int64_t left;
      sync_outbuf ob;
      int rc = sx_buf_reserve(&s->out, s->peer_max + SX_VARINT_MAX);
      if (rc) {
        sx_sess_fail(s, rc, "out of memory");
        continue;
      }
      /* Type and length are written once the payload size is known. */
      q = s->out.p + 1 + SX_VARINT_MAX;
      ob.ptr = q;
      ob.size = sx_msg_room(s);
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
  return s && (s->state == SX_ST_HELLO || s->state == SX_ST_CHECK ||
               s->state == SX_ST_WELCOME ||
               s->state == SX_ST_SCHEMA || s->state == SX_ST_RECV ||
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
