"""Whisper's temperature fallback (mwc_dist.inference.decoding.decode_with_fallback): which rows are decoded again,
and which candidate is kept. The decoder here is a table (the selection logic is pure); tests/export runs it through the
three real backends."""

import pytest
import torch

from mwc_dist.inference.decoding import Guard, compression_ratio, decode_with_fallback
from mwc_dist.metrics import repeated_run

LOOP = "en las " * 20
GOOD = "más vale tarde que nunca"
# (text, mean log-probability) per row and temperature
TABLE = {
    0: {0.0: (GOOD, -0.2)},  # passes at once
    1: {0.0: (LOOP, -0.1), 0.2: (LOOP, -0.3), 0.4: ("a quien madruga dios le ayuda", -0.5)},  # loop, then passes
    2: {t: (f"quizá {t}", -2.0 + t) for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)},  # never confident enough
}


def test_compression_ratio_flags_loops():
    assert compression_ratio(LOOP) > 2.4 > compression_ratio(GOOD)
    assert repeated_run(LOOP) == "en las" and compression_ratio("") == 0.0


def test_only_failing_rows_are_decoded_again_and_the_right_candidate_is_kept():
    calls = []

    def decode(features, temperature):
        rows = features[:, 0].tolist()
        calls.append((temperature, rows))
        out = [TABLE[r].get(temperature, TABLE[r][max(TABLE[r])]) for r in rows]
        return [[r, int(temperature * 10)] for r in rows], [lp for _, lp in out]

    def to_text(ids):
        row, tenth = ids
        table = TABLE[row]
        return table.get(tenth / 10, table[max(table)])[0]

    greedy, guarded = decode_with_fallback(decode, torch.arange(3)[:, None], Guard(), to_text)
    assert [g.text for g in greedy] == [GOOD, LOOP, "quizá 0.0"]
    assert calls == [(0.0, [0, 1, 2]), (0.2, [1, 2]), (0.4, [1, 2]), (0.6, [2]), (0.8, [2]), (1.0, [2])]
    assert (guarded[0].text, guarded[0].temperature) == (GOOD, 0.0)
    assert (guarded[1].text, guarded[1].temperature) == ("a quien madruga dios le ayuda", 0.4)
    # never passed: the best-scoring candidate under the compression threshold
    assert (guarded[2].text, guarded[2].temperature) == ("quizá 1.0", 1.0)
    assert guarded[2].avg_logprob == pytest.approx(-1.0)
    # a threshold every log-probability meets: only the loop is decoded again
    calls.clear()
    _, same = decode_with_fallback(decode, torch.arange(3)[:, None], Guard(logprob_threshold=-9.0), to_text)
    assert [s.text for s in same] == [GOOD, "a quien madruga dios le ayuda", "quizá 0.0"]
    assert calls == [(0.0, [0, 1, 2]), (0.2, [1]), (0.4, [1])]  # only the loop goes on


def test_without_a_log_probability_threshold_only_loops_are_decoded_again():
    guard = Guard(logprob_threshold=None)
    assert guard.passes(GOOD, -5.0) and not guard.passes(LOOP, 0.0)


def test_a_short_loop_that_gzip_misses_is_caught_by_the_repeat_check():
    short = "Cuando muere a los dos, muere, muere, muere, muere, muesto."
    assert compression_ratio(short) < 2.4  # Whisper's own test lets it through
    assert not Guard().passes(short, -0.1) and Guard(max_repeats=None).passes(short, -0.1)
    assert Guard().passes("No, no. Dijo que no vendría mañana.", -0.1)  # two in a row is speech, not a loop
