/*
 * test_history.c - row history: the versions a table keeps match a model
 * of every commit (local and applied, aborted ones leaving nothing),
 * as-of cursors and diffs equal the model's state at each point,
 * retention by count and by age with SYNC_EPRUNED before it, restores
 * that replicate, and tables without history keeping nothing.
 */
#include "merge_util.h"

#include <lmdb.h>

#define HDB "hist_a.db"
#define HDB2 "hist_b.db"
#define NK 12
#define MAXC 260
#define NSTR 4

static const char *strs[NSTR] = {"red", "green", "blue", "a longer text"};

/* Table 0 ("t") keeps history in the tests, table 1 ("p") never does. */
static const sync_table_def h_tables[2] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
    {"p", SYNC_TEXT, mu_cols, MU_NCOLS},
};

typedef struct hm_state {
  int live;
  int64_t i;
  double r;
  int s; /* index in strs, -1: NULL */
} hm_state;

typedef struct hm_ver {
  uint64_t version, time;
  int origin;
  hm_state st;
} hm_ver;

/* The model: the state after each commit, the versions of each key. */
typedef struct hm {
  mu_rep rep;
  uint64_t now;
  hm_state cur[NK];
  hm_state snap[MAXC + 1][NK];
  uint64_t snap_ver[MAXC + 1], snap_time[MAXC + 1];
  size_t nsnap;
  hm_ver vers[NK][MAXC + 2];
  size_t nvers[NK];
} hm;

static uint64_t g_seed;

static void key_of(int k, char *buf) { snprintf(buf, 8, "k%02d", k); }

/* The key number of "kNN" (keys read back are not NUL-terminated). */
static int key_num(const void *p) {
  const char *s = (const char *)p;
  return (s[1] - '0') * 10 + (s[2] - '0');
}

static void state_vals(const hm_state *s, sync_value *v) {
  v[0] = sync_int(s->i);
  v[1] = sync_real(s->r);
  v[2] = s->s < 0 ? sync_null() : sync_text(strs[s->s], strlen(strs[s->s]));
  v[3] = sync_null();
}

static int state_eq(const hm_state *a, const hm_state *b) {
  if (a->live != b->live) return 0;
  if (!a->live) return 1;
  return a->i == b->i && a->r == b->r && a->s == b->s;
}

/* Values read back equal a live model state. */
static void check_vals(const sync_value *v, const hm_state *s, const char *what,
                       int k) {
  sync_value want[MU_NCOLS];
  unsigned c;
  state_vals(s, want);
  for (c = 0; c < MU_NCOLS; c++)
    if (!tu_value_equal(&v[c], &want[c]))
      fail_msg("seed %llu: %s of key %d: column %u differs",
               (unsigned long long)g_seed, what, k, c);
}

static void hm_open(hm *m, uint8_t site, const char *path) {
  uint8_t id[16];
  memset(m, 0, sizeof *m);
  m->now = 1000;
  mu_site(id, site);
  mu_open_schema(&m->rep, path, id, &m->now, 0, h_tables, 2);
}

static void hm_snap(hm *m) {
  assert_true(m->nsnap <= MAXC);
  memcpy(m->snap[m->nsnap], m->cur, sizeof m->cur);
  m->snap_ver[m->nsnap] = mu_version(&m->rep);
  m->snap_time[m->nsnap] = m->now;
  m->nsnap++;
}

static void hm_history_on(hm *m, uint64_t max_versions, uint64_t max_age) {
  sync_history_opts o;
  sync_history_opts got;
  o.max_versions = max_versions;
  o.max_age_ms = max_age;
  TU_OK(sync_env_set_history(m->rep.env, 0, &o));
  TU_OK(sync_env_history(m->rep.env, 0, &got));
  TU_U64(got.max_versions, max_versions);
  TU_U64(got.max_age_ms, max_age);
  TU_RC(sync_env_history(m->rep.env, 1, &got), SYNC_NOTFOUND);
  hm_snap(m);
}

/* One operation on key k in txn, mirrored on the transaction's model
 * copy st; 1 when the library changes the row (it then records a
 * version at commit). */
static int hm_op(sync_txn *x, tu_rng *rng, int k, hm_state *st) {
  char key[8];
  hm_state n = *st;
  sync_value v[MU_NCOLS];
  unsigned col = MU_COL_I;
  int kind = (int)tu_below(rng, 10);
  key_of(k, key);
  if (st->live && kind < 3) {
    TU_OK(sync_delete(x, 0, key, strlen(key)));
    st->live = 0;
    return 1;
  }
  if (st->live && kind < 7) {
    sync_value val = sync_int((int64_t)tu_below(rng, 4));
    TU_OK(sync_update(x, 0, key, strlen(key), &col, &val, 1));
    n.i = val.i;
  } else {
    n.live = 1;
    n.i = (int64_t)tu_below(rng, 4);
    n.r = (double)tu_below(rng, 3) / 2;
    n.s = (int)tu_below(rng, NSTR + 1) - 1;
    state_vals(&n, v);
    TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
  }
  if (st->live && state_eq(st, &n)) return 0;
  *st = n;
  return 1;
}

/* ncommits random transactions (one in ten aborted), each its own
 * commit time. */
static void hm_run(hm *m, tu_rng *rng, int ncommits) {
  int c;
  for (c = 0; c < ncommits; c++) {
    sync_txn *x;
    hm_state st[NK];
    int touched[NK], any = 0, k, nops = 1 + (int)tu_below(rng, 3), j;
    int abort_it = tu_below(rng, 10) == 0;
    m->now += tu_below(rng, 3); /* commits may share a millisecond */
    memcpy(st, m->cur, sizeof st);
    memset(touched, 0, sizeof touched);
    TU_OK(sync_txn_begin(m->rep.env, 0, &x));
    for (j = 0; j < nops; j++) {
      k = (int)tu_below(rng, NK);
      if (hm_op(x, rng, k, &st[k])) touched[k] = any = 1;
    }
    if (abort_it) {
      sync_txn_abort(x);
      continue;
    }
    TU_OK(sync_txn_commit(x));
    if (!any) continue;
    memcpy(m->cur, st, sizeof st);
    hm_snap(m);
    for (k = 0; k < NK; k++) {
      hm_ver *v;
      if (!touched[k]) continue;
      v = &m->vers[k][m->nvers[k]++];
      v->version = m->snap_ver[m->nsnap - 1];
      v->time = m->now;
      v->origin = SYNC_ORIGIN_LOCAL;
      v->st = st[k];
    }
  }
}

