"""Pseudo-labels for long recordings without transcripts: the teacher transcribes each one sequentially with its
own timestamps, and its segments are cut into training windows as ``mwc shard`` cuts a subtitled recording.

    mwc pseudo-label --long-form --model TEACHER --data RECORDINGS --out OUT [--language es]
    accelerate launch -m mwc_dist.cli pseudo-label --long-form ...   # recording i -> rank i % world

RECORDINGS is any source of audio files (a folder, a CSV/JSON manifest; transcripts not needed). Each recording
becomes OUT/<key>.tar: one sample per window (data/recordings.py ``plan_windows``: at most --window-seconds, cut
only between the teacher's segments), its json holding ``teacher_text``, ``teacher_segments`` (times relative to
the window), ``prev_text`` and ``quality`` (the window's gzip compression ratio, repeated n-gram, and the teacher's
mean token log-probability on it, teacher-forced with its timestamps), and OUT/<key>.quality.jsonl beside it, so
``data.text_field: teacher_text`` trains on them with the quality filter applied per window. A recording's files
are written aside and renamed (its tar last): a killed run started again skips finished recordings. Rank 0 writes
OUT/train.manifest.json and OUT/pseudo_labels.json.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.data.config import DataConfig


def _windows(long, duration: float, window: float):
    """The teacher's segments (inference.Segment) cut into windows (data/recordings.py)."""
    from mwc_dist.data.recordings import Segment, check_segments, plan_windows

    segs = [Segment(s.start, min(s.end, duration), s.text, f"teacher segment {i}") for i, s in enumerate(long.segments)]
    return plan_windows(check_segments(segs, window, duration), window, duration)


@torch.no_grad()
def _teacher_logprob(teacher, tokenize, wave, meta: dict[str, Any]) -> float:
    """The teacher's mean log-probability of the window's own label (timestamps included), teacher-forced."""
    from mwc_dist.data.labels import IGNORE, LabelPlan, build_sequence

    inputs, labels = build_sequence(tokenize, meta | {"segments": meta["teacher_segments"]}, LabelPlan(timestamps=True))
    features = teacher.features([wave])
    logits = teacher.model(input_features=features, decoder_input_ids=torch.tensor([inputs])).logits[0]
    target = torch.tensor(labels)
    keep = target != IGNORE
    logp = logits[keep].float().log_softmax(-1).gather(-1, target[keep][:, None])
    return float(logp.mean())


def label_recording(teacher, item, out: Path, *, language: str | None, window: float, guard) -> int:
    """One recording -> OUT/<key>.tar + OUT/<key>.quality.jsonl; returns its number of windows."""
    from mwc_dist.audio.decode import load_audio
    from mwc_dist.data.pseudo import _write_tar, quality_of
    from mwc_dist.data.recordings import window_fields
    from mwc_dist.data.shard import _payload
    from mwc_dist.data.stream import Tokenize
    from mwc_dist.longform import transcribe_long

    wave = load_audio(item.audio, item.audio)
    duration = len(wave) / SAMPLE_RATE
    long = transcribe_long(teacher, wave, item.language or language, "transcribe", guard)
    if long.mode != "sequential":
        raise SystemExit(f"pseudo-label --long-form: {item.source}: {long.mode}; the teacher must predict timestamps")
    positions = teacher.model.config.max_target_positions
    tokenize = Tokenize(teacher.processor.tokenizer, item.language or language, "transcribe", positions)
    samples, rows = [], []
    settings = {"sample_rate": SAMPLE_RATE, "shard_audio_format": "flac"}
    for n, win in enumerate(_windows(long, duration, window)):
        fields, first, last = window_fields(win, n, item.key, SAMPLE_RATE)
        key = fields["key"]
        meta = fields | {
            "text": "",  # no reference: the teacher's text is the label
            "language": item.language or language,
            "source": item.source,
            "teacher_text": win.text,
            "teacher_segments": win.relative_segments(),
        }
        lp = _teacher_logprob(teacher, tokenize, wave[first:last], meta)
        meta["quality"] = quality_of(win.text, lp, None, meta["language"])
        samples.append({"__key__": key, "flac": _payload(wave[first:last], settings), "json": _json(meta)})
        rows.append({"key": key, "teacher_text": win.text, "quality": meta["quality"]})
    quality = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    tmp = out / f".tmp-{item.key}.quality.jsonl"
    tmp.write_text(quality)
    tmp.replace(out / f"{item.key}.quality.jsonl")
    _write_tar(out / f"{item.key}.tar", samples)  # last: its presence means done
    return len(samples)


