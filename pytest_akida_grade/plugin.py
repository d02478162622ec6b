"""pytest wiring: each submission becomes a collector whose items are the eight checks.

No grading policy here: a check's item asks the grader (grading.py) for its verdict and turns it
into an outcome; the Recorder collects outcomes into student records for the report files.
Nothing in this process imports student code or TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_akida_grade import catalog, course, data, grading, scrub
from pytest_akida_grade.cache import Cache, toolchain_versions
from pytest_akida_grade.discovery import (
    Submission,
    code_pytest_would_import,
    is_inside,
    is_submission,
    shard_of,
    student_names,
)
from pytest_akida_grade.recorder import Recorder, progress
from pytest_akida_grade.report import files
from pytest_akida_grade.results import FAILED, SKIPPED, HarnessError, Verdict
from pytest_akida_grade.sandbox import policy as sandbox_policy
from pytest_akida_grade.settings import Settings, add_options, directories, settings_from_config

log = logging.getLogger("pytest_akida_grade")
GRADER = course.GRADER
SETTINGS = pytest.StashKey[Settings]()
RECORDER = pytest.StashKey[Recorder]()
POINTS = pytest.StashKey[Mapping[str, float]]()
NAMES = pytest.StashKey[dict[Path, str]]()
SANDBOX = pytest.StashKey[sandbox_policy.Policy]()
NAMED_AT_MOST = 50  # files named by the usage error (a whole venv in a class folder: the rest)


# ---------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """Before pytest imports any conftest (ours runs first): a students directory holding code
    pytest would import is a usage error. A bare `--akida-device` means the first board;
    argparse alone would eat a path after it."""
    refuse_code_in_students_dirs(directories(early_config, "students", early=True))
    args[:] = ["--akida-device=first" if arg == "--akida-device" else arg for arg in args]


def refuse_code_in_students_dirs(entries: list[Path]) -> None:
    """Student files are data: one named so that pytest imports it (conftest.py, test_*.py,
    __init__.py, ...) would run in this process, with the grader's rights, outside any sandbox."""
    found = list({path.resolve(): path for entry in entries if entry.exists()
                  for path in code_pytest_would_import(entry)}.values())
    if not found:
        return
    raise pytest.UsageError(
        "a students directory holds files that pytest would import, running them in the "
        "grader itself (submissions only ever run in the sandbox):\n"
        + "".join(f"    {path}\n" for path in found[:NAMED_AT_MOST])
        + (f"    and {len(found) - NAMED_AT_MOST} more\n" if len(found) > NAMED_AT_MOST else "")
        + "A student's file: rename it to the student's name (e.g. alice.py) and it is graded "
        "as a submission, in the sandbox. An instructor's file (a course check or its "
        "conftest.py): move it to the course checks' directory (ini akida_course_checks, "
        "--akida-course-checks DIR). Anything else (__init__.py, a .pth): delete it.")


@pytest.hookimpl(trylast=True)  # after cacheprovider has set config.cache
def pytest_configure(config: pytest.Config) -> None:
    settings = settings_from_config(config)
    refuse_code_in_students_dirs(settings.students)  # again, for a plugin loaded late
    config.stash[SETTINGS] = settings
    config.stash[POINTS] = _points(settings)  # a bad line is a usage error now, not at the end
    cache = Cache(None if settings.no_cache else _cache_root(config, settings),
                  on_problem=lambda message: _warn(config, message))
    config.stash[SANDBOX] = _sandbox(settings, cache)
    scratch = Path(tempfile.mkdtemp(prefix="akida-grade-"))
    os.chmod(scratch, 0o711)  # a sandbox's uid may reach its own directory, list nothing
    config.stash[GRADER] = grading.create(
        settings, cache, scratch, config.stash[SANDBOX],
        progress=lambda student, text: progress(config, student, text))
    config.stash[RECORDER] = Recorder(config, settings, config.stash[POINTS],
                                      lambda path: student_name(config, path),
                                      view=_gradescope_view(settings))
    config.pluginmanager.register(config.stash[RECORDER], "akida-grade-recorder")
    config.pluginmanager.register(course, "akida-grade-course")  # akida_student, akida_device
    config.addinivalue_line("markers", "akida_check(name): a check of pytest-akida-grade")
    _add_student_dirs(config, settings)
    _group_students_under_xdist(config)
    _describe_sandbox_in_the_html_report(config)
    if config.pluginmanager.hasplugin("html"):
        from pytest_akida_grade.html import HtmlIntegration

        recorder = config.stash[RECORDER]
        config.pluginmanager.register(
            HtmlIntegration(recorder.sorted_records, config.stash[POINTS], settings.quality_max,
                            recorder.not_graded),
            "akida-grade-html")


