/*
 * test_converge.c - property-based convergence.  Replicas write random
 * puts, updates, deletes and re-inserts on a few overlapping keys, often
 * in the same millisecond, and exchange delta chunks over a faulty link:
 * chunks are applied twice, held back and applied after later ones,
 * applied ahead of their predecessors, or dropped, and sessions are cut at
 * any point.  Then, with a clean link, full pulls between all pairs must
 * bring every replica to the same digest, and each replica's visible rows
 * must equal a reference model of the merge rules computed here from
 * every committed local write:
 *
 *   per key, the final causal length is the largest any replica wrote; if
 *   it is even the row is absent; if odd, each column holds the value of
 *   the write with the greatest (HLC, site id bytes) among the writes of
 *   that column made at that causal length (NULL if none).
 *
 * Every logged conflict must name real writes (and no write that
 * replaced the other), a repeated chunk must change nothing, and after
 * convergence a further round of pulls must send no row (no echoes).
 *
 * Families: the mesh above (3-5 replicas, 3-20 keys; a quarter of the
 * scenarios collect all tombstones everywhere and run a second epoch),
 * long histories on 2-5 keys (the change log compacts under the peers'
 * cursors), tombstones collected on some replicas only before a second
 * epoch, and a relay A -> B -> C that must echo nothing back.
 *
 * Scenario seeds come from SYNC_TEST_SEED (default fixed): scenario i of
 * a family uses seed + i.  A failing scenario prints its seed and the
 * variable that sets its family's count (SYNC_TEST_SCENARIOS,
 * SYNC_TEST_LONG_SCENARIOS, SYNC_TEST_GC_SCENARIOS,
 * SYNC_TEST_RELAY_SCENARIOS); SYNC_TEST_SEED=<seed> <variable>=1 replays
 * it alone.  SYNC_TEST_VERBOSE=1 prints what the faults did.
 */
#include "merge_util.h"

#include <inttypes.h>

#define CV_MAXREP 5
#define CV_NKEYS 24
#define CV_DEFAULT_SEED UINT64_C(0x5eed0001)
#define CV_DEFAULT_SCENARIOS 1200
#define CV_DEFAULT_RELAY 300
#define CV_DEFAULT_LONG 6
#define CV_DEFAULT_GC 200

static const char *const cv_keys[CV_NKEYS] = {
    "a",
    "aa",
    "ab",
    "abc",
    "abd",
    "b",
    "ba",
    "bab",
    "zz",
    "k00",
    "k01",
    "k02",
    "k03",
    "k04",
    "k05",
    "k06",
    "k07",
    "k08",
    "k09",
    "m",
    "mm",
    "key-long-prefix-0001",
    "key-long-prefix-0002",
    "key-long-prefix-0010",
};

/* ---------------------------------------------------------------------
 * The reference model: every write of a column that any replica
 * committed, with its causal length and stamp.
 * ------------------------------------------------------------------- */
typedef struct cv_val {
  int type;
  int64_t i;
  double r;
  size_t len;
  unsigned char b[32];
} cv_val;

typedef struct cv_write {
  int gen; /* the key's generation: gc starts a new one */
  uint64_t cl;
  unsigned col;
  uint64_t hlc;
  uint8_t site[16];
  sync_stamp base; /* the stamp it replaced (hlc 0: none) */
  cv_val v;
} cv_write;

typedef struct cv_keylog {
  cv_write *w;
  size_t n, cap;
  uint64_t maxcl; /* the largest causal length any replica wrote */
  int gen;        /* writes of older generations were collected */
  int partial;    /* collected on some replicas only: no exact model */
} cv_keylog;

typedef struct cv_held {
  sync_delta *d;
  int to; /* the receiver it was cut for */
} cv_held;

#define CV_MAXHELD 16

typedef struct cv_stats {
  unsigned long scenarios, local_txns, aborted, exchanges, chunks, dups, held,
      ahead, dropped, cut, late, gc_epochs, conflicts, rounds_max, echo_rows;
} cv_stats;

typedef struct cv_scn {
  uint64_t seed;
  tu_rng rng;
  int nrep, nkeys;
  int keys[CV_NKEYS]; /* key indexes this scenario uses */
  uint64_t now;
  mu_rep rep[CV_MAXREP];
  uint64_t last_hlc[CV_MAXREP]; /* each replica's latest local stamp */
  cv_keylog log[CV_NKEYS];
  cv_held held[CV_MAXHELD];
  int nheld;
  int only_first_writes; /* relay: only replica 0 writes */
  const char *phase;
  const char *count_var; /* the variable that replays it alone */
} cv_scn;

/* The scenario in progress, for teardown to report and clean up. */
static cv_scn *cv_cur;
static cv_stats cv_st;

static uint64_t cv_env_u64(const char *name, uint64_t dflt) {
  const char *s = getenv(name);
  char *end;
  unsigned long long v;
  if (!s || !*s) return dflt;
  v = strtoull(s, &end, 0);
  if (*end) return dflt;
  return (uint64_t)v;
}

static uint64_t cv_below(cv_scn *s, uint64_t n) { return tu_below(&s->rng, n); }

static int cv_key_index(const void *p, size_t n) {
  int k;
  for (k = 0; k < CV_NKEYS; k++)
    if (strlen(cv_keys[k]) == n && memcmp(cv_keys[k], p, n) == 0) return k;
  return -1;
}

static void cv_val_from(cv_val *o, const sync_value *v) {
  memset(o, 0, sizeof *o);
  o->type = v->type;
  if (v->type == SYNC_INTEGER) o->i = v->i;
  if (v->type == SYNC_REAL) o->r = v->r;
  if (v->type == SYNC_TEXT || v->type == SYNC_BLOB) {
    assert_true(v->len <= sizeof o->b);
    o->len = v->len;
    if (v->len) memcpy(o->b, v->data, v->len);
  }
}

