"""Typed configuration: section dataclasses, YAML files, dotted CLI overrides, the seed mapping.

Precedence: dataclass defaults -> YAML file -> dotted overrides (``data.max_duration_seconds=20``).
Each component receives only its own section (``build_source(cfg.data)``), never the whole config.

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

from mwc_dist.audio.decode import SAMPLE_RATE

AUDIO_FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "wma"]
SOURCE_TYPES = ("auto", "huggingface", "folder", "csv", "json", "commonvoice", "nemo", "librispeech", "kaldi")
SPLITS = ("train", "validation", "test")
COMMONVOICE_TSVS = ("train", "dev", "test", "validated", "other", "invalidated")


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message lists every problem found."""


# ----------------------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """Where the audio comes from and how it is checked and sharded (``mwc shard``)."""

    source: str = ""  # folder, CSV, JSON/JSONL manifest, save_to_disk folder or hub dataset name
    source_type: str = "auto"  # auto | huggingface | folder | csv | json | commonvoice | nemo | librispeech | kaldi
    # Common Voice: the release's TSVs to read (train, dev, test, validated, other, invalidated; the name -> split)
    commonvoice_splits: list[str] = field(default_factory=lambda: ["train", "dev", "test"])
    min_up_votes: int = 0  # Common Voice: rows with fewer up_votes are quarantined as below_min_up_votes
    kaldi_allow_pipes: bool = False  # Kaldi wav.scp entries "id cmd |" run the shell command (off: quarantined)
    hf_split: str = "train"  # split of a Hugging Face DatasetDict
    hf_config: str | None = None  # hub dataset configuration name
    audio_column: str = (
        "audio"  # the audio column of a CSV/JSON manifest or a Hugging Face dataset (a path, bytes or a decoded array)
    )
    text_column: str = "text"  # the transcript column
    language_column: str = "language"  # each row's language (a code or a name); missing: data.language
    speaker_column: str = "speaker"  # the speaker (kept in the shards; split by hash keeps a speaker in one split)
    split_column: str = "split"  # rows that name a split keep it; the rest are split by hash
    id_column: str = "id"  # optional explicit item key (HF datasets, manifests)
    formats: list[str] = field(default_factory=lambda: list(AUDIO_FORMATS))  # folder scan filter
    language: str | None = None  # default language for items that name none
    sample_rate: int = SAMPLE_RATE  # Whisper's; anything else is rejected
    normalize: bool = True  # peak-normalise each clip to -1 dBFS
    min_duration_seconds: float = 0.5  # shorter clips are quarantined (too_short)
    max_duration_seconds: float = 30.0  # longer clips are quarantined (too_long); at most the model's window
    # longest transcript in Whisper tokens, prompt and end-of-text included (the decoder's max_target_positions);
    # longer ones are quarantined as too_many_tokens. 0: no check
    max_label_tokens: int = 448
    # audio without a transcript (audio-only folders, manifests without a text column, empty rows) is sharded with
    # an empty text instead of quarantined: for `mwc pseudo-label`; training on its references is refused
    allow_missing_text: bool = False
    train_split_ratio: float = (
        0.9  # rows without a split go to train / validation / test by a hash of their key, in these shares
    )
    validation_split_ratio: float = 0.1  # the validation share of those rows
    test_split_ratio: float = 0.0  # the test share of those rows
    shard_dir: str = (
        "shards"  # where `mwc shard` writes, and training and evaluation read, <split>.manifest.json and its tars
    )
    shard_samples: int = 1000  # items per shard (the unit of resume and of job splitting)
    # > 0: the train split in a multiple of shard_for_world_size x num_workers shards (of at most shard_samples,
    # evenly filled), so each rank and loader worker of that many processes reads shards of its own
    shard_for_world_size: int = 0
    shard_audio_format: str = "flac"  # flac (16-bit, lossless container) | wav (float32)
    shard_workers: int = 0  # decode processes for `mwc shard`; 0 = all cores
    num_workers: int = 2  # DataLoader workers per rank when training
    train_shards: str | None = None  # paths/brace patterns/pipe: URLs ("::"-separated); default: shard_dir's manifest
    eval_shards: str | None = None  # as train_shards, for the evaluation split (data.eval_split)
    eval_split: str = "validation"  # which split of shard_dir evaluation reads
    # the training text: the reference (text), or a teacher's pseudo-label (teacher_text, from `mwc pseudo-label`),
    # kept only where its quality passes: WER vs the reference, mean token log-prob, gzip compression ratio
    text_field: str = "text"
    pseudo_max_wer: float = (
        0.1  # the pseudo-label filter (data.text_field=teacher_text): at most this WER against the reference
    )
    pseudo_min_avg_logprob: float = -1.0  # at least this mean token log-probability
    pseudo_max_compression_ratio: float = 2.4  # at most this gzip compression ratio (a loop compresses well)
    # join consecutive clips (and transcripts) up to the model's window, in one language and within the decoder
    pack_to_window: bool = False
    # Whisper's training sequences (data/labels.py), drawn per (seed, epoch, sample): the share of samples trained
    # with timestamp tokens (<|t0|> text <|t1|> per segment), and the share trained with the previous window's text
    # (long recordings' windows have one; clips none) as the <|startofprev|> prompt (given, never learned)
    timestamp_probability: float = 0.0
    condition_on_prev_probability: float = 0.0  # see timestamp_probability
    # endless training streams (data/mix.py; train.max_steps sets the length): shards drawn with replacement from
    # data.shard_dir's train split (resampled: true), or from several shard folders' train splits, each sample's
    # folder drawn with p_i ~ (mix_weights[i] or its sample count) ** (1 / mix_temperature)
    resampled: bool = False  # an endless stream over data.shard_dir's train split, shards drawn with replacement
    mix_shard_dirs: list[str] = field(default_factory=list)  # shard folders whose train splits are mixed (endless)
    mix_weights: list[float] = field(default_factory=list)  # [] = each folder's sample count
    mix_temperature: float = 1.0  # > 1 flattens toward uniform (multilingual ASR's temperature sampling)


