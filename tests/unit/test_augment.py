"""augment.* and train.spec_augment by what they do to real shards: the length change of speed perturbation, the
SNR of added noise (measured), the bands SpecAugment masks; seeded, and absent from evaluation batches."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from mwc_dist.audio.augment import Augment, add_noise, speed_perturb
from mwc_dist.config import AugmentConfig, DataConfig
from mwc_dist.data.stream import Tokenize, TrainStream, collate, eval_batches, load_shard_set, tar_samples
from mwc_dist.models.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    """Two noises as a user would bring them: white noise (WAV, 8 kHz) and brown noise (FLAC, 16 kHz)."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    sf.write(folder / "white.wav", 0.3 * rng.standard_normal(8000 * 3).astype(np.float32), 8000)
    brown = np.cumsum(rng.standard_normal(16000 * 4))
    sf.write(folder / "brown.flac", (0.5 * brown / np.abs(brown).max()).astype(np.float32), 16000)
    return folder


@pytest.fixture(scope="module")
def shards(demo_shards):
    return load_shard_set(DataConfig(shard_dir=str(demo_shards)), "train")


def _stream(shards, augment, epoch=0):
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe")
    return TrainStream(
        shards, tokenize, batch_size=4, seed=7, epoch=epoch, rank=0, world_size=1, num_workers=1,
        shuffle_buffer=1, bucket_size=2, max_samples=160000, augment=augment,
    )  # fmt: skip


def _clean(shards) -> dict[str, np.ndarray]:
    from mwc_dist.data.stream import decode_flac

    return {s["__key__"]: decode_flac(s["flac"]) for s in tar_samples(shards.urls)}


def test_speed_perturbation_changes_the_length_by_the_planned_factor(shards):
    augment = Augment(AugmentConfig(speed_factors=[0.9, 1.1]), seed=7, max_seconds=10)
    clean = _clean(shards)
    batches = [b for b in _stream(shards, augment) if b is not None]
    speeds = [s for b in batches for s in b["speeds"]]
    assert set(speeds) == {0.9, 1.1}  # both drawn (46 samples)
    for batch in batches:
        for key, speed, length in zip(batch["keys"], batch["speeds"], batch["audio_lengths"].tolist()):
            assert length == pytest.approx(len(clean[key]) / speed, abs=2)
            assert batch["snr_db"] == [None] * len(batch["keys"])
        durations = [n / 16000 for n in batch["audio_lengths"].tolist()]
        assert batch["audio"].dtype == torch.float32 and durations == sorted(durations)  # bucketed by new length
    again = [s for b in _stream(shards, augment) if b is not None for s in b["speeds"]]
    other_epoch = [s for b in _stream(shards, augment, epoch=1) if b is not None for s in b["speeds"]]
    assert again == speeds and other_epoch != speeds  # seeded per sample and epoch


def test_a_slowed_clip_never_passes_the_window():
    augment = Augment(AugmentConfig(speed_factors=[0.9]), seed=0, max_seconds=10)
    assert augment.plan("k", 0, duration=9.5).speed == 1.0 and augment.plan("k", 0, duration=8.0).speed == 0.9
    assert len(speed_perturb(np.ones(16000, dtype=np.float32), 0.9)) == pytest.approx(16000 / 0.9, abs=1)


def test_noise_is_added_at_the_planned_snr(shards, noise_dir):
    augment = Augment(AugmentConfig(noise_dir=str(noise_dir), noise_prob=0.5, snr_db_min=3, snr_db_max=12), 7, 10)
    assert augment.num_noise == 2
    clean = _clean(shards)
    noisy = 0
    for batch in (b for b in _stream(shards, augment) if b is not None):
        for i, (key, snr) in enumerate(zip(batch["keys"], batch["snr_db"])):
            wave = batch["audio"][i, : batch["audio_lengths"][i]].numpy().astype(np.float64)
            if snr is None:
                assert np.array_equal(wave, clean[key])
                continue
            noisy += 1
            residual = wave - clean[key]
            measured = 10 * np.log10(np.mean(clean[key].astype(np.float64) ** 2) / np.mean(residual**2))
            assert 3 <= snr <= 12 and measured == pytest.approx(snr, abs=0.05)
    assert 10 <= noisy <= 36  # about half of 46


def test_add_noise_tiles_a_short_noise():
    wave = np.sin(np.arange(48000) / 10).astype(np.float32)
    out = add_noise(wave, np.random.default_rng(1).standard_normal(1000), snr_db=0.0, offset=0.5)
    assert len(out) == len(wave) and np.mean((out - wave) ** 2) == pytest.approx(np.mean(wave**2), rel=1e-3)


def test_evaluation_batches_are_never_augmented(demo_shards):
    shards = load_shard_set(DataConfig(shard_dir=str(demo_shards)), "validation")
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe")
    batch = next(eval_batches(shards, tokenize, batch_size=4, rank=0, world_size=1, max_samples=160000))
    samples = list(tar_samples(shards.urls))[:4]
    assert torch.equal(batch["audio"], collate(samples, tokenize, 160000)["audio"]) and "speeds" not in batch


def test_spec_augment_masks_bands_in_training_only():
    from mwc_dist.audio.features import SpecAugment

    torch.manual_seed(0)
    spec = SpecAugment()
    features = torch.ones(3, 80, 1000)
    masked = spec(features)
    for f in masked:
        rows = (f == 0).all(dim=1)  # whole frequency bands zeroed
        cols = (f == 0).all(dim=0)  # whole time spans zeroed
        assert 0 < int(rows.sum()) <= 2 * 27 and 0 < int(cols.sum()) <= 2 * 100
        assert int((f == 0).sum()) == int(rows.sum()) * 1000 + int(cols.sum()) * 80 - int(rows.sum() * cols.sum())
    assert not torch.equal(masked[0], masked[1])  # independent masks per example
    assert torch.equal(spec.eval()(features), features)


def test_train_spec_augment_key_masks_the_training_features(tmp_path, demo_shards):
    from tiny_run import trainer

    t = trainer(demo_shards, tmp_path / "run", "train.spec_augment=true", "train.max_steps=1", "train.eval_steps=-1")
    audio = next(b for b in t.data.stream(0) if b is not None)["audio"]
    plain = t.features.log_mel(audio)
    augmented, _ = t.features(audio)
    assert t.features.spec_augment is not None and not torch.equal(plain, augmented)
    assert bool((augmented == 0).all(dim=2).any()) and not bool((plain == 0).all(dim=2).any())  # a band masked
    json.dumps(t.cfg.to_dict()["augment"])  # the section is part of the written config


def test_training_with_speed_and_noise_through_loader_workers(tmp_path, demo_shards, noise_dir):
    """The augment section through real DataLoader worker processes (each loads the noise itself)."""
    from tiny_run import trainer

    t = trainer(
        demo_shards,
        tmp_path / "run",
        "data.num_workers=2",
        "augment.speed_factors=[0.9,1.1]",
        f"augment.noise_dir={noise_dir}",
        "train.max_steps=3",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=no",
    )
    assert t.data.augment is not None and t.data.augment.num_noise == 2
    t.train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(rows) == 3 and all(np.isfinite(r["loss"]) for r in rows)
    written = (tmp_path / "run" / "config.yaml").read_text()
    assert "speed_factors:\n  - 0.9\n  - 1.1" in written and str(noise_dir) in written
