/*
 * gen_session.c - seeds for fuzz_session: real conversations recorded as
 * the client side's bytes (pull, push and both; dry run; a refused
 * credential; a client served another scope before; a push with rows
 * the server refuses; a repair and a diff), each written in the target's
 * raw mode and, message by
 * message, in its framed mode.  The recording server has the fuzz
 * server's site id and schema, so the requests name it.
 *   gen_session DIR
 */
#include "fuzz_world.h"

static uint64_t gs_now = 1700000000000ull;

/* A newer device: the target's schema plus a column appended to table t
 * and a table appended (a rolling schema change, docs/PROTOCOL.md
 * "Schemas"), so that the recorded conversation has the server's schema
 * in WELCOME and the device's in SCHEMA. */
static const sync_column_def gs_tcols2[7] = {
    {"i", SYNC_INTEGER, 0},  {"r", SYNC_REAL, 0},
    {"s", SYNC_TEXT, 0},     {"b", SYNC_BLOB, 0},
    {"loc", SYNC_TEXT, SYNC_COL_LOCAL},
    {"nn", SYNC_INTEGER, SYNC_COL_NOTNULL},
    {"extra", SYNC_INTEGER, 0},
};
static const sync_column_def gs_zcols[1] = {{"z", SYNC_TEXT, 0}};
static const sync_table_def gs_newer[4] = {
    {"t", SYNC_TEXT, gs_tcols2, 7},
    {"m", SYNC_INTEGER, fz_mcols, 3},
    {"k", SYNC_BLOB, fz_bcols, 1},
    {"z", SYNC_TEXT, gs_zcols, 1},
};
static int gs_dev_newer; /* gs_session: the device has gs_newer */

static void gs_open(fz_rep *r, const char *path, uint8_t site) {
  int newer = gs_dev_newer && site == 0xd1;
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  memset(r->site, site, 16);
  r->now = &gs_now;
  fz_remove_db(path);
  FZ_OK(sync_env_create(NULL, &r->env));
  FZ_OK(sync_env_set_random(r->env, fz_random, r));
  FZ_OK(sync_env_set_clock(r->env, fz_clock, r));
  FZ_OK(sync_env_set_durability(r->env, SYNC_DURABLE_NOSYNC));
  FZ_OK(sync_env_set_schema(r->env, newer ? gs_newer : fz_tables,
                            newer ? 4 : FZ_NTABLES));
  FZ_OK(sync_env_open(r->env, path, 0));
}

static void gs_rows(fz_rep *r, const char *prefix, unsigned n) {
  sync_txn *x;
  unsigned i;
  FZ_OK(sync_txn_begin(r->env, 0, &x));
  for (i = 0; i < n; i++) {
    char key[32];
    sync_value v[7];
    sync_table_def d;
    snprintf(key, sizeof key, "%s%02u", prefix, i);
    v[0] = sync_int(i);
    v[1] = sync_real(i / 4.0);
    v[2] = sync_text(prefix, strlen(prefix));
    v[3] = sync_null();
    v[4] = sync_null();
    v[5] = sync_int(7);
    v[6] = sync_int(1000 + i); /* the newer device's column */
    FZ_OK(sync_env_table_def(r->env, 0, &d));
    FZ_OK(sync_put(x, 0, key, strlen(key), v, d.ncolumns));
  }
  FZ_OK(sync_txn_commit(x));
}

typedef struct gs_tape {
  unsigned char b[1 << 16];
  size_t n;
} gs_tape;

/* Move a's output to b, recording it when tape is set. */
static size_t gs_move(sync_session *a, sync_session *b, gs_tape *tape) {
  unsigned char buf[4096];
  size_t total = 0;
  while (sync_session_want_write(a)) {
    sync_outbuf out = {buf, sizeof buf, 0};
    sync_inbuf in;
    int64_t n = sync_session_send(a, &out);
    if (n <= 0) break;
    if (tape && tape->n + (size_t)n <= sizeof tape->b) {
      memcpy(tape->b + tape->n, buf, (size_t)n);
      tape->n += (size_t)n;
    }
    in.ptr = buf;
    in.size = (size_t)n;
    in.pos = 0;
    sync_session_recv(b, &in);
    total += (size_t)n;
  }
  return total;
}

static void gs_write(const char *dir, const char *name, const void *p,
                     size_t n) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f)) FZ_BUG("cannot write %s", path);
}

/* The framed form: each message of the tape as (type, len, payload),
 * a DATA holding a whole short session frame as (0x44, len, its body);
 * messages of more than 255 payload bytes end the list. */
