/*
 * env.c - the environment object before it is opened: errors, key helpers,
 * settings and what it says about its schema and site.
 */
#include "env.h"

#include <stdarg.h>
#include <stdio.h>

/* ---------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------- */
/* Several threads may fail at once (two writers out of map): the first
 * writes the message, the others leave it (sync.h: the message is not
 * meaningful then, but writing it together would be a data race). */
SYNC_PRIVATE int sx_fail(sync_env *env, int rc, const char *fmt, ...) {
  /* Formatted aside: an argument may be env->errmsg itself ("failed
   * earlier: %s"), and vsnprintf's source and destination must not
   * overlap. */
  char msg[sizeof env->errmsg];
  va_list ap;
  if (!env) return rc;
  va_start(ap, fmt);
  /* The analyzer misses va_start here (clang-tidy 14 false positive). */
  vsnprintf(msg, sizeof msg, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
  va_end(ap);
#if defined(__STDC_NO_ATOMICS__)
  if (env->errlock) return rc;
  env->errlock = 1;
#else
  if (atomic_exchange(&env->errlock, 1) != 0) return rc;
#endif
  memcpy(env->errmsg, msg, sizeof msg);
  env->native = env->st ? sx_store_native(env->st) : 0;
#if defined(__STDC_NO_ATOMICS__)
  env->errlock = 0;
#else
  atomic_store(&env->errlock, 0);
#endif
  if (rc == SYNC_ECORRUPT) sx_stats_add(&env->stats, SX_ST_CORRUPT, 1);
  return rc;
}

SYNC_API const char *sync_env_errmsg(sync_env *env) {
  return env ? env->errmsg : "";
}

SYNC_API int sync_env_native_error(sync_env *env) {
  if (!env) return 0;
  return env->st ? sx_store_native(env->st) : env->native;
}

/* ---------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------- */
SYNC_API void sync_key_int(int64_t v, unsigned char out[8]) {
  sx_put_be64(out, (uint64_t)v ^ (UINT64_C(1) << 63));
}

SYNC_API int64_t sync_key_int_decode(const unsigned char in[8]) {
  uint64_t u = sx_get_be64(in) ^ (UINT64_C(1) << 63);
  int64_t v;
  memcpy(&v, &u, sizeof v);
  return v;
}

/* ---------------------------------------------------------------------
 * Environment
 * ------------------------------------------------------------------- */
SYNC_API int sync_env_create(const sync_allocator *alloc, sync_env **out) {
  sx_alloc al;
  sync_env *env;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (alloc) {
    int n = (alloc->malloc != NULL) + (alloc->realloc != NULL) +
            (alloc->free != NULL);
    if (n != 3) return SYNC_EINVAL;
    al.a = *alloc;
  } else {
    sx_alloc_default(&al);
  }
  env = (sync_env *)sx_malloc(&al, sizeof *env);
  if (!env) return SYNC_ENOMEM;
  memset(env, 0, sizeof *env);
  env->al = al;
  env->durability = SYNC_DURABLE_FULL;
  env->mapsize = SYNC_DEFAULT_MAPSIZE;
  env->mapmax = SX_DEFAULT_MAPMAX;
  env->clock = sx_default_clock;
  env->random = sx_default_random;
  sx_stats_init(&env->stats);
  *out = env;
  return 0;
}

SYNC_API int sync_env_set_durability(sync_env *env, int mode) {
  if (!env || env->st) return SYNC_EINVAL;
  if (mode < SYNC_DURABLE_FULL || mode > SYNC_DURABLE_NOSYNC)
    return SYNC_EINVAL;
  env->durability = mode;
  return 0;
}

SYNC_API int sync_env_set_mapsize(sync_env *env, size_t initial, size_t max) {
  if (!env || env->st) return SYNC_EINVAL;
  if (initial) env->mapsize = initial;
  if (max) env->mapmax = max;
  if (env->mapmax < env->mapsize) return SYNC_EINVAL;
  return 0;
}

SYNC_API int sync_env_set_clock(sync_env *env, sync_clock_fn now_ms,
                                void *ctx) {
  if (!env || !now_ms) return SYNC_EINVAL;
  env->clock = now_ms;
  env->clock_ctx = ctx;
  return 0;
}

SYNC_API int sync_env_set_random(sync_env *env, sync_random_fn fill,
                                 void *ctx) {
  if (!env || !fill || env->st) return SYNC_EINVAL;
  env->random = fill;
  env->random_ctx = ctx;
  return 0;
}

SYNC_API int sync_env_set_schema(sync_env *env, const sync_table_def *tables,
                                 unsigned ntables) {
  sx_schema *s;
  int rc;
  if (!env || env->st) return SYNC_EINVAL;
  rc = sx_schema_from_defs(&env->al, tables, ntables, &s, env->errmsg,
                           sizeof env->errmsg);
  if (rc) return rc;
  sx_schema_free(&env->al, env->decl);
  env->decl = s;
  return 0;
}

SYNC_API int sync_env_sync(sync_env *env) {
  if (!env || !env->st) return SYNC_EINVAL;
  if (env->rdonly) return 0;
  return sx_store_sync(env->st);
}

SYNC_API int sync_env_site_id(sync_env *env, uint8_t out[16]) {
  sync_txn *x;
  int rc;
  if (!env || !env->st || !out) return SYNC_EINVAL;
  /* Read from the file: another process may have renewed it. */
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &x))) return rc;
  memcpy(out, x->self, SX_SITE_LEN);
  sync_txn_abort(x);
  return 0;
}

SYNC_API unsigned sync_env_table_count(sync_env *env) {
  return env && env->schema ? env->schema->ntables : 0;
}

SYNC_API int sync_env_table(sync_env *env, const char *name, unsigned *out) {
  int i;
  if (!env || !env->schema || !name || !out) return SYNC_EINVAL;
  if ((i = sx_schema_find_table(env->schema, name)) < 0) return SYNC_NOTFOUND;
  *out = (unsigned)i;
  return 0;
}

SYNC_API int sync_env_table_def(sync_env *env, unsigned table,
                                sync_table_def *out) {
  const sx_table *t;
  if (!env || !env->schema || !out) return SYNC_EINVAL;
  if (table >= env->schema->ntables) return SYNC_NOTFOUND;
  t = &env->schema->tables[table];
  out->name = t->name;
  out->key_type = t->key_type;
  out->columns = t->defs;
  out->ncolumns = t->ncols;
  return 0;
}

SYNC_API int sync_env_column(sync_env *env, unsigned table, const char *name,
                             unsigned *out) {
  int j;
  if (!env || !env->schema || !name || !out) return SYNC_EINVAL;
  if (table >= env->schema->ntables) return SYNC_NOTFOUND;
  if ((j = sx_schema_find_column(&env->schema->tables[table], name)) < 0)
    return SYNC_NOTFOUND;
  *out = (unsigned)j;
  return 0;
}

SYNC_API int sync_env_schema_info(sync_env *env, uint64_t *version,
                                  uint64_t *hash) {
  if (!env || !env->schema) return SYNC_EINVAL;
  if (version) *version = env->schema->version;
  if (hash) *hash = env->schema->hash;
  return 0;
}

SYNC_API int sync_env_set_on_change(sync_env *env, sync_change_fn fn,
                                    void *ctx) {
  if (!env) return SYNC_EINVAL;
  env->on_change = fn;
  env->on_change_ctx = ctx;
  return 0;
}

SYNC_API int sync_env_stats(sync_env *env, sync_stats *out) {
  if (!env || !out) return SYNC_EINVAL;
  sx_stats_copy(&env->stats, out);
  return 0;
}
