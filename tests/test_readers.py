"""Every reader of what a submission (or a file) produced, driven with hostile input: nested past
the interpreter's recursion limit, truncated, huge and mistyped. Each reads it or refuses it with
its own error and a message in words (never a traceback, a Python repr or an unbounded dump);
none raises anything else, and none turns it into a grader error.

The inputs are a valid document of each reader and seeded mutations of it (no new dependency):
every prefix cut at a few points, each value replaced by each value of another type, a value
nested thousands of levels deep, numbers past float and 64-bit range, a very long string.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from made_up import student_source

from pytest_akida_grade import codec, labkit, roster, similarity, stages
from pytest_akida_grade.cache import Cache
from pytest_akida_grade.codec import RecordError
from pytest_akida_grade.evaluator import client, pipeline
from pytest_akida_grade.hardware import load_replay
from pytest_akida_grade.quality import ReplayError
from pytest_akida_grade.report import canvas, cli, lms, unpack
from pytest_akida_grade.results import Built, BuiltAndGraded, HarnessError
from pytest_akida_grade.sandbox import watch

SEED = 28
DEEP = 5000  # levels: past the recursion limit of json's C scanner (~1000)
# What a message may not show: our traceback, a Python object's repr, a host path of ours.
INTERNALS = ("Traceback", 'File "', "object at 0x", "<class", "<function", "RecursionError")
MISTYPED: tuple[object, ...] = (None, True, -1, 1 << 70, 1.5, "=1+1", "x" * 100_000, [], {},
                                [[[[[1]]]]])


def valid_model() -> dict[str, object]:
    layer = {"module": "keras.layers", "registered_name": None}
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {**layer, "class_name": "InputLayer",
         "config": {"batch_input_shape": [None, 28, 28, 1], "dtype": "float32", "name": "in"}},
        {**layer, "class_name": "Rescaling", "config": {"name": "r", "scale": 0.0039,
                                                         "offset": 0.0, "dtype": "float32"}},
        {**layer, "class_name": "Conv2D", "config": {
            "name": "c", "filters": 8, "kernel_size": [3, 3], "strides": [1, 1],
            "padding": "same", "activation": "linear", "use_bias": True}},
        {**layer, "class_name": "ReLU", "config": {"name": "u", "max_value": 3.0}},
        {**layer, "class_name": "Flatten", "config": {"name": "f"}},
        {**layer, "class_name": "Dense", "config": {"name": "d", "units": 10}}]}}


MAPPED = {"error": None, "nps": 3, "hardware_sequences": 1, "software_sequences": 0,
          "program_memory_bytes": 4000}
BUILT = {"layers": [{"index": 0, "name": "c", "class_name": "Conv2D", "config": {"filters": 8}}],
         "params": 80, "weight_bits": 4, "activation_bits": 4,
         "violations": {"v1_constraints": [{"rule": "r", "message": "m", "layer_index": 0,
                                            "layer_name": "c", "documented": True}]},
         "v1": {"bits": [4, 4], "declared_bits_used": True, "conversion_error": None,
                "cut_at": None, "warnings": ["w"], "mapping": MAPPED},
         "route": "default recipe", "not_rebuilt": None}
GRADED = {"n_train": 100, "n_test": 50, "route": "train()", "float_accuracy": 0.98,
          "quantized_accuracy": 0.97, "akida_accuracy": 0.96, "quantize_attempt": 0,
          "attempt_val_accuracies": [0.97], "cut_at": None, "mapping": MAPPED,
          "peak_rss_mb": 800.0, "model_path": ""}
FIGURES = {"accuracy": 0.9761, "fps": 1677.85, "avg_power_mw": 895.27, "floor_power_mw": 894.26,
           "energy_mj_per_frame": 0.53, "memory_bytes": 96304, "min_power_mw": 894.0,
           "max_power_mw": None, "std_power_mw": None, "software_sequences": 0,
           "model_sha256": None}


def valid_grades() -> dict[str, object]:
    checks = {"loads": {"outcome": "passed", "message": "ok"},
              "v1_constraints": {"outcome": "failed", "message": "no"},
              "test_course": {"outcome": "skipped", "message": "later"}}
    fingerprint = {"source": "ab" * 32, "weights_file": None, "weights": "train()",
                   "architecture": "cd" * 32, "sketch": [[[0.5, 1.0, -1.0, 0.25]] * 4]}
    record = {"student": "alice", "file": "alice.py", "late": False, "handed_in": ["a.py"],
              "checks": checks, "metrics": {"quantized_accuracy": 0.97, "fps": 770.0,
                                            "quality": 122.8, "source": "replay"},
              "points": 7.5, "max_points": 10.0, "seconds": 4.2, "fingerprint": fingerprint}
    return {"students": [record, {**record, "student": "bob"}],
            "not_graded": [{"file": "x.ipynb", "reason": "a notebook", "fix": "export it"}]}


TEST_SET = (np.zeros((2, 28, 28), "uint8"), np.array([3, 7]))
KIT_ENTRY = {"format": labkit.FORMAT, "student": "alice", "file": "alice.py", "model": "alice.fbz",
             "model_sha256": "ab" * 32, "test_set": "test_set.npz",
             "test_set_sha256": labkit._arrays_sha256(*TEST_SET), "images": 2, "input": "uint8"}


def one_student() -> dict[str, object]:
    grades = valid_grades()
    return {"students": grades["students"][:1]}  # type: ignore[index]


# ---------------------------------------------------------------------------- mutations


def _paths(value: object, path: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*path, key))


def _replaced(document: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return copy


def _text(value: object) -> str:
    return json.dumps(value, allow_nan=True)


def mutations(document: object, count: int) -> list[str]:
    """Seeded hostile variants of a valid JSON document."""
    rng = random.Random(SEED)
    text = _text(document)
    found = ["[" * DEEP + "]" * DEEP, '{"a": ' * DEEP, "", "nul", "1" * 5000, "\ud800",
             text[: len(text) // 2], text.replace("}", "", 1)]
    found += [text[: rng.randrange(len(text))] for _ in range(4)]
    paths = list(_paths(document))
    for _ in range(count):
        path, value = rng.choice(paths), rng.choice(MISTYPED)
        found.append(_text(_replaced(document, path, value)))
    for path in rng.sample(paths, min(6, len(paths))):
        found.append(_text(_replaced(document, path, "PLACEHOLDER")).replace(
            '"PLACEHOLDER"', rng.choice(["[" * DEEP + "]" * DEEP, "1e999", "-Infinity", "NaN",
                                         "9" * 400, '"\\udcff"', '{"\\ud800": 1}'])))
    return found


def in_words(message: str) -> None:
    """A refusal a person reads: no internals, no unbounded dump of what was read."""
    assert message.strip(), "an empty message"
    for internal in INTERNALS:
        assert internal not in message, message[:500]
    assert len(message) < 4000, message[:500]


# ---------------------------------------------------------------------------- the readers


@dataclass(frozen=True)
class Reader:
    """One reader: its valid document and how to run it; it returns its refusal (None when it
    read the input) and may raise only what `read` turns into that refusal."""

    valid: object
    read: Callable[[bytes, Path], str | None]
    count: int = 60
    refuses: bool = True  # False: it ignores what is not for it (a sandbox's line)


def _meta(data: bytes, tmp: Path) -> str | None:
    """meta.json as a notebook hands it over: its run too."""
    (tmp / "meta.json").write_bytes(data)
    return stages.declarations(tmp, pretrained=False, trains_itself=True).failure


def _model(data: bytes, tmp: Path) -> str | None:
    """model.json as the evaluator reads it before any rebuild: the gate, then the rules of a
    model it does not rebuild (judged on its JSON)."""
    (tmp / "model.json").write_bytes(data)
    try:
        config, layers = pipeline.exported(tmp / "model.json")
    except pipeline.SubmissionError as error:
        return str(error)
    pipeline.why_not_rebuilt(config, layers)
    pipeline._not_rebuilt(layers, 4, 4, "default recipe", "a test")
    similarity.architecture_hash(data, [])
    return None


def _manifest(data: bytes, tmp: Path) -> str | None:
    problems: list[str] = []
    cache = Cache(tmp / "cache", on_problem=problems.append)
    entry = tmp / "cache" / "build" / ("b" * 64)
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "manifest.json").write_bytes(data)
    found = cache.load("build", "b" * 64, Built)
    assert (found is None) == bool(problems)
    return problems[0] if problems else None


def _reply(data: bytes, tmp: Path) -> str | None:
    """The evaluator's reply line: read, then typed (a badly typed one is ours: a HarnessError,
    never a raw exception)."""
    message = client._parse(data)
    reply = client.Reply(ok=message.get("ok"))
    try:
        reply.stage(lambda ok: BuiltAndGraded.from_json(ok).stages(), "alice")
    except HarnessError as error:
        return str(error)
    return None


def _line(data: bytes, tmp: Path) -> str | None:
    seen = watch.Watch()
    watch._event(seen, data, watch.ChildJob(  # type: ignore[call-arg]
        name="a", module=tmp, weights=None, phases=("build",), seed=0, train_data=None,
        seconds=1, timeout_source="", build_seconds=1, build_timeout_source="",
        memory_bytes=1), tmp, tmp, lambda said: None, lambda phase, path: None)
    return seen.failure


def _replay(data: bytes, tmp: Path) -> str | None:
    (tmp / "replay.json").write_bytes(data)
    try:
        load_replay(tmp / "replay.json")
    except ReplayError as error:
        return str(error)
    return None


def _kit(data: bytes, tmp: Path) -> str | None:
    """The lab board's kit (--akida-fbz) read back by `measure`: an entry, then its test set."""
    (tmp / "alice.json").write_bytes(data)
    if not (tmp / "test_set.npz").exists():
        np.savez(tmp / "test_set.npz", x_test=TEST_SET[0], y_test=TEST_SET[1])
    try:
        kept = labkit.read(tmp, ["alice"])
        if "alice" in kept:
            labkit.test_set(kept["alice"])
    except labkit.KitError as error:
        return str(error)
    return None


