/*
 * test_scope.c - partial sync that follows rows in and out of a device's
 * scope (docs/PROTOCOL.md, "Scope"): a server filter that judges rows by
 * their values and by the peer, exit markers that remove rows leaving a
 * device's scope without a delete, selections and filters that widen
 * and narrow with no sync_peer_reset, local edits of a row that left
 * scope, dry runs, a filter that flips every row every session, and a
 * property test over random scopes and writes (SYNC_SCOPE_SEED,
 * SYNC_SCOPE_SCENARIOS).
 */
#include "testutil.h"

#include "sess_util.h"

/* Three tables of the same shape: who owns the row, a value, a note. */
#define SC_OWNER 0u
#define SC_V 1u
#define SC_NOTE 2u
#define SC_NCOLS 3u
#define SC_NTABLES 3u
static const sync_column_def sc_cols[SC_NCOLS] = {
    {"owner", SYNC_INTEGER, 0},
    {"v", SYNC_INTEGER, 0},
    {"note", SYNC_TEXT, 0},
};
static const sync_table_def sc_tables[SC_NTABLES] = {
    {"a", SYNC_TEXT, sc_cols, SC_NCOLS},
    {"b", SYNC_TEXT, sc_cols, SC_NCOLS},
    {"c", SYNC_TEXT, sc_cols, SC_NCOLS},
};

static void sc_open(mu_rep *r, const char *path, uint8_t site, uint64_t *now) {
  uint8_t id[16];
  mu_site(id, site);
  mu_open_schema(r, path, id, now, 0, sc_tables, SC_NTABLES);
}

/* The server's filter: per device (by site id), the owners it sees (bit
 * o of mask).  Tombstones pass (the delete of a row the device may
 * hold).  calls counts calls; seen_* records what the last call saw. */
#define SC_MAXDEV 4
typedef struct sc_filter {
  uint8_t dev[SC_MAXDEV][16];
  uint64_t mask[SC_MAXDEV];
  unsigned ndev;
  int flip;           /* answer alternately yes and no, whatever the row */
  unsigned long calls, flips;
  unsigned seen_nvals;
  int seen_tomb;
  int64_t seen_owner;
} sc_filter;

static int sc_filter_fn(void *ctx, const uint8_t peer[16], unsigned table,
                        const void *key, size_t klen, const sync_value *vals,
                        unsigned nvals) {
  sc_filter *f = (sc_filter *)ctx;
  unsigned i;
  (void)table;
  (void)key;
  (void)klen;
  f->calls++;
  f->seen_nvals = nvals;
  f->seen_tomb = vals == NULL;
  if (f->flip) return (int)(f->flips++ & 1);
  if (!vals) return 1;
  assert_int_equal(nvals, SC_NCOLS);
  if (vals[SC_OWNER].type != SYNC_INTEGER) return 0;
  f->seen_owner = vals[SC_OWNER].i;
  for (i = 0; i < f->ndev; i++)
    if (!memcmp(f->dev[i], peer, 16))
      return vals[SC_OWNER].i >= 0 && vals[SC_OWNER].i < 64 &&
             ((f->mask[i] >> vals[SC_OWNER].i) & 1);
  return 0; /* an unknown peer sees nothing */
}

static unsigned sc_dev(sc_filter *f, const mu_rep *r, uint64_t mask) {
  unsigned i = f->ndev++;
  memcpy(f->dev[i], r->site, 16);
  f->mask[i] = mask;
  return i;
}

static void sc_put(mu_rep *r, unsigned t, const char *key, int64_t owner,
                   int64_t v, const char *note) {
  sync_txn *x;
  sync_value vals[SC_NCOLS];
  vals[SC_OWNER] = sync_int(owner);
  vals[SC_V] = sync_int(v);
  vals[SC_NOTE] = note ? sync_text(note, strlen(note)) : sync_null();
  TU_OK(sync_txn_begin(r->env, 0, &x));
  TU_OK(sync_put(x, t, key, strlen(key), vals, SC_NCOLS));
  TU_OK(sync_txn_commit(x));
  (*(uint64_t *)r->now)++;
}

static void sc_set(mu_rep *r, unsigned t, const char *key, unsigned col,
                   sync_value val) {
  sync_txn *x;
  TU_OK(sync_txn_begin(r->env, 0, &x));
  TU_OK(sync_update(x, t, key, strlen(key), &col, &val, 1));
  TU_OK(sync_txn_commit(x));
  (*(uint64_t *)r->now)++;
}

/* 1 and the values when r holds key live in table t, else 0. */
static int sc_get(mu_rep *r, unsigned t, const char *key, int64_t *owner,
                  int64_t *v, char *note, size_t cap) {
  sync_txn *x;
  sync_value vals[SC_NCOLS];
  int rc;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  rc = sync_get(x, t, key, strlen(key), vals, SC_NCOLS);
  if (rc == 0) {
    if (owner) *owner = vals[SC_OWNER].type == SYNC_INTEGER ? vals[SC_OWNER].i : -1;
    if (v) *v = vals[SC_V].type == SYNC_INTEGER ? vals[SC_V].i : -1;
    if (note) {
      size_t n = vals[SC_NOTE].type == SYNC_TEXT ? vals[SC_NOTE].len : 0;
      if (n >= cap) n = cap - 1;
      if (n) memcpy(note, vals[SC_NOTE].data, n);
      note[n] = 0;
    }
  } else {
    assert_int_equal(rc, SYNC_NOTFOUND);
  }
  sync_txn_abort(x);
  return rc == 0;
}

