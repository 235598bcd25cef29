# synctl: the command-line tool (tools/synctl/: main.c holds the command
# table, cmd_*.c the commands, the rest shared helpers; with the network
# helper of tools/net/), its install rule and its end-to-end test.

SYNCTL_C := $(sort $(wildcard tools/synctl/*.c))
# JSON (get, dump, load and every --json) goes through Debian's jansson
# (libjansson-dev): pkg-config's words for it when it has them.
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS := $(or $(shell pkg-config --libs jansson 2>/dev/null),-ljansson)
SYNCTL_H := $(wildcard tools/synctl/*.h)
SYNCTL_OBJ := $(patsubst tools/synctl/%.c,$(B)/synctl-obj/%.o,$(SYNCTL_C)) \
              $(patsubst tools/net/%.c,$(B)/net-obj/%.o,$(NET_C))

all: $(B)/synctl

$(B)/synctl-obj/%.o: tools/synctl/%.c $(SYNCTL_H) $(NET_H) tools/net/tls.h \
                     tools/net/mqtt.h sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(JANSSON_CFLAGS) -I. -c $< -o $@

$(B)/net-obj/%.o: tools/net/%.c $(NET_H) tools/net/tls.h tools/net/mqtt.h \
                  sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -I. -c $< -o $@

# pg-bridge links libpq (mk/pg.mk: PG_OBJ, PG_LIBS).
$(B)/synctl: $(SYNCTL_OBJ) $(PG_OBJ) $(B)/libsync.a
	$(CC) $(CFLAGS) $(SYNCTL_OBJ) $(PG_OBJ) $(B)/libsync.a $(LIBS) $(TLS_LIBS) $(JANSSON_LIBS) $(SYNCTL_LIBS) $(PG_LIBS) -o $@

TEST_EXTRA += tests/synctl.sh
test-build: $(B)/synctl

install: install-synctl
# BINDIR (default $(PREFIX)/bin) is mk/install.mk's, like the other
# directories; make expands it when the rule runs.
install-synctl: $(B)/synctl
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 $(B)/synctl $(DESTDIR)$(BINDIR)/synctl

.PHONY: install-synctl

# The server as operators run it (tests/server_ops.sh).
TEST_EXTRA += tests/server_ops.sh
