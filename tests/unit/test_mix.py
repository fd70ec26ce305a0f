"""Endless streams (data.resampled) and weighted mixing (data.mix_*): proportions, temperature, exact resume,
and a training run on a mix."""

import json

import pytest

from mwc_dist.config import ConfigError, DataConfig, load_config
from mwc_dist.data.mix import ResampledStream, mix_probabilities
from mwc_dist.data.stream import Tokenize, build_train_loader, load_shard_set
from mwc_dist.models.tokenizer import load_tokenizer


def test_mix_probabilities_weights_sizes_and_temperature():
    assert mix_probabilities([46, 8], [], 1.0) == pytest.approx([46 / 54, 8 / 54])
    assert mix_probabilities([46, 8], [1, 3], 1.0) == pytest.approx([0.25, 0.75])
    assert mix_probabilities([900, 100], [], 2.0) == pytest.approx([30 / 40, 10 / 40])  # sqrt: 30 vs 10
    assert mix_probabilities([900, 100], [], 1e9) == pytest.approx([0.5, 0.5], abs=1e-6)


def _stream(demo_shards, probabilities, **kw):
    sets = [load_shard_set(DataConfig(shard_dir=str(demo_shards)), split) for split in ("train", "validation")]
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe")
    options = dict(batch_size=8, seed=3, rank=0, num_workers=1, shuffle_buffer=20, bucket_size=2, max_samples=160000)
    return ResampledStream(sets, probabilities, tokenize, **(options | kw))


def test_sampled_proportions_follow_the_weights(demo_shards):
    """The 8-sample validation set drawn 3x as often as the 46-sample train set: 75 % of 480 draws (sd 2 %)."""
    batches = iter(_stream(demo_shards, mix_probabilities([46, 8], [1, 3], 1.0)))
    sources = [s for _ in range(60) for s in next(batches)["sources"]]
    assert len(sources) == 480 and sum(sources) / 480 == pytest.approx(0.75, abs=0.07)


def test_endless_stream_resumes_exactly_and_differs_by_rank(demo_shards):
    def keys(stream, n):
        loader = iter(build_train_loader(stream))
        return [next(loader)["keys"] for _ in range(n)]

    straight = keys(_stream(demo_shards, [0.5, 0.5], num_workers=2), 10)
    resumed = keys(_stream(demo_shards, [0.5, 0.5], num_workers=2, skip_items=4), 6)
    assert resumed == straight[4:]
    assert keys(_stream(demo_shards, [0.5, 0.5], num_workers=2, rank=1), 4) != straight[:4]


def test_endless_stream_with_timestamps_resumes_exactly_and_draws_per_draw(demo_shards):
    """data.timestamp_probability in an endless stream: the same labels after a resume; a clip drawn twice draws
    its timestamps anew each time."""

    def batches(n, **kw):
        loader = iter(build_train_loader(_stream(demo_shards, [1.0, 0.0], num_workers=2, **kw)))
        return [next(loader) for _ in range(n)]

    opts = dict(timestamp_probability=0.5)
    straight = batches(14, **opts)
    resumed = batches(8, skip_items=6, **opts)
    assert [b["labels"].tolist() for b in resumed] == [b["labels"].tolist() for b in straight[6:]]
    timed: dict[str, set] = {}
    for b in straight:
        for key, row in zip(b["keys"], b["labels"].tolist()):
            timed.setdefault(key, set()).add(50363 not in row)  # no <|notimestamps|>: trained with timestamps
    assert any(len(v) == 2 for v in timed.values())  # 112 draws of 46 clips: some drawn both ways


def test_training_on_a_mix_runs_max_steps_with_nothing_left_out(tmp_path, demo_shards, capsys):
    from tiny_run import trainer

    t = trainer(
        demo_shards,
        tmp_path / "run",
        f"data.mix_shard_dirs=[{demo_shards},{demo_shards}]",
        "data.mix_weights=[1,3]",
        "train.max_steps=3",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=no",
    )
    assert t.data.endless and t.data.probabilities == pytest.approx([0.25, 0.75])
    summary = t.train()
    assert summary["steps"] == 3
    assert "endless stream, shards drawn with replacement (6 shards p=0.250, 6 shards p=0.750): 3 steps" in (
        capsys.readouterr().out
    )
    assert json.loads((tmp_path / "run" / "run_summary.json").read_text())["samples_left_out_per_epoch"] == {"0": 0}


def test_an_endless_stream_needs_max_steps():
    with pytest.raises(ConfigError, match=r"data\.resampled / data\.mix_shard_dirs: .*set train\.max_steps"):
        load_config(None, ["data.resampled=true"])
    with pytest.raises(ConfigError, match=r"data\.mix_weights: one weight per folder"):
        load_config(None, ["data.mix_shard_dirs=[a,b]", "data.mix_weights=[1]", "train.max_steps=5"])


def test_a_resumed_endless_run_ends_with_the_same_weights(tmp_path, demo_shards):
    """Straight to step 4 vs resumed from its checkpoint-2 (loader position, RNG, optimizer): the same weights."""
    import shutil

    from tiny_run import trainer
    from transformers import WhisperForConditionalGeneration

    from mwc_dist.final import param_digest

    settings = [
        "data.resampled=true",
        "data.num_workers=2",
        "train.max_steps=4",
        "train.eval_steps=-1",
        "train.learning_rate=1e-3",
        "checkpoint.save_strategy=steps",
        "checkpoint.save_steps=2",
        "checkpoint.load_best_model_at_end=false",
    ]
    trainer(demo_shards, tmp_path / "straight", *settings).train()
    shutil.copytree(tmp_path / "straight" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    trainer(demo_shards, tmp_path / "resumed", *settings, "checkpoint.resume_from_checkpoint=latest").train()
    digests = [
        param_digest(WhisperForConditionalGeneration.from_pretrained(tmp_path / run / "final"))
        for run in ("straight", "resumed")
    ]
    assert digests[0] == digests[1]
