/*
 * readme_transport.c - the README's transport snippet ("Syncing two
 * replicas"), compiled as it stands there (make extracts it between its
 * markers into build/readme/transport.inc) and checked: an OS error is
 * SYNC_EIO, never the raw -1 that reads as SYNC_NOTFOUND; a closed peer
 * is 0 from recv; a receive timeout is SYNC_ETIMEOUT; a session whose
 * peer hung up ends with SYNC_EIO.  Plain C without cmocka: exit status
 * 0 on success, 1 with a message on failure.
 */
#include "transport.inc"

#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>

#define DB "t_readme.db"
#define DB_LOCK "t_readme.db-lock"

static int failures;

#define CHECK_EQ(expr, want)                                                 \
  do {                                                                       \
    long long got_ = (long long)(expr);                                      \
    if (got_ != (long long)(want)) {                                         \
      fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__,        \
              __LINE__, #expr, got_, (long long)(want));                     \
      failures++;                                                            \
    }                                                                        \
  } while (0)

int main(void) {
  static const sync_column_def cols[] = {{"n", SYNC_INTEGER, 0}};
  static const sync_table_def t = {"t", SYNC_TEXT, cols, 1};
  char buf[4];
  int bad = -1, p[2], sp[2];
  struct timeval tv = {0, 20000};
  sync_env *env = NULL;

  signal(SIGPIPE, SIG_IGN); /* as the README says to on a socket */

  /* A bad descriptor: the OS says -1, the transport SYNC_EIO. */
  CHECK_EQ(rx(&bad, buf, sizeof buf), SYNC_EIO);
  CHECK_EQ(tx(&bad, "x", 1), SYNC_EIO);

  /* Bytes through a pipe, then 0 once the writer closed. */
  if (pipe(p) != 0) return perror("pipe"), 1;
  CHECK_EQ(tx(&p[1], "ab", 2), 2);
  close(p[1]);
  CHECK_EQ(rx(&p[0], buf, sizeof buf), 2);
  CHECK_EQ(rx(&p[0], buf, sizeof buf), 0);
  close(p[0]);

  /* A receive timeout. */
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
    return perror("socketpair"), 1;
  setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  CHECK_EQ(rx(&sp[0], buf, sizeof buf), SYNC_ETIMEOUT);

  /* A session whose peer has gone: its first send fails. */
  close(sp[1]);
  remove(DB);
  remove(DB_LOCK);
  CHECK_EQ(sync_env_create(NULL, &env), 0);
  CHECK_EQ(sync_env_set_schema(env, &t, 1), 0);
  CHECK_EQ(sync_env_open(env, DB, 0), 0);
  CHECK_EQ(run_client(env, sp[0]), SYNC_EIO);
  close(sp[0]);
  sync_env_close(env);
  remove(DB);
  remove(DB_LOCK);

  if (failures == 0) printf("readme_transport: ok\n");
  return failures ? 1 : 0;
}
