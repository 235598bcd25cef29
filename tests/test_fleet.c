/*
 * test_fleet.c - fleet events between real sessions: a replica restored
 * from a backup, a file copied to make a second replica, both with the
 * same site id at first.  Each ends with every write where it belongs and
 * the same digest everywhere; the mismatch shows as SYNC_EHISTORY once (the
 * replica takes a new site id) or not at all (a copy notices at open).
 */
#include "sess_util.h"

#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1700000000000ull

static uint64_t now_ms;
static mu_rep S, D, C;

static int setup(void **state) {
  uint8_t s[16];
  (void)state;
  now_ms = T0;
  mu_site(s, 0x51);
  mu_open(&S, "t_fleet_s.db", s, &now_ms, 0);
  mu_site(s, 0xd1);
  mu_open(&D, "t_fleet_d.db", s, &now_ms, 0);
  memset(&C, 0, sizeof C);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mu_close(&S);
  mu_close(&D);
  mu_close(&C);
  tu_remove_db("t_fleet_backup.db");
  tu_remove_db("t_fleet_e.db");
  return 0;
}

/* Copy file from to file to; to is truncated and rewritten in place when
 * it exists (its inode stays), as `cp` does. */
static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out;
  char buf[65536];
  size_t n;
  assert_non_null(in);
  out = fopen(to, "wb");
  assert_non_null(out);
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

/* A backup of r's file (closed and opened again around the copy), and
 * the file put back from it in place. */
static void backup_file(mu_rep *r) {
  sync_env_close(r->env);
  copy_file(r->path, "t_fleet_backup.db");
  mu_reopen(r);
}

static void restore_file(mu_rep *r) {
  sync_env_close(r->env);
  copy_file("t_fleet_backup.db", r->path);
  mu_reopen(r);
}

static void site_of(mu_rep *r, uint8_t out[16]) {
  TU_OK(sync_env_site_id(r->env, out));
}

static void put_n(mu_rep *r, const char *prefix, int n) {
  int i;
  for (i = 0; i < n; i++) {
    char key[32];
    snprintf(key, sizeof key, "%s%02d", prefix, i);
    now_ms += 3;
    mu_put(r, key, i, (double)i, key);
  }
}

static int has_row(mu_rep *r, const char *key) {
  mu_row row;
  mu_read(r, key, &row);
  return row.present;
}

/* Sync c with s (both directions); a SYNC_EHISTORY (a replica took a new
 * site id) is followed by one more session, which must succeed. */
static int sync_pair(mu_rep *c, mu_rep *s) {
  int rc = su_sync(c, s, NULL, NULL, NULL, NULL);
  if (rc == SYNC_EHISTORY) rc = su_sync(c, s, NULL, NULL, NULL, NULL);
  return rc;
}

/* Issue 14, defect 2: D syncs, its file is copied, it writes five rows
 * and syncs; the file is put back from the copy (in place: same inode),
 * D writes one more row and syncs twice.  Before the fix both sessions
 * sent 0 rows: S never got the new row and D never got its five back. */
static void test_restore_from_backup_loses_nothing(void **state) {
  uint8_t before[16], after[16];
  int rc;
  (void)state;
  put_n(&D, "base", 3);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  backup_file(&D);
  site_of(&D, before);
  put_n(&D, "five", 5);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  assert_true(has_row(&S, "five04"));
  restore_file(&D);
  assert_false(has_row(&D, "five00")); /* the backup predates them */
  put_n(&D, "one", 1);
  /* The first session finds that S holds a log of D this file does not
   * have: D takes a new site id, and the session says so. */
  rc = su_sync(&D, &S, NULL, NULL, NULL, NULL);
  assert_int_equal(rc, SYNC_EHISTORY);
  site_of(&D, after);
  assert_memory_not_equal(before, after, 16);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  assert_true(has_row(&S, "one00"));
  assert_true(has_row(&D, "five00"));
  assert_true(has_row(&D, "five04"));
  TU_U64(mu_count(&D), 9);
  TU_U64(mu_digest(&D), mu_digest(&S));
}

/* The same with a pull-only device: the server's WELCOME says what it
 * holds of the device's log, so the device notices without pushing. */
static void test_restore_noticed_by_pull_only_session(void **state) {
  sync_session_opts o;
  (void)state;
  memset(&o, 0, sizeof o);
  o.mode = SYNC_PULL;
  put_n(&D, "base", 2);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  backup_file(&D);
  put_n(&D, "lost", 4);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  restore_file(&D);
  assert_int_equal(su_sync(&D, &S, &o, NULL, NULL, NULL), SYNC_EHISTORY);
  assert_int_equal(su_sync(&D, &S, &o, NULL, NULL, NULL), 1);
  assert_true(has_row(&D, "lost00"));
  assert_true(has_row(&D, "lost03"));
  TU_U64(mu_digest(&D), mu_digest(&S));
}

/* A restored device may sync first with a server that never held its
 * lost log (the lost rows reached it through a repair with another
 * replica that ended with the roots unequal, S refusing one of C's rows,
 * so no vector of the server claims them): its own clock, ahead of the
 * lost rows, claims them, so the server leaves them out and the device's
 * cursor moves past them.  When another peer shows the restore, the new
 * site id also starts every run again, and the server sends them.  (Had
 * the rows reached the server through a session, or a repair that ended
 * equal, its vector would have claimed the device's writes up to a clock
 * the restored file never stood at, and the first session would have
 * shown the restore.) */
