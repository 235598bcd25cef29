# mk/cross.mk - cross builds, tests under qemu-user, and the footprint
# table.  Included by the Makefile.
#
#   make cross-deps ARCH=aarch64   install the cross gcc, the target's -dev
#                                  packages and qemu-user (apt-get; root);
#                                  ARCH may list several: "aarch64 armhf"
#   make cross ARCH=aarch64        library, every test program (the t-src
#                                  and t-amal sets and single_header), the
#                                  bench and the examples, under
#                                  build/cross-ARCH/
#   make cross-test ARCH=aarch64   run them under qemu-user in a scratch
#                                  dir; closes with "N passed, N failed"
#   make size                      text/data/bss of sync.c at -Os for
#                                  x86_64, aarch64 and armhf, configs
#                                  default and nozstd
#
# ARCH is aarch64 (64-bit little-endian), armhf (32-bit ARMv7, hard float)
# or s390x (64-bit big-endian).
#
# Linking.  The library, the bench and the examples are static: Debian's
# liblmdb-dev, libzstd-dev, libxxhash-dev and libsqlite3-dev ship .a files
# for every target, and libc6-dev does.  libcmocka-dev ships no static
# archive (only libcmocka.so), so the test programs link LMDB, zstd and
# xxhash statically and libc and cmocka dynamically; cross-test runs them
# with the cross gcc's own loader and libc (/usr/TRIPLET, the ones they
# were linked against) and the target's libcmocka.so.0.  Should a
# libcmocka.a turn up, the tests link statically too.
#
# Where the target's libraries come from: multiarch (/usr/lib/TRIPLET),
# unless tools/cross-deps.sh had to unpack them into build/cross-ARCH/sysroot
# because the mirror cannot match the host's package versions for that
# architecture (the case of s390x on bookworm: see the script).

CROSS_ARCHES := aarch64 armhf s390x
CROSS_TRIPLET_aarch64 := aarch64-linux-gnu
CROSS_TRIPLET_armhf := arm-linux-gnueabihf
CROSS_TRIPLET_s390x := s390x-linux-gnu
CROSS_QEMU_aarch64 := qemu-aarch64
CROSS_QEMU_armhf := qemu-arm
CROSS_QEMU_s390x := qemu-s390x

CROSS_CFLAGS ?= -O2 -g
# Seconds one test program may run under qemu before it counts as failed.
CROSS_TEST_TIMEOUT ?= 1200

.PHONY: cross cross-deps cross-test cross-check size

cross-deps:
	@[ -n "$(ARCH)" ] || { echo "cross-deps: set ARCH (one or more of: $(CROSS_ARCHES))"; exit 2; }
	sh tools/cross-deps.sh $(B) $(ARCH)

CT := $(CROSS_TRIPLET_$(ARCH))
CB := $(B)/cross-$(ARCH)
CROSS_CC := $(CT)-gcc
CROSS_SYSROOT := $(CB)/sysroot
CROSS_LIBDIR := $(if $(wildcard $(CROSS_SYSROOT)/usr/lib/$(CT)),$(abspath $(CROSS_SYSROOT))/usr/lib/$(CT),/usr/lib/$(CT))
CROSS_INC := $(if $(wildcard $(CROSS_SYSROOT)/usr/include),-I$(CROSS_SYSROOT)/usr/include)
CROSS_CPP := $(CPPFLAGS_ALL) $(CROSS_INC)
CROSS_LINK := -L$(CROSS_LIBDIR)
CROSS_STATIC_LIBS := -static $(CROSS_LINK) $(LIBS) -lpthread
CROSS_TESTLIBS := $(if $(wildcard $(CROSS_LIBDIR)/libcmocka.a),\
  -static $(CROSS_LINK) $(LIBS) -lcmocka -lpthread -lm,\
  $(CROSS_LINK) -Wl,-Bstatic $(LIBS) -Wl,-Bdynamic -lcmocka -lpthread -lm)
# The bench links SQLite when the target has its static archive; without
# it the SQLite peer is left out (bench/bench.h, BENCH_HAVE_SQLITE).
CROSS_BENCH_SQLITE := $(if $(wildcard $(CROSS_LIBDIR)/libsqlite3.a),-lsqlite3,-DBENCH_NO_SQLITE)