@dataclass
class ModelConfig:
    """Which Whisper to train and how (distillation and QLoRA settings live here as in the seed)."""

    base_model: str = "tiny-random"  # local HF folder, hub name, or a size preset
    language: str | None = "spanish"  # the language token trained and decoded with (a code or a name); null: the data's
    task: str = "transcribe"  # transcribe | translate
    use_distillation: bool = False  # train against a teacher: (1 - alpha) x cross-entropy + alpha x KL to the teacher
    teacher_model: str | None = None  # the teacher (a folder or a preset), frozen; needs the student's vocabulary
    distillation_temperature: float = 2.0  # softens both distributions in the KL term
    distillation_alpha: float = 0.5  # the KL term's weight (0: cross-entropy only, 1: KL only)
    # a student with a shorter window than its teacher (make-student --window-seconds) and the teacher's frozen
    # encoder: "own" runs the teacher's encoder on its own (30-s) window; "student" feeds the teacher's decoder
    # the student's encoder output (one short encoder pass per step instead of two, the teacher then sees the
    # short window too)
    distillation_teacher_window: str = "own"
    # where the teacher's distribution comes from: "teacher" runs model.teacher_model beside the student; "shards"
    # reads the top-k log-probabilities `mwc pseudo-label --store-topk K` stored (no teacher in memory; train on the
    # pseudo-labels, data.text_field=teacher_text, without timestamps, prompts or packing)
    distillation_source: str = "teacher"
    use_4bit_quantization: bool = (
        False  # QLoRA: the base weights in 4 bits (bitsandbytes), LoRA adapters trained on top
    )
    bnb_4bit_quant_type: str = "nf4"  # nf4 | fp4
    bnb_4bit_compute_dtype: str = "float16"  # the dtype the 4-bit layers compute in: float16 | bfloat16 | float32
    bnb_4bit_use_double_quant: bool = True  # quantise the quantisation constants too (less memory)
    use_lora: bool = False  # train LoRA adapters (PEFT) instead of the weights; merged into final/
    lora_r: int = 16  # the adapters' rank
    lora_alpha: int = 32  # their scale (alpha / r)
    lora_dropout: float = 0.1  # dropout on the adapters' input
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"]
    )  # the Linear layers that get adapters
    # -1: adapters in every encoder layer; N: only in the top N (0: none), so the backward pass stops N layers
    # into the encoder (with train.freeze_encoder false): most of the encoder's adaptation at a fraction of its cost
    lora_encoder_layers: int = -1


