/*
 * mqtt.c - a session's byte stream over MQTT messages (QoS 1), through
 * libmosquitto, for devices and for a server of many devices.
 *
 * MQTT delivers QoS 1 messages at least once: a message may come twice,
 * and across a reconnect (we connect with clean sessions) messages may
 * be lost.  A session must never take a byte twice or skip one, so each
 * message carries a session id and a sequence number: a receiver takes
 * the next number only, drops the ones it took already, and ends the
 * session at a gap.  The library's sessions are resumable, so the next
 * session (a new id) continues after the last acknowledged chunk.
 * docs/MQTT.md is the specification.
 *
 * libmosquitto runs unthreaded here: the caller's thread turns
 * mosquitto_loop, callbacks only classify and queue, and publishing
 * happens outside callbacks (where libmosquitto writes at once).
 */
#include "tools/net/mqtt.h"

#include <mosquitto.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEEPALIVE 30
#define MAX_PAYLOAD (256u << 10) /* stream bytes in one message at most */
#define RECENT 8 /* ended session ids a server remembers per device */
/* Devices one server keeps (found by a linear search: thousands, not
 * millions; beyond that, split them over prefixes or servers). */
#define MAX_DEVICES 65536

void net_mqtt_init(void) { mosquitto_lib_init(); }
void net_mqtt_cleanup(void) { mosquitto_lib_cleanup(); }

/* Seconds on a monotonic clock (loop.c has one too; this file stands
 * alone so that a device links it without the server's loop). */
static double mono(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts)) return 0;
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------
 * Addresses and topics
 * ------------------------------------------------------------------- */
static int say(char *err, size_t cap, const char *fmt, const char *arg) {
  if (err && cap) snprintf(err, cap, fmt, arg);
  return -1;
}

/* The length of the scheme s starts with ("mqtt://" or "mqtts://",
 * which sets *tls), or 0 for none. */
static size_t scheme(const char *s, int *tls) {
  if (!strncmp(s, "mqtt://", 7)) return *tls = 0, 7;
  if (!strncmp(s, "mqtts://", 8)) return *tls = 1, 8;
  return 0;
}

/* "HOST[:PORT]" or "[V6][:PORT]" (port defport when none) into a->host
 * and a->port; messages name the broker as s. */
static int parse_hostport(const char *s, int defport, net_mqtt_addr *a,
                          char *err, size_t errcap) {
  const char *colon, *host = s, *end;
  char *e;
  long port = defport;
  size_t hl;
  if (s[0] == '[') {
    host = s + 1;
    if (!(end = strchr(host, ']')))
      return say(err, errcap, "malformed broker '%s': no ']'", s);
    colon = end[1] == ':' ? end + 1 : NULL;
    if (end[1] && !colon)
      return say(err, errcap, "malformed broker '%s': junk after ']'", s);
  } else {
    colon = strrchr(s, ':');
    end = colon ? colon : s + strlen(s);
  }
  if (colon) {
    errno = 0;
    port = strtol(colon + 1, &e, 10);
    if (!colon[1] || *e || errno || port < 1 || port > 65535)
      return say(err, errcap,
                  "malformed broker '%s': the port is 1 to 65535", s);
  }
  hl = (size_t)(end - host);
  if (!hl || hl >= sizeof a->host)
    return say(err, errcap, "malformed broker '%s': no host", s);
  memcpy(a->host, host, hl);
  a->host[hl] = 0;
  a->port = (int)port;
  return 0;
}

int net_mqtt_parse_broker(const char *s, net_mqtt_addr *a, char *err,
                          size_t errcap) {
  char hp[300];
  int tls = 0;
  const char *rest = s + scheme(s, &tls), *slash = strchr(rest, '/');
  size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
  if (n >= sizeof hp)
    return say(err, errcap, "malformed broker '%s': too long", s);
  memcpy(hp, rest, n);
  hp[n] = 0;
  if (parse_hostport(hp, tls ? NET_MQTTS_PORT : NET_MQTT_PORT, a, err, errcap))
    return -1;
  a->tls = tls;
  if (slash) {
    if (strlen(slash + 1) >= sizeof a->prefix)
      return say(err, errcap, "'%s': topic too long", s);
    if (net_mqtt_check_topic(slash + 1, 0, err, errcap)) return -1;
    strcpy(a->prefix, slash + 1);
  }
  return 0;
}

int net_mqtt_check_topic(const char *s, int level, char *err, size_t errcap) {
  const char *p;
  if (!s[0]) return say(err, errcap, "empty topic%s", level ? " level" : "");
  if (strpbrk(s, "+#"))
    return say(err, errcap, "topic '%s' holds a wildcard ('+' or '#')", s);
  if (level && strchr(s, '/'))
    return say(err, errcap, "'%s' must be one topic level (no '/')", s);
  if (s[0] == '/' || s[strlen(s) - 1] == '/' || strstr(s, "//"))
    return say(err, errcap, "topic '%s' has an empty level", s);
  if (s[0] == '$')
    return say(err, errcap, "topic '%s' starts with '$' (broker topics)", s);
  for (p = s; *p; p++)
    if ((unsigned char)*p < 0x20)
      return say(err, errcap, "topic '%s' holds a control character", s);
  return 0;
}

