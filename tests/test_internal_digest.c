/*
 * test_internal_digest.c - the fingerprint sums kept at commit (the O(1)
 * digest, docs/FORMAT.md "Fingerprints" and "Digest") always equal a full
 * recomputation.  White-box: the recomputation is this file's own scan of
 * a table's stored rows through sx_row_fp, compared with sx_table_sum (the
 * stored record plus the open transaction's changes) after random local
 * writes, aborted transactions, merges with conflicts and resolvers, dry
 * runs, tombstone collection and schema changes.  Also: the upgrade of a
 * format-1 file, made by writing format 1's record shapes with LMDB.
 *
 * SYNC_TEST_SEED=N runs the property test with that one seed.
 */
#include "merge_util.h"

#include <lmdb.h>
#include <time.h>

#include "reject.h"

/* ---------------------------------------------------------------------
 * The reference: scan every stored row of a table.
 * ------------------------------------------------------------------- */
static void scan_sum(sync_txn *x, unsigned tid, sx_tsum *out) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  sx_row r;
  int rc, op = SX_FIRST;
  memset(out, 0, sizeof *out);
  assert_int_equal(sx_row_init(&env->al, &r, SYNC_MAX_COLUMNS), 0);
  TU_OK(sx_cur_open(env->st, x->t, env->tdbi[tid], &c));
  for (;;) {
    uint64_t hc = 1, hm = 1;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) break;
    TU_OK(rc);
    TU_OK(sx_row_decode(v.p, v.n, k.p, k.n, &r));
    rc = sx_row_fp(x, tid, k.p, k.n, &r, &hc, &hm);
    assert_int_equal(rc, (int)(r.cl & 1));
    /* Tombstones count in the meta sum and the row count only. */
    out->meta += hm;
    out->rows++;
    if (!rc) {
      assert_true(hc == 0 && hm != 0);
      continue;
    }
    out->content += hc;
    out->live++;
  }
  sx_cur_close(c);
  sx_row_free(&env->al, &r);
}

static unsigned g_seed;
static int g_step;

/* Every table's stored sums against the scan, inside x. */
static void check_txn(sync_txn *x, const char *what) {
  unsigned tid;
  for (tid = 0; tid < x->env->schema->ntables; tid++) {
    sx_tsum a, b;
    uint64_t n = 0;
    TU_OK(sx_table_sum(x, tid, &a));
    scan_sum(x, tid, &b);
    TU_OK(sync_count(x, tid, &n));
    if (a.content != b.content || a.meta != b.meta || a.live != b.live ||
        a.rows != b.rows || n != b.live)
      fail_msg("seed %u step %d (%s): table %u: stored sums content %016llx "
               "meta %016llx live %llu rows %llu (count %llu), a scan gives "
               "%016llx %016llx %llu %llu",
               g_seed, g_step, what, tid, (unsigned long long)a.content,
               (unsigned long long)a.meta, (unsigned long long)a.live,
               (unsigned long long)a.rows, (unsigned long long)n,
               (unsigned long long)b.content, (unsigned long long)b.meta,
               (unsigned long long)b.live, (unsigned long long)b.rows);
  }
}

static void check_rep(mu_rep *r, const char *what) {
  sync_txn *x;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  check_txn(x, what);
  sync_txn_abort(x);
}

static sx_tsum sums_of(mu_rep *r) {
  sync_txn *x;
  sx_tsum s;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sx_table_sum(x, 0, &s));
  sync_txn_abort(x);
  return s;
}

static void same_sums(const sx_tsum *a, const sx_tsum *b, const char *what) {
  if (a->content != b->content || a->meta != b->meta || a->live != b->live ||
      a->rows != b->rows)
    fail_msg("seed %u step %d (%s): sums changed (%016llx %016llx %llu -> "
             "%016llx %016llx %llu)",
             g_seed, g_step, what, (unsigned long long)a->content,
             (unsigned long long)a->meta, (unsigned long long)a->live,
             (unsigned long long)b->content, (unsigned long long)b->meta,
             (unsigned long long)b->live);
}

/* ---------------------------------------------------------------------
 * Random writes (to however many columns the replica's table has now).
 * ------------------------------------------------------------------- */
#define NKEYS 24
#define NREPS 3

static unsigned ncols_of(mu_rep *r) {
  sync_table_def d;
  TU_OK(sync_env_table_def(r->env, 0, &d));
  return d.ncolumns;
}

static const char *const texts[] = {"", "ok", "warn", "fault", "a longer text"};
static const unsigned char blobs[] = {0, 1, 2, 0xfe, 0xff, 7, 7, 7};

