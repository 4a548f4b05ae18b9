#!/usr/bin/env bash
# Stops the server scripts/gcs-up.sh started in DIR (by the PID it recorded) and removes DIR.
# Usage: scripts/gcs-down.sh DIR
set -uo pipefail
DIR=${1:?usage: scripts/gcs-down.sh DIR (the directory given to or printed by gcs-up.sh)}
[ -d "$DIR" ] || exit 0
pidfile="$DIR/gcs.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
fi
rm -rf "$DIR"
