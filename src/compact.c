/*
 * compact.c - compaction: a copy of the file with free pages left out and
 * every tree rewritten full, in key order (sx_store_compact), written to
 * a new file or put in the place of the env's own.
 *
 * Identity.  A writable open compares the file's device and inode with
 * meta "ident" and renews the site id of a file that moved (open.c,
 * "Epochs and site renewal"): two live files must never share a site.  A
 * copy written elsewhere keeps the source's ident, so it opens as the
 * copy it is.  A compaction in place is the same replica: no other
 * process may have the file open (checked through LMDB's lock file, and
 * kept so until the new file is in place: store.c, "In place"), the
 * writer lock is held from the snapshot to the rename so that no commit
 * falls between them, and the new file's ident is written into it before
 * it takes the name.
 * In the copy to another file, the writer lock is not needed: the copy
 * reads one snapshot, and other transactions may run meanwhile.
 */
#include "compact.h"

/* The env's handles of its named databases, in the new store. */
static int sx_compact_dbis(sync_env *env, const char *path) {
  sx_store *st = env->st;
  sx_stxn *t;
  int rc;
  if ((rc = sx_txn_begin(st, 0, &t))) return rc;
  if ((rc = sx_dbi_open(st, t, "sx.meta", 0, &env->meta)) ||
      (rc = sx_env_dbis(env, t, path, 0))) {
    sx_txn_abort(st, t);
    return rc;
  }
  return sx_txn_commit(st, t);
}

static int sx_compact_in_place(sync_env *env) {
  const char *p = sx_store_path(env->st);
  sx_store_opts o;
  sx_stxn *t = NULL;
  char *path, *tmp;
  size_t n;
  int rc, replaced = 0;
  if (env->rdonly)
    return sx_fail(env, SYNC_EREADONLY,
                   "compacting in place needs a writable env");
  if (sx_store_active(env->st))
    return sx_fail(env, SYNC_EBUSY,
                   "compacting in place needs every "
                   "transaction of this env ended first");
  if (!p) return SYNC_EINVAL;
  /* p belongs to the store, which goes before the new one opens. */
  n = strlen(p);
  path = (char *)sx_malloc(&env->al, 2 * n + 16);
  if (!path) return SYNC_ENOMEM;
  memcpy(path, p, n + 1);
  tmp = path + n + 1;
  memcpy(tmp, p, n);
  memcpy(tmp + n, ".compact", 9);
  if ((rc = sx_store_excl(env->st))) {
    if (rc == SYNC_EBUSY)
      sx_fail(env, rc,
              "%s: another process has it open; compacting in "
              "place needs it alone (close the others, or write a "
              "compacted copy to another file)",
              path);
    else if (rc == SYNC_ENOTSUP)
      sx_fail(env, rc,
              "%s: compacting in place is not supported on this "
              "platform; write a compacted copy to another file",
              path);
    else
      sx_fail(env, rc, "%s: cannot lock it: %s", path, sync_strerror(rc));
    sx_store_excl_end(env->st);
    goto done;
  }
  /* The writer lock, from the snapshot the copy reads to the rename: no
   * commit of this process can fall between them either. */
  if ((rc = sx_txn_begin(env->st, 0, &t))) goto unlock;
  sx_file_remove(tmp); /* what a compaction cut short left */
  /* The copy records its own device and inode as its ident (open.c,
   * "Epochs and site renewal"): the rename keeps both, so it opens as
   * the file it replaces, not as a copy. */
  if ((rc = sx_store_compact(env->st, tmp, "sx.meta", "ident", 5, env->errmsg,
                             sizeof env->errmsg)))
    goto unlock;
  if ((rc = sx_file_replace(tmp, path))) {
    sx_fail(env, rc, "%s: putting the compacted file in place failed: %s", tmp,
            sync_strerror(rc));
    sx_file_remove(tmp);
    goto unlock;
  }
  replaced = 1;
unlock:
  if (t) sx_txn_abort(env->st, t);
  /* Before the store closes: store.c, "In place". */
  sx_store_excl_end(env->st);
  if (!replaced) {
    env->native = sx_store_native(env->st);
    goto done;
  }
  /* The env maps the old file, which is gone: open the new one in its
   * place. */
  sx_store_close(env->st);
  env->st = NULL;
  sx_env_store_opts(env, &o);
  o.nocreate = 1;
  rc = sx_store_open(&env->al, path, &o, &env->st, env->errmsg,
                     sizeof env->errmsg);
  if (!rc && (rc = sx_compact_dbis(env, path))) {
    sx_store_close(env->st);
    env->st = NULL;
  }
  if (rc)
    sx_fail(env, rc,
            "%s: compacted, but opening it again failed (%s): "
            "close the env and open the file again",
            path, sync_strerror(rc));
done:
  sx_free(&env->al, path);
  return rc;
}

SYNC_API int sync_env_compact(sync_env *env, const char *out) {
  int rc;
  if (!env || !env->st || (out && !*out)) return SYNC_EINVAL;
  env->errmsg[0] = 0;
  if (!out) return sx_compact_in_place(env);
  rc = sx_store_compact(env->st, out, NULL, NULL, 0, env->errmsg,
                        sizeof env->errmsg);
  if (rc) env->native = sx_store_native(env->st);
  return rc;
}
