"""Three backends with one interface over a model folder: PyTorch, ONNX Runtime, CTranslate2.

Every backend takes the same log-mel features (mwc_dist.audio.features.LogMel, equal to Whisper's feature extractor)
and returns the generated text token ids (prompt and special tokens removed), so export parity is a comparison of
integer lists. The prompt, the fallback and the PyTorch decode are the shared decoding layer
(``inference/decoding.py``); ``load_backend`` picks the engine from the folder's files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mwc_dist.audio.features import LogMel
from mwc_dist.inference.decoding import (
    Guard,
    decode_with_fallback,
    generate_kwargs,
    language_tokens,
    prompt_ids,
    torch_decode,
)
from mwc_dist.models.tokenizer import is_multilingual


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
        return prompt_ids(self.processor.tokenizer, language, task)

    def language_tokens(self) -> dict[int, str]:
        """Token id -> Whisper language code, for every language the tokenizer has a token for."""
        return language_tokens(self.processor.tokenizer)

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
        return generate_kwargs(self.multilingual, language, task, max_new_tokens)

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
