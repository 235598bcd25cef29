/*
 * test_model.c - property test: random sequences of put, update, delete,
 * re-insert, batch calls and aborts on ~200 keys of a table with every
 * column type, in transactions of random size, checked after every
 * commit and abort against an in-memory model: get and contains of every
 * key, count, a full cursor pass, the local version and the change log
 * (each changed row once, in version order, with its causal length,
 * version and values).
 *
 * SYNC_TEST_SEED=<n> replays another seed; SYNC_TEST_SEQS=<n> runs n
 * sequences.  A failure prints the seed, sequence, step and operation.
 */
#include "testutil.h"

#include <math.h>

#define DB "t_model.db"

#define NKEYS 200
#define NC 4
#define MAXLEN 48
#define DEFAULT_SEED UINT64_C(0x5EED00C0FFEE)
#define DEFAULT_SEQS 400
#define OPS_PER_SEQ 200

static const sync_column_def cols[] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
};
static const int col_type[NC] = {SYNC_INTEGER, SYNC_REAL, SYNC_TEXT, SYNC_BLOB};
static const sync_table_def schema[] = {
    {"model", SYNC_TEXT, cols, NC},
};

/* ------------------------------------------------------------------
 * The model
 * ------------------------------------------------------------------ */
typedef struct mval {
  int type;
  int64_t i;
  double r;
  size_t len;
  unsigned char d[MAXLEN];
} mval;

typedef struct mrow {
  int live;
  int dirty;   /* changed in the open transaction */
  uint64_t cl; /* causal length: 0 never written, odd live, even deleted */
  uint64_t ver;
  mval v[NC];
} mrow;

typedef struct model {
  mrow rows[NKEYS];
  uint64_t version;
} model;

/* Failure context. */
static struct {
  uint64_t seed;
  int seq, step;
  char op[160];
} ctx;

static void mfail(int line, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  print_error("model test failed at line %d: SYNC_TEST_SEED=%llu "
              "sequence=%d step=%d op=%s\n  %s\n",
              line, (unsigned long long)ctx.seed, ctx.seq, ctx.step, ctx.op,
              msg);
  fail();
}

#define MRC(expr, want)                                                        \
  do {                                                                         \
    int m_rc_ = (expr), m_want_ = (want);                                      \
    if (m_rc_ != m_want_)                                                      \
      mfail(__LINE__, "%s returned %d (%s), expected %d (%s)", #expr, m_rc_,   \
            sync_strerror(m_rc_), m_want_, sync_strerror(m_want_));            \
  } while (0)

#define MCHECK(cond, ...)                                                      \
  do {                                                                         \
    if (!(cond)) mfail(__LINE__, __VA_ARGS__);                                 \
  } while (0)

static void key_of(char *k, int i) { sprintf(k, "k%03d", i); }

static sync_value to_value(const mval *m) {
  switch (m->type) {
  case SYNC_INTEGER:
    return sync_int(m->i);
  case SYNC_REAL:
    return sync_real(m->r);
  case SYNC_TEXT:
    return sync_text((const char *)m->d, m->len);
  case SYNC_BLOB:
    return sync_blob(m->d, m->len);
  default:
    return sync_null();
  }
}

static int mval_eq(const mval *a, const mval *b) {
  sync_value x = to_value(a), y = to_value(b);
  return tu_value_equal(&x, &y);
}

static void random_value(tu_rng *r, int col, mval *m) {
  static const int64_t ints[] = {0, 1, -1, INT64_MIN, INT64_MAX, 255, 256};
  double specials[6];
  uint64_t bits = UINT64_C(0x7ff8000000000000);
  memset(m, 0, sizeof *m);
  if (tu_below(r, 10) == 0) {
    m->type = SYNC_NULL;
    return;
  }
  m->type = col_type[col];
  switch (m->type) {
  case SYNC_INTEGER:
    if (tu_below(r, 4) == 0)
      m->i = ints[tu_below(r, sizeof ints / sizeof ints[0])];
    else
      m->i = (int64_t)tu_below(r, 2000) - 1000;
    break;
  case SYNC_REAL:
    specials[0] = 0.0;
    specials[1] = -0.0;
    specials[2] = HUGE_VAL;
    specials[3] = -HUGE_VAL;
    memcpy(&specials[4], &bits, sizeof bits);
    specials[5] = 1e-310;
    if (tu_below(r, 5) == 0)
      m->r = specials[tu_below(r, 6)];
    else
      m->r = (double)(int64_t)tu_below(r, 100000) / 64.0 - 700.0;
    break;
  case SYNC_TEXT:
    m->len = (size_t)tu_below(r, 41);
    {
      size_t i;
      for (i = 0; i < m->len; i++)
        m->d[i] = (unsigned char)('a' + tu_below(r, 4));
    }
    break;
  default:
    m->len = (size_t)tu_below(r, MAXLEN + 1);
    tu_fill(r, m->d, m->len);
    if (m->len > 2) m->d[1] = 0;
    break;
  }
}

