/*
 * test_rolling.c - rolling schema changes (issue 15, part 1): replicas
 * whose schemas differ by appended columns and tables keep syncing both
 * ways; an old replica stores the columns it does not know with their
 * stamps and sends them on unchanged; rows of a table it does not have
 * are counted and wait behind its cursor; an open with the longer schema
 * upgrades the file and shows what it already held; anything else is
 * refused with a message that names the table and the column.
 *
 * The property test (test_mixed_versions) runs SYNC_ROLLING_SCENARIOS
 * random scenarios (default 300) from SYNC_TEST_SEED; a failure prints
 * the seed of its scenario.
 */
#include "sess_util.h"

#include <inttypes.h>
#include <xxhash.h>

#ifndef SYNC_MAX_COLUMNS
#define SYNC_MAX_COLUMNS 64 /* the library's default (sync.h) */
#endif

/* ---------------------------------------------------------------------
 * Three versions of one schema: V1 is the test table; V2 appends two
 * columns to it; V3 appends a table.
 * ------------------------------------------------------------------- */
#define RL_NCOLS 6u
#define RL_COL_X 4u
#define RL_COL_Y 5u

static const sync_column_def rl_cols2[RL_NCOLS] = {
    {"i", SYNC_INTEGER, 0}, {"r", SYNC_REAL, 0}, {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},    {"x", SYNC_INTEGER, 0}, {"y", SYNC_TEXT, 0},
};
static const sync_column_def rl_tag_cols[1] = {{"label", SYNC_TEXT, 0}};
static const sync_table_def rl_v1[1] = {{"t", SYNC_TEXT, mu_cols, MU_NCOLS}};
static const sync_table_def rl_v2[1] = {{"t", SYNC_TEXT, rl_cols2, RL_NCOLS}};
static const sync_table_def rl_v3[2] = {
    {"t", SYNC_TEXT, rl_cols2, RL_NCOLS},
    {"tags", SYNC_TEXT, rl_tag_cols, 1},
};

static const sync_table_def *rl_schema(int v, unsigned *n) {
  *n = v == 3 ? 2 : 1;
  return v == 1 ? rl_v1 : v == 2 ? rl_v2 : rl_v3;
}

static unsigned rl_ncols(int v) { return v == 1 ? MU_NCOLS : RL_NCOLS; }

typedef struct rl_rep {
  mu_rep r;
  int v; /* schema version declared */
} rl_rep;

static void rl_open(rl_rep *x, const char *path, uint8_t site,
                    const uint64_t *now, int v) {
  uint8_t id[16];
  unsigned n;
  const sync_table_def *t = rl_schema(v, &n);
  mu_site(id, site);
  mu_open_schema(&x->r, path, id, now, 0, t, n);
  x->v = v;
}

/* Close and open again with schema version v (an upgrade when v is
 * larger): the file stays. */
static void rl_reopen(rl_rep *x, int v) {
  mu_rep *r = &x->r;
  unsigned n;
  const sync_table_def *t = rl_schema(v, &n);
  sync_env_close(r->env);
  TU_OK(sync_env_create(NULL, &r->env));
  TU_OK(sync_env_set_random(r->env, mu_random_fn, r));
  TU_OK(sync_env_set_clock(r->env, mu_clock_fn, r));
  TU_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_schema(r->env, t, n));
  TU_OK(sync_env_open(r->env, r->path, 0));
  x->v = v;
}

static void rl_close(rl_rep *x) { mu_close(&x->r); }

/* Put key with all columns x's schema has (i, s from the arguments; x,
 * y when it has them). */
static void rl_put(rl_rep *x, const char *key, int64_t i, const char *s,
                   int64_t xv, const char *yv) {
  sync_txn *txn;
  sync_value v[RL_NCOLS];
  v[0] = sync_int(i);
  v[1] = sync_real((double)i / 4);
  v[2] = sync_text(s, strlen(s));
  v[3] = sync_blob(key, strlen(key));
  v[4] = sync_int(xv);
  v[5] = sync_text(yv, strlen(yv));
  TU_OK(sync_txn_begin(x->r.env, 0, &txn));
  TU_OK(sync_put(txn, 0, key, strlen(key), v, rl_ncols(x->v)));
  TU_OK(sync_txn_commit(txn));
}

static void rl_put_tag(rl_rep *x, const char *key, const char *label) {
  sync_txn *txn;
  sync_value v = sync_text(label, strlen(label));
  TU_OK(sync_txn_begin(x->r.env, 0, &txn));
  TU_OK(sync_put(txn, 1, key, strlen(key), &v, 1));
  TU_OK(sync_txn_commit(txn));
}

/* One session, client c to server s, both ways; the client's status. */
static int rl_sync(rl_rep *c, rl_rep *s, sync_session_stats *cst) {
  return su_sync(&c->r, &s->r, NULL, NULL, cst, NULL);
}

/* Column col of key in table tid as stored (also beyond the schema):
 * its value copied into buf, and its stamp.  0, or SYNC_NOTFOUND when
 * the row or the column is absent. */
