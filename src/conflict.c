/*
 * conflict.c - the conflict log: recording conflicts, reading and resolving
 * them, the resolver and the commit-time callback.
 */
#include "conflict.h"

struct sync_conflicts {
  sx_alloc al;
  sync_txn *x;
  sx_scur *c;
  unsigned flags;
  int started;
  unsigned char last[8];
};

SYNC_PRIVATE int sx_conflict_record(sync_txn *x, const sx_cfl *c) {
  sx_buf *b = &x->cpend;
  size_t need, start;
  int rc;
  need = 4 + 2 + 3 * SX_VARINT_MAX + c->klen + 2 * (SX_VARINT_MAX + 16 + 1) +
         (c->lv ? SX_VARINT_MAX + 8 + sx_payload_size(c->lv) : 0) +
         (c->rv ? SX_VARINT_MAX + 8 + sx_payload_size(c->rv) : 0);
  if ((rc = sx_buf_reserve(b, need))) return rc;
  start = b->len;
  {
    unsigned char *p = b->p + start + 4;
    p[0] = (unsigned char)c->kind;
    p[1] = c->remote_won ? 2 : 0;
    p += 2;
    p += sx_put_varint(p, c->tid);
    p += sx_put_varint(p, c->col == SYNC_ROW ? 0 : (uint64_t)c->col + 1);
    p += sx_put_varint(p, c->klen);
    memcpy(p, c->key, c->klen);
    p += c->klen;
    p += sx_put_varint(p, c->lhlc);
    memcpy(p, c->lsite, SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = c->lv ? (unsigned char)c->lv->type : SX_TAG_NONE;
    if (c->lv) p += sx_payload_put(p, c->lv);
    p += sx_put_varint(p, c->rhlc);
    memcpy(p, c->rsite, SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = c->rv ? (unsigned char)c->rv->type : SX_TAG_NONE;
    if (c->rv) p += sx_payload_put(p, c->rv);
    sx_put_le32(b->p + start, (uint32_t)(p - (b->p + start + 4)));
    b->len = (size_t)(p - b->p);
  }
  return 0;
}

SYNC_PRIVATE int sx_conflicts_flush(sync_txn *x) {
  sync_env *env = x->env;
  size_t off = 0;
  uint64_t id;
  int rc;
  if (!x->cpend.len) return 0;
  {
    sx_scur *cur;
    sx_slice kk, vv;
    if ((rc = sx_cur_open(env->st, x->t, env->conflicts, &cur))) return rc;
    kk.p = NULL;
    kk.n = 0;
    rc = sx_cur_get(env->st, cur, SX_LAST, &kk, &vv);
    id = rc == 0 && kk.n == 8 ? sx_get_be64(kk.p) + 1 : 1;
    sx_cur_close(cur);
    if (rc && rc != SYNC_NOTFOUND) return rc;
  }
  while (off < x->cpend.len) {
    unsigned char k[8];
    uint32_t n = sx_get_le32(x->cpend.p + off);
    if ((rc = sx_buf_reserve(&x->conflicts, 8))) return rc;
    sx_put_be64(k, id);
    if ((rc = sx_put(env->st, x->t, env->conflicts, k, 8, x->cpend.p + off + 4,
                     n, SX_PUT_APPEND))) {
      x->failed = 1;
      return rc;
    }
    memcpy(x->conflicts.p + x->conflicts.len, k, 8);
    x->conflicts.len += 8;
    off += 4 + (size_t)n;
    id++;
  }
  x->cpend.len = 0;
  return 0;
}

static int sx_conflict_decode(const unsigned char *p, size_t n, uint64_t id,
                              sync_conflict *out) {
  const unsigned char *end = p + n;
  uint64_t v, klen;
  size_t k;
  int side;
  memset(out, 0, sizeof *out);
  out->id = id;
  if (n < 2 || p[0] < SYNC_BOTH_MODIFIED || p[0] > SYNC_DELETED_TARGET)
    return SYNC_ECORRUPT;
  out->kind = p[0];
  out->resolved = (p[1] & 1) != 0;
  out->remote_won = (p[1] & 2) != 0;
  p += 2;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_MAX_TABLES) return SYNC_ECORRUPT;
  out->table = (unsigned)v;
  p += k;
  if (!(k = sx_get_varint(p, end, &v)) || v > SYNC_MAX_COLUMNS) return SYNC_ECORRUPT;
  out->column = v ? (unsigned)(v - 1) : SYNC_ROW;
  p += k;
  if (!(k = sx_get_varint(p, end, &klen)) || klen > SYNC_MAX_KEY ||
      klen > (uint64_t)(end - p) - k)
    return SYNC_ECORRUPT;
  out->key.data = p + k;
  out->key.len = (size_t)klen;
  p += k + klen;
  for (side = 0; side < 2; side++) {
    sync_stamp *st = side ? &out->remote_stamp : &out->local_stamp;
    sync_value *val = side ? &out->remote : &out->local;
    int tag;
    if (!(k = sx_get_varint(p, end, &st->hlc))) return SYNC_ECORRUPT;
    p += k;
    if (end - p < SX_SITE_LEN + 1) return SYNC_ECORRUPT;
    memcpy(st->site, p, SX_SITE_LEN);
    p += SX_SITE_LEN;
    tag = *p++;
    if (tag == SX_TAG_NONE) {
      *val = sync_null();
      continue;
    }
    if (tag > SYNC_BLOB) return SYNC_ECORRUPT;
    k = sx_payload_get(tag, p, end, val);
    if (!k && tag != SYNC_NULL) return SYNC_ECORRUPT;
    p += k;
  }
  return p == end ? 0 : SYNC_ECORRUPT;
}

/* The commit's hook (sync_env.notify_conflicts): hand the conflicts a
 * committed transaction recorded to the on_conflict callback. */
static void sx_notify_conflicts(sync_txn *x) {
  sync_env *env = x->env;
  sync_txn *r;
  size_t i;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &r)) return;
  for (i = 0; i + 8 <= x->conflicts.len; i += 8) {
    sx_slice v;
    sync_conflict c;
    if (sx_get(env->st, r->t, env->conflicts, x->conflicts.p + i, 8, &v))
      continue;
    if (sx_conflict_decode(v.p, v.n, sx_get_be64(x->conflicts.p + i), &c))
      continue;
    env->on_conflict(env->on_conflict_ctx, &c);
  }
  sync_txn_abort(r);
}

