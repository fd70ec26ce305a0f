"""`mwc pseudo-label`: killed and restarted = uninterrupted (byte for byte, no shard transcribed twice), 2 ranks =
1 rank, the quality filter's reasons, and training on the teacher's text with every drop counted."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_run import ACCELERATE, CPU_2PROC, run_env

from mwc_dist.data.pseudo import QualityFilter, _write_tar, quality_file, quality_of

LABEL = ["--batch-size", "2", "--max-new-tokens", "12", "--language", "es"]


@pytest.fixture(scope="module")
def teacher():
    from mwc_dist.models.build import materialize_preset

    return materialize_preset("tiny-random", seed=11)


def _label(teacher, shards, out, *prefix, wait=True):
    cmd = [*prefix, "-m", "mwc_dist.cli", "pseudo-label", "--model", str(teacher), "--data", str(shards)]
    cmd += ["--out", str(out), *LABEL]
    proc = subprocess.Popen(
        cmd, env=run_env(ACCELERATE_USE_CPU="true"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if wait:
        output = proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, output[-3000:]
        return output
    return proc


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def straight(teacher, demo_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    _label(teacher, demo_shards, out, sys.executable)
    return out


def test_pseudo_shards_carry_the_teacher_beside_the_original(straight, demo_shards):
    from mwc_dist.data.stream import tar_samples

    manifest = json.loads((straight / "train.manifest.json").read_text())
    assert manifest["pseudo_labelled"] and manifest["num_samples"] == 46
    for entry in manifest["shards"]:
        original = {s["__key__"]: s for s in tar_samples([str(demo_shards / entry["shard"])])}
        labelled = list(tar_samples([str(straight / entry["shard"])]))
        quality = [json.loads(x) for x in quality_file(straight / entry["shard"]).read_text().splitlines()]
        assert [s["__key__"] for s in labelled] == list(original) == [q["key"] for q in quality]
        for sample, q in zip(labelled, quality):
            meta, before = json.loads(sample["json"]), json.loads(original[sample["__key__"]]["json"])
            assert sample["flac"] == original[sample["__key__"]]["flac"]  # the audio untouched
            assert {k: meta[k] for k in before} == before  # every original field kept
            assert meta["teacher_text"] == q["teacher_text"] and meta["quality"] == q["quality"]
            assert isinstance(meta["teacher_tokens"], list) and meta["quality"]["wer"] is not None
    assert (straight / "validation.manifest.json").is_file() and (straight / "validation-000000.tar").is_file()
    summary = json.loads((straight / "pseudo_labels.json").read_text())
    assert summary["num_samples"] == 46 and summary["without_reference"] == 0


def test_killed_and_restarted_equals_uninterrupted(teacher, demo_shards, straight, tmp_path):
    out = tmp_path / "killed"
    proc = _label(teacher, demo_shards, out, sys.executable, wait=False)
    deadline = time.time() + 600
    while len(list(out.glob("train-*.tar"))) < 2:
        assert proc.poll() is None and time.time() < deadline, "finished or stuck before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name for p in out.glob("train-*.tar")}
    assert 2 <= len(finished) < 6
    output = _label(teacher, demo_shards, out, sys.executable)
    assert f"rank 0: {len(finished)} of its 6 shards already labelled" in output
    relabelled = {line.split()[-1] for line in output.splitlines() if line.startswith("labelled ")}
    assert relabelled == {f"train-{i:06d}.tar" for i in range(6)} - finished  # none transcribed twice
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == [] and _files(out) == _files(straight)


def test_two_ranks_write_what_one_rank_writes(teacher, demo_shards, straight, tmp_path):
    output = _label(teacher, demo_shards, tmp_path / "two", str(ACCELERATE), "launch", *CPU_2PROC)
    assert "rank 1: 0 of its 3 shards already labelled" in output
    assert _files(tmp_path / "two") == _files(straight)


def test_the_filter_drops_hallucinations_with_their_reasons():
    reference = "la abuela lee el periódico por la mañana"
    outputs = {
        "faithful": "La abuela lee el periódico por la mañana.",
        "looping": "la abuela lee el periódico por la mañana mañana mañana mañana",
        "empty": "",
        "wrong language": "the grandmother reads the newspaper in the morning",
    }
    quality = {name: quality_of(text, -0.3, reference, "es") for name, text in outputs.items()}
    reasons = {name: QualityFilter().reason(outputs[name], q) for name, q in quality.items()}
    assert reasons == {
        "faithful": None,
        "looping": "repeated_ngram",
        "empty": "empty",
        "wrong language": "wer_vs_reference",
    }
    assert quality["faithful"]["wer"] == 0.0 and quality["wrong language"]["wer"] == 1.0
    assert QualityFilter().reason(outputs["faithful"], quality["faithful"] | {"avg_logprob": -2.0}) == "low_logprob"
    assert QualityFilter(max_wer=1.5).reason(outputs["wrong language"], quality["wrong language"]) is None


def test_training_on_pseudo_labels_uses_the_teacher_text_and_counts_drops(straight, tmp_path, capsys):
    """A teacher that is faithful on even samples and loops on odd ones (the random teacher's own loops)."""
    import shutil

    from tiny_run import trainer

    from mwc_dist.data.stream import tar_samples

    data = tmp_path / "pseudo"
    shutil.copytree(straight, data)
    faithful = {}
    for tar in sorted(data.glob("train-*.tar")):
        samples, rows = [], []
        for i, sample in enumerate(tar_samples([str(tar)])):
            meta = json.loads(sample["json"])
            if i % 2 == 0:
                meta["teacher_text"] = meta["text"].upper()  # the same words: WER 0 after normalisation
                meta["quality"] = quality_of(meta["teacher_text"], -0.2, meta["text"], "es")
                faithful[sample["__key__"]] = meta["teacher_text"]
            samples.append(sample | {"json": json.dumps(meta).encode()})
            rows.append({"key": sample["__key__"], "teacher_text": meta["teacher_text"], "quality": meta["quality"]})
        _write_tar(tar, samples)
        quality_file(tar).write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = trainer(data, tmp_path / "run", "data.text_field=teacher_text", "train.max_steps=2", "train.eval_steps=-1")
    assert t.data.shards.num_samples == len(faithful) and t.data.pseudo_dropped == {
        "repeated_ngram": 46 - len(faithful)
    }
    assert f"dropped by the quality filter: {46 - len(faithful)} repeated_ngram" in capsys.readouterr().out
    batch = next(b for b in t.data.stream(0) if b is not None)
    assert batch["texts"] == [faithful[k] for k in batch["keys"]]
    summary = t.train()
    assert (
        json.loads((tmp_path / "run" / "run_summary.json").read_text())["pseudo_labels_dropped"]
        == {"repeated_ngram": 46 - len(faithful)}
        and summary["steps"] == 2
    )


def test_max_shards_labels_a_subset_and_its_manifest_says_so(teacher, demo_shards, tmp_path):
    from mwc_dist.data.pseudo import pseudo_label

    summary = pseudo_label(teacher, demo_shards, tmp_path / "two", language="es", max_new_tokens=8, max_shards=2)
    manifest = json.loads((tmp_path / "two" / "train.manifest.json").read_text())
    assert [e["shard"] for e in manifest["shards"]] == ["train-000000.tar", "train-000001.tar"]
    assert manifest["num_samples"] == summary["num_samples"] == 18 and manifest["num_shards"] == 2
    assert sorted(p.name for p in (tmp_path / "two").glob("train-*.tar")) == ["train-000000.tar", "train-000001.tar"]


def test_audio_without_transcripts_is_sharded_pseudo_labelled_and_never_trained_on_as_is(teacher, sentences, tmp_path):
    """An audio-only folder (no metadata, no .txt): sharded with data.allow_missing_text, counted in the manifest,
    refused as training references, labelled by the teacher (no WER: nothing to compare with)."""
    import soundfile as sf
    from tiny_run import trainer

    from mwc_dist.config import DataConfig
    from mwc_dist.data.pseudo import pseudo_label
    from mwc_dist.data.shard import shard_source

    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(12):
        _, wave, rate = sentences[i % len(sentences)]
        sf.write(folder / f"clip{i:02d}.wav", wave, rate)
    shard_source(DataConfig(source=str(folder), shard_samples=4), tmp_path / "refused", workers=1, progress=False)
    rejected = [json.loads(x) for x in (tmp_path / "refused" / "quarantine.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejected] == ["missing_transcript"] * 12  # without the key: quarantined, named
    data = DataConfig(source=str(folder), shard_samples=4, allow_missing_text=True, language="es")
    shard_source(data, tmp_path / "shards", workers=1, progress=False)
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "shards").glob("*.manifest.json")]
    assert sum(m["num_samples"] for m in manifests) == 12 == sum(m["without_text"] for m in manifests)
    with pytest.raises(ValueError, match=r"have no transcript .*`mwc pseudo-label`.*data\.text_field=teacher_text"):
        trainer(tmp_path / "shards", tmp_path / "run", "train.max_steps=1", "train.eval_steps=-1")
    summary = pseudo_label(teacher, tmp_path / "shards", tmp_path / "pseudo", language="es", max_new_tokens=8)
    assert summary["without_reference"] == summary["num_samples"] > 0


def test_ct2_labeller_decodes_as_pytorch_and_a_changed_run_is_refused(teacher, demo_shards, straight, tmp_path):
    """``--backend ct2``: the teacher converted once into OUT/.teacher-ct2; at float32 its greedy tokens are
    PyTorch's; int8 weights are really int8. OUT's labels come from one run: another backend is refused, named."""
    from mwc_dist.data.pseudo import CT2_TEACHER, RUN_FILE, pseudo_label

    kw = {"batch_size": 2, "language": "es", "max_new_tokens": 12}
    summary = pseudo_label(teacher, demo_shards, tmp_path / "f32", backend="ct2", compute_type="float32", **kw)
    assert summary["run"]["backend"] == "ct2" and (tmp_path / "f32" / CT2_TEACHER / "model.bin").is_file()

    def texts(folder):
        rows = [json.loads(x) for p in sorted(folder.glob("*.quality.jsonl")) for x in p.read_text().splitlines()]
        return {r["key"]: r["teacher_text"] for r in rows}

    assert texts(tmp_path / "f32") == texts(straight) and len(texts(straight)) == 46
    pseudo_label(teacher, demo_shards, tmp_path / "i8", backend="ct2", compute_type="int8", max_shards=1, **kw)
    assert json.loads((tmp_path / "i8" / RUN_FILE).read_text())["compute_type"] == "int8"
    i8, f32 = (tmp_path / d / CT2_TEACHER / "model.bin" for d in ("i8", "f32"))
    assert i8.stat().st_size < 0.6 * f32.stat().st_size  # 8-bit weights: the converted file is smaller
    with pytest.raises(SystemExit, match=r"holds labels from another run \(backend: 'pytorch' -> 'ct2'.*new --out"):
        pseudo_label(teacher, demo_shards, straight, backend="ct2", compute_type="float32", **kw)
