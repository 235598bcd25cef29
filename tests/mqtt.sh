#!/bin/sh
# mqtt.sh - synctl over MQTT: a mosquitto of the test's own on free
# loopback ports (stopped at the end), 'synctl serve --mqtt' with a
# credentials file, two devices that sync through it to equal digests,
# a refused token, and the usage and connection errors.  Then MQTT over
# TLS (mqtts://) with throwaway certificates made here by openssl: the
# broker's TLS listener and one that requires client certificates, a
# server and devices through them to equal digests, and a broker
# certificate from another CA or for another name, and a missing or
# foreign client certificate, refused clearly with nothing applied.
# Run from the build directory (tests/check.sh).
CHECK_NAME=mqtt
. "$(dirname "$0")/check.sh"

BIN=
for p in /usr/sbin/mosquitto /usr/local/sbin/mosquitto /usr/bin/mosquitto; do
  [ -x "$p" ] && BIN=$p && break
done
if [ -z "$BIN" ]; then
  bad "mosquitto is installed (Debian: mosquitto; make deps)"
  finish
  exit 1
fi

# Certificates (ca and cert: tests/check.sh): ca and otherca, the
# broker's for 127.0.0.1, a client's from ca and a rogue one from otherca.
{ ca ca && ca otherca && cert broker ca broker "DNS:localhost,IP:127.0.0.1" &&
  cert cli ca device "DNS:device" && cert rogue otherca device "DNS:device"; } > out 2>&1 ||
  bad "openssl made the certificates"

