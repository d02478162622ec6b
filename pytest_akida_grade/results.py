"""The typed results that travel between stages (docs/contracts.md), and their JSON form.

A stage either ends with a result or with a `failure`: a message for the student. `HarnessError`
is the grader's own failure (no data, no board, a bug), never the student's. What crosses a process
or is cached is a `Record` of codec.py: `to_json`, and `from_json` naming a field at fault
(`RecordError`). Only codec.py from this package: every other module may use these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

from pytest_akida_grade.codec import Record, RecordError

Json = dict[str, Any]
Declared = int | float | str | bool | None  # a module constant as the student declared it
Outcome = Literal["passed", "failed", "skipped"]
PASSED: Outcome = "passed"
FAILED: Outcome = "failed"
SKIPPED: Outcome = "skipped"


class Route(str, enum.Enum):
    """How a submission's weights are trained. The values are public: the record's "training"
    metric, the sandbox's meta.json (student.py declares them) and the cache's entries."""

    WEIGHTS_FILE = "weights file"  # <name>.weights.h5 beside the module: no training
    TRAIN = "train()"  # the submission's own train(), in its sandbox
    # A notebook's cells (or a module in the handout's shape, at import) fitted its model_keras:
    # handed over trained, with its build.
    OWN_TRAINING = "own training"
    DEFAULT_RECIPE = "default recipe"  # the grader's seeded recipe, in a trusted process

    def __str__(self) -> str:
        return self.value

    @property
    def pretrained(self) -> bool:
        """Its weights come trained with the build's hand-over: graded as handed over (one job
        inspects and grades it, calibrated as its grade is)."""
        return self in (Route.WEIGHTS_FILE, Route.OWN_TRAINING)

    def described(self, cached: bool) -> str:
        """As a record and a message show it: " (cached)" when the weights came from the cache."""
        return f"{self.value} (cached)" if cached else self.value


class HarnessError(Exception):
    """The grader, not the student, could not do its job (no data, no board, a bug)."""


@dataclass(frozen=True)
class Violation(Record):
    """A broken rule: the rule's id, a message that names the layer and the fix."""

    rule: str
    message: str
    layer_index: int | None = None
    layer_name: str | None = None
    documented: bool = True  # False: a limit found by mapping, not on BrainChip's page

    @classmethod
    def at(cls, rule: str, layer: Json | None, message: str, *,
           documented: bool = True) -> Violation:
        """A violation about `layer` (a layer spec), or about the whole model."""
        if layer is None:
            return cls(rule, message, documented=documented)
        return cls(rule, message, layer.get("index"), layer.get("name"), documented)


def in_layer_order(violations: list[Violation]) -> list[Violation]:
    """Violations sorted by layer; model-wide ones (no layer) last."""
    return sorted(violations, key=lambda v: (v.layer_index is None, v.layer_index or 0))


@dataclass(frozen=True)
class Verdict:
    """A check's outcome, the message the student reads, and the figures behind it."""

    outcome: Outcome
    message: str
    metrics: Json = field(default_factory=dict)
    printout: tuple[str, ...] = ()  # lines the terminal shows as they happen (a board's run)


# ---------------------------------------------------------------------------- stage results


@dataclass(frozen=True)
class MappingFigures(Record):
    """The converted model mapped on a virtual AKD1000 (static, not measured on a board)."""

    error: str | None  # the mapper's refusal, explained for the student
    nps: int = 0
    hardware_sequences: int = 0
    software_sequences: int = 0
    program_memory_bytes: int = 0


@dataclass(frozen=True)
class V1Truth(Record):
    """The untrained model quantized, converted for Akida 1.0 and mapped: the hardware fit."""

    bits: tuple[int, int]  # the precision it was checked at
    declared_bits_used: bool  # False: the declared precision is unsupported, W4A4 was used
    conversion_error: str | None = None  # quantizeml/cnn2snn refused it (explained)
    cut_at: str | None = None  # where quantization/conversion silently stopped
    warnings: tuple[str, ...] = ()
    mapping: MappingFigures | None = None


