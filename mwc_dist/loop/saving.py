"""When to checkpoint and what to resume from: the policy of checkpoint.* (checkpoint.py does the writing)."""

from __future__ import annotations

from pathlib import Path

from mwc_dist.checkpoint import TrainState, load_checkpoint, resolve_resume, save_checkpoint
from mwc_dist.config import CheckpointConfig
from mwc_dist.dist import print0


class Checkpointer:
    """save_strategy steps/epoch/no every save_steps, keep_last + best by metric_for_best_model, resume."""

    def __init__(self, c: CheckpointConfig, out_dir: Path, config_yaml: str, accelerator):
        self.c, self.out_dir, self.config_yaml, self.accelerator = c, out_dir, config_yaml, accelerator

    def resume(self, scheduler) -> TrainState:
        """Collective: the state of checkpoint.resume_from_checkpoint (model, optimizer, RNG restored), or a new one."""
        accelerator = self.accelerator
        path = resolve_resume(self.c.resume_from_checkpoint, self.out_dir, log=lambda msg: print0(accelerator, msg))
        if path is None:
            return TrainState(world_size=accelerator.num_processes)
        state = load_checkpoint(accelerator, scheduler, path)
        print0(accelerator, f"resumed from {path} at step {state.step}, epoch {state.epoch}")
        return state

    @property
    def enabled(self) -> bool:
        return self.c.save_strategy != "no"

    def exists(self, step: int) -> bool:
        return (self.out_dir / f"checkpoint-{step}").exists()

    def due(self, state: TrainState, epoch_done: bool) -> bool:
        c = self.c
        by_steps = c.save_strategy == "steps" and state.step % c.save_steps == 0
        by_epochs = c.save_strategy == "epoch" and epoch_done and state.epoch % c.save_steps == 0
        return by_steps or by_epochs

    def save(self, model, processor, scheduler, state: TrainState, metrics: dict | None, force: bool = False) -> None:
        """Collective: every rank writes its optimizer/RNG state; rank 0 the rest. Not after a skipped step."""
        if not self.enabled:
            return
        if state.bad_streak and not force:  # the last step was skipped: keep the newest checkpoint a good one
            print0(
                self.accelerator, f"step {state.step}: checkpoint postponed ({state.bad_streak} skipped steps in a row)"
            )
            return
        c = self.c
        path = save_checkpoint(
            self.accelerator,
            model,
            processor,
            scheduler,
            state,
            self.out_dir,
            self.config_yaml,
            c.keep_last,
            c.greater_is_better,
            (metrics or {}).get(c.metric_for_best_model),
        )
        print0(self.accelerator, f"saved {path}")
