/*
 * crash.c - process-crash harness.  Children write to a database and are
 * killed with SIGKILL at random moments; after each kill the parent opens
 * the database and checks it (crash_util.h): every row's checksum, the
 * change log against the rows, every commit a child reported done, no
 * half transaction, no half chunk.
 *
 * Three kinds of cycle, in turn:
 *   writer   a child runs writer transactions (crash_util.h's workload)
 *            on replica A and, after each sync_txn_commit returned 0,
 *            writes the transaction number to a pipe;
 *   applier  the parent first adds a few transactions to replica B, then
 *            a child pulls B's changes into A chunk by chunk
 *            (sync_request_make / sync_delta_make / sync_delta_apply,
 *            one commit per chunk) and reports each committed chunk;
 *   both     a writer and an applier at once on A, both killed.
 * For the applier the parent computes beforehand, on a copy of A, the
 * digest of A's replicated table after each chunk; after the kill A's
 * digest must be the one after the last reported chunk or the next one.
 * The parent then finishes the pull and checks that A's replicated table
 * equals B's (digest, model and version vector entry).
 *
 * kill -9 tests crashes of the process, not of the machine: the kernel
 * keeps the page cache, so what LMDB wrote reaches the file.  Power loss
 * is powerloss.c's job.
 *
 * Environment: CRASH_CYCLES (default 240), CRASH_SEED (default: time),
 * CRASH_RESET (cycles between fresh databases, default 40).  The seed is
 * printed first; a failure prints the cycle and what differed.
 */
#include "../testutil.h"

#include "crash_util.h"

#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DB_A "crash_a.db"
#define DB_B "crash_b.db"
#define DB_AC "crash_ac.db" /* copy of A for the expected digests */

#define MAXCHUNKS 4096

static uint64_t g_seed;
static unsigned long g_cycles, g_reset;
static cu_model g_ma, g_mb; /* A's table g, B's table r */
static cu_rng g_rng;

typedef struct stats {
  unsigned long cycles, failures;
  unsigned long reports;     /* commits reported by children */
  unsigned long unreported;  /* kills between commit and report */
  unsigned long chunks, unreported_chunks, finished_before_kill;
  unsigned long writer_txns; /* writer transactions found committed */
} stats;
static stats g_st;

static void msleep_us(unsigned long us) {
  struct timespec ts;
  ts.tv_sec = (time_t)(us / 1000000u);
  ts.tv_nsec = (long)(us % 1000000u) * 1000;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int copy_file(const char *from, const char *to) {
  static unsigned char buf[1u << 18];
  FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
  size_t n;
  int rc = in && out ? 0 : -1;
  while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n) rc = -1;
  if (in && ferror(in)) rc = -1;
  if (in) fclose(in);
  if (out && fclose(out) != 0) rc = -1;
  return rc;
}

/* ---------------------------------------------------------------------
 * Children.  They never return: _exit(0) when done, 3 on a failure.
 * ------------------------------------------------------------------- */
static void report(int fd, int32_t v) {
  ssize_t w = write(fd, &v, sizeof v);
  (void)w;
}

static void writer_child(int fd, int durability) {
  sync_env *env;
  if (cu_open(DB_A, durability, 0, &env)) _exit(3);
  for (;;) {
    sync_txn *txn;
    int rc;
    if (g_ma.last >= CU_MAXG) {
      pause(); /* out of groups: wait for the kill */
      continue;
    }
    if (sync_txn_begin(env, 0, &txn)) _exit(3);
    rc = cu_step(&g_ma, txn, CU_T_G, 1);
    if (rc) {
      /* The model did not advance; nothing of this txn may be committed. */
      sync_txn_abort(txn);
      _exit(3);
    }
    if (sync_txn_commit(txn)) _exit(3);
    report(fd, (int32_t)g_ma.last);
  }
}