static void test_restore_found_late_still_gets_lost_rows(void **state) {
  sync_session_opts repair, judge;
  sync_session_stats cs;
  (void)state;
  memset(&repair, 0, sizeof repair);
  memset(&judge, 0, sizeof judge);
  repair.repair = 1;
  judge.check_write = su_refuse_key;
  judge.check_write_ctx = (void *)"held00";
  mu_site(C.site, 0x99);
  mu_open(&C, "t_fleet_q.db", C.site, &now_ms, 0);
  put_n(&D, "base", 2);
  assert_int_equal(su_sync(&D, &C, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&C, &S, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  backup_file(&D);
  put_n(&D, "lost", 3);
  assert_int_equal(su_sync(&D, &C, NULL, NULL, NULL, NULL), 1);
  put_n(&C, "held", 1);
  assert_int_equal(su_sync(&C, &S, &repair, &judge, &cs, NULL), 1);
  assert_int_equal(cs.repair_equal, 0);
  assert_true(has_row(&S, "lost02"));
  restore_file(&D);
  now_ms += 1000;
  put_n(&D, "new", 1); /* its clock passes the lost rows' stamps */
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  assert_false(has_row(&D, "lost00")); /* left out: D claimed them */
  assert_int_equal(su_sync(&D, &C, NULL, NULL, NULL, NULL), SYNC_EHISTORY);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  assert_true(has_row(&D, "lost00"));
  assert_true(has_row(&D, "lost02"));
  assert_true(has_row(&S, "new00"));
  TU_U64(mu_digest(&D), mu_digest(&S));
}

/* Limit (b) of the last round, closed: a third replica E meets the
 * restored D before anyone notices the restore, and takes D's vector,
 * whose own entry (D's clock, past the lost rows) claims the writes D
 * lost.  S holds them.  Once D learns it was restored it renews and says
 * so (a renewal record: the old id's claims above what the backup held
 * are void); that record reaches E through S, E lowers its entry for
 * the old id and starts its runs again, and S sends E the lost rows.
 * Before the record existed E's vector filtered them out for good, and
 * only a repair brought them. */
static void test_restore_claim_taken_by_third_replica(void **state) {
  mu_rep E;
  int i;
  (void)state;
  memset(&E, 0, sizeof E);
  mu_site(E.site, 0xe3);
  mu_open(&E, "t_fleet_e.db", E.site, &now_ms, 0);
  put_n(&D, "base", 2);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  backup_file(&D);
  put_n(&D, "lost", 5);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  restore_file(&D);
  now_ms += 1000;
  put_n(&D, "new", 1); /* its clock passes the lost rows' stamps */
  /* E meets D first and takes D's vector: it claims the lost rows. */
  assert_int_equal(su_sync(&E, &D, NULL, NULL, NULL, NULL), 1);
  assert_true(has_row(&E, "new00"));
  /* S shows D the restore; D renews and syncs again. */
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_true(has_row(&D, "lost04"));
  /* E syncs with S (and D) the usual way: no repair. */
  for (i = 0; i < 3; i++) {
    assert_int_equal(sync_pair(&E, &S), 1);
    assert_int_equal(sync_pair(&E, &D), 1);
    assert_int_equal(sync_pair(&D, &S), 1);
  }
  assert_true(has_row(&E, "lost00"));
  assert_true(has_row(&E, "lost04"));
  TU_U64(mu_count(&E), 8);
  TU_U64(mu_digest(&E), mu_digest(&S));
  TU_U64(mu_digest(&D), mu_digest(&S));
  mu_close(&E);
}

/* A restored device that no peer holding its later log has met finds
 * the restore by itself.  D syncs with S, a backup is taken; D writes
 * two rows and only E (which joined after the backup) pulls them; E
 * changes one and syncs with S.  D is put back in place and syncs with
 * S: S's view of D's log is from before the backup, so HELLO shows
 * nothing.  S sends the changed row (E's write is news to D), carrying
 * D's own write that D's file never made: its stamp lies where D's
 * epochs show no write of D's (after the backup's clock, before D's
 * first write since the restore).  D takes a new site id, and the
 * renewal record makes S send back the other lost row, which D's vector
 * claimed.  Before the fix D merged the changed row silently, and its
 * vector kept claiming the other lost row: no session brought it. */
static void test_restore_found_by_own_lost_write(void **state) {
  mu_rep E;
  uint8_t before[16], after[16];
  mu_row r;
  int i;
  (void)state;
  memset(&E, 0, sizeof E);
  mu_site(E.site, 0xe4);
  mu_open(&E, "t_fleet_e.db", E.site, &now_ms, 0);
  put_n(&D, "base", 2);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  backup_file(&D);
  site_of(&D, before);
  now_ms += 1000;
  put_n(&D, "lost", 2);
  assert_int_equal(su_sync(&E, &D, NULL, NULL, NULL, NULL), 1);
  now_ms += 1000;
  mu_update(&E, "lost00", MU_COL_R, sync_real(9.5));
  assert_int_equal(su_sync(&E, &S, NULL, NULL, NULL, NULL), 1);
  restore_file(&D);
  now_ms += 1000;
  put_n(&D, "new", 1);
  assert_false(has_row(&D, "lost01"));
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), SYNC_EHISTORY);
  site_of(&D, after);
  assert_memory_not_equal(before, after, 16);
  for (i = 0; i < 2; i++) {
    assert_int_equal(sync_pair(&D, &S), 1);
    assert_int_equal(sync_pair(&E, &S), 1);
  }
  assert_true(has_row(&D, "lost01"));
  mu_read(&D, "lost00", &r);
  assert_true(r.present);
  assert_true(r.v[MU_COL_R].r == 9.5);
  TU_U64(mu_count(&D), 5);
  TU_U64(mu_digest(&D), mu_digest(&S));
  TU_U64(mu_digest(&E), mu_digest(&S));
  mu_close(&E);
}

