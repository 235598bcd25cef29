/*
 * dict.c - sync_dict_train: a zstd dictionary from the stored rows of a
 * table.  A client of the storage (it reads rows through a cursor) and of
 * the codec (which holds the zstd calls), so it stands after both.  Left
 * out, like the encoder, under SYNC_OMIT_ENCODER.
 */
#include "types.h"
#include "codec.h"

#if !defined(SYNC_OMIT_ZSTD) && !defined(SYNC_OMIT_ENCODER)
/* Append to b the sample of one row of table t: its key and its values
 * laid out as in a frame (plain encodings), which is what the frames'
 * bodies repeat; local columns are left out, as frames leave them. */
static int sx_dict_sample(sx_buf *b, const sx_table *t, const sync_key *k,
                          const sync_value *v) {
  unsigned i;
  int rc;
  if ((rc = sx_buf_reserve(b, k->len + SX_VARINT_MAX))) return rc;
  b->len += sx_put_varint(b->p + b->len, k->len);
  memcpy(b->p + b->len, k->data, k->len);
  b->len += k->len;
  for (i = 0; i < t->ncols; i++) {
    size_t need = 1 + 2 * SX_VARINT_MAX + 8 +
                  (v[i].type == SYNC_TEXT || v[i].type == SYNC_BLOB
                       ? v[i].len
                       : 0);
    unsigned char *p;
    if (t->cols[i].flags & SYNC_COL_LOCAL) continue;
    if ((rc = sx_buf_reserve(b, need))) return rc;
    p = b->p + b->len;
    if (v[i].type == SYNC_INTEGER) {
      p = sx_wv(p, sx_zigzag(v[i].i));
    } else if (v[i].type == SYNC_REAL) {
      sx_put_le64(p, sx_double_bits(v[i].r));
      p += 8;
    } else if (v[i].type == SYNC_TEXT || v[i].type == SYNC_BLOB) {
      p = sx_wv(p, v[i].len);
      memcpy(p, v[i].data, v[i].len);
      p += v[i].len;
    } else {
      *p++ = 0;
    }
    b->len = (size_t)(p - b->p);
  }
  return 0;
}
#endif

SYNC_API int sync_dict_train(sync_txn *x, unsigned table, size_t max_rows,
                             void *dict, size_t cap, size_t *len) {
#if defined(SYNC_OMIT_ZSTD) || defined(SYNC_OMIT_ENCODER)
  (void)x;
  (void)table;
  (void)max_rows;
  (void)dict;
  (void)cap;
  if (len) *len = 0;
  return SYNC_ENOTSUP;
#else
  sync_env *env;
  sync_cursor *cur = NULL;
  sx_buf samples;
  sync_value *v;
  size_t *sizes = NULL, nsamp = 0, capsz = 0;
  unsigned ncols;
  int rc;
  if (len) *len = 0;
  if (!x || !dict || !len || cap < 256) return SYNC_EINVAL;
  env = x->env;
  if (table >= env->schema->ntables) return SYNC_NOTFOUND;
  if (!max_rows) max_rows = 10000;
  ncols = env->schema->tables[table].ncols;
  sx_buf_init(&samples, &env->al);
  v = (sync_value *)sx_malloc(&env->al, ncols * sizeof *v);
  if (!v) return SYNC_ENOMEM;
  if ((rc = sync_cursor_open(x, table, &cur))) {
    sx_free(&env->al, v);
    return rc;
  }
  /* One sample per row, up to max_rows. */
  while (nsamp < max_rows) {
    sync_key k;
    size_t start = samples.len;
    rc = sync_cursor_next(cur, &k, v, ncols);
    if (rc == SYNC_NOTFOUND) break; /* every row sampled */
    if (rc) goto done;
    if ((rc = sx_dict_sample(&samples, &env->schema->tables[table], &k, v)))
      goto done;
    if ((rc = sx_grow(&env->al, (void **)&sizes, &capsz, nsamp + 1,
                      sizeof(size_t))))
      goto done;
    sizes[nsamp++] = samples.len - start;
  }
  if (nsamp < 8) {
    rc = SYNC_ELIMIT;
    goto done;
  }
  rc = sx_dict_from_samples(dict, cap, samples.p, sizes, (unsigned)nsamp, len);
done:
  sync_cursor_close(cur);
  sx_free(&env->al, v);
  sx_free(&env->al, sizes);
  sx_buf_free(&samples);
  return rc;
#endif
}
