"""Build the Whisper model and processor a run trains: a local HF folder, a hub name, or a size preset.

Presets are random-initialised models for tests and benchmarks (``tiny-random`` trains in well under a
second per step on a CPU). Every model gets a complete generation config (mwc_dist.models.tokenizer),
so ``generate(language="es", task="transcribe")`` works whether it came from a folder or a preset.
"""

from __future__ import annotations

import re
from pathlib import Path

from mwc_dist.models.config import ModelConfig

# name -> WhisperConfig fields. max_source_positions sets the audio window: positions / 50 seconds.
PRESETS = {
    "tiny-random": dict(
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=500,
        max_target_positions=128,
    ),
    "whisper-tiny-random": dict(
        d_model=384,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=6,
        decoder_attention_heads=6,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
    ),
    "whisper-base-random": dict(
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
    ),
    "whisper-small-random": dict(
        d_model=768,
        encoder_layers=12,
        decoder_layers=12,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
    ),
    "whisper-medium-random": dict(
        d_model=1024,
        encoder_layers=24,
        decoder_layers=24,
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
    ),
}


def window_seconds(model_config) -> float:
    """The audio window the encoder takes: 2 mel frames per position, 100 frames per second."""
    return model_config.max_source_positions * 2 / 100


def build_processor(model_config, tokenizer=None):
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from mwc_dist.models.tokenizer import load_tokenizer

    if tokenizer is None:
        tokenizer = load_tokenizer(
            multilingual=model_config.vocab_size >= 51865, num_languages=100 if model_config.vocab_size >= 51866 else 99
        )
    seconds = window_seconds(model_config)
    features = WhisperFeatureExtractor(feature_size=model_config.num_mel_bins, chunk_length=int(seconds))
    return WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def _from_preset(name: str, seed: int):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from mwc_dist.models.tokenizer import generation_config, load_tokenizer

    tokenizer = load_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        pad_token_id=ids("<|endoftext|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"),
        **PRESETS[name],
    )
    torch.manual_seed(seed)  # same weights on every rank, and run to run
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config(tokenizer, max_length=min(448, config.max_target_positions))
    return model, build_processor(config, tokenizer)


def _from_pretrained(location: str):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from mwc_dist.models.tokenizer import generation_config

    model = WhisperForConditionalGeneration.from_pretrained(location)
    try:
        processor = WhisperProcessor.from_pretrained(location)
    except (OSError, ValueError):  # a weights-only folder: build the standard processor for its config
        processor = build_processor(model.config)
    if not getattr(model.generation_config, "lang_to_id", None) and model.config.vocab_size >= 51865:
        heads = getattr(model.generation_config, "alignment_heads", None)
        model.generation_config = generation_config(processor.tokenizer, alignment_heads=heads)
    return model, processor


def materialize_preset(name: str, seed: int) -> Path:
    """A preset's weights as a folder (deterministic per name and seed), for loaders that need one."""
    import os
    import shutil
    import tempfile

    from mwc_dist.models.tokenizer import cache_dir

    out = cache_dir() / "presets" / f"{name}-seed{seed}"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        model, processor = _from_preset(name, seed)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another rank wrote it first: identical content
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _base(cfg: ModelConfig, seed: int):
    name = cfg.base_model
    if name in PRESETS:
        return _from_preset(name, seed)
    if Path(name).is_dir() or re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        try:
            return _from_pretrained(name)
        except OSError as exc:
            raise ValueError(
                f"model.base_model {name!r}: cannot load it ({exc}). Offline, use a local folder "
                f"(e.g. from `mwc import-ct2`) or a preset: {', '.join(PRESETS)}"
            ) from None
    raise ValueError(f"model.base_model {name!r}: not a folder, hub name or preset ({', '.join(PRESETS)})")


def build_model(cfg: ModelConfig, seed: int = 0, device="cpu", gradient_checkpointing: bool = False):
    """(model, processor) for ``cfg.base_model`` (a preset, a local folder or a hub name), with LoRA/QLoRA if asked.

    The model carries ``mwc_base_dir``: the folder of its base weights (what an adapter merges into).
    """
    from mwc_dist.models.lora import add_lora, load_quantized

    if cfg.use_4bit_quantization:
        base_dir = materialize_preset(cfg.base_model, seed) if cfg.base_model in PRESETS else cfg.base_model
        model = load_quantized(base_dir, cfg, device)
        processor = _processor_for(base_dir, model)
        model = add_lora(model, cfg, quantized=True, gradient_checkpointing=gradient_checkpointing)
    else:
        model, processor = _base(cfg, seed)
        base_dir = cfg.base_model
        if cfg.use_lora:
            if cfg.base_model in PRESETS:
                base_dir = materialize_preset(cfg.base_model, seed)
            model = add_lora(model, cfg, quantized=False)
    model.mwc_base_dir = str(base_dir)
    if hasattr(model, "peft_config"):  # adapters name the base they belong to
        for adapter in model.peft_config.values():
            adapter.base_model_name_or_path = str(base_dir)
    return model, processor


def _processor_for(model_dir, model):
    from transformers import WhisperProcessor

    try:
        return WhisperProcessor.from_pretrained(model_dir)
    except (OSError, ValueError):
        return build_processor(model.config)


def prepare_for_training(model, t, quantized: bool) -> None:
    """train.freeze_encoder, train.freeze_embeddings and train.gradient_checkpointing on a built model.

    get_encoder()/get_decoder() reach through a PEFT wrapper too (LoRA on a frozen encoder stays frozen);
    a QLoRA model has already enabled checkpointing (peft's prepare_model_for_kbit_training).
    """
    if t.freeze_encoder:
        model.get_encoder().requires_grad_(False)
    if t.freeze_embeddings:
        model.get_decoder().embed_tokens.requires_grad_(False)
        model.get_decoder().embed_positions.requires_grad_(False)
    if t.gradient_checkpointing and not quantized:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
