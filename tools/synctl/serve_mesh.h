/*
 * serve_mesh.h - the peering of 'synctl serve --peer': the server keeps
 * itself in step with other servers, each a full replica, by running
 * client sessions to them inside its own poll loop (docs/SYNCTL.md, "A
 * mesh of servers").
 */
#ifndef SYNCTL_SERVE_MESH_H
#define SYNCTL_SERVE_MESH_H

#include "tools/net/net.h"
#include "tools/net/tls.h"

#define CTL_MAX_PEERS 32

typedef struct ctl_mesh ctl_mesh;

typedef struct ctl_mesh_opts {
  const char *peers[CTL_MAX_PEERS]; /* HOST:PORT of each other server */
  int npeers;
  unsigned interval_s; /* a session with each peer at least this often */
  const char *token;   /* the credential shown to peers (NULL: none) */
  net_tls *tls;        /* a client context: the peers speak TLS */
  int quiet;
} ctl_mesh_opts;

/* Peering for the server of env on loop.  0, or -1 (no memory). */
int ctl_mesh_create(const ctl_mesh_opts *o, sync_env *env, net_loop *loop,
                    ctl_mesh **out);
void ctl_mesh_free(ctl_mesh *m); /* NULL is fine */
/* Before each poll: open the sessions that are due. */
void ctl_mesh_tick(ctl_mesh *m);
/* Rows changed here (a device's session applied some): every peer is
 * due now. */
void ctl_mesh_changed(ctl_mesh *m);
/* c's session ended: 1 when it was one of the mesh's (then handled:
 * logged, and the other peers told when it brought rows), 0 when not. */
int ctl_mesh_ended(ctl_mesh *m, net_conn *c);

#endif
