/*
 * The conflict log and the rejection log: list, show, and mark resolved
 * or clear.  Both commands are one log_command over a different log;
 * their manual pages stand with them at the end.
 */
#include "synctl.h"

#include <string.h>

/* --json: each entry listed as a JSON line, show and the writes as one
 * object. */
static int json_out;

/* resolve and resolve-all, clear and clear-all: one write transaction
 * that marks the entry ID or every entry. */
typedef struct log_write {
  const char *noun;                /* "no conflict ID" */
  const char *one_name, *all_name; /* "resolve", "resolve-all" */
  const char *failed; /* what lib_fail says when the library refuses */
  int (*one)(sync_txn *x, uint64_t id);
  int (*all)(sync_txn *x, uint64_t *n);
  /* What it did: "conflict 7 resolved", "marked 2 conflicts resolved";
   * "rejection 7 cleared", "cleared 2 rejections". */
  const char *did, *all_pre, *all_post;
} log_write;

static int log_write_run(sync_env *env, const char *db, const log_write *w,
                         int all, uint64_t id) {
  sync_txn *x;
  uint64_t n = 0;
  int rc;
  if ((rc = sync_txn_begin(env, 0, &x)))
    return ctl_lib_fail(env, db, rc, "cannot begin");
  rc = all ? w->all(x, &n) : w->one(x, id);
  if (rc == SYNC_NOTFOUND) {
    ctl_say("%s: no %s %llu", db, w->noun, (unsigned long long)id);
    sync_txn_abort(x);
    return EX_NOTFOUND;
  }
  if (rc) {
    ctl_lib_fail(env, db, rc, w->failed);
    sync_txn_abort(x);
    return EX_FAIL;
  }
  if ((rc = sync_txn_commit(x)))
    return ctl_lib_fail(env, db, rc, "commit failed");
  if (json_out && all)
    return ctl_json_print(json_pack(
        "{sI}", w->one_name[0] == 'r' ? "resolved" : "cleared", (json_int_t)n));
  if (json_out)
    return ctl_json_print(json_pack("{sIsb}", "id", (json_int_t)id, w->did, 1));
  if (all)
    printf("%s%llu %s%s%s\n", w->all_pre, (unsigned long long)n, w->noun,
           n == 1 ? "" : "s", w->all_post);
  else
    printf("%s %llu %s\n", w->noun, (unsigned long long)id, w->did);
  return EX_OK;
}

static const log_write RESOLVE = {"conflict",
                                  "resolve",
                                  "resolve-all",
                                  "cannot resolve",
                                  sync_conflict_resolve,
                                  sync_conflicts_resolve_all,
                                  "resolved",
                                  "marked ",
                                  " resolved"};

static const log_write CLEAR = {
    "rejection",    "clear",           "clear-all",
    "cannot clear", sync_reject_clear, sync_rejects_clear,
    "cleared",      "cleared ",        ""};

static const char *kind_name(int k) {
  switch (k) {
  case SYNC_BOTH_MODIFIED: return "both-modified";
  case SYNC_DELETED_SOURCE: return "deleted-remote";
  case SYNC_DELETED_TARGET: return "deleted-local";
  default: return "other";
  }
}

/* A stamp as JSON: hlc, time, site. */
static json_t *stamp_json(const sync_stamp *s) {
  char hb[48], site[33];
  ctl_fmt_hlc(s->hlc, hb, sizeof hb);
  ctl_hex_str(s->site, 16, site);
  return json_pack("{sIssss}", "hlc", (json_int_t)s->hlc, "time", hb, "site",
                   site);
}

/* One conflict as JSON; with show, both values and stamps. */
static json_t *conflict_json(sync_env *env, const sync_conflict *c, int show) {
  sync_table_def d;
  json_t *o;
  sync_env_table_def(env, c->table, &d);
  o = json_pack(
      "{sIsssosososssb}", "id", (json_int_t)c->id, "kind", kind_name(c->kind),
      "table", ctl_json_str(d.name), "key",
      ctl_json_key(d.key_type, (const unsigned char *)c->key.data, c->key.len),
      "column",
      c->column != SYNC_ROW && c->column < d.ncolumns
          ? ctl_json_str(d.columns[c->column].name)
          : json_null(),
      "won", c->remote_won ? "remote" : "local", "resolved", c->resolved != 0);
  if (o && show) {
    json_object_set_new(o, "local", ctl_json_of(&c->local));
    json_object_set_new(o, "local_stamp", stamp_json(&c->local_stamp));
    json_object_set_new(o, "remote", ctl_json_of(&c->remote));
    json_object_set_new(o, "remote_stamp", stamp_json(&c->remote_stamp));
  }
  return o;
}

