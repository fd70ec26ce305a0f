#!/bin/bash
# Stop what slurm2_up.sh started (by pid file: never another cluster's daemons), then remove the namespaces.
BASE=${BASE:?}
for f in "$BASE"/run/slurmd-node1.pid "$BASE"/run/slurmd-node2.pid "$BASE/run/slurmctld.pid" "$BASE/munge/munged.pid"; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
done
for _ in $(seq 50); do pids=$(cat "$BASE"/run/*.pid "$BASE/munge/munged.pid" 2>/dev/null); alive=0
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 0.1; done
"$(cd "$(dirname "$0")" && pwd)/nodes_down.sh" 2
true
