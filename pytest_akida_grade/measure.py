"""`python -m pytest_akida_grade measure`: the lab board in one pass.

A class graded without a board (each shard with --akida-fbz DIR) kept each student's converted
model and the test set it was graded on (labkit.py). On the machine with the board, `measure`
runs them there one at a time, under the board lock (board.Bench: never beside a pytest
--akida-device run), and writes the recording --akida-record writes: the figures, or the board's
refusal. `merge --replay` (or a re-run with --akida-replay) then gives the gradebook with
hardware_quality. Interrupted, it resumes: a student already recorded for the same model is not
measured again. Reads records (the grade files), never student code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pytest_akida_grade import catalog, labkit
from pytest_akida_grade.hardware import load_replay, write_record
from pytest_akida_grade.quality import BoardRefusal, Measurement, ReplayError, format_measurement
from pytest_akida_grade.results import HarnessError

if TYPE_CHECKING:
    from pytest_akida_grade.board import Bench

Say = Callable[[str], None]
TestSet = tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]


@dataclass(frozen=True)
class Wanted:
    """A student of the grade files: the model its grade made (its sha256), or why none."""

    student: str
    sha256: str | None
    why: str = ""
    quantized_accuracy: float | None = None


@dataclass
class Tally:
    measured: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # not measured: the kit's or the board's

    def line(self) -> str:
        return (f"{len(self.measured)} measured, {len(self.refused)} refused by the board, "
                f"{len(self.already)} already recorded, {len(self.problems)} not measured "
                "(see above)")


def wanted(records: Iterable[Mapping[str, object]]) -> list[Wanted]:
    """Every student, by name: the model to measure (its sha256 in the record: kept by
    --akida-fbz, or measured before), else why there is none."""
    found = []
    for record in sorted(records, key=lambda r: str(r["student"])):
        metrics = catalog.part(record, "metrics")
        sha, accuracy = metrics.get("model_sha256"), metrics.get("quantized_accuracy")
        outcome, message = catalog.outcome_of(record, "hardware_quality")
        first = message.strip().split("\n", 1)[0]
        why = "" if isinstance(sha, str) else (
            f"no model kept for the board (hardware_quality {outcome}: {first})"
            if outcome != "skipped" else "no model kept for the board: grade with --akida-fbz DIR")
        found.append(Wanted(str(record["student"]), sha if isinstance(sha, str) else None, why,
                            float(accuracy) if isinstance(accuracy, int | float) else None))
    return found


def _recorded(path: Path) -> dict[str, Measurement | BoardRefusal]:
    try:
        return load_replay(path) if path.exists() else {}
    except ReplayError as error:
        raise labkit.KitError(f"--record {error}") from None


class Session:
    """One pass over the class: the kit, the board, the recording, what was said."""

    def __init__(self, kit: Mapping[str, labkit.Kept], bench: Bench, record: Path, say: Say,
                 quality_max: float) -> None:
        self.kit, self.bench, self.record, self.say = kit, bench, record, say
        self.quality_max = quality_max
        self.tally = Tally()
        self._test_sets: dict[Path, TestSet] = {}
        self._before = _recorded(record)

    def run(self, students: list[Wanted]) -> Tally:
        todo = [w for w in students if w.sha256 is not None]
        for w in students:
            if w.sha256 is None:
                self.say(f"{w.student}: not measured: {w.why}")
        for number, one in enumerate(todo, start=1):
            self._one(f"[{number}/{len(todo)}] {one.student}", one)
        return self.tally

    def _one(self, head: str, one: Wanted) -> None:
        kept = self.kit.get(one.student)
        problem = self._problem(one, kept)
        if problem:
            self.say(f"{head}: not measured: {problem}")
            self.tally.problems.append(one.student)
            return
        assert kept is not None
        before = self._before.get(one.student)
        if before is not None and before.model_sha256 == kept.model_sha256:
            self.say(f"{head}: already recorded in {self.record.name} for this model")
            self.tally.already.append(one.student)
            return
        self.say(f"{head}: running {kept.model.name} on {self.bench.describe()}")
        try:
            stage = self.bench.run(kept.model, *self._test_set(kept))
        except (HarnessError, labkit.KitError) as error:
            self.say(f"{head}: not measured: {error}")
            self.tally.problems.append(one.student)
            return
        self._keep(head, one, kept, stage.result, stage.failure)

    def _problem(self, one: Wanted, kept: labkit.Kept | None) -> str:
        if kept is None:
            return (f"no {one.student}.json in the kit (copy every shard's --akida-fbz folder "
                    "into one)")
        if kept.model_sha256 != one.sha256:
            return (f"the kit's {kept.model.name} is not the model the grade file graded "
                    "(graded again since? use that run's folder)")
        if not labkit.model_matches(kept):
            return f"{kept.model.name} is missing or changed since it was kept"
        return ""

    def _test_set(self, kept: labkit.Kept) -> TestSet:
        if kept.test_set not in self._test_sets:
            self._test_sets[kept.test_set] = labkit.test_set(kept)
        return self._test_sets[kept.test_set]

    def _keep(self, head: str, one: Wanted, kept: labkit.Kept, figures: Measurement | None,
              failure: str | None) -> None:
        if figures is None:
            write_record(self.record, {one.student: BoardRefusal(failure or "refused",
                                                             kept.model_sha256)})
            self.say(f"{head}: refused by the board: {failure}")
            self.tally.refused.append(one.student)
            return
        write_record(self.record, {one.student: figures})
        printout = format_measurement(one.student, figures, quality_max=self.quality_max,
                                      quantized_accuracy=one.quantized_accuracy)
        for line in printout.splitlines()[1:]:  # the first names the student: the head does
            self.say(f"{head}: {line}")
        self.tally.measured.append(one.student)
