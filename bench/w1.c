/*
 * w1.c - the row generator of W1.  Everything is made up front, so that
 * the timed loops of the workloads touch nothing but the engines.
 */
#include "w1.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"

_Static_assert(offsetof(w1_row, a) == W1_KEY_LEN, "w1_row: key, then a");
_Static_assert(offsetof(w1_row, b) == offsetof(w1_row, a) + 8, "a, b");
_Static_assert(offsetof(w1_row, c) == offsetof(w1_row, b) + 8, "b, c");
_Static_assert(offsetof(w1_row, d) == offsetof(w1_row, c) + W1_TEXT_LEN,
               "c, d");
_Static_assert(offsetof(w1_row, d) + W1_BLOB_LEN - offsetof(w1_row, a) ==
                   W1_VAL_LEN,
               "a..d is the packed value");
_Static_assert(W1_BLOB_LEN % 8 == 0, "the blob is filled 8 bytes at a time");

static const sync_column_def w1_columns[W1_NCOLUMNS] = {
    {"a", SYNC_INTEGER, 0},
    {"b", SYNC_REAL, 0},
    {"c", SYNC_TEXT, 0},
    {"d", SYNC_BLOB, 0},
};

const sync_table_def w1_table = {"t", SYNC_TEXT, w1_columns, W1_NCOLUMNS};

const char w1_sqlite_create[] =
    "CREATE TABLE t(k TEXT PRIMARY KEY, a INTEGER, b REAL, c TEXT, d BLOB)"
    " WITHOUT ROWID";
const char w1_sqlite_insert[] =
    "INSERT INTO t(k, a, b, c, d) VALUES(?1, ?2, ?3, ?4, ?5)";

void w1_fill_row(w1_row *row, uint32_t n) {
  char key[W1_KEY_LEN + 1];
  /* A stream per row number: its values do not depend on the row count. */
  bench_rng r = {W1_SEED_VALUES ^ ((uint64_t)n * UINT64_C(0xD1B54A32D192ED03))};
  snprintf(key, sizeof key, "row-%012lu", (unsigned long)n);
  memcpy(row->key, key, W1_KEY_LEN);
  row->a = (int64_t)bench_rng_next(&r);
  row->b = (bench_rng_unit(&r) - 0.5) * 2e6;
  for (size_t i = 0; i < W1_TEXT_LEN; i++)
    row->c[i] = (char)('a' + bench_rng_below(&r, 26));
  for (size_t i = 0; i < W1_BLOB_LEN; i += 8) {
    uint64_t x = bench_rng_next(&r);
    memcpy(row->d + i, &x, 8);
  }
}

w1_row *w1_generate(size_t n) {
  uint32_t *order = bench_permutation(n, W1_SEED_ORDER);
  w1_row *rows = bench_xmalloc(n * sizeof *rows);
  for (size_t i = 0; i < n; i++)
    w1_fill_row(&rows[i], order[i]);
  free(order);
  return rows;
}

char *w1_get_keys(const w1_row *rows, size_t nrows, size_t n,
                  uint32_t **picks) {
  char *keys = bench_xmalloc(n * W1_KEY_LEN);
  uint32_t *idx = picks ? bench_xmalloc(n * sizeof *idx) : NULL;
  bench_rng r = {W1_SEED_GETS};
  for (size_t i = 0; i < n; i++) {
    uint32_t j = (uint32_t)bench_rng_below(&r, nrows);
    memcpy(keys + i * W1_KEY_LEN, rows[j].key, W1_KEY_LEN);
    if (idx)
      idx[i] = j;
  }
  if (picks)
    *picks = idx;
  return keys;
}

void w1_values(const w1_row *row, sync_value out[W1_NCOLUMNS]) {
  out[0] = sync_int(row->a);
  out[1] = sync_real(row->b);
  out[2] = sync_text(row->c, W1_TEXT_LEN);
  out[3] = sync_blob(row->d, W1_BLOB_LEN);
}

int w1_same(const w1_row *row, const sync_value v[W1_NCOLUMNS]) {
  return v[0].type == SYNC_INTEGER && v[0].i == row->a &&
         v[1].type == SYNC_REAL && memcmp(&v[1].r, &row->b, 8) == 0 &&
         v[2].type == SYNC_TEXT && v[2].len == W1_TEXT_LEN &&
         memcmp(v[2].data, row->c, W1_TEXT_LEN) == 0 &&
         v[3].type == SYNC_BLOB && v[3].len == W1_BLOB_LEN &&
         memcmp(v[3].data, row->d, W1_BLOB_LEN) == 0;
}

void w1_put_rows(sync_env *env, unsigned table, const w1_row *rows, size_t n) {
  for (size_t i = 0; i < n; i += W1_TXN_ROWS) {
    size_t end = i + W1_TXN_ROWS < n ? i + W1_TXN_ROWS : n;
    sync_txn *txn;
    peer_sync_check(env, sync_txn_begin(env, 0, &txn), "sync_txn_begin");
    for (size_t j = i; j < end; j++) {
      sync_value v[W1_NCOLUMNS];
      w1_values(&rows[j], v);
      peer_sync_check(env, sync_put(txn, table, rows[j].key, W1_KEY_LEN, v,
                                    W1_NCOLUMNS),
                      "sync_put");
    }
    peer_sync_check(env, sync_txn_commit(txn), "sync_txn_commit");
  }
}
