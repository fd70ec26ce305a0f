"""Corpus layouts as they are released: Common Voice, NeMo manifests, LibriSpeech trees and Kaldi data dirs.

Each reader turns its layout into the same ``Item``/``Reject`` lists as data/sources.py's readers, so every
guarantee of `mwc shard` holds for it (nothing dropped silently, duplicate keys caught, reproducible tars,
resume, SLURM arrays)::

    commonvoice  release folder (clips/ + train.tsv dev.tsv test.tsv [validated.tsv other.tsv]) or one TSV:
                 path -> clips/<path>, sentence -> text, locale -> language, client_id -> speaker,
                 the TSV's name -> split (train/dev/test); data.commonvoice_splits picks the TSVs,
                 data.min_up_votes filters on up_votes (a filtered row is quarantined, never dropped)
    nemo         JSON lines in a .json or .jsonl manifest: audio_filepath, text, lang; offset + duration -> a
                 span of the file
    librispeech  <speaker>/<chapter>/<speaker>-<chapter>.trans.txt beside <utt>.flac; a top folder named
                 train-*/dev-*/test-* names the split
    kaldi        a data dir (wav.scp, text, [segments], [utt2spk]; spk2utt ignored) or a folder of them named
                 by split; segments -> spans; piped wav.scp entries (``cmd |``) run only with
                 data.kaldi_allow_pipes, since they run shell commands

A span (start, end) of a longer file is decoded once per file and cut per span (data/shard.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from mwc_dist.data.config import COMMONVOICE_TSVS, DataConfig
from mwc_dist.data.items import (
    Item,
    Pipe,
    Reject,
    SourceError,
    _check_text,
    _missing_file,
    _opt_str,
    _read_text_file,
    _rel_key,
    _resolve,
    _scan_audio,
    make_key,
)

KALDI_FILES = ("wav.scp", "text")


def split_from_name(name: str) -> str | None:
    """The split a corpus folder or file name says: train*, dev*/valid*, test*/eval*; None for any other."""
    name = name.lower()
    if name.startswith("train"):
        return "train"
    if name.startswith(("dev", "valid")):
        return "validation"
    if name.startswith(("test", "eval")):
        return "test"
    return None


# ------------------------------------------------------------------------------------------ detection
def detect_layout(path: Path) -> tuple[str, str] | None:
    """(layout, why) when ``path`` is laid out as one of this module's corpora; None otherwise."""
    if path.is_file():
        if path.suffix.lower() == ".tsv":
            return "commonvoice", f"{path.name} is a TSV (a Common Voice split)"
        if path.suffix.lower() in (".json", ".jsonl") and _first_json_line_has(path, "audio_filepath"):
            return "nemo", f"{path.name}'s first line is a JSON object with audio_filepath (a NeMo manifest)"
        return None
    if not path.is_dir():
        return None
    tsvs = [t for t in COMMONVOICE_TSVS if (path / f"{t}.tsv").is_file()]
    if (path / "clips").is_dir() and tsvs:
        return "commonvoice", f"clips/ beside {', '.join(t + '.tsv' for t in tsvs)} (a Common Voice release)"
    if all((path / f).is_file() for f in KALDI_FILES):
        return "kaldi", "wav.scp and text (a Kaldi data dir)"
    kaldi_dirs = _kaldi_dirs(path)
    if kaldi_dirs:
        return "kaldi", f"Kaldi data dirs {', '.join(d.name for d in kaldi_dirs)} (wav.scp and text in each)"
    trans = next(_trans_files(path), None)
    if trans is not None:
        return "librispeech", f"{trans.relative_to(path)} (a LibriSpeech *.trans.txt tree)"
    return None


def _first_json_line_has(path: Path, field: str) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and field in row
    return False


def _kaldi_dirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and all((d / f).is_file() for f in KALDI_FILES))


def _trans_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith(".trans.txt"):
                yield Path(dirpath) / f


