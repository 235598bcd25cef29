/*
 * session_refused.c - the refusal exchange (docs/PROTOCOL.md,
 * "Refusals"): the server keeps the rows of a client's chunk that its
 * write check refused, answers them in REFUSED messages with its own
 * versions of the rows, and waits for REVERTED; the client takes the rows
 * back (reject.c) and says so.
 */
#include "session.h"

/* on_refused of the server's apply: keep the refusal for the answer. */
SYNC_PRIVATE int sx_rf_collect(void *ctx, const sync_refused *r) {
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
  if (!*vals && !(*vals = (sync_value *)sx_malloc(
                      &s->al, sizeof(sync_value) * (SYNC_MAX_COLUMNS + 1))))
    return SYNC_ENOMEM;
  return sx_filter_row(x, s->o.filter, s->o.filter_ctx, s->peer, tid, key, klen,
                       &x->old, *vals);
}

/* Server: the entries of the next REFUSED message (at most SX_RF_PART,
 * and about a frame of rows), from s->rf_pos on; the server's versions of
 * their rows into d.  *k: how many entries. */
static int sx_rf_rows(sync_session *s, sync_txn *x, sync_delta *d, size_t *k) {
  sx_rd r;
  sync_value *fvals = NULL;
  uint64_t *zero;
  size_t bytes = 0, maxb;
  int rc = 0;
  maxb = s->o.chunk_bytes ? s->o.chunk_bytes : ((size_t)1 << 20);
  zero = (uint64_t *)sx_malloc(&s->al, sizeof(uint64_t) * (x->nsites + 1));
  if (!zero) return SYNC_ENOMEM;
  memset(zero, 0, sizeof(uint64_t) * (x->nsites + 1));
  r.p = s->rf.p + s->rf_pos;
  r.end = s->rf.p + s->rf.len;
  r.bad = 0;
  while (*k < SX_RF_PART && s->rf_pos < s->rf.len && (!*k || bytes < maxb)) {
    unsigned tid;
    const unsigned char *key;
    const char *text;
    size_t klen, tlen;
    int reason;
    sx_slice v;
    if ((rc = sx_rf_read(&r, s->env->schema->ntables, &tid, &key, &klen,
                         &reason, &text, &tlen)))
      break;
    /* The server's row goes back only in a table the client may read:
     * in another, a refused row is dropped there. */
    rc = (s->send_mask[tid >> 3] >> (tid & 7)) & 1
             ? sx_get(s->env->st, x->t, s->env->tdbi[tid], key, klen, &v)
             : SYNC_NOTFOUND;
    if (rc == 0) {
      if ((rc = sx_row_decode(v.p, v.n, key, klen, &x->old))) break;
      /* Nor a row outside the client's share (the row filter): the
       * client drops its copy, as it leaves a row that exits. */
      if ((rc = sx_rf_in_share(s, x, tid, key, klen, &fvals)) < 0) break;
      if (rc && (rc = sx_delta_add(d, x, tid, key, klen, &x->old, zero, NULL, 1,
                                   &bytes)))
        break;
      rc = 0;
    } else if (rc != SYNC_NOTFOUND) {
      break;
    }
    s->rf_pos = (size_t)(r.p - s->rf.p);
    (*k)++;
  }
  sx_free(&s->al, zero);
  sx_free(&s->al, fvals);
  return rc == SYNC_NOTFOUND ? 0 : rc;
}

/* The frame of the server's rows: from this replica to the peer, every
 * site this replica knows, an empty vector. */
static int sx_rf_frame_head(sync_session *s, sync_txn *x, sync_delta *d) {
  size_t ns = x->nsites ? x->nsites : 1;
  memcpy(d->sender, s->self, SX_SITE_LEN);
  memcpy(d->receiver, s->peer, SX_SITE_LEN);
  d->schema_hash = s->env->schema->hash;
  d->last = 1;
  d->nsites = x->nsites;
  d->sites = (uint8_t(*)[SX_SITE_LEN])sx_malloc(&s->al, ns * SX_SITE_LEN);
  d->vv = (uint64_t *)sx_malloc(&s->al, sizeof(uint64_t) * ns);
  if (!d->sites || !d->vv) return SYNC_ENOMEM;
  memcpy(d->sites, x->sites, (size_t)x->nsites * SX_SITE_LEN);
  memset(d->vv, 0, sizeof(uint64_t) * ns);
  d->nvv = x->nsites;
  return 0;
}

/* REFUSED with the k entries from start to s->rf_pos (rows: a frame of
 * the server's rows follows). */
