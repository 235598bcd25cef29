/*
 * gen_corpus.c - writes the seed corpora of the fuzz targets from real
 * replicas (fuzz_world.h): gen_corpus DECODE_DIR APPLY_DIR.
 *
 * Every seed is in the input format of fuzz_frame.h: a mode byte, then a
 * frame or a frame body.  Chunks come from varied histories (initial
 * streams and incremental log chunks, whole and cut small, updates,
 * deletes and re-inserts, conflicts with the receiver's own writes, NULLs,
 * long and binary keys, long values, a relayed third site) at zstd levels
 * 0 and 3.  APPLY_DIR gets the chunks cut for fuzz_apply's receiver
 * (FZ_RECV_SITE, fuzz_apply's schema), cut from exactly the state that
 * fuzz_apply builds, so the first chunk of each run continues its cursor.
 * DECODE_DIR gets all of them plus chunks for other receivers and a frame
 * made with a dictionary.  The output is deterministic.
 */
#include "fuzz_world.h"

static const char *g_dirs[2];
static unsigned g_count[2], g_seq;

static void g_write(int which, const char *name, unsigned char mode,
                    const unsigned char *p, size_t n) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", g_dirs[which], name);
  f = fopen(path, "wb");
  if (!f) FZ_BUG("cannot write %s", path);
  if (fputc(mode, f) == EOF || (n && fwrite(p, 1, n, f) != n) || fclose(f))
    FZ_BUG("cannot write %s", path);
  g_count[which]++;
}

/* The body of an uncompressed frame. */
static void g_body(const unsigned char *f, size_t n, const unsigned char **b,
                   size_t *blen) {
  uint64_t stored;
  size_t k = fz_get_varint(f + 7, n - 7, &stored);
  if (!k || 7 + k + stored + 8 != n) FZ_BUG("not a stored frame");
  *b = f + 7 + k;
  *blen = (size_t)stored;
}

/* Emit chunk d in its forms, to the decode corpus and, when it is cut
 * for the receiver, to the apply corpus. */
static void g_emit(const sync_delta *d, const char *tag, int for_recv,
                   int all_forms) {
  sync_encoder *e0, *e3;
  sync_codec_opts o;
  const void *f0, *f3;
  const unsigned char *body;
  size_t n0, n3, blen;
  char name[128];
  unsigned char fragseed = (unsigned char)((g_seq * 7u) % 32u << 3);
  int w;
  memset(&o, 0, sizeof o);
  FZ_OK(sync_encoder_create(NULL, &o, &e0));
  o.level = 3;
  FZ_OK(sync_encoder_create(NULL, &o, &e3));
  FZ_OK(sync_encoder_begin(e0, d, NULL, NULL));
  FZ_OK(sync_encoder_frame(e0, &f0, &n0));
  FZ_OK(sync_encoder_begin(e3, d, NULL, NULL));
  FZ_OK(sync_encoder_frame(e3, &f3, &n3));
  g_body((const unsigned char *)f0, n0, &body, &blen);
  for (w = 0; w <= for_recv; w++) {
    snprintf(name, sizeof name, "g%03u-%s-frame0", g_seq, tag);
    g_write(w, name, (unsigned char)(fragseed | FZ_MODE_RAW), f0, n0);
    snprintf(name, sizeof name, "g%03u-%s-body", g_seq, tag);
    g_write(w, name, (unsigned char)(fragseed | FZ_MODE_BODY), body, blen);
    snprintf(name, sizeof name, "g%03u-%s-frame3", g_seq, tag);
    g_write(w, name, (unsigned char)(fragseed | FZ_MODE_RAW), f3, n3);
    if (all_forms) {
      /* The same body, compressed by the target; and the zstd bytes of
       * the level 3 frame behind fields of the fuzzer's choosing. */
      const unsigned char *z;
      size_t zlen, k;
      uint64_t stored, raw;
      unsigned char *fields;
      snprintf(name, sizeof name, "g%03u-%s-bodyz", g_seq, tag);
      g_write(w, name, (unsigned char)(fragseed | FZ_MODE_BODY_ZSTD), body,
              blen);
      k = fz_get_varint((const unsigned char *)f3 + 7, n3 - 7, &stored);
      k += fz_get_varint((const unsigned char *)f3 + 7 + k, n3 - 7 - k, &raw);
      if (raw != blen) FZ_BUG("level 3 frame of another body");
      z = (const unsigned char *)f3 + 7 + k;
      zlen = (size_t)stored;
      fields = (unsigned char *)malloc(zlen + 16);
      if (!fields) FZ_BUG("out of memory");
      fields[0] = 1; /* flags: zstd */
      k = 1 + fz_put_varint(fields + 1, blen);
      memcpy(fields + k, z, zlen);
      snprintf(name, sizeof name, "g%03u-%s-fields", g_seq, tag);
      g_write(w, name, (unsigned char)(fragseed | FZ_MODE_FIELDS), fields,
              k + zlen);
      free(fields);
    }
  }
  g_seq++;
  sync_encoder_free(e0);
  sync_encoder_free(e3);
}

