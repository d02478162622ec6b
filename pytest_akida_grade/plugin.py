"""pytest-akida-grade's entry point (pytest11), thin as pytest-html's: its options always; the
grading machinery (session.py) only when a run grades students, configured by `--akida-students`
or the ini's `akida_students`. Any other pytest run of the environment pays for the options only:
no sandbox probe, no grader, no trusted process, no scratch directory.
"""

from __future__ import annotations

import os

import pytest

from pytest_akida_grade.settings import add_options, directories


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """Before pytest imports any conftest (ours runs first): a students directory holding code
    pytest would import is a usage error. A bare `--akida-device` means the first board;
    argparse alone would eat a path after it."""
    students = directories(early_config, "students", early=True)
    if students:
        from pytest_akida_grade.session import refuse_code_in_students_dirs

        refuse_code_in_students_dirs(students)
    if "--akida-device" in args:
        args[:] = ["--akida-device=first" if arg == "--akida-device" else arg for arg in args]


@pytest.hookimpl(trylast=True)  # after cacheprovider has set config.cache
def pytest_configure(config: pytest.Config) -> None:
    if not directories(config, "students"):
        return  # not a grading run: options only
    from pytest_akida_grade.session import GradingSession

    GradingSession.register(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` of a grading run: one worker per two cores, none below four cores. A process
    grades with as many warm trusted processes as its share of the cores (grading.py) plus the
    sandboxed children beside them, so one process alone keeps two cores busy: on two or three
    cores `-n auto` is `-n 0` (a worker would only add its start-up). Other runs: xdist's own."""
    if not directories(config, "students"):
        return None
    workers = len(os.sched_getaffinity(0)) // 2
    return workers if workers >= 2 else 0
