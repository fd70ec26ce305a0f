"""The `mwc` command: every option is explained, errors are clear, and demo-data -> shard works end to end."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mwc_dist.cli import build_parser, main
from mwc_dist.demo.corpus import FORMAT_CYCLE, NUM_TEST_VOICES, VOICES, make_demo_corpus, plan_corpus

MWC = [sys.executable, "-m", "mwc_dist.cli"]


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


@pytest.mark.parametrize(
    "command",
    [None, "shard", "demo-data", "train", "eval", "import-ct2", "make-student", "export", "transcribe", "demo"],
)
def test_help_explains_every_option(command):
    parser = build_parser()
    target = parser if command is None else _subparsers(parser)[command]
    for action in target._actions:
        assert action.help, f"mwc {command or ''}: option {action.option_strings or action.dest} has no help"
    args = [command, "--help"] if command else ["--help"]
    out = subprocess.run(MWC + args, capture_output=True, text=True, check=True).stdout
    for action in target._actions:
        for flag in action.option_strings:
            assert flag in out


def test_demo_plan_holds_out_sentences_and_voices():
    utts = plan_corpus("es", 400, 0.1, seed=0)
    train = [u for u in utts if u.split != "test"]
    test = [u for u in utts if u.split == "test"]
    assert len(test) == 40
    assert not {u.text for u in train} & {u.text for u in test}
    assert not {(u.voice, u.variant) for u in train} & {(u.voice, u.variant) for u in test}
    assert {(u.voice, u.variant) for u in test} == set(VOICES["es"][-NUM_TEST_VOICES:])
    assert {u.fmt for u in utts} == set(FORMAT_CYCLE)
    assert plan_corpus("es", 400, 0.1, seed=0) == utts  # deterministic


def test_demo_data_then_shard_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        main(
            [
                "demo-data",
                "--out",
                str(data),
                "--text",
                "grammar",
                "--num-utterances",
                "24",
                "--test-fraction",
                "0.25",
                "--quiet",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(data / "metadata.csv")))
    assert len(rows) == 24 and sum(r["split"] == "test" for r in rows) == 6
    assert {Path(r["file_name"]).suffix[1:] for r in rows} == set(FORMAT_CYCLE)
    out = tmp_path / "shards"
    assert (
        main(
            [
                "shard",
                "--source",
                str(data),
                "--out",
                str(out),
                "--quiet",
                "--workers",
                "1",
                "data.shard_samples=5",
                "data.validation_split_ratio=0.2",
                "data.train_split_ratio=0.8",
            ]
        )
        == 0
    )
    manifests = {s: json.loads((out / f"{s}.manifest.json").read_text()) for s in ("train", "validation", "test")}
    assert manifests["test"]["num_samples"] == 6  # metadata's split=test is kept
    assert sum(m["num_samples"] for m in manifests.values()) == 24
    assert (out / "quarantine.jsonl").read_text() == ""
    assert "train" in capsys.readouterr().out
    # a re-run reuses every file and every shard
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*.*") if p.name != "metadata.csv"}
    make_demo_corpus(data, count=24, test_fraction=0.25, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["shard", "--out", str(tmp_path), "data.max_duraton_seconds=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'data.max_duration_seconds'" in err
    assert main(["shard", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["shard", "--merge-only", "--out", str(tmp_path / "never")]) == 2
    assert "no shard plan" in capsys.readouterr().err
