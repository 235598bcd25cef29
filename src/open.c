/*
 * open.c - opening a file: creating or loading it, format upgrades, epochs
 * and history marks, peers' schemas and schema changes.
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
 *                      with the HLC its claims are void above (format 5
 *                      to 10; format 11 keeps them in sx.renew)
 *   sx.sites  site index (u32 BE) -> 16-byte site id; 0 is this replica
 *   sx.rejects  the rejection log (reject.c; format 4)
 *   sx.logrec the change log in records of many entries (log.c; format
 *             9, before it sx.log with one item per entry): key the
 *             position (u64 BE version + u32 BE seq) of the record's
 *             first entry.  Appended in order; a row's older entry goes
 *             stale when it changes again and compaction removes it, so
 *             the log stays about as large as the data.
 *   sx.t<id>  one per table: primary key -> row (row.h)
 *   sx.hist   row history (history.c; format 8), made by the first table
 *             that keeps it
 *   sx.renew  renewal records by site id, and by the clock they were
 *             learned at (renew.c, "Renewal records"; format 11)
 *   sx.folds  counter fold records by retired site and heir (fold.c;
 *             format 11, before it meta "folds")
 */
#include "open.h"
#include "renew.h"
#include "fold.h"

#include <stdio.h>

static int sx_tsum_rebuild(sync_env *env, sx_stxn *t, unsigned tid);

static void sx_tname(char *buf, unsigned id) {
  snprintf(buf, 16, "sx.t%u", id);
}

/* The format record says at least 8: the file holds, or may hold,
 * counter cells.  A file this code writes has its log in records, so
 * the record says 9. */
static int sx_put_format_counter(sync_env *env, sx_stxn *t) {
  unsigned char fmt[12];
  memcpy(fmt, SX_MAGIC, 8); /* NOLINT(bugprone-not-null-terminated-result) */
  sx_put_le32(fmt + 8, SX_FORMAT_VERSION);
  return sx_put(env->st, t, env->meta, "format", 6, fmt, 12, 0);
}

SYNC_PRIVATE int sx_format_counters(sync_txn *x) {
  sx_slice v;
  int rc;
  if (x->ctr_format) return 0;
  rc = sx_get(x->env->st, x->t, x->env->meta, "format", 6, &v);
  if (rc) return rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc;
  if (v.n != 12) return SYNC_ECORRUPT;
  if (sx_get_le32(v.p + 8) < SX_FORMAT_COUNTER &&
      (rc = sx_put_format_counter(x->env, x->t))) {
    x->failed = 1;
    return rc;
  }
  x->ctr_format = 1;
  return 0;
}

static int sx_put_schema(sync_env *env, sx_stxn *t, const sx_schema *s) {
  sx_buf b;
  int rc;
  sx_buf_init(&b, &env->al);
  unsigned i;
  rc = sx_schema_encode(s, &b);
  if (!rc) rc = sx_put(env->st, t, env->meta, "schema", 6, b.p, b.len, 0);
  sx_buf_free(&b);
  for (i = 0; !rc && i < s->ntables; i++)
    if (sx_table_counters(&s->tables[i]))
      return sx_put_format_counter(env, t);
  return rc;
}

