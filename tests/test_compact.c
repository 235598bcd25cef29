/*
 * test_compact.c - collecting tombstones in bounded batches without
 * growing the file (sync_gc, sync_env_gc), and compaction
 * (sync_env_compact): in place the replica stays itself and its peers
 * continue incrementally; a compacted copy elsewhere opens as a copy;
 * compacting in place while another process has the file open is
 * refused with SYNC_EBUSY.
 */
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sess_util.h"

#define CP_ROWS 30000u
#define CP_TXN_ROWS 1000u

static uint64_t cp_file_size(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (uint64_t)st.st_size;
}

static void cp_key(char *key, size_t cap, unsigned i) {
  snprintf(key, cap, "k%08u", (i * 7919u) % 1000003u);
}

/* Rows 0..n-1 into r, CP_TXN_ROWS per transaction. */
static void cp_put_rows(mu_rep *r, unsigned from, unsigned n) {
  char key[32], text[32];
  unsigned i;
  for (i = from; i < from + n;) {
    sync_txn *x;
    unsigned end = i + CP_TXN_ROWS < from + n ? i + CP_TXN_ROWS : from + n;
    TU_OK(sync_txn_begin(r->env, 0, &x));
    for (; i < end; i++) {
      sync_value v[MU_NCOLS];
      cp_key(key, sizeof key, i);
      snprintf(text, sizeof text, "text of row %u", i);
      v[0] = sync_int(i);
      v[1] = sync_real(i * 0.5);
      v[2] = sync_text(text, strlen(text));
      v[3] = sync_blob(key, strlen(key));
      TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
    }
    TU_OK(sync_txn_commit(x));
  }
}

/* Delete every row i < n with i % 3 != 0 (two thirds), CP_TXN_ROWS
 * rows per transaction; returns how many. */
static unsigned cp_delete_rows(mu_rep *r, unsigned n) {
  char key[32];
  unsigned i, done = 0, in_txn = 0;
  sync_txn *x = NULL;
  for (i = 0; i < n; i++) {
    if (i % 3 == 0) continue;
    if (!x) TU_OK(sync_txn_begin(r->env, 0, &x));
    cp_key(key, sizeof key, i);
    TU_OK(sync_delete(x, 0, key, strlen(key)));
    done++;
    if (++in_txn == CP_TXN_ROWS) {
      TU_OK(sync_txn_commit(x));
      x = NULL;
      in_txn = 0;
    }
  }
  if (x) TU_OK(sync_txn_commit(x));
  return done;
}

/* b pulls everything from a, and a learns that b holds it (the last
 * request is acknowledged, after the pull). */
static void cp_pull_acked(mu_rep *b, mu_rep *a) {
  sync_delta *d;
  mu_pull(b, a, 0, 1, NULL);
  d = mu_cut(b, a, 1, 1);
  sync_delta_free(d);
}

/* A replica with CP_ROWS rows, two thirds deleted, its peer holding it
 * all: the tombstones may be collected. */
static unsigned cp_setup(mu_rep *a, mu_rep *b, uint64_t *now) {
  uint8_t sa[16], sb[16];
  unsigned deleted;
  mu_site(sa, 0xa1);
  mu_site(sb, 0xb2);
  mu_open(a, "compact-a.db", sa, now, 0);
  mu_open(b, "compact-b.db", sb, now, 0);
  cp_put_rows(a, 0, CP_ROWS);
  cp_pull_acked(b, a);
  *now += 10;
  deleted = cp_delete_rows(a, CP_ROWS);
  cp_pull_acked(b, a);
  TU_U64(mu_tombstones(a), deleted);
  return deleted;
}

/* One sync_gc is bounded; sync_env_gc collects the rest in batches, and
 * the file does not grow: every page a batch frees is reused by those
 * after it.  (One transaction for all of them grew it by half.) */
