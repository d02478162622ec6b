"""`python -m pytest_akida_grade canvas`: a Canvas gradebook export, filled with the grades.

Canvas exports its gradebook as CSV: a header (`Student,ID,SIS User ID,SIS Login ID,Section,`
then one column per assignment named `Name (canvas id)`, then read-only totals), a row
`    Points Possible` (and, for assignments posted by hand, a `Manual Posting` row), then one row
per student. Canvas imports the same file back: here only the assignment's column of the students
matched changes; every other cell and row is written back as it was read (a cell a spreadsheet
would run as a formula gets a leading apostrophe). Reads only records.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_akida_grade.fileio import csv_text, read_cell

DEFAULT_MATCH = "SIS Login ID"
STUDENT = "Student"  # Canvas's name column: its non-student rows have no name or a label
NOT_STUDENTS = ("", "Points Possible")
ROSTER_STUDENT = "student"  # the roster's column of graded file stems (import-submissions)
BOM = "\ufeff"


class CanvasError(Exception):
    """The export, the roster or the assignment cannot be used; the message says why."""


@dataclass(frozen=True)
class Filled:
    """The gradebook to write back and who did not match on either side."""

    text: str
    filled: tuple[str, ...]  # graded students whose points went in
    not_in_gradebook: tuple[str, ...]  # graded students no row matched
    without_grade: tuple[str, ...]  # gradebook students (their Student cell) with no grade
    column: str  # the assignment's column, as Canvas named it
    points_possible: str  # the assignment's Points Possible cell ("" if the export has none)


def _read_text(path: str | os.PathLike[str], what: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")  # as is: its line endings are kept
    except FileNotFoundError:
        raise CanvasError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CanvasError(f"{what} {path}: cannot read: {exc}") from None


def _rows(text: str, where: str) -> list[list[str]]:
    try:
        rows = [[read_cell(cell) for cell in row]
                for row in csv.reader(io.StringIO(text.removeprefix(BOM), newline=""))]
    except csv.Error as exc:
        raise CanvasError(f"{where}: not a readable CSV file: {exc}") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CanvasError(f"{where}: empty: expected Canvas's gradebook export")
    return rows


def _column(header: list[str], name: str, where: str, what: str) -> int:
    if name not in header:
        raise CanvasError(f"{where}: no {what} column {name!r}; its columns: "
                          + ", ".join(repr(c) for c in header))
    return header.index(name)


def assignment_column(header: list[str], assignment: str, where: str) -> int:
    """The column named NAME, or `NAME (canvas id)`; exactly one, else a clear error."""
    found = [i for i, cell in enumerate(header)
             if cell.strip() == assignment or cell.strip().startswith(f"{assignment} (")]
    if len(found) == 1:
        return found[0]
    if found:
        raise CanvasError(f"{where}: assignment {assignment!r} matches several columns: "
                          + ", ".join(repr(header[i]) for i in found) + "; give the full name")
    candidates = [c for c in header if c.rstrip().endswith(")") and " (" in c]
    raise CanvasError(f"{where}: no assignment {assignment!r} (a column named so, or "
                      f"'{assignment} (id)'); its assignments: "
                      + (", ".join(repr(c) for c in candidates) or "none"))


def read_roster(path: str | os.PathLike[str], match: str) -> dict[str, str]:
    """student (file stem) -> the roster's `match` column, from a CSV with a header row."""
    where = f"--roster {path}"
    rows = _rows(_read_text(path, "--roster"), where)
    header = [cell.strip() for cell in rows[0]]
    student = _column(header, ROSTER_STUDENT, where, "student")
    column = _column(header, match, where, f"--match {match!r}")
    return {row[student].strip(): row[column].strip() for row in rows[1:]
            if len(row) > max(student, column) and row[student].strip()}


def _key(text: str) -> str:
    return text.strip().casefold()


def _keys(grades: Mapping[str, str], roster: Mapping[str, str] | None) -> dict[str, str]:
    """gradebook key -> graded student (a student missing from the roster has none)."""
    keys = {}
    for student in grades:
        value = student if roster is None else roster.get(student, "")
        if value.strip():
            keys[_key(value)] = student
    return keys


def fill(text: str, grades: Mapping[str, str], *, assignment: str, match: str = DEFAULT_MATCH,
         roster: Mapping[str, str] | None = None, where: str = "--gradebook") -> Filled:
    """The export with the assignment's column filled with `grades` (student -> points as
    written); refuses (CanvasError) what it cannot."""
    rows = _rows(text, where)
    header = rows[0]
    column = assignment_column(header, assignment, where)
    key_at = _column(header, match, where, f"--match {match!r}")
    name_at = header.index(STUDENT) if STUDENT in header else key_at
    keys, filled, without, possible = _keys(grades, roster), [], [], ""
    for row in rows[1:]:
        name = row[name_at].strip() if name_at < len(row) else ""
        if name in NOT_STUDENTS or len(row) <= max(column, key_at):
            possible = row[column] if name == "Points Possible" and column < len(row) else possible
            continue
        student = keys.get(_key(row[key_at]))
        if student is None:
            without.append(name)
            continue
        if student in filled:
            raise CanvasError(f"{where}: two rows match {student!r} by {match!r}")
        row[column] = grades[student]
        filled.append(student)
    return Filled(_written(text, rows), tuple(filled),
                  tuple(sorted(set(grades) - set(filled))), tuple(without), header[column],
                  possible.strip())


def _written(original: str, rows: Iterable[list[str]]) -> str:
    """The rows with the export's own line ending and BOM; a cell that would run as a formula
    in a spreadsheet (a display name a student chose) is written as text."""
    ending = "\r\n" if "\r\n" in original else "\n"
    return (BOM if original.startswith(BOM) else "") + csv_text(rows, ending=ending)


def read_gradebook(path: str | os.PathLike[str]) -> str:
    return _read_text(path, "--gradebook")
