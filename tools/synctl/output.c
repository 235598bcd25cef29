/*
 * synctl's output: messages on stderr (say, usage, lib_fail), and values,
 * keys, stamps and sizes as a person reads them on stdout.  The JSON form
 * is json.c's.
 */
#include "synctl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *ctl_cmd = "synctl"; /* the command running, for messages */

/* ---------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------- */
/* "synctl: COMMAND: " and the message, with no newline. */
static void say_v(const char *fmt, va_list ap) {
  fprintf(stderr, "synctl: %s: ", ctl_cmd);
  vfprintf(stderr, fmt, ap);
}

void ctl_say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  say_v(fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* A usage error: the message, then where to read more. */
int ctl_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  say_v(fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'synctl help %s'.\n", ctl_cmd);
  return EX_USAGE;
}

/* A library failure on env: its own words when it has them. */
int ctl_lib_fail(sync_env *env, const char *db, int rc, const char *what) {
  const char *m = env ? sync_env_errmsg(env) : "";
  size_t dl = strlen(db), wl = strlen(what);
  if (!m) m = "";
  /* The library's message may start with the path or with the words of
   * what failed ("commit failed: I/O error"): say each once. */
  if (!strncmp(m, db, dl) && m[dl] == ':' && m[dl + 1] == ' ') m += dl + 2;
  if (!strncmp(m, what, wl) && m[wl] == ':' && m[wl + 1] == ' ') m += wl + 2;
  if (m[0] && strstr(m, sync_strerror(rc)) == NULL)
    ctl_say("%s: %s: %s (%s)", db, what, sync_strerror(rc), m);
  else if (m[0])
    ctl_say("%s: %s: %s", db, what, m);
  else
    ctl_say("%s: %s: %s", db, what, sync_strerror(rc));
  return EX_FAIL;
}

/* Words for a failed write on a row. */
int ctl_write_fail(sync_env *env, const char *db, const sync_table_def *d,
                   int rc) {
  if (rc == SYNC_ECONSTRAINT)
    ctl_say("%s: table '%s': %s", db, d->name,
            sync_env_errmsg(env)[0] ? sync_env_errmsg(env)
                                    : "a notnull column would be NULL");
  else
    ctl_lib_fail(env, db, rc, "write failed");
  return EX_FAIL;
}

/* ---------------------------------------------------------------------
 * Values, keys and stamps for a person
 * ------------------------------------------------------------------- */
void ctl_put_hex(FILE *f, const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

void ctl_hex_str(const uint8_t *p, size_t n, char *out) {
  static const char h[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = h[p[i] >> 4];
    out[2 * i + 1] = h[p[i] & 15];
  }
  out[2 * n] = 0;
}

/* Text for a person: control bytes escaped, the rest as it is. */
static void put_text(FILE *f, const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (p[i] == '\n')
      fputs("\\n", f);
    else if (p[i] == '\t')
      fputs("\\t", f);
    else if (p[i] == '\\')
      fputs("\\\\", f);
    else if (p[i] < 0x20 || p[i] == 0x7f)
      fprintf(f, "\\x%02x", p[i]);
    else
      fputc(p[i], f);
  }
}

/* Display width of what put_text writes (UTF-8 sequences count one). */
static size_t text_width(const unsigned char *p, size_t n) {
  size_t i, w = 0;
  for (i = 0; i < n; i++) {
    if (p[i] == '\n' || p[i] == '\t' || p[i] == '\\')
      w += 2;
    else if (p[i] < 0x20 || p[i] == 0x7f)
      w += 4;
    else if ((p[i] & 0xc0) != 0x80)
      w++;
  }
  return w;
}

/* A REAL as the shortest decimal that reads back to the same double. */
void ctl_fmt_real(double r, char *out, size_t cap) {
  int prec;
  if (!isfinite(r)) {
    snprintf(out, cap, "%s", isnan(r) ? "nan" : r > 0 ? "inf" : "-inf");
    return;
  }
  for (prec = 1; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, r);
    if (strtod(out, NULL) == r) break;
  }
  /* Plain decimals where they are short enough to read: 180.0, not
   * 1.8e+02. */
  if (strchr(out, 'e') && fabs(r) >= 1e-5 && fabs(r) < 1e16) {
    char alt[64];
    for (prec = 0; prec <= 20; prec++) {
      snprintf(alt, sizeof alt, "%.*f", prec, r);
      if (strtod(alt, NULL) == r) {
        snprintf(out, cap, "%s", alt);
        break;
      }
    }
  }
  /* Keep reals recognisable as such in JSON and tables. */
  if (!strpbrk(out, ".eEn")) {
    size_t l = strlen(out);
    if (l + 2 < cap) memcpy(out + l, ".0", 3);
  }
}

/* One value for the aligned forms; returns its width.  f NULL: measure. */
size_t ctl_put_value(FILE *f, const sync_value *v) {
  char b[64];
  switch (v->type) {
  case SYNC_INTEGER: snprintf(b, sizeof b, "%lld", (long long)v->i); break;
  case SYNC_REAL: ctl_fmt_real(v->r, b, sizeof b); break;
  case SYNC_TEXT:
    if (f) put_text(f, (const unsigned char *)v->data, v->len);
    return text_width((const unsigned char *)v->data, v->len);
  case SYNC_BLOB:
    if (f) ctl_put_hex(f, (const unsigned char *)v->data, v->len);
    return 2 * v->len;
  default: snprintf(b, sizeof b, "NULL");
  }
  if (f) fputs(b, f);
  return strlen(b);
}

size_t ctl_put_key(FILE *f, int key_type, const unsigned char *k, size_t n) {
  sync_value v;
  if (key_type == SYNC_INTEGER && n == 8) {
    v = sync_int(sync_key_int_decode(k));
  } else if (key_type == SYNC_BLOB) {
    v = sync_blob(k, n);
  } else {
    v = sync_text((const char *)k, n);
  }
  return ctl_put_value(f, &v);
}

void ctl_key_str(int key_type, const unsigned char *k, size_t n, char *out,
                 size_t cap) {
  FILE *m = fmemopen(out, cap, "w");
  if (!m) {
    snprintf(out, cap, "?");
    return;
  }
  ctl_put_key(m, key_type, k, n);
  fclose(m);
}

/* An HLC as "2026-12-01T18:20:01.123Z+counter". */
void ctl_fmt_hlc(uint64_t hlc, char *out, size_t cap) {
  uint64_t ms = hlc >> 16;
  time_t sec = (time_t)(ms / 1000);
  struct tm tm;
  char b[32];
  if (!hlc) {
    snprintf(out, cap, "-");
    return;
  }
  gmtime_r(&sec, &tm);
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%03uZ+%u", b, (unsigned)(ms % 1000),
           (unsigned)(hlc & 0xffff));
}

void ctl_fmt_bytes(uint64_t n, char *out, size_t cap) {
  if (n < 1024)
    snprintf(out, cap, "%llu B", (unsigned long long)n);
  else if (n < 1024 * 1024)
    snprintf(out, cap, "%.1f KiB", (double)n / 1024);
  else if (n < (uint64_t)1024 * 1024 * 1024)
    snprintf(out, cap, "%.1f MiB", (double)n / 1048576);
  else
    snprintf(out, cap, "%.2f GiB", (double)n / 1073741824.0);
}
