/*
 * pg-bridge: keep PostgreSQL tables and the replica in step, both ways
 * (tools/pgbridge/, docs/PGBRIDGE.md).  This file is the command: options,
 * the loop, the progress line and the Prometheus metrics.
 */
#include "synctl.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/net/net.h"
#include "tools/pgbridge/pgbridge.h"

const ctl_help ctl_help_pg_bridge = {
    "synctl pg-bridge DB CONNINFO [--once] [--state FILE] [--batch N]\n"
    "       [--audit] [--interval MS] [--metrics ADDRESS]\n"
    "       [--metrics-port-file FILE] [--quiet]",
    "keep PostgreSQL tables and the replica in step, both ways",
    "CONNINFO is a libpq connection string or a postgresql:// URI.  For\n"
    "each table of DB a PostgreSQL table of the same name is created if\n"
    "absent (\"key\" as the primary key; INTEGER -> bigint, REAL -> double\n"
    "precision, TEXT -> text, BLOB -> bytea, COUNTER -> bigint, its sum,\n"
    "with a column _sync_others_N beside it), or checked: a column missing\n"
    "or of another type is an error that names both types.  Every change\n"
    "committed on DB (local or from devices) is written to PostgreSQL in\n"
    "batches of --batch rows (default 5000), each in one transaction with\n"
    "the bridge's cursor (table _sync_bridge), so a crash loses or repeats\n"
    "nothing.  Rows that PostgreSQL clients insert, update or delete are\n"
    "captured by a trigger into _sync_outbox and written to DB as the\n"
    "writes of the bridge's own site (its replica is --state, default\n"
    "DB.pgbridge), stamped at capture; devices get them by the normal sync\n"
    "and conflicts with device writes land in DB's conflict log.  TRUNCATE\n"
    "is captured as a delete of each row the table held.  The bridge's own\n"
    "writes to PostgreSQL are not captured.  A client's change of a\n"
    "counter reaches DB as an add of the difference, so adds made meanwhile\n"
    "on devices count too (docs/PGBRIDGE.md, \"Counters\").  --audit adds the\n"
    "columns _sync_stamp (the newest HLC of the row) and _sync_site (the\n"
    "site that wrote it).\n\n"
    "--once catches up and exits (1 on failure, with PostgreSQL's words).\n"
    "Otherwise it runs until SIGINT or SIGTERM, every --interval ms\n"
    "(default 200) when idle, reconnecting to PostgreSQL when it goes\n"
    "away; errors are printed as they change.  On a terminal a progress\n"
    "line shows the rows moved and the lag.  --metrics ADDRESS serves\n"
    "Prometheus text (GET /metrics): rows moved each way, batches, errors,\n"
    "lag in rows and seconds.  DB may be served by 'synctl serve' at the\n"
    "same time.\n"};

static volatile sig_atomic_t pg_stop;
static void on_signal(int sig) {
  (void)sig;
  pg_stop = 1;
}

static void metrics_text(const pgb_stats *s, char *out, size_t cap) {
  snprintf(out, cap,
           "# HELP sync_pgbridge_rows_total Rows moved, by direction.\n"
           "# TYPE sync_pgbridge_rows_total counter\n"
           "sync_pgbridge_rows_total{direction=\"to_pg\"} %llu\n"
           "sync_pgbridge_rows_total{direction=\"to_replica\"} %llu\n"
           "# HELP sync_pgbridge_batches_total PostgreSQL transactions "
           "committed.\n"
           "# TYPE sync_pgbridge_batches_total counter\n"
           "sync_pgbridge_batches_total %llu\n"
           "# HELP sync_pgbridge_errors_total Steps that failed.\n"
           "# TYPE sync_pgbridge_errors_total counter\n"
           "sync_pgbridge_errors_total %llu\n"
           "# HELP sync_pgbridge_lag_rows Rows waiting to cross, both ways.\n"
           "# TYPE sync_pgbridge_lag_rows gauge\n"
           "sync_pgbridge_lag_rows %llu\n"
           "# HELP sync_pgbridge_lag_seconds Age of the oldest row waiting.\n"
           "# TYPE sync_pgbridge_lag_seconds gauge\n"
           "sync_pgbridge_lag_seconds %.3f\n"
           "# HELP sync_pgbridge_connected 1 while PostgreSQL is connected.\n"
           "# TYPE sync_pgbridge_connected gauge\n"
           "sync_pgbridge_connected %d\n",
           (unsigned long long)s->to_pg_rows,
           (unsigned long long)s->to_replica_rows,
           (unsigned long long)s->batches, (unsigned long long)s->errors,
           (unsigned long long)s->lag_rows, s->lag_s, s->connected);
}

/* Answer one scraper: read its request (briefly), write the metrics. */
static void metrics_serve(int lfd, pgb_bridge *b) {
  char req[2048], body[2048], head[128];
  struct pollfd p;
  pgb_stats s;
  int fd = net_accept(lfd), n;
  if (fd < 0) return;
  p.fd = fd;
  p.events = POLLIN;
  if (poll(&p, 1, 1000) == 1 && (n = (int)read(fd, req, sizeof req - 1)) > 0) {
    req[n] = 0;
    pgb_stats_get(b, &s);
    metrics_text(&s, body, sizeof body);
    n = snprintf(head, sizeof head,
                 "HTTP/1.0 200 OK\r\nContent-Type: text/plain; "
                 "version=0.0.4\r\nContent-Length: %zu\r\n\r\n",
                 strlen(body));
    if (write(fd, head, (size_t)n) == n) {
      ssize_t w = write(fd, body, strlen(body));
      (void)w;
    }
  }
  close(fd);
}

