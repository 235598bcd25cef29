/*
 * w2.h - the rows of workload W2, telemetry (DESIGN.md section 7):
 * devices reporting one reading every second with jitter, keyed by device
 * id and timestamp, columns temperature and humidity (random walks rounded
 * as sensors report them), battery (slowly falling) and status.  Rows come
 * in arrival (time) order, as a gateway writes them.
 */
#ifndef BENCH_W2_H
#define BENCH_W2_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

/* Key: the 8 ASCII bytes `dev-%04d`, then the timestamp in ms since the
 * Unix epoch as 8 bytes big-endian, so memcmp order is (device, time).
 * 16 bytes, binary (SYNC_BLOB key; BLOB primary key in SQLite). */
#define W2_KEY_LEN 16
#define W2_DEV_LEN 8
#define W2_NCOLUMNS 4
#define W2_TXN_ROWS 1000
#define W2_PERIOD_MS 1000
#define W2_JITTER_MS 50 /* each reading lands within +-50 ms of its slot */
#define W2_EPOCH_MS UINT64_C(1764547200000) /* 2025-12-01 00:00 UTC */

#define W2_SEED UINT64_C(0x5715C0DE00000021)

typedef struct w2_row {
  unsigned char key[W2_KEY_LEN];
  uint64_t ts;        /* ms, as in the key */
  uint32_t dev;       /* device number */
  double temperature; /* deg C, a multiple of 0.01 (the nearest double) */
  double humidity;    /* %, a multiple of 0.1 */
  int64_t battery;    /* %, from 100 down */
  const char *status; /* "ok", "warn" or "fault" (static) */
  size_t status_len;
} w2_row;

/* Table "readings": key BLOB; temperature REAL, humidity REAL, battery
 * INTEGER, status TEXT. */
extern const sync_table_def w2_table;
extern const char w2_sqlite_create[];
extern const char w2_sqlite_insert[];

/* ndev devices x nread readings, sorted by (ts, dev): the arrival order.
 * Device d's readings depend only on seed and d, so any device count gives
 * the same readings for the same device.  malloc'd, free() it. */
w2_row *w2_generate(size_t ndev, size_t nread, uint64_t seed,
                    uint64_t epoch_ms);

/* The values of a row as sync_values, in column order. */
void w2_values(const w2_row *row, sync_value out[W2_NCOLUMNS]);

#endif /* BENCH_W2_H */
