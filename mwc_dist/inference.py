"""Transcription through three backends with one interface: PyTorch, ONNX Runtime, CTranslate2.

    mwc transcribe MODEL AUDIO... [--backend pytorch|onnx|ct2] [--language es] [--format text|json|srt] [--no-guard]

Decoding is greedy; with a ``Guard`` (on by default in ``mwc transcribe``) a hypothesis that looks like a loop or a
guess is decoded again the way Whisper's own transcriber does it: when its gzip compression ratio is over 2.4 or its
mean token log-probability under -1, it is sampled again at temperature 0.2, 0.4, ... 1.0 until one passes
(``decode_with_fallback``).

Every backend takes the same log-mel features (mwc_dist.audio.features.LogMel, equal to Whisper's
feature extractor) and returns the generated text token ids (prompt and special tokens removed), so
export parity is a comparison of integer lists. Long audio is cut into windows of at most the model's length
(30 s for OpenAI's models), in pauses between words where there are any, and each is transcribed on its own.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.audio.features import LogMel
from mwc_dist.models.tokenizer import is_multilingual


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings off (Whisper's generate warns about its own logits processors on every call)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


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
        self.multilingual = is_multilingual(tok)

    def prompt(self, language: str | None, task: str) -> list[int]:
        tok = self.processor.tokenizer
        ids = [tok.convert_tokens_to_ids("<|startoftranscript|>")]
        if self.multilingual:
            from mwc_dist.languages import resolve_language

            if language:
                code = resolve_language(language)
                ids.append(tok.convert_tokens_to_ids(f"<|{code}|>"))
            ids.append(tok.convert_tokens_to_ids(f"<|{task}|>"))
        return ids + [tok.convert_tokens_to_ids("<|notimestamps|>")]

    def language_tokens(self) -> dict[int, str]:
        """Token id -> Whisper language code, for every language the tokenizer has a token for."""
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        tok = self.processor.tokenizer
        ids = {tok.convert_tokens_to_ids(f"<|{code}|>"): code for code in LANGUAGES}
        return {i: code for i, code in ids.items() if i is not None and i != tok.unk_token_id}

    def detect_languages(self, features: torch.Tensor) -> list[str]:
        """Whisper's language detection per row: the most likely language token after <|startoftranscript|>."""
        logits = self.first_logits(features)
        tokens = self.language_tokens()
        ids = np.array(sorted(tokens))
        return [tokens[int(ids[row.argmax()])] for row in np.asarray(logits)[:, ids]]

    def first_logits(self, features: torch.Tensor) -> np.ndarray:
        """The decoder's next-token logits after <|startoftranscript|> alone, per row."""
        raise NotImplementedError

    def prompts(self, features: torch.Tensor, language: str | None, task: str) -> list[list[int]]:
        """Each row's decoder prompt; a multilingual model given no language gets the one it detects per row."""
        if self.multilingual and not language:
            return [self.prompt(code, task) for code in self.detect_languages(features)]
        return [self.prompt(language, task)] * len(features)

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
        return self.decode(features, language, task, max_new_tokens)[0]

    def decode(
        self, features, language: str | None, task: str, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> tuple[list[list[int]], list[float]]:
        """Text token ids per row and their mean log-probability (end of text included); greedy at temperature 0,
        sampled above it (seeded, except in CTranslate2)."""
        raise NotImplementedError

    def guarded(
        self, features, language: str | None, task: str, max_new_tokens: int, guard: Guard | None
    ) -> list[list[int]]:
        """``generate``, with Whisper's temperature fallback when ``guard`` is given."""
        if guard is None:
            return self.generate(features, language, task, max_new_tokens)
        _, chosen = decode_with_fallback(
            lambda f, t: self.decode(f, language, task, max_new_tokens, t, guard.seed), features, guard, self.to_text
        )
        return [c.ids for c in chosen]

    def to_text(self, ids: list[int]) -> str:
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def encode(self, features: torch.Tensor) -> np.ndarray:
        raise NotImplementedError


class PyTorchBackend(Backend):
    def __init__(self, model_dir):
        from transformers import WhisperForConditionalGeneration

        super().__init__(model_dir)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.model_dir).eval()

    def _kwargs(self, language, task, max_new_tokens):
        kwargs = {"max_new_tokens": max_new_tokens, "num_beams": 1}
        if self.multilingual:
            kwargs |= {"task": task} | ({"language": language} if language else {})
        return kwargs

    def decode(self, features, language, task, max_new_tokens, temperature=0.0, seed=0):
        return torch_decode(self.model, features, temperature, seed, **self._kwargs(language, task, max_new_tokens))

    @torch.no_grad()
    def encode(self, features):
        return self.model.model.encoder(features).last_hidden_state.numpy()

    @torch.no_grad()
    def first_logits(self, features):
        sot = torch.full((len(features), 1), self.prompt(None, "transcribe")[0])
        return self.model(input_features=features, decoder_input_ids=sot).logits[:, -1].float().numpy()


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

    def first_logits(self, features):
        sot = np.full((len(features), 1), self.prompt(None, "transcribe")[0], dtype=np.int64)
        return self.decoder.run(None, {"input_ids": sot, "encoder_hidden_states": self.encode(features)})[0][:, -1]

    def decode(self, features, language, task, max_new_tokens, temperature=0.0, seed=0):
        prompts = self.prompts(features, language, task)
        batch = len(features)
        hidden = self.encode(features)
        outputs = self.decoder.run(
            None, {"input_ids": np.array(prompts, dtype=np.int64), "encoder_hidden_states": hidden}
        )
        rng = np.random.default_rng(seed)
        tokens: list[np.ndarray] = []  # one [batch] array per step
        logprob, length = np.zeros(batch), np.zeros(batch)
        done = np.zeros(batch, dtype=bool)
        past: dict[str, np.ndarray] = {}
        for step in range(max_new_tokens):
            logits = outputs[0][:, -1, :].astype(np.float64)
            past.update(
                (name.replace("present", "past_key_values"), value)
                for name, value in zip(self.present_first if step == 0 else self.present_next, outputs[1:])
            )
            logits[:, self.suppress] = -np.inf
            if step == 0:
                logits[:, self.begin_suppress] = -np.inf
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            if temperature > 0:
                p = np.exp(logp / temperature)
                p /= p.sum(-1, keepdims=True)
                pick = np.array([rng.choice(len(row), p=row) for row in p])
            else:
                pick = logits.argmax(-1)
            nxt = np.where(done, self.eot, pick)
            logprob += np.where(done, 0.0, logp[np.arange(batch), nxt])
            length += ~done
            tokens.append(nxt)
            done |= nxt == self.eot
            if done.all() or step == max_new_tokens - 1:
                break
            outputs = self.decoder_with_past.run(None, {"input_ids": nxt[:, None].astype(np.int64), **past})
        rows = [self.text_ids(row) for row in np.stack(tokens, axis=1).tolist()]
        return rows, (logprob / np.maximum(length, 1)).tolist()


