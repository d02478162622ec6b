"""`import-submissions`: Canvas, Gradescope and Moodle downloads laid out as the LMS writes them
(made here, in tmp dirs), made a students folder and a roster; hostile downloads refused before
anything is written. Pure: no TensorFlow, no student code.
"""

from __future__ import annotations

import csv
import os
import stat
import zipfile
from pathlib import Path

import pytest

from pytest_akida_grade import discovery, roster
from pytest_akida_grade.report import cli, lms, unpack

MODEL = "def build_model():\n    return None  # {}\n"


def _zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


def _folder(path: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["import-submissions", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _roster(out: Path) -> dict[str, dict[str, str]]:
    with (out / "roster.csv").open(newline="", encoding="utf-8") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


CANVAS = {
    "doejane_12345_678901_model.py": MODEL.format("first"),
    "doejane_12345_678902_model.weights.h5": b"weights-1",
    "doejane_LATE_12345_678950_model-1.py": MODEL.format("resubmitted late"),
    "smithjohn_222_700001_notes.pdf": b"%PDF",
    "smithjohn_222_700002_mnist.ipynb": "{}",  # the handout's notebook: graded as it is
    "parkmin_555_700019_handout.py": MODEL.format("exported first"),
    "parkmin_555_700020_handout.ipynb": "{}",  # then the notebook: the newest is graded
    "leeann_333_700010_my-net.py": MODEL.format("lee"),
    "roeric_444_text.html": "<p>my model is in my head</p>",  # a text entry: no attachment id
    "index.html": "<html>",
}


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "folder"])
def test_a_canvas_download_becomes_one_module_per_student_with_the_latest_and_a_roster(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], as_zip: bool) -> None:
    source = _zip(tmp_path / "submissions.zip", CANVAS) if as_zip \
        else _folder(tmp_path / "submissions", CANVAS)
    out = tmp_path / "students"
    status, printed, err = _import(capsys, str(source), "--from", "canvas", "--out", str(out))
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "doejane.py", "doejane.weights.h5", "leeann.py", "parkmin.ipynb", "roster.csv",
        "smithjohn.ipynb"]
    assert (out / "doejane.py").read_text() == MODEL.format("resubmitted late")
    assert (out / "doejane.weights.h5").read_bytes() == b"weights-1"
    rows = _roster(out)
    assert rows["doejane"] == {"student": "doejane", "name": "doejane", "late": "true",
                               "files": "model.py;model.weights.h5", "module": "doejane.py",
                               "weights": "doejane.weights.h5", "submitted": "",
                               "days_late": "", "ID": "12345"}
    assert rows["leeann"]["late"] == "false" and rows["leeann"]["files"] == "my-net.py"
    assert rows["smithjohn"]["module"] == "smithjohn.ipynb" and rows["smithjohn"]["ID"] == "222"
    assert rows["smithjohn"]["files"] == "mnist.ipynb"
    assert "smithjohn (smithjohn): smithjohn_222_700002_mnist.ipynb; older or other files not " \
           "used: smithjohn_222_700001_notes.pdf" in printed
    assert rows["parkmin"]["module"] == "parkmin.ipynb" and rows["parkmin"]["files"] == \
        "handout.ipynb"
    # Nothing to grade handed in: listed, with what was handed in, in the roster and the output.
    assert "roeric (roeric): no notebook (.ipynb) or module (.py) handed in; handed in: " \
           "text.html" in printed
    assert "doejane (doejane) (late): doejane_LATE_12345_678950_model-1.py, " \
           "doejane_12345_678902_model.weights.h5; older or other files not used: " \
           "doejane_12345_678901_model.py" in printed
    assert "index.html: not a submission of this layout, not imported" in printed
    assert rows["roeric"]["module"] == "" and rows["roeric"]["files"] == "text.html"
    assert roster.read(out / "roster.csv")[0].late is True  # the plugin's reader accepts it


METADATA = """\
submission_1001:
  :submitters:
  - :name: Jane Doe
    :sid: '42'
    :email: jane@example.edu
  :created_at: 2026-04-26 17:34:00.861687000 Z
  :score: 2.0
  :results:
    score: 2.0
    output: |-
      submission_9999:
        :submitters:
        - :name: Not A Student
submission_1002:
  :submitters:
  - :name: "Ann O'Neil"
    :sid: 7
    :email: ann@example.edu
  - :name: Bob Ray
    :email: bob@example.edu
  :created_at: 2026-04-27 09:00:00.000000000 Z
submission_0990:
  :submitters:
  - :name: Bob Ray
    :email: bob@example.edu
  :created_at: 2026-04-20 09:00:00.000000000 Z
submission_1003:
  :submitters: []
"""


