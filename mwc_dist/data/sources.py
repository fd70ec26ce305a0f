"""Where items come from: a Hugging Face dataset, a folder, a CSV, a JSON/JSONL manifest, or a corpus layout
(Common Voice, NeMo, LibriSpeech, Kaldi: data/layouts.py).

``list_items(cfg.data)`` returns every usable ``Item`` (sorted by key) and a ``Reject`` for every row
that cannot be one (missing or undecodable transcript, missing file, duplicate key, ...). Nothing is
dropped silently: each input row or audio file ends up in exactly one of the two lists. Audio is not
decoded here; ``mwc_dist.data.shard`` does that in worker processes.

Source type is chosen by ``data.source_type`` or, for ``auto``, from what ``data.source`` is
(``detect_source`` says why): a corpus layout data/layouts.py recognises, a ``.csv`` file, a
``.json``/``.jsonl`` file, a ``save_to_disk`` folder, any other folder, or a hub dataset name.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mwc_dist.data.config import SOURCE_TYPES, SPLITS, DataConfig
from mwc_dist.data.items import (  # noqa: F401 -- Item, Reject, ... are this module's API too
    HFRef,
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
from mwc_dist.data.recordings import Segment, parse_subtitles, segments_from_rows

METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.json")
SUBTITLE_SUFFIXES = (".srt", ".vtt")  # a long recording's time-aligned text, beside the audio (same stem)
AUDIO_COLUMN_ALIASES = ("file_name", "path", "audio", "audio_path", "file", "filename")
TEXT_COLUMN_ALIASES = ("text", "transcription", "sentence", "transcript")


# -------------------------------------------------------------------------------------- row parsing
def _find_column(columns: Iterable[str], wanted: str, aliases: tuple[str, ...]) -> str | None:
    columns = list(columns)
    if wanted in columns:
        return wanted
    return next((a for a in aliases if a in columns), None)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (a list, or {"data": [...]}) or JSONL file."""
    text = _read_text_file(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            return list(reader)
        except csv.Error as exc:
            raise SourceError(
                f"{path}: not a readable CSV at line {reader.line_num} ({exc}); fix the file or save "
                f"it again as CSV (UTF-8, comma-separated, quoted fields)"
            ) from None
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append({"__error__": f"line {n} is not valid JSON: {exc.msg}", "__line__": n})
        return rows
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the file or use JSONL"
        ) from None
    if isinstance(tree, dict) and isinstance(tree.get("data"), list):
        tree = tree["data"]
    if not isinstance(tree, list):
        raise SourceError(f'{path}: expected a JSON list of objects (or {{"data": [...]}}), got {type(tree).__name__}')
    return tree


def _rows_to_items(
    rows: list[Any], manifest: Path, root: Path, cfg: DataConfig, referenced: set[Path] | None = None
) -> tuple[list[Item], list[Reject]]:
    """Turn manifest rows into Items; audio paths resolve against ``root``; ``referenced`` collects every path named."""
    columns = set().union(*(r.keys() for r in rows if isinstance(r, dict))) - {None} if rows else set()
    audio_col = _find_column(columns, cfg.audio_column, AUDIO_COLUMN_ALIASES)
    text_col = _find_column(columns, cfg.text_column, TEXT_COLUMN_ALIASES)
    if text_col is None and "segments" in columns:  # long recordings only: their text is in the segments
        text_col = cfg.text_column
    if rows and (audio_col is None or (text_col is None and not cfg.allow_missing_text)):
        missing = [n for n, c in (("audio", audio_col), ("text", text_col)) if c is None]
        raise SourceError(
            f"{manifest}: no {' or '.join(missing)} column (found: {', '.join(sorted(columns)) or 'none'}). "
            f"Set data.audio_column / data.text_column to the right names."
        )
    items, rejects = [], []
    offset = 2 if manifest.suffix.lower() == ".csv" else 1  # CSV row 1 is the header
    for n, row in enumerate(rows):
        where = f"{manifest}:{n + offset}"
        got = _malformed(row, where, manifest, csv=offset == 2) or _row_to_item(
            row, where, root, cfg, audio_col, text_col, referenced
        )
        (items if isinstance(got, Item) else rejects).append(got)
    return items, rejects