/* One chunk from B into A: 1 if it was the last, 0 if not, <0 error. */
static int pull_chunk(sync_env *a, sync_env *b, const uint8_t bsite[16],
                      size_t max_rows) {
  sync_txn *ta = NULL, *tb = NULL;
  sync_request *req = NULL;
  sync_delta *d = NULL;
  sync_delta_opts o;
  int rc, last;
  memset(&o, 0, sizeof o);
  o.max_rows = max_rows;
  if ((rc = sync_txn_begin(a, 0, &ta))) return rc;
  if ((rc = sync_request_make(ta, bsite, &req))) goto out;
  if ((rc = sync_txn_begin(b, SYNC_TXN_RDONLY, &tb))) goto out;
  rc = sync_delta_make(tb, req, &o, &d);
  sync_txn_abort(tb);
  if (rc) goto out;
  last = sync_delta_last(d);
  if ((rc = sync_delta_apply(ta, d, SYNC_APPLY_MERGE, NULL))) goto out;
  rc = sync_txn_commit(ta);
  ta = NULL;
  if (rc == 0) rc = last;
out:
  sync_txn_abort(ta);
  sync_delta_free(d);
  sync_request_free(req);
  return rc;
}

static void applier_child(int fd, int durability, size_t max_rows) {
  sync_env *a, *b;
  uint8_t bsite[16];
  int32_t j = 0;
  if (cu_open(DB_A, durability, 0, &a) || cu_open(DB_B, durability, 0, &b) ||
      sync_env_site_id(b, bsite))
    _exit(3);
  for (;;) {
    int rc = pull_chunk(a, b, bsite, max_rows);
    if (rc < 0) _exit(3);
    report(fd, ++j);
    if (rc == 1) _exit(0);
  }
}

/* ---------------------------------------------------------------------
 * Parent side
 * ------------------------------------------------------------------- */
typedef struct child {
  pid_t pid;
  int fd;       /* read end of its pipe */
  int32_t last; /* highest number it reported */
  unsigned long reports;
  int status;
} child;

static int start_child(child *c, int kind, int durability, size_t max_rows) {
  int p[2];
  memset(c, 0, sizeof *c);
  if (pipe(p) != 0) return -1;
  fflush(stdout);
  fflush(stderr);
  c->pid = fork();
  if (c->pid < 0) return -1;
  if (c->pid == 0) {
    close(p[0]);
    if (kind == 0)
      writer_child(p[1], durability);
    else
      applier_child(p[1], durability, max_rows);
    _exit(3);
  }
  close(p[1]);
  c->fd = p[0];
  return 0;
}

/* Wait for n reports from c (or its end); returns reports seen. */
static void wait_reports(child *c, unsigned long n) {
  while (c->reports < n) {
    int32_t v;
    ssize_t r = read(c->fd, &v, sizeof v);
    if (r != (ssize_t)sizeof v) break;
    c->last = v;
    c->reports++;
  }
}

static void kill_and_drain(child *c) {
  kill(c->pid, SIGKILL);
  while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
  }
  wait_reports(c, (unsigned long)-1); /* what it wrote before dying */
  close(c->fd);
}

/* Pull B into env a until the last chunk, recording table r's digest
 * after each chunk into dig[1..]; returns the number of chunks or <0. */
static int pull_all(sync_env *a, sync_env *b, size_t max_rows, uint64_t *dig,
                    size_t cap) {
  uint8_t bsite[16];
  int n = 0, rc;
  if (sync_env_site_id(b, bsite)) return -1;
  for (;;) {
    rc = pull_chunk(a, b, bsite, max_rows);
    if (rc < 0) return rc;
    n++;
    if (dig && (size_t)n < cap) {
      sync_txn *t;
      if (sync_txn_begin(a, SYNC_TXN_RDONLY, &t)) return -1;
      sync_digest(t, CU_T_R, &dig[n]);
      sync_txn_abort(t);
    }
    if (rc == 1) return n;
    if (n > 100000) return -1;
  }
}

