"""The README's corpus-layout examples, as written there: their files laid out, real espeak-ng audio at the paths
they name, and their `mwc shard` command run; every item becomes a sample (README stays true to the code)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from mwc_dist import cli
from mwc_dist.audio.encode import write_audio

README = Path(__file__).parents[2] / "README.md"
ITEMS = {"cv": 2, "nemo/train_manifest.json": 2, "LibriSpeech": 1, "kaldi": 2}  # the rows each example lists


def examples() -> dict[str, dict]:
    """layout source -> {audio: [paths], command: [...], files: {path: text}}."""
    text = README.read_text(encoding="utf-8")
    found: dict[str, dict] = {}
    for m in re.finditer(r"<!-- layout: (\S+); audio: ([^>]*?) -->\n```bash\n(.*?)\n```", text, re.S):
        found[m.group(1)] = {"audio": m.group(2).split(), "command": shlex.split(m.group(3)), "files": {}}
    for m in re.finditer(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.S):
        root = next(k for k in found if m.group(1).startswith(k.split("/")[0] + "/"))
        found[root]["files"][m.group(1)] = m.group(2)
    return found


def test_the_readme_shows_every_layout():
    assert set(examples()) == set(ITEMS)


@pytest.mark.parametrize("layout", sorted(ITEMS))
def test_readme_layout_example_shards_as_written(layout, tmp_path, monkeypatch, sentences):
    example = examples()[layout]
    for path, content in example["files"].items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content, encoding="utf-8")
    for n, path in enumerate(example["audio"]):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        _, wave, rate = sentences[n % len(sentences)]
        write_audio(tmp_path / path, wave, rate)
    command = example["command"]
    assert command[:2] == ["mwc", "shard"]
    args = command[2:]
    out = tmp_path / args[args.index("--out") + 1]
    monkeypatch.chdir(tmp_path)  # the README's relative paths
    assert cli.main(["shard", *args, "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quarantined"] == 0, (out / "quarantine.jsonl").read_text()
    assert sum(s["num_samples"] for s in summary["splits"].values()) == ITEMS[layout]