def _malformed(row: Any, where: str, manifest: Path, csv: bool) -> Reject | None:
    """A row that is not a well-formed record: not an object, unparsable JSON, a CSV row with the wrong field count."""
    if not isinstance(row, dict):
        return Reject(where, "invalid_row", f"expected an object, got {type(row).__name__}")
    if "__error__" in row:
        return Reject(f"{manifest}:{row['__line__']}", "invalid_row", row["__error__"])
    if None in row or (csv and None in row.values()):  # csv.DictReader: too many / too few fields
        header = [k for k in row if k is not None]
        fields = sum(row[k] is not None for k in header) + len(row.get(None) or [])
        return Reject(where, "invalid_row", f"{fields} fields where the header has {len(header)}")
    return None


def _row_to_item(
    row: dict, where: str, root: Path, cfg: DataConfig, audio_col: str, text_col: str, referenced: set[Path] | None
) -> Item | Reject:
    audio = row.get(audio_col)
    if isinstance(audio, dict):  # {"path": ...} as in HF exports
        audio = audio.get("path")
    if not isinstance(audio, str) or not audio.strip():
        return Reject(where, "missing_audio_path", f"column '{audio_col}' is empty or not a path")
    path = Path(audio.strip())
    path = path if path.is_absolute() else root / path
    if referenced is not None:
        referenced.add(_resolve(path))
    explicit_id = _opt_str(row.get(cfg.id_column))
    key = make_key(explicit_id) if explicit_id else _rel_key(path, root)
    split = _opt_str(row.get(cfg.split_column))
    if split is not None and split not in SPLITS:
        return Reject(where, "invalid_split", f"split {split!r} is not one of {', '.join(SPLITS)}", key)
    if isinstance(row.get("segments"), list):  # a long recording with time-aligned text
        if not path.is_file():
            return _missing_file(path, where, key)
        speaker, language = _opt_str(row.get(cfg.speaker_column)), _opt_str(row.get(cfg.language_column))
        segments = segments_from_rows(row["segments"], where)
        return _recording(key, path, segments, where, cfg, speaker=speaker, language=language, split=split)
    text, bad = _check_text(row.get(text_col), f"{where} ({path})", key, cfg.allow_missing_text)
    if bad:
        return bad
    if not path.is_file():
        return _missing_file(path, where, key)
    language = _opt_str(row.get(cfg.language_column)) or cfg.language
    return Item(key, str(path), text, str(path), language, _opt_str(row.get(cfg.speaker_column)), split)


# ------------------------------------------------------------------------------------------ sources
def folder_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """A folder of audio: transcripts from metadata.csv/.jsonl/.json at its root, or a .txt per file."""
    root = Path(cfg.source)
    meta = next((root / m for m in METADATA_FILES if (root / m).is_file()), None)
    audio_files = _scan_audio(root, cfg.formats)
    if meta is not None:
        referenced: set[Path] = set()
        items, rejects = _rows_to_items(_read_rows(meta), meta, root, cfg, referenced)
        for path in audio_files:  # audio in the folder that the metadata does not mention
            if _resolve(path) not in referenced:
                rejects.append(
                    Reject(str(path), "missing_transcript", f"not listed in {meta.name}", _rel_key(path, root))
                )
        return items, rejects
    items, rejects = [], []
    for path in audio_files:
        key = _rel_key(path, root)
        txt = path.with_suffix(".txt")
        subtitles = next((path.with_suffix(s) for s in SUBTITLE_SUFFIXES if path.with_suffix(s).is_file()), None)
        if not txt.is_file() and subtitles is not None:  # a long recording
            cues = parse_subtitles(_read_text_file(subtitles), subtitles.name)
            got = _recording(key, path, cues, str(subtitles), cfg)
            (items if isinstance(got, Item) else rejects).append(got)
            continue
        if not txt.is_file() and cfg.allow_missing_text:
            items.append(Item(key, str(path), "", str(path), cfg.language))
            continue
        if not txt.is_file():
            rejects.append(
                Reject(str(path), "missing_transcript", f"no {txt.name} beside it and no metadata file", key)
            )
            continue
        text, bad = _check_text(_read_text_file(txt), str(path), key)
        if bad:
            rejects.append(bad)
            continue
        items.append(Item(key, str(path), text, str(path), cfg.language))
    return items, rejects + _orphan_subtitles(root, audio_files)