/* Rows r stores in table t (live and tombstones), by the change list. */
static void sc_stored(mu_rep *r, uint64_t *live, uint64_t *tombs) {
  sync_txn *x;
  sync_changes *it;
  sync_change ch;
  int rc;
  *live = *tombs = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_changes_open(x, 0, &it));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    if (ch.causal_length & 1) (*live)++;
    else (*tombs)++;
  }
  assert_int_equal(rc, SYNC_NOTFOUND);
  sync_changes_close(it);
  sync_txn_abort(x);
}

/* One session: client c with its selection (NULL: all) against server s
 * with filter f at filter version fver.  Returns the client's status. */
static int sc_sync(mu_rep *c, mu_rep *s, int mode,
                   const unsigned char *tables, sc_filter *f, uint64_t fver,
                   size_t chunk_rows, sync_session_stats *cst) {
  sync_session_opts co, so;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = mode;
  co.tables = tables;
  co.chunk_rows = chunk_rows;
  so.filter = f ? sc_filter_fn : NULL;
  so.filter_ctx = f;
  so.filter_version = fver;
  so.chunk_rows = chunk_rows;
  return su_sync(c, s, &co, &so, cst, NULL);
}

static uint64_t sc_vv_of(mu_rep *r, const uint8_t site[16]) {
  sync_txn *x;
  sync_stamp vv[16];
  size_t n, i;
  uint64_t h = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_vv_get(x, vv, 16, &n));
  for (i = 0; i < n && i < 16; i++)
    if (!memcmp(vv[i].site, site, 16)) h = vv[i].hlc;
  sync_txn_abort(x);
  return h;
}

/* ---------------------------------------------------------------------
 * The filter sees the peer and the row's values, tombstones without.
 * ------------------------------------------------------------------- */
static void test_filter_sees_peer_and_values(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev, other;
  sc_filter f;
  sync_session_stats st;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_open(&other, "scope-oth.db", 0xd2, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_dev(&f, &other, 1u << 2);
  sc_put(&srv, 0, "k1", 1, 10, "one");
  sc_put(&srv, 0, "k2", 2, 20, "two");
  sc_put(&srv, 1, "k3", 1, 30, NULL);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 0, 0, &st), 1);
  assert_true(f.calls >= 3);
  assert_int_equal(f.seen_nvals, SC_NCOLS);
  assert_true(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0));
  assert_false(sc_get(&dev, 0, "k2", NULL, NULL, NULL, 0));
  assert_true(sc_get(&dev, 1, "k3", NULL, NULL, NULL, 0));
  TU_U64(st.applied.exited, 0); /* a first stream names nothing it leaves out */
  assert_int_equal(sc_sync(&other, &srv, SYNC_PULL, NULL, &f, 0, 0, NULL), 1);
  assert_false(sc_get(&other, 0, "k1", NULL, NULL, NULL, 0));
  assert_true(sc_get(&other, 0, "k2", NULL, NULL, NULL, 0));
  /* A delete reaches the filter as a tombstone: no values. */
  {
    sync_txn *x;
    TU_OK(sync_txn_begin(srv.env, 0, &x));
    TU_OK(sync_delete(x, 0, "k1", 2));
    TU_OK(sync_txn_commit(x));
  }
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 0, 0, NULL), 1);
  assert_int_equal(f.seen_tomb, 1);
  assert_int_equal(f.seen_nvals, 0);
  assert_false(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0));
  mu_close(&srv);
  mu_close(&dev);
  mu_close(&other);
}

/* A filter that reads other rows through the transaction the chunk is
 * cut in (its context: sync_delta_make's caller's own), as "send an
 * order's lines when the order is in scope" does.  The rows sent are the
 * rows stored: before the fix the cut kept the row it was judging in the
 * transaction's scratch row, which sync_get filled with the row the
 * filter read, so every row went out with that row's values and
 * stamps under its own key. */
typedef struct sc_reader {
  sync_txn *txn;
  unsigned long reads;
} sc_reader;

static int sc_reading_filter(void *ctx, const uint8_t peer[16], unsigned table,
                             const void *key, size_t klen,
                             const sync_value *vals, unsigned nvals) {
  sc_reader *r = (sc_reader *)ctx;
  sync_value other[SC_NCOLS];
  (void)peer;
  (void)key;
  (void)klen;
  (void)vals;
  (void)nvals;
  if (sync_get(r->txn, table, "k00", 3, other, SC_NCOLS) == 0) r->reads++;
  return 1;
}

