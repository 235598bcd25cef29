/*
 * Counter folds: retire a site that has stopped for good, so that the
 * counter cells stop carrying it (sync_site_retire, then sync_env_gc to
 * fold the cells), and list the fold records a replica keeps
 * (sync_folds_get).  docs/FORMAT.md, "Folds", has the rules.  Each
 * command's manual page stands above it.
 */
#include "synctl.h"

#include <stdlib.h>
#include <string.h>

/* A site id as 'synctl vv' and 'synctl peers' print it: 32 hex digits
 * (either case).  -1 when s is not one. */
static int parse_site(const char *s, uint8_t out[16]) {
  size_t i;
  if (strlen(s) != 32) return -1;
  for (i = 0; i < 16; i++) {
    int h = ctl_hexval(s[2 * i]), l = ctl_hexval(s[2 * i + 1]);
    if (h < 0 || l < 0) return -1;
    out[i] = (uint8_t)(h * 16 + l);
  }
  return 0;
}

/* Every fold record of x, malloc'd into *out (NULL when there is none;
 * caller frees), their number in *n.  0 or a library code. */
static int read_folds(sync_txn *x, sync_fold **out, size_t *n) {
  sync_fold *f = NULL;
  size_t k = 0;
  int rc;
  *out = NULL;
  *n = 0;
  if ((rc = sync_folds_get(x, NULL, 0, &k))) return rc;
  if (!k) return 0;
  if (!(f = (sync_fold *)calloc(k, sizeof *f))) return SYNC_ENOMEM;
  if ((rc = sync_folds_get(x, f, k, &k))) {
    free(f);
    return rc;
  }
  *out = f;
  *n = k;
  return 0;
}

/* A fold record as JSON: site, heir, self (the heir is this replica),
 * hlc, time, held, held_time.  HLCs are below 2^63: json_int_t holds
 * them. */
static json_t *fold_json(const sync_fold *f, const uint8_t *me) {
  char site[33], heir[33], tb[48], hb[48];
  ctl_hex_str(f->site, 16, site);
  ctl_hex_str(f->heir, 16, heir);
  ctl_fmt_hlc(f->hlc, tb, sizeof tb);
  ctl_fmt_hlc(f->held, hb, sizeof hb);
  return json_pack("{sssssbsIsssIss}", "site", site, "heir", heir, "self",
                   !memcmp(f->heir, me, 16), "hlc", (json_int_t)f->hlc,
                   "time", tb, "held", (json_int_t)f->held, "held_time", hb);
}

/* ---------------------------------------------------------------------
 * retire
 * ------------------------------------------------------------------- */
const ctl_help ctl_help_retire = {
    "synctl retire DB SITE [--json]",
    "hand a stopped site's counter adds to this replica",
    "A counter cell keeps one contribution per site that added to it.\n"
    "retire hands site SITE's contributions to this replica, its heir,\n"
    "so that the cells stop carrying it: from then on this replica's own\n"
    "contribution to every counter cell holds the site's, and every\n"
    "replica drops the site's contribution where it meets this one's\n"
    "(they learn of it with their next sync).  The sums stay the same.\n"
    "The sites SITE was heir of are retired to this replica with it.\n"
    "SITE is a site id as 'synctl vv' and 'synctl peers' print it, 32 hex\n"
    "digits.\n"
    "\n"
    "Retire only a site that has stopped for good (a device taken out of\n"
    "service, an id a restored replica gave up) and only on a replica\n"
    "its last changes reached, usually the server it synced with (not a\n"
    "pg-bridge's --state replica: docs/PGBRIDGE.md).  Adds the site makes\n"
    "afterwards are dropped where they meet the heir's contribution, and\n"
    "a replica still using the id takes a new one at its next sync.\n"
    "\n"
    "retire records the fold (sync_site_retire) in one transaction, then\n"
    "folds the counter cells of this replica in batches, a transaction\n"
    "each, as 'synctl gc' does (sync_env_gc), which also collects the\n"
    "tombstones every peer has acknowledged.  If the folding is\n"
    "interrupted or fails, the retirement stands and 'synctl gc DB'\n"
    "finishes it; until then 'synctl verify' says a fold is pending.\n"
    "\n"
    "It fails (1), saying why, when SITE is this replica's own id, when\n"
    "this replica holds no change of SITE (it cannot be its heir: retire\n"
    "it where its changes are, or sync them here first), when SITE is\n"
    "retired already (here, or by a fold record a sync brought: 'synctl\n"
    "folds' lists them).\n"
    "\n"
    "Prints the site, this replica as its heir, the time of the\n"
    "retirement, up to when this replica held the site's changes, and\n"
    "the tombstones collected.  With --json, one object: site, heir,\n"
    "hlc, time, held, held_time (as 'synctl folds --json' prints a\n"
    "record), also (the sites retired with it), collected.\n"
    "\n"
    "Example:\n"
    "    synctl retire server.db 0a0b0c0d0e0f10111213141516171819\n"};

