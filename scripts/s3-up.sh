#!/usr/bin/env bash
# Starts a throwaway single-node Ceph (mon + osd, no mgr) with radosgw on
# loopback: the S3 server of the tests and the benchmark. No systemd, no cephadm.
#   S3:  http://127.0.0.1:${BENDSAVE_S3_PORT:-18090}, keys TESTAK / TESTSECRETKEY, region us-east-1
#   mon: 127.0.0.1:${BENDSAVE_CEPH_MON_PORT:-18100} (msgr v2); daemons bind 18110-18179
# Usage: scripts/s3-up.sh [DIR]   (DIR default: a new temp directory)
# Data, logs and PIDs (DIR/run/*.pid) go under DIR; DIR/env.sh exports
# BENDSAVE_S3_ENDPOINT, BENDSAVE_S3_ACCESS_KEY, BENDSAVE_S3_SECRET_KEY and
# BENDSAVE_S3_DIR. Stop with scripts/s3-down.sh DIR.
# Store: bluestore on a sparse file (default; RAM stays ~0.6 GiB whatever the
# data) or memstore (BENDSAVE_CEPH_STORE=memstore: keeps every byte in RAM).
# Needs the Debian packages: ceph-mon ceph-osd radosgw ceph-common uuid-runtime.
set -euo pipefail

for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool uuidgen; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "s3-up: '$bin' is not installed; install Ceph with: apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common uuid-runtime" >&2
    exit 2
  fi
done

DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bendsave-s3.XXXXXX")}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
STORE=${BENDSAVE_CEPH_STORE:-bluestore}
RGW_PORT=${BENDSAVE_S3_PORT:-18090}
MON_PORT=${BENDSAVE_CEPH_MON_PORT:-18100}
T0=$(date +%s%N)
lap() { echo "s3-up: [$(( ($(date +%s%N) - T0) / 1000000 )) ms] $*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in "$RGW_PORT" "$MON_PORT"; do
  if listening "$port"; then
    echo "s3-up: something already listens on 127.0.0.1:$port; stop it (scripts/s3-down.sh DIR) or set BENDSAVE_S3_PORT / BENDSAVE_CEPH_MON_PORT" >&2
    exit 1
  fi
done

# The mon directory must not exist: `ceph-mon --mkfs` silently does nothing when it is non-empty.
rm -rf "${DIR:?}/ceph"
C="$DIR/ceph"
mkdir -p "$C"/{run,log,osd.0,rgw,crash}
FSID=$(uuidgen)
export CEPH_CONF="$C/ceph.conf"
cat >"$CEPH_CONF" <<EOF
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_port_min = 18110
ms_bind_port_max = 18179
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
run_dir = $C/run
pid_file = $C/run/\$name.pidf
admin_socket = $C/run/\$name.asok
log_file = $C/log/\$name.log
crash_dir = $C/crash
mon_data = $C/\$name
osd_data = $C/\$name
keyring = $C/\$name/keyring
log_to_stderr = false
err_to_stderr = true
mon_data_avail_warn = 1
mon_data_avail_crit = 0
# Faster paxos commits for a throwaway single-mon cluster (pool creation by rgw, osd boot).
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[osd]
osd_objectstore = $STORE
memstore_device_bytes = 3221225472
bluestore_block_path = $C/osd.0/block.file
bluestore_block_size = 21474836480
bluestore_block_create = true
osd_memory_target = 1073741824
bluestore_cache_autotune = false
bluestore_cache_size = 268435456
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[client.rgw.gw]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $C/rgw
rgw_thread_pool_size = 64
# Deleted objects are kept for the garbage collector, by default 2 hours: tests and benchmarks
# that write and delete gigabytes would fill the 20 GiB device long before. Free them within minutes.
rgw_gc_obj_min_wait = 60
rgw_gc_processor_period = 60
# radosgw defaults to ms_mon_client_mode=secure + cephx; with auth off that cannot connect (-13).
ms_mon_client_mode = crc
auth_client_required = none
EOF

fail() {
  echo "s3-up: $*" >&2
  for f in "$C"/log/*.log "$C"/log/*.stdout; do [ -f "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done
  "$(dirname "$0")/s3-down.sh" "$DIR" --keep >/dev/null 2>&1 || true
  exit 1
}

# mon
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" --set-min-mon-release pacific --enable-all-features "$C/monmap" >/dev/null
ceph-authtool --create-keyring "$C/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-mon --mkfs -i a --monmap "$C/monmap" --keyring "$C/mon.keyring"
[ -f "$C/mon.a/store.db/CURRENT" ] || fail "ceph-mon --mkfs did not create the mon store"
nohup ceph-mon -f -i a >"$C/log/mon.a.stdout" 2>&1 &
echo $! >"$C/run/mon.a.pid"
for _ in $(seq 1 150); do ceph -s --connect-timeout 2 >/dev/null 2>&1 && break; sleep 0.2; done
ceph -s --connect-timeout 2 >/dev/null 2>&1 || fail "the mon did not answer within 30 s"
lap "mon up"

# osd (no mgr: radosgw I/O works without it, and it saves ~300 MiB)
OSD_UUID=$(uuidgen)
ID=$(ceph osd new "$OSD_UUID")
ceph-osd -i "$ID" --mkfs --osd-uuid "$OSD_UUID" >"$C/log/osd.mkfs.log" 2>&1 || fail "ceph-osd --mkfs failed"
nohup ceph-osd -f -i "$ID" >"$C/log/osd.0.stdout" 2>&1 &
echo $! >"$C/run/osd.0.pid"
for _ in $(seq 1 200); do ceph osd stat 2>/dev/null | grep -q '1 up' && break; sleep 0.3; done
ceph osd stat 2>/dev/null | grep -q '1 up' || fail "the osd did not come up within 60 s"
lap "osd up ($STORE)"

# radosgw
nohup radosgw -f -n client.rgw.gw >"$C/log/rgw.stdout" 2>&1 &
echo $! >"$C/run/rgw.pid"
for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break; sleep 0.2; done
curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" || fail "radosgw did not answer on 127.0.0.1:$RGW_PORT within 60 s"
radosgw-admin user create --uid=test --display-name=test --access-key=TESTAK --secret-key=TESTSECRETKEY >/dev/null
lap "radosgw answering on 127.0.0.1:$RGW_PORT (keys TESTAK / TESTSECRETKEY)"

cat >"$DIR/env.sh" <<ENV
export BENDSAVE_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export BENDSAVE_S3_ACCESS_KEY=TESTAK
export BENDSAVE_S3_SECRET_KEY=TESTSECRETKEY
export BENDSAVE_S3_DIR=$DIR
export CEPH_CONF=$CEPH_CONF
ENV
echo "S3 (Ceph radosgw) up: http://127.0.0.1:$RGW_PORT; source $DIR/env.sh"
