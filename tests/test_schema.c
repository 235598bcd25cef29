/*
 * test_schema.c - declared schemas through the public API: lookups by
 * name, validation, the check at reopen, version and hash, and the
 * append-only changes (add_column, add_table).
 */
#include "testutil.h"

#define DB "t_schema.db"
#define DB2 "t_schema2.db"

static const sync_column_def user_cols[] = {
    {"name", SYNC_TEXT, SYNC_COL_NOTNULL},
    {"age", SYNC_INTEGER, 0},
    {"score", SYNC_REAL, 0},
    {"avatar", SYNC_BLOB, SYNC_COL_LOCAL},
};
static const sync_column_def event_cols[] = {
    {"kind", SYNC_TEXT, 0},
    {"at", SYNC_INTEGER, SYNC_COL_NOTNULL},
};
static const sync_table_def schema[] = {
    {"users", SYNC_TEXT, user_cols, 4},
    {"events", SYNC_INTEGER, event_cols, 2},
};

static int setup(void **state) {
  (void)state;
  tu_remove_db(DB);
  tu_remove_db(DB2);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_remove_db(DB);
  tu_remove_db(DB2);
  return 0;
}

/* Open path with a declared schema; return the open result. */
static int try_open(const char *path, const sync_table_def *t, unsigned n,
                    sync_env **out) {
  sync_env *env;
  int rc;
  TU_OK(sync_env_create(NULL, &env));
  if (t) TU_OK(sync_env_set_schema(env, t, n));
  rc = sync_env_open(env, path, 0);
  *out = env;
  return rc;
}

/* The schema declaration rc on a fresh env, and its message. */
static int declare(const sync_table_def *t, unsigned n) {
  sync_env *env;
  int rc;
  TU_OK(sync_env_create(NULL, &env));
  rc = sync_env_set_schema(env, t, n);
  sync_env_close(env);
  return rc;
}

static void put_user(sync_env *env, const char *key, const char *name,
                     int64_t age) {
  sync_txn *txn;
  sync_value v[4];
  v[0] = sync_text(name, strlen(name));
  v[1] = sync_int(age);
  v[2] = sync_real(1.5);
  v[3] = sync_null();
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_OK(sync_put(txn, 0, key, strlen(key), v, 4));
  TU_OK(sync_txn_commit(txn));
}

static void assert_same_def(const sync_table_def *a, const sync_table_def *b) {
  unsigned i;
  assert_string_equal(a->name, b->name);
  assert_int_equal(a->key_type, b->key_type);
  assert_int_equal(a->ncolumns, b->ncolumns);
  for (i = 0; i < a->ncolumns; i++) {
    assert_string_equal(a->columns[i].name, b->columns[i].name);
    assert_int_equal(a->columns[i].type, b->columns[i].type);
    assert_int_equal(a->columns[i].flags, b->columns[i].flags);
  }
}

/* ------------------------------------------------------------------ */

static void test_tables_and_columns_found_by_name(void **state) {
  sync_env *env;
  unsigned id = 99, col = 99;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  assert_int_equal(sync_env_table_count(env), 2);
  TU_OK(sync_env_table(env, "users", &id));
  assert_int_equal(id, 0);
  TU_OK(sync_env_table(env, "events", &id));
  assert_int_equal(id, 1);
  TU_RC(sync_env_table(env, "nope", &id), SYNC_NOTFOUND);
  TU_RC(sync_env_table(env, "Users", &id), SYNC_NOTFOUND);
  TU_OK(sync_env_column(env, 0, "name", &col));
  assert_int_equal(col, 0);
  TU_OK(sync_env_column(env, 0, "avatar", &col));
  assert_int_equal(col, 3);
  TU_OK(sync_env_column(env, 1, "at", &col));
  assert_int_equal(col, 1);
  TU_RC(sync_env_column(env, 0, "at", &col), SYNC_NOTFOUND);
  TU_RC(sync_env_column(env, 0, "nope", &col), SYNC_NOTFOUND);
  sync_env_close(env);
}

