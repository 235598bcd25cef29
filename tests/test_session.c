/*
 * test_session.c - sync sessions in process: convergence in every mode
 * and fragmentation, relay without echoes, rights (tables, relaying,
 * credentials, refusing whole chunks), schema mismatch, dry runs over
 * the wire, tiny messages, resumption after a cut at hundreds of byte
 * offsets, a link that drops, duplicates, reorders, truncates and
 * corrupts, progress, and the retry helper with its circuit breaker.
 */
#include "testutil.h"

#include "sess_util.h"

#include <inttypes.h>
#include <xxhash.h>

static const sync_column_def ss_c2[2] = {
    {"n", SYNC_INTEGER, 0},
    {"note", SYNC_TEXT, 0},
};
static const sync_table_def ss_tables[2] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
    {"secret", SYNC_TEXT, ss_c2, 2},
};

static void ss_open(mu_rep *r, const char *path, uint8_t site, uint64_t *now) {
  uint8_t id[16];
  mu_site(id, site);
  mu_open_schema(r, path, id, now, 0, ss_tables, 2);
}

/* Rows written by this test carry i = a unique write id and s = "w<id>",
 * so a reader can tell a value some replica wrote from one that none did. */
static uint64_t ss_next_id = 1;

static void ss_write(mu_rep *r, tu_rng *g, unsigned nkeys, unsigned ntx) {
  unsigned t;
  for (t = 0; t < ntx; t++) {
    sync_txn *x;
    unsigned k, nops = 1 + (unsigned)tu_below(g, 5);
    TU_OK(sync_txn_begin(r->env, 0, &x));
    for (k = 0; k < nops; k++) {
      char key[32], s[32];
      size_t klen;
      uint64_t id = ss_next_id++;
      klen = (size_t)snprintf(key, sizeof key, "k%04u",
                              (unsigned)tu_below(g, nkeys));
      snprintf(s, sizeof s, "w%llu", (unsigned long long)id);
      if (tu_below(g, 8) == 0) {
        int rc = sync_delete(x, 0, key, klen);
        assert_true(rc == 0 || rc == SYNC_NOTFOUND);
      } else if (tu_below(g, 3) == 0) {
        unsigned cols[2] = {MU_COL_I, MU_COL_S};
        sync_value v[2];
        int rc;
        v[0] = sync_int((int64_t)id);
        v[1] = sync_text(s, strlen(s));
        rc = sync_update(x, 0, key, klen, cols, v, 2);
        assert_true(rc == 0 || rc == SYNC_NOTFOUND);
      } else {
        sync_value v[MU_NCOLS];
        v[0] = sync_int((int64_t)id);
        v[1] = sync_real((double)id / 4.0);
        v[2] = sync_text(s, strlen(s));
        v[3] = sync_null();
        TU_OK(sync_put(x, 0, key, klen, v, MU_NCOLS));
      }
    }
    TU_OK(sync_txn_commit(x));
  }
}

/* Every live row holds only values some replica wrote. */
static void ss_check_values(mu_rep *r) {
  sync_txn *x;
  sync_cursor *c;
  sync_key k;
  sync_value v[MU_NCOLS];
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_cursor_open(x, 0, &c));
  while (sync_cursor_next(c, &k, v, MU_NCOLS) == 0) {
    char want[32];
    assert_int_equal(v[0].type, SYNC_INTEGER);
    assert_true(v[0].i >= 1 && (uint64_t)v[0].i < ss_next_id);
    assert_int_equal(v[2].type, SYNC_TEXT);
    assert_true(v[2].len > 1 && v[2].len < sizeof want);
    memcpy(want, v[2].data, v[2].len);
    want[v[2].len] = 0;
    assert_true(want[0] == 'w');
    assert_true(strtoull(want + 1, NULL, 10) >= 1 &&
                strtoull(want + 1, NULL, 10) < ss_next_id);
  }
  sync_cursor_close(c);
  sync_txn_abort(x);
}

/* ---------------------------------------------------------------------
 * Convergence
 * ------------------------------------------------------------------- */
static void test_both_ways_converge(void **state) {
  uint64_t now = 1700000000000ull;
  unsigned seed;
  (void)state;
  for (seed = 1; seed <= 40; seed++) {
    tu_rng g = {seed * 7919};
    mu_rep srv, dev;
    sync_session_opts co, so;
    sync_session *c, *s;
    su_pump p;
    unsigned char prio[SYNC_RIGHTS_BYTES] = {0};
    ss_open(&srv, "sess-srv.db", 0x51, &now);
    ss_open(&dev, "sess-dev.db", 0xd1, &now);
    ss_write(&srv, &g, 50, 1 + (unsigned)tu_below(&g, 20));
    ss_write(&dev, &g, 50, 1 + (unsigned)tu_below(&g, 20));
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    so.server = 1;
    co.chunk_rows = so.chunk_rows = 1 + tu_below(&g, 30);
    co.level = (int)tu_below(&g, 4);
    so.level = (int)tu_below(&g, 4);
    co.max_message = so.max_message = 64 + tu_below(&g, 2000);
    co.window = tu_below(&g, 3) ? 1 + tu_below(&g, 8) : 0; /* 1: none */
    prio[0] = (unsigned char)(1 + tu_below(&g, 3)); /* table 0, 1 or both */
    co.priority = tu_below(&g, 2) ? prio : NULL;
    so.priority = tu_below(&g, 2) ? prio : NULL;
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    p.g = &g;
    p.max_piece = tu_below(&g, 2) ? 1 : 700; /* one byte at a time, or more */
    if (!su_run(&p, c, s))
      fail_msg("seed %u: %s / %s", seed, sync_session_errmsg(c),
               sync_session_errmsg(s));
    sync_session_free(c);
    sync_session_free(s);
    if (mu_digest(&srv) != mu_digest(&dev)) fail_msg("seed %u: digests", seed);
    ss_check_values(&dev);
    mu_close(&srv);
    mu_close(&dev);
  }
}

/* A server holding n rows, a fresh device, and the options of a pull
 * in chunks of 10 rows with the given window. */
static void ss_window_pair(mu_rep *srv, mu_rep *dev, uint64_t *now,
                           unsigned n, size_t window, sync_session_opts *co,
                           sync_session_opts *so) {
  unsigned i;
  ss_open(srv, "sess-srv.db", 0x51, now);
  ss_open(dev, "sess-dev.db", 0xd1, now);
  for (i = 0; i < n; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%05u", i);
    mu_put(srv, key, i, 0.5, "v");
  }
  memset(co, 0, sizeof *co);
  memset(so, 0, sizeof *so);
  co->mode = SYNC_PULL;
  co->window = window;
  so->server = 1;
  so->chunk_rows = 10;
}

/* A pull of 300 chunks.  With a window of 16 the server sends ahead and
 * the conversation takes a round trip per window, not one per chunk, and
 * the server counts the times it waited; with 1 (no window) it takes one
 * per chunk.  Both end with the server's rows. */
static void test_window_round_trips(void **state) {
  static const size_t windows[3] = {16, 1, 0};
  uint64_t now = 1700000000000ull;
  size_t w;
  (void)state;
  for (w = 0; w < 3; w++) {
    mu_rep srv, dev;
    sync_session_opts co, so;
    sync_session_stats cst, sst;
    sync_session *c, *s;
    su_pump p;
    ss_window_pair(&srv, &dev, &now, 3000, windows[w], &co, &so);
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    assert_true(su_run(&p, c, s));
    sync_session_stats_get(c, &cst);
    sync_session_stats_get(s, &sst);
    sync_session_free(c);
    sync_session_free(s);
    assert_int_equal(sst.frames_sent, 300);
    assert_int_equal(cst.rows_received, 3000);
    assert_int_equal(mu_digest(&srv), mu_digest(&dev));
    printf("window %zu: %lu round trips, %" PRIu64 " waits\n", windows[w],
           p.rounds, sst.window_waits);
    if (windows[w] == 1) {
      assert_true(p.rounds >= 300);
      assert_int_equal(sst.window_waits, 0);
    } else {
      size_t win = windows[w] ? windows[w] : 256;
      /* handshake, one per window, FINAL */
      assert_true(p.rounds <= 2 + (300 + win - 1) / win + 2);
      assert_true(sst.window_waits >= 300 / win - 1);
    }
    mu_close(&srv);
    mu_close(&dev);
  }
}

