"""Decoding subcommands: ``mwc eval`` (WER, CER, BLEU, chrF of a shard split or whole recordings),
``mwc pseudo-label`` (a teacher's text into new shards) and ``mwc transcribe`` (audio files -> text, JSON, SRT).

eval and pseudo-label read the data:, model: and train: sections (``--config run.yaml`` evaluates a run's own
shards with its own generation settings); their flags in [brackets] override those keys.
"""

from __future__ import annotations

import argparse
import json
import sys

from mwc_dist.cli.options import add_config_options, key_flag, load_config
from mwc_dist.languages import language_arg

SPLIT_CHOICES = ["train", "validation", "test"]


def cmd_eval(args: argparse.Namespace) -> int:
    from mwc_dist.evaluate import run_eval
    from mwc_dist.inference.decoding import Guard

    cfg = load_config(args)
    if args.long_form:
        return _eval_long_form(args, cfg)
    run_eval(
        args.model,
        args.data or cfg.data.shard_dir,
        args.out,
        split=cfg.data.eval_split,
        language=cfg.data.language,
        task=cfg.model.task,
        batch_size=cfg.train.per_device_eval_batch_size,
        max_length=cfg.train.generation_max_length,
        limit=cfg.train.eval_max_samples,
        num_beams=cfg.train.num_beams,
        guard=None if args.no_guard else Guard(),
        with_loss=args.loss,
    )
    return 0


def _eval_long_form(args: argparse.Namespace, cfg) -> int:
    from mwc_dist.inference.decoding import Guard
    from mwc_dist.longform import LongFormEval, run_long_form_eval

    if not args.data:
        print(
            "error: --long-form needs --data: recordings with .srt/.vtt beside them, or a JSON/JSONL", file=sys.stderr
        )
        return 2
    guard = None if args.no_guard else Guard()
    options = LongFormEval(
        cfg.data.language, cfg.model.task, guard, cfg.train.generation_max_length, chunked=not args.no_chunked
    )
    metrics = run_long_form_eval(args.model, args.data, args.out, options=options)
    if metrics is not None:
        seq = metrics["sequential"]
        start = seq["median_start_error"]
        print(
            f"{metrics['num_recordings']} recordings, {metrics['audio_seconds']:.0f} s: "
            f"sequential WER {seq['wer']:.4f}, "
            f"median start error {'-' if start is None else f'{start:.2f} s'}, loops {seq['loops']}, "
            f"truncated {seq['truncated']}, {seq['decode_seconds']:.1f} s ({', '.join(seq['modes'])})"
            + (f"; chunked WER {metrics['chunked']['wer']:.4f}" if "chunked" in metrics else "")
        )
    return 0


def cmd_pseudo_label(args: argparse.Namespace) -> int:
    from mwc_dist.data.pseudo import pseudo_label

    cfg = load_config(args)
    if args.long_form:
        return _pseudo_label_long(args, cfg)
    summary = pseudo_label(
        args.model,
        args.data or cfg.data.shard_dir,
        args.out,
        split=args.split,
        batch_size=cfg.train.per_device_eval_batch_size,
        language=cfg.data.language,
        max_new_tokens=cfg.train.generation_max_length,
        max_shards=args.max_shards,
        backend=args.backend,
        compute_type=args.compute_type,
        store_topk=args.store_topk,
    )
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return 0


