"""The lab board in one pass: a class graded on shards without a board (--akida-fbz), its models
run by `measure` on the board (the double), and `merge --replay` give the gradebook one
`--akida-device` run gives; a re-run with --akida-replay gives the same hardware verdicts.

One class, graded once per way (module fixture): alice and bob (one source: trained once), carol
(the board refuses her model), erin (does not load: nothing to measure). The runs share the
session's cache, so only the first trains.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from board_double import PUBLISHED_RUN, Board
from made_up import FAST_INI, student_source

from pytest_akida_grade import board, data, labkit
from pytest_akida_grade.hardware import load_replay
from pytest_akida_grade.quality import BoardRefusal
from pytest_akida_grade.report import cli, files

TESTS = Path(__file__).resolve().parent
TEST_LIMIT = 500  # made_up.FAST_INI's akida_test_limit
CLASS = {"alice": student_source(), "bob": student_source(),
         "carol": student_source(bits=(2, 4)),  # another model (W2A4): the board refuses it
         "erin": "def build_model(:\n"}
# The board double in the class's own process (a conftest beside the students, never among them).
DOUBLE = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from board_double import Board
from pytest_akida_grade import board
board.akida = Board(np.load({labels!r}), refused={refused!r}).akida
"""


@dataclass
class Lab:
    root: Path
    measured: str  # measure's output
    status: int
    board: Board  # the double measure ran on


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                         cwd=root, capture_output=True, text=True, timeout=1500)
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _main(*args: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main([str(arg) for arg in args])
    return status, out.getvalue()


def _labels(cache: Path) -> np.ndarray:
    source = data.resolve_mnist(os.environ.get("AKIDA_GRADE_MNIST"), cache)
    return data.load_mnist(source.path)[1][1][:TEST_LIMIT]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Lab:
    root = tmp_path_factory.mktemp("lab")
    (root / "pytest.ini").write_text(FAST_INI.format(cache=shared_cache))
    (root / "students").mkdir()
    for name, source in CLASS.items():
        (root / "students" / f"{name}.py").write_text(source)
    for part in (1, 2):  # two machines without a board, each keeping its kit
        _run(root, f"--akida-shard={part}/2", f"--akida-json=part{part}.json",
             f"--akida-fbz=kit{part}")
    for part in (1, 2):  # the TA copies both folders into one, for the lab machine
        shutil.copytree(root / f"kit{part}", root / "kit", dirs_exist_ok=True)
    refused = json.loads((root / "kit" / "carol.json").read_text())["model_sha256"]
    labels = _labels(shared_cache)
    np.save(root / "labels.npy", labels)
    double = Board(labels, refused={refused})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(board, "akida", double.akida)
        status, measured = _main("measure", root / "part1.json", root / "part2.json",
                                 "--fbz", root / "kit", "--record", root / "board.json")
    assert _main("merge", root / "part1.json", root / "part2.json", "--replay",
                 root / "board.json", "--json", root / "merged.json", "--csv",
                 root / "merged.csv")[0] == 0
    # The same class on the lab machine in one run, the board in its own process.
    (root / "conftest.py").write_text(DOUBLE.format(
        tests=str(TESTS), labels=str(root / "labels.npy"), refused={refused}))
    _run(root, "--akida-device", "--akida-json=whole.json", "--akida-csv=whole.csv",
         "--akida-record=whole-board.json")
    _run(root, "--akida-replay=board.json", "--akida-json=replayed.json")
    return Lab(root, measured, status, double)


def _records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["student"]: r for r in json.loads(path.read_text())["students"]}


def _as_replayed(text: str) -> str:
    """A single run's words for figures it measured, as a recording's replay says them."""
    return text.replace("device figures", "replay figures")