/* The server's write check, recording at which place of the push the
 * first row of table 1 was judged. */
typedef struct ss_order {
  unsigned seen, alarm_at;
} ss_order;

static int ss_note_order(void *ctx, const sync_write *w, int *reason,
                         char *text, size_t cap) {
  ss_order *o = ctx;
  (void)reason, (void)text, (void)cap;
  o->seen++;
  if (w->table == 1 && !o->alarm_at) o->alarm_at = o->seen;
  return 0;
}

/* A device that synced before writes a backlog of 2,000 readings (table
 * 0), then one alarm (table 1), and pushes in chunks of 50.  With table 1
 * as its priority the alarm reaches the server in the first chunk; without
 * it, after the backlog.  Both end with the same rows. */
/* priority_row: the row whose note says the door is open goes first. */
static int ss_door_first(void *ctx, const uint8_t peer[16], unsigned table,
                         const void *key, size_t klen, const sync_value *vals,
                         unsigned nvals) {
  unsigned *calls = (unsigned *)ctx;
  (void)peer;
  (void)key;
  (void)klen;
  (*calls)++;
  return table == 1 && nvals == 2 && vals[1].type == SYNC_TEXT &&
         vals[1].len == 9 && !memcmp(vals[1].data, "door open", 9);
}

/* with 0: log order; 1: table 1 first; 2: the row the callback names
 * first (its table is not a priority table). */
static void test_priority_jumps_backlog(void **state) {
  uint64_t now = 1700000000000ull;
  int with;
  (void)state;
  for (with = 0; with < 3; with++) {
    mu_rep srv, dev;
    sync_session_opts co, so;
    unsigned char prio[SYNC_RIGHTS_BYTES];
    ss_order ord = {0, 0};
    unsigned calls = 0;
    sync_txn *x;
    sync_value v[2];
    unsigned i;
    ss_open(&srv, "sess-srv.db", 0x51, &now);
    ss_open(&dev, "sess-dev.db", 0xd1, &now);
    mu_put(&dev, "first", 1, 0.5, "v");
    assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, NULL), 1);
    for (i = 0; i < 2000; i++) {
      char key[16];
      snprintf(key, sizeof key, "r%05u", i);
      mu_put(&dev, key, i, 0.5, "reading");
    }
    v[0] = sync_int(7);
    v[1] = sync_text("door open", 9);
    TU_OK(sync_txn_begin(dev.env, 0, &x));
    TU_OK(sync_put(x, 1, "alarm", 5, v, 2));
    TU_OK(sync_txn_commit(x));
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    memset(prio, 0, sizeof prio);
    prio[0] = 2; /* table 1 */
    co.mode = SYNC_PUSH;
    co.chunk_rows = 50;
    co.priority = with == 1 ? prio : NULL;
    if (with == 2) {
      co.priority_row = ss_door_first;
      co.priority_row_ctx = &calls;
    }
    so.check_write = ss_note_order;
    so.check_write_ctx = &ord;
    assert_int_equal(su_sync(&dev, &srv, &co, &so, NULL, NULL), 1);
    printf("priority %s: the alarm judged %u of %u\n",
           with == 2 ? "row" : with ? "table" : "off", ord.alarm_at, ord.seen);
    assert_true(ord.alarm_at > 0);
    if (with == 2) assert_true(calls >= 1951); /* the rows after chunk 1 */
    if (with)
      assert_true(ord.alarm_at <= 51);
    else
      assert_int_equal(ord.alarm_at, 2001);
    assert_int_equal(mu_digest(&srv), mu_digest(&dev));
    mu_close(&srv);
    mu_close(&dev);
  }
}

/* Move what a has to send into buf (at most cap bytes). */
static size_t ss_take(sync_session *a, unsigned char *buf, size_t cap) {
  sync_outbuf out = {buf, cap, 0};
  while (sync_session_want_write(a) && out.pos < out.size)
    if (sync_session_send(a, &out) <= 0) break;
  return out.pos;
}

/* A window the server must refuse: the opening request twice (the
 * second arrives with chunks in flight, as a duplicating link would
 * deliver it), or a window of 0.  The server ends with SYNC_EPROTO and
 * the client keeps what it applied. */
static void test_window_hostile(void **state) {
  uint64_t now = 1700000000000ull;
  int v;
  (void)state;
  for (v = 0; v < 2; v++) {
    mu_rep srv, dev;
    sync_session_opts co, so;
    sync_session *c, *s;
    unsigned char buf[4096];
    size_t n;
    sync_inbuf in;
    ss_window_pair(&srv, &dev, &now, 100, 16, &co, &so);
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    n = ss_take(c, buf, sizeof buf); /* HELLO */
    in = (sync_inbuf){buf, n, 0};
    sync_session_recv(s, &in);
    n = ss_take(s, buf, sizeof buf); /* WELCOME */
    in = (sync_inbuf){buf, n, 0};
    sync_session_recv(c, &in);
    n = ss_take(c, buf, sizeof buf); /* the opening REQUEST */
    assert_true(n > 6 && buf[0] == 3 && buf[n - 5] == 16);
    if (v == 1) { /* window 0, checksum made anew */
      uint32_t h;
      buf[n - 5] = 0;
      h = (uint32_t)XXH3_64bits(buf, n - 4);
      buf[n - 4] = (unsigned char)h;
      buf[n - 3] = (unsigned char)(h >> 8);
      buf[n - 2] = (unsigned char)(h >> 16);
      buf[n - 1] = (unsigned char)(h >> 24);
    }
    in = (sync_inbuf){buf, n, 0};
    sync_session_recv(s, &in);
    if (v == 0) {
      assert_int_equal(sync_session_status(s), 0);
      in = (sync_inbuf){buf, n, 0};
      sync_session_recv(s, &in);
    }
    while (sync_session_want_write(s)) {
      unsigned char sink[4096];
      sync_outbuf out = {sink, sizeof sink, 0};
      if (sync_session_send(s, &out) <= 0) break;
    }
    assert_int_equal(sync_session_status(s), SYNC_EPROTO);
    assert_non_null(strstr(sync_session_errmsg(s),
                           v == 0 ? "in flight" : "malformed REQUEST"));
    sync_session_free(c);
    sync_session_free(s);
    mu_close(&srv);
    mu_close(&dev);
  }
}

/* Pull only and push only move one direction each. */
static void test_modes(void **state) {
  uint64_t now = 1700000000000ull;
  tu_rng g = {3};
  mu_rep srv, dev;
  sync_session_opts co;
  sync_session_stats cs;
  uint64_t ds, dd;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  ss_write(&srv, &g, 30, 10);
  ss_write(&dev, &g, 30, 10);
  ds = mu_digest(&srv);
  dd = mu_digest(&dev);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PUSH;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cs, NULL), 1);
  assert_true(mu_digest(&dev) == dd); /* nothing came back */
  assert_true(mu_digest(&srv) != ds);
  assert_true(cs.rows_sent > 0 && cs.rows_received == 0);
  co.mode = SYNC_PULL;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cs, NULL), 1);
  assert_true(mu_digest(&dev) == mu_digest(&srv));
  assert_true(cs.rows_received > 0 && cs.rows_sent == 0);
  mu_close(&srv);
  mu_close(&dev);
}

/* device 1 -> server -> device 2, and back, with no echoes: a row comes
 * back to nobody who has it. */
static void test_relay_no_echo(void **state) {
  uint64_t now = 1700000000000ull;
  tu_rng g = {5};
  mu_rep srv, d1, d2;
  sync_session_stats cs;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&d1, "sess-d1.db", 0xd1, &now);
  ss_open(&d2, "sess-d2.db", 0xd2, &now);
  ss_write(&d1, &g, 40, 15);
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, &cs, NULL), 1);
  assert_true(cs.rows_sent > 0);
  assert_int_equal(cs.rows_received, 0); /* its own rows: not echoed */
  assert_int_equal(su_sync(&d2, &srv, NULL, NULL, &cs, NULL), 1);
  assert_true(cs.rows_received > 0);
  assert_int_equal(cs.rows_sent, 0); /* d1's rows: the server has them */
  assert_true(mu_digest(&d1) == mu_digest(&d2));
  assert_int_equal(su_sync(&d1, &srv, NULL, NULL, &cs, NULL), 1);
  assert_int_equal(cs.rows_received + cs.rows_sent, 0);
  mu_close(&srv);
  mu_close(&d1);
  mu_close(&d2);
}