def test_the_gradescope_metadata_parser_reads_exactly_gradescopes_shape() -> None:
    parsed = lms.parse_gradescope_metadata(METADATA)
    assert sorted(parsed) == ["submission_0990", "submission_1001", "submission_1002",
                              "submission_1003"]  # the block scalar's lookalike is not one
    assert parsed["submission_1001"].submitters == [
        {"name": "Jane Doe", "sid": "42", "email": "jane@example.edu"}]
    assert parsed["submission_1002"].submitters[0] == {
        "name": "Ann O'Neil", "sid": "7", "email": "ann@example.edu"}
    assert parsed["submission_1002"].created_at == "2026-04-27 09:00:00.000000000 Z"
    assert parsed["submission_1003"].submitters == []


def test_a_gradescope_export_keeps_each_persons_latest_submission(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = "assignment_8046601_export/"
    source = _zip(tmp_path / "export.zip", {
        f"{root}submission_metadata.yml": METADATA,
        f"{root}submission_1001/model.py": MODEL.format("jane"),
        f"{root}submission_1001/model.weights.h5": b"w",
        f"{root}submission_1002/pair-net.py": MODEL.format("pair"),
        f"{root}submission_0990/old.py": MODEL.format("bob alone, before the pair"),
        f"{root}submission_1003/readme.txt": "nobody",
        "__MACOSX/._x": "mac noise",
    })
    out = tmp_path / "students"
    status, printed, err = _import(capsys, str(source), "--from", "gradescope", "--out", str(out))
    assert status == 0, err
    assert "submission_1003 (submission_1003): no notebook (.ipynb) or module (.py) handed " \
           "in; handed in: readme.txt" in printed
    rows = _roster(out)
    assert sorted(rows) == ["Ann_O_Neil_Bob_Ray", "Jane_Doe", "submission_1003"]
    assert rows["Jane_Doe"] | {} == {
        "student": "Jane_Doe", "name": "Jane Doe", "late": "false",
        "files": "model.py;model.weights.h5", "module": "Jane_Doe.py",
        "weights": "Jane_Doe.weights.h5", "submitted": "2026-04-26T17:34:00+00:00",
        "days_late": "", "submission_id": "1001", "emails": "jane@example.edu", "sid": "42"}
    assert rows["Ann_O_Neil_Bob_Ray"]["emails"] == "ann@example.edu;bob@example.edu"
    assert (out / "Ann_O_Neil_Bob_Ray.py").read_text() == MODEL.format("pair")
    assert rows["submission_1003"]["module"] == ""
    assert "old.py" not in (out / "roster.csv").read_text()  # Bob's older submission


def test_a_moodle_download_names_students_by_their_full_name_and_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _zip(tmp_path / "moodle.zip", {
        "Jane Doe_4242_assignsubmission_file_/model.py": MODEL.format("jane"),
        "Jane Doe_4242_assignsubmission_file_/model.weights.h5": b"w",
        "José Núñez_77_assignsubmission_file_/net.ipynb": "{}",
        "Test Case_78_assignsubmission_file_/test_model.py": MODEL.format("tc"),
        "Ann Lee_79_assignsubmission_file_my-net.py": MODEL.format("flat"),  # not in folders
    })
    out = tmp_path / "students"
    status, printed, err = _import(capsys, str(source), "--from", "moodle", "--out", str(out))
    assert status == 0, err
    assert "Jose_Nunez (José Núñez): net.ipynb" in printed
    rows = _roster(out)
    assert sorted(rows) == ["Ann_Lee", "Jane_Doe", "Jose_Nunez", "student_Test_Case"]
    assert rows["Ann_Lee"]["files"] == "my-net.py" and rows["Ann_Lee"]["moodle_id"] == "79"
    assert rows["Jane_Doe"]["moodle_id"] == "4242" and rows["Jane_Doe"]["weights"]
    assert rows["Jose_Nunez"]["module"] == "Jose_Nunez.ipynb"
    assert rows["Jose_Nunez"]["files"] == "net.ipynb"
    assert rows["student_Test_Case"]["files"] == "test_model.py"
    # Every stem written is a plain name pytest never imports.
    assert all(discovery.is_plain_name(p.name.removesuffix(".weights.h5").removesuffix(".py")
                                       .removesuffix(".ipynb"))
               for p in out.iterdir() if p.name != "roster.csv")


@pytest.mark.parametrize("stem", ["test_x", "x_test", "conftest", "__init__", "2nd try", "José",
                                  "Jane Smith", "class", "Test", "a--b", "", "_"])
def test_a_normalised_name_is_always_a_plain_name(stem: str) -> None:
    assert discovery.is_plain_name(discovery.normalise(stem))


def _symlink_zip(path: Path) -> Path:
    info = zipfile.ZipInfo("doejane_1_2_model.py")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(("files", "why"), [
    ({"../doejane_1_2_model.py": MODEL}, "climbs out"),
    ({"a/../../doejane_1_2_model.py": MODEL}, "climbs out"),
    ({"/tmp/doejane_1_2_model.py": MODEL}, "climbs out"),
    ({"..\\doejane_1_2_model.py": MODEL}, "climbs out"),
    ({"doejane_1_2_model.weights.h5": b"x" * 2048}, "more than the 1,024 allowed"),
    ({f"s{i}_1_{i}_m.py": "" for i in range(6)}, "more than the 5 allowed"),
], ids=["dotdot", "nested-dotdot", "absolute", "backslash", "oversized", "too-many"])
def test_a_hostile_zip_is_refused_with_the_reason_before_anything_is_written(
        tmp_path: Path, files: dict[str, str | bytes], why: str) -> None:
    source = _zip(tmp_path / "evil.zip", files)
    out = tmp_path / "students"
    with pytest.raises(lms.Refused, match=why):
        lms.import_submissions(source, "canvas", out,
                               limits=unpack.Limits(members=5, member_bytes=1024))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_links_are_refused_in_a_zip_and_in_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "students"
    status, _, err = _import(capsys, str(_symlink_zip(tmp_path / "link.zip")), "--from",
                             "canvas", "--out", str(out))
    assert status == 2 and "is a link" in err and not out.exists()
    folder = _folder(tmp_path / "download", {"doejane_1_2_model.py": MODEL})
    os.symlink("/etc/passwd", folder / "doejane_1_3_model.py")
    status, _, err = _import(capsys, str(folder), "--from", "canvas", "--out", str(out))
    assert status == 2 and "doejane_1_3_model.py is a link" in err and not out.exists()


def test_a_second_import_into_a_full_folder_needs_force_and_then_replaces_the_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "students"
    first = _zip(tmp_path / "first.zip", {"doejane_1_2_model.py": MODEL.format(1),
                                          "gonebob_3_4_model.py": MODEL.format("dropped")})
    assert _import(capsys, str(first), "--from", "canvas", "--out", str(out))[0] == 0
    second = _zip(tmp_path / "second.zip", {"doejane_1_9_model.py": MODEL.format(2)})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status, _, err = _import(capsys, str(second), "--from", "canvas", "--out", str(out))
    assert status == 2 and "not empty; nothing was written" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    status, _, err = _import(capsys, str(second), "--from", "canvas", "--out", str(out),
                             "--force")
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["doejane.py", "roster.csv"]
    assert (out / "doejane.py").read_text() == MODEL.format(2)


def test_a_gradescope_download_without_its_metadata_is_refused(tmp_path: Path) -> None:
    source = _zip(tmp_path / "x.zip", {"submission_1/model.py": MODEL})
    with pytest.raises(lms.Refused, match=r"no submission_metadata\.yml"):
        lms.import_submissions(source, "gradescope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the roster, read back


def test_a_roster_is_validated_and_names_the_line_at_fault(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("student,late,files,module\nann,true,a.py,ann.py\nbob,maybe,,\n")
    with pytest.raises(roster.RosterError, match=r"line 3: late must be true or false"):
        roster.read(path)
    path.write_text("student,late,files,module\nann,true,a.py,../ann.py\n")
    with pytest.raises(roster.RosterError, match="not a file name"):
        roster.read(path)
    path.write_text("student,files\nann,a.py\n")
    with pytest.raises(roster.RosterError, match="no column late, module"):
        roster.read(path)


def test_the_roster_adds_the_late_flag_and_the_handed_in_names_to_the_record_it_names() -> None:
    entries = roster.parse("student,name,late,files,module\ndoejane,doejane,true,"
                           "model.py;model.weights.h5,doejane.py\n", "roster.csv")
    records = roster.annotate([{"student": "doejane", "file": "doejane.py"},
                               {"student": "other", "file": "other.py"}], entries)
    assert records == [{"student": "doejane", "file": "doejane.py", "late": True,
                        "handed_in": ["model.py", "model.weights.h5"]},
                       {"student": "other", "file": "other.py"}]


def test_the_roster_writes_names_that_are_formulas_as_text_and_reads_them_back_exactly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    moodle = {"=cmd|' -C calc'!A0_4242_assignsubmission_file_/=2+5.py": MODEL.format("a"),
              "@SUM(1)_4343_assignsubmission_file_/-model.py": MODEL.format("b")}
    out = tmp_path / "students"
    status, _, err = _import(capsys, str(_folder(tmp_path / "download", moodle)), "--from",
                             "moodle", "--out", str(out))
    assert status == 0, err
    text = (out / "roster.csv").read_text()
    cells = [cell for row in csv.reader(text.splitlines()) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=cmd|' -C calc'!A0" in cells and "'=2+5.py" in cells and "'-model.py" in cells
    entries = {entry.name: entry for entry in roster.read(out / "roster.csv")}
    assert entries["=cmd|' -C calc'!A0"].files == ("=2+5.py",)
    assert entries["@SUM(1)"].files == ("-model.py",)
