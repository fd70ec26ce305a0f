"""The whole configuration: the sections put together, YAML files, dotted overrides, the seed mapping.

Each section is defined, documented field by field and validated by the component that reads it:

    data:        mwc_dist/data/config.py       DataConfig        (sources, shards, the training stream)
    model:       mwc_dist/models/config.py     ModelConfig       (which Whisper, distillation, QLoRA/LoRA)
    train:       mwc_dist/loop/config.py       TrainConfig       (the training loop)
    checkpoint:  mwc_dist/resume/config.py     CheckpointConfig  (saving, resuming, best/)
    export:      mwc_dist/export.py            ExportConfig      (the exports at the end of training)
    augment:     mwc_dist/audio/augment.py     AugmentConfig     (speed and noise on the loader)
    tracking:    mwc_dist/tracking.py          TrackingConfig    (TensorBoard, W&B)

Precedence: dataclass defaults -> YAML file -> dotted overrides (``data.max_duration_seconds=20``) -> the
subcommands' flags, which are overrides of the same keys (``mwc eval --batch-size 4`` sets
train.per_device_eval_batch_size; `mwc COMMAND --help` names the key of each). Each component receives only its own
section (``build_source(cfg.data)``), never the whole config.

The seed project's ``config/training_config.yaml`` keeps working: its keys are translated by the one
table ``SEED_KEYS`` below. A seed key that has no effect in mwc-dist is reported by name in
``Config.notes`` (and printed by the CLI), never silently dropped. Unknown keys are errors that name
the key and suggest the closest valid one; all problems are reported together in one ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from mwc_dist.audio.augment import AugmentConfig
from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.data.config import DataConfig
from mwc_dist.export import ExportConfig
from mwc_dist.loop.config import TrainConfig
from mwc_dist.models.config import ModelConfig
from mwc_dist.resume.config import CheckpointConfig
from mwc_dist.tracking import TrackingConfig

__all__ = [
    "AugmentConfig",
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ExportConfig",
    "ModelConfig",
    "TrackingConfig",
    "TrainConfig",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message lists every problem found."""


# ----------------------------------------------------------------------------------------- sections
@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    notes: list[str] = field(default_factory=list, metadata={"internal": True})

    @classmethod
    def section_names(cls) -> list[str]:
        """data, model, train, checkpoint, export, augment, tracking: the sections a YAML file may have."""
        return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("notes")
        return out


# ------------------------------------------------------------------------------------- seed mapping
def _no_effect(reason: str) -> tuple[None, str]:
    return (None, reason)


def _fp16_to_mixed_precision(value: Any) -> str:
    return "fp16" if value else "no"


def _use_hf_to_source_type(value: Any) -> str:
    return "huggingface" if value else "auto"


def _check_16k(value: Any) -> Any:
    if int(value) != SAMPLE_RATE:
        raise ValueError(
            f"Whisper models take {SAMPLE_RATE} Hz audio; got {value}. Remove the key or set {SAMPLE_RATE}."
        )
    return value