class CT2Backend(Backend):
    def __init__(self, model_dir, compute_type: str = "default"):
        import ctranslate2

        super().__init__(model_dir)
        self.model = ctranslate2.models.Whisper(str(self.model_dir), device="cpu", compute_type=compute_type)

    def decode(self, features, language, task, max_new_tokens, temperature=0.0, seed=0):
        import ctranslate2

        prompts = self.prompts(features, language, task)
        # CTranslate2 samples in its own worker threads, which ctranslate2.set_random_seed does not reach (measured:
        # two calls after the same seed differ), so its fallback samples are not reproducible; ``seed`` is unused
        sampling = {"sampling_temperature": temperature, "sampling_topk": 0} if temperature > 0 else {}
        # CTranslate2 4.8's Whisper stops at max_length / 2 new tokens (measured), so ask for twice as many
        results = self.model.generate(
            ctranslate2.StorageView.from_array(features.numpy()),
            prompts,
            max_length=2 * max_new_tokens,
            beam_size=1,
            return_scores=True,
            **sampling,
        )
        # the score is the summed log-probability over length ** length_penalty (1): the mean log-probability
        return [self.text_ids(r.sequences_ids[0])[:max_new_tokens] for r in results], [r.scores[0] for r in results]

    def encode(self, features):
        import ctranslate2

        return np.array(self.model.encode(ctranslate2.StorageView.from_array(features.numpy())))

    def detect_languages(self, features):
        """CTranslate2's own detection (the same first step: the likeliest language token after the start)."""
        import ctranslate2

        found = self.model.detect_language(ctranslate2.StorageView.from_array(features.numpy()))
        return [row[0][0].strip("<|>") for row in found]


