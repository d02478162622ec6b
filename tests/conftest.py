"""Shared fixtures: a pytester project with a fixed ini and a session-wide grading cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from made_up import FAST_INI


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist this process is a worker, but the grading runs the tests start are not: they
    must not read xdist's variables (the grader sizes its pool and looks ahead by them)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def shared_cache(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One grading cache for the whole test session: identical submissions train once. Under
    xdist, one for all workers (the session's base directory): the cache locks its entries."""
    if hasattr(request.config, "workerinput"):
        shared = tmp_path_factory.getbasetemp().parent / "akida-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("akida-cache")


@pytest.fixture
def grading(pytester: pytest.Pytester, shared_cache: Path) -> pytest.Pytester:
    """A grading project: pytest.ini with the fast settings and an empty students/ directory."""
    pytester.makefile(".ini", pytest=FAST_INI.format(cache=shared_cache))
    (pytester.path / "students").mkdir()
    return pytester


# The files that grade classes end to end, longest first (a serial run's seconds, measured): under
# `make test`'s xdist (--dist loadfile, no reordering) each goes whole to the next free worker,
# and starting with the longest keeps the two workers' ends close together.
LONGEST_FIRST = ("test_hostile_class.py", "test_plugin_accuracy.py", "test_plugin_fast.py",
                 "test_class.py", "test_evaluator.py", "test_measure.py", "test_mapper_limits.py",
                 "test_instructor.py", "test_autograder.py", "test_sandbox.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