static void test_table_def_round_trips_declaration(void **state) {
  sync_env *env;
  sync_table_def d;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_OK(sync_env_table_def(env, 0, &d));
  assert_same_def(&d, &schema[0]);
  TU_OK(sync_env_table_def(env, 1, &d));
  assert_same_def(&d, &schema[1]);
  TU_RC(sync_env_table_def(env, 2, &d), SYNC_NOTFOUND);
  sync_env_close(env);
}

static void test_declared_schema_is_copied(void **state) {
  sync_column_def cols[2] = {{NULL, SYNC_INTEGER, 0}, {NULL, SYNC_TEXT, 0}};
  sync_table_def t = {NULL, SYNC_TEXT, cols, 2};
  char tname[16], c0[16], c1[16];
  sync_env *env;
  sync_table_def d;
  (void)state;
  strcpy(tname, "copied");
  strcpy(c0, "first");
  strcpy(c1, "second");
  t.name = tname;
  cols[0].name = c0;
  cols[1].name = c1;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, &t, 1));
  /* Overwrite the caller's definition before open. */
  strcpy(tname, "XXXXXX");
  strcpy(c0, "YYYYY");
  cols[1].type = SYNC_BLOB;
  TU_OK(sync_env_open(env, DB, 0));
  TU_OK(sync_env_table_def(env, 0, &d));
  assert_string_equal(d.name, "copied");
  assert_string_equal(d.columns[0].name, "first");
  assert_int_equal(d.columns[1].type, SYNC_TEXT);
  sync_env_close(env);
}

static void test_invalid_schemas_are_einval(void **state) {
  char long_name[65], max_name[64];
  sync_column_def c_empty[] = {{"", SYNC_INTEGER, 0}};
  sync_column_def c_nullname[] = {{NULL, SYNC_INTEGER, 0}};
  sync_column_def c_dup[] = {{"a", SYNC_INTEGER, 0}, {"a", SYNC_TEXT, 0}};
  sync_column_def c_null_type[] = {{"a", SYNC_NULL, 0}};
  sync_column_def c_bad_type[] = {{"a", 6, 0}}; /* 5 is SYNC_COUNTER */
  sync_column_def c_neg_type[] = {{"a", -1, 0}};
  sync_column_def c_long[] = {{long_name, SYNC_INTEGER, 0}};
  sync_column_def c_max[] = {{max_name, SYNC_INTEGER, 0}};
  sync_column_def ok[] = {{"a", SYNC_INTEGER, 0}};
  sync_table_def t;
  sync_table_def two[2];
  (void)state;
  memset(long_name, 'x', 64);
  long_name[64] = 0;
  memset(max_name, 'y', 63);
  max_name[63] = 0;

#define ONE(tname, kt, cols, n)                                                \
  (t.name = (tname), t.key_type = (kt), t.columns = (cols), t.ncolumns = (n),  \
   declare(&t, 1))

  TU_OK(ONE("t", SYNC_TEXT, ok, 1));
  TU_RC(ONE("", SYNC_TEXT, ok, 1), SYNC_EINVAL);
  TU_RC(ONE(NULL, SYNC_TEXT, ok, 1), SYNC_EINVAL);
  TU_RC(ONE(long_name, SYNC_TEXT, ok, 1), SYNC_EINVAL);
  TU_OK(ONE(max_name, SYNC_TEXT, ok, 1));
  TU_RC(ONE("t", SYNC_TEXT, c_empty, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, c_nullname, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, c_dup, 2), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, c_null_type, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, c_bad_type, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, c_neg_type, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, c_long, 1), SYNC_EINVAL);
  TU_OK(ONE("t", SYNC_TEXT, c_max, 1));
  TU_RC(ONE("t", SYNC_TEXT, ok, 0), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_TEXT, NULL, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_REAL, ok, 1), SYNC_EINVAL);
  TU_RC(ONE("t", SYNC_NULL, ok, 1), SYNC_EINVAL);
  TU_OK(ONE("t", SYNC_BLOB, ok, 1));
  TU_OK(ONE("t", SYNC_INTEGER, ok, 1));
