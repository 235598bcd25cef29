/*
 * pgbridge.c - the PostgreSQL bridge (tools/pgbridge/) against a real
 * PostgreSQL 15 that this program starts in a temporary directory (as
 * nobody when run as root: initdb refuses root), on a Unix socket there,
 * and stops at the end.  Without PostgreSQL it fails: `make deps`
 * installs it.
 *
 *  - types: every type both ways, NULLs, a 1 MiB blob, doubles at their
 *    extremes (+-inf, NaN, -0.0, the smallest subnormal), INT64_MIN/MAX,
 *    non-ASCII text; rows from Postgres carry the bridge's site; no echo.
 *  - kill9: the bridge in a child process, killed with SIGKILL at random
 *    moments while both sides write, restarted; in the end the replica,
 *    Postgres and the model of what was written hold the same rows.
 *  - pg_restart: Postgres stopped (immediate) under the bridge: a clear
 *    error, then it reconnects and catches up.
 *  - altered: a table altered by hand: a clear error naming the column
 *    and both types; altered back, nothing was lost.
 *  - concurrent: the replica and Postgres write the same keys at once
 *    while the bridge runs; they converge.
 *  - counter: a table with counter columns: device adds reach Postgres
 *    as the sum, an UPDATE in Postgres reaches the devices as an add,
 *    both at once sum; inserts, a delete and insert in one batch, a key
 *    moved; outbox entries applied again add nothing; clients cannot
 *    change the bridge's companion columns.
 *  - counter_race: a client's insert of a key the bridge writes at that
 *    moment: the batch is rolled back, no add is lost.
 *  - counter_kill9: devices add and Postgres clients add (UPDATE qty =
 *    qty + d) to the same keys while the bridge is killed with SIGKILL
 *    at random moments: in the end every add counts once, on both sides.
 * Digests: every row of a table encoded the same way on both sides
 * (key, then per column a type tag and its bytes; doubles as their 8
 * bytes), sorted, compared row by row and hashed for the log.
 * SYNC_PG_SEED sets the seed of the random tests (printed);
 * SYNC_PG_ONLY=test_kill9 runs only the tests that match (cmocka's filter).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "testutil.h"
#include "tools/pgbridge/pgbridge.h"

#ifndef PGBIN
#define PGBIN "/usr/lib/postgresql/15/bin"
#endif
#define NCOL 4

static char tmpdir[256], conn_base[512];
static uint64_t seed;

static const sync_column_def item_cols[NCOL] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
};
static const sync_column_def tag_cols[2] = {
    {"v", SYNC_REAL, 0},
    {"d", SYNC_BLOB, 0},
};
static const sync_table_def tables[2] = {
    {"items", SYNC_INTEGER, item_cols, NCOL},
    {"tags", SYNC_TEXT, tag_cols, 2},
};

/* ---- PostgreSQL ------------------------------------------------------- */

/* Run a shell command, as nobody when we are root. */
static int sh(const char *cmd) {
  char full[2048];
  if (getuid() == 0)
    snprintf(full, sizeof full,
             "setpriv --reuid=65534 --regid=65534 --clear-groups -- sh -c "
             "'%s' >>%s/pg.out 2>&1",
             cmd, tmpdir);
  else
    snprintf(full, sizeof full, "sh -c '%s' >>%s/pg.out 2>&1", cmd, tmpdir);
  return system(full);
}

static int pg_start(void) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           PGBIN "/pg_ctl -D %s/data -l %s/pg.log -w -t 30 -o \"-k %s -c "
                 "listen_addresses= -p 5432 -c fsync=off -c "
                 "synchronous_commit=off -c full_page_writes=off\" start",
           tmpdir, tmpdir, tmpdir);
  return sh(cmd);
}

static int pg_stop(const char *mode) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, PGBIN "/pg_ctl -D %s/data -m %s -w stop", tmpdir,
           mode);
  return sh(cmd);
}

static void conninfo(const char *db, char *out, size_t cap) {
  snprintf(out, cap, "%s dbname=%s", conn_base, db);
}

static PGconn *pg_connect(const char *db) {
  char ci[600];
  PGconn *c;
  conninfo(db, ci, sizeof ci);
  c = PQconnectdb(ci);
  if (PQstatus(c) != CONNECTION_OK) {
    print_error("connect %s: %s", ci, PQerrorMessage(c));
    fail();
  }
  return c;
}

static void pg_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK) {
    print_error("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    fail();
  }
  PQclear(r);
}

static int group_setup(void **state) {
  char cmd[1024];
  struct stat sb;
  const char *s = getenv("SYNC_PG_SEED");
  (void)state;
  seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
  printf("pgbridge: seed 0x%llx (SYNC_PG_SEED to repeat)\n",
         (unsigned long long)seed);
  if (stat(PGBIN "/initdb", &sb)) {
    fprintf(stderr, "pgbridge: PostgreSQL 15 is not installed (" PGBIN
                    "/initdb): run make deps\n");
    return -1;
  }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sync-pg-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  if (getuid() == 0 && chown(tmpdir, 65534, 65534)) return -1;
  snprintf(cmd, sizeof cmd,
           PGBIN "/initdb -D %s/data -U postgres -A trust -E UTF8 "
                 "--locale=C -N",
           tmpdir);
  if (sh(cmd) || pg_start()) {
    fprintf(stderr, "pgbridge: PostgreSQL did not start; see %s/pg.out\n",
            tmpdir);
    return -1;
  }
  snprintf(conn_base, sizeof conn_base,
           "host=%s port=5432 user=postgres options='-c "
           "client_min_messages=warning'",
           tmpdir);
  return 0;
}

static int group_teardown(void **state) {
  char cmd[300];
  (void)state;
  pg_stop("fast");
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) ? -1 : 0;
}

/* A fresh Postgres database and replica (of schema defs) for one test. */
static void fresh_schema(const char *name, char *db, size_t cap,
                         const sync_table_def *defs, unsigned n) {
  char sql[200], path[300];
  sync_env *env;
  PGconn *c = pg_connect("postgres");
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
  pg_exec(c, sql);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  pg_exec(c, sql);
  PQfinish(c);
  snprintf(db, cap, "pg-%s.db", name);
  tu_remove_db(db);
  snprintf(path, sizeof path, "%s.pgbridge", db);
  tu_remove_db(path);
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, defs, n));
  TU_OK(sync_env_open(env, db, 0));
  sync_env_close(env);
}

static void fresh(const char *name, char *db, size_t cap) {
  fresh_schema(name, db, cap, tables, 2);
}

static pgb_bridge *bridge_open_opts(const char *db, const char *name,
                                    size_t batch, int audit) {
  char ci[600];
  pgb_opts o;
  pgb_bridge *b = NULL;
  int rc;
  memset(&o, 0, sizeof o);
  conninfo(name, ci, sizeof ci);
  o.db = db;
  o.conninfo = ci;
  o.batch_rows = batch;
  o.audit = audit;
  rc = pgb_open(&o, &b);
  if (rc) {
    print_error("pgb_open: %d %s\n", rc, pgb_errmsg(b));
    fail();
  }
  return b;
}

static pgb_bridge *bridge_open_batch(const char *db, const char *name,
                                     size_t batch) {
  return bridge_open_opts(db, name, batch, 0);
}

static pgb_bridge *bridge_open(const char *db, const char *name) {
  return bridge_open_batch(db, name, 500);
}

static void catch_up(pgb_bridge *b) {
  int rc = pgb_catch_up(b);
  if (rc) {
    print_error("pgb_catch_up: %d %s\n", rc, pgb_errmsg(b));
    fail();
  }
}

/* ---- digests ----------------------------------------------------------- */

typedef struct rowset {
  unsigned char **row;
  size_t *len;
  size_t n, cap;
} rowset;

typedef struct enc {
  unsigned char *p;
  size_t len, cap;
} enc;

static void enc_put(enc *e, const void *p, size_t n) {
  if (e->len + n > e->cap) {
    e->cap = (e->len + n) * 2 + 64;
    e->p = realloc(e->p, e->cap);
    assert_non_null(e->p);
  }
  if (n) memcpy(e->p + e->len, p, n);
  e->len += n;
}

static void enc_u64(enc *e, uint64_t v) {
  unsigned char x[8];
  int i;
  for (i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (56 - 8 * i));
  enc_put(e, x, 8);
}

/* The canonical form: table, key length and bytes (INTEGER keys in their
 * 8-byte sortable form), then per column a tag and the value's bytes. */
