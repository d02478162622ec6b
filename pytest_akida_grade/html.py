"""pytest-html integration, registered only when pytest-html is active.

Adds sortable student and check columns to the results table and, above it, the class table and
the quality plot (both inline: the self-contained report needs no other file).
"""

from __future__ import annotations

import html
from typing import Any

import pytest

COLUMNS = (("student", "Student"), ("check", "Check"))


class HtmlIntegration:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        for offset, (key, label) in enumerate(COLUMNS):
            cells.insert(1 + offset, f'<th class="sortable" data-column-type="{key}">{label}</th>')

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        properties = dict(report.user_properties)
        values = (properties.get("akida_student", ""), properties.get("akida_check", ""))
        for offset, ((key, _), value) in enumerate(zip(COLUMNS, values, strict=True)):
            cells.insert(1 + offset, f'<td class="col-{key}">{html.escape(str(value))}</td>')

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: Any) -> None:
        from pytest_akida_grade import plugin, report

        records = self.config.stash[plugin.RECORDER].sorted_records()
        if not records:
            return
        settings = self.config.stash[plugin.STATE].settings
        points = plugin.points_of(settings)
        prefix.append(report.class_table_html(report.with_points(records, points), points,
                                              quality_max=settings.quality_max))
        prefix.append(report.quality_plot_svg(records, quality_max=settings.quality_max))
