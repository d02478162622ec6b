"""Content-addressed grading cache: nothing re-done for an unchanged submission.

An entry is a directory named by the hash of everything its content depends on (the submission's
source and weights, the relevant settings, the data set, the toolchain's versions and a hash of
the harness's own code, so an upgrade of either never re-uses a stale grade). Its manifest lists
the sha256 of every file; an entry whose files do not match is reported, deleted and rebuilt, never
trusted. Entries appear atomically (built aside, then renamed), so an interrupted run leaves no
half-written entry. Deleting the cache directory is always safe. Only the trusted side writes
here: sandboxed children never learn its path, and it is private to its owner (0700).
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
from typing import Any, TypeVar

import filelock

from pytest_akida_grade import __version__
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.results import HarnessError, ResultError, Stage
from pytest_akida_grade.settings import Settings

MANIFEST = "manifest.json"
T = TypeVar("T")
TOOLCHAIN = ("tensorflow", "tf_keras", "quantizeml", "cnn2snn", "akida", "numpy")
PACKAGE = Path(__file__).resolve().parent


def cache_key(kind: str, **parts: Any) -> str:
    """A stable hash of a stage's inputs, the toolchain and the harness's own code."""
    payload = json.dumps({"kind": kind, "harness": harness_fingerprint(), **parts},
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


def harness_fingerprint() -> dict[str, str]:
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


@dataclass(frozen=True)
class Entry:
    directory: Path
    result: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.directory / name

    def stage(self, parse: Callable[[Any], T]) -> Stage[T]:
        """The cached stage; an entry of another shape is unusable: say how to get rid of it."""
        result: Any = self.result
        if "failure" in result and "result" in result:  # a result, or a cached failure
            if result["failure"] is not None:
                return Stage(failure=str(result["failure"]))
            result = result["result"]
        try:
            return Stage(result=parse(result))
        except ResultError as error:
            raise HarnessError(f"cache entry {self.directory} is unusable ({error}); delete it "
                               "(make clean-cache)") from None


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

    def load(self, kind: str, key: str) -> Entry | None:
        if self.root is None:
            return None
        directory = self._directory(kind, key)
        if not directory.exists():
            return None
        problem = _verify(directory)
        if problem:
            self.on_problem(f"corrupt cache entry {directory} ({problem}): rebuilding it")
            shutil.rmtree(directory, ignore_errors=True)
            return None
        manifest = json.loads((directory / MANIFEST).read_text())
        return Entry(directory, manifest["result"])

    def store(self, kind: str, key: str, result: dict[str, Any],
              files: dict[str, Path] | None = None) -> Entry | None:
        """Copy `files` into a new entry with `result`; None when caching is off."""
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
        (staging / MANIFEST).write_text(json.dumps({"result": result, "files": hashes}))
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:  # another process stored the same entry first: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
        return Entry(final, result)


def _verify(directory: Path) -> str | None:
    """What is wrong with an entry, or None when every file matches its manifest."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(manifest["result"], dict) or not isinstance(files, dict):
            return "malformed manifest"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable manifest: {error}"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if file_sha256(path) != expected:
            return f"{name} does not match its recorded hash"
    return None