def _command(*argv: str) -> str | None:
    """A command of `python -m pytest_akida_grade`: its error, or None when it succeeded."""
    errors = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", errors)
        patch.setattr("sys.stdout", io.StringIO())
        status = cli.main(list(argv))
    assert status in (0, 2), errors.getvalue()
    assert (status == 2) == bool(errors.getvalue()), errors.getvalue()
    return errors.getvalue() or None


def _merge(data: bytes, tmp: Path) -> str | None:
    """grades.json read back by `merge`, every output written."""
    (tmp / "grades.json").write_bytes(data)
    return _command("merge", str(tmp / "grades.json"), f"--json={tmp / 'm.json'}",
                    f"--csv={tmp / 'm.csv'}", f"--html={tmp / 'm.html'}",
                    f"--gradescope={tmp / 'gs'}")


def _results(data: bytes, tmp: Path) -> str | None:
    """A one-student grades.json read back by `gradescope-results` and `canvas`."""
    (tmp / "grades.json").write_bytes(data)
    (tmp / "export.csv").write_text(GRADEBOOK)
    return _command("gradescope-results", str(tmp / "grades.json"), str(tmp / "r.json")) or \
        _command("canvas", str(tmp / "grades.json"), f"--gradebook={tmp / 'export.csv'}",
                 "--assignment=Assignment 3", f"--out={tmp / 'import.csv'}")