CROSS_SRC_OBJ := $(patsubst src/%.c,$(CB)/src/%.o,$(SRC_C))
CROSS_T_SRC := $(patsubst tests/%.c,$(CB)/t-src/%,$(TESTS))
CROSS_T_AMAL := $(patsubst tests/%.c,$(CB)/t-amal/%,$(PUB_TESTS))
CROSS_TESTS := $(CROSS_T_SRC) $(CROSS_T_AMAL) $(CB)/single/single_header
CROSS_EXAMPLES := $(patsubst examples/%.c,$(CB)/%,$(wildcard examples/*.c))
# The server and the device need a peer: cross-test runs the quickstart.
CROSS_RUN_EXAMPLES := $(CB)/quickstart

# A named, supported ARCH and its cross gcc, before anything is built.
cross-check:
	@case " $(CROSS_ARCHES) " in *" $(ARCH) "*) ;; \
	  *) echo "cross: ARCH must be one of: $(CROSS_ARCHES) (got '$(ARCH)')"; exit 2;; esac
	@command -v $(CROSS_CC) >/dev/null && [ -f $(CROSS_LIBDIR)/liblmdb.a ] || \
	  { echo "cross: no $(CROSS_CC) or no target libraries in $(CROSS_LIBDIR):" \
	    "run make cross-deps ARCH=$(ARCH)"; exit 2; }

ifneq ($(filter $(ARCH),$(CROSS_ARCHES)),)

# The objects the t-src programs share stay after the build.
.SECONDARY: $(CROSS_SRC_OBJ)

cross: cross-check
	@$(MAKE) --no-print-directory ARCH=$(ARCH) $(CB)/libsync.a \
	  $(CROSS_TESTS) $(CB)/bench $(CROSS_EXAMPLES)

$(CB)/sync.o: sync.c sync.h
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(WARN) $(CROSS_CFLAGS) $(CROSS_INC) -c sync.c -o $@

$(CB)/libsync.a: $(CB)/sync.o
	rm -f $@ && $(CT)-ar rcs $@ $^

$(CB)/src/%.o: src/%.c $(SRC_H) sync.h
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(WARN) $(CROSS_CFLAGS) $(CROSS_CPP) -c $< -o $@

$(CB)/t-src/%: tests/%.c $(TEST_H) $(CROSS_SRC_OBJ)
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(WARN) $(CROSS_CFLAGS) $(CROSS_CPP) $< $(CROSS_SRC_OBJ) $(CROSS_TESTLIBS) -o $@

$(CB)/t-amal/%: tests/%.c $(TEST_H) $(CB)/sync.o
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(WARN) $(CROSS_CFLAGS) $(CROSS_CPP) $< $(CB)/sync.o $(CROSS_TESTLIBS) -o $@

$(CB)/single/single_header: tests/single_header.c $(B)/single/sync_single.h
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(WARN) $(CROSS_CFLAGS) $(CROSS_INC) -I$(B)/single $< \
	  $(CROSS_STATIC_LIBS) -o $@

$(CB)/%: examples/%.c sync.h $(CB)/libsync.a
	$(CROSS_CC) $(WARN) $(CROSS_CFLAGS) $(CROSS_INC) -I. $< $(CB)/libsync.a $(CROSS_STATIC_LIBS) -o $@

# The SQLite choice is a file, so that a change of it relinks the bench.
$(CB)/bench.cfg: FORCE
	@mkdir -p $(dir $@)
	@echo '$(CROSS_BENCH_SQLITE)' | cmp -s - $@ || echo '$(CROSS_BENCH_SQLITE)' > $@

$(CB)/bench: $(BENCH_C) bench/*.h sync.h $(CB)/libsync.a $(CB)/bench.cfg
	$(CROSS_CC) -std=c11 -O2 -DNDEBUG $(CROSS_CPP) $(BENCH_C) $(CB)/libsync.a \
	  $(CROSS_BENCH_SQLITE) $(CROSS_STATIC_LIBS) -lm -o $@

# Every test program, then the examples, each in its own fresh directory
# under build/cross-ARCH/scratch.  The dynamically linked tests must run
# with the libc they were linked against, the cross gcc's (/usr/TRIPLET/lib),
# and with its own loader: qemu's -L gives the loader, and LD_LIBRARY_PATH
# puts that libc first and then build/cross-ARCH/lib, which holds
# libcmocka.so.0 alone.  Without it the loader would find the multiarch
# libc.so.6 (libc6:ARCH, a different build of glibc than the loader), and
# pthread_create hangs under that mix.  The closing line is the one
# `make test` prints.
CROSS_QEMU := $(CROSS_QEMU_$(ARCH)) -L /usr/$(CT) \
  -E LD_LIBRARY_PATH=/usr/$(CT)/lib:$(abspath $(CB)/lib) \
  -E SYNC_VECTORS=$(abspath tests/vectors)

cross-test: cross
	@command -v $(CROSS_QEMU_$(ARCH)) >/dev/null || \
	  { echo "cross-test: no $(CROSS_QEMU_$(ARCH)): run make cross-deps ARCH=$(ARCH)"; exit 2; }
	@rm -rf $(CB)/lib && mkdir -p $(CB)/lib && \
	  { [ -f $(CROSS_LIBDIR)/libcmocka.a ] || cp -L $(CROSS_LIBDIR)/libcmocka.so.0 $(CB)/lib/; }
	@rm -rf $(CB)/scratch; pass=0; fail=0; failed=""; start=$$(date +%s); \
	for t in $(CROSS_TESTS) $(CROSS_RUN_EXAMPLES); do \
	  d=$(CB)/scratch/$$(echo $$t | sed 's|^$(CB)/||; s|/|-|g'); mkdir -p $$d; \
	  case $$t in $(CB)/t-*|$(CB)/single/*) args= ;; *) args=$$(basename $$t).db ;; esac; \
	  echo "=== $(ARCH) $$t"; t0=$$(date +%s); \
	  if (cd $$d && timeout $(CROSS_TEST_TIMEOUT) $(CROSS_QEMU) $(abspath .)/$$t $$args); then \
	    pass=$$((pass+1)); else fail=$$((fail+1)); failed="$$failed $$t"; fi; \
	  echo "--- $$t: $$(( $$(date +%s) - t0 )) s"; \
	done; \
	echo "cross-test $(ARCH): $$(( $$(date +%s) - start )) s under $(CROSS_QEMU_$(ARCH))"; \
	[ -z "$$failed" ] || echo "failed:$$failed"; \
	echo "$$pass passed, $$fail failed"; \
	[ $$fail -eq 0 ]

else

cross cross-test: cross-check

endif

# ---- footprint ---------------------------------------------------------
# The library object as users build it (sync.c alone, -Os), for each
# architecture and configuration.  Figures are GNU size's Berkeley columns:
# text is everything read-only that the object puts in flash (code,
# constants, unwind tables), so it is an upper bound of the .text section
# alone, which a `#` line also gives.
#
# nozstd is compiled with -DSYNC_OMIT_ZSTD, the option that will remove
# compression.  The library does not call zstd yet, so until the wire codec
# with zstd lands, nozstd equals default.
SIZE_ARCHES := x86_64 aarch64 armhf
SIZE_CONFIGS := default nozstd minimal
SIZE_TRIPLET_x86_64 := x86_64-linux-gnu
SIZE_TRIPLET_aarch64 := aarch64-linux-gnu
SIZE_TRIPLET_armhf := arm-linux-gnueabihf
SIZE_FLAGS_default :=
SIZE_FLAGS_nozstd := -DSYNC_OMIT_ZSTD
SIZE_FLAGS_minimal := -DSYNC_OMIT_ZSTD -DSYNC_OMIT_REPAIR

define SIZE_RULE
$(B)/size/$(1).$(2).o: sync.c sync.h
	@mkdir -p $$(dir $$@)
	$(SIZE_TRIPLET_$(1))-gcc $$(WARN) -Os $(SIZE_FLAGS_$(2)) -c sync.c -o $$@
endef
$(foreach a,$(SIZE_ARCHES),$(foreach c,$(SIZE_CONFIGS),\
  $(eval $(call SIZE_RULE,$(a),$(c)))))

SIZE_OBJ := $(foreach a,$(SIZE_ARCHES),$(foreach c,$(SIZE_CONFIGS),$(B)/size/$(a).$(c).o))

# size: ARCH.CONFIG.{text,data,bss} BYTES, then a `#` line with .text alone.
define SIZE_PRINT
$(SIZE_TRIPLET_$(1))-size -B $(B)/size/$(1).$(2).o | awk 'NR == 2 { \
  print "size: $(1).$(2).text " $$1; print "size: $(1).$(2).data " $$2; \
  print "size: $(1).$(2).bss " $$3 }'; \
$(SIZE_TRIPLET_$(1))-size -A $(B)/size/$(1).$(2).o | awk '$$1 == ".text" { \
  print "# $(1).$(2): the .text section alone is " $$2 " bytes" }';
endef

size: $(SIZE_OBJ)
	@$(foreach a,$(SIZE_ARCHES),$(foreach c,$(SIZE_CONFIGS),$(call SIZE_PRINT,$(a),$(c))))