/* Issue 14, defect 3: a copy of D's file is a second replica.  It takes
 * a new site id when first opened (another file than the one D last
 * opened), so its writes and D's both reach S whatever order they come
 * in, and S's vector entry for D is never raised by the copy's stamps. */
static void test_copied_file_takes_new_site_id(void **state) {
  uint8_t sd[16], sc[16];
  (void)state;
  put_n(&D, "base", 3);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  sync_env_close(D.env);
  mu_copy_rep(&C, &D, "t_fleet_c.db");
  mu_reopen(&D);
  mu_reopen(&C);
  site_of(&D, sd);
  site_of(&C, sc);
  assert_memory_not_equal(sd, sc, 16);
  /* The copy writes late in time and pushes first; D writes earlier
   * stamps and syncs after: before the fix S dropped D's rows. */
  now_ms += 1000;
  put_n(&C, "copy", 4);
  now_ms -= 500;
  put_n(&D, "orig", 4);
  assert_int_equal(sync_pair(&C, &S), 1);
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_int_equal(sync_pair(&C, &S), 1);
  assert_true(has_row(&S, "orig03"));
  assert_true(has_row(&S, "copy03"));
  TU_U64(mu_count(&S), 11);
  TU_U64(mu_digest(&D), mu_digest(&S));
  TU_U64(mu_digest(&C), mu_digest(&S));
}

/* A random source that gives one draw (the open's epoch id) and then
 * fails (the new site id). */
static int one_draw_fn(void *ctx, void *buf, size_t n) {
  unsigned *calls = (unsigned *)ctx;
  if ((*calls)++) return -1;
  memset(buf, 0x3c, n);
  return 0;
}

/* A copy whose first open fails while it takes its new site id (here the
 * random source fails; a full disk or a crash do the same) must take one
 * at its next open.  Before the fix the first open had already recorded
 * the file as its own (meta "ident") in a transaction of its own, so the
 * next open saw nothing to renew: the copy kept D's site id for good. */
static void test_copy_whose_renewal_failed_renews_at_next_open(void **state) {
  uint8_t sd[16], sc[16];
  unsigned calls = 0;
  sync_env *env;
  (void)state;
  put_n(&D, "base", 3);
  site_of(&D, sd);
  sync_env_close(D.env);
  mu_copy_rep(&C, &D, "t_fleet_c.db");
  mu_reopen(&D);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_random(env, one_draw_fn, &calls));
  TU_OK(sync_env_set_schema(env, mu_tables, 1));
  TU_RC(sync_env_open(env, C.path, 0), SYNC_EIO);
  assert_int_equal(calls, 2);
  sync_env_close(env);
  mu_reopen(&C);
  site_of(&C, sc);
  assert_memory_not_equal(sd, sc, 16);
  /* Both write; S gets every row of both. */
  put_n(&C, "copy", 2);
  put_n(&D, "orig", 2);
  assert_int_equal(sync_pair(&C, &S), 1);
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_int_equal(sync_pair(&C, &S), 1);
  TU_U64(mu_count(&S), 7);
  TU_U64(mu_digest(&C), mu_digest(&S));
}

/* D with n rows more, in transactions of 1000. */
static void put_many(mu_rep *r, int n) {
  sync_txn *txn = NULL;
  int i;
  for (i = 0; i < n; i++) {
    char key[32], text[48];
    sync_value v[MU_NCOLS];
    if (i % 1000 == 0) TU_OK(sync_txn_begin(r->env, 0, &txn));
    snprintf(key, sizeof key, "big%06d", (i * 7919) % n);
    snprintf(text, sizeof text, "a row of some length, number %06d", i);
    v[0] = sync_int(i);
    v[1] = sync_real(i * 0.5);
    v[2] = sync_text(text, strlen(text));
    v[3] = sync_null();
    TU_OK(sync_put(txn, 0, key, strlen(key), v, MU_NCOLS));
    if (i % 1000 == 999 || i == n - 1) TU_OK(sync_txn_commit(txn));
  }
}

static size_t file_size(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (size_t)st.st_size;
}

