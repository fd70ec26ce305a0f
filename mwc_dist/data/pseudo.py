"""Pseudo-labels: a teacher transcribes the training audio once; new shards carry its text beside the reference.

    mwc pseudo-label --model TEACHER --data SHARDS --out OUT [--split train] [--batch-size 8] [--language es]
                     [--backend ct2 --compute-type int8]  # CTranslate2: the teacher converted once, into OUT
    accelerate launch -m mwc_dist.cli pseudo-label ...    # ranks take disjoint shards: shard i -> rank i % world

Each shard of SHARDS/<split> becomes OUT/<same name>.tar with every sample unchanged (same audio bytes) but its
json gaining ``teacher_text``, ``teacher_tokens`` and ``quality``: the greedy decode's mean token log-probability,
the gzip compression ratio of its text, the n-gram it repeats 3+ times in a row (or null), and its WER against
the reference (null for a sample without one). ``OUT/<name>.quality.jsonl`` repeats the key and quality of every
sample, so that training can count what its filter keeps without reading the audio.

A shard is written under a temporary name and renamed when complete: a killed run started again skips the
finished shards; OUT/pseudo_label_run.json records the teacher and the decoding settings, and a run that asks
for other ones refuses to mix its labels into OUT. Tar members carry fixed metadata and each shard is batched
the same way wherever it runs, so the output is byte-identical to an uninterrupted run's and to a run on any
number of ranks. Memory: one batch.
Rank 0 then writes OUT/<split>.manifest.json and OUT/pseudo_labels.json (counts, samples without a reference,
what the default filter would drop, by reason), and links the other splits' shards and manifests into OUT, so
that ``data.shard_dir: OUT`` trains on pseudo-labels and still evaluates on the references.

Training reads the teacher's text with ``data.text_field: teacher_text``; ``QualityFilter`` (data.pseudo_*) then
drops the pairs a student should not learn from, each counted by reason.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwc_dist.atomic import atomic_path, write_atomic
from mwc_dist.data.config import DataConfig


@dataclass(frozen=True)
class QualityFilter:
    """Which pseudo-labels to train on (distil-whisper drops pairs over 10 % normalised WER)."""

    max_wer: float = 0.1
    min_avg_logprob: float = -1.0
    max_compression_ratio: float = 2.4

    @classmethod
    def from_config(cls, d: DataConfig) -> QualityFilter:
        return cls(d.pseudo_max_wer, d.pseudo_min_avg_logprob, d.pseudo_max_compression_ratio)

    def reason(self, teacher_text: str, quality: dict[str, Any]) -> str | None:
        """Why this pseudo-label is dropped, or None to keep it."""
        if not teacher_text.strip():
            return "empty"
        if quality["repeated"] is not None:
            return "repeated_ngram"
        if quality["compression_ratio"] > self.max_compression_ratio:
            return "compression_ratio"
        if quality["avg_logprob"] < self.min_avg_logprob:
            return "low_logprob"
        if quality["wer"] is not None and quality["wer"] > self.max_wer:
            return "wer_vs_reference"
        return None


def quality_of(teacher_text: str, avg_logprob: float, reference: str | None, language: str | None) -> dict[str, Any]:
    import jiwer

    from mwc_dist.inference.decoding import compression_ratio
    from mwc_dist.metrics import normalizer, repeated_run

    norm = normalizer(language)
    wer = None
    if reference is not None and norm(reference).strip():
        wer = round(jiwer.wer(norm(reference), norm(teacher_text) or "<empty>"), 4)
    return {
        "avg_logprob": round(avg_logprob, 4),
        "compression_ratio": round(compression_ratio(teacher_text), 4),
        "repeated": repeated_run(norm(teacher_text)),
        "wer": wer,
    }


def _write_tar(path: Path, samples: list[dict[str, Any]]) -> None:
    """Members in sample order, fixed metadata: the same samples always give the same bytes."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for ext in sorted(k for k in sample if not k.startswith("__")):
                data = sample[ext]
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))


def label_shard(
    teacher, url: str, out: Path, *, batch_size: int, language: str | None, max_new_tokens: int, store_topk: int = 0
) -> None:
    """One input shard -> OUT/<name>.tar + OUT/<name>.quality.jsonl (the tar last: its presence means done).
    ``store_topk`` > 0: each sample also gets the teacher's top-k log-probabilities per label token (data/topk.py)."""
    from mwc_dist.data.stream import decode_flac, tar_samples

    topk = _TopK(teacher, language, store_topk) if store_topk else None

    samples = list(tar_samples([url]))
    labelled, quality_rows = [], []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        metas = [json.loads(s["json"]) for s in batch]
        waves = [decode_flac(s["flac"]) if "flac" in s else _wav(s["wav"]) for s in batch]
        langs = {m.get("language") or language for m in metas}
        lang = langs.pop() if len(langs) == 1 else language
        features = teacher.features(waves)
        ids, logprobs = teacher.decode(features, lang, "transcribe", max_new_tokens, temperature=0.0)
        for meta, row, lp in zip(metas, ids, logprobs):
            text = teacher.to_text(row)
            quality = quality_of(text, lp, meta.get("text") or None, meta.get("language") or lang)
            meta |= {"teacher_text": text, "teacher_tokens": row, "quality": quality}
        members = topk(features, metas) if topk is not None else [{} for _ in batch]
        for sample, meta, extra in zip(batch, metas, members):
            text, quality = meta["teacher_text"], meta["quality"]
            json_bytes = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
            labelled.append(sample | {"json": json_bytes} | extra)
            quality_rows.append({"key": sample["__key__"], "teacher_text": text, "quality": quality})
    name = Path(url).name
    write_atomic(
        out / name.replace(".tar", ".quality.jsonl"),
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in quality_rows),
    )
    _write_tar(out / name, labelled)