/* A new file: make the site id, the stores and the schema. */
static int sx_env_init(sync_env *env, sx_stxn *t) {
  unsigned char state[24], fmt[12], sk[4] = {0, 0, 0, 0};
  uint8_t site[SX_SITE_LEN];
  unsigned i;
  int rc;
  if (env->random(env->random_ctx, site, SX_SITE_LEN) != 0)
    return sx_fail(env, SYNC_EIO, "the random source failed to give a site id");
  if (!env->decl) {
    rc = sx_schema_from_defs(&env->al, NULL, 0, &env->decl, env->errmsg,
                             sizeof env->errmsg);
    if (rc) return rc;
  }
  if ((rc = sx_dbi_open(env->st, t, "sx.meta", 1, &env->meta)) ||
      (rc = sx_dbi_open(env->st, t, "sx.sites", 1, &env->sites)) ||
      (rc = sx_dbi_open(env->st, t, "sx.logrec", 1, &env->log)) ||
      (rc = sx_dbi_open(env->st, t, "sx.vv", 1, &env->vv)) ||
      (rc = sx_dbi_open(env->st, t, "sx.peers", 1, &env->peers)) ||
      (rc = sx_dbi_open(env->st, t, "sx.conflicts", 1, &env->conflicts)) ||
      (rc = sx_dbi_open(env->st, t, "sx.epochs", 1, &env->epochs)) ||
      (rc = sx_dbi_open(env->st, t, "sx.rejects", 1, &env->rejects)) ||
      (rc = sx_dbi_open(env->st, t, "sx.renew", 1, &env->renew)) ||
      (rc = sx_dbi_open(env->st, t, "sx.folds", 1, &env->folds)))
    return rc;
  env->epochs_ok = 1;
  env->rejects_ok = 1;
  sx_free(&env->al, env->rh); /* a new file keeps no history */
  env->rh = NULL;
  env->hist_ok = 0;
  /* Eight bytes of a binary record, its NUL included: not a C string. */
  memcpy(fmt, SX_MAGIC, 8); /* NOLINT(bugprone-not-null-terminated-result) */
  sx_put_le32(fmt + 8, SX_FORMAT_VERSION);
  sx_state_put(state, 0, 0, env->decl->version);
  if ((rc = sx_put(env->st, t, env->meta, "format", 6, fmt, 12, 0)) ||
      (rc = sx_put(env->st, t, env->meta, "site", 4, site, SX_SITE_LEN, 0)) ||
      (rc = sx_put(env->st, t, env->meta, "state", 5, state, 24, 0)) ||
      (rc = sx_put(env->st, t, env->sites, sk, 4, site, SX_SITE_LEN, 0)) ||
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

SYNC_PRIVATE void sx_env_store_opts(const sync_env *env, sx_store_opts *o) {
  memset(o, 0, sizeof *o);
  o->durability = env->durability;
  o->mapsize = env->mapsize;
  o->mapmax = env->mapmax;
  o->maxdbs = SX_EXTRA_DBS + SYNC_MAX_TABLES;
}

SYNC_PRIVATE int sx_env_dbis(sync_env *env, sx_stxn *t, const char *path,
                             int upgrade) {
  const sx_schema *s = env->schema;
  unsigned i;
  int rc;
  if ((rc = sx_dbi_open(env->st, t, "sx.sites", 0, &env->sites)) ||
      /* Format 8 and before kept the log elsewhere (sx_log_upgrade). */
      (rc = sx_dbi_open(env->st, t, "sx.logrec", upgrade, &env->log)) ||
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
  /* Files before format 11 gain it now (a read-only open of one fails
   * before this: sx_env_load). */
  if ((rc = sx_dbi_open(env->st, t, "sx.renew", !env->rdonly, &env->renew)) ||
      (rc = sx_dbi_open(env->st, t, "sx.folds", !env->rdonly, &env->folds)))
    return sx_fail(env, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                   "%s: internal store missing", path);
  for (i = 0; i < s->ntables; i++) {
    char name[16];
    sx_tname(name, i);
    if ((rc = sx_dbi_open(env->st, t, name, 0, &env->tdbi[i])))
      return sx_fail(env, rc == SYNC_NOTFOUND ? SYNC_ECORRUPT : rc,
                     "%s: store of table '%s' missing", path,
                     s->tables[i].name);
  }
  /* Row history: absent until a table keeps it (format 8). */
  if ((rc = sx_rh_load(env, t)))
    return sx_fail(env, rc, "%s: row history settings unreadable", path);
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
  /* Every format before 9 keeps its change log one item per entry,
   * which only the upgrade of a writable open reads (sx_log_upgrade): a
   * read-only reader of the old layout would misread the log once a
   * writable open upgraded the file under it. */
  if (format >= 1 && format < SX_FORMAT_RENEW && env->rdonly)
    return sx_fail(env, SYNC_EVERSION,
                   "%s: storage format %u needs an upgrade to format %u "
                   "(%s); open it writable once",
                   path, (unsigned)format,
                   format < SX_FORMAT_LOGREC ? SX_FORMAT_LOGREC
                                             : SX_FORMAT_RENEW,
                   format == 3  ? "the scope in peer records and the "
                                  "rejection log"
                   : format < 3 ? "the stored fingerprint sums"
                   : format < SX_FORMAT_LOGREC
                       ? "the change log in records"
                       : "the renewal and fold records in stores of their "
                         "own");
  if (format < 1 || format > SX_FORMAT_VERSION)
    return sx_fail(env, SYNC_EVERSION,
                   "%s: storage format %u, this library reads %u", path,
                   (unsigned)format, SX_FORMAT_VERSION);
  if ((rc = sx_get(env->st, t, env->meta, "site", 4, &v)) || v.n != SX_SITE_LEN)
    return sx_fail(env, rc && rc != SYNC_NOTFOUND ? rc : SYNC_ECORRUPT,
                   "%s: site id missing", path);
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
      rc = sx_fail(env, SYNC_ESCHEMA,
                   "%s: %s; the declared schema adds to the file's: open it "
                   "writable once to upgrade it", path, why);
    }
    grow = !rc;
    if (rc) {
      sx_schema_free(&env->al, s);
      return rc;
    }
  }
  env->schema = s;
  if ((rc = sx_env_dbis(env, t, path,
                        format < SX_FORMAT_VERSION && !env->rdonly)))
    return rc;
  if (format < SX_FORMAT_VERSION && !env->rdonly) {
    /* Format 1 kept only the live count per table, format 2 the meta sum
     * of live rows only: one scan per table gives the sums, committed
     * with the new format record by the open's transaction (all or
     * nothing).  Format 3 lacks only the scope of peer records, which
     * reads as unknown, and the rejection log (made above); format 4
     * lacks the renewal records, which read as none, format 5 the
     * lineage of peer records' marks, which reads as none, format 6 the
     * first own stamp of each epoch, which reads as unknown, format 7
     * the row history store, which reads as none: the format record
     * alone changes (older code would refuse the longer records, would
     * take vectors the renewal records cap, and would write rows of
     * tables with history without recording the versions they replace,
     * which as-of reads would then answer wrongly).  Format 8 and
     * before keep the change log one item per entry: it moves into
     * records.  Format 9 lacks only the fold records, which read as
     * none (code before them would not drop what an heir's counter
     * contributions hold).  Format 10 and before keep the renewal
     * records in meta "renewed" and the fold records in meta "folds":
     * they move into sx.renew and sx.folds. */
    unsigned char fmt[12];
    if ((rc = sx_log_upgrade(env, t)))
      return sx_fail(env, rc,
                     "%s: upgrade to format %u failed in the "
                     "change log: %s",
                     path, SX_FORMAT_VERSION, sync_strerror(rc));
    if ((rc = sx_renew_upgrade(env, t)) || (rc = sx_fold_upgrade(env, t)))
      return sx_fail(env, rc,
                     "%s: upgrade to format %u failed in the "
                     "renewal or fold records: %s",
                     path, SX_FORMAT_VERSION, sync_strerror(rc));
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
 * it; value u64 LE id, u64 LE the state HLC when it began, and (format 7)
 * u64 LE the HLC of the first transaction that made a stamp of this
 * replica's own in it, u64 LE the first clock above the one it began at
 * that a commit in it left in the state (0: none yet).  meta "ident": u64 LE device, u64 LE
 * inode of the file when it was last opened for writing.
 * ------------------------------------------------------------------- */
static void sx_epoch_key(unsigned char *k, uint64_t start) {
  sx_put_be64(k, UINT64_MAX - start);
}

/* One record of sx.epochs. */
typedef struct sx_epoch {
  uint64_t start, id, hlc; /* start version, id, the clock when it began */
  uint64_t first;          /* the first own stamp's HLC (0: none yet) */
  uint64_t moved;          /* the first clock a commit left (0: none yet) */
  int known;               /* first and moved are recorded (format 7) */
} sx_epoch;

static int sx_epoch_read(const sx_slice *k, const sx_slice *v, sx_epoch *e) {
  if (k->n != 8 || (v->n != 16 && v->n != 32)) return SYNC_ECORRUPT;
  e->start = UINT64_MAX - sx_get_be64(k->p);
  e->id = sx_get_le64(v->p);
  e->hlc = sx_get_le64(v->p + 8);
  e->known = v->n == 32;
  e->first = e->known ? sx_get_le64(v->p + 16) : 0;
  e->moved = e->known ? sx_get_le64(v->p + 24) : 0;
  return 0;
}

/* The next epoch of cursor c, the latest first (keys run from the latest
 * epoch to the first): *op is SX_FIRST, or SX_SET_RANGE with k set, on
 * the first call.  0 with e set, SYNC_NOTFOUND past the first epoch, or
 * an error. */
static int sx_epoch_step(sync_env *env, sx_scur *c, int *op, sx_slice *k,
                         sx_epoch *e) {
  sx_slice val;
  int rc;
  if (*op != SX_SET_RANGE) {
    k->p = NULL;
    k->n = 0;
  }
  rc = sx_cur_get(env->st, c, *op, k, &val);
  *op = SX_NEXT;
  return rc ? rc : sx_epoch_read(k, &val, e);
}

/* The epoch holding version v: 0 with e set, or SYNC_NOTFOUND. */
static int sx_epoch_at(sync_env *env, sx_stxn *t, uint64_t v, sx_epoch *e) {
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
  if (rc == 0) rc = sx_epoch_read(&k, &val, e);
  sx_cur_close(c);
  return rc;
}

SYNC_PRIVATE int sx_mark_of(sync_txn *x, uint64_t v, sx_mark *out) {
  sx_epoch e;
  int rc;
  memset(out, 0, sizeof *out);
  if (!v) return 0;
  rc = sx_epoch_at(x->env, x->t, v, &e);
  if (rc == 0) {
    out->id = e.id;
    out->start = e.start;
  }
  return rc == SYNC_NOTFOUND ? 0 : rc;
}

SYNC_PRIVATE int sx_epoch_next_hlc(sync_txn *x, const sx_mark *m,
                                   uint64_t *hlc) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k;
  sx_epoch e;
  uint64_t next = 0;
  int rc, op = SX_FIRST, have = 0;
  if (!env->epochs_ok || !m->id) return SYNC_NOTFOUND;
  if ((rc = sx_cur_open(env->st, x->t, env->epochs, &c))) return rc;
  while (!(rc = sx_epoch_step(env, c, &op, &k, &e))) {
    if (e.start < m->start) {
      rc = SYNC_NOTFOUND;
      break;
    }
    if (e.start == m->start) {
      if (e.id != m->id || !have) rc = SYNC_NOTFOUND;
      break;
    }
    next = e.hlc;
    have = 1;
  }
  sx_cur_close(c);
  if (rc == 0) *hlc = next;
  return rc;
}

SYNC_PRIVATE int sx_lineage_of(sync_txn *x, const sx_mark *m,
                               sx_lineage *out) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k;
  sx_epoch e;
  unsigned char key[8];
  int rc = 0, op = SX_SET_RANGE;
  memset(out, 0, sizeof *out);
  if (!env->epochs_ok || !m->id || m->start < 2) return 0;
  if ((rc = sx_cur_open(env->st, x->t, env->epochs, &c))) return rc;
  /* The epoch holding the version before the mark's start, then older
   * ones. */
  sx_epoch_key(key, m->start - 1);
  k.p = key;
  k.n = 8;
  while (out->n < SX_LINEAGE_MAX &&
         !(rc = sx_epoch_step(env, c, &op, &k, &e))) {
    out->e[out->n].start = e.start;
    out->e[out->n].id = e.id;
    out->n++;
  }
  if (rc == SYNC_NOTFOUND) rc = 0;
  sx_cur_close(c);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

/* ---------------------------------------------------------------------
 * Writes of this replica's own site id that its history never made.
 *
 * Each transaction that makes stamps of its own takes one HLC above
 * every stamp the file made or saw before (sx_stamp_txn), so the stamps
 * of the file's own history are exactly the HLCs of those transactions.
 * An epoch begins with the clock at h (what the file held at that open)
 * and its first such transaction takes f > h: no stamp of this history
 * lies strictly between h and f.  A file restored from a backup begins
 * an epoch at the backup's clock, and the writes it lost were made after
 * the backup and before the restore: their stamps lie in that gap (as
 * long as the wall clock did not step back past them), or above the
 * clock when it did.  A stamp of ours found there is a write of our id
 * that this file never made: the file was restored or copied.
 * ------------------------------------------------------------------- */
SYNC_PRIVATE int sx_epoch_note(sync_txn *x, uint64_t hlc) {
  sync_env *env = x->env;
  unsigned char key[8], val[32];
  sx_scur *c;
  sx_slice k;
  sx_epoch e;
  int rc, op = SX_FIRST, put = 0;
  if (!env->epochs_ok) return 0;
  if ((rc = sx_cur_open(env->st, x->t, env->epochs, &c))) return rc;
  rc = sx_epoch_step(env, c, &op, &k, &e); /* the latest: this commit's */
  sx_cur_close(c);
  if (rc == SYNC_NOTFOUND) return 0;
  if (rc || !e.known) return rc;
  if (!e.first && x->stamped && x->wrote) {
    e.first = x->hlc;
    put = 1;
  }
  if (!e.moved && hlc > e.hlc) {
    e.moved = hlc;
    put = 1;
  }
  if (!put) return 0;
  sx_epoch_key(key, e.start);
  sx_put_le64(val, e.id);
  sx_put_le64(val + 8, e.hlc);
  sx_put_le64(val + 16, e.first);
  sx_put_le64(val + 24, e.moved);
  return sx_put(env->st, x->t, env->epochs, key, 8, val, 32, 0);
}

SYNC_PRIVATE int sx_hist_foreign(sync_txn *x, uint64_t h, uint64_t clock,
                                 int claim, uint64_t *held) {
  sync_env *env = x->env;
  sx_scur *c;
  sx_slice k;
  sx_epoch e;
  int rc, op = SX_FIRST, newest = 1, found = 0, above = h > clock;
  *held = 0;
  if (!claim && x->stamped && h == x->hlc) return 0; /* made by this txn */
  if (!env->epochs_ok) return above;
  if ((rc = sx_cur_open(env->st, x->t, env->epochs, &c))) return rc;
  /* Keys run from the latest epoch to the first.  A stamp h of this
   * history was made in the latest epoch that began below h, at or
   * after its first own stamp; a claim h was this history's clock in it
   * (at or above the first it moved to), or one below a stamp of its
   * own.  Where that epoch (or, above the clock, the latest) made none,
   * nor did the ones before it back to the last that did: the history
   * left the fleet's where the oldest of them began. */
  for (;;) {
    uint64_t first;
    if ((rc = sx_epoch_step(env, c, &op, &k, &e))) {
      if (rc == SYNC_NOTFOUND) rc = found || above;
      break;
    }
    if (claim)
      first = e.moved ? e.moved - 1 : 0;
    else
      first = e.first ? e.first : newest && x->stamped ? x->hlc : 0;
    newest = 0;
    if (!found && !above && e.hlc >= h) continue; /* began above h */
    if (e.known && !first) { /* made none */
      *held = e.hlc;
      found = 1;
      continue;
    }
    if (!found) {
      found = above || (e.known && h < first);
      if (found) *held = e.hlc;
    }
    rc = found;
    break;
  }
  sx_cur_close(c);
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

/* Record the file (device dev, inode ino) as this replica's own: meta
 * "ident". */
static int sx_ident_put(sync_env *env, sx_stxn *t, uint64_t dev,
                        uint64_t ino) {
  unsigned char idb[16];
  sx_put_le64(idb, dev);
  sx_put_le64(idb + 8, ino);
  return sx_put(env->st, t, env->meta, "ident", 5, idb, 16, 0);
}

/* Whether the file (device dev, inode ino) must still take a new site id
 * (*pending): meta "ident" names another file (a copy), or a renewal a
 * crash cut short left its "relabel" record. */
static int sx_copy_pending(sync_env *env, sx_stxn *t, uint64_t dev,
                           uint64_t ino, int *pending) {
  sx_slice v;
  int rc = sx_get(env->st, t, env->meta, "ident", 5, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  *pending = rc == 0 && v.n == 16 &&
             (sx_get_le64(v.p) != dev || sx_get_le64(v.p + 8) != ino);
  if (*pending) return 0;
  rc = sx_get(env->st, t, env->meta, "relabel", 7, &v);
  if (rc && rc != SYNC_NOTFOUND) return rc;
  *pending = rc == 0;
  return 0;
}

/* A writable open: a new epoch from the next version on.  Returns 1 when
 * the file is not the one last opened here (a copy, or a backup put back
 * as a new file): it must take a new site id before it writes. */
static int sx_open_history(sync_env *env, sx_stxn *t, const char *path) {
  unsigned char key[8], val[32];
  uint64_t id = 0, dev = 0, ino = 0;
  sx_slice v;
  int rc, moved = 0;
  if (!env->epochs_ok) return 0;
  rc = sx_get(env->st, t, env->meta, "state", 5, &v);
  if (rc || v.n != 24) return rc ? rc : SYNC_ECORRUPT;
  sx_epoch_key(key, sx_get_le64(v.p + 8) + 1);
  sx_put_le64(val + 8, sx_get_le64(v.p));
  sx_put_le64(val + 16, 0); /* no stamp of its own made yet */
  sx_put_le64(val + 24, 0); /* nor a clock moved */
  while (!id) {
    /* Read as little-endian bytes: the same random source gives the same
     * epoch id, and so the same frames, on every architecture. */
    unsigned char rb[8];
    if (env->random(env->random_ctx, rb, sizeof rb) != 0)
      return sx_fail(env, SYNC_EIO, "%s: the random source failed", path);
    id = sx_get_le64(rb);
  }
  sx_put_le64(val, id);
  if ((rc = sx_put(env->st, t, env->epochs, key, 8, val, 32, 0))) return rc;
  rc = sx_store_ident(env->st, &dev, &ino);
  if (rc == SYNC_ENOTSUP) return 0;
  if (rc || (rc = sx_copy_pending(env, t, dev, ino, &moved))) return rc;
  /* A copy records the file as its own in the transaction that takes its
   * new site id (sx_ident_put): if that fails, or the power goes first,
   * the next open finds it a copy again. */
  return moved ? 1 : sx_ident_put(env, t, dev, ino);
}

/* Rows moved to the old id per transaction of a copy's renewal: about
 * 200 leaf pages of short rows, the most the file grows by. */
#define SX_RENEW_BATCH 4096

/* A copy's renewal (site.c, "A copy's renewal in batches"), a step per
 * transaction; the last also records the file as its own.  Another
 * process that opens the copy meanwhile goes on with the same renewal,
 * a step at a time between ours, and may finish it: each step first
 * looks whether the renewal is still to do, so that the file takes one
 * new id, not one per process. */
static int sx_copy_renew(sync_env *env) {
  uint64_t dev = 0, ino = 0;
  int rc, done = 0;
  if ((rc = sx_store_ident(env->st, &dev, &ino))) return rc;
  while (!done) {
    sync_txn *x;
    int pending = 0;
    if ((rc = sync_txn_begin(env, 0, &x))) return rc;
    if ((rc = sx_copy_pending(env, x->t, dev, ino, &pending)) || !pending) {
      sync_txn_abort(x);
      return rc;
    }
    rc = sx_copy_renew_step(x, x->hlc_last, x->hlc_last, SX_RENEW_BATCH,
                            &done);
    if (!rc && done && (rc = sx_ident_put(env, x->t, dev, ino)))
      x->failed = 1;
    if (rc) {
      sync_txn_abort(x);
      return rc;
    }
    if ((rc = sync_txn_commit(x))) return rc;
  }
  return 0;
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
  sx_env_store_opts(env, &o);
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
     * they keep the old id.  It claims them up to its clock: it holds
     * every write its history made under the old id (a copy of a backup,
     * too: the writes made after the backup are above the backup's
     * clock).  The file copied may itself have been a restore nobody
     * found out yet, whose clock claimed writes it lost; those lie where
     * its epochs show no write of the old id, which the collected check
     * looks up (site.c, "Former ids"), and its renewal record, once it is
     * found, reaches this copy like any other replica. */
    if ((rc = sx_copy_renew(env))) goto fail;
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
  sx_free(&al, env->rh);
  sx_schema_free(&al, env->schema);
  sx_schema_free(&al, env->decl);
  sx_free(&al, env);
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

/* Rebuild table tid's stored record by a scan, inside t (the open's or a
 * schema change's transaction), through a transaction object borrowed
 * around t for the row decoding and the site table. */
static int sx_tsum_rebuild(sync_env *env, sx_stxn *t, unsigned tid) {
  sync_txn *x = sx_txn_new(env);
  sx_tsum sum;
  int rc;
  if (!x) return SYNC_ENOMEM;
  x->t = t;
  rc = sx_table_scan(x, tid, &sum);
  if (!rc) rc = sx_tsum_put(env, t, tid, &sum);
  sx_txn_close_cursors(x);
  sx_txn_free(x); /* t stays: its owner ends it */
  return rc;
}
