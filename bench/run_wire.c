/*
 * run_wire.c - bytes on the wire and codec rates (DESIGN.md section 7,
 * the wire budgets), side by side with SQLite's session changesets for
 * the same rows.
 *
 *  - W1: an empty receiver pulls all W1 rows in chunks of WIRE_CHUNK rows;
 *    every chunk is encoded as one frame (stored, zstd 1, zstd 3).  SQLite:
 *    the same rows, chunk for chunk, each chunk recorded by its own session
 *    and compressed on its own.  Then random-key updates of one column and
 *    of all four columns, pulled incrementally, against SQLite UPDATEs.
 *  - Rates: encode and decode of the W1 frames, and SQLite iterating its
 *    chunk changesets reading every value, in alternating rounds.
 *  - W2 telemetry: the initial pull (key order), the live stream (one
 *    pull after every 1,000-reading transaction, so a frame holds what
 *    just arrived), and 10-row frames with and without a trained
 *    dictionary.
 *
 * Only the encode and decode loops are timed; pulls, SQLite sessions and
 * zstd compression of the changesets are made beforehand.  See
 * bench/README.md for what each figure means.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zdict.h>
#include <zstd.h>

#include "bench.h"
#include "peers.h"
#include "w1.h"
#include "w2.h"
#include "workloads.h"

#define WIRE_CHUNK 1000 /* rows per chunk: sync_delta_make's default */
#define WIRE_SMALL 10   /* rows per chunk of the small-batch runs */
#define WIRE_DICT_CAP ((size_t)16 << 10)
#define WIRE_TRAIN_DEVS 10    /* the dictionary learns from 10 devices' ... */
#define WIRE_TRAIN_READS 1000 /* ... 1,000 readings each, a day earlier */

#define WIRE_SEED_UPDATES UINT64_C(0x5715C0DE00000041)
#define WIRE_SEED_TRAIN UINT64_C(0x5715C0DE00000042)
#define WIRE_DAY_MS UINT64_C(86400000)

#ifndef BENCH_NO_SQLITE
static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
#endif

/* ---- chunks of a pull ------------------------------------------------ */

typedef struct wire_chunks {
  sync_delta **d;
  size_t *rows; /* rows of each chunk */
  size_t n, cap;
  size_t total; /* rows of all chunks */
} wire_chunks;

static void chunks_push(wire_chunks *c, sync_delta *d) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 1024;
    sync_delta **nd = realloc(c->d, cap * sizeof *nd);
    size_t *nr = nd ? realloc(c->rows, cap * sizeof *nr) : NULL;
    if (nd) c->d = nd;
    if (!nd || !nr) bench_die("out of memory");
    c->rows = nr;
    c->cap = cap;
  }
  c->d[c->n] = d;
  c->rows[c->n] = sync_delta_rows(d);
  c->total += c->rows[c->n];
  c->n++;
}

static void chunks_free(wire_chunks *c) {
  for (size_t i = 0; i < c->n; i++) sync_delta_free(c->d[i]);
  free(c->d);
  free(c->rows);
  memset(c, 0, sizeof *c);
}

/* recv pulls from send, chunk by chunk (bench_pull_chunk, as a session
 * does), until the last chunk or max_chunks chunks (0: no limit); every
 * chunk is kept in out. */
static void wire_pull(peer_sync *recv, peer_sync *send, size_t max_rows,
                      size_t max_chunks, wire_chunks *out) {
  sync_delta_opts opts = {max_rows, 0};
  uint8_t site[16];
  size_t got = 0;
  peer_sync_check(send->env, sync_env_site_id(send->env, site),
                  "sync_env_site_id");
  for (;;) {
    bench_chunk c;
    bench_pull_chunk(recv->env, send->env, site, &opts, &c);
    if (!c.rep.cursor_moved)
      bench_die("wire: chunk %zu of a pull did not move the cursor", got);
    chunks_push(out, c.d);
    got++;
    if (c.last || (max_chunks && got >= max_chunks)) break;
  }
}

/* ---- our frames ------------------------------------------------------ */

static sync_encoder *wire_encoder(int level, const void *dict, size_t dlen) {
  sync_codec_opts o;
  sync_encoder *e = NULL;
  memset(&o, 0, sizeof o);
  o.level = level;
  o.dict = dict;
  o.dict_len = dlen;
  peer_sync_check(NULL, sync_encoder_create(NULL, &o, &e),
                  "sync_encoder_create");
  return e;
}

static sync_decoder *wire_decoder(const void *dict, size_t dlen) {
  sync_codec_opts o;
  sync_decoder *dec = NULL;
  memset(&o, 0, sizeof o);
  o.dict = dict;
  o.dict_len = dlen;
  peer_sync_check(NULL, sync_decoder_create(NULL, &o, &dec),
                  "sync_decoder_create");
  return dec;
}

/* Stored frames of all chunks, back to back, for the decode rounds. */
typedef struct wire_frames {
  unsigned char *buf;
  size_t *off; /* frame i is buf[off[i] .. off[i + 1]) */
  size_t n, cap;
} wire_frames;

static void frames_add(wire_frames *fr, size_t i, const void *f, size_t len) {
  size_t at = i ? fr->off[i] : 0;
  while (at + len > fr->cap) {
    unsigned char *nb =
        realloc(fr->buf, fr->cap = fr->cap ? 2 * fr->cap : 1u << 20);
    if (!nb) bench_die("out of memory");
    fr->buf = nb;
  }
  fr->off[i] = at;
  memcpy(fr->buf + at, f, len);
  fr->off[i + 1] = at + len;
}

/* Bytes of all chunks as frames at zstd level (0: stored), whole frames:
 * header, body and checksum.  Every frame is decoded back (with the same
 * dictionary) and must give its chunk's row count.  keep (may be NULL)
 * receives a copy of the frames. */
static uint64_t wire_bytes(const wire_chunks *c, int level, const void *dict,
                           size_t dlen, wire_frames *keep) {
  sync_encoder *e = wire_encoder(level, dict, dlen);
  sync_decoder *dec = wire_decoder(dict, dlen);
  uint64_t sum = 0;
  if (keep) {
    memset(keep, 0, sizeof *keep);
    keep->off = bench_xmalloc((c->n + 1) * sizeof *keep->off);
    keep->off[0] = 0;
    keep->n = c->n;
  }
  for (size_t i = 0; i < c->n; i++) {
    const void *f;
    size_t len;
    sync_delta *back = NULL;
    peer_sync_check(NULL, sync_encoder_begin(e, c->d[i], NULL, NULL),
                    "sync_encoder_begin");
    peer_sync_check(NULL, sync_encoder_frame(e, &f, &len),
                    "sync_encoder_frame");
    peer_sync_check(NULL, sync_decoder_decode(dec, f, len, &back),
                    "sync_decoder_decode");
    if (!back || sync_delta_rows(back) != c->rows[i])
      bench_die("wire: frame %zu decodes to %zu rows, not %zu", i,
                back ? sync_delta_rows(back) : 0, c->rows[i]);
    sync_delta_free(back);
    if (keep) frames_add(keep, i, f, len);
    sum += len;
  }
  sync_encoder_free(e);
  sync_decoder_free(dec);
  return sum;
}

