"""`mwc shard` end to end on real files: good items sharded, bad ones quarantined by reason, resumable, splittable."""

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mwc_dist.audio.decode import load_audio
from mwc_dist.audio.encode import write_audio
from mwc_dist.config import DataConfig
from mwc_dist.data.shard import ShardError, merge_manifests, shard_source

GOOD_FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "wma", "wav", "flac", "mp3", "m4a"]
BAD = {  # file -> the reason it must be quarantined with
    "bad_corrupt.wav": "unreadable",
    "bad_truncated.flac": "truncated",
    "bad_zero.mp3": "empty_file",
    "bad_text.wav": "not_audio",
    "bad_long.flac": "too_long",
    "bad_untranscribed.ogg": "missing_transcript",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sentences):
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for n, fmt in enumerate(GOOD_FORMATS):
        text, samples, rate = sentences[n % len(sentences)]
        name = f"good_{n:02d}.{fmt}"
        write_audio(root / name, samples, rate, channels=2 if n % 3 == 0 else 1)
        rows.append((name, f"item {n}: {text}"))
    text, samples, rate = sentences[0]
    wav = (root / "good_00.wav").read_bytes()
    (root / "bad_corrupt.wav").write_bytes(wav[:12] + os.urandom(400) + wav[412:])
    flac = write_audio(root / "tmp.flac", samples, rate).read_bytes()
    (root / "tmp.flac").unlink()
    (root / "bad_truncated.flac").write_bytes(flac[: len(flac) // 2])
    (root / "bad_zero.mp3").write_bytes(b"")
    (root / "bad_text.wav").write_text("not audio at all\n" * 50)
    write_audio(root / "bad_long.flac", np.tile(samples, 4), rate)  # ~11 s > the 8 s limit below
    write_audio(root / "bad_untranscribed.ogg", samples, rate)
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "text"])
        w.writerows(rows + [(name, "bad item") for name in BAD if name != "bad_untranscribed.ogg"])
    return root, dict(rows)


def _cfg(root, **kw):
    base = dict(source=str(root), max_duration_seconds=8.0, shard_samples=3, language="es")
    return DataConfig(**(base | kw))


