/*
 * fuzz_session.c - libFuzzer target for the session's message parser and
 * state machine, on the serving side (what a hostile device talks to).
 *
 * Input, first byte m:
 *   m & 1 == 0  raw: the rest is the byte stream from the client, fed in
 *               fragments of 1 + (m >> 1) bytes;
 *   m & 1 == 1  framed: the rest is a list of (u8 type, u8 len, len bytes)
 *               that the target wraps into messages with a valid length
 *               and checksum, so mutations reach the parsers behind the
 *               checksum (HELLO, REQUEST, DATA with frames, ERROR, ...);
 *               type 0x44 is a DATA whose bytes are the body of a session
 *               frame (docs/FORMAT.md, "Session frames"), which the target
 *               wraps in its header and checksum (seeded with the frames
 *               the server took so far), so that mutations reach the
 *               session frame decoder too.
 * The server replica (fixed site id, a few rows, the fuzz schema) grants
 * table 0 for reading and writing; after each input it must still read
 * back soundly and its digest must be computable.
 */
#include "fuzz_world.h"

#include <xxhash.h>

static uint64_t fs_now = 1700000000000ull;
static fz_rep fs_srv;

static int fs_authorize(void *ctx, const uint8_t site[16], const void *cred,
                        size_t len, sync_rights *r) {
  (void)ctx;
  (void)site;
  if (len == 3 && !memcmp(cred, "bad", 3)) return SYNC_EPERM;
  r->read[0] = 1;
  r->write[0] = 1;
  return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sync_txn *x;
  unsigned i;
  (void)argc;
  (void)argv;
  memset(&fs_srv, 0, sizeof fs_srv);
  snprintf(fs_srv.path, sizeof fs_srv.path, "/tmp/fuzz-session-%ld.db",
           (long)getpid());
  memset(fs_srv.site, 0x5e, 16);
  fs_srv.now = &fs_now;
  fz_remove_db(fs_srv.path);
  FZ_OK(sync_env_create(NULL, &fs_srv.env));
  FZ_OK(sync_env_set_random(fs_srv.env, fz_random, &fs_srv));
  FZ_OK(sync_env_set_clock(fs_srv.env, fz_clock, &fs_srv));
  FZ_OK(sync_env_set_durability(fs_srv.env, SYNC_DURABLE_NOSYNC));
  FZ_OK(sync_env_set_schema(fs_srv.env, fz_tables, FZ_NTABLES));
  FZ_OK(sync_env_open(fs_srv.env, fs_srv.path, 0));
  FZ_OK(sync_txn_begin(fs_srv.env, 0, &x));
  for (i = 0; i < 20; i++) {
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
  return 0;
}

/* Take whatever the session has to say (and drop it). */
static void fs_drain(sync_session *s) {
  unsigned char out[4096];
  int guard = 0;
  while (sync_session_want_write(s) && guard++ < 100000) {
    sync_outbuf ob = {out, sizeof out, 0};
    if (sync_session_send(s, &ob) <= 0) break;
  }
}

static void fs_feed(sync_session *s, const uint8_t *p, size_t n) {
  sync_inbuf in = {p, n, 0};
  sync_session_recv(s, &in);
  if (in.pos != in.size) FZ_BUG("session left %zu bytes unread",
                                in.size - in.pos);
  fs_drain(s);
}

/* The server replica still reads back soundly. */
static void fs_check(void) {
  sync_txn *x;
  sync_cursor *c;
  sync_key k;
  sync_value v[FZ_MAXCOLS];
  uint64_t d;
  int rc;
  FZ_OK(sync_txn_begin(fs_srv.env, SYNC_TXN_RDONLY, &x));
  FZ_OK(sync_cursor_open(x, 0, &c));
  while ((rc = sync_cursor_next(c, &k, v, FZ_MAXCOLS)) == 0) {
  }
  if (rc != SYNC_NOTFOUND) FZ_BUG("cursor: %s", sync_strerror(rc));
  sync_cursor_close(c);
  FZ_OK(sync_digest(x, SYNC_ALL_TABLES, &d));
  sync_txn_abort(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sync_session_opts so;
  sync_session *s;
  if (size < 1) return 0;
  memset(&so, 0, sizeof so);
  so.server = 1;
  so.authorize = fs_authorize;
  so.check_write = fz_check_write;
  so.max_message = 4096;
  so.chunk_rows = 7;
  FZ_OK(sync_session_create(fs_srv.env, &so, &s));
  if (!(data[0] & 1)) {
    size_t step = 1 + (data[0] >> 1), off = 1;
    while (off < size && sync_session_status(s) == 0) {
      size_t n = size - off < step ? size - off : step;
      fs_feed(s, data + off, n);
      off += n;
    }
  } else {
    size_t off = 1;
    while (off + 2 <= size && sync_session_status(s) == 0) {
      unsigned char msg[2 + 10 + 2 + 255 + 8 + 4], *q = msg;
      unsigned type = data[off], len = data[off + 1], plen;
      uint64_t h;
      if (off + 2 + len > size) len = (unsigned)(size - off - 2);
      plen = type == 0x44 ? 1 + (len >= 0x80 ? 2u : 1u) + len + 8 : len;
      *q++ = (unsigned char)(type == 0x44 ? 4 : type);
      if (plen >= 0x80) {
        *q++ = (unsigned char)(plen | 0x80);
        *q++ = (unsigned char)(plen >> 7);
      } else {
        *q++ = (unsigned char)plen;
      }
      if (type == 0x44) {
        sync_session_stats st;
        unsigned char *f = q;
        int i;
        sync_session_stats_get(s, &st);
        *q++ = 0x30; /* frame major 3, no flags */
        if (len >= 0x80) {
          *q++ = (unsigned char)(len | 0x80);
          *q++ = (unsigned char)(len >> 7);
        } else {
          *q++ = (unsigned char)len;
        }
        memcpy(q, data + off + 2, len);
        q += len;
        h = XXH3_64bits_withSeed(f, (size_t)(q - f), st.frames_received);
        for (i = 0; i < 8; i++) *q++ = (unsigned char)(h >> (8 * i));
      } else {
        memcpy(q, data + off + 2, len);
        q += len;
      }
      h = XXH3_64bits(msg, (size_t)(q - msg));
      q[0] = (unsigned char)h;
      q[1] = (unsigned char)(h >> 8);
      q[2] = (unsigned char)(h >> 16);
      q[3] = (unsigned char)(h >> 24);
      fs_feed(s, msg, (size_t)(q - msg) + 4);
      off += 2 + len;
    }
  }
  sync_session_abort(s, SYNC_ECLOSED);
  sync_session_free(s);
  fs_check();
  return 0;
}
