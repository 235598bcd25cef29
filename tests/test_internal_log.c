/*
 * The change log stays proportional to the data: rows updated many times
 * leave stale entries that compaction removes, while the change listing
 * still shows each row once, at its latest state.  White-box: the log size
 * is read with LMDB directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lmdb.h>
#include <stdio.h>
#include <string.h>

#include "sync.h"

#define DB "t_internal_log.db"

static void rm_db(void) {
  remove(DB);
  remove(DB "-lock");
}

static size_t log_entries(void) {
  MDB_env *e;
  MDB_txn *t;
  MDB_dbi d;
  MDB_stat st;
  assert_int_equal(mdb_env_create(&e), 0);
  assert_int_equal(mdb_env_set_maxdbs(e, 8), 0);
  assert_int_equal(mdb_env_open(e, DB, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
  assert_int_equal(mdb_txn_begin(e, NULL, MDB_RDONLY, &t), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.log", 0, &d), 0);
  assert_int_equal(mdb_stat(t, d, &st), 0);
  mdb_txn_abort(t);
  mdb_env_close(e);
  return st.ms_entries;
}

static void test_log_stays_bounded_under_repeated_updates(void **state) {
  static const sync_column_def cols[] = {{"a", SYNC_INTEGER, 0}};
  static const sync_table_def tab = {"t", SYNC_TEXT, cols, 1};
  sync_env *e;
  sync_txn *t;
  sync_changes *ch;
  sync_change c;
  int r, k, listed = 0;
  (void)state;
  rm_db();
  assert_int_equal(sync_env_create(NULL, &e), 0);
  assert_int_equal(sync_env_set_schema(e, &tab, 1), 0);
  assert_int_equal(sync_env_set_durability(e, SYNC_DURABLE_NOSYNC), 0);
  assert_int_equal(sync_env_open(e, DB, 0), 0);
  for (r = 0; r < 3000; r++) {
    assert_int_equal(sync_txn_begin(e, 0, &t), 0);
    for (k = 0; k < 10; k++) {
      char key[8];
      sync_value v = sync_int(r * 10 + k);
      snprintf(key, sizeof key, "k%d", k);
      assert_int_equal(sync_put(t, 0, key, strlen(key), &v, 1), 0);
    }
    assert_int_equal(sync_txn_commit(t), 0);
  }
  assert_int_equal(sync_txn_begin(e, SYNC_TXN_RDONLY, &t), 0);
  assert_int_equal(sync_changes_open(t, 0, &ch), 0);
  while (sync_changes_next(ch, &c) == 0) {
    sync_value v;
    assert_int_equal(sync_changes_column(ch, 0, &v, NULL, NULL), 0);
    assert_true(c.version == 3000);
    assert_true(v.i >= 29990);
    listed++;
  }
  sync_changes_close(ch);
  sync_txn_abort(t);
  sync_env_close(e);
  assert_int_equal(listed, 10);
  /* 30,000 entries were written; at most ~1,024 stale ones may wait. */
  assert_true(log_entries() <= 2 * 1024 + 10);
  rm_db();
}

static void test_changes_since_skips_stale_entries(void **state) {
  static const sync_column_def cols[] = {{"a", SYNC_INTEGER, 0}};
  static const sync_table_def tab = {"t", SYNC_TEXT, cols, 1};
  sync_env *e;
  sync_txn *t;
  sync_changes *ch;
  sync_change c;
  sync_value v = sync_int(1);
  (void)state;
  rm_db();
  assert_int_equal(sync_env_create(NULL, &e), 0);
  assert_int_equal(sync_env_set_schema(e, &tab, 1), 0);
  assert_int_equal(sync_env_open(e, DB, 0), 0);
  /* v1: a and b; v2: a again.  Since 0: b (v1) then a (v2), once each. */
  assert_int_equal(sync_txn_begin(e, 0, &t), 0);
  assert_int_equal(sync_put(t, 0, "a", 1, &v, 1), 0);
  assert_int_equal(sync_put(t, 0, "b", 1, &v, 1), 0);
  assert_int_equal(sync_txn_commit(t), 0);
  v = sync_int(2);
  assert_int_equal(sync_txn_begin(e, 0, &t), 0);
  assert_int_equal(sync_put(t, 0, "a", 1, &v, 1), 0);
  assert_int_equal(sync_txn_commit(t), 0);
  assert_int_equal(log_entries(), 3); /* a's first entry is stale */
  assert_int_equal(sync_txn_begin(e, SYNC_TXN_RDONLY, &t), 0);
  assert_int_equal(sync_changes_open(t, 0, &ch), 0);
  assert_int_equal(sync_changes_next(ch, &c), 0);
  assert_memory_equal(c.key.data, "b", 1);
  assert_true(c.version == 1);
  assert_int_equal(sync_changes_next(ch, &c), 0);
  assert_memory_equal(c.key.data, "a", 1);
  assert_true(c.version == 2);
  assert_int_equal(sync_changes_next(ch, &c), SYNC_NOTFOUND);
  sync_changes_close(ch);
  sync_txn_abort(t);
  sync_env_close(e);
  rm_db();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_stays_bounded_under_repeated_updates),
      cmocka_unit_test(test_changes_since_skips_stale_entries),
  };
  return cmocka_run_group_tests_name("internal_log", tests, NULL, NULL);
}