def _recording(key: str, audio: Path, segments: list[Segment], where: str, cfg: DataConfig, **extra) -> Item | Reject:
    """A long recording's Item; its segments are checked and windowed when it is decoded (data/shard.py)."""
    if not segments:
        return Reject(where, "no_segments", "no subtitle cue or segment found: nothing to train on", key)
    text = " ".join(s.text for s in segments if s.text and not s.problem)
    return Item(
        key,
        str(audio),
        text,
        where,
        extra.get("language") or cfg.language,
        extra.get("speaker"),
        extra.get("split"),
        segments=segments,
    )


def _orphan_subtitles(root: Path, audio_files: list[Path]) -> list[Reject]:
    """Subtitle files with no audio of the same stem: reported, never skipped silently."""
    stems = {p.with_suffix("") for p in audio_files}
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if path.suffix.lower() in SUBTITLE_SUFFIXES and path.with_suffix("") not in stems:
                out.append(Reject(str(path), "missing_audio", "a subtitle file with no audio file of the same stem"))
    return out


def manifest_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """A CSV, JSON or JSONL manifest; relative audio paths resolve against the manifest's folder."""
    path = Path(cfg.source)
    return _rows_to_items(_read_rows(path), path, path.parent, cfg)


def open_hf_dataset(kind: str, location: str, split: str, config: str | None, audio_column: str):
    """Open a HF dataset with its audio column left undecoded (we decode bytes ourselves)."""
    import datasets

    if kind == "disk":
        ds = datasets.load_from_disk(location)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise SourceError(f"{location}: no split {split!r}; it has {', '.join(ds)}. Set data.hf_split.")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(location, config, split=split)
    if audio_column not in ds.column_names:
        raise SourceError(
            f"{location}: no audio column {audio_column!r} (has {', '.join(ds.column_names)}). Set data.audio_column."
        )
    return ds.cast_column(audio_column, datasets.Audio(decode=False))


def _hf_kind(path: Path) -> str:
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")):
        return "disk"
    return "audiofolder" if path.is_dir() else "hub"


def hf_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    kind = _hf_kind(Path(cfg.source))
    if kind == "audiofolder":
        # HF's audiofolder layout (metadata.csv/.jsonl with file_name, optionally one folder per split) is
        # read directly: datasets' own builder re-encodes audio through torchcodec, which needs FFmpeg.
        split_dir = Path(cfg.source) / cfg.hf_split
        root = (
            split_dir
            if split_dir.is_dir() and any((split_dir / m).is_file() for m in METADATA_FILES)
            else Path(cfg.source)
        )
        return folder_items(dataclasses.replace(cfg, source=str(root)))
    ds = open_hf_dataset(kind, cfg.source, cfg.hf_split, cfg.hf_config, cfg.audio_column)
    text_col = _find_column(ds.column_names, cfg.text_column, TEXT_COLUMN_ALIASES)
    if text_col is None and not cfg.allow_missing_text:
        raise SourceError(
            f"{cfg.source}: no text column {cfg.text_column!r} (has {', '.join(ds.column_names)}). "
            "Set data.text_column."
        )
    meta_cols = [
        c
        for c in (text_col, cfg.language_column, cfg.speaker_column, cfg.split_column, cfg.id_column)
        if c is not None and c in ds.column_names
    ]
    rows = ds.select_columns(meta_cols)  # no audio bytes in the main process
    items, rejects = [], []
    for index, row in enumerate(rows):
        explicit_id = _opt_str(row.get(cfg.id_column))
        key = make_key(explicit_id) if explicit_id else f"{make_key(cfg.hf_split)}-{index:09d}"
        where = f"{cfg.source}[{cfg.hf_split}][{index}]"
        text, bad = _check_text(row.get(text_col) if text_col else None, where, key, cfg.allow_missing_text)
        if bad:
            rejects.append(bad)
            continue
        split = _opt_str(row.get(cfg.split_column))
        ref = HFRef(kind, cfg.source, cfg.hf_split, cfg.hf_config, cfg.audio_column, index)
        items.append(
            Item(
                key,
                ref,
                text,
                where,
                _opt_str(row.get(cfg.language_column)) or cfg.language,
                _opt_str(row.get(cfg.speaker_column)),
                split if split in SPLITS else None,
            )
        )
    return items, rejects


