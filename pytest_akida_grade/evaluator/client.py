"""The pytest side of a warm evaluator (server.py): start it, send jobs, survive its crashes.

A `Pool` of identical `Evaluator`s per pytest process (xdist worker), one job at a time each. A job
that crashes the server (a segfault in native code, the memory limit) costs that job only: the
server is restarted and the job retried once; a second crash is that student's failure. A job
over its deadline is stopped and fails; the next job gets a fresh server.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pytest_akida_grade.background import Progress
from pytest_akida_grade.codec import RecordError, loads
from pytest_akida_grade.fileio import trace
from pytest_akida_grade.results import HarnessError, Stage

if TYPE_CHECKING:  # the jobs carry their own JSON form
    from pytest_akida_grade.evaluator.jobs import Job

START_SECONDS = 180.0  # TensorFlow, quantizeml, cnn2snn and akida imports on a busy machine
REPLY_BYTES = 64 << 20  # a build's result (its layer specs) is the largest
LOG_TAIL = 1500

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    ok: dict[str, Any] | None = None
    failure: str | None = None  # the submission's fault (for the student)
    error: str | None = None  # ours (a grader error)
    repeatable: bool = True  # False after a crash or a timeout: not worth caching
    crashed: bool = False  # the process died on it (`failure` says how): worth one retry

    def stage(self, parse: Callable[[Any], T], student: str) -> Stage[T]:
        """The job's typed result or the student's failure; HarnessError when it was ours."""
        if self.error is not None:
            raise HarnessError(f"the grader failed on {student}: {self.error}")
        if self.failure is not None:
            return Stage(failure=self.failure, repeatable=self.repeatable)
        try:
            return Stage(result=parse(self.ok))
        except RecordError as error:
            raise HarnessError(f"the grader's evaluator answered badly: {error}") from None


class Evaluator:
    def __init__(self, role: str, scratch: Path, memory_bytes: int, threads: int,
                 progress: Progress) -> None:
        self.role, self.scratch, self.memory_bytes = role, scratch, memory_bytes
        self.threads, self.progress = threads, progress
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._log: IO[bytes] | None = None
        self._jobs = 0

    # ------------------------------------------------------------------ public

    def call(self, job: Job, student: str, seconds: float, timeout_source: str) -> Reply:
        """Run one job; a crash is retried once in a fresh server."""
        with self._lock:
            first = self._attempt(job, student, seconds, timeout_source)
            if not first.crashed:
                return first
            second = self._attempt(job, student, seconds, timeout_source)
            if not second.crashed:
                return second
            return Reply(failure=f"the grader's evaluator crashed twice on this model "
                                 f"({second.failure}); it may have needed more than the "
                                 f"{self.memory_bytes / (1 << 30):.1f} GB of memory the grader "
                                 "allows one evaluation. This is reported to you because it "
                                 "happened only with your model", repeatable=False)

    def start(self) -> None:
        """Start the server now rather than at the first job (its imports take seconds)."""
        with self._lock, contextlib.suppress(OSError):  # the first job will say why
            self._ensure_started()

    def close(self) -> None:
        with self._lock:
            self._stop()

    # ------------------------------------------------------------------ one attempt

    def _attempt(self, job: Job, student: str, seconds: float, timeout_source: str) -> Reply:
        try:
            process = self._ensure_started()
        except OSError as error:
            return Reply(error=f"the grader's {self.role} could not start: {error}")
        self._jobs += 1
        number = self._jobs
        started = time.monotonic()
        assert process.stdin is not None
        try:
            process.stdin.write((json.dumps({"id": number, **job.to_json()}) + "\n").encode())
            process.stdin.flush()
        except OSError:
            return self._crashed()
        try:
            reply = self._read(process, number, student, started + seconds)
        except TimeoutError:
            self._stop()
            return Reply(failure=f"evaluating the model took more than {seconds:g} s (the limit "
                                 f"set by {timeout_source}); it was stopped", repeatable=False)
        if reply is None:
            return self._crashed()
        self._trace(job.KIND, student, reply, time.monotonic() - started)
        if "failure" in reply:
            return Reply(failure=str(reply["failure"]))
        if "error" in reply:
            return Reply(error=f"{reply['error']}\n{reply.get('traceback', '')}")
        return Reply(ok=reply.get("ok") or {})

    def _read(self, process: subprocess.Popen[bytes], job: int, student: str,
              deadline: float) -> dict[str, Any] | None:
        """The job's reply, or None when the server died; TimeoutError past the deadline."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, _, rest = self._buffer.partition(b"\n")
                self._buffer = rest
                message = _parse(line)
                if message.get("id") != job:
                    continue
                if "progress" in message:
                    self.progress(student, str(message["progress"]))
                    continue
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            readable, _, _ = select.select([fd], [], [], min(left, 1.0))
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buffer += chunk

    def _crashed(self) -> Reply:
        code = self._process.poll() if self._process else None
        tail = self._log_tail()
        self._stop()
        death = f"exit code {code}"
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                death = f"signal {signal.Signals(-code).name}"
        return Reply(crashed=True, failure=f"{death}{': ' + tail if tail else ''}",
                     repeatable=False)

    # ------------------------------------------------------------------ the process

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        self._buffer = b""
        self._log = (self.scratch / f"{self.role}-{os.getpid()}.log").open("ab")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        env.pop("PYTEST_ADDOPTS", None)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pytest_akida_grade.evaluator.server",
             "--memory", str(self.memory_bytes), "--threads", str(self.threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=self.scratch, env=env, start_new_session=True)
        try:
            ready = self._read(self._process, 0, self.role, time.monotonic() + START_SECONDS)
        except TimeoutError:
            ready = {"timeout": START_SECONDS}
        if ready is None or "ok" not in ready:
            tail = self._log_tail()
            self._stop()
            raise OSError(f"it did not start ({ready or 'it exited'}): {tail}")
        return self._process

    def _stop(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=30)
            for stream in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError), open(self._log.name, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 4 * LOG_TAIL))
            return log.read().decode("utf-8", "replace").strip()[-LOG_TAIL:]
        return ""

    def _trace(self, kind: str, student: str, reply: dict[str, Any], seconds: float) -> None:
        trace({"role": self.role, "kind": kind, "student": student, "pid": os.getpid(),
               "server_pid": self._process.pid if self._process else None,
               "seconds": round(seconds, 3), "rss_mb": reply.get("rss_mb")})


