/*
 * Inspection: the change log, the version vector, peers, gc, the digest,
 * verify and stats.  Each command's manual page stands above it.
 */
#include "synctl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const ctl_help ctl_help_log = {
    "synctl log DB [--since VERSION] [--unordered] [--json]",
    "print the change log",
    "Lists the rows changed after local version VERSION (default 0: all),\n"
    "in version order, each once in its latest state: local version,\n"
    "table, key, live or deleted, causal length, the newest stamp in the\n"
    "row (time, HLC counter) and the site that wrote it.  With\n"
    "--unordered, the same rows in the order that reads them fastest:\n"
    "when they are one in 16 of the rows or more, a scan of the tables,\n"
    "table by table in key order, else version order\n"
    "(SYNC_CHANGES_UNORDERED).  With --json, one object per row: version,\n"
    "table, key, state, cl, hlc, time, site.\n"};

typedef struct log_args {
  uint64_t since;
  int json;
  unsigned flags;
} log_args;

static int log_read(sync_env *env, sync_txn *x, const char *db, void *ctx) {
  const log_args *la = (const log_args *)ctx;
  sync_changes *it;
  sync_change ch;
  int rc;
  if ((rc = sync_changes_open_flags(x, la->since, la->flags, &it)))
    return ctl_lib_fail(env, db, rc, "cannot read the change log");
  if (!la->json)
    printf("%-8s %-12s %-20s %-7s %4s  %-31s %s\n", "version", "table", "key",
         "state", "cl", "stamp", "site");
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    sync_table_def d;
    sync_stamp best = ch.row_stamp, st;
    unsigned c;
    char hb[48], site[33];
    size_t kw;
    sync_env_table_def(env, ch.table, &d);
    for (c = 0; c < ch.ncolumns; c++)
      if (sync_changes_column(it, c, NULL, &st, NULL) == 0 && st.hlc > best.hlc)
        best = st;
    ctl_fmt_hlc(best.hlc, hb, sizeof hb);
    ctl_hex_str(best.site, 8, site);
    if (la->json) {
      /* HLCs and versions are below 2^63: json_int_t holds them. */
      if (ctl_json_print(json_pack(
              "{sIsososssIsIssss}", "version", (json_int_t)ch.version, "table",
              ctl_json_str(d.name), "key",
              ctl_json_key(d.key_type, (const unsigned char *)ch.key.data,
                           ch.key.len),
              "state", ch.causal_length & 1 ? "live" : "deleted", "cl",
              (json_int_t)ch.causal_length, "hlc", (json_int_t)best.hlc, "time",
              hb, "site", site))) {
        sync_changes_close(it);
        return EX_FAIL;
      }
      continue;
    }
    printf("%-8llu %-12s ", (unsigned long long)ch.version, d.name);
    kw = ctl_put_key(stdout, d.key_type, (const unsigned char *)ch.key.data,
                     ch.key.len);
    printf("%*s %-7s %4llu  %-31s %s\n", (int)(kw < 20 ? 20 - kw : 0), "",
           ch.causal_length & 1 ? "live" : "deleted",
           (unsigned long long)ch.causal_length, hb, site);
  }
  sync_changes_close(it);
  if (rc != SYNC_NOTFOUND)
    return ctl_lib_fail(env, db, rc, "cannot read the change log");
  return EX_OK;
}

int ctl_cmd_log(int argc, char **argv) {
  log_args la = {0, 0, 0};
  const char *db = NULL;
  int i;
  for (i = 0; i < argc; i++) {
    if (ctl_opt(i, argv[i], "--since")) {
      if (i + 1 == argc || ctl_parse_u64(argv[++i], &la.since))
        return ctl_usage("--since needs a local version (a number)");
    } else if (ctl_opt(i, argv[i], "--json")) {
      la.json = 1;
    } else if (ctl_opt(i, argv[i], "--unordered")) {
      la.flags |= SYNC_CHANGES_UNORDERED;
    } else if (!db) {
      db = argv[i];
    } else {
      return ctl_usage("too many arguments");
    }
  }
  if (!db) return ctl_usage("give DB");
  return ctl_read_db(db, log_read, &la);
}

const ctl_help ctl_help_vv = {
    "synctl vv DB [--json]", "print the version vector",
    "Lists the sites this replica holds every change of, up to which\n"
    "hybrid logical clock value (and its time); this replica's own site\n"
    "is marked.  Then the renewal records it keeps, if any: site ids that\n"
    "a replica restored from a backup gave up, and up to which value\n"
    "their claims stand.  With --json, one object per site: site, hlc,\n"
    "time, self, renewed (true for a renewal record).\n"};

/* Print up to 256 of the n stamps of vv: the version vector, or
 * (renewed) the renewal records. */
