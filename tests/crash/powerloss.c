/*
 * powerloss.c - power-cut simulation.  A workload process runs writer
 * transactions (crash_util.h) with libplrec.so preloaded, which logs every
 * write to the database file, every sync of it, and a marker after each
 * acknowledged commit.  The parent then replays the log.  At each crash
 * point (before every fsync/fdatasync, around every O_DSYNC write, after
 * every acknowledgement, at the end) it builds images of the file as a
 * power cut there could leave it: the durable state (everything synced)
 * plus, for each page with writes since, either none of them or the page
 * as it was after one of them (the page cache writes pages back in any
 * order, and a page it writes holds its content of that moment).  Each
 * image is opened and verified in a child process (a damaged LMDB file
 * may crash its reader).
 *
 * Per crash point: one image with no unsynced page, one with all of them
 * at their latest (what a process crash leaves), and random mixes.
 *
 * The workload keeps every version of its tables (turned on before its
 * first transaction), and verifying an image includes its history
 * (crash_util.h, cu_history): every row lists exactly the versions of
 * the transactions the image holds, with their values, local versions
 * and times, none of a transaction the image lacks, and one as-of read
 * at a sampled version or time gives the model's table there.
 *
 * Promises checked (sync.h):
 *   SYNC_DURABLE_FULL        every image opens, verifies, and holds every
 *                            acknowledged commit;
 *   SYNC_DURABLE_NOMETASYNC  every image opens and verifies and holds every
 *                            acknowledged commit but perhaps the last;
 *   SYNC_DURABLE_NOSYNC      only promised to survive a process crash: the
 *                            all-pages-latest images must verify complete;
 *                            for the rest the harness counts and prints
 *                            what it found (opened and complete, lost
 *                            commits, refused to open, damaged, crashed the
 *                            reader) and asserts nothing.
 * Not modelled: writes torn inside a page (LMDB relies on the disk
 * writing a sector atomically), and metadata such as the file size is
 * taken from the pages present.
 *
 * Group commit (SYNC_TXN_GROUP) under SYNC_DURABLE_FULL: PL_THREADS
 * threads (default 4) commit the same workload's transactions, each its
 * turn in a batch; the promise is FULL's (every acknowledged commit
 * holds, and with it every commit before it: batches commit in order).
 * Acknowledgements come in any order, so the newest counts, and an image
 * may hold up to one commit per thread beyond it (a batch on disk whose
 * members were not yet told).  The test also checks that batches did
 * form: fewer data syncs than commits.
 *
 * Environment: PL_COMMITS (commits per workload, default 40), PL_TRIALS
 * (images per crash point, default 4), PL_THREADS, CRASH_SEED.
 */
#define _GNU_SOURCE
#include "../testutil.h"

#include "crash_util.h"

#include <dlfcn.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DB_W "pl_work.db"
#define DB_IMG "pl_img.db"
#define LOG_W "pl_work.log"
#define PAGE 4096u

typedef struct pl_hdr {
  uint32_t type, flags;
  uint64_t off, len;
} pl_hdr;

static uint64_t g_seed;
static unsigned long g_commits, g_trials, g_threads;
static char g_self[1024], g_preload[1100];

/* ---------------------------------------------------------------------
 * The workload (run as `powerloss --work MODE N SEED` under LD_PRELOAD)
 * ------------------------------------------------------------------- */
static int work(int mode, unsigned long n, uint64_t seed) {
  void (*mark)(int, uint64_t);
  static cu_model m;
  sync_env *env;
  unsigned long i;
  *(void **)&mark = dlsym(RTLD_DEFAULT, "pl_mark");
  if (!mark) return 90; /* not preloaded */
  cu_model_init(&m, seed);
  if (cu_open(DB_W, mode, 0, &env)) return 91;
  if (cu_history_on(env, CU_T_G) || cu_history_on(env, CU_T_M)) return 98;
  for (i = 0; i < n; i++) {
    sync_txn *txn;
    if (sync_txn_begin(env, 0, &txn)) return 92;
    if (cu_step(&m, txn, CU_T_G, 1)) return 93;
    if (sync_txn_commit(txn)) return 94;
    mark('M', m.last);
    if (mode == SYNC_DURABLE_NOSYNC && i % 8 == 7) {
      if (sync_env_sync(env)) return 95;
      mark('Y', m.last);
    }
  }
  sync_env_close(env);
  return 0;
}

