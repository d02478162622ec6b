"""The pytest items of a graded class: a submission is a `StudentFile`, each catalog check of it
a `CheckItem` whose outcome is the grader's verdict. No grading policy here, no student code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_akida_grade import catalog, course, properties
from pytest_akida_grade.discovery import Submission
from pytest_akida_grade.results import FAILED, SKIPPED, HarnessError, Verdict

log = logging.getLogger("pytest_akida_grade")


class StudentFile(pytest.File):
    """One submission; its items are the checks, in grading order."""

    def __init__(self, *, student: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.student = student

    def collect(self) -> Iterator[CheckItem]:
        submission = Submission(self.student, self.path)
        for check in catalog.NAMES:
            yield CheckItem.from_parent(self, name=check, submission=submission, check=check)


class CheckItem(pytest.Item):
    def __init__(self, *, submission: Submission, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submission = submission
        self.check = check
        self.verdict: Verdict | None = None
        self.add_marker(pytest.mark.akida_check(check))
        properties.tag(self.user_properties, submission.name, check, submission.path.name)

    def setup(self) -> None:
        """Run the stage this check needs; the grader's own failures are errors, not fails."""
        grader = course.grader_of(self.config)
        grader.background.flush()
        try:
            self.verdict = grader.verdict(self.submission, self.check)
            # For the class's similarity report (recorder.py), never for the student's feedback.
            self.user_properties.append((properties.FINGERPRINT,
                                         grader.similarity_fingerprint(self.submission)))
            return
        except HarnessError as error:
            log.error("grader error on %s %s: %s", self.submission.name, self.check, error)
            problem = str(error)  # scrubbed with every message a student reads (session.py)
        pytest.fail(problem, pytrace=False)  # an error (not a failure): its message alone

    def runtest(self) -> None:
        verdict = self.verdict
        assert verdict is not None
        self.user_properties.append((properties.MESSAGE, verdict.message))
        self.user_properties.append((properties.METRICS, verdict.metrics))
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