static sync_value rand_value(tu_rng *g, unsigned col) {
  if (tu_below(g, 5) == 0) return sync_null();
  switch (col) {
  case MU_COL_I: return sync_int((int64_t)tu_below(g, 5) - 2);
  case MU_COL_R: return sync_real((double)tu_below(g, 4) / 4.0);
  case MU_COL_S: {
    const char *s = texts[tu_below(g, 5)];
    return sync_text(s, strlen(s));
  }
  case MU_COL_B: return sync_blob(blobs, (size_t)tu_below(g, sizeof blobs));
  default: return sync_int((int64_t)tu_below(g, 3)); /* added columns */
  }
}

static void key_of(unsigned k, char *out) { snprintf(out, 8, "k%02u", k); }

/* One random put, update or delete in x; returns nothing, tolerates the
 * row's absence (NOTFOUND). */
static void rand_write(tu_rng *g, sync_txn *x, unsigned ncols) {
  char key[8];
  sync_value v[SYNC_MAX_COLUMNS];
  unsigned c, op = (unsigned)tu_below(g, 10);
  int rc;
  key_of((unsigned)tu_below(g, NKEYS), key);
  if (op < 4) { /* put: insert, overwrite or re-insert */
    for (c = 0; c < ncols; c++) v[c] = rand_value(g, c);
    TU_OK(sync_put(x, 0, key, strlen(key), v, ncols));
  } else if (op < 8) {
    c = (unsigned)tu_below(g, ncols);
    v[0] = rand_value(g, c);
    rc = sync_update(x, 0, key, strlen(key), &c, v, 1);
    if (rc != SYNC_NOTFOUND) TU_OK(rc);
  } else {
    rc = sync_delete(x, 0, key, strlen(key));
    if (rc != SYNC_NOTFOUND) TU_OK(rc);
  }
}

/* A resolver that picks at random; MERGED takes the remote value. */
static int rand_resolver(void *ctx, const sync_conflict *c,
                         sync_value *merged) {
  tu_rng *g = (tu_rng *)ctx;
  unsigned pick = (unsigned)tu_below(g, 4);
  if (pick == SYNC_RESOLVE_MERGED) {
    if (c->column == SYNC_ROW) return SYNC_RESOLVE_DEFAULT;
    *merged = c->remote;
  }
  return (int)pick;
}

static void add_column(mu_rep *r) {
  static const sync_column_def extra = {"e", SYNC_INTEGER, 0};
  TU_OK(sync_env_add_column(r->env, 0, &extra));
  check_rep(r, "add_column");
}

/* Pull until every replica has every other's rows and the digests agree. */
static void converge(mu_rep *rep, int n) {
  int round, i, j;
  for (round = 0; round < 10; round++) {
    int same = 1;
    for (i = 0; i < n; i++)
      for (j = 0; j < n; j++)
        if (i != j) mu_pull(&rep[i], &rep[j], 0, 1, NULL);
    for (i = 1; i < n; i++)
      if (mu_digest(&rep[i]) != mu_digest(&rep[0])) same = 0;
    if (same) return;
  }
  fail_msg("seed %u: replicas did not converge", g_seed);
}