/* Cut the run of chunks from s for receiver r (max_rows each, at most
 * max_chunks of them), as r would receive them, without changing r:
 * each chunk is applied in one write transaction of r that is aborted at
 * the end.  Every chunk is emitted. */
static void g_run(fz_rep *r, fz_rep *s, size_t max_rows, unsigned max_chunks,
                  const char *tag, int all_forms) {
  sync_txn *t;
  unsigned k;
  int for_recv = !memcmp(r->site, FZ_RECV_SITE, 16);
  FZ_OK(sync_txn_begin(r->env, 0, &t));
  for (k = 0; k < max_chunks; k++) {
    char name[64];
    sync_delta *d = fz_cut_txn(t, s, max_rows, 0);
    int last = sync_delta_last(d);
    snprintf(name, sizeof name, "%s-c%u", tag, k);
    g_emit(d, name, for_recv, all_forms && k == 0);
    FZ_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, NULL));
    sync_delta_free(d);
    if (last) break;
  }
  sync_txn_abort(t);
}

/* Keys whose last byte is even, and deletes. */
static int g_even(void *ctx, const uint8_t peer[16], unsigned table,
                  const void *key, size_t klen, const sync_value *vals,
                  unsigned nvals) {
  (void)ctx;
  (void)peer;
  (void)table;
  (void)nvals;
  return !vals || !(((const unsigned char *)key)[klen - 1] & 1);
}

/* As g_run, cut under a scope (table 0, keys ending even) for a receiver
 * served without one before: its stream restarts, and the rows out of
 * scope go as exit markers (frame minor 2). */
static void g_run_scoped(fz_rep *r, fz_rep *s, size_t max_rows,
                         unsigned max_chunks, const char *tag) {
  static const unsigned char t0[1] = {0x1};
  sync_txn *t, *st;
  unsigned k;
  int for_recv = !memcmp(r->site, FZ_RECV_SITE, 16);
  FZ_OK(sync_txn_begin(r->env, 0, &t));
  for (k = 0; k < max_chunks; k++) {
    char name[64];
    sync_request *req = NULL;
    sync_delta *d = NULL;
    sync_delta_opts o;
    int last;
    memset(&o, 0, sizeof o);
    o.max_rows = max_rows;
    o.tables = t0;
    o.filter = g_even;
    o.scope = 1;
    o.filter_version = 7;
    FZ_OK(sync_request_make(t, s->site, &req));
    FZ_OK(sync_txn_begin(s->env, SYNC_TXN_RDONLY, &st));
    FZ_OK(sync_delta_make(st, req, &o, &d));
    sync_txn_abort(st);
    sync_request_free(req);
    last = sync_delta_last(d);
    snprintf(name, sizeof name, "%s-c%u", tag, k);
    g_emit(d, name, for_recv, k == 0);
    FZ_OK(sync_delta_apply(t, d, SYNC_APPLY_MERGE, NULL));
    sync_delta_free(d);
    if (last) break;
  }
  sync_txn_abort(t);
}

/* A's new history: updates under R's changes (both modified), an update
 * of a row R deleted, deletes, a re-insert, NULLs, long keys with a
 * shared prefix, binary keys, long values. */