def _points(settings: Settings) -> dict[str, float]:
    try:
        return catalog.parse_points(settings.points)
    except catalog.PointsError as error:
        raise pytest.UsageError(str(error)) from None


def _gradescope_view(settings: Settings) -> files.GradescopeView:
    """akida_visibility, akida_stdout_visibility, akida_leaderboard: a usage error now."""
    stdout = (settings.stdout_visibility or "").strip()
    try:
        return files.GradescopeView(
            catalog.parse_visibility(settings.visibility),
            catalog.visibility_of(stdout, "ini akida_stdout_visibility") if stdout else None,
            catalog.parse_leaderboard(settings.leaderboard))
    except catalog.PointsError as error:
        raise pytest.UsageError(str(error)) from None


def _sandbox(settings: Settings, cache: Cache) -> sandbox_policy.Policy:
    hidden = (*data.test_set_copies(settings.mnist, cache.root),
              *(path.resolve() for path in settings.students))
    try:
        return sandbox_policy.choose(settings.sandbox, hidden)
    except sandbox_policy.SandboxUnavailable as error:
        raise pytest.UsageError(str(error)) from None


def _cache_root(config: pytest.Config, settings: Settings) -> Path:
    if settings.cache_dir is not None:
        return settings.cache_dir
    if getattr(config, "cache", None) is not None:
        return Path(config.cache.mkdir("akida-grade"))
    return config.rootpath / ".pytest_cache" / "d" / "akida-grade"


def _add_student_dirs(config: pytest.Config, settings: Settings) -> None:
    """`--akida-students DIR` grades DIR from anywhere: it joins (or replaces) the paths. The
    course checks join a run of the class: `--akida-course-checks DIR` always, the ini's
    directories unless paths were named on the command line without `--akida-students`."""
    cli = [Path(p).expanduser() for p in config.getoption("akida_students") or []]
    checks_cli = [Path(p).expanduser() for p in config.getoption("akida_course_checks") or []]
    for path in cli:
        if not path.exists():
            raise pytest.UsageError(f"--akida-students {path}: no such file or directory")
    for path in settings.course_checks:
        if not path.is_dir():
            raise pytest.UsageError(f"course checks directory {path} (akida_course_checks, "
                                    "--akida-course-checks): no such directory")
    explicit = config.args_source == pytest.Config.ArgsSource.ARGS
    args = ([*config.args] if explicit or not cli else []) + [str(p) for p in cli]
    checks = settings.course_checks if cli or not explicit else checks_cli
    config.args = args + [str(p) for p in checks if not _collected(p, args)]


def _collected(path: Path, args: list[str]) -> bool:
    """Whether pytest collects `path` already, from one of these paths (or node ids)."""
    return any(is_inside(path, Path(arg.split("::")[0])) for arg in args)


def student_name(config: pytest.Config, path: Path) -> str:
    """The student a module is graded as (discovery.student_names over the whole class)."""
    if NAMES not in config.stash:
        config.stash[NAMES] = student_names(config.stash[SETTINGS].students)
    path = path.resolve()
    return config.stash[NAMES].get(path) or student_names([path])[path]


