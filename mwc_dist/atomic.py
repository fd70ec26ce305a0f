"""Writing a file so that a reader sees the old one or the whole new one, never a half-written file.

The bytes go to a temporary name beside the target (same filesystem), are flushed to disk, and the name is
swapped in with ``os.replace``, which is atomic on POSIX. The temporary name is unique per process and call, so
parallel writers (SLURM array tasks writing the same plan) never share one; a failed write leaves no stray file.
Folders (checkpoints, exports, converted models) are published the same way by their own code: written under a
``.tmp`` name, then renamed.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, fsync: bool = True):
    """Yields a temporary file name beside ``path``; when the block ends without an error the file written there
    becomes ``path`` (fsynced first), otherwise it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    """``path`` holds ``data`` (str as UTF-8), all of it, or keeps what it held."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