/* Words for each way sync_site_retire refuses (x is still open: an
 * EEXIST names the heir of the record that stands).  Returns
 * EX_FAIL. */
static int retire_refused(sync_env *env, sync_txn *x, const char *db,
                          const char *hex, const uint8_t *site, int rc) {
  sync_fold *f = NULL, *rec = NULL;
  size_t n = 0, i;
  uint8_t me[16];
  char heir[33], tb[48];
  switch (rc) {
  case SYNC_EINVAL:
    ctl_say("%s: %s is this replica's own site id: a replica cannot "
            "retire itself (retire a site on another replica that holds "
            "its changes)",
            db, hex);
    return EX_FAIL;
  case SYNC_NOTFOUND:
    ctl_say("%s: holds no change of site %s, so it cannot be its heir: "
            "retire it on the replica its last changes reached, or sync "
            "them here first ('synctl vv %s' lists the sites it holds "
            "changes of)",
            db, hex, db);
    return EX_FAIL;
  case SYNC_EEXIST:
    sync_env_site_id(env, me);
    if (read_folds(x, &f, &n) == 0)
      for (i = 0; i < n && !rec; i++)
        if (!memcmp(f[i].site, site, 16)) rec = &f[i];
    if (rec) {
      ctl_hex_str(rec->heir, 16, heir);
      ctl_fmt_hlc(rec->hlc, tb, sizeof tb);
      ctl_say("%s: site %s is retired already, to %s%s at %s ('synctl "
              "folds %s' lists the fold records)",
              db, hex, heir, !memcmp(rec->heir, me, 16) ? " (this replica)" : "",
              tb, db);
    } else
      ctl_say("%s: site %s is retired already ('synctl folds %s' lists "
              "the fold records)",
              db, hex, db);
    free(f);
    return EX_FAIL;
  default: return ctl_lib_fail(env, db, rc, "cannot retire the site");
  }
}

/* What retire prints once the fold is recorded and the cells folded:
 * the record of site, and those retired with it (the records this
 * replica made in the same transaction, whose heir it was). */
static int retire_report(sync_env *env, const char *db, const uint8_t *site,
                         uint64_t collected, int json) {
  sync_txn *x;
  sync_fold *f = NULL, *rec = NULL;
  size_t n = 0, i;
  uint8_t me[16];
  json_t *also = NULL, *o;
  char shx[33], mhx[33], hx[33], tb[48], hb[48];
  int rc, ret = EX_FAIL;
  sync_env_site_id(env, me);
  ctl_hex_str(site, 16, shx);
  ctl_hex_str(me, 16, mhx);
  if (ctl_begin_ro(env, db, &x)) return EX_FAIL;
  rc = read_folds(x, &f, &n);
  sync_txn_abort(x);
  if (rc) return ctl_lib_fail(env, db, rc, "cannot read the fold records");
  for (i = 0; i < n && !rec; i++)
    if (!memcmp(f[i].site, site, 16) && !memcmp(f[i].heir, me, 16))
      rec = &f[i];
  if (!rec) {
    /* Committed, so only a writer in between could have changed it. */
    ctl_say("%s: the fold record of %s is not there after the retirement",
            db, shx);
    free(f);
    return EX_FAIL;
  }
  if (json && !(also = json_array())) goto out;
  ctl_fmt_hlc(rec->hlc, tb, sizeof tb);
  ctl_fmt_hlc(rec->held, hb, sizeof hb);
  if (!json)
    printf("retired %s to this replica, %s, at %s\n"
           "this replica held the site's changes up to %s\n",
           shx, mhx, tb, hb);
  /* The sites whose heir SITE was: their records were made here in the
   * same transaction (this heir, the same HLC). */
  for (i = 0; i < n; i++) {
    if (&f[i] == rec || memcmp(f[i].heir, me, 16) || f[i].hlc != rec->hlc)
      continue;
    ctl_hex_str(f[i].site, 16, hx);
    if (json)
      json_array_append_new(also, json_string(hx));
    else
      printf("also retired, as %s was its heir: %s\n", shx, hx);
  }
  if (json) {
    if ((o = fold_json(rec, me))) {
      json_object_set_new(o, "also", also);
      json_object_set_new(o, "collected", json_integer((json_int_t)collected));
      also = NULL;
    }
    ret = ctl_json_print(o);
  } else {
    printf("counter cells folded; %llu tombstone%s collected\n",
           (unsigned long long)collected, collected == 1 ? "" : "s");
    ret = EX_OK;
  }
out:
  json_decref(also);
  free(f);
  return ret;
}

