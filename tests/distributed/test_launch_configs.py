"""The accelerate_configs/ files not launched elsewhere, launched here on CPU: single_gpu, multi_gpu, zero2_offload.

On a machine without GPUs the GPU files run with ACCELERATE_USE_CPU=true (gloo); the run must see the world
the file (or --num_processes) asks for. zero2_offload keeps the optimizer state on the CPU (DeepSpeedCPUAdam).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"


@pytest.mark.parametrize(
    "config_file, extra, cpu, world",
    [
        ("single_gpu.yaml", [], True, 1),
        ("multi_gpu.yaml", ["--num_processes", "2"], True, 2),
        ("zero2_offload.yaml", [], False, 2),
    ],
)
def test_config_file_launches(demo_shards, tmp_path, config_file, extra, cpu, world):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("ACCELERATE_USE_CPU", None)
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(ROOT / "accelerate_configs" / config_file),
        *extra,
        "-m",
        "mwc_dist.train",
        f"data.shard_dir={demo_shards}",
        f"train.output_dir={out}",
        "model.base_model=tiny-random",
        "model.language=es",
        "train.max_steps=3",
        "train.eval_steps=-1",
        "train.log_every_steps=1",
        "train.per_device_train_batch_size=2",
        "data.num_workers=1",
        "checkpoint.save_strategy=no",
        "train.learning_rate=1e-3",
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == world and summary["steps"] == 3 and summary["ranks_identical"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 3 and all(v == v for v in losses)


def test_cpu_flag_with_two_processes_is_refused_with_the_working_command(demo_shards, tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's CPU trap): refused with exit 2
    before training, the message naming the command that starts two, printed last (after accelerate's own report)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [str(ACCELERATE), "launch", "--cpu", "--num_processes", "2", "-m", "mwc_dist.train"]
    cmd += [f"data.shard_dir={demo_shards}", f"train.output_dir={tmp_path / 'run'}", "train.max_steps=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and not (tmp_path / "run" / "run_summary.json").exists()
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: accelerate launch was asked for 2 processes but 1 joined"), proc.stderr[-2000:]
    assert "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2" in last
    assert "returned non-zero exit status 2" in proc.stderr  # the one process exited 2
