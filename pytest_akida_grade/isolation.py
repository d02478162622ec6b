"""Run one stage of grading in a child process with a wall-clock limit (see worker.py).

Student code never runs in the pytest process: a submission that hangs, exits, crashes the
interpreter or floods stdout costs only its own grade.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

STDERR_TAIL = 1500  # characters of the child's stderr shown when it dies
POLL = 0.5  # seconds between looks at the deadline and the cancel flag


@dataclass
class ChildResult:
    result: dict[str, Any] | None  # the worker's result, when it reported one
    error: str | None = None  # why there is no result (timeout, exit, crash)


def run_stage(request: dict[str, Any], *, timeout: float, timeout_source: str,
              on_progress: Callable[[str], None] = lambda message: None,
              cancelled: Callable[[], bool] = lambda: False) -> ChildResult:
    """Run worker.py on `request`; never raises for what the child does.

    When `cancelled()` turns true the child is stopped early (its result is no longer wanted).
    """
    with tempfile.TemporaryDirectory(prefix="akida-grade-") as scratch:
        request_path = Path(scratch) / "request.json"
        request_path.write_text(json.dumps(request))
        with open(Path(scratch) / "stderr.txt", "w+") as stderr:
            outcome = _supervise(request_path, stderr, timeout, timeout_source, on_progress,
                                 cancelled)
            if outcome.error:
                outcome.error += _tail(stderr)
    return outcome


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's banner is noise in a grade
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _supervise(request_path: Path, stderr: IO[str], timeout: float, timeout_source: str,
               on_progress: Callable[[str], None],
               cancelled: Callable[[], bool]) -> ChildResult:
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_akida_grade.worker", str(request_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
        env=_child_env(), start_new_session=True,  # its own group: a timeout kills it all
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    result = None
    while True:
        try:
            line = lines.get(timeout=min(POLL, max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            if cancelled():
                _kill(process)
                return ChildResult(None, "cancelled: its result was no longer needed")
            if time.monotonic() < deadline:
                continue
            _kill(process)
            return ChildResult(None, f"did not finish within {timeout:g} s (the limit set by "
                                     f"{timeout_source}); it was stopped")
        if line is None:
            break
        event = _parse(line)
        if event.get("event") == "progress":
            on_progress(str(event.get("message", "")))
        elif event.get("event") == "result":
            result = event.get("result")
    code = process.wait()
    if result is None:
        return ChildResult(None, _death(code))
    return ChildResult(result)


def _pump(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line)
    lines.put(None)


def _parse(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _death(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else code
        return (f"the grading process was killed by signal {name} before it reported "
                "(out of memory, or a crash in native code)")
    return (f"the grading process ended with exit code {code} before it reported: does the "
            "submission call os._exit() or end the process some other way?")


def _tail(stderr: IO[str]) -> str:
    stderr.flush()
    stderr.seek(0)
    text = stderr.read().strip()
    if not text:
        return ""
    return "\nlast output of the process:\n" + text[-STDERR_TAIL:]