# seed key (dotted) -> native key (dotted), or (native key, value transform), or (None, why no effect).
# Every key shown in the seed's README is here or is already a native key; tests check both.
SEED_KEYS: dict[str, Any] = {
    "data.audio_path": "data.source",
    "data.use_huggingface": ("data.source_type", _use_hf_to_source_type),
    "data.huggingface_dataset": "data.source",
    "data.huggingface_split": "data.hf_split",
    "data.supported_formats": "data.formats",
    "data.target_sample_rate": _no_effect(f"Whisper fixes the sample rate at {SAMPLE_RATE} Hz"),
    "training.num_epochs": "train.num_epochs",
    "training.per_device_train_batch_size": "train.per_device_train_batch_size",
    "training.gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "training.learning_rate": "train.learning_rate",
    "training.warmup_steps": "train.warmup_steps",
    "training.lr_scheduler_type": "train.lr_scheduler_type",
    "training.fp16": ("train.mixed_precision", _fp16_to_mixed_precision),
    "training.gradient_checkpointing": "train.gradient_checkpointing",
    "training.eval_steps": "train.eval_steps",
    "training.num_workers": "data.num_workers",
    "training.save_strategy": "checkpoint.save_strategy",
    "training.save_steps": "checkpoint.save_steps",
    "training.load_best_model_at_end": "checkpoint.load_best_model_at_end",
    "training.metric_for_best_model": "checkpoint.metric_for_best_model",
    "training.greater_is_better": "checkpoint.greater_is_better",
    "checkpoints.resume_from_checkpoint": "checkpoint.resume_from_checkpoint",
}
# Checks applied to a seed value before it is mapped (a no-effect key must still be harmless).
SEED_VALUE_CHECKS: dict[str, Callable[[Any], Any]] = {"data.target_sample_rate": _check_16k}

# When the seed names both a folder and a hub dataset, the one `use_huggingface` selects wins.
_SEED_SOURCE_PRIORITY = ("data.huggingface_dataset", "data.audio_path")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _translate_seed(flat: dict[str, Any], problems: list[str], notes: list[str]) -> dict[str, Any]:
    """Rewrite seed keys into native ones through SEED_KEYS; collect no-effect notes."""
    out = {k: v for k, v in flat.items() if k not in SEED_KEYS}
    use_hf = bool(flat.get("data.use_huggingface", False))
    for seed_key, target in SEED_KEYS.items():
        if seed_key not in flat:
            continue
        value = flat[seed_key]
        try:
            if seed_key in SEED_VALUE_CHECKS:
                value = SEED_VALUE_CHECKS[seed_key](value)
            if isinstance(target, tuple) and target[0] is None:
                notes.append(f"seed key '{seed_key}' has no effect in mwc-dist: {target[1]}")
                continue
            native, transform = target if isinstance(target, tuple) else (target, None)
            if native == "data.source" and seed_key in _SEED_SOURCE_PRIORITY:
                wanted = "data.huggingface_dataset" if use_hf else "data.audio_path"
                if seed_key != wanted and wanted in flat:
                    notes.append(f"seed key '{seed_key}' is not used: data.use_huggingface={use_hf} selects '{wanted}'")
                    continue
            if native in out and native in flat and seed_key != native:
                problems.append(f"'{seed_key}' and '{native}' both set the same thing; keep one")
                continue
            out[native] = transform(value) if transform else value
        except (TypeError, ValueError) as exc:
            problems.append(f"{seed_key}: {exc}")
    return out


# -------------------------------------------------------------------------------------- validation
def _section_fields(cfg: Config) -> dict[str, dict[str, dataclasses.Field]]:
    return {name: {sf.name: sf for sf in dataclasses.fields(getattr(cfg, name))} for name in cfg.section_names()}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Coerce a YAML/CLI value to the field's type, or raise ValueError naming the key."""
    origin, args = get_origin(annotation), get_args(annotation)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(f"{key}: must not be null")
    if args and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare `no` (save_strategy: no) as false
            return "no" if value is False else "true"
        if isinstance(value, (dict, list)):
            raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
        return str(value)
    return value


def _validate(cfg: Config, problems: list[str]) -> None:
    """Each section checks itself (beside the code that defines its valid values); then what spans sections."""
    for name in cfg.section_names():
        getattr(cfg, name).validate(problems)
    if (cfg.data.resampled or cfg.data.mix_shard_dirs) and cfg.train.max_steps <= 0:
        problems.append("data.resampled / data.mix_shard_dirs: an endless stream has no epochs; set train.max_steps")
    if cfg.model.use_distillation and cfg.model.distillation_source == "shards":
        d = cfg.data
        if (
            d.text_field != "teacher_text"
            or d.timestamp_probability
            or d.condition_on_prev_probability
            or d.pack_to_window
        ):
            problems.append(
                "model.distillation_source=shards: the stored top-k belong to the teacher's own label sequence; train "
                "with data.text_field=teacher_text, data.timestamp_probability=0, data.condition_on_prev_probability=0 "
                "and data.pack_to_window=false"
            )


