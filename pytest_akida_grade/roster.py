"""roster.csv: who each imported student is on the LMS (written by `import-submissions` beside
the modules, read by the plugin to carry the late flag, how late and the handed-in file names into
the records). The csv module, fileio.py (the CSV every writer writes) and late.py (times) only.

Columns (docs/contracts.md): student, name, late, files, module, weights, submitted, days_late,
then the LMS's own identifiers (Canvas `ID`; Gradescope `submission_id`, `emails`, `sid`; Moodle
`moodle_id`).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pytest_akida_grade import late as late_policy
from pytest_akida_grade.fileio import csv_text, read_cell
from pytest_akida_grade.names import SUBMISSION_SUFFIXES

NAME = "roster.csv"
COLUMNS = ("student", "name", "late", "files", "module", "weights", "submitted", "days_late")
REQUIRED = ("student", "late", "files", "module")
LIST_SEPARATOR = ";"
MAX_BYTES = 16 * 1024 * 1024  # a class of thousands is well below this


class RosterError(Exception):
    """roster.csv is unusable; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class RosterRow:
    """One row: the module it describes (`<student>.py`, or "" when none was handed in)."""
    student: str
    name: str
    late: bool
    files: tuple[str, ...]
    module: str
    submitted: datetime | None = None  # when the LMS says it was handed in (Gradescope, Moodle)
    days_late: float | None = None  # against the due date the import was given


def join(values: Iterable[str]) -> str:
    """A ';'-separated cell (a file name holding ';' keeps it: names are listed, not parsed)."""
    return LIST_SEPARATOR.join(values)


def to_csv(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """The roster's text: a header row, then one row per student in the given order (a name
    or file name that would run as a formula in a spreadsheet is written as text)."""
    return csv_text([columns, *([row.get(c, "") for c in columns] for row in rows)],
                    ending="\n")


def _flag(value: str, where: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise RosterError(f"{where}: late must be true or false, not {value!r}")


def _when(cells: Mapping[str, str], where: str) -> tuple[datetime | None, float | None]:
    try:
        submitted = late_policy.parse_time(cells["submitted"]) if cells["submitted"] else None
        days = float(cells["days_late"]) if cells["days_late"] else None
    except ValueError as error:
        raise RosterError(f"{where}: {error}") from None
    if days is not None and not days >= 0:
        raise RosterError(f"{where}: days_late must be a number of days, 0 or more")
    return submitted, days


def _entry(row: Mapping[str, str | None], where: str) -> RosterRow:
    cells = {key: read_cell((row.get(key) or "").strip())
             for key in (*REQUIRED, "name", "submitted", "days_late")}
    if not cells["student"]:
        raise RosterError(f"{where}: the student is empty")
    module = cells["module"]
    if module and (Path(module).name != module or Path(module).suffix not in SUBMISSION_SUFFIXES):
        raise RosterError(f"{where}: module {module!r} is not a file name ending in .ipynb or "
                          ".py")
    files = tuple(f for f in cells["files"].split(LIST_SEPARATOR) if f)
    return RosterRow(cells["student"], cells["name"], _flag(cells["late"], where), files, module,
                 *_when(cells, where))


def parse(text: str, source: str) -> list[RosterRow]:
    """The rows of a roster's text, validated; RosterError names the line at fault."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise RosterError(f"{source}: no column {', '.join(missing)} in the header row")
    entries: list[RosterRow] = []
    seen: set[str] = set()
    try:
        for row in reader:
            entry = _entry(row, f"{source}, line {reader.line_num}")
            if entry.student in seen:
                raise RosterError(f"{source}, line {reader.line_num}: student "
                                  f"{entry.student!r} appears twice")
            seen.add(entry.student)
            entries.append(entry)
    except csv.Error as error:
        raise RosterError(f"{source}, line {reader.line_num}: {error}") from None
    return entries


def read(path: str | os.PathLike[str]) -> list[RosterRow]:
    """A roster file, validated (size-capped, UTF-8, the required columns)."""
    source = Path(path)
    try:
        if source.stat().st_size > MAX_BYTES:
            raise RosterError(f"{source}: larger than {MAX_BYTES // 2**20} MB")
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise RosterError(f"{source}: cannot read: {error}") from None
    return parse(text, str(source))


def lateness(entry: RosterRow, due: datetime | None) -> tuple[bool, float | None]:
    """Late, and by how many days when known: against `due` (akida_due) when the LMS gave a
    submission time, else as the import said (Canvas: its LATE flag alone)."""
    if due is not None and entry.submitted is not None:
        days = late_policy.days_late(entry.submitted, due)
        return days > 0, days
    return entry.late, entry.days_late if entry.late else None


def annotate(records: Iterable[Mapping[str, object]], entries: Iterable[RosterRow],
             due: datetime | None = None) -> list[dict[str, object]]:
    """Records with `late` (and `days_late` when known) and `handed_in` (the LMS's file names)
    of the roster row naming their file; a record no row names is unchanged."""
    by_module = {entry.module: entry for entry in entries if entry.module}
    annotated = []
    for record in records:
        entry = by_module.get(str(record.get("file", "")))
        extra: dict[str, object] = {}
        if entry is not None:
            is_late, days = lateness(entry, due)
            extra = {"late": is_late, "handed_in": list(entry.files),
                     **({"days_late": round(days, 4)} if is_late and days is not None else {})}
        annotated.append({**record, **extra})
    return annotated
