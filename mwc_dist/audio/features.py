"""Whisper's log-mel spectrogram as a torch module, computed on the training device.

The loader ships padded 16 kHz waveforms and their lengths; ``LogMel`` pads (or cuts) them to the
model's window exactly as ``WhisperFeatureExtractor`` does, and returns what it returns (to ~1e-5):
STFT (Hann 400, hop 160) -> power -> Slaney mel filters (transformers.audio_utils.mel_filter_bank)
-> log10 -> clamp to (max - 8) -> (x + 4) / 4. ``SpecAugment`` masks frequency and time bands
(torchaudio's masking transforms) during training only.
"""

from __future__ import annotations

import torch
from torch import nn

from mwc_dist.audio.decode import SAMPLE_RATE

N_FFT, HOP = 400, 160


class LogMel(nn.Module):
    """[B, N] waveforms -> [B, n_mels, window_frames] Whisper log-mel features."""

    def __init__(self, n_mels: int = 80, window_seconds: float = 30.0):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("filters", torch.from_numpy(filters).float().T.contiguous(), persistent=False)  # [M, F]
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.num_samples = int(round(window_seconds * SAMPLE_RATE))

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Only the frames that see real audio are computed; the rest are filled with what zero padding gives.

        A batch is padded to its longest clip (``[B, N]``); the frames of the window past ``N`` see only
        zeros (a frame centred on sample ``t * 160`` spans ``t * 160 - 200 .. t * 160 + 200``), so their
        mel energy is 0 and their log is the clamp floor ``log10(1e-10)``. Identical to computing all
        3000 frames over the zero-padded window, at ``N / 30 s`` of the cost.
        """
        audio = audio[:, : self.num_samples]
        audio = audio.float() / 32768.0 if audio.dtype == torch.int16 else audio.float()  # 16-bit PCM from FLAC shards
        frames = self.num_samples // HOP
        # the smallest hop-aligned length whose last N_FFT/2 samples are zeros (so reflect padding sees zeros)
        computed = min(frames, -(-(audio.shape[1] + N_FFT // 2) // HOP))
        length = self.num_samples if computed == frames else computed * HOP
        audio = nn.functional.pad(audio, (0, length - audio.shape[1]))
        stft = torch.stft(audio, N_FFT, HOP, window=self.window, return_complex=True)[..., :computed]  # [B, F, T']
        power = stft.real.square().add_(stft.imag.square())  # |z|^2 without the square root: 4x faster than abs()**2
        mel = self.filters @ power  # [B, M, T']
        log_spec = torch.clamp(mel, min=1e-10).log10()
        if computed < frames:
            log_spec = nn.functional.pad(log_spec, (0, frames - computed), value=-10.0)  # log10(1e-10)
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0


class SpecAugment(nn.Module):
    """Frequency and time masking (SpecAugment's LD policy without time warping); identity in eval mode."""

    def __init__(self, freq_mask: int = 27, time_mask: int = 100, num_freq_masks: int = 2, num_time_masks: int = 2):
        super().__init__()
        import torchaudio.transforms as T

        self.masks = nn.ModuleList(
            [T.FrequencyMasking(freq_mask, iid_masks=True) for _ in range(num_freq_masks)]
            + [T.TimeMasking(time_mask, iid_masks=True) for _ in range(num_time_masks)]
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        for mask in self.masks:
            features = mask(features.unsqueeze(1)).squeeze(1)  # iid masks want [B, C, F, T]
        return features


class TrainFeatures(nn.Module):
    """[B, N] waveforms -> (student features, teacher features or None), on the training device.

    ``teacher_log_mel``: the same audio in a teacher's longer window, for a distilled student with a
    shorter one whose teacher runs its own encoder. ``spec_augment``: train.spec_augment.
    """

    def __init__(self, log_mel: LogMel, teacher_log_mel: LogMel | None = None, spec_augment: bool = False):
        super().__init__()
        self.log_mel, self.teacher_log_mel = log_mel, teacher_log_mel
        self.spec_augment = SpecAugment() if spec_augment else None

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.log_mel(audio)  # [B, n_mels, frames]
        if self.spec_augment is not None:
            features = self.spec_augment(features)
        teacher_features = self.teacher_log_mel(audio) if self.teacher_log_mel is not None else None
        return features, teacher_features
