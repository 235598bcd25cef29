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
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sync.h"

#define EX_OK 0
#define EX_FAIL 1
#define EX_USAGE 2
#define EX_NOTFOUND 3

static const char *g_cmd = "synctl"; /* the command running, for messages */

/* ---------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------- */
static void say(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "synctl: %s: ", g_cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* A usage error: the message, then where to read more. */
static int usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "synctl: %s: ", g_cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'synctl help %s'.\n", g_cmd);
  return EX_USAGE;
}

/* A library failure on env: its own words when it has them. */
static int lib_fail(sync_env *env, const char *db, int rc, const char *what) {
  const char *m = env ? sync_env_errmsg(env) : "";
  if (m && m[0] && strstr(m, sync_strerror(rc)) == NULL)
    say("%s: %s: %s (%s)", db, what, sync_strerror(rc), m);
  else if (m && m[0])
    say("%s: %s: %s", db, what, m);
  else
    say("%s: %s: %s", db, what, sync_strerror(rc));
  return EX_FAIL;
}

/* ---------------------------------------------------------------------
 * Help: one manual page per command (docs/SYNCTL.md has the same text).
 * ------------------------------------------------------------------- */
typedef struct cmd_help {
  const char *name, *synopsis, *summary, *body;
} cmd_help;

static const cmd_help HELP[] = {
    {"init",
     "synctl init DB --table NAME:KEYTYPE COL:TYPE[:notnull][:local]... "
     "[--table ...]\n"
     "       synctl init DB --schema FILE",
     "create a database with a schema",
     "Creates DB (one file, plus DB-lock) with the tables given.  Each\n"
     "--table NAME:KEYTYPE starts a table; the COL:TYPE words after it are\n"
     "its columns, in order.  KEYTYPE is text, blob or integer; TYPE is\n"
     "integer, real, text or blob, optionally followed by :notnull (NULL is\n"
     "refused) and :local (kept on this device, never replicated).\n"
     "--schema FILE reads the tables from a schema file instead:\n\n"
     "    # comment\n"
     "    table readings text\n"
     "      temp real\n"
     "      status text notnull\n"
     "      note text local\n\n"
     "one 'table NAME KEYTYPE' line per table, then one 'COLUMN TYPE\n"
     "[notnull] [local]' line per column; blank lines and # comments are\n"
     "ignored.  'synctl schema DB' prints a database's schema in this form.\n"
     "Fails if DB exists already.\n\n"
     "Example:\n"
     "    synctl init sensors.db --table readings:text temp:real "
     "status:text:notnull\n"},
    {"schema", "synctl schema DB [--diff OTHER]", "print or compare the schema",
     "Prints DB's tables and columns as a schema file (see 'synctl help\n"
     "init'), preceded by comments with the schema version and hash.  The\n"
     "output can be given to 'synctl init --schema' to make an empty\n"
     "replica.\n\n"
     "--diff OTHER compares DB's schema with the database OTHER's instead:\n"
     "one line per difference ('only in DB: TABLE.COL TYPE', 'only in\n"
     "OTHER: table T KEYTYPE (COLS)', 'differs: ...' naming both sides),\n"
     "then the verdict: 'equal'; 'compatible' (one is the other plus\n"
     "appended columns and tables: they sync, and each keeps the columns\n"
     "it does not know and sends them on); or 'incompatible' (a type, a\n"
     "name, a key type or notnull differs at a shared position: sessions\n"
     "between them fail, exit status 1).  The local flag is each file's\n"
     "own and is not compared.\n\n"
     "Example:\n"
     "    synctl schema device.db --diff server.db\n"},
    {"add-column", "synctl add-column DB TABLE COL:TYPE[:local]",
     "add a column to a table",
     "Appends a column to TABLE.  Existing rows read it as NULL, so it\n"
     "cannot be notnull.  Replicas with and without the column keep\n"
     "syncing (a rolling schema change): the ones without it store its\n"
     "values unread and send them on, and show them once they add it.\n"},
    {"put", "synctl put DB TABLE KEY COL=VALUE...", "insert or update a row",
     "Writes the row KEY of TABLE in one transaction.  A new row takes\n"
     "NULL for the columns not given; an existing row keeps them.  Values\n"
     "are read by the column's type: integer (decimal), real, text (as\n"
     "given), blob (hex digits).  NULL sets a column to NULL; to store the\n"
     "text NULL write \\NULL (a leading backslash is dropped).  An integer\n"
     "key is decimal, a blob key hex.\n\n"
     "Example:\n"
     "    synctl put sensors.db readings kitchen temp=21.5 status=ok\n"},
    {"get", "synctl get DB TABLE KEY [--json]", "print one row",
     "Prints the columns of row KEY, one 'column  value' line each (NULL\n"
     "for NULL, blobs in hex), or one JSON object with --json.  Exit\n"
     "status 3 when there is no such row.\n"},
    {"del", "synctl del DB TABLE KEY", "delete a row",
     "Deletes row KEY, leaving the tombstone replication needs.  Exit\n"
     "status 3 when there is no such row.\n"},
    {"dump", "synctl dump DB TABLE [--json]", "print a table",
     "Prints the live rows of TABLE in key order as an aligned table with\n"
     "a header line (the key column is headed 'key'), or with --json as\n"
     "JSON lines: one object per row, the key under \"key\", integers and\n"
     "reals as numbers, text as strings, blobs as strings of hex digits,\n"
     "NULL as null.  A table with a column named 'key' cannot be dumped as\n"
     "JSON.  'synctl load' reads the JSON form back.\n"},
    {"load", "synctl load DB TABLE FILE|- [--batch N]",
     "write JSON lines into a table",
     "Reads JSON lines (as 'synctl dump --json' writes them) from FILE, or\n"
     "standard input for -, and puts each row, N rows (default 1000) per\n"
     "transaction.  Columns missing from an object are NULL.  A bad line\n"
     "stops the load with its line number; the batches before it stay\n"
     "committed, the batch holding it is not.\n"},
    {"log", "synctl log DB [--since VERSION]", "print the change log",
     "Lists the rows changed after local version VERSION (default 0: all),\n"
     "in version order, each once in its latest state: local version,\n"
     "table, key, live or deleted, causal length, the newest stamp in the\n"
     "row (time, HLC counter) and the site that wrote it.\n"},
    {"vv", "synctl vv DB", "print the version vector",
     "Lists the sites this replica holds every change of, up to which\n"
     "hybrid logical clock value (and its time); this replica's own site\n"
     "is marked.\n"},
    {"peers", "synctl peers DB", "print the peers and what they hold",
     "Lists the peers this replica has exchanged deltas with: the cursor\n"
     "this replica holds in the peer's log (or the table of an initial\n"
     "stream in progress), the position of this replica's log the peer has\n"
     "acknowledged, and the tombstones still kept for that peer; then the\n"
     "tombstones kept in all.\n"},
    {"conflicts",
     "synctl conflicts DB [list [--all] | show ID | resolve ID | resolve-all]",
     "list and resolve recorded conflicts",
     "list (the default) prints the unresolved conflicts (all of them with\n"
     "--all): id, kind, table, key, column and which side won.  show prints\n"
     "one with both values and stamps.  resolve marks one resolved (exit\n"
     "status 3 if there is no such id); resolve-all marks every one.  The\n"
     "outcome already applied stays: marking only records that a person or\n"
     "program has looked at it.\n"},
    {"rejected", "synctl rejected DB [list | show ID | clear ID | clear-all]",
     "list and clear writes a server refused",
     "list (the default) prints the rejection log: this replica's writes\n"
     "that a server refused, oldest first: id, table, key, the reason\n"
     "(table, relay, future, or the server's own code as app:N), whether\n"
     "the row went back to the server's version (reverted; a refused insert\n"
     "the server never held is removed) or was written again since (kept:\n"
     "that write goes to the server next), and the server's words.  show\n"
     "prints one with the values that were refused.  clear removes one\n"
     "entry (exit status 3 if there is no such id); clear-all removes\n"
     "every one.\n"},
    {"gc", "synctl gc DB", "collect tombstones every peer has acknowledged",
     "Deletes the tombstones that every known peer has acknowledged and\n"
     "prints how many went and how many are still kept.  A replica that\n"
     "knows no peer keeps them all.\n"},
    {"digest", "synctl digest DB [TABLE]", "print the content digest",
     "Prints the XXH3-64 digest of the live rows (keys and replicated\n"
     "columns) of TABLE, or of every table.  Replicas that hold the same\n"
     "data print the same digest.\n"},
    {"verify", "synctl verify DB", "check a database for damage",
     "Reads every row and checks its checksum, walks the change log and\n"
     "checks that it names every row once and agrees with the row counts,\n"
     "checks the tombstone count, that the version vector covers this\n"
     "replica's own writes, that peers acknowledged no version beyond this\n"
     "replica's, and that the conflict log reads.  Prints each problem and\n"
     "a last line 'sound' or 'damaged: N problems'.  Exit status 0 when\n"
     "sound, 1 when damaged (or unreadable).  Before 'sound', 'health:'\n"
     "lines say what is not damage but needs an operator: deletes this\n"
     "replica may lack (a peer answered that it is behind that peer's\n"
     "tombstone collection: reset that peer and sync, or repair), and\n"
     "peers behind this replica's own collection.\n"},
    {"serve",
     "synctl serve DB ADDRESS [--credentials FILE] [--metrics ADDRESS]\n"
     "       [--port-file FILE] [--metrics-port-file FILE] [--sessions N] "
     "[--quiet]",
     "serve the database to peers over TCP",
     "Listens on ADDRESS (HOST:PORT; port 0 picks a free one, written to\n"
     "--port-file) and answers sync sessions from any number of clients at\n"
     "once ('synctl sync', devices).  --credentials FILE maps tokens to\n"
     "rights, one client per line:\n\n"
     "    TOKEN read=TABLE[,TABLE...] write=TABLE[,...] [relay] [site=HEX32]\n"
     "          [where=COLUMN=VALUE]\n\n"
     "('*' for every table; site= refuses the token to any replica but the\n"
     "one with that site id; where= limits what the client receives to the\n"
     "rows whose COLUMN holds VALUE, in the tables with such a column: a\n"
     "row whose value changes leaves the client or comes to it, and a\n"
     "changed file takes effect at each client's next sync); without it\n"
     "every client may read and write everything.  --metrics ADDRESS serves the server's stats as\n"
     "Prometheus text on plain HTTP (GET /metrics).  --sessions N stops\n"
     "after N sessions; otherwise it runs until SIGINT or SIGTERM.\n"},
    {"sync",
     "synctl sync DB ADDRESS|OTHER_DB [--pull|--push|--both] [--dry-run]\n"
     "       [--tables A,B] [--token T] [--max-message BYTES]",
     "sync with a server or another database file",
     "Runs one session: DB is the client, the other side serves.  With\n"
     "HOST:PORT the other side is a server ('synctl serve'); with a path it\n"
     "is another database file, synced in this process through two\n"
     "sessions that pass bytes to each other.  --pull receives, --push\n"
     "sends, --both (default) does both.  --dry-run writes nothing on\n"
     "either side and says what would change.  --tables limits the tables;\n"
     "changing it later removes the rows of tables no longer listed and\n"
     "brings those of new ones, with no reset.\n"
     "--token is the credential the server checks.  On a terminal a\n"
     "progress line shows rows, bytes, rate and, when the sender said how\n"
     "many rows come, the time left.  The last line sums up what moved and\n"
     "the digest of DB afterwards.  When one side turns out to be a copy\n"
     "(a file restored from a backup, or copied), it takes a new site id,\n"
     "a line says so, and the session runs once more.\n"},
    {"repair",
     "synctl repair DB ADDRESS|OTHER_DB [--tables A,B] [--token T]\n"
     "       [--max-message BYTES]",
     "find where two replicas differ and exchange only that",
     "Runs one repair session (docs/PROTOCOL.md, \"Repair\"): DB is the\n"
     "client; the other side is a server ('synctl serve') at HOST:PORT or\n"
     "another database file.  The two compare fingerprints of hash-prefix\n"
     "trees of their tables (live rows and tombstones: a replica that\n"
     "lacks a delete its peer keeps gets it, so that a key it writes\n"
     "again afterwards wins everywhere) and exchange only the rows of the\n"
     "leaves that differ, merged by the usual rules (and, on a server,\n"
     "within the rights of --token).  It needs no change log or cursor, so\n"
     "it mends a replica restored from a backup, one whose peer record was\n"
     "reset, and drift of any cause.  It is the path after a sync fails as\n"
     "stale (the peer collected tombstones this replica never saw): once the\n"
     "repair is complete, DB's cursor for the other side stands at where\n"
     "that side's log was when the repair began, and 'synctl sync' works\n"
     "again.  The last line sums up what moved.  Exit status 0 when both\n"
     "ended equal, 1 when they still differ (rows refused by the rights,\n"
     "or written meanwhile) or the session failed.\n"},
    {"diff",
     "synctl diff DB ADDRESS|OTHER_DB [--tables A,B] [--token T]\n"
     "       [--max-message BYTES]",
     "list the rows two replicas hold differently, writing nothing",
     "A repair session that writes nothing on either side ('synctl\n"
     "repair' with a dry run).  Prints one line per differing row:\n\n"
     "    TABLE KEY here|there|both\n\n"
     "(here: only DB holds the row, live or deleted; there: only the other\n"
     "side; both: both do, in different states: values, stamps or\n"
     "deletes).  A row may be listed twice when the difference is larger\n"
     "than one turn of the repair carries.  Exit status 0 when the\n"
     "replicas are equal, 3 when they differ, 1 on failure.\n"},
    {"stats", "synctl stats DB | synctl stats HOST:PORT",
     "print figures of a database or a running server",
     "For a database file: rows and tombstones per table, the local\n"
     "version, schema version, sites in the version vector, peers,\n"
     "unresolved conflicts, whether it may miss deletes, peers behind its\n"
     "tombstone collection and the file size.  For HOST:PORT, the metrics\n"
     "address of a running 'synctl serve --metrics', fetches and prints its\n"
     "Prometheus text (counters, latency quantiles).\n"},
    {"help", "synctl help [COMMAND]", "print the manual of a command",
     "Without COMMAND lists the commands.  'synctl COMMAND --help' prints\n"
     "the same page.\n"},
};
#define NHELP (sizeof HELP / sizeof HELP[0])

static const cmd_help *find_help(const char *name) {
  size_t i;
  for (i = 0; i < NHELP; i++)
    if (!strcmp(HELP[i].name, name)) return &HELP[i];
  return NULL;
}

