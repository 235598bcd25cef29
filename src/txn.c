/*
 * txn.c - the transaction object: begin, abort, its per-table cursors and
 * row scratch, and the site table it loads.
 */
#include "txn.h"

/* ---------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------- */
/* Abort the LMDB side of x, a batch member's too. */
static void sx_txn_end(sync_txn *x) {
  if (x->group) sx_txn_abort_group(x->env->st, &x->gm, x->t);
  else sx_txn_abort(x->env->st, x->t);
}

/* End and free x, begun but not handed out, and fail with rc. */
static int sx_begin_fail(sync_txn *x, int rc, const char *why) {
  sync_env *env = x->env;
  sx_txn_end(x);
  sx_free(&env->al, x);
  return sx_fail(env, rc, "%s", why);
}

SYNC_PRIVATE sync_txn *sx_txn_new(sync_env *env) {
  sync_txn *x = (sync_txn *)sx_malloc(&env->al, sizeof *x);
  if (!x) return NULL;
  memset(x, 0, sizeof *x);
  x->env = env;
  sx_buf_init(&x->enc, &env->al);
  sx_buf_init(&x->changed, &env->al);
  sx_buf_init(&x->conflicts, &env->al);
  sx_buf_init(&x->cpend, &env->al);
  sx_buf_init(&x->fpbuf, &env->al);
  sx_buf_init(&x->ctrs, &env->al);
  sx_buf_init(&x->cpay, &env->al);
  sx_buf_init(&x->fmark, &env->al);
  return x;
}

SYNC_API int sync_txn_begin(sync_env *env, unsigned flags, sync_txn **out) {
  sync_txn *x;
  sx_slice v;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!env || !env->st || (flags & ~(SYNC_TXN_RDONLY | SYNC_TXN_GROUP)) ||
      (flags & SYNC_TXN_RDONLY && flags & SYNC_TXN_GROUP))
    return SYNC_EINVAL;
  if (!(flags & SYNC_TXN_RDONLY) && env->rdonly) return SYNC_EREADONLY;
  if (!(x = sx_txn_new(env))) return SYNC_ENOMEM;
  x->rdonly = (flags & SYNC_TXN_RDONLY) != 0;
  x->group = (flags & SYNC_TXN_GROUP) != 0;
  rc = x->group ? sx_txn_begin_group(env->st, &x->gm, &x->t)
                : sx_txn_begin(env->st, x->rdonly, &x->t);
  if (rc) {
    sx_free(&env->al, x);
    return sx_fail(env, rc, "cannot begin a transaction: %s",
                   sync_strerror(rc));
  }
  rc = sx_get(env->st, x->t, env->meta, "state", 5, &v);
  if (!rc && v.n != 24) rc = SYNC_ECORRUPT;
  if (rc)
    return sx_begin_fail(x, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                         "database state record unreadable");
  x->hlc_last = sx_get_le64(v.p);
  x->base_version = sx_get_le64(v.p + 8);
  x->schema_version = sx_get_le64(v.p + 16);
  if (x->schema_version != env->schema->version)
    return sx_begin_fail(x, SYNC_ESCHEMA,
                         "the schema was changed by another process; reopen");
  rc = sx_get(env->st, x->t, env->meta, "site", 4, &v);
  if (!rc && v.n != SX_SITE_LEN) rc = SYNC_ECORRUPT;
  if (rc)
    return sx_begin_fail(x, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                         "site id record unreadable");
  memcpy(x->self, v.p, SX_SITE_LEN);
  *out = x;
  return 0;
}

SYNC_PRIVATE void sx_txn_close_cursors(sync_txn *x) {
  sync_cursor *c;
  sync_changes *ch;
  unsigned i;
  for (c = x->cursors; c; c = c->next) {
    sx_cur_close(c->c);
    c->c = NULL;
    c->dead = 1;
    c->x = NULL;
  }
  x->cursors = NULL;
  for (ch = x->changes; ch; ch = ch->next) {
    sx_cur_close(ch->it.c); /* read only: nothing to write */
    ch->it.c = NULL;
    sx_cur_close(ch->sc);
    ch->sc = NULL;
    ch->dead = 1;
    ch->x = NULL;
  }
  x->changes = NULL;
  for (i = 0; i < x->ncur; i++) {
    sx_cur_close(x->cur[i]);
    x->cur[i] = NULL;
  }
}

