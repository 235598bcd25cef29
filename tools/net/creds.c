/*
 * creds.c - the credentials file of a server (docs/SYNCTL.md, "serve"):
 * one line per token with the tables it may read and write, whether it
 * may relay, the site it is bound to and the value that scopes its rows;
 * the authorize callback and the row filter a server session takes from
 * it.
 */
#include "tools/net/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TABLE[,TABLE...] or "*" into bits. */
static int set_tables(net_creds *cr, const char *where, char *list,
                      unsigned char *bits) {
  char *save = NULL, *t;
  for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    unsigned id;
    if (!strcmp(t, "*")) {
      memset(bits, 0xff, SYNC_RIGHTS_BYTES);
      continue;
    }
    if (cr->table(cr->env, where, t, &id)) return -1;
    bits[id >> 3] |= (unsigned char)(1u << (id & 7));
  }
  return 0;
}

/* word, "where=COLUMN=VALUE", into c. */
static int cred_where(net_creds *cr, net_cred *c, const char *word,
                      const char *where) {
  const char *w = word + 6, *eq = strchr(w, '=');
  size_t i, cl = eq ? (size_t)(eq - w) : 0;
  if (!eq || !cl || cl >= sizeof c->wcol || strlen(eq + 1) >= sizeof c->wval) {
    cr->say("%s: where= wants COLUMN=VALUE, not '%s'", where, w);
    return -1;
  }
  memcpy(c->wcol, w, cl);
  c->wcol[cl] = 0;
  snprintf(c->wval, sizeof c->wval, "%s", eq + 1);
  c->where = 1;
  /* The filter's version: FNV-1a over every token's clause, so a
   * changed file restarts each peer's stream. */
  if (!cr->fver) cr->fver = 0xcbf29ce484222325ull;
  for (i = 0; word[i]; i++)
    cr->fver = (cr->fver ^ (unsigned char)word[i]) * 0x100000001b3ull;
  for (i = 0; c->token[i]; i++)
    cr->fver = (cr->fver ^ (unsigned char)c->token[i]) * 0x100000001b3ull;
  return 0;
}

static int hex_digit(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* site=HEX32 (w is what follows site=) into c.  The site id in HELLO is
 * self-asserted: binding the token to one site is what stops a holder of
 * the token from writing as another device (SECURITY.md). */
static int cred_site(net_creds *cr, net_cred *c, const char *w,
                     const char *where) {
  size_t i;
  for (i = 0; i < 16 && strlen(w) == 32; i++) {
    int h = hex_digit(w[2 * i]), l = hex_digit(w[2 * i + 1]);
    if (h < 0 || l < 0) break;
    c->site[i] = (uint8_t)(h * 16 + l);
  }
  if (i < 16) {
    cr->say("%s: site= wants 32 hex digits (a site id), not '%s'", where, w);
    return -1;
  }
  c->bound = 1;
  return 0;
}

/* name=NAME (w is what follows name=): letters, digits, '.', '_', '-',
 * so that a log line never needs to quote it. */
static int cred_name(net_creds *cr, net_cred *c, const char *w,
                     const char *where) {
  size_t n = strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "0123456789._-");
  if (!n || w[n] || n >= sizeof c->name) {
    cr->say("%s: name= wants up to 63 letters, digits, '.', '_' or '-', "
            "not '%s'",
            where, w);
    return -1;
  }
  memcpy(c->name, w, n + 1);
  return 0;
}

/* One word after the token. */
static int cred_word(net_creds *cr, net_cred *c, char *w, const char *where) {
  if (!strncmp(w, "read=", 5))
    return set_tables(cr, where, w + 5, c->rights.read);
  if (!strncmp(w, "write=", 6))
    return set_tables(cr, where, w + 6, c->rights.write);
  if (!strcmp(w, "relay")) {
    c->rights.relay = 1;
    return 0;
  }
  if (!strncmp(w, "where=", 6)) return cred_where(cr, c, w, where);
  if (!strncmp(w, "site=", 5)) return cred_site(cr, c, w + 5, where);
  if (!strncmp(w, "name=", 5)) return cred_name(cr, c, w + 5, where);
  cr->say("%s: cannot read '%s' (read=TABLES, write=TABLES, relay, "
          "site=HEX32, where=COLUMN=VALUE or name=NAME)",
          where, w);
  return -1;
}

