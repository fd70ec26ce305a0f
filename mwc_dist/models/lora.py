"""LoRA and QLoRA (bitsandbytes NF4 + PEFT LoRA), adapter checks, and the merge that keeps behaviour.

QLoRA loads the base model with ``BitsAndBytesConfig`` (4-bit NF4/FP4, double quantisation, compute
dtype from config; ``proj_out`` stays full precision because it is tied to the embeddings), runs
``prepare_model_for_kbit_training`` and puts LoRA on ``model.lora_target_modules``. Under DDP each
rank loads its quantised copy onto its own device (``device_map={"": device}``).

Merging (measured; see docs/TRAINING_MATRIX.md): ``merge_and_unload()`` on the 4-bit model re-quantises and loses the
adapter. ``merge_to_full`` loads the base with the same quantisation in float32, dequantises it (the
exact weights the adapter was trained against), applies the adapter and merges.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mwc_dist.models.config import ModelConfig

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def bnb_config(cfg: ModelConfig):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=DTYPES[cfg.bnb_4bit_compute_dtype],
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
        llm_int8_skip_modules=["proj_out"],
    )


def load_quantized(model_dir: str | Path, cfg: ModelConfig, device):
    from transformers import WhisperForConditionalGeneration

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError("QLoRA needs bitsandbytes and peft: pip install 'mwc-dist[qlora]'") from None
    device = torch.device(device)
    # "cpu" by name: a bare index (as accelerate's cpu:0 can become) would mean cuda:0 to the loader
    place = "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}"
    return WhisperForConditionalGeneration.from_pretrained(
        model_dir, quantization_config=bnb_config(cfg), device_map={"": place}, dtype=torch.float32
    )


def add_lora(model, cfg: ModelConfig, quantized: bool, gradient_checkpointing: bool = False):
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    except ImportError:
        raise ImportError("LoRA needs peft: pip install 'mwc-dist[qlora]'") from None
    if quantized:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_targets(model, cfg.lora_target_modules, cfg.lora_encoder_layers),
        bias="none",
    )
    return get_peft_model(model, lora)


def lora_targets(model, names: list[str], encoder_layers: int) -> list[str]:
    """``model.lora_target_modules`` as PEFT reads them (module-name suffixes); with ``model.lora_encoder_layers``
    N >= 0, the full names of the matching modules, minus those in encoder layers below the top N."""
    names = list(names)
    if encoder_layers < 0:
        return names
    total = model.config.encoder_layers
    keep = []
    for full, _ in model.named_modules():
        if full.rsplit(".", 1)[-1] not in names:
            continue
        parts = full.split(".")
        if "encoder" in parts and "layers" in parts:
            layer = int(parts[parts.index("layers") + 1])
            if layer < total - encoder_layers:
                continue
        keep.append(full)
    if not keep:
        raise ValueError(f"model.lora_target_modules {names}: no module of the model has one of these names")
    return keep


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def check_adapter(folder: Path) -> int:
    """Raise unless ``folder`` holds a non-empty adapter; returns its number of tensors."""
    from safetensors import safe_open

    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file() or not (Path(folder) / "adapter_config.json").is_file():
        raise RuntimeError(f"{folder}: adapter files missing after save")
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    if not keys or not any("lora_" in k for k in keys):
        raise RuntimeError(f"{path}: the saved adapter holds no LoRA tensors (an empty adapter)")
    return len(keys)


def merge_to_full(base_dir: str | Path, adapter_dir: str | Path, cfg: ModelConfig, quantized: bool):
    """The trained behaviour as one plain float32 model (see the module docstring)."""
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    if quantized:
        base = load_quantized(base_dir, cfg, "cpu")
        base = base.dequantize()
    else:
        base = WhisperForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32)
    base = base.float()
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.quantization_config = None
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.is_quantized = False
    merged.hf_quantizer = None
    return merged
