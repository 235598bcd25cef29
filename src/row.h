/*
 * row.h - the stored form of a row: one LMDB value per row holding its
 * causal length, the local version and log position of its last change,
 * a small table of the distinct stamps it uses, and per column the value
 * with the stamp that wrote it and the stamp it replaced (its base).
 *
 *   u32  checksum  low 32 bits of XXH3-64 over the rest, seeded with the
 *                  XXH3-64 of the key (so a row moved under another key
 *                  fails too)
 *   var  causal length (odd live, even deleted)
 *   var  version, var seq   position of the row's entry in the change log
 *   var  nstamps, then per stamp: var hlc, var site index
 *   var  index of the stamp of the last insert or delete
 *   var  ncols, then per column one control varint:
 *          bits 0-2  type tag (SYNC_NULL..SYNC_BLOB, 5 counter), or 7:
 *                    never written
 *          bit  3    a base stamp follows
 *          bits 4..  index of the stamp that wrote the value
 *        then (if bit 3) var base stamp index, then the value:
 *        INTEGER zig-zag varint | REAL 8 bytes LE | TEXT/BLOB var length
 *        + bytes | NULL nothing | counter: var n, then n contributions
 *        (var site index gap, var P, var N, var HLC), sites increasing.
 *        One byte of control for most columns.
 *   then, only while an apply runs, zero bytes of room (sx_store_row's
 *   room: free space the apply gives back to the page before it returns)
 *
 * The storage format version is kept once per file, in the meta store.
 * Tombstones keep the header and no columns.
 */
#ifndef SX_ROW_H
#define SX_ROW_H

#include "delta.h"
#include "util.h"

#define SX_TAG_UNSET 7
#define SX_TAG_COUNTER SYNC_COUNTER
#define SX_NOSTAMP 0xffffu

/* A stored row refers to at most 2 * ncols + 1 stamps (its causal
 * length's, and per column the writer's and the base), and decoding
 * refuses more.  A row being built starts from a copy of the old row's
 * table and adds what replaces it (an applied row: its causal length's
 * stamp and two per column; a resolver's or a local write: one more), so
 * a scratch row holds twice that; sx_row_compact drops what is no longer
 * referred to before the row is stored. */
#define SX_ROW_STAMP_CAP(cap_cols) (4 * (size_t)(cap_cols) + 3)

typedef struct sx_stamp {
  uint64_t hlc;
  uint32_t site; /* index in this replica's site table; 0 is itself */
} sx_stamp;

typedef struct sx_rcol {
  unsigned st;   /* stamp index, SX_NOSTAMP = never written */
  unsigned base; /* stamp index, SX_NOSTAMP = replaced nothing */
  sync_value v;
} sx_rcol;

typedef struct sx_row {
  uint64_t cl, version;
  uint32_t seq;
  unsigned cl_stamp;
  unsigned nstamps, ncols;
  sx_stamp *stamps; /* capacity SX_ROW_STAMP_CAP(cap_cols) */
  sx_rcol *cols;    /* capacity cap_cols */
  unsigned cap_cols;
  size_t room; /* zero bytes after the encoding (decoded rows) */
} sx_row;

SYNC_PRIVATE int sx_row_init(const sx_alloc *al, sx_row *r, unsigned cap_cols);
SYNC_PRIVATE void sx_row_free(const sx_alloc *al, sx_row *r);

/* Add stamp s to r's table (deduplicated); returns its index. */
SYNC_PRIVATE unsigned sx_row_stamp(sx_row *r, sx_stamp s);

/* Drop the stamps of r that nothing refers to, when there are more than
 * a stored row may hold, renumbering the rest. */
SYNC_PRIVATE void sx_row_compact(sx_row *r);

/* Encoded size of r, and the encoding into out (size bytes, then room
 * zero bytes that the checksum covers). */
SYNC_PRIVATE size_t sx_row_size(const sx_row *r);
SYNC_PRIVATE void sx_row_encode(const sx_row *r, const void *key, size_t klen,
                                unsigned char *out, size_t size, size_t room);
/* Set the checksum of the stored row at out (size bytes) for key. */
SYNC_PRIVATE void sx_row_seal(unsigned char *out, size_t size, const void *key,
                              size_t klen);

/* Decode a stored row, verifying its checksum: SYNC_ECORRUPT when it
 * fails or the bytes are malformed.  Values point into p.  Columns beyond
 * r->cap_cols are checked and skipped.  r->room: the zero bytes after
 * the encoding. */
SYNC_PRIVATE int sx_row_decode(const unsigned char *p, size_t n,
                               const void *key, size_t klen, sx_row *r);
/* The local version of a stored row (of its log entry), read from its
 * head without the checksum: SYNC_ECORRUPT when the head is malformed. */