/* New values for a row: each column either kept (when live) or new, so
 * that some writes change nothing. */
static void random_row(tu_rng *r, const mrow *old, mval *out) {
  int j;
  int keep_all = old->live && tu_below(r, 8) == 0;
  for (j = 0; j < NC; j++) {
    if (old->live && (keep_all || tu_below(r, 3) == 0))
      out[j] = old->v[j];
    else
      random_value(r, j, &out[j]);
  }
}

/* Apply a put of vals to the working model. */
static void model_put(mrow *row, const mval *vals) {
  int j, changed = 0;
  if (!row->live) {
    row->live = 1;
    row->cl++;
    changed = 1;
  } else {
    for (j = 0; j < NC; j++)
      if (!mval_eq(&row->v[j], &vals[j])) changed = 1;
  }
  for (j = 0; j < NC; j++) row->v[j] = vals[j];
  if (changed) row->dirty = 1;
}

static void model_delete(mrow *row) {
  row->live = 0;
  row->cl++;
  row->dirty = 1;
  memset(row->v, 0, sizeof row->v);
}

/* ------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------ */
static void check_row_values(const char *what, int k, const mrow *row,
                             const sync_value *got) {
  int j;
  for (j = 0; j < NC; j++) {
    sync_value want = to_value(&row->v[j]);
    MCHECK(tu_value_equal(&got[j], &want),
           "%s of key %d column %d: type %d, expected type %d", what, k, j,
           got[j].type, want.type);
  }
}

static void check_get(sync_txn *txn, const model *m, int k) {
  char key[16];
  sync_value v[NC];
  const mrow *row = &m->rows[k];
  int rc;
  key_of(key, k);
  rc = sync_get(txn, 0, key, strlen(key), v, NC);
  if (row->live) {
    MRC(rc, 0);
    check_row_values("get", k, row, v);
  } else {
    MRC(rc, SYNC_NOTFOUND);
  }
  MRC(sync_contains(txn, 0, key, strlen(key)), row->live);
}