@dataclass
class TrainConfig:
    """The training loop."""

    output_dir: str = "runs/default"  # checkpoints, metrics.jsonl, evaluations, final/ and the exports
    seed: int = 42  # model init, data order, augmentation and label plans
    num_epochs: int = 1  # epochs over the train split (unless max_steps)
    max_steps: int = 0  # > 0 overrides num_epochs
    per_device_train_batch_size: int = 4  # clips (or packed windows) per micro-batch on each rank
    per_device_eval_batch_size: int = 8  # clips per generation batch on each rank
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float = 5e-5  # AdamW's peak learning rate
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    warmup_steps: int = 0  # optimizer steps of linear warm-up to learning_rate
    lr_scheduler_type: str = "cosine"  # transformers' schedule after warm-up: cosine | linear | constant | ...
    max_grad_norm: float = 1.0  # gradients clipped to this global norm
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more time
    freeze_encoder: bool = False  # the encoder is not trained (it runs without gradients)
    freeze_embeddings: bool = False  # the decoder's token and position embeddings are not trained
    spec_augment: bool = False  # SpecAugment (time and frequency masks) on the training log-mel
    shuffle_buffer: int = 500  # samples in the shuffle buffer of each loader worker
    bucket_batches: int = 8  # batches per duration bucket (samples sorted by duration within it)
    log_every_steps: int = 10  # a metrics.jsonl row (losses reduced over ranks) every N optimizer steps
    eval_steps: int = 0  # 0 = evaluate at the end of each epoch; -1 = never
    eval_max_samples: int = 0  # 0 = the whole eval split
    generation_max_length: int = 128  # new tokens at most per evaluated clip
    num_beams: int = 1  # beam size in evaluation (1: greedy)
    requeue_on_preemption: bool = True  # under SLURM: `scontrol requeue` after the preemption checkpoint
    dist_timeout_seconds: int = 1800  # a collective waiting longer than this fails instead of hanging
    max_bad_steps: int = 10  # this many optimizer steps in a row skipped (NaN/inf loss or gradients) stop the run
    # the vocabulary projection (and softmax) only at label positions that are not padding, for the student and a
    # teacher: the same loss, less work (models/label_head.py); false: the full [batch, length, vocab] logits
    logits_at_labels_only: bool = True
    fused_optimizer: bool = True  # torch's fused AdamW kernel (one kernel over all parameters) where it runs


@dataclass
class CheckpointConfig:
    """When checkpoints are written, how many are kept, and what to resume from."""

    save_strategy: str = "epoch"  # epoch | steps | no
    save_steps: int = 1  # every N epochs (save_strategy=epoch) or steps (save_strategy=steps)
    keep_last: int = 3  # checkpoints kept (older ones removed; best/ is separate)
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    load_best_model_at_end: bool = True  # keep best/ (each better evaluation) and make it final/
    metric_for_best_model: str = "wer"  # what best/ is judged by: wer | cer | bleu | chrf | loss | ...
    greater_is_better: bool = False  # true for bleu/chrf


@dataclass
class ExportConfig:
    """What rank 0 exports at the end of training."""

    export_safetensors: bool = True  # final/ as a Hugging Face folder with model.safetensors
    export_pytorch: bool = False  # also pytorch_model.bin
    export_onnx: bool = False  # an optimum ONNX export (encoder, decoder, decoder with past), parity-checked
    export_ct2: bool = False  # a CTranslate2 export (faster-whisper), parity-checked
    onnx_opset_version: int = 17  # the ONNX opset
    onnx_optimize: bool = False  # ONNX Runtime's graph optimisations applied to the export
    # export_ct2 for a model whose audio window is not 30 s (a make-student --window-seconds student): faster-whisper
    # and whisper.cpp cannot run it, so it is refused at start-up unless this is true (mwc's own backend runs it)
    allow_nonstandard_window: bool = False
    output_dir: str | None = None  # default: <train.output_dir>/final


@dataclass
class AugmentConfig:
    """Training-time augmentation on the loader, seeded per sample and epoch; never on evaluation (audio/augment.py)."""

    speed_factors: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; [] = off
    noise_dir: str | None = None  # a folder of noise recordings (any audio format); null = no noise
    noise_prob: float = 0.5  # share of samples that get noise
    snr_db_min: float = 5.0  # the noise's signal-to-noise ratio, drawn per sample between these (dB)
    snr_db_max: float = 20.0  # (see snr_db_min)


@dataclass
class TrackingConfig:
    """Where metrics go besides the always-on metrics.jsonl (rank 0 only)."""

    report_to: list[str] = field(default_factory=list)  # tensorboard, wandb
    project: str = "mwc-dist"  # the W&B project (and TensorBoard's run folder name)
    run_name: str | None = None  # the W&B run name; null: its own
    entity: str | None = None  # the W&B team or user
    tags: list[str] = field(default_factory=list)  # W&B run tags
    group: str | None = None  # the W&B run group (e.g. one per sweep)


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
    return {
        f.name: {sf.name: sf for sf in dataclasses.fields(getattr(cfg, f.name))}
        for f in dataclasses.fields(cfg)
        if not f.metadata.get("internal")
    }


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


