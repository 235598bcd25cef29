/*
 * session_drive.c - sync_session_run(): the blocking driver, a thin loop
 * that moves bytes between a session and the caller's send and recv
 * callbacks until the session is over.  It uses only the public calls,
 * as any other driver would.
 */
#include "session.h"

SYNC_API int sync_session_run(sync_session *s, const sync_transport *t) {
  unsigned char buf[16384];
  int st;
  if (!s || !t || !t->send || !t->recv) return SYNC_EINVAL;
  while (sync_session_status(s) == 0) {
    if (sync_session_want_write(s)) {
      sync_outbuf out;
      size_t off = 0;
      int64_t n;
      out.ptr = buf;
      out.size = sizeof buf;
      out.pos = 0;
      if ((n = sync_session_send(s, &out)) < 0) return (int)n;
      while (off < out.pos) {
        int64_t k = t->send(t->ctx, buf + off, out.pos - off);
        if (k <= 0) {
          sync_session_abort(s, k < 0 ? (int)k : SYNC_ECLOSED);
          break;
        }
        off += (size_t)k;
      }
      continue;
    }
    if (sync_session_want_read(s)) {
      sync_inbuf in;
      int64_t n = t->recv(t->ctx, buf, sizeof buf);
      if (n <= 0) {
        sync_session_abort(s, n < 0 ? (int)n : SYNC_ECLOSED);
        break;
      }
      in.ptr = buf;
      in.size = (size_t)n;
      in.pos = 0;
      sync_session_recv(s, &in);
      continue;
    }
    /* Neither: only END/FAILING with nothing to flush, settled above. */
    break;
  }
  st = sync_session_status(s);
  return st == 1 ? 0 : st ? st : SYNC_EPROTO;
}
