"""What a sandbox hands over is hostile too: a class whose exports name files, ask for giant
allocations, carry NaN, huge or constant weights, next to an honest `Activation("relu6")`.

The trusted side reads the JSON as data and rebuilds only what is on its closed list: a file
named by a layer is never opened, a giant model never allocated; bad numbers fail in the
student's words. No student-facing message carries a traceback, a host path or an op name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from made_up import GOOD_LAYERS, fast_ini, student_source

from pytest_akida_grade import data

SECRET = "TOPSECRET-first-line-of-a-root-only-file"
SETTINGS = fast_ini(akida_timeout="180", akida_cache_dir=None)
INTERNALS = ("Traceback", 'File "/', "{{function_node", "<class '")


def forged(layers: str) -> str:
    """Alice's model whose exported JSON gains `layers` before its classifier (a patched
    to_json: the sandbox built the real model, the hand-over says otherwise)."""
    return student_source(extra=textwrap.dedent(f"""
        import json
        from tf_keras.src.engine import training
        real = training.Model.to_json
        def to_json(self, **kwargs):
            config = json.loads(real(self, **kwargs))
            config["config"]["layers"][-2:-2] = {layers}
            for layer in config["config"]["layers"]:
                layer.pop("build_config", None)  # tf_keras rebuilds without them
            return json.dumps(config)
        training.Model.to_json = to_json
        """))


def weights_set_to(expression: str) -> str:
    """Alice's model whose own train() leaves every weight as `expression` of its shape."""
    return student_source(extra=f"""
import numpy as np

def train(model, x_train, y_train):
    model.set_weights([{expression} for w in model.get_weights()])
""")


def students(secret: Path) -> dict[str, str]:
    lookup = {"module": "keras.layers", "class_name": "IntegerLookup", "registered_name": None,
              "config": {"name": "lookup", "vocabulary": str(secret)}}
    text = {"module": "keras.layers", "class_name": "TextVectorization", "registered_name": None,
            "config": {"name": "text", "vocabulary": str(secret)}}
    giant = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "giant", "units": 1_200_000}}
    return {
        "honest": student_source(),
        "relu6": student_source(GOOD_LAYERS.replace("keras.layers.ReLU(max_value=3.0)",
                                                    'keras.layers.Activation("relu6")')),
        "lookup": forged(repr([lookup])),
        "vectorizer": forged(repr([text])),
        "giant": forged(repr([{"module": "keras.layers", "class_name": "Flatten",
                               "registered_name": None, "config": {"name": "flat"}}, giant])),
        "nan": weights_set_to("np.full(w.shape, np.nan, 'float32')"),
        "huge": weights_set_to("np.full(w.shape, 3e38, 'float32')"),
        "constant": weights_set_to("np.zeros(w.shape, 'float32')"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("handover")
    (root / "pytest.ini").write_text(SETTINGS)
    secret = root / "secret.txt"
    secret.write_text(f"{SECRET}\nsecond line\n")
    secret.chmod(0o600)
    (root / "students").mkdir()
    for name, source in students(secret).items():
        (root / "students" / f"{name}.py").write_text(source)
    mnist = data.resolve_mnist(os.environ.get("AKIDA_GRADE_MNIST"), shared_cache).path
    deselected = "not hardware_quality and not ((honest or relu6) and accuracy)"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", deselected,
         f"--akida-mnist={mnist}", "-o", f"akida_cache_dir={root / 'cache'}",
         "--akida-json=grades.json", "-rA"],
        cwd=root, capture_output=True, text=True, timeout=900)
    records = json.loads((root / "grades.json").read_text())["students"]
    return {"records": {r["student"]: r for r in records}, "output": run.stdout + run.stderr,
            "root": root}


def check(graded: dict[str, Any], student: str, name: str) -> dict[str, str]:
    verdict: dict[str, str] = graded["records"][student]["checks"][name]
    return verdict


@pytest.mark.parametrize("student", ["lookup", "vectorizer"])
def test_a_layer_naming_a_file_loads_fails_the_whitelist_and_the_file_is_never_read(
        graded: dict[str, Any], student: str) -> None:
    assert check(graded, student, "loads")["outcome"] == "passed"
    whitelist = check(graded, student, "layer_whitelist")
    assert whitelist["outcome"] == "failed" and "is not an allowed layer" in whitelist["message"]
    for name in ("quantized_accuracy", "akida_accuracy"):
        verdict = check(graded, student, name)
        assert verdict["outcome"] == "skipped", verdict
        assert "does not rebuild this model" in verdict["message"]
    assert SECRET not in graded["output"] and SECRET not in json.dumps(graded["records"])


def test_a_giant_architecture_is_refused_before_allocation_with_both_numbers(
        graded: dict[str, Any]) -> None:
    v1 = check(graded, "giant", "v1_constraints")
    assert v1["outcome"] == "failed"
    assert "parameters" in v1["message"] and "16,000,000" in v1["message"]
    assert check(graded, "giant", "akida_accuracy")["outcome"] == "skipped"


@pytest.mark.parametrize(("student", "words"), [
    ("nan", "the weights of layer 'conv2d' (kernel) contain NaN: training diverged"),
    ("huge", "the weights of layer 'conv2d' (kernel) reach 3e+38"),
    ("constant", "outputs the same values for every image"),
])
def test_bad_numbers_fail_the_accuracy_checks_in_the_students_words(
        graded: dict[str, Any], student: str, words: str) -> None:
    assert check(graded, student, "loads")["outcome"] == "passed"
    for name in ("quantized_accuracy", "akida_accuracy"):
        verdict = check(graded, student, name)
        assert verdict["outcome"] == "failed" and words in verdict["message"], verdict


def test_an_honest_relu6_activation_loads_and_fails_only_the_whitelist(
        graded: dict[str, Any]) -> None:
    assert check(graded, "relu6", "loads")["outcome"] == "passed"
    whitelist = check(graded, "relu6", "layer_whitelist")
    assert whitelist["outcome"] == "failed" and "ReLU(max_value=6.0)" in whitelist["message"]
    assert check(graded, "relu6", "relu_bounded")["outcome"] == "passed"


def test_no_message_carries_a_traceback_a_host_path_or_an_op_name(
        graded: dict[str, Any]) -> None:
    assert check(graded, "honest", "v1_constraints")["outcome"] == "passed"
    package = str(Path(__file__).resolve().parents[1])
    for student, record in graded["records"].items():
        for name, verdict in record["checks"].items():
            assert verdict["outcome"] != "error", (student, name, verdict)
            for internal in (*INTERNALS, package, str(graded["root"])):
                assert internal not in verdict["message"], (student, name, internal)
