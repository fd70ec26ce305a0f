"""Long recordings transcribed and evaluated the way Whisper's own long-form decoders do it.

    mwc transcribe MODEL talk.mp3 --format srt            # sequential, the model's timestamps (PyTorch backend)
    mwc eval --long-form MODEL --data talks/ --out eval/  # recordings with reference segments (SRT/VTT or JSONL)

**Sequential** decoding is transformers' Whisper ``generate`` on the whole recording (what its pipeline does with
``return_timestamps=True`` and no chunking): one window at a time, the next window starting at the last timestamp
the model predicted, the text decoded so far as the ``<|startofprev|>`` prompt, and OpenAI's temperature fallback
when a window's gzip compression ratio is over 2.4 or its mean log-probability under -1. The segments and their
times are the model's own predictions. A model that never predicts a timestamp cannot be decoded that way (each
window would be cut blindly at its end): it is transcribed by ``inference.transcribe`` instead, cut in pauses,
and the result says so (``mode``). **Chunked** decoding is that pause-cut path for every model, without context.

``evaluate_long_form`` scores whole recordings: corpus WER/CER over the recordings' full texts (jiwer, after
Whisper's normaliser), loops (an n-gram repeated 3+ times in a row), truncations (fewer than 80 % of the
reference's words), the median distance from each predicted segment's start to the nearest reference segment
start, and decode time. Ranks take recordings ``i % world_size`` and rank 0 gathers them.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.inference.backends import Backend
from mwc_dist.inference.decoding import Guard
from mwc_dist.inference.windows import Segment, transcribe

# most new tokens per second of window by default (10 s: 80; 30 s: 220, the room a full prompt leaves); fast
# speech is ~6
TOKENS_PER_SECOND = 8
TRUNCATED_BELOW = 0.8  # a hypothesis with fewer words than this share of the reference's is truncated


@dataclass
class LongFormResult:
    segments: list[Segment]
    mode: str  # "sequential" (the model's timestamps) or "pause cuts" (why, after a colon)
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


def sequential_segments(
    backend: Backend,
    wave: np.ndarray,
    language: str | None,
    task: str,
    guard: Guard | None,
    condition_on_prev: bool = True,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
) -> list[Segment] | None:
    """The model's own segments (transformers' sequential long-form generate); None when it closed no segment
    with a timestamp (generate forces the first timestamp; a model never trained on them stops there).

    ``max_new_tokens`` per window (None: ``TOKENS_PER_SECOND`` x the window; at most what a full prompt leaves of
    the decoder): a window that loops stops there instead of running on, once per fallback temperature."""
    from mwc_dist.inference.backends import PyTorchBackend
    from mwc_dist.inference.decoding import quiet_transformers

    assert isinstance(backend, PyTorchBackend)
    fe = backend.processor.feature_extractor
    # longer than one window: every frame, for generate's long-form loop; else padded to the window (short-form)
    whole = {"truncation": False, "padding": "longest"} if len(wave) > fe.n_samples else {}
    features = fe(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True, **whole)
    window = fe.nb_max_frames * fe.hop_length / SAMPLE_RATE
    kwargs = dict(
        return_timestamps=True, return_segments=True, num_beams=num_beams, condition_on_prev_tokens=condition_on_prev
    )
    # after a prompt of up to half the decoder (223 tokens + <|startofprev|>) and the 3-token start
    room = backend.model.config.max_target_positions // 2 - 4
    kwargs["max_new_tokens"] = min(max_new_tokens or int(TOKENS_PER_SECOND * window), room)
    if guard is not None:
        kwargs |= dict(
            temperature=guard.temperatures,
            compression_ratio_threshold=guard.compression_ratio_threshold,
            logprob_threshold=guard.logprob_threshold,
        )
    if backend.multilingual:
        kwargs |= {"task": task} | ({"language": language} if language else {})
    with torch.no_grad(), quiet_transformers():
        out = backend.model.generate(features.input_features, attention_mask=features.attention_mask, **kwargs)
    begin = backend.processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
    raw = out["segments"][0] if isinstance(out, dict) and "segments" in out else []
    if not raw:  # short-form: one window, one sequence of tokens
        ids = out["sequences"][0] if isinstance(out, dict) else out[0]
        return _short_segments(backend, ids.tolist(), begin, len(wave) / SAMPLE_RATE)
    if not any(sum(int(t) >= begin for t in s["tokens"]) >= 2 for s in raw):
        return None  # only the opening timestamp generate forces: the model never closed a segment
    tok = backend.processor.tokenizer
    return [
        Segment(float(s["start"]), float(s["end"]), tok.decode(s["tokens"], skip_special_tokens=True).strip())
        for s in raw
    ]


def _short_segments(backend: Backend, ids: list[int], begin: int, duration: float) -> list[Segment] | None:
    """Segments of one window's tokens: text between pairs of timestamp tokens."""
    tok = backend.processor.tokenizer
    if sum(t >= begin for t in ids) < 2:  # only the forced opening timestamp: the model never closed a segment
        return None
    segments, start, text = [], None, []
    for t in ids:
        if t >= begin:
            seconds = (t - begin) * 0.02
            if start is None:
                start = seconds
            elif text:
                segments.append(Segment(start, min(seconds, duration), tok.decode(text).strip()))
                start, text = None, []
            else:
                start = seconds
        elif t < backend.eot and start is not None:
            text.append(t)
    if text and start is not None:  # a last segment with no closing timestamp ends with the audio
        segments.append(Segment(start, duration, tok.decode(text).strip()))
    return segments


