#!/bin/sh
# install.sh - `make install` as a packager and a user meet it: into a
# scratch PREFIX, the files and symlinks land, the shared library has its
# soname and exports only sync_* symbols, sync.pc keeps the dependencies
# private, a program builds through pkg-config against the installed tree
# both shared (run with LD_LIBRARY_PATH) and static, `man synctl` and
# `man 3 sync` render, the bash completion loads and completes from
# synctl; then DESTDIR, LIBDIR and BINDIR are honoured and `make uninstall`
# removes every file.  One line per check; the last line counts them.
# Run from the build directory (make test does), or `sh tests/install.sh`
# from the top (it then runs in build/).
set -u
[ -f ../sync.h ] || { mkdir -p build && cd build; }
TOP=$(cd .. && pwd)
D=$(mktemp -d "${TMPDIR:-/tmp}/sync-install.XXXXXX")
trap 'rm -rf "$D"' EXIT INT TERM
# A make of its own, not a job of the make that runs the tests.
unset MAKEFLAGS MAKELEVEL MFLAGS
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAILED: $1"; [ -f "$D/out" ] && sed 's/^/  | /' "$D/out" | head -20; }
# check NAME COMMAND...: the command succeeds (output in $D/out)
check() {
  name=$1; shift
  if "$@" > "$D/out" 2>&1; then ok "$name"; else bad "$name"; fi
}

V=$(awk '/^.define SYNC_VERSION_STRING/ {gsub(/"/, "", $3); print $3}' "$TOP/sync.h")
M=${V%%.*}
P=$D/usr
L=$P/lib

check "make install PREFIX=$P" make -s -C "$TOP" install PREFIX="$P"
for f in include/sync.h lib/libsync.a lib/libsync.so.$V lib/pkgconfig/sync.pc \
         bin/synctl share/man/man1/synctl.1 share/man/man3/sync.3 \
         share/bash-completion/completions/synctl; do
  check "installed $f" test -f "$P/$f"
done
check "libsync.so.$M -> libsync.so.$V" test "$(readlink "$L/libsync.so.$M")" = "libsync.so.$V"
check "libsync.so -> libsync.so.$M" test "$(readlink "$L/libsync.so")" = "libsync.so.$M"
check "soname is libsync.so.$M" sh -c "readelf -d '$L/libsync.so.$V' | grep -q 'SONAME.*\[libsync.so.$M\]'"
nm -D --defined-only "$L/libsync.so.$V" | awk '{print $NF}' > "$D/syms"
check "the shared library exports sync_* symbols" grep -q '^sync_env_open$' "$D/syms"
check "and nothing else" sh -c "! grep -v '^sync_' '$D/syms'"

# sync.pc: the library alone in Libs, the rest private, libdir from prefix.
PC=$L/pkgconfig/sync.pc
check "sync.pc: Libs is -L\${libdir} -lsync" grep -qx 'Libs: -L${libdir} -lsync' "$PC"
check "sync.pc: libdir=\${prefix}/lib" grep -qx 'libdir=${prefix}/lib' "$PC"
check "sync.pc: Version $V" grep -qx "Version: $V" "$PC"
check "sync.pc: LMDB, zstd and xxhash only for static links" sh -c \
  "grep -E '^(Requires|Libs)\.private:' '$PC' | tr ' ' '\n' | grep -q -E '^(lmdb|-llmdb)\$' &&
   grep -E '^(Requires|Libs)\.private:' '$PC' | tr ' ' '\n' | grep -q -E '^(libzstd|-lzstd)\$' &&
   grep -E '^(Requires|Libs)\.private:' '$PC' | tr ' ' '\n' | grep -q -E '^(libxxhash|-lxxhash)\$'"
export PKG_CONFIG_PATH="$L/pkgconfig"
check "pkg-config --libs sync" test "$(echo $(pkg-config --libs sync))" = "-L$L -lsync"

cat > "$D/prog.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <sync.h>

int main(int argc, char **argv) {
  static const sync_column_def cols[] = {{"n", SYNC_INTEGER, 0}};
  static const sync_table_def t = {"t", SYNC_TEXT, cols, 1};
  sync_env *env = NULL;
  sync_txn *txn = NULL;
  sync_value v = sync_int(7);
  int rc;
  (void)argc;
  if ((rc = sync_env_create(NULL, &env)) || (rc = sync_env_set_schema(env, &t, 1)) ||
      (rc = sync_env_open(env, argv[1], 0)) || (rc = sync_txn_begin(env, 0, &txn)) ||
      (rc = sync_put(txn, 0, "k", 1, &v, 1)) || (rc = sync_txn_commit(txn)) ||
      (txn = NULL, rc = sync_txn_begin(env, SYNC_TXN_RDONLY, &txn)) ||
      (rc = sync_get(txn, 0, "k", 1, &v, 1))) {
    fprintf(stderr, "prog: %s\n", sync_strerror(rc));
    sync_txn_abort(txn);
    sync_env_close(env);
    return 1;
  }
  printf("sync %s: %lld\n", SYNC_VERSION_STRING, (long long)v.i);
  sync_txn_abort(txn);
  sync_env_close(env);
  return 0;
}
EOF
CC=${CC:-cc}
check "a program builds against the shared library through pkg-config" sh -c \
  "$CC -std=c11 -Wall -Werror '$D/prog.c' \$(pkg-config --cflags --libs sync) -o '$D/prog-shared'"
