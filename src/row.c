/*
 * row.c - encode and decode stored rows (layout in row.h).
 */
#include "row.h"

#include "hash.h"

SYNC_PRIVATE int sx_row_init(const sx_alloc *al, sx_row *r,
                             unsigned cap_cols) {
  memset(r, 0, sizeof *r);
  r->cap_cols = cap_cols;
  r->stamps = (sx_stamp *)sx_malloc(al, sizeof(sx_stamp) *
                                            SX_ROW_STAMP_CAP(cap_cols));
  r->cols = (sx_rcol *)sx_malloc(al, sizeof(sx_rcol) * cap_cols);
  if (!r->stamps || !r->cols) {
    sx_row_free(al, r);
    return SYNC_ENOMEM;
  }
  return 0;
}

SYNC_PRIVATE void sx_row_free(const sx_alloc *al, sx_row *r) {
  sx_free(al, r->stamps);
  sx_free(al, r->cols);
  r->stamps = NULL;
  r->cols = NULL;
}

SYNC_PRIVATE unsigned sx_row_stamp(sx_row *r, sx_stamp s) {
  unsigned i;
  for (i = 0; i < r->nstamps; i++)
    if (r->stamps[i].hlc == s.hlc && r->stamps[i].site == s.site) return i;
  r->stamps[r->nstamps] = s;
  return r->nstamps++;
}

SYNC_PRIVATE void sx_row_compact(sx_row *r) {
  unsigned i, j, k = 0;
  if (r->nstamps <= 2 * r->ncols + 1) return; /* the common case */
  /* Renumbering in increasing order never maps onto an index still to
   * be visited, so references can be rewritten in place. */
  for (i = 0; i < r->nstamps; i++) {
    int used = r->cl_stamp == i;
    for (j = 0; j < r->ncols && !used; j++)
      used = r->cols[j].st == i || r->cols[j].base == i;
    if (!used) continue;
    if (r->cl_stamp == i) r->cl_stamp = k;
    for (j = 0; j < r->ncols; j++) {
      if (r->cols[j].st == i) r->cols[j].st = k;
      if (r->cols[j].base == i) r->cols[j].base = k;
    }
    r->stamps[k++] = r->stamps[i];
  }
  r->nstamps = k;
}

SYNC_PRIVATE size_t sx_payload_size(const sync_value *v) {
  switch (v->type) {
  case SYNC_INTEGER: return sx_varint_len(sx_zigzag(v->i));
  case SYNC_REAL: return 8;
  case SYNC_TEXT:
  case SYNC_BLOB: return sx_varint_len(v->len) + v->len;
  case SX_TAG_COUNTER: return v->len;
  default: return 0;
  }
}

SYNC_PRIVATE size_t sx_payload_put(unsigned char *p, const sync_value *v) {
  size_t n;
  switch (v->type) {
  case SYNC_INTEGER: return sx_put_varint(p, sx_zigzag(v->i));
  case SYNC_REAL: sx_put_le64(p, sx_double_bits(v->r)); return 8;
  case SYNC_TEXT:
  case SYNC_BLOB:
    n = sx_put_varint(p, v->len);
    if (v->len) memcpy(p + n, v->data, v->len);
    return n + v->len;
  case SX_TAG_COUNTER: memcpy(p, v->data, v->len); return v->len;
  default: return 0;
  }
}

SYNC_PRIVATE size_t sx_payload_get(int tag, const unsigned char *p,
                                   const unsigned char *end, sync_value *v) {
  uint64_t u;
  size_t k;
  v->type = tag;
  v->data = NULL;
  v->len = 0;
  switch (tag) {
  case SYNC_NULL: return 0;
  case SYNC_INTEGER:
    if (!(k = sx_get_varint2(p, end, &u))) return 0;
    v->i = sx_unzigzag(u);
    return k;
  case SYNC_REAL:
    if (end - p < 8) return 0;
    v->r = sx_bits_double(sx_get_le64(p));
    return 8;
  case SYNC_TEXT:
  case SYNC_BLOB:
    if (!(k = sx_get_varint2(p, end, &u))) return 0;
    if (u > SYNC_MAX_VALUE || u > (uint64_t)(end - p) - k) return 0;
    v->data = p + k;
    v->len = (size_t)u;
    return k + (size_t)u;
  case SX_TAG_COUNTER: {
    size_t cnt;
    if (!(k = sx_ctr_check(p, end, &cnt))) return 0;
    v->data = p;
    v->len = k;
    return k;
  }
  default: return 0;
  }
}