static size_t gs_framed(const gs_tape *t, unsigned char *out) {
  size_t i = 0, o = 0;
  out[o++] = 1;
  while (i + 2 <= t->n) {
    unsigned type = t->b[i];
    uint64_t len = 0;
    unsigned shift = 0;
    size_t j = i + 1;
    while (j < t->n && (t->b[j] & 0x80)) len |= (uint64_t)(t->b[j++] & 0x7f) << shift, shift += 7;
    if (j >= t->n) break;
    len |= (uint64_t)t->b[j++] << shift;
    if (len > 255 || j + len + 4 > t->n) break;
    if (type == 4 && len >= 10 && t->b[j] == 0x30 && t->b[j + 1] < 0x80 &&
        2 + (uint64_t)t->b[j + 1] + 8 == len) {
      /* A whole uncompressed session frame in one DATA: its body alone
       * (the target writes its header and checksum, fuzz_session.c). */
      out[o++] = 0x44;
      out[o++] = t->b[j + 1];
      memcpy(out + o, t->b + j + 2, t->b[j + 1]);
      o += t->b[j + 1];
      i = j + (size_t)len + 4;
      continue;
    }
    out[o++] = (unsigned char)type;
    out[o++] = (unsigned char)len;
    memcpy(out + o, t->b + j, (size_t)len);
    o += (size_t)len;
    i = j + (size_t)len + 4;
  }
  return o;
}

/* One unrecorded session of dev with srv, selecting tables (NULL: all). */
static void gs_run(fz_rep *dev, fz_rep *srv, int mode, const char *cred,
                   const unsigned char *tables) {
  sync_session_opts co, so;
  sync_session *c, *s;
  unsigned rounds = 0;
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = mode;
  co.credential = cred;
  co.credential_len = strlen(cred);
  co.tables = tables;
  so.server = 1;
  FZ_OK(sync_session_create(dev->env, &co, &c));
  FZ_OK(sync_session_create(srv->env, &so, &s));
  while (rounds++ < 10000 &&
         !(sync_session_status(c) && sync_session_status(s))) {
    size_t moved = gs_move(c, s, NULL);
    moved += gs_move(s, c, NULL);
    if (!moved) break;
  }
  sync_session_free(c);
  sync_session_free(s);
}

/* rescope: the device was served another selection before (table 0
 * only), so the recorded requests carry a scope the server restarts
 * its stream for (docs/PROTOCOL.md, "Scope"). */
#define GS_RESCOPE 1 /* the client was served another scope before */
#define GS_REFUSE 2  /* it pushes rows the server's write check refuses */
#define GS_CHECK 4   /* it synced with the server before: CHECK comes first,
                        and since the server changed since, HELLO after */

static void gs_session(const char *dir, const char *name, int mode, int dry,
                       const char *cred, int level, int extra) {
  fz_rep srv, dev;
  sync_session_opts co, so;
  sync_session *c, *s;
  static gs_tape tape;
  static unsigned char raw[1 + sizeof tape.b], framed[1 + sizeof tape.b];
  char fname[128];
  unsigned rounds = 0;
  gs_open(&srv, "/tmp/gen-session-srv.db", 0x5e);
  gs_open(&dev, "/tmp/gen-session-dev.db", 0xd1);
  gs_rows(&srv, "s", 20);
  gs_rows(&dev, "d", 12);
  if (extra & GS_RESCOPE) {
    static const unsigned char first[1] = {0x1};
    gs_run(&dev, &srv, SYNC_PULL, cred, first);
  }
  if (extra & GS_REFUSE) gs_rows(&dev, "x", 9); /* refused by fz_check_write */
  if (extra & GS_CHECK) {
    gs_run(&dev, &srv, SYNC_BOTH, cred, NULL);
    gs_rows(&srv, "n", 4);
  }
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  if (extra & GS_REFUSE) so.check_write = fz_check_write;
  co.mode = mode;
  co.dry_run = dry;
  co.credential = cred;
  co.credential_len = strlen(cred);
  co.chunk_rows = 5;
  co.level = level;
  so.server = 1;
  so.max_message = 256; /* small messages: the framed form holds them all */
  so.chunk_rows = 7;
  FZ_OK(sync_session_create(dev.env, &co, &c));
  FZ_OK(sync_session_create(srv.env, &so, &s));
  tape.n = 0;
  while (rounds++ < 10000 &&
         !(sync_session_status(c) && sync_session_status(s))) {
    size_t moved = gs_move(c, s, &tape);
    moved += gs_move(s, c, NULL);
    if (!moved) break;
  }
  sync_session_free(c);
  sync_session_free(s);
  raw[0] = 0;
  memcpy(raw + 1, tape.b, tape.n);
  snprintf(fname, sizeof fname, "g-%s-raw", name);
  gs_write(dir, fname, raw, tape.n + 1);
  raw[0] = 2 * 6; /* fragments of 7 bytes */
  snprintf(fname, sizeof fname, "g-%s-raw7", name);
  gs_write(dir, fname, raw, tape.n + 1);
  snprintf(fname, sizeof fname, "g-%s-framed", name);
  gs_write(dir, fname, framed, gs_framed(&tape, framed));
  sync_env_close(srv.env);
  sync_env_close(dev.env);
  fz_remove_db(srv.path);
  fz_remove_db(dev.path);
}

/* A repair (or, dry, a diff) against a server that holds exactly what
 * the fuzz target's server holds (same site, clock, rows), so the
 * recorded client turns stay in step with its answers: the device first
 * pulls everything, then updates some rows and adds its own. */