static int cv_val_eq(const cv_val *a, const sync_value *v) {
  if (a->type != v->type) return 0;
  switch (a->type) {
  case SYNC_NULL: return 1;
  case SYNC_INTEGER: return a->i == v->i;
  case SYNC_REAL: return memcmp(&a->r, &v->r, sizeof a->r) == 0;
  default:
    return a->len == v->len && (!a->len || !memcmp(a->b, v->data, a->len));
  }
}

static void cv_val_print(char *out, size_t cap, const cv_val *v) {
  switch (v->type) {
  case SYNC_NULL: snprintf(out, cap, "NULL"); break;
  case SYNC_INTEGER: snprintf(out, cap, "%" PRId64, v->i); break;
  case SYNC_REAL: snprintf(out, cap, "%g", v->r); break;
  default:
    snprintf(out, cap, "%s(%zu bytes)", v->type == SYNC_TEXT ? "text" : "blob",
             v->len);
  }
}

static int cv_stamp_cmp(uint64_t ha, const uint8_t *sa, uint64_t hb,
                        const uint8_t *sb) {
  if (ha != hb) return ha < hb ? -1 : 1;
  return memcmp(sa, sb, 16);
}

/* Add a write; a stamp names one transaction, so a write seen again
 * (in a merged row) must carry the same causal length and value. */
static void cv_add_write(cv_scn *s, int k, uint64_t cl, unsigned col,
                         const sync_stamp *st, const sync_stamp *base,
                         const sync_value *v) {
  cv_keylog *kl = &s->log[k];
  cv_write *w;
  size_t i;
  for (i = 0; i < kl->n; i++) {
    w = &kl->w[i];
    if (w->col == col && w->hlc == st->hlc && !memcmp(w->site, st->site, 16)) {
      if (w->gen != kl->gen)
        fail_msg("key '%s': a write collected by gc came back", cv_keys[k]);
      if (w->cl != cl || !cv_val_eq(&w->v, v) ||
          cv_stamp_cmp(w->base.hlc, w->base.site, base->hlc, base->site)) {
        print_error("key '%s' column %u: stamp %" PRIx64
                    " seen at causal length %" PRIu64 " and %" PRIu64
                    ", or with two values or bases\n",
                    cv_keys[k], col, st->hlc, w->cl, cl);
        fail();
      }
      return;
    }
  }
  if (kl->n == kl->cap) {
    kl->cap = kl->cap ? kl->cap * 2 : 64;
    kl->w = (cv_write *)realloc(kl->w, kl->cap * sizeof *kl->w);
    assert_non_null(kl->w);
  }
  w = &kl->w[kl->n++];
  w->gen = kl->gen;
  w->cl = cl;
  w->col = col;
  w->hlc = st->hlc;
  memcpy(w->site, st->site, 16);
  w->base = *base;
  cv_val_from(&w->v, v);
}

/* After a local commit: read back what the transaction wrote (the rows
 * after version `before`) and add it to the model.  Checks that the new
 * stamps of this replica are one stamp, later than its previous one and
 * not behind its clock. */