static void test_filter_reading_the_cutting_transaction(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_reader rd;
  int i, pass;
  (void)state;
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  for (i = 0; i < 40; i++) {
    char key[8];
    snprintf(key, sizeof key, "k%02d", i);
    now += 2;
    sc_put(&srv, 0, key, 1, 100 + i, key);
  }
  /* The first chunk is an initial stream (rows in key order), the next
   * ones, after more writes, come from the log. */
  for (pass = 0; pass < 2; pass++) {
    sync_txn *rt, *st;
    sync_request *req = NULL;
    sync_delta *d = NULL;
    sync_delta_opts o;
    if (pass) {
      for (i = 1; i < 40; i += 3) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        now += 2;
        sc_put(&srv, 0, key, 1, 1000 + i, "changed");
      }
    }
    for (;;) {
      int last;
      memset(&o, 0, sizeof o);
      memset(&rd, 0, sizeof rd);
      o.max_rows = 7;
      o.filter = sc_reading_filter;
      o.filter_ctx = &rd;
      TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &rt));
      TU_OK(sync_request_make(rt, srv.site, &req));
      sync_txn_abort(rt);
      TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &st));
      rd.txn = st;
      TU_OK(sync_delta_make(st, req, &o, &d));
      sync_txn_abort(st);
      sync_request_free(req);
      assert_true(rd.reads > 0);
      last = sync_delta_last(d);
      mu_apply(&dev, d, SYNC_APPLY_MERGE, NULL);
      sync_delta_free(d);
      if (last) break;
    }
    for (i = 0; i < 40; i++) {
      char key[8];
      int64_t v = 0;
      snprintf(key, sizeof key, "k%02d", i);
      assert_true(sc_get(&dev, 0, key, NULL, &v, NULL, 0));
      if (v != (pass && i % 3 == 1 ? 1000 + i : 100 + i))
        fail_msg("pass %d: %s reads v %lld on the device", pass, key,
                 (long long)v);
    }
    TU_U64(mu_digest(&dev), mu_digest(&srv));
  }
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * A row whose values change so the filter says no reaches the device as
 * an exit marker: removed there, no tombstone, nothing pushed back, and
 * a device whose scope still holds the row keeps it.
 * ------------------------------------------------------------------- */
static void test_row_leaves_scope_by_value(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, d1, d2;
  sc_filter f;
  sync_session_stats st;
  uint64_t live, tombs;
  int64_t owner;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&d1, "scope-d1.db", 0xd1, &now);
  sc_open(&d2, "scope-d2.db", 0xd2, &now);
  sc_dev(&f, &d1, 1u << 1);
  sc_dev(&f, &d2, (1u << 1) | (1u << 2));
  sc_put(&srv, 0, "k1", 1, 10, "one");
  sc_put(&srv, 0, "k2", 1, 20, "two");
  assert_int_equal(sc_sync(&d1, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_int_equal(sc_sync(&d2, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&d1, 0, "k1", NULL, NULL, NULL, 0));
  /* k1 moves to owner 2: out of d1's scope, still in d2's. */
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(2));
  assert_int_equal(sc_sync(&d1, &srv, SYNC_BOTH, NULL, &f, 0, 0, &st), 1);
  TU_U64(st.applied.exited, 1);
  TU_U64(st.applied.deleted, 0);
  TU_U64(st.peer_applied.deleted, 0); /* nothing went back as a delete */
  assert_false(sc_get(&d1, 0, "k1", NULL, NULL, NULL, 0));
  assert_true(sc_get(&d1, 0, "k2", NULL, NULL, NULL, 0));
  sc_stored(&d1, &live, &tombs);
  TU_U64(live, 1);
  TU_U64(tombs, 0); /* removed without a trace */
  /* The server and d2 keep it; d1's next sessions send nothing of it. */
  assert_int_equal(sc_sync(&d1, &srv, SYNC_BOTH, NULL, &f, 0, 0, &st), 1);
  TU_U64(st.rows_sent, 0);
  assert_int_equal(sc_sync(&d2, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&srv, 0, "k1", &owner, NULL, NULL, 0));
  assert_int_equal(owner, 2);
  assert_true(sc_get(&d2, 0, "k1", &owner, NULL, NULL, 0));
  assert_int_equal(owner, 2);
  sc_stored(&srv, &live, &tombs);
  TU_U64(tombs, 0);
  /* d1's vector no longer claims the removed row's stamp (the server's
   * write of owner 2). */
  assert_true(sc_vv_of(&d1, srv.site) < sc_vv_of(&srv, srv.site));
  mu_close(&srv);
  mu_close(&d1);
  mu_close(&d2);
}

/* ---------------------------------------------------------------------
 * A row whose values change so the filter says yes comes whole, also
 * the columns the device wrote itself before the row left its scope
 * (its own vector entry no longer claims them).
 * ------------------------------------------------------------------- */
static void test_row_reenters_scope_whole(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  int64_t owner, v;
  char note[32];
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_put(&srv, 0, "k1", 1, 10, "server");
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  /* The device writes the note; the server gets it. */
  sc_set(&dev, 0, "k1", SC_NOTE, sync_text("device", 6));
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&srv, 0, "k1", NULL, NULL, note, sizeof note));
  assert_string_equal(note, "device");
  /* Out, then in again by the server's writes. */
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(3));
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_false(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0));
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(1));
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&dev, 0, "k1", &owner, &v, note, sizeof note));
  assert_int_equal(owner, 1);
  assert_int_equal(v, 10);
  assert_string_equal(note, "device");
  assert_true(mu_digest(&dev) == mu_digest(&srv));
  mu_close(&srv);
  mu_close(&dev);
}

/* The same for a copy of the device's file, which takes a new site id
 * at open and claims the old id's writes it holds: not those of the rows
 * that left its scope. */
