/*
 * Commands that meet another replica: serve (the loop is server.c's),
 * sync, repair and diff, with a server over TCP or with another file in
 * this process.  Each command's manual page stands above it.
 */
#include "synctl.h"

#include "tools/net/net.h"
#include "tools/net/tls.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------
 * serve
 * ------------------------------------------------------------------- */
const ctl_help ctl_help_serve = {
    "synctl serve DB ADDRESS [--credentials FILE] [--metrics ADDRESS]\n"
    "       [--port-file FILE] [--metrics-port-file FILE] [--sessions N] "
    "[--quiet]\n"
    "       [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n"
    "       [--peer ADDRESS]... [--peers FILE] [--peer-interval SECONDS]\n"
    "       [--peer-token T] [--tls-ca FILE]\n"
    "synctl serve DB --mqtt [mqtt[s]://]BROKER[:PORT][/PREFIX] [--topic PREFIX]\n"
    "       [--share GROUP] [--credentials FILE] [--sessions N] [--quiet]\n"
    "       [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]",
    "serve the database to peers over TCP, TLS or MQTT",
    "Listens on ADDRESS (HOST:PORT; port 0 picks a free one, written to\n"
    "--port-file) and answers sync sessions from any number of clients at\n"
    "once ('synctl sync', devices).  --credentials FILE maps tokens to\n"
    "rights, one client per line:\n\n"
    "    TOKEN read=TABLE[,TABLE...] write=TABLE[,...] [relay] [site=HEX32]\n"
    "          [where=COLUMN=VALUE]\n\n"
    "('*' for every table; site= refuses the token to any replica but the\n"
    "one with that site id; where= limits what the client receives to the\n"
    "rows whose COLUMN holds VALUE, in the tables with such a column: a\n"
    "row whose value changes leaves the client or comes to it, and a\n"
    "changed file takes effect at each client's next sync); without it\n"
    "every client may read and write everything.  --metrics ADDRESS serves the "
    "server's stats as\n"
    "Prometheus text on plain HTTP (GET /metrics).  --sessions N stops\n"
    "after N sessions; otherwise it runs until SIGINT or SIGTERM.\n"
    "--tls-cert and --tls-key (PEM) make every session TLS; with\n"
    "--tls-client-ca a client must also show a certificate signed by one\n"
    "of that file's CAs, or is refused before its session starts.  The\n"
    "token stays what --credentials judges.\n"
    "--peer ADDRESS (repeated, or --peers FILE with one address a line)\n"
    "names other servers, each a full replica of the same schema: this\n"
    "server syncs with each of them every --peer-interval seconds (10)\n"
    "and at once after a session brought rows, so that a device may sync\n"
    "with any of them (docs/SYNCTL.md, \"A mesh of servers\").\n"
    "--peer-token is the token shown to peers that check credentials (it\n"
    "needs relay there).  With TLS, peers are dialled over TLS too, their\n"
    "certificates checked against --tls-ca.\n"
    "With --mqtt it serves devices through an MQTT broker instead (port\n"
    "1883 by default): it subscribes to PREFIX/+/up (--topic or the path\n"
    "of --mqtt, default 'sync') and answers each device on\n"
    "PREFIX/DEVICE/down, a session per device; --share GROUP subscribes\n"
    "as $share/GROUP/... so that several servers split the devices\n"
    "(docs/MQTT.md says what the broker must do).\n"
    "With mqtts://BROKER (port 8883 by default) it reaches the broker over\n"
    "TLS: --tls-ca FILE (required) checks the broker's certificate, and\n"
    "--tls-cert and --tls-key give the certificate it shows to a broker\n"
    "that requires one.\n"};

/* --peers FILE: one address a line ('#' comments). */
static int peers_line(void *ctx, char *line, const char *where) {
  ctl_serve_opts *o = (ctl_serve_opts *)ctx;
  char *a = line + strspn(line, " \t");
  a[strcspn(a, " \t\r\n#")] = 0;
  if (!*a) return 0;
  if (o->npeers == 32) {
    ctl_say("%s: more than 32 peers", where);
    return -1;
  }
  if (ctl_check_address(a) != EX_OK) return -1;
  if (!(o->peers[o->npeers] = strdup(a))) return -1;
  o->npeers++;
  return 0;
}

