"""Preemption: SLURM's --signal=USR1@120 (or a SIGTERM before a kill) -> checkpoint at the next step -> requeue."""

from __future__ import annotations

import os
import signal
import subprocess

import torch


class Preemption:
    """Installs the signal handlers; ``requested()`` is a collective so every rank stops at the same step."""

    def __init__(self, requeue_on_preemption: bool):
        self.requeue_on_preemption = requeue_on_preemption
        self.signal: str | None = None
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name  # acted on at the next step boundary

    def requested(self, accelerator) -> bool:
        """Collective: true on every rank as soon as any rank got SIGUSR1/SIGTERM."""
        flag = torch.tensor([1.0 if self.signal else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    def requeue(self, step: int) -> bool:
        """Rank 0, after the checkpoint: ``scontrol requeue`` under SLURM (train.requeue_on_preemption)."""
        job = os.environ.get("SLURM_JOB_ID")
        if not (job and self.requeue_on_preemption):
            print(f"preempted ({self.signal}) at step {step}: checkpoint saved", flush=True)
            return False
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        requeued = result.returncode == 0
        print(
            f"preempted ({self.signal}) at step {step}: checkpoint saved; scontrol requeue {job}: "
            f"{'ok' if requeued else result.stderr.strip()}",
            flush=True,
        )
        return requeued