static void test_row_reenters_on_a_copy(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev, cp;
  sc_filter f;
  char note[32];
  unsigned char *b;
  size_t n = 0;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_put(&srv, 0, "k1", 1, 10, "server");
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  sc_set(&dev, 0, "k1", SC_NOTE, sync_text("device", 6));
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(3));
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_false(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0));
  sync_env_close(dev.env);
  dev.env = NULL;
  b = tu_read_file("scope-dev.db", &n);
  assert_non_null(b);
  tu_remove_db("scope-cp.db");
  assert_int_equal(tu_write_file("scope-cp.db", b, n), 0);
  free(b);
  memset(&cp, 0, sizeof cp);
  snprintf(cp.path, sizeof cp.path, "scope-cp.db");
  memset(cp.site, 0xd1, 16);
  cp.now = &now;
  cp.random_calls = 1; /* every draw is a new id */
  TU_OK(sync_env_create(NULL, &cp.env));
  TU_OK(sync_env_set_random(cp.env, mu_random_fn, &cp));
  TU_OK(sync_env_set_clock(cp.env, mu_clock_fn, &cp));
  TU_OK(sync_env_set_durability(cp.env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_schema(cp.env, sc_tables, SC_NTABLES));
  TU_OK(sync_env_open(cp.env, cp.path, 0));
  TU_OK(sync_env_site_id(cp.env, cp.site));
  assert_true(memcmp(cp.site, dev.site, 16) != 0); /* renewed at open */
  memcpy(f.dev[0], cp.site, 16);
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(1));
  assert_int_equal(sc_sync(&cp, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&cp, 0, "k1", NULL, NULL, note, sizeof note));
  assert_string_equal(note, "device");
  mu_close(&srv);
  mu_close(&dev);
  mu_close(&cp);
}

/* ---------------------------------------------------------------------
 * Tables: dropping one from the selection removes its rows; adding one
 * brings its rows, with no sync_peer_reset.
 * ------------------------------------------------------------------- */
static void test_selection_narrows_and_widens(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sync_session_stats st;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  uint64_t live, tombs;
  sync_txn *x;
  sync_peer_info pi;
  size_t n;
  int i;
  (void)state;
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  for (i = 0; i < 30; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%02d", i);
    sc_put(&srv, (unsigned)(i % 3), key, 0, i, NULL);
  }
  memset(sel, 0, sizeof sel);
  sel[0] = 0x3; /* a, b */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, sel, NULL, 0, 4, NULL), 1);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 20);
  sel[0] = 0x6; /* b, c: a leaves, c comes */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, sel, NULL, 0, 4, &st), 1);
  TU_U64(st.applied.exited, 10);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 20);
  TU_U64(tombs, 0);
  assert_false(sc_get(&dev, 0, "k00", NULL, NULL, NULL, 0));
  assert_true(sc_get(&dev, 2, "k02", NULL, NULL, NULL, 0));
  TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_peers_get(x, &pi, 1, &n));
  sync_txn_abort(x);
  assert_int_equal(pi.scoped, 1);
  assert_int_equal(pi.tables[0], 0x6);
  /* Settled: the next session moves nothing. */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, sel, NULL, 0, 4, &st), 1);
  TU_U64(st.rows_sent + st.rows_received, 0);
  /* The server lost nothing. */
  sc_stored(&srv, &live, &tombs);
  TU_U64(live, 30);
  TU_U64(tombs, 0);
  sel[0] = 0x7;
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, sel, NULL, 0, 4, NULL), 1);
  assert_true(mu_digest(&dev) == mu_digest(&srv));
  mu_close(&srv);
  mu_close(&dev);
}

/* A new filter version with a wider filter brings the rows it now
 * lets through; a narrower one removes those it no longer does. */
static void test_filter_version_widens_and_narrows(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  sync_session_stats st;
  uint64_t live, tombs;
  int i;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 0);
  for (i = 0; i < 40; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%02d", i);
    sc_put(&srv, 0, key, i % 4, i, "x");
  }
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 1, 3, NULL), 1);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 10);
  f.mask[0] = 0x3;
  /* The same version: the server cannot know; nothing moves. */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 1, 3, &st), 1);
  TU_U64(st.rows_received, 0);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 2, 3, &st), 1);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 20);
  f.mask[0] = 0x4;
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 3, 3, &st), 1);
  TU_U64(st.applied.exited, 20);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 10);
  TU_U64(tombs, 0);
  assert_true(sc_get(&dev, 0, "k02", NULL, NULL, NULL, 0));
  assert_false(sc_get(&dev, 0, "k00", NULL, NULL, NULL, 0));
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * A local edit of a row that left scope stays until the server holds
 * it (a pull alone keeps it), then leaves: nothing is lost.
 * ------------------------------------------------------------------- */
static void test_local_edit_stays_until_sent(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  sync_session_stats st;
  int64_t v;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_put(&srv, 0, "k1", 1, 10, NULL);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  sc_set(&dev, 0, "k1", SC_V, sync_int(77));       /* not sent yet */
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(2));     /* leaves dev's scope */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 0, 0, &st), 1);
  TU_U64(st.applied.exited, 0);
  assert_true(sc_get(&dev, 0, "k1", NULL, &v, NULL, 0));
  assert_int_equal(v, 77);
  /* Both ways: the pull keeps it, the push delivers the edit. */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&srv, 0, "k1", NULL, &v, NULL, 0));
  assert_int_equal(v, 77);
  /* Now the server holds all of it: the next exit removes it. */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, &st), 1);
  TU_U64(st.applied.exited, 1);
  assert_false(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0));
  assert_true(sc_get(&srv, 0, "k1", NULL, &v, NULL, 0));
  assert_int_equal(v, 77);
  mu_close(&srv);
  mu_close(&dev);
}

/* A row the device inserted before its first sync collides with one of
 * the server's that is out of its scope, with later stamps: the first
 * stream names nothing out of scope, the push changes nothing on the
 * server, so no change would ever bring an exit.  The server logs the
 * row again when it keeps its own, and the next pull removes the copy. */