def _json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()


def pseudo_label_recordings(
    model_dir: str | Path,
    source: str | Path,
    out: str | Path,
    *,
    language: str | None = None,
    window: float = 30.0,
    guard=None,
    log=print,
) -> dict[str, Any] | None:
    """Label this rank's unfinished recordings; rank 0 writes the manifest and summary (collective)."""
    from mwc_dist.data.pseudo import _claim
    from mwc_dist.data.sources import list_items
    from mwc_dist.dist import build_process_state
    from mwc_dist.inference.backends import load_backend

    state = build_process_state()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items, rejects = list_items(DataConfig(source=str(source), language=language, allow_missing_text=True))
    run = {"teacher": str(Path(model_dir).resolve()), "long_form": True, "language": language, "window": window}
    if state.is_main_process:
        _claim(out, run)
    state.wait_for_everyone()
    mine = [it for i, it in enumerate(items) if i % state.num_processes == state.process_index]
    todo = [it for it in mine if not (out / f"{it.key}.tar").is_file()]
    log(f"rank {state.process_index}: {len(mine) - len(todo)} of its {len(mine)} recordings already labelled")
    if todo:
        teacher = load_backend("pytorch", model_dir)
        for item in todo:
            n = label_recording(teacher, item, out, language=language, window=window, guard=guard)
            log(f"labelled {item.source}: {n} windows")
    state.wait_for_everyone()
    summary = _finish(out, items, rejects, window, run) if state.is_main_process else None
    state.wait_for_everyone()
    return summary


def _finish(out: Path, items, rejects, window: float, run: dict[str, Any]) -> dict[str, Any]:
    """OUT/train.manifest.json over the recordings' shards, and OUT/pseudo_labels.json."""
    from mwc_dist.data.pseudo import QualityFilter, quality_file
    from mwc_dist.data.shard import sha256_file
    from mwc_dist.data.stream import tar_samples

    shards, rows = [], []
    for item in items:
        tar = out / f"{item.key}.tar"
        quality = [json.loads(x) for x in quality_file(tar).read_text().splitlines()]
        rows += quality
        if quality:  # seconds from the samples' metadata, no audio decoded
            seconds = sum(json.loads(s["json"])["duration"] for s in tar_samples([str(tar)]))
            entry = {"shard": tar.name, "num_samples": len(quality), "seconds": round(seconds, 4)}
            shards.append(entry | {"bytes": tar.stat().st_size, "sha256": sha256_file(tar)})
    seconds = sum(s["seconds"] for s in shards)
    manifest = {
        "split": "train",
        "num_samples": sum(s["num_samples"] for s in shards),
        "without_text": 0,
        "num_recordings": len(shards),
        "num_windows": sum(s["num_samples"] for s in shards),
        "num_shards": len(shards),
        "seconds": round(seconds, 3),
        "hours": round(seconds / 3600, 6),
        "shards": shards,
        "config": {"max_duration_seconds": window},
        "pseudo_labelled": True,
    }
    (out / "train.manifest.json").write_text(json.dumps(manifest, indent=2))
    default = QualityFilter()
    summary = {
        "split": "train",
        "run": run,
        "num_recordings": len(shards),
        "num_samples": len(rows),
        "rejected_items": [r.to_json() for r in rejects],
        "dropped_by_default_filter": dict(
            Counter(filter(None, (default.reason(r["teacher_text"], r["quality"]) for r in rows)))
        ),
    }
    (out / "pseudo_labels.json").write_text(json.dumps(summary, indent=2))
    return summary
