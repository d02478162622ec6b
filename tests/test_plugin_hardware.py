"""hardware_quality through the plugin: replayed runs, the board double, no board, bad files.

Most tests run only the hardware_quality check (`-k hardware_quality`) from a replay file, which
needs no child process at all. The few that need a converted model (a model_sha256 to compare,
the board double, the software-accuracy estimate) all grade the same made-up submission, so the
session-wide cache trains it once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from board_double import PUBLISHED_FAIL, PUBLISHED_PASS, PUBLISHED_RUN, Board
from made_up import add_student, student_source

from pytest_akida_grade import board, data
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.hardware import load_replay
from pytest_akida_grade.quality import energy_budget_mj
from pytest_akida_grade.quality import quality as quality_formula

ONLY_HARDWARE = ("-k", "hardware_quality")
TEST_LIMIT = 500  # akida_test_limit of made_up.FAST_INI: the board runs on that many images


def write_replay(pytester: pytest.Pytester, figures: dict[str, dict[str, Any]],
                 name: str = "replay.json") -> Path:
    path = pytester.path / name
    path.write_text(json.dumps(figures))
    return path


def grades(path: Path) -> dict[str, dict[str, Any]]:
    """The --akida-json file, by student."""
    return {record["student"]: record for record in json.loads(path.read_text())["students"]}


def hardware_check(record: dict[str, Any]) -> dict[str, Any]:
    return record["checks"]["hardware_quality"]


def assert_shown(result: pytest.RunResult, text: str) -> None:
    """`text` verbatim in the terminal output (fnmatch would read its brackets as a pattern)."""
    assert text in result.stdout.str(), f"{text!r} not in the output"


def install_board(monkeypatch: pytest.MonkeyPatch, labels: np.ndarray, **kwargs: Any) -> Board:
    """The board double in place of akida, as the in-process pytest run's board.py sees it."""
    double = Board(labels, **kwargs)
    monkeypatch.setattr(board, "akida", double.akida)
    return double


@pytest.fixture(scope="session")
def mnist_labels(shared_cache: Path) -> np.ndarray:
    """The labels the grader scores the board on: the first TEST_LIMIT MNIST test labels."""
    source = data.resolve_mnist(os.environ.get("AKIDA_GRADE_MNIST"), shared_cache)
    (_, _), (_, y_test) = data.load_mnist(source.path)
    return y_test[:TEST_LIMIT]


# --- Replaying the published runs ---------------------------------------------------------------


def test_it_fails_the_published_run_of_770_fps_and_passes_the_one_of_1677_fps(
        grading: pytest.Pytester) -> None:
    add_student(grading, "published_fail", student_source())
    add_student(grading, "published_pass", student_source())
    replay = write_replay(grading, {"published_fail": PUBLISHED_FAIL,
                                    "published_pass": PUBLISHED_PASS})
    result = grading.runpytest(f"--akida-replay={replay}", "--akida-json=grades.json",
                               *ONLY_HARDWARE)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*published_fail: Floor power: 894.26 mW",
        "*published_fail: Average framerate = 770.00 fps",
        "*published_fail: Last inference power range (mW):  Avg 936.80",
        "*published_fail: Last inference energy consumed (mJ/frame): 1.22",
        "*published_fail: Total memory usage of the inference 247984 Byte",
        "*published_fail: Hardware accuracy: 96.72 %",
        "*published_fail: Quality = 989.6 (fail: the bar is < 200)",
        "*published_pass: Floor power: 894.26 mW",
        "*published_pass: Average framerate = 1677.85 fps",
        "*published_pass: Total memory usage of the inference 96304 Byte",
        "*published_pass: Quality = 122.8 (pass: the bar is < 200)",
    ])
    # The failure's message is the printout itself, not a traceback.
    result.stdout.fnmatch_lines(["*published_fail::hardware_quality*",
                                 "Quality = 989.6 (fail: the bar is < 200)"])
    assert "runner.py" not in result.stdout.str()

    records = grades(grading.path / "grades.json")
    failed, passed = records["published_fail"], records["published_pass"]
    assert hardware_check(failed)["outcome"] == "failed"
    assert "Quality = 989.6" in hardware_check(failed)["message"]
    assert hardware_check(passed)["outcome"] == "passed"
    assert failed["metrics"]["quality"] == pytest.approx(989.6, abs=0.05)
    assert passed["metrics"]["quality"] == pytest.approx(122.8, abs=0.05)
    for record, figures in ((failed, PUBLISHED_FAIL), (passed, PUBLISHED_PASS)):
        metrics = record["metrics"]
        assert metrics["source"] == "replay"
        assert metrics["hardware_accuracy"] == figures["accuracy"]
        for name in ("fps", "avg_power_mw", "floor_power_mw", "energy_mj_per_frame",
                     "memory_bytes"):
            assert metrics[name] == figures[name], name
    result.stdout.fnmatch_lines(["published_fail: 0/1 checks passed; quality 989.6 (replay)*",
                                 "published_pass: 1/1 checks passed; quality 122.8 (replay)"])


# --- Replay file problems -----------------------------------------------------------------------


