"""Evaluation: batched greedy (or beam) generation on every rank's share, gathered, scored on rank 0.

    mwc eval --model DIR --data SHARD_DIR --out DIR [--split validation] [--language es]

``evaluate`` is collective: every rank generates for its own samples (sample i -> rank i % world,
each exactly once), the (key, reference, prediction) rows are gathered to all ranks, and only the main
process writes ``predictions.jsonl`` and ``metrics.json``. Metrics come from mwc_dist.metrics
(jiwer / sacrebleu) on exactly the rows written, so they can be recomputed from the file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mwc_dist.atomic import write_atomic
from mwc_dist.audio.features import LogMel
from mwc_dist.data.stream import ShardSet, Tokenize, eval_batches
from mwc_dist.inference.decoding import (
    Decoded,
    Guard,
    decode_with_fallback,
    generate_kwargs,
    quiet_transformers,
    torch_decode,
)
from mwc_dist.metrics import compute_metrics


def _features(model, log_mel: LogMel, audio: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    dtype = getattr(model, "dtype", torch.float32)  # not the first parameter's: 4-bit weights are uint8
    return log_mel(audio.to(device)).to(dtype if dtype.is_floating_point else torch.float32)


@torch.no_grad()
def label_loss(model, log_mel: LogMel, batch: dict[str, Any]) -> tuple[float, int]:
    """The training loss on evaluation data: teacher-forced cross-entropy summed over the label tokens, and their
    number (the decoder start prepended as in training). A ZeRO-3 filler batch (no labels) still runs the forward."""
    features = _features(model, log_mel, batch["audio"])
    labels = batch.get("labels")
    if labels is None:
        labels = torch.zeros((features.shape[0], 1), dtype=torch.long)
    labels = labels.to(features.device)
    out = model(input_features=features, labels=labels)  # always: under ZeRO-3 the forward is collective
    tokens = int((labels != -100).sum())
    return (float(out.loss) * tokens, tokens) if tokens else (0.0, 0)


@dataclass
class Generated:
    """One batch's decoding: the greedy texts; with a guard, each row's guarded decoding (Whisper's temperature
    fallback; else None) and the seconds the greedy pass took (features included)."""

    texts: list[str]
    guarded: list[Decoded] | None
    greedy_seconds: float


@torch.no_grad()
def generate_batch(
    model,
    log_mel: LogMel,
    batch: dict[str, Any],
    tokenizer,
    language: str | None,
    task: str,
    max_length: int,
    num_beams: int = 1,
    synced_gpus: bool = False,
    guard: Guard | None = None,
) -> Generated:
    """The batch's predicted texts; with ``guard``, also each row's guarded decoding."""
    began = time.perf_counter()
    features = _features(model, log_mel, batch["audio"])
    languages = {lang for lang in batch["languages"] if lang} or ({language} if language else set())
    prompt = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>
    max_new = min(max_length, model.config.max_target_positions - prompt)
    forced = None
    if len(languages) == 1:
        forced = languages.pop()
    elif languages:  # a mixed-language batch: one forced language per row
        forced = [lang or language for lang in batch["languages"]]
    multilingual = getattr(model.generation_config, "is_multilingual", True)
    kwargs = generate_kwargs(multilingual, forced, task, max_new, num_beams)
    if synced_gpus:  # ZeRO-3: every forward gathers weights from all ranks, so all ranks decode until all are done
        kwargs["synced_gpus"] = True
    if guard is not None:
        spent = [time.perf_counter() - began]  # features + the greedy pass: the decode speed reported is greedy's

        def decode(f, temperature):
            start = time.perf_counter()
            out = torch_decode(model, f, temperature, guard.seed, **kwargs)
            spent[0] += (time.perf_counter() - start) if temperature == guard.temperatures[0] else 0.0
            return out

        greedy, guarded = decode_with_fallback(
            decode, features, guard, lambda ids: tokenizer.decode(ids, skip_special_tokens=True).strip()
        )
        return Generated([g.text for g in greedy], guarded, spent[0])
    with quiet_transformers():  # Whisper's generate warns about its own logits processors on every call
        ids = model.generate(input_features=features, **kwargs)
    texts = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return Generated(texts, None, time.perf_counter() - began)


def evaluate(
    accelerator,
    model,
    processor,
    shards: ShardSet,
    *,
    language: str | None,
    task: str,
    batch_size: int,
    max_length: int,
    out_dir: Path | None,
    limit: int = 0,
    num_beams: int = 1,
    step: int | None = None,
    guard: Guard | None = None,
    with_loss: bool = False,
) -> dict:
    """Collective: all ranks call it. Returns the metrics on every rank; the main process writes the files.

    ``guard``: every row also gets ``prediction_guarded`` (Whisper's temperature fallback) and ``fallback_temperature``,
    the metrics a ``guarded`` section (not under ZeRO-3, whose lock-step cannot follow uneven fallbacks).
    ``with_loss``: the label loss too (``loss``), one more forward per batch."""
    from accelerate.utils import gather_object

    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    fe = processor.feature_extractor
    log_mel = LogMel(fe.feature_size, fe.chunk_length).to(accelerator.device)
    tokenize = Tokenize(processor.tokenizer, language, task, unwrapped.config.max_target_positions)  # as training
    start = time.perf_counter()
    zero3 = _is_zero3(accelerator)
    if zero3 and guard is not None:
        raise ValueError("guarded decoding (temperature fallback) does not run under ZeRO-3; evaluate without it")
    batches = _rank_batches(accelerator, shards, tokenize, batch_size, fe.n_samples, limit, zero3, language)
    decode = functools.partial(
        generate_batch,
        unwrapped,
        log_mel,
        tokenizer=processor.tokenizer,
        language=language,
        task=task,
        max_length=max_length,
        num_beams=num_beams,
        synced_gpus=zero3,
        guard=guard,
    )
    loss_of = functools.partial(label_loss, unwrapped, log_mel) if with_loss else _no_loss
    rows, seconds, greedy_seconds, loss = _transcribe_share(batches, decode, loss_of)
    took = time.perf_counter() - start - loss["seconds"]  # decoding only
    rows = sorted(gather_object(rows), key=lambda r: r["key"])  # collective: every rank's rows
    greedy = greedy_seconds if guard is not None else took
    ranks = gather_object([{"greedy": greedy, "audio": seconds, "all": took, **loss}])  # collective
    if was_training:
        unwrapped.train()
    metrics = score(rows, ranks, rows[0]["language"] or language if rows else language, guard)
    if accelerator.is_main_process and out_dir is not None:
        write_eval(Path(out_dir), rows, metrics | ({"step": step} if step is not None else {}))
    accelerator.wait_for_everyone()
    return metrics


def _no_loss(batch) -> tuple[float, int]:
    return 0.0, 0


def _rank_batches(accelerator, shards, tokenize, batch_size, max_samples, limit, zero3: bool, language):
    """This rank's share of the split; under ZeRO-3 padded with fillers so every rank runs as many forwards."""
    batches = eval_batches(
        shards,
        tokenize,
        batch_size=batch_size,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        max_samples=max_samples,
        limit=limit,
    )
    return _lockstep(accelerator, batches, max_samples, language) if zero3 else batches


def _transcribe_share(batches, decode, loss_of) -> tuple[list[dict], float, float, dict]:
    """This rank's rows (key, reference, prediction[, prediction_guarded]), audio seconds, greedy decode seconds,
    and its label loss (sum over tokens, tokens, seconds spent)."""
    rows, seconds, greedy_seconds = [], 0.0, 0.0
    loss = {"sum": 0.0, "tokens": 0, "seconds": 0.0}
    for batch in batches:
        began = time.perf_counter()
        total, tokens = loss_of(batch)  # a forward on every rank, fillers included (collective under ZeRO-3)
        loss["seconds"] += time.perf_counter() - began
        out = decode(batch)
        if batch.get("filler"):  # ZeRO-3 lock-step: a rank with no data left still joins the collective forward
            continue
        seconds += batch["seconds"]
        greedy_seconds += out.greedy_seconds
        loss["sum"] += total
        loss["tokens"] += tokens
        new = [
            {"key": k, "reference": r, "prediction": p, "language": lang}
            for k, r, p, lang in zip(batch["keys"], batch["texts"], out.texts, batch["languages"])
        ]
        for row, g in zip(new, out.guarded or []):
            row |= {"prediction_guarded": g.text, "fallback_temperature": g.temperature}
        rows += new
    return rows, seconds, greedy_seconds, loss


def score(rows: list[dict], ranks: list[dict], language: str | None, guard: Guard | None) -> dict:
    """Metrics of the gathered rows; ``ranks``: each rank's seconds (greedy decoding, audio, all decoding) and
    label loss (sum over its tokens, tokens)."""
    metrics = compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows], language)
    if guard is not None:
        metrics["guarded"] = compute_metrics(
            [r["reference"] for r in rows], [r["prediction_guarded"] for r in rows], language
        ) | {
            "fallbacks": sum(r["fallback_temperature"] > 0 for r in rows),
            "guard": dataclasses.asdict(guard),
            "decode_seconds": max(r["all"] for r in ranks),  # greedy pass and fallbacks
        }
    metrics["audio_seconds"] = sum(r["audio"] for r in ranks)
    metrics["decode_seconds"] = max(r["greedy"] for r in ranks)
    tokens = sum(r["tokens"] for r in ranks)
    metrics["loss"] = sum(r["sum"] for r in ranks) / tokens if tokens else None
    metrics["real_time_factor"] = metrics["decode_seconds"] / max(metrics["audio_seconds"], 1e-9)
    return metrics


