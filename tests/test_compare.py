"""`python -m pytest_akida_grade compare`: after a regrade, who changed and how (pure; a real grade
file edited by one check is compared in test_measure.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_akida_grade.report import cli, compare, files


def _record(student: str, v1: str = "passed", quality: float = 122.8, **extra: object
            ) -> dict[str, object]:
    return {"student": student, "checks": {"loads": {"outcome": "passed", "message": ""},
                                           "v1_constraints": {"outcome": v1, "message": ""}},
            "metrics": {"quality": quality, "source": "replay"}, **extra}


def test_it_names_each_check_points_and_figure_that_changed_with_both_values() -> None:
    old = [_record("alice"), _record("bob"), _record("carol"), _record("gone")]
    new = [_record("alice"), _record("bob", v1="failed"),
           _record("carol", quality=122.8 + 1e-9 * 122.8, late=True),  # float noise, a flag
           _record("dave", quality=50.0)]
    found = compare.changes(files.merge([old]), files.merge([new]), old_name="a.json",
                            new_name="b.json")
    assert [str(change) for change in found] == [
        "bob: check v1_constraints: passed -> failed",
        "bob: points: 3 -> 1",
        "dave: only in b.json",
        "gone: only in a.json"]
    assert compare.summary(found, 5) == \
        "3 of 5 students changed: 1 in a check's outcome, 1 in points, 2 in one file only"


def test_a_figure_change_alone_is_named_and_nothing_changed_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files.write_json([_record("alice")], tmp_path / "old.json")
    files.write_json([_record("alice", quality=989.6)], tmp_path / "new.json")
    assert cli.main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    assert capsys.readouterr().out == ("alice: figure quality: 122.8 -> 989.6\n"
                                       "1 of 1 students changed: 1 in figures\n")
