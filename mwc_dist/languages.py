"""Whisper's languages: a code or a name as its tokenizer accepts them, resolved once where it enters.

``resolve_language("Spanish") == "es"``; an unknown one (``esp``, ``castellano``, ``sp``) raises
``LanguageError`` naming the nearest valid codes. Config validation, `mwc shard`'s sources (one row at a
time: a bad row is quarantined as ``unknown_language``) and every ``--language`` flag call it, so a typo
is refused before any work, never first inside a DataLoader worker.
"""

from __future__ import annotations

import difflib
import functools


class LanguageError(ValueError):
    """A language Whisper has no token for; the message names the nearest valid codes."""


@functools.cache
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    """(code -> name, name or alias -> code), from transformers' Whisper tokenizer tables."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return dict(LANGUAGES), dict(TO_LANGUAGE_CODE)


def nearest_languages(value: str, n: int = 4) -> list[str]:
    """Valid codes close to ``value``, as ``"es (spanish)"``: names it begins, then close spellings."""
    codes, names = _tables()
    word = value.strip().lower()
    found = [names[name] for name in names if len(word) >= 2 and name.startswith(word)]
    for match in difflib.get_close_matches(word, list(codes) + list(names), n=2 * n, cutoff=0.5):
        found.append(match if match in codes else names[match])
    unique = list(dict.fromkeys(found))[:n]
    return [f"{code} ({codes[code]})" for code in unique]


def resolve_language(value: str, where: str = "language") -> str:
    """Whisper's code for a code or name in any case (``es``, ``spanish``, ``Castilian``); LanguageError if none."""
    codes, names = _tables()
    word = str(value).strip().lower()
    if word in codes:
        return word
    if word in names:
        return names[word]
    near = nearest_languages(word)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    raise LanguageError(
        f"{where}: {value!r} is not a language Whisper knows{hint}. Use a code such as es, en, fr or a name such as "
        f"spanish (the full list: transformers.models.whisper.tokenization_whisper.LANGUAGES)"
    )


def language_arg(value: str) -> str:
    """argparse ``type=`` for ``--language``: the resolved code, or argparse's own usage error (exit 2)."""
    import argparse

    try:
        return resolve_language(value, "--language")
    except LanguageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_section_language(section, name: str, problems: list[str]) -> None:
    """Replace ``section.language`` (a code or a name in any case) by Whisper's code, or report it with the nearest."""
    if section.language is not None:
        try:
            section.language = resolve_language(section.language, f"{name}.language")
        except LanguageError as exc:
            problems.append(str(exc))