/* Every row of r is stamped by site (its insert and its columns). */
static void assert_rows_of(mu_rep *r, const uint8_t site[16], uint64_t n) {
  sync_txn *txn;
  sync_changes *it;
  sync_change ch;
  uint64_t seen = 0;
  int rc;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_changes_open(txn, 0, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    sync_stamp st;
    assert_memory_equal(ch.row_stamp.site, site, 16);
    TU_OK(sync_changes_column(it, 0, NULL, &st, NULL));
    assert_memory_equal(st.site, site, 16);
    seen++;
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(txn);
  TU_U64(seen, n);
}

#define BIG 40000

/* A copy's renewal moves every row's own stamps to the old id's new
 * index.  In one transaction LMDB copies every page it touches and
 * reuses none until the commit: the file doubled.  In batches it grows
 * by about one batch. */
static void test_copy_renewal_does_not_double_the_file(void **state) {
  uint8_t sd[16], sc[16];
  uint64_t h;
  size_t before, after;
  (void)state;
  put_many(&D, BIG);
  TU_OK(sync_env_compact(D.env, NULL)); /* no free page left */
  site_of(&D, sd);
  h = mu_digest(&D);
  sync_env_close(D.env);
  mu_copy_rep(&C, &D, "t_fleet_c.db");
  mu_reopen(&D);
  before = file_size(C.path);
  mu_reopen(&C);
  after = file_size(C.path);
  site_of(&C, sc);
  assert_memory_not_equal(sd, sc, 16);
  assert_rows_of(&C, sd, BIG);
  TU_U64(mu_digest(&C), h);
  print_message("copy: %zu bytes before its renewal, %zu after\n", before, after);
  if (after > before + before / 4)
    fail_msg("the copy grew from %zu to %zu bytes", before, after);
}

/* An allocator that, at its n-th call, ends the process (said < 0), or
 * says so on pipe said and waits on pipe go: the process stops there
 * until the test lets it go on. */
typedef struct cut_alloc {
  unsigned long calls, at;
  int said, go;
} cut_alloc;

static void cut_count(cut_alloc *a) {
  char c = 'p';
  if (++a->calls != a->at) return;
  if (a->said < 0) _exit(7);
  if (write(a->said, &c, 1) != 1 || read(a->go, &c, 1) != 1) _exit(9);
}
static void *cut_malloc(void *ctx, size_t n) {
  cut_count((cut_alloc *)ctx);
  return malloc(n);
}
static void *cut_realloc(void *ctx, void *p, size_t n) {
  cut_count((cut_alloc *)ctx);
  return realloc(p, n);
}
static void cut_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

/* Open path as a copy with an allocator that counts (at 0) or stops at
 * its at-th call as cut_alloc says; returns the calls counted. */
static unsigned long open_at(const char *path, unsigned long at, int said,
                             int go) {
  cut_alloc a = {0, 0, -1, -1};
  sync_allocator al = {&a, cut_malloc, cut_realloc, cut_free};
  sync_env *env;
  a.at = at;
  a.said = said;
  a.go = go;
  TU_OK(sync_env_create(&al, &env));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_schema(env, mu_tables, 1));
  TU_OK(sync_env_open(env, path, 0));
  sync_env_close(env);
  return a.calls;
}

static unsigned long open_cut(const char *path, unsigned long at) {
  return open_at(path, at, -1, -1);
}

/* D with BIG / 4 rows, closed, and C a copy of its file, not opened yet:
 * D's site id and digest, and the allocations of C's first open. */
static unsigned long copy_of_d(uint8_t sd[16], uint64_t *h) {
  put_many(&D, BIG / 4);
  site_of(&D, sd);
  *h = mu_digest(&D);
  sync_env_close(D.env);
  D.env = NULL;
  mu_copy_rep(&C, &D, "t_fleet_c.db");
  return open_cut(C.path, 0);
}

/* The renewal of a copy cut short anywhere (the process ends at one of
 * the open's allocations, spread over its batches) is finished by the
 * next open: a new site id, every inherited row still the old id's, the
 * same rows, and a third open changes nothing. */
static void test_copy_renewal_cut_short_goes_on(void **state) {
  uint8_t sd[16], sc[16], again[16];
  uint64_t h;
  unsigned long total;
  int i;
  (void)state;
  total = copy_of_d(sd, &h);
  print_message("open of the copy: %lu allocations\n", total);
  assert_true(total > 20);
  for (i = 1; i <= 12; i++) {
    unsigned long at = total * (unsigned long)i / 13;
    pid_t pid;
    int status = 0;
    mu_copy_rep(&C, &D, "t_fleet_c.db");
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      open_cut(C.path, at);
      _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 7);
    mu_reopen(&C);
    site_of(&C, sc);
    if (!memcmp(sc, sd, 16))
      fail_msg("cut at allocation %lu of %lu: the copy kept D's id", at,
               total);
    assert_rows_of(&C, sd, BIG / 4);
    TU_U64(mu_digest(&C), h);
    sync_env_close(C.env);
    mu_reopen(&C);
    site_of(&C, again);
    assert_memory_equal(sc, again, 16);
    sync_env_close(C.env);
    C.env = NULL;
  }
  mu_reopen(&D);
}

/* Wait for pid at most ms milliseconds; 1 when it ended (exit status 0
 * asserted), else 0. */
static int wait_ms(pid_t pid, int ms) {
  int status = 0, i;
  for (i = 0; i < ms; i++) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    assert_true(r >= 0);
    if (r == pid) {
      assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      return 1;
    }
    {
      struct timespec ms1 = {0, 1000000};
      nanosleep(&ms1, NULL);
    }
  }
  return 0;
}

/* Two processes open the same new copy at once: the first stops between
 * (or inside) the batches of its renewal while the second opens the
 * file, which goes on with the renewal and may finish it.  The copy must
 * take one new id, once.  Before the fix the first, let go, found no
 * renewal under way and started another: the id the second had taken was
 * given up in turn (a second former id, held in the vector). */
