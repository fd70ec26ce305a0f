"""mwc_dist/atomic.py: a reader sees the old file or the whole new one; a failed write leaves nothing behind."""

from __future__ import annotations

import pytest

from mwc_dist.atomic import atomic_path, write_atomic


def test_write_atomic_replaces_the_whole_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_atomic(path, "old")
    write_atomic(path, "ñew")  # str goes in as UTF-8
    assert path.read_bytes() == "ñew".encode()
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "shard.tar"
    path.write_text("complete")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.tar"]


def test_each_writer_gets_its_own_temporary_name(tmp_path):
    """Array tasks write the same plan at once: two open writers never share a temporary file."""
    path = tmp_path / "plan.json"
    with atomic_path(path) as a, atomic_path(path) as b:
        assert a != b and a.parent == b.parent == tmp_path
        a.write_text("a")
        b.write_text("b")
    assert path.read_text() == "a"  # the outer block ends last: the last rename wins, whole
