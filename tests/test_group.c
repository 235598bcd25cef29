/*
 * test_group.c - group commit (SYNC_TXN_GROUP): several threads' write
 * transactions share one LMDB transaction and one sync.  Checked here:
 * every commit that returned 0 is there and no aborted work is; members
 * see the batch's earlier members (a shared counter loses no increment);
 * each commit takes its own local version; plain writers mix with group
 * ones; a leader's commit waits for a member queued behind it, and
 * readers see the batch only as a whole; a leader that aborts still
 * commits its members' work.  Durability under power loss is the
 * power-loss harness's (tests/crash/powerloss.c, group workload).
 *
 * cmocka's assertions are not thread-safe: threads record failures, and
 * the main thread asserts after joining.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DB "t_group.db"

#define NGROUP 4   /* threads writing with SYNC_TXN_GROUP */
#define NPLAIN 1   /* threads writing plain transactions */
#define NCOMMITS 40 /* commits per thread */

static const sync_column_def cols[] = {
    {"n", SYNC_INTEGER, 0},
};
static const sync_table_def schema[] = {
    {"t", SYNC_TEXT, cols, 1},
};

typedef struct worker {
  pthread_t thread;
  sync_env *env;
  int id, group, nabort;
  atomic_int failed;
  char why[256];
} worker;

static void worker_fail(worker *w, const char *what, int rc) {
  if (atomic_load(&w->failed)) return;
  snprintf(w->why, sizeof w->why, "worker %d: %s: %s", w->id, what,
           sync_strerror(rc));
  atomic_store(&w->failed, 1);
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* Each commit adds 1 to the shared counter row "count" (read, then
 * write: a member that did not see the members before it would lose
 * increments) and writes a row of its own, "w<id>-<i>".  Every fifth
 * transaction of a group worker is aborted instead, after writing a row
 * "x<id>-<i>" and the counter. */
static void *worker_main(void *arg) {
  worker *w = (worker *)arg;
  int i, rc;
  for (i = 0; i < NCOMMITS && !atomic_load(&w->failed); i++) {
    sync_txn *txn;
    sync_value v;
    char key[32];
    int abort_it = w->group && i % 5 == 4;
    if ((rc = sync_txn_begin(w->env, w->group ? SYNC_TXN_GROUP : 0, &txn))) {
      worker_fail(w, "begin", rc);
      break;
    }
    rc = sync_get(txn, 0, "count", 5, &v, 1);
    if (rc == SYNC_NOTFOUND) v = sync_int(0), rc = 0;
    if (!rc) {
      v = sync_int(v.i + 1);
      rc = sync_put(txn, 0, "count", 5, &v, 1);
    }
    snprintf(key, sizeof key, "%c%d-%d", abort_it ? 'x' : 'w', w->id, i);
    if (!rc) {
      v = sync_int(i);
      rc = sync_put(txn, 0, key, strlen(key), &v, 1);
    }
    if (rc) {
      sync_txn_abort(txn);
      worker_fail(w, "write", rc);
      break;
    }
    if (abort_it) {
      sync_txn_abort(txn);
      w->nabort++;
    } else if ((rc = sync_txn_commit(txn))) {
      worker_fail(w, "commit", rc);
      break;
    }
  }
  return NULL;
}

static void test_threads_commit_all(void **state) {
  worker w[NGROUP + NPLAIN];
  sync_env *env;
  sync_txn *txn;
  sync_value v;
  uint64_t count = 0, v0, v1;
  int i, j, committed = 0;
  (void)state;
  tu_remove_db(DB);
  env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  v0 = sync_txn_version(txn);
  sync_txn_abort(txn);
  memset(w, 0, sizeof w);
  for (i = 0; i < NGROUP + NPLAIN; i++) {
    w[i].env = env;
    w[i].id = i;
    w[i].group = i < NGROUP;
    assert_int_equal(pthread_create(&w[i].thread, NULL, worker_main, &w[i]),
                     0);
  }
  for (i = 0; i < NGROUP + NPLAIN; i++) pthread_join(w[i].thread, NULL);
  for (i = 0; i < NGROUP + NPLAIN; i++) {
    if (atomic_load(&w[i].failed)) fail_msg("%s", w[i].why);
    committed += NCOMMITS - w[i].nabort;
  }
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  /* Every commit that returned 0 holds, and took a version of its own. */
  v1 = sync_txn_version(txn);
  TU_U64(v1 - v0, (uint64_t)committed);
  TU_OK(sync_get(txn, 0, "count", 5, &v, 1));
  assert_int_equal(v.i, committed);
  for (i = 0; i < NGROUP + NPLAIN; i++)
    for (j = 0; j < NCOMMITS; j++) {
      char key[32];
      int aborted = w[i].group && j % 5 == 4;
      snprintf(key, sizeof key, "%c%d-%d", aborted ? 'x' : 'w', i, j);
      TU_RC(sync_get(txn, 0, key, strlen(key), &v, 1),
            aborted ? SYNC_NOTFOUND : 0);
    }
  TU_OK(sync_count(txn, 0, &count));
  TU_U64(count, (uint64_t)committed + 1);
  sync_txn_abort(txn);
  sync_env_close(env);
  tu_remove_db(DB);
}

/* The two-member batch, step by step. */
typedef struct pair {
  sync_env *env;
  atomic_int step;       /* 1 member about to begin, 2 member began */
  atomic_int member_committing; /* the member called sync_txn_commit */
  atomic_int leader_done;       /* the leader's commit (or abort) returned */
  int leader_done_before_member; /* seen by the leader when it returned */
  int rc_reader, rc_member, rc_begin;
} pair;

static void *member_main(void *arg) {
  pair *p = (pair *)arg;
  sync_txn *txn;
  sync_value v = sync_int(2);
  atomic_store(&p->step, 1);
  p->rc_begin = sync_txn_begin(p->env, SYNC_TXN_GROUP, &txn);
  if (p->rc_begin) return NULL;
  atomic_store(&p->step, 2);
  /* The leader's commit is waiting for us: give it time to (wrongly)
   * return first. */
  sleep_ms(50);
  p->rc_member = sync_put(txn, 0, "b", 1, &v, 1);
  atomic_store(&p->member_committing, 1);
  if (!p->rc_member) p->rc_member = sync_txn_commit(txn);
  else sync_txn_abort(txn);
  return NULL;
}

/* The leader (this thread) has written "a"; a member queues behind it.
 * The leader's commit must wait for the member's, and a reader must not
 * see "a" before the batch is committed. */
static void run_pair(int leader_abort) {
  pair p;
  pthread_t th;
  sync_txn *lead, *rd;
  sync_value v = sync_int(1);
  int rc;
  memset(&p, 0, sizeof p);
  tu_remove_db(DB);
  p.env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(p.env, SYNC_TXN_GROUP, &lead));
  TU_OK(sync_put(lead, 0, "a", 1, &v, 1));
  assert_int_equal(pthread_create(&th, NULL, member_main, &p), 0);
  while (atomic_load(&p.step) < 1) sleep_ms(1);
  sleep_ms(100); /* the member is queued for the child slot by now */
  assert_int_equal(atomic_load(&p.step), 1); /* the slot is the leader's */
  if (leader_abort) {
    sync_txn_abort(lead);
    rc = 0;
  } else {
    rc = sync_txn_commit(lead);
  }
  p.leader_done_before_member = !atomic_load(&p.member_committing);
  pthread_join(th, NULL);
  TU_OK(p.rc_begin);
  TU_OK(p.rc_member);
  TU_OK(rc);
  /* The batch ended after the member's commit: never before. */
  assert_false(p.leader_done_before_member);
  TU_OK(sync_txn_begin(p.env, SYNC_TXN_RDONLY, &rd));
  TU_RC(sync_get(rd, 0, "a", 1, &v, 1), leader_abort ? SYNC_NOTFOUND : 0);
  TU_OK(sync_get(rd, 0, "b", 1, &v, 1));
  assert_int_equal(v.i, 2);
  sync_txn_abort(rd);
  sync_env_close(p.env);
  tu_remove_db(DB);
}