int net_mqtt_parse_url(const char *url, net_mqtt_addr *a, char *err,
                       size_t errcap) {
  char broker[300];
  const char *rest, *slash, *last;
  size_t n, skip;
  int tls = 0;
  memset(a, 0, sizeof *a);
  if (!(skip = scheme(url, &tls)))
    return say(err, errcap,
               "'%s' is not mqtt://BROKER[:PORT]/PREFIX/DEVICE (or mqtts://)",
               url);
  rest = url + skip;
  if (!(slash = strchr(rest, '/')) || (size_t)(slash - rest) >= sizeof broker)
    return say(err, errcap, "'%s': give mqtt://BROKER[:PORT]/PREFIX/DEVICE",
               url);
  memcpy(broker, rest, (size_t)(slash - rest));
  broker[slash - rest] = 0;
  if (parse_hostport(broker, tls ? NET_MQTTS_PORT : NET_MQTT_PORT, a, err,
                     errcap))
    return -1;
  a->tls = tls;
  if (!(last = strrchr(slash + 1, '/')))
    return say(err, errcap, "'%s': give both PREFIX and DEVICE", url);
  n = (size_t)(last - (slash + 1));
  if (n >= sizeof a->prefix || strlen(last + 1) >= sizeof a->device)
    return say(err, errcap, "'%s': topic too long", url);
  memcpy(a->prefix, slash + 1, n);
  a->prefix[n] = 0;
  strcpy(a->device, last + 1);
  if (net_mqtt_check_topic(a->prefix, 0, err, errcap) ||
      net_mqtt_check_topic(a->device, 1, err, errcap))
    return -1;
  return 0;
}

/* ---------------------------------------------------------------------
 * The header, and what a receiver makes of a message
 * ------------------------------------------------------------------- */
void net_mqtt_header(unsigned char h[NET_MQTT_HEADER], int type, uint64_t sid,
                     uint32_t seq) {
  int i;
  h[0] = NET_MQTT_MAGIC;
  h[1] = (unsigned char)type;
  for (i = 0; i < 8; i++) h[2 + i] = (unsigned char)(sid >> (56 - 8 * i));
  for (i = 0; i < 4; i++) h[10 + i] = (unsigned char)(seq >> (24 - 8 * i));
}

typedef struct mhead {
  int type;
  uint64_t sid;
  uint32_t seq;
} mhead;

/* 0 and *h, or -1 for a message that is not ours (counted bad). */
static int head_parse(const void *msg, int len, mhead *h) {
  const unsigned char *p = (const unsigned char *)msg;
  int i;
  if (len < NET_MQTT_HEADER || p[0] != NET_MQTT_MAGIC ||
      (p[1] != NET_MQTT_DATA && p[1] != NET_MQTT_END))
    return -1;
  h->type = p[1];
  h->sid = 0;
  for (i = 0; i < 8; i++) h->sid = h->sid << 8 | p[2 + i];
  h->seq = 0;
  for (i = 0; i < 4; i++) h->seq = h->seq << 8 | p[10 + i];
  return h->sid ? 0 : -1; /* 0 is no session's id */
}

/* What a data message of the current session means for a stream whose
 * next number is next. */
enum { M_TAKE, M_DUP, M_GAP };
static int seq_judge(uint32_t seq, uint32_t next) {
  if (seq == next) return M_TAKE;
  return seq < next ? M_DUP : M_GAP;
}

/* Session ids: random, so that a late message of an ended session (a
 * duplicate the broker redelivers after a reconnect) never matches the
 * running one.  /dev/urandom seeds a splitmix sequence. */
static uint64_t new_sid(uint64_t *state) {
  uint64_t z;
  if (!*state) {
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, state, sizeof *state) != (ssize_t)sizeof *state)
      *state = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32 ^
               (uint64_t)(uintptr_t)state;
    if (fd >= 0) close(fd);
  }
  do {
    z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
  } while (!z);
  return z;
}

/* A session waits for each answer: Nagle's algorithm would hold every
 * small message back until the last one is acknowledged (40 ms with a
 * delayed ACK).  And no cap on messages in flight: the session's own
 * window bounds them. */
static void mqtt_tune(struct mosquitto *m) {
  mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_max_inflight_messages_set(m, 0);
}

/* TLS to the broker when a->tls: a client context of a->tls_opts that
 * checks the broker's certificate against the CAs and a->tls_name (or
 * the host dialled), handed to libmosquitto for every connection of m
 * (it takes a reference of its own).  *out stays NULL without TLS.  0,
 * or -1 with the reason in err. */
