/*
 * Commands on rows and files: init, schema, add-column, put, get, del,
 * dump and load.  Each command's manual page stands above it.
 */
#include "synctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

const ctl_help ctl_help_init = {
    "synctl init DB --table NAME:KEYTYPE COL:TYPE[:notnull][:local]... "
    "[--table ...]\n"
    "       synctl init DB --schema FILE [--json]",
    "create a database with a schema",
    "Creates DB (one file, plus DB-lock) with the tables given.  Each\n"
    "--table NAME:KEYTYPE starts a table; the COL:TYPE words after it are\n"
    "its columns, in order.  KEYTYPE is text, blob or integer; TYPE is\n"
    "integer, real, text or blob, optionally followed by :notnull (NULL is\n"
    "refused) and :local (kept on this device, never replicated).\n"
    "--schema FILE reads the tables from a schema file instead:\n\n"
    "    # comment\n"
    "    table readings text\n"
    "      temp real\n"
    "      status text notnull\n"
    "      note text local\n\n"
    "one 'table NAME KEYTYPE' line per table, then one 'COLUMN TYPE\n"
    "[notnull] [local]' line per column; blank lines and # comments are\n"
    "ignored.  'synctl schema DB' prints a database's schema in this form.\n"
    "Fails if DB exists already.  With --json it prints {\"db\", \"tables\",\n"
    "\"site\"} instead of the line.\n\n"
    "Example:\n"
    "    synctl init sensors.db --table readings:text temp:real "
    "status:text:notnull\n"};

int ctl_cmd_init(int argc, char **argv) {
  ctl_schema_in *s;
  const char *db = NULL, *file = NULL;
  sync_env *env = NULL;
  int i, rc, ret = EX_FAIL, json = 0;
  unsigned t;
  s = (ctl_schema_in *)calloc(1, sizeof *s);
  if (!s) return EX_FAIL;
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (ctl_opt(i, a, "--json")) {
      json = 1;
    } else if (ctl_opt(i, a, "--schema")) {
      if (++i == argc) {
        ctl_usage("--schema needs a FILE");
        goto out2;
      }
      file = argv[i];
    } else if (ctl_opt(i, a, "--table")) {
      const char *c;
      if (++i == argc) {
        ctl_usage("--table needs NAME:KEYTYPE");
        goto out2;
      }
      c = strchr(argv[i], ':');
      if (!c || c == argv[i]) {
        ctl_usage("--table %s: a table is NAME:KEYTYPE", argv[i]);
        goto out2;
      }
      if (ctl_add_table(s, argv[i], (size_t)(c - argv[i]), c + 1, strlen(c + 1),
                        ""))
        goto out2;
    } else if (!db) {
      db = a;
    } else if (ctl_col_word(s, a, "")) {
      goto out2;
    }
  }
  if (!db) {
    ctl_usage("which database? (synctl init DB --table ...)");
    goto out2;
  }
  if (file && s->nt) {
    ctl_usage("give --schema or --table, not both");
    goto out2;
  }
  if (file && ctl_schema_file(s, file)) goto out2;
  if (!s->nt) {
    ctl_usage(
        "no tables: give --table NAME:KEYTYPE COL:TYPE... or --schema FILE");
    goto out2;
  }
  for (t = 0; t < s->nt; t++)
    if (!s->t[t].ncolumns) {
      ctl_usage("table '%s' has no columns", s->t[t].name);
      goto out2;
    }
  if (ctl_file_exists(db)) {
    ctl_say("%s: exists already", db);
    goto out;
  }
  if ((rc = sync_env_create(NULL, &env)) ||
      (rc = sync_env_set_schema(env, s->t, s->nt)) ||
      (rc = sync_env_open(env, db, 0))) {
    ctl_lib_fail(env, db, rc, "cannot create");
    goto out;
  }
  {
    uint8_t site[16];
    char hex[33];
    sync_env_site_id(env, site);
    ctl_hex_str(site, 16, hex);
    if (json)
      ret = ctl_json_print(json_pack("{sosiss}", "db", ctl_json_str(db),
                                     "tables", (int)s->nt, "site", hex));
    else
      printf("created %s: %u table%s, site %s\n", db, s->nt,
             s->nt == 1 ? "" : "s", hex);
  }
  if (!json) ret = EX_OK;
out:
  sync_env_close(env);
  ctl_schema_free(s);
  free(s);
  return ret;
out2:
  ctl_schema_free(s);
  free(s);
  return EX_USAGE;
}

/* "text notnull" for column c. */
static const char *col_desc(const sync_column_def *c, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s", ctl_type_name(c->type),
           c->flags & SYNC_COL_NOTNULL ? " notnull" : "");
  return buf;
}

/* Where schema --diff puts its lines: stdout, or the strings of a JSON
 * array. */
