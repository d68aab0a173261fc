#!/usr/bin/env bash
# A throwaway PostgreSQL cluster (major $PG, default 15) with tenant_guard preloaded, for the end-to-end tests, the demo and the benchmarks.
#
#   cluster.sh start DIR PORT   initdb (if needed) and start; listens on 127.0.0.1:PORT and a socket in DIR
#   cluster.sh restart DIR      restart it (fast shutdown)
#   cluster.sh stop DIR         stop it and remove DIR
#
# TG_PRELOAD overrides shared_preload_libraries (the tests use an empty one to check the error; the Citus suite
# 'citus,tenant_guard'). TG_KEK_FROM: copy the master key from that file instead of making a new one.
# The master key is a fresh random key in DIR.kek (beside the data directory, never inside it: base backups copy the
# data directory), owned by the server's OS user with mode 0600, named by tenant_guard.kek_file.
# As root the server runs as the `postgres` OS user (PostgreSQL refuses to run as root). Authentication is `trust`
# on loopback only: this cluster is for tests and demos, never for data.
set -euo pipefail
BIN=${PG_BIN:-/usr/lib/postgresql/${PG:-15}/bin}   # PG_BIN: another installation (the upgrade test)
cmd=${1:?start|stop}; dir=${2:?data directory}; port=${3:-}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  : "${port:?port}"
  if [ -f "$dir/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    echo "cluster: already running in $dir"; exit 0
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    rm -rf "$dir"
    if [ "$(id -u)" -eq 0 ]; then install -d -o postgres -g postgres -m 700 "$dir"; else install -d -m 700 "$dir"; fi
    as_owner "$BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
      || { cat "$dir.initdb.log"; exit 1; }
    rm -f "$dir.kek"
    if [ -n "${TG_KEK_FROM:-}" ]; then   # the nodes of one Citus cluster share a master key
      as_owner sh -c 'umask 077; cat "$1" > "$2"' sh "$TG_KEK_FROM" "$dir.kek"
    else
      as_owner sh -c 'umask 077; od -An -tx1 -N32 /dev/urandom | tr -d " \n" > "$1"' sh "$dir.kek"
    fi
    as_owner tee -a "$dir/postgresql.conf" >/dev/null <<CONF
# tenant_guard test cluster
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = '${TG_PRELOAD-tenant_guard}'
max_connections = 200
# two-phase commit: the shared verification tests prepare changes; Citus prepares one transaction per connection to
# a worker, so as many as connections (its documentation's advice)
max_prepared_transactions = 200
# logical decoding: a revocation replicated to a subscriber database of the same cluster
wal_level = logical
max_worker_processes = 16
max_parallel_workers = 8
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%u@%d '
tenant_guard.kek_file = '$dir.kek'
CONF
  fi
  # a hostile environment on purpose: tenant_guard must keep Rust backtraces out of error details whatever it says
  as_owner env -u RUST_LIB_BACKTRACE RUST_BACKTRACE=full "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log"; exit 1; }
  echo "cluster: PostgreSQL ${PG:-15} with tenant_guard preloaded on 127.0.0.1:$port (data: $dir)"
  ;;
restart)
  as_owner env -u RUST_LIB_BACKTRACE RUST_BACKTRACE=full "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null \
    || { cat "$dir/server.log"; exit 1; }
  ;;
stop)
  if [ -f "$dir/postmaster.pid" ]; then as_owner "$BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true; fi
  rm -rf "$dir" "$dir.initdb.log" "$dir.kek"
  ;;
*)
  echo "usage: $0 start DIR PORT | restart DIR | stop DIR" >&2; exit 2 ;;
esac
