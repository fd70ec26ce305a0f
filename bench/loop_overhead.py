"""Loop overhead: our training loop vs a bare PyTorch loop, and vs HF Seq2SeqTrainer, on the same batches.

    python bench/loop_overhead.py [--model whisper-tiny-random] [--steps 12] [--batch 4] [--rounds 3]

The batches are read once from the demo shards (our loader) and kept in memory, so that only the loops
differ. Each loop takes the same random model (same seed), fused AdamW (ours: train.fused_optimizer; HF's default
`adamw_torch_fused`), linear schedule, grad clipping, full fine-tune:
  * bare: log-mel -> forward -> backward -> clip -> step -> schedule -> zero_grad, nothing else;
  * ours: `Trainer.train()` itself (accumulate context, the collective finiteness check, skipped-step
    bookkeeping, logging every 10 steps to metrics.jsonl, the preemption check), its loader fed from memory;
  * Seq2SeqTrainer: the same model and AdamW settings, log-mel features precomputed (its usual dataset),
    a collator that stacks features and pads labels; no eval, no saving.
Two warm-up steps are not timed. The bare loop and ours run in ``--rounds`` adjacent pairs, the order alternating
(bare first, then ours first, ...): this machine's speed drifts by up to 10 % within minutes (measured: one pass
each gave 1.080x, 1.072x and 0.875x in three runs, with cProfile showing the same work in both loops), and a pair
measured back to back shares the drift. The last line is `ratio=<x>`: the median over the rounds of our median time
per step over the bare loop's in the same round (goal <= 1.02).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mwc_dist.train as train_module  # noqa: E402
from mwc_dist.audio.features import LogMel  # noqa: E402
from mwc_dist.config import DataConfig, ModelConfig, load_config  # noqa: E402
from mwc_dist.data.shard import shard_source  # noqa: E402
from mwc_dist.demo.corpus import make_demo_corpus  # noqa: E402
from mwc_dist.models.build import build_model  # noqa: E402

WARMUP = 2
LR = 1e-4


def bare(model_name: str, batches: list[dict]) -> list[float]:
    from transformers import get_scheduler

    model, _ = build_model(ModelConfig(base_model=model_name), seed=42)
    model.train()
    log_mel = LogMel(model.config.num_mel_bins, 30)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, fused=True)  # as ours (train.fused_optimizer) and HF's
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=len(batches))
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss = model(input_features=log_mel(batch["audio"]), labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[WARMUP:]


def ours(cfg, batches: list[dict]) -> list[float]:
    trainer = train_module.Trainer(cfg)
    trainer.setup()
    times, last = [], [0.0]

    class Timed(list):
        def __iter__(self):
            for b in super().__iter__():
                now = time.perf_counter()
                if last[0]:
                    times.append(now - last[0])  # one whole loop iteration: step + bookkeeping
                last[0] = now
                yield b

    real_loader, real_finish = train_module.build_train_loader, train_module.Trainer.finish
    train_module.build_train_loader = lambda stream: Timed(batches)
    train_module.Trainer.finish = lambda self: times.append(time.perf_counter() - last[0]) or {}
    try:
        trainer.train()
    finally:
        train_module.build_train_loader, train_module.Trainer.finish = real_loader, real_finish
    return times[WARMUP:]


def hf_trainer(model_name: str, batches: list[dict], out: Path) -> list[float]:
    from peers import hf_args
    from transformers import Seq2SeqTrainer, TrainerCallback

    model, _ = build_model(ModelConfig(base_model=model_name), seed=42)
    log_mel = LogMel(model.config.num_mel_bins, 30)
    rows = []
    for b in batches:
        feats = log_mel(b["audio"])
        rows += [{"input_features": feats[i], "labels": b["labels"][i]} for i in range(len(feats))]

    def collate(examples):
        labels = torch.nn.utils.rnn.pad_sequence([e["labels"] for e in examples], batch_first=True, padding_value=-100)
        return {"input_features": torch.stack([e["input_features"] for e in examples]), "labels": labels}

    times, last = [], [0.0]

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            last[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - last[0])

    args = hf_args(out, batches)  # bench/peers.py: the same arguments the peer bench gives it
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[StepTimes()])
    trainer.train()
    return times[WARMUP:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-tiny-random")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="adjacent (bare, ours) pairs, the order alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "data", count=max(80, args.batch * (args.steps + 4) * 2), progress=False)
        shard_source(
            DataConfig(source=str(tmp / "data"), shard_samples=16),
            tmp / "shards",
            workers=1,
            progress=False,
            log=lambda _: None,
        )
        cfg = load_config(
            None,
            [
                f"data.shard_dir={tmp / 'shards'}",
                f"train.output_dir={tmp / 'run'}",
                f"model.base_model={args.model}",
                "model.language=es",
                "data.num_workers=1",
                f"train.per_device_train_batch_size={args.batch}",
                f"train.max_steps={args.steps}",
                f"train.learning_rate={LR}",
                "train.lr_scheduler_type=linear",
                "train.eval_steps=-1",
                "checkpoint.save_strategy=no",
                "train.log_every_steps=10",
                "train.seed=42",
                # the loop's overhead at equal arithmetic: the bare loop projects every position onto the vocabulary;
                # what projecting only the label positions saves is bench/peers.py's to show
                "train.logits_at_labels_only=false",
            ],
        )
        probe = train_module.Trainer(cfg)
        probe.setup()
        batches = [
            b
            for b in itertools.islice(train_module.build_train_loader(probe.data.stream(0)), args.steps * 2)
            if b is not None
        ][: args.steps]
        probe.tracker.finish()
        del probe
        loops = {"bare": lambda: bare(args.model, batches), "ours": lambda: ours(cfg, batches)}
        rounds = []
        for r in range(args.rounds):
            order = ("bare", "ours") if r % 2 == 0 else ("ours", "bare")
            rounds.append({name: statistics.median(loops[name]()) for name in order})
        hf = statistics.median(hf_trainer(args.model, batches, tmp / "hf"))
    print(
        f"{args.model}, batch {args.batch}, {args.steps} steps ({WARMUP} warm-up not timed), "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    ratios = []
    for r, times in enumerate(rounds):
        ratios.append(times["ours"] / times["bare"])
        print(
            f"  round {r + 1} ({' then '.join(times)}): bare median {times['bare'] * 1000:8.1f} ms/step, ours "
            f"{times['ours'] * 1000:8.1f} ms/step: {ratios[-1]:5.3f}x bare"
        )
    last_bare = rounds[-1]["bare"]
    print(
        f"  HF Seq2SeqTrainer (once, after the last round) median {hf * 1000:8.1f} ms/step: {hf / last_bare:5.3f}x bare"
    )
    print("baseline: a bare PyTorch loop (same model, batches, optimizer, schedule, clipping) in the same process")
    print(f"ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
