"""``mwc export``: SafeTensors, PyTorch, ONNX (optimum) and CTranslate2 exports, each checked against the model.

    mwc export --model runs/x/final --out exports/x --formats safetensors,pytorch,onnx,ct2 \
               --check-data shards/demo --language es

Layout: ``OUT/safetensors/`` (weights, configs, processor, MODEL_CARD.md), ``OUT/pytorch/``
(pytorch_model.bin), ``OUT/onnx/`` (encoder, decoder, decoder with past; optionally ORT-optimised),
``OUT/ct2/`` (model.bin + tokenizer for faster-whisper), ``OUT/parity.json``.

Parity, every export: greedy token ids of ONNX Runtime and CTranslate2 against PyTorch on real clips,
and the encoder's max-abs difference (relative to its largest activation). float32 exports must give identical ids;
int8/float16
CTranslate2 may differ by at most one WER point (against the references, or PyTorch's own output when
there are none). A failed check raises ``ExportError`` naming the format; the numbers are in parity.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mwc_dist.atomic import atomic_path, write_atomic

FORMATS = ("safetensors", "pytorch", "onnx", "ct2")
# encoder max-abs difference relative to the largest encoder activation (ORT/CT2 kernels sum in other orders)
ENCODER_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 1e-1, "int8_float32": 1e-1}


@dataclass
class ExportConfig:
    """What rank 0 exports at the end of training (final.py); ``mwc export`` reads the ONNX and window keys too."""

    export_safetensors: bool = True  # final/ as a Hugging Face folder with model.safetensors
    export_pytorch: bool = False  # also pytorch_model.bin
    export_onnx: bool = False  # an optimum ONNX export (encoder, decoder, decoder with past), parity-checked
    export_ct2: bool = False  # a CTranslate2 export (faster-whisper), parity-checked
    onnx_opset_version: int = 17  # the ONNX opset
    onnx_optimize: bool = False  # ONNX Runtime's graph optimisations applied to the export
    # export_ct2 for a model whose audio window is not 30 s (a make-student --window-seconds student): faster-whisper
    # and whisper.cpp cannot run it, so it is refused at start-up unless this is true (mwc's own backend runs it)
    allow_nonstandard_window: bool = False
    output_dir: str | None = None  # default: <train.output_dir>/final

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key."""
        if self.onnx_opset_version < 14:
            problems.append(
                f"export.onnx_opset_version: optimum's Whisper export needs 14 or newer; got {self.onnx_opset_version}"
            )


class ExportError(RuntimeError):
    pass


def _save_hf(model_dir: Path, out: Path, safe: bool) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    gen = model.generation_config
    if (
        getattr(gen, "is_multilingual", False)
        and not getattr(gen, "task", None)
        and not getattr(gen, "forced_decoder_ids", None)
    ):
        # what OpenAI's checkpoints say with forced_decoder_ids [[1, null], [2, <|transcribe|>]]: without it, a bare
        # generate() or pipeline() call neither detects the language nor adds the task token, and loops
        gen.task = "transcribe"
    model.save_pretrained(out, safe_serialization=safe)
    WhisperProcessor.from_pretrained(model_dir).save_pretrained(out)


STANDARD_WINDOW_SECONDS = 30  # what faster-whisper and whisper.cpp pad every window to, whatever the model says


