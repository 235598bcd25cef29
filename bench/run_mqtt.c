/*
 * run_mqtt.c - an initial sync of W1 rows through an MQTT broker on
 * loopback (tools/net/mqtt.c, QoS 1, through a mosquitto the bench
 * starts), against the same sync over a direct loopback TCP connection,
 * in the same run, rounds interleaved.  Each side: a server process
 * holding the rows serves one session; this process pulls them into an
 * empty replica, timed from connect to the end of the session.
 *
 * mosquitto (the Debian package) must be installed; without it the
 * workload says so on one line and prints no figures.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "peers.h"
#include "tools/net/mqtt.h"
#include "w1.h"
#include "workloads.h"

#ifdef BENCH_NO_MQTT
/* Built without libmosquitto (cross builds: there is no static one). */
void bench_mqtt(const bench_opts *o) {
  (void)o;
  bench_note("mqtt: not built in (no libmosquitto), its figures are skipped");
}
#else

#define MQTT_MAX_ROWS 200000 /* a broker run is for a ratio, not a soak */

typedef struct mqtt_ctx {
  const w1_row *rows;
  size_t nrows;
  const char *send_path, *recv_path, *conf_path;
  uint64_t digest;
  int port; /* the broker's */
  pid_t broker;
} mqtt_ctx;

static sync_env *open_w1(const char *path, int fresh) {
  return peer_sync_env(path, NULL, &w1_table, fresh);
}

static void write_rows(const char *path, const w1_row *rows, size_t n) {
  sync_env *env = open_w1(path, 1);
  w1_put_rows(env, 0, rows, n);
  sync_env_close(env);
}

/* ---- the broker ------------------------------------------------------ */
static const char *mosquitto_bin(void) {
  static const char *paths[] = {"/usr/sbin/mosquitto",
                                "/usr/local/sbin/mosquitto",
                                "/usr/bin/mosquitto"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (access(paths[i], X_OK) == 0) return paths[i];
  return NULL;
}

/* The broker, stopped at exit too: bench_die exits, and a broker left
 * running would hold the bench's output open. */
static pid_t broker_pid = -1;
static void broker_reap(void) {
  if (broker_pid > 0) {
    kill(broker_pid, SIGTERM);
    waitpid(broker_pid, NULL, 0);
    broker_pid = -1;
  }
}

static void broker_start(mqtt_ctx *c, const char *bin) {
  char err[256];
  FILE *f;
  int lfd = net_listen("127.0.0.1:0", &c->port, err, sizeof err);
  if (lfd < 0) bench_die("mqtt: a free port: %s", err);
  close(lfd);
  if (!(f = fopen(c->conf_path, "w")))
    bench_die("mqtt: %s: %s", c->conf_path, strerror(errno));
  fprintf(f,
          "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
          "log_dest none\nmax_queued_messages 100000\nset_tcp_nodelay true\n",
          c->port);
  fclose(f);
  fflush(stdout);
  if ((c->broker = fork()) < 0) bench_die("mqtt: fork: %s", strerror(errno));
  if (c->broker == 0) {
    execl(bin, "mosquitto", "-c", c->conf_path, (char *)NULL);
    _exit(127);
  }
  {
    static int registered;
    if (!registered++) atexit(broker_reap);
  }
  broker_pid = c->broker;
  for (int i = 0; i < 100; i++) {
    char addr[64];
    int fd;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", c->port);
    if ((fd = net_dial(addr, 1)) >= 0) {
      close(fd);
      return;
    }
    nanosleep(&(struct timespec){0, 50000000L}, NULL);
  }
  bench_die("mqtt: mosquitto did not start on port %d", c->port);
}

static void broker_stop(mqtt_ctx *c) {
  broker_reap();
  remove(c->conf_path);
}

/* ---- the server processes ------------------------------------------- */
static int served_status;
static int serve_open(void *ctx, const char *dev, sync_session **s) {
  sync_session_opts so;
  (void)dev;
  memset(&so, 0, sizeof so);
  so.server = 1;
  return sync_session_create((sync_env *)ctx, &so, s);
}
static void serve_ended(void *ctx, const char *dev, sync_session *s) {
  (void)ctx;
  (void)dev;
  served_status = sync_session_status(s);
}

/* Child: serve one session of path over MQTT; a byte on ready once
 * subscribed.  Exits 0 when the session completed. */
static void serve_mqtt_once(mqtt_ctx *c, int ready) {
  sync_env *env = open_w1(c->send_path, 0);
  net_mqtt_server_ops ops = {env, serve_open, serve_ended};
  net_mqtt_server *sv;
  net_mqtt_addr a;
  char err[512];
  memset(&a, 0, sizeof a);
  snprintf(a.host, sizeof a.host, "127.0.0.1");
  a.port = c->port;
  snprintf(a.prefix, sizeof a.prefix, "bench");
  if (net_mqtt_server_open(&a, NULL, &ops, 60, &sv, err, sizeof err)) _exit(3);
  if (write(ready, "r", 1) != 1) _exit(4);
  while (!net_mqtt_server_step(sv, 100)) {
  }
  if (served_status != 1) {
    net_mqtt_stats st;
    net_mqtt_server_stats(sv, &st);
    fprintf(stderr,
            "bench: mqtt server: the session ended with %s after %llu "
            "messages in, %llu out\n",
            served_status < 0 ? sync_strerror(served_status) : "no status",
            (unsigned long long)st.received, (unsigned long long)st.sent);
  }
  net_mqtt_server_free(sv);
  sync_env_close(env);
  _exit(served_status == 1 ? 0 : 5);
}

/* Child: serve one session of path on lfd. */
static void serve_tcp_once(mqtt_ctx *c, int lfd) {
  sync_env *env = open_w1(c->send_path, 0);
  sync_session_opts so;
  sync_session *s;
  sync_transport t;
  int fd = net_accept(lfd), rc;
  if (fd < 0) _exit(3);
  net_transport(&fd, &t);
  memset(&so, 0, sizeof so);
  so.server = 1;
  peer_sync_check(env, sync_session_create(env, &so, &s), "session");
  rc = sync_session_run(s, &t);
  sync_session_free(s);
  close(fd);
  sync_env_close(env);
  _exit(rc ? 5 : 0);
}

static void reap(pid_t pid, const char *what) {
  int st;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st))
    bench_die("mqtt: the %s server process failed (status %d)", what, st);
}