static int rl_column(rl_rep *x, unsigned tid, const char *key, unsigned col,
                     sync_value *val, unsigned char *buf, size_t cap,
                     sync_stamp *st) {
  sync_txn *txn;
  sync_changes *it;
  sync_change ch;
  int rc, found = SYNC_NOTFOUND;
  TU_OK(sync_txn_begin(x->r.env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_changes_open(txn, 0, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    if (ch.table != tid || ch.key.len != strlen(key) ||
        memcmp(ch.key.data, key, ch.key.len))
      continue;
    found = sync_changes_column(it, col, val, st, NULL);
    if (found == 0 && (val->type == SYNC_TEXT || val->type == SYNC_BLOB)) {
      assert_true(val->len <= cap);
      if (val->len) memcpy(buf, val->data, val->len);
      val->data = buf;
    }
    break;
  }
  if (rc != 0) TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(txn);
  return found;
}

static uint64_t rl_digest(rl_rep *x) {
  return mu_digest(&x->r);
}

static void setup_paths(void) {
  tu_remove_db("rl-a.db");
  tu_remove_db("rl-b.db");
  tu_remove_db("rl-c.db");
}

static int rl_setup(void **state) {
  (void)state;
  setup_paths();
  return 0;
}

/* ---------------------------------------------------------------------
 * Named rules
 * ------------------------------------------------------------------- */

/* An open with the schema plus appended columns and a table upgrades the
 * file in place: one version more, rows kept, new columns NULL, the new
 * table usable; the shorter schema is refused afterwards. */
static void test_open_upgrades_file(void **state) {
  uint64_t now = 1700000000000ull, ver1, ver3, h1, h3;
  rl_rep a;
  sync_txn *txn;
  sync_value v[RL_NCOLS];
  (void)state;
  rl_open(&a, "rl-a.db", 0xa1, &now, 1);
  rl_put(&a, "k1", 7, "seven", 0, "");
  TU_OK(sync_env_schema_info(a.r.env, &ver1, &h1));
  rl_reopen(&a, 3);
  TU_OK(sync_env_schema_info(a.r.env, &ver3, &h3));
  TU_U64(ver3, ver1 + 1);
  assert_true(h3 != h1);
  assert_int_equal(sync_env_table_count(a.r.env), 2);
  TU_OK(sync_txn_begin(a.r.env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "k1", 2, v, RL_NCOLS));
  assert_int_equal(v[0].i, 7);
  assert_int_equal(v[RL_COL_X].type, SYNC_NULL);
  assert_int_equal(v[RL_COL_Y].type, SYNC_NULL);
  sync_txn_abort(txn);
  rl_put_tag(&a, "g", "green");
  /* The hash is the one a file created with V3 has. */
  {
    rl_rep b;
    uint64_t hb;
    rl_open(&b, "rl-b.db", 0xb1, &now, 3);
    TU_OK(sync_env_schema_info(b.r.env, NULL, &hb));
    TU_U64(hb, h3);
    rl_close(&b);
  }
  /* Tables and columns are never removed. */
  sync_env_close(a.r.env);
  TU_OK(sync_env_create(NULL, &a.r.env));
  TU_OK(sync_env_set_schema(a.r.env, rl_v2, 1));
  TU_RC(sync_env_open(a.r.env, a.r.path, 0), SYNC_ESCHEMA);
  assert_non_null(strstr(sync_env_errmsg(a.r.env), "tags"));
  sync_env_close(a.r.env);
  a.r.env = NULL;
  rl_reopen(&a, 3);
  rl_close(&a);
}

/* An upgrade that would change a type, or add a NOT NULL column, is
 * refused and changes nothing. */
static void test_open_refuses_other_changes(void **state) {
  uint64_t now = 1700000000000ull, ver;
  rl_rep a;
  sync_column_def c[RL_NCOLS];
  sync_table_def t;
  (void)state;
  rl_open(&a, "rl-a.db", 0xa1, &now, 1);
  sync_env_close(a.r.env);
  memcpy(c, rl_cols2, sizeof c);
  t = rl_v2[0];
  t.columns = c;
  c[RL_COL_X].flags = SYNC_COL_NOTNULL;
  TU_OK(sync_env_create(NULL, &a.r.env));
  TU_OK(sync_env_set_schema(a.r.env, &t, 1));
  TU_RC(sync_env_open(a.r.env, a.r.path, 0), SYNC_ECONSTRAINT);
  assert_non_null(strstr(sync_env_errmsg(a.r.env), "'x'"));
  sync_env_close(a.r.env);
  memcpy(c, rl_cols2, sizeof c);
  c[1].type = SYNC_INTEGER;
  TU_OK(sync_env_create(NULL, &a.r.env));
  TU_OK(sync_env_set_schema(a.r.env, &t, 1));
  TU_RC(sync_env_open(a.r.env, a.r.path, 0), SYNC_ESCHEMA);
  assert_non_null(strstr(sync_env_errmsg(a.r.env), "'r'"));
  sync_env_close(a.r.env);
  a.r.env = NULL;
  rl_reopen(&a, 1);
  TU_OK(sync_env_schema_info(a.r.env, &ver, NULL));
  TU_U64(ver, 1);
  rl_close(&a);
}

/* New writer -> old relay -> new receiver: the relay stores the columns
 * it does not know with their stamps, its reads show its own columns
 * only, and what it sends on is byte for byte the writer's; once it
 * upgrades, the values are there without a sync. */
static void test_old_relay_keeps_unknown_columns(void **state) {
  uint64_t now = 1700000000000ull;
  rl_rep n, o, r;
  sync_value wv, ov, rv;
  sync_stamp ws, os, rs;
  unsigned char wb[64], ob[64], rb[64];
  sync_txn *txn;
  sync_value v[RL_NCOLS];
  unsigned col;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 2);
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  rl_open(&r, "rl-c.db", 0xc1, &now, 2);
  rl_put(&n, "k1", 1, "one", 100, "hundred");
  now++;
  rl_put(&n, "k2", 2, "two", -5, "minus five");
  now++;
  assert_int_equal(rl_sync(&o, &n, NULL), 1);
  /* The old replica reads its four columns... */
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "k1", 2, v, MU_NCOLS));
  assert_int_equal(v[0].i, 1);
  TU_RC(sync_get(txn, 0, "k1", 2, v, RL_NCOLS), SYNC_EINVAL);
  sync_txn_abort(txn);
  /* ...and stores the other two as the writer made them. */
  for (col = RL_COL_X; col <= RL_COL_Y; col++) {
    TU_OK(rl_column(&n, 0, "k1", col, &wv, wb, sizeof wb, &ws));
    TU_OK(rl_column(&o, 0, "k1", col, &ov, ob, sizeof ob, &os));
    assert_true(tu_value_equal(&wv, &ov));
    TU_U64(ws.hlc, os.hlc);
    assert_memory_equal(ws.site, os.site, 16);
  }
  /* The new receiver gets them from the old relay, unchanged. */
  assert_int_equal(rl_sync(&r, &o, NULL), 1);
  for (col = 0; col < RL_NCOLS; col++) {
    TU_OK(rl_column(&n, 0, "k2", col, &wv, wb, sizeof wb, &ws));
    TU_OK(rl_column(&r, 0, "k2", col, &rv, rb, sizeof rb, &rs));
    assert_true(tu_value_equal(&wv, &rv));
    TU_U64(ws.hlc, rs.hlc);
    assert_memory_equal(ws.site, rs.site, 16);
  }
  TU_U64(rl_digest(&r), rl_digest(&n));
  /* The old replica writes a column of its own: the unknown ones stay. */
  mu_update(&o.r, "k1", MU_COL_S, sync_text("ONE", 3));
  now++;
  TU_OK(rl_column(&o, 0, "k1", RL_COL_X, &ov, ob, sizeof ob, &os));
  assert_int_equal(ov.i, 100);
  assert_int_equal(rl_sync(&n, &o, NULL), 1);
  TU_OK(rl_column(&n, 0, "k1", MU_COL_S, &wv, wb, sizeof wb, &ws));
  assert_int_equal(wv.len, 3);
  assert_memory_equal(wv.data, "ONE", 3);
  TU_OK(rl_column(&n, 0, "k1", RL_COL_X, &wv, wb, sizeof wb, &ws));
  assert_int_equal(wv.i, 100);
  /* The upgrade shows what the relay held, with no sync in between, and
   * its digest now counts it. */
  assert_true(rl_digest(&o) != rl_digest(&n));
  rl_reopen(&o, 2);
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "k2", 2, v, RL_NCOLS));
  assert_int_equal(v[RL_COL_X].i, -5);
  assert_int_equal(v[RL_COL_Y].len, 10);
  assert_memory_equal(v[RL_COL_Y].data, "minus five", 10);
  sync_txn_abort(txn);
  TU_U64(rl_digest(&o), rl_digest(&n));
  rl_close(&n);
  rl_close(&o);
  rl_close(&r);
}

