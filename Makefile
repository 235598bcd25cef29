# sync - build, test, bench, install.  GNU make.
#
#   make                 library (build/libsync.a) + examples + bench binary
#   make deps            install the Debian packages: for users and for the
#                        tests (DEPS=user: users' alone)
#   make example         build and run examples/quickstart
#   make test            amalgamation check + every test, three ways:
#                        against src/ objects, against sync.c, and under
#                        ASan+UBSan (clang-14)
#   make bench           run the benchmarks (BENCH_ARGS=--quick for boards;
#                        NO_SQLITE=1 builds it without the SQLite peer)
#   make crash           kill -9 and power-loss harnesses, long runs
#   make soak-lifecycle  the fleet-lifecycle property test, 50,000 scenarios
#   make tsan            threaded tests under ThreadSanitizer
#   make valgrind        memcheck on a set of the test programs
#   make lint            cppcheck and clang-tidy on src/
#   make fuzz            libFuzzer targets, FUZZ_SECONDS each (mk/fuzz.mk)
#   make amalgamation    regenerate sync.c from src/
#   make install         PREFIX=/usr/local DESTDIR= (LIBDIR=, MANDIR=, ...);
#   make uninstall       the same variables: mk/install.mk
#   make cross-deps / cross / cross-test ARCH=aarch64|armhf|s390x, and
#   make size            cross builds, qemu runs, footprint: mk/cross.mk
#   make clean

CC      ?= cc
CLANG   ?= clang-14
PYTHON  ?= python3
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Werror
CPPFLAGS_ALL := -D_POSIX_C_SOURCE=200809L -I. -Isrc
LIBS    := -llmdb -lzstd -lxxhash
TESTLIBS := $(LIBS) -lcmocka -lpthread
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer -O1 -g
PREFIX  ?= /usr/local
B       := build

