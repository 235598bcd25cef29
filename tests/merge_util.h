/*
 * merge_util.h - helpers shared by test_merge.c and test_converge.c:
 * replicas with a site id of the test's choosing and a clock the test
 * drives (so that several replicas write in the same millisecond), the
 * four-column test table, and in-process pulls between two replicas.
 *
 * Everything is static inline, so a test that uses part of it compiles
 * warning-free.  Include it instead of cmocka.h (testutil.h orders the
 * system headers cmocka needs).
 */
#ifndef SYNC_MERGE_UTIL_H
#define SYNC_MERGE_UTIL_H

#include "testutil.h"

/* ---------------------------------------------------------------------
 * The test table: TEXT key, one column of each type.
 * ------------------------------------------------------------------- */
#define MU_COL_I 0u
#define MU_COL_R 1u
#define MU_COL_S 2u
#define MU_COL_B 3u
#define MU_NCOLS 4u

static const sync_column_def mu_cols[MU_NCOLS] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
};
static const sync_table_def mu_tables[1] = {
    {"t", SYNC_TEXT, mu_cols, MU_NCOLS},
};

/* ---------------------------------------------------------------------
 * Replicas.  Each has its own file, a 16-byte site id given by the test
 * and a clock that reads a shared "now" (milliseconds) plus a fixed skew.
 * ------------------------------------------------------------------- */
typedef struct mu_rep {
  sync_env *env;
  char path[64];
  uint8_t site[16];    /* what the random source hands out at creation */
  const uint64_t *now; /* shared wall clock, in ms */
  int64_t skew;        /* this replica's clock error, in ms */
  unsigned long clock_calls;
  unsigned long random_calls;
} mu_rep;

static inline uint64_t mu_clock_fn(void *ctx) {
  mu_rep *r = (mu_rep *)ctx;
  r->clock_calls++;
  return (uint64_t)((int64_t)*r->now + r->skew);
}

/* The first draw of a new file is its site id; later ones (epoch ids, a
 * renewed site id) are other bytes, different on every draw. */
static inline int mu_random_fn(void *ctx, void *buf, size_t n) {
  mu_rep *r = (mu_rep *)ctx;
  unsigned char *p = (unsigned char *)buf;
  size_t i;
  uint64_t z = 0;
  if (r->random_calls++ == 0) {
    for (i = 0; i < n; i++) p[i] = r->site[i % 16];
    return 0;
  }
  for (i = 0; i < 16; i++) z = z * 131 + r->site[i];
  z += r->random_calls * UINT64_C(0x9E3779B97F4A7C15);
  for (i = 0; i < n; i++) {
    z ^= z >> 31;
    z *= UINT64_C(0xBF58476D1CE4E5B9);
    p[i] = (unsigned char)(z >> 56);
  }
  return 0;
}

/* Open (creating) the replica at path with the given site id, clock and
 * schema (NULL: the test table).  The file is removed first. */
static inline void mu_open_schema(mu_rep *r, const char *path,
                                  const uint8_t site[16], const uint64_t *now,
                                  int64_t skew, const sync_table_def *tables,
                                  unsigned ntables) {
  uint8_t got[16];
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  memcpy(r->site, site, 16);
  r->now = now;
  r->skew = skew;
  tu_remove_db(path);
  TU_OK(sync_env_create(NULL, &r->env));
  TU_OK(sync_env_set_random(r->env, mu_random_fn, r));
  TU_OK(sync_env_set_clock(r->env, mu_clock_fn, r));
  TU_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  TU_OK(sync_env_set_mapsize(r->env, (size_t)8 << 20, (size_t)1 << 30));
  TU_OK(sync_env_set_schema(r->env, tables ? tables : mu_tables,
                            tables ? ntables : 1));
  TU_OK(sync_env_open(r->env, path, 0));
  TU_OK(sync_env_site_id(r->env, got));
  assert_memory_equal(got, site, 16);
}

static inline void mu_open(mu_rep *r, const char *path, const uint8_t site[16],
                           const uint64_t *now, int64_t skew) {
  mu_open_schema(r, path, site, now, skew, NULL, 0);
}

/* Open r's file again as it is (after a close, a copy or a restore),
 * with the test table, and read its site id back into r->site (it
 * changes when the file renews it). */
static inline void mu_reopen_schema(mu_rep *r, const sync_table_def *tables,
                                    unsigned ntables) {
  TU_OK(sync_env_create(NULL, &r->env));
  TU_OK(sync_env_set_random(r->env, mu_random_fn, r));
  TU_OK(sync_env_set_clock(r->env, mu_clock_fn, r));
  TU_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  /* As mu_open's: the default 1 GiB map, taken at every reopen, costs
   * qemu-user (make cross-test) memory it never gives back. */
  TU_OK(sync_env_set_mapsize(r->env, (size_t)8 << 20, (size_t)1 << 30));
  TU_OK(sync_env_set_schema(r->env, tables, ntables));
  TU_OK(sync_env_open(r->env, r->path, 0));
  TU_OK(sync_env_site_id(r->env, r->site));
}

