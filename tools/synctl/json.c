/*
 * JSON lines: the writer behind get --json and dump --json, and the
 * minimal reader load uses (one flat object per line).
 */
#include "synctl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ctl_json_str(FILE *f, const unsigned char *p, size_t n) {
  size_t i;
  fputc('"', f);
  for (i = 0; i < n; i++) {
    unsigned char c = p[i];
    if (c == '"')
      fputs("\\\"", f);
    else if (c == '\\')
      fputs("\\\\", f);
    else if (c == '\n')
      fputs("\\n", f);
    else if (c == '\r')
      fputs("\\r", f);
    else if (c == '\t')
      fputs("\\t", f);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

void ctl_json_value(FILE *f, const sync_value *v) {
  char b[64];
  switch (v->type) {
  case SYNC_INTEGER: fprintf(f, "%lld", (long long)v->i); break;
  case SYNC_REAL:
    /* JSON has no NaN or infinity: they go as the strings "nan", "-nan",
     * "inf" and "-inf", which a real column reads back (null would come
     * back as NULL). */
    if (isnan(v->r))
      fputs(signbit(v->r) ? "\"-nan\"" : "\"nan\"", f);
    else if (isinf(v->r))
      fputs(v->r > 0 ? "\"inf\"" : "\"-inf\"", f);
    else {
      ctl_fmt_real(v->r, b, sizeof b);
      fputs(b, f);
    }
    break;
  case SYNC_TEXT:
    ctl_json_str(f, (const unsigned char *)v->data, v->len);
    break;
  case SYNC_BLOB:
    fputc('"', f);
    ctl_put_hex(f, (const unsigned char *)v->data, v->len);
    fputc('"', f);
    break;
  default: fputs("null", f);
  }
}

void ctl_json_key(FILE *f, int key_type, const unsigned char *k, size_t n) {
  sync_value v;
  if (key_type == SYNC_INTEGER && n == 8)
    v = sync_int(sync_key_int_decode(k));
  else if (key_type == SYNC_BLOB)
    v = sync_blob(k, n);
  else
    v = sync_text((const char *)k, n);
  ctl_json_value(f, &v);
}

/* One row as a JSON object on a line of its own: the key under "key",
 * then the columns by name. */
void ctl_json_row(const sync_table_def *d, const void *key, size_t klen,
                  const sync_value *vals) {
  unsigned i;
  printf("{\"key\":");
  ctl_json_key(stdout, d->key_type, (const unsigned char *)key, klen);
  for (i = 0; i < d->ncolumns; i++) {
    printf(",");
    ctl_json_str(stdout, (const unsigned char *)d->columns[i].name,
                 strlen(d->columns[i].name));
    printf(":");
    ctl_json_value(stdout, &vals[i]);
  }
  printf("}\n");
}

/* ---------------------------------------------------------------------
 * The reader
 * ------------------------------------------------------------------- */
void ctl_jws(ctl_jrd *r) {
  while (r->p < r->end &&
         (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n'))
    r->p++;
}

static void put_utf8(char **o, unsigned long cp) {
  unsigned char *q = (unsigned char *)*o;
  if (cp < 0x80)
    *q++ = (unsigned char)cp;
  else if (cp < 0x800)
    *q++ = (unsigned char)(0xc0 | (cp >> 6)),
    *q++ = (unsigned char)(0x80 | (cp & 63));
  else if (cp < 0x10000)
    *q++ = (unsigned char)(0xe0 | (cp >> 12)),
    *q++ = (unsigned char)(0x80 | ((cp >> 6) & 63)),
    *q++ = (unsigned char)(0x80 | (cp & 63));
  else
    *q++ = (unsigned char)(0xf0 | (cp >> 18)),
    *q++ = (unsigned char)(0x80 | ((cp >> 12) & 63)),
    *q++ = (unsigned char)(0x80 | ((cp >> 6) & 63)),
    *q++ = (unsigned char)(0x80 | (cp & 63));
  *o = (char *)q;
}

static int hex4(const char *p, unsigned long *out) {
  int i;
  *out = 0;
  for (i = 0; i < 4; i++) {
    int h = ctl_hexval(p[i]);
    if (h < 0) return -1;
    *out = *out * 16 + (unsigned long)h;
  }
  return 0;
}

/* A string at r->p ('"' first), unescaped in place into out (room for
 * the same length); returns its length, or -1. */
long ctl_jstr(ctl_jrd *r, char *out) {
  char *o = out;
  if (r->p >= r->end || *r->p != '"') return -1;
  r->p++;
  while (r->p < r->end && *r->p != '"') {
    char c = *r->p++;
    if ((unsigned char)c < 0x20) return -1;
    if (c != '\\') {
      *o++ = c;
      continue;
    }
    if (r->p >= r->end) return -1;
    c = *r->p++;
    switch (c) {
    case '"':
    case '\\':
    case '/': *o++ = c; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      unsigned long cp, lo;
      if (r->end - r->p < 4 || hex4(r->p, &cp)) return -1;
      r->p += 4;
      if (cp >= 0xd800 && cp < 0xdc00) {
        if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' ||
            hex4(r->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
          return -1;
        r->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      put_utf8(&o, cp);
      break;
    }
    default: return -1;
    }
  }
  if (r->p >= r->end) return -1;
  r->p++;
  return (long)(o - out);
}

int ctl_jvalue(ctl_jrd *r, char *scratch, ctl_jval *v) {
  ctl_jws(r);
  memset(v, 0, sizeof *v);
  if (r->p >= r->end) return -1;
  if (*r->p == '"') {
    long n = ctl_jstr(r, scratch);
    if (n < 0) return -1;
    v->kind = 2;
    v->s = scratch;
    v->n = (size_t)n;
    return 0;
  }
  if (r->end - r->p >= 4 && !strncmp(r->p, "null", 4))
    return r->p += 4, v->kind = 0, 0;
  if (r->end - r->p >= 4 && !strncmp(r->p, "true", 4))
    return r->p += 4, v->kind = 3, 0;
  if (r->end - r->p >= 5 && !strncmp(r->p, "false", 5))
    return r->p += 5, v->kind = 4, 0;
  {
    /* RFC 8259's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
     * and nothing else ('+1' and '01' are not numbers). */
    const char *q = r->p, *e = r->end;
    int is_int = 1;
    if (q < e && *q == '-') q++;
    if (q < e && *q == '0')
      q++;
    else if (q < e && *q >= '1' && *q <= '9')
      while (q < e && *q >= '0' && *q <= '9') q++;
    else
      goto bad_number;
    if (q < e && *q == '.') {
      is_int = 0;
      if (++q >= e || *q < '0' || *q > '9') goto bad_number;
      while (q < e && *q >= '0' && *q <= '9') q++;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
      is_int = 0;
      if (++q < e && (*q == '+' || *q == '-')) q++;
      if (q >= e || *q < '0' || *q > '9') goto bad_number;
      while (q < e && *q >= '0' && *q <= '9') q++;
    }
    if (q < e && strchr("+-.eE0123456789", *q)) goto bad_number;
    v->kind = 1;
    v->s = r->p;
    v->n = (size_t)(q - r->p);
    v->is_int = is_int;
    r->p = q;
    return 0;
  bad_number:
    while (q < e && strchr("+-.eE0123456789", *q)) q++;
    if (q > r->p)
      snprintf(r->err, sizeof r->err, "'%.*s' is not a JSON number",
               (int)(q - r->p > 40 ? 40 : q - r->p), r->p);
    return -1;
  }
}

/* The value of column c from JSON; blob bytes into hold (caller frees). */
int ctl_jto_value(const sync_column_def *c, const ctl_jval *jv, sync_value *out,
                  unsigned char **hold, char *err, size_t errcap) {
  char num[64];
  *hold = NULL;
  if (jv->kind == 0) {
    *out = sync_null();
    return 0;
  }
  if (jv->kind == 1) {
    if (jv->n >= sizeof num) goto bad;
    memcpy(num, jv->s, jv->n);
    num[jv->n] = 0;
  }
  switch (c->type) {
  case SYNC_INTEGER: {
    int64_t i;
    if (jv->kind == 3 || jv->kind == 4) {
      *out = sync_int(jv->kind == 3);
      return 0;
    }
    if (jv->kind != 1 || !jv->is_int || ctl_parse_i64(num, &i)) goto bad;
    *out = sync_int(i);
    return 0;
  }
  case SYNC_REAL: {
    char *end;
    double r;
    if (jv->kind == 2) { /* the non-finite values, as the writer puts them */
      static const struct {
        const char *s;
        int sign, nan;
      } nf[] = {{"inf", 1, 0}, {"-inf", -1, 0}, {"nan", 1, 1}, {"-nan", -1, 1}};
      size_t k;
      for (k = 0; k < sizeof nf / sizeof nf[0]; k++)
        if (jv->n == strlen(nf[k].s) && !memcmp(jv->s, nf[k].s, jv->n)) {
          r = nf[k].nan ? NAN : INFINITY;
          *out = sync_real(nf[k].sign < 0 ? -r : r);
          return 0;
        }
      goto bad;
    }
    if (jv->kind != 1) goto bad;
    r = strtod(num, &end);
    if (*end) goto bad;
    if (isinf(r)) { /* 1e999 is not infinity: it is out of range */
      snprintf(err, errcap, "column '%s': %s is out of the range of a real",
               c->name, num);
      return -1;
    }
    *out = sync_real(r);
    return 0;
  }
  case SYNC_TEXT:
    if (jv->kind != 2) goto bad;
    *out = sync_text(jv->s, jv->n);
    return 0;
  default: {
    size_t n = 0;
    if (jv->kind != 2 || !(*hold = ctl_from_hex(jv->s, jv->n, &n))) goto bad;
    *out = sync_blob(*hold, n);
    return 0;
  }
  }
bad:
  snprintf(err, errcap, "column '%s' is %s%s", c->name, ctl_type_name(c->type),
           c->type == SYNC_BLOB   ? " (a string of hex digits)"
           : c->type == SYNC_REAL ? " (a number, or \"inf\", \"-inf\", "
                                    "\"nan\")"
           : c->type == SYNC_INTEGER
               ? " (a whole number from -2^63 to 2^63-1)"
               : "");
  return -1;
}
