"""Endless training streams: shards drawn with replacement, from one shard set or a weighted mix of several.

For corpora where an epoch means nothing, and for training on several corpora at once (data.resampled,
data.mix_shard_dirs; train.max_steps sets the length). Each rank and loader worker draws on its own generator,
seeded by (train.seed, rank, worker), as WebDataset's ``resampled=True`` does:

    for every sample: a set i ~ p (mix_probabilities) -> the next sample of set i, whose endless reader draws
    a shard of i with replacement and reads it through -> the sample stages an epoch runs too (data/stages.py:
    shuffle buffer -> augmentation plan -> packing -> label plan -> duration buckets -> batches)
    -> (skip what was consumed before a resume) -> decode, tokenise, collate

Every worker's stream is endless, so every rank takes the same number of steps with nothing left out. Exact
resume replays the stream up to this rank's position without decoding (reading the tar members again: the
cost of a resume grows with the steps already taken).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset

from mwc_dist.data.stages import Draw, Stages, logical_worker, resume_skip
from mwc_dist.data.stream import ShardSet, Tokenize, collate, tar_samples


def mix_probabilities(sizes: list[int], weights: list[float], temperature: float) -> list[float]:
    """p_i ~ (weights[i], or sizes[i] without weights) ** (1 / temperature), normalised."""
    base = weights or sizes
    raised = [float(b) ** (1.0 / temperature) for b in base]
    return [r / sum(raised) for r in raised]


def _endless(urls: list[str], rng: random.Random, select=None) -> Iterator[dict[str, Any]]:
    while True:  # one shard at a time, drawn with replacement (through the pseudo-label filter, if any)
        samples = tar_samples([rng.choice(urls)])
        yield from select(samples) if select is not None else samples


class ResampledStream(IterableDataset):
    """One rank's endless training batches (see the module docstring); batches carry ``sources`` (set indices).

    The same sample stages as an epoch's TrainStream (data/stages.py), over several sets; what differs is where the
    samples come from and that it never ends. ``steps``: the loader items the run takes from it (its "epoch")."""

    def __init__(
        self,
        sets: list[ShardSet],
        probabilities: list[float],
        tokenize: Tokenize,
        *,
        rank: int,
        num_workers: int,
        skip_items: int = 0,
        select=None,
        steps: int = 0,
        **stages,
    ):
        self.sets, self.probabilities, self.tokenize = sets, probabilities, tokenize
        self.stages = Stages(tokenize, **stages)
        self.rank, self.num_workers, self.skip_items, self.select = rank, max(1, num_workers), skip_items, select
        self.steps = steps

    def steps_per_epoch(self) -> int:
        """Loader items every rank takes: all it is asked for (every worker's stream is endless)."""
        return self.steps

    def left_out(self, items: int) -> int:
        return 0  # an endless stream leaves nothing out

    def describe(self, steps: int, left_out: int) -> str:
        mix = ", ".join(f"{len(s.urls)} shards p={p:.3f}" for s, p in zip(self.sets, self.probabilities))
        return f"endless stream, shards drawn with replacement ({mix}): {steps} steps"

    def samples(self, worker: int) -> Iterator[dict[str, Any]]:
        """The worker's endless sample stream, each tagged with its set (``__source__``)."""
        seed = f"{self.stages.seed}-{self.rank}-{worker}"
        readers = [_endless(s.urls, random.Random(f"{seed}-set{i}"), self.select) for i, s in enumerate(self.sets)]
        rng, indices = random.Random(f"{seed}-mix"), range(len(self.sets))
        while True:
            i = rng.choices(indices, weights=self.probabilities)[0]
            yield next(readers[i]) | {"__source__": i}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = logical_worker(self.skip_items, self.num_workers)  # as TrainStream: a resume rotates the workers
        draw = Draw.endless(self.stages.seed, self.rank, worker)  # a plan per draw: a sample drawn twice gets two
        batches = self.stages.batches(self.samples(worker), draw)
        skip = resume_skip(self.skip_items, worker, self.num_workers)
        for n, batch in enumerate(batches, start=1):
            if n > skip:  # what was consumed before a resume is skipped before decoding
                yield collate(batch, self.tokenize, self.stages.max_samples, self.stages.augment) | {
                    "sources": [s.get("__source__", s.get("__members__", [{}])[0].get("__source__")) for s in batch]
                }