static void enc_row(rowset *rs, unsigned table, const void *key, size_t klen,
                    const sync_value *v, unsigned n) {
  enc e = {0};
  unsigned c;
  unsigned char tag;
  uint64_t u;
  tag = (unsigned char)table;
  enc_put(&e, &tag, 1);
  enc_u64(&e, klen);
  enc_put(&e, key, klen);
  for (c = 0; c < n; c++) {
    tag = (unsigned char)v[c].type;
    enc_put(&e, &tag, 1);
    switch (v[c].type) {
    case SYNC_INTEGER: enc_u64(&e, (uint64_t)v[c].i); break;
    case SYNC_REAL:
      memcpy(&u, &v[c].r, 8);
      enc_u64(&e, u);
      break;
    case SYNC_TEXT:
    case SYNC_BLOB:
      enc_u64(&e, v[c].len);
      enc_put(&e, v[c].data, v[c].len);
      break;
    default: break;
    }
  }
  if (rs->n == rs->cap) {
    rs->cap = rs->cap * 2 + 64;
    rs->row = realloc(rs->row, rs->cap * sizeof *rs->row);
    rs->len = realloc(rs->len, rs->cap * sizeof *rs->len);
  }
  rs->row[rs->n] = e.p;
  rs->len[rs->n++] = e.len;
}

static void rowset_free(rowset *rs) {
  size_t i;
  for (i = 0; i < rs->n; i++) free(rs->row[i]);
  free(rs->row);
  free(rs->len);
  memset(rs, 0, sizeof *rs);
}

static const rowset *sort_rs;
static int idx_cmp(const void *x, const void *y) {
  size_t a = *(const size_t *)x, b = *(const size_t *)y;
  size_t la = sort_rs->len[a], lb = sort_rs->len[b];
  int c = memcmp(sort_rs->row[a], sort_rs->row[b], la < lb ? la : lb);
  return c ? c : (la > lb) - (la < lb);
}

static void rowset_sort(rowset *rs) {
  size_t *ix = malloc((rs->n + 1) * sizeof *ix), i;
  unsigned char **r = malloc((rs->n + 1) * sizeof *r);
  size_t *l = malloc((rs->n + 1) * sizeof *l);
  for (i = 0; i < rs->n; i++) ix[i] = i;
  sort_rs = rs;
  qsort(ix, rs->n, sizeof *ix, idx_cmp);
  for (i = 0; i < rs->n; i++) {
    r[i] = rs->row[ix[i]];
    l[i] = rs->len[ix[i]];
  }
  free(rs->row);
  free(rs->len);
  free(ix);
  rs->row = r;
  rs->len = l;
}

static uint64_t rowset_hash(const rowset *rs) {
  uint64_t h = 1469598103934665603ull;
  size_t i, k;
  for (i = 0; i < rs->n; i++)
    for (k = 0; k < rs->len[i]; k++) h = (h ^ rs->row[i][k]) * 1099511628211ull;
  return h;
}

static void replica_rows(sync_env *env, rowset *rs) {
  sync_txn *x;
  unsigned t;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  for (t = 0; t < 2; t++) {
    sync_cursor *cur;
    sync_key k;
    sync_value v[NCOL];
    int rc;
    TU_OK(sync_cursor_open(x, t, &cur));
    while ((rc = sync_cursor_next(cur, &k, v, tables[t].ncolumns)) == 0)
      enc_row(rs, t, k.data, k.len, v, tables[t].ncolumns);
    TU_RC(rc, SYNC_NOTFOUND);
    sync_cursor_close(cur);
  }
  sync_txn_abort(x);
  rowset_sort(rs);
}

static uint64_t be64(const char *p) {
  uint64_t u = 0;
  int i;
  for (i = 0; i < 8; i++) u = u << 8 | (unsigned char)p[i];
  return u;
}

/* The same rows read from Postgres in binary (the wire form of bigint and
 * double precision is their 8 bytes). */
static void pg_rows(PGconn *c, rowset *rs) {
  unsigned t;
  for (t = 0; t < 2; t++) {
    char sql[200];
    PGresult *r;
    int i, n;
    unsigned col;
    snprintf(sql, sizeof sql, "SELECT key%s FROM %s",
             t ? ", v, d" : ", i, r, s, b", tables[t].name);
    r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      print_error("%s: %s", sql, PQresultErrorMessage(r));
      fail();
    }
    n = PQntuples(r);
    for (i = 0; i < n; i++) {
      sync_value v[NCOL];
      unsigned char kb[8];
      const void *key;
      size_t klen;
      if (t == 0) {
        sync_key_int((int64_t)be64(PQgetvalue(r, i, 0)), kb);
        key = kb;
        klen = 8;
      } else {
        key = PQgetvalue(r, i, 0);
        klen = (size_t)PQgetlength(r, i, 0);
      }
      for (col = 0; col < tables[t].ncolumns; col++) {
        int f = (int)col + 1;
        const char *p = PQgetvalue(r, i, f);
        uint64_t u;
        if (PQgetisnull(r, i, f)) {
          v[col] = sync_null();
          continue;
        }
        switch (tables[t].columns[col].type) {
        case SYNC_INTEGER: v[col] = sync_int((int64_t)be64(p)); break;
        case SYNC_REAL:
          u = be64(p);
          v[col] = sync_real(0);
          memcpy(&v[col].r, &u, 8);
          break;
        case SYNC_TEXT:
          v[col] = sync_text(p, (size_t)PQgetlength(r, i, f));
          break;
        default: v[col] = sync_blob(p, (size_t)PQgetlength(r, i, f));
        }
      }
      enc_row(rs, t, key, klen, v, tables[t].ncolumns);
    }
    PQclear(r);
  }
  rowset_sort(rs);
}

/* 1 when the two sets hold the same rows; prints where they part. */
static int rowset_same(const char *what, const rowset *a, const rowset *b) {
  size_t i;
  printf("pgbridge: %s: %zu rows, digest %016llx / %zu rows, digest %016llx\n",
         what, a->n, (unsigned long long)rowset_hash(a), b->n,
         (unsigned long long)rowset_hash(b));
  if (a->n != b->n) return 0;
  for (i = 0; i < a->n; i++)
    if (a->len[i] != b->len[i] || memcmp(a->row[i], b->row[i], a->len[i])) {
      printf("pgbridge: %s: row %zu differs\n", what, i);
      return 0;
    }
  return 1;
}

static void assert_same(const char *what, sync_env *env, PGconn *c) {
  rowset a = {0}, b = {0};
  replica_rows(env, &a);
  pg_rows(c, &b);
  assert_true(rowset_same(what, &a, &b));
  rowset_free(&a);
  rowset_free(&b);
}

/* ---- writing both sides ------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static const char *const TEXTS[] = {
    "", "plain", "h\xc3\xa9llo w\xc3\xb6rld", "\xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac",
    "quote ' and \" and \\", "\xf0\x9f\x98\x80 emoji",
};
static const double REALS[] = {0.0, -0.0, 1.5, -2.25, DBL_MAX, -DBL_MAX,
                               DBL_MIN, 4.9406564584124654e-324, 1e-300,
                               3.141592653589793};

/* A row of items in the model: owned copies. */
typedef struct mrow {
  int live;
  sync_value v[NCOL];
  unsigned char blob[64];
} mrow;

static void random_row(uint64_t *s, mrow *m) {
  uint64_t x = rng_next(s);
  unsigned k;
  m->live = 1;
  m->v[0] = x % 5 == 0 ? sync_null()
            : x % 5 == 1 ? sync_int(x % 2 ? INT64_MIN : INT64_MAX)
                         : sync_int((int64_t)rng_next(s));
  x = rng_next(s);
  if (x % 8 == 0) m->v[1] = sync_null();
  else if (x % 8 == 1) m->v[1] = sync_real(x % 16 < 8 ? INFINITY : -INFINITY);
  else if (x % 8 == 2) m->v[1] = sync_real(NAN);
  else m->v[1] = sync_real(REALS[(x >> 8) % (sizeof REALS / sizeof REALS[0])]);
  x = rng_next(s);
  m->v[2] = x % 6 == 0 ? sync_null()
                       : sync_text(TEXTS[(x >> 8) % 6], strlen(TEXTS[(x >> 8) % 6]));
  x = rng_next(s);
  for (k = 0; k < sizeof m->blob; k++) m->blob[k] = (unsigned char)rng_next(s);
  m->v[3] = x % 5 == 0 ? sync_null() : sync_blob(m->blob, (x >> 8) % sizeof m->blob);
}

