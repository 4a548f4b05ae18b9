#!/usr/bin/env bash
# Starts Azurite (the Azure Blob Storage emulator) on loopback, in memory:
#   blob endpoint http://127.0.0.1:${BENDSAVE_AZURITE_PORT:-18300}/devstoreaccount1
#   account devstoreaccount1 with Azurite's well-known development key
# Usage: scripts/azurite-up.sh [DIR]   (DIR default: a new temp directory)
# Log and PID (DIR/azurite.pid) go under DIR; DIR/env.sh exports
# BENDSAVE_AZURITE_CONNECTION_STRING and BENDSAVE_AZURITE_DIR. Stop with
# scripts/azurite-down.sh DIR. Needs scripts/test-servers-install.sh first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAIN="$ROOT/tools/test-servers/node_modules/azurite/dist/src/blob/main.js"
if [ ! -f "$MAIN" ]; then
  echo "azurite-up: Azurite is not installed; run scripts/test-servers-install.sh" >&2
  exit 2
fi
DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bendsave-azurite.XXXXXX")}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PORT=${BENDSAVE_AZURITE_PORT:-18300}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if listening "$PORT"; then
  echo "azurite-up: something already listens on 127.0.0.1:$PORT; stop it (scripts/azurite-down.sh DIR) or set BENDSAVE_AZURITE_PORT" >&2
  exit 1
fi
# Node 22 of the repository's `node` dev dependency when there is one (Azurite runs on 20 too).
NODE=$( [ -x "$ROOT/node_modules/.bin/node" ] && echo "$ROOT/node_modules/.bin/node" || command -v node )
# --skipApiVersionCheck: the newest @azure/storage-blob speaks a newer API version than Azurite knows.
nohup "$NODE" "$MAIN" --blobHost 127.0.0.1 --blobPort "$PORT" --inMemoryPersistence \
  --skipApiVersionCheck --loose --disableTelemetry --silent >"$DIR/azurite.log" 2>&1 &
echo $! >"$DIR/azurite.pid"
for _ in $(seq 1 200); do
  listening "$PORT" && break
  kill -0 "$(cat "$DIR/azurite.pid")" 2>/dev/null || { echo "azurite-up: Azurite exited:" >&2; tail -20 "$DIR/azurite.log" >&2; exit 1; }
  sleep 0.05
done
listening "$PORT" || { echo "azurite-up: Azurite did not listen on 127.0.0.1:$PORT within 10 s" >&2; exit 1; }
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
cat >"$DIR/env.sh" <<ENV
export BENDSAVE_AZURITE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$KEY;BlobEndpoint=http://127.0.0.1:$PORT/devstoreaccount1;'
export BENDSAVE_AZURITE_DIR=$DIR
ENV
echo "Azurite up: http://127.0.0.1:$PORT/devstoreaccount1 (pid $(cat "$DIR/azurite.pid")); source $DIR/env.sh"
