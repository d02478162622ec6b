"""This process's xdist role, by pytest-xdist's own helpers (xdist is optional: without it a
process is neither worker nor controller)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class _Node:
    """What xdist's helpers read: an object with the session's config."""

    config: pytest.Config


def is_worker(config: pytest.Config) -> bool:
    try:
        from xdist import is_xdist_worker
    except ImportError:
        return False
    return bool(is_xdist_worker(_Node(config)))


def is_controller(config: pytest.Config) -> bool:
    try:
        from xdist import is_xdist_controller
    except ImportError:
        return False
    return bool(is_xdist_controller(_Node(config)))


def worker_count(config: pytest.Config) -> int:
    """How many workers share the machine: 1 when this process is the only one."""
    if not is_worker(config):
        return 1
    workerinput: dict[str, object] = getattr(config, "workerinput", {})
    count = workerinput.get("workercount", 1)
    return count if isinstance(count, int) and count > 0 else 1
