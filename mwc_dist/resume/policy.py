"""When to checkpoint, what to resume from, and the best model: the policy of checkpoint.* (resume/checkpoint.py
writes the files)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mwc_dist.dist import print0
from mwc_dist.resume.checkpoint import BEST_DIR, load_checkpoint, read_best, resolve_resume, save_best, save_checkpoint
from mwc_dist.resume.config import CheckpointConfig
from mwc_dist.resume.state import TrainState


class Checkpointer:
    """save_strategy steps/epoch/no every save_steps, keep_last; best/ by metric_for_best_model; resume."""

    def __init__(self, c: CheckpointConfig, out_dir: Path, config_yaml: str, accelerator):
        self.cfg, self.out_dir, self.config_yaml, self.accelerator = c, out_dir, config_yaml, accelerator

    def resume(self, scheduler) -> TrainState:
        """Collective: the state of checkpoint.resume_from_checkpoint (model, optimizer, RNG restored), or a new one.

        A new run clears a best/ left in the folder by an earlier run; a resumed one keeps best/ (it may be newer
        than the checkpoint: it is still the best model this run evaluated) and takes its value from best.json.
        """
        accelerator = self.accelerator
        path = resolve_resume(self.cfg.resume_from_checkpoint, self.out_dir, log=lambda msg: print0(accelerator, msg))
        if path is None:
            if accelerator.is_main_process:
                shutil.rmtree(self.out_dir / BEST_DIR, ignore_errors=True)
            accelerator.wait_for_everyone()
            return TrainState(world_size=accelerator.num_processes)
        state = load_checkpoint(accelerator, scheduler, path)
        best = read_best(self.out_dir)
        if best is not None:
            state.new_best(best["value"], best["step"])
        print0(accelerator, f"resumed from {path} at step {state.step}, epoch {state.epoch}")
        return state

    @property
    def enabled(self) -> bool:
        return self.cfg.save_strategy != "no"

    def exists(self, step: int) -> bool:
        return (self.out_dir / f"checkpoint-{step}").exists()

    def due(self, state: TrainState, epoch_done: bool) -> bool:
        c = self.cfg
        by_steps = c.save_strategy == "steps" and state.step % c.save_steps == 0
        by_epochs = c.save_strategy == "epoch" and epoch_done and state.epoch % c.save_steps == 0
        return by_steps or by_epochs

    def save(self, model, processor, scheduler, state: TrainState, force: bool = False) -> None:
        """Collective: every rank writes its optimizer/RNG state; rank 0 the rest. Not after a skipped step."""
        if not self.enabled:
            return
        if state.bad_streak and not force:  # the last step was skipped: keep the newest checkpoint a good one
            print0(
                self.accelerator, f"step {state.step}: checkpoint postponed ({state.bad_streak} skipped steps in a row)"
            )
            return
        path = save_checkpoint(
            self.accelerator, model, processor, scheduler, state, self.out_dir, self.config_yaml, self.cfg.keep_last
        )
        print0(self.accelerator, f"saved {path}")

    def keep_best(self, model, processor, state: TrainState, metrics: dict) -> None:
        """Collective: after an evaluation, best/ becomes this model when its metric_for_best_model is better.

        Only with load_best_model_at_end (what reads best/); independent of the save cadence.
        """
        c = self.cfg
        value = metrics.get(c.metric_for_best_model)
        if not c.load_best_model_at_end or value is None or value != value:  # NaN is never best
            return
        best = state.best_metric
        if best is not None and not (value > best if c.greater_is_better else value < best):
            return
        state.new_best(value)
        info = {"step": state.step, "metric": c.metric_for_best_model, "value": value}
        save_best(self.accelerator, model, processor, self.out_dir, info)
        print0(self.accelerator, f"step {state.step}: new best {c.metric_for_best_model} {value:.4f} -> {BEST_DIR}/")
