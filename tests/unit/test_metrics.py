import json

import pytest

from mwc_dist.metrics import compute_metrics, metrics_from_predictions


def test_perfect_transcript_scores_perfectly():
    refs = ["El médico compra una carta.", "La abuela lee el periódico por la mañana."]
    m = compute_metrics(refs, list(refs), "es")
    assert m["wer"] == 0 and m["cer"] == 0 and m["raw_wer"] == 0
    assert m["bleu"] == pytest.approx(100) and m["chrf"] == pytest.approx(100)


def test_values_match_jiwer_and_sacrebleu_and_normalisation_helps():
    import jiwer
    import sacrebleu

    refs = ["Hola, ¿qué tal estás?", "el perro come pan"]
    hyps = ["hola que tal estas", "el gato come pan"]
    m = compute_metrics(refs, hyps, "es")
    assert m["raw_wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert m["raw_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert m["wer"] < m["raw_wer"]  # punctuation and case no longer count
    assert m["wer"] == pytest.approx(
        jiwer.wer(["hola qué tal estás", "el perro come pan"], ["hola que tal estas", "el gato come pan"])
    )


def test_english_uses_whisper_english_normaliser():
    m = compute_metrics(["The colour is grey, Mr. Smith."], ["the color is gray mister smith"], "en")
    assert m["wer"] == 0 and m["raw_wer"] > 0.5


def test_recompute_from_file(tmp_path):
    rows = [
        {"key": "a", "reference": "uno dos tres", "prediction": "uno dos"},
        {"key": "b", "reference": "cuatro", "prediction": "cuatro"},
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert metrics_from_predictions(path, "es")["wer"] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        compute_metrics(["a"], [], "es")
