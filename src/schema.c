/*
 * schema.c - schema validation, copies, canonical encoding and hashing.
 *
 * The canonical encoding is varints and length-prefixed names:
 *   version, ntables, then per table: name, key_type, ncols, and per
 *   column: name, type, flags.
 * The hash covers the same bytes without the version and without
 * SYNC_COL_LOCAL (which flag a column keeps on one device is that device's
 * business), so replicas that declared the same schema agree whatever
 * path of changes led each of them there.
 */
#include "schema.h"

#include "hash.h"

#include <stdio.h>

SYNC_PRIVATE const char *sx_type_name(int type) {
  switch (type) {
  case SYNC_NULL: return "NULL";
  case SYNC_INTEGER: return "INTEGER";
  case SYNC_REAL: return "REAL";
  case SYNC_TEXT: return "TEXT";
  case SYNC_BLOB: return "BLOB";
  case SYNC_COUNTER: return "COUNTER";
  default: return "?";
  }
}

static int sx_name_ok(const char *name) {
  size_t n;
  if (!name) return 0;
  n = strlen(name);
  return n >= 1 && n <= SX_NAME_MAX;
}

static void sx_table_release(const sx_alloc *al, sx_table *t) {
  sx_free(al, t->cols);
  sx_free(al, t->defs);
  t->cols = NULL;
  t->defs = NULL;
}

SYNC_PRIVATE void sx_schema_free(const sx_alloc *al, sx_schema *s) {
  unsigned i;
  if (!s) return;
  for (i = 0; i < s->ntables; i++) sx_table_release(al, &s->tables[i]);
  sx_free(al, s->tables);
  sx_free(al, s);
}

static sx_schema *sx_schema_alloc(const sx_alloc *al, unsigned ntables) {
  sx_schema *s = (sx_schema *)sx_malloc(al, sizeof *s);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->tables = (sx_table *)sx_malloc(al, sizeof(sx_table) * (ntables ? ntables : 1));
  if (!s->tables) {
    sx_free(al, s);
    return NULL;
  }
  memset(s->tables, 0, sizeof(sx_table) * (ntables ? ntables : 1));
  return s;
}

static int sx_table_alloc_cols(const sx_alloc *al, sx_table *t, unsigned n) {
  t->cols = (sx_column *)sx_malloc(al, sizeof(sx_column) * n);
  t->defs = (sync_column_def *)sx_malloc(al, sizeof(sync_column_def) * n);
  if (!t->cols || !t->defs) {
    sx_table_release(al, t);
    return SYNC_ENOMEM;
  }
  memset(t->cols, 0, sizeof(sx_column) * n);
  t->ncols = n;
  return 0;
}

static void sx_table_link_defs(sx_table *t) {
  unsigned j;
  for (j = 0; j < t->ncols; j++) {
    t->defs[j].name = t->cols[j].name;
    t->defs[j].type = t->cols[j].type;
    t->defs[j].flags = t->cols[j].flags;
  }
}

static int sx_column_check(const sync_column_def *c, char *msg, size_t msgsz,
                           const char *tname, unsigned j) {
  if (!sx_name_ok(c->name)) {
    snprintf(msg, msgsz, "table '%s' column %u: name must be 1..%d bytes",
             tname, j, SX_NAME_MAX);
    return SYNC_EINVAL;
  }
  if (c->type < SYNC_INTEGER || c->type > SYNC_COUNTER) {
    snprintf(msg, msgsz, "table '%s' column '%s': bad type %d", tname, c->name,
             c->type);
    return SYNC_EINVAL;
  }
  if (c->flags & ~(SYNC_COL_NOTNULL | SYNC_COL_LOCAL)) {
    snprintf(msg, msgsz, "table '%s' column '%s': unknown flags 0x%x", tname,
             c->name, c->flags);
    return SYNC_EINVAL;
  }
  return 0;
}

