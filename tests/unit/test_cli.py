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


def test_every_keyed_flag_overrides_a_real_key_and_says_which():
    """One configuration system: a flag that stands for a config key names it in its help, and parsing it sets that
    key (and nothing when it is not given, so the key keeps its --config or default value)."""
    from mwc_dist.cli.options import keyed_flags
    from mwc_dist.config import Config

    keys = {name: set(section) for name, section in Config().to_dict().items()}
    keyed = {}
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if "." in action.dest:
                section, key = action.dest.split(".")
                assert key in keys[section], f"mwc {name} {action.option_strings}: no key {action.dest}"
                assert f"[{action.dest}; default " in action.help
                keyed.setdefault(name, set()).add(action.dest)
    assert {"eval", "pseudo-label", "export", "shard"} <= set(keyed)
    parser = build_parser()
    args = parser.parse_args(
        ["export", "--model", "m", "--out", "o", "--opset", "14", "--optimize", "--task", "translate"]
    )
    assert keyed_flags(args) == {
        "export.onnx_opset_version": 14,
        "export.onnx_optimize": True,
        "model.task": "translate",
    }
    assert keyed_flags(parser.parse_args(["eval", "--model", "m", "--out", "o"])) == {}


def test_eval_reads_the_run_config_and_its_flags_win(demo_shards, tmp_path):
    """`mwc eval --config run.yaml` evaluates the run's own shard folder and split with its generation settings;
    a dotted override beats the file and a flag beats both."""
    from mwc_dist.models.build import materialize_preset

    model = materialize_preset("tiny-random", seed=3)
    run = tmp_path / "run.yaml"
    run.write_text(
        f"data: {{shard_dir: {demo_shards}, eval_split: test, language: es}}\n"
        "train: {eval_max_samples: 2, per_device_eval_batch_size: 1, generation_max_length: 3}\n"
    )
    test_keys = _split_keys(demo_shards, "test")

    def predictions(out, *extra):
        assert main(["eval", "--config", str(run), "--model", str(model), "--out", str(out), "--no-guard", *extra]) == 0
        return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]

    rows = predictions(tmp_path / "file")
    assert len(rows) == 2 and {r["key"] for r in rows} <= test_keys
    assert len(predictions(tmp_path / "override", "train.eval_max_samples=1")) == 1
    assert len(predictions(tmp_path / "flag", "--limit", "3", "train.eval_max_samples=1")) == 3
    assert {r["key"] for r in predictions(tmp_path / "split", "--split", "validation")}.isdisjoint(test_keys)


def _split_keys(shards: Path, split: str) -> set[str]:
    import webdataset as wds

    manifest = json.loads((shards / f"{split}.manifest.json").read_text())
    urls = [str(shards / entry["shard"]) for entry in manifest["shards"]]
    return {sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False)}
