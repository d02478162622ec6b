"""background.py and the typed hand-over of results.py: pure threads and parsing, no TensorFlow."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict

import pytest

from pytest_akida_grade.background import Background
from pytest_akida_grade.codec import RecordError
from pytest_akida_grade.results import (
    Built,
    BuiltAndGraded,
    Declarations,
    Graded,
    MappingFigures,
    V1Truth,
    declarations_from_json,
)

MAPPED = MappingFigures(error=None, nps=3, hardware_sequences=1, software_sequences=0,
                        program_memory_bytes=40000)
BUILT = Built(layers=({"index": 0, "name": "conv2d", "class_name": "Conv2D", "config": {}},),
              params=160, weight_bits=4, activation_bits=4, violations={"v1_constraints": ()},
              v1=V1Truth(bits=(4, 4), declared_bits_used=True, conversion_error=None,
                         cut_at=None, warnings=(), mapping=MAPPED),
              route="weights file")
GRADED = Graded(n_train=54000, n_test=10000, route="weights file", float_accuracy=0.985,
                quantized_accuracy=0.9832, akida_accuracy=0.9831, quantize_attempt=0,
                attempt_val_accuracies=(), cut_at=None, mapping=MAPPED, peak_rss_mb=900.0)


@pytest.fixture
def background() -> Iterator[Background]:
    said: list[tuple[str, str]] = []
    work = Background(lambda student, message: said.append((student, message)), threads=4)
    work.said = said  # type: ignore[attr-defined]
    yield work
    work.close()


def test_it_starts_a_piece_of_work_once_whoever_asks(background: Background) -> None:
    runs: list[int] = []

    def build() -> int:
        runs.append(1)
        return len(runs)

    futures = [background.once(("build", "alice"), build) for _ in range(5)]
    assert {background.wait(f) for f in futures} == {1}
    assert runs == [1]


def test_it_tells_a_finished_result_without_waiting_for_an_unfinished_one(
        background: Background) -> None:
    release = threading.Event()
    slow = background.once("slow", lambda: release.wait(10) and "done")
    background.wait(background.once("fast", lambda: "done"))
    assert background.finished("fast") == "done"
    assert background.finished("slow") is None
    assert background.finished("never started") is None
    release.set()
    assert background.wait(slow) == "done"


def test_it_hides_a_failed_result_from_finished_and_raises_it_to_the_waiter(
        background: Background) -> None:
    def broken() -> str:
        raise RuntimeError("a stage bug")

    future = background.once("broken", broken)
    with pytest.raises(RuntimeError, match="a stage bug"):
        background.wait(future)
    assert background.finished("broken") is None


def test_progress_from_other_threads_is_written_by_the_waiting_thread_in_order(
        background: Background) -> None:
    def stage() -> str:
        assert threading.current_thread() is not threading.main_thread()
        for epoch in (1, 2, 3):
            background.report("alice", f"epoch {epoch}/3")
        return "trained"

    said = background.said  # type: ignore[attr-defined]
    assert background.wait(background.once("train", stage)) == "trained"
    assert said == [("alice", "epoch 1/3"), ("alice", "epoch 2/3"), ("alice", "epoch 3/3")]


def test_it_decides_the_route_of_a_submission_with_a_weights_file_itself() -> None:
    said = {"route": "train()", "weight_bits": 4, "activation_bits": 4}
    assert declarations_from_json(said, has_weights_file=True) == \
        Declarations("weights file", 4, 4)
    assert declarations_from_json(said, has_weights_file=False).route == "train()"
    lied = {**said, "route": "weights file"}
    assert declarations_from_json(lied, has_weights_file=False).route == "default recipe"
    assert asdict(Declarations("train()", 2, 4)) == {
        "route": "train()", "weight_bits": 2, "activation_bits": 4, "run": None}


@pytest.mark.parametrize("meta", [
    None, [], {"route": "os.system", "weight_bits": 4, "activation_bits": 4},
    {"route": "train()", "weight_bits": {"__class__": "x"}, "activation_bits": 4},
    {"route": "train()", "weight_bits": 4},  # a meta.json the submission rewrote
])
def test_it_refuses_malformed_declarations(meta: object) -> None:
    with pytest.raises(RecordError, match=r"meta\.json is malformed"):
        declarations_from_json(meta, has_weights_file=False)


def test_it_reads_a_build_and_its_grade_from_one_reply() -> None:
    built, graded = BuiltAndGraded.from_json(
        {"built": BUILT.to_json(), "graded": GRADED.to_json(), "grade_failure": None}).stages()
    assert built == BUILT
    assert graded.result == GRADED


def test_it_reads_a_build_whose_grade_failed_alone() -> None:
    built, graded = BuiltAndGraded.from_json(
        {"built": BUILT.to_json(), "graded": None,
         "grade_failure": "no Dense(10) at the end"}).stages()
    assert built == BUILT
    assert graded.result is None and graded.failure == "no Dense(10) at the end"


@pytest.mark.parametrize("reply, missing", [
    ({"graded": None, "grade_failure": "x"}, r"BuiltAndGraded: missing fields \['built'\]"),
    ({"built": {}, "graded": None, "grade_failure": "x"},
     r"BuiltAndGraded\.built: missing fields \['layers', 'params'"),
    ({"built": BUILT.to_json(), "grade_failure": 3},
     r"BuiltAndGraded\.grade_failure: expected str \| None, got int 3"),
    ({"built": BUILT.to_json(), "graded": "98 %", "grade_failure": None},
     r"BuiltAndGraded\.graded: expected Graded \| None, got str '98 %'"),
    ({"built": {**BUILT.to_json(), "v1": {**BUILT.v1.to_json(), "bits": [4]}}, "graded": None,
      "grade_failure": "x"}, r"BuiltAndGraded\.built\.v1\.bits: expected 2 items, got 1"),
])
def test_it_names_what_is_wrong_in_a_malformed_reply(reply: object, missing: str) -> None:
    with pytest.raises(RecordError, match=missing):
        BuiltAndGraded.from_json(reply)
