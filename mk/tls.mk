# TLS (tools/net/tls.c, OpenSSL) for synctl and the bench, the mbedTLS
# device example (examples/tls_edge.c) and the TLS tests.

TLS_LIBS := -lssl -lcrypto
MBEDTLS_LIBS := -lmbedtls -lmbedx509 -lmbedcrypto
