/*
 * test_internal_fleet.c - fleet lifecycles through the in-process API
 * (sync_request_make / sync_delta_make / sync_delta_apply), with a final
 * round of repair sessions.  Five replicas write a small key space,
 * pull from each other in chunks of random size (runs cut at random),
 * collect tombstones (also after settling rounds), are snapshotted and restored in place from a
 * snapshot, or copied over another replica as a new one; a pull that
 * meets SYNC_ESTALE resets the peer, one that meets SYNC_EHISTORY renews
 * the replica it names.  Before each pull the requester checks the
 * sender's view of its own log, as a session's WELCOME does (the reason
 * this test reaches internal symbols).  Every scenario must end with one
 * digest on every replica.
 *
 * SYNC_FLEET_SCENARIOS sets the count (default 1000), SYNC_FLEET_SEED the
 * first seed; a failure prints the seed that replays it alone.
 */
#include "sess_util.h"

#include "reject.h"

#include <inttypes.h>

#define NR 5
#define NKEYS 12

typedef struct fl_world {
  uint64_t now, rng, seed;
  mu_rep r[NR];
  unsigned char *snap[NR];
  size_t snapn[NR];
  int restored[NR]; /* restored since its last copy: not copied again */
  unsigned long renewals, stale, collected, records;
} fl_world;

static fl_world W;

static uint64_t fl_rnd(uint64_t n) {
  uint64_t z = (W.rng += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return (z ^ (z >> 31)) % n;
}

static void fl_renew(mu_rep *r) {
  sync_txn *t;
  TU_OK(sync_txn_begin(r->env, 0, &t));
  TU_OK(sync_site_renew(t));
  TU_OK(sync_txn_commit(t));
  TU_OK(sync_env_site_id(r->env, r->site));
  W.renewals++;
}

/* Pull r from s until the run ends or is cut; 1 when r or s had to start
 * again (reset, renewal), else 0. */
static int fl_pull(mu_rep *r, mu_rep *s) {
  sync_txn *rt, *st;
  int n, rc;
  {
    sx_peer pv;
    TU_OK(sync_txn_begin(s->env, SYNC_TXN_RDONLY, &st));
    rc = sx_peer_get(st, r->site, &pv);
    sync_txn_abort(st);
    if (rc == 0) {
      TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &rt));
      rc = sx_history_check(rt, sx_cursor_version(&pv.cur), &pv.mark);
      sync_txn_abort(rt);
      if (rc == SYNC_EHISTORY) {
        fl_renew(r);
        return 1;
      }
    }
    assert_true(rc == 0 || rc == SYNC_NOTFOUND);
  }
  for (n = 0; n < 10000; n++) {
    sync_request *req = NULL;
    sync_delta *d = NULL;
    sync_delta_opts o;
    sync_apply_report rep;
    int last;
    memset(&o, 0, sizeof o);
    o.max_rows = 1 + (size_t)fl_rnd(5);
    TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &rt));
    TU_OK(sync_request_make(rt, s->site, &req));
    sync_txn_abort(rt);
    TU_OK(sync_txn_begin(s->env, 0, &st));
    rc = sync_request_ack(st, req);
    if (rc == 0) rc = sync_delta_make(st, req, &o, &d);
    sync_request_free(req);
    if (rc == SYNC_EHISTORY) {
      sync_txn_abort(st);
      fl_renew(s);
      return 1;
    }
    if (rc == SYNC_ESTALE) {
      sync_txn_abort(st);
      TU_OK(sync_txn_begin(r->env, 0, &rt));
      TU_OK(sync_peer_reset(rt, s->site));
      TU_OK(sync_txn_commit(rt));
      W.stale++;
      return 1;
    }
    TU_OK(rc);
    TU_OK(sync_txn_commit(st));
    last = sync_delta_last(d);
    TU_OK(sync_txn_begin(r->env, 0, &rt));
    TU_OK(sync_delta_apply(rt, d, SYNC_APPLY_MERGE, &rep));
    TU_OK(sync_txn_commit(rt));
    sync_delta_free(d);
    if (rep.renewed) { /* r met a write of its id it never made */
      TU_OK(sync_env_site_id(r->env, r->site));
      W.renewals++;
      return 1;
    }
    if (last || fl_rnd(20) == 0) return 0;
  }
  fail_msg("seed %" PRIu64 ": a pull did not end", W.seed);
  return 0;
}

