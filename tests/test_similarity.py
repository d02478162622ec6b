"""Similar submissions: fingerprints of copied, renamed, permuted and perturbed submissions match,
independently trained ones and distinct architectures do not (pure: numpy only, no TensorFlow).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pytest_akida_grade import similarity

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = (REPO / "student_models" / "template.py").read_bytes()

Weights = list[npt.NDArray[Any]]


def _model_json(names: tuple[str, ...] = ("conv2d", "conv2d_1", "dense"),
                classes: tuple[str, ...] = ("Conv2D", "Conv2D", "Dense")) -> bytes:
    layers = [{"class_name": c, "config": {"name": n, "filters": 16}}
              for n, c in zip(names, classes, strict=True)]
    return json.dumps({"class_name": "Sequential",
                       "config": {"name": "mnistnet", "layers": layers}}).encode()


def _trained(seed: int) -> Weights:
    """Made-up 'trained' weights of a conv-conv-dense model: kernels and biases."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, (3, 3, 1, 16)), rng.normal(0, 0.1, 16),
            rng.normal(0, 0.1, (3, 3, 16, 16)), rng.normal(0, 0.1, 16),
            rng.normal(0, 0.05, (784, 10)), rng.normal(0, 0.1, 10)]


def _permuted(weights: Weights, seed: int = 7) -> Weights:
    """The same network with both convolutions' filters in another order (the next layer's
    input channels follow, the Dense's after the Flatten too): the same function, other arrays."""
    rng = np.random.default_rng(seed)
    one, two = rng.permutation(16), rng.permutation(16)
    first, bias, second, bias2, dense, bias3 = weights
    flat = (np.arange(49)[:, None] * 16 + two[None, :]).ravel()
    return [first[..., one], bias[one], second[:, :, one, :][..., two], bias2[two],
            dense[flat], bias3]


def _npz(weights: Weights) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    return buffer.getvalue()


def _print(weights: Weights, *, source: bytes = b"x = 1\n", route: str = "weights file",
           weights_file: str | None = None, names: tuple[str, ...] | None = None
           ) -> dict[str, Any]:
    model = _model_json(names) if names else _model_json()
    return similarity.fingerprint(source, weights_file, model, _npz(weights), route)


def _record(student: str, fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {"student": student, "checks": {}, "metrics": {}, "fingerprint": fingerprint}


def test_the_template_hash_is_the_template_files() -> None:
    assert similarity.source_hash(TEMPLATE) == similarity.TEMPLATE_SOURCE


def test_comments_blank_lines_and_spacing_do_not_change_the_source_hash() -> None:
    source = b"def build_model():\n    return make(16, 3)\n"
    restyled = b"# mine!\n\ndef build_model( ):   # really\n    return make(16,3)\n\n\n"
    changed = b"def build_model():\n    return make(32, 3)\n"
    assert similarity.source_hash(source) == similarity.source_hash(restyled)
    assert similarity.source_hash(source) != similarity.source_hash(changed)
    assert similarity.source_hash(b"\xff\xfe not python (") == similarity.source_hash(
        b"\xff\xfe   not python (")


def test_a_permuted_copy_finds_a_twin_for_every_filter() -> None:
    weights = _trained(1)
    permuted = _permuted(weights)
    assert not np.array_equal(weights[0], permuted[0])
    assert _print(weights)["sketch"] != _print(permuted)["sketch"]
    found = similarity.correlations(_print(weights), _print(permuted))
    assert found is not None and len(found) == 3 and min(found) > 0.99999


def test_renamed_layers_keep_the_architecture_other_layers_change_it() -> None:
    weights = _trained(1)
    renamed = _print(weights, names=("a", "b", "c"))
    assert renamed["architecture"] == _print(weights)["architecture"]
    wider = [*weights[:4], np.zeros((784, 12)), np.zeros(12)]
    assert _print(wider)["architecture"] != _print(weights)["architecture"]


@pytest.mark.parametrize("seed", range(5))
def test_independently_trained_weights_stay_far_below_the_threshold(seed: int) -> None:
    found = similarity.correlations(_print(_trained(seed)), _print(_trained(100 + seed)))
    assert found is not None and max(found) < 0.9


@pytest.mark.parametrize("seed", range(5))
def test_a_perturbed_permuted_copy_stays_above_the_threshold(seed: int) -> None:
    weights = _trained(seed)
    rng = np.random.default_rng(seed)
    noisy = [w + rng.normal(0, 0.01 * float(np.std(w)), w.shape)
             for w in _permuted(weights, seed)]
    found = similarity.correlations(_print(weights), _print(noisy))
    assert found is not None and min(found) >= similarity.THRESHOLD


def test_a_hostile_export_is_fingerprinted_by_its_hashes_alone() -> None:
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for data in (b"not a zip", _npz([np.array([object()], dtype=object)])):
        found = similarity.fingerprint(b"x = 1\n", None, _model_json(), data, "weights file")
        assert set(found) == {"source", "weights_file", "weights"}
    nested = b"[" * 100_000 + b"]" * 100_000
    assert "architecture" in similarity.fingerprint(b"", None, nested, _npz(_trained(1)), "x")


def test_the_class_report_names_copies_and_not_honest_models() -> None:
    alice = _trained(1)
    records = [
        _record("alice", _print(alice, source=b"a = 1\n", weights_file="f" * 64)),
        _record("bob", _print(_permuted(alice), source=b"b = 2\n", names=("x", "y", "z"))),
        _record("carol", _print(_trained(2), source=b"c = 3\n")),
        _record("dave", _print(_trained(3), source=b"d = 4\n", weights_file="f" * 64)),
        _record("erin", _print([*_trained(4)[:4], np.ones((784, 12)), np.ones(12)],
                               source=b"# erin\na = 1\n")),
        _record("frank", similarity.fingerprint(TEMPLATE, None, None, None, "none")),
        _record("grace", similarity.fingerprint(TEMPLATE + b"\n# done\n", None, None, None,
                                                "none")),
    ]
    pairs = {tuple(pair["students"]): pair["why"] for pair in similarity.similar_pairs(records)}
    assert set(pairs) == {("alice", "bob"), ("alice", "dave"), ("alice", "erin"),
                          ("frank", "grace")}
    assert "near-identical weights" in pairs[("alice", "bob")]
    assert "identical weights files" in pairs[("alice", "dave")]
    assert pairs[("alice", "erin")] == "the same source, comments and spacing aside"
    assert pairs[("frank", "grace")].startswith("both are the unmodified template")


def test_the_seeded_default_recipe_is_said_to_explain_identical_weights() -> None:
    seeded = _trained(5)
    records = [_record(name, _print(seeded, source=name.encode(), route="default recipe"))
               for name in ("ann", "ben")]
    (pair,) = similarity.similar_pairs(records)
    assert "seeded default recipe" in pair["why"] and "not copying" in pair["why"]
