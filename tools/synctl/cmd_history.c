/*
 * synctl history and restore: row history (docs/API.md, "Row history"):
 * turn it on for a table and set its retention, list the versions of one
 * row, and put a table back as it was at a point.  dump --as-of reads
 * the same points (ctl_parse_asof).
 */
#include "synctl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Days from 1970-01-01 to the date y-m-d of the proleptic Gregorian
 * calendar (Howard Hinnant's days_from_civil): timegm is not POSIX. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

int ctl_parse_asof(const char *s, int *kind, uint64_t *at) {
  int y, mo, d, h, mi, sec, n = 0;
  unsigned ms = 0;
  if (!s || !*s) return -1;
  if (s[0] == '@') {
    *kind = SYNC_ASOF_TIME;
    return ctl_parse_u64(s + 1, at);
  }
  if (strchr(s, 'T')) {
    int64_t t;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
               &n) != 6)
      return -1;
    s += n;
    if (*s == '.') {
      unsigned scale = 100;
      for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
        ms += scale * (unsigned)(*s - '0');
    }
    if (strcmp(s, "Z") || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
        h > 23 || mi > 59 || sec > 60)
      return -1;
    t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
        mi * 60 + sec;
    *kind = SYNC_ASOF_TIME;
    *at = (uint64_t)t * 1000 + ms;
    return 0;
  }
  *kind = SYNC_ASOF_VERSION;
  return ctl_parse_u64(s, at);
}

/* A time in ms as an ISO-8601 UTC time with milliseconds; "-" for 0. */
static void fmt_ms(uint64_t ms, char *out, size_t cap) {
  time_t sec = (time_t)(ms / 1000);
  struct tm tm;
  char b[32];
  if (!ms) {
    snprintf(out, cap, "-");
    return;
  }
  gmtime_r(&sec, &tm);
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%03uZ", b, (unsigned)(ms % 1000));
}

static const char *origin_name(int o) {
  return o == SYNC_ORIGIN_LOCAL ? "local"
         : o == SYNC_ORIGIN_PEER ? "peer"
                                 : "unknown";
}

const ctl_help ctl_help_history = {
    "synctl history DB TABLE KEY [--json]\n"
    "synctl history DB TABLE [--versions N] [--max-age MS] [--off] [--json]",
    "row history: versions of a row, retention",
    "With KEY, lists the versions of row KEY that TABLE keeps, newest\n"
    "first: the local version that made each, its commit time (UTC; '-'\n"
    "when unknown), whether it was a local write or applied from a peer\n"
    "('unknown' for versions made before history was on and for the\n"
    "oldest one a retention rule kept), live or deleted, the site that\n"
    "made it, and its values as 'column=value'.  With --json one object\n"
    "per version: version, time_ms, origin, deleted, site (hex) and row\n"
    "(the values as 'synctl dump --json' writes them; null for a\n"
    "delete).  Exit status 3 when the table holds no row KEY.\n"
    "\n"
    "Without KEY, sets or shows the history of TABLE.  --versions N keeps\n"
    "N versions per row (the current one included; 0: no limit) and\n"
    "--max-age MS drops versions replaced more than MS milliseconds ago\n"
    "(0: no limit); either turns history on, starting from now.  --off\n"
    "turns it off and removes every version kept.  With neither, prints\n"
    "the retention (exit status 3 when the table keeps no history).\n"
    "History is this replica's own: it is not replicated.  Points in the\n"
    "past ('synctl dump --as-of', 'synctl restore') are local versions\n"
    "(a number), times in ms since 1970 ('@MS') or UTC times\n"
    "('2026-12-06T07:00:00.000Z').\n"};

