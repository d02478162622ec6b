"""The lab board's kit (--akida-fbz DIR): what `measure` needs to run a graded class on the board,
kept by a run without one (each shard of a class), in a folder a TA copies to the lab machine.

    DIR/<student>.fbz           the converted model the grade made (what --akida-device runs)
    DIR/<student>.json          {"format", "student", "model", "model_sha256", "test_set",
                                 "test_set_sha256", "images", "input"}
    DIR/test_set-<sha12>.npz    the test images and labels the class was graded on (x_test uint8
                                (N, 28, 28), y_test (N,)): the board runs exactly these

The board takes the images as uint8 pixels 0-255 (N, 28, 28, 1): the model's own Rescaling is
inside the converted model (cnn2snn folds it into the input layer), so no scaling is applied. The
test set's name holds its hash, so shards graded alike write the same file and folders merge by
copying; a student's entry names the test set it was graded on. Files and numpy only: no akida.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pytest_akida_grade.assignment import IMAGE_SHAPE, NUM_CLASSES
from pytest_akida_grade.codec import RecordError, arrays, load
from pytest_akida_grade.fileio import atomic_write, atomic_write_text, file_sha256

FORMAT = 1
INPUT = "uint8 pixels 0-255, shape (N, 28, 28, 1); the model's Rescaling is inside the .fbz"
MAX_ENTRY_BYTES = 64 * 1024
TEST_SET_BYTES = 256 << 20  # MNIST's 10,000 test images are 8 MB


class KitError(Exception):
    """The kit is missing or does not hold what a student's grade says; the message says which."""


@dataclass(frozen=True)
class Kept:
    """One student's model for the board and the test set it was graded on."""

    student: str
    model: Path
    model_sha256: str
    test_set: Path
    test_set_sha256: str


def _arrays_sha256(x: npt.NDArray[np.generic], y: npt.NDArray[np.generic]) -> str:
    digest = hashlib.sha256()
    for array in (x, y):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _write_test_set(directory: Path, x: npt.NDArray[np.generic],
                    y: npt.NDArray[np.generic]) -> tuple[str, str]:
    """The test set's file name and hash; written once (its name is its hash)."""
    sha = _arrays_sha256(x, y)
    name = f"test_set-{sha[:12]}.npz"
    if not (directory / name).is_file():
        atomic_write(directory / name, lambda handle: np.savez(handle, x_test=x, y_test=y),
                     mode=0o600)
    return name, sha


def keep(directory: Path, student: str, model: Path, x_test: npt.NDArray[np.generic],
         y_test: npt.NDArray[np.generic], *, file: str = "") -> Kept:
    """Copy the student's converted model and describe it (see the module's docstring)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    test_set, test_sha = _write_test_set(directory, np.asarray(x_test), np.asarray(y_test))
    target = directory / f"{student}.fbz"
    with model.open("rb") as source:
        atomic_write(target, lambda handle: shutil.copyfileobj(source, handle), mode=0o600)
    sha = file_sha256(target)
    entry = {"format": FORMAT, "student": student, "file": file, "model": target.name,
             "model_sha256": sha, "test_set": test_set, "test_set_sha256": test_sha,
             "images": len(y_test), "input": INPUT}
    atomic_write_text(directory / f"{student}.json", json.dumps(entry, indent=2) + "\n")
    return Kept(student, target, sha, directory / test_set, test_sha)


def _entry(path: Path) -> Kept:
    where = str(path)
    try:
        data = load(path, what=where, limit=MAX_ENTRY_BYTES)
    except RecordError as error:
        raise KitError(str(error)) from None
    names = ("student", "model", "model_sha256", "test_set", "test_set_sha256")
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            not all(isinstance(data.get(k), str) for k in names):
        raise KitError(f"{where}: not a kit entry of format {FORMAT} (written by --akida-fbz)")
    for key in ("model", "test_set"):
        if Path(data[key]).name != data[key]:
            raise KitError(f"{where}: {key} {data[key]!r} is not a file name in the kit")
    return Kept(data["student"], path.parent / data["model"], data["model_sha256"],
                path.parent / data["test_set"], data["test_set_sha256"])


def read(directory: Path, students: Iterable[str]) -> dict[str, Kept]:
    """The kit's entries of these students (a student without one is left out); KitError when
    the folder is missing or an entry is unreadable."""
    if not directory.is_dir():
        raise KitError(f"--fbz {directory}: no such folder (a graded run's --akida-fbz DIR)")
    found = {}
    for student in students:
        path = directory / f"{student}.json"
        if path.is_file():
            found[student] = _entry(path)
    return found


def test_set(kept: Kept) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]:
    """The images and labels a student was graded on, checked against their hash and shape."""
    try:
        x, y = arrays(kept.test_set, what=f"{kept.test_set}", limit=TEST_SET_BYTES,
                      names=("x_test", "y_test"))
    except RecordError as error:
        raise KitError(f"not a test set of the kit: {error}") from None
    if _arrays_sha256(x, y) != kept.test_set_sha256:
        raise KitError(f"{kept.test_set}: its contents changed since {kept.student} was graded")
    if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or y.shape != (len(x),) or \
            not len(x) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= NUM_CLASSES:
        raise KitError(f"{kept.test_set}: expected uint8 images (N, 28, 28) and labels 0-9")
    return x, y


def model_matches(kept: Kept) -> bool:
    """The kept model is the one described (not replaced or damaged since)."""
    return kept.model.is_file() and file_sha256(kept.model) == kept.model_sha256