static void test_colliding_insert_out_of_scope_leaves(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  sync_session_stats st;
  uint64_t live, tombs;
  int64_t owner, v;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_put(&dev, 0, "k1", 1, 5, "device");  /* in the device's scope */
  sc_put(&srv, 0, "k1", 2, 10, "server"); /* later, and out of it */
  sc_put(&srv, 0, "k2", 1, 20, NULL);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, &st), 1);
  assert_true(sc_get(&srv, 0, "k1", &owner, &v, NULL, 0));
  assert_int_equal(owner, 2); /* the server's later write won */
  assert_int_equal(v, 10);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, &st), 1);
  TU_U64(st.applied.exited, 1);
  assert_false(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0));
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 1);
  TU_U64(tombs, 0);
  /* Settled, and the row comes whole when it enters. */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, &st), 1);
  TU_U64(st.rows_sent + st.rows_received + st.applied.exited, 0);
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(1));
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&dev, 0, "k1", &owner, &v, NULL, 0));
  assert_int_equal(v, 10);
  assert_true(mu_digest(&dev) == mu_digest(&srv));
  mu_close(&srv);
  mu_close(&dev);
}

/* A row kept after an exit that comes back into scope before it was
 * acknowledged stays (its mark goes with the row that brings it). */
static void test_kept_row_back_in_scope_stays(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  int64_t v;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_put(&srv, 0, "k1", 1, 10, NULL);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  sc_set(&dev, 0, "k1", SC_V, sync_int(77));  /* not sent yet */
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(2)); /* out */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&dev, 0, "k1", NULL, NULL, NULL, 0)); /* kept */
  sc_set(&srv, 0, "k1", SC_OWNER, sync_int(1)); /* in again */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_PULL, NULL, &f, 0, 0, NULL), 1);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  assert_true(sc_get(&dev, 0, "k1", NULL, &v, NULL, 0));
  assert_int_equal(v, 77);
  assert_true(sc_get(&srv, 0, "k1", NULL, &v, NULL, 0));
  assert_int_equal(v, 77);
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * A server never takes exit markers from a client; a dry run with a new
 * scope ends and changes nothing.
 * ------------------------------------------------------------------- */
static int sc_none(void *ctx, const uint8_t peer[16], unsigned table,
                   const void *key, size_t klen, const sync_value *vals,
                   unsigned nvals) {
  (void)ctx;
  (void)peer;
  (void)table;
  (void)key;
  (void)klen;
  (void)vals;
  (void)nvals;
  return 0;
}

