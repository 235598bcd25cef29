/*
 * synctl's own header: the exit statuses, the command table's types, and
 * the helpers the command files share.  Only the files of tools/synctl/
 * include it; it is not API (sync.h is the only public header).
 *
 * Where things are: main.c holds the command table and dispatch; each
 * cmd_*.c file holds a group of commands, each with its manual page
 * (ctl_help_NAME) beside its function (ctl_cmd_NAME); output.c, db.c,
 * values.c, json.c and schema.c are the shared helpers; net.c holds the
 * address words and server.c what 'synctl serve' adds to the network
 * helper of tools/net/ (its poll loop, TCP and credentials file).
 */
#ifndef SYNCTL_H
#define SYNCTL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "sync.h"

#define EX_OK 0
#define EX_FAIL 1
#define EX_USAGE 2
#define EX_NOTFOUND 3

/* The most tables and columns a schema given to init may have. */
#define MAXT 64
#define MAXC 256

/* ---------------------------------------------------------------------
 * Commands (main.c holds the table)
 * ------------------------------------------------------------------- */
/* A command's manual page: 'synctl help NAME' and 'synctl NAME --help'
 * print it, the overview lists the summary.  The synopsis may run over
 * lines; the body is paragraphs of lines that end in '\n'. */
typedef struct ctl_help {
  const char *synopsis, *summary, *body;
} ctl_help;

/* Runs a command on the arguments after its name; returns the exit
 * status. */
typedef int (*ctl_cmd_fn)(int argc, char **argv);

#define CTL_COMMAND(name)                                                      \
  int ctl_cmd_##name(int argc, char **argv);                                   \
  extern const ctl_help ctl_help_##name

/* cmd_rows.c */
CTL_COMMAND(init);
CTL_COMMAND(schema);
CTL_COMMAND(add_column);
CTL_COMMAND(put);
CTL_COMMAND(add);
CTL_COMMAND(get);
CTL_COMMAND(del);
CTL_COMMAND(dump);
CTL_COMMAND(load);
/* cmd_inspect.c */
CTL_COMMAND(log);
CTL_COMMAND(vv);
CTL_COMMAND(peers);
CTL_COMMAND(gc);
CTL_COMMAND(compact);
CTL_COMMAND(digest);
CTL_COMMAND(verify);
CTL_COMMAND(stats);
/* cmd_folds.c */
CTL_COMMAND(retire);
CTL_COMMAND(folds);
/* cmd_conflicts.c */
CTL_COMMAND(conflicts);
CTL_COMMAND(rejected);
/* cmd_sync.c */
CTL_COMMAND(serve);
CTL_COMMAND(sync);
CTL_COMMAND(repair);
CTL_COMMAND(diff);
/* cmd_pg.c */
CTL_COMMAND(pg_bridge);
/* cmd_history.c */
CTL_COMMAND(history);
CTL_COMMAND(restore);
/* A point in the past for row history: a local version (digits), '@MS'
 * (a time in ms) or a UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z.  0 with *kind
 * (SYNC_ASOF_*) and *at set, -1 when s is none of these. */
int ctl_parse_asof(const char *s, int *kind, uint64_t *at);

/* Options (main.c): main checks a command's words against the options
 * the command table gives it (an unknown option, a missing value: usage
 * error) and hands it --NAME VALUE for --NAME=VALUE and -x, with '--'
 * dropped; what came after '--' is never an option. */
/* argv[i] is the option name. */
int ctl_opt(long i, const char *a, const char *name);
/* argv[i] is an option. */
int ctl_is_opt(long i, const char *a);
/* The arguments that are neither options nor their values: the first
 * max into pos; returns how many there are. */
int ctl_args(int argc, char **argv, char **pos, int max);
/* The option name (a flag) is among argv. */
int ctl_has(int argc, char **argv, const char *name);

/* ---------------------------------------------------------------------
 * Messages and output (output.c)
 * ------------------------------------------------------------------- */
/* The command running, for messages ("synctl: put: ..."); main sets it. */
extern const char *ctl_cmd;

/* A message on stderr, after "synctl: COMMAND: ". */
void ctl_say(const char *fmt, ...);
/* A usage error: the message, then where to read more.  Returns
 * EX_USAGE. */
int ctl_usage(const char *fmt, ...);
/* A library failure on env (NULL: none yet), in its own words when it has
 * them.  Returns EX_FAIL. */
int ctl_lib_fail(sync_env *env, const char *db, int rc, const char *what);
/* Words for a failed write on a row of d.  Returns EX_FAIL. */
int ctl_write_fail(sync_env *env, const char *db, const sync_table_def *d,
                   int rc);

