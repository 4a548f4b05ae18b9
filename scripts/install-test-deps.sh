#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian machine (as root):
# etcd + etcdctl and a single-node Ceph with radosgw from apt, and the Azure and
# GCS emulators (Azurite, firebase-tools) into tools/test-servers from npm.
# `npm test` then starts the servers on loopback itself. .ci/run does the same.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1 || need+=(etcd-server etcd-client)
command -v radosgw >/dev/null 2>&1 && command -v ceph-osd >/dev/null 2>&1 && command -v ceph-mon >/dev/null 2>&1 ||
  need+=(ceph-mon ceph-osd radosgw ceph-common uuid-runtime)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing with apt: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
bash scripts/test-servers-install.sh
echo "test dependencies installed; run: npm test"
