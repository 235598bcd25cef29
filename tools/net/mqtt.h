/*
 * mqtt.h - sync sessions carried over MQTT (QoS 1) through a broker,
 * with libmosquitto.  Outside the library, which stays sans-IO and knows
 * nothing of MQTT: this is an adapter between a session's byte stream
 * and MQTT messages, shared by synctl, the example, the bench and the
 * tests.  Not API: sync.h is the only public header.  docs/MQTT.md is
 * the specification (topics, the message header, what the broker must
 * guarantee).
 *
 * A device talks on two topics, PREFIX/DEVICE/up (device to server) and
 * PREFIX/DEVICE/down (server to device); one server peer subscribes to
 * PREFIX/+/up and runs a sync_session per device.  Each MQTT message
 * carries some bytes of one session's stream behind a 14-byte header
 * (magic, type, session id, sequence number): the receiver drops
 * duplicates, drops messages of other sessions, and ends the session on
 * a gap; the next session resumes after the last acknowledged chunk.
 *
 * With mqtts:// the connection to the broker is TLS (tools/net/tls.c's
 * OpenSSL context, handed to libmosquitto): the broker's certificate is
 * checked against a CA file and the host name, and a client certificate
 * is shown when the broker requires one.  The session runs unchanged
 * inside; TLS protects the hops to and from the broker, which sees the
 * stream bytes (docs/MQTT.md, "TLS").
 *
 * Functions that fail return -1 (or a SYNC_E* code where they say so);
 * none prints.  Call mosquitto_lib_init() once before any of them
 * (net_mqtt_init does) and before starting threads.
 */
#ifndef SYNC_NET_MQTT_H
#define SYNC_NET_MQTT_H

#include "tools/net/net.h"
#include "tools/net/tls.h"

#define NET_MQTT_PORT 1883
#define NET_MQTTS_PORT 8883 /* mqtts:// (TLS) */
#define NET_MQTT_HEADER 14  /* bytes before the stream bytes of a message */
#define NET_MQTT_MAGIC 0x53 /* 'S' */
#define NET_MQTT_DATA 1     /* message types */
#define NET_MQTT_END 2

/* Where to meet: the broker, the topic prefix (one or more levels) and
 * the device (one level: no '/', '+' or '#').  With tls (mqtts://), the
 * broker's certificate is checked against tls_opts.ca (required) and
 * must name tls_name (NULL: host); tls_opts.cert and .key are the
 * client certificate for a broker that requires one (.client_ca is not
 * used).  The parsers set tls; the caller sets the files, whose names
 * must outlive the links and servers made from the address. */
typedef struct net_mqtt_addr {
  char host[256];
  int port;
  char prefix[256];
  char device[128];
  int tls;
  net_tls_opts tls_opts;
  const char *tls_name;
} net_mqtt_addr;

/* What an endpoint saw.  Messages are MQTT messages; bytes are stream
 * bytes (headers not counted). */
typedef struct net_mqtt_stats {
  uint64_t sent, received;             /* data messages, in order */
  uint64_t bytes_sent, bytes_received;
  uint64_t duplicates; /* a sequence number already taken: dropped */
  uint64_t gaps;       /* a sequence number past the next: session ended */
  uint64_t bad;        /* too short, wrong magic or type: dropped */
  uint64_t foreign;    /* another (or an ended) session's: dropped */
  uint64_t ends;       /* END messages that ended a running session */
  uint64_t reconnects; /* connections to the broker after the first */
  uint64_t sessions;   /* sessions started (server: ended too) */
} net_mqtt_stats;

/* Once per process, before threads: mosquitto_lib_init; and its
 * undoing, after the last link or server is freed. */
void net_mqtt_init(void);
void net_mqtt_cleanup(void);

/* "[mqtt://|mqtts://]HOST[:PORT][/PREFIX]" (or "[V6]" for HOST) into
 * a->host, a->port (1883, or 8883 with mqtts://, when none), a->tls and,
 * when given, a->prefix (untouched otherwise).  0, or -1 with the reason
 * in err. */
int net_mqtt_parse_broker(const char *s, net_mqtt_addr *a, char *err,
                          size_t errcap);
/* "mqtt://HOST[:PORT]/PREFIX/DEVICE" (or mqtts://) into a, cleared
 * first: the last level is the device, the levels before it the prefix.
 * 0, or -1 with the reason. */
int net_mqtt_parse_url(const char *url, net_mqtt_addr *a, char *err,
                       size_t errcap);
