"""Atomic checkpoints: save, rotate (last K + best), find the latest complete one, resume.

A checkpoint folder ``<output_dir>/checkpoint-<step>/`` holds:

    model/                 a loadable HF folder: safetensors weights (or the LoRA adapter), configs, processor
    state/                 accelerate.save_state: optimizer, scheduler, grad scaler, RNG of every rank
    trainer_state.json     TrainState: step, epoch, position in the epoch's data of every rank, best metric
    config.yaml            the run's resolved config

Every rank writes its own part into ``.tmp-checkpoint-<step>`` (collective); after a barrier the main
process writes ``trainer_state.json`` last and renames the folder into place, so a folder named
``checkpoint-*`` is always complete. A crash mid-write leaves only a ``.tmp-*`` folder, removed next time.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mwc_dist.models.lora import check_adapter, is_peft

STATE_FILE = "trainer_state.json"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch in progress
    epoch_step: int = 0  # optimizer steps taken in that epoch
    samples_seen: int = 0  # over all ranks
    audio_seconds_seen: float = 0.0
    data_position: dict[str, int] = field(default_factory=dict)  # rank -> loader items taken this epoch
    world_size: int = 1
    best_metric: float | None = None
    best_checkpoint: str | None = None
    last_eval: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path) -> "TrainState":
        return cls(**json.loads(Path(path).read_text()))


def is_complete(path: Path) -> bool:
    return path.is_dir() and (path / STATE_FILE).is_file() and (path / "model").is_dir()


def list_checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and is_complete(p)]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_resume(spec: str | None, output_dir: Path) -> Path | None:
    """``None``/``""`` -> no resume; ``latest`` -> newest complete checkpoint (or None); else that folder."""
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(spec)
    if not is_complete(path):
        raise ValueError(f"checkpoint.resume_from_checkpoint: {path} is not a complete checkpoint "
                         f"(needs {STATE_FILE} and model/); use 'latest' or another checkpoint-* folder")
    return path


def save_checkpoint(accelerator, model, processor, state: TrainState, output_dir: Path, config_yaml: str,
                    keep_last: int, greater_is_better: bool, metric: float | None = None) -> Path:
    """Collective: every rank calls it. Returns the checkpoint folder."""
    from accelerate.utils import gather_object

    is_main = accelerator.is_main_process
    final = Path(output_dir) / f"checkpoint-{state.step}"
    tmp = Path(output_dir) / f".tmp-checkpoint-{state.step}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"), safe_serialization=True)  # collective; per-rank RNG files
    state_dict = accelerator.get_state_dict(model)  # collective under ZeRO-3
    positions = gather_object([(accelerator.process_index, state.data_position.get(str(accelerator.process_index), 0))])
    if is_main:
        state.data_position = {str(r): p for r, p in positions}
        state.world_size = accelerator.num_processes
        if metric is not None and _better(metric, state.best_metric, greater_is_better):
            state.best_metric, state.best_checkpoint = metric, final.name
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(tmp / "model", state_dict=state_dict, safe_serialization=True)
        if is_peft(unwrapped):  # an adapter folder: never let an empty one pass as a checkpoint
            check_adapter(tmp / "model")
        processor.save_pretrained(tmp / "model")
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / STATE_FILE).write_text(state.to_json())  # last: marks the folder complete
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        rotate(Path(output_dir), keep_last, state.best_checkpoint)
    accelerator.wait_for_everyone()
    return final


def _better(value: float, best: float | None, greater_is_better: bool) -> bool:
    return best is None or (value > best if greater_is_better else value < best)


def rotate(output_dir: Path, keep_last: int, best: str | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and the best one; clear stale temp folders."""
    found = list_checkpoints(output_dir)
    for path in found[: max(0, len(found) - keep_last)]:
        if path.name != best:
            shutil.rmtree(path)
    for stale in output_dir.glob(".tmp-checkpoint-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(accelerator, path: Path) -> TrainState:
    """Collective: restores model, optimizer, scheduler, scaler and RNG; returns the TrainState."""
    accelerator.load_state(str(Path(path) / "state"))
    return TrainState.from_file(Path(path) / STATE_FILE)
