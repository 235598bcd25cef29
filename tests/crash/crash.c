/*
 * crash.c - process-crash harness.  Children write to a database and are
 * killed with SIGKILL at random moments; after each kill the parent opens
 * the database and checks it (crash_util.h): every row's checksum, the
 * change log against the rows, every commit a child reported done, no
 * half transaction, no half chunk, and row history: A keeps every
 * version of its tables, and the versions must be exactly the committed
 * changes, the last transaction's all there or none of them, as the
 * check of the table decided.
 *
 * Three kinds of cycle, in turn:
 *   writer   a child runs writer transactions (crash_util.h's workload)
 *            on replica A and, after each sync_txn_commit returned 0,
 *            writes the transaction number to a pipe;
 *   applier  the parent first adds a few transactions to replica B, then
 *            a child pulls B's changes into A chunk by chunk
 *            (sync_request_make / sync_delta_make / sync_delta_apply,
 *            one commit per chunk) and reports each committed chunk;
 *   both     a writer and an applier at once on A, both killed.
 * For the applier the parent computes beforehand, on a copy of A, the
 * digest of A's replicated table after each chunk; after the kill A's
 * digest must be the one after the last reported chunk or the next one.
 * The parent then finishes the pull and checks that A's replicated table
 * equals B's (digest, model and version vector entry).
 *
 * History after each kill: the writer's rows (crash_util.h, cu_history)
 * list one version per committed transaction that changed them, at that
 * transaction's local version and time (the meta row's versions name
 * them), with its values, and none of the transaction found not
 * committed; every fourth cycle every row, else the rows the
 * transactions since the last check changed or the next one would.  The
 * replicated rows changed in the cycle list the same versions as on the
 * copy of A up to the chunk found committed (values, stamps, origin, one
 * local version per chunk commit, in order), each a state of B's row;
 * again after the pull is finished.  One as-of read per check (a version
 * or a time; on the replicated table, against the copy) must give the
 * model's table, or the copy's, at that point.
 *
 * kill -9 tests crashes of the process, not of the machine: the kernel
 * keeps the page cache, so what LMDB wrote reaches the file.  Power loss
 * is powerloss.c's job.
 *
 * Environment: CRASH_CYCLES (default 240), CRASH_SEED (default: time),
 * CRASH_RESET (cycles between fresh databases, default 40).  The seed is
 * printed first; a failure prints the cycle and what differed.
 */
#include "../testutil.h"

#include "crash_util.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DB_A "crash_a.db"
#define DB_B "crash_b.db"
#define DB_AC "crash_ac.db" /* copy of A: expected digests, histories */

#define MAXCHUNKS 4096

static uint64_t g_seed;
static unsigned long g_cycles, g_reset;
static cu_model g_ma, g_mb; /* A's table g, B's table r */
static cu_rng g_rng;
static cu_rng g_hrng; /* the history checks' samples */
static uint64_t g_a_ver; /* A's last version when the parent last had it */

typedef struct stats {
  unsigned long cycles, failures;
  unsigned long reports;     /* commits reported by children */
  unsigned long unreported;  /* kills between commit and report */
  unsigned long chunks, unreported_chunks, finished_before_kill;
  unsigned long unchanged_chunks; /* committed, the digest as it was */
  unsigned long writer_txns; /* writer transactions found committed */
  cu_hstats hist;            /* history of A's tables g and m */
  unsigned long r_versions;  /* versions of A's table r compared */
  unsigned long r_asof;      /* as-of reads of table r compared */
} stats;
static stats g_st;

static void msleep_us(unsigned long us) {
  struct timespec ts;
  ts.tv_sec = (time_t)(us / 1000000u);
  ts.tv_nsec = (long)(us % 1000000u) * 1000;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int copy_file(const char *from, const char *to) {
  static unsigned char buf[1u << 18];
  FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
  size_t n;
  int rc = in && out ? 0 : -1;
  while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n) rc = -1;
  if (in && ferror(in)) rc = -1;
  if (in) fclose(in);
  if (out && fclose(out) != 0) rc = -1;
  return rc;
}

/* ---------------------------------------------------------------------
 * Children.  They never return: _exit(0) when done, 3 on a failure.
 * ------------------------------------------------------------------- */
static void report(int fd, int32_t v) {
  ssize_t w = write(fd, &v, sizeof v);
  (void)w;
}

static void writer_child(int fd, int durability) {
  sync_env *env;
  if (cu_open(DB_A, durability, 0, &env)) _exit(3);
  for (;;) {
    sync_txn *txn;
    int rc;
    if (g_ma.last >= CU_MAXG) {
      pause(); /* out of groups: wait for the kill */
      continue;
    }
    if (sync_txn_begin(env, 0, &txn)) _exit(3);
    rc = cu_step(&g_ma, txn, CU_T_G, 1);
    if (rc) {
      /* The model did not advance; nothing of this txn may be committed. */
      sync_txn_abort(txn);
      _exit(3);
    }
    if (sync_txn_commit(txn)) _exit(3);
    report(fd, (int32_t)g_ma.last);
  }
}