static int tty_line(void) {
  const char *term = getenv("TERM"), *nc = getenv("NO_COLOR");
  if (!isatty(2) || (nc && nc[0])) return 0;
  return term && term[0] && strcmp(term, "dumb") != 0;
}

static void progress(pgb_bridge *b) {
  pgb_stats s;
  pgb_stats_get(b, &s);
  fprintf(stderr,
          "\r\033[Kto postgres %llu rows  to replica %llu rows  lag %llu "
          "rows %.1f s  batches %llu  errors %llu%s",
          (unsigned long long)s.to_pg_rows,
          (unsigned long long)s.to_replica_rows,
          (unsigned long long)s.lag_rows, s.lag_s,
          (unsigned long long)s.batches, (unsigned long long)s.errors,
          s.connected ? "" : "  (postgres down)");
}

/* Wait up to ms for a scraper (or just sleep). */
static void idle(int lfd, pgb_bridge *b, int ms) {
  struct pollfd p;
  if (lfd < 0) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return;
  }
  p.fd = lfd;
  p.events = POLLIN;
  if (poll(&p, 1, ms) == 1) metrics_serve(lfd, b);
}

static int bridge_loop(pgb_bridge *b, int lfd, int interval, int quiet) {
  char last[600] = "";
  int tty = !quiet && tty_line();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  while (!pg_stop) {
    uint64_t moved = 0;
    int rc = pgb_step(b, &moved);
    if (rc && strcmp(last, pgb_errmsg(b))) {
      snprintf(last, sizeof last, "%s", pgb_errmsg(b));
      if (tty) fputc('\n', stderr);
      ctl_say("%s (retrying)", last);
    } else if (!rc && last[0]) {
      last[0] = 0;
      if (tty) fputc('\n', stderr);
      ctl_say("working again");
    }
    if (tty) progress(b);
    if (rc) idle(lfd, b, 1000);
    else if (!moved) idle(lfd, b, interval);
    else if (lfd >= 0) idle(lfd, b, 0);
  }
  if (tty) fputc('\n', stderr);
  return EX_OK;
}

int ctl_cmd_pg_bridge(int argc, char **argv) {
  pgb_opts o;
  pgb_bridge *b = NULL;
  const char *maddr = NULL, *mportfile = NULL;
  uint64_t n;
  int i, once = 0, quiet = 0, interval = 200, lfd = -1, rc;
  memset(&o, 0, sizeof o);
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (ctl_opt(i, a, "--once"))
      once = 1;
    else if (ctl_opt(i, a, "--audit"))
      o.audit = 1;
    else if (ctl_opt(i, a, "--quiet"))
      quiet = 1;
    else if (ctl_opt(i, a, "--state") && more)
      o.state = argv[++i];
    else if (ctl_opt(i, a, "--metrics") && more)
      maddr = argv[++i];
    else if (ctl_opt(i, a, "--metrics-port-file") && more)
      mportfile = argv[++i];
    else if (ctl_opt(i, a, "--batch") && more) {
      if (ctl_parse_u64(argv[++i], &n) || n < 1 || n > 1000000)
        return ctl_usage("--batch takes 1 to 1000000 rows");
      o.batch_rows = (size_t)n;
    } else if (ctl_opt(i, a, "--interval") && more) {
      if (ctl_parse_u64(argv[++i], &n) || n < 1 || n > 600000)
        return ctl_usage("--interval takes 1 to 600000 ms");
      interval = (int)n;
    } else if (ctl_is_opt(i, a))
      return ctl_usage("unknown option '%s' (or it needs a value)", a);
    else if (!o.db)
      o.db = a;
    else if (!o.conninfo)
      o.conninfo = a;
    else
      return ctl_usage("too many arguments");
  }
  if (!o.db || !o.conninfo)
    return ctl_usage("give DB and a PostgreSQL connection string");
  if (maddr && ctl_check_address(maddr)) return EX_USAGE;
  if (!ctl_file_exists(o.db)) {
    ctl_say("%s: no such database (make one with 'synctl init')", o.db);
    return EX_FAIL;
  }
  if ((rc = pgb_open(&o, &b))) {
    ctl_say("%s", b ? pgb_errmsg(b) : sync_strerror(rc));
    pgb_close(b);
    return EX_FAIL;
  }
  if (once) {
    pgb_stats s;
    rc = pgb_catch_up(b);
    if (rc) ctl_say("%s", pgb_errmsg(b));
    pgb_stats_get(b, &s);
    if (!rc && !quiet)
      printf("pg-bridge: %llu rows to postgres, %llu to the replica, %llu "
             "batches\n",
             (unsigned long long)s.to_pg_rows,
             (unsigned long long)s.to_replica_rows,
             (unsigned long long)s.batches);
    pgb_close(b);
    return rc ? EX_FAIL : EX_OK;
  }
  if (maddr) {
    char err[256];
    int port = 0;
    if ((lfd = net_listen(maddr, &port, err, sizeof err)) < 0) {
      ctl_say("metrics: %s", err);
      pgb_close(b);
      return EX_FAIL;
    }
    if (mportfile && ctl_write_port(mportfile, port)) {
      close(lfd);
      pgb_close(b);
      return EX_FAIL;
    }
    if (!quiet) printf("pg-bridge: metrics on port %d\n", port);
    fflush(stdout);
  }
  rc = bridge_loop(b, lfd, interval, quiet);
  if (lfd >= 0) close(lfd);
  pgb_close(b);
  return rc;
}