static void gc_in_batches_keeps_the_file(void **state) {
  uint64_t now = 1700000000000ull, n = 0, before, after, dg;
  unsigned deleted;
  mu_rep a, b;
  sync_txn *x;
  (void)state;
  deleted = cp_setup(&a, &b, &now);
  assert_true(deleted > 2 * SYNC_GC_BATCH);
  dg = mu_digest(&a);
  before = cp_file_size(a.path);
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sync_gc(x, &n));
  TU_OK(sync_txn_commit(x));
  TU_U64(n, SYNC_GC_BATCH);
  TU_OK(sync_env_gc(a.env, &n));
  TU_U64(n, deleted - SYNC_GC_BATCH);
  TU_U64(mu_tombstones(&a), 0);
  TU_OK(sync_env_gc(a.env, &n));
  TU_U64(n, 0);
  after = cp_file_size(a.path);
  printf("file before collection %llu bytes, after %llu\n",
         (unsigned long long)before, (unsigned long long)after);
  assert_true(after <= before);
  TU_U64(mu_digest(&a), dg);
  TU_U64(mu_count(&a), CP_ROWS - deleted);
  TU_RC(sync_env_gc(NULL, &n), SYNC_EINVAL);
  mu_close(&a);
  mu_close(&b);
}

/* In place: same site, rows and digest, a smaller file that opens as
 * itself (no renewal), and a peer that continues incrementally in both
 * directions. */
static void compact_in_place_keeps_identity(void **state) {
  uint64_t now = 1700000000000ull, n = 0, before, after, dg;
  uint8_t site[16], got[16];
  sync_session_stats cst;
  unsigned deleted;
  mu_rep a, b;
  (void)state;
  deleted = cp_setup(&a, &b, &now);
  TU_OK(sync_env_gc(a.env, &n));
  TU_U64(n, deleted);
  assert_int_equal(su_sync(&b, &a, NULL, NULL, NULL, NULL), 1);
  TU_OK(sync_env_site_id(a.env, site));
  dg = mu_digest(&a);
  before = cp_file_size(a.path);
  TU_OK(sync_env_compact(a.env, NULL));
  after = cp_file_size(a.path);
  printf("file %llu bytes, compacted in place %llu\n",
         (unsigned long long)before, (unsigned long long)after);
  assert_true(after < before / 2);
  assert_false(tu_file_exists("compact-a.db.compact"));
  /* The env works on the new file. */
  TU_OK(sync_env_site_id(a.env, got));
  assert_memory_equal(got, site, 16);
  TU_U64(mu_digest(&a), dg);
  TU_U64(mu_count(&a), CP_ROWS - deleted);
  now += 10;
  mu_put(&a, "after-a", 1, 1.0, "a");
  mu_put(&b, "after-b", 2, 2.0, "b");
  assert_int_equal(su_sync(&b, &a, NULL, NULL, &cst, NULL), 1);
  TU_U64(cst.rows_received, 1);
  TU_U64(cst.rows_sent, 1);
  /* Opened again, it is the same replica. */
  sync_env_close(a.env);
  mu_reopen(&a);
  assert_memory_equal(a.site, site, 16);
  now += 10;
  mu_put(&a, "again-a", 3, 3.0, "a");
  assert_int_equal(su_sync(&b, &a, NULL, NULL, &cst, NULL), 1);
  TU_U64(cst.rows_received, 1);
  TU_U64(cst.rows_sent, 0);
  TU_U64(mu_digest(&a), mu_digest(&b));
  mu_close(&a);
  mu_close(&b);
}

/* A compacted copy to another path holds the same rows and opens as a
 * copy: a new site id, so that two live files never share one. */
