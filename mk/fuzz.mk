# mk/fuzz.mk - fuzz targets for the frame decoder and for decode + apply
# (docs/FUZZING.md).
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="decode apply"]
#                                 build the libFuzzer targets (clang-14,
#                                 ASan+UBSan) against src/ and run each for
#                                 FUZZ_SECONDS; new inputs go to
#                                 build/fuzz/new-*, crashes to
#                                 build/fuzz/crashes-*
#   make fuzz-merge               add what the runs found that covers new
#                                 edges (libFuzzer -merge=1, counters off
#                                 to keep it small) to the committed
#                                 corpus in tests/fuzz/corpus/
#   make fuzz-seeds               rewrite the generated seeds (g*) of the
#                                 committed corpus with gen_corpus
#
# `make test` replays both corpora through the targets without libFuzzer,
# built with $(CC) and with clang-14 under ASan+UBSan (TEST_EXTRA).

FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
FZ           := $(B)/fuzz
FUZZ_TARGETS ?= decode apply session
FZ_TARGETS   := $(FUZZ_TARGETS)
FZ_H         := $(wildcard tests/fuzz/*.h) sync.h
FZ_LIBFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -O1 -g
FZ_OBJ       := $(patsubst src/%.c,$(FZ)/obj/%.o,$(SRC_C))
FZ_LIBS      := $(LIBS)

.PHONY: fuzz fuzz-build fuzz-merge fuzz-seeds
.SECONDARY: $(FZ_OBJ)

$(FZ)/obj/%.o: src/%.c $(SRC_H) sync.h
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(FZ_LIBFLAGS) -fsanitize=fuzzer-no-link $(CPPFLAGS_ALL) -c $< -o $@

$(FZ)/fuzz_%: tests/fuzz/fuzz_%.c $(FZ_H) $(FZ_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(FZ_LIBFLAGS) -fsanitize=fuzzer $(CPPFLAGS_ALL) $< $(FZ_OBJ) $(FZ_LIBS) -o $@

# Replay drivers: plain main() over the committed corpus.
$(FZ)/replay-%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FZ_H) $(B)/sync.o
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) '-DFZ_CORPUS="../tests/fuzz/corpus/$*"' \
	  tests/fuzz/replay.c $< $(B)/sync.o $(LIBS) -o $@

$(FZ)/replay-san-%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FZ_H) $(B)/san/sync.o
	@mkdir -p $(dir $@)
	$(CLANG) $(WARN) $(SANFLAGS) $(CPPFLAGS_ALL) '-DFZ_CORPUS="../tests/fuzz/corpus/$*"' \
	  tests/fuzz/replay.c $< $(B)/san/sync.o $(LIBS) -o $@

$(FZ)/gen_corpus: tests/fuzz/gen_corpus.c $(FZ_H) $(B)/sync.o
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $< $(B)/sync.o $(LIBS) -o $@

TEST_EXTRA += $(foreach t,$(FZ_TARGETS),$(FZ)/replay-$(t) $(FZ)/replay-san-$(t))

fuzz-build: $(foreach t,$(FZ_TARGETS),$(FZ)/fuzz_$(t))

# Each target runs in one process (the same as -jobs=1) for FUZZ_SECONDS.
# -len_control=0: the seeds are real frames of up to a few KiB, and
# libFuzzer would otherwise cut mutations of them short for a long while.
# The summary reads libFuzzer's final stats; the exit status is non-zero
# when any target crashed.
fuzz: fuzz-build
	@status=0; summary=""; \
	for t in $(FZ_TARGETS); do \
	  mkdir -p $(FZ)/new-$$t $(FZ)/crashes-$$t; touch $(FZ)/.start-$$t; \
	  echo "=== fuzz_$$t for $(FUZZ_SECONDS) s (log: $(FZ)/fuzz_$$t.log)"; \
	  $(FZ)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=2048 -len_control=0 -print_final_stats=1 \
	    -artifact_prefix=$(FZ)/crashes-$$t/ $(FUZZ_FLAGS) \
	    $(FZ)/new-$$t tests/fuzz/corpus/$$t > $(FZ)/fuzz_$$t.log 2>&1; \
	  rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FZ)/fuzz_$$t.log | tail -1); \
	  crashes=$$(find $(FZ)/crashes-$$t -type f -newer $(FZ)/.start-$$t | wc -l); \
	  cov=$$(grep -o 'cov: [0-9]*' $(FZ)/fuzz_$$t.log | tail -1); \
	  line="fuzz_$$t: $${execs:-?} executions, $$cov, exit $$rc, $$crashes new crash file(s) in $(FZ)/crashes-$$t"; \
	  echo "$$line"; summary="$$summary$$line\n"; \
	  if [ $$rc -ne 0 ] || [ $$crashes -ne 0 ]; then status=1; \
	    grep -m1 -A12 '==ERROR\|^fuzz: \|deadly signal' $(FZ)/fuzz_$$t.log; fi; \
	done; \
	echo "=== summary"; printf "$$summary"; \
	[ $$status -eq 0 ] && echo "no crashes" || echo "CRASHES FOUND"; \
	exit $$status

fuzz-merge: fuzz-build
	@for t in $(FZ_TARGETS); do \
	  mkdir -p $(FZ)/new-$$t; \
	  before=$$(ls tests/fuzz/corpus/$$t | wc -l); \
	  $(FZ)/fuzz_$$t -merge=1 -use_counters=0 tests/fuzz/corpus/$$t $(FZ)/new-$$t \
	    > $(FZ)/merge_$$t.log 2>&1 || { cat $(FZ)/merge_$$t.log; exit 1; }; \
	  echo "fuzz_$$t: corpus $$before -> $$(ls tests/fuzz/corpus/$$t | wc -l) files"; \
	done

fuzz-seeds: $(FZ)/gen_corpus
	@mkdir -p tests/fuzz/corpus/decode tests/fuzz/corpus/apply
	rm -f tests/fuzz/corpus/decode/g* tests/fuzz/corpus/decode/dict-frame \
	  tests/fuzz/corpus/apply/g*
	$(FZ)/gen_corpus tests/fuzz/corpus/decode tests/fuzz/corpus/apply

# Seeds of the session target: real conversations, recorded.
$(FZ)/gen_session: tests/fuzz/gen_session.c $(FZ_H) $(B)/sync.o
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $< $(B)/sync.o $(LIBS) -o $@