int ctl_cmd_serve(int argc, char **argv) {
  ctl_serve_opts o;
  int i;
  memset(&o, 0, sizeof o);
  o.max_sessions = -1;
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (ctl_opt(i, a, "--credentials") && more)
      o.credfile = argv[++i];
    else if (ctl_opt(i, a, "--metrics") && more)
      o.maddr = argv[++i];
    else if (ctl_opt(i, a, "--port-file") && more)
      o.portfile = argv[++i];
    else if (ctl_opt(i, a, "--metrics-port-file") && more)
      o.mportfile = argv[++i];
    else if (ctl_opt(i, a, "--sessions") && more) {
      uint64_t n;
      if (ctl_parse_u64(argv[++i], &n))
        return ctl_usage("--sessions needs a number");
      o.max_sessions = (long)n;
    } else if (ctl_opt(i, a, "--tls-cert") && more)
      o.tls_cert = argv[++i];
    else if (ctl_opt(i, a, "--tls-key") && more)
      o.tls_key = argv[++i];
    else if (ctl_opt(i, a, "--tls-ca") && more)
      o.tls_ca = argv[++i];
    else if (ctl_opt(i, a, "--tls-client-ca") && more)
      o.tls_client_ca = argv[++i];
    else if (ctl_opt(i, a, "--peer") && more) {
      if (o.npeers == 32) return ctl_usage("at most 32 peers");
      if (ctl_check_address(argv[i + 1]) != EX_OK) return EX_USAGE;
      o.peers[o.npeers++] = argv[++i];
    } else if (ctl_opt(i, a, "--peers") && more) {
      if (ctl_each_line(argv[++i], peers_line, &o)) return EX_USAGE;
    } else if (ctl_opt(i, a, "--peer-interval") && more) {
      uint64_t n;
      if (ctl_parse_u64(argv[++i], &n) || n < 1 || n > 86400)
        return ctl_usage("--peer-interval takes 1 to 86400 seconds");
      o.peer_interval = (unsigned)n;
    } else if (ctl_opt(i, a, "--peer-token") && more)
      o.peer_token = argv[++i];
    else if (ctl_opt(i, a, "--quiet"))
      o.quiet = 1;
    else if (ctl_opt(i, a, "--mqtt") && more)
      o.mqtt = argv[++i];
    else if (ctl_opt(i, a, "--topic") && more)
      o.topic = argv[++i];
    else if (ctl_opt(i, a, "--share") && more)
      o.share = argv[++i];
    else if (ctl_is_opt(i, a))
      return ctl_usage("unknown option '%s' (or it needs a value)", a);
    else if (!o.db)
      o.db = a;
    else if (!o.addr)
      o.addr = a;
    else
      return ctl_usage("too many arguments");
  }
  if (o.mqtt && o.db && !o.addr) return ctl_serve_mqtt(&o);
  if (o.mqtt) return ctl_usage("give DB and --mqtt BROKER, or DB and HOST:PORT");
  if (!o.db || !o.addr) return ctl_usage("give DB and HOST:PORT");
  if (ctl_check_address(o.addr) || (o.maddr && ctl_check_address(o.maddr)))
    return EX_USAGE;
  if (o.tls_client_ca && !o.tls_cert)
    return ctl_usage("--tls-client-ca needs --tls-cert and --tls-key");
  if (o.npeers && o.tls_cert && !o.tls_ca)
    return ctl_usage("--peer over TLS needs --tls-ca (the CAs of the peers' "
                     "certificates)");
  return ctl_serve(&o);
}

/* ---------------------------------------------------------------------
 * What sync, repair and diff share
 * ------------------------------------------------------------------- */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A step failed and its words are out already (or none are due): library
 * codes are 0 or negative. */
#define SAID 1

/* The arguments sync, repair and diff take alike. */
typedef struct peer_args {
  const char *db, *other, *tables, *token;
  uint64_t maxmsg;
  int json;
} peer_args;

/* argv[*i] (and its value, moving *i past it) into pa.  EX_OK, or the
 * exit status of a usage error (said). */
static int peer_arg(int argc, char **argv, int *i, peer_args *pa) {
  const char *a = argv[*i];
  int more = *i + 1 < argc;
  if (ctl_opt(*i, a, "--tables") && more)
    pa->tables = argv[++*i];
  else if (ctl_opt(*i, a, "--token") && more)
    pa->token = argv[++*i];
  else if (ctl_opt(*i, a, "--json"))
    pa->json = 1;
  else if (ctl_opt(*i, a, "--max-message") && more) {
    if (ctl_parse_u64(argv[++*i], &pa->maxmsg) || pa->maxmsg < 64 ||
        pa->maxmsg > (16u << 20))
      return ctl_usage("--max-message takes 64 to 16777216 bytes");
  } else if (ctl_is_opt(*i, a))
    return ctl_usage("unknown option '%s' (or it needs a value)", a);
  else if (!pa->db)
    pa->db = a;
  else if (!pa->other)
    pa->other = a;
  else
    return ctl_usage("too many arguments");
  return EX_OK;
}

/* What sync, repair and diff set alike: the token, the largest message
 * and the tables (mask receives them).  EX_OK, or the exit status of a
 * usage error or an unknown table (said already). */
static int session_common(sync_env *env, const peer_args *pa,
                          unsigned char *mask, sync_session_opts *so) {
  if (pa->token) {
    so->credential = pa->token;
    so->credential_len = strlen(pa->token);
    if (so->credential_len > 1024)
      return ctl_usage("a token is at most 1024 bytes");
  }
  so->max_message = (size_t)pa->maxmsg;
  if (pa->tables) {
    char *list = strdup(pa->tables), *save = NULL, *t;
    if (!list) return EX_FAIL;
    memset(mask, 0, SYNC_RIGHTS_BYTES);
    for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      unsigned id;
      if (ctl_find_table(env, pa->db, t, &id)) {
        free(list);
        return EX_FAIL;
      }
      mask[id >> 3] |= (unsigned char)(1u << (id & 7));
    }
    free(list);
    so->tables = mask;
  }
  return EX_OK;
}

/* Two sessions in this process, passing bytes to each other. */
static int run_pair(sync_session *c, sync_session *s) {
  unsigned char buf[65536];
  int idle = 0;
  while (sync_session_status(c) == 0 || sync_session_status(s) == 0) {
    sync_session *from[2] = {c, s}, *to[2] = {s, c};
    int k, moved = 0;
    for (k = 0; k < 2; k++) {
      sync_outbuf o = {buf, sizeof buf, 0};
      int64_t n = sync_session_send(from[k], &o);
      if (n < 0) return (int)n;
      if (n > 0) {
        sync_inbuf in = {buf, (size_t)n, 0};
        sync_session_recv(to[k], &in);
        moved = 1;
      }
    }
    if (!moved && ++idle > 2) {
      /* Neither side has anything to say: whoever still runs is stuck. */
      if (sync_session_status(c) == 0) sync_session_abort(c, SYNC_ECLOSED);
      if (sync_session_status(s) == 0) sync_session_abort(s, SYNC_ECLOSED);
    } else if (moved) {
      idle = 0;
    }
  }
  return sync_session_status(c) == 1 ? 0 : sync_session_status(c);
}

