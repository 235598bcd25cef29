#!/bin/sh
# cross-deps.sh BUILD_DIR ARCH... - install what `make cross` and
# `make cross-test` need for each ARCH (aarch64, armhf, s390x) on Debian:
# the cross gcc (with its libc6-dev-*-cross), the target's -dev packages
# and qemu-user to run the result.  Called by `make cross-deps`; run as
# root or with sudo.
#
# The -dev packages come through multiarch (dpkg --add-architecture, then
# liblmdb-dev:ARCH ...).  Multiarch needs every Multi-Arch: same package at
# the same version for the host and the target; when the mirror cannot
# give that (bookworm's security suite carries no s390x, so the host's
# security-updated libzstd1 has no s390x twin), the target's packages are
# downloaded with apt-get and unpacked into BUILD_DIR/cross-ARCH/sysroot
# instead, which mk/cross.mk then uses.  Nothing is installed into the
# host's package database for that ARCH but the cross gcc and qemu.
set -eu

[ $# -gt 1 ] || { echo "usage: $0 BUILD_DIR aarch64|armhf|s390x..." >&2; exit 2; }
build=$1
shift

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
APT_INSTALL="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"

debarch() {
  case "$1" in
    aarch64) echo arm64 ;;
    armhf) echo armhf ;;
    s390x) echo s390x ;;
    *) echo "cross-deps: unknown ARCH $1 (aarch64, armhf, s390x)" >&2
       exit 2 ;;
  esac
}
triplet() {
  case "$1" in
    aarch64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    s390x) echo s390x-linux-gnu ;;
  esac
}
# The target's packages: the -dev ones and the runtime libraries that hold
# their .so (libcmocka-dev ships no static archive, so test programs load
# libcmocka.so.0 at run time).
target_pkgs() {
  d=$1
  echo "liblmdb-dev:$d liblmdb0:$d libzstd-dev:$d libzstd1:$d" \
    "libxxhash-dev:$d libxxhash0:$d libcmocka-dev:$d libcmocka0:$d" \
    "libsqlite3-dev:$d libsqlite3-0:$d"
}

host="qemu-user"
for arch in "$@"; do
  d=$(debarch "$arch")
  dpkg --print-foreign-architectures | grep -qx "$d" ||
    $SUDO dpkg --add-architecture "$d"
  # gcc-* only recommends its libc6-dev-*-cross: name it, so the cross
  # gcc always has a libc (in /usr/TRIPLET), which qemu then runs with.
  host="$host gcc-$(triplet "$arch") libc6-dev-$d-cross"
done

$SUDO apt-get update
$APT_INSTALL $host

for arch in "$@"; do
  d=$(debarch "$arch")
  pkgs=$(target_pkgs "$d")
  sysroot="$build/cross-$arch/sysroot"
  # -s tries the whole set first (libsqlite3-dev pulls libc6-dev:ARCH
  # too); for s390x apt cannot resolve libzstd1 nor linux-libc-dev.
  if apt-get install -s --no-install-recommends $pkgs >/dev/null 2>&1; then
    echo "cross-deps: $arch: multiarch packages ($d)"
    $APT_INSTALL $pkgs
    rm -rf "$sysroot"
  else
    echo "cross-deps: $arch: multiarch $d cannot match the host's package" \
      "versions on this mirror; unpacking its packages into $sysroot"
    tmp=$(mktemp -d)
    # apt fetches as the unprivileged _apt user when run as root
    [ "$(id -u)" != 0 ] || ! id _apt >/dev/null 2>&1 || chown _apt "$tmp"
    (cd "$tmp" && apt-get download $pkgs)
    rm -rf "$sysroot"
    mkdir -p "$sysroot"
    for deb in "$tmp"/*.deb; do
      dpkg-deb -x "$deb" "$sysroot"
    done
    rm -rf "$tmp"
  fi
done
