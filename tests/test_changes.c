/*
 * test_changes.c - change tracking through sync_changes_*: local
 * versions, the one-entry-per-row log, tombstones and causal lengths,
 * column stamps and bases, and the hybrid logical clock driven by an
 * injected time source.
 */
#include "testutil.h"

#define DB "t_changes.db"

#define NC 3
static const sync_column_def t_cols[] = {
    {"a", SYNC_INTEGER, 0},
    {"b", SYNC_TEXT, 0},
    {"c", SYNC_REAL, 0},
};
static const sync_column_def u_cols[] = {{"x", SYNC_INTEGER, 0}};
static const sync_table_def schema[] = {
    {"t", SYNC_TEXT, t_cols, NC},
    {"u", SYNC_TEXT, u_cols, 1},
};

#define T_MS UINT64_C(1700000000000)

typedef struct fixture {
  sync_env *env;
  tu_clock clk;
  uint8_t site[16];
} fixture;

static sync_env *open_with_clock(tu_clock *clk) {
  static tu_random rnd = {0x5A, 0, 0};
  sync_env *env;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_random(env, tu_random_fn, &rnd));
  TU_OK(sync_env_set_clock(env, tu_clock_fn, clk));
  TU_OK(sync_env_set_schema(env, schema, 2));
  TU_OK(sync_env_open(env, DB, 0));
  return env;
}

static int setup(void **state) {
  fixture *f = (fixture *)calloc(1, sizeof *f);
  tu_remove_db(DB);
  f->clk.now = T_MS;
  f->clk.step = 0;
  f->env = open_with_clock(&f->clk);
  TU_OK(sync_env_site_id(f->env, f->site));
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = (fixture *)*state;
  sync_env_close(f->env);
  free(f);
  tu_remove_db(DB);
  return 0;
}

/* One change as collected (copied out of the map). */
typedef struct chg {
  unsigned table;
  char key[32];
  uint64_t version, cl;
  sync_stamp row;
  unsigned ncolumns;
  int has[NC];
  sync_stamp st[NC], base[NC];
  sync_value val[NC]; /* INTEGER and REAL only (TEXT: type only) */
} chg;

static size_t collect_flags(sync_env *env, uint64_t since, unsigned flags,
                            chg *out, size_t cap) {
  sync_txn *txn;
  sync_changes *it;
  sync_change c;
  size_t n = 0;
  int rc;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_changes_open_flags(txn, since, flags, &it));
  while ((rc = sync_changes_next(it, &c)) == 0) {
    chg *o;
    unsigned j;
    assert_true(n < cap);
    o = &out[n++];
    memset(o, 0, sizeof *o);
    o->table = c.table;
    assert_true(c.key.len < sizeof o->key);
    memcpy(o->key, c.key.data, c.key.len);
    o->version = c.version;
    o->cl = c.causal_length;
    o->row = c.row_stamp;
    o->ncolumns = c.ncolumns;
    for (j = 0; j < NC; j++) {
      int r = sync_changes_column(it, j, &o->val[j], &o->st[j], &o->base[j]);
      if (r == SYNC_NOTFOUND) continue;
      TU_OK(r);
      o->has[j] = 1;
      if (o->val[j].type == SYNC_TEXT || o->val[j].type == SYNC_BLOB) {
        o->val[j].data = NULL;
      }
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(txn);
  return n;
}

static size_t collect(sync_env *env, uint64_t since, chg *out, size_t cap) {
  return collect_flags(env, since, 0, out, cap);
}

static const chg *find(const chg *c, size_t n, unsigned table,
                       const char *key) {
  size_t i;
  for (i = 0; i < n; i++)
    if (c[i].table == table && strcmp(c[i].key, key) == 0) return &c[i];
  fail_msg("no change for table %u key \"%s\"", table, key);
  return NULL;
}

static void put(sync_txn *txn, const char *key, int64_t a, const char *b,
                double c) {
  sync_value v[NC];
  v[0] = sync_int(a);
  v[1] = b ? sync_text(b, strlen(b)) : sync_null();
  v[2] = sync_real(c);
  TU_OK(sync_put(txn, 0, key, strlen(key), v, NC));
}

static void commit_put(sync_env *env, const char *key, int64_t a) {
  sync_txn *txn;
  TU_OK(sync_txn_begin(env, 0, &txn));
  put(txn, key, a, "b", 1.0);
  TU_OK(sync_txn_commit(txn));
}

static void update_a(sync_env *env, const char *key, int64_t a) {
  sync_txn *txn;
  unsigned col = 0;
  sync_value v = sync_int(a);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_update(txn, 0, key, strlen(key), &col, &v, 1));
  TU_OK(sync_txn_commit(txn));
}

