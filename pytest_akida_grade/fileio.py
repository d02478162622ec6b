"""The file jobs every stage shares: an atomic write, a file's sha256, and the CSV every writer
writes (its cells safe to open in a spreadsheet). No imports from here."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
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


# ------------------------------------------------------------------------------------- CSV
# A spreadsheet runs a cell that starts with = + - @ (or a tab or a carriage return before one)
# as a formula: a file or display name a student chose (`=2+5.py`, `@SUM(1).py`) would run when a
# TA opens the gradebook (OWASP "CSV injection"). Such a cell is written with a leading
# apostrophe, which spreadsheets show as text and do not display; a number stays a number.

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
MARK = "'"


def _formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) and NUMBER.fullmatch(text) is None


def spreadsheet_cell(value: object) -> str:
    """The cell as written: text that would run as a formula gets a leading apostrophe (so
    does text whose apostrophes hide one: reading it back is exact)."""
    text = "" if value is None else str(value)
    return MARK + text if _formula(text.lstrip(MARK)) else text


def read_cell(text: str) -> str:
    """A cell `spreadsheet_cell` wrote, as it was before."""
    return text[1:] if text.startswith(MARK) and _formula(text.lstrip(MARK)) else text


def csv_text(rows: Iterable[Iterable[object]], *, ending: str = "\r\n") -> str:
    """The CSV every writer writes: every cell through `spreadsheet_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=ending)
    writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()
