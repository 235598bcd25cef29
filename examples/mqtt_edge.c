/*
 * mqtt_edge.c - a device that speaks MQTT: in a loop it records a
 * reading, syncs with the server through the broker, and sleeps.  The
 * server is 'synctl serve SERVER.db --mqtt BROKER --topic PREFIX' (a
 * database with the schema of demo_schema.h).
 *
 *   mqtt_edge DB mqtt[s]://BROKER[:PORT]/PREFIX/DEVICE [--count N]
 *             [--interval-ms MS] [--ca FILE [--cert FILE --key FILE]]
 *
 * It publishes on PREFIX/DEVICE/up and listens on PREFIX/DEVICE/down
 * (docs/MQTT.md).  With mqtts:// it reaches the broker over TLS: --ca
 * checks the broker's certificate (and name), --cert and --key answer a
 * broker that requires a client certificate.  A sync cut short (the
 * broker restarts, a message is lost) is retried with backoff and
 * continues after the last chunk the server acknowledged.  After N
 * rounds (default 3; 0: forever) it prints the digest of its database,
 * which equals the server's once both hold the same rows.
 */
#include "tools/net/mqtt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo_schema.h"

static int fail(const char *what, int rc) {
  fprintf(stderr, "mqtt_edge: %s: %s\n", what, sync_strerror(rc));
  return 1;
}

/* One reading under DEVICE-<n>. */
static int record(sync_env *env, const char *dev, unsigned n) {
  char key[160];
  sync_value v[3];
  sync_txn *txn;
  int rc, kl = snprintf(key, sizeof key, "%s-%06u", dev, n);
  v[0] = sync_real(18.0 + (double)(rand() % 100) / 10.0);
  v[1] = sync_int(100 - (int64_t)(n % 100));
  v[2] = sync_text("ok", 2);
  if ((rc = sync_txn_begin(env, 0, &txn))) return rc;
  if ((rc = sync_put(txn, DEMO_READINGS, key, (size_t)kl, v, 3))) {
    sync_txn_abort(txn);
    return rc;
  }
  return sync_txn_commit(txn);
}

int main(int argc, char **argv) {
  unsigned count = 3, ms = 1000, n;
  net_mqtt_addr a;
  net_mqtt_link *link;
  sync_session_opts so;
  sync_retry_opts ro;
  sync_retry *retry;
  sync_env *env;
  sync_txn *txn;
  uint64_t dg = 0;
  char err[512];
  int i, rc;
  if (argc < 3 || net_mqtt_parse_url(argv[2], &a, err, sizeof err)) {
    fprintf(stderr,
            "usage: mqtt_edge DB mqtt[s]://BROKER[:PORT]/PREFIX/DEVICE "
            "[--count N] [--interval-ms MS] [--ca FILE [--cert FILE "
            "--key FILE]]\n%s%s",
            argc < 3 ? "" : err, argc < 3 ? "" : "\n");
    return 2;
  }
  for (i = 3; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--count"))
      count = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--interval-ms"))
      ms = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--ca")) /* mqtts:// (TLS to the broker) */
      a.tls_opts.ca = argv[i + 1];
    else if (!strcmp(argv[i], "--cert"))
      a.tls_opts.cert = argv[i + 1];
    else if (!strcmp(argv[i], "--key"))
      a.tls_opts.key = argv[i + 1];
  }
  srand((unsigned)time(NULL));
  if ((rc = sync_env_create(NULL, &env)) ||
      (rc = sync_env_set_schema(env, demo_tables, 2)) ||
      (rc = sync_env_open(env, argv[1], 0)))
    return fail(argv[1], rc);

  /* The device side of MQTT in four calls: a link, retries over it. */
  net_mqtt_init();
  link = net_mqtt_link_new(&a, 30);
  memset(&ro, 0, sizeof ro);
  ro.attempts = 8;
  ro.breaker_failures = 1000; /* a device keeps trying */
  memset(&so, 0, sizeof so);
  so.mode = SYNC_BOTH;
  if (!link || (rc = sync_retry_create(NULL, &ro, &retry)))
    return fail("setup", link ? rc : SYNC_ENOMEM);

  for (n = 1; count == 0 || n <= count; n++) {
    sync_session_stats st;
    if ((rc = record(env, a.device, n))) return fail("write", rc);
    rc = sync_retry_run(retry, env, &so, net_mqtt_connect,
                        net_mqtt_disconnect, link, &st);
    if (rc == SYNC_EPERM && net_mqtt_link_error(link)[0]) {
      /* TLS refused (or its files): no round mends that. */
      fprintf(stderr, "mqtt_edge: %s\n", net_mqtt_link_error(link));
      break;
    }
    if (rc)
      printf("round %u: sync failed: %s %s (next round tries again)\n", n,
             sync_strerror(rc), net_mqtt_link_error(link));
    else
      printf("round %u: sent %llu rows, received %llu\n", n,
             (unsigned long long)st.rows_sent,
             (unsigned long long)st.rows_received);
    fflush(stdout);
    if (count == 0 || n < count) {
      struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &txn) == 0) {
    sync_digest(txn, SYNC_ALL_TABLES, &dg);
    sync_txn_abort(txn);
  }
  printf("digest %016llx\n", (unsigned long long)dg);
  sync_retry_free(retry);
  net_mqtt_link_free(link);
  net_mqtt_cleanup();
  sync_env_close(env);
  return rc ? 1 : 0;
}