/* One chunk from B into A: 1 if it was the last, 0 if not, <0 error. */
static int pull_chunk(sync_env *a, sync_env *b, const uint8_t bsite[16],
                      size_t max_rows) {
  sync_txn *ta = NULL, *tb = NULL;
  sync_request *req = NULL;
  sync_delta *d = NULL;
  sync_delta_opts o;
  int rc, last;
  memset(&o, 0, sizeof o);
  o.max_rows = max_rows;
  if ((rc = sync_txn_begin(a, 0, &ta))) return rc;
  if ((rc = sync_request_make(ta, bsite, &req))) goto out;
  if ((rc = sync_txn_begin(b, SYNC_TXN_RDONLY, &tb))) goto out;
  rc = sync_delta_make(tb, req, &o, &d);
  sync_txn_abort(tb);
  if (rc) goto out;
  last = sync_delta_last(d);
  if ((rc = sync_delta_apply(ta, d, SYNC_APPLY_MERGE, NULL))) goto out;
  rc = sync_txn_commit(ta);
  ta = NULL;
  if (rc == 0) rc = last;
out:
  sync_txn_abort(ta);
  sync_delta_free(d);
  sync_request_free(req);
  return rc;
}

static void applier_child(int fd, int durability, size_t max_rows) {
  sync_env *a, *b;
  uint8_t bsite[16];
  int32_t j = 0;
  if (cu_open(DB_A, durability, 0, &a) || cu_open(DB_B, durability, 0, &b) ||
      sync_env_site_id(b, bsite))
    _exit(3);
  for (;;) {
    int rc = pull_chunk(a, b, bsite, max_rows);
    if (rc < 0) _exit(3);
    report(fd, ++j);
    if (rc == 1) _exit(0);
  }
}

/* ---------------------------------------------------------------------
 * Parent side
 * ------------------------------------------------------------------- */
typedef struct child {
  pid_t pid;
  int fd;       /* read end of its pipe */
  int32_t last; /* highest number it reported */
  unsigned long reports;
  int status;
} child;

static int start_child(child *c, int kind, int durability, size_t max_rows) {
  int p[2];
  memset(c, 0, sizeof *c);
  if (pipe(p) != 0) return -1;
  fflush(stdout);
  fflush(stderr);
  c->pid = fork();
  if (c->pid < 0) return -1;
  if (c->pid == 0) {
    close(p[0]);
    if (kind == 0)
      writer_child(p[1], durability);
    else
      applier_child(p[1], durability, max_rows);
    _exit(3);
  }
  close(p[1]);
  c->fd = p[0];
  return 0;
}

/* Wait for n reports from c (or its end); returns reports seen. */
static void wait_reports(child *c, unsigned long n) {
  while (c->reports < n) {
    int32_t v;
    ssize_t r = read(c->fd, &v, sizeof v);
    if (r != (ssize_t)sizeof v) break;
    c->last = v;
    c->reports++;
  }
}

static void kill_and_drain(child *c) {
  kill(c->pid, SIGKILL);
  while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
  }
  wait_reports(c, (unsigned long)-1); /* what it wrote before dying */
  close(c->fd);
}

/* Pull B into env a until the last chunk, recording table r's digest
 * and a's last committed version after each chunk into dig[1..] and
 * ver[1..] (ver[0]: before the first); returns the number of chunks or
 * <0. */
static int pull_all(sync_env *a, sync_env *b, size_t max_rows, uint64_t *dig,
                    uint64_t *ver, size_t cap) {
  uint8_t bsite[16];
  int n = 0, rc;
  if (sync_env_site_id(b, bsite)) return -1;
  if (dig) {
    sync_txn *t;
    if (sync_txn_begin(a, SYNC_TXN_RDONLY, &t)) return -1;
    ver[0] = sync_txn_version(t);
    sync_txn_abort(t);
  }
  for (;;) {
    rc = pull_chunk(a, b, bsite, max_rows);
    if (rc < 0) return rc;
    n++;
    if (dig && (size_t)n < cap) {
      sync_txn *t;
      if (sync_txn_begin(a, SYNC_TXN_RDONLY, &t)) return -1;
      sync_digest(t, CU_T_R, &dig[n]);
      ver[n] = sync_txn_version(t);
      sync_txn_abort(t);
    }
    if (rc == 1) return n;
    if (n > 100000) return -1;
  }
}

/* env's last committed version. */
static uint64_t last_version(sync_env *env) {
  sync_txn *t;
  uint64_t v;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &t)) return 0;
  v = sync_txn_version(t);
  sync_txn_abort(t);
  return v;
}

