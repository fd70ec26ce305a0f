"""One optimizer step over an accumulation window, on every rank alike, or a skipped one, and why.

A non-finite loss on any rank skips the whole optimizer step on every rank (the check is a collective);
non-finite gradients (an fp16 overflow) skip the update too, so weights stay finite. Under DeepSpeed the
engine steps inside ``backward`` and cannot be told to skip; what it does on its own is discard the whole
accumulation window when its gradients are not finite. So a bad micro-batch is still backpropagated there,
as NaN on every rank, and the engine's own skip is checked and counted. ``BadSteps`` stops a run after
``train.max_bad_steps`` skipped steps in a row.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import torch

from mwc_dist.dist import print0
from mwc_dist.loop.config import TrainConfig
from mwc_dist.resume.checkpoint import list_checkpoints
from mwc_dist.resume.state import TrainState


class SkipReason(str, Enum):
    """Why an optimizer step was skipped (its value is what the logs say)."""

    NONFINITE_LOSS = "non-finite loss"
    NONFINITE_GRADS = "non-finite gradients"
    FP16_OVERFLOW = "fp16 overflow"


class TrainingDiverged(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradients."""


def build_optimizer(t: TrainConfig, model, total_steps: int):
    """(AdamW over the trainable parameters, the train.lr_scheduler_type schedule over ``total_steps``).

    train.fused_optimizer: torch's fused AdamW (one kernel for all parameters; on this CPU 7x faster than the
    default per-parameter loop for whisper-tiny's 38 M parameters), where torch has it for these parameters."""
    from transformers import get_scheduler

    optimizer = _adamw([p for p in model.parameters() if p.requires_grad], t)
    scheduler = get_scheduler(
        t.lr_scheduler_type, optimizer, num_warmup_steps=t.warmup_steps, num_training_steps=total_steps
    )
    return optimizer, scheduler


def _adamw(params: list, t: TrainConfig) -> torch.optim.AdamW:
    settings = {"lr": t.learning_rate, "weight_decay": t.weight_decay}
    if t.fused_optimizer:
        try:
            return torch.optim.AdamW(params, fused=True, **settings)
        except RuntimeError:  # no fused kernel for these parameters' device or dtype: the plain one
            pass
    return torch.optim.AdamW(params, **settings)


class OptimizerStep:
    """backward() for every micro-batch, step() at the accumulation boundary; the scheduler only after real updates.

    The LR scheduler is stepped here once per optimizer step (accelerate's prepared scheduler would step
    world_size times).
    """

    def __init__(self, accelerator, model, optimizer, scheduler, max_grad_norm: float):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.max_grad_norm = max_grad_norm
        self.engine_steps_in_backward = accelerator.state.deepspeed_plugin is not None
        self.window_problem: SkipReason | None = None  # the first problem met in this accumulation window
        self.grad_norm = None  # of the last step that clipped

    def all_ranks_finite(self, loss: torch.Tensor) -> bool:
        """Collective: whether the loss is finite on every rank (so that all ranks skip the same steps)."""
        flag = torch.isfinite(loss.detach()).float().reshape(1)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() == self.accelerator.num_processes)

    def backward(self, loss: torch.Tensor) -> bool:
        """Collective: backpropagate a loss that is finite on every rank; returns whether it was."""
        loss_ok = self.all_ranks_finite(loss)
        if loss_ok:
            self.accelerator.backward(loss)
            return True
        self.window_problem = self.window_problem or SkipReason.NONFINITE_LOSS
        if self.engine_steps_in_backward:
            self.accelerator.backward(loss * float("nan"))  # NaN gradients on every rank: the engine drops the window
        return False

    def step(self) -> SkipReason | None:
        """At the accumulation boundary: update (None), or the reason the update was skipped."""
        skipped = self._check_engine_step() if self.engine_steps_in_backward else self._optimizer_step()
        self.window_problem = None
        return skipped

    def _optimizer_step(self) -> SkipReason | None:
        """DDP / one process: clip, then step unless this window was bad."""
        skipped = self.window_problem
        if skipped is None:
            self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            if self.grad_norm is not None and not torch.isfinite(torch.as_tensor(self.grad_norm)).item():
                skipped = SkipReason.NONFINITE_GRADS
        # with fp16's grad scaler, step() must run even on inf gradients: the scaler skips the update itself
        # and lowers its scale (never calling it would keep the scale, and the overflow, forever)
        if skipped is None or (skipped is SkipReason.NONFINITE_GRADS and self.accelerator.scaler is not None):
            self.optimizer.step()
            if self.accelerator.optimizer_step_was_skipped:  # fp16: the grad scaler found inf and lowered its scale
                skipped = SkipReason.FP16_OVERFLOW
            elif skipped is None:
                self.scheduler.step()
        return skipped

    def _check_engine_step(self) -> SkipReason | None:
        """DeepSpeed: the engine has already stepped, or skipped a window with non-finite gradients. Which one?"""
        engine_skipped = self.accelerator.optimizer_step_was_skipped  # the engine's own overflow flag
        self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        skipped = self.window_problem or (SkipReason.NONFINITE_GRADS if engine_skipped else None)
        if skipped is not None and not engine_skipped:
            raise RuntimeError(
                f"DeepSpeed applied an update although this accumulation window had a {skipped.value}; "
                f"this DeepSpeed version does not skip non-finite gradients"
            )
        if skipped is None:
            self.scheduler.step()
        return skipped


class BadSteps:
    """Counts skipped optimizer steps in TrainState; ``train.max_bad_steps`` in a row stop the run."""

    def __init__(self, max_bad_steps: int, out_dir: Path, accelerator, tracker):
        self.limit, self.out_dir, self.accelerator, self.tracker = max_bad_steps, out_dir, accelerator, tracker

    def count(self, state: TrainState, skipped: SkipReason | None) -> None:
        """After an optimizer step: count a skipped one; too many in a row raise TrainingDiverged (no checkpoint)."""
        state.count_step(skipped is not None)
        if skipped is None:
            return
        print0(
            self.accelerator,
            f"step {state.step}: skipped ({skipped.value}); {state.bad_streak} in a row, {state.skipped_steps} in all",
        )
        self.tracker.log({"skipped_steps": state.skipped_steps, "bad_streak": state.bad_streak}, step=state.step)
        if state.bad_streak >= self.limit:
            good = list_checkpoints(self.out_dir)
            last = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was written"
            raise TrainingDiverged(
                f"stopped at step {state.step}: {self.limit} optimizer steps in a row were skipped ({skipped.value}; "
                f"train.max_bad_steps={self.limit}); {last}. Lower train.learning_rate or raise train.warmup_steps, "
                f"prefer bf16 to fp16, check the data, then resume with checkpoint.resume_from_checkpoint=latest"
            )