void ctl_put_hex(FILE *f, const unsigned char *p, size_t n);
/* n bytes as 2n hex digits and a NUL into out. */
void ctl_hex_str(const uint8_t *p, size_t n, char *out);
/* The shortest decimal that reads back to r, into out. */
void ctl_fmt_real(double r, char *out, size_t cap);
/* A value or a key for the aligned forms; returns its width.  f NULL:
 * only measure. */
size_t ctl_put_value(FILE *f, const sync_value *v);
size_t ctl_put_key(FILE *f, int key_type, const unsigned char *k, size_t n);
/* A key as ctl_put_key prints it, into out. */
void ctl_key_str(int key_type, const unsigned char *k, size_t n, char *out,
                 size_t cap);
/* An HLC as "2026-12-01T18:20:01.123Z+counter" ("-" for 0). */
void ctl_fmt_hlc(uint64_t hlc, char *out, size_t cap);
/* A byte count as "12 B", "3.4 KiB", ... */
void ctl_fmt_bytes(uint64_t n, char *out, size_t cap);

/* ---------------------------------------------------------------------
 * Databases, tables, columns and types (db.c)
 * ------------------------------------------------------------------- */
int ctl_file_exists(const char *path);
/* Open the existing database at path with the schema it holds.  EX_OK and
 * *out, or EX_FAIL (said). */
int ctl_open_db(const char *path, int rdonly, sync_env **out);
const char *ctl_type_name(int t);
/* A type name of n bytes (integer, int, real, ...) to SYNC_*; 0 when it
 * names none. */
int ctl_parse_type(const char *s, size_t n);
/* The id of a table or a column by name; -1 with a message that lists
 * them when there is none. */
int ctl_find_table(sync_env *env, const char *db, const char *name,
                   unsigned *out);
int ctl_find_column(sync_env *env, const char *db, unsigned t, const char *name,
                    size_t nlen, unsigned *out);
/* A read-only transaction, or EX_FAIL (said). */
int ctl_begin_ro(sync_env *env, const char *db, sync_txn **x);
/* Open db read-only and begin a read transaction (EX_FAIL, said, when
 * either fails), run fn on them and end both.  Returns fn's exit
 * status. */
int ctl_read_db(const char *db,
                int (*fn)(sync_env *env, sync_txn *x, const char *db,
                          void *ctx),
                void *ctx);
/* The digest of every table; 0 when it cannot be read. */
uint64_t ctl_digest_all(sync_env *env);

/* ---------------------------------------------------------------------
 * Values from text (values.c)
 * ------------------------------------------------------------------- */
typedef struct ctl_keybuf {
  unsigned char b[SYNC_MAX_KEY + 1];
  size_t n;
} ctl_keybuf;

int ctl_hexval(int c);
/* Hex digits (0x allowed) to bytes, malloc'd (caller frees); NULL when not
 * hex or out of memory. */
unsigned char *ctl_from_hex(const char *s, size_t n, size_t *len);
/* Decimal numbers; -1 unless all of s is one. */
int ctl_parse_i64(const char *s, int64_t *out);
int ctl_parse_u64(const char *s, uint64_t *out);
/* KEY as table t's key type wants it; -1 when not (said). */
int ctl_parse_key(sync_env *env, const char *db, unsigned t, const char *s,
                  ctl_keybuf *k);
/* A value of column col of d from command-line text; blob bytes are
 * malloc'd into *hold (caller frees).  -1 when not (said). */
int ctl_parse_value(const char *db, const sync_table_def *d, unsigned col,
                    const char *s, sync_value *v, unsigned char **hold);
/* Each line of the text file at path (lines of up to 1023 bytes) to fn,
 * with where "PATH:LINE" for its messages, until fn returns nonzero.  0,
 * or -1 when the file cannot be opened or fn failed (said). */
int ctl_each_line(const char *path,
                  int (*fn)(void *ctx, char *line, const char *where),
                  void *ctx);

/* ---------------------------------------------------------------------
 * JSON (json.c, through jansson)
 * ------------------------------------------------------------------- */
/* A value, a key, a row (the key under "key", then the columns by name)
 * and a string (as text is: {"hex": ...} when not UTF-8) as new JSON
 * values; NULL when out of memory. */
json_t *ctl_json_of(const sync_value *v);
json_t *ctl_json_key(int key_type, const unsigned char *k, size_t n);
json_t *ctl_json_row(const sync_table_def *d, const void *key, size_t klen,
                     const sync_value *vals);
