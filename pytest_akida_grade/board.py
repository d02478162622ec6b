"""The only code that talks to an Akida board: open it, measure a converted model, share it.

The calls follow the course's own measurement script and akida 2.19's documented API (user
guide, "Performance measurement"). No figure is ever made up here: when the board does not
report fps or power, `measure` raises `BoardError` instead of returning a guess. Tested through
tests/board_double.py, which implements exactly the calls made here.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import akida
import filelock
import numpy as np
import numpy.typing as npt

from pytest_akida_grade.assignment import IMAGE_SHAPE
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.quality import Measurement, argmax_accuracy
from pytest_akida_grade.results import HarnessError, Stage


class BoardError(Exception):
    """The board is missing, busy, or did not report the figures a grade needs."""


PYTEST_FLAGS = ("--akida-device=N", "grade from recorded figures with --akida-replay FILE")


def open_device(index: int | None = None, *, devices: list[Any] | None = None,
                flags: tuple[str, str] = PYTEST_FLAGS) -> Any:
    """The `index`-th (default first) board of `akida.devices()`, or a BoardError saying why not.
    `flags`: how the caller's user picks a board, and what else they can do without one."""
    found = list(akida.devices() if devices is None else devices)
    listing = f"akida.devices() returned {[_describe(d) for d in found]}"
    choose, otherwise = flags
    if not found:
        raise BoardError(f"no Akida board found: {listing}. Check the board is plugged in and its "
                         f"driver is loaded (`akida devices` should list it), or {otherwise}.")
    position = 0 if index is None else index
    if not 0 <= position < len(found):
        raise BoardError(f"no Akida board at index {position}: {listing}. "
                         f"Use {choose} with N from 0 to {len(found) - 1}.")
    return found[position]


def _describe(device: object) -> str:
    return str(getattr(device, "desc", device))


def measure(model_path: Path, device: Any, x_test: npt.NDArray[np.generic],
            y_test: npt.NDArray[np.generic], *,
            settle_s: float = 0.5, batch_size: int = 100) -> Measurement:
    """Run the converted model on the board over `x_test` and collect akida's own figures.

    Model loading/mapping errors are akida's and propagate unchanged (they are the
    submission's fault); BoardError means the board could not give a measurement.
    """
    inputs, labels = _board_inputs(x_test), np.asarray(y_test).reshape(-1)
    if labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"{inputs.shape[0]} test images but {labels.shape[0]} labels")
    soc = _power_meter_soc(device)
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
        accuracy=argmax_accuracy(outputs, labels),
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


def _power_meter_soc(device: Any) -> Any:
    """The board's SoC (its power meter). Virtual devices (akida.AKD1000()) have none, hence no
    power meter and no inference."""
    soc = getattr(device, "soc", None)
    if soc is None:
        raise BoardError(f"{_describe(device)} has no SoC power meter: it is not a real board, "
                         "so nothing can be measured on it.")
    return soc


def _board_inputs(x_test: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """MNIST as the board takes it: uint8 (N, 28, 28, 1)."""
    x = np.asarray(x_test)
    if x.dtype != np.uint8:
        raise ValueError(f"the board takes uint8 pixels 0..255, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.shape[1:] != (*IMAGE_SHAPE, 1):
        raise ValueError(f"expected images of shape (N, 28, 28[, 1]), got {np.shape(x_test)}")
    return x


def _off_chip_sequences(model: Any) -> int:
    # Software and Hybrid sequences both make the host CPU do part of the work.
    return sum(1 for seq in model.sequences if seq.backend != akida.BackendType.Hardware)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


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


class Bench:
    """The session's board: opened once, driven by one process at a time (xdist workers)."""

    def __init__(self, index: int | None, lock_path: Path | None = None, *,
                 flags: tuple[str, str] = PYTEST_FLAGS) -> None:
        self.index, self.flags = index, flags
        self.lock_path = lock_path or Path(tempfile.gettempdir()) / "akida-grade-board.lock"
        self._device: Any = None

    def device(self) -> Any:
        """The opened board; BoardError saying why there is none."""
        if self._device is None:
            self._device = open_device(self.index, flags=self.flags)
        return self._device

    def describe(self) -> str:
        """The opened board as akida names it."""
        return _describe(self.device())

    def lock(self) -> BoardLock:
        return BoardLock(self.lock_path)

    def ready(self) -> None:
        """The board opens, or a HarnessError: no board is the grader's problem, not the
        student's (checked before anything is trained for it)."""
        try:
            self.device()
        except BoardError as error:
            raise HarnessError(str(error)) from None

    def run(self, model_path: Path, x_test: npt.NDArray[np.generic],
            y_test: npt.NDArray[np.generic]) -> Stage[Measurement]:
        """`measure` under the lock: the figures; a failure when the model does not fit;
        HarnessError for the board's own."""
        try:
            device = self.device()
            with self.lock():
                return Stage(result=measure(model_path, device, x_test, y_test))
        except BoardError as error:
            raise HarnessError(str(error)) from None
        except (RuntimeError, ValueError) as error:  # akida's mapper: the model does not fit
            return Stage(failure=f"the model cannot run on the AKD1000: {error}")