check "it needs libsync.so.$M" sh -c "readelf -d '$D/prog-shared' | grep -q 'NEEDED.*\[libsync.so.$M\]'"
check "it runs with LD_LIBRARY_PATH" sh -c \
  "LD_LIBRARY_PATH='$L' '$D/prog-shared' '$D/shared.db' | grep -qx 'sync $V: 7'"
check "a program builds statically through pkg-config --static" sh -c \
  "$CC -std=c11 -Wall -Werror -static '$D/prog.c' \$(pkg-config --static --cflags --libs sync) -o '$D/prog-static'"
check "it needs no shared library" sh -c "! readelf -d '$D/prog-static' | grep -q NEEDED"
check "it runs" sh -c "'$D/prog-static' '$D/static.db' | grep -qx 'sync $V: 7'"

# The manual pages, through man as a user calls it.
export MANPATH="$P/share/man"
check "man synctl renders" sh -c "man -P cat synctl > '$D/synctl.txt' 2>&1 && grep -q 'synctl - operate sync databases' '$D/synctl.txt'"
missing=
for c in $("$P/bin/synctl" help | sed -n 's/^  \([a-z][a-z0-9-]*\)  *[^ ].*$/\1/p'); do
  grep -q "^   $c\$" "$D/synctl.txt" || missing="$missing $c"
done
check "man synctl has a section per command of synctl help${missing:+ (missing:$missing)}" test -z "$missing"
check "man synctl has synctl help sync's text" sh -c "grep -q -- '--max-message' '$D/synctl.txt'"
check "man 3 sync renders" sh -c "man -P cat 3 sync > '$D/sync3.txt' 2>&1 && grep -q 'int sync_env_open(sync_env \*env' '$D/sync3.txt'"
unset MANPATH

# Bash completion: loads in a bare bash and completes from synctl.
BC=$P/share/bash-completion/completions/synctl
check "the completion file loads" sh -c "bash -c 'source \"$BC\" && complete -p synctl' | grep -q _synctl"
check "it completes commands" sh -c "PATH='$P/bin':\$PATH bash -c 'source \"$BC\"; COMP_WORDS=(synctl sy); COMP_CWORD=1; _synctl; echo \"\${COMPREPLY[*]}\"' | grep -qx sync"
check "it completes a command's options" sh -c "PATH='$P/bin':\$PATH bash -c 'source \"$BC\"; COMP_WORDS=(synctl sync db --p); COMP_CWORD=3; _synctl; echo \"\${COMPREPLY[*]}\"' | grep -qx -- '--pull --push'"

check "it completes --json, which every command that prints takes" sh -c "[ \"\$(PATH='$P/bin':\$PATH bash -c 'source \"$BC\"; for c in stats gc verify conflicts; do COMP_WORDS=(synctl \$c db --j); COMP_CWORD=3; _synctl; echo \"\${COMPREPLY[*]}\"; done' | uniq)\" = --json ]"

check "make uninstall" make -s -C "$TOP" uninstall PREFIX="$P"
check "uninstall left no file" sh -c "test -z \"\$(find '$P' ! -type d)\""

# DESTDIR and LIBDIR: the files go under DESTDIR, sync.pc names PREFIX.
R=$D/root
check "make install DESTDIR= PREFIX=/opt/sync LIBDIR=/opt/sync/lib64" \
  make -s -C "$TOP" install DESTDIR="$R" PREFIX=/opt/sync LIBDIR=/opt/sync/lib64
check "DESTDIR: the library under DESTDIR/LIBDIR" test -f "$R/opt/sync/lib64/libsync.so.$V"
check "sync.pc: prefix=/opt/sync, libdir=\${prefix}/lib64" sh -c \
  "grep -qx 'prefix=/opt/sync' '$R/opt/sync/lib64/pkgconfig/sync.pc' && grep -qx 'libdir=\${prefix}/lib64' '$R/opt/sync/lib64/pkgconfig/sync.pc'"
check "make uninstall DESTDIR= leaves no file" sh -c \
  "make -s -C '$TOP' uninstall DESTDIR='$R' PREFIX=/opt/sync LIBDIR=/opt/sync/lib64 && test -z \"\$(find '$R' ! -type d)\""

# BINDIR: synctl goes where it says (under DESTDIR), not to PREFIX/bin.
check "make install DESTDIR= PREFIX=/opt/sync BINDIR=/opt/sync/sbin" \
  make -s -C "$TOP" install DESTDIR="$R" PREFIX=/opt/sync BINDIR=/opt/sync/sbin
check "BINDIR: synctl in DESTDIR/BINDIR" sh -c "'$R/opt/sync/sbin/synctl' --version | grep -q '^synctl $V'"
check "and not in PREFIX/bin" test ! -e "$R/opt/sync/bin/synctl"
check "make uninstall BINDIR= removes it" sh -c \
  "make -s -C '$TOP' uninstall DESTDIR='$R' PREFIX=/opt/sync BINDIR=/opt/sync/sbin && test -z \"\$(find '$R' ! -type d)\""

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