def detect_backend(model_dir: str | Path) -> str:
    """The engine a model folder is for, from its files: an optimum ONNX export (encoder_model.onnx), a
    CTranslate2 export (model.bin beside a config.json without model_type) or a Hugging Face folder."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a model folder (a Hugging Face, ONNX or CTranslate2 export folder)")
    if (folder / "encoder_model.onnx").is_file():
        return "onnx"
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if (folder / "model.bin").is_file() and "model_type" not in config:
        return "ct2"
    if config.get("model_type") == "whisper":
        return "pytorch"
    raise ValueError(
        f"{folder}: no Whisper model found (no config.json with model_type whisper, no encoder_model.onnx, no "
        f"CTranslate2 model.bin); point to a folder written by `mwc export` or `save_pretrained`"
    )


def load_backend(kind: str | None, model_dir: str | Path, compute_type: str = "default") -> Backend:
    """The backend ``kind`` (pytorch, onnx, ct2) on ``model_dir``; None: the one the folder's files are for."""
    kind = kind or detect_backend(model_dir)
    if kind == "pytorch":
        return PyTorchBackend(model_dir)
    if kind == "onnx":
        return OnnxBackend(model_dir)
    if kind == "ct2":
        return CT2Backend(model_dir, compute_type)
    raise ValueError(f"backend {kind!r}: choose pytorch, onnx or ct2")


_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Guard:
    """Whisper's fallback thresholds (openai/whisper ``transcribe``): decode again at the next temperature when the
    text's gzip compression ratio is above ``compression_ratio_threshold`` (a loop compresses well) or the mean token
    log-probability is below ``logprob_threshold`` (a guess)."""

    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float | None = -1.0  # None: the compression ratio alone decides (as in Whisper)
    # beyond Whisper: a word n-gram repeated this many times in a row also fails (None: off). gzip barely
    # compresses a short clip's text, so "muere, muere, muere, muere" passes the ratio test
    max_repeats: int | None = 3
    seed: int = 0

    def passes(self, text: str, avg_logprob: float) -> bool:
        from mwc_dist.metrics import repeated_run

        confident = self.logprob_threshold is None or avg_logprob >= self.logprob_threshold
        loops = self.max_repeats is not None and repeated_run(" ".join(_WORDS.findall(text.lower())), self.max_repeats)
        return compression_ratio(text) <= self.compression_ratio_threshold and confident and not loops


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass
class Decoded:
    ids: list[int]
    text: str
    avg_logprob: float
    temperature: float


