#!/usr/bin/env bash
# A throwaway three-node Citus cluster on this machine for the Citus suite: a coordinator (no shards) on PORT and two
# workers on PORT+1 and PORT+2, each a tests/support/cluster.sh cluster with shared_preload_libraries =
# 'citus,tenant_guard' and one master key shared by all three. Needs Citus installed in the PostgreSQL under test
# (see DEVELOPERS.md); this script only starts and stops servers.
#
#   cluster.sh start BASE PORT   start (initdb if needed) BASE.coordinator, BASE.worker1, BASE.worker2
#   cluster.sh stop BASE         stop them and remove their directories
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?start|stop}; base=${2:?base directory}; port=${3:-}
nodes=(coordinator worker1 worker2)

case "$cmd" in
start)
  : "${port:?port}"
  export TG_PRELOAD='citus,tenant_guard'
  TG_KEK_FROM= "$here/support/cluster.sh" start "$base.coordinator" "$port"
  for i in 1 2; do
    TG_KEK_FROM="$base.coordinator.kek" "$here/support/cluster.sh" start "$base.worker$i" $((port + i))
  done
  ;;
stop)
  for n in "${nodes[@]}"; do "$here/support/cluster.sh" stop "$base.$n"; done
  ;;
*)
  echo "usage: $0 start BASE PORT | stop BASE" >&2; exit 2 ;;
esac
