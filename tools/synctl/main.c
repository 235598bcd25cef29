/*
 * synctl - operate sync databases from the shell: create and inspect
 * them, read and write rows, dump and load JSON lines, look at the change
 * log, version vector, peers and conflicts, collect tombstones, retire
 * stopped sites from the counters, compact the file, verify a file, serve
 * it to devices over TCP (with Prometheus metrics over HTTP) and sync it
 * with another file or a server.
 * docs/SYNCTL.md is the manual; `synctl help COMMAND` prints each page.
 *
 * Exit status: 0 success, 1 failure (including a damaged database found
 * by verify and a failed sync), 2 usage error, 3 no such row or conflict.
 */
#include "synctl.h"

#include <stdlib.h>
#include <string.h>

static const ctl_help ctl_help_help = {
    "synctl help [COMMAND]", "print the manual of a command",
    "Without COMMAND lists the commands.  'synctl COMMAND --help' prints\n"
    "the same page.\n"};

/* The commands, in the order the overview lists them (git's builtin
 * table): the name, the function that runs it, its manual page, which
 * stands beside the function in its file, and its options for main's
 * parser: long names separated by commas, '=' after one that takes a
 * value, '/x' after one with a short form (every command also takes
 * --help and -h).  help is main's own. */
typedef struct command {
  const char *name;
  ctl_cmd_fn run;
  const ctl_help *help;
  const char *opts;
} command;

#define PEER_OPTS "tables=,token=,max-message=,json"

static const command COMMANDS[] = {
    {"init", ctl_cmd_init, &ctl_help_init, "table=,schema=,json"},
    {"schema", ctl_cmd_schema, &ctl_help_schema, "diff=,json"},
    {"add-column", ctl_cmd_add_column, &ctl_help_add_column, "json"},
    {"put", ctl_cmd_put, &ctl_help_put, ""},
    {"add", ctl_cmd_add, &ctl_help_add, ""},
    {"get", ctl_cmd_get, &ctl_help_get, "json"},
    {"del", ctl_cmd_del, &ctl_help_del, ""},
    {"dump", ctl_cmd_dump, &ctl_help_dump, "as-of=,json"},
    {"load", ctl_cmd_load, &ctl_help_load, "batch=,json"},
    {"log", ctl_cmd_log, &ctl_help_log, "since=,unordered,json"},
    {"vv", ctl_cmd_vv, &ctl_help_vv, "json"},
    {"peers", ctl_cmd_peers, &ctl_help_peers, "json"},
    {"conflicts", ctl_cmd_conflicts, &ctl_help_conflicts, "all,json"},
    {"rejected", ctl_cmd_rejected, &ctl_help_rejected, "json"},
    {"history", ctl_cmd_history, &ctl_help_history,
     "versions=,max-age=,off,json"},
    {"restore", ctl_cmd_restore, &ctl_help_restore, "as-of=,json"},
    {"gc", ctl_cmd_gc, &ctl_help_gc, "json"},
    {"retire", ctl_cmd_retire, &ctl_help_retire, "json"},
    {"folds", ctl_cmd_folds, &ctl_help_folds, "json"},
    {"compact", ctl_cmd_compact, &ctl_help_compact, "json"},
    {"digest", ctl_cmd_digest, &ctl_help_digest, "json"},
    {"verify", ctl_cmd_verify, &ctl_help_verify, "json"},
    {"serve", ctl_cmd_serve, &ctl_help_serve,
     "credentials=,metrics=,port-file=,metrics-port-file=,sessions=,quiet/q,"
     "tls-cert=,tls-key=,tls-ca=,tls-client-ca=,peer=,peers=,peer-interval=,"
     "peer-token=,mqtt=,topic=,share="},
    {"sync", ctl_cmd_sync, &ctl_help_sync,
     "pull,push,both,dry-run,quiet/q,tls-ca=,tls-cert=,tls-key=,tls-name=,"
     PEER_OPTS},
    {"repair", ctl_cmd_repair, &ctl_help_repair, PEER_OPTS},
    {"diff", ctl_cmd_diff, &ctl_help_diff, PEER_OPTS},
    {"stats", ctl_cmd_stats, &ctl_help_stats, "json"},
    {"pg-bridge", ctl_cmd_pg_bridge, &ctl_help_pg_bridge,
     "state=,metrics=,metrics-port-file=,batch=,interval=,once,audit,"
     "quiet/q"},
    {"help", NULL, &ctl_help_help, ""},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static const command *find_command(const char *name) {
  size_t i;
  for (i = 0; i < NCOMMANDS; i++)
    if (!strcmp(COMMANDS[i].name, name)) return &COMMANDS[i];
  return NULL;
}

static void print_page(const command *c) {
  const ctl_help *h = c->help;
  printf("NAME\n    synctl %s - %s\n\nSYNOPSIS\n    ", c->name, h->summary);
  {
    const char *p;
    for (p = h->synopsis; *p; p++) {
      putchar(*p);
      if (*p == '\n') fputs("    ", stdout);
    }
  }
  printf("\n\nDESCRIPTION\n");
  {
    const char *p = h->body;
    int bol = 1;
    for (; *p; p++) {
      if (bol && *p != '\n') fputs("    ", stdout);
      putchar(*p);
      bol = *p == '\n';
    }
  }
  printf("\nEXIT STATUS\n    0 success, 1 failure, 2 usage error, 3 no such "
         "row or "
         "conflict.\n");
}

static void print_overview(FILE *f) {
  size_t i;
  fprintf(
      f,
      "usage: synctl COMMAND [ARGS]   (synctl help COMMAND for its manual)\n\n"
      "commands:\n");
  for (i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].help->summary);
  fprintf(f,
          "\nexit status: 0 success, 1 failure, 2 usage error, 3 no such row "
          "or conflict\n");
}

