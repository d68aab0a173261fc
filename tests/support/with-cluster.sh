#!/usr/bin/env bash
# with-cluster.sh DIR PORT COMMAND...: starts a throwaway cluster, runs COMMAND with TG_PORT/TG_HOST set, stops the
# cluster whatever happens, and exits with COMMAND's status.
set -euo pipefail
here=$(dirname "$0")
dir=$1 port=$2; shift 2
"$here/cluster.sh" stop "$dir"
"$here/cluster.sh" start "$dir" "$port"
trap '"$here/cluster.sh" stop "$dir"' EXIT
TG_HOST=127.0.0.1 TG_PORT=$port TG_LOG="$dir/server.log" "$@"