static int sx_table_check(const sync_table_def *d, char *msg, size_t msgsz) {
  unsigned j, k;
  int rc;
  if (!sx_name_ok(d->name)) {
    snprintf(msg, msgsz, "table name must be 1..%d bytes", SX_NAME_MAX);
    return SYNC_EINVAL;
  }
  if (d->key_type != SYNC_TEXT && d->key_type != SYNC_BLOB &&
      d->key_type != SYNC_INTEGER) {
    snprintf(msg, msgsz, "table '%s': key type must be TEXT, BLOB or INTEGER",
             d->name);
    return SYNC_EINVAL;
  }
  if (d->ncolumns == 0 || !d->columns) {
    snprintf(msg, msgsz, "table '%s' has no columns", d->name);
    return SYNC_EINVAL;
  }
  if (d->ncolumns > SYNC_MAX_COLUMNS) {
    snprintf(msg, msgsz, "table '%s': %u columns, at most %d", d->name,
             d->ncolumns, SYNC_MAX_COLUMNS);
    return SYNC_ELIMIT;
  }
  for (j = 0; j < d->ncolumns; j++) {
    if ((rc = sx_column_check(&d->columns[j], msg, msgsz, d->name, j)))
      return rc;
    for (k = 0; k < j; k++)
      if (!strcmp(d->columns[k].name, d->columns[j].name)) {
        snprintf(msg, msgsz, "table '%s': column '%s' declared twice",
                 d->name, d->columns[j].name);
        return SYNC_EINVAL;
      }
  }
  return 0;
}

static int sx_table_copy_def(const sx_alloc *al, sx_table *t,
                             const sync_table_def *d) {
  unsigned j;
  if (sx_table_alloc_cols(al, t, d->ncolumns)) return SYNC_ENOMEM;
  strcpy(t->name, d->name);
  t->key_type = d->key_type;
  for (j = 0; j < d->ncolumns; j++) {
    strcpy(t->cols[j].name, d->columns[j].name);
    t->cols[j].type = d->columns[j].type;
    t->cols[j].flags = d->columns[j].flags;
  }
  sx_table_link_defs(t);
  return 0;
}

static int sx_table_copy(const sx_alloc *al, sx_table *t, const sx_table *src,
                         unsigned extra) {
  if (sx_table_alloc_cols(al, t, src->ncols + extra)) return SYNC_ENOMEM;
  strcpy(t->name, src->name);
  t->key_type = src->key_type;
  memcpy(t->cols, src->cols, sizeof(sx_column) * src->ncols);
  t->ncols = src->ncols;
  sx_table_link_defs(t);
  return 0;
}

static void sx_put_name(unsigned char **pp, const char *name) {
  size_t n = strlen(name);
  *pp += sx_put_varint(*pp, n);
  memcpy(*pp, name, n);
  *pp += n;
}

/* Encode into b; with for_hash, leave out the version and local flags. */
static int sx_schema_encode_mode(const sx_schema *s, sx_buf *b, int for_hash) {
  unsigned i, j;
  int rc;
  /* Upper bound: names <= 64+1 bytes, numbers <= 10 bytes each. */
  if ((rc = sx_buf_reserve(b, 20))) return rc;
  {
    unsigned char *p = b->p + b->len;
    if (!for_hash) p += sx_put_varint(p, s->version);
    p += sx_put_varint(p, s->ntables);
    b->len = (size_t)(p - b->p);
  }
  for (i = 0; i < s->ntables; i++) {
    const sx_table *t = &s->tables[i];
    unsigned char *p;
    if ((rc = sx_buf_reserve(b, 100 + (size_t)t->ncols * 100))) return rc;
    p = b->p + b->len;
    sx_put_name(&p, t->name);
    p += sx_put_varint(p, (uint64_t)t->key_type);
    p += sx_put_varint(p, t->ncols);
    for (j = 0; j < t->ncols; j++) {
      unsigned flags = t->cols[j].flags;
      if (for_hash) flags &= ~SYNC_COL_LOCAL;
      sx_put_name(&p, t->cols[j].name);
      p += sx_put_varint(p, (uint64_t)t->cols[j].type);
      p += sx_put_varint(p, flags);
    }
    b->len = (size_t)(p - b->p);
  }
  return 0;
}

static int sx_schema_rehash(const sx_alloc *al, sx_schema *s) {
  sx_buf b;
  int rc;
  sx_buf_init(&b, al);
  rc = sx_schema_encode_mode(s, &b, 1);
  if (!rc) s->hash = sx_hash64(b.p, b.len, 0);
  sx_buf_free(&b);
  return rc;
}

SYNC_PRIVATE int sx_schema_encode(const sx_schema *s, sx_buf *b) {
  return sx_schema_encode_mode(s, b, 0);
}

