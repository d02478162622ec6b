"""The late policy (akida_late_penalty): read as an instructor writes it, applied where the roster
says late (Canvas's flag; Gradescope's and Moodle's times against a due date), and shown with the
points before and after in every output: JSON, CSV, Gradescope, Canvas, Moodle, class table.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_canvas import EXPORT

from pytest_akida_grade import late, roster, settings
from pytest_akida_grade.report import cli, files

POLICY = "10% per day, at most 50%"
UTC = timezone.utc


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize(("text", "days", "fraction"), [
    ("20%", 3.5, 0.2), ("0.2", None, 0.2), ("10% per day", 0.01, 0.1), ("10% per day", 1.0, 0.1),
    ("10% per day", 1.01, 0.2), ("10% per day", 30, 1.0), (POLICY, 2.5, 0.3), (POLICY, 9, 0.5),
    (POLICY, None, 0.1),  # a flag without a time (Canvas): one day
])
def test_a_policy_takes_its_fraction_per_started_day_up_to_its_cap(
        text: str, days: float | None, fraction: float) -> None:
    policy = late.parse_policy(text)
    assert policy is not None
    assert policy.applied(days)["fraction"] == pytest.approx(fraction)


def test_none_is_no_penalty_and_a_bad_policy_says_the_forms_it_takes() -> None:
    assert late.parse_policy("none") is None and late.parse_policy(" ") is None
    for bad in ("lots", "150%", "10% per week", "10% per day, at most"):
        with pytest.raises(ValueError, match="10% per day, at most 50%"):
            late.parse_policy(bad)


def test_times_read_as_the_lms_and_instructors_write_them() -> None:
    assert late.parse_time("2026-04-26 17:34:00.861687000 Z") == \
        datetime(2026, 4, 26, 17, 34, 0, 861687, tzinfo=UTC)
    assert late.parse_time("2026-04-26T19:34+02:00") == datetime(2026, 4, 26, 17, 34, tzinfo=UTC)
    due = late.parse_due("2026-04-26")  # a date alone: its last second, here
    assert (due.hour, due.minute, due.second) == (23, 59, 59) and due.tzinfo is not None
    assert late.days_late(due + timedelta(hours=12), due) == 0.5
    assert late.days_late(due - timedelta(hours=1), due) == 0
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM"):
        late.parse_time("next friday")


# ---------------------------------------------------------------- where the roster says late


def _zip(path: Path, members: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, (text, when) in members.items():
            archive.writestr(zipfile.ZipInfo(name, when), text)  # type: ignore[arg-type]
    return path


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "roster.csv").open(newline="", encoding="utf-8") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_moodle_and_gradescope_times_after_the_due_date_are_late_with_their_days(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = "def build_model():\n    return None\n"
    moodle = _zip(tmp_path / "moodle.zip", {
        "Jane Doe_1_assignsubmission_file_/model.py": (model, (2026, 4, 28, 12, 0, 0)),
        "Ann Lee_2_assignsubmission_file_/model.py": (model, (2026, 4, 26, 9, 0, 0))})
    status = cli.main(["import-submissions", str(moodle), "--from", "moodle", "--out",
                       str(tmp_path / "m"), "--due", "2026-04-26 23:59"])
    assert status == 0
    rows = _rows(tmp_path / "m")
    assert (rows["Jane_Doe"]["late"], rows["Ann_Lee"]["late"]) == ("true", "false")
    assert float(rows["Jane_Doe"]["days_late"]) == pytest.approx(1 + 12 / 24 + 1 / 1440, 1e-3)
    assert rows["Jane_Doe"]["submitted"].startswith("2026-04-28T12:00:00")
    assert "Jane_Doe (Jane Doe) (late: 1.50 days): model.py" in capsys.readouterr().out
    metadata = ("submission_7:\n  :submitters:\n  - :name: Bo Day\n    :email: bo@x.edu\n"
                "  :created_at: 2026-04-27 11:59:00.000000000 Z\n")
    gradescope = _zip(tmp_path / "gs.zip", {
        "submission_metadata.yml": (metadata, (2026, 5, 1, 0, 0, 0)),
        "submission_7/model.py": (model, (2026, 5, 1, 0, 0, 0))})
    assert cli.main(["import-submissions", str(gradescope), "--from", "gradescope", "--out",
                     str(tmp_path / "g"), "--due", "2026-04-26T23:59Z"]) == 0
    bo = _rows(tmp_path / "g")["Bo_Day"]
    assert (bo["late"], bo["submitted"]) == ("true", "2026-04-27T11:59:00+00:00")
    assert float(bo["days_late"]) == pytest.approx(0.5)


def test_the_roster_decides_late_against_akida_due_and_keeps_canvas_flags() -> None:
    text = ("student,name,late,files,module,weights,submitted,days_late\n"
            "ann,Ann,false,m.py,ann.py,,2026-04-27T12:00:00+00:00,\n"
            "bo,Bo,true,m.py,bo.py,,,\n")
    entries = roster.parse(text, "roster.csv")
    records = [{"student": s, "file": f"{s}.py", "checks": {}, "metrics": {}}
               for s in ("ann", "bo")]
    due = late.parse_due("2026-04-27T00:00Z")
    ann, bo = roster.annotate(records, entries, due)
    assert (ann["late"], ann["days_late"]) == (True, 0.5)
    assert bo["late"] is True and "days_late" not in bo  # Canvas's flag: no time
    on_time, _ = roster.annotate(records, entries, None)
    assert on_time["late"] is False  # as the import said, without a due date
    with pytest.raises(roster.RosterError, match="line 2"):
        roster.parse(text.replace("2026-04-27T12:00:00+00:00", "soon"), "roster.csv")


# ---------------------------------------------------------------- every output


def _passed(*names: str) -> dict[str, dict[str, str]]:
    checks = ("loads", "layer_whitelist", "relu_bounded", "quantization_scheme",
              "v1_constraints", "quantized_accuracy", "akida_accuracy", "hardware_quality")
    return {c: {"outcome": "passed" if c in names else "failed", "message": ""} for c in checks}


CLASS = [  # alice: 10 points, 1.5 days late; bob: on time; carol: Canvas's flag, 1 point
    {"student": "alice", "file": "alice.py", "late": True, "days_late": 1.5,
     "checks": _passed("loads", "layer_whitelist", "relu_bounded", "quantization_scheme",
                       "v1_constraints", "quantized_accuracy", "akida_accuracy"), "metrics": {}},
    {"student": "bob", "file": "bob.py", "late": False, "checks": _passed("loads"),
     "metrics": {}},
    {"student": "carol", "file": "carol.py", "late": True, "checks": _passed("loads"),
     "metrics": {}},
]
# 10% per day, at most 50%: alice 2 started days, 20 %; carol one day (a flag), 10 %.
AFTER = {"alice": "8", "bob": "1", "carol": "0.9"}
BEFORE = {"alice": "10", "carol": "1"}


@pytest.fixture
def merged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    files.write_json(CLASS, tmp_path / "part.json")
    assert cli.main(["merge", str(tmp_path / "part.json"), "--late-penalty", POLICY,
                     "--json", str(tmp_path / "grades.json"), "--csv", str(tmp_path / "g.csv"),
                     "--gradescope", str(tmp_path / "gs"), "--html",
                     str(tmp_path / "class.html")]) == 0
    printed = capsys.readouterr().out
    assert "alice: 8 / 20 points (10 before the late penalty, late 2 days: -20 % " \
           f"({POLICY})), no quality" in printed
    return tmp_path


def test_a_late_students_points_follow_the_policy_in_the_json_csv_and_gradescope(
        merged: Path) -> None:
    records = {r["student"]: r for r in files.read_json(merged / "grades.json")}
    assert {s: files.format_number(r["points"]) for s, r in records.items()} == AFTER
    assert records["alice"]["points_before_late"] == 10
    assert records["alice"]["late_penalty"] == {"policy": POLICY, "days": 2, "fraction": 0.2}
    assert records["carol"]["late_penalty"]["days"] == 1 and "late_penalty" not in records["bob"]
    with (merged / "g.csv").open(newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert {s: row["points"] for s, row in rows.items()} == AFTER
    assert (rows["alice"]["points_before_late"], rows["alice"]["late_penalty"],
            rows["alice"]["days_late"]) == ("10", "0.2", "1.5")
    assert rows["bob"]["points_before_late"] == rows["bob"]["late_penalty"] == ""
    result = json.loads((merged / "gs" / "alice" / "results.json").read_text())
    assert result["score"] == 8
    assert sum(test["score"] for test in result["tests"]) == 10  # the checks, before
    assert result["output"].startswith("alice: 8 / 20 points (10 before the late penalty, late "
                                       "2 days: -20 %")
    table = (merged / "class.html").read_text()
    assert "8 / 20<br><small class=\"akida-late\"" in table and "10 before the late penalty" \
        in table


def test_a_late_students_points_follow_the_policy_in_the_canvas_and_moodle_files(
        merged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (merged / "export.csv").write_bytes(EXPORT.encode())
    assert cli.main(["canvas", str(merged / "grades.json"), "--gradebook",
                     str(merged / "export.csv"), "--assignment", "Assignment 3",
                     "--match", "SIS Login ID", "--out", str(merged / "import.csv")]) == 0
    table = list(csv.reader(io.StringIO(
        (merged / "import.csv").read_text(encoding="utf-8-sig"))))
    column = table[0].index("Assignment 3 (12345)")
    by_login = {row[3]: row[column] for row in table[2:]}
    assert (by_login["alice"], by_login["carol"]) == ("8", "0.9")
    printed = capsys.readouterr().out
    assert "alice: 8 points (10 before the late penalty, late 2 days: -20 %" in printed
    assert cli.main(["moodle", str(merged / "grades.json"), "--out", str(merged / "m.csv"),
                     "--assignment", "Lab 3", "--identifier", "username"]) == 0
    with (merged / "m.csv").open(newline="") as handle:
        rows = {row["Username"]: row for row in csv.DictReader(handle)}
    assert {u: row["Assignment: Lab 3 (Real)"] for u, row in rows.items()} == AFTER
    assert rows["alice"]["Assignment: Lab 3 (Feedback)"] == \
        f"8 / 20 points (10 before the late penalty, late 2 days: -20 % ({POLICY}))"
    assert rows["bob"]["Assignment: Lab 3 (Feedback)"] == "1 / 20 points"


def test_merge_with_no_penalty_takes_it_away_and_without_the_option_keeps_the_files(
        merged: Path) -> None:
    for option, alice in ((["--late-penalty", "none"], "10"), ([], "8")):
        assert cli.main(["merge", str(merged / "grades.json"), *option, "--json",
                         str(merged / "again.json")]) == 0
        (record, *_) = files.read_json(merged / "again.json")
        assert files.format_number(record["points"]) == alice, option


def test_a_bad_late_penalty_is_a_usage_error_naming_the_option() -> None:
    option = next(o for o in settings.OPTIONS if o.name == "late_penalty")
    with pytest.raises(pytest.UsageError, match="invalid akida_late_penalty value 'often'"):
        settings._validated(option, "often", "the ini setting akida_late_penalty")
