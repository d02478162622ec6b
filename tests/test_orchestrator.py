"""grading.py with fakes only: the orchestrator's paths (cache hit, fused, failed build, crash,
timeout, cancellation, look-ahead) in milliseconds, without TensorFlow or a child process.

The fakes do exactly what the real collaborators promise (stages.py's protocols): a child hands
over model.json, weights.npz and meta.json; a trusted process answers a job with a stage result
and writes the files the job names.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_akida_grade import catalog
from pytest_akida_grade.background import Background
from pytest_akida_grade.cache import Cache
from pytest_akida_grade.discovery import Submission
from pytest_akida_grade.evaluator import jobs
from pytest_akida_grade.evaluator.client import Reply
from pytest_akida_grade.grading import Cancelled, Grader
from pytest_akida_grade.hardware import Hardware
from pytest_akida_grade.results import (
    Built,
    Graded,
    HarnessError,
    MappingFigures,
    Route,
    Stage,
    V1Truth,
)
from pytest_akida_grade.sandbox.watch import ChildJob
from pytest_akida_grade.settings import OPTIONS, Settings

SETTINGS = Settings(**{option.name: option.default for option in OPTIONS}, use_device=False)
MAPPING = MappingFigures(error=None, nps=12, hardware_sequences=1, program_memory_bytes=9000)
FAST = [check for check in catalog.NAMES if check not in catalog.ACCURACY
        and catalog.BY_NAME[check].stage == "build"]


def built(route: Route) -> dict[str, Any]:
    return Built(
        layers=({"index": 0, "name": "conv2d", "class_name": "Conv2D"},), params=1234,
        weight_bits=4, activation_bits=4, violations={}, route=route,
        v1=V1Truth(bits=(4, 4), declared_bits_used=True, mapping=MAPPING)).to_json()


def graded(route: Route, cached: bool = False, accuracy: float = 0.98) -> dict[str, Any]:
    return Graded(
        n_train=100, n_test=50, route=route, cached=cached, float_accuracy=accuracy + 0.001,
        quantized_accuracy=accuracy, akida_accuracy=accuracy, quantize_attempt=0,
        attempt_val_accuracies=(accuracy,), cut_at=None, mapping=MAPPING,
        peak_rss_mb=800.0).to_json()


@dataclass
class FakeChildren:
    """Sandboxed children: one run per student (a second when a training run is asked after a
    build-only one); what they hand over, or why not, per student name."""

    root: Path
    routes: dict[str, str] = field(default_factory=dict)  # declared in meta.json
    failures: dict[str, Stage[Path]] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)  # a hostile meta.json
    runs: list[ChildJob] = field(default_factory=list)
    closed: bool = False

    def started(self, key: str) -> bool:
        return any(str(job.module) == key for job in self.runs)

    def handed_over(self, key: str, phase: str, train: bool,
                    job: Callable[[], ChildJob]) -> Stage[Path]:
        phases = [run.phases for run in self.runs if str(run.module) == key]
        if not phases or (train and not any("train" in p for p in phases)):
            self.runs.append(job())
        name = self.runs[-1].name
        if name in self.failures:
            return self.failures[name]
        out = self.root / "handed" / name / phase
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").write_text('{"class_name": "Sequential"}')
        np.savez(out / "weights.npz", kernel=np.full(3, 0.5 if phase == "train" else 0.1))
        (out / "meta.json").write_bytes(self.meta.get(name) or json.dumps({
            "route": self.routes.get(name, "default recipe"), "weight_bits": 4,
            "activation_bits": 4}).encode())
        return Stage(result=out)

    def staging(self) -> Path:
        (self.root / "staging").mkdir(parents=True, exist_ok=True)
        return self.root / "staging"

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeTrusted:
    """Warm trusted processes: every job answered as the evaluator would, or as `answers` says
    for a (kind, student)."""

    answers: dict[tuple[str, str], Reply] = field(default_factory=dict)
    calls: list[tuple[str, jobs.Job]] = field(default_factory=list)
    started: bool = False
    closed: bool = False
    size: int = 1

    def start(self) -> None:
        self.started = True

    def call(self, job: jobs.Job, student: str, seconds: float, timeout_source: str,
             urgency: Callable[[], int] = lambda: 0) -> Reply:
        self.calls.append((student, job))
        if (job.KIND, student) in self.answers:
            return self.answers[job.KIND, student]
        return self._answer(job)

    def kinds(self, student: str | None = None) -> list[str]:
        return [job.KIND for who, job in self.calls if student in (None, who)]

    def close(self) -> None:
        self.closed = True

    @staticmethod
    def _answer(job: jobs.Job) -> Reply:
        if isinstance(job, jobs.Inspect):
            return Reply(ok=built(job.route))
        if isinstance(job, jobs.Train):
            np.savez(job.out, kernel=np.full(3, 0.7))
            return Reply(ok={})
        grade = job.grade if isinstance(job, jobs.InspectAndGrade) else job
        Path(grade.out).write_bytes(b"converted model")
        if isinstance(job, jobs.InspectAndGrade):
            return Reply(ok={"built": built(job.inspect.route),
                             "graded": graded(grade.route, grade.cached)})
        return Reply(ok=graded(grade.route, grade.cached))


@dataclass
class FakeSource:
    path: Path
    sha256: str = "d" * 64


@dataclass
class FakeData:
    root: Path
    fits: int = 0

    def source(self) -> FakeSource:
        return FakeSource(self.root / "mnist.npz")

    def spec(self) -> jobs.DataSpec:
        return jobs.DataSpec(path=str(self.root / "mnist.npz"), sha256="d" * 64, seed=0,
                             validation_split=0.1, train_limit=0, test_limit=0)

    def split(self) -> Any:
        raise AssertionError("only the board measures on the test set")

    def fit_file(self, directory: Path) -> Path:
        self.fits += 1
        return directory / "fit.npz"


def no_board() -> Any:
    raise AssertionError("no board in these tests")


@dataclass
class Class:
    """A class of made-up students and the fakes that grade it."""

    root: Path
    children: FakeChildren
    trusted: FakeTrusted
    cache: Cache

    def student(self, name: str, *, pretrained: bool = False) -> Submission:
        path = self.root / "students" / f"{name}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# {name}'s model\n")
        if pretrained:
            path.with_name(f"{name}.weights.h5").write_bytes(b"weights of " + name.encode())
        return Submission(name, path)

    def grader(self, workers: int = 1) -> Grader:
        return Grader(SETTINGS, self.cache, self.root, children=self.children,
                      trusted=self.trusted, data=FakeData(self.root),
                      hardware=Hardware(SETTINGS, no_board),
                      background=Background(lambda student, message: None),
                      cancelled=Cancelled(), workers=workers)

    def again(self) -> Grader:
        """The next run over the same cache: new children and trusted processes."""
        self.children = FakeChildren(self.root / "again")
        self.trusted = FakeTrusted()
        return self.grader()


@pytest.fixture
def school(tmp_path: Path) -> Class:
    return Class(tmp_path, FakeChildren(tmp_path), FakeTrusted(), Cache(tmp_path / "cache"))


def verdicts(grader: Grader, submission: Submission, checks: list[str] | None = None,
             ) -> dict[str, tuple[str, str]]:
    """Plans the checks (every one by default), then asks for each verdict in order."""
    checks = checks or list(catalog.NAMES)
    grader.plan((submission, check) for check in checks)
    grader.focus(submission)
    found = {check: grader.verdict(submission, check) for check in checks}
    return {check: (verdict.outcome, verdict.message) for check, verdict in found.items()}


def grade_message(found: dict[str, tuple[str, str]]) -> str:
    return found["quantized_accuracy"][1]


# ---------------------------------------------------------------------------- the paths


def test_a_student_on_the_default_recipe_is_inspected_trained_and_graded_once(
        school: Class) -> None:
    alice = school.student("alice")
    grader = school.grader()
    found = verdicts(grader, alice)
    assert {found[check][0] for check in [*FAST, *catalog.ACCURACY]} == {"passed"}
    assert "training: default recipe" in grade_message(found)
    assert sorted(school.trusted.kinds()) == ["grade", "inspect", "train"]
    assert [run.phases for run in school.children.runs] == [("build", "train")]
    verdicts(grader, alice)  # asked again: nothing is done twice
    assert len(school.trusted.calls) == 3
    grader.close()


def test_an_unchanged_student_is_graded_from_the_cache_with_no_child_and_no_job(
        school: Class) -> None:
    alice = school.student("alice")
    first = verdicts(school.grader(), alice)
    again = verdicts(school.again(), alice)
    assert again == first
    assert school.children.runs == [] and school.trusted.calls == []


def test_trained_weights_in_the_cache_are_graded_again_without_training(
        school: Class) -> None:
    alice = school.student("alice")
    verdicts(school.grader(), alice)
    for grade in (school.cache.root or Path()).glob("grade/*"):
        for file in grade.iterdir():
            file.unlink()
        grade.rmdir()  # the grade's entry is gone, the trained weights' is not
    found = verdicts(school.again(), alice)
    assert school.trusted.kinds() == ["grade"]
    assert "training: default recipe (cached)" in grade_message(found)
    assert school.children.runs == []  # the build's files came from its cache entry


def test_a_pre_trained_student_wanted_graded_is_inspected_and_graded_in_one_job(
        school: Class) -> None:
    bob = school.student("bob", pretrained=True)
    found = verdicts(school.grader(), bob)
    assert school.trusted.kinds() == ["inspect+grade"]
    assert found["quantized_accuracy"][0] == "passed"
    assert "training: weights file" in grade_message(found)
    graded_model = next((school.cache.root or Path()).glob("grade/*/model.fbz"))
    assert graded_model.read_bytes() == b"converted model"


def test_a_pre_trained_student_checked_fast_only_is_inspected_on_the_grades_images(
        school: Class) -> None:
    bob = school.student("bob", pretrained=True)
    found = verdicts(school.grader(), bob, FAST)
    assert {outcome for outcome, _ in found.values()} == {"passed"}
    [(_, job)] = school.trusted.calls
    assert isinstance(job, jobs.Inspect) and job.calibration is not None
    assert job.calibration.samples == SETTINGS.calibration_samples


def test_a_student_with_train_is_trained_in_its_own_child_and_graded_on_those_weights(
        school: Class) -> None:
    carol = school.student("carol")
    school.children.routes["carol"] = "train()"
    found = verdicts(school.grader(), carol)
    assert sorted(school.trusted.kinds()) == ["grade", "inspect"]  # no default recipe
    [(_, grade)] = [call for call in school.trusted.calls if call[1].KIND == "grade"]
    assert isinstance(grade, jobs.Grade)
    assert np.load(grade.weights)["kernel"][0] == 0.5  # the train phase's weights
    assert "training: train()" in grade_message(found)


def test_only_an_accuracy_check_makes_the_child_train(school: Class) -> None:
    alice = school.student("alice")
    verdicts(school.grader(), alice, FAST)
    assert [run.phases for run in school.children.runs] == [("build",)]
    assert school.trusted.kinds() == ["inspect"]


def test_a_submission_that_fails_its_build_is_never_sent_to_a_trusted_process(
        school: Class) -> None:
    dave = school.student("dave")
    school.children.failures["dave"] = Stage(
        failure="build_model() raised ValueError: no model\n  in dave.py, line 3")
    grader = school.grader()
    found = verdicts(grader, dave)
    assert found["loads"] == ("failed", "the submission does not load: build_model() raised "
                                        "ValueError: no model\n  in dave.py, line 3")
    assert found["quantized_accuracy"] == (
        "failed", "not graded: the submission did not load (see the loads check): "
                  "build_model() raised ValueError: no model")
    assert school.trusted.calls == []
    assert grader.cancelled(str(dave.path))  # its training child, if any, is stopped


def test_a_hand_over_with_unusable_declarations_fails_loads_saying_so(school: Class) -> None:
    eve = school.student("eve")
    school.children.meta["eve"] = b'{"route": "rm -rf /", "weight_bits": [4]}'
    found = verdicts(school.grader(), eve, ["loads"])
    assert found["loads"][0] == "failed"
    assert "the sandbox handed over unusable declarations (meta.json is malformed" in \
        found["loads"][1]
    assert school.trusted.calls == []


@pytest.mark.parametrize(("repeatable", "asked_again"), [(False, True), (True, False)])
def test_a_child_that_timed_out_is_asked_again_next_run_a_plain_failure_is_not(
        school: Class, repeatable: bool, asked_again: bool) -> None:
    frank = school.student("frank")
    failure: Stage[Path] = Stage(failure="build_model() took longer than 120 s",
                                 repeatable=repeatable)
    school.children.failures["frank"] = failure
    verdicts(school.grader(), frank, ["loads"])
    grader = school.again()
    school.children.failures["frank"] = failure
    assert verdicts(grader, frank, ["loads"])["loads"][0] == "failed"
    assert bool(school.children.runs) is asked_again


def test_a_crashed_trusted_process_costs_that_student_only_and_is_not_cached(
        school: Class) -> None:
    alice, gina = school.student("alice"), school.student("gina")
    school.trusted.answers["grade", "gina"] = Reply(
        failure="the grader's process crashed twice on this model", repeatable=False)
    grader = school.grader()
    assert grade_message(verdicts(grader, gina)).startswith("not graded: the grader's process")
    assert verdicts(grader, alice)["quantized_accuracy"][0] == "passed"
    again = school.again()
    assert verdicts(again, gina)["quantized_accuracy"][0] == "passed"
    assert verdicts(again, alice)["quantized_accuracy"][0] == "passed"
    assert school.trusted.kinds() == ["grade"]  # gina's only: her build and training were kept


def test_an_error_of_the_grader_is_a_harness_error_never_the_students_failure(
        school: Class) -> None:
    hana = school.student("hana")
    school.trusted.answers["inspect", "hana"] = Reply(error="KeyError: 'layers'")
    grader = school.grader()
    grader.plan([(hana, "loads")])
    with pytest.raises(HarnessError, match="the grader failed on hana: KeyError"):
        grader.verdict(hana, "loads")


def test_judging_a_student_starts_the_next_ones_alone_but_not_under_xdist(
        school: Class) -> None:
    students = [school.student(name) for name in ("ann", "ben", "cat", "dan", "eli")]
    for workers, started in ((1, ["ann", "ben", "cat"]), (2, ["ann"])):
        school.children = FakeChildren(school.root / f"w{workers}")
        school.cache = Cache(None)  # every build done again
        grader = school.grader(workers)
        grader.plan((student, "loads") for student in students)
        grader.focus(students[0])
        started_builds = [grader.background.once(("build", str(student.path)), lambda: None)
                          for student in students]  # started ones: their own future
        concurrent.futures.wait(started_builds)
        grader.close()
        assert sorted(run.name for run in school.children.runs) == started


def test_closing_the_grader_stops_every_child_and_trusted_process(school: Class) -> None:
    grader = school.grader()
    grader.close()
    assert grader.cancelled("any student's child")
    assert school.children.closed and school.trusted.closed


def test_the_fingerprint_is_of_the_trained_weights_once_graded(school: Class) -> None:
    alice = school.student("alice")
    grader = school.grader()
    verdicts(grader, alice, FAST)
    before = grader.similarity_fingerprint(alice)
    assert before["weights"] == "initial"
    verdicts(grader, alice)
    after = grader.similarity_fingerprint(alice)
    assert after["weights"] == "default recipe" and after != before
