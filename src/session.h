/*
 * session.h - what the files of the session share: the protocol's
 * constants (docs/PROTOCOL.md), the session's struct and states, and the
 * functions one part of it calls in another.  In amalgamation order:
 * session_msg.c (failure, framing, requests and phases),
 * session_refused.c, session_repair.c, session_hello.c, session_check.c,
 * session.c (the
 * state machine and the public calls), session_drive.c and retry.c; each
 * uses only the files before it.
 */
#ifndef SX_SESSION_H
#define SX_SESSION_H

#include "codec.h"
#include "reject.h"
#include "repair.h"

#define SX_PROTO 10
/* The frames of a session (SX_FMAJOR_SESS, codec.h) are named in HELLO. */
/* Every side accepts this much before the handshake, and announces at
 * least SX_MSG_MIN for after it (a LoRa payload is 51-222 bytes). */
#define SX_MSG_FLOOR 256
#define SX_MSG_MIN 64
#define SX_MSG_DEFAULT ((size_t)64 << 10)
#define SX_MSG_MAX ((size_t)16 << 20)
#define SX_MSG_OVERHEAD (1 + SX_VARINT_MAX + 4) /* at most */
#define SX_CTL_MAX ((size_t)4 << 20) /* a reassembled control message */
#define SX_CRED_MAX 1024
#define SX_MORE 0x80u

#define SX_M_HELLO 1
#define SX_M_WELCOME 2
#define SX_M_REQUEST 3
#define SX_M_DATA 4
#define SX_M_ERROR 5
#define SX_M_PLAN 6
#define SX_M_REPAIR 7
#define SX_M_REFUSED 8  /* server -> client: rows of its chunk refused */
#define SX_M_REVERTED 9 /* client -> server: those rows taken back */

#define SX_RF_MAX 4096  /* refusals kept from one chunk */
#define SX_RF_PART 256  /* refusals per REFUSED message */
#define SX_RF_ROUNDS 16 /* chunks refused whole in a row */
#define SX_RF_ENTRY_MAX                                                        \
  (3 * SX_VARINT_MAX + SYNC_MAX_KEY + 2 + SYNC_REFUSE_TEXT_MAX)
#define SX_M_SCHEMA 10 /* client -> server: its schema, when they differ */
#define SX_M_CHECK 11   /* client -> server: did anything change? */
#define SX_M_CHECKED 12 /* server -> client: 0 no, 1 yes: HELLO follows */

#define SX_RQ_FINAL 0x1u /* no chunk wanted: the phase is complete */
#define SX_RQ_DRY 0x2u   /* a dry run: do not record an acknowledgement */
#define SX_RQ_WHOLE 0x4u /* whole rows (the requester applies NEWER) */
#define SX_RQ_WINDOW 0x8u /* opens a window: var size after the vector */
#define SX_RQ_ACK 0x10u   /* acknowledges the oldest chunk in flight */
#define SX_RQ_LINEAGE 0x20u /* the mark's lineage follows the mark */

#define SX_WIN_DEFAULT 256 /* chunks in flight when the client says 0 */
#define SX_WIN_MAX 4096

#define SX_HF_DRY 0x1u /* HELLO flags */
#define SX_HF_REPAIR 0x2u

enum { SX_ROLE_RECV, SX_ROLE_SEND };
enum {
  SX_ST_HELLO,   /* server: waiting for HELLO */
  SX_ST_CHECK,   /* client: waiting for CHECKED */
  SX_ST_WELCOME, /* client: waiting for WELCOME */
  SX_ST_SCHEMA,  /* server: the schemas differ, waiting for the client's */
  SX_ST_RECV,    /* receiving phase: waiting for a chunk */
  SX_ST_SEND,    /* sending phase: waiting for a request */
  SX_ST_REPAIR,  /* repair: waiting for the peer's turn (or its frame) */
  SX_ST_ANSWER,  /* server: refusals sent, waiting for REVERTED */
  SX_ST_END,     /* every phase done: ends once the output is flushed */
  SX_ST_FAILING, /* an ERROR is queued: fails once it is flushed */
  SX_ST_OVER     /* status is final */
};

