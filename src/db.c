/*
 * db.c - the public API: environments, transactions, tracked writes,
 * reads, cursors and the change log.
 *
 * Layout in the LMDB file (named databases):
 *   sx.meta   "format" -> magic and format version
 *             "site"   -> this replica's 16-byte id
 *             "state"  -> last HLC, last local version, schema version
 *             "schema" -> canonical schema (schema.c)
 *             "n" + table id (2 bytes BE) -> live row count, sum of the
 *                      content fingerprints of the live rows, sum of the
 *                      meta fingerprints of all rows, count of all rows
 *                      (u64 LE each; format 1: the live count only;
 *                      format 2: the first three, meta over live rows)
 *             "xfloor" -> u64 cap on this replica's own vector entry once
 *                      rows with its stamps left its scope (format 4)
 *             "renewed" -> site ids given up by restored replicas, each
 *                      with the HLC its claims are void above (merge.c,
 *                      "Renewal records"; format 5)
 *   sx.sites  site index (u32 BE) -> 16-byte site id; 0 is this replica
 *   sx.rejects  the rejection log (merge.c; format 4)
 *   sx.log    local version (u64 BE) + seq (u32 BE) -> table id (varint)
 *             + key.  Appended in order; a row's older entry is deleted
 *             when it changes again, so the log is as large as the data.
 *   sx.t<id>  one per table: primary key -> row (row.h)
 *
 * A write transaction takes its stamp (HLC) and local version at its first
 * change and uses them for every row it touches; a transaction that
 * changes nothing consumes neither.
 */
#include "db.h"

#include "clock.h"
#include "hash.h"

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

static void sx_tname(char *buf, unsigned id) {
  snprintf(buf, 16, "sx.t%u", id);
}

static void sx_state_put(unsigned char *b, uint64_t hlc, uint64_t version,
                         uint64_t schema_version) {
  sx_put_le64(b, hlc);
  sx_put_le64(b + 8, version);
  sx_put_le64(b + 16, schema_version);
}

/* A table's stored record: count and fingerprint sums ("n" + u16 BE id).
 * Absent means an empty table; any other size than SX_TSUM_LEN is
 * damage (records of formats 1 and 2 never reach this: open upgrades
 * them). */
static void sx_tsum_key(unsigned char *k, unsigned tid) {
  k[0] = 'n';
  k[1] = (unsigned char)(tid >> 8);
  k[2] = (unsigned char)tid;
}

static int sx_tsum_get(sync_env *env, sx_stxn *t, unsigned tid, sx_tsum *out) {
  unsigned char k[3];
  sx_slice v;
  int rc;
  memset(out, 0, sizeof *out);
  sx_tsum_key(k, tid);
  rc = sx_get(env->st, t, env->meta, k, 3, &v);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.n != SX_TSUM_LEN)
    return sx_fail(env, SYNC_ECORRUPT, "table '%s': row count record damaged",
                   env->schema->tables[tid].name);
  out->live = sx_get_le64(v.p);
  out->content = sx_get_le64(v.p + 8);
  out->meta = sx_get_le64(v.p + 16);
  out->rows = sx_get_le64(v.p + 24);
  return 0;
}

static int sx_tsum_put(sync_env *env, sx_stxn *t, unsigned tid,
                       const sx_tsum *s) {
  unsigned char k[3], v[SX_TSUM_LEN];
  sx_tsum_key(k, tid);
  sx_put_le64(v, s->live);
  sx_put_le64(v + 8, s->content);
  sx_put_le64(v + 16, s->meta);
  sx_put_le64(v + 24, s->rows);
  return sx_put(env->st, t, env->meta, k, 3, v, SX_TSUM_LEN, 0);
}

static int sx_tsum_rebuild(sync_env *env, sx_stxn *t, unsigned tid);

static int sx_put_schema(sync_env *env, sx_stxn *t, const sx_schema *s) {
  sx_buf b;
  int rc;
  sx_buf_init(&b, &env->al);
  rc = sx_schema_encode(s, &b);
  if (!rc) rc = sx_put(env->st, t, env->meta, "schema", 6, b.p, b.len, 0);
  sx_buf_free(&b);
  return rc;
}

/* A new file: make the site id, the stores and the schema. */
static int sx_env_init(sync_env *env, sx_stxn *t) {
  unsigned char state[24], fmt[12], sk[4] = {0, 0, 0, 0};
  unsigned i;
  int rc;
  if (env->random(env->random_ctx, env->site, SX_SITE_LEN) != 0)
    return sx_fail(env, SYNC_EIO, "the random source failed to give a site id");
  if (!env->decl) {
    rc = sx_schema_from_defs(&env->al, NULL, 0, &env->decl, env->errmsg,
                             sizeof env->errmsg);
    if (rc) return rc;
  }
  if ((rc = sx_dbi_open(env->st, t, "sx.meta", 1, &env->meta)) ||
      (rc = sx_dbi_open(env->st, t, "sx.sites", 1, &env->sites)) ||
      (rc = sx_dbi_open(env->st, t, "sx.log", 1, &env->log)) ||
      (rc = sx_dbi_open(env->st, t, "sx.vv", 1, &env->vv)) ||
      (rc = sx_dbi_open(env->st, t, "sx.peers", 1, &env->peers)) ||
      (rc = sx_dbi_open(env->st, t, "sx.conflicts", 1, &env->conflicts)) ||
      (rc = sx_dbi_open(env->st, t, "sx.epochs", 1, &env->epochs)) ||
      (rc = sx_dbi_open(env->st, t, "sx.rejects", 1, &env->rejects)))
    return rc;
  env->epochs_ok = 1;
  env->rejects_ok = 1;
  /* Eight bytes of a binary record, its NUL included: not a C string. */
  memcpy(fmt, SX_MAGIC, 8); /* NOLINT(bugprone-not-null-terminated-result) */
  sx_put_le32(fmt + 8, SX_FORMAT_VERSION);
  sx_state_put(state, 0, 0, env->decl->version);
  if ((rc = sx_put(env->st, t, env->meta, "format", 6, fmt, 12, 0)) ||
      (rc = sx_put(env->st, t, env->meta, "site", 4, env->site, SX_SITE_LEN,
                   0)) ||
      (rc = sx_put(env->st, t, env->meta, "state", 5, state, 24, 0)) ||
      (rc = sx_put(env->st, t, env->sites, sk, 4, env->site, SX_SITE_LEN, 0)) ||
      (rc = sx_put_schema(env, t, env->decl)))
    return rc;
  for (i = 0; i < env->decl->ntables; i++) {
    char name[16];
    sx_tname(name, i);
    if ((rc = sx_dbi_open(env->st, t, name, 1, &env->tdbi[i]))) return rc;
  }
  env->schema = env->decl;
  env->decl = NULL;
  return 0;
}

/* In the open's transaction t, make schema up (the file's schema in
 * force plus appended tables and columns) the file's: its record and
 * version, a store per new table, and the sums of each table that gained
 * columns rebuilt under up (rows written by newer peers may hold values
 * in them already: they count from now on).  On success env->schema is
 * up; on failure it is unchanged and nothing is committed. */
static int sx_schema_upgrade(sync_env *env, sx_stxn *t, sx_schema *up) {
  sx_schema *was = env->schema;
  unsigned char state[24];
  sx_slice v;
  unsigned i;
  int rc;
  rc = sx_get(env->st, t, env->meta, "state", 5, &v);
  if (!rc && v.n != 24) rc = SYNC_ECORRUPT;
  if (rc) return rc;
  memcpy(state, v.p, 24);
  sx_put_le64(state + 16, up->version);
  if ((rc = sx_put(env->st, t, env->meta, "state", 5, state, 24, 0)) ||
      (rc = sx_put_schema(env, t, up)))
    return rc;
  /* A failure fails the open, which closes the store: the handles of
   * the new tables need no undoing. */
  for (i = was->ntables; i < up->ntables; i++) {
    char name[16];
    sx_tname(name, i);
    if ((rc = sx_dbi_open(env->st, t, name, 1, &env->tdbi[i]))) return rc;
  }
  env->schema = up;
  for (i = 0; i < was->ntables && !rc; i++)
    if (up->tables[i].ncols > was->tables[i].ncols)
      rc = sx_tsum_rebuild(env, t, i);
  if (rc) {
    env->schema = was;
    return rc;
  }
  sx_schema_free(&env->al, was);
  return 0;
}

