/*
 * test_stats.c - the stats module: histogram quantiles against the exact
 * sorted samples (several distributions, the documented 1/32 bound),
 * bucket boundaries, the Prometheus text, and the env's counters after
 * commits, an apply and gc.
 */
#include "testutil.h"

#include "sess_util.h"

#include <math.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}
static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Every quantile within 1/32 of the sample of rank ceil(q n). */
static void check_quantiles(uint64_t *v, size_t n, const char *what) {
  static sync_histogram h;
  static const double qs[] = {0.0, 0.01, 0.1,  0.25,  0.5, 0.75,
                              0.9, 0.95, 0.99, 0.999, 1.0};
  size_t i;
  memset(&h, 0, sizeof h);
  for (i = 0; i < n; i++) sync_histogram_add(&h, v[i]);
  qsort(v, n, sizeof *v, cmp_u64);
  assert_int_equal(h.count, n);
  assert_int_equal(h.min, v[0]);
  assert_int_equal(h.max, v[n - 1]);
  for (i = 0; i < sizeof qs / sizeof qs[0]; i++) {
    size_t rank = (size_t)ceil(qs[i] * (double)n);
    uint64_t exact, got, diff;
    if (rank < 1) rank = 1;
    exact = v[rank - 1];
    got = sync_histogram_quantile(&h, qs[i]);
    diff = got > exact ? got - exact : exact - got;
    if ((double)diff > (double)exact / 32.0) {
      print_error("%s: q=%g exact %llu got %llu\n", what, qs[i],
                  (unsigned long long)exact, (unsigned long long)got);
      fail();
    }
  }
}

#define N 20000
static uint64_t vals[N];

static void quantiles_uniform(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < N; i++) vals[i] = rnd() % 1000000;
  check_quantiles(vals, N, "uniform");
}

static void quantiles_lognormal(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < N; i++) {
    double u1 = unif() + 1e-12, u2 = unif();
    double z = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
    vals[i] = (uint64_t)exp(11.0 + 1.5 * z); /* ~ 60 us median, long tail */
  }
  check_quantiles(vals, N, "lognormal");
}

static void quantiles_exponential(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < N; i++) vals[i] = (uint64_t)(-log(unif() + 1e-12) * 5e5);
  check_quantiles(vals, N, "exponential");
}

static void quantiles_bimodal_and_small(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < N; i++)
    vals[i] = (rnd() & 1) ? 3 + rnd() % 10 : 40000000 + rnd() % 1000000;
  check_quantiles(vals, N, "bimodal");
  for (i = 0; i < N; i++) vals[i] = rnd() % 16; /* exact region */
  check_quantiles(vals, N, "small");
  for (i = 0; i < 7; i++) vals[i] = 1000 * (i + 1); /* few samples */
  check_quantiles(vals, 7, "seven");
}

static void buckets_cover_the_range(void **state) {
  unsigned i;
  (void)state;
  assert_int_equal(sync_histogram_bucket_low(0), 0);
  assert_int_equal(sync_histogram_bucket_low(15), 15);
  assert_int_equal(sync_histogram_bucket_low(16), 16);
  assert_int_equal(sync_histogram_bucket_low(32), 32);
  for (i = 1; i < SYNC_HIST_BUCKETS; i++) {
    uint64_t lo = sync_histogram_bucket_low(i),
             prev = sync_histogram_bucket_low(i - 1);
    sync_histogram h;
    assert_true(lo > prev);
    /* Each bucket is at most 1/16 of its low end wide. */
    assert_true(i <= 16 || (lo - prev) * 16 <= prev);
    memset(&h, 0, sizeof h);
    sync_histogram_add(&h, lo);
    sync_histogram_add(&h, lo - 1);
    assert_int_equal(h.buckets[i], 1);
    assert_int_equal(h.buckets[i - 1], 1);
  }
}

