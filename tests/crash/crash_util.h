/*
 * crash_util.h - what the crash and power-loss harnesses share: the
 * schema, a deterministic workload whose every state can be recomputed
 * (the model), and a verifier that opens a database and checks it
 * against the model and against itself.
 *
 * The workload is built so that a half-applied transaction is visible.
 * Transaction s of a writer inserts group s (2..8 rows that carry the
 * group number, the group's size and a generation), and may rewrite every
 * row of an older live group (new generation), delete a whole group or
 * bring a deleted one back; it also sets the meta row "w" to s.  The meta
 * row names the last committed transaction C, and the table must then be
 * exactly the model after C transactions: every group whole and of one
 * generation, every deleted group's rows tombstones.
 *
 * The verifier's checks do not stop at the first difference: they return
 * a sentence saying what differs, which the harness prints with its seed.
 */
#ifndef SYNC_CRASH_UTIL_H
#define SYNC_CRASH_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync.h"

/* ---------------------------------------------------------------------
 * Schema: table 0 "g" (local writer), table 1 "r" (written on the second
 * replica, arrives by replication), table 2 "m" (meta row "w").
 * ------------------------------------------------------------------- */
#define CU_T_G 0u
#define CU_T_R 1u
#define CU_T_M 2u
#define CU_NCOL 4u
static const sync_column_def cu_cols[CU_NCOL] = {
    {"grp", SYNC_INTEGER, SYNC_COL_NOTNULL},
    {"gen", SYNC_INTEGER, SYNC_COL_NOTNULL},
    {"n", SYNC_INTEGER, SYNC_COL_NOTNULL},
    {"pay", SYNC_BLOB, 0},
};
static const sync_column_def cu_mcols[1] = {{"val", SYNC_INTEGER, 0}};
static const sync_table_def cu_schema[3] = {
    {"g", SYNC_TEXT, cu_cols, CU_NCOL},
    {"r", SYNC_TEXT, cu_cols, CU_NCOL},
    {"m", SYNC_TEXT, cu_mcols, 1},
};

/* ---------------------------------------------------------------------
 * PRNG (splitmix64) and a keyed hash of small integers.
 * ------------------------------------------------------------------- */
static inline uint64_t cu_mix(uint64_t z) {
  z += UINT64_C(0x9E3779B97F4A7C15);
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}
typedef struct cu_rng {
  uint64_t s;
} cu_rng;
static inline uint64_t cu_next(cu_rng *r) {
  r->s += UINT64_C(0x9E3779B97F4A7C15);
  return cu_mix(r->s);
}
static inline uint64_t cu_below(cu_rng *r, uint64_t n) {
  return n ? cu_next(r) % n : 0;
}

/* ---------------------------------------------------------------------
 * The model: per group, its state, generation and size.
 * ------------------------------------------------------------------- */
#define CU_NONE 0
#define CU_LIVE 1
#define CU_DEAD 2
#define CU_MAXG 20000u
#define CU_MAXN 8u
#define CU_MAXPAY 300u

typedef struct cu_group {
  uint8_t state, n;
  uint32_t gen;
} cu_group;

typedef struct cu_model {
  uint64_t seed;
  uint32_t last;     /* transactions applied to the model */
  uint32_t live_rows, dead_rows;
  cu_group g[CU_MAXG + 1]; /* index = group = transaction that made it */
} cu_model;

static inline void cu_key(char *out, uint32_t grp, unsigned idx) {
  snprintf(out, 24, "g%06u.%u", (unsigned)grp, idx);
}

/* The payload of row idx of group grp at generation gen: a length in
 * 0..CU_MAXPAY and bytes, both from the hash of the three. */
static inline size_t cu_payload(unsigned char *out, uint64_t seed,
                                uint32_t grp, unsigned idx, uint32_t gen) {
  cu_rng r;
  size_t n, i;
  r.s = cu_mix(seed ^ ((uint64_t)grp << 32) ^ ((uint64_t)idx << 24) ^ gen);
  n = (size_t)cu_below(&r, CU_MAXPAY + 1);
  for (i = 0; i < n; i++) out[i] = (unsigned char)cu_next(&r);
  return n;
}

/* Write (or, with txn NULL, only model) the rows of group grp. */
static inline int cu_put_group(sync_txn *txn, unsigned table, uint64_t seed,
                               uint32_t grp, unsigned n, uint32_t gen) {
  unsigned i;
  for (i = 0; i < n; i++) {
    char key[24];
    unsigned char pay[CU_MAXPAY];
    sync_value v[CU_NCOL];
    size_t pn = cu_payload(pay, seed, grp, i, gen);
    int rc;
    cu_key(key, grp, i);
    v[0] = sync_int(grp);
    v[1] = sync_int(gen);
    v[2] = sync_int(n);
    v[3] = sync_blob(pay, pn);
    if ((rc = sync_put(txn, table, key, strlen(key), v, CU_NCOL))) return rc;
  }
  return 0;
}