/* The pull's checks: every row came and the digests agree. */
static double pulled(mqtt_ctx *c, sync_env *env, sync_session *s, double secs,
                     const char *what) {
  sync_session_stats st;
  sync_session_stats_get(s, &st);
  sync_session_free(s);
  if (st.rows_received != c->nrows)
    bench_die("mqtt: %s: %" PRIu64 " rows received of %zu", what,
              st.rows_received, c->nrows);
  if (peer_sync_digest(env) != c->digest)
    bench_die("mqtt: %s: the receiver's digest differs", what);
  sync_env_close(env);
  return (double)c->nrows / secs;
}

static double pull_tcp(void *arg) {
  mqtt_ctx *c = arg;
  char addr[64], err[256];
  int port, fd, rc, lfd = net_listen("127.0.0.1:0", &port, err, sizeof err);
  sync_session_opts co;
  sync_session *s;
  sync_transport t;
  sync_env *env;
  double t0, t1;
  pid_t pid;
  if (lfd < 0) bench_die("mqtt: loopback socket: %s", err);
  fflush(stdout);
  if ((pid = fork()) < 0) bench_die("mqtt: fork: %s", strerror(errno));
  if (pid == 0) serve_tcp_once(c, lfd);
  close(lfd);
  env = open_w1(c->recv_path, 1);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  t0 = bench_now();
  if ((fd = net_dial(addr, 0)) < 0)
    bench_die("mqtt: connect: %s", strerror(errno));
  net_transport(&fd, &t);
  peer_sync_check(env, sync_session_create(env, &co, &s), "session");
  if ((rc = sync_session_run(s, &t)))
    bench_die("mqtt: tcp session: %s", sync_strerror(rc));
  t1 = bench_now();
  close(fd);
  reap(pid, "tcp");
  return pulled(c, env, s, t1 - t0, "tcp");
}

