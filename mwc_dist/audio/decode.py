"""Decode any audio file (WAV, MP3, FLAC, OGG Vorbis/Opus, M4A, AAC, WMA) to mono float32 at 16 kHz.

soundfile (libsndfile) decodes WAV, FLAC, OGG and MP3; PyAV (its bundled FFmpeg) decodes M4A, AAC,
WMA and anything else. The format is sniffed from the first bytes, never trusted from the extension.
The decoded length is checked against what the container claims (RIFF data size, FLAC STREAMINFO,
the MP3 Xing header, the MP4/ASF header duration, the Ogg end-of-stream flag) so truncated files are
caught even where a decoder would silently return partial audio.

Every failure raises an ``AudioError`` subclass whose ``reason`` is a short stable code (used in
``quarantine.jsonl``) and whose message names the file.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

AUDIO_FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "wma"]  # what every reader here decodes
SAMPLE_RATE = 16000  # Whisper's; the one home of the number (features, stream, inference, config use it)
PEAK_TARGET = 10 ** (-1 / 20)  # -1 dBFS
SILENCE_PEAK = 1e-4  # -80 dBFS: quieter than this is treated as no signal
# A decoded stream may fall short of the claimed duration by codec padding; more than this is truncation.
TRUNCATION_TOLERANCE_S = 0.1
TRUNCATION_TOLERANCE_FRAC = 0.02

AudioInput = str | os.PathLike | bytes


# -------------------------------------------------------------------------------------------- errors
class AudioError(Exception):
    """A file that cannot become a training clip. ``reason`` is a stable code for the quarantine report."""

    reason = "unreadable"

    def __init__(self, source: str, detail: str):
        self.source = source
        self.detail = detail
        super().__init__(f"{source}: {detail}")


class EmptyFileError(AudioError):
    reason = "empty_file"


class NotAudioError(AudioError):
    reason = "not_audio"


class CorruptAudioError(AudioError):
    reason = "unreadable"


class TruncatedAudioError(AudioError):
    reason = "truncated"


class NoSignalError(AudioError):
    reason = "silent"


class NonFiniteAudioError(AudioError):
    reason = "non_finite"


class TooShortError(AudioError):
    reason = "too_short"


class TooLongError(AudioError):
    reason = "too_long"


# ------------------------------------------------------------------------------------------ sniffing
def sniff_format(head: bytes) -> str | None:
    """Container from the first bytes: wav, flac, ogg, mp3, aac (ADTS), mp4, asf, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:8] == bytes.fromhex("3026b2758e66cf11"):
        return "asf"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        # MPEG audio frame sync; ADTS (AAC) has layer bits 00, MP3 has layer III (01)
        return "aac" if (head[1] & 0xF6) == 0xF0 else "mp3"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte char cut at the end of the window is still text
        if exc.start < len(head) - 4:
            return False
    return sum(b < 9 or 13 < b < 32 for b in head) == 0


# Programs that write WAV to a pipe (espeak-ng, sox, ffmpeg) cannot seek back to fill in the sizes: they
# write 0, 0xFFFFFFFF or 0x7FFFF000 ("as long as possible"). Such a size says nothing about truncation.
STREAMING_SIZE = 0x7FFFF000


def _riff_expected_frames(head: bytes) -> int | None:
    """Frames the RIFF header's data chunk claims, or None for streaming headers."""
    pos, block_align = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"fmt " and pos + 24 <= len(head):
            block_align = struct.unpack("<H", head[pos + 20 : pos + 22])[0]
        if chunk == b"data":
            if size == 0 or size >= STREAMING_SIZE or not block_align:  # written before the length was known
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _ogg_has_end_of_stream(data: BinaryIO) -> bool:
    """True when the last Ogg page carries the end-of-stream flag (a cut file lacks it)."""
    data.seek(0, io.SEEK_END)
    size = data.tell()
    data.seek(max(0, size - 65536))
    tail = data.read()
    last = tail.rfind(b"OggS")
    return last >= 0 and last + 5 < len(tail) and bool(tail[last + 5] & 0x04)


# ------------------------------------------------------------------------------------------ decoding
@dataclass
class Decoded:
    samples: np.ndarray  # [T, C] float32 at source_rate
    source_rate: int
    claimed_seconds: float | None  # what the container says, when it says it reliably


def _open(audio: AudioInput) -> BinaryIO:
    if isinstance(audio, (bytes, bytearray)):
        return io.BytesIO(audio)
    return open(audio, "rb")


def _decode_soundfile(data: BinaryIO, fmt: str | None, head: bytes, max_seconds: float, name: str) -> Decoded:
    import soundfile as sf

    data.seek(0)
    info = sf.info(data)
    claimed = None
    if fmt == "wav":
        frames = _riff_expected_frames(head)
        claimed = frames / info.samplerate if frames else None
    elif fmt in ("flac", "mp3") and info.frames > 0:
        claimed = info.frames / info.samplerate
    if info.frames > 0 and info.frames / info.samplerate > max_seconds:
        raise TooLongError(name, f"{info.frames / info.samplerate:.1f} s is over the {max_seconds:g} s limit")
    if fmt == "ogg" and not _ogg_has_end_of_stream(data):
        raise TruncatedAudioError(name, "the Ogg stream has no end-of-stream page (file cut short)")
    data.seek(0)
    samples, rate = sf.read(data, dtype="float32", always_2d=True)
    return Decoded(samples, rate, claimed)