/* An existing file: check what it is and that it holds our schema. */
static int sx_env_load(sync_env *env, sx_stxn *t, const char *path) {
  sx_slice v;
  sx_schema *s, *up = NULL;
  int grow = 0;
  unsigned i;
  uint32_t format;
  int rc;
  rc = sx_dbi_open(env->st, t, "sx.meta", 0, &env->meta);
  if (rc == SYNC_NOTFOUND)
    return sx_fail(env, SYNC_ENOTDB, "%s: an LMDB file, but not a sync database",
                   path);
  if (rc) return rc;
  rc = sx_get(env->st, t, env->meta, "format", 6, &v);
  if (rc == SYNC_NOTFOUND || (!rc && (v.n != 12 || memcmp(v.p, SX_MAGIC, 8))))
    return sx_fail(env, SYNC_ENOTDB, "%s: not a sync database", path);
  if (rc) return rc;
  format = sx_get_le32(v.p + 8);
  /* Format 4 lacks only the renewal records (meta "renewed"), which read
   * as none: a read-only open takes it as it is. */
  if (format >= 1 && format < 4 && env->rdonly)
    return sx_fail(env, SYNC_EVERSION,
                   "%s: storage format %u needs an upgrade to format %u "
                   "(%s); open it writable once",
                   path, (unsigned)format, SX_FORMAT_VERSION,
                   format == 3
                       ? "the scope in peer records and the rejection log"
                       : "the stored fingerprint sums");
  if (format < 1 || format > SX_FORMAT_VERSION)
    return sx_fail(env, SYNC_EVERSION,
                   "%s: storage format %u, this library reads %u", path,
                   (unsigned)format, SX_FORMAT_VERSION);
  if ((rc = sx_get(env->st, t, env->meta, "site", 4, &v)) || v.n != SX_SITE_LEN)
    return sx_fail(env, rc && rc != SYNC_NOTFOUND ? rc : SYNC_ECORRUPT,
                   "%s: site id missing", path);
  memcpy(env->site, v.p, SX_SITE_LEN);
  if ((rc = sx_get(env->st, t, env->meta, "schema", 6, &v)))
    return sx_fail(env, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                   "%s: schema missing", path);
  if ((rc = sx_schema_decode(&env->al, v.p, v.n, &s)))
    return sx_fail(env, rc, "%s: stored schema unreadable", path);
  if (env->decl && sx_schema_diff(s, env->decl, env->errmsg,
                                  sizeof env->errmsg)) {
    /* The program declares more than the file holds: tables and columns
     * appended (a rolling upgrade) are added by this open, below. */
    char why[sizeof env->errmsg];
    memcpy(why, env->errmsg, sizeof why);
    rc = sx_schema_extends(s, env->decl, env->errmsg, sizeof env->errmsg);
    if (rc == SYNC_ESCHEMA) memcpy(env->errmsg, why, sizeof why);
    if (!rc && env->rdonly) {
      snprintf(env->errmsg, sizeof env->errmsg,
               "%s: %s; the declared schema adds to the file's: open it "
               "writable once to upgrade it", path, why);
      rc = SYNC_ESCHEMA;
    }
    grow = !rc;
    if (rc) {
      sx_schema_free(&env->al, s);
      return rc;
    }
  }
  env->schema = s;
  if ((rc = sx_dbi_open(env->st, t, "sx.sites", 0, &env->sites)) ||
      (rc = sx_dbi_open(env->st, t, "sx.log", 0, &env->log)) ||
      (rc = sx_dbi_open(env->st, t, "sx.vv", 0, &env->vv)) ||
      (rc = sx_dbi_open(env->st, t, "sx.peers", 0, &env->peers)) ||
      (rc = sx_dbi_open(env->st, t, "sx.conflicts", 0, &env->conflicts)))
    return sx_fail(env, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                   "%s: internal store missing", path);
  /* Files of storage format 1 have no epochs until opened for writing. */
  rc = sx_dbi_open(env->st, t, "sx.epochs", !env->rdonly, &env->epochs);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  env->epochs_ok = rc == 0;
  /* Files of storage format 3 and older gain the rejection log now. */
  rc = sx_dbi_open(env->st, t, "sx.rejects", !env->rdonly, &env->rejects);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  env->rejects_ok = rc == 0;
  for (i = 0; i < s->ntables; i++) {
    char name[16];
    sx_tname(name, i);
    if ((rc = sx_dbi_open(env->st, t, name, 0, &env->tdbi[i])))
      return sx_fail(env, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                     "%s: store of table '%s' missing", path,
                     s->tables[i].name);
  }
  if (format < SX_FORMAT_VERSION && !env->rdonly) {
    /* Format 1 kept only the live count per table, format 2 the meta sum
     * of live rows only: one scan per table gives the sums, committed
     * with the new format record by the open's transaction (all or
     * nothing).  Format 3 lacks only the scope of peer records, which
     * reads as unknown, and the rejection log (made above); format 4
     * lacks the renewal records, which read as none: the format record
     * alone changes (older code would refuse the longer records, and
     * would take vectors the renewal records cap). */
    unsigned char fmt[12];
    for (i = 0; format < 3 && i < s->ntables; i++)
      if ((rc = sx_tsum_rebuild(env, t, i)))
        return sx_fail(env, rc, "%s: upgrade to format %u failed at table "
                       "'%s': %s", path, SX_FORMAT_VERSION, s->tables[i].name,
                       sync_strerror(rc));
    memcpy(fmt, SX_MAGIC, 8); /* NOLINT(bugprone-not-null-terminated-result) */
    sx_put_le32(fmt + 8, SX_FORMAT_VERSION);
    if ((rc = sx_put(env->st, t, env->meta, "format", 6, fmt, 12, 0)))
      return rc;
  }
  if (grow) {
    if ((rc = sx_schema_dup(&env->al, env->decl, s->version + 1, &up)))
      return rc;
    rc = sx_schema_upgrade(env, t, up);
    if (rc) {
      sx_schema_free(&env->al, up);
      return sx_fail(env, rc, "%s: adding the declared tables and columns "
                     "failed: %s", path, sync_strerror(rc));
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Epochs and site renewal.  sx.epochs: key u64 BE (2^64 - 1 - start
 * version), so that a range search from a version finds the epoch holding
 * it; value u64 LE id, u64 LE the state HLC when it began.  meta "ident":
 * u64 LE device, u64 LE inode of the file when it was last opened for
 * writing.
 * ------------------------------------------------------------------- */
static void sx_epoch_key(unsigned char *k, uint64_t start) {
  sx_put_be64(k, UINT64_MAX - start);
}

/* The epoch holding version v: 0 with *start, *id, *hlc set, or
 * SYNC_NOTFOUND. */
static int sx_epoch_at(sync_env *env, sx_stxn *t, uint64_t v, uint64_t *start,
                       uint64_t *id, uint64_t *hlc) {
  sx_scur *c;
  sx_slice k, val;
  unsigned char key[8];
  int rc;
  if (!env->epochs_ok) return SYNC_NOTFOUND;
  if ((rc = sx_cur_open(env->st, t, env->epochs, &c))) return rc;
  sx_epoch_key(key, v);
  k.p = key;
  k.n = 8;
  rc = sx_cur_get(env->st, c, SX_SET_RANGE, &k, &val);
  if (rc == 0 && (k.n != 8 || val.n != 16)) rc = SYNC_ECORRUPT;
  if (rc == 0) {
    *start = UINT64_MAX - sx_get_be64(k.p);
    *id = sx_get_le64(val.p);
    *hlc = sx_get_le64(val.p + 8);
  }
  sx_cur_close(c);
  return rc;
}

SYNC_PRIVATE int sx_mark_of(sync_txn *x, uint64_t v, sx_mark *out) {
  uint64_t hlc;
  int rc;
  memset(out, 0, sizeof *out);
  if (!v) return 0;
  rc = sx_epoch_at(x->env, x->t, v, &out->start, &out->id, &hlc);
  if (rc == SYNC_NOTFOUND) {
    memset(out, 0, sizeof *out);
    return 0;
  }
  return rc;
}

SYNC_PRIVATE int sx_epoch_next_hlc(sync_txn *x, const sx_mark *m,
                                   uint64_t *hlc) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, val;
  uint64_t next = 0;
  int rc, op = SX_FIRST, have = 0;
  if (!env->epochs_ok || !m->id) return SYNC_NOTFOUND;
  if ((rc = sx_cur_open(env->st, x->t, env->epochs, &c))) return rc;
  /* Keys run from the latest epoch to the first. */
  for (;;) {
    uint64_t start;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &val);
    op = SX_NEXT;
    if (rc) break;
    if (k.n != 8 || val.n != 16) {
      rc = SYNC_ECORRUPT;
      break;
    }
    start = UINT64_MAX - sx_get_be64(k.p);
    if (start < m->start) {
      rc = SYNC_NOTFOUND;
      break;
    }
    if (start == m->start) {
      if (sx_get_le64(val.p) != m->id || !have) rc = SYNC_NOTFOUND;
      break;
    }
    next = sx_get_le64(val.p + 8);
    have = 1;
  }
  sx_cur_close(c);
  if (rc == 0) *hlc = next;
  return rc;
}

SYNC_PRIVATE int sx_history_check(sync_txn *x, uint64_t v, const sx_mark *m) {
  sx_mark here;
  int rc;
  if (v > x->base_version)
    return sx_fail(x->env, SYNC_EHISTORY,
                   "a peer holds this replica's log up to version %llu, but "
                   "it ends at %llu: it was restored from a backup or copied",
                   (unsigned long long)v, (unsigned long long)x->base_version);
  if (!m->id) return 0; /* a view from before epochs: nothing to compare */
  if ((rc = sx_mark_of(x, v, &here))) return rc;
  if (here.id != m->id || here.start != m->start)
    return sx_fail(x->env, SYNC_EHISTORY,
                   "a peer holds this replica's log up to version %llu in "
                   "another history (epoch %016llx from version %llu, here "
                   "%016llx): this file was restored from a backup or copied",
                   (unsigned long long)v, (unsigned long long)m->id,
                   (unsigned long long)m->start, (unsigned long long)here.id);
  return 0;
}

/* Rewrite the stamps of this replica's own site in every row: those up
 * to hlc t go to site index k (the old id), later ones stay at 0 (the new
 * id).  Neither the versions nor the log change. */
static int sx_relabel_rows(sync_txn *x, uint32_t k, uint64_t t) {
  sync_env *env = x->env;
  unsigned tid;
  int rc = 0;
  for (tid = 0; tid < env->schema->ntables && !rc; tid++) {
    sx_scur *c;
    sx_slice kk, v;
    int op = SX_FIRST;
    if ((rc = sx_table_cursor(x, tid, &c))) break;
    for (;;) {
      unsigned char key[SYNC_MAX_KEY];
      size_t klen, size;
      unsigned i;
      int any = 0;
      kk.p = NULL;
      kk.n = 0;
      rc = sx_cur_get(env->st, c, op, &kk, &v);
      op = SX_NEXT;
      if (rc == SYNC_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc) break;
      if ((rc = sx_row_decode(v.p, v.n, kk.p, kk.n, &x->old))) break;
      for (i = 0; i < x->old.nstamps; i++)
        if (x->old.stamps[i].site == 0 && x->old.stamps[i].hlc <= t) {
          x->old.stamps[i].site = k;
          any = 1;
        }
      if (!any) continue;
      klen = kk.n;
      memcpy(key, kk.p, klen);
      size = sx_row_size(&x->old);
      if ((rc = sx_buf_reserve(&x->enc, size))) break;
      sx_row_encode(&x->old, key, klen, x->enc.p, size);
      if ((rc = sx_cur_put(env->st, c, key, klen, x->enc.p, size,
                           SX_CUR_CURRENT))) {
        x->failed = 1;
        break;
      }
      kk.p = key;
      kk.n = klen;
    }
  }
  return rc;
}

/* Take a new site id.  This replica's writes with stamps up to hlc t keep
 * the old id, later ones move to the new id; the old id becomes an
 * ordinary site, held up to hlc held (0: nothing claimed, so peers send
 * back every change of it they hold). */
SYNC_PRIVATE int sx_site_renew(sync_txn *x, uint64_t t, uint64_t held) {
  sync_env *env = x->env;
  uint8_t old[SX_SITE_LEN], nid[SX_SITE_LEN];
  unsigned char kb[4], vb[8];
  uint32_t k, i;
  int rc, tries;
  if ((rc = sx_scratch(x)) || (rc = sx_sites_load(x))) return rc;
  memcpy(old, env->site, SX_SITE_LEN);
  for (tries = 0;; tries++) {
    int clash = 0;
    if (tries == 8 || env->random(env->random_ctx, nid, SX_SITE_LEN) != 0)
      return sx_fail(env, SYNC_EIO,
                     "the random source failed to give a new site id");
    for (i = 0; i < x->nsites; i++)
      if (!memcmp(x->sites[i], nid, SX_SITE_LEN)) clash = 1;
    if (!clash) break;
  }
  /* The old id gets the next index, the new one index 0. */
  if ((rc = sx_site_index(x, old, 0, &k)) || k != 0)
    return rc ? rc : SYNC_ECORRUPT;
  sx_put_be32(kb, 0);
  if ((rc = sx_put(env->st, x->t, env->sites, kb, 4, nid, SX_SITE_LEN, 0)))
    goto fail;
  memcpy(x->sites[0], nid, SX_SITE_LEN);
  memcpy(env->site, nid, SX_SITE_LEN);
  if ((rc = sx_site_index(x, old, 1, &k))) goto fail;
  if ((rc = sx_relabel_rows(x, k, t))) goto fail;
  {
    /* xfloor capped what we claimed of our own writes, some of which
     * left our scope: they keep the old id, and the new one has lost
     * none.  (The old id is held no further than held, and a held above
     * xfloor would claim them: no caller passes one.) */
    sx_slice f;
    rc = sx_get(env->st, x->t, env->meta, "xfloor", 6, &f);
    if (rc && rc != SYNC_NOTFOUND) goto fail;
    if (rc == 0) {
      if (f.n == 8 && held > sx_get_le64(f.p)) held = sx_get_le64(f.p);
      if ((rc = sx_del(env->st, x->t, env->meta, "xfloor", 6))) goto fail;
    }
    rc = 0;
  }
  sx_put_be32(kb, k);
  sx_put_le64(vb, held);
  if (held && (rc = sx_put(env->st, x->t, env->vv, kb, 4, vb, 8, 0))) goto fail;
  if ((rc = sx_put(env->st, x->t, env->meta, "site", 4, nid, SX_SITE_LEN, 0)))
    goto fail;
  x->dirty = 1;
  return 0;
fail:
  x->failed = 1;
  memcpy(env->site, old, SX_SITE_LEN);
  return rc;
}

/* A writable open: a new epoch from the next version on.  Returns 1 when
 * the file is not the one last opened here (a copy, or a backup put back
 * as a new file): it must take a new site id before it writes. */
static int sx_open_history(sync_env *env, sx_stxn *t, const char *path) {
  unsigned char key[8], val[16], idb[16];
  uint64_t id = 0, dev = 0, ino = 0;
  sx_slice v;
  int rc, moved = 0;
  if (!env->epochs_ok) return 0;
  rc = sx_get(env->st, t, env->meta, "state", 5, &v);
  if (rc || v.n != 24) return rc ? rc : SYNC_ECORRUPT;
  sx_epoch_key(key, sx_get_le64(v.p + 8) + 1);
  sx_put_le64(val + 8, sx_get_le64(v.p));
  while (!id)
    if (env->random(env->random_ctx, &id, sizeof id) != 0)
      return sx_fail(env, SYNC_EIO, "%s: the random source failed", path);
  sx_put_le64(val, id);
  if ((rc = sx_put(env->st, t, env->epochs, key, 8, val, 16, 0))) return rc;
  rc = sx_store_ident(env->st, &dev, &ino);
  if (rc == SYNC_ENOTSUP) return 0;
  if (rc) return rc;
  rc = sx_get(env->st, t, env->meta, "ident", 5, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  moved = rc == 0 && v.n == 16 &&
          (sx_get_le64(v.p) != dev || sx_get_le64(v.p + 8) != ino);
  sx_put_le64(idb, dev);
  sx_put_le64(idb + 8, ino);
  if ((rc = sx_put(env->st, t, env->meta, "ident", 5, idb, 16, 0))) return rc;
  return moved;
}

SYNC_API int sync_env_open(sync_env *env, const char *path, unsigned flags) {
  sx_store_opts o;
  sx_stxn *t = NULL;
  size_t entries = 0;
  int rc, moved = 0;
  if (!env || !path || env->st ||
      (flags & ~(SYNC_OPEN_RDONLY | SYNC_OPEN_NOCREATE)))
    return SYNC_EINVAL;
  env->errmsg[0] = 0;
  env->native = 0;
  memset(&o, 0, sizeof o);
  o.durability = env->durability;
  o.mapsize = env->mapsize;
  o.mapmax = env->mapmax;
  o.maxdbs = SX_EXTRA_DBS + SYNC_MAX_TABLES;
  o.rdonly = (flags & SYNC_OPEN_RDONLY) != 0;
  o.nocreate = (flags & SYNC_OPEN_NOCREATE) != 0;
  rc = sx_store_open(&env->al, path, &o, &env->st, env->errmsg,
                     sizeof env->errmsg);
  if (rc) {
    env->native = 0;
    return rc;
  }
  env->rdonly = o.rdonly;
  if ((rc = sx_txn_begin(env->st, o.rdonly, &t))) goto fail;
  if ((rc = sx_main_entries(env->st, t, &entries))) goto fail;
  if (entries == 0) {
    if (o.rdonly) {
      rc = sx_fail(env, SYNC_ENOTDB, "%s: empty file, not a sync database",
                   path);
      goto fail;
    }
    rc = sx_env_init(env, t);
  } else {
    rc = sx_env_load(env, t, path);
  }
  if (rc) goto fail;
  if (!o.rdonly && (rc = moved = sx_open_history(env, t, path)) < 0) goto fail;
  rc = sx_txn_commit(env->st, t);
  t = NULL;
  if (rc) goto fail;
  if (moved == 1) {
    /* A copy: every write it holds is one the original holds too, so
     * they keep the old id.  It claims none of them: the file copied may
     * itself be a restore nobody found out yet, whose clock claims writes
     * it lost; peers send back what they hold of the old id, once. */
    sync_txn *x;
    if ((rc = sync_txn_begin(env, 0, &x))) goto fail;
    rc = sx_site_renew(x, x->hlc_last, 0);
    if (rc) sync_txn_abort(x);
    else rc = sync_txn_commit(x);
    if (rc) goto fail;
  }
  return 0;
fail:
  if (t) sx_txn_abort(env->st, t);
  if (!env->errmsg[0])
    sx_fail(env, rc, "%s: open failed: %s", path, sync_strerror(rc));
  env->native = sx_store_native(env->st);
  sx_store_close(env->st);
  env->st = NULL;
  if (env->schema != env->decl) sx_schema_free(&env->al, env->schema);
  env->schema = NULL;
  return rc;
}

SYNC_API void sync_env_close(sync_env *env) {
  sx_alloc al;
  if (!env) return;
  sx_store_close(env->st);
  al = env->al;
  sx_compat_clear(env);
  sx_schema_free(&al, env->schema);
  sx_schema_free(&al, env->decl);
  sx_free(&al, env);
}

SYNC_API int sync_env_sync(sync_env *env) {
  if (!env || !env->st) return SYNC_EINVAL;
  if (env->rdonly) return 0;
  return sx_store_sync(env->st);
}

SYNC_API int sync_env_site_id(sync_env *env, uint8_t out[16]) {
  if (!env || !env->st || !out) return SYNC_EINVAL;
  memcpy(out, env->site, SX_SITE_LEN);
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

/* ---------------------------------------------------------------------
 * Peers' schemas.  Replicas whose schemas differ by appended tables and
 * columns sync (docs/PROTOCOL.md, "Schemas"); the hashes of those found
 * compatible are kept in memory, a few per env, so that the apply of a
 * delta cut under one of them needs only the hash the delta carries.
 * ------------------------------------------------------------------- */
SYNC_PRIVATE const sx_schema *sx_compat_find(sync_env *env, uint64_t h) {
  unsigned i;
  for (i = 0; i < SX_COMPAT_MAX; i++) {
    const sx_schema *p = SX_PLOAD(&env->compat[i]);
    if (!p) break; /* slots fill in order */
    if (p->hash == h) return p;
  }
  return NULL;
}

SYNC_PRIVATE int sx_compat_ok(sync_env *env, uint64_t h) {
  return h == env->schema->hash || sx_compat_find(env, h) != NULL;
}

/* Keep p (owned by the caller) in the first free slot. */
static int sx_compat_add(sync_env *env, const sx_schema *p) {
  sx_schema *c;
  unsigned i;
  int rc;
  if (sx_compat_find(env, p->hash)) return 0;
  if ((rc = sx_schema_dup(&env->al, p, 0, &c))) return rc;
  for (i = 0; i < SX_COMPAT_MAX; i++) {
#if defined(__STDC_NO_ATOMICS__)
    if (!env->compat[i]) {
      env->compat[i] = c;
      return 0;
    }
#else
    sx_schema *none = NULL;
    if (atomic_compare_exchange_strong(&env->compat[i], &none, c)) return 0;
#endif
    if (SX_PLOAD(&env->compat[i])->hash == c->hash) break; /* a race */
  }
  sx_schema_free(&env->al, c);
  if (i < SX_COMPAT_MAX) return 0;
  return sx_fail(env, SYNC_ELIMIT,
                 "this replica met %d other schemas since it was opened: "
                 "reopen it",
                 SX_COMPAT_MAX);
}

SYNC_PRIVATE void sx_compat_clear(sync_env *env) {
  unsigned i;
  for (i = 0; i < SX_COMPAT_MAX; i++) {
    sx_schema *p = SX_PLOAD(&env->compat[i]);
    env->compat[i] = NULL;
    sx_schema_free(&env->al, p);
  }
}

SYNC_PRIVATE int sx_compat_check(sync_env *env, const sx_schema *p,
                                 const char *ours, const char *theirs,
                                 int peer_first) {
  int rc;
  if (p->hash == env->schema->hash) return 0;
  rc = peer_first ? sx_schema_compat(p, env->schema, theirs, ours, env->errmsg,
                                     sizeof env->errmsg)
                  : sx_schema_compat(env->schema, p, ours, theirs, env->errmsg,
                                     sizeof env->errmsg);
  if (rc) return rc;
  return sx_compat_add(env, p);
}

SYNC_API int64_t sync_env_schema_export(sync_env *env, void *buf, size_t cap) {
  sx_buf b;
  int64_t n;
  if (!env || !env->schema || (cap && !buf)) return SYNC_EINVAL;
  sx_buf_init(&b, &env->al);
  if (sx_schema_encode_peer(env->schema, &b)) {
    sx_buf_free(&b);
    return SYNC_ENOMEM;
  }
  n = (int64_t)b.len;
  if (b.len <= cap) memcpy(buf, b.p, b.len);
  sx_buf_free(&b);
  return n;
}

SYNC_API int sync_env_schema_accept(sync_env *env, const void *schema,
                                    size_t len) {
  sx_schema *p;
  int rc;
  if (!env || !env->schema || (len && !schema)) return SYNC_EINVAL;
  rc = sx_schema_decode_peer(&env->al, (const unsigned char *)schema, len, &p);
  if (rc == SYNC_ECORRUPT)
    return sx_fail(env, SYNC_EFORMAT, "the schema given is malformed");
  if (rc) return rc;
  rc = sx_compat_check(env, p, "here", "in the schema given", 0);
  sx_schema_free(&env->al, p);
  return rc;
}

/* Commit schema s (already validated) in its own transaction; with a new
 * table, create its store too.  rescan: a table whose fingerprint sums
 * the change may alter, rebuilt under s (or -1).  A new column alters
 * them for rows that already hold values in it, written by peers with the
 * newer schema and kept unread until now. */
static int sx_schema_commit(sync_env *env, sx_schema *s, int new_table,
                            int rescan) {
  sx_stxn *t;
  sx_slice v;
  unsigned char state[24];
  sx_dbi d = 0;
  int rc;
  if ((rc = sx_txn_begin(env->st, 0, &t))) return rc;
  rc = sx_get(env->st, t, env->meta, "state", 5, &v);
  if (!rc && v.n != 24) rc = SYNC_ECORRUPT;
  if (!rc && sx_get_le64(v.p + 16) != env->schema->version)
    rc = sx_fail(env, SYNC_ESCHEMA, "the schema was changed by another process");
  if (!rc) {
    memcpy(state, v.p, 24);
    sx_put_le64(state + 16, s->version);
    rc = sx_put(env->st, t, env->meta, "state", 5, state, 24, 0);
  }
  if (!rc) rc = sx_put_schema(env, t, s);
  if (!rc && new_table) {
    char name[16];
    sx_tname(name, s->ntables - 1);
    rc = sx_dbi_open(env->st, t, name, 1, &d);
  }
  if (!rc && rescan >= 0) {
    /* Fingerprints follow the schema in force: hash under s.  No other
     * transaction is active (sx_schema_change_ok). */
    sx_schema *was = env->schema;
    env->schema = s;
    rc = sx_tsum_rebuild(env, t, (unsigned)rescan);
    env->schema = was;
  }
  if (rc) {
    sx_txn_abort(env->st, t);
    return rc;
  }
  if ((rc = sx_txn_commit(env->st, t))) return rc;
  if (new_table) env->tdbi[s->ntables - 1] = d;
  sx_schema_free(&env->al, env->schema);
  env->schema = s;
  sx_compat_clear(env); /* found compatible with the schema before */
  return 0;
}

static int sx_schema_change_ok(sync_env *env) {
  if (!env || !env->st) return SYNC_EINVAL;
  if (env->rdonly) return SYNC_EREADONLY;
  if (sx_store_active(env->st))
    return sx_fail(env, SYNC_EBUSY,
                   "a schema change needs every transaction ended first");
  return 0;
}

SYNC_API int sync_env_add_column(sync_env *env, unsigned table,
                                 const sync_column_def *col) {
  sx_schema *s;
  int rc;
  if ((rc = sx_schema_change_ok(env))) return rc;
  if (table >= env->schema->ntables || !col) return SYNC_EINVAL;
  if ((rc = sx_schema_with_column(&env->al, env->schema, table, col, &s,
                                  env->errmsg, sizeof env->errmsg)))
    return rc;
  if ((rc = sx_schema_commit(env, s, 0, (int)table)))
    sx_schema_free(&env->al, s);
  return rc;
}

SYNC_API int sync_env_add_table(sync_env *env, const sync_table_def *def,
                                unsigned *out) {
  sx_schema *s;
  int rc;
  if ((rc = sx_schema_change_ok(env))) return rc;
  if ((rc = sx_schema_with_table(&env->al, env->schema, def, &s, env->errmsg,
                                 sizeof env->errmsg)))
    return rc;
  if ((rc = sx_schema_commit(env, s, 1, -1))) {
    sx_schema_free(&env->al, s);
    return rc;
  }
  if (out) *out = env->schema->ntables - 1;
  return 0;
}

/* ---------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------- */
SYNC_API int sync_txn_begin(sync_env *env, unsigned flags, sync_txn **out) {
  sync_txn *x;
  sx_slice v;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!env || !env->st || (flags & ~SYNC_TXN_RDONLY)) return SYNC_EINVAL;
  if (!(flags & SYNC_TXN_RDONLY) && env->rdonly) return SYNC_EREADONLY;
  x = (sync_txn *)sx_malloc(&env->al, sizeof *x);
  if (!x) return SYNC_ENOMEM;
  memset(x, 0, sizeof *x);
  x->env = env;
  x->rdonly = (flags & SYNC_TXN_RDONLY) != 0;
  sx_buf_init(&x->enc, &env->al);
  sx_buf_init(&x->changed, &env->al);
  sx_buf_init(&x->conflicts, &env->al);
  sx_buf_init(&x->cpend, &env->al);
  sx_buf_init(&x->fpbuf, &env->al);
  if ((rc = sx_txn_begin(env->st, x->rdonly, &x->t))) {
    sx_free(&env->al, x);
    return sx_fail(env, rc, "cannot begin a transaction: %s",
                   sync_strerror(rc));
  }
  rc = sx_get(env->st, x->t, env->meta, "state", 5, &v);
  if (!rc && v.n != 24) rc = SYNC_ECORRUPT;
  if (rc) {
    sx_txn_abort(env->st, x->t);
    sx_free(&env->al, x);
    return sx_fail(env, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                   "database state record unreadable");
  }
  x->hlc_last = sx_get_le64(v.p);
  x->base_version = sx_get_le64(v.p + 8);
  x->schema_version = sx_get_le64(v.p + 16);
  if (x->schema_version != env->schema->version) {
    sx_txn_abort(env->st, x->t);
    sx_free(&env->al, x);
    return sx_fail(env, SYNC_ESCHEMA,
                   "the schema was changed by another process; reopen");
  }
  *out = x;
  return 0;
}

/* Close every cursor of the transaction.  Must precede its end: LMDB
 * frees a write transaction's cursors itself when it commits.  Iterators
 * still open die with the transaction; closing them later only frees
 * them. */
static void sx_txn_close_cursors(sync_txn *x) {
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
    sx_cur_close(ch->c);
    ch->c = NULL;
    ch->dead = 1;
    ch->x = NULL;
  }
  x->changes = NULL;
  for (i = 0; i < x->ncur; i++) {
    sx_cur_close(x->cur[i]);
    x->cur[i] = NULL;
  }
}

/* Free the transaction object once its LMDB transaction has ended. */
static void sx_txn_free(sync_txn *x) {
  const sx_alloc *al = &x->env->al;
  sx_free(al, x->cur);
  sx_free(al, x->delta);
  sx_free(al, x->dsum);
  if (x->scratch_ok) {
    sx_row_free(al, &x->old);
    sx_row_free(al, &x->nw);
  }
  sx_buf_free(&x->enc);
  sx_buf_free(&x->changed);
  sx_buf_free(&x->conflicts);
  sx_buf_free(&x->cpend);
  sx_buf_free(&x->fpbuf);
  sx_free(al, x->sites);
  sx_free(al, x->gccl);
  sx_free(al, x);
}

SYNC_API void sync_txn_abort(sync_txn *x) {
  sync_env *env;
  if (!x) return;
  env = x->env;
  sx_txn_close_cursors(x);
  sx_txn_abort(env->st, x->t);
  sx_txn_free(x);
}

/* Rebuild table tid's stored record by a scan, inside t (the open's or a
 * schema change's transaction), through a transaction object borrowed
 * around t for the row decoding and the site table. */
static int sx_tsum_rebuild(sync_env *env, sx_stxn *t, unsigned tid) {
  sync_txn *x;
  sx_tsum sum;
  int rc;
  x = (sync_txn *)sx_malloc(&env->al, sizeof *x);
  if (!x) return SYNC_ENOMEM;
  memset(x, 0, sizeof *x);
  x->env = env;
  x->t = t;
  sx_buf_init(&x->enc, &env->al);
  sx_buf_init(&x->changed, &env->al);
  sx_buf_init(&x->conflicts, &env->al);
  sx_buf_init(&x->cpend, &env->al);
  sx_buf_init(&x->fpbuf, &env->al);
  rc = sx_table_scan(x, tid, &sum);
  if (!rc) rc = sx_tsum_put(env, t, tid, &sum);
  sx_txn_close_cursors(x);
  sx_txn_free(x); /* t stays: its owner ends it */
  return rc;
}

SYNC_PRIVATE int sx_log_current(sync_txn *x, sx_row *r,
                                const unsigned char *lk, size_t lkn,
                                const unsigned char *v, size_t vn,
                                unsigned *tid, sx_slice *key) {
  sync_env *env = x->env;
  sx_slice rv;
  uint64_t t;
  size_t n = sx_get_varint(v, v + vn, &t);
  int rc;
  if (lkn != SX_LOGKEY || !n || t >= env->schema->ntables || vn - n < 1 ||
      vn - n > SYNC_MAX_KEY)
    return sx_fail(env, SYNC_ECORRUPT, "change log entry malformed");
  *tid = (unsigned)t;
  key->p = v + n;
  key->n = vn - n;
  rc = sx_get(env->st, x->t, env->tdbi[t], key->p, key->n, &rv);
  if (rc == SYNC_NOTFOUND) return SYNC_NOTFOUND; /* collected since */
  if (rc) return rc;
  if ((rc = sx_row_decode(rv.p, rv.n, key->p, key->n, r)))
    return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                   env->schema->tables[t].name);
  if (r->version != sx_get_be64(lk) || r->seq != sx_get_be32(lk + 8))
    return SYNC_NOTFOUND;
  return 0;
}

