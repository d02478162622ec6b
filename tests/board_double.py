"""A test double of the Akida board, replaying the assignment's published hardware run.

It implements EXACTLY the akida calls that `pytest_akida_grade.board` makes, and nothing more:

- ``akida.devices()`` and ``device.desc``                      (open_device)
- ``akida.Model(filename=...)``, ``model.map(device)``,
  ``model.forward(inputs, batch_size=...)``, ``model.statistics.fps / .powers / .energy``,
  ``model.sequences[i].backend``, ``akida.BackendType.Hardware``
- ``device.soc`` (None on a virtual device), ``device.soc.power_measurement_enabled``,
  ``device.soc.power_meter.floor``, ``device.memory[0]``          (measure)

Install it with ``monkeypatch.setattr(board, "akida", double.akida)``. Every call is logged in
``board.calls`` so tests can check the order (power measurement on before the run, off after).

A model whose file's sha256 is in ``refused`` is refused by ``map`` with a RuntimeError, as
akida's mapper refuses a model the board cannot hold.

The figures are the published run of the assignment (a recording, not a model of the chip):
97.61 % accuracy, 1677.85 fps, Avg 895.27 / Min 894 / Max 907 / Std 2.93 mW, floor 894.26 mW,
0.53 mJ/frame, 96304 bytes. Like akida's `Statistics`, the double reports powers and energy only
when power measurement was enabled during the inference.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

PUBLISHED_RUN: dict[str, Any] = {
    "accuracy": 0.9761,
    "fps": 1677.85,
    "powers": {"Avg": 895.27, "Min": 894.0, "Max": 907.0, "Std": 2.93},
    "floor_power_mw": 894.26,
    "energy_mj_per_frame": 0.53,
    "memory_bytes": 96304,
}
# The assignment's two published AKD1000 runs, in the replay file's format.
PUBLISHED_FAIL = {"accuracy": 0.9672, "fps": 770.0, "avg_power_mw": 936.80,
                  "floor_power_mw": 894.26, "energy_mj_per_frame": 1.22, "memory_bytes": 247984}
PUBLISHED_PASS = {"accuracy": 0.9761, "fps": 1677.85, "avg_power_mw": 895.27,
                  "floor_power_mw": 894.26, "energy_mj_per_frame": 0.53, "memory_bytes": 96304}
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class BackendType(enum.Enum):
    """Mirrors akida.BackendType's members."""

    Software = 0
    Hardware = 1
    Hybrid = 2


@dataclass
class PowerMeter:
    floor: float


class Soc:
    """device.soc: logs every change of power_measurement_enabled."""

    def __init__(self, board: Board, floor: float) -> None:
        self._board = board
        self._enabled = False
        self._meter = PowerMeter(floor)

    @property
    def power_measurement_enabled(self) -> bool:
        return self._enabled

    @power_measurement_enabled.setter
    def power_measurement_enabled(self, value: bool) -> None:
        self._board.calls.append(f"power_measurement_enabled={value}")
        self._enabled = value

    @property
    def power_meter(self) -> PowerMeter:
        self._board.calls.append("power_meter.floor")
        return self._meter


class Device:
    """A HardwareDevice; with soc=None it behaves like a virtual device (no SoC, no meter)."""

    def __init__(self, board: Board, desc: str, *, with_soc: bool = True) -> None:
        self._board = board
        self.desc = desc
        self.soc = Soc(board, board.figures["floor_power_mw"]) if with_soc else None
        self.memory_used = 0  # set by a forward pass, as the board's memory counters are

    @property
    def memory(self) -> tuple[int, int]:
        self._board.calls.append("memory")
        return (self.memory_used, self.memory_used)


@dataclass
class Statistics:
    fps: float | None
    powers: dict[str, float] = field(default_factory=dict)
    energy: float | None = None


@dataclass
class Sequence:
    backend: BackendType


class Model:
    """akida.Model(filename=...) reloading a serialized model; runs only on the board's device."""

    def __init__(self, board: Board, *, filename: str) -> None:
        self._board = board
        self.filename = filename
        self._device: Device | None = None
        self._statistics = Statistics(fps=None)
        board.calls.append(f"Model(filename={filename})")

    def map(self, device: Device) -> None:
        self._board.calls.append("map")
        if self._board.refused and \
                hashlib.sha256(Path(self.filename).read_bytes()).hexdigest() in self._board.refused:
            raise RuntimeError("Cannot map the model: it needs 112 NPs, the device has 78")
        self._device = device

    @property
    def sequences(self) -> list[Sequence]:
        if self._device is None:
            return [Sequence(BackendType.Software)]
        return [Sequence(BackendType.Hardware)] + [
            Sequence(BackendType.Software) for _ in range(self._board.software_sequences)]

    def forward(self, inputs: np.ndarray, batch_size: int = 0) -> np.ndarray:
        self._board.calls.append(f"forward(batch_size={batch_size})")
        if self._device is None or self._device.soc is None:
            raise RuntimeError("the double only runs inference on a mapped board")
        if not isinstance(inputs, np.ndarray) or inputs.dtype != np.uint8:
            raise TypeError("akida takes a uint8 numpy array")
        if inputs.ndim != 4 or inputs.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"input shape {inputs.shape} does not match (n, 28, 28, 1)")
        figures = self._board.figures
        measured = self._device.soc.power_measurement_enabled
        self._statistics = Statistics(
            fps=figures["fps"],
            powers=dict(figures["powers"]) if measured else {},
            energy=figures["energy_mj_per_frame"] if measured else None,
        )
        self._device.memory_used = figures["memory_bytes"]
        return self._board.outputs(len(inputs))

    @property
    def statistics(self) -> Statistics:
        self._board.calls.append("statistics")
        return self._statistics


class Board:
    """One recorded board. `labels` are the test labels the double's outputs are scored against."""

    def __init__(self, labels: np.ndarray, *, figures: dict[str, Any] | None = None,
                 software_sequences: int = 0, device_count: int = 1,
                 refused: Collection[str] = ()) -> None:
        self.labels = np.asarray(labels).reshape(-1)
        self.refused = frozenset(refused)  # sha256s of model files map() refuses
        self.figures = dict(PUBLISHED_RUN if figures is None else figures)
        self.software_sequences = software_sequences
        self.calls: list[str] = []
        self.devices = [Device(self, f"PCIe/NSoC_v2/{i}") for i in range(device_count)]
        self.akida = SimpleNamespace(
            Model=lambda filename: Model(self, filename=filename),
            devices=lambda: list(self.devices),
            BackendType=BackendType,
        )

    def virtual_device(self) -> Device:
        return Device(self, "VirtualDevice/BC.00.000.002", with_soc=False)

    def outputs(self, count: int) -> np.ndarray:
        """int32 potentials (n, 1, 1, 10): the first round(accuracy * n) argmaxes are right."""
        labels = self.labels[:count]
        correct = round(self.figures["accuracy"] * count)
        predicted = labels.copy()
        predicted[correct:] = (labels[correct:] + 1) % NUM_CLASSES
        potentials = np.zeros((count, 1, 1, NUM_CLASSES), dtype=np.int32)
        potentials[np.arange(count), 0, 0, predicted] = 50
        return potentials
