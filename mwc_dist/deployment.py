"""Scores in the tools people deploy with, called as their users call them: faster-whisper's
``WhisperModel.transcribe`` on a CTranslate2 export (its defaults: beam 5, timestamps, the previous text as the
prompt, temperature fallback) and transformers' ``pipeline("automatic-speech-recognition")`` on a Hugging Face
folder (chunked in 30-s windows, as its docs show for long audio). The demo's deployment table comes from here;
tests/models/test_deploy.py checks the same loaders run every export.

    run_deployment_eval("faster-whisper", "exports/student/ct2", items, "eval/deploy/ood/student-faster-whisper")

Each file is decoded alone, as a user transcribes files (the pipeline batches the 30-s chunks of one recording,
4 at a time; batching 8 short clips together was no faster on this CPU: 5.5 s a clip on 8 clips, against 4.5 s
one by one on 4 others). The first 5 s of the first input are decoded once before the clock starts, so loading
and first-call allocation are not counted.
The language is given (the test set is Spanish); everything else is the tool's default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mwc_dist.audio.decode import SAMPLE_RATE

TOOLS = ("faster-whisper", "pipeline")
COMPUTE_TYPE = "int8"  # faster-whisper on CPU: what its README benchmarks and users pick; the same for every model
CHUNK_SECONDS = 30


@dataclass
class Item:
    key: str
    wave: np.ndarray
    reference: str


def faster_whisper(ct2_dir: str | Path, language: str, compute_type: str = COMPUTE_TYPE, threads: int = 2):
    """wave -> text through faster-whisper's ``transcribe`` with its defaults (the language given)."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)

    def decode(wave: np.ndarray) -> str:
        segments, _ = model.transcribe(wave, language=language)
        return " ".join(s.text.strip() for s in segments)

    return decode


def hf_pipeline(model_dir: str | Path, language: str, batch_size: int = 4):
    """wave -> text through transformers' ASR pipeline, chunked (30 s; the pipeline's default stride)."""
    from transformers import pipeline

    from mwc_dist.inference.decoding import quiet_transformers

    with quiet_transformers():
        asr = pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu")
    kwargs = {"language": language, "task": "transcribe"}

    def decode(wave: np.ndarray) -> str:
        inputs = {"raw": wave, "sampling_rate": SAMPLE_RATE}
        with quiet_transformers():
            out = asr(inputs, chunk_length_s=CHUNK_SECONDS, batch_size=batch_size, generate_kwargs=kwargs)
        return out["text"].strip()

    return decode


def load_tool(tool: str, model: str | Path, language: str) -> Callable[[np.ndarray], str]:
    if tool == "faster-whisper":
        return faster_whisper(model, language)
    if tool == "pipeline":
        return hf_pipeline(model, language)
    raise ValueError(f"unknown deployment tool {tool!r}; choose from {', '.join(TOOLS)}")


def run_deployment_eval(tool: str, model: str | Path, items: list[Item], out: str | Path, language: str) -> dict:
    """Decode every item with ``tool``; predictions.jsonl and metrics.json (jiwer/sacrebleu, decode seconds) in
    ``out``."""
    from tqdm import tqdm

    from mwc_dist.evaluate import write_eval
    from mwc_dist.metrics import compute_metrics

    decode = load_tool(tool, model, language)
    decode(items[0].wave[: 5 * SAMPLE_RATE])  # warm-up on 5 s, not timed (a whole recording can take minutes)
    start = time.perf_counter()
    predictions = [decode(it.wave) for it in tqdm(items, desc=f"{tool} {Path(model).parent.name}", unit="file")]
    took = time.perf_counter() - start
    rows = [
        {"key": it.key, "reference": it.reference, "prediction": p, "language": language}
        for it, p in zip(items, predictions)
    ]
    metrics = compute_metrics([r["reference"] for r in rows], predictions, language)
    seconds = sum(len(it.wave) for it in items) / SAMPLE_RATE
    metrics |= {
        "tool": tool,
        "model": str(model),
        "compute_type": COMPUTE_TYPE if tool == "faster-whisper" else "float32",
        "num_samples": len(rows),
        "audio_seconds": seconds,
        "decode_seconds": took,
    }
    write_eval(Path(out), rows, metrics)
    return metrics


def clip_items(shard_dir: str | Path, split: str, limit: int) -> list[Item]:
    """The first ``limit`` clips of a shard split, with their keys."""
    from mwc_dist.data.stream import first_clips

    return [Item(c["key"], c["wave"], c["text"]) for c in first_clips(shard_dir, split, limit)]


def recording_items(source: str | Path, language: str | None = None) -> list[Item]:
    """Whole recordings with their reference transcripts (audio + SRT, as ``mwc eval --long-form`` reads them)."""
    from mwc_dist.longform import load_recordings

    return [Item(r.key, r.wave, r.text) for r in load_recordings(source, language)]