# what an evaluation reports (evaluate.py: metrics.compute_metrics + the label loss), lower or higher is better
BEST_METRICS = ("wer", "cer", "bleu", "chrf", "loss", "raw_wer", "raw_cer", "insertion_rate", "loop_rate")


def _validate(cfg: Config, problems: list[str]) -> None:
    _validate_data(cfg.data, problems)
    if (cfg.data.resampled or cfg.data.mix_shard_dirs) and cfg.train.max_steps <= 0:
        problems.append("data.resampled / data.mix_shard_dirs: an endless stream has no epochs; set train.max_steps")
    _validate_model(cfg.model, problems)
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
    _validate_train(cfg.train, problems)
    _validate_augment(cfg.augment, problems)
    bad_trackers = [r for r in cfg.tracking.report_to if r not in ("tensorboard", "wandb")]
    if bad_trackers:
        problems.append(f"tracking.report_to: unknown {bad_trackers}; choose from tensorboard, wandb")
    c = cfg.checkpoint
    if c.save_strategy not in ("epoch", "steps", "no"):
        problems.append(f"checkpoint.save_strategy: must be epoch, steps or no; got {c.save_strategy!r}")
    if c.metric_for_best_model not in BEST_METRICS:
        problems.append(
            f"checkpoint.metric_for_best_model: one of {', '.join(BEST_METRICS)} (what an evaluation reports); "
            f"got {c.metric_for_best_model!r}"
        )


def _validate_augment(a: AugmentConfig, problems: list[str]) -> None:
    if any(not 0.5 <= f <= 2.0 for f in a.speed_factors):
        problems.append(
            f"augment.speed_factors: each between 0.5 and 2.0 (e.g. [0.9, 1.0, 1.1]); got {a.speed_factors}"
        )
    if not 0.0 <= a.noise_prob <= 1.0:
        problems.append(f"augment.noise_prob: must be in [0, 1]; got {a.noise_prob}")
    if a.snr_db_min > a.snr_db_max:
        problems.append(f"augment.snr_db_min ({a.snr_db_min}) must not exceed augment.snr_db_max ({a.snr_db_max})")
    if a.noise_dir and not Path(a.noise_dir).is_dir():
        problems.append(f"augment.noise_dir: {a.noise_dir} is not a folder (of noise recordings)")


def _resolve_language(section: Any, name: str, problems: list[str]) -> None:
    """Replace section.language (a code or a name in any case) by Whisper's code, or report it with the nearest."""
    from mwc_dist.languages import LanguageError, resolve_language

    if section.language is not None:
        try:
            section.language = resolve_language(section.language, f"{name}.language")
        except LanguageError as exc:
            problems.append(str(exc))