static int vv_print(const sync_stamp *vv, size_t n, const uint8_t *me,
                    int json, int renewed) {
  size_t i;
  for (i = 0; i < n && i < 256; i++) {
    char site[33], hb[48];
    int self = !renewed && !memcmp(vv[i].site, me, 16);
    ctl_hex_str(vv[i].site, 16, site);
    ctl_fmt_hlc(vv[i].hlc, hb, sizeof hb);
    if (json) {
      if (ctl_json_print(json_pack("{sssIsssbsb}", "site", site, "hlc",
                                   (json_int_t)vv[i].hlc, "time", hb, "self",
                                   self, "renewed", renewed)))
        return EX_FAIL;
    } else
      printf("%s  %-20llu  %s%s\n", site, (unsigned long long)vv[i].hlc, hb,
             self ? "  (this replica)" : "");
  }
  if (n > 256 && !json) printf("... and %zu more\n", n - 256);
  return EX_OK;
}

static int vv_read(sync_env *env, sync_txn *x, const char *db, void *ctx) {
  sync_stamp vv[256];
  size_t n = 0;
  uint8_t me[16];
  int rc, json = ctx != NULL;
  sync_env_site_id(env, me);
  if ((rc = sync_vv_get(x, vv, 256, &n)))
    return ctl_lib_fail(env, db, rc, "cannot read the version vector");
  if (!json) printf("%-32s  %-20s  %s\n", "site", "hlc", "time");
  if ((rc = vv_print(vv, n, me, json, 0))) return rc;
  if ((rc = sync_renewals_get(x, vv, 256, &n)))
    return ctl_lib_fail(env, db, rc, "cannot read the renewal records");
  if (n && !json)
    printf("\nrenewed site ids (a restored replica gave them up; their "
           "claims stand up to hlc)\n");
  return vv_print(vv, n, me, json, 1);
}

/* DB and --json: the database into *db, whether --json came into *json.
 * EX_OK, or EX_USAGE (said). */
static int db_json_args(int argc, char **argv, const char **db, int *json) {
  char *pos = NULL;
  *json = ctl_has(argc, argv, "--json");
  if (ctl_args(argc, argv, &pos, 1) != 1) return ctl_usage("give DB");
  *db = pos;
  return EX_OK;
}

int ctl_cmd_vv(int argc, char **argv) {
  const char *db = NULL;
  int json, rc = db_json_args(argc, argv, &db, &json);
  if (rc) return rc;
  return ctl_read_db(db, vv_read, json ? &json : NULL);
}

const ctl_help ctl_help_peers = {
    "synctl peers DB [--json]", "print the peers and what they hold",
    "Lists the peers this replica has exchanged deltas with: the cursor\n"
    "this replica holds in the peer's log (or the table of an initial\n"
    "stream in progress), the position of this replica's log the peer has\n"
    "acknowledged, and the tombstones still kept for that peer; then the\n"
    "tombstones kept in all.  With --json, one object per peer: peer,\n"
    "cursor, acknowledged, tombstones.\n"};

/* Where a peer's cursor in its log stands, for the table. */
static void peer_cursor(const sync_peer_info *p, char *cur, size_t cap) {
  if (p->initial)
    snprintf(cur, cap, "initial from v%llu, table %u",
             (unsigned long long)p->v0, p->table);
  else if (p->seq == 0xffffffffu)
    snprintf(cur, cap, "v%llu (all)", (unsigned long long)p->version);
  else
    snprintf(cur, cap, "v%llu.%u", (unsigned long long)p->version, p->seq);
  if (p->partial) strncat(cur, " partial", cap - strlen(cur) - 1);
}

static int peers_read(sync_env *env, sync_txn *x, const char *db, void *ctx) {
  sync_peer_info *p = NULL;
  size_t n = 0, i;
  uint64_t tombs = 0;
  int rc, json = ctx != NULL;
  if ((rc = sync_peers_get(x, NULL, 0, &n)) ||
      (n && !(p = (sync_peer_info *)calloc(n, sizeof *p))) ||
      (n && (rc = sync_peers_get(x, p, n, &n))) ||
      (rc = sync_tombstones(x, &tombs))) {
    free(p);
    return ctl_lib_fail(env, db, rc ? rc : SYNC_ENOMEM,
                        "cannot read the peers");
  }
  if (!json)
    printf("%-32s  %-24s  %-16s  %s\n", "peer", "we hold of its log",
           "it acknowledged", "tombstones kept for it");
  for (i = 0; i < n; i++) {
    char site[33], cur[64], ack[40];
    ctl_hex_str(p[i].site, 16, site);
    peer_cursor(&p[i], cur, sizeof cur);
    if (p[i].acked_seq == 0xffffffffu)
      snprintf(ack, sizeof ack, "v%llu (all)",
               (unsigned long long)p[i].acked_version);
    else
      snprintf(ack, sizeof ack, "v%llu.%u",
               (unsigned long long)p[i].acked_version, p[i].acked_seq);
    if (json) {
      if (ctl_json_print(json_pack("{sssssssI}", "peer", site, "cursor", cur,
                                   "acknowledged", ack, "tombstones",
                                   (json_int_t)p[i].tombstones_pending)))
        break;
    } else
      printf("%s  %-24s  %-16s  %llu\n", site, cur, ack,
             (unsigned long long)p[i].tombstones_pending);
  }
  if (!json)
    printf("%zu peer%s; %llu tombstone%s kept\n", n, n == 1 ? "" : "s",
           (unsigned long long)tombs, tombs == 1 ? "" : "s");
  free(p);
  return EX_OK;
}