/* Log bookkeeping (meta "logst"): u64 entries, u64 stale entries, u64 +
 * u32 position where compaction resumes. */
#define SX_LOGST 28

/* Remove stale log entries, scanning at most budget entries from *pos on
 * (wrapping to the start once); updates the counts. */
static int sx_log_compact(sync_txn *x, uint64_t *n, uint64_t *stale,
                          unsigned char *pos, size_t budget) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v, key;
  unsigned char at[SX_LOGKEY];
  int rc, wrapped = 0;
  unsigned tid;
  if ((rc = sx_cur_open(env->st, x->t, env->log, &c))) return rc;
  memcpy(at, pos, SX_LOGKEY);
  while (budget-- > 0 && *stale > 0) {
    k.p = at;
    k.n = SX_LOGKEY;
    rc = sx_cur_get(env->st, c, SX_SET_RANGE, &k, &v);
    if (rc == SYNC_NOTFOUND) {
      if (wrapped) break;
      wrapped = 1;
      memset(at, 0, SX_LOGKEY);
      continue;
    }
    if (rc) break;
    memcpy(at, k.p, SX_LOGKEY);
    rc = sx_log_current(x, &x->old, k.p, k.n, v.p, v.n, &tid, &key);
    if (rc == SYNC_NOTFOUND) {
      /* The lookup moved nothing: the cursor still sits on the entry. */
      if ((rc = sx_cur_del(env->st, c))) break;
      (*stale)--;
      (*n)--;
      continue; /* the next entry is found again from at */
    }
    if (rc) break;
    /* Step past a current entry. */
    if (sx_get_be32(at + 8) == UINT32_MAX)
      sx_logkey(at, sx_get_be64(at) + 1, 0);
    else
      sx_logkey(at, sx_get_be64(at), sx_get_be32(at + 8) + 1);
  }
  sx_cur_close(c);
  memcpy(pos, at, SX_LOGKEY);
  return rc;
}

