"""One submission's stages, below the orchestrator (grading.py). Each takes what it needs and
returns a typed result; none reads another's cache or state, none decides what comes next.

    HandOver    the sandboxed child's files: its build (and training, when asked) -> Export
    Inspection  an Export -> the evaluator's Akida 1.0 truth (Built), and the grade when one
                job makes both (a pre-trained model: the fused path)
    Training    an Export -> its trained weights, by its Route (a weights file or its own
                training: handed over with its build)
    Evaluation  trained weights -> Graded (float, quantized, Akida accuracy; the .fbz)

Their collaborators (the sandbox's Children, the Trusted evaluator pool, the Data set) are passed
in as the protocols below, so a test drives them with fakes. Student code runs only in Children.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_akida_grade.codec import RecordError, loads
from pytest_akida_grade.evaluator import jobs
from pytest_akida_grade.results import (
    Built,
    BuiltAndGraded,
    Declarations,
    Graded,
    Route,
    Stage,
    declarations_from_json,
)
from pytest_akida_grade.sandbox.watch import EXPORTS, ChildJob
from pytest_akida_grade.settings import called

if TYPE_CHECKING:
    from pytest_akida_grade.data import MnistSource, Split
    from pytest_akida_grade.discovery import Submission
    from pytest_akida_grade.evaluator.client import Reply
    from pytest_akida_grade.settings import Settings

Urgency = Callable[[], int]  # 0: the student pytest is judging now; its jobs go first
TIMEOUT_OPTION = called("timeout")  # the options a timeout message names
GRADE_TIMEOUT_OPTION = called("grade_timeout")
META_BYTES = EXPORTS["build"]["meta.json"]  # what the sandbox's hand-over copies at most


class Children(Protocol):
    """The sandboxed children (sandbox/launch.py): one run a submission, keyed by its path."""

    def started(self, key: str) -> bool: ...

    def handed_over(self, key: str, phase: str, train: bool,
                    job: Callable[[], ChildJob]) -> Stage[Path]: ...

    def staging(self) -> Path: ...

    def close(self) -> None: ...


class Trusted(Protocol):
    """The warm trusted processes (evaluator/client.py): figures from code that never imported
    a submission."""

    @property
    def size(self) -> int: ...

    def start(self) -> None: ...

    def call(self, job: jobs.Job, student: str, seconds: float, timeout_source: str,
             urgency: Urgency = ...) -> Reply: ...

    def close(self) -> None: ...


class Data(Protocol):
    """The session's MNIST (data.py)."""

    def source(self) -> MnistSource: ...

    def spec(self) -> jobs.DataSpec: ...

    def split(self) -> Split: ...

    def fit_file(self, directory: Path) -> Path: ...


@dataclass(frozen=True)
class Export:
    """What a build hands on: the architecture and weights, and what the submission declared."""

    files: Path  # model.json and weights.npz: the child's hand-over or the build's cache entry
    declarations: Declarations


@dataclass(frozen=True)
class Trained:
    """An architecture with its trained weights, and the route that trained them."""

    architecture: Path
    weights: Path
    route: Route
    cached: bool = False  # the weights came from the cache (an earlier run trained them)


def staged(children: Children, name: str) -> Path:
    """A fresh path for a trusted process's output, out of every child's reach."""
    return Path(tempfile.mkdtemp(dir=children.staging())) / name