static void diff_line(json_t *arr, const char *fmt, ...) {
  char b[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (arr)
    json_array_append_new(arr, ctl_json_str(b));
  else
    printf("%s\n", b);
}

/* The difference between the schemas of a (at path an) and b, one line
 * each onto arr (NULL: stdout); returns how many. */
static unsigned schema_lines(sync_env *a, const char *an, sync_env *b,
                             const char *bn, json_t *arr) {
  unsigned na = sync_env_table_count(a), nb = sync_env_table_count(b);
  unsigned t, c, lines = 0;
  char x[32], y[32];
  for (t = 0; t < na && t < nb; t++) {
    sync_table_def da, db;
    sync_env_table_def(a, t, &da);
    sync_env_table_def(b, t, &db);
    if (strcmp(da.name, db.name)) {
      diff_line(arr, "differs: table %u is '%s' in %s, '%s' in %s", t, da.name,
                an, db.name, bn);
      lines++;
      continue;
    }
    if (da.key_type != db.key_type) {
      diff_line(arr, "differs: %s key is %s in %s, %s in %s", da.name,
                ctl_type_name(da.key_type), an, ctl_type_name(db.key_type), bn);
      lines++;
    }
    for (c = 0; c < da.ncolumns && c < db.ncolumns; c++) {
      const sync_column_def *p = &da.columns[c], *q = &db.columns[c];
      if (!strcmp(p->name, q->name) && p->type == q->type &&
          (p->flags & SYNC_COL_NOTNULL) == (q->flags & SYNC_COL_NOTNULL))
        continue;
      diff_line(arr, "differs: %s column %u is '%s' %s in %s, '%s' %s in %s",
                da.name, c, p->name, col_desc(p, x, sizeof x), an, q->name,
                col_desc(q, y, sizeof y), bn);
      lines++;
    }
    for (; c < da.ncolumns; c++, lines++)
      diff_line(arr, "only in %s: %s.%s %s", an, da.name, da.columns[c].name,
                col_desc(&da.columns[c], x, sizeof x));
    for (; c < db.ncolumns; c++, lines++)
      diff_line(arr, "only in %s: %s.%s %s", bn, db.name, db.columns[c].name,
                col_desc(&db.columns[c], x, sizeof x));
  }
  for (; t < na || t < nb; t++, lines++) {
    sync_env *e = t < na ? a : b;
    sync_table_def d;
    char cols[800];
    size_t len = 0;
    sync_env_table_def(e, t, &d);
    cols[0] = 0;
    for (c = 0; c < d.ncolumns && len < sizeof cols; c++)
      len += (size_t)snprintf(cols + len, sizeof cols - len, "%s%s %s",
                              c ? ", " : "", d.columns[c].name,
                              col_desc(&d.columns[c], x, sizeof x));
    diff_line(arr, "only in %s: table %s %s (%s)", t < na ? an : bn, d.name,
              ctl_type_name(d.key_type), cols);
  }
  return lines;
}

static int schema_diff(const char *an, const char *bn, int json) {
  sync_env *a, *b;
  uint64_t va = 0, ha = 0, vb = 0, hb = 0;
  unsigned char *buf = NULL;
  int64_t len;
  int rc = EX_OK;
  json_t *arr = json ? json_array() : NULL;
  const char *verdict = "equal";
  char why[512] = "", hxa[17], hxb[17];
  if (ctl_open_db(an, 1, &a)) return json_decref(arr), EX_FAIL;
  if (ctl_open_db(bn, 1, &b)) {
    sync_env_close(a);
    json_decref(arr);
    return EX_FAIL;
  }
  sync_env_schema_info(a, &va, &ha);
  sync_env_schema_info(b, &vb, &hb);
  snprintf(hxa, sizeof hxa, "%016llx", (unsigned long long)ha);
  snprintf(hxb, sizeof hxb, "%016llx", (unsigned long long)hb);
  if (!json) {
    printf("# %s: schema version %llu, hash %s\n", an, (unsigned long long)va,
           hxa);
    printf("# %s: schema version %llu, hash %s\n", bn, (unsigned long long)vb,
           hxb);
  }
  if (!schema_lines(a, an, b, bn, arr)) {
    if (!json) printf("equal: the same tables and columns\n");
    goto out;
  }
  /* The verdict is the library's, as a session would find it. */
  len = sync_env_schema_export(b, NULL, 0);
  if (len < 0 || !(buf = (unsigned char *)malloc((size_t)len + 1)) ||
      sync_env_schema_export(b, buf, (size_t)len) != len) {
    rc = ctl_lib_fail(b, bn, len < 0 ? (int)len : SYNC_ENOMEM,
                      "cannot read the schema");
    goto out;
  }
  if (sync_env_schema_accept(a, buf, (size_t)len) == 0) {
    verdict = "compatible";
    if (!json)
      printf("compatible: they sync; each keeps the columns it does not know "
             "and sends them on, and rows of a table it lacks wait until it "
             "adds the table\n");
  } else {
    verdict = "incompatible";
    snprintf(why, sizeof why, "%s", sync_env_errmsg(a));
    if (!json) printf("incompatible: sessions between them fail (%s)\n", why);
    rc = EX_FAIL;
  }
out:
  if (json && (rc == EX_OK || why[0])) {
    int r2 = ctl_json_print(
        json_pack("{s{sosIss}s{sosIss}sOssss}", "a", "db", ctl_json_str(an),
                  "version", (json_int_t)va, "hash", hxa, "b", "db",
                  ctl_json_str(bn), "version", (json_int_t)vb, "hash", hxb,
                  "differences", arr, "verdict", verdict, "reason", why));
    if (r2) rc = r2;
  }
  json_decref(arr);
  free(buf);
  sync_env_close(a);
  sync_env_close(b);
  return rc;
}

const ctl_help ctl_help_schema = {
    "synctl schema DB [--diff OTHER] [--json]", "print or compare the schema",
    "Prints DB's tables and columns as a schema file (see 'synctl help\n"
    "init'), preceded by comments with the schema version and hash.  The\n"
    "output can be given to 'synctl init --schema' to make an empty\n"
    "replica.\n\n"
    "--diff OTHER compares DB's schema with the database OTHER's instead:\n"
    "one line per difference ('only in DB: TABLE.COL TYPE', 'only in\n"
    "OTHER: table T KEYTYPE (COLS)', 'differs: ...' naming both sides),\n"
    "then the verdict: 'equal'; 'compatible' (one is the other plus\n"
    "appended columns and tables: they sync, and each keeps the columns\n"
    "it does not know and sends them on); or 'incompatible' (a type, a\n"
    "name, a key type or notnull differs at a shared position: sessions\n"
    "between them fail, exit status 1).  The local flag is each file's\n"
    "own and is not compared.\n\n"
    "With --json, one object: db, version, hash (16 hex digits) and\n"
    "tables, each {name, key, columns: [{name, type, notnull, local}]};\n"
    "with --diff, {a, b} (each db, version, hash), differences (the lines\n"
    "above), verdict (equal, compatible, incompatible) and reason.\n\n"
    "Example:\n"
    "    synctl schema device.db --diff server.db\n"};

/* One table of the schema as JSON. */
static json_t *table_json(const sync_table_def *d) {
  json_t *cols = json_array();
  unsigned c;
  for (c = 0; c < d->ncolumns; c++)
    json_array_append_new(
        cols, json_pack("{sosssbsb}", "name", ctl_json_str(d->columns[c].name),
                        "type", ctl_type_name(d->columns[c].type), "notnull",
                        (d->columns[c].flags & SYNC_COL_NOTNULL) != 0, "local",
                        (d->columns[c].flags & SYNC_COL_LOCAL) != 0));
  return json_pack("{sossso}", "name", ctl_json_str(d->name), "key",
                   ctl_type_name(d->key_type), "columns", cols);
}

int ctl_cmd_schema(int argc, char **argv) {
  sync_env *env;
  uint64_t ver = 0, hash = 0;
  unsigned t, c, n;
  char *db, *other = NULL, hx[17];
  int i, json = ctl_has(argc, argv, "--json"), ret = EX_OK;
  json_t *tables = NULL;
  for (i = 0; i < argc; i++)
    if (ctl_opt(i, argv[i], "--diff")) other = argv[++i];
  if (ctl_args(argc, argv, &db, 1) != 1)
    return ctl_usage("give one DB, or DB --diff OTHER");
  if (other) return schema_diff(db, other, json);
  if (ctl_open_db(db, 1, &env)) return EX_FAIL;
  sync_env_schema_info(env, &ver, &hash);
  snprintf(hx, sizeof hx, "%016llx", (unsigned long long)hash);
  if (json)
    tables = json_array();
  else
    printf("# schema of %s: version %llu, hash %s\n", db,
           (unsigned long long)ver, hx);
  n = sync_env_table_count(env);
  for (t = 0; t < n; t++) {
    sync_table_def d;
    sync_env_table_def(env, t, &d);
    if (json) {
      json_array_append_new(tables, table_json(&d));
      continue;
    }
    printf("table %s %s\n", d.name, ctl_type_name(d.key_type));
    for (c = 0; c < d.ncolumns; c++)
      printf("  %s %s%s%s\n", d.columns[c].name,
             ctl_type_name(d.columns[c].type),
             d.columns[c].flags & SYNC_COL_NOTNULL ? " notnull" : "",
             d.columns[c].flags & SYNC_COL_LOCAL ? " local" : "");
  }
  if (json)
    ret = ctl_json_print(json_pack("{sosIssso}", "db", ctl_json_str(db),
                                   "version", (json_int_t)ver, "hash", hx,
                                   "tables", tables));
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_add_column = {
    "synctl add-column DB TABLE COL:TYPE[:local] [--json]",
    "add a column to a table",
    "Appends a column to TABLE.  Existing rows read it as NULL, so it\n"
    "cannot be notnull.  Replicas with and without the column keep\n"
    "syncing (a rolling schema change): the ones without it store its\n"
    "values unread and send them on, and show them once they add it.\n"
    "With --json it prints {table, column, type, schema_version}.\n"};

int ctl_cmd_add_column(int argc, char **argv) {
  sync_env *env;
  unsigned t;
  ctl_schema_in *s;
  char *pos[3];
  int rc, json = ctl_has(argc, argv, "--json");
  if (ctl_args(argc, argv, pos, 3) != 3)
    return ctl_usage("give DB TABLE COL:TYPE");
  argv = pos;
  s = (ctl_schema_in *)calloc(1, sizeof *s);
  if (!s) return EX_FAIL;
  ctl_add_table(s, "x", 1, "text", 4, "");
  if (ctl_col_word(s, argv[2], "")) {
    ctl_schema_free(s);
    free(s);
    return EX_USAGE;
  }
  if (ctl_open_db(argv[0], 0, &env))
    rc = EX_FAIL;
  else if (ctl_find_table(env, argv[0], argv[1], &t))
    rc = EX_FAIL;
  else if (s->c[0][0].flags & SYNC_COL_NOTNULL) {
    ctl_say("%s: a new column cannot be notnull: existing rows read it as NULL",
            argv[0]);
    rc = EX_FAIL;
  } else if ((rc = sync_env_add_column(env, t, &s->c[0][0]))) {
    if (rc == SYNC_EEXIST)
      ctl_say("%s: table '%s' has a column '%s' already", argv[0], argv[1],
              s->c[0][0].name);
    else
      ctl_lib_fail(env, argv[0], rc, "cannot add the column");
    rc = EX_FAIL;
  } else {
    uint64_t ver = 0, hash = 0;
    sync_env_schema_info(env, &ver, &hash);
    if (json)
      rc = ctl_json_print(json_pack(
          "{sososssI}", "table", ctl_json_str(argv[1]), "column",
          ctl_json_str(s->c[0][0].name), "type", ctl_type_name(s->c[0][0].type),
          "schema_version", (json_int_t)ver));
    else
      printf("added %s.%s %s; schema version %llu\n", argv[1], s->c[0][0].name,
             ctl_type_name(s->c[0][0].type), (unsigned long long)ver);
  }
  sync_env_close(env);
  ctl_schema_free(s);
  free(s);
  return rc;
}

const ctl_help ctl_help_put = {
    "synctl put DB TABLE KEY COL=VALUE...", "insert or update a row",
    "Writes the row KEY of TABLE in one transaction.  A new row takes\n"
    "NULL for the columns not given; an existing row keeps them.  Values\n"
    "are read by the column's type: integer (decimal), real, text (as\n"
    "given), blob (hex digits).  NULL sets a column to NULL; to store the\n"
    "text NULL write \\NULL (a leading backslash is dropped).  An integer\n"
    "key is decimal, a blob key hex.\n\n"
    "Example:\n"
    "    synctl put sensors.db readings kitchen temp=21.5 status=ok\n"};

int ctl_cmd_put(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  sync_value vals[MAXC];
  unsigned char *hold[MAXC];
  int given[MAXC];
  unsigned t, col, i;
  ctl_keybuf k;
  sync_txn *x = NULL;
  int rc, ret = EX_FAIL, a, nhold = 0;
  if (argc < 4) return ctl_usage("give DB TABLE KEY COL=VALUE...");
  /* put has no options: main refused any, so all of argv are arguments. */
  for (a = 3; a < argc; a++)
    if (!strchr(argv[a], '=') || argv[a][0] == '=')
      return ctl_usage("'%s': give COL=VALUE", argv[a]);
  if (ctl_open_db(argv[0], 0, &env)) return EX_FAIL;
  if (ctl_find_table(env, argv[0], argv[1], &t) ||
      ctl_parse_key(env, argv[0], t, argv[2], &k))
    goto out;
  sync_env_table_def(env, t, &d);
  if (d.ncolumns > MAXC) goto out;
  memset(given, 0, sizeof given);
  for (i = 0; i < d.ncolumns; i++) vals[i] = sync_null();
  for (a = 3; a < argc; a++) {
    const char *eq = strchr(argv[a], '=');
    if (ctl_find_column(env, argv[0], t, argv[a], (size_t)(eq - argv[a]), &col))
      goto out;
    if (given[col]) {
      ctl_say("%s: column '%s' given twice", argv[0], d.columns[col].name);
      goto out;
    }
    if (ctl_parse_value(argv[0], &d, col, eq + 1, &vals[col], &hold[nhold]))
      goto out;
    if (hold[nhold]) nhold++;
    given[col] = 1;
  }
  if ((rc = sync_txn_begin(env, 0, &x))) {
    ctl_lib_fail(env, argv[0], rc, "cannot begin");
    goto out;
  }
  rc = sync_contains(x, t, k.b, k.n);
  /* Name the notnull column a new row would leave NULL, or that is set
   * to NULL, before the library refuses it. */
  for (i = 0; rc >= 0 && i < d.ncolumns; i++)
    if ((d.columns[i].flags & SYNC_COL_NOTNULL) && vals[i].type == SYNC_NULL &&
        (given[i] || rc == 0)) {
      ctl_say("%s: column '%s' of '%s' is notnull: give %s=VALUE", argv[0],
              d.columns[i].name, d.name, d.columns[i].name);
      sync_txn_abort(x);
      goto out;
    }
  if (rc == 1) {
    unsigned cols[MAXC], n = 0;
    sync_value v[MAXC];
    for (i = 0; i < d.ncolumns; i++)
      if (given[i]) cols[n] = i, v[n++] = vals[i];
    rc = sync_update(x, t, k.b, k.n, cols, v, n);
  } else if (rc == 0) {
    rc = sync_put(x, t, k.b, k.n, vals, d.ncolumns);
  }
  if (rc) {
    ctl_write_fail(env, argv[0], &d, rc);
    sync_txn_abort(x);
    goto out;
  }
  if ((rc = sync_txn_commit(x))) {
    ctl_lib_fail(env, argv[0], rc, "commit failed");
    goto out;
  }
  ret = EX_OK;
out:
  while (nhold) free(hold[--nhold]);
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_add = {
    "synctl add DB TABLE KEY COL=+N...", "add to counter columns",
    "Adds N (a signed decimal: +5, -3, 7) to each counter column COL of\n"
    "row KEY, in one transaction.  A missing or deleted row is created\n"
    "(its other columns NULL, its counters from 0).  Adds made on any\n"
    "replica all count once they are synced; deleting the row resets its\n"
    "counters.\n\n"
    "Example:\n"
    "    synctl add shop.db stock sku-42 qty=-1 sold=+1\n"};

int ctl_cmd_add(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  unsigned t, col;
  ctl_keybuf k;
  sync_txn *x = NULL;
  int rc, ret = EX_FAIL, a;
  if (argc < 4) return ctl_usage("give DB TABLE KEY COL=+N...");
  for (a = 3; a < argc; a++)
    if (!strchr(argv[a], '=') || argv[a][0] == '=')
      return ctl_usage("'%s': give COL=+N or COL=-N", argv[a]);
  if (ctl_open_db(argv[0], 0, &env)) return EX_FAIL;
  if (ctl_find_table(env, argv[0], argv[1], &t) ||
      ctl_parse_key(env, argv[0], t, argv[2], &k))
    goto out;
  sync_env_table_def(env, t, &d);
  if ((rc = sync_txn_begin(env, 0, &x))) {
    ctl_lib_fail(env, argv[0], rc, "cannot begin");
    goto out;
  }
  for (a = 3; a < argc; a++) {
    const char *eq = strchr(argv[a], '=');
    const char *num = eq[1] == '+' ? eq + 2 : eq + 1;
    int64_t delta;
    if (ctl_find_column(env, argv[0], t, argv[a], (size_t)(eq - argv[a]),
                        &col))
      goto fail;
    if (d.columns[col].type != SYNC_COUNTER) {
      ctl_say("%s: column '%s' of '%s' is %s, not a counter: use 'synctl put'",
              argv[0], d.columns[col].name, d.name,
              ctl_type_name(d.columns[col].type));
      goto fail;
    }
    if ((eq[1] == '+' && (num[0] == '-' || num[0] == '+')) ||
        ctl_parse_i64(num, &delta)) {
      ctl_say("%s: '%s': give a whole number from -2^63 to 2^63-1", argv[0],
              eq + 1);
      goto fail;
    }
    if ((rc = sync_counter_add(x, t, k.b, k.n, col, delta))) {
      if (rc == SYNC_ELIMIT)
        ctl_say("%s: column '%s': this replica's adds to it would pass "
                "2^64 - 1",
                argv[0], d.columns[col].name);
      else
        ctl_write_fail(env, argv[0], &d, rc);
      goto fail;
    }
  }
  if ((rc = sync_txn_commit(x))) {
    ctl_lib_fail(env, argv[0], rc, "commit failed");
    goto out;
  }
  ret = EX_OK;
  goto out;
fail:
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_get = {
    "synctl get DB TABLE KEY [--json]", "print one row",
    "Prints the columns of row KEY, one 'column  value' line each (NULL\n"
    "for NULL, blobs in hex), or with --json one JSON object as 'synctl\n"
    "dump --json' writes a row.  Exit status 3 when there is no such\n"
    "row.\n"};

int ctl_cmd_get(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  sync_value vals[MAXC];
  unsigned t, i;
  ctl_keybuf k;
  sync_txn *x;
  int rc, ret = EX_FAIL, json = ctl_has(argc, argv, "--json");
  char *pos[3];
  if (ctl_args(argc, argv, pos, 3) != 3) return ctl_usage("give DB TABLE KEY");
  if (ctl_open_db(pos[0], 1, &env)) return EX_FAIL;
  if (ctl_find_table(env, pos[0], pos[1], &t) ||
      ctl_parse_key(env, pos[0], t, pos[2], &k))
    goto out;
  sync_env_table_def(env, t, &d);
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &x))) {
    ctl_lib_fail(env, pos[0], rc, "cannot begin");
    goto out;
  }
  rc = sync_get(x, t, k.b, k.n, vals, d.ncolumns);
  if (rc == SYNC_NOTFOUND) {
    ctl_say("%s: table '%s' has no row '%s'", pos[0], d.name, pos[2]);
    ret = EX_NOTFOUND;
  } else if (rc) {
    ctl_lib_fail(env, pos[0], rc, "cannot read");
  } else if (json) {
    ret = ctl_json_print(ctl_json_row(&d, k.b, k.n, vals));
  } else {
    size_t w = 0;
    for (i = 0; i < d.ncolumns; i++)
      if (strlen(d.columns[i].name) > w) w = strlen(d.columns[i].name);
    for (i = 0; i < d.ncolumns; i++) {
      printf("%-*s  ", (int)w, d.columns[i].name);
      ctl_put_value(stdout, &vals[i]);
      printf("\n");
    }
    ret = EX_OK;
  }
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_del = {
    "synctl del DB TABLE KEY", "delete a row",
    "Deletes row KEY, leaving the tombstone replication needs.  Exit\n"
    "status 3 when there is no such row.\n"};

int ctl_cmd_del(int argc, char **argv) {
  sync_env *env;
  unsigned t;
  ctl_keybuf k;
  sync_txn *x;
  int rc, ret = EX_FAIL;
  if (argc != 3) return ctl_usage("give DB TABLE KEY"); /* no options */
  if (ctl_open_db(argv[0], 0, &env)) return EX_FAIL;
  if (ctl_find_table(env, argv[0], argv[1], &t) ||
      ctl_parse_key(env, argv[0], t, argv[2], &k))
    goto out;
  if ((rc = sync_txn_begin(env, 0, &x))) {
    ctl_lib_fail(env, argv[0], rc, "cannot begin");
    goto out;
  }
  rc = sync_delete(x, t, k.b, k.n);
  if (rc == SYNC_NOTFOUND) {
    ctl_say("%s: table '%s' has no row '%s'", argv[0], argv[1], argv[2]);
    sync_txn_abort(x);
    ret = EX_NOTFOUND;
  } else if (rc) {
    ctl_lib_fail(env, argv[0], rc, "cannot delete");
    sync_txn_abort(x);
  } else if ((rc = sync_txn_commit(x))) {
    ctl_lib_fail(env, argv[0], rc, "commit failed");
  } else {
    ret = EX_OK;
  }
out:
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_dump = {
    "synctl dump DB TABLE [--as-of POINT] [--json]", "print a table",
    "Prints the live rows of TABLE in key order as an aligned table with\n"
    "a header line (the key column is headed 'key'), or with --json as\n"
    "JSON lines: one object per row, the key under \"key\", integers and\n"
    "reals as numbers, text as strings, blobs as strings of hex digits,\n"
    "NULL as null.  Reals that are not finite are the strings \"inf\",\n"
    "\"-inf\", \"nan\" and \"-nan\"; text that is not UTF-8 is {\"hex\":\n"
    "\"HEX\"}, its bytes in hex.  Integers keep all 64 bits, and reals\n"
    "print with the digits that read back to the same double.  A table\n"
    "with a column named 'key' cannot be dumped as JSON.  'synctl load'\n"
    "reads the JSON form back, every value exactly.\n"
    "\n"
    "With --as-of, prints the rows as they were at POINT, from the\n"
    "table's row history (see 'synctl history'): a local version (a\n"
    "number), '@MS' (ms since 1970) or a UTC time\n"
    "('2026-12-06T07:00:00.000Z').  A point before what the history\n"
    "keeps, or a table without history, fails.\n"};

/* ---------------------------------------------------------------------
 * dump and load
 * ------------------------------------------------------------------- */
#define COLW_MAX 48 /* wider values run past their column */

int ctl_cmd_dump(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  sync_value vals[MAXC];
  size_t w[MAXC + 1];
  unsigned t, i;
  sync_txn *x;
  sync_cursor *c = NULL;
  sync_key key;
  int rc = 0, ret = EX_FAIL, json = ctl_has(argc, argv, "--json"), pass;
  int kind = 0, asof = 0;
  uint64_t at = 0;
  char *pos[2];
  for (i = 0; (int)i + 1 < argc; i++)
    if (ctl_opt(i, argv[i], "--as-of")) {
      if (ctl_parse_asof(argv[++i], &kind, &at))
        return ctl_usage("--as-of needs a local version, @MS or a UTC time "
                         "(YYYY-MM-DDTHH:MM:SS[.mmm]Z)");
      asof = 1;
    }
  if (ctl_args(argc, argv, pos, 2) != 2) return ctl_usage("give DB TABLE");
  if (ctl_open_db(pos[0], 1, &env)) return EX_FAIL;
  if (ctl_find_table(env, pos[0], pos[1], &t)) goto out0;
  sync_env_table_def(env, t, &d);
  if (json && sync_env_column(env, t, "key", &i) == 0) {
    ctl_say(
        "%s: table '%s' has a column named 'key', which the JSON form uses for "
        "the key",
        pos[0], d.name);
    goto out0;
  }
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &x))) {
    ctl_lib_fail(env, pos[0], rc, "cannot begin");
    goto out0;
  }
  w[0] = 3;
  for (i = 0; i < d.ncolumns; i++) w[i + 1] = strlen(d.columns[i].name);
  /* Pass 0 measures the columns (aligned form only), pass 1 prints. */
  for (pass = json ? 1 : 0; pass < 2; pass++) {
    if ((rc = asof ? sync_cursor_open_asof(x, t, kind, at, &c)
                   : sync_cursor_open(x, t, &c)))
      break;
    if (pass == 1 && !json) {
      printf("%-*s", (int)w[0], "key");
      for (i = 0; i < d.ncolumns; i++)
        printf("  %-*s", i + 1 < d.ncolumns ? (int)w[i + 1] : 0,
               d.columns[i].name);
      printf("\n");
    }
    while ((rc = sync_cursor_next(c, &key, vals, d.ncolumns)) == 0) {
      if (pass == 0) {
        size_t kw = ctl_put_key(NULL, d.key_type,
                                (const unsigned char *)key.data, key.len);
        if (kw > w[0]) w[0] = kw < COLW_MAX ? kw : COLW_MAX;
        for (i = 0; i < d.ncolumns; i++) {
          size_t vw = ctl_put_value(NULL, &vals[i]);
          if (vw > w[i + 1]) w[i + 1] = vw < COLW_MAX ? vw : COLW_MAX;
        }
        continue;
      }
      if (json) {
        if (ctl_json_print(ctl_json_row(&d, key.data, key.len, vals))) {
          rc = SYNC_ENOMEM;
          break;
        }
      } else {
        size_t kw = ctl_put_key(stdout, d.key_type,
                                (const unsigned char *)key.data, key.len);
        printf("%*s", (int)(kw < w[0] ? w[0] - kw : 0), "");
        for (i = 0; i < d.ncolumns; i++) {
          size_t vw;
          printf("  ");
          vw = ctl_put_value(stdout, &vals[i]);
          if (i + 1 < d.ncolumns)
            printf("%*s", (int)(vw < w[i + 1] ? w[i + 1] - vw : 0), "");
        }
        printf("\n");
      }
    }
    sync_cursor_close(c);
    c = NULL;
    if (rc != SYNC_NOTFOUND) break;
    rc = 0;
  }
  if (rc)
    ctl_lib_fail(env, pos[0], rc, "cannot read the table");
  else
    ret = EX_OK;
  sync_txn_abort(x);
out0:
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_load = {
    "synctl load DB TABLE FILE|- [--batch N] [--json]",
    "write JSON lines into a table",
    "Reads JSON lines (as 'synctl dump --json' writes them) from FILE, or\n"
    "standard input for -, and puts each row, N rows (default 1000) per\n"
    "transaction.  Columns missing from an object are NULL.  A counter\n"
    "is only ever added to: its value V becomes an add of V minus the\n"
    "counter's value now on that row (none when they are equal), so the\n"
    "row reads V, a second load of the same lines writes nothing, and\n"
    "adds made meanwhile on other replicas count on top of V once they\n"
    "sync.  A counter that is null or missing keeps its value.  A bad\n"
    "line stops the load with its line number; the batches before it\n"
    "stay committed, the batch holding it is not.  Numbers are read as\n"
    "RFC 8259 has them: +1, 01, .5 and a real out of range (1e999) are\n"
    "bad lines.  With --json the last line is {table, rows} instead.\n"};

/* What load reads of its arguments. */
typedef struct load_args {
  const char *db, *table, *file;
  size_t batch;
  int json;
} load_args;

static int load_parse_args(int argc, char **argv, load_args *la) {
  unsigned i;
  int n = 0;
  char *pos[3];
  la->batch = 1000;
  for (i = 0; i < (unsigned)argc; i++) {
    if (ctl_opt(i, argv[i], "--batch")) {
      uint64_t b;
      if (i + 1 == (unsigned)argc || ctl_parse_u64(argv[++i], &b) || !b)
        return ctl_usage("--batch needs a number of rows");
      la->batch = (size_t)b;
    } else if (ctl_opt(i, argv[i], "--json")) {
      la->json = 1;
    } else if (n < 3) {
      pos[n++] = argv[i];
    } else {
      return ctl_usage("too many arguments");
    }
  }
  if (n != 3) return ctl_usage("give DB TABLE FILE (or - for standard input)");
  la->db = pos[0];
  la->table = pos[1];
  la->file = pos[2];
  return EX_OK;
}

/* The table being loaded, its open batch, and the line being read. */
typedef struct loader {
  sync_env *env;
  const char *db;
  unsigned t;
  sync_table_def d;
  sync_txn *x;    /* the batch; NULL until a row needs it */
  json_t *obj;    /* the line's object, which its text values point into */
  char where[64]; /* FILE:LINE, for messages */
} loader;

/* One line's row as it is read.  The steps below return 0 when all is
 * well, 1 when err says what is wrong with the line, and 2 when the
 * load stops with its words said already. */
typedef struct load_row {
  sync_value vals[MAXC];
  unsigned char *hold[MAXC]; /* blob bytes of vals, freed after the put */
  int nhold, have_key;
  ctl_keybuf k;
  char err[256];
} load_row;

static int load_key(loader *l, load_row *w, json_t *j) {
  char kb[2 * SYNC_MAX_KEY + 3], *s = NULL;
  unsigned char *hold = NULL;
  size_t n = 0;
  int ints = l->d.key_type == SYNC_INTEGER, bad = 0;
  if (ints && json_is_integer(j))
    snprintf(kb, sizeof kb, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
  else if (!ints && (json_is_string(j) || l->d.key_type == SYNC_TEXT) &&
           !ctl_json_text(j, &s, &n, &hold) && n < sizeof kb &&
           !memchr(s, 0, n))
    memcpy(kb, s, n), kb[n] = 0;
  else
    bad = 1;
  free(hold);
  if (bad) {
    snprintf(w->err, sizeof w->err, "\"key\" must be a %s",
             ints ? "number" : "string");
    return 1;
  }
  if (ctl_parse_key(l->env, l->where, l->t, kb, &w->k)) return 2;
  w->have_key = 1;
  return 0;
}

static int load_column(loader *l, load_row *w, const char *name, json_t *j) {
  unsigned col;
  if (ctl_find_column(l->env, l->where, l->t, name, strlen(name), &col))
    return 2;
  if (ctl_json_to_value(&l->d.columns[col], j, &w->vals[col],
                        &w->hold[w->nhold], w->err, sizeof w->err))
    return 1;
  if (w->hold[w->nhold]) w->nhold++;
  return 0;
}

/* The object on the line (jansson refuses anything after it, numbers
 * RFC 8259 does not allow, such as +1, 01 and .5, and reals out of
 * range, such as 1e999), then its members. */
static int load_object(loader *l, load_row *w, const char *line, size_t len) {
  json_error_t je;
  json_t *o, *v;
  const char *name;
  int bad = 0;
  o = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
  if (!o) {
    snprintf(w->err, sizeof w->err, "%s (column %d)", je.text, je.column);
    return 1;
  }
  if (!json_is_object(o)) {
    snprintf(w->err, sizeof w->err, "not a JSON object");
    bad = 1;
  }
  if (!bad) json_object_foreach(o, name, v) {
      if (!strcmp(name, "key"))
        bad = load_key(l, w, v);
      else
        bad = load_column(l, w, name, v);
      if (bad) break;
    }
  /* Text values point into o until the put. */
  if (!bad && !w->have_key) {
    snprintf(w->err, sizeof w->err, "no \"key\"");
    bad = 1;
  }
  if (bad)
    json_decref(o);
  else
    l->obj = o;
  return bad;
}

/* Add to counter col of the row what takes it from its value now to
 * want, in adds of at most 2^63 (a difference of two int64 values may
 * need two); then check that it reads want (a sum past the int64 range
 * reads clamped, and the difference from that would miss). */
static int load_counter(loader *l, load_row *w, unsigned col, int64_t want) {
  sync_value v[MAXC];
  uint64_t mag;
  int rc, neg;
  if ((rc = sync_get(l->x, l->t, w->k.b, w->k.n, v, col + 1))) return rc;
  neg = want < v[col].i;
  mag = neg ? (uint64_t)v[col].i - (uint64_t)want
            : (uint64_t)want - (uint64_t)v[col].i;
  while (mag) {
    uint64_t step = mag > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : mag;
    if ((rc = sync_counter_add(l->x, l->t, w->k.b, w->k.n, col,
                               neg ? -(int64_t)step : (int64_t)step)))
      return rc;
    mag -= step;
  }
  if ((rc = sync_get(l->x, l->t, w->k.b, w->k.n, v, col + 1))) return rc;
  if (v[col].i != want) {
    snprintf(w->err, sizeof w->err,
             "column '%s': its sum is past the 64-bit range, so an add "
             "cannot be made to bring it to %" PRId64,
             l->d.columns[col].name, want);
    return 1;
  }
  return 0;
}

/* The row into the batch (begun here when it is the batch's first): a
 * put of its other columns (a counter's NULL keeps the count), then
 * each counter given brought to its value by an add of the difference,
 * so that a load replicates as adds and writes nothing where the row
 * holds the values already. */
static int load_put(loader *l, load_row *w) {
  sync_value want[MAXC];
  int rc = 0;
  unsigned j;
  if (!l->x && (rc = sync_txn_begin(l->env, 0, &l->x))) {
    ctl_lib_fail(l->env, l->db, rc, "cannot begin");
    return 2;
  }
  for (j = 0; j < l->d.ncolumns; j++) {
    want[j] = w->vals[j];
    if (l->d.columns[j].type == SYNC_COUNTER) w->vals[j] = sync_null();
  }
  rc = sync_put(l->x, l->t, w->k.b, w->k.n, w->vals, l->d.ncolumns);
  for (j = 0; !rc && j < l->d.ncolumns; j++)
    if (l->d.columns[j].type == SYNC_COUNTER && want[j].type == SYNC_INTEGER &&
        (rc = load_counter(l, w, j, want[j].i))) {
      if (rc == 1) return 1;
      snprintf(w->err, sizeof w->err, "column '%s': %s%s", l->d.columns[j].name,
               sync_strerror(rc),
               rc == SYNC_ELIMIT ? " (the add would take this replica's "
                                   "total for the counter past 2^64 - 1)"
                                 : "");
      return 1;
    }
  if (!rc) return 0;
  if (rc == SYNC_ECONSTRAINT) {
    snprintf(w->err, sizeof w->err, "a notnull column would be NULL");
    for (j = 0; j < l->d.ncolumns; j++)
      if ((l->d.columns[j].flags & SYNC_COL_NOTNULL) &&
          w->vals[j].type == SYNC_NULL) {
        snprintf(w->err, sizeof w->err, "column '%s' is notnull",
                 l->d.columns[j].name);
        break;
      }
  } else
    snprintf(w->err, sizeof w->err, "%s", sync_strerror(rc));
  return 1;
}

/* One line read and put.  -1 for a blank line, else as the steps above
 * (a bad line said here). */
static int load_line(loader *l, const char *line, size_t len) {
  load_row w;
  unsigned i;
  size_t b = 0;
  int bad;
  while (b < len && (line[b] == ' ' || line[b] == '\t' || line[b] == '\r' ||
                     line[b] == '\n'))
    b++;
  if (b == len) return -1; /* blank line */
  w.nhold = w.have_key = 0;
  w.err[0] = 0;
  for (i = 0; i < l->d.ncolumns; i++) w.vals[i] = sync_null();
  bad = load_object(l, &w, line, len);
  if (!bad) bad = load_put(l, &w);
  json_decref(l->obj);
  l->obj = NULL;
  while (w.nhold) free(w.hold[--w.nhold]);
  if (bad == 1) ctl_say("%s: %s", l->where, w.err);
  return bad;
}

static int load_commit(loader *l) {
  int rc = sync_txn_commit(l->x);
  l->x = NULL;
  if (rc) ctl_lib_fail(l->env, l->db, rc, "commit failed");
  return rc;
}

int ctl_cmd_load(int argc, char **argv) {
  load_args la;
  loader l;
  FILE *f;
  char *line = NULL;
  size_t cap = 0, inbatch = 0;
  ssize_t len;
  long lineno = 0;
  uint64_t total = 0;
  int rc, ret = EX_FAIL;
  memset(&la, 0, sizeof la);
  if ((rc = load_parse_args(argc, argv, &la))) return rc;
  if (!strcmp(la.file, "-"))
    f = stdin;
  else if (!(f = fopen(la.file, "r"))) {
    ctl_say("%s: %s", la.file, strerror(errno));
    return EX_FAIL;
  }
  memset(&l, 0, sizeof l);
  l.db = la.db;
  if (ctl_open_db(la.db, 0, &l.env)) {
    if (f != stdin) fclose(f);
    return EX_FAIL;
  }
  if (ctl_find_table(l.env, la.db, la.table, &l.t)) goto out;
  sync_env_table_def(l.env, l.t, &l.d);
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    snprintf(l.where, sizeof l.where, "%s:%ld",
             !strcmp(la.file, "-") ? "stdin" : la.file, lineno);
    if ((rc = load_line(&l, line, (size_t)len)) < 0) continue;
    if (rc) goto out;
    total++;
    if (++inbatch == la.batch) {
      inbatch = 0;
      if (load_commit(&l)) goto out;
    }
  }
  if (l.x && load_commit(&l)) goto out;
  if (la.json)
    ret = ctl_json_print(json_pack("{sosI}", "table", ctl_json_str(l.d.name),
                                   "rows", (json_int_t)total));
  else
    printf("loaded %llu rows into %s\n", (unsigned long long)total, l.d.name),
        ret = EX_OK;
out:
  sync_txn_abort(l.x);
  free(line);
  if (f != stdin) fclose(f);
  sync_env_close(l.env);
  return ret;
}