/* ---------------------------------------------------------------------
 * Rights
 * ------------------------------------------------------------------- */
typedef struct ss_auth {
  int calls, refuse, relay;
  unsigned char read, write; /* bit t: table t */
  uint8_t site[16];
  char cred[32];
} ss_auth;

static int ss_authorize(void *ctx, const uint8_t site[16], const void *cred,
                        size_t len, sync_rights *r) {
  ss_auth *a = (ss_auth *)ctx;
  a->calls++;
  memcpy(a->site, site, 16);
  snprintf(a->cred, sizeof a->cred, "%.*s", (int)len, (const char *)cred);
  if (a->refuse || len != 5 || memcmp(cred, "token", 5)) return SYNC_EPERM;
  r->read[0] = a->read;
  r->write[0] = a->write;
  r->relay = a->relay;
  return 0;
}

static void ss_put2(mu_rep *r, unsigned table, const char *key, int64_t n) {
  sync_txn *x;
  char s[32];
  TU_OK(sync_txn_begin(r->env, 0, &x));
  if (table == 0) {
    sync_value v[MU_NCOLS];
    uint64_t id = ss_next_id++;
    snprintf(s, sizeof s, "w%llu", (unsigned long long)id);
    v[0] = sync_int((int64_t)id);
    v[1] = sync_real(1.0);
    v[2] = sync_text(s, strlen(s));
    v[3] = sync_null();
    TU_OK(sync_put(x, 0, key, strlen(key), v, MU_NCOLS));
  } else {
    sync_value v[2];
    v[0] = sync_int(n);
    v[1] = sync_text("classified", 10);
    TU_OK(sync_put(x, 1, key, strlen(key), v, 2));
  }
  TU_OK(sync_txn_commit(x));
}

static uint64_t ss_count(mu_rep *r, unsigned table) {
  sync_txn *x;
  uint64_t n;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_count(x, table, &n));
  sync_txn_abort(x);
  return n;
}

static void test_rights(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  ss_auth au;
  sync_session_opts co, so;
  sync_session_stats cs, sst;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  ss_put2(&srv, 0, "pub", 0);
  ss_put2(&srv, 1, "hidden", 1);
  ss_put2(&dev, 0, "mine", 0);
  ss_put2(&dev, 1, "forged", 2);
  memset(&au, 0, sizeof au);
  au.read = 1;  /* table 0 only */
  au.write = 1;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.credential = "token";
  co.credential_len = 5;
  so.authorize = ss_authorize;
  so.authorize_ctx = &au;
  assert_int_equal(su_sync(&dev, &srv, &co, &so, &cs, &sst), 1);
  assert_int_equal(au.calls, 1);
  assert_memory_equal(au.site, dev.site, 16);
  assert_string_equal(au.cred, "token");
  /* Never sent: the hidden table stays on the server, the forged row on
   * the device; table 0 went both ways. */
  assert_int_equal(ss_count(&dev, 1), 1);
  assert_int_equal(ss_count(&srv, 1), 1);
  assert_int_equal(ss_count(&dev, 0), 2);
  assert_int_equal(ss_count(&srv, 0), 2);
  /* A bad credential: the device hears why, nothing moves. */
  co.credential = "wrong";
  assert_int_equal(su_sync(&dev, &srv, &co, &so, &cs, NULL), SYNC_EPERM);
  assert_int_equal(cs.rows_received + cs.rows_sent, 0);
  mu_close(&srv);
  mu_close(&dev);
}

/* Rejections of reason `reason` in r's log. */
static unsigned ss_rejects(mu_rep *r, int reason) {
  sync_txn *x;
  sync_rejects *it;
  sync_reject e;
  unsigned n = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_rejects_open(x, &it));
  while (sync_rejects_next(it, &e) == 0)
    if (e.reason == reason) n++;
  sync_rejects_close(it);
  sync_txn_abort(x);
  return n;
}

/* A device without relay rights pushes another site's rows (which it got
 * elsewhere): the server refuses those rows and applies the device's
 * own, or, told to refuse chunks whole, applies nothing of the chunk and
 * asks again once the device took the refused rows back.  Either way
 * the device returns to the server's version (the rows go), logs the
 * refusals, and gets them again once their own site brings them to the
 * server: its vector no longer claims them. */
static void test_relay_refused(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev, other;
  ss_auth au;
  sync_session_opts co, so;
  sync_session_stats cs, sst;
  int whole;
  (void)state;
  for (whole = 0; whole <= 1; whole++) {
    ss_open(&srv, "sess-srv.db", 0x51, &now);
    ss_open(&dev, "sess-dev.db", 0xd1, &now);
    ss_open(&other, "sess-oth.db", 0x0e, &now);
    ss_put2(&other, 0, "theirs1", 0);
    ss_put2(&other, 0, "theirs2", 0);
    mu_pull(&dev, &other, 0, 1, NULL); /* dev now holds another site's rows */
    ss_put2(&dev, 0, "mine", 0);
    memset(&au, 0, sizeof au);
    au.read = au.write = 3;
    au.relay = 0;
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    co.mode = SYNC_PUSH;
    co.credential = "token";
    co.credential_len = 5;
    so.authorize = ss_authorize;
    so.authorize_ctx = &au;
    so.refuse_whole = whole;
    assert_int_equal(su_sync(&dev, &srv, &co, &so, &cs, &sst), 1);
    TU_U64(sst.applied.refused, 2);
    TU_U64(cs.peer_applied.refused, 2);
    TU_U64(sst.refusals, 2);
    TU_U64(cs.reverted, 2);
    /* Whole: the chunk was sent twice, the second time without them. */
    TU_U64(sst.frames_received, whole ? 2 : 1);
    assert_int_equal(ss_count(&srv, 0), 1); /* "mine" only */
    assert_int_equal(ss_count(&dev, 0), 1); /* as the server has it */
    assert_int_equal(ss_rejects(&dev, SYNC_REFUSE_RELAY), 2);
    assert_true(mu_digest(&dev) == mu_digest(&srv));
    /* Nothing is left to refuse: the next session is quiet. */
    assert_int_equal(su_sync(&dev, &srv, &co, &so, &cs, &sst), 1);
    TU_U64(sst.applied.refused, 0);
    /* The rows' own site brings them; the device gets them back. */
    {
      sync_session_opts oc = co;
      oc.mode = SYNC_BOTH;
      assert_int_equal(su_sync(&other, &srv, &oc, &so, NULL, &sst), 1);
      TU_U64(sst.applied.refused, 0);
      assert_int_equal(ss_count(&srv, 0), 3);
      assert_int_equal(su_sync(&dev, &srv, &oc, &so, NULL, NULL), 1);
      assert_int_equal(ss_count(&dev, 0), 3);
      assert_true(mu_digest(&dev) == mu_digest(&srv));
    }
    mu_close(&srv);
    mu_close(&dev);
    mu_close(&other);
  }
}

/* Stamps far in the future are refused. */
static void test_future_stamps(void **state) {
  uint64_t now = 1700000000000ull, later = now + 24ull * 3600 * 1000;
  mu_rep srv, dev;
  uint8_t id[16];
  sync_session_stats sst;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  mu_site(id, 0xd1);
  mu_open_schema(&dev, "sess-dev.db", id, &later, 0, ss_tables, 2);
  ss_put2(&dev, 0, "from-tomorrow", 0);
  assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, &sst), 1);
  TU_U64(sst.applied.refused, 1);
  assert_int_equal(ss_count(&srv, 0), 0);
  mu_close(&srv);
  mu_close(&dev);
}

/* Schemas that differ by more than appended tables and columns (here a
 * column's type) refuse each other, and both sides say where. */