int ctl_cmd_retire(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  uint8_t site[16];
  uint64_t collected = 0;
  char *pos[2];
  int rc, ret = EX_FAIL, json = ctl_has(argc, argv, "--json");
  if (ctl_args(argc, argv, pos, 2) != 2) return ctl_usage("give DB SITE");
  if (parse_site(pos[1], site))
    return ctl_usage("'%s' is not a site id: give its 32 hex digits, as "
                     "'synctl vv' and 'synctl peers' print them",
                     pos[1]);
  if (ctl_open_db(pos[0], 0, &env)) return EX_FAIL;
  if ((rc = sync_txn_begin(env, 0, &x))) {
    ctl_lib_fail(env, pos[0], rc, "cannot begin");
    goto out;
  }
  if ((rc = sync_site_retire(x, site))) {
    char hex[33];
    ctl_hex_str(site, 16, hex); /* as vv prints it, whatever the case */
    retire_refused(env, x, pos[0], hex, site, rc);
    sync_txn_abort(x);
    goto out;
  }
  if ((rc = sync_txn_commit(x))) {
    ctl_lib_fail(env, pos[0], rc, "commit failed");
    goto out;
  }
  /* The retirement is committed; the cells fold in gc's batches. */
  if ((rc = sync_env_gc(env, &collected))) {
    ctl_lib_fail(env, pos[0], rc, "folding the counter cells failed");
    ctl_say("%s: the site is retired; 'synctl gc %s' finishes folding its "
            "counter cells",
            pos[0], pos[0]);
    goto out;
  }
  ret = retire_report(env, pos[0], site, collected, json);
out:
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * folds
 * ------------------------------------------------------------------- */
const ctl_help ctl_help_folds = {
    "synctl folds DB [--json]", "list the retired sites and their heirs",
    "Lists the fold records this replica keeps, one per retired site and\n"
    "heir, sorted by site: 'synctl retire' makes them on the heir, and\n"
    "syncs bring them to the replicas whose counter cells need them.\n"
    "Each line: the retired site, its heir (marked when it is this\n"
    "replica), the time of the retirement (the heir's HLC then) and up\n"
    "to when the heir held the site's changes.  The last line counts the\n"
    "records and says whether this replica still has counter cells to\n"
    "fold ('synctl gc' goes on with them).  With --json, one object per\n"
    "record: site, heir, self (true when the heir is this replica), hlc,\n"
    "time, held, held_time.\n"};

static int folds_read(sync_env *env, sync_txn *x, const char *db, void *ctx) {
  sync_fold *f = NULL;
  sync_health h;
  size_t n = 0, i;
  uint8_t me[16];
  int rc, json = ctx != NULL;
  memset(&h, 0, sizeof h);
  sync_env_site_id(env, me);
  if ((rc = read_folds(x, &f, &n)) || (!json && (rc = sync_health_get(x, &h))))
    return ctl_lib_fail(env, db, rc, "cannot read the fold records");
  if (!json && n)
    printf("%-32s  %-32s  %-29s  %s\n", "site", "heir", "retired",
           "held up to");
  for (i = 0; i < n; i++) {
    char site[33], heir[33], tb[48], hb[48];
    int self = !memcmp(f[i].heir, me, 16);
    if (json) {
      if (ctl_json_print(fold_json(&f[i], me))) break;
      continue;
    }
    ctl_hex_str(f[i].site, 16, site);
    ctl_hex_str(f[i].heir, 16, heir);
    ctl_fmt_hlc(f[i].hlc, tb, sizeof tb);
    ctl_fmt_hlc(f[i].held, hb, sizeof hb);
    printf("%s  %s  %-29s  %s%s\n", site, heir, tb, hb,
           self ? "  (heir: this replica)" : "");
  }
  if (!json)
    printf("%zu fold record%s%s\n", n, n == 1 ? "" : "s",
           h.fold_pending ? "; counter cells still to fold here ('synctl gc' "
                            "goes on with them)"
                          : "");
  free(f);
  return i < n ? EX_FAIL : EX_OK;
}

int ctl_cmd_folds(int argc, char **argv) {
  char *db = NULL;
  int json = ctl_has(argc, argv, "--json");
  if (ctl_args(argc, argv, &db, 1) != 1) return ctl_usage("give DB");
  return ctl_read_db(db, folds_read, json ? &json : NULL);
}
