"""Run student.py on one submission, confined (policy.py), and take back its files.

The child gets a read-only copy of its own submission (not its classmates'), the training split
only when it trains, and a private scratch directory. Whatever it does, the wall-clock deadline
holds, what is read from it is capped, its scratch is watched, every process it started is
killed at the end, and its directory is removed. What it hands over (out/<phase>/...) is copied
out of its reach with O_NOFOLLOW and size caps, for the trusted evaluator to validate.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_akida_grade.fileio import trace
from pytest_akida_grade.sandbox.handover import EXPORTS, snapshot
from pytest_akida_grade.sandbox.policy import CODE_DIR, Policy, bwrap_command, fresh_uid

PROTOCOL_BYTES = 4 << 20  # progress lines and a few events: far below this
LINE_BYTES = 64 << 10
OUTPUT_BYTES = 64 << 20  # what the student prints (Keras progress bars included)
TAIL_CHARS = 1500  # of that output, shown when the child dies
MESSAGE_CHARS = 8000
SCRATCH_BYTES = 2 << 30
SCRATCH_ENTRIES = 20000
SCAN_SECONDS = 1.0
POLL_SECONDS = 0.25
INSIDE = Path("/sandbox")


@dataclass(frozen=True)
class Job:
    """One child: a submission and the phases it must run (build, and maybe train)."""

    name: str
    module: Path
    weights: Path | None
    phases: tuple[str, ...]
    seed: int
    train_data: Path | None  # the training split (x, y) when it may train
    seconds: float  # the whole run (training included)
    timeout_source: str  # the setting that sets `seconds`, for the message
    build_seconds: float  # until the build phase has handed over its files
    build_timeout_source: str
    memory_bytes: int
    processes: int = 512  # threads count too: TensorFlow starts dozens


@dataclass(frozen=True)
class RunEnd:
    exported: frozenset[str]  # phases whose files were handed over
    failure: str | None = None  # the first problem, for the student
    repeatable: bool = True  # False for a stop (time, output, memory) or a crash


@dataclass
class _Watch:
    """What the supervisor has seen of a running child."""

    exported: set[str] = field(default_factory=set)
    failure: str | None = None
    stopped: str | None = None  # why we stopped it
    protocol: bytearray = field(default_factory=bytearray)
    protocol_bytes: int = 0
    output_bytes: int = 0
    peak_rss_mb: float = 0.0  # as the child says (the benchmarks' trace only)
    tail: bytes = b""


Progress = Callable[[str], None]
OnExport = Callable[[str, Path], None]


def run(policy: Policy, job: Job, scratch: Path, staging: Path, on_progress: Progress,
        on_export: OnExport, cancelled: Callable[[], bool] = lambda: False) -> RunEnd:
    """Run `job`; each phase's files are copied into `staging/<phase>/` before `on_export`."""
    uid = fresh_uid() if policy.mode in ("bwrap", "uid") and policy.root else None
    home = Path(tempfile.mkdtemp(prefix=f"{job.name}-", dir=scratch))
    try:
        work = _prepare(home, job, uid)
        request, argv, env = _request(policy, job, home, uid)
        (home / "in" / "request.json").write_text(json.dumps(request))
        _seal(home / "in", uid)
        command = _command(policy, home, job, argv, env)
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=work, start_new_session=True,
            user=uid if policy.mode == "uid" else None,
            group=uid if policy.mode == "uid" else None,
            extra_groups=[] if policy.mode == "uid" else None)
        try:
            watch = _supervise(process, job, work, staging, on_progress, on_export, cancelled)
        finally:
            code = _kill_all(process, uid)
        trace({"role": "sandbox", "student": job.name, "phases": list(job.phases),
               "peak_rss_mb": watch.peak_rss_mb, "pid": os.getpid()})
        return _end(watch, code, job)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # fd-based: safe from the child's symlinks


# ---------------------------------------------------------------------------- the run's files