/* Column a of rows[0..n) set to new values, by sync_update. */
static void w1_update_a(peer_sync *p, const w1_row *rows, size_t n) {
  static const unsigned col_a = 0;
  for (size_t i = 0; i < n; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < n ? i + W1_TXN_ROWS : n;
    sync_txn *txn;
    peer_sync_check(p->env, sync_txn_begin(p->env, 0, &txn), "sync_txn_begin");
    for (size_t j = i; j < end; j++) {
      sync_value v = sync_int(rows[j].a);
      peer_sync_check(
          p->env,
          sync_update(txn, p->table, rows[j].key, W1_KEY_LEN, &col_a, &v, 1),
          "sync_update");
    }
    peer_sync_check(p->env, sync_txn_commit(txn), "sync_txn_commit");
  }
}

/* The sender's clock while writing W2: the arrival time of the last
 * reading of the transaction, as on a gateway that commits readings as
 * they come in. */
static uint64_t w2_clock(void *ctx) { return *(const uint64_t *)ctx; }

/* Write rows[0..n) (arrival order), W2_TXN_ROWS per transaction.  When
 * live is not NULL, it pulls from p after every commit into chunks. */
static void w2_write(peer_sync *p, const w2_row *rows, size_t n,
                     uint64_t *clock, peer_sync *live, wire_chunks *chunks) {
  for (size_t i = 0; i < n; i += W2_TXN_ROWS) {
    size_t end = i + W2_TXN_ROWS < n ? i + W2_TXN_ROWS : n;
    sync_txn *txn;
    *clock = rows[end - 1].ts;
    peer_sync_check(p->env, sync_txn_begin(p->env, 0, &txn), "sync_txn_begin");
    for (size_t j = i; j < end; j++) {
      sync_value v[W2_NCOLUMNS];
      w2_values(&rows[j], v);
      peer_sync_check(
          p->env,
          sync_put(txn, p->table, rows[j].key, W2_KEY_LEN, v, W2_NCOLUMNS),
          "sync_put");
    }
    peer_sync_check(p->env, sync_txn_commit(txn), "sync_txn_commit");
    if (live) wire_pull(live, p, WIRE_CHUNK, 0, chunks);
  }
}

static void w2_open(peer_sync *p, const char *path, uint64_t *clock) {
  peer_sync_open(p, path, SYNC_DURABLE_NOSYNC, &w2_table, 1);
  peer_sync_check(p->env, sync_env_set_clock(p->env, w2_clock, clock),
                  "sync_env_set_clock");
}

#ifndef BENCH_NO_SQLITE
/* ---- zstd of byte strings -------------------------------------------- */

/* Sum of the zstd sizes (simple API, frame headers included) of each of
 * bufs[0..n) compressed on its own at level. */
static uint64_t zstd_bytes(void *const *bufs, const int *lens, size_t n,
                           int level) {
  ZSTD_CCtx *z = ZSTD_createCCtx();
  size_t cap = 0;
  void *out = NULL;
  uint64_t sum = 0;
  if (!z) bench_die("ZSTD_createCCtx failed");
  for (size_t i = 0; i < n; i++) {
    size_t need = ZSTD_compressBound((size_t)lens[i]), got;
    if (need > cap) {
      free(out);
      out = bench_xmalloc(cap = need);
    }
    got = ZSTD_compressCCtx(z, out, cap, bufs[i], (size_t)lens[i], level);
    if (ZSTD_isError(got))
      bench_die("ZSTD_compressCCtx: %s", ZSTD_getErrorName(got));
    sum += got;
  }
  free(out);
  ZSTD_freeCCtx(z);
  return sum;
}

#endif

/* ---- SQLite's changesets --------------------------------------------- */

#ifndef BENCH_NO_SQLITE
typedef struct lite_chunks {
  void **cs; /* sqlite3_malloc'd changesets */
  int *len;
  size_t n;
  uint64_t bytes, rows;
} lite_chunks;

/* Bind row number i (of the workload's order) to st. */
typedef void (*lite_bind_fn)(void *ctx, size_t i, sqlite3_stmt *st,
                             peer_sqlite *p);

/* Set up, outside any session, what rows first..first+n-1 of the order
 * need (the old rows of updates). */
typedef void (*lite_pre_fn)(void *ctx, size_t first, size_t n, peer_sqlite *p);

/* Run st for rows 0, 1, ... of the order, in groups of sizes[0..n) rows
 * (the chunks of our pull), each group in one transaction recorded by a
 * session of its own: one changeset per chunk.  Empty groups make none.
 * A changeset holds only its chunk's rows, so after each one the table is
 * emptied (outside the session) and every chunk starts from a small
 * table: that keeps SQLite's time out of the bench's budget without
 * changing a byte of what it records.  pre (may be NULL) runs before each
 * chunk's session. */
static void lite_record(peer_sqlite *p, const char *table, sqlite3_stmt *st,
                        lite_bind_fn bind, lite_pre_fn pre, void *ctx,
                        const size_t *sizes, size_t n, lite_chunks *out) {
  char reset[128];
  size_t row = 0;
  snprintf(reset, sizeof reset, "DELETE FROM %s", table);
  memset(out, 0, sizeof *out);
  out->cs = bench_xmalloc(n * sizeof *out->cs);
  out->len = bench_xmalloc(n * sizeof *out->len);
  for (size_t k = 0; k < n; k++) {
    sqlite3_session *s = NULL;
    void *cs = NULL;
    int len = 0;
    if (!sizes[k]) continue;
    if (pre) pre(ctx, row, sizes[k], p);
    peer_sqlite_check(p, sqlite3session_create(p->db, "main", &s), SQLITE_OK,
                      "sqlite3session_create");
    peer_sqlite_check(p, sqlite3session_attach(s, table), SQLITE_OK,
                      "sqlite3session_attach");
    peer_sqlite_exec(p, "BEGIN");
    for (size_t j = 0; j < sizes[k]; j++, row++) {
      bind(ctx, row, st, p);
      peer_sqlite_check(p, sqlite3_step(st), SQLITE_DONE, "step");
      if (sqlite3_changes(p->db) != 1)
        bench_die("wire sqlite: row %zu changed %d rows", row,
                  sqlite3_changes(p->db));
      peer_sqlite_check(p, sqlite3_reset(st), SQLITE_OK, "reset");
    }
    peer_sqlite_exec(p, "COMMIT");
    peer_sqlite_check(p, sqlite3session_changeset(s, &len, &cs), SQLITE_OK,
                      "sqlite3session_changeset");
    sqlite3session_delete(s);
    peer_sqlite_exec(p, reset);
    if (!cs || len <= 0)
      bench_die("wire sqlite: the session of chunk %zu recorded nothing", k);
    out->cs[out->n] = cs;
    out->len[out->n++] = len;
    out->bytes += (uint64_t)len;
    out->rows += sizes[k];
  }
}