static void test_copy_opened_twice_at_once_renews_once(void **state) {
  uint8_t sd[16], sc[16];
  uint64_t h;
  unsigned long total;
  int i, seen_done = 0;
  (void)state;
  total = copy_of_d(sd, &h);
  for (i = 1; i <= 12; i++) {
    unsigned long at = total * (unsigned long)i / 13;
    int said[2], go[2], done;
    pid_t first, second;
    char c;
    sync_txn *x;
    sync_stamp vv[8];
    size_t n = 0, j, foreign = 0;
    mu_copy_rep(&C, &D, "t_fleet_c.db");
    assert_int_equal(pipe(said), 0);
    assert_int_equal(pipe(go), 0);
    first = fork();
    assert_true(first >= 0);
    if (first == 0) {
      open_at(C.path, at, said[1], go[0]);
      _exit(0);
    }
    assert_int_equal(read(said[0], &c, 1), 1);
    second = fork();
    assert_true(second >= 0);
    if (second == 0) {
      open_at(C.path, 0, -1, -1);
      _exit(0);
    }
    /* The second waits for the writer lock when the first holds it. */
    done = wait_ms(second, 500);
    seen_done += done;
    assert_int_equal(write(go[1], "g", 1), 1);
    assert_true(wait_ms(first, 60000));
    if (!done) assert_true(wait_ms(second, 60000));
    close(said[0]);
    close(said[1]);
    close(go[0]);
    close(go[1]);
    mu_reopen(&C);
    site_of(&C, sc);
    assert_memory_not_equal(sc, sd, 16);
    assert_rows_of(&C, sd, BIG / 4);
    TU_U64(mu_digest(&C), h);
    TU_OK(sync_txn_begin(C.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_vv_get(x, vv, 8, &n));
    sync_txn_abort(x);
    for (j = 0; j < n && j < 8; j++)
      if (memcmp(vv[j].site, sc, 16)) foreign++;
    if (foreign != 1)
      fail_msg("second open at allocation %lu of %lu: %zu other ids held, "
               "not 1 (the copy renewed %s)",
               at, total, foreign, done ? "twice" : "wrongly");
    sync_env_close(C.env);
    C.env = NULL;
  }
  print_message("second open finished while the first waited: %d of 12\n",
                seen_done);
  mu_reopen(&D);
}

/* A restore found at a session renews in one transaction, which rewrites
 * every row holding the replica's own writes; LMDB reuses no page that
 * transaction frees, so the file grows by about their size.  Where the
 * file may not grow (a full disk; here RLIMIT_FSIZE just above its
 * size, in a child process), the session fails with SYNC_ENOSPC and
 * changes nothing: the same id, rows and digest.  Once there is room,
 * the next sessions renew and bring everything together.  Before the fix
 * the commit failed with SYNC_EIO: LMDB's write stopped short at the
 * limit, which it reports as EIO, and only a file system with no block
 * left was taken for a full disk. */
static void test_restore_renewal_without_room_changes_nothing(void **state) {
  uint8_t before[16], after[16];
  uint64_t h;
  size_t size;
  pid_t pid;
  int status = 0;
  (void)state;
  put_many(&D, BIG / 4);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  TU_OK(sync_env_compact(D.env, NULL)); /* no free page to reuse */
  backup_file(&D);
  put_n(&D, "lost", 3);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  restore_file(&D);
  site_of(&D, before);
  h = mu_digest(&D);
  sync_env_close(D.env);
  sync_env_close(S.env);
  D.env = S.env = NULL;
  size = file_size(D.path);
  if (file_size(S.path) > size) size = file_size(S.path);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc;
    mu_reopen(&D);
    mu_reopen(&S);
    if (tu_limit_file_size(size + 256 * 1024)) _exit(2);
    rc = su_sync(&D, &S, NULL, NULL, NULL, NULL);
    if (rc != SYNC_ENOSPC)
      fprintf(stderr, "child: the session ended with %d: %s\n", rc,
              sync_env_errmsg(D.env));
    sync_env_close(D.env);
    sync_env_close(S.env);
    _exit(rc == SYNC_ENOSPC ? 0 : 3);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) != 0)
    fail_msg("the session without room ended otherwise than SYNC_ENOSPC "
             "(child status %d)", WEXITSTATUS(status));
  mu_reopen(&D);
  mu_reopen(&S);
  site_of(&D, after);
  assert_memory_equal(after, before, 16);
  TU_U64(mu_digest(&D), h);
  /* With room: the renewal, then the lost rows come back. */
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  site_of(&D, after);
  assert_memory_not_equal(after, before, 16);
  assert_true(has_row(&D, "lost02"));
  TU_U64(mu_digest(&D), mu_digest(&S));
  print_message("restore renewal: %zu bytes before, %zu after\n", size,
                file_size(D.path));
}

/* A copy claims the writes of the old id it holds (up to its clock at
 * the copy).  C, a copy of D's file, deletes a row it inherited, S
 * acknowledges and C collects the tombstone; D, which C has never met,
 * then sends the row.  C's vector covers the row and so does its gcvv:
 * it answers with a delete, and D's copy goes too.  Before the fix a
 * copy claimed none of the old id, took the row for a new one, and the
 * delete was undone (lifecycle seed 0x550013b0).  D's writes made after
 * the copy still reach C. */
static void test_copy_keeps_collected_delete_of_inherited_row(void **state) {
  uint64_t gc = 0;
  sync_txn *x;
  (void)state;
  put_n(&D, "base", 3);
  sync_env_close(D.env);
  mu_copy_rep(&C, &D, "t_fleet_c.db");
  mu_reopen(&D);
  mu_reopen(&C);
  now_ms += 1000;
  mu_delete(&C, "base01");
  assert_int_equal(sync_pair(&C, &S), 1);
  assert_int_equal(sync_pair(&C, &S), 1);
  TU_OK(sync_txn_begin(C.env, 0, &x));
  TU_OK(sync_gc(x, &gc));
  TU_OK(sync_txn_commit(x));
  TU_U64(gc, 1);
  put_n(&D, "after", 1);
  assert_int_equal(sync_pair(&D, &C), 1);
  assert_false(has_row(&C, "base01"));
  assert_true(has_row(&C, "after00"));
  assert_int_equal(sync_pair(&D, &C), 1);
  assert_false(has_row(&D, "base01"));
  assert_int_equal(sync_pair(&C, &S), 1);
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_false(has_row(&S, "base01"));
  TU_U64(mu_count(&S), 3);
  TU_U64(mu_digest(&D), mu_digest(&S));
  TU_U64(mu_digest(&C), mu_digest(&S));
}

