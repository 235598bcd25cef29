# synctl: the command-line tool (tools/synctl/: main.c holds the command
# table, cmd_*.c the commands, the rest shared helpers), its install rule
# and its end-to-end test.

SYNCTL_C := $(sort $(wildcard tools/synctl/*.c))
SYNCTL_H := $(wildcard tools/synctl/*.h)
SYNCTL_OBJ := $(patsubst tools/synctl/%.c,$(B)/synctl-obj/%.o,$(SYNCTL_C))

all: $(B)/synctl

$(B)/synctl-obj/%.o: tools/synctl/%.c $(SYNCTL_H) sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -I. -c $< -o $@

$(B)/synctl: $(SYNCTL_OBJ) $(B)/libsync.a
	$(CC) $(CFLAGS) $(SYNCTL_OBJ) $(B)/libsync.a $(LIBS) -o $@

TEST_EXTRA += tests/synctl.sh
test-build: $(B)/synctl

install: install-synctl
install-synctl: $(B)/synctl
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(B)/synctl $(DESTDIR)$(PREFIX)/bin/synctl

.PHONY: install-synctl