def test_shards_measure_and_merge_give_the_gradebook_of_one_run_on_the_board(lab: Lab) -> None:
    with (lab.root / "whole.csv").open(newline="") as whole, \
            (lab.root / "merged.csv").open(newline="") as merged:
        one_run, merged_rows = list(csv.DictReader(whole)), list(csv.DictReader(merged))
    assert [row["student"] for row in one_run] == ["alice", "bob", "carol", "erin"]
    for row, same in zip(one_run, merged_rows, strict=True):
        # Figures from the board's recording are "replay"; the run on the board says "device".
        expected = {**row, "source": "replay" if row["source"] == "device" else row["source"]}
        assert same == expected
    assert [row["source"] for row in one_run] == ["device", "device", "", ""]
    whole, merged = _records(lab.root / "whole.json"), _records(lab.root / "merged.json")
    for name in CLASS:
        assert merged[name]["checks"] == json.loads(_as_replayed(json.dumps(
            whole[name]["checks"]))), name
        assert {**merged[name]["metrics"], "source": None} == \
            {**whole[name]["metrics"], "source": None}, name
        assert merged[name]["points"] == whole[name]["points"]
    alice = merged["alice"]
    assert alice["checks"]["hardware_quality"]["outcome"] == "passed"
    assert alice["metrics"]["fps"] == PUBLISHED_RUN["fps"]


def test_the_board_refuses_carol_alike_in_both_ways_and_the_recordings_agree(lab: Lab) -> None:
    whole, merged = _records(lab.root / "whole.json"), _records(lab.root / "merged.json")
    refusal = whole["carol"]["checks"]["hardware_quality"]
    assert refusal["outcome"] == "failed"
    assert refusal["message"].startswith("the model cannot run on the AKD1000: Cannot map")
    assert merged["carol"]["checks"]["hardware_quality"] == refusal
    recorded, one_run = load_replay(lab.root / "board.json"), \
        load_replay(lab.root / "whole-board.json")
    assert recorded == one_run  # measure records what --akida-record records
    assert isinstance(recorded["carol"], BoardRefusal)
    assert set(recorded) == {"alice", "bob", "carol"}


def test_measure_runs_each_kept_model_once_with_progress_and_says_who_has_none(lab: Lab) -> None:
    assert lab.status == 0, lab.measured
    lines = lab.measured.splitlines()
    assert lines[0] == "measure: 4 students, on PCIe/NSoC_v2/0"
    assert any(line.startswith("erin: not measured: no model kept for the board "
                               "(hardware_quality failed: not measured: the submission did not "
                               "load") for line in lines), lines
    for number, name in enumerate(("alice", "bob", "carol"), start=1):
        assert f"[{number}/3] {name}: running {name}.fbz on PCIe/NSoC_v2/0" in lines
    assert "[1/3] alice: Quality = " in lab.measured and "[2/3] bob: Floor power: 894.26 mW" \
        in lines
    assert "[3/3] carol: refused by the board: the model cannot run on the AKD1000: Cannot map " \
           "the model: it needs 112 NPs, the device has 78" in lines
    assert lines[-1].endswith("board.json: 2 measured, 1 refused by the board, 0 already "
                              "recorded, 0 not measured (see above)")
    loaded = [call for call in lab.board.calls if call.startswith("Model(filename=")]
    assert [Path(call[15:-1]).name for call in loaded] == ["alice.fbz", "bob.fbz", "carol.fbz"]


def test_a_rerun_with_the_recording_gives_the_merged_hardware_verdicts(lab: Lab) -> None:
    """Every student the board saw; erin, not in the recording, is skipped there (a replay never
    grades a student for the board) where the merge kept her "did not load": no points either
    way."""
    replayed, merged = _records(lab.root / "replayed.json"), _records(lab.root / "merged.json")
    for name in ("alice", "bob", "carol"):
        assert replayed[name]["checks"]["hardware_quality"] == \
            merged[name]["checks"]["hardware_quality"], name
    assert {name: r["points"] for name, r in replayed.items()} == \
        {name: r["points"] for name, r in merged.items()}