static void compact_copy_is_a_copy(void **state) {
  uint64_t now = 1700000000000ull, n = 0, dg, src_size;
  uint8_t site[16];
  mu_rep a, b, c;
  (void)state;
  (void)cp_setup(&a, &b, &now);
  TU_OK(sync_env_gc(a.env, &n));
  TU_OK(sync_env_site_id(a.env, site));
  dg = mu_digest(&a);
  src_size = cp_file_size(a.path);
  tu_remove_db("compact-c.db");
  TU_OK(sync_env_compact(a.env, "compact-c.db"));
  assert_true(cp_file_size("compact-c.db") < src_size / 2);
  assert_false(tu_file_exists("compact-c.db-lock"));
  TU_RC(sync_env_compact(a.env, "compact-c.db"), SYNC_EEXIST);
  TU_RC(sync_env_compact(a.env, ""), SYNC_EINVAL);
  TU_RC(sync_env_compact(NULL, NULL), SYNC_EINVAL);
  /* The original is untouched and still itself. */
  TU_U64(mu_digest(&a), dg);
  memset(&c, 0, sizeof c);
  snprintf(c.path, sizeof c.path, "compact-c.db");
  c.now = &now;
  mu_site(c.site, 0xc3);
  mu_reopen(&c);
  assert_memory_not_equal(c.site, site, 16);
  TU_U64(mu_digest(&c), dg);
  mu_close(&c);
  mu_close(&a);
  mu_close(&b);
}

/* A compacted copy where it may not grow (a full disk; here RLIMIT_FSIZE
 * at a quarter of what the copy needs, in a child process) fails with
 * SYNC_ENOSPC, leaves no file behind and the source as it was.  Before
 * the limit was taken for a full disk it failed with SYNC_EIO: LMDB's
 * write to the copy stopped short there, which it reports as EIO.  (A
 * copy onto another file system that is full: tests/synctl.sh.) */
static void compact_copy_without_room(void **state) {
  uint64_t now = 1700000000000ull, dg, size;
  mu_rep a, b;
  pid_t pid;
  int status = 0;
  (void)state;
  (void)cp_setup(&a, &b, &now);
  dg = mu_digest(&a);
  tu_remove_db("compact-c.db");
  TU_OK(sync_env_compact(a.env, "compact-c.db"));
  size = cp_file_size("compact-c.db");
  tu_remove_db("compact-c.db");
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc;
    if (tu_limit_file_size((size_t)size / 4)) _exit(2);
    rc = sync_env_compact(a.env, "compact-c.db");
    if (rc != SYNC_ENOSPC)
      fprintf(stderr, "child: compacting ended with %d: %s\n", rc,
              sync_env_errmsg(a.env));
    _exit(rc == SYNC_ENOSPC ? 0 : 3);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_false(tu_file_exists("compact-c.db"));
  TU_U64(mu_digest(&a), dg);
  mu_close(&a);
  mu_close(&b);
}

/* In place needs the file alone: another process with it open, or a
 * transaction of the env, gives SYNC_EBUSY and leaves all as it was; a
 * read-only env gives SYNC_EREADONLY. */
