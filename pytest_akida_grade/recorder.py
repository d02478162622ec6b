"""The student records: each check's outcome and message, by student, from every worker.

pytest plumbing only (no grading): collects reports into records (docs/contracts.md), writes
the grade files once (the xdist controller), prints the akida summary, relays progress lines
from xdist workers to the controller's terminal and counts the students done.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_akida_grade import catalog, discovery, late, roster, similarity
from pytest_akida_grade.cache import toolchain_versions
from pytest_akida_grade.properties import Tagged
from pytest_akida_grade.report import files
from pytest_akida_grade.settings import Settings
from pytest_akida_grade.workers import is_worker

log = logging.getLogger("pytest_akida_grade")


class ProgressLine(UserWarning):
    """A progress line from an xdist worker: xdist carries warnings to the controller live."""


class SandboxLine(UserWarning):
    """A worker's sandbox, for the controller's terminal and HTML report (shown once)."""


SANDBOX_PREFIX = "akida-grade sandbox: "
RELAYED = (ProgressLine, SandboxLine)


def is_relayed(warning: str) -> bool:
    """A warnings-summary entry that is one of our relayed lines (shown when it came)."""
    return any(f"{kind.__name__}: " in warning for kind in RELAYED)


def progress(config: pytest.Config, student: str, message: str) -> None:
    """A line for the terminal; from an xdist worker it travels to the controller's."""
    log.info("%s: %s", student, message)
    relay(config, f"[akida-grade] {student}: {message}", ProgressLine)


def announce_sandbox(config: pytest.Config, description: str) -> None:
    """The sandbox chosen, in the terminal and the HTML report's environment table."""
    relay(config, SANDBOX_PREFIX + description, SandboxLine)
    describe_in_html_report(config, description)


def relay(config: pytest.Config, line: str, kind: type[UserWarning]) -> None:
    """The line on this terminal, or from an xdist worker on the controller's (as a warning:
    xdist carries them live)."""
    if not is_worker(config):
        write_line(config, line)
        return
    relayed = warnings.WarningMessage(kind(line), kind, __file__, 0)
    config.hook.pytest_warning_recorded.call_historic(kwargs={
        "warning_message": relayed, "when": "runtest", "nodeid": "", "location": None})


def describe_in_html_report(config: pytest.Config, sandbox: str) -> None:
    """The report's environment table: the sandbox and the toolchain behind the figures (their
    installed versions, read from package metadata: nothing imported)."""
    with contextlib.suppress(ImportError, KeyError):
        from pytest_metadata.plugin import metadata_key  # type: ignore[import-untyped]

        metadata = config.stash[metadata_key]
        metadata["Akida sandbox"] = sandbox
        metadata.update(toolchain_versions())


def write_line(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)