def _prepare(home: Path, job: Job, uid: int | None) -> Path:
    """home/in: the copies it may read (root-owned); home/work: the scratch it may write."""
    os.chmod(home, 0o711)
    inputs, work = home / "in", home / "work"
    inputs.mkdir()
    shutil.copyfile(job.module, inputs / f"{job.name}.py")
    if job.weights is not None:
        shutil.copyfile(job.weights, inputs / f"{job.name}.weights.h5")
    for directory in (work, work / "out", work / "tmp"):
        directory.mkdir()
        if uid is not None:
            os.chown(directory, uid, uid)
        os.chmod(directory, 0o700)
    return work


def _seal(inputs: Path, uid: int | None) -> None:
    """Readable by the child's uid alone (group), writable by nobody but us."""
    for path in [inputs, *inputs.iterdir()]:
        if uid is not None:
            os.chown(path, 0, uid)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)


def _request(policy: Policy, job: Job, home: Path,
             uid: int | None) -> tuple[dict[str, object], list[str], dict[str, str]]:
    inside = policy.mode == "bwrap"
    inputs = INSIDE / "in" if inside else home / "in"
    work = INSIDE / "work" if inside else home / "work"
    code = INSIDE / "code" if inside else CODE_DIR
    data = (INSIDE / "data" / "train.npz" if inside else job.train_data) if job.train_data \
        else None
    limits = {"memory": job.memory_bytes, "file_size": 1 << 30, "open_files": 1024, "core": 0,
              "cpu_seconds": int(job.seconds * (os.cpu_count() or 1)) + 30}
    if policy.mode != "off":  # root ignores it, and a normal user's count includes their desktop
        limits["processes"] = job.processes
    request: dict[str, object] = {
        "module": str(inputs / f"{job.name}.py"), "phases": list(job.phases),
               "weights_file": str(inputs / f"{job.name}.weights.h5") if job.weights else None,
               "seed": job.seed, "train_data": str(data) if data else None,
               "out": str(work / "out"), "cwd": str(work), "limits": limits,
               "uid": uid if inside else None}
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
           "TMPDIR": "/tmp" if inside else str(work / "tmp"), "PYTHONUNBUFFERED": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2", "MPLCONFIGDIR": str(work / "tmp"),
           "KERAS_HOME": str(work / ".keras")}
    argv = [policy.python, "-I", str(code / "student.py"), str(inputs / "request.json")]
    return request, argv, env


def _command(policy: Policy, home: Path, job: Job, argv: list[str],
             env: dict[str, str]) -> list[str]:
    if policy.mode != "bwrap":
        return argv
    binds = [("--ro-bind", CODE_DIR, str(INSIDE / "code")),
             ("--ro-bind", home / "in", str(INSIDE / "in")),
             ("--bind", home / "work", str(INSIDE / "work"))]
    if job.train_data is not None:
        binds.append(("--ro-bind", job.train_data, str(INSIDE / "data" / "train.npz")))
    return bwrap_command(policy, binds, "/", env, argv)  # student.py enters its scratch


# ---------------------------------------------------------------------------- supervision


def _supervise(process: subprocess.Popen[bytes], job: Job, work: Path, staging: Path,
               on_progress: Progress, on_export: OnExport,
               cancelled: Callable[[], bool]) -> _Watch:
    """Read the child until it ends or must be stopped; the deadline holds whatever it writes."""
    watch = _Watch()
    selector = selectors.DefaultSelector()
    assert process.stdout is not None and process.stderr is not None
    selector.register(process.stdout, selectors.EVENT_READ, "protocol")
    selector.register(process.stderr, selectors.EVENT_READ, "output")
    started = time.monotonic()
    deadline = started + job.seconds
    next_scan = started + SCAN_SECONDS
    while watch.stopped is None:
        now = time.monotonic()
        watch.stopped = _stop_reason(job, watch, now - started, cancelled)
        if watch.stopped is None and now >= next_scan:
            watch.stopped, next_scan = _scratch_problem(work), now + SCAN_SECONDS
        exited = process.poll() is not None
        if watch.stopped is not None or (exited and not selector.get_map()):
            break
        # Once it has exited, only what is already written is read: a process it left behind
        # may hold the pipes open (it is killed next).
        wait = 0.0 if exited else min(POLL_SECONDS, max(0.0, deadline - now))
        ready = selector.select(timeout=wait) if selector.get_map() else []
        if not selector.get_map():
            time.sleep(wait)
        for key, _ in ready:
            _read(selector, key, watch, job, work, staging, on_progress, on_export)
        if exited and not ready:
            break
    selector.close()
    return watch