/* The digest of an old replica counts the columns of its own schema
 * only: two old replicas that hold the same rows agree, whether or not
 * one also holds values of newer columns; equal after both upgrade. */
static void test_digest_skips_unknown_columns(void **state) {
  uint64_t now = 1700000000000ull;
  rl_rep n, o1, o2;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 2);
  rl_open(&o1, "rl-b.db", 0xb1, &now, 1);
  rl_open(&o2, "rl-c.db", 0xc1, &now, 1);
  rl_put(&n, "k", 3, "three", 33, "thirty-three");
  now++;
  assert_int_equal(rl_sync(&o1, &n, NULL), 1);
  /* o2 gets the row's own columns from an old writer's view: the same
   * four values, written there by o2 itself, would differ in stamps but
   * not in the digest. */
  rl_put(&o2, "k", 3, "three", 0, "");
  now++;
  TU_U64(rl_digest(&o1), rl_digest(&o2));
  assert_true(rl_digest(&o1) != rl_digest(&n));
  rl_reopen(&o1, 2);
  TU_U64(rl_digest(&o1), rl_digest(&n));
  rl_close(&n);
  rl_close(&o1);
  rl_close(&o2);
}

/* Rows of a table the receiver lacks are counted, not applied, and keep
 * its cursor before them: the rest of the chunk applies, every session
 * counts them again, and after the upgrade they arrive. */
static void test_unknown_table_waits_for_upgrade(void **state) {
  uint64_t now = 1700000000000ull;
  rl_rep n, o;
  sync_session_stats st;
  sync_txn *txn;
  sync_value v;
  int i;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 3);
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  rl_put(&n, "k1", 1, "one", 1, "x");
  now++;
  rl_put_tag(&n, "g1", "green");
  now++;
  rl_put_tag(&n, "g2", "grey");
  now++;
  for (i = 0; i < 2; i++) {
    assert_int_equal(rl_sync(&o, &n, &st), 1);
    TU_U64(st.applied.unknown, 2);
  }
  /* What the old replica could take, it has. */
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &txn));
  assert_int_equal(sync_contains(txn, 0, "k1", 2), 1);
  sync_txn_abort(txn);
  /* Writes after them arrive too (the session goes on past them). */
  rl_put(&n, "k2", 2, "two", 2, "y");
  now++;
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_U64(st.applied.unknown, 2);
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &txn));
  assert_int_equal(sync_contains(txn, 0, "k2", 2), 1);
  sync_txn_abort(txn);
  /* The other way the old replica's writes go as usual. */
  rl_put(&o, "k3", 3, "three", 0, "");
  now++;
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_OK(sync_txn_begin(n.r.env, SYNC_TXN_RDONLY, &txn));
  assert_int_equal(sync_contains(txn, 0, "k3", 2), 1);
  sync_txn_abort(txn);
  rl_reopen(&o, 3);
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_U64(st.applied.unknown, 0);
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 1, "g2", 2, &v, 1));
  assert_int_equal(v.len, 4);
  assert_memory_equal(v.data, "grey", 4);
  sync_txn_abort(txn);
  TU_U64(rl_digest(&o), rl_digest(&n));
  /* The run completed now: nothing is counted again. */
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_U64(st.applied.unknown, 0);
  TU_U64(st.applied.rows, 0);
  rl_close(&n);
  rl_close(&o);
}

/* The schemas travel in fragments of the smallest message (256 bytes)
 * and arrive one byte per call: the session still completes, both ways. */
static void test_schemas_in_small_pieces(void **state) {
  uint64_t now = 1700000000000ull;
  rl_rep n, o;
  sync_session_opts co, so;
  sync_session *c, *s;
  su_pump p;
  tu_rng g;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 3);
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  rl_put(&n, "k1", 1, "one", 11, "eleven");
  now++;
  rl_put(&o, "k2", 2, "two", 0, "");
  now++;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.max_message = 256;
  so.max_message = 256;
  so.server = 1;
  TU_OK(sync_session_create(o.r.env, &co, &c));
  TU_OK(sync_session_create(n.r.env, &so, &s));
  memset(&p, 0, sizeof p);
  g.s = 15;
  p.g = &g;
  p.max_piece = 1;
  assert_true(su_run(&p, c, s));
  sync_session_free(c);
  sync_session_free(s);
  rl_reopen(&o, 3);
  TU_U64(rl_digest(&o), rl_digest(&n));
  rl_close(&n);
  rl_close(&o);
}

/* A receiver that holds rows back does not acknowledge what it did not
 * take: the sender keeps the tombstones of those rows for it, and after
 * the upgrade the delete arrives (no SYNC_ESTALE, no lost delete). */
static void test_held_rows_are_not_acknowledged(void **state) {
  uint64_t now = 1700000000000ull, n_gc = 0;
  rl_rep n, o;
  sync_session_stats st;
  sync_txn *txn;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 3);
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  rl_put_tag(&n, "g1", "green");
  now++;
  rl_put_tag(&n, "g2", "grey");
  now++;
  rl_put(&n, "k1", 1, "one", 1, "x");
  now++;
  TU_OK(sync_txn_begin(n.r.env, 0, &txn));
  TU_OK(sync_delete(txn, 1, "g1", 2));
  TU_OK(sync_txn_commit(txn));
  now++;
  rl_put(&n, "k2", 2, "two", 2, "y");
  now++;
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_U64(st.applied.unknown, 2); /* g2, and g1's tombstone */
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_OK(sync_txn_begin(n.r.env, 0, &txn));
  TU_OK(sync_gc(txn, &n_gc));
  TU_OK(sync_txn_commit(txn));
  TU_U64(n_gc, 0);
  rl_reopen(&o, 3);
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &txn));
  assert_int_equal(sync_contains(txn, 1, "g1", 2), 0);
  assert_int_equal(sync_contains(txn, 1, "g2", 2), 1);
  assert_int_equal(sync_contains(txn, 0, "k2", 2), 1);
  sync_txn_abort(txn);
  TU_U64(rl_digest(&o), rl_digest(&n));
  /* Now the run completed, acknowledged and collected. */
  assert_int_equal(rl_sync(&o, &n, &st), 1);
  TU_OK(sync_txn_begin(n.r.env, 0, &txn));
  TU_OK(sync_gc(txn, &n_gc));
  TU_OK(sync_txn_commit(txn));
  TU_U64(n_gc, 1);
  rl_close(&n);
  rl_close(&o);
}

