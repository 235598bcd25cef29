/*
 * env.h - the environment object before it is opened: errors, key helpers,
 * settings and what it says about its schema and site.
 */
#ifndef SX_ENV_H
#define SX_ENV_H

#include "types.h"

/* Record a failure: message into env->errmsg; returns rc. */
SYNC_PRIVATE int sx_fail(sync_env *env, int rc, const char *fmt, ...);

#endif