static void print_page(const cmd_help *h) {
  printf("NAME\n    synctl %s - %s\n\nSYNOPSIS\n    ", h->name, h->summary);
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
  for (i = 0; i < NHELP; i++)
    fprintf(f, "  %-11s %s\n", HELP[i].name, HELP[i].summary);
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

/* ---------------------------------------------------------------------
 * Opening databases, names and types
 * ------------------------------------------------------------------- */
static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Open an existing database with the schema it holds.  Prints why not. */
static int open_db(const char *path, int rdonly, sync_env **out) {
  sync_env *env = NULL;
  int rc;
  *out = NULL;
  if (!file_exists(path)) {
    say("%s: no such database (make one with 'synctl init')", path);
    return EX_FAIL;
  }
  if ((rc = sync_env_create(NULL, &env)))
    return lib_fail(NULL, path, rc, "cannot open");
  rc = sync_env_open(env, path, rdonly ? SYNC_OPEN_RDONLY : SYNC_OPEN_NOCREATE);
  if (rc) {
    lib_fail(env, path, rc, "cannot open");
    sync_env_close(env);
    return EX_FAIL;
  }
  *out = env;
  return EX_OK;
}

static const char *type_name(int t) {
  switch (t) {
  case SYNC_INTEGER: return "integer";
  case SYNC_REAL: return "real";
  case SYNC_TEXT: return "text";
  case SYNC_BLOB: return "blob";
  default: return "null";
  }
}

static int parse_type(const char *s, size_t n) {
  static const struct {
    const char *name;
    int type;
  } t[] = {
      {"integer", SYNC_INTEGER}, {"int", SYNC_INTEGER}, {"real", SYNC_REAL},
      {"float", SYNC_REAL},      {"double", SYNC_REAL}, {"text", SYNC_TEXT},
      {"string", SYNC_TEXT},     {"blob", SYNC_BLOB},   {"bytes", SYNC_BLOB}};
  size_t i;
  for (i = 0; i < sizeof t / sizeof t[0]; i++)
    if (strlen(t[i].name) == n && !strncmp(t[i].name, s, n)) return t[i].type;
  return 0;
}

/* Table id by name, or a message listing the tables. */
static int find_table(sync_env *env, const char *db, const char *name,
                      unsigned *out) {
  unsigned i, n = sync_env_table_count(env);
  char list[1024];
  size_t len = 0;
  if (sync_env_table(env, name, out) == 0) return 0;
  list[0] = 0;
  for (i = 0; i < n; i++) {
    sync_table_def d;
    if (sync_env_table_def(env, i, &d)) continue;
    len +=
        (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0,
                         "%s%s", i ? ", " : "", d.name);
    if (len >= sizeof list) break;
  }
  say("%s: no table '%s' (tables: %s)", db, name, n ? list : "none");
  return -1;
}

static int find_column(sync_env *env, const char *db, unsigned t,
                       const char *name, size_t nlen, unsigned *out) {
  sync_table_def d;
  unsigned i;
  char list[1024];
  size_t len = 0;
  sync_env_table_def(env, t, &d);
  for (i = 0; i < d.ncolumns; i++)
    if (strlen(d.columns[i].name) == nlen &&
        !strncmp(d.columns[i].name, name, nlen)) {
      *out = i;
      return 0;
    }
  list[0] = 0;
  for (i = 0; i < d.ncolumns; i++) {
    len +=
        (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0,
                         "%s%s", i ? ", " : "", d.columns[i].name);
    if (len >= sizeof list) break;
  }
  say("%s: table '%s' has no column '%.*s' (columns: %s)", db, d.name,
      (int)nlen, name, list);
  return -1;
}

/* ---------------------------------------------------------------------
 * Bytes, keys and values
 * ------------------------------------------------------------------- */
static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Hex digits to bytes (malloc'd, caller frees); NULL when not hex. */
static unsigned char *from_hex(const char *s, size_t n, size_t *len) {
  unsigned char *b;
  size_t i;
  if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2, n -= 2;
  if (n % 2) return NULL;
  b = (unsigned char *)malloc(n / 2 + 1);
  if (!b) return NULL;
  for (i = 0; i < n / 2; i++) {
    int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
    if (h < 0 || l < 0) {
      free(b);
      return NULL;
    }
    b[i] = (unsigned char)(h * 16 + l);
  }
  *len = n / 2;
  return b;
}

static void put_hex(FILE *f, const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

static void hex_str(const uint8_t *p, size_t n, char *out) {
  static const char h[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = h[p[i] >> 4];
    out[2 * i + 1] = h[p[i] & 15];
  }
  out[2 * n] = 0;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (!*s || *end || errno) return -1;
  *out = (int64_t)v;
  return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  unsigned long long v;
  errno = 0;
  if (*s == '-') return -1;
  v = strtoull(s, &end, 10);
  if (!*s || *end || errno) return -1;
  *out = (uint64_t)v;
  return 0;
}

typedef struct keybuf {
  unsigned char b[SYNC_MAX_KEY + 1];
  size_t n;
} keybuf;

/* KEY as the table's key type wants it. */
static int parse_key(sync_env *env, const char *db, unsigned t, const char *s,
                     keybuf *k) {
  sync_table_def d;
  sync_env_table_def(env, t, &d);
  if (d.key_type == SYNC_INTEGER) {
    int64_t v;
    if (parse_i64(s, &v)) {
      say("%s: table '%s' has integer keys, not '%s'", db, d.name, s);
      return -1;
    }
    sync_key_int(v, k->b);
    k->n = 8;
  } else if (d.key_type == SYNC_BLOB) {
    size_t n;
    unsigned char *b = from_hex(s, strlen(s), &n);
    if (!b || !n || n > SYNC_MAX_KEY) {
      say("%s: table '%s' has blob keys: give 1 to %d bytes in hex, not '%s'",
          db, d.name, SYNC_MAX_KEY, s);
      free(b);
      return -1;
    }
    memcpy(k->b, b, n);
    k->n = n;
    free(b);
  } else {
    size_t n = strlen(s);
    if (!n || n > SYNC_MAX_KEY) {
      say("%s: a key is 1 to %d bytes", db, SYNC_MAX_KEY);
      return -1;
    }
    memcpy(k->b, s, n);
    k->n = n;
  }
  return 0;
}

/* Text for a person: control bytes escaped, the rest as it is. */
static void put_text(FILE *f, const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (p[i] == '\n')
      fputs("\\n", f);
    else if (p[i] == '\t')
      fputs("\\t", f);
    else if (p[i] == '\\')
      fputs("\\\\", f);
    else if (p[i] < 0x20 || p[i] == 0x7f)
      fprintf(f, "\\x%02x", p[i]);
    else
      fputc(p[i], f);
  }
}

/* Display width of what put_text writes (UTF-8 sequences count one). */
static size_t text_width(const unsigned char *p, size_t n) {
  size_t i, w = 0;
  for (i = 0; i < n; i++) {
    if (p[i] == '\n' || p[i] == '\t' || p[i] == '\\')
      w += 2;
    else if (p[i] < 0x20 || p[i] == 0x7f)
      w += 4;
    else if ((p[i] & 0xc0) != 0x80)
      w++;
  }
  return w;
}

/* A REAL as the shortest decimal that reads back to the same double. */
static void fmt_real(double r, char *out, size_t cap) {
  int prec;
  if (!isfinite(r)) {
    snprintf(out, cap, "%s", isnan(r) ? "nan" : r > 0 ? "inf" : "-inf");
    return;
  }
  for (prec = 1; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, r);
    if (strtod(out, NULL) == r) break;
  }
  /* Plain decimals where they are short enough to read: 180.0, not
   * 1.8e+02. */
  if (strchr(out, 'e') && fabs(r) >= 1e-5 && fabs(r) < 1e16) {
    char alt[64];
    for (prec = 0; prec <= 20; prec++) {
      snprintf(alt, sizeof alt, "%.*f", prec, r);
      if (strtod(alt, NULL) == r) {
        snprintf(out, cap, "%s", alt);
        break;
      }
    }
  }
  /* Keep reals recognisable as such in JSON and tables. */
  if (!strpbrk(out, ".eEn")) {
    size_t l = strlen(out);
    if (l + 2 < cap) memcpy(out + l, ".0", 3);
  }
}

/* One value for the aligned forms; returns its width.  f NULL: measure. */
static size_t put_value(FILE *f, const sync_value *v) {
  char b[64];
  switch (v->type) {
  case SYNC_INTEGER: snprintf(b, sizeof b, "%lld", (long long)v->i); break;
  case SYNC_REAL: fmt_real(v->r, b, sizeof b); break;
  case SYNC_TEXT:
    if (f) put_text(f, (const unsigned char *)v->data, v->len);
    return text_width((const unsigned char *)v->data, v->len);
  case SYNC_BLOB:
    if (f) put_hex(f, (const unsigned char *)v->data, v->len);
    return 2 * v->len;
  default: snprintf(b, sizeof b, "NULL");
  }
  if (f) fputs(b, f);
  return strlen(b);
}

static size_t put_key(FILE *f, int key_type, const unsigned char *k, size_t n) {
  sync_value v;
  if (key_type == SYNC_INTEGER && n == 8) {
    v = sync_int(sync_key_int_decode(k));
  } else if (key_type == SYNC_BLOB) {
    v = sync_blob(k, n);
  } else {
    v = sync_text((const char *)k, n);
  }
  return put_value(f, &v);
}

static void json_str(FILE *f, const unsigned char *p, size_t n) {
  size_t i;
  fputc('"', f);
  for (i = 0; i < n; i++) {
    unsigned char c = p[i];
    if (c == '"')
      fputs("\\\"", f);
    else if (c == '\\')
      fputs("\\\\", f);
    else if (c == '\n')
      fputs("\\n", f);
    else if (c == '\r')
      fputs("\\r", f);
    else if (c == '\t')
      fputs("\\t", f);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static void json_value(FILE *f, const sync_value *v) {
  char b[64];
  switch (v->type) {
  case SYNC_INTEGER: fprintf(f, "%lld", (long long)v->i); break;
  case SYNC_REAL:
    if (!isfinite(v->r)) {
      fputs("null", f); /* JSON has no NaN or infinity */
      break;
    }
    fmt_real(v->r, b, sizeof b);
    fputs(b, f);
    break;
  case SYNC_TEXT: json_str(f, (const unsigned char *)v->data, v->len); break;
  case SYNC_BLOB:
    fputc('"', f);
    put_hex(f, (const unsigned char *)v->data, v->len);
    fputc('"', f);
    break;
  default: fputs("null", f);
  }
}

static void json_key(FILE *f, int key_type, const unsigned char *k, size_t n) {
  sync_value v;
  if (key_type == SYNC_INTEGER && n == 8)
    v = sync_int(sync_key_int_decode(k));
  else if (key_type == SYNC_BLOB)
    v = sync_blob(k, n);
  else
    v = sync_text((const char *)k, n);
  json_value(f, &v);
}

/* A value for column col from command-line text.  Blob bytes are
 * malloc'd into *hold (caller frees).  Prints why not. */
static int parse_value(const char *db, const sync_table_def *d, unsigned col,
                       const char *s, sync_value *v, unsigned char **hold) {
  const sync_column_def *c = &d->columns[col];
  *hold = NULL;
  if (!strcmp(s, "NULL")) {
    *v = sync_null();
    return 0;
  }
  if (s[0] == '\\') s++;
  switch (c->type) {
  case SYNC_INTEGER: {
    int64_t i;
    if (parse_i64(s, &i)) {
      say("%s: column '%s' of '%s' is integer, not '%s'", db, c->name, d->name,
          s);
      return -1;
    }
    *v = sync_int(i);
    return 0;
  }
  case SYNC_REAL: {
    char *end;
    double r = strtod(s, &end);
    if (!*s || *end) {
      say("%s: column '%s' of '%s' is real, not '%s'", db, c->name, d->name, s);
      return -1;
    }
    *v = sync_real(r);
    return 0;
  }
  case SYNC_BLOB: {
    size_t n = 0;
    *hold = from_hex(s, strlen(s), &n);
    if (!*hold) {
      say("%s: column '%s' of '%s' is blob: give hex digits, not '%s'", db,
          c->name, d->name, s);
      return -1;
    }
    *v = sync_blob(*hold, n);
    return 0;
  }
  default: *v = sync_text(s, strlen(s)); return 0;
  }
}

/* Words for a failed write on a row. */
static int write_fail(sync_env *env, const char *db, const sync_table_def *d,
                      int rc) {
  if (rc == SYNC_ECONSTRAINT)
    say("%s: table '%s': %s", db, d->name,
        sync_env_errmsg(env)[0] ? sync_env_errmsg(env)
                                : "a notnull column would be NULL");
  else
    lib_fail(env, db, rc, "write failed");
  return EX_FAIL;
}

/* ---------------------------------------------------------------------
 * Schemas: --table words and schema files
 * ------------------------------------------------------------------- */
#define MAXT 64
#define MAXC 256

typedef struct schema_in {
  sync_table_def t[MAXT];
  sync_column_def c[MAXT][MAXC];
  unsigned nt;
  char *strings[MAXT * (MAXC + 1)];
  size_t ns;
} schema_in;

static char *keep(schema_in *s, const char *p, size_t n) {
  char *q = (char *)malloc(n + 1);
  if (!q) return NULL;
  memcpy(q, p, n);
  q[n] = 0;
  s->strings[s->ns++] = q;
  return q;
}

static void schema_free(schema_in *s) {
  size_t i;
  for (i = 0; i < s->ns; i++) free(s->strings[i]);
  s->ns = 0;
}

/* A column from NAME:TYPE[:notnull][:local] or from words. */
static int add_col(schema_in *s, const char *name, size_t nlen,
                   const char *type, size_t tlen, unsigned flags,
                   const char *where) {
  sync_table_def *t;
  sync_column_def *c;
  int ty = parse_type(type, tlen);
  if (!s->nt) {
    usage("%scolumn '%.*s' before any table", where, (int)nlen, name);
    return -1;
  }
  t = &s->t[s->nt - 1];
  if (!ty) {
    usage("%scolumn '%.*s': unknown type '%.*s' (integer, real, text or blob)",
          where, (int)nlen, name, (int)tlen, type);
    return -1;
  }
  if (t->ncolumns == MAXC) {
    usage("%stoo many columns in '%s'", where, t->name);
    return -1;
  }
  c = &s->c[s->nt - 1][t->ncolumns++];
  c->name = keep(s, name, nlen);
  c->type = ty;
  c->flags = flags;
  return c->name ? 0 : -1;
}

static int add_table(schema_in *s, const char *name, size_t nlen,
                     const char *kt, size_t klen, const char *where) {
  int ty = parse_type(kt, klen);
  sync_table_def *t;
  if (ty != SYNC_TEXT && ty != SYNC_BLOB && ty != SYNC_INTEGER) {
    usage("%stable '%.*s': key type must be text, blob or integer, not '%.*s'",
          where, (int)nlen, name, (int)klen, kt);
    return -1;
  }
  if (s->nt == MAXT) {
    usage("%stoo many tables", where);
    return -1;
  }
  t = &s->t[s->nt];
  t->name = keep(s, name, nlen);
  t->key_type = ty;
  t->columns = s->c[s->nt];
  t->ncolumns = 0;
  s->nt++;
  return t->name ? 0 : -1;
}

static int parse_flags(const char *p, unsigned *flags, const char *where) {
  while (*p) {
    const char *q = strchr(p, ':');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 7 && !strncmp(p, "notnull", 7))
      *flags |= SYNC_COL_NOTNULL;
    else if (n == 5 && !strncmp(p, "local", 5))
      *flags |= SYNC_COL_LOCAL;
    else {
      usage("%sunknown column flag '%.*s' (notnull or local)", where, (int)n,
            p);
      return -1;
    }
    p += n + (q != NULL);
  }
  return 0;
}

/* COL:TYPE[:flags] */
static int col_word(schema_in *s, const char *w, const char *where) {
  const char *c1 = strchr(w, ':'), *c2;
  unsigned flags = 0;
  if (!c1 || c1 == w) {
    usage("%s'%s': a column is NAME:TYPE[:notnull][:local]", where, w);
    return -1;
  }
  c2 = strchr(c1 + 1, ':');
  if (c2 && parse_flags(c2 + 1, &flags, where)) return -1;
  return add_col(s, w, (size_t)(c1 - w), c1 + 1,
                 c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1), flags, where);
}

static int schema_file(schema_in *s, const char *path) {
  FILE *f = fopen(path, "r");
  char line[1024], where[1100];
  int lineno = 0;
  if (!f) {
    say("%s: %s", path, strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    char *w[8], *save = NULL, *p;
    int n = 0, rc = 0;
    lineno++;
    snprintf(where, sizeof where, "%s:%d: ", path, lineno);
    if ((p = strchr(line, '#'))) *p = 0;
    for (p = strtok_r(line, " \t\r\n", &save); p && n < 8;
         p = strtok_r(NULL, " \t\r\n", &save))
      w[n++] = p;
    if (!n) continue;
    if (!strcmp(w[0], "table")) {
      if (n != 3)
        rc = usage("%sa table line is 'table NAME KEYTYPE'", where);
      else
        rc = add_table(s, w[1], strlen(w[1]), w[2], strlen(w[2]), where);
    } else {
      unsigned flags = 0;
      int i;
      if (n < 2)
        rc = usage("%sa column line is 'NAME TYPE [notnull] [local]'", where);
      for (i = 2; !rc && i < n; i++) rc = parse_flags(w[i], &flags, where);
      if (!rc)
        rc = add_col(s, w[0], strlen(w[0]), w[1], strlen(w[1]), flags, where);
    }
    if (rc) {
      fclose(f);
      return -1;
    }
  }
  fclose(f);
  return 0;
}

static int cmd_init(int argc, char **argv) {
  schema_in *s;
  const char *db = NULL, *file = NULL;
  sync_env *env = NULL;
  int i, rc, ret = EX_FAIL;
  unsigned t;
  s = (schema_in *)calloc(1, sizeof *s);
  if (!s) return EX_FAIL;
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--schema")) {
      if (++i == argc) {
        usage("--schema needs a FILE");
        goto out2;
      }
      file = argv[i];
    } else if (!strcmp(a, "--table")) {
      const char *c;
      if (++i == argc) {
        usage("--table needs NAME:KEYTYPE");
        goto out2;
      }
      c = strchr(argv[i], ':');
      if (!c || c == argv[i]) {
        usage("--table %s: a table is NAME:KEYTYPE", argv[i]);
        goto out2;
      }
      if (add_table(s, argv[i], (size_t)(c - argv[i]), c + 1, strlen(c + 1),
                    ""))
        goto out2;
    } else if (a[0] == '-' && a[1]) {
      usage("unknown option '%s'", a);
      goto out2;
    } else if (!db) {
      db = a;
    } else if (col_word(s, a, "")) {
      goto out2;
    }
  }
  if (!db) {
    usage("which database? (synctl init DB --table ...)");
    goto out2;
  }
  if (file && s->nt) {
    usage("give --schema or --table, not both");
    goto out2;
  }
  if (file && schema_file(s, file)) goto out2;
  if (!s->nt) {
    usage("no tables: give --table NAME:KEYTYPE COL:TYPE... or --schema FILE");
    goto out2;
  }
  for (t = 0; t < s->nt; t++)
    if (!s->t[t].ncolumns) {
      usage("table '%s' has no columns", s->t[t].name);
      goto out2;
    }
  if (file_exists(db)) {
    say("%s: exists already", db);
    goto out;
  }
  if ((rc = sync_env_create(NULL, &env)) ||
      (rc = sync_env_set_schema(env, s->t, s->nt)) ||
      (rc = sync_env_open(env, db, 0))) {
    lib_fail(env, db, rc, "cannot create");
    goto out;
  }
  {
    uint8_t site[16];
    char hex[33];
    sync_env_site_id(env, site);
    hex_str(site, 16, hex);
    printf("created %s: %u table%s, site %s\n", db, s->nt,
           s->nt == 1 ? "" : "s", hex);
  }
  ret = EX_OK;
out:
  sync_env_close(env);
  schema_free(s);
  free(s);
  return ret;
out2:
  schema_free(s);
  free(s);
  return EX_USAGE;
}

