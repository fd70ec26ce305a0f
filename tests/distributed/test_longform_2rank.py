"""`mwc eval --long-form` under `accelerate launch` with 2 CPU processes: recordings split across ranks, gathered
once each on rank 0, the same rows as one process."""

import json
import subprocess
import sys
from pathlib import Path

from long_audio import long_recording
from tiny_run import CPU_2PROC, run_env

ACCELERATE = Path(sys.executable).parent / "accelerate"


def _srt(segments):
    def t(x):
        ms = round(x * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{n}\n{t(s)} --> {t(e)}\n{text}\n\n" for n, (s, e, text) in enumerate(segments, 1))


def test_long_form_eval_on_two_ranks_equals_one(tmp_path, sentences):
    from mwc_dist.audio.encode import write_audio
    from mwc_dist.config import ModelConfig
    from mwc_dist.models.build import build_model

    model, processor = build_model(ModelConfig(base_model="tiny-random"))
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    data = tmp_path / "talks"
    data.mkdir()
    for r in range(3):
        wave, segments = long_recording(sentences, [(r + k) % 4 for k in range(5)])
        write_audio(data / f"talk{r}.flac", wave, 16000)
        (data / f"talk{r}.srt").write_text(_srt(segments))
    args = ["eval", "--long-form", "--model", str(tmp_path / "model"), "--data", str(data), "--language", "es"]
    args += ["--no-guard", "--no-chunked", "--max-length", "8"]
    env = run_env(ACCELERATE_USE_CPU="true")
    two = subprocess.run(
        [str(ACCELERATE), "launch", *CPU_2PROC, "-m", "mwc_dist.cli", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "mwc_dist.cli", *args, "--out", str(tmp_path / "one")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.stdout.count("3 recordings") == 1  # rank 0 alone reports, over every rank's recordings

    def rows(name):
        lines = (tmp_path / name / "predictions_long.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in lines]  # not the timings

    assert [r["key"] for r in rows("two")] == ["talk0_flac", "talk1_flac", "talk2_flac"]
    assert rows("two") == rows("one")
    assert json.loads((tmp_path / "two" / "metrics_long.json").read_text())["num_recordings"] == 3