@dataclass(frozen=True)
class Execution(Record):
    """How a notebook's cells (or a module in the handout's shape) ran in the sandbox, as its
    hand-over says (meta.json's "run"): for the student's loads message and the record only."""

    model: str  # "model_keras" (the handout's) or "build_model()"
    cells: int  # a notebook's code cells; 0 for a module
    ran: int  # of them, run to their end
    stopped: str | None  # what stopped the run (the cell and its error, in the student's words)
    not_run: tuple[str, ...]  # IPython's magics and shell lines, which are not run
    load_data: bool  # keras.datasets.mnist.load_data() was called (and served)
    fitted: bool  # the model was trained by the submission's own code

    def bounded(self) -> Execution:
        """The sandbox's word, checked and cut to what a record keeps (RecordError else)."""
        if self.model not in ("model_keras", "build_model()"):
            raise RecordError(f"run.model is {self.model[:40]!r}")
        if not 0 <= self.ran <= self.cells:
            raise RecordError(f"run: ran {self.ran} of {self.cells} cells")
        return replace(self, stopped=None if self.stopped is None else self.stopped[:TEXT_KEPT],
                       not_run=tuple(line[:TEXT_KEPT] for line in self.not_run[:NOT_RUN_KEPT]))


NOT_RUN_KEPT, TEXT_KEPT = 50, 2000  # of a hand-over's run: what a record keeps


@dataclass(frozen=True)
class Built(Record):
    """The build stage: the submission's architecture as the trusted evaluator rebuilt it."""

    layers: tuple[Json, ...]  # layer specs (docs/contracts.md)
    params: int
    weight_bits: Declared
    activation_bits: Declared
    violations: dict[str, tuple[Violation, ...]]  # check name -> the rules it broke
    v1: V1Truth
    route: Route  # how it will be trained
    # Why the trusted side did not rebuild it (a layer off its closed list, a budget): its
    # JSON was judged, but it is never quantized, converted or graded. None: rebuilt.
    not_rebuilt: str | None = None
    run: Execution | None = None  # a notebook's or the handout shape's run (its hand-over's)


@dataclass(frozen=True)
class Graded(Record):
    """The grade stage: trained, quantized, converted and evaluated on the test set."""

    n_train: int
    n_test: int
    route: Route  # how it was trained
    float_accuracy: float
    quantized_accuracy: float
    akida_accuracy: float | None  # None when the converted model does not end in 10 classes
    quantize_attempt: int
    attempt_val_accuracies: tuple[float, ...]
    cut_at: str | None
    mapping: MappingFigures
    peak_rss_mb: float
    cached: bool = False  # the trained weights came from the cache (trained by an earlier run)
    model_path: str = ""  # the converted model (.fbz) the board runs; set by the grader

    @property
    def training(self) -> str:
        """The route as the record's "training" metric shows it."""
        return self.route.described(self.cached)


T = TypeVar("T")


@dataclass(frozen=True)
class Stage(Generic[T]):
    """A stage's end: its result, or why the submission failed it (for the student)."""

    result: T | None = None
    failure: str | None = None
    repeatable: bool = True  # False for a timeout or a crash: not worth caching

    @property
    def ok(self) -> bool:
        return self.failure is None and self.result is not None


# ---------------------------------------------------------------------------- JSON


@dataclass(frozen=True, kw_only=True)
class BuiltAndGraded(Record):
    """One job's build and grade (a pre-trained model): the grade may have failed alone."""

    built: Built
    graded: Graded | None = None
    grade_failure: str | None = None  # why the grade failed (None when graded)

    def stages(self) -> tuple[Built, Stage[Graded]]:
        if self.graded is None:
            return self.built, Stage(failure=self.grade_failure or "the grade failed")
        return self.built, Stage(result=self.graded)


def with_model(graded: Graded, model_path: str) -> Graded:
    return replace(graded, model_path=model_path)


@dataclass(frozen=True)
class Declarations(Record):
    """What a submission declared (its sandbox's meta.json), checked: the bits and the route,
    and how its own code ran (a notebook, the handout's shape)."""

    route: Route
    weight_bits: Declared
    activation_bits: Declared
    run: Execution | None = None


def declarations_from_json(meta: object, has_weights_file: bool,
                           trains_itself: bool = False) -> Declarations:
    """Plain bits, one of the routes, and the run when there is one. What is known on our side
    decides, whatever was said: a weights file's presence, and that only a submission whose own
    code trains (a notebook, the handout's shape) has its own training."""
    try:
        said = Declarations.from_json(meta)
        run = None if said.run is None else said.run.bounded()
    except RecordError as error:
        raise RecordError(f"meta.json is malformed: {error}") from None
    route = Route.WEIGHTS_FILE if has_weights_file else Route.DEFAULT_RECIPE \
        if said.route is Route.WEIGHTS_FILE or (said.route is Route.OWN_TRAINING
                                                and not trains_itself) else said.route
    return replace(said, route=route, run=run)