#undef ONE

  two[0].name = "same";
  two[0].key_type = SYNC_TEXT;
  two[0].columns = ok;
  two[0].ncolumns = 1;
  two[1] = two[0];
  TU_RC(declare(two, 2), SYNC_EINVAL);
  two[1].name = "other";
  TU_OK(declare(two, 2));
  TU_RC(declare(NULL, 1), SYNC_EINVAL);
}

static void test_invalid_schema_leaves_env_usable(void **state) {
  sync_column_def dup[] = {{"a", SYNC_INTEGER, 0}, {"a", SYNC_TEXT, 0}};
  sync_table_def bad = {"bad", SYNC_TEXT, dup, 2};
  sync_env *env;
  unsigned id;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_set_schema(env, &bad, 1), SYNC_EINVAL);
  TU_OK(sync_env_set_schema(env, schema, 2));
  TU_OK(sync_env_open(env, DB, 0));
  TU_OK(sync_env_table(env, "events", &id));
  TU_RC(sync_env_table(env, "bad", &id), SYNC_NOTFOUND);
  sync_env_close(env);
}

static void test_too_many_columns_is_elimit(void **state) {
  enum { N = 65 };
  static sync_column_def cols[N];
  static char names[N][8];
  sync_table_def t = {"wide", SYNC_TEXT, cols, N};
  unsigned i;
  sync_env *env;
  sync_table_def d;
  (void)state;
  for (i = 0; i < N; i++) {
    sprintf(names[i], "c%u", i);
    cols[i].name = names[i];
    cols[i].type = SYNC_INTEGER;
    cols[i].flags = 0;
  }
  TU_RC(declare(&t, 1), SYNC_ELIMIT);
  /* 64 columns (the default SYNC_MAX_COLUMNS) are fine. */
  t.ncolumns = 64;
  TU_OK(try_open(DB, &t, 1, &env));
  TU_OK(sync_env_table_def(env, 0, &d));
  assert_int_equal(d.ncolumns, 64);
  sync_env_close(env);
}

static void test_too_many_tables_is_elimit(void **state) {
  enum { N = 65 };
  static sync_table_def t[N];
  static char names[N][8];
  static const sync_column_def c[] = {{"v", SYNC_INTEGER, 0}};
  unsigned i;
  (void)state;
  for (i = 0; i < N; i++) {
    sprintf(names[i], "t%u", i);
    t[i].name = names[i];
    t[i].key_type = SYNC_TEXT;
    t[i].columns = c;
    t[i].ncolumns = 1;
  }
  TU_RC(declare(t, N), SYNC_ELIMIT);
  TU_OK(declare(t, N - 1));
}

/* Reopen DB (made with schema) declaring other; expect ESCHEMA and a
 * message naming what (or alt, when not NULL). */
static void expect_mismatch(const sync_table_def *other, unsigned n,
                            const char *what, const char *alt) {
  sync_env *env;
  const char *msg;
  TU_RC(try_open(DB, other, n, &env), SYNC_ESCHEMA);
  msg = sync_env_errmsg(env);
  assert_non_null(msg);
  if (!strstr(msg, what) && !(alt && strstr(msg, alt)))
    fail_msg("errmsg \"%s\" does not mention \"%s\"", msg, what);
  /* Declaring the right schema on the same env then opens it. */
  TU_OK(sync_env_set_schema(env, schema, 2));
  TU_OK(sync_env_open(env, DB, 0));
  sync_env_close(env);
}

