/*
 * test_lifecycle.c - convergence through fleet events (issue 14): a
 * replica that joins through another peer after tombstones were
 * collected, a device restored from a backup of its file, a file copied
 * to make a second replica with the same site id, whole-row replacement
 * under SYNC_APPLY_NEWER, and a randomized property test that draws all
 * of these (plus writes, sessions between random pairs, cut sessions,
 * sync_gc and sync_peer_reset) in one fleet.
 *
 * Every scenario ends with sessions between all pairs and asserts equal
 * digests and equal rows on all replicas, and that nothing was lost or
 * invented (see lc_check_model).  A session may end with SYNC_ESTALE;
 * then the documented path (sync_peer_reset of that peer, sync again)
 * must clear it.  Where the library defines SYNC_EHISTORY (a replica
 * found to be a copy took a new site id), "sync again" is that path.
 *
 * Clocks: every replica reads one shared clock without skew, and every
 * local write transaction happens at a millisecond of its own, so the
 * HLC of a write is ordered like the write's sequence number in the
 * scenario; the model orders last-writer-wins by that number and needs
 * no stamps (which a site renewal may rewrite).  Clock skew is
 * test_converge's business.
 *
 * The randomized test runs SYNC_LIFECYCLE_SCENARIOS scenarios (default
 * 1,000; make soak-lifecycle runs 50,000) with seeds
 * SYNC_LIFECYCLE_SEED + i; a failure prints the seed
 * and the line that replays it alone.  SYNC_LIFECYCLE_VERBOSE=1 prints
 * what the scenarios did, SYNC_LIFECYCLE_TRACE=1 every replica's log
 * before each event.
 *
 * One thing the model allows that it would otherwise call a lost delete:
 * sync_gc collects a tombstone once every peer the collector knows has
 * acknowledged it, so a version of that row written concurrently with
 * the delete on a replica the collector never heard of cannot be told
 * from a new row when it arrives later, and comes back above the delete
 * (docs/FORMAT.md, "Tombstones").  lc_random_gc marks such writes; the
 * checks let them through and count them.  SYNC_LIFECYCLE_SKIP=<letters> leaves kinds of
 * events out, to look at one defect while another is being fixed: s
 * sessions, u cut sessions, a settling rounds, g gc, b backups, r
 * restores, c copied files, j joins, x peer resets, p repair sessions
 * (make soak-lifecycle runs many scenarios).  Repair sessions (a random
 * event, and the other path after SYNC_ESTALE) are drawn where sync.h
 * has them (SYNC_DIFF_BOTH); without them that event is a write.
 */
#include "sess_util.h"

#include <inttypes.h>

#define LC_T0 UINT64_C(1700000000000)

/* ---------------------------------------------------------------------
 * Replicas that can be closed, copied, restored and cloned
 * ------------------------------------------------------------------- */
#define LC_MAXW 512 /* writes per random scenario */
#define LC_WORDS (LC_MAXW / 64)

typedef struct lc_set {
  uint64_t w[LC_WORDS];
} lc_set;

typedef struct lc_rep {
  mu_rep m;   /* first: the mu_* helpers take &r->m */
  tu_rng rnd; /* the random source once the file exists */
  int fresh;  /* creating the file: the random source hands out m.site */
  lc_set k;   /* writes this replica is known to hold (random test) */
  lc_set p;   /* writes it may hold */
} lc_rep;

/* At creation the site id is the test's choice; any later draw (a new
 * site id for a copy, an epoch id) gets fresh bytes, so that a renewal
 * cannot pick the old id again. */
static int lc_random_fn(void *ctx, void *buf, size_t n) {
  lc_rep *r = (lc_rep *)ctx;
  if (r->fresh) return mu_random_fn(&r->m, buf, n);
  tu_fill(&r->rnd, buf, n);
  return 0;
}