/* The group-commit workload: threads take the model's steps in turn.  A
 * step is taken inside the member's transaction, where the batch lets
 * one thread at a time, so steps follow the commit order; a thread marks
 * its step once its commit returned. */
typedef struct gwork {
  sync_env *env;
  cu_model *m;
  unsigned long n;      /* commits of this thread */
  unsigned long rounds; /* of every thread: the most any thread commits */
  pthread_barrier_t *start;
  void (*mark)(int, uint64_t);
  int rc;
} gwork;

/* The threads start each round together, so that batches form however
 * busy the machine is (without it, a loaded machine ran the threads one
 * after another and no batch formed); a thread whose commits are done,
 * or that failed, still takes part in every round. */
static void *gwork_main(void *arg) {
  gwork *g = (gwork *)arg;
  unsigned long i;
  for (i = 0; i < g->rounds; i++) {
    sync_txn *txn;
    uint32_t step;
    pthread_barrier_wait(g->start);
    if (i >= g->n || g->rc) continue;
    if (sync_txn_begin(g->env, SYNC_TXN_GROUP, &txn)) {
      g->rc = 92;
      continue;
    }
    if (cu_step(g->m, txn, CU_T_G, 1)) {
      sync_txn_abort(txn);
      g->rc = 93;
      continue;
    }
    step = g->m->last;
    if (sync_txn_commit(txn)) {
      g->rc = 94;
      continue;
    }
    g->mark('M', step);
  }
  return NULL;
}

static int work_group(unsigned long n, unsigned long threads, uint64_t seed) {
  static cu_model m;
  gwork g[16];
  pthread_t th[16];
  pthread_barrier_t start;
  sync_env *env;
  unsigned long i;
  void (*mark)(int, uint64_t);
  *(void **)&mark = dlsym(RTLD_DEFAULT, "pl_mark");
  if (!mark) return 90;
  if (threads < 1 || threads > 16) return 96;
  cu_model_init(&m, seed);
  if (cu_open(DB_W, SYNC_DURABLE_FULL, 0, &env)) return 91;
  if (cu_history_on(env, CU_T_G) || cu_history_on(env, CU_T_M)) return 98;
  if (pthread_barrier_init(&start, NULL, (unsigned)threads)) return 97;
  for (i = 0; i < threads; i++) {
    g[i].env = env;
    g[i].m = &m;
    g[i].n = n / threads + (i < n % threads);
    g[i].rounds = n / threads + (n % threads != 0);
    g[i].start = &start;
    g[i].mark = mark;
    g[i].rc = 0;
    if (pthread_create(&th[i], NULL, gwork_main, &g[i])) return 97;
  }
  for (i = 0; i < threads; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&start);
  for (i = 0; i < threads; i++)
    if (g[i].rc) return g[i].rc;
  sync_env_close(env);
  return 0;
}

/* ---------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------- */
typedef struct piece { /* a write, cut at page boundaries */
  uint64_t off;
  uint32_t len;
  const unsigned char *data;
} piece;

typedef struct pgpend { /* unsynced pieces of one page, oldest first */
  uint64_t page;
  size_t n, cap;
  piece *v;
} pgpend;

typedef struct img {
  unsigned char *p;
  size_t n, cap;
} img;

typedef struct tally {
  unsigned long points, images, ok, lost_last, lost_more, open_fail,
      verify_fail, crashed, beyond, sync_lost, create_cut, syncs;
  unsigned long hist_images;        /* images whose history was checked */
  unsigned long long hist_versions; /* versions checked in them */
  unsigned long long hist_asof;     /* as-of reads compared in them */
  unsigned long failures;
  char first[600];
} tally;

typedef struct replay {
  int mode;
  uint32_t inflight; /* commits that may be on disk before their ack */
  img durable;
  pgpend *pend;
  size_t npend, cappend;
  uint32_t acked, synced;
  cu_rng rng;
  tally t;
} replay;