int ctl_cmd_peers(int argc, char **argv) {
  const char *db = NULL;
  int json, rc = db_json_args(argc, argv, &db, &json);
  if (rc) return rc;
  return ctl_read_db(db, peers_read, json ? &json : NULL);
}

const ctl_help ctl_help_gc = {
    "synctl gc DB [--json]", "collect tombstones every peer has acknowledged",
    "Deletes the tombstones that every known peer has acknowledged and\n"
    "prints how many went and how many are still kept ({collected, kept,\n"
    "folded} with --json).  A replica that knows no peer keeps them all.  They go\n"
    "in batches, a transaction each (sync_env_gc), so that the file does\n"
    "not grow; it does not shrink either: 'synctl compact' gives the\n"
    "space back to the file system.\n"
    "\n"
    "gc also finishes the folding of counter cells that 'synctl retire'\n"
    "began and could not end (it was interrupted, or failed), in the\n"
    "same batches; a second line says when it did (folded is true).\n"};

/* Whether a retirement here still has cells to fold; -1 when the
 * health record cannot be read (said). */
static int fold_pending(sync_env *env, const char *db) {
  sync_txn *x;
  sync_health h;
  int rc;
  if (ctl_begin_ro(env, db, &x)) return -1;
  rc = sync_health_get(x, &h);
  sync_txn_abort(x);
  if (rc) {
    ctl_lib_fail(env, db, rc, "cannot read the health record");
    return -1;
  }
  return h.fold_pending != 0;
}

