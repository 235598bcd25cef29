/*
 * test_repair.c - range repair sessions (docs/PROTOCOL.md, "Repair"):
 * identical replicas settle on the roots alone; one differing row among
 * 100,000 is found; random drift of every kind (updates, inserts,
 * deletes on both sides, metadata only) ends equal; a replica restored
 * from an old copy of its file, and one told SYNC_ESTALE, are mended; a
 * tombstone collected on one side removes the row on the other; a repair
 * cut at every few bytes and run again ends equal; hostile turns are
 * refused with SYNC_EPROTO; a diff writes nothing and names the keys.
 *
 * "Equal" is checked twice: sync_digest (content) on both sides, and a
 * dry repair afterwards that must end at its first comparison with equal
 * roots (the roots are sx_table_sum's meta sums and live counts, so this
 * proves the stamps and causal lengths equal too) and report no key.
 */
#include "testutil.h"

#include "sess_util.h"

#include <xxhash.h>

static uint64_t rp_now = 1700000000000ull;

static void rp_open(mu_rep *r, const char *path, uint8_t site) {
  uint8_t id[16];
  mu_site(id, site);
  mu_open(r, path, id, &rp_now, 0);
}

/* Reopen r's file as it stands (no removal). */
static void rp_reopen(mu_rep *r) {
  sync_env_close(r->env);
  TU_OK(sync_env_create(NULL, &r->env));
  TU_OK(sync_env_set_random(r->env, mu_random_fn, r));
  TU_OK(sync_env_set_clock(r->env, mu_clock_fn, r));
  TU_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_mapsize(r->env, (size_t)8 << 20, (size_t)1 << 30));
  TU_OK(sync_env_set_schema(r->env, mu_tables, 1));
  TU_OK(sync_env_open(r->env, r->path, 0));
}

static void rp_key(char *k, size_t cap, unsigned i) {
  snprintf(k, cap, "row-%08u", i);
}

/* n rows in transactions of 1,000. */
static void rp_fill(mu_rep *r, unsigned from, unsigned n, unsigned salt) {
  unsigned i = 0;
  while (i < n) {
    sync_txn *x;
    unsigned j;
    TU_OK(sync_txn_begin(r->env, 0, &x));
    for (j = 0; j < 1000 && i < n; j++, i++) {
      char k[32], s[32];
      sync_value v[MU_NCOLS];
      rp_key(k, sizeof k, from + i);
      snprintf(s, sizeof s, "v%u-%u", from + i, salt);
      v[0] = sync_int((int64_t)(from + i));
      v[1] = sync_real((double)i / 8.0);
      v[2] = sync_text(s, strlen(s));
      v[3] = sync_null();
      TU_OK(sync_put(x, 0, k, strlen(k), v, MU_NCOLS));
    }
    TU_OK(sync_txn_commit(x));
  }
}

/* A plain sync (both ways) between client c and server s. */
static void rp_sync(mu_rep *c, mu_rep *s) {
  sync_session_opts co;
  memset(&co, 0, sizeof co);
  co.chunk_rows = 5000;
  assert_int_equal(su_sync(c, s, &co, NULL, NULL, NULL), 1);
}

typedef struct rp_diffs {
  unsigned n, local, remote, both;
  char keys[64][32];
  int sides[64];
} rp_diffs;

static void rp_on_diff(void *ctx, unsigned table, const void *key, size_t klen,
                       int side) {
  rp_diffs *d = (rp_diffs *)ctx;
  assert_int_equal(table, 0);
  if (d->n < 64 && klen < 32) {
    memcpy(d->keys[d->n], key, klen);
    d->keys[d->n][klen] = 0;
    d->sides[d->n] = side;
  }
  d->n++;
  if (side == SYNC_DIFF_LOCAL)
    d->local++;
  else if (side == SYNC_DIFF_REMOTE)
    d->remote++;
  else if (side == SYNC_DIFF_BOTH)
    d->both++;
  else
    fail_msg("side %d", side);
}

/* su_sync, telling what went wrong. */
static int rp_pair(mu_rep *cr, mu_rep *sr, const sync_session_opts *co,
                   const sync_session_opts *so0, sync_session_stats *cst,
                   sync_session_stats *sst) {
  sync_session_opts so;
  sync_session *c, *s;
  su_pump p;
  int rc;
  memset(&so, 0, sizeof so);
  if (so0) so = *so0;
  so.server = 1;
  TU_OK(sync_session_create(cr->env, co, &c));
  TU_OK(sync_session_create(sr->env, &so, &s));
  memset(&p, 0, sizeof p);
  su_run(&p, c, s);
  rc = sync_session_status(c);
  if (rc != 1)
    print_message("client: %s; server: %s\n", sync_session_errmsg(c),
                  sync_session_errmsg(s));
  if (cst) sync_session_stats_get(c, cst);
  if (sst) sync_session_stats_get(s, sst);
  sync_session_free(c);
  sync_session_free(s);
  return rc;
}

/* A repair (or, dry, a diff) between client c and server s; returns the
 * client's status. */
static int rp_run(mu_rep *c, mu_rep *s, int dry, rp_diffs *diffs,
                  sync_session_stats *cst, sync_session_stats *sst) {
  sync_session_opts co;
  memset(&co, 0, sizeof co);
  co.repair = 1;
  co.dry_run = dry;
  co.on_diff = diffs ? rp_on_diff : NULL;
  co.on_diff_ctx = diffs;
  return rp_pair(c, s, &co, NULL, cst, sst);
}

/* Equal content, and equal roots (meta sums) with nothing to report. */
static void rp_check_equal(mu_rep *a, mu_rep *b) {
  sync_session_stats cs;
  rp_diffs d;
  memset(&d, 0, sizeof d);
  assert_true(mu_digest(a) == mu_digest(b));
  assert_int_equal(rp_run(a, b, 1, &d, &cs, NULL), 1);
  assert_int_equal(cs.repair_equal, 1);
  assert_int_equal(cs.repair_passes, 0);
  assert_int_equal(d.n, 0);
}

/* ---------------------------------------------------------------------
 * Identical replicas: the roots alone, one round trip
 * ------------------------------------------------------------------- */
static void test_identical(void **state) {
  mu_rep a, b;
  sync_session_stats cs, ss;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&a, 0, 3000, 0);
  rp_sync(&b, &a);
  assert_int_equal(rp_run(&b, &a, 0, NULL, &cs, &ss), 1);
  assert_int_equal(cs.repair_equal, 1);
  /* The server's roots (with its WELCOME) and the client's DONE. */
  assert_int_equal(cs.repair_turns, 2);
  assert_true(cs.bytes_sent + cs.bytes_received <= 256);
  assert_int_equal(cs.repair_rows, 0);
  assert_int_equal(cs.frames_sent + cs.frames_received, 0);
  /* Empty replicas too. */
  mu_close(&a);
  mu_close(&b);
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  assert_int_equal(rp_run(&b, &a, 0, NULL, &cs, &ss), 1);
  assert_int_equal(cs.repair_equal, 1);
  assert_int_equal(cs.repair_turns, 2);
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * One differing row in 100,000
 * ------------------------------------------------------------------- */
static void test_one_in_many(void **state) {
  mu_rep a, b;
  sync_session_stats cs, ss;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&a, 0, 100000, 0);
  rp_sync(&b, &a);
  mu_update(&b, "row-00031337", MU_COL_I, sync_int(-1));
  assert_true(mu_digest(&a) != mu_digest(&b));
  assert_int_equal(rp_run(&b, &a, 0, NULL, &cs, &ss), 1);
  assert_int_equal(cs.repair_equal, 1);
  {
    mu_row r;
    mu_read(&a, "row-00031337", &r);
    assert_true(r.present);
    assert_int_equal(r.v[0].i, -1); /* the later write wins on both */
  }
  /* Only the leaves around that row travel. */
  assert_true(cs.repair_rows >= 1 && cs.repair_rows <= 6);
  assert_true(cs.bytes_sent + cs.bytes_received <= 2048);
  assert_true((cs.repair_turns + 1) / 2 <= 7);
  rp_check_equal(&b, &a);
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Random drift
 * ------------------------------------------------------------------- */