/* Whether s is a topic prefix (levels without '+' or '#', none empty) or,
 * with level set, a single level.  0, or -1 with the reason in err. */
int net_mqtt_check_topic(const char *s, int level, char *err, size_t errcap);

/* The 14-byte header of a message of session sid, number seq. */
void net_mqtt_header(unsigned char h[NET_MQTT_HEADER], int type, uint64_t sid,
                     uint32_t seq);

/* ---------------------------------------------------------------------
 * Device side: a link for sync_retry_run (net_mqtt_connect and
 * net_mqtt_disconnect) or for one sync_session_run.
 * ------------------------------------------------------------------- */
typedef struct net_mqtt_link net_mqtt_link;

/* A link to a->host for device a->device, not connected yet (the first
 * net_mqtt_connect connects).  timeout_s: how long a session waits for
 * the server's next message (and for the broker to connect) before it
 * fails with SYNC_ETIMEOUT.  NULL when out of memory.  With a->tls, TLS
 * files that cannot be read make every net_mqtt_connect fail (SYNC_EPERM,
 * net_mqtt_link_error says why). */
net_mqtt_link *net_mqtt_link_new(const net_mqtt_addr *a, int timeout_s);
/* Connect to the broker when not connected (subscribed to the down topic
 * before it returns), start a new session id and set t over it: 0,
 * SYNC_ECLOSED (net_mqtt_link_error says why), or SYNC_EPERM when TLS
 * failed in a way another try cannot mend: the broker's certificate did
 * not check out ("TLS with broker HOST:PORT failed: certificate verify
 * failed: ..."), the broker refused this client's certificate or its
 * lack of one (a TLS alert), or the TLS files.  A sync_connect_fn. */
int net_mqtt_connect(void *link, sync_transport *t);
/* The attempt is over: publish END for its session id, so that the
 * server frees its side at once.  A sync_disconnect_fn. */
void net_mqtt_disconnect(void *link, sync_transport *t);
const char *net_mqtt_link_error(const net_mqtt_link *l);
void net_mqtt_link_stats(const net_mqtt_link *l, net_mqtt_stats *out);
/* Disconnect from the broker and free l (NULL ignored). */
void net_mqtt_link_free(net_mqtt_link *l);

/* ---------------------------------------------------------------------
 * Server side: one connection, subscribed to PREFIX/+/up, a session per
 * device.
 * ------------------------------------------------------------------- */
typedef struct net_mqtt_server net_mqtt_server;

typedef struct net_mqtt_server_ops {
  void *ctx;
  /* Device dev starts a session: make *s (a server session).  Nonzero:
   * the device is sent END and its messages are dropped. */
  int (*open)(void *ctx, const char *dev, sync_session **s);
  /* dev's session is over (done, failed, replaced or aborted); the
   * adapter frees it afterwards.  May be NULL. */
  void (*ended)(void *ctx, const char *dev, sync_session *s);
} net_mqtt_server_ops;

/* A server of a->prefix on a->host (a->device unused; with a->tls over
 * TLS, as a link).  share, when not NULL, subscribes through the shared
 * subscription $share/SHARE/..., for several server processes
 * (docs/MQTT.md says what the broker must do then).  idle_s: a session
 * silent this long is aborted.  0 and *out, or -1 with the reason in err
 * (cannot connect, TLS failed, not subscribed). */
int net_mqtt_server_open(const net_mqtt_addr *a, const char *share,
                         const net_mqtt_server_ops *ops, int idle_s,
                         net_mqtt_server **out, char *err, size_t errcap);
/* One turn: wait up to timeout_ms for messages, feed them to their
 * sessions, publish what the sessions give, end sessions that are done
 * or idle, and reconnect when the broker went away (every running
 * session is aborted then).  Returns the sessions that ended. */
int net_mqtt_server_step(net_mqtt_server *sv, int timeout_ms);
/* Steps until *stop is set or max_sessions sessions (< 0: any number)
 * have ended. */
void net_mqtt_server_run(net_mqtt_server *sv, volatile sig_atomic_t *stop,
                         long max_sessions);
/* Sessions running now. */
unsigned net_mqtt_server_running(const net_mqtt_server *sv);
void net_mqtt_server_stats(const net_mqtt_server *sv, net_mqtt_stats *out);
/* Abort every running session (told to ended), disconnect, free. */
void net_mqtt_server_free(net_mqtt_server *sv);

#endif
