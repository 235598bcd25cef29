/*
 * fuzz_apply.c - libFuzzer target for decode + sync_delta_apply: what a
 * hostile peer's frame can do to a database.  Input format: fuzz_frame.h.
 *
 * At start, LLVMFuzzerInitialize builds the receiver of fuzz_world.h in a
 * tmpfs (or /tmp) file: a fixed site id (FZ_RECV_SITE) and schema, rows
 * of its own and of two senders, a sender cursor and a version vector.
 * Seeds (gen_corpus.c) are chunks cut for exactly this replica, so they
 * pass apply's first checks (receiver site, schema hash).
 *
 * Per input: decode the frame; if it decodes, apply it with each policy
 * (merge, newer, append, and each of them as a dry run; a resolver
 * that takes every choice in turn), each in its own
 * write transaction that is aborted afterwards (the database never drifts
 * between inputs).  After every apply, whatever it returned, the database
 * must be sound: every row of every table readable through a cursor,
 * sync_count equal to what the cursor saw, every change and column
 * readable through sync_changes, sync_digest, the version vector and the
 * tombstone count readable, none of them SYNC_ECORRUPT.  A successful
 * apply's report must add up, and a dry run must leave the digest and the
 * change log as they were.
 */
#include "fuzz_world.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fz_world fz_w;
static int fz_ready, fz_verbose;

static void fz_atexit(void) {
  if (fz_ready) fz_world_close(&fz_w);
  fz_ready = 0;
}

/* A resolver that takes every choice in turn (by key and column), so
 * forced and merged outcomes are written too.  A merged value is the
 * local one again, copied: it must stay valid until apply returns. */