def window_warning(model_dir: Path) -> str | None:
    """Which deployment tools will not load a model whose audio window is not Whisper's 30 s; None when it is."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    seconds = config["max_source_positions"] * 2 * 160 / 16000  # encoder positions -> frames -> seconds
    if abs(seconds - STANDARD_WINDOW_SECONDS) < 1e-6:
        return None
    return (
        f"this model's audio window is {seconds:g} s, not Whisper's {STANDARD_WINDOW_SECONDS} s: faster-whisper and "
        f"whisper.cpp pad every window to 30 s and will not run it (faster-whisper: 'Invalid input features shape'); "
        f"transformers' pipeline, optimum and `mwc transcribe` run it. For those tools, make the student with the "
        f"teacher's window (`mwc make-student` without --window-seconds)"
    )


def model_card(
    model_dir: Path,
    metrics: dict | None,
    train_hours: float | None,
    config_yaml: str | None,
    warning: str | None = None,
) -> str:
    lines = [f"# {model_dir.name}", "", "A Whisper model trained with mwc-dist.", ""]
    if warning:
        lines += ["## Deployment", "", f"**Not every tool loads this model**: {warning}.", ""]
    if metrics:
        lines += ["## Evaluation (measured on the held-out set)", "", "| metric | value |", "| --- | --- |"]
        for key in ("wer", "cer", "bleu", "chrf", "raw_wer", "raw_cer", "num_samples"):
            if key in metrics:
                value = metrics[key]
                lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
        lines.append("")
    if train_hours is not None:
        lines += [f"Training data: {train_hours:.3f} hours of audio.", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        f'asr = pipeline("automatic-speech-recognition", model="{model_dir.name}")',
        "```",
        "",
    ]
    if config_yaml:
        lines += ["## Training configuration", "", "```yaml", config_yaml.strip(), "```", ""]
    return "\n".join(lines)


def _run_context(model_dir: Path) -> tuple[dict | None, float | None, str | None]:
    """Metrics, training hours and config of the run a final/ folder came from, where they exist."""
    run = model_dir.parent
    state = run / "run_summary.json"
    metrics = json.loads(state.read_text()).get("last_eval") if state.is_file() else None
    config = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else None
    hours = None
    if config:
        import yaml

        shard_dir = Path(yaml.safe_load(config)["data"]["shard_dir"])
        manifest = shard_dir / "train.manifest.json"
        hours = json.loads(manifest.read_text())["hours"] if manifest.is_file() else None
    return metrics or None, hours, config


def export_onnx(model_dir: Path, out: Path, opset: int, optimize: bool) -> None:
    from optimum.exporters.onnx import main_export
    from transformers import WhisperConfig

    config = WhisperConfig.from_pretrained(model_dir)
    main_export(
        str(model_dir),
        output=str(out),
        task="automatic-speech-recognition-with-past",
        opset=opset,
        nb_max_frames=2 * config.max_source_positions,
        do_validation=False,
    )
    if optimize:
        optimize_onnx(out)


def optimize_onnx(folder: Path) -> dict[str, list[int]]:
    """export.onnx_optimize: ONNX Runtime's basic graph optimisations saved over each file, names unchanged.

    Basic = constant folding, redundant-node elimination and the fusions every execution provider runs, so the
    files stay portable (ORT's extended/layout levels are specific to one provider and machine). optimum's
    ORTOptimizer is not used: it writes only the encoder and the merged decoder, under new names
    (``*_optimized.onnx``), which neither optimum's own loader nor ``mwc transcribe`` then find. The node counts
    before and after go to ``optimization.json``.
    """
    import onnx
    import onnxruntime as ort

    if any(folder.glob("*.onnx_data")) or any(folder.glob("*.onnx.data")):
        raise ExportError(
            f"{folder}: the ONNX export keeps its weights in external files (a model over 2 GB); export.onnx_optimize "
            f"does not rewrite those. Set it to false: ONNX Runtime applies the same optimisations when it loads"
        )
    counts = {}
    for path in sorted(folder.glob("*.onnx")):
        with atomic_path(path) as tmp:  # the optimised graph replaces the file only once it is whole
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            counts[path.name] = [len(onnx.load(str(p), load_external_data=False).graph.node) for p in (path, tmp)]
    write_atomic(folder / "optimization.json", json.dumps({"level": "basic", "nodes_before_after": counts}, indent=2))
    return counts


def export_ct2(model_dir: Path, out: Path, quantization: str) -> None:
    import ctranslate2

    ctranslate2.converters.TransformersConverter(
        str(model_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
    ).convert(str(out), quantization=quantization, force=True)


def check_parity(
    model_dir: Path,
    exports: dict[str, tuple[Path, str]],
    clips: list[np.ndarray],
    references: list[str] | None,
    language: str | None,
    task: str,
    max_new_tokens: int = 64,
) -> dict[str, Any]:
    """Compare each export's greedy ids and encoder output with PyTorch's; raise ExportError on a failure."""
    from mwc_dist.inference.backends import load_backend
    from mwc_dist.metrics import compute_metrics

    reference = load_backend("pytorch", model_dir)
    features = reference.features(clips)
    ref_ids = reference.generate(features, language, task, max_new_tokens)
    ref_enc = reference.encode(features)
    decode = reference.processor.tokenizer.batch_decode
    truth = references or decode(ref_ids, skip_special_tokens=True)
    report: dict[str, Any] = {
        "clips": len(clips),
        "language": language,
        "pytorch": {"wer": compute_metrics(truth, decode(ref_ids, skip_special_tokens=True), language)["wer"]},
    }
    failures = []
    for name, (path, precision) in exports.items():
        backend = load_backend(
            "ct2" if name == "ct2" else "onnx", path, compute_type=precision if name == "ct2" else "default"
        )
        start = time.perf_counter()
        ids = backend.generate(features, language, task, max_new_tokens)
        took = time.perf_counter() - start
        enc_diff = float(np.abs(backend.encode(features) - ref_enc).max())
        enc_rel = enc_diff / float(np.abs(ref_enc).max())
        wer = compute_metrics(truth, decode(ids, skip_special_tokens=True), language)["wer"]
        identical = sum(a == b for a, b in zip(ids, ref_ids))
        entry = {
            "precision": precision,
            "identical_clips": identical,
            "encoder_max_abs_diff": enc_diff,
            "encoder_rel_diff": enc_rel,
            "wer": wer,
            "wer_diff_points": 100 * (wer - report["pytorch"]["wer"]),
            "decode_seconds": took,
        }
        if precision == "float32":
            entry["ok"] = identical == len(clips) and enc_rel <= ENCODER_TOLERANCE["float32"]
        else:
            entry["ok"] = abs(entry["wer_diff_points"]) <= 1.0 and enc_rel <= ENCODER_TOLERANCE[precision]
        report[name] = entry
        if not entry["ok"]:
            failures.append(
                f"{name} ({precision}): {identical}/{len(clips)} clips with PyTorch's tokens, "
                f"encoder max-abs diff {enc_diff:.2e} ({enc_rel:.1e} of its largest value), "
                f"WER {wer:.3f} vs PyTorch {report['pytorch']['wer']:.3f}"
            )
    report["ok"] = not failures
    report["failures"] = failures
    return report


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    formats: list[str],
    *,
    opset: int = 17,
    optimize: bool = False,
    ct2_quantization: str = "float32",
    clips: list[np.ndarray] | None = None,
    references: list[str] | None = None,
    language: str | None = None,
    task: str = "transcribe",
    allow_nonstandard_window: bool = False,
    log=print,
) -> dict:
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    warning = window_warning(model_dir)
    if warning and "ct2" in formats and not allow_nonstandard_window:
        raise ExportError(
            f"{model_dir}: {warning}. CTranslate2 is the format faster-whisper loads, so ct2 is refused; export "
            f"the other formats, or pass --allow-nonstandard-window for mwc's own CTranslate2 backend"
        )
    if warning:
        log(f"warning: {warning}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    if "safetensors" in formats:
        _save_hf(model_dir, out_dir / "safetensors", safe=True)
        card = model_card(model_dir, *_run_context(model_dir), warning=warning)
        (out_dir / "safetensors" / "MODEL_CARD.md").write_text(card)
        written["safetensors"] = str(out_dir / "safetensors")
    if "pytorch" in formats:
        _save_hf(model_dir, out_dir / "pytorch", safe=False)
        written["pytorch"] = str(out_dir / "pytorch")
    checks: dict[str, tuple[Path, str]] = {}
    if "onnx" in formats:
        export_onnx(model_dir, out_dir / "onnx", opset, optimize)
        checks["onnx"] = (out_dir / "onnx", "float32")
    if "ct2" in formats:
        export_ct2(model_dir, out_dir / "ct2", ct2_quantization)
        checks["ct2"] = (out_dir / "ct2", ct2_quantization)
    report: dict[str, Any] = {"formats": written | {k: str(v[0]) for k, v in checks.items()}}
    if warning:
        report["warning"] = warning
    if checks and clips:
        report["parity"] = check_parity(model_dir, checks, clips, references, language, task)
    (out_dir / "parity.json").write_text(json.dumps(report, indent=2))
    if report.get("parity") and not report["parity"]["ok"]:
        raise ExportError(
            "export parity check failed: "
            + "; ".join(report["parity"]["failures"])
            + f" (details in {out_dir / 'parity.json'})"
        )
    return report


def clips_from_shards(
    shard_dir: str | Path, split: str = "test", limit: int = 8
) -> tuple[list[np.ndarray], list[str], str | None]:
    """The first ``limit`` clips of a shard split (audio, references, language) for parity checks."""
    from mwc_dist.data.stream import first_clips

    clips = first_clips(shard_dir, split, limit)
    language = next((c["language"] for c in clips if c["language"]), None)
    return [c["wave"] for c in clips], [c["text"] for c in clips], language