static int sx_rf_put(sync_session *s, size_t start, size_t k, int rows) {
  unsigned char *b, *p;
  int rc;
  b = (unsigned char *)sx_malloc(&s->al,
                                 1 + SX_VARINT_MAX + (s->rf_pos - start));
  if (!b) return SYNC_ENOMEM;
  p = b;
  *p++ = (unsigned char)(rows ? 1 : 0);
  p = sx_wv(p, k);
  memcpy(p, s->rf.p + start, s->rf_pos - start);
  p += s->rf_pos - start;
  s->rf_part = k;
  rc = sx_msg_put(s, SX_M_REFUSED, b, (size_t)(p - b));
  sx_free(&s->al, b);
  if (!rc) s->st.refusals += k;
  return rc;
}

/* Server: the next REFUSED message, with its rows. */
SYNC_PRIVATE int sx_rf_send(sync_session *s) {
  sync_txn *x;
  sync_delta *d = NULL;
  size_t start = s->rf_pos, k = 0;
  int rc;
  if ((rc = sync_txn_begin(s->env, SYNC_TXN_RDONLY, &x)))
    return sx_sess_fail(s, rc, "cannot read this replica: %s",
                        sync_strerror(rc));
  if (!(rc = sx_scratch(x)) && !(rc = sx_sites_load(x))) {
    d = sx_delta_new(&s->al);
    rc = d ? 0 : SYNC_ENOMEM;
  }
  if (!rc) rc = sx_rf_rows(s, x, d, &k);
  if (!rc) rc = sx_rf_frame_head(s, x, d);
  if (!rc) rc = sx_rf_put(s, start, k, d->nrows != 0);
  if (!rc && d->nrows) rc = sx_frame_start(s, d);
  sync_txn_abort(x);
  sync_delta_free(d);
  if (rc)
    return sx_sess_fail(s, rc, "answering refused rows: %s", sync_strerror(rc));
  return 0;
}

/* Server: chunk d had refused rows: keep its range for when they are
 * taken back, count what it did (only the refusals when it was refused
 * whole: its rows come again), and send the first REFUSED.  d is freed. */
SYNC_PRIVATE int sx_rf_answer(sync_session *s, sync_delta *d, int last,
                              sync_apply_report *rep) {
  s->rf_start = d->start;
  s->rf_end = d->end;
  s->rf_mark = d->mark;
  s->rf_lin = d->lineage;
  s->rf_last = last;
  sync_delta_free(d);
  if (s->rf_whole) {
    memset(rep, 0, sizeof *rep);
    rep->refused = s->rf_n;
    if (++s->rf_rounds > SX_RF_ROUNDS)
      return sx_sess_fail(s, SYNC_EPERM,
                          "%u chunks in a row refused whole: the peer "
                          "keeps sending refused rows",
                          (unsigned)s->rf_rounds - 1);
  } else {
    s->rf_rounds = 0;
  }
  sx_report_add(&s->phase_rep, rep);
  sx_report_add(&s->st.applied, rep);
  sx_progress(s);
  s->state = SX_ST_ANSWER;
  return sx_rf_send(s);
}

/* Server: the client took back the last REFUSED message's rows. */
SYNC_PRIVATE int sx_on_reverted(sync_session *s, const unsigned char *b,
                                size_t n) {
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
                         &s->rf_lin, s->rf_last);
    if (rc)
      sync_txn_abort(x);
    else
      rc = sync_txn_commit(x);
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
SYNC_PRIVATE int sx_rf_apply(sync_session *s, sync_delta *d) {
  sx_rd r;
  sync_txn *x;
  uint64_t n, i;
  size_t j = 0;
  unsigned char pb[SX_VARINT_MAX];
  int rc;
  if (d && (memcmp(d->sender, s->peer, SX_SITE_LEN) ||
            memcmp(d->receiver, s->self, SX_SITE_LEN) ||
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
    if (d && j < d->nrows && d->rows[j].tid == tid && d->rows[j].klen == klen &&
        !memcmp(d->arena.p + d->rows[j].koff, key, klen))
      srow = &d->rows[j++];
    rc = sx_reject_apply(x, s->peer, tid, key, klen, reason, text, tlen, d,
                         srow, s->sent_snap);
    if (rc > 0) {
      s->st.reverted++;
      rc = 0;
    }
  }
  if (!rc && (r.bad || r.p != r.end || (d && j != d->nrows))) rc = SYNC_EPROTO;
  if (rc)
    sync_txn_abort(x);
  else
    rc = sync_txn_commit(x);
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
SYNC_PRIVATE int sx_on_refused(sync_session *s, const unsigned char *b,
                               size_t n) {
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
