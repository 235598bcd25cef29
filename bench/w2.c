/*
 * w2.c - the row generator of W2 (telemetry).  Every reading is made up
 * front, so that the timed loops of the workloads touch only the engines.
 */
#include "w2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const sync_column_def w2_columns[W2_NCOLUMNS] = {
    {"temperature", SYNC_REAL, 0},
    {"humidity", SYNC_REAL, 0},
    {"battery", SYNC_INTEGER, 0},
    {"status", SYNC_TEXT, 0},
};

const sync_table_def w2_table = {"readings", SYNC_BLOB, w2_columns,
                                 W2_NCOLUMNS};

const char w2_sqlite_create[] =
    "CREATE TABLE readings(k BLOB PRIMARY KEY, temperature REAL,"
    " humidity REAL, battery INTEGER, status TEXT) WITHOUT ROWID";
const char w2_sqlite_insert[] =
    "INSERT INTO readings(k, temperature, humidity, battery, status)"
    " VALUES(?1, ?2, ?3, ?4, ?5)";

static int w2_cmp(const void *a, const void *b) {
  const w2_row *x = a, *y = b;
  if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
  return x->dev < y->dev ? -1 : x->dev > y->dev;
}

w2_row *w2_generate(size_t ndev, size_t nread, uint64_t seed,
                    uint64_t epoch_ms) {
  w2_row *rows = bench_xmalloc(ndev * nread * sizeof *rows);
  if (ndev > 10000) bench_die("w2: %zu devices do not fit dev-%%04d", ndev);
  for (size_t d = 0; d < ndev; d++) {
    /* A stream per device.  The walks run in sensor units (0.01 deg C,
     * 0.1 %) so that every value is exactly what a sensor reports, the
     * double nearest to units / 100 or / 10. */
    bench_rng r = {seed ^ ((uint64_t)(d + 1) * UINT64_C(0xD1B54A32D192ED03))};
    uint64_t phase = bench_rng_below(&r, W2_PERIOD_MS);
    int64_t temp = 1800 + (int64_t)bench_rng_below(&r, 700); /* 18-25 C */
    int64_t hum = 350 + (int64_t)bench_rng_below(&r, 300);   /* 35-65 % */
    int64_t batt = 100;
    char dev[W2_DEV_LEN + 1];
    snprintf(dev, sizeof dev, "dev-%04u", (unsigned)d);
    for (size_t i = 0; i < nread; i++) {
      w2_row *w = &rows[d * nread + i];
      /* The slot's centre is W2_JITTER_MS after its start, so that no
       * reading falls before the epoch. */
      uint64_t ts = epoch_ms + (uint64_t)i * W2_PERIOD_MS + phase +
                    bench_rng_below(&r, 2 * W2_JITTER_MS + 1);
      uint64_t p;
      temp += (int64_t)bench_rng_below(&r, 21) - 10; /* +-0.10 C */
      hum += (int64_t)bench_rng_below(&r, 3) - 1;    /* +-0.1 % */
      if (hum < 0) hum = 0;
      if (hum > 1000) hum = 1000;
      if (batt > 0 && bench_rng_below(&r, 100) == 0)
        batt--; /* about 10 points per 1,000 readings */
      memcpy(w->key, dev, W2_DEV_LEN);
      for (int b = 0; b < 8; b++)
        w->key[W2_DEV_LEN + b] = (unsigned char)(ts >> (56 - 8 * b));
      w->ts = ts;
      w->dev = (uint32_t)d;
      w->temperature = (double)temp / 100.0;
      w->humidity = (double)hum / 10.0;
      w->battery = batt;
      /* ok 98 %, warn 1.9 %, fault 0.1 % */
      p = bench_rng_below(&r, 1000);
      if (p < 980) {
        w->status = "ok";
      } else if (p < 999) {
        w->status = "warn";
      } else {
        w->status = "fault";
      }
      w->status_len = strlen(w->status);
    }
  }
  qsort(rows, ndev * nread, sizeof *rows, w2_cmp);
  return rows;
}

void w2_values(const w2_row *row, sync_value out[W2_NCOLUMNS]) {
  out[0] = sync_real(row->temperature);
  out[1] = sync_real(row->humidity);
  out[2] = sync_int(row->battery);
  out[3] = sync_text(row->status, row->status_len);
}
