/*
 * test_check.c - the quick check (docs/PROTOCOL.md, "Quick check"): a
 * client that synced with a server before and has nothing to send asks
 * in one short message whether anything changed.  It must answer
 * "unchanged" in at most 64 bytes both ways when nothing did, and never
 * when a full session would move a row, a cursor that matters, a scope,
 * a schema or a renewal record.
 */
#include "merge_util.h"
#include "sess_util.h"

#include <inttypes.h>
#include <xxhash.h>

static const sync_column_def ck_c2[2] = {
    {"i", SYNC_INTEGER, 0},
    {"s", SYNC_TEXT, 0},
};
static const sync_table_def ck_tables[2] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
    {"u", SYNC_TEXT, ck_c2, 2},
};

static void ck_open(mu_rep *r, const char *path, uint8_t site, uint64_t *now) {
  uint8_t id[16];
  mu_site(id, site);
  mu_open_schema(r, path, id, now, 0, ck_tables, 2);
}

static void ck_reopen(mu_rep *r) { mu_reopen_schema(r, ck_tables, 2); }

/* One session; *unchanged says whether the quick check ended it; the
 * bytes of both directions are returned. */
static uint64_t ck_sync(mu_rep *c, mu_rep *s, const sync_session_opts *co,
                        const sync_session_opts *so, int *unchanged) {
  sync_session_stats cst, sst;
  int rc = su_sync(c, s, co, so, &cst, &sst);
  if (rc != 1) fail_msg("session failed: %d", rc);
  assert_int_equal(cst.unchanged, sst.unchanged);
  *unchanged = cst.unchanged;
  return cst.bytes_sent + cst.bytes_received;
}

static void ck_put(mu_rep *r, const char *key, int64_t i) {
  mu_put(r, key, i, 1.5, "v");
}

static void ck_put_u(mu_rep *r, const char *key, int64_t i) {
  sync_txn *x;
  sync_value v[2];
  v[0] = sync_int(i);
  v[1] = sync_text("u", 1);
  TU_OK(sync_txn_begin(r->env, 0, &x));
  TU_OK(sync_put(x, 1, key, strlen(key), v, 2));
  TU_OK(sync_txn_commit(x));
}

/* Nothing changed: the exchange is at most 64 bytes both ways, and the
 * rows agree; each change on either side goes through a full session,
 * after which the check is quiet again (also after the server took the
 * client's rows into its own log). */
static void test_check_unchanged(void **state) {
  uint64_t now = 1700000000000ull, bytes;
  mu_rep srv, dev;
  int un;
  (void)state;
  ck_open(&srv, "ck-srv.db", 0x51, &now);
  ck_open(&dev, "ck-dev.db", 0xd1, &now);
  ck_put(&srv, "a", 1);
  ck_put(&dev, "b", 2);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un); /* they meet */
  bytes = ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  printf("unchanged: %" PRIu64 " bytes both ways\n", bytes);
  assert_true(bytes <= 64);
  assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  now += 10;
  ck_put(&srv, "c", 3); /* the server changed: a full session */
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un);
  assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  now += 10;
  ck_put(&dev, "d", 4); /* the client has rows to send: HELLO at once */
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un);
  assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  /* The server's log now holds the client's own rows: still quiet. */
  bytes = ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  assert_true(bytes <= 64);
  /* The same in pull and push sessions, and on a 64-byte link. */
  {
    sync_session_opts co;
    memset(&co, 0, sizeof co);
    co.mode = SYNC_PULL;
    co.max_message = 64;
    ck_sync(&dev, &srv, &co, NULL, &un);
    assert_true(un);
    co.mode = SYNC_PUSH;
    ck_sync(&dev, &srv, &co, NULL, &un);
    assert_true(un);
    now += 10;
    ck_put(&srv, "e", 5); /* a push-only session does not care */
    ck_sync(&dev, &srv, &co, NULL, &un);
    assert_true(un);
    co.mode = SYNC_PULL;
    ck_sync(&dev, &srv, &co, NULL, &un);
    assert_false(un);
    assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  }
  /* A dry run and no_check take the full handshake. */
  {
    sync_session_opts co;
    memset(&co, 0, sizeof co);
    co.no_check = 1;
    bytes = ck_sync(&dev, &srv, &co, NULL, &un);
    assert_false(un);
    assert_true(bytes > 64);
    memset(&co, 0, sizeof co);
    co.dry_run = 1;
    ck_sync(&dev, &srv, &co, NULL, &un);
    assert_false(un);
  }
  mu_close(&srv);
  mu_close(&dev);
}

