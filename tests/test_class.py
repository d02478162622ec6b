"""A class graded at the speed of its compute gets exactly what a student gets graded alone.

The class run shares a fork server, a pool of warm trusted processes, looks ahead, and grades a
pre-trained model with one conversion for both stages; the single run is cold (its own cache,
its own processes). Figures, verdicts and messages must not depend on any of that. (The default
recipe's figures in a class against a class of their own: test_hostile_class, twice.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from made_up import FAST_INI, TEMPLATE_LAYERS, add_student, save_weights, student_source

from pytest_akida_grade.report import cli

SOFTWARE = ("-k", "not hardware_quality")


def graded(pytester: pytest.Pytester, cache: Path, *args: str) -> dict[str, Any]:
    pytester.makefile(".ini", pytest=FAST_INI.format(cache=cache))
    result = pytester.runpytest_subprocess(*SOFTWARE, "--akida-json=grades.json", *args)
    assert result.ret in (0, 1), result.stdout.str()[-3000:]
    return {r["student"]: r for r in
            json.loads((pytester.path / "grades.json").read_text())["students"]}


def test_a_class_graded_together_gets_what_each_student_gets_graded_alone(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    (pytester.path / "students").mkdir()
    # Its own weights file (pre-trained route), and one the grader trains (default recipe).
    bob = add_student(pytester, "bob", student_source() + "\n# bob\n")
    save_weights(bob, bob.with_name("bob.weights.h5"))
    add_student(pytester, "alice", student_source() + "\n# alice, trained by the grader\n")
    add_student(pytester, "dave", student_source(TEMPLATE_LAYERS) + "\n# fails v1\n")
    together = graded(pytester, tmp_path / "class")
    _the_copy_is_reported_to_the_instructor_only(pytester)
    # bob alone: the pre-trained route, inspected and graded with one conversion in the class.
    # (alice's route, the default recipe, is compared with a class of her own in
    # test_hostile_class; dave's verdicts need no figure: the class run is enough.)
    alone = graded(pytester, tmp_path / "bob", "students/bob.py")
    assert alone["bob"]["checks"] == together["bob"]["checks"]
    assert alone["bob"]["metrics"] == together["bob"]["metrics"]
    assert together["bob"]["metrics"]["training"] == "weights file"
    assert together["alice"]["metrics"]["training"] == "default recipe"
    assert together["dave"]["checks"]["v1_constraints"]["outcome"] == "failed"


def _the_copy_is_reported_to_the_instructor_only(pytester: pytest.Pytester) -> None:
    """alice and bob hand in one module (comments aside): the class's JSON and the merged HTML
    report say so; dave, another model, is in no pair; no student's own results mention it."""
    grades = pytester.path / "grades.json"
    similar = json.loads(grades.read_text())["similar"]
    assert similar == [{"students": ["alice", "bob"],
                        "why": "the same source, comments and spacing aside"}], similar
    page, merged = pytester.path / "class.html", pytester.path / "merged.json"
    assert cli.main(["merge", str(grades), "--html", str(page), "--json", str(merged),
                     "--gradescope", str(pytester.path / "gs")]) == 0
    assert json.loads(merged.read_text())["similar"] == similar
    section = page.read_text().split('<section id="akida-similar">', 1)[1]
    assert "alice &amp; bob" in section and "dave" not in section
    for name in ("alice", "bob"):
        own = (pytester.path / "gs" / name / "results.json").read_text()
        assert "similar" not in own.lower() and "fingerprint" not in own
