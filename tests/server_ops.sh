#!/bin/sh
# server_ops.sh - `synctl serve` as a fleet operator runs it: the metrics
# read by a real Prometheus parser (python3-prometheus-client), one
# key=value log line per session on stderr, SIGHUP reloading the
# credentials file, and the systemd unit in examples/ checked by
# systemd-analyze.  Loopback only; every server is stopped at the end.
# One line per check (tests/check.sh); the last line counts them.  Run
# from the build directory (make test does).
CHECK_NAME=server_ops
. "$(dirname "$0")/check.sh"
# The Prometheus parser is Debian's python3-prometheus-client, installed
# for the system python (make deps).
PY=
for p in /usr/bin/python3 python3; do
  if "$p" -c 'import prometheus_client' 2>/dev/null; then PY=$p; break; fi
done

# --- a server with named credentials ----------------------------------
"$S" init srv.db --table notes:text title:text > /dev/null
"$S" put srv.db notes s1 title=one > /dev/null
"$S" put srv.db notes s2 title=two > /dev/null
"$S" schema srv.db > schema.txt
"$S" init laptop.db --schema schema.txt > /dev/null
"$S" init phone.db --schema schema.txt > /dev/null
"$S" put laptop.db notes l1 title=from-laptop > /dev/null
"$S" put phone.db notes p1 title=from-phone > /dev/null
cat > creds <<CREDS
# token   rights               device
lap-tok   read=* write=*       name=laptop
CREDS
"$S" serve srv.db 127.0.0.1:0 --credentials creds --port-file port \
  --metrics 127.0.0.1:0 --metrics-port-file mport > serve.out 2> serve.err &
SRV=$!
i=0
while { [ ! -s port ] || [ ! -s mport ]; } && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
A=127.0.0.1:$(cat port)
MP=$(cat mport)
LSITE=$("$S" vv laptop.db | grep '(this replica)' | cut -c1-32)
PSITE=$("$S" vv phone.db | grep '(this replica)' | cut -c1-32)

check "the laptop syncs" "$S" sync laptop.db "$A" --token lap-tok

# --- the session log line ---------------------------------------------
# logfmt: key=value, values with spaces quoted; one line per session.
cat > logline.py <<'PY'
import re, sys
# logline.py FILE KEY=VALUE...: the last event=session line of FILE that
# has every KEY=VALUE given; prints its fields.
want = dict(a.split('=', 1) for a in sys.argv[2:])
pat = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
hit = None
for line in open(sys.argv[1]):
    f = {k: (v[1:-1].replace('\\"', '"').replace('\\\\', '\\') if v.startswith('"') else v)
         for k, v in pat.findall(line)}
    if f.get('event') == 'session' and all(f.get(k) == v for k, v in want.items()):
        hit = f
if not hit:
    sys.exit('no session line with %r in %s' % (want, open(sys.argv[1]).read()))
for k in ('ts', 'device', 'site', 'result', 'code', 'rows_in', 'rows_out',
          'bytes_in', 'bytes_out', 'duration_ms'):
    assert k in hit, k
assert re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', hit['ts']), hit['ts']
print(hit)
PY
check "a session ends with one key=value line: device, site, rows and bytes each way, result" \
  sh -c "sleep 0.2; python3 logline.py serve.err event=session device=laptop site=$LSITE result=ok code=0 rows_in=1 rows_out=2 > out && grep -q \"'bytes_in': '[1-9]\" out && grep -q \"'bytes_out': '[1-9]\" out && grep -q \"'duration_ms': '[0-9]\" out"
check "the log line is on stderr, not on stdout" sh -c "! grep -q 'event=session' serve.out && grep -q 'received 1 rows' serve.out"
"$S" sync phone.db "$A" --token wrong > /dev/null 2>&1
check "a refused session logs result=error with the code, its name and the message" \
  sh -c "sleep 0.2; python3 logline.py serve.err event=session device=- site=$PSITE result=error > out && grep -q \"'code': '-[0-9]\" out && grep -q \"'error': '[a-z]\" out && grep -q \"'msg': \" out"

# --- metrics, read by a real parser -----------------------------------
check "GET /metrics answers (synctl stats HOST:PORT)" sh -c "$S stats 127.0.0.1:$MP > metrics.txt"
check "the server's gauges: rows, file size, connections, last sync per peer" sh -c "
grep -q '^sync_build_info{version=\"[0-9.]*\"} 1\$' metrics.txt &&
grep -q '^sync_rows{table=\"notes\"} 3\$' metrics.txt &&
grep -q '^sync_file_bytes [1-9][0-9]*\$' metrics.txt &&
grep -q '^sync_server_connections{listener=\"sync\"} 0\$' metrics.txt &&
grep -q '^sync_server_connections{listener=\"metrics\"} 1\$' metrics.txt &&
grep -q '^sync_peer_last_sync_age_seconds{site=\"$LSITE\"} [0-9.]*\$' metrics.txt &&
! grep -q 'site=\"$PSITE\"' metrics.txt"
if [ -n "$PY" ]; then
  check "python3-prometheus-client parses the exposition: histograms, counters, gauges" "$PY" -c "
