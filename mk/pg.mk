# The PostgreSQL bridge (tools/pgbridge/, docs/PGBRIDGE.md): built with
# libpq into synctl (`synctl pg-bridge`, mk/synctl.mk links PG_OBJ and
# PG_LIBS), its test against a real PostgreSQL 15 that the test starts
# itself, and the bench workload `pg` (bench/run_pg.c, linked with libpq
# when its header is there; otherwise the workload prints a skip line).

PG_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
PG_LIBS   := -lpq -lpthread
PG_OBJ    := $(B)/pg-obj/pgbridge.o
PG_H      := tools/pgbridge/pgbridge.h

$(B)/pg-obj/pgbridge.o: tools/pgbridge/pgbridge.c $(PG_H) sync.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -I. $(PG_CFLAGS) -c $< -o $@

# The test (tests/pgbridge.c; not a tests/test_*.c, which would also run
# against the amalgamation and under the sanitizers: three PostgreSQL
# servers where one says it).  It fails, not skips, without PostgreSQL.
$(B)/pg/test_pgbridge: tests/pgbridge.c $(PG_H) $(PG_OBJ) $(TEST_H) $(SRC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $(PG_CFLAGS) $< $(PG_OBJ) \
	  $(SRC_OBJ) $(TESTLIBS) $(PG_LIBS) -o $@

TEST_EXTRA += $(B)/pg/test_pgbridge

# The bench's pg workload, when libpq's header is installed.
BENCH_PG := $(if $(wildcard /usr/include/postgresql/libpq-fe.h),\
  -DBENCH_HAVE_PG $(PG_CFLAGS) tools/pgbridge/pgbridge.c $(PG_LIBS))

# The README's PostgreSQL walkthrough, extracted and run as written
# (tests/readme_pg.sh; it starts a PostgreSQL of its own, like the test).
TEST_EXTRA += tests/readme_pg.sh
