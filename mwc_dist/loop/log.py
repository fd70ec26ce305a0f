"""Training metrics: what this rank's micro-batches add up to, reduced over ranks every train.log_every_steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from mwc_dist.dist import print0
from mwc_dist.resume.state import TrainState


@dataclass
class SinceLastLog:
    """What this rank's micro-batches added up to since the last log (reduced over ranks when logged)."""

    loss: float = 0.0
    ce: float = 0.0
    kl: float = 0.0
    micro: int = 0
    samples: int = 0
    seconds: float = 0.0
    over: int = 0  # samples whose label is longer than the decoder holds (no loss from them)
    start: float = field(default_factory=time.perf_counter)

    def add(self, batch: dict, loss: torch.Tensor, ce: torch.Tensor, kl: torch.Tensor | None) -> None:
        self.loss += loss.detach().float().item()
        self.ce += ce.detach().float().item()
        self.kl += kl.detach().float().item() if kl is not None else 0.0
        self.micro += 1
        self.samples += len(batch["keys"])
        self.over += batch.get("labels_over_limit", 0)
        self.seconds += batch["seconds"]


class StepLog:
    """Logs loss, LR, gradient norm and throughput (and CE/KL when distilling) to the run's tracker."""

    def __init__(self, accelerator, tracker, stepper, *, log_every_steps: int, max_tokens: int, distilling: bool):
        self.accelerator, self.tracker, self.stepper = accelerator, tracker, stepper
        self.log_every_steps, self.max_tokens, self.distilling = log_every_steps, max_tokens, distilling
        self.window = SinceLastLog()

    def add(self, batch: dict, loss, ce, kl) -> None:
        self.window.add(batch, loss, ce, kl)

    def maybe_log(self, state: TrainState, force: bool = False) -> None:
        """Collective when it logs (losses and counts are reduced over ranks)."""
        w = self.window
        if (not force and state.step % self.log_every_steps != 0) or w.micro == 0:
            return
        totals = torch.tensor(
            [w.loss, w.micro, w.samples, w.seconds, w.ce, w.kl, w.over],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        loss, micro, samples, seconds, ce, kl, over = self.accelerator.reduce(totals, reduction="sum").tolist()
        elapsed = time.perf_counter() - w.start
        state.saw(int(samples), seconds)
        grad_norm = self.stepper.grad_norm
        metrics = {
            "loss": loss / micro,
            "lr": self.stepper.scheduler.get_last_lr()[0],
            "epoch": state.epoch,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "samples_per_s": samples / elapsed,
            "audio_s_per_s": seconds / elapsed,
            "samples_seen": state.samples_seen,
            "skipped_steps": state.skipped_steps,
        }
        if over > 0:  # labels longer than the decoder holds: trained on their audio with no loss, counted
            metrics["labels_over_limit"] = int(over)
            print0(
                self.accelerator,
                f"step {state.step}: {int(over)} sample(s) with a label over "
                f"{self.max_tokens} tokens ignored (re-shard: mwc shard quarantines them)",
            )
        if self.distilling:
            metrics |= {"ce": ce / micro, "kl": kl / micro}
        self.tracker.log(metrics, step=state.step)
        self.window = SinceLastLog()