static double pull_mqtt(void *arg) {
  mqtt_ctx *c = arg;
  net_mqtt_addr a;
  net_mqtt_link *l;
  sync_session_opts co;
  sync_session *s;
  sync_transport t;
  sync_env *env;
  double t0, t1;
  int p[2], rc;
  char b;
  pid_t pid;
  if (pipe(p)) bench_die("mqtt: pipe: %s", strerror(errno));
  fflush(stdout);
  if ((pid = fork()) < 0) bench_die("mqtt: fork: %s", strerror(errno));
  if (pid == 0) {
    close(p[0]);
    serve_mqtt_once(c, p[1]);
  }
  close(p[1]);
  if (read(p[0], &b, 1) != 1) bench_die("mqtt: the server did not subscribe");
  close(p[0]);
  memset(&a, 0, sizeof a);
  snprintf(a.host, sizeof a.host, "127.0.0.1");
  a.port = c->port;
  snprintf(a.prefix, sizeof a.prefix, "bench");
  snprintf(a.device, sizeof a.device, "dev");
  env = open_w1(c->recv_path, 1);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  if (!(l = net_mqtt_link_new(&a, 30))) bench_die("mqtt: out of memory");
  t0 = bench_now();
  if (net_mqtt_connect(l, &t))
    bench_die("mqtt: %s", net_mqtt_link_error(l));
  peer_sync_check(env, sync_session_create(env, &co, &s), "session");
  if ((rc = sync_session_run(s, &t)))
    bench_die("mqtt: session through the broker: %s", sync_strerror(rc));
  t1 = bench_now();
  net_mqtt_disconnect(l, &t);
  net_mqtt_link_free(l);
  reap(pid, "mqtt");
  return pulled(c, env, s, t1 - t0, "mqtt");
}

void bench_mqtt(const bench_opts *o) {
  const char *bin = mosquitto_bin();
  bench_side sides[2];
  mqtt_ctx c;
  if (!bin) {
    bench_note("mqtt: mosquitto is not installed (Debian package mosquitto): "
               "w1.sync_mqtt figures skipped");
    return;
  }
  memset(&c, 0, sizeof c);
  c.nrows = o->rows < MQTT_MAX_ROWS ? o->rows : MQTT_MAX_ROWS;
  c.rows = w1_generate(c.nrows);
  c.send_path = bench_path("mqtt-send.db");
  c.recv_path = bench_path("mqtt-recv.db");
  c.conf_path = bench_path("mosquitto.conf");
  bench_note("mqtt: %zu W1 rows pulled through mosquitto on loopback (QoS 1, "
             "one message per session message, 64 KiB) and over direct "
             "loopback TCP, uncompressed frames, 1,000 rows per chunk",
             c.nrows);
  signal(SIGPIPE, SIG_IGN);
  net_mqtt_init();
  write_rows(c.send_path, c.rows, c.nrows);
  {
    sync_env *env = open_w1(c.send_path, 0);
    c.digest = peer_sync_digest(env);
    sync_env_close(env);
  }
  broker_start(&c, bin);
  sides[0] = (bench_side){"mqtt", pull_mqtt, &c, 0};
  sides[1] = (bench_side){"tcp", pull_tcp, &c, 0};
  bench_rounds("w1.sync_mqtt", sides, 2, o->reps);
  broker_stop(&c);
  bench_rate("w1.sync_mqtt.rows_per_s", sides[0].best);
  bench_rate("w1.sync_mqtt.tcp_rows_per_s", sides[1].best);
  bench_ratio("w1.sync_mqtt.ratio_vs_tcp", sides[0].best / sides[1].best);
  net_mqtt_cleanup();
  bench_unlink_db(c.send_path);
  bench_unlink_db(c.recv_path);
  free((void *)c.rows);
}
#endif /* BENCH_NO_MQTT */
