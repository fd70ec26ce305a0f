"""ASR metrics from real predictions: WER and CER (jiwer), BLEU and chrF (sacrebleu).

Each is reported raw and after Whisper's text normaliser: transformers' ``EnglishTextNormalizer``
(with OpenAI's spelling map) for English, ``BasicTextNormalizer`` otherwise. Rates are fractions
(0.0 = perfect); BLEU and chrF are 0-100.
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


def compute_metrics(references: list[str], predictions: list[str], language: str | None = None) -> dict[str, float]:
    """{wer, cer, bleu, chrf} after normalisation, and the same with a ``raw_`` prefix before it."""
    if len(references) != len(predictions) or not references:
        raise ValueError(f"need as many predictions as references (got {len(predictions)} and {len(references)})")
    norm = normalizer(language)
    out = {f"raw_{k}": v for k, v in _scores(references, predictions).items()}
    out |= _scores([norm(r) for r in references], [norm(p) for p in predictions])
    out["num_samples"] = len(references)
    return out


def metrics_from_predictions(path: str | Path, language: str | None = None) -> dict[str, float]:
    """Recompute the metrics from a predictions.jsonl (key, reference, prediction per line)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows], language)
