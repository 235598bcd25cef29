/*
 * peers.c - the engines under comparison, set up the same way for every
 * workload: one file each in the scratch directory, the same map size for
 * the two LMDB-based ones, and matching durability.
 */
#include "peers.h"

#include <stdint.h>

#include "bench.h"

size_t peer_mapsize(void) {
#if SIZE_MAX > 0xFFFFFFFFu
  return (size_t)4 << 30;
#else
  return (size_t)256 << 20;
#endif
}

/* ---- ours ------------------------------------------------------------ */

void peer_sync_check(sync_env *env, int rc, const char *what) {
  const char *msg = env ? sync_env_errmsg(env) : "";
  int native = env ? sync_env_native_error(env) : 0;
  if (rc == 0)
    return;
  bench_die("%s: %s (%d)%s%s (native %d)", what, sync_strerror(rc), rc,
            *msg ? ": " : "", msg, native);
}

void peer_sync_open(peer_sync *p, const char *path, int durability,
                    const sync_table_def *def, int fresh) {
  size_t map = peer_mapsize();
  p->env = NULL;
  if (fresh)
    bench_unlink_db(path);
  peer_sync_check(NULL, sync_env_create(NULL, &p->env), "sync_env_create");
  peer_sync_check(p->env, sync_env_set_durability(p->env, durability),
                  "sync_env_set_durability");
  peer_sync_check(p->env, sync_env_set_mapsize(p->env, map, map),
                  "sync_env_set_mapsize");
  peer_sync_check(p->env, sync_env_set_schema(p->env, def, 1),
                  "sync_env_set_schema");
  peer_sync_check(p->env,
                  sync_env_open(p->env, path, fresh ? 0 : SYNC_OPEN_NOCREATE),
                  "sync_env_open");
  peer_sync_check(p->env, sync_env_table(p->env, def->name, &p->table),
                  "sync_env_table");
}

sync_env *peer_sync_env(const char *path, const sync_allocator *a,
                        const sync_table_def *def, int fresh) {
  sync_env *env;
  if (fresh) bench_unlink_db(path);
  peer_sync_check(NULL, sync_env_create(a, &env), "sync_env_create");
  peer_sync_check(env, sync_env_set_durability(env, SYNC_DURABLE_NOSYNC),
                  "sync_env_set_durability");
  peer_sync_check(env, sync_env_set_mapsize(env, peer_mapsize(), 0),
                  "sync_env_set_mapsize");
  peer_sync_check(env, sync_env_set_schema(env, def, 1), "sync_env_set_schema");
  peer_sync_check(env, sync_env_open(env, path, 0), "sync_env_open");
  return env;
}

uint64_t peer_sync_digest(sync_env *env) {
  sync_txn *x;
  uint64_t d = 0;
  peer_sync_check(env, sync_txn_begin(env, SYNC_TXN_RDONLY, &x), "begin");
  peer_sync_check(env, sync_digest(x, SYNC_ALL_TABLES, &d), "sync_digest");
  sync_txn_abort(x);
  return d;
}

void peer_sync_close(peer_sync *p) {
  sync_env_close(p->env);
  p->env = NULL;
}

/* ---- raw LMDB -------------------------------------------------------- */

void peer_lmdb_check(int rc, const char *what) {
  if (rc != 0)
    bench_die("%s: %s (%d)", what, mdb_strerror(rc), rc);
}

void peer_lmdb_open(peer_lmdb *p, const char *path, int durable, int fresh) {
  unsigned flags = MDB_NOSUBDIR | (durable ? 0u : (unsigned)MDB_NOSYNC);
  MDB_txn *txn;
  if (fresh)
    bench_unlink_db(path);
  peer_lmdb_check(mdb_env_create(&p->env), "mdb_env_create");
  peer_lmdb_check(mdb_env_set_mapsize(p->env, peer_mapsize()),
                  "mdb_env_set_mapsize");
  peer_lmdb_check(mdb_env_open(p->env, path, flags, 0644), "mdb_env_open");
  peer_lmdb_check(mdb_txn_begin(p->env, NULL, 0, &txn), "mdb_txn_begin");
  peer_lmdb_check(mdb_dbi_open(txn, NULL, 0, &p->dbi), "mdb_dbi_open");
  peer_lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
}

void peer_lmdb_close(peer_lmdb *p) {
  mdb_env_close(p->env);
  p->env = NULL;
}

/* ---- SQLite + session ------------------------------------------------ */

#if BENCH_HAVE_SQLITE
void peer_sqlite_check(peer_sqlite *p, int rc, int want, const char *what) {
  if (rc != want)
    bench_die("%s: %s (%d)", what,
              p && p->db ? sqlite3_errmsg(p->db) : sqlite3_errstr(rc), rc);
}

void peer_sqlite_exec(peer_sqlite *p, const char *sql) {
  peer_sqlite_check(p, sqlite3_exec(p->db, sql, NULL, NULL, NULL), SQLITE_OK,
                    sql);
}

sqlite3_stmt *peer_sqlite_prepare(peer_sqlite *p, const char *sql) {
  sqlite3_stmt *st = NULL;
  peer_sqlite_check(p, sqlite3_prepare_v2(p->db, sql, -1, &st, NULL), SQLITE_OK,
                    sql);
  return st;
}

void peer_sqlite_open(peer_sqlite *p, const char *path, int durable,
                      const char *create_sql, const char *table) {
  p->db = NULL;
  p->session = NULL;
  bench_unlink_db(path);
  peer_sqlite_check(p,
                    sqlite3_open_v2(path, &p->db,
                                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                    NULL),
                    SQLITE_OK, "sqlite3_open_v2");
  /* journal_mode returns a row, so step it rather than exec and check. */
  {
    sqlite3_stmt *st = peer_sqlite_prepare(p, "PRAGMA journal_mode=WAL");
    const unsigned char *mode;
    peer_sqlite_check(p, sqlite3_step(st), SQLITE_ROW, "journal_mode=WAL");
    mode = sqlite3_column_text(st, 0);
    if (!mode || (mode[0] != 'w' && mode[0] != 'W'))
      bench_die("sqlite: journal_mode=WAL refused (got %s)",
                mode ? (const char *)mode : "NULL");
    peer_sqlite_check(p, sqlite3_finalize(st), SQLITE_OK, "finalize");
  }
  peer_sqlite_exec(p, durable ? "PRAGMA synchronous=FULL"
                              : "PRAGMA synchronous=OFF");
  peer_sqlite_exec(p, create_sql);
  peer_sqlite_check(p, sqlite3session_create(p->db, "main", &p->session),
                    SQLITE_OK, "sqlite3session_create");
  peer_sqlite_check(p, sqlite3session_attach(p->session, table), SQLITE_OK,
                    "sqlite3session_attach");
}

void peer_sqlite_close(peer_sqlite *p) {
  if (p->session)
    sqlite3session_delete(p->session);
  p->session = NULL;
  if (p->db)
    peer_sqlite_check(p, sqlite3_close(p->db), SQLITE_OK, "sqlite3_close");
  p->db = NULL;
}
#endif