static void test_schema_mismatch(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  uint8_t id[16];
  sync_session_opts co, so;
  sync_session *c, *s;
  su_pump p;
  sync_column_def cols[MU_NCOLS];
  sync_table_def t;
  (void)state;
  memcpy(cols, mu_cols, sizeof cols);
  cols[MU_COL_S].type = SYNC_BLOB;
  t = mu_tables[0];
  t.columns = cols;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  mu_site(id, 0xd1);
  mu_open_schema(&dev, "sess-dev.db", id, &now, 0, &t, 1);
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  so.server = 1;
  TU_OK(sync_session_create(dev.env, &co, &c));
  TU_OK(sync_session_create(srv.env, &so, &s));
  memset(&p, 0, sizeof p);
  assert_false(su_run(&p, c, s));
  assert_int_equal(sync_session_status(s), SYNC_ESCHEMA);
  assert_int_equal(sync_session_status(c), SYNC_ESCHEMA);
  assert_non_null(strstr(sync_session_errmsg(c), "incompatible schemas"));
  assert_non_null(strstr(sync_session_errmsg(s), "incompatible schemas"));
  assert_non_null(strstr(sync_session_errmsg(s),
                         "table 't' column 2 is 's' TEXT on the server but "
                         "'s' BLOB on the client"));
  assert_non_null(strstr(sync_session_errmsg(c),
                         "table 't' column 2 is 's' TEXT on the server but "
                         "'s' BLOB on the client"));
  sync_session_free(c);
  sync_session_free(s);
  mu_close(&srv);
  mu_close(&dev);
}

/* A dry run reports what would change and writes nothing, both ways. */
static void test_dry_run(void **state) {
  uint64_t now = 1700000000000ull;
  tu_rng g = {11};
  mu_rep srv, dev;
  sync_session_opts co;
  sync_session_stats cs;
  uint64_t ds, dd, vs, vd;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  ss_write(&srv, &g, 100, 30);
  ss_write(&dev, &g, 1000, 30);
  ds = mu_digest(&srv);
  dd = mu_digest(&dev);
  vs = mu_version(&srv);
  vd = mu_version(&dev);
  memset(&co, 0, sizeof co);
  co.dry_run = 1;
  co.chunk_rows = 7;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cs, NULL), 1);
  assert_true(mu_digest(&srv) == ds && mu_digest(&dev) == dd);
  assert_true(mu_version(&srv) == vs && mu_version(&dev) == vd);
  assert_true(cs.applied.inserted > 0 && cs.peer_applied.inserted > 0);
  TU_U64(cs.applied.rows, cs.rows_received);
  /* The real run changes what the dry run said. */
  co.dry_run = 0;
  {
    sync_session_stats real;
    assert_int_equal(su_sync(&dev, &srv, &co, NULL, &real, NULL), 1);
    TU_U64(real.applied.inserted, cs.applied.inserted);
    TU_U64(real.peer_applied.inserted, cs.peer_applied.inserted);
  }
  assert_true(mu_digest(&srv) == mu_digest(&dev));
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * Cuts and faults
 * ------------------------------------------------------------------- */

/* An initial pull of n rows cut after `budget` bytes, then resumed:
 * rows applied before the cut plus rows received after it are exactly n
 * (nothing applied twice, nothing lost) and the digests agree. */
static void test_resume_after_cut(void **state) {
  uint64_t now = 1700000000000ull;
  tu_rng g = {99};
  mu_rep srv, dev;
  sync_session_opts co, so;
  size_t total, k;
  unsigned trial;
  const unsigned n = 120;
  (void)state;
  ss_open(&srv, "sess-base.db", 0x51, &now);
  {
    unsigned i;
    for (i = 0; i < n; i++) {
      char key[32];
      snprintf(key, sizeof key, "row%05u", i);
      ss_put2(&srv, 0, key, 0);
    }
  }
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = SYNC_PULL;
  co.chunk_rows = so.chunk_rows = 9;
  so.server = 1;
  /* How many bytes a whole session moves. */
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  {
    sync_session *c, *s;
    su_pump p;
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    assert_true(su_run(&p, c, s));
    total = p.moved;
    sync_session_free(c);
    sync_session_free(s);
  }
  mu_close(&dev);
  for (trial = 0; trial < 300; trial++) {
    sync_session *c, *s;
    su_pump p;
    sync_session_stats a, b;
    k = trial < 40 ? trial + 1 : 1 + (size_t)tu_below(&g, total - 1);
    ss_open(&dev, "sess-dev.db", 0xd1, &now);
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    p.budget = k;
    p.g = &g;
    p.max_piece = 64;
    assert_false(su_run(&p, c, s));
    assert_true(sync_session_status(c) < 0);
    sync_session_stats_get(c, &a);
    sync_session_free(c);
    sync_session_free(s);
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    if (!su_run(&p, c, s))
      fail_msg("cut at %zu: resume failed: %s", k, sync_session_errmsg(c));
    sync_session_stats_get(c, &b);
    sync_session_free(c);
    sync_session_free(s);
    if (a.applied.rows + b.rows_received != n)
      fail_msg("cut at %zu of %zu: %llu applied before, %llu after, of %u", k,
               total, (unsigned long long)a.applied.rows,
               (unsigned long long)b.rows_received, n);
    assert_true(mu_digest(&dev) == mu_digest(&srv));
    mu_close(&dev);
  }
  mu_close(&srv);
}

/* Where messages end in one direction of a conversation (type, length
 * varint, payload, checksum), fed as the bytes go by. */
typedef struct ss_scan {
  int st;
  unsigned shift;
  uint64_t len;
  size_t cur, max; /* bytes of the message going by, of the largest */
} ss_scan;

static void ss_scan_feed(ss_scan *sc, const unsigned char *p, size_t n,
                         size_t base, size_t *ends, size_t *nends,
                         size_t cap) {
  size_t i;
  for (i = 0; i < n; i++) {
    sc->cur++;
    if (sc->st == 0) { /* type */
      sc->st = 1;
      sc->len = 0;
      sc->shift = 0;
    } else if (sc->st == 1) { /* length */
      sc->len |= (uint64_t)(p[i] & 0x7f) << sc->shift;
      sc->shift += 7;
      if (!(p[i] & 0x80)) {
        sc->len += 4; /* and the checksum */
        sc->st = 2;
      }
    } else if (--sc->len == 0) {
      sc->st = 0;
      if (sc->cur > sc->max) sc->max = sc->cur;
      sc->cur = 0;
      if (*nends < cap) ends[(*nends)++] = base + i + 1;
    }
  }
}

/* Move a's output to b whole, noting where its messages end. */
static size_t ss_move_scan(sync_session *a, sync_session *b, ss_scan *sc,
                           size_t *moved, size_t *ends, size_t *nends,
                           size_t cap) {
  unsigned char buf[4096];
  size_t total = 0;
  while (sync_session_want_write(a)) {
    sync_outbuf out = {buf, sizeof buf, 0};
    sync_inbuf in;
    if (sync_session_send(a, &out) <= 0) break;
    ss_scan_feed(sc, buf, out.pos, *moved, ends, nends, cap);
    *moved += out.pos;
    total += out.pos;
    in = (sync_inbuf){buf, out.pos, 0};
    sync_session_recv(b, &in);
  }
  return total;
}

/* Both replicas of the tiny-link test, made the same way each time. */
static void ss_tiny_pair(mu_rep *srv, mu_rep *dev, uint64_t *now) {
  unsigned i;
  ss_open(srv, "sess-srv.db", 0x51, now);
  ss_open(dev, "sess-dev.db", 0xd1, now);
  for (i = 0; i < 24; i++) {
    char key[16], val[40];
    snprintf(key, sizeof key, "%s%02u", i & 1 ? "dev" : "srv", i);
    /* Each its own: a value repeated would travel as one byte. */
    snprintf(val, sizeof val, "a value of some length, %02u", i);
    mu_put(i & 1 ? dev : srv, key, i, 0.25 * i, val);
  }
}

/* A link of 64-byte messages (the smallest a side may ask for): a sync
 * both ways where no message on the wire is larger, then the same sync
 * cut at every message boundary and run again, which always ends with
 * equal digests. */
