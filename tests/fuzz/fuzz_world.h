/*
 * fuzz_world.h - the scratch replicas behind fuzz_apply and the seed
 * corpus generator.  Everything is deterministic (fixed site ids, a clock
 * the code drives, fixed values), so the receiver that fuzz_apply builds
 * at start is, byte for byte in meaning, the one gen_corpus cut its
 * chunks for: seeds start at the receiver's cursor and pass its checks
 * (receiver site FZ_RECV_SITE, schema hash of fz_tables).
 *
 * The world: sender B writes; sender A writes and pulls from B (so A
 * relays B's changes); receiver R writes rows of its own (some on the
 * same keys as A, some deleted, a LOCAL column) and pulls all of A.
 * R then knows A and B as sites, holds A's cursor (log mode) and a
 * version vector.  Header-only, no cmocka: a failure aborts.
 */
#ifndef SYNC_FUZZ_WORLD_H
#define SYNC_FUZZ_WORLD_H

#include "fuzz_frame.h"

#include <unistd.h>

/* The receiver's site id: seeds for fuzz_apply are addressed to it. */
static const uint8_t FZ_RECV_SITE[16] = {0xf0, 'f', 'u', 'z', 'z', '-', 'r',
                                         'e', 'c', 'v', 0, 1, 2, 3, 4, 0x0f};
#define FZ_SITE_A 0xa1
#define FZ_SITE_B 0xb2
#define FZ_SITE_C 0xc3

/* Table 0: TEXT keys, every column type, a NOT NULL and a LOCAL column. */
static const sync_column_def fz_tcols[6] = {
    {"i", SYNC_INTEGER, 0},  {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},     {"b", SYNC_BLOB, 0},
    {"loc", SYNC_TEXT, SYNC_COL_LOCAL},
    {"nn", SYNC_INTEGER, SYNC_COL_NOTNULL},
};
/* Table 1: INTEGER keys (8 bytes from sync_key_int). */
static const sync_column_def fz_mcols[3] = {
    {"n", SYNC_INTEGER, 0},
    {"x", SYNC_REAL, 0},
    {"here", SYNC_BLOB, SYNC_COL_LOCAL},
};
/* Table 2: BLOB keys, one column. */
static const sync_column_def fz_bcols[1] = {{"d", SYNC_BLOB, 0}};
static const sync_table_def fz_tables[3] = {
    {"t", SYNC_TEXT, fz_tcols, 6},
    {"m", SYNC_INTEGER, fz_mcols, 3},
    {"k", SYNC_BLOB, fz_bcols, 1},
};
#define FZ_NTABLES 3u

/* The fuzz server's write check (and the recorder's): keys that start
 * with 'x' are refused, so that seeds reach the REFUSED / REVERTED
 * exchange (docs/PROTOCOL.md, "Refusals"). */
static inline int fz_check_write(void *ctx, const sync_write *w, int *reason,
                                 char *text, size_t cap) {
  (void)ctx;
  if (w->key.len && ((const char *)w->key.data)[0] == 'x') {
    *reason = SYNC_REFUSE_APP + 1;
    snprintf(text, cap, "x keys are read-only");
    return 1;
  }
  return 0;
}
#define FZ_MAXCOLS 6u

