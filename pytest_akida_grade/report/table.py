"""The HTML class table (a sortable row per student) and the standalone page that holds it.

Reads only student records and the catalog. Its style and script are resources/table.css and
resources/table.js, inlined so that every page stays self-contained.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from html import escape
from importlib import resources

from pytest_akida_grade import catalog, late, similarity
from pytest_akida_grade.catalog import MISSING
from pytest_akida_grade.quality import PERCENT, QUALITY_MAX

_PACKAGE = "pytest_akida_grade.report"  # holds resources/
_MINUS, _TIMES = "\u2212", "\u00d7"
_SOURCE_LABELS = {"device": "measured", "replay": "replayed", "none": "none"}
_OUTCOME_RANK = {"passed": 0, "failed": 1, "error": 2, "skipped": 3, MISSING: 4}

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


@functools.cache
def resource(name: str) -> str:
    """The text of resources/<name> (table.css, table.js)."""
    return (resources.files(_PACKAGE) / "resources" / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- a record's figures


def _metric(record: Mapping[str, object], key: str) -> float | None:
    value = catalog.part(record, "metrics").get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt_number(value: float) -> str:
    value = round(float(value), 6)  # an int sum (nothing earned) has no is_integer() on 3.11
    return str(int(value)) if value.is_integer() else repr(value)


def _fmt_quality(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _fmt_metric(value: float, kind: str) -> str:
    if kind == "percent":  # records hold fractions; above 1 it is a percentage already
        return f"{value * PERCENT if value <= 1.0 else value:.2f}"
    if kind in ("fps", "power"):
        return f"{value:,.1f}"
    if kind == "energy":
        return f"{value:.3g}"
    return f"{value:,.0f}"


def _source_label(record: Mapping[str, object]) -> str:
    source = catalog.part(record, "metrics").get("source")
    return _SOURCE_LABELS.get(str(source), str(source)) if source else "none"


def _check_columns(records: Iterable[Mapping[str, object]]) -> list[str]:
    """The built-in checks, then every course check found in a record, by name."""
    found = {name for record in records for name in catalog.record_checks(record)}
    return [*catalog.NAMES, *sorted(found - set(catalog.NAMES))]


# ---------------------------------------------------------------- cells and rows


def _th(label: str, kind: str, title: str = "", extra: str = "") -> str:
    tip = f' title="{escape(title)}"' if title else ""
    return f'<th scope="col" data-type="{kind}"{tip}{extra}>{label}</th>'


def _outcome_cell(record: Mapping[str, object], check: str) -> str:
    outcome, message = catalog.outcome_of(record, check)
    css = outcome if outcome in _OUTCOME_RANK else "error"
    text = "—" if outcome == MISSING else outcome
    tip = f"{check}: {outcome}" + (f" — {message}" if message else "")
    return (f'<td class="akida-outcome akida-{escape(css)}" data-sort="{_OUTCOME_RANK.get(css, 9)}"'
            f' title="{escape(tip)}">{escape(text)}</td>')


def _number_cell(value: float | None, text: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    if value is None:
        return f'<td{cls} data-sort="">—</td>'
    return f'<td{cls} data-sort="{value!r}">{escape(text)}</td>'


def _figure_cells(record: Mapping[str, object], quality_max: float) -> list[str]:
    cells = []
    for _, _, key, kind in _METRIC_CELLS:
        value = _metric(record, key)
        cells.append(_number_cell(value, _fmt_metric(value, kind) if value is not None else ""))
    quality = _metric(record, "quality")
    good = quality is not None and quality < quality_max
    cells.append(_number_cell(quality, _fmt_quality(quality) if quality is not None else "",
                              "" if quality is None else ("akida-good" if good else "akida-bad")))
    source = _source_label(record)
    cells.append(f'<td data-sort="{escape(source)}">{escape(source)}</td>')
    return cells


def _table_row(record: Mapping[str, object], checks: list[str], points: Mapping[str, float],
               quality_max: float) -> str:
    student = str(record.get("student", ""))
    cells = [f'<th scope="row" data-sort="{escape(student.lower())}">{escape(student)}'
             f'{_file_note(record)}</th>']
    cells += [_outcome_cell(record, check) for check in checks]
    cells += _figure_cells(record, quality_max)
    cells.append(_points_cell(record, points))
    return f'<tr data-student="{escape(student)}">' + "".join(cells) + "</tr>"


def _points_cell(record: Mapping[str, object], points: Mapping[str, float]) -> str:
    """Earned / max; after a late penalty, the points before it and the policy applied."""
    earned, maximum = catalog.score(record, points)
    penalty = late.describe(record)
    note = (f'<br><small class="akida-late" title="{escape(penalty)}">'
            f"{_fmt_number(catalog.score_before_late(record, points)[0])} before the late "
            f"penalty ({escape(penalty)})</small>") if penalty else ""
    return f'<td data-sort="{earned!r}">{_fmt_number(earned)} / {_fmt_number(maximum)}{note}</td>'


def _file_note(record: Mapping[str, object]) -> str:
    """The graded file when its name is not the student's, and a late flag from the roster."""
    file, student = record.get("file"), str(record.get("student", ""))
    note = f'<br><small class="akida-file">{escape(str(file))}</small>' \
        if file and file != f"{student}.py" else ""
    return note + (' <small class="akida-late">late</small>' if record.get("late") else "")


