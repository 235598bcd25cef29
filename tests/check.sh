# check.sh - the harness of the shell tests, sourced by them (set
# CHECK_NAME first): a scratch directory removed at exit (with the
# server in $SRV stopped), and one line per check, counted by pass and
# fail.  Run from the build directory: B is it, S its synctl, TOP the
# source tree.
set -u
B=$(pwd)
S="$B/synctl"
TOP=$(cd "$B/.." && pwd)
D=$(mktemp -d "${TMPDIR:-/tmp}/${CHECK_NAME:-check}.XXXXXX")
SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$D"' EXIT INT TERM
cd "$D"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAILED: $1"; [ -f out ] && sed 's/^/  | /' out | head -20; }
skip() { echo "skipped: $1"; }
# check NAME COMMAND...: the command succeeds (output in ./out)
check() {
  name=$1; shift
  if "$@" > out 2>&1; then ok "$name"; else bad "$name"; fi
}
# status NAME WANT COMMAND...: the command exits with WANT
status() {
  name=$1; want=$2; shift 2
  "$@" > out 2>&1
  got=$?
  if [ "$got" = "$want" ]; then ok "$name"; else echo "  exit $got, wanted $want" >> out; bad "$name"; fi
}
has() { grep -q -- "$1" out; } # has TEXT: ./out contains it
# wait_for FILE TEXT: until FILE holds TEXT (5 s at most)
wait_for() {
  i=0
  while ! grep -q -- "$2" "$1" 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
  grep -q -- "$2" "$1"
}
# finish: the count line; the exit status says whether all passed
finish() {
  echo "$CHECK_NAME: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}
