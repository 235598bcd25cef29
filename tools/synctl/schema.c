/*
 * Schemas as init and add-column take them: --table NAME:KEYTYPE with
 * COL:TYPE[:flags] words, or a schema file (one 'table' line per table,
 * one line per column).
 */
#include "synctl.h"

#include <stdlib.h>
#include <string.h>

static char *keep(ctl_schema_in *s, const char *p, size_t n) {
  char *q = (char *)malloc(n + 1);
  if (!q) return NULL;
  memcpy(q, p, n);
  q[n] = 0;
  s->strings[s->ns++] = q;
  return q;
}

void ctl_schema_free(ctl_schema_in *s) {
  size_t i;
  for (i = 0; i < s->ns; i++) free(s->strings[i]);
  s->ns = 0;
}

/* A column from NAME:TYPE[:notnull][:local] or from words. */
static int add_col(ctl_schema_in *s, const char *name, size_t nlen,
                   const char *type, size_t tlen, unsigned flags,
                   const char *where) {
  sync_table_def *t;
  sync_column_def *c;
  int ty = ctl_parse_type(type, tlen);
  if (!s->nt) {
    ctl_usage("%scolumn '%.*s' before any table", where, (int)nlen, name);
    return -1;
  }
  t = &s->t[s->nt - 1];
  if (!ty) {
    ctl_usage("%scolumn '%.*s': unknown type '%.*s' (integer, real, text, "
              "blob or counter)",
              where, (int)nlen, name, (int)tlen, type);
    return -1;
  }
  if (t->ncolumns == MAXC) {
    ctl_usage("%stoo many columns in '%s'", where, t->name);
    return -1;
  }
  c = &s->c[s->nt - 1][t->ncolumns++];
  c->name = keep(s, name, nlen);
  c->type = ty;
  c->flags = flags;
  return c->name ? 0 : -1;
}

int ctl_add_table(ctl_schema_in *s, const char *name, size_t nlen,
                  const char *kt, size_t klen, const char *where) {
  int ty = ctl_parse_type(kt, klen);
  sync_table_def *t;
  if (ty != SYNC_TEXT && ty != SYNC_BLOB && ty != SYNC_INTEGER) {
    ctl_usage(
        "%stable '%.*s': key type must be text, blob or integer, not '%.*s'",
        where, (int)nlen, name, (int)klen, kt);
    return -1;
  }
  if (s->nt == MAXT) {
    ctl_usage("%stoo many tables", where);
    return -1;
  }
  t = &s->t[s->nt];
  t->name = keep(s, name, nlen);
  t->key_type = ty;
  t->columns = s->c[s->nt];
  t->ncolumns = 0;
  s->nt++;
  return t->name ? 0 : -1;
}

static int parse_flags(const char *p, unsigned *flags, const char *where) {
  while (*p) {
    const char *q = strchr(p, ':');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 7 && !strncmp(p, "notnull", 7))
      *flags |= SYNC_COL_NOTNULL;
    else if (n == 5 && !strncmp(p, "local", 5))
      *flags |= SYNC_COL_LOCAL;
    else {
      ctl_usage("%sunknown column flag '%.*s' (notnull or local)", where,
                (int)n, p);
      return -1;
    }
    p += n + (q != NULL);
  }
  return 0;
}

/* COL:TYPE[:flags] */
int ctl_col_word(ctl_schema_in *s, const char *w, const char *where) {
  const char *c1 = strchr(w, ':'), *c2;
  unsigned flags = 0;
  if (!c1 || c1 == w) {
    ctl_usage("%s'%s': a column is NAME:TYPE[:notnull][:local]", where, w);
    return -1;
  }
  c2 = strchr(c1 + 1, ':');
  if (c2 && parse_flags(c2 + 1, &flags, where)) return -1;
  return add_col(s, w, (size_t)(c1 - w), c1 + 1,
                 c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1), flags, where);
}

/* One line of a schema file: 'table NAME KEYTYPE' or 'COLUMN TYPE
 * [notnull] [local]', or blank. */
static int schema_line(void *ctx, char *line, const char *at) {
  ctl_schema_in *s = (ctl_schema_in *)ctx;
  char *w[8], *save = NULL, *p, where[1100];
  int n = 0, rc = 0;
  snprintf(where, sizeof where, "%s: ", at);
  if ((p = strchr(line, '#'))) *p = 0;
  for (p = strtok_r(line, " \t\r\n", &save); p && n < 8;
       p = strtok_r(NULL, " \t\r\n", &save))
    w[n++] = p;
  if (!n) return 0;
  if (!strcmp(w[0], "table")) {
    if (n != 3)
      return ctl_usage("%sa table line is 'table NAME KEYTYPE'", where);
    return ctl_add_table(s, w[1], strlen(w[1]), w[2], strlen(w[2]), where);
  }
  {
    unsigned flags = 0;
    int i;
    if (n < 2)
      rc = ctl_usage("%sa column line is 'NAME TYPE [notnull] [local]'", where);
    for (i = 2; !rc && i < n; i++) rc = parse_flags(w[i], &flags, where);
    if (!rc)
      rc = add_col(s, w[0], strlen(w[0]), w[1], strlen(w[1]), flags, where);
  }
  return rc;
}

int ctl_schema_file(ctl_schema_in *s, const char *path) {
  return ctl_each_line(path, schema_line, s);
}