static void fl_event(void) {
  int a = (int)fl_rnd(NR), b = (int)fl_rnd(NR);
  char key[8];
  snprintf(key, sizeof key, "k%d", (int)fl_rnd(NKEYS));
  W.now += 1 + fl_rnd(3);
  switch (fl_rnd(16)) {
  case 13: { /* settle: pulls among all, then collections everywhere */
    int x, y;
    for (x = 0; x < NR; x++)
      for (y = 0; y < NR; y++)
        if (x != y) fl_pull(&W.r[x], &W.r[y]);
    for (x = 0; x < NR; x++) {
      sync_txn *t;
      uint64_t n;
      TU_OK(sync_txn_begin(W.r[x].env, 0, &t));
      TU_OK(sync_gc(t, &n));
      TU_OK(sync_txn_commit(t));
      W.collected += n;
    }
    break;
  }
  case 0:
  case 1:
  case 2:
    mu_put(&W.r[a], key, (int64_t)fl_rnd(100), 1.0, "v");
    break;
  case 3: {
    mu_row row;
    mu_read(&W.r[a], key, &row);
    if (row.present) mu_delete(&W.r[a], key);
    break;
  }
  case 4: {
    sync_txn *t;
    uint64_t n;
    TU_OK(sync_txn_begin(W.r[a].env, 0, &t));
    TU_OK(sync_gc(t, &n));
    TU_OK(sync_txn_commit(t));
    W.collected += n;
    break;
  }
  case 10: /* a backup of a's file */
    sync_env_close(W.r[a].env);
    free(W.snap[a]);
    W.snap[a] = tu_read_file(W.r[a].path, &W.snapn[a]);
    assert_non_null(W.snap[a]);
    mu_reopen(&W.r[a]);
    break;
  case 11: /* a put back from its backup, in place */
    if (!W.snap[a]) break;
    sync_env_close(W.r[a].env);
    TU_OK(tu_write_file(W.r[a].path, W.snap[a], W.snapn[a]));
    W.restored[a] = 1;
    mu_reopen(&W.r[a]);
    break;
  case 12: /* a's file copied over b's: b becomes a new replica */
    /* A copy of a replica restored and not yet found out inherits its
     * false claims, and a restore to before a copy makes the copy the
     * only holder of writes the fleet thinks lost: both need the repair
     * of the final round more than once, so leave them out. */
    if (a == b || W.restored[a]) break;
    sync_env_close(W.r[a].env);
    sync_env_close(W.r[b].env);
    {
      size_t n = 0;
      unsigned char *f = tu_read_file(W.r[a].path, &n);
      assert_non_null(f);
      tu_remove_db(W.r[b].path);
      TU_OK(tu_write_file(W.r[b].path, f, n));
      free(f);
    }
    free(W.snap[a]);
    W.snap[a] = NULL;
    free(W.snap[b]);
    W.snap[b] = NULL;
    W.restored[b] = 0;
    mu_reopen(&W.r[a]);
    W.r[b].random_calls = 1; /* not a new file: draws are not its id */
    mu_reopen(&W.r[b]);
    break;
  default:
    if (a != b) fl_pull(&W.r[a], &W.r[b]);
  }
}

