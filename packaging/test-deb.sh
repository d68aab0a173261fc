#!/usr/bin/env bash
# make test-package: installs target/package/postgresql-$PG-tenant-guard_*.deb into a clean Debian root of the
# release that ships that major (bookworm 15, trixie 17, forky 18; made once with debootstrap and cached), with apt
# resolving its dependencies from Debian's archive; preloads it, starts a cluster there, and runs the demo
# (examples/demo.py, from this machine) against it. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-15}
VENV=${VENV:-.venv}
case "$PG" in 15) suite=bookworm ;; 17) suite=trixie ;; 18) suite=forky ;; *) echo "unsupported major $PG" >&2; exit 2 ;; esac
deb=$(ls -t target/package/postgresql-$PG-tenant-guard_*.deb | head -1)
roots=${TG_ROOTS:-/var/cache/tenant_guard/roots}
base=$(tests/support/pgroot.sh --base "$suite")
root=/var/tmp/tenant_guard-package-pg$PG
port=54334

mounts=()
cleanup() {
  chroot "$root" runuser -u postgres -- /usr/lib/postgresql/$PG/bin/pg_ctl -D /var/tmp/tgdata -m immediate stop \
    >/dev/null 2>&1 || true
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT
rm -rf "$root"; cp -a "$base" "$root"
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
mount --bind /dev "$root/dev"; mounts+=("$root/dev")
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
cp "$deb" "$root/tmp/"
echo "test-package: installing $(basename "$deb") into a clean $suite root"
chroot "$root" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends /tmp/$(basename "$deb")" >"$root.install.log" 2>&1 || { tail -20 "$root.install.log"; exit 1; }
chroot "$root" dpkg -s "postgresql-$PG-tenant-guard" | grep -E '^(Status|Version|Depends):'
chroot "$root" bash -e -c "
  install -d -o postgres -g postgres -m 700 /var/tmp/tgdata
  runuser -u postgres -- sh -c 'umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \n\" > /var/tmp/tgdata.kek'
  runuser -u postgres -- /usr/lib/postgresql/$PG/bin/initdb -D /var/tmp/tgdata -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >/dev/null
  cat >> /var/tmp/tgdata/postgresql.conf <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '/var/tmp'
shared_preload_libraries = 'tenant_guard'
tenant_guard.kek_file = '/var/tmp/tgdata.kek'
CONF
  runuser -u postgres -- /usr/lib/postgresql/$PG/bin/pg_ctl -D /var/tmp/tgdata -l /var/tmp/tgdata/server.log -w start >/dev/null
"
echo "test-package: PostgreSQL $PG from the package's dependencies, tenant_guard preloaded; running the demo"
TG_HOST=127.0.0.1 TG_PORT=$port TG_LOG="$root/var/tmp/tgdata/server.log" "$VENV/bin/python" examples/demo.py