static int digest_of(sync_env *env, unsigned table, uint64_t *out) {
  sync_txn *t;
  int rc;
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &t))) return rc;
  rc = sync_digest(t, table, out);
  sync_txn_abort(t);
  return rc;
}

/* The vector entry of site in env's vector (0 if none). */
static uint64_t vv_entry(sync_env *env, const uint8_t site[16]) {
  sync_txn *t;
  sync_stamp v[16];
  size_t n = 0, i;
  uint64_t h = 0;
  if (sync_txn_begin(env, SYNC_TXN_RDONLY, &t)) return 0;
  if (sync_vv_get(t, v, 16, &n) == 0)
    for (i = 0; i < n && i < 16; i++)
      if (memcmp(v[i].site, site, 16) == 0) h = v[i].hlc;
  sync_txn_abort(t);
  return h;
}

/* ---------------------------------------------------------------------
 * History of the replicated table.  A keeps every version of table r,
 * which only appliers write, one version of a row per chunk commit that
 * changed it.  The copy of A pulled every chunk of the cycle, its
 * history on too (a copy keeps the settings); so after chunk J, A's
 * history must be the copy's up to chunk J: the same versions of each
 * row, with the same values, stamps and origin, A's local versions
 * after the cycle began taken one to one, in order, for the copy's (on A
 * a writer's commits may lie between).  Each version must also be a
 * state of B's row: B's changes of it (its model), a subsequence newest
 * first, each applied from a peer.
 * ------------------------------------------------------------------- */
typedef struct vlist {
  uint64_t *v;
  size_t n, cap;
} vlist;

static int vl_add(vlist *l, uint64_t v) {
  if (l->n == l->cap) {
    uint64_t *p;
    l->cap = l->cap ? 2 * l->cap : 256;
    p = (uint64_t *)realloc(l->v, l->cap * sizeof *p);
    if (!p) return -1;
    l->v = p;
  }
  l->v[l->n++] = v;
  return 0;
}

static int u64_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void vl_sort_unique(vlist *l) {
  size_t i, k;
  if (l->n) qsort(l->v, l->n, sizeof *l->v, u64_cmp);
  for (i = k = 0; i < l->n; i++)
    if (k == 0 || l->v[k - 1] != l->v[i]) l->v[k++] = l->v[i];
  l->n = k;
}

/* The rows of table r changed after local version since (the change
 * log lists each once), added to out as group << 8 | index. */
static int r_changed(sync_txn *t, uint64_t since, vlist *out, cu_why *w) {
  sync_changes *it;
  sync_change ch;
  int rc;
  if ((rc = sync_changes_open(t, since, &it)))
    return cu_fail(w, "changes_open: %s", sync_strerror(rc));
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    char key[32];
    unsigned g, i;
    if (ch.table != CU_T_R) continue;
    if (ch.key.len >= sizeof key) break;
    memcpy(key, ch.key.data, ch.key.len);
    key[ch.key.len] = 0;
    if (sscanf(key, "g%6u.%u", &g, &i) != 2 || g == 0 || g > g_mb.last ||
        i >= g_mb.g[g].n)
      break;
    if (vl_add(out, (uint64_t)g << 8 | i)) {
      rc = SYNC_ENOMEM;
      break;
    }
  }
  sync_changes_close(it);
  if (rc != SYNC_NOTFOUND)
    return cu_fail(w, "change log of table r: %s", rc ? sync_strerror(rc)
                                                      : "a key B never wrote");
  return 0;
}

/* The distinct local versions in (lo, hi] of the versions of rows
 * (group << 8 | index) of table r, sorted. */
static int r_versions(sync_txn *t, const vlist *rows, uint64_t lo,
                      uint64_t hi, vlist *out, cu_why *w) {
  size_t r;
  for (r = 0; r < rows->n; r++) {
    char key[24];
    sync_versions *it;
    sync_version v;
    int rc;
    cu_key(key, (uint32_t)(rows->v[r] >> 8), (unsigned)(rows->v[r] & 255));
    if ((rc = sync_versions_open(t, CU_T_R, key, strlen(key), &it)))
      return cu_fail(w, "versions_open(r, %s): %s", key, sync_strerror(rc));
    while ((rc = sync_versions_next(it, &v, NULL, 0)) == 0 && v.version > lo)
      if (v.version <= hi && vl_add(out, v.version)) rc = SYNC_ENOMEM;
    sync_versions_close(it);
    if (rc != 0 && rc != SYNC_NOTFOUND)
      return cu_fail(w, "versions of r/%s: %s", key, sync_strerror(rc));
  }
  vl_sort_unique(out);
  return 0;
}