/* ---------------------------------------------------------------------
 * Options, the way getopt_long reads them: anywhere among the arguments
 * until '--', --NAME VALUE and --NAME=VALUE alike, short flags bundled
 * (-qh), an unknown option or a missing value a usage error.  Unlike
 * getopt, '-' and a negative number (-5) are arguments: keys and values
 * may be negative, and no option is a digit.  Each command's loop then
 * reads its options by their long names.
 * ------------------------------------------------------------------- */
static const char *arg_kind; /* per word: 0 argument, 1 option, 2 value */
static int nkinds;

int ctl_is_opt(long i, const char *a) {
  (void)a;
  return i >= 0 && i < nkinds && arg_kind[i] == 1;
}

int ctl_opt(long i, const char *a, const char *name) {
  return ctl_is_opt(i, a) && !strcmp(a, name);
}

int ctl_args(int argc, char **argv, char **pos, int max) {
  int i, n = 0;
  for (i = 0; i < argc && i < nkinds; i++)
    if (arg_kind[i] == 0) {
      if (n < max) pos[n] = argv[i];
      n++;
    }
  return n;
}

int ctl_has(int argc, char **argv, const char *name) {
  int i;
  for (i = 0; i < argc; i++)
    if (ctl_opt(i, argv[i], name)) return 1;
  return 0;
}

/* The option of spec named by the n bytes at name (a long name, or with
 * shrt its one letter); its long name, "--NAME", into lname.  0 when
 * spec has none, 1 a flag, 2 one that takes a value. */
static int spec_find(const char *spec, const char *name, size_t n, int shrt,
                     char *lname, size_t cap) {
  const char *p = spec;
  while (*p) {
    size_t l = strcspn(p, "=/,");
    const char *q = p + l;
    int val = *q == '=';
    char sh = 0;
    if (val) q++;
    if (*q == '/') sh = q[1], q += 2;
    if ((shrt ? sh == name[0] : l == n && !strncmp(p, name, n)) &&
        l + 3 <= cap) {
      memcpy(lname, "--", 2);
      memcpy(lname + 2, p, l);
      lname[l + 2] = 0;
      return 1 + val;
    }
    p = *q == ',' ? q + 1 : q;
  }
  return 0;
}

/* What normalize found. */
enum { ARGS_OK, ARGS_HELP, ARGS_USAGE, ARGS_NOMEM };

/* The option word argv[*i] (its value too, moving *i past it) as spec
 * reads it, onto out. */
static int norm_opt(const char *spec, int argc, char **argv, int *i, char **out,
                    char *kind, int *n) {
  const char *a = argv[*i];
  char lname[64], *nm;
  int k;
  if (a[1] == '-') { /* --NAME, --NAME=VALUE */
    const char *eq = strchr(a, '=');
    size_t l = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (!strcmp(a, "--help")) return ARGS_HELP;
    if (!(k = spec_find(spec, a + 2, l, 0, lname, sizeof lname))) {
      ctl_usage("unrecognized option '%s'", a);
      return ARGS_USAGE;
    }
    if (k == 1 && eq) {
      ctl_usage("option '%s' doesn't allow an argument", lname);
      return ARGS_USAGE;
    }
    if (k == 2 && !eq && *i + 1 == argc) {
      ctl_usage("option '%s' requires an argument", lname);
      return ARGS_USAGE;
    }
    if (!(nm = strdup(lname))) return ARGS_NOMEM;
    out[*n] = nm, kind[(*n)++] = 1;
    if (k == 2) out[*n] = eq ? (char *)(eq + 1) : argv[++*i], kind[(*n)++] = 2;
    return ARGS_OK;
  }
  for (a++; *a; a++) { /* -x, or flags bundled: -qh */
    if (*a == 'h') return ARGS_HELP;
    if (spec_find(spec, a, 1, 1, lname, sizeof lname) != 1) {
      ctl_usage("invalid option -- '%c'", *a);
      return ARGS_USAGE;
    }
    if (!(nm = strdup(lname))) return ARGS_NOMEM;
    out[*n] = nm, kind[(*n)++] = 1;
  }
  return ARGS_OK;
}

