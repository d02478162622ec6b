"""Grade files: JSON (write, read, validate), the CSV gradebook, Gradescope results.json, `merge`.

Reads only student records (docs/contracts.md) and the catalog. Accuracies in records are fractions
(0.9761); a value above 1 is taken to be a percentage already.
"""

from __future__ import annotations

import copy
import json
import keyword
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from pytest_akida_grade import catalog, late, similarity
from pytest_akida_grade.catalog import MISSING, OUTCOMES
from pytest_akida_grade.codec import RecordError, load
from pytest_akida_grade.fileio import atomic_write_text, csv_text
from pytest_akida_grade.quality import PERCENT, QUALITY_MAX

Record = dict[str, object]  # a student record (docs/contracts.md), checked by read_json

METRIC_COLUMNS = (
    "float_accuracy",
    "quantized_accuracy",
    "akida_accuracy",
    "hardware_accuracy",
    "fps",
    "avg_power_mw",
    "energy_mj_per_frame",
    "memory_bytes",
    "quality",
    "source",
)
# Check columns carry a prefix: two checks share their names with accuracy metrics.
CSV_COLUMNS = (
    "student",
    *(f"check_{name}" for name in catalog.NAMES),
    *METRIC_COLUMNS,
    "points",
    "max_points",
)
# Last, when a record has them: the graded file's name (john-doe.py is graded as john_doe), the
# late flag of the importer's roster.csv, how late, the late penalty's fraction and the points
# before it (late.py).
FILE_COLUMNS = ("file", "late", "days_late", "late_penalty", "points_before_late")
SOURCE_LABELS = {"device": "measured", "replay": "replayed", "none": "none"}
COURSE_PREFIX = "test_"  # a course check is named after its test function
GRADES_BYTES = 1 << 30  # a class of thousands, each record a few KB, is far below this


class ReportError(Exception):
    """A grade file or setting is unusable; the message says which one and why."""


# ---------------------------------------------------------------- figures shared with cli


def format_number(value: float) -> str:
    """Points as people write them: 20, 7.5."""
    value = round(float(value), 6)  # an int sum (nothing earned) has no is_integer() on 3.11
    return str(int(value)) if value.is_integer() else repr(value)