static void replica_put(sync_env *env, int64_t key, const sync_value *v) {
  unsigned char kb[8];
  sync_txn *x;
  sync_key_int(key, kb);
  TU_OK(sync_txn_begin(env, 0, &x));
  TU_OK(sync_put(x, 0, kb, 8, v, NCOL));
  TU_OK(sync_txn_commit(x));
}

static void replica_del(sync_env *env, int64_t key) {
  unsigned char kb[8];
  sync_txn *x;
  int rc;
  sync_key_int(key, kb);
  TU_OK(sync_txn_begin(env, 0, &x));
  rc = sync_delete(x, 0, kb, 8);
  if (rc != SYNC_NOTFOUND) TU_OK(rc);
  TU_OK(sync_txn_commit(x));
}

static void real_text(double r, char *out, size_t cap) {
  if (isnan(r)) snprintf(out, cap, "NaN");
  else if (isinf(r)) snprintf(out, cap, r > 0 ? "Infinity" : "-Infinity");
  else snprintf(out, cap, "%.17g", r);
}

static void pg_put(PGconn *c, int64_t key, const sync_value *v) {
  char kb[24], ib[24], rb[40], *hex = NULL;
  const char *pv[5];
  PGresult *r;
  size_t k;
  snprintf(kb, sizeof kb, "%lld", (long long)key);
  pv[0] = kb;
  pv[1] = pv[2] = pv[3] = pv[4] = NULL;
  if (v[0].type) {
    snprintf(ib, sizeof ib, "%lld", (long long)v[0].i);
    pv[1] = ib;
  }
  if (v[1].type) {
    real_text(v[1].r, rb, sizeof rb);
    pv[2] = rb;
  }
  if (v[2].type) {
    hex = malloc(v[2].len + 1);
    memcpy(hex, v[2].data, v[2].len);
    hex[v[2].len] = 0;
    pv[3] = hex;
  }
  if (v[3].type) {
    char *h = malloc(2 * v[3].len + 3);
    h[0] = '\\';
    h[1] = 'x';
    for (k = 0; k < v[3].len; k++)
      sprintf(h + 2 + 2 * k, "%02x", ((const unsigned char *)v[3].data)[k]);
    h[2 + 2 * v[3].len] = 0;
    pv[4] = h;
  }
  r = PQexecParams(c,
                   "INSERT INTO items (key, i, r, s, b) VALUES ($1, $2, $3, "
                   "$4, $5) ON CONFLICT (key) DO UPDATE SET i = EXCLUDED.i, "
                   "r = EXCLUDED.r, s = EXCLUDED.s, b = EXCLUDED.b",
                   5, NULL, pv, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    print_error("pg_put: %s", PQresultErrorMessage(r));
    fail();
  }
  PQclear(r);
  free(hex);
  free((char *)pv[4]);
}

static void pg_del(PGconn *c, int64_t key) {
  char sql[80];
  snprintf(sql, sizeof sql, "DELETE FROM items WHERE key = %lld",
           (long long)key);
  pg_exec(c, sql);
}

static void model_rows(const mrow *m, const int64_t *keys, size_t n,
                       rowset *rs) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char kb[8];
    if (!m[i].live) continue;
    sync_key_int(keys[i], kb);
    enc_row(rs, 0, kb, 8, m[i].v, NCOL);
  }
  rowset_sort(rs);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The bridge in a child process, stepping until killed. */
static pid_t bridge_child(const char *db, const char *name) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char ci[600];
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    pgb_opts o;
    pgb_bridge *b = NULL;
    memset(&o, 0, sizeof o);
    conninfo(name, ci, sizeof ci);
    o.db = db;
    o.conninfo = ci;
    o.batch_rows = 50;
    if (pgb_open(&o, &b)) {
      fprintf(stderr, "child: %s\n", pgb_errmsg(b));
      _exit(1);
    }
    for (;;) {
      uint64_t moved = 0;
      if (pgb_step(b, &moved) || !moved) sleep_ms(2);
    }
  }
  return pid;
}

static void kill_child(pid_t pid) {
  int st;
  kill(pid, SIGKILL);
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st)); /* it did not die of its own */
}

static sync_env *open_replica(const char *db) {
  sync_env *env;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_open(env, db, SYNC_OPEN_NOCREATE));
  return env;
}

/* ---- the tests --------------------------------------------------------- */

static void test_types(void **state) {
  char db[64];
  pgb_bridge *b;
  sync_env *S;
  PGconn *c;
  sync_txn *x;
  unsigned char kb[8], *big;
  size_t k;
  pgb_stats s0, s1;
  (void)state;
  fresh("types", db, sizeof db);
  b = bridge_open(db, "types");
  S = pgb_server_env(b);
  c = pg_connect("types");
  big = malloc(1 << 20);
  for (k = 0; k < (1u << 20); k++) big[k] = (unsigned char)(k * 131 + (k >> 9));
  {
    const struct {
      int64_t key;
      sync_value v[NCOL];
    } rows[] = {
        {INT64_MIN,
         {sync_int(INT64_MAX), sync_real(INFINITY), sync_text(TEXTS[3], strlen(TEXTS[3])),
          sync_blob(big, 1u << 20)}},
        {INT64_MAX,
         {sync_int(INT64_MIN), sync_real(-INFINITY), sync_text("", 0),
          sync_blob("", 0)}},
        {0, {sync_null(), sync_real(NAN), sync_null(), sync_null()}},
        {-1, {sync_int(0), sync_real(-0.0), sync_text(TEXTS[2], strlen(TEXTS[2])),
              sync_blob("\0\0\1", 3)}},
        {1, {sync_int(1), sync_real(DBL_MAX), sync_text(TEXTS[4], strlen(TEXTS[4])),
             sync_null()}},
        {2, {sync_int(2), sync_real(-DBL_MAX), sync_null(), sync_null()}},
        {3, {sync_int(3), sync_real(4.9406564584124654e-324), sync_null(), sync_null()}},
        {4, {sync_int(4), sync_real(DBL_MIN), sync_null(), sync_null()}},
    };
    sync_value tv[2] = {sync_real(1e308), sync_blob("a\0b", 3)};
    TU_OK(sync_txn_begin(S, 0, &x));
    for (k = 0; k < sizeof rows / sizeof rows[0]; k++) {
      sync_key_int(rows[k].key, kb);
      TU_OK(sync_put(x, 0, kb, 8, rows[k].v, NCOL));
    }
    TU_OK(sync_put(x, 1, TEXTS[2], strlen(TEXTS[2]), tv, 2));
    TU_OK(sync_put(x, 1, TEXTS[4], strlen(TEXTS[4]), tv, 2));
    TU_OK(sync_txn_commit(x));
  }
  catch_up(b);
  assert_same("types: replica -> postgres", S, c);
  /* a delete and an update on the replica */
  replica_del(S, 4);
  {
    sync_value v[NCOL] = {sync_int(-7), sync_real(-0.0), sync_text("x", 1),
                          sync_blob(big, 1000)};
    replica_put(S, 3, v);
  }
  catch_up(b);
  assert_same("types: delete and update -> postgres", S, c);
  /* Postgres writes every type, updates, deletes and moves a key */
  {
    sync_value v[NCOL] = {sync_int(INT64_MIN), sync_real(-0.0),
                          sync_text(TEXTS[5], strlen(TEXTS[5])),
                          sync_blob(big + 5, 300000)};
    sync_value w[NCOL] = {sync_null(), sync_real(NAN), sync_null(), sync_null()};
    sync_value u[NCOL] = {sync_int(INT64_MAX), sync_real(-INFINITY),
                          sync_text("", 0), sync_blob("", 0)};
    pg_put(c, 100, v);
    pg_put(c, 101, w);
    pg_put(c, 102, u);
    pg_put(c, 1, u); /* an update of a replica row */
  }
  pg_exec(c, "DELETE FROM items WHERE key = 2");
  pg_exec(c, "UPDATE items SET key = 200 WHERE key = -1");
  pg_exec(c, "UPDATE items SET s = 'from postgres \xe2\x9c\x93' WHERE key = 0");
  pg_exec(c, "INSERT INTO tags VALUES ('pg \xe2\x9c\x93', 'NaN', '\\x00ff')");
  catch_up(b);
  assert_same("types: postgres -> replica", S, c);
  {
    PGresult *r = PQexec(c, "SELECT count(*) FROM _sync_outbox");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
  }
  /* the Postgres rows carry the bridge's site in the server replica */
  {
    uint8_t site[16];
    sync_changes *it;
    sync_change ch;
    int found = 0;
    TU_OK(sync_env_site_id(pgb_state_env(b), site));
    TU_OK(sync_txn_begin(S, SYNC_TXN_RDONLY, &x));
    TU_OK(sync_changes_open(x, 0, &it));
    while (sync_changes_next(it, &ch) == 0)
      if (ch.table == 0 && sync_key_int_decode(ch.key.data) == 100) {
        assert_memory_equal(ch.row_stamp.site, site, 16);
        found = 1;
      }
    sync_changes_close(it);
    sync_txn_abort(x);
    assert_true(found);
  }
  /* no echo: another round moves nothing either way */
  pgb_stats_get(b, &s0);
  catch_up(b);
  pgb_stats_get(b, &s1);
  assert_true(s1.to_pg_rows == s0.to_pg_rows);
  assert_true(s1.to_replica_rows == s0.to_replica_rows);
  free(big);
  PQfinish(c);
  pgb_close(b);
}

