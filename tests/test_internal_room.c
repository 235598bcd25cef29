/*
 * test_internal_room.c - the room an apply leaves in the pages it fills
 * in key order (ops.h, sx_store_row_room).  LMDB fills pages written in
 * key order whole, so without room the first update of a row after an
 * initial sync split nearly every page it touched.  Checked here: a row
 * with room decodes (the room is zero bytes the checksum covers, and
 * nothing else); no stored row keeps room once the apply has returned;
 * updates pulled after an initial sync leave the table's page count
 * about where it was.  White-box: rows are encoded and decoded with
 * row.h, the table's pages counted with LMDB.
 */
#include "merge_util.h"

#include <lmdb.h>

#include "row.h"

#define SDB "t_internal_room_s.db"
#define RDB "t_internal_room_r.db"
#define NROWS 6000
#define NUPD 600

/* Close r, keeping its file (mu_close removes it). */
static void rm_shut(mu_rep *r) {
  sync_env_close(r->env);
  r->env = NULL;
}

static void rm_dbs(void) {
  tu_remove_db(SDB);
  tu_remove_db(RDB);
}

/* A row of two columns and one stamp, encoded with room zero bytes. */
static size_t rm_encode(sx_row *r, unsigned char *out, size_t room) {
  size_t size;
  r->cl = 1;
  r->version = 7;
  r->seq = 3;
  r->nstamps = 1;
  r->stamps[0].hlc = UINT64_C(0x1234567890);
  r->stamps[0].site = 0;
  r->cl_stamp = 0;
  r->ncols = 2;
  r->cols[0].st = 0;
  r->cols[0].base = SX_NOSTAMP;
  r->cols[0].v = sync_int(-42);
  r->cols[1].st = 0;
  r->cols[1].base = SX_NOSTAMP;
  r->cols[1].v = sync_text("hello", 5);
  size = sx_row_size(r);
  sx_row_encode(r, "k", 1, out, size, room);
  return size;
}

static void row_room_reads_as_zero_bytes(void **state) {
  sx_alloc al;
  sx_row r, d;
  unsigned char buf[256];
  size_t size;
  (void)state;
  sx_alloc_default(&al);
  TU_OK(sx_row_init(&al, &r, 4));
  TU_OK(sx_row_init(&al, &d, 4));
  /* No room: as before. */
  size = rm_encode(&r, buf, 0);
  TU_OK(sx_row_decode(buf, size, "k", 1, &d));
  assert_int_equal(d.room, 0);
  /* 40 bytes of room: the same row, and its room. */
  size = rm_encode(&r, buf, 40);
  TU_OK(sx_row_decode(buf, size + 40, "k", 1, &d));
  assert_int_equal(d.room, 40);
  assert_int_equal(d.ncols, 2);
  assert_true(d.cols[0].v.type == SYNC_INTEGER && d.cols[0].v.i == -42);
  assert_int_equal(d.cols[1].v.len, 5);
  assert_memory_equal(d.cols[1].v.data, "hello", 5);
  assert_true(d.version == 7 && d.seq == 3);
  /* The checksum covers the room: a room byte changed fails it. */
  buf[size + 39] = 0;
  buf[size + 20] = 1;
  TU_RC(sx_row_decode(buf, size + 40, "k", 1, &d), SYNC_ECORRUPT);
  /* Room is zero bytes and nothing else, even under a good checksum. */
  sx_row_seal(buf, size + 40, "k", 1);
  TU_RC(sx_row_decode(buf, size + 40, "k", 1, &d), SYNC_ECORRUPT);
  buf[size + 20] = 0;
  sx_row_seal(buf, size + 40, "k", 1);
  TU_OK(sx_row_decode(buf, size + 40, "k", 1, &d));
  /* Under another key the same bytes fail. */
  TU_RC(sx_row_decode(buf, size + 40, "j", 1, &d), SYNC_ECORRUPT);
  sx_row_free(&al, &r);
  sx_row_free(&al, &d);
}

/* The leaf pages of table t in the file at path, and (when rows is not
 * NULL) a check that every stored row decodes without room. */
