"""The ``checkpoint:`` section: when checkpoints are written, how many are kept, what is resumed from and what
best/ is judged by (resume/policy.py), checked by ``CheckpointConfig.validate``."""

from __future__ import annotations

from dataclasses import dataclass

SAVE_STRATEGIES = ("epoch", "steps", "no")
# what an evaluation reports (evaluate.py: metrics.compute_metrics + the label loss), lower or higher is better
BEST_METRICS = ("wer", "cer", "bleu", "chrf", "loss", "raw_wer", "raw_cer", "insertion_rate", "loop_rate")


@dataclass
class CheckpointConfig:
    """When checkpoints are written, how many are kept, and what to resume from."""

    save_strategy: str = "epoch"  # epoch | steps | no
    save_steps: int = 1  # every N epochs (save_strategy=epoch) or steps (save_strategy=steps)
    keep_last: int = 3  # checkpoints kept (older ones removed; best/ is separate)
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    load_best_model_at_end: bool = True  # keep best/ (each better evaluation) and make it final/
    metric_for_best_model: str = "wer"  # what best/ is judged by: wer | cer | bleu | chrf | loss | ...
    greater_is_better: bool = False  # true for bleu/chrf

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key."""
        if self.save_strategy not in SAVE_STRATEGIES:
            problems.append(f"checkpoint.save_strategy: must be epoch, steps or no; got {self.save_strategy!r}")
        if self.metric_for_best_model not in BEST_METRICS:
            problems.append(
                f"checkpoint.metric_for_best_model: one of {', '.join(BEST_METRICS)} (what an evaluation reports); "
                f"got {self.metric_for_best_model!r}"
            )
