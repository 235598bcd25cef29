# config.mk - the compile-time option sets of sync.h, each built from
# sync.c as its own configuration and tested in make test.
#   default   no options
#   nozstd    SYNC_OMIT_ZSTD, linked without libzstd
#   tiny      the smallest devices: no zstd, no repair, 4 tables of 8
#             columns, 4 KiB values, 8 MiB initial map, no default sleep
#             or randomness, no group commit
CONFIGS := default nozstd tiny
CFG_default :=
CFG_nozstd := -DSYNC_OMIT_ZSTD
CFG_tiny := -DSYNC_OMIT_ZSTD -DSYNC_MAX_TABLES=4 -DSYNC_MAX_COLUMNS=8 \
            -DSYNC_MAX_VALUE=4096 '-DSYNC_DEFAULT_MAPSIZE=((size_t)8<<20)' \
            -DSYNC_OMIT_DEFAULT_SLEEP -DSYNC_OMIT_DEFAULT_RANDOM \
            -DSYNC_OMIT_REPAIR -DSYNC_OMIT_GROUP_COMMIT
CFGLIBS_default := $(LIBS)
CFGLIBS_nozstd := -llmdb -lxxhash
CFGLIBS_tiny := -llmdb -lxxhash

$(B)/cfg/%: tests/config_test.c sync.c sync.h $(TEST_H)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) $(CFG_$*) tests/config_test.c \
	  sync.c $(CFGLIBS_$*) -lcmocka -lpthread -o $@

TEST_EXTRA += $(patsubst %,$(B)/cfg/%,$(CONFIGS))
