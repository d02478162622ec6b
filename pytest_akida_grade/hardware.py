"""Everything that touches the Akida board: measuring, scoring, replaying and recording.

The calls follow the course's own measurement script and akida 2.19's documented API
(user guide, "Performance measurement"). No figure is ever made up here: when the board does
not report fps or power, `measure` raises `BoardError` instead of returning a guess.
The pytest wiring lives in the plugin; this module has no pytest code.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import akida
import filelock
import numpy as np

from pytest_akida_grade.discovery import file_sha256

PERCENT = 100.0
MNIST_SHAPE = (28, 28)


class BoardError(Exception):
    """The board is missing, busy, or did not report the figures a grade needs."""


class ReplayError(ValueError):
    """A replay/record file is missing or malformed; the message names file, student and field."""


# --- The quality metric -------------------------------------------------------------------------


def quality(accuracy: float, fps: float, avg_power_mw: float, memory_bytes: int) -> float:
    """The assignment's Quality: (100 - accuracy %) x latency s x average power W x memory bytes.

    `accuracy` is a fraction (0.9761 for 97.61 %); lower Quality is better.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive to give a latency, got {fps!r}")
    error_percent = PERCENT - accuracy * PERCENT
    return error_percent * (1.0 / fps) * (avg_power_mw / 1000.0) * memory_bytes


def energy_budget_mj(accuracy: float, memory_bytes: int, quality_max: float = 200.0) -> float:
    """The largest latency x average power (mJ/frame) that keeps Quality at `quality_max`.

    Latency x power is what akida reports as energy per frame, so a measured energy below this
    budget passes. Infinite when accuracy is perfect or the memory is zero.
    """
    denominator = (PERCENT - accuracy * PERCENT) * memory_bytes
    if denominator <= 0:
        return math.inf
    return quality_max / denominator * 1000.0  # J -> mJ


# --- One board measurement ----------------------------------------------------------------------

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


# --- The board ----------------------------------------------------------------------------------


def open_device(index: int | None = None, *, devices: list[Any] | None = None) -> Any:
    """The `index`-th (default first) board of `akida.devices()`, or a BoardError saying why not."""
    found = list(akida.devices() if devices is None else devices)
    listing = f"akida.devices() returned {[_describe(d) for d in found]}"
    if not found:
        raise BoardError(f"no Akida board found: {listing}. Check the board is plugged in and its "
                         "driver is loaded (`akida devices` should list it), or grade from "
                         "recorded figures with --akida-replay FILE.")
    position = 0 if index is None else index
    if not 0 <= position < len(found):
        raise BoardError(f"no Akida board at index {position}: {listing}. "
                         f"Use --akida-device=N with N from 0 to {len(found) - 1}.")
    return found[position]


def _describe(device: Any) -> str:
    return str(getattr(device, "desc", device))


def measure(model_path: Path, device: Any, x_test: np.ndarray, y_test: np.ndarray, *,
            settle_s: float = 0.5, batch_size: int = 100) -> Measurement:
    """Run the converted model on the board over `x_test` and collect akida's own figures.

    Model loading/mapping errors are akida's and propagate unchanged (they are the
    submission's fault); BoardError means the board could not give a measurement.
    """
    inputs = _board_inputs(x_test)
    labels = np.asarray(y_test).reshape(-1)
    if labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"{inputs.shape[0]} test images but {labels.shape[0]} labels")
    soc = getattr(device, "soc", None)
    if soc is None:
        # Virtual devices (akida.AKD1000()) have no SoC, hence no power meter and no inference.
        raise BoardError(f"{_describe(device)} has no SoC power meter: it is not a real board, "
                         "so nothing can be measured on it.")
    model = akida.Model(filename=str(model_path))
    model.map(device)
    soc.power_measurement_enabled = True
    try:
        # The sensor samples every ~141 ms; let it log events before the inference starts.
        time.sleep(settle_s)
        outputs = model.forward(inputs, batch_size=batch_size)
        stats = model.statistics
        fps, powers, energy = stats.fps, dict(stats.powers), stats.energy
        floor = soc.power_meter.floor
        memory = device.memory[0]
    finally:
        soc.power_measurement_enabled = False
    if fps is None or "Avg" not in powers or energy is None:
        raise BoardError(f"akida reported no fps/power for {model_path.name} (statistics: "
                         f"fps={fps}, powers={powers}, energy={energy}); the inference was too "
                         "short to be measured. Use more samples.")
    return Measurement(
        accuracy=_accuracy(outputs, labels),
        fps=float(fps),
        avg_power_mw=float(powers["Avg"]),
        floor_power_mw=float(floor),
        energy_mj_per_frame=float(energy),
        memory_bytes=int(memory),
        min_power_mw=_optional_float(powers.get("Min")),
        max_power_mw=_optional_float(powers.get("Max")),
        std_power_mw=_optional_float(powers.get("Std")),
        software_sequences=_off_chip_sequences(model),
        model_sha256=file_sha256(model_path),
    )


def _board_inputs(x_test: np.ndarray) -> np.ndarray:
    """MNIST as the board takes it: uint8 (N, 28, 28, 1)."""
    x = np.asarray(x_test)
    if x.dtype != np.uint8:
        raise ValueError(f"the board takes uint8 pixels 0..255, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.shape[1:] != (*MNIST_SHAPE, 1):
        raise ValueError(f"expected images of shape (N, 28, 28[, 1]), got {np.shape(x_test)}")
    return x


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    predictions = np.argmax(np.asarray(outputs).reshape(len(labels), -1), axis=1)
    return float(np.mean(predictions == labels))


def _off_chip_sequences(model: Any) -> int:
    # Software and Hybrid sequences both make the host CPU do part of the work.
    return sum(1 for seq in model.sequences if seq.backend != akida.BackendType.Hardware)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


# --- Reporting ----------------------------------------------------------------------------------


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


# --- Replay and record files --------------------------------------------------------------------


def load_replay(path: Path) -> dict[str, Measurement]:
    """Read a student -> figures JSON map (the format `write_record` writes)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReplayError(f"{path}: replay file not found") from None
    except OSError as error:
        raise ReplayError(f"{path}: cannot read replay file: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReplayError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ReplayError(f"{path}: expected a JSON object mapping student -> figures, "
                          f"got {type(data).__name__}")
    return {student: Measurement.from_json(figures, where=f"{path}: student {student!r}")
            for student, figures in data.items()}


def write_record(path: Path, measurements: dict[str, Measurement]) -> None:
    """Merge `measurements` into the record file at `path`, replacing it atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Parallel workers may record at once: serialize the read-merge-write.
    with filelock.FileLock(str(path) + ".lock"):
        merged = load_replay(path) if path.exists() else {}
        merged.update(measurements)
        payload = {student: m.to_json() for student, m in sorted(merged.items())}
        _atomic_write(path, json.dumps(payload, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- One board, many processes ------------------------------------------------------------------


class BoardLock:
    """Inter-process lock so that only one pytest-xdist worker drives the board at a time."""

    def __init__(self, path: Path, *, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout  # seconds; None waits for as long as it takes
        self._lock = filelock.FileLock(str(self.path), timeout=-1 if timeout is None else timeout)

    def __enter__(self) -> BoardLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise BoardError(f"the board is busy: lock {self.path} was held by another process "
                             f"for more than {self.timeout:g} s") from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()