def _validate_data(d: DataConfig, problems: list[str]) -> None:
    _resolve_language(d, "data", problems)
    if d.source_type not in SOURCE_TYPES:
        problems.append(f"data.source_type: must be one of {', '.join(SOURCE_TYPES)}; got {d.source_type!r}")
    bad_tsvs = [t for t in d.commonvoice_splits if t not in COMMONVOICE_TSVS]
    if bad_tsvs or not d.commonvoice_splits:
        problems.append(f"data.commonvoice_splits: some of {', '.join(COMMONVOICE_TSVS)}; got {d.commonvoice_splits}")
    if d.min_up_votes < 0:
        problems.append(f"data.min_up_votes: a count >= 0; got {d.min_up_votes}")
    if d.sample_rate != SAMPLE_RATE:
        problems.append(f"data.sample_rate: Whisper takes {SAMPLE_RATE} Hz audio; got {d.sample_rate}")
    if d.max_label_tokens < 0 or 0 < d.max_label_tokens < 8:
        problems.append(
            f"data.max_label_tokens: 0 (no check) or at least 8 (Whisper's prompt alone is 4 tokens); "
            f"got {d.max_label_tokens}"
        )
    if d.min_duration_seconds < 0 or d.max_duration_seconds <= d.min_duration_seconds:
        problems.append(
            "data.min_duration_seconds / data.max_duration_seconds: need 0 <= min < max; "
            f"got {d.min_duration_seconds} / {d.max_duration_seconds}"
        )
    ratios = (d.train_split_ratio, d.validation_split_ratio, d.test_split_ratio)
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        problems.append(
            "data.train_split_ratio + validation_split_ratio + test_split_ratio must be >= 0 and sum to 1; "
            f"got {ratios[0]} + {ratios[1]} + {ratios[2]} = {sum(ratios):g}"
        )
    bad_formats = [f for f in d.formats if f.lower().lstrip(".") not in AUDIO_FORMATS]
    if bad_formats:
        problems.append(f"data.formats: unsupported {bad_formats}; supported: {', '.join(AUDIO_FORMATS)}")
    if d.shard_for_world_size < 0:
        problems.append(
            f"data.shard_for_world_size: 0 (off) or the planned number of processes; got {d.shard_for_world_size}"
        )
    if d.shard_samples < 1:
        problems.append(f"data.shard_samples: must be >= 1; got {d.shard_samples}")
    if d.shard_audio_format not in ("flac", "wav"):
        problems.append(f"data.shard_audio_format: must be flac or wav; got {d.shard_audio_format!r}")
    for key in ("timestamp_probability", "condition_on_prev_probability"):
        if not 0 <= getattr(d, key) <= 1:
            problems.append(f"data.{key}: a probability in [0, 1]; got {getattr(d, key)}")
    if d.text_field not in ("text", "teacher_text"):
        problems.append(f"data.text_field: text (the reference) or teacher_text (pseudo-labels); got {d.text_field!r}")
    if d.mix_weights and len(d.mix_weights) != len(d.mix_shard_dirs):
        problems.append(
            f"data.mix_weights: one weight per folder of data.mix_shard_dirs ({len(d.mix_shard_dirs)}); "
            f"got {len(d.mix_weights)}"
        )
    if any(w <= 0 for w in d.mix_weights) or d.mix_temperature <= 0:
        problems.append(
            f"data.mix_weights and data.mix_temperature must be > 0; got {d.mix_weights}, {d.mix_temperature}"
        )
    if d.eval_split not in SPLITS:
        problems.append(f"data.eval_split: must be one of {', '.join(SPLITS)}; got {d.eval_split!r}")


def _validate_model(m: ModelConfig, problems: list[str]) -> None:
    _resolve_language(m, "model", problems)
    if not 0.0 <= m.distillation_alpha <= 1.0:
        problems.append(f"model.distillation_alpha: must be in [0, 1]; got {m.distillation_alpha}")
    if m.distillation_temperature <= 0:
        problems.append(f"model.distillation_temperature: must be > 0; got {m.distillation_temperature}")
    if m.distillation_teacher_window not in ("own", "student"):
        problems.append(f"model.distillation_teacher_window: 'own' or 'student'; got {m.distillation_teacher_window!r}")
    if m.distillation_source not in ("teacher", "shards"):
        problems.append(f"model.distillation_source: 'teacher' or 'shards'; got {m.distillation_source!r}")
    if m.use_distillation and not m.teacher_model and m.distillation_source == "teacher":
        problems.append(
            "model.teacher_model: required when model.use_distillation is true (or model.distillation_source=shards "
            "with top-k stored by `mwc pseudo-label --store-topk K`)"
        )
    if m.lora_encoder_layers < -1:
        problems.append(f"model.lora_encoder_layers: -1 (every layer) or a count >= 0; got {m.lora_encoder_layers}")
    if m.bnb_4bit_quant_type not in ("nf4", "fp4"):
        problems.append(f"model.bnb_4bit_quant_type: must be nf4 or fp4; got {m.bnb_4bit_quant_type!r}")
    if m.bnb_4bit_compute_dtype not in ("float16", "bfloat16", "float32"):
        problems.append(f"model.bnb_4bit_compute_dtype: float16, bfloat16 or float32; got {m.bnb_4bit_compute_dtype!r}")


def _validate_train(t: TrainConfig, problems: list[str]) -> None:
    if t.mixed_precision not in ("no", "fp16", "bf16"):
        problems.append(f"train.mixed_precision: must be no, fp16 or bf16; got {t.mixed_precision!r}")
    if t.lr_scheduler_type not in ("cosine", "linear", "constant", "constant_with_warmup"):
        problems.append(
            f"train.lr_scheduler_type: cosine, linear, constant or constant_with_warmup; got {t.lr_scheduler_type!r}"
        )
    for name in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_bad_steps",
        "dist_timeout_seconds",
    ):
        if getattr(t, name) < 1:
            problems.append(f"train.{name}: must be >= 1; got {getattr(t, name)}")
    if t.learning_rate <= 0:
        problems.append(f"train.learning_rate: must be > 0; got {t.learning_rate}")


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