/* One session in this process: DB (env) the client with so, the file
 * oenv serving.  0, a library code (the session's words in errmsg), or
 * SAID when no session could start. */
static int pair_session(sync_env *env, sync_env *oenv,
                        const sync_session_opts *so, const char *db,
                        sync_session_stats *st, char *errmsg, size_t cap) {
  sync_session *c = NULL, *s = NULL;
  sync_session_opts oo;
  int rc;
  memset(&oo, 0, sizeof oo);
  oo.server = 1;
  if ((rc = sync_session_create(env, so, &c)) ||
      (rc = sync_session_create(oenv, &oo, &s))) {
    sync_session_free(c);
    ctl_lib_fail(env, db, rc, "cannot start a session");
    return SAID;
  }
  rc = run_pair(c, s);
  sync_session_stats_get(c, st);
  if (rc) snprintf(errmsg, cap, "%s", sync_session_errmsg(c));
  sync_session_free(c);
  sync_session_free(s);
  return rc;
}

/* Why a session with the other side failed. */
static void session_fail(const peer_args *pa, int rc, const char *errmsg,
                         int rights) {
  if (rc == SYNC_ESCHEMA)
    ctl_say("%s: with %s: the schemas differ (%s)", pa->db, pa->other,
            errmsg[0] ? errmsg : "compare 'synctl schema' of both");
  else if (rights && rc == SYNC_EPERM && !errmsg[0])
    /* Refused at the hello, before a reason could come: the token. */
    ctl_say("%s: with %s: the server refused the credentials (%s)", pa->db,
            pa->other,
            pa->token ? "the token given with --token"
                      : "it wants a token: give one with --token");
  else if (rights && rc == SYNC_EPERM)
    ctl_say("%s: with %s: refused by the rights the server grants (%s)", pa->db,
            pa->other, errmsg);
  else
    ctl_say("%s: with %s: %s%s%s%s", pa->db, pa->other, sync_strerror(rc),
            errmsg[0] ? " (" : "", errmsg, errmsg[0] ? ")" : "");
}

/* ---------------------------------------------------------------------
 * sync
 * ------------------------------------------------------------------- */
typedef struct progress {
  int tty;
  double t0, last;
  int shown;
} progress;

/* A progress line is for a person watching a terminal that understands
 * "\r\033[K": not for a pipe or a log, nor under TERM=dumb or NO_COLOR
 * (no-color.org: set and not empty). */
static int show_progress(void) {
  const char *term = getenv("TERM"), *nc = getenv("NO_COLOR");
  if (!isatty(2) || (nc && nc[0])) return 0;
  return term && term[0] && strcmp(term, "dumb") != 0;
}

static void on_progress(void *ctx, const sync_session_stats *st) {
  progress *p = (progress *)ctx;
  double t = now_s(), el;
  uint64_t rows = st->rows_received + st->rows_sent;
  char b[32], eta[32] = "";
  if (!p->tty || t - p->last < 0.1) return;
  p->last = t;
  el = t - p->t0;
  ctl_fmt_bytes(st->bytes_received + st->bytes_sent, b, sizeof b);
  if (st->rows_expected && st->rows_received < st->rows_expected && el > 0 &&
      st->rows_received) {
    double left = (double)(st->rows_expected - st->rows_received) * el /
                  (double)st->rows_received;
    snprintf(eta, sizeof eta, "  ETA %d:%02d", (int)left / 60, (int)left % 60);
  }
  if (st->rows_expected)
    fprintf(stderr, "\r\033[K%llu/%llu rows (%d%%)  %s  %.0f rows/s%s",
           (unsigned long long)rows, (unsigned long long)st->rows_expected,
           (int)(100.0 * (double)st->rows_received / (double)st->rows_expected),
           b, el > 0 ? (double)rows / el : 0.0, eta);
  else
    fprintf(stderr, "\r\033[K%llu rows  %s  %.0f rows/s",
            (unsigned long long)rows, b, el > 0 ? (double)rows / el : 0.0);
  fflush(stderr);
  p->shown = 1;
}

/* sync's TLS options: --tls-ca turns TLS on. */
typedef struct tls_args {
  net_tls_opts o;
  const char *name; /* --tls-name: the name the certificate must carry */
} tls_args;
static tls_args g_tls;

/* With a server over TLS: as sync_remote, through net_tls_link.  A
 * failed handshake (the server's certificate refused, or this client's
 * by the server) is said in TLS's words. */