/* A file moved to another name keeps its identity only if it is the
 * same file: a rename keeps the inode, and the site id stays. */
static void test_renamed_file_keeps_site_id(void **state) {
  uint8_t before[16], after[16];
  (void)state;
  put_n(&D, "row", 2);
  site_of(&D, before);
  sync_env_close(D.env);
  tu_remove_db("t_fleet_moved.db");
  assert_int_equal(rename(D.path, "t_fleet_moved.db"), 0);
  snprintf(D.path, sizeof D.path, "%s", "t_fleet_moved.db");
  mu_reopen(&D);
  site_of(&D, after);
  assert_memory_equal(before, after, 16);
}

/* sync_site_renew by hand: rows keep their values, the digest stays, and
 * a peer that synced before gets nothing twice. */
static void test_site_renew_keeps_rows(void **state) {
  sync_txn *x;
  uint64_t dg;
  uint8_t before[16], after[16];
  sync_session_stats cs;
  (void)state;
  put_n(&D, "row", 5);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  dg = mu_digest(&D);
  site_of(&D, before);
  TU_OK(sync_txn_begin(D.env, 0, &x));
  TU_OK(sync_site_renew(x));
  TU_OK(sync_txn_commit(x));
  site_of(&D, after);
  assert_memory_not_equal(before, after, 16);
  TU_U64(mu_digest(&D), dg);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, &cs, NULL), 1);
  TU_U64(cs.applied.inserted + cs.applied.updated + cs.applied.deleted, 0);
  TU_U64(cs.peer_applied.inserted + cs.peer_applied.updated +
             cs.peer_applied.deleted,
         0);
  TU_U64(mu_digest(&S), dg);
}

/* The same fleet event through the in-process calls: D is restored from
 * a backup after S pulled writes of a later epoch; S's request makes
 * sync_delta_make answer SYNC_EHISTORY, and sync_site_renew_from keeps
 * D's claims on its old id up to what the backup held (S held them
 * before the backup), where sync_site_renew keeps none. */
static void test_renew_from_request_keeps_shared_claims(void **state) {
  sync_txn *x, *rt;
  sync_request *req;
  sync_delta *d = NULL;
  sync_stamp vv[8], rec[2];
  size_t n = 0, i;
  uint8_t old[16];
  uint64_t before = 0;
  (void)state;
  put_n(&D, "a", 3);
  mu_pull(&S, &D, 0, 1, NULL);
  site_of(&D, old);
  TU_OK(sync_txn_begin(S.env, SYNC_TXN_RDONLY, &rt));
  TU_OK(sync_vv_get(rt, vv, 8, &n));
  sync_txn_abort(rt);
  for (i = 0; i < n; i++)
    if (!memcmp(vv[i].site, old, 16)) before = vv[i].hlc;
  assert_true(before > 0);
  backup_file(&D);
  put_n(&D, "b", 2);
  mu_pull(&S, &D, 0, 1, NULL); /* S's view: an epoch the backup lacks */
  restore_file(&D); /* in place */
  put_n(&D, "c", 1); /* its clock passes what the backup held */
  TU_OK(sync_txn_begin(S.env, SYNC_TXN_RDONLY, &rt));
  TU_OK(sync_request_make(rt, old, &req));
  sync_txn_abort(rt);
  TU_OK(sync_txn_begin(D.env, 0, &x));
  TU_RC(sync_delta_make(x, req, NULL, &d), SYNC_EHISTORY);
  assert_int_equal(sync_site_renew_from(NULL, req), SYNC_EINVAL);
  TU_OK(sync_site_renew_from(x, req));
  TU_OK(sync_renewals_get(x, rec, 2, &n));
  TU_OK(sync_txn_commit(x));
  sync_request_free(req);
  TU_U64(n, 1);
  assert_memory_equal(rec[0].site, old, 16);
  assert_true(rec[0].hlc >= before);
  /* A request for the old id is no longer this replica's. */
  TU_OK(sync_txn_begin(S.env, SYNC_TXN_RDONLY, &rt));
  TU_OK(sync_request_make(rt, old, &req));
  sync_txn_abort(rt);
  TU_OK(sync_txn_begin(D.env, 0, &x));
  assert_int_equal(sync_site_renew_from(x, req), SYNC_EINVAL);
  sync_txn_abort(x);
  sync_request_free(req);
  /* Sessions bring everything together. */
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_int_equal(sync_pair(&D, &S), 1);
  assert_true(has_row(&D, "b01"));
  TU_U64(mu_digest(&D), mu_digest(&S));
}

