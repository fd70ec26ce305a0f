#!/usr/bin/env bash
# Assemble and run an `accelerate launch` for mwc_dist.train. Nothing else happens here.
#   launch/train.sh cpu        CONFIG [overrides]   # 2 CPU processes (gloo), e.g. to try a config
#   launch/train.sh gpu        CONFIG [overrides]   # 1 GPU
#   launch/train.sh multi-gpu  CONFIG [overrides]   # all GPUs here (NUM_GPUS, default: nvidia-smi's count)
#   launch/train.sh multi-node CONFIG [overrides]   # NUM_NODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, GPUS_PER_NODE
#   launch/train.sh deepspeed  CONFIG [overrides]   # ZERO=2 (default), 3 or 2_offload; NUM_PROCESSES (default: GPUs, or 2 on CPU)
# ACCELERATE (default: accelerate) and EXTRA_ARGS (passed to accelerate launch) may be set.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?usage: launch/train.sh cpu|gpu|multi-gpu|multi-node|deepspeed CONFIG [overrides]}
config=${2:?usage: launch/train.sh MODE CONFIG [overrides]}
shift 2
acc=${ACCELERATE:-accelerate}
cfgs=$here/accelerate_configs
case "$mode" in
  cpu)
    export ACCELERATE_USE_CPU=true
    args=(--config_file "$cfgs/cpu_2proc.yaml" --num_processes "${NUM_PROCESSES:-2}") ;;
  gpu)
    args=(--config_file "$cfgs/single_gpu.yaml") ;;
  multi-gpu)
    n=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
    args=(--config_file "$cfgs/multi_gpu.yaml" --num_processes "$n") ;;
  multi-node)
    g=${GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
    args=(--config_file "$cfgs/multi_node.yaml" --num_machines "${NUM_NODES:?}" --num_processes $(( NUM_NODES * g ))
          --machine_rank "${NODE_RANK:?}" --main_process_ip "${MASTER_ADDR:?}" --main_process_port "${MASTER_PORT:-29500}") ;;
  deepspeed)
    n=${NUM_PROCESSES:-$(nvidia-smi -L 2>/dev/null | wc -l)}
    [ "$n" -gt 0 ] || n=2   # no GPU: 2 CPU processes (mwc_dist names the gloo backend; no ACCELERATE_USE_CPU here)
    args=(--config_file "$cfgs/zero${ZERO:-2}.yaml" --num_processes "$n") ;;
  *) echo "unknown mode $mode (cpu, gpu, multi-gpu, multi-node, deepspeed)" >&2; exit 2 ;;
esac
set -x
exec $acc launch "${args[@]}" ${EXTRA_ARGS:-} -m mwc_dist.train --config "$config" "$@"
