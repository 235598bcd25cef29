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
 * Where the tables keep history, the versions of every row must be the
 * changes of the committed transactions (cu_history).
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

/* What transaction s did besides inserting group s: the group it
 * rewrote, deleted or brought back (0: none), so that every row's
 * changes can be recomputed (cu_events). */
typedef struct cu_txop {
  uint32_t upd, del, back;
} cu_txop;

typedef struct cu_model {
  uint64_t seed;
  uint32_t last;     /* transactions applied to the model */
  uint32_t live_rows, dead_rows;
  cu_group g[CU_MAXG + 1]; /* index = group = transaction that made it */
  cu_txop op[CU_MAXG + 1]; /* index = transaction */
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

/* What transaction m->last + 1 will do: the size of its group, and in
 * *o the group it rewrites, deletes or brings back. */
static inline unsigned cu_next_op(const cu_model *m, cu_txop *o) {
  uint32_t s = m->last + 1;
  cu_rng r;
  unsigned n;
  uint64_t op;
  r.s = cu_mix(m->seed ^ (UINT64_C(0x5bd1e995) * s));
  n = 2 + (unsigned)cu_below(&r, CU_MAXN - 1);
  memset(o, 0, sizeof *o);
  op = cu_below(&r, 12);
  if (op < 4) o->upd = cu_pick(m, &r, s, CU_LIVE);
  else if (op < 7) o->del = cu_pick(m, &r, s, CU_LIVE);
  else if (op < 8) o->back = cu_pick(m, &r, s, CU_DEAD);
  return n;
}

static inline int cu_step_undo(cu_model *m, sync_txn *txn, unsigned table,
                               int meta, cu_undo *u) {
  uint32_t s = m->last + 1;
  unsigned n;
  int rc = 0;
  cu_txop o;
  if (s > CU_MAXG) return SYNC_ELIMIT;
  n = cu_next_op(m, &o);
  {
    /* Decide every operation first, then write them. */
    uint32_t upd = o.upd, del = o.del, back = o.back;
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
    m->op[s].upd = upd;
    m->op[s].del = del;
    m->op[s].back = back;
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

/* Whether v (CU_NCOL values) is row idx of group grp, of n rows, as
 * the transaction gen wrote it. */
static inline int cu_row_is(const sync_value *v, uint64_t seed, uint32_t grp,
                            unsigned idx, uint32_t gen, unsigned n) {
  unsigned char pay[CU_MAXPAY];
  size_t pn = cu_payload(pay, seed, grp, idx, gen);
  return v[0].type == SYNC_INTEGER && v[0].i == (int64_t)grp &&
         v[1].type == SYNC_INTEGER && v[1].i == (int64_t)gen &&
         v[2].type == SYNC_INTEGER && v[2].i == (int64_t)n &&
         v[3].type == SYNC_BLOB && v[3].len == pn &&
         (pn == 0 || memcmp(v[3].data, pay, pn) == 0);
}

/* The rows cur lists are exactly the model's live rows, each with its
 * group's generation, size and payload.  at names the point read ("" for
 * now, else e.g. " as of version 12") in the messages. */
static inline int cu_match_rows(sync_cursor *cur, unsigned table,
                                const cu_model *m, const char *at, cu_why *w) {
  sync_key k;
  sync_value v[CU_NCOL];
  uint64_t seen = 0;
  int rc;
  while ((rc = sync_cursor_next(cur, &k, v, CU_NCOL)) == 0) {
    char key[32], want[24];
    unsigned idx, grp;
    const cu_group *mg;
    if (k.len >= sizeof key) break;
    memcpy(key, k.data, k.len);
    key[k.len] = 0;
    if (sscanf(key, "g%6u.%u", &grp, &idx) != 2 || grp == 0 || grp > CU_MAXG)
      return cu_fail(w, "table %u%s: unexpected key %s", table, at, key);
    cu_key(want, grp, idx);
    mg = &m->g[grp];
    if (strcmp(want, key) != 0 || mg->state != CU_LIVE || idx >= mg->n)
      return cu_fail(w, "table %u%s: row %s present, model after txn %u says "
                        "group %u is %s with %u rows",
                     table, at, key, (unsigned)m->last, grp,
                     mg->state == CU_LIVE ? "live"
                     : mg->state == CU_DEAD ? "deleted" : "absent",
                     (unsigned)mg->n);
    if (!cu_row_is(v, m->seed, grp, idx, mg->gen, mg->n)) {
      long long gen = v[1].type == SYNC_INTEGER ? (long long)v[1].i : -1;
      return cu_fail(w, "table %u%s: row %s has generation %lld, model after "
                        "txn %u says %u (or other columns differ): half a txn",
                     table, at, key, gen, (unsigned)m->last,
                     (unsigned)mg->gen);
    }
    seen++;
  }
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "table %u%s: cursor stopped with %s", table, at,
                   sync_strerror(rc));
  if (seen != m->live_rows)
    return cu_fail(w, "table %u%s: %llu rows, model after txn %u has %u "
                      "(a group is missing rows)",
                   table, at, (unsigned long long)seen, (unsigned)m->last,
                   (unsigned)m->live_rows);
  return 0;
}

/* Table `table` equals the model m exactly: the cursor's rows are those
 * of the live groups, each with the group's generation, size and
 * payload; every row of a deleted group is a tombstone in the scan. */
static inline int cu_match(sync_txn *txn, unsigned table, const cu_model *m,
                           const cu_scan *sc, cu_why *w) {
  sync_cursor *cur;
  uint64_t dead = 0;
  uint32_t g;
  int rc;
  if ((rc = sync_cursor_open(txn, table, &cur)))
    return cu_fail(w, "cursor_open: %s", sync_strerror(rc));
  rc = cu_match_rows(cur, table, m, "", w);
  sync_cursor_close(cur);
  if (rc) return rc;
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

/* ---------------------------------------------------------------------
 * History (sync_env_set_history).  The writer's tables keep every
 * version, so a row's versions are exactly its committed changes, newest
 * first: one per committed transaction that wrote it, none of a
 * transaction that did not commit.  The meta row "w", written by every
 * transaction, lists transactions C..1 and so names the local version
 * and commit time of each; a group's rows must then list the group's
 * changes in the model after C transactions (cu_events), each at the
 * local version and time of its transaction, with the values it wrote
 * (or as a tombstone).  As-of reads at sampled points must give the
 * model after the transaction in force there.
 * ------------------------------------------------------------------- */

/* Keep every version of table (no count or age limit). */
static inline int cu_history_on(sync_env *env, unsigned table) {
  sync_history_opts o;
  memset(&o, 0, sizeof o);
  return sync_env_set_history(env, table, &o);
}

/* The changes of each group in transactions 1..m->last: group g's are
 * ev[at[g] .. at[g + 1] - 1], oldest first, each the transaction that
 * made it, with CU_EV_DEL set for a delete. */
#define CU_EV_DEL 0x80000000u
typedef struct cu_events {
  uint32_t *at, *ev;
} cu_events;

static inline void cu_events_free(cu_events *e) {
  free(e->at);
  free(e->ev);
  e->at = e->ev = NULL;
}

static inline int cu_events_make(const cu_model *m, cu_events *e) {
  uint32_t c = m->last, s, *pos;
  e->at = (uint32_t *)calloc((size_t)c + 2, sizeof *e->at);
  e->ev = (uint32_t *)malloc((4 * (size_t)c + 1) * sizeof *e->ev);
  pos = (uint32_t *)malloc(((size_t)c + 2) * sizeof *pos);
  if (!e->at || !e->ev || !pos) {
    free(pos);
    cu_events_free(e);
    return -1;
  }
  /* Count into at[g + 1], sum, then fill in transaction order. */
  for (s = 1; s <= c; s++) {
    const cu_txop *o = &m->op[s];
    e->at[s + 1]++;
    if (o->upd) e->at[o->upd + 1]++;
    if (o->del) e->at[o->del + 1]++;
    if (o->back) e->at[o->back + 1]++;
  }
  for (s = 1; s <= c; s++) e->at[s + 1] += e->at[s];
  memcpy(pos, e->at, ((size_t)c + 2) * sizeof *pos);
  for (s = 1; s <= c; s++) {
    const cu_txop *o = &m->op[s];
    e->ev[pos[s]++] = s;
    if (o->upd) e->ev[pos[o->upd]++] = s;
    if (o->del) e->ev[pos[o->del]++] = s | CU_EV_DEL;
    if (o->back) e->ev[pos[o->back]++] = s;
  }
  free(pos);
  return 0;
}

/* What the history checks covered. */
typedef struct cu_hstats {
  uint64_t rows;     /* rows whose versions were listed */
  uint64_t versions; /* versions checked against the model */
  uint64_t asof;     /* as-of reads compared with the model */
} cu_hstats;

/* The meta row's versions: exactly transactions c..1, each with its
 * value; ver[s] and tim[s] get transaction s's local version and time. */
static inline int cu_meta_history(sync_txn *txn, uint32_t c, uint64_t *ver,
                                  uint64_t *tim, cu_hstats *st, cu_why *w) {
  sync_versions *it;
  sync_version v;
  sync_value val;
  uint32_t k = 0;
  int rc;
  if ((rc = sync_versions_open(txn, CU_T_M, "w", 1, &it)))
    return cu_fail(w, "versions_open of meta row: %s", sync_strerror(rc));
  while ((rc = sync_versions_next(it, &v, &val, 1)) == 0) {
    uint32_t s = c - k;
    if (k == c) {
      sync_versions_close(it);
      return cu_fail(w, "history of meta row \"w\" lists more than the %u "
                        "committed txns: local version %llu is extra (a "
                        "version of a txn not committed)",
                     (unsigned)c, (unsigned long long)v.version);
    }
    if (v.deleted || val.type != SYNC_INTEGER || val.i != (int64_t)s) {
      sync_versions_close(it);
      return cu_fail(w, "history of meta row \"w\": version %u (newest "
                        "first) of %u committed txns holds %lld, expected "
                        "txn %u",
                     (unsigned)k + 1, (unsigned)c,
                     val.type == SYNC_INTEGER ? (long long)val.i : -1LL,
                     (unsigned)s);
    }
    if (v.origin != SYNC_ORIGIN_LOCAL) {
      sync_versions_close(it);
      return cu_fail(w, "history of meta row \"w\": txn %u (local version "
                        "%llu) has no history record (origin %d): a "
                        "committed change lost",
                     (unsigned)s, (unsigned long long)v.version, v.origin);
    }
    if (k && (v.version >= ver[s + 1] || v.time_ms > tim[s + 1])) {
      sync_versions_close(it);
      return cu_fail(w, "history of meta row \"w\": txn %u has local version "
                        "%llu time %llu, txn %u after it %llu time %llu",
                     (unsigned)s, (unsigned long long)v.version,
                     (unsigned long long)v.time_ms, (unsigned)s + 1,
                     (unsigned long long)ver[s + 1],
                     (unsigned long long)tim[s + 1]);
    }
    ver[s] = v.version;
    tim[s] = v.time_ms;
    k++;
    if (st) st->versions++;
  }
  sync_versions_close(it);
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "history of meta row \"w\": %s after %u versions",
                   sync_strerror(rc), (unsigned)k);
  if (k != c)
    return cu_fail(w, "history of meta row \"w\" lists %u versions, %u txns "
                      "were committed (the oldest listed is txn %u: a "
                      "committed change lost)",
                   (unsigned)k, (unsigned)c, (unsigned)(c - k + 1));
  if (st) st->rows++;
  return 0;
}

/* Row idx of group g of table: its versions are the group's changes in
 * e, newest first, at the local versions and times in ver and tim. */
static inline int cu_row_history(sync_txn *txn, unsigned table,
                                 const cu_model *m, const cu_events *e,
                                 const uint64_t *ver, const uint64_t *tim,
                                 uint32_t g, unsigned idx, cu_hstats *st,
                                 cu_why *w) {
  sync_versions *it;
  sync_version v;
  sync_value vals[CU_NCOL];
  uint32_t lo = e->at[g], hi = e->at[g + 1], k = hi;
  char key[24];
  int rc;
  cu_key(key, g, idx);
  if ((rc = sync_versions_open(txn, table, key, strlen(key), &it)))
    return cu_fail(w, "versions_open(%u, %s): %s", table, key,
                   sync_strerror(rc));
  while ((rc = sync_versions_next(it, &v, vals, CU_NCOL)) == 0) {
    uint32_t ev, s;
    const char *bad = NULL;
    if (k == lo) {
      sync_versions_close(it);
      return cu_fail(w, "table %u: row %s lists more versions than its %u "
                        "committed changes: local version %llu is extra (a "
                        "version of a txn not committed)",
                     table, key, (unsigned)(hi - lo),
                     (unsigned long long)v.version);
    }
    ev = e->ev[--k];
    s = ev & ~CU_EV_DEL;
    if (v.version > ver[s])
      bad = "history lists a version the model has no change for (of a txn "
            "not committed, or not of this row)";
    else if (v.version < ver[s])
      bad = "history lacks the version of that txn (a committed change lost)";
    else if (v.origin != SYNC_ORIGIN_LOCAL)
      bad = "it has no history record (a committed change lost)";
    else if (v.time_ms != tim[s]) bad = "its time is not its txn's";
    else if (v.deleted != ((ev & CU_EV_DEL) != 0))
      bad = v.deleted ? "a delete where the txn wrote the row"
                      : "live where the txn deleted the row";
    else if (!v.deleted && !cu_row_is(vals, m->seed, g, idx, s, m->g[g].n))
      bad = "its values are not those the txn wrote";
    if (bad) {
      sync_versions_close(it);
      return cu_fail(w, "table %u: row %s: version %u (newest first) of its "
                        "%u committed changes should be txn %u (local "
                        "version %llu), but %s: local version %llu, origin "
                        "%d, %s",
                     table, key, (unsigned)(hi - k), (unsigned)(hi - lo),
                     (unsigned)s, (unsigned long long)ver[s], bad,
                     (unsigned long long)v.version, v.origin,
                     v.deleted ? "deleted" : "live");
    }
    if (st) st->versions++;
  }
  sync_versions_close(it);
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "table %u: versions of row %s: %s", table, key,
                   sync_strerror(rc));
  if (k != lo)
    return cu_fail(w, "table %u: row %s lists %u versions, the model has %u "
                      "committed changes (the newest missing: txn %u, a "
                      "committed change lost)",
                   table, key, (unsigned)(hi - k), (unsigned)(hi - lo),
                   (unsigned)(e->ev[k - 1] & ~CU_EV_DEL));
  if (st) st->rows++;
  return 0;
}

/* The as-of cursor of table at (kind, at) lists exactly the model mt. */
static inline int cu_asof_match(sync_txn *txn, unsigned table, int kind,
                                uint64_t at, const cu_model *mt,
                                cu_hstats *st, cu_why *w) {
  sync_cursor *cur;
  char where[64];
  int rc;
  snprintf(where, sizeof where, " as of %s %llu (txn %u)",
           kind == SYNC_ASOF_TIME ? "time" : "version",
           (unsigned long long)at, (unsigned)mt->last);
  if ((rc = sync_cursor_open_asof(txn, table, kind, at, &cur)))
    return cu_fail(w, "table %u%s: cursor_open_asof: %s", table, where,
                   sync_strerror(rc));
  rc = cu_match_rows(cur, table, mt, where, w);
  sync_cursor_close(cur);
  if (!rc && st) st->asof++;
  return rc;
}

/* The history of table (the workload's) and of the meta row in txn
 * against m, the model after the transaction C the meta row names: the
 * meta row's versions; the versions of the rows (cu_row_history) of
 * every group that a transaction after from (0: every group) or the
 * next one, not committed, changed; none for the group the next one
 * inserts; and, with rng (NULL: not), the table as of a version or a
 * time rng picks.  st (may be NULL) counts what was checked.  A file
 * whose history is not on yet (powerloss.c's image of a cut before the
 * workload turned it on) passes only with no transaction committed. */
static inline int cu_history(sync_env *env, sync_txn *txn, unsigned table,
                             const cu_model *m, uint32_t from, cu_rng *rng,
                             cu_hstats *st, cu_why *w) {
  uint32_t c = m->last, g, s, t;
  uint64_t *ver = NULL, *tim = NULL;
  unsigned char *pick = NULL;
  cu_events e;
  cu_model *mt = NULL;
  unsigned i;
  int rc;
  memset(&e, 0, sizeof e);
  for (i = 0; i < 2; i++) {
    unsigned tb = i ? CU_T_M : table;
    sync_history_opts o;
    rc = sync_env_history(env, tb, &o);
    if (rc == SYNC_NOTFOUND && c == 0) return 0;
    if (rc)
      return cu_fail(w, "table %u keeps no history (%s), but %u txns were "
                        "committed after it was turned on",
                     tb, sync_strerror(rc), (unsigned)c);
    if (o.max_versions || o.max_age_ms)
      return cu_fail(w, "table %u keeps history with limits (%llu versions, "
                        "%llu ms): the check expects every version kept",
                     tb, (unsigned long long)o.max_versions,
                     (unsigned long long)o.max_age_ms);
  }
  ver = (uint64_t *)calloc((size_t)c + 2, sizeof *ver);
  tim = (uint64_t *)calloc((size_t)c + 2, sizeof *tim);
  pick = (unsigned char *)calloc((size_t)c + 2, 1);
  if (!ver || !tim || !pick || cu_events_make(m, &e)) {
    rc = cu_fail(w, "out of memory");
    goto out;
  }
  if ((rc = cu_meta_history(txn, c, ver, tim, st, w))) goto out;
  for (s = from + 1; s <= c; s++)
    pick[s] = pick[m->op[s].upd] = pick[m->op[s].del] =
        pick[m->op[s].back] = 1;
  if (c < CU_MAXG) {
    /* Txn C + 1 did not commit: its group has no row, no version. */
    cu_txop o;
    unsigned n = cu_next_op(m, &o);
    pick[o.upd] = pick[o.del] = pick[o.back] = 1;
    for (i = 0; i < n && !rc; i++) {
      char key[24];
      sync_versions *it;
      sync_version v;
      cu_key(key, c + 1, i);
      if ((rc = sync_versions_open(txn, table, key, strlen(key), &it))) {
        rc = cu_fail(w, "versions_open(%u, %s): %s", table, key,
                     sync_strerror(rc));
        break;
      }
      rc = sync_versions_next(it, &v, NULL, 0);
      sync_versions_close(it);
      rc = rc == SYNC_NOTFOUND ? 0
           : rc ? cu_fail(w, "table %u: versions of row %s: %s", table, key,
                          sync_strerror(rc))
                : cu_fail(w, "table %u: row %s of txn %u, not committed, "
                             "lists local version %llu",
                          table, key, (unsigned)c + 1,
                          (unsigned long long)v.version);
    }
  }
  for (g = 1; g <= c && !rc; g++) {
    if (from && !pick[g]) continue;
    for (i = 0; i < m->g[g].n && !rc; i++)
      rc = cu_row_history(txn, table, m, &e, ver, tim, g, i, st, w);
  }
  if (rc || c == 0 || !rng) goto out;
  mt = (cu_model *)malloc(sizeof *mt);
  if (!mt) {
    rc = cu_fail(w, "out of memory");
    goto out;
  }
  cu_model_init(mt, m->seed);
  if (cu_below(rng, 2)) {
    /* As of the version of txn s, or just below txn s + 1's (other
     * commits may lie between; s = 0: before the first). */
    s = (uint32_t)cu_below(rng, (uint64_t)c + 1);
    cu_model_to(mt, s);
    rc = cu_asof_match(txn, table, SYNC_ASOF_VERSION,
                       s == c || (s && cu_below(rng, 2)) ? ver[s]
                                                          : ver[s + 1] - 1,
                       mt, st, w);
  } else {
    /* As of the time of txn s: after every txn committed at or before
     * it (several share a millisecond). */
    s = 1 + (uint32_t)cu_below(rng, c);
    for (t = s; t < c && tim[t + 1] <= tim[s]; t++) {
    }
    cu_model_to(mt, t);
    rc = cu_asof_match(txn, table, SYNC_ASOF_TIME, tim[s], mt, st, w);
  }
out:
  free(mt);
  free(pick);
  free(ver);
  free(tim);
  cu_events_free(&e);
  return rc;
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
