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

/* --help anywhere in a command's arguments prints its page. */
static int wants_help(int argc, char **argv) {
  int i;
  for (i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

int main(int argc, char **argv) {
  const command *c;
  const char *name;
  if (argc < 2) {
    print_overview(stderr);
    return EX_USAGE;
  }
  name = argv[1];
  if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
    print_overview(stdout);
    return EX_OK;
  }
  if (!strcmp(name, "--version")) {
    printf("synctl %s\n", SYNC_VERSION_STRING);
    return EX_OK;
  }
  if (!strcmp(name, "help")) {
    ctl_cmd = "help";
    if (argc == 2) {
      print_overview(stdout);
      return EX_OK;
    }
    if (!(c = find_command(argv[2])))
      return ctl_usage("no command '%s'", argv[2]);
    print_page(c);
    return EX_OK;
  }
  if ((c = find_command(name)) && c->run) {
    ctl_cmd = name;
    if (wants_help(argc - 2, argv + 2)) {
      print_page(c);
      return EX_OK;
    }
    return c->run(argc - 2, argv + 2);
  }
  fprintf(stderr, "synctl: no command '%s'\n", name);
  print_overview(stderr);
  return EX_USAGE;
}
