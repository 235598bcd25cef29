/*
 * test_internal_log.c - the change log (docs/FORMAT.md, "Change log"):
 * entries packed into records keep the logical model of one entry per
 * position.  Appends across record boundaries, many tables, keys that
 * share prefixes and keys that do not, a row written twice in one
 * transaction, seeks into the middle of a record, deletions of the entry
 * an iterator stands on, compaction, aborted and group transactions,
 * damaged records (SYNC_ECORRUPT, never a crash), and the upgrade of a
 * format-8 file (its log written here in the old layout with LMDB) with
 * a peer whose cursor points into the old log.  White-box: entries are
 * read with the log iterator (log.h), records with LMDB.
 */
#include "merge_util.h"

#include <lmdb.h>

#include "reject.h"

#define DB "t_internal_log.db"
#define NENT 2048

static void rm_db(void) { tu_remove_db(DB); }

/* One log entry as the test expects it. */
typedef struct lg_ent {
  uint64_t v;
  uint32_t s;
  unsigned tid;
  size_t klen;
  unsigned char key[SYNC_MAX_KEY];
} lg_ent;

static lg_ent g_want[NENT], g_got[NENT];

/* Every entry of env's log, stale ones too, into out (up to NENT). */
static size_t lg_read(sync_env *env, lg_ent *out) {
  sync_txn *x;
  sx_logit it;
  size_t n = 0;
  int rc;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  TU_OK(sx_logit_open(x, &it));
  while ((rc = sx_logit_next(&it)) == 0) {
    if (out && n < NENT) {
      out[n].v = it.e.version;
      out[n].s = it.e.seq;
      out[n].tid = it.e.tid;
      out[n].klen = it.e.klen;
      memcpy(out[n].key, it.e.key, it.e.klen);
    }
    n++;
  }
  TU_RC(rc, SYNC_NOTFOUND);
  TU_OK(sx_logit_close(&it));
  sync_txn_abort(x);
  return n;
}

static void lg_same(const lg_ent *a, const lg_ent *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (a[i].v != b[i].v || a[i].s != b[i].s || a[i].tid != b[i].tid ||
        a[i].klen != b[i].klen || memcmp(a[i].key, b[i].key, a[i].klen))
      fail_msg("entry %zu: (%llu, %u) table %u differs", i,
               (unsigned long long)b[i].v, (unsigned)b[i].s, b[i].tid);
  }
}

