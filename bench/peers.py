"""Ours against the peers on the same batches: HF `Seq2SeqTrainer` fine-tuning, and `Seq2SeqTrainer` with the KD loss
users write on top of it (a `compute_loss` override: alpha * CE + (1 - alpha) * T^2 * KL, distil-whisper's formula).

    python bench/peers.py [--steps 8] [--rounds 2] [--model whisper-tiny-random] [--batch 4] [--kd-batch 8]
                          [--student-layers 2]

The batches are read once from the demo shards (our loader) and saved; every configuration then runs in a fresh
process (so that its peak RSS is its own) on those same batches, from the same initial weights:
  * fine-tune: `--model`, full fine-tune, AdamW (fused, as HF's default `adamw_torch_fused`), linear schedule,
    clipping at 1.0;
  * KD: a student made from `--model` by `make_student` (its encoder, frozen and shared with the teacher: the
    teacher reads the student's encoder output, as distil-whisper does with a frozen encoder; `--student-layers`
    decoder layers) against `--model` as teacher, T = 2, alpha = 0.8.
Ours is the real `Trainer.train()` fed from memory, in three forms, to show which change bought what: with
`train.logits_at_labels_only` and `train.fused_optimizer` off (the loop as it was), with the fused optimizer, and
with both (the default). The peer gets precomputed log-mel features (its usual dataset) and a collator that pads
labels to the batch (the HF example's; distil-whisper's default pads to 448 tokens, 9x slower still).
Each prints samples/s (the median step over all rounds' timed steps; two warm-up steps per run not timed), peak RSS,
and the largest difference of its per-step losses from the peer's (the same arithmetic gives the same losses, to
float rounding). Run-to-run noise on a 2-core machine is several per cent: the rounds are interleaved.
Last lines: `ratio_finetune=<ours/HF samples/s>`, `ratio_kd=...`, `ratio=<the smaller>` (goal >= 1.3).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP = 2
LR = 1e-4
TEMPERATURE, ALPHA = 2.0, 0.8
OURS = {  # name -> overrides of the two keys whose effect is measured
    "ours, both off": ["train.logits_at_labels_only=false", "train.fused_optimizer=false"],
    "ours, fused AdamW": ["train.logits_at_labels_only=false", "train.fused_optimizer=true"],
    "ours (default)": ["train.logits_at_labels_only=true", "train.fused_optimizer=true"],
}


def overrides(work: Path, model: str, batch: int, steps: int, kd: bool) -> list[str]:
    common = [
        f"data.shard_dir={work / 'shards'}",
        f"train.output_dir={work / 'run'}",
        "model.language=es",
        "data.num_workers=1",
        f"train.per_device_train_batch_size={batch}",
        f"train.max_steps={steps}",
        f"train.learning_rate={LR}",
        "train.lr_scheduler_type=linear",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=no",
        "train.log_every_steps=10",
        "train.seed=42",
        "export.export_safetensors=false",
    ]
    if not kd:
        return [*common, f"model.base_model={model}"]
    return [
        *common,
        f"model.base_model={work / 'student'}",
        "model.use_distillation=true",
        f"model.teacher_model={work / 'teacher'}",
        f"model.distillation_temperature={TEMPERATURE}",
        f"model.distillation_alpha={ALPHA}",
        "train.freeze_encoder=true",
    ]


def prepare(args, work: Path) -> None:
    """Shards, the student folder, and the batches of both workloads, saved for the child processes."""
    import mwc_dist.train as train_module
    from mwc_dist.config import DataConfig, load_config
    from mwc_dist.data.shard import shard_source
    from mwc_dist.demo.corpus import make_demo_corpus
    from mwc_dist.models.build import materialize_preset
    from mwc_dist.models.student import make_student_folder

    need = max(args.batch, args.kd_batch) * (args.steps + 4) * 2
    make_demo_corpus(work / "data", count=max(80, need), progress=False)
    shard_source(
        DataConfig(source=str(work / "data"), shard_samples=16),
        work / "shards",
        workers=1,
        progress=False,
        log=lambda _: None,
    )
    teacher = materialize_preset(args.model, 42)
    (work / "teacher").symlink_to(teacher)
    make_student_folder(str(teacher), args.student_layers, str(work / "student"))
    for kd, batch in ((False, args.batch), (True, args.kd_batch)):
        probe = train_module.Trainer(load_config(None, overrides(work, args.model, batch, args.steps, kd)))
        probe.setup()
        loader = train_module.build_train_loader(probe.data.stream(0))
        batches = [b for b in itertools.islice(loader, args.steps * 2) if b is not None][: args.steps]
        probe.tracker.finish()
        torch.save(batches, work / f"batches_{'kd' if kd else 'ft'}.pt")


def ours(cfg, batches: list[dict]) -> tuple[list[float], list[float]]:
    """(step times, losses) of the real Trainer.train(), its loader fed from memory."""
    import mwc_dist.train as train_module

    trainer = train_module.Trainer(cfg)
    trainer.setup()
    times, losses, last = [], [], [0.0]
    real_loss = trainer.compute_loss

    def compute_loss(*a, **kw):
        out = real_loss(*a, **kw)
        losses.append(float(out[0]))
        return out

    trainer.compute_loss = compute_loss

    class Timed(list):
        def __iter__(self):
            for b in super().__iter__():
                now = time.perf_counter()
                if last[0]:
                    times.append(now - last[0])
                last[0] = now
                yield b

    train_module.build_train_loader = lambda stream: Timed(batches)
    train_module.Trainer.finish = lambda self: times.append(time.perf_counter() - last[0]) or {}
    trainer.train()
    return times[WARMUP:], losses


def hf(work: Path, model_name: str, batches: list[dict], kd: bool) -> tuple[list[float], list[float]]:
    """(step times, losses) of Seq2SeqTrainer; with kd, its compute_loss overridden with the KD loss."""
    from transformers import Seq2SeqTrainer, TrainerCallback

    from mwc_dist.audio.features import LogMel
    from mwc_dist.config import ModelConfig
    from mwc_dist.models.build import build_model

    model, _ = build_model(ModelConfig(base_model=str(work / "student") if kd else model_name), seed=42)
    teacher = None
    if kd:
        teacher = build_model(ModelConfig(base_model=str(work / "teacher")), seed=42)[0].eval().requires_grad_(False)
        model.model.encoder.requires_grad_(False)  # distil-whisper's freeze_encoder
    log_mel = LogMel(model.config.num_mel_bins, 30)
    rows = []
    for b in batches:
        feats = log_mel(b["audio"])
        rows += [
            {"input_features": feats[i], "labels": b["labels"][i], "decoder_input_ids": b["decoder_input_ids"][i]}
            for i in range(len(feats))
        ]

    def collate(examples):
        def pad(key, value):
            return torch.nn.utils.rnn.pad_sequence([e[key] for e in examples], batch_first=True, padding_value=value)

        return {
            "input_features": torch.stack([e["input_features"] for e in examples]),
            "labels": pad("labels", -100),
            "decoder_input_ids": pad("decoder_input_ids", model.config.pad_token_id),
        }

    times, losses, last = [], [], [0.0]

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            last[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - last[0])

    class KDTrainer(Seq2SeqTrainer):
        """What a user writes: the student's CE plus T^2 * KL against a frozen teacher sharing the encoder."""

        def _get_train_sampler(self, *a, **kw):  # the batches in our order (its default shuffles them)
            return torch.utils.data.SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs)
            if teacher is None:
                losses.append(float(out.loss))
                return (out.loss, out) if return_outputs else out.loss
            with torch.no_grad():
                t_logits = teacher(
                    encoder_outputs=(out.encoder_last_hidden_state,),
                    decoder_input_ids=inputs["decoder_input_ids"],
                ).logits
            mask = inputs["labels"] != -100
            s = torch.nn.functional.log_softmax(out.logits[mask] / TEMPERATURE, dim=-1)
            t = torch.nn.functional.log_softmax(t_logits[mask] / TEMPERATURE, dim=-1)
            kl = (t.exp() * (t - s)).sum(-1).mean()
            loss = ALPHA * out.loss + (1 - ALPHA) * TEMPERATURE**2 * kl
            losses.append(float(loss))
            return (loss, out) if return_outputs else loss

    args = hf_args(work / "hf", batches)
    trainer = KDTrainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[StepTimes()])
    trainer.train()
    return times[WARMUP:], losses