static void img_put(img *im, uint64_t off, const unsigned char *p, size_t n) {
  size_t end = (size_t)off + n;
  if (end > im->cap) {
    size_t cap = im->cap ? im->cap : 65536;
    while (cap < end) cap *= 2;
    im->p = (unsigned char *)realloc(im->p, cap);
    assert_non_null(im->p);
    memset(im->p + im->cap, 0, cap - im->cap);
    im->cap = cap;
  }
  memcpy(im->p + off, p, n);
  if (end > im->n) im->n = end;
}

static pgpend *pend_page(replay *r, uint64_t page) {
  size_t i;
  for (i = 0; i < r->npend; i++)
    if (r->pend[i].page == page) return &r->pend[i];
  if (r->npend == r->cappend) {
    r->cappend = r->cappend ? r->cappend * 2 : 64;
    r->pend = (pgpend *)realloc(r->pend, r->cappend * sizeof *r->pend);
    assert_non_null(r->pend);
  }
  memset(&r->pend[r->npend], 0, sizeof *r->pend);
  r->pend[r->npend].page = page;
  return &r->pend[r->npend++];
}

static void pend_add(replay *r, uint64_t off, const unsigned char *p,
                     uint64_t n) {
  while (n) {
    uint64_t page = off / PAGE;
    uint64_t room = (page + 1) * PAGE - off;
    uint32_t c = (uint32_t)(n < room ? n : room);
    pgpend *pp = pend_page(r, page);
    if (pp->n == pp->cap) {
      pp->cap = pp->cap ? pp->cap * 2 : 4;
      pp->v = (piece *)realloc(pp->v, pp->cap * sizeof *pp->v);
      assert_non_null(pp->v);
    }
    pp->v[pp->n].off = off;
    pp->v[pp->n].len = c;
    pp->v[pp->n].data = p;
    pp->n++;
    off += c;
    p += c;
    n -= c;
  }
}

/* Make page pp durable at its latest content and forget its pieces. */
static void pend_fold(replay *r, size_t i) {
  pgpend *pp = &r->pend[i];
  size_t k;
  for (k = 0; k < pp->n; k++)
    img_put(&r->durable, pp->v[k].off, pp->v[k].data, pp->v[k].len);
  free(pp->v);
  r->pend[i] = r->pend[--r->npend];
}

/* Result of verifying one image, sent by the child. */
typedef struct verdict {
  int stage; /* 0 ok, 1 open failed, 2 verify failed */
  int rc;
  uint32_t c;
  int hist;     /* the history was checked */
  cu_hstats hs; /* what of it */
  char msg[512];
} verdict;

/* Verify image im (number k, which seeds the as-of samples) and send
 * the verdict to fd. */
static void verify_child(int fd, const img *im, uint64_t seed,
                         unsigned long k) {
  static cu_model m;
  verdict v;
  sync_env *env;
  sync_txn *txn;
  cu_scan sc;
  cu_why w;
  cu_rng rng;
  memset(&v, 0, sizeof v);
  memset(&w, 0, sizeof w);
  cu_remove_db(DB_IMG);
  if (tu_write_file(DB_IMG, im->p, im->n)) _exit(5);
  v.rc = cu_open(DB_IMG, SYNC_DURABLE_NOSYNC, 0, &env);
  if (v.rc) {
    v.stage = 1;
    goto out;
  }
  if ((v.rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &txn))) {
    v.stage = 1;
    goto out;
  }
  cu_model_init(&m, seed);
  rng.s = cu_mix(seed ^ k);
  if (cu_integrity(txn, &sc, &w) == 0 && cu_read_meta(txn, &v.c, &w) == 0) {
    cu_model_to(&m, v.c);
    if (cu_match(txn, CU_T_G, &m, &sc, &w) == 0 &&
        cu_history(env, txn, CU_T_G, &m, 0, &rng, &v.hs, &w) == 0)
      v.hist = 1;
  }
  cu_scan_free(&sc);
  if (w.failed) {
    v.stage = 2;
    snprintf(v.msg, sizeof v.msg, "%s", w.msg);
  }
out:
  {
    ssize_t n = write(fd, &v, sizeof v);
    (void)n;
  }
  _exit(0);
}

