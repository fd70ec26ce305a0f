"""What every source yields: ``Item``s (one clip, a span of a longer file, or a long recording) and ``Reject``s
(why a row or file cannot be one), with the checks the source readers share (keys, paths, transcripts).

data/sources.py (folders, CSV/JSON manifests, Hugging Face) and data/layouts.py (Common Voice, NeMo,
LibriSpeech, Kaldi) build on it; neither imports the other's readers' internals.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwc_dist.data.recordings import Segment


class SourceError(ValueError):
    """The source as a whole is unusable (missing file, missing column); the message says what to do."""


@dataclass(frozen=True)
class HFRef:
    """Where a Hugging Face row's audio lives; opened again inside decode workers."""

    kind: str  # disk | hub
    location: str
    split: str
    config: str | None
    audio_column: str
    index: int


@dataclass
class Item:
    key: str  # WebDataset key: [A-Za-z0-9_-], unique within a source
    audio: str | HFRef  # a file path, or a row of a HF dataset
    text: str
    source: str  # where the item came from, for humans (a path, or "file.csv:12")
    language: str | None = None
    speaker: str | None = None
    split: str | None = None  # a split the source names; None = decided by hash
    # a long recording (data/recordings.py): its segments in file order, cut into windows when sharded; None: a clip
    segments: list[Segment] | None = None
    # a span of a longer file (NeMo offset/duration, Kaldi segments): (start, end) in seconds; the file is decoded
    # once for all its spans and each span is checked like a clip (data/shard.py)
    span: tuple[float, float] | None = None


@dataclass(frozen=True)
class Pipe:
    """Audio that a shell command writes to stdout (a Kaldi ``wav.scp`` line ``id cmd |``), run only on opt-in."""

    command: str


@dataclass
class Reject:
    source: str
    reason: str
    detail: str
    key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {"source": self.source, "reason": self.reason, "detail": self.detail}
        if self.key:
            out["key"] = self.key
        return out | self.extra


_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(name: str) -> str:
    """A WebDataset-safe key: no dots (WebDataset splits key from extension at the first dot)."""
    key = _KEY_BAD.sub("_", name).strip("_")
    return key or "item"


def _resolve(path: Path) -> Path:
    """path.resolve(), or the absolute path where a symlink loop makes resolving impossible."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop" (Python < 3.13)
        return path.absolute()


def _rel_key(path: Path, root: Path) -> str:
    """The key of a file: its path under root as listed (a symlink keeps its own name, not its target's)."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return make_key(str(path.relative_to(root)))
    except ValueError:
        return make_key(str(path))


def _missing_file(path: Path, where: str, key: str) -> Reject:
    """Why a listed audio path is not a file: a symlink loop, a dangling symlink or no file at all."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return Reject(str(path), "symlink_loop", f"listed in {where}: the symlink points back into itself", key)
        return Reject(
            str(path),
            "broken_symlink",
            f"listed in {where}: the symlink's target {os.readlink(path)} does not exist",
            key,
        )
    return Reject(str(path), "missing_file", f"listed in {where} but not found", key)


# ------------------------------------------------------------------------------------ text checking
def _check_text(
    value: Any, where: str, key: str | None, allow_missing: bool = False
) -> tuple[str | None, Reject | None]:
    """A transcript string, or a Reject saying why it cannot be one (data.allow_missing_text: "" for none)."""
    if allow_missing and (value is None or (isinstance(value, str) and not value.strip())):
        return "", None
    if value is None:
        return None, Reject(where, "missing_transcript", "no transcript for this item", key)
    if not isinstance(value, str):
        return None, Reject(where, "invalid_text", f"the transcript is a {type(value).__name__}, not a string", key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogates from bytes that were not UTF-8
        return None, Reject(where, "undecodable_text", "the transcript is not valid UTF-8", key)
    text = " ".join(value.split())
    if not text:
        return None, Reject(where, "empty_transcript", "the transcript is empty", key)
    return text, None


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def _read_text_file(path: Path) -> str:
    """Read a text file keeping invalid bytes as surrogates, so rows can be rejected one by one."""
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _scan_audio(root: Path, formats: list[str]) -> list[Path]:
    exts = {"." + f.lower().lstrip(".") for f in formats}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):  # no link loops
        dirnames.sort()
        found += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in exts]
    return found