static int value_eq(const sync_value *a, const sync_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case SYNC_NULL: return 1;
  case SYNC_INTEGER: return a->i == b->i;
  case SYNC_REAL: return memcmp(&a->r, &b->r, sizeof a->r) == 0;
  default:
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
  }
}

/* The next version of it at or below local version hi: 1, 0 after the
 * last, or an error. */
static int next_upto(sync_versions *it, uint64_t hi, sync_version *v,
                     sync_value *vals) {
  int rc;
  while ((rc = sync_versions_next(it, v, vals, CU_NCOL)) == 0)
    if (v->version <= hi) return 1;
  return rc == SYNC_NOTFOUND ? 0 : rc;
}

/* Row (g, idx) of table r: A's versions (ta; those after a0 named by
 * av) against the copy's up to its version hi (tc; bv) and B's model
 * (eb).  *n counts the versions compared. */
static int r_row_history(sync_txn *ta, uint64_t a0, const vlist *av,
                         sync_txn *tc, uint64_t hi, const vlist *bv,
                         const cu_events *eb, uint32_t g, unsigned idx,
                         int chunk, unsigned long *n, cu_why *w) {
  sync_versions *ia = NULL, *ib = NULL;
  sync_version va, vb;
  sync_value xa[CU_NCOL], xb[CU_NCOL];
  uint32_t p = eb->at[g + 1];
  unsigned na = 0, nb = 0;
  char key[24];
  int ra = 1, rb = 1, rc = 0;
  cu_key(key, g, idx);
  if (sync_versions_open(ta, CU_T_R, key, strlen(key), &ia) ||
      sync_versions_open(tc, CU_T_R, key, strlen(key), &ib)) {
    rc = cu_fail(w, "versions_open(r, %s) failed", key);
    goto out;
  }
  for (;;) {
    const char *bad = NULL;
    uint64_t as = 0;
    unsigned c;
    if (ra == 1 && (ra = next_upto(ia, UINT64_MAX, &va, xa)) == 1) na++;
    if (rb == 1 && (rb = next_upto(ib, hi, &vb, xb)) == 1) nb++;
    if (ra < 0 || rb < 0) {
      rc = cu_fail(w, "versions of r/%s: %s", key,
                   sync_strerror(ra < 0 ? ra : rb));
      goto out;
    }
    if (ra != 1 || rb != 1) {
      if (ra == rb) break;
      continue; /* count the longer one to its end */
    }
    if (va.version <= a0) {
      as = va.version;
    } else {
      const uint64_t *f = (const uint64_t *)bsearch(
          &va.version, av->v, av->n, sizeof *av->v, u64_cmp);
      as = f ? bv->v[f - av->v] : 0;
    }
    if (as != vb.version)
      bad = as > vb.version ? "A lists a version the copy has not (of a chunk "
                              "not committed?)"
                            : "A lacks a version the copy has (a committed "
                              "change lost?)";
    else if (va.origin != SYNC_ORIGIN_PEER || vb.origin != SYNC_ORIGIN_PEER)
      bad = "not a change applied from a peer (origin 0: no history record)";
    else if (va.deleted != vb.deleted || va.causal_length != vb.causal_length)
      bad = "one is deleted, or causal lengths differ";
    else if (va.row_stamp.hlc != vb.row_stamp.hlc ||
             memcmp(va.row_stamp.site, vb.row_stamp.site, 16) != 0 ||
             va.ncolumns != vb.ncolumns)
      bad = "stamps differ";
    for (c = 0; !bad && !va.deleted && c < CU_NCOL; c++)
      if (!value_eq(&xa[c], &xb[c])) bad = "values differ";
    if (!bad) {
      /* A state of B's row: the newest of B's changes below the last
       * one matched that leaves the row so. */
      uint32_t gen = !va.deleted && xa[1].type == SYNC_INTEGER
                         ? (uint32_t)xa[1].i
                         : 0;
      while (p > eb->at[g] &&
             (va.deleted ? !(eb->ev[p - 1] & CU_EV_DEL)
                         : eb->ev[p - 1] != gen))
        p--;
      if (p == eb->at[g] ||
          (!va.deleted &&
           !cu_row_is(xa, g_mb.seed, g, idx, gen, g_mb.g[g].n)))
        bad = "not a state of B's row (or out of order)";
      else
        p--;
    }
    if (bad) {
      rc = cu_fail(w, "A's table r: row %s: version %u (newest first) is A's "
                      "local version %llu (as the copy's %llu, origin %d), "
                      "the copy's up to chunk %d is %llu (origin %d): %s",
                   key, na, (unsigned long long)va.version,
                   (unsigned long long)as, va.origin, chunk,
                   (unsigned long long)vb.version, vb.origin, bad);
      goto out;
    }
    (*n)++;
  }
  if (na != nb)
    rc = cu_fail(w, "A's table r: row %s lists %u versions on A, %u on the "
                    "copy up to chunk %d (%s)",
                 key, na, nb, chunk,
                 na > nb ? "one of a chunk not committed?"
                         : "a committed change lost?");
out:
  sync_versions_close(ia);
  sync_versions_close(ib);
  return rc;
}