static size_t rm_leaves(const char *path, size_t *rows) {
  MDB_env *e;
  MDB_txn *t;
  MDB_dbi dbi;
  MDB_stat ms;
  MDB_cursor *c;
  MDB_val k, v;
  sx_alloc al;
  sx_row r;
  size_t n = 0;
  sx_alloc_default(&al);
  TU_OK(sx_row_init(&al, &r, MU_NCOLS));
  assert_int_equal(mdb_env_create(&e), 0);
  assert_int_equal(mdb_env_set_maxdbs(e, 64), 0);
  assert_int_equal(mdb_env_set_mapsize(e, (size_t)1 << 30), 0);
  assert_int_equal(mdb_env_open(e, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0644), 0);
  assert_int_equal(mdb_txn_begin(e, NULL, MDB_RDONLY, &t), 0);
  assert_int_equal(mdb_dbi_open(t, "sx.t0", 0, &dbi), 0);
  assert_int_equal(mdb_stat(t, dbi, &ms), 0);
  if (rows) {
    assert_int_equal(mdb_cursor_open(t, dbi, &c), 0);
    while (mdb_cursor_get(c, &k, &v, MDB_NEXT) == 0) {
      TU_OK(sx_row_decode((const unsigned char *)v.mv_data, v.mv_size,
                          k.mv_data, k.mv_size, &r));
      if (r.room)
        fail_msg("row %zu (%.*s) kept %zu bytes of room", n, (int)k.mv_size,
                 (const char *)k.mv_data, r.room);
      n++;
    }
    mdb_cursor_close(c);
    *rows = n;
  }
  mdb_txn_abort(t);
  mdb_env_close(e);
  sx_row_free(&al, &r);
  return ms.ms_leaf_pages;
}

static void initial_sync_leaves_pages_room(void **state) {
  uint64_t now = UINT64_C(1700000000000);
  uint8_t s_site[16], r_site[16];
  unsigned char blob[40];
  mu_rep s, r;
  sync_txn *txn;
  size_t before, after, rows = 0;
  unsigned i;
  (void)state;
  rm_dbs();
  mu_site(s_site, 0x51);
  mu_site(r_site, 0x52);
  mu_open(&s, SDB, s_site, &now, 0);
  mu_open(&r, RDB, r_site, &now, 0);
  /* W1-like rows, written in a scattered key order. */
  memset(blob, 0xa5, sizeof blob);
  for (i = 0; i < NROWS; i++) {
    char key[32];
    sync_value v[MU_NCOLS];
    unsigned n = (i * 7919u) % NROWS;
    if (i % 1000 == 0) TU_OK(sync_txn_begin(s.env, 0, &txn));
    snprintf(key, sizeof key, "row-%012u", n);
    v[0] = sync_int((int64_t)n * 1000003);
    v[1] = sync_real(n * 0.5);
    v[2] = sync_text("abcdefghijklmnopqrstuvwx", 24);
    v[3] = sync_blob(blob, sizeof blob);
    TU_OK(sync_put(txn, 0, key, strlen(key), v, MU_NCOLS));
    if (i % 1000 == 999) TU_OK(sync_txn_commit(txn));
  }
  now += 1000;
  mu_pull(&r, &s, 1000, 0, NULL);
  assert_int_equal(mu_digest(&r), mu_digest(&s));
  rm_shut(&r);
  before = rm_leaves(RDB, &rows);
  assert_int_equal(rows, NROWS);
  /* Every tenth row, two columns (the text a little longer), pulled in
   * chunks of 100: each such row grows by about 30 bytes. */
  TU_OK(sync_txn_begin(s.env, 0, &txn));
  for (i = 0; i < NUPD; i++) {
    char key[32];
    const unsigned cols[2] = {MU_COL_I, MU_COL_S};
    sync_value v[2];
    v[0] = sync_int(-(int64_t)i * 1000003);
    v[1] = sync_text("abcdefghijklmnopqrstuvwxyz0123", 30);
    snprintf(key, sizeof key, "row-%012u", (i * 10u + 3u) % NROWS);
    TU_OK(sync_update(txn, 0, key, strlen(key), cols, v, 2));
  }
  TU_OK(sync_txn_commit(txn));
  now += 1000;
  mu_reopen(&r);
  mu_pull(&r, &s, 100, 0, NULL);
  assert_int_equal(mu_digest(&r), mu_digest(&s));
  rm_shut(&r);
  after = rm_leaves(RDB, &rows);
  assert_int_equal(rows, NROWS);
  /* Without room, most pages an update reached split in two. */
  if (after > before + before / 20)
    fail_msg("the table went from %zu to %zu leaf pages", before, after);
  mu_close(&s);
  rm_dbs();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(row_room_reads_as_zero_bytes),
      cmocka_unit_test(initial_sync_leaves_pages_room),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