static void g_history_a(fz_world *w) {
  sync_txn *t;
  unsigned col, i;
  sync_value v;
  char key[SYNC_MAX_KEY + 1];
  static unsigned char big[3000];
  for (i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 31 + (i >> 5));
  FZ_OK(sync_txn_begin(w->a.env, 0, &t));
  col = 2;
  v = fz_s("changed by a");
  FZ_OK(sync_update(t, 0, "key-001", 7, &col, &v, 1)); /* r changed it too */
  col = 0;
  v = sync_int(-42);
  FZ_OK(sync_update(t, 0, "key-002", 7, &col, &v, 1)); /* r deleted it */
  col = 3;
  v = sync_null();
  FZ_OK(sync_update(t, 0, "key-004", 7, &col, &v, 1));
  fz_del(t, 0, "key-005", 7);
  fz_put_t(t, "key-003", 7, 3, 3.25, "back again", "\0\0", 2, NULL);
  for (i = 0; i < 4; i++) {
    memset(key, 'p', sizeof key);
    snprintf(key, 16, "prefix-%u", i);
    key[strlen(key)] = '-';
    fz_put_t(t, key, SYNC_MAX_KEY - i, (int64_t)i, -0.0, NULL, NULL, 0, NULL);
  }
  fz_put_t(t, "big", 3, INT64_MAX, 1e-300, "", big, sizeof big, "x");
  fz_put_k(t, "\0", 1, big, 100);
  fz_put_k(t, "\0\0\0", 3, "", 0);
  fz_put_m(t, -5, 51, 0.51);
  fz_put_m(t, INT64_MIN, 1, 1.0);
  fz_put_m(t, INT64_MAX, -1, -1.0);
  fz_del_m(t, 7);
  FZ_OK(sync_txn_commit(t));
  w->now += 3;
}

/* C: a sender R has never heard of, with series that take the delta,
 * fixed-width and decimal encodings. */
static void g_history_c(fz_rep *c, uint64_t *now) {
  sync_txn *t;
  unsigned i;
  FZ_OK(sync_txn_begin(c->env, 0, &t));
  for (i = 0; i < 40; i++) {
    char key[32], s[16];
    unsigned char kb[4];
    snprintf(key, sizeof key, "dev-%04u-%013llu", i % 4,
             (unsigned long long)(*now + i * 1000));
    snprintf(s, sizeof s, i % 17 ? "ok" : "warn");
    fz_put_t(t, key, strlen(key), 100 - (int64_t)i / 10,
             (double)(2150 + (int)(i % 7) - 3) / 100.0, s, NULL, 0, NULL);
    fz_put_m(t, (int64_t)i * 1000, (int64_t)(i * 2654435761u), i * 0.1);
    kb[0] = (unsigned char)i, kb[1] = 0, kb[2] = 0xff, kb[3] = (unsigned char)~i;
    fz_put_k(t, kb, 1 + i % 4, kb, 4);
  }
  FZ_OK(sync_txn_commit(t));
  *now += 7;
  FZ_OK(sync_txn_begin(c->env, 0, &t));
  for (i = 0; i < 40; i += 3) fz_del_m(t, (int64_t)i * 1000);
  FZ_OK(sync_txn_commit(t));
  *now += 7;
}

/* Counters and a fold (docs/FORMAT.md, "Folds"): device D adds, the
 * heir H pulls it, retires it and folds; a new replica N's chunks from H
 * carry the fold section.  Decode seeds only (fuzz_apply's schema has no
 * counter). */
static const sync_column_def g_ccols[2] = {{"hits", SYNC_COUNTER, 0},
                                           {"note", SYNC_TEXT, 0}};
static const sync_table_def g_ctables[1] = {{"c", SYNC_TEXT, g_ccols, 2}};

static void g_add(fz_rep *r, const char *key, int64_t n, uint64_t *now) {
  sync_txn *t;
  FZ_OK(sync_txn_begin(r->env, 0, &t));
  FZ_OK(sync_counter_add(t, 0, key, strlen(key), 0, n));
  FZ_OK(sync_txn_commit(t));
  *now += 3;
}

static void g_folds(uint64_t *now) {
  fz_rep d, h, n;
  uint8_t id[16];
  sync_txn *t;
  unsigned i;
  memset(id, 0xd4, 16);
  fz_open_schema(&d, "fold-d", id, now, g_ctables, 1);
  memset(id, 0xe5, 16);
  fz_open_schema(&h, "fold-h", id, now, g_ctables, 1);
  memset(id, 0xf6, 16);
  fz_open_schema(&n, "fold-n", id, now, g_ctables, 1);
  for (i = 0; i < 6; i++) {
    char key[16];
    snprintf(key, sizeof key, "hits-%u", i);
    g_add(&d, key, (int64_t)i * 7 - 9, now);
    if (i % 2) g_add(&h, key, 1000 + i, now);
  }
  fz_pull(&h, &d, 0);
  g_run(&n, &h, 0, 1, "ctr", 0);
  memset(id, 0xd4, 16);
  FZ_OK(sync_txn_begin(h.env, 0, &t));
  FZ_OK(sync_site_retire(t, id));
  FZ_OK(sync_txn_commit(t));
  FZ_OK(sync_env_gc(h.env, NULL));
  (*now) += 3;
  g_run(&n, &h, 0, 1, "fold", 0);
  fz_close(&d);
  fz_close(&h);
  fz_close(&n);
}