static void test_leader_waits_for_member(void **state) {
  (void)state;
  run_pair(0);
}

static void test_leader_abort_commits_member(void **state) {
  (void)state;
  run_pair(1);
}

/* A reader during a batch sees none of it: the leader's committed child
 * is not a committed transaction until the batch is. */
static void *reader_during(void *arg) {
  pair *p = (pair *)arg;
  sync_txn *rd;
  sync_value v;
  while (atomic_load(&p->step) < 2) sleep_ms(1);
  if (!sync_txn_begin(p->env, SYNC_TXN_RDONLY, &rd)) {
    p->rc_reader = sync_get(rd, 0, "a", 1, &v, 1);
    sync_txn_abort(rd);
  }
  return NULL;
}

static void test_batch_invisible_until_committed(void **state) {
  pair p;
  pthread_t th, rt;
  sync_txn *lead;
  sync_value v = sync_int(1);
  (void)state;
  memset(&p, 0, sizeof p);
  tu_remove_db(DB);
  p.env = tu_open_env(DB, schema, 1, 0);
  TU_OK(sync_txn_begin(p.env, SYNC_TXN_GROUP, &lead));
  TU_OK(sync_put(lead, 0, "a", 1, &v, 1));
  assert_int_equal(pthread_create(&th, NULL, member_main, &p), 0);
  while (atomic_load(&p.step) < 1) sleep_ms(1);
  sleep_ms(100);
  assert_int_equal(pthread_create(&rt, NULL, reader_during, &p), 0);
  /* Commits the leader's child; the member then begins (step 2) and the
   * reader looks while the batch is still open. */
  TU_OK(sync_txn_commit(lead));
  pthread_join(th, NULL);
  pthread_join(rt, NULL);
  TU_OK(p.rc_member);
  TU_RC(p.rc_reader, SYNC_NOTFOUND);
  sync_env_close(p.env);
  tu_remove_db(DB);
}

