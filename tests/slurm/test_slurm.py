"""The sbatch scripts on a real scheduler: training with 2 tasks, preemption -> requeue -> resume, array sharding."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import sbatch, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra) -> dict:
    return dict(os.environ, PYTHON=sys.executable, MWC_DIR=str(ROOT), OMP_NUM_THREADS="1", **extra)


def _config(tmp_path: Path, shards: Path, out: Path, max_steps: int) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"""
data: {{shard_dir: {shards}, num_workers: 1}}
model: {{base_model: tiny-random, language: es}}
train: {{output_dir: {out}, max_steps: {max_steps}, per_device_train_batch_size: 2, log_every_steps: 1,
         eval_steps: -1, learning_rate: 1.0e-3}}
checkpoint: {{save_strategy: steps, save_steps: 1000, keep_last: 2}}
""")
    return path


def test_train_sbatch_two_tasks(slurm, demo_shards, tmp_path):
    out = tmp_path / "run"
    config = _config(tmp_path, demo_shards, out, 6)
    job = sbatch(
        "--ntasks=2",
        "--ntasks-per-node=2",
        f"--output={tmp_path}/job-%j.out",
        str(ROOT / "slurm" / "train.sbatch"),
        env=_env(CONFIG=str(config), LAUNCHER="srun"),
        cwd=tmp_path,
    )
    info = wait_for(job)
    log = next(tmp_path.glob("job-*.out")).read_text(errors="replace")
    assert info["JobState"] == "COMPLETED", log[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6 and summary["ranks_identical"]


def test_preempted_job_checkpoints_requeues_and_finishes(slurm, demo_shards, tmp_path):
    out = tmp_path / "run"
    config = _config(tmp_path, demo_shards, out, 40)
    job = sbatch(
        "--ntasks=2",
        "--ntasks-per-node=2",
        f"--output={tmp_path}/job.out",
        "--open-mode=append",
        str(ROOT / "slurm" / "train.sbatch"),
        env=_env(CONFIG=str(config), LAUNCHER="srun"),
        cwd=tmp_path,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.2)
    assert metrics.exists(), (tmp_path / "job.out").read_text(errors="replace")[-3000:]
    subprocess.run(["scancel", "--signal=USR1", job], check=True)  # what --signal=USR1@120 sends
    info = wait_for(job, timeout=400)
    log = (tmp_path / "job.out").read_text(errors="replace")
    assert info["JobState"] == "COMPLETED", log[-3000:]
    assert int(info["Restarts"]) >= 1 and "preempted (SIGUSR1)" in log and "scontrol requeue" in log
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["steps"] == 40 and summary["world_size"] == 2
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if '"loss"' in x]
    assert sorted(steps) == list(range(1, 41))  # every step exactly once: no replay, no gap
    assert "resumed from" in log


def test_array_shard_job_equals_one_run(slurm, tmp_path):
    from mwc_dist.config import DataConfig
    from mwc_dist.data.shard import shard_source
    from mwc_dist.demo.corpus import make_demo_corpus

    make_demo_corpus(tmp_path / "data", count=40, progress=False)
    shard_source(
        DataConfig(source=str(tmp_path / "data"), shard_samples=6), tmp_path / "single", workers=1, progress=False
    )
    job = sbatch(
        "--array=0-2",
        f"--output={tmp_path}/shard-%a.out",
        str(ROOT / "slurm" / "shard.sbatch"),
        "data.shard_samples=6",
        env=_env(SOURCE=str(tmp_path / "data"), OUT=str(tmp_path / "array")),
        cwd=tmp_path,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
        if queue.returncode == 0 and not queue.stdout.split():  # (a busy slurmctld answers with an error: ask again)
            break
        time.sleep(0.5)
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(tmp_path.glob("shard-*.out"))
    )
    assert (tmp_path / "array" / "train.manifest.json").is_file(), logs
    for split in ("train", "validation", "test"):
        a = json.loads((tmp_path / "single" / f"{split}.manifest.json").read_text())["shards"]
        b = json.loads((tmp_path / "array" / f"{split}.manifest.json").read_text())["shards"]
        assert a == b  # same shards, byte for byte (sha256)
    assert (tmp_path / "single" / "quarantine.jsonl").read_text() == (
        tmp_path / "array" / "quarantine.jsonl"
    ).read_text()


def test_preempting_one_job_leaves_a_job_beside_it_alone(slurm, demo_shards, tmp_path):
    """Two jobs on one node at once (LAUNCHER=accelerate, 2 CPU processes each): USR1 to one reaches only its
    own trainers; each got its own free rendezvous port. (The old trap signalled every `-m mwc_dist.train` on
    the node.)"""
    jobs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        out = tmp_path / name
        config = _config(tmp_path / name, demo_shards, out / "run", 30)
        env = _env(CONFIG=str(config), LAUNCHER="accelerate", GPUS_PER_NODE="2", ACCELERATE_USE_CPU="true")
        jobs[name] = sbatch(
            "--ntasks=1",
            "--cpus-per-task=1",
            f"--output={tmp_path}/{name}.out",
            str(ROOT / "slurm" / "train.sbatch"),
            env=env,
            cwd=tmp_path,
        )
    deadline = time.time() + 240

    def lines(name: str) -> int:
        metrics = tmp_path / name / "run" / "metrics.jsonl"
        return len(metrics.read_text().splitlines()) if metrics.exists() else 0

    while time.time() < deadline and min(lines("a"), lines("b")) < 3:  # both running at the same time
        time.sleep(0.2)
    assert min(lines("a"), lines("b")) >= 3, (tmp_path / "a.out").read_text(errors="replace")[-2000:] + (
        tmp_path / "b.out"
    ).read_text()[-2000:]
    subprocess.run(["scancel", "--signal=USR1", jobs["a"]], check=True)
    b = wait_for(jobs["b"], timeout=300)
    subprocess.run(["scancel", jobs["a"]], check=True)  # a was requeued; it need not run again here
    log_a, log_b = (tmp_path / "a.out").read_text(errors="replace"), (tmp_path / "b.out").read_text(errors="replace")
    assert "preempted (SIGUSR1)" in log_a
    assert b["JobState"] == "COMPLETED" and int(b["Restarts"]) == 0, log_b[-3000:]
    assert "preempted" not in log_b  # job b's trainers never saw a signal
    summary = json.loads((tmp_path / "b" / "run" / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 30
    ports = [log.split("main ")[1].split()[0] for log in (log_a, log_b)]
    assert ports[0] != ports[1], ports


def test_pseudo_label_sbatch_two_tasks_equals_one_process(slurm, demo_shards, tmp_path):
    """slurm/pseudo_label.sbatch with 2 tasks writes what one in-process run writes, byte for byte."""
    from mwc_dist.data.pseudo import pseudo_label
    from mwc_dist.models.build import materialize_preset

    teacher = materialize_preset("tiny-random", seed=11)
    args = ["--language", "es", "--max-new-tokens", "8", "--max-shards", "4"]
    env = _env(MODEL=str(teacher), DATA=str(demo_shards), OUT=str(tmp_path / "slurm"))
    job = sbatch(
        "--ntasks=2",
        f"--output={tmp_path}/job-%j.out",
        str(ROOT / "slurm" / "pseudo_label.sbatch"),
        *args,
        env=env,
        cwd=tmp_path,
    )
    info = wait_for(job)
    log = next(tmp_path.glob("job-*.out")).read_text(errors="replace")
    assert info["JobState"] == "COMPLETED" and "rank 1: 0 of its 2 shards already labelled" in log, log[-3000:]
    pseudo_label(teacher, demo_shards, tmp_path / "local", language="es", max_new_tokens=8, max_shards=4)
    files = [{p.name: p.read_bytes() for p in sorted((tmp_path / d).iterdir())} for d in ("slurm", "local")]
    assert files[0] == files[1] and len(files[0]) > 8
