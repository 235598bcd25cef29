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

#endif