JSON_READERS = {
    "meta.json": Reader({"weight_bits": 4, "activation_bits": 1, "route": "own training", "run": {
        "model": "model_keras", "cells": 9, "ran": 7, "stopped": "code cell 8 raised IndexError",
        "not_run": ["code cell 1: %pip install akida"], "load_data": True, "fitted": True}},
        _meta),
    "model.json": Reader(valid_model(), _model, count=150),
    "manifest.json": Reader({"result": BUILT, "failure": None, "files": {}}, _manifest),
    "the evaluator's reply": Reader({"id": 1, "ok": {"built": BUILT, "graded": GRADED}}, _reply),
    "a sandbox event": Reader({"event": "progress", "message": "epoch 1"}, _line,
                              refuses=False),
    "a board recording": Reader({"alice": FIGURES, "bob": {"refused": "cannot map",
                                                            "model_sha256": None}}, _replay),
    "a kit entry": Reader(KIT_ENTRY, _kit),
    "grades.json": Reader(valid_grades(), _merge, count=120),
    "one student's grades.json": Reader(one_student(), _results),
}


@pytest.mark.parametrize("name", list(JSON_READERS))
def test_every_json_reader_refuses_hostile_input_in_words_and_raises_nothing_else(
        name: str, tmp_path: Path) -> None:
    reader = JSON_READERS[name]
    assert reader.read(_text(reader.valid).encode(), tmp_path) is None  # the valid one reads
    refused = 0
    for text in mutations(reader.valid, reader.count):
        message = reader.read(text.encode("utf-8", "surrogatepass"), tmp_path)
        if message is not None:
            in_words(message)
            refused += 1
    assert refused >= 10 or not reader.refuses  # the deep, truncated and huge ones at least


