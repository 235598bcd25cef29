/*
 * bench.c - the benchmark driver: options, the machine line, and the table
 * of workloads.  Each workload measures ours side by side with raw LMDB
 * and SQLite + session in the same run; see bench/README.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"
#include "peers.h"
#include "workloads.h"

static const struct {
  const char *name;
  void (*run)(const bench_opts *o);
} workloads[] = {
    {"w1", bench_w1},
    {"apply", bench_apply},
    {"group", bench_group},
    {"w3", bench_w3},
    {"wire", bench_wire},
    {"sync", bench_sync},
    {"repair", bench_repair},
    {"relay", bench_relay},
    {"tls", bench_tls},
    {"mesh", bench_mesh},
    {"mqtt", bench_mqtt},
    {"pg", bench_pg},
    {"history", bench_history},
    {"counter", bench_counter},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

#define STR_(x) #x
#define STR(x) STR_(x)
#if defined(__clang__)
#define BENCH_CC                                                               \
  "clang-" STR(__clang_major__) "." STR(__clang_minor__) "." STR(              \
      __clang_patchlevel__)
#elif defined(__GNUC__)
#define BENCH_CC                                                               \
  "gcc-" STR(__GNUC__) "." STR(__GNUC_MINOR__) "." STR(__GNUC_PATCHLEVEL__)
#else
#define BENCH_CC "unknown"
#endif

static void usage(FILE *f) {
  fprintf(f, "usage: bench [--quick] [--rows N] [--durable-rows N] [--reps N]\n"
             "             [--dir DIR] [--only NAME]\n"
             "  --quick           100000 rows (for slow boards; --rows wins)\n"
             "  --rows N          rows of W1 (default 1000000)\n"
             "  --durable-rows N  rows of the synced runs (default 100000)\n"
             "  --reps N          alternating rounds, best kept (default 3)\n"
             "  --dir DIR         scratch directory (default: mkdtemp in "
             "$TMPDIR or /tmp)\n"
             "  --only NAME       run one workload:");
  for (size_t i = 0; i < NWORKLOADS; i++)
    fprintf(f, " %s", workloads[i].name);
  fputc('\n', f);
}

static size_t parse_count(const char *opt, const char *s, size_t min,
                          size_t max) {
  char *end;
  unsigned long long v;
  errno = 0;
  v = s ? strtoull(s, &end, 10) : 0;
  if (!s || errno || end == s || *end || *s == '-' || v < min || v > max) {
    fprintf(stderr, "bench: %s wants a number in %zu..%zu\n", opt, min, max);
    usage(stderr);
    exit(1);
  }
  return (size_t)v;
}

static void machine_line(void) {
  struct utsname u;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (uname(&u) != 0)
    strcpy(u.machine, "unknown");
  printf("bench: machine %s cores=%ld cc=%s\n", u.machine, cores, BENCH_CC);
  bench_note("%s %s %s; sync %s, %s, sqlite %s", u.sysname, u.release,
             u.version, SYNC_VERSION_STRING, mdb_version(NULL, NULL, NULL),
#if BENCH_HAVE_SQLITE
             sqlite3_libversion()
#else
             "not built"
#endif
  );
}

int main(int argc, char **argv) {
  bench_opts o = {1000000, 100000, 3, NULL};
  const char *dir = NULL, *only = NULL;
  int quick = 0, rows_given = 0, known = 0;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--quick")) {
      quick = 1;
    } else if (!strcmp(a, "--rows")) {
      o.rows = parse_count(a, v, 1, UINT32_MAX);
      rows_given = 1;
      i++;
    } else if (!strcmp(a, "--durable-rows")) {
      o.durable_rows = parse_count(a, v, 1, UINT32_MAX);
      i++;
    } else if (!strcmp(a, "--reps")) {
      o.reps = (int)parse_count(a, v, 1, 1000);
      i++;
    } else if (!strcmp(a, "--dir") && v) {
      dir = v;
      i++;
    } else if (!strcmp(a, "--only") && v) {
      only = v;
      i++;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bench: unknown option %s\n", a);
      usage(stderr);
      return 1;
    }
  }
  if (quick && !rows_given)
    o.rows = 100000;
  for (size_t i = 0; i < NWORKLOADS; i++)
    known |= !only || !strcmp(only, workloads[i].name);
  if (!known) {
    fprintf(stderr, "bench: no workload named %s\n", only);
    usage(stderr);
    return 1;
  }

  machine_line();
  o.dir = bench_scratch_init(dir);
  bench_note("scratch directory %s", o.dir);
  for (size_t i = 0; i < NWORKLOADS; i++)
    if (!only || !strcmp(only, workloads[i].name))
      workloads[i].run(&o);
  return 0;
}
