# synctl: the command-line tool (tools/synctl.c), its install rule and
# its end-to-end test.

all: $(B)/synctl

$(B)/synctl: tools/synctl.c sync.h $(B)/libsync.a
	$(CC) $(WARN) $(CFLAGS) -I. tools/synctl.c $(B)/libsync.a $(LIBS) -o $@

TEST_EXTRA += tests/synctl.sh
test-build: $(B)/synctl

install: install-synctl
install-synctl: $(B)/synctl
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(B)/synctl $(DESTDIR)$(PREFIX)/bin/synctl

.PHONY: install-synctl