def _read_tars(out_dir):
    """key -> (json meta, audio bytes), read with plain tarfile; asserts no key appears twice."""
    samples = {}
    for tar_path in sorted(Path(out_dir).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in members:
            if name.endswith(".json"):
                key = name[: -len(".json")]
                assert key not in samples, f"duplicate sample {key}"
                samples[key] = (json.loads(members[name]), members[key + ".flac"], tar_path.name.split("-")[0])
    return samples


def test_good_items_sharded_bad_items_quarantined(tmp_path, corpus):
    root, good = corpus
    out = tmp_path / "out"
    summary = shard_source(_cfg(root), out, workers=1, progress=False)
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    by_file = {Path(q["source"]).name: q["reason"] for q in quarantine}
    assert by_file == BAD
    assert len(set(by_file.values())) == len(BAD)  # each failure has its own reason
    assert all(q["detail"] for q in quarantine)

    samples = _read_tars(out)
    assert sorted(Path(m["source"]).name for m, _, _ in samples.values()) == sorted(good)
    # the counts add up: every input is either a sample or a quarantine line
    assert summary["num_items"] == len(good) + len(BAD)
    assert sum(s["num_samples"] for s in summary["splits"].values()) + summary["quarantined"] == summary["num_items"]
    for meta, audio, _split in samples.values():
        name = Path(meta["source"]).name
        assert meta["text"] == good[name] and meta["language"] == "es"
        wave, rate = sf.read(io.BytesIO(audio), dtype="float32")
        assert rate == 16000 and wave.ndim == 1
        reference = load_audio(root / name, max_seconds=8.0)
        assert len(wave) == len(reference) == meta["num_samples"]
        assert np.max(np.abs(wave - reference)) <= 1.0 / 32768 + 1e-6  # 16-bit FLAC: lossless up to quantisation
        assert meta["duration"] == pytest.approx(len(wave) / 16000, abs=1e-3)

    for split, info in summary["splits"].items():
        manifest = json.loads((out / f"{split}.manifest.json").read_text())
        assert manifest["num_samples"] == sum(1 for *_, s in samples.values() if s == split) == info["num_samples"]
        assert manifest["hours"] == pytest.approx(
            sum(m["duration"] for m, _, s in samples.values() if s == split) / 3600, abs=1e-5
        )
        assert manifest["config"]["max_duration_seconds"] == 8.0
        import hashlib

        for shard in manifest["shards"]:
            assert hashlib.sha256((out / shard["shard"]).read_bytes()).hexdigest() == shard["sha256"]


def test_webdataset_reads_the_shards_sample_for_sample(tmp_path, corpus):
    import webdataset as wds

    root, good = corpus
    out = tmp_path / "out"
    shard_source(_cfg(root), out, workers=1, progress=False)
    by_tar = _read_tars(out)
    urls = sorted(str(p) for p in out.glob("*.tar"))
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode():
        seen[sample["__key__"]] = sample
    assert sorted(seen) == sorted(by_tar)
    for key, sample in seen.items():
        meta, audio, _ = by_tar[key]
        assert sample["json"] == meta
        assert sample["flac"] == audio  # raw bytes: .flac is not an extension webdataset decodes by default


def test_split_is_deterministic_and_follows_ratios(tmp_path, corpus):
    root, _ = corpus
    splits = []
    for run in range(2):
        shard_source(
            _cfg(root, train_split_ratio=0.5, validation_split_ratio=0.25, test_split_ratio=0.25),
            tmp_path / f"run{run}",
            workers=1,
            progress=False,
        )
        splits.append({k: s for k, (_, _, s) in _read_tars(tmp_path / f"run{run}").items()})
    assert splits[0] == splits[1]
    assert set(splits[0].values()) == {"train", "validation", "test"}


def test_resume_writes_no_duplicate(tmp_path, corpus):
    root, good = corpus
    out = tmp_path / "out"
    cfg = _cfg(root)
    # an interrupted run: job 0 of 2 finished, job 1 never ran, and a crash left a half-written temp file
    assert shard_source(cfg, out, job_index=0, num_jobs=2, workers=1, progress=False) is None
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert first and not (out / "train.manifest.json").exists()
    (out / "train-000001.tar.tmp").write_bytes(b"partial")
    summary = shard_source(cfg, out, workers=1, progress=False)  # re-run over the same output
    assert summary is not None
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar") if p.name in first} == first  # not rewritten
    samples = _read_tars(out)  # asserts no duplicate keys
    assert sorted(Path(m["source"]).name for m, _, _ in samples.values()) == sorted(good)
    # a third run does nothing
    again = shard_source(cfg, out, workers=1, progress=False)
    assert again == summary


def test_jobs_merged_equal_one_run(tmp_path, corpus):
    root, _ = corpus
    cfg = _cfg(root)
    single = tmp_path / "single"
    shard_source(cfg, single, workers=2, progress=False)  # also exercises the process pool
    split = tmp_path / "split"
    for job in (1, 2, 0):
        shard_source(cfg, split, job_index=job, num_jobs=3, workers=1, progress=False)
    assert merge_manifests(split) is not None
    a, b = _read_tars(single), _read_tars(split)
    assert a.keys() == b.keys()
    assert all(a[k][1] == b[k][1] and a[k][0] == b[k][0] for k in a)
    assert (single / "quarantine.jsonl").read_text() == (split / "quarantine.jsonl").read_text()
    for name in ("train.manifest.json", "validation.manifest.json"):  # shards are byte-for-byte reproducible
        shards = [json.loads((d / name).read_text())["shards"] for d in (single, split)]
        assert shards[0] == shards[1]


def test_changed_plan_is_refused_unless_overwrite(tmp_path, corpus):
    root, _ = corpus
    out = tmp_path / "out"
    shard_source(_cfg(root), out, workers=1, progress=False)
    with pytest.raises(ShardError, match="different source or settings"):
        shard_source(_cfg(root, max_duration_seconds=20.0), out, workers=1, progress=False)
    summary = shard_source(_cfg(root, max_duration_seconds=20.0), out, workers=1, progress=False, overwrite=True)
    assert "too_long" not in summary["reasons"]
    assert len(_read_tars(out)) == summary["num_items"] - summary["quarantined"]


# Real separate processes (not fork: by now the test process has threads, and a forked child can deadlock on them)
HAMMER = """
import os, sys
from pathlib import Path
from mwc_dist.atomic import write_atomic
for i in range(300):
    write_atomic(Path(sys.argv[1]), f"{os.getpid()} {i}\\n" * 100)
"""

JOB = """
import json, sys
from mwc_dist.config import DataConfig
from mwc_dist.data.shard import shard_source
cfg = DataConfig(**json.loads(sys.argv[1]))
print(shard_source(cfg, sys.argv[2], job_index=int(sys.argv[3]), num_jobs=3, workers=1, progress=False) is not None)
"""


def test_atomic_write_from_concurrent_processes(tmp_path):
    """Array tasks start together and all write plan.json (then may all merge): no writer may lose its temp file."""
    import subprocess
    import sys

    target = tmp_path / "plan.json"
    procs = [
        subprocess.Popen([sys.executable, "-c", HAMMER, str(target)], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1  # one writer's whole file, never a mix
    assert not list(tmp_path.glob("*.tmp"))


def test_concurrent_jobs_merge_once_complete(tmp_path, corpus):
    import subprocess
    import sys
    from dataclasses import asdict

    root, _ = corpus
    cfg = _cfg(root)
    shard_source(cfg, tmp_path / "single", workers=1, progress=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", JOB, json.dumps(asdict(cfg)), str(tmp_path / "split"), str(j)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for j in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    assert any(out.strip().endswith("True") for out, _ in outs)  # whichever job finished last saw every part and merged
    assert (tmp_path / "single" / "quarantine.jsonl").read_text() == (
        tmp_path / "split" / "quarantine.jsonl"
    ).read_text()
    for name in ("train.manifest.json", "validation.manifest.json"):
        shards = [json.loads((tmp_path / d / name).read_text())["shards"] for d in ("single", "split")]
        assert shards[0] == shards[1]


def test_transcript_over_the_decoder_limit_is_quarantined(tmp_path, sentences):
    """A transcript longer than Whisper's decoder holds (448 tokens) is its own quarantine reason at shard time."""
    text, samples, rate = sentences[1]
    root = tmp_path / "src"
    root.mkdir()
    long_text = " ".join([text] * 60)  # ~600 words: far over 448 tokens
    for name in ("ok.wav", "long.wav"):
        write_audio(root / name, samples, rate)
    (root / "metadata.csv").write_text(f"file_name,text\nok.wav,{text}\nlong.wav,{long_text}\n")
    shard_source(
        _cfg(root, train_split_ratio=1.0, validation_split_ratio=0.0), tmp_path / "out", workers=1, progress=False
    )
    rows = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == ["too_many_tokens"] and "long.wav" in rows[0]["source"]
    assert "data.max_label_tokens=448" in rows[0]["detail"] and "tokens" in rows[0]["detail"]
    assert [m["text"] for m, *_ in _read_tars(tmp_path / "out").values()] == [text]
    # the check is the config key's: 0 turns it off
    shard_source(
        _cfg(root, train_split_ratio=1.0, validation_split_ratio=0.0, max_label_tokens=0),
        tmp_path / "off",
        workers=1,
        progress=False,
    )
    assert len(_read_tars(tmp_path / "off")) == 2


def test_a_label_over_the_decoder_limit_adds_no_loss_and_is_counted():
    """Shards made without the check: at load time the row's labels are all ignored (-100), counted in the batch."""
    import io as _io

    from mwc_dist.data.stream import Tokenize, collate
    from mwc_dist.models.tokenizer import load_tokenizer

    buf = _io.BytesIO()
    sf.write(buf, np.zeros(16000, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    sample = lambda text: {"wav": buf.getvalue(), "json": json.dumps({"key": text[:5], "text": text})}  # noqa: E731
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe", max_tokens=12)
    batch = collate(
        [sample("hola"), sample("una frase bastante larga que no cabe en doce tokens de ninguna manera")],
        tokenize,
        16000,
    )
    assert batch["labels_over_limit"] == 1
    assert (batch["labels"][1] == -100).all() and (batch["labels"][0] != -100).sum() == len(tokenize("hola"))
