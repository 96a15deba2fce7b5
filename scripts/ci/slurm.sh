#!/usr/bin/env bash
# Starts a single-node Slurm (slurmctld + slurmd + munge) on loopback for tests/slurm.rs.
# Idempotent; run as root. Prints SLURM_READY when the node is idle and accepts jobs.
# Scratch state lives in $HFT_SLURM_DIR (default /var/tmp/hft-slurm); stop the daemons with
# `scripts/ci/slurm.sh stop` (by the pids in their pid files).
set -euo pipefail

state_dir="${HFT_SLURM_DIR:-/var/tmp/hft-slurm}"

stop() {
    for pid_file in "$state_dir/slurmd.pid" "$state_dir/slurmctld.pid"; do
        if [ -s "$pid_file" ]; then
            kill "$(cat "$pid_file")" 2>/dev/null || true
            rm -f "$pid_file"
        fi
    done
}

if [ "${1:-}" = "stop" ]; then
    stop
    # munged too: `stop` leaves nothing of the cluster running.
    if [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "slurm.sh: must run as root (it installs packages and starts daemons)" >&2
    exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

# munge: one shared key, directories owned by munge.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged --force
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
# A job that asks for no memory gets a share per CPU, not the whole node, so jobs overlap.
mem_per_cpu=$(( mem_mb / cpus / 2 ))
mkdir -p "$state_dir/state" "$state_dir/spool" /etc/slurm
config=$(cat <<EOF
# Written by scripts/ci/slurm.sh: one node on loopback for tests.
ClusterName=hft-ci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${state_dir}/state
SlurmdSpoolDir=${state_dir}/spool
SlurmctldPidFile=${state_dir}/slurmctld.pid
SlurmdPidFile=${state_dir}/slurmd.pid
SlurmctldLogFile=${state_dir}/slurmctld.log
SlurmdLogFile=${state_dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=${mem_per_cpu}
EOF
)
# A changed configuration (another machine size) restarts the daemons.
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$config" ]; then
    printf '%s\n' "$config" >/etc/slurm/slurm.conf
    stop
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running "$state_dir/slurmctld.pid"; then
    slurmctld
fi
for _ in $(seq 1 50); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
if ! running "$state_dir/slurmd.pid"; then
    slurmd
fi

for _ in $(seq 1 150); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle\|mix\|alloc'; then
        echo SLURM_READY
        exit 0
    fi
    state=$(sinfo -h -N -o '%t' 2>/dev/null || true)
    case "$state" in
        down*|drain*) scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
echo "slurm.sh: the node did not become idle; see $state_dir/slurmctld.log and $state_dir/slurmd.log" >&2
sinfo -N >&2 || true
exit 1