static void check_all(sync_env *env, const model *m, tu_rng *r) {
  sync_txn *txn;
  sync_cursor *cur;
  sync_changes *ch;
  sync_change c;
  sync_key key;
  sync_value v[NC];
  uint64_t n = 0, live = 0, touched = 0, since, later = 0, prev_ver = 0;
  int k, rc, next_live, seen[NKEYS];

  MRC(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn), 0);
  MCHECK(sync_txn_version(txn) == m->version, "version %llu, model %llu",
         (unsigned long long)sync_txn_version(txn),
         (unsigned long long)m->version);
  for (k = 0; k < NKEYS; k++) {
    check_get(txn, m, k);
    if (m->rows[k].live) live++;
    if (m->rows[k].cl) touched++;
  }
  MRC(sync_count(txn, 0, &n), 0);
  MCHECK(n == live, "count %llu, model %llu", (unsigned long long)n,
         (unsigned long long)live);

  /* Full cursor pass: live keys in key order, with their values. */
  MRC(sync_cursor_open(txn, 0, &cur), 0);
  next_live = 0;
  for (;;) {
    char want[16];
    while (next_live < NKEYS && !m->rows[next_live].live) next_live++;
    rc = sync_cursor_next(cur, &key, v, NC);
    if (next_live == NKEYS) {
      MRC(rc, SYNC_NOTFOUND);
      break;
    }
    MRC(rc, 0);
    key_of(want, next_live);
    MCHECK(key.len == strlen(want) && memcmp(key.data, want, key.len) == 0,
           "cursor gave \"%.*s\", expected \"%s\"", (int)key.len,
           (const char *)key.data, want);
    check_row_values("cursor", next_live, &m->rows[next_live], v);
    next_live++;
  }
  /* A random range [lo, hi), either bound open. */
  {
    int lo = (int)tu_below(r, NKEYS + 1), hi = (int)tu_below(r, NKEYS + 1);
    int lo_open = tu_below(r, 4) == 0, hi_open = tu_below(r, 4) == 0;
    char lok[16], hik[16];
    key_of(lok, lo);
    key_of(hik, hi);
    if (lo_open) lo = 0;
    if (hi_open) hi = NKEYS;
    MRC(sync_cursor_range(cur, lo_open ? NULL : lok, lo_open ? 0 : strlen(lok),
                          hi_open ? NULL : hik, hi_open ? 0 : strlen(hik)),
        0);
    for (next_live = lo;; next_live++) {
      char want[16];
      while (next_live < hi && !m->rows[next_live].live) next_live++;
      rc = sync_cursor_next(cur, &key, v, NC);
      if (next_live >= hi) {
        MCHECK(rc == SYNC_NOTFOUND, "range [%d, %d): extra row, rc %d", lo, hi,
               rc);
        break;
      }
      MRC(rc, 0);
      key_of(want, next_live);
      MCHECK(key.len == strlen(want) && memcmp(key.data, want, key.len) == 0,
             "range [%d, %d) gave \"%.*s\", expected \"%s\"", lo, hi,
             (int)key.len, (const char *)key.data, want);
    }
  }
  sync_cursor_close(cur);

  /* Change log: each written row once, in version order. */
  memset(seen, 0, sizeof seen);
  MRC(sync_changes_open(txn, 0, &ch), 0);
  n = 0;
  while ((rc = sync_changes_next(ch, &c)) == 0) {
    const mrow *row;
    char buf[8];
    int j;
    MCHECK(c.table == 0, "change in table %u", c.table);
    MCHECK(c.key.len == 4 && ((const char *)c.key.data)[0] == 'k',
           "change with key of %zu bytes", c.key.len);
    memcpy(buf, (const char *)c.key.data + 1, 3);
    buf[3] = 0;
    k = atoi(buf);
    MCHECK(k >= 0 && k < NKEYS, "change for unknown key");
    row = &m->rows[k];
    MCHECK(!seen[k], "key %d listed twice in the change log", k);
    seen[k] = 1;
    MCHECK(c.version >= prev_ver, "versions out of order: %llu after %llu",
           (unsigned long long)c.version, (unsigned long long)prev_ver);
    prev_ver = c.version;
    MCHECK(c.version == row->ver, "key %d: version %llu, model %llu", k,
           (unsigned long long)c.version, (unsigned long long)row->ver);
    MCHECK(c.causal_length == row->cl, "key %d: causal length %llu, model %llu",
           k, (unsigned long long)c.causal_length, (unsigned long long)row->cl);
    MCHECK(c.ncolumns == (row->live ? NC : 0u), "key %d: %u columns", k,
           c.ncolumns);
    for (j = 0; j < NC; j++) {
      rc = sync_changes_column(ch, (unsigned)j, &v[j], NULL, NULL);
      MRC(rc, row->live ? 0 : SYNC_NOTFOUND);
    }
    if (row->live) check_row_values("change log", k, row, v);
    n++;
  }
  MRC(rc, SYNC_NOTFOUND);
  sync_changes_close(ch);
  MCHECK(n == touched, "change log lists %llu rows, model %llu",
         (unsigned long long)n, (unsigned long long)touched);

  /* Since a random version: exactly the rows changed after it. */
  since = tu_below(r, m->version + 1);
  for (k = 0; k < NKEYS; k++)
    if (m->rows[k].cl && m->rows[k].ver > since) later++;
  MRC(sync_changes_open(txn, since, &ch), 0);
  n = 0;
  while ((rc = sync_changes_next(ch, &c)) == 0) {
    MCHECK(c.version > since, "since %llu listed version %llu",
           (unsigned long long)since, (unsigned long long)c.version);
    n++;
  }
  MRC(rc, SYNC_NOTFOUND);
  sync_changes_close(ch);
  MCHECK(n == later, "since %llu: %llu rows, model %llu",
         (unsigned long long)since, (unsigned long long)n,
         (unsigned long long)later);
  sync_txn_abort(txn);
}

