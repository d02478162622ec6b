"""Grade files from student records: points, JSON, merge, CSV, Gradescope, HTML table, plot, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_akida_grade import report
from pytest_akida_grade.report import CHECKS, DEFAULT_POINTS, ReportError

SVG = "{http://www.w3.org/2000/svg}"


def make_record(student: str, outcomes: dict[str, str] | None = None, **metrics: Any) -> dict:
    """A record whose checks all passed unless `outcomes` says otherwise."""
    outcomes = {name: "passed" for name in CHECKS} | (outcomes or {})
    checks = {name: {"outcome": outcome, "message": f"{name} {outcome}"}
              for name, outcome in outcomes.items()}
    return {"student": student, "checks": checks, "metrics": metrics}


def alice() -> dict:
    return make_record("alice", float_accuracy=0.9873, quantized_accuracy=0.9761,
                       akida_accuracy=0.974, hardware_accuracy=0.9761, fps=1677.85,
                       avg_power_mw=895.27, energy_mj_per_frame=0.53, memory_bytes=96304,
                       quality=122.8, source="device")


def bob() -> dict:
    return make_record("bob", {"hardware_quality": "failed"}, float_accuracy=0.98,
                       quantized_accuracy=0.9672, akida_accuracy=0.9672,
                       hardware_accuracy=0.9672, fps=770.0, avg_power_mw=936.8,
                       energy_mj_per_frame=1.22, memory_bytes=247984, quality=989.6,
                       source="replay")


def carol() -> dict:
    skipped = {"quantized_accuracy": "skipped", "akida_accuracy": "skipped",
               "hardware_quality": "skipped", "v1_constraints": "failed"}
    return make_record("carol", skipped, float_accuracy=0.99, source="none")


# ---------------------------------------------------------------- points


def test_default_points_cover_every_check_and_hardware_quality_carries_the_most() -> None:
    assert set(DEFAULT_POINTS) == set(CHECKS)
    assert max(DEFAULT_POINTS, key=DEFAULT_POINTS.__getitem__) == "hardware_quality"


def test_points_lines_override_only_the_checks_they_name() -> None:
    points = report.parse_points(["hardware_quality = 20", "", "# a comment",
                                  "loads: 0.5", "  v1_constraints=3  # inline comment"])
    assert points["hardware_quality"] == 20.0
    assert points["loads"] == 0.5
    assert points["v1_constraints"] == 3.0
    assert points["akida_accuracy"] == DEFAULT_POINTS["akida_accuracy"]


@pytest.mark.parametrize("line", ["lods = 1", "loads = many", "loads = -1", "loads 1",
                                  "loads = nan", "= 3"])
def test_a_bad_points_line_names_where_it_came_from_the_line_and_the_valid_checks(
        line: str) -> None:
    with pytest.raises(ReportError) as caught:
        report.parse_points([line], where="ini akida_points")
    message = str(caught.value)
    assert "ini akida_points" in message
    assert line.split("=")[0].strip() in message
    assert "hardware_quality" in message


# ---------------------------------------------------------------- scoring


def test_a_check_earns_its_points_only_when_it_passed() -> None:
    record = make_record("x", {"loads": "failed", "relu_bounded": "skipped",
                               "v1_constraints": "error"})
    del record["checks"]["hardware_quality"]  # a check that never ran earns nothing either
    earned, maximum = report.score(record, DEFAULT_POINTS)
    lost = sum(DEFAULT_POINTS[c] for c in ("loads", "relu_bounded", "v1_constraints",
                                           "hardware_quality"))
    assert maximum == sum(DEFAULT_POINTS.values())
    assert earned == maximum - lost


def test_with_points_adds_points_to_copies_and_leaves_the_records_alone() -> None:
    records = [bob()]
    scored = report.with_points(records, DEFAULT_POINTS)
    assert scored[0]["points"] == sum(DEFAULT_POINTS.values()) - DEFAULT_POINTS["hardware_quality"]
    assert scored[0]["max_points"] == sum(DEFAULT_POINTS.values())
    assert "points" not in records[0]


# ---------------------------------------------------------------- JSON


def test_json_round_trips_sorted_by_student_into_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "grades.json"
    report.write_json([carol(), alice(), bob()], path)
    assert [r["student"] for r in json.loads(path.read_text())["students"]] == [
        "alice", "bob", "carol"]
    assert report.read_json(path) == [alice(), bob(), carol()]
    assert [p.name for p in path.parent.iterdir()] == ["grades.json"]  # no temporary left


def test_json_writes_non_finite_numbers_as_null(tmp_path: Path) -> None:
    path = tmp_path / "grades.json"
    report.write_json([make_record("x", quality=float("inf"))], path)
    assert json.loads(path.read_text())["students"][0]["metrics"]["quality"] is None


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "not valid JSON"),
    ('{"records": []}', '"students"'),
    ('{"students": [{"checks": {}}]}', '"student"'),
    ('{"students": [{"student": "a", "checks": {"loads": {"outcome": "won"}}}]}', "outcome"),
    ('{"students": [{"student": "a", "checks": {"speed": {"outcome": "passed"}}}]}',
     "unknown check 'speed'"),
    ('{"students": [{"student": "a", "checks": {}, "metrics": []}]}', '"metrics"'),
    ('{"students": [{"student": "a", "checks": {}}, {"student": "a", "checks": {}}]}',
     "appears twice"),
])
def test_reading_a_bad_grade_file_names_the_file_and_the_problem(
        tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "shard.json"
    path.write_text(content)
    with pytest.raises(ReportError) as caught:
        report.read_json(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_reading_a_missing_grade_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such file"):
        report.read_json(tmp_path / "absent.json")


# ---------------------------------------------------------------- merge


def test_merging_shards_unions_students_and_the_later_shard_wins_per_check() -> None:
    early = make_record("alice", {"hardware_quality": "skipped"}, akida_accuracy=0.97,
                        source="none")
    late = make_record("alice", {"loads": "passed"}, quality=50.0, source="device")
    late["checks"] = {"hardware_quality": {"outcome": "passed", "message": "quality 50"}}
    shard_one, shard_two = [early, bob()], [late, carol()]
    merged = report.merge([shard_one, shard_two])
    assert [r["student"] for r in merged] == ["alice", "bob", "carol"]
    first = merged[0]
    assert first["checks"]["hardware_quality"]["outcome"] == "passed"
    assert first["checks"]["loads"]["outcome"] == "passed"  # kept from the early shard
    assert list(first["checks"]) == list(CHECKS)
    assert first["metrics"] == {"akida_accuracy": 0.97, "quality": 50.0, "source": "device"}
    assert early["checks"]["hardware_quality"]["outcome"] == "skipped"  # inputs untouched


def test_a_later_shard_without_figures_does_not_erase_measured_ones() -> None:
    measured = alice()
    unmeasured = make_record("alice", quality=None, source="none")
    merged = report.merge([[measured], [unmeasured]])
    assert merged[0]["metrics"]["quality"] == 122.8
    assert merged[0]["metrics"]["source"] == "device"


# ---------------------------------------------------------------- CSV and Gradescope


def test_the_csv_has_a_row_per_student_with_outcomes_metrics_and_points(tmp_path: Path) -> None:
    path = tmp_path / "out" / "gradebook.csv"
    report.write_csv([bob(), carol(), alice()], path, DEFAULT_POINTS)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == report.CSV_COLUMNS
    assert [row["student"] for row in rows] == ["alice", "bob", "carol"]
    assert rows[1]["check_hardware_quality"] == "failed"
    assert rows[2]["check_akida_accuracy"] == "skipped"
    assert float(rows[0]["quality"]) == 122.8
    assert rows[0]["memory_bytes"] == "96304"
    assert rows[0]["source"] == "device"
    assert rows[2]["quality"] == ""
    assert rows[0]["points"] == rows[0]["max_points"] == "20"
    assert rows[2]["points"] == "4"


def test_gradescope_gets_a_results_file_per_student_whose_score_sums_its_tests(
        tmp_path: Path) -> None:
    report.write_gradescope([alice(), carol()], tmp_path / "gs", DEFAULT_POINTS)
    assert sorted(p.name for p in (tmp_path / "gs").iterdir()) == ["alice", "carol"]
    for student in ("alice", "carol"):
        result = json.loads((tmp_path / "gs" / student / "results.json").read_text())
        assert set(result) == {"score", "output", "tests"}
        assert result["score"] == sum(t["score"] for t in result["tests"])
        assert sum(t["max_score"] for t in result["tests"]) == sum(DEFAULT_POINTS.values())
        assert {t["status"] for t in result["tests"]} <= {"passed", "failed"}
        assert all({"name", "score", "max_score", "status", "output"} <= set(t)
                   for t in result["tests"])
    carol_result = json.loads((tmp_path / "gs" / "carol" / "results.json").read_text())
    skipped = carol_result["tests"][CHECKS.index("akida_accuracy")]
    assert (skipped["status"], skipped["score"]) == ("failed", 0.0)
    assert "counts as failed" in skipped["output"]
    alice_result = json.loads((tmp_path / "gs" / "alice" / "results.json").read_text())
    assert "Quality 123 (measured)" in alice_result["output"]
    assert "1677.8 fps" in alice_result["output"]


def test_gradescope_refuses_a_student_name_that_is_not_a_directory_name(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="directory name"):
        report.write_gradescope([make_record("../evil")], tmp_path, DEFAULT_POINTS)


# ---------------------------------------------------------------- HTML table and plot


def test_the_class_table_has_a_coloured_row_per_student_with_outcomes_and_points() -> None:
    page = report.class_table_html([carol(), alice(), bob()], DEFAULT_POINTS)
    assert '<table id="akida-class-table">' in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("<tr ")[1:]
    assert [row.split('"')[1] for row in rows] == ["alice", "bob", "carol"]
    assert rows[1].count("akida-passed") == 7
    assert 'class="akida-outcome akida-failed"' in rows[1]
    assert rows[2].count("akida-skipped") == 3
    assert ">990</td>" in rows[1] and "akida-bad" in rows[1]
    assert ">123</td>" in rows[0] and ">measured</td>" in rows[0]
    assert ">replayed</td>" in rows[1] and ">none</td>" in rows[2]
    assert ">4 / 20</td>" in rows[2]
    assert "addEventListener" in page  # sortable by clicking headers
    assert 'class="sortable"' not in page  # pytest-html would bind its own sorting to it


def test_student_names_and_messages_are_html_escaped() -> None:
    record = make_record("<b>eve</b>", {"loads": "failed"}, quality=1.0, hardware_accuracy=0.99)
    record["checks"]["loads"]["message"] = '<script>alert("x")</script>'
    page = report.standalone_html([record], DEFAULT_POINTS, title="<i>t</i>")
    assert "<b>eve</b>" not in page and "&lt;b&gt;eve&lt;/b&gt;" in page
    assert "<script>alert" not in page
    assert "<i>t</i>" not in page


def points_in(svg: str) -> dict[str, tuple[float, float]]:
    root = ET.fromstring(svg)
    circles = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "akida-point":
            circle = group.find(f"{SVG}circle")
            assert circle is not None
            circles[group.get("data-student", "")] = (float(circle.get("cx", "nan")),
                                                      float(circle.get("cy", "nan")))
    return circles


def test_the_plot_has_a_labelled_point_per_measured_student_around_the_pass_line() -> None:
    svg = report.quality_plot_svg([alice(), bob(), carol()], quality_max=200.0)
    root = ET.fromstring(svg)  # well-formed inline SVG
    assert root.get("id") == "akida-quality-plot"
    spots = points_in(svg)
    assert set(spots) == {"alice", "bob"}
    group = next(e for e in root.iter(f"{SVG}g") if e.get("id") == "akida-pass-line")
    pass_line = group.find(f"{SVG}line")
    assert pass_line is not None
    line_y = float(pass_line.get("y1", "nan"))
    assert line_y == float(pass_line.get("y2", "nan"))  # horizontal
    assert spots["alice"][1] > line_y > spots["bob"][1]  # svg y grows downwards
    assert spots["alice"][0] > spots["bob"][0]  # alice is the more accurate
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "Hardware accuracy (%)" in texts and "Quality (log scale" in texts
    assert "pass line: quality 200" in texts
    assert "alice" in texts and "bob" in texts
    assert "No hardware figures: carol" in texts


def test_the_plot_without_any_quality_still_draws_a_panel_with_energy_budgets() -> None:
    waiting = make_record("dan", akida_accuracy=0.975, program_memory_bytes=80000)
    svg = report.quality_plot_svg([waiting, carol()])
    root = ET.fromstring(svg)
    assert root.get("id") == "akida-quality-plot"
    assert float(root.get("width", "0")) > 0 and float(root.get("height", "0")) > 0
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "No hardware figures yet" in texts
    assert "dan: accuracy 97.50%" in texts  # 200 / (2.5 x 80000) J = 1 mJ
    assert "below 1 mJ/frame" in texts
    assert points_in(svg) == {}


def test_the_standalone_page_holds_the_table_and_the_plot() -> None:
    page = report.standalone_html([alice(), bob()], DEFAULT_POINTS, title="ECE6790 grades")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>ECE6790 grades</title>" in page
    assert 'id="akida-class-table"' in page and 'id="akida-quality-plot"' in page


# ---------------------------------------------------------------- command line


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_akida_grade", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_merge_command_writes_csv_html_json_and_gradescope_files(tmp_path: Path) -> None:
    report.write_json([alice(), carol()], tmp_path / "a.json")
    report.write_json([bob()], tmp_path / "b.json")
    out = tmp_path / "out"
    result = run_cli("merge", tmp_path / "a.json", tmp_path / "b.json",
                     "--csv", out / "g.csv", "--html", out / "r.html", "--json", out / "m.json",
                     "--gradescope", out / "gs", "--points", "hardware_quality=20", "loads: 2",
                     "--quality-max", "500")
    assert result.returncode == 0, result.stderr
    assert "alice: 31 / 31 points, quality 123" in result.stdout
    with (out / "g.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["student"], r["points"]) for r in rows] == [("alice", "31"), ("bob", "11"),
                                                           ("carol", "5")]
    page = (out / "r.html").read_text()
    assert page.count('<tr data-student="') == 3
    assert "pass line: quality 500" in page
    assert [r["student"] for r in report.read_json(out / "m.json")] == ["alice", "bob", "carol"]
    assert json.loads((out / "gs" / "bob" / "results.json").read_text())["score"] == 11


def test_the_merge_command_rejects_a_bad_grade_file_with_exit_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"students": 3}')
    result = run_cli("merge", bad, "--csv", tmp_path / "g.csv")
    assert result.returncode == 2
    assert "broken.json" in result.stderr and '"students"' in result.stderr
    assert not (tmp_path / "g.csv").exists()


def test_the_merge_command_rejects_unknown_points_with_exit_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report.write_json([alice()], tmp_path / "a.json")
    assert report.main(["merge", str(tmp_path / "a.json"), "--points", "speed=3"]) == 2
    assert "--points: unknown check 'speed'" in capsys.readouterr().err


def test_the_command_line_without_a_command_exits_2() -> None:
    assert report.main([]) == 2


def test_a_student_who_earned_nothing_gets_zero_points_in_every_file(tmp_path: Path) -> None:
    broken = make_record("dave", dict.fromkeys(CHECKS, "failed"))
    report.write_csv([broken], tmp_path / "g.csv", report.DEFAULT_POINTS)
    row = next(csv.DictReader((tmp_path / "g.csv").open()))
    assert row["points"] == "0"
    report.write_gradescope([broken], tmp_path / "gs", report.DEFAULT_POINTS)
    assert json.loads((tmp_path / "gs" / "dave" / "results.json").read_text())["score"] == 0
    assert "dave" in report.class_table_html([broken], report.DEFAULT_POINTS)
