/*
 * repair.h - range repair (docs/PROTOCOL.md, "Repair"): the hash-prefix
 * tree over each table's key hashes, the turns two replicas alternate to
 * find the leaves where they differ, and the rows those leaves exchange.
 * The session (session.c) carries the turns as REPAIR messages and the
 * rows as DATA frames; this module holds no socket and no state beyond
 * the last turn's node lists.
 */
#ifndef SX_REPAIR_H
#define SX_REPAIR_H

#include "reject.h"
#include "codec.h"

#define SX_RP_DEPTH 16 /* 64-bit key hashes, 4 bits per level */
#define SX_RP_LEAF                                                             \
  1                        /* a node with at most this many live rows on       \
                              this side is exchanged as a leaf */
#define SX_RP_MAXOPEN 1024 /* nodes split per turn; more are deferred */
#define SX_RP_MAXLEAF (16 * SX_RP_MAXOPEN + SYNC_MAX_TABLES)
#define SX_RP_MAXPASS 64 /* passes (root to leaves) per session */

typedef struct sx_repair sx_repair;

typedef struct sx_rp_opts {
  const unsigned char *tables;   /* the repaired tables (bit per table) */
  const unsigned char *writable; /* tables the peer's rows may write */
  int relay;
  uint64_t max_ahead_ms;
  sync_write_check_fn check; /* the server's write check, or NULL */
  void *check_ctx;
  int dry;          /* write nothing; report differing keys to on_diff */
  size_t budget;    /* rows per frame; 0 = 1,000 */
  size_t max_bytes; /* value bytes per frame, approximate; 0 = 1 MiB */
  const uint8_t *peer;
  int server; /* this side answers the session (it opens the repair) */
  sync_diff_fn on_diff;
  void *on_diff_ctx;
  /* Both sides hold the same schema and the repair covers every table
   * and writes: roots found equal then mean this side holds exactly the
   * peer's rows, so it sends its version vector with its roots and takes
   * the peer's (PROTOCOL.md, "Repair", "The vector at the end"). */
  int vec;
} sx_rp_opts;

typedef struct sx_rp_stats {
  uint64_t turns, nodes, rows, passes;
  uint64_t v0; /* the peer's log version when the repair began */
  int have_v0;
  /* per repaired table (tid[i]): the largest causal length the peer
   * collected, from its roots */
  unsigned nt, tid[SYNC_MAX_TABLES];
  uint64_t gccl[SYNC_MAX_TABLES];
  int done, equal;
  /* The roots were found equal, the peer's vector came with them: its
   * entries (16-byte site, u64 LE HLC; npvv of them) are what this side
   * now claims (vec only). */
  int take_vv;
  const unsigned char *pvv;
  size_t npvv;
  sync_apply_report applied;
} sx_rp_stats;

#ifndef SYNC_OMIT_REPAIR
SYNC_PRIVATE int sx_rp_new(sync_env *env, const sx_rp_opts *o, sx_repair **out);
SYNC_PRIVATE void sx_rp_free(sx_repair *rp);
/* Read the peer's turn (one reassembled REPAIR message): 0, with
 * *frame set when a DATA frame belongs to it, or SYNC_EPROTO (why in
 * rp's message). */
SYNC_PRIVATE int sx_rp_on_turn(sx_repair *rp, const unsigned char *p, size_t n,
                               int *frame);
/* The frame of the peer's turn: checked against the turn's leaves and
 * merged (rp keeps d in a dry run; it frees d in any case). */
SYNC_PRIVATE int sx_rp_on_frame(sx_repair *rp, sync_delta *d);
/* This side's next turn: the message into *msg (owned by rp, valid until
 * the next call) and the frame to send after it into *d (NULL: none; the
 * caller frees it).  first: the server's opening turn.  After a turn
 * that ends the repair, rp's stats say done. */
SYNC_PRIVATE int sx_rp_turn(sx_repair *rp, int first, const unsigned char **msg,
                            size_t *n, sync_delta **d);
SYNC_PRIVATE const sx_rp_stats *sx_rp_stats_of(const sx_repair *rp);
SYNC_PRIVATE const char *sx_rp_errmsg(const sx_repair *rp);
#endif

#endif