/* Incompatible changes: both sides of the session fail with
 * SYNC_ESCHEMA, and both messages name the table and the column as the
 * server and as the client declare it (want_here); so does
 * sync_env_schema_accept's (want_api). */
static void rl_expect_refusal(const sync_table_def *other, unsigned n,
                              const char *want_here, const char *want_api) {
  uint64_t now = 1700000000000ull;
  rl_rep a;
  mu_rep b;
  uint8_t id[16];
  sync_session_opts co, so;
  sync_session *c, *s;
  su_pump p;
  rl_open(&a, "rl-a.db", 0xa1, &now, 2);
  mu_site(id, 0xb1);
  mu_open_schema(&b, "rl-b.db", id, &now, 0, other, n);
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  so.server = 1;
  TU_OK(sync_session_create(b.env, &co, &c));
  TU_OK(sync_session_create(a.r.env, &so, &s));
  memset(&p, 0, sizeof p);
  assert_false(su_run(&p, c, s));
  assert_int_equal(sync_session_status(s), SYNC_ESCHEMA);
  assert_int_equal(sync_session_status(c), SYNC_ESCHEMA);
  if (!strstr(sync_session_errmsg(s), want_here))
    fail_msg("server message \"%s\" lacks \"%s\"", sync_session_errmsg(s),
             want_here);
  if (!strstr(sync_session_errmsg(c), want_here))
    fail_msg("client message \"%s\" lacks \"%s\"", sync_session_errmsg(c),
             want_here);
  sync_session_free(c);
  sync_session_free(s);
  /* The same verdict through the API, from the other's exported bytes. */
  {
    unsigned char buf[4096];
    int64_t len = sync_env_schema_export(b.env, buf, sizeof buf);
    assert_true(len > 0 && (size_t)len <= sizeof buf);
    TU_RC(sync_env_schema_accept(a.r.env, buf, (size_t)len), SYNC_ESCHEMA);
    if (!strstr(sync_env_errmsg(a.r.env), want_api))
      fail_msg("accept message \"%s\" lacks \"%s\"", sync_env_errmsg(a.r.env),
               want_api);
  }
  rl_close(&a);
  mu_close(&b);
}

static void test_incompatible_change_is_named(void **state) {
  sync_column_def c[RL_NCOLS];
  sync_table_def t[2];
  (void)state;
  /* A column's type. */
  memcpy(c, rl_cols2, sizeof c);
  t[0] = rl_v2[0];
  t[0].columns = c;
  c[RL_COL_X].type = SYNC_REAL;
  rl_expect_refusal(t, 1, "table 't' column 4 is 'x' INTEGER on the server "
                          "but 'x' REAL on the client",
                    "table 't' column 4 is 'x' INTEGER here but 'x' REAL in "
                    "the schema given");
  /* A name at a shared position (the shorter side's last column). */
  memcpy(c, rl_cols2, sizeof c);
  c[MU_COL_B].name = "blob";
  t[0].ncolumns = MU_NCOLS;
  rl_expect_refusal(t, 1, "column 3 is 'b' BLOB on the server but 'blob' "
                          "BLOB on the client",
                    "column 3 is 'b' BLOB here but 'blob' BLOB in the schema "
                    "given");
  /* A key type. */
  t[0] = rl_v2[0];
  t[0].key_type = SYNC_BLOB;
  rl_expect_refusal(t, 1, "table 't': the key is TEXT on the server but BLOB "
                          "on the client",
                    "table 't': the key is TEXT here but BLOB in the schema "
                    "given");
  /* NOT NULL on a shared column. */
  memcpy(c, rl_cols2, sizeof c);
  t[0] = rl_v2[0];
  t[0].columns = c;
  c[0].flags = SYNC_COL_NOTNULL;
  rl_expect_refusal(t, 1, "'i' INTEGER on the server but 'i' INTEGER NOT "
                          "NULL on the client",
                    "'i' INTEGER here but 'i' INTEGER NOT NULL in the schema "
                    "given");
  /* Another table at a shared position. */
  t[0] = rl_v3[1];
  rl_expect_refusal(t, 1, "table 0 is 't' on the server but 'tags' on the "
                          "client",
                    "table 0 is 't' here but 'tags' in the schema given");
}

static int rl_refuse(void *ctx, const uint8_t site[16], const void *cred,
                     size_t cred_len, sync_rights *rights) {
  (void)ctx;
  (void)site;
  (void)cred;
  (void)cred_len;
  (void)rights;
  return SYNC_EPERM;
}

/* The server keeps the schema of an authorized client only: a refused
 * one, whatever schema it sends, leaves nothing behind (the env keeps a
 * few peer schemas, which strangers must not fill). */
static void test_refused_client_schema_not_kept(void **state) {
  uint64_t now = 1700000000000ull;
  rl_rep n, o;
  sync_session_opts so;
  sync_txn *tx, *rx;
  sync_request *req;
  sync_delta *d;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 3);
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  memset(&so, 0, sizeof so);
  so.authorize = rl_refuse;
  assert_int_equal(su_sync(&o.r, &n.r, NULL, &so, NULL, NULL), SYNC_EPERM);
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &rx));
  TU_OK(sync_request_make(rx, n.r.site, &req));
  sync_txn_abort(rx);
  TU_OK(sync_txn_begin(n.r.env, SYNC_TXN_RDONLY, &tx));
  TU_RC(sync_delta_make(tx, req, NULL, &d), SYNC_ESCHEMA);
  sync_txn_abort(tx);
  /* Authorized, it is kept: the same request is answered. */
  assert_int_equal(rl_sync(&o, &n, NULL), 1);
  TU_OK(sync_txn_begin(n.r.env, SYNC_TXN_RDONLY, &tx));
  TU_OK(sync_delta_make(tx, req, NULL, &d));
  sync_txn_abort(tx);
  sync_delta_free(d);
  sync_request_free(req);
  rl_close(&n);
  rl_close(&o);
}

/* The in-process API: a delta cut under a compatible schema is refused
 * until sync_env_schema_accept has seen that schema, then applied. */
