#!/bin/sh
# soak.sh - 50 device processes write and sync with one server
# concurrently for a bounded time; then every device syncs once more and
# each device's digest must equal the server's.
#   tests/soak.sh BUILD_DIR SECONDS [DEVICES]
set -eu
B=$1
SECS=${2:-60}
N=${3:-50}
D=$(mktemp -d "${TMPDIR:-/tmp}/sync-soak.XXXXXX")
trap 'kill $SRV 2>/dev/null || true; rm -rf "$D"' EXIT INT TERM

"$B/sync_server" "$D/server.db" 127.0.0.1:0 --port-file "$D/port" --quiet \
  > "$D/server.log" 2>&1 &
SRV=$!
i=0
while [ ! -s "$D/port" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "soak: the server did not start"; exit 1; }
  sleep 0.1
done
ADDR=127.0.0.1:$(cat "$D/port")
END=$(( $(date +%s) + SECS ))

device() {
  n=0
  while [ "$(date +%s)" -lt "$END" ]; do
    "$B/sync_edge" "$D/dev$1.db" "$ADDR" --name "dev$1" --write 20 --quiet \
      || { echo "soak: device $1 failed" >> "$D/failures"; }
    n=$((n + 1))
  done
  echo "$n" > "$D/runs$1"
}

i=1
while [ $i -le "$N" ]; do
  device $i &
  i=$((i + 1))
done
wait_devices() {
  i=1
  while [ $i -le "$N" ]; do
    while [ ! -f "$D/runs$i" ]; do sleep 0.2; done
    i=$((i + 1))
  done
}
wait_devices

# Two quiet rounds: the first brings every device's rows to the server,
# the second brings them all to every device.
for round in 1 2; do
  i=1
  while [ $i -le "$N" ]; do
    "$B/sync_edge" "$D/dev$i.db" "$ADDR" --name "dev$i" > "$D/final$i" 2>&1 \
      || { echo "soak: final sync of device $i failed"; cat "$D/final$i"; exit 1; }
    i=$((i + 1))
  done
done
kill -TERM $SRV
wait $SRV || true
srv=$(sed -n 's/.*stopped; digest //p' "$D/server.log")
runs=0
bad=0
i=1
while [ $i -le "$N" ]; do
  runs=$((runs + $(cat "$D/runs$i")))
  d=$(sed -n 's/.*digest //p' "$D/final$i")
  [ "$d" = "$srv" ] || { echo "soak: device $i digest $d, server $srv"; bad=$((bad + 1)); }
  i=$((i + 1))
done
fails=0
[ -f "$D/failures" ] && fails=$(wc -l < "$D/failures")
echo "soak: $N devices, $SECS s, $runs sessions while writing ($fails failed and were retried later), final digests: $((N - bad)) of $N equal the server's ($srv)"
[ $bad -eq 0 ]