static void test_tiny_link_resume(void **state) {
  uint64_t now = 1700000000000ull;
  size_t ends[4096], nends = 0, moved = 0, e;
  mu_rep srv, dev;
  sync_session_opts co, so;
  sync_session *c, *s;
  ss_scan up = {0, 0, 0, 0, 0}, down = {0, 0, 0, 0, 0};
  (void)state;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.max_message = so.max_message = 64;
  co.chunk_rows = so.chunk_rows = 5;
  so.server = 1;
  ss_tiny_pair(&srv, &dev, &now);
  TU_OK(sync_session_create(dev.env, &co, &c));
  TU_OK(sync_session_create(srv.env, &so, &s));
  while (!sync_session_status(c) || !sync_session_status(s)) {
    size_t n = ss_move_scan(c, s, &up, &moved, ends, &nends, 4096);
    n += ss_move_scan(s, c, &down, &moved, ends, &nends, 4096);
    if (!n) break;
  }
  assert_int_equal(sync_session_status(c), 1);
  assert_int_equal(sync_session_status(s), 1);
  sync_session_free(c);
  sync_session_free(s);
  assert_int_equal(mu_digest(&srv), mu_digest(&dev));
  mu_close(&srv);
  mu_close(&dev);
  printf("tiny link: %zu messages, %zu bytes, the largest %zu and %zu\n",
         nends, moved, up.max, down.max);
  assert_true(nends > 40);
  assert_true(up.max <= 64 && down.max <= 64);
  assert_true(up.max >= 60 && down.max >= 60); /* and they are filled */
  for (e = 0; e + 1 < nends; e++) {
    su_pump p;
    ss_tiny_pair(&srv, &dev, &now);
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    p.budget = ends[e];
    p.max_piece = 64;
    assert_false(su_run(&p, c, s));
    sync_session_free(c);
    sync_session_free(s);
    TU_OK(sync_session_create(dev.env, &co, &c));
    TU_OK(sync_session_create(srv.env, &so, &s));
    memset(&p, 0, sizeof p);
    if (!su_run(&p, c, s))
      fail_msg("cut after message %zu (byte %zu): resume failed: %s / %s", e,
               ends[e], sync_session_errmsg(c), sync_session_errmsg(s));
    sync_session_free(c);
    sync_session_free(s);
    if (mu_digest(&srv) != mu_digest(&dev))
      fail_msg("cut after message %zu (byte %zu): digests differ", e, ends[e]);
    mu_close(&srv);
    mu_close(&dev);
  }
}

/* A link that drops, duplicates, reorders, corrupts and cuts: each
 * session completes with equal digests or fails with a clear error, no
 * replica ever holds a value nobody wrote, and a clean session then
 * converges. */
static void test_faulty_link(void **state) {
  uint64_t now = 1700000000000ull;
  unsigned seed;
  unsigned ok = 0, failed = 0;
  (void)state;
  for (seed = 1; seed <= 60; seed++) {
    tu_rng g = {seed * 104729};
    mu_rep srv, dev;
    su_faults f;
    unsigned round;
    ss_open(&srv, "sess-srv.db", 0x51, &now);
    ss_open(&dev, "sess-dev.db", 0xd1, &now);
    memset(&f, 0, sizeof f);
    f.drop = (unsigned)tu_below(&g, 30);
    f.dup = (unsigned)tu_below(&g, 30);
    f.swap = (unsigned)tu_below(&g, 30);
    f.flip = (unsigned)tu_below(&g, 30);
    f.cut = (unsigned)tu_below(&g, 10);
    for (round = 0; round < 4; round++) {
      sync_session_opts co, so;
      sync_session *c, *s;
      su_pump p;
      ss_write(&srv, &g, 60, 5);
      ss_write(&dev, &g, 60, 5);
      memset(&co, 0, sizeof co);
      memset(&so, 0, sizeof so);
      so.server = 1;
      co.chunk_rows = so.chunk_rows = 1 + tu_below(&g, 10);
      co.level = so.level = (int)tu_below(&g, 2) * 3;
      TU_OK(sync_session_create(dev.env, &co, &c));
      TU_OK(sync_session_create(srv.env, &so, &s));
      memset(&p, 0, sizeof p);
      p.g = &g;
      p.max_piece = 200;
      p.faults = &f;
      if (su_run(&p, c, s)) {
        ok++;
        if (mu_digest(&srv) != mu_digest(&dev))
          fail_msg("seed %u: completed with different digests", seed);
      } else {
        failed++;
        assert_true(sync_session_status(c) < 0 || sync_session_status(s) < 0);
        assert_true(sync_session_errmsg(c)[0] || sync_session_errmsg(s)[0]);
      }
      sync_session_free(c);
      sync_session_free(s);
      ss_check_values(&srv);
      ss_check_values(&dev);
    }
    assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, NULL), 1);
    if (mu_digest(&srv) != mu_digest(&dev))
      fail_msg("seed %u: clean session did not converge", seed);
    mu_close(&srv);
    mu_close(&dev);
  }
  assert_true(ok > 0 && failed > 0); /* both outcomes were exercised */
  print_message("faulty link: %u sessions completed, %u failed cleanly\n", ok,
                failed);
}

/* ---------------------------------------------------------------------
 * Progress, small messages, the driver, retries
 * ------------------------------------------------------------------- */
typedef struct ss_prog {
  unsigned calls;
  uint64_t expected, last_rows;
} ss_prog;

static void ss_progress(void *ctx, const sync_session_stats *st) {
  ss_prog *p = (ss_prog *)ctx;
  p->calls++;
  p->expected = st->rows_expected;
  assert_true(st->rows_received >= p->last_rows);
  p->last_rows = st->rows_received;
}

static void test_progress_and_tiny_messages(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sync_session_opts co, so;
  sync_session_stats cs;
  ss_prog pr;
  unsigned i;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  for (i = 0; i < 50; i++) {
    char key[32];
    snprintf(key, sizeof key, "row%05u", i);
    ss_put2(&srv, 0, key, 0);
  }
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  memset(&pr, 0, sizeof pr);
  co.max_message = so.max_message = 256;
  co.chunk_rows = so.chunk_rows = 10;
  co.progress = ss_progress;
  co.progress_ctx = &pr;
  co.credential = "a credential longer than nothing";
  co.credential_len = strlen(co.credential);
  assert_int_equal(su_sync(&dev, &srv, &co, &so, &cs, NULL), 1);
  assert_true(mu_digest(&srv) == mu_digest(&dev));
  TU_U64(pr.expected, 50);
  assert_true(pr.calls >= 5);
  TU_U64(cs.rows_received, 50);
  /* five full chunks, and one that finds the end of the stream */
  assert_true(cs.frames_received == 5 || cs.frames_received == 6);
  assert_true(cs.messages_received > cs.frames_received); /* frames split */
  assert_true(cs.bytes_received / cs.messages_received <= 256);
  mu_close(&srv);
  mu_close(&dev);
}

/* sync_session_run over a socketpair, the server driven by a thread; the
 * transport is the network helper's that synctl and the bench use
 * (compiled in here, as the tests link only the library). */
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/net/tcp.c"

typedef struct ss_thr {
  mu_rep *srv;
  int fd, rc;
} ss_thr;
static void *ss_server_thread(void *arg) {
  ss_thr *t = (ss_thr *)arg;
  sync_session_opts so;
  sync_session *s;
  sync_transport tr;
  net_transport(&t->fd, &tr);
  memset(&so, 0, sizeof so);
  so.server = 1;
  t->rc = sync_session_create(t->srv->env, &so, &s);
  if (!t->rc) t->rc = sync_session_run(s, &tr);
  sync_session_free(s);
  close(t->fd);
  return NULL;
}

static void test_driver(void **state) {
  uint64_t now = 1700000000000ull;
  tu_rng g = {17};
  mu_rep srv, dev;
  int sv[2];
  pthread_t th;
  ss_thr t;
  sync_session_opts co;
  sync_session *c;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  ss_write(&srv, &g, 200, 40);
  ss_write(&dev, &g, 200, 40);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  t.srv = &srv;
  t.fd = sv[1];
  assert_int_equal(pthread_create(&th, NULL, ss_server_thread, &t), 0);
  memset(&co, 0, sizeof co);
  co.chunk_rows = 25;
  TU_OK(sync_session_create(dev.env, &co, &c));
  {
    sync_transport tr;
    net_transport(&sv[0], &tr);
    TU_OK(sync_session_run(c, &tr));
  }
  sync_session_free(c);
  close(sv[0]);
  pthread_join(th, NULL);
  TU_OK(t.rc);
  assert_true(mu_digest(&srv) == mu_digest(&dev));
  mu_close(&srv);
  mu_close(&dev);
}

