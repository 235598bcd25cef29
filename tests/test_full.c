/*
 * test_full.c - a full map and a full file.  A writer that runs out of
 * map (small maximum via sync_env_set_mapsize) or of file (RLIMIT_FSIZE,
 * in a child process with SIGXFSZ ignored: no root, no special mount)
 * must get the documented error (SYNC_EMAPFULL, SYNC_ENOSPC), lose
 * nothing already committed (every row reads back and verifies), and
 * write again once space is freed, the map may grow, or the limit is
 * raised.
 */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define DB_MAP "t_full_map.db"
#define DB_FILE "t_full_file.db"

static const sync_column_def cols[] = {
    {"n", SYNC_INTEGER, SYNC_COL_NOTNULL},
    {"b", SYNC_BLOB, 0},
};
static const sync_table_def schema[] = {{"t", SYNC_INTEGER, cols, 2}};

/* Rows carry 3000-byte blobs: each takes an LMDB overflow page, so that
 * deleting rows frees pages without copying them. */
#define BLOB 3000
#define PER_TXN 100

static void blob_of(unsigned char *b, int64_t n) {
  int i;
  for (i = 0; i < BLOB; i++) b[i] = (unsigned char)(n * 31 + i);
}

static sync_env *open_db(const char *path, size_t initial, size_t max) {
  sync_env *env = NULL;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_mapsize(env, initial, max));
  TU_OK(sync_env_set_schema(env, schema, 1));
  TU_OK(sync_env_open(env, path, 0));
  return env;
}

/* One transaction writing rows first..first+n-1; returns the first
 * failure (of a put, or of the commit) or 0. */
static int write_rows(sync_env *env, int64_t first, int n) {
  sync_txn *txn;
  unsigned char blob[BLOB];
  int i, rc;
  if ((rc = sync_txn_begin(env, 0, &txn))) return rc;
  for (i = 0; i < n; i++) {
    unsigned char key[8];
    sync_value v[2];
    sync_key_int(first + i, key);
    blob_of(blob, first + i);
    v[0] = sync_int(first + i);
    v[1] = sync_blob(blob, BLOB);
    if ((rc = sync_put(txn, 0, key, 8, v, 2))) {
      /* After a storage error the transaction is dead: commit says so. */
      int crc = sync_txn_commit(txn);
      if (crc != SYNC_ETXN) return -1000 + crc;
      return rc;
    }
  }
  return sync_txn_commit(txn);
}

/* Every row in [lo, hi) except those in [dlo, dhi) is present with its
 * content, nothing else is, and every row passes its checksum. */
static int check_rows(sync_env *env, int64_t lo, int64_t hi, int64_t dlo,
                      int64_t dhi) {
  sync_txn *txn;
  sync_cursor *cur;
  sync_key k;
  sync_value v[2];
  unsigned char blob[BLOB];
  int64_t want = lo;
  uint64_t count = 0;
  int rc, bad = 0;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &txn)) return -1;
  if (sync_cursor_open(txn, 0, &cur)) {
    sync_txn_abort(txn);
    return -1;
  }
  while ((rc = sync_cursor_next(cur, &k, v, 2)) == 0) {
    int64_t n;
    if (want >= dlo && want < dhi) want = dhi;
    n = sync_key_int_decode((const unsigned char *)k.data);
    blob_of(blob, n);
    if (n != want || v[0].i != n || v[1].len != BLOB ||
        memcmp(v[1].data, blob, BLOB) != 0)
      bad = 1;
    want = n + 1;
    count++;
  }
  sync_cursor_close(cur);
  if (rc != SYNC_NOTFOUND) bad = 1; /* SYNC_ECORRUPT included */
  if (want >= dlo && want < dhi) want = dhi;
  if (want != hi && !(count == 0 && lo == hi)) bad = 1;
  {
    uint64_t n = 0;
    int64_t del = (dhi > dlo ? dhi - dlo : 0);
    if (sync_count(txn, 0, &n) || n != count ||
        count != (uint64_t)(hi - lo - del))
      bad = 1;
  }
  sync_txn_abort(txn);
  return bad ? -1 : 0;
}