class HandOver:
    """The sandboxed child's files. A run builds the submission and, asked to, trains it in the
    same child: a later `train=True` for a child that only built starts one that trains."""

    def __init__(self, settings: Settings, children: Children, data: Data,
                 scratch: Path) -> None:
        self.settings, self.children, self.data, self.scratch = settings, children, data, scratch

    def files(self, submission: Submission, phase: str, train: bool) -> Stage[Path]:
        return self.children.handed_over(str(submission.path), phase, train,
                                         lambda: self._job(submission, train))

    def export(self, submission: Submission, train: bool) -> Stage[Export]:
        """The build's files and its checked declarations (meta.json)."""
        files = self.files(submission, "build", train)
        if files.result is None:
            return Stage(failure=files.failure, repeatable=files.repeatable)
        declared = declarations(files.result, submission.weights_path.is_file(),
                                submission.shape.trains_itself)
        if declared.result is None:
            return Stage(failure=declared.failure)
        return Stage(result=Export(files.result, declared.result))

    def _job(self, submission: Submission, train: bool) -> ChildJob:
        """A submission whose own code trains (a notebook, the handout's shape) gets the
        training data and akida_grade_timeout for its build; a build_model() module only to
        train, and akida_timeout to build."""
        s, weights, itself = self.settings, submission.weights_path, \
            submission.shape.trains_itself
        build = (s.grade_timeout, GRADE_TIMEOUT_OPTION) if itself else (s.timeout, TIMEOUT_OPTION)
        whole = (s.grade_timeout, GRADE_TIMEOUT_OPTION) if train else build
        return ChildJob(
            name=submission.name, module=submission.path,
            weights=weights if weights.is_file() else None,
            phases=("build", "train") if train else ("build",), seed=s.seed,
            train_data=self.data.fit_file(self.scratch / "data") if train or itself else None,
            seconds=whole[0], timeout_source=whole[1],
            build_seconds=build[0], build_timeout_source=build[1],
            memory_bytes=s.memory_limit, serves_mnist=itself)


class Inspection:
    """The evaluator's inspection of an export: the rules, the Akida 1.0 truth. A pre-trained
    model is inspected on the grade's own calibration images, and may be graded in the same job
    (one quantization and conversion for both)."""

    def __init__(self, settings: Settings, trusted: Trusted, data: Data,
                 children: Children) -> None:
        self.settings, self.trusted, self.data, self.children = settings, trusted, data, children

    def inspect(self, submission: Submission, export: Export, urgency: Urgency) -> Stage[Built]:
        job = self._job(export)
        if export.declarations.route.pretrained:
            job = replace(job, calibration=jobs.Calibration(
                data=self.data.spec(), samples=self.settings.calibration_samples))
        reply = self.trusted.call(job, submission.name, self.settings.timeout, TIMEOUT_OPTION,
                                  urgency)
        return with_run(reply.stage(Built.from_json, submission.name), export.declarations)

    def inspect_and_grade(self, submission: Submission, export: Export, urgency: Urgency,
                          ) -> tuple[Stage[Built], Stage[Graded]]:
        """A pre-trained model: its build and its grade (the .fbz written beside the grade's)."""
        s, inspect, declared = self.settings, self._job(export), export.declarations
        grade = grade_job(s, self.data, Trained(export.files / "model.json",
                                                export.files / "weights.npz", declared.route),
                          declared, staged(self.children, "model.fbz"))
        reply = self.trusted.call(jobs.InspectAndGrade(inspect=inspect, grade=grade),
                                  submission.name, s.timeout + s.grade_timeout,
                                  GRADE_TIMEOUT_OPTION, urgency)
        both = reply.stage(lambda ok: BuiltAndGraded.from_json(ok).stages(), submission.name)
        if both.result is None:
            return (Stage(failure=both.failure, repeatable=both.repeatable),
                    Stage(failure=both.failure, repeatable=both.repeatable))
        built, graded = both.result
        if graded.result is not None:
            graded = Stage(result=replace(graded.result, model_path=grade.out))
        return with_run(Stage(result=built), declared), graded

    def _job(self, export: Export) -> jobs.Inspect:
        declared = export.declarations
        return jobs.Inspect(architecture=str(export.files / "model.json"),
                            weights=str(export.files / "weights.npz"), seed=self.settings.seed,
                            weight_bits=declared.weight_bits,
                            activation_bits=declared.activation_bits, route=declared.route)


