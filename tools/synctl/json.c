/*
 * JSON through jansson: values, keys and rows as JSON values (get, dump
 * and every --json output), one document per line on stdout, and the
 * values of a row read back for load.
 *
 * What JSON cannot say directly keeps a string or object form, the same
 * both ways:
 *   - a real that is not finite: the strings "inf", "-inf", "nan" and
 *     "-nan" (jansson, like JSON, has no such numbers; null would come
 *     back as NULL);
 *   - a blob: a string of hex digits;
 *   - a text that is not UTF-8: {"hex": "HEX"}, its bytes in hex (a JSON
 *     string holds Unicode, and jansson refuses anything else).  Text
 *     with NUL bytes is a string with \u0000 in it.
 * Integers are json_int_t (64 bits) and come back exact.  A real prints
 * with as many digits as the row's reals need to read back to the same
 * double, and no more (0.1, not 0.10000000000000001).
 */
#include "synctl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------
 * The writer
 * ------------------------------------------------------------------- */
/* n bytes as a JSON string of hex digits. */
static json_t *hex_string(const unsigned char *p, size_t n) {
  char *h = (char *)malloc(2 * n + 1);
  json_t *j;
  if (!h) return NULL;
  ctl_hex_str(p, n, h);
  j = json_stringn(h, 2 * n);
  free(h);
  return j;
}

json_t *ctl_json_of(const sync_value *v) {
  switch (v->type) {
  case SYNC_INTEGER: return json_integer((json_int_t)v->i);
  case SYNC_REAL:
    if (isnan(v->r)) return json_string(signbit(v->r) ? "-nan" : "nan");
    if (isinf(v->r)) return json_string(v->r > 0 ? "inf" : "-inf");
    return json_real(v->r);
  case SYNC_TEXT: {
    /* json_stringn checks UTF-8 (NUL bytes are fine) and says no
     * otherwise. */
    json_t *j = json_stringn((const char *)v->data, v->len);
    if (j) return j;
    return json_pack("{so}", "hex",
                     hex_string((const unsigned char *)v->data, v->len));
  }
  case SYNC_BLOB: return hex_string((const unsigned char *)v->data, v->len);
  default: return json_null();
  }
}

json_t *ctl_json_key(int key_type, const unsigned char *k, size_t n) {
  sync_value v;
  if (key_type == SYNC_INTEGER && n == 8)
    v = sync_int(sync_key_int_decode(k));
  else if (key_type == SYNC_BLOB)
    v = sync_blob(k, n);
  else
    v = sync_text((const char *)k, n);
  return ctl_json_of(&v);
}

json_t *ctl_json_str(const char *s) {
  json_t *j = json_stringn(s, strlen(s));
  return j ? j
           : json_pack("{so}", "hex",
                       hex_string((const unsigned char *)s, strlen(s)));
}

/* The digits r needs to read back as itself; at least those of its
 * integer part, so that 180 prints as 180.0 and not 1.8e2. */
static int real_digits(double r) {
  char b[40];
  int p;
  for (p = 1; p < 17; p++) {
    snprintf(b, sizeof b, "%.*g", p, r);
    if (strtod(b, NULL) == r) break;
  }
  if (fabs(r) < 1e17) {
    int ip = 1;
    double x;
    for (x = fabs(r); x >= 10; x /= 10) ip++;
    if (ip > p) p = ip;
  }
  return p;
}

/* The most digits a real in j needs. */
static int digits_needed(json_t *j) {
  int p = 1, q;
  if (json_is_real(j)) return real_digits(json_real_value(j));
  if (json_is_object(j)) {
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) if ((q = digits_needed(v)) > p) p = q;
  } else if (json_is_array(j)) {
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) if ((q = digits_needed(v)) > p) p = q;
  }
  return p;
}

int ctl_json_print(json_t *j) {
  int rc = -1;
  if (j)
    rc = json_dumpf(j, stdout,
                    JSON_COMPACT | JSON_ENCODE_ANY |
                        JSON_REAL_PRECISION(digits_needed(j)));
  if (rc == 0) putchar('\n');
  json_decref(j);
  if (rc) ctl_say("cannot write JSON (out of memory)");
  return rc ? EX_FAIL : EX_OK;
}

