"""The assignment's Quality, the energy budget it leaves, and one hardware run's figures.

Pure: no akida, no files. A `Measurement` is what the board reports (board.py) or what a
recording replays (hardware.py), a `Refusal` a model the board would not run. Quality =
(100 - accuracy %) x latency [s] x average power [W] x memory [bytes], lower is better, full
credit below the bar (QUALITY_MAX). No imports from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

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


_REQUIRED = ("accuracy", "fps", "avg_power_mw", "floor_power_mw", "energy_mj_per_frame",
             "memory_bytes")
_OPTIONAL_POWERS = ("min_power_mw", "max_power_mw", "std_power_mw")


@dataclass(frozen=True)
class Measurement:
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any, *, where: str) -> Measurement:
        """Validate a JSON object; every error names `where` and the offending field."""
        if not isinstance(d, dict):
            raise ReplayError(f"{where}: expected an object of figures, got {_kind(d)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ReplayError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                              f"allowed: {', '.join(sorted(known))}")
        missing = [name for name in _REQUIRED if name not in d]
        if missing:
            raise ReplayError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
        values: dict[str, Any] = {name: _number(d, name, where) for name in _REQUIRED}
        accuracy = values["accuracy"]
        if accuracy > 1:
            raise ReplayError(f"{where}: field 'accuracy' is {accuracy:g}, which looks like a "
                              f"percentage; give a fraction between 0 and 1 "
                              f"(e.g. {accuracy / PERCENT:g})")
        if values["fps"] == 0:
            raise ReplayError(f"{where}: field 'fps' must be greater than 0")
        values["memory_bytes"] = _whole(values["memory_bytes"], "memory_bytes", where)
        for name in _OPTIONAL_POWERS:
            if d.get(name) is not None:
                values[name] = _number(d, name, where)
        if "software_sequences" in d:
            values["software_sequences"] = _whole(
                _number(d, "software_sequences", where), "software_sequences", where)
        sha = d.get("model_sha256")
        if sha is not None and not isinstance(sha, str):
            raise ReplayError(f"{where}: field 'model_sha256' must be a string, got {_kind(sha)}")
        values["model_sha256"] = sha
        return cls(**values)


@dataclass(frozen=True)
class Refusal:
    """The board would not run the model (akida could not map it): recorded beside figures, so
    that a replay fails the student as the board did."""

    refused: str  # the failure, as the hardware check says it
    model_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any, *, where: str) -> Refusal:
        if not isinstance(d, dict) or set(d) - {"refused", "model_sha256"} or \
                not isinstance(d.get("refused"), str) or \
                not isinstance(d.get("model_sha256"), str | None):
            raise ReplayError(f"{where}: a refusal is {{\"refused\": text, \"model_sha256\": "
                              f"text or null}}, got {_kind(d)}")
        return cls(d["refused"], d.get("model_sha256"))


Recorded = Measurement | Refusal  # what a recording holds for one student


def recorded_from_json(d: Any, *, where: str) -> Recorded:
    """A recording's entry: figures, or the board's refusal (an object with "refused")."""
    if isinstance(d, dict) and "refused" in d:
        return Refusal.from_json(d, where=where)
    return Measurement.from_json(d, where=where)


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _number(d: dict[str, Any], name: str, where: str) -> float:
    value = d[name]
    # bool is an int in Python, but `true` is never a figure.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReplayError(f"{where}: field {name!r} must be a number, got {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise ReplayError(f"{where}: field {name!r} must be a finite number >= 0, got {value!r}")
    return float(value)


def _whole(value: float, name: str, where: str) -> int:
    if value != int(value):
        raise ReplayError(f"{where}: field {name!r} must be a whole number, got {value!r}")
    return int(value)



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