/* What normalize made: the option names are its own copies. */
static void free_args(char **args, int n) {
  int i;
  for (i = 0; args && i < n; i++)
    if (arg_kind[i] == 1) free(args[i]);
  free(args);
  free((char *)arg_kind);
  arg_kind = NULL;
  nkinds = 0;
}

/* A command's arguments checked against its options and written out as
 * its loop reads them: each option by its long name, its value as the
 * next word, in the order given ('init' pairs each --table with the
 * columns after it); '--' dropped.  *outp and the kinds until free_args;
 * on failure they are freed here. */
static int normalize(const command *c, int argc, char **argv, char ***outp,
                     int *nout) {
  char **out = (char **)calloc((size_t)argc * 2 + 1, sizeof *out);
  char *kind = (char *)calloc((size_t)argc * 2 + 1, 1);
  int i, n = 0, ended = 0, r = ARGS_OK;
  arg_kind = kind;
  if (!out || !kind) r = ARGS_NOMEM;
  for (i = 0; r == ARGS_OK && i < argc; i++) {
    const char *a = argv[i];
    if (ended || a[0] != '-' || !a[1] || (a[1] >= '0' && a[1] <= '9'))
      out[n++] = argv[i];
    else if (!strcmp(a, "--"))
      ended = 1;
    else
      r = norm_opt(c->opts, argc, argv, &i, out, kind, &n);
  }
  nkinds = n;
  *outp = out;
  *nout = n;
  return r;
}

/* The edit distance of a and b, with a swap of two neighbours as one
 * edit (typing 'dupm' for 'dump'); names are short. */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j, d[33][33];
  if (la > 32 || lb > 32) return (size_t)-1;
  for (i = 0; i <= la; i++) d[i][0] = i;
  for (j = 0; j <= lb; j++) d[0][j] = j;
  for (i = 1; i <= la; i++)
    for (j = 1; j <= lb; j++) {
      size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < c)
        c = d[i - 2][j - 2] + 1;
      d[i][j] = c;
    }
  return d[la][lb];
}

/* An unknown command: the nearest name, if one is near (at most two
 * edits, fewer than the name's length) or the name starts it alone. */
static int unknown_command(const char *name) {
  const char *best = NULL, *prefix = NULL;
  size_t i, bd = 3, nl = strlen(name);
  int nprefix = 0;
  for (i = 0; i < NCOMMANDS; i++) {
    size_t d = distance(name, COMMANDS[i].name);
    if (d < bd && d < nl) bd = d, best = COMMANDS[i].name;
    if (nl && !strncmp(COMMANDS[i].name, name, nl))
      prefix = COMMANDS[i].name, nprefix++;
  }
  if (!best && nprefix == 1) best = prefix;
  if (best)
    fprintf(stderr, "synctl: unknown command '%s'; did you mean '%s'?\n", name,
            best);
  else
    fprintf(stderr,
            "synctl: unknown command '%s'; 'synctl help' lists the "
            "commands\n",
            name);
  return EX_USAGE;
}

int main(int argc, char **argv) {
  const command *c;
  const char *name;
  char **args = NULL;
  int nargs = 0, rc;
  if (argc < 2) {
    print_overview(stderr);
    return EX_USAGE;
  }
  name = argv[1];
  if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
    print_overview(stdout);
    return EX_OK;
  }
  if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
    printf("synctl %s\n", SYNC_VERSION_STRING);
    return EX_OK;
  }
  if (name[0] == '-') {
    fprintf(stderr, "synctl: unknown option '%s' (options follow the command: "
                    "synctl COMMAND [ARGS])\n",
            name);
    return EX_USAGE;
  }
  if (!strcmp(name, "help")) {
    ctl_cmd = "help";
    if (argc == 2) {
      print_overview(stdout);
      return EX_OK;
    }
    if (!(c = find_command(argv[2]))) return unknown_command(argv[2]);
    print_page(c);
    return EX_OK;
  }
  if (!(c = find_command(name)) || !c->run) return unknown_command(name);
  ctl_cmd = name;
  switch (normalize(c, argc - 2, argv + 2, &args, &nargs)) {
  case ARGS_OK: rc = c->run(nargs, args); break;
  case ARGS_HELP:
    print_page(c);
    rc = EX_OK;
    break;
  case ARGS_USAGE: rc = EX_USAGE; break;
  default: fprintf(stderr, "synctl: out of memory\n"); rc = EX_FAIL;
  }
  free_args(args, nargs);
  return rc;
}