/* "text notnull" for column c. */
static const char *col_desc(const sync_column_def *c, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s", type_name(c->type),
           c->flags & SYNC_COL_NOTNULL ? " notnull" : "");
  return buf;
}

/* The difference between the schemas of a (at path an) and b, one line
 * each; returns how many. */
static unsigned schema_lines(sync_env *a, const char *an, sync_env *b,
                             const char *bn) {
  unsigned na = sync_env_table_count(a), nb = sync_env_table_count(b);
  unsigned t, c, lines = 0;
  char x[32], y[32];
  for (t = 0; t < na && t < nb; t++) {
    sync_table_def da, db;
    sync_env_table_def(a, t, &da);
    sync_env_table_def(b, t, &db);
    if (strcmp(da.name, db.name)) {
      printf("differs: table %u is '%s' in %s, '%s' in %s\n", t, da.name, an,
             db.name, bn);
      lines++;
      continue;
    }
    if (da.key_type != db.key_type) {
      printf("differs: %s key is %s in %s, %s in %s\n", da.name,
             type_name(da.key_type), an, type_name(db.key_type), bn);
      lines++;
    }
    for (c = 0; c < da.ncolumns && c < db.ncolumns; c++) {
      const sync_column_def *p = &da.columns[c], *q = &db.columns[c];
      if (!strcmp(p->name, q->name) && p->type == q->type &&
          (p->flags & SYNC_COL_NOTNULL) == (q->flags & SYNC_COL_NOTNULL))
        continue;
      printf("differs: %s column %u is '%s' %s in %s, '%s' %s in %s\n",
             da.name, c, p->name, col_desc(p, x, sizeof x), an, q->name,
             col_desc(q, y, sizeof y), bn);
      lines++;
    }
    for (; c < da.ncolumns; c++, lines++)
      printf("only in %s: %s.%s %s\n", an, da.name, da.columns[c].name,
             col_desc(&da.columns[c], x, sizeof x));
    for (; c < db.ncolumns; c++, lines++)
      printf("only in %s: %s.%s %s\n", bn, db.name, db.columns[c].name,
             col_desc(&db.columns[c], x, sizeof x));
  }
  for (; t < na || t < nb; t++, lines++) {
    sync_env *e = t < na ? a : b;
    sync_table_def d;
    sync_env_table_def(e, t, &d);
    printf("only in %s: table %s %s (", t < na ? an : bn, d.name,
           type_name(d.key_type));
    for (c = 0; c < d.ncolumns; c++)
      printf("%s%s %s", c ? ", " : "", d.columns[c].name,
             col_desc(&d.columns[c], x, sizeof x));
    printf(")\n");
  }
  return lines;
}

static int schema_diff(const char *an, const char *bn) {
  sync_env *a, *b;
  uint64_t va = 0, ha = 0, vb = 0, hb = 0;
  unsigned char *buf = NULL;
  int64_t len;
  int rc = EX_OK;
  if (open_db(an, 1, &a)) return EX_FAIL;
  if (open_db(bn, 1, &b)) {
    sync_env_close(a);
    return EX_FAIL;
  }
  sync_env_schema_info(a, &va, &ha);
  sync_env_schema_info(b, &vb, &hb);
  printf("# %s: schema version %llu, hash %016llx\n", an,
         (unsigned long long)va, (unsigned long long)ha);
  printf("# %s: schema version %llu, hash %016llx\n", bn,
         (unsigned long long)vb, (unsigned long long)hb);
  if (!schema_lines(a, an, b, bn)) {
    printf("equal: the same tables and columns\n");
    goto out;
  }
  /* The verdict is the library's, as a session would find it. */
  len = sync_env_schema_export(b, NULL, 0);
  if (len < 0 || !(buf = (unsigned char *)malloc((size_t)len + 1)) ||
      sync_env_schema_export(b, buf, (size_t)len) != len) {
    rc = lib_fail(b, bn, len < 0 ? (int)len : SYNC_ENOMEM,
                  "cannot read the schema");
    goto out;
  }
  if (sync_env_schema_accept(a, buf, (size_t)len) == 0) {
    printf("compatible: they sync; each keeps the columns it does not know "
           "and sends them on, and rows of a table it lacks wait until it "
           "adds the table\n");
  } else {
    printf("incompatible: sessions between them fail (%s)\n",
           sync_env_errmsg(a));
    rc = EX_FAIL;
  }
out:
  free(buf);
  sync_env_close(a);
  sync_env_close(b);
  return rc;
}

static int cmd_schema(int argc, char **argv) {
  sync_env *env;
  uint64_t ver = 0, hash = 0;
  unsigned t, c, n;
  if (argc == 3 && !strcmp(argv[1], "--diff")) return schema_diff(argv[0], argv[2]);
  if (argc == 2 && !strcmp(argv[1], "--diff")) return usage("--diff needs OTHER");
  if (argc != 1) return usage("give one DB, or DB --diff OTHER");
  if (open_db(argv[0], 1, &env)) return EX_FAIL;
  sync_env_schema_info(env, &ver, &hash);
  printf("# schema of %s: version %llu, hash %016llx\n", argv[0],
         (unsigned long long)ver, (unsigned long long)hash);
  n = sync_env_table_count(env);
  for (t = 0; t < n; t++) {
    sync_table_def d;
    sync_env_table_def(env, t, &d);
    printf("table %s %s\n", d.name, type_name(d.key_type));
    for (c = 0; c < d.ncolumns; c++)
      printf("  %s %s%s%s\n", d.columns[c].name, type_name(d.columns[c].type),
             d.columns[c].flags & SYNC_COL_NOTNULL ? " notnull" : "",
             d.columns[c].flags & SYNC_COL_LOCAL ? " local" : "");
  }
  sync_env_close(env);
  return EX_OK;
}

static int cmd_add_column(int argc, char **argv) {
  sync_env *env;
  unsigned t;
  schema_in *s;
  int rc;
  if (argc != 3) return usage("give DB TABLE COL:TYPE");
  s = (schema_in *)calloc(1, sizeof *s);
  if (!s) return EX_FAIL;
  add_table(s, "x", 1, "text", 4, "");
  if (col_word(s, argv[2], "")) {
    schema_free(s);
    free(s);
    return EX_USAGE;
  }
  if (open_db(argv[0], 0, &env))
    rc = EX_FAIL;
  else if (find_table(env, argv[0], argv[1], &t))
    rc = EX_FAIL;
  else if (s->c[0][0].flags & SYNC_COL_NOTNULL) {
    say("%s: a new column cannot be notnull: existing rows read it as NULL",
        argv[0]);
    rc = EX_FAIL;
  } else if ((rc = sync_env_add_column(env, t, &s->c[0][0]))) {
    if (rc == SYNC_EEXIST)
      say("%s: table '%s' has a column '%s' already", argv[0], argv[1],
          s->c[0][0].name);
    else
      lib_fail(env, argv[0], rc, "cannot add the column");
    rc = EX_FAIL;
  } else {
    uint64_t ver = 0, hash = 0;
    sync_env_schema_info(env, &ver, &hash);
    printf("added %s.%s %s; schema version %llu\n", argv[1], s->c[0][0].name,
           type_name(s->c[0][0].type), (unsigned long long)ver);
  }
  sync_env_close(env);
  schema_free(s);
  free(s);
  return rc;
}

/* ---------------------------------------------------------------------
 * Rows
 * ------------------------------------------------------------------- */
static int cmd_put(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  sync_value vals[MAXC];
  unsigned char *hold[MAXC];
  int given[MAXC];
  unsigned t, col, i;
  keybuf k;
  sync_txn *x = NULL;
  int rc, ret = EX_FAIL, a, nhold = 0;
  if (argc < 4) return usage("give DB TABLE KEY COL=VALUE...");
  for (a = 3; a < argc; a++)
    if (!strchr(argv[a], '=') || argv[a][0] == '=')
      return usage("'%s': give COL=VALUE", argv[a]);
  if (open_db(argv[0], 0, &env)) return EX_FAIL;
  if (find_table(env, argv[0], argv[1], &t) ||
      parse_key(env, argv[0], t, argv[2], &k))
    goto out;
  sync_env_table_def(env, t, &d);
  if (d.ncolumns > MAXC) goto out;
  memset(given, 0, sizeof given);
  for (i = 0; i < d.ncolumns; i++) vals[i] = sync_null();
  for (a = 3; a < argc; a++) {
    const char *eq = strchr(argv[a], '=');
    if (find_column(env, argv[0], t, argv[a], (size_t)(eq - argv[a]), &col))
      goto out;
    if (given[col]) {
      say("%s: column '%s' given twice", argv[0], d.columns[col].name);
      goto out;
    }
    if (parse_value(argv[0], &d, col, eq + 1, &vals[col], &hold[nhold]))
      goto out;
    if (hold[nhold]) nhold++;
    given[col] = 1;
  }
  if ((rc = sync_txn_begin(env, 0, &x))) {
    lib_fail(env, argv[0], rc, "cannot begin");
    goto out;
  }
  rc = sync_contains(x, t, k.b, k.n);
  /* Name the notnull column a new row would leave NULL, or that is set
   * to NULL, before the library refuses it. */
  for (i = 0; rc >= 0 && i < d.ncolumns; i++)
    if ((d.columns[i].flags & SYNC_COL_NOTNULL) && vals[i].type == SYNC_NULL &&
        (given[i] || rc == 0)) {
      say("%s: column '%s' of '%s' is notnull: give %s=VALUE", argv[0],
          d.columns[i].name, d.name, d.columns[i].name);
      sync_txn_abort(x);
      goto out;
    }
  if (rc == 1) {
    unsigned cols[MAXC], n = 0;
    sync_value v[MAXC];
    for (i = 0; i < d.ncolumns; i++)
      if (given[i]) cols[n] = i, v[n++] = vals[i];
    rc = sync_update(x, t, k.b, k.n, cols, v, n);
  } else if (rc == 0) {
    rc = sync_put(x, t, k.b, k.n, vals, d.ncolumns);
  }
  if (rc) {
    write_fail(env, argv[0], &d, rc);
    sync_txn_abort(x);
    goto out;
  }
  if ((rc = sync_txn_commit(x))) {
    lib_fail(env, argv[0], rc, "commit failed");
    goto out;
  }
  ret = EX_OK;
out:
  while (nhold) free(hold[--nhold]);
  sync_env_close(env);
  return ret;
}

static int cmd_get(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  sync_value vals[MAXC];
  unsigned t, i;
  keybuf k;
  sync_txn *x;
  int rc, ret = EX_FAIL, json = 0, n = 0;
  char *pos[3];
  for (i = 0; i < (unsigned)argc; i++) {
    if (!strcmp(argv[i], "--json"))
      json = 1;
    else if (n < 3)
      pos[n++] = argv[i];
    else
      return usage("too many arguments");
  }
  if (n != 3) return usage("give DB TABLE KEY");
  if (open_db(pos[0], 1, &env)) return EX_FAIL;
  if (find_table(env, pos[0], pos[1], &t) ||
      parse_key(env, pos[0], t, pos[2], &k))
    goto out;
  sync_env_table_def(env, t, &d);
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &x))) {
    lib_fail(env, pos[0], rc, "cannot begin");
    goto out;
  }
  rc = sync_get(x, t, k.b, k.n, vals, d.ncolumns);
  if (rc == SYNC_NOTFOUND) {
    say("%s: table '%s' has no row '%s'", pos[0], d.name, pos[2]);
    ret = EX_NOTFOUND;
  } else if (rc) {
    lib_fail(env, pos[0], rc, "cannot read");
  } else if (json) {
    printf("{\"key\":");
    json_key(stdout, d.key_type, k.b, k.n);
    for (i = 0; i < d.ncolumns; i++) {
      printf(",");
      json_str(stdout, (const unsigned char *)d.columns[i].name,
               strlen(d.columns[i].name));
      printf(":");
      json_value(stdout, &vals[i]);
    }
    printf("}\n");
    ret = EX_OK;
  } else {
    size_t w = 0;
    for (i = 0; i < d.ncolumns; i++)
      if (strlen(d.columns[i].name) > w) w = strlen(d.columns[i].name);
    for (i = 0; i < d.ncolumns; i++) {
      printf("%-*s  ", (int)w, d.columns[i].name);
      put_value(stdout, &vals[i]);
      printf("\n");
    }
    ret = EX_OK;
  }
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

static int cmd_del(int argc, char **argv) {
  sync_env *env;
  unsigned t;
  keybuf k;
  sync_txn *x;
  int rc, ret = EX_FAIL;
  if (argc != 3) return usage("give DB TABLE KEY");
  if (open_db(argv[0], 0, &env)) return EX_FAIL;
  if (find_table(env, argv[0], argv[1], &t) ||
      parse_key(env, argv[0], t, argv[2], &k))
    goto out;
  if ((rc = sync_txn_begin(env, 0, &x))) {
    lib_fail(env, argv[0], rc, "cannot begin");
    goto out;
  }
  rc = sync_delete(x, t, k.b, k.n);
  if (rc == SYNC_NOTFOUND) {
    say("%s: table '%s' has no row '%s'", argv[0], argv[1], argv[2]);
    sync_txn_abort(x);
    ret = EX_NOTFOUND;
  } else if (rc) {
    lib_fail(env, argv[0], rc, "cannot delete");
    sync_txn_abort(x);
  } else if ((rc = sync_txn_commit(x))) {
    lib_fail(env, argv[0], rc, "commit failed");
  } else {
    ret = EX_OK;
  }
out:
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * dump and load
 * ------------------------------------------------------------------- */
#define COLW_MAX 48 /* wider values run past their column */

static int cmd_dump(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  sync_value vals[MAXC];
  size_t w[MAXC + 1];
  unsigned t, i;
  sync_txn *x;
  sync_cursor *c = NULL;
  sync_key key;
  int rc = 0, ret = EX_FAIL, json = 0, n = 0, pass;
  char *pos[2];
  uint64_t rows = 0;
  for (i = 0; i < (unsigned)argc; i++) {
    if (!strcmp(argv[i], "--json"))
      json = 1;
    else if (argv[i][0] == '-' && argv[i][1])
      return usage("unknown option '%s'", argv[i]);
    else if (n < 2)
      pos[n++] = argv[i];
    else
      return usage("too many arguments");
  }
  if (n != 2) return usage("give DB TABLE");
  if (open_db(pos[0], 1, &env)) return EX_FAIL;
  if (find_table(env, pos[0], pos[1], &t)) goto out0;
  sync_env_table_def(env, t, &d);
  if (json && sync_env_column(env, t, "key", &i) == 0) {
    say("%s: table '%s' has a column named 'key', which the JSON form uses for "
        "the key",
        pos[0], d.name);
    goto out0;
  }
  if ((rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &x))) {
    lib_fail(env, pos[0], rc, "cannot begin");
    goto out0;
  }
  w[0] = 3;
  for (i = 0; i < d.ncolumns; i++) w[i + 1] = strlen(d.columns[i].name);
  /* Pass 0 measures the columns (aligned form only), pass 1 prints. */
  for (pass = json ? 1 : 0; pass < 2; pass++) {
    if ((rc = sync_cursor_open(x, t, &c))) break;
    if (pass == 1 && !json) {
      printf("%-*s", (int)w[0], "key");
      for (i = 0; i < d.ncolumns; i++)
        printf("  %-*s", i + 1 < d.ncolumns ? (int)w[i + 1] : 0,
               d.columns[i].name);
      printf("\n");
    }
    while ((rc = sync_cursor_next(c, &key, vals, d.ncolumns)) == 0) {
      if (pass == 0) {
        size_t kw =
            put_key(NULL, d.key_type, (const unsigned char *)key.data, key.len);
        if (kw > w[0]) w[0] = kw < COLW_MAX ? kw : COLW_MAX;
        for (i = 0; i < d.ncolumns; i++) {
          size_t vw = put_value(NULL, &vals[i]);
          if (vw > w[i + 1]) w[i + 1] = vw < COLW_MAX ? vw : COLW_MAX;
        }
        continue;
      }
      rows++;
      if (json) {
        printf("{\"key\":");
        json_key(stdout, d.key_type, (const unsigned char *)key.data, key.len);
        for (i = 0; i < d.ncolumns; i++) {
          printf(",");
          json_str(stdout, (const unsigned char *)d.columns[i].name,
                   strlen(d.columns[i].name));
          printf(":");
          json_value(stdout, &vals[i]);
        }
        printf("}\n");
      } else {
        size_t kw = put_key(stdout, d.key_type, (const unsigned char *)key.data,
                            key.len);
        printf("%*s", (int)(kw < w[0] ? w[0] - kw : 0), "");
        for (i = 0; i < d.ncolumns; i++) {
          size_t vw;
          printf("  ");
          vw = put_value(stdout, &vals[i]);
          if (i + 1 < d.ncolumns)
            printf("%*s", (int)(vw < w[i + 1] ? w[i + 1] - vw : 0), "");
        }
        printf("\n");
      }
    }
    sync_cursor_close(c);
    c = NULL;
    if (rc != SYNC_NOTFOUND) break;
    rc = 0;
  }
  if (rc)
    lib_fail(env, pos[0], rc, "cannot read the table");
  else
    ret = EX_OK;
  sync_txn_abort(x);
out0:
  sync_env_close(env);
  (void)rows;
  return ret;
}

