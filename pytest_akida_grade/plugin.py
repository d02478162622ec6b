"""pytest wiring: each submission becomes a collector whose items are the eight checks.

Nothing here runs student code or Akida itself: grading.py does (through child processes),
checks.py decides, hardware.py talks to the board, report.py writes the files.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_akida_grade import checks
from pytest_akida_grade.cache import Cache
from pytest_akida_grade.discovery import Submission, is_submission
from pytest_akida_grade.grading import Grader, HarnessError
from pytest_akida_grade.settings import Settings, add_options, settings_from_config

log = logging.getLogger("pytest_akida_grade")


@dataclass
class State:
    settings: Settings
    grader: Grader
    needs_grade: set[str] = field(default_factory=set)  # submissions with accuracy checks
    scratch: tempfile.TemporaryDirectory[str] | None = None


STATE = pytest.StashKey[State]()
RECORDER = pytest.StashKey["Recorder"]()


def _state(config: pytest.Config) -> State:
    return config.stash[STATE]


# ---------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """A bare `--akida-device` means the first board; argparse alone would eat a path after it."""
    args[:] = ["--akida-device=first" if arg == "--akida-device" else arg for arg in args]


@pytest.hookimpl(trylast=True)  # after cacheprovider has set config.cache
def pytest_configure(config: pytest.Config) -> None:
    settings = settings_from_config(config)
    points_of(settings)  # a bad akida_points line is a usage error now, not after grading
    scratch = tempfile.TemporaryDirectory(prefix="akida-grade-")
    cache = Cache(None if settings.no_cache else _cache_root(config, settings),
                  on_problem=lambda message: _warn(config, message))
    grader = Grader(settings, cache, Path(scratch.name),
                    progress=lambda student, message: _progress(config, student, message))
    config.stash[STATE] = State(settings, grader, scratch=scratch)
    config.stash[RECORDER] = Recorder(config)
    config.pluginmanager.register(config.stash[RECORDER], "akida-grade-recorder")
    config.addinivalue_line("markers", "akida_check(name): a check of pytest-akida-grade")
    _add_student_dirs(config)
    _group_students_under_xdist(config)
    if config.pluginmanager.hasplugin("html"):
        from pytest_akida_grade.html import HtmlIntegration

        config.pluginmanager.register(HtmlIntegration(config), "akida-grade-html")


def _cache_root(config: pytest.Config, settings: Settings) -> Path:
    if settings.cache_dir is not None:
        return settings.cache_dir
    if getattr(config, "cache", None) is not None:
        return config.cache.mkdir("akida-grade")
    return config.rootpath / ".pytest_cache" / "d" / "akida-grade"


def _add_student_dirs(config: pytest.Config) -> None:
    """`--akida-students DIR` grades DIR from anywhere: it joins (or replaces) the paths."""
    cli = [Path(p).expanduser() for p in config.getoption("akida_students") or []]
    for path in cli:
        if not path.exists():
            raise pytest.UsageError(f"--akida-students {path}: no such file or directory")
    if cli:
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        config.args = ([*config.args] if explicit else []) + [str(p) for p in cli]


def _group_students_under_xdist(config: pytest.Config) -> None:
    """A student's checks share stages: keep each student's file on one xdist worker."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadfile"


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state:
        state.grader.close()
        if state.scratch:
            state.scratch.cleanup()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note which students will be trained, so training can start with their first check."""
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    state.needs_grade = {str(item.path) for item in session.items
                         if isinstance(item, CheckItem) and item.check in checks.ACCURACY_CHECKS}


def _warn(config: pytest.Config, message: str) -> None:
    if hasattr(config, "workerinput"):
        log.warning(message)  # xdist workers: warnings of their own do not reach the user
    else:
        config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)


def _progress(config: pytest.Config, student: str, message: str) -> None:
    log.info("%s: %s", student, message)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or hasattr(config, "workerinput"):
        return  # xdist workers: the logging line above is what reaches the user
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(f"[akida-grade] {student}: {message}")


# ---------------------------------------------------------------------------- collection


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Iterator[Any]:
    """Submissions are graded, never imported: replace any Python module pytest made of one."""
    collected = yield
    state = parent.config.stash.get(STATE, None)
    if state is None or not is_submission(file_path, state.settings.students):
        return collected
    kept = [node for node in collected or [] if not isinstance(node, pytest.Module)]
    return [*kept, StudentFile.from_parent(parent, path=file_path)]


class StudentFile(pytest.File):
    """One submission; its items are the checks, in grading order."""

    def collect(self) -> Iterator[CheckItem]:
        submission = Submission(self.path.stem, self.path)
        for check in checks.CHECKS:
            yield CheckItem.from_parent(self, name=check, submission=submission, check=check)


class CheckFailure(Exception):
    """A check's verdict: reported as its message alone, not as a traceback."""