def _is_zero3(accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3


def _lockstep(accelerator, batches, n_samples: int, language: str | None):
    """Collective: the ranks' batches, in step; a rank out of batches decodes a silent filler (results dropped)
    while another still has some. Under ZeRO-3 a rank that stopped calling forward would hang the others."""
    filler = {"audio": torch.zeros(1, n_samples), "languages": [language], "filler": True}
    batches = iter(batches)
    while True:
        batch = next(batches, None)
        more = torch.tensor([0.0 if batch is None else 1.0], device=accelerator.device)
        if accelerator.reduce(more, reduction="sum").item() == 0:  # collective: does any rank still have data?
            return
        yield filler if batch is None else batch


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def write_eval(out_dir: Path, rows: list[dict], metrics: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))


def run_eval(
    model_dir: str,
    data_dir: str,
    out_dir: str,
    split: str = "validation",
    language: str | None = None,
    task: str = "transcribe",
    batch_size: int = 8,
    max_length: int = 128,
    limit: int = 0,
    num_beams: int = 1,
    guard: Guard | None = None,
    with_loss: bool = False,
) -> dict:
    """`mwc eval`: load a model folder and evaluate it on a shard folder's split (greedy, and guarded with
    ``guard``; the label loss with ``with_loss``)."""
    from mwc_dist.data.stream import shard_folder
    from mwc_dist.dist import build_accelerator
    from mwc_dist.loop.config import TrainConfig
    from mwc_dist.models.build import build_model
    from mwc_dist.models.config import ModelConfig

    accelerator = build_accelerator(TrainConfig(), report_to=[])
    model, processor = build_model(ModelConfig(base_model=model_dir))
    model.to(accelerator.device)
    shards = shard_folder(data_dir, split)
    metrics = evaluate(
        accelerator,
        model,
        processor,
        shards,
        language=language,
        task=task,
        batch_size=batch_size,
        max_length=max_length,
        out_dir=Path(out_dir),
        limit=limit,
        num_beams=num_beams,
        guard=guard,
        with_loss=with_loss,
    )
    if accelerator.is_main_process:
        print(json.dumps(_rounded(metrics), indent=2))
    return metrics