static void note_failure(replay *r, const char *fmt, ...) {
  va_list ap;
  r->t.failures++;
  if (r->t.first[0]) return;
  va_start(ap, fmt);
  vsnprintf(r->t.first, sizeof r->t.first, fmt, ap);
  va_end(ap);
}

/* Build one image (choice[i]: how many pieces of pend[i] landed) and
 * check it against what the mode promises.  The child builds it on its
 * own copy of the durable image (fork's pages are copied on write): the
 * parent copies nothing. */
static void check_image(replay *r, const size_t *choice, int all_latest,
                        const char *where) {
  size_t i, k;
  int p[2], status = 0;
  pid_t pid;
  verdict v;
  ssize_t got;
  r->t.images++;
  assert_int_equal(pipe(p), 0);
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    img im = r->durable;
    /* A reader that faults on a damaged file dies (the parent counts
     * it): cmocka's handlers would go on running the tests here. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    close(p[0]);
    for (i = 0; i < r->npend; i++)
      for (k = 0; k < choice[i]; k++)
        img_put(&im, r->pend[i].v[k].off, r->pend[i].v[k].data,
                r->pend[i].v[k].len);
    verify_child(p[1], &im, g_seed, r->t.images);
  }
  close(p[1]);
  memset(&v, 0, sizeof v);
  got = read(p[0], &v, sizeof v);
  close(p[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == (ssize_t)sizeof v && v.hist) {
    r->t.hist_images++;
    r->t.hist_versions += v.hs.versions;
    r->t.hist_asof += v.hs.asof;
  }
  if (got != (ssize_t)sizeof v) {
    r->t.crashed++;
    if (r->mode != SYNC_DURABLE_NOSYNC || all_latest)
      note_failure(r, "%s: the reader of the image crashed (status 0x%x)",
                   where, status);
    return;
  }
  if (v.stage == 1 && v.rc == SYNC_ENOTDB && r->acked == 0 &&
      r->durable.n == 0) {
    /* Cut while sync_env_open was creating the file, before anything of
     * it was synced: LMDB's meta pages did not land but a later page did,
     * and LMDB refuses the file (MDB_INVALID).  Nothing had been
     * acknowledged; reported, see docs/RELIABILITY.md. */
    r->t.create_cut++;
    return;
  }
  if (v.stage == 1) {
    r->t.open_fail++;
    if (r->mode != SYNC_DURABLE_NOSYNC || all_latest)
      note_failure(r, "%s: image does not open: %s", where,
                   sync_strerror(v.rc));
    return;
  }
  if (v.stage == 2) {
    r->t.verify_fail++;
    if (r->mode != SYNC_DURABLE_NOSYNC || all_latest)
      note_failure(r, "%s: image fails verification: %s", where, v.msg);
    return;
  }
  if (v.c > r->acked + r->inflight) {
    r->t.beyond++;
    note_failure(r, "%s: image holds commit %u, only %u were begun", where,
                 (unsigned)v.c, (unsigned)(r->acked + r->inflight));
    return;
  }
  if (v.c < r->synced) r->t.sync_lost++;
  if (v.c + 1 == r->acked) {
    r->t.lost_last++;
    if (r->mode == SYNC_DURABLE_FULL || all_latest)
      note_failure(r, "%s: acknowledged commit %u lost", where,
                   (unsigned)r->acked);
    return;
  }
  if (v.c + 1 < r->acked) {
    r->t.lost_more++;
    if (r->mode != SYNC_DURABLE_NOSYNC || all_latest)
      note_failure(r, "%s: %u acknowledged commits lost (image at %u of %u)",
                   where, (unsigned)(r->acked - v.c), (unsigned)v.c,
                   (unsigned)r->acked);
    return;
  }
  r->t.ok++;
}

static void crash_point(replay *r, const char *what, size_t at) {
  size_t *choice, i;
  unsigned long trial;
  char where[96];
  r->t.points++;
  snprintf(where, sizeof where, "%s (log record %zu, %u acked)", what, at,
           (unsigned)r->acked);
  choice = (size_t *)calloc(r->npend + 1, sizeof *choice);
  assert_non_null(choice);
  for (trial = 0; trial < g_trials; trial++) {
    if (trial >= 2 && r->npend == 0) break; /* nothing else to mix */
    for (i = 0; i < r->npend; i++) {
      size_t n = r->pend[i].n;
      if (trial == 0) choice[i] = 0;
      else if (trial == 1) choice[i] = n;
      else if (cu_below(&r->rng, 2)) choice[i] = 0;
      else if (cu_below(&r->rng, 2)) choice[i] = n;
      else choice[i] = 1 + (size_t)cu_below(&r->rng, n);
    }
    check_image(r, choice, trial == 1, where);
    if (trial == 0 && r->npend == 0) break; /* one state only */
  }
  free(choice);
}