static int digest_of(sync_env *env, unsigned table, uint64_t *out) {
  sync_txn *t;
  int rc;
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &t))) return rc;
  rc = sync_digest(t, table, out);
  sync_txn_abort(t);
  return rc;
}

/* The vector entry of site in env's vector (0 if none). */
static uint64_t vv_entry(sync_env *env, const uint8_t site[16]) {
  sync_txn *t;
  sync_stamp v[16];
  size_t n = 0, i;
  uint64_t h = 0;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &t)) return 0;
  if (sync_vv_get(t, v, 16, &n) == 0)
    for (i = 0; i < n && i < 16; i++)
      if (memcmp(v[i].site, site, 16) == 0) h = v[i].hlc;
  sync_txn_abort(t);
  return h;
}

/* Run every check on A (env); advance the model of table g to the
 * committed transaction.  w_lo..w_hi: range the writer's last committed
 * txn must fall in (w_lo > w_hi: no writer ran). */
static int verify_a(sync_env *env, uint32_t w_lo, uint32_t w_hi, cu_why *w) {
  sync_txn *t;
  cu_scan sc;
  uint32_t c = 0;
  int rc;
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &t)))
    return cu_fail(w, "begin on A: %s", sync_strerror(rc));
  rc = cu_integrity(t, &sc, w);
  if (!rc) rc = cu_read_meta(t, &c, w);
  if (!rc && w_lo <= w_hi && (c < w_lo || c > w_hi))
    rc = cu_fail(w, "last committed writer txn is %u, expected %u..%u "
                    "(an acknowledged commit is missing)",
                 (unsigned)c, (unsigned)w_lo, (unsigned)w_hi);
  if (!rc && c < g_ma.last)
    rc = cu_fail(w, "writer txn %u found, but %u were committed before",
                 (unsigned)c, (unsigned)g_ma.last);
  if (!rc) {
    g_st.writer_txns += c - g_ma.last;
    cu_model_to(&g_ma, c);
    rc = cu_match(t, CU_T_G, &g_ma, &sc, w);
  }
  cu_scan_free(&sc);
  sync_txn_abort(t);
  return rc;
}

static void fresh_dbs(void) {
  cu_remove_db(DB_A);
  cu_remove_db(DB_B);
  cu_remove_db(DB_AC);
  cu_model_init(&g_ma, cu_mix(g_seed ^ 0xa));
  cu_model_init(&g_mb, cu_mix(g_seed ^ 0xb));
}

/* B (env b) gets k more writer transactions on table r. */
static int grow_b(sync_env *b, unsigned k, cu_why *w) {
  unsigned i;
  int rc = 0;
  for (i = 0; i < k && g_mb.last < CU_MAXG; i++) {
    sync_txn *t;
    if ((rc = sync_txn_begin(b, 0, &t)) || (rc = cu_step(&g_mb, t, CU_T_R, 0))) {
      sync_txn_abort(t);
      break;
    }
    if ((rc = sync_txn_commit(t))) break;
  }
  return rc ? cu_fail(w, "writing B: %s", sync_strerror(rc)) : 0;
}

/* One cycle of the given kind (0 writer, 1 applier, 2 both), with what
 * it opens in e (closed by the caller): A, once after the kill for every
 * check (each open of an env costs milliseconds). */
typedef struct envs {
  sync_env *a;
} envs;

