#!/usr/bin/env bash
# Stops the Ceph daemons scripts/s3-up.sh started in DIR (by the PIDs it
# recorded; radosgw first, the mon last) and removes DIR (unless --keep).
# Usage: scripts/s3-down.sh DIR [--keep]
set -uo pipefail
DIR=${1:?usage: scripts/s3-down.sh DIR (the directory given to or printed by s3-up.sh)}
[ -d "$DIR" ] || exit 0
for name in rgw osd.0 mon.a; do
  pidfile="$DIR/ceph/run/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
done
[ "${2:-}" = "--keep" ] || rm -rf "$DIR"