static void compact_in_place_needs_the_file_alone(void **state) {
  uint64_t now = 1700000000000ull;
  uint8_t sa[16];
  int go[2], ready[2];
  char c;
  pid_t pid;
  int status;
  mu_rep a;
  sync_txn *x;
  sync_env *ro;
  (void)state;
  mu_site(sa, 0xa1);
  mu_open(&a, "compact-busy.db", sa, &now, 0);
  cp_put_rows(&a, 0, 2000);
  /* A transaction of the env itself. */
  TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_env_compact(a.env, NULL), SYNC_EBUSY);
  sync_txn_abort(x);
  /* Another process. */
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(ready), 0);
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    sync_env *e = NULL;
    int ok = sync_env_create(NULL, &e) == 0 &&
             sync_env_open(e, "compact-busy.db", SYNC_OPEN_RDONLY) == 0;
    ssize_t w = write(ready[1], ok ? "y" : "n", 1);
    (void)w;
    if (read(go[0], &c, 1) < 0) ok = 0;
    sync_env_close(e);
    _exit(ok ? 0 : 1);
  }
  assert_int_equal(read(ready[0], &c, 1), 1);
  assert_int_equal(c, 'y');
  TU_RC(sync_env_compact(a.env, NULL), SYNC_EBUSY);
  assert_non_null(strstr(sync_env_errmsg(a.env), "another process"));
  assert_false(tu_file_exists("compact-busy.db.compact"));
  /* Refused, it left the env as it was, and other processes may still
   * open the file (the shared lock is back). */
  TU_U64(mu_count(&a), 2000);
  {
    pid_t p2;
    fflush(stdout);
    p2 = fork();
    assert_true(p2 >= 0);
    if (p2 == 0) {
      sync_env *e = NULL;
      int ok = sync_env_create(NULL, &e) == 0 &&
               sync_env_open(e, "compact-busy.db", SYNC_OPEN_RDONLY) == 0;
      sync_env_close(e);
      _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(p2, &status, 0), p2);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  assert_int_equal(write(go[1], "x", 1), 1);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(go[0]);
  close(go[1]);
  close(ready[0]);
  close(ready[1]);
  /* Alone now. */
  TU_OK(sync_env_compact(a.env, NULL));
  TU_U64(mu_count(&a), 2000);
  sync_env_close(a.env);
  a.env = NULL;
  /* Read-only: only a copy. */
  TU_OK(sync_env_create(NULL, &ro));
  TU_OK(sync_env_open(ro, "compact-busy.db", SYNC_OPEN_RDONLY));
  TU_RC(sync_env_compact(ro, NULL), SYNC_EREADONLY);
  tu_remove_db("compact-busy-copy.db");
  TU_OK(sync_env_compact(ro, "compact-busy-copy.db"));
  sync_env_close(ro);
  tu_remove_db("compact-busy-copy.db");
  mu_close(&a);
}

/* Another process opens the file, writes a row and closes it, again
 * and again, while this one compacts it in place until that succeeds:
 * some of its opens meet the exclusive lock and wait in LMDB's open,
 * then go on with the new file.  Every open and commit of the other
 * process must succeed, each row it committed must be in the file at the
 * end (none went to the old file), and nobody took a new site id. */
static void compact_in_place_with_a_process_waiting(void **state) {
  uint64_t now = 1700000000000ull, before;
  uint8_t sa[16], site[16];
  int res[2], ready[2], status, compacted = 0, tries = 0;
  char c;
  unsigned got = 0;
  pid_t pid;
  mu_rep a;
  (void)state;
  mu_site(sa, 0xa1);
  mu_open(&a, "compact-wait.db", sa, &now, 0);
  cp_put_rows(&a, 0, CP_ROWS);
  TU_OK(sync_env_site_id(a.env, site));
  before = mu_count(&a);
  assert_int_equal(pipe(res), 0);
  assert_int_equal(pipe(ready), 0);
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    unsigned i, ok = 0;
    for (i = 0; i < 150; i++) {
      sync_env *e = NULL;
      sync_txn *x = NULL;
      uint8_t s2[16];
      char key[16];
      sync_value v[MU_NCOLS];
      struct timespec ts = {0, 2000000};
      snprintf(key, sizeof key, "child%04u", i);
      v[0] = sync_int(i);
      v[1] = sync_real(i);
      v[2] = sync_text(key, strlen(key));
      v[3] = sync_blob(key, strlen(key));
      if (sync_env_create(NULL, &e) || sync_env_set_schema(e, mu_tables, 1) ||
          sync_env_open(e, "compact-wait.db", 0) || sync_env_site_id(e, s2) ||
          memcmp(s2, site, 16) || sync_txn_begin(e, 0, &x) ||
          sync_put(x, 0, key, strlen(key), v, MU_NCOLS) || sync_txn_commit(x))
        _exit(10);
      sync_env_close(e);
      if (ok++ == 2 && write(ready[1], "r", 1) != 1) _exit(12);
      nanosleep(&ts, NULL);
    }
    if (write(res[1], &ok, sizeof ok) != (ssize_t)sizeof ok) _exit(11);
    _exit(0);
  }
  /* Compact while the other process is at it. */
  assert_int_equal(read(ready[0], &c, 1), 1);
  while (!compacted && tries < 2000) {
    struct timespec ts = {0, 500000};
    int rc = sync_env_compact(a.env, NULL);
    tries++;
    if (rc == 0)
      compacted = 1;
    else
      assert_int_equal(rc, SYNC_EBUSY);
    nanosleep(&ts, NULL);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(read(res[0], &got, sizeof got), (ssize_t)sizeof got);
  close(res[0]);
  close(res[1]);
  close(ready[0]);
  close(ready[1]);
  printf("compacted after %d tries; the other process committed %u rows\n",
         tries, got);
  assert_true(compacted);
  assert_int_equal(got, 150);
  TU_U64(mu_count(&a), before + got);
  sync_env_close(a.env);
  mu_reopen(&a);
  assert_memory_equal(a.site, site, 16);
  TU_U64(mu_count(&a), before + got);
  mu_close(&a);
}