def not_graded_html(items: Iterable[Mapping[str, str]]) -> str:
    """The files handed in but not graded, each with the reason and the fix ("" when none)."""
    rows = "".join(f"<tr><td>{escape(i['file'])}</td><td>{escape(i['reason'])}</td>"
                   f"<td>{escape(i['fix'])}</td></tr>" for i in items)
    if not rows:
        return ""
    return ('<table id="akida-not-graded"><caption>Not graded</caption><thead><tr>'
            '<th scope="col">file</th><th scope="col">why</th><th scope="col">fix</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>\n")


def _group_row(checks: list[str], quality_max: float) -> str:
    groups = [("", 1), ("Checks", len(checks)), ("Accuracy (%)", 4), ("Hardware", 4),
              (f"Quality (pass &lt; {_fmt_quality(quality_max)})", 2), ("", 1)]
    return ('<tr class="akida-groups">'
            + "".join(f'<th colspan="{n}">{label}</th>' for label, n in groups) + "</tr>")


def _check_head(name: str, points: Mapping[str, float]) -> str:
    # Built-in labels are HTML (a <br>); a course check's label is its name, escaped.
    check = catalog.BY_NAME.get(name)
    label = check.label if check else escape(name)
    title = (check or catalog.course_check(name)).title
    return _th(label, "number",
               f"{name}: {title} ({_fmt_number(catalog.points_of(points, name))} points)",
               f' data-check="{escape(name)}"')


def _sort_row(checks: list[str], points: Mapping[str, float], quality_max: float) -> str:
    heads = [_th("student", "text")]
    heads += [_check_head(name, points) for name in checks]
    heads += [_th(label, "number", key) for _, label, key, _ in _METRIC_CELLS]
    heads += [_th("quality", "number", f"full credit below {_fmt_quality(quality_max)}"),
              _th("source", "text", "measured on the device, replayed, or none"),
              _th("points", "number")]
    return '<tr class="akida-sort">' + "".join(heads) + "</tr>"


def _by_student(records: Iterable[Mapping[str, object]]) -> list[Mapping[str, object]]:
    return sorted(records, key=lambda r: str(r.get("student", "")))


# ---------------------------------------------------------------- the table and the page


def class_table_html(records: Iterable[Mapping[str, object]], points: Mapping[str, float], *,
                     quality_max: float = QUALITY_MAX) -> str:
    """A sortable <table id="akida-class-table"> with one row per student (style and script)."""
    records = _by_student(records)
    checks = _check_columns(records)
    rows = [_table_row(r, checks, points, quality_max) for r in records]
    if not rows:
        width = 1 + len(checks) + len(_METRIC_CELLS) + 3
        rows = [f'<tr><td colspan="{width}" style="text-align:left">No students graded.</td></tr>']
    caption = (f"{len(records)} students. Quality = (100 {_MINUS} HW accuracy %) {_TIMES} latency"
               f" [s] {_TIMES} average power [W] {_TIMES} memory [B]; full credit below "
               f"{_fmt_quality(quality_max)}. Click a column header to sort.")
    # table.js sorts rows by each cell's data-sort; blanks stay last in either direction.
    return (f"<style>\n{resource('table.css')}</style>\n<div class=\"akida-scroll\">"
            f'<table id="akida-class-table"><caption>{escape(caption)}</caption>'
            f"<thead>{_group_row(checks, quality_max)}{_sort_row(checks, points, quality_max)}"
            "</thead>\n<tbody>\n" + "\n".join(rows)
            + f"\n</tbody></table></div>\n<script>\n{resource('table.js')}</script>\n")


def similar_html(pairs: Iterable[similarity.Pair]) -> str:
    """The class's similar submissions (similarity.py), for the instructor: never a student's."""
    pairs = list(pairs)
    rows = "".join(f"<tr><td>{escape(' & '.join(str(s) for s in pair['students']))}</td>"
                   f"<td>{escape(str(pair['why']))}</td></tr>" for pair in pairs)
    body = (f"<table><thead><tr><th>Students</th><th>Why they look alike</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>") if pairs else \
        "<p>No two submissions share their source, weights file or trained weights.</p>"
    return ('<section id="akida-similar"><h2>Similar submissions</h2>'
            "<p>Pairs to look at, not verdicts: same source (comments and spacing aside), "
            "identical weights files, or the same architecture with near-identical weights "
            "(filters in any order).</p>" + body + "</section>\n")


def standalone_html(records: Iterable[Mapping[str, object]], points: Mapping[str, float], *,
                    plot_svg: str, quality_max: float = QUALITY_MAX,
                    title: str = "Akida grades",
                    not_graded: Iterable[Mapping[str, str]] = (),
                    similar: Iterable[similarity.Pair] | None = None) -> str:
    """A self-contained page with the class table and `plot_svg` (plot.quality_plot_svg)."""
    records = _by_student(records)
    passing = sum(1 for r in records
                  if (q := _metric(r, "quality")) is not None and q < quality_max)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>body{{font:14px/1.4 system-ui,Helvetica,Arial,"
        "sans-serif;color:#1f2328;margin:24px}h1{font-size:22px}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{len(records)} students; {passing} below the quality line "
        f"of {_fmt_quality(quality_max)}.</p>\n"
        + class_table_html(records, points, quality_max=quality_max)
        + not_graded_html(not_graded)
        + plot_svg
        + ("" if similar is None else similar_html(similar))
        + "\n</body></html>\n"
    )
