"""The jobs a pytest process sends a warm trusted process (client.py -> server.py), typed.

One frozen, keyword-only message of codec.py per kind: both sides import this module, so a
renamed or missing field fails in mypy or in `from_json` with the field's name, never as a
KeyError deep in a subprocess. Replies are the stage results of results.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_akida_grade.codec import Message, Record, parse
from pytest_akida_grade.results import Declared, Route


@dataclass(frozen=True, kw_only=True)
class DataSpec(Record):
    """The validated MNIST file and how to split it, as the grader configured it."""

    path: str
    sha256: str
    seed: int
    validation_split: float
    train_limit: int
    test_limit: int


@dataclass(frozen=True, kw_only=True)
class Calibration(Record):
    """The grade's first calibration images: `samples` of the training split, seeded."""

    data: DataSpec
    samples: int


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


Job = Inspect | Train | Grade | InspectAndGrade
KINDS: tuple[type[Message], ...] = (Inspect, Train, Grade, InspectAndGrade)


def from_json(data: object) -> Job:
    """The typed job (its `id` set aside); RecordError naming what is unknown or missing."""
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key != "id"}
    job = parse(data, KINDS)
    assert isinstance(job, Inspect | Train | Grade | InspectAndGrade)
    return job
