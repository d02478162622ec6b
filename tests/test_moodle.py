"""`python -m pytest_akida_grade moodle`: a CSV that Moodle's "Import grades: CSV file" maps on its
own, read back here the way Moodle's mapping page and import read it (grade/import/csv,
gradeimport_csv_load_data and the mapping form of Moodle 4.x)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pytest_akida_grade.report import cli

# Moodle's user fields as its mapping form labels them ("Map to"), in the form's order.
MAP_TO = {"username": "Username", "useridnumber": "ID number", "useremail": "Email address"}
ITEMS = ["Assignment: Lab 3", "Assignment: Lab 4", "Quiz: Week 1"]  # the course's grade items


def moodle_reads(text: str) -> tuple[str, dict[str, dict[str, float | str | None]]]:
    """(the user field Moodle maps, {user: {grade item or "Feedback for <item>": value}}), as
    Moodle pre-selects the mapping: the first user field whose label is a column's name; a
    column "<item> (Real)" to that grade item, "<item> (Feedback)" to its feedback; a grade ''
    or '-' is no grade, any other must be a number."""
    header, *rows = list(csv.reader(io.StringIO(text)))
    header = [h.strip() for h in header]
    field, user_at = next((f, header.index(label)) for f, label in MAP_TO.items()
                          if label in header)
    mapping: dict[int, str] = {}
    for at, name in enumerate(header):
        for suffix, target in ((" (Real)", "{}"), (" (Feedback)", "Feedback for {}")):
            item = name.removesuffix(suffix).strip()
            if name.endswith(suffix) and item in ITEMS:
                mapping[at] = target.format(item)
    found: dict[str, dict[str, float | str | None]] = {}
    for row in rows:
        if not row[user_at]:
            continue  # Moodle skips a row with no user
        values: dict[str, float | str | None] = {}
        for at, target in mapping.items():
            cell = row[at].strip()
            values[target] = cell if target.startswith("Feedback") else \
                (None if cell in ("", "-") else float(cell))
        found[row[user_at]] = values
    return field, found


def _grades(tmp_path: Path) -> Path:
    def record(name: str, points: float, **extra: object) -> dict[str, object]:
        return {"student": name, "checks": {"loads": {"outcome": "passed", "message": ""}},
                "metrics": {}, "points": points, "max_points": 20, **extra}

    records = [record("Jane_Doe", 17.5), record("Pair_Net", 20),
               record("Late_Lee", 8, late=True, points_before_late=10,
                      late_penalty={"policy": "20%", "days": None, "fraction": 0.2}),
               record("Nobody", 3)]
    (tmp_path / "grades.json").write_text(json.dumps({"students": records}))
    # import-submissions' Gradescope roster: emails (a group's, ';'-separated) and sid.
    (tmp_path / "roster.csv").write_text(
        "student,name,late,files,module,weights,submitted,days_late,submission_id,emails,sid\n"
        "Jane_Doe,Jane Doe,false,m.py,Jane_Doe.py,,,,1,jane@x.edu,42\n"
        "Pair_Net,Ann; Bob,false,p.py,Pair_Net.py,,,,2,ann@x.edu;bob@x.edu,43;44\n"
        "Late_Lee,Lee,true,l.py,Late_Lee.py,,,,3,lee@x.edu,45\n")
    return tmp_path / "grades.json"


def _moodle(tmp_path: Path, *args: str) -> tuple[int, str]:
    status = cli.main(["moodle", str(_grades(tmp_path)), "--out", str(tmp_path / "m.csv"),
                       "--assignment", "Lab 3", *args])
    return status, (tmp_path / "m.csv").read_text() if (tmp_path / "m.csv").exists() else ""


def test_moodle_maps_the_email_column_and_the_assignments_grade_and_feedback_on_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = _moodle(tmp_path, "--roster", str(tmp_path / "roster.csv"))
    assert status == 0
    field, grades = moodle_reads(text)
    assert field == "useremail"
    assert {user: values["Assignment: Lab 3"] for user, values in grades.items()} == {
        "jane@x.edu": 17.5, "ann@x.edu": 20, "bob@x.edu": 20, "lee@x.edu": 8}
    assert grades["lee@x.edu"]["Feedback for Assignment: Lab 3"] == \
        "8 / 20 points (10 before the late penalty, late: -20 % (20%))"
    printed = capsys.readouterr().out
    assert "m.csv: 4 rows for Assignment: Lab 3 (users by Email address)" in printed
    assert "graded but not in the roster (not written): Nobody" in printed
    assert "Late_Lee: 8 points (10 before the late penalty, late: -20 % (20%))" in printed


def test_by_id_number_scaled_out_of_100_and_without_feedback(tmp_path: Path) -> None:
    status, text = _moodle(tmp_path, "--roster", str(tmp_path / "roster.csv"), "--identifier",
                           "idnumber", "--out-of", "100", "--no-feedback")
    assert status == 0
    field, grades = moodle_reads(text)
    assert field == "useridnumber"
    assert grades == {"42": {"Assignment: Lab 3": 87.5}, "43": {"Assignment: Lab 3": 100},
                      "44": {"Assignment: Lab 3": 100}, "45": {"Assignment: Lab 3": 40}}


def test_usernames_are_the_file_stems_without_a_roster_and_an_email_needs_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = _moodle(tmp_path, "--identifier", "username")
    assert status == 0 and moodle_reads(text)[0] == "username"
    assert set(moodle_reads(text)[1]) == {"Jane_Doe", "Pair_Net", "Late_Lee", "Nobody"}
    (tmp_path / "m.csv").unlink()
    status, text = _moodle(tmp_path)
    assert status == 2 and text == ""
    assert "--identifier email needs --roster" in capsys.readouterr().err