/* Retry: connections that fail, then work; delays with jitter within
 * bounds; the breaker opens after failed runs and closes after its
 * cooldown. */
typedef struct ss_net {
  mu_rep *srv;
  int fail_next;  /* connects to refuse */
  int connects;
  pthread_t th;
  ss_thr t;
  int fd;
  uint64_t clock;
  uint64_t slept[16];
  unsigned nsleep;
} ss_net;

static int ss_connect(void *ctx, sync_transport *tr) {
  ss_net *n = (ss_net *)ctx;
  int sv[2];
  n->connects++;
  if (n->fail_next > 0) {
    n->fail_next--;
    return SYNC_ECLOSED;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return SYNC_EIO;
  n->t.srv = n->srv;
  n->t.fd = sv[1];
  pthread_create(&n->th, NULL, ss_server_thread, &n->t);
  n->fd = sv[0];
  net_transport(&n->fd, tr);
  return 0;
}
static void ss_disconnect(void *ctx, sync_transport *tr) {
  ss_net *n = (ss_net *)ctx;
  (void)tr;
  close(n->fd);
  pthread_join(n->th, NULL);
}
static uint64_t ss_net_clock(void *ctx) { return ((ss_net *)ctx)->clock; }
static void ss_net_sleep(void *ctx, uint64_t ms) {
  ss_net *n = (ss_net *)ctx;
  if (n->nsleep < 16) n->slept[n->nsleep++] = ms;
  n->clock += ms;
}

static void test_retry_and_breaker(void **state) {
  uint64_t now = 1700000000000ull;
  tu_rng g = {23};
  mu_rep srv, dev;
  ss_net net;
  sync_retry_opts ro;
  sync_retry *r;
  sync_retry_stats rs;
  sync_session_opts co;
  unsigned i;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  ss_write(&srv, &g, 50, 10);
  memset(&net, 0, sizeof net);
  net.srv = &srv;
  net.clock = 1000;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 4;
  ro.base_delay_ms = 100;
  ro.max_delay_ms = 250;
  ro.breaker_failures = 2;
  ro.breaker_cooldown_ms = 5000;
  ro.now = ss_net_clock;
  ro.now_ctx = &net;
  ro.sleep = ss_net_sleep;
  ro.sleep_ctx = &net;
  ro.seed = 42;
  TU_OK(sync_retry_create(NULL, &ro, &r));
  memset(&co, 0, sizeof co);
  net.fail_next = 2;
  TU_OK(sync_retry_run(r, dev.env, &co, ss_connect, ss_disconnect, &net, NULL));
  assert_true(mu_digest(&srv) == mu_digest(&dev));
  sync_retry_stats_get(r, &rs);
  TU_U64(rs.attempts, 3);
  TU_U64(rs.retries, 2);
  assert_int_equal(net.nsleep, 2);
  assert_true(net.slept[0] <= 100 && net.slept[1] <= 200);
  /* Two runs that fail every attempt open the breaker. */
  net.fail_next = 100;
  TU_RC(sync_retry_run(r, dev.env, &co, ss_connect, ss_disconnect, &net, NULL),
        SYNC_ECLOSED);
  TU_RC(sync_retry_run(r, dev.env, &co, ss_connect, ss_disconnect, &net, NULL),
        SYNC_ECLOSED);
  for (i = 0; i < net.nsleep; i++) assert_true(net.slept[i] <= 250);
  sync_retry_stats_get(r, &rs);
  assert_true(rs.breaker_open);
  TU_U64(rs.breaker_opened, 1);
  {
    int before = net.connects;
    TU_RC(sync_retry_run(r, dev.env, &co, ss_connect, ss_disconnect, &net, NULL),
          SYNC_EBUSY);
    assert_int_equal(net.connects, before); /* not even tried */
  }
  net.clock += 6000; /* cooldown over */
  net.fail_next = 0;
  TU_OK(sync_retry_run(r, dev.env, &co, ss_connect, ss_disconnect, &net, NULL));
  sync_retry_stats_get(r, &rs);
  assert_false(rs.breaker_open);
  TU_U64(rs.breaker_refused, 1);
  sync_retry_free(r);
  mu_close(&srv);
  mu_close(&dev);
}

/* The sending side's row filter leaves rows out (and the receiver's
 * vector stays where it was); local-only columns never leave; a receiver
 * may apply with another policy. */
static int ss_no_private(void *ctx, const uint8_t peer[16], unsigned table,
                         const void *key, size_t klen, const sync_value *vals,
                         unsigned nvals) {
  (void)ctx;
  (void)peer;
  (void)table;
  (void)vals;
  (void)nvals;
  return !(klen >= 8 && !memcmp(key, "private-", 8));
}

static const sync_column_def ss_lcols[2] = {
    {"n", SYNC_INTEGER, 0},
    {"here", SYNC_TEXT, SYNC_COL_LOCAL},
};
static const sync_table_def ss_ltables[1] = {{"l", SYNC_TEXT, ss_lcols, 2}};

static void test_filter_local_policy(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  uint8_t id[16];
  sync_session_opts co;
  sync_session_stats cs;
  sync_txn *x;
  sync_value v[2];
  (void)state;
  mu_site(id, 0x51);
  mu_open_schema(&srv, "sess-srv.db", id, &now, 0, ss_ltables, 1);
  mu_site(id, 0xd1);
  mu_open_schema(&dev, "sess-dev.db", id, &now, 0, ss_ltables, 1);
  TU_OK(sync_txn_begin(dev.env, 0, &x));
  v[0] = sync_int(1);
  v[1] = sync_text("device notes", 12);
  TU_OK(sync_put(x, 0, "shared-1", 8, v, 2));
  TU_OK(sync_put(x, 0, "private-1", 9, v, 2));
  TU_OK(sync_txn_commit(x));
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PUSH;
  co.filter = ss_no_private;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cs, NULL), 1);
  TU_U64(cs.rows_sent, 1);
  TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_get(x, 0, "private-1", 9, v, 2), SYNC_NOTFOUND);
  TU_OK(sync_get(x, 0, "shared-1", 8, v, 2));
  assert_int_equal(v[0].i, 1);
  assert_int_equal(v[1].type, SYNC_NULL); /* the local column stayed home */
  sync_txn_abort(x);
  /* Append policy on the device: rows it has are never touched. */
  TU_OK(sync_txn_begin(srv.env, 0, &x));
  v[0] = sync_int(99);
  v[1] = sync_null();
  TU_OK(sync_put(x, 0, "shared-1", 8, v, 2));
  TU_OK(sync_put(x, 0, "server-1", 8, v, 2));
  TU_OK(sync_txn_commit(x));
  co.mode = SYNC_PULL;
  co.filter = NULL;
  co.policy = SYNC_APPLY_APPEND;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cs, NULL), 1);
  TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_get(x, 0, "shared-1", 8, v, 2));
  assert_int_equal(v[0].i, 1); /* kept */
  TU_OK(sync_get(x, 0, "server-1", 8, v, 2));
  assert_int_equal(v[0].i, 99); /* inserted */
  sync_txn_abort(x);
  mu_close(&srv);
  mu_close(&dev);
}

/* A column that is local on the server but replicated on the device
 * (the flag is not part of the schema hash): the server's own value is
 * never overwritten by the device's. */
static const sync_column_def ss_rcols[2] = {
    {"n", SYNC_INTEGER, 0},
    {"here", SYNC_TEXT, 0},
};
static const sync_table_def ss_rtables[1] = {{"l", SYNC_TEXT, ss_rcols, 2}};

