"""Data plane: stored audio -> a padded log-mel batch ready for the model, per CPU worker (one thread).

    python bench/data_plane.py [--utterances 240] [--batch 8]

Ours: shards written once by `mwc shard` (16 kHz mono FLAC) -> TrainStream (shuffle, duration buckets,
FLAC decode, tokenise, collate) -> LogMel (torch, only over the batch's real audio; on a GPU this part runs
on the device, so the "worker only" row is what a GPU's host worker pays).
Baseline, the HF example's path (run_speech_recognition_seq2seq.py) on the same clips: a `datasets`
Dataset of the original files (mixed formats, 22-48 kHz, some stereo) -> per example: decode, resample to
16 kHz, `WhisperFeatureExtractor` (numpy, 30-s padded), tokenise -> the example's collator (pad features
and labels). datasets' own Audio decoding needs torchcodec + FFmpeg's libraries, so the baseline decodes
with the same soundfile/PyAV decoder and torchaudio resampler as `mwc shard` (which only favours it).

Two corpora: the espeak-ng utterances as they come (2-6 s, like Common Voice) and the same speech joined
into ~25-s clips (like long-form training data). The last line is `ratio=<x>`: the smaller of the two
speed-ups (ours with log-mel on the CPU over the baseline, clips per second).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwc_dist.audio.decode import decode, load_audio, to_mono_16k  # noqa: E402
from mwc_dist.audio.encode import write_audio  # noqa: E402
from mwc_dist.audio.features import LogMel  # noqa: E402
from mwc_dist.config import DataConfig  # noqa: E402
from mwc_dist.data.shard import shard_source  # noqa: E402
from mwc_dist.data.stream import Tokenize, TrainStream, build_train_loader, load_shard_set  # noqa: E402
from mwc_dist.demo.corpus import make_demo_corpus  # noqa: E402
from mwc_dist.models.tokenizer import load_tokenizer  # noqa: E402


def join_long(src: Path, dst: Path, per_clip: int) -> None:
    """The corpus again as ~25-s clips: ``per_clip`` utterances joined, written as 48 kHz FLAC."""
    dst.mkdir(parents=True)
    rows = list(csv.DictReader(open(src / "metadata.csv", encoding="utf-8")))
    out = []
    for n in range(0, len(rows) - per_clip + 1, per_clip):
        group = rows[n : n + per_clip]
        wave = np.concatenate([load_audio(src / r["file_name"], sample_rate=48000) for r in group])
        name = f"long_{n:05d}.flac"
        write_audio(dst / name, wave * 0.5, 48000)
        out.append({"file_name": name, "text": " ".join(r["text"] for r in group)})
    with open(dst / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["file_name", "text"])
        w.writeheader()
        w.writerows(out)


def ours(shard_dir: Path, tokenize: Tokenize, batch: int, log_mel: LogMel | None) -> tuple[int, float]:
    shards = load_shard_set(DataConfig(shard_dir=str(shard_dir)), "train")
    stream = TrainStream(
        shards,
        tokenize,
        batch_size=batch,
        seed=0,
        epoch=0,
        rank=0,
        world_size=1,
        num_workers=1,
        shuffle_buffer=100,
        bucket_size=8,
        max_samples=480000,
    )
    clips, start = 0, time.perf_counter()
    for b in build_train_loader(stream):
        if b is None:
            continue
        if log_mel is not None:
            features = log_mel(b["audio"])
            assert features.shape[1:] == (80, 3000)
        clips += len(b["keys"])
    return clips, time.perf_counter() - start


def baseline(source: Path, tokenizer, batch: int) -> tuple[int, float]:
    import datasets
    from transformers import WhisperFeatureExtractor

    rows = list(csv.DictReader(open(source / "metadata.csv", encoding="utf-8")))
    ds = datasets.Dataset.from_dict(
        {"audio": [str(source / r["file_name"]) for r in rows], "sentence": [r["text"] for r in rows]}
    )
    fe = WhisperFeatureExtractor()

    def prepare(example):  # the example's prepare_dataset, run on the fly
        d = decode(example["audio"][0])
        array = to_mono_16k(d.samples, d.source_rate, 16000)
        return {
            "input_features": [fe(array, sampling_rate=16000).input_features[0]],
            "labels": [tokenizer(example["sentence"][0]).input_ids],
        }

    ds = ds.with_transform(prepare)
    clips, start = 0, time.perf_counter()
    for n in range(0, len(ds) - batch + 1, batch):
        examples = [ds[i] for i in range(n, n + batch)]
        # DataCollatorSpeechSeq2SeqWithPadding
        features = fe.pad([{"input_features": e["input_features"]} for e in examples], return_tensors="pt")
        labels = tokenizer.pad([{"input_ids": e["labels"]} for e in examples], return_tensors="pt")
        labels = labels["input_ids"].masked_fill(labels.attention_mask.ne(1), -100)
        assert features["input_features"].shape[1:] == (80, 3000)
        clips += batch
    return clips, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=240)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one CPU worker each
    tokenizer = load_tokenizer()
    tokenize = Tokenize(tokenizer, "es", "transcribe")
    log_mel = LogMel(80, 30)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_corpus(tmp / "short", count=args.utterances, test_fraction=0.0, progress=False)
        join_long(tmp / "short", tmp / "long", 8)
        for corpus in ("short", "long"):
            cfg = DataConfig(
                source=str(tmp / corpus),
                train_split_ratio=1.0,
                validation_split_ratio=0.0,
                test_split_ratio=0.0,
                shard_samples=16,
            )
            summary = shard_source(cfg, tmp / f"{corpus}-shards", workers=1, progress=False, log=lambda _: None)
            seconds = summary["splits"]["train"]["hours"] * 3600
            n_clips = summary["splits"]["train"]["num_samples"]
            ours(tmp / f"{corpus}-shards", tokenize, args.batch, log_mel)  # warm-up
            results = {
                "baseline (HF example path)": baseline(tmp / corpus, tokenizer, args.batch),
                "ours, log-mel on this CPU": ours(tmp / f"{corpus}-shards", tokenize, args.batch, log_mel),
                "ours, worker only (log-mel on the GPU)": ours(tmp / f"{corpus}-shards", tokenize, args.batch, None),
            }
            print(f"{corpus}: {n_clips} clips, mean {seconds / n_clips:.1f} s, batch {args.batch}, one thread")
            base = results["baseline (HF example path)"][0] / results["baseline (HF example path)"][1]
            for name, (clips, wall) in results.items():
                rate = clips / wall
                print(
                    f"  {name:<40} {clips:5d} clips in {wall:6.2f} s  {rate:8.1f} clips/s  {1000 / rate:7.2f} ms/clip"
                    f"  {rate / base:6.2f}x"
                )
            ratios.append(results["ours, log-mel on this CPU"][0] / results["ours, log-mel on this CPU"][1] / base)
    print("baseline: datasets + WhisperFeatureExtractor (numpy) + the HF example's collator, same clips, same thread")
    print(f"ratio={min(ratios):.2f}")


if __name__ == "__main__":
    main()
