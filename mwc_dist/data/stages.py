"""The sample stages every training stream runs, written once, in order::

    shuffle buffer -> augmentation plan -> packing -> label plan -> duration buckets -> batches

A stream supplies the samples and a ``Draw`` (where the stages' randomness comes from): one epoch of the shards
(``data/stream.py: TrainStream``) or an endless draw with replacement (``data/mix.py: ResampledStream``). Both hold
a ``Stages``; neither inherits from the other. Nothing here decodes audio: batches are still the tar samples.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.data.labels import plan_labels
from mwc_dist.data.pack import pack_samples
from mwc_dist.data.sample import trained_duration


@dataclass(frozen=True)
class Draw:
    """Where one loader worker's stages take their randomness from.

    ``shuffle_seed``: the shuffle buffer's generator. ``epoch``: what the augmentation and label plans are drawn
    from with each key (the epoch; an endless stream names its rank and worker). ``per_draw``: an endless stream,
    where a sample drawn twice gets a plan of its own each time."""

    shuffle_seed: str
    epoch: int | str
    per_draw: bool = False

    @staticmethod
    def of_epoch(seed: int, epoch: int, rank: int, worker: int) -> Draw:
        return Draw(f"{seed}-{epoch}-{rank}-{worker}", epoch)

    @staticmethod
    def endless(seed: int, rank: int, worker: int) -> Draw:
        return Draw(f"{seed}-{rank}-{worker}-shuffle", f"{rank}-{worker}", per_draw=True)


@dataclass
class Stages:
    """The stages' settings: train.* batching (batch size, buckets, shuffle buffer, seed) and data.* sample plans
    (augmentation, packing up to the window, timestamp and previous-text probabilities)."""

    tokenize: Any  # data/stream.py: Tokenize (packing and labels read the tokenizer)
    batch_size: int
    bucket_size: int
    shuffle_buffer: int
    max_samples: int
    seed: int
    augment: Any = None  # audio/augment.py: Augment, or None
    pack: bool = False
    timestamp_probability: float = 0.0
    prev_probability: float = 0.0

    def stages(self) -> list[Callable[[Iterator[dict], Draw], Iterator[dict]]]:
        """The sample stages, in the order they run (each passes its input through when it is off)."""
        return [self.shuffle, self.plan_augmentation, self.pack_to_window, self.plan_labels]

    def batches(self, samples: Iterator[dict], draw: Draw) -> Iterator[list[dict]]:
        for stage in self.stages():
            samples = stage(samples, draw)
        return bucket_batches(samples, self.batch_size, self.bucket_size)  # -> duration buckets -> batches

    def shuffle(self, samples: Iterator[dict], draw: Draw) -> Iterator[dict]:
        if self.shuffle_buffer <= 1:
            return samples
        import webdataset as wds

        rng = random.Random(draw.shuffle_seed)
        return wds.shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100), rng=rng)(samples)

    def plan_augmentation(self, samples: Iterator[dict], draw: Draw) -> Iterator[dict]:
        """Each sample's speed and noise (audio/augment.py); the buckets sort by the new length."""
        if self.augment is None:
            return samples
        return plan_augmentation(samples, self.augment, draw.epoch, per_draw=str(draw.epoch) if draw.per_draw else None)

    def pack_to_window(self, samples: Iterator[dict], draw: Draw) -> Iterator[dict]:
        """Consecutive clips joined up to the window (data/pack.py)."""
        return pack_samples(samples, self.max_samples / SAMPLE_RATE, self.tokenize) if self.pack else samples

    def plan_labels(self, samples: Iterator[dict], draw: Draw) -> Iterator[dict]:
        """Timestamps and prompts drawn per (seed, epoch, key) (data/labels.py); off when both probabilities are 0."""
        if not (self.timestamp_probability or self.prev_probability):
            return samples
        p = (self.timestamp_probability, self.prev_probability)
        return plan_labels(samples, self.seed, draw.epoch, *p, per_draw=draw.per_draw)


def plan_augmentation(
    samples: Iterator[dict], augment, epoch: int | str, per_draw: str | None = None
) -> Iterator[dict]:
    """Attach each sample's augmentation plan and its new duration (what the buckets sort by). ``per_draw`` (an
    endless stream's name): each draw gets its own plan, so a sample drawn twice gets two."""
    for n, sample in enumerate(samples):
        duration = json.loads(sample["json"])["duration"]
        plan = augment.plan(sample["__key__"], epoch if per_draw is None else f"{per_draw}-{n}", duration)
        yield sample | {"__plan__": plan, "__duration__": duration / plan.speed}


def bucket_batches(samples: Iterator[dict], batch_size: int, bucket_batches: int) -> Iterator[list[dict]]:
    """Group ``batch_size * bucket_batches`` samples, sort them by duration, cut into batches; drop the last
    partial batch."""
    bucket: list[dict] = []
    for sample in samples:
        bucket.append(sample)
        if len(bucket) == batch_size * bucket_batches:
            yield from _cut(bucket, batch_size)
            bucket = []
    yield from _cut(bucket, batch_size)


def _cut(bucket: list[dict], batch_size: int) -> Iterator[list[dict]]:
    bucket.sort(key=trained_duration)
    for start in range(0, len(bucket) - batch_size + 1, batch_size):
        yield bucket[start : start + batch_size]


def resume_skip(skip_items: int, worker: int, num_workers: int) -> int:
    """Batches this loader worker skips after a resume: of ``skip_items`` consumed round robin from worker 0."""
    return (skip_items - worker + num_workers - 1) // num_workers if skip_items > worker else 0


def logical_worker(skip_items: int, num_workers: int) -> int:
    """The worker this DataLoader worker plays. The loader's round robin starts at its worker 0, so after a resume
    worker 0 must play the logical worker whose item comes next: rotated by the items already consumed."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    assert (info.num_workers if info else 1) == num_workers, "DataLoader workers != planned workers"
    return ((info.id if info else 0) + skip_items) % num_workers