def _group_students_under_xdist(config: pytest.Config) -> None:
    """A student's checks share stages: keep each student's file on one xdist worker."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadfile"


def _describe_sandbox_in_the_html_report(config: pytest.Config) -> None:
    """The report's environment table: the sandbox and the toolchain behind the figures (their
    installed versions, read from package metadata: nothing imported)."""
    with contextlib.suppress(ImportError):
        from pytest_metadata.plugin import metadata_key  # type: ignore[import-untyped]

        metadata = config.stash[metadata_key]
        metadata["Akida sandbox"] = config.stash[SANDBOX].describe()
        metadata.update(toolchain_versions())


def pytest_report_header(config: pytest.Config) -> str | None:
    policy = config.stash.get(SANDBOX, None)
    if policy is None:
        return None
    return f"akida-grade sandbox: {policy.describe()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    grader = config.stash.get(GRADER, None)
    if grader is not None:
        grader.close()
        shutil.rmtree(grader.scratch, ignore_errors=True)


def _warn(config: pytest.Config, message: str) -> None:
    if hasattr(config, "workerinput"):
        log.warning(message)  # xdist workers: warnings of their own do not reach the user
    else:
        config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Generator[None, None, None]:
    """Progress lines were shown when they came: keep them out of the warnings summary."""
    relayed = terminalreporter.stats.get("warnings", [])
    terminalreporter.stats["warnings"] = [w for w in relayed if "[akida-grade] " not in
                                          str(getattr(w, "message", ""))]
    if not terminalreporter.stats["warnings"]:
        del terminalreporter.stats["warnings"]
    yield


# ---------------------------------------------------------------------------- collection


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector
                        ) -> Generator[None, list[pytest.Collector] | None,
                                       list[pytest.Collector] | None]:
    """Submissions are graded, never imported: no Python module pytest makes of a file in a
    students directory is kept; a submission becomes a StudentFile."""
    collected = yield
    settings = parent.config.stash.get(SETTINGS, None)
    if settings is None or not any(is_inside(file_path, entry) for entry in settings.students):
        return collected
    # Whatever python_files or --doctest-modules say, no file here is imported.
    kept = [node for node in collected or [] if not isinstance(node, pytest.Module)]
    if not is_submission(file_path, settings.students):
        return kept
    return [*kept, StudentFile.from_parent(parent, path=file_path)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--akida-shard I/N: only this part of the class (a stable hash of each name)."""
    shard = config.stash[SETTINGS].shard
    if shard is None:
        return
    index, count = shard
    kept = [i for i in items if not isinstance(i, CheckItem) or
            shard_of(i.submission.name, count) == index]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    """The grader's plan, once: the checks in run order (a student whose grade is wanted starts
    training with its build; alone, the grader looks ahead in this order)."""
    grader = session.config.stash.get(GRADER, None)
    if grader is None:
        return
    grader.plan((item.submission, item.check) for item in session.items
                if isinstance(item, CheckItem))
    session.config.stash[RECORDER].expect(session.items)


class StudentFile(pytest.File):
    """One submission; its items are the checks, in grading order."""

    def collect(self) -> Iterator[CheckItem]:
        submission = Submission(student_name(self.config, self.path), self.path)
        for check in catalog.NAMES:
            yield CheckItem.from_parent(self, name=check, submission=submission, check=check)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """While this student is judged, the next ones' stages start (every core busy)."""
    grader = item.config.stash.get(GRADER, None)
    if grader is None or not isinstance(item, CheckItem):
        return
    grader.focus(item.submission)
    if isinstance(nextitem, CheckItem) and nextitem.submission != item.submission:
        grader.prefetch(nextitem.submission)  # this worker's next, as xdist told it


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per two cores, none below four cores. A process grades with as
    many warm trusted processes as its share of the cores (grading.py) plus the sandboxed
    children beside them, so one process alone keeps two cores busy: on two or three cores
    `-n auto` is `-n 0` (a worker would only add its start-up)."""
    workers = len(os.sched_getaffinity(0)) // 2
    return workers if workers >= 2 else 0


class CheckItem(pytest.Item):
    def __init__(self, *, submission: Submission, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submission = submission
        self.check = check
        self.verdict: Verdict | None = None
        self.add_marker(pytest.mark.akida_check(check))
        self.user_properties.append(("akida_student", submission.name))
        self.user_properties.append(("akida_check", check))
        self.user_properties.append(("akida_file", submission.path.name))

    def setup(self) -> None:
        """Run the stage this check needs; the grader's own failures are errors, not fails."""
        grader = self.config.stash[GRADER]
        grader.background.flush()
        try:
            self.verdict = grader.verdict(self.submission, self.check)
            # For the class's similarity report (recorder.py), never for the student's feedback.
            self.user_properties.append(("akida_fingerprint", grader.fingerprint(self.submission)))
            return
        except HarnessError as error:
            log.error("grader error on %s %s: %s", self.submission.name, self.check, error)
            problem = scrub.for_student(str(error))  # the full text is in the log
        pytest.fail(problem, pytrace=False)  # an error (not a failure): its message alone

    def runtest(self) -> None:
        verdict = self.verdict
        assert verdict is not None
        self.user_properties.append(("akida_message", verdict.message))
        self.user_properties.append(("akida_metrics", verdict.metrics))
        if verdict.outcome == SKIPPED:
            pytest.skip(verdict.message)
        if verdict.outcome == FAILED:
            raise CheckFailure(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        """A failed check is its message alone: the student's verdict, not a traceback."""
        if isinstance(excinfo.value, CheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.submission.name}::{self.check}"


class CheckFailure(Exception):
    """A check's verdict: reported as its message alone (repr_failure), not as a traceback."""
