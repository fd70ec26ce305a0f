"""``mwc shard`` (any corpus layout -> checked WebDataset shards) and ``mwc demo-data`` (the espeak-ng corpus)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mwc_dist.cli.options import add_config_options, key_flag, load_config


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
    cfg = load_config(args)
    summary = shard_source(
        cfg.data,
        out_dir,
        job_index=args.job_index,
        num_jobs=args.num_jobs,
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


def add_shard(sub) -> None:
    p = sub.add_parser(
        "shard",
        help="decode audio from any source into checked WebDataset shards",
        description=(
            "Decode every item of a source once (mono, 16 kHz, normalised, duration-checked) into "
            "OUT/<split>-NNNNNN.tar WebDataset shards, with OUT/<split>.manifest.json and "
            "OUT/quarantine.jsonl listing every rejected item and why. Re-running over OUT resumes. "
            "Reads the data: section; each flag in [brackets] overrides that key."
        ),
    )
    key_flag(
        p,
        "--source",
        "data.source",
        "folder (metadata.csv/.json/.jsonl or .txt beside each file), CSV, JSON/JSONL "
        "manifest, HF save_to_disk folder, or hub dataset name",
    )
    p.add_argument("--out", required=True, help="output folder for shards, manifests and quarantine.jsonl")
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
    key_flag(p, "--workers", "data.shard_workers", "decode processes (0: all cores)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete shards from an earlier, different plan in OUT instead of refusing",
    )
    key_flag(
        p,
        "--for-world-size",
        "data.shard_for_world_size",
        "cut the train split into a multiple of N x data.num_workers shards, evenly filled, so that every rank "
        "and loader worker of an N-process run reads shards of its own",
    )
    p.add_argument("--merge-only", action="store_true", help="only merge the finished jobs' records into manifests")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(p, "its data: section is used")
    p.set_defaults(fn=cmd_shard)


def add_demo_data(sub) -> None:
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
