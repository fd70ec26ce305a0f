#!/bin/bash
# A two-node SLURM 22.05 cluster on one machine: slurmctld on this host (10.77.0.254, a free port), one slurmd in
# each namespace of nodes_up.sh (node1 = 10.77.0.1, node2 = 10.77.0.2), all state under $BASE. Root only.
#   BASE=/tmp/x ./slurm2_up.sh ; export SLURM_CONF=$BASE/slurm.conf ; sbatch --nodes=2 ... ; ./slurm2_down.sh
# Traps (found making the shared recipe this copies): start slurmd with `nsenter --net=`, not `ip netns exec`
# (which remounts /sys: "No filesystem mounted on /sys/fs/cgroup"); node1/node2 are not in DNS, so the main
# address comes from NodeAddr; $BASE must be traversable by the munge user.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BASE=${BASE:?set BASE to an empty folder}
export SLURM_CONF=$BASE/slurm.conf
"$here/nodes_up.sh" 2
mkdir -p "$BASE"/{munge,state,spool/node1,spool/node2,log,run}; chmod 755 "$BASE"
[ -f "$BASE/munge/munge.key" ] || dd if=/dev/urandom of="$BASE/munge/munge.key" bs=1 count=128 status=none
chown -R munge:munge "$BASE/munge"; chmod 755 "$BASE/munge"; chmod 600 "$BASE/munge/munge.key"
runuser -u munge -- /usr/sbin/munged --socket="$BASE/munge/munge.socket.2" --key-file="$BASE/munge/munge.key" \
    --log-file="$BASE/munge/munged.log" --pid-file="$BASE/munge/munged.pid" --seed-file="$BASE/munge/munged.seed"
# slurmctld on a port free on this host; each slurmd is alone in its namespace, any fixed port is free there
ctld_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("10.77.0.254", 0)); print(s.getsockname()[1])')
sed -e "s#@BASE@#$BASE#g" -e "s#@CTLD_PORT@#$ctld_port#" -e "s#@SLURMD_PORT@#16818#" \
    -e "s#^SlurmctldHost=.*#SlurmctldHost=$(hostname)(10.77.0.254)#" \
    -e 's#^SlurmdSpoolDir=\(.*\)#SlurmdSpoolDir=\1/%n#' \
    -e 's#^SlurmdPidFile=.*#SlurmdPidFile='"$BASE"'/run/slurmd-%n.pid#' \
    -e 's#^SlurmdLogFile=.*#SlurmdLogFile='"$BASE"'/log/slurmd-%n.log#' \
    -e 's#^NodeName=.*#NodeName=node[1-2] NodeAddr=10.77.0.[1-2] CPUs=2 RealMemory=10000 State=UNKNOWN#' \
    -e 's#^PartitionName=.*#PartitionName=debug Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP#' \
    "$here/../slurm/slurm.conf.in" > "$SLURM_CONF"
/usr/sbin/slurmctld -f "$SLURM_CONF"
for i in 1 2; do nsenter --net=/var/run/netns/mwcn$i /usr/sbin/slurmd -f "$SLURM_CONF" -N node$i; done
for _ in $(seq 100); do [ "$(sinfo -h -N -t idle 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.2; done
sinfo -N