static inline int cu_del_group(sync_txn *txn, unsigned table, uint32_t grp,
                               unsigned n) {
  unsigned i;
  for (i = 0; i < n; i++) {
    char key[24];
    int rc;
    cu_key(key, grp, i);
    if ((rc = sync_delete(txn, table, key, strlen(key)))) return rc;
  }
  return 0;
}

/* A live (want = CU_LIVE) or deleted group below s chosen by r, or 0. */
static inline uint32_t cu_pick(const cu_model *m, cu_rng *r, uint32_t s,
                               int want) {
  uint32_t t, k;
  if (s <= 1) return 0;
  t = 1 + (uint32_t)cu_below(r, s - 1);
  for (k = 0; k < 64 && t < s; k++, t++)
    if (m->g[t].state == want) return t;
  return 0;
}

/* Transaction s = m->last + 1: perform it in txn (when not NULL) on
 * table, and advance the model.  With a txn, the model advances only if
 * every write succeeded; the caller commits.  meta: also set "w" = s. */
/* What cu_step changed in the model, so that a caller whose commit
 * failed can take the step back (cu_take_back). */
typedef struct cu_undo {
  uint32_t last, live_rows, dead_rows;
  unsigned n;
  uint32_t idx[4];
  cu_group g[4];
} cu_undo;

static inline void cu_undo_note(cu_undo *u, const cu_model *m, uint32_t i) {
  if (!u || !i) return;
  u->idx[u->n] = i;
  u->g[u->n] = m->g[i];
  u->n++;
}

static inline void cu_take_back(cu_model *m, const cu_undo *u) {
  unsigned k = u->n;
  while (k--) m->g[u->idx[k]] = u->g[k];
  m->last = u->last;
  m->live_rows = u->live_rows;
  m->dead_rows = u->dead_rows;
}

static inline int cu_step_undo(cu_model *m, sync_txn *txn, unsigned table,
                               int meta, cu_undo *u);
static inline int cu_step(cu_model *m, sync_txn *txn, unsigned table,
                          int meta) {
  return cu_step_undo(m, txn, table, meta, NULL);
}

static inline int cu_step_undo(cu_model *m, sync_txn *txn, unsigned table,
                               int meta, cu_undo *u) {
  uint32_t s = m->last + 1;
  cu_rng r;
  unsigned n;
  int rc = 0;
  if (s > CU_MAXG) return SYNC_ELIMIT;
  r.s = cu_mix(m->seed ^ (UINT64_C(0x5bd1e995) * s));
  n = 2 + (unsigned)cu_below(&r, CU_MAXN - 1);
  {
    /* Decide every operation first, then write them. */
    uint32_t upd = 0, del = 0, back = 0;
    uint64_t op = cu_below(&r, 12);
    if (op < 4) upd = cu_pick(m, &r, s, CU_LIVE);
    else if (op < 7) del = cu_pick(m, &r, s, CU_LIVE);
    else if (op < 8) back = cu_pick(m, &r, s, CU_DEAD);
    if (txn) {
      if ((rc = cu_put_group(txn, table, m->seed, s, n, s))) return rc;
      if (upd && (rc = cu_put_group(txn, table, m->seed, upd, m->g[upd].n, s)))
        return rc;
      if (del && (rc = cu_del_group(txn, table, del, m->g[del].n))) return rc;
      if (back &&
          (rc = cu_put_group(txn, table, m->seed, back, m->g[back].n, s)))
        return rc;
      if (meta) {
        sync_value v = sync_int(s);
        if ((rc = sync_put(txn, CU_T_M, "w", 1, &v, 1))) return rc;
      }
    }
    if (u) {
      u->n = 0;
      u->last = m->last;
      u->live_rows = m->live_rows;
      u->dead_rows = m->dead_rows;
      cu_undo_note(u, m, s);
      cu_undo_note(u, m, upd);
      cu_undo_note(u, m, del);
      cu_undo_note(u, m, back);
    }
    m->g[s].state = CU_LIVE;
    m->g[s].n = (uint8_t)n;
    m->g[s].gen = s;
    m->live_rows += n;
    if (upd) m->g[upd].gen = s;
    if (del) {
      m->g[del].state = CU_DEAD;
      m->live_rows -= m->g[del].n;
      m->dead_rows += m->g[del].n;
    }
    if (back) {
      m->g[back].state = CU_LIVE;
      m->g[back].gen = s;
      m->live_rows += m->g[back].n;
      m->dead_rows -= m->g[back].n;
    }
  }
  m->last = s;
  return 0;
}

