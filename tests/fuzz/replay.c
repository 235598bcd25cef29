/*
 * replay.c - runs a fuzz target's LLVMFuzzerTestOneInput over every file
 * of its corpus, without libFuzzer: the regression test `make test` runs
 * (built with gcc, and with clang-14 under ASan+UBSan).  Arguments are
 * files or directories; without any, the target's committed corpus
 * FZ_CORPUS (a path relative to build/, where tests run).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FZ_CORPUS
#error "define FZ_CORPUS, the default corpus directory"
#endif

static unsigned long rp_files;

static int rp_file(const char *path) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf;
  long n;
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 1;
  }
  if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
    fclose(f);
    fprintf(stderr, "replay: cannot read %s\n", path);
    return 1;
  }
  buf = (unsigned char *)malloc(n ? (size_t)n : 1);
  if (!buf || (n && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
    fclose(f);
    free(buf);
    fprintf(stderr, "replay: cannot read %s\n", path);
    return 1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  rp_files++;
  return 0;
}

static int rp_name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or every regular file of a directory in name order. */
static int rp_path(const char *path) {
  struct stat st;
  DIR *d;
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0, i;
  int bad = 0;
  if (stat(path, &st)) {
    fprintf(stderr, "replay: no such file or directory: %s\n", path);
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) return rp_file(path);
  d = opendir(path);
  if (!d) {
    fprintf(stderr, "replay: cannot list %s\n", path);
    return 1;
  }
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      char **nn;
      cap = cap ? 2 * cap : 64;
      nn = (char **)realloc(names, cap * sizeof *names);
      if (!nn) abort();
      names = nn;
    }
    names[n] = (char *)malloc(strlen(path) + strlen(e->d_name) + 2);
    if (!names[n]) abort();
    sprintf(names[n], "%s/%s", path, e->d_name);
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, rp_name_cmp);
  for (i = 0; i < n; i++) {
    if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
      bad |= rp_file(names[i]);
    free(names[i]);
  }
  free(names);
  return bad;
}

int main(int argc, char **argv) {
  int i, bad = 0;
  unsigned long before;
  LLVMFuzzerInitialize(&argc, &argv);
  if (argc < 2) {
    bad = rp_path(FZ_CORPUS);
    if (!rp_files) {
      fprintf(stderr, "replay: no inputs in %s\n", FZ_CORPUS);
      bad = 1;
    }
  }
  for (i = 1; i < argc; i++) {
    before = rp_files;
    bad |= rp_path(argv[i]);
    if (rp_files == before) bad = 1;
  }
  printf("replay: %lu inputs, %s\n", rp_files, bad ? "FAILED" : "ok");
  return bad;
}
