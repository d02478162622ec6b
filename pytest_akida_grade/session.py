"""The plugin's machinery, registered by plugin.py only when a run grades students: the students
directories become `StudentFile`s, the grader (its sandbox, its trusted processes, the data set)
is made once the class is collected, every message a student reads is scrubbed where it leaves
(the test report), and the recorder writes the grade files.

Nothing in this process imports student code or TensorFlow.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_akida_grade import catalog, course, data, properties, scrub
from pytest_akida_grade.cache import Cache
from pytest_akida_grade.discovery import (
    code_pytest_would_import,
    is_inside,
    is_submission,
    shard_of,
    student_names,
)
from pytest_akida_grade.items import CheckItem, StudentFile
from pytest_akida_grade.recorder import Recorder, announce_sandbox, is_relayed, progress
from pytest_akida_grade.report import files
from pytest_akida_grade.sandbox import policy as sandbox_policy
from pytest_akida_grade.settings import Settings, settings_from_config
from pytest_akida_grade.workers import is_worker, worker_count

if TYPE_CHECKING:
    from pytest_akida_grade.grading import Grader

log = logging.getLogger("pytest_akida_grade")
NAMED_AT_MOST = 50  # files named by the usage error (a whole venv in a class folder: the rest)


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


class GradingSession:
    """One pytest process's grading: its settings, the class's names, the grader made on first
    need (after collection), the recorder."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config, self.settings = config, settings
        self.points = _points(settings)  # a bad line is a usage error now, not at the end
        self.recorder = Recorder(config, settings, self.points, self.student_name,
                                 view=_gradescope_view(settings))
        self._grader: Grader | None = None
        self._lock = threading.Lock()
        self._names: dict[Path, str] | None = None

    @classmethod
    def register(cls, config: pytest.Config) -> None:
        settings = settings_from_config(config)
        refuse_code_in_students_dirs(settings.students)  # again, for a plugin loaded late
        session = cls(config, settings)
        config.pluginmanager.register(session, "akida-grade-session")
        config.pluginmanager.register(session.recorder, "akida-grade-recorder")
        config.pluginmanager.register(course, "akida-grade-course")  # akida_student, akida_device
        config.stash[course.GRADER] = session.grader
        config.addinivalue_line("markers", "akida_check(name): a check of pytest-akida-grade")
        _add_student_dirs(config, settings)
        if getattr(config.option, "dist", "no") == "load":  # a student's checks share stages
            config.option.dist = "loadfile"
        if config.pluginmanager.hasplugin("html"):
            from pytest_akida_grade.html import HtmlIntegration

            config.pluginmanager.register(
                HtmlIntegration(session.recorder.sorted_records, session.points,
                                settings.quality_max, session.recorder.not_graded),
                "akida-grade-html")

    # ------------------------------------------------------------------ the grader

    def grader(self) -> Grader:
        """Made once, when the class is collected: the sandbox chosen (a usage error when none
        may run here), the cache, the trusted processes' pool (started at the first job)."""
        with self._lock:
            if self._grader is None:
                self._grader = self._make_grader()
            return self._grader

    def _make_grader(self) -> Grader:
        from pytest_akida_grade import grading

        settings, config = self.settings, self.config
        cache = Cache(None if settings.no_cache else _cache_root(config, settings),
                      on_problem=lambda message: _warn(config, message))
        policy = _sandbox(settings, cache)
        announce_sandbox(config, policy.describe())
        scratch = Path(tempfile.mkdtemp(prefix="akida-grade-"))
        os.chmod(scratch, 0o711)  # a sandbox's uid may reach its own directory, list nothing
        return grading.create(settings, cache, scratch, policy, workers=worker_count(config),
                              progress=lambda student, text: progress(config, student, text))

    def student_name(self, path: Path) -> str:
        """The student a module is graded as (discovery.student_names over the whole class)."""
        if self._names is None:
            self._names = student_names(self.settings.students)
        path = path.resolve()
        return self._names.get(path) or student_names([path])[path]

    # ------------------------------------------------------------------ collection

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector
                            ) -> Generator[None, list[pytest.Collector] | None,
                                           list[pytest.Collector] | None]:
        """Submissions are graded, never imported: no Python module pytest makes of a file in a
        students directory is kept; a submission becomes a StudentFile."""
        collected = yield
        if not any(is_inside(file_path, entry) for entry in self.settings.students):
            return collected
        # Whatever python_files or --doctest-modules say, no file here is imported.
        kept = [node for node in collected or [] if not isinstance(node, pytest.Module)]
        if not is_submission(file_path, self.settings.students):
            return kept
        return [*kept, StudentFile.from_parent(parent, path=file_path,
                                               student=self.student_name(file_path))]

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """--akida-shard I/N: only this part of the class (a stable hash of each name)."""
        if self.settings.shard is None:
            return
        index, count = self.settings.shard
        kept = [i for i in items if not isinstance(i, CheckItem) or
                shard_of(i.submission.name, count) == index]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The grader's plan, once: the checks in run order (a student whose grade is wanted
        starts training with its build; alone, the grader looks ahead in this order). A run
        that collected no submission and no course check makes no grader at all."""
        checks = [(item.submission, item.check) for item in session.items
                  if isinstance(item, CheckItem)]
        course_checks = any("akida_student" in getattr(item, "fixturenames", ())
                            for item in session.items)
        if checks or course_checks:
            self.grader().plan(checks)
        self.recorder.expect(session.items)

    # ------------------------------------------------------------------ running

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """While this student is judged, the next ones' stages start (every core busy)."""
        if self._grader is None or not isinstance(item, CheckItem):
            return
        self._grader.focus(item.submission)
        if isinstance(nextitem, CheckItem) and nextitem.submission != item.submission:
            self._grader.prefetch(nextitem.submission)  # this worker's next, as xdist told it

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Where a student's message leaves the grader (terminal, records, reports, xdist): it
        is scrubbed here, once; the full text goes to the log."""
        report = yield
        tagged = properties.Tagged.of(report.user_properties)
        if tagged is not None:
            _scrub_report(report, tagged)
        return report

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._grader is not None:
            self._grader.close()
            shutil.rmtree(self._grader.scratch, ignore_errors=True)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None, None, None]:
        """Progress lines were shown when they came: keep them out of the warnings summary."""
        found = terminalreporter.stats.get("warnings", [])
        terminalreporter.stats["warnings"] = [w for w in found if not is_relayed(
            str(getattr(w, "message", "")))]
        if not terminalreporter.stats["warnings"]:
            del terminalreporter.stats["warnings"]
        yield


# ---------------------------------------------------------------------------- helpers


def _scrub_report(report: pytest.TestReport, tagged: properties.Tagged) -> None:
    where = f"{tagged.student} {tagged.check}"
    if tagged.message is not None:
        report.user_properties = properties.replaced(
            report.user_properties, properties.MESSAGE, _for_student(tagged.message, where))
    longrepr = report.longrepr
    if longrepr is None:
        return
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        report.longrepr = (longrepr[0], longrepr[1], _for_student(longrepr[2], where))
    else:  # a failure's text (a check's message, a course check's assertion, an error)
        report.longrepr = _for_student(str(longrepr), where)


def _for_student(text: str, where: str) -> str:
    cleaned = scrub.for_student(text)
    if cleaned != text:
        log.info("%s, in full: %s", where, text)
    return cleaned


def _points(settings: Settings) -> dict[str, float]:
    try:
        return catalog.parse_points(settings.points)
    except catalog.LineError as error:
        raise pytest.UsageError(str(error)) from None


def _gradescope_view(settings: Settings) -> files.GradescopeView:
    """akida_visibility, akida_stdout_visibility, akida_leaderboard: a usage error now."""
    stdout = (settings.stdout_visibility or "").strip()
    try:
        return files.GradescopeView(
            catalog.parse_visibility(settings.visibility),
            catalog.visibility_of(stdout, "ini akida_stdout_visibility") if stdout else None,
            catalog.parse_leaderboard(settings.leaderboard))
    except catalog.LineError as error:
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


def _warn(config: pytest.Config, message: str) -> None:
    if is_worker(config):
        log.warning(message)  # xdist workers: warnings of their own do not reach the user
    else:
        config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)

