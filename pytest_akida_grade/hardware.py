"""The hardware stage: the board's figures (recorded when asked), a recording's, the model kept
for the lab board (--akida-fbz: labkit.py), or none.

A recording is a JSON object student -> figures (quality.Measurement's fields), or -> the board's
refusal ({"refused": message, "model_sha256"}); a malformed file is an error naming the file, the
student and the field. The board's own calls are in board.py, imported only when a board is
asked for: no akida here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import filelock

from pytest_akida_grade import labkit
from pytest_akida_grade.codec import RecordError, load
from pytest_akida_grade.fileio import atomic_write_text, file_sha256
from pytest_akida_grade.quality import (
    BoardRefusal,
    Recorded,
    ReplayError,
    Run,
    recorded_from_json,
)
from pytest_akida_grade.results import Graded, HarnessError, Stage
from pytest_akida_grade.settings import Settings

if TYPE_CHECKING:
    from pytest_akida_grade.board import Bench
    from pytest_akida_grade.data import Split

RECORDING_BYTES = 64 << 20  # a class's figures: a few hundred bytes a student


class Hardware:
    """A session's hardware stage, run once per student in pytest's own thread (the board is
    driven by one process at a time, under its lock)."""

    def __init__(self, settings: Settings, bench: Callable[[], Bench]) -> None:
        self.settings, self.bench = settings, bench
        self._runs: dict[str, Stage[Run]] = {}
        self._recording: dict[str, Recorded] | None = None  # --akida-replay, read once

    def run(self, key: str, student: str, graded: Callable[[], Stage[Graded]],
            data: Callable[[], Split]) -> Stage[Run]:
        """`key` is the submission's path, `graded()` the student's grade (its model is what
        runs on the board), `data()` the data set split (the board is measured on its test
        set)."""
        if key not in self._runs:
            self._runs[key] = self._run(key, student, graded, data)
        return self._runs[key]

    def _run(self, key: str, student: str, graded: Callable[[], Stage[Graded]],
             data: Callable[[], Split]) -> Stage[Run]:
        if self.settings.use_device:
            return self._measure(student, graded, data)
        if self.settings.replay is not None:
            return self._replayed(self.settings.replay, student, graded)
        if self.settings.fbz is not None:
            return self._keep(self.settings.fbz, Path(key).name, student, graded, data)
        return Stage(result=Run("none"))

    def _keep(self, directory: Path, file: str, student: str,
              graded: Callable[[], Stage[Graded]], data: Callable[[], Split]) -> Stage[Run]:
        """No board here: the grade's model and test set go to the kit, for `measure`."""
        grade = graded()
        if grade.result is None:
            return Stage(failure=f"not measured: {grade.failure}")
        split = data()
        try:
            kept = labkit.keep(directory, student, Path(grade.result.model_path), split.x_test,
                               split.y_test, file=file)
        except OSError as error:
            raise HarnessError(f"--akida-fbz {directory}: cannot keep {student}'s model: "
                               f"{error}") from None
        return Stage(result=Run("none", why="not measured yet: the converted model is kept for "
                                "the lab board (measure)", kept=kept.model_sha256))

    def _measure(self, student: str, graded: Callable[[], Stage[Graded]],
                 data: Callable[[], Split]) -> Stage[Run]:
        self.bench().ready()  # no board: say so before anything is trained for it
        grade = graded()
        if grade.result is None:
            return Stage(failure=f"not measured: {grade.failure}")
        split = data()
        model = Path(grade.result.model_path)
        measured = self.bench().run(model, split.x_test, split.y_test)
        if self.settings.record is not None:
            write_record(self.settings.record, {student: measured.result or BoardRefusal(
                measured.failure or "refused", file_sha256(model))})
        if measured.result is None:
            return Stage(failure=measured.failure)
        return Stage(result=Run("device", measured.result))

    def _replayed(self, source: Path, student: str,
                  graded: Callable[[], Stage[Graded]]) -> Stage[Run]:
        def model_sha256() -> str | None:
            grade = graded()
            return file_sha256(Path(grade.result.model_path)) if grade.result else None

        try:
            if self._recording is None:
                self._recording = load_replay(source)
            return replayed(self._recording, source, student, model_sha256)
        except ReplayError as error:
            raise HarnessError(str(error)) from None


def load_replay(path: Path) -> dict[str, Recorded]:
    """Read a student -> figures (or refusal) JSON map (the format `write_record` writes),
    through the codec's reader: a ReplayError names the file, the student and the field."""
    try:
        data = load(path, what=str(path), limit=RECORDING_BYTES)
    except RecordError as error:
        raise ReplayError(str(error)) from None
    if not isinstance(data, dict):
        raise ReplayError(f"{path}: expected a JSON object mapping student -> figures, "
                          f"got {type(data).__name__}")
    return {student: recorded_from_json(figures, where=f"{path}: student {student[:80]!r}")
            for student, figures in data.items()}


def write_record(path: Path, measurements: dict[str, Recorded]) -> None:
    """Merge `measurements` into the record file at `path`, replacing it atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Parallel workers may record at once: serialize the read-merge-write.
    with filelock.FileLock(str(path) + ".lock"):
        merged = load_replay(path) if path.exists() else {}
        merged.update(measurements)
        payload = {student: m.to_json() for student, m in sorted(merged.items())}
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def replayed(recording: dict[str, Recorded], source: Path, student: str,
             model_sha256: Callable[[], str | None]) -> Stage[Run]:
    """The student's recorded figures, if any, or the board's recorded refusal (a failure, as
    on the board); ReplayError when they were recorded for another model (`model_sha256()` is
    the converted model's, computed only when the recording has one)."""
    entry = recording.get(student)
    if entry is None:
        return Stage(result=Run("none", why=f"{source} has no figures for {student}"))
    if entry.model_sha256 and model_sha256() != entry.model_sha256:
        raise ReplayError(
            f"the figures for {student} in {source} were recorded for another model: the "
            "converted model's sha256 no longer matches. Re-measure on the board "
            "(--akida-device --akida-record FILE).")
    if isinstance(entry, BoardRefusal):
        return Stage(failure=entry.refused)
    return Stage(result=Run("replay", entry))