def _span_reject(where: str, key: str, start: Any, end: Any) -> Reject | None:
    """Why (start, end) cannot be a span of a file, or None: numbers, start >= 0, end > start (inf: to the end)."""
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        return Reject(where, "invalid_span", f"offset/duration must be numbers; got {start!r} / {end!r}", key)
    if not (math.isfinite(start) and start >= 0 and end > start):
        return Reject(where, "invalid_span", f"the span {start:g}-{end:g} s is not a time range in a file", key)
    return None


# ------------------------------------------------------------------------------------------ Common Voice
def commonvoice_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """A Common Voice release folder, or one of its TSVs (clips/ beside it)."""
    path = Path(cfg.source)
    if path.is_file():
        root, tsvs = path.parent, [path]
    else:
        root = path
        tsvs = [path / f"{name}.tsv" for name in cfg.commonvoice_splits]
        missing = [t.name for t in tsvs if not t.is_file()]
        if missing:
            have = ", ".join(sorted(p.name for p in root.glob("*.tsv"))) or "none"
            raise SourceError(
                f"{root}: no {', '.join(missing)} (TSVs here: {have}); set data.commonvoice_splits to the ones to read"
            )
    items, rejects = [], []
    for tsv in tsvs:
        got_items, got_rejects = _commonvoice_tsv(tsv, root / "clips", cfg)
        items += got_items
        rejects += got_rejects
    return items, rejects