def _pseudo_label_long(args: argparse.Namespace, cfg) -> int:
    from mwc_dist.data.pseudo_long import pseudo_label_recordings
    from mwc_dist.inference.decoding import Guard

    if args.backend != "pytorch":
        print("error: --long-form decodes with --backend pytorch (sequential, timestamps)", file=sys.stderr)
        return 2
    if not args.data:
        print("error: --long-form needs --data: a source of long recordings", file=sys.stderr)
        return 2
    summary = pseudo_label_recordings(
        args.model, args.data, args.out, language=cfg.data.language, window=args.window_seconds, guard=Guard()
    )
    if summary is not None:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from mwc_dist.audio.decode import AudioError, load_audio
    from mwc_dist.inference.backends import load_backend
    from mwc_dist.inference.decoding import Guard
    from mwc_dist.inference.windows import format_output, transcribe
    from mwc_dist.longform import transcribe_long

    backend = load_backend(args.backend, args.model, compute_type=args.compute_type)
    guard = None if args.no_guard else Guard(seed=args.seed)
    results, failed = {}, 0
    for path in args.audio:
        try:
            wave = load_audio(path, normalize=True)
        except AudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        language = args.language
        if language is None and backend.multilingual:  # as Whisper does: detected once, on the first window
            language = backend.detect_languages(backend.features([wave[: backend.window_samples]]))[0]
            print(f"{path}: language {language} (detected)", file=sys.stderr)
        if len(wave) <= backend.window_samples and not args.timestamps:  # one window: a plain transcript
            results[path] = transcribe(backend, wave, language, args.task, args.max_new_tokens, guard=guard)
            continue
        long = transcribe_long(
            backend, wave, language, args.task, guard, args.max_new_tokens, sequential=not args.chunked
        )
        if long.mode != "sequential":
            print(f"{path}: cut in pauses, times are the cuts ({long.mode.split(': ', 1)[-1]})", file=sys.stderr)
        results[path] = long.segments
    print(format_output(results, args.format))
    return 1 if failed else 0


def _add_decoding_keys(p: argparse.ArgumentParser, max_tokens_flag: str) -> None:
    """The flags eval and pseudo-label share, each an override of its config key."""
    key_flag(p, "--batch-size", "train.per_device_eval_batch_size", "clips per generate call")
    key_flag(p, max_tokens_flag, "train.generation_max_length", "most new tokens per clip")
    key_flag(
        p, "--language", "data.language", "language for samples that name none (e.g. es, spanish)", type=language_arg
    )


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model folder on a shard folder (WER, CER, BLEU, chrF)",
        description="Greedy (or beam) transcription of a shard split; writes OUT/predictions.jsonl and "
        "OUT/metrics.json. Under `accelerate launch -m mwc_dist.cli eval ...` the samples are split across "
        "processes. Reads the data:, model: and train: sections; each flag in [brackets] overrides that key.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="a Hugging Face Whisper folder (a run's final/, a checkpoint's model/, an import)",
    )
    p.add_argument(
        "--data",
        help="shard folder with <split>.manifest.json (from `mwc shard`); default: data.shard_dir of --config",
    )
    p.add_argument("--out", required=True, help="folder for predictions.jsonl and metrics.json")
    key_flag(p, "--split", "data.eval_split", "which split", choices=SPLIT_CHOICES)
    key_flag(p, "--task", "model.task", "Whisper task", choices=["transcribe", "translate"])
    _add_decoding_keys(p, "--max-length")
    key_flag(p, "--limit", "train.eval_max_samples", "evaluate only the first N samples (0: all)")
    key_flag(p, "--num-beams", "train.num_beams", "beam size; 1 = greedy")
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="greedy only; by default each clip is also decoded with Whisper's temperature fallback "
        "(prediction_guarded in predictions.jsonl, a 'guarded' section in metrics.json)",
    )
    p.add_argument(
        "--loss", action="store_true", help="also the label loss (teacher-forced cross-entropy): one more forward"
    )
    p.add_argument(
        "--long-form",
        action="store_true",
        help="whole recordings: --data is audio with .srt/.vtt beside it, or a JSON/JSONL with segments; each is "
        "decoded sequentially with the model's timestamps and previous text (and cut in pauses, for comparison); "
        "writes OUT/predictions_long.jsonl and OUT/metrics_long.json (WER, median start error, loops, truncations)",
    )
    p.add_argument("--no-chunked", action="store_true", help="with --long-form: sequential decoding only")
    add_config_options(p, "its data:, model: and train: sections are used")
    p.set_defaults(fn=cmd_eval)


