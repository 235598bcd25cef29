#!/bin/sh
# tls.sh - synctl serve and sync over TLS with throwaway certificates
# made here by openssl (a CA, another CA, a server certificate for
# localhost and 127.0.0.1, a client certificate): a sync over TLS ends
# with the digests of one over TCP; a server certificate from another CA
# or for another name is refused, clearly, with nothing applied on either
# side; a server that requires client certificates refuses a client
# without one (or with one from another CA) and takes one with; the
# mbedTLS device (examples/tls_edge.c) syncs with the OpenSSL server; two
# servers peer over TLS, one checking the other's certificate and token.  Loopback only; every server is stopped at the
# end.  One line per check (tests/check.sh); run from the build directory.
CHECK_NAME=tls
. "$(dirname "$0")/check.sh"
PIDS=
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; rm -rf "$D"' EXIT INT TERM

# --- certificates (ca and cert: tests/check.sh) -----------------------
{ ca ca && ca otherca && cert srv ca localhost "DNS:localhost,IP:127.0.0.1" &&
  cert cli ca device-7 && cert rogue otherca device-7; } > out 2>&1 ||
  bad "openssl made the certificates"

# said NAME TEXT: the last command's output (./out) holds TEXT.
said() { if has "$2"; then ok "$1"; else bad "$1"; fi; }