static void fl_scenario(uint64_t seed) {
  int i, x, y, e, nev, round;
  memset(&W, 0, sizeof W);
  W.seed = seed;
  W.rng = seed;
  W.now = UINT64_C(1700000000000);
  for (i = 0; i < NR; i++) {
    uint8_t s[16];
    char p[32];
    snprintf(p, sizeof p, "t_fleet_%d.db", i);
    mu_site(s, (uint8_t)(0x10 + i));
    mu_open(&W.r[i], p, s, &W.now, (int64_t)fl_rnd(5));
  }
  nev = 60 + (int)fl_rnd(60);
  for (e = 0; e < nev; e++) fl_event();
  /* Repairs between every pair, then pulls until nothing moves. */
  for (x = 0; x < NR; x++)
    for (y = 0; y < NR; y++) {
      sync_session_opts co;
      int rc;
      if (x == y) continue;
      memset(&co, 0, sizeof co);
      co.repair = 1;
      /* Each side may find it was restored once: from the other's view
       * of its log, or from a write of its id it never made. */
      rc = su_sync(&W.r[x], &W.r[y], &co, NULL, NULL, NULL);
      for (i = 0; i < 2 && rc == SYNC_EHISTORY; i++)
        rc = su_sync(&W.r[x], &W.r[y], &co, NULL, NULL, NULL);
      TU_OK(sync_env_site_id(W.r[x].env, W.r[x].site));
      TU_OK(sync_env_site_id(W.r[y].env, W.r[y].site));
      if (rc != 1)
        fail_msg("seed %" PRIu64 ": repair %d <- %d ended with %d; replay with "
                 "SYNC_FLEET_SEED=%" PRIu64 " SYNC_FLEET_SCENARIOS=1",
                 seed, x, y, rc, seed);
    }
  for (round = 0; round < 12; round++)
    for (x = 0; x < NR; x++)
      for (y = 0; y < NR; y++)
        if (x != y)
          while (fl_pull(&W.r[x], &W.r[y])) {
          }
  for (i = 1; i < NR; i++)
    if (mu_digest(&W.r[i]) != mu_digest(&W.r[0]))
      fail_msg("seed %" PRIu64 ": replica %d ends with another digest than "
               "replica 0; replay with SYNC_FLEET_SEED=%" PRIu64
               " SYNC_FLEET_SCENARIOS=1",
               seed, i, seed);
  /* And one set of renewal records: each reaches every replica, though
   * runs carry only those a requester may lack (renew.c). */
  for (i = 0; i < NR; i++) {
    sync_stamp rec[2][64];
    size_t n[2];
    int k;
    for (k = 0; k < 2; k++) {
      sync_txn *t;
      TU_OK(sync_txn_begin(W.r[k ? i : 0].env, SYNC_TXN_RDONLY, &t));
      TU_OK(sync_renewals_get(t, rec[k], 64, &n[k]));
      sync_txn_abort(t);
      assert_true(n[k] <= 64);
    }
    if (n[0] != n[1] || (n[0] && memcmp(rec[0], rec[1], n[0] * sizeof rec[0][0])))
      fail_msg("seed %" PRIu64 ": replica %d keeps %zu renewal records, "
               "replica 0 %zu (or others); replay with SYNC_FLEET_SEED=%" PRIu64
               " SYNC_FLEET_SCENARIOS=1",
               seed, i, n[1], n[0], seed);
    W.records += n[1];
  }
  for (i = 0; i < NR; i++) {
    mu_close(&W.r[i]);
    free(W.snap[i]);
  }
}

static void test_fleet_lifecycles_converge(void **state) {
  const char *n = getenv("SYNC_FLEET_SCENARIOS"), *s = getenv("SYNC_FLEET_SEED");
  uint64_t count = n ? strtoull(n, NULL, 0) : 1000, first = s ? strtoull(s, NULL, 0) : 0x1234,
           i, renewals = 0, stale = 0, collected = 0, records = 0;
  (void)state;
  for (i = 0; i < count; i++) {
    fl_scenario(first + i * 7919);
    renewals += W.renewals;
    stale += W.stale;
    collected += W.collected;
    records += W.records;
  }
  printf("%" PRIu64 " scenarios: %" PRIu64 " renewals, %" PRIu64
         " stale pulls, %" PRIu64 " tombstones collected, %" PRIu64
         " renewal records held at the end\n",
         count, renewals, stale, collected, records);
  assert_true(count == 0 || collected > 0);
}

