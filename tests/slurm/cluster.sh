#!/usr/bin/env bash
# Start (or stop) a real one-node SLURM cluster on this host for the integration test.
# Usage: cluster.sh start DIR   -> prints "SLURM_CONF=DIR/slurm.conf" when sinfo shows the node idle
#        cluster.sh stop DIR
# Needs root and Debian's slurm-wlm + munge (apt-get install slurm-wlm munge).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?state dir}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
export SLURM_CONF=$dir/slurm.conf

stop() {
  for f in slurmd slurmctld; do [ -f "$dir/$f.pid" ] && kill "$(cat "$dir/$f.pid")" 2>/dev/null || true; done
  [ -f "$dir/munged.pid" ] && kill "$(cat "$dir/munged.pid")" 2>/dev/null || true
  sleep 1
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

command -v slurmctld >/dev/null && command -v munged >/dev/null || { echo "slurm-wlm/munge not installed" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 3; }

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$dir"/{spool,state,log,munge}
# munge: its own key, socket and pid inside $dir
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
       --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
cat > "$SLURM_CONF" <<CONF
ClusterName=optrun-test
SlurmctldHost=$host
SlurmctldPort=$((16817 + RANDOM % 1000))
SlurmdPort=$((17818 + RANDOM % 1000))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
JobRequeue=1
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -i
slurmd
for i in $(seq 1 30); do
  if sinfo -h -o '%t' 2>/dev/null | grep -q idle; then echo "SLURM_CONF=$SLURM_CONF"; exit 0; fi
  sleep 1
done
echo "slurm node never became idle; logs in $dir/log" >&2
sinfo >&2 || true
exit 4
