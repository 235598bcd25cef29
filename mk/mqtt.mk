# MQTT: sessions through a broker (tools/net/mqtt.c, libmosquitto), for
# synctl (serve --mqtt, sync mqtt://...), the device example, the bench
# and the tests (tests/test_mqtt.c, tests/mqtt.sh), which start their own
# mosquitto on loopback.

MQTT_LIBS := -lmosquitto
SYNCTL_LIBS += $(MQTT_LIBS)

# mqtts:// runs through tools/net/tls.c's OpenSSL context (which brings
# tcp.c along): whatever links the adapter links them too.  (Literal
# libraries: mk/tls.mk, which names them, is read after this file.)
MQTT_NET := tools/net/mqtt.c tools/net/tls.c tools/net/tcp.c
MQTT_NET_H := tools/net/mqtt.h tools/net/tls.h $(NET_H)
MQTT_TLS_LIBS := -lssl -lcrypto

# The test compiles the adapter in (#include "tools/net/mqtt.c") and
# links the TLS layer, in the three builds every public test gets.
MQTT_T := $(foreach d,t-src t-amal t-san,$(B)/$(d)/test_mqtt)
$(MQTT_T): $(MQTT_NET) $(MQTT_NET_H)
$(MQTT_T): TESTLIBS += tools/net/tls.c tools/net/tcp.c $(MQTT_TLS_LIBS) \
  $(MQTT_LIBS)

# synctl over MQTT (serve --mqtt, sync mqtt://...), with its own broker.
TEST_EXTRA += tests/mqtt.sh

# The bench's MQTT run (bench/run_mqtt.c); the native bench links the
# TLS layer already (mk/tls.mk).
BENCH_C += tools/net/mqtt.c
$(B)/bench: tools/net/mqtt.h
$(B)/bench: LIBS += $(MQTT_LIBS)

# A device that writes a reading, syncs over MQTT (or MQTT over TLS) and
# sleeps.
$(B)/mqtt_edge: examples/mqtt_edge.c examples/demo_schema.h $(MQTT_NET) \
                $(MQTT_NET_H) sync.h $(B)/libsync.a
	$(CC) $(WARN) $(CFLAGS) -I. -Iexamples examples/mqtt_edge.c \
	  $(MQTT_NET) $(B)/libsync.a $(LIBS) $(MQTT_LIBS) $(MQTT_TLS_LIBS) -o $@

# Cross builds (mk/cross.mk) link statically, and Debian has no static
# libmosquitto: they leave MQTT out (the test, the example, and the
# bench's workload, which then says it was not built in).
CROSS_TESTS := $(filter-out %/test_mqtt,$(CROSS_TESTS))
CROSS_EXAMPLES := $(filter-out %/mqtt_edge,$(CROSS_EXAMPLES))
ifneq ($(CB),)
$(CB)/bench: BENCH_C := $(filter-out tools/net/mqtt.c,$(BENCH_C))
$(CB)/bench: CROSS_BENCH_SQLITE += -DBENCH_NO_MQTT
endif
