#!/usr/bin/env bash
# Starts the Cloud Storage emulator of firebase-tools on loopback (scripts/gcs-emulator.cjs):
#   http://127.0.0.1:${BENDSAVE_GCS_PORT:-18200}, project demo-test, no authentication
# Usage: scripts/gcs-up.sh [DIR]   (DIR default: a new temp directory)
# Blobs, log and PID (DIR/gcs.pid) go under DIR; DIR/env.sh exports
# BENDSAVE_GCS_EMULATOR_HOST and BENDSAVE_GCS_DIR. Stop with scripts/gcs-down.sh DIR.
# Needs scripts/test-servers-install.sh first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$ROOT/tools/test-servers/node_modules/firebase-tools/package.json" ]; then
  echo "gcs-up: firebase-tools is not installed; run scripts/test-servers-install.sh" >&2
  exit 2
fi
DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bendsave-gcs.XXXXXX")}
mkdir -p "$DIR/tmp"
DIR=$(cd "$DIR" && pwd)
PORT=${BENDSAVE_GCS_PORT:-18200}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if listening "$PORT"; then
  echo "gcs-up: something already listens on 127.0.0.1:$PORT; stop it (scripts/gcs-down.sh DIR) or set BENDSAVE_GCS_PORT" >&2
  exit 1
fi
NODE=$( [ -x "$ROOT/node_modules/.bin/node" ] && echo "$ROOT/node_modules/.bin/node" || command -v node )
TMPDIR="$DIR/tmp" GCS_PORT="$PORT" GCS_HOST=127.0.0.1 GCS_PROJECT=demo-test \
  nohup "$NODE" "$ROOT/scripts/gcs-emulator.cjs" >"$DIR/gcs.log" 2>&1 &
echo $! >"$DIR/gcs.pid"
for _ in $(seq 1 400); do
  listening "$PORT" && break
  kill -0 "$(cat "$DIR/gcs.pid")" 2>/dev/null || { echo "gcs-up: the emulator exited:" >&2; tail -20 "$DIR/gcs.log" >&2; exit 1; }
  sleep 0.05
done
listening "$PORT" || { echo "gcs-up: the emulator did not listen on 127.0.0.1:$PORT within 20 s" >&2; exit 1; }
cat >"$DIR/env.sh" <<ENV
export BENDSAVE_GCS_EMULATOR_HOST=http://127.0.0.1:$PORT
export BENDSAVE_GCS_DIR=$DIR
ENV
echo "GCS emulator up: http://127.0.0.1:$PORT (pid $(cat "$DIR/gcs.pid")); source $DIR/env.sh"
