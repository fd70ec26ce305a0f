"""Audio of any length through a backend: cut into windows of at most the model's length (30 s for OpenAI's models),
in pauses between words where there are any, each transcribed on its own; the segments as text, JSON, SRT or WebVTT
(``mwc transcribe``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.inference.backends import Backend
from mwc_dist.inference.decoding import Guard


@dataclass
class Segment:
    start: float
    end: float
    text: str


def cut_points(wave: np.ndarray, size: int, search: int = 2 * SAMPLE_RATE, frame: int = 320) -> list[tuple[int, int]]:
    """(start, end) spans of at most ``size`` samples covering ``wave``, each cut in a pause where there is one.

    A span that must end before the audio does ends at the quietest 20-ms frame of its last ``search`` samples
    (the latest of equally quiet ones), so a cut falls between words rather than through one.
    """
    spans, start = [], 0
    while len(wave) - start > size:
        low = start + size - min(search, size // 2)
        frames = (start + size - low) // frame
        energy = np.square(wave[low : low + frames * frame].reshape(frames, frame)).mean(axis=1)
        quietest = frames - 1 - int(np.argmin(energy[::-1]))
        end = low + quietest * frame + frame // 2
        spans.append((start, end))
        start = end
    spans.append((start, len(wave)))
    return spans


def transcribe(
    backend: Backend,
    wave: np.ndarray,
    language: str | None = None,
    task: str = "transcribe",
    max_new_tokens: int = 128,
    batch_size: int = 8,
    guard: Guard | None = None,
) -> list[Segment]:
    """Cut ``wave`` (16 kHz mono) into model-length windows, in pauses (``cut_points``), and transcribe each
    (with Whisper's temperature fallback when ``guard`` is given)."""
    spans = cut_points(np.asarray(wave, dtype=np.float32), backend.window_samples)
    segments = []
    for i in range(0, len(spans), batch_size):
        chunk = spans[i : i + batch_size]
        ids = backend.guarded(backend.features([wave[a:b] for a, b in chunk]), language, task, max_new_tokens, guard)
        for (a, b), row in zip(chunk, ids):
            text = backend.processor.tokenizer.decode(row, skip_special_tokens=True).strip()
            segments.append(Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, text))
    return segments


def _srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def format_output(results: dict[str, list[Segment]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                path: {"text": " ".join(s.text for s in segs if s.text), "segments": [s.__dict__ for s in segs]}
                for path, segs in results.items()
            },
            ensure_ascii=False,
            indent=2,
        )
    if fmt in ("srt", "vtt"):
        blocks = []
        for segs in results.values():
            for s in segs:
                if s.text:
                    start, end = _srt_time(s.start), _srt_time(s.end)
                    if fmt == "vtt":  # WebVTT: a dot before the milliseconds, no cue numbers needed
                        blocks.append(f"{start.replace(',', '.')} --> {end.replace(',', '.')}\n{s.text}\n")
                    else:
                        blocks.append(f"{len(blocks) + 1}\n{start} --> {end}\n{s.text}\n")
        return ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(blocks)
    return "\n".join(" ".join(s.text for s in segs if s.text) for segs in results.values())
