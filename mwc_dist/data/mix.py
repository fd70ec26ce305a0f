"""Endless training streams: shards drawn with replacement, from one shard set or a weighted mix of several.

For corpora where an epoch means nothing, and for training on several corpora at once (data.resampled,
data.mix_shard_dirs; train.max_steps sets the length). Each rank and loader worker draws on its own generator,
seeded by (train.seed, rank, worker), as WebDataset's ``resampled=True`` does:

    for every sample: a set i ~ p (mix_probabilities) -> the next sample of set i, whose endless reader draws
    a shard of i with replacement and reads it through -> shuffle buffer -> augmentation plan -> duration
    buckets -> batches -> (skip what was consumed before a resume) -> decode, tokenise, collate

Every worker's stream is endless, so every rank takes the same number of steps with nothing left out. Exact
resume replays the stream up to this rank's position without decoding (reading the tar members again: the
cost of a resume grows with the steps already taken).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from torch.utils.data import get_worker_info

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.data.pack import pack_samples
from mwc_dist.data.stream import (
    ShardSet,
    Tokenize,
    TrainStream,
    bucket_batches,
    collate,
    plan_augmentation,
    resume_skip,
    tar_samples,
)


def mix_probabilities(sizes: list[int], weights: list[float], temperature: float) -> list[float]:
    """p_i ~ (weights[i], or sizes[i] without weights) ** (1 / temperature), normalised."""
    base = weights or sizes
    raised = [float(b) ** (1.0 / temperature) for b in base]
    return [r / sum(raised) for r in raised]


def _endless(urls: list[str], rng: random.Random, select=None) -> Iterator[dict[str, Any]]:
    while True:  # one shard at a time, drawn with replacement (through the pseudo-label filter, if any)
        samples = tar_samples([rng.choice(urls)])
        yield from select(samples) if select is not None else samples


class ResampledStream(TrainStream):
    """One rank's endless training batches (see the module docstring); batches carry ``sources`` (set indices).

    A TrainStream's options (batch size, seed, rank, workers, shuffle, buckets, resume position, augmentation,
    pseudo-label selection) over several sets; what differs is where the samples come from and that it never ends.
    """

    def __init__(self, sets: list[ShardSet], probabilities: list[float], tokenize: Tokenize, **options):
        super().__init__(sets[0], tokenize, epoch=0, world_size=1, **options)
        self.sets, self.probabilities = sets, probabilities

    def samples(self, worker: int) -> Iterator[dict[str, Any]]:
        """The worker's endless sample stream, each tagged with its set (``__source__``)."""
        seed = f"{self.seed}-{self.rank}-{worker}"
        readers = [_endless(s.urls, random.Random(f"{seed}-set{i}"), self.select) for i, s in enumerate(self.sets)]
        rng, indices = random.Random(f"{seed}-mix"), range(len(self.sets))
        while True:
            i = rng.choices(indices, weights=self.probabilities)[0]
            yield next(readers[i]) | {"__source__": i}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        info = get_worker_info()
        assert (info.num_workers if info else 1) == self.num_workers, "DataLoader workers != planned workers"
        worker = ((info.id if info else 0) + self.skip_items) % self.num_workers  # as TrainStream: resume rotates
        samples = self.samples(worker)
        if self.shuffle_buffer > 1:
            rng = random.Random(f"{self.seed}-{self.rank}-{worker}-shuffle")
            samples = wds.shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100), rng=rng)(samples)
        if self.augment is not None:  # a plan per draw: a sample drawn twice gets two plans
            samples = plan_augmentation(samples, self.augment, 0, per_draw=f"{self.rank}-{worker}")
        if self.pack:  # consecutive draws joined up to the window (data/pack.py)
            samples = pack_samples(samples, self.max_samples / SAMPLE_RATE, self.tokenize)
        samples = self.plan_labels(samples, f"{self.rank}-{worker}", per_draw=True)  # timestamps, prompts per draw
        skip = resume_skip(self.skip_items, worker, self.num_workers)
        for n, batch in enumerate(bucket_batches(samples, self.batch_size, self.bucket_size), start=1):
            if n > skip:  # what was consumed before a resume is skipped before decoding
                yield collate(batch, self.tokenize, self.max_samples, self.augment) | {
                    "sources": [s.get("__source__", s.get("__members__", [{}])[0].get("__source__")) for s in batch]
                }
