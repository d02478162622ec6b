"""`python -m pytest_akida_grade canvas`: Canvas's gradebook export comes back with the
assignment's column filled, every other cell as it was, and who did not match on either side."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pytest_akida_grade.fileio import NUMBER
from pytest_akida_grade.report import cli

# Canvas's "Export Entire Gradebook" layout: a BOM, CRLF, quoted names, read-only totals.
EXPORT = (
    "\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Quiz 1 (87568),"
    "Assignment 3 (12345),Current Points,Final Points,Current Score,Final Score\r\n"
    "    Points Possible,,,,,5.00,20.00,(read only),(read only),(read only),(read only)\r\n"
    '"Liddell, Alice",1001,S1001,alice,CS 101,4.00,,4.00,4.00,80.00,20.00\r\n'
    '"Builder, Bob",1002,S1002,BOB,CS 101,5.00,3.00,8.00,8.00,64.00,32.00\r\n'
    '"Ng, Carol",1003,S1003,carol,CS 101,,,0.00,0.00,,0.00\r\n'
    '"Student, Test",1099,,,CS 101,,,,,,\r\n'
)
ASSIGNMENT = "Assignment 3 (12345)"


def _grades(tmp_path: Path, points: dict[str, float]) -> Path:
    records = [{"student": name, "checks": {"loads": {"outcome": "passed", "message": "ok"}},
                "metrics": {}, "points": value, "max_points": 20.0}
               for name, value in points.items()]
    path = tmp_path / "grades.json"
    path.write_text(json.dumps({"students": records}))
    return path


def _table(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8").removeprefix("\ufeff"))))


def _canvas(tmp_path: Path, *args: str, export: str = EXPORT,
            points: dict[str, float] | None = None) -> tuple[int, Path]:
    gradebook = tmp_path / "export.csv"
    gradebook.write_bytes(export.encode("utf-8"))
    out = tmp_path / "import.csv"
    grades = _grades(tmp_path, points if points is not None else {
        "alice": 17.5, "bob": 20.0, "dave": 12.0})
    status = cli.main(["canvas", str(grades), "--gradebook", str(gradebook), "--out", str(out),
                       *args])
    return status, out


def test_it_fills_the_assignment_column_and_leaves_every_other_cell_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _canvas(tmp_path, "--assignment", "Assignment 3")
    assert status == 0, capsys.readouterr().err
    before, after = _table(tmp_path / "export.csv"), _table(out)
    column = before[0].index(ASSIGNMENT)
    assert [row[column] for row in after] == [ASSIGNMENT, "20.00", "17.5", "20", "", ""]
    for old, new in zip(before, after, strict=True):  # the header and Points Possible too
        assert old[:column] + old[column + 1:] == new[:column] + new[column + 1:]
    raw = out.read_bytes()
    assert raw.startswith("\ufeff".encode()) and raw.count(b"\r\n") == len(before)
    printed = capsys.readouterr().out
    assert f"{ASSIGNMENT}: 2 students filled (Points Possible 20.00)" in printed
    assert "graded but not in the gradebook: dave" in printed
    assert "in the gradebook without a grade: Ng, Carol, Student, Test" in printed


def test_a_round_trip_with_the_full_column_name_changes_nothing_but_the_grades(
        tmp_path: Path) -> None:
    status, out = _canvas(tmp_path, "--assignment", ASSIGNMENT,
                          points={"alice": 0.0, "bob": 3.0, "carol": 0.0})
    assert status == 0
    expected = EXPORT.replace("alice,CS 101,4.00,,", "alice,CS 101,4.00,0,").replace(
        "BOB,CS 101,5.00,3.00,", "BOB,CS 101,5.00,3,").replace(
        "carol,CS 101,,,", "carol,CS 101,,0,")
    assert out.read_bytes().decode("utf-8") == expected


def test_a_roster_maps_file_stems_to_the_match_column(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("student,ID,name\nsubmission_17,1003,Carol Ng\nalice_v2,1001,Alice\n")
    status, out = _canvas(tmp_path, "--assignment", "Assignment 3", "--match", "ID",
                          "--roster", str(roster), points={"submission_17": 9.0, "alice_v2": 7.0})
    assert status == 0, capsys.readouterr().err
    table = _table(out)
    column = table[0].index(ASSIGNMENT)
    assert {row[0]: row[column] for row in table[2:]} == {
        "Liddell, Alice": "7", "Builder, Bob": "3.00", "Ng, Carol": "9", "Student, Test": ""}


@pytest.mark.parametrize(("args", "export", "roster", "message"), [
    (["--assignment", "Assignment 4"], EXPORT, None,
     "no assignment 'Assignment 4' (a column named so, or 'Assignment 4 (id)'); its assignments: "
     "'Quiz 1 (87568)', 'Assignment 3 (12345)'"),
    (["--assignment", "Assignment 3", "--match", "Email"], EXPORT, None,
     "no --match 'Email' column 'Email'"),
    (["--assignment", "Assignment 3"], EXPORT.replace("SIS Login ID", "Login"), None,
     "no --match 'SIS Login ID' column"),
    (["--assignment", "Assignment 3", "--match", "ID"], EXPORT, "student,SIS User ID\na,S1\n",
     "no --match 'ID' column 'ID'"),
    (["--assignment", "Assignment 3", "--match", "ID"], EXPORT, "stem,ID\na,1\n",
     "no student column 'student'"),
    (["--assignment", "Assignment 3"], "", None, "empty: expected Canvas's gradebook export"),
    (["--assignment", "Assignment 3"], EXPORT.replace("Quiz 1 (87568)", "Assignment 3 (9)"),
     None, "matches several columns"),
], ids=["no assignment", "no match column", "export without login", "roster without column",
        "roster without student", "empty", "ambiguous"])
def test_it_refuses_what_it_cannot_fill_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], export: str,
        roster: str | None, message: str) -> None:
    if roster is not None:
        (tmp_path / "roster.csv").write_text(roster)
        args = [*args, "--roster", str(tmp_path / "roster.csv")]
    status, out = _canvas(tmp_path, *args, export=export)
    assert status == 2 and not out.exists()
    err = capsys.readouterr().err
    assert message in err, err


def test_a_display_name_that_is_a_formula_is_written_back_as_text(tmp_path: Path) -> None:
    hostile = EXPORT.replace('"Ng, Carol"', '"=HYPERLINK(""http://x"",""Carol"")"').replace(
        '"Student, Test"', "@SUM(1)")
    status, out = _canvas(tmp_path, "--assignment", ASSIGNMENT, export=hostile,
                          points={"alice": -1.5, "bob": 3.0})
    assert status == 0
    rows = _table(out)
    names = [row[0] for row in rows]
    assert "'=HYPERLINK(\"http://x\",\"Carol\")" in names and "'@SUM(1)" in names
    assert [row[6] for row in rows[2:4]] == ["-1.5", "3"]  # numbers stay numbers
    assert not [cell for row in rows for cell in row
                if cell[:1] in ("=", "+", "-", "@") and not NUMBER.fullmatch(cell)]
