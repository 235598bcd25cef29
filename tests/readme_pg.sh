#!/bin/sh
# readme_pg.sh - the README's PostgreSQL walkthrough ("The server's rows
# in PostgreSQL"), extracted between its markers and run as written, in
# a scratch directory, as nobody when run as root (initdb refuses root):
# it starts a PostgreSQL of its own there, a role and a database for the
# bridge, synctl serve, the bridge, a device, and its output must show
# the device's row in PostgreSQL and the UPDATE back on the device.
# Whatever the walkthrough leaves running when it fails (it runs in a
# session of its own) is stopped here.  Run from the build directory
# (tests/check.sh).
CHECK_NAME=readme_pg
. "$(dirname "$0")/check.sh"

if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  bad "PostgreSQL 15 is installed (Debian: postgresql; make deps)"
  finish
  exit 1
fi
mkdir walk
sed -n '/<!-- pg-walkthrough begin -->/,/<!-- pg-walkthrough end -->/p' "$TOP/README.md" |
  sed -e '1,2d' -e '$d' | sed '$d' > walk/walk.sh
check "README.md has the walkthrough between its markers" [ -s walk/walk.sh ]
check "it starts its own PostgreSQL and gives the bridge a role" sh -c \
  "grep -q '^initdb ' walk/walk.sh && grep -q '^createuser ' walk/walk.sh"

AS=
if [ "$(id -u)" = 0 ]; then
  chmod 711 "$D"
  chown -R 65534:65534 walk
  AS="setpriv --reuid=65534 --regid=65534 --clear-groups --"
fi
# setsid: the walkthrough and what it starts form one process group,
# stopped whole below if something was left behind.
setsid $AS env HOME="$D/walk" PATH="$B:$PATH" sh -ec 'cd walk && exec sh -e walk.sh' \
  > walk.out 2>&1 &
WALK=$!
wait $WALK
rc=$?
cp walk.out out
[ "$rc" = 0 ] && ok "the walkthrough runs as written" || bad "the walkthrough runs as written (exit $rc)"
check "PostgreSQL holds the device's row" grep -q '^ kitchen | 21.5 | ok$' walk.out
check "the UPDATE in PostgreSQL reached the device" sh -c \
  "grep -q '^temp    21.5\$' walk.out && grep -q '^status  check\$' walk.out"

# left behind by a failure: the cluster, the server
if [ -f walk/pg/postmaster.pid ]; then
  $AS /usr/lib/postgresql/15/bin/pg_ctl -D walk/pg -m immediate -w stop > /dev/null 2>&1
fi
kill -- -"$WALK" 2>/dev/null
check "nothing of it is left running" sh -c "! kill -0 -- -$WALK 2>/dev/null"
finish