static unsigned char fz_merged[SYNC_MAX_KEY + 64];
static int fz_resolver(void *ctx, const sync_conflict *c, sync_value *merged) {
  uint64_t h = XXH3_64bits(c->key.data, c->key.len) + c->column + c->kind;
  (void)ctx;
  switch (h % 4) {
  case 1: return SYNC_RESOLVE_LOCAL;
  case 2: return SYNC_RESOLVE_REMOTE;
  case 3:
    if (c->column == SYNC_ROW) return SYNC_RESOLVE_DEFAULT;
    *merged = c->local;
    if ((merged->type == SYNC_TEXT || merged->type == SYNC_BLOB) &&
        merged->len) {
      size_t n = merged->len < sizeof fz_merged ? merged->len : sizeof fz_merged;
      memcpy(fz_merged, merged->data, n);
      merged->data = fz_merged;
      merged->len = n;
    }
    return SYNC_RESOLVE_MERGED;
  default: return SYNC_RESOLVE_DEFAULT;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (fz_ready) return 0;
  fz_world_build(&fz_w, 0);
  FZ_OK(sync_env_set_resolver(fz_w.r.env, fz_resolver, NULL));
  fz_ready = 1;
  fz_verbose = getenv("FZ_VERBOSE") != NULL; /* one line per apply */
  atexit(fz_atexit);
  return 0;
}

/* Fatal outcomes of a read: anything but ok / not found / a failed txn. */
static void fz_read_rc(int rc, const char *what) {
  if (rc == 0 || rc == SYNC_NOTFOUND) return;
  FZ_BUG("%s: %s", what, sync_strerror(rc));
}

/* What the checks saw: digest and a hash of the change log. */
typedef struct fz_state {
  uint64_t digest, changes, nchanges;
} fz_state;

static uint64_t fz_mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

static uint64_t fz_value_hash(const sync_value *v) {
  uint64_t h = (uint64_t)v->type;
  switch (v->type) {
  case SYNC_INTEGER: return fz_mix(h, (uint64_t)v->i);
  case SYNC_REAL: {
    uint64_t u;
    memcpy(&u, &v->r, 8);
    return fz_mix(h, u);
  }
  case SYNC_TEXT:
  case SYNC_BLOB:
    if (v->len && !v->data) FZ_BUG("value of %zu bytes without data", v->len);
    return fz_mix(h, v->len ? XXH3_64bits(v->data, v->len) : 0);
  case SYNC_NULL: return h;
  default: FZ_BUG("value of type %d", v->type);
  }
  return h;
}

/* In a transaction that an apply left failed, reads may say SYNC_ETXN:
 * that ends the walk, nothing else does. */
#define FZ_VOK(expr)                                                         \
  do {                                                                       \
    int fz_rc_ = (expr);                                                     \
    if (fz_rc_ == SYNC_ETXN && lenient) return;                              \
    if (fz_rc_) FZ_BUG("%s: %s", #expr, sync_strerror(fz_rc_));              \
  } while (0)

/* Walk the database through the public API; abort on corruption. */
static void fz_verify(sync_txn *t, fz_state *st, int lenient) {
  unsigned tb;
  sync_changes *it;
  sync_change ch;
  sync_stamp vv[64];
  size_t nvv;
  uint64_t tombs;
  int rc, pass;
  memset(st, 0, sizeof *st);
  for (tb = 0; tb < FZ_NTABLES; tb++) {
    sync_cursor *cur;
    sync_key k;
    sync_value v[FZ_MAXCOLS];
    uint64_t seen = 0, count = 0;
    unsigned ncols = fz_tables[tb].ncolumns, c;
    FZ_VOK(sync_cursor_open(t, tb, &cur));
    while ((rc = sync_cursor_next(cur, &k, v, ncols)) == 0) {
      if (k.len == 0 || k.len > SYNC_MAX_KEY)
        FZ_BUG("cursor key of %zu bytes", k.len);
      if (fz_tables[tb].key_type == SYNC_INTEGER && k.len != 8)
        FZ_BUG("INTEGER key of %zu bytes", k.len);
      for (c = 0; c < ncols; c++) {
        if (v[c].type != SYNC_NULL && v[c].type != fz_tables[tb].columns[c].type)
          FZ_BUG("table %u column %u holds type %d", tb, c, v[c].type);
        (void)fz_value_hash(&v[c]);
      }
      seen++;
    }
    sync_cursor_close(cur);
    if (rc == SYNC_ETXN && lenient) return;
    if (rc != SYNC_NOTFOUND) FZ_BUG("cursor: %s", sync_strerror(rc));
    FZ_VOK(sync_count(t, tb, &count));
    if (count != seen)
      FZ_BUG("table %u: sync_count %llu, cursor saw %llu", tb,
             (unsigned long long)count, (unsigned long long)seen);
  }
  /* The changes since 0, in version order and as a set (a scan of the
   * tables, since every row is a change): the same rows, so the same
   * sum of their hashes. */
  for (pass = 0; pass < 2; pass++) {
    uint64_t sum = 0, n = 0;
    FZ_VOK(sync_changes_open_flags(t, 0, pass ? SYNC_CHANGES_UNORDERED : 0,
                                   &it));
    while ((rc = sync_changes_next(it, &ch)) == 0) {
      unsigned c;
      uint64_t h = fz_mix(ch.table, ch.causal_length);
      if (ch.table >= FZ_NTABLES) FZ_BUG("change in table %u", ch.table);
      if (ch.causal_length == 0) FZ_BUG("causal length 0");
      h = fz_mix(h, XXH3_64bits(ch.key.data, ch.key.len));
      h = fz_mix(h, ch.row_stamp.hlc);
      h = fz_mix(h, ch.version);
      for (c = 0; c < ch.ncolumns; c++) {
        sync_value v;
        sync_stamp s, b;
        rc = sync_changes_column(it, c, &v, &s, &b);
        if (rc == SYNC_ETXN && lenient) break;
        fz_read_rc(rc, "sync_changes_column");
        if (rc == 0) {
          h = fz_mix(h, fz_value_hash(&v));
          h = fz_mix(h, s.hlc);
          h = fz_mix(h, b.hlc);
        }
      }
      sum += h;
      n++;
    }
    sync_changes_close(it);
    if (rc == SYNC_ETXN && lenient) return;
    if (rc != SYNC_NOTFOUND)
      FZ_BUG("sync_changes_next: %s", sync_strerror(rc));
    if (pass && (sum != st->changes || n != st->nchanges))
      FZ_BUG("changes as a set: %llu rows, in version order %llu",
             (unsigned long long)n, (unsigned long long)st->nchanges);
    st->changes = sum;
    st->nchanges = n;
  }
  FZ_VOK(sync_digest(t, SYNC_ALL_TABLES, &st->digest));
  FZ_VOK(sync_vv_get(t, vv, 64, &nvv));
  FZ_VOK(sync_tombstones(t, &tombs));
}

static const int fz_policies[6] = {
    SYNC_APPLY_MERGE,
    SYNC_APPLY_NEWER,
    SYNC_APPLY_APPEND,
    SYNC_APPLY_MERGE | SYNC_APPLY_DRY_RUN,
    SYNC_APPLY_NEWER | SYNC_APPLY_DRY_RUN,
    SYNC_APPLY_APPEND | SYNC_APPLY_DRY_RUN,
};

static void fz_apply(const sync_delta *d) {
  size_t p;
  for (p = 0; p < sizeof fz_policies / sizeof fz_policies[0]; p++) {
    int policy = fz_policies[p], rc;
    sync_txn *t;
    sync_apply_report rep;
    fz_state before, after;
    FZ_OK(sync_txn_begin(fz_w.r.env, 0, &t));
    if (policy & SYNC_APPLY_DRY_RUN) fz_verify(t, &before, 0);
    rc = sync_delta_apply(t, d, policy, &rep);
    if (fz_verbose)
      fprintf(stderr,
              "apply policy %#x: %s rows %llu ins %llu upd %llu del %llu "
              "same %llu conflicts %llu cursor %d vector %d\n",
              (unsigned)policy, rc ? sync_strerror(rc) : "ok",
              (unsigned long long)rep.rows, (unsigned long long)rep.inserted,
              (unsigned long long)rep.updated, (unsigned long long)rep.deleted,
              (unsigned long long)rep.unchanged,
              (unsigned long long)rep.conflicts, rep.cursor_moved,
              rep.vector_raised);
    if (rc == SYNC_ECORRUPT || rc == SYNC_EPANIC)
      FZ_BUG("apply (policy %#x): %s", (unsigned)policy, sync_strerror(rc));
    if (rc == 0) {
      if (rep.rows != sync_delta_rows(d) ||
          rep.inserted + rep.updated + rep.deleted + rep.unchanged != rep.rows)
        FZ_BUG("report does not add up (policy %#x)", (unsigned)policy);
      fz_verify(t, &after, 0);
      if ((policy & SYNC_APPLY_DRY_RUN) &&
          (before.digest != after.digest || before.changes != after.changes ||
           before.nchanges != after.nchanges))
        FZ_BUG("a dry run changed the database");
      if ((policy & SYNC_APPLY_DRY_RUN) && rep.cursor_moved)
        FZ_BUG("a dry run moved the cursor");
    } else {
      /* A refused chunk: what the transaction still reads is sound. */
      fz_verify(t, &after, 1);
    }
    sync_txn_abort(t);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n;
  unsigned seed = 0;
  unsigned char *f;
  sync_decoder *dec;
  sync_delta *d = NULL;
  int rc;
  if (!fz_ready) LLVMFuzzerInitialize(NULL, NULL);
  f = fz_input_frame(data, size, &n, &seed);
  if (!f) return 0;
  FZ_OK(sync_decoder_create(NULL, NULL, &dec));
  rc = sync_decoder_decode(dec, f, n, &d);
  if (fz_verbose && rc) fprintf(stderr, "decode: %s\n", sync_strerror(rc));
  if (rc == 0) {
    fz_apply(d);
    sync_delta_free(d);
  }
  sync_decoder_free(dec);
  free(f);
  return 0;
}
