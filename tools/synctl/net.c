/*
 * The network words of synctl: which arguments are addresses, the port
 * files serve writes, and the HTTP GET that fetches a server's metrics
 * for 'synctl stats'.  Dialling, listening and the transport are the
 * shared helper's (tools/net/).
 */
#include "synctl.h"

#include "tools/net/net.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ctl_peer_kind(const char *s) {
  char err[400];
  /* A file wins: 'a:1' may be a database in the working directory. */
  if (ctl_file_exists(s)) return 0;
  if (!strncmp(s, "mqtt://", 7) || !strncmp(s, "mqtts://", 8))
    return ctl_check_mqtt_url(s) ? -1 : 2;
  if (!strchr(s, ':')) {
    ctl_usage("'%s' is neither a database file nor an address (HOST:PORT)",
              s);
    return -1;
  }
  if (net_addr_check(s, err, sizeof err)) {
    ctl_usage("%s", err);
    return -1;
  }
  return 1;
}

int ctl_check_address(const char *s) {
  char err[400];
  if (net_addr_check(s, err, sizeof err)) return ctl_usage("%s", err);
  return EX_OK;
}

int ctl_write_port(const char *file, int port) {
  FILE *f;
  char tmp[4096];
  if (!file) return 0;
  /* Written whole, then renamed: a reader never sees half a number. */
  snprintf(tmp, sizeof tmp, "%s.tmp", file);
  f = fopen(tmp, "w");
  if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmp, file)) {
    ctl_say("cannot write %s: %s", file, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Metrics of a running server (synctl stats HOST:PORT)
 * ------------------------------------------------------------------- */
/* A sample's value: an integer when written as one, else a real; the
 * strings "inf", "-inf" and "nan" for what JSON has no number for. */
static json_t *sample_value(const char *s, size_t n) {
  char b[64], *end;
  double d;
  long long i;
  if (n == 0 || n >= sizeof b) return NULL;
  memcpy(b, s, n);
  b[n] = 0;
  if (!strcmp(b, "+Inf") || !strcmp(b, "Inf")) return json_string("inf");
  if (!strcmp(b, "-Inf")) return json_string("-inf");
  if (!strcmp(b, "NaN")) return json_string("nan");
  errno = 0;
  i = strtoll(b, &end, 10);
  if (!*end && !errno) return json_integer((json_int_t)i);
  d = strtod(b, &end);
  return *end || !isfinite(d) ? NULL : json_real(d);
}

/* One sample line of the Prometheus text format, NAME{L="V",...} VALUE
 * [TIMESTAMP], as {name, labels, value}; NULL when it is not one. */
static json_t *sample_json(const char *p) {
  json_t *labels = json_object(), *v;
  size_t n = strcspn(p, "{ ");
  char name[256], lname[256], val[1024];
  if (!labels || !n || n >= sizeof name) goto bad;
  memcpy(name, p, n);
  name[n] = 0;
  p += n;
  if (*p == '{') {
    for (p++; *p && *p != '}';) {
      size_t ln = strcspn(p, "=}"), vn = 0;
      if (p[ln] != '=' || p[ln + 1] != '"' || !ln || ln >= sizeof lname)
        goto bad;
      memcpy(lname, p, ln);
      lname[ln] = 0;
      for (p += ln + 2; *p && *p != '"' && vn + 1 < sizeof val; p++) {
        if (*p == '\\' && p[1])
          p++, val[vn++] = *p == 'n' ? '\n' : *p;
        else
          val[vn++] = *p;
      }
      if (*p++ != '"') goto bad;
      val[vn] = 0;
      json_object_set_new(labels, lname, ctl_json_str(val));
      if (*p == ',') p++;
    }
    if (*p++ != '}') goto bad;
  }
  p += strspn(p, " ");
  if (!(v = sample_value(p, strcspn(p, " \r")))) goto bad;
  return json_pack("{sssoso}", "name", name, "labels", labels, "value", v);
bad:
  json_decref(labels);
  return NULL;
}

/* The metrics text as JSON lines, one per sample. */
static int metrics_json(const char *addr, char *body) {
  char *line, *save = NULL;
  for (line = strtok_r(body, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    json_t *j;
    if (!line[0] || line[0] == '#') continue;
    if (!(j = sample_json(line))) {
      ctl_say("%s: not a metrics line: %.80s", addr, line);
      return EX_FAIL;
    }
    if (ctl_json_print(j)) return EX_FAIL;
  }
  return EX_OK;
}

int ctl_stats_remote(const char *addr, int json) {
  char why[256];
  int fd = net_dial_err(addr, 10, why, sizeof why);
  char req[] = "GET /metrics HTTP/1.0\r\nAccept: text/plain\r\n\r\n";
  char buf[8192], *all = NULL, *body;
  size_t len = 0;
  ssize_t k;
  if (fd < 0) {
    ctl_say("%s", why);
    return EX_FAIL;
  }
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    ctl_say("%s: %s", addr, strerror(errno));
    close(fd);
    return EX_FAIL;
  }
  while ((k = read(fd, buf, sizeof buf)) > 0) {
    char *n = (char *)realloc(all, len + (size_t)k + 1);
    if (!n) break;
    all = n;
    memcpy(all + len, buf, (size_t)k);
    len += (size_t)k;
    all[len] = 0;
  }
  close(fd);
  if (!all || strncmp(all, "HTTP/1.", 7) || !(body = strstr(all, "\r\n\r\n"))) {
    ctl_say("%s: not an HTTP metrics endpoint", addr);
    free(all);
    return EX_FAIL;
  }
  if (strncmp(all + 8, " 200", 4)) {
    ctl_say("%s: the server answered %.*s", addr, (int)strcspn(all, "\r\n"),
            all);
    free(all);
    return EX_FAIL;
  }
  if (json) {
    int rc = metrics_json(addr, body + 4);
    free(all);
    return rc;
  }
  fputs(body + 4, stdout);
  free(all);
  return EX_OK;
}
