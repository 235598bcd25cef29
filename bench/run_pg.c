/*
 * run_pg.c - the PostgreSQL bridge (tools/pgbridge/, docs/PGBRIDGE.md)
 * against a PostgreSQL 15 that the workload starts itself in a temporary
 * directory (as nobody when run as root), on a Unix socket, with fsync
 * off on both sides' behalf (the figures are the bridge's cost, not the
 * disk's).  Rows: --rows / 10, between 10,000 and 100,000, of a W1-like
 * table (integer key; an integer, a double, 24 bytes of text, 32 of blob).
 *
 *  - pg.replica_to_pg.rows_per_s: a replica holding the rows, an empty
 *    Postgres database: pgb_catch_up until they are all there (the pull
 *    into the bridge's state replica included);
 *  - pg.copy_floor.rows_per_s: the same rows, read from the replica and
 *    sent with COPY (binary) into the same table shape: the floor;
 *  - pg.replica_to_pg.ratio_vs_copy (the budget is >= 0.5);
 *  - pg.pg_to_replica.rows_per_s: the rows inserted in Postgres (one
 *    INSERT ... SELECT, captured by the trigger, untimed), then
 *    pgb_catch_up until the replica holds them;
 *  - pg.lag_ms.p99: a writer thread commits 10 rows every 10 ms on the
 *    replica (1,000 rows/s, each carrying its commit time) for 5 s while
 *    the bridge steps every 10 ms when idle; lag is the time from commit
 *    to seeing the row in Postgres.
 * Without libpq at build time, or PostgreSQL at run time, one `#` line
 * says the workload is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "workloads.h"

#ifndef BENCH_HAVE_PG

void bench_pg(const bench_opts *o) {
  (void)o;
  bench_note("pg: built without libpq (libpq-dev), skipped");
}

#else

#include <libpq-fe.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tools/pgbridge/pgbridge.h"

#define PG_BIN "/usr/lib/postgresql/15/bin"

static char pg_dir[64];

static int pg_sh(const char *cmd) {
  char full[1024];
  snprintf(full, sizeof full,
           "%s sh -c '%s' >>%s/out 2>&1",
           getuid() == 0 ? "setpriv --reuid=65534 --regid=65534 "
                           "--clear-groups --"
                         : "",
           cmd, pg_dir);
  return system(full);
}

static void pg_down(void) {
  char cmd[256];
  if (!pg_dir[0]) return;
  snprintf(cmd, sizeof cmd, PG_BIN "/pg_ctl -D %s/data -m fast -w stop",
           pg_dir);
  pg_sh(cmd);
  snprintf(cmd, sizeof cmd, "rm -rf %s", pg_dir);
  if (system(cmd)) fprintf(stderr, "# pg: could not remove %s\n", pg_dir);
  pg_dir[0] = 0;
}

static int pg_up(void) {
  char cmd[768];
  snprintf(pg_dir, sizeof pg_dir, "/tmp/sync-bench-pg-XXXXXX");
  if (!mkdtemp(pg_dir)) return -1;
  if (getuid() == 0 && chown(pg_dir, 65534, 65534)) return -1;
  snprintf(cmd, sizeof cmd,
           PG_BIN "/initdb -D %s/data -U postgres -A trust -E UTF8 "
                  "--locale=C -N",
           pg_dir);
  if (pg_sh(cmd)) return -1;
  snprintf(cmd, sizeof cmd,
           PG_BIN "/pg_ctl -D %s/data -l %s/log -w -t 60 -o \"-k %s -c "
                  "listen_addresses= -p 5432 -c fsync=off -c "
                  "synchronous_commit=off -c full_page_writes=off -c "
                  "shared_buffers=128MB -c max_wal_size=2GB\" start",
           pg_dir, pg_dir, pg_dir);
  return pg_sh(cmd);
}

static void ci(const char *db, char *out, size_t cap) {
  snprintf(out, cap,
           "host=%s port=5432 user=postgres dbname=%s options='-c "
           "client_min_messages=warning'",
           pg_dir, db);
}

static PGconn *pg_conn(const char *db) {
  char c[256];
  PGconn *p;
  ci(db, c, sizeof c);
  p = PQconnectdb(c);
  if (PQstatus(p) != CONNECTION_OK)
    bench_die("pg: connect: %s", PQerrorMessage(p));
  return p;
}

static void pg_run(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("pg: %s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

static const sync_column_def pg_cols[4] = {
    {"i", SYNC_INTEGER, 0},
    {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},
    {"b", SYNC_BLOB, 0},
};
static const sync_table_def pg_table = {"items", SYNC_INTEGER, pg_cols, 4};

typedef struct pg_ctx {
  size_t rows;
  char *db;  /* the replica with the rows */
  int round; /* names a fresh Postgres database per round */
} pg_ctx;

