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
# Throwaway certificates (tls.sh, mqtt.sh), in the current directory.
# ca NAME: a self-signed CA.  cert NAME CA CN [SAN]: a key and a
# certificate for CN signed by CA, with subjectAltName SAN if given.
ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout $1.key -out $1.crt -days 2 -subj "/CN=$1" \
    -addext basicConstraints=critical,CA:TRUE 2> /dev/null
}
cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout $1.key -out $1.csr -subj "/CN=$3" 2> /dev/null &&
    { [ -z "${4:-}" ] || echo "subjectAltName=$4" > $1.ext; } &&
    openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial \
      -days 2 -out $1.crt ${4:+-extfile $1.ext} 2> /dev/null
}
# finish: the count line; the exit status says whether all passed
finish() {
  echo "$CHECK_NAME: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}