static void cv_record(cv_scn *s, int ri, uint64_t before) {
  mu_rep *r = &s->rep[ri];
  sync_txn *t;
  sync_changes *it;
  sync_change ch;
  uint64_t mine = 0;
  int rc, rows = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_changes_open(t, before, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    int k = cv_key_index(ch.key.data, ch.key.len);
    unsigned c;
    assert_true(k >= 0);
    TU_U64(ch.version, before + 1);
    rows++;
    if (ch.causal_length > s->log[k].maxcl) s->log[k].maxcl = ch.causal_length;
    if (!memcmp(ch.row_stamp.site, r->site, 16) &&
        ch.row_stamp.hlc > s->last_hlc[ri]) {
      if (mine && mine != ch.row_stamp.hlc)
        fail_msg("one transaction wrote two stamps");
      mine = ch.row_stamp.hlc;
    }
    if (!(ch.causal_length & 1)) continue;
    for (c = 0; c < MU_NCOLS; c++) {
      sync_value v;
      sync_stamp st, base;
      rc = sync_changes_column(it, c, &v, &st, &base);
      if (rc == SYNC_NOTFOUND) continue;
      TU_OK(rc);
      cv_add_write(s, k, ch.causal_length, c, &st, &base, &v);
      if (!memcmp(st.site, r->site, 16) && st.hlc > s->last_hlc[ri]) {
        if (mine && mine != st.hlc)
          fail_msg("one transaction wrote two stamps");
        mine = st.hlc;
      }
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(t);
  assert_true(rows > 0);
  assert_true(mine > s->last_hlc[ri]);
  /* The HLC never runs behind the replica's clock. */
  assert_true((mine >> 16) >= (uint64_t)((int64_t)s->now + r->skew));
  s->last_hlc[ri] = mine;
}

/* ---------------------------------------------------------------------
 * Local writes
 * ------------------------------------------------------------------- */
static const double cv_reals[] = {0.0, -0.0, 1.5, -2.25, 1e300, 3.0};
static const char *const cv_texts[] = {"", "x", "yy", "hello",
                                       "zzzzzzzzzzzzzzzzzzzzzzzz"};

static sync_value cv_rand_value(cv_scn *s, unsigned col, unsigned char *buf) {
  if (cv_below(s, 8) == 0) return sync_null();
  switch (col) {
  case MU_COL_I: return sync_int((int64_t)cv_below(s, 6) - 2);
  case MU_COL_R: return sync_real(cv_reals[cv_below(s, 6)]);
  case MU_COL_S: {
    const char *t = cv_texts[cv_below(s, 5)];
    return sync_text(t, strlen(t));
  }
  default: {
    size_t n = (size_t)cv_below(s, 9), i;
    static const unsigned char bytes[3] = {0, 1, 0xff};
    for (i = 0; i < n; i++) buf[i] = bytes[cv_below(s, 3)];
    return sync_blob(buf, n);
  }
  }
}

static void cv_tick(cv_scn *s) {
  uint64_t p = cv_below(s, 100);
  if (p < 40)
    s->now += 1;
  else if (p < 42)
    s->now += 50 + cv_below(s, 200);
  if (cv_below(s, 100) < 3) {
    /* A clock steps, forwards or back. */
    mu_rep *r = &s->rep[cv_below(s, (uint64_t)s->nrep)];
    r->skew = (int64_t)cv_below(s, 9) - 4;
  }
}

/* One local transaction of 1-3 operations on replica ri. */
static void cv_local_txn(cv_scn *s, int ri) {
  mu_rep *r = &s->rep[ri];
  sync_txn *t;
  uint64_t before, d0 = 0;
  int nops = 1 + (int)cv_below(s, 3), op, abort_it;
  cv_tick(s);
  abort_it = cv_below(s, 100) < 5;
  if (abort_it) d0 = mu_digest(r);
  TU_OK(sync_txn_begin(r->env, 0, &t));
  before = sync_txn_version(t);
  for (op = 0; op < nops; op++) {
    int k = s->keys[cv_below(s, (uint64_t)s->nkeys)];
    const char *key = cv_keys[k];
    size_t kl = strlen(key);
    unsigned char buf[MU_NCOLS][16];
    sync_value v[MU_NCOLS];
    unsigned c, p = (unsigned)cv_below(s, 100);
    int live = sync_contains(t, 0, key, kl);
    assert_true(live == 0 || live == 1);
    if (!live || p < 25) {
      for (c = 0; c < MU_NCOLS; c++) v[c] = cv_rand_value(s, c, buf[c]);
      TU_OK(sync_put(t, 0, key, kl, v, MU_NCOLS));
    } else if (p < 75) {
      unsigned cols[MU_NCOLS], n = 0, i;
      for (c = 0; c < MU_NCOLS; c++)
        if (cv_below(s, 2)) cols[n++] = c;
      if (!n) cols[n++] = (unsigned)cv_below(s, MU_NCOLS);
      for (i = n; i > 1; i--) { /* any order */
        unsigned j = (unsigned)cv_below(s, i), tmp = cols[i - 1];
        cols[i - 1] = cols[j];
        cols[j] = tmp;
      }
      for (i = 0; i < n; i++) v[i] = cv_rand_value(s, cols[i], buf[i]);
      TU_OK(sync_update(t, 0, key, kl, cols, v, n));
    } else {
      TU_OK(sync_delete(t, 0, key, kl));
    }
  }
  if (abort_it) {
    sync_txn_abort(t);
    cv_st.aborted++;
    TU_U64(mu_version(r), before);
    TU_U64(mu_digest(r), d0);
    return;
  }
  TU_OK(sync_txn_commit(t));
  cv_st.local_txns++;
  if (mu_version(r) != before) cv_record(s, ri, before);
}

/* ---------------------------------------------------------------------
 * Exchanges over a faulty link
 * ------------------------------------------------------------------- */
static void cv_vv(mu_rep *r, sync_stamp *out, size_t *n) {
  sync_txn *t;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_vv_get(t, out, 16, n));
  assert_true(*n <= 16);
  sync_txn_abort(t);
}

static void cv_assert_vv_equal(mu_rep *r, const sync_stamp *a, size_t na) {
  sync_stamp b[16];
  size_t nb, i;
  cv_vv(r, b, &nb);
  /* The replica's own entry follows its clock; the others must stay. */
  for (i = 0; i < na; i++) {
    size_t j;
    if (!memcmp(a[i].site, r->site, 16)) continue;
    for (j = 0; j < nb; j++)
      if (!memcmp(a[i].site, b[j].site, 16)) break;
    assert_true(j < nb);
    TU_U64(b[j].hlc, a[i].hlc);
  }
  for (i = 0; i < nb; i++) {
    size_t j;
    if (!memcmp(b[i].site, r->site, 16)) continue;
    for (j = 0; j < na; j++)
      if (!memcmp(a[j].site, b[i].site, 16)) break;
    assert_true(j < na);
  }
}

static void cv_hold(cv_scn *s, sync_delta *d, int to) {
  if (s->nheld == CV_MAXHELD) {
    /* Full: the oldest is lost on the way. */
    sync_delta_free(s->held[0].d);
    memmove(s->held, s->held + 1, sizeof s->held[0] * (CV_MAXHELD - 1));
    s->nheld--;
    cv_st.dropped++;
  }
  s->held[s->nheld].d = d;
  s->held[s->nheld].to = to;
  s->nheld++;
  cv_st.held++;
}

/* Deliver held chunk i late (it may or may not continue the run). */
static void cv_deliver(cv_scn *s, int i) {
  cv_held h = s->held[i];
  sync_apply_report rep;
  memmove(s->held + i, s->held + i + 1,
          sizeof s->held[0] * (size_t)(s->nheld - i - 1));
  s->nheld--;
  mu_apply(&s->rep[h.to], h.d, SYNC_APPLY_MERGE, &rep);
  cv_st.late++;
  cv_st.conflicts += rep.conflicts;
  if (rep.vector_raised) assert_true(rep.cursor_moved);
  sync_delta_free(h.d);
}

/* A chunk applied a second time changes nothing. */
static void cv_apply_again(cv_scn *s, int ri, const sync_delta *d) {
  mu_rep *r = &s->rep[ri];
  sync_apply_report rep;
  uint64_t d0 = mu_digest(r), v0 = mu_version(r);
  mu_apply(r, d, SYNC_APPLY_MERGE, &rep);
  TU_U64(rep.unchanged, rep.rows);
  TU_U64(rep.inserted + rep.updated + rep.deleted, 0);
  TU_U64(mu_digest(r), d0);
  TU_U64(mu_version(r), v0);
  cv_st.dups++;
}

/* Receiver ri pulls from sender si over a faulty link: chunks are duplicated,
 * held back, cut ahead of their predecessor, or dropped, and the session
 * may stop anywhere. */
static void cv_exchange(cv_scn *s, int ri, int si) {
  mu_rep *r = &s->rep[ri], *snd = &s->rep[si];
  size_t max_rows = 1 + (size_t)cv_below(s, 4);
  int ack = cv_below(s, 4) != 0, iter;
  cv_st.exchanges++;
  for (iter = 0; iter < 10000; iter++) {
    sync_delta *d;
    sync_apply_report rep;
    unsigned p;
    int last;
    if (cv_below(s, 100) < 3) {
      cv_st.cut++;
      return; /* the session is cut */
    }
    if (cv_below(s, 100) < 5) {
      /* Someone writes while the session runs. */
      int w = cv_below(s, 2) ? ri : si;
      if (!s->only_first_writes || w == 0) cv_local_txn(s, w);
    }
    d = mu_cut(r, snd, max_rows, ack);
    cv_st.chunks++;
    last = sync_delta_last(d);
    p = (unsigned)cv_below(s, 100);
    if (p < 62) {
      mu_apply(r, d, SYNC_APPLY_MERGE, &rep);
      cv_st.conflicts += rep.conflicts;
      assert_true(rep.cursor_moved);
      assert_int_equal(rep.vector_raised, last);
      if (p >= 54) cv_apply_again(s, ri, d);
      if (p >= 50 && p < 54)
        cv_hold(s, d, ri); /* and again later */
      else
        sync_delta_free(d);
      if (last) return;
    } else if (p < 70) {
      /* Twice in the same transaction: the second is past the run. */
      sync_txn *t;
      sync_apply_report rep2;
      TU_OK(sync_txn_begin(r->env, 0, &t));
      TU_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, &rep));
      TU_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, &rep2));
      TU_OK(sync_txn_commit(t));
      cv_st.conflicts += rep.conflicts;
      cv_st.dups++;
      assert_true(rep.cursor_moved);
      TU_U64(rep2.unchanged, rep2.rows);
      sync_delta_free(d);
      if (last) return;
    } else if (p < 80) {
      cv_hold(s, d, ri); /* applied later, after others, or never */
    } else if (p < 88) {
      /* Cut the next chunk ahead: apply d in a transaction that is then
       * abandoned, ask for what follows it, and deliver that first. */
      sync_txn *t;
      sync_request *req;
      sync_delta *d2;
      sync_txn *st;
      sync_delta_opts o;
      sync_stamp vv0[16];
      size_t nvv0;
      memset(&o, 0, sizeof o);
      o.max_rows = max_rows;
      TU_OK(sync_txn_begin(r->env, 0, &t));
      TU_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, &rep));
      TU_OK(sync_request_make(t, snd->site, &req));
      sync_txn_abort(t);
      TU_OK(sync_txn_begin(snd->env, SYNC_TXN_RDONLY, &st));
      TU_OK(sync_delta_make(st, req, &o, &d2));
      sync_txn_abort(st);
      sync_request_free(req);
      cv_vv(r, vv0, &nvv0);
      mu_apply(r, d2, SYNC_APPLY_MERGE, &rep);
      cv_st.conflicts += rep.conflicts;
      cv_st.ahead++;
      /* Past a gap: merged, but neither cursor nor vector moves. */
      if (!last) {
        assert_int_equal(rep.cursor_moved, 0);
        assert_int_equal(rep.vector_raised, 0);
        cv_assert_vv_equal(r, vv0, nvv0);
      }
      if (cv_below(s, 2)) {
        mu_apply(r, d, SYNC_APPLY_MERGE, &rep);
        cv_st.conflicts += rep.conflicts;
        assert_true(rep.cursor_moved);
        sync_delta_free(d);
        if (last) {
          sync_delta_free(d2);
          return;
        }
        cv_hold(s, d2, ri);
      } else {
        cv_hold(s, d, ri);
        cv_hold(s, d2, ri);
      }
    } else {
      sync_delta_free(d); /* lost */
      cv_st.dropped++;
    }
    if (s->nheld && cv_below(s, 100) < 15)
      cv_deliver(s, (int)cv_below(s, (uint64_t)s->nheld));
  }
  fail_msg("exchange did not end");
}

