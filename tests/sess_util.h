/*
 * sess_util.h - running two sessions against each other in process: a
 * pump that moves bytes between them in chosen fragment sizes, with an
 * optional fault injector (drop, duplicate, reorder, truncate, corrupt)
 * and a byte budget that cuts the conversation at a given offset.
 */
#ifndef SYNC_SESS_UTIL_H
#define SYNC_SESS_UTIL_H

#include "merge_util.h"

typedef struct su_faults {
  unsigned drop, dup, swap, flip, cut; /* per mille, per piece moved */
} su_faults;

typedef struct su_pump {
  tu_rng *g;          /* fragment sizes and faults; NULL: whole pieces */
  size_t max_piece;   /* largest piece moved at once (0: 4096) */
  size_t budget;      /* bytes moved in all before the link dies; 0 = none */
  const su_faults *faults;
  size_t moved;
  int cut;            /* the budget ran out, or a fault cut the link */
  unsigned long rounds; /* su_run: turns of the conversation, each both
                           ways: the round trips it took */
} su_pump;

/* Move what a has to send to b, in pieces; returns bytes moved. */
static inline size_t su_move(su_pump *p, sync_session *a, sync_session *b) {
  unsigned char buf[8192], held[8192];
  size_t total = 0, nheld = 0;
  while (sync_session_want_write(a) && !p->cut) {
    sync_outbuf out;
    sync_inbuf in;
    size_t piece = p->max_piece ? p->max_piece : 4096;
    int64_t n;
    if (piece > sizeof buf) piece = sizeof buf;
    if (p->g) piece = 1 + (size_t)tu_below(p->g, piece);
    if (p->budget && p->moved + piece > p->budget) {
      piece = p->budget - p->moved;
      if (!piece) {
        p->cut = 1;
        break;
      }
    }
    out.ptr = buf;
    out.size = piece;
    out.pos = 0;
    n = sync_session_send(a, &out);
    if (n <= 0) break;
    p->moved += (size_t)n;
    total += (size_t)n;
    in.ptr = buf;
    in.size = (size_t)n;
    in.pos = 0;
    if (p->faults && p->g) {
      const su_faults *f = p->faults;
      unsigned roll = (unsigned)tu_below(p->g, 1000);
      if (roll < f->cut) {
        p->cut = 1;
        break;
      }
      roll = (unsigned)tu_below(p->g, 1000);
      if (roll < f->drop) continue; /* lost */
      roll = (unsigned)tu_below(p->g, 1000);
      if (roll < f->flip) buf[tu_below(p->g, (uint64_t)n)] ^= (unsigned char)(1 + tu_below(p->g, 255));
      roll = (unsigned)tu_below(p->g, 1000);
      if (roll < f->swap && !nheld) { /* hold it back: goes after the next */
        memcpy(held, buf, (size_t)n);
        nheld = (size_t)n;
        continue;
      }
      sync_session_recv(b, &in);
      if (nheld) {
        sync_inbuf h = {held, nheld, 0};
        sync_session_recv(b, &h);
        nheld = 0;
      }
      roll = (unsigned)tu_below(p->g, 1000);
      if (roll < f->dup) {
        in.pos = 0;
        sync_session_recv(b, &in);
      }
      continue;
    }
    sync_session_recv(b, &in);
  }
  if (nheld) {
    sync_inbuf h = {held, nheld, 0};
    sync_session_recv(b, &h);
  }
  return total;
}

/* Run client c and server s until both are over or nothing moves.
 * Returns 1 when both are done. */
static inline int su_run(su_pump *p, sync_session *c, sync_session *s) {
  unsigned long rounds;
  for (rounds = 0; rounds < 1000000; rounds++) {
    size_t n = su_move(p, c, s) + su_move(p, s, c);
    p->rounds = rounds + 1;
    if (p->cut) {
      /* The link is gone: each side sees its transport end. */
      sync_session_abort(c, SYNC_ECLOSED);
      sync_session_abort(s, SYNC_ECLOSED);
      return 0;
    }
    if (sync_session_status(c) && sync_session_status(s)) break;
    if (!n) {
      /* Nothing moves: a side waits for bytes that were lost. */
      sync_session_abort(c, SYNC_ETIMEOUT);
      sync_session_abort(s, SYNC_ETIMEOUT);
      return 0;
    }
  }
  return sync_session_status(c) == 1 && sync_session_status(s) == 1;
}

/* One session between client replica c and server replica s with the
 * given options (NULL: defaults), whole pieces, no faults.  Returns the
 * client's status; stats may be NULL. */
/* A server's write check (check_write) that refuses the row whose key
 * is the NUL-terminated string ctx. */
static inline int su_refuse_key(void *ctx, const sync_write *w, int *reason,
                                char *text, size_t cap) {
  const char *key = (const char *)ctx;
  (void)reason;
  (void)text;
  (void)cap;
  return w->key.len == strlen(key) && !memcmp(w->key.data, key, w->key.len);
}

static inline int su_sync(mu_rep *c, mu_rep *s, const sync_session_opts *co,
                          const sync_session_opts *so, sync_session_stats *cst,
                          sync_session_stats *sst) {
  sync_session_opts dc, ds;
  sync_session *a, *b;
  su_pump p;
  int rc;
  memset(&dc, 0, sizeof dc);
  memset(&ds, 0, sizeof ds);
  if (!co) co = &dc;
  if (!so) so = &ds;
  ds = *so;
  ds.server = 1;
  TU_OK(sync_session_create(c->env, co, &a));
  TU_OK(sync_session_create(s->env, &ds, &b));
  memset(&p, 0, sizeof p);
  su_run(&p, a, b);
  rc = sync_session_status(a);
  if (cst) sync_session_stats_get(a, cst);
  if (sst) sync_session_stats_get(b, sst);
  sync_session_free(a);
  sync_session_free(b);
  return rc;
}

#endif
