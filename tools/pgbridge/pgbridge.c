/*
 * pgbridge.c - the PostgreSQL bridge (pgbridge.h, docs/PGBRIDGE.md).
 *
 * Why a state replica of its own: rows that Postgres services write must
 * reach the devices as writes of some site.  Written straight into the
 * server replica they would carry the server's site and be
 * indistinguishable from its other writes; written into a replica of
 * their own they are ordinary local writes of the "Postgres side", merged
 * into the server replica by the library's own rules, which also log the
 * conflicts with devices.  LMDB lets several processes open one file, so
 * `synctl serve DB` and the bridge share DB.
 *
 * Why nothing is lost or applied twice:
 *  - replica -> Postgres: the rows of a batch and the cursor (the state
 *    replica's version read up to) commit in one Postgres transaction;
 *    a crash before it leaves the old cursor, and the batch is written
 *    again (upserts and deletes are idempotent).
 *  - Postgres -> replica: outbox entries are applied to the state replica
 *    and then deleted from the outbox.  A crash in between applies them
 *    again at the next start, first thing, before anything else wrote to
 *    the state replica: each key takes the values it already holds, which
 *    changes nothing (a put stamps only the columns whose value changes).
 *  - a key with entries still in the outbox is not written to Postgres
 *    (Postgres holds a newer write of it than the state replica has
 *    applied; the entries come first, at the next step).
 * Echoes: the trigger skips rows written by the bridge's own session
 * (SET LOCAL sync.bridge = 'on'), and the upsert writes a Postgres row
 * only when its values differ, so a row that came from Postgres and goes
 * back finds its own values there and writes nothing.
 *
 * Counters: Postgres holds a counter's sum, and beside it, in
 * _sync_others_N, the part of that sum that other replicas had added
 * when the bridge wrote the row (NULL for a row a client inserted).  A
 * client's value c therefore means "the bridge's own share is c -
 * others": the outbox entry carries c and others, and applying it adds
 * to the state replica what takes its own share (sync_counter_own) to
 * that.  The target is a state, not a delta: an entry applied twice
 * (a crash before the outbox delete) adds nothing the second time, and
 * adds that devices made meanwhile are other replicas' shares, which it
 * leaves alone.  A BEFORE trigger keeps clients from changing others
 * (and clears it on an insert or a key change).
 */
#define _GNU_SOURCE
#include "pgbridge.h"

#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PGB_BATCH 5000
#define PGB_ERRMAX 600
/* A step starts no new batch towards Postgres after this long. */
#define PGB_STEP_MS 1000
/* Rows a step leaves are counted for lag_rows up to this many batches. */
#define PGB_LAG_COUNT_BATCHES 8
/* A streaming COPY sends what it has staged in pieces of this size. */
#define PGB_STREAM_CHUNK (256u * 1024u)
/* flush_table: a client wrote a key of the batch meanwhile (counters):
 * roll the batch back, and write it after the outbox at the next step. */
#define PGB_RETRY 1
/* A counter column's companion in Postgres: _sync_others_N, N the
 * column's index in the replica's table. */
#define PGB_OTHERS "_sync_others_"

/* A growable byte buffer (the COPY stream, SQL text). */
typedef struct pgb_buf {
  char *p;
  size_t len, cap;
} pgb_buf;

typedef struct pgb_table {
  unsigned id;
  sync_table_def def;
  unsigned nctr; /* counter columns */
  char *qname;   /* "name", quoted for SQL */
  char *lit;     /* 'name', a literal */
  char *lit2;    /* '"name"', the quoted name as a literal */
  char *stage;   /* the temp staging table of live rows */
  char *dead;    /* the temp staging table of deleted keys */
  char *copy_cols; /* (key, columns[, audit]): the COPY column list */
  char *sel_out; /* this table's outbox entries, oldest first */
  char *del_sql, *ups_sql;
  char *lock_dead, *lock_stage; /* lock the rows about to be written */
  char *raced; /* counters: a key written that a client wrote meanwhile */
  /* This batch's rows as binary COPY streams: live rows never written
   * before (fresh: straight into the table), other live rows (through
   * the staging table and the upsert), deleted keys. */
  pgb_buf copy, scopy, dcopy;
  size_t nfresh, nlive, ndead;
  size_t sent; /* bytes of copy already streamed to Postgres */
} pgb_table;

struct pgb_bridge {
  pgb_opts o;
  char *db_copy, *conninfo_copy;
  char *state_path;
  sync_env *srv, *rep;
  uint8_t srv_site[16], rep_site[16];
  char site_hex[33];
  PGconn *pg;
  pgb_table *t;
  unsigned nt;
  uint64_t clock_ms; /* nonzero: the stamp time of the writes being made */
  uint64_t pulled_v; /* the server replica's version at the last pull */
  uint64_t pushed_v; /* the state replica's after the last push (or after
                        a pull that brought only the server's rows) */
  pgb_buf row;        /* the row being staged */
  pgb_table *stream;  /* the table whose fresh rows stream as they come */
  int stream_used;    /* a stream was opened in this batch */
  pgb_stats st;
  char err[PGB_ERRMAX];
};

/* ---- small helpers -------------------------------------------------- */

static int fail(pgb_bridge *b, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err, sizeof b->err, fmt, ap);
  va_end(ap);
  return rc;
}

static int lib_fail_in(char *err, sync_env *env, int rc, const char *what) {
  const char *m = env ? sync_env_errmsg(env) : "";
  snprintf(err, PGB_ERRMAX, "%s: %s%s%s", what, sync_strerror(rc),
           *m ? ": " : "", m);
  return rc;
}

static int lib_fail(pgb_bridge *b, sync_env *env, int rc, const char *what) {
  return lib_fail_in(b->err, env, rc, what);
}

/* Postgres' own words, without the trailing newline. */
static int pg_fail(pgb_bridge *b, const char *what, const PGresult *r) {
  const char *m = r ? PQresultErrorMessage(r) : "";
  size_t n;
  if (!m || !*m) m = PQerrorMessage(b->pg);
  n = strlen(m);
  while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
  return fail(b, PGB_EPG, "postgres: %s: %.*s", what, (int)n, m);
}

static int buf_grow(pgb_buf *bf, size_t more) {
  char *p;
  size_t cap = bf->cap ? bf->cap : 256;
  if (bf->len + more <= bf->cap) return 0;
  while (cap < bf->len + more) cap *= 2;
  if (!(p = realloc(bf->p, cap))) return SYNC_ENOMEM;
  bf->p = p;
  bf->cap = cap;
  return 0;
}

static int buf_put(pgb_buf *bf, const void *p, size_t n) {
  if (buf_grow(bf, n)) return SYNC_ENOMEM;
  if (n) memcpy(bf->p + bf->len, p, n);
  bf->len += n;
  return 0;
}