static void run_seed(unsigned seed, int steps) {
  static const char *const paths[NREPS] = {"t_idg_a.db", "t_idg_b.db",
                                           "t_idg_c.db"};
  mu_rep rep[NREPS];
  tu_rng g, rg[NREPS];
  uint64_t now = 1000000;
  int i, added = 0;
  unsigned k;
  g_seed = seed;
  g.s = seed * UINT64_C(0x9e3779b97f4a7c15) + 1;
  for (i = 0; i < NREPS; i++) {
    uint8_t site[16];
    mu_site(site, (uint8_t)(0x11 * (i + 1)));
    mu_open(&rep[i], paths[i], site, &now, (int64_t)i * 3);
    rg[i].s = seed + (unsigned)i * 977u + 5;
    if (i) TU_OK(sync_env_set_resolver(rep[i].env, rand_resolver, &rg[i]));
  }
  for (g_step = 0; g_step < steps; g_step++) {
    unsigned what = (unsigned)tu_below(&g, 20);
    mu_rep *r = &rep[tu_below(&g, NREPS)];
    now += tu_below(&g, 3); /* several writes per millisecond, too */
    if (what < 9) {
      /* Local writes, checked inside the transaction, then committed or
       * aborted. */
      sync_txn *x;
      sx_tsum before = sums_of(r), after;
      unsigned n = 1 + (unsigned)tu_below(&g, 5), ncols = ncols_of(r);
      int abort_it = tu_below(&g, 5) == 0;
      TU_OK(sync_txn_begin(r->env, 0, &x));
      while (n--) rand_write(&g, x, ncols);
      check_txn(x, "inside a write transaction");
      if (abort_it) {
        sync_txn_abort(x);
        after = sums_of(r);
        same_sums(&before, &after, "aborted transaction");
      } else {
        TU_OK(sync_txn_commit(x));
      }
      check_rep(r, abort_it ? "after an abort" : "after a commit");
    } else if (what < 15) {
      mu_rep *s = &rep[tu_below(&g, NREPS)];
      size_t max = (size_t)tu_below(&g, 8);
      unsigned pol = (unsigned)tu_below(&g, 10);
      if (s == r) continue;
      if (pol < 7) {
        mu_pull(r, s, max, (int)tu_below(&g, 2), NULL);
      } else {
        /* NEWER and APPEND skip rows for good (the cursor moves past
         * them), which would keep the replicas from converging at the
         * end: their chunk is checked inside its transaction, then
         * aborted. */
        sync_delta *d = mu_cut(r, s, max, 0);
        sync_txn *x;
        sx_tsum before = sums_of(r), after;
        TU_OK(sync_txn_begin(r->env, 0, &x));
        TU_OK(sync_delta_apply(x, d, pol == 7 ? SYNC_APPLY_NEWER
                                              : SYNC_APPLY_APPEND, NULL));
        check_txn(x, pol == 7 ? "apply NEWER" : "apply APPEND");
        sync_txn_abort(x);
        sync_delta_free(d);
        after = sums_of(r);
        same_sums(&before, &after, "aborted apply");
      }
      check_rep(r, "after a pull");
    } else if (what < 17) {
      /* A dry run reports and changes nothing: sums in the transaction,
       * after its commit, and the digest stay. */
      mu_rep *s = &rep[tu_below(&g, NREPS)];
      sync_delta *d;
      sync_txn *x;
      sync_apply_report ar;
      sx_tsum before, mid, after;
      uint64_t dg;
      if (s == r) continue;
      before = sums_of(r);
      dg = mu_digest(r);
      d = mu_cut(r, s, (size_t)tu_below(&g, 8), 0);
      TU_OK(sync_txn_begin(r->env, 0, &x));
      TU_OK(sync_delta_apply(x, d, SYNC_APPLY_MERGE | SYNC_APPLY_DRY_RUN, &ar));
      TU_OK(sx_table_sum(x, 0, &mid));
      same_sums(&before, &mid, "dry run, in its transaction");
      TU_OK(sync_txn_commit(x));
      sync_delta_free(d);
      after = sums_of(r);
      same_sums(&before, &after, "dry run");
      TU_U64(mu_digest(r), dg);
      check_rep(r, "after a dry run");
    } else if (what < 19) {
      sync_txn *x;
      uint64_t n = 0;
      sx_tsum before = sums_of(r), after;
      TU_OK(sync_txn_begin(r->env, 0, &x));
      TU_OK(sync_gc(x, &n));
      check_txn(x, "inside gc");
      TU_OK(sync_txn_commit(x));
      after = sums_of(r);
      /* Tombstones leave the meta sum and the row count, not the live
       * rows' content. */
      TU_U64(after.rows, before.rows - n);
      after.meta = before.meta;
      after.rows = before.rows;
      same_sums(&before, &after, "gc (tombstones only)");
      check_rep(r, "after gc");
    } else if (!added && g_step > steps / 2) {
      /* Deltas need equal schemas: every replica takes the column. */
      for (i = 0; i < NREPS; i++) add_column(&rep[i]);
      added = 1;
    }
  }
  for (i = 0; i < NREPS; i++) TU_OK(sync_env_set_resolver(rep[i].env, NULL, NULL));
  g_step = steps;
  converge(rep, NREPS);
  /* Equal rows, equal digests and sums: content and, with equal stamps
   * and the same tombstones (one replica may have collected some that
   * another keeps), meta too. */
  for (i = 1; i < NREPS; i++) {
    sx_tsum a = sums_of(&rep[0]), b = sums_of(&rep[i]);
    uint64_t ta = 0, tb = 0;
    sync_txn *x;
    check_rep(&rep[i], "converged");
    TU_OK(sync_txn_begin(rep[0].env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_tombstones(x, &ta));
    sync_txn_abort(x);
    TU_OK(sync_txn_begin(rep[i].env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_tombstones(x, &tb));
    sync_txn_abort(x);
    TU_U64(a.rows - a.live, ta);
    TU_U64(b.rows - b.live, tb);
    if (ta != tb) {
      b.meta = a.meta;
      b.rows = a.rows;
    }
    same_sums(&a, &b, "converged replicas");
  }
  for (k = 0; k < NKEYS; k++) {
    char key[8];
    sync_value va[SYNC_MAX_COLUMNS], vb[SYNC_MAX_COLUMNS];
    unsigned c, nc = ncols_of(&rep[0]);
    sync_txn *xa, *xb;
    int ra, rb;
    key_of(k, key);
    TU_OK(sync_txn_begin(rep[0].env, SYNC_TXN_RDONLY, &xa));
    TU_OK(sync_txn_begin(rep[1].env, SYNC_TXN_RDONLY, &xb));
    ra = sync_get(xa, 0, key, strlen(key), va, nc);
    rb = sync_get(xb, 0, key, strlen(key), vb, nc);
    assert_int_equal(ra, rb);
    for (c = 0; !ra && c < nc; c++)
      if (!tu_value_equal(&va[c], &vb[c]))
        fail_msg("seed %u: key %s column %u differs", seed, key, c);
    sync_txn_abort(xa);
    sync_txn_abort(xb);
  }
  for (i = 0; i < NREPS; i++) mu_close(&rep[i]);
}

static void test_sums_equal_a_scan_under_random_histories(void **state) {
  const char *env = getenv("SYNC_TEST_SEED");
  unsigned s;
  (void)state;
  if (env) {
    run_seed((unsigned)strtoul(env, NULL, 10), 400);
    return;
  }
  for (s = 1; s <= 12; s++) run_seed(s, 300);
}

/* ---------------------------------------------------------------------
 * Only metadata differs: same digest; the meta sum tells them apart.
 * ------------------------------------------------------------------- */
static void test_digest_ignores_metadata(void **state) {
  mu_rep a, b;
  uint8_t sa[16], sb[16];
  uint64_t now = 5000;
  sx_tsum xa, xb;
  (void)state;
  g_seed = 0;
  g_step = 0;
  mu_site(sa, 0xa1);
  mu_site(sb, 0xb2);
  mu_open(&a, "t_idg_m1.db", sa, &now, 0);
  mu_open(&b, "t_idg_m2.db", sb, &now, 7);
  mu_put(&a, "x", 1, 0.5, "same");
  mu_put(&a, "y", 2, 1.5, NULL);
  now += 10;
  /* b writes the same values, other site, other time, other path: y is
   * written, deleted and written again (causal length 3). */
  mu_put(&b, "y", 9, 9.5, "other");
  mu_delete(&b, "y");
  mu_put(&b, "y", 2, 1.5, NULL);
  mu_put(&b, "x", 1, 0.0, "same");
  mu_update(&b, "x", MU_COL_R, sync_real(0.5));
  TU_U64(mu_digest(&a), mu_digest(&b));
  xa = sums_of(&a);
  xb = sums_of(&b);
  TU_U64(xa.content, xb.content);
  TU_U64(xa.live, 2);
  assert_true(xa.meta != xb.meta);
  /* A value that differs changes the digest, and changing it back
   * restores it. */
  mu_update(&b, "x", MU_COL_I, sync_int(2));
  assert_true(mu_digest(&a) != mu_digest(&b));
  mu_update(&b, "x", MU_COL_I, sync_int(1));
  TU_U64(mu_digest(&a), mu_digest(&b));
  /* So does a live row more or less. */
  mu_delete(&b, "x");
  assert_true(mu_digest(&a) != mu_digest(&b));
  check_rep(&a, "metadata");
  check_rep(&b, "metadata");
  mu_close(&a);
  mu_close(&b);
}

/* A row may hold values in columns beyond its table's schema (written
 * under a newer schema; DESIGN.md section 5 keeps them).  The digest
 * leaves them out until add_column makes the column known, which must
 * rebuild the sums: a stale content sum would differ from the scan.  The
 * row is stored through sx_store_row, as apply would store it. */
static void test_add_column_rebuilds_sums_of_kept_values(void **state) {
  static const sync_column_def extra = {"e", SYNC_INTEGER, 0};
  mu_rep a, b;
  uint8_t sa[16], sb[16];
  uint64_t now = 5000, before;
  sync_txn *x;
  sx_scur *cur;
  unsigned j;
  (void)state;
  g_seed = 0;
  g_step = 1;
  mu_site(sa, 0xa1);
  mu_site(sb, 0xb2);
  mu_open(&a, "t_idg_c1.db", sa, &now, 0);
  mu_open(&b, "t_idg_c2.db", sb, &now, 0);
  mu_put(&a, "r", 1, 0.5, "s");
  mu_put(&b, "r", 1, 0.5, "s");
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sx_scratch(x));
  TU_OK(sx_table_cursor(x, 0, &cur));
  sx_stamp_txn(x);
  x->nw.nstamps = 0;
  x->nw.cl = 1;
  {
    sx_stamp st;
    st.hlc = x->hlc;
    st.site = 0;
    x->nw.cl_stamp = sx_row_stamp(&x->nw, st);
  }
  x->nw.ncols = MU_NCOLS + 1;
  for (j = 0; j < MU_NCOLS + 1; j++) {
    x->nw.cols[j].st = x->nw.cl_stamp;
    x->nw.cols[j].base = SX_NOSTAMP;
    x->nw.cols[j].v = j == MU_NCOLS ? sync_int(77) : sync_null();
  }
  x->nw.cols[0].v = sync_int(5);
  TU_OK(sx_store_row(x, 0, cur, "wide", 4, 0, 0));
  check_txn(x, "a row wider than its table");
  TU_OK(sync_txn_commit(x));
  check_rep(&a, "a row wider than its table");
  mu_put(&b, "wide", 5, 0, NULL);
  TU_OK(sync_txn_begin(b.env, 0, &x));
  TU_OK(sync_update(x, 0, "wide", 4, (const unsigned[]){MU_COL_R},
                    (const sync_value[]){sync_null()}, 1));
  TU_OK(sync_txn_commit(x));
  /* Same known values: same digest, the unknown column left out. */
  before = mu_digest(&a);
  TU_U64(before, mu_digest(&b));
  TU_OK(sync_env_add_column(a.env, 0, &extra));
  check_rep(&a, "after add_column");
  assert_true(mu_digest(&a) != before); /* column 4 counts now */
  TU_OK(sync_env_add_column(b.env, 0, &extra));
  TU_OK(sync_txn_begin(b.env, 0, &x));
  TU_OK(sync_update(x, 0, "wide", 4, (const unsigned[]){MU_NCOLS},
                    (const sync_value[]){sync_int(77)}, 1));
  TU_OK(sync_txn_commit(x));
  TU_U64(mu_digest(&a), mu_digest(&b));
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Formats 1, 2 and 3 -> 4 (3 differs only in peer records, below).  Files of the older formats differ from format 3
 * only in two records: "format" says 1 or 2, and each "n" + id holds the
 * live count alone (8 bytes, format 1) or the live count and the content
 * and meta sums of the live rows (24 bytes, format 2; its meta sum left
 * tombstones out, so an upgrade must recompute it, not keep it).  They are written here with LMDB itself rather than kept as
 * a committed file: LMDB files are not portable across page sizes and
 * byte orders, and the cross builds run this test on s390x and armhf.
 * ------------------------------------------------------------------- */
#define UPG "t_idg_upgrade.db"

static const sync_column_def up_cols2[] = {{"n", SYNC_INTEGER, 0}};
static const sync_table_def up_tables[] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
    {"u", SYNC_INTEGER, up_cols2, 1},
    {"empty", SYNC_TEXT, up_cols2, 1},
};

static MDB_env *raw_open(MDB_txn **t, MDB_dbi *meta, unsigned flags) {
  MDB_env *e;
  assert_int_equal(mdb_env_create(&e), 0);
  assert_int_equal(mdb_env_set_maxdbs(e, 64), 0);
  assert_int_equal(mdb_env_open(e, UPG, MDB_NOSUBDIR | flags, 0644), 0);
  assert_int_equal(mdb_txn_begin(e, NULL, flags & MDB_RDONLY, t), 0);
  assert_int_equal(mdb_dbi_open(*t, "sx.meta", 0, meta), 0);
  return e;
}

static void set_format(uint32_t version) {
  MDB_txn *t;
  MDB_dbi m;
  MDB_env *e = raw_open(&t, &m, 0);
  unsigned char fmt[12];
  MDB_val k = {6, (void *)"format"}, v = {12, fmt};
  memcpy(fmt, "sync-db\0", 8);
  fmt[8] = (unsigned char)version;
  fmt[9] = (unsigned char)(version >> 8);
  fmt[10] = (unsigned char)(version >> 16);
  fmt[11] = (unsigned char)(version >> 24);
  assert_int_equal(mdb_put(t, m, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(t), 0);
  mdb_env_close(e);
}

/* Cut every epoch record to its first 16 bytes (id and clock), as files
 * before format 7 have them. */
static void epochs_16(void) {
  MDB_txn *t;
  MDB_dbi m, ep;
  MDB_cursor *c;
  MDB_val k, v;
  MDB_env *e = raw_open(&t, &m, 0);
  int rc;
  assert_int_equal(mdb_dbi_open(t, "sx.epochs", 0, &ep), 0);
  assert_int_equal(mdb_cursor_open(t, ep, &c), 0);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    unsigned char b[16];
    assert_true(v.mv_size == 16 || v.mv_size == 32);
    memcpy(b, v.mv_data, 16);
    v.mv_size = 16;
    v.mv_data = b;
    assert_int_equal(mdb_cursor_put(c, &k, &v, MDB_CURRENT), 0);
  }
  assert_int_equal(rc, MDB_NOTFOUND);
  mdb_cursor_close(c);
  assert_int_equal(mdb_txn_commit(t), 0);
  mdb_env_close(e);
}

/* Rewrite the file as format 1 (8-byte records) or 2 (24) wrote it. */
static void make_format(unsigned ntables, uint32_t format) {
  MDB_txn *t;
  MDB_dbi m;
  MDB_env *e = raw_open(&t, &m, 0);
  unsigned i;
  for (i = 0; i < ntables; i++) {
    unsigned char nk[3] = {'n', 0, (unsigned char)i};
    MDB_val k = {3, nk}, v;
    int rc = mdb_get(t, m, &k, &v);
    if (rc == MDB_NOTFOUND) continue;
    assert_int_equal(rc, 0);
    assert_int_equal(v.mv_size, SX_TSUM_LEN);
    {
      unsigned char old[24];
      /* the count comes first; format 2's meta sum: some other value */
      MDB_val nv = {format == 1 ? 8 : 24, old};
      memcpy(old, v.mv_data, 24);
      old[16] ^= 0x5a;
      assert_int_equal(mdb_put(t, m, &k, &nv, 0), 0);
    }
  }
  assert_int_equal(mdb_txn_commit(t), 0);
  mdb_env_close(e);
  set_format(format);
}

static uint32_t format_of(void) {
  MDB_txn *t;
  MDB_dbi m;
  MDB_env *e = raw_open(&t, &m, MDB_RDONLY);
  MDB_val k = {6, (void *)"format"}, v;
  const unsigned char *p;
  uint32_t f;
  assert_int_equal(mdb_get(t, m, &k, &v), 0);
  assert_int_equal(v.mv_size, 12);
  p = (const unsigned char *)v.mv_data;
  f = (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 |
      (uint32_t)p[11] << 24;
  mdb_txn_abort(t);
  mdb_env_close(e);
  return f;
}

static sync_env *up_env(unsigned flags, int want, const char *msg) {
  sync_env *env;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  TU_RC(sync_env_open(env, UPG, flags), want);
  if (want) {
    if (msg && !strstr(sync_env_errmsg(env), msg))
      fail_msg("message: %s", sync_env_errmsg(env));
    sync_env_close(env);
    return NULL;
  }
  return env;
}

static void all_sums(sync_env *env, sx_tsum *out, uint64_t *digest) {
  sync_txn *x;
  unsigned i;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  for (i = 0; i < 3; i++) TU_OK(sx_table_sum(x, i, &out[i]));
  TU_OK(sync_digest(x, SYNC_ALL_TABLES, digest));
  check_txn(x, "upgrade");
  sync_txn_abort(x);
}

static void test_format1_file_is_upgraded_by_a_writable_open(void **state) {
  sync_env *env;
  sync_txn *x;
  sync_value v[MU_NCOLS];
  unsigned char ik[8];
  sx_tsum s0[3], s1[3];
  uint64_t d0, d1;
  int i;
  uint32_t f;
  (void)state;
  g_seed = 0;
  g_step = 2;
  tu_remove_db(UPG);
  env = tu_open_env(UPG, up_tables, 3, 0);
  TU_OK(sync_txn_begin(env, 0, &x));
  for (i = 0; i < 50; i++) {
    char key[8];
    snprintf(key, sizeof key, "k%d", i);
    v[0] = sync_int(i);
    v[1] = sync_real(i / 2.0);
    v[2] = i % 3 ? sync_text(key, strlen(key)) : sync_null();
    v[3] = sync_null();
    TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
    if (i % 7 == 0) TU_OK(sync_delete(x, 0, key, strlen(key)));
    sync_key_int(i - 20, ik);
    TU_OK(sync_put(x, 1, ik, 8, v, 1));
  }
  TU_OK(sync_txn_commit(x));
  all_sums(env, s0, &d0);
  sync_env_close(env);
  TU_U64(format_of(), SX_FORMAT_VERSION);

  for (f = 1; f <= 3; f++) {
    /* Format 3 differs from 4 only in peer records without a scope,
     * which format 4 reads as they are: the format record alone. */
    if (f < 3) make_format(3, f);
    else set_format(3);
    up_env(SYNC_OPEN_RDONLY, SYNC_EVERSION, "open it writable once");
    TU_U64(format_of(), f);
    env = up_env(0, 0, NULL);
    all_sums(env, s1, &d1);
    for (i = 0; i < 3; i++) same_sums(&s0[i], &s1[i], "upgraded");
    TU_U64(d1, d0);
    TU_U64(s1[0].live, 50 - 8);
    TU_U64(s1[0].rows, 50);
    TU_U64(s1[2].live, 0);
    sync_env_close(env);
    TU_U64(format_of(), SX_FORMAT_VERSION);
    env = up_env(SYNC_OPEN_RDONLY, 0, NULL); /* upgraded: read-only works */
    all_sums(env, s1, &d1);
    TU_U64(d1, d0);
    sync_env_close(env);
  }

  /* Format 3 (before the rejection log): read-only says to upgrade, a
   * writable open makes the log; the rows and sums are as they were. */
  {
    MDB_txn *t;
    MDB_dbi m, rj;
    MDB_env *e = raw_open(&t, &m, 0);
    sync_rejects *it;
    sync_reject rej;
    assert_int_equal(mdb_dbi_open(t, "sx.rejects", 0, &rj), 0);
    assert_int_equal(mdb_drop(t, rj, 1), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(e);
    set_format(3);
    up_env(SYNC_OPEN_RDONLY, SYNC_EVERSION, "the rejection log");
    TU_U64(format_of(), 3);
    env = up_env(0, 0, NULL);
    all_sums(env, s1, &d1);
    TU_U64(d1, d0);
    TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_rejects_open(x, &it));
    assert_int_equal(sync_rejects_next(it, &rej), SYNC_NOTFOUND);
    sync_rejects_close(it);
    sync_txn_abort(x);
    sync_env_close(env);
    TU_U64(format_of(), SX_FORMAT_VERSION);
    env = up_env(SYNC_OPEN_RDONLY, 0, NULL);
    sync_env_close(env);
  }

  /* Format 4 (before the renewal records, which read as none), 5
   * (before the lineage in peer records, which reads as none), 6
   * (epochs without their first own stamp, which reads as unknown), 7
   * (no row history store, which reads as no history) and 8 (the
   * change log one item per entry; this file's log is in records
   * already, so the writable open has nothing to move): a read-only
   * open says to open it writable once, a writable one sets the
   * current format, and its epochs of 16 bytes stay readable. */
  {
    unsigned f;
    uint64_t prev = 0; /* a stamp the last round made, now in a 16-byte epoch */
    for (f = 4; f <= 8; f++) {
      sx_mark m;
      uint64_t held = 1, b0;
      epochs_16();
      set_format(f);
      up_env(SYNC_OPEN_RDONLY, SYNC_EVERSION, "the change log in records");
      TU_U64(format_of(), f);
      env = up_env(0, 0, NULL);
      TU_OK(sync_txn_begin(env, 0, &x));
      b0 = x->base_version;
      if (prev) {
        /* The last round's epoch, cut to 16 bytes, reads; its first own
         * stamp is unknown, so no stamp in it is taken as foreign. */
        TU_OK(sx_mark_of(x, b0, &m));
        assert_true(m.id != 0);
        TU_RC(sx_hist_foreign(x, prev - 1, x->hlc_last, 0, &held), 0);
      }
      /* The put's stamp must fall in a millisecond past the last
       * round's (which, this fast, may be the current one): one that
       * shares it lies just above that round's own stamp. */
      for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 >
            (x->hlc_last >> 16))
          break;
      }
      v[0] = sync_int(f);
      TU_OK(sync_put(x, 2, "up", 2, v, 1)); /* a stamp in the new epoch */
      TU_OK(sync_txn_commit(x));
      TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
      prev = x->hlc_last;
      TU_RC(sx_hist_foreign(x, prev - 1, x->hlc_last, 0, &held), 1); /* recorded now */
      sync_txn_abort(x);
      TU_OK(sync_txn_begin(env, 0, &x));
      TU_OK(sync_delete(x, 2, "up", 2));
      TU_OK(sync_txn_commit(x));
      sync_env_close(env);
      TU_U64(format_of(), SX_FORMAT_VERSION);
      env = up_env(SYNC_OPEN_RDONLY, 0, NULL); /* upgraded: read-only works */
      all_sums(env, s1, &d1);
      TU_U64(d1, d0);
      sync_env_close(env);
    }
  }
  /* Format 9 (before the fold records, which read as none) and 10
   * (renewal records in meta, none here): a read-only open says to open
   * it writable once, a writable one sets the current format. */
  for (f = 9; f <= 10; f++) {
    set_format(f);
    up_env(SYNC_OPEN_RDONLY, SYNC_EVERSION,
           "the renewal and fold records in stores of their own");
    TU_U64(format_of(), f);
    env = up_env(0, 0, NULL);
    sync_env_close(env);
    TU_U64(format_of(), SX_FORMAT_VERSION);
    env = up_env(SYNC_OPEN_RDONLY, 0, NULL);
    all_sums(env, s1, &d1);
    TU_U64(d1, d0);
    sync_env_close(env);
  }
  TU_U64(SX_FORMAT_VERSION, 11);

  /* Format 10 with renewal records (meta "renewed", 24 bytes each; no
   * sx.renew) and fold records (meta "folds", 48 bytes each; no
   * sx.folds): the writable open moves them into their stores, gives the
   * site no index named an index, and moves the clock one past where it
   * stood, the clock the renewal records are known at. */
  {
    static const uint8_t ida[16] = {0xa1, 1}, idb[16] = {0xb2, 2};
    unsigned char rec[48], fr[96];
    sync_stamp got[4];
    sync_fold fg[3];
    size_t n;
    uint32_t idx;
    uint64_t clock0;
    MDB_txn *t;
    MDB_dbi m, rn, fo;
    MDB_env *e;
    MDB_val k = {7, (void *)"renewed"}, v = {48, rec};
    MDB_val fk = {5, (void *)"folds"}, fv = {96, fr};
    memcpy(rec, ida, 16);
    memcpy(rec + 24, idb, 16);
    sx_put_le64(rec + 16, 5);
    sx_put_le64(rec + 40, 0);
    memcpy(fr, ida, 16); /* sorted by site, then heir */
    memcpy(fr + 16, idb, 16);
    sx_put_le64(fr + 32, 7);
    sx_put_le64(fr + 40, 3);
    memcpy(fr + 48, idb, 16);
    memcpy(fr + 64, ida, 16);
    sx_put_le64(fr + 80, 9);
    sx_put_le64(fr + 88, 4);
    env = up_env(0, 0, NULL);
    TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
    clock0 = x->hlc_last;
    TU_RC(sx_site_index(x, idb, 0, &idx), SYNC_NOTFOUND);
    sync_txn_abort(x);
    sync_env_close(env);
    e = raw_open(&t, &m, 0);
    assert_int_equal(mdb_dbi_open(t, "sx.renew", 0, &rn), 0);
    assert_int_equal(mdb_drop(t, rn, 1), 0);
    assert_int_equal(mdb_put(t, m, &k, &v, 0), 0);
    assert_int_equal(mdb_dbi_open(t, "sx.folds", 0, &fo), 0);
    assert_int_equal(mdb_drop(t, fo, 1), 0);
    assert_int_equal(mdb_put(t, m, &fk, &fv, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(e);
    set_format(10);
    up_env(SYNC_OPEN_RDONLY, SYNC_EVERSION, "open it writable once");
    env = up_env(0, 0, NULL);
    TU_U64(format_of(), SX_FORMAT_VERSION);
    TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_renewals_get(x, got, 4, &n));
    TU_U64(n, 2);
    assert_memory_equal(got[0].site, ida, 16); /* in site id order */
    TU_U64(got[0].hlc, 5);
    assert_memory_equal(got[1].site, idb, 16);
    TU_U64(got[1].hlc, 0);
    TU_OK(sx_site_index(x, idb, 0, &idx));
    assert_true(idx > 0);
    TU_U64(x->hlc_last, clock0 + 1);
    TU_OK(sync_folds_get(x, fg, 3, &n));
    TU_U64(n, 2);
    assert_memory_equal(fg[0].site, ida, 16);
    assert_memory_equal(fg[0].heir, idb, 16);
    TU_U64(fg[0].hlc, 7);
    TU_U64(fg[0].held, 3);
    assert_memory_equal(fg[1].site, idb, 16);
    TU_U64(fg[1].hlc, 9);
    TU_U64(fg[1].held, 4);
    sync_txn_abort(x);
    sync_env_close(env);
    e = raw_open(&t, &m, MDB_RDONLY);
    assert_int_equal(mdb_get(t, m, &k, &v), MDB_NOTFOUND);
    assert_int_equal(mdb_get(t, m, &fk, &fv), MDB_NOTFOUND);
    mdb_txn_abort(t);
    mdb_env_close(e);
    env = up_env(SYNC_OPEN_RDONLY, 0, NULL);
    TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_renewals_get(x, NULL, 0, &n));
    TU_U64(n, 2);
    sync_txn_abort(x);
    sync_env_close(env);
  }

  /* Unknown versions, older or newer, fail both ways. */
  set_format(SX_FORMAT_VERSION + 1);
  up_env(0, SYNC_EVERSION, "storage format 12");
  up_env(SYNC_OPEN_RDONLY, SYNC_EVERSION, "storage format 12");
  set_format(0);
  up_env(0, SYNC_EVERSION, "storage format 0");
  tu_remove_db(UPG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_digest_ignores_metadata),
      cmocka_unit_test(test_add_column_rebuilds_sums_of_kept_values),
      cmocka_unit_test(test_format1_file_is_upgraded_by_a_writable_open),
      cmocka_unit_test(test_sums_equal_a_scan_under_random_histories),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
