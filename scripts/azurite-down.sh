#!/usr/bin/env bash
# Stops the server scripts/azurite-up.sh started in DIR (by the PID it recorded) and removes DIR.
# Usage: scripts/azurite-down.sh DIR
set -uo pipefail
DIR=${1:?usage: scripts/azurite-down.sh DIR (the directory given to or printed by azurite-up.sh)}
[ -d "$DIR" ] || exit 0
pidfile="$DIR/azurite.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
fi
rm -rf "$DIR"