SYNC_PRIVATE int sx_value_eq(const sync_value *a, const sync_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case SYNC_INTEGER: return a->i == b->i;
  case SYNC_REAL: return sx_double_bits(a->r) == sx_double_bits(b->r);
  case SYNC_TEXT:
  case SYNC_BLOB:
  case SX_TAG_COUNTER:
    return a->len == b->len && (a->len == 0 || !memcmp(a->data, b->data, a->len));
  default: return 1;
  }
}

SYNC_PRIVATE size_t sx_row_size(const sx_row *r) {
  size_t n = 4 + sx_varint_len(r->cl) + sx_varint_len(r->version) +
             sx_varint_len(r->seq) + sx_varint_len(r->nstamps) +
             sx_varint_len(r->cl_stamp) + sx_varint_len(r->ncols);
  unsigned i;
  for (i = 0; i < r->nstamps; i++)
    n += sx_varint_len(r->stamps[i].hlc) + sx_varint_len(r->stamps[i].site);
  for (i = 0; i < r->ncols; i++) {
    const sx_rcol *c = &r->cols[i];
    if (c->st == SX_NOSTAMP) {
      n += 1;
      continue;
    }
    n += sx_varint_len((uint64_t)c->st << 4) + sx_payload_size(&c->v);
    if (c->base != SX_NOSTAMP) n += sx_varint_len(c->base);
  }
  return n;
}

static uint32_t sx_row_sum(const unsigned char *body, size_t n,
                           const void *key, size_t klen) {
  return (uint32_t)sx_hash64(body, n, sx_hash64(key, klen, 0));
}

SYNC_PRIVATE void sx_row_seal(unsigned char *out, size_t size, const void *key,
                              size_t klen) {
  sx_put_le32(out, sx_row_sum(out + 4, size - 4, key, klen));
}

SYNC_PRIVATE void sx_row_encode(const sx_row *r, const void *key, size_t klen,
                                unsigned char *out, size_t size, size_t room) {
  unsigned char *p = out + 4;
  unsigned i;
  p += sx_put_varint(p, r->cl);
  p += sx_put_varint(p, r->version);
  p += sx_put_varint(p, r->seq);
  p += sx_put_varint(p, r->nstamps);
  for (i = 0; i < r->nstamps; i++) {
    p += sx_put_varint(p, r->stamps[i].hlc);
    p += sx_put_varint(p, r->stamps[i].site);
  }
  p += sx_put_varint(p, r->cl_stamp);
  p += sx_put_varint(p, r->ncols);
  for (i = 0; i < r->ncols; i++) {
    const sx_rcol *c = &r->cols[i];
    if (c->st == SX_NOSTAMP) {
      *p++ = SX_TAG_UNSET;
      continue;
    }
    p += sx_put_varint(p, ((uint64_t)c->st << 4) |
                              (c->base != SX_NOSTAMP ? 8u : 0u) |
                              (uint64_t)c->v.type);
    if (c->base != SX_NOSTAMP) p += sx_put_varint(p, c->base);
    p += sx_payload_put(p, &c->v);
  }
  (void)SX_ALWAYS((size_t)(p - out) == size);
  if (room) memset(p, 0, room);
  sx_row_seal(out, size + room, key, klen);
}

#define SX_GET(var)                                                            \
  do {                                                                         \
    size_t k_ = sx_get_varint2(p, end, &(var));                                \
    if (!k_) return SYNC_ECORRUPT;                                             \
    p += k_;                                                                   \
  } while (0)

SYNC_PRIVATE int sx_row_head(const unsigned char *p, size_t n,
                             uint64_t *version) {
  const unsigned char *end = p + n;
  uint64_t cl;
  if (n < 5) return SYNC_ECORRUPT;
  p += 4;
  SX_GET(cl);
  SX_GET(*version);
  return 0;
}

