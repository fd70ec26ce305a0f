"""Our exports in the tools people deploy with, unchanged: faster-whisper on the CTranslate2 export, transformers'
ASR pipeline on the SafeTensors export (chunked and sequential with timestamps), optimum's ORTModelForSpeechSeq2Seq on
the ONNX export (plain and optimised) and WhisperForConditionalGeneration.generate on the PyTorch .bin export; each on
a short clip and a long recording (past one 30-s window), for a real model (OpenAI's whisper-base, from its PyPI
CTranslate2 package) and a standard-shaped student of it (the teacher's encoder and 30-s window, 4 of its 6 decoder
layers, untrained: these tests are about loading and running, the demo's report measures its quality).

Where a loader runs the algorithm our decoder runs (greedy, no timestamps), its text must equal ours; where it runs
its own (faster-whisper's beam 5 with previous text, the pipeline's chunk merging), it must agree with ours within a
stated WER. Timestamps must increase and lie inside the audio. And `mwc transcribe` detects both the export format
and the language on every backend, with the PyTorch backend's answer."""

from __future__ import annotations

import json

import pytest
from long_audio import espeak, long_recording

from mwc_dist.audio.decode import load_audio
from mwc_dist.audio.encode import write_audio
from mwc_dist.cli import main
from mwc_dist.export import export_model
from mwc_dist.inference.backends import load_backend
from mwc_dist.inference.windows import transcribe
from mwc_dist.metrics import compute_metrics
from mwc_dist.models.ct2_import import import_ct2, package_sources
from mwc_dist.models.student import make_student_folder

RATE = 16000
# a loader with its own decoding algorithm (beam search, chunk merging) may be this much worse than our decoder's WER
# on the long recording (whisper-base, never fine-tuned, has a WER of ~0.4 on espeak-ng Spanish)
WER_MARGIN = 0.15
ENGLISH = "The old man reads the newspaper every morning before he walks to the market."
SPANISH = "La abuela lee el periódico por la mañana y después camina hasta el mercado."


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"base": exports folder, "student": exports folder}: safetensors, pytorch, onnx (+ onnx-optimized), ct2."""
    root = tmp_path_factory.mktemp("deploy")
    base = import_ct2(package_sources("whisper-base"), root / "whisper-base")
    student, _ = make_student_folder(str(base), 4, str(root / "student"))
    out = {}
    for name, folder in (("base", base), ("student", student)):
        export_model(folder, root / f"{name}-exports", ["safetensors", "pytorch", "onnx", "ct2"])
        export_model(folder, root / f"{name}-optimized", ["onnx"], optimize=True)
        out[name] = root / f"{name}-exports"
        (out[name] / "onnx-optimized").symlink_to(root / f"{name}-optimized" / "onnx")
    return out


@pytest.fixture(scope="module")
def audio(tmp_path_factory, sentences):
    """A short Spanish clip, a short English clip (whisper-base transcribes it word for word: where decoders must
    agree on text), and a 35-s Spanish recording, with their texts."""
    root = tmp_path_factory.mktemp("deploy_audio")
    text = SPANISH
    write_audio(root / "short.wav", *espeak(SPANISH, "es"))
    write_audio(root / "english.wav", *espeak(ENGLISH, "en"))
    long_wave, segments = long_recording(sentences, [k % 4 for k in range(9)], pauses=(1.0, 1.6))
    write_audio(root / "long.flac", long_wave, RATE)
    assert len(long_wave) / RATE > 30
    return {
        "short": (root / "short.wav", text),
        "english": (root / "english.wav", ENGLISH),
        "long": (root / "long.flac", " ".join(t for _, _, t in segments)),
    }


def wer(reference: str, prediction: str, language: str = "es") -> float:
    return compute_metrics([reference], [prediction], language)["wer"]


def ours(folder, path, language="es", backend=None) -> str:
    """Our decoder's text (greedy, no guard) on the file, cut into windows in pauses; the folder's own backend."""
    backend = load_backend(backend, folder)
    wave = load_audio(str(path))
    return " ".join(s.text for s in transcribe(backend, wave, language, max_new_tokens=100)).strip()


_OURS_LONG: dict = {}


def ours_long_wer(models, audio, name: str) -> float:
    """Our decoder's WER on the long recording (computed once per model)."""
    if name not in _OURS_LONG:
        path, reference = audio["long"]
        _OURS_LONG[name] = wer(reference, ours(models[name] / "safetensors", path))
    return _OURS_LONG[name]