static int sync_remote_tls(sync_env *env, sync_session_opts *so,
                           const peer_args *pa, sync_session_stats *st,
                           char *errmsg, size_t cap) {
  sync_retry_opts ro;
  sync_retry *r;
  net_tls_link l;
  char err[512];
  int rc;
  memset(&l, 0, sizeof l);
  if (net_tls_create(&g_tls.o, 0, &l.tls, err, sizeof err)) {
    ctl_say("%s: %s", pa->db, err);
    return SAID;
  }
  so->level = 3;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 3;
  ro.base_delay_ms = 200;
  ro.max_delay_ms = 2000;
  l.tcp.addr = pa->other;
  l.tcp.timeout_s = 30;
  l.tcp.fd = -1;
  l.name = g_tls.name;
  if ((rc = sync_retry_create(NULL, &ro, &r))) {
    net_tls_free(l.tls);
    return SAID;
  }
  rc = sync_retry_run(r, env, so, net_tls_connect, net_tls_disconnect, &l, st);
  sync_retry_free(r);
  net_tls_free(l.tls);
  if (rc && l.err[0]) {
    ctl_say("%s: %s%s", pa->db, l.err,
            st->rows_received || st->rows_sent ? "" : "; nothing was exchanged");
    return SAID;
  }
  if (rc == SYNC_ECLOSED && !st->bytes_received)
    snprintf(errmsg, cap, "cannot reach the server");
  return rc;
}

/* With a server: whole sessions, retried with backoff.  SAID when no
 * connection could be made. */
static int sync_remote(sync_env *env, sync_session_opts *so,
                       const peer_args *pa, sync_session_stats *st,
                       char *errmsg, size_t cap) {
  sync_retry_opts ro;
  sync_retry *r;
  net_link l;
  int rc;
  if (g_tls.o.ca)
    return sync_remote_tls(env, so, pa, st, errmsg, cap);
  so->level = 3;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 3;
  ro.base_delay_ms = 200;
  ro.max_delay_ms = 2000;
  memset(&l, 0, sizeof l);
  l.addr = pa->other;
  l.timeout_s = 30;
  l.fd = -1;
  if ((rc = sync_retry_create(NULL, &ro, &r))) return SAID;
  rc = sync_retry_run(r, env, so, net_connect, net_disconnect, &l, st);
  sync_retry_free(r);
  if (rc == SYNC_ECLOSED && !st->bytes_received && l.err[0]) {
    ctl_say("%s: %s", pa->db, l.err);
    return SAID;
  }
  if (rc == SYNC_ECLOSED && !st->bytes_received)
    snprintf(errmsg, cap, "cannot reach the server");
  return rc;
}

/* With another file: when one side was a copy and took a new site id,
 * once more, as it. */
static int sync_local(sync_env *env, sync_env *oenv,
                      const sync_session_opts *so, const peer_args *pa,
                      sync_session_stats *st, char *errmsg, size_t cap) {
  int i, rc = 0;
  for (i = 0; i < 2; i++) {
    rc = pair_session(env, oenv, so, pa->db, st, errmsg, cap);
    if (rc != SYNC_EHISTORY || so->dry_run) break;
    ctl_say("%s: with %s: %s; syncing again", pa->db, pa->other, errmsg);
  }
  return rc;
}

/* What became of the rows received, as "(1 new, 2 updated, 0 deleted,
 * 1 unchanged)": every row counted once, so that the parts add up to
 * the rows received (a row that loses to a local write is unchanged;
 * refused and unknown rows are named when there are any). */
static void fmt_received(const sync_session_stats *st, char *out, size_t cap) {
  const sync_apply_report *a = &st->applied;
  uint64_t parts = a->inserted + a->updated + a->deleted + a->unchanged +
                   a->refused + a->unknown;
  size_t n;
  n = (size_t)snprintf(out, cap, "(%llu new, %llu updated, %llu deleted, %llu "
                                 "unchanged",
                       (unsigned long long)a->inserted,
                       (unsigned long long)a->updated,
                       (unsigned long long)a->deleted,
                       (unsigned long long)a->unchanged);
  if (a->refused && n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", %llu refused",
                          (unsigned long long)a->refused);
  if (a->unknown && n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", %llu of tables not here yet",
                          (unsigned long long)a->unknown);
  /* Rows the session counted but no report saw (none today): say so
   * rather than print parts that do not add up. */
  if (st->rows_received > parts && n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", %llu not applied",
                          (unsigned long long)(st->rows_received - parts));
  if (n < cap) snprintf(out + n, cap - n, ")");
}

/* Adds a retired site made after its retirement, dropped on either side
 * where they met the heir's contribution (sync_apply_report.retired_adds):
 * the heir may never have had them, so the sums may lack them.  Said,
 * since it means a site was retired before it stopped. */
static void retired_adds_note(const sync_session_stats *st) {
  uint64_t here = st->applied.retired_adds,
           there = st->peer_applied.retired_adds;
  if (!here && !there) return;
  printf("%llu counter contribution%s of retired sites dropped (%llu here, "
         "%llu there) held adds made after the retirement, which the "
         "heir may lack: a site was retired before it stopped ('synctl "
         "folds' lists the retirements)\n",
         (unsigned long long)(here + there), here + there == 1 ? "" : "s",
         (unsigned long long)here, (unsigned long long)there);
}

