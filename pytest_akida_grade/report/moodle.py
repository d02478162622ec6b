"""`python -m pytest_akida_grade moodle`: the grades as Moodle's gradebook import reads them.

Moodle's "Import grades: CSV file" (Grades > Import > CSV file) maps one column to a user
("Identify user by": map from a column to a user field: user id, username, ID number or email
address) and every other column to a grade item or its feedback. Its mapping page pre-selects
both when the header reads as Moodle's own grade export: the user column named as the field
("Email address", "ID number", "Username"), a grade column "<grade item> (Real)" and its
feedback "<grade item> (Feedback)", where an assignment's grade item is "Assignment: <name>".
A grade is a plain number ("6.4"); a row's user must exist in the course. Reads only records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_akida_grade import catalog
from pytest_akida_grade.fileio import csv_text
from pytest_akida_grade.report.files import ReportError, format_number, stored_points

# Moodle's user fields (mapto) as its English export names the columns.
IDENTIFIERS = {"email": "Email address", "idnumber": "ID number", "username": "Username"}
# The roster column (import-submissions) that holds each: Gradescope's emails and sid.
ROSTER_COLUMNS = {"email": "emails", "idnumber": "sid", "username": "student"}
LIST_SEPARATOR = ";"  # a group's emails in one roster cell: one row each


@dataclass(frozen=True)
class Written:
    """The file's text, who is in it and who is not."""

    text: str
    rows: int
    without_user: tuple[str, ...]  # graded students the roster gives no identifier


def grade_item(assignment: str) -> str:
    """How Moodle (in English) names an assignment's grade item."""
    return assignment if assignment.startswith("Assignment: ") else f"Assignment: {assignment}"


def _grade(record: Mapping[str, object], out_of: float | None) -> tuple[str, str]:
    """The grade cell and the feedback: points (or scaled to `out_of`), before and after a late
    penalty."""
    earned, why = stored_points(record)
    maximum = record.get("max_points")
    if not isinstance(maximum, int | float) or isinstance(maximum, bool):
        maximum = catalog.score(record, catalog.DEFAULT_POINTS)[1]
    feedback = f"{format_number(earned)} / {format_number(maximum)} points" + \
        (f" {why}" if why else "")
    if out_of is None:
        return format_number(earned), feedback
    scaled = earned / maximum * out_of if maximum else 0.0
    return format_number(round(scaled, 5)), f"{feedback}; {format_number(round(scaled, 5))} " \
        f"out of {format_number(out_of)}"


def grades_csv(records: Iterable[Mapping[str, object]], *, assignment: str, identifier: str,
               users: Mapping[str, str] | None, out_of: float | None = None,
               feedback: bool = True) -> Written:
    """One row per student (per person of a group) with their user identifier, points and
    feedback. `users`: student -> the identifier (a roster column); None: the student's name
    is the identifier (a username)."""
    if identifier not in IDENTIFIERS:
        raise ReportError(f"--identifier {identifier}: one of {', '.join(IDENTIFIERS)}")
    if out_of is not None and not out_of > 0:
        raise ReportError(f"--out-of {out_of:g}: must be a positive number of points")
    item = grade_item(assignment)
    header = [IDENTIFIERS[identifier], f"{item} (Real)"] + \
        ([f"{item} (Feedback)"] if feedback else [])
    table: list[list[str]] = [header]
    rows, missing = 0, []
    for record in sorted(records, key=lambda r: str(r["student"])):
        student = str(record["student"])
        people = [p.strip() for p in (users.get(student, "") if users is not None else student)
                  .split(LIST_SEPARATOR) if p.strip()]
        if not people:
            missing.append(student)
            continue
        grade, text = _grade(record, out_of)
        for person in people:
            table.append([person, grade] + ([text] if feedback else []))
            rows += 1
    return Written(csv_text(table, ending="\n"), rows, tuple(missing))
