"""Watching a sandboxed child: what it may say, for how long, how much, and its hand-over.

What may cross the sandbox's boundary is typed here, one frozen, keyword-only record of codec.py a
message: the launcher's request to the child (launch.py -> student.py), the child's events
(student.py -> here), the fork server's protocol (launch.py <-> zygote.py). The sandboxed side
imports nothing from this package: student.py holds a copy of the codec's block and of the
protocol's block below (zygote.py uses that copy), kept identical by
tests/test_sandbox_messages.py. What the child sends is parsed, never trusted: `loads`, `from_json`
and `parse` refuse what is too large or too deep, an unknown kind, an unknown or missing field, or
a value of the wrong type with a RecordError naming it.

Whatever the child writes, the deadline holds, what is read from it is capped, its scratch is
watched, and only its three events mean anything (a line that is not one is ignored); an export is
copied out of its reach (each path component opened with O_NOFOLLOW, a regular file of its own
only, never blocking, up to a size cap) into a directory only the grader can write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Protocol

from pytest_akida_grade.background import OnProgress
from pytest_akida_grade.codec import Message, Record, RecordError, loads, parse

PROTOCOL_BYTES = 4 << 20  # progress lines and a few events: far below this
LINE_BYTES = 64 << 10
OUTPUT_BYTES = 64 << 20  # what the student prints (Keras progress bars included)
TAIL_CHARS = 1500  # of that output, shown when the child dies
MESSAGE_CHARS = 8000
SCRATCH_BYTES = 2 << 30
SCRATCH_ENTRIES = 20000
SCAN_SECONDS = 1.0
POLL_SECONDS = 0.25


# ---------------------------------------------------------------------------- the protocol
# (in watch.py and in student.py, identical to "end of the protocol": the child imports
# nothing from the package; tests/test_sandbox_messages.py keeps the two the same)


@dataclass(frozen=True, kw_only=True)
class Limits(Record):
    """The child's resource limits, each lowered before any student code runs."""

    memory: int
    file_size: int
    open_files: int
    core: int
    cpu_seconds: int
    processes: int | None = None  # none when off: a normal user's count includes their desktop


@dataclass(frozen=True, kw_only=True)
class Request(Message):
    """What the child runs, paths as it sees them; `env` for a fork (the server's is not its)."""

    KIND: ClassVar[str] = "request"
    module: str
    phases: tuple[str, ...]
    weights_file: str | None
    seed: int
    train_data: str | None  # the training split (x, y), validation (x_val, y_val): to train
    out: str
    cwd: str
    limits: Limits
    uid: int | None  # the fresh uid it drops to, when it starts as root
    env: dict[str, str] | None = None
    mnist: str | None = None  # what keras' mnist.load_data() serves (those splits); None: none


@dataclass(frozen=True, kw_only=True)
class ProgressEvent(Message):
    TAG: ClassVar[str] = "event"
    KIND: ClassVar[str] = "progress"
    message: str


@dataclass(frozen=True, kw_only=True)
class Failed(Message):
    """The submission's fault (or, said plainly, ours on it): the message is for the student."""

    TAG: ClassVar[str] = "event"
    KIND: ClassVar[str] = "failed"
    message: str


@dataclass(frozen=True, kw_only=True)
class Exported(Message):
    """The phase's files are written (the launcher copies them out of its reach)."""

    TAG: ClassVar[str] = "event"
    KIND: ClassVar[str] = "exported"
    phase: str
    peak_rss_mb: float = 0.0  # the benchmarks' trace only: nothing it says is used for a grade


EVENTS: tuple[type[Message], ...] = (ProgressEvent, Failed, Exported)


@dataclass(frozen=True, kw_only=True)
class Fork(Message):
    """To the fork server, with the child's protocol and output pipes: fork job `job`."""

    KIND: ClassVar[str] = "fork"
    job: int
    request: str  # the request file, as the server sees it


@dataclass(frozen=True, kw_only=True)
class Ready(Message):
    KIND: ClassVar[str] = "ready"
    pid: int


@dataclass(frozen=True, kw_only=True)
class Forked(Message):
    KIND: ClassVar[str] = "forked"
    job: int
    pid: int


@dataclass(frozen=True, kw_only=True)
class Exited(Message):
    KIND: ClassVar[str] = "exited"
    pid: int
    code: int


SERVER: tuple[type[Message], ...] = (Ready, Forked, Exited)  # what the fork server says

# ---------------------------------------------------------------------------- end of the protocol


