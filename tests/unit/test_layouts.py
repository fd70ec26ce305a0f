"""Corpus layouts as released (Common Voice, NeMo, LibriSpeech, Kaldi), built from real espeak-ng speech and sharded
unchanged with `mwc shard --source DIR`; a hostile variant of each is quarantined reason by reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from long_audio import long_recording

from mwc_dist import cli
from mwc_dist.audio.encode import write_audio

RATE = 16000


def shard(source: Path, out: Path, *overrides: str) -> dict:
    """`mwc shard --source DIR --out OUT` in process; the summary it wrote."""
    rc = cli.main(["shard", "--source", str(source), "--out", str(out), "--workers", "1", "--quiet", *overrides])
    summary = json.loads((out / "summary.json").read_text())
    summary["rc"] = rc
    return summary


def samples(out: Path) -> dict[str, tuple[dict, np.ndarray, str]]:
    """Every sharded sample: key -> (meta, wave, split)."""
    import soundfile as sf

    from mwc_dist.data.stream import tar_samples

    found = {}
    for manifest in out.glob("*.manifest.json"):
        split = manifest.name.split(".")[0]
        urls = [str(out / s["shard"]) for s in json.loads(manifest.read_text())["shards"]]
        for s in tar_samples(urls):
            audio = s.get("flac") or s.get("wav")
            wave, _ = sf.read(__import__("io").BytesIO(audio), dtype="float32")
            found[s["__key__"]] = (json.loads(s["json"]), wave, split)
    return found


def quarantined(out: Path) -> Counter:
    return Counter(json.loads(line)["reason"] for line in (out / "quarantine.jsonl").read_text().splitlines())


def clip(sentences, n: int) -> tuple[str, np.ndarray, int]:
    return sentences[n % len(sentences)]


# ------------------------------------------------------------------------------------------ Common Voice
CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\tlocale\tsegment"


def _cv_row(client: str, path: str, sentence: str, up: int = 2) -> str:
    return f"{client}\t{path}\t{sentence}\t{up}\t0\ttwenties\t\t\tes\t"


@pytest.fixture(scope="module")
def commonvoice(tmp_path_factory, sentences):
    """A Common Voice release: clips/*.mp3, train.tsv (4 rows), dev.tsv (1), test.tsv (1), validated.tsv (all)."""
    root = tmp_path_factory.mktemp("cv") / "cv-corpus-es"
    (root / "clips").mkdir(parents=True)
    rows = {"train": [], "dev": [], "test": []}
    for n, split in enumerate(["train"] * 4 + ["dev", "test"]):
        text, wave, rate = clip(sentences, n)
        name = f"common_voice_es_{1000 + n}.mp3"
        write_audio(root / "clips" / name, wave, rate)
        rows[split].append(_cv_row(f"client{n % 3}", name, f'{text} "{n}"'))  # quotes unescaped, as CV writes them
    for split, lines in rows.items():
        (root / f"{split}.tsv").write_text("\n".join([CV_HEADER, *lines]) + "\n", encoding="utf-8")
    everything = [line for lines in rows.values() for line in lines]
    (root / "validated.tsv").write_text("\n".join([CV_HEADER, *everything]) + "\n", encoding="utf-8")
    return root


def test_commonvoice_release_shards_as_it_comes(commonvoice, tmp_path, sentences):
    summary = shard(commonvoice, tmp_path / "out")
    assert summary["rc"] == 0 and summary["quarantined"] == 0
    assert {s: v["num_samples"] for s, v in summary["splits"].items()} == {"train": 4, "validation": 1, "test": 1}
    got = samples(tmp_path / "out")
    meta, wave, split = got["common_voice_es_1004"]
    assert split == "validation" and meta["language"] == "es" and meta["speaker"] == "client1"
    assert meta["text"] == f'{sentences[0][0]} "4"'  # the sentence with its quotes, as the TSV holds it
    assert {m["speaker"] for m, _, _ in got.values()} == {"client0", "client1", "client2"}
    assert abs(len(wave) / RATE - len(sentences[0][1]) / sentences[0][2]) < 0.1  # the MP3 decoded whole


def test_commonvoice_one_tsv_and_validated_selectable(commonvoice, tmp_path):
    one = shard(commonvoice / "dev.tsv", tmp_path / "dev")
    assert {s: v["num_samples"] for s, v in one["splits"].items()} == {"validation": 1}
    validated = shard(commonvoice, tmp_path / "validated", "data.commonvoice_splits=[validated]")
    assert sum(v["num_samples"] for v in validated["splits"].values()) == 6  # split by hash: no split in the name
    both = shard(commonvoice, tmp_path / "both", "data.commonvoice_splits=[train,validated]")
    assert both["reasons"] == {"duplicate_key": 4}  # train's rows again in validated.tsv: caught, not doubled


def test_commonvoice_hostile_rows_are_quarantined_by_reason(commonvoice, tmp_path):
    import shutil

    root = tmp_path / "cv"
    shutil.copytree(commonvoice, root)
    lines = (root / "train.tsv").read_text().splitlines()
    lines += [
        _cv_row("client9", "common_voice_es_missing.mp3", "Una frase sin audio."),  # missing file
        _cv_row("client9", "common_voice_es_1001.mp3", "   "),  # empty sentence (and a duplicate path)
        "client9\tcommon_voice_es_1002.mp3\ttoo few fields",  # broken row
        _cv_row("client9", "common_voice_es_1003.mp3", "Otra vez."),  # duplicate clip id
        _cv_row("client9", "common_voice_es_1000.mp3", "Pocos votos.", up=0),
    ]
    lines[1] = lines[1].replace("\t2\t0\t", "\t0\t0\t")  # the first row has no up votes
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    summary = shard(root, tmp_path / "out", "data.min_up_votes=1")
    reasons = quarantined(tmp_path / "out")
    assert reasons == Counter(
        {"missing_file": 1, "empty_transcript": 1, "invalid_row": 1, "duplicate_key": 1, "below_min_up_votes": 2}
    )
    total_rows = len(lines) - 1 + 2  # train rows + dev + test
    assert sum(v["num_samples"] for v in summary["splits"].values()) + summary["quarantined"] == total_rows


# ------------------------------------------------------------------------------------------------ NeMo
@pytest.fixture(scope="module")
def long_file(tmp_path_factory, sentences):
    """One 16-kHz FLAC of four sentences and their true times."""
    root = tmp_path_factory.mktemp("long")
    wave, segments = long_recording(sentences, [0, 1, 2, 3])
    write_audio(root / "session.flac", wave, RATE)
    return root / "session.flac", segments


def _exact_span(path: Path, start: float, end: float) -> np.ndarray:
    from mwc_dist.audio.decode import load_mono

    wave = load_mono(str(path), str(path))
    return wave[round(start * RATE) : round(end * RATE)]


def test_nemo_json_lines_manifest_with_offsets(long_file, tmp_path):
    import shutil

    path, segments = long_file
    shutil.copy(path, tmp_path / "session.flac")
    rows = [
        {"audio_filepath": "session.flac", "offset": s - 0.2, "duration": e - s + 0.4, "text": t, "lang": "es"}
        for s, e, t in segments
    ]
    (tmp_path / "train_manifest.json").write_text("".join(json.dumps(r) + "\n" for r in rows))  # NeMo's .json
    out = tmp_path / "out"
    summary = shard(tmp_path / "train_manifest.json", out, "data.normalize=false", "data.shard_audio_format=wav")
    assert summary["quarantined"] == 0
    got = samples(out)
    assert len(got) == 4
    for row in rows:
        key = f"session_flac-{round(row['offset'] * 1000):09d}"
        meta, wave, _ = got[key]
        assert meta["text"] == row["text"] and meta["language"] == "es"
        exact = _exact_span(tmp_path / "session.flac", row["offset"], row["offset"] + row["duration"])
        assert abs(meta["duration"] - row["duration"]) < 1e-3
        np.testing.assert_array_equal(wave, exact)  # the span's samples are the file's at those times


def test_nemo_manifest_without_offsets_is_whole_clips(tmp_path, sentences):
    rows = []
    for n in range(3):
        text, wave, rate = clip(sentences, n)
        write_audio(tmp_path / f"utt{n}.wav", wave, rate)
        rows.append({"audio_filepath": str(tmp_path / f"utt{n}.wav"), "duration": len(wave) / rate, "text": text})
    (tmp_path / "manifest.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = shard(tmp_path / "manifest.json", tmp_path / "out", "data.language=Spanish")
    got = samples(tmp_path / "out")
    assert summary["quarantined"] == 0 and len(got) == 3
    assert {m["text"] for m, _, _ in got.values()} == {r["text"] for r in rows}
    assert {m["language"] for m, _, _ in got.values()} == {"es"}  # "Spanish" resolved to Whisper's code


def test_nemo_hostile_lines_are_quarantined_by_reason(long_file, tmp_path):
    import shutil

    path, segments = long_file
    shutil.copy(path, tmp_path / "session.flac")
    (s, e, t) = segments[0]
    good = {"audio_filepath": "session.flac", "offset": s, "duration": e - s, "text": t}
    lines = [
        json.dumps(good),
        json.dumps(good | {"offset": 500.0}),  # a span past the end of the file
        json.dumps(good | {"audio_filepath": "gone.flac"}),  # missing file
        json.dumps(good | {"offset": segments[1][0], "text": ""}),  # empty text
        json.dumps(good),  # duplicate utterance (same file, same offset)
        json.dumps(good | {"offset": segments[2][0], "lang": "esp"}),  # unknown language
        '{"audio_filepath": "session.flac", "text": "broken',  # not JSON
    ]
    (tmp_path / "m.json").write_text("\n".join(lines) + "\n")
    summary = shard(tmp_path / "m.json", tmp_path / "out")
    reasons = quarantined(tmp_path / "out")
    assert reasons == Counter(
        {
            "span_past_end": 1,
            "missing_file": 1,
            "empty_transcript": 1,
            "duplicate_key": 1,
            "unknown_language": 1,
            "invalid_row": 1,
        }
    )
    assert sum(v["num_samples"] for v in summary["splits"].values()) == 1
    lang = next(json.loads(x) for x in (tmp_path / "out/quarantine.jsonl").read_text().splitlines() if "esp" in x)
    assert "es (spanish)" in lang["detail"]  # names the nearest valid code


# ----------------------------------------------------------------------------------------- LibriSpeech
@pytest.fixture(scope="module")
def librispeech(tmp_path_factory, sentences):
    """train-clean/<spk>/<chapter>/ and test-clean/...: 5 FLAC utterances with their *.trans.txt."""
    root = tmp_path_factory.mktemp("ls") / "LibriSpeech"
    n = 0
    for subset, speakers in (("train-clean-5", ["19", "26"]), ("test-clean", ["61"])):
        for spk in speakers:
            chapter = root / subset / spk / "198"
            chapter.mkdir(parents=True)
            lines = []
            for u in range(2 if subset.startswith("train") else 1):
                text, wave, rate = clip(sentences, n)
                utt = f"{spk}-198-{u:04d}"
                write_audio(chapter / f"{utt}.flac", wave, rate)
                lines.append(f"{utt} {text.upper()}")
                n += 1
            (chapter / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_tree_shards_as_it_comes(librispeech, tmp_path, sentences):
    summary = shard(librispeech, tmp_path / "out", "data.language=en")
    assert summary["quarantined"] == 0
    assert {s: v["num_samples"] for s, v in summary["splits"].items()} == {"train": 4, "test": 1}
    got = samples(tmp_path / "out")
    meta, _, split = got["26-198-0001"]
    assert split == "train" and meta["speaker"] == "26" and meta["language"] == "en"
    assert meta["text"] == sentences[3][0].upper()


def test_librispeech_hostile_tree(librispeech, tmp_path):
    import shutil

    root = tmp_path / "ls"
    shutil.copytree(librispeech, root)
    chapter = root / "train-clean-5" / "19" / "198"
    trans = chapter / "19-198.trans.txt"
    trans.write_text(trans.read_text() + "19-198-0009 NO AUDIO FOR THIS LINE\n19-198-0001\n")  # missing; empty
    shutil.copy(chapter / "19-198-0000.flac", chapter / "19-198-0005.flac")  # audio no line names
    other = root / "train-clean-5" / "19" / "199"
    other.mkdir()
    shutil.copy(chapter / "19-198-0000.flac", other / "19-198-0000.flac")
    (other / "19-199.trans.txt").write_text("19-198-0000 A DUPLICATE UTTERANCE ID\n")
    summary = shard(root, tmp_path / "out")
    assert quarantined(tmp_path / "out") == Counter(
        {"missing_file": 1, "empty_transcript": 1, "missing_transcript": 1, "duplicate_key": 1}
    )
    # the 5 good utterances kept; 8 trans lines + 1 audio file no line names = 9 items in the source
    assert sum(v["num_samples"] for v in summary["splits"].values()) == 5
    assert summary["num_items"] == 9


# ----------------------------------------------------------------------------------------------- Kaldi
def _kaldi(d: Path, wav_scp: list[str], text: list[str], utt2spk: list[str], segments: list[str] | None = None):
    d.mkdir(parents=True, exist_ok=True)
    (d / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (d / "text").write_text("\n".join(text) + "\n")
    (d / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    (d / "spk2utt").write_text("ignored\n")
    if segments is not None:
        (d / "segments").write_text("\n".join(segments) + "\n")


def test_kaldi_dirs_with_and_without_segments(tmp_path, sentences, long_file):
    root = tmp_path / "data"
    # train: whole files, one utterance each
    wav, text, spk = [], [], []
    for n in range(3):
        t, wave, rate = clip(sentences, n)
        write_audio(tmp_path / f"spkA-utt{n}.wav", wave, rate)
        wav.append(f"spkA-utt{n} {tmp_path / f'spkA-utt{n}.wav'}")
        text.append(f"spkA-utt{n} {t}")
        spk.append(f"spkA-utt{n} spkA")
    _kaldi(root / "train", wav, text, spk)
    # test: one long recording cut by segments (relative path in wav.scp: against the data dir)
    path, segments = long_file
    (root / "test").mkdir(parents=True)
    (root / "test" / "session.flac").write_bytes(path.read_bytes())
    seg_lines = [f"spkB-seg{n} session {s - 0.1:.3f} {e + 0.1:.3f}" for n, (s, e, _) in enumerate(segments)]
    _kaldi(
        root / "test",
        ["session session.flac"],
        [f"spkB-seg{n} {t}" for n, (_, _, t) in enumerate(segments)],
        [f"spkB-seg{n} spkB" for n in range(len(segments))],
        seg_lines,
    )
    out = tmp_path / "out"
    summary = shard(root, out, "data.language=es", "data.normalize=false", "data.shard_audio_format=wav")
    assert summary["quarantined"] == 0
    assert {s: v["num_samples"] for s, v in summary["splits"].items()} == {"train": 3, "test": 4}
    got = samples(out)
    for n, (s, e, t) in enumerate(segments):
        meta, wave, split = got[f"spkB-seg{n}"]
        assert split == "test" and meta["speaker"] == "spkB" and meta["text"] == t
        start, end = float(f"{s - 0.1:.3f}"), float(f"{e + 0.1:.3f}")
        np.testing.assert_array_equal(wave, _exact_span(root / "test" / "session.flac", start, end))
    assert got["spkA-utt1"][0]["speaker"] == "spkA" and got["spkA-utt1"][0]["text"] == sentences[1][0]


def test_kaldi_hostile_dir(tmp_path, sentences, long_file):
    path, segments = long_file
    d = tmp_path / "dev"
    d.mkdir()
    (d / "session.flac").write_bytes(path.read_bytes())
    s, e, t = segments[0]
    _kaldi(
        d,
        ["session session.flac", "piped sox in.wav -t wav - |", "gone /nowhere/gone.wav"],
        [
            f"u1 {t}",
            f"u2 {t}",  # its segment runs past the end of the file
            f"u3 {t}",  # its recording is piped
            f"u4 {t}",  # its file is missing
            "u5",  # no words
            f"u1 {t}",  # duplicate utterance id
        ],
        [f"u{n} spk" for n in range(1, 6)],
        [
            f"u1 session {s} {e}",
            "u2 session 1.0 900.0",
            "u3 piped 0 -1",
            "u4 gone 0 -1",
            "u5 session 0 1",
            "u6 session 0 1",
        ],
    )
    summary = shard(d, tmp_path / "out")
    reasons = quarantined(tmp_path / "out")
    assert reasons == Counter(
        {
            "span_past_end": 1,
            "piped_wav_scp": 1,
            "missing_file": 1,
            "empty_transcript": 1,
            "duplicate_key": 1,
            "missing_transcript": 1,  # u6: a segment with no text line
        }
    )
    assert sum(v["num_samples"] for v in summary["splits"].values()) == 1
    piped = next(json.loads(x) for x in (tmp_path / "out/quarantine.jsonl").read_text().splitlines() if "piped" in x)
    assert "data.kaldi_allow_pipes=true" in piped["detail"]


def test_kaldi_piped_wav_scp_runs_on_opt_in(tmp_path, sentences):
    text, wave, rate = clip(sentences, 0)
    write_audio(tmp_path / "a.wav", wave, rate)
    _kaldi(tmp_path / "d", [f"a cat {tmp_path / 'a.wav'} |"], [f"a {text}"], ["a spk"])
    refused = shard(tmp_path / "d", tmp_path / "refused")
    assert refused["reasons"] == {"piped_wav_scp": 1} and refused["rc"] == 2
    ran = shard(tmp_path / "d", tmp_path / "ran", "data.kaldi_allow_pipes=true")
    assert ran["quarantined"] == 0 and samples(tmp_path / "ran")["a"][0]["text"] == text


def test_detection_says_what_it_chose_and_why(commonvoice, librispeech, tmp_path):
    from mwc_dist.config import DataConfig
    from mwc_dist.data.sources import detect_source

    assert detect_source(DataConfig(source=str(commonvoice)))[0] == "commonvoice"
    kind, why = detect_source(DataConfig(source=str(librispeech)))
    assert kind == "librispeech" and "trans.txt" in why
    (tmp_path / "m.json").write_text(json.dumps({"audio_filepath": "a.wav", "text": "x"}) + "\n")
    assert detect_source(DataConfig(source=str(tmp_path / "m.json")))[0] == "nemo"
    (tmp_path / "rows.json").write_text(json.dumps([{"audio": "a.wav", "text": "x"}]))
    assert detect_source(DataConfig(source=str(tmp_path / "rows.json")))[0] == "json"


def test_spans_decode_their_file_once_and_shard_reproducibly_as_array_jobs(long_file, tmp_path, monkeypatch):
    """A NeMo manifest of 4 spans of one file: one decode of the file; 2 array jobs write the bytes one job writes;
    a re-run skips what is done."""
    import shutil

    from mwc_dist.audio import decode

    path, segments = long_file
    shutil.copy(path, tmp_path / "session.flac")
    rows = [{"audio_filepath": "session.flac", "offset": s, "duration": e - s, "text": t} for s, e, t in segments]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls = []
    real = decode.load_mono
    monkeypatch.setattr(decode, "load_mono", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    one = shard(
        tmp_path / "m.jsonl",
        tmp_path / "one",
        "data.shard_samples=2",
        "data.train_split_ratio=1.0",
        "data.validation_split_ratio=0.0",
    )
    assert calls == [str(tmp_path / "session.flac")] and one["splits"]["train"]["num_samples"] == 4
    for job in (0, 1):
        args = ["--job-index", str(job), "--num-jobs", "2", "data.shard_samples=2", "data.train_split_ratio=1.0"]
        argv = ["shard", "--source", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "two"), "--workers", "1"]
        assert cli.main([*argv, "--quiet", *args, "data.validation_split_ratio=0.0"]) == 0
    sha = {
        d: [s["sha256"] for s in json.loads((tmp_path / d / "train.manifest.json").read_text())["shards"]]
        for d in ("one", "two")
    }
    assert len(sha["one"]) == 2 and sha["one"] == sha["two"]
    calls.clear()
    shard(
        tmp_path / "m.jsonl",
        tmp_path / "one",
        "data.shard_samples=2",
        "data.train_split_ratio=1.0",
        "data.validation_split_ratio=0.0",
    )
    assert calls == []  # resumed: every shard already written