class Recorder:
    """Collects outcomes by student; on the xdist controller reports come from every worker."""

    def __init__(self, config: pytest.Config, settings: Settings, points: Mapping[str, float],
                 name_of: Callable[[Path], str] = lambda path: path.stem,
                 view: files.GradescopeView | None = None) -> None:
        self.config, self.settings, self.points = config, settings, points
        self.name_of = name_of  # a module's student name (discovery.student_names)
        self._roster: list[roster.RosterRow] | None = None  # read once, at the end
        self.view = view or files.GradescopeView()  # what Gradescope shows students, and when
        self.records: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, set[str]] = {}  # student -> checks not yet finished
        self.graded = 0
        self.sandbox_shown = False  # under xdist: the first worker's sandbox line is shown

    def expect(self, items: list[pytest.Item]) -> None:
        """The built-in checks each student will run (their items say who and which)."""
        for item in items:
            tagged = Tagged.of(item.user_properties)
            if tagged is not None and tagged.check in catalog.BY_NAME:
                self.pending.setdefault(tagged.student, set()).add(tagged.check)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.pending:
            return  # every worker collects the whole class: once is enough
        for nodeid in ids:
            path, _, check = nodeid.partition("::")
            if check in catalog.BY_NAME:
                student = self.name_of(self.config.rootpath / path)
                self.pending.setdefault(student, set()).add(check)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        tagged = Tagged.of(report.user_properties)
        if tagged is None:
            return
        student, check = tagged.student, tagged.check
        record = self.records.setdefault(student, {"student": student, "checks": {},
                                                   "metrics": {}})
        # The time pytest spent on the student's checks (Gradescope's execution_time).
        record["seconds"] = record.get("seconds", 0.0) + max(0.0, report.duration)
        if report.when == "teardown":
            self._count(student, check)
        if report.when != "call" and not (report.failed or report.skipped):
            return
        outcome = "error" if report.when != "call" and report.failed else report.outcome
        if tagged.file:
            record["file"] = tagged.file
        record["checks"][check] = {"outcome": outcome,
                                   "message": tagged.message or _longrepr_text(report)}
        if tagged.fingerprint:  # the latest: the trained weights once known
            record["fingerprint"] = dict(tagged.fingerprint)
        record["metrics"].update({k: v for k, v in tagged.metrics.items() if v is not None})

    def _count(self, student: str, check: str) -> None:
        """Under xdist, the controller says when a student is done (the log is interleaved)."""
        left = self.pending.get(student)
        if not left or check not in left:
            return
        left.discard(check)
        if not left and self.config.pluginmanager.has_plugin("dsession"):
            self.graded += 1
            write_line(self.config, f"[akida-grade] graded {self.graded} / {len(self.pending)} "
                                     f"students ({student} done)")

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage) -> None:
        """On the xdist controller: a worker's progress line, printed as it arrives; the
        workers' sandbox, once."""
        if is_worker(self.config):
            return
        line = str(warning_message.message)
        if issubclass(warning_message.category, ProgressLine):
            write_line(self.config, line)
        elif issubclass(warning_message.category, SandboxLine) and not self.sandbox_shown:
            self.sandbox_shown = True
            write_line(self.config, line)
            describe_in_html_report(self.config, line.removeprefix(SANDBOX_PREFIX))

    def sorted_records(self) -> list[dict[str, Any]]:
        """The records by student, with the roster's late flag, days late and file names when
        there is one (import-submissions writes it beside the modules), and the late policy."""
        records = roster.annotate([self.records[name] for name in sorted(self.records)],
                                  self._roster_entries(), self.settings.due)
        return late.penalize(records, self.settings.late_penalty)

    def _roster_entries(self) -> list[roster.RosterRow]:
        if self._roster is None:
            self._roster = []
            for folder in self.settings.students:
                path = folder / roster.NAME
                if not path.is_file():
                    continue
                try:
                    self._roster += roster.read(path)
                except roster.RosterError as error:
                    write_line(self.config, f"[akida-grade] {error}: the roster is ignored")
        return self._roster

    def not_graded(self) -> list[dict[str, str]]:
        """What the students folders hold that is not graded, with the reason and the fix."""
        return [item.as_dict() for item in discovery.not_graded(self.settings.students)]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if is_worker(self.config):
            return  # the controller writes the files, once
        settings, points = self.settings, self.points
        records = catalog.with_points(self.sorted_records(), points)
        try:
            if settings.json:
                files.write_json(records, settings.json, not_graded=self.not_graded(),
                                 similar=similarity.similar_pairs(records))
            if settings.csv:
                files.write_csv(records, settings.csv, points)
            if settings.gradescope:
                files.write_gradescope(records, settings.gradescope, points,
                                       quality_max=settings.quality_max, view=self.view)
        except files.ReportError as error:
            write_line(self.config, f"[akida-grade] {error}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if is_worker(self.config):
            return
        left_out = self.not_graded()
        if not self.records and not left_out:
            return
        terminalreporter.section("akida grades")
        for record in self.sorted_records():
            terminalreporter.write_line(_summary_line(record))
        for item in left_out:
            terminalreporter.write_line(f"{item['file']}: not graded: {item['reason']}; "
                                        f"fix: {item['fix']}")


def _summary_line(record: dict[str, Any]) -> str:
    outcomes = record["checks"]
    passed = sum(1 for c in outcomes.values() if c["outcome"] == "passed")
    metrics = record["metrics"]
    figures = [f"{passed}/{len(outcomes)} checks passed"]
    for name, label in (("quantized_accuracy", "quantized"), ("akida_accuracy", "akida")):
        if metrics.get(name) is not None:
            figures.append(f"{label} {100 * metrics[name]:.2f} %")
    if metrics.get("quality") is not None:
        figures.append(f"quality {metrics['quality']:.1f} ({metrics.get('source')})")
    for outcome in ("failed", "error"):
        names = [name for name, c in outcomes.items() if c["outcome"] == outcome]
        if names:
            figures.append(f"{outcome}: " + ", ".join(names))
    penalty = late.describe(record)
    flag = f" ({penalty})" if penalty else " (late)" if record.get("late") else ""
    file = record.get("file")
    shown = record["student"] if file in (None, f"{record['student']}.py") \
        else f"{record['student']} ({file})"
    return f"{shown}{flag}: " + "; ".join(figures)


def _longrepr_text(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "")
