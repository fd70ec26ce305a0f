"""Long audio for `mwc transcribe`: cut into model-length windows in the pauses, on real espeak-ng speech."""

import numpy as np
import torch

from mwc_dist.inference.windows import cut_points


def _spoken(sentences, pause_seconds=0.4):
    import torchaudio.functional as F

    pause = np.zeros(int(pause_seconds * 16000), dtype=np.float32)
    pieces = []
    for _, wave, rate in sentences:
        pieces += [F.resample(torch.from_numpy(wave), rate, 16000).numpy(), pause]
    return np.concatenate(pieces)


def test_windows_cover_the_audio_and_cut_in_pauses(sentences):
    audio = _spoken(sentences)
    size = 5 * 16000  # each sentence is about 3 s
    spans = cut_points(audio, size)
    assert spans[0][0] == 0 and spans[-1][1] == len(audio)
    assert all(a < b <= a + size for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert len(spans) >= len(audio) // size
    for _, end in spans[:-1]:  # every cut falls in silence (10 ms either side)
        assert np.abs(audio[end - 160 : end + 160]).max() < 1e-3, end / 16000
    # a cut every `size` samples, as before, goes through speech here
    assert any(np.abs(audio[k - 160 : k + 160]).max() > 1e-2 for k in range(size, len(audio), size))


def test_short_and_empty_audio_are_one_window():
    assert cut_points(np.ones(100, dtype=np.float32), 16000) == [(0, 100)]
    assert cut_points(np.zeros(0, dtype=np.float32), 16000) == [(0, 0)]


def test_audio_without_pauses_is_still_cut_within_the_window():
    noise = np.random.default_rng(0).standard_normal(35 * 16000).astype(np.float32)
    spans = cut_points(noise, 10 * 16000)
    assert spans[-1][1] == len(noise) and all(b - a <= 10 * 16000 for a, b in spans)
    assert all(b - a >= 8 * 16000 for a, b in spans[:-1])  # cut within the last 2 s of each window


def test_a_model_without_timestamps_is_cut_in_pauses_and_says_so(tmp_path, sentences, monkeypatch):
    """mwc_dist.longform: when the model closes no segment with a timestamp (sequential_segments gives None), the
    recording is transcribed in pause-cut windows, and the result's mode says why."""
    from mwc_dist import longform
    from mwc_dist.config import ModelConfig
    from mwc_dist.inference.backends import load_backend
    from mwc_dist.models.build import build_model

    model, processor = build_model(ModelConfig(base_model="tiny-random"))
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    backend = load_backend("pytorch", tmp_path / "m")
    audio = _spoken(sentences * 2)  # ~25 s: longer than tiny-random's 10-s window
    monkeypatch.setattr(longform, "sequential_segments", lambda *a, **k: None)
    result = longform.transcribe_long(backend, audio, "es", max_new_tokens=8)
    assert result.mode.startswith("pause cuts: the model predicts no timestamps")
    spans = cut_points(audio, backend.window_samples)
    assert [(round(s.start * 16000), round(s.end * 16000)) for s in result.segments] == spans
    chunked = longform.transcribe_long(backend, audio, "es", max_new_tokens=8, sequential=False)
    assert chunked.mode == "pause cuts: asked for chunked decoding"
