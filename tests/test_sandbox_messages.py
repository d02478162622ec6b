"""The sandbox's typed messages (sandbox/watch.py's protocol): one definition on both sides of
the boundary, and nothing the child sends believed unless it is exactly one of them."""

from __future__ import annotations

import ast
import json
import resource
from pathlib import Path

import pytest

from pytest_akida_grade import codec
from pytest_akida_grade.codec import RecordError, parse
from pytest_akida_grade.sandbox import launch, policy, student, watch
from pytest_akida_grade.sandbox.watch import (
    EVENTS,
    SERVER,
    Exited,
    Exported,
    Failed,
    Fork,
    Forked,
    Limits,
    ProgressEvent,
    Ready,
    Request,
)

RULE = "# " + "-" * 76


def _block(module: object, name: str) -> str:
    start, end = f"{RULE} {name}\n", f"{RULE} end of {name}\n"
    text = Path(str(getattr(module, "__file__", ""))).read_text()
    assert text.count(start) == 1 and text.count(end) == 1
    return text[text.index(start):text.index(end)]


def test_student_py_holds_the_very_definitions_the_launcher_imports() -> None:
    assert _block(student, "the codec") == _block(codec, "the codec")
    assert _block(student, "the protocol") == _block(watch, "the protocol")
    assert student.Request.__module__ != watch.Request.__module__  # a copy, not an import
    tree = ast.parse(Path(str(student.__file__)).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [str(node.module) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.startswith("pytest_akida_grade")]


REQUEST = Request(module="/sandbox/in/mallory.py", phases=("build", "train"), weights_file=None,
                  seed=3, train_data="/sandbox/data/train.npz", out="/sandbox/work/out",
                  cwd="/sandbox/work", uid=1 << 30, env={"PATH": "/usr/bin"},
                  limits=Limits(memory=1 << 30, file_size=1 << 30, open_files=1024, core=0,
                                cpu_seconds=90, processes=64))


@pytest.mark.parametrize("message", [
    REQUEST, ProgressEvent(message="epoch 1"), Failed(message="build_model() raised"),
    Exported(phase="build", peak_rss_mb=812.5), Fork(job=2, request="/jobs/x/in/request.json"),
    Ready(pid=7), Forked(job=2, pid=9), Exited(pid=9, code=-9)], ids=lambda m: m.KIND)
def test_every_message_survives_its_json_form_on_either_side(message: watch.Message) -> None:
    wire = json.loads(json.dumps(message.to_json()))
    assert type(message).from_json(wire) == message
    there = getattr(student, type(message).__name__).from_json(wire)
    assert json.loads(json.dumps(there.to_json())) == wire


def test_the_child_reads_the_request_the_launcher_writes() -> None:
    wire = json.loads(json.dumps(REQUEST.to_json()))
    request = student.Request.from_json(wire)
    assert request.phases == ("build", "train") and request.limits.processes == 64


@pytest.mark.parametrize(("sent", "said"), [
    ([1, 2], "not a JSON object: list of 2"),
    ({"event": "result", "result": {"akida_accuracy": 1}},
     "unknown event str 'result': expected one of progress, failed, exported"),
    ({"message": "hi"}, "unknown event NoneType None"),
    ({"event": "progress", "message": "hi", "result": 1},
     "ProgressEvent: unknown fields ['result']"),
    ({"event": "failed"}, "Failed: missing fields ['message']"),
    ({"event": "progress", "message": ["a"]}, "ProgressEvent.message: expected str, got list"),
    ({"event": "exported", "phase": "build", "peak_rss_mb": "1e9"},
     "Exported.peak_rss_mb: expected float, got str '1e9'"),
    ({"event": "exported", "phase": "build", "peak_rss_mb": True},
     "Exported.peak_rss_mb: expected float, got bool True"),
    ({"event": "exported", "phase": {"build": 1}}, "Exported.phase: expected str, got dict of 1"),
])
def test_what_the_child_sends_is_refused_unless_it_is_exactly_an_event(sent: object,
                                                                      said: str) -> None:
    with pytest.raises(RecordError) as refused:
        parse(sent, EVENTS)
    assert said in str(refused.value)
    with pytest.raises(student.RecordError) as refused_there:
        student.parse(sent, student.EVENTS)
    assert str(refused_there.value) == str(refused.value)


def test_a_request_with_a_field_of_the_wrong_type_is_refused_naming_it() -> None:
    wire = json.loads(json.dumps(REQUEST.to_json()))
    wire["limits"]["memory"] = "lots"
    with pytest.raises(RecordError, match=r"Request\.limits\.memory: expected int, got str 'lots'"):
        Request.from_json(wire)
    wire["limits"]["memory"], wire["env"] = 1, {"PATH": 1}
    with pytest.raises(RecordError, match=r"Request\.env\['PATH'\]: expected str, got int"):
        Request.from_json(wire)
    with pytest.raises(RecordError, match="not a 'request' message"):
        Request.from_json({**wire, "kind": "fork"})


def test_an_event_of_the_wrong_family_is_not_one_of_the_servers() -> None:
    with pytest.raises(RecordError, match="unknown kind NoneType None"):
        parse(ProgressEvent(message="x").to_json(), SERVER)
    assert parse(Exited(pid=1, code=0).to_json(), SERVER) == Exited(pid=1, code=0)
    assert parse({"event": "exported", "phase": "build"}, EVENTS) == Exported(phase="build")


class _Job:
    phases = ("build",)


@pytest.mark.parametrize("line", [
    b"[" * 60000, b"not json", b'{"event": "exported", "phase": "train"}',
    b'{"event": "failed", "message": 3}', b'{"event": "progress", "message": "x", "y": 1}'])
def test_the_watch_ignores_a_line_that_is_not_an_event_even_one_nested_to_crash_it(
        line: bytes, tmp_path: Path) -> None:
    seen = watch.Watch()
    said: list[str] = []
    watch._event(seen, line, _Job(), tmp_path, tmp_path, said.append,  # type: ignore[arg-type]
                 lambda phase, path: None)
    assert said == [] and seen.failure is None and seen.exported == set()


def test_the_request_sets_every_limit_and_no_process_limit_when_off(tmp_path: Path) -> None:
    module = tmp_path / "mallory.py"
    module.write_text("import resource as r\nraise SystemExit(f'nproc {r.getrlimit(r.RLIMIT_NPROC)}"
                      " as {r.getrlimit(r.RLIMIT_AS)} core {r.getrlimit(r.RLIMIT_CORE)}')\n")
    job = watch.ChildJob(name="mallory", module=module, weights=None, phases=("build",), seed=0,
                    train_data=None, seconds=20, timeout_source="the test's limit",
                    build_seconds=20, build_timeout_source="the test's limit",
                    memory_bytes=3 << 30, processes=64)
    scratch, staging = tmp_path / "scratch", tmp_path / "staging"
    scratch.mkdir()
    end = launch.run(policy.Off(root=False), job, scratch, staging, lambda _: None,
                     lambda phase, path: None)
    assert end.failure is not None, end
    assert f"nproc {resource.getrlimit(resource.RLIMIT_NPROC)}" in end.failure
    assert f"as {(3 << 30, 3 << 30)} core (0, 0)" in end.failure
