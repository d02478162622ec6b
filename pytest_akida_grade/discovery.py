"""Which files are submissions and their shape, what identifies one (its name, source and
weights), what a students folder holds that is not graded (and why), and which part of a sharded
class a student belongs to.

Three shapes are handed in (`Shape`): the handout's notebook (`<name>.ipynb`), a module with the
handout's names (`model_keras`, no `build_model()`), and a module with `build_model()`. Nothing
here parses a submission: a notebook is known by its name, a module's shape by a line starting
`def build_model(` or `model_keras =`; the sandbox runs it and finds what it really defines.

A module whose file name is not a plain Python name (`john-doe.py`, `Jane Smith.py`, `José.py`,
`2nd.py`) is graded under a normalised name (`john_doe`, `Jane_Smith`, `Jose`, `student_2nd`); two
files normalising alike are both graded, the later (by file name) with `_2`, `_3`... The student
name is what test ids, cache keys, reports and shards use; the record keeps the file name.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.names import (
    MODULE,
    NOTEBOOK,
    SUBMISSION_SUFFIXES,
    WEIGHTS_SUFFIX,
    is_plain_name,
    is_pytest_name,
    normalise,
    pytest_would_import,
    unique,
)

ROSTER = "roster.csv"  # written by import-submissions beside the modules: not a submission
# Not handed in: the importer's roster and pytest's own files (a class graded in its project root).
NOT_HANDED_IN = (ROSTER, "__pycache__", "pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini")
ARCHIVES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".7z", ".rar", ".gz")
IMPORT_HINT = "python -m pytest_akida_grade import-submissions"
SUFFIXES = SUBMISSION_SUFFIXES
SHAPE_BYTES = 1 << 20  # of a module, read for its shape (a longer one: the rest is not read)
DEFINES_BUILD_MODEL = re.compile(rb"^(?:async[ \t]+)?def[ \t]+build_model[ \t]*\(", re.MULTILINE)
ASSIGNS_MODEL_KERAS = re.compile(rb"^model_keras[ \t]*(?::[^=\n]*)?=(?!=)", re.MULTILINE)


class Shape(enum.Enum):
    """What a student hands in, which sets how long its sandbox may run and what it gets."""

    NOTEBOOK = "notebook"  # the handout's: its cells run in order, its training included
    HANDOUT = "module with the handout's names"  # model_keras (and its training) at import
    BUILD_MODEL = "module with build_model()"  # our contract

    @property
    def trains_itself(self) -> bool:
        """Its own code may train its model while it runs: it gets the training data (keras'
        mnist.load_data()) and akida_grade_timeout, and its weights may come trained."""
        return self is not Shape.BUILD_MODEL


@functools.lru_cache(maxsize=4096)
def shape_of(path: Path, size: int, mtime_ns: int) -> Shape:
    """By name; a module by its lines (read, never parsed): the handout's shape when one starts
    `model_keras =` and none `def build_model(`, else our contract (whose limits bind a module
    that defines neither: the sandbox then says what it lacks)."""
    if path.suffix == NOTEBOOK:
        return Shape.NOTEBOOK
    try:
        with path.open("rb") as handle:
            head = handle.read(SHAPE_BYTES)
    except OSError:
        return Shape.BUILD_MODEL
    handout = ASSIGNS_MODEL_KERAS.search(head) and not DEFINES_BUILD_MODEL.search(head)
    return Shape.HANDOUT if handout else Shape.BUILD_MODEL


@dataclass(frozen=True)
class Submission:
    name: str  # the student: a plain Python name, unique in the class
    path: Path

    @property
    def shape(self) -> Shape:
        try:
            found = self.path.stat()
        except OSError:
            return Shape.BUILD_MODEL
        return shape_of(self.path, found.st_size, found.st_mtime_ns)

    @property
    def weights_path(self) -> Path:
        """`<file stem>.weights.h5` beside the module: loaded instead of training when present."""
        return self.path.with_name(self.path.stem + WEIGHTS_SUFFIX)

    def content_hashes(self) -> dict[str, str | None]:
        """Hashes of everything of the student's that grading depends on."""
        weights = self.weights_path
        return {
            "source": file_sha256(self.path),
            "weights": file_sha256(weights) if weights.is_file() else None,
        }