/* The summing-up line(s) of a sync that ran; el its seconds. */
static void sync_report(sync_env *env, const char *other, int dry,
                        const sync_session_stats *st, double el) {
  uint64_t dg = ctl_digest_all(env);
  char bi[32], bo[32], parts[256];
  fmt_received(st, parts, sizeof parts);
  ctl_fmt_bytes(st->bytes_received, bi, sizeof bi);
  ctl_fmt_bytes(st->bytes_sent, bo, sizeof bo);
  if (dry)
    printf("dry run with %s: would insert %llu, update %llu, delete %llu "
           "here; insert %llu, "
           "update %llu, delete %llu there; nothing written\n",
           other, (unsigned long long)st->applied.inserted,
           (unsigned long long)st->applied.updated,
           (unsigned long long)st->applied.deleted,
           (unsigned long long)st->peer_applied.inserted,
           (unsigned long long)st->peer_applied.updated,
           (unsigned long long)st->peer_applied.deleted);
  else
    printf("synced with %s: received %llu row%s %s, sent "
           "%llu row%s; %s in, %s out; %llu conflict%s (%llu here, %llu "
           "there); %.2f s; digest "
           "%016llx\n",
           other, (unsigned long long)st->rows_received,
           st->rows_received == 1 ? "" : "s", parts,
           (unsigned long long)st->rows_sent, st->rows_sent == 1 ? "" : "s", bi,
           bo,
           (unsigned long long)(st->applied.conflicts +
                                st->peer_applied.conflicts),
           st->applied.conflicts + st->peer_applied.conflicts == 1 ? "" : "s",
           (unsigned long long)st->applied.conflicts,
           (unsigned long long)st->peer_applied.conflicts, el,
           (unsigned long long)dg);
  if (st->peer_applied.refused)
    printf("the other side refused %llu rows (outside the rights of this "
           "token)\n",
           (unsigned long long)st->peer_applied.refused);
  if (st->reverted)
    printf("%llu refused row%s went back to the other side's version "
           "(synctl rejected lists them)\n",
           (unsigned long long)st->reverted, st->reverted == 1 ? "" : "s");
  retired_adds_note(st);
}

/* The summary of a sync as one JSON object, for scripts. */
static int sync_report_json(sync_env *env, const char *other, int dry,
                            const sync_session_stats *st, double el) {
  const sync_apply_report *a = &st->applied, *b = &st->peer_applied;
  char dg[17];
  json_t *o;
  snprintf(dg, sizeof dg, "%016llx", (unsigned long long)ctl_digest_all(env));
  o = json_pack(
      "{sosbsIsIsIsIsIsIsIsI}", "with", ctl_json_str(other), "dry_run", dry,
      "received", (json_int_t)st->rows_received, "new", (json_int_t)a->inserted,
      "updated", (json_int_t)a->updated, "deleted", (json_int_t)a->deleted,
      "unchanged", (json_int_t)a->unchanged, "refused", (json_int_t)a->refused,
      "unknown", (json_int_t)a->unknown, "sent", (json_int_t)st->rows_sent);
  if (o && json_object_update_new(
               o, json_pack("{sIsI}", "retired_adds",
                            (json_int_t)a->retired_adds, "there_retired_adds",
                            (json_int_t)b->retired_adds))) {
    json_decref(o);
    o = NULL;
  }
  if (o && json_object_update_new(
               o, json_pack("{sIsIsIsIsIsIsIsIsIsfss}", "there_new",
                            (json_int_t)b->inserted, "there_updated",
                            (json_int_t)b->updated, "there_deleted",
                            (json_int_t)b->deleted, "there_refused",
                            (json_int_t)b->refused, "reverted",
                            (json_int_t)st->reverted, "bytes_in",
                            (json_int_t)st->bytes_received, "bytes_out",
                            (json_int_t)st->bytes_sent, "conflicts_here",
                            (json_int_t)a->conflicts, "conflicts_there",
                            (json_int_t)b->conflicts, "seconds",
                            (double)(long long)(el * 1000 + 0.5) / 1000,
                            "digest", dg))) {
    json_decref(o);
    o = NULL;
  }
  return ctl_json_print(o);
}

const ctl_help ctl_help_sync = {
    "synctl sync DB ADDRESS|OTHER_DB|mqtt[s]://BROKER[:PORT]/PREFIX/DEVICE\n"
    "       [--pull|--push|--both] [--dry-run]\n"
    "       [--tables A,B] [--token T] [--max-message BYTES] [--quiet]\n"
    "       [--json] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]\n"
    "       [--tls-name NAME]]",
    "sync with a server or another database file",
    "Runs one session: DB is the client, the other side serves.  With\n"
    "HOST:PORT the other side is a server ('synctl serve'); with a path it\n"
    "is another database file, synced in this process through two\n"
    "sessions that pass bytes to each other; with an mqtt:// URL the\n"
    "session goes through an MQTT broker to 'synctl serve --mqtt', as\n"
    "device DEVICE under the topic PREFIX.  --pull receives, --push\n"
    "sends, --both (default) does both.  --dry-run writes nothing on\n"
    "either side and says what would change.  --tables limits the tables;\n"
    "changing it later removes the rows of tables no longer listed and\n"
    "brings those of new ones, with no reset.\n"
    "--token is the credential the server checks.  When standard error is\n"
    "a terminal, a progress line there shows rows, bytes, rate and, when\n"
    "the sender said how many rows come, the time left; --quiet (-q),\n"
    "NO_COLOR (set, not empty) or TERM=dumb turn it off.  The last line\n"
    "sums up what moved and the digest of DB afterwards.  When one side\n"
    "turns out to be a copy (a file restored from a backup, or copied),\n"
    "it takes a new site id, a line says so, and the session runs once\n"
    "more.\n"
    "With --json the summary is one JSON object instead: received, new,\n"
    "updated, deleted, unchanged, refused, unknown, sent, there_new,\n"
    "there_updated, there_deleted, there_refused, reverted, bytes_in,\n"
    "bytes_out, conflicts_here, conflicts_there, seconds, digest (16 hex\n"
    "digits), with and dry_run.\n"
    "--tls-ca FILE syncs over TLS: the server's certificate must be signed\n"
    "by a CA of FILE and name the host of ADDRESS (or --tls-name); if not,\n"
    "nothing is sent and the reason is said.  --tls-cert and --tls-key\n"
    "give a client certificate, for a server that requires one.\n"
    "An mqtts:// URL (port 8883 by default) reaches the broker over TLS\n"
    "with the same options: --tls-ca (required) checks the broker's\n"
    "certificate, --tls-cert and --tls-key answer a broker that requires\n"
    "a client certificate.\n"};