static int cycle_in(int kind, envs *e, cu_why *w) {
  static uint64_t dig[MAXCHUNKS];
  int durability = (int)cu_below(&g_rng, 3);
  size_t max_rows = 1 + (size_t)cu_below(&g_rng, 12);
  int nchunks = 0, rc;
  child cw, ca;
  uint32_t before = g_ma.last;
  int run_w = kind != 1, run_a = kind != 0;

  if (run_a) {
    sync_env *ac, *b;
    if ((rc = cu_open(DB_B, SYNC_DURABLE_NOSYNC, 0, &b)))
      return cu_fail(w, "open B: %s", sync_strerror(rc));
    if (grow_b(b, 4 + (unsigned)cu_below(&g_rng, 24), w)) {
      sync_env_close(b);
      return -1;
    }
    /* Expected digests: on a copy of A, before and after each chunk. */
    cu_remove_db(DB_AC);
    if (tu_file_exists(DB_A) && copy_file(DB_A, DB_AC)) {
      sync_env_close(b);
      return cu_fail(w, "copy A");
    }
    if ((rc = cu_open(DB_AC, SYNC_DURABLE_NOSYNC, 0, &ac))) {
      sync_env_close(b);
      return cu_fail(w, "open copy of A: %s", sync_strerror(rc));
    }
    digest_of(ac, CU_T_R, &dig[0]);
    nchunks = pull_all(ac, b, max_rows, dig, MAXCHUNKS);
    sync_env_close(b);
    sync_env_close(ac);
    if (nchunks < 0 || nchunks >= MAXCHUNKS)
      return cu_fail(w, "pull into the copy of A failed");
  }

  if (run_w && start_child(&cw, 0, durability, 0)) return cu_fail(w, "fork");
  if (run_a && start_child(&ca, 1, durability, max_rows)) {
    if (run_w) kill_and_drain(&cw);
    return cu_fail(w, "fork");
  }
  /* When to kill: after a random delay, or right after the k-th report
   * (which aims at the moment between a commit and the next). */
  if (cu_below(&g_rng, 3) == 0) {
    unsigned long k = 1 + cu_below(&g_rng, 40);
    if (run_w) wait_reports(&cw, k);
    else wait_reports(&ca, k % (unsigned long)(nchunks + 1));
  } else {
    msleep_us((unsigned long)cu_below(&g_rng, 25000));
  }
  if (run_w) kill_and_drain(&cw);
  if (run_a) kill_and_drain(&ca);

  if (run_w) {
    if (WIFEXITED(cw.status))
      return cu_fail(w, "writer child exited by itself with %d",
                     WEXITSTATUS(cw.status));
    g_st.reports += cw.reports;
  }
  if (run_a) {
    if (WIFEXITED(ca.status) && WEXITSTATUS(ca.status) != 0)
      return cu_fail(w, "applier child failed (exit %d)",
                     WEXITSTATUS(ca.status));
    if (WIFEXITED(ca.status)) g_st.finished_before_kill++;
    g_st.chunks += ca.reports;
  }

  {
    uint32_t lo = run_w && cw.reports ? (uint32_t)cw.last : before;
    uint32_t hi = run_w ? lo + 1 : before;
    if ((rc = cu_open(DB_A, SYNC_DURABLE_NOSYNC, 0, &e->a)))
      return cu_fail(w, "open A after the kill: %s", sync_strerror(rc));
    if (verify_a(e->a, lo, hi, w)) return -1;
    if (run_w && g_ma.last == hi && hi != before) g_st.unreported++;
  }

  if (run_a) {
    sync_env *a = e->a, *b;
    uint64_t da = 0, db = 0;
    int j = ca.reports ? (int)ca.last : 0, ok = 0;
    uint8_t bsite[16];
    digest_of(a, CU_T_R, &da);
    if (da == dig[j]) ok = 1;
    if (j < nchunks && da == dig[j + 1]) {
      ok = 1;
      if (da != dig[j]) g_st.unreported_chunks++;
    }
    if (!ok)
      return cu_fail(w, "A's replicated table matches no state between chunk "
                        "%d and %d of %d: a chunk is half applied",
                     j, j + 1, nchunks);
    /* Finish the interrupted pull and compare with B. */
    if ((rc = cu_open(DB_B, SYNC_DURABLE_NOSYNC, 0, &b)))
      return cu_fail(w, "open B: %s", sync_strerror(rc));
    rc = pull_all(a, b, max_rows, NULL, 0) < 0;
    if (!rc) rc = digest_of(a, CU_T_R, &da) || digest_of(b, CU_T_R, &db);
    sync_env_site_id(b, bsite);
    if (!rc && (da != db || da != dig[nchunks]))
      rc = cu_fail(w, "after finishing the pull A and B differ");
    if (!rc && vv_entry(a, bsite) != vv_entry(b, bsite))
      rc = cu_fail(w, "A's vector entry for B (%llu) is not B's own (%llu)",
                   (unsigned long long)vv_entry(a, bsite),
                   (unsigned long long)vv_entry(b, bsite));
    if (!rc) {
      sync_txn *t;
      cu_scan sc;
      if (sync_txn_begin(a, SYNC_TXN_RDONLY, &t) == 0) {
        rc = cu_integrity(t, &sc, w);
        if (!rc) rc = cu_match(t, CU_T_R, &g_mb, &sc, w);
        cu_scan_free(&sc);
        sync_txn_abort(t);
      }
    }
    sync_env_close(b);
    if (rc) return cu_fail(w, "finishing the pull from B failed");
  }
  return 0;
}