SYNC_PRIVATE void sx_txn_free(sync_txn *x) {
  const sx_alloc *al = &x->env->al;
  sx_free(al, x->cur);
  sx_free(al, x->delta);
  sx_free(al, x->dsum);
  if (x->scratch_ok) {
    sx_row_free(al, &x->old);
    sx_row_free(al, &x->nw);
  }
  if (x->rd_ok) sx_row_free(al, &x->rd);
  sx_buf_free(&x->enc);
  sx_buf_free(&x->changed);
  sx_buf_free(&x->conflicts);
  sx_buf_free(&x->cpend);
  sx_buf_free(&x->fpbuf);
  sx_buf_free(&x->ctrs);
  sx_buf_free(&x->cpay);
  sx_buf_free(&x->fmark);
  sx_free(al, x->folds);
  sx_free(al, x->sites);
  sx_free(al, x->gccl);
  sx_free(al, x->rh);
  sx_free(al, x);
}

SYNC_API void sync_txn_abort(sync_txn *x) {
  if (!x) return;
  sx_txn_close_cursors(x);
  sx_txn_end(x);
  sx_txn_free(x);
}

SYNC_API uint64_t sync_txn_version(sync_txn *x) {
  return x ? x->base_version : 0;
}

/* ---------------------------------------------------------------------
 * Per-table cursors and row scratch
 * ------------------------------------------------------------------- */
SYNC_PRIVATE int sx_scratch(sync_txn *x) {
  if (x->scratch_ok) return 0;
  if (sx_row_init(&x->env->al, &x->old, SYNC_MAX_COLUMNS)) return SYNC_ENOMEM;
  if (sx_row_init(&x->env->al, &x->nw, SYNC_MAX_COLUMNS)) {
    sx_row_free(&x->env->al, &x->old);
    return SYNC_ENOMEM;
  }
  x->scratch_ok = 1;
  return 0;
}

SYNC_PRIVATE int sx_read_scratch(sync_txn *x) {
  if (x->rd_ok) return 0;
  if (sx_row_init(&x->env->al, &x->rd, SYNC_MAX_COLUMNS)) return SYNC_ENOMEM;
  x->rd_ok = 1;
  return 0;
}

/* Per-table cursor, count and sum arrays, made at the first write or
 * read. */
SYNC_PRIVATE int sx_txn_tables(sync_txn *x) {
  unsigned n = x->env->schema->ntables;
  if (x->cur || n == 0) return 0;
  x->cur = (sx_scur **)sx_malloc(&x->env->al, sizeof(sx_scur *) * n);
  x->delta = (int64_t *)sx_malloc(&x->env->al, sizeof(int64_t) * n);
  x->dsum = (uint64_t(*)[3])sx_malloc(&x->env->al, sizeof x->dsum[0] * n);
  if (!x->cur || !x->delta || !x->dsum) {
    sx_free(&x->env->al, x->cur);
    sx_free(&x->env->al, x->delta);
    sx_free(&x->env->al, x->dsum);
    x->cur = NULL;
    x->delta = NULL;
    x->dsum = NULL;
    return SYNC_ENOMEM;
  }
  memset(x->cur, 0, sizeof(sx_scur *) * n);
  memset(x->delta, 0, sizeof(int64_t) * n);
  memset(x->dsum, 0, sizeof x->dsum[0] * n);
  x->ncur = n;
  return 0;
}

SYNC_PRIVATE int sx_table_cursor(sync_txn *x, unsigned tid, sx_scur **out) {
  int rc;
  if ((rc = sx_txn_tables(x))) return rc;
  if (!x->cur[tid] &&
      (rc = sx_cur_open(x->env->st, x->t, x->env->tdbi[tid], &x->cur[tid])))
    return rc;
  *out = x->cur[tid];
  return 0;
}


/* ---------------------------------------------------------------------
 * Site table
 * ------------------------------------------------------------------- */

/* The 16-byte id of site index idx of this replica. */
/* Load the site table into the transaction (sites are few: one per
 * replica that ever wrote). */
