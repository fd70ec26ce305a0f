"""The seed's whole configs/seed_training_config.yaml, run end to end: only the model size, the data and the step
counts are shrunk (plus what this machine cannot do: fp16 on a CPU), every other key stays as the seed sets it,
and each key's effect is asserted on what the run built and wrote.

Shrunk: whisper-large-v3 -> a tiny random model with Whisper's 30-s window (student and teacher); the hub dataset
-> 40 espeak-ng clips in a local folder, sharded with the seed's data section; 50 epochs -> 2, warmup 500 -> 1,
eval every 200 steps -> every 2, 8 loader workers -> 1; the seed's resume path (a folder on its own machine) -> none.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from tiny_run import tiny_model_30s

ROOT = Path(__file__).parents[2]
SEED = ROOT / "configs" / "seed_training_config.yaml"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    from mwc_dist.config import load_config
    from mwc_dist.data.shard import shard_source
    from mwc_dist.demo.corpus import make_demo_corpus
    from mwc_dist.train import Trainer

    tmp = tmp_path_factory.mktemp("seed")
    model_dir, _ = tiny_model_30s(tmp / "tiny30", seed=3)
    make_demo_corpus(tmp / "data", count=40, test_fraction=0.1, progress=False)
    shrink = [
        f"model.base_model={model_dir}",
        f"model.teacher_model={model_dir}",
        f"data.source={tmp / 'data'}",
        "data.source_type=auto",
        f"data.shard_dir={tmp / 'shards'}",
        "data.num_workers=1",
        "train.num_epochs=2",
        "train.warmup_steps=1",
        "train.eval_steps=2",
        "checkpoint.resume_from_checkpoint=null",
        f"train.output_dir={tmp / 'run'}",
    ]
    as_seed = load_config(SEED, shrink)
    cfg = load_config(SEED, shrink + [f"train.mixed_precision={'fp16' if torch.cuda.is_available() else 'no'}"])
    shard_source(cfg.data, cfg.data.shard_dir, workers=1, progress=False)
    trainer = Trainer(cfg)
    trainer.setup()
    built = trainer.accelerator.unwrap_model(trainer.model)
    trainer.train()
    return as_seed, cfg, trainer, built, tmp / "run"


def test_the_seed_config_loads_with_its_own_values(seed_run):
    as_seed, cfg, *_ = seed_run
    assert as_seed.train.mixed_precision == "fp16"  # training.fp16: true
    assert (cfg.model.language, cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.lora_dropout) == (
        "es",  # the seed's "spanish", resolved to Whisper's code where it enters
        16,
        32,
        0.1,
    )
    assert (cfg.train.per_device_train_batch_size, cfg.train.gradient_accumulation_steps) == (4, 4)
    assert (cfg.checkpoint.save_strategy, cfg.checkpoint.save_steps, cfg.export.onnx_opset_version) == ("epoch", 5, 14)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU")
def test_seed_fp16_is_refused_on_a_cpu_with_the_key_named(seed_run):
    from mwc_dist.train import Trainer

    with pytest.raises(ValueError, match=r"train\.mixed_precision.*fp16.*bf16"):
        Trainer(seed_run[0]).setup()


def test_qlora_and_distillation_keys_shape_the_model_and_the_loss(seed_run):
    import bitsandbytes as bnb

    _, cfg, trainer, built, run = seed_run
    quantized = [m for m in built.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and {m.weight.quant_type for m in quantized} == {"nf4"}
    assert {m.compute_dtype for m in quantized} == {torch.float16}
    adapter = json.loads((run / "final" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 32, 0.1)
    assert set(adapter["target_modules"]) == {"q_proj", "v_proj", "k_proj", "out_proj"}
    assert built.is_gradient_checkpointing  # training.gradient_checkpointing: true
    assert trainer.teacher is not None and not any(p.requires_grad for p in trainer.teacher.parameters())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in rows if "loss" in r and "kl" in r]
    assert losses  # alpha 0.5, temperature 2: loss = 0.5 ce + 0.5 * 4 * kl
    for r in losses:
        assert r["loss"] == pytest.approx(0.5 * r["ce"] + 0.5 * 4 * r["kl"], rel=1e-4)


def test_schedule_keys_set_the_steps_and_the_learning_rate(seed_run):
    from transformers import get_cosine_schedule_with_warmup

    _, cfg, trainer, _, run = seed_run
    per_epoch = trainer.data.shards.num_samples // (4 * 4)  # batch 4 x accumulation 4, one process
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["steps"] == 2 * per_epoch > 0
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-5)
    schedule = get_cosine_schedule_with_warmup(optimizer, 1, summary["steps"])
    expected = []
    for _ in range(summary["steps"]):
        optimizer.step()
        schedule.step()
        expected.append(schedule.get_last_lr()[0])
    logged = {
        r["step"]: r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in r
    }
    assert [logged[s] for s in sorted(logged)] == pytest.approx([expected[s - 1] for s in sorted(logged)])


def test_eval_save_and_best_model_keys(seed_run):
    _, _, _, _, run = seed_run
    steps = json.loads((run / "run_summary.json").read_text())["steps"]
    evaluated = sorted(int(p.name.split("-")[1]) for p in (run / "eval").iterdir())
    assert evaluated == sorted(set(range(2, steps + 1, 2)) | {steps})  # eval_steps (every 2) and the end
    assert [p.name for p in run.glob("checkpoint-*")] == [f"checkpoint-{steps}"]  # every 5 epochs: only the end
    wers = {s: json.loads((run / "eval" / f"step-{s}" / "metrics.json").read_text())["wer"] for s in evaluated}
    best = json.loads((run / "best" / "best.json").read_text())
    assert best["metric"] == "wer" and best["step"] == min(evaluated, key=lambda s: (wers[s], s))  # lower is better
    assert _sha(run / "final" / "adapter" / "adapter_model.safetensors") == _sha(
        run / "best" / "adapter_model.safetensors"
    )


def test_export_keys(seed_run):
    import onnx

    _, _, _, _, run = seed_run
    exports = run / "exports"
    assert (exports / "pytorch" / "pytorch_model.bin").is_file() and (
        exports / "safetensors" / "model.safetensors"
    ).is_file()
    encoder = onnx.load(str(exports / "onnx" / "encoder_model.onnx"), load_external_data=False)
    assert {o.version for o in encoder.opset_import if o.domain in ("", "ai.onnx")} == {14}
    assert json.loads((exports / "onnx" / "optimization.json").read_text())["level"] == "basic"  # onnx_optimize
    parity = json.loads((exports / "parity.json").read_text())["parity"]
    assert parity["ok"] and parity["onnx"]["identical_clips"] == parity["clips"] > 0
