#!/bin/sh
# demo.sh - the main job in one minute: a server peer and two edge
# devices on loopback, each writing, ending with equal digests; then a
# fleet rollout: write checks answered to the device, a device's share
# (a row leaving it by its values), and devices on a newer schema syncing
# through an old server.
#   examples/demo.sh BUILD_DIR
set -eu
B=${1:-build}
D=$(mktemp -d "${TMPDIR:-/tmp}/sync-demo.XXXXXX")
trap 'kill $SRV 2>/dev/null || true; rm -rf "$D"' EXIT INT TERM

# serve LOG DB [OPTIONS...]: start a server on a free port; sets SRV, ADDR.
serve() {
  log=$1; shift
  rm -f "$D/port"
  "$B/sync_server" "$@" --port-file "$D/port" > "$log" &
  SRV=$!
  i=0
  while [ ! -s "$D/port" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "demo: the server did not start"; exit 1; }
    sleep 0.1
  done
  ADDR=127.0.0.1:$(cat "$D/port")
}

serve "$D/server.log" "$D/server.db" 127.0.0.1:0 --sessions 4

echo "== two devices record readings and sync with the server at $ADDR"
"$B/sync_edge" "$D/kitchen.db" "$ADDR" --name kitchen --write 500
"$B/sync_edge" "$D/garage.db" "$ADDR" --name garage --write 300
echo "== the kitchen syncs again and gets the garage's readings"
"$B/sync_edge" "$D/kitchen.db" "$ADDR" --name kitchen | tee "$D/kitchen.out"
"$B/sync_edge" "$D/garage.db" "$ADDR" --name garage | tee "$D/garage.out"
wait $SRV
cat "$D/server.log"

srv=$(sed -n 's/.*stopped; digest //p' "$D/server.log")
kit=$(sed -n 's/.*digest //p' "$D/kitchen.out")
gar=$(sed -n 's/.*digest //p' "$D/garage.out")
echo "== digests: server $srv, kitchen $kit, garage $gar"
if [ -n "$srv" ] && [ "$srv" = "$kit" ] && [ "$srv" = "$gar" ]; then
  echo "demo: the server and both devices hold the same rows"
else
  echo "demo: digests differ"
  exit 1
fi

# Rollouts: a server that checks each device's writes, gives the kitchen
# only its own readings that are not retired, and keeps schema version 1
# while devices move to version 2 (readings gain humidity).
cat > "$D/creds" <<CREDS
tok-kitchen  read=* write=readings name=kitchen own
tok-garage   read=* write=readings name=garage
tok-admin    read=* write=* relay
CREDS
serve "$D/fleet.log" "$D/fleet.db" 127.0.0.1:0 --credentials "$D/creds" \
  --sessions 10
echo "== rollouts: per-device write checks, shares and a schema upgrade at $ADDR"
"$B/sync_edge" "$D/admin.db" "$ADDR" --name admin --token tok-admin \
  --setting interval 60s
"$B/sync_edge" "$D/garage2.db" "$ADDR" --name garage --token tok-garage \
  --schema 2 --write 5
echo "== the kitchen writes a garage reading and an impossible battery level"
"$B/sync_edge" "$D/kitchen2.db" "$ADDR" --name kitchen --token tok-kitchen \
  --write 3 --put garage-000001 50
"$B/sync_edge" "$D/kitchen2.db" "$ADDR" --name kitchen --token tok-kitchen \
  --put kitchen-000002 150 --show kitchen-000002
echo "== the kitchen drops the settings table from what it syncs"
"$B/sync_edge" "$D/kitchen2.db" "$ADDR" --name kitchen --token tok-kitchen \
  --tables readings
echo "== an operator retires a kitchen reading: it leaves the kitchen's share, not the fleet"
"$B/sync_edge" "$D/admin.db" "$ADDR" --name admin --token tok-admin \
  --put kitchen-000003 99 --status retired
"$B/sync_edge" "$D/kitchen2.db" "$ADDR" --name kitchen --token tok-kitchen \
  --tables readings --show kitchen-000003
echo "== a second device on schema 2 gets the garage's humidity through the v1 server"
"$B/sync_edge" "$D/attic.db" "$ADDR" --name attic --token tok-admin --schema 2 \
  --show garage-000002 | tee "$D/attic.out"
"$B/sync_edge" "$D/garage2.db" "$ADDR" --name garage --token tok-garage \
  --schema 2 | tee "$D/garage2.out"
echo "== the operator's device (schema 1, every row) syncs last"
"$B/sync_edge" "$D/admin.db" "$ADDR" --name admin --token tok-admin \
  --show kitchen-000003 | tee "$D/admin.out"
wait $SRV
grep -e refused -e stopped "$D/fleet.log"

# The kitchen holds only its share, so only replicas that hold every row
# are compared, each with one of the same schema: a schema-1 replica's
# digest leaves out the humidity values it keeps unread.
srv=$(sed -n 's/.*stopped; digest //p' "$D/fleet.log")
adm=$(sed -n 's/.*digest //p' "$D/admin.out")
att=$(sed -n 's/.*digest //p' "$D/attic.out")
gar=$(sed -n 's/.*digest //p' "$D/garage2.out")
echo "== digests of the replicas that hold every row: schema 1: server $srv," \
  "admin $adm; schema 2: attic $att, garage $gar"
if [ -n "$srv" ] && [ "$srv" = "$adm" ] && [ -n "$att" ] && [ "$att" = "$gar" ] &&
  grep -q 'garage-000002: 20.2 98 ok 41$' "$D/attic.out"; then
  echo "demo: the server and the admin hold the same rows; both schema-2 devices" \
    "hold the same rows, humidity included"
else
  echo "demo: the replicas that hold every row differ"
  exit 1
fi