def check_times(spans, seconds: float, some: bool = True) -> None:
    """Segment times increase and lie inside the audio (a margin for the last window's padding); ``some``: at least
    one segment (an untrained student may say nothing)."""
    starts = [s for s, _ in spans]
    assert (spans or not some) and starts == sorted(starts), spans
    assert all(0 <= s <= e <= seconds + 0.5 for s, e in spans), (spans, seconds)


def same_words(a: str, b: str) -> bool:
    """Equal after Whisper's English normaliser (case, punctuation): where two decoders run one algorithm."""
    return wer(a, b, "en") == 0.0


LIMIT = {"max_new_tokens": 100}  # an untrained student may loop: every loader stops it at the same length


# ------------------------------------------------------------------------------------------ faster-whisper
@pytest.mark.parametrize("name", ["base", "student"])
def test_faster_whisper_runs_the_ct2_export_with_its_defaults(models, audio, name):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(models[name] / "ct2"), device="cpu", compute_type="float32", cpu_threads=2)
    for clip in ("short", "long"):
        path, reference = audio[clip]
        wave = load_audio(str(path))
        # its defaults: beam 5, timestamps, previous text as context, temperature fallback, language detection
        segments, info = model.transcribe(wave, **LIMIT)
        segments = list(segments)
        check_times([(s.start, s.end) for s in segments], len(wave) / RATE, some=name == "base")
        text = " ".join(s.text.strip() for s in segments)
        if name == "base":
            assert info.language == "es"
        if name == "base" and clip == "long":
            assert wer(reference, text) <= ours_long_wer(models, audio, name) + WER_MARGIN, text
    if name == "base":  # greedy without timestamps is our decoder's algorithm: the same words
        path, _ = audio["english"]
        greedy = dict(beam_size=1, temperature=0.0, without_timestamps=True, condition_on_previous_text=False)
        segments, _ = model.transcribe(load_audio(str(path)), language="en", **greedy, **LIMIT)
        assert same_words(" ".join(s.text.strip() for s in segments), ours(models[name] / "ct2", path, "en"))


# ------------------------------------------------------------------------------ transformers' ASR pipeline
@pytest.mark.parametrize("name", ["base", "student"])
def test_transformers_pipeline_runs_the_safetensors_export(models, audio, name):
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(models[name] / "safetensors"), device="cpu")
    english, _ = audio["english"]
    text = asr({"raw": load_audio(str(english)), "sampling_rate": RATE}, generate_kwargs=LIMIT)["text"]
    if name == "base":  # no language, no task given: detected, and greedy like ours
        assert same_words(text, ours(models[name] / "safetensors", english, "en")), text
    path, reference = audio["long"]
    wave = load_audio(str(path))
    chunked = asr(
        {"raw": wave, "sampling_rate": RATE},
        chunk_length_s=30,
        batch_size=4,
        generate_kwargs={"language": "es", **LIMIT},
    )
    sequential = asr(
        {"raw": wave, "sampling_rate": RATE}, return_timestamps=True, generate_kwargs={"language": "es", **LIMIT}
    )
    spans = [tuple(c["timestamp"]) for c in sequential["chunks"] if c["timestamp"][1] is not None]
    check_times(spans, len(wave) / RATE, some=name == "base")
    if name == "base":
        for out in (chunked, sequential):
            assert wer(reference, out["text"]) <= ours_long_wer(models, audio, name) + WER_MARGIN, out["text"]