static int sx_log_finish(sync_txn *x) {
  sync_env *env = x->env;
  unsigned char b[SX_LOGST];
  sx_slice v;
  uint64_t n = 0, stale = 0;
  int rc;
  memset(b, 0, sizeof b);
  rc = sx_get(env->st, x->t, env->meta, "logst", 5, &v);
  if (rc == 0 && v.n == SX_LOGST) {
    memcpy(b, v.p, SX_LOGST);
    n = sx_get_le64(b);
    stale = sx_get_le64(b + 8);
  } else if (rc && rc != SYNC_NOTFOUND) {
    return rc;
  }
  n += (uint64_t)x->log_added;
  stale += (uint64_t)x->log_stale;
  if (stale > n) stale = n; /* never trust a count past what exists */
  /* Keep stale entries at most as many as live ones: then each page the
   * scan dirties gives up many entries. */
  if (stale >= 1024 && stale * 2 >= n) {
    unsigned char pos[SX_LOGKEY];
    size_t budget = 8 * (size_t)(x->log_added + x->log_stale) + 256;
    sx_logkey(pos, sx_get_le64(b + 16), sx_get_le32(b + 24));
    if ((rc = sx_log_compact(x, &n, &stale, pos, budget))) return rc;
    sx_put_le64(b + 16, sx_get_be64(pos));
    sx_put_le32(b + 24, sx_get_be32(pos + 8));
  }
  sx_put_le64(b, n);
  sx_put_le64(b + 8, stale);
  return sx_put(env->st, x->t, env->meta, "logst", 5, b, SX_LOGST, 0);
}

