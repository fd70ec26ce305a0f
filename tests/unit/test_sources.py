"""Every source type (folder + metadata/.txt, CSV, JSON, JSONL, HF save_to_disk, HF audiofolder): the same items."""

import csv
import json
from pathlib import Path

import pytest

from mwc_dist.audio.encode import write_audio
from mwc_dist.config import DataConfig
from mwc_dist.data.sources import SourceError, list_items

FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "wma"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, sentences):
    """8 clips, one per format, in <tmp>/audio/ with their transcripts."""
    root = tmp_path_factory.mktemp("src") / "audio"
    root.mkdir()
    rows = []
    for n, fmt in enumerate(FORMATS):
        text, samples, rate = sentences[n % len(sentences)]
        name = f"clip_{n:02d}.{fmt}"
        write_audio(root / name, samples, rate)
        rows.append({"file_name": name, "text": f"{n} {text}", "language": "es", "speaker": f"spk{n % 3}"})
    return root, rows


def _signature(items):
    return sorted((i.text, i.language, i.speaker) for i in items)


def _write_csv(path, rows, prefix=""):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["audio", "text", "language", "speaker"])
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    "audio": prefix + r["file_name"],
                    "text": r["text"],
                    "language": r["language"],
                    "speaker": r["speaker"],
                }
            )


def _folder_copy(tmp_path, root):
    import shutil

    dst = tmp_path / "folder"
    shutil.copytree(root, dst)
    return dst