# ---------------------------------------------------------------------------- weights files


def _npz(*arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def _flagged(data: bytes, flag: int) -> bytes:
    """Every member marked with a general-purpose flag (0x1: encrypted)."""
    found = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = found.find(signature)
        while start >= 0:
            found[start + offset] |= flag
            start = found.find(signature, start + 1)
    return bytes(found)


def _weights_variants() -> Iterator[bytes]:
    valid = _npz(np.ones((3, 3, 1, 8), "float32"), np.zeros(8, "float32"))
    yield from (valid[:cut] for cut in (0, 10, 100, len(valid) // 2, len(valid) - 5))
    yield _flagged(valid, 0x1)  # numpy raises RuntimeError: "File ... is encrypted"
    yield valid.replace(b"'descr': '<f4'", b"'descr': '|O8'")  # objects: a pickle
    yield valid.replace(b"(3, 3, 1, 8)", b"(9999999, 9999999, 99, 8)")  # more than it holds
    yield valid.replace(b"arr_1", b"arr_9")
    yield b"PK\x03\x04" + b"\xff" * 200
    yield _npz(np.array(["a", "b"]))  # not numbers
    rng = random.Random(SEED)
    for _ in range(40):
        flipped = bytearray(valid)
        flipped[rng.randrange(len(valid))] ^= 1 << rng.randrange(8)
        yield bytes(flipped)


def test_a_hostile_test_set_in_the_kit_is_refused_in_words(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x_test=TEST_SET[0], y_test=TEST_SET[1])
    for data in (_flagged(buffer.getvalue(), 0x1), buffer.getvalue()[:300],
                 _npz(*TEST_SET)):  # encrypted, truncated, wrong names
        (tmp_path / "test_set.npz").write_bytes(data)
        kept = labkit.Kept("alice", tmp_path / "alice.fbz", "ab", tmp_path / "test_set.npz",
                           str(KIT_ENTRY["test_set_sha256"]))
        with pytest.raises(labkit.KitError) as refused:
            labkit.test_set(kept)
        in_words(str(refused.value))


def test_a_weights_file_of_many_arrays_reads_in_the_order_it_was_written() -> None:
    written = [np.full((2, index + 1), index, "float32") for index in range(12)]  # arr_10 < arr_2
    found = codec.arrays(_npz(*written), what="weights.npz", limit=1 << 20)
    assert [a.shape for a in found] == [a.shape for a in written]
    assert all((a == b).all() for a, b in zip(found, written, strict=True))


def test_a_hostile_weights_file_is_refused_by_the_one_reader_and_never_fails_a_fingerprint(
        ) -> None:
    model = _text(valid_model()).encode()
    refused = 0
    for data in _weights_variants():
        try:
            codec.arrays(data, what="the exported weights", limit=1 << 20)
        except RecordError as error:
            in_words(str(error))
            refused += 1
        printed = similarity.fingerprint(b"x = 1\n", None, model, data, "train()")
        assert isinstance(printed.get("architecture", ""), str)
    assert refused >= 10


# ---------------------------------------------------------------------------- CSV and LMS files


def _csv_variants(valid: str) -> Iterator[str]:
    rng = random.Random(SEED)
    lines = valid.splitlines()
    yield from (valid[: rng.randrange(len(valid))] for _ in range(6))
    yield valid.replace(",", ',"', 1)  # a quote never closed
    yield valid + "x" * 300_000 + "\n"  # a cell past csv's field limit
    yield valid.replace("\n", "\0\n", 1)
    yield lines[0] + "\n" + ",".join(["=HYPERLINK(\"x\")"] * 50_000) + "\n"
    yield "\n".join([lines[0], *lines[1:] * 2])  # a row twice
    yield "\ufeff" + valid
    yield ""
    for _ in range(20):
        cells = [line.split(",") for line in lines]
        row = rng.randrange(len(cells))
        cells[row][rng.randrange(len(cells[row]))] = rng.choice(
            ["", "true", "maybe", "-1", "../x.py", "a" * 5000, "\udcff", "x;y"])
        yield "\n".join(",".join(cell for cell in row) for row in cells)


ROSTER = ("student,name,late,files,module,weights,ID\n"
          "doejane,Jane Doe,true,model.py;model.weights.h5,doejane.py,doejane.weights.h5,1\n"
          "leeann,Lee Ann,false,m.py,leeann.py,,2\n")
GRADEBOOK = ("Student,ID,SIS User ID,SIS Login ID,Section,Assignment 3 (12345)\n"
             "    Points Possible,,,,,20\nDoe Jane,1,s1,doejane,A,\nAnn Lee,2,s2,leeann,A,\n")


def _roster(text: str, tmp: Path) -> str | None:
    """roster.csv as the plugin reads it, and as `canvas --roster` does."""
    (tmp / "roster.csv").write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        roster.read(tmp / "roster.csv")
    except roster.RosterError as error:
        return str(error)
    try:
        canvas.read_roster(tmp / "roster.csv", "ID")
    except canvas.CanvasError as error:
        return str(error)
    return None


def _canvas(text: str, tmp: Path) -> str | None:
    (tmp / "export.csv").write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        canvas.fill(canvas.read_gradebook(tmp / "export.csv"), {"doejane": "7"},
                    assignment="Assignment 3", match="SIS Login ID", roster=None)
    except canvas.CanvasError as error:
        return str(error)
    return None


@pytest.mark.parametrize(("valid", "read"), [(ROSTER, _roster), (GRADEBOOK, _canvas)],
                         ids=["roster.csv", "Canvas's gradebook export"])
def test_every_csv_reader_refuses_hostile_input_in_words(
        valid: str, read: Callable[[str, Path], str | None], tmp_path: Path) -> None:
    assert read(valid, tmp_path) is None
    for text in _csv_variants(valid):
        message = read(text, tmp_path)
        if message is not None:
            in_words(message)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


CANVAS = {"doejane_12345_678901_model.py": student_source().encode(),
          "leeann_LATE_23456_678902_mine-1.py": b"x = 1\n"}
GRADESCOPE_YML = (b"submission_1001:\n  :submitters:\n  - :name: Jane Doe\n    :sid: '42'\n"
                  b"    :email: jane@example.edu\n  :created_at: 2026-04-26 17:34:00 Z\n")


def _lms_variants() -> Iterator[tuple[str, bytes]]:
    canvas_zip = _zip(CANVAS)
    yield "canvas", canvas_zip
    yield from (("canvas", canvas_zip[:cut]) for cut in (22, len(canvas_zip) // 2, -10))
    yield "canvas", _flagged(canvas_zip, 0x1)  # "encrypted" members
    yield "canvas", canvas_zip.replace(b"\x00\x00\x00\x00model", b"\x63\x00\x00\x00model", 1)
    yield "moodle", _zip({"_1" + "1" * 60_000 + "_assignsubmission_file_/m.py": b"x"})
    yield "moodle", _zip({"a_" * 30_000 + "1_assignsubmission_file_m.py": b"x"})
    for metadata in (GRADESCOPE_YML, GRADESCOPE_YML[:40], b"submission_1:\n" + b"  - :" * 10_000,
                     GRADESCOPE_YML.replace(b"Jane Doe", b"\xff\xfe" * 100)):
        yield "gradescope", _zip({"submission_metadata.yml": metadata,
                                  "submission_1001/model.py": b"x = 1\n"})
    rng = random.Random(SEED)
    for _ in range(20):
        flipped = bytearray(canvas_zip)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        yield "canvas", bytes(flipped)


def test_a_hostile_lms_download_is_imported_or_refused_in_words_never_a_traceback(
        tmp_path: Path) -> None:
    refused = 0
    for index, (layout, data) in enumerate(_lms_variants()):
        source = tmp_path / f"download-{index}.zip"
        source.write_bytes(data)
        try:
            lms.import_submissions(source, layout, tmp_path / f"out-{index}")
        except unpack.Refused as error:
            in_words(str(error))
            refused += 1
    assert refused >= 5


def test_a_sketch_larger_than_any_the_grader_writes_is_not_compared() -> None:
    """A grade file edited by hand: 20,000 units would make a 20,000 x 20,000 product."""
    huge = {"architecture": "a", "sketch": [[[1.0, 0.5]] * 20_000], "weights": "train()"}
    assert similarity.correlations(huge, huge) is None
    assert similarity.why_similar(huge, huge) is None
