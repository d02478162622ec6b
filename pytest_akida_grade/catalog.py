"""The checks in one place: each one `Check` (its name, title, column label, default points, the
stage it needs, its rule and its verdict), and how points are read and scored.

Adding a built-in check is one entry below, its rule (rules/) and its verdict (verdicts.py):
the evaluator runs every entry's rule, the grader asks every entry's verdict, the reports list
every entry. Pure: no pytest, no TensorFlow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pytest_akida_grade import verdicts
from pytest_akida_grade.results import Declared, Violation
from pytest_akida_grade.rules import akida_v1, design_space
from pytest_akida_grade.rules.specs import Specs

# ---------------------------------------------------------------------------- the checks

StageName = Literal["build", "grade", "hardware", "course"]


@dataclass(frozen=True)
class Submitted:
    """What a rule judges: the layer specs, the declared bits, and the supported precision the
    Akida 1.0 rules are checked at (the declared one, else W4A4)."""

    layers: Specs
    weight_bits: Declared
    activation_bits: Declared
    checked_bits: tuple[int, int]


Rule = Callable[[Submitted], list[Violation]]


@dataclass(frozen=True)
class Check:
    name: str  # public: test ids, JSON, gradebook columns
    title: str  # for humans (Gradescope, the class table's tooltips)
    label: str  # the class table's short column head (HTML)
    points: float  # default points, overridden by akida_points
    stage: StageName  # what must run before its verdict
    verdict: verdicts.Judge | None = None  # a course check's verdict is its test's outcome
    rule: Rule | None = None  # run by the evaluator on the exported JSON (Built.violations)


def _whitelist(model: Submitted) -> list[Violation]:
    return design_space.layer_whitelist(model.layers)


def _relu(model: Submitted) -> list[Violation]:
    return design_space.relu_bounded(model.layers)


def _scheme(model: Submitted) -> list[Violation]:
    return design_space.quantization_scheme(model.weight_bits, model.activation_bits)


def _v1(model: Submitted) -> list[Violation]:
    return akida_v1.v1_static(model.layers, weight_bits=model.checked_bits[0])


CHECKS: tuple[Check, ...] = (
    Check("loads", "The model file loads", "loads", 1.0, "build", verdicts.loads),
    Check("layer_whitelist", "Only allowed layers", "layers", 1.0, "build",
          verdicts.rules_kept("every layer is in the assignment's design space"), _whitelist),
    Check("relu_bounded", "Every ReLU has an upper bound", "ReLU<br>bound", 1.0, "build",
          verdicts.rules_kept("every ReLU has an upper bound and no layer hides an activation"),
          _relu),
    Check("quantization_scheme", "Quantized as W4A4, W4A1 or W2A4", "W/A<br>bits", 1.0,
          "build", verdicts.quantization_scheme, _scheme),
    Check("v1_constraints", "Converts for Akida v1 (hardware constraints)", "v1<br>rules", 2.0,
          "build", verdicts.v1_constraints, _v1),
    Check("quantized_accuracy", "Quantized model accuracy", "quant.<br>acc", 2.0, "grade",
          verdicts.quantized_accuracy),
    Check("akida_accuracy", "Akida (converted) model accuracy", "Akida<br>acc", 2.0, "grade",
          verdicts.akida_accuracy),
    Check("hardware_quality", "Hardware quality below the pass line", "HW<br>quality", 10.0,
          "hardware", verdicts.hardware),
)
BY_NAME: dict[str, Check] = {check.name: check for check in CHECKS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
FAST: tuple[str, ...] = tuple(c.name for c in CHECKS if c.stage == "build")
ACCURACY: tuple[str, ...] = tuple(c.name for c in CHECKS if c.stage == "grade")
DEFAULT_POINTS: dict[str, float] = {check.name: check.points for check in CHECKS}
COURSE_CHECK_POINTS = 1.0  # a course's own test (the akida_student fixture), unless configured


def violations(model: Submitted) -> dict[str, tuple[Violation, ...]]:
    """Every rule's verdict on a model: check name -> the rules it broke."""
    return {check.name: tuple(check.rule(model)) for check in CHECKS if check.rule is not None}


def course_check(name: str) -> Check:
    """A course's own test function, graded like a built-in check."""
    return Check(name, name.replace("_", " ").capitalize(), name, COURSE_CHECK_POINTS, "course")


# ---------------------------------------------------------------------------- points


class LineError(ValueError):
    """An akida_points / --points line is unusable; the message says which one and why."""


_POINTS_LINE = re.compile(r"^([A-Za-z_]\w*)\s*[=:]\s*(\S+)$")


def _valid_checks() -> str:
    return "valid checks: " + ", ".join(NAMES)


def parse_points(lines: Iterable[str], *, where: str = "ini akida_points",
                 extra_checks: Iterable[str] = ()) -> dict[str, float]:
    """Read "check = points" (or "check: points") lines; unspecified checks keep their defaults.

    `extra_checks` are course checks (test functions) that may be given points too.
    """
    known = set(NAMES) | set(extra_checks)
    points = dict(DEFAULT_POINTS)
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _POINTS_LINE.match(line)
        if match is None:
            raise LineError(f"{where}: cannot read {line!r}: expected 'check = points'; "
                              + _valid_checks())
        name, text = match.groups()
        if name not in known and not name.startswith("test_"):
            raise LineError(f"{where}: unknown check {name!r} in {line!r}; " + _valid_checks())
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise LineError(f"{where}: {text!r} in {line!r} is not a number of points "
                              f"(zero or more); " + _valid_checks())
        points[name] = value
    return points


def points_of(points: Mapping[str, float], check: str) -> float:
    """A check's points: configured, else its default (a course check: one point)."""
    default = BY_NAME[check].points if check in BY_NAME else COURSE_CHECK_POINTS
    return float(points.get(check, default))


