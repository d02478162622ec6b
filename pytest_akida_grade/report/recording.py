"""`merge --replay FILE`: a board recording (`measure`, --akida-record) given to the records'
hardware_quality, as a run with --akida-replay gives it: the same verdict (verdicts.py), message
and figures, source "replay"; a recorded refusal fails the check with the board's words.

A record names the model its grade made (metrics `model_sha256`: kept by --akida-fbz, or
measured): figures recorded for another model are an error, and a record that names none is left
as it is (nothing says the recording is its model's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pytest_akida_grade import catalog, scrub, verdicts
from pytest_akida_grade.hardware import load_replay
from pytest_akida_grade.quality import BoardRefusal, Recorded, ReplayError
from pytest_akida_grade.report.files import Record, ReportError
from pytest_akida_grade.results import FAILED, Verdict

CHECK = "hardware_quality"
# What the hardware check put in the metrics before the board's figures were known.
NOT_MEASURED_KEYS = ("source", "energy_budget_mj", "model_sha256")


def read(path: str | Path) -> dict[str, Recorded]:
    try:
        return load_replay(Path(path))
    except ReplayError as error:
        raise ReportError(f"--replay {error}") from None


def _verdict(record: Mapping[str, object], entry: Recorded, quality_max: float) -> Verdict:
    if isinstance(entry, BoardRefusal):
        return Verdict(FAILED, scrub.for_student(entry.refused))
    accuracy = catalog.part(record, "metrics").get("quantized_accuracy")
    verdict = verdicts.measured(entry, "replay", str(record["student"]),
                                float(accuracy) if isinstance(accuracy, int | float) else None,
                                quality_max)
    return Verdict(verdict.outcome, scrub.for_student(verdict.message), verdict.metrics)


def replayed(records: list[Record], recording: Mapping[str, Recorded], source: str,
             quality_max: float) -> tuple[list[Record], list[str]]:
    """The records with the recording's hardware_quality; and a line for each student the
    recording holds but whose record cannot take it."""
    done, notes = [], []
    for record in records:
        student = str(record["student"])
        entry = recording.get(student)
        if entry is None:
            done.append(record)
            continue
        graded = catalog.part(record, "metrics").get("model_sha256")
        if not isinstance(graded, str):
            notes.append(f"{student}: not replayed: the grade file does not name the model "
                         "graded (grade with --akida-fbz DIR)")
            done.append(record)
            continue
        if entry.model_sha256 and entry.model_sha256 != graded:
            raise ReportError(f"--replay {source}: the figures for {student} were recorded for "
                              "another model than the one graded (its sha256 differs): measure "
                              "that run's --akida-fbz folder")
        verdict = _verdict(record, entry, quality_max)
        metrics = {k: v for k, v in catalog.part(record, "metrics").items()
                   if k not in NOT_MEASURED_KEYS}
        metrics.update({k: v for k, v in verdict.metrics.items() if v is not None})
        checks = {**catalog.part(record, "checks"),
                  CHECK: {"outcome": verdict.outcome, "message": verdict.message}}
        done.append({**record, "checks": checks, "metrics": metrics})
    return done, notes
