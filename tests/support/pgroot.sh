#!/usr/bin/env bash
# Runs a command in a Debian root that has PostgreSQL MAJOR from Debian's own archive, with this machine's Rust
# toolchain and this repository mounted in (at the same path). Used by `make test PG=17` and `make test PG=18`.
#
#   tests/support/pgroot.sh MAJOR COMMAND...
#
# The root is built once with debootstrap and cached in $TG_ROOTS (default /var/cache/tenant_guard/roots):
#   17: Debian 13 (trixie), postgresql-17;  18: Debian 14 (forky, testing), postgresql-18.
# Builds go to target/pgMAJOR and the Python venv to .venv-pgMAJOR, so the roots and the machine never share build
# output. Needs root (debootstrap, chroot, mounts).
#   tests/support/pgroot.sh --base SUITE    prints the path of a clean minbase root of SUITE, made once (the package
#                                            test installs packages into copies of it)
set -euo pipefail
roots=${TG_ROOTS:-/var/cache/tenant_guard/roots}
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \([^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}

# base SUITE: a clean minbase root (Debian's own archive, this machine's CAs, no valid-until check for snapshots)
base() {
  local suite=$1 dir=$roots/base-$1 script=$1
  [ "$suite" = forky ] && script=sid
  if [ ! -f "$dir/.ready" ]; then
    command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    rm -rf "$dir"; mkdir -p "$roots"
    debootstrap --variant=minbase "$suite" "$dir" "$mirror" "/usr/share/debootstrap/scripts/$script" \
      >"$dir.debootstrap.log" 2>&1 || { tail -20 "$dir.debootstrap.log" >&2; exit 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
    printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"; chmod +x "$dir/usr/sbin/policy-rc.d"
    echo 'Acquire::Check-Valid-Until "false";' > "$dir/etc/apt/apt.conf.d/99tenant-guard-snapshot"
    touch "$dir/.ready"
  fi
  echo "$dir"
}
if [ "${1:-}" = --base ]; then [ "$(id -u)" -eq 0 ] || { echo "pgroot: needs root" >&2; exit 1; }; base "${2:?suite}"; exit 0; fi

major=${1:?PostgreSQL major (17 or 18)}; shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
case "$major" in
  17) suite=trixie ;;
  18) suite=forky ;;
  *) echo "pgroot: PostgreSQL $major is not one tenant_guard builds in a root (15 runs on the machine itself)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "pgroot: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
root=$roots/pg$major
# what building and testing needs in the root (the machine's own list is in deps.sh)
PACKAGES="postgresql-$major postgresql-server-dev-$major libclang-dev clang pkg-config build-essential ca-certificates \
git make procps iproute2 sudo python3 python3-venv python3-pip pgbouncer libpq-dev"

if [ ! -f "$root/.ready" ]; then
  echo "pgroot: building a Debian $suite root with PostgreSQL $major in $root (once; a few minutes)"
  src=$(base "$suite")
  rm -rf "$root"; cp -a "$src" "$root"
  mount -t proc proc "$root/proc"
  # no server is started by the package: the tests make their own clusters
  if ! chroot "$root" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $PACKAGES" >"$root.install.log" 2>&1; then
    umount -l "$root/proc"; tail -20 "$root.install.log"; exit 1
  fi
  umount -l "$root/proc"
  touch "$root/.ready"
fi

# one command at a time in a root (a second `make` waits for the first)
exec 9>"$root.lock"
flock 9
mounts=()
cleanup() {
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
# bind SOURCE TARGET [ro], recursively: a toolchain that is itself a mount (a root inside a root) comes along
bind() {
  mkdir -p "$2"
  mount --rbind "$1" "$2"; mounts+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
bind /sys "$root/sys"
bind /dev "$root/dev"; bind /dev/pts "$root/dev/pts"
mount -t tmpfs shm "$root/dev/shm"; mounts+=("$root/dev/shm")
# the machine's Rust toolchain (read-only) and cargo's home (the registry cache and cargo-pgrx, shared)
bind "$HOME/.rustup" "$root/root/.rustup" ro
bind "$HOME/.cargo" "$root/root/.cargo"
bind "$repo" "$root$repo"
cp /etc/hosts "$root/etc/hosts" 2>/dev/null || true
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# the machine's certificate authorities (a proxy's own CA, say), and the variables that point tools at them
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
ca_env=$(env | grep -E '^[A-Z_]+=/etc/ssl/' | tr '\n' ' ' || true)

set +e
chroot "$root" /usr/bin/env -i HOME=/root USER=root TERM=dumb CI="${CI:-}" LANG=C.UTF-8 $ca_env \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PG="$major" TG_IN_ROOT=1 CARGO_TARGET_DIR="$repo/target/pg$major" VENV=".venv-pg$major" \
  bash -c "cd '$repo' && $*"
