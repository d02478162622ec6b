"""Turn student records into grade files: JSON, CSV, Gradescope results, an HTML table and a plot.

Pure Python (no pytest, no TensorFlow). The record format is in docs/contracts.md. Accuracies in
records are fractions (0.9761); quality follows the assignment: (100 - hardware accuracy %) x
latency [s] x average power [W] x memory [bytes], full credit below `quality_max`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import html
import io
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_akida_grade.checks import CHECKS

Record = dict[str, Any]

DEFAULT_POINTS: dict[str, float] = {
    "loads": 1.0,
    "layer_whitelist": 1.0,
    "relu_bounded": 1.0,
    "quantization_scheme": 1.0,
    "v1_constraints": 2.0,
    "quantized_accuracy": 2.0,
    "akida_accuracy": 2.0,
    "hardware_quality": 10.0,
}
CHECK_TITLES: dict[str, str] = {
    "loads": "The model file loads",
    "layer_whitelist": "Only allowed layers",
    "relu_bounded": "Every ReLU has an upper bound",
    "quantization_scheme": "Quantized as W4A4, W4A1 or W2A4",
    "v1_constraints": "Converts for Akida v1 (hardware constraints)",
    "quantized_accuracy": "Quantized model accuracy",
    "akida_accuracy": "Akida (converted) model accuracy",
    "hardware_quality": "Hardware quality below the pass line",
}
OUTCOMES = ("passed", "failed", "skipped", "error")
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
    *(f"check_{name}" for name in CHECKS),
    *METRIC_COLUMNS,
    "points",
    "max_points",
)
SOURCE_LABELS = {"device": "measured", "replay": "replayed", "none": "none"}
QUALITY_MAX = 200.0
MISSING = "missing"  # outcome of a check absent from a record


class ReportError(Exception):
    """A grade file or setting is unusable; the message says which one and why."""


# ---------------------------------------------------------------- points and scores


_POINTS_LINE = re.compile(r"^([A-Za-z_]\w*)\s*[=:]\s*(\S+)$")


def _valid_checks() -> str:
    return "valid checks: " + ", ".join(CHECKS)


def parse_points(lines: Iterable[str], *, where: str = "ini akida_points") -> dict[str, float]:
    """Read "check = points" (or "check: points") lines; unspecified checks keep their defaults."""
    points = dict(DEFAULT_POINTS)
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _POINTS_LINE.match(line)
        if match is None:
            raise ReportError(f"{where}: cannot read {line!r}: expected 'check = points'; "
                              + _valid_checks())
        name, text = match.groups()
        if name not in CHECKS:
            raise ReportError(f"{where}: unknown check {name!r} in {line!r}; " + _valid_checks())
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ReportError(f"{where}: {text!r} in {line!r} is not a number of points "
                              f"(zero or more); " + _valid_checks())
        points[name] = value
    return points


def _outcome(record: Mapping[str, Any], check: str) -> tuple[str, str]:
    entry = record.get("checks", {}).get(check)
    if not isinstance(entry, Mapping):
        return MISSING, "not run"
    return str(entry.get("outcome", MISSING)), str(entry.get("message") or "")


def _points_of(points: Mapping[str, float], check: str) -> float:
    return float(points.get(check, DEFAULT_POINTS[check]))


def score(record: Mapping[str, Any], points: Mapping[str, float]) -> tuple[float, float]:
    """(earned, max): a check earns its points only if it passed."""
    earned = sum(_points_of(points, c) for c in CHECKS if _outcome(record, c)[0] == "passed")
    maximum = sum(_points_of(points, c) for c in CHECKS)
    return round(earned, 6), round(maximum, 6)


def with_points(records: Iterable[Mapping[str, Any]], points: Mapping[str, float]) -> list[Record]:
    """Copies of the records with "points" and "max_points" filled in."""
    result = []
    for record in records:
        earned, maximum = score(record, points)
        result.append({**record, "points": earned, "max_points": maximum})
    return result


# ---------------------------------------------------------------- files


def _write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write via a temporary file and a rename, so readers never see half a file."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ReportError(f"{target}: cannot write: {exc.strerror or exc}") from exc


def _json_safe(value: Any) -> Any:
    """Non-finite floats become null: strict JSON readers (browsers, Gradescope) reject NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _by_student(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(records, key=lambda r: str(r.get("student", "")))


def _dump(data: Any) -> str:
    return json.dumps(_json_safe(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write {"students": [...]} sorted by student."""
    _write_atomic(path, _dump({"students": _by_student(records)}))


def _check_record(item: Any, where: str) -> Record:
    if not isinstance(item, dict):
        raise ReportError(f"{where}: expected an object, got {type(item).__name__}")
    student = item.get("student")
    if not isinstance(student, str) or not student.strip():
        raise ReportError(f"{where}: \"student\" must be a non-empty string")
    where = f"{where} ({student})"
    checks = item.get("checks")
    if not isinstance(checks, dict):
        raise ReportError(f"{where}: \"checks\" must be an object")
    for name, entry in checks.items():
        if name not in CHECKS:
            raise ReportError(f"{where}: unknown check {name!r}; " + _valid_checks())
        if not isinstance(entry, dict) or entry.get("outcome") not in OUTCOMES:
            raise ReportError(f"{where}: check {name!r} needs an \"outcome\" of "
                              + ", ".join(OUTCOMES))
        if not isinstance(entry.get("message", ""), str | None):
            raise ReportError(f"{where}: check {name!r}: \"message\" must be a string")
    if not isinstance(item.get("metrics", {}), dict):
        raise ReportError(f"{where}: \"metrics\" must be an object")
    for key in ("points", "max_points"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ReportError(f"{where}: {key!r} must be a number")
    return {**item, "metrics": dict(item.get("metrics", {}))}


def read_json(path: str | os.PathLike[str]) -> list[Record]:
    """Read and validate a file written by write_json."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportError(f"{source}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{source}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{source}: not valid JSON: {exc.msg} "
                          f"(line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("students"), list):
        raise ReportError(f"{source}: expected an object {{\"students\": [...]}}")
    records = [_check_record(item, f"{source}: students[{i}]")
               for i, item in enumerate(data["students"])]
    seen: set[str] = set()
    for record in records:
        if record["student"] in seen:
            raise ReportError(f"{source}: student {record['student']!r} appears twice")
        seen.add(record["student"])
    return records


def _merge_metrics(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
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


def _merge_pair(old: Mapping[str, Any], new: Mapping[str, Any]) -> Record:
    checks = {**old.get("checks", {}), **new.get("checks", {})}
    merged: Record = {**old, **new}
    merged["checks"] = {name: checks[name] for name in (*CHECKS, *checks) if name in checks}
    merged["metrics"] = _merge_metrics(old.get("metrics", {}), new.get("metrics", {}))
    merged.pop("points", None)  # stale once checks changed; with_points recomputes them
    merged.pop("max_points", None)
    return merged


def merge(record_lists: Sequence[Iterable[Mapping[str, Any]]]) -> list[Record]:
    """Union of shards by student; a later shard overrides an earlier one per check."""
    merged: dict[str, Record] = {}
    for records in record_lists:
        for record in records:
            name = str(record["student"])
            fresh = copy.deepcopy(dict(record))
            merged[name] = _merge_pair(merged[name], fresh) if name in merged else fresh
    return [merged[name] for name in sorted(merged)]


# ---------------------------------------------------------------- CSV and Gradescope


def _fmt_number(value: float) -> str:
    value = round(float(value), 6)  # an int sum (nothing earned) has no is_integer() on 3.11
    return str(int(value)) if value.is_integer() else repr(value)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def write_csv(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str],
              points: Mapping[str, float]) -> None:
    """One row per student: check outcomes, metrics, points (see CSV_COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for record in _by_student(records):
        metrics = record.get("metrics", {})
        earned, maximum = score(record, points)
        writer.writerow([
            record.get("student", ""),
            *(_outcome(record, name)[0] for name in CHECKS),
            *(_csv_value(metrics.get(key)) for key in METRIC_COLUMNS),
            _fmt_number(earned),
            _fmt_number(maximum),
        ])
    _write_atomic(path, buffer.getvalue())


def _metric(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get("metrics", {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _percent(value: float | None) -> float | None:
    # Records hold fractions; a value above 1 is taken to be a percentage already.
    if value is None:
        return None
    return value * 100.0 if value <= 1.0 else value


def _accuracy(record: Mapping[str, Any]) -> float | None:
    """Hardware accuracy in percent, else the Akida simulator's."""
    value = _metric(record, "hardware_accuracy")
    return _percent(value if value is not None else _metric(record, "akida_accuracy"))


def _source_label(record: Mapping[str, Any]) -> str:
    source = record.get("metrics", {}).get("source")
    return SOURCE_LABELS.get(str(source), str(source)) if source else "none"


def _fmt_quality(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _hardware_summary(record: Mapping[str, Any], quality_max: float) -> str:
    quality = _metric(record, "quality")
    if quality is None:
        return "No hardware figures: the quality was not measured."
    parts = []
    acc, fps = _percent(_metric(record, "hardware_accuracy")), _metric(record, "fps")
    power, energy = _metric(record, "avg_power_mw"), _metric(record, "energy_mj_per_frame")
    memory = _metric(record, "memory_bytes")
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
    return (f"Quality {_fmt_quality(quality)} ({_source_label(record)}); {verdict} the line at "
            f"{_fmt_quality(quality_max)}.\n" + ", ".join(parts).capitalize() + ".")


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


def _safe_dirname(student: str) -> str:
    if student in ("", ".", "..") or any(c in student for c in "/\\\0"):
        raise ReportError(f"student name {student!r} cannot be a directory name")
    return student


def _accuracy_summary(record: Mapping[str, Any]) -> str:
    names = (("float", "float_accuracy"), ("quantized", "quantized_accuracy"),
             ("Akida", "akida_accuracy"))
    parts = [f"{label} {_percent(value):.2f}%" for label, key in names
             if (value := _metric(record, key)) is not None]
    return ("Accuracy: " + ", ".join(parts) + ".") if parts else ""


def gradescope_result(record: Mapping[str, Any], points: Mapping[str, float], *,
                      quality_max: float = QUALITY_MAX) -> dict[str, Any]:
    """One student's results.json in Gradescope's autograder format."""
    tests = []
    for number, name in enumerate(CHECKS, start=1):
        outcome, message = _outcome(record, name)
        worth = _points_of(points, name)
        tests.append({
            "name": f"{CHECK_TITLES[name]} [{name}]",
            "number": str(number),
            "score": worth if outcome == "passed" else 0.0,
            "max_score": worth,
            "status": "passed" if outcome == "passed" else "failed",
            "output": _gradescope_output(outcome, message),
        })
    earned, maximum = score(record, points)
    lines = [f"{record.get('student', '')}: {_fmt_number(earned)} / {_fmt_number(maximum)} points.",
             _accuracy_summary(record), _hardware_summary(record, quality_max)]
    return {"score": earned, "output": "\n".join(line for line in lines if line), "tests": tests}


def write_gradescope(records: Iterable[Mapping[str, Any]], directory: str | os.PathLike[str],
                     points: Mapping[str, float], *, quality_max: float = QUALITY_MAX) -> None:
    """DIRECTORY/<student>/results.json for every student."""
    for record in _by_student(records):
        folder = Path(directory) / _safe_dirname(str(record.get("student", "")))
        result = gradescope_result(record, points, quality_max=quality_max)
        _write_atomic(folder / "results.json", _dump(result))


# ---------------------------------------------------------------- HTML class table

_esc = html.escape
_MINUS, _TIMES = "\u2212", "\u00d7"

_TABLE_STYLE = """
#akida-class-table{border-collapse:collapse;font:12px/1.3 system-ui,Helvetica,Arial,sans-serif;
 color:#1f2328;background:#fff;margin:8px 0}
#akida-class-table caption{caption-side:top;text-align:left;padding:4px 0;color:#57606a}
#akida-class-table th,#akida-class-table td{border:1px solid #d0d7de;padding:3px 5px;
 text-align:right;white-space:nowrap}
#akida-class-table thead th{background:#f6f8fa;vertical-align:bottom;text-align:center}
#akida-class-table thead tr.akida-sort th{cursor:pointer;user-select:none;font-weight:600}
#akida-class-table thead tr.akida-sort th:hover{background:#eaeef2}
#akida-class-table thead th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}
#akida-class-table thead th[aria-sort=descending]::after{content:" \\25BC";font-size:9px}
#akida-class-table tbody th{text-align:left;font-weight:600}
#akida-class-table td.akida-outcome{text-align:center;font-weight:600}
#akida-class-table .akida-passed{background:#dafbe1;color:#116329}
#akida-class-table .akida-failed{background:#ffebe9;color:#a40e26}
#akida-class-table .akida-error{background:#fff1e5;color:#953800}
#akida-class-table .akida-skipped,#akida-class-table .akida-missing{background:#f6f8fa;
 color:#6e7781}
#akida-class-table td.akida-good{color:#116329;font-weight:600}
#akida-class-table td.akida-bad{color:#a40e26;font-weight:600}
.akida-scroll{overflow-x:auto;max-width:100%}
"""

# Sorts rows by each cell's data-sort; blanks stay last in either direction.
_TABLE_SCRIPT = """
(function () {
  var table = document.getElementById("akida-class-table");
  if (!table || table.getAttribute("data-sort-ready")) { return; }
  table.setAttribute("data-sort-ready", "1");
  var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
  function key(row, col) {
    var cell = row.cells[col];
    return cell ? (cell.getAttribute("data-sort") || "") : "";
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      var numeric = th.getAttribute("data-type") === "number";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, col), y = key(b, col);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var d = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
"""

_OUTCOME_RANK = {"passed": 0, "failed": 1, "error": 2, "skipped": 3, MISSING: 4}

# Short column labels; the full check name and title are in the header's tooltip.
_CHECK_LABELS = {
    "loads": "loads",
    "layer_whitelist": "layers",
    "relu_bounded": "ReLU<br>bound",
    "quantization_scheme": "W/A<br>bits",
    "v1_constraints": "v1<br>rules",
    "quantized_accuracy": "quant.<br>acc",
    "akida_accuracy": "Akida<br>acc",
    "hardware_quality": "HW<br>quality",
}

# (group, label, metric key, kind) for the number columns.
_METRIC_CELLS = (
    ("Accuracy (%)", "float", "float_accuracy", "percent"),
    ("Accuracy (%)", "quant.", "quantized_accuracy", "percent"),
    ("Accuracy (%)", "Akida", "akida_accuracy", "percent"),
    ("Accuracy (%)", "HW", "hardware_accuracy", "percent"),
    ("Hardware", "fps", "fps", "fps"),
    ("Hardware", "power<br>(mW)", "avg_power_mw", "power"),
    ("Hardware", "energy<br>(mJ/frame)", "energy_mj_per_frame", "energy"),
    ("Hardware", "memory<br>(bytes)", "memory_bytes", "memory"),
)


def _fmt_metric(value: float, kind: str) -> str:
    if kind == "percent":
        return f"{_percent(value):.2f}"
    if kind in ("fps", "power"):
        return f"{value:,.1f}"
    if kind == "energy":
        return f"{value:.3g}"
    return f"{value:,.0f}"


def _th(label: str, kind: str, title: str = "", extra: str = "") -> str:
    tip = f' title="{_esc(title)}"' if title else ""
    return f'<th scope="col" data-type="{kind}"{tip}{extra}>{label}</th>'


def _outcome_cell(record: Mapping[str, Any], check: str) -> str:
    outcome, message = _outcome(record, check)
    css = outcome if outcome in _OUTCOME_RANK else "error"
    text = "—" if outcome == MISSING else outcome
    tip = f"{check}: {outcome}" + (f" — {message}" if message else "")
    return (f'<td class="akida-outcome akida-{_esc(css)}" data-sort="{_OUTCOME_RANK.get(css, 9)}"'
            f' title="{_esc(tip)}">{_esc(text)}</td>')


def _number_cell(value: float | None, text: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    if value is None:
        return f'<td{cls} data-sort="">—</td>'
    return f'<td{cls} data-sort="{value!r}">{_esc(text)}</td>'


def _table_row(record: Mapping[str, Any], points: Mapping[str, float], quality_max: float) -> str:
    student = str(record.get("student", ""))
    cells = [f'<th scope="row" data-sort="{_esc(student.lower())}">{_esc(student)}</th>']
    cells += [_outcome_cell(record, check) for check in CHECKS]
    for _, _, key, kind in _METRIC_CELLS:
        value = _metric(record, key)
        cells.append(_number_cell(value, _fmt_metric(value, kind) if value is not None else ""))
    quality = _metric(record, "quality")
    good = quality is not None and quality < quality_max
    cells.append(_number_cell(quality, _fmt_quality(quality) if quality is not None else "",
                              "" if quality is None else ("akida-good" if good else "akida-bad")))
    source = _source_label(record)
    cells.append(f'<td data-sort="{_esc(source)}">{_esc(source)}</td>')
    earned, maximum = score(record, points)
    cells.append(f'<td data-sort="{earned!r}">{_fmt_number(earned)} / {_fmt_number(maximum)}</td>')
    return f'<tr data-student="{_esc(student)}">' + "".join(cells) + "</tr>"


def _group_row(quality_max: float) -> str:
    groups = [("", 1), ("Checks", len(CHECKS)), ("Accuracy (%)", 4), ("Hardware", 4),
              (f"Quality (pass &lt; {_fmt_quality(quality_max)})", 2), ("", 1)]
    return ('<tr class="akida-groups">'
            + "".join(f'<th colspan="{n}">{label}</th>' for label, n in groups) + "</tr>")


def _sort_row(points: Mapping[str, float], quality_max: float) -> str:
    heads = [_th("student", "text")]
    heads += [_th(_CHECK_LABELS[c], "number",
                  f"{c}: {CHECK_TITLES[c]} ({_fmt_number(_points_of(points, c))} points)",
                  f' data-check="{c}"') for c in CHECKS]
    heads += [_th(label, "number", key) for _, label, key, _ in _METRIC_CELLS]
    heads += [_th("quality", "number", f"full credit below {_fmt_quality(quality_max)}"),
              _th("source", "text", "measured on the device, replayed, or none"),
              _th("points", "number")]
    return '<tr class="akida-sort">' + "".join(heads) + "</tr>"


def class_table_html(records: Iterable[Mapping[str, Any]], points: Mapping[str, float], *,
                     quality_max: float = QUALITY_MAX) -> str:
    """A sortable <table id="akida-class-table"> with one row per student (style and script)."""
    records = _by_student(records)
    rows = [_table_row(r, points, quality_max) for r in records]
    if not rows:
        width = 1 + len(CHECKS) + len(_METRIC_CELLS) + 3
        rows = [f'<tr><td colspan="{width}" style="text-align:left">No students graded.</td></tr>']
    caption = (f"{len(records)} students. Quality = (100 {_MINUS} HW accuracy %) {_TIMES} latency"
               f" [s] {_TIMES} average power [W] {_TIMES} memory [B]; full credit below "
               f"{_fmt_quality(quality_max)}. Click a column header to sort.")
    return (f"<style>{_TABLE_STYLE}</style>\n<div class=\"akida-scroll\">"
            f'<table id="akida-class-table"><caption>{_esc(caption)}</caption>'
            f"<thead>{_group_row(quality_max)}{_sort_row(points, quality_max)}</thead>\n<tbody>\n"
            + "\n".join(rows) + f"\n</tbody></table></div>\n<script>{_TABLE_SCRIPT}</script>\n")


# ---------------------------------------------------------------- quality plot (SVG)

_W, _H = 760, 440
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 24, 44, 62
_FONT = 'font-family="system-ui,Helvetica,Arial,sans-serif"'


def _svg_open(title: str) -> str:
    return (f'<svg id="akida-quality-plot" xmlns="http://www.w3.org/2000/svg" width="{_W}" '
            f'height="{_H}" viewBox="0 0 {_W} {_H}" role="img" aria-label="{_esc(title)}" '
            f'style="display:block;max-width:100%;height:auto;background:#fff;margin:8px 0">'
            f"<title>{_esc(title)}</title>"
            f'<rect x="0.5" y="0.5" width="{_W - 1}" height="{_H - 1}" fill="#fff" '
            f'stroke="#d0d7de"/>')


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start",
          fill: str = "#1f2328", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}" {_FONT}{extra}>{_esc(text)}</text>')


def _decade_label(exponent: int) -> str:
    return f"{10.0 ** exponent:g}" if -3 <= exponent <= 4 else f"1e{exponent}"


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 25):
        if span / step <= 8:
            return step
    return 50.0


def _energy_budget(record: Mapping[str, Any], quality_max: float) -> str | None:
    """Energy per frame a student must stay under to pass, from simulator accuracy and memory."""
    acc = _accuracy(record)
    memory = _metric(record, "memory_bytes")
    note = ""
    if memory is None:
        memory, note = _metric(record, "program_memory_bytes"), " program"
    if acc is None or not memory or acc >= 100.0:
        return None
    budget_mj = quality_max / ((100.0 - acc) * memory) * 1000.0
    return (f"{record.get('student', '')}: accuracy {acc:.2f}%, {memory:,.0f} B{note} memory → "
            f"pass needs energy below {budget_mj:.3g} mJ/frame")


def _empty_plot(records: list[Mapping[str, Any]], quality_max: float) -> str:
    title = "Quality vs accuracy: no hardware figures yet"
    parts = [_svg_open(title),
             f'<rect x="40" y="40" width="{_W - 80}" height="{_H - 80}" rx="8" fill="#f6f8fa" '
             f'stroke="#d0d7de" stroke-dasharray="6 4"/>',
             _text(_W / 2, 100, "No hardware figures yet", size=24, anchor="middle",
                   extra=' font-weight="600"'),
             _text(_W / 2, 130, "Quality needs accuracy, fps, power and memory measured on the "
                   "AKD1000 (or replayed).", size=13, anchor="middle", fill="#57606a"),
             _text(_W / 2, 152, f"Quality = (100 {_MINUS} accuracy %) {_TIMES} energy per frame "
                   f"[J] {_TIMES} memory [B]; full credit below {_fmt_quality(quality_max)}.",
                   size=13,
                   anchor="middle", fill="#57606a")]
    budgets = [b for r in records if (b := _energy_budget(r, quality_max))]
    if budgets:
        parts.append(_text(70, 190, "Energy budget per student:", size=13,
                           extra=' font-weight="600"'))
    for i, line in enumerate(budgets[:10]):
        parts.append(_text(70, 212 + 20 * i, line, size=12))
    if len(budgets) > 10:
        parts.append(_text(70, 212 + 20 * 10, f"… and {len(budgets) - 10} more", size=12))
    return "".join(parts) + "</svg>"


def _place_labels(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Greedy label placement: try right, above, below, left of each point to avoid overlaps."""
    placed: list[tuple[float, float, float, float]] = []
    result = []
    for x, y, name in points:
        width, height = 7.0 * len(name) + 2, 14.0
        options = ((x + 8, y + 4, "start"), (x, y - 10, "middle"), (x, y + 18, "middle"),
                   (x - 8, y + 4, "end"))
        chosen = options[0]
        for tx, ty, anchor in options:
            left = tx - (width if anchor == "end" else width / 2 if anchor == "middle" else 0)
            box = (left, ty - height + 3, left + width, ty + 3)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in placed):
                chosen = (tx, ty, anchor)
                placed.append(box)
                break
        result.append(chosen)
    return result


def quality_plot_svg(records: Iterable[Mapping[str, Any]], *,
                     quality_max: float = QUALITY_MAX) -> str:
    """Inline <svg id="akida-quality-plot">: quality (log y) vs accuracy, with the pass line."""
    records = _by_student(records)
    points, missing = [], []
    for record in records:
        quality = _metric(record, "quality")
        acc = _accuracy(record)
        if quality is None or acc is None:
            missing.append(str(record.get("student", "")))
        else:
            points.append((acc, quality, record))
    if not points:
        return _empty_plot(records, quality_max)

    # Axis ranges: whole decades around the qualities and the pass line; accuracy up to 100 %.
    positive = [q for _, q, _ in points if q > 0] or [quality_max]
    lo = math.floor(math.log10(min(*positive, quality_max) / 1.5))
    hi = math.ceil(math.log10(max(*positive, quality_max) * 1.5))
    hi = max(hi, lo + 1)
    x_lo = max(0.0, math.floor(min(a for a, _, _ in points) - 0.5))
    x_hi = 100.0 if x_lo < 100.0 else 101.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(acc: float) -> float:
        return _LEFT + (min(acc, x_hi) - x_lo) / (x_hi - x_lo) * plot_w

    def py(quality: float) -> float:
        log_q = math.log10(max(quality, 10.0 ** lo))
        return _TOP + (hi - log_q) / (hi - lo) * plot_h

    title = (f"Quality vs accuracy for {len(points)} students; full credit below "
             f"{_fmt_quality(quality_max)}")
    parts = [_svg_open(title), _text(_LEFT, 26, title, size=14, extra=' font-weight="600"')]
    pass_y = py(quality_max)
    parts.append(f'<rect x="{_LEFT}" y="{pass_y:.1f}" width="{plot_w}" '
                 f'height="{_TOP + plot_h - pass_y:.1f}" fill="#dafbe1" fill-opacity="0.55"/>')
    decade_step = max(1, math.ceil((hi - lo) / 8))
    for exponent in range(lo, hi + 1, decade_step):
        y = py(10.0 ** exponent)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" '
                     f'stroke="#eaeef2"/>')
        parts.append(_text(_LEFT - 8, y + 4, _decade_label(exponent), size=11, anchor="end"))
    step = _nice_step(x_hi - x_lo)
    tick = math.ceil(x_lo / step) * step
    while tick <= x_hi + 1e-9:
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + plot_h}" '
                     f'stroke="#eaeef2"/>')
        parts.append(_text(x, _TOP + plot_h + 18, f"{tick:g}", size=11, anchor="middle"))
        tick += step
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
                 f'stroke="#57606a"/>')
    parts.append(f'<g id="akida-pass-line"><line class="akida-pass-line" x1="{_LEFT}" '
                 f'y1="{pass_y:.1f}" x2="{_LEFT + plot_w}" y2="{pass_y:.1f}" stroke="#cf222e" '
                 f'stroke-width="2" stroke-dasharray="8 5"/>'
                 + _text(_LEFT + plot_w - 6, pass_y - 6, f"pass line: quality "
                         f"{_fmt_quality(quality_max)}", size=12, anchor="end", fill="#cf222e")
                 + "</g>")
    parts.append(_text(_LEFT + plot_w / 2, _H - 24, "Hardware accuracy (%)", size=13,
                       anchor="middle"))
    mid_y = _TOP + plot_h / 2
    parts.append(_text(18, mid_y, "Quality (log scale, lower is better)", size=13,
                       anchor="middle", extra=f' transform="rotate(-90 18 {mid_y:.1f})"'))

    spots = [(px(acc), py(q), str(r.get("student", ""))) for acc, q, r in points]
    for (acc, quality, record), (x, y, name), (tx, ty, anchor) in zip(
            points, spots, _place_labels(spots), strict=True):
        colour = "#1a7f37" if quality < quality_max else "#cf222e"
        tip = (f"{name}: quality {_fmt_quality(quality)} ({_source_label(record)}), "
               f"accuracy {acc:.2f}%")
        parts.append(f'<g class="akida-point" data-student="{_esc(name)}"><title>{_esc(tip)}'
                     f'</title><circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" '
                     f'stroke="#fff" stroke-width="1.5"/>'
                     + _text(tx, ty, name, size=11, anchor=anchor) + "</g>")
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8
                                          else "")
        parts.append(_text(_LEFT, _H - 6, f"No hardware figures: {shown}", size=11,
                           fill="#57606a"))
    return "".join(parts) + "</svg>"


def standalone_html(records: Iterable[Mapping[str, Any]], points: Mapping[str, float], *,
                    quality_max: float = QUALITY_MAX, title: str = "Akida grades") -> str:
    """A self-contained page with the class table and the quality plot."""
    records = _by_student(records)
    passing = sum(1 for r in records
                  if (q := _metric(r, "quality")) is not None and q < quality_max)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>body{{font:14px/1.4 system-ui,Helvetica,Arial,"
        "sans-serif;color:#1f2328;margin:24px}h1{font-size:22px}</style></head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n<p>{len(records)} students; {passing} below the quality line "
        f"of {_fmt_quality(quality_max)}.</p>\n"
        + class_table_html(records, points, quality_max=quality_max)
        + quality_plot_svg(records, quality_max=quality_max)
        + "\n</body></html>\n"
    )


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_akida_grade",
                                     description="Combine and export Akida grade files.")
    commands = parser.add_subparsers(dest="command", required=True)
    merge_cmd = commands.add_parser(
        "merge", help="merge --akida-json files (e.g. from shards) and write grade files",
        description="Merge grade files; for a student in several, later files win per check.")
    merge_cmd.add_argument("inputs", nargs="+", metavar="FILE.json", help="grade files to merge")
    merge_cmd.add_argument("--json", metavar="OUT", help="write the merged grade file")
    merge_cmd.add_argument("--csv", metavar="OUT", help="write a gradebook CSV")
    merge_cmd.add_argument("--html", metavar="OUT", help="write a standalone HTML report")
    merge_cmd.add_argument("--gradescope", metavar="DIR",
                           help="write DIR/<student>/results.json for Gradescope")
    defaults = ", ".join(f"{k}={_fmt_number(v)}" for k, v in DEFAULT_POINTS.items())
    merge_cmd.add_argument("--points", action="extend", nargs="+", default=[],
                           metavar="CHECK=PTS", help=f"points per check (default: {defaults})")
    merge_cmd.add_argument("--quality-max", type=float, default=QUALITY_MAX,
                           help="full credit below this quality (default: %(default)s)")
    return parser


def _merge_command(args: argparse.Namespace) -> int:
    if not math.isfinite(args.quality_max) or args.quality_max <= 0:
        raise ReportError(f"--quality-max: {args.quality_max} must be a positive number")
    points = parse_points(args.points, where="--points")
    records = with_points(merge([read_json(path) for path in args.inputs]), points)
    if args.json:
        write_json(records, args.json)
    if args.csv:
        write_csv(records, args.csv, points)
    if args.html:
        page = standalone_html(records, points, quality_max=args.quality_max)
        _write_atomic(args.html, page)
    if args.gradescope:
        write_gradescope(records, args.gradescope, points, quality_max=args.quality_max)
    for record in records:
        quality = _metric(record, "quality")
        shown = "no quality" if quality is None else f"quality {_fmt_quality(quality)}"
        print(f"{record['student']}: {_fmt_number(record['points'])} / "
              f"{_fmt_number(record['max_points'])} points, {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_akida_grade merge ...`; errors go to stderr with exit status 2."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message already
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _merge_command(args)
    except ReportError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
