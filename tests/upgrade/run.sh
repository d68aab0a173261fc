#!/usr/bin/env bash
# The upgrade test (make test-upgrade): builds 0.1.0 from the commit that released it (once, cached outside the
# clone in $TG_CACHE, default /var/cache/tenant_guard, so that every clone of the same machine reuses it; inside the
# repository cargo would take it for a member of this workspace), packages this tree, checks that
# sql/tenant_guard--0.1.0--0.2.0.sql holds the statements make_script.py makes of the two install scripts (in any
# order: pgrx's order of independent objects differs between builds), and runs tests/upgrade/test_upgrade.py
# against a private copy of the PostgreSQL installation that receives each version's files in turn.
#
#   tests/upgrade/run.sh            the test
#   tests/upgrade/run.sh --write    rewrite sql/tenant_guard--0.1.0--0.2.0.sql instead of checking it
set -euo pipefail
cd "$(dirname "$0")/../.."
PG=${PG:-15}
VENV=${VENV:-.venv}
OLD_VERSION=0.1.0 OLD_COMMIT=5fae071
NEW_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
PG_CONFIG=/usr/lib/postgresql/$PG/bin/pg_config
work=$PWD/target/upgrade
cache=${TG_CACHE:-/var/cache/tenant_guard}/upgrade-pg$PG
ext=usr/share/postgresql/$PG/extension
mkdir -p "$work" "$cache"

old_pkg=$cache/pkg-$OLD_VERSION
if [ ! -f "$old_pkg/.done" ]; then
  echo "upgrade: building $OLD_VERSION from commit $OLD_COMMIT (once, in $cache)"
  rm -rf "$cache/src-$OLD_VERSION" "$old_pkg"; mkdir -p "$cache/src-$OLD_VERSION"
  git archive "$OLD_COMMIT" | tar -x -C "$cache/src-$OLD_VERSION"
  # in its own target directory: with this clone's shared, `cargo pgrx package` of the new version wrote the old
  # version's schema
  (cd "$cache/src-$OLD_VERSION" && CARGO_TARGET_DIR="$cache/target-$OLD_VERSION" \
     cargo pgrx package --pg-config "$PG_CONFIG" --profile dev --out-dir "$old_pkg" >"$cache/build-$OLD_VERSION.log" 2>&1) \
    || { tail -30 "$cache/build-$OLD_VERSION.log"; exit 1; }
  touch "$old_pkg/.done"
fi

echo "upgrade: packaging $NEW_VERSION"
rm -rf "$work/pkg-$NEW_VERSION"
cargo pgrx package --pg-config "$PG_CONFIG" --profile dev --out-dir "$work/pkg-$NEW_VERSION" >"$work/build-$NEW_VERSION.log" 2>&1 \
  || { tail -30 "$work/build-$NEW_VERSION.log"; exit 1; }

script=sql/tenant_guard--$OLD_VERSION--$NEW_VERSION.sql
python3 tests/upgrade/make_script.py "$old_pkg/$ext/tenant_guard--$OLD_VERSION.sql" \
  "$work/pkg-$NEW_VERSION/$ext/tenant_guard--$NEW_VERSION.sql" "sql/upgrades/$OLD_VERSION--$NEW_VERSION.sql" \
  > "$work/expected.sql"
if [ "${1:-}" = --write ]; then
  cp "$work/expected.sql" "$script"; echo "upgrade: wrote $script"; exit 0
fi
if ! python3 tests/upgrade/make_script.py --same "$script" "$work/expected.sql"; then
  echo "upgrade: $script is not what the install scripts make of it: run make upgrade-script" >&2
  exit 1
fi
cp "$script" "$work/pkg-$NEW_VERSION/$ext/"

# a private copy of the server's installation (PostgreSQL finds its files relative to its binaries), readable by
# the postgres OS user that runs the test server
server=/tmp/tenant_guard-upgrade-server
rm -rf "$server"; mkdir -p "$server/usr/lib/postgresql" "$server/usr/share/postgresql"
cp -a "/usr/lib/postgresql/$PG" "$server/usr/lib/postgresql/"
cp -a "/usr/share/postgresql/$PG" "$server/usr/share/postgresql/"
TG_OLD_PKG="$old_pkg" TG_NEW_PKG="$work/pkg-$NEW_VERSION" TG_SERVER="$server" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/upgrade
rm -rf "$server"
