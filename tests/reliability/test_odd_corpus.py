"""Bad input at scale: 20+ kinds of odd items mixed with good ones, from a folder + metadata.csv and a JSONL manifest.

Every good item (awkward ones included) is sharded, every bad one quarantined with its specific reason,
nothing crashes, and the counts add up.
"""

import json
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mwc_dist.audio.encode import encode_bytes, resample
from mwc_dist.config import DataConfig
from mwc_dist.data.shard import shard_source
from mwc_dist.data.sources import make_key


def _id3_tagged(mp3: bytes) -> bytes:
    """An ID3v2.3 tag (title frame + 2 KiB padding) in front and an ID3v1 tag behind, as taggers write them."""
    title = b"\x00" + "Canción de prueba".encode("latin-1")
    frame = b"TIT2" + struct.pack(">I", len(title)) + b"\x00\x00" + title
    body = frame + b"\x00" * 2048
    size = len(body)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    v1 = b"TAG" + b"Cancion".ljust(30, b"\x00") + b"\x00" * 94 + b"\xff"
    return b"ID3\x03\x00\x00" + syncsafe + body + mp3 + v1


@pytest.fixture(scope="module")
def odd(tmp_path_factory, sentences):
    root = tmp_path_factory.mktemp("odd")
    speech = [(text, resample(samples[:, None], rate, 16000)[:, 0]) for text, samples, rate in sentences]
    good, bad, rows = {}, {}, []  # good: key -> transcript; bad: source name -> reason

    def add(name, data: bytes, text, reason=None, listed=True):
        (root / name).write_bytes(data)
        if listed:
            rows.append((name, text))
        if reason:
            bad[name] = reason
        else:
            good[name] = text

    t0, w0 = speech[0]
    t1, w1 = speech[1]
    # --- awkward but valid: decoded and sharded
    add("six_channels.wav", encode_bytes(np.repeat(w0[:, None], 6, 1) * 0.5, 16000, "wav", channels=6), t0)
    add("eight_bit.wav", encode_bytes(w1, 16000, "wav", subtype="PCM_U8"), t1)
    add("rate_192k.wav", encode_bytes(resample(w0[:, None], 16000, 192000)[:, 0], 192000, "wav"), t0)
    add("deep_24bit.flac", encode_bytes(w1, 16000, "flac", subtype="PCM_24"), t1)
    add("id3_tagged.mp3", _id3_tagged(encode_bytes(w0, 16000, "mp3")), t0)
    add("flac_named.mp3", encode_bytes(w1, 16000, "flac"), t1)  # content sniffed, not the extension
    add("float64.wav", encode_bytes(w0, 16000, "wav", subtype="DOUBLE"), t0)
    add("very_quiet.ogg", encode_bytes(w1 * 0.003, 16000, "ogg"), t1)
    add("UPPER CASE ñ.WAV", encode_bytes(w0, 16000, "wav"), t0)
    add("tiny_rate_8k.m4a", encode_bytes(resample(w1[:, None], 16000, 8000)[:, 0], 8000, "m4a"), t1)
    add("wma_stereo.wma", encode_bytes(w0, 16000, "wma", channels=2), t0)
    add("plain.aac", encode_bytes(w1, 16000, "aac"), t1)
    # --- bad: quarantined with a specific reason
    wav = encode_bytes(w0, 16000, "wav")
    add("corrupt_header.wav", b"RIFX" + os.urandom(40) + wav[44:], t0, "unreadable")
    flac = encode_bytes(w1, 16000, "flac")
    add("truncated.flac", flac[: len(flac) // 2], t1, "truncated")
    mp3 = encode_bytes(w0, 16000, "mp3")
    add("truncated.mp3", mp3[: len(mp3) // 3], t0, "truncated")
    add("zero_bytes.mp3", b"", t0, "empty_file")
    add("text_renamed.wav", b"1,2,3\nnot audio at all\n" * 50, t0, "not_audio")
    with sf.SoundFile(root / "three_hours.flac", "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(8000 * 600, dtype=np.int16)
        block[::4000] = 300  # a little signal, so the reason is the length and not silence
        for _ in range(18):  # 18 x 10 min
            f.write(block)
    rows.append(("three_hours.flac", t0))
    bad["three_hours.flac"] = "too_long"
    nan = w1.astype(np.float32).copy()
    nan[1000:1010] = np.nan
    add("nan_samples.wav", encode_bytes(nan, 16000, "wav", subtype="FLOAT"), t1, "non_finite")
    inf = bytearray(encode_bytes(w0, 16000, "wav", subtype="FLOAT"))  # libsndfile clips inf when writing: patch it in
    at = inf.index(b"data") + 8 + 4 * 100
    inf[at : at + 4] = struct.pack("<f", float("inf"))
    add("inf_samples.wav", bytes(inf), t0, "non_finite")
    add("silence.flac", encode_bytes(np.zeros(16000, np.float32), 16000, "flac"), "nothing said", "silent")
    add("too_short.wav", encode_bytes(w0[:400], 16000, "wav"), t0, "too_short")
    add("no_transcript.ogg", encode_bytes(w1, 16000, "ogg"), None, "missing_transcript", listed=False)
    add("blank_transcript.wav", wav, "   ", "empty_transcript")
    os.symlink("loop_b.wav", root / "loop_a.wav")
    os.symlink("loop_a.wav", root / "loop_b.wav")
    rows.append(("loop_a.wav", t0))
    bad["loop_a.wav"] = "symlink_loop"
    bad["loop_b.wav"] = "missing_transcript"  # in the folder, not in metadata.csv
    os.symlink("nowhere.wav", root / "dangling.wav")
    rows.append(("dangling.wav", t0))
    bad["dangling.wav"] = "broken_symlink"
    rows.append(("listed_but_absent.flac", t1))
    bad["listed_but_absent.flac"] = "missing_file"
    (root / "non_utf8.wav").write_bytes(wav)
    bad["non_utf8.wav"] = "undecodable_text"
    add("duplicate.wav", wav, t0)
    # metadata.csv: the rows above, plus a non-UTF-8 transcript, a short row, a duplicate and a bad split
    lines = ["file_name,transcription,split"] + [f'"{n}","{t}",' for n, t in rows if t is not None]
    lines.append('"short_row.wav"')
    lines.append('"duplicate.wav","otra vez",')
    lines.append(f'"split_typo.wav","{t0}",trian')
    (root / "short_row.wav").write_bytes(wav)
    (root / "split_typo.wav").write_bytes(wav)
    bad["short_row.wav"] = "missing_transcript"  # its row is rejected, so the file is also unlisted
    bad["metadata.csv:short_row"] = "invalid_row"
    bad["duplicate.wav#2"] = "duplicate_key"
    bad["split_typo.wav"] = "invalid_split"
    blob = ("\n".join(lines) + "\n").encode("utf-8")
    blob += b'"non_utf8.wav","ni\xf1o sin utf-8",\n'  # latin-1 bytes in a UTF-8 file
    (root / "metadata.csv").write_bytes(blob)
    return root, good, bad


def _shard(source: Path, out: Path) -> dict:
    cfg = DataConfig(
        source=str(source),
        max_duration_seconds=30,
        min_duration_seconds=0.1,
        shard_samples=5,
        train_split_ratio=1.0,
        validation_split_ratio=0.0,
        test_split_ratio=0.0,
    )
    return shard_source(cfg, out, workers=2, progress=False)


def _sharded(out: Path) -> dict[str, str]:
    found = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    found[Path(meta["source"]).name] = meta["text"]
    return found


def test_folder_of_odd_files(odd, tmp_path):
    root, good, bad = odd
    assert len(good) >= 12 and len(bad) >= 20 and len(set(bad.values())) >= 14  # 20+ kinds of bad, 17 reasons
    summary = _shard(root, tmp_path / "out")
    sharded = _sharded(tmp_path / "out")
    assert set(sharded) == set(good), set(sharded) ^ set(good)
    assert sharded["UPPER CASE ñ.WAV"] == " ".join(good["UPPER CASE ñ.WAV"].split())
    quarantine = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    key_to_name = {make_key(n): n for n in [*good, *bad]}
    by_name = {}
    for q in quarantine:
        name = "metadata.csv:short_row" if q["reason"] == "invalid_row" else key_to_name[q["key"]]
        name += "#2" if q["reason"] == "duplicate_key" else ""
        assert name not in by_name, f"{name} quarantined twice"
        by_name[name] = q["reason"]
        assert q["detail"], q  # every rejection says why
    assert by_name == {k: v for k, v in bad.items()}
    total = sum(s["num_samples"] for s in summary["splits"].values())
    assert total == len(sharded) and summary["quarantined"] == len(quarantine)
    assert summary["num_items"] == total + summary["quarantined"]  # every item is counted exactly once
    assert sum(summary["reasons"].values()) == summary["quarantined"]


def test_jsonl_manifest_with_wrong_types(odd, tmp_path):
    root, good, _ = odd
    records = [{"audio": name, "text": text} for name, text in list(good.items())[:4]]
    records += [
        {"audio": "six_channels.wav", "text": 5},  # a number for the transcript
        {"audio": 7, "text": "siete"},  # a number for the path
        {"audio": {"path": "eight_bit.wav"}, "text": ["a", "list"]},
        {"audio": "deep_24bit.flac"},  # no transcript
        ["not", "an", "object"],
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ["{broken json", ""]
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines), encoding="utf-8")
    summary = _shard(manifest, tmp_path / "out")
    assert set(_sharded(tmp_path / "out")) == {r["audio"] for r in records[:4]}
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(reasons) == sorted(
        ["invalid_text", "missing_audio_path", "invalid_text", "missing_transcript", "invalid_row", "invalid_row"]
    )
    assert summary["num_items"] == 4 + len(reasons)
