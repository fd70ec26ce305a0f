"""The training data of one run on one rank: its shards, one stream per epoch, and the steps they make.

Every rank computes the same plan from the manifest counts alone (data/stream.py), so the number of
optimizer steps is known before the first batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter

from mwc_dist.audio.augment import Augment
from mwc_dist.data.config import DataConfig
from mwc_dist.data.mix import ResampledStream, mix_probabilities
from mwc_dist.data.pseudo import QualityFilter, filter_counts, select_pseudo_labels
from mwc_dist.data.stream import ShardSet, Tokenize, TrainStream, load_shard_set, shard_folder
from mwc_dist.loop.config import TrainConfig


class TrainData:
    """data.* (shards, loader workers) and the batching keys of train.* (batch size, shuffle, buckets, seed)."""

    def __init__(
        self,
        d: DataConfig,
        t: TrainConfig,
        tokenize: Tokenize,
        *,
        rank: int,
        world_size: int,
        max_samples: int,
        augment: Augment | None = None,
    ):
        self.data_cfg, self.train_cfg, self.tokenize, self.augment = d, t, tokenize, augment
        if d.timestamp_probability > 0 and tokenize.timestamp_begin is None:
            raise ValueError(
                f"data.timestamp_probability={d.timestamp_probability}: the model's tokenizer has no timestamp tokens "
                f"(<|0.00|>..<|30.00|>); use a Whisper tokenizer with them (mwc import-ct2 adds them) or set it to 0"
            )
        self.rank, self.world_size, self.max_samples = rank, world_size, max_samples
        self.endless = d.resampled or bool(d.mix_shard_dirs)  # data/mix.py: one endless epoch of max_steps
        dirs = d.mix_shard_dirs
        self.sets = [shard_folder(s, "train") for s in dirs] if dirs else [load_shard_set(d, "train")]
        missing = sum(s.without_text for s in self.sets)
        if missing and d.text_field == "text":
            raise ValueError(
                f"{missing} training samples have no transcript (sharded with data.allow_missing_text): label them "
                f"with `mwc pseudo-label` and train with data.text_field=teacher_text"
            )
        self.select, self.pseudo_dropped = None, {}
        if d.text_field == "teacher_text":  # pseudo-labels: plan with what the filter keeps, count what it drops
            self.sets, self.pseudo_dropped = _filtered(self.sets, QualityFilter.from_config(d))
            self.select = functools.partial(select_pseudo_labels, quality_filter=QualityFilter.from_config(d))
        if d.pack_to_window and not self.endless:  # the plan runs the packer on every sample's metadata
            self.sets = [s.with_metas() for s in self.sets]
        self.probabilities = mix_probabilities([s.num_samples for s in self.sets], d.mix_weights, d.mix_temperature)
        self.shards = self.sets[0] if len(self.sets) == 1 else _union(self.sets)
        self.slots = world_size * max(1, d.num_workers)
        self.shared = not self.endless and len(self.shards.urls) < self.slots
        if self.shared:  # a small corpus: each shard read by several ranks/workers, each keeping its part
            self.shards = self.shards.split_within(self.slots)

    def stream(self, epoch: int, skip_items: int = 0) -> TrainStream | ResampledStream:
        """This rank's batches of ``epoch``, the first ``skip_items`` loader items skipped (a resumed epoch)."""
        options = dict(
            batch_size=self.train_cfg.per_device_train_batch_size,
            seed=self.train_cfg.seed,
            rank=self.rank,
            num_workers=self.data_cfg.num_workers,
            shuffle_buffer=self.train_cfg.shuffle_buffer,
            bucket_size=self.train_cfg.bucket_batches,
            max_samples=self.max_samples,
            skip_items=skip_items,
            augment=self.augment,
            select=self.select,
            pack=self.data_cfg.pack_to_window,
            timestamp_probability=self.data_cfg.timestamp_probability,
            prev_probability=self.data_cfg.condition_on_prev_probability,
        )
        if self.endless:  # one endless "epoch" of the run's loader items
            steps = self.train_cfg.max_steps * self.train_cfg.gradient_accumulation_steps
            return ResampledStream(self.sets, self.probabilities, self.tokenize, steps=steps, **options)
        return TrainStream(self.shards, self.tokenize, epoch=epoch, world_size=self.world_size, **options)

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimizer steps in ``epoch``; a ValueError that says what to change when some rank has no batch."""
        steps = self.stream(epoch).steps_per_epoch() // self.train_cfg.gradient_accumulation_steps
        if steps == 0:
            raise ValueError(self._no_batch_message())
        return steps

    def start_epoch(self, epoch: int, log=print) -> int:
        """Steps in ``epoch``, and a log line that says how many samples it leaves out (never silently)."""
        steps = self.steps_in_epoch(epoch)
        stream = self.stream(epoch)
        log(stream.describe(steps, stream.left_out(steps * self.train_cfg.gradient_accumulation_steps)))
        return steps

    def describe(self) -> str:
        """One line for the start of the run: samples, shards, steps, the pseudo-labels the filter drops."""
        shards = len(self.shards.urls) // self.shards.parts[0][1] if self.shared else len(self.shards.urls)
        text = f"{self.shards.num_samples} train samples in {shards} shards; {self.total_steps()} steps"
        if self.shared:
            text += (
                f"; fewer shards than ranks x loader workers ({self.slots}): each shard is read on several ranks "
                f"and workers, each keeping 1 sample in {self.shards.parts[0][1]} (re-shard with `mwc shard "
                f"--for-world-size {self.world_size}` to read each once)"
            )
        if self.data_cfg.text_field == "teacher_text":
            drops = ", ".join(f"{n} {why}" for why, n in self.pseudo_dropped.items()) or "none"
            text += f"; training on pseudo-labels, dropped by the quality filter: {drops}"
        return text

    def summary(self, state) -> dict:
        """For run_summary.json: the samples each started epoch left out; the pseudo-labels the filter dropped."""
        epochs = range(state.epoch + (1 if state.epoch_step else 0))
        return {"samples_left_out_per_epoch": {e: self.left_out(e) for e in epochs}} | (
            {"pseudo_labels_dropped": self.pseudo_dropped} if self.data_cfg.text_field == "teacher_text" else {}
        )

    def left_out(self, epoch: int) -> int:
        """Samples ``epoch`` leaves out so that every rank takes the same number of steps: partial batches, the
        surplus of ranks or workers whose shards hold more, an incomplete last accumulation window. An endless
        stream leaves nothing out."""
        return self.stream(epoch).left_out(self.steps_in_epoch(epoch) * self.train_cfg.gradient_accumulation_steps)

    def total_steps(self) -> int:
        """train.max_steps, or the steps of train.num_epochs epochs."""
        if self.train_cfg.max_steps > 0:
            return self.train_cfg.max_steps
        return sum(self.steps_in_epoch(e) for e in range(self.train_cfg.num_epochs))

    def check_windows(self, **windows: float | None) -> None:
        """Refuse shards with clips longer than a model's window in seconds (they would be cut); None: no model."""
        longest = self.shards.max_seconds
        for who, window in windows.items():
            if longest is not None and window is not None and longest > window + 1e-6:
                raise ValueError(
                    f"the shards may hold clips up to {longest:g} s but the {who}'s window is {window:g} s: "
                    f"re-shard with data.max_duration_seconds={window:g} or use a {who} with a longer window"
                )

    def _no_batch_message(self) -> str:
        shards, ranks, workers = len(self.shards.urls), self.world_size, max(1, self.data_cfg.num_workers)
        return (
            f"{self.shards.num_samples} train samples in {shards} shards give some rank no full batch "
            f"(batch {self.train_cfg.per_device_train_batch_size}, {ranks} ranks x {workers} loader workers; "
            f"shards are split by rank and worker). Re-shard with a smaller data.shard_samples (at least "
            f"{ranks * workers} shards), or lower the batch size or data.num_workers."
        )


def _union(sets: list[ShardSet]) -> ShardSet:
    windows = [s.max_seconds for s in sets if s.max_seconds is not None]
    longest = max(windows) if windows else None
    return ShardSet([u for s in sets for u in s.urls], [c for s in sets for c in s.counts], longest)


def _filtered(sets: list[ShardSet], quality_filter: QualityFilter) -> tuple[list[ShardSet], dict[str, int]]:
    """The sets with the counts the pseudo-label filter keeps (read from the quality files), and the drops."""
    out, dropped = [], Counter()
    for s in sets:
        kept, drops = filter_counts(s.urls, quality_filter)
        out.append(dataclasses.replace(s, counts=kept, without_text=0))
        dropped.update(drops)
    return out, dict(dropped.most_common())