def test_measured_again_it_resumes_and_runs_nothing(lab: Lab, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    double = Board(_labels_of(lab))
    monkeypatch.setattr(board, "akida", double.akida)
    shutil.copy(lab.root / "board.json", tmp_path / "board.json")
    status, out = _main("measure", lab.root / "part1.json", lab.root / "part2.json", "--fbz",
                        lab.root / "kit", "--record", tmp_path / "board.json")
    assert status == 0
    assert "[1/3] alice: already recorded in board.json for this model" in out.splitlines()
    assert not [call for call in double.calls if call.startswith("Model(")]
    assert out.splitlines()[-1].endswith("0 measured, 0 refused by the board, 3 already "
                                         "recorded, 0 not measured (see above)")


def _labels_of(lab: Lab) -> np.ndarray:
    return np.load(lab.root / "labels.npy")


def test_compare_names_exactly_the_student_a_regrade_changed(
        lab: Lab, tmp_path: Path) -> None:
    """A real grade file, one check of one student changed as a rule change would, its points
    recomputed by merge: compare names bob alone, with the check and both values."""
    old = lab.root / "merged.json"
    data_ = json.loads(old.read_text())
    (bob,) = [r for r in data_["students"] if r["student"] == "bob"]
    assert bob["checks"]["v1_constraints"]["outcome"] == "passed"
    before = files.format_number(bob["points"])
    after = files.format_number(bob["points"] - 2)  # v1_constraints' points
    bob["checks"]["v1_constraints"] = {"outcome": "failed", "message": "a new rule"}
    (tmp_path / "edited.json").write_text(json.dumps(data_))
    assert _main("merge", tmp_path / "edited.json", "--json", tmp_path / "new.json")[0] == 0
    status, out = _main("compare", old, tmp_path / "new.json")
    assert status == 0
    assert out.splitlines() == ["bob: check v1_constraints: passed -> failed",
                                f"bob: points: {before} -> {after}",
                                "1 of 4 students changed: 1 in a check's outcome, 1 in points"]
    status, out = _main("compare", old, old)
    assert (status, out) == (0, "0 of 4 students changed\n")


# ---------------------------------------------------------------- without the class run


def _kit_class(tmp_path: Path, names: tuple[str, ...] = ("alice",)) -> tuple[Path, Path]:
    """A grade file and a kit of made-up models (the double never reads a model's bytes)."""
    x = np.zeros((20, 28, 28), dtype=np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10
    records = []
    for name in names:
        model = tmp_path / f"{name}-model.fbz"
        model.write_bytes(f"{name}'s converted model".encode())
        kept = labkit.keep(tmp_path / "kit", name, model, x, y, file=f"{name}.py")
        records.append({"student": name, "checks": {"hardware_quality": {
            "outcome": "skipped", "message": "not measured yet"}},
            "metrics": {"source": "none", "model_sha256": kept.model_sha256}})
    files.write_json(records, tmp_path / "grades.json")
    return tmp_path / "grades.json", tmp_path / "kit"


def test_without_a_board_measure_refuses_naming_the_board_and_the_devices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    grades, kit = _kit_class(tmp_path)
    monkeypatch.setattr(board, "akida", Board(np.zeros(20), device_count=0).akida)
    assert cli.main(["measure", str(grades), "--fbz", str(kit), "--record",
                     str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "measure needs the lab board: no Akida board found: akida.devices() returned []" \
        in err
    assert "run measure on the machine the board is in" in err
    monkeypatch.setattr(board, "akida", Board(np.zeros(20), device_count=2).akida)
    assert cli.main(["measure", str(grades), "--fbz", str(kit), "--device", "5", "--record",
                     str(tmp_path / "b.json")]) == 2
    assert "no Akida board at index 5: akida.devices() returned ['PCIe/NSoC_v2/0', " \
           "'PCIe/NSoC_v2/1']. Use --device N with N from 0 to 1." in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_measure_has_help_naming_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["measure", "--help"]) == 0
    shown = capsys.readouterr().out
    for option in ("--fbz DIR", "--device N", "--record BOARD.json", "under the board lock"):
        assert option in shown


def test_a_model_missing_or_changed_in_the_kit_is_not_measured_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grades, kit = _kit_class(tmp_path, ("alice", "bob", "carol"))
    (kit / "bob.fbz").write_bytes(b"another model")
    (kit / "carol.json").unlink()
    double = Board(np.arange(20) % 10)
    monkeypatch.setattr(board, "akida", double.akida)
    status, out = _main("measure", grades, "--fbz", kit, "--record", tmp_path / "b.json")
    assert status == 1
    assert "[2/3] bob: not measured: bob.fbz is missing or changed since it was kept" in out
    assert "[3/3] carol: not measured: no carol.json in the kit" in out
    assert set(load_replay(tmp_path / "b.json")) == {"alice"}


def test_merge_refuses_figures_recorded_for_another_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grades, _ = _kit_class(tmp_path)
    (tmp_path / "b.json").write_text(json.dumps({"alice": {"refused": "no",
                                                           "model_sha256": "0" * 64}}))
    assert cli.main(["merge", str(grades), "--replay", str(tmp_path / "b.json")]) == 2
    assert "the figures for alice were recorded for another model" in capsys.readouterr().err
