/*
 * omit_encoder.c - the decoder-only build (SYNC_OMIT_ENCODER).  make
 * compiles src/all.c with the option and -Werror, twice (with zstd, and
 * with SYNC_OMIT_ZSTD linked without it), links this program to each and
 * runs it in build/ within make test: the golden frames of tests/vectors
 * decode to the rows their .txt files list, and the encoder, dictionary
 * training and the session (which sends frames) are refused, not faked.
 */
#include "sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OE_CHECK(c)                                                          \
  do {                                                                       \
    if (!(c)) {                                                              \
      fprintf(stderr, "omit_encoder: %s:%d: %s\n", __FILE__, __LINE__, #c);  \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

/* Bytes of file path into buf (at most cap). */
static size_t oe_read(const char *path, unsigned char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  size_t n;
  OE_CHECK(f != NULL);
  n = fread(buf, 1, cap, f);
  fclose(f);
  OE_CHECK(n > 0 && n < cap);
  return n;
}

/* Rows the dump of a golden frame lists (lines "row ..."). */
static size_t oe_rows(const char *path) {
  static unsigned char txt[1 << 16];
  size_t n = oe_read(path, txt, sizeof txt), i, rows = 0;
  for (i = 0; i + 4 <= n; i++)
    if ((i == 0 || txt[i - 1] == '\n') && !memcmp(txt + i, "row ", 4)) rows++;
  return rows;
}

/* Decode golden frame name (tests/vectors/name.bin): its rows, or the
 * decoder's error. */
static int oe_decode(sync_decoder *dec, const char *name, size_t *rows) {
  static unsigned char frame[1 << 16];
  char path[128];
  sync_delta *d = NULL;
  size_t n;
  int rc;
  snprintf(path, sizeof path, "../tests/vectors/%s.bin", name);
  n = oe_read(path, frame, sizeof frame);
  rc = sync_decoder_decode(dec, frame, n, &d);
  *rows = sync_delta_rows(d);
  sync_delta_free(d);
  return rc;
}

int main(void) {
  sync_decoder *dec = NULL;
  sync_encoder *enc = NULL;
  sync_session *s = NULL;
  sync_session_opts so;
  size_t rows, len = 1;
  OE_CHECK(sync_decoder_create(NULL, NULL, &dec) == 0);
  OE_CHECK(oe_decode(dec, "initial", &rows) == 0);
  OE_CHECK(rows == oe_rows("../tests/vectors/initial.txt") && rows > 0);
  OE_CHECK(oe_decode(dec, "incremental", &rows) == 0);
  OE_CHECK(rows == oe_rows("../tests/vectors/incremental.txt"));
#ifdef SYNC_OMIT_ZSTD
  OE_CHECK(oe_decode(dec, "zstd3", &rows) == SYNC_ENOTSUP);
  OE_CHECK(!strcmp(sync_decoder_reason(dec),
                   "compressed frame, built without zstd"));
#else
  OE_CHECK(oe_decode(dec, "zstd3", &rows) == 0);
  OE_CHECK(rows == oe_rows("../tests/vectors/zstd3.txt"));
#endif
  sync_decoder_free(dec);
  OE_CHECK(sync_encoder_create(NULL, NULL, &enc) == SYNC_ENOTSUP);
  OE_CHECK(enc == NULL);
  sync_encoder_free(enc);
  OE_CHECK(sync_encoder_begin(NULL, NULL, NULL, NULL) == SYNC_ENOTSUP);
  OE_CHECK(sync_dict_train(NULL, 0, 0, NULL, 0, &len) == SYNC_ENOTSUP);
  OE_CHECK(len == 0);
  {
    /* A session sends frames: it cannot be made without the encoder. */
    static const sync_column_def cols[1] = {{"v", SYNC_INTEGER, 0}};
    static const sync_table_def tables[1] = {{"t", SYNC_TEXT, cols, 1}};
    sync_env *env = NULL;
    remove("omit-encoder.db");
    remove("omit-encoder.db-lock");
    OE_CHECK(sync_env_create(NULL, &env) == 0);
    OE_CHECK(sync_env_set_schema(env, tables, 1) == 0);
    OE_CHECK(sync_env_open(env, "omit-encoder.db", 0) == 0);
    memset(&so, 0, sizeof so);
    OE_CHECK(sync_session_create(env, &so, &s) == SYNC_ENOTSUP);
    OE_CHECK(s == NULL);
    sync_env_close(env);
    remove("omit-encoder.db");
    remove("omit-encoder.db-lock");
  }
  printf("omit_encoder: golden frames decode; encoder, dictionary training "
         "and session refused\n");
  return 0;
}
