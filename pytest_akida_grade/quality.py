"""The assignment's Quality, the energy budget it leaves, and one hardware run's figures.

Pure: no akida, no files. A `Measurement` is what the board reports (board.py) or what a
recording replays (hardware.py), a `BoardRefusal` a model the board would not run: records of
codec.py. Quality = (100 - accuracy %) x latency [s] x average power [W] x memory [bytes], lower
is better, full credit below the bar (QUALITY_MAX). Only codec.py from this package.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from pytest_akida_grade.codec import Record, RecordError

QUALITY_MAX = 200.0  # the assignment's bar: full credit below this Quality
PERCENT = 100.0  # accuracies are fractions; the formula and the printouts use percentages


class ReplayError(ValueError):
    """Recorded figures are missing or malformed; the message names file, student and field."""


def argmax_accuracy(outputs: Any, labels: Any) -> float:
    """The assignment's evaluation: the argmax of each output against its label, as a fraction."""
    labels = np.asarray(labels).reshape(-1)
    predictions = np.argmax(np.asarray(outputs).reshape(len(labels), -1), axis=1)
    return float(np.mean(predictions == labels))


def quality(accuracy: float, fps: float, avg_power_mw: float, memory_bytes: int) -> float:
    """The assignment's Quality: (100 - accuracy %) x latency s x average power W x memory bytes.

    `accuracy` is a fraction (0.9761 for 97.61 %); lower Quality is better.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive to give a latency, got {fps!r}")
    error_percent = PERCENT - accuracy * PERCENT
    return error_percent * (1.0 / fps) * (avg_power_mw / 1000.0) * memory_bytes


def energy_budget_mj(accuracy: float, memory_bytes: int, quality_max: float = QUALITY_MAX) -> float:
    """The largest latency x average power (mJ/frame) that keeps Quality at `quality_max`.

    Latency x power is what akida reports as energy per frame, so a measured energy below this
    budget passes. Infinite when accuracy is perfect or the memory is zero.
    """
    denominator = (PERCENT - accuracy * PERCENT) * memory_bytes
    if denominator <= 0:
        return math.inf
    return quality_max / denominator * 1000.0  # J -> mJ


@dataclass(frozen=True)
class Measurement(Record):
    """Figures from one hardware run, as akida reports them (powers include the floor)."""

    accuracy: float  # 0..1, from the board's own outputs
    fps: float
    avg_power_mw: float
    floor_power_mw: float
    energy_mj_per_frame: float
    memory_bytes: int  # device.memory[0] after the forward pass
    min_power_mw: float | None = None
    max_power_mw: float | None = None
    std_power_mw: float | None = None
    software_sequences: int = 0  # mapped sequences not fully on the chip
    model_sha256: str | None = None

    def quality(self) -> float:
        return quality(self.accuracy, self.fps, self.avg_power_mw, self.memory_bytes)

    @classmethod
    def recorded(cls, data: object, *, where: str) -> Measurement:
        """Figures read back from a recording: typed by the codec, then checked as figures; a
        ReplayError names `where` and the field."""
        try:
            measured = cls.from_json(data)
        except RecordError as error:
            raise ReplayError(f"{where}: {error}") from None
        problem = measured.problem()
        if problem:
            raise ReplayError(f"{where}: {problem}")
        return measured

    def problem(self) -> str | None:
        """What makes these figures impossible, naming the field; None when they are fine."""
        for name, value in asdict(self).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                return f"field {name!r} must be a number >= 0, got {value!r}"
        if self.accuracy > 1:
            return (f"field 'accuracy' is {self.accuracy:g}, which looks like a percentage; give "
                    f"a fraction between 0 and 1 (e.g. {self.accuracy / PERCENT:g})")
        if self.fps == 0:
            return "field 'fps' must be greater than 0"
        return None


@dataclass(frozen=True)
class BoardRefusal(Record):
    """The board would not run the model (akida could not map it): recorded beside figures, so
    that a replay fails the student as the board did."""

    refused: str  # the failure, as the hardware check says it
    model_sha256: str | None = None


Recorded = Measurement | BoardRefusal  # what a recording holds for one student


def recorded_from_json(data: object, *, where: str) -> Recorded:
    """A recording's entry: figures, or the board's refusal (an object with "refused"); a
    ReplayError names `where` and the field."""
    if isinstance(data, dict) and "refused" in data:
        try:
            return BoardRefusal.from_json(data)
        except RecordError as error:
            raise ReplayError(f"{where}: {error}") from None
    return Measurement.recorded(data, where=where)


def format_measurement(name: str, m: Measurement, *, quantized_accuracy: float | None,
                       quality_max: float) -> str:
    """The assignment's printout of a hardware run, followed by the Quality verdict."""
    powers = [("Avg", m.avg_power_mw), ("Min", m.min_power_mw), ("Max", m.max_power_mw),
              ("Std", m.std_power_mw)]
    power_range = " / ".join(f"{key} {value:.2f}" for key, value in powers if value is not None)
    score = m.quality()
    verdict = "pass" if score < quality_max else "fail"
    lines = [
        f"== {name} ==",
        f"Floor power: {m.floor_power_mw:.2f} mW",
        f"Average framerate = {m.fps:.2f} fps",
        f"Last inference power range (mW):  {power_range}",
        f"Last inference energy consumed (mJ/frame): {m.energy_mj_per_frame:.2f}",
        f"Total memory usage of the inference {m.memory_bytes} Byte",
    ]
    if quantized_accuracy is not None:
        lines.append(f"Quantized model accuracy: {quantized_accuracy * PERCENT:.2f} %")
    lines.append(f"Hardware accuracy: {m.accuracy * PERCENT:.2f} %")
    if m.software_sequences:
        lines.append(f"Sequences run on the host CPU, not the chip: {m.software_sequences}")
    lines.append(f"Quality = {score:.1f} ({verdict}: the bar is < {quality_max:g})")
    return "\n".join(lines)


Source = Literal["device", "replay", "none"]


@dataclass(frozen=True)
class Run:
    """How hardware_quality was measured for one student: the board, a recording, or not."""

    source: Source
    measurement: Measurement | None = None
    why: str | None = None  # why there is no measurement (a recording without this student)
    kept: str | None = None  # no measurement yet: the sha256 of the model kept for the board
