"""Content-addressed grading cache: nothing re-done for an unchanged submission.

An entry is a directory named by the hash of everything its content depends on (the submission's
source and weights, the relevant settings, the data set, the toolchain's versions and a hash of
the harness's own code, so an upgrade of either never re-uses a stale grade). Every entry has one
shape, its manifest (`Manifest`, a record of codec.py): the stage's end (its result's JSON form, or
the student's failure) and the sha256 of every file. An entry whose manifest is not that (read
through codec.loads), whose result is not its stage's record, or whose files do not match is
reported, deleted and rebuilt, never trusted. Entries appear atomically (built aside, then
renamed), so an interrupted run leaves no half-written entry. Deleting the cache directory is
always safe. Only the trusted side writes here: sandboxed children never learn its path, and it is
private to its owner (0700).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import filelock

from pytest_akida_grade import __version__
from pytest_akida_grade.codec import Record, RecordError, load
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.results import Stage
from pytest_akida_grade.settings import Settings

MANIFEST = "manifest.json"
MANIFEST_BYTES = 64 << 20  # a build's layer specs are the largest result: far below this
R = TypeVar("R", bound=Record)
TOOLCHAIN = ("tensorflow", "tf_keras", "quantizeml", "cnn2snn", "akida", "numpy")
PACKAGE = Path(__file__).resolve().parent


def cache_key(kind: str, **parts: Any) -> str:
    """A stable hash of a stage's inputs, the toolchain and the harness's own code."""
    payload = json.dumps({"kind": kind, "harness": harness_identity(), **parts},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def build_key(student: Mapping[str, str | None], s: Settings, data_sha256: str | None) -> str:
    """The build stage's key. `data_sha256` for a pre-trained model only: its Akida 1.0 truth
    is calibrated as its grade is, on the data set."""
    calibration = {"data": data_sha256, "samples": s.calibration_samples,
                   "split": s.validation_split, "limit": s.train_limit} if data_sha256 else {}
    return cache_key("build", **student, seed=s.seed, **calibration)


def grade_keys(student: Mapping[str, str | None], s: Settings, data_sha256: str) -> dict[str, str]:
    """The keys of the trained weights and of the grade computed from them."""
    trained = cache_key(
        "trained", **student, epochs=s.epochs, batch_size=s.batch_size, seed=s.seed,
        validation_split=s.validation_split, train_limit=s.train_limit, data=data_sha256)
    grade = cache_key("grade", trained=trained, attempts=s.quantize_attempts,
                      calibration=s.calibration_samples, test_limit=s.test_limit)
    return {"trained": trained, "grade": grade}


def harness_identity() -> dict[str, str]:
    """Versions of the toolchain and a hash of every file of this package (code and assets)."""
    return {**toolchain_versions(), "harness": __version__, "code": code_digest()}


@functools.cache
def toolchain_versions() -> dict[str, str]:
    return {name: _version(name) for name in TOOLCHAIN}


@functools.cache
def code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    """An entry's one shape: its stage's end and the sha256 of each of its files."""

    result: dict[str, object] | None  # the result's JSON form (None: a failure)
    failure: str | None = None  # a stage that failed for the student (a build), cached
    files: dict[str, str]

    def stage(self, shape: type[R]) -> Stage[R]:
        if self.failure is not None:
            return Stage(failure=self.failure)
        return Stage(result=shape.from_json(self.result))


@dataclass(frozen=True, kw_only=True)
class FilesOnly(Record):
    """The result of an entry that is its files alone (trained weights)."""


@dataclass(frozen=True)
class Entry(Generic[R]):
    directory: Path
    stage: Stage[R]  # the cached stage's end: its typed result, or the student's failure

    def file(self, name: str) -> Path:
        return self.directory / name


class Cache:
    """`root=None` disables it (--akida-no-cache): every load misses, every store is dropped."""

    def __init__(self, root: Path | None,
                 on_problem: Callable[[str], None] = lambda message: None) -> None:
        self.root = root
        self.on_problem = on_problem

    def lock(self, kind: str, key: str) -> contextlib.AbstractContextManager[object]:
        """Held while an entry is computed: another process (xdist worker) needing the same
        entry waits for it instead of computing it twice."""
        if self.root is None:
            return contextlib.nullcontext()
        self.make_private()
        path = self._lock_path(self.root, kind, key)
        path.parent.mkdir(exist_ok=True)
        return filelock.FileLock(str(path))

    def busy(self, kind: str, key: str) -> bool:
        """Whether another process holds the entry's lock (is computing it) right now."""
        if self.root is None:
            return False
        probe = filelock.FileLock(str(self._lock_path(self.root, kind, key)), timeout=0)
        try:
            probe.acquire()
        except (filelock.Timeout, OSError):
            return True
        probe.release()
        return False

    @staticmethod
    def _lock_path(root: Path, kind: str, key: str) -> Path:
        return root / "locks" / f"{kind}-{key[:32]}.lock"

    def make_private(self) -> None:
        """Only the grader's user may read or write it (a sandbox's uid never)."""
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)

    def _directory(self, kind: str, key: str) -> Path:
        assert self.root is not None
        return self.root / kind / key

    def load(self, kind: str, key: str, shape: type[R]) -> Entry[R] | None:
        """The entry with its stage as `shape`; None when there is none, or when it was corrupt
        (then it is reported and deleted)."""
        if self.root is None:
            return None
        directory = self._directory(kind, key)
        if not directory.exists():
            return None
        try:
            stage = _manifest(directory).stage(shape)
        except (OSError, RecordError) as problem:
            self.on_problem(f"corrupt cache entry {directory} ({problem}): rebuilding it")
            shutil.rmtree(directory, ignore_errors=True)
            return None
        return Entry(directory, stage)

    def store(self, kind: str, key: str, stage: Stage[R],
              files: dict[str, Path] | None = None) -> Entry[R] | None:
        """Copy `files` into a new entry with the stage's end; None when caching is off."""
        if self.root is None:
            return None
        final = self._directory(kind, key)
        self.make_private()
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
        hashes = {}
        for name, source in (files or {}).items():
            shutil.copyfile(source, staging / name)
            hashes[name] = file_sha256(staging / name)
        manifest = Manifest(result=None if stage.result is None else stage.result.to_json(),
                            failure=stage.failure, files=hashes)
        (staging / MANIFEST).write_text(json.dumps(manifest.to_json()))
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:  # another process stored the same entry first: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
        return Entry(final, stage)


def _manifest(directory: Path) -> Manifest:
    """The entry's manifest, every file checked against it; RecordError saying what is wrong."""
    manifest = Manifest.from_json(load(directory / MANIFEST, what=MANIFEST, limit=MANIFEST_BYTES))
    for name, expected in manifest.files.items():
        path = directory / name
        if Path(name).name != name or not path.is_file():
            raise RecordError(f"{name[:60]} is missing")
        if file_sha256(path) != expected:
            raise RecordError(f"{name} does not match its recorded hash")
    return manifest