from prometheus_client.parser import text_string_to_metric_families
fam = {f.name: f for f in text_string_to_metric_families(open('metrics.txt').read())}
for h in ('sync_commit_seconds', 'sync_apply_seconds', 'sync_session_seconds'):
    f = fam[h]
    assert f.type == 'histogram', (h, f.type)
    b = [s for s in f.samples if s.name == h + '_bucket']
    les = [s.labels['le'] for s in b]
    assert les[-1] == '+Inf', les
    vals = [s.value for s in b]
    assert vals == sorted(vals), (h, vals)
    fl = [float(x) for x in les]
    assert fl == sorted(fl) and len(set(fl)) == len(fl), les
    count = [s.value for s in f.samples if s.name == h + '_count'][0]
    assert vals[-1] == count, (h, vals[-1], count)
    assert any(s.name == h + '_sum' for s in f.samples), h
assert fam['sync_session_seconds'].samples[-1].value >= 2
assert fam['sync_sessions'].type == 'counter'
assert [s.value for s in fam['sync_sessions'].samples if s.name == 'sync_sessions_total'] == [2.0]
for g in ('sync_build_info', 'sync_rows', 'sync_file_bytes', 'sync_server_connections', 'sync_peer_last_sync_age_seconds'):
    assert fam[g].type == 'gauge', g
"
else
  skip "python3-prometheus-client is not installed (make deps): the exposition is not parsed"
fi

# --- SIGHUP reloads the credentials file ------------------------------
check "a token not in the file is refused" sh -c "! $S sync phone.db $A --token phone-tok"
cat > creds <<CREDS
lap-tok   read=* write=*       name=laptop
phone-tok read=*               name=phone
CREDS
kill -HUP $SRV
check "SIGHUP reloads the file and logs it" wait_for serve.err 'event=reload .*result=ok tokens=2'
check "a device added to the file can then connect, without a restart" "$S" sync phone.db "$A" --token phone-tok
check "and its session is logged under its name" sh -c "sleep 0.2; python3 logline.py serve.err device=phone site=$PSITE result=ok > out"
cat > creds <<CREDS
phone-tok read=*               name=phone
CREDS
kill -HUP $SRV
check "the reload that removes the laptop is logged" wait_for serve.err 'event=reload .*result=ok tokens=1'
check "a removed device is refused" sh -c "! $S sync laptop.db $A --token lap-tok"
printf 'phone-tok read=nosuchtable\n' > creds
kill -HUP $SRV
check "a file that fails to parse is logged with the reason and the old one kept" \
  wait_for serve.err 'event=reload .*result=error msg=".*creds:1.*nosuchtable.*" kept=old'
check "the old credentials still hold" "$S" sync phone.db "$A" --token phone-tok
check "and the removed device is still refused" sh -c "! $S sync laptop.db $A --token lap-tok"
rm creds
kill -HUP $SRV
check "a missing file is logged and the old credentials kept" \
  wait_for serve.err 'event=reload .*result=error msg=".*No such file.*" kept=old'
check "the server still serves after every reload" "$S" sync phone.db "$A" --token phone-tok
kill $SRV; wait $SRV; SRV=
check "the server stops cleanly" grep -q 'stopped; digest' serve.out

# --- the systemd unit -------------------------------------------------
UNIT="$TOP/examples/sync-server.service"
check "the unit has the hardening options" sh -c "
for o in User=sync-server ProtectSystem=strict StateDirectory= NoNewPrivileges=yes PrivateTmp=yes RestrictAddressFamilies= ExecReload= ProtectHome= CapabilityBoundingSet= SystemCallFilter=; do
  grep -q \"^\$o\" '$UNIT' || { echo \"missing \$o\"; exit 1; }
done"
if command -v systemd-analyze > /dev/null 2>&1; then
  # verify wants the ExecStart binary to exist: point it at this build.
  mkdir -p unit
  sed "s|/usr/local/bin/synctl|$S|g" "$UNIT" > unit/sync-server.service
  check "systemd-analyze verify accepts the unit" sh -c "
    systemd-analyze verify --man=no unit/sync-server.service > out 2>&1 || { cat out; exit 1; }
    ! grep -i 'sync-server.service.*\\(unknown\\|invalid\\|fail\\|ignoring\\)' out || { cat out; exit 1; }"
else
  skip "systemd-analyze is not installed: the unit is not verified"
fi

finish