static void gs_repair(const char *dir, const char *name, int dry) {
  fz_rep srv, dev;
  sync_session_opts co, so;
  sync_session *c, *s;
  static gs_tape tape;
  static unsigned char raw[1 + sizeof tape.b], framed[1 + sizeof tape.b];
  char fname[128];
  unsigned rounds = 0, i;
  sync_txn *x;
  gs_open(&srv, "/tmp/gen-session-srv.db", 0x5e);
  gs_open(&dev, "/tmp/gen-session-dev.db", 0xd1);
  FZ_OK(sync_txn_begin(srv.env, 0, &x));
  for (i = 0; i < 20; i++) { /* as fuzz_session.c's server */
    char key[16];
    sync_value v[6];
    snprintf(key, sizeof key, "s%02u", i);
    v[0] = sync_int(i);
    v[1] = sync_real(i / 2.0);
    v[2] = sync_text("server", 6);
    v[3] = sync_null();
    v[4] = sync_null();
    v[5] = sync_int(1);
    FZ_OK(sync_put(x, 0, key, strlen(key), v, 6));
  }
  FZ_OK(sync_txn_commit(x));
  memset(&co, 0, sizeof co);
  memset(&so, 0, sizeof so);
  co.mode = SYNC_PULL;
  co.credential = "token";
  co.credential_len = 5;
  so.server = 1;
  FZ_OK(sync_session_create(dev.env, &co, &c));
  FZ_OK(sync_session_create(srv.env, &so, &s));
  while (rounds++ < 10000 &&
         !(sync_session_status(c) && sync_session_status(s)))
    if (!(gs_move(c, s, NULL) + gs_move(s, c, NULL))) break;
  sync_session_free(c);
  sync_session_free(s);
  gs_now += 1000;
  FZ_OK(sync_txn_begin(dev.env, 0, &x));
  for (i = 0; i < 20; i += 6) {
    char key[16];
    unsigned col = 0;
    sync_value v = sync_int(1000 + i);
    snprintf(key, sizeof key, "s%02u", i);
    FZ_OK(sync_update(x, 0, key, strlen(key), &col, &v, 1));
  }
  FZ_OK(sync_delete(x, 0, "s05", 3));
  FZ_OK(sync_txn_commit(x));
  gs_rows(&dev, "d", 3);
  memset(&co, 0, sizeof co);
  co.repair = 1;
  co.dry_run = dry;
  co.credential = "token";
  co.credential_len = 5;
  co.chunk_rows = 5;
  so.max_message = 256;
  so.chunk_rows = 7;
  FZ_OK(sync_session_create(dev.env, &co, &c));
  FZ_OK(sync_session_create(srv.env, &so, &s));
  tape.n = 0;
  rounds = 0;
  while (rounds++ < 10000 &&
         !(sync_session_status(c) && sync_session_status(s))) {
    size_t moved = gs_move(c, s, &tape);
    moved += gs_move(s, c, NULL);
    if (!moved) break;
  }
  if (sync_session_status(c) != 1)
    FZ_BUG("recording %s: %s", name, sync_session_errmsg(c));
  sync_session_free(c);
  sync_session_free(s);
  raw[0] = 0;
  memcpy(raw + 1, tape.b, tape.n);
  snprintf(fname, sizeof fname, "g-%s-raw", name);
  gs_write(dir, fname, raw, tape.n + 1);
  raw[0] = 2 * 6;
  snprintf(fname, sizeof fname, "g-%s-raw7", name);
  gs_write(dir, fname, raw, tape.n + 1);
  snprintf(fname, sizeof fname, "g-%s-framed", name);
  gs_write(dir, fname, framed, gs_framed(&tape, framed));
  sync_env_close(srv.env);
  sync_env_close(dev.env);
  fz_remove_db(srv.path);
  fz_remove_db(dev.path);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_session DIR\n");
    return 2;
  }
  gs_session(argv[1], "pull", SYNC_PULL, 0, "token", 0, 0);
  gs_session(argv[1], "push", SYNC_PUSH, 0, "token", 0, 0);
  gs_session(argv[1], "both", SYNC_BOTH, 0, "token", 3, 0);
  gs_session(argv[1], "dry", SYNC_BOTH, 1, "token", 0, 0);
  gs_session(argv[1], "refused", SYNC_BOTH, 0, "bad", 0, 0);
  gs_session(argv[1], "rescope", SYNC_BOTH, 0, "token", 0, GS_RESCOPE);
  gs_session(argv[1], "rejects", SYNC_PUSH, 0, "token", 0, GS_REFUSE);
  gs_session(argv[1], "check", SYNC_PULL, 0, "token", 0, GS_CHECK);
  gs_dev_newer = 1;
  gs_session(argv[1], "newer", SYNC_BOTH, 0, "token", 0, 0);
  gs_dev_newer = 0;
  gs_repair(argv[1], "repair", 0);
  gs_repair(argv[1], "diff", 1);
  return 0;
}