struct sync_session {
  sync_env *env;
  sx_alloc al;
  sync_session_opts o;
  int state, status;
  int roles[2], nphase, phase;
  int mode, dry;
  uint8_t peer[SX_SITE_LEN];
  /* This replica's site id when the session was made (read from the
   * file: another process may have renewed it since the env opened).
   * A renewal during the session shows as a chunk or request under
   * another id, and fails the session; the next one goes as the new id. */
  uint8_t self[SX_SITE_LEN];
  int have_peer;
  size_t peer_max; /* largest message the peer accepts */
  size_t own_max;
  unsigned char send_mask[SYNC_RIGHTS_BYTES]; /* tables we may send */
  unsigned char recv_mask[SYNC_RIGHTS_BYTES]; /* tables we may apply */
  unsigned char read_mask[SYNC_RIGHTS_BYTES]; /* server: the client's read
                                                 rights */
  int relay;
  sync_encoder *enc;
  sync_decoder *dec;
  /* What the frames of each direction leave out (codec.h, sx_fctx): set
   * up once the handshake names the peer (sx_fctx_setup). */
  sx_fctx tx, rx;
  int frame_out; /* encoder holds a frame still to send */
  /* input: the message being read */
  unsigned char hdr[1 + SX_VARINT_MAX];
  size_t hdr_len, need; /* need: payload + checksum once the header is known */
  sx_buf msg;
  sx_buf ctl;   /* control message being reassembled */
  int ctl_type; /* its type while fragments are coming, else 0 */
  /* output */
  sx_buf out;
  size_t out_pos;
  /* receiving phase */
  sx_cursor vcur;  /* dry run: where the next request starts */
  sx_mark vmark;   /* and the sender's mark there */
  sx_lineage vlin; /* and the mark's lineage */
  sx_scope vscope; /* and the scope it was served with */
  int vcur_ok;
  int lin_req; /* client: HELLO left views out, REQUESTs carry the
                  lineage (SX_RQ_LINEAGE) */
  uint64_t peer_hash; /* the peer's schema hash (HELLO, WELCOME) */
  int held;           /* a chunk held rows of tables we lack: the cursor
                         stays, the phase goes on from vcur */
  sync_apply_report phase_rep;
  sync_session_stats st;
  int failed_code;    /* code to send in the queued ERROR */
  int state_was_recv; /* the peer's ERROR came in a receiving phase */
  int state_was_check; /* or while a CHECK waited for its answer */
  char errmsg[256];
  uint64_t t0; /* made at, for the stats */
  int repair;  /* a repair session (repair.c) */
  sx_repair *rp;
  int rp_frame; /* the peer's turn announced a frame: DATA is due */
  /* refusals (docs/PROTOCOL.md, "Refusals") */
  sx_buf rf; /* server: entries of the chunk's refused rows; client:
                the REFUSED message being answered */
  size_t rf_n, rf_pos, rf_part; /* entries, next to send, in flight */
  int rf_over;                  /* server: more refusals than SX_RF_MAX */
  int rf_whole;                 /* server: the chunk was not applied */
  unsigned rf_rounds;           /* server: chunks refused whole in a row */
  sx_cursor rf_start, rf_end;   /* server: the answered chunk's range */
  sx_mark rf_mark;
  sx_lineage rf_lin;
  int rf_last;
  int rf_frame;       /* client: REFUSED announced the server's rows */
  uint64_t sent_snap; /* client: snapshot version of the last chunk cut */
  /* the window of a pulling phase (docs/PROTOCOL.md, "Window") */
  uint64_t phase_chunks; /* chunks this side cut in the phase */
  int rwin;             /* receiver: the window is open, requests ack */
  size_t win;           /* sender: chunks allowed in flight; 0 = none */
  size_t win_out;       /* sender: chunks sent and not acknowledged */
  int win_last;         /* sender: the last chunk of the run is cut */
  int win_waiting;      /* sender: counted as a wait already */
  unsigned win_flags;   /* sender: the opening request's flags */
  sync_request win_req; /* sender: where the next chunk starts, with the
                           opening request's vector */
  int checked; /* server: a CHECK came */
  int noted;   /* client: meta "server" names this session's peer */
};

/* session_msg.c */
/* End the session with rc: tell the peer (code and the words of fmt) and
 * fail once that is sent.  Returns rc. */
SYNC_PRIVATE int sx_sess_fail(sync_session *s, int rc, const char *fmt, ...);
/* End the session after this replica took a new site id in write
 * transaction x (NULL when it could not begin; rc: what the renewal
 * returned): commit x and fail with SYNC_EHISTORY, "WHY: it took a new
 * site id; sync again", or with the error that stopped it. */