/* Keys 0..nk-1 written before history is on: versions of unknown origin
 * and time. */
static void hm_prehistory(hm *m, int nk) {
  sync_txn *x;
  int k;
  TU_OK(sync_txn_begin(m->rep.env, 0, &x));
  for (k = 0; k < nk; k++) {
    char key[8];
    sync_value v[MU_NCOLS];
    hm_state s = {1, k, 0.5, k % NSTR};
    key_of(k, key);
    state_vals(&s, v);
    TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
    m->cur[k] = s;
  }
  TU_OK(sync_txn_commit(x));
  for (k = 0; k < nk; k++) {
    hm_ver *v = &m->vers[k][m->nvers[k]++];
    v->version = mu_version(&m->rep);
    v->time = 0;
    v->origin = SYNC_ORIGIN_UNKNOWN;
    v->st = m->cur[k];
  }
}

/* The versions listed for key k are the model's, newest first (at most
 * limit of them; 0: all). */
static void hm_check_versions(hm *m, int k, size_t limit) {
  sync_txn *x;
  sync_versions *it;
  sync_version ver;
  sync_value v[MU_NCOLS];
  char key[8];
  size_t n = m->nvers[k], got = 0;
  int rc;
  key_of(k, key);
  if (limit && n > limit) n = limit;
  TU_OK(sync_txn_begin(m->rep.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_versions_open(x, 0, key, strlen(key), &it));
  while ((rc = sync_versions_next(it, &ver, v, MU_NCOLS)) == 0) {
    const hm_ver *w;
    if (got >= n)
      fail_msg("seed %llu: key %d lists more than %zu versions",
               (unsigned long long)g_seed, k, n);
    w = &m->vers[k][m->nvers[k] - 1 - got];
    if (ver.version != w->version || ver.deleted != !w->st.live)
      fail_msg("seed %llu: key %d version %zu: got v%llu deleted %d, want "
               "v%llu deleted %d", (unsigned long long)g_seed, k, got,
               (unsigned long long)ver.version, ver.deleted,
               (unsigned long long)w->version, !w->st.live);
    /* The oldest kept version may have lost what its commit was. */
    if (!(limit && got + 1 == n && ver.origin == SYNC_ORIGIN_UNKNOWN)) {
      if (ver.origin != w->origin || ver.time_ms != w->time)
        fail_msg("seed %llu: key %d v%llu: origin %d time %llu, want %d "
                 "%llu", (unsigned long long)g_seed, k,
                 (unsigned long long)ver.version, ver.origin,
                 (unsigned long long)ver.time_ms, w->origin,
                 (unsigned long long)w->time);
    }
    if (w->st.live) check_vals(v, &w->st, "a version", k);
    if (ver.origin == SYNC_ORIGIN_LOCAL)
      assert_memory_equal(ver.site, m->rep.site, 16);
    got++;
  }
  TU_RC(rc, SYNC_NOTFOUND);
  if (got != n)
    fail_msg("seed %llu: key %d lists %zu versions, want %zu",
             (unsigned long long)g_seed, k, got, n);
  sync_versions_close(it);
  sync_txn_abort(x);
}

/* The rows an as-of cursor gives equal the model state want. */
static void hm_check_asof(hm *m, int kind, uint64_t at, const hm_state *want) {
  sync_txn *x;
  sync_cursor *c;
  sync_key key;
  sync_value v[MU_NCOLS];
  int seen[NK], k, rc;
  memset(seen, 0, sizeof seen);
  TU_OK(sync_txn_begin(m->rep.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_cursor_open_asof(x, 0, kind, at, &c));
  while ((rc = sync_cursor_next(c, &key, v, MU_NCOLS)) == 0) {
    assert_int_equal(key.len, 3);
    k = key_num(key.data);
    if (k < 0 || k >= NK)
      fail_msg("seed %llu: as-of %llu gives key %.3s", (unsigned long long)g_seed,
               (unsigned long long)at, (const char *)key.data);
    if (!want[k].live)
      fail_msg("seed %llu: as-of %s %llu shows key %d, absent then",
               (unsigned long long)g_seed, kind ? "time" : "version",
               (unsigned long long)at, k);
    check_vals(v, &want[k], "an as-of row", k);
    seen[k] = 1;
  }
  TU_RC(rc, SYNC_NOTFOUND);
  for (k = 0; k < NK; k++)
    if (want[k].live && !seen[k])
      fail_msg("seed %llu: as-of %s %llu misses key %d",
               (unsigned long long)g_seed, kind ? "time" : "version",
               (unsigned long long)at, k);
  sync_cursor_close(c);
  sync_txn_abort(x);
}

/* The model state at time t: after the last commit made at or before
 * it. */
static size_t hm_at_time(const hm *m, uint64_t t) {
  size_t j = 0, i;
  for (i = 0; i < m->nsnap; i++)
    if (m->snap_time[i] <= t) j = i;
  return j;
}

typedef struct hm_diff {
  int kind[NK];
} hm_diff;

static int diff_cb(void *ctx, const void *key, size_t klen, int kind,
                   const sync_value *a, const sync_value *b, unsigned n) {
  hm_diff *d = (hm_diff *)ctx;
  int k;
  assert_int_equal(klen, 3);
  assert_int_equal(n, MU_NCOLS);
  k = key_num(key);
  assert_true((a == NULL) == (kind == SYNC_DIFF_ADDED));
  assert_true((b == NULL) == (kind == SYNC_DIFF_REMOVED));
  d->kind[k] = kind;
  return 0;
}

static void hm_check_diff(hm *m, size_t ja, size_t jb) {
  sync_txn *x;
  hm_diff d;
  int k;
  memset(&d, 0, sizeof d);
  TU_OK(sync_txn_begin(m->rep.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_history_diff(x, 0, SYNC_ASOF_VERSION, m->snap_ver[ja],
                          m->snap_ver[jb], diff_cb, &d));
  sync_txn_abort(x);
  for (k = 0; k < NK; k++) {
    const hm_state *a = &m->snap[ja][k], *b = &m->snap[jb][k];
    int want = state_eq(a, b)   ? 0
               : !a->live       ? SYNC_DIFF_ADDED
               : !b->live       ? SYNC_DIFF_REMOVED
                                : SYNC_DIFF_CHANGED;
    if (d.kind[k] != want)
      fail_msg("seed %llu: diff v%llu..v%llu key %d: got %d, want %d",
               (unsigned long long)g_seed, (unsigned long long)m->snap_ver[ja],
               (unsigned long long)m->snap_ver[jb], k, d.kind[k], want);
  }
}

static void hm_expect_pruned(hm *m, int kind, uint64_t at) {
  sync_txn *x;
  sync_cursor *c = NULL;
  TU_OK(sync_txn_begin(m->rep.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_cursor_open_asof(x, 0, kind, at, &c), SYNC_EPRUNED);
  assert_null(c);
  sync_txn_abort(x);
}

/* ---------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------- */

static void test_versions_and_asof_match_a_model(void **state) {
  static hm m;
  uint64_t seeds[3] = {0x5eed0001, 0xdecafbad, 0x1234567};
  int si;
  (void)state;
  for (si = 0; si < 3; si++) {
    tu_rng rng;
    size_t j;
    int k;
    g_seed = seeds[si];
    rng.s = g_seed;
    hm_open(&m, 0xA1, HDB);
    hm_prehistory(&m, 5);
    hm_history_on(&m, 0, 0);
    hm_run(&m, &rng, 200);
    for (k = 0; k < NK; k++) hm_check_versions(&m, k, 0);
    for (j = 0; j < m.nsnap; j++) {
      hm_check_asof(&m, SYNC_ASOF_VERSION, m.snap_ver[j], m.snap[j]);
      hm_check_asof(&m, SYNC_ASOF_TIME, m.snap_time[j],
                    m.snap[hm_at_time(&m, m.snap_time[j])]);
    }
    /* A point after the last commit reads as now. */
    hm_check_asof(&m, SYNC_ASOF_VERSION, m.snap_ver[m.nsnap - 1] + 5, m.cur);
    hm_check_asof(&m, SYNC_ASOF_TIME, m.now + 1000, m.cur);
    for (j = 0; j < 40; j++)
      hm_check_diff(&m, (size_t)tu_below(&rng, m.nsnap),
                    (size_t)tu_below(&rng, m.nsnap));
    /* Before history was on: refused, never guessed. */
    hm_expect_pruned(&m, SYNC_ASOF_VERSION, m.snap_ver[0] - 1);
    hm_expect_pruned(&m, SYNC_ASOF_TIME, m.snap_time[0] - 1);
    /* Kept in the file: a reopened env lists the same. */
    sync_env_close(m.rep.env);
    mu_reopen_schema(&m.rep, h_tables, 2);
    {
      sync_history_opts o;
      TU_OK(sync_env_history(m.rep.env, 0, &o));
    }
    for (k = 0; k < NK; k++) hm_check_versions(&m, k, 0);
    hm_check_asof(&m, SYNC_ASOF_VERSION, m.snap_ver[m.nsnap / 2],
                  m.snap[m.nsnap / 2]);
    mu_close(&m.rep);
  }
}

static void test_aborted_transaction_records_nothing(void **state) {
  static hm m;
  sync_txn *x;
  sync_value v[MU_NCOLS];
  hm_state s = {1, 42, 1.5, 2};
  (void)state;
  g_seed = 0;
  hm_open(&m, 0xA2, HDB);
  hm_history_on(&m, 0, 0);
  m.now += 5;
  state_vals(&s, v);
  TU_OK(sync_txn_begin(m.rep.env, 0, &x));
  TU_OK(sync_put(x, 0, "k00", 3, v, MU_NCOLS));
  TU_OK(sync_txn_commit(x));
  m.cur[0] = s;
  hm_snap(&m);
  m.vers[0][m.nvers[0]].version = m.snap_ver[1];
  m.vers[0][m.nvers[0]].time = m.now;
  m.vers[0][m.nvers[0]].origin = SYNC_ORIGIN_LOCAL;
  m.vers[0][m.nvers[0]++].st = s;
  /* Writes, updates and a delete, aborted: no version anywhere. */
  m.now += 5;
  TU_OK(sync_txn_begin(m.rep.env, 0, &x));
  v[0] = sync_int(7);
  TU_OK(sync_put(x, 0, "k00", 3, v, MU_NCOLS));
  TU_OK(sync_put(x, 0, "k01", 3, v, MU_NCOLS));
  TU_OK(sync_delete(x, 0, "k00", 3));
  sync_txn_abort(x);
  hm_check_versions(&m, 0, 0);
  hm_check_versions(&m, 1, 0);
  hm_check_asof(&m, SYNC_ASOF_TIME, m.now, m.cur);
  TU_U64(mu_version(&m.rep), m.snap_ver[1]);
  mu_close(&m.rep);
}

static void test_applied_rows_are_recorded_as_applied(void **state) {
  static hm a, b;
  sync_txn *x;
  sync_versions *it;
  sync_version ver;
  sync_value v[MU_NCOLS];
  mu_pull_stats st;
  (void)state;
  g_seed = 0;
  hm_open(&a, 0xA3, HDB);
  hm_open(&b, 0xB3, HDB2);
  hm_history_on(&a, 0, 0);
  mu_put(&b.rep, "k00", 1, 0.5, "peer");
  mu_put(&b.rep, "k01", 2, 0.5, "peer");
  memset(&st, 0, sizeof st);
  mu_pull(&a.rep, &b.rep, 100, 1, &st);
  mu_update(&a.rep, "k00", MU_COL_I, sync_int(9));
  mu_delete(&b.rep, "k01");
  mu_pull(&a.rep, &b.rep, 100, 1, &st);
  TU_OK(sync_txn_begin(a.rep.env, SYNC_TXN_RDONLY, &x));
  /* k00: the local update over the applied insert. */
  TU_OK(sync_versions_open(x, 0, "k00", 3, &it));
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(ver.origin, SYNC_ORIGIN_LOCAL);
  assert_memory_equal(ver.site, a.rep.site, 16);
  assert_int_equal(v[0].i, 9);
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(ver.origin, SYNC_ORIGIN_PEER);
  assert_memory_equal(ver.site, b.rep.site, 16);
  assert_memory_equal(ver.row_stamp.site, b.rep.site, 16);
  assert_int_equal(v[0].i, 1);
  {
    sync_stamp s, base;
    sync_value c;
    TU_OK(sync_versions_column(it, MU_COL_S, &c, &s, &base));
    assert_int_equal(c.len, 4);
    assert_memory_equal(s.site, b.rep.site, 16);
    TU_U64(base.hlc, 0);
  }
  TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_NOTFOUND);
  sync_versions_close(it);
  /* k01: the peer's delete, applied, over its insert. */
  TU_OK(sync_versions_open(x, 0, "k01", 3, &it));
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(ver.origin, SYNC_ORIGIN_PEER);
  assert_true(ver.deleted);
  assert_int_equal(v[0].type, SYNC_NULL);
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(ver.origin, SYNC_ORIGIN_PEER);
  assert_false(ver.deleted);
  assert_int_equal(v[0].i, 2);
  TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_NOTFOUND);
  sync_versions_close(it);
  sync_txn_abort(x);
  mu_close(&a.rep);
  mu_close(&b.rep);
}

static void test_retention_by_count(void **state) {
  static hm m;
  tu_rng rng;
  int k, c;
  (void)state;
  g_seed = 0xc0c0;
  rng.s = g_seed;
  hm_open(&m, 0xA4, HDB);
  hm_history_on(&m, 3, 0);
  hm_run(&m, &rng, 150);
  for (k = 0; k < NK; k++) hm_check_versions(&m, k, 3);
  /* A row written ten times more keeps its three newest. */
  for (c = 0; c < 10; c++) {
    hm_ver *v = &m.vers[0][m.nvers[0]++];
    m.now += 2;
    m.cur[0].live = 1;
    m.cur[0].i = 100 + c;
    m.cur[0].r = 0;
    m.cur[0].s = -1;
    mu_put(&m.rep, "k00", m.cur[0].i, 0, NULL);
    hm_snap(&m);
    v->version = m.snap_ver[m.nsnap - 1];
    v->time = m.now;
    v->origin = SYNC_ORIGIN_LOCAL;
    v->st = m.cur[0];
  }
  hm_check_versions(&m, 0, 3);
  /* The floor is the version whose predecessor k00 lost last: the one
   * that wrote 107.  From there on as-of reads work, before it not. */
  {
    uint64_t floor = m.vers[0][m.nvers[0] - 3].version;
    size_t j;
    hm_expect_pruned(&m, SYNC_ASOF_VERSION, floor - 1);
    for (j = 0; j < m.nsnap; j++)
      if (m.snap_ver[j] >= floor)
        hm_check_asof(&m, SYNC_ASOF_VERSION, m.snap_ver[j], m.snap[j]);
  }
  /* Down to one: only the current version stays, after a prune. */
  {
    sync_history_opts o = {1, 0};
    sync_txn *x;
    uint64_t removed = 0;
    TU_OK(sync_env_set_history(m.rep.env, 0, &o));
    TU_OK(sync_txn_begin(m.rep.env, 0, &x));
    TU_OK(sync_history_prune(x, 0, &removed));
    TU_OK(sync_txn_commit(x));
    assert_true(removed > 0);
    for (k = 0; k < NK; k++) hm_check_versions(&m, k, 1);
    hm_check_asof(&m, SYNC_ASOF_VERSION, m.snap_ver[m.nsnap - 1], m.cur);
    hm_expect_pruned(&m, SYNC_ASOF_VERSION, m.snap_ver[m.nsnap - 2]);
  }
  mu_close(&m.rep);
}

static void test_retention_by_age(void **state) {
  static hm m;
  tu_rng rng;
  uint64_t cutoff;
  size_t j;
  int k;
  (void)state;
  g_seed = 0xa6e;
  rng.s = g_seed;
  hm_open(&m, 0xA5, HDB);
  hm_history_on(&m, 0, 100);
  hm_run(&m, &rng, 200); /* about 200 ms of commits */
  /* Every commit pruned what was replaced before its time - 100. */
  cutoff = m.now - 100;
  for (j = 0; j < m.nsnap; j++) {
    if (m.snap_time[j] < cutoff) continue;
    hm_check_asof(&m, SYNC_ASOF_TIME, m.snap_time[j],
                  m.snap[hm_at_time(&m, m.snap_time[j])]);
    hm_check_asof(&m, SYNC_ASOF_VERSION, m.snap_ver[j], m.snap[j]);
  }
  hm_check_asof(&m, SYNC_ASOF_TIME, cutoff, m.snap[hm_at_time(&m, cutoff)]);
  hm_expect_pruned(&m, SYNC_ASOF_TIME, m.snap_time[1]);
  hm_expect_pruned(&m, SYNC_ASOF_VERSION, m.snap_ver[1]);
  /* Much later, with no writes: a prune leaves each row's current
   * version alone, and reads reach back to the last change only. */
  m.now += 10000;
  {
    sync_txn *x;
    uint64_t removed = 0;
    TU_OK(sync_txn_begin(m.rep.env, 0, &x));
    TU_OK(sync_history_prune(x, 0, &removed));
    TU_OK(sync_txn_commit(x));
    assert_true(removed > 0);
  }
  for (k = 0; k < NK; k++) hm_check_versions(&m, k, 1);
  hm_check_asof(&m, SYNC_ASOF_TIME, m.now, m.cur);
  hm_check_asof(&m, SYNC_ASOF_TIME, m.snap_time[m.nsnap - 1], m.cur);
  hm_expect_pruned(&m, SYNC_ASOF_TIME, m.snap_time[m.nsnap - 1] - 1);
  mu_close(&m.rep);
}

static void hm_check_current(mu_rep *r, const hm_state *want) {
  int k;
  for (k = 0; k < NK; k++) {
    char key[8];
    mu_row row;
    key_of(k, key);
    mu_read(r, key, &row);
    if (row.present != want[k].live)
      fail_msg("seed %llu: %s key %d present %d, want %d",
               (unsigned long long)g_seed, r->path, k, row.present,
               want[k].live);
    if (row.present) check_vals(row.v, &want[k], "a restored row", k);
  }
}

static void test_restore_replicates_and_converges(void **state) {
  static hm a, b;
  tu_rng rng;
  mu_pull_stats st;
  int round;
  (void)state;
  g_seed = 0x2e5707e;
  rng.s = g_seed;
  hm_open(&a, 0xA6, HDB);
  hm_open(&b, 0xB6, HDB2);
  hm_prehistory(&a, 4);
  hm_history_on(&a, 0, 0);
  for (round = 0; round < 4; round++) {
    size_t j;
    sync_txn *x;
    uint64_t changed = 0, want_changed = 0;
    int k;
    hm_run(&a, &rng, 40);
    memset(&st, 0, sizeof st);
    mu_pull(&b.rep, &a.rep, 7, 1, &st);
    j = (size_t)tu_below(&rng, a.nsnap);
    for (k = 0; k < NK; k++)
      if (!state_eq(&a.snap[j][k], &a.cur[k])) want_changed++;
    a.now += 3;
    TU_OK(sync_txn_begin(a.rep.env, 0, &x));
    if (round & 1)
      TU_OK(sync_table_restore(x, 0, SYNC_ASOF_TIME,
                               a.snap_time[hm_at_time(&a, a.snap_time[j])],
                               &changed));
    else
      TU_OK(sync_table_restore(x, 0, SYNC_ASOF_VERSION, a.snap_ver[j],
                               &changed));
    TU_OK(sync_txn_commit(x));
    if (round & 1) j = hm_at_time(&a, a.snap_time[j]);
    TU_U64(changed, want_changed);
    memcpy(a.cur, a.snap[j], sizeof a.cur);
    hm_check_current(&a.rep, a.cur);
    if (changed) hm_snap(&a);
    /* The restore is made of ordinary changes: they replicate. */
    mu_pull(&b.rep, &a.rep, 5, 1, &st);
    hm_check_current(&b.rep, a.cur);
    TU_U64(mu_digest(&b.rep), mu_digest(&a.rep));
    /* The replica that received it writes on, and that comes back. */
    for (k = 0; k < NK && !a.cur[k].live; k++) continue;
    if (k < NK) {
      char key[8];
      key_of(k, key);
      mu_update(&b.rep, key, MU_COL_I, sync_int(77 + round));
      a.now += 1;
      mu_pull(&a.rep, &b.rep, 5, 1, &st);
      a.cur[k].i = 77 + round;
      hm_snap(&a);
      hm_check_current(&a.rep, a.cur);
      TU_U64(mu_digest(&b.rep), mu_digest(&a.rep));
    }
  }
  /* A point before history is refused, and writes nothing. */
  {
    sync_txn *x;
    uint64_t changed = 1, v = mu_version(&a.rep);
    TU_OK(sync_txn_begin(a.rep.env, 0, &x));
    TU_RC(sync_table_restore(x, 0, SYNC_ASOF_VERSION, a.snap_ver[0] - 1,
                             &changed),
          SYNC_EPRUNED);
    TU_U64(changed, 0);
    TU_OK(sync_txn_commit(x));
    TU_U64(mu_version(&a.rep), v);
  }
  mu_close(&a.rep);
  mu_close(&b.rep);
}

/* Keys of the named store with table id tid's prefix, or -1 when the
 * store does not exist. */
static long raw_hist_keys(const char *path, unsigned tid) {
  MDB_env *e;
  MDB_txn *t;
  MDB_dbi d;
  MDB_cursor *c;
  MDB_val k, v;
  long n = 0;
  int rc;
  assert_int_equal(mdb_env_create(&e), 0);
  assert_int_equal(mdb_env_set_maxdbs(e, 128), 0);
  assert_int_equal(mdb_env_open(e, path, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
  assert_int_equal(mdb_txn_begin(e, NULL, MDB_RDONLY, &t), 0);
  rc = mdb_dbi_open(t, "sx.hist", 0, &d);
  if (rc == MDB_NOTFOUND) {
    n = -1;
  } else {
    assert_int_equal(rc, 0);
    assert_int_equal(mdb_cursor_open(t, d, &c), 0);
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
      const unsigned char *p = (const unsigned char *)k.mv_data;
      if (k.mv_size >= 2 && p[0] == (tid >> 8) && p[1] == (tid & 0xff)) n++;
      rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
  }
  mdb_txn_abort(t);
  mdb_env_close(e);
  return n;
}

static void test_table_without_history_keeps_nothing(void **state) {
  static hm m;
  sync_txn *x;
  sync_versions *it;
  sync_version ver;
  sync_cursor *c = NULL;
  sync_value v[MU_NCOLS];
  hm_state s = {1, 1, 0, 0};
  int i;
  (void)state;
  g_seed = 0;
  hm_open(&m, 0xA7, HDB);
  state_vals(&s, v);
  for (i = 0; i < 5; i++) {
    TU_OK(sync_txn_begin(m.rep.env, 0, &x));
    v[0] = sync_int(i);
    TU_OK(sync_put(x, 1, "row", 3, v, MU_NCOLS));
    TU_OK(sync_put(x, 0, "row", 3, v, MU_NCOLS));
    if (i == 3) TU_OK(sync_delete(x, 1, "row", 3));
    TU_OK(sync_txn_commit(x));
  }
  /* No table keeps history: no store at all. */
  sync_env_close(m.rep.env);
  assert_int_equal(raw_hist_keys(HDB, 1), -1);
  mu_reopen_schema(&m.rep, h_tables, 2);
  hm_history_on(&m, 0, 0);
  for (i = 0; i < 5; i++) {
    TU_OK(sync_txn_begin(m.rep.env, 0, &x));
    v[0] = sync_int(10 + i);
    TU_OK(sync_put(x, 1, "row", 3, v, MU_NCOLS));
    TU_OK(sync_put(x, 0, "row", 3, v, MU_NCOLS));
    if (i == 2) TU_OK(sync_delete(x, 1, "row", 3));
    TU_OK(sync_txn_commit(x));
  }
  /* Table p lists its current version only and has no past to read. */
  TU_OK(sync_txn_begin(m.rep.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_versions_open(x, 1, "row", 3, &it));
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(v[0].i, 14);
  assert_int_equal(ver.origin, SYNC_ORIGIN_UNKNOWN);
  TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_NOTFOUND);
  sync_versions_close(it);
  TU_RC(sync_cursor_open_asof(x, 1, SYNC_ASOF_VERSION, 1, &c), SYNC_EPRUNED);
  assert_null(c);
  /* Table t lists all five since history began, and the one before. */
  TU_OK(sync_versions_open(x, 0, "row", 3, &it));
  for (i = 0; i < 6; i++) {
    TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
    assert_int_equal(v[0].i, i < 5 ? 14 - i : 4);
    assert_int_equal(ver.origin, i < 5 ? SYNC_ORIGIN_LOCAL : SYNC_ORIGIN_UNKNOWN);
  }
  TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_NOTFOUND);
  sync_versions_close(it);
  sync_txn_abort(x);
  sync_env_close(m.rep.env);
  m.rep.env = NULL;
  assert_int_equal(raw_hist_keys(HDB, 1), 0);
  assert_int_equal(raw_hist_keys(HDB, 0), 1 + 5); /* its record, versions */
  /* Turning it off removes every kept version. */
  mu_reopen_schema(&m.rep, h_tables, 2);
  TU_OK(sync_env_set_history(m.rep.env, 0, NULL));
  TU_RC(sync_env_history(m.rep.env, 0, NULL), SYNC_EINVAL);
  {
    sync_history_opts o;
    TU_RC(sync_env_history(m.rep.env, 0, &o), SYNC_NOTFOUND);
  }
  sync_env_close(m.rep.env);
  m.rep.env = NULL;
  assert_int_equal(raw_hist_keys(HDB, 0), 0);
  mu_close(&m.rep);
}

/* A tombstone whose replaced version history keeps is not collected
 * (its key holds the row's versions); once retention drops the version,
 * it is. */
static void test_gc_keeps_tombstones_history_needs(void **state) {
  static hm a, b;
  mu_pull_stats st;
  sync_txn *x;
  uint64_t got = 0, vdel;
  hm_state gone = {0, 0, 0, 0};
  (void)state;
  g_seed = 0;
  hm_open(&a, 0xA9, HDB);
  hm_open(&b, 0xB9, HDB2);
  hm_history_on(&a, 0, 0);
  a.now += 10;
  mu_put(&a.rep, "k00", 5, 0.5, NULL);
  a.cur[0].live = 1;
  a.cur[0].i = 5;
  a.cur[0].r = 0.5;
  a.cur[0].s = -1;
  hm_snap(&a);
  a.now += 10;
  mu_delete(&a.rep, "k00");
  vdel = mu_version(&a.rep);
  memset(&st, 0, sizeof st);
  mu_pull(&b.rep, &a.rep, 100, 1, &st); /* b acknowledges the delete */
  mu_pull(&b.rep, &a.rep, 100, 1, &st);
  TU_OK(sync_env_gc(a.rep.env, &got));
  TU_U64(got, 0);
  TU_U64(mu_tombstones(&a.rep), 1);
  {
    /* The row as it was before its delete still reads. */
    hm_state was[NK];
    memset(was, 0, sizeof was);
    was[0] = a.cur[0];
    hm_check_asof(&a, SYNC_ASOF_VERSION, vdel - 1, was);
    memset(was, 0, sizeof was);
    was[0] = gone;
    hm_check_asof(&a, SYNC_ASOF_VERSION, vdel, was);
  }
  /* Keep only the current versions: the tombstone is free to go. */
  {
    sync_history_opts o = {1, 0};
    TU_OK(sync_env_set_history(a.rep.env, 0, &o));
  }
  TU_OK(sync_txn_begin(a.rep.env, 0, &x));
  TU_OK(sync_history_prune(x, 0, &got));
  TU_OK(sync_txn_commit(x));
  TU_U64(got, 2); /* the delete's record and the insert's */
  TU_OK(sync_env_gc(a.rep.env, &got));
  TU_U64(got, 1);
  TU_U64(mu_tombstones(&a.rep), 0);
  hm_expect_pruned(&a, SYNC_ASOF_VERSION, vdel - 1);
  mu_close(&a.rep);
  mu_close(&b.rep);
}

/* A replica taking a new site id moves its old stamps to the old id in
 * the kept versions too: they still decode and name the old id. */
static void test_site_renewal_relabels_versions(void **state) {
  static hm m;
  sync_txn *x;
  sync_versions *it;
  sync_version ver;
  sync_value v[MU_NCOLS];
  uint8_t old[16], now[16];
  (void)state;
  g_seed = 0;
  hm_open(&m, 0xAA, HDB);
  hm_history_on(&m, 0, 0);
  memcpy(old, m.rep.site, 16);
  m.now += 5;
  mu_put(&m.rep, "k00", 1, 0, "one");
  m.now += 5;
  mu_put(&m.rep, "k00", 2, 0, "two");
  TU_OK(sync_txn_begin(m.rep.env, 0, &x));
  TU_OK(sync_site_renew(x));
  TU_OK(sync_txn_commit(x));
  TU_OK(sync_env_site_id(m.rep.env, now));
  assert_memory_not_equal(now, old, 16);
  TU_OK(sync_txn_begin(m.rep.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_versions_open(x, 0, "k00", 3, &it));
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(v[0].i, 2);
  assert_memory_equal(ver.row_stamp.site, old, 16);
  TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
  assert_int_equal(v[0].i, 1);
  assert_memory_equal(ver.row_stamp.site, old, 16);
  TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_NOTFOUND);
  sync_versions_close(it);
  sync_txn_abort(x);
  mu_close(&m.rep);
}

static int stop_cb(void *ctx, const void *key, size_t klen, int kind,
                   const sync_value *a, const sync_value *b, unsigned n) {
  (void)key, (void)klen, (void)kind, (void)a, (void)b, (void)n;
  ++*(int *)ctx;
  return 7;
}

/* Two tables with history written in the same transactions: each keeps
 * its own rows' versions (their records interleave in the store). */
static void test_two_tables_with_history(void **state) {
  static hm m;
  sync_history_opts o = {0, 0};
  sync_txn *x;
  sync_value v[MU_NCOLS];
  hm_state s = {1, 0, 0, 1};
  int i;
  unsigned t;
  (void)state;
  hm_open(&m, 0xAB, HDB);
  TU_OK(sync_env_set_history(m.rep.env, 1, &o));
  TU_OK(sync_env_set_history(m.rep.env, 0, &o));
  for (i = 0; i < 6; i++) {
    m.now += 3;
    TU_OK(sync_txn_begin(m.rep.env, 0, &x));
    for (t = 2; t-- > 0;) {
      s.i = 10 * (int)t + i;
      state_vals(&s, v);
      TU_OK(sync_put(x, t, "k00", 3, v, MU_NCOLS));
      TU_OK(sync_put(x, t, "k01", 3, v, MU_NCOLS));
    }
    TU_OK(sync_txn_commit(x));
  }
  TU_OK(sync_txn_begin(m.rep.env, SYNC_TXN_RDONLY, &x));
  for (t = 0; t < 2; t++) {
    sync_versions *it;
    sync_version ver;
    TU_OK(sync_versions_open(x, t, "k01", 3, &it));
    for (i = 5; i >= 0; i--) {
      TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
      assert_int_equal(v[0].i, 10 * (int)t + i);
      assert_int_equal(ver.origin, SYNC_ORIGIN_LOCAL);
      TU_U64(ver.time_ms, 1000 + 3 * (uint64_t)(i + 1));
    }
    TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_NOTFOUND);
    sync_versions_close(it);
  }
  {
    /* A callback that stops the diff: its value comes back. */
    int calls = 0;
    assert_int_equal(sync_history_diff(x, 1, SYNC_ASOF_TIME, 1000, m.now,
                                       stop_cb, &calls),
                     7);
    assert_int_equal(calls, 1);
  }
  sync_txn_abort(x);
  mu_close(&m.rep);
}

static int count_cb(void *ctx, const void *key, size_t klen, int kind,
                    const sync_value *a, const sync_value *b, unsigned n) {
  (void)key, (void)klen, (void)kind, (void)a, (void)b, (void)n;
  ++*(int *)ctx;
  return 0;
}

/* The history calls with the n-th allocation failing, for every n: each
 * returns 0 or SYNC_ENOMEM (SYNC_ETXN after a failed write), and every
 * block is freed (the allocator counts them). */
static int alloc_round(tu_alloc *a) {
  static tu_random rnd = {0x33, 0, 0};
  sync_allocator al = tu_allocator(a);
  sync_env *env = NULL;
  sync_txn *x = NULL;
  sync_history_opts o = {3, 0};
  sync_value v[MU_NCOLS];
  hm_state s = {1, 1, 0.5, 2};
  int rc, i, hit = 0;
  uint64_t v0 = 0, n = 0;
#define AR(call)                                                                 do {                                                                             rc = (call);                                                                   if (rc == SYNC_ENOMEM || rc == SYNC_ETXN) {                                      hit = 1;                                                                       goto out;                                                                    }                                                                              TU_OK(rc);                                                                   } while (0)
  tu_remove_db(HDB);
  AR(sync_env_create(&al, &env));
  AR(sync_env_set_random(env, tu_random_fn, &rnd));
  AR(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  AR(sync_env_set_schema(env, h_tables, 2));
  AR(sync_env_open(env, HDB, 0));
  AR(sync_env_set_history(env, 0, &o));
  for (i = 0; i < 4; i++) {
    AR(sync_txn_begin(env, 0, &x));
    if (i == 1) v0 = sync_txn_version(x);
    s.i = i;
    state_vals(&s, v);
    AR(sync_put(x, 0, "k00", 3, v, MU_NCOLS));
    AR(sync_put(x, 0, "k01", 3, v, MU_NCOLS));
    if (i == 3) AR(sync_delete(x, 0, "k01", 3));
    rc = sync_txn_commit(x); /* frees x, whatever it returns */
    x = NULL;
    AR(rc);
  }
  AR(sync_txn_begin(env, 0, &x));
  {
    sync_versions *it = NULL;
    sync_version ver;
    sync_cursor *c = NULL;
    sync_key k;
    int calls = 0;
    rc = sync_versions_open(x, 0, "k00", 3, &it);
    if (rc == SYNC_ENOMEM) {
      hit = 1;
      goto out;
    }
    TU_OK(rc);
    while ((rc = sync_versions_next(it, &ver, v, MU_NCOLS)) == 0) n++;
    sync_versions_close(it);
    if (rc == SYNC_ENOMEM) {
      hit = 1;
      goto out;
    }
    TU_RC(rc, SYNC_NOTFOUND);
    TU_U64(n, 3);
    AR(sync_cursor_open_asof(x, 0, SYNC_ASOF_VERSION, v0 + 1, &c));
    while ((rc = sync_cursor_next(c, &k, v, MU_NCOLS)) == 0) continue;
    sync_cursor_close(c);
    TU_RC(rc, SYNC_NOTFOUND);
    AR(sync_history_diff(x, 0, SYNC_ASOF_VERSION, v0 + 1, v0 + 3, count_cb,
                         &calls));
    AR(sync_table_restore(x, 0, SYNC_ASOF_VERSION, v0 + 1, &n));
    AR(sync_history_prune(x, 0, &n));
  }
  rc = sync_txn_commit(x);
  x = NULL;
  AR(rc);
  AR(sync_env_set_history(env, 0, NULL));
#undef AR
out:
  sync_txn_abort(x);
  sync_env_close(env);
  tu_remove_db(HDB);
  return hit;
}

static void test_allocation_failures(void **state) {
  unsigned long nth;
  tu_alloc a;
  (void)state;
  memset(&a, 0, sizeof a);
  assert_int_equal(alloc_round(&a), 0); /* nothing fails: the count */
  assert_int_equal(a.live_blocks, 0);
  for (nth = 1; nth <= a.calls; nth++) {
    tu_alloc f;
    memset(&f, 0, sizeof f);
    f.fail_at = nth;
    alloc_round(&f);
    if (f.live_blocks != 0)
      fail_msg("allocation %lu failing leaks %ld blocks", nth, f.live_blocks);
  }
}

static void test_bad_arguments(void **state) {
  static hm m;
  sync_txn *x;
  sync_cursor *c = NULL;
  sync_versions *it = NULL;
  sync_history_opts o = {0, 0};
  (void)state;
  hm_open(&m, 0xA8, HDB);
  TU_RC(sync_env_set_history(m.rep.env, 2, &o), SYNC_EINVAL);
  TU_RC(sync_env_set_history(NULL, 0, &o), SYNC_EINVAL);
  TU_OK(sync_txn_begin(m.rep.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_env_set_history(m.rep.env, 0, &o), SYNC_EBUSY);
  TU_RC(sync_versions_open(x, 0, "", 0, &it), SYNC_EINVAL);
  TU_RC(sync_cursor_open_asof(x, 0, SYNC_ASOF_VERSION, 0, &c), SYNC_EPRUNED);
  sync_txn_abort(x);
  TU_OK(sync_env_set_history(m.rep.env, 0, &o));
  TU_OK(sync_txn_begin(m.rep.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_cursor_open_asof(x, 0, 7, 0, &c), SYNC_EINVAL);
  TU_RC(sync_table_restore(x, 0, SYNC_ASOF_VERSION, 0, NULL), SYNC_EREADONLY);
  TU_RC(sync_history_prune(x, 0, NULL), SYNC_EREADONLY);
  sync_txn_abort(x);
  mu_put(&m.rep, "k00", 0, 0, NULL);
  TU_OK(sync_txn_begin(m.rep.env, 0, &x));
  TU_RC(sync_history_prune(x, 1, NULL), SYNC_NOTFOUND);
  {
    /* A write in the middle of a listing ends it: its pages moved. */
    sync_value v[MU_NCOLS];
    sync_version ver;
    hm_state s = {1, 1, 0, 0};
    state_vals(&s, v);
    TU_OK(sync_put(x, 0, "k00", 3, v, MU_NCOLS));
    s.i = 2;
    state_vals(&s, v);
    TU_OK(sync_put(x, 0, "k01", 3, v, MU_NCOLS));
    TU_OK(sync_versions_open(x, 0, "k00", 3, &it));
    TU_OK(sync_versions_next(it, &ver, v, MU_NCOLS));
    TU_OK(sync_put(x, 0, "k02", 3, v, MU_NCOLS));
    TU_RC(sync_versions_next(it, &ver, v, MU_NCOLS), SYNC_EINVAL);
    sync_versions_close(it);
  }
  sync_txn_abort(x);
  assert_string_equal(sync_strerror(SYNC_EPRUNED),
                      "point before what the table's history keeps");
  mu_close(&m.rep);
}

/* A counter column's versions read as its sums, as sync_get reads it,
 * not as its stored per-site cells. */
static void test_counter_versions_read_as_sums(void **state) {
  static const sync_column_def cols[2] = {{"n", SYNC_INTEGER, 0},
                                          {"hits", SYNC_COUNTER, 0}};
  static const sync_table_def t[1] = {{"t", SYNC_TEXT, cols, 2}};
  uint64_t now = 1700000000000ull;
  sync_history_opts ho;
  sync_versions *it;
  sync_version ver;
  sync_value v[2], cv;
  sync_txn *x;
  uint8_t id[16];
  mu_rep r;
  int64_t want[2] = {7, 3};
  int i;
  (void)state;
  mu_site(id, 0xc7);
  mu_open_schema(&r, "hist_ctr.db", id, &now, 0, t, 1);
  memset(&ho, 0, sizeof ho);
  TU_OK(sync_env_set_history(r.env, 0, &ho));
  for (i = 0; i < 2; i++) {
    now += 10;
    TU_OK(sync_txn_begin(r.env, 0, &x));
    TU_OK(sync_counter_add(x, 0, "k", 1, 1, i ? 4 : 3));
    TU_OK(sync_txn_commit(x));
  }
  TU_OK(sync_txn_begin(r.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_versions_open(x, 0, "k", 1, &it));
  for (i = 0; i < 2; i++) {
    TU_OK(sync_versions_next(it, &ver, v, 2));
    assert_int_equal(v[1].type, SYNC_INTEGER);
    assert_int_equal(v[1].i, want[i]);
    TU_OK(sync_versions_column(it, 1, &cv, NULL, NULL));
    assert_int_equal(cv.type, SYNC_INTEGER);
    assert_int_equal(cv.i, want[i]);
  }
  sync_versions_close(it);
  sync_txn_abort(x);
  mu_close(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_versions_and_asof_match_a_model),
      cmocka_unit_test(test_aborted_transaction_records_nothing),
      cmocka_unit_test(test_applied_rows_are_recorded_as_applied),
      cmocka_unit_test(test_retention_by_count),
      cmocka_unit_test(test_retention_by_age),
      cmocka_unit_test(test_restore_replicates_and_converges),
      cmocka_unit_test(test_table_without_history_keeps_nothing),
      cmocka_unit_test(test_gc_keeps_tombstones_history_needs),
      cmocka_unit_test(test_site_renewal_relabels_versions),
      cmocka_unit_test(test_two_tables_with_history),
      cmocka_unit_test(test_allocation_failures),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_counter_versions_read_as_sums),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
