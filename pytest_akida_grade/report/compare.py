"""`python -m pytest_akida_grade compare OLD.json NEW.json`: after a regrade (a rule, a point value,
the toolchain changed), the students whose outcome, points or figures changed, with both values.

Reads only records (report/files.py). Figures are the records' metrics, compared to 6
significant digits (a float's last bits are not a change).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_akida_grade import catalog
from pytest_akida_grade.report.files import Record, format_number, is_number, stored_points

DIGITS = 6
KINDS = ("check", "points", "figure")


@dataclass(frozen=True)
class Change:
    """One difference of one student: a check's outcome, the points or a figure."""

    student: str
    kind: str  # one of KINDS, or "student" (in one file only)
    name: str  # the check, "points" / "max_points", the metric
    old: str
    new: str

    def __str__(self) -> str:
        if self.kind == "student":
            return f"{self.student}: {self.old}"
        label = self.name if self.kind == "points" else f"{self.kind} {self.name}"
        return f"{self.student}: {label}: {self.old} -> {self.new}"


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if is_number(value):
        return f"{value:.{DIGITS}g}"
    return str(value)


def _points(record: Mapping[str, object]) -> dict[str, str]:
    maximum = record.get("max_points")
    return {"points": format_number(stored_points(record)[0]),
            "max_points": format_number(maximum if is_number(maximum)
                                        else catalog.score(record, catalog.DEFAULT_POINTS)[1])}


def _student_changes(student: str, old: Mapping[str, object],
                     new: Mapping[str, object]) -> list[Change]:
    found = []
    for check in dict.fromkeys([*catalog.record_checks(old), *catalog.record_checks(new)]):
        before, after = catalog.outcome_of(old, check)[0], catalog.outcome_of(new, check)[0]
        if before != after:
            found.append(Change(student, "check", check, before, after))
    old_points, new_points = _points(old), _points(new)
    found += [Change(student, "points", key, old_points[key], new_points[key])
              for key in old_points if old_points[key] != new_points[key]]
    old_metrics, new_metrics = catalog.part(old, "metrics"), catalog.part(new, "metrics")
    for key in sorted(set(old_metrics) | set(new_metrics)):
        before, after = _shown(old_metrics.get(key)), _shown(new_metrics.get(key))
        if before != after:
            found.append(Change(student, "figure", key, before, after))
    return found


def changes(old: Iterable[Record], new: Iterable[Record], *, old_name: str = "OLD",
            new_name: str = "NEW") -> list[Change]:
    """Every difference, student by student (by name), checks first, then points, figures."""
    before = {str(r["student"]): r for r in old}
    after = {str(r["student"]): r for r in new}
    found: list[Change] = []
    for student in sorted(set(before) | set(after)):
        if student not in after:
            found.append(Change(student, "student", "", f"only in {old_name}", ""))
        elif student not in before:
            found.append(Change(student, "student", "", f"only in {new_name}", ""))
        else:
            found += _student_changes(student, before[student], after[student])
    return found


def summary(found: list[Change], students: int) -> str:
    """'2 of 12 students changed: 1 in a check's outcome, 2 in points, 1 in figures, ...'."""
    changed = {c.student for c in found}
    counts = [(len({c.student for c in found if c.kind == kind}), label) for kind, label in (
        ("check", "in a check's outcome"), ("points", "in points"), ("figure", "in figures"),
        ("student", "in one file only"))]
    detail = ", ".join(f"{n} {label}" for n, label in counts if n)
    return f"{len(changed)} of {students} students changed" + (f": {detail}" if detail else "")