static int tls_setup(struct mosquitto *m, const net_mqtt_addr *a, net_tls **out,
                     char *err, size_t cap) {
  net_tls_opts o = a->tls_opts;
  *out = NULL;
  if (!a->tls) return 0;
  o.client_ca = NULL;
  if (net_tls_create(&o, 0, out, err, cap)) return -1;
  if (mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) !=
          MOSQ_ERR_SUCCESS ||
      mosquitto_void_option(
          m, MOSQ_OPT_SSL_CTX,
          net_tls_ssl_ctx(*out, a->tls_name ? a->tls_name : a->host)) !=
          MOSQ_ERR_SUCCESS) {
    net_tls_free(*out);
    *out = NULL;
    return say(err, cap, "%s", "this libmosquitto has no TLS");
  }
  return 0;
}

/* libmosquitto only logs why TLS failed: keep the reason of the last
 * OpenSSL error it reports ("error:0A00045C:SSL routines::tlsv13 alert
 * certificate required" keeps the words after the last colon). */
static void keep_ssl_error(char *dst, size_t cap, int level, const char *str) {
  const char *p;
  if (level != MOSQ_LOG_ERR || strncmp(str, "OpenSSL Error", 13)) return;
  p = strrchr(str, ':');
  snprintf(dst, cap, "%s", p && p[1] ? p + 1 : str);
}

/* After a connection to the broker failed: why, when TLS was the cause,
 * into err as "TLS with broker HOST:PORT failed: ...".  2 when no retry
 * mends it (the broker's certificate did not check out, or the broker
 * sent an alert: it refused this client's certificate or its lack of
 * one), 1 for another TLS error, 0 when TLS said nothing.  Both reasons
 * are forgotten. */
static int tls_why(net_tls *t, char *logged, const net_mqtt_addr *a, char *err,
                   size_t cap) {
  char why[256];
  int got = net_tls_verify_err(t, why, sizeof why) ? 2 : 0;
  if (!got && logged[0]) {
    got = strstr(logged, "alert") ? 2 : 1;
    snprintf(why, sizeof why, "%s%s",
             got == 2 ? "the broker refused the connection: " : "", logged);
  }
  logged[0] = 0;
  if (got)
    snprintf(err, cap, "TLS with broker %s:%d failed: %s", a->host, a->port,
             why);
  return got;
}

/* Publish one message: header then body (QoS 1).  0, or -1 when the
 * client is not connected or out of memory. */
