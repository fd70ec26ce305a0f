"""``mwc train`` (one process; many: ``accelerate launch -m mwc_dist.train``), ``mwc config`` and ``mwc demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mwc_dist.cli.options import OVERRIDES_HELP, load_config


def cmd_train(args: argparse.Namespace) -> int:
    from mwc_dist.train import run

    return run(load_config(args))  # the same exit statuses as `accelerate launch -m mwc_dist.train`


def cmd_config(args: argparse.Namespace) -> int:
    from mwc_dist.config_docs import describe

    print(describe(args.sections), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mwc_dist.demo.pipeline import Demo

    Demo(Path(args.out), references=args.references).run()
    return 0


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train on shards in this process (for many processes: accelerate launch -m mwc_dist.train)",
        description="Train Whisper on WebDataset shards with the Accelerate loop. For several processes or GPUs use "
        "`accelerate launch -m mwc_dist.train --config FILE` or launch/train.sh.",
    )
    p.add_argument("--config", help="YAML config (native keys or the seed's training_config.yaml)")
    p.add_argument(
        "overrides", nargs="*", help=OVERRIDES_HELP.replace("data.max_duration_seconds=20", "train.max_steps=100")
    )
    p.set_defaults(fn=cmd_train)


def add_config(sub) -> None:
    p = sub.add_parser(
        "config",
        help="every config key with its default and what it does (a YAML file you can start a run.yaml from)",
        description="Print the config sections (data, model, train, checkpoint, export, augment, tracking) as YAML: "
        "each key at its default, its documentation beside it. Any key can be set in a --config YAML, as a "
        "dotted override (train.learning_rate=1e-4), or by the subcommand flag that names it in its help.",
    )
    p.add_argument("sections", nargs="*", help="sections to print (default: all)")
    p.set_defaults(fn=cmd_config)


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole product end to end on espeak-ng Spanish and real whisper-base (what `make demo` runs)",
        description="Speech corpus -> shards -> import whisper-base -> QLoRA fine-tune (2 processes) -> distilled "
        "student (fewer decoder layers) -> evaluation -> exports with parity -> OUT/REPORT.md. Finished steps are "
        "reused.",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument(
        "--references",
        action="store_true",
        help="distil the student on the references instead of the teacher's pseudo-labels (no labelling step)",
    )
    p.set_defaults(fn=cmd_demo)
