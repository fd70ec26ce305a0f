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


def test_hallucination_metrics_count_loops_insertions_and_empties():
    from mwc_dist.metrics import repeated_run

    assert repeated_run("en las en las en las casas") == "en las"
    assert repeated_run("no no no") == "no" and repeated_run("en las en las casas") is None
    refs = [
        "el que mucho abarca poco aprieta",
        "más vale tarde que nunca",
        "no no no dijo el niño",  # the reference itself repeats: not a loop
        "a quien madruga dios le ayuda",
    ]
    hyps = [
        "el que mucho abarca poco aprieta en las en las en las",  # loop: 6 inserted words
        "",  # empty
        "no no no dijo el niño",
        "a quien madruga dios le ayuda",
    ]
    m = compute_metrics(refs, hyps, "es")
    assert m["loop_rate"] == pytest.approx(1 / 4)
    assert m["empty_rate"] == pytest.approx(1 / 4)
    assert m["insertion_rate"] == pytest.approx(6 / 23)
    assert m["length_ratio"] == pytest.approx((12 + 0 + 6 + 6) / 23)
    clean = compute_metrics(refs, refs, "es")
    assert clean["loop_rate"] == clean["empty_rate"] == clean["insertion_rate"] == 0 and clean["length_ratio"] == 1