/* Write the state record and the row counts and fingerprint sums this
 * transaction changed. */
static int sx_txn_finish(sync_txn *x) {
  sync_env *env = x->env;
  unsigned char state[24];
  unsigned i;
  int rc;
  uint64_t hlc = x->hlc_last;
  if (x->stamped && x->hlc > hlc) hlc = x->hlc;
  if (x->hlc_seen > hlc) hlc = x->hlc_seen; /* the clock follows what it saw */
  sx_state_put(state, hlc, x->wrote ? x->version : x->base_version,
               x->schema_version);
  if ((rc = sx_put(env->st, x->t, env->meta, "state", 5, state, 24, 0)))
    return rc;
  if ((x->log_added || x->log_stale) && (rc = sx_log_finish(x))) return rc;
  for (i = 0; x->delta && i < env->schema->ntables; i++) {
    sx_tsum s;
    if (!x->delta[i] && !x->dsum[i][0] && !x->dsum[i][1] && !x->dsum[i][2])
      continue;
    if ((rc = sx_tsum_get(env, x->t, i, &s))) return rc;
    s.live += (uint64_t)x->delta[i];
    s.content += x->dsum[i][0];
    s.meta += x->dsum[i][1];
    s.rows += x->dsum[i][2];
    if ((rc = sx_tsum_put(env, x->t, i, &s))) return rc;
  }
  return 0;
}

/* After a commit: tell the application which rows changed and which
 * conflicts were recorded. */
static void sx_txn_notify(sync_txn *x) {
  sync_env *env = x->env;
  const unsigned char *p = x->changed.p, *end;
  if (!env->on_change || !p) p = NULL;
  end = p ? p + x->changed.len : NULL;
  while (p && p < end) {
    uint64_t tid, klen;
    size_t a = sx_get_varint(p, end, &tid), b;
    if (!a || !(b = sx_get_varint(p + a, end, &klen))) break;
    env->on_change(env->on_change_ctx, (unsigned)tid, p + a + b, (size_t)klen);
    p += a + b + klen;
  }
  if (env->on_conflict && x->conflicts.len) sx_notify_conflicts(x);
}

SYNC_API int sync_txn_commit(sync_txn *x) {
  sync_env *env;
  int rc = 0, counted;
  uint64_t t0 = 0, rows;
  if (!x) return SYNC_EINVAL;
  env = x->env;
  counted = !x->rdonly && (x->wrote || x->dirty);
  rows = x->rows_written;
  if (counted) t0 = sx_now_ns();
  if (x->failed) {
    sync_txn_abort(x);
    return sx_fail(env, SYNC_ETXN, "transaction failed earlier: %s",
                   env->errmsg);
  }
  if (x->wrote || x->dirty) rc = sx_txn_finish(x);
  if (rc) {
    sync_txn_abort(x);
  } else {
    sx_txn_close_cursors(x);
    rc = sx_txn_commit(env->st, x->t);
    if (!rc && counted) {
      uint64_t t1 = sx_now_ns();
      sx_stats_add(&env->stats, SX_ST_COMMITS, 1);
      sx_stats_add(&env->stats, SX_ST_ROWS_WRITTEN, rows);
      sx_stats_time(&env->stats, SX_H_COMMIT, t1 > t0 ? t1 - t0 : 0);
    }
    if (!rc) sx_txn_notify(x);
    sx_txn_free(x);
  }
  if (rc) return sx_fail(env, rc, "commit failed: %s", sync_strerror(rc));
  return 0;
}

SYNC_API uint64_t sync_txn_version(sync_txn *x) {
  return x ? x->base_version : 0;
}

/* ---------------------------------------------------------------------
 * Rows
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

static int sx_check_key(sync_txn *x, unsigned tid, const void *key,
                        size_t klen) {
  if (!x || !key) return SYNC_EINVAL;
  if (tid >= x->env->schema->ntables) return SYNC_EINVAL;
  if (klen == 0) return SYNC_EINVAL;
  if (klen > SYNC_MAX_KEY) return SYNC_ETOOBIG;
  if (x->env->schema->tables[tid].key_type == SYNC_INTEGER && klen != 8)
    return SYNC_EINVAL;
  return 0;
}

static int sx_check_value(const sx_column *c, const sync_value *v) {
  if (v->type == SYNC_NULL)
    return (c->flags & SYNC_COL_NOTNULL) ? SYNC_ECONSTRAINT : 0;
  if (v->type != c->type) return SYNC_ETYPE;
  if (v->type == SYNC_TEXT || v->type == SYNC_BLOB) {
    if (v->len > SYNC_MAX_VALUE) return SYNC_ETOOBIG;
    if (v->len && !v->data) return SYNC_EINVAL;
  }
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

#define SX_OP_PUT 0
#define SX_OP_UPDATE 1
#define SX_OP_DELETE 2

static sx_stamp sx_mkstamp(uint64_t hlc, uint32_t site) {
  sx_stamp s;
  s.hlc = hlc;
  s.site = site;
  return s;
}

/* Build x->nw from the old row (if any) and the operation.  Returns 1
 * when something changes, 0 when nothing does, or an error. */
static int sx_build(sync_txn *x, const sx_table *tb, int found, int op,
                    const unsigned *cols, const sync_value *vals, unsigned n,
                    uint64_t fresh_cl) {
  sx_row *o = &x->old, *w = &x->nw;
  sx_stamp now = sx_mkstamp(x->hlc, 0);
  unsigned i;
  int live = found && (o->cl & 1);
  int changed = 0;
  w->nstamps = 0;
  if (!live) {
    if (op != SX_OP_PUT) return SYNC_NOTFOUND;
    /* A new row, or one written again over its tombstone, starts above
     * every causal length collected in the table (fresh_cl): the
     * tombstone here may be a horizon's or a repair's, below a delete
     * that others keep. */
    w->cl = found && o->cl + 1 > fresh_cl ? o->cl + 1 : fresh_cl;
    w->cl_stamp = sx_row_stamp(w, now);
    w->ncols = tb->ncols;
    for (i = 0; i < tb->ncols; i++) {
      w->cols[i].st = w->cl_stamp;
      w->cols[i].base = SX_NOSTAMP;
      w->cols[i].v = vals[i];
    }
    return 1;
  }
  if (op == SX_OP_DELETE) {
    w->cl = o->cl + 1;
    w->cl_stamp = sx_row_stamp(w, now);
    w->ncols = 0;
    return 1;
  }
  w->cl = o->cl;
  w->cl_stamp = sx_row_stamp(w, o->stamps[o->cl_stamp]);
  /* Keep columns a newer schema wrote, beyond what we know. */
  w->ncols = o->ncols > tb->ncols ? o->ncols : tb->ncols;
  for (i = 0; i < w->ncols; i++) {
    sx_rcol *c = &w->cols[i];
    if (i < o->ncols && o->cols[i].st != SX_NOSTAMP) {
      c->st = sx_row_stamp(w, o->stamps[o->cols[i].st]);
      c->base = o->cols[i].base == SX_NOSTAMP
                    ? SX_NOSTAMP
                    : sx_row_stamp(w, o->stamps[o->cols[i].base]);
      c->v = o->cols[i].v;
    } else {
      c->st = c->base = SX_NOSTAMP;
      c->v = sync_null();
    }
  }
  for (i = 0; i < n; i++) {
    unsigned j = cols ? cols[i] : i;
    sx_rcol *c = &w->cols[j];
    int had = j < o->ncols && o->cols[j].st != SX_NOSTAMP;
    if (had ? sx_value_eq(&c->v, &vals[i]) : vals[i].type == SYNC_NULL)
      continue;
    c->base = had ? c->st : SX_NOSTAMP;
    c->st = sx_row_stamp(w, now);
    c->v = vals[i];
    changed = 1;
  }
  return changed;
}