/* ------------------------------------------------------------------
 * One sequence
 * ------------------------------------------------------------------ */
static model comm, work;

static int random_key(tu_rng *r) { return (int)tu_below(r, NKEYS); }

/* A key that is a tombstone, or -1. */
static int random_tombstone(tu_rng *r) {
  int start = random_key(r), i;
  for (i = 0; i < NKEYS; i++) {
    int k = (start + i) % NKEYS;
    if (!work.rows[k].live && work.rows[k].cl) return k;
  }
  return -1;
}

static void do_put(sync_txn *txn, tu_rng *r, int k) {
  mval vals[NC];
  sync_value v[NC];
  char key[16];
  int j;
  random_row(r, &work.rows[k], vals);
  for (j = 0; j < NC; j++) v[j] = to_value(&vals[j]);
  key_of(key, k);
  MRC(sync_put(txn, 0, key, strlen(key), v, NC), 0);
  model_put(&work.rows[k], vals);
}

static void do_op(sync_txn *txn, tu_rng *r) {
  uint64_t p = tu_below(r, 100);
  char key[16];
  int k = random_key(r);
  key_of(key, k);
  if (p < 35) {
    snprintf(ctx.op, sizeof ctx.op, "put %s", key);
    do_put(txn, r, k);
  } else if (p < 55) {
    unsigned cset[NC], n = 1 + (unsigned)tu_below(r, NC), i;
    sync_value v[NC];
    mval vals[NC];
    mrow *row = &work.rows[k];
    int rc, changed = 0;
    /* n distinct columns in random order. */
    for (i = 0; i < NC; i++) cset[i] = i;
    for (i = 0; i < NC; i++) {
      unsigned jj = i + (unsigned)tu_below(r, NC - i), t = cset[i];
      cset[i] = cset[jj];
      cset[jj] = t;
    }
    for (i = 0; i < n; i++) {
      if (row->live && tu_below(r, 4) == 0)
        vals[i] = row->v[cset[i]];
      else
        random_value(r, (int)cset[i], &vals[i]);
      v[i] = to_value(&vals[i]);
    }
    snprintf(ctx.op, sizeof ctx.op, "update %s (%u columns)", key, n);
    rc = sync_update(txn, 0, key, strlen(key), cset, v, n);
    if (!row->live) {
      MRC(rc, SYNC_NOTFOUND);
      return;
    }
    MRC(rc, 0);
    for (i = 0; i < n; i++) {
      if (!mval_eq(&row->v[cset[i]], &vals[i])) changed = 1;
      row->v[cset[i]] = vals[i];
    }
    if (changed) row->dirty = 1;
  } else if (p < 70) {
    int rc;
    snprintf(ctx.op, sizeof ctx.op, "delete %s", key);
    rc = sync_delete(txn, 0, key, strlen(key));
    if (!work.rows[k].live) {
      MRC(rc, SYNC_NOTFOUND);
      return;
    }
    MRC(rc, 0);
    model_delete(&work.rows[k]);
  } else if (p < 80) {
    int t = random_tombstone(r);
    if (t < 0) t = k;
    key_of(key, t);
    snprintf(ctx.op, sizeof ctx.op, "re-insert %s", key);
    do_put(txn, r, t);
  } else if (p < 86) {
    /* put_many of up to 3 distinct keys */
    sync_key keys[3];
    sync_value v[3 * NC];
    mval vals[3][NC];
    char kb[3][16];
    size_t n = 1 + (size_t)tu_below(r, 3), i, done = 99;
    int ks[3], j;
    for (i = 0; i < n; i++) {
      ks[i] = (k + (int)i * 67) % NKEYS;
      key_of(kb[i], ks[i]);
      keys[i].data = kb[i];
      keys[i].len = strlen(kb[i]);
      random_row(r, &work.rows[ks[i]], vals[i]);
      for (j = 0; j < NC; j++) v[i * NC + (size_t)j] = to_value(&vals[i][j]);
    }
    snprintf(ctx.op, sizeof ctx.op, "put_many %zu from %s", n, key);
    MRC(sync_put_many(txn, 0, keys, v, n, &done), 0);
    MCHECK(done == n, "put_many done %zu of %zu", done, n);
    for (i = 0; i < n; i++) model_put(&work.rows[ks[i]], vals[i]);
  } else if (p < 92) {
    sync_key keys[3];
    char kb[3][16];
    size_t n = 1 + (size_t)tu_below(r, 3), i, deleted = 99, want = 0;
    int ks[3];
    for (i = 0; i < n; i++) {
      ks[i] = (k + (int)i * 31) % NKEYS;
      key_of(kb[i], ks[i]);
      keys[i].data = kb[i];
      keys[i].len = strlen(kb[i]);
    }
    snprintf(ctx.op, sizeof ctx.op, "delete_many %zu from %s", n, key);
    MRC(sync_delete_many(txn, 0, keys, n, &deleted), 0);
    for (i = 0; i < n; i++)
      if (work.rows[ks[i]].live) {
        model_delete(&work.rows[ks[i]]);
        want++;
      }
    MCHECK(deleted == want, "delete_many deleted %zu, model %zu", deleted,
           want);
  } else {
    snprintf(ctx.op, sizeof ctx.op, "get %s (in the write txn)", key);
    check_get(txn, &work, k);
  }
}

