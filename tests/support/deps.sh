#!/usr/bin/env bash
# Installs what building and testing tenant_guard needs on Debian 12, and nothing that is already there:
# apt packages (pgbouncer for the pooled-load test), cargo-pgrx 0.18.0, `cargo pgrx init` for the system PostgreSQL 15, and a Python venv for the
# end-to-end tests, the demo and the benchmarks. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
APT_PACKAGES="postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo python3-venv python3-pip pgbouncer"
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
  echo "deps: installing cargo-pgrx 0.18.0 (takes a few minutes)"
  cargo install cargo-pgrx --version 0.18.0 --locked
fi

if ! grep -qs "^pg15 *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  echo "deps: cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

if ! .venv/bin/python -c 'import psycopg, jwt, cryptography, pytest' 2>/dev/null; then
  echo "deps: creating .venv for the end-to-end tests, demo and benchmarks"
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
fi
