"""Loader scaling: training batches per second from shards with 1 and with N loader workers.

    python bench/loader_scaling.py [--utterances 960] [--batch 8] [--workers 2] [--epochs 4]

What one rank's DataLoader delivers to the step: shard read, shuffle buffer, duration buckets, FLAC
decode, tokenise, collate to padded waveforms (log-mel runs on the training device, see
bench/data_plane.py). With 1 worker the pipeline runs in the main process; with N it runs in N
DataLoader worker processes, each on its own shards. The clips are the espeak-ng utterances joined
into ~27-s clips (the heavy case: a 30-s window's worth of FLAC to decode per sample); each epoch builds
its loader again, so worker start-up is paid as in training. The last line is `ratio=<x>`: N workers'
batches per second over 1 worker's (ideal: N, on N free cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_plane import join_long  # noqa: E402

from mwc_dist.config import DataConfig  # noqa: E402
from mwc_dist.data.shard import shard_source  # noqa: E402
from mwc_dist.data.stream import Tokenize, TrainStream, build_train_loader, load_shard_set  # noqa: E402
from mwc_dist.demo.corpus import make_demo_corpus  # noqa: E402
from mwc_dist.models.tokenizer import load_tokenizer  # noqa: E402


def run(shard_dir: Path, tokenize: Tokenize, batch: int, workers: int, epochs: int) -> tuple[int, float, float, float]:
    """(batches, audio seconds, wall seconds, steady batches/s: each epoch timed from its first batch on)."""
    shards = load_shard_set(DataConfig(shard_dir=str(shard_dir)), "train")
    start, n, seconds, steady_n, steady_s = time.perf_counter(), 0, 0.0, 0, 0.0
    for epoch in range(epochs):
        stream = TrainStream(
            shards,
            tokenize,
            batch_size=batch,
            seed=0,
            epoch=epoch,
            rank=0,
            world_size=1,
            num_workers=workers,
            shuffle_buffer=200,
            bucket_size=4,
            max_samples=480000,
        )
        first = None
        for b in build_train_loader(stream):  # worker start-up included: a training epoch pays it too
            if b is not None:
                n += 1
                seconds += b["seconds"]
                if first is None:
                    first = time.perf_counter()
                else:
                    steady_n += 1
        steady_s += time.perf_counter() - first
    return n, seconds, time.perf_counter() - start, steady_n / steady_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=960)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "short", count=args.utterances, test_fraction=0.0, progress=False)
        join_long(tmp / "short", tmp / "data", 8)
        shard_source(
            DataConfig(
                source=str(tmp / "data"),
                train_split_ratio=1.0,
                validation_split_ratio=0.0,
                test_split_ratio=0.0,
                shard_samples=8,
            ),
            tmp / "shards",
            workers=None,
            progress=False,
            log=lambda _: None,
        )
        run(tmp / "shards", tokenize, args.batch, 1, 1)  # warm-up (page cache, imports)
        for workers in sorted({1, args.workers}):
            n, seconds, wall, steady = run(tmp / "shards", tokenize, args.batch, workers, args.epochs)
            rates[workers] = n / wall
            print(
                f"workers={workers}: {n} batches of {args.batch} in {wall:6.2f} s -> {n / wall:7.1f} batches/s, "
                f"{n * args.batch / wall:7.1f} clips/s, {seconds / wall:7.0f}x real time; "
                f"after each epoch's first batch {steady:7.1f} batches/s"
            )
    print(
        f"machine: {os.cpu_count()} cores; baseline: the same loader with 1 worker (in the main process); "
        f"ratio over whole epochs, worker start-up included"
    )
    print(f"ratio={rates[args.workers] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