static uint64_t last_version(sync_env *env) {
  sync_txn *txn;
  uint64_t v;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  v = sync_txn_version(txn);
  sync_txn_abort(txn);
  return v;
}

static int stamp_eq(const sync_stamp *a, const sync_stamp *b) {
  return a->hlc == b->hlc && memcmp(a->site, b->site, 16) == 0;
}

/* ------------------------------------------------------------------ */

static void test_rows_of_one_txn_share_version_one_and_stamp(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  chg c[8];
  size_t n, i;
  unsigned j;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "r1", 1, "x", 0.5);
  put(txn, "r2", 2, NULL, 1.5);
  put(txn, "r3", 3, "z", 2.5);
  TU_OK(sync_txn_commit(txn));
  n = collect(f->env, 0, c, 8);
  assert_int_equal(n, 3);
  for (i = 0; i < n; i++) {
    assert_int_equal(c[i].table, 0);
    TU_U64(c[i].version, 1);
    TU_U64(c[i].cl, 1);
    assert_int_equal(c[i].ncolumns, NC);
    assert_true(stamp_eq(&c[i].row, &c[0].row));
    assert_memory_equal(c[i].row.site, f->site, 16);
    for (j = 0; j < NC; j++) {
      assert_true(c[i].has[j]);
      assert_true(stamp_eq(&c[i].st[j], &c[0].row));
      TU_U64(c[i].base[j].hlc, 0);
    }
  }
  assert_true(find(c, n, 0, "r2")->val[0].i == 2);
  assert_int_equal(find(c, n, 0, "r2")->val[1].type, SYNC_NULL);
  assert_true(find(c, n, 0, "r3")->val[2].r == 2.5);
  TU_U64(last_version(f->env), 1);
}

static void test_next_txn_takes_version_two(void **state) {
  fixture *f = (fixture *)*state;
  chg c[8];
  size_t n;
  commit_put(f->env, "r1", 1);
  commit_put(f->env, "r2", 2);
  n = collect(f->env, 0, c, 8);
  assert_int_equal(n, 2);
  TU_U64(find(c, n, 0, "r1")->version, 1);
  TU_U64(find(c, n, 0, "r2")->version, 2);
  /* In version order. */
  assert_string_equal(c[0].key, "r1");
  assert_string_equal(c[1].key, "r2");
  assert_true(c[1].row.hlc > c[0].row.hlc);
  TU_U64(last_version(f->env), 2);
}

static void test_changed_row_is_listed_once_at_latest_version(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  chg c[8];
  size_t n;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "r1", 1, "x", 0.5);
  put(txn, "r2", 2, "y", 1.5);
  put(txn, "r3", 3, "z", 2.5);
  TU_OK(sync_txn_commit(txn));
  update_a(f->env, "r2", 20);
  update_a(f->env, "r2", 200);
  n = collect(f->env, 0, c, 8);
  assert_int_equal(n, 3);
  TU_U64(find(c, n, 0, "r1")->version, 1);
  TU_U64(find(c, n, 0, "r3")->version, 1);
  TU_U64(find(c, n, 0, "r2")->version, 3);
  assert_true(find(c, n, 0, "r2")->val[0].i == 200);
  assert_string_equal(c[2].key, "r2"); /* last in version order */
  n = collect(f->env, 1, c, 8);
  assert_int_equal(n, 1);
  assert_string_equal(c[0].key, "r2");
  n = collect(f->env, 3, c, 8);
  assert_int_equal(n, 0);
}

static void test_changes_since_n_lists_only_later_versions(void **state) {
  fixture *f = (fixture *)*state;
  static const char *keys[] = {"v1", "v2", "v3", "v4", "v5"};
  chg c[8];
  size_t n, i;
  uint64_t since;
  for (i = 0; i < 5; i++) commit_put(f->env, keys[i], (int64_t)i);
  for (since = 0; since <= 5; since++) {
    n = collect(f->env, since, c, 8);
    assert_int_equal(n, 5 - since);
    for (i = 0; i < n; i++) {
      TU_U64(c[i].version, since + 1 + i);
      assert_string_equal(c[i].key, keys[since + i]);
    }
  }
  n = collect(f->env, 1000, c, 8);
  assert_int_equal(n, 0);
}