static void conflict_line(sync_env *env, const sync_conflict *c) {
  sync_table_def d;
  size_t kw;
  const char *col = "(row)";
  if (json_out) {
    ctl_json_print(conflict_json(env, c, 0));
    return;
  }
  sync_env_table_def(env, c->table, &d);
  if (c->column != SYNC_ROW && c->column < d.ncolumns)
    col = d.columns[c->column].name;
  printf("%-6llu %-15s %-12s ", (unsigned long long)c->id, kind_name(c->kind),
         d.name);
  kw = ctl_put_key(stdout, d.key_type, (const unsigned char *)c->key.data,
                   c->key.len);
  printf("%*s %-12s %-7s %s\n", (int)(kw < 16 ? 16 - kw : 0), "", col,
         c->remote_won ? "remote" : "local", c->resolved ? "resolved" : "open");
}

/* One command on a log: DB [list | show ID | ONE ID | ALL]. */
typedef struct log_cmd {
  const log_write *write;
  int list_all;     /* list takes --all: resolved entries too */
  const char *what; /* lib_fail's words when the log cannot be read */
  /* Prints the entries (show: the entry id alone), counting them in
   * *found, and for a list the count line.  Returns 0 or SYNC_NOTFOUND
   * when it read the log, else the library's code. */
  int (*read)(sync_env *env, sync_txn *x, int show, int every, uint64_t id,
              int *found);
} log_cmd;

/* The subcommand's arguments (pos, n of them: DB, the subcommand, its
 * ID): EX_OK, or the exit status of a usage error (said). */
static int log_args(int n, char **pos, const log_cmd *lc, uint64_t *id,
                    int every) {
  const log_write *w = lc->write;
  const char *sub = n > 1 ? pos[1] : "list";
  if (!strcmp(sub, "list")) {
    if (n > 2) return ctl_usage("list takes no arguments");
  } else if (every) {
    return ctl_usage("--all goes with list");
  } else if (!strcmp(sub, "show") || !strcmp(sub, w->one_name)) {
    if (n != 3 || ctl_parse_u64(pos[2], id))
      return ctl_usage("%s needs a %s ID", sub, w->noun);
  } else if (!strcmp(sub, w->all_name)) {
    if (n != 2) return ctl_usage("%s takes no arguments", sub);
  } else {
    return ctl_usage("unknown subcommand '%s' (list, show, %s, %s)", sub,
                     w->one_name, w->all_name);
  }
  return EX_OK;
}

/* list or show, in a read transaction. */
static int log_read(sync_env *env, const char *db, const log_cmd *lc, int show,
                    int every, uint64_t id) {
  sync_txn *x;
  int rc, found = 0, ret = EX_OK;
  if (ctl_begin_ro(env, db, &x)) return EX_FAIL;
  rc = lc->read(env, x, show, every, id, &found);
  if (rc != SYNC_NOTFOUND && rc != 0) {
    ret = ctl_lib_fail(env, db, rc, lc->what);
  } else if (show && !found) {
    ctl_say("%s: no %s %llu", db, lc->write->noun, (unsigned long long)id);
    ret = EX_NOTFOUND;
  }
  sync_txn_abort(x);
  return ret;
}