static void fresh_pgdb(const char *name) {
  char sql[128];
  PGconn *c = pg_conn("postgres");
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
  pg_run(c, sql);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  pg_run(c, sql);
  PQfinish(c);
}

static sync_env *make_replica(const char *path) {
  sync_env *env;
  bench_unlink_db(path);
  if (sync_env_create(NULL, &env) || sync_env_set_schema(env, &pg_table, 1) ||
      sync_env_set_durability(env, SYNC_DURABLE_NOSYNC) ||
      sync_env_open(env, path, 0))
    bench_die("pg: cannot make %s", path);
  return env;
}

static void fill(const char *path, size_t rows) {
  sync_env *env = make_replica(path);
  bench_rng g = {0x70677267};
  size_t i, k;
  sync_txn *x;
  char s[24];
  unsigned char b[32], kb[8];
  for (i = 0; i < rows; i += 10000) {
    if (sync_txn_begin(env, 0, &x)) bench_die("pg: begin");
    for (k = i; k < rows && k < i + 10000; k++) {
      sync_value v[4];
      size_t j;
      for (j = 0; j < sizeof s; j++) s[j] = (char)('a' + bench_rng_below(&g, 26));
      for (j = 0; j < sizeof b; j++) b[j] = (unsigned char)bench_rng_next(&g);
      v[0] = sync_int((int64_t)bench_rng_next(&g));
      v[1] = sync_real(bench_rng_unit(&g) * 1e6);
      v[2] = sync_text(s, sizeof s);
      v[3] = sync_blob(b, sizeof b);
      sync_key_int((int64_t)k, kb);
      if (sync_put(x, 0, kb, 8, v, 4)) bench_die("pg: put");
    }
    if (sync_txn_commit(x)) bench_die("pg: commit");
  }
  sync_env_close(env);
}

static pgb_bridge *open_bridge(const char *db, const char *pgdb) {
  char c[256], state[600];
  pgb_opts o;
  pgb_bridge *b = NULL;
  memset(&o, 0, sizeof o);
  ci(pgdb, c, sizeof c);
  snprintf(state, sizeof state, "%s.pgbridge", db);
  bench_unlink_db(state);
  o.db = db;
  o.conninfo = c;
  o.batch_rows = 10000;
  if (pgb_open(&o, &b)) bench_die("pg: bridge: %s", pgb_errmsg(b));
  return b;
}

static double run_bridge(void *p) {
  pg_ctx *c = p;
  char name[32];
  pgb_bridge *b;
  pgb_stats st;
  double t0, t;
  snprintf(name, sizeof name, "r2p_%d", c->round++);
  fresh_pgdb(name);
  b = open_bridge(c->db, name);
  t0 = bench_now();
  if (pgb_catch_up(b)) bench_die("pg: catch up: %s", pgb_errmsg(b));
  t = bench_now() - t0;
  pgb_stats_get(b, &st);
  if (st.to_pg_rows != c->rows)
    bench_die("pg: %llu rows reached postgres, %zu expected",
              (unsigned long long)st.to_pg_rows, c->rows);
  pgb_close(b);
  return (double)c->rows / t;
}

