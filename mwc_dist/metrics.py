"""ASR metrics from real predictions: WER and CER (jiwer), BLEU and chrF (sacrebleu).

Each is reported raw and after Whisper's text normaliser: transformers' ``EnglishTextNormalizer``
(with OpenAI's spelling map) for English, ``BasicTextNormalizer`` otherwise. Rates are fractions
(0.0 = perfect); BLEU and chrF are 0-100.

Hallucination metrics, on the normalised text: ``insertion_rate`` (jiwer's inserted words / reference words),
``loop_rate`` (share of hypotheses with an n-gram repeated 3 or more times in a row where the reference has no
such run), ``length_ratio`` (hypothesis words / reference words, over the set) and ``empty_rate`` (share of
empty hypotheses for non-empty references).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

ASSETS = Path(__file__).parent / "models" / "assets"


@lru_cache(maxsize=2)
def normalizer(language: str | None) -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if language and language.lower() in ("en", "english"):
        return EnglishTextNormalizer(json.loads((ASSETS / "english_normalizer.json").read_text()))
    return BasicTextNormalizer()


def _scores(refs: list[str], hyps: list[str]) -> dict[str, float]:
    import jiwer
    import sacrebleu

    # jiwer refuses empty references; an empty reference contributes its hypothesis words as insertions
    pairs = [(r if r.strip() else "<empty>", h) for r, h in zip(refs, hyps)]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    return {
        "wer": jiwer.wer(refs, hyps),
        "cer": jiwer.cer(refs, hyps),
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
    }


def repeated_run(text: str, min_repeats: int = 3, max_n: int = 8) -> str | None:
    """The first n-gram (n <= max_n words) that ``text`` repeats ``min_repeats`` or more times in a row, else None."""
    words = text.split()
    for n in range(1, max_n + 1):
        for start in range(len(words) - n * min_repeats + 1):
            gram = words[start : start + n]
            if all(words[start + k * n : start + (k + 1) * n] == gram for k in range(1, min_repeats)):
                return " ".join(gram)
    return None


def hallucination(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """insertion_rate, loop_rate, length_ratio, empty_rate of normalised references and hypotheses."""
    import jiwer

    ref_words = sum(len(r.split()) for r in refs)
    scored = [(r if r.strip() else "<empty>", h) for r, h in zip(refs, hyps)]
    insertions = jiwer.process_words([p[0] for p in scored], [p[1] for p in scored]).insertions
    loops = sum(repeated_run(h) is not None and repeated_run(r) is None for r, h in zip(refs, hyps))
    empties = sum(bool(r.strip()) and not h.strip() for r, h in zip(refs, hyps))
    return {
        "insertion_rate": insertions / max(ref_words, 1),
        "loop_rate": loops / len(hyps),
        "length_ratio": sum(len(h.split()) for h in hyps) / max(ref_words, 1),
        "empty_rate": empties / len(hyps),
    }


def compute_metrics(references: list[str], predictions: list[str], language: str | None = None) -> dict[str, float]:
    """{wer, cer, bleu, chrf} after normalisation, the same with a ``raw_`` prefix before it, and the hallucination
    metrics (normalised)."""
    if len(references) != len(predictions) or not references:
        raise ValueError(f"need as many predictions as references (got {len(predictions)} and {len(references)})")
    norm = normalizer(language)
    out = {f"raw_{k}": v for k, v in _scores(references, predictions).items()}
    refs, hyps = [norm(r) for r in references], [norm(p) for p in predictions]
    out |= _scores(refs, hyps)
    out |= hallucination(refs, hyps)
    out["num_samples"] = len(references)
    return out


def metrics_from_predictions(path: str | Path, language: str | None = None) -> dict[str, float]:
    """Recompute the metrics from a predictions.jsonl (key, reference, prediction per line)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows], language)