SYNC_PRIVATE int sx_sess_renewed(sync_session *s, sync_txn *x, int rc,
                                 const char *why);
/* Payload bytes a message to the peer may carry: its size less the
 * type, the length and the checksum. */
SYNC_PRIVATE size_t sx_msg_room(const sync_session *s);
/* Queue a control message of type, cut to the peer's size. */
SYNC_PRIVATE int sx_msg_put(sync_session *s, unsigned type,
                            const unsigned char *p, size_t n);
SYNC_PRIVATE void sx_report_add(sync_apply_report *a,
                                const sync_apply_report *b);
/* REQUEST (final: FINAL, with this phase's report). */
SYNC_PRIVATE int sx_send_request(sync_session *s, int final);
/* Start phase s->phase (or end the session after the last). */
SYNC_PRIVATE int sx_phase_start(sync_session *s);
/* The handshake named the peer (s->peer) and its schema hash: the
 * contexts of the session's frames, both ways.  0, or the session
 * fails. */
SYNC_PRIVATE int sx_fctx_setup(sync_session *s, uint64_t peer_hash);
/* Start sending d as the next frame, and count it. */
SYNC_PRIVATE int sx_frame_start(sync_session *s, const sync_delta *d);
SYNC_PRIVATE void sx_progress(sync_session *s);

/* session_refused.c */
/* on_refused of the server's apply (ctx: the session). */
SYNC_PRIVATE int sx_rf_collect(void *ctx, const sync_refused *r);
/* Server: the next REFUSED message, with its rows. */
SYNC_PRIVATE int sx_rf_send(sync_session *s);
/* Server: chunk d (applied or not) had refused rows: answer them.  d is
 * freed. */
SYNC_PRIVATE int sx_rf_answer(sync_session *s, sync_delta *d, int last,
                              sync_apply_report *rep);
SYNC_PRIVATE int sx_on_reverted(sync_session *s, const unsigned char *b,
                                size_t n);
/* Client: take back the refused rows (the server's versions in d, or
 * none); d is freed. */
SYNC_PRIVATE int sx_rf_apply(sync_session *s, sync_delta *d);
SYNC_PRIVATE int sx_on_refused(sync_session *s, const unsigned char *b,
                               size_t n);

/* session_repair.c */
SYNC_PRIVATE int sx_repair_start(sync_session *s);
SYNC_PRIVATE int sx_on_repair(sync_session *s, const unsigned char *b,
                              size_t n);
/* The frame a peer's turn announced; d is freed. */
SYNC_PRIVATE int sx_on_repair_delta(sync_session *s, sync_delta *d);

/* session_hello.c */
SYNC_PRIVATE int sx_send_hello(sync_session *s);
/* The peer holds this replica's log up to version v with mark m (and,
 * with req, claims its writes up to req's vector): 0 when that is this
 * file's history, else the session fails (SYNC_EHISTORY after taking a
 * new site id). */
SYNC_PRIVATE int sx_check_view(sync_session *s, uint64_t v, const sx_mark *m,
                              const sx_lineage *lin, const sync_request *req);
SYNC_PRIVATE int sx_on_hello(sync_session *s, const unsigned char *b, size_t n);
SYNC_PRIVATE int sx_on_welcome(sync_session *s, const unsigned char *b,
                               size_t n);
SYNC_PRIVATE int sx_on_schema(sync_session *s, const unsigned char *b,
                              size_t n);
/* The rights the server's authorize callback grants the client (every
 * right without one).  0, or the session fails. */
SYNC_PRIVATE int sx_grant(sync_session *s, const void *cred, size_t clen,
                          sync_rights *rights);

/* session_check.c */
/* Client: the first message, CHECK when the last server may have
 * nothing new for a client with nothing to send, else HELLO. */
SYNC_PRIVATE int sx_client_start(sync_session *s);
SYNC_PRIVATE int sx_on_check(sync_session *s, const unsigned char *b,
                             size_t n);
SYNC_PRIVATE int sx_on_checked(sync_session *s, const unsigned char *b,
                               size_t n);
/* Client: name the peer in meta "server" within write transaction x. */
SYNC_PRIVATE int sx_note_server(sync_session *s, sync_txn *x);

#endif
