"""Speech for tests: real espeak-ng speech (``espeak``), and long recordings of sentences one after another with
their true segment times (``long_recording``).

Importable from any test module (pytest puts tests/ on sys.path for tests/conftest.py; a test cannot import
``conftest`` itself: tests/slurm/ and tests/multinode/ have their own, and the name resolves to whichever came first).
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np


def espeak(text: str, voice: str = "es") -> tuple[np.ndarray, int]:
    """Real synthetic speech: float32 mono at espeak-ng's 22050 Hz."""
    import pytest
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: `make test` installs it (apt-get install -y espeak-ng)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return samples, rate


def long_recording(sentences, order: list[int], rate: int = 16000, lead: float = 0.4, pauses=(0.6, 1.2)):
    """(wave, segments): real sentences one after another with pauses from ``pauses[0]`` to ``pauses[1]`` s (four
    steps); segments hold their true times
    (each sentence trimmed to its speech, so a segment starts where the voice does)."""
    import torch
    import torchaudio.functional as AF

    pieces, segments, t = [np.zeros(int(lead * rate), np.float32)], [], lead
    for n, i in enumerate(order):
        text, samples, source_rate = sentences[i % len(sentences)]
        wave = AF.resample(torch.from_numpy(samples), source_rate, rate).numpy()
        voiced = np.flatnonzero(np.abs(wave) > 0.01 * np.abs(wave).max())  # espeak pads each clip with silence
        wave = wave[voiced[0] : voiced[-1] + 1]
        segments.append((round(t, 3), round(t + len(wave) / rate, 3), text))
        gap = int((pauses[0] + (pauses[1] - pauses[0]) * (n % 4) / 3) * rate)
        pieces += [wave, np.zeros(gap, np.float32)]
        t += (len(wave) + gap) / rate
    return np.concatenate(pieces), segments
