/*
 * demo_schema.h - the schema the example server and edge devices share:
 * readings that devices write and everyone reads, and settings that only
 * the server's operators write (version 1), and the version 2 a rolling
 * upgrade brings.
 */
#ifndef DEMO_SCHEMA_H
#define DEMO_SCHEMA_H

#include "sync.h"

static const sync_column_def demo_reading_cols[3] = {
    {"temp", SYNC_REAL, 0},
    {"battery", SYNC_INTEGER, 0},
    {"status", SYNC_TEXT, 0},
};
static const sync_column_def demo_setting_cols[1] = {
    {"value", SYNC_TEXT, 0},
};
static const sync_table_def demo_tables[2] = {
    {"readings", SYNC_TEXT, demo_reading_cols, 3},
    {"settings", SYNC_TEXT, demo_setting_cols, 1},
};
#define DEMO_READINGS 0u
#define DEMO_SETTINGS 1u

/* Version 2 of the schema, for a rolling upgrade: readings gain a
 * humidity column, appended.  Devices with either version sync with a
 * server of either version; one that does not know humidity keeps it
 * with its stamps and passes it on. */
static const sync_column_def demo_reading_cols_v2[4] = {
    {"temp", SYNC_REAL, 0},
    {"battery", SYNC_INTEGER, 0},
    {"status", SYNC_TEXT, 0},
    {"humidity", SYNC_REAL, 0},
};
static const sync_table_def demo_tables_v2[2] = {
    {"readings", SYNC_TEXT, demo_reading_cols_v2, 4},
    {"settings", SYNC_TEXT, demo_setting_cols, 1},
};

/* Split "HOST:PORT"; returns 0 on success. */
static inline int demo_split_addr(const char *addr, char *host, size_t hcap,
                                  char *port, size_t pcap) {
  const char *colon = addr ? strrchr(addr, ':') : NULL;
  size_t hl;
  if (!colon || colon == addr || !colon[1]) return -1;
  hl = (size_t)(colon - addr);
  if (hl >= hcap || strlen(colon + 1) >= pcap) return -1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  strcpy(port, colon + 1);
  return 0;
}

static inline void demo_hex(const uint8_t *p, size_t n, char *out) {
  static const char h[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = h[p[i] >> 4];
    out[2 * i + 1] = h[p[i] & 15];
  }
  out[2 * n] = 0;
}

#endif