static void test_exits_refused_from_clients_and_dry_runs(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  sync_txn *x;
  sync_request *req;
  sync_delta *d;
  sync_delta_opts o;
  sync_apply_opts ao;
  sync_apply_report rep;
  sync_session_stats st;
  unsigned char sel[SYNC_RIGHTS_BYTES];
  uint64_t live, tombs, dg;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  sc_put(&dev, 0, "k1", 1, 1, NULL);
  sc_put(&dev, 0, "k2", 1, 2, NULL);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  /* The device cuts a scoped chunk whose filter refuses everything: exits
   * for both rows.  Applied with refuse_exits: SYNC_EPERM, nothing done. */
  sc_set(&dev, 0, "k1", SC_V, sync_int(5));
  sc_set(&dev, 0, "k2", SC_V, sync_int(6));
  TU_OK(sync_txn_begin(srv.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_request_make(x, dev.site, &req));
  sync_txn_abort(x);
  memset(&o, 0, sizeof o);
  o.scope = 1;
  o.filter = sc_none;
  TU_OK(sync_txn_begin(dev.env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_delta_make(x, req, &o, &d));
  sync_txn_abort(x);
  sync_request_free(req);
  TU_U64(sync_delta_rows(d), 0);
  memset(&ao, 0, sizeof ao);
  ao.refuse_exits = 1;
  ao.relay = 1;
  TU_OK(sync_txn_begin(srv.env, 0, &x));
  TU_RC(sync_delta_apply_opts(x, d, &ao, &rep), SYNC_EPERM);
  sync_txn_abort(x);
  ao.refuse_exits = 0;
  TU_OK(sync_txn_begin(srv.env, 0, &x));
  TU_OK(sync_delta_apply_opts(x, d, &ao, &rep));
  TU_U64(rep.exited, 2);
  sync_txn_abort(x); /* not committed */
  sync_delta_free(d);
  sc_stored(&srv, &live, &tombs);
  TU_U64(live, 2);
  /* A dry run with a new selection ends and changes nothing (the edits
   * of k1 and k2 sent first: else they would stay). */
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 0, NULL), 1);
  dg = mu_digest(&dev);
  {
    sync_session_opts co, so;
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    memset(sel, 0, sizeof sel);
    sel[0] = 0x2;
    co.mode = SYNC_PULL;
    co.tables = sel;
    co.dry_run = 1;
    co.chunk_rows = 1;
    so.chunk_rows = 1;
    assert_int_equal(su_sync(&dev, &srv, &co, &so, &st, NULL), 1);
    TU_U64(st.applied.exited, 2); /* what a real run would remove */
  }
  assert_true(mu_digest(&dev) == dg);
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * In process: exit markers name only tables the requester may see
 * (sync_delta_opts.visible), whatever its request says it held; and a
 * restarted stream of the full scope lets the vector rise again.
 * ------------------------------------------------------------------- */
static void sc_pull_api(mu_rep *r, mu_rep *s, const unsigned char *tables,
                        const unsigned char *visible, sync_apply_report *sum) {
  int last = 0, n = 0;
  memset(sum, 0, sizeof *sum);
  while (!last && n++ < 1000) {
    sync_txn *x, *y;
    sync_request *req;
    sync_delta *d;
    sync_delta_opts o;
    sync_apply_report rep;
    memset(&o, 0, sizeof o);
    o.scope = 1;
    o.tables = tables;
    o.visible = visible;
    o.max_rows = 2;
    TU_OK(sync_txn_begin(r->env, 0, &x));
    TU_OK(sync_request_make(x, s->site, &req));
    TU_OK(sync_txn_begin(s->env, SYNC_TXN_RDONLY, &y));
    TU_OK(sync_delta_make(y, req, &o, &d));
    sync_txn_abort(y);
    sync_request_free(req);
    last = sync_delta_last(d);
    TU_OK(sync_delta_apply(x, d, SYNC_APPLY_MERGE, &rep));
    TU_OK(sync_txn_commit(x));
    sync_delta_free(d);
    sum->exited += rep.exited;
    sum->rows += rep.rows;
    if (last) sum->vector_raised = rep.vector_raised;
  }
  assert_true(last);
}

static void test_exits_name_visible_tables_only(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sync_apply_report rep;
  unsigned char ab[1] = {0x3}, a[1] = {0x1}, all[1] = {0x7};
  uint64_t live, tombs;
  (void)state;
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_put(&srv, 0, "a1", 0, 1, NULL);
  sc_put(&srv, 1, "b1", 0, 2, NULL);
  sc_put(&srv, 1, "b2", 0, 3, NULL);
  sc_put(&srv, 2, "c1", 0, 4, NULL);
  sc_pull_api(&dev, &srv, ab, NULL, &rep);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 3);
  /* Narrowed to a, with b no longer visible: b's rows are not named. */
  sc_pull_api(&dev, &srv, a, a, &rep);
  TU_U64(rep.exited, 0);
  assert_true(sc_get(&dev, 1, "b1", NULL, NULL, NULL, 0));
  /* Visible again: the next scope change names them. */
  sc_pull_api(&dev, &srv, a, ab, &rep);
  TU_U64(rep.exited, 0); /* the same scope: nothing restarts */
  sc_pull_api(&dev, &srv, all, NULL, &rep);
  sc_pull_api(&dev, &srv, a, NULL, &rep);
  TU_U64(rep.exited, 3);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 1);
  TU_U64(tombs, 0);
  /* Everything again, no filter: a complete run, and the vector rises. */
  sc_pull_api(&dev, &srv, all, NULL, &rep);
  assert_int_equal(rep.vector_raised, 1);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 4);
  mu_close(&srv);
  mu_close(&dev);
}

/* A cursor served with no scope (an in-process pull without it, or a
 * peer record of storage format 3) restarts at the first scoped
 * request: the rows out of the scope leave, with no reset. */
static void test_unscoped_cursor_restarts(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  sync_session_stats st;
  uint64_t live, tombs;
  int i;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 1);
  for (i = 0; i < 12; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%02d", i);
    sc_put(&srv, (unsigned)(i % 3), key, 1 + i % 2, i, NULL);
  }
  mu_pull(&dev, &srv, 5, 1, NULL); /* no scope: everything */
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 12);
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 0, 5, &st), 1);
  TU_U64(st.applied.exited, 6);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 6);
  TU_U64(tombs, 0);
  sc_stored(&srv, &live, &tombs);
  TU_U64(live, 12);
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * Bad input: a filter that flips every row, in every session (with a new
 * filter version each time, and without), costs chunks of bounded size
 * and time, and once it settles the device holds exactly its scope.
 * ------------------------------------------------------------------- */
static void test_flipping_filter_is_bounded(void **state) {
  uint64_t now = 1700000000000ull;
  mu_rep srv, dev;
  sc_filter f;
  sync_session_stats st;
  uint64_t live, tombs;
  unsigned s;
  int i;
  (void)state;
  memset(&f, 0, sizeof f);
  sc_open(&srv, "scope-srv.db", 0x51, &now);
  sc_open(&dev, "scope-dev.db", 0xd1, &now);
  sc_dev(&f, &dev, 1u << 0);
  for (i = 0; i < 300; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%03d", i);
    sc_put(&srv, (unsigned)(i % 2), key, i % 2, i, "some note text");
  }
  f.flip = 1;
  for (s = 0; s < 12; s++) {
    unsigned long before = f.calls;
    if (s % 3 == 2) sc_set(&srv, 0, "k000", SC_V, sync_int((int64_t)s));
    assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, s / 2, 16, &st),
                     1);
    /* Each chunk holds at most 16 rows and exits; each session judges
     * each row at most once.  (A session with nothing in the log and
     * the same filter version may end at the quick check: a filter
     * that changes its answers needs a new version, as for sessions.) */
    assert_true(st.unchanged || st.frames_received >= 1);
    assert_true(st.rows_received <= 16 * st.frames_received);
    assert_true(f.calls - before <= 300);
    assert_true(st.frame_bytes_received <= st.frames_received * 4096);
  }
  f.flip = 0;
  assert_int_equal(sc_sync(&dev, &srv, SYNC_BOTH, NULL, &f, 100, 16, NULL), 1);
  sc_stored(&dev, &live, &tombs);
  TU_U64(live, 150);
  TU_U64(tombs, 0);
  sc_stored(&srv, &live, &tombs);
  TU_U64(live, 300);
  TU_U64(tombs, 0);
  for (i = 0; i < 300; i++) {
    char key[16];
    int64_t v;
    snprintf(key, sizeof key, "k%03d", i);
    assert_int_equal(sc_get(&dev, (unsigned)(i % 2), key, NULL, &v, NULL, 0),
                     i % 2 == 0);
  }
  mu_close(&srv);
  mu_close(&dev);
}

