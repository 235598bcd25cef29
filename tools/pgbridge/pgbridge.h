/*
 * pgbridge.h - keep PostgreSQL tables and a sync replica in step, both
 * ways (docs/PGBRIDGE.md).  Outside the library: built with libpq, used by
 * `synctl pg-bridge` and by programs that link tools/pgbridge/pgbridge.c.
 *
 * The bridge owns a small replica of its own (the state file, DB.pgbridge
 * by default) with its own site id: the "Postgres side".  Each step
 *   1. applies the rows that Postgres triggers captured in the outbox
 *      (_sync_outbox) to the state replica as local writes of its site,
 *   2. pulls the server replica DB into the state replica (in process,
 *      sync_request_make / sync_delta_make / sync_delta_apply), on a
 *      thread of its own while 3 writes what the pull has committed,
 *   3. writes every row the state replica changed since the cursor kept
 *      in Postgres (_sync_bridge) to the Postgres tables, in batches,
 *      each in one Postgres transaction with its new cursor,
 *   4. pushes the state replica into DB, where devices pick it up.
 * Conflicts between a Postgres write and a device write are found by the
 * library when the two replicas merge, and logged in its conflict log.
 *
 * Errors are the library's negative codes plus PGB_EPG (Postgres refused
 * or failed: connection, SQL, a table that does not match);
 * pgb_errmsg() says what happened in words.
 */
#ifndef PGBRIDGE_H
#define PGBRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

#define PGB_EPG (-1000) /* Postgres failed or refused: pgb_errmsg() */

typedef struct pgb_opts {
  const char *db;       /* the server replica (must exist) */
  const char *state;    /* the bridge's own replica; NULL: "DB.pgbridge" */
  const char *conninfo; /* libpq connection string or postgresql:// URI */
  size_t batch_rows;    /* rows per Postgres transaction; 0: 5000 */
  int audit;            /* add _sync_stamp (HLC) and _sync_site columns */
} pgb_opts;

typedef struct pgb_stats {
  uint64_t to_pg_rows;      /* rows written to Postgres (inserted, updated
                               or deleted there) */
  uint64_t to_replica_rows; /* outbox entries applied to the replica */
  uint64_t batches;         /* Postgres transactions committed */
  uint64_t errors;          /* steps that failed */
  uint64_t steps;
  uint64_t lag_rows;        /* rows waiting, both ways, at the last step */
  double lag_s;             /* age of the oldest of them, seconds */
  uint64_t cursor;          /* the state replica's version Postgres holds */
  int connected;            /* 1 while the Postgres connection is up */
} pgb_stats;

typedef struct pgb_bridge pgb_bridge;

/* Open DB and the state replica (creating the state file with DB's
 * schema), connect to Postgres, and create or check the tables, the
 * outbox, the cursor row and the capture triggers.  *out is set even on
 * failure when memory allowed, so that pgb_errmsg() can say why; close it
 * with pgb_close.  Errors: SYNC_EINVAL, SYNC_ENOMEM, the library's open
 * errors, PGB_EPG (a table that does not match names the table, the
 * column and both types). */
int pgb_open(const pgb_opts *o, pgb_bridge **out);

/* One step (above; it starts and joins the pull's thread: b is used by
 * one thread at a time).  *moved (may be NULL) counts the rows that moved in
 * any direction; 0 means caught up.  A lost Postgres connection is
 * re-established at the next step.  Errors: PGB_EPG, library errors; the
 * bridge stays usable: call again. */
int pgb_step(pgb_bridge *b, uint64_t *moved);

/* Steps until one moves nothing.  Errors: those of pgb_step. */
int pgb_catch_up(pgb_bridge *b);

void pgb_stats_get(pgb_bridge *b, pgb_stats *out);
/* The last failure in words; "" when none.  Owned by b. */
const char *pgb_errmsg(pgb_bridge *b);
/* The server replica's env as the bridge opened it (one process must not
 * open the same file twice): write to it from the same process. */
sync_env *pgb_server_env(pgb_bridge *b);
sync_env *pgb_state_env(pgb_bridge *b);
/* NULL is ignored. */
void pgb_close(pgb_bridge *b);

#endif /* PGBRIDGE_H */