/* Records of the closed file at DB: how many, the longest value. */
static size_t lg_records(size_t *maxlen) {
  MDB_env *e;
  MDB_txn *t;
  MDB_dbi d;
  MDB_cursor *c;
  MDB_val k, v;
  size_t n = 0;
  *maxlen = 0;
  assert_int_equal(mdb_env_create(&e), 0);
  assert_int_equal(mdb_env_set_maxdbs(e, 64), 0);
  assert_int_equal(mdb_env_open(e, DB, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
  assert_int_equal(mdb_txn_begin(e, NULL, MDB_RDONLY, &t), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.logrec", 0, &d), 0);
  assert_int_equal(mdb_cursor_open(t, d, &c), 0);
  while (mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
    assert_int_equal(k.mv_size, SX_LOGKEY);
    if (v.mv_size > *maxlen) *maxlen = v.mv_size;
    n++;
  }
  mdb_cursor_close(c);
  mdb_txn_abort(t);
  mdb_env_close(e);
  return n;
}

static const sync_column_def lg_cols[] = {{"a", SYNC_INTEGER, 0}};
static const sync_table_def lg_tabs[] = {
    {"t0", SYNC_TEXT, lg_cols, 1},
    {"t1", SYNC_TEXT, lg_cols, 1},
    {"t2", SYNC_BLOB, lg_cols, 1},
};

static sync_env *lg_open(void) {
  sync_env *e;
  TU_OK(sync_env_create(NULL, &e));
  TU_OK(sync_env_set_schema(e, lg_tabs, 3));
  TU_OK(sync_env_set_durability(e, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_open(e, DB, 0));
  return e;
}

/* Write (tid, key) in x and note its entry in g_want[*n] when it makes
 * one (the row's first write in x). */
static void lg_put(sync_txn *x, unsigned tid, const void *key, size_t klen,
                   int64_t val, size_t *n) {
  sync_value v = sync_int(val);
  size_t i;
  TU_OK(sync_put(x, tid, key, klen, &v, 1));
  for (i = 0; i < *n; i++)
    if (g_want[i].v == x->version && g_want[i].tid == tid &&
        g_want[i].klen == klen && !memcmp(g_want[i].key, key, klen))
      return; /* written before in x: its entry stays */
  g_want[*n].v = x->version;
  g_want[*n].s = x->seq - 1;
  g_want[*n].tid = tid;
  g_want[*n].klen = klen;
  memcpy(g_want[*n].key, key, klen);
  (*n)++;
}

/* Key number i of a mix: runs sharing long prefixes, random bytes of
 * random length, now and then a key of the largest size. */
static size_t lg_key(tu_rng *r, size_t i, unsigned char *k) {
  size_t n;
  switch (i % 5) {
  case 0:
  case 1:
    return (size_t)snprintf((char *)k, 64, "user/%08zu/profile/%zu", i / 7, i);
  case 2: {
    size_t j;
    n = 1 + (size_t)tu_below(r, 40);
    for (j = 0; j < n; j++) k[j] = (unsigned char)('a' + tu_below(r, 26));
    return n;
  }
  case 3:
    if (i % 45 == 3) {
      memset(k, 'z', SYNC_MAX_KEY);
      snprintf((char *)k, 16, "%zu", i);
      return SYNC_MAX_KEY;
    }
    return (size_t)snprintf((char *)k, 64, "k%zu", i);
  default:
    return (size_t)snprintf((char *)k, 64, "user/%08zu/profile/%zu", i / 7,
                            i + 1);
  }
}

/* ---------------------------------------------------------------------
 * Layout
 * ------------------------------------------------------------------- */

/* The bytes of a small log, as FORMAT.md spells them. */
static void test_record_bytes(void **state) {
  static const unsigned char want[] = {
      0x02, 0x00, 0x00, 0x02, 'a',  'a',      /* (1, 0) t0 "aa" */
      0x00, 0x01, 0x01, 'b',                  /* (1, 1) "ab" */
      0x02, 0x01, 0x00, 0x01, 'b',            /* (1, 2) t1 "b" */
      0x03, 0x00, 0x00, 0x00, 0x02, 'a', 'c', /* (2, 0) t0 "ac" */
  };
  sync_env *e;
  sync_txn *x;
  size_t n = 0;
  MDB_env *me;
  MDB_txn *t;
  MDB_dbi d;
  MDB_cursor *c;
  MDB_val k, v;
  (void)state;
  rm_db();
  e = lg_open();
  TU_OK(sync_txn_begin(e, 0, &x));
  lg_put(x, 0, "aa", 2, 1, &n);
  lg_put(x, 0, "ab", 2, 1, &n);
  lg_put(x, 1, "b", 1, 1, &n);
  lg_put(x, 0, "aa", 2, 2, &n); /* again: no entry */
  TU_OK(sync_txn_commit(x));
  TU_OK(sync_txn_begin(e, 0, &x));
  lg_put(x, 0, "ac", 2, 1, &n);
  lg_put(x, 2, "x", 1, 1, &n);
  TU_OK(sync_delete(x, 2, "x", 1)); /* again: no entry */
  lg_put(x, 0, "ad", 2, 1, &n);
  TU_OK(sync_txn_commit(x));
  TU_U64(n, 6);
  sync_env_close(e);
  /* One record holds them all. */
  assert_int_equal(mdb_env_create(&me), 0);
  assert_int_equal(mdb_env_set_maxdbs(me, 64), 0);
  assert_int_equal(mdb_env_open(me, DB, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
  assert_int_equal(mdb_txn_begin(me, NULL, MDB_RDONLY, &t), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.logrec", 0, &d), 0);
  assert_int_equal(mdb_cursor_open(t, d, &c), 0);
  assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
  {
    static const unsigned char key[12] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    /* (2, 1) t2 "x": h = 2 (table follows), table 2, nothing shared;
     * (2, 2) t0 "ad": h = 2, table 0, shares nothing with "x". */
    static const unsigned char tail[] = {0x02, 0x02, 0x00, 0x01, 'x', 0x02,
                                         0x00, 0x00, 0x02, 'a',  'd'};
    assert_int_equal(k.mv_size, 12);
    assert_memory_equal(k.mv_data, key, 12);
    assert_int_equal(v.mv_size, sizeof want + sizeof tail);
    assert_memory_equal(v.mv_data, want, sizeof want);
    assert_memory_equal((unsigned char *)v.mv_data + sizeof want, tail,
                        sizeof tail);
  }
  assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_NEXT), MDB_NOTFOUND);
  mdb_cursor_close(c);
  mdb_txn_abort(t);
  mdb_env_close(me);
  rm_db();
}

/* Many entries of three tables: records fill up and new ones start;
 * every entry reads back in order, and a seek to any position, or
 * between positions, finds the first entry at or after it. */
static void test_appends_across_records(void **state) {
  sync_env *e;
  sync_txn *x;
  sync_changes *ch;
  sync_change c;
  tu_rng r = {0x1234};
  size_t n = 0, i, j, recs, maxlen;
  (void)state;
  rm_db();
  e = lg_open();
  for (j = 0; j < 4; j++) {
    size_t per = j == 2 ? 1 : 400; /* a one-entry version in the middle */
    TU_OK(sync_txn_begin(e, 0, &x));
    for (i = 0; i < per; i++) {
      unsigned char k[SYNC_MAX_KEY];
      size_t kn = lg_key(&r, j * 1000 + i, k);
      unsigned tid = (unsigned)((i / 9) % 3); /* runs of one table */
      lg_put(x, tid, k, kn, (int64_t)i, &n);
      if (i % 50 == 7) lg_put(x, tid, k, kn, -1, &n); /* the same row again */
    }
    TU_OK(sync_txn_commit(x));
  }
  TU_U64(lg_read(e, g_got), n);
  lg_same(g_want, g_got, n);
  /* Seeks: to every position, and to the gap just after each. */
  TU_OK(sync_txn_begin(e, SYNC_TXN_RDONLY, &x));
  for (i = 0; i < n; i++) {
    sx_logit it;
    TU_OK(sx_logit_open(x, &it));
    TU_OK(sx_logit_seek(&it, g_want[i].v, g_want[i].s));
    TU_OK(sx_logit_next(&it));
    TU_U64(it.e.version, g_want[i].v);
    TU_U64(it.e.seq, g_want[i].s);
    TU_OK(sx_logit_seek(&it, g_want[i].v, g_want[i].s + 1));
    if (i + 1 < n) {
      TU_OK(sx_logit_next(&it));
      TU_U64(it.e.version, g_want[i + 1].v);
      TU_U64(it.e.seq, g_want[i + 1].s);
    } else {
      TU_RC(sx_logit_next(&it), SYNC_NOTFOUND);
    }
    TU_OK(sx_logit_close(&it));
  }
  /* Changes since each version list the rest, each row once. */
  for (j = 0; j <= 4; j++) {
    size_t m = 0, want = 0;
    for (i = 0; i < n; i++) want += g_want[i].v > j;
    TU_OK(sync_changes_open(x, j, &ch));
    while (sync_changes_next(ch, &c) == 0) m++;
    sync_changes_close(ch);
    TU_U64(m, want);
  }
  sync_txn_abort(x);
  sync_env_close(e);
  recs = lg_records(&maxlen);
  assert_true(recs > 3);
  assert_true(maxlen <= SX_LOGREC_MAX);
  rm_db();
}

/* ---------------------------------------------------------------------
 * Deletes
 * ------------------------------------------------------------------- */

/* An iterator deletes entries as it goes: the first of a record (whose
 * key then changes), every entry of whole records, scattered ones; the
 * entries it passes are all the log's, and what stays reads back. */
static void test_delete_entries_a_reader_stands_on(void **state) {
  sync_env *e;
  sync_txn *x;
  sx_logit it;
  size_t n = 0, i, m, recs0, recs1, maxlen;
  int rc;
  (void)state;
  rm_db();
  e = lg_open();
  TU_OK(sync_txn_begin(e, 0, &x));
  for (i = 0; i < 600; i++) {
    char k[64];
    int kn = snprintf(k, sizeof k, "%03zu-a-key-long-enough-to-fill-%zu", i, i);
    lg_put(x, 0, k, (size_t)kn, 1, &n);
  }
  TU_OK(sync_txn_commit(x));
  sync_env_close(e);
  recs0 = lg_records(&maxlen);
  assert_true(recs0 >= 10);
  e = lg_open();
  /* Aborted: nothing changes. */
  TU_OK(sync_txn_begin(e, 0, &x));
  TU_OK(sx_logit_open(x, &it));
  while (sx_logit_next(&it) == 0) sx_logit_del(&it);
  TU_OK(sx_logit_close(&it));
  TU_U64(lg_read(e, NULL), 600); /* another snapshot */
  sync_txn_abort(x);
  TU_U64(lg_read(e, NULL), 600);
  /* Delete entry 0, 100..299 and every seventh one. */
  TU_OK(sync_txn_begin(e, 0, &x));
  TU_OK(sx_logit_open(x, &it));
  for (i = 0; (rc = sx_logit_next(&it)) == 0; i++) {
    TU_U64(it.e.seq, g_want[i].s);
    if (i == 0 || (i >= 100 && i < 300) || i % 7 == 3) sx_logit_del(&it);
  }
  TU_RC(rc, SYNC_NOTFOUND);
  TU_U64(i, 600);
  TU_OK(sx_logit_close(&it));
  /* By position: one in a record's middle, one deleted already. */
  TU_OK(sx_log_del(x, 1, 50));
  TU_RC(sx_log_del(x, 1, 150), SYNC_NOTFOUND);
  TU_RC(sx_log_del(x, 9, 0), SYNC_NOTFOUND);
  TU_OK(sync_txn_commit(x));
  for (i = m = 0; i < n; i++)
    if (!(i == 0 || (i >= 100 && i < 300) || i % 7 == 3 || i == 50))
      g_want[m++] = g_want[i];
  TU_U64(lg_read(e, g_got), m);
  lg_same(g_want, g_got, m);
  sync_env_close(e);
  recs1 = lg_records(&maxlen);
  assert_true(recs1 < recs0); /* whole records went */
  /* The first record now starts at (1, 1). */
  {
    MDB_env *me;
    MDB_txn *t;
    MDB_dbi d;
    MDB_cursor *c;
    MDB_val k, v;
    static const unsigned char key[12] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1};
    assert_int_equal(mdb_env_create(&me), 0);
    assert_int_equal(mdb_env_set_maxdbs(me, 64), 0);
    assert_int_equal(mdb_env_open(me, DB, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_txn_begin(me, NULL, MDB_RDONLY, &t), 0);
    assert_int_equal(mdb_dbi_open(t, "sx.logrec", 0, &d), 0);
    assert_int_equal(mdb_cursor_open(t, d, &c), 0);
    assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
    assert_memory_equal(k.mv_data, key, 12);
    mdb_cursor_close(c);
    mdb_txn_abort(t);
    mdb_env_close(me);
  }
  /* Appends go on after deletes in the same transaction. */
  e = lg_open();
  TU_OK(sync_txn_begin(e, 0, &x));
  TU_OK(sx_log_del(x, 1, 599));
  m--;
  lg_put(x, 1, "after", 5, 1, &m);
  TU_OK(sync_txn_commit(x));
  TU_U64(lg_read(e, g_got), m);
  lg_same(g_want, g_got, m);
  sync_env_close(e);
  rm_db();
}

/* Log bookkeeping as sx_log_finish keeps it: entries and stale ones. */
static void lg_logst(sync_env *env, uint64_t *n, uint64_t *stale) {
  sync_txn *x;
  sx_slice v;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  TU_OK(sx_get(env->st, x->t, env->meta, "logst", 5, &v));
  assert_int_equal(v.n, 28);
  *n = sx_get_le64(v.p);
  *stale = sx_get_le64(v.p + 8);
  sync_txn_abort(x);
}

/* Stale entries of the log: those whose row does not point back. */
static uint64_t lg_stale(sync_env *env) {
  sync_txn *x;
  sx_logit it;
  uint64_t stale = 0;
  int rc;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  TU_OK(sx_scratch(x));
  TU_OK(sx_logit_open(x, &it));
  while ((rc = sx_logit_next(&it)) == 0) {
    rc = sx_log_current(x, &x->old, &it.e);
    if (rc == SYNC_NOTFOUND)
      stale++;
    else
      TU_OK(rc);
  }
  TU_OK(sx_logit_close(&it));
  sync_txn_abort(x);
  return stale;
}

static void test_log_stays_bounded_under_repeated_updates(void **state) {
  sync_env *e;
  sync_txn *t;
  sync_changes *ch;
  sync_change c;
  uint64_t n, stale;
  int r, k, listed = 0;
  (void)state;
  rm_db();
  e = lg_open();
  for (r = 0; r < 3000; r++) {
    TU_OK(sync_txn_begin(e, 0, &t));
    for (k = 0; k < 10; k++) {
      char key[8];
      sync_value v = sync_int(r * 10 + k);
      snprintf(key, sizeof key, "k%d", k);
      TU_OK(sync_put(t, 0, key, strlen(key), &v, 1));
    }
    TU_OK(sync_txn_commit(t));
  }
  TU_OK(sync_txn_begin(e, SYNC_TXN_RDONLY, &t));
  TU_OK(sync_changes_open(t, 0, &ch));
  while (sync_changes_next(ch, &c) == 0) {
    sync_value v;
    TU_OK(sync_changes_column(ch, 0, &v, NULL, NULL));
    assert_true(c.version == 3000);
    assert_true(v.i >= 29990);
    listed++;
  }
  sync_changes_close(ch);
  sync_txn_abort(t);
  assert_int_equal(listed, 10);
  /* 30,000 entries were written; at most ~1,024 stale ones may wait, and
   * the counts compaction keeps are the log's. */
  lg_logst(e, &n, &stale);
  TU_U64(lg_read(e, NULL), n);
  TU_U64(lg_stale(e), stale);
  assert_true(n <= 2 * 1024 + 10);
  sync_env_close(e);
  rm_db();
}

/* Compaction over many tables and records: whole records of stale
 * entries go, records with live ones among them are rewritten, and the
 * live entries stay in order. */
static void test_compaction_keeps_live_entries(void **state) {
  sync_env *e;
  sync_txn *x;
  tu_rng rg = {77};
  uint64_t n, stale;
  size_t i, j, live;
  (void)state;
  rm_db();
  e = lg_open();
  for (j = 0; j < 60; j++) {
    TU_OK(sync_txn_begin(e, 0, &x));
    for (i = 0; i < 200; i++) {
      char k[32];
      /* Keys 0..299 of three tables, some rewritten often. */
      size_t key = (size_t)(j < 2 ? (j * 200 + i) % 300 : tu_below(&rg, 300));
      sync_value v = sync_int((int64_t)j);
      int kn = snprintf(k, sizeof k, "row-%06zu", key);
      TU_OK(sync_put(x, (unsigned)(key % 3), k, (size_t)kn, &v, 1));
    }
    TU_OK(sync_txn_commit(x));
  }
  lg_logst(e, &n, &stale);
  TU_U64(lg_read(e, g_got), n);
  TU_U64(lg_stale(e), stale);
  assert_true(n < 60 * 200 / 2);
  /* Every row has its current entry, in position order. */
  for (i = 1, live = 0; i < n; i++)
    assert_true(g_got[i - 1].v < g_got[i].v ||
                (g_got[i - 1].v == g_got[i].v && g_got[i - 1].s < g_got[i].s));
  live = (size_t)(n - stale);
  TU_U64(live, 300);
  sync_env_close(e);
  rm_db();
}

/* Rows [from, to) of a 4-column test table written (or deleted) in one
 * transaction of r. */
static void lg_rows(mu_rep *r, unsigned from, unsigned to, int64_t val,
                    int del) {
  sync_txn *x;
  unsigned i;
  TU_OK(sync_txn_begin(r->env, 0, &x));
  for (i = from; i < to; i++) {
    char k[16];
    sync_value v[MU_NCOLS];
    int kn = snprintf(k, sizeof k, "r%05u", i);
    v[0] = sync_int(val);
    v[1] = sync_real(0.5);
    v[2] = sync_null();
    v[3] = sync_null();
    if (del) TU_OK(sync_delete(x, 0, k, (size_t)kn));
    else TU_OK(sync_put(x, 0, k, (size_t)kn, v, MU_NCOLS));
  }
  TU_OK(sync_txn_commit(x));
}

/* A transaction that removes log entries (tombstone collection) and
 * tips the log over the compaction threshold compacts within the budget
 * of the entries it touched, like any other: 8 per entry + 256.  (The
 * budget was computed from the entries added, negative here, and became
 * the whole log.) */
static void test_gc_commit_compacts_within_its_budget(void **state) {
  uint64_t now = 1700000000000ull, n, stale, n2, stale2, got = 0;
  uint8_t sa[16], sb[16];
  mu_rep a, b;
  sync_txn *x;
  sync_delta *d;
  (void)state;
  mu_site(sa, 0xa1);
  mu_site(sb, 0xb2);
  mu_open(&a, "lg-gc-a.db", sa, &now, 0);
  mu_open(&b, "lg-gc-b.db", sb, &now, 0);
  lg_rows(&a, 0, 3000, 1, 0);
  lg_rows(&a, 0, 400, 0, 1);       /* 400 tombstones */
  lg_rows(&a, 400, 2800, 2, 0);    /* 2,400 updates */
  mu_pull(&b, &a, 0, 1, NULL);
  d = mu_cut(&b, &a, 1, 1); /* b's holding acknowledged */
  sync_delta_free(d);
  lg_logst(a.env, &n, &stale);
  /* Below the threshold: stale entries fewer than live ones. */
  assert_true(stale >= 1024 && stale * 2 < n);
  TU_OK(sync_txn_begin(a.env, 0, &x));
  TU_OK(sync_gc(x, &got));
  TU_OK(sync_txn_commit(x));
  TU_U64(got, SYNC_GC_BATCH);
  lg_logst(a.env, &n2, &stale2);
  printf("log: %llu entries, %llu stale; after collecting %llu: %llu, "
         "%llu stale\n", (unsigned long long)n, (unsigned long long)stale,
         (unsigned long long)got, (unsigned long long)n2,
         (unsigned long long)stale2);
  /* The collection tipped it over; compaction ran, but within budget. */
  assert_true(stale * 2 >= n - got);
  assert_true(stale2 < stale);
  assert_true(stale - stale2 <= 8 * got + 256);
  TU_U64(lg_stale(a.env), stale2);
  mu_close(&a);
  mu_close(&b);
}

/* ---------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------- */

/* An aborted transaction, a group member aborted, one committed: only
 * committed entries stay, and a transaction reads its own at once. */
static void test_aborted_and_group_transactions(void **state) {
  sync_env *e;
  sync_txn *x;
  sync_changes *ch;
  sync_change c;
  size_t n = 0, keep, i, m;
  (void)state;
  rm_db();
  e = lg_open();
  TU_OK(sync_txn_begin(e, 0, &x));
  for (i = 0; i < 300; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "first-%zu", i);
    lg_put(x, 0, k, (size_t)kn, 1, &n);
  }
  TU_OK(sync_txn_commit(x));
  keep = n;
  TU_OK(sync_txn_begin(e, 0, &x));
  for (i = 0; i < 300; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "aborted-%zu", i);
    lg_put(x, 1, k, (size_t)kn, 1, &n);
  }
  /* Its own entries are there at once. */
  TU_OK(sync_changes_open(x, 1, &ch));
  for (m = 0; sync_changes_next(ch, &c) == 0; m++) TU_U64(c.version, 2);
  sync_changes_close(ch);
  TU_U64(m, 300);
  sync_txn_abort(x);
  n = keep;
  TU_OK(sync_txn_begin(e, SYNC_TXN_GROUP, &x));
  for (i = 0; i < 250; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "group-aborted-%zu", i);
    lg_put(x, 2, k, (size_t)kn, 1, &n);
  }
  sync_txn_abort(x);
  n = keep;
  TU_OK(sync_txn_begin(e, SYNC_TXN_GROUP, &x));
  for (i = 0; i < 250; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "group-%zu", i);
    lg_put(x, 2, k, (size_t)kn, 1, &n);
  }
  TU_OK(sync_txn_commit(x));
  TU_OK(sync_txn_begin(e, 0, &x));
  lg_put(x, 0, "last", 4, 1, &n);
  TU_OK(sync_txn_commit(x));
  TU_U64(lg_read(e, g_got), n);
  lg_same(g_want, g_got, n);
  TU_U64(g_got[n - 1].v, 3);
  sync_env_close(e);
  rm_db();
}

/* ---------------------------------------------------------------------
 * Damage
 * ------------------------------------------------------------------- */

/* Replace the log's records with the one record (key, val). */
static void lg_set_record(const unsigned char *key, size_t kn,
                          const unsigned char *val, size_t vn) {
  MDB_env *me;
  MDB_txn *t;
  MDB_dbi d;
  MDB_val k = {kn, (void *)key}, v = {vn, (void *)val};
  assert_int_equal(mdb_env_create(&me), 0);
  assert_int_equal(mdb_env_set_maxdbs(me, 64), 0);
  assert_int_equal(mdb_env_open(me, DB, MDB_NOSUBDIR, 0644), 0);
  assert_int_equal(mdb_txn_begin(me, NULL, 0, &t), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.logrec", 0, &d), 0);
  assert_int_equal(mdb_drop(t, d, 0), 0);
  assert_int_equal(mdb_put(t, d, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(t), 0);
  mdb_env_close(me);
}

/* Listing changes (and a write) over a damaged record fail with
 * SYNC_ECORRUPT. */
static void lg_expect_corrupt(int write) {
  sync_env *e = lg_open();
  sync_txn *x;
  sync_changes *ch;
  sync_change c;
  int rc;
  size_t n = 0;
  TU_OK(sync_txn_begin(e, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_changes_open(x, 0, &ch));
  while ((rc = sync_changes_next(ch, &c)) == 0)
    if (++n > 10) break;
  sync_changes_close(ch);
  sync_txn_abort(x);
  TU_RC(rc, SYNC_ECORRUPT);
  if (write) {
    sync_value v = sync_int(1);
    TU_OK(sync_txn_begin(e, 0, &x));
    TU_RC(sync_put(x, 0, "new", 3, &v, 1), SYNC_ECORRUPT);
    sync_txn_abort(x);
  }
  sync_env_close(e);
}

static void test_corrupt_records(void **state) {
  /* (1, 0) "aa", (1, 1) "ab", (1, 2) "b" of table 0. */
  static const unsigned char good[] = {0x02, 0x00, 0x00, 0x02, 'a',  'a',  0x00,
                                       0x01, 0x01, 'b',  0x00, 0x00, 0x01, 'b'};
  static const unsigned char k1[12] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  unsigned char bad[SX_LOGREC_MAX + 8];
  sync_env *e;
  sync_txn *x;
  size_t n = 0;
  (void)state;
  rm_db();
  e = lg_open();
  TU_OK(sync_txn_begin(e, 0, &x));
  lg_put(x, 0, "aa", 2, 1, &n);
  lg_put(x, 0, "ab", 2, 1, &n);
  lg_put(x, 0, "b", 1, 1, &n);
  TU_OK(sync_txn_commit(x));
  sync_env_close(e);
  /* As written, it reads. */
  lg_set_record(k1, 12, good, sizeof good);
  e = lg_open();
  TU_U64(lg_read(e, g_got), 3);
  sync_env_close(e);
  /* Cut short inside an entry. */
  lg_set_record(k1, 12, good, sizeof good - 1);
  lg_expect_corrupt(1);
  /* A first entry that names no table. */
  memcpy(bad, good, sizeof good);
  bad[0] = 0x00;
  lg_set_record(k1, 12, bad, sizeof good);
  lg_expect_corrupt(1);
  /* More shared than the previous key has. */
  memcpy(bad, good, sizeof good);
  bad[7] = 0x03;
  lg_set_record(k1, 12, bad, sizeof good);
  lg_expect_corrupt(1);
  /* A table that does not exist. */
  memcpy(bad, good, sizeof good);
  bad[1] = 0x07;
  lg_set_record(k1, 12, bad, sizeof good);
  lg_expect_corrupt(1);
  /* An empty key. */
  memcpy(bad, good, sizeof good);
  bad[12] = 0x00;
  lg_set_record(k1, 12, bad, sizeof good - 1);
  lg_expect_corrupt(1);
  /* A seq past 2^32 - 1. */
  {
    static const unsigned char k2[12] = {0, 0, 0,    0,    0,    0,
                                         0, 1, 0xff, 0xff, 0xff, 0xff};
    lg_set_record(k2, 12, good, sizeof good);
    lg_expect_corrupt(0);
  }
  /* A record longer than any written. */
  memset(bad, 0, sizeof bad);
  memcpy(bad, good, sizeof good);
  lg_set_record(k1, 12, bad, SX_LOGREC_MAX + 1);
  lg_expect_corrupt(1);
  /* A key of the wrong size. */
  lg_set_record(k1, 11, good, sizeof good);
  lg_expect_corrupt(1);
  /* Two records that overlap: the second starts inside the first. */
  {
    MDB_env *me;
    MDB_txn *t;
    MDB_dbi d;
    static const unsigned char k3[12] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1};
    static const unsigned char one[] = {0x02, 0x00, 0x00, 0x01, 'c'};
    MDB_val k = {12, (void *)k3}, v = {sizeof one, (void *)one};
    lg_set_record(k1, 12, good, sizeof good);
    assert_int_equal(mdb_env_create(&me), 0);
    assert_int_equal(mdb_env_set_maxdbs(me, 64), 0);
    assert_int_equal(mdb_env_open(me, DB, MDB_NOSUBDIR, 0644), 0);
    assert_int_equal(mdb_txn_begin(me, NULL, 0, &t), 0);
    assert_int_equal(mdb_dbi_open(t, "sx.logrec", 0, &d), 0);
    assert_int_equal(mdb_put(t, d, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(me);
    lg_expect_corrupt(0);
  }
  rm_db();
}

/* ---------------------------------------------------------------------
 * Upgrade from format 8
 * ------------------------------------------------------------------- */

/* Rewrite the closed file at path as format 8 has it: every entry of
 * the log (ents, n) one item of sx.log, no sx.logrec.  With bad, one
 * more entry naming a table that does not exist. */
static void lg_make_format8(const char *path, const lg_ent *ents, size_t n,
                            int bad) {
  MDB_env *me;
  MDB_txn *t;
  MDB_dbi d, m;
  size_t i;
  unsigned char fmt[12] = {'s', 'y', 'n', 'c', '-', 'd', 'b', 0, 8, 0, 0, 0};
  MDB_val fk = {6, (void *)"format"}, fv = {12, fmt};
  assert_int_equal(mdb_env_create(&me), 0);
  assert_int_equal(mdb_env_set_maxdbs(me, 64), 0);
  assert_int_equal(mdb_env_open(me, path, MDB_NOSUBDIR, 0644), 0);
  assert_int_equal(mdb_txn_begin(me, NULL, 0, &t), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.meta", 0, &m), 0);
  if (mdb_dbi_open(t, "sx.logrec", 0, &d) == 0)
    assert_int_equal(mdb_drop(t, d, 1), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.log", MDB_CREATE, &d), 0);
  assert_int_equal(mdb_drop(t, d, 0), 0);
  for (i = 0; i < n + (bad != 0); i++) {
    unsigned char k[12], v[1 + SYNC_MAX_KEY];
    const lg_ent *en = &ents[i < n ? i : n - 1];
    MDB_val mk = {12, k}, mv;
    uint64_t ver = en->v;
    uint32_t seq = i < n ? en->s : en->s + 1;
    int b;
    for (b = 0; b < 8; b++) k[b] = (unsigned char)(ver >> (56 - 8 * b));
    for (b = 0; b < 4; b++) k[8 + b] = (unsigned char)(seq >> (24 - 8 * b));
    assert_true(en->tid < 128);
    v[0] = (unsigned char)(i < n ? en->tid : 99);
    memcpy(v + 1, en->key, en->klen);
    mv.mv_size = 1 + en->klen;
    mv.mv_data = v;
    assert_int_equal(mdb_put(t, d, &mk, &mv, MDB_APPEND), 0);
  }
  assert_int_equal(mdb_put(t, m, &fk, &fv, 0), 0);
  assert_int_equal(mdb_txn_commit(t), 0);
  mdb_env_close(me);
}

/* Entries of the closed file's sx.log, or -1 without one. */
static long lg_old_items(const char *path) {
  MDB_env *me;
  MDB_txn *t;
  MDB_dbi d;
  MDB_stat st;
  long n = -1;
  assert_int_equal(mdb_env_create(&me), 0);
  assert_int_equal(mdb_env_set_maxdbs(me, 64), 0);
  assert_int_equal(mdb_env_open(me, path, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
  assert_int_equal(mdb_txn_begin(me, NULL, MDB_RDONLY, &t), 0);
  if (mdb_dbi_open(t, "sx.log", 0, &d) == 0) {
    assert_int_equal(mdb_stat(t, d, &st), 0);
    n = (long)st.ms_entries;
  }
  mdb_txn_abort(t);
  mdb_env_close(me);
  return n;
}

/* (version, key) of every change since `since`, in order. */
static size_t lg_changes(sync_env *env, uint64_t since, lg_ent *out) {
  sync_txn *x;
  sync_changes *ch;
  sync_change c;
  size_t n = 0;
  int rc;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_changes_open(x, since, &ch));
  while ((rc = sync_changes_next(ch, &c)) == 0) {
    assert_true(n < NENT);
    out[n].v = c.version;
    out[n].s = 0;
    out[n].tid = c.table;
    out[n].klen = c.key.len;
    memcpy(out[n].key, c.key.data, c.key.len);
    n++;
  }
  TU_RC(rc, SYNC_NOTFOUND);
  sync_changes_close(ch);
  sync_txn_abort(x);
  return n;
}

static uint64_t g_now = 1700000000000ull;

static void test_format8_file_is_upgraded(void **state) {
  static const uint64_t since[] = {0, 1, 3, 5, 7};
  static lg_ent before[5][256];
  size_t nb[5], i, j, n, pending;
  mu_rep a, b;
  uint8_t ida[16], idb[16];
  uint64_t da, db0;
  sync_peer_info pi;
  size_t np;
  mu_pull_stats st;
  sync_env *e;
  (void)state;
  mu_site(ida, 0xa1);
  mu_site(idb, 0xb2);
  mu_open(&a, "lg_a.db", ida, &g_now, 0);
  mu_open(&b, "lg_b.db", idb, &g_now, 0);
  /* Version 1: 100 rows, which b takes whole. */
  {
    sync_txn *x;
    TU_OK(sync_txn_begin(a.env, 0, &x));
    for (i = 0; i < 100; i++) {
      char k[16];
      sync_value v[MU_NCOLS];
      snprintf(k, sizeof k, "k%03zu", i);
      v[0] = sync_int((int64_t)i);
      v[1] = sync_real(0.5);
      v[2] = sync_text(k, strlen(k));
      v[3] = sync_null();
      TU_OK(sync_put(x, 0, k, strlen(k), v, MU_NCOLS));
    }
    TU_OK(sync_txn_commit(x));
  }
  mu_pull(&b, &a, 0, 1, NULL);
  /* Versions 2..7: updates, inserts and deletes. */
  for (j = 2; j <= 7; j++) {
    g_now += 10;
    for (i = 0; i < 40; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%03zu", (j * 37 + i * 11) % 160);
      sync_txn *x;
      sync_value v[MU_NCOLS];
      v[0] = sync_int((int64_t)(j * 1000 + i));
      v[1] = v[2] = v[3] = sync_null();
      TU_OK(sync_txn_begin(a.env, 0, &x));
      if (i % 9 == 4)
        (void)sync_delete(x, 0, k, strlen(k));
      else
        TU_OK(sync_put(x, 0, k, strlen(k), v, MU_NCOLS));
      TU_OK(sync_txn_commit(x));
    }
  }
  /* b takes one chunk of 25 rows: its cursor stands inside a's log. */
  {
    sync_delta *d = mu_cut(&b, &a, 25, 1);
    assert_false(sync_delta_last(d));
    mu_apply(&b, d, SYNC_APPLY_MERGE, NULL);
    sync_delta_free(d);
  }
  {
    sync_txn *x;
    TU_OK(sync_txn_begin(b.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_peers_get(x, &pi, 1, &np));
    sync_txn_abort(x);
    TU_U64(np, 1);
    assert_true(pi.seq != UINT32_MAX);
  }
  /* What a's log holds after b's cursor: the rows b is owed. */
  {
    sync_txn *x;
    sx_logit it;
    TU_OK(sync_txn_begin(a.env, SYNC_TXN_RDONLY, &x));
    TU_OK(sx_scratch(x));
    TU_OK(sx_logit_open(x, &it));
    TU_OK(sx_logit_seek(&it, pi.version, pi.seq + 1));
    for (pending = 0; sx_logit_next(&it) == 0;)
      pending += sx_log_current(x, &x->old, &it.e) == 0;
    TU_OK(sx_logit_close(&it));
    sync_txn_abort(x);
    assert_true(pending > 0);
  }
  for (j = 0; j < 5; j++) nb[j] = lg_changes(a.env, since[j], before[j]);
  da = mu_digest(&a);
  n = lg_read(a.env, g_want);
  assert_true(n < NENT);
  sync_env_close(a.env); /* the file stays */
  a.env = NULL;
  /* Format 8 with a damaged entry: the upgrade fails, the file stays. */
  lg_make_format8("lg_a.db", g_want, n, 1);
  TU_OK(sync_env_create(NULL, &e));
  TU_OK(sync_env_set_schema(e, mu_tables, 1));
  TU_RC(sync_env_open(e, "lg_a.db", 0), SYNC_ECORRUPT);
  assert_non_null(strstr(sync_env_errmsg(e), "change log"));
  sync_env_close(e);
  assert_true(lg_old_items("lg_a.db") == (long)n + 1);
  /* Format 8 as its code writes it: read-only says to open it writable
   * once; a writable open moves the log into records. */
  lg_make_format8("lg_a.db", g_want, n, 0);
  assert_true(lg_old_items("lg_a.db") == (long)n);
  TU_OK(sync_env_create(NULL, &e));
  TU_OK(sync_env_set_schema(e, mu_tables, 1));
  TU_RC(sync_env_open(e, "lg_a.db", SYNC_OPEN_RDONLY), SYNC_EVERSION);
  assert_non_null(strstr(sync_env_errmsg(e), "open it writable once"));
  sync_env_close(e);
  mu_reopen(&a);
  assert_true(lg_old_items("lg_a.db") == -1);
  TU_U64(lg_read(a.env, g_got), n);
  lg_same(g_want, g_got, n);
  TU_U64(mu_digest(&a), da);
  for (j = 0; j < 5; j++) {
    TU_U64(lg_changes(a.env, since[j], g_got), nb[j]);
    for (i = 0; i < nb[j]; i++) {
      TU_U64(g_got[i].v, before[j][i].v);
      assert_int_equal(g_got[i].klen, before[j][i].klen);
      assert_memory_equal(g_got[i].key, before[j][i].key, g_got[i].klen);
    }
  }
  /* b resumes at its cursor: the rows it was owed, once each, and the
   * two replicas agree. */
  db0 = mu_digest(&b);
  assert_true(db0 != da);
  mu_pull(&b, &a, 25, 1, &st);
  TU_U64(st.rows, pending);
  TU_U64(mu_digest(&b), da);
  /* The upgraded file writes on. */
  mu_put(&a, "k001", -5, 0.0, NULL);
  mu_pull(&b, &a, 25, 1, &st);
  TU_U64(st.rows, 1);
  mu_close(&a);
  mu_close(&b);
  tu_remove_db("lg_a.db");
  tu_remove_db("lg_b.db");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_record_bytes),
      cmocka_unit_test(test_appends_across_records),
      cmocka_unit_test(test_delete_entries_a_reader_stands_on),
      cmocka_unit_test(test_log_stays_bounded_under_repeated_updates),
      cmocka_unit_test(test_compaction_keeps_live_entries),
      cmocka_unit_test(test_gc_commit_compacts_within_its_budget),
      cmocka_unit_test(test_aborted_and_group_transactions),
      cmocka_unit_test(test_corrupt_records),
      cmocka_unit_test(test_format8_file_is_upgraded),
  };
  return cmocka_run_group_tests_name("internal_log", tests, NULL, NULL);
}