/* A minimal JSON reader for one flat object per line. */
typedef struct jrd {
  const char *p, *end;
  char err[128];
} jrd;

static void jws(jrd *r) {
  while (r->p < r->end &&
         (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n'))
    r->p++;
}

static void put_utf8(char **o, unsigned long cp) {
  unsigned char *q = (unsigned char *)*o;
  if (cp < 0x80)
    *q++ = (unsigned char)cp;
  else if (cp < 0x800)
    *q++ = (unsigned char)(0xc0 | (cp >> 6)),
    *q++ = (unsigned char)(0x80 | (cp & 63));
  else if (cp < 0x10000)
    *q++ = (unsigned char)(0xe0 | (cp >> 12)),
    *q++ = (unsigned char)(0x80 | ((cp >> 6) & 63)),
    *q++ = (unsigned char)(0x80 | (cp & 63));
  else
    *q++ = (unsigned char)(0xf0 | (cp >> 18)),
    *q++ = (unsigned char)(0x80 | ((cp >> 12) & 63)),
    *q++ = (unsigned char)(0x80 | ((cp >> 6) & 63)),
    *q++ = (unsigned char)(0x80 | (cp & 63));
  *o = (char *)q;
}

static int hex4(const char *p, unsigned long *out) {
  int i;
  *out = 0;
  for (i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0) return -1;
    *out = *out * 16 + (unsigned long)h;
  }
  return 0;
}

/* A string at r->p ('"' first), unescaped in place into out (room for
 * the same length); returns its length, or -1. */
static long jstr(jrd *r, char *out) {
  char *o = out;
  if (r->p >= r->end || *r->p != '"') return -1;
  r->p++;
  while (r->p < r->end && *r->p != '"') {
    char c = *r->p++;
    if ((unsigned char)c < 0x20) return -1;
    if (c != '\\') {
      *o++ = c;
      continue;
    }
    if (r->p >= r->end) return -1;
    c = *r->p++;
    switch (c) {
    case '"':
    case '\\':
    case '/': *o++ = c; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      unsigned long cp, lo;
      if (r->end - r->p < 4 || hex4(r->p, &cp)) return -1;
      r->p += 4;
      if (cp >= 0xd800 && cp < 0xdc00) {
        if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' ||
            hex4(r->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
          return -1;
        r->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      put_utf8(&o, cp);
      break;
    }
    default: return -1;
    }
  }
  if (r->p >= r->end) return -1;
  r->p++;
  return (long)(o - out);
}

typedef struct jval {
  int kind;      /* 0 null, 1 number, 2 string, 3 true, 4 false */
  const char *s; /* string bytes or number text */
  size_t n;
  int is_int;
} jval;

static int jvalue(jrd *r, char *scratch, jval *v) {
  jws(r);
  memset(v, 0, sizeof *v);
  if (r->p >= r->end) return -1;
  if (*r->p == '"') {
    long n = jstr(r, scratch);
    if (n < 0) return -1;
    v->kind = 2;
    v->s = scratch;
    v->n = (size_t)n;
    return 0;
  }
  if (r->end - r->p >= 4 && !strncmp(r->p, "null", 4))
    return r->p += 4, v->kind = 0, 0;
  if (r->end - r->p >= 4 && !strncmp(r->p, "true", 4))
    return r->p += 4, v->kind = 3, 0;
  if (r->end - r->p >= 5 && !strncmp(r->p, "false", 5))
    return r->p += 5, v->kind = 4, 0;
  {
    const char *q = r->p;
    int is_int = 1;
    while (q < r->end && strchr("+-0123456789.eE", *q)) {
      if (*q == '.' || *q == 'e' || *q == 'E') is_int = 0;
      q++;
    }
    if (q == r->p) return -1;
    v->kind = 1;
    v->s = r->p;
    v->n = (size_t)(q - r->p);
    v->is_int = is_int;
    r->p = q;
    return 0;
  }
}

/* The value of column c from JSON; blob bytes into hold (caller frees). */
static int jto_value(const sync_column_def *c, const jval *jv, sync_value *out,
                     unsigned char **hold, char *err, size_t errcap) {
  char num[64];
  *hold = NULL;
  if (jv->kind == 0) {
    *out = sync_null();
    return 0;
  }
  if (jv->kind == 1) {
    if (jv->n >= sizeof num) goto bad;
    memcpy(num, jv->s, jv->n);
    num[jv->n] = 0;
  }
  switch (c->type) {
  case SYNC_INTEGER: {
    int64_t i;
    if (jv->kind == 3 || jv->kind == 4) {
      *out = sync_int(jv->kind == 3);
      return 0;
    }
    if (jv->kind != 1 || !jv->is_int || parse_i64(num, &i)) goto bad;
    *out = sync_int(i);
    return 0;
  }
  case SYNC_REAL: {
    char *end;
    double r;
    if (jv->kind != 1) goto bad;
    r = strtod(num, &end);
    if (*end) goto bad;
    *out = sync_real(r);
    return 0;
  }
  case SYNC_TEXT:
    if (jv->kind != 2) goto bad;
    *out = sync_text(jv->s, jv->n);
    return 0;
  default: {
    size_t n = 0;
    if (jv->kind != 2 || !(*hold = from_hex(jv->s, jv->n, &n))) goto bad;
    *out = sync_blob(*hold, n);
    return 0;
  }
  }
bad:
  snprintf(err, errcap, "column '%s' is %s%s", c->name, type_name(c->type),
           c->type == SYNC_BLOB ? " (a string of hex digits)" : "");
  return -1;
}

static int cmd_load(int argc, char **argv) {
  sync_env *env;
  sync_table_def d;
  unsigned t, i;
  FILE *f;
  char *line = NULL, *scratch = NULL, where[64];
  size_t cap = 0, batch = 1000, inbatch = 0;
  ssize_t len;
  long lineno = 0;
  uint64_t total = 0;
  sync_txn *x = NULL;
  int rc, ret = EX_FAIL, n = 0;
  char *pos[3];
  for (i = 0; i < (unsigned)argc; i++) {
    if (!strcmp(argv[i], "--batch")) {
      uint64_t b;
      if (i + 1 == (unsigned)argc || parse_u64(argv[++i], &b) || !b)
        return usage("--batch needs a number of rows");
      batch = (size_t)b;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return usage("unknown option '%s'", argv[i]);
    } else if (n < 3) {
      pos[n++] = argv[i];
    } else {
      return usage("too many arguments");
    }
  }
  if (n != 3) return usage("give DB TABLE FILE (or - for standard input)");
  if (!strcmp(pos[2], "-"))
    f = stdin;
  else if (!(f = fopen(pos[2], "r"))) {
    say("%s: %s", pos[2], strerror(errno));
    return EX_FAIL;
  }
  if (open_db(pos[0], 0, &env)) {
    if (f != stdin) fclose(f);
    return EX_FAIL;
  }
  if (find_table(env, pos[0], pos[1], &t)) goto out;
  sync_env_table_def(env, t, &d);
  while ((len = getline(&line, &cap, f)) >= 0) {
    jrd r;
    sync_value vals[MAXC];
    unsigned char *hold[MAXC];
    int nhold = 0, have_key = 0, bad = 0;
    keybuf k;
    char *sp;
    lineno++;
    snprintf(where, sizeof where, "%s:%ld",
             !strcmp(pos[2], "-") ? "stdin" : pos[2], lineno);
    r.p = line;
    r.end = line + len;
    r.err[0] = 0;
    jws(&r);
    if (r.p == r.end) continue; /* blank line */
    free(scratch);
    if (!(scratch = (char *)malloc((size_t)len + 8))) goto out;
    sp = scratch;
    for (i = 0; i < d.ncolumns; i++) vals[i] = sync_null();
    if (*r.p != '{') {
      snprintf(r.err, sizeof r.err, "not a JSON object");
      bad = 1;
    } else {
      r.p++;
      jws(&r);
      if (r.p < r.end && *r.p == '}')
        r.p++;
      else
        for (;;) {
          char *name = sp;
          long nl;
          jval jv;
          jws(&r);
          if ((nl = jstr(&r, name)) < 0) {
            snprintf(r.err, sizeof r.err, "expected a quoted name");
            bad = 1;
            break;
          }
          sp += nl + 1;
          jws(&r);
          if (r.p >= r.end || *r.p++ != ':' || jvalue(&r, sp, &jv)) {
            snprintf(r.err, sizeof r.err, "malformed value of '%.*s'", (int)nl,
                     name);
            bad = 1;
            break;
          }
          if (jv.kind == 2) sp += jv.n + 1;
          if (nl == 3 && !memcmp(name, "key", 3)) {
            char kb[2 * SYNC_MAX_KEY + 3];
            if (jv.kind == 1 && d.key_type == SYNC_INTEGER &&
                jv.n < sizeof kb) {
              memcpy(kb, jv.s, jv.n);
              kb[jv.n] = 0;
            } else if (jv.kind == 2 && d.key_type != SYNC_INTEGER &&
                       jv.n < sizeof kb && !memchr(jv.s, 0, jv.n)) {
              memcpy(kb, jv.s, jv.n);
              kb[jv.n] = 0;
            } else {
              snprintf(r.err, sizeof r.err, "\"key\" must be a %s",
                       d.key_type == SYNC_INTEGER ? "number" : "string");
              bad = 1;
              break;
            }
            if (parse_key(env, where, t, kb, &k)) {
              bad = 2; /* already said */
              break;
            }
            have_key = 1;
          } else {
            unsigned col;
            unsigned j;
            for (j = 0; j < d.ncolumns; j++)
              if (strlen(d.columns[j].name) == (size_t)nl &&
                  !memcmp(d.columns[j].name, name, (size_t)nl))
                break;
            if (j == d.ncolumns) {
              find_column(env, where, t, name, (size_t)nl, &col);
              bad = 2;
              break;
            }
            if (jto_value(&d.columns[j], &jv, &vals[j], &hold[nhold], r.err,
                          sizeof r.err)) {
              bad = 1;
              break;
            }
            if (hold[nhold]) nhold++;
          }
          jws(&r);
          if (r.p < r.end && *r.p == ',') {
            r.p++;
            continue;
          }
          if (r.p < r.end && *r.p == '}') {
            r.p++;
            break;
          }
          snprintf(r.err, sizeof r.err, "expected ',' or '}'");
          bad = 1;
          break;
        }
      jws(&r);
      if (!bad && r.p != r.end) {
        snprintf(r.err, sizeof r.err, "text after the object");
        bad = 1;
      }
      if (!bad && !have_key) {
        snprintf(r.err, sizeof r.err, "no \"key\"");
        bad = 1;
      }
    }
    if (!bad) {
      if (!x && (rc = sync_txn_begin(env, 0, &x))) {
        lib_fail(env, pos[0], rc, "cannot begin");
        bad = 2;
      } else if ((rc = sync_put(x, t, k.b, k.n, vals, d.ncolumns))) {
        if (rc == SYNC_ECONSTRAINT) {
          unsigned j;
          snprintf(r.err, sizeof r.err, "a notnull column would be NULL");
          for (j = 0; j < d.ncolumns; j++)
            if ((d.columns[j].flags & SYNC_COL_NOTNULL) &&
                vals[j].type == SYNC_NULL) {
              snprintf(r.err, sizeof r.err, "column '%s' is notnull",
                       d.columns[j].name);
              break;
            }
        } else
          snprintf(r.err, sizeof r.err, "%s", sync_strerror(rc));
        bad = 1;
      }
    }
    while (nhold) free(hold[--nhold]);
    if (bad) {
      if (bad == 1) say("%s: %s", where, r.err);
      goto out;
    }
    total++;
    if (++inbatch == batch) {
      rc = sync_txn_commit(x);
      x = NULL;
      inbatch = 0;
      if (rc) {
        lib_fail(env, pos[0], rc, "commit failed");
        goto out;
      }
    }
  }
  if (x) {
    rc = sync_txn_commit(x);
    x = NULL;
    if (rc) {
      lib_fail(env, pos[0], rc, "commit failed");
      goto out;
    }
  }
  printf("loaded %llu rows into %s\n", (unsigned long long)total, d.name);
  ret = EX_OK;
out:
  sync_txn_abort(x);
  free(line);
  free(scratch);
  if (f != stdin) fclose(f);
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * Change log, version vector, peers, conflicts
 * ------------------------------------------------------------------- */
/* An HLC as "2026-12-01T18:20:01.123Z+counter". */
static void fmt_hlc(uint64_t hlc, char *out, size_t cap) {
  uint64_t ms = hlc >> 16;
  time_t sec = (time_t)(ms / 1000);
  struct tm tm;
  char b[32];
  if (!hlc) {
    snprintf(out, cap, "-");
    return;
  }
  gmtime_r(&sec, &tm);
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%03uZ+%u", b, (unsigned)(ms % 1000),
           (unsigned)(hlc & 0xffff));
}

static int begin_ro(sync_env *env, const char *db, sync_txn **x) {
  int rc = sync_txn_begin(env, SYNC_TXN_RDONLY, x);
  if (rc) return lib_fail(env, db, rc, "cannot begin a transaction");
  return 0;
}

static int cmd_log(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  sync_changes *it;
  sync_change ch;
  uint64_t since = 0;
  const char *db = NULL;
  int i, rc, ret = EX_FAIL;
  for (i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--since")) {
      if (i + 1 == argc || parse_u64(argv[++i], &since))
        return usage("--since needs a local version (a number)");
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return usage("unknown option '%s'", argv[i]);
    } else if (!db) {
      db = argv[i];
    } else {
      return usage("too many arguments");
    }
  }
  if (!db) return usage("give DB");
  if (open_db(db, 1, &env)) return EX_FAIL;
  if (begin_ro(env, db, &x)) goto out0;
  if ((rc = sync_changes_open(x, since, &it))) {
    lib_fail(env, db, rc, "cannot read the change log");
    goto out1;
  }
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
    fmt_hlc(best.hlc, hb, sizeof hb);
    hex_str(best.site, 8, site);
    printf("%-8llu %-12s ", (unsigned long long)ch.version, d.name);
    kw = put_key(stdout, d.key_type, (const unsigned char *)ch.key.data,
                 ch.key.len);
    printf("%*s %-7s %4llu  %-31s %s\n", (int)(kw < 20 ? 20 - kw : 0), "",
           ch.causal_length & 1 ? "live" : "deleted",
           (unsigned long long)ch.causal_length, hb, site);
  }
  sync_changes_close(it);
  if (rc != SYNC_NOTFOUND)
    lib_fail(env, db, rc, "cannot read the change log");
  else
    ret = EX_OK;
out1:
  sync_txn_abort(x);
out0:
  sync_env_close(env);
  return ret;
}