# -------------------------------------------------------------------------------------------- load
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["data.max_duration_seconds=20", "model.lora_target_modules=[q_proj,v_proj]"]`` -> dict.

    Values are parsed as YAML scalars/lists, so ``20`` is an int and ``true`` a bool.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form section.key=value (e.g. data.max_duration_seconds=20)"
            )
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of sections, got {type(tree).__name__}")
    return tree


# Common names from other trainers -> ours; only used to suggest the right key.
KEY_HINTS = {
    "lr": "learning_rate",
    "epochs": "num_epochs",
    "batch_size": "per_device_train_batch_size",
    "bf16": "mixed_precision",
    "fp16": "mixed_precision",
    "warmup": "warmup_steps",
    "grad_accum": "gradient_accumulation_steps",
    "max_duration": "max_duration_seconds",
}


def _unknown_key_message(dotted: str, fields: dict[str, dict[str, Any]]) -> str:
    section, _, key = dotted.partition(".")
    if section not in fields:
        close = difflib.get_close_matches(section, list(fields), n=1, cutoff=0.5)
        seed = [k for k in SEED_KEYS if k.startswith(section + ".")]
        if seed:  # a seed section ('training', 'checkpoints') with a key the seed does not have
            close = difflib.get_close_matches(dotted, seed, n=1, cutoff=0.6)
            known = ", ".join(k.split(".", 1)[1] for k in seed)
            return f"unknown key '{dotted}'" + (f"; did you mean '{close[0]}'?" if close else f"; its keys are {known}")
        hint = f"; did you mean '{close[0]}'?" if close else f"; sections are {', '.join(fields)}"
        return f"unknown section '{section}' (in '{dotted}'){hint}"
    candidates = list(fields[section]) + [k.split(".", 1)[1] for k in SEED_KEYS if k.startswith(section + ".")]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close and key in KEY_HINTS:
        close = [KEY_HINTS[key]]
    if not close:  # the key may belong to another section
        close = [f"{s}.{key}" for s, ks in fields.items() if key in ks][:1]
        return f"unknown key '{dotted}'" + (
            f"; did you mean '{close[0]}'?" if close else f"; '{section}' keys are {', '.join(fields[section])}"
        )
    return f"unknown key '{dotted}'; did you mean '{section}.{close[0]}'?"


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Defaults -> YAML at ``path`` -> dotted ``overrides``; raises one ConfigError listing every problem."""
    problems: list[str] = []
    notes: list[str] = []
    flat: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        for section, body in raw.items():
            if not isinstance(body, dict):
                problems.append(f"'{section}': expected a mapping of keys, got {type(body).__name__} {body!r}")
        flat.update(_translate_seed(_flatten({k: v for k, v in raw.items() if isinstance(v, dict)}), problems, notes))
    if overrides:
        override_map = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides)
        flat.update(_translate_seed(override_map, problems, notes))

    cfg = Config()
    fields = _section_fields(cfg)
    for dotted, value in flat.items():
        section, _, key = dotted.partition(".")
        if section not in fields or key not in fields[section]:
            problems.append(_unknown_key_message(dotted, fields))
            continue
        sec = getattr(cfg, section)
        hints = get_type_hints(type(sec))
        try:
            setattr(sec, key, _coerce(value, hints[key], dotted))
        except ValueError as exc:
            problems.append(str(exc))
    _validate(cfg, problems)
    if problems:
        where = f" in {path}" if path else ""
        raise ConfigError(f"{len(problems)} configuration problem(s){where}:\n  - " + "\n  - ".join(problems))
    cfg.notes = notes
    return cfg


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