int net_creds_line(void *ctx, char *line, const char *where) {
  net_creds *cr = (net_creds *)ctx;
  char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
  net_cred *c;
  if (!w || w[0] == '#') return 0;
  if (cr->n == NET_MAX_CRED || strlen(w) >= sizeof c->token) {
    cr->say("%s: too many credentials, or a token over 127 bytes", where);
    return -1;
  }
  c = &cr->c[cr->n++];
  memset(c, 0, sizeof *c);
  snprintf(c->token, sizeof c->token, "%s", w);
  while ((w = strtok_r(NULL, " \t\r\n", &save)))
    if (cred_word(cr, c, w, where)) return -1;
  return 0;
}

/* Remember that site showed credential i, for the filter. */
static void cred_seen(net_creds *cr, const uint8_t site[16], int i) {
  unsigned j;
  for (j = 0; j < cr->npeers && memcmp(cr->peers[j].site, site, 16); j++) {
  }
  if (j == cr->npeers) {
    if (cr->npeers < NET_MAX_CONN)
      cr->npeers++;
    else
      j = cr->next_peer++ % NET_MAX_CONN;
  }
  memcpy(cr->peers[j].site, site, 16);
  cr->peers[j].cred = i;
}

void net_creds_replace(net_creds *cr, const net_creds *from) {
  unsigned j;
  for (j = 0; j < cr->npeers; j++) {
    int i = cr->peers[j].cred, k;
    const char *tok = i >= 0 && i < cr->n ? cr->c[i].token : NULL;
    for (k = 0; tok && k < from->n && strcmp(from->c[k].token, tok); k++) {
    }
    cr->peers[j].cred = tok && k < from->n ? k : -1;
  }
  memcpy(cr->c, from->c, sizeof cr->c);
  cr->n = from->n;
  cr->fver = from->fver;
}

/* The credential site last showed: its index, -1 (removed by a reload)
 * or -2 (none). */
static int cred_of(const net_creds *cr, const uint8_t site[16]) {
  unsigned i;
  for (i = 0; i < cr->npeers; i++)
    if (!memcmp(cr->peers[i].site, site, 16)) return cr->peers[i].cred;
  return -2;
}

const char *net_creds_name(const net_creds *cr, const uint8_t site[16]) {
  int i = cred_of(cr, site);
  return i >= 0 && cr->c[i].name[0] ? cr->c[i].name : NULL;
}

void net_creds_server_opts(net_creds *cr, sync_session_opts *so) {
  memset(so, 0, sizeof *so);
  so->server = 1;
  so->level = 3;
  if (!cr) return;
  so->authorize = net_creds_authorize;
  so->authorize_ctx = cr;
  so->filter = net_creds_filter;
  so->filter_ctx = cr;
  so->filter_version = cr->fver;
}

int net_creds_authorize(void *ctx, const uint8_t site[16], const void *token,
                        size_t len, sync_rights *rights) {
  net_creds *cr = (net_creds *)ctx;
  int i;
  for (i = 0; i < cr->n; i++) {
    const net_cred *c = &cr->c[i];
    if (strlen(c->token) != len || memcmp(c->token, token, len)) continue;
    if (c->bound && memcmp(c->site, site, 16)) {
      if (cr->refused) cr->refused(cr->refused_ctx, site, c->site);
      return SYNC_EPERM;
    }
    *rights = c->rights;
    cred_seen(cr, site, i);
    return 0;
  }
  return SYNC_EPERM;
}

int net_creds_filter(void *ctx, const uint8_t peer[16], unsigned table,
                     const void *key, size_t klen, const sync_value *vals,
                     unsigned nvals) {
  net_creds *cr = (net_creds *)ctx;
  const net_cred *c;
  unsigned col;
  char *end;
  long long iv;
  int i = cred_of(cr, peer);
  (void)key;
  (void)klen;
  if (i == -1) return 0; /* its token was removed: nothing more */
  c = i >= 0 ? &cr->c[i] : NULL;
  if (!c || !c->where) return 1;
  if (!vals) return 1; /* a delete: the peer may hold the row */
  if (sync_env_column(cr->env, table, c->wcol, &col) || col >= nvals) return 1;
  switch (vals[col].type) {
  case SYNC_INTEGER:
    errno = 0;
    iv = strtoll(c->wval, &end, 10);
    return !errno && !*end && end != c->wval && iv == vals[col].i;
  case SYNC_TEXT:
  case SYNC_BLOB:
    return vals[col].len == strlen(c->wval) &&
           !memcmp(vals[col].data, c->wval, vals[col].len);
  default: return 0;
  }
}
