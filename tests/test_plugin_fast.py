"""The five fast checks through the plugin: one class of made-up submissions, graded once.

Every submission is built in a child process (~5 s each), so the class is graded in one pytest
run under xdist and the tests below read its outcomes, messages and JSON file. One classmate
(chatty) is trained and graded too: its progress must reach the xdist controller's terminal.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from made_up import GOOD_LAYERS, TEMPLATE_LAYERS, fast_ini, student_source

# The fast settings' limit: it binds the trusted inspection too, which took over 20 s on a
# loaded machine (make test's two workers beside other jobs). No classmate hangs here, so none
# waits it out: a hanging submission has a run of its own in test_plugin_accuracy.
LIMIT = 60

BAD_LAYERS = {
    "dropout": GOOD_LAYERS.replace("keras.layers.Flatten(),",
                                   "keras.layers.Dropout(0.2),\n    keras.layers.Flatten(),"),
    "unbounded": GOOD_LAYERS.replace("keras.layers.ReLU(max_value=3.0),",
                                     "keras.layers.ReLU(),", 1),
    "hidden_relu": GOOD_LAYERS.replace('Conv2D(16, 3, padding="same"),\n    keras.layers.ReLU('
                                       'max_value=3.0),', 'Conv2D(16, 3, padding="same", '
                                       'activation="relu"),', 1),
    "template": TEMPLATE_LAYERS,
    "bn_after_relu": """
    keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.BatchNormalization(),
    keras.layers.Conv2D(16, 3, strides=2, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
""",
    # Allowed by every documented rule, refused by the mapper: 512 x 3 x 3 x 512 weights per NP.
    "too_wide": """
    keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.Conv2D(512, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.Conv2D(512, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.MaxPooling2D((2, 2), padding="same"),
    keras.layers.Conv2D(64, 3, strides=2, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
""",
    "wrong_input": GOOD_LAYERS.replace("(28, 28, 1)", "(32, 32, 1)"),
    "wrong_output": GOOD_LAYERS.replace("Dense(10)", "Dense(5)"),
}

HOSTILE = {
    "exits": "import os\nos._exit(3)\n",
    "raises": "def build_model():\n    raise ValueError('my model is not ready')\n",
    "import_error": "import not_a_module_anyone_has\n",
    "syntax_error": "def build_model(:\n    pass\n",
    "no_build": "MODEL = None\n",
    "non_model": "def build_model():\n    return 42\n",
    "keras3": (
        "import keras\n\ndef build_model():\n    return keras.Sequential([keras.Input((28, 28, 1)),"
        " keras.layers.Flatten(), keras.layers.Dense(10)])\n"),
}


def _class_sources() -> dict[str, str]:
    sources = {name: student_source(layers) for name, layers in BAD_LAYERS.items()}
    sources.update(HOSTILE)
    sources["good"] = student_source()
    sources["w8a8"] = student_source(bits=(8, 8))
    # Prints that look like the worker's protocol must not confuse the grader.
    sources["chatty"] = ('print(\'{"event": "result", "result": {"error": "fake"}}\')\n'
                         + student_source())
    return sources


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("class")
    (root / "pytest.ini").write_text(fast_ini(akida_timeout=str(LIMIT),
                                              akida_cache_dir=None))
    students = root / "students"
    students.mkdir()
    for name, source in _class_sources().items():
        (students / f"{name}.py").write_text(source)
    (students / "_helper.py").write_text("raise SystemExit('never graded')\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-rA", "-k",
         "not hardware_quality and (not accuracy or chatty)", "--akida-json", "grades.json",
         "--akida-csv", "gradebook.csv", "--akida-gradescope", "gradescope"],
        cwd=root, capture_output=True, text=True, timeout=900)
    grades = json.loads((root / "grades.json").read_text())
    return {"output": run.stdout + run.stderr, "code": run.returncode, "root": root,
            "students": {s["student"]: s for s in grades["students"]}}


def check(graded: dict[str, Any], student: str, name: str) -> dict[str, str]:
    return graded["students"][student]["checks"][name]


def assert_failed_with(graded: dict[str, Any], student: str, name: str, *words: str) -> None:
    verdict = check(graded, student, name)
    assert verdict["outcome"] == "failed", verdict
    for text in words:
        assert text in verdict["message"], (text, verdict["message"])


def test_it_grades_every_submission_and_ignores_private_modules(graded_class):
    assert set(graded_class["students"]) == set(_class_sources())
    assert "never graded" not in graded_class["output"]
    assert graded_class["code"] == 1  # some students fail: a grade, not a crash


def test_it_passes_a_conforming_design_on_all_five_checks(graded_class):
    for name in ("loads", "layer_whitelist", "relu_bounded", "quantization_scheme",
                 "v1_constraints"):
        verdict = check(graded_class, "good", name)
        assert verdict["outcome"] == "passed", (name, verdict["message"])
    assert "virtual AKD1000" in check(graded_class, "good", "v1_constraints")["message"]


@pytest.mark.parametrize(("student", "words"), [
    ("exits", "exit code 3"),
    ("raises", "ValueError: my model is not ready"),
    ("import_error", "ModuleNotFoundError"),
    ("syntax_error", "syntax error on line 1"),
    ("no_build", "no build_model() function"),
    ("non_model", "returned int, not a tf_keras model"),
    ("keras3", "import tf_keras as keras"),
    ("wrong_input", "(32, 32, 1)"),
    ("wrong_output", "MNIST needs 10 outputs"),
])
def test_it_fails_loads_for_a_hostile_submission_and_skips_the_rest(graded_class, student,
                                                                      words):
    loads = check(graded_class, student, "loads")
    assert loads["outcome"] == "failed"
    assert words in loads["message"]
    for name in ("layer_whitelist", "relu_bounded", "quantization_scheme", "v1_constraints"):
        assert check(graded_class, student, name)["outcome"] == "skipped"


def test_it_keeps_the_protocol_safe_from_a_submission_that_prints(graded_class):
    assert check(graded_class, "chatty", "loads")["outcome"] == "passed"


def test_under_xdist_epochs_and_a_live_count_reach_the_controllers_terminal(graded_class):
    lines = graded_class["output"].splitlines()
    assert any(re.search(r"\[akida-grade\] chatty: epoch 1/1: loss \d", line) for line in lines)
    assert check(graded_class, "chatty", "akida_accuracy")["outcome"] == "passed"
    everyone = len(_class_sources())
    assert any(f"[akida-grade] graded {everyone} / {everyone} students" in line
               for line in lines)
    assert "warnings summary" not in graded_class["output"]


def test_it_fails_a_dropout_layer_naming_it(graded_class):
    assert_failed_with(graded_class, "dropout", "layer_whitelist", "Dropout", "layer 9")


def test_it_fails_an_unbounded_relu(graded_class):
    assert_failed_with(graded_class, "unbounded", "relu_bounded", "max_value")
    assert_failed_with(graded_class, "unbounded", "v1_constraints", "unbounded")


def test_it_fails_an_activation_hidden_inside_a_convolution(graded_class):
    assert_failed_with(graded_class, "hidden_relu", "relu_bounded", "activation")


def test_it_fails_an_unsupported_precision_listing_the_supported_ones(graded_class):
    assert_failed_with(graded_class, "w8a8", "quantization_scheme", "W4A4", "W4A1", "W2A4")


def test_it_fails_the_template_for_pooling_into_the_classifier_with_both_evidences(
        graded_class):
    assert_failed_with(graded_class, "template", "v1_constraints",
                       "max_pooling2d_1",  # the documented rule names the layer
                       "the mapper refused the model",
                       "must be followed by another convolutional")


def test_it_fails_a_silent_cut_naming_the_layer_where_quantization_stopped(graded_class):
    assert_failed_with(graded_class, "bn_after_relu", "v1_constraints",
                       "quantization stopped at layer 'batch_normalization'")


def test_it_fails_with_the_mappers_words_what_the_documented_rules_allow(graded_class):
    assert_failed_with(graded_class, "too_wide", "v1_constraints",
                       "documented rules): all satisfied", "Filter size is too big to fit")


def test_it_shows_rule_violations_without_tracebacks(graded_class):
    output = graded_class["output"]
    assert "Traceback" not in output.split("short test summary")[0].split("FAILURES")[-1]
    assert "Dropout" in output


def test_it_writes_the_json_with_one_entry_per_student_and_each_check_that_ran(graded_class):
    good = graded_class["students"]["good"]
    assert set(good["checks"]) == {"loads", "layer_whitelist", "relu_bounded",
                                   "quantization_scheme", "v1_constraints"}
    assert good["metrics"]["weight_bits"] == 4
    assert all(set(c) == {"outcome", "message"} for c in good["checks"].values())


def test_it_writes_the_gradebook_and_gradescope_files_once_under_xdist(graded_class):
    rows = list(csv.DictReader((graded_class["root"] / "gradebook.csv").open()))
    assert sorted(row["student"] for row in rows) == sorted(_class_sources())
    good = next(row for row in rows if row["student"] == "good")
    assert good["check_v1_constraints"] == "passed"
    results = json.loads((graded_class["root"] / "gradescope/good/results.json").read_text())
    assert {t["status"] for t in results["tests"][:5]} == {"passed"}


# ---------------------------------------------------------------------------- selection


def test_it_names_items_by_student_and_check_so_k_selects(grading: pytest.Pytester):
    from made_up import add_student

    add_student(grading, "alice", student_source())
    add_student(grading, "bob", student_source())
    result = grading.runpytest("--collect-only", "-q", "-k", "alice and relu_bounded")
    result.stdout.fnmatch_lines(["students/alice.py::relu_bounded", "*1/16 tests collected*"])
    result = grading.runpytest("--collect-only", "-q", "-k", "not hardware_quality")
    result.stdout.fnmatch_lines(["*14/16 tests collected*"])


def test_it_grades_a_directory_from_anywhere_with_akida_students(pytester: pytest.Pytester):
    elsewhere = pytester.mkdir("elsewhere")
    (elsewhere / "carol.py").write_text(student_source())
    result = pytester.runpytest("--collect-only", "-q", "--akida-students", str(elsewhere))
    result.stdout.fnmatch_lines(["elsewhere/carol.py::loads", "*8 tests collected*"])


def test_it_never_imports_a_submission_named_on_the_command_line(grading: pytest.Pytester):
    from made_up import add_student

    add_student(grading, "dave", "raise SystemExit('imported in the pytest process')\n")
    result = grading.runpytest("--collect-only", "-q", "students/dave.py")
    result.stdout.fnmatch_lines(["students/dave.py::loads", "*8 tests collected*"])
    assert "imported in the pytest process" not in result.stdout.str()


def test_it_rejects_a_bad_setting_naming_where_it_came_from(grading: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch):
    result = grading.runpytest("--collect-only", "--akida-timeout", "soon")
    result.stderr.fnmatch_lines(["*invalid akida_timeout value 'soon' from the command line*"])
    monkeypatch.setenv("AKIDA_GRADE_TIMEOUT", "-3")
    result = grading.runpytest("--collect-only")
    result.stderr.fnmatch_lines(["*AKIDA_GRADE_TIMEOUT environment variable*positive*"])


def test_it_rejects_a_bad_gradescope_view_naming_the_setting_and_the_line(
        grading: pytest.Pytester):
    grading.makefile(".ini", pytest="[pytest]\nakida_students = students\nakida_visibility =\n"
                                    "    default = visible\n    akida_accuracy = soon\n")
    result = grading.runpytest("--collect-only")
    result.stderr.fnmatch_lines(["*ini akida_visibility*akida_accuracy = soon*'soon' is not a "
                                 "visibility*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    grading.makefile(".ini", pytest="[pytest]\nakida_students = students\n"
                                    "akida_leaderboard = Speed = fps fastest\n")
    result = grading.runpytest("--collect-only")
    result.stderr.fnmatch_lines(["*ini akida_leaderboard*order 'fastest'*"])


def test_it_rejects_points_for_an_unknown_check(grading: pytest.Pytester):
    grading.makefile(".ini", pytest="[pytest]\nakida_students = students\nakida_points =\n"
                                    "    hardware_quality = 12\n    speed = 3\n")
    result = grading.runpytest("--collect-only")
    result.stderr.fnmatch_lines(["*speed*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_it_reports_a_missing_students_directory(pytester: pytest.Pytester):
    result = pytester.runpytest("--akida-students", "nowhere")
    result.stderr.fnmatch_lines(["*--akida-students nowhere: no such file or directory*"])


def test_it_resolves_settings_command_line_over_environment_over_ini(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    from pytest_akida_grade.settings import settings_from_config

    monkeypatch.setenv("AKIDA_GRADE_TIMEOUT", "30")
    config = grading.parseconfigure("--akida-timeout", "45")
    assert settings_from_config(config).timeout == 45
    config = grading.parseconfigure()
    assert settings_from_config(config).timeout == 30
    monkeypatch.delenv("AKIDA_GRADE_TIMEOUT")
    config = grading.parseconfigure()
    assert settings_from_config(config).timeout == 60  # the fast ini's value
    assert Path(str(settings_from_config(config).cache_dir)).name.startswith("akida-cache")


MACHINERY = ("pytest_akida_grade.session", "pytest_akida_grade.grading",
             "pytest_akida_grade.sandbox.policy", "pytest_akida_grade.evaluator.client")
REPORT_MACHINERY = '''
import json, sys
def pytest_unconfigure(config):
    loaded = [name for name in {machinery!r} if name in sys.modules]
    with open("machinery.json", "w") as handle:
        json.dump({{"loaded": loaded, "options": config.getoption("akida_sandbox")}}, handle)
'''


def test_it_stays_inert_in_an_unrelated_suite(pytester: pytest.Pytester):
    """A student's own tests in a venv with our wheel: the options exist, nothing else runs (no
    sandbox probe, no grader, no trusted process: their modules are never even imported)."""
    pytester.makeconftest(REPORT_MACHINERY.format(machinery=MACHINERY))
    pytester.makepyfile(test_mine="def test_arithmetic():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "akida-grade sandbox" not in result.stdout.str()
    found = json.loads((pytester.path / "machinery.json").read_text())
    assert found == {"loaded": [], "options": None}  # our options are there, unset
    assert not list(Path(pytester.path).glob("akida-grade-*"))


def test_it_starts_its_machinery_once_students_are_collected(grading: pytest.Pytester):
    (grading.path / "students" / "alice.py").write_text(student_source(GOOD_LAYERS))
    grading.makeconftest(REPORT_MACHINERY.format(machinery=MACHINERY))
    result = grading.runpytest_subprocess("--collect-only")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["akida-grade sandbox: *"])
    found = json.loads((grading.path / "machinery.json").read_text())
    assert set(found["loaded"]) == set(MACHINERY)