static void test_changes_cover_every_table(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  sync_value x = sync_int(77);
  chg c[8];
  size_t n;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "same", 1, "t", 1.0);
  TU_OK(sync_put(txn, 1, "same", 4, &x, 1));
  TU_OK(sync_txn_commit(txn));
  n = collect(f->env, 0, c, 8);
  assert_int_equal(n, 2);
  assert_true(find(c, n, 0, "same")->val[0].i == 1);
  assert_true(find(c, n, 1, "same")->val[0].i == 77);
  assert_int_equal(find(c, n, 1, "same")->ncolumns, 1);
  assert_true(stamp_eq(&c[0].row, &c[1].row));
}

static void
test_delete_is_a_tombstone_and_reinsert_makes_it_live(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  sync_changes *it;
  sync_change ch;
  chg c[8];
  size_t n;
  sync_stamp del;
  unsigned j;
  commit_put(f->env, "k", 1);
  commit_put(f->env, "other", 2);
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  TU_OK(sync_delete(txn, 0, "k", 1));
  TU_OK(sync_txn_commit(txn));

  n = collect(f->env, 0, c, 8);
  assert_int_equal(n, 2);
  TU_U64(find(c, n, 0, "k")->cl, 2);
  TU_U64(find(c, n, 0, "k")->version, 3);
  assert_int_equal(find(c, n, 0, "k")->ncolumns, 0);
  for (j = 0; j < NC; j++) assert_false(find(c, n, 0, "k")->has[j]);
  del = find(c, n, 0, "k")->row;
  assert_true(del.hlc > find(c, n, 0, "other")->row.hlc);
  /* sync_changes_column on a tombstone: SYNC_NOTFOUND. */
  TU_OK(sync_txn_begin(f->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_changes_open(txn, 2, &it));
  TU_OK(sync_changes_next(it, &ch));
  assert_int_equal(ch.key.len, 1);
  TU_RC(sync_changes_column(it, 0, NULL, NULL, NULL), SYNC_NOTFOUND);
  TU_RC(sync_changes_next(it, &ch), SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(txn);

  /* Re-insert: odd again, with the new values and a new stamp. */
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "k", 9, "new", 9.0);
  TU_OK(sync_txn_commit(txn));
  n = collect(f->env, 0, c, 8);
  assert_int_equal(n, 2);
  TU_U64(find(c, n, 0, "k")->cl, 3);
  TU_U64(find(c, n, 0, "k")->version, 4);
  assert_int_equal(find(c, n, 0, "k")->ncolumns, NC);
  assert_true(find(c, n, 0, "k")->row.hlc > del.hlc);
  assert_true(find(c, n, 0, "k")->val[0].i == 9);
  for (j = 0; j < NC; j++) {
    assert_true(find(c, n, 0, "k")->has[j]);
    assert_true(stamp_eq(&find(c, n, 0, "k")->st[j], &find(c, n, 0, "k")->row));
  }
  /* Delete again: 4. */
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  TU_OK(sync_delete(txn, 0, "k", 1));
  TU_OK(sync_txn_commit(txn));
  n = collect(f->env, 0, c, 8);
  TU_U64(find(c, n, 0, "k")->cl, 4);
}

static void test_updated_column_gets_new_stamp_with_old_as_base(void **state) {
  fixture *f = (fixture *)*state;
  chg c[4];
  size_t n;
  sync_stamp s1;
  commit_put(f->env, "k", 1);
  n = collect(f->env, 0, c, 4);
  s1 = c[0].row;
  f->clk.now = T_MS + 1000; /* a later millisecond for txn 2 */
  update_a(f->env, "k", 2);
  n = collect(f->env, 0, c, 4);
  assert_int_equal(n, 1);
  TU_U64(c[0].version, 2);
  /* Column a: txn 2's stamp, based on txn 1's. */
  TU_U64(c[0].st[0].hlc, (T_MS + 1000) << 16);
  assert_memory_equal(c[0].st[0].site, f->site, 16);
  assert_true(stamp_eq(&c[0].base[0], &s1));
  assert_true(c[0].val[0].i == 2);
  /* Untouched columns keep txn 1's stamp and no base. */
  assert_true(stamp_eq(&c[0].st[1], &s1));
  assert_true(stamp_eq(&c[0].st[2], &s1));
  TU_U64(c[0].base[1].hlc, 0);
  TU_U64(c[0].base[2].hlc, 0);
  /* The row stamp is the insert's. */
  assert_true(stamp_eq(&c[0].row, &s1));

  /* Another update of a: base is now txn 2's stamp. */
  f->clk.now = T_MS + 2000;
  update_a(f->env, "k", 3);
  n = collect(f->env, 0, c, 4);
  TU_U64(c[0].version, 3);
  TU_U64(c[0].st[0].hlc, (T_MS + 2000) << 16);
  TU_U64(c[0].base[0].hlc, (T_MS + 1000) << 16);
}

static void test_put_restamps_only_changed_columns(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  chg c[4];
  sync_stamp s1;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "k", 1, "same", 0.25);
  TU_OK(sync_txn_commit(txn));
  collect(f->env, 0, c, 4);
  s1 = c[0].row;
  f->clk.now = T_MS + 500;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "k", 1, "different", 0.25);
  TU_OK(sync_txn_commit(txn));
  assert_int_equal(collect(f->env, 0, c, 4), 1);
  TU_U64(c[0].version, 2);
  assert_true(stamp_eq(&c[0].st[0], &s1));
  assert_true(stamp_eq(&c[0].st[2], &s1));
  TU_U64(c[0].st[1].hlc, (T_MS + 500) << 16);
  assert_true(stamp_eq(&c[0].base[1], &s1));
  TU_U64(c[0].base[0].hlc, 0);
}

