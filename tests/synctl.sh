#!/bin/sh
# synctl.sh - synctl driven the way a person would: create, write, read,
# dump and load, sync two files, sync over loopback with `synctl serve`,
# conflicts listed and resolved, refused writes listed and cleared, gc, compact, verify on a healthy and on a damaged
# copy, metrics over HTTP, usage errors and exit codes; then the README
# walkthrough, extracted from README.md and run as written.  One line per
# check; the last line counts them.  Run from the build directory (make
# test does).
CHECK_NAME=synctl
. "$(dirname "$0")/check.sh"
# jcheck NAME COMMAND PYTHON [TEXT_COMMAND]: COMMAND succeeds and its
# standard output is JSON that python3's json module reads (rows: its
# lines; d: the only one, else None), and PYTHON's assertions hold on it
# and on txt, what TEXT_COMMAND printed right after.  Python starts
# slowly on a busy machine: the outputs are kept, and jflush checks them
# all in one python at the end.
nj=0
jcheck() {
  nj=$((nj + 1))
  printf '%s' "$1" > j$nj.name
  sh -c "$2" > j$nj.json 2> j$nj.err
  echo $? > j$nj.rc
  printf '%s\n' "$3" > j$nj.py
  if [ $# -ge 4 ]; then sh -c "$4" > j$nj.txt 2>&1; else : > j$nj.txt; fi
}
jflush() {
  python3 -c "
import json
for i in range(1, $nj + 1):
    f = lambda ext: open('j%d.%s' % (i, ext)).read()
    try:
        assert f('rc').strip() == '0', 'exit status %s: %s' % (f('rc').strip(), f('err'))
        rows = [json.loads(l) for l in f('json').splitlines()]
        exec(f('py'), {'json': json, 'rows': rows, 'd': rows[0] if len(rows) == 1 else None, 'txt': f('txt')})
        print('ok\t' + f('name'))
    except Exception as e:
        print('bad\t%s\t%r' % (f('name'), e))
" > jflush.out 2>&1
  [ "$(grep -c '^ok	\|^bad	' jflush.out)" = $nj ] || { cp jflush.out out; bad "the $nj JSON checks ran"; }
  while IFS='	' read -r res name why; do
    if [ "$res" = ok ]; then ok "$name"; elif [ "$res" = bad ]; then echo "$why" | cut -c1-600 > out; bad "$name"; fi
  done < jflush.out
}
ALL="init schema add-column put add get del dump load log vv peers conflicts rejected history restore gc retire folds compact digest verify serve sync repair diff stats pg-bridge"

# --- help and usage -------------------------------------------------
check "help lists every command" sh -c "$S help > out && grep -q 'conflicts' out && grep -q 'verify' out"
all_help=0
for c in init schema add-column put add get del dump load log vv peers conflicts rejected history restore gc retire folds compact digest verify serve sync repair diff stats pg-bridge; do
  "$S" $c --help > h.out 2>&1 && grep -q "^SYNOPSIS" h.out && grep -q "^EXIT STATUS" h.out || all_help=1
  "$S" help $c > h2.out 2>&1 && cmp -s h.out h2.out || all_help=1
done
if [ $all_help = 0 ]; then ok "every command has --help and the same help page"; else bad "every command has --help"; fi
check "docs/SYNCTL.md holds every help page as printed" python3 -c "
import subprocess
doc = open('$TOP/docs/SYNCTL.md').read()
for c in 'init schema add-column put add get del dump load log vv peers conflicts rejected history restore gc retire folds compact digest verify serve sync repair diff stats pg-bridge help'.split():
    page = subprocess.run(['$S', 'help', c], capture_output=True, text=True, check=True).stdout
    assert '\x60\x60\x60\n' + page + '\x60\x60\x60' in doc, c
"
status "a missing argument is a usage error (2)" 2 "$S" put a.db
has "Try 'synctl help put'" && ok "a usage error points at the help page" || bad "usage error points at help"
status "an unknown command is a usage error (2)" 2 "$S" frobnicate
status "a missing database fails (1)" 1 "$S" dump nosuch.db t
has "nosuch.db: no such database" && ok "and says so" || bad "missing database message"

# --- addresses --------------------------------------------------------
"$S" init addr.db --table t:text v:text > /dev/null
for a in 127.0.0.1:99999 127.0.0.1:108405 127.0.0.1:-1; do
  status "sync with port out of range $a is a usage error (2)" 2 "$S" sync addr.db $a
  has "malformed address '$a'" && ok "and says the address is malformed" || bad "port range message for $a"
done
status "serve on port 99999 is a usage error (2)" 2 timeout 5 "$S" serve addr.db 127.0.0.1:99999
has "port 99999 is not in 0 to 65535" && ok "and names the range" || bad "serve port range message"
status "serve --metrics with port 65536 is a usage error (2)" 2 timeout 5 "$S" serve addr.db 127.0.0.1:0 --metrics 127.0.0.1:65536
status "HOST:abc is a usage error (2)" 2 "$S" sync addr.db 127.0.0.1:abc
has "malformed address '127.0.0.1:abc': the port must be a number" && ok "and is not taken for a database" || bad "HOST:abc message"
status "a bare HOST is a usage error (2)" 2 "$S" sync addr.db localhost
has "'localhost' is neither a database file nor an address (HOST:PORT)" && ok "and says it is neither" || bad "bare HOST message"
status "stats of HOST:abc is a usage error (2)" 2 "$S" stats 127.0.0.1:abc
CLOSED=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
status "a refused connection fails (1)" 1 "$S" sync addr.db 127.0.0.1:$CLOSED
has "connection refused by 127.0.0.1:$CLOSED" && ok "and says refused" || bad "refused message"
status "repair with a refused connection fails (1)" 1 "$S" repair addr.db 127.0.0.1:$CLOSED
has "connection refused by 127.0.0.1:$CLOSED" && ok "and says refused too" || bad "repair refused message"
status "a name that does not resolve fails (1)" 1 "$S" sync addr.db nosuchhost.invalid:7000
has "cannot resolve nosuchhost.invalid: " && ! has "refused" && ok "and says it cannot resolve" || bad "resolve message"

# --- an empty file is not a database, and nothing writes into it -------
for c in "get empty.db t k" "dump empty.db t" "log empty.db" "vv empty.db" "stats empty.db" "put empty.db t k v=1" "sync empty.db addr.db"; do
  rm -f empty.db empty.db-lock; : > empty.db
  status "$c on an empty file fails (1)" 1 "$S" $c
  has "empty.db: not a sync database (an empty file)" && [ ! -s empty.db ] && [ ! -e empty.db-lock ] \
    && ok "and says so, writing nothing" || bad "$c on an empty file wrote or said otherwise"
done
rm -f empty.db

# --- options --------------------------------------------------------
check "-V prints the version" sh -c "$S -V > out && grep -q '^synctl [0-9]' out"
check "--version prints the version" sh -c "$S --version > out && grep -q '^synctl [0-9]' out"
status "a misspelt command is a usage error (2)" 2 "$S" synk
has "unknown command 'synk'; did you mean 'sync'?" && ! has "^commands:" && ok "and names the nearest command, not the whole usage" || bad "did you mean"
status "a swapped pair of letters" 2 "$S" dupm
has "did you mean 'dump'?" && ok "is one edit from the command" || bad "did you mean dump"
status "help of a misspelt command" 2 "$S" help conflict
has "did you mean 'conflicts'?" && ok "names the nearest too" || bad "help did you mean"
check "init ints.db" "$S" init ints.db --table=t:integer v:text
check "-- ends the options: a negative key" sh -c "$S put ints.db t -- -5 v=minus && $S get ints.db t -- -5 > out && grep -q '^v  minus\$' out"
status "after --, --help is an argument, not a request for help" 1 "$S" get ints.db t -- --help
check "--opt=value: log --since=1" sh -c "$S put ints.db t 7 v=seven && $S log ints.db --since=1 > out && grep -q ' 7 ' out && ! grep -q ' -5 ' out"
check "--opt=value: load --batch=1" sh -c "echo '{\"key\":8,\"v\":\"x\"}' | $S load ints.db t - --batch=1 > out && grep -q 'loaded 1 row' out"
# getopt_long's conventions, command by command.
unk=0; hlp=0
for c in $ALL; do
  "$S" $c x --bogus > out 2>&1; [ $? = 2 ] && has "^synctl: $c: unrecognized option '--bogus'\$" || unk=1
  "$S" $c x -h > out 2>&1 && grep -q "^    synctl $c - " out || hlp=1
done
[ $unk = 0 ] && ok "every command refuses an unknown option: exit 2, 'unrecognized option'" || bad "unknown option on some command"
[ $hlp = 0 ] && ok "every command prints its page for -h after its arguments" || bad "-h on some command"
for o in "log ints.db --since" "load ints.db t - --batch" "sync ints.db addr.db --token" "serve ints.db 127.0.0.1:0 --credentials" "schema ints.db --diff"; do
  status "a missing value is a usage error (2): $o" 2 $S $o
  has "option '--${o##*--}' requires an argument" && ok "and says which option needs it" || bad "missing value message for $o"
done
status "a flag given a value is a usage error (2)" 2 "$S" get ints.db t 7 --json=yes
has "option '--json' doesn't allow an argument" && ok "and says so" || bad "flag with a value"
status "an unknown short option is a usage error (2)" 2 "$S" sync ints.db addr.db -x
has "invalid option -- 'x'" && ok "in getopt's words" || bad "unknown short option"
check "short flags bundle: -qh" sh -c "$S sync ints.db addr.db -qh > out && grep -q '^    synctl sync - ' out"
check "options before the arguments: get --json DB TABLE KEY" sh -c "$S get --json ints.db t 7 > out && grep -qx '{\"key\":7,\"v\":\"seven\"}' out"
check "--opt VALUE and --opt=VALUE read alike" sh -c "[ \"\$($S log ints.db --since 1)\" = \"\$($S log ints.db --since=1)\" ]"
check "a negative number is an argument, not an option" sh -c "$S get ints.db t -5 > out && grep -q '^v  minus\$' out"

# --- create, write, read --------------------------------------------
check "init with --table" "$S" init a.db --table notes:text title:text:notnull body:text n:integer score:real blob:blob
status "init refuses an existing file" 1 "$S" init a.db --table x:text y:text
status "init refuses an unknown type (2)" 2 "$S" init z.db --table t:text c:decimal
check "put a row" "$S" put a.db notes k1 title=hello "body=two words" n=3 score=1.5 blob=00ff10
check "put another" "$S" put a.db notes k2 title=world n=NULL
status "put into a missing column fails (1)" 1 "$S" put a.db notes k3 nosuch=1
has "synctl: put: a.db: table 'notes' has no column 'nosuch' (columns: title, body, n, score, blob)" \
  && ok "and names the columns" || bad "missing column message"
status "put without a notnull column fails" 1 "$S" put a.db notes k4 n=5
has "column 'title' of 'notes' is notnull" && ok "and names the column" || bad "notnull message"
status "put a word into an integer column fails" 1 "$S" put a.db notes k5 title=x n=many
has "column 'n' of 'notes' is integer, not 'many'" && ok "and says which type it wants" || bad "type message"
status "put into a missing table fails" 1 "$S" put a.db nosuch k title=x
has "no table 'nosuch' (tables: notes)" && ok "and lists the tables" || bad "missing table message"
check "get prints typed values" sh -c "$S get a.db notes k1 > out && grep -q '^title  hello$' out && grep -q '^body   two words$' out && grep -q '^n      3$' out && grep -q '^score  1.5$' out && grep -q '^blob   00ff10$' out"
check "get --json" sh -c "$S get a.db notes k2 --json > out && grep -qx '{\"key\":\"k2\",\"title\":\"world\",\"body\":null,\"n\":null,\"score\":null,\"blob\":null}' out"
check "put on an existing row keeps the other columns" sh -c "$S put a.db notes k1 n=4 && $S get a.db notes k1 > out && grep -q '^title  hello$' out && grep -q '^n      4$' out"
check "\\NULL stores the text NULL" sh -c "$S put a.db notes k3 'title=\\NULL' && $S get a.db notes k3 > out && grep -q '^title  NULL$' out && grep -q '^body   NULL$' out"
status "get of a missing row exits 3" 3 "$S" get a.db notes nope
check "del" "$S" del a.db notes k3
status "del of a missing row exits 3" 3 "$S" del a.db notes k3
check "dump is aligned with a header" sh -c "$S dump a.db notes > out && head -1 out | grep -q '^key  title  body       n     score  blob\$' && grep -q '^k2   world  NULL       NULL  NULL   NULL\$' out && [ \$(wc -l < out) = 3 ]"
check "log shows the delete" sh -c "$S log a.db > out && grep -q 'k3 .* deleted' out && grep -q 'k1 .* live' out"
check "log --since skips older versions" sh -c "$S log a.db --since 3 > out && ! grep -q ' k2 ' out && grep -q ' k3 ' out"
check "log --unordered lists the same rows, here in key order (a scan)" sh -c "$S log a.db > out && $S log a.db --unordered > out2 && [ \"\$(sort out)\" = \"\$(sort out2)\" ] && tail -n +2 out2 | awk '{print \$3}' | sort -c && ! tail -n +2 out | awk '{print \$3}' | sort -c 2>/dev/null"
check "log --json: one object per row, the key typed" sh -c "$S log a.db --json > out && python3 -c \"
import json
rows = [json.loads(l) for l in open('out')]
assert [r['key'] for r in rows if r['state'] == 'deleted'] == ['k3'] and all(r['table'] == 'notes' and r['hlc'] > 0 for r in rows), rows
\""
check "vv names this replica" sh -c "$S vv a.db > out && grep -q '(this replica)' out"
jcheck "init --json: db, tables, site" "$S init j.db --table t:text v:text --table u:integer w:real --json && $S put j.db t k v=x" "
assert d['db'] == 'j.db' and d['tables'] == 2 and len(d['site']) == 32, d
assert [r['site'] for r in map(json.loads, txt.splitlines()) if r['self']] == [d['site']]" "$S vv j.db --json"
jcheck "schema --json: the tables and columns of the schema file" "$S schema a.db --json" "
assert d['db'] == 'a.db' and len(d['hash']) == 16 and d['version'] >= 1, d
lines = ['table %s %s' % (t['name'], t['key']) if i < 0 else '  %s %s%s%s' % (c['name'], c['type'], ' notnull' if c['notnull'] else '', ' local' if c['local'] else '')
         for t in d['tables'] for i, c in [(-1, None)] + list(enumerate(t['columns']))]
assert lines == txt.splitlines()[1:], lines" "$S schema a.db"
check "schema prints a schema file" sh -c "$S schema a.db > schema.txt && grep -q '^table notes text\$' schema.txt && grep -q '^  title text notnull\$' schema.txt"

# --- a full disk (a file size limit stands in for it) ----------------
# The limit cuts LMDB's write short (which it reports as EIO) or refuses
# it (EFBIG): either way the file may not grow, and that is a full disk.
BIG=$(python3 -c "print('ab' * 60000)")
for lim in 70 100; do
  "$S" init full$lim.db --table t:text b:blob > /dev/null
  status "a write past the file size limit ($lim blocks) fails (1)" 1 sh -c "trap '' XFSZ; ulimit -f $lim; exec $S put full$lim.db t k b=$BIG"
  has "no space left" && ! has "failed: [a-z ]*failed" && ! has "full$lim.db: [a-z ]*: full$lim.db" \
    && ok "and says what failed once" || bad "full disk message says it twice"
done

# A copied file whose open gets one page more before the disk is "full"
# (a file size limit again): its first write (the new path) fits, the
# site id of its own a copy takes does not.  "open failed: commit failed:
# I/O error" named two failures where there is one.
for pages in 1; do
  rm -f cp$pages.db cp$pages.db-lock cpo$pages.db cpo$pages.db-lock
  "$S" init cpo$pages.db --table t:text v:text > /dev/null && "$S" put cpo$pages.db t k v=1 &&
    cp cpo$pages.db cp$pages.db && "$S" get cp$pages.db t k > /dev/null
  blocks=$(( $(wc -c < cp$pages.db) / 512 + 8 * pages ))
  status "a copy opened for a write with $pages page(s) of room left fails (1)" 1 sh -c "trap '' XFSZ; ulimit -f $blocks; exec $S put cp$pages.db t k v=2"
  has "cp$pages.db: cannot open: .* (the file is a copy of a replica, and taking a site id of its own needs a write)" && ! has "failed: [a-z ]*failed" \
    && ok "and says so once, with the cause" || bad "copy open message says it twice"
done

# A copied file opened on a full disk: the open's own write (the copy
# takes a site id of its own) fails, and the message says so once.  A
# 1 MiB tmpfs is the full disk; mounting one needs root.
if [ "$(id -u)" = 0 ] && mkdir fulldisk && mount -t tmpfs -o size=1m tmpfs fulldisk 2>/dev/null; then
  "$S" init fulldisk/orig.db --table t:text v:text > /dev/null && "$S" put fulldisk/orig.db t k v=1 &&
    cp fulldisk/orig.db fulldisk/copy.db && "$S" get fulldisk/copy.db t k > /dev/null # makes its lock file
  dd if=/dev/zero of=fulldisk/fill bs=1k 2>/dev/null
  status "opening a copy on a full disk to write fails (1)" 1 "$S" put fulldisk/copy.db t k v=2
  # Which of the open's writes meets the full disk depends on the pages
  # free: the file's new path or the copy's site id; either is said once.
  has "copy.db: [a-z ]*: no space left on the file system" && ! has "failed: [a-z ]*failed" \
    && ok "and says what failed once" || bad "full disk open message"
  rm -f fulldisk/fill
  check "with room again the copy opens and takes the write" sh -c "$S put fulldisk/copy.db t k v=2 && $S get fulldisk/copy.db t k | grep -q '^v  2\$'"
  # A file whose lock file does not exist yet, on a full disk: LMDB maps
  # the lock file, and a page of it the disk has no room for would kill
  # the process (SIGBUS) at the first touch.
  cp fulldisk/orig.db fulldisk/nolock.db
  dd if=/dev/zero of=fulldisk/fill bs=1k 2>/dev/null
  status "reading a file with no lock file on a full disk fails (1), no crash" 1 "$S" get fulldisk/nolock.db t k
  has "nolock.db-lock: no space left" && ok "and says the lock file found no room" || bad "lock file message"
  [ ! -e fulldisk/nolock.db-lock ] && ok "and leaves no lock file behind" || bad "a lock file was left"
  rm -f fulldisk/fill
  check "with room again it reads" sh -c "$S get fulldisk/nolock.db t k | grep -q '^v  1\$'"
  # A compacted copy written from a file elsewhere to a disk with 16 KiB
  # left: LMDB's write stops short (EIO), on the copy's file system, not
  # the source's; the message says the disk is full.
  "$S" init fdsrc.db --table t:text b:blob > /dev/null && "$S" put fdsrc.db t k b=$BIG > /dev/null
  dd if=/dev/zero of=fulldisk/fill bs=1k 2>/dev/null
  truncate -s -16k fulldisk/fill
  status "a compacted copy onto a full disk fails (1)" 1 "$S" compact fdsrc.db fulldisk/fdcopy.db
  has "no space left on the file system" && ok "and says the disk is full" || bad "compact onto a full disk message"
  [ ! -e fulldisk/fdcopy.db ] && ok "and leaves no copy behind" || bad "a partial copy was left"
  rm -f fulldisk/fill
  umount fulldisk
else
  skip "a copy opened on a full disk (mounting a tmpfs needs root)"
fi

# --- dump and load round trip ----------------------------------------
check "init from a schema file" "$S" init b.db --schema schema.txt
check "dump --json | load" sh -c "$S dump a.db notes --json > rows.jsonl && $S load b.db notes rows.jsonl > out && grep -q 'loaded 2 rows' out"
check "the loaded copy has the same digest" sh -c "[ \"\$($S digest a.db)\" = \"\$($S digest b.db)\" ]"
printf '{"key":"j1","title":"esc \\"q\\" \\u00e9 \\n"}\n{"key":"j2","title":"x","n":"seven"}\n' > badrows.jsonl
status "a bad JSON line stops the load" 1 "$S" load b.db notes badrows.jsonl --batch 1
has "badrows.jsonl:2: column 'n' is integer" && ok "and names the line and the column" || bad "load error message"
check "rows before the bad line's batch stay loaded" sh -c "$S get b.db notes j1 --json > out && grep -q 'esc \\\\\"q\\\\\" é \\\\n' out"
check "load from stdin" sh -c "echo '{\"key\":\"s1\",\"title\":\"from stdin\",\"score\":2}' | $S load b.db notes - && $S get b.db notes s1 > out && grep -q '^score  2.0\$' out"
# Every real the library stores comes back from dump --json | load exactly.
"$S" init jr1.db --table t:text r:real i:integer > /dev/null
"$S" init jr2.db --table t:text r:real i:integer > /dev/null
printf '%s\n' '{"key":"a","r":"inf","i":9223372036854775807}' '{"key":"b","r":"-inf","i":-9223372036854775808}' \
  '{"key":"c","r":"nan","i":0}' '{"key":"d","r":-0.0,"i":-1}' '{"key":"e","r":5e-324,"i":null}' \
  '{"key":"f","r":1.7976931348623157e308,"i":null}' '{"key":"g","r":0.1,"i":null}' '{"key":"h","r":-2.5e-300,"i":null}' \
  '{"key":"j","r":0.30000000000000004,"i":null}' '{"key":"k","r":2.2250738585072014e-308,"i":null}' '{"key":"l","r":180.0,"i":null}' > reals.jsonl
check "load non-finite reals and 64-bit integers" "$S" load jr1.db t reals.jsonl
check "dump --json writes them as load reads them" sh -c "$S dump jr1.db t --json > out && cmp out reals.jsonl"
check "and they load back exactly (same digest, same dump)" sh -c "$S load jr2.db t reals.jsonl > /dev/null && [ \"\$($S digest jr1.db)\" = \"\$($S digest jr2.db)\" ] && $S dump jr2.db t --json | cmp - reals.jsonl"
"$S" dump jr2.db t --json > reals.out
check "the reals are the same doubles as written (python reads them)" python3 -c "
import json, math
a = [json.loads(l) for l in open('reals.jsonl')]
b = [json.loads(l) for l in open('reals.out')]
assert len(a) == len(b) == 11
for x, y in zip(a, b):
    assert x == y or (x['r'] == y['r'] == 'nan'), (x, y)
    if isinstance(x['r'], float): assert math.copysign(1, x['r']) == math.copysign(1, y['r']), (x, y)
"
printf '%s\n' '{"key":"f","r":1.7976931348623157e+308}' > eplus.jsonl
check "a real written 1.7976931348623157e+308 loads as DBL_MAX" sh -c "$S load jr2.db t eplus.jsonl > /dev/null && $S dump jr2.db t --json | grep -qx '{\"key\":\"f\",\"r\":1.7976931348623157e308,\"i\":null}'"
check "inf and nan are not NULL after a round trip" sh -c "$S get jr2.db t a > out && grep -q '^r  inf\$' out && $S get jr2.db t c > out && grep -q '^r  nan\$' out"
for bad in '"r":1e999' '"r":+1' '"i":01' '"r":.5' '"r":1.' '"i":9223372036854775808' '"r":1.5} x' '"r":1.5,"r":2' '"r":"1.5"'; do
  printf '{"key":"ok","r":1.5}\n{"key":"x",%s}\n' "$bad" > badnum.jsonl
  status "load refuses $bad (1)" 1 "$S" load jr2.db t badnum.jsonl
  has "badnum.jsonl:2: " && ok "and names the line" || bad "line of $bad"
done
check "add-column" sh -c "$S add-column b.db notes tag:text > out && $S schema b.db | grep -q '^  tag text\$'"
jcheck "add-column --json" "$S add-column b.db notes tag2:integer --json" "
assert d == {'table': 'notes', 'column': 'tag2', 'type': 'integer', 'schema_version': 3}, d"
jcheck "load --json: table and rows" "$S dump a.db notes --json | $S load b.db notes - --json" "
assert d == {'table': 'notes', 'rows': 2}, d"
# Text is kept byte for byte: NUL in a string, bytes that are not UTF-8
# as {\"hex\": ...}.
"$S" init tx1.db --table t:text s:text > /dev/null
"$S" init tx2.db --table t:text s:text > /dev/null
"$S" put tx1.db t bad "s=$(printf 'a\377b')"
"$S" put tx1.db t "$(printf 'k\376')" s=key-not-utf8
printf '%s\n' '{"key":"nul","s":"x\u0000y"}' '{"key":"hex","s":{"hex":"ff00fe"}}' | "$S" load tx1.db t - > /dev/null
jcheck "dump --json writes text that is not UTF-8 as hex, NUL as \\u0000" "$S dump tx1.db t --json" "
r = {json.dumps(x['key']): x['s'] for x in rows}
assert r == {'\"bad\"': {'hex': '61ff62'}, '\"hex\"': {'hex': 'ff00fe'}, '{\"hex\": \"6bfe\"}': 'key-not-utf8', '\"nul\"': 'x\\x00y'}, r"
check "and load reads it back byte for byte (same digest, same dump)" sh -c "$S dump tx1.db t --json | $S load tx2.db t - > /dev/null && [ \"\$($S digest tx1.db)\" = \"\$($S digest tx2.db)\" ] && [ \"\$($S dump tx1.db t --json)\" = \"\$($S dump tx2.db t --json)\" ]"
status "a notnull column cannot be added" 1 "$S" add-column b.db notes must:text:notnull

# --- sync between two files -------------------------------------------
check "init c.db" "$S" init c.db --schema schema.txt
# --- counters ---------------------------------------------------------
"$S" init cnt1.db --table stock:text qty:counter name:text > /dev/null
"$S" init cnt2.db --table stock:text qty:counter name:text > /dev/null
check "add to a counter creates the row" "$S" add cnt1.db stock sku1 qty=+5
check "add a negative amount" "$S" add cnt1.db stock sku1 qty=-3
check "get shows the counter's sum" sh -c "$S get cnt1.db stock sku1 > out && grep -q '^qty   2\$' out && grep -q '^name  NULL\$' out"
check "adds on two files both count after a sync" sh -c "$S add cnt2.db stock sku1 qty=10 && $S sync cnt2.db cnt1.db > /dev/null && $S sync cnt1.db cnt2.db > /dev/null && $S get cnt2.db stock sku1 --json > out && grep -q '\"qty\":12' out && [ \"\$($S digest cnt1.db)\" = \"\$($S digest cnt2.db)\" ]"
check "dump shows the counter" sh -c "$S dump cnt1.db stock > out && grep -q '^sku1  12 ' out"
status "put refuses a value for a counter (1)" 1 "$S" put cnt1.db stock sku1 qty=3
has "is a counter: change it with 'synctl add'" && ok "and says to use add" || bad "put on a counter message"
status "add on a column that is not a counter (1)" 1 "$S" add cnt1.db stock sku1 name=+1
status "add with a value that is not a number is refused (1)" 1 "$S" add cnt1.db stock sku1 qty=x
status "add without COL=N is a usage error (2)" 2 "$S" add cnt1.db stock sku1 qty
check "schema shows the counter type" sh -c "$S schema cnt1.db > out && grep -q '^  qty counter\$' out"
# load sets a counter by adding (loaded value - value now) to the row.
"$S" put cnt1.db stock sku2 name=bolt
"$S" add cnt1.db stock sku3 qty=-7
"$S" dump cnt1.db stock --json > cnt.jsonl
"$S" init cnt3.db --table stock:text qty:counter name:text > /dev/null
check "dump --json | load of a table with a counter: the same rows" sh -c "$S load cnt3.db stock cnt.jsonl > out && grep -q 'loaded 3 rows' out && $S dump cnt3.db stock --json | cmp - cnt.jsonl && grep -q '\"qty\":-7' cnt.jsonl"
check "loading it twice changes nothing (no write, same rows)" sh -c "$S log cnt3.db > log1 && $S load cnt3.db stock cnt.jsonl > /dev/null && $S log cnt3.db | cmp - log1 && $S dump cnt3.db stock --json | cmp - cnt.jsonl"
"$S" init cnt4.db --table stock:text qty:counter name:text > /dev/null
"$S" add cnt4.db stock sku1 qty=+100
"$S" add cnt4.db stock sku3 qty=+4
check "load into a file whose counters have adds brings them to the loaded values" sh -c "$S load cnt4.db stock cnt.jsonl > /dev/null && $S dump cnt4.db stock --json | cmp - cnt.jsonl"
"$S" init cnt5.db --table stock:text qty:counter name:text > /dev/null
"$S" sync cnt5.db cnt4.db > /dev/null
"$S" add cnt5.db stock sku1 qty=+1
printf '%s\n' '{"key":"sku1","qty":20,"name":null}' > cnt20.jsonl
check "a load replicates as adds: an add made meanwhile elsewhere counts on top" sh -c "$S load cnt4.db stock cnt20.jsonl > /dev/null && $S get cnt4.db stock sku1 > out && grep -q '^qty   20\$' out && $S sync cnt5.db cnt4.db > /dev/null && $S get cnt4.db stock sku1 > out && grep -q '^qty   21\$' out && $S get cnt5.db stock sku1 > out && grep -q '^qty   21\$' out"
printf '%s\n' '{"key":"sku1","qty":null}' '{"key":"sku9","name":"new"}' > cntnull.jsonl
check "load leaves a counter given as null or left out as it is" sh -c "$S load cnt4.db stock cntnull.jsonl > /dev/null && $S get cnt4.db stock sku1 > out && grep -q '^qty   21\$' out && $S get cnt4.db stock sku9 > out && grep -q '^qty   0\$' out"
printf '%s\n' '{"key":"big","qty":9223372036854775807}' '{"key":"big","qty":-9223372036854775808}' > cntbig.jsonl
check "load takes a counter from INT64_MAX to INT64_MIN (a difference past 64 bits signed)" sh -c "$S load cnt4.db stock cntbig.jsonl --batch 1 > /dev/null && $S get cnt4.db stock big > out && grep -q '^qty   -9223372036854775808\$' out"
printf '%s\n' '{"key":"big","qty":0}' '{"key":"big","qty":-1}' > cntlim.jsonl
status "load refuses an add past this replica's 64-bit total (1)" 1 "$S" load cnt4.db stock cntlim.jsonl --batch 1
has "cntlim.jsonl:2: column 'qty': .*past 2^64 - 1" && ok "and says why" || bad "load counter limit message"
check "the batch before it stays" sh -c "$S get cnt4.db stock big > out && grep -q '^qty   0\$' out"
printf '%s\n' '{"key":"sku1","qty":1.5}' > cntbad.jsonl
status "load refuses a counter value that is not a whole number (1)" 1 "$S" load cnt4.db stock cntbad.jsonl
has "cntbad.jsonl:1: column 'qty' is counter" && ok "and names the line and the column" || bad "load counter error message"

check "sync two files" sh -c "$S sync c.db a.db > out && grep -q '^synced with a.db: received 3 rows' out"
check "both files have the same digest" sh -c "[ \"\$($S digest a.db)\" = \"\$($S digest c.db)\" ] && [ \"\$($S digest a.db notes)\" = \"\$($S digest c.db notes)\" ]"
status "--max-message below 64 bytes is a usage error (2)" 2 "$S" sync c.db a.db --max-message 63
check "a sync in 64-byte messages" sh -c "cp a.db tiny-src.db && $S init tiny.db --schema schema.txt > /dev/null && $S sync tiny.db tiny-src.db --max-message 64 > out && [ \"\$($S digest tiny-src.db)\" = \"\$($S digest tiny.db)\" ]"

# --- retiring a device: its counter adds fold into the server's ------
# Two devices add to counters and sync with a server file; the server
# retires one (it is its heir); the other learns of it at its next sync.
"$S" init rsrv.db --table stock:text qty:counter > /dev/null
"$S" init rdev.db --table stock:text qty:counter > /dev/null
"$S" init rdev2.db --table stock:text qty:counter > /dev/null
"$S" add rsrv.db stock sku1 qty=+100
"$S" add rdev.db stock sku1 qty=+5
"$S" add rdev.db stock sku2 qty=+7
"$S" add rdev2.db stock sku1 qty=+3
# own_site DB: the site id vv marks as this replica's.
own_site() { "$S" vv "$1" | sed -n 's/^\([0-9a-f]\{32\}\) .*(this replica)$/\1/p'; }
RDEV=$(own_site rdev.db)
RSRV=$(own_site rsrv.db)
check "both devices' adds reach the server" sh -c "$S sync rdev.db rsrv.db > /dev/null && $S sync rdev2.db rsrv.db > /dev/null && $S sync rdev.db rsrv.db > /dev/null && $S get rsrv.db stock sku1 --json > out && grep -qx '{\"key\":\"sku1\",\"qty\":108}' out && $S get rsrv.db stock sku2 --json | grep -qx '{\"key\":\"sku2\",\"qty\":7}'"
check "vv names the device and the server" sh -c "echo '$RDEV $RSRV' | grep -qx '[0-9a-f]\{32\} [0-9a-f]\{32\}' && [ '$RDEV' != '$RSRV' ] && $S vv rsrv.db | grep -q '^$RDEV '"
check "folds on a file with none: no record" sh -c "$S folds rsrv.db > out && [ \"\$(cat out)\" = '0 fold records' ] && [ -z \"\$($S folds rsrv.db --json)\" ]"
check "retire the device on the server" sh -c "$S retire rsrv.db $RDEV > out && grep -qx 'retired $RDEV to this replica, $RSRV, at [0-9T:.Z+-]*' out && grep -qx 'counter cells folded; 0 tombstones collected' out"
check "folds lists the record: the device, the server its heir" sh -c "$S folds rsrv.db > out && grep -q '^$RDEV  $RSRV  .*  (heir: this replica)\$' out && grep -qx '1 fold record' out && [ \$(wc -l < out) = 3 ]"
jcheck "folds --json: site, heir, self, hlc, time, held" "$S folds rsrv.db --json" "
assert set(d) == {'site', 'heir', 'self', 'hlc', 'time', 'held', 'held_time'}, d
assert d['site'] == '$RDEV' and d['heir'] == '$RSRV' and d['self'] is True and d['hlc'] > d['held'] > 0, d
assert txt.splitlines()[1].split()[:4] == ['$RDEV', '$RSRV', d['time'], d['held_time']], txt" "$S folds rsrv.db"
check "the server's counters keep their values" sh -c "$S get rsrv.db stock sku1 --json > out && grep -qx '{\"key\":\"sku1\",\"qty\":108}' out && $S get rsrv.db stock sku2 --json | grep -qx '{\"key\":\"sku2\",\"qty\":7}'"
check "verify: sound, one fold record, no health line" sh -c "$S verify rsrv.db > out && grep -q ' conflicts recorded, 1 fold record: sound\$' out && ! grep -q '^health:' out"
check "stats: one fold record, none pending" sh -c "$S stats rsrv.db > out && grep -qx 'fold records       1' out && grep -qx 'fold pending       no' out"
jcheck "verify --json and stats --json: folds 1, fold_pending false" "$S verify rsrv.db --json" "
assert d['sound'] is True and d['folds'] == 1 and d['health']['fold_pending'] is False, d
s = json.loads(txt)
assert s['folds'] == 1 and s['fold_pending'] is False, s" "$S stats rsrv.db --json"
"$S" digest rsrv.db > rdigest
status "retiring the server's own id fails (1)" 1 "$S" retire rsrv.db "$RSRV"
has "rsrv.db: $RSRV is this replica's own site id: a replica cannot retire itself" && ok "and says it is this replica's own id" || bad "retire own id message"
status "retiring a site the server holds no change of fails (1)" 1 "$S" retire rsrv.db 0123456789abcdef0123456789abcdef
has "rsrv.db: holds no change of site 0123456789abcdef0123456789abcdef, so it cannot be its heir" && ok "and says it cannot be its heir" || bad "retire unknown site message"
status "retiring the device twice fails (1)" 1 "$S" retire rsrv.db "$RDEV"
has "rsrv.db: site $RDEV is retired already, to $RSRV (this replica) at " && ok "and says to whom it is retired" || bad "retire twice message"
status "a site id in capitals reads the same (retired already, 1)" 1 "$S" retire rsrv.db "$(echo "$RDEV" | tr a-f A-F)"
has "site $RDEV is retired already" && ok "and names it in small letters" || bad "retire in capitals"
status "a SITE that is not 32 hex digits is a usage error (2)" 2 "$S" retire rsrv.db "${RDEV%?}g"
has "'${RDEV%?}g' is not a site id: give its 32 hex digits" && ok "and says what a site id is" || bad "retire malformed site message"
status "retire without SITE is a usage error (2)" 2 "$S" retire rsrv.db
check "the refused retirements changed nothing" sh -c "$S digest rsrv.db | cmp - rdigest && $S folds rsrv.db --json > out && [ \$(wc -l < out) = 1 ]"
check "the other device gets the record with its next sync; its sums stay" sh -c "$S sync rdev2.db rsrv.db > /dev/null && $S folds rdev2.db > out && grep -q '^$RDEV  $RSRV  ' out && ! grep -q 'this replica' out && $S get rdev2.db stock sku1 --json | grep -qx '{\"key\":\"sku1\",\"qty\":108}' && [ \"\$($S digest rdev2.db)\" = \"\$($S digest rsrv.db)\" ]"
status "retire on the other device: retired already, by the server (1)" 1 "$S" retire rdev2.db "$RDEV"
has "rdev2.db: site $RDEV is retired already, to $RSRV at " && ! has "(this replica)" && ok "and names the server as the heir" || bad "retired elsewhere message"
# The retired device had not stopped after all: its next sync tells it
# and it takes a new site id; the add it made meanwhile under the old id
# is dropped where it meets the server's contribution (sync.h: retire
# only a site that has stopped), and its adds under the new id count.
"$S" add rdev.db stock sku1 qty=+1
check "the retired device, syncing again, is told and takes a new site id; sync says the add it made after its retirement was dropped" sh -c "$S sync rdev.db rsrv.db > out 2>&1 && grep -q \"a peer retired this replica's site id: it took a new site id\" out && grep -q '^1 counter contribution of retired sites dropped (1 here, 0 there) held adds made after the retirement' out"
RDEVN=$(own_site rdev.db)
check "its new id is not the retired one, and it holds the record" sh -c "echo '$RDEVN' | grep -qx '[0-9a-f]\{32\}' && [ '$RDEVN' != '$RDEV' ] && $S folds rdev.db > out && grep -q '^$RDEV  $RSRV  ' out"
check "the add it made after its retirement is dropped: 108 on both" sh -c "$S get rdev.db stock sku1 --json | grep -qx '{\"key\":\"sku1\",\"qty\":108}' && $S get rsrv.db stock sku1 --json | grep -qx '{\"key\":\"sku1\",\"qty\":108}'"
check "its adds under the new id count: 110 on both" sh -c "$S add rdev.db stock sku1 qty=+2 && $S sync rdev.db rsrv.db > /dev/null && $S get rdev.db stock sku1 --json | grep -qx '{\"key\":\"sku1\",\"qty\":110}' && $S get rsrv.db stock sku1 --json | grep -qx '{\"key\":\"sku1\",\"qty\":110}' && [ \"\$($S digest rdev.db)\" = \"\$($S digest rsrv.db)\" ]"
jcheck "retire --json: the record, the sites retired with it, the tombstones collected" "$S add rdev2.db stock sku3 qty=+2 > /dev/null && $S sync rdev2.db rsrv.db > /dev/null && $S retire rsrv.db $(own_site rdev2.db) --json" "
assert d['site'] == '$(own_site rdev2.db)' and d['heir'] == '$RSRV' and d['self'] is True and d['also'] == [] and d['collected'] == 0, d
assert [r for r in map(json.loads, txt.splitlines()) if r['site'] == d['site']] == [{k: d[k] for k in ('site', 'heir', 'self', 'hlc', 'time', 'held', 'held_time')}], txt" "$S folds rsrv.db --json"

"$S" init rsrv2.db --table stock:text qty:counter > /dev/null
check "a server taken out of service: its heir takes the sites it was heir of" sh -c "$S sync rsrv2.db rsrv.db > /dev/null && $S retire rsrv2.db $RSRV > out && grep -qx 'also retired, as $RSRV was its heir: $RDEV' out && grep -qx \"also retired, as $RSRV was its heir: \$(cd . && $S vv rdev2.db | sed -n 's/^\([0-9a-f]\{32\}\) .*(this replica)\$/\1/p')\" out && [ \$(grep -c '^also retired' out) = 2 ] && $S folds rsrv2.db > out && [ \$(grep -c '(heir: this replica)\$' out) = 3 ] && grep -qx '5 fold records' out && $S get rsrv2.db stock sku1 --json | grep -qx '{\"key\":\"sku1\",\"qty\":110}'"

# A retirement whose folding is cut short (a file size limit stands in
# for a full disk): the retirement commits, the folding does not, and
# gc finishes it.  3000 rows make the folding grow the file.
"$S" init fsrv.db --table stock:text qty:counter > /dev/null
"$S" init fdev.db --table stock:text qty:counter > /dev/null
python3 -c '
for i in range(3000): print("{\"key\":\"sku%05d\",\"qty\":%d}" % (i, i + 1))' > fold.jsonl
"$S" load fdev.db stock fold.jsonl > /dev/null
"$S" sync fdev.db fsrv.db > /dev/null
"$S" digest fsrv.db > fdigest
FDEV=$(own_site fdev.db)
status "a retirement whose folding fails on a full disk fails (1)" 1 sh -c "trap '' XFSZ; ulimit -f $(( $(wc -c < fsrv.db) / 512 )); exec $S retire fsrv.db $FDEV"
has "fsrv.db: folding the counter cells failed: " && has "fsrv.db: the site is retired; 'synctl gc fsrv.db' finishes folding its counter cells" \
  && ok "and says the retirement stands and gc finishes it" || bad "cut short retirement message"
check "folds lists it, and says cells are still to fold" sh -c "$S folds fsrv.db > out && grep -q '^$FDEV  ' out && grep -qx \"1 fold record; counter cells still to fold here ('synctl gc' goes on with them)\" out"
check "verify says a fold is pending, and the file is sound" sh -c "$S verify fsrv.db > out && grep -qx \"health: a retired site's counter cells are not all folded into its heir's yet ('synctl gc fsrv.db' finishes it)\" out && grep -q ', 1 fold record: sound\$' out"
jcheck "verify --json and stats --json: fold_pending true" "$S verify fsrv.db --json" "
assert d['sound'] is True and d['folds'] == 1 and d['health']['fold_pending'] is True, d
s = json.loads(txt)
assert s['folds'] == 1 and s['fold_pending'] is True, s" "$S stats fsrv.db --json"
check "stats says a fold is pending" sh -c "$S stats fsrv.db > out && grep -q '^fold pending       yes' out"
check "gc finishes the fold and says so; the digest (every sum) is unchanged" sh -c "$S gc fsrv.db > out && grep -qx 'finished folding the counter cells of the sites retired here' out && $S verify fsrv.db > out && ! grep -q '^health:' out && $S stats fsrv.db | grep -qx 'fold pending       no' && $S folds fsrv.db | grep -qx '1 fold record' && $S digest fsrv.db | cmp - fdigest"

# --- a rolling schema change: files whose schemas differ ---------------
$S init rs1.db --table notes:text title:text > /dev/null
$S init rs2.db --table notes:text title:text > /dev/null
$S add-column rs2.db notes tag:text > /dev/null
check "schema --diff shows an appended column" sh -c "$S schema rs1.db --diff rs2.db > out && grep -q '^only in rs2.db: notes.tag text\$' out && grep -q '^compatible: they sync' out"
check "schema --diff of a file with itself says equal" sh -c "$S schema rs1.db --diff rs1.db > out && grep -q '^equal' out"
jcheck "schema --diff --json: the same lines and the verdict" "$S schema rs1.db --diff=rs2.db --json" "
assert d['verdict'] == 'compatible' and d['a']['db'] == 'rs1.db' and d['b']['version'] == 2, d
assert d['differences'] == [l for l in txt.splitlines() if l[:1] != '#' and not l.startswith('compatible')], d" "$S schema rs1.db --diff rs2.db"
check "files whose schemas differ by a column sync" sh -c "$S put rs2.db notes k1 title=t tag=red > /dev/null && $S sync rs1.db rs2.db > out && grep -q 'received 1 row' out"
check "the file without the column keeps its values" sh -c "$S add-column rs1.db notes tag:text > /dev/null && $S get rs1.db notes k1 > out && grep -q '^tag *red\$' out"
$S init rs3.db --table notes:text title:integer > /dev/null
status "schema --diff of incompatible files exits 1" 1 "$S" schema rs1.db --diff rs3.db
has "^differs: notes column 0 is 'title' text in rs1.db, 'title' integer in rs3.db\$" && has "^incompatible" && ok "and names the column on both sides" || bad "schema --diff message"
status "files with incompatible schemas do not sync" 1 "$S" sync rs3.db rs1.db
has "table 'notes' column 0 is 'title' TEXT on the server but 'title' INTEGER on the client" && ok "and the message names the table and the column" || bad "schema mismatch message"
check "sync --json is one JSON object that adds up" sh -c "$S put a.db notes j9 title=json > /dev/null && $S sync c.db a.db --json > out && python3 -c \"
import json
d = json.loads(open('out').read())
assert d['with'] == 'a.db' and d['received'] == 1 and d['new'] + d['updated'] + d['deleted'] + d['unchanged'] + d['refused'] + d['unknown'] == d['received'], d
assert len(d['digest']) == 16 and d['dry_run'] is False
\""
check "vv --json" sh -c "$S vv c.db --json > out && python3 -c \"
import json
rows = [json.loads(l) for l in open('out')]
assert sum(r['self'] for r in rows) == 1 and all(len(r['site']) == 32 and r['hlc'] > 0 for r in rows), rows
\""
check "peers --json" sh -c "$S peers c.db --json > out && python3 -c \"
import json
rows = [json.loads(l) for l in open('out')]
assert len(rows) == 1 and set(rows[0]) == {'peer', 'cursor', 'acknowledged', 'tombstones'}, rows
\""
check "peers lists the other file" sh -c "$S peers a.db > out && grep -q '^1 peer' out"
check "a dry run writes nothing" sh -c "$S put a.db notes d1 title=dry && $S sync c.db a.db --dry-run > out && grep -q 'would insert 1' out && $S sync c.db a.db --dry-run > out && grep -q 'would insert 1' out && ! $S get c.db notes d1 > /dev/null 2>&1"
check "--pull only receives" sh -c "$S put c.db notes p1 title=push-me && $S sync c.db a.db --pull > out && grep -q 'sent 0 rows' out && ! $S get a.db notes p1 > /dev/null 2>&1"
check "--push sends" sh -c "$S sync c.db a.db --push > out && $S get a.db notes p1 > /dev/null"

check "--tables limits the sync to those tables" sh -c "
cat > two.txt <<'SCHEMA'
# two tables
table readings text
  temp real
table settings integer
  value text notnull
SCHEMA
$S init t1.db --schema two.txt > /dev/null && $S init t2.db --schema two.txt > /dev/null &&
$S put t1.db readings r1 temp=20.5 && $S put t1.db settings 7 value=seven &&
$S sync t2.db t1.db --tables settings > out && $S get t2.db settings 7 > /dev/null &&
! $S get t2.db readings r1 > /dev/null 2>&1 &&
[ \"\$($S digest t1.db settings)\" = \"\$($S digest t2.db settings)\" ] &&
[ \"\$($S digest t1.db readings)\" != \"\$($S digest t2.db readings)\" ]"
status "--tables with an unknown table fails" 1 "$S" sync t2.db t1.db --tables nope
check "--tables widened brings the new table, narrowed removes the old, without a reset" sh -c "
$S sync t2.db t1.db --tables settings,readings > /dev/null && $S get t2.db readings r1 > /dev/null &&
$S sync t2.db t1.db --tables readings > /dev/null && ! $S get t2.db settings 7 > /dev/null 2>&1 &&
$S get t1.db settings 7 > /dev/null && $S get t2.db readings r1 > /dev/null"

# --- conflicts --------------------------------------------------------
$S put a.db notes k1 title=from-a > /dev/null
$S put c.db notes k1 title=from-c > /dev/null
check "concurrent writes sync with a conflict" sh -c "$S sync c.db a.db > out && cp out sync-conflict.out && grep -q '1 here' out"
check "the breakdown of the rows received adds up when a row loses to a local write" python3 -c "
import re
line = open('sync-conflict.out').read()
m = re.search(r'received (\d+) rows? \((\d+) new, (\d+) updated, (\d+) deleted, (\d+) unchanged\)', line)
assert m, line
n, *parts = map(int, m.groups())
assert n == 1 and sum(parts) == n and parts[3] == 1, line
"
check "both hold the later write" sh -c "$S get a.db notes k1 | grep -q '^title  from-c\$' && [ \"\$($S digest a.db)\" = \"\$($S digest c.db)\" ]"
check "conflicts lists it" sh -c "$S conflicts c.db > out && grep -q 'both-modified .*notes .*k1 .*title .*local .*open' out && grep -q '^1 unresolved conflict' out"
check "conflicts show prints both values" sh -c "$S conflicts c.db show 1 > out && grep -q 'local:  from-c' out && grep -q 'remote: from-a' out"
check "conflicts resolve" sh -c "$S conflicts c.db resolve 1 > out && $S conflicts c.db > out && grep -q '^0 unresolved conflicts' out && $S conflicts c.db list --all | grep -q resolved"
status "resolving a missing conflict exits 3" 3 "$S" conflicts c.db resolve 99
jcheck "conflicts --json list --all: one line per conflict" "$S conflicts c.db list --all --json" "
assert len(rows) == 1 and rows[0]['id'] == 1 and rows[0]['kind'] == 'both-modified' and rows[0]['table'] == 'notes', rows
assert rows[0]['key'] == 'k1' and rows[0]['column'] == 'title' and rows[0]['won'] == 'local' and rows[0]['resolved'] is True, rows"
jcheck "conflicts --json show: both values and stamps" "$S conflicts c.db --json show 1" "
assert d['local'] == 'from-c' and d['remote'] == 'from-a' and len(d['local_stamp']['site']) == 32 and d['remote_stamp']['hlc'] > 0, d"
jcheck "conflicts --json resolve-all" "$S conflicts a.db resolve-all --json" "
assert d == {'resolved': 1}, d"
check "resolve-all" sh -c "$S conflicts a.db resolve-all > out && grep -q 'marked 0 conflicts resolved' out"

# --- gc ---------------------------------------------------------------
check "a delete replicates and gc collects it" sh -c "$S del a.db notes k2 && $S sync c.db a.db > /dev/null && $S sync c.db a.db > /dev/null && $S gc c.db > out && grep -q 'collected [1-9][0-9]* tombstones*; 0 kept' out && ! $S get c.db notes k2 >/dev/null 2>&1"

# --- row history -----------------------------------------------------
check "init h.db" "$S" init h.db --table t:text v:integer
status "a table without history says so (3)" 3 "$S" history h.db t
check "history is turned on with a retention" sh -c "$S put h.db t a v=1 && $S history h.db t --versions 0 --max-age 0 > out && grep -q \"^table 't' keeps history\" out"
check "a row's versions, newest first" sh -c "$S put h.db t a v=2 && $S put h.db t a v=3 && $S del h.db t a && $S history h.db t a > out && [ \$(wc -l < out) = 4 ] && sed -n 1p out | grep -q ' local   deleted ' && sed -n 2p out | grep -q ' v=3\$' && sed -n 4p out | grep -q ' unknown live .* v=1\$'"
V2=$("$S" history h.db t a --json | sed -n 3p | sed 's/^{"version":\([0-9]*\),.*/\1/')
check "history --json names version, time, origin and the row" sh -c "$S history h.db t a --json > out && sed -n 3p out | grep -q '\"origin\":\"local\",\"deleted\":false,\"site\":\"[0-9a-f]\{32\}\",\"row\":{\"key\":\"a\",\"v\":2}'"
check "dump --as-of a version shows the row as it was" sh -c "$S dump h.db t --as-of $V2 --json > out && grep -qx '{\"key\":\"a\",\"v\":2}' out"
status "dump --as-of before the history fails (1)" 1 "$S" dump h.db t --as-of 0
has "before what the table's history keeps" && ok "and says why" || bad "as-of before history message"
status "dump --as-of a malformed point is a usage error (2)" 2 "$S" dump h.db t --as-of 2026-13-01
check "dump --as-of a time far ahead reads as now" sh -c "$S dump h.db t --as-of 2100-01-01T00:00:00Z > out && [ \$(wc -l < out) = 1 ]"
check "restore --as-of puts the table back" sh -c "$S restore h.db t --as-of $V2 > out && grep -q '^restored 1 rows' out && $S get h.db t a > out && grep -q '^v  2\$' out"
check "the restore replicates" sh -c "$S init h2.db --table t:text v:integer > /dev/null && $S sync h2.db h.db > /dev/null && $S get h2.db t a > out && grep -q '^v  2\$' out && [ \"\$($S digest h.db)\" = \"\$($S digest h2.db)\" ]"
check "history --off removes it" sh -c "$S history h.db t --off > /dev/null; $S history h.db t > out; [ \$? = 3 ] && grep -q 'keeps no history' out"
# A table with a counter: restore adds the difference, and adds made
# elsewhere meanwhile count on top of the restored value.
"$S" init hc.db --table t:text v:integer n:counter > /dev/null
"$S" history hc.db t --versions 0 --max-age 0 > /dev/null
"$S" put hc.db t a v=1
"$S" add hc.db t a n=+5
VC=$("$S" history hc.db t a --json | sed -n 1p | sed 's/^{"version":\([0-9]*\),.*/\1/')
"$S" add hc.db t a n=+3
"$S" add hc.db t b n=+9
"$S" init hc2.db --table t:text v:integer n:counter > /dev/null
"$S" sync hc2.db hc.db > /dev/null
"$S" add hc2.db t a n=+2
check "dump --as-of shows a counter's sum then" sh -c "$S dump hc.db t --as-of $VC --json > out && grep -qx '{\"key\":\"a\",\"v\":1,\"n\":5}' out && [ \$(wc -l < out) = 1 ]"
check "restore of a table with a counter" sh -c "$S restore hc.db t --as-of $VC > out && grep -q '^restored 2 rows' out && $S dump hc.db t --json > out && grep -qx '{\"key\":\"a\",\"v\":1,\"n\":5}' out && [ \$(wc -l < out) = 1 ]"
check "adds made concurrently elsewhere count on top of the restored value" sh -c "$S sync hc2.db hc.db > /dev/null && $S sync hc2.db hc.db > /dev/null && $S get hc.db t a > out && grep -q '^n  7\$' out && $S get hc2.db t a > out && grep -q '^n  7\$' out && [ \"\$($S digest hc.db)\" = \"\$($S digest hc2.db)\" ]"

# --- compact ----------------------------------------------------------
check "compact in place keeps the site id and the rows, and sync goes on" sh -c "$S digest c.db > d1 && $S vv c.db | grep 'this replica' | cut -c1-32 > s1 && $S compact c.db > out && grep -q '^c.db: [0-9]* bytes; compacted in place: [0-9]* bytes\$' out && $S digest c.db > d2 && $S vv c.db | grep 'this replica' | cut -c1-32 > s2 && cmp -s d1 d2 && cmp -s s1 s2 && [ -s s1 ] && [ ! -e c.db.compact ] && $S sync c.db a.db > /dev/null"
check "a compacted copy holds the rows and opens as a copy (a new site id)" sh -c "$S compact c.db cc.db > out && grep -q 'compacted into cc.db' out && $S digest c.db > d1 && $S digest cc.db > d2 && cmp -s d1 d2 && $S put cc.db notes kc title=x && [ \"\$($S vv cc.db | grep 'this replica' | cut -c1-32)\" != \"\$($S vv c.db | grep 'this replica' | cut -c1-32)\" ]"
status "compact to an existing file fails (1)" 1 "$S" compact c.db cc.db
has "already exists" && ok "and says it exists" || bad "compact onto an existing file: message"
jcheck "compact --json: the file, the copy and the sizes" "$S compact c.db cj.db --json" "
assert d['file'] == 'c.db' and d['out'] == 'cj.db' and 0 < d['bytes_after'] and d['bytes_before'] > 0, d
assert txt.startswith('c.db: ') and 'compacted into cj2.db' in txt, txt" "$S compact c.db cj2.db"
jcheck "compact --json in place: out is null" "$S compact c.db --json" "
assert d['file'] == 'c.db' and d['out'] is None and d['bytes_after'] > 0, d"
"$S" init cbig.db --table t:text b:blob > /dev/null
for k in k1 k2 k3; do "$S" put cbig.db t $k b=$BIG; done
"$S" digest cbig.db > cbigd1
status "a compacted copy past the file size limit fails (1)" 1 sh -c "trap '' XFSZ; ulimit -f 100; exec $S compact cbig.db cbigc.db"
has "cbigc.db: compacting failed" && [ ! -e cbigc.db ] && "$S" digest cbig.db | cmp -s - cbigd1 \
  && ok "and says so, leaves no copy and the file as it was" || bad "compact on a full disk"

# --- serve and sync over loopback -------------------------------------
cat > creds <<CREDS
# token   rights
good      read=* write=*
reader    read=notes
CREDS
"$S" serve a.db 127.0.0.1:0 --credentials creds --port-file port \
  --metrics 127.0.0.1:0 --metrics-port-file mport > serve.log 2>&1 &
SRV=$!
i=0
while { [ ! -s port ] || [ ! -s mport ]; } && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
A=127.0.0.1:$(cat port)
M=127.0.0.1:$(cat mport)
status "compact in place while served fails (1)" 1 "$S" compact a.db
has "another process has it open" && ok "and says another process has it open" || bad "compact of a served file: message"
check "compact of a served file to another file works" sh -c "$S compact a.db served-copy.db > out && [ \"\$($S digest a.db)\" = \"\$($S digest served-copy.db)\" ]"
check "init e.db" "$S" init e.db --schema schema.txt
check "sync over TCP" sh -c "$S sync e.db $A --token good > out && grep -q \"^synced with $A\" out"
check "the server's file and the client have the same digest" sh -c "[ \"\$($S digest a.db)\" = \"\$($S digest e.db)\" ]"
status "a bad token is refused (1)" 1 "$S" sync e.db "$A" --token wrong
has "the server refused the credentials" && ! has "()" && ok "and says the server refused the credentials" || bad "refused credentials message"
check "a read-only token's write is refused and taken back" sh -c "$S put e.db notes r1 title=x && $S sync e.db $A --token reader > out && grep -q '1 refused row went back' out && ! $S get a.db notes r1 > /dev/null 2>&1 && ! $S get e.db notes r1 > /dev/null 2>&1"
check "rejected lists the refused write with its reason" sh -c "$S rejected e.db > out && grep -q '^1 .*notes .*r1 .*table .*reverted' out && grep -q '^1 rejected write' out"
check "the device and the server hold the same again" sh -c "[ \"\$($S digest a.db)\" = \"\$($S digest e.db)\" ]"
check "rejected show prints what was written" sh -c "$S rejected e.db show 1 > out && grep -q 'title = x' out"
jcheck "rejected --json: one line per entry" "$S rejected e.db --json" "
assert len(rows) == 1 and rows[0]['key'] == 'r1' and rows[0]['reason'] == 'table' and rows[0]['state'] == 'reverted' and rows[0]['table'] == 'notes', rows"
jcheck "rejected --json show: the refused values" "$S rejected e.db show 1 --json" "
assert d['id'] == 1 and d['values']['title'] == 'x', d"
status "showing a missing rejection exits 3" 3 "$S" rejected e.db show 99
status "clearing a missing rejection exits 3" 3 "$S" rejected e.db clear 99
check "rejected clear-all empties the log" sh -c "$S rejected e.db clear-all > out && grep -q 'cleared 1 rejection' out && $S rejected e.db > out && grep -q '^0 rejected writes' out"
# A credential bound to a site id: the right replica works, another is refused.
check "init b2.db, f.db and g.db" sh -c "$S init b2.db --schema schema.txt && $S init f.db --schema schema.txt && $S init g.db --schema schema.txt && $S put f.db notes f1 title=f && $S put g.db notes g1 title=g"
FSITE=$("$S" vv f.db | grep '(this replica)' | cut -c1-32)
cat > creds2 <<CREDS
bound     read=* write=* site=$FSITE
CREDS
"$S" serve b2.db 127.0.0.1:0 --credentials creds2 --port-file port2 > serve2.log 2>&1 &
SRV2=$!
i=0
while [ ! -s port2 ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
A2=127.0.0.1:$(cat port2)
check "a bound credential works for its replica" sh -c "$S sync f.db $A2 --token bound > out && grep -q \"^synced with $A2\" out"
status "a bound credential used by another replica is refused (1)" 1 "$S" sync g.db "$A2" --token bound
has "refused" && ok "and the client says it was refused" || bad "bound refusal message"
check "the server logs the bound site" grep -q "refused: its credential is bound to site $FSITE" serve2.log
status "site= with a bad id is refused at start (1)" 1 sh -c "printf 'x read=* site=12\n' > creds3 && $S serve b2.db 127.0.0.1:0 --credentials creds3"
kill $SRV2 2>/dev/null; wait $SRV2 2>/dev/null
check "metrics over HTTP" sh -c "$S stats $M > out && grep -q '^# TYPE sync_sessions_total counter' out && grep -q '^sync_sessions_total 3' out && grep -q '^sync_session_seconds_bucket{le=\"+Inf\"} 3$' out && grep -q '^sync_sessions_failed_total 1' out"
jcheck "stats HOST:PORT --json: one line per sample" "$S stats $M --json" "
s = {(r['name'], tuple(sorted(r['labels'].items()))): r['value'] for r in rows}
assert s[('sync_sessions_total', ())] == 3 and s[('sync_session_seconds_bucket', (('le', '+Inf'),))] == 3 and s[('sync_sessions_failed_total', ())] == 1, s"
check "metrics with curl-like GET /metrics" python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', $(cat mport)))
s.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
d = b''
while True:
    b = s.recv(65536)
    if not b: break
    d += b
head, body = d.split(b'\r\n\r\n', 1)
assert head.startswith(b'HTTP/1.0 200'), head
assert b'version=0.0.4' in head
assert int([l for l in head.split(b'\r\n') if l.lower().startswith(b'content-length')][0].split(b':')[1]) == len(body)
assert b'sync_commits_total' in body
"
check "an unknown path is 404" python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', $(cat mport)))
s.sendall(b'GET /nope HTTP/1.0\r\n\r\n')
d = s.recv(65536)
assert d.startswith(b'HTTP/1.0 404'), d
"
kill $SRV; wait $SRV; SRV=
check "serve logged sessions and stopped with its digest" sh -c "grep -q 'received 0 rows, sent' serve.log && grep -q 'session ended' serve.log && grep -q 'stopped; digest' serve.log"

# --- stats and verify -------------------------------------------------
check "stats of a file" sh -c "$S stats a.db > out && grep -q '^notes ' out && grep -q '^peers  *2' out"
check "verify a healthy database" sh -c "$S verify a.db > out && grep -q ': sound\$' out"
jcheck "stats --json: the figures of the text" "$S stats a.db --json" "
t = txt.splitlines()
assert [(x['name'], x['rows'], x['tombstones']) for x in d['tables']] == [(l.split()[0], int(l.split()[1]), int(l.split()[2])) for l in t[1:1 + len(d['tables'])]], d
assert 'local version      %d' % d['local_version'] in t and 'peers              %d' % d['peers'] in t and 'file size          %d bytes' % d['file_size'] in t, d
assert d['open_conflicts'] == 0 and d['may_miss_deletes'] is False and len(d['schema_hash']) == 16, d" "$S stats a.db"
jcheck "verify --json: sound, with the counts" "$S verify a.db --json" "
assert d['sound'] is True and d['problems'] == [] and d['rows'] == sum(x['rows'] for x in json.loads(txt)['tables']), d" "$S stats a.db --json"
jcheck "digest --json: the digest of the text" "$S digest a.db notes --json" "
assert d == {'table': 'notes', 'digest': txt.strip()}, d" "$S digest a.db notes"
jcheck "gc --json: collected and kept, nothing folded" "$S gc a.db --json" "
assert d['folded'] is False and txt.strip() == 'collected 0 tombstones; %d kept' % d['kept'], d" "$S gc a.db"
check "make a damaged copy" python3 -c "
d = bytearray(open('a.db', 'rb').read())
m = b'push-me'
i = d.find(m); n = 0
while i >= 0:
    d[i + 2] ^= 0x01; n += 1; i = d.find(m, i + 1)
assert n >= 1
open('bad.db', 'wb').write(d)
"
status "verify a damaged copy exits 1" 1 "$S" verify bad.db
has "fails its checksum" && has "^damaged: " && ok "and names the damaged row" || bad "damage message"
jcheck "verify --json of the damaged copy lists its problems" "$S verify bad.db --json; [ \$? = 1 ]" "
assert d['sound'] is False and any('fails its checksum' in p for p in d['problems']), d"
check "the original still verifies" "$S" verify a.db

# --- progress on a terminal only -------------------------------------
python3 -c '
for i in range(5000):
    print("{\"key\":\"row-%05d\",\"title\":\"t%d\",\"n\":%d}" % (i, i, i))
' > big.jsonl
"$S" init big.db --schema schema.txt > /dev/null
"$S" init big2.db --schema schema.txt > /dev/null
check "load 5000 rows in batches" sh -c "$S load big.db notes big.jsonl --batch 700 > out && grep -q 'loaded 5000 rows' out"
# onatty.py progress|none ENV... -- COMMAND...: stderr on a terminal,
# stdout a pipe; asserts a progress line on stderr and the summary alone
# on stdout.  With none both are on the terminal, and it asserts that no
# escape code came on either.
cat > onatty.py <<'PY'
import os, pty, subprocess, sys
want = sys.argv[1]
i = sys.argv.index('--')
env = dict(os.environ)
for kv in sys.argv[2:i]:
    k, v = kv.split('=', 1)
    if v: env[k] = v
    else: env.pop(k, None)
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[i + 1:], stderr=s, env=env,
                     stdout=subprocess.PIPE if want == 'progress' else s)
os.close(s)
err = b''
while True:
    try:
        b = os.read(m, 65536)
    except OSError:
        break
    if not b:
        break
    err += b
out = p.stdout.read() if p.stdout else b''
print('stdout:', repr(out))
print('stderr (and stdout with none):', repr(err))
assert p.wait() == 0
if want == 'progress':
    assert out.startswith(b'synced with big.db: received 5000 rows') and out.count(b'\n') == 1 and b'\r' not in out
    assert b'\r\x1b[K' in err and b'/5000 rows (' in err and b'rows/s' in err
    assert err.endswith(b'\r\x1b[K')
else:
    assert err.startswith(b'synced with big.db: received 5000 rows') and b'\x1b' not in err and b'\r\n' == err[-2:] and err.count(b'\n') == 1
PY
check "a progress line on a terminal's stderr, the summary alone on stdout" python3 onatty.py progress TERM=xterm NO_COLOR= -- "$S" sync big2.db big.db
for off in "TERM=dumb NO_COLOR= -- $S sync" "TERM=xterm NO_COLOR=1 -- $S sync" "TERM=xterm NO_COLOR= -- $S sync --quiet" "TERM=xterm NO_COLOR= -- $S sync -q"; do
  "$S" init big3.db --schema schema.txt > /dev/null
  check "no progress line with $off" python3 onatty.py none $off big3.db big.db
  rm -f big3.db big3.db-lock
done
check "no progress line into a pipe" sh -c "$S put big.db notes row-00001 title=changed && $S sync big2.db big.db > out && ! tr '\r' '@' < out | grep -q @ && [ \$(wc -l < out) = 1 ]"

# --- fleet events: a device restored from a backup, a copied file ------
$S init dev.db --schema schema.txt > /dev/null
$S init srv.db --schema schema.txt > /dev/null
$S put dev.db notes r0 title=first > /dev/null
$S sync dev.db srv.db > /dev/null
cp dev.db dev-backup.db
for k in r1 r2 r3 r4 r5; do $S put dev.db notes $k title=five > /dev/null; done
$S sync dev.db srv.db > /dev/null
cp dev-backup.db dev.db   # in place: the same file, its old contents
$S put dev.db notes r6 title=after > /dev/null
check "a restored device notices at its first sync and syncs as a new site" sh -c "$S sync dev.db srv.db > out 2> err && grep -q 'took a new site id' err && $S sync dev.db srv.db > out && $S sync dev.db srv.db > out && grep -q 'received 0 rows' out && grep -q 'sent 0 rows' out"
check "the server got the new row, the device its five rows back" sh -c "$S get srv.db notes r6 > /dev/null && $S get dev.db notes r5 > /dev/null && [ \"\$($S digest dev.db)\" = \"\$($S digest srv.db)\" ]"
check "vv lists the renewal record on both sides" sh -c "$S vv dev.db > out && grep -q '^renewed site ids' out && $S vv srv.db > out && grep -q '^renewed site ids' out"
check "vv --json: the record keeps the old id's claims up to the backup (not 0)" sh -c "$S vv dev.db --json > out && $S vv srv.db --json > out2 && python3 -c \"
import json
a = [r for r in map(json.loads, open('out')) if r['renewed']]
b = [r for r in map(json.loads, open('out2')) if r['renewed']]
assert len(a) == 1 and a[0]['hlc'] > 0 and not a[0]['self'], a
assert [(r['site'], r['hlc']) for r in b] == [(a[0]['site'], a[0]['hlc'])], (a, b)\""
cp dev.db clone.db
check "a copied file takes its own site id at open" sh -c "$S put clone.db notes c1 title=clone > /dev/null && [ \"\$($S vv clone.db | grep 'this replica')\" != \"\$($S vv dev.db | grep 'this replica')\" ] && $S sync clone.db srv.db > /dev/null && $S sync dev.db srv.db > /dev/null && $S get dev.db notes c1 > /dev/null"

# --- repair and diff ---------------------------------------------------
check "init r1.db and r2.db" sh -c "$S init r1.db --table notes:text title:text n:integer && $S init r2.db --table notes:text title:text n:integer"
check "rows in r1, synced to r2" sh -c "for i in 1 2 3 4 5 6 7 8 9; do $S put r1.db notes k\$i title=t\$i n=\$i || exit 1; done && $S sync r2.db r1.db > /dev/null"
status "diff of equal files exits 0" 0 "$S" diff r2.db r1.db
has "^equal to r1.db" && ok "and says they are equal" || bad "diff equal message"
check "drift on both sides" sh -c "$S put r2.db notes k3 title=changed && $S put r1.db notes new1 title=n && $S put r2.db notes new2 title=m && $S del r1.db notes k5"
status "diff of differing files exits 3" 3 "$S" diff r2.db r1.db
jcheck "diff --json: the rows, their sides and the counts" "$S diff r2.db r1.db --json; [ \$? = 3 ]" "
assert d['equal'] is False and d['differ'] == 4 and d['here'] == 1 and d['there'] == 1 and d['both'] == 2, d
assert sorted((r['table'], r['key'], r['side']) for r in d['rows']) == [('notes', 'k3', 'both'), ('notes', 'k5', 'both'), ('notes', 'new1', 'there'), ('notes', 'new2', 'here')], d"
check "diff names every differing row and its side" sh -c "$S diff r2.db r1.db > out; grep -qx 'notes k3 both' out && grep -qx 'notes new1 there' out && grep -qx 'notes new2 here' out && grep -qx 'notes k5 both' out && grep -q '^4 rows differ from r1.db' out"
check "diff writes nothing" sh -c "d1=\$($S digest r1.db); d2=\$($S digest r2.db); $S diff r2.db r1.db > /dev/null; [ \"\$d1\" = \"\$($S digest r1.db)\" ] && [ \"\$d2\" = \"\$($S digest r2.db)\" ]"
jcheck "repair --json: equal, what moved, the digest" "cp r2.db r2j.db && $S repair r2j.db r1.db --json" "
assert d['equal'] is True and d['with'] == 'r1.db' and d['received'] == d['new'] + d['updated'] + d['deleted'] + d['unchanged'] + d['refused'] + d['unknown'], d
assert d['digest'] == txt.strip(), d" "$S digest r1.db"
check "repair between files" sh -c "$S repair r2.db r1.db > out && grep -q '^repaired with r1.db: equal' out"
check "after the repair both have one digest" sh -c "[ \"\$($S digest r1.db)\" = \"\$($S digest r2.db)\" ]"
status "and diff finds nothing (0)" 0 "$S" diff r2.db r1.db
status "repair with itself is a usage error (2)" 2 "$S" repair r1.db r1.db
"$S" serve r1.db 127.0.0.1:0 --port-file rport > rserve.log 2>&1 &
RSRV=$!
i=0
while [ ! -s rport ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
RA=127.0.0.1:$(cat rport)
check "init r3.db" "$S" init r3.db --table notes:text title:text n:integer
check "r3 holds one row of its own" "$S" put r3.db notes own title=mine
status "diff over TCP exits 3" 3 "$S" diff r3.db "$RA"
has "only here" && ok "and counts the sides" || bad "diff over TCP summary"
check "repair over TCP (serve answers repair sessions)" sh -c "$S repair r3.db $RA > out && grep -q \"^repaired with $RA: equal\" out"
status "diff over TCP afterwards exits 0" 0 "$S" diff r3.db "$RA"
check "the server got r3's row" "$S" get r1.db notes own
check "a plain sync after the repair moves nothing" sh -c "$S sync r3.db $RA > out && grep -q 'received 0 rows' out"
kill $RSRV 2>/dev/null

# --- a peer behind the server's tombstone collection ------------------
$S init gsrv.db --schema schema.txt > /dev/null
$S init gdev.db --schema schema.txt > /dev/null
$S put gsrv.db notes g1 title=doomed > /dev/null
$S put gsrv.db notes g2 title=kept > /dev/null
"$S" serve gsrv.db 127.0.0.1:0 --port-file gport > gserve.log 2>&1 &
GSRV=$!
i=0
while [ ! -s gport ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
GA=127.0.0.1:$(cat gport)
$S sync gdev.db "$GA" --pull > /dev/null
cp gdev.db gdev-backup.db
$S del gsrv.db notes g1 > /dev/null 2>&1
$S sync gdev.db "$GA" --pull > /dev/null
$S sync gdev.db "$GA" --pull > /dev/null
$S gc gsrv.db > /dev/null
cp gdev-backup.db gdev.db
status "a device behind the server's collection is refused as stale" 1 "$S" sync gdev.db "$GA" --pull
check "the server's log names it as behind its collection" sh -c "sleep 0.3; grep -q 'behind this replica.s tombstone collection' gserve.log"
check "the device says it may miss deletes" sh -c "$S verify gdev.db > out && grep -q 'health: may miss deletes' out"
check "a repair mends it, and syncs work again" sh -c "$S repair gdev.db $GA > out && ! $S get gdev.db notes g1 > /dev/null 2>&1 && $S sync gdev.db $GA > /dev/null"
kill $GSRV 2>/dev/null

# --- scope by value: a credential's where= ---------------------------
$S init wsrv.db --schema two.txt > /dev/null
$S init wdev.db --schema two.txt > /dev/null
$S put wsrv.db settings 1 value=red > /dev/null
$S put wsrv.db settings 2 value=blue > /dev/null
printf 'dev read=* write=* where=value=red\n' > wcreds
"$S" serve wsrv.db 127.0.0.1:0 --credentials wcreds --port-file wport > wserve.log 2>&1 &
WSRV=$!
i=0
while [ ! -s wport ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
WA=127.0.0.1:$(cat wport)
check "where= sends the rows holding the value" sh -c "$S sync wdev.db $WA --token dev > /dev/null && $S get wdev.db settings 1 > /dev/null && ! $S get wdev.db settings 2 > /dev/null 2>&1"
check "a row whose value changes leaves the device, not the server" sh -c "$S put wsrv.db settings 1 value=green > /dev/null && $S sync wdev.db $WA --token dev > /dev/null && ! $S get wdev.db settings 1 > /dev/null 2>&1 && $S get wsrv.db settings 1 > /dev/null"
check "a row whose value changes comes to the device" sh -c "$S put wsrv.db settings 2 value=red > /dev/null && $S sync wdev.db $WA --token dev > /dev/null && $S get wdev.db settings 2 > out && grep -q 'red' out"
status "where= without a value is refused at start (1)" 1 sh -c "printf 'x read=* where=value\n' > wcreds2 && $S serve wsrv.db 127.0.0.1:0 --credentials wcreds2"
kill $WSRV 2>/dev/null

# --- the README walkthrough, as written -------------------------------
mkdir walk
sed -n '/<!-- synctl-walkthrough begin -->/,/<!-- synctl-walkthrough end -->/p' "$TOP/README.md" |
  sed -e '1,2d' -e '$d' | sed '$d' > walk/walk.sh
check "README walkthrough runs as written" sh -c "cd walk && [ -s walk.sh ] && PATH=\"$B:\$PATH\" sh -e walk.sh > ../out 2>&1 && grep -q '^sync_sessions_total 1\$' ../out && grep -q 'sound\$' ../out"

jflush
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
