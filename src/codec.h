/*
 * codec.h - the wire codec's helpers shared with the session: scopes and
 * cursors as frames and messages carry them.
 */
#ifndef SX_CODEC_H
#define SX_CODEC_H

#include "delta.h"

/* codec.c: a scope as frames and session messages carry it: u8 flags,
 * then with SX_SCOPE_ON u64 filter version, var n + n bytes of served
 * tables, var n + n bytes of held tables (n <= SX_TBYTES, trailing zero
 * bytes left out).  sx_wscope needs SX_SCOPE_MAX bytes. */
#define SX_SCOPE_MAX (1 + 8 + 2 * (SX_VARINT_MAX + SX_TBYTES))
SYNC_PRIVATE unsigned char *sx_wscope(unsigned char *p, const sx_scope *s);
SYNC_PRIVATE int sx_rscope(sx_rd *r, sx_scope *s);
/* codec.c: a cursor as frames and session messages carry it (u8 mode,
 * then var fields; see docs/FORMAT.md).  sx_wcursor needs room for
 * 1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY bytes. */
SYNC_PRIVATE unsigned char *sx_wcursor(unsigned char *p, const sx_cursor *c);
SYNC_PRIVATE int sx_rcursor(sx_rd *r, sx_cursor *c);
/* codec.c: body bytes of the last frame dec decoded. */
SYNC_PRIVATE size_t sx_decoder_last_raw(const sync_decoder *dec);
#define SX_CURSOR_MAX (1 + 3 * SX_VARINT_MAX + SYNC_MAX_KEY)

#endif