/* Table r as of version at_a on A and as of at_c on the copy: the same
 * rows with the same values. */
static int r_asof_same(sync_txn *ta, uint64_t at_a, sync_txn *tc,
                       uint64_t at_c, cu_why *w) {
  sync_cursor *ca = NULL, *cb = NULL;
  sync_key ka, kb;
  sync_value xa[CU_NCOL], xb[CU_NCOL];
  unsigned long rows = 0;
  int ra, rb, rc = 0;
  unsigned c;
  if ((ra = sync_cursor_open_asof(ta, CU_T_R, SYNC_ASOF_VERSION, at_a, &ca)) ||
      (rb = sync_cursor_open_asof(tc, CU_T_R, SYNC_ASOF_VERSION, at_c, &cb))) {
    rc = cu_fail(w, "table r as of version %llu (copy's %llu): "
                    "cursor_open_asof failed",
                 (unsigned long long)at_a, (unsigned long long)at_c);
    goto out;
  }
  for (;; rows++) {
    ra = sync_cursor_next(ca, &ka, xa, CU_NCOL);
    rb = sync_cursor_next(cb, &kb, xb, CU_NCOL);
    if (ra == SYNC_NOTFOUND && rb == SYNC_NOTFOUND) break;
    if (ra || rb) {
      rc = cu_fail(w, "table r as of version %llu (copy's %llu): after %lu "
                      "rows, A: %s; the copy: %s",
                   (unsigned long long)at_a, (unsigned long long)at_c, rows,
                   sync_strerror(ra), sync_strerror(rb));
      goto out;
    }
    for (c = 0; c < CU_NCOL && value_eq(&xa[c], &xb[c]); c++) {
    }
    if (ka.len != kb.len || memcmp(ka.data, kb.data, ka.len) != 0 ||
        c < CU_NCOL) {
      rc = cu_fail(w, "table r as of version %llu (copy's %llu): row %lu "
                      "differs (%.*s, copy %.*s)",
                   (unsigned long long)at_a, (unsigned long long)at_c, rows,
                   (int)ka.len, (const char *)ka.data, (int)kb.len,
                   (const char *)kb.data);
      goto out;
    }
  }
out:
  sync_cursor_close(ca);
  sync_cursor_close(cb);
  return rc;
}

/* A's history of table r after chunk J of nchunks (a0: A's last version
 * before the cycle; ac: the copy, cv[i] its last version after chunk i,
 * cv[0] before); with asof, also the table as of one of these points. */
static int r_history(sync_env *a, uint64_t a0, sync_env *ac,
                     const uint64_t *cv, int J, int nchunks, int asof,
                     cu_why *w) {
  sync_txn *ta = NULL, *tc = NULL;
  vlist rows, av, bv;
  cu_events eb;
  size_t r;
  int rc;
  memset(&rows, 0, sizeof rows);
  memset(&av, 0, sizeof av);
  memset(&bv, 0, sizeof bv);
  memset(&eb, 0, sizeof eb);
  if ((rc = sync_txn_begin(a, SYNC_TXN_RDONLY, &ta)) ||
      (rc = sync_txn_begin(ac, SYNC_TXN_RDONLY, &tc))) {
    rc = cu_fail(w, "history of r: open: %s", sync_strerror(rc));
    goto out;
  }
  /* Older versions are the same bytes in both files (the copy). */
  if ((rc = r_changed(ta, a0, &rows, w)) ||
      (rc = r_changed(tc, cv[0], &rows, w)))
    goto out;
  vl_sort_unique(&rows);
  if ((rc = r_versions(ta, &rows, a0, UINT64_MAX, &av, w)) ||
      (rc = r_versions(tc, &rows, cv[0], cv[J], &bv, w)))
    goto out;
  if (av.n != bv.n) {
    rc = cu_fail(w, "A's table r: history holds versions of %zu commits "
                    "after local version %llu, the copy's first %d of %d "
                    "chunks changed it in %zu",
                 av.n, (unsigned long long)a0, J, nchunks, bv.n);
    goto out;
  }
  if (cu_events_make(&g_mb, &eb)) {
    rc = cu_fail(w, "out of memory");
    goto out;
  }
  for (r = 0; r < rows.n && !rc; r++)
    rc = r_row_history(ta, a0, &av, tc, cv[J], &bv, &eb,
                       (uint32_t)(rows.v[r] >> 8), (unsigned)(rows.v[r] & 255),
                       J, &g_st.r_versions, w);
  if (!rc && asof) {
    /* k = 0: as of the cycle's start, else of the k-th commit since. */
    size_t k = (size_t)cu_below(&g_hrng, av.n + 1);
    rc = k ? r_asof_same(ta, av.v[k - 1], tc, bv.v[k - 1], w)
           : r_asof_same(ta, a0, tc, cv[0], w);
    if (!rc) g_st.r_asof++;
  }
out:
  free(rows.v);
  free(av.v);
  free(bv.v);
  cu_events_free(&eb);
  sync_txn_abort(ta);
  sync_txn_abort(tc);
  return rc;
}

