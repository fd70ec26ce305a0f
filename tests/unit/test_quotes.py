"""The natural-text demo corpus (fortunes-es): parsing, and test splits that share no sentence and no voice
with training (issue: honest, out-of-domain numbers)."""

import csv

import pytest

from mwc_dist.demo.corpus import NUM_TEST_VOICES, VOICES, make_demo_corpus, plan_quotes_corpus
from mwc_dist.demo.quotes import FORTUNES_DIR, OOD_TOPICS, normalise, parse_fortunes, read_topics, usable

pytestmark = pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason="fortunes-es not installed (make setup does it)")


def test_attribution_lines_are_dropped_and_quotes_joined():
    text = (
        "No es otra cosa la amistad que un sumo consentimiento en las cosas\ndivinas y humanas.\n"
        "\t\t-- Marco Tulio Cicerón. (106-43 A.C.) Escritor,\n\t\tpolítico romano.\n%\n"
        "Donde hay concordia siempre hay victoria.\n\t\t-- Publio Siro.\n%\nUno dos.\n"
    )
    quotes = parse_fortunes(text)
    assert quotes == [
        "No es otra cosa la amistad que un sumo consentimiento en las cosas divinas y humanas.",
        "Donde hay concordia siempre hay victoria.",
        "Uno dos.",
    ]
    assert [usable(q) for q in quotes] == [True, True, False]  # 2 words: too short
    assert not usable("Tengo 3 perros y dos gatos en casa.")  # digits: espeak and Whisper disagree on them
    assert not usable("The quick brown fox jumps — over the dog.")  # a dash outside Spanish punctuation


def test_topics_are_natural_and_distinct():
    topics = read_topics()
    sentences = [normalise(q) for qs in topics.values() for q in qs]
    assert len(sentences) == len(set(sentences)) > 8000  # the issue measured ~8,600
    assert set(OOD_TOPICS) <= set(topics) and all(len(topics[t]) >= 50 for t in OOD_TOPICS)


def test_test_splits_share_no_sentence_and_no_voice_with_training():
    corpora = plan_quotes_corpus(1200, 0.04, seed=0)
    by_split = {s: [u for u in corpora["indomain"] if u.split == s] for s in ("train", "validation", "test")}
    by_split["ood"] = corpora["ood"]
    assert {s: len(u) for s, u in by_split.items()} == {"train": 1104, "validation": 48, "test": 48, "ood": 48}
    assert all(u.split == "test" for u in corpora["ood"])
    text = {s: {normalise(u.text) for u in us} for s, us in by_split.items()}
    voices = {s: {(u.voice, u.variant) for u in us} for s, us in by_split.items()}
    for held_out in ("validation", "test", "ood"):
        assert not text[held_out] & text["train"], held_out
        assert not voices[held_out] & voices["train"], held_out
    assert not text["test"] & text["ood"] and not text["validation"] & (text["test"] | text["ood"])
    assert voices["test"] == voices["ood"] == set(VOICES["es"][-NUM_TEST_VOICES:])
    # out of domain: no training topic; in domain: none of the held-out topics
    topics = read_topics()
    topic_of = {normalise(q): t for t, qs in topics.items() for q in qs}
    assert {topic_of[s] for s in text["ood"]} <= set(OOD_TOPICS)
    assert not {topic_of[s] for s in text["train"] | text["test"]} & set(OOD_TOPICS)
    assert plan_quotes_corpus(1200, 0.04, seed=0) == corpora  # deterministic


def test_the_written_corpus_keeps_its_splits(tmp_path):
    make_demo_corpus(tmp_path, count=20, test_fraction=0.1, progress=False, text="quotes", workers=1)
    indomain = list(csv.DictReader(open(tmp_path / "indomain" / "metadata.csv", encoding="utf-8")))
    ood = list(csv.DictReader(open(tmp_path / "ood" / "metadata.csv", encoding="utf-8")))
    assert [r["split"] for r in indomain].count("train") == 16 and len(ood) == 2
    assert {r["split"] for r in ood} == {"test"}
    assert all((tmp_path / "indomain" / r["file_name"]).stat().st_size > 1000 for r in indomain)
    assert all((tmp_path / "ood" / r["file_name"]).stat().st_size > 1000 for r in ood)