SYNC_PRIVATE void sx_logkey(unsigned char *k, uint64_t version, uint32_t seq) {
  sx_put_be64(k, version);
  sx_put_be32(k + 8, seq);
}

/* The one write path: put, update and delete of one row. */
static int sx_write(sync_txn *x, unsigned tid, const void *key, size_t klen,
                    int op, const unsigned *cols, const sync_value *vals,
                    unsigned n) {
  sync_env *env;
  const sx_table *tb;
  sx_scur *cur;
  sx_slice k, v;
  uint64_t fresh = 1;
  unsigned i;
  int rc, found;
  if ((rc = sx_check_key(x, tid, key, klen))) return rc;
  env = x->env;
  if (x->rdonly) return SYNC_EREADONLY;
  if (x->failed) return SYNC_ETXN;
  tb = &env->schema->tables[tid];
  if (op == SX_OP_PUT && (n != tb->ncols || !vals)) return SYNC_EINVAL;
  if (op == SX_OP_UPDATE) {
    if (n == 0 || n > tb->ncols || !cols || !vals) return SYNC_EINVAL;
    for (i = 0; i < n; i++)
      if (cols[i] >= tb->ncols) return SYNC_EINVAL;
  }
  for (i = 0; i < n; i++)
    if ((rc = sx_check_value(&tb->cols[cols ? cols[i] : i], &vals[i])))
      return rc;
  if ((rc = sx_scratch(x)) || (rc = sx_table_cursor(x, tid, &cur))) return rc;
  sx_stamp_txn(x);
  k.p = (const unsigned char *)key;
  k.n = klen;
  rc = sx_cur_get(env->st, cur, SX_SET_KEY, &k, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  found = rc == 0;
  if (found && (rc = sx_row_decode(v.p, v.n, key, klen, &x->old)))
    return sx_fail(env, rc, "table '%s': stored row fails its checksum",
                   tb->name);
  if ((!found || !(x->old.cl & 1)) && (rc = sx_fresh_cl(x, tid, &fresh)))
    return rc;
  rc = sx_build(x, tb, found, op, cols, vals, n, fresh);
  if (rc <= 0) return rc;
  return sx_store_row(x, tid, cur, key, klen, found, 0);
}

SYNC_PRIVATE int sx_fresh_cl(sync_txn *x, unsigned tid, uint64_t *cl) {
  sync_env *env = x->env;
  *cl = 1;
  if (!x->gccl_ok) {
    sx_slice v;
    unsigned i, n = env->schema->ntables;
    int rc = sx_get(env->st, x->t, env->meta, "gccl", 4, &v);
    if (rc && rc != SYNC_NOTFOUND) return rc;
    if (rc == 0) {
      x->gccl = (uint64_t *)sx_malloc(&env->al, sizeof(uint64_t) * (n ? n : 1));
      if (!x->gccl) return SYNC_ENOMEM;
      for (i = 0; i < n; i++)
        x->gccl[i] = 8 * (size_t)i + 8 <= v.n ? sx_get_le64(v.p + 8 * i) : 0;
    }
    x->gccl_ok = 1;
  }
  if (x->gccl && tid < env->schema->ntables && x->gccl[tid])
    *cl = x->gccl[tid] | 1; /* an even causal length + 1 */
  return 0;
}

SYNC_PRIVATE void sx_stamp_txn(sync_txn *x) {
  uint64_t last;
  if (x->stamped) return;
  last = x->hlc_last > x->hlc_seen ? x->hlc_last : x->hlc_seen;
  x->hlc = sx_hlc_next(last, x->env->clock(x->env->clock_ctx));
  x->stamped = 1;
}

static int sx_note_changed(sync_txn *x, unsigned tid, const void *key,
                           size_t klen);

SYNC_PRIVATE int sx_store_row(sync_txn *x, unsigned tid, sx_scur *cur,
                              const void *key, size_t klen, int found,
                              int append) {
  sync_env *env = x->env;
  unsigned char lk[SX_LOGKEY], lv[SX_VARINT_MAX + SYNC_MAX_KEY];
  uint64_t oc = 0, om = 0, nc, nm;
  size_t size, lvn;
  int rc, reuse, was_live = found && (x->old.cl & 1);
  if ((rc = sx_txn_tables(x))) return rc;
  /* Something changes: this transaction now takes its version. */
  if (!x->wrote) {
    x->wrote = 1;
    x->version = x->base_version + 1;
  }
  reuse = found && x->old.version == x->version;
  x->nw.version = x->version;
  x->nw.seq = reuse ? x->old.seq : x->seq;
  sx_row_compact(&x->nw);
  /* The table's fingerprint sums trade the old row for the new one.  Now,
   * while x->old's values still point at its unmodified stored bytes. */
  if (found &&
      (rc = sx_row_fp(x, tid, (const unsigned char *)key, klen, &x->old, &oc,
                      &om)) < 0)
    return rc;
  if ((rc = sx_row_fp(x, tid, (const unsigned char *)key, klen, &x->nw, &nc,
                      &nm)) < 0)
    return rc;
  size = sx_row_size(&x->nw);
  if ((rc = sx_buf_reserve(&x->enc, size))) return rc;
  sx_row_encode(&x->nw, key, klen, x->enc.p, size);
  /* Remember the row for on_change (once per transaction). */
  if (!reuse && (rc = sx_note_changed(x, tid, key, klen))) return rc;
  /* From here on LMDB is modified: a failure leaves the txn unusable. */
  /* The row's older log entry stays where it is, stale: deleting it would
   * dirty a random log page per row.  Compaction (sx_log_compact) removes
   * stale entries in log order, many per page. */
  if (found && !reuse) x->log_stale++;
  if ((rc = sx_cur_put(env->st, cur, key, klen, x->enc.p, size,
                       found ? SX_CUR_CURRENT
                             : (append ? SX_PUT_APPEND : 0u))))
    goto fail;
  if (!reuse) {
    sx_logkey(lk, x->version, x->seq);
    lvn = sx_put_varint(lv, tid);
    memcpy(lv + lvn, key, klen);
    if ((rc = sx_put(env->st, x->t, env->log, lk, SX_LOGKEY, lv, lvn + klen,
                     SX_PUT_APPEND)))
      goto fail;
    x->seq++;
    x->log_added++;
    x->rows_written++;
  }
  x->delta[tid] += (int)(x->nw.cl & 1) - was_live;
  x->dsum[tid][0] += nc - oc;
  x->dsum[tid][1] += nm - om;
  x->dsum[tid][2] += (uint64_t)!found;
  x->gen++;
  return 0;
fail:
  x->failed = 1;
  return sx_fail(env, rc, "write to table '%s' failed: %s",
                 env->schema->tables[tid].name, sync_strerror(rc));
}

/* Table tid's key for on_change (var table id, var length, key). */
static int sx_note_changed(sync_txn *x, unsigned tid, const void *key,
                           size_t klen) {
  unsigned char lv[2 * SX_VARINT_MAX];
  size_t hn;
  int rc;
  if (!x->env->on_change) return 0;
  hn = sx_put_varint(lv, tid);
  hn += sx_put_varint(lv + hn, klen);
  if ((rc = sx_buf_reserve(&x->changed, hn + klen))) return rc;
  memcpy(x->changed.p + x->changed.len, lv, hn);
  memcpy(x->changed.p + x->changed.len + hn, key, klen);
  x->changed.len += hn + klen;
  return 0;
}

SYNC_PRIVATE int sx_sums_drop(sync_txn *x, unsigned tid, const void *key,
                              size_t klen, const sx_row *r) {
  uint64_t content, meta;
  int rc;
  if ((rc = sx_txn_tables(x))) return rc;
  if ((rc = sx_row_fp(x, tid, (const unsigned char *)key, klen, r, &content,
                      &meta)) < 0)
    return rc;
  x->delta[tid] -= (int64_t)(r->cl & 1);
  x->dsum[tid][0] -= content;
  x->dsum[tid][1] -= meta;
  x->dsum[tid][2]--;
  x->dirty = 1; /* the commit writes the sums */
  x->gen++;
  return 0;
}

SYNC_PRIVATE int sx_remove_row(sync_txn *x, unsigned tid, sx_scur *cur,
                               const void *key, size_t klen) {
  sync_env *env = x->env;
  int rc;
  if ((rc = sx_sums_drop(x, tid, key, klen, &x->old)) ||
      (rc = sx_note_changed(x, tid, key, klen)))
    return rc;
  if ((rc = sx_cur_del(env->st, cur))) {
    x->failed = 1;
    return sx_fail(env, rc, "removing a row of table '%s' failed: %s",
                   env->schema->tables[tid].name, sync_strerror(rc));
  }
  /* Its log entry now names a row that is gone: readers skip it, and
   * compaction deletes it. */
  x->log_stale++;
  x->rows_written++;
  return 0;
}

SYNC_API int sync_put(sync_txn *x, unsigned table, const void *key,
                      size_t klen, const sync_value *vals, unsigned nvals) {
  return sx_write(x, table, key, klen, SX_OP_PUT, NULL, vals, nvals);
}

SYNC_API int sync_update(sync_txn *x, unsigned table, const void *key,
                         size_t klen, const unsigned *cols,
                         const sync_value *vals, unsigned n) {
  return sx_write(x, table, key, klen, SX_OP_UPDATE, cols, vals, n);
}

SYNC_API int sync_delete(sync_txn *x, unsigned table, const void *key,
                         size_t klen) {
  return sx_write(x, table, key, klen, SX_OP_DELETE, NULL, NULL, 0);
}

/* Read and decode the row at key into r; SYNC_NOTFOUND when absent or a
 * tombstone (with *tomb set for the latter, if given). */
static int sx_read(sync_txn *x, unsigned tid, const void *key, size_t klen,
                   sx_row *r) {
  sx_slice v;
  int rc;
  rc = sx_get(x->env->st, x->t, x->env->tdbi[tid], key, klen, &v);
  if (rc) return rc;
  if ((rc = sx_row_decode(v.p, v.n, key, klen, r)))
    return sx_fail(x->env, rc, "table '%s': stored row fails its checksum",
                   x->env->schema->tables[tid].name);
  return (r->cl & 1) ? 0 : SYNC_NOTFOUND;
}

static void sx_fill(const sx_row *r, sync_value *vals, unsigned nvals) {
  unsigned i;
  for (i = 0; i < nvals; i++)
    vals[i] = (i < r->ncols && r->cols[i].st != SX_NOSTAMP) ? r->cols[i].v
                                                            : sync_null();
}

SYNC_API int sync_get(sync_txn *x, unsigned table, const void *key,
                      size_t klen, sync_value *vals, unsigned nvals) {
  int rc;
  if ((rc = sx_check_key(x, table, key, klen))) return rc;
  if (nvals > x->env->schema->tables[table].ncols || (nvals && !vals))
    return SYNC_EINVAL;
  if ((rc = sx_scratch(x))) return rc;
  if ((rc = sx_read(x, table, key, klen, &x->old))) return rc;
  sx_fill(&x->old, vals, nvals);
  return 0;
}

SYNC_API int sync_contains(sync_txn *x, unsigned table, const void *key,
                           size_t klen) {
  int rc;
  if ((rc = sx_check_key(x, table, key, klen))) return rc;
  if ((rc = sx_scratch(x))) return rc;
  rc = sx_read(x, table, key, klen, &x->old);
  if (rc == SYNC_NOTFOUND) return 0;
  return rc ? rc : 1;
}

SYNC_API int sync_count(sync_txn *x, unsigned table, uint64_t *out) {
  sx_tsum s;
  int rc;
  if (!x || !out || table >= x->env->schema->ntables) return SYNC_EINVAL;
  if ((rc = sx_table_sum(x, table, &s))) return rc;
  *out = s.live;
  return 0;
}

SYNC_API int sync_put_many(sync_txn *x, unsigned table, const sync_key *keys,
                           const sync_value *vals, size_t nrows,
                           size_t *done) {
  size_t i, nc;
  int rc = 0;
  if (done) *done = 0;
  if (!x || !keys || (nrows && !vals) || table >= x->env->schema->ntables)
    return SYNC_EINVAL;
  nc = x->env->schema->tables[table].ncols;
  for (i = 0; i < nrows; i++) {
    rc = sx_write(x, table, keys[i].data, keys[i].len, SX_OP_PUT, NULL,
                  vals + i * nc, (unsigned)nc);
    if (rc) break;
    if (done) *done = i + 1;
  }
  return rc;
}

SYNC_API int sync_delete_many(sync_txn *x, unsigned table,
                              const sync_key *keys, size_t n,
                              size_t *ndeleted) {
  size_t i, d = 0;
  int rc = 0;
  if (ndeleted) *ndeleted = 0;
  if (!x || (n && !keys)) return SYNC_EINVAL;
  for (i = 0; i < n; i++) {
    rc = sx_write(x, table, keys[i].data, keys[i].len, SX_OP_DELETE, NULL,
                  NULL, 0);
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      continue;
    }
    if (rc) break;
    d++;
  }
  if (ndeleted) *ndeleted = d;
  return rc;
}

