/*
 * Values from the command line: hex bytes, numbers, keys by their table's
 * key type, and column values by the column's type; and the text files
 * synctl reads line by line (schema files, credentials files).
 */
#include "synctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ctl_hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Hex digits to bytes (malloc'd, caller frees); NULL when not hex. */
unsigned char *ctl_from_hex(const char *s, size_t n, size_t *len) {
  unsigned char *b;
  size_t i;
  if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2, n -= 2;
  if (n % 2) return NULL;
  b = (unsigned char *)malloc(n / 2 + 1);
  if (!b) return NULL;
  for (i = 0; i < n / 2; i++) {
    int h = ctl_hexval(s[2 * i]), l = ctl_hexval(s[2 * i + 1]);
    if (h < 0 || l < 0) {
      free(b);
      return NULL;
    }
    b[i] = (unsigned char)(h * 16 + l);
  }
  *len = n / 2;
  return b;
}

int ctl_parse_i64(const char *s, int64_t *out) {
  char *end;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (!*s || *end || errno) return -1;
  *out = (int64_t)v;
  return 0;
}

int ctl_parse_u64(const char *s, uint64_t *out) {
  char *end;
  unsigned long long v;
  errno = 0;
  if (*s == '-') return -1;
  v = strtoull(s, &end, 10);
  if (!*s || *end || errno) return -1;
  *out = (uint64_t)v;
  return 0;
}

/* KEY as the table's key type wants it. */
int ctl_parse_key(sync_env *env, const char *db, unsigned t, const char *s,
                  ctl_keybuf *k) {
  sync_table_def d;
  sync_env_table_def(env, t, &d);
  if (d.key_type == SYNC_INTEGER) {
    int64_t v;
    if (ctl_parse_i64(s, &v)) {
      ctl_say("%s: table '%s' has integer keys, not '%s'", db, d.name, s);
      return -1;
    }
    sync_key_int(v, k->b);
    k->n = 8;
  } else if (d.key_type == SYNC_BLOB) {
    size_t n;
    unsigned char *b = ctl_from_hex(s, strlen(s), &n);
    if (!b || !n || n > SYNC_MAX_KEY) {
      ctl_say(
          "%s: table '%s' has blob keys: give 1 to %d bytes in hex, not '%s'",
          db, d.name, SYNC_MAX_KEY, s);
      free(b);
      return -1;
    }
    memcpy(k->b, b, n);
    k->n = n;
    free(b);
  } else {
    size_t n = strlen(s);
    if (!n || n > SYNC_MAX_KEY) {
      ctl_say("%s: a key is 1 to %d bytes", db, SYNC_MAX_KEY);
      return -1;
    }
    memcpy(k->b, s, n);
    k->n = n;
  }
  return 0;
}

/* A value for column col from command-line text.  Blob bytes are
 * malloc'd into *hold (caller frees).  Prints why not. */
int ctl_parse_value(const char *db, const sync_table_def *d, unsigned col,
                    const char *s, sync_value *v, unsigned char **hold) {
  const sync_column_def *c = &d->columns[col];
  *hold = NULL;
  if (!strcmp(s, "NULL") && c->type != SYNC_COUNTER) {
    *v = sync_null();
    return 0;
  }
  if (s[0] == '\\') s++;
  switch (c->type) {
  case SYNC_COUNTER:
    ctl_say("%s: column '%s' of '%s' is a counter: change it with 'synctl "
            "add', not put",
            db, c->name, d->name);
    return -1;
  case SYNC_INTEGER: {
    int64_t i;
    if (ctl_parse_i64(s, &i)) {
      ctl_say("%s: column '%s' of '%s' is integer, not '%s'", db, c->name,
              d->name, s);
      return -1;
    }
    *v = sync_int(i);
    return 0;
  }
  case SYNC_REAL: {
    char *end;
    double r = strtod(s, &end);
    if (!*s || *end) {
      ctl_say("%s: column '%s' of '%s' is real, not '%s'", db, c->name, d->name,
              s);
      return -1;
    }
    *v = sync_real(r);
    return 0;
  }
  case SYNC_BLOB: {
    size_t n = 0;
    *hold = ctl_from_hex(s, strlen(s), &n);
    if (!*hold) {
      ctl_say("%s: column '%s' of '%s' is blob: give hex digits, not '%s'", db,
              c->name, d->name, s);
      return -1;
    }
    *v = sync_blob(*hold, n);
    return 0;
  }
  default: *v = sync_text(s, strlen(s)); return 0;
  }
}

int ctl_each_line(const char *path,
                  int (*fn)(void *ctx, char *line, const char *where),
                  void *ctx) {
  FILE *f = fopen(path, "r");
  char line[1024], where[1100];
  int lineno = 0, rc = 0;
  if (!f) {
    ctl_say("%s: %s", path, strerror(errno));
    return -1;
  }
  while (!rc && fgets(line, sizeof line, f)) {
    snprintf(where, sizeof where, "%s:%d", path, ++lineno);
    rc = fn(ctx, line, where);
  }
  fclose(f);
  return rc ? -1 : 0;
}
