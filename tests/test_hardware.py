"""quality.py, board.py, hardware.py: Quality math, measuring through the board double,
replay/record files, the lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import akida
import numpy as np
import pytest
from board_double import Board

from pytest_akida_grade import board as board_module
from pytest_akida_grade.board import BoardError, BoardLock, measure, open_device
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.hardware import load_replay, write_record
from pytest_akida_grade.quality import (
    Measurement,
    ReplayError,
    energy_budget_mj,
    format_measurement,
    quality,
)

# The assignment's two published hardware runs.
EXAMPLE_RUN = {"accuracy": 0.9672, "fps": 770.0, "avg_power_mw": 936.80, "memory_bytes": 247984}
STUDENT_RUN = {"accuracy": 0.9761, "fps": 1677.85, "avg_power_mw": 895.27, "memory_bytes": 96304}
STUDENT_FIGURES = {**STUDENT_RUN, "floor_power_mw": 894.26, "energy_mj_per_frame": 0.53}
QUALITY_MAX = 200.0


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 10, size=10_000)


@pytest.fixture
def images() -> np.ndarray:
    return np.zeros((10_000, 28, 28), dtype=np.uint8)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "alice.fbz"
    path.write_bytes(b"converted model bytes")
    return path


def board_for(monkeypatch: pytest.MonkeyPatch, labels: np.ndarray, **kwargs: object) -> Board:
    board = Board(labels, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(board_module, "akida", board.akida)
    return board


def student_measurement(**changes: object) -> Measurement:
    return Measurement(**{**STUDENT_FIGURES, **changes})  # type: ignore[arg-type]


# --- Quality ---------------------------------------------------------------------------------


def test_the_assignment_example_run_scores_about_990_and_fails_the_bar() -> None:
    score = quality(**EXAMPLE_RUN)
    assert score == pytest.approx(989.6, abs=0.1)
    assert score >= QUALITY_MAX


def test_the_published_student_run_scores_about_123_and_passes_the_bar() -> None:
    score = quality(**STUDENT_RUN)
    assert score == pytest.approx(122.8, abs=0.1)
    assert score < QUALITY_MAX


def test_a_measurement_scores_itself_with_the_same_formula() -> None:
    assert student_measurement().quality() == pytest.approx(quality(**STUDENT_RUN))


def test_quality_refuses_a_zero_framerate() -> None:
    with pytest.raises(ValueError, match="fps"):
        quality(0.97, 0.0, 900.0, 1000)


def test_the_energy_budget_is_the_energy_per_frame_that_lands_exactly_on_the_bar() -> None:
    budget = energy_budget_mj(0.9761, 96304)
    assert budget == pytest.approx(200 / (2.39 * 96304) * 1000)
    # latency x power at the budget gives Quality == bar
    assert (100 - 97.61) * (budget / 1000) * 96304 == pytest.approx(QUALITY_MAX)


def test_the_published_student_run_is_within_its_energy_budget_and_the_example_is_not() -> None:
    student_energy = 895.27 / 1677.85  # mJ/frame, what akida reports as energy
    example_energy = 936.80 / 770.0
    assert student_energy < energy_budget_mj(0.9761, 96304)
    assert example_energy > energy_budget_mj(0.9672, 247984)


def test_the_energy_budget_scales_with_the_bar_and_is_unbounded_at_perfect_accuracy() -> None:
    assert energy_budget_mj(0.99, 1000, quality_max=400) == pytest.approx(
        2 * energy_budget_mj(0.99, 1000))
    assert energy_budget_mj(1.0, 1000) == float("inf")


# --- measure() through the double -------------------------------------------------------------


def test_the_boards_figures_flow_through_measure(monkeypatch, model_file, images, labels) -> None:
    board_for(monkeypatch, labels)
    m = measure(model_file, open_device(), images, labels, settle_s=0)
    assert (m.fps, m.avg_power_mw, m.floor_power_mw) == (1677.85, 895.27, 894.26)
    assert (m.min_power_mw, m.max_power_mw, m.std_power_mw) == (894.0, 907.0, 2.93)
    assert (m.energy_mj_per_frame, m.memory_bytes) == (0.53, 96304)
    assert m.model_sha256 == file_sha256(model_file)
    assert m.quality() == pytest.approx(122.8, abs=0.1)


def test_measure_computes_accuracy_from_the_boards_outputs(
        monkeypatch, model_file, images, labels) -> None:
    board_for(monkeypatch, labels)
    assert measure(model_file, open_device(), images, labels, settle_s=0).accuracy == 0.9761
    # The same outputs scored against other labels give another accuracy: nothing is copied.
    assert measure(model_file, open_device(), images, (labels + 1) % 10, settle_s=0).accuracy < 0.1


def test_power_measurement_is_enabled_before_the_run_and_disabled_after(
        monkeypatch, model_file, images, labels) -> None:
    board = board_for(monkeypatch, labels)
    measure(model_file, open_device(), images, labels, settle_s=0, batch_size=100)
    calls = board.calls
    assert calls[:2] == [f"Model(filename={model_file})", "map"]
    assert calls.index("power_measurement_enabled=True") < calls.index("forward(batch_size=100)")
    assert calls[-1] == "power_measurement_enabled=False"
    assert calls.index("forward(batch_size=100)") < calls.index("memory")


def test_power_measurement_is_disabled_even_when_the_run_fails(
        monkeypatch, model_file, labels) -> None:
    board = board_for(monkeypatch, labels)
    wrong_shape = np.zeros((10_000, 32, 32, 1), dtype=np.uint8)
    monkeypatch.setattr(board_module, "_board_inputs", lambda x: x)  # let the bad input reach akida
    with pytest.raises(ValueError, match="input shape"):
        measure(model_file, open_device(), wrong_shape, labels, settle_s=0)
    assert board.calls[-1] == "power_measurement_enabled=False"


def test_sequences_off_the_chip_are_counted(monkeypatch, model_file, images, labels) -> None:
    board_for(monkeypatch, labels, software_sequences=2)
    assert measure(model_file, open_device(), images, labels, settle_s=0).software_sequences == 2


def test_a_run_without_power_figures_is_an_error_not_a_guess(
        monkeypatch, model_file, images, labels) -> None:
    board = board_for(monkeypatch, labels)
    device = open_device()
    # A soc whose switch does nothing: akida then reports fps but no powers.
    monkeypatch.setattr(type(device.soc), "power_measurement_enabled",
                        property(lambda self: False, lambda self, value: None))
    with pytest.raises(BoardError, match="no fps/power"):
        measure(model_file, device, images, labels, settle_s=0)
    assert "statistics" in board.calls


def test_measure_refuses_the_virtual_akd1000(model_file, images, labels) -> None:
    with pytest.raises(BoardError, match="not a real board"):
        measure(model_file, akida.AKD1000(), images, labels, settle_s=0)


def test_measure_refuses_float_pixels(monkeypatch, model_file, labels) -> None:
    board_for(monkeypatch, labels)
    with pytest.raises(ValueError, match="uint8"):
        measure(model_file, open_device(), np.zeros((10_000, 28, 28)), labels, settle_s=0)


# --- open_device -------------------------------------------------------------------------------


def test_no_board_is_an_error_saying_what_akida_found_and_what_to_do() -> None:
    with pytest.raises(BoardError, match=r"akida\.devices\(\) returned \[\].*--akida-replay"):
        open_device(devices=[])


def test_without_a_board_the_real_akida_call_gives_the_same_error() -> None:
    if akida.devices():
        pytest.skip("an Akida board is attached to this machine")
    with pytest.raises(BoardError, match="no Akida board found"):
        open_device()


def test_a_board_index_out_of_range_lists_the_boards(labels) -> None:
    board = Board(labels, device_count=2)
    with pytest.raises(BoardError, match=r"index 2.*PCIe/NSoC_v2/0.*0 to 1"):
        open_device(2, devices=board.devices)
    with pytest.raises(BoardError, match="index -1"):
        open_device(-1, devices=board.devices)


def test_open_device_picks_the_requested_board(labels) -> None:
    board = Board(labels, device_count=2)
    assert open_device(devices=board.devices) is board.devices[0]
    assert open_device(1, devices=board.devices) is board.devices[1]


# --- Replay and record files -------------------------------------------------------------------


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_good_replay_file_loads(tmp_path: Path) -> None:
    path = write_json(tmp_path / "replay.json",
                      {"alice": {**STUDENT_FIGURES, "model_sha256": "ab" * 32}})
    replay = load_replay(path)
    assert replay == {"alice": student_measurement(model_sha256="ab" * 32)}


def test_a_missing_replay_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"nope\.json: no such file"):
        load_replay(tmp_path / "nope.json")


def test_a_replay_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "replay.json"
    path.write_text("{alice: 1")
    with pytest.raises(ReplayError, match=r"replay\.json is not valid JSON"):
        load_replay(path)


def test_a_replay_file_that_is_not_a_map_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="expected a JSON object mapping student"):
        load_replay(write_json(tmp_path / "replay.json", [STUDENT_FIGURES]))


@pytest.mark.parametrize(("change", "message"), [
    ({"fps": None}, "Measurement.fps: expected float, got NoneType None"),
    ({"fps": "fast"}, "Measurement.fps: expected float, got str 'fast'"),
    ({"avg_power_mw": True}, "Measurement.avg_power_mw: expected float, got bool True"),
    ({"memory_bytes": -1}, "field 'memory_bytes' must be a number >= 0, got -1"),
    ({"memory_bytes": 96304.5}, "Measurement.memory_bytes: expected int, got float 96304.5"),
    ({"fps": 0}, "field 'fps' must be greater than 0"),
    ({"accuracy": 97.61}, "'accuracy' is 97.61, which looks like a percentage.*0.9761"),
    ({"avg_power": 895.27}, "unknown field.*'avg_power'"),
    ({"model_sha256": 5}, r"Measurement.model_sha256: expected str \| None, got int 5"),
])
def test_a_bad_field_is_reported_with_file_student_and_field(
        tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = write_json(tmp_path / "replay.json", {"bob": {**STUDENT_FIGURES, **change}})
    with pytest.raises(ReplayError, match=rf"replay\.json: student 'bob': .*{message}"):
        load_replay(path)


@pytest.mark.parametrize(("figures", "message"), [
    ('{"fps": Infinity}', "holds a number that is not finite"),
    ('{"memory_bytes": 1' + "0" * 30 + "}", "holds a whole number beyond 64 bits"),
    ("[" * 5000 + "]" * 5000, "is nested more than 64 levels deep"),
])
def test_a_huge_or_nested_value_is_refused_naming_the_file(
        tmp_path: Path, figures: str, message: str) -> None:
    path = tmp_path / "replay.json"
    path.write_text('{"bob": ' + figures + "}")
    with pytest.raises(ReplayError, match=rf"replay\.json {message}"):
        load_replay(path)


def test_a_missing_field_is_reported(tmp_path: Path) -> None:
    figures = {k: v for k, v in STUDENT_FIGURES.items() if k != "floor_power_mw"}
    path = write_json(tmp_path / "replay.json", {"bob": figures})
    with pytest.raises(ReplayError, match=r"student 'bob': Measurement: missing fields "
                                          r"\['floor_power_mw'\]"):
        load_replay(path)


def test_a_recorded_measurement_replays_identically(tmp_path: Path) -> None:
    path = tmp_path / "out" / "record.json"
    alice = student_measurement(min_power_mw=894.0, max_power_mw=907.0, std_power_mw=2.93,
                                software_sequences=1, model_sha256="cd" * 32)
    write_record(path, {"alice": alice})
    assert load_replay(path) == {"alice": alice}


def test_recording_merges_into_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_record(path, {"alice": student_measurement(), "bob": student_measurement(fps=10.0)})
    write_record(path, {"bob": student_measurement(fps=20.0), "carol": student_measurement()})
    replay = load_replay(path)
    assert sorted(replay) == ["alice", "bob", "carol"]
    assert replay["bob"].fps == 20.0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_recording_refuses_to_overwrite_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("not json")
    with pytest.raises(ReplayError, match="not valid JSON"):
        write_record(path, {"alice": student_measurement()})
    assert path.read_text() == "not json"


def test_the_sha256_of_a_file_is_its_hex_digest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert file_sha256(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


# --- Reporting ---------------------------------------------------------------------------------


def test_the_printout_has_the_assignments_lines() -> None:
    m = student_measurement(min_power_mw=894.0, max_power_mw=907.0, std_power_mw=2.93)
    text = format_measurement("alice", m, quantized_accuracy=0.9761, quality_max=QUALITY_MAX)
    for line in ["Floor power: 894.26 mW",
                 "Average framerate = 1677.85 fps",
                 "Last inference power range (mW):  Avg 895.27 / Min 894.00 / Max 907.00 / "
                 "Std 2.93",
                 "Last inference energy consumed (mJ/frame): 0.53",
                 "Total memory usage of the inference 96304 Byte",
                 "Quantized model accuracy: 97.61 %",
                 "Hardware accuracy: 97.61 %",
                 "Quality = 122.8 (pass: the bar is < 200)"]:
        assert line in text.splitlines()
    assert "alice" in text.splitlines()[0]


def test_the_printout_fails_a_run_over_the_bar_and_flags_host_sequences() -> None:
    m = student_measurement(accuracy=0.9672, fps=770.0, avg_power_mw=936.80,
                            memory_bytes=247984, software_sequences=1)
    text = format_measurement("bob", m, quantized_accuracy=None, quality_max=QUALITY_MAX)
    assert "Quality = 989.6 (fail: the bar is < 200)" in text
    assert "Sequences run on the host CPU, not the chip: 1" in text
    assert "Quantized model accuracy" not in text
    assert "Last inference power range (mW):  Avg 936.80" in text.splitlines()


# --- The board lock ----------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, filelock
    with filelock.FileLock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_the_board_lock_keeps_out_a_second_process_until_released(tmp_path: Path) -> None:
    lock_path = tmp_path / "board.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BoardError, match=r"board is busy.*0\.2 s"), \
                BoardLock(lock_path, timeout=0.2):
            pass
    finally:
        holder.communicate("release\n", timeout=10)
    with BoardLock(lock_path, timeout=1):
        pass


def test_the_board_lock_is_held_only_inside_the_with_block(tmp_path: Path) -> None:
    lock_path = tmp_path / "sub" / "board.lock"
    with BoardLock(lock_path) as lock:
        assert lock.path == lock_path
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys, filelock; filelock.FileLock(sys.argv[1], timeout=0.1).acquire()",
             str(lock_path)], capture_output=True, text=True)
        assert probe.returncode != 0 and "Timeout" in probe.stderr
    with BoardLock(lock_path, timeout=0.1):
        pass
