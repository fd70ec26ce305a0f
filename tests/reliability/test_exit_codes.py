"""Both ways to train - `mwc train` and `python -m mwc_dist.train` (what `accelerate launch -m` runs) - end with
the same documented exit statuses: 0 done, 2 bad config or data, 3 diverged, 124 preempted (test_crashes.py).

A diverging run needs NaN losses, which real data cannot be made to give on demand: the fault harness injects them
(rank 0's loss is NaN from step 3 on) and then hands over to the real entry point, unchanged."""

import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import run_args, run_env

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MWC = Path(sys.executable).parent / "mwc"
# the harness's Trainer patches, then the real `mwc` command line
MWC_WITH_FAULTS = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import harness; from mwc_dist.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def _args(shards: Path, out: Path) -> list[str]:
    return run_args(
        shards,
        out,
        "train.per_device_train_batch_size=2",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=steps",
        "checkpoint.save_steps=2",
        "train.max_steps=8",
        "train.max_bad_steps=3",
    )


_env = run_env


@pytest.mark.parametrize("entry", ["python -m mwc_dist.train", "mwc train"])
def test_a_diverging_run_exits_3(demo_shards, tmp_path, entry):
    out = tmp_path / "run"
    if entry == "mwc train":
        cmd = [sys.executable, "-c", MWC_WITH_FAULTS, str(HERE), "train", *_args(demo_shards, out)]
    else:
        cmd = [sys.executable, str(HERE / "harness.py"), *_args(demo_shards, out)]
    proc = subprocess.run(
        cmd, env=_env(MWC_FAULT="nan-on-rank:0:3,4,5,6,7,8"), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "error: stopped at step 5: 3 optimizer steps in a row were skipped" in proc.stderr
    assert "checkpoint-2" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("entry", [[sys.executable, "-m", "mwc_dist.train"], [str(MWC), "train"]])
@pytest.mark.parametrize(
    "bad, says",
    [
        (["train.learning_rate=-1"], "train.learning_rate"),
        (["train.max_stepz=3"], "train.max_steps"),  # a typo: the closest valid key is suggested
        (["data.shard_dir=/nonexistent/shards"], "/nonexistent/shards"),  # bad data: refused in setup
    ],
)
def test_bad_config_or_data_exits_2(tmp_path, entry, bad, says):
    proc = subprocess.run(
        [*entry, f"train.output_dir={tmp_path / 'run'}", *bad], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert says in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "bad, says",
    [
        (["train.max_stepz=3"], "unknown key 'train.max_stepz'; did you mean 'train.max_steps'?"),  # config: parsing
        (["data.shard_dir=/nonexistent/shards"], "/nonexistent/shards"),  # data: refused in setup, process group up
    ],
)
def test_under_accelerate_launch_the_refusal_is_said_once_and_last(tmp_path, bad, says):
    """`accelerate launch` with 2 processes: each rank exits 2 without a traceback; rank 0's message is printed once,
    after torch elastic's ChildFailedError banner, so it is what the user reads last. The launcher itself exits 1
    (accelerate's status for any failed process; the banner lists each rank's exit code 2)."""
    from tiny_run import ACCELERATE, CPU_2PROC

    cmd = [str(ACCELERATE), "launch", *CPU_2PROC, "-m", "mwc_dist.train", f"train.output_dir={tmp_path / 'run'}", *bad]
    proc = subprocess.run(cmd, env=_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "exitcode  : 2" in proc.stderr  # refused with the documented status (the launcher may stop the other)
    tail = proc.stderr.rstrip().splitlines()
    start = max(i for i, line in enumerate(tail) if line.startswith("error: "))
    assert says in "\n".join(tail[start:])  # the last thing printed is the message
    assert "ChildFailedError" in "\n".join(tail[:start])  # ... after the launcher's banner
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]
    assert len(said) == 1  # once, not once per rank
    assert "Traceback" not in "\n".join(tail[start:])
