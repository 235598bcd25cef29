/*
 * peers.h - opening and closing the three engines a workload compares:
 * ours (sync.h), raw LMDB (the floor) and SQLite with its session
 * extension.  Every helper checks its return codes and dies with the
 * engine's own message, so workloads only hold the timed loops.
 */
#ifndef BENCH_PEERS_H
#define BENCH_PEERS_H

#include <stddef.h>

#include <lmdb.h>

#include "bench.h"
#include "sync.h"

#if BENCH_HAVE_SQLITE
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>
#endif

/* The map size every LMDB-based side gets, fixed and large enough that
 * no run grows it: 4 GiB.  Where size_t has 32 bits, 256 MiB: W3 keeps
 * five replicas open at once and apply two or three files, and 1 GiB
 * maps of each do not fit in a 32-bit address space; 256 MiB holds the
 * files of --quick (100,000 rows) with room to spare, though not of the
 * full million rows. */
size_t peer_mapsize(void);

/* ---- ours ---- */
typedef struct peer_sync {
  sync_env *env;
  unsigned table; /* id of the first table of the schema */
} peer_sync;

/* Open path with the one-table schema def.  fresh: remove the file and
 * its -lock first and create it; else it must exist. */
void peer_sync_open(peer_sync *p, const char *path, int durability,
                    const sync_table_def *def, int fresh);
void peer_sync_close(peer_sync *p);
/* rc != 0: die with sync_strerror(rc) and what env says. */
void peer_sync_check(sync_env *env, int rc, const char *what);
/* A replica of the one-table schema def at path for the sync workloads:
 * no syncs, the bench's map size (the file may grow past it), memory
 * from a (NULL: the library's).  fresh: remove the file first. */
sync_env *peer_sync_env(const char *path, const sync_allocator *a,
                        const sync_table_def *def, int fresh);
/* sync_digest of every table, in a read transaction of its own. */
uint64_t peer_sync_digest(sync_env *env);

/* ---- raw LMDB ---- */
typedef struct peer_lmdb {
  MDB_env *env;
  MDB_dbi dbi; /* the main, unnamed database */
} peer_lmdb;

/* MDB_NOSUBDIR, plus MDB_NOSYNC unless durable.  fresh: as above. */
void peer_lmdb_open(peer_lmdb *p, const char *path, int durable, int fresh);
void peer_lmdb_close(peer_lmdb *p);
void peer_lmdb_check(int rc, const char *what);

/* ---- SQLite + session ---- */
#if BENCH_HAVE_SQLITE
typedef struct peer_sqlite {
  sqlite3 *db;
  sqlite3_session *session;
} peer_sqlite;

/* Create path afresh in WAL mode, synchronous=FULL when durable else OFF,
 * run create_sql, and attach a session to table. */
void peer_sqlite_open(peer_sqlite *p, const char *path, int durable,
                      const char *create_sql, const char *table);
void peer_sqlite_close(peer_sqlite *p);
sqlite3_stmt *peer_sqlite_prepare(peer_sqlite *p, const char *sql);
void peer_sqlite_exec(peer_sqlite *p, const char *sql);
/* rc != want: die with sqlite3_errmsg(). */
void peer_sqlite_check(peer_sqlite *p, int rc, int want, const char *what);
#endif

#endif /* BENCH_PEERS_H */
