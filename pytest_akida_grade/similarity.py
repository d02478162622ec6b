"""Similar submissions: a compact fingerprint per student, and the pairs that look copied.

A fingerprint (docs/contracts.md) is computed in the trusted pytest process from bytes: the
student's files, and the model.json / weights.npz the sandbox handed over (numpy, no pickle);
never by importing student code. It holds hashes and a small sketch per layer, not the weights:

- source: the module's tokens without comments, blank lines and spacing (tokenize only lexes);
- weights_file: the sha256 of <name>.weights.h5, when submitted;
- architecture: the layer classes and weight shapes, not their names (a rename changes nothing);
- sketch: per kernel (weights of rank 2 or more), a row per filter / unit that permuting the
  previous layer's filters does not change (per input position: the sum and the norm of its
  weights over the input channels); comparing matches each unit with its best twin, so the
  filters' order does not matter either. A copy scores 1, a lightly perturbed copy above 0.99,
  independently trained filters far below (no twin in a 9+ dimensional space).

Near-identical weights: every layer at THRESHOLD or more; or, when either student handed in a
weights file, at least half the layers at THRESHOLD and none below FLOOR: a copy trained one more
epoch keeps most layers at 0.99 or more and drifts in a few (measured: 0.992, 0.995, 0.996,
0.999, 0.996 and 0.963 for the final Dense), while independently trained models of the same
architecture score -0.43 to 0.47 (at most 0.68 on small data). Not when both trained from the
grader's seeded initial weights (train(), the default recipe): those share a start, and
honest recipes end 0.89-0.99 apart, so only the strict rule holds for them.

Pure: numpy, the standard library and the codec's readers (codec.py); no pytest, no TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import tokenize
from collections.abc import Iterable, Mapping
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from pytest_akida_grade.codec import RecordError, arrays, loads
from pytest_akida_grade.results import Route

SKETCH = 64  # numbers per unit at most (longer descriptors are projected)
MAX_UNITS = 64  # units per layer kept in a record
MIN_POSITIONS = 4  # input positions a descriptor needs to tell units apart
QUANTILE = 0.2  # a layer's score: this quantile of its units' best matches (robust to a few)
THRESHOLD = 0.99  # every kernel at least this correlated: near-identical weights
FLOOR = 0.9  # a copy trained further: no layer below this (independent models: at most 0.68)
DIGITS = 4  # significant digits kept in a record
MAX_DEPTH = 64  # model.json nesting walked (a hostile file may nest deeper)
TEMPLATE = "the unmodified template (student_models/template.py)"
# The normalised source hash of student_models/template.py (tests/test_similarity.py keeps it
# in sync): two students who both hand in the template are not copying each other.
TEMPLATE_SOURCE = "5265674080fa4dd96215151385f1c5e2ef36209fb677d400c1b112f25ffc431e"
INITIAL = "initial"  # a fingerprint's weights: the build's own, before any training
# Weights the grader made from the seeded build (not the student's own: a weights file, train()).
SEEDED = (Route.DEFAULT_RECIPE.value, INITIAL)
WEIGHTS_FILE = Route.WEIGHTS_FILE.value  # the student's own weights, from their own start
SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


# ---------------------------------------------------------------- fingerprints


def source_hash(source: bytes) -> str:
    """sha256 of the module's tokens: comments, blank lines and spacing do not count."""
    try:
        tokens = [f"{t.type}:{t.string}" for t in tokenize.tokenize(io.BytesIO(source).readline)
                  if t.type not in SKIPPED_TOKENS]
        text = "\n".join(tokens)
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError, ValueError):
        text = " ".join(source.decode("utf-8", "replace").split())  # not Python: spacing only
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _classes(node: object, depth: int = 0) -> list[str]:
    """The layer classes of a model.json, in order (nested models flattened)."""
    if depth > MAX_DEPTH:
        return []
    if isinstance(node, Mapping):
        found = [str(node["class_name"])] if "class_name" in node and "config" in node else []
        return found + [c for key, value in node.items() if key != "class_name"
                        for c in _classes(value, depth + 1)]
    if isinstance(node, list):
        return [c for value in node for c in _classes(value, depth + 1)]
    return []


