/*
 * w1.h - the rows of workload W1 (DESIGN.md section 7), shared by every
 * workload that uses W1 keys (W1 itself, W3 conflicts, apply and wire-size
 * runs): key `row-%012d`, columns int64, double, 24 letters [a-z], 40
 * random bytes.  A row's values depend only on its number, so any row
 * count and any order give the same row for the same key.
 */
#ifndef BENCH_W1_H
#define BENCH_W1_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

#define W1_KEY_LEN 16 /* "row-" + 12 digits, no NUL */
#define W1_TEXT_LEN 24
#define W1_BLOB_LEN 40
#define W1_VAL_LEN 80 /* a, b, c, d packed: the raw LMDB value */
#define W1_NCOLUMNS 4
#define W1_TXN_ROWS 1000

#define W1_SEED_ORDER UINT64_C(0x5715C0DE00000001)
#define W1_SEED_VALUES UINT64_C(0x5715C0DE00000002)
#define W1_SEED_GETS UINT64_C(0x5715C0DE00000003)

/* The four values lie back to back after the key, so &a is the packed
 * 80-byte value (native byte order) that raw LMDB stores; w1.c checks the
 * layout at compile time. */
typedef struct w1_row {
  char key[W1_KEY_LEN];
  int64_t a;
  double b;
  char c[W1_TEXT_LEN];
  unsigned char d[W1_BLOB_LEN];
} w1_row;

/* Table "t": key TEXT; a INTEGER, b REAL, c TEXT, d BLOB. */
extern const sync_table_def w1_table;
/* The same table in SQLite (WITHOUT ROWID: one B-tree keyed by k, like
 * ours and raw LMDB). */
extern const char w1_sqlite_create[];
extern const char w1_sqlite_insert[];

/* Fill *row with row number n. */
void w1_fill_row(w1_row *row, uint32_t n);

/* Rows 0..n-1 in the fixed pseudo-random write order (a Fisher-Yates
 * permutation with seed W1_SEED_ORDER); malloc'd, free() it. */
w1_row *w1_generate(size_t n);

/* n keys drawn uniformly (seed W1_SEED_GETS) among rows[0..nrows);
 * malloc'd, n * W1_KEY_LEN bytes.  If picks is not NULL it receives the
 * malloc'd row indexes, for checking what was read. */
char *w1_get_keys(const w1_row *rows, size_t nrows, size_t n, uint32_t **picks);

/* The values of a row as sync_values, in column order. */
void w1_values(const w1_row *row, sync_value out[W1_NCOLUMNS]);

/* 1 if vals (as read back) equal row's, else 0. */
int w1_same(const w1_row *row, const sync_value vals[W1_NCOLUMNS]);

/* rows[0..n) put into table of env, a transaction per W1_TXN_ROWS. */
void w1_put_rows(sync_env *env, unsigned table, const w1_row *rows, size_t n);

#endif /* BENCH_W1_H */
