"""The end of a run: the cross-rank weight check, final/ (the best or last model, LoRA merged), the exports.

``run_summary`` (``weights_digest``) is collective; ``end_of_run`` (``write_final``, ``export_final``) runs on
rank 0 only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from mwc_dist.export import ExportConfig
from mwc_dist.models.config import ModelConfig


def _hash_tensor(h, name: str, t: torch.Tensor) -> None:
    h.update(name.encode())
    h.update(t.detach().cpu().contiguous().float().numpy().tobytes())


def param_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        _hash_tensor(h, name, p)
    return h.hexdigest()


def weights_digest(accelerator, model) -> str:
    """Hash of this rank's full weights. Under ZeRO-3 gathered one parameter at a time (collective), so no rank
    ever holds more than one whole parameter beyond its own partition."""
    unwrapped = accelerator.unwrap_model(model)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        return param_digest(unwrapped)
    import deepspeed

    h = hashlib.sha256()
    for name, p in sorted(unwrapped.named_parameters()):
        with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
            _hash_tensor(h, name, p)
    for name, b in sorted(unwrapped.named_buffers()):
        _hash_tensor(h, name, b)
    return h.hexdigest()


def run_summary(accelerator, model, state, precision: str) -> dict:
    """Collective: steps, last evaluation and every rank's weight digest (``ranks_identical``)."""
    from accelerate.utils import gather_object

    digests = gather_object([weights_digest(accelerator, model)])
    return {
        "world_size": accelerator.num_processes,
        "precision": precision,
        "steps": state.step,
        "param_digests": digests,
        "ranks_identical": len(set(digests)) == 1,
        "last_eval": state.last_eval,
    }


def end_of_run(
    out_dir: Path,
    unwrapped,
    state_dict: dict,
    processor,
    summary: dict,
    *,
    best_model: Path | None,
    base_dir,
    model_cfg: ModelConfig,
    export_cfg: ExportConfig,
    shard_dir: str,
    eval_split: str | None,
) -> None:
    """Rank 0: final/ (``best_model`` or the last weights, LoRA merged), run_summary.json, then the exports."""
    write_final(
        out_dir, unwrapped, state_dict, processor, best_model=best_model, base_dir=base_dir, model_cfg=model_cfg
    )
    (out_dir / "run_summary.json").write_text(json.dumps(summary, indent=2))
    export_final(out_dir / "final", export_cfg, shard_dir, eval_split, language=model_cfg.language, task=model_cfg.task)


def write_final(
    out_dir: Path, unwrapped, state_dict: dict, processor, *, best_model: Path | None, base_dir, model_cfg: ModelConfig
) -> None:
    """final/: the best checkpoint's model when there is one (``best_model``), else the last; LoRA merged into it.
    Written beside and renamed into place."""
    from mwc_dist.models.lora import check_adapter, is_peft, merge_to_full

    final, tmp = out_dir / "final", out_dir / ".tmp-final"
    source = best_model if best_model is not None and best_model.is_dir() else None
    shutil.rmtree(tmp, ignore_errors=True)
    if is_peft(unwrapped):
        adapter = tmp / "adapter"
        if source is not None:
            shutil.copytree(source, adapter)
        else:
            unwrapped.save_pretrained(adapter, state_dict=state_dict, safe_serialization=True)
        check_adapter(adapter)
        merged = merge_to_full(base_dir, adapter, model_cfg, model_cfg.use_4bit_quantization)
        merged.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
    elif source is not None:
        shutil.copytree(source, tmp)
    else:
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        processor.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def export_final(final: Path, e: ExportConfig, shard_dir: str, eval_split: str | None, *, language, task) -> None:
    """The formats the export section asks for, each checked against the model on up to 4 evaluation clips."""
    from mwc_dist.export import clips_from_shards, export_model

    wanted = (
        ("safetensors", e.export_safetensors),
        ("pytorch", e.export_pytorch),
        ("onnx", e.export_onnx),
        ("ct2", e.export_ct2),
    )
    formats = [f for f, on in wanted if on]
    if formats == ["safetensors"] or not formats:  # final/ already is the SafeTensors export
        return
    clips, refs = [], None
    if eval_split is not None:
        clips, refs, _ = clips_from_shards(shard_dir, eval_split, 4)
    out = Path(e.output_dir) if e.output_dir else final.parent / "exports"
    export_model(
        final,
        out,
        formats,
        opset=e.onnx_opset_version,
        optimize=e.onnx_optimize,
        clips=clips or None,
        references=refs,
        language=language,
        task=task,
        allow_nonstandard_window=e.allow_nonstandard_window,
    )
    print(f"exports: {out} ({', '.join(formats)}; parity in {out / 'parity.json'})", flush=True)


def check_export_window(e, seconds: float) -> None:
    """Refuse at start-up what the end-of-run export would refuse: ct2 for a model whose window is not 30 s."""
    if e.export_ct2 and not e.allow_nonstandard_window and abs(seconds - 30) > 1e-6:
        raise ValueError(
            f"export.export_ct2: this model's audio window is {seconds:g} s, not 30 s; faster-whisper and whisper.cpp "
            f"cannot run its CTranslate2 export. Train a student with the teacher's window, or set "
            f"export.allow_nonstandard_window=true (mwc's own CTranslate2 backend runs it)"
        )
