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

#endif
