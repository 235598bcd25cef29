/*
 * test_mvcc.c - snapshots under concurrent writes and replication, the
 * test `make tsan` runs under ThreadSanitizer (it also runs the usual
 * three ways).  On one env: a writer thread commits the crash harness's
 * group workload (tests/crash/crash_util.h: each transaction writes whole
 * groups and the meta row), an applier thread writes to a second replica
 * and pulls its changes in small chunks, and reader threads check every
 * snapshot they take:
 *   - the local table is exactly the model after the transaction the
 *     meta row names (no group half there, no generation mixed);
 *   - every replicated row is one the second replica wrote (content
 *     matches its group, index and generation);
 *   - checksums, cursor counts and the change log agree (cu_integrity);
 *   - the snapshot does not move while held (same version and digest
 *     before and after a pause).
 * The map starts at 1 MiB so that it grows while readers run.
 *
 * cmocka's assertions are not thread-safe: threads record the first
 * failure and the main thread asserts after joining.
 */
#include "testutil.h"

#include "crash/crash_util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define DB_A "t_mvcc_a.db"
#define DB_B "t_mvcc_b.db"
#define NREADERS 3
#define WRITER_TXNS 600
#define B_TXNS 120

static uint64_t g_seed_a, g_seed_b;
static atomic_int g_stop, g_failed;
static int g_growing; /* the map must grow during the run */
static atomic_ulong g_mapfull; /* SYNC_EMAPFULL seen and retried */
/* A writer is waiting for the map to grow: the map grows only in a
 * moment when no transaction of the process is open, so the readers
 * leave a longer gap (as an application must, docs/API.md). */
static atomic_int g_want_gap;

/* With a growing map, a write may fail with SYNC_EMAPFULL while other
 * threads hold snapshots (LMDB resizes only when the process has no
 * transaction open); sync.h says: abort, and the next transaction starts
 * with a larger map.  Retry, a bounded number of times. */
static int retry_mapfull(int rc, unsigned *tries) {
  if (!g_growing || rc != SYNC_EMAPFULL || ++*tries > 100000) return 0;
  atomic_fetch_add(&g_mapfull, 1);
  atomic_store(&g_want_gap, 1);
  {
    struct timespec ts = {0, 100000}; /* let the readers reach a gap */
    nanosleep(&ts, NULL);
  }
  return 1;
}
static char g_why[600];
static pthread_mutex_t g_why_mu = PTHREAD_MUTEX_INITIALIZER;

static void thread_fail(const char *who, const char *msg) {
  pthread_mutex_lock(&g_why_mu);
  if (!atomic_load(&g_failed))
    snprintf(g_why, sizeof g_why, "%s: %s", who, msg);
  atomic_store(&g_failed, 1);
  pthread_mutex_unlock(&g_why_mu);
}

typedef struct shared {
  sync_env *a, *b;
  uint8_t bsite[16];
  unsigned long snapshots[NREADERS];
  unsigned long applied_chunks, writer_commits;
} shared;

static void *writer_main(void *arg) {
  shared *sh = (shared *)arg;
  static cu_model m;
  int i, rc;
  cu_model_init(&m, g_seed_a);
  for (i = 0; i < WRITER_TXNS && !atomic_load(&g_failed); i++) {
    sync_txn *txn = NULL;
    char msg[96];
    unsigned tries = 0;
    cu_undo u;
  again:
    txn = NULL;
    if ((rc = sync_txn_begin(sh->a, 0, &txn)) ||
        (rc = cu_step_undo(&m, txn, CU_T_G, 1, &u))) {
      sync_txn_abort(txn);
      if (retry_mapfull(rc, &tries)) goto again;
      snprintf(msg, sizeof msg, "txn %d: %s", i + 1, sync_strerror(rc));
      thread_fail("writer", msg);
      break;
    }
    if ((rc = sync_txn_commit(txn))) {
      cu_take_back(&m, &u); /* not committed: the step did not happen */
      if (retry_mapfull(rc, &tries)) goto again;
      snprintf(msg, sizeof msg, "commit %d: %s", i + 1, sync_strerror(rc));
      thread_fail("writer", msg);
      break;
    }
    sh->writer_commits++;
    atomic_store(&g_want_gap, 0);
  }
  return NULL;
}

