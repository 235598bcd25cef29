/*
 * test_internal_fold.c - counter fold records over a fleet's life: a
 * replica keeps one per retired site, for good, so their number has no
 * bound but the disk's.  The records are written here through the
 * internal call a retirement makes (sx_fold_put), thousands at a time, as
 * years of retirements would leave them; their heir is the replica that
 * keeps them, so every run's last chunk names it.
 */
#include "merge_util.h"

#include "fold.h"

#define T0 1700000000000ull
#define NFOLDS 9000

static uint64_t now_ms;

static size_t folds_of(mu_rep *r) {
  sync_txn *x;
  size_t n;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_folds_get(x, NULL, 0, &n));
  sync_txn_abort(x);
  return n;
}

static void fold_site(int i, uint8_t site[16]) {
  memset(site, 0, 16);
  site[0] = 0xf0;
  site[1] = (uint8_t)(i >> 8);
  site[2] = (uint8_t)i;
}

/* NFOLDS records with heir s, in transactions of per records each (one
 * HLC per transaction: a retirement's chain shares its HLC). */
static void put_folds(mu_rep *s, int per) {
  int i = 0;
  while (i < NFOLDS) {
    sync_txn *x;
    int j;
    now_ms += 5;
    mu_put(s, "tick", i, 0.0, NULL);
    TU_OK(sync_txn_begin(s->env, 0, &x));
    for (j = 0; j < per && i < NFOLDS; j++, i++) {
      uint8_t site[16];
      int added;
      fold_site(i, site);
      TU_OK(sx_fold_put(x, site, x->self, x->hlc_last, 1, &added));
      assert_true(added);
    }
    TU_OK(sync_txn_commit(x));
  }
}

/* Pull e from s until it keeps every record; the number of runs. */
static int pull_all(mu_rep *e, mu_rep *s) {
  int runs;
  for (runs = 0; runs < 10 && folds_of(e) < NFOLDS; runs++)
    mu_pull(e, s, 0, 1, NULL);
  TU_U64(folds_of(e), NFOLDS);
  return runs;
}

/* Before the fix a replica kept at most 4,096 records in one meta value
 * (rewritten whole for each new one): the 4,097th retirement failed with
 * SYNC_ELIMIT, and so did every apply that brought a replica its
 * 4,097th record, for good; a frame carried at most 4,096.  Now S keeps
 * 9,000 (each its own item), they read back in order after a reopen, and
 * E, joining, gets them all: about 4,096 a run (to the end of an HLC),
 * the oldest first, the vector entry for S held below the first left out
 * until the last run.  Once E has them all a run carries none. */
static void test_fold_records_have_no_limit(void **state) {
  mu_rep s, e;
  uint8_t id[16];
  sync_fold first, last;
  sync_txn *x;
  sync_delta *d;
  size_t n;
  (void)state;
  now_ms = T0;
  mu_site(id, 0x5f);
  mu_open(&s, "t_ifold_s.db", id, &now_ms, 0);
  put_folds(&s, 500);
  TU_U64(folds_of(&s), NFOLDS);
  sync_env_close(s.env);
  mu_reopen(&s);
  TU_OK(sync_txn_begin(s.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_folds_get(x, &first, 1, &n));
  TU_U64(n, NFOLDS);
  sync_txn_abort(x);
  {
    uint8_t site[16];
    fold_site(0, site);
    assert_memory_equal(first.site, site, 16);
    assert_memory_equal(first.heir, s.site, 16);
  }
  mu_site(id, 0x5e);
  mu_open(&e, "t_ifold_e.db", id, &now_ms, 0);
  TU_U64(pull_all(&e, &s), 2); /* 4,500 + 4,500: 500 an HLC */
  TU_OK(sync_txn_begin(e.env, SYNC_TXN_RDONLY, &x));
  {
    sync_fold *all = (sync_fold *)malloc(NFOLDS * sizeof *all);
    assert_non_null(all);
    TU_OK(sync_folds_get(x, all, NFOLDS, &n));
    last = all[NFOLDS - 1];
    free(all);
  }
  sync_txn_abort(x);
  {
    uint8_t site[16];
    fold_site(NFOLDS - 1, site);
    assert_memory_equal(last.site, site, 16);
    assert_memory_equal(last.heir, s.site, 16);
  }
  d = mu_cut(&e, &s, 0, 0);
  TU_U64(d->nfold, 0);
  assert_true(sync_delta_last(d));
  sync_delta_free(d);
  TU_U64(mu_digest(&e), mu_digest(&s));
  mu_close(&e);
  mu_close(&s);
}

/* Records of one HLC (a retirement whose chain is longer than a chunk's
 * share) go in one chunk: the vector entry that holds the rest back can
 * only fall below an HLC, so splitting them would send the same ones
 * again in every run.  9,000 records of one HLC: one run. */
static void test_fold_records_of_one_hlc_go_together(void **state) {
  mu_rep s, e;
  uint8_t id[16];
  (void)state;
  now_ms = T0;
  mu_site(id, 0x6f);
  mu_open(&s, "t_ifold_s.db", id, &now_ms, 0);
  put_folds(&s, NFOLDS);
  mu_site(id, 0x6e);
  mu_open(&e, "t_ifold_e.db", id, &now_ms, 0);
  TU_U64(pull_all(&e, &s), 1);
  mu_close(&e);
  mu_close(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fold_records_have_no_limit),
      cmocka_unit_test(test_fold_records_of_one_hlc_go_together),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