/* ---------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------- */

/* The model's row for key k: present, and per column the winning write
 * (NULL when none). */
static int cv_expect(const cv_scn *s, int k, const cv_write *win[MU_NCOLS]) {
  const cv_keylog *kl = &s->log[k];
  size_t i;
  unsigned c;
  for (c = 0; c < MU_NCOLS; c++) win[c] = NULL;
  if (!(kl->maxcl & 1)) return 0;
  for (i = 0; i < kl->n; i++) {
    const cv_write *w = &kl->w[i];
    if (w->gen != kl->gen || w->cl != kl->maxcl) continue;
    if (!win[w->col] ||
        cv_stamp_cmp(w->hlc, w->site, win[w->col]->hlc, win[w->col]->site) > 0)
      win[w->col] = w;
  }
  return 1;
}

static int cv_written(const cv_scn *s, int k, unsigned c, const sync_value *v) {
  const cv_keylog *kl = &s->log[k];
  size_t i;
  for (i = 0; i < kl->n; i++)
    if (kl->w[i].gen == kl->gen && kl->w[i].col == c &&
        cv_val_eq(&kl->w[i].v, v))
      return 1;
  return 0;
}

static void cv_check_model(cv_scn *s, int ri) {
  mu_rep *r = &s->rep[ri];
  sync_txn *t;
  sync_cursor *cur;
  sync_key key;
  sync_value v[MU_NCOLS];
  int seen[CV_NKEYS], k, rc;
  uint64_t live = 0, n;
  memset(seen, 0, sizeof seen);
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_cursor_open(t, 0, &cur));
  while ((rc = sync_cursor_next(cur, &key, v, MU_NCOLS)) == 0) {
    const cv_write *win[MU_NCOLS];
    unsigned c;
    k = cv_key_index(key.data, key.len);
    if (k < 0) fail_msg("replica %d holds a key no replica wrote", ri);
    seen[k] = 1;
    if (s->log[k].partial) {
      unsigned c;
      for (c = 0; c < MU_NCOLS; c++)
        if (!cv_written(s, k, c, &v[c]))
          fail_msg("replica %d: key '%s' column %u holds a value no replica "
                   "wrote",
                   ri, cv_keys[k], c);
      live++;
      continue;
    }
    if (!cv_expect(s, k, win)) {
      print_error("replica %d: key '%s' is live, the model says deleted "
                  "(causal length %" PRIu64 ")\n",
                  ri, cv_keys[k], s->log[k].maxcl);
      fail();
    }
    for (c = 0; c < MU_NCOLS; c++) {
      cv_val got;
      char a[64], b[64];
      /* No replica holds data no peer wrote. */
      if (!cv_written(s, k, c, &v[c])) {
        cv_val_from(&got, &v[c]);
        cv_val_print(a, sizeof a, &got);
        print_error("replica %d: key '%s' column %u holds %s, which no "
                    "replica wrote\n",
                    ri, cv_keys[k], c, a);
        fail();
      }
      if (win[c] ? !cv_val_eq(&win[c]->v, &v[c]) : v[c].type != SYNC_NULL) {
        cv_val_from(&got, &v[c]);
        cv_val_print(a, sizeof a, &got);
        if (win[c])
          cv_val_print(b, sizeof b, &win[c]->v);
        else
          snprintf(b, sizeof b, "NULL (never written)");
        print_error("replica %d: key '%s' column %u holds %s, the model "
                    "says %s (causal length %" PRIu64 ", stamp %" PRIx64
                    " of site %02x)\n",
                    ri, cv_keys[k], c, a, b, s->log[k].maxcl,
                    win[c] ? win[c]->hlc : 0, win[c] ? win[c]->site[0] : 0);
        fail();
      }
    }
    live++;
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_cursor_close(cur);
  for (k = 0; k < CV_NKEYS; k++) {
    const cv_write *win[MU_NCOLS];
    int want;
    if (s->log[k].partial) continue;
    want = cv_expect(s, k, win);
    if (want && !seen[k]) {
      print_error("replica %d: key '%s' is absent, the model says live "
                  "(causal length %" PRIu64 ")\n",
                  ri, cv_keys[k], s->log[k].maxcl);
      fail();
    }
    rc = sync_contains(t, 0, cv_keys[k], strlen(cv_keys[k]));
    assert_int_equal(rc, want);
    /* sync_get agrees with the cursor and the model. */
    rc = sync_get(t, 0, cv_keys[k], strlen(cv_keys[k]), v, MU_NCOLS);
    if (!want) {
      TU_RC(rc, SYNC_NOTFOUND);
    } else {
      unsigned c;
      TU_OK(rc);
      for (c = 0; c < MU_NCOLS; c++)
        assert_true(win[c] ? cv_val_eq(&win[c]->v, &v[c])
                           : v[c].type == SYNC_NULL);
    }
  }
  TU_OK(sync_count(t, 0, &n));
  TU_U64(n, live);
  sync_txn_abort(t);
}