# ------------------------------------------------------------------------------------------------- optimum
@pytest.mark.parametrize("name", ["base", "student"])
@pytest.mark.parametrize("onnx", ["onnx", "onnx-optimized"])
def test_optimum_runs_the_onnx_export(models, audio, name, onnx):
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
    from transformers import WhisperProcessor, pipeline

    folder = models[name] / onnx
    processor = WhisperProcessor.from_pretrained(folder)
    model = ORTModelForSpeechSeq2Seq.from_pretrained(folder)
    path, _ = audio["english"]
    features = processor(load_audio(str(path)), sampling_rate=RATE, return_tensors="pt").input_features
    ids = model.generate(features, language="en", task="transcribe", **LIMIT)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0]
    assert load_backend(None, folder).__class__.__name__ == "OnnxBackend"  # the folder is recognised as ONNX
    if name == "base":
        assert same_words(text, ours(folder, path, "en")), text
    if onnx == "onnx":  # long audio once per model: the pipeline over optimum's model, with timestamps
        asr = pipeline(
            "automatic-speech-recognition",
            model=model,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            device="cpu",
        )
        long_path, reference = audio["long"]
        wave = load_audio(str(long_path))
        out = asr(
            {"raw": wave, "sampling_rate": RATE},
            chunk_length_s=30,
            return_timestamps=True,
            generate_kwargs={"language": "es", **LIMIT},
        )
        spans = [tuple(c["timestamp"]) for c in out["chunks"] if c["timestamp"][1] is not None]
        check_times(spans, len(wave) / RATE, some=name == "base")
        if name == "base":
            assert wer(reference, out["text"]) <= ours_long_wer(models, audio, name) + WER_MARGIN, out["text"]


# ---------------------------------------------------------------------------- transformers, PyTorch .bin
@pytest.mark.parametrize("name", ["base", "student"])
def test_generate_runs_the_pytorch_bin_export(models, audio, name):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folder = models[name] / "pytorch"
    assert (folder / "pytorch_model.bin").is_file() and not (folder / "model.safetensors").exists()
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    for clip, language in (("english", "en"), ("short", "es")):
        path, _ = audio[clip]
        features = processor(load_audio(str(path)), sampling_rate=RATE, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, language=language, task="transcribe", **LIMIT)
            timed = model.generate(features, language=language, return_timestamps=True, **LIMIT)
        text = processor.batch_decode(ids, skip_special_tokens=True)[0]
        if name == "base" and clip == "english":
            assert same_words(text, ours(folder, path, "en")), text
        first = processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
        stamps = [(t - first) * 0.02 for t in timed[0].tolist() if t >= first]
        assert stamps == sorted(stamps) and all(t <= 30 for t in stamps)  # inside the window, increasing


# ------------------------------------------------------------------------------------- mwc transcribe
def test_transcribe_detects_format_and_language_on_every_export(models, audio, capsys):
    """No --backend, no --language: each export folder gives the PyTorch backend's language and text, in Spanish and
    English."""
    files = [str(audio["short"][0]), str(audio["english"][0])]
    answers = {}
    for export in ("safetensors", "pytorch", "onnx", "ct2"):
        assert main(["transcribe", str(models["base"] / export), *files, "--format", "json"]) == 0
        out, err = capsys.readouterr()
        languages = [line.rsplit("language ", 1)[1].split()[0] for line in err.splitlines() if "(detected)" in line]
        texts = json.loads(out)
        answers[export] = (languages, json.dumps(texts, sort_keys=True))
    assert answers["safetensors"][0] == ["es", "en"]
    assert all(a == answers["pytorch"] for a in answers.values()), answers
    texts = json.loads(answers["ct2"][1])
    assert wer(ENGLISH, texts[files[1]]["text"], "en") <= 0.2


