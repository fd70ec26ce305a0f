"""The config loader and the manifest readers, fuzzed with hypothesis: a result, or a clear error naming file/key."""

import json
import os
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mwc_dist.config import SEED_KEYS, Config, ConfigError, DataConfig, load_config
from mwc_dist.data.sources import SourceError, list_items

# derandomized in `make test` (the same 150 cases every run); MWC_FUZZ_EXAMPLES=5000 explores fresh ones
EXAMPLES = int(os.environ.get("MWC_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=not EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

SECTIONS = [
    "data",
    "model",
    "train",
    "checkpoint",
    "export",
    "tracking",
    "training",
    "distillation",
    "lora",
    "quantization",
]
KEYS = sorted(
    {k.split(".", 1)[1] for k in SEED_KEYS}
    | {
        "shard_dir",
        "max_steps",
        "learning_rate",
        "mixed_precision",
        "report_to",
        "save_strategy",
        "language",
        "lr",
        "bogus",
    }
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["no", "yes", "fp16", "bf16", "1e-3", "~", "[]", "{}"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
trees = st.dictionaries(
    st.sampled_from(SECTIONS) | st.text(max_size=10),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), values, max_size=4) | values,
    max_size=4,
)


def _loads_or_explains(path: Path, overrides=()) -> None:
    try:
        cfg = load_config(path, list(overrides))
    except ConfigError as exc:
        message = str(exc)
        assert message and (str(path) in message or "'" in message or ":" in message), message
        return
    assert isinstance(cfg, Config)


@FUZZ
@given(tree=trees)
def test_config_from_any_yaml_mapping(tree, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    _loads_or_explains(path)


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_config_from_any_text(text, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape") if text else b"")
    _loads_or_explains(path)


@FUZZ
@given(items=st.lists(st.text(alphabet=string.printable, max_size=40), max_size=5))
def test_overrides_of_any_shape(items, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("")
    _loads_or_explains(path, items)


cells = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["a.wav", "missing.flac", "../x.wav", "", "train", "trian", "/etc/passwd", "good.wav"]),
)


def _reads_or_explains(source: Path) -> None:
    try:
        items, rejects = list_items(DataConfig(source=str(source)))
    except SourceError as exc:
        assert str(source) in str(exc) or "data." in str(exc), str(exc)
        return
    for r in rejects:
        assert r.reason and r.detail and r.source
    assert all(i.text.strip() for i in items)


def _good(tmp: Path) -> None:
    import numpy as np
    import soundfile as sf

    if not (tmp / "good.wav").exists():
        sf.write(tmp / "good.wav", np.zeros(1600, dtype=np.float32), 16000)


@FUZZ
@given(
    header=st.lists(
        st.sampled_from(["audio", "text", "file_name", "transcription", "split", "id", "x"]) | st.text(max_size=8),
        min_size=1,
        max_size=4,
    ),
    rows=st.lists(st.lists(cells, max_size=5), max_size=6),
)
def test_csv_manifest_of_any_shape(header, rows, tmp_path):
    import csv
    import io

    _good(tmp_path)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path / "manifest.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", errors="surrogateescape")
    _reads_or_explains(path)


json_rows = st.lists(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["audio", "text", "split", "id", "language"]) | st.text(max_size=5),
            values | cells,
            max_size=4,
        ),
        values,
    ),
    max_size=6,
)


@FUZZ
@given(rows=json_rows, as_lines=st.booleans(), wrap=st.booleans())
def test_json_manifest_of_any_shape(rows, as_lines, wrap, tmp_path):
    _good(tmp_path)
    if as_lines:
        path = tmp_path / "manifest.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"data": rows} if wrap else rows))
    _reads_or_explains(path)


@FUZZ
@given(blob=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".json", ".jsonl"]))
def test_manifest_of_random_bytes(blob, suffix, tmp_path):
    path = tmp_path / f"manifest{suffix}"
    path.write_bytes(blob)
    _reads_or_explains(path)
