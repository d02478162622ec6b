"""The reports in a real browser: headless Chromium must show the class table and the plot.

Skips when the `playwright` package or /usr/bin/chromium (Debian's package; `make browser`) is
missing. Playwright drives the system Chromium; it never downloads browsers of its own. The
pytester fixture comes from the root conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from board_double import PUBLISHED_FAIL, PUBLISHED_PASS
from made_up import add_student, student_source

from pytest_akida_grade.catalog import DEFAULT_POINTS, NAMES
from pytest_akida_grade.report import plot, table

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install playwright)")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSED_GREEN = "rgb(218, 251, 225)"  # background of a passed outcome (#dafbe1)


def record(student: str, outcomes: dict[str, str], **metrics: float | str) -> dict:
    checks = {name: {"outcome": outcomes.get(name, "passed"), "message": ""}
              for name in NAMES}
    return {"student": student, "checks": checks, "metrics": metrics}


RECORDS = [
    record("alice", {}, float_accuracy=0.9873, quantized_accuracy=0.9761, akida_accuracy=0.974,
           hardware_accuracy=0.9761, fps=1677.85, avg_power_mw=895.27, energy_mj_per_frame=0.53,
           memory_bytes=96304, quality=122.8, source="device"),
    record("bob", {"hardware_quality": "failed"}, float_accuracy=0.98, quantized_accuracy=0.9672,
           akida_accuracy=0.9672, hardware_accuracy=0.9672, fps=770.0, avg_power_mw=936.8,
           energy_mj_per_frame=1.22, memory_bytes=247984, quality=989.6, source="replay"),
    record("carol", {"v1_constraints": "failed", "quantized_accuracy": "skipped",
                     "akida_accuracy": "skipped", "hardware_quality": "skipped"},
           float_accuracy=0.99, source="none"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium, or `make browser`)")
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                  args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"{CHROMIUM} does not start: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], "the page raised JavaScript errors"


def assert_shown(element: Locator) -> None:
    """Displayed with a real size, and inside the viewport once scrolled to."""
    element.scroll_into_view_if_needed()
    assert element.is_visible()
    box = element.bounding_box()
    assert box is not None and box["width"] > 50 and box["height"] > 20, box
    sync_api.expect(element).to_be_in_viewport()


def student_order(page: Page) -> list[str]:
    return page.locator("#akida-class-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.student)")


def sort_by_points(page: Page) -> None:
    page.locator("#akida-class-table thead tr.akida-sort th", has_text="points").click()


def check_class_table_and_plot(page: Page) -> None:
    table = page.locator("#akida-class-table")
    assert_shown(table)
    for name in ("alice", "bob", "carol"):
        assert_shown(table.locator(f'tbody tr[data-student="{name}"]'))
    outcome = table.locator('tr[data-student="alice"] td.akida-outcome').last
    assert outcome.inner_text() == "passed"
    assert outcome.evaluate("cell => getComputedStyle(cell).backgroundColor") == PASSED_GREEN

    plot = page.locator("#akida-quality-plot")
    assert_shown(plot)
    assert plot.locator("#akida-pass-line").is_visible()
    points = plot.locator(".akida-point")
    assert points.count() == 2
    for index in range(2):
        assert points.nth(index).is_visible()

    sort_by_points(page)
    assert student_order(page) == ["carol", "bob", "alice"]
    sort_by_points(page)
    assert student_order(page) == ["alice", "bob", "carol"]


def test_the_standalone_report_shows_the_class_table_and_the_plot(
        page: Page, tmp_path: Path) -> None:
    path = tmp_path / "grades.html"
    page_html = table.standalone_html(RECORDS, DEFAULT_POINTS,
                                      plot_svg=plot.quality_plot_svg(RECORDS))
    path.write_text(page_html, encoding="utf-8")
    page.goto(path.as_uri())
    check_class_table_and_plot(page)


def test_the_plot_without_hardware_figures_shows_a_visible_panel(
        page: Page, tmp_path: Path) -> None:
    path = tmp_path / "grades.html"
    page_html = table.standalone_html(RECORDS[2:], DEFAULT_POINTS,
                                      plot_svg=plot.quality_plot_svg(RECORDS[2:]))
    path.write_text(page_html, encoding="utf-8")
    page.goto(path.as_uri())
    assert_shown(page.locator("#akida-quality-plot"))
    assert_shown(page.get_by_text("No hardware figures yet", exact=True))


def test_the_plot_without_a_board_shows_accuracy_against_the_static_memory(
        page: Page, tmp_path: Path) -> None:
    records = [record("dan", {}, akida_accuracy=0.975, program_memory_bytes=80000, source="none"),
               record("eve", {}, akida_accuracy=0.962, program_memory_bytes=150000,
                      source="none"), RECORDS[2]]
    path = tmp_path / "grades.html"
    path.write_text(table.standalone_html(records, DEFAULT_POINTS,
                                          plot_svg=plot.quality_plot_svg(records)),
                    encoding="utf-8")
    page.goto(path.as_uri())
    plot_box = page.locator("#akida-quality-plot")
    assert_shown(plot_box)
    frame = plot_box.bounding_box()
    for name in ("dan", "eve"):
        dot = plot_box.locator(f'.akida-point[data-student="{name}"] circle')
        assert dot.is_visible()
        box = dot.bounding_box()
        assert frame is not None and box is not None and box["width"] > 5
        assert frame["x"] < box["x"] < frame["x"] + frame["width"]
        assert frame["y"] < box["y"] < frame["y"] + frame["height"]
    for text in ("No hardware figures yet", "Program memory (bytes, static estimate, log scale)"):
        assert page.get_by_text(text, exact=True).is_visible(), text


REPLAY = {"alice": PUBLISHED_PASS, "bob": PUBLISHED_FAIL}


def test_the_graded_class_report_shows_the_class_table_and_the_plot(
        page: Page, grading: pytest.Pytester) -> None:
    """The plugin's own pytest-html integration, on a real (replayed) grading run."""
    pytest.importorskip("pytest_html", reason="pytest-html is not installed")
    for name in ("alice", "bob", "carol"):
        add_student(grading, name, student_source())
    (grading.path / "replay.json").write_text(json.dumps(REPLAY))
    result = grading.runpytest_subprocess(
        "--html=report.html", "--self-contained-html", "--akida-replay=replay.json",
        "-k", "loads or hardware_quality")
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    page.goto((grading.path / "report.html").as_uri())
    assert_shown(page.locator("#results-table"))  # pytest-html's own table still renders
    table = page.locator("#akida-class-table")
    assert_shown(table)
    for name in ("alice", "bob", "carol"):
        assert_shown(table.locator(f'tbody tr[data-student="{name}"]'))
    plot = page.locator("#akida-quality-plot")
    assert_shown(plot)
    assert plot.locator(".akida-point").count() == 2  # carol has no hardware figures
    assert plot.locator("#akida-pass-line").is_visible()
    student_cells = page.locator("#results-table td.col-student")
    assert sorted(set(student_cells.all_inner_texts())) == ["alice", "bob", "carol"]
    environment = page.locator("#environment")  # pytest-html's table, with the toolchain
    assert_shown(environment)
    text = environment.inner_text()
    for name in ("Akida sandbox", "tensorflow", "tf_keras", "quantizeml", "cnn2snn", "akida"):
        assert name in text, name
    similar = page.locator("#akida-similar")  # three copies of one module
    assert_shown(similar)
    assert "alice & bob" in similar.inner_text() and "bob & carol" in similar.inner_text()
