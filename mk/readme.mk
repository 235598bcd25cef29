# readme.mk - what the README shows a user, built and run by make test:
# its transport snippet, extracted between its markers and compiled as it
# stands (tests/readme_transport.c checks its error mapping), and the
# single header included after another header (tests/single_header.c
# with SYNC_TEST_INCLUDE_LATE: <stdio.h> comes first), both -Werror.

$(B)/readme/transport.inc: README.md
	@mkdir -p $(dir $@)
	sed -n '/<!-- transport-snippet begin -->/,/<!-- transport-snippet end -->/p' README.md | \
	  sed -e '1,2d' -e '$$d' | sed '$$d' > $@
	@[ -s $@ ] || { echo "README.md: no transport snippet between its markers"; rm -f $@; exit 1; }

$(B)/readme/readme_transport: tests/readme_transport.c $(B)/readme/transport.inc $(B)/sync.o
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) -I$(B)/readme $< $(B)/sync.o $(LIBS) -o $@

$(B)/single/single_header_late: tests/single_header.c $(B)/single/sync_single.h
	$(CC) $(WARN) $(CFLAGS) -DSYNC_TEST_INCLUDE_LATE -I$(B)/single $< $(LIBS) -o $@

TEST_EXTRA += $(B)/readme/readme_transport $(B)/single/single_header_late