def test_a_folder_that_is_no_model_is_refused_with_what_to_do(tmp_path, audio, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["transcribe", str(tmp_path), str(audio["short"][0])]) == 2
    assert "no Whisper model found" in capsys.readouterr().err


def test_every_export_holds_the_teachers_30_s_window(models):
    """The shape every deployment tool assumes (faster-whisper and whisper.cpp pad to 30 s): a student keeps it."""
    for name in ("base", "student"):
        config = json.loads((models[name] / "safetensors" / "config.json").read_text())
        fe = json.loads((models[name] / "ct2" / "preprocessor_config.json").read_text())
        assert config["max_source_positions"] == 1500 and fe["chunk_length"] == 30
    assert json.loads((models["student"] / "safetensors" / "config.json").read_text())["decoder_layers"] == 4


def test_a_10_s_student_is_named_unloadable_and_ct2_refused(models, tmp_path, audio, capsys):
    """A student with a 10-s window (make-student --window-seconds 10): faster-whisper cannot run its CTranslate2
    export (checked here, so the standard-shape test above would fail on it); `mwc export` refuses ct2 unless
    --allow-nonstandard-window, and says which tools will not load it, in its output and in the model card."""
    from faster_whisper import WhisperModel

    short, _ = make_student_folder(str(models["base"] / "safetensors"), 4, str(tmp_path / "short"), window_seconds=10)
    out = tmp_path / "exports"
    assert main(["export", "--model", str(short), "--out", str(out), "--formats", "safetensors,ct2"]) == 1
    assert "faster-whisper and whisper.cpp pad every window to 30 s" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--model",
                str(short),
                "--out",
                str(out),
                "--formats",
                "safetensors,ct2",
                "--allow-nonstandard-window",
            ]
        )
        == 0
    )
    assert "warning: this model's audio window is 10 s" in capsys.readouterr().err
    assert "**Not every tool loads this model**" in (out / "safetensors" / "MODEL_CARD.md").read_text()
    model = WhisperModel(str(out / "ct2"), device="cpu", compute_type="float32")
    with pytest.raises(ValueError, match="Invalid input features shape"):
        list(model.transcribe(load_audio(str(audio["short"][0])))[0])


# ------------------------------------------------------------------------- the demo's deployment table
def test_deployment_eval_scores_the_tools_own_text(models, audio, tmp_path):
    """mwc_dist.deployment (the demo's deployment table) decodes through faster-whisper (int8) and the chunked
    pipeline, and its metrics are jiwer's on the text the tool printed."""
    from mwc_dist.deployment import Item, load_tool, run_deployment_eval

    items = [Item(clip, load_audio(str(audio[clip][0])), audio[clip][1]) for clip in ("short", "long")]
    for tool, export in (("faster-whisper", "ct2"), ("pipeline", "safetensors")):
        metrics = run_deployment_eval(tool, models["base"] / export, items, tmp_path / tool, "es")
        rows = [json.loads(x) for x in (tmp_path / tool / "predictions.jsonl").read_text().splitlines()]
        assert [r["key"] for r in rows] == ["short", "long"] and all(r["prediction"] for r in rows)
        assert (
            metrics["wer"]
            == compute_metrics([i.reference for i in items], [r["prediction"] for r in rows], "es")["wer"]
        )
        assert metrics["compute_type"] == ("int8" if tool == "faster-whisper" else "float32")
        assert metrics["audio_seconds"] == pytest.approx(sum(len(i.wave) for i in items) / RATE)
        # the long recording (past one window) decoded whole: as good as our decoder's, within the margin
        assert wer(items[1].reference, rows[1]["prediction"]) <= ours_long_wer(models, audio, "base") + WER_MARGIN
    with pytest.raises(ValueError, match="choose from faster-whisper, pipeline"):
        load_tool("whisper.cpp", models["base"] / "ct2", "es")
