"""Recorded board figures: replayed when grading without the board, recorded when measuring.

A recording is a JSON object student -> figures (quality.Measurement's fields); a malformed file
is an error naming the file, the student and the field. No akida here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import filelock

from pytest_akida_grade.fileio import atomic_write_text
from pytest_akida_grade.quality import Measurement, ReplayError, Run


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
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def replayed(recording: dict[str, Measurement], source: Path, student: str,
             model_sha256: Callable[[], str | None]) -> Run:
    """The student's recorded figures, if any; ReplayError when they were recorded for another
    model (`model_sha256()` is the converted model's, computed only when the recording has one)."""
    measurement = recording.get(student)
    if measurement is None:
        return Run("none", why=f"{source} has no figures for {student}")
    if measurement.model_sha256 and model_sha256() != measurement.model_sha256:
        raise ReplayError(
            f"the figures for {student} in {source} were recorded for another model: the "
            "converted model's sha256 no longer matches. Re-measure on the board "
            "(--akida-device --akida-record FILE).")
    return Run("replay", measurement)