SYNC_PRIVATE int sx_row_decode(const unsigned char *p, size_t n,
                               const void *key, size_t klen, sx_row *r) {
  const unsigned char *end = p + n;
  uint64_t v, ns, nc;
  unsigned i;
  if (n < 5 || sx_get_le32(p) != sx_row_sum(p + 4, n - 4, key, klen))
    return SYNC_ECORRUPT;
  p += 4;
  SX_GET(r->cl);
  SX_GET(r->version);
  SX_GET(v);
  if (v > UINT32_MAX) return SYNC_ECORRUPT;
  r->seq = (uint32_t)v;
  SX_GET(ns);
  if (ns > 2 * (uint64_t)SYNC_MAX_COLUMNS + 1 || ns > 2 * (uint64_t)r->cap_cols + 1)
    return SYNC_ECORRUPT;
  r->nstamps = (unsigned)ns;
  for (i = 0; i < ns; i++) {
    SX_GET(r->stamps[i].hlc);
    SX_GET(v);
    if (v > UINT32_MAX) return SYNC_ECORRUPT;
    r->stamps[i].site = (uint32_t)v;
  }
  SX_GET(v);
  if (v >= ns && !(ns == 0 && v == 0)) return SYNC_ECORRUPT;
  r->cl_stamp = (unsigned)v;
  SX_GET(nc);
  if (nc > SYNC_MAX_COLUMNS) return SYNC_ECORRUPT;
  r->ncols = nc < r->cap_cols ? (unsigned)nc : r->cap_cols;
  for (i = 0; i < nc; i++) {
    /* Columns past cap_cols are decoded into tmp and dropped; every field
     * is written before it is read (cppcheck thinks &tmp reads it). */
    /* cppcheck-suppress uninitvar */
    sx_rcol tmp, *c = i < r->cap_cols ? &r->cols[i] : &tmp;
    size_t k;
    int tag;
    SX_GET(v);
    tag = (int)(v & 7);
    if (tag == SX_TAG_UNSET) {
      if (v != SX_TAG_UNSET) return SYNC_ECORRUPT;
      c->st = c->base = SX_NOSTAMP;
      c->v = sync_null();
      continue;
    }
    if ((tag > SYNC_BLOB && tag != SX_TAG_COUNTER) || (v >> 4) >= ns)
      return SYNC_ECORRUPT;
    if (tag == SX_TAG_COUNTER && (v & 8)) return SYNC_ECORRUPT;
    c->st = (unsigned)(v >> 4);
    c->base = SX_NOSTAMP;
    if (v & 8) {
      uint64_t b;
      SX_GET(b);
      if (b >= ns) return SYNC_ECORRUPT;
      c->base = (unsigned)b;
    }
    k = sx_payload_get(tag, p, end, &c->v);
    if (!k && tag != SYNC_NULL) return SYNC_ECORRUPT;
    p += k;
  }
  r->room = (size_t)(end - p);
  while (p < end)
    if (*p++) return SYNC_ECORRUPT;
  return 0;
}

/* ---------------------------------------------------------------------
 * Counter cells
 * ------------------------------------------------------------------- */
SYNC_PRIVATE size_t sx_ctr_check(const unsigned char *p,
                                 const unsigned char *end, size_t *count) {
  const unsigned char *p0 = p;
  uint64_t n, i, u, site = 0;
  size_t k;
  if (!(k = sx_get_varint(p, end, &n))) return 0;
  p += k;
  /* Four bytes at least per contribution, and sites fit 32 bits. */
  if (n == 0 || n > (uint64_t)(end - p) / 4 || n > UINT32_MAX) return 0;
  for (i = 0; i < n; i++) {
    unsigned f;
    if (!(k = sx_get_varint(p, end, &u))) return 0;
    p += k;
    if (u > UINT32_MAX || (site = (i ? site + 1 : 0) + u) > UINT32_MAX)
      return 0;
    for (f = 0; f < 3; f++) {
      if (!(k = sx_get_varint(p, end, &u))) return 0;
      p += k;
    }
    if (u == 0) return 0; /* an add always has a stamp */
  }
  *count = (size_t)n;
  return (size_t)(p - p0);
}

