#!/bin/sh
# mesh.sh - three 'synctl serve --peer' processes on loopback ports, a
# mesh of full replicas: 50 devices write and each round sync with a
# server picked at random, one server is killed with kill -9 in the
# middle of a round and restarted on its port; at the end the 3 servers
# and the 50 devices hold the same digest (53 equal).  Then a device
# that moves between servers receives nothing twice, and a peer with
# another schema is refused with a clear message.  MESH_ROUNDS (2) and
# MESH_DEVICES (50) set the size; make soak runs it longer.  One line
# per check (tests/check.sh); run from the build directory.
CHECK_NAME=mesh
. "$(dirname "$0")/check.sh"
ROUNDS=${MESH_ROUNDS:-2}
N=${MESH_DEVICES:-50}
PIDS=
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; rm -rf "$D"' EXIT INT TERM

# Three free loopback ports, known before any server starts (each names
# the others as peers).
set -- $(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
PORT1=$1 PORT2=$2 PORT3=$3 PORT4=$4

"$S" init s1.db --table notes:text title:text > /dev/null
"$S" schema s1.db > schema.txt
"$S" init s2.db --schema schema.txt > /dev/null
"$S" init s3.db --schema schema.txt > /dev/null

# serve_one K: server K, its peers the other two.
serve_one() {
  peers=
  for j in 1 2 3; do
    [ $j = "$1" ] || peers="$peers --peer 127.0.0.1:$(eval echo \$PORT$j)"
  done
  "$S" serve s$1.db 127.0.0.1:$(eval echo \$PORT$1) $peers --peer-interval 1 \
    >> s$1.out 2>> s$1.err &
  eval PID$1=$!
  PIDS="$PIDS $!"
}
serve_one 1; serve_one 2; serve_one 3
check "three servers are up" wait_for s1.out "in step with 2 mesh peers"
wait_for s3.out "on port $PORT3" > /dev/null

i=1
while [ $i -le "$N" ]; do
  "$S" init d$i.db --schema schema.txt > /dev/null
  i=$((i + 1))
done

# A pseudo-random server per device and round (an LCG: sh has no
# RANDOM).
seed=12345
pick() {
  seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
  echo $(( seed / 65536 % 3 + 1 ))
}

# round R [MID]: every device writes one row (none when R is pull) and
# syncs with a random server, the devices in 5 groups at once; MID (a
# command) runs while they do.  A device whose sync fails is listed in
# ./pending.
round() {
  g=0
  gpids=
  while [ $g -lt 5 ]; do
    plan=
    i=$((g + 1))
    while [ $i -le "$N" ]; do
      plan="$plan $i:$(pick)"
      i=$((i + 5))
    done
    (
      for ik in $plan; do
        i=${ik%:*} k=${ik#*:}
        [ "$1" = pull ] ||
          "$S" put d$i.db notes "d$i-r$1" title="round $1 of device $i" > /dev/null
        "$S" sync d$i.db 127.0.0.1:$(eval echo \$PORT$k) -q > /dev/null 2>&1 ||
          echo "d$i" >> pending # its rows go at the next sync
      done
    ) &
    gpids="$gpids $!"
    g=$((g + 1))
  done
  if [ -n "${2:-}" ]; then sleep 0.5; $2; fi
  wait $gpids
}

# kill -9 server 2 while the devices sync, then restart it on its port.
crash2() {
  kill -9 $PID2
  wait $PID2 2> /dev/null
  sleep 0.2
  serve_one 2
}

r=1
while [ $r -le "$ROUNDS" ]; do
  if [ $r = $(( (ROUNDS + 1) / 2 )) ]; then round $r crash2; else round $r; fi
  r=$((r + 1))
done
failed=0
[ -f pending ] && failed=$(wc -l < pending)
echo "mesh: $ROUNDS rounds of $N devices; $failed syncs failed (the killed server)"

# Devices whose last sync failed push now; then the servers settle.
if [ -f pending ]; then
  for d in $(sort -u pending); do "$S" sync $d.db 127.0.0.1:$PORT1 -q > /dev/null 2>&1; done
fi
settled() {
  a=$("$S" digest s1.db) && b=$("$S" digest s2.db) && c=$("$S" digest s3.db) &&
    [ "$a" = "$b" ] && [ "$b" = "$c" ]
}
i=0
while ! settled && [ $i -lt 150 ]; do i=$((i + 1)); sleep 0.1; done
check "the three servers converge" settled

# Every device pulls from a random server: 53 digests must be equal.
rm -f pending
round pull
all53() {
  want=$("$S" digest s1.db)
  n=0
  for f in s1.db s2.db s3.db d*.db; do
    [ "$("$S" digest $f)" = "$want" ] && n=$((n + 1))
  done
  echo "$n of $((N + 3)) digests equal $want"
  [ $n = $((N + 3)) ]
}
check "all $((N + 3)) digests are equal after a kill -9 and restart" all53
check "server 2 was killed and restarted" test "$(grep -c 'on port' s2.out)" = 2
want=$((N * ROUNDS))
check "the servers hold every device write ($want rows)" \
  sh -c "'$S' dump s1.db notes | grep -c 'round ' | grep -qx $want"

# A device that moves to another server receives nothing it holds.
"$S" put d1.db notes moved title=moving > /dev/null
"$S" sync d1.db 127.0.0.1:$PORT1 -q > /dev/null
wait_for s1.out "mesh peer 127.0.0.1:$PORT3: received 0 rows, sent 1 rows" > /dev/null
i=0
while ! settled && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
check "a device moving from server 1 to 3 receives 0 rows" \
  sh -c "'$S' sync d1.db 127.0.0.1:$PORT3 --json | grep -q '\"received\":0,'"

# A peer with another schema: refused, said, nothing exchanged.
"$S" init other.db --table things:int name:text > /dev/null
"$S" put other.db things 1 name=x > /dev/null
before=$("$S" digest s1.db)
"$S" serve other.db 127.0.0.1:$PORT4 --peer 127.0.0.1:$PORT1 \
  --peer-interval 1 > s4.out 2> s4.err &
PIDS="$PIDS $!"
check "a mesh peer with another schema is refused, clearly" \
  wait_for s4.out "mesh peer 127.0.0.1:$PORT1: refused: the schemas differ"
check "nothing of it reached the mesh" test "$("$S" digest s1.db)" = "$before"

for p in $PIDS; do kill $p 2> /dev/null; done
PIDS=
finish
