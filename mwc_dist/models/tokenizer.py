"""Whisper tokenizers and generation configs built offline from OpenAI's own tiktoken files.

``assets/multilingual.tiktoken`` and ``assets/gpt2.tiktoken`` come from the openai-whisper package
(MIT, ``assets/LICENSE.openai-whisper``). transformers' ``TikTokenConverter`` turns them into a
byte-level BPE; the special tokens are added in OpenAI's order, so every id is the standard one
(multilingual: eot 50257, sot 50258, es 50262, transcribe 50359, notimestamps 50363, ``<|0.00|>``
50364, 51865 in all; English-only: eot 50256 ... 51864 in all). The built tokenizer is cached under
``$MWC_CACHE`` (default ``~/.cache/mwc_dist``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
# tiktoken's pattern for Whisper (GPT-2's)
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
NUM_TIMESTAMPS = 1501


def cache_dir() -> Path:
    return Path(os.environ.get("MWC_CACHE", Path.home() / ".cache" / "mwc_dist"))


def language_codes(num_languages: int) -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return list(LANGUAGES)[:num_languages]


# the special tokens after the language tokens, in id order; generation suppresses all but the last
AFTER_LANGUAGES = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)


def special_tokens(num_languages: int) -> list[str]:
    """OpenAI's special tokens in id order (whisper/tokenizer.py:get_encoding)."""
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{c}|>" for c in language_codes(num_languages)],
        *AFTER_LANGUAGES,
    ]


def _build(multilingual: bool, num_languages: int, out_dir: Path):
    from tokenizers import AddedToken
    from transformers import WhisperTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file = ASSETS / ("multilingual.tiktoken" if multilingual else "gpt2.tiktoken")
    backend = TikTokenConverter(vocab_file=str(vocab_file), pattern=PATTERN, additional_special_tokens=[]).converted()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special_tokens(num_languages)])
    # timestamps are ordinary added tokens in HF's Whisper tokenizers (decode keeps or strips them itself)
    backend.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(NUM_TIMESTAMPS)]
    )
    tok = WhisperTokenizerFast(
        tokenizer_object=backend,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=448,
    )
    tok.add_special_tokens({"additional_special_tokens": special_tokens(num_languages)[1:]})
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    tok.save_pretrained(tmp)
    shutil.copy(ASSETS / "english_normalizer.json", tmp / "normalizer.json")  # the English text normaliser
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(multilingual: bool = True, num_languages: int = 99):
    """The standard Whisper tokenizer (fast), built once from the vendored tiktoken file and cached."""
    from transformers import WhisperTokenizerFast

    name = f"whisper-{'multilingual' if multilingual else 'en'}-{num_languages}"
    out_dir = cache_dir() / "tokenizers" / name
    if not (out_dir / "tokenizer.json").is_file():
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _build(multilingual, num_languages, out_dir)
    return WhisperTokenizerFast.from_pretrained(out_dir)


def non_speech_tokens(tokenizer) -> list[int]:
    """Symbol tokens Whisper never emits for speech (whisper/tokenizer.py:non_speech_tokens)."""
    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    misc = set("♩♪♫♬♭♮♯")
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    result = {enc(" -")[0], enc(" '")[0]}
    for symbol in symbols + sorted(misc):
        for tokens in (enc(symbol), enc(" " + symbol)):
            if len(tokens) == 1 or symbol in misc:
                result.add(tokens[0])
    return sorted(result)


def is_multilingual(tokenizer) -> bool:
    """OpenAI's rule (``n_vocab >= 51865``): English-only vocabularies have 51864 tokens, end text with 50256 and
    take no language or task token."""
    return len(tokenizer) >= 51865


def generation_config(tokenizer, max_length: int = 448, alignment_heads: list[list[int]] | None = None):
    """A complete Whisper GenerationConfig, so ``generate(language=..., task=...)`` works on any model."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    langs = [t for t in tokenizer.additional_special_tokens if len(t) <= 9 and t[2:-2] in set(language_codes(100))]
    multilingual = is_multilingual(tokenizer)
    specials = ["<|startoftranscript|>", *AFTER_LANGUAGES[:-1]]  # never generated mid-text
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
        max_length=max_length,
        is_multilingual=multilingual,
        lang_to_id={t: ids(t) for t in langs} if multilingual else {},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=non_speech_tokens(tokenizer) + [ids(t) for t in specials],
        begin_suppress_tokens=[tokenizer.encode(" ", add_special_tokens=False)[0], ids("<|endoftext|>")],
        max_initial_timestamp_index=50,
        return_timestamps=False,
        alignment_heads=alignment_heads or [],
        # a multilingual model transcribes by default, detecting the language, when generate() is given neither
        # (what OpenAI's checkpoints say with forced_decoder_ids [[1, null], [2, <|transcribe|>]])
        **({"task": "transcribe"} if multilingual else {}),
    )
