"""The accuracy checks end to end: real training, quantization, conversion, in child processes.

Every run selects only the two accuracy checks. The `grading` fixture shares one cache across the
session, so a submission that several tests grade with the same settings trains once; a test that
needs a fresh computation uses a source, a setting or a flag no other test uses. Budget: CI has two
cores, so each grading that trains costs ~25 s; keep their number down.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from made_up import TEMPLATE_LAYERS, add_student, save_weights, student_source

ACCURACY = ("-k", "quantized_accuracy or akida_accuracy")
GOOD = student_source()
EPOCH_LINE = re.compile(r"\[akida-grade\] (\w+): epoch (\d+)/(\d+): loss \d+\.\d+, "
                        r"accuracy \d+\.\d+, val_accuracy \d+\.\d+$")
FIGURES = ("float_accuracy", "quantized_accuracy", "akida_accuracy")
# The weight shapes of GOOD: three 3x3 convolutions of 16 filters, then Dense(7 * 7 * 16 -> 10).
GOOD_WEIGHT_SHAPES = [(16,), (3, 3, 1, 16), (16,), (3, 3, 16, 16), (16,), (3, 3, 16, 16),
                      (10,), (784, 10)]
# Quantizeml cannot quantize a BatchNormalization that follows a ReLU: the Akida model is cut
# there, silently upstream (a warning only).
CUT = """
    keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.BatchNormalization(),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
"""
# Saves build_model()'s weights, optionally loaded from a file first, the way students do.
TRAIN_FUNCTION = """
def train(model, x_train, y_train):
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
"""


# ---------------------------------------------------------------------------- helpers


def grade(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Run the accuracy checks; the result and the --akida-json records by student."""
    result = pytester.runpytest(*ACCURACY, "--akida-json=grades.json", *args)
    records = json.loads((pytester.path / "grades.json").read_text())["students"]
    return result, {record["student"]: record for record in records}


def epoch_lines(result: pytest.RunResult) -> list[tuple[str, int, int]]:
    """(student, epoch, epochs) of every per-epoch progress line in the terminal output."""
    found = (EPOCH_LINE.match(line) for line in result.outlines)
    return [(m[1], int(m[2]), int(m[3])) for m in found if m]


def progress_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("[akida-grade]")]


def figures(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record["metrics"].get(name) for name in FIGURES}


def weight_shapes(weights: Path) -> list[tuple[int, ...]]:
    """The shapes of the arrays in the harness's weights file (.npz), in the model's order."""
    with np.load(weights) as arrays:
        return [arrays[f"arr_{i}"].shape for i in range(len(arrays.files))]


def trained_weights_of_good(cache: Path) -> Path:
    """Weights the harness trained for GOOD's architecture, out of the shared grading cache."""
    for weights in sorted(cache.glob("trained/*/weights.npz")):
        if sorted(weight_shapes(weights)) == sorted(GOOD_WEIGHT_SHAPES):
            return weights
    raise AssertionError(f"no trained weights of GOOD's architecture in {cache}/trained")


def good_graded(pytester: pytest.Pytester) -> dict[str, Any]:
    """GOOD graded by the default recipe (trained once per session), as `alice`."""
    path = add_student(pytester, "alice", GOOD)
    result, records = grade(pytester)
    result.assert_outcomes(passed=2, deselected=6)
    path.unlink()
    return records["alice"]


# ---------------------------------------------------------------------------- the default recipe


