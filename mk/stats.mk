# The stats unit test (tests/test_stats.c) needs libm.
TESTLIBS += -lm
