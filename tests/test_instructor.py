"""The instructor's toolbox: course checks as fixtures (in their own directory: the students
directory is data), shards, one MNIST error a session, errors told apart from failures. (Progress
under xdist: test_plugin_fast, whose class is graded under xdist.)"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from made_up import TEMPLATE_LAYERS, add_student, student_source

from pytest_akida_grade import data, discovery
from pytest_akida_grade.discovery import shard_of

FAST = ("-k", "not accuracy and not hardware_quality")
SEPARABLE = student_source().replace(
    'keras.layers.Conv2D(16, 3, padding="same"),\n        keras.layers.ReLU(max_value=3.0),\n'
    '        keras.layers.Flatten()',
    'keras.layers.SeparableConv2D(16, 3, padding="same"),\n'
    '        keras.layers.ReLU(max_value=3.0),\n        keras.layers.Flatten()')
COURSE = '''
def test_at_most_20000_parameters(akida_student):
    assert akida_student.params <= 20_000, f"{akida_student.params} parameters"


def test_at_least_one_separable_convolution(akida_student):
    kinds = [layer["class_name"] for layer in akida_student.layers]
    assert "SeparableConv2D" in kinds, "no SeparableConv2D"
'''


# Course checks whose messages carry what a student must never read: host paths.
LEAKY = '''
import pytest


def test_fails_with_our_internals(akida_student):
    assert False, (f"Traceback (most recent call last):\\n  File \\"/srv/grader/secret.py\\", "
                   f"line 3, in check\\nValueError: {akida_student.path.resolve()} is wrong")


def test_skips_with_our_internals(akida_student):
    pytest.skip(f"nothing to see at {akida_student.path.resolve()}")
'''


# Imported, each writes a marker file: proof that pytest ran it in the grader's own process.
MARKER = "import pathlib\npathlib.Path({path!r}).write_text('imported')\n"


def add_course_checks(pytester: pytest.Pytester, name: str, source: str) -> Path:
    """A course check file in course_checks/ (the ini names it: akida_course_checks)."""
    folder = pytester.path / "course_checks"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(source)
    return folder


def records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["student"]: r for r in json.loads(path.read_text())["students"]}


# ---------------------------------------------------------------------------- course checks


def test_a_course_check_runs_once_per_student_and_joins_their_record(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    add_student(grading, "bob", SEPARABLE)
    add_course_checks(grading, "test_course.py", COURSE)
    add_course_checks(grading, "test_leaky.py", LEAKY)
    result = grading.runpytest(*FAST, "--akida-json=grades.json", "--akida-csv=book.csv", "-v",
                               "-o", "akida_points=test_at_least_one_separable_convolution = 3")
    result.stdout.fnmatch_lines([
        "*test_course.py::test_at_most_20000_parameters[[]alice[]] PASSED*",
        "*test_course.py::test_at_least_one_separable_convolution[[]alice[]] FAILED*",
        "*test_course.py::test_at_least_one_separable_convolution[[]bob[]] PASSED*"])
    graded = records(grading.path / "grades.json")
    alice, bob = graded["alice"]["checks"], graded["bob"]["checks"]
    assert alice["test_at_least_one_separable_convolution"]["outcome"] == "failed"
    assert "no SeparableConv2D" in alice["test_at_least_one_separable_convolution"]["message"]
    assert bob["test_at_least_one_separable_convolution"]["outcome"] == "passed"
    assert alice["test_at_most_20000_parameters"]["outcome"] == "passed"
    assert "quantized_accuracy" not in graded["alice"]["metrics"]  # the fast fields never train
    rows = {row["student"]: row for row in csv.DictReader((grading.path / "book.csv").open())}
    assert rows["bob"]["check_test_at_least_one_separable_convolution"] == "passed"
    assert float(rows["alice"]["max_points"]) == 1 + 1 + 1 + 1 + 2 + 2 + 2 + 10 + 3 + 1 + 1 + 1
    _assert_scrubbed(grading, result, graded["alice"]["checks"])


def _assert_scrubbed(grading: pytest.Pytester, result: pytest.RunResult,
                     checks: dict[str, Any]) -> None:
    """A course check's failure and skip reach the student scrubbed, as the built-in checks'."""
    failed, skipped = (checks[f"test_{kind}_with_our_internals"] for kind in ("fails", "skips"))
    assert (failed["outcome"], skipped["outcome"]) == ("failed", "skipped")
    assert "alice.py is wrong" in failed["message"] and "alice.py" in skipped["message"]
    shown = [line for line in result.stdout.lines if "is wrong" in line or "secret" in line]
    assert shown  # the terminal's failure section shows them too
    for text in (failed["message"], skipped["message"], *shown):
        assert "/srv/grader" not in text and str(grading.path) not in text

def test_k_selects_a_students_course_checks_too(grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    add_student(grading, "bob", student_source())
    add_course_checks(grading, "test_course.py", COURSE)
    result = grading.runpytest("--collect-only", "-q", "-k", "alice and separable")
    result.stdout.fnmatch_lines(["*test_course.py::test_at_least_one_separable_convolution"
                                 "[[]alice[]]", "*1/20 tests collected*"])


def test_the_course_checks_directory_joins_a_run_of_the_class_with_its_conftest(
        pytester: pytest.Pytester) -> None:
    class_dir, checks = pytester.mkdir("class_of_2026"), pytester.mkdir("checks")
    (class_dir / "alice.py").write_text(student_source())
    (checks / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef budget():\n    return 20_000\n")
    (checks / "test_budget.py").write_text(
        "def test_budget(akida_student, budget):\n    assert akida_student.params <= budget\n")
    pytester.makefile(".ini", pytest="[pytest]\nakida_course_checks = checks\n")
    # The ini's course checks join a run of the class: `--akida-students DIR` from anywhere ...
    result = pytester.runpytest("--collect-only", "-q", "--akida-students", str(class_dir))
    result.stdout.fnmatch_lines(["checks/test_budget.py::test_budget[[]alice[]]",
                                 "*9 tests collected*"])
    # ... not a file named alone; `--akida-course-checks DIR` joins any run.
    alice = str(class_dir / "alice.py")
    result = pytester.runpytest("--collect-only", "-q", "-o", "akida_students=class_of_2026",
                                alice)
    result.stdout.fnmatch_lines(["*8 tests collected*"])
    result = pytester.runpytest("--collect-only", "-q", "-o", "akida_students=class_of_2026",
                                "-o", "akida_course_checks=", "--akida-course-checks", "checks",
                                alice)
    result.stdout.fnmatch_lines(["checks/test_budget.py::test_budget[[]alice[]]",
                                 "*9 tests collected*"])


def test_a_missing_course_checks_directory_is_a_usage_error(grading: pytest.Pytester) -> None:
    result = grading.runpytest("--collect-only", "--akida-course-checks", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*course checks directory nowhere*no such directory*"])


# ---------------------------------------------------------------------------- the students
# directory is data: nothing in it runs in the grader's process


def test_a_conftest_and_a_test_module_among_the_students_stop_the_run_and_never_run(
        grading: pytest.Pytester) -> None:
    add_student(grading, "ok", student_source())
    students = grading.path / "students"
    (students / "conftest.py").write_text(MARKER.format(path=str(grading.path / "conftest_ran")))
    (students / "test_x.py").write_text(MARKER.format(path=str(grading.path / "test_ran")))
    # Named as the students directory (ini), again as a path, as in the report.
    for args in (["--akida-students", "students", "students"], [], ["students/ok.py"]):
        run = grading.runpytest_subprocess if args else grading.runpytest  # one as pytest runs
        result = run(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([
            "*a students directory holds files that pytest would import*",
            f"    {students / 'conftest.py'}", f"    {students / 'test_x.py'}",
            "*rename it to the student's name*graded as a submission, in the sandbox*"
            "move it to the course checks' directory*"])
        assert result.stderr.str().count("conftest.py\n") == 1  # once, however often named
    assert not (grading.path / "conftest_ran").exists()
    assert not (grading.path / "test_ran").exists()


def test_code_in_a_subdirectory_of_the_students_is_named_too(grading: pytest.Pytester) -> None:
    nested = grading.path / "students" / "alice_repo" / "tests"
    nested.mkdir(parents=True)
    for name in ("__init__.py", "model_test.py"):
        (nested / name).write_text(MARKER.format(path=str(grading.path / name)))
    (grading.path / "students" / "hook.pth").write_text("import os\n")
    result = grading.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*students/hook.pth", "*students/alice_repo/tests/__init__.py",
                                 "*students/alice_repo/tests/model_test.py",
                                 "*Anything else*delete it*"])
    assert not list(grading.path.glob("*_test.py")) and not (grading.path / "__init__.py").exists()


@pytest.mark.parametrize(("name", "imported"), [
    ("conftest.py", True), ("test_model.py", True), ("model_test.py", True),
    ("__init__.py", True), ("site.pth", True), ("Conftest.py", True),  # a case-blind disk
    ("alice.py", False), ("testing.py", False), ("contest.py", False), ("_helper.py", False),
    ("test_data.npz", False), ("alice.weights.h5", False)])
def test_the_names_pytest_would_import_are_told_from_a_students_files(
        name: str, imported: bool) -> None:
    assert discovery.pytest_would_import(name) is imported


def test_a_class_folder_full_of_tests_names_fifty_and_counts_the_rest(
        grading: pytest.Pytester) -> None:
    for index in range(55):
        (grading.path / "students" / f"test_{index:02}.py").write_text("")
    result = grading.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*students/test_00.py", "*students/test_49.py",
                                 "    and 5 more", "A student's file*"])
    assert "test_50.py" not in result.stderr.str()


def test_the_projects_own_conftest_beside_the_students_is_its_own_business(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    grading.makeconftest("import pytest\n\n@pytest.fixture\ndef ours():\n    return 1\n")
    result = grading.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*8 tests collected*"])


def test_no_file_of_the_students_is_imported_whatever_python_files_says(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", MARKER.format(path=str(grading.path / "alice_ran")))
    (grading.path / "students" / "_helper.py").write_text(
        MARKER.format(path=str(grading.path / "helper_ran")))
    result = grading.runpytest("--collect-only", "-q", "-o", "python_files=*.py",
                               "--doctest-modules")
    result.stdout.fnmatch_lines(["students/alice.py::loads", "*8 tests collected*"])
    assert not (grading.path / "alice_ran").exists()
    assert not (grading.path / "helper_ran").exists()


def test_a_course_check_on_a_submission_that_does_not_load_is_skipped(
        grading: pytest.Pytester) -> None:
    add_student(grading, "carol", "raise ValueError('not today')\n")
    add_course_checks(grading, "test_course.py", COURSE)
    result = grading.runpytest("-k", "test_at_most", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the submission did not load*"])


def test_without_a_board_akida_device_is_skipped_saying_how_to_measure(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    add_course_checks(grading, "test_board.py",
        "def test_board_is_there(akida_device):\n    assert akida_device is not None\n")
    result = grading.runpytest("-k", "test_board_is_there", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*not measured: no board. Run with --akida-device*"])


# ---------------------------------------------------------------------------- shards


def test_shards_are_disjoint_complete_and_merge_into_the_gradebook_of_one_run(
        grading: pytest.Pytester) -> None:
    names = ["alice", "bob", "carol", "dave", "erin"]
    for name in names:
        add_student(grading, name, student_source() if name != "dave" else
                    student_source(TEMPLATE_LAYERS))
    whole = grading.runpytest(*FAST, "--akida-json=whole.json", "--akida-csv=whole.csv")
    assert whole.ret == 1  # dave's template fails v1_constraints: a grade, not a crash
    parts = []
    for index in (1, 2):
        grading.runpytest(*FAST, f"--akida-shard={index}/2", f"--akida-json=part{index}.json")
        parts.append(set(records(grading.path / f"part{index}.json")))
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(names)
    assert parts[0] == {n for n in names if shard_of(n, 2) == 1}
    merged = subprocess.run([sys.executable, "-m", "pytest_akida_grade", "merge", "part1.json",
                             "part2.json", "--csv", "merged.csv"], cwd=grading.path,
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    assert (grading.path / "merged.csv").read_text() == (grading.path / "whole.csv").read_text()


def test_a_bad_shard_is_a_usage_error_naming_the_option(grading: pytest.Pytester) -> None:
    result = grading.runpytest("--akida-shard=3/2", "--collect-only")
    result.stderr.fnmatch_lines(["*invalid akida_shard value '3/2' from the command line*I/N*"])


# ---------------------------------------------------------------------------- errors


def test_an_unavailable_mnist_is_resolved_once_a_session_and_said_once(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = data.resolve_mnist

    def counted(*args: Any, **kwargs: Any) -> data.MnistSource:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "resolve_mnist", counted)
    add_student(grading, "alice", student_source())
    add_student(grading, "bob", student_source())
    (grading.path / "mnist.npz").write_bytes(b"not an npz")
    result = grading.runpytest("-k", "accuracy", "--akida-mnist=mnist.npz")
    result.assert_outcomes(errors=4)
    assert len(calls) == 1
    result.stdout.fnmatch_lines(["*alice: 0/2 checks passed; error: quantized_accuracy, "
                                 "akida_accuracy"])


def test_the_summary_tells_grader_errors_from_the_students_failures(
        grading: pytest.Pytester) -> None:
    add_student(grading, "dave", student_source(TEMPLATE_LAYERS))
    result = grading.runpytest("-k", "v1_constraints or hardware_quality",
                               "--akida-replay=nowhere.json")
    result.stdout.fnmatch_lines(["dave: 0/2 checks passed; failed: v1_constraints; "
                                 "error: hardware_quality"])