static inline void cu_model_init(cu_model *m, uint64_t seed) {
  memset(m, 0, sizeof *m);
  m->seed = seed;
}

/* Advance the model to transaction c (no database). */
static inline void cu_model_to(cu_model *m, uint32_t c) {
  while (m->last < c) cu_step(m, NULL, 0, 0);
}

/* ---------------------------------------------------------------------
 * Failure messages
 * ------------------------------------------------------------------- */
typedef struct cu_why {
  char msg[512];
  int failed;
} cu_why;

static inline int cu_fail(cu_why *w, const char *fmt, ...) {
  va_list ap;
  if (!w->failed) {
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
  }
  w->failed = 1;
  return -1;
}

/* ---------------------------------------------------------------------
 * Verification
 * ------------------------------------------------------------------- */

/* Integrity of everything in txn's snapshot, independent of any model:
 * every row of every table reads back through a cursor (which checks its
 * checksum: a damaged row gives SYNC_ECORRUPT) and agrees with
 * sync_count; the change log since 0 names every live row and tombstone
 * exactly once, in version order, no version above the snapshot's, and
 * every column of every entry reads back; live entries per table equal
 * the cursor's rows and the even ones equal sync_tombstones(). */
typedef struct cu_keyent {
  unsigned table;
  uint64_t cl;
  char key[32];
} cu_keyent;

static inline int cu_keyent_cmp(const void *a, const void *b) {
  const cu_keyent *x = (const cu_keyent *)a, *y = (const cu_keyent *)b;
  if (x->table != y->table) return x->table < y->table ? -1 : 1;
  return strcmp(x->key, y->key);
}

typedef struct cu_scan {
  uint64_t rows[3];       /* live rows by cursor */
  uint64_t log_live[3];   /* live rows in the change log */
  uint64_t log_dead[3];   /* tombstones in the change log */
  cu_keyent *ents;        /* change-log entries, sorted by (table, key) */
  size_t nents;
} cu_scan;

static inline void cu_scan_free(cu_scan *s) {
  free(s->ents);
  s->ents = NULL;
}

/* Tombstone or live entry of (table, key) in the scan, or NULL. */
static inline const cu_keyent *cu_scan_find(const cu_scan *s, unsigned table,
                                            const char *key) {
  cu_keyent k;
  if (s->nents == 0) return NULL; /* bsearch wants a non-NULL base */
  memset(&k, 0, sizeof k);
  k.table = table;
  snprintf(k.key, sizeof k.key, "%s", key);
  return (const cu_keyent *)bsearch(&k, s->ents, s->nents, sizeof k,
                                    cu_keyent_cmp);
}