static int history_show(sync_env *env, const char *db, unsigned t, int json) {
  sync_history_opts o;
  sync_table_def d;
  int rc;
  sync_env_table_def(env, t, &d);
  rc = sync_env_history(env, t, &o);
  if (rc == SYNC_NOTFOUND) {
    if (json)
      return ctl_json_print(json_pack("{sssb}", "table", d.name, "history", 0));
    printf("table '%s' keeps no history\n", d.name);
    return EX_NOTFOUND;
  }
  if (rc) return ctl_lib_fail(env, db, rc, "cannot read the settings");
  if (json)
    return ctl_json_print(json_pack("{sssbsIsI}", "table", d.name, "history",
                                    1, "versions",
                                    (json_int_t)o.max_versions, "max_age_ms",
                                    (json_int_t)o.max_age_ms));
  printf("table '%s' keeps history: versions %llu, max age %llu ms "
         "(0: no limit)\n",
         d.name, (unsigned long long)o.max_versions,
         (unsigned long long)o.max_age_ms);
  return EX_OK;
}

static int history_list(sync_env *env, const char *db, unsigned t,
                        const char *ks, int json) {
  sync_table_def d;
  sync_value vals[MAXC];
  sync_versions *it = NULL;
  sync_version v;
  ctl_keybuf k;
  sync_txn *x;
  unsigned i, n = 0;
  int rc, ret = EX_FAIL;
  if (ctl_parse_key(env, db, t, ks, &k)) return EX_FAIL;
  sync_env_table_def(env, t, &d);
  if (ctl_begin_ro(env, db, &x)) return EX_FAIL;
  if ((rc = sync_versions_open(x, t, k.b, k.n, &it))) {
    ctl_lib_fail(env, db, rc, "cannot read the history");
    goto out;
  }
  while ((rc = sync_versions_next(it, &v, vals, d.ncolumns)) == 0) {
    char tb[40], site[33];
    fmt_ms(v.time_ms, tb, sizeof tb);
    ctl_hex_str(v.site, 16, site);
    n++;
    if (json) {
      json_t *o = json_pack("{sIsIsssbss}", "version", (json_int_t)v.version,
                            "time_ms", (json_int_t)v.time_ms, "origin",
                            origin_name(v.origin), "deleted", v.deleted,
                            "site", site);
      if (o) json_object_set_new(o, "row", v.deleted ? json_null()
                                                     : ctl_json_row(&d, k.b,
                                                                    k.n, vals));
      if (ctl_json_print(o)) {
        rc = SYNC_ENOMEM;
        break;
      }
      continue;
    }
    printf("%-8llu %-24s %-7s %-7s %s", (unsigned long long)v.version, tb,
           origin_name(v.origin), v.deleted ? "deleted" : "live", site);
    for (i = 0; !v.deleted && i < d.ncolumns; i++) {
      printf(" %s=", d.columns[i].name);
      ctl_put_value(stdout, &vals[i]);
    }
    printf("\n");
  }
  if (rc != SYNC_NOTFOUND && rc != SYNC_ENOMEM) {
    ctl_lib_fail(env, db, rc, "cannot read the history");
  } else if (rc == SYNC_NOTFOUND && n == 0) {
    ctl_say("%s: table '%s' has no row '%s'", db, d.name, ks);
    ret = EX_NOTFOUND;
  } else if (rc == SYNC_NOTFOUND) {
    ret = EX_OK;
  }
out:
  sync_versions_close(it);
  sync_txn_abort(x);
  return ret;
}

