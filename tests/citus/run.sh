#!/usr/bin/env bash
# make test-citus: the Citus suite against a coordinator and two workers started on this machine. It needs Citus
# installed in the PostgreSQL under test (no package registry here has it: see DEVELOPERS.md); without it the suite
# says so and is skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG=${PG:-15}
pkglib=$(/usr/lib/postgresql/$PG/bin/pg_config --pkglibdir)
sharedir=$(/usr/lib/postgresql/$PG/bin/pg_config --sharedir)
if [ ! -f "$pkglib/citus.so" ] || [ ! -f "$sharedir/extension/citus.control" ]; then
  echo "test-citus: SKIPPED: Citus is not installed in PostgreSQL $PG ($pkglib/citus.so is missing)."
  echo "test-citus: the suite needs a real Citus cluster; DEVELOPERS.md says how to get Citus for your own runs."
  exit 0
fi
base=${CITUS_DIR:-/tmp/tenant_guard-citus}
port=${CITUS_PORT:-54360}
"$here/cluster.sh" stop "$base"
"$here/cluster.sh" start "$base" "$port"
trap '"$here/cluster.sh" stop "$base"' EXIT
TG_HOST=127.0.0.1 TG_PORT=$port TG_CITUS_BASE=$base "$@"