def _read(selector: selectors.BaseSelector, key: selectors.SelectorKey, watch: _Watch, job: Job,
          work: Path, staging: Path, on_progress: Progress, on_export: OnExport) -> None:
    chunk = os.read(key.fd, 65536)
    if not chunk:
        selector.unregister(key.fileobj)
    elif key.data == "protocol":
        _protocol(watch, chunk, job, work, staging, on_progress, on_export)
    else:
        _output(watch, chunk)


def _stop_reason(job: Job, watch: _Watch, elapsed: float,
                 cancelled: Callable[[], bool]) -> str | None:
    if cancelled():
        return "cancelled: its result was no longer needed"
    if elapsed >= job.build_seconds and "build" not in watch.exported:
        return _too_long(job.build_seconds, job.build_timeout_source)
    if elapsed >= job.seconds:
        return _too_long(job.seconds, job.timeout_source)
    return None


def _too_long(seconds: float, source: str) -> str:
    return f"did not finish within {seconds:g} s (the limit set by {source}); it was stopped"


def _output(watch: _Watch, chunk: bytes) -> None:
    watch.output_bytes += len(chunk)
    watch.tail = (watch.tail + chunk)[-4 * TAIL_CHARS:]
    if watch.output_bytes > OUTPUT_BYTES:
        watch.stopped = (f"wrote more than {OUTPUT_BYTES >> 20} MB of output (prints, "
                         "progress bars); it was stopped. Print less (verbose=0 in fit())")


def _protocol(watch: _Watch, chunk: bytes, job: Job, work: Path, staging: Path,
              on_progress: Progress, on_export: OnExport) -> None:
    watch.protocol_bytes += len(chunk)
    watch.protocol += chunk
    if watch.protocol_bytes > PROTOCOL_BYTES or (b"\n" not in watch.protocol
                                                 and len(watch.protocol) > LINE_BYTES):
        watch.stopped = "flooded the grader's channel with data; it was stopped"
        return
    while b"\n" in watch.protocol:
        line, _, rest = bytes(watch.protocol).partition(b"\n")
        watch.protocol = bytearray(rest)
        _event(watch, line, job, work, staging, on_progress, on_export)


def _event(watch: _Watch, line: bytes, job: Job, work: Path, staging: Path,
           on_progress: Progress, on_export: OnExport) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return
    if not isinstance(event, dict):
        return
    kind = event.get("event")
    if kind == "progress":
        on_progress(clean(event.get("message"), 500))
    elif kind == "failed" and watch.failure is None:
        watch.failure = clean(event.get("message"), MESSAGE_CHARS)
    elif kind == "exported" and event.get("phase") in job.phases \
            and event.get("phase") not in watch.exported and watch.failure is None:
        phase = str(event["phase"])
        with contextlib.suppress(TypeError, ValueError):
            watch.peak_rss_mb = max(watch.peak_rss_mb, float(event.get("peak_rss_mb", 0.0)))
        problem = snapshot(work / "out" / phase, staging / phase, EXPORTS[phase])
        if problem:
            watch.failure = problem
            return
        watch.exported.add(phase)
        on_export(phase, staging / phase)