static void lite_free(lite_chunks *c) {
  for (size_t i = 0; i < c->n; i++) sqlite3_free(c->cs[i]);
  free(c->cs);
  free(c->len);
  memset(c, 0, sizeof *c);
}

/* All chunks back to back (a concatenation of changesets is a changeset),
 * compressed in one piece: the best zstd can do with no chunking. */
static uint64_t lite_whole_zstd(const lite_chunks *c, int level) {
  unsigned char *all = bench_xmalloc((size_t)c->bytes);
  void *one[1];
  int len[1];
  size_t at = 0;
  uint64_t got;
  for (size_t i = 0; i < c->n; i++) {
    memcpy(all + at, c->cs[i], (size_t)c->len[i]);
    at += (size_t)c->len[i];
  }
  if (at > INT32_MAX) bench_die("wire sqlite: changeset over 2 GiB");
  one[0] = all;
  len[0] = (int)at;
  got = zstd_bytes(one, len, 1, level);
  free(all);
  return got;
}

/* SQLite for recording changesets: an in-memory database.  A changeset
 * holds the rows, not the storage, so the file and its journal would only
 * cost time here (this workload measures no SQLite write rate).  Sessions
 * are made per chunk by lite_record. */
static void lite_open(peer_sqlite *p, const char *create) {
  p->db = NULL;
  p->session = NULL;
  peer_sqlite_check(p,
                    sqlite3_open_v2(":memory:", &p->db,
                                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                    NULL),
                    SQLITE_OK, "sqlite3_open_v2(:memory:)");
  peer_sqlite_exec(p, create);
}

/* W1: row number i in key order (row i), into a scratch row. */
static void bind_w1_insert(void *ctx, size_t i, sqlite3_stmt *st,
                           peer_sqlite *p) {
  w1_row *r = ctx;
  int rc;
  w1_fill_row(r, (uint32_t)i);
  rc = sqlite3_bind_text(st, 1, r->key, W1_KEY_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, r->a);
  if (rc == SQLITE_OK) rc = sqlite3_bind_double(st, 3, r->b);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 4, r->c, W1_TEXT_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 5, r->d, W1_BLOB_LEN, SQLITE_STATIC);
  peer_sqlite_check(p, rc, SQLITE_OK, "sqlite3_bind");
}

/* W1 updates: ?1 key, ?2.. the new values (only a, or a..d).  The old
 * row of update i is W1 row number orig[i]. */
typedef struct upd_bind {
  const w1_row *rows;
  const uint32_t *orig;
  int all;
  sqlite3_stmt *ins;
} upd_bind;

static void pre_w1_update(void *ctx, size_t first, size_t n, peer_sqlite *p) {
  upd_bind *u = ctx;
  w1_row old;
  peer_sqlite_exec(p, "BEGIN");
  for (size_t i = first; i < first + n; i++) {
    bind_w1_insert(&old, u->orig[i], u->ins, p);
    peer_sqlite_check(p, sqlite3_step(u->ins), SQLITE_DONE, "INSERT");
    peer_sqlite_check(p, sqlite3_reset(u->ins), SQLITE_OK, "reset");
  }
  peer_sqlite_exec(p, "COMMIT");
}

static void bind_w1_update(void *ctx, size_t i, sqlite3_stmt *st,
                           peer_sqlite *p) {
  const upd_bind *u = ctx;
  const w1_row *r = &u->rows[i];
  int rc = sqlite3_bind_text(st, 1, r->key, W1_KEY_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, r->a);
  if (u->all) {
    if (rc == SQLITE_OK) rc = sqlite3_bind_double(st, 3, r->b);
    if (rc == SQLITE_OK)
      rc = sqlite3_bind_text(st, 4, r->c, W1_TEXT_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
      rc = sqlite3_bind_blob(st, 5, r->d, W1_BLOB_LEN, SQLITE_STATIC);
  }
  peer_sqlite_check(p, rc, SQLITE_OK, "sqlite3_bind");
}

static void bind_w2(void *ctx, size_t i, sqlite3_stmt *st, peer_sqlite *p) {
  const w2_row *r = &((const w2_row *)ctx)[i];
  int rc = sqlite3_bind_blob(st, 1, r->key, W2_KEY_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_bind_double(st, 2, r->temperature);
  if (rc == SQLITE_OK) rc = sqlite3_bind_double(st, 3, r->humidity);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 4, r->battery);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 5, r->status, (int)r->status_len, SQLITE_STATIC);
  peer_sqlite_check(p, rc, SQLITE_OK, "sqlite3_bind");
}
#endif

/* ---- the timed sides ------------------------------------------------- */

typedef struct rate_ctx {
  const wire_chunks *chunks;
  const wire_frames *frames;
  uint64_t frame_bytes; /* all stored frames */
  double enc_mbps, dec_mbps;
#ifndef BENCH_NO_SQLITE
  const lite_chunks *lite;
#endif
  volatile uint64_t sink; /* what the loops read, so it is not optimised out */
} rate_ctx;

static double side_encode(void *arg) {
  rate_ctx *c = arg;
  sync_encoder *e = wire_encoder(0, NULL, 0);
  uint64_t bytes = 0, rows = 0;
  double t0, t1, mbps;
  t0 = bench_now();
  for (size_t i = 0; i < c->chunks->n; i++) {
    size_t len;
    int rc = sync_encoder_begin(e, c->chunks->d[i], &len, NULL);
    if (rc) peer_sync_check(NULL, rc, "sync_encoder_begin");
    bytes += len;
    rows += c->chunks->rows[i];
  }
  t1 = bench_now();
  sync_encoder_free(e);
  if (bytes != c->frame_bytes)
    bench_die("wire: encoding again made %" PRIu64 " bytes, not %" PRIu64,
              bytes, c->frame_bytes);
  mbps = (double)bytes / (t1 - t0) / 1e6;
  if (mbps > c->enc_mbps) c->enc_mbps = mbps;
  return (double)rows / (t1 - t0);
}

static double side_decode(void *arg) {
  rate_ctx *c = arg;
  const wire_frames *f = c->frames;
  sync_decoder *dec = wire_decoder(NULL, 0);
  uint64_t rows = 0;
  double t0, t1, mbps;
  t0 = bench_now();
  for (size_t i = 0; i < f->n; i++) {
    sync_delta *d = NULL;
    int rc = sync_decoder_decode(dec, f->buf + f->off[i],
                                 f->off[i + 1] - f->off[i], &d);
    if (rc || !d)
      peer_sync_check(NULL, rc ? rc : SYNC_EFORMAT, "sync_decoder_decode");
    rows += sync_delta_rows(d);
    sync_delta_free(d);
  }
  t1 = bench_now();
  sync_decoder_free(dec);
  if (rows != c->chunks->total)
    bench_die("wire: decoded %" PRIu64 " rows, not %zu", rows,
              c->chunks->total);
  mbps = (double)f->off[f->n] / (t1 - t0) / 1e6;
  if (mbps > c->dec_mbps) c->dec_mbps = mbps;
  return (double)rows / (t1 - t0);
}

