"""Training-time augmentation on the loader's workers: speed perturbation and additive noise (augment.*).

Every decision is drawn from a generator seeded by (train.seed, epoch, sample key), so a sample gets the same
speed and noise in an epoch whichever rank, worker or resume reads it, and new ones the next epoch. Nothing
here touches evaluation data (evaluate.py never passes an ``Augment``). SpecAugment, on the log-mel features,
is audio/features.py (train.spec_augment).

- Speed: the clip is resampled by a factor drawn from ``augment.speed_factors`` (0.9 plays 11 % longer and
  lower, as Kaldi's and Lhotse's speed perturbation). The loader buckets by the new duration; a factor that
  would push a clip past the model's window is replaced by 1.0, so no transcript loses its audio.
- Noise: with probability ``augment.noise_prob``, a random stretch of a clip from ``augment.noise_dir`` (any
  audio format, decoded once per worker and kept in memory) is added at an SNR drawn uniformly from
  [``snr_db_min``, ``snr_db_max``], measured on the whole clip.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mwc_dist.audio.decode import AUDIO_FORMATS, SAMPLE_RATE


@dataclass
class AugmentConfig:
    """Training-time augmentation on the loader, seeded per sample and epoch; never on evaluation (audio/augment.py)."""

    speed_factors: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; [] = off
    noise_dir: str | None = None  # a folder of noise recordings (any audio format); null = no noise
    noise_prob: float = 0.5  # share of samples that get noise
    snr_db_min: float = 5.0  # the noise's signal-to-noise ratio, drawn per sample between these (dB)
    snr_db_max: float = 20.0  # (see snr_db_min)

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key."""
        if any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            problems.append(
                f"augment.speed_factors: each between 0.5 and 2.0 (e.g. [0.9, 1.0, 1.1]); got {self.speed_factors}"
            )
        if not 0.0 <= self.noise_prob <= 1.0:
            problems.append(f"augment.noise_prob: must be in [0, 1]; got {self.noise_prob}")
        if self.snr_db_min > self.snr_db_max:
            problems.append(
                f"augment.snr_db_min ({self.snr_db_min}) must not exceed augment.snr_db_max ({self.snr_db_max})"
            )
        if self.noise_dir and not Path(self.noise_dir).is_dir():
            problems.append(f"augment.noise_dir: {self.noise_dir} is not a folder (of noise recordings)")


@dataclass(frozen=True)
class Plan:
    """What happens to one sample in one epoch."""

    speed: float = 1.0
    noise: int | None = None  # index into the noise bank
    noise_offset: float = 0.0  # where in the noise clip to start, as a fraction of its length
    snr_db: float | None = None


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster: resampled so that it has ~len/factor samples at the same rate."""
    import torch
    import torchaudio.functional as AF

    if factor == 1.0:
        return wave
    orig = round(SAMPLE_RATE * factor)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), orig, SAMPLE_RATE).numpy()


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float, offset: float = 0.0) -> np.ndarray:
    """``wave`` + ``noise`` (tiled to its length from ``offset``) scaled to ``snr_db`` over the whole clip."""
    start = int(offset * len(noise))
    reps = -(-(start + len(wave)) // len(noise))
    piece = np.tile(noise, reps)[start : start + len(wave)].astype(np.float64)
    signal_power, noise_power = float(np.mean(wave.astype(np.float64) ** 2)), float(np.mean(piece**2))
    if signal_power == 0.0 or noise_power == 0.0:
        return wave
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (wave + scale * piece).astype(np.float32)


def load_noise(folder: str | Path) -> list[np.ndarray]:
    """Every audio file under ``folder`` as 16 kHz mono float32 (peak-normalised); a clear error when none."""
    from mwc_dist.audio.decode import AudioError, load_audio

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower().lstrip(".") in AUDIO_FORMATS)
    bank = []
    for path in files:
        try:
            bank.append(load_audio(path))
        except AudioError as exc:
            raise ValueError(f"augment.noise_dir: {path} cannot be used as noise ({exc}); remove it") from None
    if not bank:
        raise ValueError(f"augment.noise_dir: no audio files ({', '.join(AUDIO_FORMATS)}) under {folder}")
    return bank


class Augment:
    """Plans and applies augment.* for the training stream; the noise bank loads on first use in each worker."""

    def __init__(self, a: AugmentConfig, seed: int, max_seconds: float):
        self.cfg, self.seed, self.max_seconds = a, seed, max_seconds
        self._noise: list[np.ndarray] | None = None
        self.num_noise = len(self.noise()) if a.noise_dir else 0  # fail at setup, not in a worker

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.speed_factors) or bool(self.cfg.noise_dir)

    def noise(self) -> list[np.ndarray]:
        if self._noise is None:
            self._noise = load_noise(self.cfg.noise_dir) if self.cfg.noise_dir else []
        return self._noise

    def plan(self, key: str, epoch: int | str, duration: float) -> Plan:
        """``epoch``: the epoch, or for an endless stream (data/mix.py) which draw of the stream this is."""
        rng = random.Random(f"{self.seed}-{epoch}-{key}")
        speed = rng.choice(self.cfg.speed_factors) if self.cfg.speed_factors else 1.0
        if duration / speed > self.max_seconds:  # slowed past the window: keep the clip whole instead
            speed = 1.0
        if not self.num_noise or rng.random() >= self.cfg.noise_prob:
            return Plan(speed)
        snr = rng.uniform(self.cfg.snr_db_min, self.cfg.snr_db_max)
        return Plan(speed, rng.randrange(self.num_noise), rng.random(), snr)

    def apply(self, wave: np.ndarray, plan: Plan) -> np.ndarray:
        wave = speed_perturb(wave, plan.speed)
        if plan.noise is not None:
            wave = add_noise(wave, self.noise()[plan.noise], plan.snr_db, plan.noise_offset)
        return wave

    def __getstate__(self):  # DataLoader workers: ship the config, not the decoded noise
        return {**self.__dict__, "_noise": None}


def build_augment(a: AugmentConfig, seed: int, max_seconds: float) -> Augment | None:
    """The training stream's augmentation, or None when augment.* asks for none (the loader then ships int16)."""
    augment = Augment(a, seed, max_seconds)
    return augment if augment.enabled else None