def architecture_hash(model_json: bytes, shapes: Iterable[tuple[int, ...]]) -> str:
    """sha256 of the layer classes and weight shapes (layer names left out)."""
    try:
        classes = _classes(loads(model_json, what="model.json", limit=len(model_json),
                                 finite=False))
    except RecordError:
        classes = ["unreadable"]
    text = json.dumps([classes, [list(shape) for shape in shapes]])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _descriptors(kernel: npt.NDArray[np.generic], channels: int) -> npt.NDArray[np.float64] | None:
    """One row per filter / unit that no permutation of the previous layer's outputs changes:
    at each input position, the sum of its weights over the input channels and their norm
    (centred). After a Flatten, a position is a pixel (channels are the fastest axis)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    outputs, inputs = kernel.shape[-1], kernel.shape[-2]
    if channels <= 0 or inputs % channels:
        channels = 1  # the inputs are not the previous layer's channels: each is a position
    grouped = np.moveaxis(kernel, -1, 0).reshape(outputs, -1, channels)
    if grouped.shape[1] < MIN_POSITIONS:
        return None  # a dense layer after a dense one: nothing order-free to compare
    norms = np.sqrt(np.square(grouped).sum(axis=2))
    rows = np.concatenate([grouped.sum(axis=2), norms - norms.mean(axis=1, keepdims=True)], 1)
    if rows.shape[1] > SKETCH:
        rows = rows @ np.random.default_rng(rows.shape[1]).standard_normal((rows.shape[1],
                                                                             SKETCH))
    if outputs > MAX_UNITS:  # the strongest units: a copy keeps nearly the same ones
        rows = rows[np.argsort(-np.square(grouped).sum(axis=(1, 2)), kind="stable")[:MAX_UNITS]]
    return np.asarray(rows, dtype=np.float64)


def sketches(kernels: Iterable[npt.NDArray[np.generic]]) -> list[list[list[float]]]:
    """Per kernel (in model order) its units' descriptors, rounded for the record."""
    found, channels = [], 0
    for kernel in kernels:
        rows = _descriptors(kernel, channels)
        channels = kernel.shape[-1]
        if rows is not None:
            found.append([[float(f"{v:.{DIGITS}g}") for v in row] for row in rows])
    return found


def weights_fingerprint(arrays: Iterable[npt.NDArray[np.generic]],
                        model_json: bytes) -> dict[str, object]:
    """architecture and sketch of a model's weights (get_weights() order)."""
    arrays = list(arrays)
    kernels = [a for a in arrays if a.ndim >= 2 and a.size > 1 and np.isfinite(a).all()]
    return {"architecture": architecture_hash(model_json, (a.shape for a in arrays)),
            "sketch": sketches(kernels)}


def read_npz(data: bytes) -> list[npt.NDArray[np.generic]]:
    """The arrays of a weights.npz (np.savez of get_weights(): arr_0, arr_1, ...), no pickle."""
    return arrays(data, what="weights.npz", limit=len(data))


def fingerprint(source: bytes | None, weights_file: str | None, model_json: bytes | None,
                weights_npz: bytes | None, weights: str) -> dict[str, object]:
    """A student's fingerprint; what cannot be read is left out (None), never an error."""
    found: dict[str, object] = {"source": None if source is None else source_hash(source),
                             "weights_file": weights_file,
                             "weights": weights}
    if model_json is not None and weights_npz is not None:
        with contextlib.suppress(RecordError, ValueError, TypeError, MemoryError):
            # a hostile export (read by the codec): compared by its hashes alone
            found.update(weights_fingerprint(read_npz(weights_npz), model_json))
    return found


# ---------------------------------------------------------------- comparing them


