"""``mwc shard``: decode every item once into WebDataset tar shards with manifests and a quarantine report.

Layout of the output folder::

    <split>-NNNNNN.tar          samples: <key>.flac (16 kHz mono) + <key>.json (text, language, ...)
    <split>.manifest.json       shards, sample counts, hours, sha256 per shard, the resolved config
    quarantine.jsonl            one line per rejected item: source, reason, detail
    _parts/                     plan.json and one record per finished shard (resume + job merge)

The plan is deterministic: items sorted by key, split by a stable hash of the key (or the split the
source names), cut into shards of ``data.shard_samples``. Shard i belongs to job ``i % num_jobs``, so
a SLURM array can split the work; the last job to finish (or ``--merge-only``) merges the manifests.
A shard is written to a temporary name and renamed, then recorded; a re-run skips recorded shards, so
resuming never duplicates a sample.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mwc_dist.atomic import write_atomic
from mwc_dist.audio.decode import AudioError
from mwc_dist.data.config import SPLITS, DataConfig
from mwc_dist.data.sources import HFRef, Item, Pipe, Reject, detect_source, list_items

PLAN_VERSION = 1
SPAN_TOLERANCE_S = 0.05  # a span may end this far past the decoded file (codec padding, rounded times)


class SpanPastEndError(AudioError):
    reason = "span_past_end"


class ShardError(ValueError):
    pass


# -------------------------------------------------------------------------------------------- plan
def split_of(key: str, cfg: DataConfig) -> str:
    """Stable split by hash of the key: the same key lands in the same split on every run and machine."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    if bucket < cfg.train_split_ratio:
        return "train"
    if bucket < cfg.train_split_ratio + cfg.validation_split_ratio:
        return "validation"
    return "test"


@dataclass
class Chunk:
    name: str  # "<split>-NNNNNN" (the tar is <name>.tar)
    split: str
    items: list[Item]


def plan_chunks(items: list[Item], cfg: DataConfig) -> list[Chunk]:
    by_split: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for item in items:
        by_split[item.split or split_of(item.key, cfg)].append(item)
    chunks = []
    for split, members in by_split.items():
        for n, part in enumerate(_cut(members, cfg, split)):
            chunks.append(Chunk(f"{split}-{n:06d}", split, part))
    return chunks


