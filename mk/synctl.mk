# synctl: the command-line tool (tools/synctl/: main.c holds the command
# table, cmd_*.c the commands, the rest shared helpers; with the network
# helper of tools/net/), its install rule and its end-to-end test.

SYNCTL_C := $(sort $(wildcard tools/synctl/*.c))
SYNCTL_H := $(wildcard tools/synctl/*.h)
SYNCTL_OBJ := $(patsubst tools/synctl/%.c,$(B)/synctl-obj/%.o,$(SYNCTL_C)) \
              $(patsubst tools/net/%.c,$(B)/net-obj/%.o,$(NET_C))

all: $(B)/synctl

$(B)/synctl-obj/%.o: tools/synctl/%.c $(SYNCTL_H) $(NET_H) sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -I. -c $< -o $@

$(B)/net-obj/%.o: tools/net/%.c $(NET_H) sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -I. -c $< -o $@

# pg-bridge links libpq (mk/pg.mk: PG_OBJ, PG_LIBS).
$(B)/synctl: $(SYNCTL_OBJ) $(PG_OBJ) $(B)/libsync.a
	$(CC) $(CFLAGS) $(SYNCTL_OBJ) $(PG_OBJ) $(B)/libsync.a $(LIBS) $(PG_LIBS) -o $@

TEST_EXTRA += tests/synctl.sh
test-build: $(B)/synctl

install: install-synctl
install-synctl: $(B)/synctl
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(B)/synctl $(DESTDIR)$(PREFIX)/bin/synctl

.PHONY: install-synctl

# The server as operators run it (tests/server_ops.sh).
TEST_EXTRA += tests/server_ops.sh
