"""Similar submissions: fingerprints of copied, renamed, permuted, perturbed and fine-tuned
submissions match, independently trained ones and distinct architectures do not (numpy only, no
TensorFlow here; one test trains real tiny models in a child process).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
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


# ---------------------------------------------------------------- a copy trained further

# Issue 29's measurement: a classmate's weights trained one more epoch, against the original.
FINE_TUNED = (0.992, 0.995, 0.996, 0.999, 0.996, 0.963)
SIX_KERNELS = ((3, 3, 1, 16), (3, 3, 16, 16), (3, 3, 16, 32), (3, 3, 32, 32), (3, 3, 32, 32),
               (7 * 7 * 32, 10))
SIX_LAYERS = tuple(f"layer_{i}" for i in range(len(SIX_KERNELS)))
SIX_CLASSES = ("Conv2D",) * 5 + ("Dense",)


def _six_layer_print(kernels: Weights, source: bytes, route: str = "weights file"
                     ) -> dict[str, Any]:
    weights = [array for kernel in kernels for array in (kernel, np.zeros(kernel.shape[-1]))]
    model = _model_json(SIX_LAYERS, SIX_CLASSES)
    return similarity.fingerprint(source, None, model, _npz(weights), route)


def _six_kernels(seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.2, shape) for shape in SIX_KERNELS]


def _layer_score(original: npt.NDArray[Any], changed: npt.NDArray[Any], channels: int) -> float:
    (rows_a,), (rows_b,) = (similarity.sketches([k]) if channels == 0 else
                            similarity.sketches([np.zeros((1, 1, 1, channels)), k])
                            for k in (original, changed))
    found = similarity.correlations({"sketch": [rows_a]}, {"sketch": [rows_b]})
    assert found is not None
    return found[0]


def _drifted(kernel: npt.NDArray[Any], target: float, channels: int, seed: int
             ) -> npt.NDArray[Any]:
    """The kernel plus noise scaled (by bisection) so that its layer scores `target`."""
    noise = np.random.default_rng(seed).normal(0, float(np.std(kernel)), kernel.shape)
    low, high = 0.0, 4.0
    for _ in range(40):
        middle = (low + high) / 2
        if _layer_score(kernel, kernel + middle * noise, channels) > target:
            low = middle
        else:
            high = middle
    return kernel + low * noise


def test_the_rule_takes_a_copy_trained_one_more_epoch_and_not_independent_models() -> None:
    assert similarity.copied_layers(list(FINE_TUNED), drift=True) == \
        "5 of 6 layers, the others at least 0.9 (a copy trained further drifts a little)"
    assert similarity.copied_layers(list(FINE_TUNED), drift=False) is None  # seeded starts
    assert similarity.copied_layers([0.999, 0.963], drift=True) is not None
    for independent in ([-0.43, 0.47, 0.2, 0.1, 0.3, 0.4], [0.995, 0.996, 0.999, 0.5],
                        [0.995, 0.89], [0.999, 0.95, 0.95, 0.95]):
        assert similarity.copied_layers(independent, drift=True) is None, independent
    assert similarity.copied_layers([0.99] * 3, drift=False) == "every layer"


def test_a_fine_tuned_copy_of_a_classmates_weights_is_reported_with_its_figures() -> None:
    """Weights built to the measured per-layer correlations: reported by
    their weights (the sources differ); an independently trained model is not."""
    original = _six_kernels(11)
    channels = [0, *(shape[-1] for shape in SIX_KERNELS[:-1])]
    copy = [_drifted(kernel, target, before, seed) for seed, (kernel, target, before)
            in enumerate(zip(original, FINE_TUNED, channels, strict=True))]
    classmate = _six_layer_print(original, b"def build_model():\n    return net(16)\n")
    tuned = _six_layer_print(copy, b"def build_model():\n    model = net(16)\n    return model\n")
    other = _six_layer_print(_six_kernels(12), b"def build_model():\n    return mine()\n")
    assert classmate["source"] != tuned["source"]
    found = similarity.correlations(classmate, tuned)
    assert found == pytest.approx(FINE_TUNED, abs=2e-3)
    independent = similarity.correlations(classmate, other)
    assert independent is not None and max(independent) < 0.7
    records = [_record("ann", classmate), _record("ben", tuned), _record("cat", other)]
    (pair,) = similarity.similar_pairs(records)
    assert pair["students"] == ["ann", "ben"]
    assert "5 of 6 layers" in pair["why"] and "0.96" in pair["why"]
    assert "weights file / weights file" in pair["why"]


TRAIN_REAL_MODELS = """
import io, os, sys
from pathlib import Path
import numpy as np
import tf_keras as keras
from pytest_akida_grade import data
source = data.resolve_mnist(os.environ.get("AKIDA_GRADE_MNIST"), Path(sys.argv[1]))
(x, y), _ = data.load_mnist(source.path)
x, y = x[:3000, ..., None].astype("float32"), y[:3000]

def model(seed):
    keras.utils.set_random_seed(seed)  # its own start, as a student's own machine gives it
    return keras.models.Sequential([
        keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),
        keras.layers.Conv2D(16, 3, padding="same"), keras.layers.ReLU(max_value=3.0),
        keras.layers.MaxPooling2D((2, 2), padding="same"),
        keras.layers.Conv2D(16, 3, padding="same"), keras.layers.ReLU(max_value=3.0),
        keras.layers.MaxPooling2D((2, 2), padding="same"),
        keras.layers.Conv2D(16, 3, padding="same"), keras.layers.ReLU(max_value=3.0),
        keras.layers.Flatten(), keras.layers.Dense(10)])

def train(net, seed, epochs):
    keras.utils.set_random_seed(seed)
    net.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return net

classmate = train(model(0), 0, 4)
copy = model(0)
copy.set_weights(classmate.get_weights())
tuned = train(copy, 1, 1)  # the classmate's weights, one more epoch
other = train(model(5), 5, 4)  # the same architecture, trained independently
for name, net in (("classmate", classmate), ("tuned", tuned), ("other", other)):
    np.savez(os.path.join(sys.argv[2], name + ".npz"), *net.get_weights())
    with open(os.path.join(sys.argv[2], name + ".json"), "w") as handle:
        handle.write(net.to_json())
"""


def test_real_models_a_copy_trained_one_more_epoch_is_reported_an_independent_one_is_not(
        tmp_path: Path, shared_cache: Path) -> None:
    """Real tf_keras training (~10 s, one child process): 4 epochs on 3,000 MNIST images, then
    the copy one more epoch; another start trained alike is the independent model."""
    subprocess.run([sys.executable, "-c", TRAIN_REAL_MODELS, str(shared_cache), str(tmp_path)],
                   check=True, capture_output=True, timeout=600,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    sources = {"classmate": b"def build_model():\n    return net()\n",
               "tuned": b"def build_model():\n    m = net()\n    return m\n",
               "other": b"def build_model():\n    return mine()\n"}
    records = [_record(name, similarity.fingerprint(
        source, None, (tmp_path / f"{name}.json").read_bytes(),
        (tmp_path / f"{name}.npz").read_bytes(), "weights file"))
        for name, source in sources.items()]
    (pair,) = similarity.similar_pairs(records)
    assert pair["students"] == ["classmate", "tuned"], pair
    assert "near-identical weights" in pair["why"]
    found = similarity.correlations(records[0]["fingerprint"], records[2]["fingerprint"])
    assert found is not None and max(found) < 0.8, found