SYNC_PRIVATE int sx_schema_from_defs(const sx_alloc *al,
                                     const sync_table_def *defs, unsigned n,
                                     sx_schema **out, char *msg,
                                     size_t msgsz) {
  sx_schema *s;
  unsigned i, k;
  int rc;
  *out = NULL;
  if (n > SYNC_MAX_TABLES) {
    snprintf(msg, msgsz, "%u tables, at most %d", n, SYNC_MAX_TABLES);
    return SYNC_ELIMIT;
  }
  if (n && !defs) return SYNC_EINVAL;
  for (i = 0; i < n; i++) {
    if ((rc = sx_table_check(&defs[i], msg, msgsz))) return rc;
    for (k = 0; k < i; k++)
      if (!strcmp(defs[k].name, defs[i].name)) {
        snprintf(msg, msgsz, "table '%s' declared twice", defs[i].name);
        return SYNC_EINVAL;
      }
  }
  if (!(s = sx_schema_alloc(al, n))) return SYNC_ENOMEM;
  for (i = 0; i < n; i++) {
    if (sx_table_copy_def(al, &s->tables[i], &defs[i])) {
      sx_schema_free(al, s);
      return SYNC_ENOMEM;
    }
    s->ntables = i + 1;
  }
  s->version = 1;
  if ((rc = sx_schema_rehash(al, s))) {
    sx_schema_free(al, s);
    return rc;
  }
  *out = s;
  return 0;
}

static int sx_get_name(const unsigned char **pp, const unsigned char *end,
                       char *name) {
  uint64_t n;
  size_t k = sx_get_varint(*pp, end, &n);
  if (!k || n < 1 || n > SX_NAME_MAX || (uint64_t)(end - *pp - k) < n) return 0;
  memcpy(name, *pp + k, (size_t)n);
  name[n] = 0;
  if (strlen(name) != n) return 0;
  *pp += k + n;
  return 1;
}

static int sx_get_small(const unsigned char **pp, const unsigned char *end,
                        uint64_t max, uint64_t *v) {
  size_t k = sx_get_varint(*pp, end, v);
  if (!k || *v > max) return 0;
  *pp += k;
  return 1;
}

SYNC_PRIVATE int sx_schema_encode_peer(const sx_schema *s, sx_buf *b) {
  return sx_schema_encode_mode(s, b, 1);
}

/* Parse canonical bytes; with peer, the form without a version. */
static int sx_schema_decode_mode(const sx_alloc *al, const unsigned char *p,
                                 size_t n, int peer, sx_schema **out) {
  const unsigned char *end = p + n;
  uint64_t version = 0, ntables, v;
  sx_schema *s;
  unsigned i, j;
  int rc;
  *out = NULL;
  if (!peer) {
    size_t k = sx_get_varint(p, end, &version);
    if (!k || version == 0) return SYNC_ECORRUPT;
    p += k;
  }
  /* A table takes at least 4 bytes and a column 3: counts that the bytes
   * left cannot hold size nothing (a peer's schema comes off the wire). */
  if (!sx_get_small(&p, end, SYNC_MAX_TABLES, &ntables) ||
      ntables > (uint64_t)(end - p) / 4)
    return SYNC_ECORRUPT;
  if (!(s = sx_schema_alloc(al, (unsigned)ntables))) return SYNC_ENOMEM;
  s->version = version;
  for (i = 0; i < ntables; i++) {
    sx_table *t = &s->tables[i];
    uint64_t kt, nc;
    char tname[SX_NAME_MAX + 1];
    if (!sx_get_name(&p, end, tname) || !sx_get_small(&p, end, 16, &kt) ||
        !sx_get_small(&p, end, SYNC_MAX_COLUMNS, &nc) || nc == 0 ||
        nc > (uint64_t)(end - p) / 3)
      goto corrupt;
    if (sx_table_alloc_cols(al, t, (unsigned)nc)) {
      sx_schema_free(al, s);
      return SYNC_ENOMEM;
    }
    s->ntables = i + 1;
    strcpy(t->name, tname);
    t->key_type = (int)kt;
    for (j = 0; j < nc; j++) {
      if (!sx_get_name(&p, end, t->cols[j].name) ||
          !sx_get_small(&p, end, SYNC_COUNTER, &v) || v < SYNC_INTEGER)
        goto corrupt;
      t->cols[j].type = (int)v;
      if (!sx_get_small(&p, end, SYNC_COL_NOTNULL | SYNC_COL_LOCAL, &v))
        goto corrupt;
      t->cols[j].flags = (unsigned)v;
    }
    sx_table_link_defs(t);
  }
  if (p != end) goto corrupt;
  /* A peer's schema passes the checks a declared one does (names, key
   * types, duplicates), so that comparisons may trust it. */
  for (i = 0; i < s->ntables; i++) {
    const sx_table *t = &s->tables[i];
    if (t->key_type != SYNC_TEXT && t->key_type != SYNC_BLOB &&
        t->key_type != SYNC_INTEGER)
      goto corrupt;
    if (sx_schema_find_table(s, t->name) != (int)i) goto corrupt;
    for (j = 0; j < t->ncols; j++)
      if (sx_schema_find_column(t, t->cols[j].name) != (int)j) goto corrupt;
  }
  if ((rc = sx_schema_rehash(al, s))) {
    sx_schema_free(al, s);
    return rc;
  }
  *out = s;
  return 0;
corrupt:
  sx_schema_free(al, s);
  return SYNC_ECORRUPT;
}

