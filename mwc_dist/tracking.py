"""Metrics out: metrics.jsonl always, TensorBoard and W&B when configured; rank 0 only.

``build_tracker`` returns a real tracker on the main process and a do-nothing one elsewhere, so the
training loop never branches to log. TensorBoard/W&B go through accelerate's trackers (configured in
``dist.build_accelerator`` from ``tracking.report_to``); ``WANDB_MODE=offline`` works with no network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb")  # accelerate trackers tracking.report_to may name
SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey", "credential")


@dataclass
class TrackingConfig:
    """Where metrics go besides the always-on metrics.jsonl (rank 0 only)."""

    report_to: list[str] = field(default_factory=list)  # tensorboard, wandb
    project: str = "mwc-dist"  # the W&B project (and TensorBoard's run folder name)
    run_name: str | None = None  # the W&B run name; null: its own
    entity: str | None = None  # the W&B team or user
    tags: list[str] = field(default_factory=list)  # W&B run tags
    group: str | None = None  # the W&B run group (e.g. one per sweep)

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key."""
        unknown = [r for r in self.report_to if r not in TRACKERS]
        if unknown:
            problems.append(f"tracking.report_to: unknown {unknown}; choose from {', '.join(TRACKERS)}")


class NullTracker:
    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def log_predictions(self, rows: list[dict], step: int, limit: int = 32) -> None:
        pass

    def finish(self) -> None:
        pass


class Tracker(NullTracker):
    def __init__(self, accelerator, run_dir: Path, tracking, run_config: dict[str, Any]):
        self.accelerator = accelerator
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")
        if tracking.report_to:
            wandb_args = {
                "name": tracking.run_name,
                "entity": tracking.entity,
                "tags": tracking.tags or None,
                "group": tracking.group,
                "dir": str(Path(run_dir).resolve()),
            }  # wandb/ inside the run folder
            init = {"wandb": {k: v for k, v in wandb_args.items() if v}}
            accelerator.init_trackers(tracking.project, config=_flat_config(run_config), init_kwargs=init)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        self.file.flush()
        if self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_predictions(self, rows: list[dict], step: int, limit: int = 32) -> None:
        """A table of sample predictions vs references (W&B), each evaluation."""
        if "wandb" not in [t.name for t in self.accelerator.trackers]:
            return
        import wandb

        table = wandb.Table(
            columns=["key", "reference", "prediction"],
            data=[[r["key"], r["reference"], r["prediction"]] for r in rows[:limit]],
        )
        self.accelerator.get_tracker("wandb", unwrap=True).log({"eval/predictions": table}, step=step)

    def finish(self) -> None:
        self.file.close()
        plot_curves(self.path, self.path.with_name("training_curves.png"))
        if self.accelerator.trackers:
            self.accelerator.end_training()


def _flat_config(run_config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config (``Config.to_dict()``) for trackers; anything that looks like a secret is redacted."""
    out = {}
    for section, body in run_config.items():
        for key, value in body.items():
            if any(word in key.lower() for word in SECRET_WORDS):
                value = "<redacted>"
            out[f"{section}.{key}"] = (
                value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
            )
    return out


def plot_curves(metrics_path: Path, png_path: Path) -> Path | None:
    """PNG of training loss and learning rate, and of evaluation WER/CER, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval/wer" in r]
    if not train:
        return None
    fig, axes = plt.subplots(1, 3 if evals else 2, figsize=(15 if evals else 10, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="loss")
    if any("kl" in r for r in train):
        axes[0].plot([r["step"] for r in train], [r.get("ce") for r in train], label="cross-entropy")
        axes[0].plot([r["step"] for r in train], [r.get("kl") for r in train], label="KL to teacher")
    axes[0].set(title="training loss", xlabel="step")
    axes[0].legend()
    axes[1].plot([r["step"] for r in train], [r["lr"] for r in train])
    axes[1].set(title="learning rate", xlabel="step")
    if evals:
        for key in ("wer", "cer"):
            axes[2].plot([r["step"] for r in evals], [r[f"eval/{key}"] for r in evals], marker="o", label=key.upper())
        axes[2].set(title="evaluation (normalised)", xlabel="step")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def build_tracker(accelerator, run_dir: Path, tracking, run_config: dict[str, Any]) -> NullTracker:
    """Rank 0 tracks (``tracking`` section; ``run_config`` is what it records as the run's config)."""
    return Tracker(accelerator, run_dir, tracking, run_config) if accelerator.is_main_process else NullTracker()
