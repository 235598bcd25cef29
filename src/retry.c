/*
 * retry.c - sync_retry_run(): runs a session over a connection the
 * caller makes, again with jittered exponential backoff when it fails in
 * a way another attempt may mend, behind a circuit breaker that stops
 * trying for a while after runs that failed.
 */
#include "session.h"

#include <time.h>

struct sync_retry {
  sx_alloc al;
  sync_retry_opts o;
  sync_retry_stats st;
  unsigned fails; /* failed runs in a row */
  uint64_t open_until;
  uint64_t rng;
};

SYNC_API int sync_retry_create(const sync_allocator *alloc,
                               const sync_retry_opts *o, sync_retry **out) {
  sync_retry *r;
  sx_alloc al;
  if (!out) return SYNC_EINVAL;
  *out = NULL;
  if (sx_alloc_from(alloc, &al)) return SYNC_EINVAL;
#ifdef SYNC_OMIT_DEFAULT_SLEEP
  if (!o || !o->sleep) return SYNC_EINVAL;
#endif
  r = (sync_retry *)sx_malloc(&al, sizeof *r);
  if (!r) return SYNC_ENOMEM;
  memset(r, 0, sizeof *r);
  r->al = al;
  if (o) r->o = *o;
  if (!r->o.attempts) r->o.attempts = 5;
  if (!r->o.base_delay_ms) r->o.base_delay_ms = 200;
  if (!r->o.max_delay_ms) r->o.max_delay_ms = 30000;
  if (!r->o.breaker_failures) r->o.breaker_failures = 3;
  if (!r->o.breaker_cooldown_ms) r->o.breaker_cooldown_ms = 60000;
  r->rng = r->o.seed;
  *out = r;
  return 0;
}

SYNC_API void sync_retry_free(sync_retry *r) {
  sx_alloc al;
  if (!r) return;
  al = r->al;
  sx_free(&al, r);
}

SYNC_API void sync_retry_stats_get(const sync_retry *r, sync_retry_stats *out) {
  if (!out) return;
  if (!r) {
    memset(out, 0, sizeof *out);
    return;
  }
  *out = r->st;
}

static uint64_t sx_retry_rand(sync_retry *r) {
  uint64_t z = (r->rng += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

#ifndef SYNC_OMIT_DEFAULT_SLEEP
static void sx_sleep_ms(void *ctx, uint64_t ms) {
  struct timespec ts;
  (void)ctx;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}
#endif

/* Errors another attempt cannot mend. */
static int sx_retry_final(int rc) {
  return rc == SYNC_ESCHEMA || rc == SYNC_EVERSION || rc == SYNC_EPERM ||
         rc == SYNC_ESTALE || rc == SYNC_EINVAL || rc == SYNC_ENOTSUP ||
         rc == SYNC_ECORRUPT || rc == SYNC_EPANIC || rc == SYNC_EREADONLY;
}

SYNC_API int sync_retry_run(sync_retry *r, sync_env *env,
                            const sync_session_opts *so,
                            sync_connect_fn connect, sync_disconnect_fn close,
                            void *ctx, sync_session_stats *st) {
  uint64_t now;
  unsigned k;
  int rc = SYNC_EINVAL;
  if (!r || !env || !so || !connect) return SYNC_EINVAL;
  now = r->o.now ? r->o.now(r->o.now_ctx) : env->clock(env->clock_ctx);
  if (!r->rng) r->rng = now ^ UINT64_C(0x5EED);
  r->st.runs++;
  if (r->st.breaker_open) {
    if (now < r->open_until) {
      r->st.breaker_refused++;
      return SYNC_EBUSY;
    }
    r->st.breaker_open = 0; /* half open: one run decides */
  }
  for (k = 0; k < r->o.attempts; k++) {
    sync_transport t;
    sync_session *s = NULL;
    if (k) {
      /* Full jitter: uniform in [0, min(max, base * 2^k)). */
      uint64_t cap = r->o.base_delay_ms << (k - 1 < 20 ? k - 1 : 20);
      uint64_t d;
      if (cap > r->o.max_delay_ms || cap < r->o.base_delay_ms)
        cap = r->o.max_delay_ms;
      d = sx_retry_rand(r) % (cap + 1);
      r->st.retries++;
      sx_stats_add(&env->stats, SX_ST_RETRIES, 1);
      r->st.last_delay_ms = d;
#ifndef SYNC_OMIT_DEFAULT_SLEEP
      (r->o.sleep ? r->o.sleep : sx_sleep_ms)(r->o.sleep_ctx, d);
#else
      r->o.sleep(r->o.sleep_ctx, d);
#endif
    }
    r->st.attempts++;
    memset(&t, 0, sizeof t);
    rc = connect(ctx, &t);
    if (rc == 0) {
      rc = sync_session_create(env, so, &s);
      if (rc == 0) {
        rc = sync_session_run(s, &t);
        if (st) sync_session_stats_get(s, st);
        sync_session_free(s);
      }
      if (close) close(ctx, &t);
    } else if (rc > 0) {
      rc = SYNC_EIO;
    }
    r->st.last_error = rc;
    if (rc == 0 || sx_retry_final(rc)) break;
  }
  if (rc == 0) {
    r->fails = 0;
    return 0;
  }
  r->st.failed_runs++;
  if (++r->fails >= r->o.breaker_failures) {
    now = r->o.now ? r->o.now(r->o.now_ctx) : env->clock(env->clock_ctx);
    r->open_until = now + r->o.breaker_cooldown_ms;
    r->st.breaker_open = 1;
    r->st.breaker_opened++;
    r->fails = 0;
  }
  return rc;
}