SYNC_PRIVATE int sx_schema_decode(const sx_alloc *al, const unsigned char *p,
                                  size_t n, sx_schema **out) {
  return sx_schema_decode_mode(al, p, n, 0, out);
}

SYNC_PRIVATE int sx_schema_decode_peer(const sx_alloc *al,
                                       const unsigned char *p, size_t n,
                                       sx_schema **out) {
  int rc = sx_schema_decode_mode(al, p, n, 1, out);
  if (!rc) (*out)->version = 0; /* peers do not say */
  return rc;
}

SYNC_PRIVATE int sx_schema_diff(const sx_schema *file, const sx_schema *decl,
                                char *msg, size_t msgsz) {
  unsigned i, j;
  for (i = 0; i < file->ntables && i < decl->ntables; i++) {
    const sx_table *a = &file->tables[i], *b = &decl->tables[i];
    if (strcmp(a->name, b->name)) {
      snprintf(msg, msgsz,
               "table %u is '%s' in the file but '%s' in the declared schema",
               i, a->name, b->name);
      return 1;
    }
    if (a->key_type != b->key_type) {
      snprintf(msg, msgsz, "table '%s': key is %s in the file, %s declared",
               a->name, sx_type_name(a->key_type), sx_type_name(b->key_type));
      return 1;
    }
    for (j = 0; j < a->ncols && j < b->ncols; j++) {
      const sx_column *x = &a->cols[j], *y = &b->cols[j];
      if (strcmp(x->name, y->name)) {
        snprintf(msg, msgsz,
                 "table '%s' column %u is '%s' in the file, '%s' declared",
                 a->name, j, x->name, y->name);
        return 1;
      }
      if (x->type != y->type) {
        snprintf(msg, msgsz,
                 "table '%s' column '%s' is %s in the file, %s declared",
                 a->name, x->name, sx_type_name(x->type),
                 sx_type_name(y->type));
        return 1;
      }
      if (x->flags != y->flags) {
        snprintf(msg, msgsz,
                 "table '%s' column '%s' has flags 0x%x in the file, 0x%x "
                 "declared",
                 a->name, x->name, x->flags, y->flags);
        return 1;
      }
    }
    if (a->ncols != b->ncols) {
      snprintf(msg, msgsz,
               "table '%s' has %u columns in the file, %u declared (column "
               "'%s' %s)",
               a->name, a->ncols, b->ncols,
               a->ncols > b->ncols ? a->cols[b->ncols].name
                                   : b->cols[a->ncols].name,
               a->ncols > b->ncols ? "is not declared"
                                   : "is not in the file; add it with "
                                     "sync_env_add_column");
      return 1;
    }
  }
  if (file->ntables != decl->ntables) {
    snprintf(msg, msgsz, "the file has %u tables, %u declared (table '%s' %s)",
             file->ntables, decl->ntables,
             file->ntables > decl->ntables ? file->tables[decl->ntables].name
                                           : decl->tables[file->ntables].name,
             file->ntables > decl->ntables ? "is not declared"
                                           : "is not in the file; add it "
                                             "with sync_env_add_table");
    return 1;
  }
  return 0;
}