def _decode_pyav(data: BinaryIO, fmt: str | None, max_seconds: float, name: str) -> Decoded:
    import av

    data.seek(0)
    with av.open(data, mode="r") as container:
        if not container.streams.audio:
            raise NotAudioError(name, "the container has no audio stream")
        stream = container.streams.audio[0]
        claimed = container.duration / 1e6 if container.duration and fmt in ("mp4", "asf") else None
        if claimed and claimed > max_seconds:
            raise TooLongError(name, f"{claimed:.1f} s is over the {max_seconds:g} s limit")
        resampler = av.AudioResampler(format="fltp")  # keep rate and channels; we downmix ourselves
        chunks, total, rate = [], 0, stream.rate
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())  # [C, S]
                    total += out.samples
                    rate = out.sample_rate
                if total / rate > max_seconds + 1.0:
                    raise TooLongError(name, f"more than {max_seconds:g} s of audio")
        except av.FFmpegError as exc:
            if not chunks:
                raise
            # the body stops being decodable part-way through: a cut or damaged file
            raise TruncatedAudioError(name, f"decoding failed after {total / rate:.2f} s ({exc})") from None
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return Decoded(np.zeros((0, 1), np.float32), rate or SAMPLE_RATE, claimed)
    return Decoded(np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False), rate, claimed)


def decode(audio: AudioInput, name: str | None = None, max_seconds: float = float("inf")) -> Decoded:
    """Decode to float32 samples [T, C] at the file's own rate, checking for truncation."""
    name = name or (str(audio) if not isinstance(audio, (bytes, bytearray)) else "<bytes>")
    try:
        data = _open(audio)
    except FileNotFoundError:
        raise CorruptAudioError(name, "file does not exist") from None
    except OSError as exc:
        raise CorruptAudioError(name, f"cannot open: {exc.strerror or exc}") from None
    with data:
        head = data.read(4096)
        if not head:
            raise EmptyFileError(name, "the file is empty (0 bytes)")
        fmt = sniff_format(head)
        if fmt is None and _looks_like_text(head):
            raise NotAudioError(name, "the content is text, not audio (wrong extension?)")
        errors: list[str] = []
        result = None
        if fmt in (None, "wav", "flac", "ogg", "mp3"):
            try:
                result = _decode_soundfile(data, fmt, head, max_seconds, name)
            except AudioError:
                raise
            except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError on bad data
                errors.append(f"soundfile: {exc}")
        if result is None:
            try:
                result = _decode_pyav(data, fmt, max_seconds, name)
            except AudioError:
                raise
            except Exception as exc:  # PyAV raises InvalidDataError (a ValueError) and others
                errors.append(f"pyav: {exc}")
        if result is None:
            kind = f"{fmt} " if fmt else ""
            raise CorruptAudioError(name, f"cannot decode this {kind}file ({'; '.join(errors)})")
    seconds = len(result.samples) / result.source_rate
    if result.claimed_seconds:
        shortfall = result.claimed_seconds - seconds
        if shortfall > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRAC * result.claimed_seconds):
            raise TruncatedAudioError(
                name, f"decoded {seconds:.2f} s but the header claims {result.claimed_seconds:.2f} s (file cut short)"
            )
    return result


def to_mono_16k(samples: np.ndarray, source_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[T, C] at any rate -> [T'] float32 mono at target_rate (channel mean, torchaudio resampling)."""
    import torch
    import torchaudio.functional as AF

    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if source_rate == target_rate:
        return np.ascontiguousarray(mono, dtype=np.float32)
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    return AF.resample(wave, source_rate, target_rate).numpy()


def load_audio(
    audio: AudioInput,
    name: str | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
    normalize: bool = True,
    min_seconds: float = 0.0,
    max_seconds: float = float("inf"),
) -> np.ndarray:
    """Decode, check and convert one file to a mono float32 waveform at ``sample_rate``.

    Raises an ``AudioError`` subclass (with a quarantine ``reason``) for anything that cannot be a clip.
    """
    name = name or (str(audio) if not isinstance(audio, (bytes, bytearray)) else "<bytes>")
    wave = load_mono(audio, name, sample_rate=sample_rate, max_seconds=max_seconds)
    return check_clip(
        wave, name, sample_rate=sample_rate, normalize=normalize, min_seconds=min_seconds, max_seconds=max_seconds
    )


def load_mono(
    audio: AudioInput, name: str, *, sample_rate: int = SAMPLE_RATE, max_seconds: float = float("inf")
) -> np.ndarray:
    """Decode one file whole to mono float32 at ``sample_rate``, unchecked for length and level (a file whose
    spans are cut later: each span is then checked with ``check_clip``)."""
    decoded = decode(audio, name, max_seconds=max_seconds)
    if decoded.samples.size == 0:
        raise CorruptAudioError(name, "decoded to zero samples")
    if not np.isfinite(decoded.samples).all():
        raise NonFiniteAudioError(name, "contains NaN or infinite samples")
    return to_mono_16k(decoded.samples, decoded.source_rate, sample_rate)


def check_clip(
    wave: np.ndarray,
    name: str,
    *,
    sample_rate: int = SAMPLE_RATE,
    normalize: bool = True,
    min_seconds: float = 0.0,
    max_seconds: float = float("inf"),
) -> np.ndarray:
    """A training clip's checks (duration limits, silence) and peak normalisation; AudioError when it fails."""
    seconds = len(wave) / sample_rate
    if seconds > max_seconds:
        raise TooLongError(name, f"{seconds:.2f} s is over the {max_seconds:g} s limit (data.max_duration_seconds)")
    if seconds < min_seconds:
        raise TooShortError(name, f"{seconds:.2f} s is under the {min_seconds:g} s limit (data.min_duration_seconds)")
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak < SILENCE_PEAK:
        raise NoSignalError(name, f"no signal (peak {peak:.1e}, below -80 dBFS)")
    if normalize:
        wave = wave * (PEAK_TARGET / peak)
    return wave.astype(np.float32, copy=False)