#ifndef BENCH_NO_SQLITE
/* Iterate every chunk changeset: op and every new value, each value read
 * as its type (the int, the double, the bytes of text and blob). */
static double side_lite_iter(void *arg) {
  rate_ctx *c = arg;
  const lite_chunks *l = c->lite;
  uint64_t rows = 0, sink = 0;
  double t0, t1;
  t0 = bench_now();
  for (size_t i = 0; i < l->n; i++) {
    sqlite3_changeset_iter *it = NULL;
    int rc;
    if (sqlite3changeset_start(&it, l->len[i], l->cs[i]) != SQLITE_OK)
      bench_die("sqlite3changeset_start failed");
    while ((rc = sqlite3changeset_next(it)) == SQLITE_ROW) {
      const char *tab;
      int ncol, op, ind;
      if (sqlite3changeset_op(it, &tab, &ncol, &op, &ind) != SQLITE_OK ||
          op != SQLITE_INSERT)
        bench_die("sqlite3changeset_op: not an insert");
      for (int k = 0; k < ncol; k++) {
        sqlite3_value *v = NULL;
        if (sqlite3changeset_new(it, k, &v) != SQLITE_OK || !v)
          bench_die("sqlite3changeset_new failed");
        switch (sqlite3_value_type(v)) {
        case SQLITE_INTEGER: sink += (uint64_t)sqlite3_value_int64(v); break;
        case SQLITE_FLOAT:
          sink += (uint64_t)(int64_t)sqlite3_value_double(v);
          break;
        case SQLITE_TEXT:
          sink += sqlite3_value_text(v)[0] + (uint64_t)sqlite3_value_bytes(v);
          break;
        case SQLITE_BLOB:
          sink += ((const unsigned char *)sqlite3_value_blob(v))[0] +
                  (uint64_t)sqlite3_value_bytes(v);
          break;
        default: break;
        }
      }
      rows++;
    }
    if (rc != SQLITE_DONE)
      bench_die("sqlite3changeset_next: %s", sqlite3_errstr(rc));
    if (sqlite3changeset_finalize(it) != SQLITE_OK)
      bench_die("sqlite3changeset_finalize failed");
  }
  t1 = bench_now();
  c->sink += sink;
  if (rows != l->rows)
    bench_die("wire sqlite: iterated %" PRIu64 " rows, not %" PRIu64, rows,
              l->rows);
  return (double)rows / (t1 - t0);
}
#endif

/* ---- printing -------------------------------------------------------- */

static void per_row(const char *name, uint64_t bytes, size_t rows) {
  bench_value(name, rows ? (double)bytes / (double)rows : 0.0, "bytes/row");
}

/* Note how long an untimed step took (the bench's own budget); returns
 * the time now, for the next step. */
static double lap(const char *what, double since) {
  double now = bench_now();
  bench_note("wire: %s in %.2f s (untimed)", what, now - since);
  return now;
}

#ifndef BENCH_NO_SQLITE
static double bpr(uint64_t bytes, size_t rows) {
  return rows ? (double)bytes / (double)rows : 0.0;
}
#endif

static void chunk_note(const char *what, const wire_chunks *c) {
  size_t lo = SIZE_MAX, hi = 0;
  for (size_t i = 0; i < c->n; i++) {
    if (c->rows[i] < lo) lo = c->rows[i];
    if (c->rows[i] > hi) hi = c->rows[i];
  }
  bench_note("%s: %zu rows in %zu chunks (%zu..%zu rows each)", what, c->total,
             c->n, c->n ? lo : 0, hi);
}

/* ---- W1 -------------------------------------------------------------- */

/* nupd distinct keys (perm[from .. from + nupd)), each with the values of
 * a row number past the table: new in every column. */
static w1_row *make_updates(const uint32_t *perm, size_t from, size_t nrows,
                            size_t nupd) {
  w1_row *upd = bench_xmalloc(nupd * sizeof *upd);
  for (size_t i = 0; i < nupd; i++) {
    w1_row old;
    w1_fill_row(&old, perm[from + i]);
    w1_fill_row(&upd[i], (uint32_t)(nrows + from + i));
    memcpy(upd[i].key, old.key, W1_KEY_LEN);
  }
  return upd;
}

/* One incremental case: the updates (upd[i] is W1 row orig[i] with new
 * values) are written on send, recv pulls them; SQLite runs the same
 * UPDATEs, chunk by chunk, on the old rows. */
static void w1_incremental(const char *name, peer_sync *send, peer_sync *recv,
                           const w1_row *upd, const uint32_t *orig, size_t nupd,
                           int all) {
  wire_chunks ch;
  uint64_t ours, ours3;
  char n[128];
  memset(&ch, 0, sizeof ch);
  if (all)
    w1_put_rows(send->env, send->table, upd, nupd);
  else
    w1_update_a(send, upd, nupd);
  wire_pull(recv, send, WIRE_CHUNK, 0, &ch);
  if (ch.total != nupd)
    bench_die("wire: the %s pull sent %zu rows, not %zu", name, ch.total, nupd);
  chunk_note(name, &ch);
  ours = wire_bytes(&ch, 0, NULL, 0, NULL);
  ours3 = wire_bytes(&ch, 3, NULL, 0, NULL);
  snprintf(n, sizeof n, "%s.wire.bytes_per_row", name);
  per_row(n, ours, nupd);
  snprintf(n, sizeof n, "%s.wire_zstd3.bytes_per_row", name);
  per_row(n, ours3, nupd);
#ifndef BENCH_NO_SQLITE
  {
    peer_sqlite lp, *p = &lp;
    lite_chunks lc;
    upd_bind ub = {upd, orig, all, NULL};
    sqlite3_stmt *st;
    uint64_t l3;
    lite_open(p, w1_sqlite_create);
    ub.ins = peer_sqlite_prepare(p, w1_sqlite_insert);
    st = peer_sqlite_prepare(
        p, all ? "UPDATE t SET a = ?2, b = ?3, c = ?4, d = ?5 WHERE k = ?1"
               : "UPDATE t SET a = ?2 WHERE k = ?1");
    lite_record(p, "t", st, bind_w1_update, pre_w1_update, &ub, ch.rows, ch.n,
                &lc);
    sqlite3_finalize(st);
    sqlite3_finalize(ub.ins);
    peer_sqlite_close(p);
    l3 = zstd_bytes(lc.cs, lc.len, lc.n, 3);
    snprintf(n, sizeof n, "%s.sqlite.changeset_bytes_per_row", name);
    per_row(n, lc.bytes, nupd);
    snprintf(n, sizeof n, "%s.sqlite.changeset_zstd3_bytes_per_row", name);
    per_row(n, l3, nupd);
    snprintf(n, sizeof n, "%s.wire.ratio_vs_sqlite", name);
    bench_ratio(n, ratio(bpr(ours, nupd), bpr(lc.bytes, lc.rows)));
    snprintf(n, sizeof n, "%s.wire_zstd3.ratio_vs_sqlite_zstd3", name);
    bench_ratio(n, ratio(bpr(ours3, nupd), bpr(l3, lc.rows)));
    lite_free(&lc);
  }
#else
  (void)orig;
#endif
  chunks_free(&ch);
}

