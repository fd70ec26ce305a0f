"""data.pack_to_window: greedy, deterministic packs within the window, one language and the decoder; the loader's
plan (steps known before the first batch) and exact resume hold with packing; a training run on packs."""

import json

import numpy as np

from mwc_dist.config import DataConfig
from mwc_dist.data.pack import pack_samples
from mwc_dist.data.stream import Tokenize, TrainStream, decode_flac, load_shard_set, tar_samples
from mwc_dist.models.tokenizer import load_tokenizer


def _standin(key, seconds, text="hola", language="es"):
    meta = {"key": key, "duration": seconds, "text": text, "language": language}
    return {"__key__": key, "json": json.dumps(meta).encode()}


def test_packs_are_greedy_within_window_language_and_decoder():
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe", max_tokens=448)
    clips = [_standin(f"k{i}", 3.0, f"frase {i}") for i in range(7)] + [_standin("en", 2.0, "hello", "en")]
    packs = [json.loads(p["json"]) for p in pack_samples(iter(clips), 10.0, tokenize)]
    assert [p["key"] for p in packs] == ["k0+k1+k2", "k3+k4+k5", "k6", "en"]
    assert packs[0]["text"] == "frase 0 frase 1 frase 2" and packs[0]["duration"] == 9.0
    tight = Tokenize(load_tokenizer(), "es", "transcribe", max_tokens=12)  # two such clips no longer fit
    long_text = [_standin(f"t{i}", 1.0, "uno dos tres cuatro") for i in range(3)]
    assert [len(json.loads(p["json"])["key"].split("+")) for p in pack_samples(iter(long_text), 10.0, tight)] == [
        1,
        1,
        1,
    ]


def test_packs_carry_each_clips_times_and_the_previous_packs_text():
    from mwc_dist.data.labels import LabelPlan, build_sequence

    tokenize = Tokenize(load_tokenizer(), "es", "transcribe", max_tokens=448)
    clips = [_standin(f"k{i}", 3.0 + i * 0.5, f"frase {i}") for i in range(5)]
    packs = [json.loads(p["json"]) for p in pack_samples(iter(clips), 10.0, tokenize)]
    assert [p["key"] for p in packs] == ["k0+k1", "k2+k3", "k4"]
    assert packs[0]["segments"] == [
        {"start": 0.0, "end": 3.0, "text": "frase 0"},
        {"start": 3.0, "end": 6.5, "text": "frase 1"},
    ]
    assert [p.get("prev_text", "") for p in packs] == ["", "frase 0 frase 1", "frase 2 frase 3"]
    inputs, labels = build_sequence(tokenize, packs[1], LabelPlan(timestamps=True, prompt=True))
    t0 = tokenize.timestamp_begin
    assert inputs[0] == tokenize.prev and [t - t0 for t in labels if t >= t0] == [0, 200, 200, 425]


def _stream(shards, rank=0, world_size=1, skip=0, workers=1):
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe", max_tokens=128)
    return TrainStream(
        shards, tokenize, batch_size=2, seed=5, epoch=0, rank=rank, world_size=world_size, num_workers=workers,
        shuffle_buffer=10, bucket_size=2, max_samples=160000, skip_items=skip, pack=True,
    )  # fmt: skip


def test_packed_batches_hold_their_members_audio_and_follow_the_plan(demo_shards):
    shards = load_shard_set(DataConfig(shard_dir=str(demo_shards)), "train").with_metas()
    clean = {s["__key__"]: decode_flac(s["flac"]) for s in tar_samples(shards.urls)}
    batches = [b for b in _stream(shards) if b is not None]
    assert len(batches) == _stream(shards).worker_batches(0)[0] > 0  # the plan counted the packs exactly
    members = 0
    for batch in batches:
        for i, key in enumerate(batch["keys"]):
            parts = key.split("+")
            members += len(parts)
            audio = batch["audio"][i, : batch["audio_lengths"][i]].numpy()
            assert np.array_equal(audio, np.concatenate([np.round(clean[k] * 32768).astype(np.int16) for k in parts]))
            assert len(audio) <= 160000
    assert members > 2 * len(batches)  # more than one clip per row on average
    for rank in range(2):  # on 2 ranks too, each rank's plan is what it yields
        real = sum(b is not None for b in _stream(shards, rank, 2))
        assert real == _stream(shards, rank, 2).worker_batches(rank)[0] > 0


def test_packed_stream_resumes_exactly(demo_shards):
    from mwc_dist.data.stream import build_train_loader

    shards = load_shard_set(DataConfig(shard_dir=str(demo_shards)), "train").with_metas()
    straight = [b and b["keys"] for b in build_train_loader(_stream(shards, workers=2))]
    resumed = [b and b["keys"] for b in build_train_loader(_stream(shards, workers=2, skip=3))]
    assert resumed == straight[3:]


def test_training_on_packs_counts_what_it_left_out(tmp_path, demo_shards):
    from tiny_run import trainer

    t = trainer(demo_shards, tmp_path / "run", "data.pack_to_window=true", "train.per_device_train_batch_size=2",
                "train.max_steps=2", "train.eval_steps=-1", "checkpoint.save_strategy=no")  # fmt: skip
    steps = t.data.steps_in_epoch(0)
    used = t.data.stream(0).used_samples(0, steps)
    assert 0 <= t.data.left_out(0) == 46 - used and used > 2 * steps  # packs carry several clips
    assert t.train()["steps"] == 2
