"""TrainState: where a run is (steps, epoch, every rank's position in the epoch's data, best metric, skipped
steps), saved in every checkpoint as trainer_state.json and advanced only by its own methods, which the training
loop and its parts call at the moments they name."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch in progress
    epoch_step: int = 0  # optimizer steps taken in that epoch
    samples_seen: int = 0  # over all ranks
    audio_seconds_seen: float = 0.0
    data_position: dict[str, int] = field(default_factory=dict)  # rank -> loader items taken this epoch
    world_size: int = 1
    best_metric: float | None = None  # checkpoint.metric_for_best_model of <output_dir>/best/
    best_step: int | None = None
    last_eval: dict[str, Any] = field(default_factory=dict)
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss or gradients (fp16 overflow included)
    bad_streak: int = 0  # of them, how many in a row up to now

    # -- the data cursor: loader items this rank took in the epoch in progress (what exact resume skips)
    def start(self, rank: int, world_size: int, log=print) -> int:
        """At the start of training: this rank's position in the epoch in progress; 0 (the epoch's data order
        restarts) when the world size changed since the checkpoint."""
        if self.world_size != world_size:
            log(f"world size changed ({self.world_size} -> {world_size}): epoch {self.epoch} restarts its data")
            self.data_position[str(rank)] = 0
        return self.position(rank)

    def position(self, rank: int) -> int:
        return self.data_position.get(str(rank), 0)

    def take_item(self, rank: int) -> None:
        """One item (a batch, or a worker's padding) taken from this rank's loader."""
        self.data_position[str(rank)] = self.position(rank) + 1

    def finish_step(self, rank: int, steps_in_epoch: int) -> bool:
        """One optimizer step taken; whether it ended the epoch (the next one starts at position 0)."""
        self.step += 1
        self.epoch_step += 1
        if self.epoch_step != steps_in_epoch:
            return False
        self.epoch, self.epoch_step = self.epoch + 1, 0
        self.data_position[str(rank)] = 0
        return True

    def saved_by(self, positions: dict[int, int]) -> None:
        """On the main process, as a checkpoint is written: every rank's position and the world size."""
        self.data_position = {str(r): p for r, p in positions.items()}
        self.world_size = len(positions)

    # -- what the loop's parts record
    def count_step(self, skipped: bool) -> None:
        """After an optimizer step: a skipped one counts, and lengthens the run of skipped steps."""
        if not skipped:
            self.bad_streak = 0
            return
        self.skipped_steps += 1
        self.bad_streak += 1

    def saw(self, samples: int, seconds: float) -> None:
        """Samples and audio seconds trained on since the last log, over all ranks."""
        self.samples_seen += samples
        self.audio_seconds_seen += seconds

    def evaluated(self, metrics: dict[str, Any]) -> None:
        self.last_eval = {"step": self.step, **metrics}

    def new_best(self, value: float, step: int | None = None) -> None:
        """best/ now holds the model of ``step`` (this step by default), whose metric is ``value``."""
        self.best_metric, self.best_step = value, self.step if step is None else step

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path) -> TrainState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(Path(path).read_text()).items() if k in known})
