"""Write a waveform in any of the supported formats (demo corpus, tests, shard payloads).

soundfile writes WAV, FLAC, OGG/Vorbis, Opus and MP3; PyAV writes M4A (AAC in MP4), raw ADTS AAC and
WMA (wmav2 in ASF). Opus only takes 8/12/16/24/48 kHz, so other rates are resampled to 48 kHz.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

# extension -> (writer, container, codec/subtype)
FORMATS = {
    "wav": ("soundfile", "WAV", "PCM_16"),
    "flac": ("soundfile", "FLAC", "PCM_16"),
    "ogg": ("soundfile", "OGG", "VORBIS"),
    "opus": ("soundfile", "OGG", "OPUS"),
    "mp3": ("soundfile", "MP3", "MPEG_LAYER_III"),
    "m4a": ("pyav", "ipod", "aac"),
    "aac": ("pyav", "adts", "aac"),
    "wma": ("pyav", "asf", "wmav2"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def _as_2d(wave: np.ndarray, channels: int) -> np.ndarray:
    """[T] or [T, C] -> [T, channels] float32 (mono is repeated to fill channels)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[:, None]
    if wave.shape[1] != channels:
        wave = np.repeat(wave[:, :1], channels, axis=1)
    return np.ascontiguousarray(np.clip(wave, -1.0, 1.0))


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """[T, C] at ``rate`` -> [T', C] at ``target`` (torchaudio's windowed-sinc resampler)."""
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave.T)), rate, target).numpy().T


def encode_bytes(wave: np.ndarray, rate: int, fmt: str, channels: int = 1, subtype: str | None = None) -> bytes:
    """Encode ``wave`` ([T] or [T, C], float in [-1, 1]) as a file of format ``fmt`` (an extension)."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot write format {fmt!r}; choose one of {', '.join(FORMATS)}")
    writer, container, codec = FORMATS[fmt]
    data = _as_2d(wave, channels)
    if fmt == "opus" and rate not in OPUS_RATES:
        data, rate = resample(data, rate, 48000), 48000
    buf = io.BytesIO()
    if writer == "soundfile":
        import soundfile as sf

        sf.write(buf, data, rate, format=container, subtype=subtype or codec)
        return buf.getvalue()
    import av

    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = 64000 * channels  # wmav2 refuses to open without one
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def write_audio(path: str | Path, wave: np.ndarray, rate: int, channels: int = 1, fmt: str | None = None) -> Path:
    """Write ``wave`` to ``path`` in the format its extension names (or ``fmt``)."""
    path = Path(path)
    path.write_bytes(encode_bytes(wave, rate, fmt or path.suffix, channels))
    return path
