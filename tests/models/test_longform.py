"""Long recordings with the real whisper-base: `mwc transcribe` SRT/WebVTT with the model's own times, and
`mwc eval --long-form` scored from its predictions (speech with known segment boundaries)."""

import json
import statistics

import pytest
from long_audio import long_recording

from mwc_dist.audio.encode import write_audio
from mwc_dist.cli import main
from mwc_dist.data.recordings import parse_subtitles
from mwc_dist.metrics import compute_metrics
from mwc_dist.models.ct2_import import import_ct2, package_sources

RATE = 16000


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return import_ct2(package_sources("whisper-base"), tmp_path_factory.mktemp("base") / "whisper-base")


@pytest.fixture(scope="module")
def talks(tmp_path_factory, sentences):
    """Two recordings of ~40 s (longer than one 30-s window) with their true segments in an SRT beside each; pauses
    of 1-1.6 s (whisper-base, never fine-tuned, joins sentences 0.6 s apart into one segment more often: its median
    start error there is ~0.6 s)."""
    root = tmp_path_factory.mktemp("talks")
    truth = {}
    for r in range(2):
        wave, segments = long_recording(sentences, [(r + k) % 4 for k in range(10)], pauses=(1.0, 1.6))
        write_audio(root / f"talk{r}.flac", wave, RATE)
        srt = "".join(f"{n}\n{_t(s)} --> {_t(e)}\n{text}\n\n" for n, (s, e, text) in enumerate(segments, 1))
        (root / f"talk{r}.srt").write_text(srt)
        truth[f"talk{r}"] = segments
    return root, truth


def _t(seconds):
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _median_start_error(predicted, truth):
    starts = [s for s, _, _ in truth]
    return statistics.median(min(abs(p.start - s) for s in starts) for p in predicted)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_transcribe_long_audio_gives_the_models_own_times(base, talks, fmt, capsys):
    root, truth = talks
    assert main(["transcribe", str(base), str(root / "talk0.flac"), "--language", "es", "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert "cut in pauses" not in err  # decoded sequentially, not by the fallback
    assert out.startswith("WEBVTT") == (fmt == "vtt")
    predicted = parse_subtitles(out, f"out.{fmt}")
    assert len(predicted) >= 4 and all(p.problem is None for p in predicted)
    assert predicted[-1].end > 30  # past the first window: the second was decoded too
    assert _median_start_error(predicted, truth["talk0"]) <= 0.5


def test_long_form_eval_scores_whole_recordings(base, talks, tmp_path):
    root, truth = talks
    out = tmp_path / "eval"
    assert (
        main(["eval", "--long-form", "--model", str(base), "--data", str(root), "--out", str(out), "--language", "es"])
        == 0
    )
    metrics = json.loads((out / "metrics_long.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions_long.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["talk0_flac", "talk1_flac"] and metrics["num_recordings"] == 2
    assert all(r["mode"] == "sequential" for r in rows)
    assert [r["reference"] for r in rows] == [" ".join(t for _, _, t in truth[k]) for k in ("talk0", "talk1")]
    for name, field in (("sequential", "prediction"), ("chunked", "chunked_prediction")):
        again = compute_metrics([r["reference"] for r in rows], [r[field] for r in rows], "es")
        assert metrics[name]["wer"] == pytest.approx(again["wer"], abs=1e-12)
        assert 0 < metrics[name]["wer"] < 0.9  # real Spanish out of a real model, not garbage
    errors = [e for r in rows for e in r["start_errors"]]
    assert metrics["sequential"]["median_start_error"] == pytest.approx(statistics.median(errors))
    assert metrics["sequential"]["median_start_error"] < 1.0  # the model's times, near the true ones (0.53 s seen)
    assert metrics["sequential"]["truncated"] == 0 and metrics["sequential"]["loops"] == 0


def test_pseudo_labels_for_long_audio_are_windows_of_the_teachers_segments(base, talks, tmp_path):
    """Audio without transcripts: the teacher's sequential segments, windowed, trainable with the filter per
    window; a killed run started again gives the same bytes."""
    import shutil

    from mwc_dist.config import TrainConfig
    from mwc_dist.data.labels import IGNORE
    from mwc_dist.data.plan import TrainData
    from mwc_dist.data.stream import Tokenize, build_train_loader, tar_samples
    from mwc_dist.models.tokenizer import load_tokenizer

    root, truth = talks
    audio = tmp_path / "audio"
    audio.mkdir()
    for r in range(2):
        shutil.copy(root / f"talk{r}.flac", audio / f"talk{r}.flac")  # no transcript at all
    out = tmp_path / "pseudo"
    args = ["pseudo-label", "--long-form", "--model", str(base), "--data", str(audio), "--out", str(out)]
    assert main([*args, "--language", "es"]) == 0
    manifest = json.loads((out / "train.manifest.json").read_text())
    assert manifest["num_recordings"] == 2 and manifest["num_samples"] >= 4
    for r in range(2):
        metas = [json.loads(s["json"]) for s in tar_samples([str(out / f"talk{r}_flac.tar")])]
        assert all(m["duration"] <= 30 and m["quality"]["avg_logprob"] < 0 for m in metas)
        assert all(0 <= s["start"] < s["end"] <= m["duration"] + 0.02 for m in metas for s in m["teacher_segments"])
        assert [m["prev_text"] for m in metas[1:]] == [m["teacher_text"] for m in metas[:-1]]
        starts = [m["offset"] + s["start"] for m in metas for s in m["teacher_segments"]]
        assert _median_start_error([type("S", (), {"start": s}) for s in starts], truth[f"talk{r}"]) < 1.0
    first = (out / "talk0_flac.tar").read_bytes()
    (out / "talk0_flac.tar").unlink()  # as if killed while labelling it
    assert main([*args, "--language", "es"]) == 0
    assert (out / "talk0_flac.tar").read_bytes() == first
    # trained on with the quality filter: the teacher's text and times are the labels
    from mwc_dist.config import DataConfig

    d = DataConfig(shard_dir=str(out), text_field="teacher_text", pseudo_min_avg_logprob=-5, timestamp_probability=1)
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe", 448)
    data = TrainData(d, TrainConfig(per_device_train_batch_size=1), tokenize, rank=0, world_size=1, max_samples=480000)
    batches = [b for b in build_train_loader(data.stream(0)) if b]
    assert batches and all(sum(t >= 50364 for t in b["labels"][0].tolist() if t != IGNORE) >= 2 for b in batches)