/* ---------------------------------------------------------------------
 * Property: one server, three devices; the server's filter (owners per
 * device, a version bumped at each change) and each device's table
 * selection change at random while the server and the devices write,
 * update and delete rows, and sessions are cut at random bytes.  After
 * settling, each device holds exactly the server's rows that its final
 * scope selects, with the server's values; the server holds every row
 * never deleted by anyone, and no replica holds a tombstone of a key
 * nobody deleted (an exit leaked as a delete).
 * ------------------------------------------------------------------- */
#define SP_NDEV 3
#define SP_NKEYS 12

typedef struct sp_world {
  uint64_t now;
  mu_rep srv, dev[SP_NDEV];
  sc_filter f;
  uint64_t fver;
  unsigned char sel[SP_NDEV][SYNC_RIGHTS_BYTES];
  unsigned char deleted[SC_NTABLES][SP_NKEYS]; /* someone deleted it once */
  uint64_t seed;
} sp_world;

static void sp_key(char *key, size_t cap, unsigned k) {
  snprintf(key, cap, "key-%02u", k);
}

/* A random write on r: a put, an update of one column, or a delete. */
static void sp_write(sp_world *w, mu_rep *r, tu_rng *g,
                     const unsigned char *sel) {
  unsigned t = (unsigned)tu_below(g, SC_NTABLES), k, op;
  char key[16];
  sync_txn *x;
  int rc;
  if (sel && !((sel[0] >> t) & 1)) return; /* devices write what they sync */
  k = (unsigned)tu_below(g, SP_NKEYS);
  sp_key(key, sizeof key, k);
  op = (unsigned)tu_below(g, 10);
  TU_OK(sync_txn_begin(r->env, 0, &x));
  if (op < 4) {
    sync_value vals[SC_NCOLS];
    char note[16];
    snprintf(note, sizeof note, "n%llu", (unsigned long long)tu_below(g, 1000));
    vals[SC_OWNER] = sync_int((int64_t)tu_below(g, 4));
    vals[SC_V] = sync_int((int64_t)tu_below(g, 1000));
    vals[SC_NOTE] = sync_text(note, strlen(note));
    TU_OK(sync_put(x, t, key, strlen(key), vals, SC_NCOLS));
  } else if (op < 9) {
    unsigned col = (unsigned)tu_below(g, SC_NCOLS);
    sync_value val = col == SC_OWNER ? sync_int((int64_t)tu_below(g, 4))
                                     : sync_int((int64_t)tu_below(g, 1000));
    if (col == SC_NOTE) val = sync_text("upd", 3);
    rc = sync_update(x, t, key, strlen(key), &col, &val, 1);
    if (rc != SYNC_NOTFOUND) TU_OK(rc);
  } else {
    rc = sync_delete(x, t, key, strlen(key));
    if (rc == 0) w->deleted[t][k] = 1;
    else TU_RC(rc, SYNC_NOTFOUND);
  }
  TU_OK(sync_txn_commit(x));
  w->now += 1 + tu_below(g, 3);
}

/* A session of device i, cut at a random byte now and then. */
static void sp_session(sp_world *w, unsigned i, tu_rng *g, int cut) {
  sync_session_opts co, so;
  sync_session *a, *b;
  su_pump p;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = SYNC_BOTH;
  co.tables = w->sel[i];
  co.chunk_rows = 1 + (size_t)tu_below(g, 6);
  co.max_message = 256 + (size_t)tu_below(g, 2048);
  so.server = 1;
  so.filter = sc_filter_fn;
  so.filter_ctx = &w->f;
  so.filter_version = w->fver;
  so.chunk_rows = 1 + (size_t)tu_below(g, 6);
  TU_OK(sync_session_create(w->dev[i].env, &co, &a));
  TU_OK(sync_session_create(w->srv.env, &so, &b));
  memset(&p, 0, sizeof p);
  if (cut) p.budget = 1 + (size_t)tu_below(g, 3000);
  if (!su_run(&p, a, b) && !p.cut) {
    fail_msg("seed %llu: a session failed: %s / %s",
             (unsigned long long)w->seed, sync_session_errmsg(a),
             sync_session_errmsg(b));
  }
  sync_session_free(a);
  sync_session_free(b);
}

