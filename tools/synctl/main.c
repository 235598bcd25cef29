/*
 * synctl - operate sync databases from the shell: create and inspect
 * them, read and write rows, dump and load JSON lines, look at the change
 * log, version vector, peers and conflicts, collect tombstones, verify a
 * file, serve it to devices over TCP (with Prometheus metrics over HTTP)
 * and sync it with another file or a server.  docs/SYNCTL.md is the
 * manual; `synctl help COMMAND` prints each page.
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
 * table): the name, the function that runs it, and its manual page, which
 * stands beside the function in its file.  help is main's own. */
typedef struct command {
  const char *name;
  ctl_cmd_fn run;
  const ctl_help *help;
} command;

static const command COMMANDS[] = {
    {"init", ctl_cmd_init, &ctl_help_init},
    {"schema", ctl_cmd_schema, &ctl_help_schema},
    {"add-column", ctl_cmd_add_column, &ctl_help_add_column},
    {"put", ctl_cmd_put, &ctl_help_put},
    {"get", ctl_cmd_get, &ctl_help_get},
    {"del", ctl_cmd_del, &ctl_help_del},
    {"dump", ctl_cmd_dump, &ctl_help_dump},
    {"load", ctl_cmd_load, &ctl_help_load},
    {"log", ctl_cmd_log, &ctl_help_log},
    {"vv", ctl_cmd_vv, &ctl_help_vv},
    {"peers", ctl_cmd_peers, &ctl_help_peers},
    {"conflicts", ctl_cmd_conflicts, &ctl_help_conflicts},
    {"rejected", ctl_cmd_rejected, &ctl_help_rejected},
    {"gc", ctl_cmd_gc, &ctl_help_gc},
    {"digest", ctl_cmd_digest, &ctl_help_digest},
    {"verify", ctl_cmd_verify, &ctl_help_verify},
    {"serve", ctl_cmd_serve, &ctl_help_serve},
    {"sync", ctl_cmd_sync, &ctl_help_sync},
    {"repair", ctl_cmd_repair, &ctl_help_repair},
    {"diff", ctl_cmd_diff, &ctl_help_diff},
    {"stats", ctl_cmd_stats, &ctl_help_stats},
    {"pg-bridge", ctl_cmd_pg_bridge, &ctl_help_pg_bridge},
    {"help", NULL, &ctl_help_help},
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
 * Options: the getopt_long conventions each command's loop does not
 * know by itself
 * ------------------------------------------------------------------- */
int ctl_nopt = 0;

int ctl_opt(long i, const char *a, const char *name) {
  return i < ctl_nopt && !strcmp(a, name);
}

int ctl_is_opt(long i, const char *a) {
  return i < ctl_nopt && a[0] == '-' && a[1];
}

/* The arguments of a command as its loop reads them: --NAME=VALUE as
 * --NAME VALUE, and '--' dropped, the arguments after it counted out of
 * ctl_nopt.  NULL when out of memory.  Lives until exit. */
static char **normalize(int argc, char **argv, int *nout) {
  char **out = (char **)calloc((size_t)argc * 2 + 1, sizeof *out);
  int i, n = 0, ended = 0;
  if (!out) return NULL;
  ctl_nopt = -1;
  for (i = 0; i < argc; i++) {
    const char *a = argv[i], *eq;
    if (ended) {
      out[n++] = argv[i];
    } else if (!strcmp(a, "--")) {
      ended = 1;
      ctl_nopt = n;
    } else if (a[0] == '-' && a[1] == '-' && a[2] && (eq = strchr(a, '='))) {
      char *name = (char *)malloc((size_t)(eq - a) + 1);
      if (!name) return NULL;
      memcpy(name, a, (size_t)(eq - a));
      name[eq - a] = 0;
      out[n++] = name;
      out[n++] = (char *)(eq + 1);
    } else {
      out[n++] = argv[i];
    }
  }
  if (ctl_nopt < 0) ctl_nopt = n;
  *nout = n;
  return out;
}

/* --help among a command's options prints its page. */
static int wants_help(int argc, char **argv) {
  int i;
  for (i = 0; i < argc; i++)
    if (ctl_opt(i, argv[i], "--help") || ctl_opt(i, argv[i], "-h")) return 1;
  return 0;
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
  char **args;
  int nargs;
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
  if (!(args = normalize(argc - 2, argv + 2, &nargs))) {
    fprintf(stderr, "synctl: out of memory\n");
    return EX_FAIL;
  }
  if (wants_help(nargs, args)) {
    print_page(c);
    return EX_OK;
  }
  return c->run(nargs, args);
}