static inline void mu_reopen(mu_rep *r) { mu_reopen_schema(r, mu_tables, 1); }

/* Make c a copy of src's file at path (as `cp` makes one: another inode),
 * not opened yet; src must be closed.  c's first open takes a site id of
 * its own. */
static inline void mu_copy_rep(mu_rep *c, const mu_rep *src, const char *path) {
  size_t n = 0;
  unsigned char *p = tu_read_file(src->path, &n);
  assert_non_null(p);
  memset(c, 0, sizeof *c);
  snprintf(c->path, sizeof c->path, "%s", path);
  memcpy(c->site, src->site, 16);
  c->now = src->now;
  c->random_calls = 1; /* not a new file: draws are not its site id */
  tu_remove_db(path);
  assert_int_equal(tu_write_file(path, p, n), 0);
  free(p);
}

/* A site id whose bytes are all b. */
static inline void mu_site(uint8_t out[16], uint8_t b) { memset(out, b, 16); }

static inline void mu_close(mu_rep *r) {
  if (r->env) sync_env_close(r->env);
  r->env = NULL;
  if (r->path[0]) tu_remove_db(r->path);
}

/* ---------------------------------------------------------------------
 * Rows of the test table
 * ------------------------------------------------------------------- */

/* A row with a copy of its values, as a test expects or reads it. */
typedef struct mu_row {
  int present;
  sync_value v[MU_NCOLS];
  unsigned char buf[MU_NCOLS][1024];
} mu_row;

/* Copy val into row column c (TEXT/BLOB bytes into the row's buffer). */
static inline void mu_row_set(mu_row *row, unsigned c, const sync_value *val) {
  row->v[c] = *val;
  if (val->type == SYNC_TEXT || val->type == SYNC_BLOB) {
    assert_true(val->len <= sizeof row->buf[c]);
    if (val->len) memcpy(row->buf[c], val->data, val->len);
    row->v[c].data = row->buf[c];
  }
}

/* Read key from r into row (present = 0 when there is no live row). */
static inline void mu_read(mu_rep *r, const char *key, mu_row *row) {
  sync_txn *txn;
  sync_value v[MU_NCOLS];
  unsigned c;
  int rc;
  memset(row, 0, sizeof *row);
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &txn));
  rc = sync_get(txn, 0, key, strlen(key), v, MU_NCOLS);
  if (rc == SYNC_NOTFOUND) {
    sync_txn_abort(txn);
    return;
  }
  TU_OK(rc);
  row->present = 1;
  for (c = 0; c < MU_NCOLS; c++) mu_row_set(row, c, &v[c]);
  sync_txn_abort(txn);
}

/* Put key = (i, r, s, NULL blob) in its own transaction. */
static inline void mu_put(mu_rep *r, const char *key, int64_t i, double d,
                          const char *s) {
  sync_txn *txn;
  sync_value v[MU_NCOLS];
  v[0] = sync_int(i);
  v[1] = sync_real(d);
  v[2] = s ? sync_text(s, strlen(s)) : sync_null();
  v[3] = sync_null();
  TU_OK(sync_txn_begin(r->env, 0, &txn));
  TU_OK(sync_put(txn, 0, key, strlen(key), v, MU_NCOLS));
  TU_OK(sync_txn_commit(txn));
}

/* Update one column of key in its own transaction. */
static inline void mu_update(mu_rep *r, const char *key, unsigned col,
                             sync_value val) {
  sync_txn *txn;
  TU_OK(sync_txn_begin(r->env, 0, &txn));
  TU_OK(sync_update(txn, 0, key, strlen(key), &col, &val, 1));
  TU_OK(sync_txn_commit(txn));
}

static inline void mu_delete(mu_rep *r, const char *key) {
  sync_txn *txn;
  TU_OK(sync_txn_begin(r->env, 0, &txn));
  TU_OK(sync_delete(txn, 0, key, strlen(key)));
  TU_OK(sync_txn_commit(txn));
}

static inline uint64_t mu_digest(mu_rep *r) {
  sync_txn *txn;
  uint64_t h = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_digest(txn, SYNC_ALL_TABLES, &h));
  sync_txn_abort(txn);
  return h;
}

static inline uint64_t mu_count(mu_rep *r) {
  sync_txn *txn;
  uint64_t n = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_count(txn, 0, &n));
  sync_txn_abort(txn);
  return n;
}

