"""Shared fixtures: real speech from espeak-ng, written at test time in every format."""

from __future__ import annotations

import numpy as np
import pytest
from long_audio import espeak

SPANISH = [
    "El médico compra una carta larga en la cocina.",
    "La abuela lee el periódico por la mañana.",
    "Mi hermano abre la ventana grande antes de cenar.",
    "La pintora lava los platos sucios después de la clase.",
]


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    return espeak(SPANISH[0])


@pytest.fixture(scope="session")
def sentences() -> list[tuple[str, np.ndarray, int]]:
    return [(text, *espeak(text)) for text in SPANISH]


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory):
    """Shards of 60 espeak utterances (max 10 s, 9 samples per shard): train, validation and test splits."""
    from mwc_dist.config import DataConfig
    from mwc_dist.data.shard import shard_source
    from mwc_dist.demo.corpus import make_demo_corpus

    root = tmp_path_factory.mktemp("demo_shards")
    make_demo_corpus(root / "data", count=60, test_fraction=0.1, progress=False)
    shard_source(
        DataConfig(source=str(root / "data"), max_duration_seconds=10, shard_samples=9),
        root / "shards",
        workers=1,
        progress=False,
    )
    return root / "shards"


@pytest.fixture(scope="session")
def long_shards(tmp_path_factory, sentences):
    """Windows of at most 10 s cut from 6 recordings of ~20 s (a JSONL with segments): 5 train shards (one
    recording each), 1 validation shard; every window but each recording's first has a previous text."""
    import json

    from long_audio import long_recording

    from mwc_dist.audio.encode import write_audio
    from mwc_dist.config import DataConfig
    from mwc_dist.data.shard import shard_source

    root = tmp_path_factory.mktemp("long_shards")
    rows = []
    for r in range(6):
        wave, segments = long_recording(sentences, [(r + k) % 4 for k in range(6)])
        write_audio(root / f"talk{r}.flac", wave, 16000)
        segs = [{"start": s, "end": e, "text": t} for s, e, t in segments]
        rows.append({"audio": f"talk{r}.flac", "segments": segs, "split": "validation" if r == 5 else "train"})
    (root / "talks.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    cfg = DataConfig(source=str(root / "talks.jsonl"), max_duration_seconds=10, shard_samples=1, language="es")
    shard_source(cfg, root / "shards", workers=1, progress=False)
    return root / "shards"
