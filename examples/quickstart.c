/*
 * quickstart.c - the README's first program: declare a table, write rows
 * in a transaction, read them back in key order, list what changed.
 *
 *   cc -std=c11 quickstart.c sync.c -llmdb -lzstd -lxxhash
 *   ./a.out [path.db]
 */
#include <stdio.h>
#include <string.h>

#include "sync.h"

#define CHECK(call)                                                            \
  do {                                                                         \
    int rc_ = (call);                                                          \
    if (rc_ != SYNC_OK) {                                                      \
      fprintf(stderr, "quickstart: %s: %s (%s)\n", #call,                      \
              sync_strerror(rc_), sync_env_errmsg(env));                       \
      return 1;                                                                \
    }                                                                          \
  } while (0)

int main(int argc, char **argv) {
  static const sync_column_def cols[] = {{"temp", SYNC_REAL, 0},
                                         {"status", SYNC_TEXT, 0}};
  static const sync_table_def sensors = {"sensors", SYNC_TEXT, cols, 2};
  const char *path = argc > 1 ? argv[1] : "quickstart.db";
  sync_env *env = NULL;
  sync_txn *txn;
  sync_cursor *cur;
  sync_changes *changes;
  sync_change ch;
  sync_key key;
  sync_value v[2];
  uint64_t n;
  unsigned temp_col = 0;

  CHECK(sync_env_create(NULL, &env));
  CHECK(sync_env_set_schema(env, &sensors, 1));
  CHECK(sync_env_open(env, path, 0));

  /* One transaction: three rows, one update, one delete. */
  CHECK(sync_txn_begin(env, 0, &txn));
  v[0] = sync_real(21.5), v[1] = sync_text("ok", 2);
  CHECK(sync_put(txn, 0, "kitchen", 7, v, 2));
  v[0] = sync_real(19.0);
  CHECK(sync_put(txn, 0, "hall", 4, v, 2));
  v[0] = sync_real(35.2), v[1] = sync_text("warn", 4);
  CHECK(sync_put(txn, 0, "attic", 5, v, 2));
  v[0] = sync_real(22.0);
  CHECK(sync_update(txn, 0, "kitchen", 7, &temp_col, v, 1));
  CHECK(sync_delete(txn, 0, "hall", 4));
  CHECK(sync_txn_commit(txn));

  /* Read back in key order from a snapshot. */
  CHECK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  CHECK(sync_cursor_open(txn, 0, &cur));
  while (sync_cursor_next(cur, &key, v, 2) == SYNC_OK)
    printf("%-8.*s temp=%.1f status=%.*s\n", (int)key.len,
           (const char *)key.data, v[0].r, (int)v[1].len,
           (const char *)v[1].data);
  sync_cursor_close(cur);
  CHECK(sync_count(txn, 0, &n));
  printf("%llu live rows, local version %llu\n", (unsigned long long)n,
         (unsigned long long)sync_txn_version(txn));

  /* The change log: what a replica would send, each row once. */
  CHECK(sync_changes_open(txn, 0, &changes));
  while (sync_changes_next(changes, &ch) == SYNC_OK)
    printf("changed: %.*s (version %llu, %s)\n", (int)ch.key.len,
           (const char *)ch.key.data, (unsigned long long)ch.version,
           ch.causal_length % 2 ? "live" : "deleted");
  sync_changes_close(changes);
  sync_txn_abort(txn);
  sync_env_close(env);
  return 0;
}
