#!/bin/sh
# mqtt.sh - synctl over MQTT: a mosquitto of the test's own on a free
# loopback port (stopped at the end), 'synctl serve --mqtt' with a
# credentials file, two devices that sync through it to equal digests,
# a refused token, and the usage and connection errors.  Run from the
# build directory (tests/check.sh).
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

# A free port: bind port 0 and read what the kernel gave.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nset_tcp_nodelay true\n' \
  "$PORT" > mosquitto.conf
"$BIN" -c mosquitto.conf &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; [ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$D"' EXIT INT TERM
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 50 ] || break; sleep 0.1
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

kill $BROKER; wait $BROKER 2>/dev/null
status "with the broker gone, sync fails (1)" 1 "$S" sync a.db $URL/pump-a -q
has "cannot connect to broker 127.0.0.1:$PORT" && ok "and names the broker" ||
  bad "broker unreachable message"
finish
