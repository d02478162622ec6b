"""Every file of a students folder is graded or said why: notebooks and modules with any name are
graded under a plain student name (the record keeps the file name), the rest is listed as not
graded with the reason and the fix, and an importer's roster.csv carries the late flag into the
records.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from made_up import student_source

from pytest_akida_grade import discovery
from pytest_akida_grade.report import cli, files, table


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        if name.endswith("/"):
            (folder / name).mkdir()
        else:
            (folder / name).write_text("x = 1\n")


def test_any_module_name_is_graded_under_a_plain_unique_name_and_the_rest_is_said_why(
        tmp_path: Path) -> None:
    _touch(tmp_path, "john-doe.py", "john_doe.py", "Jane Smith.py", "José.py", "2nd.py", "ok.py",
           "ok.weights.h5", "_helper.py", "notes.ipynb", "lonely.weights.h5", "class.zip",
           "work.tar.gz", "model.h5", "sub/", ".DS_Store", "roster.csv", "pytest.ini",
           "test_x.py", "conftest.py", "__init__.py", "x_test.py")  # the last four: issue 22's
    names = {path.name: name for path, name in discovery.student_names([tmp_path]).items()}
    assert names == {"john_doe.py": "john_doe", "john-doe.py": "john_doe_2",
                     "Jane Smith.py": "Jane_Smith", "José.py": "Jose", "2nd.py": "student_2nd",
                     "ok.py": "ok", "notes.ipynb": "notes"}
    assert [s.name for s in discovery.find_class([tmp_path])] == sorted(names.values())
    found = {item.file: item for item in discovery.not_graded([tmp_path])}
    assert sorted(found) == ["_helper.py", "class.zip", "lonely.weights.h5", "model.h5", "sub",
                             "work.tar.gz"]
    assert found["lonely.weights.h5"].reason == "weights without their submission: no " \
                                                "lonely.ipynb or lonely.py beside them"
    assert "an archive is not unpacked" in found["class.zip"].reason
    assert "import-submissions" in found["sub"].fix


def test_a_name_that_is_not_utf8_is_not_graded_and_shown_with_replacement_characters(
        tmp_path: Path) -> None:
    _touch(tmp_path, os.fsdecode(b"caf\xe9.py"), "ok.py")
    assert [s.name for s in discovery.find_class([tmp_path])] == ["ok"]
    (item,) = discovery.not_graded([tmp_path])
    assert item.file == "caf\ufffd.py" and "not valid UTF-8" in item.reason
    files.write_json([], tmp_path / "grades.json", not_graded=[item.as_dict()])  # writable


def test_the_weights_of_a_renamed_module_are_still_its_own(tmp_path: Path) -> None:
    _touch(tmp_path, "my-model.py", "my-model.weights.h5")
    (submission,) = discovery.find_class([tmp_path])
    assert submission.name == "my_model"
    assert submission.weights_path == tmp_path.resolve() / "my-model.weights.h5"
    assert discovery.not_graded([tmp_path]) == []


def test_the_html_report_shows_the_file_the_late_flag_and_what_was_not_graded() -> None:
    record = {"student": "john_doe", "file": "john-doe.py", "late": True, "checks": {},
              "metrics": {}}
    page = table.standalone_html([record], {}, plot_svg="", not_graded=[
        {"file": "mnist.ipynb", "reason": "a notebook is not graded", "fix": "export <it>"}])
    assert '<small class="akida-file">john-doe.py</small>' in page
    assert '<small class="akida-late">late</small>' in page
    assert ('<table id="akida-not-graded">' in page and "<td>mnist.ipynb</td>" in page
            and "export &lt;it&gt;" in page)


def test_a_class_with_any_file_names_grades_four_students_and_lists_the_archive(
        grading: pytest.Pytester) -> None:
    students = grading.path / "students"
    for name in ("john-doe", "Jane Smith", "ok"):  # one source: built once, then cached
        (students / f"{name}.py").write_text(student_source())
    (students / "mnist.ipynb").write_text("{}")  # a notebook that is not one: graded, fails
    (students / "class.zip").write_bytes(b"PK")
    (students / "roster.csv").write_text(
        "student,name,late,files,module,weights,ID\n"
        "ok,okjane,true,model.py,ok.py,,12345\n")
    result = grading.runpytest_subprocess("-k", "loads or layer_whitelist", "-p", "no:randomly",
                                          "-o", "akida_timeout=300",  # a busy machine's margin
                                          "-o", "akida_late_penalty=20%",
                                          "--akida-json=grades.json", "--akida-csv=grades.csv",
                                          "--html=report.html")
    result.assert_outcomes(passed=6, failed=1, skipped=1)
    data = json.loads((grading.path / "grades.json").read_text())
    records = {r["student"]: r for r in data["students"]}
    assert sorted(records) == ["Jane_Smith", "john_doe", "mnist", "ok"]
    assert {name: r["file"] for name, r in records.items()} == {
        "Jane_Smith": "Jane Smith.py", "john_doe": "john-doe.py", "mnist": "mnist.ipynb",
        "ok": "ok.py"}
    assert "mnist.ipynb is not a notebook Jupyter can open" in \
        records["mnist"]["checks"]["loads"]["message"]
    assert records["ok"]["late"] is True and records["ok"]["handed_in"] == ["model.py"]
    assert "late" not in records["john_doe"]
    # akida_late_penalty: the late student's points, before and after, in the grade files.
    assert (records["ok"]["points"], records["ok"]["points_before_late"]) == (1.6, 2)
    assert records["ok"]["late_penalty"] == {"policy": "20%", "days": None, "fraction": 0.2}
    assert records["john_doe"]["points"] == 2 and "late_penalty" not in records["john_doe"]
    (archive,) = data["not_graded"]
    assert archive["file"] == "class.zip" and "unpack it" in archive["fix"]
    result.stdout.fnmatch_lines(["john_doe (john-doe.py): 2/2 checks passed*",
                                 "ok (late: -20 % (20%)): 2/2 checks passed*",
                                 "class.zip: not graded: an archive is not unpacked; fix: *"])
    with (grading.path / "grades.csv").open(newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert rows["Jane_Smith"]["file"] == "Jane Smith.py" and rows["ok"]["late"] == "true"
    assert (rows["ok"]["points"], rows["ok"]["points_before_late"]) == ("1.6", "2")
    html_report = (grading.path / "report.html").read_text()
    assert "class.zip" in html_report and "mnist.ipynb" in html_report \
        and "john-doe.py" in html_report


def test_merge_keeps_what_each_part_did_not_grade(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    record = {"student": "john_doe", "file": "john-doe.py", "checks": {}, "metrics": {}}
    notebook = {"file": "mnist.ipynb", "reason": "a notebook is not graded", "fix": "export it"}
    files.write_json([record], tmp_path / "a.json", not_graded=[notebook])
    files.write_json([], tmp_path / "b.json")
    assert "not_graded" not in json.loads((tmp_path / "b.json").read_text())
    status = cli.main(["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                       "--json", str(tmp_path / "all.json"), "--html", str(tmp_path / "all.html")])
    assert status == 0
    assert json.loads((tmp_path / "all.json").read_text())["not_graded"] == [notebook]
    assert "<td>mnist.ipynb</td>" in (tmp_path / "all.html").read_text()
    assert "mnist.ipynb: not graded: a notebook is not graded" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text('{"students": [], "not_graded": [{"file": 1}]}')
    with pytest.raises(files.ReportError, match="not_graded"):
        files.read_not_graded(tmp_path / "bad.json")