# serve NAME DB OPTIONS...: a server on a free port; its address in $A.
serve() {
  name=$1 db=$2
  shift 2
  rm -f $name.port
  "$S" serve $db 127.0.0.1:0 --port-file $name.port "$@" > $name.out 2> $name.err &
  PIDS="$PIDS $!"
  i=0
  while [ ! -s $name.port ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
  A=127.0.0.1:$(cat $name.port)
}

# --- the same sync over TCP and over TLS ------------------------------
"$S" init tcp-srv.db --table notes:text title:text n:int > /dev/null
"$S" schema tcp-srv.db > schema.txt
for f in tls-srv tcp-dev tls-dev; do "$S" init $f.db --schema schema.txt > /dev/null; done
for f in tcp tls; do
  for k in 1 2 3; do "$S" put $f-srv.db notes s$k title="server $k" n=$k > /dev/null; done
  for k in 1 2 3; do "$S" put $f-dev.db notes d$k title="device $k" n=$k > /dev/null; done
done
serve tcp tcp-srv.db
TCP=$A
serve tls tls-srv.db --tls-cert srv.crt --tls-key srv.key
TLS=$A
check "a sync over TCP" "$S" sync tcp-dev.db $TCP -q
check "a sync over TLS" "$S" sync tls-dev.db $TLS -q --tls-ca ca.crt
dg=$("$S" digest tcp-dev.db)
check "over TLS, the digests equal those over TCP (both sides)" \
  test "$("$S" digest tls-dev.db)" = "$dg" -a "$("$S" digest tls-srv.db)" = "$dg" \
  -a "$("$S" digest tcp-srv.db)" = "$dg"
check "the server says TLS" grep -q "; TLS" tls.out

# --- a server certificate that does not check out ---------------------
"$S" put tls-dev.db notes late title="not to be sent" > /dev/null
before_dev=$("$S" digest tls-dev.db)
before_srv=$("$S" digest tls-srv.db)
unchanged() {
  [ "$("$S" digest tls-dev.db)" = "$before_dev" ] &&
    [ "$("$S" digest tls-srv.db)" = "$before_srv" ]
}
status "a server certificate from another CA is refused" 1 \
  "$S" sync tls-dev.db $TLS --tls-ca otherca.crt
said "... saying why" "certificate verify failed: unable to get local issuer certificate; nothing was exchanged"
check "... with nothing applied on either side" unchanged
status "a server certificate for another name is refused" 1 \
  "$S" sync tls-dev.db $TLS --tls-ca ca.crt --tls-name db.example.org
said "... saying why" "certificate verify failed: hostname mismatch"
check "... with nothing applied on either side" unchanged
check "the server logs the refusal" grep -q 'TLS failed: .*unknown ca' tls.out
status "a plain client is not served by a TLS server" 1 "$S" sync tls-dev.db $TLS
check "... with nothing applied on either side" unchanged
check "the name dialled is what is checked: localhost" \
  "$S" sync tls-dev.db localhost:${TLS#*:} -q --tls-ca ca.crt

# --- client certificates ----------------------------------------------
"$S" init cc-srv.db --schema schema.txt > /dev/null
"$S" init cc-dev.db --schema schema.txt > /dev/null
"$S" put cc-dev.db notes c1 title=mine > /dev/null
serve cc cc-srv.db --tls-cert srv.crt --tls-key srv.key --tls-client-ca ca.crt
before=$("$S" digest cc-srv.db)
status "a client without a certificate is refused" 1 \
  "$S" sync cc-dev.db $A --tls-ca ca.crt
# (the server's alert, or a reset that overtook it)
said "... clearly" "the server refused the connection: .*certificate required; nothing was exchanged\|it may require a client certificate (see its log); nothing was exchanged"
status "a client certificate from another CA is refused" 1 \
  "$S" sync cc-dev.db $A --tls-ca ca.crt --tls-cert rogue.crt --tls-key rogue.key
# (the server's alert, or a reset that overtook it)
said "... clearly" "the server refused the connection: .*unknown ca\|it may not accept this client's certificate"
check "... and nothing reached the server" test "$("$S" digest cc-srv.db)" = "$before"
check "the server says why it refused them" grep -q "TLS failed: peer did not return a certificate" cc.out
check "a client with its certificate syncs" \
  "$S" sync cc-dev.db $A -q --tls-ca ca.crt --tls-cert cli.crt --tls-key cli.key
check "the session log names the certificate's subject" \
  grep -q 'result=ok .*tls_subject="/CN=device-7"' cc.err

# --- the mbedTLS device -----------------------------------------------
E="$B/tls_edge"
"$E" e0.db 127.0.0.1:1 --ca ca.crt > /dev/null 2>&1 # made with the demo schema
"$S" schema e0.db > demo.txt
"$S" init e-srv.db --schema demo.txt > /dev/null
serve e e-srv.db --tls-cert srv.crt --tls-key srv.key
check "the mbedTLS device syncs with the OpenSSL server" \
  "$E" e1.db localhost:${A#*:} --ca ca.crt --name dev1 --write 200
said "... and holds the server's digest" "digest $("$S" digest e-srv.db)"
check "... 200 readings reached the server" \
  sh -c "'$S' dump e-srv.db readings | grep -c dev1- | grep -qx 200"
status "the mbedTLS device refuses a server certificate from another CA" 1 \
  "$E" e1.db localhost:${A#*:} --ca otherca.crt --write 1
said "... saying why" "certificate does not check out: The certificate is not correctly signed"
status "the mbedTLS device refuses a certificate for another name" 1 \
  "$E" e1.db 127.0.0.1:${A#*:} --ca ca.crt --server-name db.example.org
said "... saying why" "does not match with the expected CN"
check "... and nothing it wrote reached the server" \
  sh -c "'$S' dump e-srv.db readings | grep -c dev1- | grep -qx 200"

# --- two servers peering over TLS -------------------------------------
"$S" init m1.db --schema schema.txt > /dev/null
"$S" init m2.db --schema schema.txt > /dev/null
"$S" put m1.db notes m title="from server 1" > /dev/null
echo "peer-tok read=* write=* relay name=server-1" > peer.creds
serve m2 m2.db --tls-cert srv.crt --tls-key srv.key --tls-client-ca ca.crt \
  --credentials peer.creds
M2=$A
serve m1 m1.db --tls-cert srv.crt --tls-key srv.key --tls-ca ca.crt \
  --peer $M2 --peer-interval 1 --peer-token peer-tok
i=0
while [ "$("$S" digest m1.db)" != "$("$S" digest m2.db)" ] && [ $i -lt 50 ]; do
  i=$((i + 1)); sleep 0.1
done
check "two servers peer over TLS (client certificates and a token required)" \
  test "$("$S" digest m1.db)" = "$("$S" digest m2.db)"
check "... the peer's session is logged with its token's name and certificate" \
  grep -q 'device=server-1 .*result=ok .*tls_subject="/CN=localhost"' m2.err

for p in $PIDS; do kill $p 2> /dev/null; done
PIDS=
finish
