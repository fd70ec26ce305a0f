"""Packing: seconds of speech trained per second of wall time, with data.pack_to_window on vs off, in one run.

    python bench/packing.py [--utterances 400] [--steps 6] [--batch 4] [--model whisper-tiny-random]

The demo's clips (espeak-ng speaking fortunes-es quotes, a few seconds each), sharded as `make demo` shards them,
train a model with Whisper's 30-s window (a random whisper-tiny-sized one by default: the encoder always runs
over the whole window, so a batch of short clips is mostly padding). Each setting runs the real loader and a
full fine-tuning step (log-mel, forward, backward, AdamW) for ``--steps`` steps after one warm-up step; speech
seconds are what the batches hold. The last line is `ratio=<x>`: packed over unpacked (goal >= 3).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwc_dist.audio.features import LogMel  # noqa: E402
from mwc_dist.config import DataConfig, ModelConfig  # noqa: E402
from mwc_dist.data.shard import shard_source  # noqa: E402
from mwc_dist.data.stream import Tokenize, TrainStream, load_shard_set  # noqa: E402
from mwc_dist.demo.corpus import make_demo_corpus  # noqa: E402
from mwc_dist.models.build import build_model  # noqa: E402


def speech_per_second(model_name: str, shards, pack: bool, steps: int, batch_size: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model, processor = build_model(ModelConfig(base_model=model_name, language="es"), seed=0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    fe = processor.feature_extractor
    log_mel = LogMel(fe.feature_size, fe.chunk_length)
    tokenize = Tokenize(processor.tokenizer, "es", "transcribe", model.config.max_target_positions)
    stream = TrainStream(
        shards, tokenize, batch_size=batch_size, seed=0, epoch=0, rank=0, world_size=1, num_workers=1,
        shuffle_buffer=50, bucket_size=4, max_samples=fe.n_samples, pack=pack,
    )  # fmt: skip
    batches = (b for b in stream if b is not None)
    speech, rows, start = 0.0, 0, None
    for n, batch in enumerate(batches):
        if n == 1:  # the first step warms up
            speech, rows, start = 0.0, 0, time.perf_counter()
        loss = model(input_features=log_mel(batch["audio"]), labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        speech, rows = speech + batch["seconds"], rows + len(batch["keys"])
        if n == steps:
            break
    if n < steps:
        raise SystemExit(f"only {n} timed steps: raise --utterances")
    return speech / (time.perf_counter() - start), speech / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--model", default="whisper-tiny-random")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "data", count=args.utterances, test_fraction=0.05, text="quotes", progress=False)
        data = DataConfig(source=str(tmp / "data" / "indomain"), max_duration_seconds=30, shard_samples=40)
        shard_source(data, tmp / "shards", workers=2, progress=False)
        shards = load_shard_set(DataConfig(shard_dir=str(tmp / "shards")), "train")
        plain = speech_per_second(args.model, shards, False, args.steps, args.batch)
        packed = speech_per_second(args.model, shards.with_metas(), True, args.steps, args.batch)
    print(f"{shards.num_samples} clips, {args.model} (30-s window), batch {args.batch}, {args.steps} timed steps")
    for name, (rate, per_row) in (("unpacked", plain), ("packed", packed)):
        print(f"  {name:9s} {rate:6.2f} s of speech per second   ({per_row:5.1f} s of speech per 30-s row)")
    print(f"ratio={packed[0] / plain[0]:.2f}")


if __name__ == "__main__":
    main()