static int cycle(int kind, cu_why *w) {
  envs e = {NULL};
  int rc = cycle_in(kind, &e, w);
  sync_env_close(e.a);
  return rc;
}

static void run_kind(int kind, unsigned long n) {
  static const char *names[] = {"writer", "applier", "both"};
  unsigned long i, fails = 0;
  for (i = 0; i < n; i++) {
    cu_why w;
    memset(&w, 0, sizeof w);
    if ((g_st.cycles % g_reset) == 0) fresh_dbs();
    g_st.cycles++;
    if (cycle(kind, &w)) {
      fails++;
      g_st.failures++;
      printf("crash: FAIL seed=0x%llx cycle %lu (%s): %s\n",
             (unsigned long long)g_seed, g_st.cycles, names[kind], w.msg);
      fresh_dbs(); /* start again from a known state */
    }
  }
  printf("crash: %s: %lu cycles, %lu failures\n", names[kind], n, fails);
}

static void test_kill_writer(void **state) {
  unsigned long f = g_st.failures;
  (void)state;
  run_kind(0, g_cycles / 3);
  assert_int_equal(g_st.failures, f);
}

static void test_kill_applier(void **state) {
  unsigned long f = g_st.failures;
  (void)state;
  run_kind(1, g_cycles / 3);
  assert_int_equal(g_st.failures, f);
}

static void test_kill_both(void **state) {
  unsigned long f = g_st.failures;
  (void)state;
  run_kind(2, g_cycles - 2 * (g_cycles / 3));
  assert_int_equal(g_st.failures, f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill_writer),
      cmocka_unit_test(test_kill_applier),
      cmocka_unit_test(test_kill_both),
  };
  struct timespec t0, t1;
  int rc;
  g_seed = cu_seed();
  g_cycles = cu_env_num("CRASH_CYCLES", 240);
  g_reset = cu_env_num("CRASH_RESET", 40);
  if (g_reset == 0) g_reset = 1;
  g_rng.s = g_seed;
  printf("crash: seed=0x%llx cycles=%lu (rerun: CRASH_SEED=0x%llx)\n",
         (unsigned long long)g_seed, g_cycles, (unsigned long long)g_seed);
  timespec_get(&t0, TIME_UTC);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  timespec_get(&t1, TIME_UTC);
  printf("crash: %lu cycles, %lu failures, seed=0x%llx, %.1f s; %lu commits "
         "reported, %lu writer txns verified, %lu kills between commit and "
         "report; %lu chunks reported, %lu applied but unreported, %lu pulls "
         "finished before the kill\n",
         g_st.cycles, g_st.failures, (unsigned long long)g_seed,
         (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
         g_st.reports, g_st.writer_txns, g_st.unreported, g_st.chunks,
         g_st.unreported_chunks, g_st.finished_before_kill);
  cu_remove_db(DB_A);
  cu_remove_db(DB_B);
  cu_remove_db(DB_AC);
  return rc;
}