class CheckItem(pytest.Item):
    def __init__(self, *, submission: Submission, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submission = submission
        self.check = check
        self.add_marker(pytest.mark.akida_check(check))
        self.user_properties.append(("akida_student", submission.name))
        self.user_properties.append(("akida_check", check))

    def setup(self) -> None:
        """Run the stage this check needs; the grader's own failures are errors, not fails."""
        state = _state(self.config)
        state.grader.flush_progress()
        if self.check == "loads" and str(self.path) in state.needs_grade:
            state.grader.prefetch_grade(self.submission)
        try:
            self.verdict = _verdict(self.config, self.submission, self.check)
        except HarnessError as error:
            raise CheckFailure(str(error)) from None

    def runtest(self) -> None:
        verdict: checks.Verdict = self.verdict
        self.user_properties.append(("akida_message", verdict.message))
        self.user_properties.append(("akida_metrics", verdict.metrics))
        if verdict.outcome == checks.SKIPPED:
            pytest.skip(verdict.message)
        if verdict.outcome == checks.FAILED:
            raise CheckFailure(verdict.message)

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException],
                         style: Any = None) -> str | Any:
        # Setup errors (the grader's) and call failures (the student's) alike: the message only.
        if isinstance(excinfo.value, CheckFailure):
            return str(excinfo.value)
        return super()._repr_failure_py(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.submission.name}::{self.check}"


def _verdict(config: pytest.Config, submission: Submission, check: str) -> checks.Verdict:
    state = _state(config)
    settings = state.settings
    if check in checks.FAST:
        return checks.FAST[check](state.grader.inspect(submission))
    if check == "quantized_accuracy":
        return checks.quantized_accuracy(state.grader.grade(submission), settings.min_accuracy)
    if check == "akida_accuracy":
        return checks.akida_accuracy(state.grader.grade(submission), settings.min_accuracy)
    return _hardware_verdict(config, submission)


def _hardware_verdict(config: pytest.Config, submission: Submission) -> checks.Verdict:
    from pytest_akida_grade import hardware

    grader, settings = _state(config).grader, _state(config).settings
    stage = grader.hardware(submission)
    if not stage.ok:
        return checks.Verdict(checks.FAILED, stage.failure or "not measured")
    result = stage.result or {}
    graded = grader.peek("grade", submission)  # never train just to annotate a figure
    figures = (graded.result or {}) if graded and graded.ok else {}
    if result["source"] == "none":
        accuracy = figures.get("akida_accuracy")
        memory = (figures.get("mapping") or {}).get("program_memory_bytes")
        budget = (hardware.energy_budget_mj(accuracy, memory, settings.quality_max)
                  if accuracy is not None and memory else None)
        verdict = checks.no_hardware(accuracy, memory, budget, settings.quality_max)
        why = result.get("why")
        return checks.Verdict(verdict.outcome, f"{why}. {verdict.message}" if why
                              else verdict.message, verdict.metrics)
    measurement = result["measurement"]
    text = hardware.format_measurement(
        submission.name, measurement, quantized_accuracy=figures.get("quantized_accuracy"),
        quality_max=settings.quality_max)
    for line in text.splitlines():
        _progress(config, submission.name, line)
    return checks.hardware_quality(measurement, result["source"],
                                   quality_max=settings.quality_max, report=text)


# ---------------------------------------------------------------------------- results


class Recorder:
    """Collects outcomes by student; on the xdist controller reports come from every worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        student, check = properties.get("akida_student"), properties.get("akida_check")
        if student is None or check is None:
            return
        if report.when != "call" and not (report.failed or report.skipped):
            return
        outcome = "error" if report.when != "call" and report.failed else report.outcome
        record = self.records.setdefault(student, {"student": student, "checks": {},
                                                   "metrics": {}})
        record["checks"][check] = {
            "outcome": outcome,
            "message": properties.get("akida_message") or _longrepr_text(report)}
        metrics = properties.get("akida_metrics") or {}
        record["metrics"].update({k: v for k, v in metrics.items() if v is not None})

    def sorted_records(self) -> list[dict[str, Any]]:
        return [self.records[name] for name in sorted(self.records)]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # the controller writes the files, once
        from pytest_akida_grade import report

        settings = _state(self.config).settings
        points = points_of(settings)
        records = report.with_points(self.sorted_records(), points)
        if settings.json:
            report.write_json(records, settings.json)
        if settings.csv:
            report.write_csv(records, settings.csv, points)
        if settings.gradescope:
            report.write_gradescope(records, settings.gradescope, points,
                                    quality_max=settings.quality_max)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        terminalreporter.section("akida grades")
        for record in self.sorted_records():
            terminalreporter.write_line(_summary_line(record))


def points_of(settings: Settings) -> dict[str, float]:
    from pytest_akida_grade import report

    try:
        return report.parse_points(settings.points)
    except report.ReportError as error:
        raise pytest.UsageError(str(error)) from None


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
    failed = [name for name, c in outcomes.items() if c["outcome"] in ("failed", "error")]
    if failed:
        figures.append("failed: " + ", ".join(failed))
    return f"{record['student']}: " + "; ".join(figures)


def _longrepr_text(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "")
