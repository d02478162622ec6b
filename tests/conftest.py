"""Shared fixtures: a pytester project with a fixed ini and a session-wide grading cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from made_up import FAST_INI


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One grading cache for the whole test session: identical submissions train once."""
    return tmp_path_factory.mktemp("akida-cache")


@pytest.fixture
def grading(pytester: pytest.Pytester, shared_cache: Path) -> pytest.Pytester:
    """A grading project: pytest.ini with the fast settings and an empty students/ directory."""
    pytester.makefile(".ini", pytest=FAST_INI.format(cache=shared_cache))
    (pytester.path / "students").mkdir()
    return pytester