SYNC_API int sync_conflicts_open(sync_txn *x, unsigned flags,
                                 sync_conflicts **out) {
  sync_conflicts *it;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || (flags & ~SYNC_CONFLICTS_UNRESOLVED)) return SYNC_EINVAL;
  it = (sync_conflicts *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  it->x = x;
  it->flags = flags;
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->conflicts, &it->c))) {
    sx_free(&it->al, it);
    return rc;
  }
  *out = it;
  return 0;
}

SYNC_PRIVATE int sx_id_log_next(sx_store *st, sx_scur *c, int *started,
                                unsigned char last[8], sx_slice *k, sx_slice *v) {
  int rc;
  if (!*started) {
    k->p = NULL;
    k->n = 0;
    rc = sx_cur_get(st, c, SX_FIRST, k, v);
  } else {
    k->p = last;
    k->n = 8;
    rc = sx_cur_get(st, c, SX_SET_RANGE, k, v);
    if (!rc && k->n == 8 && !memcmp(k->p, last, 8))
      rc = sx_cur_get(st, c, SX_NEXT, k, v);
  }
  if (rc) return rc;
  *started = 1;
  if (k->n != 8) return SYNC_ECORRUPT;
  memcpy(last, k->p, 8);
  return 0;
}

SYNC_API int sync_conflicts_next(sync_conflicts *it, sync_conflict *out) {
  sx_slice k, v;
  int rc;
  if (!it || !out) return SYNC_EINVAL;
  for (;;) {
    if ((rc = sx_id_log_next(it->x->env->st, it->c, &it->started, it->last,
                             &k, &v)))
      return rc;
    if ((rc = sx_conflict_decode(v.p, v.n, sx_get_be64(k.p), out)))
      return sx_fail(it->x->env, rc, "conflict log entry malformed");
    if ((it->flags & SYNC_CONFLICTS_UNRESOLVED) && out->resolved) continue;
    return 0;
  }
}

SYNC_API void sync_conflicts_close(sync_conflicts *it) {
  sx_alloc al;
  if (!it) return;
  al = it->al;
  /* A write transaction's cursors die with it; ours closes only while
   * the transaction is still open, which the API requires. */
  sx_cur_close(it->c);
  sx_free(&al, it);
}

static int sx_resolve_one(sync_txn *x, const unsigned char *k) {
  sx_slice v;
  int rc;
  rc = sx_get(x->env->st, x->t, x->env->conflicts, k, 8, &v);
  if (rc) return rc;
  if (v.n < 2) return SYNC_ECORRUPT;
  if (v.p[1] & 1) return 0;
  if ((rc = sx_buf_reserve(&x->enc, v.n))) return rc;
  memcpy(x->enc.p, v.p, v.n);
  x->enc.p[1] |= 1;
  if ((rc = sx_put(x->env->st, x->t, x->env->conflicts, k, 8, x->enc.p, v.n,
                   0)))
    x->failed = 1;
  return rc ? rc : 1;
}

SYNC_API int sync_conflict_resolve(sync_txn *x, uint64_t id) {
  unsigned char k[8];
  int rc;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  sx_put_be64(k, id);
  rc = sx_resolve_one(x, k);
  return rc < 0 ? rc : 0;
}

SYNC_API int sync_conflicts_resolve_all(sync_txn *x, uint64_t *n) {
  sx_scur *c;
  sx_slice k, v;
  uint64_t count = 0;
  unsigned char key[8];
  int rc, op = SX_FIRST;
  if (n) *n = 0;
  if (!x) return SYNC_EINVAL;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->conflicts, &c))) return rc;
  for (;;) {
    k.p = key;
    k.n = 8;
    rc = sx_cur_get(x->env->st, c, op, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if (k.n != 8) {
      rc = SYNC_ECORRUPT;
      break;
    }
    memcpy(key, k.p, 8);
    if (v.n >= 2 && !(v.p[1] & 1)) {
      if ((rc = sx_resolve_one(x, key)) < 0) break;
      count++;
      /* The put may have moved the cursor's page: find our place. */
      k.p = key;
      k.n = 8;
      if ((rc = sx_cur_get(x->env->st, c, SX_SET_KEY, &k, &v))) break;
    }
    op = SX_NEXT;
  }
  sx_cur_close(c);
  if (n) *n = count;
  return rc;
}

/* ---------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------- */
SYNC_API int sync_env_set_resolver(sync_env *env, sync_resolver_fn fn,
                                   void *ctx) {
  if (!env) return SYNC_EINVAL;
  env->resolver = fn;
  env->resolver_ctx = ctx;
  return 0;
}

SYNC_API int sync_env_set_on_conflict(sync_env *env, sync_conflict_fn fn,
                                      void *ctx) {
  if (!env) return SYNC_EINVAL;
  env->on_conflict = fn;
  env->on_conflict_ctx = ctx;
  env->notify_conflicts = fn ? sx_notify_conflicts : NULL;
  return 0;
}