#define FZ_OK(expr)                                                          \
  do {                                                                       \
    int fz_rc_ = (expr);                                                     \
    if (fz_rc_) FZ_BUG("%s: %s", #expr, sync_strerror(fz_rc_));              \
  } while (0)

typedef struct fz_rep {
  sync_env *env;
  char path[256];
  uint8_t site[16];
  const uint64_t *now;
} fz_rep;

static inline uint64_t fz_clock(void *ctx) { return *((fz_rep *)ctx)->now; }

static inline int fz_random(void *ctx, void *buf, size_t n) {
  fz_rep *r = (fz_rep *)ctx;
  size_t i;
  for (i = 0; i < n; i++) ((unsigned char *)buf)[i] = r->site[i % 16];
  return 0;
}

static inline void fz_remove_db(const char *path) {
  char lock[300];
  snprintf(lock, sizeof lock, "%s-lock", path);
  remove(path);
  remove(lock);
}

/* A scratch directory: tmpfs when there is one. */
static inline const char *fz_tmpdir(void) {
  return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

/* fz_open with a schema of the caller's (fz_open: fz_tables). */
static inline void fz_open_schema(fz_rep *r, const char *name,
                                  const uint8_t site[16], const uint64_t *now,
                                  const sync_table_def *tables,
                                  unsigned ntables) {
  uint8_t got[16];
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s/sync-fuzz-%ld-%s.db", fz_tmpdir(),
           (long)getpid(), name);
  memcpy(r->site, site, 16);
  r->now = now;
  fz_remove_db(r->path);
  FZ_OK(sync_env_create(NULL, &r->env));
  FZ_OK(sync_env_set_random(r->env, fz_random, r));
  FZ_OK(sync_env_set_clock(r->env, fz_clock, r));
  FZ_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  FZ_OK(sync_env_set_mapsize(r->env, (size_t)4 << 20, (size_t)256 << 20));
  FZ_OK(sync_env_set_schema(r->env, tables, ntables));
  FZ_OK(sync_env_open(r->env, r->path, 0));
  FZ_OK(sync_env_site_id(r->env, got));
  if (memcmp(got, site, 16)) FZ_BUG("site id not taken");
}

static inline void fz_open(fz_rep *r, const char *name, const uint8_t site[16],
                           const uint64_t *now) {
  fz_open_schema(r, name, site, now, fz_tables, FZ_NTABLES);
}

static inline void fz_close(fz_rep *r) {
  if (r->env) sync_env_close(r->env);
  r->env = NULL;
  if (r->path[0]) fz_remove_db(r->path);
  r->path[0] = 0;
}

/* ---------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------- */
static inline sync_value fz_s(const char *s) { return sync_text(s, strlen(s)); }

/* Put a row of table 0: (i, r, s, b, loc, nn); s and b NULL when NULL. */
static inline void fz_put_t(sync_txn *t, const void *key, size_t klen, int64_t i,
                     double r, const char *s, const void *b, size_t blen,
                     const char *loc) {
  sync_value v[6];
  v[0] = sync_int(i);
  v[1] = sync_real(r);
  v[2] = s ? fz_s(s) : sync_null();
  v[3] = b ? sync_blob(b, blen) : sync_null();
  v[4] = loc ? fz_s(loc) : sync_null();
  v[5] = sync_int(i ^ 0x55);
  FZ_OK(sync_put(t, 0, key, klen, v, 6));
}

static inline void fz_put_m(sync_txn *t, int64_t k, int64_t n, double x) {
  unsigned char ik[8];
  sync_value v[3];
  sync_key_int(k, ik);
  v[0] = sync_int(n);
  v[1] = sync_real(x);
  v[2] = sync_blob("local", 5);
  FZ_OK(sync_put(t, 1, ik, 8, v, 3));
}

static inline void fz_put_k(sync_txn *t, const void *key, size_t klen, const void *d,
                     size_t dlen) {
  sync_value v = d ? sync_blob(d, dlen) : sync_null();
  FZ_OK(sync_put(t, 2, key, klen, &v, 1));
}

static inline void fz_del(sync_txn *t, unsigned table, const void *key, size_t klen) {
  int rc = sync_delete(t, table, key, klen);
  if (rc && rc != SYNC_NOTFOUND) FZ_BUG("delete: %s", sync_strerror(rc));
}

static inline void fz_del_m(sync_txn *t, int64_t k) {
  unsigned char ik[8];
  sync_key_int(k, ik);
  fz_del(t, 1, ik, 8);
}

/* Rows "key-NNN" of table 0, n of them from first, values from seed. */
static inline void fz_fill_t(fz_rep *r, unsigned first, unsigned n, unsigned seed) {
  sync_txn *t;
  unsigned k;
  FZ_OK(sync_txn_begin(r->env, 0, &t));
  for (k = first; k < first + n; k++) {
    char key[32], s[48];
    unsigned char b[8];
    unsigned q = k * 2654435761u ^ seed;
    snprintf(key, sizeof key, "key-%03u", k);
    snprintf(s, sizeof s, "v%u-%u", seed, q % 1000);
    memcpy(b, &q, 4);
    memcpy(b + 4, &k, 4);
    fz_put_t(t, key, strlen(key), (int64_t)q - 1000000, (double)(q % 10000) / 100.0,
             q % 5 ? s : NULL, q % 3 ? b : NULL, 8, "mine");
  }
  FZ_OK(sync_txn_commit(t));
}

/* ---------------------------------------------------------------------
 * Pulls
 * ------------------------------------------------------------------- */

/* The next chunk of s for the request of the receiver's txn rt. */
static inline sync_delta *fz_cut_txn(sync_txn *rt, fz_rep *s, size_t max_rows,
                              int ack) {
  sync_txn *st;
  sync_request *req = NULL;
  sync_delta *d = NULL;
  sync_delta_opts o;
  memset(&o, 0, sizeof o);
  o.max_rows = max_rows;
  FZ_OK(sync_request_make(rt, s->site, &req));
  FZ_OK(sync_txn_begin(s->env, ack ? 0 : SYNC_TXN_RDONLY, &st));
  if (ack) FZ_OK(sync_request_ack(st, req));
  FZ_OK(sync_delta_make(st, req, &o, &d));
  if (ack) FZ_OK(sync_txn_commit(st));
  else sync_txn_abort(st);
  sync_request_free(req);
  return d;
}

/* Pull everything r lacks of s, committing each chunk. */
static inline void fz_pull(fz_rep *r, fz_rep *s, size_t max_rows) {
  unsigned n;
  for (n = 0; n < 100000; n++) {
    sync_txn *t;
    sync_delta *d;
    int last;
    FZ_OK(sync_txn_begin(r->env, 0, &t));
    d = fz_cut_txn(t, s, max_rows, 1);
    last = sync_delta_last(d);
    FZ_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, NULL));
    FZ_OK(sync_txn_commit(t));
    sync_delta_free(d);
    if (last) return;
  }
  FZ_BUG("pull did not end");
}

