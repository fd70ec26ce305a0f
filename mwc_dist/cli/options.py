"""What every subcommand's options share: ``--config`` and dotted overrides, and flags that are overrides of config
keys (one configuration system: ``mwc eval --batch-size 4`` and ``mwc eval train.per_device_eval_batch_size=4`` set
the same key, and a ``--config`` file sets it too).

Precedence: the section's default -> ``--config`` -> dotted overrides -> the flag.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, get_args, get_type_hints

OVERRIDES_HELP = (
    "dotted config overrides applied after --config, e.g. data.max_duration_seconds=20 "
    "data.train_split_ratio=0.8 data.validation_split_ratio=0.2 (`mwc config` prints every key)"
)


def _key_type(key: str) -> tuple[type, Any]:
    """(the type, the default) of the config key ``section.name``; a KeyError names a key that does not exist."""
    from mwc_dist.config import Config

    section_name, name = key.split(".")
    section = getattr(Config(), section_name)
    annotation = get_type_hints(type(section))[name]
    inner = [a for a in get_args(annotation) if a is not type(None)]
    return (inner[0] if inner else annotation), getattr(section, name)


def key_flag(parser: argparse.ArgumentParser, flag: str, key: str, help: str, **kwargs) -> None:
    """``flag`` as an override of the config key ``key``: unset, the key keeps its value (default or --config)."""
    kind, default = _key_type(key)
    if kind is bool:
        kwargs.setdefault("action", "store_true")
    else:
        kwargs.setdefault("type", kind)
        if "choices" not in kwargs:
            kwargs.setdefault("metavar", flag.lstrip("-").upper().replace("-", "_"))
    shown = "none" if default is None else default
    parser.add_argument(flag, dest=key, default=None, help=f"{help} [{key}; default {shown}]", **kwargs)


def add_config_options(parser: argparse.ArgumentParser, section_note: str) -> None:
    """``--config FILE`` and the trailing ``section.key=value`` overrides."""
    parser.add_argument(
        "--config", help=f"YAML config (native keys or the seed's training_config.yaml); {section_note}"
    )
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)


def keyed_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the command line's flags set (key_flag's), as overrides."""
    return {key: value for key, value in vars(args).items() if "." in key and value is not None}


def load_config(args: argparse.Namespace):
    """The config of this command line: defaults -> --config -> dotted overrides -> keyed flags; notes printed."""
    from mwc_dist.config import load_config as load
    from mwc_dist.config import parse_overrides

    overrides = parse_overrides(list(getattr(args, "overrides", None) or []))
    overrides.update(keyed_flags(args))
    cfg = load(getattr(args, "config", None), overrides)
    for note in cfg.notes:
        print(f"note: {note}", file=sys.stderr)
    return cfg