static int publish(struct mosquitto *m, const char *topic, int type,
                   uint64_t sid, uint32_t seq, const void *body, size_t n) {
  unsigned char stack[4096], *msg = stack;
  int rc;
  if (n + NET_MQTT_HEADER > sizeof stack &&
      !(msg = (unsigned char *)malloc(n + NET_MQTT_HEADER)))
    return -1;
  net_mqtt_header(msg, type, sid, seq);
  if (n) memcpy(msg + NET_MQTT_HEADER, body, n);
  rc = mosquitto_publish(m, NULL, topic, (int)(n + NET_MQTT_HEADER), msg, 1,
                         false);
  if (msg != stack) free(msg);
  return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

/* ---------------------------------------------------------------------
 * Device side
 * ------------------------------------------------------------------- */
typedef struct chunk {
  struct chunk *next;
  size_t len, off;
  unsigned char data[];
} chunk;

struct net_mqtt_link {
  net_mqtt_addr a;
  int timeout_s;
  struct mosquitto *m;
  char up[400], down[400];
  int connected; /* CONNACK came */
  int ready;     /* and SUBACK for the down topic */
  int sub_mid;
  int ever;      /* CONNACKs seen: after the first, reconnects */
  int made;      /* mosquitto_connect succeeded once: reconnect since */
  uint64_t rng, sid;
  uint32_t rx_next, tx_next;
  int broken; /* this attempt's stream is over: gap, END, disconnect */
  unsigned long unacked; /* messages published, their PUBACK not come */
  chunk *head, *tail;
  net_tls *tls;     /* mqtts: the context libmosquitto connects with */
  char tlserr[200]; /* the last OpenSSL error libmosquitto logged */
  int perm;         /* TLS failed in a way no retry mends */
  net_mqtt_stats st;
  char err[512];
};

static void queue_clear(net_mqtt_link *l) {
  while (l->head) {
    chunk *c = l->head;
    l->head = c->next;
    free(c);
  }
  l->tail = NULL;
}

static void link_on_connect(struct mosquitto *m, void *obj, int rc) {
  net_mqtt_link *l = (net_mqtt_link *)obj;
  if (rc) {
    snprintf(l->err, sizeof l->err, "broker %s:%d refused: %s", l->a.host,
             l->a.port, mosquitto_connack_string(rc));
    return;
  }
  l->connected = 1;
  if (l->ever++) l->st.reconnects++;
  /* A clean session holds no subscription: ask again each time. */
  mosquitto_subscribe(m, &l->sub_mid, l->down, 1);
}

static void link_on_subscribe(struct mosquitto *m, void *obj, int mid, int n,
                              const int *granted) {
  net_mqtt_link *l = (net_mqtt_link *)obj;
  (void)m;
  if (mid == l->sub_mid && n == 1 && granted[0] <= 2) l->ready = 1;
}

static void link_on_publish(struct mosquitto *m, void *obj, int mid) {
  net_mqtt_link *l = (net_mqtt_link *)obj;
  (void)m;
  (void)mid;
  if (l->unacked) l->unacked--;
}

static void link_on_disconnect(struct mosquitto *m, void *obj, int rc) {
  net_mqtt_link *l = (net_mqtt_link *)obj;
  (void)m;
  (void)rc;
  l->connected = l->ready = 0;
  l->broken = 1; /* what was in flight may be lost */
  l->unacked = 0;
}

static void link_on_log(struct mosquitto *m, void *obj, int level,
                        const char *str) {
  net_mqtt_link *l = (net_mqtt_link *)obj;
  (void)m;
  keep_ssl_error(l->tlserr, sizeof l->tlserr, level, str);
}

static void link_on_message(struct mosquitto *m, void *obj,
                            const struct mosquitto_message *msg) {
  net_mqtt_link *l = (net_mqtt_link *)obj;
  mhead h;
  chunk *c;
  size_t n;
  (void)m;
  if (head_parse(msg->payload, msg->payloadlen, &h)) {
    l->st.bad++;
    return;
  }
  if (h.sid != l->sid || !l->sid) {
    l->st.foreign++;
    return;
  }
  if (h.type == NET_MQTT_END) {
    if (!l->broken) l->st.ends++;
    l->broken = 1;
    return;
  }
  if (l->broken) return; /* the session already failed; let it end */
  switch (seq_judge(h.seq, l->rx_next)) {
  case M_DUP:
    l->st.duplicates++;
    return;
  case M_GAP:
    l->st.gaps++;
    l->broken = 1;
    return;
  }
  l->rx_next++;
  l->st.received++;
  n = (size_t)msg->payloadlen - NET_MQTT_HEADER;
  if (!n) return;
  if (!(c = (chunk *)malloc(sizeof *c + n))) {
    l->broken = 1; /* a byte lost is a gap too */
    return;
  }
  c->next = NULL;
  c->len = n;
  c->off = 0;
  memcpy(c->data, (const unsigned char *)msg->payload + NET_MQTT_HEADER, n);
  if (l->tail)
    l->tail->next = c;
  else
    l->head = c;
  l->tail = c;
  l->st.bytes_received += n;
}

net_mqtt_link *net_mqtt_link_new(const net_mqtt_addr *a, int timeout_s) {
  net_mqtt_link *l = (net_mqtt_link *)calloc(1, sizeof *l);
  if (!l) return NULL;
  l->a = *a;
  l->timeout_s = timeout_s > 0 ? timeout_s : 30;
  snprintf(l->up, sizeof l->up, "%s/%s/up", a->prefix, a->device);
  snprintf(l->down, sizeof l->down, "%s/%s/down", a->prefix, a->device);
  /* Clean session: after a reconnect the broker keeps nothing for us,
   * which is what the sequence numbers expect (lost, never stale). */
  if (!(l->m = mosquitto_new(NULL, true, l))) {
    free(l);
    return NULL;
  }
  mosquitto_connect_callback_set(l->m, link_on_connect);
  mosquitto_disconnect_callback_set(l->m, link_on_disconnect);
  mosquitto_subscribe_callback_set(l->m, link_on_subscribe);
  mosquitto_message_callback_set(l->m, link_on_message);
  mosquitto_publish_callback_set(l->m, link_on_publish);
  mosquitto_log_callback_set(l->m, link_on_log);
  mqtt_tune(l->m);
  /* Unreadable TLS files fail every connect, in their own words. */
  if (tls_setup(l->m, a, &l->tls, l->err, sizeof l->err)) l->perm = 1;
  return l;
}

static int64_t link_send(void *ctx, const void *buf, size_t n) {
  net_mqtt_link *l = (net_mqtt_link *)ctx;
  size_t k = n > MAX_PAYLOAD ? MAX_PAYLOAD : n;
  if (l->broken || !l->connected) return SYNC_ECLOSED;
  if (publish(l->m, l->up, NET_MQTT_DATA, l->sid, l->tx_next, buf, k))
    return SYNC_ECLOSED;
  l->unacked++;
  l->tx_next++;
  l->st.sent++;
  l->st.bytes_sent += k;
  return (int64_t)k;
}

static int64_t link_recv(void *ctx, void *buf, size_t cap) {
  net_mqtt_link *l = (net_mqtt_link *)ctx;
  double until = mono() + l->timeout_s;
  while (!l->head) {
    int rc;
    if (l->broken) return SYNC_ECLOSED;
    if (mono() > until) return SYNC_ETIMEOUT;
    rc = mosquitto_loop(l->m, 100, 1);
    if (rc != MOSQ_ERR_SUCCESS && !l->head) {
      l->connected = l->ready = 0;
      l->broken = 1;
    }
  }
  {
    chunk *c = l->head;
    size_t k = c->len - c->off < cap ? c->len - c->off : cap;
    memcpy(buf, c->data + c->off, k);
    if ((c->off += k) == c->len) {
      l->head = c->next;
      if (!l->head) l->tail = NULL;
      free(c);
    }
    return (int64_t)k;
  }
}

/* A connection attempt failed: TLS's reason when it has one (l->perm
 * when no retry mends it), else fallback. */
static void link_fail(net_mqtt_link *l, const char *fallback) {
  int why =
      l->tls ? tls_why(l->tls, l->tlserr, &l->a, l->err, sizeof l->err) : 0;
  if (why == 2)
    l->perm = 1;
  else if (!why && !l->err[0])
    snprintf(l->err, sizeof l->err, "%s", fallback);
}

/* The broker closed the connection before CONNACK, in words.  Over
 * TLS, a broker that ends the handshake is no TLS listener; one that
 * takes the handshake and then drops the connection most likely refused
 * the client's certificate (or its lack of one), with an alert that a
 * reset overtook. */
static void closed_why(const net_mqtt_link *l, int handshook, char *why,
                       size_t cap) {
  snprintf(why, cap, "broker %s:%d closed the connection%s", l->a.host,
           l->a.port,
           !l->tls      ? ""
           : !handshook ? " during the TLS handshake (is it a TLS port?)"
           : l->a.tls_opts.cert
               ? " after the TLS handshake: it may not accept this "
                 "client's certificate (see its log)"
               : " after the TLS handshake: it may require a client "
                 "certificate (see its log)");
}

/* Connect (when not connected) and wait for the subscription.  0, or -1
 * with l->err set. */
static int link_up(net_mqtt_link *l) {
  double until = mono() + l->timeout_s;
  char why[512];
  int rc, handshook = 0;
  /* Nothing turned the loop since the last session: find out now whether
   * the connection died meanwhile (a broker restart), and take in what
   * came (late messages of the last session, dropped as foreign). */
  if (l->connected && mosquitto_loop(l->m, 0, 1) != MOSQ_ERR_SUCCESS)
    l->connected = 0;
  if (!l->connected) {
    l->ready = 0;
    l->err[0] = l->tlserr[0] = 0;
    net_tls_verify_err(l->tls, why, sizeof why); /* an old one: forget */
    rc = l->made ? mosquitto_reconnect(l->m)
                 : mosquitto_connect(l->m, l->a.host, l->a.port, KEEPALIVE);
    if (rc == MOSQ_ERR_ERRNO && l->tls && errno == EPROTO)
      /* Writing CONNECT failed: the handshake was through (libmosquitto
       * writes nothing before), and the broker had closed. */
      closed_why(l, 1, why, sizeof why);
    else if (rc != MOSQ_ERR_SUCCESS)
      snprintf(why, sizeof why, "cannot connect to broker %s:%d: %s", l->a.host,
               l->a.port,
               rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    if (rc != MOSQ_ERR_SUCCESS) {
      link_fail(l, why);
      return -1;
    }
    l->made = 1;
  }
  while (!l->ready) {
    if (mono() > until || l->err[0]) {
      snprintf(why, sizeof why, "broker %s:%d did not answer", l->a.host,
               l->a.port);
      link_fail(l, why);
      mosquitto_disconnect(l->m);
      l->connected = 0;
      return -1;
    }
    if (mosquitto_loop(l->m, 100, 1) != MOSQ_ERR_SUCCESS) {
      closed_why(l, handshook, why, sizeof why);
      link_fail(l, why);
      l->connected = 0;
      return -1;
    }
    if (l->tls && !handshook) {
      SSL *ssl = (SSL *)mosquitto_ssl_get(l->m);
      handshook = ssl && SSL_is_init_finished(ssl);
    }
  }
  return 0;
}

int net_mqtt_connect(void *link, sync_transport *t) {
  net_mqtt_link *l = (net_mqtt_link *)link;
  if (l->perm) return SYNC_EPERM; /* l->err says why */
  if (link_up(l)) return l->perm ? SYNC_EPERM : SYNC_ECLOSED;
  l->err[0] = 0; /* an earlier attempt's words no longer hold */
  queue_clear(l);
  l->sid = new_sid(&l->rng);
  l->unacked = 0;
  l->rx_next = l->tx_next = 0;
  l->broken = 0;
  l->st.sessions++;
  t->ctx = l;
  t->send = link_send;
  t->recv = link_recv;
  return 0;
}

void net_mqtt_disconnect(void *link, sync_transport *t) {
  net_mqtt_link *l = (net_mqtt_link *)link;
  (void)t;
  if (l->connected) {
    double until = mono() + (l->timeout_s < 5 ? l->timeout_s : 5);
    if (!publish(l->m, l->up, NET_MQTT_END, l->sid, l->tx_next, NULL, 0))
      l->unacked++;
    /* The session's last messages may still wait in libmosquitto's
     * queue, which a disconnect drops: the server would never see them
     * (its session then times out as failed).  Wait until the broker
     * has taken every one (its PUBACK), or the link is lost, a few
     * seconds at most. */
    while (l->connected && l->unacked && mono() < until)
      if (mosquitto_loop(l->m, 50, 1) != MOSQ_ERR_SUCCESS) break;
  }
  l->broken = 1;
  queue_clear(l);
}

const char *net_mqtt_link_error(const net_mqtt_link *l) { return l->err; }

void net_mqtt_link_stats(const net_mqtt_link *l, net_mqtt_stats *out) {
  *out = l->st;
}

void net_mqtt_link_free(net_mqtt_link *l) {
  if (!l) return;
  if (l->connected) {
    mosquitto_disconnect(l->m);
    mosquitto_loop(l->m, 0, 1);
  }
  mosquitto_destroy(l->m);
  net_tls_free(l->tls);
  queue_clear(l);
  free(l);
}

/* ---------------------------------------------------------------------
 * Server side
 * ------------------------------------------------------------------- */
/* One device the server has heard from.  Its session (s) runs while sid
 * is set; recent holds the ids of its ended sessions, whose late
 * messages are dropped. */
typedef struct mdev {
  char name[128];
  char down[400];
  sync_session *s;
  uint64_t sid;
  uint32_t rx_next, tx_next;
  uint64_t recent[RECENT];
  unsigned nrecent;
  double last;
  int ending; /* END came: abort once what it gave is out */
  int owe_end; /* aborted while away from the broker: END when back */
  uint64_t owed_sid;
  uint32_t owed_seq;
} mdev;

struct net_mqtt_server {
  net_mqtt_addr a;
  net_mqtt_server_ops ops;
  char sub[600];
  size_t plen; /* strlen(a.prefix) */
  int idle_s;
  struct mosquitto *m;
  int connected, ready, sub_mid, ever, made;
  int dialled; /* a connect went out; its CONNACK may be on the way */
  double next_try;
  mdev *dev;
  unsigned ndev, cap;
  int ended; /* sessions that ended in this step */
  unsigned char out[64 << 10];
  net_tls *tls;     /* mqtts: the context libmosquitto connects with */
  char tlserr[200]; /* the last OpenSSL error libmosquitto logged */
  net_mqtt_stats st;
  char err[512];
};

/* The device a topic PREFIX/DEVICE/up names, or NULL (not one). */
static mdev *dev_of(net_mqtt_server *sv, const char *topic) {
  const char *d, *e;
  size_t n;
  unsigned i;
  if (strncmp(topic, sv->a.prefix, sv->plen) || topic[sv->plen] != '/')
    return NULL;
  d = topic + sv->plen + 1;
  if (!(e = strchr(d, '/')) || strcmp(e, "/up")) return NULL;
  n = (size_t)(e - d);
  if (!n || n >= sizeof sv->dev->name) return NULL;
  for (i = 0; i < sv->ndev; i++)
    if (!strncmp(sv->dev[i].name, d, n) && !sv->dev[i].name[n])
      return &sv->dev[i];
  if (sv->ndev == MAX_DEVICES) return NULL; /* a flood of names: drop */
  if (sv->ndev == sv->cap) {
    unsigned cap = sv->cap ? sv->cap * 2 : 16;
    mdev *nd = (mdev *)realloc(sv->dev, cap * sizeof *nd);
    if (!nd) return NULL;
    sv->dev = nd;
    sv->cap = cap;
  }
  memset(&sv->dev[sv->ndev], 0, sizeof *sv->dev);
  memcpy(sv->dev[sv->ndev].name, d, n);
  snprintf(sv->dev[sv->ndev].down, sizeof sv->dev->down, "%s/%.*s/down",
           sv->a.prefix, (int)n, d);
  return &sv->dev[sv->ndev++];
}

static int dev_recent(const mdev *d, uint64_t sid) {
  unsigned i;
  for (i = 0; i < d->nrecent && i < RECENT; i++)
    if (d->recent[i] == sid) return 1;
  return 0;
}

/* End d's session: told to ended, freed, its id remembered.  end: tell
 * the device (END) that its session is gone. */
static void dev_end(net_mqtt_server *sv, mdev *d, int end) {
  if (!d->sid) return;
  if (d->s && sync_session_status(d->s) == 0)
    sync_session_abort(d->s, SYNC_ECLOSED);
  if (end && (!d->s || sync_session_status(d->s) != 1)) {
    if (!sv->connected ||
        publish(sv->m, d->down, NET_MQTT_END, d->sid, d->tx_next, NULL, 0)) {
      d->owe_end = 1;
      d->owed_sid = d->sid;
      d->owed_seq = d->tx_next;
    }
  }
  if (d->s && sv->ops.ended) sv->ops.ended(sv->ops.ctx, d->name, d->s);
  sync_session_free(d->s);
  d->s = NULL;
  d->recent[d->nrecent++ % RECENT] = d->sid;
  d->sid = 0;
  d->ending = 0;
  sv->st.sessions++;
  sv->ended++;
}

/* A first message (number 0) of a new session from d. */
static int dev_start(net_mqtt_server *sv, mdev *d, uint64_t sid) {
  dev_end(sv, d, 0); /* replaced: the device has moved on already */
  d->sid = sid;
  d->rx_next = d->tx_next = 0;
  d->last = mono();
  if (sv->ops.open(sv->ops.ctx, d->name, &d->s) || !d->s) {
    d->s = NULL;
    dev_end(sv, d, 1);
    return -1;
  }
  return 0;
}

static void srv_on_message(struct mosquitto *m, void *obj,
                           const struct mosquitto_message *msg) {
  net_mqtt_server *sv = (net_mqtt_server *)obj;
  mdev *d;
  mhead h;
  (void)m;
  if (head_parse(msg->payload, msg->payloadlen, &h) ||
      !(d = dev_of(sv, msg->topic))) {
    sv->st.bad++;
    return;
  }
  if (h.sid != d->sid) {
    /* A new session starts at number 0 with an id never seen. */
    if (h.type == NET_MQTT_DATA && h.seq == 0 && !dev_recent(d, h.sid)) {
      if (dev_start(sv, d, h.sid)) return;
    } else {
      if (h.type != NET_MQTT_END) sv->st.foreign++;
      return;
    }
  }
  if (h.type == NET_MQTT_END) {
    sv->st.ends++;
    d->ending = 1;
    return;
  }
  switch (seq_judge(h.seq, d->rx_next)) {
  case M_DUP:
    sv->st.duplicates++;
    return;
  case M_GAP:
    sv->st.gaps++;
    dev_end(sv, d, 1);
    return;
  }
  d->rx_next++;
  d->last = mono();
  sv->st.received++;
  sv->st.bytes_received += (uint64_t)msg->payloadlen - NET_MQTT_HEADER;
  {
    sync_inbuf in = {(const unsigned char *)msg->payload + NET_MQTT_HEADER,
                     (size_t)msg->payloadlen - NET_MQTT_HEADER, 0};
    sync_session_recv(d->s, &in);
  }
}

static void srv_on_connect(struct mosquitto *m, void *obj, int rc) {
  net_mqtt_server *sv = (net_mqtt_server *)obj;
  if (rc) {
    snprintf(sv->err, sizeof sv->err, "broker %s:%d refused: %s", sv->a.host,
             sv->a.port, mosquitto_connack_string(rc));
    return;
  }
  sv->connected = 1;
  if (sv->ever++) sv->st.reconnects++;
  mosquitto_subscribe(m, &sv->sub_mid, sv->sub, 1);
}

static void srv_on_subscribe(struct mosquitto *m, void *obj, int mid, int n,
                             const int *granted) {
  net_mqtt_server *sv = (net_mqtt_server *)obj;
  (void)m;
  if (mid == sv->sub_mid && n == 1 && granted[0] <= 2) sv->ready = 1;
}

static void srv_on_disconnect(struct mosquitto *m, void *obj, int rc) {
  net_mqtt_server *sv = (net_mqtt_server *)obj;
  (void)m;
  (void)rc;
  sv->connected = sv->ready = sv->dialled = 0;
}

static void srv_on_log(struct mosquitto *m, void *obj, int level,
                       const char *str) {
  net_mqtt_server *sv = (net_mqtt_server *)obj;
  (void)m;
  keep_ssl_error(sv->tlserr, sizeof sv->tlserr, level, str);
}

/* Publish what d's session gives; end it when it is over. */
static void dev_flush(net_mqtt_server *sv, mdev *d) {
  if (d->owe_end && sv->ready &&
      !publish(sv->m, d->down, NET_MQTT_END, d->owed_sid, d->owed_seq, NULL, 0))
    d->owe_end = 0;
  if (!d->sid) return;
  while (sync_session_status(d->s) == 0 && sync_session_want_write(d->s)) {
    sync_outbuf o = {sv->out, sizeof sv->out, 0};
    int64_t n = sync_session_send(d->s, &o);
    if (n <= 0) break;
    if (publish(sv->m, d->down, NET_MQTT_DATA, d->sid, d->tx_next, sv->out,
                (size_t)n)) {
      sync_session_abort(d->s, SYNC_ECLOSED);
      break;
    }
    d->tx_next++;
    sv->st.sent++;
    sv->st.bytes_sent += (uint64_t)n;
  }
  /* A failed session may still have its error to say: send drains it
   * above before status turns nonzero, so a nonzero status ends here. */
  if (sync_session_status(d->s) != 0)
    dev_end(sv, d, sync_session_status(d->s) != 1);
  else if (d->ending || mono() - d->last > sv->idle_s)
    dev_end(sv, d, !d->ending);
}

static int srv_connect(net_mqtt_server *sv) {
  int rc = sv->made ? mosquitto_reconnect(sv->m)
                    : mosquitto_connect(sv->m, sv->a.host, sv->a.port,
                                        KEEPALIVE);
  if (rc != MOSQ_ERR_SUCCESS) {
    snprintf(sv->err, sizeof sv->err, "cannot connect to broker %s:%d: %s",
             sv->a.host, sv->a.port,
             rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    return -1;
  }
  sv->made = 1;
  return 0;
}

int net_mqtt_server_step(net_mqtt_server *sv, int timeout_ms) {
  unsigned i;
  sv->ended = 0;
  if (!sv->connected) {
    /* Away from the broker: whatever was in flight may be lost, so every
     * running session ends; the devices start new ones. */
    for (i = 0; i < sv->ndev; i++) dev_end(sv, &sv->dev[i], 1);
    if (!sv->dialled || mono() > sv->next_try) {
      /* Not dialled yet, or the last dial got no CONNACK in time. */
      sv->dialled = srv_connect(sv) == 0;
      sv->next_try = mono() + (sv->dialled ? 2.0 : 0.2);
    }
    if (!sv->dialled) {
      struct timespec ts = {0, 50 * 1000000L};
      nanosleep(&ts, NULL);
      return sv->ended;
    }
  }
  if (mosquitto_loop(sv->m, timeout_ms, 1) != MOSQ_ERR_SUCCESS)
    sv->connected = sv->ready = sv->dialled = 0;
  for (i = 0; i < sv->ndev; i++) dev_flush(sv, &sv->dev[i]);
  return sv->ended;
}

int net_mqtt_server_open(const net_mqtt_addr *a, const char *share,
                         const net_mqtt_server_ops *ops, int idle_s,
                         net_mqtt_server **out, char *err, size_t errcap) {
  net_mqtt_server *sv = (net_mqtt_server *)calloc(1, sizeof *sv);
  double until;
  *out = NULL;
  if (!sv) return say(err, errcap, "%s", "out of memory");
  sv->a = *a;
  sv->ops = *ops;
  sv->plen = strlen(a->prefix);
  sv->idle_s = idle_s > 0 ? idle_s : 60;
  if (share)
    snprintf(sv->sub, sizeof sv->sub, "$share/%s/%s/+/up", share, a->prefix);
  else
    snprintf(sv->sub, sizeof sv->sub, "%s/+/up", a->prefix);
  if (!(sv->m = mosquitto_new(NULL, true, sv))) {
    free(sv);
    return say(err, errcap, "%s", "out of memory");
  }
  mosquitto_connect_callback_set(sv->m, srv_on_connect);
  mosquitto_disconnect_callback_set(sv->m, srv_on_disconnect);
  mosquitto_subscribe_callback_set(sv->m, srv_on_subscribe);
  mosquitto_message_callback_set(sv->m, srv_on_message);
  mosquitto_log_callback_set(sv->m, srv_on_log);
  mqtt_tune(sv->m);
  if (tls_setup(sv->m, a, &sv->tls, err, errcap)) {
    net_mqtt_server_free(sv);
    return -1;
  }
  until = mono() + 10;
  if (srv_connect(sv) == 0)
    while (!sv->ready && !sv->err[0] && mono() < until)
      if (mosquitto_loop(sv->m, 100, 1) != MOSQ_ERR_SUCCESS) {
        snprintf(sv->err, sizeof sv->err,
                 "broker %s:%d closed the connection%s", a->host, a->port,
                 sv->tls ? " (over TLS: it may require a client certificate "
                           "or refuse this one; see its log)"
                         : "");
        break;
      }
  if (!sv->ready) {
    /* TLS's reason first: it is why the broker closed or never answered. */
    if (!sv->tls || !tls_why(sv->tls, sv->tlserr, a, err, errcap))
      say(err, errcap, "%s",
          sv->err[0] ? sv->err : "the broker did not take the subscription");
    net_mqtt_server_free(sv);
    return -1;
  }
  *out = sv;
  return 0;
}

void net_mqtt_server_run(net_mqtt_server *sv, volatile sig_atomic_t *stop,
                         long max_sessions) {
  long ended = 0;
  while (!*stop && (max_sessions < 0 || ended < max_sessions))
    ended += net_mqtt_server_step(sv, 200);
}

unsigned net_mqtt_server_running(const net_mqtt_server *sv) {
  unsigned i, n = 0;
  for (i = 0; i < sv->ndev; i++) n += sv->dev[i].sid != 0;
  return n;
}

void net_mqtt_server_stats(const net_mqtt_server *sv, net_mqtt_stats *out) {
  *out = sv->st;
}

void net_mqtt_server_free(net_mqtt_server *sv) {
  unsigned i;
  if (!sv) return;
  for (i = 0; i < sv->ndev; i++) dev_end(sv, &sv->dev[i], 1);
  if (sv->connected) {
    mosquitto_loop(sv->m, 0, 1); /* the ENDs, to the socket */
    mosquitto_disconnect(sv->m);
  }
  mosquitto_destroy(sv->m);
  net_tls_free(sv->tls);
  free(sv->dev);
  free(sv);
}