json_t *ctl_json_str(const char *s);
/* j (NULL: out of memory) as one compact line on stdout, then freed.
 * EX_OK, or EX_FAIL (said). */
int ctl_json_print(json_t *j);
/* The text a JSON value stands for (a string, or {"hex": ...}): *out
 * and *n, the bytes malloc'd into *hold for the hex form (caller
 * frees).  -1 when j is neither. */
int ctl_json_text(json_t *j, char **out, size_t *n, unsigned char **hold);
/* The value of column c from JSON; blob bytes into *hold (caller frees).
 * A counter's is the INTEGER to bring it to (NULL: leave it).  -1 with
 * the words in err when the JSON type does not fit. */
int ctl_json_to_value(const sync_column_def *c, json_t *j, sync_value *out,
                      unsigned char **hold, char *err, size_t errcap);

/* ---------------------------------------------------------------------
 * Schemas given to init and add-column (schema.c)
 * ------------------------------------------------------------------- */
typedef struct ctl_schema_in {
  sync_table_def t[MAXT];
  sync_column_def c[MAXT][MAXC];
  unsigned nt;
  char *strings[MAXT * (MAXC + 1)]; /* the names, malloc'd */
  size_t ns;
} ctl_schema_in;

/* Each returns 0, or -1 after a usage message that starts with where. */
int ctl_add_table(ctl_schema_in *s, const char *name, size_t nlen,
                  const char *kt, size_t klen, const char *where);
/* COL:TYPE[:notnull][:local], a column of the last table. */
int ctl_col_word(ctl_schema_in *s, const char *w, const char *where);
int ctl_schema_file(ctl_schema_in *s, const char *path);
/* Frees the names (not s). */
void ctl_schema_free(ctl_schema_in *s);

/* ---------------------------------------------------------------------
 * Addresses (net.c) and serve (server.c); TCP itself is tools/net/'s
 * ------------------------------------------------------------------- */
/* What the other side named on the command line is: 1 an address
 * (HOST:PORT, no file of that name), 0 a database file, -1 neither: a
 * malformed address or a missing file without a port (said as a usage
 * error). */
int ctl_peer_kind(const char *s);
/* EX_OK when s is HOST:PORT with a port of 0 to 65535, else EX_USAGE
 * (said). */
int ctl_check_address(const char *s);
/* The port into file (nothing when file is NULL); -1 when not (said). */
int ctl_write_port(const char *file, int port);
/* GET /metrics from a 'synctl serve --metrics' address, onto stdout: as
 * it comes, or with json one JSON line per sample.  Returns the exit
 * status. */
int ctl_stats_remote(const char *addr, int json);

/* What 'synctl serve' was given. */
typedef struct ctl_serve_opts {
  const char *db, *addr, *credfile, *portfile, *maddr, *mportfile;
  long max_sessions; /* -1: until SIGINT or SIGTERM */
  int quiet;
  /* TLS (--tls-cert, --tls-key; --tls-client-ca: clients must show a
   * certificate; --tls-ca: the CAs of the mesh peers' certificates).
   * With --mqtt mqtts://: --tls-ca checks the broker's certificate, and
   * --tls-cert and --tls-key are the certificate shown to it. */
  const char *tls_cert, *tls_key, *tls_ca, *tls_client_ca;
  /* The mesh (serve_mesh.c): --peer (up to 32), --peers FILE,
   * --peer-interval, --peer-token */
  const char *peers[32];
  int npeers;
  unsigned peer_interval;
  const char *peer_token;
  const char *mqtt, *topic, *share; /* --mqtt BROKER: serve over MQTT */
} ctl_serve_opts;
/* Serve o->db until told to stop.  Returns the exit status. */
int ctl_serve(const ctl_serve_opts *o);

/* serve_mqtt.c: serve o->db through the broker o->mqtt (exit status);
 * whether url is mqtt://BROKER[:PORT]/PREFIX/DEVICE or mqtts://...
 * (EX_OK, or EX_USAGE said); and a sync with retries through it, over
 * TLS with mqtts:// (tls: the CA file, the client certificate and key,
 * the name the broker's certificate must carry; NULL when not given):
 * 0, a library code, or 1 when no session could start (said). */
typedef struct ctl_tls_files {
  const char *ca, *cert, *key, *name;
} ctl_tls_files;
int ctl_serve_mqtt(const ctl_serve_opts *o);
int ctl_check_mqtt_url(const char *url);
int ctl_sync_mqtt(sync_env *env, sync_session_opts *so, const char *db,
                  const char *url, const ctl_tls_files *tls,
                  sync_session_stats *st, char *errmsg, size_t cap);

#endif