/* The model's write of (key k, column c) with stamp st, or NULL. */
static const cv_write *cv_find_write(const cv_scn *s, int k, unsigned c,
                                     const sync_stamp *st) {
  const cv_keylog *kl = &s->log[k];
  size_t i;
  for (i = 0; i < kl->n; i++)
    if (kl->w[i].col == c && kl->w[i].hlc == st->hlc &&
        !memcmp(kl->w[i].site, st->site, 16))
      return &kl->w[i];
  return NULL;
}

/* Every logged conflict is consistent with the writes it names: for a
 * column, both values are what those stamps wrote and the larger stamp
 * won; for a row, the update is later than the delete, which won. */
static void cv_check_conflicts(cv_scn *s, int ri) {
  sync_txn *t;
  sync_conflicts *it;
  sync_conflict c;
  int rc;
  TU_OK(sync_txn_begin(s->rep[ri].env, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_conflicts_open(t, 0, &it));
  while ((rc = sync_conflicts_next(it, &c)) == 0) {
    int k = cv_key_index(c.key.data, c.key.len);
    int cmp = cv_stamp_cmp(c.remote_stamp.hlc, c.remote_stamp.site,
                           c.local_stamp.hlc, c.local_stamp.site);
    assert_true(k >= 0);
    assert_int_equal(c.table, 0);
    assert_false(c.resolved);
    if (c.kind == SYNC_BOTH_MODIFIED) {
      const cv_write *lw = cv_find_write(s, k, c.column, &c.local_stamp);
      const cv_write *rw = cv_find_write(s, k, c.column, &c.remote_stamp);
      assert_true(c.column < MU_NCOLS);
      if (!lw || !rw)
        fail_msg("replica %d: conflict %" PRIu64 " on '%s' column %u names "
                 "a write nobody made: local %" PRIx64
                 "/%02x%s, remote %" PRIx64 "/%02x%s",
                 ri, c.id, cv_keys[k], c.column, c.local_stamp.hlc,
                 c.local_stamp.site[0], lw ? "" : " (unknown)",
                 c.remote_stamp.hlc, c.remote_stamp.site[0],
                 rw ? "" : " (unknown)");
      assert_true(cv_val_eq(&lw->v, &c.local));
      assert_true(cv_val_eq(&rw->v, &c.remote));
      assert_true(memcmp(c.local_stamp.site, c.remote_stamp.site, 16) != 0);
      /* Not a conflict when one wrote over the other. */
      if (!cv_stamp_cmp(lw->base.hlc, lw->base.site, rw->hlc, rw->site) ||
          !cv_stamp_cmp(rw->base.hlc, rw->base.site, lw->hlc, lw->site))
        fail_msg("replica %d: conflict %" PRIu64 " on '%s': one write "
                 "replaced the other",
                 ri, c.id, cv_keys[k]);
      assert_int_equal(c.remote_won, cmp > 0);
    } else if (c.kind == SYNC_DELETED_SOURCE) {
      assert_int_equal(c.column, SYNC_ROW);
      assert_true(c.local_stamp.hlc > c.remote_stamp.hlc);
      assert_true(c.remote_won);
    } else {
      assert_int_equal(c.kind, SYNC_DELETED_TARGET);
      assert_int_equal(c.column, SYNC_ROW);
      assert_true(c.remote_stamp.hlc > c.local_stamp.hlc);
      assert_false(c.remote_won);
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_conflicts_close(it);
  sync_txn_abort(t);
}

/* On divergence: each replica's rows (live or tombstone) with their
 * causal length and row stamp, to stderr. */
static void cv_dump(cv_scn *s) {
  int i;
  for (i = 0; i < s->nrep; i++) {
    sync_txn *t;
    sync_changes *it;
    sync_change ch;
    fprintf(stderr, "replica %d (site %02x..%02x):", i, s->rep[i].site[0],
            s->rep[i].site[15]);
    if (sync_txn_begin(s->rep[i].env, SYNC_TXN_RDONLY, &t)) continue;
    if (sync_changes_open(t, 0, &it) == 0) {
      while (sync_changes_next(it, &ch) == 0)
        fprintf(stderr, " %.*s/cl%" PRIu64 "@%" PRIx64 ":%02x", (int)ch.key.len,
                (const char *)ch.key.data, ch.causal_length, ch.row_stamp.hlc,
                ch.row_stamp.site[0]);
      sync_changes_close(it);
    }
    sync_txn_abort(t);
    fprintf(stderr, "\n");
  }
}

/* Pull between every ordered pair, clean link, until all digests agree;
 * then a further round must change nothing and send nothing. */
static void cv_quiesce(cv_scn *s) {
  int round, i, j;
  s->phase = "quiescent pulls";
  for (round = 1;; round++) {
    uint64_t d0;
    int same = 1;
    for (i = 0; i < s->nrep; i++)
      for (j = 0; j < s->nrep; j++)
        if (i != j)
          mu_pull(&s->rep[i], &s->rep[j], 1 + (size_t)cv_below(s, 4), 1, NULL);
    d0 = mu_digest(&s->rep[0]);
    for (i = 1; i < s->nrep; i++)
      if (mu_digest(&s->rep[i]) != d0) same = 0;
    if (same) {
      if ((unsigned long)round > cv_st.rounds_max)
        cv_st.rounds_max = (unsigned long)round;
      break;
    }
    if (round == 3) {
      cv_dump(s);
      fail_msg("no convergence after %d rounds of pulls", round);
    }
  }
  s->phase = "echo check";
  for (i = 0; i < s->nrep; i++)
    for (j = 0; j < s->nrep; j++) {
      mu_pull_stats st;
      uint64_t v0;
      if (i == j) continue;
      v0 = mu_version(&s->rep[i]);
      mu_pull(&s->rep[i], &s->rep[j], 0, 1, &st);
      TU_U64(st.inserted + st.updated + st.deleted + st.conflicts, 0);
      TU_U64(mu_version(&s->rep[i]), v0);
      cv_st.echo_rows += st.rows;
    }
}

/* Every replica knows and has acknowledged every other: collect the
 * tombstones on all replicas (all = 1) or on some; the data stays as it
 * is.  Keys collected everywhere start afresh in the model; keys
 * collected on some replicas only are checked for convergence and
 * provenance, not against the model (a replica that forgot a key's
 * causal length cannot follow the model's rule). */
static void cv_gc(cv_scn *s, int all) {
  int i, k, some = 0, chosen[CV_MAXREP];
  uint64_t d0 = mu_digest(&s->rep[0]);
  s->phase = all ? "gc" : "partial gc";
  /* Requests that acknowledge the end of every log (nothing changes). */
  for (i = 0; i < s->nrep; i++)
    for (k = 0; k < s->nrep; k++)
      if (i != k) mu_pull(&s->rep[i], &s->rep[k], 0, 1, NULL);
  for (i = 0; i < s->nrep; i++) {
    chosen[i] = all || cv_below(s, 2);
    if (!all && i == s->nrep - 1 && !some) chosen[i] = 1;
    some += chosen[i];
  }
  if (!all && some == s->nrep) chosen[cv_below(s, (uint64_t)s->nrep)] = 0;
  for (i = 0; i < s->nrep; i++) {
    sync_txn *t;
    uint64_t before, collected, after;
    if (!chosen[i]) continue;
    TU_OK(sync_txn_begin(s->rep[i].env, 0, &t));
    TU_OK(sync_tombstones(t, &before));
    TU_OK(sync_gc(t, &collected));
    TU_OK(sync_tombstones(t, &after));
    TU_OK(sync_txn_commit(t));
    TU_U64(collected, before);
    TU_U64(after, 0);
    TU_U64(mu_digest(&s->rep[i]), d0);
  }
  /* No replica remembers the collected keys' writes (the conflict log
   * still names them). */
  for (k = 0; k < CV_NKEYS; k++)
    if (s->log[k].maxcl && !(s->log[k].maxcl & 1)) {
      s->log[k].gen++;
      if (all)
        s->log[k].maxcl = 0;
      else
        s->log[k].partial = 1;
    }
  cv_st.gc_epochs++;
}

/* ---------------------------------------------------------------------
 * Scenarios
 * ------------------------------------------------------------------- */
static void cv_free(cv_scn *s) {
  int i;
  for (i = 0; i < s->nheld; i++) sync_delta_free(s->held[i].d);
  s->nheld = 0;
  for (i = 0; i < CV_MAXREP; i++)
    if (s->rep[i].env || s->rep[i].path[0]) mu_close(&s->rep[i]);
  for (i = 0; i < CV_NKEYS; i++) free(s->log[i].w);
  memset(s->log, 0, sizeof s->log);
}

static void cv_setup(cv_scn *s, uint64_t seed, int nrep) {
  int i, k;
  const char *count_var = s->count_var;
  memset(s, 0, sizeof *s);
  s->count_var = count_var;
  s->seed = seed;
  s->rng.s = seed;
  s->phase = "setup";
  s->nrep = nrep ? nrep : 3 + (int)cv_below(s, 3);
  s->now = UINT64_C(1700000000000) + cv_below(s, 1000);
  {
    int all[CV_NKEYS];
    for (k = 0; k < CV_NKEYS; k++) all[k] = k;
    for (k = CV_NKEYS; k > 1; k--) {
      int j = (int)cv_below(s, (uint64_t)k), tmp = all[k - 1];
      all[k - 1] = all[j];
      all[j] = tmp;
    }
    s->nkeys = 3 + (int)cv_below(s, 18);
    memcpy(s->keys, all, sizeof all);
  }
  for (i = 0; i < s->nrep; i++) {
    uint8_t site[16];
    char path[32];
    if (cv_below(s, 2)) {
      /* Sites that differ only in the last byte. */
      memset(site, 0x5a, 16);
      site[15] = (uint8_t)(0x10 * (i + 1) + cv_below(s, 16));
    } else {
      tu_fill(&s->rng, site, 16);
      site[0] = (uint8_t)(site[0] & 0xf0) | (uint8_t)i; /* distinct */
    }
    snprintf(path, sizeof path, "t_cv%d.db", i);
    mu_open(&s->rep[i], path, site, &s->now, (int64_t)cv_below(s, 5) - 2);
  }
}

static void cv_epoch(cv_scn *s, int steps) {
  int step;
  s->phase = "random writes and exchanges";
  for (step = 0; step < steps; step++) {
    uint64_t p = cv_below(s, 100);
    if (p < 60) {
      cv_local_txn(s, (int)cv_below(s, (uint64_t)s->nrep));
    } else if (p < 95) {
      int a = (int)cv_below(s, (uint64_t)s->nrep);
      int b = (int)cv_below(s, (uint64_t)s->nrep - 1);
      if (b >= a) b++;
      cv_exchange(s, a, b);
    } else if (s->nheld) {
      cv_deliver(s, (int)cv_below(s, (uint64_t)s->nheld));
    }
  }
  /* What is still in flight arrives late, or never. */
  while (s->nheld) {
    if (cv_below(s, 2)) {
      cv_deliver(s, (int)cv_below(s, (uint64_t)s->nheld));
    } else {
      sync_delta_free(s->held[s->nheld - 1].d);
      s->nheld--;
      cv_st.dropped++;
    }
  }
}

/* One scenario; long ones write thousands of times on a few keys, so
 * that the change log compacts its stale entries while peers pull. */
static void cv_scenario(cv_scn *s, uint64_t seed, int long_run) {
  int i, epochs, e;
  cv_setup(s, seed, 0);
  if (long_run) s->nkeys = 2 + (int)cv_below(s, 4);
  epochs = cv_below(s, 100) < 25 ? 2 : 1;
  for (e = 0; e < epochs; e++) {
    cv_epoch(s, long_run ? 4000 + (int)cv_below(s, 2000)
                         : 30 + (int)cv_below(s, 50 * (uint64_t)s->nrep));
    cv_quiesce(s);
    s->phase = "model check";
    for (i = 0; i < s->nrep; i++) cv_check_model(s, i);
    s->phase = "conflict log check";
    for (i = 0; i < s->nrep; i++) cv_check_conflicts(s, i);
    if (e + 1 < epochs || cv_below(s, 4) == 0) {
      cv_gc(s, 1);
      s->phase = "model check after gc";
      for (i = 0; i < s->nrep; i++) cv_check_model(s, i);
    }
  }
  cv_free(s);
  cv_st.scenarios++;
}

/* Collect tombstones on some replicas only, then write on: re-inserts of
 * collected keys, on replicas that collected them and on ones that did
 * not, must still converge. */
static void cv_partial_gc_scenario(cv_scn *s, uint64_t seed) {
  int i;
  cv_setup(s, seed, 0);
  cv_epoch(s, 30 + (int)cv_below(s, 40 * (uint64_t)s->nrep));
  cv_quiesce(s);
  cv_gc(s, 0);
  cv_epoch(s, 30 + (int)cv_below(s, 40 * (uint64_t)s->nrep));
  cv_quiesce(s);
  s->phase = "model check";
  for (i = 0; i < s->nrep; i++) cv_check_model(s, i);
  cv_free(s);
  cv_st.scenarios++;
}

static cv_scn cv_scn_mem;

static int cv_test_setup(void **state) {
  (void)state;
  cv_cur = NULL;
  memset(&cv_st, 0, sizeof cv_st);
  return 0;
}

static int cv_test_teardown(void **state) {
  (void)state;
  if (cv_cur) {
    fprintf(stderr,
            "FAILED scenario seed 0x%016" PRIx64 " during %s; replay with "
            "SYNC_TEST_SEED=0x%016" PRIx64 " %s=1\n",
            cv_cur->seed, cv_cur->phase, cv_cur->seed, cv_cur->count_var);
    cv_free(cv_cur);
    cv_cur = NULL;
  }
  return 0;
}

static void cv_print_stats(const char *name) {
  if (!getenv("SYNC_TEST_VERBOSE")) return;
  fprintf(stderr,
          "%s: %lu scenarios, %lu local txns (%lu aborted), %lu exchanges, "
          "%lu chunks: %lu applied twice, %lu held, %lu late, %lu cut ahead, "
          "%lu dropped, %lu sessions cut; %lu conflicts; %lu gc epochs; "
          "convergence in <= %lu rounds; %lu rows re-sent after "
          "convergence\n",
          name, cv_st.scenarios, cv_st.local_txns, cv_st.aborted,
          cv_st.exchanges, cv_st.chunks, cv_st.dups, cv_st.held, cv_st.late,
          cv_st.ahead, cv_st.dropped, cv_st.cut, cv_st.conflicts,
          cv_st.gc_epochs, cv_st.rounds_max, cv_st.echo_rows);
}

/* Replicas that write concurrently and exchange over a faulty link reach
 * equal digests, and each holds exactly what the LWW model computes. */
static void test_random_replicas_converge_to_the_lww_model(void **state) {
  uint64_t base = cv_env_u64("SYNC_TEST_SEED", CV_DEFAULT_SEED);
  uint64_t n = cv_env_u64("SYNC_TEST_SCENARIOS", CV_DEFAULT_SCENARIOS), i;
  (void)state;
  for (i = 0; i < n; i++) {
    cv_cur = &cv_scn_mem;
    cv_cur->count_var = "SYNC_TEST_SCENARIOS";
    cv_scenario(cv_cur, base + i, 0);
    cv_cur = NULL;
  }
  assert_true(cv_st.scenarios == n);
  cv_print_stats("mesh");
}

/* The same with long histories on few keys: the change log compacts its
 * stale entries under the peers' cursors. */
static void test_long_histories_converge_through_log_compaction(void **state) {
  uint64_t base = cv_env_u64("SYNC_TEST_SEED", CV_DEFAULT_SEED);
  uint64_t n = cv_env_u64("SYNC_TEST_LONG_SCENARIOS", CV_DEFAULT_LONG), i;
  (void)state;
  for (i = 0; i < n; i++) {
    cv_cur = &cv_scn_mem;
    cv_cur->count_var = "SYNC_TEST_LONG_SCENARIOS";
    cv_scenario(cv_cur, base + i, 1);
    cv_cur = NULL;
  }
  assert_true(cv_st.scenarios == n);
  cv_print_stats("long");
}

static void test_partial_gc_then_reinserts_converge(void **state) {
  uint64_t base = cv_env_u64("SYNC_TEST_SEED", CV_DEFAULT_SEED);
  uint64_t n = cv_env_u64("SYNC_TEST_GC_SCENARIOS", CV_DEFAULT_GC), i;
  (void)state;
  for (i = 0; i < n; i++) {
    cv_cur = &cv_scn_mem;
    cv_cur->count_var = "SYNC_TEST_GC_SCENARIOS";
    cv_partial_gc_scenario(cv_cur, base + i);
    cv_cur = NULL;
  }
  assert_true(cv_st.scenarios == n);
  cv_print_stats("partial gc");
}

/* ---------------------------------------------------------------------
 * Relay: A writes, B pulls from A, C pulls only from B.
 * ------------------------------------------------------------------- */
static void cv_relay_scenario(cv_scn *s, uint64_t seed) {
  mu_rep *a, *b, *c;
  int round, rounds, i;
  cv_setup(s, seed, 3);
  s->only_first_writes = 1;
  a = &s->rep[0];
  b = &s->rep[1];
  c = &s->rep[2];
  rounds = 1 + (int)cv_below(s, 4);
  for (round = 0; round < rounds; round++) {
    int n = 1 + (int)cv_below(s, 15);
    uint64_t da;
    s->phase = "relay: writes on A";
    for (i = 0; i < n; i++) cv_local_txn(s, 0);
    s->phase = "relay: B pulls from A, C from B";
    if (cv_below(s, 2)) cv_exchange(s, 1, 0); /* a faulty start */
    if (cv_below(s, 2)) cv_exchange(s, 2, 1);
    while (s->nheld) cv_deliver(s, s->nheld - 1);
    mu_pull(b, a, 1 + (size_t)cv_below(s, 4), cv_below(s, 2), NULL);
    mu_pull(c, b, 1 + (size_t)cv_below(s, 4), cv_below(s, 2), NULL);
    da = mu_digest(a);
    TU_U64(mu_digest(b), da);
    TU_U64(mu_digest(c), da);
    s->phase = "relay: model check";
    for (i = 0; i < 3; i++) cv_check_model(s, i);
    /* Nothing comes back: A wrote it all, B holds only A's data. */
    s->phase = "relay: no echoes";
    {
      struct {
        mu_rep *to, *from;
      } back[3];
      int j;
      back[0].to = a;
      back[0].from = b;
      back[1].to = a;
      back[1].from = c;
      back[2].to = b;
      back[2].from = c;
      for (j = 0; j < 3; j++) {
        mu_pull_stats st;
        uint64_t v0 = mu_version(back[j].to);
        mu_pull(back[j].to, back[j].from, 1 + (size_t)cv_below(s, 4), 1, &st);
        TU_U64(st.rows, 0);
        TU_U64(st.conflicts, 0);
        TU_U64(st.inserted + st.updated + st.deleted, 0);
        TU_U64(mu_version(back[j].to), v0);
      }
      TU_U64(mu_digest(a), da);
    }
  }
  cv_free(s);
  cv_st.scenarios++;
}

static void test_relay_reaches_third_replica_without_echoes(void **state) {
  uint64_t base = cv_env_u64("SYNC_TEST_SEED", CV_DEFAULT_SEED);
  uint64_t n = cv_env_u64("SYNC_TEST_RELAY_SCENARIOS", CV_DEFAULT_RELAY), i;
  (void)state;
  for (i = 0; i < n; i++) {
    cv_cur = &cv_scn_mem;
    cv_cur->count_var = "SYNC_TEST_RELAY_SCENARIOS";
    cv_relay_scenario(cv_cur, base + i);
    cv_cur = NULL;
  }
  assert_true(cv_st.scenarios == n);
  cv_print_stats("relay");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_random_replicas_converge_to_the_lww_model, cv_test_setup,
          cv_test_teardown),
      cmocka_unit_test_setup_teardown(
          test_long_histories_converge_through_log_compaction, cv_test_setup,
          cv_test_teardown),
      cmocka_unit_test_setup_teardown(test_partial_gc_then_reinserts_converge,
                                      cv_test_setup, cv_test_teardown),
      cmocka_unit_test_setup_teardown(
          test_relay_reaches_third_replica_without_echoes, cv_test_setup,
          cv_test_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