static void test_api_accepts_compatible_schema(void **state) {
  uint64_t now = 1700000000000ull;
  rl_rep n, o;
  sync_txn *tx, *rx;
  sync_request *req;
  sync_delta *d;
  sync_apply_report rep;
  unsigned char buf[4096];
  int64_t len;
  (void)state;
  rl_open(&n, "rl-a.db", 0xa1, &now, 3);
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  rl_put(&n, "k1", 1, "one", 10, "ten");
  now++;
  rl_put_tag(&n, "g", "green");
  now++;
  TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &rx));
  TU_OK(sync_request_make(rx, n.r.site, &req));
  sync_txn_abort(rx);
  TU_OK(sync_txn_begin(n.r.env, SYNC_TXN_RDONLY, &tx));
  TU_RC(sync_delta_make(tx, req, NULL, &d), SYNC_ESCHEMA);
  len = sync_env_schema_export(o.r.env, NULL, 0);
  assert_true(len > 0 && (size_t)len <= sizeof buf);
  TU_RC(sync_env_schema_export(o.r.env, buf, sizeof buf), len);
  TU_OK(sync_env_schema_accept(n.r.env, buf, (size_t)len));
  TU_OK(sync_delta_make(tx, req, NULL, &d));
  sync_txn_abort(tx);
  sync_request_free(req);
  TU_OK(sync_txn_begin(o.r.env, 0, &rx));
  TU_RC(sync_delta_apply(rx, d, SYNC_APPLY_MERGE, &rep), SYNC_ESCHEMA);
  sync_txn_abort(rx);
  len = sync_env_schema_export(n.r.env, buf, sizeof buf);
  assert_true(len > 0);
  TU_RC(sync_env_schema_accept(o.r.env, buf, (size_t)len - 1), SYNC_EFORMAT);
  TU_OK(sync_env_schema_accept(o.r.env, buf, (size_t)len));
  TU_OK(sync_txn_begin(o.r.env, 0, &rx));
  TU_OK(sync_delta_apply(rx, d, SYNC_APPLY_MERGE, &rep));
  TU_OK(sync_txn_commit(rx));
  TU_U64(rep.rows, 2);
  TU_U64(rep.inserted, 1);
  TU_U64(rep.unknown, 1);
  assert_int_equal(rep.cursor_moved, 0);
  sync_delta_free(d);
  /* A schema change forgets what was accepted. */
  {
    const sync_column_def z = {"z", SYNC_INTEGER, 0};
    TU_OK(sync_env_add_column(n.r.env, 1, &z));
    TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &rx));
    TU_OK(sync_request_make(rx, n.r.site, &req));
    sync_txn_abort(rx);
    TU_OK(sync_txn_begin(n.r.env, SYNC_TXN_RDONLY, &tx));
    TU_RC(sync_delta_make(tx, req, NULL, &d), SYNC_ESCHEMA);
    sync_txn_abort(tx);
    sync_request_free(req);
  }
  rl_close(&n);
  rl_close(&o);
}

/* ---------------------------------------------------------------------
 * Bad input: an old replica receiving unknown columns of absurd count or
 * size.  Frames are built here from docs/FORMAT.md, byte by byte.
 * ------------------------------------------------------------------- */
static unsigned char *rl_wv(unsigned char *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  return p;
}

static unsigned char *rl_le64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) *p++ = (unsigned char)(v >> (8 * i));
  return p;
}

/* A frame of one live row "k" in table 0 from sender to receiver, with
 * ncols columns 0..ncols-1 (those of V1 typed as it is, y TEXT if ytext,
 * the others INTEGER holding their index) under schema hash h, all
 * written by one stamp.  Returns its length. */
static size_t rl_frame(unsigned char *out, size_t cap, const uint8_t *sender,
                       const uint8_t *receiver, uint64_t h, unsigned ncols,
                       uint64_t hlc, int ytext) {
  unsigned char *body = (unsigned char *)malloc(cap), *p = body, *q = out;
  unsigned j;
  size_t n;
  assert_non_null(body);
  *p++ = 1; /* last chunk */
  memcpy(p, sender, 16);
  p += 16;
  memcpy(p, receiver, 16);
  p += 16;
  p = rl_le64(p, h);
  *p++ = 0; /* start: log mode, version 0, seq 0 */
  p = rl_wv(p, 0);
  p = rl_wv(p, 0);
  *p++ = 0; /* end: log mode, version 1, seq 0 */
  p = rl_wv(p, 1);
  p = rl_wv(p, 0);
  p = rl_wv(p, 1); /* one site: the sender */
  memcpy(p, sender, 16);
  p += 16;
  p = rl_wv(p, hlc); /* its vector */
  p = rl_wv(p, 1);   /* one stamp group: site 0, one stamp */
  p = rl_wv(p, 0);
  p = rl_wv(p, 1);
  p = rl_wv(p, hlc);
  p = rl_wv(p, 1); /* one table: 0, ncols INTEGER columns in mode 0 */
  p = rl_wv(p, 0);
  p = rl_wv(p, ncols);
  for (j = 0; j < ncols; j++)
    *p++ = (unsigned char)(j < 4 ? j + 1 : j == RL_COL_Y && ytext ? 3 : 1);
  p = rl_wv(p, 1);    /* one row */
  p = rl_wv(p, 0x07); /* T L S */
  p = rl_wv(p, 0);    /* table 0 */
  p = rl_wv(p, 0);    /* shared */
  p = rl_wv(p, 1);    /* key length */
  *p++ = 'k';
  p = rl_wv(p, 0); /* row stamp 0 */
  for (j = 0; j < ncols; j++) {
    if (j == 1) {
      p = rl_le64(p, 0); /* REAL 0.0 */
    } else if (j == 2 || j == 3 || (j == RL_COL_Y && ytext)) {
      p = rl_wv(p, 1); /* TEXT "k", BLOB "k" */
      *p++ = 'k';
    } else {
      p = rl_wv(p, (uint64_t)j << 1); /* INTEGER j, zig-zag */
    }
  }
  *p++ = 0; /* history: not complete, no mark, no collections */
  p = rl_le64(p, 0);
  p = rl_wv(p, 0);
  p = rl_wv(p, 0);
  n = (size_t)(p - body);
  *q++ = 0xd5;
  *q++ = 'S';
  *q++ = 'Y';
  *q++ = 'N';
  *q++ = 1;
  *q++ = 1;
  *q++ = 0;
  q = rl_wv(q, n);
  assert_true((size_t)(q - out) + n + 8 <= cap);
  memcpy(q, body, n);
  q += n;
  free(body);
  q = rl_le64(q, XXH3_64bits(out, (size_t)(q - out))); /* the checksum */
  return (size_t)(q - out);
}