static void test_reopen_with_other_schema_is_eschema(void **state) {
  sync_column_def uc[4];
  sync_table_def s[3];
  sync_env *env;
  static const sync_column_def tag_cols[] = {{"label", SYNC_TEXT, 0}};
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  put_user(env, "u1", "ann", 30);
  sync_env_close(env);

  /* A column's type differs. */
  memcpy(uc, user_cols, sizeof uc);
  memcpy(s, schema, sizeof schema);
  s[0].columns = uc;
  uc[1].type = SYNC_REAL;
  expect_mismatch(s, 2, "age", NULL);

  /* A column is renamed. */
  memcpy(uc, user_cols, sizeof uc);
  uc[2].name = "points";
  expect_mismatch(s, 2, "score", "points");

  /* A column's flags differ. */
  memcpy(uc, user_cols, sizeof uc);
  uc[1].flags = SYNC_COL_NOTNULL;
  expect_mismatch(s, 2, "age", NULL);

  /* A column is missing. */
  memcpy(uc, user_cols, sizeof uc);
  s[0].ncolumns = 3;
  expect_mismatch(s, 2, "avatar", NULL);

  /* A table is missing (one more is an upgrade: test_rolling.c). */
  memcpy(s, schema, sizeof schema);
  expect_mismatch(s, 1, "events", NULL);

  /* A table more, but read-only: the upgrade needs a writable open. */
  s[2].name = "tags";
  s[2].key_type = SYNC_TEXT;
  s[2].columns = tag_cols;
  s[2].ncolumns = 1;
  TU_OK(sync_env_create(NULL, &env));
  TU_OK(sync_env_set_schema(env, s, 3));
  TU_RC(sync_env_open(env, DB, SYNC_OPEN_RDONLY), SYNC_ESCHEMA);
  assert_non_null(strstr(sync_env_errmsg(env), "open it writable once"));
  sync_env_close(env);

  /* A table's key type differs. */
  memcpy(s, schema, sizeof schema);
  s[1].key_type = SYNC_TEXT;
  expect_mismatch(s, 2, "events", NULL);

  /* Tables in another order. */
  s[0] = schema[1];
  s[1] = schema[0];
  expect_mismatch(s, 2, "users", NULL);

  /* The data is untouched by all of this. */
  env = tu_open_env(DB, schema, 2, 0);
  {
    sync_txn *txn;
    sync_value v[4];
    TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
    TU_OK(sync_get(txn, 0, "u1", 2, v, 4));
    assert_int_equal(v[0].len, 3);
    assert_memory_equal(v[0].data, "ann", 3);
    sync_txn_abort(txn);
  }
  sync_env_close(env);
}

static void test_reopen_without_schema_takes_stored_one(void **state) {
  sync_env *env;
  sync_table_def d;
  sync_txn *txn;
  sync_value v[4];
  uint64_t ver1, hash1, ver2, hash2;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  put_user(env, "u1", "bob", 41);
  TU_OK(sync_env_schema_info(env, &ver1, &hash1));
  sync_env_close(env);

  TU_OK(try_open(DB, NULL, 0, &env));
  assert_int_equal(sync_env_table_count(env), 2);
  TU_OK(sync_env_table_def(env, 0, &d));
  assert_same_def(&d, &schema[0]);
  TU_OK(sync_env_table_def(env, 1, &d));
  assert_same_def(&d, &schema[1]);
  TU_OK(sync_env_schema_info(env, &ver2, &hash2));
  TU_U64(ver2, ver1);
  TU_U64(hash2, hash1);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "u1", 2, v, 4));
  assert_true(v[1].i == 41);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_schema_hash_depends_only_on_definition(void **state) {
  sync_env *a, *b;
  uint64_t va, ha, vb, hb, hc;
  sync_column_def uc[4];
  sync_table_def s[2];
  tu_random r2 = {0xA0, 0, 0};
  (void)state;
  a = tu_open_env(DB, schema, 2, 0);
  /* Another file, another site id, some data: same hash. */
  TU_OK(sync_env_create(NULL, &b));
  TU_OK(sync_env_set_random(b, tu_random_fn, &r2));
  TU_OK(sync_env_set_schema(b, schema, 2));
  TU_OK(sync_env_open(b, DB2, 0));
  put_user(b, "x", "y", 1);
  TU_OK(sync_env_schema_info(a, &va, &ha));
  TU_OK(sync_env_schema_info(b, &vb, &hb));
  TU_U64(va, 1);
  TU_U64(vb, 1);
  TU_U64(ha, hb);
  sync_env_close(a);
  sync_env_close(b);
  tu_remove_db(DB2);

  /* One type differs: another hash. */
  memcpy(uc, user_cols, sizeof uc);
  memcpy(s, schema, sizeof schema);
  s[0].columns = uc;
  uc[2].type = SYNC_INTEGER;
  b = tu_open_env(DB2, s, 2, 0);
  TU_OK(sync_env_schema_info(b, NULL, &hc));
  assert_true(hc != ha);
  sync_env_close(b);
  tu_remove_db(DB2);

  /* One flag differs: another hash. */
  memcpy(uc, user_cols, sizeof uc);
  uc[0].flags = 0;
  b = tu_open_env(DB2, s, 2, 0);
  TU_OK(sync_env_schema_info(b, NULL, &hc));
  assert_true(hc != ha);
  sync_env_close(b);
}