SYNC_PRIVATE int sx_schema_find_table(const sx_schema *s, const char *name) {
  unsigned i;
  for (i = 0; i < s->ntables; i++)
    if (!strcmp(s->tables[i].name, name)) return (int)i;
  return -1;
}

SYNC_PRIVATE int sx_schema_find_column(const sx_table *t, const char *name) {
  unsigned j;
  for (j = 0; j < t->ncols; j++)
    if (!strcmp(t->cols[j].name, name)) return (int)j;
  return -1;
}

/* Copy s into a new schema with room for extra tables, and extra columns
 * in table grow (or none when grow is out of range). */
static int sx_schema_copy(const sx_alloc *al, const sx_schema *s,
                          unsigned extra_tables, unsigned grow,
                          sx_schema **out) {
  sx_schema *c = sx_schema_alloc(al, s->ntables + extra_tables);
  unsigned i;
  *out = NULL;
  if (!c) return SYNC_ENOMEM;
  c->version = s->version + 1;
  for (i = 0; i < s->ntables; i++) {
    if (sx_table_copy(al, &c->tables[i], &s->tables[i], i == grow ? 1 : 0)) {
      sx_schema_free(al, c);
      return SYNC_ENOMEM;
    }
    c->ntables = i + 1;
  }
  *out = c;
  return 0;
}

SYNC_PRIVATE int sx_schema_with_column(const sx_alloc *al, const sx_schema *s,
                                       unsigned t, const sync_column_def *col,
                                       sx_schema **out, char *msg,
                                       size_t msgsz) {
  sx_schema *c;
  sx_table *nt;
  int rc;
  *out = NULL;
  if (t >= s->ntables || !col) return SYNC_EINVAL;
  if ((rc = sx_column_check(col, msg, msgsz, s->tables[t].name,
                            s->tables[t].ncols)))
    return rc;
  if (sx_schema_find_column(&s->tables[t], col->name) >= 0) {
    snprintf(msg, msgsz, "table '%s' already has a column '%s'",
             s->tables[t].name, col->name);
    return SYNC_EEXIST;
  }
  if (s->tables[t].ncols >= SYNC_MAX_COLUMNS) {
    snprintf(msg, msgsz, "table '%s' has %d columns already", s->tables[t].name,
             SYNC_MAX_COLUMNS);
    return SYNC_ELIMIT;
  }
  if (col->flags & SYNC_COL_NOTNULL) {
    snprintf(msg, msgsz,
             "new column '%s' must allow NULL: existing rows have no value",
             col->name);
    return SYNC_ECONSTRAINT;
  }
  if ((rc = sx_schema_copy(al, s, 0, t, &c))) return rc;
  nt = &c->tables[t];
  strcpy(nt->cols[nt->ncols].name, col->name);
  nt->cols[nt->ncols].type = col->type;
  nt->cols[nt->ncols].flags = col->flags;
  nt->ncols++;
  sx_table_link_defs(nt);
  if ((rc = sx_schema_rehash(al, c))) {
    sx_schema_free(al, c);
    return rc;
  }
  *out = c;
  return 0;
}

SYNC_PRIVATE int sx_schema_with_table(const sx_alloc *al, const sx_schema *s,
                                      const sync_table_def *d, sx_schema **out,
                                      char *msg, size_t msgsz) {
  sx_schema *c;
  int rc;
  *out = NULL;
  if (!d) return SYNC_EINVAL;
  if ((rc = sx_table_check(d, msg, msgsz))) return rc;
  if (sx_schema_find_table(s, d->name) >= 0) {
    snprintf(msg, msgsz, "table '%s' already exists", d->name);
    return SYNC_EEXIST;
  }
  if (s->ntables >= SYNC_MAX_TABLES) {
    snprintf(msg, msgsz, "%d tables already", SYNC_MAX_TABLES);
    return SYNC_ELIMIT;
  }
  if ((rc = sx_schema_copy(al, s, 1, (unsigned)-1, &c))) return rc;
  if (sx_table_copy_def(al, &c->tables[c->ntables], d)) {
    sx_schema_free(al, c);
    return SYNC_ENOMEM;
  }
  c->ntables++;
  if ((rc = sx_schema_rehash(al, c))) {
    sx_schema_free(al, c);
    return rc;
  }
  *out = c;
  return 0;
}

