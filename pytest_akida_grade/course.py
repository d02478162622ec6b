"""A course's own checks are ordinary pytest tests, through two fixtures (registered by
session.py when a run grades students).
They live in the course checks' directory (akida_course_checks), never among the students:

    # course_checks/test_course.py
    def test_at_most_20000_parameters(akida_student):
        assert akida_student.params <= 20_000

A test that requests `akida_student` runs once per submission (test id `<test>[<student>]`) and
joins that student's record under its function name. The fixture is a read-only view of what the
stages found, computed on first use through the same stages and cache as the built-in checks:
student code never runs in this process. `akida_device` is the opened board, used under the
board lock, skipped without a board.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_akida_grade import properties
from pytest_akida_grade.discovery import Submission
from pytest_akida_grade.quality import Measurement
from pytest_akida_grade.results import Built, Graded, HarnessError

if TYPE_CHECKING:
    from pytest_akida_grade.grading import Grader

T = TypeVar("T")
# The session's grader, made on first use (session.py sets it when a run grades students).
GRADER = pytest.StashKey[Callable[[], "Grader"]]()


def grader_of(config: pytest.Config) -> Grader:
    grader = config.stash.get(GRADER, None)
    if grader is None:
        raise pytest.UsageError("the akida fixtures grade students: configure them with "
                                "--akida-students DIR or the ini's akida_students")
    return grader()


class StudentView:
    """One submission as the grader sees it; each figure is computed once, on first use."""

    def __init__(self, submission: Submission, grader: Grader) -> None:
        self._submission, self._grader = submission, grader

    def __repr__(self) -> str:
        return f"<akida student {self.name}>"

    @property
    def name(self) -> str:
        return self._submission.name

    @property
    def path(self) -> Path:
        return self._submission.path

    @property
    def layers(self) -> tuple[dict[str, Any], ...]:
        """Layer specs: index, name, class_name, config, input_shape, output_shape."""
        return self._built().layers

    @property
    def params(self) -> int:
        return self._built().params

    @property
    def weight_bits(self) -> Any:
        return self._built().weight_bits

    @property
    def activation_bits(self) -> Any:
        return self._built().activation_bits

    @property
    def graded(self) -> Graded:
        """Float / quantized / Akida accuracy and mapping figures (trains when not cached)."""
        stage = _harness(lambda: self._grader.wait_grade(self._submission))
        if stage.result is None:
            pytest.skip(f"not graded: {stage.failure}")
        return stage.result

    @property
    def measurement(self) -> Measurement | None:
        """The board's or a recording's figures for this student, or None."""
        stage = _harness(lambda: self._grader.run_hardware(self._submission))
        return stage.result.measurement if stage.result else None

    def _built(self) -> Built:
        stage = _harness(lambda: self._grader.wait_build(self._submission))
        if stage.result is None:
            pytest.skip("not checked: the submission did not load (see its loads check)")
        return stage.result


def _harness(stage: Callable[[], T]) -> T:
    """A stage, or the grader's own failure as a pytest error showing its message alone."""
    try:
        return stage()
    except HarnessError as error:
        problem = str(error)
    pytest.fail(problem, pytrace=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that asks for `akida_student` runs once per submission of the class."""
    if "akida_student" not in metafunc.fixturenames:
        return
    students = grader_of(metafunc.config).class_list()
    metafunc.parametrize("akida_student", students, ids=[s.name for s in students],
                         indirect=True)


@pytest.fixture
def akida_student(request: pytest.FixtureRequest) -> StudentView:
    submission: Submission = request.param
    name = getattr(request.node, "originalname", request.node.name)
    properties.tag(request.node.user_properties, submission.name, name, submission.path.name)
    return StudentView(submission, grader_of(request.config))


@pytest.fixture
def akida_device(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The opened board, held under the board lock for the test's duration."""
    grader = grader_of(request.config)
    if not grader.settings.use_device:
        pytest.skip("not measured: no board. Run with --akida-device on the lab board.")
    from pytest_akida_grade import board

    bench = grader.bench()
    try:
        device = bench.device()
    except board.BoardError as error:
        problem = str(error)
    else:
        with bench.lock():
            yield device
        return
    pytest.fail(problem, pytrace=False)