static int buf_be(pgb_buf *bf, uint64_t v, int bytes) {
  unsigned char x[8];
  int i;
  for (i = 0; i < bytes; i++) x[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
  return buf_put(bf, x, (size_t)bytes);
}

static int buf_printf(pgb_buf *bf, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_grow(bf, (size_t)n + 1)) return SYNC_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(bf->p + bf->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  bf->len += (size_t)n;
  return 0;
}

/* A quoted identifier or literal: q doubled inside q. */
static char *quote(const char *s, char q) {
  size_t n = strlen(s), i, j = 0;
  char *o = malloc(2 * n + 3);
  if (!o) return NULL;
  o[j++] = q;
  for (i = 0; i < n; i++) {
    if (s[i] == q) o[j++] = q;
    o[j++] = s[i];
  }
  o[j++] = q;
  o[j] = 0;
  return o;
}

static const char *pg_type(int t) {
  switch (t) {
  case SYNC_INTEGER:
  case SYNC_COUNTER: return "bigint";
  case SYNC_REAL: return "double precision";
  case SYNC_TEXT: return "text";
  default: return "bytea";
  }
}

static const char *sync_type(int t) {
  switch (t) {
  case SYNC_INTEGER: return "INTEGER";
  case SYNC_REAL: return "REAL";
  case SYNC_TEXT: return "TEXT";
  case SYNC_COUNTER: return "COUNTER";
  default: return "BLOB";
  }
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The state replica's clock: the capture time of the Postgres writes
 * being applied, so that they are stamped when they happened (the HLC
 * still moves past every stamp the replica has seen). */
static uint64_t state_clock(void *ctx) {
  pgb_bridge *b = (pgb_bridge *)ctx;
  return b->clock_ms ? b->clock_ms : wall_ms();
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode n hex digits at s into out (n / 2 bytes); -1 if not hex. */
static int unhex(const char *s, size_t n, unsigned char *out) {
  size_t i;
  if (n % 2) return -1;
  for (i = 0; i < n; i += 2) {
    int h = hexval(s[i]), l = hexval(s[i + 1]);
    if (h < 0 || l < 0) return -1;
    out[i / 2] = (unsigned char)(h << 4 | l);
  }
  return 0;
}

static PGresult *exec(pgb_bridge *b, const char *sql, ExecStatusType want,
                      const char *what, int *rc) {
  PGresult *r = PQexec(b->pg, sql);
  ExecStatusType got = PQresultStatus(r);
  if (got != want && !(want == PGRES_COMMAND_OK && got == PGRES_TUPLES_OK)) {
    *rc = pg_fail(b, what, r);
    PQclear(r);
    return NULL;
  }
  *rc = 0;
  return r;
}

static int run(pgb_bridge *b, const char *sql, const char *what) {
  int rc;
  PGresult *r = exec(b, sql, PGRES_COMMAND_OK, what, &rc);
  PQclear(r);
  return rc;
}

/* ---- tables, outbox and triggers -------------------------------------- */

/* The text the trigger stores for column c of record rec: exact for
 * every type (doubles as their 8 bytes, blobs in hex). */
static int capture_expr(pgb_buf *s, const char *rec, const char *qcol,
                        int type) {
  switch (type) {
  case SYNC_INTEGER:
  case SYNC_COUNTER: return buf_printf(s, "%s.%s::text", rec, qcol);
  case SYNC_REAL:
    return buf_printf(s, "encode(float8send(%s.%s), 'hex')", rec, qcol);
  case SYNC_BLOB: return buf_printf(s, "encode(%s.%s, 'hex')", rec, qcol);
  default: return buf_printf(s, "%s.%s", rec, qcol);
  }
}

/* The key, the columns, each counter's companion, and with audit the
 * audit columns, each name after pre. */
static int col_list(pgb_buf *s, const pgb_table *t, const char *pre,
                    int audit) {
  unsigned c;
  char *q;
  int rc = buf_printf(s, "%s\"key\"", pre);
  for (c = 0; c < t->def.ncolumns && !rc; c++) {
    if (!(q = quote(t->def.columns[c].name, '"'))) return SYNC_ENOMEM;
    rc = buf_printf(s, ", %s%s", pre, q);
    free(q);
  }
  for (c = 0; c < t->def.ncolumns && !rc; c++)
    if (t->def.columns[c].type == SYNC_COUNTER)
      rc = buf_printf(s, ", %s" PGB_OTHERS "%u", pre, c);
  if (!rc && audit) rc = buf_printf(s, ", %s_sync_stamp, %s_sync_site", pre, pre);
  return rc;
}

static void table_sql_free(pgb_table *t) {
  free(t->stage);
  free(t->dead);
  free(t->copy_cols);
  free(t->sel_out);
  free(t->del_sql);
  free(t->ups_sql);
  free(t->lock_dead);
  free(t->lock_stage);
  free(t->raced);
  t->stage = t->dead = t->copy_cols = t->sel_out = t->del_sql = t->ups_sql =
      t->lock_dead = t->lock_stage = t->raced = NULL;
}

/* The SQL of table t: its trigger and staging table into trig and stage,
 * its outbox query, upsert and delete into t.  Made at every connect. */
static int table_sql(pgb_bridge *b, pgb_table *t, pgb_buf *trig,
                     pgb_buf *stage) {
  pgb_buf s = {0}, pend = {0};
  unsigned c;
  int rc = 0;
  char name[32];
  table_sql_free(t);
  snprintf(name, sizeof name, "\"_sync_stage_%u\"", t->id);
  if (!(t->stage = strdup(name))) return SYNC_ENOMEM;
  snprintf(name, sizeof name, "\"_sync_dead_%u\"", t->id);
  if (!(t->dead = strdup(name))) return SYNC_ENOMEM;
  rc |= buf_printf(&s, "(");
  rc |= col_list(&s, t, "", b->o.audit);
  rc |= buf_printf(&s, ")");
  if (rc || !(t->copy_cols = strdup(s.p))) {
    free(s.p);
    return SYNC_ENOMEM;
  }
  s.len = 0;
  /* trigger function */
  rc |= buf_printf(trig,
                   "CREATE OR REPLACE FUNCTION \"_sync_cap_%s\"() RETURNS "
                   "trigger LANGUAGE plpgsql AS $sync$\nBEGIN\n"
                   "  IF current_setting('sync.bridge', true) = 'on' THEN "
                   "RETURN NULL; END IF;\n"
                   "  IF TG_OP = 'TRUNCATE' THEN\n"
                   "    IF current_setting('transaction_isolation') <> "
                   "'read committed' THEN\n"
                   "      RAISE EXCEPTION 'TRUNCATE of %%, a table the sync "
                   "bridge keeps, needs READ COMMITTED', TG_TABLE_NAME USING "
                   "HINT = 'the rows it removes are captured as deletes, and "
                   "an older snapshot does not see them all: use READ "
                   "COMMITTED, or DELETE';\n"
                   "    END IF;\n"
                   "    INSERT INTO _sync_outbox(tbl, op, r) SELECT %s, 'd', "
                   "ARRAY[",
                   t->def.name, t->lit);
  rc |= capture_expr(trig, "t", "\"key\"", t->def.key_type);
  rc |= buf_printf(trig, "] FROM %s AS t;\n    RETURN NULL;\n  END IF;\n"
                         "  IF TG_OP = 'DELETE' THEN\n"
                         "    INSERT INTO _sync_outbox(tbl, op, r) VALUES (%s, "
                         "'d', ARRAY[",
                   t->qname, t->lit);
  rc |= capture_expr(trig, "OLD", "\"key\"", t->def.key_type);
  rc |= buf_printf(trig, "]);\n    RETURN NULL;\n  END IF;\n"
                         "  IF TG_OP = 'UPDATE' THEN\n"
                         "    IF OLD.\"key\" IS DISTINCT FROM NEW.\"key\" THEN\n"
                         "      INSERT INTO _sync_outbox(tbl, op, r) VALUES "
                         "(%s, 'd', ARRAY[",
                   t->lit);
  rc |= capture_expr(trig, "OLD", "\"key\"", t->def.key_type);
  rc |= buf_printf(trig, "]);\n    END IF;\n  END IF;\n"
                         "  INSERT INTO _sync_outbox(tbl, op, r) VALUES (%s, "
                         "'u', ARRAY[",
                   t->lit);
  rc |= capture_expr(trig, "NEW", "\"key\"", t->def.key_type);
  for (c = 0; c < t->def.ncolumns && !rc; c++) {
    char *q = quote(t->def.columns[c].name, '"');
    if (!q) return SYNC_ENOMEM;
    rc |= buf_printf(trig, ", ");
    rc |= capture_expr(trig, "NEW", q, t->def.columns[c].type);
    free(q);
  }
  for (c = 0; c < t->def.ncolumns && !rc; c++)
    if (t->def.columns[c].type == SYNC_COUNTER)
      rc |= buf_printf(trig, ", NEW." PGB_OTHERS "%u::text", c);
  /* The triggers are made only when missing: CREATE TRIGGER locks the
   * table against writers, who must not wait for a bridge that
   * reconnects.  The WHEN clause keeps the bridge's own writes from even
   * queueing a trigger event (the function checks again).  TRUNCATE
   * fires no row triggers: a statement trigger before it captures a
   * delete of each row the table holds (it runs once TRUNCATE holds its
   * lock, so no writer can add or remove a row in between). */
  rc |= buf_printf(trig,
                   "]);\n  RETURN NULL;\nEND\n$sync$;\n"
                   "DO $sync$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger "
                   "WHERE tgrelid = to_regclass(%s) AND tgname = "
                   "'_sync_capture') THEN CREATE TRIGGER _sync_capture AFTER "
                   "INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW WHEN "
                   "(current_setting('sync.bridge', true) IS DISTINCT FROM "
                   "'on') EXECUTE FUNCTION \"_sync_cap_%s\"(); END IF;\n"
                   "IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = "
                   "to_regclass(%s) AND tgname = '_sync_truncate') THEN "
                   "CREATE TRIGGER _sync_truncate BEFORE TRUNCATE ON %s FOR "
                   "EACH STATEMENT WHEN (current_setting('sync.bridge', true) "
                   "IS DISTINCT FROM 'on') EXECUTE FUNCTION "
                   "\"_sync_cap_%s\"(); END IF; END $sync$;\n",
                   t->lit2, t->qname, t->def.name, t->lit2, t->qname,
                   t->def.name);
  if (t->nctr) {
    /* A counter's companion is the bridge's: a client's insert (or
     * change of the key) clears it, its update keeps the old one, so
     * that the value the client wrote is read against what the bridge
     * last wrote of that row. */
    rc |= buf_printf(trig,
                     "CREATE OR REPLACE FUNCTION \"_sync_keep_%s\"() RETURNS "
                     "trigger LANGUAGE plpgsql AS $sync$\nBEGIN\n"
                     "  IF current_setting('sync.bridge', true) = 'on' THEN "
                     "RETURN NEW; END IF;\n"
                     "  IF TG_OP = 'INSERT' OR OLD.\"key\" IS DISTINCT FROM "
                     "NEW.\"key\" THEN\n",
                     t->def.name);
    for (c = 0; c < t->def.ncolumns && !rc; c++)
      if (t->def.columns[c].type == SYNC_COUNTER)
        rc |= buf_printf(trig, "    NEW." PGB_OTHERS "%u := NULL;\n", c);
    rc |= buf_printf(trig, "  ELSE\n");
    for (c = 0; c < t->def.ncolumns && !rc; c++)
      if (t->def.columns[c].type == SYNC_COUNTER)
        rc |= buf_printf(
            trig, "    NEW." PGB_OTHERS "%u := OLD." PGB_OTHERS "%u;\n", c, c);
    rc |= buf_printf(trig,
                     "  END IF;\n  RETURN NEW;\nEND\n$sync$;\n"
                     "DO $sync$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger "
                     "WHERE tgrelid = to_regclass(%s) AND tgname = "
                     "'_sync_keep') THEN CREATE TRIGGER _sync_keep BEFORE "
                     "INSERT OR UPDATE ON %s FOR EACH ROW WHEN "
                     "(current_setting('sync.bridge', true) IS DISTINCT FROM "
                     "'on') EXECUTE FUNCTION \"_sync_keep_%s\"(); END IF; END "
                     "$sync$;\n",
                     t->lit2, t->qname, t->def.name);
  }
  /* the staging tables: live rows as the table holds them, and keys */
  rc |= buf_printf(stage,
                   "CREATE TEMP TABLE IF NOT EXISTS %s (\"key\" %s) ON "
                   "COMMIT DELETE ROWS;\n"
                   "CREATE TEMP TABLE IF NOT EXISTS %s (\"key\" %s",
                   t->dead, pg_type(t->def.key_type), t->stage,
                   pg_type(t->def.key_type));
  for (c = 0; c < t->def.ncolumns && !rc; c++) {
    char *q = quote(t->def.columns[c].name, '"');
    if (!q) return SYNC_ENOMEM;
    rc |= buf_printf(stage, ", %s %s", q, pg_type(t->def.columns[c].type));
    free(q);
  }
  for (c = 0; c < t->def.ncolumns && !rc; c++)
    if (t->def.columns[c].type == SYNC_COUNTER)
      rc |= buf_printf(stage, ", " PGB_OTHERS "%u bigint", c);
  rc |= buf_printf(stage,
                   ", _sync_stamp bigint, _sync_site text) ON COMMIT "
                   "DELETE ROWS;\n");
  if (t->nctr)
    rc |= buf_printf(stage,
                     "CREATE TEMP TABLE IF NOT EXISTS \"_sync_wrote_%u\" "
                     "(\"key\" %s) ON COMMIT DELETE ROWS;\n",
                     t->id, pg_type(t->def.key_type));
  /* outbox entries, oldest first */
  rc |= buf_printf(&s,
                   "SELECT id, op, (extract(epoch FROM at) * 1000)::bigint");
  for (c = 0; c <= t->def.ncolumns + t->nctr && !rc; c++)
    rc |= buf_printf(&s, ", r[%u]", c + 1);
  rc |= buf_printf(&s, " FROM _sync_outbox WHERE tbl = %s ORDER BY id LIMIT %zu",
                   t->lit, b->o.batch_rows);
  if (rc) goto out;
  t->sel_out = strdup(s.p);
  s.len = 0;
  /* The rows about to be written, locked first (key order), so that a
   * client's write of one of them is committed, with its outbox entry,
   * before the next statement takes its snapshot. */
  for (c = 0; c < 2 && !rc; c++) {
    rc |= buf_printf(&s,
                     "SELECT 1 FROM %s AS t JOIN %s s ON t.\"key\" = "
                     "s.\"key\" ORDER BY t.\"key\" FOR UPDATE OF t",
                     t->qname, c ? t->stage : t->dead);
    if (!rc && !(*(c ? &t->lock_stage : &t->lock_dead) = strdup(s.p)))
      rc = SYNC_ENOMEM;
    s.len = 0;
  }
  /* A key with entries still in the outbox is skipped: Postgres holds a
   * newer write of it than the state replica, which has not applied
   * those entries yet.  Written, the stale row would undo the client's
   * write until the entries come back (and a client's DELETE of a row
   * the bridge had deleted would find nothing, never be captured, and
   * the row come back for good).  The entries are applied at the next
   * step, and the key then sent again if the state replica's row is not
   * what Postgres holds. */
  pend.len = 0;
  rc |= buf_printf(&pend,
                   " AND NOT EXISTS (SELECT 1 FROM _sync_outbox o WHERE "
                   "o.tbl = %s AND o.r[1] = ",
                   t->lit);
  rc |= capture_expr(&pend, "s", "\"key\"", t->def.key_type);
  rc |= buf_printf(&pend, ")");
  if (rc) goto out;
  /* deletes, then upserts that write only rows whose values differ */
  rc |= buf_printf(&s,
                   "DELETE FROM %s AS t USING %s s WHERE t.\"key\" = "
                   "s.\"key\"%s",
                   t->qname, t->dead, pend.p);
  if (rc) goto out;
  t->del_sql = strdup(s.p);
  s.len = 0;
  /* With counters, the keys the upsert wrote are kept: a client's
   * INSERT of a key Postgres did not hold yet, made while the upsert
   * ran, is not in its snapshot, nor is that insert's outbox entry, and
   * the upsert's ON CONFLICT then writes over the client's row.  The
   * entry still brings the client's value to the replica, but a second
   * client write of the row before it does would start from the
   * bridge's values, and the first one's add be lost.  The check after
   * the upsert (raced) sees those entries, and the batch is rolled
   * back. */
  if (t->nctr) rc |= buf_printf(&s, "WITH w AS (");
  rc |= buf_printf(&s, "INSERT INTO %s AS t (", t->qname);
  rc |= col_list(&s, t, "", b->o.audit);
  rc |= buf_printf(&s, ") SELECT ");
  rc |= col_list(&s, t, "s.", b->o.audit);
  rc |= buf_printf(&s, " FROM %s AS s WHERE true%s ON CONFLICT (\"key\") DO ",
                   t->stage, pend.p);
  if (!t->def.ncolumns) {
    rc |= buf_printf(&s, "NOTHING");
  } else {
    rc |= buf_printf(&s, "UPDATE SET ");
    for (c = 0; c < t->def.ncolumns && !rc; c++) {
      char *q = quote(t->def.columns[c].name, '"');
      if (!q) return SYNC_ENOMEM;
      rc |= buf_printf(&s, "%s%s = EXCLUDED.%s", c ? ", " : "", q, q);
      free(q);
    }
    for (c = 0; c < t->def.ncolumns && !rc; c++)
      if (t->def.columns[c].type == SYNC_COUNTER)
        rc |= buf_printf(&s, ", " PGB_OTHERS "%u = EXCLUDED." PGB_OTHERS "%u",
                         c, c);
    if (b->o.audit)
      rc |= buf_printf(&s, ", _sync_stamp = EXCLUDED._sync_stamp, "
                           "_sync_site = EXCLUDED._sync_site");
    /* doubles compare by their bytes: -0.0 and 0.0 differ, NaN = NaN */
    rc |= buf_printf(&s, " WHERE ROW(");
    for (c = 0; c < 2 && !rc; c++) {
      unsigned k;
      const char *rec = c ? "EXCLUDED" : "t";
      if (c) rc |= buf_printf(&s, ") IS DISTINCT FROM ROW(");
      for (k = 0; k < t->def.ncolumns && !rc; k++) {
        char *q = quote(t->def.columns[k].name, '"');
        if (!q) return SYNC_ENOMEM;
        if (t->def.columns[k].type == SYNC_REAL)
          rc |= buf_printf(&s, "%sfloat8send(%s.%s)", k ? ", " : "", rec, q);
        else
          rc |= buf_printf(&s, "%s%s.%s", k ? ", " : "", rec, q);
        free(q);
      }
      for (k = 0; k < t->def.ncolumns && !rc; k++)
        if (t->def.columns[k].type == SYNC_COUNTER)
          rc |= buf_printf(&s, ", %s." PGB_OTHERS "%u", rec, k);
    }
    rc |= buf_printf(&s, ")");
  }
  if (t->nctr)
    rc |= buf_printf(&s,
                     " RETURNING t.\"key\") INSERT INTO \"_sync_wrote_%u\" "
                     "SELECT \"key\" FROM w",
                     t->id);
  if (rc) goto out;
  t->ups_sql = strdup(s.p);
  if (!t->sel_out || !t->del_sql || !t->ups_sql) rc = SYNC_ENOMEM;
  if (!rc && t->nctr) {
    s.len = 0;
    rc |= buf_printf(&s,
                     "SELECT 1 FROM \"_sync_wrote_%u\" AS s WHERE EXISTS "
                     "(SELECT 1 FROM _sync_outbox o WHERE o.tbl = %s AND "
                     "o.r[1] = ",
                     t->id, t->lit);
    rc |= capture_expr(&s, "s", "\"key\"", t->def.key_type);
    rc |= buf_printf(&s, ") LIMIT 1");
    if (rc || !(t->raced = strdup(s.p))) rc = SYNC_ENOMEM;
  }
out:
  free(s.p);
  free(pend.p);
  return rc ? SYNC_ENOMEM : 0;
}

/* Check that table t exists in Postgres with the columns and types the
 * replica's table maps to, and the key as its primary key.  *absent is
 * set when there is no such table (then nothing else is checked). */
static int table_check(pgb_bridge *b, pgb_table *t, int *absent) {
  const char *pv[1] = {t->qname};
  PGresult *r;
  unsigned c;
  int rc = 0, n, i;
  *absent = 0;
  r = PQexecParams(b->pg,
                   "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
                   "coalesce((SELECT true FROM pg_index i WHERE i.indrelid = "
                   "a.attrelid AND i.indisprimary AND i.indnatts = 1 AND "
                   "i.indkey[0] = a.attnum), false) FROM pg_attribute a "
                   "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND "
                   "NOT a.attisdropped ORDER BY a.attnum",
                   1, NULL, pv, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = pg_fail(b, "reading the columns of a table", r);
    PQclear(r);
    return rc;
  }
  n = PQntuples(r);
  if (!n) {
    *absent = 1;
    PQclear(r);
    return 0;
  }
  /* the key, the columns, the counters' companions, the audit columns
   * (c - 1 - ncolumns is a column's index among them all: the counters
   * are found by it) */
  for (c = 0; c <= 2 * t->def.ncolumns + (b->o.audit ? 2u : 0u) && !rc; c++) {
    const char *name, *want;
    const char *ours;
    char oname[32];
    if (c == 0) {
      name = "key";
      want = pg_type(t->def.key_type);
      ours = sync_type(t->def.key_type);
    } else if (c <= t->def.ncolumns) {
      name = t->def.columns[c - 1].name;
      want = pg_type(t->def.columns[c - 1].type);
      ours = sync_type(t->def.columns[c - 1].type);
    } else if (c <= 2 * t->def.ncolumns) {
      if (t->def.columns[c - 1 - t->def.ncolumns].type != SYNC_COUNTER)
        continue;
      snprintf(oname, sizeof oname, PGB_OTHERS "%u", c - 1 - t->def.ncolumns);
      name = oname;
      want = "bigint";
      ours = "COUNTER's companion";
    } else {
      name = c == 2 * t->def.ncolumns + 1 ? "_sync_stamp" : "_sync_site";
      want = c == 2 * t->def.ncolumns + 1 ? "bigint" : "text";
      ours = "audit";
    }
    for (i = 0; i < n; i++)
      if (!strcmp(PQgetvalue(r, i, 0), name)) break;
    if (i == n)
      rc = fail(b, PGB_EPG,
                "postgres: table %s has no column \"%s\" (%s expected for "
                "the replica's %s)",
                t->def.name, name, want, ours);
    else if (strcmp(PQgetvalue(r, i, 1), want))
      rc = fail(b, PGB_EPG,
                "postgres: table %s: column \"%s\" is %s in PostgreSQL, %s "
                "expected (%s in the replica)",
                t->def.name, name, PQgetvalue(r, i, 1), want, ours);
    else if (c == 0 && strcmp(PQgetvalue(r, i, 2), "t"))
      rc = fail(b, PGB_EPG,
                "postgres: table %s: column \"key\" is not its primary key "
                "(alone)",
                t->def.name);
  }
  PQclear(r);
  return rc;
}

static int table_create(pgb_bridge *b, pgb_table *t) {
  pgb_buf s = {0};
  const char *nn;
  unsigned c;
  int rc;
  rc = buf_printf(&s, "CREATE TABLE %s (\"key\" %s PRIMARY KEY", t->qname,
                  pg_type(t->def.key_type));
  for (c = 0; c < t->def.ncolumns && !rc; c++) {
    char *q = quote(t->def.columns[c].name, '"');
    if (!q) {
      free(s.p);
      return SYNC_ENOMEM;
    }
    if (t->def.columns[c].type == SYNC_COUNTER)
      nn = " NOT NULL DEFAULT 0"; /* never NULL: 0 until added to */
    else
      nn = t->def.columns[c].flags & SYNC_COL_NOTNULL ? " NOT NULL" : "";
    rc = buf_printf(&s, ", %s %s%s", q, pg_type(t->def.columns[c].type), nn);
    free(q);
  }
  for (c = 0; c < t->def.ncolumns && !rc; c++)
    if (t->def.columns[c].type == SYNC_COUNTER)
      rc = buf_printf(&s, ", " PGB_OTHERS "%u bigint", c);
  if (!rc && b->o.audit)
    rc = buf_printf(&s, ", _sync_stamp bigint, _sync_site text");
  if (!rc) rc = buf_printf(&s, ")");
  if (!rc) rc = run(b, s.p, "creating a table");
  free(s.p);
  return rc;
}

static int check_all(pgb_bridge *b) {
  unsigned i;
  int rc, absent;
  for (i = 0; i < b->nt; i++) {
    if ((rc = table_check(b, &b->t[i], &absent))) return rc;
    if (absent)
      return fail(b, PGB_EPG, "postgres: table %s is gone", b->t[i].def.name);
  }
  return 0;
}

/* Connect, and create or check everything the bridge needs there, under
 * an advisory lock so that two bridges starting at once do not race. */
static int pg_connect(pgb_bridge *b) {
  pgb_buf trig = {0}, stage = {0};
  const char *pv[1] = {b->site_hex};
  PGresult *r;
  unsigned i;
  int rc, absent;
  if (b->pg) PQfinish(b->pg);
  b->st.connected = 0;
  b->pg = PQconnectdb(b->o.conninfo);
  if (PQstatus(b->pg) != CONNECTION_OK) return pg_fail(b, "connect", NULL);
  PQsetNoticeProcessor(b->pg, NULL, NULL);
  if ((rc = run(b, "SET client_min_messages = warning", "settings")) ||
      (rc = run(b, "BEGIN", "begin")) ||
      (rc = run(b, "SELECT 1 FROM pg_advisory_xact_lock(7975617712)",
                "lock")) ||
      (rc = run(b,
                "CREATE TABLE IF NOT EXISTS _sync_bridge (site text PRIMARY "
                "KEY, version bigint NOT NULL, updated timestamptz NOT NULL "
                "DEFAULT now());\n"
                "CREATE TABLE IF NOT EXISTS _sync_outbox (id bigserial "
                "PRIMARY KEY, tbl text NOT NULL, op text NOT NULL, at "
                "timestamptz NOT NULL DEFAULT clock_timestamp(), r text[] "
                "NOT NULL);\n"
                "CREATE INDEX IF NOT EXISTS _sync_outbox_tbl ON "
                "_sync_outbox (tbl, id);\n"
                "CREATE INDEX IF NOT EXISTS _sync_outbox_key ON "
                "_sync_outbox (tbl, (r[1]))",
                "creating the outbox")))
    goto out;
  r = PQexecParams(b->pg,
                   "INSERT INTO _sync_bridge (site, version) VALUES ($1, 0) "
                   "ON CONFLICT DO NOTHING",
                   1, NULL, pv, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = pg_fail(b, "cursor row", r);
  PQclear(r);
  for (i = 0; i < b->nt && !rc; i++) {
    pgb_table *t = &b->t[i];
    if (!(rc = table_check(b, t, &absent)) && absent) rc = table_create(b, t);
  }
  for (i = 0; i < b->nt && !rc; i++) {
    trig.len = stage.len = 0;
    if ((rc = table_sql(b, &b->t[i], &trig, &stage))) break;
    rc = run(b, trig.p, "installing the capture trigger");
    if (!rc) rc = run(b, stage.p, "creating the staging table");
  }
  if (!rc) rc = run(b, "COMMIT", "commit");
out:
  free(trig.p);
  free(stage.p);
  if (rc) {
    PQfinish(b->pg);
    b->pg = NULL;
    return rc;
  }
  b->st.connected = 1;
  return 0;
}

/* ---- the pull: server replica -> state replica ------------------- */

static uint64_t version_of(sync_env *env) {
  sync_txn *x;
  uint64_t v = 0;
  if (!sync_txn_begin(env, SYNC_TXN_RDONLY, &x)) {
    v = sync_txn_version(x);
    sync_txn_abort(x);
  }
  return v;
}

/* A pull of the server replica into the state replica, run on a thread
 * of its own while to_pg writes what it has already committed: the pull
 * (the library's apply) and Postgres' work on the batches overlap.
 * to_pg reads no version the pull has not published in `durable`, the
 * state replica's version after a commit that returned (durable, in the
 * default mode), so the cursor stored in Postgres never names a version
 * that a power cut could take back. */
typedef struct pgb_pull {
  pgb_bridge *b;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t durable; /* the state replica's version after the last commit */
  uint64_t moved;
  int done, stop, rc;
  char err[PGB_ERRMAX];
} pgb_pull;

/* Pull everything recv lacks of send, chunk by chunk, each chunk applied
 * with its cursor (the library's own crash safety).  The sender records
 * the requester's progress (sync_request_ack, for its tombstone
 * collection) once, with the first chunk: acknowledging each chunk would
 * cost a durable write transaction on the sender per chunk, and an older
 * acknowledgement only delays a collection.  With p, each commit is
 * published to to_pg, and p->stop ends the pull between chunks.  Errors
 * go to err. */
static int xfer(pgb_bridge *b, char *err, sync_env *recv, sync_env *send,
                const uint8_t send_site[16], uint64_t *moved, pgb_pull *p) {
  sync_delta_opts o;
  int rc, reset = 0, last = 0, acked = 0;
  memset(&o, 0, sizeof o);
  o.max_rows = b->o.batch_rows;
  while (!last) {
    sync_txn *rt = NULL, *st = NULL;
    sync_request *req = NULL;
    sync_delta *d = NULL;
    sync_apply_report rep;
    if (p) {
      pthread_mutex_lock(&p->mu);
      rc = p->stop;
      pthread_mutex_unlock(&p->mu);
      if (rc) return 0;
    }
    if ((rc = sync_txn_begin(recv, SYNC_TXN_RDONLY, &rt)))
      return lib_fail_in(err, recv, rc, "replica");
    rc = sync_request_make(rt, send_site, &req);
    sync_txn_abort(rt);
    if (rc) return lib_fail_in(err, recv, rc, "request");
    if (acked) {
      if (!(rc = sync_txn_begin(send, SYNC_TXN_RDONLY, &st))) {
        rc = sync_delta_make(st, req, &o, &d);
        sync_txn_abort(st);
      }
    } else if (!(rc = sync_txn_begin(send, 0, &st))) {
      rc = sync_request_ack(st, req);
      if (!rc || rc == SYNC_EHISTORY) rc = sync_delta_make(st, req, &o, &d);
      if (!rc)
        rc = sync_txn_commit(st);
      else
        sync_txn_abort(st);
      acked = !rc;
    }
    sync_request_free(req);
    if (rc == SYNC_ESTALE && !reset) {
      /* the sender collected tombstones we may lack: start again */
      reset = 1;
      sync_delta_free(d);
      if ((rc = sync_txn_begin(recv, 0, &rt)) ||
          (rc = sync_peer_reset(rt, send_site)) ||
          (rc = sync_txn_commit(rt)))
        return lib_fail_in(err, recv, rc, "peer reset");
      continue;
    }
    if (rc) {
      sync_delta_free(d);
      return lib_fail_in(err, send, rc, "cutting a chunk");
    }
    if ((rc = sync_txn_begin(recv, 0, &rt))) {
      sync_delta_free(d);
      return lib_fail_in(err, recv, rc, "replica");
    }
    rc = sync_delta_apply(rt, d, SYNC_APPLY_MERGE, &rep);
    if (!rc)
      rc = sync_txn_commit(rt);
    else
      sync_txn_abort(rt);
    last = sync_delta_last(d);
    sync_delta_free(d);
    if (rc) return lib_fail_in(err, recv, rc, "applying a chunk");
    *moved += rep.inserted + rep.updated + rep.deleted;
    if (p) {
      uint64_t v = version_of(recv);
      pthread_mutex_lock(&p->mu);
      p->durable = v;
      pthread_cond_signal(&p->cv);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return 0;
}

static void *pull_main(void *arg) {
  pgb_pull *p = (pgb_pull *)arg;
  pgb_bridge *b = p->b;
  uint64_t moved = 0;
  int rc = xfer(b, p->err, b->rep, b->srv, b->srv_site, &moved, p);
  pthread_mutex_lock(&p->mu);
  p->rc = rc;
  p->moved = moved;
  p->done = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Start the pull; the state replica's version now is durable. */
static int pull_start(pgb_bridge *b, pgb_pull *p) {
  memset(p, 0, sizeof *p);
  p->b = b;
  p->durable = version_of(b->rep);
  if (pthread_mutex_init(&p->mu, NULL)) return fail(b, SYNC_ENOMEM, "mutex");
  if (pthread_cond_init(&p->cv, NULL)) {
    pthread_mutex_destroy(&p->mu);
    return fail(b, SYNC_ENOMEM, "condition variable");
  }
  if (pthread_create(&p->th, NULL, pull_main, p)) {
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    return fail(b, SYNC_ENOMEM, "cannot start the pull's thread");
  }
  return 0;
}

/* The newest version to_pg may read, and whether the pull is over (p
 * NULL: no pull, every version is there). */
static int pull_bound(pgb_pull *p, uint64_t *bound) {
  int done;
  if (!p) {
    *bound = UINT64_MAX;
    return 1;
  }
  pthread_mutex_lock(&p->mu);
  *bound = p->durable;
  done = p->done;
  pthread_mutex_unlock(&p->mu);
  return done;
}

/* Wait until the pull publishes a version after v, or ends. */
static void pull_wait(pgb_pull *p, uint64_t v) {
  pthread_mutex_lock(&p->mu);
  while (!p->done && p->durable <= v) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

/* Stop (when stop) and join the pull; its error, if any, becomes b's. */
static int pull_end(pgb_bridge *b, pgb_pull *p, int stop, uint64_t *moved) {
  int rc;
  pthread_mutex_lock(&p->mu);
  p->stop = stop;
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->th, NULL);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  *moved += p->moved;
  if ((rc = p->rc)) memcpy(b->err, p->err, sizeof b->err);
  return rc;
}

/* ---- replica -> Postgres ---------------------------------------------- */

static const char COPY_HEAD[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

static int put_field(pgb_buf *bf, const void *p, size_t n) {
  if (buf_be(bf, (uint64_t)n, 4)) return SYNC_ENOMEM;
  return buf_put(bf, p, n);
}

static int put_null(pgb_buf *bf) { return buf_be(bf, 0xffffffffu, 4); }

static int put_value(pgb_buf *bf, const sync_value *v) {
  uint64_t u;
  switch (v->type) {
  case SYNC_INTEGER:
    return buf_be(bf, 8, 4) || buf_be(bf, (uint64_t)v->i, 8) ? SYNC_ENOMEM : 0;
  case SYNC_REAL:
    memcpy(&u, &v->r, 8);
    return buf_be(bf, 8, 4) || buf_be(bf, u, 8) ? SYNC_ENOMEM : 0;
  case SYNC_TEXT:
  case SYNC_BLOB: return put_field(bf, v->data, v->len);
  default: return put_null(bf);
  }
}

static void hex_str(const uint8_t *p, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = hx[p[i] >> 4];
    out[2 * i + 1] = hx[p[i] & 15];
  }
  out[2 * n] = 0;
}

/* Start COPY into table `into` (columns cols).  *state is set to the
 * SQLSTATE of a failure. */
static int copy_start(pgb_bridge *b, const char *into, const char *cols) {
  pgb_buf sql = {0};
  PGresult *r;
  int rc;
  if (buf_printf(&sql, "COPY %s %s FROM STDIN (FORMAT binary)", into, cols))
    return SYNC_ENOMEM;
  r = PQexec(b->pg, sql.p);
  free(sql.p);
  rc = PQresultStatus(r) == PGRES_COPY_IN ? 0 : pg_fail(b, "copy", r);
  PQclear(r);
  return rc;
}

static int copy_put(pgb_bridge *b, const char *p, size_t n) {
  while (n) {
    int k = n > INT32_MAX ? INT32_MAX : (int)n;
    if (PQputCopyData(b->pg, p, k) != 1) return pg_fail(b, "copy", NULL);
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* End the COPY in progress (the trailer sent here; with fail, fail it)
 * and read its result; *state is set to the SQLSTATE of a failure.  The
 * COPY is over when this returns, whatever it returns. */
static int copy_end(pgb_bridge *b, const char *fail_msg, char state[6]) {
  PGresult *r;
  int rc, sent;
  state[0] = 0;
  sent = !fail_msg && PQputCopyData(b->pg, "\377\377", 2) == 1;
  if (PQputCopyEnd(b->pg, sent ? NULL : fail_msg ? fail_msg : "no trailer") !=
      1) {
    rc = pg_fail(b, "copy", NULL);
    while ((r = PQgetResult(b->pg))) PQclear(r);
    return rc;
  }
  r = PQgetResult(b->pg);
  rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_fail(b, "copy", r);
  if (rc && PQresultErrorField(r, PG_DIAG_SQLSTATE))
    snprintf(state, 6, "%s", PQresultErrorField(r, PG_DIAG_SQLSTATE));
  PQclear(r);
  while ((r = PQgetResult(b->pg))) PQclear(r);
  return rc;
}

/* End the COPY in progress as failed, keeping b's message (the reason). */
static void copy_abort(pgb_bridge *b, const char *why) {
  char state[6], keep[PGB_ERRMAX];
  memcpy(keep, b->err, sizeof keep);
  copy_end(b, why, state);
  memcpy(b->err, keep, sizeof keep);
}

/* COPY bf (a whole stream, trailer added here) into table `into`. */
static int copy_in(pgb_bridge *b, const char *into, const char *cols,
                   pgb_buf *bf, char state[6]) {
  int rc;
  state[0] = 0;
  if ((rc = copy_start(b, into, cols))) return rc;
  if ((rc = copy_put(b, bf->p, bf->len))) {
    copy_abort(b, "the bridge could not send it all");
    return rc;
  }
  return copy_end(b, NULL, state);
}

/* Give up the stream of this batch, if any: Postgres fails the COPY,
 * and the transaction is rolled back after. */
static void stream_abort(pgb_bridge *b) {
  if (!b->stream) return;
  b->stream = NULL;
  if (b->pg) copy_abort(b, "the bridge gave up the batch");
}

/* ---- counters ------------------------------------------------------- */

/* A signed 128-bit number in two words (two's complement): a counter's
 * arithmetic mixes int64 values with shares that are differences of two
 * unsigned 64-bit totals, which int64 cannot hold. */
typedef struct pgb_i128 {
  uint64_t lo;
  int64_t hi;
} pgb_i128;

static pgb_i128 i128_of(int64_t v) {
  pgb_i128 r;
  r.lo = (uint64_t)v;
  r.hi = v < 0 ? -1 : 0;
  return r;
}

static pgb_i128 i128_sub(pgb_i128 a, pgb_i128 b) {
  pgb_i128 r;
  r.lo = a.lo - b.lo;
  r.hi = a.hi - b.hi - (a.lo < b.lo);
  return r;
}

/* pos - neg: a replica's share of a cell. */
static pgb_i128 i128_share(uint64_t pos, uint64_t neg) {
  pgb_i128 r;
  r.lo = pos - neg;
  r.hi = -(int64_t)(pos < neg);
  return r;
}

/* a as an int64 into *out: -1 when out of range. */
static int i128_to_i64(pgb_i128 a, int64_t *out) {
  if (!(a.hi == 0 && a.lo <= (uint64_t)INT64_MAX) &&
      !(a.hi == -1 && a.lo > (uint64_t)INT64_MAX))
    return -1;
  *out = (int64_t)a.lo;
  return 0;
}

/* The bridge's own share of counter col of a live row, and the part of
 * sum (the value read) that the other replicas added: sum - share. */
static int counter_others(sync_txn *x, unsigned table, const void *key,
                          size_t klen, unsigned col, int64_t sum,
                          int64_t *others) {
  uint64_t pos, neg;
  int rc = sync_counter_own(x, table, key, klen, col, &pos, &neg);
  if (rc) return rc;
  return i128_to_i64(i128_sub(i128_of(sum), i128_share(pos, neg)), others)
             ? SYNC_ELIMIT
             : 0;
}

/* Bring the state replica's own share of counter col of a live row to
 * want (c - others, from a Postgres row), by adds of at most 2^63 - 1. */
static int counter_set_share(sync_txn *x, unsigned table, const void *key,
                             size_t klen, unsigned col, int64_t c,
                             int64_t others) {
  uint64_t pos, neg, mag;
  pgb_i128 d;
  int rc, sub;
  if ((rc = sync_counter_own(x, table, key, klen, col, &pos, &neg))) return rc;
  d = i128_sub(i128_sub(i128_of(c), i128_of(others)), i128_share(pos, neg));
  if (d.hi == 0) {
    sub = 0;
    mag = d.lo;
  } else if (d.hi == -1 && d.lo) {
    sub = 1;
    mag = 0 - d.lo;
  } else {
    return SYNC_ELIMIT; /* 2^64 or more: no one total takes it */
  }
  while (mag) {
    uint64_t step = mag > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : mag;
    if ((rc = sync_counter_add(x, table, key, klen, col,
                               sub ? -(int64_t)step : (int64_t)step)))
      return rc;
    mag -= step;
  }
  return 0;
}

/* One changed row of the state replica into t's COPY streams: a
 * tombstone's key into dcopy; a live row (key, columns, and with --audit
 * its newest stamp and that stamp's site) into copy when it is fresh,
 * into scopy otherwise.  A live row is fresh when it was inserted once
 * and never replaced anything (causal length 1, no column with a base)
 * and not written by the bridge from Postgres: Postgres cannot hold it
 * yet.  The first fresh row of the batch opens a COPY straight into its
 * table (under a savepoint: should a key be there after all, the unique
 * violation sends the rows the general way), and that table's fresh rows
 * are sent as they are staged, so that Postgres works on them while the
 * next are read.  *hlc is set to the newest stamp. */
static int stage_row(pgb_bridge *b, pgb_table *t, sync_txn *rx,
                     sync_changes *it, const sync_change *ch, uint64_t *hlc) {
  pgb_buf *row = &b->row, *bf;
  sync_stamp newest = ch->row_stamp;
  unsigned c;
  int rc = 0, live = ch->causal_length & 1, fresh = ch->causal_length == 1;
  char site[33];
  row->len = 0;
  rc |= buf_be(
      row, live ? 1u + t->def.ncolumns + t->nctr + (b->o.audit ? 2u : 0u) : 1u,
      2);
  if (t->def.key_type == SYNC_INTEGER && ch->key.len == 8)
    rc |= put_value(row, &(sync_value){.type = SYNC_INTEGER,
                                       .i = sync_key_int_decode(ch->key.data)});
  else
    rc |= put_field(row, ch->key.data, ch->key.len);
  for (c = 0; live && c < t->def.ncolumns && !rc; c++) {
    sync_value v;
    sync_stamp s, base;
    int r = sync_changes_column(it, c, &v, &s, &base);
    if (r == SYNC_NOTFOUND) {
      /* a counter never added to reads 0 */
      rc |= t->def.columns[c].type == SYNC_COUNTER
                ? put_value(row, &(sync_value){.type = SYNC_INTEGER, .i = 0})
                : put_null(row);
      continue;
    }
    if (r) return r;
    if (s.hlc > newest.hlc) newest = s;
    /* A column the bridge wrote (a counter's stamp is its newest add's,
     * whatever the others): Postgres has had the row. */
    if (base.hlc || !memcmp(s.site, b->rep_site, 16)) fresh = 0;
    rc |= put_value(row, &v);
  }
  if (live && !memcmp(newest.site, b->rep_site, 16)) fresh = 0;
  for (c = 0; live && c < t->def.ncolumns && !rc; c++) {
    sync_value v = {.type = SYNC_INTEGER, .i = 0};
    int64_t others = 0;
    int r;
    if (t->def.columns[c].type != SYNC_COUNTER) continue;
    r = sync_changes_column(it, c, &v, NULL, NULL);
    if (r == 0)
      r = counter_others(rx, ch->table, ch->key.data, ch->key.len, c, v.i,
                         &others);
    else if (r == SYNC_NOTFOUND)
      r = 0;
    if (r == SYNC_ELIMIT)
      return fail(b, PGB_EPG,
                  "table %s: counter %s of a row: the bridge's share of it "
                  "is past the 64-bit range, which Postgres cannot hold",
                  t->def.name, t->def.columns[c].name);
    if (r) return r;
    if (others != v.i) fresh = 0; /* a share of the bridge's: it has had it */
    rc |= put_value(row, &(sync_value){.type = SYNC_INTEGER, .i = others});
  }
  if (live && b->o.audit) {
    hex_str(newest.site, 16, site);
    rc |= buf_be(row, 8, 4) || buf_be(row, newest.hlc, 8);
    rc |= put_field(row, site, 32);
  }
  *hlc = newest.hlc;
  if (rc) return SYNC_ENOMEM;
  bf = !live ? &t->dcopy : fresh ? &t->copy : &t->scopy;
  if (!bf->len && buf_put(bf, COPY_HEAD, sizeof COPY_HEAD)) return SYNC_ENOMEM;
  if (buf_put(bf, row->p, row->len)) return SYNC_ENOMEM;
  if (bf == &t->dcopy) t->ndead++;
  else if (bf == &t->scopy) t->nlive++;
  else if (t->nfresh++ == 0 && !b->stream_used) {
    b->stream_used = 1;
    if ((rc = run(b, "SAVEPOINT pgb_fresh", "savepoint")) ||
        (rc = copy_start(b, t->qname, t->copy_cols)))
      return rc;
    b->stream = t;
    t->sent = 0;
  }
  if (b->stream == t && t->copy.len - t->sent >= PGB_STREAM_CHUNK) {
    if ((rc = copy_put(b, t->copy.p + t->sent, t->copy.len - t->sent)))
      return rc;
    t->sent = t->copy.len;
  }
  return 0;
}

static void unstage(pgb_bridge *b) {
  unsigned i;
  stream_abort(b);
  b->stream_used = 0;
  for (i = 0; i < b->nt; i++) {
    b->t[i].copy.len = b->t[i].scopy.len = b->t[i].dcopy.len = 0;
    b->t[i].nfresh = b->t[i].nlive = b->t[i].ndead = 0;
    b->t[i].sent = 0;
  }
}

/* Write t's staged rows (keys differ, so their order does not matter):
 * fresh rows straight into the table with COPY under a savepoint (the
 * stream's rest when t is the batch's stream), falling back on a unique
 * violation to the staging table with the other live rows; deleted keys
 * through their staging table; live rows through the upsert that writes
 * only rows whose values differ.  *written counts the Postgres rows that
 * changed. */
static int flush_table(pgb_bridge *b, pgb_table *t, uint64_t *written) {
  char state[6];
  PGresult *r;
  int rc, fallback = 0;
  if (t->nfresh) {
    if (b->stream == t) {
      /* on a failure to send, unstage() ends the COPY */
      if ((rc = copy_put(b, t->copy.p + t->sent, t->copy.len - t->sent)))
        return rc;
      b->stream = NULL;
      rc = copy_end(b, NULL, state);
    } else if (!(rc = run(b, "SAVEPOINT pgb_fresh", "savepoint"))) {
      rc = copy_in(b, t->qname, t->copy_cols, &t->copy, state);
    } else {
      return rc;
    }
    if (!rc) {
      *written += t->nfresh;
      if ((rc = run(b, "RELEASE SAVEPOINT pgb_fresh", "savepoint")))
        return rc;
    } else {
      if (strcmp(state, "23505")) return rc; /* not a unique violation */
      if ((rc = run(b, "ROLLBACK TO SAVEPOINT pgb_fresh", "savepoint")))
        return rc;
      b->err[0] = 0;
      if ((rc = copy_in(b, t->stage, t->copy_cols, &t->copy, state)))
        return rc;
      fallback = 1;
    }
  }
  if (t->ndead) {
    if ((rc = copy_in(b, t->dead, "", &t->dcopy, state)) ||
        (rc = run(b, t->lock_dead, "locking rows")))
      return rc;
    if (!(r = exec(b, t->del_sql, PGRES_COMMAND_OK, "delete", &rc))) return rc;
    *written += strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
  }
  if (t->nlive &&
      (rc = copy_in(b, t->stage, t->copy_cols, &t->scopy, state)))
    return rc;
  if (t->nlive || fallback) {
    if ((rc = run(b, t->lock_stage, "locking rows"))) return rc;
    if (!(r = exec(b, t->ups_sql, PGRES_COMMAND_OK, "upsert", &rc)))
      return rc;
    *written += strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (t->raced) {
      int n;
      if (!(r = exec(b, t->raced, PGRES_TUPLES_OK, "upsert check", &rc)))
        return rc;
      n = PQntuples(r);
      PQclear(r);
      if (n) return PGB_RETRY;
    }
  }
  t->nfresh = t->nlive = t->ndead = 0; /* written */
  return 0;
}

/* Open a batch: a Postgres transaction that skips the capture trigger,
 * the tables checked, and the cursor read and locked (a second bridge on
 * the same state waits) into *cur. */
static int batch_begin(pgb_bridge *b, uint64_t *cur) {
  const char *pv[1] = {b->site_hex};
  PGresult *r;
  int rc;
  unstage(b);
  if ((rc = run(b, "BEGIN", "begin")) ||
      (rc = run(b, "SET LOCAL sync.bridge = 'on'", "settings")) ||
      (rc = check_all(b)))
    return rc;
  r = PQexecParams(b->pg,
                   "SELECT version FROM _sync_bridge WHERE site = $1 FOR "
                   "UPDATE",
                   1, NULL, pv, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    rc = PQresultStatus(r) == PGRES_TUPLES_OK
             ? fail(b, PGB_EPG, "postgres: the cursor row of this bridge "
                                "(_sync_bridge) is gone")
             : pg_fail(b, "reading the cursor", r);
    PQclear(r);
    return rc;
  }
  *cur = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return 0;
}

/* Close a batch: the staged rows written, the cursor set to version,
 * both committed at once.  PGB_RETRY (flush_table) before the commit. */
static int batch_end(pgb_bridge *b, uint64_t version) {
  const char *pv[2];
  char vbuf[24];
  PGresult *r;
  uint64_t written = 0;
  unsigned i;
  int rc = 0;
  if (b->stream) rc = flush_table(b, b->stream, &written);
  for (i = 0; i < b->nt && !rc; i++)
    if (b->t[i].nfresh || b->t[i].nlive || b->t[i].ndead)
      rc = flush_table(b, &b->t[i], &written);
  if (rc) return rc;
  snprintf(vbuf, sizeof vbuf, "%llu", (unsigned long long)version);
  pv[0] = b->site_hex;
  pv[1] = vbuf;
  r = PQexecParams(b->pg,
                   "UPDATE _sync_bridge SET version = $2, updated = now() "
                   "WHERE site = $1",
                   2, NULL, pv, NULL, NULL, 0);
  rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_fail(b, "cursor", r);
  PQclear(r);
  if (!rc) rc = run(b, "COMMIT", "commit");
  if (rc) return rc;
  b->st.cursor = version;
  b->st.batches++;
  b->st.to_pg_rows += written;
  return 0;
}

/* Write the state replica's changes after the cursor to Postgres in
 * batches of batch_rows rows (whole versions: a version is never split
 * across batches), each batch and its new cursor in one Postgres
 * transaction.  A snapshot is read once, whatever the number of batches
 * it makes (opened again for each batch, the iterator would decode the
 * rows up to the cursor again and again); a new one is taken when it is
 * used up and the pull p (NULL: none) has committed more.  Versions the
 * pull has not published are not read.  Once the pull is over, a step
 * starts no new batch after PGB_STEP_MS, so that a long backlog holds
 * back neither the outbox nor the metrics; the rows it leaves are
 * counted for lag_rows, up to PGB_LAG_COUNT_BATCHES batches' worth. */
static int to_pg(pgb_bridge *b, pgb_pull *p, uint64_t *moved) {
  sync_txn *rx = NULL;
  sync_changes *it = NULL;
  sync_change ch;
  uint64_t cur, vend = 0, bound, last, count, rest = 0, hlc = 0, again;
  uint64_t t0 = wall_ms();
  int rc, done, first = 1;
  b->st.lag_s = 0;
  b->st.lag_rows = 0;
  if ((rc = batch_begin(b, &cur))) return rc;
  b->st.cursor = cur;
  for (;;) {
    if (!rx || cur >= vend) {
      /* a snapshot with versions after the cursor */
      sync_changes_close(it);
      it = NULL;
      sync_txn_abort(rx);
      rx = NULL;
      for (;;) {
        done = pull_bound(p, &bound);
        if ((rc = sync_txn_begin(b->rep, SYNC_TXN_RDONLY, &rx))) {
          lib_fail(b, b->rep, rc, "state replica");
          goto out;
        }
        vend = sync_txn_version(rx);
        if (vend > bound) vend = bound;
        if (vend > cur) break;
        sync_txn_abort(rx);
        rx = NULL;
        if (done) {
          rc = run(b, "ROLLBACK", "rollback");
          goto out;
        }
        pull_wait(p, cur);
      }
      if ((rc = sync_changes_open(rx, cur, &it))) {
        lib_fail(b, b->rep, rc, "reading the changes");
        goto out;
      }
      rc = sync_changes_next(it, &ch);
    }
    /* one batch; ch is the first change not yet staged (rc 0) */
    count = 0;
    last = cur;
    for (; rc == 0 && ch.version <= vend; rc = sync_changes_next(it, &ch)) {
      if (count >= b->o.batch_rows && ch.version != last) break;
      last = ch.version;
      if (ch.table >= b->nt) continue; /* a newer schema's table: not ours */
      if ((rc = stage_row(b, &b->t[ch.table], rx, it, &ch, &hlc))) {
        if (rc != PGB_EPG) lib_fail(b, b->rep, rc, "reading a changed row");
        goto out;
      }
      if (first) {
        uint64_t ms = hlc >> 16, now = wall_ms();
        b->st.lag_s = now > ms ? (double)(now - ms) / 1000.0 : 0;
        first = 0;
      }
      count++;
    }
    if (rc && rc != SYNC_NOTFOUND) {
      lib_fail(b, b->rep, rc, "reading the changes");
      goto out;
    }
    /* stopped inside the snapshot: at a version boundary */
    if ((rc = batch_end(b, rc == 0 && ch.version <= vend ? last : vend))) {
      if (rc == PGB_RETRY) /* the outbox first: at the next step */
        rc = run(b, "ROLLBACK", "rollback");
      goto out;
    }
    *moved += count;
    cur = b->st.cursor;
    rc = cur < vend ? 0 : SYNC_NOTFOUND; /* 0: ch is the next change */
    done = pull_bound(p, &bound);
    if (done && cur >= vend && (!p || bound <= vend)) break;
    if (done && cur < vend && wall_ms() - t0 >= PGB_STEP_MS) {
      for (rest = 1; rest < PGB_LAG_COUNT_BATCHES * b->o.batch_rows &&
                     !(rc = sync_changes_next(it, &ch)) && ch.version <= vend;
           rest++)
        ;
      if (rc && rc != SYNC_NOTFOUND) {
        lib_fail(b, b->rep, rc, "reading the changes");
        goto out;
      }
      break;
    }
    if ((rc = batch_begin(b, &again))) goto out;
    if (again != cur) { /* not ours any more: start again at the next step */
      rc = run(b, "ROLLBACK", "rollback");
      goto out;
    }
  }
  rc = 0;
  b->st.lag_rows = rest;
out:
  sync_changes_close(it);
  sync_txn_abort(rx);
  unstage(b);
  return rc;
}

/* ---- Postgres -> replica ---------------------------------------------- */

typedef struct pgb_entry {
  int row;
  const char *key;
  long long id;
} pgb_entry;

static int entry_cmp(const void *x, const void *y) {
  const pgb_entry *a = x, *b = y;
  int c = strcmp(a->key, b->key);
  if (c) return c;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* Field f of outbox row i as a value of a column of type `type`; blobs
 * and texts point into scratch or the result. */
static int parse_value(PGresult *r, int i, int f, int type, sync_value *v,
                       unsigned char *scratch) {
  const char *s = PQgetvalue(r, i, f);
  size_t n = (size_t)PQgetlength(r, i, f);
  char *end;
  uint64_t u = 0;
  unsigned char x[8];
  int k;
  if (PQgetisnull(r, i, f)) {
    *v = sync_null();
    return 0;
  }
  switch (type) {
  case SYNC_INTEGER:
  case SYNC_COUNTER:
    errno = 0;
    *v = sync_int(strtoll(s, &end, 10));
    return *end || errno ? -1 : 0;
  case SYNC_REAL:
    if (n != 16 || unhex(s, 16, x)) return -1;
    for (k = 0; k < 8; k++) u = u << 8 | x[k];
    v->type = SYNC_REAL;
    memcpy(&v->r, &u, 8);
    return 0;
  case SYNC_TEXT: *v = sync_text(s, n); return 0;
  default:
    if (unhex(s, n, scratch)) return -1;
    *v = sync_blob(scratch, n / 2);
    return 0;
  }
}

/* Apply entry e (the newest of its key in this batch) to the state
 * replica: a delete, or the row as Postgres holds it: a put of its
 * columns (counters NULL: their counts kept), then each counter's
 * share brought to what Postgres says (counter_set_share).  deleted: an
 * older entry of the key in this batch was a delete, so that a client's
 * DELETE and INSERT of a key in one batch start the row's counters from
 * 0, as they would a batch apart (a put over the live row would keep
 * them). */
static int apply_entry(pgb_bridge *b, sync_txn *w, pgb_table *t, PGresult *r,
                       const pgb_entry *e, int deleted, sync_value *vals,
                       unsigned char *scratch) {
  unsigned char kb[8];
  sync_value kv;
  const void *key;
  size_t klen;
  unsigned c;
  size_t off;
  int rc, f, del;
  off = (size_t)PQgetlength(r, e->row, 3) / 2 + 1;
  if (parse_value(r, e->row, 3, t->def.key_type, &kv, scratch))
    return fail(b, PGB_EPG, "outbox entry %lld: a key that does not parse",
                e->id);
  if (kv.type == SYNC_INTEGER) {
    sync_key_int(kv.i, kb);
    key = kb;
    klen = 8;
  } else {
    key = kv.data;
    klen = kv.len;
  }
  if (!klen) return fail(b, PGB_EPG, "outbox entry %lld: an empty key", e->id);
  del = !strcmp(PQgetvalue(r, e->row, 1), "d");
  if (del || (deleted && t->nctr)) {
    rc = sync_delete(w, t->id, key, klen);
    if (rc == SYNC_NOTFOUND) rc = 0;
    if (rc || del) return rc;
  }
  for (c = 0; c < t->def.ncolumns; c++) {
    if (parse_value(r, e->row, 4 + (int)c, t->def.columns[c].type, &vals[c],
                    scratch + off))
      return fail(b, PGB_EPG, "outbox entry %lld: column %s does not parse",
                  e->id, t->def.columns[c].name);
    off += (size_t)PQgetlength(r, e->row, 4 + (int)c) / 2 + 1;
  }
  for (c = 0; c < t->def.ncolumns; c++)
    if (t->def.columns[c].type == SYNC_COUNTER) {
      /* a NULL (a table made by hand) counts as 0 */
      vals[t->def.ncolumns + c] = vals[c];
      vals[c] = sync_null();
    }
  if ((rc = sync_put(w, t->id, key, klen, vals, t->def.ncolumns)) || !t->nctr)
    return rc;
  for (c = 0, f = 4 + (int)t->def.ncolumns; c < t->def.ncolumns; c++) {
    sync_value others;
    if (t->def.columns[c].type != SYNC_COUNTER) continue;
    if (parse_value(r, e->row, f++, SYNC_COUNTER, &others, NULL))
      return fail(b, PGB_EPG,
                  "outbox entry %lld: the companion of counter %s "
                  "does not parse",
                  e->id, t->def.columns[c].name);
    rc = counter_set_share(
        w, t->id, key, klen, c,
        vals[t->def.ncolumns + c].type ? vals[t->def.ncolumns + c].i : 0,
        others.type ? others.i : 0);
    if (rc == SYNC_ELIMIT)
      return fail(b, SYNC_ELIMIT,
                  "outbox entry %lld: counter %s: the add that takes it to "
                  "its value in Postgres would take the bridge's total for "
                  "it past 2^64 - 1",
                  e->id, t->def.columns[c].name);
    if (rc) return rc;
  }
  return 0;
}

static int outbox_delete(pgb_bridge *b, PGresult *r, int n) {
  pgb_buf ids = {0};
  const char *pv[1];
  PGresult *d;
  int i, rc = buf_printf(&ids, "{");
  for (i = 0; i < n && !rc; i++)
    rc = buf_printf(&ids, "%s%s", i ? "," : "", PQgetvalue(r, i, 0));
  if (!rc) rc = buf_printf(&ids, "}");
  if (rc) {
    free(ids.p);
    return SYNC_ENOMEM;
  }
  pv[0] = ids.p;
  d = PQexecParams(b->pg, "DELETE FROM _sync_outbox WHERE id = ANY($1::bigint[])",
                   1, NULL, pv, NULL, NULL, 0);
  rc = PQresultStatus(d) == PGRES_COMMAND_OK ? 0 : pg_fail(b, "outbox", d);
  PQclear(d);
  free(ids.p);
  return rc;
}

/* One batch of t's outbox entries into the state replica, the newest
 * entry of each key only, in one write transaction stamped at the newest
 * capture time; then the entries leave the outbox. */
static int from_pg_table(pgb_bridge *b, pgb_table *t, uint64_t *moved) {
  PGresult *r;
  pgb_entry *e = NULL;
  sync_value *vals = NULL;
  unsigned char *scratch = NULL;
  sync_txn *w = NULL;
  size_t maxlen = 0;
  uint64_t at = 0;
  int n, i, rc, deleted;
  if (!(r = exec(b, t->sel_out, PGRES_TUPLES_OK, "reading the outbox", &rc)))
    return rc;
  if (!(n = PQntuples(r))) {
    PQclear(r);
    return 0;
  }
  e = calloc((size_t)n, sizeof *e);
  vals = calloc(2u * t->def.ncolumns + 1u, sizeof *vals);
  for (i = 0; i < n; i++) {
    size_t len = 0;
    int f;
    uint64_t a = strtoull(PQgetvalue(r, i, 2), NULL, 10);
    for (f = 3; f < PQnfields(r); f++) len += (size_t)PQgetlength(r, i, f) + 1;
    if (len > maxlen) maxlen = len;
    if (a > at) at = a;
    if (e) {
      e[i].row = i;
      e[i].key = PQgetvalue(r, i, 3);
      e[i].id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    }
  }
  if (!e || !vals || !(scratch = malloc(maxlen + 1))) {
    rc = fail(b, SYNC_ENOMEM, "out of memory");
    goto out;
  }
  qsort(e, (size_t)n, sizeof *e, entry_cmp);
  b->clock_ms = at;
  if ((rc = sync_txn_begin(b->rep, 0, &w))) {
    lib_fail(b, b->rep, rc, "state replica");
    goto out;
  }
  for (i = 0, deleted = 0; i < n && !rc; i++) {
    if (i + 1 < n && !strcmp(e[i].key, e[i + 1].key)) { /* older */
      deleted |= !strcmp(PQgetvalue(r, e[i].row, 1), "d");
      continue;
    }
    rc = apply_entry(b, w, t, r, &e[i], deleted, vals, scratch);
    if (rc && rc != PGB_EPG && !b->err[0])
      lib_fail(b, b->rep, rc, "writing a Postgres row to the state replica");
    deleted = 0;
  }
  if (!rc) {
    rc = sync_txn_commit(w);
    w = NULL;
    if (rc) lib_fail(b, b->rep, rc, "state replica commit");
  }
  if (!rc) rc = outbox_delete(b, r, n);
  if (!rc) {
    b->st.to_replica_rows += (uint64_t)n;
    *moved += (uint64_t)n;
  }
out:
  sync_txn_abort(w);
  b->clock_ms = 0;
  free(scratch);
  free(vals);
  free(e);
  PQclear(r);
  return rc;
}

static int from_pg(pgb_bridge *b, uint64_t *moved) {
  unsigned i;
  int rc;
  if ((rc = check_all(b))) return rc;
  for (i = 0; i < b->nt; i++)
    if ((rc = from_pg_table(b, &b->t[i], moved))) return rc;
  return 0;
}

/* ---- the bridge ------------------------------------------------------- */

/* The outbox's share of the lag, at a cost that does not grow with the
 * outbox: entries counted up to PGB_LAG_COUNT_BATCHES batches' worth per
 * table, like the rows waiting the other way, and the age of the oldest
 * found among the first by id (an entry takes its id and its time at
 * the same insert). */
static void outbox_lag(pgb_bridge *b) {
  char sql[400];
  PGresult *r;
  snprintf(sql, sizeof sql,
           "SELECT (SELECT count(*) FROM (SELECT 1 FROM _sync_outbox LIMIT "
           "%llu) n), coalesce(extract(epoch FROM clock_timestamp() - "
           "(SELECT min(at) FROM (SELECT at FROM _sync_outbox ORDER BY id "
           "LIMIT 100) a)), 0)",
           (unsigned long long)(PGB_LAG_COUNT_BATCHES * b->o.batch_rows *
                                b->nt));
  r = PQexec(b->pg, sql);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    double s = strtod(PQgetvalue(r, 0, 1), NULL);
    b->st.lag_rows += strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    if (s > b->st.lag_s) b->st.lag_s = s;
  }
  PQclear(r);
}


/* Postgres' writes into the state replica; the server replica's into
 * it (the pull, on its own thread) while the state replica's go to
 * Postgres; then the state replica's into the server replica.  A pull
 * is skipped while the server replica has not changed since the last
 * one, a push while the state replica holds nothing the server replica
 * lacks (nothing came from Postgres since the last push): each costs a
 * scan and a commit even when it moves nothing. */
static int sync_step(pgb_bridge *b, uint64_t *m) {
  uint64_t v0 = version_of(b->rep), sv;
  pgb_pull pull, *p = NULL;
  int rc, rc2, ours;
  if ((rc = from_pg(b, m))) return rc;
  ours = version_of(b->rep) != v0 || b->pushed_v != v0;
  sv = version_of(b->srv);
  if (sv != b->pulled_v) {
    if ((rc = pull_start(b, &pull))) return rc;
    p = &pull;
  }
  rc = to_pg(b, p, m);
  if (p) {
    /* on a failure the pull stops after its chunk; its own error wins */
    rc2 = pull_end(b, p, rc != 0, m);
    if (rc2) return rc2;
    if (rc) return rc;
    b->pulled_v = sv;
  }
  if (rc) return rc;
  if (ours) {
    if ((rc = xfer(b, b->err, b->srv, b->rep, b->rep_site, m, NULL)))
      return rc;
  }
  b->pushed_v = version_of(b->rep);
  return 0;
}

int pgb_step(pgb_bridge *b, uint64_t *moved) {
  uint64_t m = 0;
  int rc;
  b->err[0] = 0;
  b->st.steps++;
  if (!b->pg || PQstatus(b->pg) != CONNECTION_OK) rc = pg_connect(b);
  else rc = 0;
  if (!rc) rc = sync_step(b, &m);
  if (!rc) outbox_lag(b);
  if (rc) {
    b->st.errors++;
    if (b->pg && PQstatus(b->pg) != CONNECTION_OK) {
      PQfinish(b->pg);
      b->pg = NULL;
      b->st.connected = 0;
    } else if (b->pg && PQtransactionStatus(b->pg) != PQTRANS_IDLE) {
      PQclear(PQexec(b->pg, "ROLLBACK"));
    }
  }
  if (moved) *moved = m;
  return rc;
}

int pgb_catch_up(pgb_bridge *b) {
  uint64_t m;
  int rc;
  do {
    if ((rc = pgb_step(b, &m))) return rc;
  } while (m);
  return 0;
}

int pgb_open(const pgb_opts *o, pgb_bridge **out) {
  pgb_bridge *b;
  const sync_table_def *defs = NULL;
  sync_table_def *d = NULL;
  unsigned i, c;
  int rc;
  *out = NULL;
  if (!o || !o->db || !o->conninfo) return SYNC_EINVAL;
  if (!(b = calloc(1, sizeof *b))) return SYNC_ENOMEM;
  *out = b;
  b->o = *o;
  if (!b->o.batch_rows) b->o.batch_rows = PGB_BATCH;
  /* the caller's strings need not outlive this call */
  b->o.db = b->db_copy = strdup(o->db);
  b->o.conninfo = b->conninfo_copy = strdup(o->conninfo);
  b->o.state = NULL;
  if (!b->db_copy || !b->conninfo_copy)
    return fail(b, SYNC_ENOMEM, "out of memory");
  if (o->state) b->state_path = strdup(o->state);
  else if ((b->state_path = malloc(strlen(o->db) + 10)))
    sprintf(b->state_path, "%s.pgbridge", o->db);
  if (!b->state_path) return fail(b, SYNC_ENOMEM, "out of memory");
  if ((rc = sync_env_create(NULL, &b->srv)) ||
      (rc = sync_env_open(b->srv, o->db, SYNC_OPEN_NOCREATE)))
    return fail(b, rc, "%s: %s%s%s", o->db, sync_strerror(rc),
                b->srv && *sync_env_errmsg(b->srv) ? ": " : "",
                b->srv ? sync_env_errmsg(b->srv) : "");
  b->nt = sync_env_table_count(b->srv);
  if (!b->nt) return fail(b, SYNC_EINVAL, "%s has no tables", o->db);
  b->t = calloc(b->nt, sizeof *b->t);
  d = calloc(b->nt, sizeof *d);
  if (!b->t || !d) {
    free(d);
    return fail(b, SYNC_ENOMEM, "out of memory");
  }
  for (i = 0; i < b->nt; i++) {
    pgb_table *t = &b->t[i];
    sync_env_table_def(b->srv, i, &d[i]);
    t->id = i;
    t->def = d[i];
    t->qname = quote(t->def.name, '"');
    t->lit = quote(t->def.name, '\'');
    t->lit2 = t->qname ? quote(t->qname, '\'') : NULL;
    if (!t->qname || !t->lit || !t->lit2) rc = fail(b, SYNC_ENOMEM, "out of memory");
    for (c = 0; c < t->def.ncolumns && !rc; c++)
      if (!strcmp(t->def.columns[c].name, "key") ||
          !strncmp(t->def.columns[c].name, "_sync_", 6) ||
          !strcmp(t->def.columns[c].name, "live"))
        rc = fail(b, SYNC_EINVAL,
                  "table %s: a column named \"%s\" clashes with the "
                  "bridge's own (key, live, _sync_*)",
                  t->def.name, t->def.columns[c].name);
      else if (t->def.columns[c].type == SYNC_COUNTER)
        t->nctr++;
  }
  defs = d;
  if (!rc && !(rc = sync_env_create(NULL, &b->rep)) &&
      !(rc = sync_env_set_schema(b->rep, defs, b->nt)) &&
      !(rc = sync_env_set_clock(b->rep, state_clock, b)))
    rc = sync_env_open(b->rep, b->state_path, 0);
  free(d);
  if (rc && !b->err[0])
    return fail(b, rc, "%s: %s%s%s", b->state_path, sync_strerror(rc),
                b->rep && *sync_env_errmsg(b->rep) ? ": " : "",
                b->rep ? sync_env_errmsg(b->rep) : "");
  if (rc) return rc;
  /* the table definitions now point into the server env (valid while it
   * is open: the copies above were shallow) */
  for (i = 0; i < b->nt; i++) sync_env_table_def(b->srv, i, &b->t[i].def);
  sync_env_site_id(b->srv, b->srv_site);
  sync_env_site_id(b->rep, b->rep_site);
  hex_str(b->rep_site, 16, b->site_hex);
  return pg_connect(b);
}

void pgb_stats_get(pgb_bridge *b, pgb_stats *out) { *out = b->st; }
const char *pgb_errmsg(pgb_bridge *b) { return b ? b->err : ""; }
sync_env *pgb_server_env(pgb_bridge *b) { return b->srv; }
sync_env *pgb_state_env(pgb_bridge *b) { return b->rep; }

void pgb_close(pgb_bridge *b) {
  unsigned i;
  if (!b) return;
  if (b->pg) PQfinish(b->pg);
  for (i = 0; b->t && i < b->nt; i++) {
    table_sql_free(&b->t[i]);
    free(b->t[i].qname);
    free(b->t[i].lit);
    free(b->t[i].lit2);
    free(b->t[i].copy.p);
    free(b->t[i].scopy.p);
    free(b->t[i].dcopy.p);
  }
  free(b->t);
  free(b->row.p);
  sync_env_close(b->rep);
  sync_env_close(b->srv);
  free(b->state_path);
  free(b->db_copy);
  free(b->conninfo_copy);
  free(b);
}