def _commonvoice_tsv(tsv: Path, clips: Path, cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    # Common Voice writes tabs with no quoting (sentences hold quotes): QUOTE_NONE, as its own loaders read it
    rows = list(csv.reader(io.StringIO(_read_text_file(tsv), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or not {"path", "sentence"} <= set(rows[0]):
        raise SourceError(f"{tsv}: not a Common Voice TSV (its header needs path and sentence; got {rows[:1]})")
    header, split = rows[0], split_from_name(tsv.stem)
    items, rejects = [], []
    for n, fields in enumerate(rows[1:], 2):
        where = f"{tsv}:{n}"
        if not any(f.strip() for f in fields):
            continue  # a blank line is not a row
        if len(fields) != len(header):
            rejects.append(Reject(where, "invalid_row", f"{len(fields)} fields where the header has {len(header)}"))
            continue
        row = dict(zip(header, fields))
        got = _commonvoice_row(row, where, clips, split, cfg)
        (items if isinstance(got, Item) else rejects).append(got)
    return items, rejects


def _commonvoice_row(row: dict[str, str], where: str, clips: Path, split: str | None, cfg: DataConfig):
    name = row["path"].strip()
    if not name:
        return Reject(where, "missing_audio_path", "the path column is empty")
    audio, key = clips / name, make_key(Path(name).stem)
    votes = row.get("up_votes", "").strip()
    if cfg.min_up_votes > 0 and (not votes.isdigit() or int(votes) < cfg.min_up_votes):
        detail = f"up_votes {votes or 'missing'} is under data.min_up_votes={cfg.min_up_votes}"
        return Reject(where, "below_min_up_votes", detail, key)
    text, bad = _check_text(row.get("sentence"), f"{where} ({audio})", key, cfg.allow_missing_text)
    if bad:
        return bad
    if not audio.is_file():
        return _missing_file(audio, where, key)
    language = _opt_str(row.get("locale")) or cfg.language
    return Item(key, str(audio), text, str(audio), language, _opt_str(row.get("client_id")), split)


# ------------------------------------------------------------------------------------------------ NeMo
def nemo_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """A NeMo manifest: one JSON object per line, whatever the suffix; offset + duration make a span."""
    manifest = Path(cfg.source)
    items, rejects = [], []
    for n, line in enumerate(_read_text_file(manifest).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{manifest}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            rejects.append(Reject(where, "invalid_row", f"line {n} is not valid JSON: {exc.msg}"))
            continue
        if not isinstance(row, dict):
            rejects.append(Reject(where, "invalid_row", f"expected a JSON object, got {type(row).__name__}"))
            continue
        got = _nemo_row(row, where, manifest.parent, cfg)
        (items if isinstance(got, Item) else rejects).append(got)
    return items, rejects


def _nemo_row(row: dict[str, Any], where: str, root: Path, cfg: DataConfig) -> Item | Reject:
    audio = row.get("audio_filepath")
    if not isinstance(audio, str) or not audio.strip():
        return Reject(where, "missing_audio_path", "audio_filepath is empty or not a path")
    path = Path(audio.strip())
    path = path if path.is_absolute() else root / path
    key = _rel_key(path, root)
    span = None
    if row.get("offset") is not None:  # a span: offset + duration seconds of the file
        offset, duration = row.get("offset"), row.get("duration")
        if isinstance(offset, (int, float)):
            key = f"{key}-{round(float(offset) * 1000):09d}"
        if not isinstance(duration, (int, float)) or not isinstance(offset, (int, float)):
            return Reject(
                where, "invalid_span", f"offset and duration must be seconds; got {offset!r} / {duration!r}", key
            )
        bad = _span_reject(where, key, offset, offset + duration)
        if bad:
            return bad
        span = (float(offset), float(offset) + float(duration))
    text, bad = _check_text(row.get(cfg.text_column), f"{where} ({path})", key, cfg.allow_missing_text)
    if bad:
        return bad
    if not path.is_file():
        return _missing_file(path, where, key)
    language = _opt_str(row.get("lang")) or _opt_str(row.get(cfg.language_column)) or cfg.language
    speaker = _opt_str(row.get(cfg.speaker_column))
    return Item(key, str(path), text, where, language, speaker, None, span=span)


# ----------------------------------------------------------------------------------------- LibriSpeech
def librispeech_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """A LibriSpeech tree: every *.trans.txt line is an utterance; audio in the tree no line names is reported."""
    root = Path(cfg.source)
    items, rejects, listed = [], [], set()
    for trans in _trans_files(root):
        top = trans.relative_to(root).parts[0] if len(trans.relative_to(root).parts) > 3 else ""
        split = split_from_name(top) if top else None
        for n, line in enumerate(_read_text_file(trans).splitlines(), 1):
            if not line.strip():
                continue
            utt, _, words = line.strip().partition(" ")
            where = f"{trans}:{n}"
            audio = next(
                (trans.parent / f"{utt}.{ext}" for ext in cfg.formats if (trans.parent / f"{utt}.{ext}").is_file()),
                trans.parent / f"{utt}.flac",
            )
            listed.add(_resolve(audio))
            text, bad = _check_text(words, f"{where} ({audio})", make_key(utt), cfg.allow_missing_text)
            if bad:
                rejects.append(bad)
                continue
            if not audio.is_file():
                rejects.append(_missing_file(audio, where, make_key(utt)))
                continue
            items.append(Item(make_key(utt), str(audio), text, str(audio), cfg.language, utt.split("-")[0], split))
    for path in _scan_audio(root, cfg.formats):
        if _resolve(path) not in listed:
            rejects.append(Reject(str(path), "missing_transcript", "no *.trans.txt line names it", make_key(path.stem)))
    return items, rejects


# ----------------------------------------------------------------------------------------------- Kaldi
def kaldi_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """A Kaldi data dir, or a folder of them (each dir's name -> its split: train*, dev*, test*)."""
    root = Path(cfg.source)
    if all((root / f).is_file() for f in KALDI_FILES):
        return _kaldi_dir(root, None, cfg)
    dirs = _kaldi_dirs(root)
    if not dirs:
        raise SourceError(f"{root}: not a Kaldi data dir (no wav.scp and text here or in a subfolder)")
    items, rejects = [], []
    for d in dirs:
        got_items, got_rejects = _kaldi_dir(d, split_from_name(d.name), cfg)
        items += got_items
        rejects += got_rejects
    return items, rejects


def _kaldi_table(path: Path) -> list[tuple[int, str, str]]:
    """(line number, first field, the rest) of a Kaldi table file; blank lines skipped."""
    out = []
    for n, line in enumerate(_read_text_file(path).splitlines(), 1):
        if line.strip():
            first, _, rest = line.strip().partition(" ")
            out.append((n, first, rest.strip()))
    return out


def _kaldi_dir(d: Path, split: str | None, cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    wav = {reco: (n, rest) for n, reco, rest in _kaldi_table(d / "wav.scp")}
    speakers = {u: s for _, u, s in _kaldi_table(d / "utt2spk")} if (d / "utt2spk").is_file() else {}
    segments = None
    if (d / "segments").is_file():
        segments = {u: (n, rest.split()) for n, u, rest in _kaldi_table(d / "segments")}
    items, rejects, texted = [], [], set()
    for n, utt, words in _kaldi_table(d / "text"):
        where, key = f"{d / 'text'}:{n}", make_key(utt)
        texted.add(utt)
        got = _kaldi_utt(d, utt, key, words, where, wav, segments, cfg)
        if isinstance(got, Item):
            got.speaker, got.split = speakers.get(utt), split
        (items if isinstance(got, Item) else rejects).append(got)
    for utt, (n, _) in (segments or {}).items():
        if utt not in texted:
            rejects.append(Reject(f"{d / 'segments'}:{n}", "missing_transcript", "no line in text", make_key(utt)))
    return items, rejects


def _kaldi_utt(d: Path, utt: str, key: str, words: str, where: str, wav, segments, cfg: DataConfig):
    span, reco = None, utt
    if segments is not None:
        if utt not in segments:
            return Reject(where, "missing_segment", f"{utt} is in text but not in {d / 'segments'}", key)
        n, fields = segments[utt]
        if len(fields) != 3:
            return Reject(f"{d / 'segments'}:{n}", "invalid_row", "expected: utt-id recording-id start end", key)
        reco, start, end = fields[0], fields[1], fields[2]
        end = math.inf if end.strip() == "-1" else end  # Kaldi: -1 = to the end of the recording
        bad = _span_reject(f"{d / 'segments'}:{n}", key, start, end)
        if bad:
            return bad
        span = (float(start), float(end))
    if reco not in wav:
        return Reject(where, "missing_recording", f"recording {reco} is not in {d / 'wav.scp'}", key)
    n, entry = wav[reco]
    audio = _kaldi_audio(d, entry, f"{d / 'wav.scp'}:{n}", key, cfg)
    if isinstance(audio, Reject):
        return audio
    text, bad = _check_text(words, f"{where} ({entry})", key, cfg.allow_missing_text)
    if bad:
        return bad
    return Item(key, audio, text, where, cfg.language, span=span)


def _kaldi_audio(d: Path, entry: str, where: str, key: str, cfg: DataConfig) -> str | Pipe | Reject:
    """A wav.scp entry's audio: a path (relative ones resolve against the data dir), or a command on opt-in."""
    if entry.endswith("|"):
        if not cfg.kaldi_allow_pipes:
            return Reject(
                where,
                "piped_wav_scp",
                f"the entry runs a shell command ({entry[:60]}); set data.kaldi_allow_pipes=true to run it, "
                f"or convert the audio to files (e.g. with sox) and list their paths",
                key,
            )
        return Pipe(entry[:-1].strip())
    path = Path(entry)
    if " " in entry or (":" in path.name and not path.is_file()):
        return Reject(where, "unsupported_wav_scp", f"{entry!r} is not a file path (ark offsets are not read)", key)
    path = path if path.is_absolute() else d / path
    if not path.is_file():
        return _missing_file(path, where, key)
    return str(path)
