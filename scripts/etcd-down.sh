#!/usr/bin/env bash
# Stops the etcd servers that scripts/etcd-up.sh started in DIR (by the PIDs it
# recorded) and removes DIR. Usage: scripts/etcd-down.sh DIR
set -uo pipefail
DIR=${1:?usage: scripts/etcd-down.sh DIR (the directory given to or printed by etcd-up.sh)}
[ -d "$DIR" ] || exit 0
for pidfile in "$DIR"/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
done
rm -rf "$DIR"
