"""Evaluation during training: every train.eval_steps optimizer steps (0: at each epoch's end, -1: never)."""

from __future__ import annotations

import json
from pathlib import Path

from mwc_dist.data.config import DataConfig
from mwc_dist.data.stream import ShardSet, load_shard_set
from mwc_dist.dist import print0
from mwc_dist.evaluate import evaluate
from mwc_dist.loop.config import TrainConfig
from mwc_dist.resume.state import TrainState


def load_eval_shards(data_cfg: DataConfig, eval_steps: int, accelerator) -> ShardSet | None:
    """data.eval_split's shards, or None (and a message) when there are none or evaluation is off."""
    if eval_steps < 0:
        return None
    try:
        return load_shard_set(data_cfg, data_cfg.eval_split)
    except ValueError as exc:
        print0(accelerator, f"no evaluation: {exc}")
        return None


class PeriodicEval:
    """Generates on the eval split (collective), scores on rank 0, logs eval/* and a predictions table."""

    def __init__(self, t: TrainConfig, shards: ShardSet | None, out_dir: Path, language: str | None, task: str):
        self.train_cfg, self.shards, self.out_dir, self.language, self.task = t, shards, out_dir, language, task

    def due(self, step: int, epoch_done: bool) -> bool:
        every = self.train_cfg.eval_steps
        return self.shards is not None and ((every > 0 and step % every == 0) or (every == 0 and epoch_done))

    def run(self, accelerator, model, processor, tracker, state: TrainState) -> dict | None:
        """Collective: all ranks generate for their share of the eval set; None without eval shards."""
        if self.shards is None:
            return None
        out_dir = self.out_dir / "eval" / f"step-{state.step}"
        metrics = evaluate(
            accelerator,
            model,
            processor,
            self.shards,
            language=self.language,
            task=self.task,
            batch_size=self.train_cfg.per_device_eval_batch_size,
            max_length=self.train_cfg.generation_max_length,
            num_beams=self.train_cfg.num_beams,
            out_dir=out_dir,
            limit=self.train_cfg.eval_max_samples,
            step=state.step,
            with_loss=True,  # the validation loss beside WER (one more forward per batch)
        )
        state.evaluated(metrics)
        tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.step)
        if accelerator.is_main_process:
            rows = (out_dir / "predictions.jsonl").read_text().splitlines()
            tracker.log_predictions([json.loads(r) for r in rows], step=state.step)
        print0(
            accelerator,
            f"step {state.step}: eval loss {metrics['loss'] or float('nan'):.4f} WER {metrics['wer']:.4f} "
            f"CER {metrics['cer']:.4f} BLEU {metrics['bleu']:.2f} chrF {metrics['chrf']:.2f} "
            f"({metrics['num_samples']} samples)",
        )
        return metrics
