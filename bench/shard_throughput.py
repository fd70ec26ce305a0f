"""Sharding throughput: audio-hours sharded per core-minute for FLAC and MP3 input.

    python bench/shard_throughput.py [--utterances 1000] [--workers N]

Builds an espeak-ng corpus once, writes it as all-FLAC and all-MP3 copies, then runs `mwc shard`
(decode -> mono 16 kHz -> checks -> FLAC in WebDataset tars) over each, with N worker processes and,
as the baseline in the same run, with one process. Core-minutes are CPU time (process + workers).
The last line is `ratio=<x>`: our N-process throughput (audio-hours per wall-minute) over the
1-process baseline on the same FLAC input (worker start-up, ~2 s for torch, is included).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwc_dist.audio.decode import decode  # noqa: E402
from mwc_dist.audio.encode import write_audio  # noqa: E402
from mwc_dist.config import DataConfig  # noqa: E402
from mwc_dist.data.shard import shard_source  # noqa: E402
from mwc_dist.demo.corpus import make_demo_corpus  # noqa: E402


def convert(src: Path, dst: Path, fmt: str) -> None:
    """Copy the demo corpus with every file re-encoded as ``fmt``."""
    dst.mkdir(parents=True)
    rows = list(csv.DictReader(open(src / "metadata.csv", encoding="utf-8")))
    for row in rows:
        decoded = decode(src / row["file_name"])
        name = Path(row["file_name"]).with_suffix("." + fmt)
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(dst / name, decoded.samples, decoded.source_rate, channels=decoded.samples.shape[1])
        row["file_name"] = str(name)
    with open(dst / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers are joined by then)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(source: Path, out: Path, workers: int) -> tuple[float, float, float]:
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = shard_source(DataConfig(source=str(source)), out, workers=workers, progress=False, log=lambda _: None)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    hours = sum(s["hours"] for s in summary["splits"].values())
    return hours, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "demo", count=args.utterances, progress=False)
        results = {}
        run(tmp / "demo", tmp / "warmup", 1)  # imports and resampler kernels, outside the timings
        for fmt in ("flac", "mp3"):
            convert(tmp / "demo", tmp / fmt, fmt)
            for workers in sorted({1, args.workers}):
                out = tmp / f"out-{fmt}-{workers}"
                hours, wall, cpu = run(tmp / fmt, out, workers)
                shutil.rmtree(out)
                results[(fmt, workers)] = hours / (wall / 60)
                print(
                    f"{fmt:<5} workers={workers}  {hours * 3600:8.1f} s of audio in {wall:6.2f} s wall, "
                    f"{cpu:6.2f} s CPU"
                    f"  -> {hours / (cpu / 60):6.2f} audio-h per core-min, {hours * 3600 / wall:6.1f}x real time"
                )
    print(f"machine: {os.cpu_count()} cores; baseline: the same shard pipeline with 1 process")
    print(f"ratio={results[('flac', args.workers)] / results[('flac', 1)]:.2f}")


if __name__ == "__main__":
    main()