SRC_C    := $(filter-out src/all.c,$(wildcard src/*.c))
SRC_H    := $(wildcard src/*.h)
SRC_OBJ  := $(patsubst src/%.c,$(B)/src/%.o,$(SRC_C))
SAN_SRC_OBJ := $(patsubst src/%.c,$(B)/san/src/%.o,$(SRC_C))
TESTS    := $(wildcard tests/test_*.c)
PUB_TESTS := $(filter-out tests/test_internal_%,$(TESTS))
INT_TESTS := $(filter tests/test_internal_%,$(TESTS))
TEST_H   := $(wildcard tests/*.h)
# The network helper (tools/net/: TCP, the poll loop, credentials) that
# synctl, the bench and the socket tests share; the bench needs only TCP.
NET_C    := $(sort $(wildcard tools/net/*.c))
NET_H    := tools/net/net.h
BENCH_C  := $(wildcard bench/*.c) tools/net/tcp.c

T_SRC  := $(patsubst tests/%.c,$(B)/t-src/%,$(TESTS))
T_AMAL := $(patsubst tests/%.c,$(B)/t-amal/%,$(PUB_TESTS))
T_SAN  := $(patsubst tests/%.c,$(B)/t-san/%,$(PUB_TESTS)) \
          $(patsubst tests/%.c,$(B)/t-san-src/%,$(INT_TESTS))

.PHONY: all deps example test test-build bench amalgamation \
        check-amalgamation install uninstall clean soak soak-lifecycle plot FORCE

.DEFAULT_GOAL := all

# Further targets (cross builds, crash and fuzz harnesses, ...) live in
# mk/*.mk.  A fragment may append programs to TEST_EXTRA: test-build makes
# them and `make test` runs each one in build/ like the suites above.
TEST_EXTRA :=
-include $(sort $(wildcard mk/*.mk))

EXAMPLES := $(B)/quickstart $(B)/sync_server $(B)/sync_edge $(B)/mqtt_edge

all: $(B)/libsync.a $(EXAMPLES) $(B)/bench

$(B):
	@mkdir -p $(B)

# The library is built from the committed amalgamation, as users build it.
$(B)/sync.o: sync.c sync.h | $(B)
	$(CC) $(WARN) $(CFLAGS) -c sync.c -o $@

$(B)/libsync.a: $(B)/sync.o
	rm -f $@ && ar rcs $@ $^

amalgamation:
	$(PYTHON) amalgamate.py

check-amalgamation:
	$(PYTHON) amalgamate.py --check

$(B)/quickstart: examples/quickstart.c sync.h $(B)/libsync.a
	$(CC) $(WARN) $(CFLAGS) -I. examples/quickstart.c $(B)/libsync.a $(LIBS) -o $@

$(B)/sync_%: examples/sync_%.c examples/demo_schema.h sync.h $(B)/libsync.a
	$(CC) $(WARN) $(CFLAGS) -I. -Iexamples $< $(B)/libsync.a $(LIBS) -o $@

# The quickstart, then the main job: a server and two devices on loopback.
example: $(EXAMPLES)
	cd $(B) && rm -f quickstart.db quickstart.db-lock && ./quickstart quickstart.db
	sh examples/demo.sh $(B)

# End to end over loopback TCP: the example server and devices.
TEST_EXTRA += tests/e2e.sh
test-build: $(EXAMPLES)

# 50 device processes syncing with one server for SOAK_SECONDS.
SOAK_SECONDS ?= 60
soak: $(B)/sync_server $(B)/sync_edge
	sh tests/soak.sh $(B) $(SOAK_SECONDS)

# The fleet-lifecycle property test (tests/test_lifecycle.c) with many
# more scenarios than `make test` runs; LIFECYCLE_SEED= picks the first.
LIFECYCLE_SCENARIOS ?= 50000
LIFECYCLE_SEED ?= 0x11fe0001
soak-lifecycle: $(B)/t-src/test_lifecycle
	cd $(B) && SYNC_LIFECYCLE_SCENARIOS=$(LIFECYCLE_SCENARIOS) \
	  SYNC_LIFECYCLE_SEED=$(LIFECYCLE_SEED) SYNC_LIFECYCLE_VERBOSE=1 \
	  ./t-src/test_lifecycle

# NO_SQLITE=1 builds the bench without its SQLite peer (those figures are
# skipped).  bench.cfg holds the choice, so changing it relinks the bench.
ifeq ($(NO_SQLITE),1)
BENCH_SQLITE := -DBENCH_NO_SQLITE
else
BENCH_SQLITE := -lsqlite3
endif

$(B)/bench.cfg: FORCE | $(B)
	@echo '$(BENCH_SQLITE)' | cmp -s - $@ || echo '$(BENCH_SQLITE)' > $@

$(B)/bench: $(BENCH_C) bench/*.h $(NET_H) sync.h $(B)/libsync.a $(B)/bench.cfg \
           $(wildcard tools/pgbridge/*)
	$(CC) -std=c11 -O2 -DNDEBUG $(CPPFLAGS_ALL) $(BENCH_C) $(B)/libsync.a \
	  $(BENCH_SQLITE) $(BENCH_PG) $(LIBS) -lm -o $@

bench: $(B)/bench
	$(B)/bench $(BENCH_ARGS)

# A PNG of bench runs' ratios against their targets, speed and bytes on
# separate panels, the spread over the runs drawn (needs Debian's
# python3-matplotlib): make plot BENCH_OUT="run1.out run2.out" PLOT=out.png
BENCH_OUT ?= $(B)/bench.out
PLOT ?= $(B)/bench.png
plot:
	/usr/bin/python3 bench/plot.py $(BENCH_OUT) $(PLOT)

# ---- tests -----------------------------------------------------------
$(B)/src/%.o: src/%.c $(SRC_H) sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) -c $< -o $@

$(B)/san/src/%.o: src/%.c $(SRC_H) sync.h
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(SANFLAGS) $(CPPFLAGS_ALL) -c $< -o $@

$(B)/san/sync.o: sync.c sync.h
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(SANFLAGS) -c sync.c -o $@

# test_session runs sessions over sockets with the helper's transport,
# compiled into it (#include "tools/net/tcp.c").
$(foreach d,t-src t-amal t-san,$(B)/$(d)/test_session): tools/net/tcp.c $(NET_H)

$(B)/t-src/%: tests/%.c $(TEST_H) $(SRC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $< $(SRC_OBJ) $(TESTLIBS) -o $@

$(B)/t-amal/%: tests/%.c $(TEST_H) $(B)/sync.o
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $< $(B)/sync.o $(TESTLIBS) -o $@

$(B)/t-san/%: tests/%.c $(TEST_H) $(B)/san/sync.o
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(SANFLAGS) $(CPPFLAGS_ALL) $< $(B)/san/sync.o $(TESTLIBS) -o $@

$(B)/t-san-src/%: tests/%.c $(TEST_H) $(SAN_SRC_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(SANFLAGS) $(CPPFLAGS_ALL) $< $(SAN_SRC_OBJ) $(TESTLIBS) -o $@

$(B)/single/sync_single.h: sync.h $(SRC_C) $(SRC_H) src/all.c amalgamate.py
	@mkdir -p $(dir $@)
	$(PYTHON) amalgamate.py --single-header $@

$(B)/single/single_header: tests/single_header.c $(B)/single/sync_single.h
	$(CC) $(WARN) $(CFLAGS) -I$(B)/single $< $(LIBS) -o $@

# The decoder-only build: src/all.c with -DSYNC_OMIT_ENCODER (and once
# more without zstd as well), -Werror, linked to a program that decodes
# the golden frames and checks the encoder is refused.
OMIT_ENC := $(B)/omit/encoder $(B)/omit/encoder-nozstd
OMIT_ENC_FLAGS_encoder := -DSYNC_OMIT_ENCODER
OMIT_ENC_FLAGS_encoder-nozstd := -DSYNC_OMIT_ENCODER -DSYNC_OMIT_ZSTD
OMIT_ENC_LIBS_encoder := $(LIBS)
OMIT_ENC_LIBS_encoder-nozstd := -llmdb -lxxhash

$(B)/omit/%: tests/omit_encoder.c src/all.c $(SRC_C) $(SRC_H) sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $(OMIT_ENC_FLAGS_$*) \
	  tests/omit_encoder.c src/all.c $(OMIT_ENC_LIBS_$*) -lm -o $@

TEST_EXTRA += $(OMIT_ENC)

.PHONY: omit-encoder
omit-encoder: $(OMIT_ENC)
	@for t in $(OMIT_ENC); do (cd $(B) && ../$$t) || exit 1; done

test-build: $(T_SRC) $(T_AMAL) $(T_SAN) $(B)/single/single_header $(TEST_EXTRA)

# Test programs run in two queues at once, each program after the other
# within its queue: the sanitizer builds (the slowest) and the public
# tests built from the amalgamation in $(B)-san-run beside build/;
# everything else in build/, where scratch databases land.  The second
# queue's output follows the first's, and the last line counts programs
# in the form CI reads.  In the second queue the property suites run
# fewer scenarios, from seeds of their own: the sanitizers are several
# times slower, and the amalgamation is the same code as src/ (make
# check-amalgamation); together with the plain run they cover more, and
# the two queues take about as long.
SAN_TEST_ENV := SYNC_FLEET_SCENARIOS=250 SYNC_FLEET_SEED=0x5a4e0001 \
                SYNC_LIFECYCLE_SCENARIOS=250 SYNC_LIFECYCLE_SEED=0x5a4e0002 \
                SYNC_TEST_SCENARIOS=350 SYNC_TEST_RELAY_SCENARIOS=100 \
                SYNC_TEST_GC_SCENARIOS=70 SYNC_TEST_SEED=0x5a4e0003
test: check-amalgamation
	@$(MAKE) --no-print-directory test-build
	@rm -rf $(B)-san-run; \
	env $(SAN_TEST_ENV) sh tests/run.sh $(B)-san-run $(T_SAN) $(T_AMAL) \
	  > $(B)/test-san.log 2>&1 & san=$$!; \
	sh tests/run.sh $(B) $(T_SRC) $(B)/single/single_header \
	  $(TEST_EXTRA) | tee $(B)/test-main.log; \
	wait $$san; cat $(B)/test-san.log; rm -rf $(B)-san-run; \
	pass=0; fail=0; failed=""; \
	for log in $(B)/test-main.log $(B)/test-san.log; do \
	  set -- $$(tail -n 1 $$log); \
	  [ "$$1" = RESULT ] || { echo "test: $$log did not finish"; exit 1; }; \
	  pass=$$((pass + $$2)); fail=$$((fail + $$3)); shift 3; \
	  failed="$$failed $$*"; \
	done; \
	[ $$fail -eq 0 ] || echo "failed:$$failed"; \
	echo "$$pass passed, $$fail failed"; \
	[ $$fail -eq 0 ]

# ---- install ---------------------------------------------------------
# install and uninstall: mk/install.mk (library, shared library, sync.pc,
# manual pages, bash completion) and mk/synctl.mk (synctl).

# ---- dependencies (Debian) -------------------------------------------
# Two groups: what a user needs to build the library and synctl, and
# what the tests, the bench and lint need on top (man-db: tests/install.sh
# reads the installed manual pages with man; python3-prometheus-client:
# tests/server_ops.sh reads the server's metrics with a real Prometheus
# parser; mosquitto: tests/test_mqtt.c and the bench start their own
# broker; postgresql: tests/pgbridge.c and the bench's pg workload start
# a server of their own; openssl: the TLS tests make throwaway
# certificates).  For users: libssl-dev and libmbedtls-dev for TLS
# (synctl, examples/tls_edge), libjansson-dev for synctl's JSON,
# libmosquitto-dev for MQTT (synctl, examples/mqtt_edge), libpq-dev for
# synctl pg-bridge.  DEPS=user installs the first group alone; users
# then build with `make NO_SQLITE=1` (the bench links SQLite by default)
# or `make build/libsync.a build/synctl`.
DEB_USER_PKGS := build-essential python3 pkg-config liblmdb-dev libzstd-dev \
                 libxxhash-dev libssl-dev libmbedtls-dev libjansson-dev \
                 libmosquitto-dev libpq-dev
DEB_TEST_PKGS := libcmocka-dev libsqlite3-dev clang-14 libclang-rt-14-dev \
                 valgrind cppcheck clang-tidy man-db python3-prometheus-client \
                 openssl mosquitto postgresql
DEPS ?= all
DEB_PKGS := $(DEB_USER_PKGS) $(if $(filter user,$(DEPS)),,$(DEB_TEST_PKGS))
deps:
	@echo "deps: to build the library and synctl (users): $(DEB_USER_PKGS)"
	@echo "deps: for the tests, the bench and lint (developers): $(DEB_TEST_PKGS)"
	@echo "deps: installing $(if $(filter user,$(DEPS)),the first group (DEPS=user),both groups (DEPS=user: the first alone))"
	@SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get update && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $(DEB_PKGS)

clean:
	rm -rf $(B)
