"""The warm evaluator: a crash costs one job (retried once in a fresh process), a job over its
deadline fails and the next one gets a fresh process; a refused model is the student's failure."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from made_up import student_source

from pytest_akida_grade.evaluator import jobs
from pytest_akida_grade.evaluator.client import Evaluator
from pytest_akida_grade.results import Built
from pytest_akida_grade.sandbox import launch, policy
from pytest_akida_grade.sandbox.watch import ChildJob


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox's build export of a small model (model.json, weights.npz, meta.json)."""
    root = tmp_path_factory.mktemp("export")
    module = root / "alice.py"
    module.write_text(student_source())
    scratch = Path(tempfile.mkdtemp(prefix="akida-test-"))
    os.chmod(scratch, 0o711)
    job = ChildJob(name="alice", module=module, weights=None, phases=("build",), seed=0,
              train_data=None, seconds=120, timeout_source="test", build_seconds=120,
              build_timeout_source="test", memory_bytes=6 << 30)
    end = launch.run(policy.choose("auto"), job, scratch, root, lambda message: None,
                     lambda phase, path: None)
    assert end.failure is None, end.failure
    return root / "build"


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluator]:
    """One warm evaluator for the module: each test restarts it at most once."""
    warm = Evaluator("evaluator", tmp_path_factory.mktemp("evaluator"), 12 << 30, 1,
                     lambda student, message: None)
    yield warm
    warm.close()


def inspect(evaluator: Evaluator, export: Path, seconds: float = 120) -> object:
    return evaluator.call(jobs.Inspect(
        architecture=str(export / "model.json"), weights=str(export / "weights.npz"), seed=0,
        weight_bits=4, activation_bits=4, route="default recipe"), "alice", seconds,
        "the test's limit")


def server_pid(evaluator: Evaluator) -> int:
    assert evaluator._process is not None
    return evaluator._process.pid


def test_a_crash_costs_the_job_one_retry_in_a_fresh_process(evaluator: Evaluator,
                                                            export: Path) -> None:
    first = inspect(evaluator, export)  # warm: the next job is killed while it runs
    before = server_pid(evaluator)
    threading.Timer(0.3, lambda: os.killpg(before, signal.SIGKILL)).start()
    retried = inspect(evaluator, export)
    assert server_pid(evaluator) != before
    assert retried.ok is not None and Built.from_json(retried.ok) == Built.from_json(first.ok)


def test_a_job_over_its_deadline_fails_and_the_next_job_gets_a_fresh_process(
        evaluator: Evaluator, export: Path) -> None:
    inspect(evaluator, export)
    before = server_pid(evaluator)
    late = inspect(evaluator, export, seconds=0.05)
    assert late.failure is not None and not late.repeatable
    assert late.failure.startswith("evaluating the model took more than 0.05 s (the limit set "
                                   "by the test's limit)")
    started = time.monotonic()
    assert inspect(evaluator, export).ok is not None
    assert server_pid(evaluator) != before and time.monotonic() - started < 120


def test_an_export_it_cannot_read_is_the_students_failure_not_a_grader_error(
        evaluator: Evaluator, export: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text('{"class_name": "Sequential", "config": {"layers": 7}}')
    (broken / "weights.npz").write_bytes((export / "weights.npz").read_bytes())
    reply = inspect(evaluator, broken)
    assert reply.error is None and reply.failure is not None
    assert "not a Sequential or functional model" in reply.failure


def test_a_layer_off_its_closed_list_is_judged_on_its_json_and_never_rebuilt(
        evaluator: Evaluator, export: Path, tmp_path: Path) -> None:
    lambda_ = tmp_path / "lambda"
    lambda_.mkdir()
    (lambda_ / "model.json").write_text((export / "model.json").read_text().replace(
        '"class_name": "Flatten"', '"class_name": "Lambda"', 1))
    (lambda_ / "weights.npz").write_bytes((export / "weights.npz").read_bytes())
    reply = inspect(evaluator, lambda_)
    assert reply.error is None and reply.ok is not None
    built = Built.from_json(reply.ok)
    assert built.not_rebuilt is not None and "(Lambda) is not one of the layers" in \
        built.not_rebuilt
    assert "Lambda is not an allowed layer" in built.violations["layer_whitelist"][0].message