def hf_args(out: Path, batches: list[dict]):
    """The peer's arguments: our batch size, steps, LR, schedule and clipping; no eval, saving or reporting."""
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=len(batches[0]["keys"]),
        max_steps=len(batches),
        learning_rate=LR,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_steps=10,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=42,
    )


def child(args) -> None:
    from mwc_dist.config import load_config

    work, kd = Path(args.work), args.child.startswith("kd:")
    name = args.child.split(":", 1)[1]
    batches = torch.load(work / f"batches_{'kd' if kd else 'ft'}.pt")
    if name == "HF":
        times, losses = hf(work, args.model, batches, kd)
    else:
        batch = args.kd_batch if kd else args.batch
        cfg = load_config(None, [*overrides(work, args.model, batch, args.steps, kd), *OURS[name]])
        times, losses = ours(cfg, batches)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"times": times, "losses": losses, "peak_rss_mb": rss}))


def run_child(args, work: Path, which: str) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--work", str(work), "--model", args.model]
    cmd += ["--steps", str(args.steps), "--batch", str(args.batch), "--kd-batch", str(args.kd_batch)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"{which} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-tiny-random")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--kd-batch", type=int, default=8)
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration runs this many times, interleaved")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(args, work)
        for kd, batch in ((False, args.batch), (True, args.kd_batch)):
            label = f"KD, student {args.student_layers} decoder layers" if kd else "fine-tune"
            print(
                f"{label}: {args.model}, batch {batch}, {args.steps} steps ({WARMUP} warm-up not timed), "
                f"{args.rounds} rounds",
                flush=True,
            )
            results = {}
            for _ in range(args.rounds):  # interleaved, so that a slow spell of the machine hits every configuration
                for n in ["HF", *OURS]:
                    r = run_child(args, work, f"{'kd' if kd else 'ft'}:{n}")
                    if n in results:
                        results[n]["times"] += r["times"]
                        results[n]["peak_rss_mb"] = max(results[n]["peak_rss_mb"], r["peak_rss_mb"])
                    else:
                        results[n] = r
            peer = results["HF"]
            base = batch / statistics.median(peer["times"])
            for name, r in results.items():
                rate = batch / statistics.median(r["times"])
                diff = max(abs(a - b) for a, b in zip(r["losses"], peer["losses"]))
                print(
                    f"  {name if name != 'HF' else 'HF Seq2SeqTrainer':<20} {rate:7.3f} samples/s  "
                    f"peak RSS {r['peak_rss_mb']:7.0f} MB  max |loss - HF's| {diff:.2e}  {rate / base:5.3f}x HF",
                    flush=True,
                )
            ratios["kd" if kd else "finetune"] = statistics.median(peer["times"]) / statistics.median(
                results["ours (default)"]["times"]
            )
    print("baseline: HF Seq2SeqTrainer (and its compute_loss KD override) on the same batches, fresh processes")
    print(f"ratio_finetune={ratios['finetune']:.3f}")
    print(f"ratio_kd={ratios['kd']:.3f}")
    print(f"ratio={min(ratios.values()):.3f}")


if __name__ == "__main__":
    main()