static sync_env *cp_open_alloc(sync_allocator *al) {
  sync_env *e = NULL;
  TU_OK(sync_env_create(al, &e));
  TU_OK(sync_env_set_schema(e, mu_tables, 1));
  TU_OK(sync_env_set_durability(e, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_open(e, "compact-alloc.db", 0));
  return e;
}

static uint64_t cp_count(sync_env *e) {
  sync_txn *x;
  uint64_t n = 0;
  TU_OK(sync_txn_begin(e, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_count(x, 0, &n));
  sync_txn_abort(x);
  return n;
}

/* Every allocation of a compaction in place fails in turn: each failure
 * is SYNC_ENOMEM, leaves the rows whole and leaks nothing; where it
 * comes after the rename (the store opened again), the env holds no
 * file and is opened again, as sync.h says. */
static void compact_allocation_failures(void **state) {
  tu_alloc ta;
  sync_allocator al;
  sync_env *e;
  sync_txn *x;
  unsigned long k;
  unsigned i;
  int done = 0;
  (void)state;
  memset(&ta, 0, sizeof ta);
  al = tu_allocator(&ta);
  tu_remove_db("compact-alloc.db");
  e = cp_open_alloc(&al);
  TU_OK(sync_txn_begin(e, 0, &x));
  for (i = 0; i < 500; i++) {
    char key[16];
    sync_value v[MU_NCOLS];
    snprintf(key, sizeof key, "r%04u", i);
    v[0] = sync_int(i);
    v[1] = sync_real(i);
    v[2] = sync_text(key, strlen(key));
    v[3] = sync_blob(key, strlen(key));
    TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
  }
  TU_OK(sync_txn_commit(x));
  for (k = 1; !done && k < 200; k++) {
    int rc;
    ta.fail_at = ta.calls + k;
    rc = sync_env_compact(e, NULL);
    ta.fail_at = 0;
    if (rc == 0) {
      done = 1;
    } else {
      assert_int_equal(rc, SYNC_ENOMEM);
      if (sync_txn_begin(e, SYNC_TXN_RDONLY, &x) == SYNC_EINVAL) {
        sync_env_close(e);
        e = cp_open_alloc(&al);
      } else {
        sync_txn_abort(x);
      }
    }
    assert_false(tu_file_exists("compact-alloc.db.compact"));
    TU_U64(cp_count(e), 500);
  }
  assert_true(done);
  sync_env_close(e);
  assert_int_equal(ta.live_blocks, 0);
  tu_remove_db("compact-alloc.db");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gc_in_batches_keeps_the_file),
      cmocka_unit_test(compact_in_place_keeps_identity),
      cmocka_unit_test(compact_copy_is_a_copy),
      cmocka_unit_test(compact_copy_without_room),
      cmocka_unit_test(compact_in_place_needs_the_file_alone),
      cmocka_unit_test(compact_in_place_with_a_process_waiting),
      cmocka_unit_test(compact_allocation_failures),
  };
  return cmocka_run_group_tests(tests, 0, 0);
}