def transcribe_long(
    backend: Backend,
    wave: np.ndarray,
    language: str | None = None,
    task: str = "transcribe",
    guard: Guard | None = None,
    max_new_tokens: int = 128,
    sequential: bool = True,
    condition_on_prev: bool = True,
) -> LongFormResult:
    """A whole recording: sequentially with the model's timestamps where it can (see the module docstring),
    else cut in pauses (``mode`` says which, and why)."""
    from mwc_dist.inference.backends import PyTorchBackend

    start = time.perf_counter()
    wave = np.asarray(wave, dtype=np.float32)
    reason = "asked for chunked decoding"
    if sequential and isinstance(backend, PyTorchBackend):
        # its own cap per window (TOKENS_PER_SECOND); ``max_new_tokens`` is the pause-cut windows' (text only)
        segments = sequential_segments(backend, wave, language, task, guard, condition_on_prev)
        if segments is not None:
            return LongFormResult(segments, "sequential", time.perf_counter() - start)
        reason = "the model predicts no timestamps (train it with data.timestamp_probability > 0)"
    elif sequential:
        reason = f"sequential decoding with timestamps runs on --backend pytorch, not {type(backend).__name__}"
    segments = transcribe(backend, wave, language, task, max_new_tokens, guard=guard)
    return LongFormResult(segments, f"pause cuts: {reason}", time.perf_counter() - start)


# -------------------------------------------------------------------------------------------- evaluate
@dataclass
class Recording:
    key: str
    wave: np.ndarray
    segments: list[Segment]  # the reference
    language: str | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def start_errors(predicted: list[Segment], reference: list[Segment]) -> list[float]:
    """|start - the nearest reference segment start| for every predicted segment with text."""
    starts = [s.start for s in reference]
    return [min(abs(p.start - r) for r in starts) for p in predicted if p.text and starts]


def load_recordings(source: str | Path, language: str | None = None) -> list[Recording]:
    """Recordings with reference segments: a source ``mwc shard`` reads as recordings (audio with an SRT/VTT
    beside it, or a JSON/JSONL with ``segments``), each decoded whole; bad segments are left out of the reference."""
    from mwc_dist.audio.decode import load_audio
    from mwc_dist.data.config import DataConfig
    from mwc_dist.data.recordings import check_segments
    from mwc_dist.data.sources import list_items

    items, rejects = list_items(DataConfig(source=str(source), language=language))
    recordings = []
    for item in items:
        if item.segments is None:
            continue
        wave = load_audio(item.audio, item.audio)
        segs = check_segments(item.segments, float("inf"), len(wave) / SAMPLE_RATE)
        ref = [Segment(s.start, s.end, s.text) for s in segs if not s.problem]
        recordings.append(Recording(item.key, wave, ref, item.language))
    if not recordings:
        raise ValueError(f"{source}: no recording with reference segments (audio + .srt/.vtt, or rows with segments)")
    return recordings


@dataclass
class LongFormEval:
    """Options of ``evaluate_long_form`` (the decoding of every recording)."""

    language: str | None = None
    task: str = "transcribe"
    guard: Guard | None = field(default_factory=Guard)
    max_new_tokens: int = 128
    chunked: bool = True  # also decode every recording cut in pauses, without context


