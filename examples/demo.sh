#!/bin/sh
# demo.sh - the main job in one minute: a server peer and two edge
# devices on loopback, each writing, ending with equal digests.
#   examples/demo.sh BUILD_DIR
set -eu
B=${1:-build}
D=$(mktemp -d "${TMPDIR:-/tmp}/sync-demo.XXXXXX")
trap 'kill $SRV 2>/dev/null || true; rm -rf "$D"' EXIT INT TERM

"$B/sync_server" "$D/server.db" 127.0.0.1:0 --sessions 4 \
  --port-file "$D/port" > "$D/server.log" &
SRV=$!
i=0
while [ ! -s "$D/port" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "demo: the server did not start"; exit 1; }
  sleep 0.1
done
ADDR=127.0.0.1:$(cat "$D/port")

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