/* Run every check on A (env); advance the model of table g to the
 * committed transaction.  w_lo..w_hi: range the writer's last committed
 * txn must fall in (w_lo > w_hi: no writer ran). */
static int verify_a(sync_env *env, uint32_t w_lo, uint32_t w_hi, cu_why *w) {
  sync_txn *t;
  cu_scan sc;
  uint32_t c = 0, before = g_ma.last;
  int rc;
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &t)))
    return cu_fail(w, "begin on A: %s", sync_strerror(rc));
  g_a_ver = sync_txn_version(t);
  rc = cu_integrity(t, &sc, w);
  if (!rc) rc = cu_read_meta(t, &c, w);
  if (!rc && w_lo <= w_hi && (c < w_lo || c > w_hi))
    rc = cu_fail(w, "last committed writer txn is %u, expected %u..%u "
                    "(an acknowledged commit is missing)",
                 (unsigned)c, (unsigned)w_lo, (unsigned)w_hi);
  if (!rc && c < g_ma.last)
    rc = cu_fail(w, "writer txn %u found, but %u were committed before",
                 (unsigned)c, (unsigned)g_ma.last);
  if (!rc) {
    g_st.writer_txns += c - g_ma.last;
    cu_model_to(&g_ma, c);
    rc = cu_match(t, CU_T_G, &g_ma, &sc, w);
  }
  /* History: every row at every fourth cycle, else the rows of the
   * groups that the transactions since the last check changed (and the
   * next one would). */
  if (!rc)
    rc = cu_history(env, t, CU_T_G, &g_ma, g_st.cycles % 4 ? before : 0,
                    &g_hrng, &g_st.hist, w);
  cu_scan_free(&sc);
  sync_txn_abort(t);
  return rc;
}

/* Fresh A (every version of tables g, m and r kept from its first
 * write on) and B, and their models. */
static void fresh_dbs(void) {
  sync_env *a;
  cu_remove_db(DB_A);
  cu_remove_db(DB_B);
  cu_remove_db(DB_AC);
  cu_model_init(&g_ma, cu_mix(g_seed ^ 0xa));
  cu_model_init(&g_mb, cu_mix(g_seed ^ 0xb));
  assert_int_equal(cu_open(DB_A, SYNC_DURABLE_NOSYNC, 0, &a), 0);
  assert_int_equal(cu_history_on(a, CU_T_G), 0);
  assert_int_equal(cu_history_on(a, CU_T_M), 0);
  assert_int_equal(cu_history_on(a, CU_T_R), 0);
  g_a_ver = last_version(a);
  sync_env_close(a);
}

/* B (env b) gets k more writer transactions on table r. */
static int grow_b(sync_env *b, unsigned k, cu_why *w) {
  unsigned i;
  int rc = 0;
  for (i = 0; i < k && g_mb.last < CU_MAXG; i++) {
    sync_txn *t;
    if ((rc = sync_txn_begin(b, 0, &t)) || (rc = cu_step(&g_mb, t, CU_T_R, 0))) {
      sync_txn_abort(t);
      break;
    }
    if ((rc = sync_txn_commit(t))) break;
  }
  return rc ? cu_fail(w, "writing B: %s", sync_strerror(rc)) : 0;
}

/* One cycle of the given kind (0 writer, 1 applier, 2 both), with what
 * it opens in e (closed by the caller): A, once after the kill for every
 * check (each open of an env costs milliseconds), and the copy of A,
 * open from its pull until the checks that compare with it. */
typedef struct envs {
  sync_env *a, *ac;
} envs;

