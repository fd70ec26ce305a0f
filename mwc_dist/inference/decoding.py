"""The decoding policy every decoder here shares: the decoder prompt, transformers' ``generate`` arguments, the
language tokens, Whisper's temperature fallback (``Guard``, ``decode_with_fallback``) and the PyTorch decode.

Greedy by default; with a ``Guard`` a hypothesis that looks like a loop or a guess is decoded again the way Whisper's
own transcriber does it: when its gzip compression ratio is over 2.4 or its mean token log-probability under -1, it
is sampled again at temperature 0.2, 0.4, ... 1.0 until one passes. Evaluation (``mwc_dist.evaluate``), the backends
(``inference/backends.py``: ``mwc transcribe``, pseudo-labelling, the exports' parity check) and long-form decoding
all decode through here.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

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


def prompt_ids(tokenizer, language: str | None, task: str) -> list[int]:
    """Whisper's decoder prompt: <|startoftranscript|>[<|lang|>]<|task|><|notimestamps|> (an English-only model: no
    language, no task); ``language`` a code or a name (mwc_dist.languages), None: none forced."""
    ids = [tokenizer.convert_tokens_to_ids("<|startoftranscript|>")]
    if is_multilingual(tokenizer):
        from mwc_dist.languages import resolve_language

        if language:
            ids.append(tokenizer.convert_tokens_to_ids(f"<|{resolve_language(language)}|>"))
        ids.append(tokenizer.convert_tokens_to_ids(f"<|{task}|>"))
    return ids + [tokenizer.convert_tokens_to_ids("<|notimestamps|>")]


def language_tokens(tokenizer) -> dict[int, str]:
    """Token id -> Whisper language code, for every language the tokenizer has a token for."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids = {tokenizer.convert_tokens_to_ids(f"<|{code}|>"): code for code in LANGUAGES}
    return {i: code for i, code in ids.items() if i is not None and i != tokenizer.unk_token_id}


def generate_kwargs(
    multilingual: bool, language: str | list[str] | None, task: str, max_new_tokens: int, num_beams: int = 1
) -> dict:
    """transformers' Whisper ``generate`` arguments: an English-only model takes neither language nor task; a list of
    languages forces one per row."""
    kwargs = {"max_new_tokens": max_new_tokens, "num_beams": num_beams}
    if multilingual:
        kwargs |= {"task": task} | ({"language": language} if language else {})
    return kwargs


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