static void replay_log(replay *r, const unsigned char *log, size_t n) {
  size_t at = 0, rec = 0;
  while (at + sizeof(pl_hdr) <= n) {
    pl_hdr h;
    const unsigned char *data;
    memcpy(&h, log + at, sizeof h);
    data = log + at + sizeof h;
    assert_true(at + sizeof h + h.len <= n);
    switch (h.type) {
    case 'W':
      pend_add(r, h.off, data, h.len);
      break;
    case 'D': {
      /* In flight until the call returns: a cut may land before it. */
      uint64_t first = h.off / PAGE, last = (h.off + h.len - 1) / PAGE, pg;
      size_t i;
      pend_add(r, h.off, data, h.len);
      crash_point(r, "during an O_DSYNC write", rec);
      /* The kernel wrote these whole pages as they are now. */
      for (pg = first; pg <= last; pg++)
        for (i = 0; i < r->npend; i++)
          if (r->pend[i].page == pg) {
            pend_fold(r, i);
            break;
          }
      break;
    }
    case 'S':
      r->t.syncs++;
      crash_point(r, "before fdatasync", rec);
      while (r->npend) pend_fold(r, r->npend - 1);
      break;
    case 'M': /* the newest: group members are told in any order */
      if ((uint32_t)h.off > r->acked) r->acked = (uint32_t)h.off;
      crash_point(r, "after an acknowledged commit", rec);
      break;
    case 'Y':
      r->synced = (uint32_t)h.off;
      break;
    case 'X':
      fail_msg("the workload called msync: writes through a map are not "
               "recorded, the simulation would be wrong");
      break;
    case 'T':
      fail_msg("the workload truncated the file: not modelled");
      break;
    default:
      fail_msg("bad log record type 0x%x at %zu", h.type, at);
    }
    at += sizeof h + h.len;
    rec++;
  }
  assert_true(at == n);
  crash_point(r, "at the end", rec);
  while (r->npend) pend_fold(r, r->npend - 1);
  free(r->pend);
  free(r->durable.p);
}

/* Run the workload under the recorder, then replay its log. */
static void run_mode(int mode, int group, tally *out) {
  static const char *names[] = {"FULL", "NOMETASYNC", "NOSYNC"};
  const char *name = group ? "FULL+GROUP" : names[mode];
  char arg_mode[8], arg_n[24], arg_seed[24], arg_threads[24];
  int status = 0;
  pid_t pid;
  size_t n = 0;
  unsigned char *log;
  replay r;
  cu_remove_db(DB_W);
  remove(LOG_W);
  snprintf(arg_mode, sizeof arg_mode, "%d", mode);
  snprintf(arg_n, sizeof arg_n, "%lu", g_commits);
  snprintf(arg_seed, sizeof arg_seed, "%llu", (unsigned long long)g_seed);
  snprintf(arg_threads, sizeof arg_threads, "%lu", g_threads);
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char *argv[] = {g_self, group ? "--work-group" : "--work",
                    group ? arg_threads : arg_mode, arg_n, arg_seed, NULL};
    setenv("LD_PRELOAD", g_preload, 1);
    setenv("PL_TARGET", DB_W, 1);
    setenv("PL_LOG", LOG_W, 1);
    execv(g_self, argv);
    _exit(89);
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("workload failed: status 0x%x (90: recorder not preloaded, "
             "98: history not turned on)",
             status);
  log = tu_read_file(LOG_W, &n);
  assert_non_null(log);
  memset(&r, 0, sizeof r);
  r.mode = mode;
  r.inflight = group ? (uint32_t)g_threads : 1;
  r.rng.s = cu_mix(g_seed ^ (uint64_t)(mode + 1 + 8 * group));
  replay_log(&r, log, n);
  free(log);
  *out = r.t;
  printf("powerloss: %s: %lu commits, %lu data syncs, %lu crash points, "
         "%lu images: %lu "
         "complete, %lu lost the last ack, %lu lost more, %lu did not open, "
         "%lu failed verification, %lu crashed the reader; %lu lost a "
         "commit that sync_env_sync had made durable; %lu cut while the file "
         "was created (SYNC_ENOTDB); history checked in %lu images: %llu "
         "versions, %llu as-of reads; %lu violations\n",
         name, g_commits, r.t.syncs, r.t.points, r.t.images, r.t.ok,
         r.t.lost_last, r.t.lost_more, r.t.open_fail, r.t.verify_fail,
         r.t.crashed, r.t.sync_lost, r.t.create_cut, r.t.hist_images,
         r.t.hist_versions, r.t.hist_asof, r.t.failures);
  if (r.t.failures)
    printf("powerloss: FAIL seed=0x%llx %s: first violation: %s\n",
           (unsigned long long)g_seed, name, r.t.first);
  cu_remove_db(DB_W);
  cu_remove_db(DB_IMG);
  remove(LOG_W);
}

