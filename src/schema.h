/*
 * schema.h - the declared tables and columns, their canonical encoding
 * (stored in the file) and hash (compared by peers), and the comparison
 * that explains a mismatch in words.
 */
#ifndef SX_SCHEMA_H
#define SX_SCHEMA_H

#include "util.h"

typedef struct sx_column {
  char name[SX_NAME_MAX + 1];
  int type;
  unsigned flags;
} sx_column;

typedef struct sx_table {
  char name[SX_NAME_MAX + 1];
  int key_type;
  unsigned ncols;
  sx_column *cols;
  sync_column_def *defs; /* views of cols for sync_env_table_def */
} sx_table;

/* Whether table tb has a COUNTER column. */
static inline int sx_table_counters(const sx_table *tb) {
  unsigned j;
  for (j = 0; j < tb->ncols; j++)
    if (tb->cols[j].type == SYNC_COUNTER) return 1;
  return 0;
}

typedef struct sx_schema {
  uint64_t version; /* 1 at creation, +1 per change */
  uint64_t hash;    /* XXH3 of the canonical encoding, without flags that
                       stay on this device */
  unsigned ntables;
  sx_table *tables;
} sx_schema;

/* Validate and copy.  SYNC_EINVAL, SYNC_ELIMIT, SYNC_ENOMEM; msg says why. */
SYNC_PRIVATE int sx_schema_from_defs(const sx_alloc *al,
                                     const sync_table_def *defs, unsigned n,
                                     sx_schema **out, char *msg, size_t msgsz);
/* Canonical bytes, version included, appended to b. */
SYNC_PRIVATE int sx_schema_encode(const sx_schema *s, sx_buf *b);
/* Parse stored bytes; SYNC_ECORRUPT when malformed. */
SYNC_PRIVATE int sx_schema_decode(const sx_alloc *al, const unsigned char *p,
                                  size_t n, sx_schema **out);
/* The form peers exchange (docs/PROTOCOL.md, HELLO): the canonical
 * bytes without the version and the local flags, whose XXH3-64 is the
 * schema hash; and its parser (SYNC_ECORRUPT when malformed or when it
 * declares what sync_env_set_schema refuses).  The parsed version is 0. */
SYNC_PRIVATE int sx_schema_encode_peer(const sx_schema *s, sx_buf *b);
SYNC_PRIVATE int sx_schema_decode_peer(const sx_alloc *al,
                                       const unsigned char *p, size_t n,
                                       sx_schema **out);
/* Can replicas with schemas a and b sync?  Each table both have must
 * have the same name, key type, and column names, types and NOT NULL at
 * every position both have (one is the other plus columns appended, and
 * one list of tables the other plus tables appended).  0, or
 * SYNC_ESCHEMA with msg naming the table and the column as each side
 * declares it (an and bn say where: "here", "at the peer"). */
SYNC_PRIVATE int sx_schema_compat(const sx_schema *a, const sx_schema *b,
                                  const char *an, const char *bn, char *msg,
                                  size_t msgsz);
/* Is decl file plus appended tables and columns (what an open may
 * upgrade the file to)?  0, or SYNC_ESCHEMA / SYNC_ECONSTRAINT (a new
 * column that must not be NULL) with msg. */
SYNC_PRIVATE int sx_schema_extends(const sx_schema *file,
                                   const sx_schema *decl, char *msg,
                                   size_t msgsz);
/* A copy of s with the given version. */
SYNC_PRIVATE int sx_schema_dup(const sx_alloc *al, const sx_schema *s,
                               uint64_t version, sx_schema **out);
/* 0 when a and b declare the same tables and columns, else 1 with msg
 * saying the first difference. */
SYNC_PRIVATE int sx_schema_diff(const sx_schema *file, const sx_schema *decl,
                                char *msg, size_t msgsz);
/* A copy of s with one more column in table t, or one more table. */
SYNC_PRIVATE int sx_schema_with_column(const sx_alloc *al, const sx_schema *s,
                                       unsigned t, const sync_column_def *c,
                                       sx_schema **out, char *msg,
                                       size_t msgsz);
SYNC_PRIVATE int sx_schema_with_table(const sx_alloc *al, const sx_schema *s,
                                      const sync_table_def *d, sx_schema **out,
                                      char *msg, size_t msgsz);
SYNC_PRIVATE int sx_schema_find_table(const sx_schema *s, const char *name);
SYNC_PRIVATE int sx_schema_find_column(const sx_table *t, const char *name);
SYNC_PRIVATE const char *sx_type_name(int type);
SYNC_PRIVATE void sx_schema_free(const sx_alloc *al, sx_schema *s);

#endif
