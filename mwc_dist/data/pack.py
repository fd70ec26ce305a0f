"""Packing (data.pack_to_window): consecutive clips of the stream joined up to the model's window.

A 30-s encoder pass then carries close to 30 s of speech instead of one 3-s clip and 27 s of padding. The
packer is greedy and deterministic (the same samples in the same order give the same packs, so the loader's
plan and exact resume still hold): it adds the next clip while the pack stays within the window, in one
language, and its joined transcript still fits the decoder (``Tokenize.fits``). A pack is a sample whose
``__members__`` collate decodes (and augments) one by one and concatenates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mwc_dist.data.labels import packed_segments
from mwc_dist.data.sample import trained_duration


def pack_samples(samples: Iterator[dict[str, Any]], window_seconds: float, tokenize) -> Iterator[dict[str, Any]]:
    """Packs in stream order; each pack's previous text (the prompt data.condition_on_prev_probability trains) is
    the pack before it, as distil-whisper's concatenated windows have it."""
    members: list[tuple[dict[str, Any], dict[str, Any]]] = []
    previous = ""
    for sample in samples:
        meta = json.loads(sample["json"])
        if members and not _fits(members + [(sample, meta)], window_seconds, tokenize):
            pack = _packed(members, previous)
            previous = json.loads(pack["json"])["text"]
            yield pack
            members = []
        members.append((sample, meta))
    if members:
        yield _packed(members, previous)


def _fits(members: list[tuple[dict, dict]], window_seconds: float, tokenize) -> bool:
    languages = {m.get("language") for _, m in members}
    if len(languages) > 1 or sum(trained_duration(s, m) for s, m in members) > window_seconds + 1e-6:
        return False
    return tokenize.fits(tokenize(" ".join(m["text"].strip() for _, m in members), languages.pop()))


def _packed(members: list[tuple[dict, dict]], previous: str) -> dict[str, Any]:
    if len(members) == 1:
        sample, meta = members[0]
        if meta.get("prev_text") or not previous:
            return sample
        return sample | {"json": json.dumps(meta | {"prev_text": previous}, ensure_ascii=False).encode()}
    metas = [m for _, m in members]
    durations = [trained_duration(s, m) for s, m in members]
    meta = {
        "key": "+".join(m["key"] for m in metas),
        "text": " ".join(m["text"].strip() for m in metas),
        "language": metas[0].get("language"),
        "duration": sum(durations),
        "packed": len(metas),
        "segments": packed_segments(members, durations),  # each clip its own times (timestamps, data/labels.py)
        "prev_text": metas[0].get("prev_text") or previous,
    }
    key = "+".join(s["__key__"] for s, _ in members)
    return {
        "__key__": key,
        "json": json.dumps(meta).encode(),
        "__members__": [s for s, _ in members],
        "__duration__": meta["duration"],
    }


def num_members(sample: dict[str, Any]) -> int:
    return len(sample.get("__members__", ())) or 1