/* The tombstones r keeps (sync_tombstones). */
static inline uint64_t mu_tombstones(mu_rep *r) {
  sync_txn *txn;
  uint64_t n = 0;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_tombstones(txn, &n));
  sync_txn_abort(txn);
  return n;
}

static inline uint64_t mu_version(mu_rep *r) {
  sync_txn *txn;
  uint64_t v;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &txn));
  v = sync_txn_version(txn);
  sync_txn_abort(txn);
  return v;
}

/* ---------------------------------------------------------------------
 * Pulls
 * ------------------------------------------------------------------- */

/* Sums of the reports of every chunk of a pull. */
typedef struct mu_pull_stats {
  uint64_t chunks, rows, inserted, updated, deleted, unchanged, conflicts;
  uint64_t collected;
  int vector_raised;
} mu_pull_stats;

static inline void mu_stats_add(mu_pull_stats *s, const sync_apply_report *r) {
  s->chunks++;
  s->rows += r->rows;
  s->inserted += r->inserted;
  s->updated += r->updated;
  s->deleted += r->deleted;
  s->unchanged += r->unchanged;
  s->conflicts += r->conflicts;
  s->collected += r->collected;
  if (r->vector_raised) s->vector_raised = 1;
}

/* One chunk for receiver r from sender s: request from r's state, the
 * sender acknowledges the request when ack is set. */
static inline sync_delta *mu_cut_whole(mu_rep *r, mu_rep *s, size_t max_rows,
                                       int ack, int whole);
static inline sync_delta *mu_cut(mu_rep *r, mu_rep *s, size_t max_rows,
                                 int ack) {
  return mu_cut_whole(r, s, max_rows, ack, 0);
}

/* mu_cut, and whole rows when whole is set (a NEWER receiver asks). */
static inline sync_delta *mu_cut_whole(mu_rep *r, mu_rep *s, size_t max_rows,
                                       int ack, int whole) {
  sync_txn *rt, *st;
  sync_request *req = NULL;
  sync_delta *d = NULL;
  sync_delta_opts o;
  memset(&o, 0, sizeof o);
  o.max_rows = max_rows;
  o.whole_rows = whole;
  TU_OK(sync_txn_begin(r->env, SYNC_TXN_RDONLY, &rt));
  TU_OK(sync_request_make(rt, s->site, &req));
  sync_txn_abort(rt);
  TU_OK(sync_txn_begin(s->env, ack ? 0 : SYNC_TXN_RDONLY, &st));
  if (ack) TU_OK(sync_request_ack(st, req));
  TU_OK(sync_delta_make(st, req, &o, &d));
  if (ack)
    TU_OK(sync_txn_commit(st));
  else
    sync_txn_abort(st);
  sync_request_free(req);
  return d;
}

/* Apply d to r in its own transaction with the given policy; checks that
 * the report adds up. */
static inline void mu_apply(mu_rep *r, const sync_delta *d, int policy,
                            sync_apply_report *rep) {
  sync_txn *txn;
  sync_apply_report tmp;
  if (!rep) rep = &tmp;
  TU_OK(sync_txn_begin(r->env, 0, &txn));
  TU_OK(sync_delta_apply(txn, d, policy, rep));
  TU_OK(sync_txn_commit(txn));
  TU_U64(rep->rows, sync_delta_rows(d));
  TU_U64(rep->inserted + rep->updated + rep->deleted + rep->unchanged,
         rep->rows);
}

/* Pull everything r lacks of s, in chunks of max_rows (0: default), with
 * the given policy.  Fails the test after 100,000 chunks. */
static inline void mu_pull_policy(mu_rep *r, mu_rep *s, size_t max_rows,
                                  int ack, int policy, mu_pull_stats *st) {
  mu_pull_stats tmp;
  unsigned long n;
  if (!st) st = &tmp;
  memset(st, 0, sizeof *st);
  for (n = 0; n < 100000; n++) {
    sync_apply_report rep;
    sync_delta *d =
        mu_cut_whole(r, s, max_rows, ack, policy == SYNC_APPLY_NEWER);
    int last = sync_delta_last(d);
    mu_apply(r, d, policy, &rep);
    sync_delta_free(d);
    assert_true(rep.cursor_moved);
    mu_stats_add(st, &rep);
    if (last) {
      assert_true(rep.vector_raised);
      return;
    }
  }
  fail_msg("pull from %s to %s did not end", s->path, r->path);
}

static inline void mu_pull(mu_rep *r, mu_rep *s, size_t max_rows, int ack,
                           mu_pull_stats *st) {
  mu_pull_policy(r, s, max_rows, ack, SYNC_APPLY_MERGE, st);
}

#endif