static int cycle_in(int kind, envs *e, cu_why *w) {
  static uint64_t dig[MAXCHUNKS], cv[MAXCHUNKS];
  uint64_t a0 = g_a_ver;
  int durability = (int)cu_below(&g_rng, 3);
  size_t max_rows = 1 + (size_t)cu_below(&g_rng, 12);
  int nchunks = 0, rc;
  child cw, ca;
  uint32_t before = g_ma.last;
  int run_w = kind != 1, run_a = kind != 0;

  if (run_a) {
    sync_env *b;
    if ((rc = cu_open(DB_B, SYNC_DURABLE_NOSYNC, 0, &b)))
      return cu_fail(w, "open B: %s", sync_strerror(rc));
    if (grow_b(b, 4 + (unsigned)cu_below(&g_rng, 24), w)) {
      sync_env_close(b);
      return -1;
    }
    /* Expected digests and histories: on a copy of A, before and after
     * each chunk. */
    cu_remove_db(DB_AC);
    if (tu_file_exists(DB_A) && copy_file(DB_A, DB_AC)) {
      sync_env_close(b);
      return cu_fail(w, "copy A");
    }
    if ((rc = cu_open(DB_AC, SYNC_DURABLE_NOSYNC, 0, &e->ac))) {
      sync_env_close(b);
      return cu_fail(w, "open copy of A: %s", sync_strerror(rc));
    }
    digest_of(e->ac, CU_T_R, &dig[0]);
    nchunks = pull_all(e->ac, b, max_rows, dig, cv, MAXCHUNKS);
    sync_env_close(b);
    if (nchunks < 0 || nchunks >= MAXCHUNKS)
      return cu_fail(w, "pull into the copy of A failed");
  }

  if (run_w && start_child(&cw, 0, durability, 0)) return cu_fail(w, "fork");
  if (run_a && start_child(&ca, 1, durability, max_rows)) {
    if (run_w) kill_and_drain(&cw);
    return cu_fail(w, "fork");
  }
  /* When to kill: after a random delay, or right after the k-th report
   * (which aims at the moment between a commit and the next). */
  if (cu_below(&g_rng, 3) == 0) {
    unsigned long k = 1 + cu_below(&g_rng, 40);
    if (run_w) wait_reports(&cw, k);
    else wait_reports(&ca, k % (unsigned long)(nchunks + 1));
  } else {
    msleep_us((unsigned long)cu_below(&g_rng, 25000));
  }
  if (run_w) kill_and_drain(&cw);
  if (run_a) kill_and_drain(&ca);

  if (run_w) {
    if (WIFEXITED(cw.status))
      return cu_fail(w, "writer child exited by itself with %d",
                     WEXITSTATUS(cw.status));
    g_st.reports += cw.reports;
  }
  if (run_a) {
    if (WIFEXITED(ca.status) && WEXITSTATUS(ca.status) != 0)
      return cu_fail(w, "applier child failed (exit %d)",
                     WEXITSTATUS(ca.status));
    if (WIFEXITED(ca.status)) g_st.finished_before_kill++;
    g_st.chunks += ca.reports;
  }

  {
    uint32_t lo = run_w && cw.reports ? (uint32_t)cw.last : before;
    uint32_t hi = run_w ? lo + 1 : before;
    if ((rc = cu_open(DB_A, SYNC_DURABLE_NOSYNC, 0, &e->a)))
      return cu_fail(w, "open A after the kill: %s", sync_strerror(rc));
    if (verify_a(e->a, lo, hi, w)) return -1;
    if (run_w && g_ma.last == hi && hi != before) g_st.unreported++;
  }

  if (run_a) {
    sync_env *a = e->a, *b;
    uint64_t da = 0, db = 0;
    int j = ca.reports ? (int)ca.last : 0, ok = 0, J;
    uint8_t bsite[16];
    digest_of(a, CU_T_R, &da);
    if (da == dig[j]) ok = 1;
    if (j < nchunks && da == dig[j + 1]) {
      ok = 1;
      if (da != dig[j]) g_st.unreported_chunks++;
    }
    if (!ok)
      return cu_fail(w, "A's replicated table matches no state between chunk "
                        "%d and %d of %d: a chunk is half applied",
                     j, j + 1, nchunks);
    /* The chunks found committed: history must hold exactly theirs.  A
     * chunk may leave the table's content as the one before left it (its
     * row's values already there from an earlier cycle, only the stamps
     * new): the digest cannot then tell whether it committed, and the
     * history of the one after is the other state to accept. */
    J = da == dig[j] ? j : j + 1;
    if (J == j && j < nchunks && dig[j + 1] == dig[j]) {
      cu_why first;
      memset(&first, 0, sizeof first);
      if (r_history(a, a0, e->ac, cv, j, nchunks, 0, &first)) {
        J = j + 1;
        g_st.unchanged_chunks++;
      }
    }
    if (r_history(a, a0, e->ac, cv, J, nchunks, 1, w)) return -1;
    /* Finish the interrupted pull and compare with B. */
    if ((rc = cu_open(DB_B, SYNC_DURABLE_NOSYNC, 0, &b)))
      return cu_fail(w, "open B: %s", sync_strerror(rc));
    rc = pull_all(a, b, max_rows, NULL, NULL, 0) < 0;
    if (!rc) rc = digest_of(a, CU_T_R, &da) || digest_of(b, CU_T_R, &db);
    sync_env_site_id(b, bsite);
    if (!rc && (da != db || da != dig[nchunks]))
      rc = cu_fail(w, "after finishing the pull A and B differ");
    if (!rc && vv_entry(a, bsite) != vv_entry(b, bsite))
      rc = cu_fail(w, "A's vector entry for B (%llu) is not B's own (%llu)",
                   (unsigned long long)vv_entry(a, bsite),
                   (unsigned long long)vv_entry(b, bsite));
    if (!rc) rc = r_history(a, a0, e->ac, cv, nchunks, nchunks, 0, w);
    g_a_ver = last_version(a);
    if (!rc) {
      sync_txn *t;
      cu_scan sc;
      if (sync_txn_begin(a, SYNC_TXN_RDONLY, &t) == 0) {
        rc = cu_integrity(t, &sc, w);
        if (!rc) rc = cu_match(t, CU_T_R, &g_mb, &sc, w);
        cu_scan_free(&sc);
        sync_txn_abort(t);
      }
    }
    sync_env_close(b);
    if (rc) return cu_fail(w, "finishing the pull from B failed");
  }
  return 0;
}