/* The site id of the row at key in r, as its change lists it. */
static void row_site(mu_rep *r, const char *key, uint8_t out[16]) {
  sync_txn *x;
  sync_changes *it;
  sync_change ch;
  int rc, found = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_changes_open(x, 0, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0)
    if (ch.key.len == strlen(key) && !memcmp(ch.key.data, key, ch.key.len)) {
      memcpy(out, ch.row_stamp.site, 16);
      found = 1;
    }
  assert_int_equal(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(x);
  assert_true(found);
}

/* Another process with the file open renews its site id (a sync daemon
 * beside the application, after a restore).  The application's env,
 * opened before, must write and sync as the new id from its next
 * transaction on.  Before the fix it kept the old id it had read at
 * open: sync_env_site_id gave it, and its next write reached S stamped
 * with the old id, which the renewal had given up. */
static void test_renewal_by_another_process_is_seen(void **state) {
  uint8_t before[16], after[16], got[16];
  pid_t pid;
  int status;
  (void)state;
  put_n(&D, "row", 3);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  site_of(&D, before);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The other process: its own env on the same file. */
    mu_rep o = D;
    sync_txn *x;
    int ok;
    o.env = NULL;
    mu_reopen(&o);
    ok = sync_txn_begin(o.env, 0, &x) == 0 && sync_site_renew(x) == 0 &&
         sync_txn_commit(x) == 0 && sync_env_site_id(o.env, got) == 0 &&
         memcmp(got, before, 16) != 0;
    sync_env_close(o.env);
    _exit(ok ? 0 : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* D's env, opened before the renewal, writes and syncs. */
  put_n(&D, "after", 1);
  site_of(&D, after);
  assert_memory_not_equal(after, before, 16);
  row_site(&D, "after00", got);
  assert_memory_equal(got, after, 16);
  assert_int_equal(sync_pair(&D, &S), 1);
  row_site(&S, "after00", got);
  assert_memory_equal(got, after, 16);
  row_site(&S, "row00", got);
  assert_memory_equal(got, before, 16); /* older writes keep the old id */
  TU_U64(mu_digest(&D), mu_digest(&S));
}

/* Sibling: a renewal in a transaction that is then aborted changes
 * nothing, the id this env writes and syncs under included.  Before the
 * fix the env kept the id the aborted transaction drew, which the file
 * never held: its next session failed (SYNC_EINVAL). */
static void test_aborted_renewal_keeps_site_id(void **state) {
  sync_txn *x;
  uint8_t before[16], after[16], got[16];
  (void)state;
  put_n(&D, "row", 2);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  site_of(&D, before);
  TU_OK(sync_txn_begin(D.env, 0, &x));
  TU_OK(sync_site_renew(x));
  sync_txn_abort(x);
  site_of(&D, after);
  assert_memory_equal(after, before, 16);
  put_n(&D, "more", 1);
  row_site(&D, "more00", got);
  assert_memory_equal(got, before, 16);
  assert_int_equal(su_sync(&D, &S, NULL, NULL, NULL, NULL), 1);
  row_site(&S, "more00", got);
  assert_memory_equal(got, before, 16);
  TU_U64(mu_digest(&D), mu_digest(&S));
}

/* How many renewal records r keeps. */
static size_t renewals_of(mu_rep *r) {
  sync_txn *x;
  size_t n;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_renewals_get(x, NULL, 0, &n));
  sync_txn_abort(x);
  return n;
}

/* Bytes both sides sent in one more session of c with s, a full one
 * (no quick check: runs are cut both ways). */
static uint64_t session_bytes(mu_rep *c, mu_rep *s) {
  sync_session_opts o;
  sync_session_stats cs;
  memset(&o, 0, sizeof o);
  o.no_check = 1;
  assert_int_equal(su_sync(c, s, &o, NULL, &cs, NULL), 1);
  assert_true(cs.frames_sent > 0 && cs.frames_received > 0);
  print_message("full session after the records met: %llu bytes\n",
                (unsigned long long)(cs.bytes_sent + cs.bytes_received));
  return cs.bytes_sent + cs.bytes_received;
}

/* A fleet keeps a renewal record per restore of any replica, for its
 * whole life.  D renews 1,100 times (a row between renewals, so that
 * each makes a record).  Before the fix the 1,025th renewal failed
 * (SYNC_ELIMIT: a replica kept at most 1,024 records, in one value),
 * and every replica that learned 1,024 refused the chunks that brought
 * another, for good; the records went with every run's last chunk.  Now
 * S learns all of them, 1,024 a run; once the two have met, a full
 * session carries none (about 2 KB where the records' site ids alone
 * would take 17,600 bytes); and E, joining later, gets them all from S. */
static void test_renewal_records_outlast_1024(void **state) {
  mu_rep E;
  uint64_t quiet;
  int i;
  (void)state;
  for (i = 0; i < 1100; i++) {
    sync_txn *x;
    char key[16];
    snprintf(key, sizeof key, "r%04d", i);
    now_ms += 2;
    mu_put(&D, key, i, 0.5, NULL);
    TU_OK(sync_txn_begin(D.env, 0, &x));
    TU_OK(sync_site_renew(x));
    TU_OK(sync_txn_commit(x));
  }
  TU_U64(renewals_of(&D), 1100);
  for (i = 0; i < 4 && renewals_of(&S) < 1100; i++)
    assert_int_equal(sync_pair(&D, &S), 1);
  TU_U64(renewals_of(&S), 1100);
  TU_U64(i, 2); /* 1,024 records a chunk */
  TU_U64(mu_count(&S), 1100);
  TU_U64(mu_digest(&S), mu_digest(&D));
  assert_int_equal(sync_pair(&D, &S), 1);
  quiet = session_bytes(&D, &S);
  assert_true(quiet < 4096); /* the records' site ids alone: 17,600 */
  /* A replica joining now gets every record, with the rows. */
  memset(&E, 0, sizeof E);
  mu_site(E.site, 0xe4);
  mu_open(&E, "t_fleet_e.db", E.site, &now_ms, 0);
  for (i = 0; i < 4 && renewals_of(&E) < 1100; i++)
    assert_int_equal(sync_pair(&E, &S), 1);
  TU_U64(renewals_of(&E), 1100);
  TU_U64(mu_digest(&E), mu_digest(&S));
  assert_int_equal(sync_pair(&E, &S), 1);
  assert_true(session_bytes(&E, &S) < 4096);
  mu_close(&E);
}

/* Sibling: a range repair ends with the replica taking its peer's
 * vector, and no renewal records come with a repair.  A replica that
 * keeps records sends no vector there: its runs send the records to a
 * requester whose entry for it is below the clock it learned them at,
 * and a vector taken from the repair would have raised E's entry past
 * it with none of them.  E, repaired from S and then in sessions with
 * S, holds S's record. */
static void test_repair_keeps_renewal_records_coming(void **state) {
  sync_session_opts co;
  mu_rep E;
  sync_txn *x;
  int i;
  (void)state;
  put_n(&D, "row", 3);
  TU_OK(sync_txn_begin(D.env, 0, &x));
  TU_OK(sync_site_renew(x));
  TU_OK(sync_txn_commit(x));
  assert_int_equal(sync_pair(&D, &S), 1);
  TU_U64(renewals_of(&S), 1);
  memset(&E, 0, sizeof E);
  mu_site(E.site, 0xe5);
  mu_open(&E, "t_fleet_e.db", E.site, &now_ms, 0);
  memset(&co, 0, sizeof co);
  co.repair = 1;
  assert_int_equal(su_sync(&E, &S, &co, NULL, NULL, NULL), 1);
  TU_U64(mu_digest(&E), mu_digest(&S));
  for (i = 0; i < 2; i++) assert_int_equal(sync_pair(&E, &S), 1);
  TU_U64(renewals_of(&E), 1);
  mu_close(&E);
}

/* D is put back from a backup taken before it renewed: the file has the
 * id the fleet gave up (its renewal record voids every claim of it), and
 * meets first a replica that never synced with D.  A record naming the
 * receiver's own id shows the restore: D renews again.  Before the fix D
 * ignored it and kept writing under the voided id, whose claims every
 * peer capped at 0: each full session sent all of D's rows again, and
 * the record sets never agreed (the quick check never held). */
static void test_restore_to_before_a_renewal_renews_again(void **state) {
  sync_session_opts o;
  sync_session_stats cs;
  mu_rep E;
  sync_txn *x;
  uint8_t gone[16], now_id[16];
  int i;
  (void)state;
  put_n(&D, "a", 3);
  assert_int_equal(sync_pair(&D, &S), 1);
  backup_file(&D);
  site_of(&D, gone);
  TU_OK(sync_txn_begin(D.env, 0, &x));
  TU_OK(sync_site_renew(x));
  TU_OK(sync_txn_commit(x));
  assert_int_equal(sync_pair(&D, &S), 1);
  memset(&E, 0, sizeof E);
  mu_site(E.site, 0xe6);
  mu_open(&E, "t_fleet_e.db", E.site, &now_ms, 0);
  assert_int_equal(sync_pair(&E, &S), 1);
  TU_U64(renewals_of(&E), 1);
  restore_file(&D);
  site_of(&D, now_id);
  assert_memory_equal(now_id, gone, 16);
  put_n(&D, "b", 2);
  for (i = 0; i < 2; i++) {
    assert_int_equal(sync_pair(&D, &E), 1);
    assert_int_equal(sync_pair(&D, &S), 1);
    assert_int_equal(sync_pair(&E, &S), 1);
  }
  site_of(&D, now_id);
  assert_memory_not_equal(now_id, gone, 16);
  TU_U64(mu_count(&D), 5);
  TU_U64(mu_digest(&D), mu_digest(&S));
  TU_U64(mu_digest(&E), mu_digest(&S));
  TU_U64(renewals_of(&D), renewals_of(&S));
  memset(&o, 0, sizeof o);
  o.no_check = 1;
  assert_int_equal(su_sync(&D, &E, &o, NULL, &cs, NULL), 1);
  TU_U64(cs.rows_sent + cs.rows_received, 0);
  mu_close(&E);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_restore_from_backup_loses_nothing),
      T(test_restore_noticed_by_pull_only_session),
      T(test_restore_found_late_still_gets_lost_rows),
      T(test_restore_claim_taken_by_third_replica),
      T(test_restore_found_by_own_lost_write),
      T(test_copied_file_takes_new_site_id),
      T(test_copy_keeps_collected_delete_of_inherited_row),
      T(test_copy_whose_renewal_failed_renews_at_next_open),
      T(test_copy_renewal_does_not_double_the_file),
      T(test_copy_renewal_cut_short_goes_on),
      T(test_copy_opened_twice_at_once_renews_once),
      T(test_restore_renewal_without_room_changes_nothing),
      T(test_renamed_file_keeps_site_id),
      T(test_site_renew_keeps_rows),
      T(test_renew_from_request_keeps_shared_claims),
      T(test_renewal_by_another_process_is_seen),
      T(test_aborted_renewal_keeps_site_id),
      T(test_renewal_records_outlast_1024),
      T(test_repair_keeps_renewal_records_coming),
      T(test_restore_to_before_a_renewal_renews_again),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
