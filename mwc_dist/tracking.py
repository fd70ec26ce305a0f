"""Metrics out: metrics.jsonl always, TensorBoard and W&B when configured; rank 0 only.

``build_tracker`` returns a real tracker on the main process and a do-nothing one elsewhere, so the
training loop never branches to log. TensorBoard/W&B go through accelerate's trackers (configured in
``dist.build_accelerator`` from ``tracking.report_to``); ``WANDB_MODE=offline`` works with no network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class NullTracker:
    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


class Tracker(NullTracker):
    def __init__(self, accelerator, run_dir: Path, cfg):
        self.accelerator = accelerator
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")
        if cfg.tracking.report_to:
            init = {"wandb": {k: v for k, v in {"name": cfg.tracking.run_name, "entity": cfg.tracking.entity,
                                                   "tags": cfg.tracking.tags or None, "group": cfg.tracking.group}.items() if v}}
            accelerator.init_trackers(cfg.tracking.project, config=_flat_config(cfg), init_kwargs=init)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        self.file.flush()
        if self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def finish(self) -> None:
        self.file.close()
        if self.accelerator.trackers:
            self.accelerator.end_training()


def _flat_config(cfg) -> dict[str, Any]:
    out = {}
    for section, body in cfg.to_dict().items():
        for key, value in body.items():
            out[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


def build_tracker(accelerator, run_dir: Path, cfg) -> NullTracker:
    return Tracker(accelerator, run_dir, cfg) if accelerator.is_main_process else NullTracker()
