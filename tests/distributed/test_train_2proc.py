"""Real multi-process training on CPU: `accelerate launch` with 2 gloo processes.

Proves: world size 2, identical weights on both ranks, disjoint data with equal steps, rank-0-only
files, interrupt-and-resume equal to uninterrupted (mid-epoch and across an epoch boundary), and
metrics that equal jiwer/sacrebleu recomputed from predictions.jsonl.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tiny_run import CPU_2PROC, run_args, run_env

from mwc_dist.metrics import metrics_from_predictions

ACCELERATE = Path(sys.executable).parent / "accelerate"


@pytest.fixture(scope="module")
def shards(demo_shards):
    return demo_shards


ROOT = Path(__file__).parents[2]


def launch(
    out_dir: Path,
    shards: Path,
    *overrides: str,
    cwd: Path | None = None,
    config_file: str | None = None,
    expect_ok: bool = True,
):
    """`accelerate launch` 2 CPU processes: DDP (ACCELERATE_USE_CPU + --multi_gpu, docs/DISTRIBUTED.md) or a config."""
    env = run_env()
    if config_file:
        engine = ["--config_file", str(ROOT / "accelerate_configs" / config_file)]
    else:
        env["ACCELERATE_USE_CPU"] = "true"
        engine = CPU_2PROC
    cmd = [
        str(ACCELERATE),
        "launch",
        *engine,
        "-m",
        "mwc_dist.train",
        *run_args(
            shards,
            out_dir,
            "train.per_device_train_batch_size=4",
            "train.learning_rate=1e-3",
            "train.max_steps=8",
            "train.warmup_steps=2",
            "data.num_workers=2",
            "checkpoint.save_strategy=steps",
            "checkpoint.save_steps=3",
            "checkpoint.keep_last=5",
            "train.eval_steps=4",
            "train.eval_max_samples=6",
            "train.per_device_eval_batch_size=2",
            "train.generation_max_length=20",
            *overrides,
        ),
    ]
    proc = subprocess.run(cmd, env=env, cwd=cwd or out_dir.parent, capture_output=True, text=True, timeout=600)
    if not expect_ok:
        return proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads((out_dir / "run_summary.json").read_text())


def losses(out_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def straight(shards, tmp_path_factory):
    base = tmp_path_factory.mktemp("straight")
    cwd = base / "cwd"
    cwd.mkdir()
    out = base / "run"
    summary = launch(out, shards, cwd=cwd)
    return out, summary, cwd


def test_two_ranks_end_identical(straight):
    out, summary, _ = straight
    assert summary["world_size"] == 2  # the CPU trap (docs/DISTRIBUTED.md): a wrong launch silently runs one process
    assert summary["steps"] == 8
    assert len(summary["param_digests"]) == 2 and summary["ranks_identical"]
    steps = losses(out)
    assert sorted(steps) == list(range(1, 9))
    assert steps[8] < steps[1]  # it learns


def test_only_rank0_writes(straight):
    out, _, cwd = straight
    assert list(cwd.iterdir()) == []  # nothing stray in the working directory
    assert {p.name for p in out.iterdir()} == {
        "config.yaml",
        "metrics.jsonl",
        "run_summary.json",
        "final",
        "eval",
        "training_curves.png",
        "best",  # the best evaluation's model (checkpoint.load_best_model_at_end)
        "checkpoint-3",
        "checkpoint-6",
        "checkpoint-8",
    }
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["step-4", "step-8"]
    for ckpt in ("checkpoint-3", "checkpoint-6", "checkpoint-8"):
        state = sorted(p.name for p in (out / ckpt / "state").iterdir())
        assert [s for s in state if s.startswith("random_states")] == ["random_states_0.pkl", "random_states_1.pkl"]
        trainer_state = json.loads((out / ckpt / "trainer_state.json").read_text())
        assert trainer_state["world_size"] == 2 and set(trainer_state["data_position"]) == {"0", "1"}
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len({(json.loads(line)["step"], '"loss"' in line) for line in lines})  # one writer


def test_reported_metrics_equal_recomputed(straight):
    out, _, _ = straight
    for step_dir in (out / "eval").iterdir():
        reported = json.loads((step_dir / "metrics.json").read_text())
        recomputed = metrics_from_predictions(step_dir / "predictions.jsonl", "es")
        for key in ("wer", "cer", "bleu", "chrf", "raw_wer", "raw_cer", "raw_bleu", "raw_chrf", "num_samples"):
            assert reported[key] == pytest.approx(recomputed[key], abs=1e-12), key
        rows = [json.loads(x) for x in (step_dir / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == len({r["key"] for r in rows}) == 6  # each eval sample exactly once


def test_resume_equals_uninterrupted(straight, shards, tmp_path):
    out, _, _ = straight
    trainer_state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert trainer_state["epoch_step"] == 3 and trainer_state["epoch"] == 0  # mid-epoch
    assert json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["epoch"] >= 1  # crosses an epoch
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-3", resumed / "checkpoint-3")  # as if the run had stopped after step 3
    summary = launch(resumed, shards, "checkpoint.resume_from_checkpoint=latest")
    assert summary["ranks_identical"] and summary["steps"] == 8
    want, got = losses(out), losses(resumed)
    assert sorted(got) == [4, 5, 6, 7, 8]
    assert all(got[s] == want[s] for s in got), (want, got)  # bit-identical losses
    a = load_file(out / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_resume_with_timestamps_and_prompts_equals_uninterrupted(long_shards, tmp_path):
    """Windows of long recordings, half trained with timestamps and half with their previous text as the prompt
    (drawn per seed, epoch, key): stopped mid-epoch and resumed, the losses and weights are the uninterrupted run's."""
    opts = (
        "data.timestamp_probability=0.5",
        "data.condition_on_prev_probability=0.5",
        "train.per_device_train_batch_size=1",
        "data.num_workers=1",
        "train.max_steps=6",
        "train.eval_steps=-1",
        "checkpoint.save_steps=2",
    )
    out = tmp_path / "straight"
    assert launch(out, long_shards, *opts)["ranks_identical"]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["epoch"] == 0 and state["epoch_step"] == 2  # mid-epoch (4 windows a rank: 4 steps an epoch)
    assert json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())["epoch"] >= 1  # crosses one
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    launch(resumed, long_shards, *opts, "checkpoint.resume_from_checkpoint=latest")
    want, got = losses(out), losses(resumed)
    assert sorted(got) == [3, 4, 5, 6] and all(got[s] == want[s] for s in got), (want, got)
    a, b = load_file(out / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    config = (out / "config.yaml").read_text()
    assert "timestamp_probability: 0.5" in config and "condition_on_prev_probability: 0.5" in config


def test_qlora_with_distillation_on_two_ranks(shards, tmp_path):
    from transformers import WhisperForConditionalGeneration

    out = tmp_path / "qlora_kd"
    summary = launch(
        out,
        shards,
        "model.use_4bit_quantization=true",
        "model.bnb_4bit_compute_dtype=float32",
        "model.use_distillation=true",
        "model.teacher_model=tiny-random",
        "model.lora_r=4",
        "train.max_steps=4",
        "train.eval_steps=-1",
        "checkpoint.save_steps=2",
    )
    assert summary["world_size"] == 2 and summary["ranks_identical"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("kl" in r and "ce" in r for r in rows if "loss" in r)
    adapter = out / "checkpoint-4" / "model"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").stat().st_size > 1000
    merged = WhisperForConditionalGeneration.from_pretrained(out / "final")  # a plain float32 model
    assert "quantization_config" not in json.loads((out / "final" / "config.json").read_text())
    assert merged.model.encoder.layers[0].self_attn.q_proj.weight.dtype.is_floating_point


def _max_diff(a_dir: Path, b_dir: Path) -> float:
    a, b = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    keys = set(a) & set(b)
    assert keys >= {k for k in a if k != "proj_out.weight"}  # complete weights (gathered under ZeRO-3)
    return max(float((a[k] - b[k]).abs().max()) for k in keys)


# learning rate of the DDP-vs-ZeRO comparison: DeepSpeed reduces gradients in another order, and at 1e-3
# the 1e-7-level differences grow past 1e-5 in 8 steps; at 3e-4 they stay below it
ZERO_LR = "train.learning_rate=3e-4"


@pytest.fixture(scope="module")
def ddp_reference(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_ref") / "run"
    launch(out, shards, ZERO_LR, "train.eval_steps=-1")
    return out


@pytest.mark.parametrize("config_file", ["zero2.yaml", "zero3.yaml"])
def test_deepspeed_matches_ddp_and_resumes(ddp_reference, shards, tmp_path, config_file):
    import torch
    from transformers import WhisperForConditionalGeneration

    ddp_out = ddp_reference
    out = tmp_path / "zero"
    summary = launch(out, shards, ZERO_LR, "train.eval_steps=-1", config_file=config_file)
    assert summary["world_size"] == 2 and summary["ranks_identical"]
    assert (out / "checkpoint-3" / "state" / "pytorch_model").is_dir()  # a DeepSpeed checkpoint, not plain DDP
    assert _max_diff(out / "final", ddp_out / "final") < 1e-5
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-3", resumed / "checkpoint-3")
    launch(
        resumed,
        shards,
        ZERO_LR,
        "train.eval_steps=-1",
        "checkpoint.resume_from_checkpoint=latest",
        config_file=config_file,
    )
    assert sorted(losses(resumed)) == [4, 5, 6, 7, 8]
    assert _max_diff(resumed / "final", ddp_out / "final") < 1e-5
    # the export loads with the ecosystem's loader and gives DDP's logits
    features, labels = torch.randn(1, 80, 1000), torch.tensor([[50262, 50359, 50363, 400, 50257]])
    logits = [
        WhisperForConditionalGeneration.from_pretrained(d / "final")
        .eval()(input_features=features, labels=labels)
        .logits
        for d in (out, ddp_out)
    ]
    assert (logits[0] - logits[1]).abs().max() < 1e-4


def test_zero3_refuses_lora_early(shards, tmp_path):
    proc = launch(tmp_path / "z3lora", shards, "model.use_lora=true", config_file="zero3.yaml", expect_ok=False)
    assert proc.returncode != 0
    assert "LoRA under DeepSpeed ZeRO-3 is not supported" in proc.stderr
    assert not (tmp_path / "z3lora" / "checkpoint-3").exists()


def test_launch_wrapper_cpu(shards, tmp_path):
    """launch/train.sh cpu: the wrapper's accelerate command really starts 2 processes in one group."""
    config = tmp_path / "run.yaml"
    out = tmp_path / "run"
    config.write_text(
        f"data: {{shard_dir: {shards}, num_workers: 1}}\nmodel: {{base_model: tiny-random, language: es}}\n"
        f"train: {{output_dir: {out}, max_steps: 2, eval_steps: -1}}\ncheckpoint: {{save_strategy: 'no'}}\n"
    )
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", str(ROOT / "launch" / "train.sh"), "cpu", str(config)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_identical"] and summary["steps"] == 2


@pytest.fixture(scope="module")
def small_corpus(demo_shards, tmp_path_factory):
    """A small corpus as users have one: 36 train clips in one shard (mwc shard's default 1000 per shard), and 6
    validation clips, from the demo corpus's audio."""
    import csv

    from mwc_dist.config import DataConfig
    from mwc_dist.data.shard import shard_source

    src = demo_shards.parent / "data"
    rows = [r for r in csv.DictReader(open(src / "metadata.csv", encoding="utf-8")) if r["split"] != "test"]
    for n, row in enumerate(rows[:42]):
        row["split"] = "train" if n < 36 else "validation"
    with open(src / "small.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:42])
    out = tmp_path_factory.mktemp("small") / "shards"
    shard_source(DataConfig(source=str(src / "small.csv"), max_duration_seconds=10), out, workers=1, progress=False)
    manifest = json.loads((out / "train.manifest.json").read_text())
    assert manifest["num_shards"] == 1 and manifest["num_samples"] == 36
    return out


def test_small_corpus_one_shard_trains_on_two_ranks_and_resumes_exactly(small_corpus, tmp_path):
    """36 clips in 1 shard, 2 processes x 2 loader workers (4 readers of one shard): trained, not refused; both
    ranks take the planned steps (ranks stay identical); stopped mid-epoch and resumed, bit-identical."""
    out = tmp_path / "run"
    proc = launch(out, small_corpus, expect_ok=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("each shard is read on several ranks") == 1  # said once, by rank 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["ranks_identical"] and summary["steps"] == 8
    steps = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert steps["epoch"] == 0 and steps["epoch_step"] == 3  # 36 / (2 ranks x batch 4) -> 4 steps an epoch
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-3", resumed / "checkpoint-3")
    launch(resumed, small_corpus, "checkpoint.resume_from_checkpoint=latest")
    want, got = losses(out), losses(resumed)
    assert sorted(got) == [4, 5, 6, 7, 8] and all(got[s] == want[s] for s in got), (want, got)
    a, b = load_file(out / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
