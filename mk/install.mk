# install.mk - make install / uninstall: the header, the static and the
# shared library (soname libsync.so.MAJOR, only sync_* exported through the
# version script sync.map) and sync.pc; mk/synctl.mk installs synctl itself.
#
#   make install PREFIX=/usr/local DESTDIR= [LIBDIR=$(PREFIX)/lib ...]
#
# The version comes from sync.h.  tests/install.sh checks what lands.

SYNC_VERSION = $(shell awk '/^.define SYNC_VERSION_STRING/ {gsub(/"/, "", $$3); print $$3}' sync.h)
SYNC_MAJOR = $(firstword $(subst ., ,$(SYNC_VERSION)))

LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin

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

.PHONY: shared install-lib uninstall
shared: $(SHLIB)

install: install-lib

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

# What install put, and nothing else (directories stay).
uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/sync.h $(DESTDIR)$(LIBDIR)/libsync.a \
	  $(DESTDIR)$(LIBDIR)/libsync.so.$(SYNC_VERSION) \
	  $(DESTDIR)$(LIBDIR)/libsync.so.$(SYNC_MAJOR) $(DESTDIR)$(LIBDIR)/libsync.so \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/sync.pc $(DESTDIR)$(BINDIR)/synctl

# tests/install.sh installs into a scratch DESTDIR and checks it.
TEST_EXTRA += tests/install.sh
test-build: $(SHLIB) $(B)/synctl
