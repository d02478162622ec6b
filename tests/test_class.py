"""A class graded at the speed of its compute gets exactly what each student gets graded alone.

The class run shares a fork server, a pool of warm trusted processes, looks ahead, and grades a
pre-trained model with one conversion for both stages; each single run is cold (its own cache,
its own processes). Figures, verdicts and messages must not depend on any of that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from made_up import FAST_INI, TEMPLATE_LAYERS, add_student, save_weights, student_source

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
    for name in ("alice", "bob"):  # dave's verdicts need no figure: the class run is enough
        alone = graded(pytester, tmp_path / name, f"students/{name}.py")
        assert alone[name]["checks"] == together[name]["checks"], name
        assert alone[name]["metrics"] == together[name]["metrics"], name
    assert together["bob"]["metrics"]["training"] == "weights file"
    assert together["alice"]["metrics"]["training"] == "default recipe"
    assert together["dave"]["checks"]["v1_constraints"]["outcome"] == "failed"