int ctl_cmd_gc(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  uint64_t n = 0, left = 0;
  int rc, ret = EX_FAIL, json = ctl_has(argc, argv, "--json"), before,
          after = 0, folded;
  char *db;
  if (ctl_args(argc, argv, &db, 1) != 1) return ctl_usage("give DB");
  argv = &db;
  if (ctl_open_db(argv[0], 0, &env)) return EX_FAIL;
  if ((before = fold_pending(env, argv[0])) < 0) {
  } else if ((rc = sync_env_gc(env, &n))) {
    ctl_lib_fail(env, argv[0], rc, "gc failed");
    if (n)
      ctl_say("%llu tombstone%s collected before the failure",
              (unsigned long long)n, n == 1 ? " was" : "s were");
  } else if (before && (after = fold_pending(env, argv[0])) < 0) {
  } else if (ctl_begin_ro(env, argv[0], &x)) {
  } else if ((rc = sync_tombstones(x, &left))) {
    ctl_lib_fail(env, argv[0], rc, "cannot count the tombstones");
    sync_txn_abort(x);
  } else {
    sync_txn_abort(x);
    /* Pending before, done after: this run finished it. */
    folded = before && !after;
    if (json) {
      ret = ctl_json_print(json_pack("{sIsIsb}", "collected", (json_int_t)n,
                                     "kept", (json_int_t)left, "folded",
                                     folded));
    } else {
      printf("collected %llu tombstone%s; %llu kept\n", (unsigned long long)n,
             n == 1 ? "" : "s", (unsigned long long)left);
      if (folded)
        printf("finished folding the counter cells of the sites retired "
               "here\n");
      ret = EX_OK;
    }
  }
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_compact = {
    "synctl compact DB [OUT] [--json]",
    "repack the file, giving free pages back",
    "LMDB reuses the pages that deletes and 'synctl gc' free, but never\n"
    "shrinks the file.  compact rewrites it without its free pages\n"
    "(sync_env_compact; LMDB's compacting copy), like SQLite's VACUUM.\n"
    "It reads the whole file and needs room for a second copy.\n"
    "\n"
    "Without OUT it compacts DB in place: the compacted copy is written\n"
    "beside it (DB.compact) and renamed over it.  The replica stays\n"
    "itself: same site id, rows and log, so its peers continue where\n"
    "they were.  No other process may have DB open meanwhile (a server\n"
    "serving it, say): compact then fails, and says so, without touching\n"
    "it; processes that open DB while it runs wait for it.\n"
    "\n"
    "With OUT it writes a compacted copy to the new file OUT, and DB may\n"
    "be in use.  OUT is a copy: opened for writing, it takes a new site\n"
    "id, as any copied file does.  Use it for backups.\n"
    "\n"
    "Prints the sizes before and after ({file, out, bytes_before,\n"
    "bytes_after} with --json; out is null in place).\n"};

int ctl_cmd_compact(int argc, char **argv) {
  sync_env *env;
  struct stat sb;
  long long before = -1, after = -1;
  int rc, ret = EX_FAIL, json = ctl_has(argc, argv, "--json"), n;
  char *pos[2];
  if ((n = ctl_args(argc, argv, pos, 2)) != 1 && n != 2)
    return ctl_usage("give DB [OUT]");
  if (stat(pos[0], &sb) == 0) before = (long long)sb.st_size;
  /* In place needs a writable env; a copy reads. */
  if (ctl_open_db(pos[0], n == 2, &env)) return EX_FAIL;
  rc = sync_env_compact(env, n == 2 ? pos[1] : NULL);
  if (rc == SYNC_EBUSY && n == 1)
    ctl_lib_fail(env, pos[0], rc, "cannot compact it in place");
  else if (rc)
    ctl_lib_fail(env, pos[0], rc, "compact failed");
  sync_env_close(env);
  if (rc) return EX_FAIL;
  if (stat(n == 2 ? pos[1] : pos[0], &sb) == 0) after = (long long)sb.st_size;
  if (json) {
    ret = ctl_json_print(
        json_pack("{sososIsI}", "file", ctl_json_str(pos[0]), "out",
                  n == 2 ? ctl_json_str(pos[1]) : json_null(), "bytes_before",
                  (json_int_t)before, "bytes_after", (json_int_t)after));
  } else {
    printf("%s: %lld bytes; compacted%s%s: %lld bytes\n", pos[0], before,
           n == 2 ? " into " : " in place", n == 2 ? pos[1] : "", after);
    ret = EX_OK;
  }
  return ret;
}

const ctl_help ctl_help_digest = {
    "synctl digest DB [TABLE] [--json]", "print the content digest",
    "Prints the XXH3-64 digest of the live rows (keys and replicated\n"
    "columns) of TABLE, or of every table, as 16 hex digits.  Replicas\n"
    "that hold the same data print the same digest.  With --json,\n"
    "{table (null for every table), digest}.\n"};

int ctl_cmd_digest(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  unsigned t = SYNC_ALL_TABLES;
  uint64_t dg = 0;
  int rc, ret = EX_FAIL, json = ctl_has(argc, argv, "--json");
  char *pos[2];
  if ((argc = ctl_args(argc, argv, pos, 2)) != 1 && argc != 2)
    return ctl_usage("give DB [TABLE]");
  argv = pos;
  if (ctl_open_db(argv[0], 1, &env)) return EX_FAIL;
  if (argc == 2 && ctl_find_table(env, argv[0], argv[1], &t)) goto out;
  if (ctl_begin_ro(env, argv[0], &x)) goto out;
  if ((rc = sync_digest(x, t, &dg)))
    ctl_lib_fail(env, argv[0], rc, "cannot compute the digest");
  else if (json) {
    char hx[17];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)dg);
    ret = ctl_json_print(json_pack(
        "{soss}", "table", argc == 2 ? ctl_json_str(argv[1]) : json_null(),
        "digest", hx));
  } else
    printf("%016llx\n", (unsigned long long)dg), ret = EX_OK;
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * verify
 * ------------------------------------------------------------------- */