/* The W1 figures of the initial pull: our frames' bytes, SQLite's
 * changesets of the same chunks and their bytes. */
typedef struct w1_sizes {
  uint64_t b0, b1, b3; /* our frames: stored, zstd 1, zstd 3 */
#ifndef BENCH_NO_SQLITE
  lite_chunks lc;       /* one changeset per chunk */
  uint64_t l1, l3, lw3; /* each at zstd 1, zstd 3; all in one at zstd 3 */
#endif
} w1_sizes;

/* The W1 rows written on send, and recv's initial pull of them into
 * ch. */
static double w1_initial_pull(peer_sync *send, peer_sync *recv, size_t n,
                              wire_chunks *ch, double t0) {
  w1_row *rows = w1_generate(n);
  double t1;
  w1_put_rows(send->env, send->table, rows, n);
  free(rows);
  t1 = lap("w1 sender written", t0);
  wire_pull(recv, send, WIRE_CHUNK, 0, ch);
  t1 = lap("w1 initial pull", t1);
  if (ch->total != n)
    bench_die("wire: the initial pull sent %zu rows, not %zu", ch->total, n);
  chunk_note("wire w1 initial", ch);
  return t1;
}

#ifndef BENCH_NO_SQLITE
/* SQLite: the same rows, chunk for chunk, each chunk's changeset by a
 * session of its own. */
static void w1_lite_initial(const wire_chunks *ch, w1_sizes *z) {
  w1_row scratch;
  peer_sqlite lite;
  sqlite3_stmt *st;
  lite_open(&lite, w1_sqlite_create);
  st = peer_sqlite_prepare(&lite, w1_sqlite_insert);
  lite_record(&lite, "t", st, bind_w1_insert, NULL, &scratch, ch->rows, ch->n,
              &z->lc);
  sqlite3_finalize(st);
  peer_sqlite_close(&lite);
  z->l1 = zstd_bytes(z->lc.cs, z->lc.len, z->lc.n, 1);
  z->l3 = zstd_bytes(z->lc.cs, z->lc.len, z->lc.n, 3);
  z->lw3 = lite_whole_zstd(&z->lc, 3);
}
#endif

/* Bytes of the initial pull's frames (the stored ones kept in fr for the
 * decode rounds), and of SQLite's changesets. */
static double w1_sizes_of(const wire_chunks *ch, wire_frames *fr, w1_sizes *z,
                          double t1) {
  z->b0 = wire_bytes(ch, 0, NULL, 0, fr);
  z->b1 = wire_bytes(ch, 1, NULL, 0, NULL);
  z->b3 = wire_bytes(ch, 3, NULL, 0, NULL);
  t1 = lap("w1 frames encoded and checked", t1);
  /* What a frame costs before any row: header, sites, cursors, checksum. */
  for (size_t i = 0; i < ch->n; i++)
    if (!ch->rows[i]) {
      bench_note("wire w1: an empty chunk (the end of the pull) is a frame of "
                 "%zu bytes",
                 fr->off[i + 1] - fr->off[i]);
      break;
    }
#ifndef BENCH_NO_SQLITE
  w1_lite_initial(ch, z);
  t1 = lap("w1 sqlite changesets", t1);
#endif
  return t1;
}

static void w1_print_sizes(const w1_sizes *z, size_t n) {
  per_row("w1.wire.bytes_per_row", z->b0, n);
  per_row("w1.wire_zstd1.bytes_per_row", z->b1, n);
  per_row("w1.wire_zstd3.bytes_per_row", z->b3, n);
#ifndef BENCH_NO_SQLITE
  per_row("w1.sqlite.changeset_chunked_bytes_per_row", z->lc.bytes, n);
  per_row("w1.sqlite.changeset_zstd1_bytes_per_row", z->l1, n);
  per_row("w1.sqlite.changeset_zstd3_bytes_per_row", z->l3, n);
  per_row("w1.sqlite.changeset_whole_zstd3_bytes_per_row", z->lw3, n);
  bench_ratio("w1.wire.ratio_vs_sqlite",
              ratio((double)z->b0, (double)z->lc.bytes));
  bench_ratio("w1.wire_zstd1.ratio_vs_sqlite_zstd1",
              ratio((double)z->b1, (double)z->l1));
  bench_ratio("w1.wire_zstd3.ratio_vs_sqlite_zstd3",
              ratio((double)z->b3, (double)z->l3));
#else
  printf("bench: sqlite skipped (not built)\n");
#endif
}

/* Rates: encode and decode of the stored frames, SQLite iterating its
 * chunk changesets, alternating. */
static void w1_rates(const bench_opts *o, const wire_chunks *ch,
                     const wire_frames *fr, const w1_sizes *z) {
  rate_ctx rc = {.chunks = ch, .frames = fr, .frame_bytes = z->b0};
  bench_side s[3];
  int ns = 2;
  s[0] = (bench_side){"encode", side_encode, &rc, 0};
  s[1] = (bench_side){"decode", side_decode, &rc, 0};
#ifndef BENCH_NO_SQLITE
  rc.lite = &z->lc;
  s[2] = (bench_side){"sqlite_iter", side_lite_iter, &rc, 0};
  ns = 3;
#endif
  bench_rounds("wire.codec", s, ns, o->reps);
  bench_rate("encode.rows_per_s", s[0].best);
  bench_value("encode.mb_per_s", rc.enc_mbps, "MB/s");
  bench_rate("decode.rows_per_s", s[1].best);
  bench_value("decode.mb_per_s", rc.dec_mbps, "MB/s");
#ifndef BENCH_NO_SQLITE
  bench_rate("decode.sqlite_iter_rows_per_s", s[2].best);
  bench_ratio("decode.ratio_vs_sqlite_iter", ratio(s[1].best, s[2].best));
#endif
}

/* Incremental: N/10 random keys with a new a, then N/10 other keys with
 * new values in all four columns; SQLite updates the same keys in the
 * file that recorded the initial changesets. */
