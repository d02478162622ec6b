"""The jobs a pytest process sends a warm trusted process (client.py -> server.py), typed.

One frozen dataclass per kind, keyword-only, with its JSON form: both sides import this module,
so a renamed or missing field fails in mypy or in `from_json` with the field's name, never as a
KeyError deep in a subprocess. Replies are the stage results of results.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from pytest_akida_grade.results import Declared, Route


class JobError(ValueError):
    """A job without the fields its kind needs, or with fields it does not know."""


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """The validated MNIST file and how to split it, as the grader configured it."""

    path: str
    sha256: str
    seed: int
    validation_split: float
    train_limit: int
    test_limit: int


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """The grade's first calibration images: `samples` of the training split, seeded."""

    data: DataSpec
    samples: int


class Message:
    """A job's JSON form, on the job itself (the client needs no import of this module)."""

    KIND: ClassVar[str]

    def to_json(self) -> dict[str, object]:
        return {"kind": self.KIND, **asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True, kw_only=True)
class Inspect(Message):
    """The fast checks' evidence of a build's hand-over (model.json, weights.npz)."""

    KIND: ClassVar[str] = "inspect"
    architecture: str
    weights: str
    seed: int
    weight_bits: Declared
    activation_bits: Declared
    route: Route
    calibration: Calibration | None = None  # a pre-trained model: the grade's own images


@dataclass(frozen=True, kw_only=True)
class Train(Message):
    """The default recipe on the training split; the trained weights to `out`."""

    KIND: ClassVar[str] = "train"
    architecture: str
    weights: str
    data: DataSpec
    out: str
    epochs: int
    batch_size: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class Grade(Message):
    """Float, quantized and Akida accuracy of trained weights; the .fbz to `out`."""

    KIND: ClassVar[str] = "grade"
    architecture: str
    weights: str
    data: DataSpec
    out: str
    weight_bits: Declared
    activation_bits: Declared
    attempts: int
    calibration_samples: int
    seed: int
    route: Route  # how the weights were trained
    cached: bool = False  # by an earlier run (the cache's trained weights)


@dataclass(frozen=True, kw_only=True)
class InspectAndGrade(Message):
    """Both for a pre-trained model: one conversion serves the Akida 1.0 truth and the grade."""

    KIND: ClassVar[str] = "inspect+grade"
    inspect: Inspect
    grade: Grade


def _field(name: str, value: object) -> object:
    if value is None:
        return None
    if name in NESTED:
        return _build(NESTED[name], value)
    if name == "route":
        try:
            return Route(value)
        except ValueError:
            raise JobError(f"route: not a route: {value!r}") from None
    return value


Job = Inspect | Train | Grade | InspectAndGrade
KINDS: dict[str, type[Any]] = {kind.KIND: kind for kind in (Inspect, Train, Grade,
                                                               InspectAndGrade)}
NESTED: dict[str, type[Any]] = {"data": DataSpec, "calibration": Calibration,
                                "inspect": Inspect, "grade": Grade}


def from_json(data: object) -> Job:
    """The typed job; JobError naming what is missing or unknown."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(data, dict) or kind not in KINDS:
        raise JobError(f"a job of an unknown kind: {kind!r}")
    job: Job = _build(KINDS[kind], {k: v for k, v in data.items() if k not in ("kind", "id")})
    return job


def _build(kind: type[Any], data: object) -> Any:
    if not isinstance(data, dict):
        raise JobError(f"{kind.__name__}: expected an object, got {type(data).__name__}")
    names = {field.name for field in fields(kind)}
    if set(data) - names:
        raise JobError(f"{kind.__name__}: unknown fields {sorted(set(data) - names)}")
    values = {name: _field(name, value) for name, value in data.items()}
    try:
        return kind(**values)
    except TypeError as error:
        raise JobError(f"{kind.__name__}: {error}") from None