class _TopK:
    """The teacher's top-k over its own pseudo-labels, teacher-forced on the label sequence training builds."""

    def __init__(self, teacher, language: str | None, k: int):
        from mwc_dist.data.stream import Tokenize

        if not hasattr(teacher, "model"):
            raise ValueError("--store-topk needs the teacher's full distribution: use --backend pytorch")
        positions = teacher.model.config.max_target_positions
        self.model, self.k = teacher.model, k
        self.tokenize = Tokenize(teacher.processor.tokenizer, language, "transcribe", positions)

    def __call__(self, features, metas: list[dict[str, Any]]) -> list[dict[str, bytes]]:
        from mwc_dist.data.labels import batch_sequences
        from mwc_dist.data.topk import teacher_topk

        as_trained = [m | {"text": m["teacher_text"], "segments": None, "prev_text": None} for m in metas]
        sequences = batch_sequences([{} for _ in metas], as_trained, self.tokenize, pad_id=self.tokenize.eot)
        return teacher_topk(self.model, features, sequences, self.k)


def _wav(payload: bytes):
    import soundfile as sf

    return sf.read(io.BytesIO(payload), dtype="float32")[0]


def pseudo_label(
    model_dir: str | Path,
    shard_dir: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    batch_size: int = 8,
    language: str | None = None,
    max_new_tokens: int = 128,
    max_shards: int = 0,
    backend: str = "pytorch",
    compute_type: str = "default",
    store_topk: int = 0,
    log=print,
) -> dict[str, Any] | None:
    """Label this rank's unfinished shards; rank 0 writes the manifest and summary once all are done (collective).

    ``backend="ct2"`` converts the teacher (a Hugging Face folder) to CTranslate2 once, into OUT/.teacher-ct2, and
    decodes with ``compute_type`` (``int8``: 8-bit weights, the fastest on CPUs)."""
    from mwc_dist.data.stream import ShardSet, shard_folder
    from mwc_dist.dist import build_process_state
    from mwc_dist.inference.backends import load_backend

    state = build_process_state()
    shard_dir, out = Path(shard_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = shard_folder(shard_dir, split)
    if max_shards:  # the first N shards of the split (the manifest's order): a subset to label
        shards = ShardSet(shards.urls[:max_shards], shards.counts[:max_shards], shards.max_seconds)
    _check_backend(backend, compute_type, store_topk)
    positions = json.loads((Path(model_dir) / "config.json").read_text())["max_target_positions"]
    max_new_tokens = min(max_new_tokens, positions - 4)  # after the 4-token prompt
    run = {"teacher": str(Path(model_dir).resolve()), "backend": backend, "compute_type": compute_type}
    run |= {"batch_size": batch_size, "language": language, "max_new_tokens": max_new_tokens}
    if store_topk:
        run["store_topk"] = store_topk
    if state.is_main_process:
        _claim(out, run)
        if backend == "ct2":
            _convert_ct2(Path(model_dir), out / CT2_TEACHER, compute_type)
    state.wait_for_everyone()
    _claim(out, run)  # every rank checks (a rank started alone on a node whose OUT holds another run's labels too)
    mine = [u for i, u in enumerate(shards.urls) if i % state.num_processes == state.process_index]
    todo = [u for u in mine if not (out / Path(u).name).is_file()]
    log(f"rank {state.process_index}: {len(mine) - len(todo)} of its {len(mine)} shards already labelled")
    if todo:
        teacher = load_backend(backend, out / CT2_TEACHER if backend == "ct2" else model_dir, compute_type)
        options = dict(batch_size=batch_size, language=language, max_new_tokens=max_new_tokens, store_topk=store_topk)
        for url in todo:
            label_shard(teacher, url, out, **options)
            log(f"labelled {Path(url).name}")
    state.wait_for_everyone()
    summary = _finish(shard_dir, out, split, shards.urls, run) if state.is_main_process else None
    state.wait_for_everyone()
    return summary


CT2_TEACHER = ".teacher-ct2"


def _check_backend(backend: str, compute_type: str, store_topk: int) -> None:
    if backend not in ("pytorch", "ct2"):
        raise SystemExit(f"pseudo-label: backend {backend!r}: choose pytorch or ct2")
    if backend == "pytorch" and compute_type != "default":
        raise SystemExit(f"pseudo-label: --compute-type {compute_type} is for --backend ct2; PyTorch decodes in fp32")
    if store_topk and backend != "pytorch":
        raise SystemExit("pseudo-label: --store-topk needs the teacher's full distribution: use --backend pytorch")


RUN_FILE = "pseudo_label_run.json"


def _claim(out: Path, run: dict[str, Any]) -> None:
    """OUT's labels come from one teacher and one way of decoding: record it, or refuse a run that differs."""
    path = out / RUN_FILE
    if not path.is_file():
        write_atomic(path, json.dumps(run, indent=2, sort_keys=True))
        return
    before = json.loads(path.read_text())
    if before != run:
        changed = ", ".join(f"{k}: {before.get(k)!r} -> {v!r}" for k, v in run.items() if before.get(k) != v)
        raise SystemExit(
            f"pseudo-label: {out} holds labels from another run ({changed}); pass a new --out, or delete {out} "
            f"to label again"
        )


def _convert_ct2(model_dir: Path, dest: Path, compute_type: str) -> None:
    """The teacher in CTranslate2's format, once (written aside and renamed: a killed conversion leaves nothing)."""
    from mwc_dist.export import export_ct2

    if not (dest / "model.bin").is_file():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        export_ct2(model_dir, tmp, compute_type if compute_type in ("int8", "int8_float32", "float16") else "float32")
        os.replace(tmp, dest)


def _finish(shard_dir: Path, out: Path, split: str, urls: list[str], run: dict[str, Any]) -> dict[str, Any]:
    """OUT/<split>.manifest.json (sizes and digests of the new shards), the other splits linked, the summary."""
    import hashlib

    manifest = json.loads((shard_dir / f"{split}.manifest.json").read_text())
    names = {Path(u).name for u in urls}
    manifest["shards"] = [e for e in manifest["shards"] if e["shard"] in names]
    manifest["num_shards"], manifest["num_samples"] = len(names), sum(e["num_samples"] for e in manifest["shards"])
    manifest["seconds"] = round(sum(e["seconds"] for e in manifest["shards"]), 3)
    manifest["hours"] = round(manifest["seconds"] / 3600, 6)
    for entry in manifest["shards"]:
        data = (out / entry["shard"]).read_bytes()
        entry |= {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    write_atomic(out / f"{split}.manifest.json", json.dumps(manifest | {"pseudo_labelled": True}, indent=2))
    for other in shard_dir.glob("*.manifest.json"):
        if other.name != f"{split}.manifest.json":
            for entry in json.loads(other.read_text())["shards"]:
                _link(shard_dir / entry["shard"], out / entry["shard"])
            shutil.copyfile(other, out / other.name)
    rows = [json.loads(x) for u in urls for x in quality_file(out / Path(u).name).read_text().splitlines()]
    default = QualityFilter()
    summary = {
        "split": split,
        "run": run,
        "num_samples": len(rows),
        "without_reference": sum(r["quality"]["wer"] is None for r in rows),
        "dropped_by_default_filter": dict(
            Counter(filter(None, (default.reason(r["teacher_text"], r["quality"]) for r in rows)))
        ),
    }
    write_atomic(out / "pseudo_labels.json", json.dumps(summary, indent=2))
    return summary


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def quality_file(tar: Path) -> Path:
    return tar.with_name(tar.name.replace(".tar", ".quality.jsonl"))


def filter_counts(urls: list[str], quality_filter: QualityFilter) -> tuple[list[int], Counter]:
    """Samples each shard keeps under the filter, and what it drops by reason (from the quality files only)."""
    kept, dropped = [], Counter()
    for url in urls:
        reasons = [
            quality_filter.reason(r["teacher_text"], r["quality"])
            for r in map(json.loads, quality_file(Path(url)).read_text().splitlines())
        ]
        kept.append(reasons.count(None))
        dropped.update(r for r in reasons if r is not None)
    return kept, dropped


def select_pseudo_labels(samples: Iterator[dict[str, Any]], quality_filter: QualityFilter) -> Iterator[dict[str, Any]]:
    """Keep the samples the filter passes, with the teacher's text as the training text (the reference kept)."""
    for sample in samples:
        meta = json.loads(sample["json"])
        if quality_filter.reason(meta["teacher_text"], meta["quality"]) is None:
            meta |= {"reference_text": meta["text"], "text": meta["teacher_text"]}
            # the teacher's own times (long-form labels, data/pseudo_long.py); never the reference's, which belong to
            # another text: without the teacher's, the sample is one segment, as a clip
            meta["segments"] = meta.pop("teacher_segments", None)
            yield sample | {"json": json.dumps(meta, ensure_ascii=False).encode()}