static void w1_updates(peer_sync *send, peer_sync *recv, size_t n) {
  size_t nupd = n / 10 ? n / 10 : 1;
  uint32_t *perm = bench_permutation(n, WIRE_SEED_UPDATES);
  size_t nu = 2 * nupd <= n ? nupd : n / 2 ? n / 2 : 1;
  w1_row *u1 = make_updates(perm, 0, n, nu);
  w1_row *u4 = make_updates(perm, n - nu, n, nu);
  bench_note("wire w1 incremental: %zu random keys get a new a "
             "(sync_update), %zu others new values in all columns "
             "(sync_put); each pulled in chunks of %d",
             nu, nu, WIRE_CHUNK);
  w1_incremental("w1.update1", send, recv, u1, perm, nu, 0);
  w1_incremental("w1.update4", send, recv, u4, perm + (n - nu), nu, 1);
  free(perm);
  free(u1);
  free(u4);
}

static void wire_w1(const bench_opts *o) {
  size_t n = o->rows;
  double t0 = bench_now(), t1;
  const char *send_path = bench_path("wire-w1-send.db");
  const char *recv_path = bench_path("wire-w1-recv.db");
  peer_sync send, recv;
  wire_chunks ch;
  wire_frames fr;
  w1_sizes z;

  memset(&ch, 0, sizeof ch);
  bench_note("wire w1: %zu W1 rows written on a sender in W1 order, pulled "
             "by an empty receiver in chunks of %d rows (sync_delta_make "
             "max_rows, default max_bytes); each chunk one frame",
             n, WIRE_CHUNK);
  bench_value("w1.wire.rows", (double)n, "rows");
  peer_sync_open(&send, send_path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  peer_sync_open(&recv, recv_path, SYNC_DURABLE_NOSYNC, &w1_table, 1);
  t1 = w1_initial_pull(&send, &recv, n, &ch, t0);
  w1_sizes_of(&ch, &fr, &z, t1);
  bench_note("wire w1: data, pulls and changesets made in %.2f s (untimed)",
             bench_now() - t0);
  w1_print_sizes(&z, n);
  w1_rates(o, &ch, &fr, &z);
#ifndef BENCH_NO_SQLITE
  lite_free(&z.lc);
#endif
  free(fr.buf);
  free(fr.off);
  chunks_free(&ch);
  w1_updates(&send, &recv, n);
  peer_sync_close(&recv);
  peer_sync_close(&send);
  bench_unlink_db(send_path);
  bench_unlink_db(recv_path);
}

/* ---- W2 -------------------------------------------------------------- */

#ifndef BENCH_NO_SQLITE
static int w2_key_cmp(const void *a, const void *b) {
  return memcmp(((const w2_row *)a)->key, ((const w2_row *)b)->key, W2_KEY_LEN);
}
#endif

#ifndef BENCH_NO_SQLITE
/* SQLite changesets of rows[] (in that order) in chunks of sizes[]: raw
 * and zstd 3 bytes. */
static void w2_lite(const w2_row *rows, const size_t *sizes, size_t n,
                    uint64_t *raw, uint64_t *z3, uint64_t *nrows) {
  peer_sqlite p;
  lite_chunks lc;
  sqlite3_stmt *st;
  lite_open(&p, w2_sqlite_create);
  st = peer_sqlite_prepare(&p, w2_sqlite_insert);
  lite_record(&p, "readings", st, bind_w2, NULL, (void *)rows, sizes, n, &lc);
  sqlite3_finalize(st);
  *raw = lc.bytes;
  *z3 = zstd_bytes(lc.cs, lc.len, lc.n, 3);
  *nrows = lc.rows;
  lite_free(&lc);
  peer_sqlite_close(&p);
}
#endif

/* An experiment, not the library's training: a dictionary trained by
 * zstd's ZDICT_trainFromBuffer on the bodies of stored WIRE_SMALL-row
 * frames of src's rows (a fresh receiver pulls them all), to compare with
 * sync_dict_train, which trains on rows laid out with plain encodings. */
static size_t frame_dict(peer_sync *src, const char *path, void *dict,
                         size_t cap) {
  peer_sync r;
  wire_chunks ch;
  sync_encoder *e = wire_encoder(0, NULL, 0);
  unsigned char *samples = NULL;
  size_t *sizes, at = 0, got;
  memset(&ch, 0, sizeof ch);
  peer_sync_open(&r, path, SYNC_DURABLE_NOSYNC, &w2_table, 1);
  wire_pull(&r, src, WIRE_SMALL, 0, &ch);
  peer_sync_close(&r);
  bench_unlink_db(path);
  sizes = bench_xmalloc(ch.n * sizeof *sizes);
  for (size_t i = 0; i < ch.n; i++) {
    const unsigned char *f;
    size_t len, h = 7;
    const void *fv;
    peer_sync_check(NULL, sync_encoder_begin(e, ch.d[i], NULL, NULL),
                    "sync_encoder_begin");
    peer_sync_check(NULL, sync_encoder_frame(e, &fv, &len),
                    "sync_encoder_frame");
    f = fv;
    /* The body: after the 7 fixed header bytes and the varint of its
     * length, before the 8-byte checksum. */
    while (h < len && (f[h] & 0x80)) h++;
    h++;
    if (h + 8 > len) bench_die("wire: frame %zu shorter than its header", i);
    samples = realloc(samples, at + len);
    if (!samples) bench_die("out of memory");
    memcpy(samples + at, f + h, len - h - 8);
    sizes[i] = len - h - 8;
    at += sizes[i];
  }
  got = ZDICT_trainFromBuffer(dict, cap, samples, sizes, (unsigned)ch.n);
  if (ZDICT_isError(got))
    bench_die("ZDICT_trainFromBuffer: %s", ZDICT_getErrorName(got));
  sync_encoder_free(e);
  free(samples);
  free(sizes);
  chunks_free(&ch);
  return got;
}

/* The W2 pulls: initial (an empty receiver at the end, key order), live
 * (after every transaction of the sender) and small (WIRE_SMALL-row
 * chunks); and the two dictionaries for the small frames. */
typedef struct w2_pulls {
  wire_chunks ci, cl, cs;
  unsigned char *dict, *fdict;
  size_t dlen, fdlen;
  /* The small rows pulled again through sessions (frames as a session
   * sends them, WIRE_SMALL rows each): bytes of their frames at zstd 3
   * without (ss3) and with (ssd3) the sync_dict_train dictionary, and
   * all the bytes of those sessions (sst3, sstd3). */
  uint64_t ss3, ssd3, sst3, sstd3, ssrows;
} w2_pulls;

/* Bytes of each pull's frames (i, l, s: initial, live, small; 0 stored,
 * 3 zstd 3, d3 and f3 zstd 3 with either dictionary) and, q*, of SQLite's
 * changesets of the same chunks (n: their rows). */
typedef struct w2_sizes {
  uint64_t i0, i3, l0, l3, s0, s3, sd3, sf3;
#ifndef BENCH_NO_SQLITE
  uint64_t qi0, qi3, qin, ql0, ql3, qln, qs0, qs3, qsn;
#endif
} w2_sizes;

/* The live receiver pulls after every transaction of the sender; the
 * initial one pulls everything at the end. */
static double w2_pull_live(peer_sync *send, uint64_t *clock, const w2_row *rows,
                           size_t n, w2_pulls *pl, double t0) {
  const char *init_path = bench_path("wire-w2-recv.db");
  const char *live_path = bench_path("wire-w2-live.db");
  peer_sync init, live;
  double t1;
  peer_sync_open(&live, live_path, SYNC_DURABLE_NOSYNC, &w2_table, 1);
  t1 = lap("w2 generated", t0);
  w2_write(send, rows, n, clock, &live, &pl->cl);
  peer_sync_close(&live);
  bench_unlink_db(live_path);
  t1 = lap("w2 sender written with live pulls", t1);
  peer_sync_open(&init, init_path, SYNC_DURABLE_NOSYNC, &w2_table, 1);
  wire_pull(&init, send, WIRE_CHUNK, 0, &pl->ci);
  peer_sync_close(&init);
  bench_unlink_db(init_path);
  t1 = lap("w2 initial pull", t1);
  if (pl->ci.total != n || pl->cl.total != n)
    bench_die("wire w2: pulls sent %zu (initial) and %zu (live) rows, not %zu",
              pl->ci.total, pl->cl.total, n);
  chunk_note("wire w2 initial", &pl->ci);
  chunk_note("wire w2 live", &pl->cl);
  return t1;
}

/* The dictionaries of the small frames: trained (sync_dict_train,
 * default 10,000 rows, and frame_dict) on other data, WIRE_TRAIN_DEVS
 * devices' readings of the day before, with another seed. */
static void w2_train(w2_pulls *pl) {
  const char *train_path = bench_path("wire-w2-train.db");
  const char *ftrain_path = bench_path("wire-w2-ftrain.db");
  w2_row *tr = w2_generate(WIRE_TRAIN_DEVS, WIRE_TRAIN_READS, WIRE_SEED_TRAIN,
                           W2_EPOCH_MS - WIRE_DAY_MS);
  peer_sync train;
  uint64_t tclock = 0;
  sync_txn *txn;
  pl->dict = bench_xmalloc(WIRE_DICT_CAP);
  pl->fdict = bench_xmalloc(WIRE_DICT_CAP);
  w2_open(&train, train_path, &tclock);
  w2_write(&train, tr, WIRE_TRAIN_DEVS * WIRE_TRAIN_READS, &tclock, NULL, NULL);
  peer_sync_check(train.env, sync_txn_begin(train.env, SYNC_TXN_RDONLY, &txn),
                  "sync_txn_begin");
  peer_sync_check(
      train.env,
      sync_dict_train(txn, train.table, 0, pl->dict, WIRE_DICT_CAP, &pl->dlen),
      "sync_dict_train");
  sync_txn_abort(txn);
  pl->fdlen = frame_dict(&train, ftrain_path, pl->fdict, WIRE_DICT_CAP);
  peer_sync_close(&train);
  bench_unlink_db(train_path);
  free(tr);
  bench_note("wire w2: dictionaries of %zu bytes (sync_dict_train) and "
             "%zu bytes (ZDICT on %d-row frames), cap %zu, trained on %d "
             "rows of other readings",
             pl->dlen, pl->fdlen, WIRE_SMALL, WIRE_DICT_CAP,
             WIRE_TRAIN_DEVS * WIRE_TRAIN_READS);
}

/* A new replica pulls every row of from through one session, chunks of
 * WIRE_SMALL rows at zstd 3 (with dict when not NULL): the bytes of the
 * server's frames and of the whole session, both directions. */
static void w2_session_small(peer_sync *from, const void *dict,
                             size_t dict_len, uint64_t *frame_bytes,
                             uint64_t *all_bytes, uint64_t *rows) {
  const char *path = bench_path("wire-w2-sess.db");
  sync_session_opts co, so;
  sync_session *a, *b;
  sync_session_stats sa, sb;
  peer_sync to;
  peer_sync_open(&to, path, SYNC_DURABLE_NOSYNC, &w2_table, 1);
  memset(&co, 0, sizeof co);
  co.mode = SYNC_PULL;
  co.dict = dict;
  co.dict_len = dict_len;
  so = co;
  so.server = 1;
  so.chunk_rows = WIRE_SMALL;
  so.level = 3;
  peer_sync_check(to.env, sync_session_create(to.env, &co, &a),
                  "sync_session_create");
  peer_sync_check(from->env, sync_session_create(from->env, &so, &b),
                  "sync_session_create");
  while (bench_pump(a, b) + bench_pump(b, a))
    if (sync_session_status(a) && sync_session_status(b)) break;
  if (sync_session_status(a) != 1 || sync_session_status(b) != 1)
    bench_die("wire w2 session: %s / %s", sync_session_errmsg(a),
              sync_session_errmsg(b));
  sync_session_stats_get(a, &sa);
  sync_session_stats_get(b, &sb);
  sync_session_free(a);
  sync_session_free(b);
  peer_sync_close(&to);
  bench_unlink_db(path);
  *frame_bytes = sb.frame_bytes_sent;
  *all_bytes = sa.bytes_sent + sa.bytes_received;
  *rows = sa.rows_received;
}

/* Every pull of W2 (rows, in arrival order), and the dictionaries. */
static double w2_pull_all(const w2_row *rows, size_t n, w2_pulls *pl,
                          double t0) {
  const char *send_path = bench_path("wire-w2-send.db");
  const char *small_path = bench_path("wire-w2-small.db");
  size_t nsmall = n / 50 / WIRE_SMALL ? n / 50 : WIRE_SMALL;
  peer_sync send, small;
  uint64_t clock = 0;
  double t1;
  w2_open(&send, send_path, &clock);
  t1 = w2_pull_live(&send, &clock, rows, n, pl, t0);
  /* Small frames: the first nsmall rows of an initial pull in chunks of
   * WIRE_SMALL rows. */
  peer_sync_open(&small, small_path, SYNC_DURABLE_NOSYNC, &w2_table, 1);
  wire_pull(&small, &send, WIRE_SMALL, nsmall / WIRE_SMALL, &pl->cs);
  chunk_note("wire w2 small", &pl->cs);
  t1 = lap("w2 small pull", t1);
  w2_train(pl);
  w2_session_small(&small, NULL, 0, &pl->ss3, &pl->sst3, &pl->ssrows);
  w2_session_small(&small, pl->dict, pl->dlen, &pl->ssd3, &pl->sstd3,
                   &pl->ssrows);
  peer_sync_close(&small);
  bench_unlink_db(small_path);
  t1 = lap("w2 small sessions", t1);
  peer_sync_close(&send);
  bench_unlink_db(send_path);
  return lap("w2 dictionary", t1);
}

static double w2_sizes_of(const w2_pulls *pl, w2_sizes *z, double t1) {
  z->i0 = wire_bytes(&pl->ci, 0, NULL, 0, NULL);
  z->i3 = wire_bytes(&pl->ci, 3, NULL, 0, NULL);
  z->l0 = wire_bytes(&pl->cl, 0, NULL, 0, NULL);
  z->l3 = wire_bytes(&pl->cl, 3, NULL, 0, NULL);
  z->s0 = wire_bytes(&pl->cs, 0, NULL, 0, NULL);
  z->s3 = wire_bytes(&pl->cs, 3, NULL, 0, NULL);
  z->sd3 = wire_bytes(&pl->cs, 3, pl->dict, pl->dlen, NULL);
  z->sf3 = wire_bytes(&pl->cs, 3, pl->fdict, pl->fdlen, NULL);
  return lap("w2 frames encoded and checked", t1);
}

#ifndef BENCH_NO_SQLITE
/* SQLite: the initial chunks hold the rows in key order, the live ones
 * in arrival order; each a session's changeset of its own. */
static double w2_lite_sizes(const w2_row *rows, size_t n, const w2_pulls *pl,
                            w2_sizes *z, double t1) {
  w2_row *bykey = bench_xmalloc(n * sizeof *bykey);
  memcpy(bykey, rows, n * sizeof *bykey);
  qsort(bykey, n, sizeof *bykey, w2_key_cmp);
  w2_lite(bykey, pl->ci.rows, pl->ci.n, &z->qi0, &z->qi3, &z->qin);
  w2_lite(rows, pl->cl.rows, pl->cl.n, &z->ql0, &z->ql3, &z->qln);
  /* The small pull took the first rows in key order. */
  w2_lite(bykey, pl->cs.rows, pl->cs.n, &z->qs0, &z->qs3, &z->qsn);
  free(bykey);
  return lap("w2 sqlite changesets", t1);
}
#endif

static void w2_print_sizes(const w2_sizes *z, const w2_pulls *pl, size_t n,
                           size_t nsmall) {
  per_row("w2.wire.bytes_per_row", z->i0, n);
  per_row("w2.wire_zstd3.bytes_per_row", z->i3, n);
#ifndef BENCH_NO_SQLITE
  per_row("w2.sqlite.changeset_bytes_per_row", z->qi0, z->qin);
  per_row("w2.sqlite.changeset_zstd3_bytes_per_row", z->qi3, z->qin);
  bench_ratio("w2.wire.ratio_vs_sqlite",
              ratio(bpr(z->i0, n), bpr(z->qi0, z->qin)));
  bench_ratio("w2.wire_zstd3.ratio_vs_sqlite_zstd3",
              ratio(bpr(z->i3, n), bpr(z->qi3, z->qin)));
#endif
  per_row("w2.live.wire.bytes_per_row", z->l0, n);
  per_row("w2.live.wire_zstd3.bytes_per_row", z->l3, n);
#ifndef BENCH_NO_SQLITE
  per_row("w2.live.sqlite.changeset_bytes_per_row", z->ql0, z->qln);
  per_row("w2.live.sqlite.changeset_zstd3_bytes_per_row", z->ql3, z->qln);
  bench_ratio("w2.live.wire.ratio_vs_sqlite",
              ratio(bpr(z->l0, n), bpr(z->ql0, z->qln)));
  bench_ratio("w2.live.wire_zstd3.ratio_vs_sqlite_zstd3",
              ratio(bpr(z->l3, n), bpr(z->ql3, z->qln)));
#else
  printf("bench: sqlite skipped (not built)\n");
#endif
  per_row("w2.wire_10.bytes_per_row", z->s0, nsmall);
  per_row("w2.wire_zstd3_10.bytes_per_row", z->s3, nsmall);
  per_row("w2.wire_zstd3_dict10.bytes_per_row", z->sd3, nsmall);
  per_row("w2.wire_zstd3_framedict10.bytes_per_row", z->sf3, nsmall);
#ifndef BENCH_NO_SQLITE
  per_row("w2.sqlite.changeset_10_bytes_per_row", z->qs0, z->qsn);
  per_row("w2.sqlite.changeset_zstd3_10_bytes_per_row", z->qs3, z->qsn);
  bench_ratio("w2.wire_zstd3_10.ratio_vs_sqlite_zstd3",
              ratio(bpr(z->s3, nsmall), bpr(z->qs3, z->qsn)));
#endif
  per_row("w2.session_zstd3_10.bytes_per_row", pl->ss3, pl->ssrows);
  per_row("w2.session_zstd3_dict10.bytes_per_row", pl->ssd3, pl->ssrows);
  per_row("w2.session_zstd3_10.session_bytes_per_row", pl->sst3, pl->ssrows);
#ifndef BENCH_NO_SQLITE
  bench_ratio("w2.session_zstd3_10.ratio_vs_sqlite_zstd3",
              ratio(bpr(pl->ss3, pl->ssrows), bpr(z->qs3, z->qsn)));
  bench_ratio("w2.session_zstd3_dict10.ratio_vs_sqlite_zstd3",
              ratio(bpr(pl->ssd3, pl->ssrows), bpr(z->qs3, z->qsn)));
#endif
}

static void wire_w2(const bench_opts *o) {
  size_t ndev = o->rows >= 1000 ? 1000 : o->rows;
  size_t nread = o->rows / ndev, n = ndev * nread;
  double t0 = bench_now(), t1;
  w2_row *rows = w2_generate(ndev, nread, W2_SEED, W2_EPOCH_MS);
  w2_pulls pl;
  w2_sizes z;

  memset(&pl, 0, sizeof pl);
  bench_note("wire w2: %zu devices x %zu readings = %zu rows, written in "
             "arrival order %d per transaction (sender clock = arrival "
             "time); key dev-%%04d + 8-byte big-endian ms (16 bytes, BLOB)",
             ndev, nread, n, W2_TXN_ROWS);
  bench_value("w2.rows", (double)n, "rows");
  t1 = w2_pull_all(rows, n, &pl, t0);
  t1 = w2_sizes_of(&pl, &z, t1);
#ifndef BENCH_NO_SQLITE
  w2_lite_sizes(rows, n, &pl, &z, t1);
#else
  (void)t1;
#endif
  bench_note("wire w2: data, pulls and changesets made in %.2f s (untimed)",
             bench_now() - t0);
  w2_print_sizes(&z, &pl, n, pl.cs.total);
  chunks_free(&pl.ci);
  chunks_free(&pl.cl);
  chunks_free(&pl.cs);
  free(pl.dict);
  free(pl.fdict);
  free(rows);
}

/* ---- the workload ---------------------------------------------------- */

void bench_wire(const bench_opts *o) {
  wire_w1(o);
  wire_w2(o);
}
