"""The ``mwc`` command: parse -> build -> run, a few lines per subcommand.

    mwc demo-data --out demo_output/data
    mwc shard --source demo_output/data --out shards/demo
    mwc shard --config configs/default.yaml data.max_duration_seconds=20 --job-index 0 --num-jobs 4
    mwc train --config configs/tiny_cpu.yaml
    mwc eval --model runs/tiny/final --data shards/demo --out runs/tiny/eval-test --split test
    mwc eval --config run.yaml --model runs/x/final --out runs/x/eval train.num_beams=5

One configuration system: every subcommand that has config keys reads the same sections a training run does
(``--config`` and ``section.key=value`` overrides), and its flags are overrides of those keys (options.py).

data.py      shard, demo-data
train.py     train, config, demo
evaluate.py  eval, pseudo-label, transcribe
models.py    import-ct2, make-student, export
"""

from __future__ import annotations

import argparse
import sys

from mwc_dist.cli.data import add_demo_data, add_shard
from mwc_dist.cli.evaluate import add_eval, add_pseudo_label, add_transcribe
from mwc_dist.cli.models import add_export, add_import_ct2, add_make_student
from mwc_dist.cli.train import add_config, add_demo, add_train

SUBCOMMANDS = (
    add_shard,
    add_demo_data,
    add_train,
    add_eval,
    add_pseudo_label,
    add_import_ct2,
    add_make_student,
    add_export,
    add_transcribe,
    add_demo,
    add_config,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mwc",
        description="mwc-dist: train Whisper across GPUs and nodes. Data in (demo-data, shard), training, export.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="run `mwc COMMAND --help` for its options"
    )
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mwc_dist.config import ConfigError
    from mwc_dist.data.shard import ShardError
    from mwc_dist.data.sources import SourceError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, SourceError, ShardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