static int rl_feed(sync_env *env, const unsigned char *f, size_t n,
                   sync_delta **d, size_t max_frame) {
  sync_decoder *dec;
  sync_codec_opts co;
  sync_inbuf in;
  int rc;
  (void)env;
  memset(&co, 0, sizeof co);
  co.max_frame = max_frame;
  TU_OK(sync_decoder_create(NULL, &co, &dec));
  in.ptr = f;
  in.size = n;
  in.pos = 0;
  *d = NULL;
  rc = sync_decoder_feed(dec, &in, d);
  sync_decoder_free(dec);
  return rc;
}

static void test_absurd_unknown_columns(void **state) {
  uint64_t now = 1700000000000ull, h2, before, hlc = (now + 10) << 16;
  rl_rep o;
  uint8_t nsite[16];
  unsigned char *f;
  size_t cap = (size_t)1 << 16, n;
  sync_delta *d;
  sync_txn *txn;
  sync_apply_report rep;
  (void)state;
  rl_open(&o, "rl-b.db", 0xb1, &now, 1);
  rl_put(&o, "kept", 1, "one", 0, "");
  now++;
  before = rl_digest(&o);
  mu_site(nsite, 0xa1);
  /* The V2 hash, accepted as a peer's would be. */
  {
    rl_rep n2;
    unsigned char buf[1024];
    int64_t len;
    rl_open(&n2, "rl-a.db", 0xa1, &now, 2);
    TU_OK(sync_env_schema_info(n2.r.env, NULL, &h2));
    len = sync_env_schema_export(n2.r.env, buf, sizeof buf);
    TU_OK(sync_env_schema_accept(o.r.env, buf, (size_t)len));
    rl_close(&n2);
  }
  f = (unsigned char *)malloc(cap);
  assert_non_null(f);
  /* As many columns as a table may have: stored, opaque. */
  /* A value of another type than the sender's schema gives its newer
   * column (y is TEXT in V2) is refused: the old replica would keep it
   * unread and hand it to replicas that know the column. */
  n = rl_frame(f, cap, nsite, o.r.site, h2, SYNC_MAX_COLUMNS, hlc, 0);
  TU_OK(rl_feed(o.r.env, f, n, &d, 0));
  TU_OK(sync_txn_begin(o.r.env, 0, &txn));
  TU_RC(sync_delta_apply(txn, d, SYNC_APPLY_MERGE, &rep), SYNC_ETYPE);
  sync_txn_abort(txn);
  sync_delta_free(d);
  n = rl_frame(f, cap, nsite, o.r.site, h2, SYNC_MAX_COLUMNS, hlc, 1);
  TU_OK(rl_feed(o.r.env, f, n, &d, 0));
  TU_OK(sync_txn_begin(o.r.env, 0, &txn));
  TU_OK(sync_delta_apply(txn, d, SYNC_APPLY_MERGE, &rep));
  TU_OK(sync_txn_commit(txn));
  sync_delta_free(d);
  TU_U64(rep.inserted, 1);
  {
    sync_value v;
    sync_stamp st;
    unsigned char b[8];
    TU_OK(rl_column(&o, 0, "k", SYNC_MAX_COLUMNS - 1, &v, b, sizeof b, &st));
    assert_int_equal(v.i, SYNC_MAX_COLUMNS - 1);
    TU_U64(st.hlc, hlc);
  }
  /* One more column than a table may have: the decoder refuses it, and
   * nothing reaches the database. */
  n = rl_frame(f, cap, nsite, o.r.site, h2, SYNC_MAX_COLUMNS + 1, hlc + 1, 1);
  TU_RC(rl_feed(o.r.env, f, n, &d, 0), SYNC_EFORMAT);
  assert_null(d);
  /* A frame larger than the receiver accepts is refused before it is
   * buffered (bounded memory). */
  n = rl_frame(f, cap, nsite, o.r.site, h2, SYNC_MAX_COLUMNS, hlc + 2, 1);
  TU_RC(rl_feed(o.r.env, f, n, &d, 256), SYNC_ELIMIT);
  assert_null(d);
  free(f);
  /* Through a session: a newer peer's value too large for the old
   * replica's frame limit ends the session with SYNC_ELIMIT; what the old
   * replica had stays. */
  {
    rl_rep n2;
    sync_session_opts co;
    static char big[300000];
    sync_txn *t2;
    sync_value v[RL_NCOLS];
    memset(big, 'z', sizeof big - 1);
    rl_open(&n2, "rl-a.db", 0xa2, &now, 2);
    TU_OK(sync_txn_begin(n2.r.env, 0, &t2));
    v[0] = sync_int(1);
    v[1] = sync_real(1);
    v[2] = sync_text("s", 1);
    v[3] = sync_null();
    v[4] = sync_int(2);
    v[5] = sync_text(big, sizeof big - 1);
    TU_OK(sync_put(t2, 0, "huge", 4, v, RL_NCOLS));
    TU_OK(sync_txn_commit(t2));
    now++;
    memset(&co, 0, sizeof co);
    co.max_frame = 64 << 10;
    assert_int_equal(su_sync(&o.r, &n2.r, &co, NULL, NULL, NULL),
                     SYNC_ELIMIT);
    TU_OK(sync_txn_begin(o.r.env, SYNC_TXN_RDONLY, &t2));
    assert_int_equal(sync_contains(t2, 0, "kept", 4), 1);
    assert_int_equal(sync_contains(t2, 0, "huge", 4), 0);
    sync_txn_abort(t2);
    rl_close(&n2);
  }
  (void)before;
  rl_close(&o);
}

/* ---------------------------------------------------------------------
 * The mixed-version property test.  Replicas start at V1 or V2 and
 * upgrade at random moments (V1 -> V2 -> V3, or straight to V3) between
 * random writes and random sessions.  Every write happens at its own
 * millisecond of a shared clock, so its stamp orders it, and writes a
 * value no write had before (so that it always takes a stamp); the
 * model keeps
 * per (table, key, column) the last write and its stamp.  After each
 * session an old replica's columns beyond its schema must be byte for
 * byte some writer's value with that writer's stamp; at the end, with
 * everyone at V3 and synced, every replica holds the model exactly,
 * values and stamps, and all digests agree.
 * ------------------------------------------------------------------- */
#define RL_REPS 4
#define RL_KEYS 12
#define RL_TAGS 4

typedef struct rl_cell {
  int set;
  int64_t i;      /* INTEGER value, or TEXT's generating number */
  uint64_t hlc;   /* its write's stamp */
  uint8_t site;   /* the writer's site byte */
} rl_cell;