def format_quality(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _late_clause(record: Mapping[str, object], before: float) -> str:
    penalty = late.describe(record)
    return f" ({format_number(before)} before the late penalty, {penalty})" if penalty else ""


def points_text(record: Mapping[str, object], points: Mapping[str, float]) -> str:
    """'6.4 / 10 points', and after a late penalty the points before it and why."""
    earned, maximum = catalog.score(record, points)
    return (f"{format_number(earned)} / {format_number(maximum)} points"
            + _late_clause(record, catalog.score_before_late(record, points)[0]))


def stored_points(record: Mapping[str, object]) -> tuple[float, str]:
    """The points a grade file gives the student (else the default points' score) and, after
    a late penalty, the points before it and why (the LMS files: canvas, moodle)."""
    earned = value if is_number(value := record.get("points")) \
        else catalog.score(record, catalog.DEFAULT_POINTS)[0]
    before = value if is_number(value := record.get("points_before_late")) \
        else catalog.score_before_late(record, catalog.DEFAULT_POINTS)[0]
    return earned, _late_clause(record, before).strip()


def is_number(value: object) -> TypeGuard[float]:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def metric(record: Mapping[str, object], key: str) -> float | None:
    """A finite number from the record's metrics, else None."""
    value = catalog.part(record, "metrics").get(key)
    return float(value) if is_number(value) else None


def _percent(value: float | None) -> float | None:
    if value is None:
        return None
    return value * PERCENT if value <= 1.0 else value


def _source_label(record: Mapping[str, object]) -> str:
    source = catalog.part(record, "metrics").get("source")
    return SOURCE_LABELS.get(str(source), str(source)) if source else "none"


def _by_student(records: Iterable[Mapping[str, object]]) -> list[Mapping[str, object]]:
    return sorted(records, key=lambda r: str(r.get("student", "")))


def course_checks(records: Iterable[Mapping[str, object]]) -> list[str]:
    """The course checks found in any record, in catalog.record_checks order (by name)."""
    found = {name for record in records for name in catalog.record_checks(record)}
    return sorted(found - set(catalog.NAMES))


def is_course_check(name: str) -> bool:
    """A course's own test function: a Python identifier starting with test_."""
    return name.startswith(COURSE_PREFIX) and name.isidentifier() and not keyword.iskeyword(name)


# ---------------------------------------------------------------- JSON


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write atomically (readers never see half a file); failures become a ReportError."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ReportError(f"{Path(path)}: cannot write: {exc.strerror or exc}") from exc


def _json_safe(value: object) -> object:
    """Non-finite floats become null: strict JSON readers (browsers, Gradescope) reject NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _dump(data: object) -> str:
    return json.dumps(_json_safe(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(records: Iterable[Mapping[str, object]], path: str | os.PathLike[str], *,
               not_graded: Sequence[Mapping[str, str]] = (),
               similar: Sequence[similarity.Pair] | None = None) -> None:
    """Write {"students": [...], "not_graded": [...]} sorted by student (and by file), and the
    class's "similar" pairs when given."""
    left_out = sorted((dict(item) for item in not_graded), key=lambda item: item["file"])
    data: dict[str, object] = {"students": _by_student(records)}
    if left_out:
        data["not_graded"] = left_out
    if similar is not None:
        data["similar"] = list(similar)
    write_text(path, _dump(data))


NOT_GRADED_KEYS = ("file", "reason", "fix")


def read_not_graded(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The "not_graded" list of a file written by write_json (none in older files)."""
    source = Path(path)
    data = _load(source)
    items = data.get("not_graded", []) if isinstance(data, dict) else []
    if not isinstance(items, list) or not all(
            isinstance(item, dict) and all(isinstance(item.get(k), str) for k in NOT_GRADED_KEYS)
            for item in items):
        raise ReportError(f"{source}: \"not_graded\" must be a list of objects with "
                          + ", ".join(f'"{k}"' for k in NOT_GRADED_KEYS) + " (strings)")
    return [{k: item[k] for k in NOT_GRADED_KEYS} for item in items]


def _unknown_check(name: str) -> str:
    return (f"unknown check {name!r}; valid checks: " + ", ".join(catalog.NAMES)
            + f", or a course check named after its test function ({COURSE_PREFIX}...)")


def _check_entries(checks: Mapping[str, object], where: str) -> None:
    for name, entry in checks.items():
        if name not in catalog.BY_NAME and not is_course_check(name):
            raise ReportError(f"{where}: {_unknown_check(name)}")
        if not isinstance(entry, dict) or entry.get("outcome") not in OUTCOMES:
            raise ReportError(f"{where}: check {name!r} needs an \"outcome\" of "
                              + ", ".join(OUTCOMES))
        if not isinstance(entry.get("message", ""), str | None):
            raise ReportError(f"{where}: check {name!r}: \"message\" must be a string")


def _check_record(item: object, where: str) -> Record:
    if not isinstance(item, dict):
        raise ReportError(f"{where}: expected an object, got {type(item).__name__}")
    student = item.get("student")
    if not isinstance(student, str) or not student.strip():
        raise ReportError(f"{where}: \"student\" must be a non-empty string")
    where = f"{where} ({student})"
    checks = item.get("checks")
    if not isinstance(checks, dict):
        raise ReportError(f"{where}: \"checks\" must be an object")
    _check_entries(checks, where)
    if not isinstance(item.get("metrics", {}), dict):
        raise ReportError(f"{where}: \"metrics\" must be an object")
    if not isinstance(item.get("file", ""), str) or not isinstance(item.get("late", False), bool):
        raise ReportError(f"{where}: \"file\" must be a string and \"late\" true or false")
    _check_late(item, where)
    for key in ("points", "max_points", "points_before_late", "days_late"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ReportError(f"{where}: {key!r} must be a number")
    return {**item, "metrics": dict(item.get("metrics", {}))}


def _check_late(item: Mapping[str, object], where: str) -> None:
    penalty = item.get("late_penalty")
    if penalty is None:
        return
    fraction = penalty.get("fraction") if isinstance(penalty, dict) else None
    if not (is_number(fraction) and 0 <= fraction <= 1 and isinstance(penalty, dict)
            and isinstance(penalty.get("policy"), str)
            and (penalty.get("days") is None or is_number(penalty.get("days")))):
        raise ReportError(f"{where}: \"late_penalty\" must be an object with a \"policy\" "
                          "(text), \"days\" (a number or null) and a \"fraction\" from 0 to 1")


def _load(source: Path) -> object:
    """A grade file through the codec's reader: size, depth and numbers bounded."""
    try:
        return load(source, what=str(source), limit=GRADES_BYTES)
    except RecordError as exc:
        raise ReportError(str(exc)) from None


def read_json(path: str | os.PathLike[str]) -> list[Record]:
    """Read and validate a file written by write_json."""
    source = Path(path)
    data = _load(source)
    if not isinstance(data, dict) or not isinstance(data.get("students"), list):
        raise ReportError(f"{source}: expected an object {{\"students\": [...]}}")
    records = [_check_record(item, f"{source}: students[{i}]")
               for i, item in enumerate(data["students"])]
    seen: set[str] = set()
    for record in records:
        if record["student"] in seen:
            raise ReportError(f"{source}: student {record['student']!r} appears twice")
        seen.add(str(record["student"]))
    return records


# ---------------------------------------------------------------- merge


def _merge_metrics(old: Mapping[str, object], new: Mapping[str, object]) -> dict[str, object]:
    # A later shard fills in and overrides figures, but an absent one (null, source "none")
    # does not erase a figure an earlier shard measured.
    merged = dict(old)
    for key, value in new.items():
        if value is None and key in merged:
            continue
        if key == "source" and value == "none" and merged.get("source") not in (None, "none"):
            continue
        merged[key] = value
    return merged


def _merge_pair(old: Mapping[str, object], new: Mapping[str, object]) -> Record:
    checks = {**catalog.part(old, "checks"), **catalog.part(new, "checks")}
    merged: Record = {**old, **new}
    order = catalog.record_checks({"checks": checks})  # built-ins, then course checks by name
    merged["checks"] = {name: checks[name] for name in order if name in checks}
    merged["metrics"] = _merge_metrics(catalog.part(old, "metrics"), catalog.part(new, "metrics"))
    merged.pop("points", None)  # stale once checks changed; with_points recomputes them
    merged.pop("max_points", None)
    merged.pop("points_before_late", None)
    return merged


def merge(record_lists: Sequence[Iterable[Mapping[str, object]]]) -> list[Record]:
    """Union of shards by student; a later shard overrides an earlier one per check."""
    merged: dict[str, Record] = {}
    for records in record_lists:
        for record in records:
            name = str(record["student"])
            fresh = copy.deepcopy(dict(record))
            merged[name] = _merge_pair(merged[name], fresh) if name in merged else fresh
    return [merged[name] for name in sorted(merged)]


# ---------------------------------------------------------------- CSV


def _csv_value(value: object) -> str:
    if isinstance(value, Mapping):  # late_penalty: its fraction
        value = value.get("fraction")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _file_cell(record: Mapping[str, object], key: str) -> str:
    value = record.get(key)
    return format_number(value) if key == "points_before_late" and is_number(value) \
        else _csv_value(value)


def csv_columns(records: Iterable[Mapping[str, object]]) -> tuple[str, ...]:
    """CSV_COLUMNS with a check_<name> column per course check, after the built-in checks."""
    records = list(records)
    split = 1 + len(catalog.NAMES)
    course = tuple(f"check_{name}" for name in course_checks(records))
    extra = tuple(key for key in FILE_COLUMNS if any(key in record for record in records))
    return (*CSV_COLUMNS[:split], *course, *CSV_COLUMNS[split:], *extra)


def write_csv(records: Iterable[Mapping[str, object]], path: str | os.PathLike[str],
              points: Mapping[str, float]) -> None:
    """One row per student: check outcomes, metrics, points (see csv_columns); every cell
    safe in a spreadsheet (fileio.csv_text)."""
    records = _by_student(records)
    checks = [*catalog.NAMES, *course_checks(records)]
    columns = csv_columns(records)
    extra = [key for key in FILE_COLUMNS if key in columns]
    rows: list[list[object]] = [list(columns)]
    for record in records:
        metrics = catalog.part(record, "metrics")
        earned, maximum = catalog.score(record, points)
        rows.append([
            record.get("student", ""),
            *(catalog.outcome_of(record, name)[0] for name in checks),
            *(_csv_value(metrics.get(key)) for key in METRIC_COLUMNS),
            format_number(earned),
            format_number(maximum),
            *(_file_cell(record, key) for key in extra),
        ])
    write_text(path, csv_text(rows))


# ---------------------------------------------------------------- Gradescope


def _hardware_summary(record: Mapping[str, object], quality_max: float) -> str:
    quality = metric(record, "quality")
    if quality is None:
        return "No hardware figures: the quality was not measured."
    parts = []
    acc, fps = _percent(metric(record, "hardware_accuracy")), metric(record, "fps")
    power, energy = metric(record, "avg_power_mw"), metric(record, "energy_mj_per_frame")
    memory = metric(record, "memory_bytes")
    if acc is not None:
        parts.append(f"hardware accuracy {acc:.2f}%")
    if fps:
        parts.append(f"{fps:.1f} fps (latency {1000.0 / fps:.3f} ms)")
    if power is not None:
        parts.append(f"average power {power:.1f} mW")
    if energy is not None:
        parts.append(f"energy {energy:.3g} mJ/frame")
    if memory is not None:
        parts.append(f"memory {memory:,.0f} bytes")
    verdict = "passes" if quality < quality_max else "does not pass"
    return (f"Quality {format_quality(quality)} ({_source_label(record)}); {verdict} the line at "
            f"{format_quality(quality_max)}.\n" + ", ".join(parts).capitalize() + ".")


def _accuracy_summary(record: Mapping[str, object]) -> str:
    names = (("float", "float_accuracy"), ("quantized", "quantized_accuracy"),
             ("Akida", "akida_accuracy"))
    parts = [f"{label} {_percent(value):.2f}%" for label, key in names
             if (value := metric(record, key)) is not None]
    return ("Accuracy: " + ", ".join(parts) + ".") if parts else ""


def _gradescope_output(outcome: str, message: str) -> str:
    if outcome == "passed":
        return message or "Passed."
    if outcome == "skipped":
        return f"Skipped, so it counts as failed: {message or 'an earlier step did not succeed.'}"
    if outcome == MISSING:
        return "Not run, so it counts as failed."
    if outcome == "error":
        return f"Error while grading: {message or 'no details.'}"
    return message or "Failed."


@dataclass(frozen=True)
class GradescopeView:
    """What students see on Gradescope, and when (akida_visibility, akida_stdout_visibility,
    akida_leaderboard); nothing configured writes none of those fields."""

    visibility: Mapping[str, str] = field(default_factory=dict)
    stdout_visibility: str | None = None
    leaderboard: tuple[catalog.LeaderboardColumn, ...] = ()

    def of(self, check: str) -> str | None:
        default = self.visibility.get(catalog.DEFAULT_VISIBILITY)
        return self.visibility.get(check, default or "visible") if self.visibility else None


def leaderboard(record: Mapping[str, object],
                columns: Iterable[catalog.LeaderboardColumn]) -> list[dict[str, object]]:
    """Gradescope's leaderboard entries; a figure not measured is left out, never invented."""
    return [{"name": column.name, "value": value, "order": column.order}
            for column in columns if (value := metric(record, column.key)) is not None]


def _gradescope_test(record: Mapping[str, object], name: str, number: int,
                     points: Mapping[str, float],
                     view: GradescopeView = GradescopeView()) -> dict[str, object]:
    outcome, message = catalog.outcome_of(record, name)
    worth = catalog.points_of(points, name)
    check = catalog.BY_NAME.get(name) or catalog.course_check(name)
    return {
        "name": f"{check.title} [{name}]",
        "number": str(number),
        "score": worth if outcome == "passed" else 0.0,
        "max_score": worth,
        "status": "passed" if outcome == "passed" else "failed",
        "output": _gradescope_output(outcome, message),
        **({"visibility": shown} if (shown := view.of(name)) else {}),
    }


def _gradescope_extras(record: Mapping[str, object], view: GradescopeView) -> dict[str, object]:
    """execution_time, the submission's visibility, stdout's and the leaderboard: when known."""
    extras: dict[str, object] = {}
    seconds = record.get("seconds")
    if is_number(seconds) and seconds >= 0:
        extras["execution_time"] = round(seconds)
    if view.visibility:
        extras["visibility"] = view.visibility.get(catalog.DEFAULT_VISIBILITY, "visible")
    if view.stdout_visibility:
        extras["stdout_visibility"] = view.stdout_visibility
    if view.leaderboard:
        extras["leaderboard"] = leaderboard(record, view.leaderboard)
    return extras


def gradescope_result(record: Mapping[str, object], points: Mapping[str, float], *,
                      quality_max: float = QUALITY_MAX,
                      view: GradescopeView = GradescopeView()) -> dict[str, object]:
    """One student's results.json in Gradescope's autograder format (course checks last)."""
    tests = [_gradescope_test(record, name, number, points, view)
             for number, name in enumerate(catalog.record_checks(record), start=1)]
    earned = catalog.score(record, points)[0]
    lines = [f"{record.get('student', '')}: {points_text(record, points)}.",
             _accuracy_summary(record), _hardware_summary(record, quality_max)]
    return {"score": earned, **_gradescope_extras(record, view),
            "output": "\n".join(line for line in lines if line), "tests": tests}


def _safe_dirname(student: str) -> str:
    if student in ("", ".", "..") or any(c in student for c in "/\\\0"):
        raise ReportError(f"student name {student!r} cannot be a directory name")
    return student


def write_gradescope(records: Iterable[Mapping[str, object]], directory: str | os.PathLike[str],
                     points: Mapping[str, float], *, quality_max: float = QUALITY_MAX,
                     view: GradescopeView = GradescopeView()) -> None:
    """DIRECTORY/<student>/results.json for every student."""
    for record in _by_student(records):
        folder = Path(directory) / _safe_dirname(str(record.get("student", "")))
        result = gradescope_result(record, points, quality_max=quality_max, view=view)
        write_text(folder / "results.json", _dump(result))