def decode_with_fallback(
    decode: Callable, features, guard: Guard, to_text: Callable[[list[int]], str]
) -> tuple[list[Decoded], list[Decoded]]:
    """(greedy, guarded) per row. ``decode(features, temperature) -> (ids rows, mean log-probs)``; only the rows
    that fail ``guard`` are decoded again. A row that never passes keeps, as faster-whisper does, its best-scoring
    candidate among those under the compression threshold (or among all)."""
    ids, logprobs = decode(features, guard.temperatures[0])
    greedy = [Decoded(row, to_text(row), lp, guard.temperatures[0]) for row, lp in zip(ids, logprobs)]
    candidates = [[d] for d in greedy]
    todo = [i for i, d in enumerate(greedy) if not guard.passes(d.text, d.avg_logprob)]
    for temperature in guard.temperatures[1:]:
        if not todo:
            break
        ids, logprobs = decode(features[todo], temperature)
        failed = []
        for i, row, lp in zip(todo, ids, logprobs):
            candidates[i].append(Decoded(row, to_text(row), lp, temperature))
            if not guard.passes(candidates[i][-1].text, lp):
                failed.append(i)
        todo = failed
    chosen = []
    for i, cands in enumerate(candidates):
        if i not in todo:
            chosen.append(cands[-1])
            continue
        short = [c for c in cands if compression_ratio(c.text) <= guard.compression_ratio_threshold] or cands
        chosen.append(max(short, key=lambda c: c.avg_logprob))
    return greedy, chosen


@torch.no_grad()
def torch_decode(model, features, temperature: float, seed: int, **generate_kwargs) -> tuple[list[list[int]], list]:
    """transformers' Whisper ``generate`` (greedy, or sampling at ``temperature`` from a seeded generator): text ids
    per row (end of text and specials removed) and the mean log-probability of the tokens up to end of text."""
    kwargs = generate_kwargs | {"output_scores": True, "return_dict_in_generate": True}
    kwargs |= {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    eot = model.generation_config.eos_token_id
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        out = model.generate(input_features=features, **kwargs)
    scores = torch.stack(out.scores, dim=1).float()  # [batch, new tokens, vocab], after the logits processors
    logp = (scores * temperature if temperature > 0 else scores).log_softmax(-1)
    new = out.sequences[:, -scores.shape[1] :]
    token_lp = logp.gather(-1, new[..., None])[..., 0]
    ended = (new == eot).int().cumsum(1)
    keep = (ended == 0) | ((ended == 1) & (new == eot))  # up to and including the first end of text
    avg = (token_lp.masked_fill(~keep, 0).sum(1) / keep.sum(1).clamp(min=1)).tolist()
    rows = []
    for row in new.tolist():
        row = row[: row.index(eot)] if eot in row else row
        rows.append([t for t in row if t < eot])
    return rows, avg


@dataclass
class Segment:
    start: float
    end: float
    text: str


def cut_points(wave: np.ndarray, size: int, search: int = 2 * SAMPLE_RATE, frame: int = 320) -> list[tuple[int, int]]:
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
    guard: Guard | None = None,
) -> list[Segment]:
    """Cut ``wave`` (16 kHz mono) into model-length windows, in pauses (``cut_points``), and transcribe each
    (with Whisper's temperature fallback when ``guard`` is given)."""
    spans = cut_points(np.asarray(wave, dtype=np.float32), backend.window_samples)
    segments = []
    for i in range(0, len(spans), batch_size):
        chunk = spans[i : i + batch_size]
        ids = backend.guarded(backend.features([wave[a:b] for a, b in chunk]), language, task, max_new_tokens, guard)
        for (a, b), row in zip(chunk, ids):
            text = backend.processor.tokenizer.decode(row, skip_special_tokens=True).strip()
            segments.append(Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, text))
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
    if fmt in ("srt", "vtt"):
        blocks = []
        for segs in results.values():
            for s in segs:
                if s.text:
                    start, end = _srt_time(s.start), _srt_time(s.end)
                    if fmt == "vtt":  # WebVTT: a dot before the milliseconds, no cue numbers needed
                        blocks.append(f"{start.replace(',', '.')} --> {end.replace(',', '.')}\n{s.text}\n")
                    else:
                        blocks.append(f"{len(blocks) + 1}\n{start} --> {end}\n{s.text}\n")
        return ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(blocks)
    return "\n".join(" ".join(s.text for s in segs if s.text) for segs in results.values())