static void rp_drift(mu_rep *r, tu_rng *g, unsigned nrows, unsigned n,
                     unsigned salt, int meta_only) {
  unsigned k;
  for (k = 0; k < n; k++) {
    char key[32], s[32];
    unsigned i = (unsigned)tu_below(g, nrows + nrows / 4), what;
    sync_txn *x;
    int rc;
    rp_key(key, sizeof key, i);
    what = meta_only ? 9 : (unsigned)tu_below(g, 10);
    TU_OK(sync_txn_begin(r->env, 0, &x));
    if (what < 2) {
      rc = sync_delete(x, 0, key, strlen(key));
      assert_true(rc == 0 || rc == SYNC_NOTFOUND);
    } else if (what < 6) {
      unsigned col = MU_COL_S;
      sync_value v;
      snprintf(s, sizeof s, "u%u-%u-%u", i, salt, k);
      v = sync_text(s, strlen(s));
      rc = sync_update(x, 0, key, strlen(key), &col, &v, 1);
      assert_true(rc == 0 || rc == SYNC_NOTFOUND);
    } else {
      sync_value v[MU_NCOLS];
      /* meta_only: the very values the row had, written again by this
       * replica: same content, other stamps. */
      snprintf(s, sizeof s, "v%u-%u", i, meta_only ? 0 : salt + k);
      v[0] = sync_int((int64_t)i);
      v[1] = sync_real(0);
      v[2] = sync_text(s, strlen(s));
      v[3] = sync_null();
      if (meta_only) {
        sync_value old[MU_NCOLS];
        rc = sync_get(x, 0, key, strlen(key), old, MU_NCOLS);
        if (rc == SYNC_NOTFOUND) {
          sync_txn_abort(x);
          continue;
        }
        TU_OK(sync_delete(x, 0, key, strlen(key)));
        TU_OK(rc);
        v[1] = old[1];
      }
      TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
    }
    TU_OK(sync_txn_commit(x));
  }
}

/* What differs after a repair (client c, server s) that did not end
 * equal: a dry run's report and the tombstones each side keeps. */
static void rp_why(mu_rep *c, mu_rep *s, const sync_session_stats *got) {
  rp_diffs d;
  sync_session_stats cs;
  unsigned i;
  memset(&d, 0, sizeof d);
  rp_run(c, s, 1, &d, &cs, NULL);
  print_message("repair: equal %d after %u passes; a diff now: %u keys "
                "(local %u, remote %u, both %u); tombstones %llu and %llu:",
                got->repair_equal, (unsigned)got->repair_passes, d.n,
                d.local, d.remote, d.both,
                (unsigned long long)mu_tombstones(c),
                (unsigned long long)mu_tombstones(s));
  for (i = 0; i < d.n && i < 8; i++)
    print_message(" %s/%d", d.keys[i], d.sides[i]);
  print_message("\n");
}

static void test_random_drift(void **state) {
  static const unsigned counts[] = {1, 10, 1000, 0 /* 50% */};
  unsigned ci, seed;
  (void)state;
  for (ci = 0; ci < 4; ci++)
    for (seed = 1; seed <= 3; seed++) {
      const unsigned nrows = 4000;
      tu_rng g = {seed * 104729 + ci};
      mu_rep a, b;
      sync_session_stats cs;
      unsigned n = counts[ci] ? counts[ci] : nrows / 2;
      rp_open(&a, "rp-a.db", 0xa1);
      rp_open(&b, "rp-b.db", 0xb1);
      rp_fill(&a, 0, nrows, 0);
      rp_sync(&b, &a);
      rp_now += 1000;
      /* both sides drift; the last seed of each count is metadata only */
      rp_drift(&a, &g, nrows, (n + 1) / 2, 100, seed == 3);
      rp_drift(&b, &g, nrows, n / 2 + (n == 1), 200, seed == 3);
      rp_now += 1000;
      if (rp_run(&b, &a, 0, NULL, &cs, NULL) != 1)
        fail_msg("count %u seed %u: repair failed", n, seed);
      if (!cs.repair_equal) {
        rp_why(&b, &a, &cs);
        fail_msg("count %u seed %u: unequal", n, seed);
      }
      rp_check_equal(&b, &a);
      /* and a normal sync afterwards has nothing left to change */
      rp_sync(&b, &a);
      rp_check_equal(&b, &a);
      mu_close(&a);
      mu_close(&b);
    }
}

/* ---------------------------------------------------------------------
 * Restores, tombstone collection, SYNC_ESTALE
 * ------------------------------------------------------------------- */
static void rp_copy(const char *from, const char *to) {
  size_t n = 0;
  unsigned char *p = tu_read_file(from, &n);
  assert_non_null(p);
  assert_int_equal(tu_write_file(to, p, n), 0);
  free(p);
}

/* Close r, copy file from to file to, and open r's file again (r's own
 * path is one of them: a backup taken, or the file put back from it). */
static void rp_copy_reopen(mu_rep *r, const char *from, const char *to) {
  sync_env_close(r->env);
  r->env = NULL;
  rp_copy(from, to);
  rp_reopen(r);
}

static void test_restore_and_collected(void **state) {
  mu_rep a, b;
  sync_session_stats cs;
  uint64_t gc = 0;
  sync_txn *x;
  mu_row r;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&b, 0, 2000, 0);
  rp_sync(&a, &b);
  /* an old copy of a's file */
  rp_copy_reopen(&a, "rp-a.db", "rp-a-old.db");
  /* life goes on: b deletes a row, a updates one and adds some; they
   * sync, and both collect their tombstones */
  mu_delete(&b, "row-00000007");
  mu_update(&a, "row-00000100", MU_COL_I, sync_int(4242));
  rp_fill(&a, 5000, 50, 1);
  rp_now += 1000;
  rp_sync(&a, &b);
  rp_sync(&a, &b);
  TU_OK(sync_txn_begin(b.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  assert_true(gc >= 1);
  /* a comes back from its old copy: row 7 live, its own later writes
   * gone (b holds them) */
  rp_copy_reopen(&a, "rp-a-old.db", "rp-a.db");
  mu_read(&a, "row-00000007", &r);
  assert_true(r.present);
  /* b holds a log of a that this file does not have: the session says so
   * and a takes a new site id (its cursors start again) */
  {
    sync_session_opts co;
    memset(&co, 0, sizeof co);
    co.mode = SYNC_PULL;
    assert_int_equal(su_sync(&a, &b, &co, NULL, NULL, NULL), SYNC_EHISTORY);
  }
  /* the documented path: a repair */
  assert_int_equal(rp_run(&a, &b, 0, NULL, &cs, NULL), 1);
  if (!cs.repair_equal) rp_why(&a, &b, &cs);
  assert_int_equal(cs.repair_equal, 1);
  mu_read(&a, "row-00000007", &r);
  assert_false(r.present);
  mu_read(&b, "row-00000007", &r);
  assert_false(r.present);
  mu_read(&a, "row-00000100", &r);
  assert_int_equal(r.v[0].i, 4242);
  mu_read(&a, "row-00005049", &r);
  assert_true(r.present);
  rp_check_equal(&a, &b);
  /* and plain syncs work again, both ways */
  mu_update(&b, "row-00000200", MU_COL_I, sync_int(7));
  rp_now += 1000;
  rp_sync(&a, &b);
  mu_read(&a, "row-00000200", &r);
  assert_int_equal(r.v[0].i, 7);
  rp_check_equal(&a, &b);
  mu_close(&a);
  mu_close(&b);
  tu_remove_db("rp-a-old.db");
}

/* The side that collected the tombstone is the one declaring the leaf
 * too: the repair still removes the row on the other (over two passes
 * at most). */
static void test_collected_other_side(void **state) {
  mu_rep a, b;
  sync_session_stats cs;
  uint64_t gc = 0;
  sync_txn *x;
  mu_row r;
  unsigned i;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&a, 0, 300, 0);
  rp_sync(&b, &a);
  rp_copy_reopen(&b, "rp-b.db", "rp-b-old.db");
  for (i = 0; i < 300; i += 3) {
    char k[32];
    rp_key(k, sizeof k, i);
    mu_delete(&a, k);
  }
  rp_sync(&b, &a);
  rp_sync(&b, &a);
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  assert_int_equal(gc, 100);
  rp_copy_reopen(&b, "rp-b-old.db", "rp-b.db");
  /* this time the restored side is the server: a's view of b's log in
   * HELLO shows the restore first (b takes a new site id), then the
   * repair runs */
  assert_int_equal(rp_run(&a, &b, 0, NULL, &cs, NULL), SYNC_EHISTORY);
  assert_int_equal(rp_run(&a, &b, 0, NULL, &cs, NULL), 1);
  assert_int_equal(cs.repair_equal, 1);
  for (i = 0; i < 300; i++) {
    char k[32];
    rp_key(k, sizeof k, i);
    mu_read(&b, k, &r);
    assert_int_equal(r.present, i % 3 != 0);
  }
  rp_check_equal(&a, &b);
  mu_close(&a);
  mu_close(&b);
  tu_remove_db("rp-b-old.db");
}