static void test_map_full(void **state) {
  sync_env *env;
  int64_t next = 0;
  int rc = 0, txns;
  (void)state;
  tu_remove_db(DB_MAP);
  env = open_db(DB_MAP, (size_t)1 << 20, (size_t)4 << 20);
  /* Fill: big transactions until the map says no. */
  for (txns = 0; txns < 1000; txns++) {
    rc = write_rows(env, next, PER_TXN);
    if (rc) break;
    next += PER_TXN;
  }
  TU_RC(rc, SYNC_EMAPFULL);
  assert_true(next >= 4 * PER_TXN); /* the map did grow past 1 MiB */
  assert_int_equal(check_rows(env, 0, next, 0, 0), 0);
  /* Still full: the same write fails again and changes nothing. */
  TU_RC(write_rows(env, next, PER_TXN), SYNC_EMAPFULL);
  assert_int_equal(check_rows(env, 0, next, 0, 0), 0);

  /* Free space: delete the first 2 transactions' rows. */
  {
    sync_txn *txn;
    int64_t i;
    TU_OK(sync_txn_begin(env, 0, &txn));
    for (i = 0; i < 2 * PER_TXN; i++) {
      unsigned char key[8];
      sync_key_int(i, key);
      TU_OK(sync_delete(txn, 0, key, 8));
    }
    TU_OK(sync_txn_commit(txn));
  }
  assert_int_equal(check_rows(env, 0, next, 0, 2 * PER_TXN), 0);
  /* LMDB reuses freed pages once no snapshot needs them: a small commit
   * first, then the big one fits. */
  TU_OK(write_rows(env, next, 1));
  next += 1;
  TU_OK(write_rows(env, next, PER_TXN));
  next += PER_TXN;
  assert_int_equal(check_rows(env, 0, next, 0, 2 * PER_TXN), 0);
  sync_env_close(env);

  /* Reopen with a larger maximum: the map grows and writes go on. */
  env = open_db(DB_MAP, (size_t)1 << 20, (size_t)64 << 20);
  assert_int_equal(check_rows(env, 0, next, 0, 2 * PER_TXN), 0);
  for (txns = 0; txns < 20; txns++) {
    TU_OK(write_rows(env, next, PER_TXN));
    next += PER_TXN;
  }
  assert_int_equal(check_rows(env, 0, next, 0, 2 * PER_TXN), 0);
  sync_env_close(env);
  tu_remove_db(DB_MAP);
}

/* What the child saw, sent through a pipe. */
typedef struct file_report {
  int step;        /* last step reached; 99 = all done */
  int rc_full;     /* the failing write's code */
  int native;      /* sync_env_native_error() after it */
  int rc_again;    /* a second write while still limited */
  int rc_after;    /* a write after the limit was raised */
  int check_full;  /* check_rows after the failure */
  int check_end;   /* check_rows at the end */
  int check_reopen;
} file_report;

static void file_child(int fd) {
  file_report r;
  struct rlimit rl;
  sync_env *env;
  int64_t next = 0;
  int i;
  ssize_t w;
  memset(&r, 0, sizeof r);
  signal(SIGXFSZ, SIG_IGN);
  env = open_db(DB_FILE, (size_t)8 << 20, (size_t)64 << 20);
  for (i = 0; i < 5; i++, next += PER_TXN)
    if (write_rows(env, next, PER_TXN)) _exit(2);
  r.step = 1;
  /* Writes at or past 8 KiB (everything but LMDB's two meta pages) now
   * fail with EFBIG, as writes past the end of a full file system fail
   * with ENOSPC. */
  if (getrlimit(RLIMIT_FSIZE, &rl)) _exit(2);
  {
    struct rlimit lim = rl;
    lim.rlim_cur = 8192;
    if (setrlimit(RLIMIT_FSIZE, &lim)) _exit(2);
  }
  r.rc_full = write_rows(env, next, PER_TXN);
  r.native = sync_env_native_error(env);
  r.check_full = check_rows(env, 0, next, 0, 0);
  r.rc_again = write_rows(env, next, 1);
  r.step = 2;
  if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(2);
  r.rc_after = write_rows(env, next, PER_TXN);
  if (r.rc_after == 0) next += PER_TXN;
  r.check_end = check_rows(env, 0, next, 0, 0);
  sync_env_close(env);
  env = open_db(DB_FILE, (size_t)8 << 20, (size_t)64 << 20);
  r.check_reopen = check_rows(env, 0, next, 0, 0);
  sync_env_close(env);
  r.step = 99;
  w = write(fd, &r, sizeof r);
  _exit(w == (ssize_t)sizeof r ? 0 : 3);
}

static void test_file_full(void **state) {
  int p[2], status = 0;
  pid_t pid;
  file_report r;
  ssize_t got;
  (void)state;
  tu_remove_db(DB_FILE);
  assert_int_equal(pipe(p), 0);
  fflush(stdout);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    file_child(p[1]);
  }
  close(p[1]);
  memset(&r, 0, sizeof r);
  got = read(p[0], &r, sizeof r);
  close(p[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(got, (ssize_t)sizeof r);
  assert_int_equal(r.step, 99);
  TU_RC(r.rc_full, SYNC_ENOSPC);
  assert_int_equal(r.native, EFBIG);
  assert_int_equal(r.check_full, 0);
  TU_RC(r.rc_again, SYNC_ENOSPC);
  TU_OK(r.rc_after);
  assert_int_equal(r.check_end, 0);
  assert_int_equal(r.check_reopen, 0);
  tu_remove_db(DB_FILE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_map_full),
      cmocka_unit_test(test_file_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