RESERVED_BYTES = 4 << 30  # pytest, the sandboxed children beside the trusted processes
FLOOR_BYTES = 5 << 30  # TensorFlow's training alone reserves 3.3 GB of address space


def memory_per_process(processes: int, ceiling: int) -> int:
    """Each trusted process's address-space limit: all of this machine's (`processes`, over
    every pytest worker) fit in its memory with room for pytest; never above `ceiling`."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(FLOOR_BYTES, min(ceiling, (total - RESERVED_BYTES) // max(1, processes)))


class Pool:
    """A few warm trusted processes; a job goes to the first free one, the most urgent job first
    (the student being judged before the ones prefetched), in arrival order otherwise.

    They are identical (same threads), so a figure never depends on which one computed it."""

    def __init__(self, size: int, scratch: Path, memory_bytes: int, progress: Progress) -> None:
        self.processes = [Evaluator(f"trusted-{index}", scratch, memory_bytes, 1, progress)
                          for index in range(size)]
        self._free = list(self.processes)
        self._waiting: dict[int, Callable[[], int]] = {}  # ticket -> its urgency, 0 = most
        self._tickets = itertools.count()
        self._changed = threading.Condition()
        self._started = threading.Event()

    @property
    def size(self) -> int:
        return len(self.processes)

    def start(self) -> None:
        """Start them now, in the background (their imports take seconds): once a session."""
        if not self._started.is_set():
            self._started.set()
            for process in self.processes:
                threading.Thread(target=process.start, daemon=True).start()

    def call(self, job: Job, student: str, seconds: float, timeout_source: str,
             urgency: Callable[[], int] = lambda: 0) -> Reply:
        self.start()
        process = self._acquire(urgency)
        try:
            return process.call(job, student, seconds, timeout_source)
        finally:
            with self._changed:
                self._free.append(process)
                self._changed.notify_all()

    def _acquire(self, urgency: Callable[[], int]) -> Evaluator:
        with self._changed:
            ticket = next(self._tickets)
            self._waiting[ticket] = urgency
            while not self._free or ticket != min(
                    self._waiting, key=lambda t: (self._waiting[t](), t)):
                self._changed.wait(timeout=0.5)  # urgencies change as pytest moves on
            del self._waiting[ticket]
            self._changed.notify_all()
            return self._free.pop(0)

    def close(self) -> None:
        for process in self.processes:
            process.close()


def _parse(line: bytes) -> dict[str, Any]:
    """A line of the evaluator's: a reply, or nothing (a line of another kind: ignored)."""
    try:
        message = loads(line, what="the evaluator's reply", limit=REPLY_BYTES)
    except RecordError:
        return {}
    return message if isinstance(message, dict) else {}