/* A NOT NULL flag, as the messages below name it. */
static const char *sx_null_word(unsigned flags) {
  return (flags & SYNC_COL_NOTNULL) ? " NOT NULL" : "";
}

SYNC_PRIVATE int sx_schema_compat(const sx_schema *a, const sx_schema *b,
                                  const char *an, const char *bn, char *msg,
                                  size_t msgsz) {
  unsigned i, j;
  for (i = 0; i < a->ntables && i < b->ntables; i++) {
    const sx_table *x = &a->tables[i], *y = &b->tables[i];
    if (strcmp(x->name, y->name)) {
      snprintf(msg, msgsz, "table %u is '%s' %s but '%s' %s", i, x->name, an,
               y->name, bn);
      return SYNC_ESCHEMA;
    }
    if (x->key_type != y->key_type) {
      snprintf(msg, msgsz, "table '%s': the key is %s %s but %s %s", x->name,
               sx_type_name(x->key_type), an, sx_type_name(y->key_type), bn);
      return SYNC_ESCHEMA;
    }
    for (j = 0; j < x->ncols && j < y->ncols; j++) {
      const sx_column *c = &x->cols[j], *d = &y->cols[j];
      /* The local flag is each device's own; NOT NULL is not: a NULL
       * one side may write, the other must refuse. */
      if (strcmp(c->name, d->name) || c->type != d->type ||
          (c->flags & SYNC_COL_NOTNULL) != (d->flags & SYNC_COL_NOTNULL)) {
        /* A message cut short still names the table and the column, and
         * ends in "..." to say so. */
        int n = snprintf(msg, msgsz,
                         "table '%s' column %u is '%s' %s%s %s but '%s' %s%s "
                         "%s",
                         x->name, j, c->name, sx_type_name(c->type),
                         sx_null_word(c->flags), an, d->name,
                         sx_type_name(d->type), sx_null_word(d->flags), bn);
        if (n >= 0 && (size_t)n >= msgsz && msgsz > 4)
          memcpy(msg + msgsz - 4, "...", 4);
        return SYNC_ESCHEMA;
      }
    }
  }
  return 0;
}

SYNC_PRIVATE int sx_schema_extends(const sx_schema *file,
                                   const sx_schema *decl, char *msg,
                                   size_t msgsz) {
  unsigned i, j;
  int rc;
  if ((rc = sx_schema_compat(file, decl, "in the file", "declared", msg,
                             msgsz)))
    return rc;
  if (decl->ntables < file->ntables) {
    snprintf(msg, msgsz,
             "the file has %u tables, %u declared (table '%s' is not "
             "declared; tables are never removed)",
             file->ntables, decl->ntables, file->tables[decl->ntables].name);
    return SYNC_ESCHEMA;
  }
  for (i = 0; i < file->ntables; i++) {
    const sx_table *a = &file->tables[i], *b = &decl->tables[i];
    if (b->ncols < a->ncols) {
      snprintf(msg, msgsz,
               "table '%s' has %u columns in the file, %u declared (column "
               "'%s' is not declared; columns are never removed)",
               a->name, a->ncols, b->ncols, a->cols[b->ncols].name);
      return SYNC_ESCHEMA;
    }
    for (j = 0; j < a->ncols; j++)
      if (a->cols[j].flags != b->cols[j].flags) {
        snprintf(msg, msgsz,
                 "table '%s' column '%s' has flags 0x%x in the file, 0x%x "
                 "declared",
                 a->name, a->cols[j].name, a->cols[j].flags, b->cols[j].flags);
        return SYNC_ESCHEMA;
      }
    for (; j < b->ncols; j++)
      if (b->cols[j].flags & SYNC_COL_NOTNULL) {
        snprintf(msg, msgsz,
                 "table '%s': new column '%s' must allow NULL: existing rows "
                 "have no value",
                 a->name, b->cols[j].name);
        return SYNC_ECONSTRAINT;
      }
  }
  return 0;
}

SYNC_PRIVATE int sx_schema_dup(const sx_alloc *al, const sx_schema *s,
                               uint64_t version, sx_schema **out) {
  sx_schema *c;
  int rc;
  *out = NULL;
  if ((rc = sx_schema_copy(al, s, 0, (unsigned)-1, &c))) return rc;
  c->version = version;
  c->hash = s->hash;
  *out = c;
  return 0;
}