static void empty_and_bad_quantiles(void **state) {
  sync_histogram h;
  (void)state;
  memset(&h, 0, sizeof h);
  assert_int_equal(sync_histogram_quantile(&h, 0.5), 0);
  sync_histogram_add(&h, 12345);
  assert_int_equal(sync_histogram_quantile(&h, 0.5), 12345); /* clamped */
  assert_int_equal(sync_histogram_quantile(&h, 1.5), 0);
  assert_int_equal(sync_histogram_quantile(&h, -0.1), 0);
  assert_int_equal(sync_histogram_quantile(NULL, 0.5), 0);
}

/* Every line is a comment (# HELP / # TYPE) or "name{labels} value", each
 * metric has HELP and TYPE before its samples, and values parse. */
static void prometheus_format(void **state) {
  static sync_stats st;
  char *buf, *line, *save = NULL;
  int64_t n, m;
  char typed[64][64];
  int ntyped = 0, i, samples = 0;
  (void)state;
  memset(&st, 0, sizeof st);
  st.commits = 7;
  st.rows_sent = 11;
  st.rows_received = 13;
  for (i = 1; i <= 100; i++)
    sync_histogram_add(&st.commit_ns, (uint64_t)i * 1000);
  n = sync_stats_prometheus(&st, NULL, 0);
  assert_true(n > 0);
  buf = (char *)malloc((size_t)n + 1);
  assert_non_null(buf);
  /* Too small: cut, NUL-terminated, same length reported. */
  m = sync_stats_prometheus(&st, buf, 10);
  assert_int_equal(m, n);
  assert_int_equal(strlen(buf), 9);
  m = sync_stats_prometheus(&st, buf, (size_t)n + 1);
  assert_int_equal(m, n);
  assert_int_equal(strlen(buf), (size_t)n);
  assert_int_equal(buf[n - 1], '\n');
  assert_non_null(
      strstr(buf, "# TYPE sync_commits_total counter\nsync_commits_total 7\n"));
  assert_non_null(strstr(buf, "sync_rows_total{direction=\"sent\"} 11\n"));
  assert_non_null(strstr(buf, "sync_rows_total{direction=\"received\"} 13\n"));
  assert_non_null(strstr(buf, "# TYPE sync_commit_seconds histogram\n"));
  assert_non_null(strstr(buf, "# TYPE sync_build_info gauge\nsync_build_info{"
                              "version=\"" SYNC_VERSION_STRING "\"} 1\n"));
  {
    /* Cumulative buckets at powers of two nanoseconds: the samples are
     * 1000, 2000 .. 100000 ns, so le=2^10 ns holds 1 of them, le=2^16 ns
     * 65, le=2^17 ns all 100; +Inf holds the count. */
    static const char *const want[] = {
        "sync_commit_seconds_bucket{le=\"0.000001024\"} 1\n",
        "sync_commit_seconds_bucket{le=\"0.000065536\"} 65\n",
        "sync_commit_seconds_bucket{le=\"0.000131072\"} 100\n",
        "sync_commit_seconds_bucket{le=\"+Inf\"} 100\n"};
    uint64_t prev = 0;
    unsigned nb = 0, w;
    const char *p = buf;
    for (w = 0; w < sizeof want / sizeof *want; w++)
      assert_non_null(strstr(buf, want[w]));
    assert_null(strstr(buf, "quantile="));
    /* The buckets of one histogram never decrease. */
    while ((p = strstr(p, "sync_commit_seconds_bucket{le=\""))) {
      uint64_t v;
      p = strchr(p, '}') + 2;
      v = strtoull(p, NULL, 10);
      assert_true(v >= prev);
      prev = v;
      nb++;
    }
    assert_true(nb >= 20);
  }
  assert_non_null(strstr(buf, "sync_commit_seconds_count 100\n"));
  assert_non_null(strstr(buf, "sync_commit_seconds_sum 0.005050000\n"));
  assert_non_null(strstr(buf, "sync_commit_seconds_max 0.000100000\n"));
  for (line = strtok_r(buf, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char name[64], *end;
    size_t k;
    if (!strncmp(line, "# HELP ", 7)) continue;
    if (!strncmp(line, "# TYPE ", 7)) {
      assert_true(ntyped < 64);
      assert_int_equal(sscanf(line + 7, "%63s", typed[ntyped]), 1);
      end = line + 7 + strlen(typed[ntyped]) + 1;
      assert_true(!strcmp(end, "counter") || !strcmp(end, "histogram") ||
                  !strcmp(end, "gauge"));
      ntyped++;
      continue;
    }
    assert_true(line[0] != '#');
    k = strcspn(line, "{ ");
    assert_true(k > 0 && k < sizeof name);
    memcpy(name, line, k);
    name[k] = 0;
    for (i = 0; i < (int)k; i++)
      assert_true((name[i] >= 'a' && name[i] <= 'z') || name[i] == '_');
    /* A histogram's le is a number or +Inf. */
    if (strstr(line, "{le=\"")) {
      char *le = strstr(line, "{le=\"") + 5;
      if (strncmp(le, "+Inf\"", 5)) {
        strtod(le, &end);
        assert_int_equal(*end, '"');
      }
    }
    /* The sample belongs to the metric typed last (or its _sum/_count). */
    assert_true(ntyped > 0);
    assert_true(!strncmp(name, typed[ntyped - 1], strlen(typed[ntyped - 1])));
    end = strrchr(line, ' ');
    assert_non_null(end);
    strtod(end + 1, &end);
    assert_int_equal(*end, 0);
    samples++;
  }
  assert_true(samples > 30);
  free(buf);
  assert_int_equal(sync_stats_prometheus(NULL, NULL, 0), SYNC_EINVAL);
}

/* The env counts commits, rows, applies and latencies. */
static void env_counts(void **state) {
  static const sync_column_def cols[] = {{"v", SYNC_INTEGER, 0}};
  static const sync_table_def t = {"t", SYNC_TEXT, cols, 1};
  static sync_stats st;
  sync_env *a, *b;
  sync_txn *x, *y;
  sync_request *rq;
  sync_delta *d;
  uint8_t sa[16], sb[16];
  int i;
  char key[16];
  (void)state;
  tu_remove_db("stats_a.db");
  tu_remove_db("stats_b.db");
  TU_OK(sync_env_create(NULL, &a));
  TU_OK(sync_env_set_schema(a, &t, 1));
  TU_OK(sync_env_open(a, "stats_a.db", 0));
  TU_OK(sync_env_create(NULL, &b));
  TU_OK(sync_env_set_schema(b, &t, 1));
  TU_OK(sync_env_open(b, "stats_b.db", 0));
  TU_OK(sync_env_site_id(a, sa));
  TU_OK(sync_env_site_id(b, sb));
  for (i = 0; i < 3; i++) {
    sync_value v = sync_int(i);
    TU_OK(sync_txn_begin(a, 0, &x));
    snprintf(key, sizeof key, "k%d", i);
    TU_OK(sync_put(x, 0, key, strlen(key), &v, 1));
    snprintf(key, sizeof key, "j%d", i);
    TU_OK(sync_put(x, 0, key, strlen(key), &v, 1));
    TU_OK(sync_txn_commit(x));
  }
  TU_OK(sync_txn_begin(a, SYNC_TXN_RDONLY, &x)); /* not counted */
  TU_OK(sync_txn_commit(x));
  TU_OK(sync_env_stats(a, &st));
  TU_U64(st.commits, 3);
  TU_U64(st.rows_written, 6);
  TU_U64(st.commit_ns.count, 3);
  assert_true(st.commit_ns.max >= st.commit_ns.min);
  /* b pulls from a: one apply of 6 rows, one commit on b. */
  TU_OK(sync_txn_begin(b, 0, &y));
  TU_OK(sync_request_make(y, sa, &rq));
  TU_OK(sync_txn_begin(a, SYNC_TXN_RDONLY, &x));
  TU_OK(sync_delta_make(x, rq, NULL, &d));
  sync_txn_abort(x);
  TU_OK(sync_delta_apply(y, d, SYNC_APPLY_MERGE, NULL));
  TU_OK(sync_txn_commit(y));
  sync_delta_free(d);
  sync_request_free(rq);
  TU_OK(sync_env_stats(b, &st));
  TU_U64(st.applies, 1);
  TU_U64(st.rows_applied, 6);
  TU_U64(st.apply_ns.count, 1);
  TU_U64(st.commits, 1);
  TU_U64(st.rows_written, 6);
  TU_U64(st.sessions, 0);
  assert_int_equal(sync_env_stats(NULL, &st), SYNC_EINVAL);
  /* Four more rows on a; b pulls them in a session pair. */
  TU_OK(sync_txn_begin(a, 0, &x));
  for (i = 0; i < 4; i++) {
    sync_value v = sync_int(100 + i);
    snprintf(key, sizeof key, "s%d", i);
    TU_OK(sync_put(x, 0, key, strlen(key), &v, 1));
  }
  TU_OK(sync_txn_commit(x));
  {
    sync_session_opts co, so;
    sync_session *cs, *ss;
    static sync_stats sta;
    su_pump pump;
    memset(&pump, 0, sizeof pump);
    memset(&co, 0, sizeof co);
    memset(&so, 0, sizeof so);
    co.mode = SYNC_PULL;
    so.server = 1;
    TU_OK(sync_session_create(b, &co, &cs));
    TU_OK(sync_session_create(a, &so, &ss));
    su_run(&pump, cs, ss);
    assert_int_equal(sync_session_status(cs), 1);
    assert_int_equal(sync_session_status(ss), 1);
    sync_session_free(cs);
    sync_session_free(ss);
    TU_OK(sync_env_stats(b, &st));
    TU_OK(sync_env_stats(a, &sta));
    TU_U64(st.sessions, 1);
    TU_U64(st.sessions_failed, 0);
    TU_U64(st.rows_received, 4);
    assert_true(st.chunks_received >= 1);
    TU_U64(st.chunks_received, sta.chunks_sent);
    TU_U64(st.bytes_received, sta.bytes_sent);
    TU_U64(st.bytes_sent, sta.bytes_received);
    TU_U64(st.frame_bytes_received, sta.frame_bytes_sent);
    TU_U64(st.raw_bytes_received, sta.raw_bytes_sent);
    TU_U64(st.session_ns.count, 1);
    TU_U64(sta.sessions, 1);
    TU_U64(sta.rows_sent, 4);
  }
  {
    /* A delete on a, pulled by b (twice: the second request acknowledges
     * the first run); then a's gc collects the tombstone and counts it. */
    uint64_t got = 0;
    int k;
    TU_OK(sync_txn_begin(a, 0, &x));
    TU_OK(sync_delete(x, 0, "s0", 2));
    TU_OK(sync_txn_commit(x));
    for (k = 0; k < 2; k++) {
      int last = 0;
      while (!last) {
        TU_OK(sync_txn_begin(b, 0, &y));
        TU_OK(sync_request_make(y, sa, &rq));
        TU_OK(sync_txn_begin(a, 0, &x));
        TU_OK(sync_request_ack(x, rq));
        TU_OK(sync_delta_make(x, rq, NULL, &d));
        TU_OK(sync_txn_commit(x));
        last = sync_delta_last(d);
        TU_OK(sync_delta_apply(y, d, SYNC_APPLY_MERGE, NULL));
        TU_OK(sync_txn_commit(y));
        sync_delta_free(d);
        sync_request_free(rq);
      }
    }
    TU_OK(sync_txn_begin(a, 0, &x));
    TU_OK(sync_gc(x, &got));
    TU_OK(sync_txn_commit(x));
    assert_true(got >= 1);
    TU_OK(sync_env_stats(a, &st));
    TU_U64(st.tombstones_collected, got);
  }
  sync_env_close(a);
  sync_env_close(b);
  tu_remove_db("stats_a.db");
  tu_remove_db("stats_b.db");
}

/* A damaged row is counted as corruption detected. */
static void corruption_counted(void **state) {
  static const sync_column_def cols[] = {{"v", SYNC_TEXT, 0}};
  static const sync_table_def t = {"t", SYNC_TEXT, cols, 1};
  static sync_stats st;
  static const char mark[] = "a-value-to-damage-0123456789";
  sync_env *e;
  sync_txn *x;
  sync_value v = sync_text(mark, sizeof mark - 1);
  unsigned char *file;
  size_t len = 0, at, n = 0;
  (void)state;
  tu_remove_db("stats_c.db");
  TU_OK(sync_env_create(NULL, &e));
  TU_OK(sync_env_set_schema(e, &t, 1));
  TU_OK(sync_env_open(e, "stats_c.db", 0));
  TU_OK(sync_txn_begin(e, 0, &x));
  TU_OK(sync_put(x, 0, "k", 1, &v, 1));
  TU_OK(sync_txn_commit(x));
  sync_env_close(e);
  file = tu_read_file("stats_c.db", &len);
  assert_non_null(file);
  for (at = tu_find(file, len, (const unsigned char *)mark, sizeof mark - 1, 0);
       at != (size_t)-1; at = tu_find(file, len, (const unsigned char *)mark,
                                      sizeof mark - 1, at + 1))
    file[at + 5] ^= 0x01, n++;
  assert_true(n >= 1);
  assert_int_equal(tu_write_file("stats_c.db", file, len), 0);
  free(file);
  TU_OK(sync_env_create(NULL, &e));
  TU_OK(sync_env_open(e, "stats_c.db", 0));
  TU_OK(sync_txn_begin(e, SYNC_TXN_RDONLY, &x));
  TU_RC(sync_get(x, 0, "k", 1, &v, 1), SYNC_ECORRUPT);
  sync_txn_abort(x);
  TU_OK(sync_env_stats(e, &st));
  TU_U64(st.corrupt, 1);
  sync_env_close(e);
  tu_remove_db("stats_c.db");
}

static int fail_connect(void *ctx, sync_transport *t) {
  (void)ctx;
  (void)t;
  return SYNC_ECLOSED;
}
static void no_sleep(void *ctx, uint64_t ms) {
  (void)ctx;
  (void)ms;
}

/* Retries of sync_retry_run count in the env's stats. */
static void retries_counted(void **state) {
  static const sync_column_def cols[] = {{"v", SYNC_TEXT, 0}};
  static const sync_table_def t = {"t", SYNC_TEXT, cols, 1};
  static sync_stats st;
  sync_env *e;
  sync_retry *r;
  sync_retry_opts ro;
  sync_session_opts so;
  (void)state;
  tu_remove_db("stats_r.db");
  TU_OK(sync_env_create(NULL, &e));
  TU_OK(sync_env_set_schema(e, &t, 1));
  TU_OK(sync_env_open(e, "stats_r.db", 0));
  memset(&ro, 0, sizeof ro);
  ro.attempts = 3;
  ro.sleep = no_sleep;
  memset(&so, 0, sizeof so);
  TU_OK(sync_retry_create(NULL, &ro, &r));
  TU_RC(sync_retry_run(r, e, &so, fail_connect, NULL, NULL, NULL),
        SYNC_ECLOSED);
  sync_retry_free(r);
  TU_OK(sync_env_stats(e, &st));
  TU_U64(st.retries, 2);
  TU_U64(st.sessions, 0);
  sync_env_close(e);
  tu_remove_db("stats_r.db");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(quantiles_uniform),
      cmocka_unit_test(quantiles_lognormal),
      cmocka_unit_test(quantiles_exponential),
      cmocka_unit_test(quantiles_bimodal_and_small),
      cmocka_unit_test(buckets_cover_the_range),
      cmocka_unit_test(empty_and_bad_quantiles),
      cmocka_unit_test(prometheus_format),
      cmocka_unit_test(env_counts),
      cmocka_unit_test(corruption_counted),
      cmocka_unit_test(retries_counted),
  };
  return cmocka_run_group_tests(tests, 0, 0);
}