def test_the_default_recipe_passes_both_accuracy_checks_and_reports_its_figures(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", GOOD)
    result, records = grade(grading)
    result.assert_outcomes(passed=2, deselected=6)
    metrics = records["alice"]["metrics"]
    for name in FIGURES:
        assert isinstance(metrics[name], float)
        assert 0.5 <= metrics[name] <= 1.0, (name, metrics[name])
    assert metrics["training"].startswith("default recipe")
    assert metrics["n_test"] == 500
    assert isinstance(metrics["nps"], int) and metrics["nps"] > 0
    assert isinstance(metrics["program_memory_bytes"], int)
    assert metrics["program_memory_bytes"] > 0
    assert set(records["alice"]["checks"]) == {"quantized_accuracy", "akida_accuracy"}
    result.stdout.fnmatch_lines(["*alice: 2/2 checks passed; quantized *; akida *"])


def test_a_higher_minimum_accuracy_fails_both_checks_saying_what_is_needed(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", GOOD)
    result, records = grade(grading, "-o", "akida_min_accuracy=0.99")
    result.assert_outcomes(failed=2, deselected=6)
    checks = records["alice"]["checks"]
    for name in ("quantized_accuracy", "akida_accuracy"):
        assert checks[name]["outcome"] == "failed"
        assert checks[name]["message"].endswith("; needs at least 99.00 %")
    result.stdout.fnmatch_lines(["*needs at least 99.00 %*"])
    assert records["alice"]["metrics"]["akida_accuracy"] < 0.99


def test_changing_the_epochs_retrains_showing_loss_and_accuracy_per_epoch(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", GOOD)
    result, records = grade(grading, "-o", "akida_epochs=2")
    result.assert_outcomes(passed=2, deselected=6)
    assert epoch_lines(result) == [("alice", 1, 2), ("alice", 2, 2)]
    assert records["alice"]["metrics"]["training"] == "default recipe"
    # Progress reaches the terminal while the child runs, before the checks' own outcomes.
    first_progress = result.outlines.index(progress_lines(result)[0])
    summary = next(i for i, line in enumerate(result.outlines) if "akida grades" in line)
    assert first_progress < summary


# ---------------------------------------------------------------------------- the cache


def test_an_unchanged_regrade_reuses_the_cached_results(grading: pytest.Pytester) -> None:
    add_student(grading, "alice", GOOD)
    _, first = grade(grading)  # trains, unless an earlier test already did
    again, second = grade(grading)
    again.assert_outcomes(passed=2, deselected=6)
    assert progress_lines(again) == []
    assert second["alice"]["metrics"] == first["alice"]["metrics"]
    assert second["alice"]["checks"] == first["alice"]["checks"]


def test_changing_the_source_even_a_comment_grades_again_with_identical_figures(
        grading: pytest.Pytester) -> None:
    cached = good_graded(grading)
    add_student(grading, "alice", GOOD + "\n# a comment changes nothing but the file\n")
    result, records = grade(grading)
    result.assert_outcomes(passed=2, deselected=6)
    assert epoch_lines(result) == [("alice", 1, 1)]
    assert figures(records["alice"]) == figures(cached)  # seeded: same model, same figures


def test_no_cache_grades_from_scratch_and_gets_identical_figures(
        grading: pytest.Pytester) -> None:
    """Determinism: the cached figures were computed earlier in this session, from scratch too."""
    cached = good_graded(grading)
    add_student(grading, "alice", GOOD)
    result, records = grade(grading, "--akida-no-cache")
    result.assert_outcomes(passed=2, deselected=6)
    assert epoch_lines(result) == [("alice", 1, 1)]
    assert figures(records["alice"]) == figures(cached)
    assert records["alice"]["metrics"]["training"] == "default recipe"  # not "(cached)"


# ---------------------------------------------------------------------------- training routes


def test_a_weights_file_beside_the_module_is_loaded_instead_of_training(
        grading: pytest.Pytester, shared_cache: Path) -> None:
    good_graded(grading)
    module = add_student(grading, "bob", GOOD)
    save_weights(module, module.with_name("bob.weights.h5"), trained_weights_of_good(shared_cache))
    result, records = grade(grading)
    result.assert_outcomes(passed=2, deselected=6)
    assert epoch_lines(result) == []
    assert records["bob"]["metrics"]["training"] == "weights file"
    assert records["bob"]["metrics"]["float_accuracy"] >= 0.5  # trained weights, not random


def test_a_train_function_in_the_module_trains_the_model(grading: pytest.Pytester) -> None:
    add_student(grading, "carol", student_source(extra=TRAIN_FUNCTION))
    result, records = grade(grading)
    result.assert_outcomes(passed=2, deselected=6)
    assert epoch_lines(result) == []
    result.stdout.fnmatch_lines(["[[]akida-grade[]] carol: calling the submission's train()"])
    assert records["carol"]["metrics"]["training"] == "train()"


def test_a_weights_file_that_does_not_fit_the_model_fails_both_checks_naming_the_file(
        grading: pytest.Pytester) -> None:
    other = grading.path / "template.py"  # two convolutions, not GOOD's three
    other.write_text(student_source(TEMPLATE_LAYERS))
    module = add_student(grading, "dave", GOOD)
    save_weights(other, module.with_name("dave.weights.h5"))
    result, records = grade(grading)
    result.assert_outcomes(failed=2, deselected=6)
    for check in records["dave"]["checks"].values():
        assert check["message"].startswith("not graded: ")
        assert "dave.weights.h5 does not fit the model build_model() returns" in check["message"]
    result.stdout.fnmatch_lines(["*dave.weights.h5 does not fit the model*"])


# ---------------------------------------------------------------------------- conversion


def test_a_model_that_quantization_silently_cuts_fails_akida_accuracy_naming_the_layer(
        grading: pytest.Pytester) -> None:
    add_student(grading, "erin", student_source(CUT))
    result, records = grade(grading)
    checks = records["erin"]["checks"]
    assert checks["akida_accuracy"]["outcome"] == "failed"
    message = checks["akida_accuracy"]["message"]
    assert "quantization stopped at layer 'batch_normalization' (BatchNormalization)" in message
    assert "akida_accuracy" not in records["erin"]["metrics"]
    result.stdout.fnmatch_lines(["*erin::akida_accuracy*", "*stopped at layer*"])


# ---------------------------------------------------------------------------- the real test set


def test_grading_on_all_ten_thousand_test_images(grading: pytest.Pytester) -> None:
    """The one run on the full test set, as grades are given (small training keeps it short)."""
    add_student(grading, "frank", GOOD)
    result, records = grade(grading, "-o", "akida_test_limit=0", "-o", "akida_train_limit=6000")
    result.assert_outcomes(passed=2, deselected=6)
    metrics = records["frank"]["metrics"]
    assert metrics["n_test"] == 10000
    for name in FIGURES:
        assert 0.75 <= metrics[name] <= 1.0, (name, metrics[name])
    assert abs(metrics["akida_accuracy"] - metrics["quantized_accuracy"]) <= 0.02
    assert "on 10000 test images" in records["frank"]["checks"]["akida_accuracy"]["message"]


def test_a_wrong_mnist_file_is_an_error_naming_it_never_a_grade(grading: pytest.Pytester) -> None:
    add_student(grading, "alice", GOOD)
    (grading.path / "cifar.npz").write_bytes(b"not an npz at all")
    result = grading.runpytest(*ACCURACY, "--akida-mnist", "cifar.npz", "--akida-json=g.json")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*cifar.npz*"])
    checks = json.loads((grading.path / "g.json").read_text())["students"][0]["checks"]
    assert {c["outcome"] for c in checks.values()} == {"error"}
    assert "cifar.npz" in checks["quantized_accuracy"]["message"]


def test_a_submission_that_hangs_does_not_keep_the_class_waiting_for_its_training(
        grading: pytest.Pytester) -> None:
    """Training starts in the background with `loads`; a hang found there stops it too."""
    add_student(grading, "hangs", "import time\nwhile True:\n    time.sleep(1)\n")
    result = grading.runpytest("-o", "akida_timeout=15", "-o", "akida_grade_timeout=900",
                               "-k", "loads or accuracy", "--durations=0")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*did not finish within 15 s*"])
    assert result.duration < 120  # not the 900 s the training child was allowed