static void test_schema_info_needs_open_env(void **state) {
  sync_env *env;
  uint64_t v, h;
  (void)state;
  TU_OK(sync_env_create(NULL, &env));
  TU_RC(sync_env_schema_info(env, &v, &h), SYNC_EINVAL);
  sync_env_close(env);
}

static void test_add_column_bumps_version_and_hash(void **state) {
  sync_env *env;
  sync_column_def nick = {"nick", SYNC_TEXT, 0};
  uint64_t v1, h1, v2, h2;
  unsigned col;
  sync_table_def d;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_OK(sync_env_schema_info(env, &v1, &h1));
  TU_U64(v1, 1);
  TU_OK(sync_env_add_column(env, 0, &nick));
  TU_OK(sync_env_schema_info(env, &v2, &h2));
  TU_U64(v2, 2);
  assert_true(h2 != h1);
  TU_OK(sync_env_column(env, 0, "nick", &col));
  assert_int_equal(col, 4);
  TU_OK(sync_env_table_def(env, 0, &d));
  assert_int_equal(d.ncolumns, 5);
  assert_string_equal(d.columns[4].name, "nick");
  assert_int_equal(d.columns[4].type, SYNC_TEXT);
  sync_env_close(env);

  TU_OK(try_open(DB, NULL, 0, &env));
  TU_OK(sync_env_schema_info(env, &v1, &h1));
  TU_U64(v1, 2);
  TU_U64(h1, h2);
  sync_env_close(env);
}

static void test_add_column_old_rows_read_null(void **state) {
  sync_env *env;
  sync_txn *txn;
  sync_column_def nick = {"nick", SYNC_TEXT, 0};
  sync_value v[5];
  sync_changes *ch;
  sync_change c;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  put_user(env, "old", "olga", 70);
  TU_OK(sync_env_add_column(env, 0, &nick));

  TU_OK(sync_txn_begin(env, 0, &txn));
  /* The old row: four values as written, the new column NULL. */
  TU_OK(sync_get(txn, 0, "old", 3, v, 5));
  assert_memory_equal(v[0].data, "olga", 4);
  assert_true(v[1].i == 70);
  assert_int_equal(v[4].type, SYNC_NULL);
  /* Reading only the first columns still works. */
  TU_OK(sync_get(txn, 0, "old", 3, v, 2));
  assert_true(v[1].i == 70);
  /* New rows need all five values and can fill the new column. */
  v[0] = sync_text("nina", 4);
  v[1] = sync_int(9);
  v[2] = sync_null();
  v[3] = sync_null();
  TU_RC(sync_put(txn, 0, "new", 3, v, 4), SYNC_EINVAL);
  v[4] = sync_text("nn", 2);
  TU_OK(sync_put(txn, 0, "new", 3, v, 5));
  TU_OK(sync_txn_commit(txn));

  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "new", 3, v, 5));
  assert_int_equal(v[4].type, SYNC_TEXT);
  assert_memory_equal(v[4].data, "nn", 2);
  /* The change log has no value for the never-written column. */
  TU_OK(sync_changes_open(txn, 0, &ch));
  for (;;) {
    int rc = sync_changes_next(ch, &c);
    if (rc == SYNC_NOTFOUND) break;
    TU_OK(rc);
    if (c.key.len == 3 && memcmp(c.key.data, "old", 3) == 0) {
      TU_RC(sync_changes_column(ch, 4, NULL, NULL, NULL), SYNC_NOTFOUND);
      TU_OK(sync_changes_column(ch, 1, NULL, NULL, NULL));
    }
  }
  sync_changes_close(ch);
  sync_txn_abort(txn);

  /* Writing the new column of the old row works. */
  TU_OK(sync_txn_begin(env, 0, &txn));
  {
    unsigned col = 4;
    sync_value nv = sync_text("oo", 2);
    TU_OK(sync_update(txn, 0, "old", 3, &col, &nv, 1));
    TU_OK(sync_get(txn, 0, "old", 3, v, 5));
    assert_memory_equal(v[4].data, "oo", 2);
    assert_true(v[1].i == 70);
  }
  TU_OK(sync_txn_commit(txn));
  sync_env_close(env);
}

