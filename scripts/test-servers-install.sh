#!/usr/bin/env bash
# Installs the emulators of the integration tests into tools/test-servers
# (azurite for Azure Blob, firebase-tools for the GCS emulator), apart from the
# workspace so that `npm install` of the repository stays fast. Optional
# dependencies are omitted: firebase-tools would otherwise compile re2 (~3 min),
# which the storage emulator does not need. Idempotent; ~45 s the first time.
# Usage: scripts/test-servers-install.sh
set -euo pipefail
DIR="$(cd "$(dirname "$0")/.." && pwd)/tools/test-servers"
if [ -f "$DIR/node_modules/azurite/package.json" ] && [ -f "$DIR/node_modules/firebase-tools/package.json" ] &&
  [ "$DIR/node_modules/.package-lock.json" -nt "$DIR/package.json" ]; then
  echo "test servers already installed in $DIR"
  exit 0
fi
cd "$DIR"
npm install --no-audit --no-fund --omit=optional --no-save >"$DIR/install.log" 2>&1 || { tail -30 "$DIR/install.log" >&2; exit 1; }
echo "test servers installed in $DIR (azurite $(node -p 'require("./node_modules/azurite/package.json").version'), firebase-tools $(node -p 'require("./node_modules/firebase-tools/package.json").version'))"