int ctl_cmd_sync(int argc, char **argv) {
  peer_args pa;
  sync_env *env = NULL, *oenv = NULL;
  sync_session_opts so;
  sync_session_stats st;
  unsigned char mask[SYNC_RIGHTS_BYTES];
  progress pr;
  int i, rc, mode = SYNC_BOTH, dry = 0, quiet = 0, remote;
  int ret = EX_FAIL;
  char errmsg[300] = "";
  memset(&pa, 0, sizeof pa);
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (ctl_opt(i, a, "--pull"))
      mode = SYNC_PULL;
    else if (ctl_opt(i, a, "--push"))
      mode = SYNC_PUSH;
    else if (ctl_opt(i, a, "--both"))
      mode = SYNC_BOTH;
    else if (ctl_opt(i, a, "--dry-run"))
      dry = 1;
    else if (ctl_opt(i, a, "--quiet") || ctl_opt(i, a, "-q"))
      quiet = 1;
    else if (ctl_opt(i, a, "--tls-ca") && i + 1 < argc)
      g_tls.o.ca = argv[++i];
    else if (ctl_opt(i, a, "--tls-cert") && i + 1 < argc)
      g_tls.o.cert = argv[++i];
    else if (ctl_opt(i, a, "--tls-key") && i + 1 < argc)
      g_tls.o.key = argv[++i];
    else if (ctl_opt(i, a, "--tls-name") && i + 1 < argc)
      g_tls.name = argv[++i];
    else if ((ret = peer_arg(argc, argv, &i, &pa)) != EX_OK)
      return ret;
  }
  if (!pa.db || !pa.other)
    return ctl_usage("give DB and HOST:PORT or OTHER_DB");
  if ((remote = ctl_peer_kind(pa.other)) < 0) return EX_USAGE;
  if ((g_tls.o.cert || g_tls.o.key || g_tls.name) && !g_tls.o.ca)
    return ctl_usage("TLS needs --tls-ca (the CAs of the server's "
                     "certificate)");
  if (g_tls.o.ca && !remote)
    return ctl_usage("--tls-ca is for a server (HOST:PORT), not a file");
  if (remote == 2 && !strncmp(pa.other, "mqtts://", 8) && !g_tls.o.ca)
    return ctl_usage("mqtts:// needs --tls-ca (the CAs of the broker's "
                     "certificate)");
  if (remote == 2 && !strncmp(pa.other, "mqtt://", 7) && g_tls.o.ca)
    return ctl_usage("--tls-ca goes with mqtts://, not mqtt://");
  if (ctl_open_db(pa.db, 0, &env)) return EX_FAIL;
  memset(&so, 0, sizeof so);
  so.mode = mode;
  so.dry_run = dry;
  if ((ret = session_common(env, &pa, mask, &so)) != EX_OK) goto out;
  ret = EX_FAIL;
  memset(&pr, 0, sizeof pr);
  pr.tty = !quiet && show_progress();
  pr.t0 = now_s(); /* pr.last 0: the first chunk shows a line at once */
  so.progress = on_progress;
  so.progress_ctx = &pr;
  memset(&st, 0, sizeof st);
  if (remote == 2) {
    ctl_tls_files tf = {g_tls.o.ca, g_tls.o.cert, g_tls.o.key, g_tls.name};
    rc = ctl_sync_mqtt(env, &so, pa.db, pa.other, &tf, &st, errmsg,
                       sizeof errmsg);
  } else if (remote) {
    rc = sync_remote(env, &so, &pa, &st, errmsg, sizeof errmsg);
  } else if (!strcmp(pa.db, pa.other)) {
    ret = ctl_usage("a database cannot sync with itself");
    goto out;
  } else if (ctl_open_db(pa.other, 0, &oenv)) {
    goto out; /* a dry run, too, runs write txns */
  } else {
    rc = sync_local(env, oenv, &so, &pa, &st, errmsg, sizeof errmsg);
  }
  if (rc == SAID) goto out;
  if (pr.shown) fputs("\r\033[K", stderr);
  if (rc) {
    session_fail(&pa, rc, errmsg, 1);
    goto out;
  }
  if (pa.json)
    ret = sync_report_json(env, pa.other, dry, &st, now_s() - pr.t0);
  else
    sync_report(env, pa.other, dry, &st, now_s() - pr.t0), ret = EX_OK;
out:
  sync_env_close(oenv);
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * repair and diff
 * ------------------------------------------------------------------- */
typedef struct diff_out {
  sync_env *env;
  uint64_t n, local, remote, both;
  int json;
  json_t *rows; /* diff --json: the rows go here */
} diff_out;

static void on_diff(void *ctx, unsigned table, const void *key, size_t klen,
                    int side) {
  diff_out *o = (diff_out *)ctx;
  sync_table_def d;
  const char *where = side == SYNC_DIFF_LOCAL    ? "here"
                      : side == SYNC_DIFF_REMOTE ? "there"
                                                 : "both";
  sync_env_table_def(o->env, table, &d);
  if (o->rows) {
    json_array_append_new(
        o->rows,
        json_pack("{sososs}", "table", ctl_json_str(d.name), "key",
                  ctl_json_key(d.key_type, (const unsigned char *)key, klen),
                  "side", where));
  } else {
    printf("%s ", d.name);
    ctl_put_key(stdout, d.key_type, (const unsigned char *)key, klen);
    printf(" %s\n", where);
  }
  o->n++;
  if (side == SYNC_DIFF_LOCAL)
    o->local++;
  else if (side == SYNC_DIFF_REMOTE)
    o->remote++;
  else
    o->both++;
}