static int problems;
static json_t *problem_list; /* with --json, the problems go here */
static void problem(const char *db, const char *fmt, ...) {
  char b[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (problem_list)
    json_array_append_new(problem_list, ctl_json_str(b));
  else
    printf("%s: %s\n", db, b);
  problems++;
}

/* What verify has read so far, and what it compares. */
typedef struct verify {
  sync_env *env;
  sync_txn *x;
  const char *db;
  unsigned nt;
  uint64_t ver, own_vv, logged, tombs, rows, nconf, folds;
  uint64_t *cnt, *logl; /* live rows per table: counted, and logged */
  uint8_t me[16];
  int have_own;
} verify;

/* This replica's own entry of the version vector. */
static void verify_vv(verify *v) {
  sync_stamp vv[1024];
  size_t n = 0, i;
  int rc;
  if ((rc = sync_vv_get(v->x, vv, 1024, &n)))
    problem(v->db, "version vector unreadable: %s", sync_strerror(rc));
  for (i = 0; i < n && i < 1024; i++)
    if (!memcmp(vv[i].site, v->me, 16)) v->own_vv = vv[i].hlc, v->have_own = 1;
}

/* Every live row of table t, through its checksum, against its count. */
static void verify_table(verify *v, unsigned t) {
  sync_table_def d;
  sync_cursor *cur;
  sync_key k;
  sync_value vals[MAXC];
  uint64_t n = 0;
  unsigned char last[SYNC_MAX_KEY];
  size_t lastn = 0;
  int rc;
  sync_env_table_def(v->env, t, &d);
  if ((rc = sync_count(v->x, t, &v->cnt[t])))
    problem(v->db, "table '%s': row count unreadable", d.name);
  if ((rc = sync_cursor_open(v->x, t, &cur))) {
    problem(v->db, "table '%s': cannot read: %s", d.name, sync_strerror(rc));
    return;
  }
  while ((rc = sync_cursor_next(cur, &k, vals,
                                d.ncolumns < MAXC ? d.ncolumns : MAXC)) == 0) {
    n++;
    memcpy(last, k.data, k.len);
    lastn = k.len;
  }
  sync_cursor_close(cur);
  v->rows += n;
  if (rc != SYNC_NOTFOUND) {
    char ks[128] = "";
    if (lastn) ctl_key_str(d.key_type, last, lastn, ks, sizeof ks);
    problem(v->db, "table '%s': the row %s%s%s: %s", d.name,
            lastn ? "after key '" : "first in the table", ks, lastn ? "'" : "",
            rc == SYNC_ECORRUPT ? "fails its checksum (damaged)"
                                : sync_strerror(rc));
  } else if (n != v->cnt[t]) {
    problem(v->db, "table '%s': holds %llu live rows, its count says %llu",
            d.name, (unsigned long long)n, (unsigned long long)v->cnt[t]);
  }
}

/* The key of ch for a message (ks has room for 128 bytes). */
static const char *change_key(const sync_table_def *d, const sync_change *ch,
                              char *ks) {
  ctl_key_str(d->key_type, (const unsigned char *)ch->key.data, ch->key.len, ks,
              128);
  return ks;
}

/* One change: its version in order and not past the database's, each
 * column readable, own stamps covered by the version vector. */
static void verify_change(verify *v, sync_changes *it, const sync_change *ch,
                          uint64_t prev) {
  sync_table_def d;
  char ks[128];
  unsigned c;
  v->logged++;
  sync_env_table_def(v->env, ch->table, &d);
  if (ch->version > v->ver || ch->version < prev)
    problem(v->db,
            "change log: row '%s' of '%s' at version %llu (after %llu; "
            "database at %llu)",
            change_key(&d, ch, ks), d.name, (unsigned long long)ch->version,
            (unsigned long long)prev, (unsigned long long)v->ver);
  if (ch->causal_length & 1)
    v->logl[ch->table]++;
  else
    v->tombs++;
  for (c = 0; c < ch->ncolumns; c++) {
    sync_stamp st;
    int r2 = sync_changes_column(it, c, NULL, &st, NULL);
    if (r2 && r2 != SYNC_NOTFOUND)
      problem(v->db, "row '%s' of '%s': column %u unreadable: %s",
              change_key(&d, ch, ks), d.name, c, sync_strerror(r2));
    else if (!r2 && v->have_own && !memcmp(st.site, v->me, 16) &&
             st.hlc > v->own_vv)
      problem(v->db,
              "row '%s' of '%s': a local write the version vector does "
              "not cover",
              change_key(&d, ch, ks), d.name);
  }
}

/* The change log: each row once, and as many live rows as the tables. */
static void verify_log(verify *v) {
  sync_changes *it;
  sync_change ch;
  uint64_t prev = 0;
  unsigned t;
  int rc;
  if ((rc = sync_changes_open(v->x, 0, &it))) {
    problem(v->db, "change log unreadable: %s", sync_strerror(rc));
    return;
  }
  while ((rc = sync_changes_next(it, &ch)) == 0) {
    verify_change(v, it, &ch, prev);
    prev = ch.version;
  }
  sync_changes_close(it);
  if (rc != SYNC_NOTFOUND) {
    problem(v->db, "change log: %s (%s)",
            rc == SYNC_ECORRUPT ? "damaged" : sync_strerror(rc),
            sync_env_errmsg(v->env));
    return;
  }
  for (t = 0; t < v->nt; t++)
    if (v->logl[t] != v->cnt[t]) {
      sync_table_def d;
      sync_env_table_def(v->env, t, &d);
      problem(v->db,
              "table '%s': the change log names %llu live rows, the "
              "table holds %llu",
              d.name, (unsigned long long)v->logl[t],
              (unsigned long long)v->cnt[t]);
    }
}

/* The tombstone count, and no peer past this replica's version. */
static void verify_peers(verify *v) {
  size_t n = 0, i;
  sync_peer_info p[256];
  uint64_t tn = 0;
  int rc;
  if ((rc = sync_tombstones(v->x, &tn)))
    problem(v->db, "tombstones unreadable: %s", sync_strerror(rc));
  else if (!problems && tn != v->tombs)
    problem(v->db, "%llu tombstones kept, the change log names %llu",
            (unsigned long long)tn, (unsigned long long)v->tombs);
  if ((rc = sync_peers_get(v->x, p, 256, &n))) {
    problem(v->db, "peer records: %s", sync_strerror(rc));
    return;
  }
  for (i = 0; i < n && i < 256; i++)
    if (p[i].acked_version > v->ver) {
      char s[33];
      ctl_hex_str(p[i].site, 16, s);
      problem(v->db,
              "peer %s acknowledged version %llu; this replica is at %llu", s,
              (unsigned long long)p[i].acked_version,
              (unsigned long long)v->ver);
    }
}

static void verify_conflicts(verify *v) {
  sync_conflicts *it;
  sync_conflict cf;
  int rc;
  if ((rc = sync_conflicts_open(v->x, 0, &it))) {
    problem(v->db, "conflict log unreadable: %s", sync_strerror(rc));
    return;
  }
  while ((rc = sync_conflicts_next(it, &cf)) == 0) v->nconf++;
  sync_conflicts_close(it);
  if (rc != SYNC_NOTFOUND)
    problem(v->db, "conflict log: %s", sync_strerror(rc));
}

/* The fold records read (sync_health counts them too, but a damaged
 * record is damage, not a health note). */
static void verify_folds(verify *v) {
  size_t n = 0;
  int rc;
  if ((rc = sync_folds_get(v->x, NULL, 0, &n)))
    problem(v->db, "fold records: %s",
            rc == SYNC_ECORRUPT ? "damaged" : sync_strerror(rc));
  v->folds = n;
}

/* The verdict as one JSON object. */
static int verify_json(const verify *v, const sync_health *h) {
  int rc = ctl_json_print(json_pack(
      "{sosbsOs{sbsIsIsb}sIsisIsIsIsI}", "db", ctl_json_str(v->db), "sound",
      !problems, "problems", problem_list, "health", "may_miss_deletes",
      h->may_miss_deletes != 0, "peers_stale", (json_int_t)h->peers_stale,
      "peers_behind_horizon", (json_int_t)h->peers_behind_horizon,
      "fold_pending", h->fold_pending != 0, "rows", (json_int_t)v->rows,
      "tables", (int)v->nt, "tombstones", (json_int_t)v->tombs, "logged",
      (json_int_t)v->logged, "conflicts", (json_int_t)v->nconf, "folds",
      (json_int_t)v->folds));
  json_decref(problem_list);
  problem_list = NULL;
  return rc ? rc : problems ? EX_FAIL : EX_OK;
}

/* The last lines: damaged, or health notes and sound. */
static int verify_verdict(const verify *v, const sync_health *health) {
  if (problem_list) return verify_json(v, health);
  if (problems) {
    printf("damaged: %d problem%s\n", problems, problems == 1 ? "" : "s");
    return EX_FAIL;
  }
  /* Not damage, but what an operator must know: deletes this replica
   * may lack, peers that will be told they are stale, and a retirement
   * whose cells are not all folded yet. */
  if (health->may_miss_deletes)
    printf("health: may miss deletes: %llu peer%s answered that this "
           "replica is behind its tombstone collection; reset that peer "
           "and sync again, or repair\n",
           (unsigned long long)health->peers_stale,
           health->peers_stale == 1 ? "" : "s");
  if (health->peers_behind_horizon)
    printf("health: %llu peer%s behind this replica's tombstone collection "
           "(their next pull is refused as stale)\n",
           (unsigned long long)health->peers_behind_horizon,
           health->peers_behind_horizon == 1 ? "" : "s");
  if (health->fold_pending)
    printf("health: a retired site's counter cells are not all folded "
           "into its heir's yet ('synctl gc %s' finishes it)\n",
           v->db);
  printf("%llu live rows in %u table%s, %llu tombstones, %llu rows in the "
         "change log, %llu "
         "conflicts recorded, %llu fold record%s: sound\n",
         (unsigned long long)v->rows, v->nt, v->nt == 1 ? "" : "s",
         (unsigned long long)v->tombs, (unsigned long long)v->logged,
         (unsigned long long)v->nconf, (unsigned long long)v->folds,
         v->folds == 1 ? "" : "s");
  return EX_OK;
}

/* The verdict on a file that could not be opened or read. */
static int verify_unread(const verify *v, int json, const char *what) {
  char b[64];
  snprintf(b, sizeof b, "cannot %s it", what);
  if (json)
    ctl_json_print(json_pack("{sosbs[s]}", "db", ctl_json_str(v->db), "sound",
                             0, "problems", b));
  else
    printf("damaged: cannot %s %s\n", what, v->db);
  return EX_FAIL;
}

const ctl_help ctl_help_verify = {
    "synctl verify DB [--json]", "check a database for damage",
    "Reads every row and checks its checksum, walks the change log and\n"
    "checks that it names every row once and agrees with the row counts,\n"
    "checks the tombstone count, that the version vector covers this\n"
    "replica's own writes, that peers acknowledged no version beyond this\n"
    "replica's, and that the conflict log and the fold records read.\n"
    "Prints each problem and a last line 'sound' (after the counts,\n"
    "fold records among them) or 'damaged: N problems'.  Exit status 0\n"
    "when sound, 1 when damaged (or unreadable).  Before 'sound',\n"
    "'health:' lines say what is not damage but needs an operator:\n"
    "deletes this replica may lack (a peer answered that it is behind\n"
    "that peer's tombstone collection: reset that peer and sync, or\n"
    "repair), peers behind this replica's own collection, and a fold\n"
    "pending (a site retired here, 'synctl retire', whose counter cells\n"
    "are not all folded yet: 'synctl gc' finishes it).  With --json, one\n"
    "object: db, sound (true or false), problems (the lines), health\n"
    "{may_miss_deletes, peers_stale, peers_behind_horizon,\n"
    "fold_pending}, rows, tables, tombstones, logged (rows in the change\n"
    "log), conflicts, folds (fold records).\n"};

int ctl_cmd_verify(int argc, char **argv) {
  sync_health health;
  verify v;
  unsigned t;
  int rc, json = ctl_has(argc, argv, "--json");
  char *db;
  if (ctl_args(argc, argv, &db, 1) != 1) return ctl_usage("give DB");
  /* Zeroed whole, not field by field: sync_health grows. */
  memset(&health, 0, sizeof health);
  memset(&v, 0, sizeof v);
  v.db = db;
  problems = 0;
  if (ctl_open_db(v.db, 1, &v.env)) return verify_unread(&v, json, "open");
  if (ctl_begin_ro(v.env, v.db, &v.x)) {
    sync_env_close(v.env);
    return verify_unread(&v, json, "read");
  }
  if (json && !(problem_list = json_array())) return EX_FAIL;
  sync_env_site_id(v.env, v.me);
  v.ver = sync_txn_version(v.x);
  v.nt = sync_env_table_count(v.env);
  v.cnt = (uint64_t *)calloc(v.nt + 1, sizeof *v.cnt);
  v.logl = (uint64_t *)calloc(v.nt + 1, sizeof *v.logl);
  verify_vv(&v);
  for (t = 0; t < v.nt; t++) verify_table(&v, t);
  verify_log(&v);
  verify_peers(&v);
  if ((rc = sync_health_get(v.x, &health)))
    problem(v.db, "health: %s", sync_strerror(rc));
  verify_conflicts(&v);
  verify_folds(&v);
  sync_txn_abort(v.x);
  sync_env_close(v.env);
  free(v.cnt);
  free(v.logl);
  return verify_verdict(&v, &health);
}

/* ---------------------------------------------------------------------
 * stats
 * ------------------------------------------------------------------- */
const ctl_help ctl_help_stats = {
    "synctl stats DB [--json] | synctl stats HOST:PORT [--json]",
    "print figures of a database or a running server",
    "For a database file: rows and tombstones per table, the local\n"
    "version, schema version, sites in the version vector, peers,\n"
    "unresolved conflicts, whether it may miss deletes, peers behind its\n"
    "tombstone collection, fold records (retired sites, 'synctl folds'),\n"
    "whether a fold is pending ('synctl gc' finishes it) and the file\n"
    "size.  For HOST:PORT, the metrics address of a running 'synctl\n"
    "serve --metrics', fetches and prints its Prometheus text (counters,\n"
    "latency histograms).\n\n"
    "With --json, for a file one object: db, tables [{name, rows,\n"
    "tombstones}], local_version, schema_version, schema_hash, sites,\n"
    "peers, open_conflicts, may_miss_deletes, peers_behind_gc, folds,\n"
    "fold_pending, file_size; for a server one JSON line per sample:\n"
    "name, labels {NAME: VALUE}, value (a number, or \"inf\", \"-inf\",\n"
    "\"nan\").\n"};

/* The figures stats prints of a database file. */
typedef struct stats_fig {
  unsigned nt;
  uint64_t *rows, *tomb, ver, sv, sh, nconf, size;
  size_t nvv, npeers;
  sync_health h;
  int have_h, have_size;
} stats_fig;

/* Tombstones per table, from the change log. */
static int stats_tombs(sync_txn *x, uint64_t *tomb) {
  sync_changes *it;
  sync_change ch;
  int rc;
  if ((rc = sync_changes_open(x, 0, &it)) == 0) {
    while ((rc = sync_changes_next(it, &ch)) == 0)
      if (!(ch.causal_length & 1)) tomb[ch.table]++;
    sync_changes_close(it);
  }
  return rc == SYNC_NOTFOUND ? 0 : rc;
}

static int stats_read(sync_env *env, sync_txn *x, const char *db,
                      stats_fig *f) {
  struct stat sb;
  unsigned t;
  int rc;
  f->nt = sync_env_table_count(env);
  f->tomb = (uint64_t *)calloc(f->nt + 1, sizeof *f->tomb);
  f->rows = (uint64_t *)calloc(f->nt + 1, sizeof *f->rows);
  if (!f->tomb || !f->rows)
    return ctl_lib_fail(env, db, SYNC_ENOMEM, "cannot count");
  if ((rc = stats_tombs(x, f->tomb)))
    return ctl_lib_fail(env, db, rc, "cannot read the change log");
  for (t = 0; t < f->nt; t++) sync_count(x, t, &f->rows[t]);
  f->ver = sync_txn_version(x);
  sync_env_schema_info(env, &f->sv, &f->sh);
  sync_vv_get(x, NULL, 0, &f->nvv);
  sync_peers_get(x, NULL, 0, &f->npeers);
  {
    sync_conflicts *it;
    sync_conflict c;
    if (sync_conflicts_open(x, SYNC_CONFLICTS_UNRESOLVED, &it) == 0) {
      while (sync_conflicts_next(it, &c) == 0) f->nconf++;
      sync_conflicts_close(it);
    }
  }
  f->have_h = sync_health_get(x, &f->h) == 0;
  if ((f->have_size = stat(db, &sb) == 0)) f->size = (uint64_t)sb.st_size;
  return EX_OK;
}

static int stats_json(sync_env *env, const char *db, const stats_fig *f) {
  json_t *tables = json_array(), *o;
  char hx[17];
  unsigned t;
  for (t = 0; t < f->nt; t++) {
    sync_table_def d;
    sync_env_table_def(env, t, &d);
    json_array_append_new(tables,
                          json_pack("{sosIsI}", "name", ctl_json_str(d.name),
                                    "rows", (json_int_t)f->rows[t],
                                    "tombstones", (json_int_t)f->tomb[t]));
  }
  snprintf(hx, sizeof hx, "%016llx", (unsigned long long)f->sh);
  o = json_pack("{sososIsIsssIsIsI}", "db", ctl_json_str(db), "tables", tables,
                "local_version", (json_int_t)f->ver, "schema_version",
                (json_int_t)f->sv, "schema_hash", hx, "sites",
                (json_int_t)f->nvv, "peers", (json_int_t)f->npeers,
                "open_conflicts", (json_int_t)f->nconf);
  if (o && f->have_h) {
    json_object_set_new(o, "may_miss_deletes",
                        json_boolean(f->h.may_miss_deletes));
    json_object_set_new(o, "peers_behind_gc",
                        json_integer((json_int_t)f->h.peers_behind_horizon));
    json_object_set_new(o, "folds", json_integer((json_int_t)f->h.folds));
    json_object_set_new(o, "fold_pending", json_boolean(f->h.fold_pending));
  }
  if (o && f->have_size)
    json_object_set_new(o, "file_size", json_integer((json_int_t)f->size));
  return ctl_json_print(o);
}

static void stats_text(sync_env *env, const stats_fig *f) {
  unsigned t;
  printf("%-12s %12s %12s\n", "table", "rows", "tombstones");
  for (t = 0; t < f->nt; t++) {
    sync_table_def d;
    sync_env_table_def(env, t, &d);
    printf("%-12s %12llu %12llu\n", d.name, (unsigned long long)f->rows[t],
           (unsigned long long)f->tomb[t]);
  }
  printf("local version      %llu\n", (unsigned long long)f->ver);
  printf("schema             version %llu, hash %016llx\n",
         (unsigned long long)f->sv, (unsigned long long)f->sh);
  printf("version vector     %zu site%s\n", f->nvv, f->nvv == 1 ? "" : "s");
  printf("peers              %zu\n", f->npeers);
  printf("open conflicts     %llu\n", (unsigned long long)f->nconf);
  if (f->have_h) {
    printf("missing deletes    %s\n",
           f->h.may_miss_deletes ? "maybe (a peer said this replica is behind "
                                   "its tombstone collection)"
                                 : "no");
    printf("peers behind gc    %llu\n",
           (unsigned long long)f->h.peers_behind_horizon);
    printf("fold records       %llu\n", (unsigned long long)f->h.folds);
    printf("fold pending       %s\n",
           f->h.fold_pending ? "yes (counter cells of a retired site still "
                               "to fold: 'synctl gc')"
                             : "no");
  }
  if (f->have_size)
    printf("file size          %llu bytes\n", (unsigned long long)f->size);
}

int ctl_cmd_stats(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  stats_fig f;
  char *db;
  int rc, json = ctl_has(argc, argv, "--json");
  if (ctl_args(argc, argv, &db, 1) != 1)
    return ctl_usage("give DB or HOST:PORT");
  if ((rc = ctl_peer_kind(db)) < 0) return EX_USAGE;
  if (rc) return ctl_stats_remote(db, json);
  if (ctl_open_db(db, 1, &env)) return EX_FAIL;
  if (ctl_begin_ro(env, db, &x)) {
    sync_env_close(env);
    return EX_FAIL;
  }
  memset(&f, 0, sizeof f);
  if ((rc = stats_read(env, x, db, &f)) == EX_OK) {
    if (json)
      rc = stats_json(env, db, &f);
    else
      stats_text(env, &f);
  }
  free(f.tomb);
  free(f.rows);
  sync_txn_abort(x);
  sync_env_close(env);
  return rc;
}