/* Pull everything B has into A, chunk by chunk, one commit each. */
static int pull(shared *sh, unsigned long *chunks) {
  for (;;) {
    sync_txn *ta = NULL, *tb = NULL;
    sync_request *req = NULL;
    sync_delta *d = NULL;
    sync_delta_opts o;
    int rc, last;
    memset(&o, 0, sizeof o);
    o.max_rows = 5;
    if ((rc = sync_txn_begin(sh->a, 0, &ta))) return rc;
    if (!(rc = sync_request_make(ta, sh->bsite, &req)) &&
        !(rc = sync_txn_begin(sh->b, SYNC_TXN_RDONLY, &tb))) {
      rc = sync_delta_make(tb, req, &o, &d);
      sync_txn_abort(tb);
    }
    if (!rc) {
      last = sync_delta_last(d);
      rc = sync_delta_apply(ta, d, SYNC_APPLY_MERGE, NULL);
    }
    if (!rc) {
      rc = sync_txn_commit(ta);
      ta = NULL;
    }
    sync_txn_abort(ta);
    sync_delta_free(d);
    sync_request_free(req);
    if (rc) return rc;
    (*chunks)++;
    if (last) return 0;
  }
}

static void *applier_main(void *arg) {
  shared *sh = (shared *)arg;
  static cu_model m;
  int i, rc;
  cu_model_init(&m, g_seed_b);
  for (i = 0; i < B_TXNS && !atomic_load(&g_failed); i++) {
    sync_txn *txn = NULL;
    char msg[96];
    if ((rc = sync_txn_begin(sh->b, 0, &txn)) == 0) {
      if ((rc = cu_step(&m, txn, CU_T_R, 0)))
        sync_txn_abort(txn);
      else
        rc = sync_txn_commit(txn);
    }
    if (rc) {
      snprintf(msg, sizeof msg, "B txn %d: %s", i + 1, sync_strerror(rc));
      thread_fail("applier", msg);
      break;
    }
    {
      unsigned tries = 0;
      while ((rc = pull(sh, &sh->applied_chunks)) && retry_mapfull(rc, &tries)) {
      }
    }
    if (rc) {
      snprintf(msg, sizeof msg, "pull after B txn %d: %s", i + 1,
               sync_strerror(rc));
      thread_fail("applier", msg);
      break;
    }
  }
  return NULL;
}

/* Every replicated row is one B wrote: content of its group, index and
 * generation. */
static int check_replicated(sync_txn *txn, cu_why *w) {
  sync_cursor *cur;
  sync_key k;
  sync_value v[CU_NCOL];
  int rc;
  if ((rc = sync_cursor_open(txn, CU_T_R, &cur)))
    return cu_fail(w, "cursor: %s", sync_strerror(rc));
  while ((rc = sync_cursor_next(cur, &k, v, CU_NCOL)) == 0) {
    char key[32], want[24];
    unsigned grp, idx;
    unsigned char pay[CU_MAXPAY];
    size_t pn;
    if (k.len >= sizeof key) break;
    memcpy(key, k.data, k.len);
    key[k.len] = 0;
    if (sscanf(key, "g%6u.%u", &grp, &idx) != 2) break;
    cu_key(want, grp, idx);
    if (strcmp(want, key) != 0 || v[0].i != (int64_t)grp || v[2].i < 2 ||
        v[2].i > (int64_t)CU_MAXN || (int64_t)idx >= v[2].i ||
        v[1].i < (int64_t)grp)
      break;
    pn = cu_payload(pay, g_seed_b, grp, idx, (uint32_t)v[1].i);
    if (v[3].len != pn || (pn && memcmp(v[3].data, pay, pn) != 0)) break;
  }
  sync_cursor_close(cur);
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "replicated row %.*s is not one B wrote (%s)",
                   (int)k.len, (const char *)k.data, sync_strerror(rc));
  return 0;
}

typedef struct reader_arg {
  shared *sh;
  int id;
} reader_arg;

