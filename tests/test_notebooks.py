"""The handout's shapes without a sandbox: how a notebook is read and made Python (student.py's
functions, called here directly: they import nothing of the package), how a submission's shape
is told from its file, what the trusted side accepts of a hand-over's run, and the loads message
a student reads. Pure and fast: the shapes are graded end to end in test_plugin_fast.py's class
and, hostile, in test_hostile_class.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from made_up import handout_cells, notebook

from pytest_akida_grade import grading, verdicts
from pytest_akida_grade.codec import RecordError
from pytest_akida_grade.discovery import Shape, Submission, find_class, not_graded
from pytest_akida_grade.results import (
    Built,
    Declarations,
    Route,
    Stage,
    V1Truth,
    Verdict,
    declarations_from_json,
)
from pytest_akida_grade.sandbox import student
from pytest_akida_grade.stages import Export

# ---------------------------------------------------------------------------- cells as Python


@pytest.mark.parametrize(("cell", "python", "not_run"), [
    ("x = (5\n% 3)\ny = (x\n!= 2)", None, []),  # Python already: untouched, even `%`, `!`
    ("%pip install akida\nimport numpy", "pass\nimport numpy", ["%pip install akida"]),
    ("!nvidia-smi\nfiles = !ls\nx = 1", "pass\npass\nx = 1", ["!nvidia-smi", "files = !ls"]),
    ("for i in range(2):\n    %time f(i)", "for i in range(2):\n    pass", ["%time f(i)"]),
    ("%%bash\nrm -rf /", "", ["%%bash"]),
    ("%%time\n%matplotlib inline\nmodel.fit(x)", "pass\nmodel.fit(x)",
     ["%%time", "%matplotlib inline"]),
    ("%%capture\nimport os", "import os", ["%%capture"]),
], ids=["python", "pip", "shell", "indented", "cell-magic", "time", "capture"])
def test_it_runs_a_cells_python_and_lists_ipythons_lines_it_does_not_run(
        cell: str, python: str | None, not_run: list[str]) -> None:
    assert student.python_of(cell) == (cell if python is None else python, not_run)


def test_it_reads_the_code_cells_of_a_notebook_with_nbformat(tmp_path: Path) -> None:
    path = tmp_path / "alice.ipynb"
    path.write_text(notebook(handout_cells()))
    assert student.read_notebook(path) == handout_cells()  # the markdown cell left out


@pytest.mark.parametrize(("content", "words"), [
    ("{}", "is not a notebook Jupyter can open"),
    ("not json at all", "is not a notebook Jupyter can open"),
    ("[" * 100_000 + "]" * 100_000, "is not a notebook Jupyter can open \\(its JSON is nested "
                                    "too deeply\\)"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": 7}',
     "is not a notebook Jupyter can open"),
], ids=["empty", "not-json", "nested", "cells-not-a-list"])
def test_it_refuses_a_file_that_is_not_a_notebook_in_the_students_words(
        tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "mallory.ipynb"
    path.write_text(content)
    with pytest.raises(student.Refusal, match=words) as refused:
        student.read_notebook(path)
    assert "save it from Jupyter and hand it in again" in str(refused.value)


def test_it_refuses_a_notebook_over_its_size_cap_before_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "mallory.ipynb"
    with path.open("wb") as handle:
        handle.truncate(student.NOTEBOOK_BYTES + 1)  # sparse: nothing written
    with pytest.raises(student.Refusal, match="more than the 32 MB a notebook may have: clear "
                                              r"its outputs \(Edit > Clear All Outputs\)"):
        student.read_notebook(path)


def test_a_cell_whose_source_is_not_text_runs_as_an_empty_cell(tmp_path: Path) -> None:
    path = tmp_path / "odd.ipynb"
    path.write_text('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ['
                    '{"cell_type": "code", "source": 42, "metadata": {}, "outputs": [], '
                    '"execution_count": null, "id": "a"}, {"cell_type": "code", "source": '
                    '"x = 1", "metadata": {}, "outputs": [], "execution_count": null, "id": "b"}]}')
    assert student.read_notebook(path) == ["", "x = 1"]


def test_a_handout_module_whose_import_raises_stops_there_a_build_model_module_fails(
        tmp_path: Path) -> None:
    """student.import_submission on made-up modules with no TensorFlow in them (a model_keras
    that is a number: what matters is where the import stopped)."""
    handout = tmp_path / "bob.py"
    handout.write_text("model_keras = 12650\nweight_precision = 4\n"
                       "devices = []\ndevice = devices[0]\n")
    loaded = student.import_submission(handout)
    assert loaded.handout_shaped() and student.declared_bits(loaded.module)["weight_bits"] == 4
    assert loaded.stopped == ("importing bob.py raised IndexError: list index out of range\n"
                              "  bob.py, line 4, in <module>: device = devices[0]")
    ours = tmp_path / "carol.py"
    ours.write_text("def build_model():\n    return None\n\nraise SystemExit('not ready')\n")
    with pytest.raises(student.Refusal, match=r"importing carol\.py raised SystemExit: not ready"):
        student.import_submission(ours)


# ---------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("name", "source", "shape"), [
    ("a.ipynb", "{}", Shape.NOTEBOOK),
    ("b.py", "import tf_keras as keras\n\ndef build_model():\n    pass\n", Shape.BUILD_MODEL),
    ("c.py", "model_keras = keras.models.Sequential([])\nweight_precision = 4\n", Shape.HANDOUT),
    ("d.py", "model_keras = make()\n\ndef build_model():\n    return model_keras\n",
     Shape.BUILD_MODEL),  # build_model() is the model when there is one
    ("e.py", "while True:\n    pass\n", Shape.BUILD_MODEL),  # neither: our contract's limits
], ids=["notebook", "build_model", "handout", "both", "neither"])
def test_a_submissions_shape_comes_from_its_name_and_lines_never_from_running_it(
        tmp_path: Path, name: str, source: str, shape: Shape) -> None:
    (tmp_path / name).write_text(source)
    assert Submission(name[0], tmp_path / name).shape is shape
    assert shape.trains_itself == (shape is not Shape.BUILD_MODEL)


def test_a_notebook_is_a_submission_with_its_weights_and_nothing_is_left_unsaid(
        tmp_path: Path) -> None:
    for name in ("alice.ipynb", "alice.weights.h5", "bob.py", "_draft.ipynb", "lone.weights.h5"):
        (tmp_path / name).write_text("{}")
    assert [(s.name, s.path.name) for s in find_class([tmp_path])] == [
        ("alice", "alice.ipynb"), ("bob", "bob.py")]
    (alice,) = [s for s in find_class([tmp_path]) if s.name == "alice"]
    assert alice.weights_path.name == "alice.weights.h5"
    found = {item.file: item for item in not_graded([tmp_path])}
    assert sorted(found) == ["_draft.ipynb", "lone.weights.h5"]
    assert found["lone.weights.h5"].reason == \
        "weights without their submission: no lone.ipynb or lone.py beside them"


# ---------------------------------------------------------------------------- the hand-over's run

RUN = {"model": "model_keras", "cells": 9, "ran": 7,
       "stopped": "code cell 8 raised IndexError: list index out of range\n"
                  "  code cell 8, line 1, in <module>: device = akida.devices()[0]",
       "not_run": ["code cell 1: %pip install akida"], "load_data": True, "fitted": True}


def _meta(**changes: Any) -> dict[str, Any]:
    return {"weight_bits": 4, "activation_bits": 1, "route": "own training", "run": RUN,
            **changes}


def test_own_training_is_believed_only_of_a_submission_whose_own_code_trains() -> None:
    declared = declarations_from_json(_meta(), has_weights_file=False, trains_itself=True)
    assert (declared.route, declared.activation_bits) == (Route.OWN_TRAINING, 1)
    assert declared.run is not None and declared.run.not_run == ("code cell 1: %pip install akida",)
    assert declarations_from_json(_meta(), False, trains_itself=False).route == "default recipe"
    assert declarations_from_json(_meta(), True, trains_itself=True).route == "weights file"


@pytest.mark.parametrize("run", [
    {**RUN, "ran": 10}, {**RUN, "model": "os.system"}, {**RUN, "not_run": [1]},
    {**RUN, "fitted": "yes"}, {key: value for key, value in RUN.items() if key != "cells"},
], ids=["ran-more", "model", "not-run", "fitted", "missing"])
def test_a_forged_run_is_unusable_declarations(run: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        declarations_from_json(_meta(run=run), False, True)


def test_a_hand_overs_run_is_bounded_whatever_it_says() -> None:
    run = {**RUN, "stopped": "x" * 100_000, "not_run": ["%pip"] * 10_000}
    declared = declarations_from_json(_meta(run=run), False, True)
    assert declared.run is not None
    assert len(declared.run.stopped or "") == 2000 and len(declared.run.not_run) == 50


# ---------------------------------------------------------------------------- loads


def _loads(route: str, run: dict[str, Any]) -> Verdict:
    declared = declarations_from_json(_meta(route=route, run=run), False, True)
    built = Built(layers=({},) * 11, params=12650, weight_bits=4, activation_bits=1,
                  violations={}, v1=V1Truth((4, 1), True), route=declared.route, run=declared.run)
    return verdicts.loads(verdicts.Evidence("loads", Stage(result=built)))


def test_loads_says_where_a_notebook_stopped_what_it_did_not_run_and_what_data_it_had() -> None:
    verdict = _loads("own training", RUN)
    assert verdict.outcome == "passed"
    assert verdict.message.splitlines()[:3] == [
        "model_keras, as the notebook's code left it, is a tf_keras model with 11 layers, "
        "12650 parameters",
        "it is graded trained as the notebook's code left it (its own training)",
        "ran code cells 1-7 of 9"]
    assert "the run stopped: code cell 8 raised IndexError: list index out of range\n" \
           "  code cell 8, line 1, in <module>: device = akida.devices()[0]\n" \
           "(code cell 9 was not run)" in verdict.message
    assert "not run (IPython magics and shell lines are not Python): code cell 1: %pip " \
           "install akida" in verdict.message
    assert "held-out validation split (never the grader's test set)" in verdict.message
    assert verdict.metrics["not_run"] == ["code cell 1: %pip install akida"]
    assert verdict.metrics["stopped"] == "code cell 8 raised IndexError: list index out of range"
    assert "validation split" in verdict.metrics["mnist"]


def test_loads_says_a_model_never_fitted_goes_to_the_default_recipe() -> None:
    run = {**RUN, "cells": 0, "ran": 0, "stopped": None, "not_run": [], "load_data": False,
           "fitted": False}
    message = _loads("default recipe", run).message
    assert message == ("model_keras, as the module's code left it, is a tf_keras model with 11 "
                       "layers, 12650 parameters\nit was never fitted (no fit() on it): the "
                       "grader trains it with the default recipe")


# ---------------------------------------------------------------------------- similarity


def test_a_notebooks_similarity_source_is_its_code_as_the_sandbox_handed_it_over(
        tmp_path: Path) -> None:
    """Two notebooks of the same code match, however their outputs and spacing differ; the
    trusted side never parses either (it reads the hand-over's source.py)."""
    codes = {"a": "x = 1\nmodel_keras = make(x)\n",
             "b": "x = 1  # mine\n\nmodel_keras = make( x )\n"}
    for name, code in codes.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "source.py").write_text(code)
        (tmp_path / f"{name}.ipynb").write_text(notebook([code], markdown=f"outputs of {name}"))

    def exported(submission: Submission) -> Stage[Export]:
        return Stage(result=Export(tmp_path / submission.name,
                                   Declarations(Route.OWN_TRAINING, 4, 4)))

    found = grading.Fingerprints(None, exported)  # type: ignore[arg-type]  (no cache needed)
    a, b = (found.of(Submission(name, tmp_path / f"{name}.ipynb"), Route.DEFAULT_RECIPE, False)
            for name in codes)
    assert a["source"] == b["source"]
