/*
 * MQTT for synctl: 'synctl serve DB --mqtt BROKER' (one connection to a
 * broker, a session per device under the topic prefix) and the client
 * side of 'synctl sync DB mqtt://BROKER/PREFIX/DEVICE', both over TLS
 * with mqtts://.  The adapter is tools/net/mqtt.c; docs/MQTT.md has the
 * topics and the header.
 */
#include "synctl.h"

#include "tools/net/mqtt.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_SECONDS 60

typedef struct mserver {
  sync_env *env;
  int quiet, checked;
  net_creds creds;
} mserver;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* A device starts a session: the rights and rows of its credential when
 * a credentials file was given, as 'serve' over TCP. */
static int mserve_open(void *ctx, const char *dev, sync_session **s) {
  mserver *sv = (mserver *)ctx;
  sync_session_opts so;
  (void)dev;
  net_creds_server_opts(sv->checked ? &sv->creds : NULL, &so);
  return sync_session_create(sv->env, &so, s);
}

static void mserve_ended(void *ctx, const char *dev, sync_session *s) {
  mserver *sv = (mserver *)ctx;
  int st = sync_session_status(s);
  sync_session_stats x;
  if (sv->quiet) return;
  sync_session_stats_get(s, &x);
  if (st == 1)
    printf("serve: device %s: received %llu rows, sent %llu rows (%llu bytes "
           "in, %llu out)\n",
           dev, (unsigned long long)x.rows_received,
           (unsigned long long)x.rows_sent,
           (unsigned long long)x.bytes_received,
           (unsigned long long)x.bytes_sent);
  else /* the session's words when it has some: they name the error */
    printf("serve: device %s: session ended: %s\n", dev,
           sync_session_errmsg(s)[0] ? sync_session_errmsg(s)
                                     : sync_strerror(st ? st : SYNC_ECLOSED));
  fflush(stdout);
}

int ctl_serve_mqtt(const ctl_serve_opts *o) {
  static mserver sv;
  net_mqtt_server_ops ops = {&sv, mserve_open, mserve_ended};
  net_mqtt_server *ms = NULL;
  net_mqtt_addr a;
  net_mqtt_stats st;
  char err[512];
  memset(&sv, 0, sizeof sv);
  memset(&a, 0, sizeof a);
  sv.quiet = o->quiet;
  if (net_mqtt_parse_broker(o->mqtt, &a, err, sizeof err) ||
      net_mqtt_check_topic(o->topic ? o->topic : "sync", 0, err, sizeof err) ||
      (o->share && net_mqtt_check_topic(o->share, 1, err, sizeof err)))
    return ctl_usage("%s", err);
  if (a.prefix[0] && o->topic)
    return ctl_usage("give the topic prefix once: in --mqtt or in --topic");
  if (!a.prefix[0])
    snprintf(a.prefix, sizeof a.prefix, "%s", o->topic ? o->topic : "sync");
  /* The server is a client of the broker: --tls-ca checks the broker's
   * certificate, --tls-cert and --tls-key are shown to it. */
  if (o->tls_client_ca)
    return ctl_usage("--tls-client-ca is for serving over TLS; the broker "
                     "checks the devices' certificates");
  if (a.tls && !o->tls_ca)
    return ctl_usage("mqtts:// needs --tls-ca (the CAs of the broker's "
                     "certificate)");
  if (!a.tls && (o->tls_ca || o->tls_cert || o->tls_key))
    return ctl_usage("--tls-ca, --tls-cert and --tls-key go with --mqtt "
                     "mqtts://BROKER");
  a.tls_opts.ca = o->tls_ca;
  a.tls_opts.cert = o->tls_cert;
  a.tls_opts.key = o->tls_key;
  if (ctl_open_db(o->db, 0, &sv.env)) return EX_FAIL;
  sv.creds.env = sv.env;
  sv.creds.say = ctl_say;
  sv.creds.table = ctl_find_table;
  sv.checked = o->credfile != NULL;
  if (o->credfile && ctl_each_line(o->credfile, net_creds_line, &sv.creds)) {
    sync_env_close(sv.env);
    return EX_FAIL;
  }
  net_mqtt_init();
  if (net_mqtt_server_open(&a, o->share, &ops, IDLE_SECONDS, &ms, err,
                           sizeof err)) {
    ctl_say("%s", err);
    sync_env_close(sv.env);
    return EX_FAIL;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (!sv.quiet) {
    printf("serve: %s over MQTT%s at %s:%d, topics %s/+/up and "
           "%s/DEVICE/down%s\n",
           o->db, a.tls ? " over TLS" : "", a.host, a.port, a.prefix, a.prefix,
           o->credfile ? ", devices checked against the credentials file"
                       : ", every device may read and write");
    fflush(stdout);
  }
  net_mqtt_server_run(ms, &g_stop, o->max_sessions);
  net_mqtt_server_stats(ms, &st);
  net_mqtt_server_free(ms);
  if (!sv.quiet)
    printf("serve: stopped; %llu sessions, %llu duplicates and %llu foreign "
           "messages dropped, %llu gaps; digest %016llx\n",
           (unsigned long long)st.sessions, (unsigned long long)st.duplicates,
           (unsigned long long)st.foreign, (unsigned long long)st.gaps,
           (unsigned long long)ctl_digest_all(sv.env));
  sync_env_close(sv.env);
  net_mqtt_cleanup();
  return EX_OK;
}

int ctl_check_mqtt_url(const char *url) {
  net_mqtt_addr a;
  char err[512];
  if (net_mqtt_parse_url(url, &a, err, sizeof err)) return ctl_usage("%s", err);
  return EX_OK;
}

int ctl_sync_mqtt(sync_env *env, sync_session_opts *so, const char *db,
                  const char *url, const ctl_tls_files *tls,
                  sync_session_stats *st, char *errmsg, size_t cap) {
  net_mqtt_addr a;
  net_mqtt_link *l;
  sync_retry_opts ro;
  sync_retry *r;
  char err[512];
  int rc;
  if (net_mqtt_parse_url(url, &a, err, sizeof err)) {
    ctl_say("%s: %s", db, err);
    return 1;
  }
  a.tls_opts.ca = tls->ca;
  a.tls_opts.cert = tls->cert;
  a.tls_opts.key = tls->key;
  a.tls_name = tls->name;
  net_mqtt_init();
  so->level = 3;
  memset(&ro, 0, sizeof ro);
  ro.attempts = 3;
  ro.base_delay_ms = 200;
  ro.max_delay_ms = 2000;
  if (!(l = net_mqtt_link_new(&a, 30)) || sync_retry_create(NULL, &ro, &r)) {
    net_mqtt_link_free(l);
    ctl_say("%s: out of memory", db);
    return 1;
  }
  rc = sync_retry_run(r, env, so, net_mqtt_connect, net_mqtt_disconnect, l,
                      st);
  sync_retry_free(r);
  /* The link's words: it could not reach the broker, or TLS failed (the
   * broker's certificate, or this client's refused: then before any
   * session began, so nothing was exchanged). */
  if ((rc == SYNC_ECLOSED || rc == SYNC_EPERM) && !st->bytes_received &&
      net_mqtt_link_error(l)[0]) {
    ctl_say("%s: %s%s", db, net_mqtt_link_error(l),
            rc == SYNC_EPERM ? "; nothing was exchanged" : "");
    rc = 1;
  } else if (rc == SYNC_ETIMEOUT && !st->bytes_received) {
    snprintf(errmsg, cap, "no server answered on %s/%s/up", a.prefix,
             a.device);
  }
  net_mqtt_link_free(l);
  net_mqtt_cleanup();
  return rc;
}
