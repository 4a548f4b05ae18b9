#!/usr/bin/env bash
# Starts the two etcd servers the tests and the benchmark use, on loopback:
#   etcd 1: client 127.0.0.1:${BENDSAVE_ETCD_PORT:-18400}, peer +1
#   etcd 2: client 127.0.0.1:${BENDSAVE_ETCD2_PORT:-18410}, peer +1
# Usage: scripts/etcd-up.sh [DIR]   (DIR default: a new temp directory)
# Data, logs and PIDs go under DIR; DIR/env.sh exports BENDSAVE_ETCD_ENDPOINTS,
# BENDSAVE_ETCD2_ENDPOINTS and BENDSAVE_ETCD_DIR. Stop with scripts/etcd-down.sh DIR.
# Needs the Debian packages etcd-server and etcd-client (etcd, etcdctl).
set -euo pipefail

for bin in etcd etcdctl; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "etcd-up: '$bin' is not installed; install it with: apt-get install etcd-server etcd-client" >&2
    exit 2
  fi
done

DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bendsave-etcd.XXXXXX")}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PORT1=${BENDSAVE_ETCD_PORT:-18400}
PORT2=${BENDSAVE_ETCD2_PORT:-18410}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
healthy() { ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$1" --dial-timeout=300ms --command-timeout=2s endpoint health >/dev/null 2>&1; }

start() { # start NAME CLIENT_PORT
  local name=$1 port=$2 peer=$(($2 + 1))
  if listening "$port" || listening "$peer"; then
    echo "etcd-up: something already listens on 127.0.0.1:$port or :$peer; stop it (scripts/etcd-down.sh) or set BENDSAVE_ETCD_PORT/BENDSAVE_ETCD2_PORT" >&2
    return 1
  fi
  rm -rf "${DIR:?}/$name"
  # Large test values (64 KiB) and 100 000-key test sets: raise the backend quota.
  nohup etcd --name "$name" --data-dir "$DIR/$name" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$name=http://127.0.0.1:$peer" --quota-backend-bytes=$((8 * 1024 * 1024 * 1024)) --heartbeat-interval=10 --election-timeout=100 \
    --logger zap --log-level warn >"$DIR/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

wait_healthy() { # wait_healthy NAME CLIENT_PORT
  local name=$1 port=$2
  for _ in $(seq 1 200); do
    listening "$port" && healthy "$port" && return 0
    if ! kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
      echo "etcd-up: etcd $name exited; its log ($DIR/$name.log):" >&2
      tail -20 "$DIR/$name.log" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "etcd-up: etcd $name did not become healthy on 127.0.0.1:$port within 10 s; log: $DIR/$name.log" >&2
  return 1
}

start etcd1 "$PORT1"
start etcd2 "$PORT2" || { kill "$(cat "$DIR/etcd1.pid")" 2>/dev/null || true; exit 1; }
if ! wait_healthy etcd1 "$PORT1" || ! wait_healthy etcd2 "$PORT2"; then
  "$(dirname "$0")/etcd-down.sh" "$DIR" >/dev/null 2>&1 || true
  exit 1
fi

cat >"$DIR/env.sh" <<ENV
export BENDSAVE_ETCD_ENDPOINTS=http://127.0.0.1:$PORT1
export BENDSAVE_ETCD2_ENDPOINTS=http://127.0.0.1:$PORT2
export BENDSAVE_ETCD_DIR=$DIR
ENV
echo "etcd up: http://127.0.0.1:$PORT1 and http://127.0.0.1:$PORT2 (pids $(cat "$DIR/etcd1.pid") $(cat "$DIR/etcd2.pid")); source $DIR/env.sh"
