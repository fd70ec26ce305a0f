"""Exports of a tiny trained model: four formats, the ecosystem's loaders, parity on real audio, transcribe."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_run import trainer

from mwc_dist.export import ExportError, check_parity, clips_from_shards, export_model

FORMATS7 = ["wav", "mp3", "flac", "ogg", "m4a", "aac", "wma"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_shards):
    out = tmp_path_factory.mktemp("trained") / "run"
    overrides = ("train.max_steps=6", "train.learning_rate=2e-3", "train.eval_steps=-1", "checkpoint.save_strategy=no")
    trainer(demo_shards, out, "train.log_every_steps=10", *overrides).train()
    return out / "final"


@pytest.fixture(scope="module")
def exported(trained, demo_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    clips, refs, language = clips_from_shards(demo_shards, "test", 4)
    # tiny-random's window is 10 s: its ct2 export is for our own backend (faster-whisper: tests/models/test_deploy.py)
    report = export_model(
        trained,
        out,
        ["safetensors", "pytorch", "onnx", "ct2"],
        clips=clips,
        references=refs,
        language=language,
        allow_nonstandard_window=True,
    )
    return out, report, clips, language


def test_four_formats_load_in_the_ecosystem_with_parity(exported):
    import ctranslate2
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

    out, report, clips, _ = exported
    parity = json.loads((out / "parity.json").read_text())["parity"]
    assert parity["ok"] and parity["clips"] == 4
    for name in ("onnx", "ct2"):
        assert parity[name]["identical_clips"] == 4 and parity[name]["encoder_max_abs_diff"] < 1e-3
    assert (out / "pytorch" / "pytorch_model.bin").is_file() and (out / "safetensors" / "model.safetensors").is_file()
    a = WhisperForConditionalGeneration.from_pretrained(out / "safetensors").state_dict()
    b = WhisperForConditionalGeneration.from_pretrained(out / "pytorch").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = (out / "safetensors" / "MODEL_CARD.md").read_text()
    assert "hours of audio" in card and "## Training configuration" in card
    processor = WhisperProcessor.from_pretrained(out / "safetensors")
    asr = pipeline("automatic-speech-recognition", model=str(out / "safetensors"), device="cpu")
    assert isinstance(asr({"raw": clips[0], "sampling_rate": 16000}, generate_kwargs={"language": "es"})["text"], str)
    ORTModelForSpeechSeq2Seq.from_pretrained(out / "onnx")
    ctranslate2.models.Whisper(str(out / "ct2"))
    assert len(processor.tokenizer) == 51865


def test_a_damaged_onnx_file_fails_the_check(exported, trained, tmp_path):
    import shutil

    import onnx
    from onnx import numpy_helper

    out, _, clips, language = exported
    broken = tmp_path / "onnx"
    shutil.copytree(out / "onnx", broken)
    model = onnx.load(broken / "encoder_model.onnx")
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # the largest weight
    damaged = numpy_helper.to_array(init) * 0.5
    init.CopyFrom(numpy_helper.from_array(damaged.astype(np.float32), init.name))
    onnx.save(model, broken / "encoder_model.onnx")
    report = check_parity(trained, {"onnx": (broken, "float32")}, clips, None, language, "transcribe")
    assert not report["ok"] and report["onnx"]["encoder_max_abs_diff"] > 1e-2
    assert "onnx (float32)" in report["failures"][0]


def test_transcribe_same_text_through_all_backends_in_seven_formats(exported, tmp_path, sentences):
    from mwc_dist.audio.encode import write_audio

    out, _, _, _ = exported
    files = []
    for n, fmt in enumerate(FORMATS7):
        text, samples, rate = sentences[n % len(sentences)]
        files.append(str(write_audio(tmp_path / f"clip.{fmt}", samples, rate)))
    # one long file: two 10-s windows for this 10-s-window model
    long = np.concatenate([sentences[0][1]] * 5)
    files.append(str(write_audio(tmp_path / "long.flac", long, sentences[0][2])))
    outputs = {}
    for backend, model in (("pytorch", out / "safetensors"), ("onnx", out / "onnx"), ("ct2", out / "ct2")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mwc_dist.cli",
                "transcribe",
                str(model),
                *files,
                "--backend",
                backend,
                "--language",
                "es",
                "--format",
                "json",
                "--max-new-tokens",
                "12",
                "--no-guard",  # greedy: the same tokens through every backend (the guard samples)
                "--chunked",  # long audio cut in pauses through every backend (sequential is PyTorch's alone)
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs[backend] = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert outputs["pytorch"] == outputs["onnx"] == outputs["ct2"]
    assert len(outputs["pytorch"]) == 8
    assert len(outputs["pytorch"][files[-1]]["segments"]) == 2  # long audio in windows
    srt = subprocess.run(
        [
            sys.executable,
            "-m",
            "mwc_dist.cli",
            "transcribe",
            str(out / "ct2"),
            files[-1],
            "--backend",
            "ct2",
            "--language",
            "es",
            "--format",
            "srt",
            "--max-new-tokens",
            "12",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cues = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    times = [
        (
            3600 * int(c[0]) + 60 * int(c[1]) + int(c[2]) + int(c[3]) / 1000,
            3600 * int(c[4]) + 60 * int(c[5]) + int(c[6]) + int(c[7]) / 1000,
        )
        for c in cues
    ]
    assert len(times) == 2 and times[0][0] == 0.0 and 8.0 <= times[0][1] <= 10.0  # cut in a pause before 10 s
    assert times[1][0] == times[0][1] and times[1][1] == pytest.approx(len(long) / sentences[0][2], abs=0.01)


def test_backends_agree_on_log_probabilities_and_each_runs_the_fallback(exported):
    from mwc_dist.inference.backends import load_backend
    from mwc_dist.inference.decoding import Guard, decode_with_fallback

    out, _, clips, language = exported
    greedy = {}
    for kind, model in (("pytorch", out / "safetensors"), ("onnx", out / "onnx"), ("ct2", out / "ct2")):
        backend = load_backend(kind, model)
        features = backend.features(clips)
        ids, logprobs = backend.decode(features, language, "transcribe", 12)
        assert ids == backend.generate(features, language, "transcribe", 12)
        greedy[kind] = (ids, logprobs)
        hot = backend.decode(features, language, "transcribe", 12, temperature=1.0, seed=3)
        if kind != "ct2":  # CTranslate2 samples in threads its seed does not reach
            assert hot == backend.decode(features, language, "transcribe", 12, temperature=1.0, seed=3)
        assert hot[0] != ids  # sampling at temperature 1 from a 6-step model: some token differs
        # a log-probability threshold nobody meets: every row tries every temperature, keeps its best candidate
        calls = []

        def decode(f, t, backend=backend, calls=calls):
            calls.append(len(f))
            return backend.decode(f, language, "transcribe", 12, t, 0)

        first, kept = decode_with_fallback(decode, features, Guard(logprob_threshold=1.0), backend.to_text)
        assert calls == [len(clips)] * 6
        assert all(k.avg_logprob >= g.avg_logprob for k, g in zip(kept, first))
        assert [g.ids for g in first] == ids
    assert greedy["pytorch"][0] == greedy["onnx"][0] == greedy["ct2"][0]
    np.testing.assert_allclose(greedy["onnx"][1], greedy["pytorch"][1], atol=1e-3)
    np.testing.assert_allclose(greedy["ct2"][1], greedy["pytorch"][1], atol=1e-2)
    assert all(lp < 0 for lp in greedy["pytorch"][1])


def test_int8_ct2_is_checked_by_wer(trained, demo_shards, tmp_path):
    clips, refs, language = clips_from_shards(demo_shards, "test", 4)
    report = export_model(
        trained,
        tmp_path,
        ["ct2"],
        ct2_quantization="int8",
        clips=clips,
        references=refs,
        language=language,
        allow_nonstandard_window=True,
    )
    entry = report["parity"]["ct2"]
    assert entry["precision"] == "int8" and abs(entry["wer_diff_points"]) <= 1.0


def test_unknown_format_is_refused(trained, tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(trained, tmp_path, ["tflite"])


def test_onnx_optimize_key_exports_optimised_files_that_agree_with_pytorch(trained, demo_shards, tmp_path):
    """export.onnx_optimize (a seed key) through the end-of-run export: fewer nodes, the same names, parity holds,
    and optimum's loader and `mwc transcribe --backend onnx` both open the optimised folder."""
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq

    from mwc_dist.config import ExportConfig
    from mwc_dist.final import export_final
    from mwc_dist.inference.backends import load_backend

    export = ExportConfig(export_onnx=True, onnx_optimize=True, output_dir=str(tmp_path / "exports"))
    export_final(trained, export, str(demo_shards), "test", language="es", task="transcribe")
    onnx_dir = tmp_path / "exports" / "onnx"
    parity = json.loads((tmp_path / "exports" / "parity.json").read_text())["parity"]
    assert parity["ok"] and parity["onnx"]["identical_clips"] == 4
    counts = json.loads((onnx_dir / "optimization.json").read_text())["nodes_before_after"]
    for name in ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"):
        before, after = counts[name]
        assert after < before, (name, before, after)
    ORTModelForSpeechSeq2Seq.from_pretrained(onnx_dir)
    clips, _, _ = clips_from_shards(demo_shards, "test", 2)
    ids = [
        load_backend(kind, path).generate(load_backend("pytorch", trained).features(clips), "es", "transcribe", 20)
        for kind, path in (("onnx", onnx_dir), ("pytorch", trained))
    ]
    assert ids[0] == ids[1]


def test_export_ct2_key_on_a_10_s_model_is_refused_at_start_up(demo_shards, tmp_path):
    """export.export_ct2 on tiny-random (a 10-s window): refused before training (the end-of-run export would refuse
    it after all the work); export.allow_nonstandard_window=true lets the run export it for mwc's own backend."""
    from tiny_run import trainer

    with pytest.raises(ValueError, match="export.allow_nonstandard_window=true"):
        trainer(demo_shards, tmp_path / "refused", "export.export_ct2=true", "train.max_steps=1")
    run = trainer(
        demo_shards,
        tmp_path / "run",
        "export.export_ct2=true",
        "export.allow_nonstandard_window=true",
        "train.max_steps=1",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=no",
    )
    run.train()
    report = json.loads((tmp_path / "run" / "exports" / "parity.json").read_text())
    assert "ct2" in report["formats"] and "10 s" in report["warning"]
