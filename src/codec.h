/*
 * codec.h - the wire codec's private calls (the encoder and decoder
 * themselves are API, in sync.h).  The codec stands on util, hash and the
 * delta types alone: scopes and cursors, which frames share with session
 * messages and peer records, are written and read by delta.c.
 */
#ifndef SX_CODEC_H
#define SX_CODEC_H

#include "delta.h"

/* codec.c: body bytes of the last frame dec decoded. */
SYNC_PRIVATE size_t sx_decoder_last_raw(const sync_decoder *dec);
#if !defined(SYNC_OMIT_ZSTD) && !defined(SYNC_OMIT_ENCODER)
/* codec.c: train a zstd dictionary of at most cap bytes into dict from n
 * samples laid end to end in samples (sizes[i] bytes each).  0 with *len
 * set, or SYNC_ELIMIT when zstd finds too little to build on. */
SYNC_PRIVATE int sx_dict_from_samples(void *dict, size_t cap,
                                      const void *samples, const size_t *sizes,
                                      unsigned n, size_t *len);
#endif

/* ---------------------------------------------------------------------
 * Session frames (frame major 3, docs/FORMAT.md "Session frames"): what
 * two peers of one session both know, so that a chunk need not repeat
 * it.  A session holds one context per direction (the frames it sends,
 * the frames it receives); both ends of a direction make the same
 * changes to it in the same order (the encoder as it writes a frame, the
 * decoder as it reads it, and both at each REQUEST that is not an
 * acknowledgement), so it never travels.  A new session starts a new one.
 * ------------------------------------------------------------------- */
/* Session site table entries per direction: a site past them travels
 * whole every time it is named (36 bytes kept per entry: the id, its
 * place in byid, two HLCs; 144 KiB at most). */
#define SX_FCTX_SITES 4096u
/* The longest tables section a context keeps (a frame with the same
 * one then writes a flag instead). */
#define SX_FCTX_TABS 64u
/* The frame major of session frames, named in HELLO. */
#define SX_FMAJOR_SESS 3

typedef struct sx_fctx {
  sx_alloc al;
  /* The session's site table: 0 the sender, 1 the receiver, then each
   * site as a frame first named it; byid: the indexes ordered by id. */
  uint8_t (*sites)[SX_SITE_LEN];
  uint32_t *byid;
  size_t nsites, capsites, capbyid;
  uint64_t schema_hash; /* the sender's, as the handshake named it */
  sx_cursor start;      /* where the next chunk starts: the cursor of the
                           last REQUEST, or the previous chunk's end */
  sx_mark mark;         /* the mark there */
  sx_scope scope;       /* and the scope */
  sync_stamp *ref;      /* the vector of the last REQUEST (the receiver's),
                           sorted by site id: what HLCs are coded against */
  size_t nref, capref;
  /* Per session index: the largest stamp of the site in the last frame
   * that had one, and the last vector entry a frame gave it (0: none
   * yet), which the next frame's HLCs are written against. */
  uint64_t *hl, *vl;
  size_t caphl, capvl;
  /* The frame being written or read: chunk site index -> session index
   * (UINT32_MAX: past the table, or a sender the context does not
   * name). */
  uint32_t *map;
  size_t capmap;
  uint64_t frames; /* frames of this direction so far: the checksum seed */
  int broken;      /* a frame failed half way: the context is no longer
                      its peer's, and takes no more frames */
  /* The sender's schema: the type of column col of table tid (1..4), 0
   * past its columns, -1 for a table it lacks.  NULL: every table
   * section spells its encodings out. */
  int (*coltype)(const void *cx, unsigned tid, unsigned col);
  const void *coltype_cx;
  /* The previous frame's last row, whose key the next frame's first row
   * shares bytes of when of the same table (klen 0: none), and the
   * previous frame's tables section, which the next frame may repeat
   * by a flag (tlen 0: none kept; a longer one is never kept). */
  unsigned ktid;
  size_t klen, tlen;
  unsigned char key[SYNC_MAX_KEY];
  unsigned char tabs[SX_FCTX_TABS];
} sx_fctx;

/* A context for frames from sender to receiver under schema hash (the
 * sender's).  0 or SYNC_ENOMEM. */
SYNC_PRIVATE int sx_fctx_init(sx_fctx *c, const sx_alloc *al,
                              const uint8_t *sender, const uint8_t *receiver,
                              uint64_t hash);
/* Frees what c holds (c itself is the caller's); NULL-safe, and safe on a
 * zeroed context. */
SYNC_PRIVATE void sx_fctx_free(sx_fctx *c);
/* A REQUEST other than an acknowledgement went from the receiver to the
 * sender: its cursor, mark, scope and vector become the context.  0 or
 * SYNC_ENOMEM. */
SYNC_PRIVATE int sx_fctx_request(sx_fctx *c, const sync_request *req);
/* sync_encoder_begin for a session frame under context c (which it
 * moves on); SYNC_ENOTSUP under SYNC_OMIT_ENCODER, as that call. */
SYNC_PRIVATE int sx_encoder_begin_ctx(sync_encoder *e, sx_fctx *c,
                                      const sync_delta *d, size_t *frame_len,
                                      size_t *raw_len);
/* sync_decoder_feed for session frames under context c (the same c for
 * every call of a session); c moves on with each frame decoded. */
SYNC_PRIVATE int sx_decoder_feed_ctx(sync_decoder *dec, sx_fctx *c,
                                     sync_inbuf *in, sync_delta **out);

#endif
