"""Greedy transcription through three backends with one interface: PyTorch, ONNX Runtime, CTranslate2.

    mwc transcribe MODEL AUDIO... [--backend pytorch|onnx|ct2] [--language es] [--format text|json|srt]

Every backend takes the same log-mel features (mwc_dist.audio.features.LogMel, equal to Whisper's
feature extractor) and returns the generated text token ids (prompt and special tokens removed), so
export parity is a comparison of integer lists. Long audio is cut into windows of at most the model's length
(30 s for OpenAI's models), in pauses between words where there are any, and each is transcribed on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mwc_dist.audio.features import LogMel


def _quiet():
    from mwc_dist.evaluate import _quiet_transformers

    return _quiet_transformers()


class Backend:
    """Loads a model folder; ``generate(features, language, task, max_new_tokens) -> [[ids]]``."""

    def __init__(self, model_dir: str | Path):
        from transformers import WhisperProcessor

        self.model_dir = Path(model_dir)
        self.processor = WhisperProcessor.from_pretrained(self.model_dir)
        fe = self.processor.feature_extractor
        self.log_mel = LogMel(fe.feature_size, fe.chunk_length)
        self.window_samples = fe.n_samples
        tok = self.processor.tokenizer
        self.eot = tok.convert_tokens_to_ids("<|endoftext|>")
        self.multilingual = self.eot == 50257

    def prompt(self, language: str | None, task: str) -> list[int]:
        tok = self.processor.tokenizer
        ids = [tok.convert_tokens_to_ids("<|startoftranscript|>")]
        if self.multilingual:
            from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

            if language:
                code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
                ids.append(tok.convert_tokens_to_ids(f"<|{code}|>"))
            ids.append(tok.convert_tokens_to_ids(f"<|{task}|>"))
        return ids + [tok.convert_tokens_to_ids("<|notimestamps|>")]

    def text_ids(self, ids) -> list[int]:
        out = []
        for t in ids:
            t = int(t)
            if t == self.eot:
                break
            if t < self.eot:
                out.append(t)
        return out

    def features(self, waves: list[np.ndarray]) -> torch.Tensor:
        audio = torch.zeros(len(waves), max(len(w) for w in waves))
        for i, w in enumerate(waves):
            audio[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        return self.log_mel(audio)

    def generate(self, features: torch.Tensor, language: str | None, task: str, max_new_tokens: int) -> list[list[int]]:
        raise NotImplementedError

    def encode(self, features: torch.Tensor) -> np.ndarray:
        raise NotImplementedError


class PyTorchBackend(Backend):
    def __init__(self, model_dir):
        from transformers import WhisperForConditionalGeneration

        super().__init__(model_dir)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.model_dir).eval()

    def _kwargs(self, language, task, max_new_tokens):
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
        if self.multilingual:
            kwargs |= {"task": task} | ({"language": language} if language else {})
        return kwargs

    @torch.no_grad()
    def generate(self, features, language, task, max_new_tokens):
        with _quiet():
            ids = self.model.generate(input_features=features, **self._kwargs(language, task, max_new_tokens))
        return [self.text_ids(row) for row in ids.tolist()]

    @torch.no_grad()
    def encode(self, features):
        return self.model.model.encoder(features).last_hidden_state.numpy()


class OnnxBackend(Backend):
    """ONNX Runtime sessions over optimum's export (encoder, decoder, decoder with past), greedy in a plain loop.

    The loop applies what transformers' Whisper generate does for greedy short-form decoding: the generation
    config's ``suppress_tokens`` at every step and ``begin_suppress_tokens`` at the first, so the token ids equal
    PyTorch's (export parity checks that). It replaces ``ORTModelForSpeechSeq2Seq.generate`` for speed: that path
    turns every step's arrays into torch tensors and back and runs transformers' generate machinery around each
    token, which on CPU made the decoder no faster than PyTorch eager (bench/inference.py). The folder loads
    unchanged in optimum too (tests/export).
    """

    def __init__(self, model_dir):
        import onnxruntime as ort
        from transformers import GenerationConfig

        super().__init__(model_dir)
        options = ort.SessionOptions()
        options.log_severity_level = 3

        def session(name):
            return ort.InferenceSession(str(self.model_dir / name), options, providers=["CPUExecutionProvider"])

        self.encoder = session("encoder_model.onnx")
        self.decoder = session("decoder_model.onnx")
        self.decoder_with_past = session("decoder_with_past_model.onnx")
        self.present_first = [o.name for o in self.decoder.get_outputs()][1:]  # self- and cross-attention
        self.present_next = [o.name for o in self.decoder_with_past.get_outputs()][1:]  # self-attention only
        gen = GenerationConfig.from_pretrained(self.model_dir)
        self.suppress = list(gen.suppress_tokens or [])
        self.begin_suppress = list(getattr(gen, "begin_suppress_tokens", None) or [])

    def encode(self, features):
        return self.encoder.run(None, {"input_features": features.numpy()})[0]

    def generate(self, features, language, task, max_new_tokens):
        prompt = self.prompt(language, task)
        batch = len(features)
        hidden = self.encode(features)
        outputs = self.decoder.run(
            None, {"input_ids": np.array([prompt] * batch, dtype=np.int64), "encoder_hidden_states": hidden}
        )
        tokens: list[np.ndarray] = []  # one [batch] array per step
        done = np.zeros(batch, dtype=bool)
        past: dict[str, np.ndarray] = {}
        for step in range(max_new_tokens):
            logits = outputs[0][:, -1, :]
            past.update(
                (name.replace("present", "past_key_values"), value)
                for name, value in zip(self.present_first if step == 0 else self.present_next, outputs[1:])
            )
            logits[:, self.suppress] = -np.inf
            if step == 0:
                logits[:, self.begin_suppress] = -np.inf
            nxt = np.where(done, self.eot, logits.argmax(-1))
            tokens.append(nxt)
            done |= nxt == self.eot
            if done.all() or step == max_new_tokens - 1:
                break
            outputs = self.decoder_with_past.run(None, {"input_ids": nxt[:, None].astype(np.int64), **past})
        return [self.text_ids(row) for row in np.stack(tokens, axis=1).tolist()]


class CT2Backend(Backend):
    def __init__(self, model_dir, compute_type: str = "default"):
        import ctranslate2

        super().__init__(model_dir)
        self.model = ctranslate2.models.Whisper(str(self.model_dir), device="cpu", compute_type=compute_type)

    def generate(self, features, language, task, max_new_tokens):
        import ctranslate2

        prompt = self.prompt(language, task)
        # CTranslate2 4.8's Whisper stops at max_length / 2 new tokens (measured), so ask for twice as many
        results = self.model.generate(
            ctranslate2.StorageView.from_array(features.numpy()),
            [prompt] * len(features),
            max_length=2 * max_new_tokens,
            beam_size=1,
        )
        return [self.text_ids(r.sequences_ids[0])[:max_new_tokens] for r in results]

    def encode(self, features):
        import ctranslate2

        return np.array(self.model.encode(ctranslate2.StorageView.from_array(features.numpy())))


def load_backend(kind: str, model_dir: str | Path, compute_type: str = "default") -> Backend:
    if kind == "pytorch":
        return PyTorchBackend(model_dir)
    if kind == "onnx":
        return OnnxBackend(model_dir)
    if kind == "ct2":
        return CT2Backend(model_dir, compute_type)
    raise ValueError(f"backend {kind!r}: choose pytorch, onnx or ct2")


@dataclass
class Segment:
    start: float
    end: float
    text: str


def cut_points(wave: np.ndarray, size: int, search: int = 2 * 16000, frame: int = 320) -> list[tuple[int, int]]:
    """(start, end) spans of at most ``size`` samples covering ``wave``, each cut in a pause where there is one.

    A span that must end before the audio does ends at the quietest 20-ms frame of its last ``search`` samples
    (the latest of equally quiet ones), so a cut falls between words rather than through one.
    """
    spans, start = [], 0
    while len(wave) - start > size:
        low = start + size - min(search, size // 2)
        frames = (start + size - low) // frame
        energy = np.square(wave[low : low + frames * frame].reshape(frames, frame)).mean(axis=1)
        quietest = frames - 1 - int(np.argmin(energy[::-1]))
        end = low + quietest * frame + frame // 2
        spans.append((start, end))
        start = end
    spans.append((start, len(wave)))
    return spans


def transcribe(
    backend: Backend,
    wave: np.ndarray,
    language: str | None = None,
    task: str = "transcribe",
    max_new_tokens: int = 128,
    batch_size: int = 8,
) -> list[Segment]:
    """Cut ``wave`` (16 kHz mono) into model-length windows, in pauses (``cut_points``), and transcribe each."""
    spans = cut_points(np.asarray(wave, dtype=np.float32), backend.window_samples)
    segments = []
    for i in range(0, len(spans), batch_size):
        chunk = spans[i : i + batch_size]
        ids = backend.generate(backend.features([wave[a:b] for a, b in chunk]), language, task, max_new_tokens)
        for (a, b), row in zip(chunk, ids):
            text = backend.processor.tokenizer.decode(row, skip_special_tokens=True).strip()
            segments.append(Segment(a / 16000, b / 16000, text))
    return segments


def _srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def format_output(results: dict[str, list[Segment]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                path: {"text": " ".join(s.text for s in segs if s.text), "segments": [s.__dict__ for s in segs]}
                for path, segs in results.items()
            },
            ensure_ascii=False,
            indent=2,
        )
    if fmt == "srt":
        blocks = []
        for segs in results.values():
            for s in segs:
                if s.text:
                    blocks.append(f"{len(blocks) + 1}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text}\n")
        return "\n".join(blocks)
    return "\n".join(" ".join(s.text for s in segs if s.text) for segs in results.values())