typedef struct fz_world {
  uint64_t now;
  fz_rep r, a, b;
} fz_world;

/* Build the world described at the top; with keep_senders 0, A and B
 * are closed and removed once R holds what it should. */
static inline void fz_world_build(fz_world *w, int keep_senders) {
  uint8_t id[16];
  sync_txn *t;
  char lkey[SYNC_MAX_KEY];
  memset(w, 0, sizeof *w);
  w->now = 1700000000000ull;
  fz_open(&w->r, "recv", FZ_RECV_SITE, &w->now);
  memset(id, FZ_SITE_A, 16);
  fz_open(&w->a, "a", id, &w->now);
  memset(id, FZ_SITE_B, 16);
  fz_open(&w->b, "b", id, &w->now);

  /* B: rows of its own, A relays them. */
  fz_fill_t(&w->b, 100, 6, 0xb);
  w->now += 3;
  /* A: rows, INTEGER and BLOB keys, a long key, a tombstone. */
  fz_fill_t(&w->a, 0, 12, 0xa);
  FZ_OK(sync_txn_begin(w->a.env, 0, &t));
  fz_put_m(t, -5, 50, 0.5);
  fz_put_m(t, 0, 0, 0.0);
  fz_put_m(t, 7, INT64_MIN, -1e300);
  fz_put_k(t, "\x00\x01", 2, "\xff", 1);
  fz_put_k(t, "blob-key", 8, NULL, 0);
  memset(lkey, 'L', sizeof lkey);
  fz_put_t(t, lkey, sizeof lkey, 1, 1.5, "long key", NULL, 0, NULL);
  FZ_OK(sync_txn_commit(t));
  w->now += 2;
  FZ_OK(sync_txn_begin(w->a.env, 0, &t));
  fz_del(t, 0, "key-003", 7);
  fz_del_m(t, 0);
  FZ_OK(sync_txn_commit(t));
  fz_pull(&w->a, &w->b, 4);
  w->now += 5;

  /* R: its own rows, some under A's keys (written before A's, so A
   * wins those), one it deletes. */
  fz_fill_t(&w->r, 8, 10, 0xe);
  FZ_OK(sync_txn_begin(w->r.env, 0, &t));
  fz_put_m(t, 7, 70, 7.0);
  fz_put_m(t, 1000, 1, 1.0);
  fz_del(t, 0, "key-010", 7);
  fz_put_k(t, "r", 1, "from r", 6);
  FZ_OK(sync_txn_commit(t));
  w->now += 5;
  fz_pull(&w->r, &w->a, 5);
  w->now += 5;
  /* And after the pull: R changes rows A sent (future conflicts). */
  FZ_OK(sync_txn_begin(w->r.env, 0, &t));
  {
    unsigned col = 2;
    sync_value v = fz_s("changed by r");
    FZ_OK(sync_update(t, 0, "key-001", 7, &col, &v, 1));
  }
  fz_del(t, 0, "key-002", 7);
  FZ_OK(sync_txn_commit(t));
  w->now += 5;
  if (!keep_senders) {
    fz_close(&w->a);
    fz_close(&w->b);
  }
}

static inline void fz_world_close(fz_world *w) {
  fz_close(&w->r);
  fz_close(&w->a);
  fz_close(&w->b);
}

#endif