static int cmd_vv(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  sync_stamp vv[256];
  size_t n = 0, i;
  uint8_t me[16];
  int rc, ret = EX_FAIL;
  if (argc != 1) return usage("give DB");
  if (open_db(argv[0], 1, &env)) return EX_FAIL;
  sync_env_site_id(env, me);
  if (begin_ro(env, argv[0], &x)) goto out;
  if ((rc = sync_vv_get(x, vv, 256, &n))) {
    lib_fail(env, argv[0], rc, "cannot read the version vector");
  } else {
    printf("%-32s  %-20s  %s\n", "site", "hlc", "time");
    for (i = 0; i < n && i < 256; i++) {
      char site[33], hb[48];
      hex_str(vv[i].site, 16, site);
      fmt_hlc(vv[i].hlc, hb, sizeof hb);
      printf("%s  %-20llu  %s%s\n", site, (unsigned long long)vv[i].hlc, hb,
             memcmp(vv[i].site, me, 16) ? "" : "  (this replica)");
    }
    if (n > 256) printf("... and %zu more\n", n - 256);
    ret = EX_OK;
  }
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

static int cmd_peers(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  sync_peer_info *p = NULL;
  size_t n = 0, i;
  uint64_t tombs = 0;
  int rc, ret = EX_FAIL;
  if (argc != 1) return usage("give DB");
  if (open_db(argv[0], 1, &env)) return EX_FAIL;
  if (begin_ro(env, argv[0], &x)) goto out;
  if ((rc = sync_peers_get(x, NULL, 0, &n)) ||
      (n && !(p = (sync_peer_info *)calloc(n, sizeof *p))) ||
      (n && (rc = sync_peers_get(x, p, n, &n))) ||
      (rc = sync_tombstones(x, &tombs))) {
    lib_fail(env, argv[0], rc ? rc : SYNC_ENOMEM, "cannot read the peers");
  } else {
    printf("%-32s  %-24s  %-16s  %s\n", "peer", "we hold of its log",
           "it acknowledged", "tombstones kept for it");
    for (i = 0; i < n; i++) {
      char site[33], cur[64], ack[40];
      hex_str(p[i].site, 16, site);
      if (p[i].initial)
        snprintf(cur, sizeof cur, "initial from v%llu, table %u",
                 (unsigned long long)p[i].v0, p[i].table);
      else if (p[i].seq == 0xffffffffu)
        snprintf(cur, sizeof cur, "v%llu (all)",
                 (unsigned long long)p[i].version);
      else
        snprintf(cur, sizeof cur, "v%llu.%u", (unsigned long long)p[i].version,
                 p[i].seq);
      if (p[i].partial) strncat(cur, " partial", sizeof cur - strlen(cur) - 1);
      if (p[i].acked_seq == 0xffffffffu)
        snprintf(ack, sizeof ack, "v%llu (all)",
                 (unsigned long long)p[i].acked_version);
      else
        snprintf(ack, sizeof ack, "v%llu.%u",
                 (unsigned long long)p[i].acked_version, p[i].acked_seq);
      printf("%s  %-24s  %-16s  %llu\n", site, cur, ack,
             (unsigned long long)p[i].tombstones_pending);
    }
    printf("%zu peer%s; %llu tombstone%s kept\n", n, n == 1 ? "" : "s",
           (unsigned long long)tombs, tombs == 1 ? "" : "s");
    ret = EX_OK;
  }
  free(p);
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

static const char *kind_name(int k) {
  switch (k) {
  case SYNC_BOTH_MODIFIED: return "both-modified";
  case SYNC_DELETED_SOURCE: return "deleted-remote";
  case SYNC_DELETED_TARGET: return "deleted-local";
  default: return "other";
  }
}

static void conflict_line(sync_env *env, const sync_conflict *c) {
  sync_table_def d;
  size_t kw;
  const char *col = "(row)";
  sync_env_table_def(env, c->table, &d);
  if (c->column != SYNC_ROW && c->column < d.ncolumns)
    col = d.columns[c->column].name;
  printf("%-6llu %-15s %-12s ", (unsigned long long)c->id, kind_name(c->kind),
         d.name);
  kw = put_key(stdout, d.key_type, (const unsigned char *)c->key.data,
               c->key.len);
  printf("%*s %-12s %-7s %s\n", (int)(kw < 16 ? 16 - kw : 0), "", col,
         c->remote_won ? "remote" : "local", c->resolved ? "resolved" : "open");
}

static int cmd_conflicts(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  sync_conflicts *it;
  sync_conflict c;
  const char *db, *sub = "list";
  uint64_t id = 0;
  int rc, ret = EX_FAIL, all = 0, i, found = 0;
  if (argc < 1) return usage("give DB");
  db = argv[0];
  if (argc > 1) sub = argv[1];
  if (!strcmp(sub, "list")) {
    for (i = 2; i < argc; i++)
      if (!strcmp(argv[i], "--all"))
        all = 1;
      else
        return usage("list takes only --all");
  } else if (!strcmp(sub, "show") || !strcmp(sub, "resolve")) {
    if (argc != 3 || parse_u64(argv[2], &id))
      return usage("%s needs a conflict ID", sub);
  } else if (!strcmp(sub, "resolve-all")) {
    if (argc != 2) return usage("resolve-all takes no arguments");
  } else {
    return usage("unknown subcommand '%s' (list, show, resolve, resolve-all)",
                 sub);
  }
  if (open_db(db, !strcmp(sub, "list") || !strcmp(sub, "show"), &env))
    return EX_FAIL;
  if (!strcmp(sub, "resolve") || !strcmp(sub, "resolve-all")) {
    uint64_t n = 0;
    if ((rc = sync_txn_begin(env, 0, &x))) {
      lib_fail(env, db, rc, "cannot begin");
      goto out;
    }
    rc = sub[7] ? sync_conflicts_resolve_all(x, &n)
                : sync_conflict_resolve(x, id);
    if (rc == SYNC_NOTFOUND) {
      say("%s: no conflict %llu", db, (unsigned long long)id);
      sync_txn_abort(x);
      ret = EX_NOTFOUND;
    } else if (rc) {
      lib_fail(env, db, rc, "cannot resolve");
      sync_txn_abort(x);
    } else if ((rc = sync_txn_commit(x))) {
      lib_fail(env, db, rc, "commit failed");
    } else {
      if (sub[7])
        printf("marked %llu conflict%s resolved\n", (unsigned long long)n,
               n == 1 ? "" : "s");
      else
        printf("conflict %llu resolved\n", (unsigned long long)id);
      ret = EX_OK;
    }
    goto out;
  }
  if (begin_ro(env, db, &x)) goto out;
  if ((rc = sync_conflicts_open(
           x, !strcmp(sub, "list") && !all ? SYNC_CONFLICTS_UNRESOLVED : 0,
           &it))) {
    lib_fail(env, db, rc, "cannot read the conflict log");
    sync_txn_abort(x);
    goto out;
  }
  if (!strcmp(sub, "list"))
    printf("%-6s %-15s %-12s %-16s %-12s %-7s %s\n", "id", "kind", "table",
           "key", "column", "won", "state");
  while ((rc = sync_conflicts_next(it, &c)) == 0) {
    if (!strcmp(sub, "list")) {
      conflict_line(env, &c);
      found++;
    } else if (c.id == id) {
      char hl[48], hr[48], sl[33], sr[33];
      found = 1;
      fmt_hlc(c.local_stamp.hlc, hl, sizeof hl);
      fmt_hlc(c.remote_stamp.hlc, hr, sizeof hr);
      hex_str(c.local_stamp.site, 16, sl);
      hex_str(c.remote_stamp.site, 16, sr);
      conflict_line(env, &c);
      printf("  local:  ");
      put_value(stdout, &c.local);
      printf("   written %s by %s\n  remote: ", hl, sl);
      put_value(stdout, &c.remote);
      printf("   written %s by %s\n  kept:   the %s value\n", hr, sr,
             c.remote_won ? "remote" : "local");
      break;
    }
  }
  sync_conflicts_close(it);
  if (rc != SYNC_NOTFOUND && rc != 0) {
    lib_fail(env, db, rc, "cannot read the conflict log");
  } else if (!strcmp(sub, "show") && !found) {
    say("%s: no conflict %llu", db, (unsigned long long)id);
    ret = EX_NOTFOUND;
  } else {
    if (!strcmp(sub, "list"))
      printf("%d %sconflict%s\n", found, all ? "" : "unresolved ",
             found == 1 ? "" : "s");
    ret = EX_OK;
  }
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

static const char *reason_name(int r, char *buf, size_t cap) {
  switch (r) {
  case SYNC_REFUSE_TABLE: return "table";
  case SYNC_REFUSE_RELAY: return "relay";
  case SYNC_REFUSE_FUTURE: return "future";
  default: snprintf(buf, cap, "app:%d", r); return buf;
  }
}

static int cmd_rejected(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  sync_rejects *it;
  sync_reject e;
  const char *db, *sub = "list";
  uint64_t id = 0, n = 0;
  int rc, ret = EX_FAIL, found = 0;
  if (argc < 1) return usage("give DB");
  db = argv[0];
  if (argc > 1) sub = argv[1];
  if (!strcmp(sub, "list")) {
    if (argc != 2 && argc != 1) return usage("list takes no arguments");
  } else if (!strcmp(sub, "clear") || !strcmp(sub, "show")) {
    if (argc != 3 || parse_u64(argv[2], &id))
      return usage("%s needs a rejection ID", sub);
  } else if (!strcmp(sub, "clear-all")) {
    if (argc != 2) return usage("clear-all takes no arguments");
  } else {
    return usage("unknown subcommand '%s' (list, show, clear, clear-all)",
                 sub);
  }
  if (open_db(db, !strcmp(sub, "list") || !strcmp(sub, "show"), &env))
    return EX_FAIL;
  if (strcmp(sub, "list") && strcmp(sub, "show")) {
    if ((rc = sync_txn_begin(env, 0, &x))) {
      lib_fail(env, db, rc, "cannot begin");
      goto out;
    }
    rc = sub[5] ? sync_rejects_clear(x, &n) : sync_reject_clear(x, id);
    if (rc == SYNC_NOTFOUND) {
      say("%s: no rejection %llu", db, (unsigned long long)id);
      sync_txn_abort(x);
      ret = EX_NOTFOUND;
    } else if (rc) {
      lib_fail(env, db, rc, "cannot clear");
      sync_txn_abort(x);
    } else if ((rc = sync_txn_commit(x))) {
      lib_fail(env, db, rc, "commit failed");
    } else {
      if (sub[5])
        printf("cleared %llu rejection%s\n", (unsigned long long)n,
               n == 1 ? "" : "s");
      else
        printf("rejection %llu cleared\n", (unsigned long long)id);
      ret = EX_OK;
    }
    goto out;
  }
  if (begin_ro(env, db, &x)) goto out;
  if ((rc = sync_rejects_open(x, &it))) {
    lib_fail(env, db, rc, "cannot read the rejection log");
    sync_txn_abort(x);
    goto out;
  }
  printf("%-6s %-12s %-16s %-8s %-8s %s\n", "id", "table", "key", "reason",
         "state", "text");
  while ((rc = sync_rejects_next(it, &e)) == 0) {
    sync_table_def d;
    char rb[16];
    size_t kw;
    unsigned i;
    if (!strcmp(sub, "show") && e.id != id) continue;
    memset(&d, 0, sizeof d);
    d.name = "?";
    sync_env_table_def(env, e.table, &d);
    printf("%-6llu %-12s ", (unsigned long long)e.id, d.name);
    kw = put_key(stdout, d.key_type, (const unsigned char *)e.key.data,
                 e.key.len);
    printf("%*s %-8s %-8s %.*s\n", (int)(kw < 16 ? 16 - kw : 0), "",
           reason_name(e.reason, rb, sizeof rb),
           e.reverted ? "reverted" : "kept", (int)e.text_len, e.text);
    found++;
    if (strcmp(sub, "show")) continue;
    if (!e.ncolumns) printf("  refused: a delete\n");
    for (i = 0; i < e.ncolumns; i++) {
      printf("  %s = ", i < d.ncolumns ? d.columns[i].name : "?");
      put_value(stdout, &e.values[i]);
      printf("\n");
    }
    break;
  }
  sync_rejects_close(it);
  if (rc != SYNC_NOTFOUND && rc != 0) {
    lib_fail(env, db, rc, "cannot read the rejection log");
  } else if (!strcmp(sub, "show")) {
    if (found) {
      ret = EX_OK;
    } else {
      say("%s: no rejection %llu", db, (unsigned long long)id);
      ret = EX_NOTFOUND;
    }
  } else {
    printf("%d rejected write%s\n", found, found == 1 ? "" : "s");
    ret = EX_OK;
  }
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

static int cmd_gc(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  uint64_t n = 0, left = 0;
  int rc, ret = EX_FAIL;
  if (argc != 1) return usage("give DB");
  if (open_db(argv[0], 0, &env)) return EX_FAIL;
  if ((rc = sync_txn_begin(env, 0, &x))) {
    lib_fail(env, argv[0], rc, "cannot begin");
  } else if ((rc = sync_gc(x, &n)) || (rc = sync_tombstones(x, &left))) {
    lib_fail(env, argv[0], rc, "gc failed");
    sync_txn_abort(x);
  } else if ((rc = sync_txn_commit(x))) {
    lib_fail(env, argv[0], rc, "commit failed");
  } else {
    printf("collected %llu tombstone%s; %llu kept\n", (unsigned long long)n,
           n == 1 ? "" : "s", (unsigned long long)left);
    ret = EX_OK;
  }
  sync_env_close(env);
  return ret;
}

static int cmd_digest(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  unsigned t = SYNC_ALL_TABLES;
  uint64_t dg = 0;
  int rc, ret = EX_FAIL;
  if (argc != 1 && argc != 2) return usage("give DB [TABLE]");
  if (open_db(argv[0], 1, &env)) return EX_FAIL;
  if (argc == 2 && find_table(env, argv[0], argv[1], &t)) goto out;
  if (begin_ro(env, argv[0], &x)) goto out;
  if ((rc = sync_digest(x, t, &dg)))
    lib_fail(env, argv[0], rc, "cannot compute the digest");
  else
    printf("%016llx\n", (unsigned long long)dg), ret = EX_OK;
  sync_txn_abort(x);
out:
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * verify and stats
 * ------------------------------------------------------------------- */
static int problems;
static void problem(const char *db, const char *fmt, ...) {
  va_list ap;
  printf("%s: ", db);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  problems++;
}

static void key_str(int key_type, const unsigned char *k, size_t n, char *out,
                    size_t cap) {
  FILE *m = fmemopen(out, cap, "w");
  if (!m) {
    snprintf(out, cap, "?");
    return;
  }
  put_key(m, key_type, k, n);
  fclose(m);
}

static int cmd_verify(int argc, char **argv) {
  sync_health health = {0, 0, 0, 0, 0, 0};
  sync_env *env;
  sync_txn *x;
  const char *db;
  unsigned nt, t, c;
  uint64_t ver, own_vv = 0, logged = 0, tombs = 0, tn = 0, rows = 0, nconf = 0;
  uint64_t *cnt, *logl;
  uint8_t me[16];
  int rc, have_own = 0;
  if (argc != 1) return usage("give DB");
  db = argv[0];
  problems = 0;
  if (open_db(db, 1, &env)) {
    printf("damaged: cannot open %s\n", db);
    return EX_FAIL;
  }
  if (begin_ro(env, db, &x)) {
    sync_env_close(env);
    printf("damaged: cannot read %s\n", db);
    return EX_FAIL;
  }
  sync_env_site_id(env, me);
  ver = sync_txn_version(x);
  nt = sync_env_table_count(env);
  cnt = (uint64_t *)calloc(nt + 1, sizeof *cnt);
  logl = (uint64_t *)calloc(nt + 1, sizeof *logl);
  {
    sync_stamp vv[1024];
    size_t n = 0, i;
    if ((rc = sync_vv_get(x, vv, 1024, &n)))
      problem(db, "version vector unreadable: %s", sync_strerror(rc));
    for (i = 0; i < n && i < 1024; i++)
      if (!memcmp(vv[i].site, me, 16)) own_vv = vv[i].hlc, have_own = 1;
  }
  /* Every live row, through its checksum. */
  for (t = 0; t < nt; t++) {
    sync_table_def d;
    sync_cursor *cur;
    sync_key k;
    sync_value vals[MAXC];
    uint64_t n = 0;
    unsigned char last[SYNC_MAX_KEY];
    size_t lastn = 0;
    sync_env_table_def(env, t, &d);
    if ((rc = sync_count(x, t, &cnt[t])))
      problem(db, "table '%s': row count unreadable", d.name);
    if ((rc = sync_cursor_open(x, t, &cur))) {
      problem(db, "table '%s': cannot read: %s", d.name, sync_strerror(rc));
      continue;
    }
    while ((rc = sync_cursor_next(
                cur, &k, vals, d.ncolumns < MAXC ? d.ncolumns : MAXC)) == 0) {
      n++;
      memcpy(last, k.data, k.len);
      lastn = k.len;
    }
    sync_cursor_close(cur);
    rows += n;
    if (rc != SYNC_NOTFOUND) {
      char ks[128] = "";
      if (lastn) key_str(d.key_type, last, lastn, ks, sizeof ks);
      problem(db, "table '%s': the row %s%s%s: %s", d.name,
              lastn ? "after key '" : "first in the table", ks,
              lastn ? "'" : "",
              rc == SYNC_ECORRUPT ? "fails its checksum (damaged)"
                                  : sync_strerror(rc));
    } else if (n != cnt[t]) {
      problem(db, "table '%s': holds %llu live rows, its count says %llu",
              d.name, (unsigned long long)n, (unsigned long long)cnt[t]);
    }
  }
  /* The change log: each row once, versions in order and not past the
   * database's, own stamps covered by the version vector. */
  {
    sync_changes *it;
    sync_change ch;
    uint64_t prev = 0;
    if ((rc = sync_changes_open(x, 0, &it))) {
      problem(db, "change log unreadable: %s", sync_strerror(rc));
    } else {
      while ((rc = sync_changes_next(it, &ch)) == 0) {
        sync_table_def d;
        char ks[128];
        logged++;
        sync_env_table_def(env, ch.table, &d);
        if (ch.version > ver || ch.version < prev) {
          key_str(d.key_type, (const unsigned char *)ch.key.data, ch.key.len,
                  ks, sizeof ks);
          problem(db,
                  "change log: row '%s' of '%s' at version %llu (after %llu; "
                  "database at %llu)",
                  ks, d.name, (unsigned long long)ch.version,
                  (unsigned long long)prev, (unsigned long long)ver);
        }
        prev = ch.version;
        if (ch.causal_length & 1)
          logl[ch.table]++;
        else
          tombs++;
        for (c = 0; c < ch.ncolumns; c++) {
          sync_stamp st;
          int r2 = sync_changes_column(it, c, NULL, &st, NULL);
          if (r2 && r2 != SYNC_NOTFOUND) {
            key_str(d.key_type, (const unsigned char *)ch.key.data, ch.key.len,
                    ks, sizeof ks);
            problem(db, "row '%s' of '%s': column %u unreadable: %s", ks,
                    d.name, c, sync_strerror(r2));
          } else if (!r2 && have_own && !memcmp(st.site, me, 16) &&
                     st.hlc > own_vv) {
            key_str(d.key_type, (const unsigned char *)ch.key.data, ch.key.len,
                    ks, sizeof ks);
            problem(db,
                    "row '%s' of '%s': a local write the version vector does "
                    "not cover",
                    ks, d.name);
          }
        }
      }
      sync_changes_close(it);
      if (rc != SYNC_NOTFOUND)
        problem(db, "change log: %s (%s)",
                rc == SYNC_ECORRUPT ? "damaged" : sync_strerror(rc),
                sync_env_errmsg(env));
      else
        for (t = 0; t < nt; t++)
          if (logl[t] != cnt[t]) {
            sync_table_def d;
            sync_env_table_def(env, t, &d);
            problem(db,
                    "table '%s': the change log names %llu live rows, the "
                    "table holds %llu",
                    d.name, (unsigned long long)logl[t],
                    (unsigned long long)cnt[t]);
          }
    }
  }
  if ((rc = sync_tombstones(x, &tn)))
    problem(db, "tombstones unreadable: %s", sync_strerror(rc));
  else if (!problems && tn != tombs)
    problem(db, "%llu tombstones kept, the change log names %llu",
            (unsigned long long)tn, (unsigned long long)tombs);
  {
    size_t n = 0, i;
    sync_peer_info p[256];
    if ((rc = sync_peers_get(x, p, 256, &n))) {
      problem(db, "peer records: %s", sync_strerror(rc));
    } else {
      for (i = 0; i < n && i < 256; i++)
        if (p[i].acked_version > ver) {
          char s[33];
          hex_str(p[i].site, 16, s);
          problem(db,
                  "peer %s acknowledged version %llu; this replica is at %llu",
                  s, (unsigned long long)p[i].acked_version,
                  (unsigned long long)ver);
        }
    }
  }
  if ((rc = sync_health_get(x, &health)))
    problem(db, "health: %s", sync_strerror(rc));
  {
    sync_conflicts *it;
    sync_conflict cf;
    if ((rc = sync_conflicts_open(x, 0, &it))) {
      problem(db, "conflict log unreadable: %s", sync_strerror(rc));
    } else {
      while ((rc = sync_conflicts_next(it, &cf)) == 0) nconf++;
      sync_conflicts_close(it);
      if (rc != SYNC_NOTFOUND)
        problem(db, "conflict log: %s", sync_strerror(rc));
    }
  }
  sync_txn_abort(x);
  sync_env_close(env);
  free(cnt);
  free(logl);
  if (problems) {
    printf("damaged: %d problem%s\n", problems, problems == 1 ? "" : "s");
    return EX_FAIL;
  }
  /* Not damage, but what an operator must know: deletes this replica
   * may lack, and peers that will be told they are stale. */
  if (health.may_miss_deletes)
    printf("health: may miss deletes: %llu peer%s answered that this "
           "replica is behind its tombstone collection; reset that peer "
           "and sync again, or repair\n",
           (unsigned long long)health.peers_stale,
           health.peers_stale == 1 ? "" : "s");
  if (health.peers_behind_horizon)
    printf("health: %llu peer%s behind this replica's tombstone collection "
           "(their next pull is refused as stale)\n",
           (unsigned long long)health.peers_behind_horizon,
           health.peers_behind_horizon == 1 ? "" : "s");
  printf("%llu live rows in %u table%s, %llu tombstones, %llu rows in the "
         "change log, %llu "
         "conflicts recorded: sound\n",
         (unsigned long long)rows, nt, nt == 1 ? "" : "s",
         (unsigned long long)tombs, (unsigned long long)logged,
         (unsigned long long)nconf);
  return EX_OK;
}

static int is_address(const char *s) {
  const char *c = strrchr(s, ':');
  if (!c || c == s || !c[1] || file_exists(s)) return 0;
  for (c++; *c; c++)
    if (*c < '0' || *c > '9') return 0;
  return 1;
}

static int tcp_dial(const char *addr, int timeout_s);

static int stats_remote(const char *addr) {
  int fd = tcp_dial(addr, 10);
  char req[] = "GET /metrics HTTP/1.0\r\nAccept: text/plain\r\n\r\n";
  char buf[8192], *all = NULL, *body;
  size_t len = 0;
  ssize_t k;
  if (fd < 0) {
    say("%s: cannot connect: %s", addr, strerror(errno));
    return EX_FAIL;
  }
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    say("%s: %s", addr, strerror(errno));
    close(fd);
    return EX_FAIL;
  }
  while ((k = read(fd, buf, sizeof buf)) > 0) {
    char *n = (char *)realloc(all, len + (size_t)k + 1);
    if (!n) break;
    all = n;
    memcpy(all + len, buf, (size_t)k);
    len += (size_t)k;
    all[len] = 0;
  }
  close(fd);
  if (!all || strncmp(all, "HTTP/1.", 7) || !(body = strstr(all, "\r\n\r\n"))) {
    say("%s: not an HTTP metrics endpoint", addr);
    free(all);
    return EX_FAIL;
  }
  if (strncmp(all + 8, " 200", 4)) {
    say("%s: the server answered %.*s", addr, (int)strcspn(all, "\r\n"), all);
    free(all);
    return EX_FAIL;
  }
  fputs(body + 4, stdout);
  free(all);
  return EX_OK;
}

static int cmd_stats(int argc, char **argv) {
  sync_env *env;
  sync_txn *x;
  unsigned nt, t;
  uint64_t *tomb, ver, sv = 0, sh = 0, nconf = 0;
  size_t nvv = 0, npeers = 0;
  struct stat sb;
  int rc;
  if (argc != 1) return usage("give DB or HOST:PORT");
  if (is_address(argv[0])) return stats_remote(argv[0]);
  if (open_db(argv[0], 1, &env)) return EX_FAIL;
  if (begin_ro(env, argv[0], &x)) {
    sync_env_close(env);
    return EX_FAIL;
  }
  nt = sync_env_table_count(env);
  tomb = (uint64_t *)calloc(nt + 1, sizeof *tomb);
  {
    sync_changes *it;
    sync_change ch;
    if ((rc = sync_changes_open(x, 0, &it)) == 0) {
      while ((rc = sync_changes_next(it, &ch)) == 0)
        if (!(ch.causal_length & 1)) tomb[ch.table]++;
      sync_changes_close(it);
    }
    if (rc != SYNC_NOTFOUND) {
      lib_fail(env, argv[0], rc, "cannot read the change log");
      free(tomb);
      sync_txn_abort(x);
      sync_env_close(env);
      return EX_FAIL;
    }
  }
  ver = sync_txn_version(x);
  sync_env_schema_info(env, &sv, &sh);
  sync_vv_get(x, NULL, 0, &nvv);
  sync_peers_get(x, NULL, 0, &npeers);
  {
    sync_conflicts *it;
    sync_conflict c;
    if (sync_conflicts_open(x, SYNC_CONFLICTS_UNRESOLVED, &it) == 0) {
      while (sync_conflicts_next(it, &c) == 0) nconf++;
      sync_conflicts_close(it);
    }
  }
  printf("%-12s %12s %12s\n", "table", "rows", "tombstones");
  for (t = 0; t < nt; t++) {
    sync_table_def d;
    uint64_t n = 0;
    sync_env_table_def(env, t, &d);
    sync_count(x, t, &n);
    printf("%-12s %12llu %12llu\n", d.name, (unsigned long long)n,
           (unsigned long long)tomb[t]);
  }
  printf("local version      %llu\n", (unsigned long long)ver);
  printf("schema             version %llu, hash %016llx\n",
         (unsigned long long)sv, (unsigned long long)sh);
  printf("version vector     %zu site%s\n", nvv, nvv == 1 ? "" : "s");
  printf("peers              %zu\n", npeers);
  printf("open conflicts     %llu\n", (unsigned long long)nconf);
  {
    sync_health h;
    if (sync_health_get(x, &h) == 0) {
      printf("missing deletes    %s\n",
             h.may_miss_deletes ? "maybe (a peer said this replica is behind "
                                  "its tombstone collection)"
                                : "no");
      printf("peers behind gc    %llu\n",
             (unsigned long long)h.peers_behind_horizon);
    }
  }
  if (stat(argv[0], &sb) == 0)
    printf("file size          %lld bytes\n", (long long)sb.st_size);
  free(tomb);
  sync_txn_abort(x);
  sync_env_close(env);
  return EX_OK;
}

/* ---------------------------------------------------------------------
 * TCP
 * ------------------------------------------------------------------- */
static int split_addr(const char *addr, char *host, size_t hcap, char *port,
                      size_t pcap) {
  const char *colon = addr ? strrchr(addr, ':') : NULL;
  size_t hl;
  if (!colon || colon == addr || !colon[1]) return -1;
  hl = (size_t)(colon - addr);
  if (addr[0] == '[' && hl > 2 && addr[hl - 1] == ']')
    addr++, hl -= 2; /* [::1]:port */
  if (hl >= hcap || strlen(colon + 1) >= pcap) return -1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  snprintf(port, pcap, "%s", colon + 1);
  return 0;
}

static int tcp_dial(const char *addr, int timeout_s) {
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  struct timeval tv;
  int fd = -1, one = 1;
  if (split_addr(addr, host, sizeof host, port, sizeof port)) {
    errno = EINVAL;
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &ai)) {
    errno = EHOSTUNREACH;
    return -1;
  }
  for (p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) return -1;
  tv.tv_sec = timeout_s;
  tv.tv_usec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int tcp_listen(const char *addr, int *port_out) {
  char host[256], port[32];
  struct addrinfo hints, *ai, *p;
  int fd = -1, one = 1, rc;
  if (split_addr(addr, host, sizeof host, port, sizeof port)) {
    say("address must be HOST:PORT, not '%s'", addr);
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if ((rc = getaddrinfo(host, port, &hints, &ai))) {
    say("%s: %s", addr, gai_strerror(rc));
    return -1;
  }
  for (p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, p->ai_addr, p->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    say("cannot listen on %s: %s", addr, strerror(errno));
    return -1;
  }
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ph[64], pp[16];
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, ph, sizeof ph, pp, sizeof pp,
                NI_NUMERICHOST | NI_NUMERICSERV);
    *port_out = atoi(pp);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static int write_port(const char *file, int port) {
  FILE *f;
  char tmp[4096];
  if (!file) return 0;
  /* Written whole, then renamed: a reader never sees half a number. */
  snprintf(tmp, sizeof tmp, "%s.tmp", file);
  f = fopen(tmp, "w");
  if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmp, file)) {
    say("cannot write %s: %s", file, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * serve
 * ------------------------------------------------------------------- */
#define MAX_CONN 256
#define MAX_CRED 64
#define IDLE_SECONDS 60

typedef struct cred {
  char token[128];
  sync_rights rights;
  int bound;       /* site= given: only that replica may use the token */
  uint8_t site[16];
  /* where=COLUMN=VALUE: the peer's scope is the rows whose column of that
   * name holds VALUE (as an integer when it reads as one); tables
   * without such a column pass whole */
  char wcol[64], wval[128];
  int where;
} cred;

typedef struct server {
  sync_env *env;
  const char *db;
  cred creds[MAX_CRED];
  int ncreds, quiet;
  uint64_t fver; /* the filter version: a hash of every where= */
  struct {
    uint8_t site[16];
    int cred;
  } peers[MAX_CONN]; /* which credential each peer last showed */
  unsigned npeers, next_peer;
} server;

/* The serve filter (docs/PROTOCOL.md, "Scope"): a peer whose credential
 * has where=COLUMN=VALUE sees the rows holding VALUE in COLUMN. */
static int serve_filter(void *ctx, const uint8_t peer[16], unsigned table,
                        const void *key, size_t klen, const sync_value *vals,
                        unsigned nvals) {
  server *sv = (server *)ctx;
  const cred *c = NULL;
  unsigned i, col;
  char *end;
  long long iv;
  (void)key;
  (void)klen;
  for (i = 0; i < sv->npeers; i++)
    if (!memcmp(sv->peers[i].site, peer, 16)) c = &sv->creds[sv->peers[i].cred];
  if (!c || !c->where) return 1;
  if (!vals) return 1; /* a delete: the peer may hold the row */
  if (sync_env_column(sv->env, table, c->wcol, &col) || col >= nvals) return 1;
  switch (vals[col].type) {
  case SYNC_INTEGER:
    errno = 0;
    iv = strtoll(c->wval, &end, 10);
    return !errno && !*end && end != c->wval && iv == vals[col].i;
  case SYNC_TEXT:
  case SYNC_BLOB:
    return vals[col].len == strlen(c->wval) &&
           !memcmp(vals[col].data, c->wval, vals[col].len);
  default:
    return 0;
  }
}

typedef struct conn {
  int fd, http;
  sync_session *s;
  unsigned char out[16384];
  size_t olen, ooff;
  char *hbuf; /* http: the request, then the response */
  size_t hlen, hoff;
  int hdone;
  time_t last;
} conn;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int set_tables(sync_env *env, const char *db, char *list,
                      unsigned char *bits) {
  char *save = NULL, *t;
  for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    unsigned id;
    if (!strcmp(t, "*")) {
      memset(bits, 0xff, SYNC_RIGHTS_BYTES);
      continue;
    }
    if (find_table(env, db, t, &id)) return -1;
    bits[id >> 3] |= (unsigned char)(1u << (id & 7));
  }
  return 0;
}

static int load_creds(server *sv, const char *path) {
  FILE *f = fopen(path, "r");
  char line[1024], where[1100];
  int lineno = 0;
  if (!f) {
    say("%s: %s", path, strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
    cred *c;
    lineno++;
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    if (!w || w[0] == '#') continue;
    if (sv->ncreds == MAX_CRED || strlen(w) >= sizeof c->token) {
      say("%s: too many credentials, or a token over 127 bytes", where);
      fclose(f);
      return -1;
    }
    c = &sv->creds[sv->ncreds++];
    memset(c, 0, sizeof *c);
    snprintf(c->token, sizeof c->token, "%s", w);
    while ((w = strtok_r(NULL, " \t\r\n", &save))) {
      int rc = 0;
      if (!strncmp(w, "read=", 5))
        rc = set_tables(sv->env, where, w + 5, c->rights.read);
      else if (!strncmp(w, "write=", 6))
        rc = set_tables(sv->env, where, w + 6, c->rights.write);
      else if (!strcmp(w, "relay"))
        c->rights.relay = 1;
      else if (!strncmp(w, "where=", 6)) {
        const char *eq = strchr(w + 6, '=');
        size_t i, cl = eq ? (size_t)(eq - (w + 6)) : 0;
        if (!eq || !cl || cl >= sizeof c->wcol ||
            strlen(eq + 1) >= sizeof c->wval) {
          say("%s: where= wants COLUMN=VALUE, not '%s'", where, w + 6);
          rc = -1;
        } else {
          memcpy(c->wcol, w + 6, cl);
          c->wcol[cl] = 0;
          snprintf(c->wval, sizeof c->wval, "%s", eq + 1);
          c->where = 1;
          /* The filter's version: FNV-1a over every token's clause, so
           * a changed file restarts each peer's stream. */
          if (!sv->fver) sv->fver = 0xcbf29ce484222325ull;
          for (i = 0; w[i]; i++)
            sv->fver = (sv->fver ^ (unsigned char)w[i]) * 0x100000001b3ull;
          for (i = 0; c->token[i]; i++)
            sv->fver = (sv->fver ^ (unsigned char)c->token[i]) *
                       0x100000001b3ull;
        }
      }
      else if (!strncmp(w, "site=", 5)) {
        /* The site id in HELLO is self-asserted: binding the token to
         * one site is what stops a holder of the token from writing as
         * another device (SECURITY.md). */
        size_t n = 0;
        unsigned char *b = strlen(w + 5) == 32 ? from_hex(w + 5, 32, &n) : NULL;
        if (!b || n != 16) {
          say("%s: site= wants 32 hex digits (a site id), not '%s'", where,
              w + 5);
          rc = -1;
        } else {
          memcpy(c->site, b, 16);
          c->bound = 1;
        }
        free(b);
      } else {
        say("%s: cannot read '%s' (read=TABLES, write=TABLES, relay, "
            "site=HEX32 or where=COLUMN=VALUE)",
            where, w);
        rc = -1;
      }
      if (rc) {
        fclose(f);
        return -1;
      }
    }
  }
  fclose(f);
  return 0;
}

static int authorize(void *ctx, const uint8_t site[16], const void *cr,
                     size_t len, sync_rights *rights) {
  server *sv = (server *)ctx;
  int i;
  for (i = 0; i < sv->ncreds; i++)
    if (strlen(sv->creds[i].token) == len &&
        !memcmp(sv->creds[i].token, cr, len)) {
      if (sv->creds[i].bound && memcmp(sv->creds[i].site, site, 16)) {
        char got[33], want[33];
        hex_str(site, 16, got);
        hex_str(sv->creds[i].site, 16, want);
        if (!sv->quiet) {
          printf("serve: peer %s: refused: its credential is bound to site "
                 "%s\n",
                 got, want);
          fflush(stdout);
        }
        return SYNC_EPERM;
      }
      *rights = sv->creds[i].rights;
      {
        /* Remember the peer's credential for the filter. */
        unsigned j;
        for (j = 0; j < sv->npeers && memcmp(sv->peers[j].site, site, 16); j++) {
        }
        if (j == sv->npeers) {
          if (sv->npeers < MAX_CONN) sv->npeers++;
          else j = sv->next_peer++ % MAX_CONN;
        }
        memcpy(sv->peers[j].site, site, 16);
        sv->peers[j].cred = i;
      }
      return 0;
    }
  return SYNC_EPERM;
}

static void conn_close(conn *c) {
  if (c->s) sync_session_free(c->s);
  free(c->hbuf);
  close(c->fd);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

static void session_done(server *sv, conn *c) {
  int st = sync_session_status(c->s);
  sync_session_stats x;
  uint8_t site[16];
  char hex[33] = "unknown";
  sync_session_stats_get(c->s, &x);
  if (sync_session_peer(c->s, site) == 0) hex_str(site, 8, hex);
  if (!sv->quiet) {
    if (st == 1)
      printf("serve: peer %s: received %llu rows, sent %llu rows (%llu bytes "
             "in, %llu out)\n",
             hex, (unsigned long long)x.rows_received,
             (unsigned long long)x.rows_sent,
             (unsigned long long)x.bytes_received,
             (unsigned long long)x.bytes_sent);
    else if (st == SYNC_ESTALE)
      printf("serve: peer %s: behind this replica's tombstone collection: "
             "refused as stale; it must reset and sync again, or repair "
             "(%s)\n",
             hex, sync_session_errmsg(c->s));
    else
      printf("serve: peer %s: session ended: %s (%s)\n", hex,
             sync_strerror(st ? st : SYNC_ECLOSED), sync_session_errmsg(c->s));
    if (x.applied.refused)
      printf("serve: peer %s: %llu rows refused by its rights\n", hex,
             (unsigned long long)x.applied.refused);
    fflush(stdout);
  }
  conn_close(c);
}

/* An HTTP request has arrived whole: answer it. */
static void http_answer(server *sv, conn *c) {
  static sync_stats st;
  char head[256], *body = NULL;
  const char *status = "200 OK";
  int64_t n = 0;
  size_t hl;
  int ok =
      !strncmp(c->hbuf, "GET /metrics ", 13) || !strncmp(c->hbuf, "GET / ", 6);
  if (ok) {
    sync_env_stats(sv->env, &st);
    n = sync_stats_prometheus(&st, NULL, 0);
    body = (char *)malloc((size_t)n + 1);
    if (!body)
      n = 0, status = "500 Internal Server Error";
    else
      sync_stats_prometheus(&st, body, (size_t)n + 1);
  } else if (!strncmp(c->hbuf, "GET ", 4)) {
    status = "404 Not Found";
  } else {
    status = "405 Method Not Allowed";
  }
  hl = (size_t)snprintf(
      head, sizeof head,
      "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; "
      "charset=utf-8\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
      status, (long long)n);
  free(c->hbuf);
  c->hbuf = (char *)malloc(hl + (size_t)n);
  if (!c->hbuf) {
    free(body);
    c->hlen = 0;
    return;
  }
  memcpy(c->hbuf, head, hl);
  if (n) memcpy(c->hbuf + hl, body, (size_t)n);
  free(body);
  c->hlen = hl + (size_t)n;
  c->hoff = 0;
  c->hdone = 1;
}

/* Returns 1 when the connection is finished. */
static int http_step(server *sv, conn *c, short revents) {
  if (!c->hdone && (revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[2048];
    ssize_t k = read(c->fd, buf, sizeof buf);
    char *n;
    if (k <= 0) return !(k < 0 && (errno == EAGAIN || errno == EINTR));
    if (c->hlen + (size_t)k > 16384) return 1; /* not a metrics scraper */
    if (!(n = (char *)realloc(c->hbuf, c->hlen + (size_t)k + 1))) return 1;
    c->hbuf = n;
    memcpy(c->hbuf + c->hlen, buf, (size_t)k);
    c->hlen += (size_t)k;
    c->hbuf[c->hlen] = 0;
    if (strstr(c->hbuf, "\r\n\r\n") || strstr(c->hbuf, "\n\n"))
      http_answer(sv, c);
  }
  if (c->hdone) {
    while (c->hoff < c->hlen) {
      ssize_t k = write(c->fd, c->hbuf + c->hoff, c->hlen - c->hoff);
      if (k > 0) {
        c->hoff += (size_t)k;
        continue;
      }
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
      return 1;
    }
    return 1;
  }
  return 0;
}

static void session_step(conn *c, short revents) {
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    unsigned char buf[16384];
    ssize_t k = read(c->fd, buf, sizeof buf);
    if (k > 0) {
      sync_inbuf in = {buf, (size_t)k, 0};
      sync_session_recv(c->s, &in);
    } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
      sync_session_abort(c->s, SYNC_ECLOSED);
    }
  }
  for (;;) {
    ssize_t k;
    if (c->ooff == c->olen) {
      sync_outbuf out = {c->out, sizeof c->out, 0};
      if (sync_session_status(c->s) != 0 || !sync_session_want_write(c->s))
        break;
      sync_session_send(c->s, &out);
      c->olen = out.pos;
      c->ooff = 0;
      if (!c->olen) break;
    }
    k = write(c->fd, c->out + c->ooff, c->olen - c->ooff);
    if (k > 0) {
      c->ooff += (size_t)k;
      continue;
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      break;
    sync_session_abort(c->s, SYNC_ECLOSED);
    c->ooff = c->olen;
    break;
  }
}

static int cmd_serve(int argc, char **argv) {
  static server sv;
  static conn conns[MAX_CONN];
  const char *db = NULL, *addr = NULL, *credfile = NULL, *portfile = NULL,
             *maddr = NULL, *mportfile = NULL;
  long max_sessions = -1, ended = 0;
  int lfd, mfd = -1, port, mport = 0, i;
  memset(&sv, 0, sizeof sv);
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--credentials") && more)
      credfile = argv[++i];
    else if (!strcmp(a, "--metrics") && more)
      maddr = argv[++i];
    else if (!strcmp(a, "--port-file") && more)
      portfile = argv[++i];
    else if (!strcmp(a, "--metrics-port-file") && more)
      mportfile = argv[++i];
    else if (!strcmp(a, "--sessions") && more) {
      uint64_t n;
      if (parse_u64(argv[++i], &n)) return usage("--sessions needs a number");
      max_sessions = (long)n;
    } else if (!strcmp(a, "--quiet"))
      sv.quiet = 1;
    else if (a[0] == '-' && a[1])
      return usage("unknown option '%s' (or it needs a value)", a);
    else if (!db)
      db = a;
    else if (!addr)
      addr = a;
    else
      return usage("too many arguments");
  }
  if (!db || !addr) return usage("give DB and HOST:PORT");
  if (open_db(db, 0, &sv.env)) return EX_FAIL;
  sv.db = db;
  if (credfile && load_creds(&sv, credfile)) goto fail;
  if ((lfd = tcp_listen(addr, &port)) < 0) goto fail;
  if (maddr && (mfd = tcp_listen(maddr, &mport)) < 0) goto fail;
  if (write_port(portfile, port) || (maddr && write_port(mportfile, mport)))
    goto fail;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (!sv.quiet) {
    printf("serve: %s on port %d%s", db, port,
           credfile ? ", peers checked against the credentials file"
                    : ", every peer may read and write");
    if (maddr) printf("; metrics on port %d", mport);
    printf("\n");
    fflush(stdout);
  }
  for (i = 0; i < MAX_CONN; i++) conns[i].fd = -1;
  while (!g_stop && (max_sessions < 0 || ended < max_sessions)) {
    struct pollfd pf[MAX_CONN + 2];
    int idx[MAX_CONN + 2], n = 0, k;
    pf[n].fd = lfd, pf[n].events = POLLIN, idx[n++] = -1;
    if (mfd >= 0) pf[n].fd = mfd, pf[n].events = POLLIN, idx[n++] = -2;
    for (i = 0; i < MAX_CONN; i++) {
      conn *c = &conns[i];
      if (c->fd < 0) continue;
      pf[n].fd = c->fd;
      if (c->http)
        pf[n].events = (short)(c->hdone ? POLLOUT : POLLIN);
      else
        pf[n].events =
            (short)((sync_session_want_read(c->s) ? POLLIN : 0) |
                    (c->olen > c->ooff || sync_session_want_write(c->s)
                         ? POLLOUT
                         : 0));
      idx[n++] = i;
    }
    if (poll(pf, (nfds_t)n, 1000) < 0) {
      if (errno == EINTR) continue;
      say("poll: %s", strerror(errno));
      break;
    }
    for (k = 0; k < n && idx[k] < 0; k++) {
      int fd;
      if (!(pf[k].revents & POLLIN) || (fd = accept(pf[k].fd, NULL, NULL)) < 0)
        continue;
      for (i = 0; i < MAX_CONN && conns[i].fd >= 0; i++) {
      }
      if (i == MAX_CONN) {
        close(fd); /* full: the peer retries later */
        continue;
      }
      memset(&conns[i], 0, sizeof conns[i]);
      conns[i].http = idx[k] == -2;
      if (!conns[i].http) {
        sync_session_opts so;
        memset(&so, 0, sizeof so);
        so.server = 1;
        so.authorize = credfile ? authorize : NULL;
        so.authorize_ctx = &sv;
        if (credfile) {
          so.filter = serve_filter;
          so.filter_ctx = &sv;
          so.filter_version = sv.fver;
        }
        so.level = 3;
        if (sync_session_create(sv.env, &so, &conns[i].s)) {
          close(fd);
          conns[i].fd = -1;
          continue;
        }
        {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
      }
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      conns[i].fd = fd;
      conns[i].last = time(NULL);
    }
    for (; k < n; k++) {
      conn *c = &conns[idx[k]];
      if (c->fd < 0) continue;
      if (c->http) {
        if (http_step(&sv, c, pf[k].revents) ||
            (!pf[k].revents && time(NULL) - c->last > 10))
          conn_close(c);
        else if (pf[k].revents)
          c->last = time(NULL);
        continue;
      }
      session_step(c, pf[k].revents);
      if (pf[k].revents)
        c->last = time(NULL);
      else if (time(NULL) - c->last > IDLE_SECONDS) {
        sync_session_abort(c->s, SYNC_ETIMEOUT);
        c->ooff = c->olen;
      }
      if (sync_session_status(c->s) != 0 && c->ooff == c->olen) {
        session_done(&sv, c);
        ended++;
      }
    }
  }
  for (i = 0; i < MAX_CONN; i++)
    if (conns[i].fd >= 0) {
      if (conns[i].s) {
        sync_session_abort(conns[i].s, SYNC_ECLOSED);
        session_done(&sv, &conns[i]);
      } else {
        conn_close(&conns[i]);
      }
    }
  close(lfd);
  if (mfd >= 0) close(mfd);
  {
    sync_txn *x;
    uint64_t dg = 0;
    if (sync_txn_begin(sv.env, SYNC_TXN_RDONLY, &x) == 0) {
      sync_digest(x, SYNC_ALL_TABLES, &dg);
      sync_txn_abort(x);
    }
    if (!sv.quiet)
      printf("serve: stopped; digest %016llx\n", (unsigned long long)dg);
  }
  sync_env_close(sv.env);
  return EX_OK;
fail:
  sync_env_close(sv.env);
  return EX_FAIL;
}

/* ---------------------------------------------------------------------
 * sync
 * ------------------------------------------------------------------- */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fmt_bytes(uint64_t n, char *out, size_t cap) {
  if (n < 1024)
    snprintf(out, cap, "%llu B", (unsigned long long)n);
  else if (n < 1024 * 1024)
    snprintf(out, cap, "%.1f KiB", (double)n / 1024);
  else if (n < (uint64_t)1024 * 1024 * 1024)
    snprintf(out, cap, "%.1f MiB", (double)n / 1048576);
  else
    snprintf(out, cap, "%.2f GiB", (double)n / 1073741824.0);
}

typedef struct progress {
  int tty;
  double t0, last;
  int shown;
} progress;

static void on_progress(void *ctx, const sync_session_stats *st) {
  progress *p = (progress *)ctx;
  double t = now_s(), el;
  uint64_t rows = st->rows_received + st->rows_sent;
  char b[32], eta[32] = "";
  if (!p->tty || t - p->last < 0.1) return;
  p->last = t;
  el = t - p->t0;
  fmt_bytes(st->bytes_received + st->bytes_sent, b, sizeof b);
  if (st->rows_expected && st->rows_received < st->rows_expected && el > 0 &&
      st->rows_received) {
    double left = (double)(st->rows_expected - st->rows_received) * el /
                  (double)st->rows_received;
    snprintf(eta, sizeof eta, "  ETA %d:%02d", (int)left / 60, (int)left % 60);
  }
  if (st->rows_expected)
    printf("\r\033[K%llu/%llu rows (%d%%)  %s  %.0f rows/s%s",
           (unsigned long long)rows, (unsigned long long)st->rows_expected,
           (int)(100.0 * (double)st->rows_received / (double)st->rows_expected),
           b, el > 0 ? (double)rows / el : 0.0, eta);
  else
    printf("\r\033[K%llu rows  %s  %.0f rows/s", (unsigned long long)rows, b,
           el > 0 ? (double)rows / el : 0.0);
  fflush(stdout);
  p->shown = 1;
}

/* Two sessions in this process, passing bytes to each other. */
static int run_pair(sync_session *c, sync_session *s) {
  unsigned char buf[65536];
  int idle = 0;
  while (sync_session_status(c) == 0 || sync_session_status(s) == 0) {
    sync_session *from[2] = {c, s}, *to[2] = {s, c};
    int k, moved = 0;
    for (k = 0; k < 2; k++) {
      sync_outbuf o = {buf, sizeof buf, 0};
      int64_t n = sync_session_send(from[k], &o);
      if (n < 0) return (int)n;
      if (n > 0) {
        sync_inbuf in = {buf, (size_t)n, 0};
        sync_session_recv(to[k], &in);
        moved = 1;
      }
    }
    if (!moved && ++idle > 2) {
      /* Neither side has anything to say: whoever still runs is stuck. */
      if (sync_session_status(c) == 0) sync_session_abort(c, SYNC_ECLOSED);
      if (sync_session_status(s) == 0) sync_session_abort(s, SYNC_ECLOSED);
    } else if (moved) {
      idle = 0;
    }
  }
  return sync_session_status(c) == 1 ? 0 : sync_session_status(c);
}

typedef struct tcp_link {
  const char *addr;
  int fd;
} tcp_link;

static int64_t tcp_send(void *ctx, const void *b, size_t n) {
  ssize_t k = send(((tcp_link *)ctx)->fd, b, n, MSG_NOSIGNAL);
  return k > 0 ? (int64_t)k : SYNC_ECLOSED;
}

static int64_t tcp_recv(void *ctx, void *b, size_t n) {
  ssize_t k = recv(((tcp_link *)ctx)->fd, b, n, 0);
  if (k >= 0) return (int64_t)k;
  return errno == EAGAIN || errno == EWOULDBLOCK ? SYNC_ETIMEOUT : SYNC_EIO;
}

static int tcp_connect(void *ctx, sync_transport *t) {
  tcp_link *l = (tcp_link *)ctx;
  if ((l->fd = tcp_dial(l->addr, 30)) < 0) return SYNC_ECLOSED;
  t->ctx = l;
  t->send = tcp_send;
  t->recv = tcp_recv;
  return 0;
}

static void tcp_close(void *ctx, sync_transport *t) {
  (void)t;
  close(((tcp_link *)ctx)->fd);
}

/* What sync, repair and diff set alike: the token, the largest message
 * and the tables (mask receives them).  EX_OK, or the exit status of a
 * usage error or an unknown table (said already). */
static int session_common(sync_env *env, const char *db, const char *token,
                          const char *tables, uint64_t maxmsg,
                          unsigned char *mask, sync_session_opts *so) {
  if (token) {
    so->credential = token;
    so->credential_len = strlen(token);
    if (so->credential_len > 1024) return usage("a token is at most 1024 bytes");
  }
  so->max_message = (size_t)maxmsg;
  if (tables) {
    char *list = strdup(tables), *save = NULL, *t;
    if (!list) return EX_FAIL;
    memset(mask, 0, SYNC_RIGHTS_BYTES);
    for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      unsigned id;
      if (find_table(env, db, t, &id)) {
        free(list);
        return EX_FAIL;
      }
      mask[id >> 3] |= (unsigned char)(1u << (id & 7));
    }
    free(list);
    so->tables = mask;
  }
  return EX_OK;
}

static int cmd_sync(int argc, char **argv) {
  const char *db = NULL, *other = NULL, *tables = NULL, *token = NULL;
  sync_env *env = NULL, *oenv = NULL;
  sync_session_opts so;
  sync_session_stats st;
  unsigned char mask[SYNC_RIGHTS_BYTES];
  progress pr;
  uint64_t maxmsg = 0;
  int i, rc, mode = SYNC_BOTH, dry = 0, remote, ret = EX_FAIL;
  char errmsg[300] = "";
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--pull"))
      mode = SYNC_PULL;
    else if (!strcmp(a, "--push"))
      mode = SYNC_PUSH;
    else if (!strcmp(a, "--both"))
      mode = SYNC_BOTH;
    else if (!strcmp(a, "--dry-run"))
      dry = 1;
    else if (!strcmp(a, "--tables") && more)
      tables = argv[++i];
    else if (!strcmp(a, "--token") && more)
      token = argv[++i];
    else if (!strcmp(a, "--max-message") && more) {
      if (parse_u64(argv[++i], &maxmsg) || maxmsg < 256 || maxmsg > (16u << 20))
        return usage("--max-message takes 256 to 16777216 bytes");
    } else if (a[0] == '-' && a[1])
      return usage("unknown option '%s' (or it needs a value)", a);
    else if (!db)
      db = a;
    else if (!other)
      other = a;
    else
      return usage("too many arguments");
  }
  if (!db || !other) return usage("give DB and HOST:PORT or OTHER_DB");
  remote = is_address(other);
  if (open_db(db, 0, &env)) return EX_FAIL;
  memset(&so, 0, sizeof so);
  so.mode = mode;
  so.dry_run = dry;
  if ((ret = session_common(env, db, token, tables, maxmsg, mask, &so)) !=
      EX_OK)
    goto out;
  ret = EX_FAIL;
  memset(&pr, 0, sizeof pr);
  pr.tty = isatty(1);
  pr.t0 = now_s(); /* pr.last 0: the first chunk shows a line at once */
  so.progress = on_progress;
  so.progress_ctx = &pr;
  memset(&st, 0, sizeof st);
  if (remote) {
    sync_retry_opts ro;
    sync_retry *r;
    tcp_link l;
    so.level = 3;
    memset(&ro, 0, sizeof ro);
    ro.attempts = 3;
    ro.base_delay_ms = 200;
    ro.max_delay_ms = 2000;
    l.addr = other;
    l.fd = -1;
    if ((rc = sync_retry_create(NULL, &ro, &r))) goto out;
    rc = sync_retry_run(r, env, &so, tcp_connect, tcp_close, &l, &st);
    sync_retry_free(r);
    if (rc == SYNC_ECLOSED && !st.bytes_received)
      snprintf(errmsg, sizeof errmsg, "cannot reach the server");
  } else {
    sync_session *c = NULL, *s = NULL;
    sync_session_opts oo;
    if (!strcmp(db, other)) {
      ret = usage("a database cannot sync with itself");
      goto out;
    }
    if (open_db(other, 0, &oenv))
      goto out; /* a dry run, too, runs write txns */
    memset(&oo, 0, sizeof oo);
    oo.server = 1;
    for (i = 0; i < 2; i++) {
      if ((rc = sync_session_create(env, &so, &c)) ||
          (rc = sync_session_create(oenv, &oo, &s))) {
        sync_session_free(c);
        lib_fail(env, db, rc, "cannot start a session");
        goto out;
      }
      rc = run_pair(c, s);
      sync_session_stats_get(c, &st);
      if (rc) snprintf(errmsg, sizeof errmsg, "%s", sync_session_errmsg(c));
      sync_session_free(c);
      sync_session_free(s);
      c = s = NULL;
      /* One side was a copy and took a new site id: once more, as it. */
      if (rc != SYNC_EHISTORY || dry) break;
      say("%s: with %s: %s; syncing again", db, other, errmsg);
    }
  }
  if (pr.shown) printf("\r\033[K");
  if (rc) {
    if (rc == SYNC_ESCHEMA)
      say("%s: with %s: the schemas differ (%s)", db, other,
          errmsg[0] ? errmsg : "compare 'synctl schema' of both");
    else if (rc == SYNC_EPERM)
      say("%s: with %s: refused by the rights the server grants (%s)", db,
          other, errmsg);
    else
      say("%s: with %s: %s%s%s%s", db, other, sync_strerror(rc),
          errmsg[0] ? " (" : "", errmsg, errmsg[0] ? ")" : "");
    goto out;
  }
  {
    sync_txn *x;
    uint64_t dg = 0;
    char bi[32], bo[32];
    double el = now_s() - pr.t0;
    if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) == 0) {
      sync_digest(x, SYNC_ALL_TABLES, &dg);
      sync_txn_abort(x);
    }
    fmt_bytes(st.bytes_received, bi, sizeof bi);
    fmt_bytes(st.bytes_sent, bo, sizeof bo);
    if (dry)
      printf("dry run with %s: would insert %llu, update %llu, delete %llu "
             "here; insert %llu, "
             "update %llu, delete %llu there; nothing written\n",
             other, (unsigned long long)st.applied.inserted,
             (unsigned long long)st.applied.updated,
             (unsigned long long)st.applied.deleted,
             (unsigned long long)st.peer_applied.inserted,
             (unsigned long long)st.peer_applied.updated,
             (unsigned long long)st.peer_applied.deleted);
    else
      printf("synced with %s: received %llu row%s (%llu new, %llu updated, "
             "%llu deleted), sent "
             "%llu row%s; %s in, %s out; %llu conflict%s (%llu here, %llu "
             "there); %.2f s; digest "
             "%016llx\n",
             other, (unsigned long long)st.rows_received,
             st.rows_received == 1 ? "" : "s",
             (unsigned long long)st.applied.inserted,
             (unsigned long long)st.applied.updated,
             (unsigned long long)st.applied.deleted,
             (unsigned long long)st.rows_sent, st.rows_sent == 1 ? "" : "s", bi,
             bo,
             (unsigned long long)(st.applied.conflicts +
                                  st.peer_applied.conflicts),
             st.applied.conflicts + st.peer_applied.conflicts == 1 ? "" : "s",
             (unsigned long long)st.applied.conflicts,
             (unsigned long long)st.peer_applied.conflicts, el,
             (unsigned long long)dg);
    if (st.peer_applied.refused)
      printf("the other side refused %llu rows (outside the rights of this "
             "token)\n",
             (unsigned long long)st.peer_applied.refused);
    if (st.reverted)
      printf("%llu refused row%s went back to the other side's version "
             "(synctl rejected lists them)\n",
             (unsigned long long)st.reverted, st.reverted == 1 ? "" : "s");
  }
  ret = EX_OK;
out:
  sync_env_close(oenv);
  sync_env_close(env);
  return ret;
}

/* ---------------------------------------------------------------------
 * repair and diff
 * ------------------------------------------------------------------- */
typedef struct diff_out {
  sync_env *env;
  uint64_t n, local, remote, both;
} diff_out;

static void on_diff(void *ctx, unsigned table, const void *key, size_t klen,
                    int side) {
  diff_out *o = (diff_out *)ctx;
  sync_table_def d;
  sync_env_table_def(o->env, table, &d);
  printf("%s ", d.name);
  put_key(stdout, d.key_type, (const unsigned char *)key, klen);
  printf(" %s\n", side == SYNC_DIFF_LOCAL    ? "here"
                  : side == SYNC_DIFF_REMOTE ? "there"
                                             : "both");
  o->n++;
  if (side == SYNC_DIFF_LOCAL) o->local++;
  else if (side == SYNC_DIFF_REMOTE) o->remote++;
  else o->both++;
}

/* synctl repair / synctl diff: one repair session, DB the client. */
static int cmd_repair_diff(int argc, char **argv, int diff) {
  const char *db = NULL, *other = NULL, *tables = NULL, *token = NULL;
  sync_env *env = NULL, *oenv = NULL;
  sync_session_opts so;
  sync_session_stats st;
  unsigned char mask[SYNC_RIGHTS_BYTES];
  uint64_t maxmsg = 0;
  diff_out dout;
  int i, rc, remote, ret = EX_FAIL;
  char errmsg[300] = "";
  double t0 = now_s();
  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--tables") && more)
      tables = argv[++i];
    else if (!strcmp(a, "--token") && more)
      token = argv[++i];
    else if (!strcmp(a, "--max-message") && more) {
      if (parse_u64(argv[++i], &maxmsg) || maxmsg < 256 || maxmsg > (16u << 20))
        return usage("--max-message takes 256 to 16777216 bytes");
    } else if (a[0] == '-' && a[1])
      return usage("unknown option '%s' (or it needs a value)", a);
    else if (!db)
      db = a;
    else if (!other)
      other = a;
    else
      return usage("too many arguments");
  }
  if (!db || !other) return usage("give DB and HOST:PORT or OTHER_DB");
  remote = is_address(other);
  if (!remote && !strcmp(db, other))
    return usage("a database cannot repair with itself");
  if (open_db(db, 0, &env)) return EX_FAIL;
  memset(&so, 0, sizeof so);
  memset(&dout, 0, sizeof dout);
  dout.env = env;
  so.repair = 1;
  so.dry_run = diff;
  so.on_diff = diff ? on_diff : NULL;
  so.on_diff_ctx = &dout;
  if ((ret = session_common(env, db, token, tables, maxmsg, mask, &so)) !=
      EX_OK)
    goto out;
  ret = EX_FAIL;
  memset(&st, 0, sizeof st);
  if (remote) {
    tcp_link l;
    sync_transport t;
    sync_session *c = NULL;
    so.level = 3;
    l.addr = other;
    l.fd = -1;
    /* One attempt: a diff printed twice would mislead, and a repair cut
     * short is simply run again. */
    if ((rc = tcp_connect(&l, &t))) {
      snprintf(errmsg, sizeof errmsg, "cannot reach the server");
    } else {
      if ((rc = sync_session_create(env, &so, &c)) == 0) {
        rc = sync_session_run(c, &t);
        sync_session_stats_get(c, &st);
        if (rc) snprintf(errmsg, sizeof errmsg, "%s", sync_session_errmsg(c));
        sync_session_free(c);
      }
      tcp_close(&l, &t);
    }
  } else {
    sync_session *c = NULL, *s = NULL;
    sync_session_opts oo;
    if (open_db(other, 0, &oenv)) goto out;
    memset(&oo, 0, sizeof oo);
    oo.server = 1;
    if ((rc = sync_session_create(env, &so, &c)) ||
        (rc = sync_session_create(oenv, &oo, &s))) {
      sync_session_free(c);
      lib_fail(env, db, rc, "cannot start a session");
      goto out;
    }
    rc = run_pair(c, s);
    sync_session_stats_get(c, &st);
    if (rc) snprintf(errmsg, sizeof errmsg, "%s", sync_session_errmsg(c));
    sync_session_free(c);
    sync_session_free(s);
  }
  if (rc) {
    if (rc == SYNC_ESCHEMA)
      say("%s: with %s: the schemas differ (%s)", db, other,
          errmsg[0] ? errmsg : "compare 'synctl schema' of both");
    else
      say("%s: with %s: %s%s%s%s", db, other, sync_strerror(rc),
          errmsg[0] ? " (" : "", errmsg, errmsg[0] ? ")" : "");
    goto out;
  }
  {
    char bi[32], bo[32];
    fmt_bytes(st.bytes_received, bi, sizeof bi);
    fmt_bytes(st.bytes_sent, bo, sizeof bo);
    if (diff) {
      if (st.repair_equal)
        printf("equal to %s (%llu round trips, %s in, %s out)\n", other,
               (unsigned long long)((st.repair_turns + 1) / 2), bi, bo);
      else
        printf("%llu row%s differ from %s: %llu only here, %llu only there, "
               "%llu on both sides (%llu round trips, %s in, %s out)\n",
               (unsigned long long)dout.n, dout.n == 1 ? "" : "s", other,
               (unsigned long long)dout.local, (unsigned long long)dout.remote,
               (unsigned long long)dout.both,
               (unsigned long long)((st.repair_turns + 1) / 2), bi, bo);
      ret = st.repair_equal ? EX_OK : EX_NOTFOUND;
    } else {
      sync_txn *x;
      uint64_t dg = 0;
      if (sync_txn_begin(env, SYNC_TXN_RDONLY, &x) == 0) {
        sync_digest(x, SYNC_ALL_TABLES, &dg);
        sync_txn_abort(x);
      }
      printf("repaired with %s: %s; received %llu row%s (%llu new, %llu "
             "updated, %llu deleted), sent %llu row%s; %llu pass%s, %llu "
             "round trips, %llu nodes compared; %s in, %s out; %.2f s; digest "
             "%016llx\n",
             other, st.repair_equal ? "equal" : "STILL DIFFERENT",
             (unsigned long long)st.rows_received,
             st.rows_received == 1 ? "" : "s",
             (unsigned long long)st.applied.inserted,
             (unsigned long long)st.applied.updated,
             (unsigned long long)st.applied.deleted,
             (unsigned long long)st.rows_sent, st.rows_sent == 1 ? "" : "s",
             (unsigned long long)st.repair_passes,
             st.repair_passes == 1 ? "" : "es",
             (unsigned long long)((st.repair_turns + 1) / 2),
             (unsigned long long)st.repair_nodes, bi, bo, now_s() - t0,
             (unsigned long long)dg);
      if (!st.repair_equal)
        say("%s: with %s: the replicas still differ (rows outside the rights "
            "of this token were refused, or they changed meanwhile)",
            db, other);
      ret = st.repair_equal ? EX_OK : EX_FAIL;
    }
  }
out:
  sync_env_close(oenv);
  sync_env_close(env);
  return ret;
}

static int cmd_repair(int argc, char **argv) {
  return cmd_repair_diff(argc, argv, 0);
}

static int cmd_diff(int argc, char **argv) {
  return cmd_repair_diff(argc, argv, 1);
}

/* ---------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------- */
typedef int (*cmd_fn)(int argc, char **argv);
static const struct {
  const char *name;
  cmd_fn fn;
} CMDS[] = {{"init", cmd_init},
            {"schema", cmd_schema},
            {"add-column", cmd_add_column},
            {"put", cmd_put},
            {"get", cmd_get},
            {"del", cmd_del},
            {"dump", cmd_dump},
            {"load", cmd_load},
            {"log", cmd_log},
            {"vv", cmd_vv},
            {"peers", cmd_peers},
            {"conflicts", cmd_conflicts},
            {"rejected", cmd_rejected},
            {"gc", cmd_gc},
            {"digest", cmd_digest},
            {"verify", cmd_verify},
            {"serve", cmd_serve},
            {"sync", cmd_sync},
            {"repair", cmd_repair},
            {"diff", cmd_diff},
            {"stats", cmd_stats}};

int main(int argc, char **argv) {
  size_t i;
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
    const cmd_help *h;
    g_cmd = "help";
    if (argc == 2) {
      print_overview(stdout);
      return EX_OK;
    }
    if (!(h = find_help(argv[2]))) return usage("no command '%s'", argv[2]);
    print_page(h);
    return EX_OK;
  }
  for (i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
    if (!strcmp(CMDS[i].name, name)) {
      g_cmd = name;
      if (wants_help(argc - 2, argv + 2)) {
        print_page(find_help(name));
        return EX_OK;
      }
      return CMDS[i].fn(argc - 2, argv + 2);
    }
  fprintf(stderr, "synctl: no command '%s'\n", name);
  print_overview(stderr);
  return EX_USAGE;
}