SYNC_API int sync_get_many(sync_txn *x, unsigned table, const sync_key *keys,
                           size_t n, sync_value *vals, unsigned nvals,
                           int *found) {
  size_t i;
  unsigned j;
  int rc;
  if (!x || (n && (!keys || !found || (nvals && !vals))) ||
      table >= x->env->schema->ntables)
    return SYNC_EINVAL;
  for (i = 0; i < n; i++) {
    rc = sync_get(x, table, keys[i].data, keys[i].len,
                  nvals ? vals + i * nvals : NULL, nvals);
    found[i] = rc == 0;
    if (rc == SYNC_NOTFOUND) {
      for (j = 0; j < nvals; j++) vals[i * nvals + j] = sync_null();
      continue;
    }
    if (rc) return rc;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Cursors
 * ------------------------------------------------------------------- */
SYNC_API int sync_cursor_open(sync_txn *x, unsigned table, sync_cursor **out) {
  sync_cursor *c;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x || table >= x->env->schema->ntables) return SYNC_EINVAL;
  c = (sync_cursor *)sx_malloc(&x->env->al, sizeof *c);
  if (!c) return SYNC_ENOMEM;
  memset(c, 0, sizeof *c);
  c->al = x->env->al;
  if ((rc = sx_row_init(&c->al, &c->row, SYNC_MAX_COLUMNS))) {
    sx_free(&c->al, c);
    return rc;
  }
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->tdbi[table], &c->c))) {
    sx_row_free(&c->al, &c->row);
    sx_free(&c->al, c);
    return rc;
  }
  c->x = x;
  c->tid = table;
  c->next = x->cursors;
  x->cursors = c;
  *out = c;
  return 0;
}

SYNC_API int sync_cursor_range(sync_cursor *c, const void *lo, size_t lolen,
                               const void *hi, size_t hilen) {
  if (!c || c->dead) return SYNC_EINVAL;
  if ((lo && lolen > SYNC_MAX_KEY) || (hi && hilen > SYNC_MAX_KEY))
    return SYNC_ETOOBIG;
  c->has_lo = lo != NULL;
  c->has_hi = hi != NULL;
  c->lolen = lo ? lolen : 0;
  c->hilen = hi ? hilen : 0;
  if (lo && lolen) memcpy(c->lo, lo, lolen);
  if (hi && hilen) memcpy(c->hi, hi, hilen);
  c->started = c->done = 0;
  return 0;
}

SYNC_API int sync_cursor_next(sync_cursor *c, sync_key *key, sync_value *vals,
                              unsigned nvals) {
  sync_txn *x;
  sx_slice k, v;
  int rc, op;
  if (!c || c->dead) return SYNC_EINVAL;
  x = c->x;
  if (nvals > x->env->schema->tables[c->tid].ncols || (nvals && !vals))
    return SYNC_EINVAL;
  if (c->done) return SYNC_NOTFOUND;
  if (!c->started) {
    k.p = c->lo;
    k.n = c->lolen;
    op = c->has_lo && c->lolen ? SX_SET_RANGE : SX_FIRST;
  } else if (c->gen != x->gen) {
    /* The transaction wrote since: find our place again by key. */
    k.p = c->last;
    k.n = c->lastlen;
    op = SX_SET_RANGE;
  } else {
    k.p = NULL;
    k.n = 0;
    op = SX_NEXT;
  }
  for (;;) {
    rc = sx_cur_get(x->env->st, c->c, op, &k, &v);
    if (rc == SYNC_NOTFOUND) break;
    if (rc) return rc;
    op = SX_NEXT;
    if (c->started && sx_keycmp(k.p, k.n, c->last, c->lastlen) <= 0) continue;
    if (c->has_hi && sx_keycmp(k.p, k.n, c->hi, c->hilen) >= 0) break;
    if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &c->row)))
      return sx_fail(x->env, rc, "table '%s': stored row fails its checksum",
                     x->env->schema->tables[c->tid].name);
    c->started = 1;
    c->gen = x->gen;
    memcpy(c->last, k.p, k.n);
    c->lastlen = k.n;
    if (!(c->row.cl & 1)) continue;
    if (key) {
      key->data = k.p;
      key->len = k.n;
    }
    sx_fill(&c->row, vals, nvals);
    return 0;
  }
  c->done = 1;
  return SYNC_NOTFOUND;
}

SYNC_API void sync_cursor_close(sync_cursor *c) {
  sync_cursor **pp;
  sx_alloc al;
  if (!c) return;
  if (c->x) {
    for (pp = &c->x->cursors; *pp; pp = &(*pp)->next)
      if (*pp == c) {
        *pp = c->next;
        break;
      }
    sx_cur_close(c->c);
  }
  al = c->al;
  sx_row_free(&al, &c->row);
  sx_free(&al, c);
}

/* ---------------------------------------------------------------------
 * Change log
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
  for (;;) {
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
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
    memcpy(out, x->env->site, SX_SITE_LEN);
    return 0;
  }
  if ((rc = sx_sites_load(x))) return rc;
  if (idx >= x->nsites) return SYNC_ECORRUPT;
  memcpy(out, x->sites[idx], SX_SITE_LEN);
  return 0;
}

SYNC_PRIVATE int sx_site_index(sync_txn *x, const uint8_t *id, int add,
                               uint32_t *out) {
  unsigned char k[4];
  uint32_t i;
  int rc;
  if ((rc = sx_sites_load(x))) return rc;
  for (i = 0; i < x->nsites; i++)
    if (!memcmp(x->sites[i], id, SX_SITE_LEN)) {
      *out = i;
      return 0;
    }
  if (!add) return SYNC_NOTFOUND;
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

/* ---------------------------------------------------------------------
 * Fingerprints.  Both hashes run over a small buffer built per row:
 * content: var klen, key, then per replicated column j of the schema
 *          holding a non-NULL value: var j, u8 tag, payload;
 * meta:    var klen, key, var causal length, var hlc + 16-byte site of
 *          its stamp, then per replicated column j written: var j, var
 *          hlc + 16-byte site of its stamp, u8 tag, payload; for a
 *          tombstone (no content): var klen, key, var causal length,
 *          var hlc + 16-byte site of its stamp, under its own seed.
 * Base stamps and local versions are left out: they differ between
 * replicas that hold the same row.
 * ------------------------------------------------------------------- */