def detect_source(cfg: DataConfig) -> tuple[str, str]:
    """(source type, why it was chosen): data.source_type, or for ``auto`` what data.source is laid out as."""
    from mwc_dist.data.layouts import detect_layout

    if cfg.source_type != "auto":
        return cfg.source_type, "data.source_type"
    path = Path(cfg.source)
    layout = detect_layout(path)
    if layout is not None:
        return layout
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv", f"{path.name} is a CSV"
        if suffix in (".json", ".jsonl"):
            return "json", f"{path.name} is a {suffix[1:].upper()} manifest"
        raise SourceError(
            f"{path}: a source file must be .csv, .json, .jsonl or .tsv (Common Voice), or set data.source_type "
            f"to one of {', '.join(SOURCE_TYPES[1:])}"
        )
    if path.is_dir():
        if _hf_kind(path) == "disk":
            return "huggingface", "a datasets save_to_disk folder"
        return "folder", "a folder of audio (metadata.csv/.jsonl/.json, or a .txt per file)"
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", cfg.source) and not cfg.source.startswith((".", "/")):
        return "huggingface", "not a local path: a hub dataset name"
    raise SourceError(f"data.source {cfg.source!r}: no such file or folder, and not a hub dataset name")


def detect_source_type(cfg: DataConfig) -> str:
    return detect_source(cfg)[0]


def _readers() -> dict:
    from mwc_dist.data import layouts

    return {
        "folder": folder_items,
        "csv": manifest_items,
        "json": manifest_items,
        "huggingface": hf_items,
        "commonvoice": layouts.commonvoice_items,
        "nemo": layouts.nemo_items,
        "librispeech": layouts.librispeech_items,
        "kaldi": layouts.kaldi_items,
    }


def list_items(cfg: DataConfig) -> tuple[list[Item], list[Reject]]:
    """Every item of the configured source, sorted by key, and every rejected row; duplicates and unknown
    languages rejected."""
    if not cfg.source:
        raise SourceError("no data source: set data.source (or pass --source) to a folder, CSV, JSON or dataset")
    kind = detect_source_type(cfg)
    if kind in ("csv", "json", "nemo") and not Path(cfg.source).is_file():
        raise SourceError(f"data.source {cfg.source!r} is not a file (a {kind} source is one manifest file)")
    if kind in ("folder", "librispeech", "kaldi") and not Path(cfg.source).is_dir():
        raise SourceError(f"data.source {cfg.source!r} is not a folder (a {kind} source is one)")
    if kind == "commonvoice" and not Path(cfg.source).exists():
        raise SourceError(f"data.source {cfg.source!r} does not exist (a Common Voice release folder or TSV)")
    items, rejects = _readers()[kind](cfg)
    seen: dict[str, Item] = {}
    unique = []
    for item in items:
        if item.key in seen:
            first = seen[item.key]
            rejects.append(
                Reject(item.source, "duplicate_key", f"key {item.key!r} already used by {first.source}", item.key)
            )
            continue
        bad = _resolve_item_language(item)
        if bad:
            rejects.append(bad)
            continue
        seen[item.key] = item
        unique.append(item)
    unique.sort(key=lambda i: i.key)
    return unique, rejects


def _resolve_item_language(item: Item) -> Reject | None:
    """Set item.language to Whisper's code; a Reject (unknown_language) naming the nearest codes when it has none."""
    from mwc_dist.languages import LanguageError, resolve_language

    if item.language is None:
        return None
    try:
        item.language = resolve_language(item.language, "language")
    except LanguageError as exc:
        return Reject(item.source, "unknown_language", str(exc), item.key)
    return None