static void test_local_column_kept(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  uint8_t id[16];
  sync_txn *x;
  sync_value v[2];
  (void)state;
  mu_site(id, 0x51);
  mu_open_schema(&srv, "sess-srv.db", id, &now, 0, ss_ltables, 1);
  mu_site(id, 0xd1);
  mu_open_schema(&dev, "sess-dev.db", id, &now, 0, ss_rtables, 1);
  TU_OK(sync_txn_begin(srv.env, 0, &x));
  v[0] = sync_int(1);
  v[1] = sync_text("server's own", 12);
  TU_OK(sync_put(x, 0, "row", 3, v, 2));
  TU_OK(sync_txn_commit(x));
  now += 10;
  TU_OK(sync_txn_begin(dev.env, 0, &x));
  v[0] = sync_int(2);
  v[1] = sync_text("from the device", 15);
  TU_OK(sync_put(x, 0, "row", 3, v, 2));
  TU_OK(sync_put(x, 0, "new", 3, v, 2));
  TU_OK(sync_txn_commit(x));
  assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, NULL), 1);
  TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_get(x, 0, "row", 3, v, 2));
  assert_int_equal(v[0].i, 2); /* the replicated column merged */
  assert_int_equal(v[1].len, 12);
  assert_memory_equal(v[1].data, "server's own", 12);
  TU_OK(sync_get(x, 0, "new", 3, v, 2));
  assert_int_equal(v[1].type, SYNC_NULL);
  sync_txn_abort(x);
  mu_close(&srv);
  mu_close(&dev);
}

/* Reopen r's file as it is (mu_open_schema would start it afresh). */
static void ss_reopen(mu_rep *r) {
  TU_OK(sync_env_create(NULL, &r->env));
  TU_OK(sync_env_set_random(r->env, mu_random_fn, r));
  TU_OK(sync_env_set_clock(r->env, mu_clock_fn, r));
  TU_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_schema(r->env, ss_tables, 2));
  TU_OK(sync_env_open(r->env, r->path, 0));
}

/* A server that 60 devices pushed to knows 61 sites.  A chunk of its
 * log names only the sites it needs (the sender, its stamps' sites, and
 * on a run's last chunk those whose entry the requester lacks), so a
 * one-row session to a device that synced before stays small, where it
 * carried every site id (16 bytes and a vector entry each) before: for
 * a device that selected one table (its runs leave rows out, so its
 * vector never rises) and for one that holds everything. */
static void test_log_chunk_sites(void **state) {
  static unsigned char t1[SYNC_RIGHTS_BYTES] = {2}; /* table 1 only */
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sync_session_stats cst;
  sync_session_opts co;
  unsigned i, d;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  for (i = 0; i < 60; i++) {
    mu_rep other;
    char key[16];
    ss_open(&other, "sess-oth.db", (uint8_t)(0x52 + i), &now);
    snprintf(key, sizeof key, "o%03u", i);
    mu_put(&other, key, i, 0.5, "o");
    assert_int_equal(su_sync(&other, &srv, NULL, NULL, NULL, NULL), 1);
    mu_close(&other);
  }
  for (d = 0; d < 2; d++) {
    sync_txn *x;
    sync_value v[2];
    ss_open(&dev, "sess-dev.db", (uint8_t)(0xd1 + d), &now);
    memset(&co, 0, sizeof co);
    co.tables = d ? NULL : t1;
    co.no_check = 1;
    assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cst, NULL), 1);
    now += 10;
    v[0] = sync_int(7 + d);
    v[1] = sync_text("note", 4);
    TU_OK(sync_txn_begin(srv.env, 0, &x));
    TU_OK(sync_put(x, 1, "k", 1, v, 2));
    TU_OK(sync_txn_commit(x));
    assert_int_equal(su_sync(&dev, &srv, &co, NULL, &cst, NULL), 1);
    assert_int_equal(cst.rows_received, 1);
    printf("one row from a server of 61 sites (%s): %" PRIu64
           " frame bytes\n", d ? "all tables" : "one table",
           cst.frame_bytes_received);
    assert_true(cst.frame_bytes_received < 300);
    TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_get(x, 1, "k", 1, v, 2));
    assert_int_equal(v[0].i, 7 + d);
    sync_txn_abort(x);
    if (d) assert_int_equal(mu_digest(&srv), mu_digest(&dev));
    mu_close(&dev);
  }
  mu_close(&srv);
}

/* Session frames (docs/FORMAT.md, "Session frames"): a server that
 * holds the writes of 40 replicas, each of them also over another's row
 * (so chunks carry stamps and bases of many sites), streams them to a
 * new device in chunks of 2 rows, then the two exchange new writes of
 * both sides and of more replicas.  With the window on and off, zstd on
 * and off, 64-byte messages and one-byte pieces, every run ends with
 * equal digests; and since an initial stream names every site the server
 * knows in each chunk, a frame that repeated the 16-byte ids would take
 * 41 x 16 bytes at least: the session's site table keeps them below. */
static void ss_sites_writer(mu_rep *srv, uint64_t *now, uint8_t site,
                            unsigned i, unsigned nw) {
  mu_rep w;
  char key[16];
  ss_open(&w, "sess-oth.db", site, now);
  /* What the replica before wrote, so that this one's update has a base
   * of another site. */
  assert_int_equal(su_sync(&w, srv, NULL, NULL, NULL, NULL), 1);
  snprintf(key, sizeof key, "s%03u-%03u", i, nw);
  mu_put(&w, key, (int64_t)i, 0.25 * i, "w");
  snprintf(key, sizeof key, "s%03u-%03u", i + 1, nw);
  mu_put(&w, key, (int64_t)i, 0.5, "x");
  if (i) {
    snprintf(key, sizeof key, "s%03u-%03u", i - 1, nw);
    mu_update(&w, key, MU_COL_I, sync_int((int64_t)(1000 + i)));
  }
  *now += 3;
  assert_int_equal(su_sync(&w, srv, NULL, NULL, NULL, NULL), 1);
  mu_close(&w);
}

static void test_session_frames_round_trip(void **state) {
  static const struct {
    size_t window, max_message;
    int level;
    size_t piece;
  } cfg[4] = {{0, 0, 0, 700}, {1, 64, 3, 1}, {8, 64, 0, 1}, {16, 300, 1, 97}};
  unsigned k;
  (void)state;
  for (k = 0; k < 4; k++) {
    uint64_t now = 1700000000000ull;
    mu_rep srv, dev;
    sync_session_opts co, so;
    sync_session *c, *s;
    sync_session_stats st;
    tu_rng g = {k + 11};
    su_pump p;
    unsigned i, round;
    ss_open(&srv, "sess-srv.db", 0x51, &now);
    for (i = 0; i < 40; i++) ss_sites_writer(&srv, &now, (uint8_t)(0x60 + i), i, 0);
    ss_open(&dev, "sess-dev.db", 0xd1, &now);
    for (round = 0; round < 2; round++) {
      memset(&co, 0, sizeof co);
      memset(&so, 0, sizeof so);
      so.server = 1;
      co.chunk_rows = so.chunk_rows = 2;
      co.window = cfg[k].window;
      co.level = so.level = cfg[k].level;
      co.max_message = so.max_message = cfg[k].max_message;
      co.no_check = 1;
      TU_OK(sync_session_create(dev.env, &co, &c));
      TU_OK(sync_session_create(srv.env, &so, &s));
      memset(&p, 0, sizeof p);
      p.g = cfg[k].piece > 1 ? &g : NULL;
      p.max_piece = cfg[k].piece;
      if (!su_run(&p, c, s))
        fail_msg("config %u round %u: %s / %s", k, round,
                 sync_session_errmsg(c), sync_session_errmsg(s));
      sync_session_stats_get(c, &st);
      sync_session_free(c);
      sync_session_free(s);
      assert_int_equal(mu_digest(&srv), mu_digest(&dev));
      if (round == 0) {
        assert_true(st.frames_received >= 20);
        assert_true(st.frame_bytes_received / st.frames_received < 41 * 16);
        /* New writes on both sides and of 5 more replicas. */
        for (i = 0; i < 5; i++)
          ss_sites_writer(&srv, &now, (uint8_t)(0x90 + i), i, 1);
        mu_put(&dev, "d-1", 1, 1.0, "d");
        mu_update(&dev, "s000-000", MU_COL_S, sync_text("dd", 2));
        now += 5;
      } else {
        assert_true(st.rows_received >= 6);
        assert_true(st.rows_sent >= 2);
      }
    }
    mu_close(&srv);
    mu_close(&dev);
  }
}

/* A hostile device's first session frame of a push, with good frame and
 * message checksums: a site index past the session's table, a body cut
 * short, a stamp below the requester's entry by more than it holds.  The
 * server ends with SYNC_EFORMAT and the decoder's reason, nothing
 * applied; the same frame well formed (an empty last chunk) goes
 * through and ends the push. */