# Free ports: bind port 0 and read what the kernel gave.  The broker
# listens plainly on PORT, with TLS on TPORT, and with TLS and client
# certificates required on CPORT ('user': run as root, mosquitto would
# become a user who cannot read the keys here).
set -- $(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
PORT=$1 TPORT=$2 CPORT=$3
tls_listener() {
  printf 'listener %s 127.0.0.1\ncafile ca.crt\ncertfile broker.crt\nkeyfile broker.key\n' "$1"
}
{
  printf 'user %s\nper_listener_settings false\nallow_anonymous true\npersistence false\n' "$(id -un)"
  printf 'log_dest none\nset_tcp_nodelay true\nlistener %s 127.0.0.1\n' "$PORT"
  tls_listener $TPORT
  tls_listener $CPORT
  printf 'require_certificate true\n'
} > mosquitto.conf
"$BIN" -c mosquitto.conf 2> /dev/null &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; [ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$D"' EXIT INT TERM
for p in $PORT $TPORT $CPORT; do
  i=0
  until python3 -c "import socket; socket.create_connection(('127.0.0.1',$p),1)" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 50 ] || break; sleep 0.1
  done
done

for db in srv.db a.db b.db; do "$S" init $db --table r:text v:integer > /dev/null; done
"$S" put a.db r from-a v=1 > /dev/null
"$S" put b.db r from-b v=2 > /dev/null
printf 'tok-a read=* write=*\ntok-b read=* write=*\n' > creds

"$S" serve srv.db --mqtt 127.0.0.1:$PORT --topic plant/line4 \
  --credentials creds > serve.out 2>&1 &
SRV=$!
wait_for serve.out "topics plant/line4/+/up" && ok "serve --mqtt subscribes and says so" ||
  bad "serve --mqtt starts"

URL=mqtt://127.0.0.1:$PORT/plant/line4
check "a device syncs through the broker" "$S" sync a.db $URL/pump-a --token tok-a -q
has "received 0 rows" && has "sent 1 row" && ok "and sends its row" || bad "a's row sent"
check "a second device syncs" "$S" sync b.db $URL/pump-b --token tok-b -q
has "received 1 row" && ok "and receives the first one's row" || bad "b receives a's row"
check "the first syncs again" "$S" sync a.db $URL/pump-a --token tok-a -q
da=$("$S" digest a.db); db=$("$S" digest b.db); ds=$("$S" digest srv.db)
[ "$da" = "$ds" ] && [ "$db" = "$ds" ] && ok "all three digests equal ($ds)" ||
  { echo "a $da, b $db, server $ds" > out; bad "digests equal"; }
wait_for serve.out "device pump-b: received 1 rows" && ok "the server names each device" ||
  { cp serve.out out; bad "serve names the device"; }

status "a token the server does not know is refused (1)" 1 \
  "$S" sync a.db $URL/pump-a --token nope -q
has "refused the credentials" && ok "and says so" || bad "refused token message"

status "an mqtt URL without a device is a usage error (2)" 2 \
  "$S" sync a.db mqtt://127.0.0.1:$PORT/onlyprefix
has "give both PREFIX and DEVICE" && ok "and says what is missing" || bad "URL message"
status "a wildcard in the topic is a usage error (2)" 2 \
  "$S" sync a.db "mqtt://127.0.0.1:$PORT/plant/+/x"
has "wildcard" && ok "and names it" || bad "wildcard message"
status "repair over MQTT is a usage error (2)" 2 "$S" repair a.db $URL/pump-a
status "serve --mqtt with a TCP address too is a usage error (2)" 2 \
  "$S" serve srv.db 127.0.0.1:0 --mqtt 127.0.0.1:$PORT

kill $SRV; wait $SRV 2>/dev/null; SRV=
has_stop() { grep -q "serve: stopped; 4 sessions" serve.out; }
has_stop && ok "serve stops on SIGTERM and counts its sessions" ||
  { cp serve.out out; bad "serve stops"; }

# --- MQTT over TLS ----------------------------------------------------
for db in tsrv.db ta.db tb.db; do "$S" init $db --table r:text v:integer > /dev/null; done
"$S" put ta.db r from-ta v=1 > /dev/null
"$S" put tb.db r from-tb v=2 > /dev/null
# The server shows its client certificate at the listener that requires
# one, the topic prefix in the URL.
"$S" serve tsrv.db --mqtt mqtts://127.0.0.1:$CPORT/plant/tls --tls-ca ca.crt \
  --tls-cert cli.crt --tls-key cli.key > tserve.out 2>&1 &
SRV=$!
wait_for tserve.out "over MQTT over TLS at 127.0.0.1:$CPORT, topics plant/tls/+/up" &&
  ok "serve --mqtt mqtts:// subscribes over TLS and says so" ||
  { cp tserve.out out; bad "serve --mqtt mqtts:// starts"; }
TURL=mqtts://127.0.0.1:$TPORT/plant/tls
CURL=mqtts://127.0.0.1:$CPORT/plant/tls
check "a device syncs over TLS (the broker's certificate checked)" \
  "$S" sync ta.db $TURL/ta --tls-ca ca.crt -q
has "sent 1 row" && ok "and sends its row" || bad "ta's row sent"
check "a device with a client certificate syncs where one is required" \
  "$S" sync tb.db $CURL/tb --tls-ca ca.crt --tls-cert cli.crt --tls-key cli.key -q
has "received 1 row" && ok "and receives the first one's row" || bad "tb receives ta's row"
check "localhost is a name the broker's certificate carries" \
  "$S" sync ta.db mqtts://localhost:$TPORT/plant/tls/ta --tls-ca ca.crt -q
dta=$("$S" digest ta.db); dtb=$("$S" digest tb.db); dts=$("$S" digest tsrv.db)
[ "$dta" = "$dts" ] && [ "$dtb" = "$dts" ] && ok "over TLS, all three digests equal ($dts)" ||
  { echo "ta $dta, tb $dtb, server $dts" > out; bad "TLS digests equal"; }

"$S" put tb.db r late v=3 > /dev/null
before_dev=$("$S" digest tb.db)
before_srv=$("$S" digest tsrv.db)
unchanged() {
  [ "$("$S" digest tb.db)" = "$before_dev" ] && [ "$("$S" digest tsrv.db)" = "$before_srv" ]
}
status "a broker certificate from another CA is refused (1)" 1 \
  "$S" sync tb.db $TURL/tb --tls-ca otherca.crt
has "TLS with broker 127.0.0.1:$TPORT failed: certificate verify failed: .*; nothing was exchanged" &&
  ok "... saying why" || bad "other CA message"
check "... with nothing applied on either side" unchanged
status "a broker certificate for another name is refused (1)" 1 \
  "$S" sync tb.db $TURL/tb --tls-ca ca.crt --tls-name broker.example.org
has "certificate verify failed: hostname mismatch" && ok "... saying why" ||
  bad "hostname message"
check "... with nothing applied on either side" unchanged
status "no client certificate where one is required is refused (1)" 1 \
  "$S" sync tb.db $CURL/tb --tls-ca ca.crt
# (the broker's alert, or a reset that overtook it)
has "the broker refused the connection: .*certificate required; nothing was exchanged\|it may require a client certificate (see its log)" &&
  ok "... clearly" || bad "no client certificate message"
status "a client certificate from another CA is refused (1)" 1 \
  "$S" sync tb.db $CURL/tb --tls-ca ca.crt --tls-cert rogue.crt --tls-key rogue.key
has "the broker refused the connection: .*unknown ca; nothing was exchanged\|it may not accept this client's certificate" &&
  ok "... clearly" || bad "rogue client certificate message"
check "... with nothing applied on either side" unchanged
status "mqtts:// at a plain listener fails (1)" 1 \
  "$S" sync tb.db mqtts://127.0.0.1:$PORT/plant/tls/tb --tls-ca ca.crt
has "during the TLS handshake" && ok "... saying where" || bad "plain listener message"
check "... with nothing applied on either side" unchanged
status "mqtts:// without --tls-ca is a usage error (2)" 2 "$S" sync tb.db $TURL/tb
status "--tls-ca with mqtt:// is a usage error (2)" 2 \
  "$S" sync tb.db mqtt://127.0.0.1:$PORT/plant/tls/tb --tls-ca ca.crt
status "serve --mqtt mqtts:// with another CA fails (1)" 1 \
  "$S" serve tsrv.db --mqtt mqtts://127.0.0.1:$TPORT --tls-ca otherca.crt
has "certificate verify failed" && ok "... saying why" || bad "serve other CA message"
status "serve --mqtt with the prefix twice is a usage error (2)" 2 \
  "$S" serve tsrv.db --mqtt mqtts://127.0.0.1:$TPORT/a --topic b --tls-ca ca.crt
check "the good certificates still sync" \
  "$S" sync tb.db $CURL/tb --tls-ca ca.crt --tls-cert cli.crt --tls-key cli.key -q
[ "$("$S" digest tb.db)" = "$("$S" digest tsrv.db)" ] && ok "... to equal digests" ||
  bad "digests after the refusals"
kill $SRV; wait $SRV 2>/dev/null; SRV=

# The device example over TLS (examples/mqtt_edge.c), against a server of
# its schema: a refused CA first (which leaves a database to take the
# schema from), then two rounds with a client certificate.
E="$B/mqtt_edge"
status "the example device refuses a broker certificate from another CA (1)" 1 \
  "$E" e0.db $TURL/e0 --ca otherca.crt --count 1
has "certificate verify failed" && ok "... saying why" || bad "example's refusal"
"$S" schema e0.db > demo.txt
"$S" init esrv.db --schema demo.txt > /dev/null
"$S" serve esrv.db --mqtt mqtts://127.0.0.1:$TPORT/edge --tls-ca ca.crt > eserve.out 2>&1 &
SRV=$!
wait_for eserve.out "topics edge/+/up" || { cp eserve.out out; bad "serve for the example"; }
check "the example device syncs over TLS with a client certificate" \
  "$E" e1.db mqtts://127.0.0.1:$CPORT/edge/e1 --ca ca.crt --cert cli.crt \
  --key cli.key --count 2 --interval-ms 0
has "digest $("$S" digest esrv.db)" && ok "... and ends with the server's digest" ||
  bad "example's digest"
kill $SRV; wait $SRV 2>/dev/null; SRV=

kill $BROKER; wait $BROKER 2>/dev/null
status "with the broker gone, sync fails (1)" 1 "$S" sync a.db $URL/pump-a -q
has "cannot connect to broker 127.0.0.1:$PORT" && ok "and names the broker" ||
  bad "broker unreachable message"
finish
