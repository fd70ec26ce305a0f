"""What the tests' small real training runs share: the base overrides, the environment, an in-process Trainer.

Importable from any test module (pytest puts tests/ on sys.path for tests/conftest.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"
HARNESS = ROOT / "tests" / "reliability" / "harness.py"  # the real entry point with one fault injected
# `accelerate launch` options for 2 CPU processes (with ACCELERATE_USE_CPU=true; docs/DISTRIBUTED.md)
CPU_2PROC = [
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def run_args(shards: Path, out: Path, *extra: str) -> list[str]:
    """tiny-random on ``shards``, Spanish, one loader worker, a log row every step; ``extra`` adds or overrides."""
    return [
        f"data.shard_dir={shards}",
        f"train.output_dir={out}",
        "model.base_model=tiny-random",
        "model.language=es",
        "data.num_workers=1",
        "train.log_every_steps=1",
        *extra,
    ]


def run_env(**extra: str) -> dict:
    """The environment of a training subprocess: one thread per process, the checkout importable."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)


def trainer(shards: Path, out: Path, *extra: str):
    """A set-up in-process Trainer (one process) of ``run_args``."""
    from mwc_dist.config import load_config
    from mwc_dist.train import Trainer

    t = Trainer(load_config(None, run_args(shards, out, *extra)))
    t.setup()
    return t


def tiny_model_30s(folder: Path, seed: int):
    """(folder, model): tiny-random widened to OpenAI's 30-s window (1500 encoder positions), saved with its
    processor; what a test needs where the seed's 30-s clips or a 30-s teacher are the point."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from mwc_dist.models.build import materialize_preset
    from mwc_dist.models.student import with_window

    preset = materialize_preset("tiny-random", seed=seed)
    small = WhisperForConditionalGeneration.from_pretrained(preset)
    torch.manual_seed(seed)
    wide = WhisperForConditionalGeneration(
        type(small.config)(**{**small.config.to_dict(), "max_source_positions": 1500})
    )
    wide.generation_config = small.generation_config
    wide.save_pretrained(folder, safe_serialization=True)
    with_window(WhisperProcessor.from_pretrained(preset), 30).save_pretrained(folder)
    return folder, wide