/* With a server: one attempt, for a diff printed twice would mislead, and
 * a repair cut short is simply run again. */
static int repair_remote(sync_env *env, sync_session_opts *so,
                         const peer_args *pa, sync_session_stats *st,
                         char *errmsg, size_t cap) {
  net_link l;
  sync_transport t;
  sync_session *c = NULL;
  int rc;
  so->level = 3;
  memset(&l, 0, sizeof l);
  l.addr = pa->other;
  l.timeout_s = 30;
  l.fd = -1;
  if (net_connect(&l, &t)) {
    ctl_say("%s: %s", pa->db, l.err);
    return SAID;
  }
  if ((rc = sync_session_create(env, so, &c)) == 0) {
    rc = sync_session_run(c, &t);
    sync_session_stats_get(c, st);
    if (rc) snprintf(errmsg, cap, "%s", sync_session_errmsg(c));
    sync_session_free(c);
  }
  net_disconnect(&l, &t);
  return rc;
}

/* What repair_report says, as one JSON object. */
static int repair_json(sync_env *env, const peer_args *pa, int diff,
                       const sync_session_stats *st, const diff_out *dout,
                       double t0) {
  const sync_apply_report *a = &st->applied;
  json_t *o;
  char dg[17];
  int rc;
  o = json_pack("{sosbsIsIsI}", "with", ctl_json_str(pa->other), "equal",
                st->repair_equal != 0, "round_trips",
                (json_int_t)((st->repair_turns + 1) / 2), "bytes_in",
                (json_int_t)st->bytes_received, "bytes_out",
                (json_int_t)st->bytes_sent);
  if (o && diff &&
      json_object_update_new(
          o,
          json_pack("{sIsIsIsIsO}", "differ", (json_int_t)dout->n, "here",
                    (json_int_t)dout->local, "there", (json_int_t)dout->remote,
                    "both", (json_int_t)dout->both, "rows", dout->rows)))
    json_decref(o), o = NULL;
  snprintf(dg, sizeof dg, "%016llx", (unsigned long long)ctl_digest_all(env));
  if (o && !diff &&
      json_object_update_new(
          o, json_pack(
                 "{sIsIsIsIsIsIsIsIsIsIsIsfss}", "received",
                 (json_int_t)st->rows_received, "new", (json_int_t)a->inserted,
                 "updated", (json_int_t)a->updated, "deleted",
                 (json_int_t)a->deleted, "unchanged", (json_int_t)a->unchanged,
                 "refused", (json_int_t)a->refused, "unknown",
                 (json_int_t)a->unknown, "sent", (json_int_t)st->rows_sent,
                 "passes", (json_int_t)st->repair_passes, "nodes",
                 (json_int_t)st->repair_nodes, "conflicts_here",
                 (json_int_t)a->conflicts, "seconds",
                 (double)(long long)((now_s() - t0) * 1000 + 0.5) / 1000,
                 "digest", dg)))
    json_decref(o), o = NULL;
  if ((rc = ctl_json_print(o))) return rc;
  if (diff) return st->repair_equal ? EX_OK : EX_NOTFOUND;
  return st->repair_equal ? EX_OK : EX_FAIL;
}

/* The summing-up line of a repair or a diff that ran, and its exit
 * status. */
static int repair_report(sync_env *env, const peer_args *pa, int diff,
                         const sync_session_stats *st, const diff_out *dout,
                         double t0) {
  char bi[32], bo[32], parts[256];
  uint64_t dg;
  if (dout->json) return repair_json(env, pa, diff, st, dout, t0);
  ctl_fmt_bytes(st->bytes_received, bi, sizeof bi);
  ctl_fmt_bytes(st->bytes_sent, bo, sizeof bo);
  if (diff) {
    if (st->repair_equal)
      printf("equal to %s (%llu round trips, %s in, %s out)\n", pa->other,
             (unsigned long long)((st->repair_turns + 1) / 2), bi, bo);
    else
      printf("%llu row%s differ from %s: %llu only here, %llu only there, "
             "%llu on both sides (%llu round trips, %s in, %s out)\n",
             (unsigned long long)dout->n, dout->n == 1 ? "" : "s", pa->other,
             (unsigned long long)dout->local, (unsigned long long)dout->remote,
             (unsigned long long)dout->both,
             (unsigned long long)((st->repair_turns + 1) / 2), bi, bo);
    return st->repair_equal ? EX_OK : EX_NOTFOUND;
  }
  dg = ctl_digest_all(env);
  fmt_received(st, parts, sizeof parts);
  printf(
      "repaired with %s: %s; received %llu row%s %s, sent %llu row%s; %llu "
      "pass%s, %llu "
      "round trips, %llu nodes compared; %s in, %s out; %.2f s; digest "
      "%016llx\n",
      pa->other, st->repair_equal ? "equal" : "STILL DIFFERENT",
      (unsigned long long)st->rows_received, st->rows_received == 1 ? "" : "s",
      parts, (unsigned long long)st->rows_sent, st->rows_sent == 1 ? "" : "s",
      (unsigned long long)st->repair_passes, st->repair_passes == 1 ? "" : "es",
      (unsigned long long)((st->repair_turns + 1) / 2),
      (unsigned long long)st->repair_nodes, bi, bo, now_s() - t0,
      (unsigned long long)dg);
  if (!st->repair_equal)
    ctl_say("%s: with %s: the replicas still differ (rows outside the rights "
            "of this token were refused, or they changed meanwhile)",
            pa->db, pa->other);
  return st->repair_equal ? EX_OK : EX_FAIL;
}