static void test_write_changing_nothing_takes_no_version(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  chg c[4];
  sync_stamp s1;
  unsigned cols[2] = {0, 2};
  sync_value vals[2];
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "k", 1, "b", -0.0);
  TU_OK(sync_txn_commit(txn));
  collect(f->env, 0, c, 4);
  s1 = c[0].row;
  /* The same row again, and an update to the same values. */
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "k", 1, "b", -0.0);
  vals[0] = sync_int(1);
  vals[1] = sync_real(-0.0);
  TU_OK(sync_update(txn, 0, "k", 1, cols, vals, 2));
  TU_OK(sync_txn_commit(txn));
  TU_U64(last_version(f->env), 1);
  assert_int_equal(collect(f->env, 0, c, 4), 1);
  TU_U64(c[0].version, 1);
  assert_true(stamp_eq(&c[0].st[0], &s1));
  assert_true(stamp_eq(&c[0].st[2], &s1));
  assert_int_equal(collect(f->env, 1, c, 4), 0);
  /* REAL is compared by bits: +0.0 differs from -0.0. */
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "k", 1, "b", 0.0);
  TU_OK(sync_txn_commit(txn));
  TU_U64(last_version(f->env), 2);
  assert_int_equal(collect(f->env, 0, c, 4), 1);
  assert_true(stamp_eq(&c[0].st[0], &s1));
  assert_false(stamp_eq(&c[0].st[2], &s1));
}

