"""Natural Spanish for the demo: the quotes of Debian's ``fortunes-es`` package, split for honest numbers.

``/usr/share/games/fortunes/es`` holds ~10,800 quotes in 26 topic files (proverbs, philosophy, science, ...).
Attribution lines (``-- Author``) are dropped; quotes of 5-16 words without digits (espeak reads digits as words,
Whisper may write them as digits) and with only Spanish letters and punctuation are kept: 8,489 distinct
sentences. The splits:

- ``indomain/``: train, validation and test rows (``split`` column) from the training topics; each sentence occurs
  in one split only. Train rows use the training voices, validation rows two voices of their own, test rows the
  two test voices.
- ``ood/``: test rows only, from whole topic files (``OOD_TOPICS``) that no other split draws from, in the test
  voices: an out-of-domain test of vocabulary and style.

No sentence (compared after Whisper's basic normalisation) is in two splits; ``tests/unit/test_quotes.py``
checks it, and that no test voice speaks in training.
"""

from __future__ import annotations

import re
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes/es")
OOD_TOPICS = ("ciencia", "familia", "informatica")
MIN_WORDS, MAX_WORDS = 5, 16
_ATTRIBUTION = re.compile(r"^\s*--|^\t")
_FOREIGN = re.compile(r"[^A-Za-zÁÉÍÓÚÜÑáéíóúüñ¿?¡!.,;:'\"()«» \-]")


def normalise(text: str) -> str:
    """Whisper's basic normaliser, as the metrics use it for Spanish (built once: mwc_dist.metrics.normalizer)."""
    from mwc_dist.metrics import normalizer

    return " ".join(normalizer("es")(text).split())


def parse_fortunes(text: str) -> list[str]:
    """The quotes of one fortune file, attribution lines dropped, whitespace joined."""
    quotes = []
    for block in text.split("\n%\n"):
        lines = []
        for line in block.split("\n"):
            if _ATTRIBUTION.match(line):
                break  # the attribution and everything after it
            lines.append(line)
        quote = " ".join(" ".join(lines).split()).strip("% ").lstrip("-– ")  # a dialogue dash is not spoken
        if quote:
            quotes.append(quote)
    return quotes


def usable(quote: str) -> bool:
    return (
        MIN_WORDS <= len(quote.split()) <= MAX_WORDS
        and not any(c.isdigit() for c in quote)
        and not _FOREIGN.search(quote)
    )


def read_topics(directory: Path = FORTUNES_DIR) -> dict[str, list[str]]:
    """{topic: usable quotes}, each normalised sentence in one topic only (its first, in sorted topic order)."""
    files = sorted(directory.glob("*.fortunes")) if directory.is_dir() else []
    if not files:
        raise RuntimeError(
            f"no fortune files in {directory}: install Debian's fortunes-es (`apt-get install -y fortunes-es`; "
            "make demo and make test do it) or use `mwc demo-data --text grammar`"
        )
    seen: set[str] = set()
    topics: dict[str, list[str]] = {}
    for path in files:
        kept = []
        for quote in parse_fortunes(path.read_text(encoding="utf-8", errors="replace")):
            key = normalise(quote)
            if usable(quote) and key not in seen:
                seen.add(key)
                kept.append(quote)
        topics[path.name.removesuffix(".fortunes")] = kept
    return topics


def split_quotes(
    topics: dict[str, list[str]], num_train: int, num_validation: int, num_test: int, num_ood: int, seed: int
) -> dict[str, list[tuple[str, str]]]:
    """{"train"|"validation"|"test"|"ood": [(topic, quote)]}: in-domain splits from the training topics, disjoint;
    "ood" from OOD_TOPICS only."""
    import random

    rng = random.Random(seed)
    missing = [t for t in OOD_TOPICS if t not in topics]
    if missing:
        raise RuntimeError(f"fortunes-es lacks the out-of-domain topic files {missing}; reinstall fortunes-es")
    ood = [(t, q) for t in OOD_TOPICS for q in topics[t]]
    indomain = [(t, q) for t, qs in topics.items() if t not in OOD_TOPICS for q in qs]
    rng.shuffle(ood)
    rng.shuffle(indomain)
    wanted = num_train + num_validation + num_test
    if wanted > len(indomain) or num_ood > len(ood):
        raise ValueError(
            f"asked for {wanted} in-domain and {num_ood} out-of-domain quotes; fortunes-es has "
            f"{len(indomain)} and {len(ood)}"
        )
    return {
        "test": indomain[:num_test],
        "validation": indomain[num_test : num_test + num_validation],
        "train": indomain[num_test + num_validation : wanted],
        "ood": ood[:num_ood],
    }