SYNC_PRIVATE void sx_ctr_read(const sync_value *v, sx_ctr *out) {
  sx_ctrwalk it;
  sx_ctr_walk(&it, v->data, v->len);
  while (sx_ctr_step(&it)) *out++ = it.c;
}

SYNC_PRIVATE size_t sx_ctr_size(const sx_ctr *a, size_t n) {
  size_t i, k = sx_varint_len(n);
  for (i = 0; i < n; i++)
    k += sx_varint_len(a[i].site - (i ? a[i - 1].site + 1 : 0)) +
         sx_varint_len(a[i].p) + sx_varint_len(a[i].n) +
         sx_varint_len(a[i].hlc);
  return k;
}

SYNC_PRIVATE size_t sx_ctr_put(unsigned char *out, const sx_ctr *a, size_t n) {
  unsigned char *p = out;
  size_t i;
  p += sx_put_varint(p, n);
  for (i = 0; i < n; i++) {
    p += sx_put_varint(p, a[i].site - (i ? a[i - 1].site + 1 : 0));
    p += sx_put_varint(p, a[i].p);
    p += sx_put_varint(p, a[i].n);
    p += sx_put_varint(p, a[i].hlc);
  }
  return (size_t)(p - out);
}

/* A 128-bit sum in two words: at most 2^32 terms of 64 bits cannot
 * reach the high word's bounds, so the sum is exact before the clamp,
 * and the same on every replica whatever the order of its terms. */
typedef struct sx_acc {
  uint64_t lo;
  int64_t hi;
} sx_acc;

static void sx_acc_add(sx_acc *a, uint64_t p, uint64_t n) {
  a->lo += p;
  if (a->lo < p) a->hi++;
  if (a->lo < n) a->hi--;
  a->lo -= n;
}

static int64_t sx_acc_clamp(const sx_acc *a) {
  if (a->hi == 0 && a->lo <= (uint64_t)INT64_MAX) return (int64_t)a->lo;
  if (a->hi == -1 && a->lo > (uint64_t)INT64_MAX)
    return -(int64_t)(~a->lo) - 1; /* lo - 2^64, without overflow */
  return a->hi < 0 ? INT64_MIN : INT64_MAX;
}

SYNC_PRIVATE int64_t sx_ctr_total(const sx_ctr *a, size_t n) {
  sx_acc acc = {0, 0};
  size_t i;
  for (i = 0; i < n; i++) sx_acc_add(&acc, a[i].p, a[i].n);
  return sx_acc_clamp(&acc);
}

SYNC_PRIVATE sync_value sx_rcol_value(const sx_rcol *c, int type) {
  if (c->st == SX_NOSTAMP)
    return type == SYNC_COUNTER ? sync_int(0) : sync_null();
  if (c->v.type == SX_TAG_COUNTER) {
    sx_acc acc;
    uint64_t own_p, own_n;
    sx_rcol_ctr(c, &acc.hi, &acc.lo, &own_p, &own_n);
    return sync_int(sx_acc_clamp(&acc));
  }
  return c->v;
}

SYNC_PRIVATE void sx_rcol_ctr(const sx_rcol *c, int64_t *hi, uint64_t *lo,
                              uint64_t *own_p, uint64_t *own_n) {
  sx_acc acc = {0, 0};
  *own_p = *own_n = 0;
  if (c->st != SX_NOSTAMP && c->v.type == SX_TAG_COUNTER) {
    sx_ctrwalk it;
    sx_ctr_walk(&it, c->v.data, c->v.len);
    while (sx_ctr_step(&it)) {
      sx_acc_add(&acc, it.c.p, it.c.n);
      if (it.c.site == 0) {
        *own_p = it.c.p;
        *own_n = it.c.n;
      }
    }
  }
  *hi = acc.hi;
  *lo = acc.lo;
}

SYNC_PRIVATE sync_value sx_col_value(const sx_row *r, unsigned j, int type) {
  if (j < r->ncols) return sx_rcol_value(&r->cols[j], type);
  return type == SYNC_COUNTER ? sync_int(0) : sync_null();
}