/* The stamps of a file's own history are the HLCs of its transactions
 * that made stamps: none lies between the clock an epoch began at and
 * the first such transaction in it, nor above the clock.  A stamp of the
 * file's id found there is a write its history never made. */
static void test_own_stamps_outside_history(void **state) {
  mu_rep r;
  uint8_t id[16];
  uint64_t now = 1700000000000ull, t1, t2, held = 1;
  sync_txn *x;
  (void)state;
  mu_site(id, 0x5a);
  mu_open(&r, "t_ifleet_own.db", id, &now, 0);
  mu_put(&r, "a", 1, 1.0, "a");
  TU_OK(sync_txn_begin(r.env, SYNC_TXN_RDONLY, &x));
  t1 = x->hlc_last; /* the stamp of that write: the clock follows it */
  sync_txn_abort(x);
  sync_env_close(r.env); /* the next open begins an epoch at t1 */
  now += 5000;
  mu_reopen(&r);
  now += 5000;
  mu_put(&r, "b", 2, 2.0, "b");
  TU_OK(sync_txn_begin(r.env, SYNC_TXN_RDONLY, &x));
  t2 = x->hlc_last;
  assert_true(t2 > t1 + ((uint64_t)5000 << 16));
  /* Stamps the history made: not foreign. */
  TU_RC(sx_hist_foreign(x, t1, x->hlc_last, 0, &held), 0);
  TU_RC(sx_hist_foreign(x, t2, x->hlc_last, 0, &held), 0);
  /* Between the first epoch's clock (0: a new file) and its first write,
   * then between the second epoch's clock (t1) and its first (t2). */
  TU_RC(sx_hist_foreign(x, t1 - 1, x->hlc_last, 0, &held), 1);
  TU_U64(held, 0);
  TU_RC(sx_hist_foreign(x, t1 + 1, x->hlc_last, 0, &held), 1);
  TU_U64(held, t1);
  TU_RC(sx_hist_foreign(x, t2 - 1, x->hlc_last, 0, &held), 1);
  TU_U64(held, t1);
  /* Above the clock: the latest epoch's. */
  TU_RC(sx_hist_foreign(x, t2 + 1, x->hlc_last, 0, &held), 1);
  TU_U64(held, t1);
  /* Claims (vector entries): clocks the history stood at, or one below
   * a stamp of its own (an exit lowers an entry so), are its own; one
   * between the clock an epoch began at and one below the first it
   * moved to is not. */
  TU_RC(sx_hist_foreign(x, t1, x->hlc_last, 1, &held), 0);
  TU_RC(sx_hist_foreign(x, t2, x->hlc_last, 1, &held), 0);
  TU_RC(sx_hist_foreign(x, t2 - 1, x->hlc_last, 1, &held), 0);
  TU_RC(sx_hist_foreign(x, t1 + 1, x->hlc_last, 1, &held), 1);
  TU_U64(held, t1);
  TU_RC(sx_hist_foreign(x, t2 - 2, x->hlc_last, 1, &held), 1);
  TU_RC(sx_hist_foreign(x, t2 + 1, x->hlc_last, 1, &held), 1);
  sync_txn_abort(x);
  /* An open that makes no stamp of its own: everything above the clock
   * it began at, up to the next one's first stamp, is outside. */
  sync_env_close(r.env);
  now += 5000;
  mu_reopen(&r);
  TU_OK(sync_txn_begin(r.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sx_hist_foreign(x, t2 + 1, x->hlc_last, 0, &held), 1);
  TU_U64(held, t2);
  TU_RC(sx_hist_foreign(x, t2, x->hlc_last, 0, &held), 0);
  sync_txn_abort(x);
  mu_close(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_stamps_outside_history),
      cmocka_unit_test(test_fleet_lifecycles_converge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
