"""Crashes: kill -9 mid-checkpoint, a damaged newest checkpoint, a dead or hung rank, SIGTERM. Real processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_run import CPU_2PROC, run_args, run_env

HARNESS = Path(__file__).with_name("harness.py")
ROOT = Path(__file__).parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"


def _args(shards: Path, out: Path, *extra: str) -> list[str]:
    return run_args(
        shards,
        out,
        "train.per_device_train_batch_size=2",
        "train.learning_rate=1e-3",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=steps",
        "checkpoint.save_steps=2",
        "checkpoint.keep_last=5",
        "checkpoint.resume_from_checkpoint=latest",
        *extra,
    )


_env = run_env


def _steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else "exited"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_kill_9_during_checkpoint_write_keeps_the_previous_and_resumes(demo_shards, tmp_path):
    from mwc_dist.resume.checkpoint import list_checkpoints, resolve_resume

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS), *_args(demo_shards, out, "train.max_steps=6")],
        env=_env(MWC_FAULT="stall-checkpoint:4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(out / "STALLED", proc)
    proc.kill()  # SIGKILL while checkpoint-4 is half written
    proc.wait(30)
    half = out / ".tmp-checkpoint-4"
    assert (half / "model" / "model.safetensors").is_file() and not (half / "trainer_state.json").exists()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]  # intact, and the only one trusted
    assert resolve_resume("latest", out).name == "checkpoint-2"

    again = subprocess.run(
        [sys.executable, "-m", "mwc_dist.train", *_args(demo_shards, out, "train.max_steps=6")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "resumed from" in again.stdout and "checkpoint-2 at step 2" in again.stdout
    assert not half.exists()  # the stale temp folder is cleared
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert sorted(set(_steps(out))) == [1, 2, 3, 4, 5, 6]  # steps 3-4 ran again after the crash, nothing missing
    assert json.loads((out / "run_summary.json").read_text())["steps"] == 6


def test_damaged_newest_checkpoint_is_passed_over(demo_shards, tmp_path):
    from mwc_dist.resume.checkpoint import problem, resolve_resume

    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "mwc_dist.train", *_args(demo_shards, out, "train.max_steps=4")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    weights = out / "checkpoint-4" / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a truncated copy / a full disk
    assert "model/model.safetensors has" in problem(out / "checkpoint-4")
    messages = []
    assert resolve_resume("latest", out, log=messages.append).name == "checkpoint-2"
    assert "checkpoint-4 is incomplete" in messages[0]
    with pytest.raises(ValueError, match="checkpoint-4 is not a complete checkpoint .*model.safetensors"):
        resolve_resume(str(out / "checkpoint-4"), out)
    # same size but garbage in the safetensors header is caught as well
    weights.write_bytes(b"\xff" * len(data))
    (out / "checkpoint-4" / "files.json").write_text(
        json.dumps(
            {**json.loads((out / "checkpoint-4" / "files.json").read_text()), "model/model.safetensors": len(data)}
        )
    )
    assert "not a readable safetensors file" in problem(out / "checkpoint-4")


def _launch_2proc(shards: Path, out: Path, fault: str, *extra: str) -> subprocess.Popen:
    engine = CPU_2PROC
    return subprocess.Popen(
        [str(ACCELERATE), "launch", *engine, str(HARNESS), *_args(shards, out, *extra)],
        env=_env(ACCELERATE_USE_CPU="true", MWC_FAULT=fault),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=out.parent,
    )


def _time_failure(proc: subprocess.Popen, out: Path, fault) -> tuple[int, float, str]:
    """Cause ``fault()`` (it returns when the fault took effect), then time the launcher's failure; kill leftovers."""
    try:
        at = fault()
        code = proc.wait(timeout=240)
        return code, time.time() - at, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in (out / "pids").glob("*.pid"):
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_hung_rank_fails_the_job_within_the_timeout(demo_shards, tmp_path):
    out = tmp_path / "run"
    proc = _launch_2proc(demo_shards, out, "stop-rank:1:3", "train.max_steps=8", "train.dist_timeout_seconds=20")

    def rank_1_freezes():  # the harness makes rank 1 SIGSTOP itself at step 3
        _wait_for(out / "pids" / "rank-1.pid", proc)
        frozen = int((out / "pids" / "rank-1.pid").read_text())
        while Path(f"/proc/{frozen}/stat").read_text().split()[2] != "T":
            assert proc.poll() is None
            time.sleep(0.2)
        return time.time()

    code, waited, log = _time_failure(proc, out, rank_1_freezes)
    assert code != 0, log[-3000:]
    assert 15 <= waited < 120, (waited, log[-3000:])  # not before the 20 s timeout, and not forever
    assert "timed out" in log.lower() or "timeout" in log.lower(), log[-3000:]


def test_a_killed_rank_fails_the_job_promptly(demo_shards, tmp_path):
    out = tmp_path / "run"
    proc = _launch_2proc(demo_shards, out, "none", "train.max_steps=40", "train.dist_timeout_seconds=300")

    def kill_rank_1():
        _wait_for(out / "metrics.jsonl", proc)
        os.kill(int((out / "pids" / "rank-1.pid").read_text()), signal.SIGKILL)
        return time.time()

    code, waited, log = _time_failure(proc, out, kill_rank_1)
    assert code != 0, log[-3000:]
    assert waited < 60, (waited, log[-3000:])  # well inside dist_timeout_seconds=300


def test_sigterm_checkpoints_at_the_step_boundary_and_exits_124(demo_shards, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mwc_dist.train",
            *_args(demo_shards, out, "train.max_steps=40", "checkpoint.save_steps=1000"),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 3) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    log = proc.stdout.read()
    assert code == 124, log[-3000:]
    step = max(_steps(out))
    assert f"preempted (SIGTERM) at step {step}: checkpoint saved" in log
    state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
    assert state["step"] == step and step < 40