static void *reader_main(void *arg) {
  reader_arg *ra = (reader_arg *)arg;
  shared *sh = ra->sh;
  cu_model *m = (cu_model *)malloc(sizeof *m);
  char who[16];
  snprintf(who, sizeof who, "reader %d", ra->id);
  if (!m) {
    thread_fail(who, "out of memory");
    return NULL;
  }
  while (!atomic_load(&g_stop) && !atomic_load(&g_failed)) {
    sync_txn *txn;
    cu_scan sc;
    cu_why w;
    uint32_t c = 0;
    uint64_t v0, v1, d0 = 0, d1 = 0;
    int rc;
    memset(&w, 0, sizeof w);
    if (g_growing) {
      /* A writer waits for the map to grow, which needs a moment with no
       * transaction open: hold back (up to 50 ms) until it has grown. */
      int k;
      for (k = 0; k < 50 && atomic_load(&g_want_gap); k++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
    }
    if ((rc = sync_txn_begin(sh->a, SYNC_TXN_RDONLY, &txn))) {
      thread_fail(who, sync_strerror(rc));
      break;
    }
    v0 = sync_txn_version(txn);
    sync_digest(txn, SYNC_ALL_TABLES, &d0);
    if (cu_integrity(txn, &sc, &w) == 0 && cu_read_meta(txn, &c, &w) == 0) {
      cu_model_init(m, g_seed_a);
      cu_model_to(m, c);
      if (cu_match(txn, CU_T_G, m, &sc, &w) == 0) check_replicated(txn, &w);
    }
    cu_scan_free(&sc);
    sched_yield();
    v1 = sync_txn_version(txn);
    sync_digest(txn, SYNC_ALL_TABLES, &d1);
    if (!w.failed && (v0 != v1 || d0 != d1))
      cu_fail(&w, "the snapshot moved while held (version %llu -> %llu)",
              (unsigned long long)v0, (unsigned long long)v1);
    sync_txn_abort(txn);
    if (w.failed) {
      thread_fail(who, w.msg);
      break;
    }
    sh->snapshots[ra->id]++;
    if (g_growing) {
      /* Leave moments with no snapshot open, when the map can grow;
       * longer ones while a writer waits for it. */
      struct timespec ts = {0, atomic_load(&g_want_gap) ? 3000000 : 200000};
      nanosleep(&ts, NULL);
    }
  }
  free(m);
  return NULL;
}

static void run(size_t initial, int growing) {
  shared sh;
  pthread_t wt, at, rt[NREADERS];
  reader_arg ra[NREADERS];
  int i;
  memset(&sh, 0, sizeof sh);
  g_seed_a = 0x1234;
  g_seed_b = 0x5678;
  atomic_store(&g_stop, 0);
  atomic_store(&g_failed, 0);
  atomic_store(&g_mapfull, 0);
  atomic_store(&g_want_gap, 0);
  g_growing = growing;
  cu_remove_db(DB_A);
  cu_remove_db(DB_B);
  TU_OK(cu_open_map(DB_A, SYNC_DURABLE_NOSYNC, initial, 0, &sh.a));
  TU_OK(cu_open(DB_B, SYNC_DURABLE_NOSYNC, 0, &sh.b));
  TU_OK(sync_env_site_id(sh.b, sh.bsite));
  for (i = 0; i < NREADERS; i++) {
    ra[i].sh = &sh;
    ra[i].id = i;
    assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &ra[i]), 0);
  }
  assert_int_equal(pthread_create(&wt, NULL, writer_main, &sh), 0);
  assert_int_equal(pthread_create(&at, NULL, applier_main, &sh), 0);
  pthread_join(wt, NULL);
  pthread_join(at, NULL);
  atomic_store(&g_stop, 1);
  for (i = 0; i < NREADERS; i++) pthread_join(rt[i], NULL);
  if (atomic_load(&g_failed)) fail_msg("%s", g_why);
  assert_int_equal(sh.writer_commits, WRITER_TXNS);
  assert_true(sh.applied_chunks >= B_TXNS);
  for (i = 0; i < NREADERS; i++) assert_true(sh.snapshots[i] > 0);
  {
    /* The end state: A's replicated table equals B's. */
    uint64_t da = 0, db = 0;
    sync_txn *ta, *tb;
    TU_OK(sync_txn_begin(sh.a, SYNC_TXN_RDONLY, &ta));
    TU_OK(sync_txn_begin(sh.b, SYNC_TXN_RDONLY, &tb));
    TU_OK(sync_digest(ta, CU_T_R, &da));
    TU_OK(sync_digest(tb, CU_T_R, &db));
    sync_txn_abort(ta);
    sync_txn_abort(tb);
    TU_U64(da, db);
  }
  print_message("mvcc: %lu writer commits, %lu chunks applied, snapshots "
                "checked %lu/%lu/%lu, %lu SYNC_EMAPFULL retried\n",
                sh.writer_commits, sh.applied_chunks, sh.snapshots[0],
                sh.snapshots[1], sh.snapshots[2],
                (unsigned long)atomic_load(&g_mapfull));
  sync_env_close(sh.a);
  sync_env_close(sh.b);
  cu_remove_db(DB_A);
  cu_remove_db(DB_B);
}

/* A map large enough from the start: snapshots only. */
static void test_snapshots_under_writes_and_apply(void **state) {
  (void)state;
  run((size_t)64 << 20, 0);
}

/* The map starts at 1 MiB and must grow while readers come and go. */
static void test_snapshots_while_the_map_grows(void **state) {
  (void)state;
  run((size_t)1 << 20, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_snapshots_under_writes_and_apply),
      cmocka_unit_test(test_snapshots_while_the_map_grows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