/* o writes y and syncs with q, and a backup of o is taken; o writes x,
 * only n (which joins after the backup) pulls it, and q gets it from n
 * by a repair that ends with the roots unequal (q refuses n's row
 * "held"); then o is put back from the backup, in place: x is a write o
 * lost and its vector claims (its own entry is its clock).  q's vector
 * does not claim x (only a repair that ends equal raises it): no session
 * shows o the restore; n's vector does. */
static void rp_lost_write(mu_rep *o, mu_rep *q, mu_rep *n) {
  sync_session_opts co, so;
  sync_session_stats cs;
  rp_open(o, "rp-o.db", 0x0a);
  rp_open(q, "rp-q.db", 0x0b);
  rp_open(n, "rp-n.db", 0x0c);
  mu_put(o, "y", 1, 1.0, "y");
  rp_sync(o, q);
  rp_copy_reopen(o, "rp-o.db", "rp-o-old.db");
  rp_now += 1000;
  mu_put(o, "x", 2, 2.0, "written after the backup");
  rp_now += 1000;
  rp_sync(n, o);
  mu_put(n, "held", 4, 4.0, "q refuses it in the repair");
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.check_write = su_refuse_key;
  so.check_write_ctx = (void *)"held";
  assert_int_equal(rp_pair(n, q, &co, &so, &cs, NULL), 1);
  assert_int_equal(cs.repair_equal, 0);
  rp_copy_reopen(o, "rp-o-old.db", "rp-o.db");
}

/* A restored replica that collects must not take a write it lost for a
 * row it deleted.  o syncs with q, and a backup of o is taken; o writes
 * x, and only n (which joins after the backup) pulls it; q gets x from
 * n.  o is put back from the backup in place, deletes y, q acknowledges
 * the delete and o collects it.  Nobody that holds o's later log has
 * told o of the restore, so o's vector claims x (its own entry is its
 * clock) and sessions leave x out; a repair with q brings it.  o's
 * epochs show that its file never made a write of its own at x's stamp
 * (the open after the restore began at the backup's clock, and its first
 * write came later): x is a write o lost, not a row it deleted.  Before
 * the fix o answered x with a delete and x was gone everywhere. */