SYNC_PRIVATE int sx_sites_load(sync_txn *x) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  uint32_t n = 0, cap = 0;
  int rc, op = SX_FIRST;
  if (x->sites_ok) return 0;
  if ((rc = sx_cur_open(env->st, x->t, env->sites, &c))) return rc;
  k.p = NULL;
  k.n = 0;
  while ((rc = sx_cur_walk(env->st, c, &op, &k, &v)) == 1) {
    if (k.n != 4 || v.n != SX_SITE_LEN || sx_get_be32(k.p) != n) {
      rc = sx_fail(env, SYNC_ECORRUPT, "site table damaged");
      break;
    }
    if (n == cap) {
      uint32_t ncap = cap ? cap * 2 : 16;
      void *p = sx_realloc(&env->al, x->sites, (size_t)ncap * SX_SITE_LEN);
      if (!p) {
        rc = SYNC_ENOMEM;
        break;
      }
      x->sites = (uint8_t(*)[SX_SITE_LEN])p;
      cap = ncap;
    }
    memcpy(x->sites[n++], v.p, SX_SITE_LEN);
  }
  sx_cur_close(c);
  if (rc) return rc;
  if (n == 0) return sx_fail(env, SYNC_ECORRUPT, "site table empty");
  x->nsites = n;
  x->sites_cap = cap;
  x->sites_ok = 1;
  return 0;
}

SYNC_PRIVATE int sx_site_id(sync_txn *x, uint32_t idx, uint8_t *out) {
  int rc;
  if (idx == 0) {
    memcpy(out, x->self, SX_SITE_LEN);
    return 0;
  }
  if ((rc = sx_sites_load(x))) return rc;
  if (idx >= x->nsites) return SYNC_ECORRUPT;
  memcpy(out, x->sites[idx], SX_SITE_LEN);
  return 0;
}

SYNC_PRIVATE int sx_site_index(sync_txn *x, const uint8_t *id, int add,
                               uint32_t *out) {
  uint32_t i;
  int rc;
  if ((rc = sx_sites_load(x))) return rc;
  for (i = 0; i < x->nsites; i++)
    if (!memcmp(x->sites[i], id, SX_SITE_LEN)) {
      *out = i;
      return 0;
    }
  if (!add) return SYNC_NOTFOUND;
  return sx_site_append(x, id, out);
}

SYNC_PRIVATE int sx_walkpos_get(sync_txn *x, const char *name,
                                unsigned char *head, size_t hlen,
                                unsigned *tid, unsigned char *key,
                                size_t *klen) {
  sx_slice v;
  int rc = sx_get(x->env->st, x->t, x->env->meta, name, strlen(name), &v);
  if (rc) return rc;
  if (v.n < hlen + 4 || v.n - hlen - 4 > SYNC_MAX_KEY) return SYNC_ECORRUPT;
  if (hlen) memcpy(head, v.p, hlen);
  *tid = sx_get_le32(v.p + hlen);
  *klen = v.n - hlen - 4;
  if (*klen) memcpy(key, v.p + hlen + 4, *klen);
  return 0;
}

SYNC_PRIVATE int sx_walkpos_put(sync_txn *x, const char *name,
                                const unsigned char *head, size_t hlen,
                                unsigned tid, const void *key, size_t klen) {
  unsigned char b[32 + 4 + SYNC_MAX_KEY];
  int rc;
  if (SX_NEVER(hlen > 32)) return SYNC_EINVAL;
  if (hlen) memcpy(b, head, hlen);
  sx_put_le32(b + hlen, tid);
  if (klen) memcpy(b + hlen + 4, key, klen);
  rc = sx_put(x->env->st, x->t, x->env->meta, name, strlen(name), b,
              hlen + 4 + klen, 0);
  if (rc) x->failed = 1;
  return rc;
}

SYNC_PRIVATE int sx_site_append(sync_txn *x, const uint8_t *id,
                                uint32_t *out) {
  unsigned char k[4];
  int rc;
  if ((rc = sx_sites_load(x))) return rc;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->nsites == x->sites_cap) {
    uint32_t ncap = x->sites_cap * 2;
    void *p = sx_realloc(&x->env->al, x->sites, (size_t)ncap * SX_SITE_LEN);
    if (!p) return SYNC_ENOMEM;
    x->sites = (uint8_t(*)[SX_SITE_LEN])p;
    x->sites_cap = ncap;
  }
  sx_put_be32(k, x->nsites);
  if ((rc = sx_put(x->env->st, x->t, x->env->sites, k, 4, id, SX_SITE_LEN,
                   0))) {
    x->failed = 1;
    return rc;
  }
  memcpy(x->sites[x->nsites], id, SX_SITE_LEN);
  *out = x->nsites++;
  return 0;
}

SYNC_PRIVATE void sx_state_put(unsigned char *b, uint64_t hlc, uint64_t version,
                               uint64_t schema_version) {
  sx_put_le64(b, hlc);
  sx_put_le64(b + 8, version);
  sx_put_le64(b + 16, schema_version);
}