static void run_sequence(uint64_t seed, int nops) {
  tu_rng r;
  sync_env *env;
  sync_txn *txn = NULL;
  int ops = 0, txn_ops = 0, txn_size = 0;
  r.s = seed;
  memset(&comm, 0, sizeof comm);
  tu_remove_db(DB);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_durability(env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_schema(env, schema, 1));
  TU_OK(sync_env_open(env, DB, 0));
  for (ops = 0; ops < nops; ops++) {
    ctx.step = ops;
    if (!txn) {
      snprintf(ctx.op, sizeof ctx.op, "begin");
      MRC(sync_txn_begin(env, 0, &txn), 0);
      work = comm;
      txn_ops = 0;
      txn_size = 1 + (int)tu_below(&r, tu_below(&r, 4) == 0 ? 40 : 12);
    }
    do_op(txn, &r);
    if (++txn_ops >= txn_size || ops == nops - 1) {
      if (tu_below(&r, 100) < 15) {
        snprintf(ctx.op, sizeof ctx.op, "abort after %d ops", txn_ops);
        sync_txn_abort(txn);
      } else {
        int k, dirty = 0;
        snprintf(ctx.op, sizeof ctx.op, "commit after %d ops", txn_ops);
        MRC(sync_txn_commit(txn), 0);
        for (k = 0; k < NKEYS; k++) dirty |= work.rows[k].dirty;
        if (dirty) work.version = comm.version + 1;
        for (k = 0; k < NKEYS; k++)
          if (work.rows[k].dirty) {
            work.rows[k].ver = work.version;
            work.rows[k].dirty = 0;
          }
        comm = work;
      }
      txn = NULL;
      check_all(env, &comm, &r);
    }
  }
  sync_env_close(env);
  tu_remove_db(DB);
}

static void test_random_operations_match_model(void **state) {
  const char *s = getenv("SYNC_TEST_SEED");
  const char *q = getenv("SYNC_TEST_SEQS");
  uint64_t seed = DEFAULT_SEED;
  int seqs = DEFAULT_SEQS, i;
  (void)state;
  if (s && *s) seed = (uint64_t)strtoull(s, NULL, 0);
  if (q && *q) seqs = atoi(q);
  ctx.seed = seed;
  print_message("seed %llu, %d sequences of %d operations\n",
                (unsigned long long)seed, seqs, OPS_PER_SEQ);
  for (i = 0; i < seqs; i++) {
    ctx.seq = i;
    run_sequence(seed + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15),
                 OPS_PER_SEQ);
  }
}

/* Long sequences: rows rewritten thousands of times leave many stale
 * change-log entries behind, so the log's compaction runs. */
static void test_long_sequences_match_model(void **state) {
  const char *s = getenv("SYNC_TEST_SEED");
  uint64_t seed = DEFAULT_SEED ^ UINT64_C(0xABCDEF);
  int i;
  (void)state;
  if (s && *s) seed = (uint64_t)strtoull(s, NULL, 0);
  ctx.seed = seed;
  for (i = 0; i < 3; i++) {
    ctx.seq = i;
    run_sequence(seed + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15), 12000);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_operations_match_model),
      cmocka_unit_test(test_long_sequences_match_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
