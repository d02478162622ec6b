"""The typed results that travel between stages (docs/contracts.md), and their JSON form.

A stage either ends with a result or with a `failure`: a message for the student. `HarnessError`
is the grader's own failure (no data, no board, a bug), never the student's. No imports from this
package: every other module may use these types.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

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
    DEFAULT_RECIPE = "default recipe"  # the grader's seeded recipe, in a trusted process

    def __str__(self) -> str:
        return self.value

    def described(self, cached: bool) -> str:
        """As a record and a message show it: " (cached)" when the weights came from the cache."""
        return f"{self.value} (cached)" if cached else self.value


class HarnessError(Exception):
    """The grader, not the student, could not do its job (no data, no board, a bug)."""


class ResultError(ValueError):
    """A stored or transported result does not have the fields its type needs."""


@dataclass(frozen=True)
class Violation:
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
class MappingFigures:
    """The converted model mapped on a virtual AKD1000 (static, not measured on a board)."""

    error: str | None  # the mapper's refusal, explained for the student
    nps: int = 0
    hardware_sequences: int = 0
    software_sequences: int = 0
    program_memory_bytes: int = 0


@dataclass(frozen=True)
class V1Truth:
    """The untrained model quantized, converted for Akida 1.0 and mapped: the hardware fit."""

    bits: tuple[int, int]  # the precision it was checked at
    declared_bits_used: bool  # False: the declared precision is unsupported, W4A4 was used
    conversion_error: str | None = None  # quantizeml/cnn2snn refused it (explained)
    cut_at: str | None = None  # where quantization/conversion silently stopped
    warnings: tuple[str, ...] = ()
    mapping: MappingFigures | None = None


@dataclass(frozen=True)
class Built:
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


@dataclass(frozen=True)
class Graded:
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


def to_json(result: Built | Graded | MappingFigures | V1Truth) -> Json:
    return asdict(result)


def _get(data: object, name: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict) or name not in data:
        raise ResultError(f"{where}: missing {name!r}")
    value = data[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
        raise ResultError(f"{where}: {name!r} is {type(value).__name__}")
    return value


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


NUMBER = (int, float)
OPTIONAL_TEXT = (str, type(None))


def mapping_from_json(data: object, where: str = "mapping") -> MappingFigures:
    return MappingFigures(
        error=_get(data, "error", OPTIONAL_TEXT, where),
        **{name: int(_get(data, name, int, where)) for name in (
            "nps", "hardware_sequences", "software_sequences", "program_memory_bytes")})


def v1_from_json(data: object, where: str = "v1") -> V1Truth:
    bits = _get(data, "bits", (list, tuple), where)
    if len(bits) != 2 or not all(isinstance(b, int) for b in bits):
        raise ResultError(f"{where}: 'bits' must be two whole numbers")
    mapping = _get(data, "mapping", (dict, type(None)), where)
    return V1Truth(
        bits=(int(bits[0]), int(bits[1])),
        declared_bits_used=_get(data, "declared_bits_used", bool, where),
        conversion_error=_get(data, "conversion_error", OPTIONAL_TEXT, where),
        cut_at=_get(data, "cut_at", OPTIONAL_TEXT, where),
        warnings=tuple(str(w) for w in _get(data, "warnings", (list, tuple), where)),
        mapping=None if mapping is None else mapping_from_json(mapping, f"{where}.mapping"))


def _violation_from_json(data: object, where: str) -> Violation:
    return Violation(
        rule=_get(data, "rule", str, where), message=_get(data, "message", str, where),
        layer_index=_get(data, "layer_index", (int, type(None)), where),
        layer_name=_get(data, "layer_name", OPTIONAL_TEXT, where),
        documented=_get(data, "documented", bool, where))


def route_from_json(data: object, where: str) -> Route:
    value = _get(data, "route", str, where)
    try:
        return Route(value)
    except ValueError:
        raise ResultError(f"{where}: 'route' is not a route: {value[:40]!r}") from None


def built_from_json(data: object, where: str = "build result") -> Built:
    violations = _get(data, "violations", dict, where)
    return Built(
        layers=tuple(_get(data, "layers", (list, tuple), where)),
        params=_get(data, "params", int, where),
        weight_bits=_get(data, "weight_bits", (int, float, str, bool, type(None)), where),
        activation_bits=_get(data, "activation_bits", (int, float, str, bool, type(None)), where),
        violations={str(check): tuple(_violation_from_json(v, f"{where}.violations")
                                      for v in found) for check, found in violations.items()},
        v1=v1_from_json(_get(data, "v1", dict, where), f"{where}.v1"),
        route=route_from_json(data, where),
        not_rebuilt=_get(data, "not_rebuilt", OPTIONAL_TEXT, where))


def graded_from_json(data: object, where: str = "grade result") -> Graded:
    akida = _get(data, "akida_accuracy", (int, float, type(None)), where)
    return Graded(
        n_train=_get(data, "n_train", int, where), n_test=_get(data, "n_test", int, where),
        route=route_from_json(data, where),
        cached=_get(data, "cached", bool, where),
        float_accuracy=float(_get(data, "float_accuracy", NUMBER, where)),
        quantized_accuracy=float(_get(data, "quantized_accuracy", NUMBER, where)),
        akida_accuracy=None if akida is None else float(akida),
        quantize_attempt=_get(data, "quantize_attempt", int, where),
        attempt_val_accuracies=tuple(float(v) for v in _get(
            data, "attempt_val_accuracies", (list, tuple), where)),
        cut_at=_get(data, "cut_at", OPTIONAL_TEXT, where),
        mapping=mapping_from_json(_get(data, "mapping", dict, where), f"{where}.mapping"),
        peak_rss_mb=float(_get(data, "peak_rss_mb", NUMBER, where)),
        model_path=str(data.get("model_path", "")) if isinstance(data, dict) else "")


def built_and_graded_from_json(data: object, where: str = "inspect+grade result",
                               ) -> tuple[Built, Stage[Graded]]:
    """One job's build and grade (a pre-trained model): the grade may have failed alone."""
    graded = _get(data, "graded", (dict, type(None)), where)
    built = built_from_json(_get(data, "built", dict, where), f"{where}.built")
    if graded is None:
        return built, Stage(failure=_get(data, "grade_failure", str, where))
    return built, Stage(result=graded_from_json(graded, f"{where}.graded"))


def with_model(graded: Graded, model_path: str) -> Graded:
    return replace(graded, model_path=model_path)


@dataclass(frozen=True)
class Declarations:
    """What a submission declared (its sandbox's meta.json), checked: the bits and the route."""

    route: Route
    weight_bits: Declared
    activation_bits: Declared


def declarations_from_json(meta: object, has_weights_file: bool) -> Declarations:
    """Plain bits, one of the three routes. The weights file's presence is known on our side: it
    decides that route, whatever was said."""
    plain = (int, float, str, bool, type(None))
    routes = {route.value: route for route in Route}
    if not isinstance(meta, dict) or meta.get("route") not in routes or not all(
            key in meta and isinstance(meta[key], plain)
            for key in ("weight_bits", "activation_bits")):
        raise ResultError("meta.json is malformed: it needs a route (one of "
                          f"{', '.join(routes)}) and plain weight_bits and activation_bits")
    said = routes[meta["route"]]
    route = Route.WEIGHTS_FILE if has_weights_file else (
        Route.DEFAULT_RECIPE if said is Route.WEIGHTS_FILE else said)
    return Declarations(route, meta["weight_bits"], meta["activation_bits"])