class Process(Protocol):
    """The part of subprocess.Popen (or a forked Child) the watch needs."""

    @property
    def stdout(self) -> IO[bytes] | None: ...

    @property
    def stderr(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...


@dataclass(frozen=True, kw_only=True)
class ChildJob:
    """One child: a submission and the phases it must run (build, and maybe train)."""

    name: str
    module: Path
    weights: Path | None
    phases: tuple[str, ...]
    seed: int
    train_data: Path | None  # the training and validation splits, when it may train
    seconds: float  # the whole run (training included)
    timeout_source: str  # the setting that sets `seconds`, for the message
    build_seconds: float  # until the build phase has handed over its files
    build_timeout_source: str
    memory_bytes: int
    processes: int = 512  # threads count too: TensorFlow starts dozens
    serves_mnist: bool = False  # keras' mnist.load_data() serves train_data (it trains itself)


@dataclass
class Watch:
    """What the supervisor has seen of a running child."""

    exported: set[str] = field(default_factory=set)
    failure: str | None = None
    stopped: str | None = None  # why we stopped it
    protocol: bytearray = field(default_factory=bytearray)
    protocol_bytes: int = 0
    output_bytes: int = 0
    peak_rss_mb: float = 0.0  # as the child says (the benchmarks' trace only)
    tail: bytes = b""


OnExport = Callable[[str, Path], None]


# ---------------------------------------------------------------------------- supervision


def supervise(process: Process, job: ChildJob, work: Path, staging: Path,
               on_progress: OnProgress, on_export: OnExport,
               cancelled: Callable[[], bool]) -> Watch:
    """Read the child until it ends or must be stopped; the deadline holds whatever it writes."""
    watch = Watch()
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


def _read(selector: selectors.BaseSelector, key: selectors.SelectorKey, watch: Watch, job: ChildJob,
          work: Path, staging: Path, on_progress: OnProgress, on_export: OnExport) -> None:
    chunk = os.read(key.fd, 65536)
    if not chunk:
        selector.unregister(key.fileobj)
    elif key.data == "protocol":
        _protocol(watch, chunk, job, work, staging, on_progress, on_export)
    else:
        _output(watch, chunk)


def _stop_reason(job: ChildJob, watch: Watch, elapsed: float,
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


def _output(watch: Watch, chunk: bytes) -> None:
    watch.output_bytes += len(chunk)
    watch.tail = (watch.tail + chunk)[-4 * TAIL_CHARS:]
    if watch.output_bytes > OUTPUT_BYTES:
        watch.stopped = (f"wrote more than {OUTPUT_BYTES >> 20} MB of output (prints, "
                         "progress bars); it was stopped. Print less (verbose=0 in fit())")


def _protocol(watch: Watch, chunk: bytes, job: ChildJob, work: Path, staging: Path,
              on_progress: OnProgress, on_export: OnExport) -> None:
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


def _event(watch: Watch, line: bytes, job: ChildJob, work: Path, staging: Path,
           on_progress: OnProgress, on_export: OnExport) -> None:
    """One line of the child's: an event of the protocol, or nothing (whatever else it is)."""
    try:
        event = parse(loads(line, what="a line", limit=LINE_BYTES), EVENTS)
    except RecordError:  # not JSON, too deep, or not one of ours
        return
    if isinstance(event, ProgressEvent):
        on_progress(clean(event.message, 500))
    elif isinstance(event, Failed) and watch.failure is None:
        watch.failure = clean(event.message, MESSAGE_CHARS)
    elif isinstance(event, Exported) and event.phase in job.phases \
            and event.phase not in watch.exported and watch.failure is None:
        watch.peak_rss_mb = max(watch.peak_rss_mb, event.peak_rss_mb)
        phase = event.phase
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


def tail(raw: bytes) -> str:
    text = clean(raw.decode("utf-8", "replace"), 4 * TAIL_CHARS)
    return f"\nlast output of the process:\n{text[-TAIL_CHARS:]}" if text else ""


# ---------------------------------------------------------------------------- hand-over

EXPORTS = {"build": {"model.json": 8 << 20, "weights.npz": 512 << 20, "meta.json": 64 << 10,
                     "source.py": 8 << 20},
           "train": {"weights.npz": 512 << 20}}
OPTIONAL = frozenset({"source.py"})  # a notebook's code (for the similarity report) only


def snapshot(source: Path, target: Path, caps: dict[str, int]) -> str | None:
    """Copy the phase's files out of the child's reach; None, or what is wrong with them.
    A file must be the child's own (its scratch's owner: not a hard link to a file it may
    only read) and a regular file (a FIFO would block, a device would never end)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        directory, owner = _open_dir(source)
    except OSError:
        return (f"the sandbox exported no {source.name} files (out/{source.name} is missing or "
                "not a directory)")
    try:
        for name, cap in caps.items():
            problem = _copy_capped(directory, owner, name, target / name, cap)
            if problem:
                return problem
    finally:
        os.close(directory)
    return None


def _open_dir(path: Path) -> tuple[int, int]:
    """Open each component without following a symlink the child may have planted; the
    directory and the owner of the child's scratch (the first component)."""
    fd = os.open(path.parents[1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    owner = os.fstat(fd).st_uid
    try:
        for part in path.parts[-2:]:
            new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = new
    except OSError:
        os.close(fd)
        raise
    return fd, owner


def _copy_capped(directory: int, owner: int, name: str, target: Path, cap: int) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"the exported {name} is a symbolic link, not a file"
        if error.errno == errno.ENOENT and name in OPTIONAL:
            return None
        return f"the sandbox exported no {name}"
    with os.fdopen(fd, "rb") as source:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            return f"the exported {name} is not a regular file"
        if found.st_uid != owner:
            return f"the exported {name} is not the submission's own file (a link to another)"
        data_left = cap + 1
        with target.open("wb") as out:
            while data_left > 0 and (chunk := source.read(min(1 << 20, data_left))):
                out.write(chunk)
                data_left -= len(chunk)
    if data_left <= 0:
        return f"the exported {name} is larger than {cap >> 20} MB"
    os.chmod(target, 0o600)
    return None