int main(int argc, char **argv) {
  fz_world w;
  fz_rep c;
  uint8_t id[16];
  if (argc != 3) {
    fprintf(stderr, "usage: %s DECODE_DIR APPLY_DIR\n", argv[0]);
    return 2;
  }
  g_dirs[0] = argv[1];
  g_dirs[1] = argv[2];
  fz_world_build(&w, 1);

  /* Nothing new: an empty last chunk. */
  g_run(&w.r, &w.a, 0, 1, "a-empty", 0);
  /* A's incremental history, whole and in small chunks. */
  g_history_a(&w);
  g_run(&w.r, &w.a, 0, 1, "a-incr", 1);
  g_run(&w.r, &w.a, 3, 4, "a-incr3", 0);
  /* B straight to R: an initial stream, minus what A relayed. */
  fz_fill_t(&w.b, 100, 9, 0xbb);
  w.now += 3;
  g_run(&w.r, &w.b, 0, 1, "b-init", 1);
  g_run(&w.r, &w.b, 2, 3, "b-init2", 0);
  /* C, unknown to R: a larger initial stream of every table. */
  memset(id, FZ_SITE_C, 16);
  fz_open(&c, "c", id, &w.now);
  g_history_c(&c, &w.now);
  g_run(&w.r, &c, 0, 1, "c-init", 1);
  g_run(&w.r, &c, 16, 3, "c-init16", 0);
  /* C relayed through A, with A's deletes: tombstones and a third site. */
  fz_pull(&w.a, &c, 0);
  w.now += 3;
  {
    sync_txn *t;
    unsigned i;
    FZ_OK(sync_txn_begin(w.a.env, 0, &t));
    for (i = 0; i < 12; i++) {
      char key[16];
      snprintf(key, sizeof key, "key-%03u", i);
      fz_del(t, 0, key, strlen(key));
    }
    FZ_OK(sync_txn_commit(t));
    w.now += 3;
  }
  g_run(&w.r, &w.a, 0, 1, "a-relay", 1);
  g_run(&w.r, &w.a, 8, 3, "a-relay8", 0);
  /* A scope: exit markers for the rows R no longer gets. */
  g_run_scoped(&w.r, &w.a, 6, 3, "a-scope");
  /* Decode only: chunks for other receivers, and a dictionary frame. */
  g_run(&w.b, &w.a, 0, 1, "a-to-b", 0);
  g_run(&c, &w.a, 10, 2, "a-to-c", 0);
  {
    static unsigned char dict[4096];
    size_t dlen = 0;
    sync_txn *t;
    sync_codec_opts o;
    sync_encoder *e;
    sync_delta *d;
    const void *f;
    size_t n;
    int rc;
    FZ_OK(sync_txn_begin(c.env, SYNC_TXN_RDONLY, &t));
    rc = sync_dict_train(t, 0, 0, dict, sizeof dict, &dlen);
    sync_txn_abort(t);
    if (rc) FZ_BUG("sync_dict_train: %s", sync_strerror(rc));
    memset(&o, 0, sizeof o);
    o.level = 3;
    o.dict = dict;
    o.dict_len = dlen;
    FZ_OK(sync_txn_begin(w.r.env, SYNC_TXN_RDONLY, &t));
    d = fz_cut_txn(t, &c, 5, 0);
    sync_txn_abort(t);
    FZ_OK(sync_encoder_create(NULL, &o, &e));
    FZ_OK(sync_encoder_begin(e, d, NULL, NULL));
    FZ_OK(sync_encoder_frame(e, &f, &n));
    g_write(0, "dict-frame", FZ_MODE_RAW, (const unsigned char *)f, n);
    sync_encoder_free(e);
    sync_delta_free(d);
  }
  fz_close(&c);
  g_folds(&w.now);
  fz_world_close(&w);
  printf("gen_corpus: %u decode seeds in %s, %u apply seeds in %s\n",
         g_count[0], g_dirs[0], g_count[1], g_dirs[1]);
  return 0;
}