static void test_full(void **state) {
  tally t;
  (void)state;
  run_mode(SYNC_DURABLE_FULL, 0, &t);
  assert_true(t.images > 0);
  assert_int_equal(t.failures, 0);
}

static void test_nometasync(void **state) {
  tally t;
  (void)state;
  run_mode(SYNC_DURABLE_NOMETASYNC, 0, &t);
  assert_true(t.images > 0);
  assert_int_equal(t.failures, 0);
}

/* NOSYNC: only the process-crash images are promised; the rest is
 * reported above. */
static void test_nosync(void **state) {
  tally t;
  (void)state;
  run_mode(SYNC_DURABLE_NOSYNC, 0, &t);
  assert_true(t.images > 0);
  assert_int_equal(t.failures, 0);
}

/* Group commit: FULL's promise, and batches that formed (fewer data
 * syncs than commits: each batch is one commit of LMDB's). */
static void test_full_group(void **state) {
  tally t;
  (void)state;
  run_mode(SYNC_DURABLE_FULL, 1, &t);
  assert_true(t.images > 0);
  assert_int_equal(t.failures, 0);
  if (g_threads > 1) assert_true(t.syncs < g_commits);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full),
      cmocka_unit_test(test_full_group),
      cmocka_unit_test(test_nometasync),
      cmocka_unit_test(test_nosync),
  };
  ssize_t len;
  char *slash;
  if (argc == 5 && strcmp(argv[1], "--work") == 0)
    return work(atoi(argv[2]), strtoul(argv[3], NULL, 10),
                strtoull(argv[4], NULL, 10));
  if (argc == 5 && strcmp(argv[1], "--work-group") == 0)
    return work_group(strtoul(argv[3], NULL, 10), strtoul(argv[2], NULL, 10),
                      strtoull(argv[4], NULL, 10));
#ifdef __GLIBC__
  /* The readers are forked from here with the parent's heap: a fixed
   * mmap threshold (see crash.c) keeps their env open from clearing
   * 2 MiB of recycled heap each. */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  len = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
  if (len <= 0) {
    fprintf(stderr, "powerloss: cannot find /proc/self/exe\n");
    return 1;
  }
  g_self[len] = 0;
  snprintf(g_preload, sizeof g_preload, "%s", g_self);
  slash = strrchr(g_preload, '/');
  if (slash) slash[1] = 0;
  strncat(g_preload, "libplrec.so", sizeof g_preload - strlen(g_preload) - 1);
  g_seed = cu_seed();
  g_commits = cu_env_num("PL_COMMITS", 40);
  g_trials = cu_env_num("PL_TRIALS", 4);
  g_threads = cu_env_num("PL_THREADS", 4);
  if (g_trials < 2) g_trials = 2;
  printf("powerloss: seed=0x%llx commits=%lu trials=%lu (rerun: "
         "CRASH_SEED=0x%llx)\n",
         (unsigned long long)g_seed, g_commits, g_trials,
         (unsigned long long)g_seed);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
