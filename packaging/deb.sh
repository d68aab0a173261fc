#!/usr/bin/env bash
# make package: the Debian package postgresql-MAJOR-tenant-guard for $PG (default 15), in target/package/.
# It holds the library, the control file, the install and upgrade scripts, the changelog and the copyright file,
# and depends on that major's server package at its oldest supported minor release (src/requirements.rs). For 17
# and 18 the library is built in the root that has that major (tests/support/pgroot.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-15}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=1
name=postgresql-$PG-tenant-guard
out=target/package/pg$PG
# the oldest supported minor release of this major, as src/requirements.rs says it
min=$(grep -o "($PG, ${PG}00[0-9][0-9])" src/requirements.rs | sed 's/.*, \([0-9]*\))/\1/')
[ -n "$min" ] || { echo "package: src/requirements.rs names no minimum for PostgreSQL $PG" >&2; exit 1; }
min="$PG.$((10#${min: -2}))"

rm -rf "$out"; mkdir -p "$out"
build="cargo pgrx package --pg-config /usr/lib/postgresql/$PG/bin/pg_config --out-dir $out/root"
if [ "$PG" = 15 ] || [ -n "${TG_IN_ROOT:-}" ]; then $build; else tests/support/pgroot.sh "$PG" "$build"; fi

so=$out/root/usr/lib/postgresql/$PG/lib/tenant_guard.so
glibc=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
doc=$out/root/usr/share/doc/$name
mkdir -p "$doc" "$out/root/DEBIAN"
gzip -9n < packaging/changelog > "$doc/changelog.Debian.gz"
cp packaging/copyright "$doc/copyright"
size=$(du -sk --exclude=DEBIAN "$out/root" | cut -f1)
cat > "$out/root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version-$revision
Architecture: $(dpkg --print-architecture)
Maintainer: tenant_guard maintainers <maintainers@tenant-guard.invalid>
Installed-Size: $size
Depends: postgresql-$PG (>= $min), libc6 (>= $glibc)
Section: database
Priority: optional
Description: multi-tenant isolation for PostgreSQL $PG
 tenant_guard makes multi-tenant isolation a property of the database: a signed
 tenant context (JWT verified inside PostgreSQL), automatic row-level security
 for tables labelled tenant_scoped, and per-tenant AES-256-GCM encryption.
 .
 Add tenant_guard to shared_preload_libraries, restart, then CREATE EXTENSION.
CONTROL
deb=target/package/${name}_${version}-${revision}_$(dpkg --print-architecture).deb
dpkg-deb --root-owner-group -Zxz --build "$out/root" "$deb" >/dev/null
echo "package: $deb"