int ctl_cmd_history(int argc, char **argv) {
  sync_env *env;
  sync_history_opts o = {0, 0};
  char *pos[3];
  unsigned t;
  int i, np, set = 0, off = 0, ret = EX_FAIL, rc,
             json = ctl_has(argc, argv, "--json");
  for (i = 0; i < argc; i++) {
    if (ctl_opt(i, argv[i], "--versions")) {
      if (i + 1 == argc || ctl_parse_u64(argv[++i], &o.max_versions))
        return ctl_usage("--versions needs a number of versions");
      set = 1;
    } else if (ctl_opt(i, argv[i], "--max-age")) {
      if (i + 1 == argc || ctl_parse_u64(argv[++i], &o.max_age_ms))
        return ctl_usage("--max-age needs milliseconds (a number)");
      set = 1;
    } else if (ctl_opt(i, argv[i], "--off")) {
      off = 1;
    }
  }
  np = ctl_args(argc, argv, pos, 3);
  if (np < 2 || np > 3) return ctl_usage("give DB TABLE [KEY]");
  if (np == 3 && (set || off))
    return ctl_usage("--versions, --max-age and --off set a table's history: "
                     "give no KEY");
  if (set && off) return ctl_usage("--off turns history off: no limits then");
  if (ctl_open_db(pos[0], np == 3 || !(set || off), &env)) return EX_FAIL;
  if (ctl_find_table(env, pos[0], pos[1], &t)) goto out;
  if (np == 3) {
    ret = history_list(env, pos[0], t, pos[2], json);
  } else if (set || off) {
    if ((rc = sync_env_set_history(env, t, off ? NULL : &o)))
      ctl_lib_fail(env, pos[0], rc, "cannot set the history");
    else
      ret = history_show(env, pos[0], t, json);
    if (off && ret == EX_NOTFOUND) ret = EX_OK;
  } else {
    ret = history_show(env, pos[0], t, json);
  }
out:
  sync_env_close(env);
  return ret;
}

const ctl_help ctl_help_restore = {
    "synctl restore DB TABLE --as-of POINT [--json]",
    "put a table back as it was",
    "Writes TABLE back to its state at POINT (a local version, '@MS' or a\n"
    "UTC time; see 'synctl history'): rows whose values differ are\n"
    "written with their values then, rows that did not exist then are\n"
    "deleted, in one transaction.  These are ordinary writes of this\n"
    "replica, so the restore reaches its peers with the next sync.  A\n"
    "counter is brought back by adding the difference, so adds made\n"
    "meanwhile on other replicas count on top of its value then.\n"
    "Prints how many rows were written, or with --json {\"table\",\n"
    "\"rows\"}.  A point before what the table's history keeps fails\n"
    "and writes nothing.\n"};

int ctl_cmd_restore(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  char *pos[2];
  const char *asof = NULL;
  uint64_t at = 0, changed = 0;
  unsigned t;
  int i, kind = 0, rc, ret = EX_FAIL, json = ctl_has(argc, argv, "--json");
  for (i = 0; i + 1 < argc; i++)
    if (ctl_opt(i, argv[i], "--as-of")) asof = argv[++i];
  if (ctl_args(argc, argv, pos, 2) != 2) return ctl_usage("give DB TABLE");
  if (!asof || ctl_parse_asof(asof, &kind, &at))
    return ctl_usage("--as-of needs a local version, @MS or a UTC time "
                     "(YYYY-MM-DDTHH:MM:SS[.mmm]Z)");
  if (ctl_open_db(pos[0], 0, &env)) return EX_FAIL;
  if (ctl_find_table(env, pos[0], pos[1], &t)) goto out;
  if ((rc = sync_txn_begin(env, 0, &x))) {
    ctl_lib_fail(env, pos[0], rc, "cannot begin");
    goto out;
  }
  if ((rc = sync_table_restore(x, t, kind, at, &changed))) {
    ctl_lib_fail(env, pos[0], rc, "cannot restore");
    sync_txn_abort(x);
    goto out;
  }
  if ((rc = sync_txn_commit(x))) {
    ctl_lib_fail(env, pos[0], rc, "commit failed");
    goto out;
  }
  if (json)
    ret = ctl_json_print(
        json_pack("{sssI}", "table", pos[1], "rows", (json_int_t)changed));
  else {
    printf("restored %llu rows of '%s'\n", (unsigned long long)changed, pos[1]);
    ret = EX_OK;
  }
out:
  sync_env_close(env);
  return ret;
}