def _cosines(u: npt.NDArray[np.float64],
             v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(u, axis=1)[:, None] * np.linalg.norm(v, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (u @ v.T) / np.where(norms > 0, norms, 1.0), 0.0)


def _layer_score(x: object, y: object) -> float | None:
    """How well each unit of one layer finds its twin in the other (either way round)."""
    try:
        u, v = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if u.ndim != 2 or u.shape != v.shape or u.size == 0 or u.shape[0] > MAX_UNITS \
            or u.shape[1] > SKETCH or not np.isfinite(u).all() or not np.isfinite(v).all():
        return None  # not a sketch this module wrote (a grade file edited by hand)
    cosines = _cosines(u, v)
    return float(min(np.quantile(cosines.max(axis=1), QUANTILE),
                     np.quantile(cosines.max(axis=0), QUANTILE)))


def correlations(a: Mapping[str, object], b: Mapping[str, object]) -> list[float] | None:
    """Per-layer scores of two sketches of the same architecture, else None."""
    first, second = a.get("sketch"), b.get("sketch")
    if not first or not isinstance(first, list) or not isinstance(second, list) \
            or len(first) != len(second):
        return None
    found = [_layer_score(x, y) for x, y in zip(first, second, strict=True)]
    return None if any(score is None for score in found) else [s for s in found if s is not None]


def copied_layers(scores: list[float], *, drift: bool) -> str | None:
    """Which layers are near-identical when that makes a copy: "every layer"; with `drift` (a
    weights file on either side) "k of n layers, the others at least FLOOR" when k >= n / 2 (a
    copy trained further); else None."""
    if not scores or not all(math.isfinite(c) for c in scores):
        return None
    close = sum(1 for c in scores if c >= THRESHOLD)
    if close == len(scores):
        return "every layer"
    if drift and 2 * close >= len(scores) and min(scores) >= FLOOR:
        return (f"{close} of {len(scores)} layers, the others at least {FLOOR:g} (a copy trained "
                "further drifts a little)")
    return None


def _weights_reason(a: Mapping[str, object], b: Mapping[str, object]) -> str | None:
    if a.get("architecture") is None or a.get("architecture") != b.get("architecture"):
        return None
    found = correlations(a, b)
    drift = WEIGHTS_FILE in (a.get("weights"), b.get("weights"))
    layers = None if found is None else copied_layers(found, drift=drift)
    if found is None or layers is None:
        return None
    figures = ", ".join(f"{c:.4f}" for c in found)
    if a.get("weights") in SEEDED and b.get("weights") in SEEDED:
        return ("the same layer types and weight shapes, and neither handed in weights nor "
                "train(): the grader's seeded default recipe gives such models the same weights, "
                f"so this alone is not copying (per-layer correlation {figures})")
    return (f"the same layer types and weight shapes and near-identical weights in {layers}, "
            f"filters in any order (per-layer correlation {figures}; "
            f"{a.get('weights')} / {b.get('weights')})")


def why_similar(a: Mapping[str, object], b: Mapping[str, object]) -> str | None:
    """Why two fingerprints look like one submission, or None."""
    if a.get("source") is not None and a.get("source") == b.get("source"):
        if a["source"] == TEMPLATE_SOURCE:
            return f"both are {TEMPLATE}, not a copy of each other"
        reasons = ["the same source, comments and spacing aside"]
    else:
        reasons = []
    if a.get("weights_file") and a.get("weights_file") == b.get("weights_file"):
        reasons.append(f"identical weights files (sha256 {str(a['weights_file'])[:12]}...)")
    weights = _weights_reason(a, b)
    if weights is not None and (not reasons or a.get("weights") not in SEEDED):
        reasons.append(weights)
    return "; ".join(reasons) if reasons else None


class Pair(TypedDict):
    """Two students whose submissions look alike, and why (for the instructor only)."""

    students: list[str]
    why: str


def similar_pairs(records: Iterable[Mapping[str, object]]) -> list[Pair]:
    """[{"students": [a, b], "why": ...}] for every pair of records that look alike."""
    printed = sorted(((str(r["student"]), found) for r in records
                      if isinstance(found := r.get("fingerprint"), Mapping)),
                     key=lambda named: named[0])
    pairs: list[Pair] = []
    for (a, first), (b, second) in itertools.combinations(printed, 2):
        why = why_similar(first, second)
        if why is not None:
            pairs.append({"students": [a, b], "why": why})
    return pairs
