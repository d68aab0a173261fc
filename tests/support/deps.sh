#!/usr/bin/env bash
# Installs what building and testing tenant_guard needs on Debian 12, and nothing that is already there:
# apt packages (pgbouncer for the pooled-load test), cargo-pgrx 0.18.0, `cargo pgrx init` for the system PostgreSQL ($PG, default 15), and a Python venv for the
# end-to-end tests, the demo and the benchmarks. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

PG=${PG:-15}                 # the PostgreSQL major (17 and 18 run in a root that has them: tests/support/pgroot.sh)
VENV=${VENV:-.venv}
PG_CONFIG=/usr/lib/postgresql/$PG/bin/pg_config
APT_PACKAGES="postgresql-$PG postgresql-server-dev-$PG libclang-dev clang pkg-config sudo python3-venv python3-pip pgbouncer"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing apt packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q ' 0\.18\.0'; then
  # a debug build: half the compile time of a release one, and cargo-pgrx's own speed does not matter to a build
  echo "deps: installing cargo-pgrx 0.18.0 (takes a few minutes)"
  cargo install cargo-pgrx --version 0.18.0 --locked --debug
fi

if ! grep -qs "^pg$PG *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  echo "deps: cargo pgrx init --pg$PG $PG_CONFIG"
  cargo pgrx init "--pg$PG" "$PG_CONFIG"
fi

if ! "$VENV/bin/python" -c 'import psycopg, jwt, cryptography, pytest, pytest_timeout' 2>/dev/null; then
  echo "deps: creating $VENV for the end-to-end tests, demo and benchmarks"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
fi