static int ck_read_t_only(void *ctx, const uint8_t site[16], const void *cred,
                          size_t n, sync_rights *r) {
  (void)ctx;
  (void)site;
  (void)cred;
  (void)n;
  r->read[0] = 1;
  r->write[0] = 3;
  r->relay = 1;
  return 0;
}

static int ck_deny(void *ctx, const uint8_t site[16], const void *cred,
                   size_t n, sync_rights *r) {
  (void)ctx;
  (void)site;
  (void)cred;
  (void)n;
  (void)r;
  return SYNC_EPERM;
}

/* What the server serves the client changed: rights, selection, filter
 * version, schema.  Each one takes the full session, which then brings
 * what it must; a refused credential is refused at the check too. */
static void test_check_scope_and_schema(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sync_session_opts co, so;
  int un;
  (void)state;
  ck_open(&srv, "ck-srv.db", 0x52, &now);
  ck_open(&dev, "ck-dev.db", 0xd2, &now);
  ck_put(&srv, "a", 1);
  ck_put_u(&srv, "x", 1);
  memset(&so, 0, sizeof so);
  so.authorize = ck_read_t_only;
  ck_sync(&dev, &srv, NULL, &so, &un);
  assert_false(un);
  ck_sync(&dev, &srv, NULL, &so, &un);
  assert_true(un);
  /* Wider rights: table u now reaches the client. */
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un);
  assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  /* Another selection. */
  memset(&co, 0, sizeof co);
  {
    static const unsigned char only_t[SYNC_RIGHTS_BYTES] = {1};
    co.tables = only_t;
  }
  ck_sync(&dev, &srv, &co, NULL, &un);
  assert_false(un);
  ck_sync(&dev, &srv, &co, NULL, &un);
  assert_true(un);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un);
  /* A filter, then another version of its rules. */
  memset(&so, 0, sizeof so);
  so.filter_version = 7;
  ck_sync(&dev, &srv, NULL, &so, &un);
  assert_true(un); /* no filter: its version means nothing */
  /* A credential the server now refuses is refused at the check. */
  memset(&so, 0, sizeof so);
  so.authorize = ck_deny;
  {
    sync_session_stats cst;
    assert_int_equal(su_sync(&dev, &srv, NULL, &so, &cst, NULL), SYNC_EPERM);
  }
  /* A new column on the server: another schema hash. */
  {
    static const sync_column_def extra = {"n", SYNC_INTEGER, 0};
    TU_OK(sync_env_add_column(srv.env, 1, &extra));
  }
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un);
  mu_close(&srv);
  mu_close(&dev);
}

/* Back up victim's file, write key there and sync dev with srv (victim
 * is one of them), then put the backup back: the records the two hold
 * of each other no longer agree, so the check answers "changed", the
 * full session finds the restore, and later sessions bring the lost row
 * back, after which the check is quiet again. */
static void ck_restore_case(mu_rep *victim, mu_rep *dev, mu_rep *srv,
                            uint64_t *now, const char *key) {
  sync_session_stats cst;
  unsigned char *copy;
  size_t n = 0;
  int un, rc;
  sync_env_close(victim->env);
  copy = tu_read_file(victim->path, &n);
  assert_non_null(copy);
  ck_reopen(victim);
  *now += 10;
  ck_put(victim, key, 2);
  ck_sync(dev, srv, NULL, NULL, &un);
  assert_false(un);
  sync_env_close(victim->env);
  assert_int_equal(tu_write_file(victim->path, copy, n), 0);
  ck_reopen(victim);
  rc = su_sync(dev, srv, NULL, NULL, &cst, NULL);
  assert_false(cst.unchanged);
  assert_true(rc == SYNC_EHISTORY || rc == 1);
  ck_sync(dev, srv, NULL, NULL, &un);
  ck_sync(dev, srv, NULL, NULL, &un);
  assert_int_equal(mu_digest(srv), mu_digest(dev));
  ck_sync(dev, srv, NULL, NULL, &un);
  assert_true(un);
  free(copy);
}

static void test_check_restores(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  int un;
  (void)state;
  ck_open(&srv, "ck-srv.db", 0x53, &now);
  ck_open(&dev, "ck-dev.db", 0xd3, &now);
  ck_put(&dev, "a", 1);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  ck_restore_case(&dev, &dev, &srv, &now, "b");
  ck_restore_case(&srv, &dev, &srv, &now, "c");
  mu_close(&srv);
  mu_close(&dev);
}