#define KEYS 60

/* On a mismatch, each key of kill9 whose rows differ: as the model, the
 * server replica, the bridge's state replica and Postgres hold it (the
 * encoded columns, in hex), and the stamps of both replicas' rows. */
static void dump_row(const char *who, const rowset *rs, int64_t key) {
  size_t i, k;
  unsigned char kb[8];
  sync_key_int(key, kb);
  for (i = 0; i < rs->n; i++)
    if (rs->row[i][0] == 0 && !memcmp(rs->row[i] + 9, kb, 8)) {
      printf("  %-8s:", who);
      for (k = 17; k < rs->len[i] && k < 17 + 60; k++)
        printf("%02x", rs->row[i][k]);
      printf(" (len %zu)\n", rs->len[i]);
      return;
    }
  printf("  %-8s: absent\n", who);
}

static void dump_changes(const char *who, sync_env *env, int64_t key) {
  sync_txn *x;
  sync_changes *it;
  sync_change ch;
  unsigned c;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x)) return;
  if (!sync_changes_open(x, 0, &it)) {
    while (sync_changes_next(it, &ch) == 0)
      if (ch.table == 0 && sync_key_int_decode(ch.key.data) == key) {
        printf("  %-8s: version %llu cl %llu row hlc %llx site %02x%02x", who,
               (unsigned long long)ch.version,
               (unsigned long long)ch.causal_length,
               (unsigned long long)ch.row_stamp.hlc, ch.row_stamp.site[0],
               ch.row_stamp.site[1]);
        for (c = 0; c < ch.ncolumns; c++) {
          sync_stamp st, base;
          if (sync_changes_column(it, c, NULL, &st, &base) == 0)
            printf(" [c%u %llx/%02x base %llx]", c, (unsigned long long)st.hlc,
                   st.site[0], (unsigned long long)base.hlc);
        }
        printf("\n");
      }
    sync_changes_close(it);
  }
  sync_txn_abort(x);
}

static void kill9_explain(const mrow *m, const int64_t *keys, size_t nk,
                          pgb_bridge *b, PGconn *c) {
  rowset mo = {0}, re = {0}, st = {0}, pg = {0};
  size_t i;
  unsigned char kb[8];
  model_rows(m, keys, nk, &mo);
  replica_rows(pgb_server_env(b), &re);
  replica_rows(pgb_state_env(b), &st);
  pg_rows(c, &pg);
  for (i = 0; i < nk; i++) {
    const rowset *sets[3] = {&re, &st, &pg};
    int bad = 0, s;
    size_t a, z;
    const unsigned char *mr = NULL, *xr;
    size_t ml = 0, xl;
    sync_key_int(keys[i], kb);
    for (a = 0; a < mo.n; a++)
      if (mo.row[a][0] == 0 && !memcmp(mo.row[a] + 9, kb, 8)) {
        mr = mo.row[a];
        ml = mo.len[a];
      }
    for (s = 0; s < 3; s++) {
      xr = NULL;
      xl = 0;
      for (z = 0; z < sets[s]->n; z++)
        if (sets[s]->row[z][0] == 0 && !memcmp(sets[s]->row[z] + 9, kb, 8)) {
          xr = sets[s]->row[z];
          xl = sets[s]->len[z];
        }
      if (!mr != !xr || ml != xl || (mr && memcmp(mr, xr, ml))) bad = 1;
    }
    if (!bad) continue;
    printf("pgbridge: kill9: key %lld (%s side) differs\n", (long long)keys[i],
           i < KEYS ? "replica" : "postgres");
    dump_row("model", &mo, keys[i]);
    dump_row("replica", &re, keys[i]);
    dump_row("state", &st, keys[i]);
    dump_row("postgres", &pg, keys[i]);
    dump_changes("replica", pgb_server_env(b), keys[i]);
    dump_changes("state", pgb_state_env(b), keys[i]);
  }
  rowset_free(&mo);
  rowset_free(&re);
  rowset_free(&st);
  rowset_free(&pg);
}

static void test_kill9(void **state) {
  char db[64];
  uint64_t rs = seed ^ 0x6b696c6c;
  mrow m[2 * KEYS];
  int64_t keys[2 * KEYS];
  int round, kills = 0, same;
  size_t i;
  pgb_bridge *b;
  PGconn *c;
  rowset want = {0}, got = {0};
  (void)state;
  fresh("kill", db, sizeof db);
  memset(m, 0, sizeof m);
  for (i = 0; i < 2 * KEYS; i++) keys[i] = i < KEYS ? (int64_t)i : 1000 + (int64_t)i;
  /* the tables and triggers exist before Postgres writes */
  b = bridge_open(db, "kill");
  pgb_close(b);
  c = pg_connect("kill");
  for (round = 0; round < 8; round++) {
    pid_t pid = bridge_child(db, "kill");
    sync_env *S = open_replica(db);
    double until = now_s() + 0.05 + (double)(rng_next(&rs) % 300) / 1000.0;
    while (now_s() < until) {
      size_t j = rng_next(&rs) % KEYS;
      int del = rng_next(&rs) % 4 == 0;
      /* the replica's keys */
      if (del) {
        replica_del(S, keys[j]);
        m[j].live = 0;
      } else {
        random_row(&rs, &m[j]);
        replica_put(S, keys[j], m[j].v);
      }
      /* Postgres' keys */
      j = KEYS + rng_next(&rs) % KEYS;
      if (del) {
        pg_del(c, keys[j]);
        m[j].live = 0;
      } else {
        random_row(&rs, &m[j]);
        pg_put(c, keys[j], m[j].v);
      }
    }
    sync_env_close(S);
    kill_child(pid);
    kills++;
  }
  b = bridge_open(db, "kill");
  catch_up(b);
  model_rows(m, keys, 2 * KEYS, &want);
  replica_rows(pgb_server_env(b), &got);
  printf("pgbridge: kill9: %d kills\n", kills);
  same = rowset_same("kill9: model / replica", &want, &got);
  rowset_free(&got);
  pg_rows(c, &got);
  same &= rowset_same("kill9: model / postgres", &want, &got);
  if (!same) kill9_explain(m, keys, 2 * KEYS, b, c);
  assert_true(same);
  rowset_free(&got);
  rowset_free(&want);
  PQfinish(c);
  pgb_close(b);
}

/* Postgres writes a key again while older entries of it wait in the
 * outbox: the state replica, which has applied only the older ones, must
 * not write its stale row back over the newer one.  The bridge once did
 * (the flake of test_kill9, whose restarts leave a backlog): it deleted
 * a row that a client had just written again, the client's next DELETE
 * then found nothing and was never captured, and the row came back for
 * good from the outbox. */