/* The batch's commit fails (the file may not grow: RLIMIT_FSIZE, in a
 * child process with SIGXFSZ ignored, as test_full.c does): both the
 * leader and the member queued behind it get the error, and neither's
 * row is there afterwards.  The child exits 0 when all of that held. */
static int batch_failure_child(void) {
  pair p;
  pthread_t th;
  sync_txn *lead, *rd;
  sync_value v = sync_int(1);
  struct rlimit rl, lim;
  int i, rc, ra, rb;
  signal(SIGXFSZ, SIG_IGN);
  memset(&p, 0, sizeof p);
  p.env = tu_open_env(DB, schema, 1, 0);
  for (i = 0; i < 50; i++) { /* a file well past its meta pages */
    char key[16];
    sync_txn *txn;
    snprintf(key, sizeof key, "pre%02d", i);
    if (sync_txn_begin(p.env, 0, &txn) ||
        sync_put(txn, 0, key, strlen(key), &v, 1) || sync_txn_commit(txn))
      return 10;
  }
  if (getrlimit(RLIMIT_FSIZE, &rl)) return 11;
  lim = rl;
  lim.rlim_cur = 8192; /* every write but LMDB's two meta pages fails */
  if (setrlimit(RLIMIT_FSIZE, &lim)) return 11;
  if (sync_txn_begin(p.env, SYNC_TXN_GROUP, &lead) ||
      sync_put(lead, 0, "a", 1, &v, 1))
    return 12;
  if (pthread_create(&th, NULL, member_main, &p)) return 13;
  while (atomic_load(&p.step) < 1) sleep_ms(1);
  sleep_ms(100);
  rc = sync_txn_commit(lead);
  pthread_join(th, NULL);
  if (setrlimit(RLIMIT_FSIZE, &rl)) return 11;
  if (p.rc_begin) return 14;
  if (rc != SYNC_ENOSPC) return 15;
  if (p.rc_member != SYNC_ENOSPC) return 16;
  if (sync_txn_begin(p.env, SYNC_TXN_RDONLY, &rd)) return 17;
  ra = sync_get(rd, 0, "a", 1, &v, 1);
  rb = sync_get(rd, 0, "b", 1, &v, 1);
  sync_txn_abort(rd);
  if (ra != SYNC_NOTFOUND || rb != SYNC_NOTFOUND) return 18;
  /* The next batch commits. */
  if (sync_txn_begin(p.env, SYNC_TXN_GROUP, &lead) ||
      sync_put(lead, 0, "c", 1, &v, 1) || sync_txn_commit(lead))
    return 19;
  sync_env_close(p.env);
  return 0;
}

static void test_batch_failure_fails_every_member(void **state) {
  pid_t pid;
  int status = 0;
  (void)state;
  tu_remove_db(DB);
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(batch_failure_child());
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  /* 15: the leader's commit did not fail; 16: the member's did not; 18:
   * a row of the failed batch is there. */
  assert_int_equal(WEXITSTATUS(status), 0);
  tu_remove_db(DB);
}

static void test_flags(void **state) {
  sync_env *env;
  sync_txn *txn = (sync_txn *)1;
  sync_value v = sync_int(7);
  (void)state;
  tu_remove_db(DB);
  env = tu_open_env(DB, schema, 1, 0);
  TU_RC(sync_txn_begin(env, SYNC_TXN_GROUP | SYNC_TXN_RDONLY, &txn),
        SYNC_EINVAL);
  assert_null(txn);
  TU_RC(sync_txn_begin(env, 0x4u, &txn), SYNC_EINVAL);
  /* One thread alone: a batch of one, committed and durable at return. */
  TU_OK(sync_txn_begin(env, SYNC_TXN_GROUP, &txn));
  TU_OK(sync_put(txn, 0, "k", 1, &v, 1));
  TU_OK(sync_txn_commit(txn));
  TU_OK(sync_txn_begin(env, SYNC_TXN_GROUP, &txn));
  TU_OK(sync_put(txn, 0, "k2", 2, &v, 1));
  sync_txn_abort(txn);
  sync_env_close(env);
  env = tu_open_env(DB, schema, 1, SYNC_OPEN_RDONLY);
  TU_RC(sync_txn_begin(env, SYNC_TXN_GROUP, &txn), SYNC_EREADONLY);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "k", 1, &v, 1));
  assert_int_equal(v.i, 7);
  TU_RC(sync_get(txn, 0, "k2", 2, &v, 1), SYNC_NOTFOUND);
  sync_txn_abort(txn);
  sync_env_close(env);
  tu_remove_db(DB);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flags),
      cmocka_unit_test(test_threads_commit_all),
      cmocka_unit_test(test_leader_waits_for_member),
      cmocka_unit_test(test_leader_abort_commits_member),
      cmocka_unit_test(test_batch_invisible_until_committed),
      cmocka_unit_test(test_batch_failure_fails_every_member),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