def _cut(members: list[Item], cfg: DataConfig, split: str) -> list[list[Item]]:
    """Consecutive runs of data.shard_samples; for the train split with data.shard_for_world_size, a multiple of
    world size x loader workers runs, as even as the count allows (never over shard_samples)."""
    if split != "train" or cfg.shard_for_world_size <= 0 or not members:
        return [members[start : start + cfg.shard_samples] for start in range(0, len(members), cfg.shard_samples)]
    slots = cfg.shard_for_world_size * max(1, cfg.num_workers)
    count = min(len(members), slots * -(-len(members) // (slots * cfg.shard_samples)))
    bounds = [round(k * len(members) / count) for k in range(count + 1)]
    return [members[a:b] for a, b in zip(bounds, bounds[1:])]


def _decode_settings(cfg: DataConfig) -> dict[str, Any]:
    keys = (
        "sample_rate",
        "normalize",
        "min_duration_seconds",
        "max_duration_seconds",
        "shard_audio_format",
        "max_label_tokens",
    )
    return {k: getattr(cfg, k) for k in keys}


def plan_fingerprint(chunks: list[Chunk], cfg: DataConfig) -> str:
    h = hashlib.sha256(json.dumps(_decode_settings(cfg), sort_keys=True).encode())
    for chunk in chunks:
        h.update(chunk.name.encode())
        for item in chunk.items:
            h.update(f"\0{item.key}\0{item.text}\0{item.language}\0{item.speaker}".encode())
            if item.span is not None:  # a span of a longer file
                h.update(f"\0{item.span[0]}\0{item.span[1]}".encode())
            for seg in item.segments or ():  # a recording: its times decide its windows
                h.update(f"\0{seg.start}\0{seg.end}\0{seg.text}\0{seg.problem}".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------- worker (decode)
_HF_OPEN: dict[tuple, Any] = {}


def _read_hf(ref: HFRef) -> tuple[bytes | str, str]:
    from mwc_dist.data.sources import open_hf_dataset

    key = (ref.kind, ref.location, ref.split, ref.config, ref.audio_column)
    if key not in _HF_OPEN:
        _HF_OPEN[key] = open_hf_dataset(*key)
    audio = _HF_OPEN[key][ref.index][ref.audio_column]
    if audio.get("bytes"):
        return audio["bytes"], audio.get("path") or f"row {ref.index}"
    return audio["path"], audio["path"]


_TOKENIZE = []  # one per worker process, built on first use


def _label_too_long(text: str, limit: int, timestamps: int = 0) -> str | None:
    """Why the transcript cannot be a Whisper label of at most ``limit`` tokens, or None when it fits.

    Counted as training counts it (data/stream.py Tokenize): decoder start, language, task, no-timestamps,
    the text, end-of-text. Every language token is one token, so any language counts the same.
    """
    if limit <= 0 or not text:
        return None
    if not _TOKENIZE:
        from mwc_dist.data.stream import Tokenize
        from mwc_dist.models.tokenizer import load_tokenizer

        _TOKENIZE.append(Tokenize(load_tokenizer(), language="en", task="transcribe"))
    tokenize = _TOKENIZE[0]
    n = tokenize.decoder_length(tokenize(text)) + max(0, timestamps - 1)
    if n <= limit:
        return None
    return (
        f"the transcript is {n} Whisper tokens with prompt and end-of-text, over data.max_label_tokens={limit} "
        f"(the decoder's max_target_positions): split the audio and its transcript into shorter clips"
    )


Result = tuple[dict[str, Any], bytes] | Reject


def process_item(item: Item, settings: dict[str, Any]) -> Result | list[Result]:
    """Decode, check and re-encode one item (runs in a worker process); a recording gives a list (its windows
    and its bad segments)."""
    from mwc_dist.audio.decode import AudioError, load_audio

    if item.segments is not None:
        return process_recording(item, settings)
    too_long = _label_too_long(item.text, settings.get("max_label_tokens", 0))
    if too_long:
        return Reject(item.source, "too_many_tokens", too_long, item.key)
    try:
        if item.span is not None:
            wave = _span_wave(item, settings)
        else:
            audio, name = _read_audio(item)
            wave = load_audio(
                audio,
                name,
                sample_rate=settings["sample_rate"],
                normalize=settings["normalize"],
                min_seconds=settings["min_duration_seconds"],
                max_seconds=settings["max_duration_seconds"],
            )
    except AudioError as exc:
        return Reject(item.source, exc.reason, exc.detail, item.key)
    except Exception as exc:  # an unexpected decoder failure must not stop a million-file run
        return Reject(item.source, "unreadable", f"{type(exc).__name__}: {exc}", item.key)
    payload = _payload(wave, settings)
    meta = {
        "key": item.key,
        "text": item.text,
        "language": item.language,
        "speaker": item.speaker,
        "duration": round(len(wave) / settings["sample_rate"], 4),
        "num_samples": len(wave),
        "sample_rate": settings["sample_rate"],
        "source": item.source,
    }
    return meta, payload


def _read_audio(item: Item) -> tuple[bytes | str, str]:
    """What to decode for an item and the name its errors carry: a path, a HF row's bytes, a command's output."""
    if isinstance(item.audio, HFRef):
        return _read_hf(item.audio)[0], item.source
    if isinstance(item.audio, Pipe):  # data.kaldi_allow_pipes: the user asked for the command to run
        import subprocess

        from mwc_dist.audio.decode import CorruptAudioError

        run = subprocess.run(item.audio.command, shell=True, capture_output=True, timeout=600)
        if run.returncode != 0:
            err = run.stderr.decode(errors="replace").strip()[-200:]
            raise CorruptAudioError(item.source, f"the wav.scp command exited {run.returncode}: {err}")
        return run.stdout, item.source
    return item.audio, item.audio


_WHOLE_FILE: dict[str, Any] = {}  # the file last decoded in this worker: its spans arrive one after another


def _span_wave(item: Item, settings: dict[str, Any]):
    """One span of a longer file: the file decoded once (kept while its spans arrive), cut, checked like a clip."""
    from mwc_dist.audio.decode import AudioError, check_clip, load_mono

    rate = settings["sample_rate"]
    audio, name = _read_audio(item)
    cache_key = str(item.audio)
    if _WHOLE_FILE.get("key") != cache_key:
        _WHOLE_FILE.clear()
        try:
            _WHOLE_FILE.update(key=cache_key, wave=load_mono(audio, name, sample_rate=rate), error=None)
        except AudioError as exc:
            _WHOLE_FILE.update(key=cache_key, wave=None, error=exc)
    if _WHOLE_FILE["error"] is not None:
        raise _WHOLE_FILE["error"]
    wave, (start, end) = _WHOLE_FILE["wave"], item.span
    length = len(wave) / rate
    if start >= length or (end != float("inf") and end > length + SPAN_TOLERANCE_S):
        raise SpanPastEndError(
            item.source, f"the span {start:g}-{end:g} s ends past the file's end at {length:.2f} s ({item.audio})"
        )
    cut = wave[round(start * rate) : len(wave) if end == float("inf") else round(end * rate)]
    return check_clip(
        cut.copy(),
        item.source,
        sample_rate=rate,
        normalize=settings["normalize"],
        min_seconds=settings["min_duration_seconds"],
        max_seconds=settings["max_duration_seconds"],
    )


def process_recording(item: Item, settings: dict[str, Any]) -> list[Result]:
    """A long recording: decoded whole, its segments checked against its length, cut into windows of at most
    data.max_duration_seconds (data/recordings.py); one sample per window, one Reject per bad segment."""
    from mwc_dist.audio.decode import AudioError, load_audio
    from mwc_dist.data.recordings import check_segments, plan_windows, window_fields

    rate, window = settings["sample_rate"], settings["max_duration_seconds"]
    try:
        wave = load_audio(item.audio, item.audio, sample_rate=rate, normalize=settings["normalize"])
    except AudioError as exc:
        return [Reject(item.source, exc.reason, exc.detail, item.key)]
    except Exception as exc:
        return [Reject(item.source, "unreadable", f"{type(exc).__name__}: {exc}", item.key)]
    segments = check_segments(item.segments, window, len(wave) / rate)
    out: list[Result] = [
        Reject(s.where, s.problem, s.detail, item.key, {"recording": item.key, "start": s.start, "end": s.end})
        for s in segments
        if s.problem
    ]
    for n, win in enumerate(plan_windows(segments, window, len(wave) / rate)):
        fields, first, last = window_fields(win, n, item.key, rate)
        too_long = _label_too_long(win.text, settings.get("max_label_tokens", 0), 2 * len(win.segments))
        if too_long:
            out.append(Reject(f"{item.source} window {n}", "too_many_tokens", too_long, fields["key"]))
            continue
        meta = fields | {"text": win.text, "language": item.language, "speaker": item.speaker, "source": item.source}
        meta["segments"] = win.relative_segments()
        out.append((meta, _payload(wave[first:last], settings)))
    return out


def _payload(wave, settings: dict[str, Any]) -> bytes:
    from mwc_dist.audio.encode import encode_bytes

    fmt, rate = settings["shard_audio_format"], settings["sample_rate"]
    return encode_bytes(wave, rate, fmt) if fmt == "flac" else _float_wav(wave, rate)


def _float_wav(wave, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _span_file(item: Item) -> str | None:
    return str(item.audio) if item.span is not None else None


def _worker_init() -> None:
    """Import the decoders once per worker, in parallel, before the first item arrives."""
    import av  # noqa: F401
    import soundfile  # noqa: F401
    import torch
    import torchaudio.functional  # noqa: F401

    torch.set_num_threads(1)  # one process per core already


def _apply_batch(fn: Callable, batch: list) -> list:
    return [fn(x) for x in batch]


def _tasks(items: Iterable, batch: int, same: Callable | None, most: int = 512) -> Iterator[list]:
    """Consecutive items in tasks of ``batch``; a task goes on while ``same(item)`` equals its last item's (the spans
    of one file stay in one worker, which decodes the file once), up to ``most`` items."""
    task: list = []
    for item in items:
        if len(task) >= batch and (same is None or same(item) != same(task[-1]) or len(task) >= most):
            yield task
            task = []
        task.append(item)
    if task:
        yield task


def ordered_map(
    fn: Callable, items: Iterable, workers: int, batch: int = 8, window: int = 16, same: Callable | None = None
) -> Iterator:
    """``map(fn, items)`` in order over a spawn process pool: ``batch`` items per task (kept together while
    ``same`` agrees), ``window`` tasks in flight."""
    if workers <= 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # idle intra-op threads only spin: one clip at a time is one core
        try:
            yield from map(fn, items)
        finally:
            torch.set_num_threads(threads)
        return
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        pending: deque = deque()
        it = _tasks(items, batch, same)
        while True:
            chunk = next(it, [])
            if chunk:
                pending.append(pool.submit(_apply_batch, fn, chunk))
            if pending and (len(pending) >= window or not chunk):
                yield from pending.popleft().result()
            if not chunk and not pending:
                return


# -------------------------------------------------------------------------------------------- write
def sha256_file(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _ShardSink:
    """Collects one chunk's results in order and writes <name>.tar atomically plus its record."""

    def __init__(self, out_dir: Path, chunk: Chunk, audio_ext: str):
        import webdataset as wds

        self.out_dir, self.chunk, self.audio_ext = out_dir, chunk, audio_ext
        self.tmp = out_dir / f"{chunk.name}.tar.tmp"
        self.writer = wds.TarWriter(str(self.tmp), mtime=0)  # fixed mtime: the same input gives the same bytes
        self.keys: list[str] = []
        self.seconds = 0.0
        self.without_text = 0  # data.allow_missing_text: samples sharded without a transcript
        self.recordings, self.windows = 0, 0  # long recordings, and the windows cut from them
        self.quarantined: list[dict[str, Any]] = []

    def add(self, result: Result | list[Result]) -> None:
        if isinstance(result, list):  # a recording: its windows, its bad segments
            windows = [r for r in result if not isinstance(r, Reject)]
            self.recordings += bool(windows)
            self.windows += len(windows)
            for r in result:
                self.add(r)
            return
        if isinstance(result, Reject):
            self.quarantined.append(result.to_json() | {"split": self.chunk.split})
            return
        meta, payload = result
        self.writer.write(
            {"__key__": meta["key"], self.audio_ext: payload, "json": json.dumps(meta, ensure_ascii=False).encode()}
        )
        self.keys.append(meta["key"])
        self.seconds += meta["duration"]
        self.without_text += not meta["text"]

    def close(self) -> dict[str, Any]:
        self.writer.close()
        tar = self.out_dir / f"{self.chunk.name}.tar"
        record = {
            "name": self.chunk.name,
            "split": self.chunk.split,
            "num_samples": len(self.keys),
            "seconds": round(self.seconds, 4),
            "without_text": self.without_text,
            "recordings": self.recordings,
            "windows": self.windows,
            "keys": self.keys,
            "quarantined": self.quarantined,
        }
        if self.keys:
            os.replace(self.tmp, tar)
            record |= {"shard": tar.name, "bytes": tar.stat().st_size, "sha256": sha256_file(tar)}
        else:  # every item quarantined: no empty tar (an empty shard starves a loader worker)
            self.tmp.unlink()
        write_atomic(self.out_dir / "_parts" / f"{self.chunk.name}.json", json.dumps(record))
        return record


def _record_ok(out_dir: Path, chunk: Chunk) -> bool:
    rec_path = out_dir / "_parts" / f"{chunk.name}.json"
    if not rec_path.is_file():
        return False
    rec = json.loads(rec_path.read_text())
    tar = out_dir / f"{chunk.name}.tar"
    return rec["num_samples"] == 0 or (tar.is_file() and tar.stat().st_size == rec["bytes"])


# -------------------------------------------------------------------------------------------- merge
def merge_manifests(out_dir: Path) -> dict[str, Any] | None:
    """Build <split>.manifest.json and quarantine.jsonl from the shard records; None if some are missing."""
    plan_path = out_dir / "_parts" / "plan.json"
    if not plan_path.is_file():
        raise ShardError(
            f"{out_dir}: no shard plan here ({plan_path} is missing); run `mwc shard --out {out_dir}` first"
        )
    plan = json.loads(plan_path.read_text())
    records = []
    for name in plan["chunks"]:
        rec_path = out_dir / "_parts" / f"{name}.json"
        if not rec_path.is_file():
            return None
        records.append(json.loads(rec_path.read_text()))
    quarantine = list(plan["rejects"])
    summary: dict[str, Any] = {"splits": {}, "quarantined": 0, "reasons": {}}
    for split in SPLITS:
        recs = [r for r in records if r["split"] == split]
        quarantine += [q for r in recs for q in r["quarantined"]]
        shards = [
            {k: r[k] for k in ("shard", "num_samples", "seconds", "bytes", "sha256")} for r in recs if r["num_samples"]
        ]
        if not recs:
            continue
        seconds = sum(r["seconds"] for r in recs)
        manifest = {
            "split": split,
            "num_samples": sum(r["num_samples"] for r in recs),
            "without_text": sum(r.get("without_text", 0) for r in recs),  # audio-only items (pseudo-label them)
            "num_recordings": sum(r.get("recordings", 0) for r in recs),  # long recordings, cut into windows
            "num_windows": sum(r.get("windows", 0) for r in recs),
            "num_shards": len(shards),
            "seconds": round(seconds, 3),
            "hours": round(seconds / 3600, 6),
            "shards": shards,
            "source": plan["source"],
            "config": plan["config"],
            "plan": plan["fingerprint"],
        }
        write_atomic(out_dir / f"{split}.manifest.json", json.dumps(manifest, indent=2))
        summary["splits"][split] = {
            k: manifest[k] for k in ("num_samples", "num_shards", "hours", "num_recordings", "num_windows")
        }
    write_atomic(out_dir / "quarantine.jsonl", "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine))
    summary["quarantined"] = len(quarantine)
    summary["reasons"] = dict(Counter(q["reason"] for q in quarantine).most_common())
    summary["num_items"] = plan["num_items"]
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


# ------------------------------------------------------------------------------------------ driver
def write_plan(out_dir: Path, cfg: DataConfig, chunks: list[Chunk], rejects: list[Reject], overwrite: bool) -> None:
    parts = out_dir / "_parts"
    parts.mkdir(parents=True, exist_ok=True)
    fingerprint = plan_fingerprint(chunks, cfg)
    plan_path = parts / "plan.json"
    if plan_path.is_file() and not overwrite:
        old = json.loads(plan_path.read_text())
        if old.get("fingerprint") != fingerprint:
            raise ShardError(
                f"{out_dir} holds shards planned from a different source or settings "
                f"(plan {old.get('fingerprint', '?')[:12]} vs {fingerprint[:12]}); use another --out, or --overwrite"
            )
        return
    if overwrite:
        for old in list(out_dir.glob("*.tar")) + list(parts.glob("*.json")):
            old.unlink()
    plan = {
        "version": PLAN_VERSION,
        "fingerprint": fingerprint,
        "source": cfg.source,
        "config": asdict(cfg),
        "chunks": [c.name for c in chunks],
        "num_items": sum(len(c.items) for c in chunks) + len(rejects),
        "rejects": [r.to_json() for r in rejects],
    }
    write_atomic(plan_path, json.dumps(plan, indent=2, ensure_ascii=False))


def shard_source(
    cfg: DataConfig,
    out_dir: str | Path,
    *,
    job_index: int = 0,
    num_jobs: int = 1,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Shard this job's part of ``cfg.source`` into ``out_dir``; returns the merged summary when all parts are done."""
    from tqdm import tqdm

    if not 0 <= job_index < num_jobs:
        raise ShardError(f"--job-index {job_index} must be in [0, --num-jobs={num_jobs})")
    out_dir = Path(out_dir)
    start = time.time()
    kind, why = detect_source(cfg)
    log(f"source {cfg.source}: {kind} ({why})")
    items, rejects = list_items(cfg)
    chunks = plan_chunks(items, cfg)
    write_plan(out_dir, cfg, chunks, rejects, overwrite and job_index == 0)
    mine = [c for n, c in enumerate(chunks) if n % num_jobs == job_index]
    todo = [c for c in mine if not _record_ok(out_dir, c)]
    log(
        f"{len(items)} items in {len(chunks)} shards ({len(rejects)} rejected before decoding); "
        f"job {job_index}/{num_jobs}: {len(mine)} shards, {len(mine) - len(todo)} already done"
    )
    settings = _decode_settings(cfg)
    workers = workers or cfg.shard_workers or os.cpu_count() or 1
    pairs = [(c, it) for c in todo for it in c.items]
    bar = tqdm(total=sum(len(c.items) for c in todo), unit="clip", desc="sharding", disable=not progress)
    sinks: dict[str, _ShardSink] = {}
    remaining = {c.name: len(c.items) for c in todo}
    results = ordered_map(partial(process_item, settings=settings), (it for _, it in pairs), workers, same=_span_file)
    for (chunk, _), result in zip(pairs, results):
        if chunk.name not in sinks:
            sinks[chunk.name] = _ShardSink(out_dir, chunk, settings["shard_audio_format"])
        sink = sinks[chunk.name]
        sink.add(result)
        bar.update(1)
        remaining[chunk.name] -= 1
        if remaining[chunk.name] == 0:
            sinks.pop(chunk.name).close()
    bar.close()
    summary = merge_manifests(out_dir)
    took = time.time() - start
    if summary is None:
        log(
            f"job {job_index}/{num_jobs} done in {took:.1f} s; other jobs' shards are pending "
            f"(the last job merges, or run `mwc shard --merge-only --out {out_dir}`)"
        )
    else:
        log(format_summary(summary, out_dir) + f"\ndone in {took:.1f} s")
    return summary


def format_summary(summary: dict[str, Any], out_dir: Path) -> str:
    lines = [f"shards in {out_dir}:"]
    for split, s in summary["splits"].items():
        line = f"  {split:<10} {s['num_samples']:>8} samples {s['num_shards']:>5} shards {s['hours']:>9.4f} h"
        if s.get("num_recordings"):
            line += f" ({s['num_windows']} windows from {s['num_recordings']} recordings)"
        lines.append(line)
    lines.append(f"  quarantined {summary['quarantined']} item(s) -> {out_dir / 'quarantine.jsonl'}")
    for reason, n in summary["reasons"].items():
        lines.append(f"    {reason:<20} {n}")
    return "\n".join(lines)