static void test_outbox_pending(void **state) {
  char db[64];
  pgb_bridge *b;
  PGconn *c;
  mrow m[4];
  uint64_t rs = seed ^ 0x70656e64;
  rowset want = {0}, got = {0};
  const int64_t keys[4] = {0, 1, 2, 3};
  size_t i;
  (void)state;
  fresh("pending", db, sizeof db);
  b = bridge_open_batch(db, "pending", 2); /* two outbox entries a step */
  c = pg_connect("pending");
  for (i = 0; i < 4; i++) random_row(&rs, &m[i]);
  m[0].live = 0; /* key 0 is never written */
  pg_put(c, 1, m[1].v);
  pg_put(c, 3, m[3].v);
  catch_up(b);
  pg_del(c, 1);
  random_row(&rs, &m[3]);
  pg_put(c, 3, m[3].v); /* these two are the next step's batch */
  pg_put(c, 2, m[2].v);
  random_row(&rs, &m[1]);
  pg_put(c, 1, m[1].v);
  pg_del(c, 3);
  m[3].live = 0;
  assert_int_equal(pgb_step(b, NULL), 0);
  /* Postgres still holds what its clients wrote last */
  pg_rows(c, &got);
  model_rows(m, keys, 4, &want);
  assert_true(
      rowset_same("outbox pending: postgres after one step", &want, &got));
  rowset_free(&got);
  rowset_free(&want);
  /* and a client's delete now reaches the replica */
  pg_del(c, 1);
  m[1].live = 0;
  catch_up(b);
  model_rows(m, keys, 4, &want);
  replica_rows(pgb_server_env(b), &got);
  assert_true(rowset_same("outbox pending: model / replica", &want, &got));
  rowset_free(&got);
  pg_rows(c, &got);
  assert_true(rowset_same("outbox pending: model / postgres", &want, &got));
  rowset_free(&got);
  rowset_free(&want);
  PQfinish(c);
  pgb_close(b);
}

/* Rows never written before stream straight into the table while the
 * bridge reads them; one that Postgres holds after all (here written
 * uncaptured, as a client's insert racing the batch would be) fails the
 * COPY well after its first pieces were sent, and the batch goes the
 * general way, the replica's row replacing Postgres'. */
static void test_fresh_there(void **state) {
  char db[64];
  pgb_bridge *b;
  sync_env *S;
  sync_txn *x;
  PGconn *c;
  uint64_t rs = seed ^ 0x66726573;
  pgb_stats st;
  mrow m;
  int64_t i;
  (void)state;
  fresh("fresh", db, sizeof db);
  b = bridge_open_batch(db, "fresh", 20000);
  S = pgb_server_env(b);
  c = pg_connect("fresh");
  pg_exec(c, "SET sync.bridge = 'on'"); /* this session is not captured */
  random_row(&rs, &m);
  pg_put(c, 7000, m.v);
  TU_OK(sync_txn_begin(S, 0, &x));
  for (i = 0; i < 8000; i++) { /* about 800 KiB of COPY */
    unsigned char kb[8];
    random_row(&rs, &m);
    sync_key_int(i, kb);
    TU_OK(sync_put(x, 0, kb, 8, m.v, NCOL));
  }
  TU_OK(sync_txn_commit(x));
  catch_up(b);
  pgb_stats_get(b, &st);
  assert_int_equal(st.batches, 1);
  assert_same("fresh rows, one already there", S, c);
  PQfinish(c);
  pgb_close(b);
}

/* TRUNCATE in Postgres deletes, everywhere, the rows Postgres held at
 * that moment, like a DELETE of each: a row a device changed after it
 * reached Postgres goes too (the delete wins, as a DELETE's would), a
 * row that had not reached Postgres yet stays and arrives after, and a
 * row Postgres held that the replica had not got yet is deleted as it
 * arrives.  A TRUNCATE rolled back captures nothing; one in a REPEATABLE
 * READ transaction is refused (its snapshot may miss rows that TRUNCATE
 * removes).  Before the capture
 * trigger for TRUNCATE the replica kept every row and sent them no more. */
