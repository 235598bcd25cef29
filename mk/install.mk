# install.mk - make install / uninstall: the header, the static and the
# shared library (soname libsync.so.MAJOR, only sync_* exported through the
# version script sync.map), sync.pc, the manual pages synctl(1) and sync(3)
# and bash completion; mk/synctl.mk installs synctl itself.
#
#   make install PREFIX=/usr/local DESTDIR= [LIBDIR=$(PREFIX)/lib ...]
#
# The version comes from sync.h.  The manual pages are generated
# (tools/man/mkman.py): synctl.1 from what the built synctl prints for
# `synctl help` and `synctl help COMMAND`, sync.3 from sync.h, so neither
# can drift from its source.  tests/install.sh checks what lands.

SYNC_VERSION = $(shell awk '/^.define SYNC_VERSION_STRING/ {gsub(/"/, "", $$3); print $$3}' sync.h)
SYNC_MAJOR = $(firstword $(subst ., ,$(SYNC_VERSION)))

LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions

# sync.pc: the dependencies that ship a .pc file (Debian's lmdb, libzstd
# and libxxhash do) go to Requires.private, the others to Libs.private;
# both only matter to static linking.  libdir and includedir stay
# relative to ${prefix} when they sit under it.
PC_DEPS := lmdb:-llmdb libzstd:-lzstd libxxhash:-lxxhash
pc_has = $(shell pkg-config --exists $(1) 2>/dev/null && echo y)
PC_REQUIRES = $(strip $(foreach d,$(PC_DEPS),$(if $(call pc_has,$(word 1,$(subst :, ,$(d)))),$(word 1,$(subst :, ,$(d))))))
PC_LIBS = $(strip $(foreach d,$(PC_DEPS),$(if $(call pc_has,$(word 1,$(subst :, ,$(d)))),,$(word 2,$(subst :, ,$(d))))) -lpthread)
pc_rel = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

SHLIB := $(B)/libsync.so

# The shared library: the same amalgamation, position-independent.
$(B)/pic/sync.o: sync.c sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -fPIC -c sync.c -o $@

$(SHLIB): $(B)/pic/sync.o sync.map
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,libsync.so.$(SYNC_MAJOR) \
	  -Wl,--version-script=sync.map -Wl,--no-undefined \
	  $(B)/pic/sync.o $(LIBS) -lpthread -o $@

MAN_PAGES := $(B)/man/synctl.1 $(B)/man/sync.3

$(B)/man/synctl.1: $(B)/synctl tools/man/mkman.py
	@mkdir -p $(dir $@)
	$(PYTHON) tools/man/mkman.py synctl $(B)/synctl $(SYNC_VERSION) $@

$(B)/man/sync.3: sync.h tools/man/mkman.py
	@mkdir -p $(dir $@)
	$(PYTHON) tools/man/mkman.py api sync.h $(SYNC_VERSION) $@

.PHONY: shared man install-lib install-extras uninstall
shared: $(SHLIB)
man: $(MAN_PAGES)

install: install-lib install-extras

install-lib: $(B)/libsync.a $(SHLIB)
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 sync.h $(DESTDIR)$(INCLUDEDIR)/sync.h
	install -m 644 $(B)/libsync.a $(DESTDIR)$(LIBDIR)/libsync.a
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/libsync.so.$(SYNC_VERSION)
	ln -sf libsync.so.$(SYNC_VERSION) $(DESTDIR)$(LIBDIR)/libsync.so.$(SYNC_MAJOR)
	ln -sf libsync.so.$(SYNC_MAJOR) $(DESTDIR)$(LIBDIR)/libsync.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_rel,$(LIBDIR))|g' \
	  -e 's|@INCLUDEDIR@|$(call pc_rel,$(INCLUDEDIR))|g' \
	  -e 's|@VERSION@|$(SYNC_VERSION)|g' -e 's|@REQUIRES_PRIVATE@|$(PC_REQUIRES)|g' \
	  -e 's|@LIBS_PRIVATE@|$(PC_LIBS)|g' sync.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/sync.pc

install-extras: $(MAN_PAGES) tools/synctl/synctl.bash
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
	  $(DESTDIR)$(BASHCOMPDIR)
	install -m 644 $(B)/man/synctl.1 $(DESTDIR)$(MANDIR)/man1/synctl.1
	install -m 644 $(B)/man/sync.3 $(DESTDIR)$(MANDIR)/man3/sync.3
	install -m 644 tools/synctl/synctl.bash $(DESTDIR)$(BASHCOMPDIR)/synctl

# What install put, and nothing else (directories stay).
uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/sync.h $(DESTDIR)$(LIBDIR)/libsync.a \
	  $(DESTDIR)$(LIBDIR)/libsync.so.$(SYNC_VERSION) \
	  $(DESTDIR)$(LIBDIR)/libsync.so.$(SYNC_MAJOR) $(DESTDIR)$(LIBDIR)/libsync.so \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/sync.pc $(DESTDIR)$(BINDIR)/synctl \
	  $(DESTDIR)$(MANDIR)/man1/synctl.1 $(DESTDIR)$(MANDIR)/man3/sync.3 \
	  $(DESTDIR)$(BASHCOMPDIR)/synctl

# tests/install.sh installs into a scratch DESTDIR and checks it.
TEST_EXTRA += tests/install.sh
test-build: $(SHLIB) $(MAN_PAGES) $(B)/synctl