static void lc_env_open(lc_rep *r) {
  TU_OK(sync_env_create(NULL, &r->m.env));
  TU_OK(sync_env_set_random(r->m.env, lc_random_fn, r));
  TU_OK(sync_env_set_clock(r->m.env, mu_clock_fn, &r->m));
  TU_OK(sync_env_set_durability(r->m.env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_mapsize(r->m.env, (size_t)1 << 20, (size_t)1 << 30));
  TU_OK(sync_env_set_schema(r->m.env, mu_tables, 1));
  TU_OK(sync_env_open(r->m.env, r->m.path, 0));
  TU_OK(sync_env_site_id(r->m.env, r->m.site));
}

/* Replicas open now, so that a test that fails half-way still closes
 * them (its teardown), and the sanitizer reports only the failure. */
#define LC_MAXOPEN 16
static lc_rep *lc_open_reps[LC_MAXOPEN];

static void lc_track(lc_rep *r) {
  int i;
  for (i = 0; i < LC_MAXOPEN; i++)
    if (!lc_open_reps[i] || lc_open_reps[i] == r) {
      lc_open_reps[i] = r;
      return;
    }
  fail_msg("more than %d replicas open", LC_MAXOPEN);
}

/* A new, empty replica at path with site id `site`. */
static void lc_create(lc_rep *r, const char *path, const uint8_t site[16],
                      const uint64_t *now, uint64_t seed) {
  memset(r, 0, sizeof *r);
  snprintf(r->m.path, sizeof r->m.path, "%s", path);
  memcpy(r->m.site, site, 16);
  r->m.now = now;
  r->rnd.s = seed ^ UINT64_C(0x6c6966650000);
  tu_remove_db(path);
  r->fresh = 1;
  lc_env_open(r);
  r->fresh = 0;
  lc_track(r);
  assert_memory_equal(r->m.site, site, 16);
}

static void lc_create_b(lc_rep *r, const char *path, uint8_t b,
                        const uint64_t *now) {
  uint8_t site[16];
  mu_site(site, b);
  lc_create(r, path, site, now, b);
}

/* The data file (not the lock file) as it is with the env closed; the
 * env is open again on return.  The caller frees the copy. */
static unsigned char *lc_copy_file(lc_rep *r, size_t *n) {
  unsigned char *p;
  sync_env_close(r->m.env);
  r->m.env = NULL;
  p = tu_read_file(r->m.path, n);
  assert_non_null(p);
  lc_env_open(r);
  return p;
}

/* Put a copy back over the replica's file, in place, and reopen. */
static void lc_restore(lc_rep *r, const unsigned char *p, size_t n) {
  sync_env_close(r->m.env);
  r->m.env = NULL;
  assert_int_equal(tu_write_file(r->m.path, p, n), 0);
  lc_env_open(r);
}

/* A new replica at path from a copy of another's file (same site id,
 * unless the library renews it at open). */
static void lc_clone(lc_rep *r, const char *path, const unsigned char *p,
                     size_t n, const uint64_t *now, uint64_t seed) {
  memset(r, 0, sizeof *r);
  snprintf(r->m.path, sizeof r->m.path, "%s", path);
  r->m.now = now;
  r->rnd.s = seed ^ UINT64_C(0x636c6f6e6500);
  tu_remove_db(path);
  assert_int_equal(tu_write_file(path, p, n), 0);
  lc_env_open(r);
  lc_track(r);
}

static void lc_close(lc_rep *r) {
  int i;
  for (i = 0; i < LC_MAXOPEN; i++)
    if (lc_open_reps[i] == r) lc_open_reps[i] = NULL;
  mu_close(&r->m);
}

static int lc_close_all(void **state) {
  int i;
  (void)state;
  for (i = 0; i < LC_MAXOPEN; i++)
    if (lc_open_reps[i]) lc_close(lc_open_reps[i]);
  return 0;
}

/* ---------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------- */
typedef struct lc_stats {
  unsigned long scenarios, writes, sessions, cut, stale, history, gcs,
      collected, backups, restores, clones, joins, resets, repairs,
      final_rounds_max, zombies, lost_claims, sessions_only;
} lc_stats;
static lc_stats lc_st;
static char lc_errmsg[256]; /* the last failed session's words */

/* One session, client c against server s, in the given mode; budget > 0
 * cuts the link after that many bytes; g (may be NULL) draws fragment
 * and chunk sizes.  Returns 1 when both sides are done, else the error
 * (the client's, or the server's when the client saw none).  *changed
 * (may be NULL) gets the rows either side inserted, updated or deleted. */
/* Repair sessions (range reconciliation) exist where sync.h has the
 * diff flags that came with them. */
#ifdef SYNC_DIFF_BOTH
#define LC_HAVE_REPAIR 1
#else
#define LC_HAVE_REPAIR 0
#endif

static int lc_session_x(lc_rep *c, lc_rep *s, int mode, int repair,
                        size_t budget, tu_rng *g, uint64_t *changed,
                        int *equal);

static int lc_session(lc_rep *c, lc_rep *s, int mode, size_t budget,
                      tu_rng *g, uint64_t *changed) {
  return lc_session_x(c, s, mode, 0, budget, g, changed, NULL);
}

/* As lc_session; repair: a repair session instead (*equal, when not
 * NULL, says whether it ended with equal roots). */
static int lc_session_x(lc_rep *c, lc_rep *s, int mode, int repair,
                        size_t budget, tu_rng *g, uint64_t *changed,
                        int *equal) {
  sync_session_opts co, so;
  sync_session *a, *b;
  sync_session_stats cst, sst;
  su_pump p;
  unsigned char cprio[SYNC_RIGHTS_BYTES] = {0}, sprio[SYNC_RIGHTS_BYTES] = {0};
  int rc, cs, ss;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = mode;
  so.server = 1;
#if LC_HAVE_REPAIR
  co.repair = repair;
#else
  assert_int_equal(repair, 0);
#endif
  memset(&p, 0, sizeof p);
  p.budget = budget;
  if (g) {
    co.chunk_rows = 1 + (size_t)tu_below(g, 4);
    so.chunk_rows = 1 + (size_t)tu_below(g, 4);
    /* Windows of every size, and tables sent first, on either side. */
    co.window = tu_below(g, 2) ? 0 : 1 + (size_t)tu_below(g, 4);
    cprio[0] = (unsigned char)tu_below(g, 256);
    sprio[0] = (unsigned char)tu_below(g, 256);
    co.priority = tu_below(g, 2) ? cprio : NULL;
    so.priority = tu_below(g, 2) ? sprio : NULL;
    if (tu_below(g, 4) == 0) {
      p.g = g;
      p.max_piece = 64 + (size_t)tu_below(g, 2048);
    }
  }
  co.no_check = getenv("LC_NO_CHECK") != NULL;
  TU_OK(sync_session_create(c->m.env, &co, &a));
  TU_OK(sync_session_create(s->m.env, &so, &b));
  (void)su_run(&p, a, b);
  if (getenv("LC_SHOW_CHECK")) {
    sync_session_stats cst;
    sync_session_stats_get(a, &cst);
    fprintf(stderr, "session: unchanged %d\n", cst.unchanged);
  }
  cs = sync_session_status(a);
  ss = sync_session_status(b);
  sync_session_stats_get(a, &cst);
  sync_session_stats_get(b, &sst);
  if (equal) *equal = 0;
#if LC_HAVE_REPAIR
  if (equal) *equal = cst.repair_equal;
#endif
  if (cs != 1 || ss != 1)
    snprintf(lc_errmsg, sizeof lc_errmsg, "client: \"%s\", server: \"%s\"",
             sync_session_errmsg(a), sync_session_errmsg(b));
  sync_session_free(a);
  sync_session_free(b);
  if (changed)
    *changed = cst.applied.inserted + cst.applied.updated +
               cst.applied.deleted + sst.applied.inserted +
               sst.applied.updated + sst.applied.deleted;
  TU_OK(sync_env_site_id(c->m.env, c->m.site));
  TU_OK(sync_env_site_id(s->m.env, s->m.site));
  lc_st.sessions++;
  if (cs == 1 && ss == 1) return 1;
  rc = cs < 0 ? cs : ss < 0 ? ss : SYNC_ETIMEOUT;
  if (budget) lc_st.cut++;
  return rc;
}

static void lc_reset(lc_rep *r, const lc_rep *peer) {
  sync_txn *x;
  TU_OK(sync_txn_begin(r->m.env, 0, &x));
  TU_OK(sync_peer_reset(x, peer->m.site));
  TU_OK(sync_txn_commit(x));
}

static int lc_is_history(int rc) {
#ifdef SYNC_EHISTORY
  return rc == SYNC_EHISTORY;
#else
  (void)rc;
  return 0;
#endif
}

/* A session on a clean link, and the documented path after its errors:
 * SYNC_ESTALE -> the requester resets its cursor for the sender and
 * syncs again (in SYNC_BOTH both sides request, so both reset);
 * SYNC_EHISTORY -> sync again.  Returns the last status. */
static int lc_sync(lc_rep *c, lc_rep *s, int mode, tu_rng *g,
                   uint64_t *changed) {
  int attempt, rc = 0;
  uint64_t total = 0, ch = 0;
  for (attempt = 0; attempt < 4; attempt++) {
    rc = lc_session(c, s, mode, 0, g, &ch);
    total += ch;
    if (rc == SYNC_ESTALE) {
      lc_st.stale++;
      if (LC_HAVE_REPAIR && g && tu_below(g, 2)) {
        /* The other documented path: a repair session, then sync. */
        int r1 = 1, r2 = 1;
        if (mode != SYNC_PUSH) r1 = lc_session_x(c, s, 0, 1, 0, g, &ch, NULL);
        total += ch;
        if (lc_is_history(r1)) continue; /* sync again */
        if (mode != SYNC_PULL) r2 = lc_session_x(s, c, 0, 1, 0, g, &ch, NULL);
        total += ch;
        if (lc_is_history(r2)) continue;
        lc_st.repairs++;
        if (r1 != 1 || r2 != 1) return r1 != 1 ? r1 : r2;
        continue;
      }
      if (mode != SYNC_PUSH) lc_reset(c, s);
      if (mode != SYNC_PULL) lc_reset(s, c);
      continue;
    }
    if (lc_is_history(rc)) {
      lc_st.history++;
      continue;
    }
    break;
  }
  if (changed) *changed = total;
  return rc;
}

/* lc_sync that must end well. */
static void lc_sync_ok(lc_rep *c, lc_rep *s, int mode) {
  int rc = lc_sync(c, s, mode, NULL, NULL);
  if (rc != 1)
    fail_msg("session %s <- %s (mode %d) ended with %d (%s; %s)", c->m.path,
             s->m.path, mode, rc, sync_strerror(rc), lc_errmsg);
}

/* ---------------------------------------------------------------------
 * Rows
 * ------------------------------------------------------------------- */

/* The values of write `id`: each column names the write that wrote it. */
typedef struct lc_vals {
  sync_value v[MU_NCOLS];
  char s[24];
  unsigned char b[4];
} lc_vals;

static void lc_vals_of(lc_vals *o, uint64_t id) {
  unsigned j;
  snprintf(o->s, sizeof o->s, "w%" PRIu64, id);
  for (j = 0; j < 4; j++) o->b[j] = (unsigned char)(id >> (8 * j));
  o->v[MU_COL_I] = sync_int((int64_t)id);
  o->v[MU_COL_R] = sync_real((double)id + 0.25);
  o->v[MU_COL_S] = sync_text(o->s, strlen(o->s));
  o->v[MU_COL_B] = sync_blob(o->b, 4);
}

/* Put key = the values of write id, in its own transaction. */
static void lc_put(lc_rep *r, const char *key, uint64_t id) {
  sync_txn *x;
  lc_vals v;
  lc_vals_of(&v, id);
  TU_OK(sync_txn_begin(r->m.env, 0, &x));
  TU_OK(sync_put(x, 0, key, strlen(key), v.v, MU_NCOLS));
  TU_OK(sync_txn_commit(x));
}

/* Update column col of key to the value write id gives it. */
static void lc_update(lc_rep *r, const char *key, unsigned col, uint64_t id) {
  lc_vals v;
  lc_vals_of(&v, id);
  mu_update(&r->m, key, col, v.v[col]);
}

/* Assert that key on r holds, column by column, the values of the writes
 * ids[] (0: the row must be absent when ids is NULL). */
static void lc_expect_row(lc_rep *r, const char *key, const uint64_t *ids) {
  mu_row row;
  unsigned c;
  mu_read(&r->m, key, &row);
  if (!ids) {
    if (row.present)
      fail_msg("%s: row '%s' is live (i = %" PRId64 "), expected deleted",
               r->m.path, key, row.v[0].i);
    return;
  }
  if (!row.present) fail_msg("%s: row '%s' is missing", r->m.path, key);
  for (c = 0; c < MU_NCOLS; c++) {
    lc_vals v;
    lc_vals_of(&v, ids[c]);
    if (!tu_value_equal(&row.v[c], &v.v[c]))
      fail_msg("%s: row '%s' column %u holds %s, expected that of write "
               "%" PRIu64,
               r->m.path, key, c,
               row.v[c].type == SYNC_INTEGER ? "another integer"
                                             : "another value",
               ids[c]);
  }
}

static void lc_expect_put(lc_rep *r, const char *key, uint64_t id) {
  uint64_t ids[MU_NCOLS] = {id, id, id, id};
  lc_expect_row(r, key, ids);
}

/* All replicas hold the same rows (compared row by row) and digests. */
static void lc_assert_same(lc_rep *const *reps, int n) {
  int i;
  uint64_t d0 = mu_digest(&reps[0]->m);
  for (i = 1; i < n; i++) {
    sync_txn *ta, *tb;
    sync_cursor *ca, *cb;
    sync_key ka, kb;
    sync_value va[MU_NCOLS], vb[MU_NCOLS];
    int ra, rb;
    unsigned c;
    TU_OK(sync_txn_begin(reps[0]->m.env, SYNC_TXN_RDONLY, &ta));
    TU_OK(sync_txn_begin(reps[i]->m.env, SYNC_TXN_RDONLY, &tb));
    TU_OK(sync_cursor_open(ta, 0, &ca));
    TU_OK(sync_cursor_open(tb, 0, &cb));
    for (;;) {
      ra = sync_cursor_next(ca, &ka, va, MU_NCOLS);
      rb = sync_cursor_next(cb, &kb, vb, MU_NCOLS);
      if (ra != 0 || rb != 0) break;
      if (ka.len != kb.len || memcmp(ka.data, kb.data, ka.len))
        fail_msg("%s holds row '%.*s' where %s holds '%.*s'", reps[0]->m.path,
                 (int)ka.len, (const char *)ka.data, reps[i]->m.path,
                 (int)kb.len, (const char *)kb.data);
      for (c = 0; c < MU_NCOLS; c++)
      for (c = 0; c < MU_NCOLS; c++)
        if (!tu_value_equal(&va[c], &vb[c]))
          fail_msg("row '%.*s' column %u differs between %s and %s",
                   (int)ka.len, (const char *)ka.data, c, reps[0]->m.path,
                   reps[i]->m.path);
    }
    if (ra != rb)
      fail_msg("%s and %s hold different numbers of rows (%" PRIu64
               " and %" PRIu64 ")",
               reps[0]->m.path, reps[i]->m.path, mu_count(&reps[0]->m),
               mu_count(&reps[i]->m));
    TU_RC(ra, SYNC_NOTFOUND);
    sync_cursor_close(ca);
    sync_cursor_close(cb);
    sync_txn_abort(ta);
    sync_txn_abort(tb);
    if (mu_digest(&reps[i]->m) != d0)
      fail_msg("equal rows, yet the digests of %s and %s differ",
               reps[0]->m.path, reps[i]->m.path);
  }
}

static uint64_t lc_gc(lc_rep *r) {
  sync_txn *x;
  uint64_t n = 0;
  TU_OK(sync_txn_begin(r->m.env, 0, &x));
  TU_OK(sync_gc(x, &n));
  TU_OK(sync_txn_commit(x));
  return n;
}

/* ---------------------------------------------------------------------
 * Named fleet events
 * ------------------------------------------------------------------- */

/* S collects tombstones once its known peers A and E acknowledged them.
 * E3, unknown to S, got S's rows from A before the deletes.  E3 then
 * pulls from S (an initial stream of the live rows) and syncs with A,
 * which still keeps the tombstones for E3.  E3 must end without the
 * deleted rows (directly, or through SYNC_ESTALE and its path). */
static void test_gc_then_join_through_other_peer(void **state) {
  uint64_t now = LC_T0;
  static lc_rep S, A, E, E3;
  lc_rep *all[4];
  char key[16];
  int k;
  (void)state;
  lc_create_b(&S, "t_lc_s.db", 0x51, &now);
  lc_create_b(&A, "t_lc_a.db", 0xa1, &now);
  lc_create_b(&E, "t_lc_e.db", 0xe1, &now);
  lc_create_b(&E3, "t_lc_e3.db", 0xe3, &now);
  all[0] = &S;
  all[1] = &A;
  all[2] = &E;
  all[3] = &E3;
  for (k = 0; k < 6; k++) {
    now++;
    snprintf(key, sizeof key, "r%d", k);
    lc_put(&S, key, 100 + (uint64_t)k);
  }
  now++;
  lc_sync_ok(&A, &S, SYNC_BOTH);
  lc_sync_ok(&E, &S, SYNC_BOTH);
  lc_sync_ok(&E3, &A, SYNC_BOTH); /* E3 holds S's rows, through A */
  TU_U64(mu_count(&E3.m), 6);
  now += 10;
  for (k = 0; k < 3; k++) {
    now++;
    snprintf(key, sizeof key, "r%d", k);
    mu_delete(&S.m, key);
  }
  now++;
  /* A and E get the deletes and acknowledge them. */
  lc_sync_ok(&A, &S, SYNC_BOTH);
  lc_sync_ok(&E, &S, SYNC_BOTH);
  lc_sync_ok(&A, &S, SYNC_BOTH);
  lc_sync_ok(&E, &S, SYNC_BOTH);
  TU_U64(lc_gc(&S), 3); /* the scenario: S's known peers acknowledged */
  TU_U64(lc_gc(&A), 0); /* A keeps them for E3 */
  TU_U64(mu_tombstones(&A.m), 3);
  /* E3 joins S: an initial stream of S's live rows. */
  now++;
  lc_sync_ok(&E3, &S, SYNC_PULL);
  /* Later E3 syncs with A, which kept the tombstones for E3. */
  now++;
  lc_sync_ok(&E3, &A, SYNC_BOTH);
  now++;
  lc_sync_ok(&E3, &S, SYNC_BOTH);
  lc_sync_ok(&A, &S, SYNC_BOTH);
  lc_sync_ok(&E, &S, SYNC_BOTH);
  lc_sync_ok(&E3, &A, SYNC_BOTH);
  for (k = 0; k < 4; k++) {
    int j;
    for (j = 0; j < 6; j++) {
      snprintf(key, sizeof key, "r%d", j);
      if (j < 3)
        lc_expect_row(all[k], key, NULL);
      else
        lc_expect_put(all[k], key, 100 + (uint64_t)j);
    }
    TU_U64(mu_count(&all[k]->m), 3);
  }
  lc_assert_same(all, 4);
  lc_close(&S);
  lc_close(&A);
  lc_close(&E);
  lc_close(&E3);
}

/* D syncs with S, its file is copied, it writes five rows that reach S;
 * then the copy is put back and D writes one more row.  Two syncs later
 * S has the new row, D has its five rows back, and both are equal. */
static void test_restore_from_backup(void **state) {
  uint64_t now = LC_T0;
  static lc_rep S, D;
  lc_rep *all[2];
  unsigned char *backup;
  size_t n = 0;
  char key[16];
  int k;
  (void)state;
  lc_create_b(&S, "t_lc_s.db", 0x51, &now);
  lc_create_b(&D, "t_lc_d.db", 0xd1, &now);
  all[0] = &S;
  all[1] = &D;
  now++;
  lc_put(&D, "a0", 1);
  now++;
  lc_put(&D, "a1", 2);
  now++;
  lc_put(&S, "s0", 3);
  now++;
  lc_put(&S, "s1", 4);
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  lc_sync_ok(&D, &S, SYNC_BOTH);
  TU_U64(mu_count(&S.m), 4);
  TU_U64(mu_count(&D.m), 4);
  backup = lc_copy_file(&D, &n);
  for (k = 0; k < 5; k++) {
    now++;
    snprintf(key, sizeof key, "p%d", k);
    lc_put(&D, key, 10 + (uint64_t)k);
  }
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  for (k = 0; k < 5; k++) {
    snprintf(key, sizeof key, "p%d", k);
    lc_expect_put(&S, key, 10 + (uint64_t)k); /* S has them */
  }
  /* D comes back from its backup and writes on. */
  now += 10;
  lc_restore(&D, backup, n);
  free(backup);
  TU_U64(mu_count(&D.m), 4);
  now++;
  lc_put(&D, "n0", 20);
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  for (k = 0; k < 2; k++) {
    int j;
    lc_expect_put(all[k], "a0", 1);
    lc_expect_put(all[k], "a1", 2);
    lc_expect_put(all[k], "s0", 3);
    lc_expect_put(all[k], "s1", 4);
    for (j = 0; j < 5; j++) {
      snprintf(key, sizeof key, "p%d", j);
      lc_expect_put(all[k], key, 10 + (uint64_t)j);
    }
    lc_expect_put(all[k], "n0", 20);
    TU_U64(mu_count(&all[k]->m), 10);
  }
  lc_assert_same(all, 2);
  lc_close(&S);
  lc_close(&D);
}

/* The HLC up to which r's version vector holds site's changes (0: no
 * entry). */
static uint64_t lc_vv_of(lc_rep *r, const uint8_t site[16]) {
  sync_txn *x;
  sync_stamp vv[32];
  size_t n = 0, i;
  uint64_t h = 0;
  TU_OK(sync_txn_begin(r->m.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_vv_get(x, vv, 32, &n));
  sync_txn_abort(x);
  assert_true(n <= 32);
  for (i = 0; i < n; i++)
    if (!memcmp(vv[i].site, site, 16)) h = vv[i].hlc;
  return h;
}

/* D's backup holds row a.  After it D is opened again, deletes a and
 * syncs with S, which passes the delete to Q; Q collects the tombstone,
 * S keeps it.  D comes back from the backup and finds out from S (whose
 * view of D's log lies in an epoch the backup never had).  S, then Q
 * through S, learn D's renewal record before D pushes its rows to Q.
 * The record must keep the claim on D's old id up to the backup's state,
 * which the renewal finds in the lineage of S's mark: then Q still
 * proves a deleted and collected, and answers the backup's copy with a
 * delete.  With every claim void (held 0), Q took the copy for a new
 * row and a came back. */
static void test_restore_keeps_collected_deletes(void **state) {
  uint64_t now = LC_T0;
  static lc_rep S, D, Q;
  lc_rep *all[3];
  unsigned char *backup;
  size_t n = 0;
  uint8_t old[16];
  uint64_t before;
  int k;
  (void)state;
  lc_create_b(&S, "t_lc_s2.db", 0x52, &now);
  lc_create_b(&D, "t_lc_d2.db", 0xd2, &now);
  lc_create_b(&Q, "t_lc_q2.db", 0x92, &now);
  all[0] = &S;
  all[1] = &D;
  all[2] = &Q;
  now++;
  lc_put(&D, "a", 1);
  now++;
  lc_put(&D, "b", 2);
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  now++;
  lc_sync_ok(&Q, &S, SYNC_BOTH);
  memcpy(old, D.m.site, 16);
  before = lc_vv_of(&S, old); /* what the backup holds of D's writes */
  assert_true(before > 0);
  backup = lc_copy_file(&D, &n);
  now++;
  lc_put(&D, "p", 3);
  now++;
  {
    sync_txn *x;
    TU_OK(sync_txn_begin(D.m.env, 0, &x));
    TU_OK(sync_delete(x, 0, "a", 1));
    TU_OK(sync_txn_commit(x));
  }
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  for (k = 0; k < 2; k++) {
    now++;
    lc_sync_ok(&Q, &S, SYNC_BOTH);
  }
  assert_int_equal(lc_gc(&Q), 1);
  assert_int_equal(mu_tombstones(&S.m), 1);
  now += 10;
  lc_restore(&D, backup, n);
  free(backup);
  lc_expect_put(&D, "a", 1);
  now++;
  /* D writes: its clock passes what the backup held, and its vector
   * claims D's writes the restore lost (the renewal record voids that). */
  lc_put(&D, "r", 4);
  now++;
  TU_RC(lc_session(&D, &S, SYNC_PUSH, 0, NULL, NULL), SYNC_EHISTORY);
  now++;
  lc_sync_ok(&D, &S, SYNC_PUSH); /* S learns the renewal */
  /* which keeps S's claim on D's old id up to what the backup held. */
  assert_true(lc_vv_of(&S, old) >= before);
  {
    sync_txn *x;
    sync_stamp rec[2];
    size_t nr = 0;
    TU_OK(sync_txn_begin(S.m.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_renewals_get(x, rec, 2, &nr));
    assert_int_equal(sync_renewals_get(x, rec, 1, NULL), SYNC_EINVAL);
    sync_txn_abort(x);
    assert_int_equal(nr, 1);
    assert_memory_equal(rec[0].site, old, 16);
    assert_true(rec[0].hlc >= before);
  }
  now++;
  lc_sync_ok(&Q, &S, SYNC_BOTH); /* and Q from S */
  now++;
  lc_sync_ok(&D, &Q, SYNC_PUSH); /* the backup's copy of a reaches Q */
  for (k = 0; k < 2; k++) {
    now++;
    lc_sync_ok(&D, &S, SYNC_BOTH);
    now++;
    lc_sync_ok(&Q, &S, SYNC_BOTH);
    now++;
    lc_sync_ok(&D, &Q, SYNC_BOTH);
  }
  for (k = 0; k < 3; k++) {
    lc_expect_row(all[k], "a", NULL);
    lc_expect_put(all[k], "b", 2);
    lc_expect_put(all[k], "p", 3);
  }
  lc_assert_same(all, 3);
  lc_close(&S);
  lc_close(&D);
  lc_close(&Q);
}

/* As test_restore_keeps_collected_deletes, for a restored server found
 * out by a client that holds more views than HELLO carries (16): S's
 * view is left out of HELLO, so the client's REQUEST names it, with its
 * lineage.  S's renewal record keeps its claim on the old id up to the
 * backup's state, and the client learns it. */
static void test_restored_server_found_by_request(void **state) {
  uint64_t now = LC_T0;
  static lc_rep S, C, F[16];
  unsigned char *backup;
  uint8_t old[16];
  uint64_t before;
  size_t n = 0;
  int k;
  (void)state;
  lc_create_b(&S, "t_lc_s3.db", 0xf0, &now);
  lc_create_b(&C, "t_lc_c3.db", 0x30, &now);
  for (k = 0; k < 16; k++) {
    char path[32];
    snprintf(path, sizeof path, "t_lc_f3_%d.db", k);
    lc_create_b(&F[k], path, (uint8_t)(k + 1), &now);
    now++;
    lc_put(&F[k], "f", 100 + (uint64_t)k);
    now++;
    lc_sync_ok(&C, &F[k], SYNC_PULL);
    lc_close(&F[k]); /* 16 views sort before S's */
  }
  now++;
  lc_put(&S, "a", 1);
  now++;
  lc_sync_ok(&C, &S, SYNC_PULL);
  memcpy(old, S.m.site, 16);
  before = lc_vv_of(&C, old);
  assert_true(before > 0);
  backup = lc_copy_file(&S, &n);
  now++;
  lc_put(&S, "p", 2);
  now++;
  lc_sync_ok(&C, &S, SYNC_PULL); /* C's view of S: an epoch after the backup */
  now += 10;
  lc_restore(&S, backup, n);
  free(backup);
  now++;
  TU_RC(lc_session(&C, &S, SYNC_PULL, 0, NULL, NULL), SYNC_EHISTORY);
  now++;
  lc_sync_ok(&C, &S, SYNC_PULL); /* C learns S's renewal record */
  assert_true(lc_vv_of(&C, old) >= before);
  lc_expect_put(&C, "a", 1);
  lc_expect_put(&C, "p", 2);
  lc_close(&S);
  lc_close(&C);
}

/* R's write x reached B; R comes back from a backup made before it and
 * writes on, before any peer holding its log finds out (its vector's own
 * entry, its last HLC, now covers x).  N joins through R, then collects a
 * tombstone of its own.  When a repair with B brings x to N, N lacks a
 * row its vector covers and has collected tombstones: it took x for a
 * row it deleted and collected, and deleted it everywhere (a lost
 * write).  x was never deleted: N's collection never held x. */
static void test_restored_peer_claims_do_not_pass_for_collected(void **state) {
  uint64_t now = LC_T0;
  static lc_rep R, B, N;
  lc_rep *all[3];
  unsigned char *backup;
  size_t n = 0;
  (void)state;
  lc_create_b(&R, "t_lc_r.db", 0x71, &now);
  lc_create_b(&B, "t_lc_b.db", 0xb1, &now);
  lc_create_b(&N, "t_lc_n.db", 0x91, &now);
  all[0] = &R;
  all[1] = &B;
  all[2] = &N;
  backup = lc_copy_file(&R, &n);
  now++;
  lc_put(&R, "x", 1);
  now++;
  lc_sync_ok(&B, &R, SYNC_BOTH);
  lc_expect_put(&B, "x", 1);
  now += 10;
  lc_restore(&R, backup, n);
  free(backup);
  now++;
  lc_put(&R, "r", 2);
  now++;
  lc_sync_ok(&N, &R, SYNC_BOTH); /* N joins through R */
  now++;
  lc_put(&N, "y", 3);
  now++;
  {
    sync_txn *x;
    TU_OK(sync_txn_begin(N.m.env, 0, &x));
    TU_OK(sync_delete(x, 0, "y", 1));
    TU_OK(sync_txn_commit(x));
  }
  now++;
  lc_sync_ok(&R, &N, SYNC_BOTH); /* R acknowledges N's delete */
  now++;
  TU_U64(lc_gc(&N), 1);
  /* B writes x again after N's collection.  N's vector (R's claim) says
   * it holds x's insert: the sync brings only B's change; a repair brings
   * the row, and N must not take it for collected. */
  now++;
  lc_update(&B, "x", MU_COL_I, 4);
  now++;
  lc_sync_ok(&N, &B, SYNC_BOTH);
  now++;
  {
    int equal = 0;
    TU_U64(lc_session_x(&N, &B, 0, 1, 0, NULL, NULL, &equal), 1);
    assert_true(equal);
  }
  {
    uint64_t ids[MU_NCOLS] = {4, 1, 1, 1};
    int q;
    lc_expect_row(&N, "x", ids);
    lc_expect_row(&B, "x", ids);
    now++;
    lc_sync_ok(&R, &B, SYNC_BOTH);
    now++;
    lc_sync_ok(&R, &N, SYNC_BOTH);
    now++;
    lc_sync_ok(&N, &B, SYNC_BOTH);
    for (q = 0; q < 3; q++) lc_expect_row(all[q], "x", ids);
  }
  lc_assert_same(all, 3);
  lc_close(&R);
  lc_close(&B);
  lc_close(&N);
}

/* S writes k four times (insert, delete, re-insert, delete: causal
 * length 4) and collects the tombstone once P, the only peer it knows,
 * acknowledged it; P keeps it.  E got k's first version through P, then
 * pulls from S: S's complete stream removes k from E (E's own delete,
 * causal length 2).  E writes k again: it must start above what S
 * collected, or P's tombstone (4) beats the write (3), which is lost. */
static void test_reinsert_after_horizon_beats_kept_tombstone(void **state) {
  uint64_t now = LC_T0;
  static lc_rep S, P, E;
  lc_rep *all[3];
  sync_txn *x;
  int i;
  (void)state;
  lc_create_b(&S, "t_lc_s.db", 0x5a, &now);
  lc_create_b(&P, "t_lc_p.db", 0x9a, &now);
  lc_create_b(&E, "t_lc_e.db", 0xea, &now);
  all[0] = &S;
  all[1] = &P;
  all[2] = &E;
  now++;
  lc_put(&S, "k", 1);
  now++;
  lc_sync_ok(&P, &S, SYNC_PULL);
  now++;
  lc_sync_ok(&E, &P, SYNC_PULL);
  lc_expect_put(&E, "k", 1);
  for (i = 0; i < 3; i++) {
    now++;
    if (i == 1) {
      lc_put(&S, "k", 2);
      continue;
    }
    TU_OK(sync_txn_begin(S.m.env, 0, &x));
    TU_OK(sync_delete(x, 0, "k", 1));
    TU_OK(sync_txn_commit(x));
  }
  now++;
  lc_sync_ok(&P, &S, SYNC_PULL);
  now++;
  lc_sync_ok(&P, &S, SYNC_PULL);
  TU_U64(lc_gc(&S), 1);
  now++;
  lc_sync_ok(&E, &S, SYNC_PULL);
  lc_expect_row(&E, "k", NULL);
  now++;
  lc_put(&E, "k", 3);
  now++;
  lc_sync_ok(&P, &E, SYNC_PULL);
  lc_expect_put(&P, "k", 3);
  now++;
  lc_sync_ok(&S, &E, SYNC_PULL);
  lc_expect_put(&S, "k", 3);
  lc_assert_same(all, 3);
  lc_close(&S);
  lc_close(&P);
  lc_close(&E);
}

/* D's file is copied to make C (same site id).  C writes and pushes to
 * S first; D writes and syncs.  Every write of both reaches S and the
 * other; on a column both wrote, the later write wins. */
static void test_cloned_site_id(void **state) {
  uint64_t now = LC_T0;
  static lc_rep S, D, C;
  lc_rep *all[3];
  unsigned char *copy;
  size_t n = 0;
  uint64_t x0[MU_NCOLS] = {1, 1, 52, 1}, x1[MU_NCOLS] = {51, 62, 2, 2};
  int k;
  (void)state;
  lc_create_b(&S, "t_lc_s.db", 0x51, &now);
  lc_create_b(&D, "t_lc_d.db", 0xd1, &now);
  all[0] = &S;
  all[1] = &D;
  all[2] = &C;
  now++;
  lc_put(&D, "x0", 1);
  now++;
  lc_put(&D, "x1", 2);
  now++;
  lc_put(&S, "s0", 3);
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  lc_sync_ok(&D, &S, SYNC_BOTH);
  copy = lc_copy_file(&D, &n);
  lc_clone(&C, "t_lc_c.db", copy, n, &now, 0xc1);
  free(copy);
  TU_U64(mu_count(&C.m), 3);
  /* C writes first and pushes. */
  now++;
  lc_put(&C, "c0", 50);
  now++;
  lc_update(&C, "x1", MU_COL_I, 51); /* only C writes x1.i */
  now++;
  lc_update(&C, "x0", MU_COL_S, 53); /* D writes x0.s later: D wins */
  now++;
  lc_sync_ok(&C, &S, SYNC_PUSH);
  /* D writes and syncs. */
  now++;
  lc_put(&D, "d0", 60);
  now++;
  lc_update(&D, "x0", MU_COL_S, 52);
  now++;
  lc_update(&D, "x1", MU_COL_R, 62); /* only D writes x1.r */
  now++;
  lc_sync_ok(&D, &S, SYNC_BOTH);
  for (k = 0; k < 2; k++) {
    now++;
    lc_sync_ok(&C, &S, SYNC_BOTH);
    lc_sync_ok(&D, &S, SYNC_BOTH);
  }
  for (k = 0; k < 3; k++) {
    lc_expect_put(all[k], "s0", 3);
    lc_expect_put(all[k], "c0", 50);
    lc_expect_put(all[k], "d0", 60);
    lc_expect_row(all[k], "x0", x0);
    lc_expect_row(all[k], "x1", x1);
    TU_U64(mu_count(&all[k]->m), 5);
  }
  lc_assert_same(all, 3);
  lc_close(&S);
  lc_close(&D);
  lc_close(&C);
}

/* SYNC_APPLY_NEWER: an incoming row whose newest stamp is above the
 * local row's newest replaces the whole row, also the columns this
 * replica wrote since; a row whose newest stamp is older is left as it
 * is. */
static void test_apply_newer_whole_row(void **state) {
  uint64_t now = LC_T0;
  static lc_rep A, D;
  lc_rep *all[2];
  mu_row row;
  (void)state;
  lc_create_b(&A, "t_lc_a.db", 0xa1, &now);
  lc_create_b(&D, "t_lc_d.db", 0xd1, &now);
  all[0] = &A;
  all[1] = &D;
  now++;
  mu_put(&D.m, "row", 2, 1.5, "D-old");
  now++;
  mu_pull(&A.m, &D.m, 0, 1, NULL);
  now++;
  mu_update(&A.m, "row", MU_COL_I, sync_int(9)); /* A's newest: t3 */
  now++;
  mu_update(&D.m, "row", MU_COL_S, sync_text("D-newest", 8)); /* t4 > t3 */
  now++;
  /* D's row is newer than A's: all of it replaces A's. */
  mu_pull_policy(&A.m, &D.m, 0, 1, SYNC_APPLY_NEWER, NULL);
  mu_read(&A.m, "row", &row);
  assert_true(row.present);
  if (row.v[0].type != SYNC_INTEGER || row.v[0].i != 2)
    fail_msg("after SYNC_APPLY_NEWER, row.i = %" PRId64 ", expected 2 (the "
             "newer row's value)",
             row.v[0].i);
  assert_int_equal(row.v[1].type, SYNC_REAL);
  assert_true(row.v[1].r == 1.5);
  assert_int_equal(row.v[2].type, SYNC_TEXT);
  assert_int_equal(row.v[2].len, 8);
  assert_memory_equal(row.v[2].data, "D-newest", 8);
  assert_int_equal(row.v[3].type, SYNC_NULL);
  /* And the two converge on it. */
  now++;
  mu_pull(&D.m, &A.m, 0, 1, NULL);
  mu_pull_policy(&A.m, &D.m, 0, 1, SYNC_APPLY_NEWER, NULL);
  mu_read(&D.m, "row", &row);
  assert_true(row.present);
  assert_int_equal(row.v[0].type, SYNC_INTEGER);
  assert_int_equal(row.v[0].i, 2);
  assert_int_equal(row.v[2].len, 8);
  assert_memory_equal(row.v[2].data, "D-newest", 8);
  lc_assert_same(all, 2);
  lc_close(&A);
  lc_close(&D);

  /* An older incoming row changes nothing. */
  lc_create_b(&A, "t_lc_a.db", 0xa1, &now);
  lc_create_b(&D, "t_lc_d.db", 0xd1, &now);
  now++;
  mu_put(&D.m, "old", 3, 2.5, "D");
  now++;
  mu_pull(&A.m, &D.m, 0, 1, NULL);
  now++;
  mu_update(&D.m, "old", MU_COL_I, sync_int(4)); /* D's newest: t2 */
  now++;
  mu_update(&A.m, "old", MU_COL_S, sync_text("A-newest", 8)); /* t3 > t2 */
  now++;
  mu_pull_policy(&A.m, &D.m, 0, 1, SYNC_APPLY_NEWER, NULL);
  mu_read(&A.m, "old", &row);
  assert_true(row.present);
  assert_int_equal(row.v[0].i, 3);
  assert_int_equal(row.v[2].len, 8);
  assert_memory_equal(row.v[2].data, "A-newest", 8);
  lc_close(&A);
  lc_close(&D);
}

/* ---------------------------------------------------------------------
 * The randomized fleet
 *
 * The model keeps every write (key, delete or which columns, the causal
 * length the writer's replica gave it, the writer) in scenario order,
 * which is also stamp order.  Per replica it keeps two sets of writes:
 *   K - writes it is known to hold: its own, those of a sender after a
 *       session that completed in that direction, those of the backup it
 *       was restored from (or the file it was copied from);
 *   P - writes it may hold: as K, but any session, complete or not, in
 *       either direction counts.
 * M (union of K) are the writes that must survive: each got to a replica
 * that still holds it (a restore drops what only the restored device
 * had, which is not in any K after it).  P's union bounds what may be
 * seen.  After the final sessions, per key:
 *   - a live row holds, per column, the value of a write in P that wrote
 *     that column of that key, all at one causal length C (odd);
 *   - no write in M has a causal length above C (a delete that reached
 *     the fleet is never undone, a re-insert is never lost), and none at
 *     C wrote a column later than the value it holds (last writer wins,
 *     nothing that escaped the device is lost);
 *   - an absent row: if the largest causal length in M is odd (live), a
 *     delete in P above it exists.
 * Every value carries the id of its write (lc_vals_of), so nothing
 * invented can pass.  And at every local write, while the scenario runs:
 * the causal length the replica gives it is at least that of every write
 * in its K on that key, and above it for a delete or a re-insert (a
 * replica that holds a delete re-inserts above it; one that holds a row
 * has it live).
 * ------------------------------------------------------------------- */
#define LC_MAXREP 8
#define LC_NKEYS 8
#define LC_DEFAULT_SEED UINT64_C(0x11fe0001)
/* make test runs 1,000 scenarios; make soak-lifecycle many more. */
#define LC_DEFAULT_SCENARIOS 1000

typedef struct lc_write {
  int key, del, ins, rep; /* ins: a put where the row was not live */
  unsigned cols; /* bit c: column c written */
  uint64_t cl;
  /* The largest causal length of a delete that a replica collected
   * without having seen this write (a version concurrent with the
   * delete, on a replica the collector did not know): sync_gc's known
   * limit (docs/FORMAT.md, "Tombstones"): the write may come back above
   * that delete. */
  uint64_t zombie;
  /* Its replica lost it to a restore from a backup: until a peer that
   * holds its log tells the restored file, that file's vector (its own
   * entry is its last HLC) claims it, and peers that take that vector
   * get it only from a repair (docs/PROTOCOL.md, "History"). */
  int lost;
} lc_write;

typedef struct lc_backup {
  unsigned char *bytes;
  size_t n;
  lc_set k, p;
} lc_backup;

typedef struct lc_scn {
  uint64_t seed;
  tu_rng rng;
  uint64_t now;
  int nrep, nkeys;
  lc_rep rep[LC_MAXREP];
  lc_backup bk[LC_MAXREP][2];
  lc_write w[LC_MAXW]; /* write id = index + 1 */
  int nw;
  /* Deletes some replica collected: bit (cl / 2 - 1) of coll[k]. */
  uint64_t coll[LC_NKEYS];
  const char *phase;
  char events[4096]; /* what happened, printed on failure */
  size_t nev;
} lc_scn;

static lc_scn lc_scn_mem;
static lc_scn *lc_cur;

static uint64_t lc_env_u64(const char *name, uint64_t dflt) {
  const char *s = getenv(name);
  char *end;
  unsigned long long v;
  if (!s || !*s) return dflt;
  v = strtoull(s, &end, 0);
  if (*end) return dflt;
  return (uint64_t)v;
}

static uint64_t lc_below(lc_scn *s, uint64_t n) { return tu_below(&s->rng, n); }

static void lc_set_add(lc_set *a, int id) {
  a->w[(id - 1) / 64] |= UINT64_C(1) << ((id - 1) % 64);
}
static int lc_set_has(const lc_set *a, int id) {
  return (int)((a->w[(id - 1) / 64] >> ((id - 1) % 64)) & 1);
}
static void lc_set_or(lc_set *a, const lc_set *b) {
  int i;
  for (i = 0; i < LC_WORDS; i++) a->w[i] |= b->w[i];
}

static void lc_event(lc_scn *s, const char *fmt, ...) {
  va_list ap;
  int n;
  if (s->nev + 64 >= sizeof s->events) return;
  va_start(ap, fmt);
  n = vsnprintf(s->events + s->nev, sizeof s->events - s->nev, fmt, ap);
  va_end(ap);
  if (n > 0) s->nev += (size_t)n;
  if (s->nev >= sizeof s->events) s->nev = sizeof s->events - 1;
}

static void lc_key_name(char *out, size_t cap, int k) {
  snprintf(out, cap, "k%d", k);
}

static void lc_rep_path(char *out, size_t cap, int i) {
  snprintf(out, cap, "t_lc%d.db", i);
}

static void lc_new_site(lc_scn *s, int i, uint8_t site[16]) {
  tu_fill(&s->rng, site, 16);
  site[0] = (uint8_t)(0x10 * (i + 1)); /* distinct from every other slot */
}

static void lc_dump_key(const lc_scn *s, int k, const lc_set *m,
                        const lc_set *p);

/* One local transaction of 1-2 operations on distinct keys. */
/* A version of key k at causal length cl or above it, of a write that a
 * collector of a delete at causal length del never saw. */
static int lc_zombie(const lc_scn *s, int k, uint64_t del, uint64_t cl) {
  int i;
  for (i = 0; i < s->nw; i++)
    if (s->w[i].key == k && s->w[i].zombie >= del && s->w[i].cl <= cl)
      return 1;
  return 0;
}

static void lc_local(lc_scn *s, int ri) {
  lc_rep *r = &s->rep[ri];
  sync_txn *x;
  sync_changes *it;
  sync_change ch;
  uint64_t before;
  int nops = 1 + (int)lc_below(s, 2), op, keys[2], first = s->nw, rc;
  if (s->nw + 2 > LC_MAXW) return;
  s->now++; /* a millisecond of its own: stamps follow write ids */
  keys[0] = (int)lc_below(s, (uint64_t)s->nkeys);
  keys[1] = (keys[0] + 1 + (int)lc_below(s, (uint64_t)s->nkeys - 1)) %
            s->nkeys;
  TU_OK(sync_txn_begin(r->m.env, 0, &x));
  before = sync_txn_version(x);
  for (op = 0; op < nops; op++) {
    char key[16];
    lc_write *w = &s->w[s->nw];
    int id = s->nw + 1, live;
    unsigned p = (unsigned)lc_below(s, 100);
    lc_vals v;
    lc_key_name(key, sizeof key, keys[op]);
    lc_vals_of(&v, (uint64_t)id);
    memset(w, 0, sizeof *w);
    w->key = keys[op];
    w->rep = ri;
    live = sync_contains(x, 0, key, strlen(key));
    assert_true(live == 0 || live == 1);
    if (!live || p < 30) {
      TU_OK(sync_put(x, 0, key, strlen(key), v.v, MU_NCOLS));
      w->cols = 0xfu;
      w->ins = !live;
    } else if (p < 70) {
      unsigned cols[MU_NCOLS], n = 0, c;
      sync_value vals[MU_NCOLS];
      for (c = 0; c < MU_NCOLS; c++)
        if (lc_below(s, 2)) {
          cols[n] = c;
          vals[n++] = v.v[c];
          w->cols |= 1u << c;
        }
      if (!n) {
        c = (unsigned)lc_below(s, MU_NCOLS);
        cols[n] = c;
        vals[n++] = v.v[c];
        w->cols |= 1u << c;
      }
      TU_OK(sync_update(x, 0, key, strlen(key), cols, vals, n));
    } else {
      TU_OK(sync_delete(x, 0, key, strlen(key)));
      w->del = 1;
    }
    s->nw++;
  }
  TU_OK(sync_txn_commit(x));
  /* The causal length each write got from its replica. */
  TU_OK(sync_txn_begin(r->m.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_changes_open(x, before, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    int i;
    for (i = first; i < s->nw; i++) {
      char key[16];
      lc_key_name(key, sizeof key, s->w[i].key);
      if (ch.key.len == strlen(key) && !memcmp(ch.key.data, key, ch.key.len))
        s->w[i].cl = ch.causal_length;
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(x);
  for (op = first; op < s->nw; op++) {
    lc_write *w = &s->w[op];
    int i, seen = 0;
    uint64_t maxk = 0;
    if (!w->cl) fail_msg("write %d is not in its replica's log", op + 1);
    if ((w->cl & 1) == (unsigned)w->del)
      fail_msg("write %d: causal length %" PRIu64 " for a %s", op + 1, w->cl,
               w->del ? "delete" : "live row");
    /* The replica holds every write in its K: its row has seen them, so a
     * write on it comes after them (a re-insert or delete above them). */
    for (i = 0; i < first; i++)
      if (s->w[i].key == w->key && lc_set_has(&r->k, i + 1) &&
          s->w[i].cl > maxk) {
        maxk = s->w[i].cl;
        seen = i + 1;
      }
    /* A put on a row this replica does not hold while a live version of
     * it at the same causal length exists (one its vector claims through
     * a restored replica nobody found out yet, which no log can show) is
     * later than that version in every column: nothing is undone, and
     * the final repairs bring the replica the row.  Above a delete, or
     * below anything, it would undo a write. */
    int same_live = w->ins && !w->del && (maxk & 1) && w->cl == maxk;
    /* Likewise a delete at the causal length of a delete already made:
     * the row ends deleted either way. */
    int same_del = w->del && !(maxk & 1) && w->cl == maxk;
    if (w->cl < maxk && !(maxk & 1) && lc_zombie(s, w->key, maxk, w->cl)) {
      lc_st.zombies++; /* the gc limit: the row came back (counted) */
    } else if (seen && s->w[seen - 1].lost && w->cl <= maxk) {
      lc_st.lost_claims++; /* a restored file's claim: repairs bring it */
    } else if (w->cl < maxk ||
        ((w->ins || w->del) && w->cl == maxk && !same_live && !same_del)) {
      lc_dump_key(s, w->key, &r->k, &r->p);
      fail_msg("replica %d: write %d (%s) on k%d got causal length %" PRIu64
               ", not above write %d (causal length %" PRIu64
               ") that the replica holds: a %s it has seen is undone",
               ri, op + 1,
               w->del ? "delete" : w->ins ? "re-insert" : "update", w->key,
               w->cl, seen, maxk, (maxk & 1) ? "(re-)insert" : "delete");
    }
    /* Written below a delete of its key that some replica collected (so
     * without having seen it: a replica that did would write above it):
     * a collector that meets this version takes it for a new row. */
    {
      uint64_t gone = s->coll[w->key], cl;
      for (cl = 2; gone; cl += 2, gone >>= 1)
        if ((gone & 1) && w->cl < cl && w->zombie < cl) w->zombie = cl;
    }
    lc_set_add(&r->k, op + 1);
    lc_set_add(&r->p, op + 1);
    lc_event(s, "w%d:%d%c%d ", op + 1, ri, w->del ? 'x' : 'k', w->key);
  }
  lc_st.writes += (unsigned long)(s->nw - first);
}

/* What a session in mode between client c and server v may have moved
 * (P) and, when it completed, has moved (K). */
static void lc_account(lc_scn *s, int c, int v, int mode, int done) {
  lc_rep *a = &s->rep[c], *b = &s->rep[v];
  lc_set ka = a->k, kb = b->k;
  /* P both ways whatever the mode: a repair on the SYNC_ESTALE path moves
   * rows both ways, and P only bounds what may be seen. */
  lc_set_or(&a->p, &b->p);
  b->p = a->p;
  if (!done) return;
  if (mode != SYNC_PUSH) lc_set_or(&a->k, &kb);
  if (mode != SYNC_PULL) lc_set_or(&b->k, &ka);
  if (mode == SYNC_BOTH) lc_set_or(&b->k, &a->k);
}

static void lc_two(lc_scn *s, int *a, int *b) {
  *a = (int)lc_below(s, (uint64_t)s->nrep);
  *b = (int)lc_below(s, (uint64_t)s->nrep - 1);
  if (*b >= *a) (*b)++;
}

static const int lc_modes[3] = {SYNC_BOTH, SYNC_PULL, SYNC_PUSH};

static int lc_skip_cuts(void);

static void lc_random_sync(lc_scn *s) {
  int a, b, mode = lc_modes[lc_below(s, 3)], rc;
  lc_two(s, &a, &b);
  s->now += lc_below(s, 2);
  if (lc_below(s, 100) < 25 && !lc_skip_cuts()) {
    size_t budget = 1 + (size_t)lc_below(s, 1500);
    rc = lc_session(&s->rep[a], &s->rep[b], mode, budget, &s->rng, NULL);
    lc_event(s, "cut%d<%d/%d/%zu:%d ", a, b, mode, budget, rc);
    lc_account(s, a, b, mode, rc == 1);
    return;
  }
  rc = lc_sync(&s->rep[a], &s->rep[b], mode, &s->rng, NULL);
  lc_event(s, "s%d<%d/%d:%d ", a, b, mode, rc);
  lc_account(s, a, b, mode, rc == 1);
  if (rc != 1)
    fail_msg("session %d <- %d (mode %d) on a clean link ended with %d "
             "(%s; %s)",
             a, b, mode, rc, sync_strerror(rc), lc_errmsg);
}

/* The tombstones replica r holds: bit (cl / 2 - 1) of out[k] for key k
 * (causal lengths up to 128). */
static void lc_tomb_set(lc_scn *s, lc_rep *r, uint64_t *out) {
  sync_txn *x;
  sync_changes *it;
  sync_change ch;
  int rc, k;
  memset(out, 0, sizeof(uint64_t) * LC_NKEYS);
  TU_OK(sync_txn_begin(r->m.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_changes_open(x, 0, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    if (ch.causal_length & 1 || ch.causal_length > 128) continue;
    for (k = 0; k < s->nkeys; k++) {
      char key[16];
      lc_key_name(key, sizeof key, k);
      if (ch.key.len == strlen(key) && !memcmp(ch.key.data, key, ch.key.len))
        out[k] |= UINT64_C(1) << (ch.causal_length / 2 - 1);
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(x);
}

static void lc_random_gc(lc_scn *s) {
  int r = (int)lc_below(s, (uint64_t)s->nrep), k, i;
  uint64_t before[LC_NKEYS], after[LC_NKEYS], d0, n;
  lc_tomb_set(s, &s->rep[r], before);
  d0 = mu_digest(&s->rep[r].m);
  n = lc_gc(&s->rep[r]);
  lc_tomb_set(s, &s->rep[r], after);
  /* Writes of a collected key this replica could not have seen, below
   * the collected delete, may come back (the collector cannot tell them
   * from new rows). */
  for (k = 0; k < s->nkeys; k++) {
    uint64_t gone = before[k] & ~after[k], cl;
    s->coll[k] |= gone;
    for (cl = 2; gone; cl += 2, gone >>= 1) {
      if (!(gone & 1)) continue;
      for (i = 0; i < s->nw; i++)
        if (s->w[i].key == k && s->w[i].cl < cl &&
            !lc_set_has(&s->rep[r].p, i + 1) && s->w[i].zombie < cl)
          s->w[i].zombie = cl;
    }
  }
  lc_event(s, "gc%d:%" PRIu64 " ", r, n);
  lc_st.gcs++;
  lc_st.collected += (unsigned long)n;
  if (mu_digest(&s->rep[r].m) != d0)
    fail_msg("sync_gc on replica %d changed its visible rows", r);
}

static void lc_random_backup(lc_scn *s) {
  int r = (int)lc_below(s, (uint64_t)s->nrep), slot = (int)lc_below(s, 2);
  lc_backup *b = &s->bk[r][slot];
  free(b->bytes);
  b->bytes = lc_copy_file(&s->rep[r], &b->n);
  b->k = s->rep[r].k;
  b->p = s->rep[r].p;
  lc_event(s, "bk%d.%d ", r, slot);
  lc_st.backups++;
}

static void lc_random_settle(lc_scn *s);

static void lc_random_restore(lc_scn *s) {
  int have[LC_MAXREP * 2], n = 0, i, r, slot;
  lc_backup *b;
  for (i = 0; i < s->nrep * 2; i++)
    if (s->bk[i / 2][i % 2].bytes) have[n++] = i;
  if (!n) return;
  /* Often the fleet settles and collects first: the restored replica's
   * cursors are then behind its peers' collections (SYNC_ESTALE). */
  if (lc_below(s, 2)) lc_random_settle(s);
  i = have[lc_below(s, (uint64_t)n)];
  r = i / 2;
  slot = i % 2;
  b = &s->bk[r][slot];
  s->now++;
  lc_restore(&s->rep[r], b->bytes, b->n);
  for (i = 0; i < s->nw; i++)
    if (s->w[i].rep == r && lc_set_has(&s->rep[r].k, i + 1) &&
        !lc_set_has(&b->k, i + 1))
      s->w[i].lost = 1;
  s->rep[r].k = b->k;
  s->rep[r].p = b->p;
  lc_event(s, "rs%d.%d ", r, slot);
  lc_st.restores++;
}

static void lc_random_clone(lc_scn *s) {
  int r = (int)lc_below(s, (uint64_t)s->nrep), slot = (int)lc_below(s, 3);
  int i = s->nrep;
  char path[32];
  lc_rep *c = &s->rep[i];
  if (s->nrep == LC_MAXREP) return;
  lc_rep_path(path, sizeof path, i);
  if (slot < 2 && s->bk[r][slot].bytes) {
    /* A backup restored as a new device. */
    lc_backup *b = &s->bk[r][slot];
    lc_clone(c, path, b->bytes, b->n, &s->now, s->seed + (uint64_t)i);
    c->k = b->k;
    c->p = b->p;
  } else {
    size_t n = 0;
    unsigned char *p = lc_copy_file(&s->rep[r], &n);
    lc_clone(c, path, p, n, &s->now, s->seed + (uint64_t)i);
    free(p);
    c->k = s->rep[r].k;
    c->p = s->rep[r].p;
    slot = 2;
  }
  s->nrep++;
  lc_event(s, "cl%d=%d.%d ", i, r, slot);
  lc_st.clones++;
}

static void lc_random_join(lc_scn *s) {
  int i = s->nrep, peer, rc;
  uint8_t site[16];
  char path[32];
  if (s->nrep == LC_MAXREP) return;
  peer = (int)lc_below(s, (uint64_t)s->nrep);
  lc_rep_path(path, sizeof path, i);
  lc_new_site(s, i, site);
  lc_create(&s->rep[i], path, site, &s->now, s->seed + (uint64_t)i);
  s->nrep++;
  rc = lc_sync(&s->rep[i], &s->rep[peer], SYNC_BOTH, &s->rng, NULL);
  lc_event(s, "join%d<%d:%d ", i, peer, rc);
  lc_account(s, i, peer, SYNC_BOTH, rc == 1);
  if (rc != 1)
    fail_msg("replica %d joining through %d: session ended with %d (%s; %s)",
             i, peer, rc, sync_strerror(rc), lc_errmsg);
  lc_st.joins++;
}

/* Sessions between every pair once (clean links, random order of
 * pairs), then, often, a collection somewhere: this is what lets sync_gc
 * find its peers' acknowledgements and collect. */
static void lc_random_settle(lc_scn *s) {
  int pairs[LC_MAXREP * LC_MAXREP][2], n = 0, i, j;
  for (i = 0; i < s->nrep; i++)
    for (j = i + 1; j < s->nrep; j++) {
      pairs[n][0] = lc_below(s, 2) ? i : j;
      pairs[n][1] = pairs[n][0] == i ? j : i;
      n++;
    }
  for (i = n; i > 1; i--) {
    int k = (int)lc_below(s, (uint64_t)i), t0 = pairs[i - 1][0],
        t1 = pairs[i - 1][1];
    pairs[i - 1][0] = pairs[k][0];
    pairs[i - 1][1] = pairs[k][1];
    pairs[k][0] = t0;
    pairs[k][1] = t1;
  }
  lc_event(s, "settle ");
  for (i = 0; i < n; i++) {
    int a = pairs[i][0], b = pairs[i][1], rc;
    s->now++;
    rc = lc_sync(&s->rep[a], &s->rep[b], SYNC_BOTH, &s->rng, NULL);
    lc_account(s, a, b, SYNC_BOTH, rc == 1);
    if (rc != 1)
      fail_msg("settling session %d <- %d ended with %d (%s; %s)", a, b, rc,
               sync_strerror(rc), lc_errmsg);
  }
  if (lc_below(s, 3)) lc_random_gc(s);
}

/* A repair session between a random pair (where the library has them):
 * rows may move both ways; when it ends with equal roots, each side
 * holds what the other held. */
static void lc_random_repair(lc_scn *s) {
  int a, b, rc = 0, equal = 0, i;
  if (!LC_HAVE_REPAIR) {
    lc_local(s, (int)lc_below(s, (uint64_t)s->nrep));
    return;
  }
  lc_two(s, &a, &b);
  s->now++;
  for (i = 0; i < 3; i++) { /* SYNC_EHISTORY: sync again */
    rc = lc_session_x(&s->rep[a], &s->rep[b], 0, 1, 0, &s->rng, NULL, &equal);
    if (!lc_is_history(rc)) break;
    lc_st.history++;
  }
  lc_event(s, "rp%d<%d:%d/%d ", a, b, rc, equal);
  lc_account(s, a, b, SYNC_BOTH, rc == 1 && equal);
  lc_st.repairs++;
  if (rc != 1)
    fail_msg("repair session %d <- %d ended with %d (%s; %s)", a, b, rc,
             sync_strerror(rc), lc_errmsg);
}

static void lc_random_reset(lc_scn *s) {
  int a, b;
  lc_two(s, &a, &b);
  lc_reset(&s->rep[a], &s->rep[b]);
  lc_event(s, "rst%d:%d ", a, b);
  lc_st.resets++;
}

/* Which write wrote value v of column c; 0 if none could have. */
static int lc_value_id(const lc_scn *s, unsigned c, const sync_value *v) {
  int64_t id = 0;
  switch (c) {
  case MU_COL_I:
    if (v->type == SYNC_INTEGER) id = v->i;
    break;
  case MU_COL_R:
    if (v->type == SYNC_REAL && v->r >= 1.0 && v->r < 1e9 &&
        v->r == (double)(int64_t)v->r + 0.25)
      id = (int64_t)v->r;
    break;
  case MU_COL_S:
    if (v->type == SYNC_TEXT && v->len > 1 && v->len < 12 &&
        ((const char *)v->data)[0] == 'w') {
      char buf[16];
      memcpy(buf, v->data, v->len);
      buf[v->len] = 0;
      id = (int64_t)strtoll(buf + 1, NULL, 10);
    }
    break;
  default:
    if (v->type == SYNC_BLOB && v->len == 4) {
      const unsigned char *b = (const unsigned char *)v->data;
      id = (int64_t)b[0] | (int64_t)b[1] << 8 | (int64_t)b[2] << 16 |
           (int64_t)b[3] << 24;
    }
  }
  if (id < 1 || id > s->nw) return 0;
  {
    lc_vals want;
    lc_vals_of(&want, (uint64_t)id);
    if (!tu_value_equal(&want.v[c], v)) return 0;
  }
  return (int)id;
}

static void lc_dump_key(const lc_scn *s, int k, const lc_set *m,
                        const lc_set *p) {
  int i;
  fprintf(stderr, "writes of k%d (id:replica op cols cl M P):", k);
  for (i = 0; i < s->nw; i++) {
    const lc_write *w = &s->w[i];
    if (w->key != k) continue;
    fprintf(stderr, " %d:%d %s%x cl%" PRIu64 " %s%s", i + 1, w->rep,
            w->del ? "del" : "w", w->cols, w->cl,
            lc_set_has(m, i + 1) ? "M" : "-", lc_set_has(p, i + 1) ? "P" : "-");
  }
  fprintf(stderr, "\n");
}

static void lc_check_model(lc_scn *s) {
  lc_set m, p;
  sync_txn *x;
  int i, k;
  memset(&m, 0, sizeof m);
  memset(&p, 0, sizeof p);
  for (i = 0; i < s->nrep; i++) {
    lc_set_or(&m, &s->rep[i].k);
    lc_set_or(&p, &s->rep[i].p);
  }
  TU_OK(sync_txn_begin(s->rep[0].m.env, SYNC_TXN_RDONLY, &x));
  for (k = 0; k < s->nkeys; k++) {
    char key[16];
    sync_value v[MU_NCOLS];
    int rc, ids[MU_NCOLS];
    unsigned c;
    uint64_t cm = 0;
    lc_key_name(key, sizeof key, k);
    for (i = 0; i < s->nw; i++)
      if (s->w[i].key == k && lc_set_has(&m, i + 1) && s->w[i].cl > cm)
        cm = s->w[i].cl;
    rc = sync_get(x, 0, key, strlen(key), v, MU_NCOLS);
    if (rc == SYNC_NOTFOUND) {
      int justified = !(cm & 1);
      for (i = 0; i < s->nw && !justified; i++)
        if (s->w[i].key == k && s->w[i].del && s->w[i].cl > cm &&
            lc_set_has(&p, i + 1))
          justified = 1;
      if (!justified) {
        lc_dump_key(s, k, &m, &p);
        fail_msg("key %s is absent, but a write at causal length %" PRIu64
                 " reached the fleet and no later delete did",
                 key, cm);
      }
      continue;
    }
    TU_OK(rc);
    for (c = 0; c < MU_NCOLS; c++) {
      const lc_write *w;
      ids[c] = lc_value_id(s, c, &v[c]);
      w = ids[c] ? &s->w[ids[c] - 1] : NULL;
      if (!w || w->key != k || w->del || !(w->cols & (1u << c)) ||
          !lc_set_has(&p, ids[c])) {
        lc_dump_key(s, k, &m, &p);
        fail_msg("key %s column %u holds a value no write (that could have "
                 "got here) gave it (write id %d)",
                 key, c, ids[c]);
      }
      if (w->cl != s->w[ids[0] - 1].cl) {
        lc_dump_key(s, k, &m, &p);
        fail_msg("key %s mixes values of causal lengths %" PRIu64
                 " and %" PRIu64 " (writes %d and %d)",
                 key, s->w[ids[0] - 1].cl, w->cl, ids[0], ids[c]);
      }
    }
    {
      uint64_t cl = s->w[ids[0] - 1].cl;
      if (cm > cl && !(cm & 1) && lc_zombie(s, k, cm, cl)) {
        lc_st.zombies++;
      } else if (cm > cl) {
        lc_dump_key(s, k, &m, &p);
        fail_msg("key %s is live at causal length %" PRIu64 ", but a %s at "
                 "causal length %" PRIu64 " reached the fleet: %s",
                 key, cl, (cm & 1) ? "re-insert" : "delete", cm,
                 (cm & 1) ? "lost" : "undone");
      }
      for (i = 0; i < s->nw; i++) {
        const lc_write *w = &s->w[i];
        if (w->key != k || w->del || w->cl != cl || !lc_set_has(&m, i + 1))
          continue;
        for (c = 0; c < MU_NCOLS; c++)
          if ((w->cols & (1u << c)) && i + 1 > ids[c]) {
            lc_dump_key(s, k, &m, &p);
            fail_msg("key %s column %u holds write %d, but the later write "
                     "%d (replica %d) reached the fleet: lost",
                     key, c, ids[c], i + 1, w->rep);
          }
      }
    }
  }
  sync_txn_abort(x);
}

static void lc_dump(lc_scn *s) {
  int i;
  fprintf(stderr, "events: %s\n", s->events);
  for (i = 0; i < s->nrep; i++) {
    sync_txn *t;
    sync_changes *it;
    sync_change ch;
    fprintf(stderr, "replica %d (site %02x..%02x, digest %016" PRIx64 "):", i,
            s->rep[i].m.site[0], s->rep[i].m.site[15], mu_digest(&s->rep[i].m));
    if (sync_txn_begin(s->rep[i].m.env, SYNC_TXN_RDONLY, &t)) continue;
    if (sync_changes_open(t, 0, &it) == 0) {
      while (sync_changes_next(it, &ch) == 0) {
        sync_value v;
        fprintf(stderr, " %.*s/cl%" PRIu64, (int)ch.key.len,
                (const char *)ch.key.data, ch.causal_length);
        if ((ch.causal_length & 1) &&
            sync_changes_column(it, MU_COL_I, &v, NULL, NULL) == 0 &&
            v.type == SYNC_INTEGER)
          fprintf(stderr, "=%" PRId64, v.i);
      }
      sync_changes_close(it);
    }
    sync_txn_abort(t);
    fprintf(stderr, "\n");
  }
}

/* Sessions between all pairs until a round changes no replica, then all
 * must be equal, and equal to the model. */
static int lc_settle_check(lc_scn *s, const char *phase, int must) {
  int round, i, j;
  s->phase = phase;
  for (round = 1; round <= 2 * LC_MAXREP; round++) {
    uint64_t moved = 0, d[LC_MAXREP];
    int same = 1;
    for (i = 0; i < s->nrep; i++) d[i] = mu_digest(&s->rep[i].m);
    for (i = 0; i < s->nrep; i++)
      for (j = i + 1; j < s->nrep; j++) {
        uint64_t ch = 0;
        int rc;
        s->now++;
        rc = lc_sync(&s->rep[i], &s->rep[j], SYNC_BOTH, NULL, &ch);
        lc_account(s, i, j, SYNC_BOTH, rc == 1);
        if (rc != 1) {
          lc_dump(s);
          fail_msg("final session %d <- %d ended with %d (%s; %s)", i, j, rc,
                   sync_strerror(rc), lc_errmsg);
        }
        moved += ch;
      }
    for (i = 0; i < s->nrep; i++)
      if (mu_digest(&s->rep[i].m) != d[i]) same = 0;
    if (!moved && same) {
      if ((unsigned long)round > lc_st.final_rounds_max)
        lc_st.final_rounds_max = (unsigned long)round;
      break;
    }
  }
  if (round > 2 * LC_MAXREP) {
    lc_dump(s);
    fail_msg("rows still move after %d rounds of sessions", 2 * LC_MAXREP);
  }
  s->phase = "convergence check";
  {
    uint64_t d0 = mu_digest(&s->rep[0].m);
    for (i = 1; i < s->nrep; i++)
      if (mu_digest(&s->rep[i].m) != d0) {
        if (!must) return 0;
        lc_dump(s);
        fail_msg("no row moves any more, yet replica %d's digest differs "
                 "from replica 0's",
                 i);
      }
  }
  {
    lc_rep *all[LC_MAXREP];
    for (i = 0; i < s->nrep; i++) all[i] = &s->rep[i];
    lc_assert_same(all, s->nrep);
  }
  s->phase = "model check";
  lc_check_model(s);
  return 1;
}

/* Did a version that a collector never saw come back above its collected
 * delete (sync_gc's limit)?  Only a repair mends such a row. */
static int lc_any_zombie(const lc_scn *s) {
  int i;
  for (i = 0; i < s->nw; i++)
    if (s->w[i].zombie) return 1;
  return 0;
}

/* Set by a named test: sessions alone must end its scenario equal to
 * the model, before any final repair. */
static int lc_sessions_must;

/* The end of a scenario.  First sessions alone: when every replica ends
 * equal, the result must be the model's (counted).  A restore that a
 * third replica met before anyone found it out ends so, through the
 * renewal record.  What sessions cannot mend: a version that came back
 * above a collected delete (sync_gc's limit), and a restore that nobody
 * can find any more (the peers that held the lost log reset their
 * records of it, or were restored themselves).  Then repairs between
 * every pair (what no log shows, they find), and sessions again, which
 * must end equal to the model. */
static void lc_final(lc_scn *s) {
#if LC_HAVE_REPAIR
  int i, j;
#endif
  if (!lc_any_zombie(s) || lc_sessions_must) {
    if (lc_settle_check(s, "final sessions (no repair)", lc_sessions_must))
      lc_st.sessions_only++;
  }
#if LC_HAVE_REPAIR
  s->phase = "final repairs";
  for (i = 0; i < s->nrep; i++)
    for (j = 0; j < s->nrep; j++) {
      int rc, k;
      uint64_t ch = 0;
      if (i == j) continue;
      for (k = 0, rc = 0; k < 3; k++) {
        s->now++;
        rc = lc_session_x(&s->rep[i], &s->rep[j], 0, 1, 0, NULL, &ch, NULL);
        if (!lc_is_history(rc)) break;
      }
      if (getenv("SYNC_LIFECYCLE_TRACE")) {
        lc_event(s, "frp%d<%d:%d ", i, j, rc);
        lc_dump(s);
      }
      if (rc != 1) {
        lc_dump(s);
        fail_msg("final repair %d <- %d ended with %d (%s; %s)", i, j, rc,
                 sync_strerror(rc), lc_errmsg);
      }
    }
#endif
  (void)lc_settle_check(s, "final sessions", 1);
}

static void lc_free(lc_scn *s) {
  int i;
  for (i = 0; i < LC_MAXREP; i++) {
    if (s->rep[i].m.env || s->rep[i].m.path[0]) lc_close(&s->rep[i]);
    free(s->bk[i][0].bytes);
    free(s->bk[i][1].bytes);
    s->bk[i][0].bytes = s->bk[i][1].bytes = NULL;
  }
}

/* The events of the random phase, with their weights (of 100) and the
 * letter that SYNC_LIFECYCLE_SKIP uses to leave a kind out while a fix
 * for another is under way (the default draws them all; a skipped event
 * is a local write instead). */
static const struct {
  unsigned weight;
  char letter;
  void (*run)(lc_scn *s);
} lc_events[] = {
    {36, 'w', NULL}, /* a local write transaction */
    {23, 's', lc_random_sync},    {3, 'p', lc_random_repair},
    {5, 'a', lc_random_settle},
    {7, 'g', lc_random_gc},       {6, 'b', lc_random_backup},
    {6, 'r', lc_random_restore},  {3, 'c', lc_random_clone},
    {5, 'j', lc_random_join},     {6, 'x', lc_random_reset},
};

static int lc_skip_cuts(void) {
  const char *skip = getenv("SYNC_LIFECYCLE_SKIP");
  return skip && strchr(skip, 'u');
}

static void lc_dump(lc_scn *s);

static void lc_random_event(lc_scn *s) {
  const char *skip = getenv("SYNC_LIFECYCLE_SKIP");
  if (getenv("SYNC_LIFECYCLE_TRACE")) lc_dump(s);
  unsigned p = (unsigned)lc_below(s, 100), i;
  for (i = 0; i + 1 < sizeof lc_events / sizeof lc_events[0]; i++) {
    if (p < lc_events[i].weight) break;
    p -= lc_events[i].weight;
  }
  if (!lc_events[i].run || (skip && strchr(skip, lc_events[i].letter)))
    lc_local(s, (int)lc_below(s, (uint64_t)s->nrep));
  else
    lc_events[i].run(s);
}

static void lc_scenario(lc_scn *s, uint64_t seed) {
  int i, steps, step;
  memset(s, 0, sizeof *s);
  s->seed = seed;
  s->rng.s = seed;
  s->phase = "setup";
  s->now = LC_T0 + lc_below(s, 1000);
  s->nrep = 3 + (int)lc_below(s, 4);
  s->nkeys = 3 + (int)lc_below(s, LC_NKEYS - 2);
  for (i = 0; i < s->nrep; i++) {
    uint8_t site[16];
    char path[32];
    lc_rep_path(path, sizeof path, i);
    lc_new_site(s, i, site);
    lc_create(&s->rep[i], path, site, &s->now, seed + (uint64_t)i);
  }
  s->phase = "fleet events";
  steps = 20 + (int)lc_below(s, 40);
  for (step = 0; step < steps; step++) lc_random_event(s);
  lc_final(s);
  lc_free(s);
  lc_st.scenarios++;
}

static int lc_test_setup(void **state) {
  (void)state;
  lc_cur = NULL;
  memset(&lc_st, 0, sizeof lc_st);
  return 0;
}

static int lc_test_teardown(void **state) {
  (void)state;
  lc_sessions_must = 0;
  if (lc_cur) {
    fprintf(stderr,
            "FAILED lifecycle scenario seed 0x%016" PRIx64 " during %s; "
            "replay with SYNC_LIFECYCLE_SEED=0x%016" PRIx64
            " SYNC_LIFECYCLE_SCENARIOS=1\n",
            lc_cur->seed, lc_cur->phase, lc_cur->seed);
    if (getenv("SYNC_LIFECYCLE_VERBOSE"))
      fprintf(stderr, "events: %s\n", lc_cur->events);
    lc_free(lc_cur);
    lc_cur = NULL;
  }
  return 0;
}

/* Fleets of 3-8 replicas through writes, sessions (cut or not), gc,
 * joins, restores, copies and resets end equal, with nothing that
 * reached the fleet lost and nothing invented. */
/* A scenario of the random suite (seed 0x11fe00a6) in which a restored
 * replica's claim reached replicas that never held its lost writes
 * before anyone found the restore out: the renewal record brings them
 * those writes, so sessions alone end every replica equal to the model.
 * Before the record, only the final repairs did (the digests differed
 * after the sessions). */
static void test_restore_claim_mended_by_sessions(void **state) {
  (void)state;
  lc_sessions_must = 1;
  lc_cur = &lc_scn_mem;
  lc_scenario(lc_cur, UINT64_C(0x11fe00a6));
  lc_cur = NULL;
  lc_sessions_must = 0;
}

/* A scenario of the random suite (seed 0x11fe01e4) in which a replica
 * restored from a backup found out from a peer whose view of its log
 * lay in an epoch the backup never had.  Its renewal record then voided
 * every claim of its old site id, a delete of a row the backup held was
 * collected, and the backup's copy of the row came back everywhere.  The
 * lineage of the peer's mark bounds the renewal: the delete holds. */
static void test_restore_after_reopen_keeps_delete(void **state) {
  (void)state;
  lc_cur = &lc_scn_mem;
  lc_scenario(lc_cur, UINT64_C(0x11fe01e4));
  lc_cur = NULL;
}

/* A scenario of the random suite (seed 0x330000e4) in which a replica
 * restored from a backup, before anyone found it out, sent a complete
 * initial stream (it had collected tombstones) to a new replica.  The
 * row of a write the backup lacked was not in the stream, and the
 * restored sender's vector (its own entry, its clock) covered the row's
 * stamp: the receiver took the row for one the sender deleted and
 * deleted it everywhere, losing the write.  A complete stream now
 * deletes only rows below a causal length the sender collected. */
static void test_restored_sender_stream_keeps_lost_write(void **state) {
  (void)state;
  lc_cur = &lc_scn_mem;
  lc_scenario(lc_cur, UINT64_C(0x330000e4));
  lc_cur = NULL;
}

/* A scenario of the random suite (seed 0xbb001ec3) in which a replica
 * restored from an empty backup, before it wrote anything, met a write of
 * its old id that it lost, and renewed.  Its renewal record (the empty
 * file's clock) voided every replica's claims on the old id, also those
 * of a replica that had held a lost write, deleted it and collected the
 * tombstone: a restored backup of a third replica then brought the write
 * back.  A file whose clock never passed what it holds made no claim it
 * cannot keep, and now renews without a record for the fleet. */
static void test_unmoved_restore_keeps_fleet_claims(void **state) {
  (void)state;
  lc_cur = &lc_scn_mem;
  lc_scenario(lc_cur, UINT64_C(0xbb001ec3));
  lc_cur = NULL;
}

/* A scenario of the random suite (seed 0x2200080e) in which a version
 * concurrent with a delete reached the collector only along a path that
 * began with a repair.  A repair raised no vector, so no vector on the
 * way covered the version; the collector's gcvv did not either, and the
 * version came back above the collected delete.  A repair that ends with
 * equal roots over every table now raises the vector (and gcvv) to the
 * peer's, as a complete stream does. */
static void test_equal_repair_raises_vector(void **state) {
  (void)state;
  lc_cur = &lc_scn_mem;
  lc_scenario(lc_cur, UINT64_C(0x2200080e));
  lc_cur = NULL;
}

static void test_random_fleet_lifecycles_converge(void **state) {
  uint64_t base = lc_env_u64("SYNC_LIFECYCLE_SEED", LC_DEFAULT_SEED);
  uint64_t n =
      lc_env_u64("SYNC_LIFECYCLE_SCENARIOS", LC_DEFAULT_SCENARIOS), i;
  (void)state;
  if (!n) {
    fprintf(stderr, "random fleet lifecycles: skipped (make soak-lifecycle, "
                    "or SYNC_LIFECYCLE_SCENARIOS=N)\n");
    skip();
  }
  for (i = 0; i < n; i++) {
    lc_cur = &lc_scn_mem;
    lc_scenario(lc_cur, base + i);
    lc_cur = NULL;
  }
  assert_true(lc_st.scenarios == n);
  fprintf(stderr,
            "lifecycle: %lu scenarios, %lu writes, %lu sessions (%lu cut), "
            "%lu SYNC_ESTALE, %lu SYNC_EHISTORY, %lu gc (%lu collected), "
            "%lu backups, %lu restores, %lu clones, %lu joins, %lu resets, "
            "%lu repairs; final rounds <= %lu; %lu versions unseen by a "
            "collector came back above its collected delete; %lu writes "
            "made on a view without a write a restored replica lost and "
            "claimed; %lu scenarios equal to the model by sessions alone\n",
            lc_st.scenarios, lc_st.writes, lc_st.sessions, lc_st.cut,
            lc_st.stale, lc_st.history, lc_st.gcs, lc_st.collected,
            lc_st.backups, lc_st.restores, lc_st.clones, lc_st.joins,
            lc_st.resets, lc_st.repairs, lc_st.final_rounds_max,
            lc_st.zombies, lc_st.lost_claims, lc_st.sessions_only);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_gc_then_join_through_other_peer,
                                lc_close_all),
      cmocka_unit_test_teardown(test_restore_from_backup, lc_close_all),
      cmocka_unit_test_teardown(test_restore_keeps_collected_deletes,
                                lc_close_all),
      cmocka_unit_test_teardown(test_restored_server_found_by_request,
                                lc_close_all),
      cmocka_unit_test_teardown(test_cloned_site_id, lc_close_all),
      cmocka_unit_test_teardown(
          test_restored_peer_claims_do_not_pass_for_collected, lc_close_all),
      cmocka_unit_test_teardown(
          test_reinsert_after_horizon_beats_kept_tombstone, lc_close_all),
      cmocka_unit_test_teardown(test_apply_newer_whole_row, lc_close_all),
      cmocka_unit_test_setup_teardown(test_restore_claim_mended_by_sessions,
                                      lc_test_setup, lc_test_teardown),
      cmocka_unit_test_setup_teardown(test_restore_after_reopen_keeps_delete,
                                      lc_test_setup, lc_test_teardown),
      cmocka_unit_test_setup_teardown(
          test_restored_sender_stream_keeps_lost_write, lc_test_setup,
          lc_test_teardown),
      cmocka_unit_test_setup_teardown(test_unmoved_restore_keeps_fleet_claims,
                                      lc_test_setup, lc_test_teardown),
      cmocka_unit_test_setup_teardown(test_equal_repair_raises_vector,
                                      lc_test_setup, lc_test_teardown),
      cmocka_unit_test_setup_teardown(test_random_fleet_lifecycles_converge,
                                      lc_test_setup, lc_test_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
