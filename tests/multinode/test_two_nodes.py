"""Two nodes train as one: accelerate across two network-namespace nodes, and `sbatch --nodes=2` with a requeue.

Every run here trains the same 12 steps (tiny Whisper, 2 ranks, batch 4, 46 clips) and is compared with one
node running two processes. The weights must be *exactly* equal: the two ranks read the same shards in the same
order wherever they run (rank and world size decide the split, not the host), and gloo's all-reduce of two
ranks adds the same two gradients (a + b = b + a in IEEE arithmetic), so where the processes live changes no bit.
A resumed run restores weights, optimizer, scheduler, RNG and data position, so it is exact too (as on one node).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cluster import job_state, on_node, wait_for_job
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"
STEPS = 12


def _overrides(shards: Path, out: Path) -> list[str]:
    return [
        f"data.shard_dir={shards}",
        f"train.output_dir={out}",
        "model.base_model=tiny-random",
        "model.language=es",
        "train.per_device_train_batch_size=4",
        "train.learning_rate=1e-3",
        "train.log_every_steps=1",
        f"train.max_steps={STEPS}",
        "train.warmup_steps=2",
        "train.eval_steps=-1",
        "data.num_workers=1",
        "checkpoint.save_strategy=steps",
        "checkpoint.save_steps=3",
        "checkpoint.keep_last=2",
    ]


def _env(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), ACCELERATE_USE_CPU="true", **extra)


CPU = ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "final" / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def one_node(demo_shards, tmp_path_factory):
    """The reference: one machine, two processes."""
    out = tmp_path_factory.mktemp("one_node") / "run"
    cmd = [
        str(ACCELERATE),
        "launch",
        *CPU,
        "--num_machines",
        "1",
        "--num_processes",
        "2",
        "-m",
        "mwc_dist.train",
        *_overrides(demo_shards, out),
    ]
    proc = subprocess.run(cmd, env=_env(), cwd=out.parent, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(_losses(out)) == list(range(1, STEPS + 1))
    return out


def test_accelerate_on_two_nodes_equals_one_node(nodes, one_node, demo_shards, tmp_path):
    out = tmp_path / "run"
    procs = []
    for rank in (0, 1):
        cmd = on_node(
            rank + 1,
            [
                str(ACCELERATE),
                "launch",
                *CPU,
                "--num_machines",
                "2",
                "--num_processes",
                "2",
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                nodes[0],
                "--main_process_port",
                "29500",
                "-m",
                "mwc_dist.train",
                *_overrides(demo_shards, out),
            ],
        )
        # gloo binds to the hostname's address (127.0.0.1 in each namespace) unless told the interface
        procs.append(
            subprocess.Popen(
                cmd,
                env=_env(GLOO_SOCKET_IFNAME="eth0"),
                cwd=tmp_path,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == STEPS and summary["ranks_identical"]
    assert "world size 2" in logs[0] and "world size" not in logs[1]  # one group of two; rank 0 (node 1) speaks
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert set(state["data_position"]) == {"0", "1"}  # node 2's rank wrote its own state to the shared disk
    assert _losses(out) == _losses(one_node)
    _assert_same_weights(out, one_node)


def _sbatch(env: dict, tmp_path: Path, shards: Path, out: Path, name: str) -> str:
    config = tmp_path / f"{name}.yaml"
    config.write_text("model: {base_model: tiny-random}\n")  # the rest comes as overrides on the command line
    job_env = dict(
        env,
        PYTHON=sys.executable,
        MWC_DIR=str(ROOT),
        CONFIG=str(config),
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME="eth0",
        GPUS_PER_NODE="0",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--nodes=2",
            f"--output={tmp_path}/{name}.out",
            str(ROOT / "slurm" / "train.sbatch"),
            *_overrides(shards, out),
        ],
        env=job_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def test_sbatch_two_nodes_runs_to_the_end(slurm2, one_node, demo_shards, tmp_path):
    out = tmp_path / "run"
    job = _sbatch(slurm2, tmp_path, demo_shards, out, "plain")
    info = wait_for_job(job, slurm2)
    log = (tmp_path / "plain.out").read_text(errors="replace")
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert info["NodeList"] == "node[1-2]" and "main 10.77.0.1:" in log  # the main address from NodeAddr
    assert "one CPU process per node" in log  # GPUS_PER_NODE=0: said, not guessed
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == STEPS and summary["ranks_identical"]
    _assert_same_weights(out, one_node)


def test_sbatch_two_nodes_requeued_midway_resumes_to_the_same_weights(slurm2, one_node, demo_shards, tmp_path):
    out = tmp_path / "run"
    job = _sbatch(slurm2, tmp_path, demo_shards, out, "requeue")
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 4):
        assert job_state(job, slurm2).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), (
            tmp_path / "requeue.out"
        ).read_text()[-3000:]
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm2, check=True)  # what --signal=USR1@120 sends
    info = wait_for_job(job, slurm2, timeout=400)
    log = (tmp_path / "requeue.out").read_text(errors="replace")
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert int(info["Restarts"]) == 1 and "preempted (SIGUSR1)" in log and "scontrol requeue" in log
    stopped_at = int(log.split("preempted (SIGUSR1) at step ")[1].split(":")[0])
    assert 4 <= stopped_at < STEPS and f"at step {stopped_at}, epoch" in log  # resumed where it stopped
    assert sorted(int(json.loads(x)["step"]) for x in metrics.read_text().splitlines() if '"loss"' in x) == list(
        range(1, STEPS + 1)
    )  # every step once: no replay, no gap
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == STEPS and summary["ranks_identical"]
    assert _losses(out) == _losses(one_node)
    _assert_same_weights(out, one_node)