typedef struct rl_scn {
  uint64_t seed;
  rl_rep rep[RL_REPS];
  uint64_t now;
  rl_cell t[RL_KEYS][RL_NCOLS];
  rl_cell g[RL_TAGS];
  /* every write of a column beyond V1, for the relay check */
  struct {
    unsigned key, col;
    int64_t i;
    uint64_t hlc;
    uint8_t site;
  } w[4096];
  unsigned nw;
} rl_scn;

static rl_scn *rl_cur;
/* What the scenarios exercised (SYNC_TEST_VERBOSE prints it): columns
 * an old replica held beyond its schema, checked; sessions that met rows
 * of a table the receiver lacked; upgrades. */
static unsigned long rl_relayed, rl_held, rl_upgrades, rl_sessions;

static void rl_text_of(int64_t n, char *buf, size_t cap) {
  snprintf(buf, cap, "v%" PRId64, n);
}

static uint8_t rl_site_byte(unsigned r) { return (uint8_t)(0x41 + r); }

static void rl_value_of(unsigned col, int64_t n, char *buf, size_t cap,
                        sync_value *v) {
  switch (col) {
  case 0: case RL_COL_X: *v = sync_int(n); break;
  case 1: *v = sync_real((double)n / 8); break;
  case 3: rl_text_of(n, buf, cap); *v = sync_blob(buf, strlen(buf)); break;
  default: rl_text_of(n, buf, cap); *v = sync_text(buf, strlen(buf)); break;
  }
}

static void rl_scn_write(rl_scn *sc, tu_rng *g, unsigned r) {
  rl_rep *x = &sc->rep[r];
  unsigned ncols = rl_ncols(x->v), k = (unsigned)tu_below(g, RL_KEYS), c;
  char key[16], bufs[RL_NCOLS][24];
  sync_value v[RL_NCOLS];
  unsigned cols[RL_NCOLS], nc = 0;
  sync_txn *txn;
  uint64_t hlc;
  int exists;
  sc->now++;
  hlc = sc->now << 16;
  if (x->v == 3 && tu_below(g, 4) == 0) {
    unsigned t = (unsigned)tu_below(g, RL_TAGS);
    int64_t n = (int64_t)(sc->now % 1000000);
    char lb[24];
    sync_value lv;
    snprintf(key, sizeof key, "g%u", t);
    rl_text_of(n, lb, sizeof lb);
    lv = sync_text(lb, strlen(lb));
    TU_OK(sync_txn_begin(x->r.env, 0, &txn));
    TU_OK(sync_put(txn, 1, key, strlen(key), &lv, 1));
    TU_OK(sync_txn_commit(txn));
    sc->g[t].set = 1;
    sc->g[t].i = n;
    sc->g[t].hlc = hlc;
    sc->g[t].site = rl_site_byte(r);
    return;
  }
  snprintf(key, sizeof key, "k%u", k);
  TU_OK(sync_txn_begin(x->r.env, 0, &txn));
  exists = sync_contains(txn, 0, key, strlen(key));
  assert_true(exists >= 0);
  if (!exists || tu_below(g, 3) == 0) {
    for (c = 0; c < ncols; c++) cols[nc++] = c;
  } else {
    cols[nc++] = (unsigned)tu_below(g, ncols);
  }
  for (c = 0; c < nc; c++) {
    /* A value no write had before: writing a column's current value
     * again changes nothing (not even its stamp), which the model would
     * have to track per replica. */
    int64_t n = (int64_t)(sc->now % 1000000) * 8 + c - 4000;
    rl_value_of(cols[c], n, bufs[c], sizeof bufs[c], &v[c]);
    sc->t[k][cols[c]].set = 1;
    sc->t[k][cols[c]].i = n;
    sc->t[k][cols[c]].hlc = hlc;
    sc->t[k][cols[c]].site = rl_site_byte(r);
    if (cols[c] >= MU_NCOLS && sc->nw < 4096) {
      sc->w[sc->nw].key = k;
      sc->w[sc->nw].col = cols[c];
      sc->w[sc->nw].i = n;
      sc->w[sc->nw].hlc = hlc;
      sc->w[sc->nw].site = rl_site_byte(r);
      sc->nw++;
    }
  }
  if (getenv("SYNC_TEST_TRACE"))
    fprintf(stderr, "t=%" PRIu64 " r%u (V%d) %s %s col %u (%u cols)\n",
            sc->now, r, x->v, nc == ncols ? "put" : "update", key, cols[0], nc);
  if (nc == ncols)
    TU_OK(sync_put(txn, 0, key, strlen(key), v, ncols));
  else
    TU_OK(sync_update(txn, 0, key, strlen(key), cols, v, 1));
  TU_OK(sync_txn_commit(txn));
}

/* Column (key, col) of replica x against the cell: equal value bytes
 * and stamp. */
static void rl_check_cell(rl_rep *x, unsigned tid, const char *key,
                          unsigned col, const rl_cell *cell) {
  sync_value got, want;
  sync_stamp st;
  unsigned char b[64];
  char wb[24];
  uint8_t site[16];
  int rc = rl_column(x, tid, key, col, &got, b, sizeof b, &st);
  if (!cell->set) {
    TU_RC(rc, SYNC_NOTFOUND);
    return;
  }
  if (rc) fail_msg("%s: %s column %u: %s", x->r.path, key, col, sync_strerror(rc));
  if (getenv("SYNC_TEST_TRACE") && st.hlc != cell->hlc) {
    fprintf(stderr, "%s %s col %u: stamp t=%" PRIu64 ", model t=%" PRIu64 "\n",
            x->r.path, key, col, st.hlc >> 16, cell->hlc >> 16);
    return;
  }
  rl_value_of(tid ? 2 : col, cell->i, wb, sizeof wb, &want);
  if (!tu_value_equal(&got, &want))
    fail_msg("%s: %s column %u differs from the model", x->r.path, key, col);
  TU_U64(st.hlc, cell->hlc);
  mu_site(site, cell->site);
  assert_memory_equal(st.site, site, 16);
}

/* Every column an old replica holds beyond its schema is some writer's
 * write, byte for byte, with its stamp. */