static void test_empty_txns_take_no_version(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  sync_value bad[NC];
  chg c[4];
  TU_OK(sync_txn_begin(f->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  TU_OK(sync_txn_commit(txn));
  /* A write that failed validation changed nothing. */
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  bad[0] = sync_text("no", 2);
  bad[1] = sync_null();
  bad[2] = sync_null();
  TU_RC(sync_put(txn, 0, "k", 1, bad, NC), SYNC_ETYPE);
  TU_RC(sync_delete(txn, 0, "k", 1), SYNC_NOTFOUND);
  TU_OK(sync_txn_commit(txn));
  /* An aborted write txn. */
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  put(txn, "gone", 1, NULL, 0);
  sync_txn_abort(txn);
  TU_U64(last_version(f->env), 0);
  assert_int_equal(collect(f->env, 0, c, 4), 0);
  commit_put(f->env, "k", 1);
  TU_U64(last_version(f->env), 1);
  assert_int_equal(collect(f->env, 0, c, 4), 1);
  TU_U64(c[0].version, 1);
}

static void test_txn_version_reports_last_committed(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *w, *r;
  TU_U64(last_version(f->env), 0);
  commit_put(f->env, "a", 1);
  commit_put(f->env, "b", 1);
  TU_OK(sync_txn_begin(f->env, 0, &w));
  TU_U64(sync_txn_version(w), 2);
  put(w, "c", 1, NULL, 0);
  TU_U64(sync_txn_version(w), 2); /* before its own changes */
  TU_OK(sync_txn_begin(f->env, SYNC_TXN_RDONLY, &r));
  TU_OK(sync_txn_commit(w));
  TU_U64(sync_txn_version(r), 2); /* the snapshot's */
  sync_txn_abort(r);
  TU_U64(last_version(f->env), 3);
  /* And it survives a reopen. */
  sync_env_close(f->env);
  f->env = open_with_clock(&f->clk);
  TU_U64(last_version(f->env), 3);
  commit_put(f->env, "d", 1);
  TU_U64(last_version(f->env), 4);
}

/* Rows rewritten many times leave thousands of stale log entries that
 * the log compacts away; the log must still list each row once, at its
 * latest version, also to a reader holding an older snapshot. */
static void test_log_lists_each_row_once_after_many_rewrites(void **state) {
  enum { ROWS = 100, ROUNDS = 40 };
  fixture *f = (fixture *)*state;
  static chg c[ROWS + 1];
  sync_txn *txn, *old;
  sync_changes *it;
  sync_change ch;
  char key[16];
  int round, i, seen[ROWS];
  size_t n;
  uint64_t v_old = 0, cnt;
  for (round = 0; round < ROUNDS; round++) {
    TU_OK(sync_txn_begin(f->env, 0, &txn));
    for (i = 0; i < ROWS; i++) {
      /* Row i is rewritten in rounds where round % (1 + i % 4) == 0. */
      if (round % (1 + i % 4)) continue;
      sprintf(key, "row%03d", i);
      put(txn, key, round, "v", (double)i);
    }
    TU_OK(sync_txn_commit(txn));
    if (round == ROUNDS / 2) {
      TU_OK(sync_txn_begin(f->env, SYNC_TXN_RDONLY, &old));
      v_old = sync_txn_version(old);
    }
  }
  TU_U64(last_version(f->env), ROUNDS);
  n = collect(f->env, 0, c, ROWS + 1);
  assert_int_equal(n, ROWS);
  memset(seen, 0, sizeof seen);
  for (i = 0; i < (int)n; i++) {
    int k = atoi(c[i].key + 3), last = ROUNDS - 1;
    while (last % (1 + k % 4)) last--;
    assert_false(seen[k]);
    seen[k] = 1;
    TU_U64(c[i].version, (uint64_t)last + 1);
    assert_true(c[i].val[0].i == last);
    if (i) assert_true(c[i].version >= c[i - 1].version);
  }
  /* The snapshot taken halfway still lists each row once, as it was. */
  TU_OK(sync_changes_open(old, 0, &it));
  cnt = 0;
  memset(seen, 0, sizeof seen);
  while (sync_changes_next(it, &ch) == 0) {
    char kb[8];
    int k;
    memcpy(kb, (const char *)ch.key.data + 3, 3);
    kb[3] = 0;
    k = atoi(kb);
    assert_false(seen[k]);
    seen[k] = 1;
    assert_true(ch.version <= v_old);
    cnt++;
  }
  sync_changes_close(it);
  TU_U64(cnt, ROWS);
  sync_txn_abort(old);
  /* And after a reopen. */
  sync_env_close(f->env);
  f->env = open_with_clock(&f->clk);
  assert_int_equal(collect(f->env, 0, c, ROWS + 1), ROWS);
  /* Version ROUNDS is the last round: rows with (ROUNDS-1) % (1+i%4) == 0
   * (i % 4 == 0 or 2 for 40 rounds). */
  assert_int_equal(collect(f->env, ROUNDS - 1, c, ROWS + 1), ROWS / 2);
}

static void test_hlc_is_clock_ms_and_counter(void **state) {
  fixture *f = (fixture *)*state;
  static const char *keys[] = {"h0", "h1", "h2", "h3"};
  chg c[8];
  size_t i;
  /* A clock stuck at T: the counter counts transactions. */
  for (i = 0; i < 4; i++) commit_put(f->env, keys[i], 0);
  assert_int_equal(collect(f->env, 0, c, 8), 4);
  for (i = 0; i < 4; i++) {
    TU_U64(c[i].row.hlc >> 16, T_MS);
    if (i) TU_U64(c[i].row.hlc, c[i - 1].row.hlc + 1);
  }
  TU_U64(c[0].row.hlc, T_MS << 16);
  /* The clock moves on: the counter starts again. */
  f->clk.now = T_MS + 7;
  commit_put(f->env, "h4", 0);
  assert_int_equal(collect(f->env, 4, c, 8), 1);
  TU_U64(c[0].row.hlc, (T_MS + 7) << 16);
}

static void test_hlc_increases_when_clock_goes_backwards(void **state) {
  fixture *f = (fixture *)*state;
  chg c[8];
  uint64_t h1, h2, h3;
  commit_put(f->env, "a", 0);
  assert_int_equal(collect(f->env, 0, c, 8), 1);
  h1 = c[0].row.hlc;
  f->clk.now = T_MS - 60000; /* a minute back */
  commit_put(f->env, "b", 0);
  assert_int_equal(collect(f->env, 1, c, 8), 1);
  h2 = c[0].row.hlc;
  assert_true(h2 > h1);
  TU_U64(h2 >> 16, T_MS);
  /* Also across a reopen, with the clock further back. */
  sync_env_close(f->env);
  f->clk.now = T_MS - 3600000;
  f->env = open_with_clock(&f->clk);
  commit_put(f->env, "c", 0);
  assert_int_equal(collect(f->env, 2, c, 8), 1);
  h3 = c[0].row.hlc;
  assert_true(h3 > h2);
}

static void test_stamps_carry_the_env_site_id(void **state) {
  fixture *f = (fixture *)*state;
  chg c[4];
  size_t i;
  unsigned j;
  commit_put(f->env, "a", 0);
  update_a(f->env, "a", 5);
  assert_int_equal(collect(f->env, 0, c, 4), 1);
  assert_memory_equal(c[0].row.site, f->site, 16);
  for (j = 0; j < NC; j++) assert_memory_equal(c[0].st[j].site, f->site, 16);
  assert_memory_equal(c[0].base[0].site, f->site, 16);
  for (i = 0; i < 16; i++)
    assert_int_equal(f->site[i], tu_random_byte(0x5A, i));
}

static void test_clock_is_read_through_the_callback(void **state) {
  fixture *f = (fixture *)*state;
  unsigned long before = f->clk.calls;
  commit_put(f->env, "a", 0);
  assert_true(f->clk.calls > before);
}

/* ---- SYNC_CHANGES_UNORDERED ---------------------------------------- */

#define UN_T 600 /* rows of table t */
#define UN_U 100 /* rows of table u */

static void un_key(char *k, size_t cap, int i) { snprintf(k, cap, "k%04d", i); }

/* n distinct row numbers in a shuffled order (a fixed LCG). */
static void un_shuffle(int *p, int n, uint32_t seed) {
  int i;
  for (i = 0; i < n; i++) p[i] = i;
  for (i = n - 1; i > 0; i--) {
    int j, t;
    seed = seed * 1103515245u + 12345u;
    j = (int)((seed >> 8) % (uint32_t)(i + 1));
    t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* Table t's rows inserted in a shuffled order, 50 a transaction, and
 * u's; then updates and deletes in both, some of them in transactions of
 * their own.  Returns the version after the inserts. */
static uint64_t un_fill(sync_env *env) {
  int order[UN_T], i;
  uint64_t mid;
  char key[16];
  sync_txn *txn = NULL;
  un_shuffle(order, UN_T, 7);
  for (i = 0; i < UN_T; i++) {
    if (i % 50 == 0) TU_OK(sync_txn_begin(env, 0, &txn));
    un_key(key, sizeof key, order[i]);
    put(txn, key, order[i], "b", 0.5 * order[i]);
    if (i % 50 == 49) TU_OK(sync_txn_commit(txn));
  }
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < UN_U; i++) {
    sync_value v = sync_int(i);
    un_key(key, sizeof key, UN_U - 1 - i);
    TU_OK(sync_put(txn, 1, key, strlen(key), &v, 1));
  }
  TU_OK(sync_txn_commit(txn));
  mid = last_version(env);
  TU_OK(sync_txn_begin(env, 0, &txn));
  for (i = 0; i < 120; i++) { /* an update of every fifth row */
    un_key(key, sizeof key, order[i * 5]);
    put(txn, key, -order[i * 5], NULL, 1.5);
  }
  for (i = 0; i < 30; i++) { /* tombstones */
    un_key(key, sizeof key, order[i * 7 + 1]);
    TU_OK(sync_delete(txn, 0, key, strlen(key)));
  }
  un_key(key, sizeof key, 3);
  TU_OK(sync_delete(txn, 1, key, strlen(key)));
  TU_OK(sync_txn_commit(txn));
  un_key(key, sizeof key, order[2]); /* two small transactions last */
  update_a(env, key, 77);
  un_key(key, sizeof key, order[3]);
  update_a(env, key, 78);
  return mid;
}

static int chg_same(const chg *a, const chg *b) {
  unsigned j;
  if (a->table != b->table || strcmp(a->key, b->key) ||
      a->version != b->version || a->cl != b->cl ||
      !stamp_eq(&a->row, &b->row) || a->ncolumns != b->ncolumns)
    return 0;
  for (j = 0; j < NC; j++) {
    if (a->has[j] != b->has[j]) return 0;
    if (!a->has[j]) continue;
    if (!stamp_eq(&a->st[j], &b->st[j]) || !stamp_eq(&a->base[j], &b->base[j]) ||
        a->val[j].type != b->val[j].type)
      return 0;
    if (a->val[j].type == SYNC_INTEGER && a->val[j].i != b->val[j].i) return 0;
    if (a->val[j].type == SYNC_REAL && a->val[j].r != b->val[j].r) return 0;
  }
  return 1;
}

/* (table, key) order: tables by id, keys as bytes, a prefix first. */
static int in_key_order(const chg *c, size_t n) {
  size_t i;
  for (i = 1; i < n; i++)
    if (c[i - 1].table > c[i].table ||
        (c[i - 1].table == c[i].table && strcmp(c[i - 1].key, c[i].key) >= 0))
      return 0;
  return 1;
}

/* Every row of a, each once, is in b with the same content. */
static void assert_same_set(const chg *a, size_t na, const chg *b, size_t nb) {
  size_t i, j;
  assert_int_equal(na, nb);
  for (i = 0; i < na; i++) {
    int hits = 0;
    for (j = 0; j < nb; j++)
      if (b[j].table == a[i].table && !strcmp(b[j].key, a[i].key)) {
        if (!chg_same(&a[i], &b[j]))
          fail_msg("table %u key %s differs between the two reads",
                   a[i].table, a[i].key);
        hits++;
      }
    assert_int_equal(hits, 1);
  }
}

static void test_unordered_lists_the_rows_version_order_lists(void **state) {
  fixture *f = (fixture *)*state;
  const size_t cap = UN_T + UN_U + 8;
  chg *ord = (chg *)calloc(cap, sizeof *ord), *un = (chg *)calloc(cap, sizeof *un);
  uint64_t mid, last;
  size_t no, nu;
  mid = un_fill(f->env);
  last = last_version(f->env);
  /* Since 0, every row: a scan, in key order, where version order is
   * the shuffled insert order. */
  no = collect_flags(f->env, 0, 0, ord, cap);
  nu = collect_flags(f->env, 0, SYNC_CHANGES_UNORDERED, un, cap);
  assert_int_equal(no, UN_T + UN_U);
  assert_same_set(ord, no, un, nu);
  assert_false(in_key_order(ord, no));
  assert_true(in_key_order(un, nu));
  /* Since the inserts: about 150 rows of t (some updated, then deleted)
   * and one of u, a share that scans. */
  no = collect_flags(f->env, mid, 0, ord, cap);
  nu = collect_flags(f->env, mid, SYNC_CHANGES_UNORDERED, un, cap);
  assert_true(no > 120 && no * 16 >= UN_T + UN_U);
  assert_false(in_key_order(ord, no));
  assert_same_set(ord, no, un, nu);
  assert_true(in_key_order(un, nu));
  /* The last two versions: two rows, one in 350: version order. */
  no = collect_flags(f->env, last - 2, 0, ord, cap);
  nu = collect_flags(f->env, last - 2, SYNC_CHANGES_UNORDERED, un, cap);
  assert_int_equal(no, 2);
  assert_int_equal(nu, 2);
  assert_true(chg_same(&ord[0], &un[0]) && chg_same(&ord[1], &un[1]));
  assert_true(un[0].version < un[1].version);
  /* Nothing after the last, and nothing after UINT64_MAX. */
  assert_int_equal(collect_flags(f->env, last, SYNC_CHANGES_UNORDERED, un, cap), 0);
  assert_int_equal(
      collect_flags(f->env, UINT64_MAX, SYNC_CHANGES_UNORDERED, un, cap), 0);
  free(ord);
  free(un);
}

static void test_unordered_scan_takes_writes_ahead_of_it(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  sync_changes *it;
  sync_change c;
  char key[16], seen[UN_T + 8][8];
  int i, n = 0, rc, j;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  for (i = 0; i < 300; i++) {
    un_key(key, sizeof key, i);
    put(txn, key, i, "b", 1.0);
  }
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  TU_OK(sync_changes_open_flags(txn, 0, SYNC_CHANGES_UNORDERED, &it));
  assert_int_equal(sync_changes_open_flags(txn, 0, 0x2, &(sync_changes *){0}),
                   SYNC_EINVAL);
  while ((rc = sync_changes_next(it, &c)) == 0) {
    assert_true(c.key.len < sizeof seen[0] && n < UN_T + 8);
    memcpy(seen[n], c.key.data, c.key.len);
    seen[n][c.key.len] = 0;
    n++;
    if (!strcmp(seen[n - 1], "k0150")) {
      /* Behind the scan: not listed (again); ahead of it: listed. */
      put(txn, "k0001x", 1, "b", 1.0);
      put(txn, "k0010", -10, "b", 1.0);
      put(txn, "k0200x", 200, "b", 1.0);
      put(txn, "k0250", -250, "b", 1.0);
      TU_OK(sync_delete(txn, 0, "k0151", 5));
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(txn);
  assert_int_equal(n, 301);
  for (i = 1; i < n; i++) assert_true(strcmp(seen[i - 1], seen[i]) < 0);
  for (i = 0, j = 0; i < n; i++) {
    assert_true(strcmp(seen[i], "k0001x") != 0);
    if (!strcmp(seen[i], "k0200x") || !strcmp(seen[i], "k0151")) j++;
  }
  assert_int_equal(j, 2); /* k0151 as a tombstone */
}

/* The log keeps its last record in the transaction until it is read or
 * committed: a reader in the writing transaction sees every entry, also
 * those written after it opened, and the commit keeps them all. */
static void test_log_order_reads_its_own_transaction(void **state) {
  fixture *f = (fixture *)*state;
  sync_txn *txn;
  sync_changes *it;
  sync_change c;
  char key[16];
  int i, n = 0, rc;
  TU_OK(sync_txn_begin(f->env, 0, &txn));
  for (i = 0; i < 3000; i++) {
    un_key(key, sizeof key, i);
    put(txn, key, i, "b", 1.0);
  }
  TU_OK(sync_changes_open(txn, 0, &it));
  while ((rc = sync_changes_next(it, &c)) == 0) {
    un_key(key, sizeof key, n);
    assert_int_equal(c.key.len, strlen(key));
    assert_memory_equal(c.key.data, key, c.key.len);
    n++;
    /* Written behind the reader's place in the log: listed at the end. */
    if (n == 2000 || n == 3001) {
      un_key(key, sizeof key, n == 2000 ? 3000 : 3001);
      put(txn, key, 0, "c", 2.0);
    }
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  assert_int_equal(n, 3002);
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(f->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_changes_open(txn, 0, &it));
  for (n = 0; (rc = sync_changes_next(it, &c)) == 0; n++) {
    un_key(key, sizeof key, n);
    assert_memory_equal(c.key.data, key, c.key.len);
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(txn);
  assert_int_equal(n, 3002);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_rows_of_one_txn_share_version_one_and_stamp),
      T(test_next_txn_takes_version_two),
      T(test_changed_row_is_listed_once_at_latest_version),
      T(test_changes_since_n_lists_only_later_versions),
      T(test_changes_cover_every_table),
      T(test_delete_is_a_tombstone_and_reinsert_makes_it_live),
      T(test_updated_column_gets_new_stamp_with_old_as_base),
      T(test_put_restamps_only_changed_columns),
      T(test_write_changing_nothing_takes_no_version),
      T(test_empty_txns_take_no_version),
      T(test_txn_version_reports_last_committed),
      T(test_log_lists_each_row_once_after_many_rewrites),
      T(test_hlc_is_clock_ms_and_counter),
      T(test_hlc_increases_when_clock_goes_backwards),
      T(test_stamps_carry_the_env_site_id),
      T(test_clock_is_read_through_the_callback),
      T(test_unordered_lists_the_rows_version_order_lists),
      T(test_unordered_scan_takes_writes_ahead_of_it),
      T(test_log_order_reads_its_own_transaction),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