def test_a_missing_replay_file_is_an_error_naming_the_file(grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-replay=nowhere.json", "--akida-json=grades.json",
                               *ONLY_HARDWARE)
    result.assert_outcomes(errors=1)
    assert_shown(result, "nowhere.json: no such file")
    message = hardware_check(grades(grading.path / "grades.json")["alice"])["message"]
    assert "nowhere.json: no such file" in message


def test_a_student_missing_from_the_replay_file_is_skipped_saying_so(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    add_student(grading, "bob", student_source())
    replay = write_replay(grading, {"alice": PUBLISHED_PASS})
    result = grading.runpytest(f"--akida-replay={replay}", "--akida-json=grades.json", "-rs",
                               *ONLY_HARDWARE)
    result.assert_outcomes(passed=1, skipped=1)
    bob = grades(grading.path / "grades.json")["bob"]
    assert hardware_check(bob)["outcome"] == "skipped"
    # The recording's name, not the grader's path to it (no host path reaches a student).
    assert hardware_check(bob)["message"].startswith(f"{replay.name} has no figures for bob. ")
    assert bob["metrics"]["source"] == "none"
    result.stdout.fnmatch_lines([f"SKIPPED*{replay.name} has no figures for bob*"])


def test_a_malformed_replay_file_is_an_error_naming_student_and_field(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    replay = write_replay(grading, {"alice": {**PUBLISHED_PASS, "accuracy": 97.61}})
    result = grading.runpytest(f"--akida-replay={replay}", *ONLY_HARDWARE)
    result.assert_outcomes(errors=1)
    assert_shown(result, "replay.json: student 'alice': field 'accuracy' is 97.61, which looks "
                         "like a percentage; give a fraction between 0 and 1 (e.g. 0.9761)")


# --- Neither board nor replay -------------------------------------------------------------------


def test_without_board_or_replay_it_is_skipped_and_says_how_to_measure(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-json=grades.json", "-rs", *ONLY_HARDWARE)
    result.assert_outcomes(skipped=1)
    alice = grades(grading.path / "grades.json")["alice"]
    message = hardware_check(alice)["message"]
    assert "--akida-device" in message and "--akida-replay FILE" in message
    assert "Estimate" not in message  # no accuracy ran: nothing to estimate from, no training
    assert alice["metrics"]["source"] == "none"
    result.stdout.fnmatch_lines(["SKIPPED*not measured: no board and no recording*"])


def test_after_the_accuracy_checks_the_skip_carries_the_energy_budget_estimate(
        grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-json=grades.json", "-rs",
                               "-k", "akida_accuracy or hardware_quality")
    result.assert_outcomes(passed=1, skipped=1)
    alice = grades(grading.path / "grades.json")["alice"]
    metrics = alice["metrics"]
    budget = energy_budget_mj(metrics["akida_accuracy"], metrics["program_memory_bytes"], 200.0)
    message = hardware_check(alice)["message"]
    assert f"latency x power <= {budget:.3f} mJ/frame" in message
    assert "an estimate" in message and "Estimate:" in message
    assert f"{metrics['program_memory_bytes']} bytes" in message
    assert "--akida-device" in message and "--akida-replay FILE" in message
    assert metrics["energy_budget_mj"] == pytest.approx(budget)
    assert metrics["source"] == "none"


# --- A recording for another model --------------------------------------------------------------


def test_a_replay_recorded_for_another_model_is_an_error(grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    replay = write_replay(grading, {"alice": {**PUBLISHED_PASS, "model_sha256": "0" * 64}})
    result = grading.runpytest(f"--akida-replay={replay}", "--akida-json=grades.json",
                               *ONLY_HARDWARE)
    result.assert_outcomes(errors=1)
    assert_shown(result, "the figures for alice in")
    assert_shown(result, "were recorded for another model")
    alice = grades(grading.path / "grades.json")["alice"]
    assert hardware_check(alice)["outcome"] == "error"
    assert "--akida-device --akida-record FILE" in hardware_check(alice)["message"]


# --- The board, through the double --------------------------------------------------------------


def test_on_the_board_it_measures_the_converted_model_and_records_a_replayable_file(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        mnist_labels: np.ndarray) -> None:
    board = install_board(monkeypatch, mnist_labels)
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-device=0", "--akida-record=record.json",
                               "--akida-json=grades.json", *ONLY_HARDWARE)
    result.assert_outcomes(passed=1)

    # The double ran the model file the grade stage converted, with power measured around it.
    loaded = [call for call in board.calls if call.startswith("Model(filename=")]
    assert len(loaded) == 1
    model_path = Path(loaded[0].removeprefix("Model(filename=").removesuffix(")"))
    assert model_path.is_file() and model_path.name == "model.fbz"
    calls = board.calls
    assert calls.index("power_measurement_enabled=True") < calls.index(
        "forward(batch_size=100)")
    assert calls[-1] == "power_measurement_enabled=False"

    accuracy = round(PUBLISHED_RUN["accuracy"] * TEST_LIMIT) / TEST_LIMIT  # scored on 500 labels
    quality = quality_formula(accuracy, PUBLISHED_RUN["fps"], PUBLISHED_RUN["powers"]["Avg"],
                               PUBLISHED_RUN["memory_bytes"])
    result.stdout.fnmatch_lines([
        "*alice: Floor power: 894.26 mW",
        "*alice: Average framerate = 1677.85 fps",
        "*alice: Last inference power range (mW):  Avg 895.27 / Min 894.00 / Max 907.00 / "
        "Std 2.93",
        "*alice: Last inference energy consumed (mJ/frame): 0.53",
        "*alice: Total memory usage of the inference 96304 Byte",
        "*alice: Quantized model accuracy: * %",
        f"*alice: Hardware accuracy: {100 * accuracy:.2f} %",
        f"*alice: Quality = {quality:.1f} (pass: the bar is < 200)",
    ])
    metrics = grades(grading.path / "grades.json")["alice"]["metrics"]
    assert metrics["source"] == "device"
    assert metrics["quality"] == pytest.approx(quality)
    assert metrics["hardware_accuracy"] == accuracy
    assert (metrics["fps"], metrics["memory_bytes"]) == (1677.85, 96304)
    assert metrics["model_sha256"] == file_sha256(model_path)

    recorded = load_replay(grading.path / "record.json")
    assert set(recorded) == {"alice"}
    alice = recorded["alice"]
    assert alice.model_sha256 == file_sha256(model_path)
    assert (alice.accuracy, alice.fps, alice.avg_power_mw, alice.floor_power_mw) == (
        accuracy, 1677.85, 895.27, 894.26)
    assert (alice.energy_mj_per_frame, alice.memory_bytes) == (0.53, 96304)

    # Replayed without the board, the recording gives the same verdict: the sha256 matches.
    replayed = grading.runpytest("--akida-replay=record.json", "--akida-json=replayed.json",
                                 *ONLY_HARDWARE)
    replayed.assert_outcomes(passed=1)
    again = grades(grading.path / "replayed.json")["alice"]["metrics"]
    assert again["source"] == "replay"
    assert again["quality"] == pytest.approx(quality)


def test_a_board_index_that_does_not_exist_is_an_error_listing_the_boards(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        mnist_labels: np.ndarray) -> None:
    install_board(monkeypatch, mnist_labels, device_count=1)
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-device=3", *ONLY_HARDWARE)
    result.assert_outcomes(errors=1)
    assert_shown(result, "no Akida board at index 3: akida.devices() returned "
                         "['PCIe/NSoC_v2/0']. Use --akida-device=N with N from 0 to 0.")


def test_with_no_board_at_all_it_errors_with_the_listing_and_the_other_checks_still_run(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        mnist_labels: np.ndarray) -> None:
    install_board(monkeypatch, mnist_labels, device_count=0)
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-device=0", "--akida-json=grades.json",
                               "-k", "loads or layer_whitelist or hardware_quality")
    result.assert_outcomes(passed=2, errors=1)
    assert_shown(result, "no Akida board found: akida.devices() returned []. Check the board")
    checks = grades(grading.path / "grades.json")["alice"]["checks"]
    assert checks["loads"]["outcome"] == checks["layer_whitelist"]["outcome"] == "passed"
    assert checks["hardware_quality"]["outcome"] == "error"
    assert "--akida-replay FILE" in checks["hardware_quality"]["message"]


def test_a_bare_akida_device_flag_does_not_eat_the_path_after_it(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        mnist_labels: np.ndarray) -> None:
    # In-process runs go through Config.parse, so the plugin's pytest_load_initial_conftests
    # sees (and rewrites) these very arguments, as on the command line.
    install_board(monkeypatch, mnist_labels, device_count=0)
    add_student(grading, "alice", student_source())
    add_student(grading, "bob", student_source())
    result = grading.runpytest("--akida-device", "students/bob.py", *ONLY_HARDWARE)
    # bob alone was collected, and the flag meant "the first board" (there is none).
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of bob::hardware_quality*"])
    assert_shown(result, "no Akida board found: akida.devices() returned []")
    assert "alice" not in result.stdout.str()


def test_a_bare_akida_device_flag_before_another_option_means_the_first_board(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        mnist_labels: np.ndarray) -> None:
    install_board(monkeypatch, mnist_labels, device_count=0)
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-device", *ONLY_HARDWARE)  # `pytest --akida-device -k ..`
    assert result.ret != pytest.ExitCode.USAGE_ERROR, result.errlines
    result.assert_outcomes(errors=1)
    assert_shown(result, "no Akida board found: akida.devices() returned []")


def test_a_replay_problem_is_reported_as_its_message_alone(grading: pytest.Pytester) -> None:
    add_student(grading, "alice", student_source())
    result = grading.runpytest("--akida-replay=nowhere.json", "--akida-json=grades.json",
                               *ONLY_HARDWARE)
    result.assert_outcomes(errors=1)
    message = hardware_check(grades(grading.path / "grades.json")["alice"])["message"]
    assert message == "nowhere.json: no such file"
    assert "runner.py" not in result.stdout.str()
