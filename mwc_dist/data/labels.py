"""Whisper's training sequences, as its own training writes them: with timestamps, and with the previous text.

A window (or a clip: one segment from 0 to its duration) becomes one decoder sequence::

    [<|startofprev|> previous text]  <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|> text <|endoftext|>
    [<|startofprev|> previous text]  <|startoftranscript|> <|lang|> <|transcribe|> <|0.48|> text <|2.10|>
                                     <|2.70|> text <|5.00|> <|endoftext|>

Whether a sample gets timestamps (data.timestamp_probability) and its prompt (data.condition_on_prev_probability;
only where it has a previous text) is drawn per (seed, epoch, key), so a resumed run draws the same. The decoder
reads the sequence without its last token and learns to predict it shifted by one; the prompt and the
<|startoftranscript|> after it are given, never learned (their label positions are -100). The prompt keeps the
last 223 tokens of the previous text, as Whisper's decoder does, and is cut further so the whole sequence stays
within the decoder's positions. Timestamps step 0.02 s (Whisper's 1,501 tokens ``<|0.00|>`` .. ``<|30.00|>``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

IGNORE = -100
MAX_PROMPT_TOKENS = 223  # Whisper: n_text_ctx // 2 - 1
TIME_STEP = 0.02
NUM_TIMESTAMPS = 1501


@dataclass(frozen=True)
class LabelPlan:
    """The decoder sequence drawn for one sample: timestamps or not, the previous-text prompt or not."""

    timestamps: bool = False
    prompt: bool = False


def plan_labels(
    samples: Iterator[dict], seed: int, epoch: int | str, timestamp_p: float, prev_p: float, per_draw: bool = False
) -> Iterator[dict]:
    """Attach each sample's LabelPlan, drawn from (seed, epoch, key): the same on every run and after a resume.
    ``per_draw`` (an endless stream, ``epoch`` naming its rank and worker): each draw of a sample draws anew."""
    for n, sample in enumerate(samples):
        draw = f"-{n}" if per_draw else ""
        rng = random.Random(f"{seed}-{epoch}{draw}-{sample['__key__']}-labels")
        timestamps, prompt = rng.random() < timestamp_p, rng.random() < prev_p
        yield sample | {"__label__": LabelPlan(timestamps, prompt)}


def segments_of(meta: dict[str, Any], speed: float = 1.0) -> list[dict[str, Any]]:
    """A sample's segments, in seconds of the audio as trained (``speed``: its speed perturbation); a clip is one
    segment from 0 to its duration."""
    segments = meta.get("segments") or [{"start": 0.0, "end": meta["duration"], "text": meta["text"]}]
    return [s | {"start": s["start"] / speed, "end": s["end"] / speed} for s in segments]


def timestamp_index(seconds: float) -> int:
    """The timestamp token's index (``<|0.00|>`` = 0) nearest to ``seconds``, within Whisper's 30 s."""
    return min(NUM_TIMESTAMPS - 1, max(0, round(seconds / TIME_STEP)))


def build_sequence(tokenize, meta: dict[str, Any], plan: LabelPlan | None, speed: float = 1.0) -> tuple[list, list]:
    """(decoder input, labels) of one sample (module docstring); labels -100 where nothing is learned. A sample
    whose label the decoder cannot hold (Tokenize.fits) gets no loss at all."""
    plan = plan or LabelPlan()
    language = meta.get("language")
    label = tokenize.timed(segments_of(meta, speed), language) if plan.timestamps else None
    if label is None or not tokenize.fits(label):  # no timestamps drawn, or they do not fit: the plain label
        label = tokenize(meta["text"], language)
    if not tokenize.fits(label):
        return [tokenize.sot], [IGNORE]
    prompt = tokenize.prompt(meta.get("prev_text") or "", room=tokenize.room(label)) if plan.prompt else []
    sequence = prompt + [tokenize.sot] + label
    labels = sequence[1:]
    labels[: len(prompt)] = [IGNORE] * len(prompt)  # the prompt and the <|startoftranscript|> after it are given
    return sequence[:-1], labels


def batch_sequences(
    samples: list[dict[str, Any]], metas: list[dict[str, Any]], tokenize, pad_id: int
) -> dict[str, Any]:
    """decoder_input_ids [B, L] (padded with ``pad_id``) and labels [B, L] (-100 padded) of one batch."""
    import torch

    pairs = []
    for sample, meta in zip(samples, metas):
        plan = sample.get("__label__")
        speed = 1.0 if "__members__" in sample or "__plan__" not in sample else sample["__plan__"].speed
        pairs.append(build_sequence(tokenize, meta, plan, speed))
    width = max(len(inputs) for inputs, _ in pairs)
    decoder_input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    for i, (inputs, targets) in enumerate(pairs):
        decoder_input_ids[i, : len(inputs)] = torch.tensor(inputs)
        labels[i, : len(targets)] = torch.tensor(targets)
    over = sum(1 for _, targets in pairs if targets == [IGNORE])
    return {"decoder_input_ids": decoder_input_ids, "labels": labels, "labels_over_limit": over}


def packed_segments(members: list[tuple[dict[str, Any], dict[str, Any]]], durations: list[float]) -> list[dict]:
    """A pack's segments: each member's own (scaled by its speed), shifted by the members before it."""
    out, offset = [], 0.0
    for (sample, meta), duration in zip(members, durations):
        speed = sample["__plan__"].speed if "__plan__" in sample else 1.0
        out += [s | {"start": s["start"] + offset, "end": s["end"] + offset} for s in segments_of(meta, speed)]
        offset += duration
    return out
