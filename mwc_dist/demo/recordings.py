"""Long recordings for the demo's long-form test: clips of a rendered corpus joined with pauses, true times kept.

    make_recordings(demo_output/data/ood, demo_output/data/ood-long)   # -> talk_000.flac + talk_000.srt, ...

Each clip is trimmed to its voice (espeak pads with silence), so a reference segment starts where the speech does;
clips follow one another in corpus order with pauses of 0.5-1.5 s (seeded), split into as many recordings of near
equal length as make 60-90 s on average (the demo's 48 clips: 3 of ~85 s). The folder is a source ``mwc shard``
and ``mwc eval --long-form`` read as recordings.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from mwc_dist.audio.decode import SAMPLE_RATE


def _voiced(wave: np.ndarray) -> np.ndarray:
    voiced = np.flatnonzero(np.abs(wave) > 0.01 * np.abs(wave).max())
    return wave[voiced[0] : voiced[-1] + 1] if voiced.size else wave


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_recordings(
    corpus: str | Path,
    out: str | Path,
    *,
    seconds: tuple[float, float] = (60.0, 90.0),
    pauses: tuple[float, float] = (0.5, 1.5),
    split: str = "test",
    seed: int = 0,
) -> list[Path]:
    """Recordings (FLAC + SRT) from the ``split`` rows of ``corpus/metadata.csv``; reuses a finished folder."""
    from mwc_dist.audio.decode import load_audio

    corpus, out = Path(corpus), Path(out)
    if (out / ".complete").is_file():
        return sorted(out.glob("*.flac"))
    with open(corpus / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == split]
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    waves = [_voiced(load_audio(corpus / row["file_name"], normalize=True)) for row in rows]
    gaps = [rng.uniform(*pauses) for _ in rows]
    written: list[Path] = []
    for group in _groups([len(w) / SAMPLE_RATE + g for w, g in zip(waves, gaps)], seconds):
        pieces: list[np.ndarray] = []
        cues: list[tuple[float, float, str]] = []
        t = 0.0
        for i in group:
            pause = np.zeros(int(gaps[i] * SAMPLE_RATE), np.float32)
            t += len(pause) / SAMPLE_RATE
            cues.append((t, t + len(waves[i]) / SAMPLE_RATE, rows[i]["text"]))
            t += len(waves[i]) / SAMPLE_RATE
            pieces += [pause, waves[i]]
        written.append(_write(out / f"talk_{len(written):03d}.flac", pieces, cues))
    (out / ".complete").write_text(f"{len(written)} recordings\n")
    return written


def _groups(lengths: list[float], seconds: tuple[float, float]) -> list[list[int]]:
    """Consecutive clips split into as many recordings as fit ``seconds`` on average, of near-equal length."""
    total = sum(lengths)
    count = max(1, round(total / (sum(seconds) / 2)))
    groups, current, done = [], [], 0.0
    for i, length in enumerate(lengths):
        current.append(i)
        done += length
        if done >= total * (len(groups) + 1) / count and len(groups) < count - 1:
            groups.append(current)
            current = []
    return groups + [current] if current else groups


def _write(path: Path, pieces: list[np.ndarray], cues: list[tuple[float, float, str]]) -> Path:
    """The recording (0.5 s of silence after its last sentence) and its SRT beside it."""
    from mwc_dist.audio.encode import write_audio

    write_audio(path, np.concatenate([*pieces, np.zeros(SAMPLE_RATE // 2, np.float32)]), SAMPLE_RATE)
    srt = "".join(f"{i}\n{_srt_time(s)} --> {_srt_time(e)}\n{text}\n\n" for i, (s, e, text) in enumerate(cues, 1))
    path.with_suffix(".srt").write_text(srt, encoding="utf-8")
    return path