static int ss_inject_frame(const unsigned char *body, size_t n, char *why,
                           size_t whylen) {
  uint64_t now = 1700000000000ull, sum;
  mu_rep srv, dev;
  sync_session_opts co, so;
  sync_session *c, *s;
  unsigned char buf[4096], m[128];
  size_t k, f0;
  sync_inbuf in;
  uint32_t h;
  int rc, i;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  mu_put(&dev, "k", 1, 1.0, "w");
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = SYNC_PUSH;
  so.server = 1;
  TU_OK(sync_session_create(dev.env, &co, &c));
  TU_OK(sync_session_create(srv.env, &so, &s));
  k = ss_take(c, buf, sizeof buf); /* HELLO */
  in = (sync_inbuf){buf, k, 0};
  sync_session_recv(s, &in);
  k = ss_take(s, buf, sizeof buf); /* WELCOME, the server's REQUEST */
  in = (sync_inbuf){buf, k, 0};
  sync_session_recv(c, &in);
  assert_int_equal(sync_session_status(s), 0);
  /* DATA: the frame (major 3, its checksum seeded with 0: the first) */
  k = 0;
  m[k++] = 4;
  m[k++] = (unsigned char)(2 + n + 8);
  f0 = k;
  m[k++] = 0x30;
  m[k++] = (unsigned char)n;
  memcpy(m + k, body, n);
  k += n;
  sum = XXH3_64bits(m + f0, k - f0);
  for (i = 0; i < 8; i++) m[k++] = (unsigned char)(sum >> (8 * i));
  h = (uint32_t)XXH3_64bits(m, k);
  for (i = 0; i < 4; i++) m[k++] = (unsigned char)(h >> (8 * i));
  in = (sync_inbuf){m, k, 0};
  sync_session_recv(s, &in);
  (void)ss_take(s, buf, sizeof buf);
  rc = sync_session_status(s);
  snprintf(why, whylen, "%s", sync_session_errmsg(s));
  assert_int_equal(ss_count(&srv, 0), 0); /* nothing of the device's */
  sync_session_free(c);
  sync_session_free(s);
  mu_close(&srv);
  mu_close(&dev);
  return rc;
}

static void test_session_frames_hostile(void **state) {
  /* last; end = start; 1 site; no stamp; vector 0; no table; no row */
  static const unsigned char empty[] = {0x01, 0x01, 0x00, 0x01,
                                        0x00, 0x00, 0x00, 0x00};
  /* 2 sites, the second index 9 of a table of 2 */
  static const unsigned char index[] = {0x01, 0x01, 0x00, 0x02, 0x09,
                                        0x00, 0x00, 0x00, 0x00, 0x00};
  /* a stamp 1 below the server's entry for the device (none: 0) */
  static const unsigned char below[] = {0x01, 0x01, 0x00, 0x01, 0x01, 0x00,
                                        0x01, 0x04, 0x00, 0x00, 0x00};
  char why[256];
  (void)state;
  /* Well formed, it ends the push: the server's session is done. */
  assert_int_equal(ss_inject_frame(empty, sizeof empty, why, sizeof why), 1);
  assert_int_equal(ss_inject_frame(index, sizeof index, why, sizeof why),
                   SYNC_EFORMAT);
  assert_non_null(strstr(why, "site index past the session's site table"));
  assert_int_equal(ss_inject_frame(empty, 2, why, sizeof why), SYNC_EFORMAT);
  assert_non_null(strstr(why, "bad end cursor"));
  assert_int_equal(ss_inject_frame(below, sizeof below, why, sizeof why),
                   SYNC_EFORMAT);
  assert_non_null(strstr(why, "stamp HLC overflows"));
}

/* A device restored from an old copy still holds a row the server
 * deleted and collected: pushing cannot bring it back, pulling says
 * SYNC_ESTALE, and after sync_peer_reset the device ends with exactly the
 * server's rows and its own new ones. */
static void test_stale_peer(void **state) {
  uint64_t now = 1700000000000ull, collected = 0;
  mu_rep srv, dev;
  unsigned char *copy;
  size_t n = 0;
  sync_txn *x;
  sync_session_opts co;
  sync_health h;
  (void)state;
  ss_open(&srv, "sess-srv.db", 0x51, &now);
  ss_open(&dev, "sess-dev.db", 0xd1, &now);
  ss_put2(&dev, 0, "doomed", 0);
  ss_put2(&dev, 0, "kept", 0);
  assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, NULL), 1);
  sync_env_close(dev.env); /* the backup, taken now */
  copy = tu_read_file(dev.path, &n);
  assert_non_null(copy);
  ss_reopen(&dev);
  now += 10;
  mu_delete(&srv, "doomed");
  /* Pulls only: the server never holds the device's log past the backup,
   * so the restore cannot show (a push would: see test_fleet.c). */
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, NULL, NULL), 1);
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, NULL, NULL), 1);
  TU_OK(sync_txn_begin(srv.env, 0, &x));
  TU_OK(sync_gc(x, &collected));
  TU_OK(sync_txn_commit(x));
  TU_U64(collected, 1);
  /* The device comes back from its backup. */
  sync_env_close(dev.env);
  assert_int_equal(tu_write_file(dev.path, copy, n), 0);
  free(copy);
  ss_reopen(&dev);
  assert_int_equal(ss_count(&dev, 0), 2);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PUSH;
  (void)su_sync(&dev, &srv, &co, NULL, NULL, NULL);
  assert_int_equal(ss_count(&srv, 0), 1); /* "doomed" stays gone */
  co.mode = SYNC_PULL;
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, NULL, NULL), SYNC_ESTALE);
  TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_health_get(x, &h));
  sync_txn_abort(x);
  assert_int_equal(h.may_miss_deletes, 1);
  TU_U64(h.peers_stale, 1);
  TU_OK(sync_txn_begin(dev.env, 0, &x));
  TU_OK(sync_peer_reset(x, srv.site));
  TU_OK(sync_txn_commit(x));
  assert_int_equal(su_sync(&dev, &srv, &co, NULL, NULL, NULL), 1);
  TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_health_get(x, &h));
  sync_txn_abort(x);
  assert_int_equal(h.may_miss_deletes, 0);
  TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_health_get(x, &h));
  sync_txn_abort(x);
  assert_int_equal(h.collected, 1);
  assert_int_equal(h.may_miss_deletes, 0);
  assert_int_equal(ss_count(&srv, 0), 1);
  /* The stale replica ends with exactly the server's rows: the row the
   * server deleted and collected goes here too, and a write of its own
   * made after the restore reaches the server. */
  assert_int_equal(ss_count(&dev, 0), 1);
  ss_put2(&dev, 0, "after", 0);
  assert_int_equal(su_sync(&dev, &srv, NULL, NULL, NULL, NULL), 1);
  assert_int_equal(ss_count(&srv, 0), 2);
  assert_true(mu_digest(&dev) == mu_digest(&srv));
  mu_close(&srv);
  mu_close(&dev);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_both_ways_converge),
      cmocka_unit_test(test_modes),
      cmocka_unit_test(test_window_round_trips),
      cmocka_unit_test(test_window_hostile),
      cmocka_unit_test(test_priority_jumps_backlog),
      cmocka_unit_test(test_tiny_link_resume),
      cmocka_unit_test(test_relay_no_echo),
      cmocka_unit_test(test_rights),
      cmocka_unit_test(test_relay_refused),
      cmocka_unit_test(test_future_stamps),
      cmocka_unit_test(test_schema_mismatch),
      cmocka_unit_test(test_dry_run),
      cmocka_unit_test(test_resume_after_cut),
      cmocka_unit_test(test_faulty_link),
      cmocka_unit_test(test_progress_and_tiny_messages),
      cmocka_unit_test(test_driver),
      cmocka_unit_test(test_retry_and_breaker),
      cmocka_unit_test(test_filter_local_policy),
      cmocka_unit_test(test_stale_peer),
      cmocka_unit_test(test_log_chunk_sites),
      cmocka_unit_test(test_session_frames_round_trip),
      cmocka_unit_test(test_session_frames_hostile),
      cmocka_unit_test(test_local_column_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
