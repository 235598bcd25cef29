/*
 * Opening databases, and finding tables, columns and types by name (with
 * a message that lists what there is when the name is wrong).
 */
#include "synctl.h"

#include <string.h>
#include <sys/stat.h>

int ctl_file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Why sync_env_open failed, said once.  The one commit an open runs
 * through the public commit, whose words are "commit failed: WHY", is
 * the new site id a copied file takes (src/open.c): "open failed:
 * commit failed: I/O error" would name two failures where there is
 * one. */
static void open_fail(sync_env *env, const char *path, int rc) {
  const char *m = sync_env_errmsg(env), *pre = "commit failed: ";
  if (m && !strncmp(m, pre, strlen(pre)))
    ctl_say("%s: cannot open: %s (the file is a copy of a replica, and "
            "taking a site id of its own needs a write)",
            path, m + strlen(pre));
  else
    ctl_lib_fail(env, path, rc, "open failed");
}

/* Open an existing database with the schema it holds.  Prints why not. */
int ctl_open_db(const char *path, int rdonly, sync_env **out) {
  sync_env *env = NULL;
  int rc;
  *out = NULL;
  if (!ctl_file_exists(path)) {
    ctl_say("%s: no such database (make one with 'synctl init')", path);
    return EX_FAIL;
  }
  if ((rc = sync_env_create(NULL, &env)))
    return ctl_lib_fail(NULL, path, rc, "open failed");
  rc = sync_env_open(env, path, rdonly ? SYNC_OPEN_RDONLY : SYNC_OPEN_NOCREATE);
  if (rc == SYNC_ENOTDB) {
    struct stat sb;
    ctl_say("%s: not a sync database%s", path,
            stat(path, &sb) == 0 && sb.st_size == 0 ? " (an empty file)" : "");
    sync_env_close(env);
    return EX_FAIL;
  }
  if (rc) {
    open_fail(env, path, rc);
    sync_env_close(env);
    return EX_FAIL;
  }
  *out = env;
  return EX_OK;
}

const char *ctl_type_name(int t) {
  switch (t) {
  case SYNC_INTEGER: return "integer";
  case SYNC_REAL: return "real";
  case SYNC_TEXT: return "text";
  case SYNC_BLOB: return "blob";
  case SYNC_COUNTER: return "counter";
  default: return "null";
  }
}

int ctl_parse_type(const char *s, size_t n) {
  static const struct {
    const char *name;
    int type;
  } t[] = {
      {"integer", SYNC_INTEGER}, {"int", SYNC_INTEGER}, {"real", SYNC_REAL},
      {"float", SYNC_REAL},      {"double", SYNC_REAL}, {"text", SYNC_TEXT},
      {"string", SYNC_TEXT},     {"blob", SYNC_BLOB},   {"bytes", SYNC_BLOB},
      {"counter", SYNC_COUNTER}};
  size_t i;
  for (i = 0; i < sizeof t / sizeof t[0]; i++)
    if (strlen(t[i].name) == n && !strncmp(t[i].name, s, n)) return t[i].type;
  return 0;
}

/* Table id by name, or a message listing the tables. */
int ctl_find_table(sync_env *env, const char *db, const char *name,
                   unsigned *out) {
  unsigned i, n = sync_env_table_count(env);
  char list[1024];
  size_t len = 0;
  if (sync_env_table(env, name, out) == 0) return 0;
  list[0] = 0;
  for (i = 0; i < n; i++) {
    sync_table_def d;
    if (sync_env_table_def(env, i, &d)) continue;
    len +=
        (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0,
                         "%s%s", i ? ", " : "", d.name);
    if (len >= sizeof list) break;
  }
  ctl_say("%s: no table '%s' (tables: %s)", db, name, n ? list : "none");
  return -1;
}

int ctl_find_column(sync_env *env, const char *db, unsigned t, const char *name,
                    size_t nlen, unsigned *out) {
  sync_table_def d;
  unsigned i;
  char list[1024];
  size_t len = 0;
  sync_env_table_def(env, t, &d);
  for (i = 0; i < d.ncolumns; i++)
    if (strlen(d.columns[i].name) == nlen &&
        !strncmp(d.columns[i].name, name, nlen)) {
      *out = i;
      return 0;
    }
  list[0] = 0;
  for (i = 0; i < d.ncolumns; i++) {
    len +=
        (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0,
                         "%s%s", i ? ", " : "", d.columns[i].name);
    if (len >= sizeof list) break;
  }
  ctl_say("%s: table '%s' has no column '%.*s' (columns: %s)", db, d.name,
          (int)nlen, name, list);
  return -1;
}

int ctl_begin_ro(sync_env *env, const char *db, sync_txn **x) {
  int rc = sync_txn_begin(env, SYNC_TXN_RDONLY, x);
  if (rc) return ctl_lib_fail(env, db, rc, "cannot begin a transaction");
  return 0;
}

/* The digest of every table, or 0 when it cannot be read: the last
 * figure serve, sync and repair print. */
uint64_t ctl_digest_all(sync_env *env) {
  sync_txn *x;
  uint64_t dg = 0;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) == 0) {
    sync_digest(x, SYNC_ALL_TABLES, &dg);
    sync_txn_abort(x);
  }
  return dg;
}

int ctl_read_db(const char *db,
                int (*fn)(sync_env *env, sync_txn *x, const char *db,
                          void *ctx),
                void *ctx) {
  sync_env *env;
  sync_txn *x;
  int ret = EX_FAIL;
  if (ctl_open_db(db, 1, &env)) return EX_FAIL;
  if (ctl_begin_ro(env, db, &x) == 0) {
    ret = fn(env, x, db, ctx);
    sync_txn_abort(x);
  }
  sync_env_close(env);
  return ret;
}