@dataclass(frozen=True)
class NotGraded:
    """A file (or folder) of a students folder that is not graded: why, and what to do."""
    file: str
    reason: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason, "fix": self.fix}


def is_submission_name(path: Path) -> bool:
    """`<anything>.py` or `<anything>.ipynb` whose name is text, not private (`_x.py`) and not a
    file pytest imports (`test_x.py`)."""
    return (path.suffix in SUFFIXES and path.stem != "" and not path.name.startswith("_")
            and is_text(path.name) and not is_pytest_name(path.name))


def is_text(name: str) -> bool:
    """A file name that is valid UTF-8 (one that is not holds bytes no report can write)."""
    return name == shown(name)


def shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 replaced (U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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


def _listing(entries: list[Path]) -> list[Path]:
    """The files of these students directories (or the files themselves), each once."""
    seen: dict[Path, None] = {}
    for entry in entries:
        paths = sorted(entry.iterdir()) if entry.is_dir() else [entry]
        seen.update((path.resolve(), None) for path in paths)
    return list(seen)


def student_names(entries: list[Path]) -> dict[Path, str]:
    """Each submission's student name, by resolved path: a plain stem stays itself, the others
    are normalised, and a name already taken gets `_2`, `_3`... (in file name order)."""
    modules = [p for p in _listing(entries) if p.is_file() and is_submission_name(p)]
    modules.sort(key=lambda p: (p.name, str(p)))
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for plain in (True, False):  # plain names first: john_doe.py keeps john_doe
        for path in modules:
            if is_plain_name(path.stem) != plain:
                continue
            names[path] = unique(path.stem if plain else normalise(path.stem), taken)
    return names


def find_class(entries: list[Path], shard: tuple[int, int] | None = None) -> list[Submission]:
    """Every submission of these students directories (or files), in shard `I/N` when given."""
    found = sorted((name, path) for path, name in student_names(entries).items())
    return [Submission(name, path) for name, path in found
            if shard is None or shard_of(name, shard[1]) == shard[0]]


def not_graded(entries: list[Path]) -> list[NotGraded]:
    """What the students directories hold that is not graded, each with the reason and the fix.
    Hidden files, the importer's roster and the files pytest itself reads are left out."""
    listing = _listing([e for e in entries if e.is_dir()])
    modules = {p.name for p in listing if p.is_file() and is_submission_name(p)}
    found = []
    for path in listing:
        name = path.name
        stem = name.removesuffix(WEIGHTS_SUFFIX)  # of weights: graded with their submission
        if name.startswith(".") or name in NOT_HANDED_IN or is_pytest_name(name) \
                or name in modules or (name.endswith(WEIGHTS_SUFFIX) and (
                    any(stem + suffix in modules for suffix in SUFFIXES)
                    or is_pytest_name(stem + MODULE))):
            continue
        found.append(_why_not(path, modules))
    return sorted(found, key=lambda item: item.file)


def _why_not(path: Path, modules: set[str]) -> NotGraded:
    name, lower = shown(path.name), path.name.lower()
    if not is_text(path.name):
        return NotGraded(name, "its name is not valid UTF-8 text (no report can show it)",
                         "rename it with letters, digits and _ (<name>.py)")
    if path.is_dir():
        return NotGraded(name, "a folder: only the files directly in the students folder are "
                         "graded", f"put its <name>.py in the students folder (an LMS download: "
                         f"{IMPORT_HINT})")
    if lower.endswith(WEIGHTS_SUFFIX):
        stem = name[: -len(WEIGHTS_SUFFIX)]
        return NotGraded(name, f"weights without their submission: no {stem}.ipynb or "
                               f"{stem}.py beside them",
                         f"hand in {stem}.ipynb (or {stem}.py) with the weights")
    if lower.endswith(ARCHIVES):
        return NotGraded(name, "an archive is not unpacked",
                         f"unpack it into the students folder (an LMS download: {IMPORT_HINT})")
    if path.suffix in SUFFIXES:  # _private.py
        return NotGraded(name, "a name starting with _ is private, not a submission",
                         "rename it without the leading _ to grade it")
    return NotGraded(name, "not a notebook or a Python module",
                     "hand in the notebook as <name>.ipynb (or a module as <name>.py)")


def shard_of(name: str, count: int) -> int:
    """The part (1..count) a student belongs to: a stable hash of the name, not of the order
    of files or of the machine, so every machine splits a class the same way."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


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