def add_pseudo_label(sub) -> None:
    p = sub.add_parser(
        "pseudo-label",
        help="a teacher transcribes a shard split once: new shards with its text and quality beside the reference",
        description="Write OUT/<shard>.tar for every shard of DATA/<split>: the same samples with the teacher's "
        "greedy text, tokens and quality signals (mean log-probability, compression ratio, a repeated n-gram, WER "
        "against the reference) added, plus OUT/<split>.manifest.json and OUT/pseudo_labels.json; the other "
        "splits are linked. Restartable (finished shards are skipped) and byte-identical on any number of ranks "
        "(accelerate launch -m mwc_dist.cli pseudo-label ...). Train on it with data.shard_dir=OUT "
        "data.text_field=teacher_text. Reads the data: and train: sections; each flag in [brackets] overrides "
        "that key.",
    )
    p.add_argument("--model", required=True, help="the teacher: a Hugging Face Whisper folder")
    p.add_argument(
        "--data",
        help="shard folder with <split>.manifest.json (from `mwc shard`); default: data.shard_dir of --config",
    )
    p.add_argument("--out", required=True, help="output shard folder")
    p.add_argument("--split", default="train", help="which split to label (default train)")
    _add_decoding_keys(p, "--max-new-tokens")
    p.add_argument(
        "--store-topk",
        type=int,
        default=0,
        help="also store the teacher's K likeliest tokens and log-probabilities per label token (--backend pytorch; "
        "64: the KL within ~5 %% of the full one at T=1, tests/training/test_offline_kd.py), "
        "for offline distillation: train with model.distillation_source=shards, no teacher in memory",
    )
    p.add_argument("--max-shards", type=int, default=0, help="label only the split's first N shards (default: all)")
    p.add_argument(
        "--backend",
        choices=["pytorch", "ct2"],
        default="pytorch",
        help="decode with PyTorch (default) or CTranslate2 (the teacher converted once into OUT/.teacher-ct2)",
    )
    p.add_argument(
        "--compute-type",
        default="default",
        choices=["default", "int8", "int8_float32", "float32", "float16"],
        help="CTranslate2's compute type (int8: 8-bit weights, the fastest on CPUs; float16: GPUs only; "
        "default: the model's)",
    )
    p.add_argument(
        "--long-form",
        action="store_true",
        help="--data is a source of long recordings (no transcripts needed): the teacher transcribes each one "
        "sequentially with its timestamps and its segments are cut into training windows (OUT/<recording>.tar)",
    )
    p.add_argument(
        "--window-seconds", type=float, default=30.0, help="with --long-form: the longest window (default 30)"
    )
    add_config_options(p, "its data: and train: sections are used")
    p.set_defaults(fn=cmd_pseudo_label)


def add_transcribe(sub) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files with a model folder, an ONNX export or a CTranslate2 export",
        description="Decode each file (any of the seven formats), cut long audio into the model's 30-s windows, and "
        "print the transcript as text, JSON or SRT.",
    )
    p.add_argument("model", help="model folder: HF (pytorch), optimum ONNX export (onnx) or CTranslate2 export (ct2)")
    p.add_argument("audio", nargs="+", help="audio files (WAV, MP3, FLAC, OGG, Opus, M4A, AAC, WMA)")
    p.add_argument(
        "--backend",
        default=None,
        choices=["pytorch", "onnx", "ct2"],
        help="inference engine (default: the one the folder is for: a Hugging Face folder -> pytorch, an ONNX "
        "export -> onnx, a CTranslate2 export -> ct2)",
    )
    p.add_argument(
        "--language",
        default=None,
        type=language_arg,
        help="language code or name (e.g. es); default: the model detects it",
    )
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"], help="Whisper task")
    p.add_argument(
        "--format", default="text", choices=["text", "json", "srt", "vtt"], help="output format (default text)"
    )
    p.add_argument(
        "--chunked",
        action="store_true",
        help="cut long audio in pauses and decode each piece alone; by default audio longer than the model's window "
        "is decoded sequentially with the model's own timestamps and the previous text as context (PyTorch backend)",
    )
    p.add_argument("--timestamps", action="store_true", help="predicted segment times for audio within one window too")
    p.add_argument("--max-new-tokens", type=int, default=128, help="most tokens per 30-s window (default 128)")
    p.add_argument("--compute-type", default="default", help="CTranslate2 compute type (default: as saved)")
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="plain greedy decoding; by default a looping or low-confidence window (gzip compression ratio > 2.4 "
        "or mean log-probability < -1) is decoded again at temperatures 0.2..1.0, as Whisper's transcriber does",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fallback's sampling (default 0)")
    p.set_defaults(fn=cmd_transcribe)
