/*
 * serve_mesh.c - 'synctl serve --peer ADDRESS ...': a server that keeps
 * itself in step with other servers.  Each peer gets a client session
 * from this server (both directions: what this server has that the peer
 * lacks, and the reverse) on an interval, and at once after rows change
 * here.  The sessions run in the server's poll loop beside the devices'
 * and never block it: two servers that dial each other at the same
 * moment each answer the other's session while their own runs.
 *
 * Relaying without echo is the session protocol's: the version vectors
 * of the handshake tell each side what the other holds, so a row that
 * went A -> B is not sent back from B to A, and a session with nothing
 * to move costs a handshake.  A change reached by a peer session marks
 * the other peers due, so a write spreads across the mesh in one hop per
 * server at most, and stops when every server holds it.
 */
#include "synctl.h"

#include "serve_mesh.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_SECONDS 1.0 /* a peer that could not be reached, again */

typedef struct mesh_peer {
  const char *addr;
  char host[256];
  net_conn *conn; /* its running session, or NULL */
  double next;    /* when a session is due (net_mono_seconds) */
  int due;        /* rows changed here since its last session began */
  int down;       /* the last attempt failed (said once) */
  int last_rc;    /* how the last session ended */
} mesh_peer;

struct ctl_mesh {
  ctl_mesh_opts o;
  sync_env *env;
  net_loop *loop;
  mesh_peer p[CTL_MAX_PEERS];
};

int ctl_mesh_create(const ctl_mesh_opts *o, sync_env *env, net_loop *loop,
                    ctl_mesh **out) {
  ctl_mesh *m = (ctl_mesh *)calloc(1, sizeof *m);
  int i;
  char port[32];
  *out = NULL;
  if (!m) return -1;
  m->o = *o;
  m->env = env;
  m->loop = loop;
  for (i = 0; i < o->npeers; i++) {
    m->p[i].addr = o->peers[i];
    if (net_split_addr(o->peers[i], m->p[i].host, sizeof m->p[i].host, port,
                       sizeof port))
      m->p[i].host[0] = 0;
    m->p[i].due = 1; /* the first session at once: a joining server's
                        initial stream */
  }
  *out = m;
  return 0;
}

void ctl_mesh_free(ctl_mesh *m) { free(m); }

void ctl_mesh_changed(ctl_mesh *m) {
  int i;
  if (!m) return;
  for (i = 0; i < m->o.npeers; i++) m->p[i].due = 1;
}

static void mesh_say(ctl_mesh *m, const mesh_peer *p, const char *fmt,
                     const char *what) {
  if (m->o.quiet) return;
  printf("serve: mesh peer %s: ", p->addr);
  printf(fmt, what);
  printf("\n");
  fflush(stdout);
}

/* Open a session to p in the loop, the connection made while the loop
 * runs (a far host that does not answer must not stall the devices).
 * A peer that cannot be reached is tried again after RETRY_SECONDS. */
static void mesh_open(ctl_mesh *m, mesh_peer *p, double now) {
  char err[300];
  sync_session_opts so;
  sync_session *s = NULL;
  int fd = net_dial_start(p->addr, err, sizeof err);
  if (fd < 0) {
    if (!p->down) mesh_say(m, p, "unreachable: %s (retrying)", err);
    p->down = 1;
    p->next = now + RETRY_SECONDS;
    return;
  }
  memset(&so, 0, sizeof so);
  so.mode = SYNC_BOTH;
  so.level = 3;
  if (m->o.token) {
    so.credential = m->o.token;
    so.credential_len = strlen(m->o.token);
  }
  if (sync_session_create(m->env, &so, &s) ||
      !(p->conn = net_loop_add(m->loop, fd, s))) {
    sync_session_free(s);
    close(fd);
    p->next = now + RETRY_SECONDS;
    return;
  }
  if (m->o.tls && net_tls_conn(m->o.tls, p->conn, p->host)) {
    /* no memory: the session goes as closed, and is tried again */
    sync_session_abort(s, SYNC_ENOMEM);
  }
  p->due = 0;
  p->next = now + m->o.interval_s;
}

void ctl_mesh_tick(ctl_mesh *m) {
  double now = net_mono_seconds();
  int i;
  if (!m) return;
  for (i = 0; i < m->o.npeers; i++) {
    mesh_peer *p = &m->p[i];
    if (p->conn) continue;
    if (now >= p->next || (p->due && !p->down)) mesh_open(m, p, now);
  }
}

/* Why the session with p failed, once per kind of failure. */
static void mesh_failed(ctl_mesh *m, mesh_peer *p, net_conn *c, int st,
                        const sync_session_stats *x) {
  const char *tls = net_tls_conn_err(c), *msg = sync_session_errmsg(c->s);
  char why[600];
  if (st == p->last_rc) return;
  if (st == SYNC_ESCHEMA)
    snprintf(why, sizeof why,
             "refused: the schemas differ (%s); nothing was exchanged, and "
             "it is tried again each interval",
             msg && msg[0] ? msg : "compare 'synctl schema' of both");
  else if (tls[0])
    snprintf(why, sizeof why, "TLS failed: %s", tls);
  else if (st == SYNC_ECLOSED && !x->bytes_received)
    snprintf(why, sizeof why, "unreachable (no answer; retrying)");
  else if (st == SYNC_EPERM)
    snprintf(why, sizeof why,
             "refused by its credentials (give --peer-token a token with "
             "relay there): %s",
             msg ? msg : "");
  else
    snprintf(why, sizeof why, "session failed: %s (%s)",
             sync_strerror(st ? st : SYNC_ECLOSED), msg ? msg : "");
  mesh_say(m, p, "%s", why);
}

int ctl_mesh_ended(ctl_mesh *m, net_conn *c) {
  int i, st;
  mesh_peer *p = NULL;
  sync_session_stats x;
  if (!m || c->listener != NET_OUTGOING) return 0;
  for (i = 0; i < m->o.npeers && !p; i++)
    if (m->p[i].conn == c) p = &m->p[i];
  if (!p) return 1;
  p->conn = NULL;
  st = sync_session_status(c->s);
  sync_session_stats_get(c->s, &x);
  if (st != 1) {
    mesh_failed(m, p, c, st, &x);
    p->last_rc = st;
    p->down = 1;
    p->next = net_mono_seconds() +
              (st == SYNC_ESCHEMA ? (double)m->o.interval_s : RETRY_SECONDS);
    return 1;
  }
  if (p->down && !m->o.quiet) mesh_say(m, p, "%s", "in step again");
  p->down = 0;
  p->last_rc = 1;
  if (x.applied.inserted + x.applied.updated + x.applied.deleted) {
    /* Rows came from p: the others may lack them. */
    for (i = 0; i < m->o.npeers; i++)
      if (&m->p[i] != p) m->p[i].due = 1;
  }
  if (!m->o.quiet && (x.rows_received || x.rows_sent)) {
    printf("serve: mesh peer %s: received %llu rows, sent %llu rows\n",
           p->addr, (unsigned long long)x.rows_received,
           (unsigned long long)x.rows_sent);
    fflush(stdout);
  }
  return 1;
}