static inline int cu_integrity(sync_txn *txn, cu_scan *sc, cu_why *w) {
  unsigned t, c;
  int rc;
  uint64_t tomb = 0, ver = sync_txn_version(txn), prev = 0;
  size_t cap = 0, i;
  sync_changes *it = NULL;
  sync_change ch;
  memset(sc, 0, sizeof *sc);
  if (sync_tombstones(txn, &tomb))
    return cu_fail(w, "sync_tombstones failed");
  for (t = 0; t < 3; t++) {
    sync_cursor *cur;
    sync_key k;
    sync_value v[CU_NCOL];
    uint64_t cnt = 0;
    if ((rc = sync_cursor_open(txn, t, &cur)))
      return cu_fail(w, "cursor_open(%u): %s", t, sync_strerror(rc));
    while ((rc = sync_cursor_next(cur, &k, v, cu_schema[t].ncolumns)) == 0)
      sc->rows[t]++;
    sync_cursor_close(cur);
    if (rc != SYNC_NOTFOUND)
      return cu_fail(w, "cursor over table %u stopped with %s after %llu rows",
                     t, sync_strerror(rc), (unsigned long long)sc->rows[t]);
    if ((rc = sync_count(txn, t, &cnt)))
      return cu_fail(w, "sync_count(%u): %s", t, sync_strerror(rc));
    if (cnt != sc->rows[t])
      return cu_fail(w, "table %u: sync_count %llu, cursor %llu rows", t,
                     (unsigned long long)cnt, (unsigned long long)sc->rows[t]);
  }
  if ((rc = sync_changes_open(txn, 0, &it)))
    return cu_fail(w, "changes_open: %s", sync_strerror(rc));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    cu_keyent *e;
    if (ch.table >= 3 || ch.key.len == 0 || ch.key.len >= sizeof e->key) {
      sync_changes_close(it);
      return cu_fail(w, "change log: bad entry (table %u, key length %zu)",
                     ch.table, ch.key.len);
    }
    if (ch.version < prev || ch.version > ver || ch.version == 0) {
      sync_changes_close(it);
      return cu_fail(w, "change log: version %llu after %llu (snapshot %llu)",
                     (unsigned long long)ch.version, (unsigned long long)prev,
                     (unsigned long long)ver);
    }
    prev = ch.version;
    if (sc->nents == cap) {
      cu_keyent *q;
      cap = cap ? cap * 2 : 1024;
      q = (cu_keyent *)realloc(sc->ents, cap * sizeof *q);
      if (!q) {
        sync_changes_close(it);
        return cu_fail(w, "out of memory");
      }
      sc->ents = q;
    }
    e = &sc->ents[sc->nents++];
    memset(e, 0, sizeof *e);
    e->table = ch.table;
    e->cl = ch.causal_length;
    memcpy(e->key, ch.key.data, ch.key.len);
    if (ch.causal_length & 1) {
      sc->log_live[ch.table]++;
      for (c = 0; c < ch.ncolumns; c++) {
        sync_value v;
        sync_stamp st, base;
        rc = sync_changes_column(it, c, &v, &st, &base);
        if (rc != 0 && rc != SYNC_NOTFOUND) {
          sync_changes_close(it);
          return cu_fail(w, "change log: column %u of %s: %s", c, e->key,
                         sync_strerror(rc));
        }
      }
    } else {
      sc->log_dead[ch.table]++;
      if (ch.ncolumns != 0) {
        sync_changes_close(it);
        return cu_fail(w, "tombstone %s has %u columns", e->key, ch.ncolumns);
      }
    }
  }
  sync_changes_close(it);
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "change log stopped with %s after %zu entries",
                   sync_strerror(rc), sc->nents);
  if (sc->nents) qsort(sc->ents, sc->nents, sizeof *sc->ents, cu_keyent_cmp);
  for (i = 1; i < sc->nents; i++)
    if (cu_keyent_cmp(&sc->ents[i - 1], &sc->ents[i]) == 0)
      return cu_fail(w, "change log lists %u/%s twice", sc->ents[i].table,
                     sc->ents[i].key);
  {
    uint64_t dead = 0;
    for (t = 0; t < 3; t++) {
      if (sc->log_live[t] != sc->rows[t])
        return cu_fail(w, "table %u: %llu live rows in the change log, %llu "
                          "by cursor",
                       t, (unsigned long long)sc->log_live[t],
                       (unsigned long long)sc->rows[t]);
      dead += sc->log_dead[t];
    }
    if (dead != tomb)
      return cu_fail(w, "%llu tombstones in the change log, sync_tombstones "
                        "says %llu",
                     (unsigned long long)dead, (unsigned long long)tomb);
  }
  return 0;
}

/* The meta row "w": the last writer transaction committed, 0 if none. */
static inline int cu_read_meta(sync_txn *txn, uint32_t *c, cu_why *w) {
  sync_value v;
  int rc = sync_get(txn, CU_T_M, "w", 1, &v, 1);
  if (rc == SYNC_NOTFOUND) {
    *c = 0;
    return 0;
  }
  if (rc) return cu_fail(w, "get meta row: %s", sync_strerror(rc));
  if (v.type != SYNC_INTEGER || v.i < 0 || v.i > (int64_t)CU_MAXG)
    return cu_fail(w, "meta row holds a bad value");
  *c = (uint32_t)v.i;
  return 0;
}

/* Table `table` equals the model m exactly: the cursor's rows are those
 * of the live groups, each with the group's generation, size and
 * payload; every row of a deleted group is a tombstone in the scan. */