def clean(value: object, limit: int) -> str:
    """Text from the child, safe to show: a string, no control characters, bounded."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text[:limit])
    return text.strip()


def _scratch_problem(work: Path) -> str | None:
    """The scratch directory must stay small (it is on the grader's disk)."""
    size, entries, pending = 0, 0, [work]
    while pending:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as found:
            for entry in found:
                entries += 1
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                else:
                    with contextlib.suppress(OSError):
                        size += entry.stat(follow_symlinks=False).st_blocks * 512
        if size > SCRATCH_BYTES or entries > SCRATCH_ENTRIES:
            return (f"wrote more than {SCRATCH_BYTES >> 30} GB or {SCRATCH_ENTRIES} files to "
                    "its scratch directory; it was stopped")
    return None


# ---------------------------------------------------------------------------- the end


def _kill_all(process: subprocess.Popen[bytes], uid: int | None) -> int | None:
    """Nothing it started may outlive the run: its group, its PID namespace, its uid.
    Returns its exit code."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if uid is not None:  # a process in its own session escapes the group, never its uid
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["kill", "-KILL", "-1"], user=uid, group=uid,
                           extra_groups=[], capture_output=True, timeout=30, check=False)
    code = None
    with contextlib.suppress(subprocess.TimeoutExpired):
        code = process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return code


def _end(watch: _Watch, code: int | None, job: Job) -> RunEnd:
    exported = frozenset(watch.exported)
    tail = _tail(watch.tail)
    if watch.stopped is not None:
        return RunEnd(exported, watch.stopped + tail, repeatable=False)
    if watch.failure is not None:
        return RunEnd(exported, _memory_hint(watch.failure, job))
    if "build" not in exported or (code not in (0, None) and len(exported) < len(job.phases)):
        return RunEnd(exported, _death(code or 0) + tail, repeatable=False)
    return RunEnd(exported)


def _memory_hint(message: str, job: Job) -> str:
    if "MemoryError" not in message:
        return message
    return (f"{message}\n(the sandbox allows {job.memory_bytes / (1 << 30):g} GB of memory: "
            "akida_memory_limit)")


def _death(code: int) -> str:
    signal_number = -code if code < 0 else code - 128 if code > 128 else 0
    if signal_number:
        try:
            name = signal.Signals(signal_number).name
        except ValueError:
            name = str(signal_number)
        return (f"the grading process was killed by signal {name} before it reported "
                "(out of memory, or a crash in native code)")
    return (f"the grading process ended with exit code {code} before it reported: does the "
            "submission call os._exit() or end the process some other way?")


def _tail(raw: bytes) -> str:
    text = clean(raw.decode("utf-8", "replace"), 4 * TAIL_CHARS)
    return f"\nlast output of the process:\n{text[-TAIL_CHARS:]}" if text else ""


# ---------------------------------------------------------------------------- in the background


@dataclass
class Handle:
    """A run in a background thread: one future per phase, each resolving to the directory of
    its hand-over or to the run's end (whose failure tells why there is none)."""

    phases: dict[str, Future[Path | RunEnd]]
    end: Future[RunEnd]


def start(pool: Executor, policy: Policy, job: Job, scratch: Path, staging: Path,
          on_progress: Progress, cancelled: Callable[[], bool]) -> Handle:
    handle = Handle({phase: Future() for phase in job.phases}, Future())

    def exported(phase: str, directory: Path) -> None:
        handle.phases[phase].set_result(directory)

    def body() -> None:
        try:
            end = run(policy, job, scratch, staging, on_progress, exported, cancelled)
        except BaseException as error:  # ours: every waiter must hear of it
            waiting: list[Future[Any]] = [*handle.phases.values(), handle.end]
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
            raise
        for future in handle.phases.values():
            if not future.done():
                future.set_result(end)
        handle.end.set_result(end)

    pool.submit(body)
    return handle
