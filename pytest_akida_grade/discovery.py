"""Which files are submissions, what identifies one (its name, source and weights), and which
part of a sharded class it belongs to."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pytest_akida_grade.fileio import file_sha256

WEIGHTS_SUFFIX = ".weights.h5"


@dataclass(frozen=True)
class Submission:
    name: str
    path: Path

    @property
    def weights_path(self) -> Path:
        """`<name>.weights.h5` beside the module: loaded instead of training when present."""
        return self.path.with_name(self.name + WEIGHTS_SUFFIX)

    def fingerprint(self) -> dict[str, str | None]:
        """Hashes of everything of the student's that grading depends on."""
        weights = self.weights_path
        return {
            "source": file_sha256(self.path),
            "weights": file_sha256(weights) if weights.is_file() else None,
        }


def is_submission_name(path: Path) -> bool:
    """`<name>.py`, not private (`_x.py`) and not a test module (`test_x.py`)."""
    return (
        path.suffix == ".py"
        and not path.name.startswith(("_", "test_"))
        and path.name != "conftest.py"
        and path.stem.isidentifier()
    )


def is_submission(path: Path, student_dirs: list[Path]) -> bool:
    """A submission-named file directly inside a students directory, or named as one itself."""
    path = path.resolve()
    if not is_submission_name(path):
        return False
    for entry in student_dirs:
        entry = entry.resolve()
        if entry == path or (entry.is_dir() and path.parent == entry):
            return True
    return False


def find_class(entries: list[Path], shard: tuple[int, int] | None = None) -> list[Submission]:
    """Every submission of these students directories (or files), in shard `I/N` when given."""
    found: dict[str, Submission] = {}
    for entry in entries:
        paths = sorted(entry.iterdir()) if entry.is_dir() else [entry]
        for path in paths:
            if path.is_file() and is_submission_name(path):
                found.setdefault(path.stem, Submission(path.stem, path.resolve()))
    return [s for name, s in sorted(found.items())
            if shard is None or shard_of(name, shard[1]) == shard[0]]


def shard_of(name: str, count: int) -> int:
    """The part (1..count) a student belongs to: a stable hash of the name, not of the order
    of files or of the machine, so every machine splits a class the same way."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def is_pytest_name(name: str) -> bool:
    """A file pytest itself would import (conftest, test modules, packages): never a student's."""
    stem = name.lower().removesuffix(".py")  # lower: on a case-blind disk Test_x.py is test_x
    return (stem in ("conftest", "__init__") or stem.startswith("test_")
            or stem.endswith("_test"))


def pytest_would_import(name: str) -> bool:
    """A module of a pytest name (its default python_files, conftest, a package's __init__), or
    a `.pth` (run by `site` wherever it lands)."""
    lower = name.lower()
    return lower.endswith(".pth") or (lower.endswith(".py") and is_pytest_name(name))


def code_pytest_would_import(entry: Path) -> list[Path]:
    """Every file in a students directory (subdirectories too, links followed once) that
    pytest would import; for a single file, the file itself when named so."""
    if not entry.is_dir():
        return [entry] if entry.is_file() and pytest_would_import(entry.name) else []
    found: list[Path] = []
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(entry, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: walked already
            subfolders.clear()
            continue
        seen.add(real)
        subfolders.sort()
        found += [Path(folder, name) for name in sorted(files) if pytest_would_import(name)]
    return found


def is_inside(path: Path, entry: Path) -> bool:
    """`path` is `entry` or lies anywhere below it (both resolved)."""
    path, entry = path.resolve(), entry.resolve()
    return path == entry or entry in path.parents
