# TLS (tools/net/tls.c, OpenSSL) for synctl and the bench, the mbedTLS
# device example (examples/tls_edge.c) and the TLS tests.

TLS_LIBS := -lssl -lcrypto
MBEDTLS_LIBS := -lmbedtls -lmbedx509 -lmbedcrypto

# The mbedTLS device (examples/, beside sync_edge): built with the
# examples and by make example; tests/tls.sh runs it against synctl serve.
all: $(B)/tls_edge
example: $(B)/tls_edge
test-build: $(B)/tls_edge
$(B)/tls_edge: examples/tls_edge.c examples/demo_schema.h sync.h $(B)/libsync.a
	$(CC) $(WARN) $(CFLAGS) -I. -Iexamples $< $(B)/libsync.a $(LIBS) \
	  $(MBEDTLS_LIBS) -o $@

# Cross builds (mk/cross.mk) leave the mbedTLS device out: their
# sysroots carry the library's own dependencies only (tools/cross-deps.sh),
# and the generic example rule would link it without mbedTLS.
CROSS_EXAMPLES := $(filter-out %/tls_edge,$(CROSS_EXAMPLES))

# The TLS tests (openssl makes their throwaway certificates).
TEST_EXTRA += tests/tls.sh
test-build: $(B)/synctl

# The bench's TLS workload (bench/run_tls.c) runs the TLS layer and the
# poll loop: the native bench links them with OpenSSL; cross builds,
# which have no OpenSSL for the target, print a note in its place.
$(B)/bench: BENCH_SQLITE += -DBENCH_HAVE_TLS tools/net/tls.c tools/net/loop.c \
  $(TLS_LIBS)
$(B)/bench: tools/net/tls.c tools/net/tls.h tools/net/loop.c
