#!/bin/sh
# e2e.sh - end to end over loopback TCP between separate processes: the
# example server (poll, many devices at once, a credentials file) and
# edge devices; a device with a bad token, a client that sends garbage
# and vanishes, a device killed mid-session and resumed, tiny messages;
# a write check, a device's share (left by table and by value) and a
# rolling schema upgrade.
# Every check prints one line; the last line counts them.
# Run from the build directory (make test does).
set -u
B=$(pwd)
D=$(mktemp -d "${TMPDIR:-/tmp}/sync-e2e.XXXXXX")
SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$D"' EXIT INT TERM
pass=0
fail=0
check() { # check NAME COMMAND...
  name=$1; shift
  if "$@" > "$D/out" 2>&1; then pass=$((pass + 1)); echo "ok: $name"
  else fail=$((fail + 1)); echo "FAILED: $name"; sed 's/^/  | /' "$D/out"; fi
}
digest() { sed -n 's/.*digest //p' "$1" | tail -n 1; }

cat > "$D/creds" <<CREDS
# token    rights
dev-token  read=readings,settings write=readings
admin      read=* write=* relay
CREDS
# serve NAME CREDS: start the example server on a free loopback port with
# database NAME.db and log NAME.log; sets SRV (its pid) and ADDR.
serve() {
  rm -f "$D/$1.port"
  "$B/sync_server" "$D/$1.db" 127.0.0.1:0 --credentials "$2" \
    --port-file "$D/$1.port" > "$D/$1.log" 2>&1 &
  SRV=$!
  i=0
  while [ ! -s "$D/$1.port" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  ADDR=127.0.0.1:$(cat "$D/$1.port")
}
serve server "$D/creds"
A=$ADDR

# Three devices at once, then once more each: all hold every reading.
for n in 1 2 3; do
  "$B/sync_edge" "$D/d$n.db" "$A" --name d$n --token dev-token --write 400 \
    > "$D/first$n" 2>&1 &
done
wait_all() { for p in $(jobs -p); do [ "$p" = "$SRV" ] || wait "$p"; done; }
wait_all
for n in 1 2 3; do
  "$B/sync_edge" "$D/d$n.db" "$A" --name d$n --token dev-token > "$D/second$n" 2>&1
done
for n in 1 2 3; do
  "$B/sync_edge" "$D/d$n.db" "$A" --name d$n --token dev-token > "$D/third$n" 2>&1
done
check "three concurrent devices converge" sh -c \
  "[ \"\$(digest $D/third1)\" = \"\$(digest $D/third2)\" ] && [ \"\$(digest $D/third2)\" = \"\$(digest $D/third3)\" ] && grep -q '1200 readings' $D/third1" 
check "a bad token is refused with a clear error" sh -c \
  "! $B/sync_edge $D/bad.db $A --name bad --token nope --write 5 > $D/bad.out 2>&1 && grep -q 'refused by the rights' $D/bad.out"

# Garbage from a client that then vanishes: the server goes on.
check "garbage then a vanished client" python3 -c "
import socket, os
s = socket.create_connection(('127.0.0.1', $(cat "$D/server.port")))
s.sendall(os.urandom(3000))
s.close()
s = socket.create_connection(('127.0.0.1', $(cat "$D/server.port")))
s.sendall(bytes([1, 200, 1]))  # half a HELLO
s.close()
"
check "the server still serves" "$B/sync_edge" "$D/d1.db" "$A" --name d1 --token dev-token --write 3

# A device killed in the middle of a large push, then resumed.
"$B/sync_edge" "$D/big.db" "$A" --name big --token dev-token --write 60000 --mode pull > /dev/null 2>&1
"$B/sync_edge" "$D/big.db" "$A" --name big --token dev-token --quiet &
K=$!
sleep 0.3
kill -9 $K 2>/dev/null
wait $K 2>/dev/null
check "a killed device resumes and its rows all arrive" sh -c \
  "$B/sync_edge $D/big.db $A --name big --token dev-token > $D/big1 && $B/sync_edge $D/d2.db $A --name d2 --token dev-token > $D/d2f && [ \"\$(digest $D/big1)\" = \"\$(digest $D/d2f)\" ] || { $B/sync_edge $D/big.db $A --name big --token dev-token > $D/big1; [ \"\$(digest $D/big1)\" = \"\$(digest $D/d2f)\" ]; }"
check "256-byte messages" sh -c \
  "$B/sync_edge $D/tiny.db $A --name tiny --token dev-token --write 50 --max-message 256 > $D/tiny1 && $B/sync_edge $D/tiny.db $A --name tiny --token dev-token --max-message 256 > $D/tiny2 && grep -q 'readings, digest' $D/tiny2"
check "a dry run changes nothing" sh -c \
  "$B/sync_edge $D/dry.db $A --name dry --token dev-token --write 10 --mode push --dry-run > $D/dry1 && grep -q 'would insert 0 and update 0 here, insert 10' $D/dry1 && $B/sync_edge $D/dry.db $A --name dry --token dev-token --mode push > $D/dry2 && grep -q 'sent 10 rows' $D/dry2"

kill -TERM $SRV
wait $SRV
SRV=
check "the server logged refused and vanished sessions" sh -c \
  "grep -q 'credential was refused' $D/server.log && grep -q 'session ended' $D/server.log"
# Rollouts (issue 15) through the example server: a write check that
# answers the device, a device's share (a row filter and its table
# selection), and a device with a newer schema relayed by an old server.
cat > "$D/creds2" <<CREDS
tok-k  read=* write=readings name=kitchen own
tok-g  read=* write=readings name=garage
tok-a  read=* write=* relay
CREDS
serve server2 "$D/creds2"
A2=$ADDR
"$B/sync_edge" "$D/adm.db" "$A2" --name admin --token tok-a --setting interval 60s > "$D/adm1" 2>&1
"$B/sync_edge" "$D/g.db" "$A2" --name garage --token tok-g --write 5 --schema 2 > "$D/g1" 2>&1
check "a refused write out of the device's share is answered, logged and dropped there" sh -c \
  "$B/sync_edge $D/k.db $A2 --name kitchen --token tok-k --write 3 --put garage-000001 50 --show garage-000001 > $D/k1 && grep -q 'refused by the server: garage-000001: reading garage-000001 belongs to another device (taken back)' $D/k1 && grep -q 'garage-000001: no such reading' $D/k1"
check "a value the write check refuses goes back to the server's row" sh -c \
  "$B/sync_edge $D/k.db $A2 --name kitchen --token tok-k --put kitchen-000002 150 --show kitchen-000002 > $D/k2 && grep -q 'battery 150 is not within 0..100' $D/k2 && grep -q 'kitchen-000002: 20.2 98 ok' $D/k2"
check "a device holds its share: its readings only, and no setting once it drops the table" sh -c \
  "$B/sync_edge $D/k.db $A2 --name kitchen --token tok-k --tables readings --show garage-000002 > $D/k3 && grep -q 'garage-000002: no such reading' $D/k3 && grep -q '0 settings' $D/k3 && grep -q '3 readings' $D/k3"
check "a reading an operator retires leaves the device's share by an exit marker" sh -c \
  "$B/sync_edge $D/adm.db $A2 --name admin --token tok-a --put kitchen-000003 99 --status retired > $D/adm2 && $B/sync_edge $D/k.db $A2 --name kitchen --token tok-k --tables readings --show kitchen-000003 > $D/k4 && grep -q '1 rows left this device' $D/k4 && grep -q 'kitchen-000003: no such reading' $D/k4 && grep -q '2 readings' $D/k4"
check "rows that left a device's share are still on the server and the others" sh -c \
  "$B/sync_edge $D/adm.db $A2 --name admin --token tok-a --show kitchen-000003 > $D/adm3 && grep -q '1 settings' $D/adm3 && grep -q '8 readings' $D/adm3 && grep -q 'kitchen-000003: 21 99 retired' $D/adm3"
check "a newer schema's column reaches another new device through an old server" sh -c \
  "$B/sync_edge $D/at.db $A2 --name attic --token tok-a --schema 2 --show garage-000002 > $D/at1 && grep -q 'garage-000002: 20.2 98 ok 41' $D/at1 && $B/sync_edge $D/g.db $A2 --name garage --token tok-g --schema 2 > $D/g2 && [ \"\$(digest $D/at1)\" = \"\$(digest $D/g2)\" ]"
kill -TERM $SRV
wait $SRV
SRV=

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