static void test_truncate(void **state) {
  char db[64];
  pgb_bridge *b;
  sync_env *S;
  PGconn *c;
  mrow m[8];
  uint64_t rs = seed ^ 0x7472756e;
  rowset want = {0}, got = {0};
  const int64_t keys[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  int64_t i;
  (void)state;
  fresh("trunc", db, sizeof db);
  b = bridge_open(db, "trunc");
  S = pgb_server_env(b);
  c = pg_connect("trunc");
  for (i = 0; i < 4; i++) { /* 0-3 from the replica */
    random_row(&rs, &m[i]);
    replica_put(S, i, m[i].v);
  }
  for (i = 4; i < 6; i++) { /* 4-5 from Postgres */
    random_row(&rs, &m[i]);
    pg_put(c, i, m[i].v);
  }
  catch_up(b);
  assert_same("truncate: before", S, c);
  pg_exec(c, "BEGIN");
  pg_exec(c, "TRUNCATE items");
  pg_exec(c, "ROLLBACK");
  catch_up(b);
  assert_same("truncate: rolled back", S, c);
  /* an older snapshot than the truncation's cannot list what it removes */
  pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ");
  {
    PGresult *r = PQexec(c, "TRUNCATE items");
    printf("pgbridge: truncate in repeatable read: %s",
           PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_non_null(strstr(PQresultErrorMessage(r), "needs READ COMMITTED"));
    PQclear(r);
  }
  pg_exec(c, "ROLLBACK");
  random_row(&rs, &m[1]); /* a device changes 1 after it reached Postgres */
  replica_put(S, 1, m[1].v);
  random_row(&rs, &m[6]); /* 6 has not reached Postgres */
  replica_put(S, 6, m[6].v);
  random_row(&rs, &m[7]); /* 7 is in Postgres, not yet in the replica */
  pg_put(c, 7, m[7].v);
  pg_exec(c, "TRUNCATE items");
  for (i = 0; i < 8; i++) m[i].live = i == 6;
  catch_up(b);
  model_rows(m, keys, 8, &want);
  replica_rows(S, &got);
  assert_true(rowset_same("truncate: model / replica", &want, &got));
  rowset_free(&got);
  pg_rows(c, &got);
  assert_true(rowset_same("truncate: model / postgres", &want, &got));
  rowset_free(&got);
  rowset_free(&want);
  /* the table lives on: rows written after it cross both ways */
  random_row(&rs, &m[2]);
  replica_put(S, 2, m[2].v);
  random_row(&rs, &m[3]);
  pg_put(c, 3, m[3].v);
  catch_up(b);
  assert_same("truncate: after", S, c);
  PQfinish(c);
  pgb_close(b);
}

/* The plan of a query, one line per row. */
static void explain(PGconn *c, const char *sql, char *out, size_t cap) {
  char q[1024];
  PGresult *r;
  int i;
  size_t n = 0;
  snprintf(q, sizeof q, "EXPLAIN %s", sql);
  r = PQexec(c, q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    print_error("%s: %s", q, PQresultErrorMessage(r));
    fail();
  }
  out[0] = 0;
  for (i = 0; i < PQntuples(r) && n + 1 < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s\n", PQgetvalue(r, i, 0));
  PQclear(r);
}

/* What the bridge asks of the outbox goes through an index, however
 * large the outbox grows (a backend's bulk import, a bridge that was
 * down): the entries of a table in order, the entries of a key (asked
 * for each row written to Postgres: a key with entries waiting is left
 * alone), and the oldest entries (the lag).  The same predicates as the
 * bridge's statements, over 20,000 entries (400 of tags).  Without the index on
 * (tbl, r[1]) every row written looked at every entry of its table. */
static void test_outbox_index(void **state) {
  char db[64], plan[4096];
  pgb_bridge *b;
  PGconn *c;
  (void)state;
  fresh("oindex", db, sizeof db);
  b = bridge_open(db, "oindex");
  c = pg_connect("oindex");
  pg_exec(c, "INSERT INTO _sync_outbox (tbl, op, r) SELECT "
             "CASE WHEN g % 50 = 0 THEN 'tags' ELSE 'items' END, 'u', "
             "ARRAY[g::text, '1', NULL, NULL, NULL] FROM "
             "generate_series(1, 20000) g");
  pg_exec(c, "INSERT INTO items (key) SELECT g FROM generate_series(1, 50) g");
  pg_exec(c, "ANALYZE _sync_outbox");
  pg_exec(c, "ANALYZE items");
  explain(c,
          "SELECT 1 FROM items s WHERE NOT EXISTS (SELECT 1 FROM "
          "_sync_outbox o WHERE o.tbl = 'items' AND o.r[1] = s.key::text)",
          plan, sizeof plan);
  printf("pgbridge: outbox index: a key's entries:\n%s", plan);
  assert_non_null(strstr(plan, "_sync_outbox_key"));
  explain(c,
          "SELECT id FROM _sync_outbox WHERE tbl = 'tags' ORDER BY id "
          "LIMIT 50",
          plan, sizeof plan);
  printf("pgbridge: outbox index: a table's entries:\n%s", plan);
  assert_non_null(strstr(plan, "_sync_outbox_tbl"));
  assert_null(strstr(plan, "Seq Scan"));
  explain(c, "SELECT at FROM _sync_outbox ORDER BY id LIMIT 100", plan,
          sizeof plan);
  printf("pgbridge: outbox index: the oldest entries:\n%s", plan);
  assert_non_null(strstr(plan, "_sync_outbox_pkey"));
  assert_null(strstr(plan, "Seq Scan"));
  pg_exec(c, "DELETE FROM _sync_outbox");
  PQfinish(c);
  pgb_close(b);
}

static void test_pg_restart(void **state) {
  char db[64];
  pgb_bridge *b;
  sync_env *S;
  PGconn *c;
  uint64_t rs = seed ^ 0x72737472;
  pgb_stats st;
  int i, rc;
  mrow m;
  (void)state;
  fresh("restart", db, sizeof db);
  b = bridge_open(db, "restart");
  S = pgb_server_env(b);
  for (i = 0; i < 50; i++) {
    random_row(&rs, &m);
    replica_put(S, i, m.v);
  }
  catch_up(b);
  assert_int_equal(pg_stop("immediate"), 0);
  for (i = 50; i < 100; i++) {
    random_row(&rs, &m);
    replica_put(S, i, m.v);
  }
  rc = pgb_step(b, NULL);
  printf("pgbridge: with postgres down: %s\n", pgb_errmsg(b));
  assert_int_equal(rc, PGB_EPG);
  assert_non_null(strstr(pgb_errmsg(b), "postgres"));
  rc = pgb_step(b, NULL); /* still down: it tries to connect, fails */
  assert_int_equal(rc, PGB_EPG);
  pgb_stats_get(b, &st);
  assert_int_equal(st.connected, 0);
  assert_int_equal(pg_start(), 0);
  catch_up(b);
  pgb_stats_get(b, &st);
  assert_int_equal(st.connected, 1);
  assert_true(st.errors >= 2);
  c = pg_connect("restart");
  assert_same("pg_restart", S, c);
  PQfinish(c);
  pgb_close(b);
}

static void test_altered(void **state) {
  char db[64];
  pgb_bridge *b;
  sync_env *S;
  PGconn *c;
  uint64_t rs = seed ^ 0x616c74;
  int i, rc;
  mrow m;
  (void)state;
  fresh("altered", db, sizeof db);
  b = bridge_open(db, "altered");
  S = pgb_server_env(b);
  c = pg_connect("altered");
  for (i = 0; i < 30; i++) {
    random_row(&rs, &m);
    replica_put(S, i, m.v);
  }
  catch_up(b);
  pg_exec(c, "ALTER TABLE items ALTER COLUMN r TYPE text USING r::text");
  for (i = 20; i < 60; i++) {
    random_row(&rs, &m);
    replica_put(S, i, m.v);
  }
  replica_del(S, 3);
  rc = pgb_step(b, NULL);
  printf("pgbridge: altered: %s\n", pgb_errmsg(b));
  assert_int_equal(rc, PGB_EPG);
  assert_non_null(strstr(pgb_errmsg(b), "table items: column \"r\" is text in "
                                        "PostgreSQL, double precision expected"));
  assert_int_equal(pgb_step(b, NULL), PGB_EPG); /* and again, nothing moves */
  pg_exec(c, "ALTER TABLE items ALTER COLUMN r TYPE double precision USING "
             "r::double precision");
  pg_exec(c, "ALTER TABLE items DROP COLUMN s");
  assert_int_equal(pgb_step(b, NULL), PGB_EPG);
  printf("pgbridge: altered: %s\n", pgb_errmsg(b));
  assert_non_null(strstr(pgb_errmsg(b), "has no column \"s\""));
  pg_exec(c, "ALTER TABLE items ADD COLUMN s text");
  pg_exec(c, "UPDATE _sync_bridge SET version = 0"); /* s was emptied: resend */
  catch_up(b);
  assert_same("altered, then altered back", S, c);
  /* A constraint the replica's rows break fails the COPY of new rows as
   * they stream: the batch rolls back whole, the connection stays
   * usable, and once the constraint goes the rows arrive. */
  pg_exec(c, "ALTER TABLE items ADD CONSTRAINT i_set CHECK (i IS NOT NULL) "
             "NOT VALID");
  for (i = 100; i < 3100; i++) { /* new rows: they stream */
    random_row(&rs, &m);
    if (i == 3000) m.v[0] = sync_null();
    replica_put(S, i, m.v);
  }
  rc = pgb_step(b, NULL);
  printf("pgbridge: altered: %s\n", pgb_errmsg(b));
  assert_int_equal(rc, PGB_EPG);
  assert_non_null(strstr(pgb_errmsg(b), "violates check constraint"));
  assert_int_equal(pgb_step(b, NULL), PGB_EPG);
  pg_exec(c, "ALTER TABLE items DROP CONSTRAINT i_set");
  catch_up(b);
  assert_same("a constraint broken, then dropped", S, c);
  PQfinish(c);
  pgb_close(b);
}

static void test_concurrent(void **state) {
  char db[64];
  uint64_t rs = seed ^ 0x636f6e63;
  pgb_bridge *b;
  PGconn *c;
  pid_t pid;
  sync_env *S;
  double until;
  mrow m;
  uint64_t nconf = 0;
  (void)state;
  fresh("conc", db, sizeof db);
  b = bridge_open(db, "conc");
  pgb_close(b);
  c = pg_connect("conc");
  pid = bridge_child(db, "conc");
  S = open_replica(db);
  until = now_s() + 1.5;
  while (now_s() < until) {
    int64_t key = (int64_t)(rng_next(&rs) % 20);
    uint64_t x = rng_next(&rs);
    if (x % 2) {
      if (x % 10 == 1) replica_del(S, key);
      else {
        random_row(&rs, &m);
        replica_put(S, key, m.v);
      }
    } else {
      if (x % 10 == 0) pg_del(c, key);
      else {
        random_row(&rs, &m);
        pg_put(c, key, m.v);
      }
    }
  }
  sync_env_close(S);
  sleep_ms(200);
  kill_child(pid);
  b = bridge_open(db, "conc");
  catch_up(b);
  assert_same("concurrent: replica / postgres", pgb_server_env(b), c);
  {
    rowset x1 = {0}, x2 = {0};
    sync_txn *x;
    sync_conflicts *it;
    sync_conflict cf;
    replica_rows(pgb_server_env(b), &x1);
    replica_rows(pgb_state_env(b), &x2);
    assert_true(rowset_same("concurrent: replica / bridge state", &x1, &x2));
    rowset_free(&x1);
    rowset_free(&x2);
    TU_OK(sync_txn_begin(pgb_server_env(b), SYNC_TXN_RDONLY, &x));
    TU_OK(sync_conflicts_open(x, 0, &it));
    while (sync_conflicts_next(it, &cf) == 0) nconf++;
    sync_conflicts_close(it);
    sync_txn_abort(x);
    printf("pgbridge: concurrent: %llu conflicts in the replica's log\n",
           (unsigned long long)nconf);
  }
  PQfinish(c);
  pgb_close(b);
}

/* ---- counters ---------------------------------------------------------- */

#define ST_NAME 0u
#define ST_QTY 1u
#define ST_HITS 2u
static const sync_column_def stock_cols[3] = {
    {"name", SYNC_TEXT, 0},
    {"qty", SYNC_COUNTER, 0},
    {"hits", SYNC_COUNTER, 0},
};
static const sync_table_def stock_tables[1] = {
    {"stock", SYNC_TEXT, stock_cols, 3},
};

/* Counter col of key in env; INT64_MIN when there is no live row. */
static int64_t ctr_get(sync_env *env, const char *key, unsigned col) {
  sync_txn *x;
  sync_value v[3];
  int rc;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  rc = sync_get(x, 0, key, strlen(key), v, 3);
  sync_txn_abort(x);
  if (rc == SYNC_NOTFOUND) return INT64_MIN;
  TU_OK(rc);
  return v[col].i;
}

static void ctr_add(sync_env *env, const char *key, unsigned col, int64_t d) {
  sync_txn *x;
  TU_OK(sync_txn_begin(env, 0, &x));
  TU_OK(sync_counter_add(x, 0, key, strlen(key), col, d));
  TU_OK(sync_txn_commit(x));
}

/* The first column of the first row of sql as an integer; INT64_MIN
 * for no row or NULL. */
static int64_t pg_int(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int64_t v = INT64_MIN;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    print_error("%s: %s", sql, PQresultErrorMessage(r));
    fail();
  }
  if (PQntuples(r) && !PQgetisnull(r, 0, 0))
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}

static int64_t pg_ctr(PGconn *c, const char *key, const char *col) {
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT %s FROM stock WHERE key = '%s'", col, key);
  return pg_int(c, sql);
}

/* Everything recv lacks of send, in process (a device's session). */
static void pull(sync_env *recv, sync_env *send) {
  uint8_t site[16];
  int last = 0, n;
  TU_OK(sync_env_site_id(send, site));
  for (n = 0; !last; n++) {
    sync_txn *rt, *st;
    sync_request *req;
    sync_delta *d;
    int rc;
    assert_true(n < 1000);
    TU_OK(sync_txn_begin(recv, SYNC_TXN_RDONLY, &rt));
    TU_OK(sync_request_make(rt, site, &req));
    sync_txn_abort(rt);
    TU_OK(sync_txn_begin(send, 0, &st));
    rc = sync_request_ack(st, req);
    if (rc != SYNC_EHISTORY) TU_OK(rc);
    TU_OK(sync_delta_make(st, req, NULL, &d));
    TU_OK(sync_txn_commit(st));
    sync_request_free(req);
    TU_OK(sync_txn_begin(recv, 0, &rt));
    TU_OK(sync_delta_apply(rt, d, SYNC_APPLY_MERGE, NULL));
    TU_OK(sync_txn_commit(rt));
    last = sync_delta_last(d);
    sync_delta_free(d);
  }
}

/* The stock rows as text, key order, from the replica and Postgres. */
static void stock_text(sync_env *env, PGconn *c, char **rep, char **pg) {
  size_t cap = 1 << 16, len = 0;
  sync_txn *x;
  sync_cursor *cur;
  sync_key k;
  sync_value v[3];
  PGresult *r;
  int rc;
  *rep = malloc(cap);
  **rep = 0;
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_cursor_open(x, 0, &cur));
  while ((rc = sync_cursor_next(cur, &k, v, 3)) == 0)
    len += (size_t)snprintf(*rep + len, cap - len, "%.*s|%.*s|%lld|%lld\n",
                            (int)k.len, (const char *)k.data,
                            v[0].type ? (int)v[0].len : 4,
                            v[0].type ? (const char *)v[0].data : "NULL",
                            (long long)v[1].i, (long long)v[2].i);
  TU_RC(rc, SYNC_NOTFOUND);
  sync_cursor_close(cur);
  sync_txn_abort(x);
  r = PQexec(c, "SELECT coalesce(string_agg(key || '|' || coalesce(name, "
                "'NULL') || '|' || qty || '|' || hits || E'\\n', '' ORDER BY "
                "key), '') FROM stock");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  *pg = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
}

static void stock_same(const char *what, sync_env *env, PGconn *c) {
  char *a, *b;
  stock_text(env, c, &a, &b);
  if (strcmp(a, b)) {
    printf("pgbridge: %s: the replica holds\n%sand postgres\n%s", what, a, b);
    fail();
  }
  printf("pgbridge: %s: %zu bytes of rows alike\n", what, strlen(a));
  free(a);
  free(b);
}

static void test_counter(void **state) {
  char db[64], dev_path[80];
  pgb_bridge *b;
  sync_env *S, *D;
  PGconn *c;
  pgb_stats s0, s1;
  sync_txn *x;
  (void)state;
  fresh_schema("ctr", db, sizeof db, stock_tables, 1);
  snprintf(dev_path, sizeof dev_path, "%s.dev", db);
  tu_remove_db(dev_path);
  TU_OK(sync_env_create(NULL, &D));
  TU_OK(sync_env_set_schema(D, stock_tables, 1));
  TU_OK(sync_env_open(D, dev_path, 0));
  b = bridge_open_opts(db, "ctr", 500, 1); /* with the audit columns */
  S = pgb_server_env(b);
  c = pg_connect("ctr");
  /* the table: the sum as bigint, 0 by default; its companion */
  assert_int_equal(pg_int(c, "SELECT count(*) FROM information_schema.columns "
                             "WHERE table_name = 'stock' AND column_name = "
                             "'qty' AND data_type = 'bigint' AND is_nullable "
                             "= 'NO' AND column_default = '0'"),
                   1);
  assert_int_equal(pg_int(c, "SELECT count(*) FROM information_schema.columns "
                             "WHERE table_name = 'stock' AND column_name IN "
                             "('_sync_others_1', '_sync_others_2')"),
                   2);
  /* Device adds reach Postgres as the sum. */
  ctr_add(D, "a", ST_QTY, 5);
  ctr_add(S, "a", ST_QTY, 3);
  ctr_add(S, "b", ST_HITS, 1);
  {
    sync_value v[3] = {sync_text("bolt", 4), sync_null(), sync_null()};
    TU_OK(sync_txn_begin(S, 0, &x));
    TU_OK(sync_put(x, 0, "a", 1, v, 3));
    TU_OK(sync_txn_commit(x));
  }
  pull(S, D);
  catch_up(b);
  assert_int_equal(pg_ctr(c, "a", "qty"), 8);
  assert_int_equal(pg_ctr(c, "a", "hits"), 0);
  assert_int_equal(pg_ctr(c, "b", "hits"), 1);
  assert_int_equal(pg_ctr(c, "a", "_sync_others_1"), 8); /* all devices' */
  stock_same("counter: devices -> postgres", S, c);
  /* An UPDATE in Postgres reaches the devices as an add. */
  pg_exec(c, "UPDATE stock SET qty = qty + 10 WHERE key = 'a'");
  catch_up(b);
  assert_int_equal(ctr_get(S, "a", ST_QTY), 18);
  pull(D, S);
  assert_int_equal(ctr_get(D, "a", ST_QTY), 18);
  stock_same("counter: postgres -> replica", S, c);
  /* Both at once: they sum. */
  pg_exec(c, "UPDATE stock SET qty = qty - 4, name = 'nut' WHERE key = 'a'");
  ctr_add(D, "a", ST_QTY, 7);
  ctr_add(S, "a", ST_QTY, 1);
  pull(S, D);
  catch_up(b);
  pull(D, S);
  assert_int_equal(ctr_get(S, "a", ST_QTY), 22);
  assert_int_equal(ctr_get(D, "a", ST_QTY), 22);
  assert_int_equal(pg_ctr(c, "a", "qty"), 22);
  stock_same("counter: both at once", S, c);
  /* A value set outright is the difference from what Postgres held; an
   * add made meanwhile still counts. */
  pg_exec(c, "UPDATE stock SET qty = 100 WHERE key = 'a'");
  ctr_add(D, "a", ST_QTY, 2);
  pull(S, D);
  catch_up(b);
  assert_int_equal(ctr_get(S, "a", ST_QTY), 102);
  assert_int_equal(pg_ctr(c, "a", "qty"), 102);
  /* Rows inserted in Postgres; a key deleted and inserted again in one
   * batch starts from 0; a key moved takes its value along. */
  pg_exec(c, "INSERT INTO stock (key, qty) VALUES ('c', 7)");
  pg_exec(c, "INSERT INTO stock (key, name) VALUES ('e', 'x')");
  catch_up(b);
  assert_int_equal(ctr_get(S, "c", ST_QTY), 7);
  assert_int_equal(ctr_get(S, "e", ST_QTY), 0);
  pg_exec(c, "DELETE FROM stock WHERE key = 'c'");
  pg_exec(c, "INSERT INTO stock (key, qty, hits) VALUES ('c', 3, 1)");
  catch_up(b);
  assert_int_equal(ctr_get(S, "c", ST_QTY), 3);
  assert_int_equal(ctr_get(S, "c", ST_HITS), 1);
  pg_exec(c, "UPDATE stock SET key = 'd' WHERE key = 'c'");
  catch_up(b);
  assert_int_equal(ctr_get(S, "c", ST_QTY), INT64_MIN);
  assert_int_equal(ctr_get(S, "d", ST_QTY), 3);
  stock_same("counter: inserts, delete and insert, a key moved", S, c);
  /* A client cannot move the companion: the value stays the sum. */
  pg_exec(c, "UPDATE stock SET _sync_others_1 = 1000 WHERE key = 'a'");
  pg_exec(c, "INSERT INTO stock (key, qty, _sync_others_1) VALUES ('f', 4, "
             "50)");
  catch_up(b);
  assert_int_equal(ctr_get(S, "a", ST_QTY), 102);
  assert_int_equal(ctr_get(S, "f", ST_QTY), 4);
  /* Entries applied again (as after a crash between the replica's
   * commit and the outbox delete) add nothing. */
  pg_exec(c, "UPDATE stock SET qty = qty + 1 WHERE key = 'a'");
  pg_exec(c, "UPDATE stock SET hits = hits + 2 WHERE key = 'd'");
  pg_exec(c, "DELETE FROM stock WHERE key = 'f'");
  pg_exec(c, "INSERT INTO stock (key, qty) VALUES ('f', 9)");
  pg_exec(c, "CREATE TABLE saved AS SELECT tbl, op, at, r FROM _sync_outbox");
  catch_up(b);
  assert_int_equal(ctr_get(S, "a", ST_QTY), 103);
  assert_int_equal(ctr_get(S, "d", ST_HITS), 3);
  assert_int_equal(ctr_get(S, "f", ST_QTY), 9);
  pg_exec(c, "INSERT INTO _sync_outbox (tbl, op, at, r) SELECT tbl, op, at, "
             "r FROM saved");
  ctr_add(D, "a", ST_QTY, 1); /* and a device adds meanwhile */
  pull(S, D);
  catch_up(b);
  assert_int_equal(pg_int(c, "SELECT count(*) FROM _sync_outbox"), 0);
  assert_int_equal(ctr_get(S, "a", ST_QTY), 104);
  assert_int_equal(ctr_get(S, "d", ST_HITS), 3);
  assert_int_equal(ctr_get(S, "f", ST_QTY), 9);
  stock_same("counter: entries applied again", S, c);
  pull(D, S);
  assert_int_equal(ctr_get(D, "a", ST_QTY), 104);
  /* No echo: another round moves nothing. */
  pgb_stats_get(b, &s0);
  catch_up(b);
  pgb_stats_get(b, &s1);
  assert_true(s1.to_pg_rows == s0.to_pg_rows);
  assert_true(s1.to_replica_rows == s0.to_replica_rows);
  sync_env_close(D);
  tu_remove_db(dev_path);
  PQfinish(c);
  pgb_close(b);
}

/* One bridge step on a thread of its own. */
typedef struct step_arg {
  pgb_bridge *b;
  int rc;
} step_arg;

static void *step_main(void *p) {
  step_arg *a = (step_arg *)p;
  a->rc = pgb_step(a->b, NULL);
  return NULL;
}

/* A client inserts a key that Postgres does not hold while the bridge
 * writes the replica's row of it (not a fresh row: it was deleted and
 * inserted again, so it goes through the upsert, whose snapshot sees
 * neither the client's row nor its outbox entry, and whose ON CONFLICT
 * waits for the client and then writes over its row).  Had the batch
 * committed, a second client write of the row would start from the
 * bridge's values, and the newest entry then undo the first one's add;
 * the bridge sees the entry after the upsert and rolls the batch back. */
static void test_counter_race(void **state) {
  char db[64];
  pgb_bridge *b;
  sync_env *S;
  PGconn *c, *c2;
  pthread_t th;
  step_arg a;
  int i, waiting = 0;
  (void)state;
  fresh_schema("ctrrace", db, sizeof db, stock_tables, 1);
  b = bridge_open(db, "ctrrace");
  S = pgb_server_env(b);
  c = pg_connect("ctrrace");
  c2 = pg_connect("ctrrace");
  pg_exec(c, "INSERT INTO stock (key, qty) VALUES ('x', 1)");
  catch_up(b);
  pg_exec(c, "DELETE FROM stock WHERE key = 'x'");
  catch_up(b);
  ctr_add(S, "x", ST_QTY, 5); /* inserted again, on the replica */
  pg_exec(c2, "BEGIN");
  pg_exec(c2, "INSERT INTO stock (key, qty) VALUES ('x', 2)");
  a.b = b;
  a.rc = -1;
  assert_int_equal(pthread_create(&th, NULL, step_main, &a), 0);
  for (i = 0; i < 1000 && !waiting; i++) {
    waiting = pg_int(c, "SELECT count(*) FROM pg_stat_activity WHERE datname "
                        "= 'ctrrace' AND wait_event_type = 'Lock'") > 0;
    if (!waiting) sleep_ms(10);
  }
  assert_true(waiting); /* the bridge waits for the client's insert */
  pg_exec(c2, "COMMIT");
  pthread_join(th, NULL);
  assert_int_equal(a.rc, 0);
  pg_exec(c2, "UPDATE stock SET qty = qty + 1 WHERE key = 'x'");
  catch_up(b);
  assert_int_equal(ctr_get(S, "x", ST_QTY), 8);
  assert_int_equal(pg_ctr(c, "x", "qty"), 8);
  stock_same("counter race", S, c);
  PQfinish(c2);
  PQfinish(c);
  pgb_close(b);
}

/* Adds from both sides to the same keys, the bridge killed at random
 * moments (in the middle of applying the outbox, of writing Postgres, of
 * the pull or the push): every add counts once, on the replica and in
 * Postgres.  Postgres' adds are UPDATE qty = qty + d (an upsert for a key
 * it does not hold yet), so each builds on what the bridge last wrote. */
static void test_counter_kill9(void **state) {
  char db[64];
  uint64_t rs = seed ^ 0x63746b39;
  int64_t want[10] = {0};
  int round, kills = 0, k, bad = 0;
  unsigned long nrep = 0, npg = 0;
  pgb_bridge *b;
  PGconn *c;
  (void)state;
  fresh_schema("ctrkill", db, sizeof db, stock_tables, 1);
  b = bridge_open(db, "ctrkill");
  pgb_close(b);
  c = pg_connect("ctrkill");
  for (round = 0; round < 8; round++) {
    pid_t pid = bridge_child(db, "ctrkill");
    sync_env *S = open_replica(db);
    double until = now_s() + 0.05 + (double)(rng_next(&rs) % 300) / 1000.0;
    while (now_s() < until) {
      char key[8], dv[24];
      int64_t d = (int64_t)(rng_next(&rs) % 9) - 3;
      const char *pv[2];
      PGresult *r;
      k = (int)(rng_next(&rs) % 10);
      snprintf(key, sizeof key, "k%d", k);
      if (!d) d = 6;
      if (rng_next(&rs) % 2) {
        ctr_add(S, key, ST_QTY, d);
        nrep++;
      } else {
        snprintf(dv, sizeof dv, "%lld", (long long)d);
        pv[0] = key;
        pv[1] = dv;
        r = PQexecParams(c,
                         "INSERT INTO stock (key, qty) VALUES ($1, $2) ON "
                         "CONFLICT (key) DO UPDATE SET qty = stock.qty + $2",
                         2, NULL, pv, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        npg++;
      }
      want[k] += d;
    }
    sync_env_close(S);
    kill_child(pid);
    kills++;
  }
  b = bridge_open(db, "ctrkill");
  catch_up(b);
  printf("pgbridge: counter kill9: %d kills, %lu adds on the replica, %lu in "
         "postgres\n",
         kills, nrep, npg);
  for (k = 0; k < 10; k++) {
    char key[8];
    int64_t r, p;
    snprintf(key, sizeof key, "k%d", k);
    r = ctr_get(pgb_server_env(b), key, ST_QTY);
    p = pg_ctr(c, key, "qty");
    if (r == INT64_MIN) r = 0; /* never written */
    if (p == INT64_MIN) p = 0;
    if (r != want[k] || p != want[k]) {
      printf("pgbridge: counter kill9: %s: want %lld, replica %lld, "
             "postgres %lld\n",
             key, (long long)want[k], (long long)r, (long long)p);
      bad = 1;
    }
  }
  assert_false(bad);
  stock_same("counter kill9", pgb_server_env(b), c);
  PQfinish(c);
  pgb_close(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_types),      cmocka_unit_test(test_kill9),
      cmocka_unit_test(test_outbox_pending), cmocka_unit_test(test_fresh_there),
      cmocka_unit_test(test_truncate), cmocka_unit_test(test_outbox_index),
      cmocka_unit_test(test_pg_restart), cmocka_unit_test(test_altered),
      cmocka_unit_test(test_concurrent), cmocka_unit_test(test_counter),
      cmocka_unit_test(test_counter_race), cmocka_unit_test(test_counter_kill9),
  };
  if (getenv("SYNC_PG_ONLY")) cmocka_set_test_filter(getenv("SYNC_PG_ONLY"));
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