static void sp_check(sp_world *w) {
  unsigned i, t, k;
  for (t = 0; t < SC_NTABLES; t++)
    for (k = 0; k < SP_NKEYS; k++) {
      char key[16];
      int64_t so, sv, dvo, dvv;
      char sn[32], dn[32];
      int sp;
      sp_key(key, sizeof key, k);
      sp = sc_get(&w->srv, t, key, &so, &sv, sn, sizeof sn);
      for (i = 0; i < SP_NDEV; i++) {
        int want = sp && ((w->sel[i][0] >> t) & 1) && so >= 0 && so < 64 &&
                   ((w->f.mask[i] >> so) & 1);
        int got = sc_get(&w->dev[i], t, key, &dvo, &dvv, dn, sizeof dn);
        if (want != got)
          fail_msg("seed %llu: device %u %s table %u key %s (server: %s, "
                   "owner %lld)",
                   (unsigned long long)w->seed, i,
                   got ? "holds" : "lacks", t, key, sp ? "live" : "absent",
                   (long long)(sp ? so : -1));
        if (got && (dvo != so || dvv != sv || strcmp(dn, sn)))
          fail_msg("seed %llu: device %u table %u key %s has other values",
                   (unsigned long long)w->seed, i, t, key);
      }
    }
  /* Tombstones only of keys someone deleted; the server lost no row. */
  for (i = 0; i <= SP_NDEV; i++) {
    mu_rep *r = i == SP_NDEV ? &w->srv : &w->dev[i];
    sync_txn *x;
    sync_changes *it;
    sync_change ch;
    int rc;
    TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_changes_open(x, 0, &it));
    while ((rc = sync_changes_next(it, &ch)) == 0) {
      /* "key-NN": keys are not NUL-terminated */
      const char *kp = (const char *)ch.key.data;
      unsigned kk = ch.key.len == 6 ? (unsigned)(kp[4] - '0') * 10u +
                                          (unsigned)(kp[5] - '0')
                                    : 0;
      assert_int_equal(ch.key.len, 6);
      if (!(ch.causal_length & 1) && !w->deleted[ch.table][kk % SP_NKEYS])
        fail_msg("seed %llu: replica %u holds a tombstone of table %u key "
                 "%u, which nobody deleted",
                 (unsigned long long)w->seed, i, ch.table, kk);
    }
    assert_int_equal(rc, SYNC_NOTFOUND);
    sync_changes_close(it);
    sync_txn_abort(x);
  }
}

static void sp_scenario(uint64_t seed) {
  static sp_world w;
  tu_rng g;
  unsigned i, step, nsteps;
  char path[32];
  memset(&w, 0, sizeof w);
  w.seed = seed;
  w.now = 1700000000000ull;
  g.s = seed * 0x9E3779B97F4A7C15ull + 1;
  sc_open(&w.srv, "scope-p-srv.db", 0x51, &w.now);
  for (i = 0; i < SP_NDEV; i++) {
    snprintf(path, sizeof path, "scope-p-d%u.db", i);
    sc_open(&w.dev[i], path, (uint8_t)(0xd1 + i), &w.now);
    sc_dev(&w.f, &w.dev[i], tu_below(&g, 16));
    w.sel[i][0] = (unsigned char)(1 + tu_below(&g, 7));
  }
  nsteps = 40 + (unsigned)tu_below(&g, 40);
  for (step = 0; step < nsteps; step++) {
    unsigned what = (unsigned)tu_below(&g, 20);
    i = (unsigned)tu_below(&g, SP_NDEV);
    if (what < 6) {
      sp_write(&w, &w.srv, &g, NULL);
    } else if (what < 10) {
      sp_write(&w, &w.dev[i], &g, w.sel[i]);
    } else if (what < 11) {
      /* The server changes what a device sees: a new filter version. */
      w.f.mask[i] = tu_below(&g, 16);
      w.fver++;
    } else if (what < 12) {
      /* A device changes its selection, after sending what it wrote in
       * the tables it keeps selecting (docs/PROTOCOL.md, "Scope"). */
      sp_session(&w, i, &g, 0);
      w.sel[i][0] = (unsigned char)(1 + tu_below(&g, 7));
    } else {
      sp_session(&w, i, &g, tu_below(&g, 4) == 0);
    }
  }
  /* Settle: every device in turn, until nothing moves. */
  for (step = 0; step < 4; step++)
    for (i = 0; i < SP_NDEV; i++) sp_session(&w, i, &g, 0);
  sp_check(&w);
  mu_close(&w.srv);
  for (i = 0; i < SP_NDEV; i++) mu_close(&w.dev[i]);
}

static void test_scope_property(void **state) {
  const char *ns = getenv("SYNC_SCOPE_SCENARIOS"), *ss = getenv("SYNC_SCOPE_SEED");
  uint64_t n = ns ? strtoull(ns, NULL, 10) : 150, s0 = ss ? strtoull(ss, NULL, 10) : 1,
           s;
  (void)state;
  for (s = s0; s < s0 + n; s++) sp_scenario(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filter_sees_peer_and_values),
      cmocka_unit_test(test_filter_reading_the_cutting_transaction),
      cmocka_unit_test(test_row_leaves_scope_by_value),
      cmocka_unit_test(test_row_reenters_scope_whole),
      cmocka_unit_test(test_row_reenters_on_a_copy),
      cmocka_unit_test(test_selection_narrows_and_widens),
      cmocka_unit_test(test_filter_version_widens_and_narrows),
      cmocka_unit_test(test_local_edit_stays_until_sent),
      cmocka_unit_test(test_colliding_insert_out_of_scope_leaves),
      cmocka_unit_test(test_kept_row_back_in_scope_stays),
      cmocka_unit_test(test_exits_refused_from_clients_and_dry_runs),
      cmocka_unit_test(test_exits_name_visible_tables_only),
      cmocka_unit_test(test_unscoped_cursor_restarts),
      cmocka_unit_test(test_flipping_filter_is_bounded),
      cmocka_unit_test(test_scope_property),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