def part(record: Mapping[str, object], key: str) -> Mapping[str, object]:
    """An object of a record (its "checks", its "metrics"); empty when absent or not one."""
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


def record_checks(record: Mapping[str, object]) -> list[str]:
    """The built-in checks in catalog order, then the record's course checks in name order."""
    extra = sorted(name for name in part(record, "checks") if name not in BY_NAME)
    return [*NAMES, *extra]


def outcome_of(record: Mapping[str, object], check: str) -> tuple[str, str]:
    """(outcome, message) of a check in a student record; ("missing", "not run") when absent."""
    entry = part(record, "checks").get(check)
    if not isinstance(entry, Mapping):
        return MISSING, "not run"
    return str(entry.get("outcome", MISSING)), str(entry.get("message") or "")


MISSING = "missing"  # the outcome of a check absent from a record
OUTCOMES = ("passed", "failed", "skipped", "error")


def score_before_late(record: Mapping[str, object],
                      points: Mapping[str, float]) -> tuple[float, float]:
    """(earned, max): a check earns its points only if it passed."""
    names = record_checks(record)
    earned = sum(points_of(points, c) for c in names if outcome_of(record, c)[0] == "passed")
    maximum = sum(points_of(points, c) for c in names)
    return round(earned, 6), round(maximum, 6)


def late_fraction(record: Mapping[str, object]) -> float:
    """The fraction of its points a late record loses: its `late_penalty` (late.py), else 0."""
    fraction = part(record, "late_penalty").get("fraction")
    ok = isinstance(fraction, int | float) and not isinstance(fraction, bool) \
        and 0.0 <= fraction <= 1.0
    return float(fraction) if ok else 0.0  # type: ignore[arg-type]


def score(record: Mapping[str, object], points: Mapping[str, float]) -> tuple[float, float]:
    """(earned, max) as every report shows them: after the record's late penalty, if any."""
    earned, maximum = score_before_late(record, points)
    return round(earned * (1.0 - late_fraction(record)), 6), maximum


def with_points(records: Iterable[Mapping[str, object]],
                points: Mapping[str, float]) -> list[dict[str, Any]]:
    """Copies of the records with "points" and "max_points" filled in, and
    "points_before_late" when a late penalty took some."""
    result = []
    for record in records:
        earned, maximum = score(record, points)
        scored: dict[str, Any] = {k: v for k, v in record.items() if k != "points_before_late"}
        scored.update(points=earned, max_points=maximum)
        if late_fraction(record):
            scored["points_before_late"] = score_before_late(record, points)[0]
        result.append(scored)
    return result


# ---------------------------------------------------------------------------- Gradescope

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")  # Gradescope's words
DEFAULT_VISIBILITY = "default"  # the akida_visibility line for every check not named
# Leaderboard metrics as instructors name them -> the student record's metric key.
LEADERBOARD_METRICS = {"quality": "quality", "akida_accuracy": "akida_accuracy",
                       "quantized_accuracy": "quantized_accuracy", "fps": "fps",
                       "power": "avg_power_mw", "memory": "memory_bytes", "NPs": "nps",
                       "parameters": "params"}
ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class LeaderboardColumn:
    name: str  # what Gradescope shows
    metric: str  # a LEADERBOARD_METRICS name
    order: str  # asc: lower is better

    @property
    def key(self) -> str:
        return LEADERBOARD_METRICS[self.metric]


def _lines_of(lines: Iterable[str]) -> Iterable[str]:
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line:
            yield line


def visibility_of(text: str, where: str) -> str:
    """One Gradescope visibility word, else a LineError naming where it came from."""
    if text not in VISIBILITIES:
        raise LineError(f"{where}: {text!r} is not a visibility; use one of "
                          + ", ".join(VISIBILITIES))
    return text


def parse_visibility(lines: Iterable[str], *,
                     where: str = "ini akida_visibility") -> dict[str, str]:
    """Read "check = visibility" lines (and "default = visibility") -> {check: visibility}."""
    found: dict[str, str] = {}
    for line in _lines_of(lines):
        match = _POINTS_LINE.match(line)
        if match is None:
            raise LineError(f"{where}: cannot read {line!r}: expected 'check = visibility', "
                              "e.g. 'akida_accuracy = after_due_date' or 'default = visible'")
        name, text = match.groups()
        if name not in BY_NAME and name != DEFAULT_VISIBILITY and not name.startswith("test_"):
            raise LineError(f"{where}: unknown check {name!r} in {line!r}; {_valid_checks()}, "
                              f"a course check (test_...) or {DEFAULT_VISIBILITY}")
        found[name] = visibility_of(text, f"{where}: {line!r}")
    return found


def parse_leaderboard(lines: Iterable[str], *,
                      where: str = "ini akida_leaderboard") -> tuple[LeaderboardColumn, ...]:
    """Read "name = metric [asc|desc]" lines (asc by default: lower is better)."""
    columns = []
    for line in _lines_of(lines):
        name, sep, rest = line.partition("=")
        words = rest.split()
        if not sep or not name.strip() or not 1 <= len(words) <= 2:
            raise LineError(f"{where}: cannot read {line!r}: expected 'name = metric [asc|desc]'"
                              ", e.g. 'Quality = quality asc'")
        metric, order = words[0], (words[1] if len(words) == 2 else "asc")
        if metric not in LEADERBOARD_METRICS:
            raise LineError(f"{where}: unknown metric {metric!r} in {line!r}; metrics: "
                              + ", ".join(LEADERBOARD_METRICS))
        if order not in ORDERS:
            raise LineError(f"{where}: order {order!r} in {line!r} must be asc or desc")
        columns.append(LeaderboardColumn(name.strip(), metric, order))
    return tuple(columns)
