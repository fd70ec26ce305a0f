"""Shard streaming: disjoint ranks, equal steps with uneven shards, exact resume positions, log-mel parity."""

import json

import numpy as np
import pytest
import torch

from mwc_dist.audio.encode import write_audio
from mwc_dist.config import DataConfig
from mwc_dist.data.shard import shard_source
from mwc_dist.data.stream import Tokenize, TrainStream, build_train_loader, eval_batches, load_shard_set
from mwc_dist.models.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def uneven_shards(tmp_path_factory):
    """47 short clips whose transcripts name their id, in 7 train shards of 7,7,7,7,7,7,5 samples."""
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    rows = []
    for n in range(47):
        seconds = 0.6 + 0.02 * n
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 10 * n) * t) + 0.01 * rng.standard_normal(len(t))
        write_audio(root / f"clip{n:03d}.flac", wave.astype(np.float32), 16000)
        rows.append({"file_name": f"clip{n:03d}.flac", "text": f"sample {n}", "split": "train"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "shards"
    shard_source(DataConfig(source=str(root), shard_samples=7), out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def tokenize():
    return Tokenize(load_tokenizer(), "es", "transcribe")


def _stream(shards, tokenize, rank=0, world=2, workers=2, epoch=0, skip=0, batch=2):
    return TrainStream(
        shards,
        tokenize,
        batch_size=batch,
        seed=7,
        epoch=epoch,
        rank=rank,
        world_size=world,
        num_workers=workers,
        shuffle_buffer=5,
        bucket_size=2,
        max_samples=16000 * 10,
        skip_items=skip,
    )


def _items(stream):
    return [None if b is None else tuple(b["keys"]) for b in build_train_loader(stream)]


def test_manifest_counts(uneven_shards):
    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    assert len(shards.urls) == 7 and sorted(shards.counts) == [5, 7, 7, 7, 7, 7, 7]


@pytest.mark.parametrize("workers", [1, 2])
def test_ranks_disjoint_and_equal_steps(uneven_shards, tokenize, workers):
    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    for epoch in range(3):
        taken = []
        steps = {_stream(shards, tokenize, r, 2, workers, epoch).steps_per_epoch() for r in (0, 1)}
        assert len(steps) == 1  # every rank computes the same epoch length
        steps = steps.pop()
        for rank in (0, 1):
            real = [i for i in _items(_stream(shards, tokenize, rank, 2, workers, epoch)) if i is not None]
            assert len(real) >= steps  # every rank can supply the epoch
            taken.append({k for batch in real[:steps] for k in batch})
        assert not taken[0] & taken[1]  # disjoint
        assert len(taken[0]) == len(taken[1]) == steps * 2
    assert steps >= 8  # most of 47 samples are used: 2 ranks x steps x batch 2


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_resume_continues_exactly(uneven_shards, tokenize, workers):
    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    full = _items(_stream(shards, tokenize, 0, 2, workers, epoch=1))
    assert len([i for i in full if i]) > 3
    for skip in range(len(full) + 1):
        assert _items(_stream(shards, tokenize, 0, 2, workers, epoch=1, skip=skip)) == full[skip:], skip


def test_epochs_shuffle_differently(uneven_shards, tokenize):
    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    assert _items(_stream(shards, tokenize, epoch=0)) != _items(_stream(shards, tokenize, epoch=1))
    assert _items(_stream(shards, tokenize, epoch=1)) == _items(_stream(shards, tokenize, epoch=1))


def test_batches_hold_audio_and_labels(uneven_shards, tokenize):
    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    batch = next(b for b in build_train_loader(_stream(shards, tokenize, workers=1)) if b is not None)
    assert batch["audio"].dtype == torch.int16 and batch["audio"].shape[0] == 2  # FLAC shards: exact 16-bit PCM
    assert batch["audio"].abs().max() > 1000  # real signal, not float values truncated to ints
    for i, key in enumerate(batch["keys"]):
        n = int(key.replace("clip", "").split("_")[0])
        assert batch["audio_lengths"][i] == int(16000 * (0.6 + 0.02 * n))
        ids = [t for t in batch["labels"][i].tolist() if t != -100]
        tok = tokenize.tokenizer
        assert ids[:3] == [tok.convert_tokens_to_ids(t) for t in ("<|es|>", "<|transcribe|>", "<|notimestamps|>")]
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True).strip() == f"sample {n}"


def test_eval_split_each_sample_once(uneven_shards, tokenize):
    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    seen = []
    for rank in range(3):
        for batch in eval_batches(shards, tokenize, batch_size=4, rank=rank, world_size=3, max_samples=160000):
            seen += batch["keys"]
    assert len(seen) == len(set(seen)) == 47


def test_log_mel_matches_the_feature_extractor():
    from transformers import WhisperFeatureExtractor

    from mwc_dist.audio.features import LogMel

    rng = np.random.default_rng(1)
    waves = [(rng.standard_normal(16000 * n) * 0.1).astype(np.float32) for n in (2, 5)]
    padded = torch.zeros(2, 16000 * 5)
    for i, w in enumerate(waves):
        padded[i, : len(w)] = torch.from_numpy(w)
    for n_mels, seconds in ((80, 30), (128, 30), (80, 10)):
        ref = WhisperFeatureExtractor(feature_size=n_mels, chunk_length=seconds)(
            waves, sampling_rate=16000, return_tensors="np"
        ).input_features
        ours = LogMel(n_mels, seconds)(padded).numpy()
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("seconds", [30, 10])
def test_log_mel_over_the_real_audio_equals_the_full_window(seconds):
    """Frames past the batch's longest clip are filled, not computed: the same numbers as the whole padded window."""
    from mwc_dist.audio.features import LogMel

    rng = np.random.default_rng(2)
    log_mel = LogMel(80, seconds)
    for lengths in (
        [1, 160],
        [3200, 48000],
        [159_999, 12345],
        [16000 * seconds - 150, 5000],
        [16000 * seconds + 99, 1],
    ):
        batch = torch.zeros(len(lengths), max(lengths))
        for i, n in enumerate(lengths):
            batch[i, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1)
        full = torch.zeros(len(lengths), max(16000 * seconds, max(lengths)))
        full[:, : batch.shape[1]] = batch
        assert torch.allclose(log_mel(batch), log_mel(full), atol=1e-6), lengths


def test_int16_batches_give_the_float_log_mel(uneven_shards, tokenize):
    """The loader ships FLAC audio as int16; LogMel on it equals LogMel on the float32 decode."""
    from mwc_dist.audio.features import LogMel
    from mwc_dist.data.stream import collate, decode_flac, tar_samples

    shards = load_shard_set(DataConfig(shard_dir=str(uneven_shards)), "train")
    samples = list(tar_samples(shards.urls[:1]))[:3]
    batch = collate(samples, tokenize, 480000)
    floats = torch.zeros(batch["audio"].shape)
    for i, s in enumerate(samples):
        wave = torch.from_numpy(decode_flac(s["flac"]))
        floats[i, : len(wave)] = wave
    assert torch.equal(batch["audio"].float() / 32768, floats)
    log_mel = LogMel(80, 30)
    assert torch.equal(log_mel(batch["audio"]), log_mel(floats))


@pytest.fixture(scope="module")
def one_shard(uneven_shards, tmp_path_factory):
    """The 47 clips' sources again, sharded as a small corpus arrives: one train shard."""
    src = uneven_shards.parent
    out = tmp_path_factory.mktemp("one_shard") / "shards"
    shard_source(DataConfig(source=str(src), shard_samples=1000), out, workers=1, progress=False)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_fewer_shards_than_ranks_x_workers_split_within_shards(one_shard, tokenize, workers):
    """1 shard, 2 ranks x workers: each (rank, worker) keeps its part of the shard; equal steps, disjoint samples,
    exact resume positions."""
    shards = load_shard_set(DataConfig(shard_dir=str(one_shard)), "train")
    assert len(shards.urls) == 1
    shared = shards.split_within(2 * workers)
    assert len(shared.urls) == 2 * workers and shared.num_samples == 47
    for epoch in range(2):
        steps = {_stream(shared, tokenize, r, 2, workers, epoch).steps_per_epoch() for r in (0, 1)}
        assert len(steps) == 1
        steps = steps.pop()
        taken = []
        for rank in (0, 1):
            real = [i for i in _items(_stream(shared, tokenize, rank, 2, workers, epoch)) if i is not None]
            assert len(real) >= steps
            taken.append({k for batch in real[:steps] for k in batch})
        assert not taken[0] & taken[1]
        assert len(taken[0]) == len(taken[1]) == steps * 2
    assert steps >= 10  # 47 samples over 2 ranks in batches of 2: nearly all used
    full = _items(_stream(shared, tokenize, 1, 2, workers, 1))
    for skip in (1, 3):
        assert _items(_stream(shared, tokenize, 1, 2, workers, 1, skip=skip)) == full[skip:]


def test_shard_for_world_size_cuts_even_shards(uneven_shards, tmp_path):
    """--for-world-size 2 with 2 loader workers: the train split in 4 evenly filled shards (47 -> 12,12,11,12)."""
    from mwc_dist import cli

    out = tmp_path / "shards"
    assert (
        cli.main(
            [
                "shard",
                "--source",
                str(uneven_shards.parent),
                "--out",
                str(out),
                "--workers",
                "1",
                "--quiet",
                "--for-world-size",
                "2",
                "data.num_workers=2",
            ]
        )
        == 0
    )
    counts = load_shard_set(DataConfig(shard_dir=str(out)), "train").counts
    assert len(counts) == 4 and sum(counts) == 47 and max(counts) - min(counts) <= 1