static int log_command(int argc, char **argv, const log_cmd *lc) {
  sync_env *env;
  const char *db, *sub;
  uint64_t id = 0;
  char *pos[3];
  int every = ctl_has(argc, argv, "--all"), ret, n;
  json_out = ctl_has(argc, argv, "--json");
  if ((n = ctl_args(argc, argv, pos, 3)) < 1) return ctl_usage("give DB");
  if (n > 3) return ctl_usage("too many arguments");
  db = pos[0];
  sub = n > 1 ? pos[1] : "list";
  if ((ret = log_args(n, pos, lc, &id, every)) != EX_OK) return ret;
  if (ctl_open_db(db, !strcmp(sub, "list") || !strcmp(sub, "show"), &env))
    return EX_FAIL;
  if (strcmp(sub, "list") && strcmp(sub, "show"))
    ret = log_write_run(env, db, lc->write, !strcmp(sub, lc->write->all_name),
                        id);
  else
    ret = log_read(env, db, lc, !strcmp(sub, "show"), every, id);
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * conflicts
 * ------------------------------------------------------------------- */
static void conflict_show(sync_env *env, const sync_conflict *c) {
  char hl[48], hr[48], sl[33], sr[33];
  if (json_out) {
    ctl_json_print(conflict_json(env, c, 1));
    return;
  }
  ctl_fmt_hlc(c->local_stamp.hlc, hl, sizeof hl);
  ctl_fmt_hlc(c->remote_stamp.hlc, hr, sizeof hr);
  ctl_hex_str(c->local_stamp.site, 16, sl);
  ctl_hex_str(c->remote_stamp.site, 16, sr);
  conflict_line(env, c);
  printf("  local:  ");
  ctl_put_value(stdout, &c->local);
  printf("   written %s by %s\n  remote: ", hl, sl);
  ctl_put_value(stdout, &c->remote);
  printf("   written %s by %s\n  kept:   the %s value\n", hr, sr,
         c->remote_won ? "remote" : "local");
}

static int conflicts_read(sync_env *env, sync_txn *x, int show, int every,
                          uint64_t id, int *found) {
  sync_conflicts *it;
  sync_conflict c;
  int rc = sync_conflicts_open(
      x, !show && !every ? SYNC_CONFLICTS_UNRESOLVED : 0, &it);
  if (rc) return rc;
  if (!show && !json_out)
    printf("%-6s %-15s %-12s %-16s %-12s %-7s %s\n", "id", "kind", "table",
           "key", "column", "won", "state");
  while ((rc = sync_conflicts_next(it, &c)) == 0) {
    if (!show) {
      conflict_line(env, &c);
      ++*found;
    } else if (c.id == id) {
      *found = 1;
      conflict_show(env, &c);
      break;
    }
  }
  sync_conflicts_close(it);
  if (!show && !json_out && (rc == 0 || rc == SYNC_NOTFOUND))
    printf("%d %sconflict%s\n", *found, every ? "" : "unresolved ",
           *found == 1 ? "" : "s");
  return rc;
}

/* ---------------------------------------------------------------------
 * rejected
 * ------------------------------------------------------------------- */
static const char *reason_name(int r, char *buf, size_t cap) {
  switch (r) {
  case SYNC_REFUSE_TABLE: return "table";
  case SYNC_REFUSE_RELAY: return "relay";
  case SYNC_REFUSE_FUTURE: return "future";
  default: snprintf(buf, cap, "app:%d", r); return buf;
  }
}

/* One entry as a JSON line; with show, the values that were refused
 * (an empty object for a delete). */
static void reject_json(const sync_table_def *d, const sync_reject *e,
                        int show) {
  char rb[16];
  json_t *o = json_pack(
      "{sIsosossssso}", "id", (json_int_t)e->id, "table", ctl_json_str(d->name),
      "key",
      ctl_json_key(d->key_type, (const unsigned char *)e->key.data, e->key.len),
      "reason", reason_name(e->reason, rb, sizeof rb), "state",
      e->reverted ? "reverted" : "kept", "text",
      json_stringn_nocheck(e->text ? e->text : "", e->text_len));
  if (o && show) {
    json_t *v = json_object();
    unsigned i;
    for (i = 0; v && i < e->ncolumns; i++)
      json_object_set_new(v, i < d->ncolumns ? d->columns[i].name : "?",
                          ctl_json_of(&e->values[i]));
    json_object_set_new(o, "values", v);
  }
  ctl_json_print(o);
}

/* One entry's line; with show, the values that were refused. */
static void reject_line(sync_env *env, const sync_reject *e, int show) {
  sync_table_def d;
  char rb[16];
  size_t kw;
  unsigned i;
  memset(&d, 0, sizeof d);
  d.name = "?";
  sync_env_table_def(env, e->table, &d);
  if (json_out) {
    reject_json(&d, e, show);
    return;
  }
  printf("%-6llu %-12s ", (unsigned long long)e->id, d.name);
  kw = ctl_put_key(stdout, d.key_type, (const unsigned char *)e->key.data,
                   e->key.len);
  printf("%*s %-8s %-8s %.*s\n", (int)(kw < 16 ? 16 - kw : 0), "",
         reason_name(e->reason, rb, sizeof rb),
         e->reverted ? "reverted" : "kept", (int)e->text_len, e->text);
  if (!show) return;
  if (!e->ncolumns) printf("  refused: a delete\n");
  for (i = 0; i < e->ncolumns; i++) {
    printf("  %s = ", i < d.ncolumns ? d.columns[i].name : "?");
    ctl_put_value(stdout, &e->values[i]);
    printf("\n");
  }
}

static int rejects_read(sync_env *env, sync_txn *x, int show, int every,
                        uint64_t id, int *found) {
  sync_rejects *it;
  sync_reject e;
  int rc = sync_rejects_open(x, &it);
  (void)every;
  if (rc) return rc;
  if (!json_out)
    printf("%-6s %-12s %-16s %-8s %-8s %s\n", "id", "table", "key", "reason",
           "state", "text");
  while ((rc = sync_rejects_next(it, &e)) == 0) {
    if (show && e.id != id) continue;
    reject_line(env, &e, show);
    ++*found;
    if (show) break;
  }
  sync_rejects_close(it);
  if (!show && !json_out && (rc == 0 || rc == SYNC_NOTFOUND))
    printf("%d rejected write%s\n", *found, *found == 1 ? "" : "s");
  return rc;
}

/* ---------------------------------------------------------------------
 * The commands
 * ------------------------------------------------------------------- */
static const log_cmd CONFLICTS = {&RESOLVE, 1, "cannot read the conflict log",
                                  conflicts_read};
static const log_cmd REJECTED = {&CLEAR, 0, "cannot read the rejection log",
                                 rejects_read};

const ctl_help ctl_help_conflicts = {
    "synctl conflicts DB [list [--all] | show ID | resolve ID | resolve-all]\n"
    "       [--json]",
    "list and resolve recorded conflicts",
    "list (the default) prints the unresolved conflicts (all of them with\n"
    "--all): id, kind, table, key, column and which side won.  show prints\n"
    "one with both values and stamps.  resolve marks one resolved (exit\n"
    "status 3 if there is no such id); resolve-all marks every one.  The\n"
    "outcome already applied stays: marking only records that a person or\n"
    "program has looked at it.\n\n"
    "With --json, list prints one JSON line per conflict: id, kind,\n"
    "table, key, column (null for the row), won (local or remote),\n"
    "resolved (true or false); show prints one object with local,\n"
    "remote (the values) and local_stamp, remote_stamp ({hlc, time,\n"
    "site}) too; resolve prints {id, resolved}, resolve-all\n"
    "{resolved: N}.\n"};

const ctl_help ctl_help_rejected = {
    "synctl rejected DB [list | show ID | clear ID | clear-all] [--json]",
    "list and clear writes a server refused",
    "list (the default) prints the rejection log: this replica's writes\n"
    "that a server refused, oldest first: id, table, key, the reason\n"
    "(table, relay, future, or the server's own code as app:N), whether\n"
    "the row went back to the server's version (reverted; a refused insert\n"
    "the server never held is removed) or was written again since (kept:\n"
    "that write goes to the server next), and the server's words.  show\n"
    "prints one with the values that were refused.  clear removes one\n"
    "entry (exit status 3 if there is no such id); clear-all removes\n"
    "every one.\n\n"
    "With --json, list prints one JSON line per entry: id, table, key,\n"
    "reason, state (reverted or kept), text; show adds values (the\n"
    "refused columns by name; empty for a delete); clear prints {id,\n"
    "cleared}, clear-all {cleared: N}.\n"};

int ctl_cmd_conflicts(int argc, char **argv) {
  return log_command(argc, argv, &CONFLICTS);
}

int ctl_cmd_rejected(int argc, char **argv) {
  return log_command(argc, argv, &REJECTED);
}
