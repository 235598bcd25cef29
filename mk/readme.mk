# readme.mk - what the README shows a user, built and run by make test:
# the single header included after another header (tests/single_header.c
# with SYNC_TEST_INCLUDE_LATE: <stdio.h> comes first), -Werror.

$(B)/single/single_header_late: tests/single_header.c $(B)/single/sync_single.h
	$(CC) $(WARN) $(CFLAGS) -DSYNC_TEST_INCLUDE_LATE -I$(B)/single $< $(LIBS) -o $@

TEST_EXTRA += $(B)/single/single_header_late