static inline int cu_match(sync_txn *txn, unsigned table, const cu_model *m,
                           const cu_scan *sc, cu_why *w) {
  sync_cursor *cur;
  sync_key k;
  sync_value v[CU_NCOL];
  uint64_t seen = 0, dead = 0;
  uint32_t g;
  int rc;
  if ((rc = sync_cursor_open(txn, table, &cur)))
    return cu_fail(w, "cursor_open: %s", sync_strerror(rc));
  while ((rc = sync_cursor_next(cur, &k, v, CU_NCOL)) == 0) {
    char key[32], want[24];
    unsigned idx, grp;
    unsigned char pay[CU_MAXPAY];
    size_t pn;
    const cu_group *mg;
    if (k.len >= sizeof key) break;
    memcpy(key, k.data, k.len);
    key[k.len] = 0;
    if (sscanf(key, "g%6u.%u", &grp, &idx) != 2 || grp == 0 || grp > CU_MAXG) {
      sync_cursor_close(cur);
      return cu_fail(w, "table %u: unexpected key %s", table, key);
    }
    cu_key(want, grp, idx);
    mg = &m->g[grp];
    if (strcmp(want, key) != 0 || mg->state != CU_LIVE || idx >= mg->n) {
      sync_cursor_close(cur);
      return cu_fail(w, "table %u: row %s present, model after txn %u says "
                        "group %u is %s with %u rows",
                     table, key, (unsigned)m->last, grp,
                     mg->state == CU_LIVE ? "live"
                     : mg->state == CU_DEAD ? "deleted" : "absent",
                     (unsigned)mg->n);
    }
    pn = cu_payload(pay, m->seed, grp, idx, mg->gen);
    if (v[0].type != SYNC_INTEGER || v[0].i != (int64_t)grp ||
        v[1].type != SYNC_INTEGER || v[1].i != (int64_t)mg->gen ||
        v[2].type != SYNC_INTEGER || v[2].i != (int64_t)mg->n ||
        v[3].type != SYNC_BLOB || v[3].len != pn ||
        (pn && memcmp(v[3].data, pay, pn) != 0)) {
      long long gen = v[1].type == SYNC_INTEGER ? (long long)v[1].i : -1;
      sync_cursor_close(cur);
      return cu_fail(w, "table %u: row %s has generation %lld, model after txn "
                        "%u says %u (or other columns differ): half a txn",
                     table, key, gen, (unsigned)m->last, (unsigned)mg->gen);
    }
    seen++;
  }
  sync_cursor_close(cur);
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "table %u: cursor stopped with %s", table,
                   sync_strerror(rc));
  if (seen != m->live_rows)
    return cu_fail(w, "table %u: %llu rows, model after txn %u has %u "
                      "(a group is missing rows)",
                   table, (unsigned long long)seen, (unsigned)m->last,
                   (unsigned)m->live_rows);
  for (g = 1; g <= m->last; g++) {
    unsigned i;
    if (m->g[g].state != CU_DEAD) continue;
    for (i = 0; i < m->g[g].n; i++) {
      char key[24];
      const cu_keyent *e;
      cu_key(key, g, i);
      e = cu_scan_find(sc, table, key);
      if (!e || (e->cl & 1))
        return cu_fail(w, "table %u: deleted row %s is %s in the change log",
                       table, key, e ? "live" : "missing");
      dead++;
    }
  }
  if (dead != sc->log_dead[table])
    return cu_fail(w, "table %u: %llu tombstones in the log, model has %llu",
                   table, (unsigned long long)sc->log_dead[table],
                   (unsigned long long)dead);
  return 0;
}

/* Open path with the crash schema and the given durability; the map
 * starts at initial bytes (0: 1 MiB) and grows up to maxmap (0: 1 GiB). */
static inline int cu_open_map(const char *path, int durability,
                              size_t initial, size_t maxmap, sync_env **out) {
  sync_env *env = NULL;
  int rc;
  *out = NULL;
  if ((rc = sync_env_create(NULL, &env))) return rc;
  if ((rc = sync_env_set_durability(env, durability)) ||
      (rc = sync_env_set_mapsize(env, initial ? initial : (size_t)1 << 20,
                                 maxmap ? maxmap : (size_t)1 << 30)) ||
      (rc = sync_env_set_schema(env, cu_schema, 3)) ||
      (rc = sync_env_open(env, path, 0))) {
    sync_env_close(env);
    return rc;
  }
  *out = env;
  return 0;
}

static inline int cu_open(const char *path, int durability, size_t maxmap,
                          sync_env **out) {
  return cu_open_map(path, durability, 0, maxmap, out);
}

static inline void cu_remove_db(const char *path) {
  char lock[512];
  snprintf(lock, sizeof lock, "%s-lock", path);
  remove(path);
  remove(lock);
}

/* Seed from CRASH_SEED, else from the time. */
static inline uint64_t cu_seed(void) {
  const char *s = getenv("CRASH_SEED");
  if (s && *s) return strtoull(s, NULL, 0);
  {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return cu_mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
  }
}

static inline unsigned long cu_env_num(const char *name, unsigned long dflt) {
  const char *s = getenv(name);
  return s && *s ? strtoul(s, NULL, 0) : dflt;
}

#endif