#define SX_FP_SEED_CONTENT UINT64_C(0x73796e632d633031) /* "sync-c01" */
#define SX_FP_SEED_META UINT64_C(0x73796e632d6d3031)    /* "sync-m01" */
#define SX_FP_SEED_TOMB UINT64_C(0x73796e632d743031)    /* "sync-t01" */


SYNC_PRIVATE int sx_row_fp(sync_txn *x, unsigned tid, const unsigned char *key,
                           size_t klen, const sx_row *r, uint64_t *content,
                           uint64_t *meta) {
  const sx_table *tb = &x->env->schema->tables[tid];
  unsigned char *p, *m;
  size_t need;
  unsigned j;
  int rc;
  *content = *meta = 0;
  if (!(r->cl & 1)) {
#ifndef SYNC_OMIT_REPAIR
    /* A tombstone: key, causal length and its stamp. */
    unsigned char b[3 * SX_VARINT_MAX + SYNC_MAX_KEY + SX_SITE_LEN];
    if ((rc = sx_sites_load(x))) return rc;
    if (r->stamps[r->cl_stamp].site >= x->nsites) return SYNC_ECORRUPT;
    p = sx_wv(b, klen);
    memcpy(p, key, klen);
    p += klen;
    p = sx_wv(p, r->cl);
    p = sx_wv(p, r->stamps[r->cl_stamp].hlc);
    memcpy(p, x->sites[r->stamps[r->cl_stamp].site], SX_SITE_LEN);
    p += SX_SITE_LEN;
    *meta = sx_hash64(b, (size_t)(p - b), SX_FP_SEED_TOMB);
#endif
    return 0;
  }
  if ((rc = sx_sites_load(x))) return rc;
  /* Our own buffer: the caller may hold the row being stored in x->enc.
   * A column's value goes in twice, once per encoding. */
  need = 2 * (SX_VARINT_MAX + klen) + 2 * SX_VARINT_MAX + SX_SITE_LEN;
  for (j = 0; j < r->ncols; j++)
    if (r->cols[j].st != SX_NOSTAMP)
      need += 3 * SX_VARINT_MAX + SX_SITE_LEN + 2 +
              2 * sx_payload_size(&r->cols[j].v);
  if ((rc = sx_buf_reserve(&x->fpbuf, need))) return rc;
  p = x->fpbuf.p;
  p = sx_wv(p, klen);
  memcpy(p, key, klen);
  p += klen;
  for (j = 0; j < tb->ncols && j < r->ncols; j++) {
    const sx_rcol *c = &r->cols[j];
    if (c->st == SX_NOSTAMP || c->v.type == SYNC_NULL) continue;
    if (tb->cols[j].flags & SYNC_COL_LOCAL) continue;
    p = sx_wv(p, j);
    *p++ = (unsigned char)c->v.type;
    p += sx_payload_put(p, &c->v);
  }
  *content = sx_hash64(x->fpbuf.p, (size_t)(p - x->fpbuf.p), SX_FP_SEED_CONTENT);
#ifndef SYNC_OMIT_REPAIR /* only range repair reads the meta hash */
  m = p;
  p = sx_wv(p, klen);
  memcpy(p, key, klen);
  p += klen;
  p = sx_wv(p, r->cl);
  p = sx_wv(p, r->stamps[r->cl_stamp].hlc);
  if (r->stamps[r->cl_stamp].site >= x->nsites) return SYNC_ECORRUPT;
  memcpy(p, x->sites[r->stamps[r->cl_stamp].site], SX_SITE_LEN);
  p += SX_SITE_LEN;
  for (j = 0; j < r->ncols; j++) {
    const sx_rcol *c = &r->cols[j];
    const sx_stamp *s;
    if (c->st == SX_NOSTAMP) continue;
    if (j < tb->ncols && (tb->cols[j].flags & SYNC_COL_LOCAL)) continue;
    s = &r->stamps[c->st];
    if (s->site >= x->nsites) return SYNC_ECORRUPT;
    p = sx_wv(p, j);
    p = sx_wv(p, s->hlc);
    memcpy(p, x->sites[s->site], SX_SITE_LEN);
    p += SX_SITE_LEN;
    *p++ = (unsigned char)c->v.type;
    p += sx_payload_put(p, &c->v);
  }
  *meta = sx_hash64(m, (size_t)(p - m), SX_FP_SEED_META);
#else
  m = p;
  (void)m;
#endif
  return 1;
}

SYNC_PRIVATE int sx_table_sum(sync_txn *x, unsigned tid, sx_tsum *out) {
  int rc;
  if ((rc = sx_tsum_get(x->env, x->t, tid, out))) return rc;
  if (x->delta) {
    out->live += (uint64_t)x->delta[tid];
    out->content += x->dsum[tid][0];
    out->meta += x->dsum[tid][1];
    out->rows += x->dsum[tid][2];
  }
  return 0;
}

SYNC_PRIVATE int sx_table_scan(sync_txn *x, unsigned tid, sx_tsum *out) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k, v;
  int rc, op = SX_FIRST;
  memset(out, 0, sizeof *out);
  if ((rc = sx_scratch(x))) return rc;
  if ((rc = sx_cur_open(env->st, x->t, env->tdbi[tid], &c))) return rc;
  for (;;) {
    uint64_t hc, hm;
    k.p = NULL;
    k.n = 0;
    rc = sx_cur_get(env->st, c, op, &k, &v);
    op = SX_NEXT;
    if (rc == SYNC_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) break;
    if ((rc = sx_row_decode(v.p, v.n, k.p, k.n, &x->old))) break;
    if ((rc = sx_row_fp(x, tid, k.p, k.n, &x->old, &hc, &hm)) < 0) break;
    rc = 0;
    out->meta += hm;
    out->rows++;
    if (!(x->old.cl & 1)) continue;
    out->content += hc;
    out->live++;
  }
  sx_cur_close(c);
  return rc;
}

static int sx_stamp_out(sync_txn *x, const sx_row *r, unsigned idx,
                        sync_stamp *out) {
  if (idx == SX_NOSTAMP) {
    memset(out, 0, sizeof *out);
    return 0;
  }
  out->hlc = r->stamps[idx].hlc;
  return sx_site_id(x, r->stamps[idx].site, out->site);
}

SYNC_API int sync_changes_open(sync_txn *x, uint64_t since,
                               sync_changes **out) {
  sync_changes *it;
  int rc;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (!x) return SYNC_EINVAL;
  it = (sync_changes *)sx_malloc(&x->env->al, sizeof *it);
  if (!it) return SYNC_ENOMEM;
  memset(it, 0, sizeof *it);
  it->al = x->env->al;
  if ((rc = sx_row_init(&it->al, &it->row, SYNC_MAX_COLUMNS))) {
    sx_free(&it->al, it);
    return rc;
  }
  if ((rc = sx_cur_open(x->env->st, x->t, x->env->log, &it->c))) {
    sx_row_free(&it->al, &it->row);
    sx_free(&it->al, it);
    return rc;
  }
  it->x = x;
  it->since = since;
  it->next = x->changes;
  x->changes = it;
  *out = it;
  return 0;
}

SYNC_API int sync_changes_next(sync_changes *it, sync_change *out) {
  sync_txn *x;
  sx_slice k, v, key;
  unsigned char start[SX_LOGKEY];
  unsigned tid;
  int rc, op;
  if (!it || it->dead || !out) return SYNC_EINVAL;
  x = it->x;
  if (!it->started) {
    if (it->since == UINT64_MAX) return SYNC_NOTFOUND;
    sx_logkey(start, it->since + 1, 0);
    k.p = start;
    k.n = SX_LOGKEY;
    op = SX_SET_RANGE;
  } else if (it->gen != x->gen) {
    k.p = it->last;
    k.n = SX_LOGKEY;
    op = SX_SET_RANGE;
  } else {
    k.p = NULL;
    k.n = 0;
    op = SX_NEXT;
  }
  for (;;) {
    if ((rc = sx_cur_get(x->env->st, it->c, op, &k, &v))) return rc;
    op = SX_NEXT;
    if (k.n != SX_LOGKEY) return SYNC_ECORRUPT;
    if (it->started && memcmp(k.p, it->last, SX_LOGKEY) <= 0) continue;
    it->started = 1;
    memcpy(it->last, k.p, SX_LOGKEY);
    rc = sx_log_current(x, &it->row, k.p, k.n, v.p, v.n, &tid, &key);
    if (rc == SYNC_NOTFOUND) continue; /* left behind by a later change */
    if (rc) return rc;
    break;
  }
  it->gen = x->gen;
  /* sx_log_current set tid: it returned 0. */
  it->tid = tid; /* NOLINT(clang-analyzer-core.uninitialized.Assign) */
  out->table = tid;
  out->key.data = key.p;
  out->key.len = key.n;
  out->version = it->row.version;
  out->causal_length = it->row.cl;
  out->ncolumns = (it->row.cl & 1) ? it->row.ncols : 0;
  return sx_stamp_out(x, &it->row, it->row.cl_stamp, &out->row_stamp);
}

SYNC_API int sync_changes_column(sync_changes *it, unsigned col,
                                 sync_value *val, sync_stamp *stamp,
                                 sync_stamp *base) {
  const sx_row *r;
  int rc;
  if (!it || it->dead || !it->started) return SYNC_EINVAL;
  r = &it->row;
  if (!(r->cl & 1) || col >= r->ncols || r->cols[col].st == SX_NOSTAMP)
    return SYNC_NOTFOUND;
  if (val) *val = r->cols[col].v;
  if (stamp && (rc = sx_stamp_out(it->x, r, r->cols[col].st, stamp)))
    return rc;
  if (base && (rc = sx_stamp_out(it->x, r, r->cols[col].base, base)))
    return rc;
  return 0;
}

SYNC_API void sync_changes_close(sync_changes *it) {
  sync_changes **pp;
  sx_alloc al;
  if (!it) return;
  if (it->x) {
    for (pp = &it->x->changes; *pp; pp = &(*pp)->next)
      if (*pp == it) {
        *pp = it->next;
        break;
      }
    sx_cur_close(it->c);
  }
  al = it->al;
  sx_row_free(&al, &it->row);
  sx_free(&al, it);
}