static void be(unsigned char *p, uint64_t v, int n) {
  int i;
  for (i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

/* The floor: the replica's rows read and sent with binary COPY straight
 * into a fresh table of the same shape. */
static double run_copy(void *p) {
  pg_ctx *c = p;
  char name[32];
  PGconn *pg;
  PGresult *r;
  sync_env *env;
  sync_txn *x;
  sync_cursor *cur;
  sync_key k;
  sync_value v[4];
  unsigned char *buf, *q;
  double t0, t;
  snprintf(name, sizeof name, "copy_%d", c->round++);
  fresh_pgdb(name);
  pg = pg_conn(name);
  pg_run(pg, "CREATE TABLE items (key bigint PRIMARY KEY, i bigint, r "
             "double precision, s text, b bytea)");
  if (sync_env_create(NULL, &env) || sync_env_open(env, c->db, 0))
    bench_die("pg: open %s", c->db);
  buf = bench_xmalloc(1 << 20);
  t0 = bench_now();
  r = PQexec(pg, "COPY items FROM STDIN (FORMAT binary)");
  if (PQresultStatus(r) != PGRES_COPY_IN) bench_die("pg: copy");
  PQclear(r);
  memcpy(buf, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
  q = buf + 19;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) || sync_cursor_open(x, 0, &cur))
    bench_die("pg: read");
  while (sync_cursor_next(cur, &k, v, 4) == 0) {
    uint64_t u;
    if (q - buf > (1 << 20) - 256) {
      PQputCopyData(pg, (const char *)buf, (int)(q - buf));
      q = buf;
    }
    be(q, 5, 2), q += 2;
    be(q, 8, 4), be(q + 4, (uint64_t)sync_key_int_decode(k.data), 8), q += 12;
    be(q, 8, 4), be(q + 4, (uint64_t)v[0].i, 8), q += 12;
    memcpy(&u, &v[1].r, 8);
    be(q, 8, 4), be(q + 4, u, 8), q += 12;
    be(q, v[2].len, 4), memcpy(q + 4, v[2].data, v[2].len), q += 4 + v[2].len;
    be(q, v[3].len, 4), memcpy(q + 4, v[3].data, v[3].len), q += 4 + v[3].len;
  }
  sync_cursor_close(cur);
  sync_txn_abort(x);
  be(q, 0xffff, 2), q += 2;
  if (PQputCopyData(pg, (const char *)buf, (int)(q - buf)) != 1 ||
      PQputCopyEnd(pg, NULL) != 1)
    bench_die("pg: copy data");
  r = PQgetResult(pg);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    bench_die("pg: copy: %s", PQresultErrorMessage(r));
  if (strtoull(PQcmdTuples(r), NULL, 10) != c->rows) bench_die("pg: copy rows");
  PQclear(r);
  t = bench_now() - t0;
  free(buf);
  sync_env_close(env);
  PQfinish(pg);
  return (double)c->rows / t;
}

/* Postgres -> replica: rows inserted in Postgres (untimed), then the
 * bridge's catch-up. */
static double pg_to_replica(pg_ctx *c) {
  char sql[256], *db = bench_path("pg-in.db");
  pgb_bridge *b;
  pgb_stats st;
  PGconn *pg;
  sync_env *env = make_replica(db);
  double t0, t;
  sync_env_close(env);
  fresh_pgdb("p2r");
  b = open_bridge(db, "p2r");
  pg = pg_conn("p2r");
  snprintf(sql, sizeof sql,
           "INSERT INTO items SELECT g, g * 7, g / 3.0, md5(g::text), "
           "decode(md5(g::text), 'hex') FROM generate_series(1, %zu) g",
           c->rows);
  pg_run(pg, sql);
  PQfinish(pg);
  t0 = bench_now();
  if (pgb_catch_up(b)) bench_die("pg: catch up: %s", pgb_errmsg(b));
  t = bench_now() - t0;
  pgb_stats_get(b, &st);
  if (st.to_replica_rows != c->rows)
    bench_die("pg: %llu rows reached the replica, %zu expected",
              (unsigned long long)st.to_replica_rows, c->rows);
  pgb_close(b);
  return (double)c->rows / t;
}

/* ---- lag under a steady load ------------------------------------------ */

typedef struct lag_ctx {
  sync_env *env;
  volatile int stop;
  size_t written;
} lag_ctx;

static uint64_t real_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* 10 rows every 10 ms, each with its commit time (an upper bound: taken
 * just before the commit) in column i. */
static void *lag_writer(void *p) {
  lag_ctx *l = p;
  double next = bench_now();
  while (!l->stop) {
    sync_txn *x;
    int k;
    uint64_t t = real_us();
    if (sync_txn_begin(l->env, 0, &x)) bench_die("pg: lag begin");
    for (k = 0; k < 10; k++) {
      unsigned char kb[8];
      sync_value v[4] = {sync_int((int64_t)t), sync_real(0), sync_null(),
                         sync_null()};
      sync_key_int((int64_t)l->written++, kb);
      if (sync_put(x, 0, kb, 8, v, 4)) bench_die("pg: lag put");
    }
    if (sync_txn_commit(x)) bench_die("pg: lag commit");
    next += 0.010;
    while (bench_now() < next && !l->stop) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static int dcmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void lag_p99(void) {
  char *db = bench_path("pg-lag.db");
  sync_env *env = make_replica(db);
  pgb_bridge *b;
  PGconn *pg;
  lag_ctx l;
  pthread_t th;
  double *lags, t_end;
  size_t n = 0, cap = 8000;
  long long seen = -1;
  sync_env_close(env);
  fresh_pgdb("lag");
  b = open_bridge(db, "lag");
  pg = pg_conn("lag");
  lags = bench_xmalloc(cap * sizeof *lags);
  memset(&l, 0, sizeof l);
  l.env = pgb_server_env(b);
  pthread_create(&th, NULL, lag_writer, &l);
  t_end = bench_now() + 5.0;
  while (bench_now() < t_end) {
    uint64_t moved = 0;
    char sql[128];
    PGresult *r;
    int i;
    if (pgb_step(b, &moved)) bench_die("pg: step: %s", pgb_errmsg(b));
    snprintf(sql, sizeof sql, "SELECT key, i FROM items WHERE key > %lld",
             seen);
    r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) bench_die("pg: lag read");
    {
      uint64_t now = real_us();
      for (i = 0; i < PQntuples(r); i++) {
        long long k = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        uint64_t t = strtoull(PQgetvalue(r, i, 1), NULL, 10);
        if (k > seen) seen = k;
        if (n < cap) lags[n++] = (double)(now - t) / 1000.0;
      }
    }
    PQclear(r);
    if (!moved) {
      struct timespec ts = {0, 10000000};
      nanosleep(&ts, NULL);
    }
  }
  l.stop = 1;
  pthread_join(th, NULL);
  qsort(lags, n, sizeof *lags, dcmp);
  bench_note("pg: lag: %zu rows written at 1,000 rows/s, %zu seen in "
             "postgres within 5 s; median %.1f ms",
             l.written, n, n ? lags[n / 2] : 0.0);
  if (n < l.written / 2) bench_die("pg: lag: too few rows reached postgres");
  bench_ms("pg.lag_ms.p99", lags[(size_t)((double)n * 0.99)]);
  free(lags);
  PQfinish(pg);
  pgb_close(b);
}

void bench_pg(const bench_opts *o) {
  struct stat sb;
  pg_ctx c;
  bench_side sides[2];
  size_t rows = o->rows / 10;
  if (stat(PG_BIN "/initdb", &sb)) {
    bench_note("pg: PostgreSQL 15 not installed (" PG_BIN "/initdb), "
               "skipped");
    return;
  }
  if (rows < 10000) rows = 10000;
  if (rows > 100000) rows = 100000;
  if (pg_up()) {
    bench_note("pg: PostgreSQL did not start (see %s/out), skipped", pg_dir);
    pg_down();
    return;
  }
  atexit(pg_down);
  memset(&c, 0, sizeof c);
  c.rows = rows;
  c.db = bench_path("pg-out.db");
  bench_path("pg-out.db.pgbridge"); /* the bridges' state: removed at exit */
  bench_path("pg-in.db.pgbridge");
  bench_path("pg-lag.db.pgbridge");
  fill(c.db, rows);
  bench_note("pg: %zu rows (integer key, integer, double, 24-byte text, "
             "32-byte blob); postgres 15 with fsync off on a Unix socket",
             rows);
  memset(sides, 0, sizeof sides);
  sides[0].label = "bridge";
  sides[0].fn = run_bridge;
  sides[0].ctx = &c;
  sides[1].label = "copy";
  sides[1].fn = run_copy;
  sides[1].ctx = &c;
  bench_rounds("pg", sides, 2, o->reps);
  bench_rate("pg.replica_to_pg.rows_per_s", sides[0].best);
  bench_rate("pg.copy_floor.rows_per_s", sides[1].best);
  bench_ratio("pg.replica_to_pg.ratio_vs_copy", sides[0].best / sides[1].best);
  bench_rate("pg.pg_to_replica.rows_per_s", pg_to_replica(&c));
  lag_p99();
  pg_down();
}

#endif /* BENCH_HAVE_PG */