/* One row: the key under "key", then the columns by name. */
json_t *ctl_json_row(const sync_table_def *d, const void *key, size_t klen,
                     const sync_value *vals) {
  json_t *o = json_object();
  unsigned i;
  int bad;
  if (!o) return NULL;
  bad = json_object_set_new(
      o, "key", ctl_json_key(d->key_type, (const unsigned char *)key, klen));
  for (i = 0; !bad && i < d->ncolumns; i++)
    bad = json_object_set_new(o, d->columns[i].name, ctl_json_of(&vals[i]));
  if (bad) json_decref(o); /* out of memory */
  return bad ? NULL : o;
}

/* ---------------------------------------------------------------------
 * The reader
 * ------------------------------------------------------------------- */
/* The bytes of a {"hex": "..."} text, malloc'd into *hold; NULL when j
 * is not one. */
static unsigned char *hex_text(json_t *j, size_t *n) {
  json_t *h;
  if (!json_is_object(j) || json_object_size(j) != 1 ||
      !json_is_string(h = json_object_get(j, "hex")))
    return NULL;
  return ctl_from_hex(json_string_value(h), json_string_length(h), n);
}

int ctl_json_text(json_t *j, char **out, size_t *n, unsigned char **hold) {
  *hold = NULL;
  if (json_is_string(j)) {
    *out = (char *)json_string_value(j);
    *n = json_string_length(j);
    return 0;
  }
  if (!(*hold = hex_text(j, n))) return -1;
  *out = (char *)*hold;
  return 0;
}

/* The value of column c from JSON; blob bytes into hold (caller frees).
 * A counter's is the value to bring it to, an INTEGER (NULL: leave it
 * as it is); the caller turns it into an add. */
int ctl_json_to_value(const sync_column_def *c, json_t *j, sync_value *out,
                      unsigned char **hold, char *err, size_t errcap) {
  *hold = NULL;
  if (json_is_null(j)) {
    *out = sync_null();
    return 0;
  }
  switch (c->type) {
  case SYNC_COUNTER:
    if (!json_is_integer(j)) goto bad;
    *out = sync_int((int64_t)json_integer_value(j));
    return 0;
  case SYNC_INTEGER:
    if (json_is_boolean(j)) {
      *out = sync_int(json_is_true(j));
      return 0;
    }
    if (!json_is_integer(j)) goto bad;
    *out = sync_int((int64_t)json_integer_value(j));
    return 0;
  case SYNC_REAL:
    if (json_is_string(j)) { /* the non-finite values, as written */
      static const struct {
        const char *s;
        int sign, nan;
      } nf[] = {{"inf", 1, 0}, {"-inf", -1, 0}, {"nan", 1, 1}, {"-nan", -1, 1}};
      size_t k;
      for (k = 0; k < sizeof nf / sizeof nf[0]; k++)
        if (!strcmp(json_string_value(j), nf[k].s) &&
            json_string_length(j) == strlen(nf[k].s)) {
          double r = nf[k].nan ? NAN : INFINITY;
          *out = sync_real(nf[k].sign < 0 ? -r : r);
          return 0;
        }
      goto bad;
    }
    if (!json_is_number(j)) goto bad;
    *out = sync_real(json_number_value(j));
    return 0;
  case SYNC_TEXT: {
    char *s;
    size_t n;
    if (ctl_json_text(j, &s, &n, hold)) goto bad;
    *out = sync_text(s, n);
    return 0;
  }
  default: {
    size_t n = 0;
    if (!json_is_string(j) ||
        !(*hold =
              ctl_from_hex(json_string_value(j), json_string_length(j), &n)))
      goto bad;
    *out = sync_blob(*hold, n);
    return 0;
  }
  }
bad:
  snprintf(err, errcap, "column '%s' is %s%s", c->name, ctl_type_name(c->type),
           c->type == SYNC_BLOB   ? " (a string of hex digits)"
           : c->type == SYNC_REAL ? " (a number, or \"inf\", \"-inf\", "
                                    "\"nan\")"
           : c->type == SYNC_INTEGER || c->type == SYNC_COUNTER
               ? " (a whole number from -2^63 to 2^63-1)"
           : c->type == SYNC_TEXT ? " (a string, or {\"hex\": HEX})"
                                  : "");
  return -1;
}