SYNC_PRIVATE int sx_row_head(const unsigned char *p, size_t n,
                             uint64_t *version);

/* Encoded size of a value's payload (without its type tag), its encoding
 * at p, and its decoding from [p, end) given the tag: bytes, 0 if
 * malformed.  Size buffers with sx_payload_size, never with v->len alone:
 * len shares a union with i and r, and where size_t has 32 bits the high
 * word of an INTEGER or REAL lies under it. */
SYNC_PRIVATE size_t sx_payload_size(const sync_value *v);
SYNC_PRIVATE size_t sx_payload_put(unsigned char *p, const sync_value *v);
SYNC_PRIVATE size_t sx_payload_get(int tag, const unsigned char *p,
                                   const unsigned char *end, sync_value *v);
/* Equal type and content (REAL by bits, so NaN equals itself). */
SYNC_PRIVATE int sx_value_eq(const sync_value *a, const sync_value *b);

/* ---------------------------------------------------------------------
 * Counter cells.  A counter column's value (tag SX_TAG_COUNTER) holds,
 * per site that added to it, the sums of its positive adds (p) and of
 * its negated negative adds (n), and the HLC of its last add; the value
 * read is the sum of p - n.  In a stored row (and in x->nw) v.data and
 * v.len are the encoded contributions, sites by increasing local index:
 *   var count (>= 1), count x (var site gap, var p, var n, var hlc > 0),
 * a site index being the previous one + 1 + gap (the first: the gap).
 * (sx_ctr, one contribution, is in delta.h: chunks carry them too.)
 * ------------------------------------------------------------------- */
/* Check the contributions at [p, end); returns their bytes (0 when
 * malformed) and their count in *count. */
SYNC_PRIVATE size_t sx_ctr_check(const unsigned char *p,
                                 const unsigned char *end, size_t *count);
/* A walk over the contributions of a checked payload, in place (a read
 * or a judgement allocates nothing): sx_ctr_walk, then sx_ctr_step
 * until it returns 0, each time with the next contribution in it->c. */
typedef struct sx_ctrwalk {
  const unsigned char *p, *end;
  uint64_t left, i;
  sx_ctr c;
} sx_ctrwalk;
static inline void sx_ctr_walk(sx_ctrwalk *it, const void *data, size_t len) {
  /* Zeroed first: a varint read that fails writes nothing (payloads
   * walked here are checked, but a compiler cannot know it). */
  memset(it, 0, sizeof *it);
  it->p = (const unsigned char *)data;
  it->end = it->p + len;
  it->p += sx_get_varint(it->p, it->end, &it->left);
  it->i = 0;
}
static inline int sx_ctr_step(sx_ctrwalk *it) {
  uint64_t u = 0;
  if (it->i == it->left) return 0;
  it->p += sx_get_varint(it->p, it->end, &u);
  it->c.site = (uint32_t)((it->i ? it->c.site + 1 : 0) + u);
  it->p += sx_get_varint(it->p, it->end, &it->c.p);
  it->p += sx_get_varint(it->p, it->end, &it->c.n);
  it->p += sx_get_varint(it->p, it->end, &it->c.hlc);
  it->i++;
  return 1;
}
/* Read the contributions of checked payload v into out[0..count). */
SYNC_PRIVATE void sx_ctr_read(const sync_value *v, sx_ctr *out);
/* Encoded size of a[0..n) (sites increasing), and the encoding at out. */
SYNC_PRIVATE size_t sx_ctr_size(const sx_ctr *a, size_t n);
SYNC_PRIVATE size_t sx_ctr_put(unsigned char *out, const sx_ctr *a, size_t n);
/* Sum of p - n over a[0..n), saturated at the int64 bounds: exact,
 * whatever the order. */
SYNC_PRIVATE int64_t sx_ctr_total(const sx_ctr *a, size_t n);
/* The value a reader sees of column c: a counter's sum as an INTEGER (0
 * when never added to), any other value as it is. */
SYNC_PRIVATE sync_value sx_rcol_value(const sx_rcol *c, int type);
/* Counter cell c's exact sum as a 128-bit two's complement number
 * (*hi, *lo), unclamped, and this replica's own totals in it (site
 * index 0; 0 and 0 when it never added, or c was never written). */
SYNC_PRIVATE void sx_rcol_ctr(const sx_rcol *c, int64_t *hi, uint64_t *lo,
                              uint64_t *own_p, uint64_t *own_n);
/* The value a reader sees of column j (of schema type type) of row r,
 * which may have fewer columns. */
SYNC_PRIVATE sync_value sx_col_value(const sx_row *r, unsigned j, int type);

#endif
