# reliability.mk - crash, power-loss, sanitizer, valgrind and lint targets
# (docs/RELIABILITY.md says what each does and what it measured).
#
#   make crash      kill -9 harness and power-loss simulation, long runs
#   make tsan       concurrency tests under ThreadSanitizer (clang-14)
#   make valgrind   memcheck on a representative set of the test programs
#   make lint       cppcheck and clang-tidy on src/ (config: .clang-tidy,
#                   tests/lint/cppcheck.supp)
#
# `make test` runs short versions of the crash harness, the power-loss
# simulation and the TSan build through TEST_EXTRA.

.PHONY: crash tsan valgrind lint

CRASH_H := tests/crash/crash_util.h tests/testutil.h

# The harnesses are built without sanitizers: they fork, kill and preload
# an interposer, none of which mixes well with ASan.
$(B)/crash: tests/crash/crash.c $(CRASH_H) $(B)/sync.o
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $< $(B)/sync.o $(TESTLIBS) -o $@

# The power-loss recorder is preloaded into the workload, which is the
# powerloss binary itself started again with --work.
$(B)/libplrec.so: tests/crash/plrec.c | $(B)
	$(CC) $(WARN) $(CFLAGS) -fPIC -shared $< -ldl -o $@

$(B)/powerloss: tests/crash/powerloss.c $(CRASH_H) $(B)/sync.o $(B)/libplrec.so
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $< $(B)/sync.o $(TESTLIBS) -ldl -o $@

TEST_EXTRA += $(B)/crash $(B)/powerloss

crash: $(B)/crash $(B)/powerloss
	cd $(B) && CRASH_CYCLES=$${CRASH_CYCLES:-3000} ./crash
	cd $(B) && PL_COMMITS=$${PL_COMMITS:-300} PL_TRIALS=$${PL_TRIALS:-8} ./powerloss

# test_mvcc.c shares the crash harness's workload header.
$(B)/t-src/test_mvcc $(B)/t-amal/test_mvcc $(B)/t-san/test_mvcc: \
  tests/crash/crash_util.h

# ---- ThreadSanitizer -------------------------------------------------
# The library (sync.c) and the threaded tests built with clang-14
# -fsanitize=thread.  LMDB is not instrumented; TSan still sees its
# pthread locks.
TSANFLAGS := -fsanitize=thread -fno-omit-frame-pointer -O1 -g
TSAN_TESTS := test_mvcc test_threads test_group # also named in tests/tsan_run.sh
T_TSAN := $(patsubst %,$(B)/tsan/%,$(TSAN_TESTS))

$(B)/tsan/sync.o: sync.c sync.h
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(TSANFLAGS) -c sync.c -o $@

$(B)/tsan/%: tests/%.c $(TEST_H) tests/crash/crash_util.h $(B)/tsan/sync.o
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(TSANFLAGS) $(CPPFLAGS_ALL) $< $(B)/tsan/sync.o $(TESTLIBS) -o $@

# tests/tsan_run.sh runs them (and copes with kernels whose mmap
# randomisation clang-14's TSan cannot live with).  About 5 s on 2 cores:
# part of make test.
$(B)/tsan-check: tests/tsan_run.sh $(T_TSAN)
	cp tests/tsan_run.sh $@ && chmod +x $@

TEST_EXTRA += $(B)/tsan-check

tsan: $(B)/tsan-check
	cd $(B) && ./tsan-check

# ---- valgrind ---------------------------------------------------------
# memcheck on the plain (unsanitized) src/ builds of a representative set:
# env/open/close, rows, change log, merge, schema, allocation failures,
# corruption, full map/file, threads.  test_converge and test_model are
# left out: they take minutes under valgrind and exercise the same code.
VALGRIND_TESTS := test_env test_rows test_changes test_merge test_schema \
                  test_alloc test_corrupt test_full test_threads \
                  test_internal_codec test_internal_log
VALGRIND := valgrind -q --leak-check=full --error-exitcode=1 \
            --suppressions=$(CURDIR)/tests/lint/valgrind.supp

valgrind: $(patsubst %,$(B)/t-src/%,$(VALGRIND_TESTS))
	@fail=0; for t in $(VALGRIND_TESTS); do echo "=== valgrind $$t"; \
	  (cd $(B) && $(VALGRIND) ./t-src/$$t) || fail=$$((fail+1)); \
	done; echo "valgrind: $$fail of $(words $(VALGRIND_TESTS)) programs failed"; \
	[ $$fail -eq 0 ]

# ---- lint -------------------------------------------------------------
# src/all.c only includes the modules (the amalgamation list): skipped.
LINT_SRC := $(filter-out src/all.c,$(wildcard src/*.c))
lint:
	cppcheck --std=c11 --enable=warning,style,performance,portability \
	  --inline-suppr --suppressions-list=tests/lint/cppcheck.supp \
	  -D_POSIX_C_SOURCE=200809L -I. -Isrc --quiet --error-exitcode=1 \
	  $(LINT_SRC)
	clang-tidy-14 --quiet $(LINT_SRC) -- -std=c11 -D_POSIX_C_SOURCE=200809L \
	  -I. -Isrc