def test_all_source_types_yield_the_same_items(tmp_path, clips):
    root, rows = clips
    expected = sorted((r["text"], "es", r["speaker"]) for r in rows)
    seen = {}

    # folder + metadata.csv / .json / .jsonl
    for meta in ("metadata.csv", "metadata.json", "metadata.jsonl"):
        folder = _folder_copy(tmp_path / meta, root)
        if meta.endswith(".csv"):
            with open(folder / meta, "w", newline="") as f:
                w = csv.DictWriter(f, list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        elif meta.endswith(".jsonl"):
            (folder / meta).write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            (folder / meta).write_text(json.dumps(rows))
        seen[meta] = list_items(DataConfig(source=str(folder)))
    # folder with a .txt beside each file (no language/speaker there: the config's language applies)
    folder = _folder_copy(tmp_path / "txt", root)
    for r in rows:
        (folder / r["file_name"]).with_suffix(".txt").write_text(r["text"] + "\n")
    items, rejects = list_items(DataConfig(source=str(folder), language="es"))
    assert not rejects and sorted(i.text for i in items) == sorted(r["text"] for r in rows)
    # CSV elsewhere, relative paths against the CSV's folder
    csv_dir = root.parent
    _write_csv(csv_dir / "list.csv", rows, prefix="audio/")
    seen["csv"] = list_items(DataConfig(source=str(csv_dir / "list.csv")))
    manifest = [
        {"audio": str(root / r["file_name"]), "text": r["text"], "language": "es", "speaker": r["speaker"]}
        for r in rows
    ]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    seen["json"] = list_items(DataConfig(source=str(tmp_path / "m.json")))
    seen["jsonl"] = list_items(DataConfig(source=str(tmp_path / "m.jsonl")))

    for name, (items, rejects) in seen.items():
        assert not rejects, (name, rejects)
        assert _signature(items) == expected, name
    # keys are the audio path relative to the source's folder, so they agree across metadata formats
    assert (
        [i.key for i in seen["metadata.csv"][0]]
        == [i.key for i in seen["metadata.json"][0]]
        == [
            "clip_00_wav",
            "clip_01_mp3",
            "clip_02_flac",
            "clip_03_ogg",
            "clip_04_opus",
            "clip_05_m4a",
            "clip_06_aac",
            "clip_07_wma",
        ]
    )
    assert [i.key for i in seen["csv"][0]][0] == "audio_clip_00_wav"
    assert [i.key for i in seen["json"][0]] == [i.key for i in seen["jsonl"][0]]


def test_huggingface_sources(tmp_path, clips):
    import datasets

    from mwc_dist.data.shard import process_item

    root, rows = clips
    # built as plain bytes and cast to Audio: encoding through Audio() would need torchcodec
    audio_struct = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = datasets.Features(
        {
            "audio": audio_struct,
            "text": datasets.Value("string"),
            "language": datasets.Value("string"),
            "speaker": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": (root / r["file_name"]).read_bytes(), "path": r["file_name"]} for r in rows],
            "text": [r["text"] for r in rows],
            "language": ["es"] * len(rows),
            "speaker": [r["speaker"] for r in rows],
        },
        features=features,
    ).cast_column("audio", datasets.Audio(decode=False))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    items, rejects = list_items(DataConfig(source=str(tmp_path / "saved")))
    assert not rejects
    assert _signature(items) == sorted((r["text"], "es", r["speaker"]) for r in rows)
    # the audio decoded through the HF row equals the audio decoded from the file
    settings = {
        "sample_rate": 16000,
        "normalize": True,
        "min_duration_seconds": 0.0,
        "max_duration_seconds": 30.0,
        "shard_audio_format": "flac",
    }
    hf_meta, hf_payload = process_item(items[0], settings)
    index = items[0].audio.index
    file_item = list_items(DataConfig(source=str(tmp_path / "saved")))[0][0]
    assert file_item.audio.index == index
    from mwc_dist.data.sources import Item

    direct = process_item(Item("k", str(root / rows[index]["file_name"]), "t", "s"), settings)
    assert hf_payload == direct[1] and hf_meta["duration"] == direct[0]["duration"]

    # an audiofolder (HF's folder convention: metadata.csv with file_name)
    folder = _folder_copy(tmp_path / "af", root)
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    items, rejects = list_items(DataConfig(source=str(folder), source_type="huggingface"))
    assert not rejects and _signature(items) == sorted((r["text"], "es", r["speaker"]) for r in rows)


def test_bad_rows_are_rejected_one_by_one_with_reasons(tmp_path, clips):
    root, rows = clips
    csv_path = root.parent / "bad.csv"
    lines = [
        b"audio,text,language",
        b"audio/clip_00.wav,hola mundo,es",
        b"audio/clip_01.mp3,,es",
        b"audio/clip_02.flac,caf\xe9 con leche,es",
        b"audio/nope.wav,no existe,es",
        b"audio/clip_00.wav,otra vez,es",
        b",sin audio,es",
        b"audio/clip_03.ogg,bien,es",
    ]
    csv_path.write_bytes(b"\n".join(lines) + b"\n")
    items, rejects = list_items(DataConfig(source=str(csv_path)))
    assert sorted(i.text for i in items) == ["bien", "hola mundo"]
    reasons = sorted(r.reason for r in rejects)
    assert reasons == ["duplicate_key", "empty_transcript", "missing_audio_path", "missing_file", "undecodable_text"]
    assert all(str(csv_path) in r.source or "audio" in r.source for r in rejects)


def test_folder_audio_without_transcript_is_reported_not_dropped(tmp_path, clips):
    root, rows = clips
    folder = _folder_copy(tmp_path, root)
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows[:5])  # three files not listed
    items, rejects = list_items(DataConfig(source=str(folder)))
    assert len(items) == 5
    assert sorted(Path(r.source).name for r in rejects) == sorted(r["file_name"] for r in rows[5:])
    assert {r.reason for r in rejects} == {"missing_transcript"}


def test_missing_column_is_a_clear_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("path_to_wav,words\na.wav,hola\n")
    with pytest.raises(SourceError) as err:
        list_items(DataConfig(source=str(path)))
    assert "x.csv" in str(err.value) and "data.audio_column" in str(err.value)
    assert "path_to_wav" in str(err.value)


def test_source_errors_say_what_to_do(tmp_path):
    with pytest.raises(SourceError, match="data.source"):
        list_items(DataConfig(source=""))
    with pytest.raises(SourceError, match="no such file"):
        list_items(DataConfig(source=str(tmp_path / "nothing" / "here")))
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(SourceError, match=r"\.csv, \.json, \.jsonl or \.tsv"):
        list_items(DataConfig(source=str(tmp_path / "x.txt")))
