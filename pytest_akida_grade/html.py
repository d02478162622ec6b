"""pytest-html integration, registered only when pytest-html is active.

Adds sortable student and check columns to the results table, shows a check's message as plain
text in its log cell and, above the table, the class table and the quality plot (both inline: the
self-contained report needs no other file).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_akida_grade import catalog, similarity
from pytest_akida_grade.properties import Tagged
from pytest_akida_grade.report import plot, table

COLUMNS = (("student", "Student"), ("check", "Check"))
NO_LOG = "No log output captured."  # pytest-html's log cell when there is nothing to show


def log_message(report: pytest.TestReport) -> str:
    """A check's message as text: its verdict, else the skip reason, else the failure."""
    tagged = Tagged.of(report.user_properties)
    if report.when == "call" and tagged is not None and tagged.message:
        return tagged.message
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        return str(longrepr[-1]).removeprefix("Skipped: ")
    return str(longrepr or "")


class HtmlIntegration:
    """pytest-html hooks; `records()` gives the student records (without points) at the end."""

    def __init__(self, records: Callable[[], list[dict[str, Any]]],
                 points: Mapping[str, float], quality_max: float,
                 not_graded: Callable[[], list[dict[str, str]]] = list) -> None:
        self.records = records
        self.not_graded = not_graded
        self.points = points
        self.quality_max = quality_max

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        for offset, (key, label) in enumerate(COLUMNS):
            cells.insert(1 + offset, f'<th class="sortable" data-column-type="{key}">{label}</th>')

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        tagged = Tagged.of(report.user_properties)
        values = (tagged.student, tagged.check) if tagged else ("", "")
        for offset, ((key, _), value) in enumerate(zip(COLUMNS, values, strict=True)):
            cells.insert(1 + offset, f'<td class="col-{key}">{html.escape(str(value))}</td>')

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        """The log cell of a check: its message as text (never a tuple), then captured output."""
        if Tagged.of(report.user_properties) is None:
            return
        message = log_message(report)
        if not message:
            return
        # pytest-html puts the escaped longrepr first (when there is one), then the captured
        # sections, or only NO_LOG when there is neither.
        captured = data[1:] if report.longrepr else [line for line in data if line != NO_LOG]
        data[:] = [html.escape(message) + "\n", *captured]

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: Any) -> None:
        records, left_out = self.records(), self.not_graded()
        if left_out:
            prefix.append(table.not_graded_html(left_out))
        if not records:
            return
        prefix.append(table.class_table_html(catalog.with_points(records, self.points),
                                             self.points, quality_max=self.quality_max))
        prefix.append(plot.quality_plot_svg(records, quality_max=self.quality_max))
        prefix.append(table.similar_html(similarity.similar_pairs(records)))
