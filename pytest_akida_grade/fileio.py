"""The file jobs every stage shares: an atomic write and a file's sha256. No imports from here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object],
                 *, mode: int = 0o644) -> None:
    """Write `path` through a temporary file, fsync and a rename: readers (other processes too)
    see the old file or the whole new one, never half of it, even after a crash."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), mode=mode)


TRACE_ENV = "AKIDA_GRADE_TRACE"  # a file: one JSON line per process job (benchmarks read it)


def trace(record: dict[str, object]) -> None:
    """Append a record to the trace file, when one is asked for (AKIDA_GRADE_TRACE)."""
    target = os.environ.get(TRACE_ENV)
    if target:
        with contextlib.suppress(OSError), open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({**record, "at": round(time.time(), 3)}) + "\n")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()  # hashlib.file_digest is 3.11+
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