def evaluate_long_form(
    backend: Backend, recordings: list[Recording], options: LongFormEval, rank: int = 0, world_size: int = 1
) -> list[dict]:
    """One row per recording of this rank's share (``i % world_size``): reference, sequential and chunked
    hypotheses with their segments, mode and decode time."""
    rows = []
    for recording in recordings[rank::world_size]:
        language = recording.language or options.language
        seq = transcribe_long(backend, recording.wave, language, options.task, options.guard, options.max_new_tokens)
        row = {
            "key": recording.key,
            "language": language,
            "seconds": round(len(recording.wave) / SAMPLE_RATE, 3),
            "reference": recording.text,
            "reference_segments": [s.__dict__ for s in recording.segments],
            "prediction": seq.text,
            "segments": [s.__dict__ for s in seq.segments],
            "mode": seq.mode,
            "decode_seconds": round(seq.seconds, 3),
            "start_errors": start_errors(seq.segments, recording.segments),
        }
        if options.chunked:
            chunked = transcribe_long(
                backend, recording.wave, language, options.task, options.guard, options.max_new_tokens, sequential=False
            )
            row |= {"chunked_prediction": chunked.text, "chunked_decode_seconds": round(chunked.seconds, 3)}
        rows.append(row)
    return rows


def score_long_form(rows: list[dict], language: str | None) -> dict:
    """Corpus metrics over whole recordings (jiwer/sacrebleu), loops, truncations, median start error."""
    from mwc_dist.metrics import compute_metrics, normalizer, repeated_run

    rows = sorted(rows, key=lambda r: r["key"])
    refs = [r["reference"] for r in rows]
    norm = normalizer(language)
    out = {"sequential": compute_metrics(refs, [r["prediction"] for r in rows], language)}
    if all("chunked_prediction" in r for r in rows):
        out["chunked"] = compute_metrics(refs, [r["chunked_prediction"] for r in rows], language)
    for name, field_ in (("sequential", "prediction"), ("chunked", "chunked_prediction")):
        if name not in out:
            continue
        hyps = [norm(r[field_]) for r in rows]
        out[name]["loops"] = sum(
            repeated_run(h) is not None and repeated_run(norm(r["reference"])) is None for h, r in zip(hyps, rows)
        )
        out[name]["truncated"] = sum(
            len(h.split()) < TRUNCATED_BELOW * len(norm(r["reference"]).split()) for h, r in zip(hyps, rows)
        )
    errors = [e for r in rows for e in r["start_errors"]]
    out["sequential"]["median_start_error"] = statistics.median(errors) if errors else None
    out["sequential"]["decode_seconds"] = sum(r["decode_seconds"] for r in rows)
    out["sequential"]["modes"] = sorted({r["mode"] for r in rows})
    if "chunked" in out:
        out["chunked"]["decode_seconds"] = sum(r["chunked_decode_seconds"] for r in rows)
    out["num_recordings"], out["audio_seconds"] = len(rows), sum(r["seconds"] for r in rows)
    return out


def run_long_form_eval(
    model_dir: str | Path,
    source: str | Path,
    out_dir: str | Path,
    backend_kind: str = "pytorch",
    options: LongFormEval | None = None,
) -> dict | None:
    """``mwc eval --long-form``: every rank decodes its share, rank 0 gathers, scores and writes
    ``predictions_long.jsonl`` and ``metrics_long.json`` (collective under ``accelerate launch``)."""
    from accelerate.utils import gather_object

    from mwc_dist.dist import build_process_state
    from mwc_dist.inference.backends import load_backend

    options = options or LongFormEval()
    state = build_process_state()  # gloo on CPU; refuses a launcher/world mismatch
    backend = load_backend(backend_kind, model_dir)
    recordings = load_recordings(source, options.language)
    rows = evaluate_long_form(backend, recordings, options, state.process_index, state.num_processes)
    if state.num_processes > 1:
        rows = gather_object(rows)  # collective: every rank's rows, on every rank
    if not state.is_main_process:
        return None
    metrics = score_long_form(rows, options.language)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sorted(rows, key=lambda r: r["key"]))
    (out_dir / "predictions_long.jsonl").write_text(lines, encoding="utf-8")
    (out_dir / "metrics_long.json").write_text(json.dumps(metrics, indent=2))
    return metrics