class Training:
    """Trained weights for an export, by its route: the weights file or its own training as
    handed over, the child's own train() (in the sandbox), or the default recipe (in a trusted
    process)."""

    def __init__(self, settings: Settings, hand_over: HandOver, trusted: Trusted,
                 data: Data) -> None:
        self.settings, self.hand_over, self.trusted, self.data = \
            settings, hand_over, trusted, data

    def train(self, submission: Submission, export: Export, urgency: Urgency) -> Stage[Path]:
        """The trained weights.npz."""
        route = export.declarations.route
        if route is Route.TRAIN:
            trained = self.hand_over.files(submission, "train", True)
            if trained.result is None:
                return Stage(failure=trained.failure, repeatable=trained.repeatable)
            return Stage(result=trained.result / "weights.npz")
        if route is Route.DEFAULT_RECIPE:
            return self._default_recipe(submission, export.files, urgency)
        return Stage(result=export.files / "weights.npz")

    def _default_recipe(self, submission: Submission, files: Path,
                        urgency: Urgency) -> Stage[Path]:
        s, weights = self.settings, staged(self.hand_over.children, "weights.npz")
        reply = self.trusted.call(jobs.Train(
            architecture=str(files / "model.json"), weights=str(files / "weights.npz"),
            data=self.data.spec(), out=str(weights), epochs=s.epochs,
            batch_size=s.batch_size, seed=s.seed), submission.name, s.grade_timeout,
            GRADE_TIMEOUT_OPTION, urgency)
        done = reply.stage(lambda result: result, submission.name)
        if not done.ok:
            return Stage(failure=done.failure, repeatable=done.repeatable)
        return Stage(result=weights)


class Evaluation:
    """Trained weights quantized, converted and evaluated on the test set, in a trusted process."""

    def __init__(self, settings: Settings, trusted: Trusted, data: Data,
                 children: Children) -> None:
        self.settings, self.trusted, self.data, self.children = settings, trusted, data, children

    def evaluate(self, submission: Submission, trained: Trained, declared: Declarations,
                 urgency: Urgency) -> Stage[Graded]:
        """The grade; its model_path is the .fbz it wrote."""
        job = grade_job(self.settings, self.data, trained, declared,
                        staged(self.children, "model.fbz"))
        reply = self.trusted.call(job, submission.name, self.settings.grade_timeout,
                                  GRADE_TIMEOUT_OPTION, urgency)
        graded = reply.stage(Graded.from_json, submission.name)
        if graded.result is None:
            return graded
        return Stage(result=replace(graded.result, model_path=job.out))


def grade_job(s: Settings, data: Data, trained: Trained, declared: Declarations,
              out: Path) -> jobs.Grade:
    return jobs.Grade(architecture=str(trained.architecture), weights=str(trained.weights),
                      data=data.spec(), out=str(out), weight_bits=declared.weight_bits,
                      activation_bits=declared.activation_bits, attempts=s.quantize_attempts,
                      calibration_samples=s.calibration_samples, seed=s.seed,
                      route=trained.route, cached=trained.cached)


def declarations(export: Path, pretrained: bool, trains_itself: bool) -> Stage[Declarations]:
    """The route and the bits the sandbox handed over (meta.json), checked."""
    try:
        meta = loads((export / "meta.json").read_bytes(), what="meta.json", limit=META_BYTES)
        return Stage(result=declarations_from_json(meta, pretrained, trains_itself))
    except (OSError, RecordError) as error:
        return Stage(failure=f"the sandbox handed over unusable declarations ({error})")


def declared_by(built: Built) -> Declarations:
    """What a built submission had declared (a cached build)."""
    return Declarations(built.route, built.weight_bits, built.activation_bits, built.run)


def with_run(built: Stage[Built], declared: Declarations) -> Stage[Built]:
    """The evaluator's build, with how the submission's own code ran (for its loads)."""
    if built.result is None or declared.run is None:
        return built
    return replace(built, result=replace(built.result, run=declared.run))
