"""What augmentation costs the loader: samples/s with augment.* off, with speed perturbation, and with speed and
noise, on the same espeak-ng shards, in one run.

    python bench/augment_throughput.py [--utterances 120] [--repeats 3]

Each setting reads every training batch of one epoch in the main process (num_workers=0: the cost per sample,
what each loader worker pays), decoding and padding included; the median of ``--repeats`` passes is reported.
Noise: white and brown noise files written for the run. The last line is `ratio=<x>`: samples/s with speed and
noise over samples/s with augmentation off (1.0 = free; the loader's workers scale it, bench/loader_scaling.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwc_dist.audio.augment import Augment  # noqa: E402
from mwc_dist.config import AugmentConfig, DataConfig  # noqa: E402
from mwc_dist.data.shard import shard_source  # noqa: E402
from mwc_dist.data.stream import Tokenize, TrainStream, load_shard_set  # noqa: E402
from mwc_dist.demo.corpus import make_demo_corpus  # noqa: E402
from mwc_dist.models.tokenizer import load_tokenizer  # noqa: E402


def samples_per_second(shards, augment: Augment | None, repeats: int) -> float:
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe")
    rates = []
    for epoch in range(repeats):
        stream = TrainStream(
            shards, tokenize, batch_size=8, seed=0, epoch=epoch, rank=0, world_size=1, num_workers=1,
            shuffle_buffer=100, bucket_size=4, max_samples=30 * 16000, augment=augment,
        )  # fmt: skip
        start, n = time.perf_counter(), 0
        for batch in stream:
            n += len(batch["keys"]) if batch is not None else 0
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    import soundfile as sf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "data", count=args.utterances, test_fraction=0.05, progress=False)
        shard_source(DataConfig(source=str(tmp / "data"), shard_samples=40), tmp / "shards", workers=2, progress=False)
        shards = load_shard_set(DataConfig(shard_dir=str(tmp / "shards")), "train")
        rng = np.random.default_rng(0)
        (tmp / "noise").mkdir()
        sf.write(tmp / "noise" / "white.wav", 0.3 * rng.standard_normal(16000 * 10).astype(np.float32), 16000)
        brown = np.cumsum(rng.standard_normal(16000 * 10))
        sf.write(tmp / "noise" / "brown.flac", (0.5 * brown / np.abs(brown).max()).astype(np.float32), 16000)
        settings = {
            "off": None,
            "speed [0.9, 1.0, 1.1]": Augment(AugmentConfig(speed_factors=[0.9, 1.0, 1.1]), 0, 30),
            "speed + noise (p=0.5)": Augment(
                AugmentConfig(speed_factors=[0.9, 1.0, 1.1], noise_dir=str(tmp / "noise")), 0, 30
            ),
        }
        rates = {name: samples_per_second(shards, augment, args.repeats) for name, augment in settings.items()}
    print(f"{shards.num_samples} training samples, batch 8, one process, median of {args.repeats} epochs")
    for name, rate in rates.items():
        print(f"  {name:24s} {rate:8.1f} samples/s  ({rate / rates['off']:.2f}x)")
    print(f"ratio={rates['speed + noise (p=0.5)'] / rates['off']:.3f}")


if __name__ == "__main__":
    main()
