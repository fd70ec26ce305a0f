"""Long recordings with subtitles, sharded into windows: times kept, speech in one window each, bad cues by reason."""

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from long_audio import long_recording

from mwc_dist.audio.encode import write_audio
from mwc_dist.config import DataConfig
from mwc_dist.data.recordings import check_segments, parse_subtitles, parse_time, plan_windows
from mwc_dist.data.shard import shard_source

RATE = 16000
WINDOW = 10.0  # a short window keeps the recordings short; the rule is the same at 30 s


def _srt_time(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _srt(segments, *, crlf=False, bom=False, no_blank_after=()) -> str:
    blocks = []
    for n, (start, end, text) in enumerate(segments, 1):
        sep = "\n" if n in no_blank_after else "\n\n"
        blocks.append(f"{n}\n{_srt_time(start)} --> {_srt_time(end)}\n{text}{sep}")
    out = "".join(blocks)
    out = out.replace("\n", "\r\n") if crlf else out
    return ("\ufeff" if bom else "") + out


@pytest.fixture(scope="module")
def recording(sentences):
    """~30 s of real speech: the four sentences twice (espeak), 0.6-1.2 s pauses, true segment times."""
    return long_recording(sentences, list(range(8)))


def _windows(out_dir: Path) -> list[dict]:
    metas = []
    for tar_path in sorted(out_dir.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            metas += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return sorted(metas, key=lambda m: (m["recording"], m["offset"]))


def test_parse_time_and_cue_quirks():
    assert parse_time("01:02:03,450") == pytest.approx(3723.45) and parse_time("02:03.5") == pytest.approx(123.5)
    with pytest.raises(ValueError):
        parse_time("1:2:3")
    vtt = "WEBVTT - talk\n\nNOTE a note\nspanning lines\n\nintro\n00:01.000 --> 00:02.500 align:start\n"
    vtt += "<v Ana>Hola</v>\n\n"
    vtt += "00:03.000 --> 00:04.000\n<i>dos</i> líneas\nde texto\n"
    segs = parse_subtitles(vtt, "t.vtt")
    assert [(s.start, s.end, s.text) for s in segs] == [(1.0, 2.5, "Hola"), (3.0, 4.0, "dos líneas de texto")]


def test_windows_keep_times_and_hold_each_segment_once(tmp_path, recording):
    wave, segments = recording
    root = tmp_path / "src"
    root.mkdir()
    write_audio(root / "talk.flac", wave, RATE)
    (root / "talk.srt").write_text(_srt(segments, crlf=True, bom=True, no_blank_after=(3,)), encoding="utf-8")
    out = tmp_path / "out"
    cfg = DataConfig(source=str(root), max_duration_seconds=WINDOW, shard_samples=4, language="es", normalize=False)
    summary = shard_source(cfg, out, workers=1, progress=False)
    assert summary["quarantined"] == 0, (out / "quarantine.jsonl").read_text()
    windows = _windows(out)
    assert len(windows) >= 3 and all(w["duration"] <= WINDOW for w in windows)
    manifests = [json.loads(p.read_text()) for p in out.glob("*.manifest.json")]
    assert sum(m["num_windows"] for m in manifests) == len(windows) == sum(m["num_samples"] for m in manifests)
    assert sum(m["num_recordings"] for m in manifests) == 1
    # every segment, shifted back by its window's offset, is the SRT's within 0.02 s; each is in exactly one window
    found = [(w["offset"] + s["start"], w["offset"] + s["end"], s["text"]) for w in windows for s in w["segments"]]
    assert len(found) == len(segments)
    for (start, end, text), (ref_start, ref_end, ref_text) in zip(found, segments):
        assert abs(start - ref_start) <= 0.02 and abs(end - ref_end) <= 0.02 and text == ref_text
    # windows are disjoint, and every sample of speech lies inside exactly one of them
    spans = [(round(w["offset"] * RATE), round(w["offset"] * RATE) + w["num_samples"]) for w in windows]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    for ref_start, ref_end, _ in segments:
        inside = [s for s in spans if s[0] <= round(ref_start * RATE) and round(ref_end * RATE) <= s[1]]
        assert len(inside) == 1
    # prompts: each window carries the text of the one before it
    assert windows[0]["prev_text"] == "" and all(b["prev_text"] == a["text"] for a, b in zip(windows, windows[1:]))


def test_hostile_subtitles_quarantined_reason_by_reason(tmp_path, recording):
    wave, segments = recording
    root = tmp_path / "src"
    root.mkdir()
    good = segments[:4]
    cases = {  # stem -> (cues, the reasons expected, how many segments still train)
        "overlap": ([*good[:2], (good[1][0] + 0.3, good[2][1], "solapa"), *good[3:]], ["segment_overlap"], 3),
        "order": ([*good[:2], (good[0][0], good[0][1], "antes"), *good[2:]], ["segment_out_of_order"], 4),
        "past_end": ([*good, (len(wave) / RATE + 1, len(wave) / RATE + 2, "después")], ["segment_past_end"], 4),
        "empty": ([*good[:2], (good[2][0], good[2][1], "   "), *good[3:]], ["empty_segment"], 3),
        "too_long": ([good[0], (good[1][0], good[1][0] + WINDOW + 1, "larga"), *good[3:]], ["segment_too_long"], 2),
    }
    for stem, (cues, _, _) in cases.items():
        write_audio(root / f"{stem}.wav", wave, RATE)
        (root / f"{stem}.srt").write_text(_srt(cues))
    write_audio(root / "badtime.wav", wave, RATE)
    text = _srt(good).replace(_srt_time(good[1][0]) + " -->", "00:00:xx,000 -->")
    (root / "badtime.srt").write_text(text)
    cases["badtime"] = (None, ["bad_timestamp"], 3)
    (root / "orphan.srt").write_text(_srt(good))  # no audio
    out = tmp_path / "out"
    cfg = DataConfig(source=str(root), max_duration_seconds=WINDOW, language="es")
    shard_source(cfg, out, workers=1, progress=False)
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    by_stem: dict[str, list[str]] = {}
    for q in quarantine:
        by_stem.setdefault(Path(q["source"].split()[0]).stem, []).append(q["reason"])
    assert by_stem.pop("orphan") == ["missing_audio"]
    assert by_stem == {stem: reasons for stem, (_, reasons, _) in cases.items()}
    windows = _windows(out)
    for stem, (_, _, kept) in cases.items():
        assert sum(len(w["segments"]) for w in windows if Path(w["source"]).stem == stem) == kept, stem


def test_no_window_crosses_a_bad_segment():
    segs = parse_subtitles(_srt([(0.5, 2.0, "a"), (2.5, 4.0, ""), (4.5, 6.0, "c")]), "x.srt")
    windows = plan_windows(check_segments(segs, 30.0, 10.0), 30.0, 10.0)
    assert [w.text for w in windows] == ["a", "c"] and windows[0].end <= 2.5 and windows[1].start >= 4.0


def test_jsonl_rows_with_segments_are_recordings(tmp_path, recording):
    wave, segments = recording
    write_audio(tmp_path / "talk.wav", wave, RATE)
    rows = [{"audio": "talk.wav", "segments": [{"start": s, "end": e, "text": t} for s, e, t in segments[:5]]}]
    rows[0]["segments"][1]["start"] = _srt_time(segments[1][0])  # subtitle-style strings are read too
    rows[0]["segments"][2]["end"] = "soon"
    (tmp_path / "talks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = DataConfig(source=str(tmp_path / "talks.jsonl"), max_duration_seconds=WINDOW, language="es")
    shard_source(cfg, out, workers=1, progress=False)
    reasons = [json.loads(line)["reason"] for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert reasons == ["bad_timestamp"]
    texts = [s["text"] for w in _windows(out) for s in w["segments"]]
    assert texts == [t for n, (_, _, t) in enumerate(segments[:5]) if n != 2]


def test_demo_recordings_keep_each_clips_true_times(tmp_path, sentences):
    """The demo's long-form test audio: clips joined with pauses; each SRT cue is where its clip's voice is."""
    import csv

    import soundfile as sf

    from mwc_dist.demo.recordings import make_recordings

    corpus = tmp_path / "ood"
    (corpus / "test").mkdir(parents=True)
    with open(corpus / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "text", "split"])
        for n in range(8):
            text, samples, rate = sentences[n % 4]
            write_audio(corpus / "test" / f"c{n}.wav", samples, rate)
            w.writerow([f"test/c{n}.wav", text, "test"])
    written = make_recordings(corpus, tmp_path / "long", seconds=(8.0, 12.0))
    assert len(written) >= 2 and make_recordings(corpus, tmp_path / "long") == written  # reused when complete
    cues = [s for p in written for s in parse_subtitles(p.with_suffix(".srt").read_text(), p.name)]
    assert [c.text for c in cues] == [sentences[n % 4][0] for n in range(8)]
    for path in written:
        wave, rate = sf.read(path, dtype="float32")
        segments = parse_subtitles(path.with_suffix(".srt").read_text(), path.name)
        loud = np.abs(wave) > 0.005
        for seg, nxt in zip(segments, segments[1:] + [None]):
            start, end = round(seg.start * rate), round(seg.end * rate)
            assert loud[start : start + 400].any() and not loud[max(0, start - 3200) : start - 80].any()  # voice starts
            assert not loud[end + 80 : round(nxt.start * rate) - 80 if nxt else len(wave)].any()  # a pause after