static int cycle(int kind, cu_why *w) {
  envs e = {NULL, NULL};
  int rc = cycle_in(kind, &e, w);
  sync_env_close(e.ac);
  sync_env_close(e.a);
  return rc;
}

static void run_kind(int kind, unsigned long n) {
  static const char *names[] = {"writer", "applier", "both"};
  unsigned long i, fails = 0;
  for (i = 0; i < n; i++) {
    cu_why w;
    memset(&w, 0, sizeof w);
    if ((g_st.cycles % g_reset) == 0) fresh_dbs();
    g_st.cycles++;
    if (cycle(kind, &w)) {
      fails++;
      g_st.failures++;
      printf("crash: FAIL seed=0x%llx cycle %lu (%s): %s\n",
             (unsigned long long)g_seed, g_st.cycles, names[kind], w.msg);
      fresh_dbs(); /* start again from a known state */
    }
  }
  printf("crash: %s: %lu cycles, %lu failures\n", names[kind], n, fails);
}

static void test_kill_writer(void **state) {
  unsigned long f = g_st.failures;
  (void)state;
  run_kind(0, g_cycles / 3);
  assert_int_equal(g_st.failures, f);
}

static void test_kill_applier(void **state) {
  unsigned long f = g_st.failures;
  (void)state;
  run_kind(1, g_cycles / 3);
  assert_int_equal(g_st.failures, f);
}

static void test_kill_both(void **state) {
  unsigned long f = g_st.failures;
  (void)state;
  run_kind(2, g_cycles - 2 * (g_cycles / 3));
  assert_int_equal(g_st.failures, f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill_writer),
      cmocka_unit_test(test_kill_applier),
      cmocka_unit_test(test_kill_both),
  };
  struct timespec t0, t1;
  int rc;
#ifdef __GLIBC__
  /* LMDB callocs a 2 MiB list at every env open and frees it at the
   * close; glibc then raises its mmap threshold above that size, and
   * each later open clears 2 MiB of recycled heap, which took about a
   * third of the parent's time.  A fixed threshold keeps the list a fresh
   * (zero) mapping. */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  g_seed = cu_seed();
  g_cycles = cu_env_num("CRASH_CYCLES", 240);
  g_reset = cu_env_num("CRASH_RESET", 40);
  if (g_reset == 0) g_reset = 1;
  g_rng.s = g_seed;
  g_hrng.s = cu_mix(g_seed ^ 0x4157);
  printf("crash: seed=0x%llx cycles=%lu (rerun: CRASH_SEED=0x%llx)\n",
         (unsigned long long)g_seed, g_cycles, (unsigned long long)g_seed);
  timespec_get(&t0, TIME_UTC);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  timespec_get(&t1, TIME_UTC);
  printf("crash: %lu cycles, %lu failures, seed=0x%llx, %.1f s; %lu commits "
         "reported, %lu writer txns verified, %lu kills between commit and "
         "report; %lu chunks reported, %lu applied but unreported (%lu of "
         "them left the digest as it was), %lu pulls "
         "finished before the kill; history: %llu versions of %llu rows "
         "checked against the model, %llu as-of reads, %lu versions of "
         "replicated rows and %lu as-of reads compared with the copy\n",
         g_st.cycles, g_st.failures, (unsigned long long)g_seed,
         (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
         g_st.reports, g_st.writer_txns, g_st.unreported, g_st.chunks,
         g_st.unreported_chunks + g_st.unchanged_chunks, g_st.unchanged_chunks,
         g_st.finished_before_kill,
         (unsigned long long)g_st.hist.versions,
         (unsigned long long)g_st.hist.rows,
         (unsigned long long)g_st.hist.asof, g_st.r_versions, g_st.r_asof);
  cu_remove_db(DB_A);
  cu_remove_db(DB_B);
  cu_remove_db(DB_AC);
  return rc;
}
