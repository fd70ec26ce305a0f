"""DeepSpeed ZeRO-2/ZeRO-3 on 2 real CPU processes: the non-finite guard, and evaluation under ZeRO-3.

Under DeepSpeed the optimizer step runs inside ``accelerator.backward``; the guard must still leave the weights
untouched on every rank when one rank's loss is NaN (here in one micro-batch of an accumulation window, the case
where the window's other micro-batch would otherwise be applied) or its gradients are inf. Asserted on each rank's
own weights (under ZeRO-3 its partition) after every step.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import run_args, run_env

from mwc_dist.metrics import metrics_from_predictions

ROOT = Path(__file__).parents[2]
HARNESS = ROOT / "tests" / "reliability" / "harness.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


def _launch(config_file: str, shards: Path, out: Path, *extra: str, fault: str = "none") -> str:
    args = run_args(
        shards,
        out,
        "train.per_device_train_batch_size=2",
        "train.learning_rate=1e-3",
        "checkpoint.save_strategy=no",
        *extra,
    )
    env = run_env(MWC_FAULT=fault, MWC_PROBE_DIGESTS="1")
    env.pop("ACCELERATE_USE_CPU", None)  # DeepSpeed on CPU: mwc_dist names gloo itself
    proc = subprocess.run(
        [
            str(ACCELERATE),
            "launch",
            "--config_file",
            str(ROOT / "accelerate_configs" / config_file),
            str(HARNESS),
            *args,
        ],
        env=env,
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("config_file", ["zero2.yaml", "zero3.yaml"])
def test_non_finite_guard_under_deepspeed(demo_shards, tmp_path, config_file):
    out = tmp_path / "run"
    log = _launch(
        config_file,
        demo_shards,
        out,
        "train.max_steps=6",
        "train.gradient_accumulation_steps=2",
        "train.eval_steps=-1",
        fault="nan-on-rank:1:3:first;inf-grad-on-rank:0:5",
    )
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6 and summary["ranks_identical"]
    for rank in (0, 1):
        rows = [json.loads(x) for x in (out / "digests" / f"rank-{rank}.jsonl").read_text().splitlines()]
        after = {r["step"]: r["digest"] for r in rows}
        assert sorted(after) == [1, 2, 3, 4, 5, 6]
        assert after[3] == after[2] and after[5] == after[4]  # the bad windows changed nothing on this rank
        assert len({after[1], after[2], after[4], after[6]}) == 4  # the good ones did update
    assert "step 3: skipped (non-finite loss); 1 in a row, 1 in all" in log
    assert "step 5: skipped (non-finite gradients); 1 in a row, 2 in all" in log
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["bad_streak"]) for r in rows if "bad_streak" in r] == [(3, 1), (5, 1)]
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(v == v for v in losses.values())  # training went on, finite


def test_zero3_evaluation_with_uneven_ranks_equals_one_process(demo_shards, tmp_path):
    """7 eval clips, batch 2: rank 0 holds 4 clips (2 batches), rank 1 holds 3 (2 batches, the last of one clip,
    so the ranks' generation lengths differ too), and with eval_max_samples=5 rank 0 has 2 batches, rank 1 only 1.
    ZeRO-3 gathers the weights inside every forward, so a rank that stopped early would hang the other."""
    out = tmp_path / "run"
    _launch(
        "zero3.yaml",
        demo_shards,
        out,
        "train.max_steps=4",
        "train.eval_steps=2",
        "train.eval_max_samples=5",
        "train.per_device_eval_batch_size=2",
        "train.generation_max_length=24",
        "checkpoint.load_best_model_at_end=false",
    )
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["step-2", "step-4"]
    reported = json.loads((out / "eval" / "step-4" / "metrics.json").read_text())
    assert reported["num_samples"] == 5
    single = tmp_path / "single"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "mwc"),
            "eval",
            "--model",
            str(out / "final"),
            "--data",
            str(demo_shards),
            "--out",
            str(single),
            "--language",
            "es",
            "--limit",
            "5",
            "--batch-size",
            "2",
            "--max-length",
            "24",
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = [json.loads(x) for x in (out / "eval" / "step-4" / "predictions.jsonl").read_text().splitlines()]
    theirs = [json.loads(x) for x in (single / "predictions.jsonl").read_text().splitlines()]
    assert [(r["key"], r["prediction"]) for r in ours] == [(r["key"], r["prediction"]) for r in theirs]
    recomputed = metrics_from_predictions(single / "predictions.jsonl", "es")
    for key in ("wer", "cer", "bleu", "chrf"):
        assert reported[key] == pytest.approx(recomputed[key], abs=1e-12), key
    # `mwc eval` also decodes with Whisper's temperature fallback: greedy where greedy passed, its own metrics
    from mwc_dist.metrics import compute_metrics

    guarded = json.loads((single / "metrics.json").read_text())["guarded"]
    again = compute_metrics([r["reference"] for r in theirs], [r["prediction_guarded"] for r in theirs], "es")
    assert guarded["wer"] == pytest.approx(again["wer"], abs=1e-12)
    assert guarded["fallbacks"] == sum(r["fallback_temperature"] > 0 for r in theirs)
    assert all(r["prediction_guarded"] == r["prediction"] for r in theirs if r["fallback_temperature"] == 0)