static void test_reopen_after_add_column_needs_new_schema(void **state) {
  sync_env *env;
  sync_column_def nick = {"nick", SYNC_TEXT, 0};
  sync_column_def uc[5];
  sync_table_def s[2];
  sync_txn *txn;
  sync_value v[5];
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  put_user(env, "u", "uma", 5);
  TU_OK(sync_env_add_column(env, 0, &nick));
  sync_env_close(env);

  /* The old declaration no longer matches. */
  TU_RC(try_open(DB, schema, 2, &env), SYNC_ESCHEMA);
  assert_true(strstr(sync_env_errmsg(env), "nick") != NULL ||
              strstr(sync_env_errmsg(env), "users") != NULL);
  sync_env_close(env);

  /* The new one does. */
  memcpy(uc, user_cols, sizeof user_cols);
  uc[4] = nick;
  memcpy(s, schema, sizeof schema);
  s[0].columns = uc;
  s[0].ncolumns = 5;
  TU_OK(try_open(DB, s, 2, &env));
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 0, "u", 1, v, 5));
  assert_true(v[1].i == 5);
  assert_int_equal(v[4].type, SYNC_NULL);
  sync_txn_abort(txn);
  sync_env_close(env);
}

static void test_add_column_not_null_is_econstraint(void **state) {
  sync_env *env;
  sync_column_def c = {"must", SYNC_INTEGER, SYNC_COL_NOTNULL};
  uint64_t v;
  unsigned col;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_RC(sync_env_add_column(env, 0, &c), SYNC_ECONSTRAINT);
  TU_OK(sync_env_schema_info(env, &v, NULL));
  TU_U64(v, 1);
  TU_RC(sync_env_column(env, 0, "must", &col), SYNC_NOTFOUND);
  sync_env_close(env);
}

static void test_add_column_existing_name_is_eexist(void **state) {
  sync_env *env;
  sync_column_def c = {"age", SYNC_TEXT, 0};
  uint64_t v;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_RC(sync_env_add_column(env, 0, &c), SYNC_EEXIST);
  TU_OK(sync_env_schema_info(env, &v, NULL));
  TU_U64(v, 1);
  sync_env_close(env);
}

static void test_add_column_invalid_is_einval(void **state) {
  sync_env *env;
  sync_column_def empty = {"", SYNC_TEXT, 0};
  sync_column_def badtype = {"x", 9, 0};
  sync_column_def ok = {"x", SYNC_TEXT, 0};
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_RC(sync_env_add_column(env, 0, &empty), SYNC_EINVAL);
  TU_RC(sync_env_add_column(env, 0, &badtype), SYNC_EINVAL);
  TU_RC(sync_env_add_column(env, 0, NULL), SYNC_EINVAL);
  TU_RC(sync_env_add_column(env, 7, &ok), SYNC_EINVAL);
  sync_env_close(env);
}

static void test_add_column_with_open_txn_is_ebusy(void **state) {
  sync_env *env;
  sync_txn *txn;
  sync_column_def c = {"later", SYNC_BLOB, 0};
  uint64_t v;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_RC(sync_env_add_column(env, 1, &c), SYNC_EBUSY);
  sync_txn_abort(txn);
  TU_OK(sync_txn_begin(env, 0, &txn));
  TU_RC(sync_env_add_column(env, 1, &c), SYNC_EBUSY);
  sync_txn_abort(txn);
  TU_OK(sync_env_schema_info(env, &v, NULL));
  TU_U64(v, 1);
  TU_OK(sync_env_add_column(env, 1, &c));
  TU_OK(sync_env_schema_info(env, &v, NULL));
  TU_U64(v, 2);
  sync_env_close(env);
}