/* synctl repair / synctl diff: one repair session, DB the client. */
static int cmd_repair_diff(int argc, char **argv, int diff) {
  peer_args pa;
  sync_env *env = NULL, *oenv = NULL;
  sync_session_opts so;
  sync_session_stats st;
  unsigned char mask[SYNC_RIGHTS_BYTES];
  diff_out dout;
  int i, rc, remote, ret = EX_FAIL;
  char errmsg[300] = "";
  double t0 = now_s();
  memset(&pa, 0, sizeof pa);
  for (i = 0; i < argc; i++)
    if ((ret = peer_arg(argc, argv, &i, &pa)) != EX_OK) return ret;
  if (!pa.db || !pa.other)
    return ctl_usage("give DB and HOST:PORT or OTHER_DB");
  if ((remote = ctl_peer_kind(pa.other)) < 0) return EX_USAGE;
  if (remote == 2)
    return ctl_usage("%s runs over TCP or with a file, not over MQTT",
                     diff ? "diff" : "repair");
  if (!remote && !strcmp(pa.db, pa.other))
    return ctl_usage("a database cannot repair with itself");
  if (ctl_open_db(pa.db, 0, &env)) return EX_FAIL;
  memset(&so, 0, sizeof so);
  memset(&dout, 0, sizeof dout);
  dout.env = env;
  so.repair = 1;
  so.dry_run = diff;
  so.on_diff = diff ? on_diff : NULL;
  so.on_diff_ctx = &dout;
  dout.json = pa.json;
  if (diff && pa.json && !(dout.rows = json_array())) goto out;
  if ((ret = session_common(env, &pa, mask, &so)) != EX_OK) goto out;
  ret = EX_FAIL;
  memset(&st, 0, sizeof st);
  if (remote)
    rc = repair_remote(env, &so, &pa, &st, errmsg, sizeof errmsg);
  else if (ctl_open_db(pa.other, 0, &oenv))
    goto out;
  else
    rc = pair_session(env, oenv, &so, pa.db, &st, errmsg, sizeof errmsg);
  if (rc == SAID) goto out;
  if (rc) {
    session_fail(&pa, rc, errmsg, 0);
    goto out;
  }
  ret = repair_report(env, &pa, diff, &st, &dout, t0);
out:
  json_decref(dout.rows);
  sync_env_close(oenv);
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_repair = {
    "synctl repair DB ADDRESS|OTHER_DB [--tables A,B] [--token T]\n"
    "       [--max-message BYTES] [--json]",
    "find where two replicas differ and exchange only that",
    "Runs one repair session (docs/PROTOCOL.md, \"Repair\"): DB is the\n"
    "client; the other side is a server ('synctl serve') at HOST:PORT or\n"
    "another database file.  The two compare fingerprints of hash-prefix\n"
    "trees of their tables (live rows and tombstones: a replica that\n"
    "lacks a delete its peer keeps gets it, so that a key it writes\n"
    "again afterwards wins everywhere) and exchange only the rows of the\n"
    "leaves that differ, merged by the usual rules (and, on a server,\n"
    "within the rights of --token).  It needs no change log or cursor, so\n"
    "it mends a replica restored from a backup, one whose peer record was\n"
    "reset, and drift of any cause.  It is the path after a sync fails as\n"
    "stale (the peer collected tombstones this replica never saw): once the\n"
    "repair is complete, DB's cursor for the other side stands at where\n"
    "that side's log was when the repair began, and 'synctl sync' works\n"
    "again.  The last line sums up what moved.  Exit status 0 when both\n"
    "ended equal, 1 when they still differ (rows refused by the rights,\n"
    "or written meanwhile) or the session failed.  With --json the last\n"
    "line is one object: with, equal, round_trips, bytes_in, bytes_out,\n"
    "received, new, updated, deleted, unchanged, refused, unknown, sent,\n"
    "passes, nodes, conflicts_here, seconds, digest.\n"};

const ctl_help ctl_help_diff = {
    "synctl diff DB ADDRESS|OTHER_DB [--tables A,B] [--token T]\n"
    "       [--max-message BYTES] [--json]",
    "list the rows two replicas hold differently, writing nothing",
    "A repair session that writes nothing on either side ('synctl\n"
    "repair' with a dry run).  Prints one line per differing row:\n\n"
    "    TABLE KEY here|there|both\n\n"
    "(here: only DB holds the row, live or deleted; there: only the other\n"
    "side; both: both do, in different states: values, stamps or\n"
    "deletes).  A row may be listed twice when the difference is larger\n"
    "than one turn of the repair carries.  Exit status 0 when the\n"
    "replicas are equal, 3 when they differ, 1 on failure.  With --json,\n"
    "one object instead: with, equal, round_trips, bytes_in, bytes_out,\n"
    "differ, here, there, both, and rows [{table, key, side}].\n"};

int ctl_cmd_repair(int argc, char **argv) {
  return cmd_repair_diff(argc, argv, 0);
}

int ctl_cmd_diff(int argc, char **argv) {
  return cmd_repair_diff(argc, argv, 1);
}
