/*
 * fuzz_decode.c - libFuzzer target for the frame decoder
 * (sync_decoder_decode / sync_decoder_feed), the code that reads bytes
 * from untrusted peers.  Input format: fuzz_frame.h.
 *
 * Per input, with a decoder at the default limits and one at small ones
 * (a few KiB): decode the frame whole; feed the same bytes in fragments
 * (one byte at a time for seed 0) and check that every call makes
 * progress; a frame that decodes whole must come out of the stream too,
 * with the same rows.  Whatever decodes is encoded again and must decode
 * again, and uncompressed re-encodings are canonical (encoding the
 * re-decoded chunk gives the same bytes).  ASan/UBSan and LeakSanitizer
 * catch the rest.
 */
#include "fuzz_frame.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sync_codec_opts fz_small_opts(void) {
  sync_codec_opts o;
  memset(&o, 0, sizeof o);
  o.max_frame = 4096;
  o.max_body = 6144;
  o.max_rows = 64;
  return o;
}

/* Encode d and decode it back: must work, and the stored frame of the
 * result must be the same bytes. */
static void fz_reencode(const sync_delta *d) {
  sync_encoder *e;
  sync_decoder *dec;
  sync_delta *back = NULL;
  const void *f;
  size_t n, n2;
  unsigned char *copy;
  int rc;
  if (sync_encoder_create(NULL, NULL, &e)) FZ_BUG("encoder_create");
  rc = sync_encoder_begin(e, d, &n, NULL);
  if (rc) FZ_BUG("a decoded chunk does not encode: %s", sync_strerror(rc));
  if (sync_encoder_frame(e, &f, &n2) || n != n2) FZ_BUG("encoder_frame");
  copy = (unsigned char *)malloc(n);
  if (!copy) FZ_BUG("out of memory");
  memcpy(copy, f, n);
  if (sync_decoder_create(NULL, NULL, &dec)) FZ_BUG("decoder_create");
  rc = sync_decoder_decode(dec, copy, n, &back);
  if (rc) FZ_BUG("a re-encoded chunk does not decode: %s", sync_strerror(rc));
  if (sync_delta_rows(back) != sync_delta_rows(d) ||
      sync_delta_last(back) != sync_delta_last(d))
    FZ_BUG("re-encoded chunk has %zu rows, not %zu", sync_delta_rows(back),
           sync_delta_rows(d));
  rc = sync_encoder_begin(e, back, &n2, NULL);
  if (rc) FZ_BUG("re-decoded chunk does not encode: %s", sync_strerror(rc));
  if (sync_encoder_frame(e, &f, &n2)) FZ_BUG("encoder_frame");
  if (n2 != n || memcmp(f, copy, n)) FZ_BUG("encoding is not canonical");
  sync_delta_free(back);
  sync_decoder_free(dec);
  sync_encoder_free(e);
  free(copy);
}

/* Feed [f, f + n) in fragments; returns the number of deltas that came
 * out and the rows of the first. */
static size_t fz_feed(sync_decoder *dec, const unsigned char *f, size_t n,
                      unsigned seed, size_t *rows0) {
  sync_inbuf in = {f, 0, 0};
  uint32_t st = 0x9e3779b9u ^ seed;
  size_t got = 0;
  while (in.pos < n) {
    size_t step = fz_next_fragment(&st, seed);
    in.size = in.size + step > n ? n : in.size + step;
    while (in.pos < in.size) {
      sync_delta *d = (sync_delta *)&got; /* must be reset by the call */
      size_t before = in.pos;
      int rc = sync_decoder_feed(dec, &in, &d);
      if (in.pos > in.size) FZ_BUG("feed moved pos past size");
      if (rc == 0 && d) {
        if (!got) *rows0 = sync_delta_rows(d);
        got++;
        sync_delta_free(d);
      } else if (d) {
        FZ_BUG("feed left *out set (rc %d)", rc);
      }
      if (in.pos == before && (rc != 0 || !d))
        FZ_BUG("feed made no progress (rc %d)", rc);
      if (rc == 0 && !d && in.pos != in.size)
        FZ_BUG("feed waits for more with input left");
    }
  }
  return got;
}

static void fz_one(const sync_codec_opts *o, const unsigned char *f, size_t n,
                   unsigned seed, int check) {
  sync_decoder *dec;
  sync_delta *d = NULL;
  size_t rows0 = 0, got;
  int rc;
  if (sync_decoder_create(NULL, o, &dec)) FZ_BUG("decoder_create");
  rc = sync_decoder_decode(dec, f, n, &d);
  if (rc && d) FZ_BUG("decode failed but set *out");
  if (rc == 0 && !d) FZ_BUG("decode succeeded without a delta");
  if (d && check) fz_reencode(d);
  /* The same decoder, fed the bytes afterwards: the whole decode must
   * leave nothing behind. */
  got = fz_feed(dec, f, n, seed, &rows0);
  if (d && (got != 1 || rows0 != sync_delta_rows(d)))
    FZ_BUG("decoded whole (%zu rows) but the stream gave %zu deltas",
           sync_delta_rows(d), got);
  sync_delta_free(d);
  sync_decoder_free(dec);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n;
  unsigned seed = 0;
  unsigned char *f = fz_input_frame(data, size, &n, &seed);
  sync_codec_opts small = fz_small_opts();
  if (!f) return 0;
  fz_one(NULL, f, n, seed, 1);
  fz_one(&small, f, n, seed, 0);
  free(f);
  return 0;
}