static void test_add_table_is_usable_and_persisted(void **state) {
  static const sync_column_def tag_cols[] = {{"label", SYNC_TEXT, 0},
                                             {"weight", SYNC_REAL, 0}};
  sync_table_def tags = {"tags", SYNC_TEXT, tag_cols, 2};
  sync_table_def s[3];
  sync_env *env;
  sync_txn *txn;
  sync_value v[2];
  unsigned id = 99;
  uint64_t ver;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  TU_OK(sync_env_add_table(env, &tags, &id));
  assert_int_equal(id, 2);
  assert_int_equal(sync_env_table_count(env), 3);
  TU_OK(sync_env_schema_info(env, &ver, NULL));
  TU_U64(ver, 2);
  TU_RC(sync_env_add_table(env, &tags, NULL), SYNC_EEXIST);
  TU_OK(sync_txn_begin(env, 0, &txn));
  v[0] = sync_text("red", 3);
  v[1] = sync_real(0.25);
  TU_OK(sync_put(txn, id, "t1", 2, v, 2));
  TU_OK(sync_txn_commit(txn));
  sync_env_close(env);

  /* Without a declaration: the stored schema has the table. */
  TU_OK(try_open(DB, NULL, 0, &env));
  assert_int_equal(sync_env_table_count(env), 3);
  TU_OK(sync_env_table(env, "tags", &id));
  assert_int_equal(id, 2);
  TU_OK(sync_txn_begin(env, SYNC_TXN_RDONLY, &txn));
  TU_OK(sync_get(txn, 2, "t1", 2, v, 2));
  assert_memory_equal(v[0].data, "red", 3);
  assert_true(v[1].r == 0.25);
  sync_txn_abort(txn);
  sync_env_close(env);

  /* With the full declaration it opens; with the old one it does not. */
  memcpy(s, schema, sizeof schema);
  s[2] = tags;
  TU_OK(try_open(DB, s, 3, &env));
  sync_env_close(env);
  TU_RC(try_open(DB, schema, 2, &env), SYNC_ESCHEMA);
  sync_env_close(env);
}

static void test_schema_changes_refused_on_rdonly_env(void **state) {
  static const sync_column_def tag_cols[] = {{"label", SYNC_TEXT, 0}};
  sync_table_def tags = {"tags", SYNC_TEXT, tag_cols, 1};
  sync_column_def c = {"x", SYNC_TEXT, 0};
  sync_env *env;
  (void)state;
  env = tu_open_env(DB, schema, 2, 0);
  sync_env_close(env);
  env = tu_open_env(DB, schema, 2, SYNC_OPEN_RDONLY);
  TU_RC(sync_env_add_column(env, 0, &c), SYNC_EREADONLY);
  TU_RC(sync_env_add_table(env, &tags, NULL), SYNC_EREADONLY);
  sync_env_close(env);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_tables_and_columns_found_by_name),
      T(test_table_def_round_trips_declaration),
      T(test_declared_schema_is_copied),
      T(test_invalid_schemas_are_einval),
      T(test_invalid_schema_leaves_env_usable),
      T(test_too_many_columns_is_elimit),
      T(test_too_many_tables_is_elimit),
      T(test_reopen_with_other_schema_is_eschema),
      T(test_reopen_without_schema_takes_stored_one),
      T(test_schema_hash_depends_only_on_definition),
      T(test_schema_info_needs_open_env),
      T(test_add_column_bumps_version_and_hash),
      T(test_add_column_old_rows_read_null),
      T(test_reopen_after_add_column_needs_new_schema),
      T(test_add_column_not_null_is_econstraint),
      T(test_add_column_existing_name_is_eexist),
      T(test_add_column_invalid_is_einval),
      T(test_add_column_with_open_txn_is_ebusy),
      T(test_add_table_is_usable_and_persisted),
      T(test_schema_changes_refused_on_rdonly_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
