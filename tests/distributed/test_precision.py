"""train.mixed_precision takes effect: bf16 autocast on 2 real gloo ranks, fp16 refused on CPU, the fp16 scaler's skip.

accelerate runs fp16 on CPU as plain fp32 without a word, so mwc-dist refuses it there; the fp16 loss-scaler path
(overflow -> step skipped, scale lowered, counted) is tested against torch's real CPU GradScaler put in the
place where accelerate puts its CUDA one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_run import run_args, run_env

ROOT = Path(__file__).parents[2]
HARNESS = ROOT / "tests" / "reliability" / "harness.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


def _run_2proc(shards: Path, out: Path, *extra: str) -> dict:
    engine = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--dynamo_backend", "no"]
    args = run_args(
        shards,
        out,
        "train.per_device_train_batch_size=2",
        "train.learning_rate=1e-3",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=no",
        "train.max_steps=4",
        *extra,
    )
    env = run_env(ACCELERATE_USE_CPU="true", MWC_FAULT="record-dtypes")
    proc = subprocess.run(
        [str(ACCELERATE), "launch", *engine, str(HARNESS), *args],
        env=env,
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads((out / "run_summary.json").read_text())
    summary["log"] = proc.stdout + proc.stderr
    summary["dtypes"] = [json.loads((out / "dtypes" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    summary["losses"] = {r["step"]: r["loss"] for r in rows if "loss" in r}
    return summary


@pytest.fixture(scope="module")
def fp32_and_bf16(demo_shards, tmp_path_factory):
    base = tmp_path_factory.mktemp("precision")
    # the encoder frozen: it then runs outside the prepared (autocast) model, under no_grad - the case that needs care
    frozen = "train.freeze_encoder=true"
    return (
        _run_2proc(demo_shards, base / "fp32", frozen),
        _run_2proc(demo_shards, base / "bf16", frozen, "train.mixed_precision=bf16"),
        base,
    )


def test_bf16_activations_on_two_ranks(fp32_and_bf16):
    fp32, bf16, base = fp32_and_bf16
    assert bf16["world_size"] == 2 and bf16["ranks_identical"]
    for rank in bf16["dtypes"]:  # a real layer's output on each rank, weights kept in fp32
        assert rank == {
            "encoder.fc1": "torch.bfloat16",
            "encoder.weight": "torch.float32",
            "decoder.fc1": "torch.bfloat16",
            "decoder.weight": "torch.float32",
        }
    for rank in fp32["dtypes"]:
        assert set(rank.values()) == {"torch.float32"}
    assert bf16["precision"] == "bf16 (autocast on cpu)" and fp32["precision"].startswith("fp32")
    assert "precision bf16 (autocast on cpu)" in bf16["log"]  # said at start
    dump = (base / "bf16" / "config.yaml").read_text()
    assert dump.startswith("# effective precision: bf16 (autocast on cpu)") and "mixed_precision: bf16" in dump


def test_bf16_loss_curve_differs_from_fp32(fp32_and_bf16):
    fp32, bf16, _ = fp32_and_bf16
    assert sorted(bf16["losses"]) == sorted(fp32["losses"]) == [1, 2, 3, 4]
    diffs = [abs(bf16["losses"][s] - fp32["losses"][s]) for s in fp32["losses"]]
    assert max(diffs) > 1e-4  # bf16 really computed something else (fp32 reruns are bit-identical)
    assert all(d < 0.05 * fp32["losses"][s] for d, s in zip(diffs, fp32["losses"]))  # ... and the same thing, roughly


@pytest.mark.parametrize("how", [["train.mixed_precision=fp16"], ["--config", "SEED"]])
def test_fp16_on_cpu_is_refused_with_the_alternative(demo_shards, tmp_path, how):
    how = [str(ROOT / "configs" / "seed_training_config.yaml") if h == "SEED" else h for h in how]
    for entry in ([sys.executable, "-m", "mwc_dist.train"], [str(Path(sys.executable).parent / "mwc"), "train"]):
        proc = subprocess.run(
            [
                *entry,
                *how,
                f"data.shard_dir={demo_shards}",
                f"train.output_dir={tmp_path / 'run'}",
                "model.base_model=tiny-random",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "train.mixed_precision=fp16" in proc.stderr and "train.mixed_precision=bf16" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_fp16_scaler_overflow_skips_lowers_scale_and_counts(tmp_path, demo_shards):
    """Our skip logic against a real GradScaler (torch's CPU one, where accelerate keeps its CUDA one)."""
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    from test_numerics import _inject, _trainer, _weights

    trainer = _trainer(tmp_path, demo_shards, "train.max_steps=5")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
    from accelerate.optimizer import AcceleratedOptimizer

    # what accelerate.prepare() builds for CUDA fp16: the scaler on the Accelerator and in the wrapped optimizer
    trainer.accelerator.scaler = scaler
    trainer.optimizer = AcceleratedOptimizer(trainer.optimizer.optimizer, device_placement=False, scaler=scaler)
    trainer.stepper.optimizer = trainer.optimizer  # the part that steps it (loop/step.py)
    trainer.accelerator._optimizers = [trainer.optimizer]
    _inject(trainer, {3: "inf"})
    scales, weights = {}, {}
    real_step = trainer.train_step

    def train_step(batch):
        step = trainer.state.step + 1
        weights[step] = _weights(trainer)
        real_step(batch)
        scales[step] = scaler.get_scale()

    trainer.train_step = train_step
    summary = trainer.train()
    assert summary["steps"] == 5 and trainer.state.skipped_steps == 1
    assert scales == {1: 1024.0, 2: 1024.0, 3: 512.0, 4: 512.0, 5: 512.0}  # lowered once, on the overflow
    after3 = weights[4]
    assert all(torch.equal(after3[k], v) for k, v in weights[3].items())  # step 3 changed nothing
    assert any(not torch.equal(weights[3][k], v) for k, v in weights[2].items())  # step 2 did update
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["bad_streak"]) for r in rows if "bad_streak" in r] == [(3, 1)]
    assert trainer.scheduler.last_epoch == 4  # the schedule advanced on the 4 real updates only