static void test_restored_collector_keeps_lost_write(void **state) {
  mu_rep o, q, n;
  sync_session_stats cs;
  sync_stamp rec[4];
  uint8_t before[16], after[16];
  size_t nrec = 0;
  uint64_t gc = 0;
  sync_txn *x;
  mu_row r;
  int rc;
  (void)state;
  rp_lost_write(&o, &q, &n);
  memcpy(before, o.site, 16);
  mu_read(&q, "x", &r);
  assert_true(r.present);
  mu_read(&o, "x", &r);
  assert_false(r.present);
  rp_now += 1000;
  mu_delete(&o, "y");
  rp_sync(&o, &q);
  rp_sync(&o, &q);
  mu_read(&o, "x", &r);
  assert_false(r.present); /* o's vector claims it: sessions left it out */
  TU_OK(sync_txn_begin(o.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  TU_U64(gc, 1);
  /* The repair brings x; o finds it never made that write, keeps the
   * row, and takes a new site id (the repair says so: run it again). */
  rc = rp_run(&o, &q, 0, NULL, &cs, NULL);
  mu_read(&o, "x", &r);
  assert_true(r.present);
  assert_int_equal(r.v[0].i, 2);
  mu_read(&q, "x", &r);
  assert_true(r.present);
  assert_int_equal(rc, SYNC_EHISTORY);
  TU_OK(sync_env_site_id(o.env, after));
  assert_memory_not_equal(before, after, 16);
  /* The renewal record keeps o's claim on the old id up to the backup's
   * state: y's delete, collected, stays proven. */
  TU_OK(sync_txn_begin(o.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_renewals_get(x, rec, 4, &nrec));
  sync_txn_abort(x);
  TU_U64(nrec, 1);
  assert_memory_equal(rec[0].site, before, 16);
  assert_true(rec[0].hlc > 0);
  assert_int_equal(rp_run(&o, &q, 0, NULL, &cs, NULL), 1);
  if (!cs.repair_equal) rp_why(&o, &q, &cs);
  assert_int_equal(cs.repair_equal, 1);
  rp_sync(&o, &q);
  rp_sync(&n, &q);
  rp_sync(&n, &o);
  mu_read(&q, "x", &r);
  assert_true(r.present);
  mu_read(&n, "x", &r);
  assert_true(r.present);
  mu_read(&n, "y", &r);
  assert_false(r.present);
  mu_read(&q, "y", &r);
  assert_false(r.present);
  rp_check_equal(&o, &q);
  rp_check_equal(&n, &q);
  mu_close(&o);
  mu_close(&q);
  mu_close(&n);
  tu_remove_db("rp-o-old.db");
}

/* A copy claims the old id's writes up to its clock, also when the file
 * copied was a restore nobody had found out: its clock is past writes
 * the restore lost.  o syncs with q, a backup is taken, o writes x and
 * only n pulls it (q gets it from n); o is put back in place and writes
 * z, and c is made as a copy of o's file (it takes an id of its own and
 * claims o's up to its clock, x included).  c deletes y, q acknowledges,
 * c collects.  A repair brings x to c: its vector and gcvv cover x, but
 * c's epochs show its history never made x (it lies between the
 * backup's clock and z), so x is a write c lacks, not one it deleted.
 * Without that check c answered x with a delete and x was lost. */
static void test_copy_of_restore_keeps_lost_write(void **state) {
  mu_rep o, q, n, c;
  sync_session_stats cs;
  uint64_t gc = 0;
  sync_txn *x;
  mu_row r;
  uint8_t id[16];
  (void)state;
  rp_lost_write(&o, &q, &n);
  rp_now += 1000;
  mu_put(&o, "z", 3, 3.0, "written after the restore");
  /* c: a copy of o's file, as a new replica */
  sync_env_close(o.env);
  o.env = NULL;
  mu_copy_rep(&c, &o, "rp-c.db");
  rp_reopen(&o);
  rp_reopen(&c);
  TU_OK(sync_env_site_id(c.env, id));
  assert_memory_not_equal(id, o.site, 16);
  rp_now += 1000;
  mu_delete(&c, "y");
  rp_sync(&c, &q);
  rp_sync(&c, &q);
  mu_read(&c, "x", &r);
  assert_false(r.present); /* c's vector claims it: sessions left it out */
  TU_OK(sync_txn_begin(c.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  TU_U64(gc, 1);
  assert_int_equal(rp_run(&c, &q, 0, NULL, &cs, NULL), 1);
  mu_read(&c, "x", &r);
  assert_true(r.present);
  mu_read(&q, "x", &r);
  assert_true(r.present);
  mu_read(&q, "y", &r);
  assert_false(r.present);
  rp_check_equal(&c, &q);
  mu_close(&o);
  mu_close(&q);
  mu_close(&n);
  mu_close(&c);
  tu_remove_db("rp-o-old.db");
}

/* A restored replica nobody has found out yet, which collected a
 * tombstone since, streams a complete initial stream to a new replica f
 * that holds a write the restore lost (x, from n).  x is not in the
 * stream, o's vector covers x (its own entry is its clock) and o
 * collected above x's causal length in the table: f took x for a row o
 * deleted, deleted it, and the delete reached every replica.  f's
 * request shows o the restore first: f's vector claims o's writes up to
 * a clock o's history never stood at (between the backup's clock and
 * o's first change since the restore).  o takes a new site id before it
 * cuts anything; its renewal record keeps f's x.  by_repair: f got x
 * from n by a repair that ended equal, not by a session. */
static void rp_restored_sender(int by_repair) {
  mu_rep o, q, n, f;
  sync_session_stats cs;
  uint64_t gc = 0;
  sync_txn *x;
  mu_row r;
  uint8_t before[16], after[16];
  int rc;
  rp_lost_write(&o, &q, &n);
  memcpy(before, o.site, 16);
  rp_now += 1000;
  mu_delete(&o, "y");
  rp_sync(&o, &q);
  rp_sync(&o, &q);
  rp_now += 1000;
  mu_put(&o, "z", 3, 3.0, "o's clock moves past q's view of it");
  TU_OK(sync_txn_begin(o.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  TU_U64(gc, 1);
  rp_open(&f, "rp-f.db", 0x0f);
  if (by_repair) {
    assert_int_equal(rp_run(&f, &n, 0, NULL, &cs, NULL), 1);
    assert_int_equal(cs.repair_equal, 1);
  } else {
    rp_sync(&f, &n); /* f's vector: o's writes up to o's clock at n's pull */
  }
  mu_read(&f, "x", &r);
  assert_true(r.present);
  rc = su_sync(&f, &o, NULL, NULL, NULL, NULL);
  mu_read(&f, "x", &r);
  assert_true(r.present);
  assert_int_equal(rc, SYNC_EHISTORY);
  TU_OK(sync_env_site_id(o.env, after));
  assert_memory_not_equal(before, after, 16);
  rp_sync(&f, &o);
  rp_sync(&f, &q);
  rp_sync(&o, &q);
  rp_sync(&n, &q);
  rp_sync(&f, &q);
  mu_read(&f, "x", &r);
  assert_true(r.present);
  mu_read(&q, "x", &r);
  assert_true(r.present);
  mu_read(&o, "x", &r);
  assert_true(r.present);
  mu_read(&o, "y", &r);
  assert_false(r.present);
  mu_read(&f, "y", &r);
  assert_false(r.present);
  rp_check_equal(&f, &q);
  rp_check_equal(&o, &q);
  mu_close(&o);
  mu_close(&q);
  mu_close(&n);
  mu_close(&f);
  tu_remove_db("rp-o-old.db");
}

static void test_restored_sender_found_by_request_vector(void **state) {
  (void)state;
  rp_restored_sender(0);
}

/* The same, f having got x from n by a repair alone.  A repair raised no
 * vector: f claimed none of o's writes, so its request showed o nothing,
 * the complete stream from o left x out while o's vector covered it, and
 * f deleted x (a write lost everywhere once f's delete spread).  A repair
 * that ends with equal roots over every table now leaves f claiming what
 * n claims, as a complete stream from n would: f's request then shows o
 * the restore. */
static void test_restored_sender_found_by_repaired_vector(void **state) {
  (void)state;
  rp_restored_sender(1);
}

/* Tombstones count in the tree.  A replica restored from a copy made
 * before a row was inserted and deleted elsewhere holds the same live
 * rows as its peer; a repair that compared live rows only ended equal
 * without the tombstone, the next sync raised the vector past the delete,
 * and a later insert of that key on the restored replica (causal length
 * 1, below the peer's tombstone at 2) was dropped by every other replica:
 * a lost write and two replicas different for good. */
static void test_repair_brings_tombstones(void **state) {
  mu_rep a, b;
  sync_session_stats cs;
  mu_row r;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&b, 0, 200, 0);
  rp_sync(&a, &b);
  rp_copy_reopen(&a, "rp-a.db", "rp-a-old.db");
  mu_put(&b, "gone", 1, 1.0, "short-lived");
  mu_delete(&b, "gone");
  rp_now += 1000;
  rp_sync(&a, &b);
  TU_U64(mu_tombstones(&a), 1);
  rp_copy_reopen(&a, "rp-a-old.db", "rp-a.db");
  TU_U64(mu_digest(&a), mu_digest(&b)); /* the same live rows */
  /* b's view of a's log shows the restore (a takes a new site id); then
   * the repair runs */
  assert_int_equal(rp_run(&a, &b, 0, NULL, &cs, NULL), SYNC_EHISTORY);
  assert_int_equal(rp_run(&a, &b, 0, NULL, &cs, NULL), 1);
  if (!cs.repair_equal) rp_why(&a, &b, &cs);
  assert_int_equal(cs.repair_equal, 1);
  assert_true(cs.repair_rows >= 1); /* the tombstone came over */
  TU_U64(mu_tombstones(&a), 1);
  rp_check_equal(&a, &b);
  rp_now += 1000;
  rp_sync(&a, &b);
  /* the key written again on the restored replica wins everywhere */
  mu_put(&a, "gone", 2, 2.0, "back");
  rp_now += 1000;
  rp_sync(&a, &b);
  mu_read(&b, "gone", &r);
  assert_true(r.present);
  assert_int_equal(r.v[0].i, 2);
  rp_check_equal(&a, &b);
  mu_close(&a);
  mu_close(&b);
  tu_remove_db("rp-a-old.db");
}

/* A replica repaired against one that collected a tombstone holds
 * neither the row nor the tombstone (equal), but a third replica still
 * keeps it.  A key written again there started at causal length 1, below
 * the kept tombstone, and every replica that kept it dropped the write:
 * the roots carry what each side collected, and new rows start above. */
static void test_repair_carries_collected_lengths(void **state) {
  mu_rep b, c, d;
  sync_session_stats cs;
  uint64_t gc = 0;
  sync_txn *x;
  mu_row r;
  (void)state;
  rp_open(&b, "rp-b.db", 0xb1);
  rp_open(&c, "rp-c.db", 0xc1);
  rp_open(&d, "rp-d.db", 0xd1);
  rp_fill(&b, 0, 100, 0);
  mu_put(&b, "again", 1, 1.0, "first");
  rp_sync(&c, &b);
  mu_delete(&b, "again");
  rp_now += 1000;
  rp_sync(&c, &b);
  rp_sync(&c, &b);
  TU_OK(sync_txn_begin(b.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  TU_U64(gc, 1);
  TU_U64(mu_tombstones(&c), 1); /* c keeps it */
  assert_int_equal(rp_run(&d, &b, 0, NULL, &cs, NULL), 1);
  assert_int_equal(cs.repair_equal, 1);
  TU_U64(mu_tombstones(&d), 0);
  rp_now += 1000;
  mu_put(&d, "again", 2, 2.0, "second");
  rp_sync(&c, &d);
  mu_read(&c, "again", &r);
  assert_true(r.present);
  assert_int_equal(r.v[0].i, 2);
  rp_sync(&b, &d);
  mu_read(&b, "again", &r);
  assert_true(r.present);
  mu_close(&b);
  mu_close(&c);
  mu_close(&d);
}

/* ---------------------------------------------------------------------
 * Cuts
 * ------------------------------------------------------------------- */
static void rp_cut_setup(mu_rep *a, mu_rep *b) {
  tu_rng g = {77};
  rp_open(a, "rp-a.db", 0xa1);
  rp_open(b, "rp-b.db", 0xb1);
  rp_fill(a, 0, 400, 0);
  rp_sync(b, a);
  rp_now += 1000;
  rp_drift(a, &g, 400, 12, 1, 0);
  rp_drift(b, &g, 400, 12, 2, 0);
  rp_now += 1000;
}

/* The bytes one side sent, in order, each with its offset in the whole
 * conversation as su_run moves it (whole pieces, this direction then the
 * other). */
typedef struct rp_dir {
  unsigned char b[1 << 16];
  size_t at[1 << 16];
  size_t n;
} rp_dir;

static size_t rp_rec_move(sync_session *a, sync_session *b, rp_dir *d,
                          size_t *moved) {
  unsigned char buf[4096];
  size_t total = 0;
  while (sync_session_want_write(a)) {
    sync_outbuf out = {buf, sizeof buf, 0};
    sync_inbuf in;
    int64_t n = sync_session_send(a, &out);
    size_t i;
    if (n <= 0) break;
    for (i = 0; i < (size_t)n && d->n < sizeof d->b; i++) {
      d->b[d->n] = buf[i];
      d->at[d->n++] = *moved + i;
    }
    *moved += (size_t)n;
    total += (size_t)n;
    in.ptr = buf;
    in.size = (size_t)n;
    in.pos = 0;
    sync_session_recv(b, &in);
  }
  return total;
}

/* Offsets in the conversation just after each whole message. */
static size_t rp_bounds(const rp_dir *d, size_t *out, size_t n) {
  size_t off = 0;
  while (off < d->n) {
    size_t k = 1, len = 0;
    int sh = 0;
    while (off + k < d->n && (d->b[off + k] & 0x80))
      len |= (size_t)(d->b[off + k++] & 0x7f) << sh, sh += 7;
    len |= (size_t)d->b[off + k++] << sh;
    off += k + len + 4;
    assert_true(off <= d->n);
    out[n++] = d->at[off - 1] + 1;
  }
  return n;
}

static int rp_sizecmp(const void *x, const void *y) {
  size_t a = *(const size_t *)x, b = *(const size_t *)y;
  return a < b ? -1 : a > b;
}

/* Cut at every message boundary (and at offsets between them), then run
 * again whole: equal. */
static void test_cut_everywhere(void **state) {
  static rp_dir dc, ds;
  static size_t cuts[4096];
  mu_rep a, b;
  sync_session_stats cs;
  sync_session_opts co, so;
  sync_session *c, *s;
  size_t total = 0, ncut, i, step, nb;
  unsigned runs = 0;
  (void)state;
  rp_cut_setup(&a, &b);
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.server = 1;
  TU_OK(sync_session_create(b.env, &co, &c));
  TU_OK(sync_session_create(a.env, &so, &s));
  dc.n = ds.n = 0;
  for (i = 0; i < 1000; i++) {
    size_t n = rp_rec_move(c, s, &dc, &total) + rp_rec_move(s, c, &ds, &total);
    if (sync_session_status(c) && sync_session_status(s)) break;
    if (!n) break;
  }
  assert_int_equal(sync_session_status(c), 1);
  assert_int_equal(sync_session_status(s), 1);
  sync_session_free(c);
  sync_session_free(s);
  mu_close(&a);
  mu_close(&b);
  ncut = rp_bounds(&dc, cuts, 0);
  ncut = rp_bounds(&ds, cuts, ncut);
  nb = ncut;
  assert_true(nb >= 12);
  step = total / 60 + 1;
  for (i = 1; i < total && ncut < sizeof cuts / sizeof cuts[0]; i += step)
    cuts[ncut++] = i;
  qsort(cuts, ncut, sizeof cuts[0], rp_sizecmp);
  for (i = 0; i < ncut; i++) {
    su_pump p;
    if (cuts[i] >= total || (i && cuts[i] == cuts[i - 1])) continue;
    rp_cut_setup(&a, &b);
    TU_OK(sync_session_create(b.env, &co, &c));
    TU_OK(sync_session_create(a.env, &so, &s));
    memset(&p, 0, sizeof p);
    p.budget = cuts[i];
    assert_int_equal(su_run(&p, c, s), 0);
    sync_session_free(c);
    sync_session_free(s);
    /* run again, whole */
    if (rp_run(&b, &a, 0, NULL, &cs, NULL) != 1 || !cs.repair_equal)
      fail_msg("cut at %zu: the second repair did not end equal", cuts[i]);
    rp_check_equal(&b, &a);
    mu_close(&a);
    mu_close(&b);
    runs++;
  }
  print_message("%zu message boundaries, %u cuts\n", nb, runs);
  assert_true(runs >= nb - 1 && runs >= 40);
}

/* ---------------------------------------------------------------------
 * Hostile turns
 * ------------------------------------------------------------------- */
/* A message as the session frames it: type, var length, payload, u32 LE
 * low bits of XXH3-64 over the bytes before it. */
static size_t rp_frame_msg(unsigned char *out, unsigned type,
                           const unsigned char *p, size_t n) {
  unsigned char *q = out;
  uint32_t h;
  *q++ = (unsigned char)type;
  {
    size_t v = n;
    do {
      *q = (unsigned char)(v & 0x7f);
      v >>= 7;
      if (v) *q |= 0x80;
      q++;
    } while (v);
  }
  memcpy(q, p, n);
  q += n;
  h = (uint32_t)XXH3_64bits(out, (size_t)(q - out));
  q[0] = (unsigned char)h;
  q[1] = (unsigned char)(h >> 8);
  q[2] = (unsigned char)(h >> 16);
  q[3] = (unsigned char)(h >> 24);
  return (size_t)(q + 4 - out);
}

static size_t rp_frame_msg_big(unsigned char *out, unsigned type,
                               const unsigned char *p, size_t n) {
  unsigned char *q = out;
  uint32_t h;
  size_t v = n;
  *q++ = (unsigned char)type;
  do {
    *q = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) *q |= 0x80;
    q++;
  } while (v);
  memcpy(q, p, n);
  q += n;
  h = (uint32_t)XXH3_64bits(out, (size_t)(q - out));
  q[0] = (unsigned char)h;
  q[1] = (unsigned char)(h >> 8);
  q[2] = (unsigned char)(h >> 16);
  q[3] = (unsigned char)(h >> 24);
  return (size_t)(q + 4 - out);
}

/* A server that got a repair HELLO and sent its roots; then msg. */
static int rp_hostile(mu_rep *srv, mu_rep *dev, unsigned type,
                      const unsigned char *p, size_t n) {
  sync_session_opts co, so;
  sync_session *c, *s;
  unsigned char buf[8192], m[1024];
  sync_outbuf out = {buf, sizeof buf, 0};
  sync_inbuf in;
  int st;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.server = 1;
  TU_OK(sync_session_create(dev->env, &co, &c));
  TU_OK(sync_session_create(srv->env, &so, &s));
  assert_true(sync_session_send(c, &out) > 0);
  in.ptr = buf;
  in.size = out.pos;
  in.pos = 0;
  TU_OK(sync_session_recv(s, &in));
  out.pos = 0;
  assert_true(sync_session_send(s, &out) > 0); /* WELCOME + roots */
  assert_true(sync_session_want_read(s));
  in.ptr = m;
  in.size = rp_frame_msg(m, type, p, n);
  in.pos = 0;
  sync_session_recv(s, &in);
  out.pos = 0;
  while (sync_session_send(s, &out) > 0) out.pos = 0;
  st = sync_session_status(s);
  sync_session_free(c);
  sync_session_free(s);
  return st;
}

static void test_hostile(void **state) {
  mu_rep srv, dev;
  (void)state;
  rp_open(&srv, "rp-a.db", 0xa1);
  rp_open(&dev, "rp-b.db", 0xb1);
  rp_fill(&srv, 0, 50, 0);
  {
    /* unknown flags */
    static const unsigned char t[] = {0x80};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* an opening turn from the client */
    static const unsigned char t[] = {0x22, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* root masks: a table both leaf and split */
    static const unsigned char t[] = {0x00, 0x01, 0x01};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* root masks naming a table beyond the schema */
    static const unsigned char t[] = {0x00, 0x02, 0x00};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* truncated: the masks are missing */
    static const unsigned char t[] = {0x00};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* a split root without its fingerprints */
    static const unsigned char t[] = {0x00, 0x00, 0x01};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* a split root, then bytes after the fingerprints */
    static const unsigned char t[] = {0x00, 0x00, 0x01, 0x01, 0x00,
                                      1,    2,    3,    4,    9};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* a frame announced for no leaf */
    static const unsigned char t[] = {0x01, 0x00, 0x00};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* DONE with bytes after it */
    static const unsigned char t[] = {0x04, 0x00};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* DATA that no turn announced */
    static const unsigned char t[] = {1, 2, 3};
    assert_int_equal(rp_hostile(&srv, &dev, 4, t, sizeof t), SYNC_EPROTO);
  }
  {
    /* a REQUEST inside a repair */
    static const unsigned char t[] = {0};
    assert_int_equal(rp_hostile(&srv, &dev, 3, t, sizeof t), SYNC_EPROTO);
  }
  {
      /* a leaf root announced with a frame, then a frame whose row lies
       * in no leaf is refused: made from a real conversation below */
  } /* A well-formed DONE ends it cleanly (the control for the above). */
  {
    static const unsigned char t[] = {0x04};
    assert_int_equal(rp_hostile(&srv, &dev, 7, t, sizeof t), 1);
  }
  mu_close(&srv);
  mu_close(&dev);
}

/* A client that never stops splitting.  It keeps count of the lists
 * each side made (all it needs to read the server's turns) and answers
 * every turn with splits and made-up fingerprints: greedy = every leaf
 * and every child of every split the server made (the node counts
 * explode), else only the server's first leaf (one path, one level
 * deeper each turn, down past the last level).  The server must refuse
 * it with SYNC_EPROTO, within bounded turns. */
static unsigned rp_popc(unsigned m) {
  unsigned n = 0;
  for (; m; m &= m - 1) n++;
  return n;
}

static int rp_splitter(mu_rep *srv, mu_rep *dev, int greedy, unsigned *turns,
                       char *why, size_t whycap) {
  sync_session_opts co, so;
  sync_session *c, *s;
  static unsigned char buf[1 << 20], msg[1 << 20], m2[(1 << 20) + 64];
  sync_outbuf out;
  sync_inbuf in;
  size_t ncl = 0, ncs = 0; /* the client's last lists */
  int first = 1, st;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.server = 1;
  so.max_message = 16 << 20;
  TU_OK(sync_session_create(dev->env, &co, &c));
  TU_OK(sync_session_create(srv->env, &so, &s));
  out.ptr = buf;
  out.size = sizeof buf;
  out.pos = 0;
  sync_session_send(c, &out);
  in.ptr = buf;
  in.size = out.pos;
  in.pos = 0;
  TU_OK(sync_session_recv(s, &in));
  for (*turns = 0; *turns < 200 && sync_session_status(s) == 0; (*turns)++) {
    size_t off = 0, n, i, sl = 0, ss = 0, mlen = 0, cs;
    unsigned flags;
    out.pos = 0;
    while (sync_session_send(s, &out) > 0) {
    }
    /* skip WELCOME; find the REPAIR message */
    while (off < out.pos) {
      size_t k = 1, len = 0;
      int sh = 0;
      while (buf[off + k] & 0x80)
        len |= (size_t)(buf[off + k++] & 0x7f) << sh, sh += 7;
      len |= (size_t)buf[off + k++] << sh;
      if (buf[off] == 7) {
        memcpy(msg, buf + off + k, len);
        mlen = len;
      }
      off += k + len + 4;
    }
    if (!mlen) break;
    flags = msg[0];
    i = 1;
    if (flags & 0x20) { /* FIRST: v0 */
      while (msg[i] & 0x80) i++;
      i++;
    }
    if (!first) {
      size_t mb = (ncl + 7) / 8, j;
      for (j = 0; j < ncl; j++) ss += (msg[i + j / 8] >> (j % 8)) & 1;
      i += mb;
      for (j = 0; j < ncs; j++) {
        if (msg[i] == 0xff) {
          unsigned lm = msg[i + 1] | (unsigned)msg[i + 2] << 8;
          unsigned sm = msg[i + 3] | (unsigned)msg[i + 4] << 8;
          sl += rp_popc(lm);
          ss += rp_popc(sm);
          i += 5;
        } else {
          unsigned e, ne = msg[i++];
          for (e = 0; e < ne; e++, i++)
            if ((msg[i] >> 4) == 1)
              sl++;
            else
              ss++;
        }
      }
    }
    /* the reply: no frame */
    n = 0;
    m2[n++] = 0;
    if (first) {
      m2[n++] = 0; /* no leaf root */
      m2[n++] = 1; /* the root split */
      cs = 1;
      ncl = 0;
    } else {
      size_t mb = (sl + 7) / 8, j;
      cs = 0;
      memset(m2 + n, 0, mb);
      for (j = 0; j < sl; j++)
        if (greedy || j == 0) {
          m2[n + j / 8] |= (unsigned char)(1u << (j % 8));
          cs++;
        }
      n += mb;
      for (j = 0; j < ss; j++) {
        if (greedy) {
          m2[n++] = 0xff;
          m2[n++] = 0;
          m2[n++] = 0;
          m2[n++] = 0xff;
          m2[n++] = 0xff;
          cs += 16;
        } else if (j == 0 && sl == 0) {
          m2[n++] = 1; /* no leaf to split: child 0 of the first split */
          m2[n++] = 0x20;
          cs++;
        } else {
          m2[n++] = 0;
        }
      }
      ncl = 0;
    }
    if (n + cs * 50 > sizeof m2) break;
    for (i = 0; i < cs; i++) {
      unsigned c2;
      m2[n++] = 0xff;
      m2[n++] = 0xff;
      for (c2 = 0; c2 < 48; c2++)
        m2[n++] = (unsigned char)(i * 7 + c2 * 13 + 1);
    }
    ncs = cs;
    first = 0;
    {
      /* fragments of 4 MiB at most are not needed: one message */
      static unsigned char framed[(1 << 20) + 128];
      size_t fl = rp_frame_msg_big(framed, 7, m2, n);
      in.ptr = framed;
      in.size = fl;
      in.pos = 0;
      sync_session_recv(s, &in);
    }
  }
  out.pos = 0;
  while (sync_session_send(s, &out) > 0) out.pos = 0;
  st = sync_session_status(s);
  snprintf(why, whycap, "%s", sync_session_errmsg(s));
  sync_session_free(c);
  sync_session_free(s);
  return st;
}

static void test_never_stops_splitting(void **state) {
  mu_rep srv, dev;
  unsigned turns;
  char why[256];
  (void)state;
  rp_open(&srv, "rp-a.db", 0xa1);
  rp_open(&dev, "rp-b.db", 0xb1);
  rp_fill(&srv, 0, 3000, 0);
  assert_int_equal(rp_splitter(&srv, &dev, 1, &turns, why, sizeof why),
                   SYNC_EPROTO);
  assert_non_null(strstr(why, "too many nodes"));
  assert_true(turns <= 6);
  assert_int_equal(rp_splitter(&srv, &dev, 0, &turns, why, sizeof why),
                   SYNC_EPROTO);
  assert_non_null(strstr(why, "below the last level"));
  assert_true(turns >= 10 && turns <= 18); /* one level a turn, 16 levels */
  mu_close(&srv);
  mu_close(&dev);
}

/* A frame with rows outside the leaves of its turn: a client whose
 * turns declare one leaf and whose frame carries the rows of another.
 * Made by running a real repair and changing the table selection of the
 * client's frame is not possible from outside; instead the server is
 * fed a real client's first turn (a root leaf: the client is empty) and
 * then a frame cut by a replica for the same server with rows of a
 * table outside the repair. */
static const sync_column_def rp_c1[1] = {{"n", SYNC_INTEGER, 0}};
static const sync_table_def rp_t2[2] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
    {"u", SYNC_TEXT, rp_c1, 1},
};

static int rp_auth_t0(void *ctx, const uint8_t site[16], const void *cred,
                      size_t len, sync_rights *r) {
  (void)ctx;
  (void)site;
  (void)cred;
  (void)len;
  r->read[0] = r->write[0] = 1; /* table 0 only */
  r->relay = 1;
  return 0;
}

static void test_rows_outside_leaves(void **state) {
  mu_rep srv, dev;
  uint8_t id[16];
  sync_session_opts co, so;
  sync_session *c, *s;
  unsigned char buf[65536];
  sync_outbuf out = {buf, sizeof buf, 0};
  sync_inbuf in;
  (void)state;
  mu_site(id, 0xa1);
  mu_open_schema(&srv, "rp-a.db", id, &rp_now, 0, rp_t2, 2);
  mu_site(id, 0xb1);
  mu_open_schema(&dev, "rp-b.db", id, &rp_now, 0, rp_t2, 2);
  rp_fill(&srv, 0, 20, 0);
  {
    sync_txn *x;
    sync_value v = sync_int(1);
    TU_OK(sync_txn_begin(dev.env, 0, &x));
    TU_OK(sync_put(x, 1, "zz", 2, &v, 1));
    TU_OK(sync_txn_commit(x));
  }
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.server = 1;
  so.authorize = rp_auth_t0;
  TU_OK(sync_session_create(dev.env, &co, &c));
  TU_OK(sync_session_create(srv.env, &so, &s));
  /* honest until the client's frame */
  {
    int k;
    for (k = 0; k < 2; k++) {
      out.pos = 0;
      sync_session_send(c, &out);
      in.ptr = buf;
      in.size = out.pos;
      in.pos = 0;
      sync_session_recv(s, &in);
      out.pos = 0;
      sync_session_send(s, &out);
      in.ptr = buf;
      in.size = out.pos;
      in.pos = 0;
      sync_session_recv(c, &in);
    }
  }
  /* The client repaired table 0 only (the server's rights); its
   * frames never carry table 1.  Feed the server a turn announcing a
   * root leaf and a session frame (major 3, written here: the first
   * frame of the session from the client) holding a row of table 1, a
   * tombstone of "zz". */
  sync_session_free(c);
  sync_session_free(s);
  {
    static const unsigned char body[] = {
        0x00,             /* chunk flags: all from the context */
        0x01, 0x00,       /* end cursor: start + 0, seq 0 */
        0x01,             /* one site: the sender */
        0x01, 0x00, 0x01, /* one stamp group: site 0, one stamp */
        0x00, 0x80, 0x80, 0x04, /* escape, HLC 1 << 16 */
        0x00,             /* the sender's vector: nothing */
        0x01, 0x01, 0x01, /* one table: 1, no column */
        0x01,             /* one row */
        0x0f, 0x01, 0x00, 0x02, 'z', 'z', 0x00, 0x02}; /* T L S C */
    unsigned char m[4096], frame[64];
    size_t flen = 0;
    static const unsigned char leaf_root[] = {0x01, 0x01, 0x00};
    size_t mn;
    uint64_t sum;
    int i;
    frame[flen++] = 0x30; /* major 3, no flags */
    frame[flen++] = (unsigned char)sizeof body;
    memcpy(frame + flen, body, sizeof body);
    flen += sizeof body;
    sum = XXH3_64bits(frame, flen); /* seed 0: the first frame */
    for (i = 0; i < 8; i++) frame[flen++] = (unsigned char)(sum >> (8 * i));
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    co.repair = 1;
    so.server = 1;
    so.authorize = rp_auth_t0;
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    out.pos = 0;
    sync_session_send(c, &out);
    in.ptr = buf;
    in.size = out.pos;
    in.pos = 0;
    TU_OK(sync_session_recv(s, &in));
    out.pos = 0;
    sync_session_send(s, &out);
    mn = rp_frame_msg(m, 7, leaf_root, sizeof leaf_root);
    in.ptr = m;
    in.size = mn;
    in.pos = 0;
    TU_OK(sync_session_recv(s, &in));
    assert_int_equal(sync_session_status(s), 0);
    mn = rp_frame_msg(m, 4, frame, flen);
    in.ptr = m;
    in.size = mn;
    in.pos = 0;
    sync_session_recv(s, &in);
    out.pos = 0;
    while (sync_session_send(s, &out) > 0) out.pos = 0;
    assert_int_equal(sync_session_status(s), SYNC_EPROTO);
    sync_session_free(c);
    sync_session_free(s);
  }
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * Diff: writes nothing, names the keys
 * ------------------------------------------------------------------- */
static void test_diff(void **state) {
  mu_rep a, b;
  sync_session_stats cs;
  rp_diffs d;
  uint64_t da, db, va, vb;
  unsigned i;
  int seen_local = 0, seen_remote = 0, seen_both = 0;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&a, 0, 5000, 0);
  rp_sync(&b, &a);
  rp_now += 1000;
  mu_put(&b, "only-on-b", 1, 1.0, "b");                 /* client only */
  mu_put(&a, "only-on-a", 2, 2.0, "a");                 /* server only */
  mu_update(&b, "row-00000042", MU_COL_I, sync_int(9)); /* both, differing */
  mu_delete(&a, "row-00000043"); /* live on b, a tombstone on a */
  da = mu_digest(&a);
  db = mu_digest(&b);
  va = mu_version(&a);
  vb = mu_version(&b);
  memset(&d, 0, sizeof d);
  assert_int_equal(rp_run(&b, &a, 1, &d, &cs, NULL), 1);
  assert_int_equal(mu_digest(&a), da);
  assert_int_equal(mu_digest(&b), db);
  assert_int_equal(mu_version(&a), va);
  assert_int_equal(mu_version(&b), vb);
  assert_int_equal(d.n, 4);
  for (i = 0; i < d.n; i++) {
    if (!strcmp(d.keys[i], "only-on-b")) {
      assert_int_equal(d.sides[i], SYNC_DIFF_LOCAL);
      seen_local = 1;
    } else if (!strcmp(d.keys[i], "only-on-a")) {
      assert_int_equal(d.sides[i], SYNC_DIFF_REMOTE);
      seen_remote = 1;
    } else if (!strcmp(d.keys[i], "row-00000042") ||
               !strcmp(d.keys[i], "row-00000043")) {
      assert_int_equal(d.sides[i], SYNC_DIFF_BOTH);
      seen_both++;
    } else {
      fail_msg("unexpected key %s", d.keys[i]);
    }
  }
  assert_true(seen_local && seen_remote && seen_both == 2);
  /* the repair then mends what the diff named */
  assert_int_equal(rp_run(&b, &a, 0, NULL, &cs, NULL), 1);
  rp_check_equal(&b, &a);
  mu_close(&a);
  mu_close(&b);
}

/* Rights: the server's rows of a table the client may only read reach
 * the client; the client's rows there are refused and counted. */
static int rp_auth_ro(void *ctx, const uint8_t site[16], const void *cred,
                      size_t len, sync_rights *r) {
  (void)ctx;
  (void)site;
  (void)cred;
  (void)len;
  r->read[0] = 1;
  r->relay = 1;
  return 0;
}

static void test_rights(void **state) {
  mu_rep a, b;
  sync_session_opts co, so;
  sync_session_stats cs, ss;
  mu_row r;
  (void)state;
  rp_open(&a, "rp-a.db", 0xa1);
  rp_open(&b, "rp-b.db", 0xb1);
  rp_fill(&a, 0, 500, 0);
  rp_sync(&b, &a);
  rp_now += 1000;
  mu_update(&a, "row-00000001", MU_COL_I, sync_int(11));
  mu_put(&b, "from-client", 1, 1.0, "x");
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.authorize = rp_auth_ro;
  assert_int_equal(rp_pair(&b, &a, &co, &so, &cs, &ss), 1);
  mu_read(&b, "row-00000001", &r);
  assert_int_equal(r.v[0].i, 11);
  mu_read(&a, "from-client", &r);
  assert_false(r.present);
  assert_true(ss.applied.refused >= 1);
  assert_int_equal(cs.repair_equal, 0); /* it cannot end equal */
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Test vectors: a fixed conversation, message by message
 * (tests/vectors/repair.txt; REPAIR_VECTORS_WRITE=1 rewrites it)
 * ------------------------------------------------------------------- */
static const char *rp_type_name(unsigned t) {
  static const char *n[] = {"?",    "HELLO", "WELCOME", "REQUEST",
                            "DATA", "ERROR", "PLAN",    "REPAIR"};
  return (t & 0x7f) < 8 ? n[t & 0x7f] : "?";
}

/* Append the whole messages of bytes [p, p + n) to text, one a line. */
static void rp_transcribe(char **text, size_t *len, const char *who,
                          const unsigned char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    uint64_t ml = 0;
    size_t k = 1, i, total;
    int shift = 0;
    while (off + k < n) {
      ml |= (uint64_t)(p[off + k] & 0x7f) << shift;
      shift += 7;
      if (!(p[off + k++] & 0x80)) break;
    }
    total = k + (size_t)ml + 4;
    assert_true(off + total <= n);
    *text = realloc(*text, *len + 32 + 2 * total);
    assert_non_null(*text);
    *len += (size_t)sprintf(*text + *len, "%s %s ", who, rp_type_name(p[off]));
    for (i = 0; i < total; i++)
      *len += (size_t)sprintf(*text + *len, "%02x", p[off + i]);
    (*text)[(*len)++] = '\n';
    off += total;
  }
}

static size_t rp_move_rec(sync_session *a, sync_session *b, char **text,
                          size_t *len, const char *who) {
  unsigned char buf[65536];
  sync_outbuf out = {buf, sizeof buf, 0};
  sync_inbuf in;
  while (sync_session_want_write(a) && out.pos < out.size)
    if (sync_session_send(a, &out) <= 0) break;
  if (!out.pos) return 0;
  rp_transcribe(text, len, who, buf, out.pos);
  in.ptr = buf;
  in.size = out.pos;
  in.pos = 0;
  sync_session_recv(b, &in);
  return out.pos;
}

static void test_vectors(void **state) {
  uint64_t now = 1700000000000ull;
  uint8_t ia[16], ib[16];
  mu_rep a, b;
  sync_session_opts co, so;
  sync_session *c, *s;
  char *text = NULL, k[32];
  size_t len = 0, flen = 0;
  unsigned char *want;
  unsigned i;
  (void)state;
  mu_site(ia, 0xa1);
  mu_site(ib, 0xb1);
  mu_open(&a, "rp-a.db", ia, &now, 0);
  mu_open(&b, "rp-b.db", ib, &now, 0);
  for (i = 0; i < 40; i++) {
    rp_key(k, sizeof k, i);
    mu_put(&a, k, (int64_t)i, i / 2.0, "x");
    now += 1;
  }
  rp_sync(&b, &a);
  now += 1000;
  mu_update(&b, "row-00000003", MU_COL_I, sync_int(-3));
  mu_put(&a, "row-00000100", 100, 1.0, "new");
  mu_delete(&a, "row-00000007");
  now += 1000;
  text = malloc(256);
  assert_non_null(text);
  len = (size_t)sprintf(text,
                        "# tests/vectors/repair.txt - a repair session, "
                        "message by message (test_repair.c, test_vectors):\n"
                        "# C = client (site b1..b1), S = server (site "
                        "a1..a1), then the message type and its bytes.\n");
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.repair = 1;
  so.server = 1;
  TU_OK(sync_session_create(b.env, &co, &c));
  TU_OK(sync_session_create(a.env, &so, &s));
  for (i = 0; i < 100; i++) {
    size_t n = rp_move_rec(c, s, &text, &len, "C") +
               rp_move_rec(s, c, &text, &len, "S");
    if (sync_session_status(c) && sync_session_status(s)) break;
    if (!n) break;
  }
  assert_int_equal(sync_session_status(c), 1);
  assert_int_equal(sync_session_status(s), 1);
  sync_session_free(c);
  sync_session_free(s);
  rp_check_equal(&b, &a);
  if (getenv("REPAIR_VECTORS_WRITE")) {
    assert_int_equal(tu_write_file("../tests/vectors/repair.txt", text, len),
                     0);
  } else {
    /* Tests run in build/; SYNC_VECTORS names the folder elsewhere (the
     * cross tests run each program in a scratch folder of its own). */
    const char *vdir = getenv("SYNC_VECTORS");
    char path[4096];
    snprintf(path, sizeof path, "%s/repair.txt",
             vdir ? vdir : "../tests/vectors");
    want = tu_read_file(path, &flen);
    if (!want) want = tu_read_file("tests/vectors/repair.txt", &flen);
    assert_non_null(want);
    if (flen != len || memcmp(want, text, len))
      fail_msg("the conversation differs from tests/vectors/repair.txt:\n%.*s",
               (int)len, text);
    free(want);
  }
  free(text);
  mu_close(&a);
  mu_close(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identical),
      cmocka_unit_test(test_one_in_many),
      cmocka_unit_test(test_random_drift),
      cmocka_unit_test(test_restore_and_collected),
      cmocka_unit_test(test_collected_other_side),
      cmocka_unit_test(test_restored_collector_keeps_lost_write),
      cmocka_unit_test(test_copy_of_restore_keeps_lost_write),
      cmocka_unit_test(test_restored_sender_found_by_request_vector),
      cmocka_unit_test(test_restored_sender_found_by_repaired_vector),
      cmocka_unit_test(test_repair_brings_tombstones),
      cmocka_unit_test(test_repair_carries_collected_lengths),
      cmocka_unit_test(test_cut_everywhere),
      cmocka_unit_test(test_hostile),
      cmocka_unit_test(test_rows_outside_leaves),
      cmocka_unit_test(test_never_stops_splitting),
      cmocka_unit_test(test_diff),
      cmocka_unit_test(test_rights),
      cmocka_unit_test(test_vectors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