static void rl_check_relay(rl_scn *sc, rl_rep *x) {
  unsigned k, col, i;
  if (x->v > 1) return;
  for (k = 0; k < RL_KEYS; k++)
    for (col = MU_NCOLS; col < RL_NCOLS; col++) {
      char key[16];
      sync_value got;
      sync_stamp st;
      unsigned char b[64];
      int found = 0;
      snprintf(key, sizeof key, "k%u", k);
      if (rl_column(x, 0, key, col, &got, b, sizeof b, &st)) continue;
      for (i = 0; i < sc->nw && !found; i++) {
        sync_value want;
        char wb[24];
        uint8_t site[16];
        if (sc->w[i].key != k || sc->w[i].col != col ||
            sc->w[i].hlc != st.hlc)
          continue;
        mu_site(site, sc->w[i].site);
        rl_value_of(col, sc->w[i].i, wb, sizeof wb, &want);
        found = !memcmp(st.site, site, 16) && tu_value_equal(&got, &want);
      }
      if (!found)
        fail_msg("%s (V1): %s column %u is no writer's value and stamp",
                 x->r.path, key, col);
      rl_relayed++;
    }
}

static void rl_scenario(rl_scn *sc) {
  tu_rng g;
  unsigned i, step, steps;
  g.s = sc->seed;
  sc->now = 1700000000000ull;
  for (i = 0; i < RL_REPS; i++) {
    char path[32];
    snprintf(path, sizeof path, "rl-p%u.db", i);
    rl_open(&sc->rep[i], path, rl_site_byte(i), &sc->now,
            tu_below(&g, 3) == 0 ? 2 : 1);
  }
  steps = 30 + (unsigned)tu_below(&g, 40);
  for (step = 0; step < steps; step++) {
    unsigned r = (unsigned)tu_below(&g, RL_REPS), roll = (unsigned)tu_below(&g, 10);
    if (roll < 5) {
      rl_scn_write(sc, &g, r);
    } else if (roll < 9) {
      unsigned s = (unsigned)tu_below(&g, RL_REPS - 1);
      sync_session_stats st;
      if (s >= r) s++;
      rl_sessions++;
      if (getenv("SYNC_TEST_TRACE"))
        fprintf(stderr, "sync r%u (V%d) <-> r%u (V%d)\n", r, sc->rep[r].v, s,
                sc->rep[s].v);
      if (rl_sync(&sc->rep[r], &sc->rep[s], &st) != 1)
        fail_msg("session %u -> %u (V%d, V%d) failed", r, s, sc->rep[r].v,
                 sc->rep[s].v);
      if (st.applied.unknown || st.peer_applied.unknown) rl_held++;
      rl_check_relay(sc, &sc->rep[r]);
      rl_check_relay(sc, &sc->rep[s]);
    } else if (sc->rep[r].v < 3) {
      rl_upgrades++;
      if (getenv("SYNC_TEST_TRACE")) fprintf(stderr, "upgrade r%u\n", r);
      rl_reopen(&sc->rep[r], tu_below(&g, 2) ? 3 : sc->rep[r].v + 1);
    }
  }
  /* Everyone upgrades; then rounds through replica 0 until all agree. */
  for (i = 0; i < RL_REPS; i++)
    if (sc->rep[i].v < 3) rl_reopen(&sc->rep[i], 3);
  for (step = 0; step < 3; step++)
    for (i = 1; i < RL_REPS; i++)
      assert_int_equal(rl_sync(&sc->rep[i], &sc->rep[0], NULL), 1);
  for (i = 0; i < RL_REPS; i++) {
    unsigned k, c;
    for (k = 0; k < RL_KEYS; k++) {
      char key[16];
      snprintf(key, sizeof key, "k%u", k);
      for (c = 0; c < RL_NCOLS; c++)
        rl_check_cell(&sc->rep[i], 0, key, c, &sc->t[k][c]);
    }
    for (k = 0; k < RL_TAGS; k++) {
      char key[16];
      snprintf(key, sizeof key, "g%u", k);
      rl_check_cell(&sc->rep[i], 1, key, 0, &sc->g[k]);
    }
    TU_U64(rl_digest(&sc->rep[i]), rl_digest(&sc->rep[0]));
  }
  for (i = 0; i < RL_REPS; i++) rl_close(&sc->rep[i]);
}

static uint64_t rl_env_u64(const char *name, uint64_t dflt) {
  const char *s = getenv(name);
  return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static int rl_prop_teardown(void **state) {
  (void)state;
  if (rl_cur) {
    unsigned i;
    fprintf(stderr,
            "FAILED rolling scenario seed 0x%016" PRIx64 "; replay with "
            "SYNC_TEST_SEED=0x%016" PRIx64 " SYNC_ROLLING_SCENARIOS=1\n",
            rl_cur->seed, rl_cur->seed);
    for (i = 0; i < RL_REPS; i++)
      if (rl_cur->rep[i].r.env) rl_close(&rl_cur->rep[i]);
    free(rl_cur);
    rl_cur = NULL;
  }
  return 0;
}

static void test_mixed_versions(void **state) {
  uint64_t base = rl_env_u64("SYNC_TEST_SEED", UINT64_C(0x5eed0015));
  uint64_t n = rl_env_u64("SYNC_ROLLING_SCENARIOS", 300), i;
  (void)state;
  for (i = 0; i < n; i++) {
    rl_cur = (rl_scn *)calloc(1, sizeof *rl_cur);
    assert_non_null(rl_cur);
    rl_cur->seed = base + i * UINT64_C(0x9E3779B97F4A7C15);
    rl_scenario(rl_cur);
    free(rl_cur);
    rl_cur = NULL;
  }
  if (getenv("SYNC_TEST_VERBOSE"))
    fprintf(stderr,
            "rolling: %lu scenarios, %lu sessions (%lu met tables the "
            "receiver lacked), %lu upgrades mid-run, %lu columns held beyond "
            "a V1 schema checked\n",
            (unsigned long)n, rl_sessions, rl_held, rl_upgrades, rl_relayed);
  assert_true(n == 0 || (rl_held > 0 && rl_relayed > 0 && rl_upgrades > 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_open_upgrades_file, rl_setup),
      cmocka_unit_test_setup(test_open_refuses_other_changes, rl_setup),
      cmocka_unit_test_setup(test_old_relay_keeps_unknown_columns, rl_setup),
      cmocka_unit_test_setup(test_digest_skips_unknown_columns, rl_setup),
      cmocka_unit_test_setup(test_unknown_table_waits_for_upgrade, rl_setup),
      cmocka_unit_test_setup(test_schemas_in_small_pieces, rl_setup),
      cmocka_unit_test_setup(test_held_rows_are_not_acknowledged, rl_setup),
      cmocka_unit_test_setup(test_incompatible_change_is_named, rl_setup),
      cmocka_unit_test_setup(test_api_accepts_compatible_schema, rl_setup),
      cmocka_unit_test_setup(test_refused_client_schema_not_kept, rl_setup),
      cmocka_unit_test_setup(test_absurd_unknown_columns, rl_setup),
      cmocka_unit_test_teardown(test_mixed_versions, rl_prop_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
