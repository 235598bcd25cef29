/*
 * single_header.c - the single-header build in use: this translation
 * unit defines SYNC_IMPLEMENTATION and includes sync_single.h (made by
 * amalgamate.py --single-header), then opens a database, writes a row,
 * reads it back and checks its change record; built once more with
 * SYNC_TEST_INCLUDE_LATE, which includes <stdio.h> before it.  Plain C
 * without cmocka: exit status 0 on success, 1 with a message on failure.
 */
#ifdef SYNC_TEST_INCLUDE_LATE
/* Built a second time with another header first: the order of includes
 * must not matter (a strict -std=c11 libc then hides POSIX's calls). */
#include <stdio.h>
#endif
#define SYNC_IMPLEMENTATION
#include "sync_single.h"

#include <stdio.h>
#include <string.h>

#define DB "t_single.db"
#define DB_LOCK "t_single.db-lock"

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
      goto out;                                                                \
    }                                                                          \
  } while (0)

#define CHECK_RC(expr, want)                                                   \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_ != (want)) {                                                       \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n", __FILE__,   \
              __LINE__, #expr, rc_, sync_strerror(rc_), (want));               \
      failures++;                                                              \
      goto out;                                                                \
    }                                                                          \
  } while (0)

int main(void) {
  static const sync_column_def cols[] = {
      {"count", SYNC_INTEGER, 0},
      {"label", SYNC_TEXT, 0},
  };
  static const sync_table_def tables[] = {{"things", SYNC_TEXT, cols, 2}};
  sync_env *env = NULL;
  sync_txn *txn = NULL;
  sync_changes *ch = NULL;
  sync_change c;
  sync_value v[2], got[2];
  uint64_t n = 0;
  int rc;

  remove(DB);
  remove(DB_LOCK);
  CHECK(strcmp(SYNC_VERSION_STRING, "") != 0);
  CHECK_RC(sync_env_create(NULL, &env), 0);
  CHECK_RC(sync_env_set_schema(env, tables, 1), 0);
  CHECK_RC(sync_env_open(env, DB, 0), 0);

  CHECK_RC(sync_txn_begin(env, 0, &txn), 0);
  v[0] = sync_int(42);
  v[1] = sync_text("answer", 6);
  CHECK_RC(sync_put(txn, 0, "k", 1, v, 2), 0);
  rc = sync_txn_commit(txn); /* frees txn whatever the result */
  txn = NULL;
  CHECK_RC(rc, 0);

  CHECK_RC(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn), 0);
  CHECK_RC(sync_get(txn, 0, "k", 1, got, 2), 0);
  CHECK(got[0].type == SYNC_INTEGER && got[0].i == 42);
  CHECK(got[1].type == SYNC_TEXT && got[1].len == 6 &&
        memcmp(got[1].data, "answer", 6) == 0);
  CHECK_RC(sync_get(txn, 0, "x", 1, got, 2), SYNC_NOTFOUND);
  CHECK_RC(sync_count(txn, 0, &n), 0);
  CHECK(n == 1);
  CHECK_RC(sync_changes_open(txn, 0, &ch), 0);
  CHECK_RC(sync_changes_next(ch, &c), 0);
  CHECK(c.version == 1 && c.causal_length == 1 && c.key.len == 1);
  CHECK_RC(sync_changes_next(ch, &c), SYNC_NOTFOUND);

out:
  sync_changes_close(ch);
  sync_txn_abort(txn);
  sync_env_close(env);
  remove(DB);
  remove(DB_LOCK);
  if (failures == 0) printf("single_header: ok\n");
  return failures ? 1 : 0;
}
