"""Each format, rate and channel count decodes to 16 kHz mono with the right duration; bad files fail by reason."""

import numpy as np
import pytest
import soundfile as sf

from mwc_dist.audio.decode import (
    AudioError,
    CorruptAudioError,
    EmptyFileError,
    NonFiniteAudioError,
    NotAudioError,
    TooLongError,
    TooShortError,
    TruncatedAudioError,
    load_audio,
    sniff_format,
)
from mwc_dist.audio.encode import FORMATS, resample, write_audio

# AAC and WMA encoders add priming/padding frames; MP3 and Opus a little too.
PADDING_S = {"m4a": 0.2, "aac": 0.2, "wma": 0.1, "mp3": 0.06, "opus": 0.03}


def _reference(speech):
    samples, rate = speech
    return resample(samples[:, None], rate, 16000)[:, 0]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_decodes_to_16k_mono(tmp_path, speech, fmt):
    samples, rate = speech
    path = write_audio(tmp_path / f"clip.{fmt}", samples, rate)
    wave = load_audio(path, normalize=False)
    assert wave.dtype == np.float32 and wave.ndim == 1
    expected = len(samples) / rate
    assert abs(len(wave) / 16000 - expected) <= PADDING_S.get(fmt, 0.002) + 1e-3
    ref = _reference(speech)
    if fmt in ("wav", "flac"):  # lossless (16-bit): the samples themselves match
        n = min(len(ref), len(wave))
        assert np.max(np.abs(ref[:n] - wave[:n])) < 2e-3
    # lossy: the energy envelope still follows the speech (20 ms frames)
    n = min(len(ref), len(wave)) // 320 * 320
    env_ref = np.sqrt((ref[:n].reshape(-1, 320) ** 2).mean(1))
    env = np.sqrt((wave[:n].reshape(-1, 320) ** 2).mean(1))
    shift = max(range(-20, 21), key=lambda s: np.corrcoef(np.roll(env, s), env_ref)[0, 1])
    assert np.corrcoef(np.roll(env, shift), env_ref)[0, 1] > 0.9


@pytest.mark.parametrize("rate,channels", [(44100, 2), (8000, 1), (48000, 6)])
def test_any_rate_and_channel_count(tmp_path, speech, rate, channels):
    samples, src_rate = speech
    data = resample(samples[:, None], src_rate, rate)[:, 0]
    for fmt in ("wav", "flac", "m4a"):
        if fmt == "m4a" and channels > 2:
            continue
        path = write_audio(tmp_path / f"clip_{rate}.{fmt}", data, rate, channels=channels)
        wave = load_audio(path)
        assert wave.ndim == 1
        tolerance = 2048 / rate + 0.01 if fmt == "m4a" else 0.01  # AAC pads up to two 1024-sample frames
        assert abs(len(wave) / 16000 - len(samples) / src_rate) < tolerance
        assert np.max(np.abs(wave)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)  # normalised to -1 dBFS


def test_format_is_sniffed_not_taken_from_the_extension(tmp_path, speech):
    samples, rate = speech
    path = tmp_path / "really_flac.mp3"
    write_audio(path, samples, rate, fmt="flac")
    assert sniff_format(path.read_bytes()[:16]) == "flac"
    assert abs(len(load_audio(path)) / 16000 - len(samples) / rate) < 0.01


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "opus", "m4a", "wma"])
def test_truncated_files_are_caught(tmp_path, speech, fmt):
    samples, rate = speech
    good = write_audio(tmp_path / f"good.{fmt}", samples, rate).read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(good[: len(good) * 6 // 10])
    with pytest.raises(AudioError) as err:
        load_audio(cut)
    assert err.value.reason in ("truncated", "unreadable")
    assert "cut." + fmt in str(err.value)  # the message names the file
    if fmt in ("wav", "flac", "mp3", "ogg", "opus"):
        assert isinstance(err.value, TruncatedAudioError)


def test_bad_files_fail_with_distinct_reasons(tmp_path, speech):
    samples, rate = speech
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is a transcript, not audio\n" * 20)
    good = write_audio(tmp_path / "good.wav", samples, rate).read_bytes()
    (tmp_path / "header.wav").write_bytes(good[:12] + b"\x13\x37" * 200 + good[412:])
    nan = samples.copy()
    nan[1000:1010] = np.nan
    sf.write(tmp_path / "nan.wav", nan, rate, subtype="FLOAT")
    cases = {
        "zero.wav": EmptyFileError,
        "text.wav": NotAudioError,
        "header.wav": CorruptAudioError,
        "nan.wav": NonFiniteAudioError,
    }
    reasons = set()
    for name, exc in cases.items():
        with pytest.raises(exc) as err:
            load_audio(tmp_path / name)
        assert name in str(err.value)
        reasons.add(err.value.reason)
    assert len(reasons) == len(cases)
    with pytest.raises(TooLongError):
        load_audio(tmp_path / "good.wav", max_seconds=1.0)
    with pytest.raises(TooShortError):
        load_audio(tmp_path / "good.wav", min_seconds=10.0)
    with pytest.raises(CorruptAudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")


def test_over_long_file_is_rejected_from_its_header_without_decoding(tmp_path):
    import time

    rate = 16000
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", rate, 1, format="FLAC") as f:  # 1 hour of quiet noise
        block = (np.random.default_rng(0).standard_normal(rate * 60) * 0.01).astype(np.float32)
        for _ in range(60):
            f.write(block)
    start = time.perf_counter()
    with pytest.raises(TooLongError, match="3600"):
        load_audio(path, max_seconds=30)
    assert time.perf_counter() - start < 2.0  # decoding an hour would take far longer


def test_bytes_input(speech):
    samples, rate = speech
    from mwc_dist.audio.encode import encode_bytes

    wave = load_audio(encode_bytes(samples, rate, "ogg"), "clip.ogg")
    assert abs(len(wave) / 16000 - len(samples) / rate) < 0.01


def test_wav_written_to_a_pipe_is_not_called_truncated():
    """espeak-ng/sox/ffmpeg writing WAV to stdout leave placeholder sizes (0x7FFFF000, 0xFFFFFFFF)."""
    import struct
    import subprocess

    piped = subprocess.run(
        ["espeak-ng", "-v", "es", "--stdout", "hola, buenos días"], check=True, capture_output=True
    ).stdout
    assert struct.unpack("<I", piped[40:44])[0] >= 0x7FFFF000  # what espeak-ng really writes
    wave = load_audio(piped, "espeak.wav")
    assert 0.8 < len(wave) / 16000 < 3
    for placeholder in (0xFFFFFFFF, 0x7FFFFFFF):
        patched = piped[:40] + struct.pack("<I", placeholder) + piped[44:]
        assert len(load_audio(patched, "piped.wav")) == len(wave)
    # a real header over a cut file is still caught
    honest = piped[:40] + struct.pack("<I", len(piped) - 44) + piped[44:]
    with pytest.raises(TruncatedAudioError):
        load_audio(honest[: len(honest) // 2], "cut.wav")