/* A renewal record the server learned from a third replica must reach a
 * client whose check would otherwise be quiet. */
static void test_check_renewal(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev, other;
  sync_txn *x;
  int un;
  (void)state;
  ck_open(&srv, "ck-srv.db", 0x54, &now);
  ck_open(&dev, "ck-dev.db", 0xd4, &now);
  ck_open(&other, "ck-oth.db", 0x0e, &now);
  ck_put(&other, "o", 1);
  ck_sync(&other, &srv, NULL, NULL, &un);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  TU_OK(sync_txn_begin(other.env, 0, &x));
  TU_OK(sync_site_renew(x));
  TU_OK(sync_txn_commit(x));
  ck_sync(&other, &srv, NULL, NULL, &un);
  assert_false(un);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un); /* the record is news to the client */
  /* It voids claims the client's vector made: its runs start again
   * (docs/FORMAT.md, "Version vector"), then all is quiet. */
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_false(un);
  ck_sync(&dev, &srv, NULL, NULL, &un);
  assert_true(un);
  assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  mu_close(&srv);
  mu_close(&dev);
  mu_close(&other);
}

/* Bytes of one message: type, var length, payload, checksum. */
static size_t ck_msg(unsigned char *out, unsigned type, const unsigned char *p,
                     size_t n) {
  size_t k = 0;
  uint32_t h;
  out[k++] = (unsigned char)type;
  out[k++] = (unsigned char)n; /* n < 128 here */
  memcpy(out + k, p, n);
  k += n;
  h = (uint32_t)XXH3_64bits(out, k);
  out[k] = (unsigned char)h;
  out[k + 1] = (unsigned char)(h >> 8);
  out[k + 2] = (unsigned char)(h >> 16);
  out[k + 3] = (unsigned char)(h >> 24);
  return k + 4;
}

/* Feed raw messages to a fresh server session; its status. */
static int ck_feed(mu_rep *srv, const unsigned char *b, size_t n) {
  sync_session_opts so;
  sync_session *s;
  sync_inbuf in;
  int rc;
  memset(&so, 0, sizeof so);
  so.server = 1;
  TU_OK(sync_session_create(srv->env, &so, &s));
  in.ptr = b;
  in.size = n;
  in.pos = 0;
  (void)sync_session_recv(s, &in);
  {
    unsigned char out[512];
    sync_outbuf ob;
    ob.ptr = out;
    ob.size = sizeof out;
    ob.pos = 0;
    while (sync_session_send(s, &ob) > 0) ob.pos = 0;
  }
  rc = sync_session_status(s);
  sync_session_free(s);
  return rc;
}

/* Hostile CHECKs: another protocol version, bad flags, trailing bytes,
 * a second CHECK; a CHECK from a stranger is answered "changed". */
static void test_check_hostile(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv;
  unsigned char p[64], m[256];
  size_t k, n;
  (void)state;
  ck_open(&srv, "ck-srv.db", 0x55, &now);
  memset(p, 0, sizeof p);
  p[0] = 10; /* the protocol version */
  memset(p + 1, 0xab, 16);
  p[17] = 3 | 4; /* both, every table */
  p[18] = 0;     /* no credential */
  k = 19 + 8;    /* a tag */
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), 0); /* answered, waits for HELLO */
  n += ck_msg(m + n, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO); /* a second one */
  p[0] = 8; /* the protocol before session frames major 3 */
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EVERSION);
  p[0] = 9; /* the protocol before fold records */
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EVERSION);
  p[0] = 10;
  p[17] = 0x43;
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO);
  p[17] = 0; /* no mode */
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO);
  p[17] = 3 | 4;
  n = ck_msg(m, 11, p, k + 1);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO);
  n = ck_msg(m, 11, p, k - 1);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO);
  p[18] = 100; /* a credential longer than the message */
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO);
  p[18] = 0;
  memset(p + 1, 0x55, 16); /* the server's own site id */
  n = ck_msg(m, 11, p, k);
  assert_int_equal(ck_feed(&srv, m, n), SYNC_EPROTO);
  mu_close(&srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_unchanged),
      cmocka_unit_test(test_check_scope_and_schema),
      cmocka_unit_test(test_check_restores),
      cmocka_unit_test(test_check_renewal),
      cmocka_unit_test(test_check_hostile),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
