"""Run student.py on one submission, confined (policy.py), and take back its files.

The child gets a read-only copy of its own submission (not its classmates'), the training split
only when it trains, and a private scratch directory. watch.py holds it to its limits and takes
its hand-over; here every process it started is killed at the end and its directory removed.
`Children` keeps a session's runs: one a submission, forked from the fork server where it can
isolate them (`ForkServer`, below, and zygote.py), else a fresh process each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_akida_grade.background import OnProgress
from pytest_akida_grade.codec import RecordError, loads, parse
from pytest_akida_grade.fileio import trace
from pytest_akida_grade.results import Stage
from pytest_akida_grade.sandbox.policy import CODE_DIR, Bind, Policy
from pytest_akida_grade.sandbox.watch import (
    SERVER,
    ChildJob,
    Exited,
    Fork,
    Forked,
    Limits,
    OnExport,
    Ready,
    Request,
    Watch,
    supervise,
    tail,
)

INSIDE = Path("/sandbox")
# TensorFlow's documented switch: `from tensorflow import keras` is tf_keras, as the course's
# environment had it (`import keras` stays Keras 3). The fork server imports TensorFlow before
# it forks: its environment has it too.
KERAS_ENV = {"TF_USE_LEGACY_KERAS": "1"}


@dataclass(frozen=True)
class RunEnd:
    exported: frozenset[str]  # phases whose files were handed over
    failure: str | None = None  # the first problem, for the student
    repeatable: bool = True  # False for a stop (time, output, memory) or a crash


def run(policy: Policy, job: ChildJob, scratch: Path, staging: Path, on_progress: OnProgress,
        on_export: OnExport, cancelled: Callable[[], bool] = lambda: False,
        forks: ForkServer | None = None) -> RunEnd:
    """Run `job`; each phase's files are copied into `staging/<phase>/` before `on_export`.
    With `forks` (whose jobs directory is `scratch`), the child is a fork of its server."""
    started = time.monotonic()
    uid = policy.run_uid()
    home = Path(tempfile.mkdtemp(prefix=f"{job.name}-", dir=scratch))
    forked = forks is not None and policy.forks
    try:
        work = _prepare(home, job, uid, copy_data=forked)
        request, argv, env = _request(policy, job, home, uid, forked)
        (home / "in" / "request.json").write_text(json.dumps(request.to_json()))
        _seal(home / "in", uid)
        process = _start(policy, job, home, argv, env, uid, forks if forked else None)
        try:
            watch = supervise(process, job, work, staging, on_progress, on_export, cancelled)
        finally:
            code = _kill_all(process, uid)
        trace({"role": "sandbox", "student": job.name, "phases": list(job.phases),
               "peak_rss_mb": watch.peak_rss_mb, "pid": os.getpid(),
               "seconds": round(time.monotonic() - started, 3)})
        return _end(watch, code, job)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # fd-based: safe from the child's symlinks


def _start(policy: Policy, job: ChildJob, home: Path, argv: list[str], env: dict[str, str],
           uid: int | None, forks: ForkServer | None) -> subprocess.Popen[bytes] | Child:
    if forks is not None:
        with contextlib.suppress(ForkServerError):  # then a fresh process, as without it
            return forks.spawn(home / "in" / "request.json")
        request, argv, env = _request(policy, job, home, uid, False)
        (home / "in" / "request.json").write_text(json.dumps(request.to_json()))
    return subprocess.Popen(
        policy.wrap(_binds(home, job), env, argv), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=home / "work",
        start_new_session=True, **policy.popen_user(uid))


# ---------------------------------------------------------------------------- the run's files


def _prepare(home: Path, job: ChildJob, uid: int | None, copy_data: bool) -> Path:
    """home/in: the copies it may read (root-owned); home/work: the scratch it may write."""
    os.chmod(home, 0o711)
    inputs, work = home / "in", home / "work"
    inputs.mkdir()
    shutil.copyfile(job.module, inputs / f"{job.name}{job.module.suffix}")
    if job.weights is not None:
        shutil.copyfile(job.weights, inputs / f"{job.name}.weights.h5")
    if copy_data and job.train_data is not None:  # a fork sees the jobs directory, not binds
        shutil.copyfile(job.train_data, inputs / "train.npz")
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


def _request(policy: Policy, job: ChildJob, home: Path, uid: int | None,
             forked: bool) -> tuple[Request, list[str], dict[str, str]]:
    """The request (paths as the child sees them), the command's argv and environment."""
    inside = policy.paths_inside(forked)
    inputs = INSIDE / "in" if inside else home / "in"
    work = INSIDE / "work" if inside else home / "work"
    code = INSIDE / "code" if inside else CODE_DIR
    data = None if not job.train_data else INSIDE / "data" / "train.npz" if inside else \
        inputs / "train.npz" if forked else job.train_data
    limits = Limits(memory=job.memory_bytes, file_size=1 << 30, open_files=1024, core=0,
                    cpu_seconds=int(job.seconds * (os.cpu_count() or 1)) + 30,
                    # root ignores it, and a normal user's count includes their desktop
                    processes=job.processes if policy.limits_processes else None)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
           "TMPDIR": "/tmp" if inside else str(work / "tmp"), "PYTHONUNBUFFERED": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2", "MPLCONFIGDIR": str(work / "tmp"),
           "KERAS_HOME": str(work / ".keras"), **KERAS_ENV}
    if forked:
        env["TMPDIR"] = str(work / "tmp")  # the fork server's /tmp is not writable
    request = Request(
        module=str(inputs / f"{job.name}{job.module.suffix}"), phases=job.phases,
        weights_file=str(inputs / f"{job.name}.weights.h5") if job.weights else None,
        seed=job.seed, train_data=str(data) if data else None, out=str(work / "out"),
        cwd=str(work), limits=limits,
        uid=policy.child_uid(uid, forked),
        env=dict(env) if forked else None,
        mnist=str(data) if data and job.serves_mnist else None)
    argv = [policy.python, "-I", str(code / "student.py"), str(inputs / "request.json")]
    return request, argv, env


def _binds(home: Path, job: ChildJob) -> list[Bind]:
    """What a confined child sees at INSIDE, where its mode gives it paths of its own."""
    binds: list[Bind] = [("--ro-bind", CODE_DIR, str(INSIDE / "code")),
                         ("--ro-bind", home / "in", str(INSIDE / "in")),
                         ("--bind", home / "work", str(INSIDE / "work"))]
    if job.train_data is not None:
        binds.append(("--ro-bind", job.train_data, str(INSIDE / "data" / "train.npz")))
    return binds


# ---------------------------------------------------------------------------- the end


def _kill_all(process: subprocess.Popen[bytes] | Child, uid: int | None) -> int | None:
    """Nothing it started may outlive the run: its group, its PID namespace, its uid.
    Returns its exit code."""
    if process.pid is not None:  # a fork in the sandbox's PID namespace has no pid here
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


def _end(watch: Watch, code: int | None, job: ChildJob) -> RunEnd:
    exported = frozenset(watch.exported)
    output = tail(watch.tail)
    if watch.stopped is not None:
        return RunEnd(exported, watch.stopped + output, repeatable=False)
    if watch.failure is not None:
        return RunEnd(exported, _memory_hint(watch.failure, job))
    if "build" not in exported or (code not in (0, None) and len(exported) < len(job.phases)):
        return RunEnd(exported, _death(code or 0) + output, repeatable=False)
    return RunEnd(exported)


def _memory_hint(message: str, job: ChildJob) -> str:
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


# ---------------------------------------------------------------------------- in the background


@dataclass
class Handle:
    """A run in a background thread: one future per phase, each resolving to the directory of
    its hand-over or to the run's end (whose failure tells why there is none)."""

    phases: dict[str, Future[Path | RunEnd]]
    end: Future[RunEnd]


def start(pool: Executor, policy: Policy, job: ChildJob, scratch: Path, staging: Path,
          on_progress: OnProgress, cancelled: Callable[[], bool],
          forks: ForkServer | None = None) -> Handle:
    handle = Handle({phase: Future() for phase in job.phases}, Future())

    def exported(phase: str, directory: Path) -> None:
        handle.phases[phase].set_result(directory)

    def body() -> None:
        try:
            end = run(policy, job, scratch, staging, on_progress, exported, cancelled, forks)
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


class Children:
    """A session's sandboxed children: one run a submission (with its train phase when needed),
    the fork server they are forked from where it can isolate them, their directories."""

    def __init__(self, policy: Policy, scratch: Path, progress: Callable[[str, str], None],
                 cancelled: Callable[[str], bool]) -> None:
        self.policy, self.scratch = policy, scratch
        self.progress, self.cancelled = progress, cancelled
        self._pool = ThreadPoolExecutor(64, thread_name_prefix="akida-run")
        self._lock = threading.Lock()
        self._runs: dict[str, Handle] = {}
        self._forks: ForkServer | None = None

    def started(self, key: str) -> bool:
        return key in self._runs

    def handed_over(self, key: str, phase: str, train: bool,
                    job: Callable[[], ChildJob]) -> Stage[Path]:
        """The phase's files (started now if need be), or why the child handed over none."""
        outcome = self._run(key, train, job).phases[phase].result()
        if isinstance(outcome, Path):
            return Stage(result=outcome)
        return Stage(failure=outcome.failure or f"the submission's {phase} phase handed over "
                                                "nothing", repeatable=outcome.repeatable)

    def staging(self) -> Path:
        """Where the children's files go once out of their reach (only the grader's)."""
        return self._directory("exports", 0o700)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._forks is not None:
            self._forks.close()

    def _run(self, key: str, train: bool, job: Callable[[], ChildJob]) -> Handle:
        with self._lock:
            handle = self._runs.get(key)
            if handle is None or (train and "train" not in handle.phases):
                made = job()
                staging = Path(tempfile.mkdtemp(prefix=f"{made.name}-", dir=self.staging()))
                handle = start(self._pool, self.policy, made, self._directory("sandboxes", 0o711),
                               staging, lambda message: self.progress(made.name, message),
                               lambda: self.cancelled(key), self._fork_server())
                self._runs[key] = handle
            return handle

    def _fork_server(self) -> ForkServer | None:
        """TensorFlow imported once for every child, where the children can be isolated."""
        if self._forks is None and self.policy.forks:
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                   "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **KERAS_ENV}
            jobs = self._directory("sandboxes", 0o711)
            self._forks = ForkServer(lambda fd: self.policy.fork_server_command(jobs, env, fd),
                                     env, self.scratch / "fork-server.log",
                                     host_pids=self.policy.host_pids)
        return self._forks

    def _directory(self, name: str, mode: int) -> Path:
        directory = self.scratch / name
        directory.mkdir(mode=mode, exist_ok=True)
        return directory


# ---------------------------------------------------------------------------- the fork server
# The launcher's side of zygote.py: start it, hand it jobs. A submission's process then costs no
# TensorFlow import: it is a fork of a confined process that imported it once. Used where every
# job can get its own fresh uid (bubblewrap as root, the uid mode) or where nothing is isolated
# anyway (off); elsewhere each job is a fresh process.

READY_SECONDS = 180.0
PACKET = 1 << 16  # one message of the fork server's


class ForkServerError(Exception):
    """The fork server could not start or died: the job runs as a fresh process instead."""


class Child:
    """A forked job, shaped like the part of subprocess.Popen the launcher uses."""

    def __init__(self, pid: int | None, stdout: IO[bytes], stderr: IO[bytes],
                 ended: Future[int]) -> None:
        # The pid on this host; None when the child lives in the sandbox's PID namespace (its
        # number there means another process here: never signal it).
        self.pid, self.stdout, self.stderr, self._ended = pid, stdout, stderr, ended
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self._ended.done():
            self.returncode = self._ended.result()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        try:
            self.returncode = self._ended.result(timeout=timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired("fork", timeout or 0.0) from None
        return self.returncode


class ForkServer:
    """`command(fd)` starts zygote.py with its socket on `fd` (policy.fork_server_command);
    `host_pids`: False when its children live in a PID namespace of their own."""

    def __init__(self, command: Callable[[int], list[str]], env: dict[str, str], log: Path,
                 host_pids: bool) -> None:
        self.command, self.env, self.log, self.host_pids = command, env, log, host_pids
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._jobs = 0
        self._started: dict[int, Future[int]] = {}  # job -> pid
        self._ended: dict[int, Future[int]] = {}  # pid -> exit code
        self._broken: str | None = None

    def spawn(self, request: Path) -> Child:
        """Fork a child on `request` (a path the fork server sees); ForkServerError if it cannot."""
        with self._lock:
            channel = self._ensure_started()
            self._jobs += 1
            job = self._jobs
            started = self._started[job] = Future()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                fork = Fork(job=job, request=str(request))
                socket.send_fds(channel, [json.dumps(fork.to_json()).encode()], [out_w, err_w])
            except OSError as error:
                for fd in (out_r, out_w, err_r, err_w):
                    os.close(fd)
                self._fail(f"the fork server is gone ({error})")
            finally:
                with contextlib.suppress(OSError):
                    os.close(out_w)
                    os.close(err_w)
        pid = started.result(timeout=60)
        ended = self._ended.setdefault(pid, Future())
        return Child(pid if self.host_pids else None,
                     os.fdopen(out_r, "rb", buffering=0), os.fdopen(err_r, "rb", buffering=0),
                     ended)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            if self._process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=30)

    # ------------------------------------------------------------------ the server

    def _ensure_started(self) -> socket.socket:
        if self._broken is not None:
            raise ForkServerError(self._broken)
        if self._channel is not None and self._process is not None and \
                self._process.poll() is None:
            return self._channel
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(theirs.fileno()), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(theirs.fileno(),), env=self.env, start_new_session=True)
        theirs.close()
        self._channel = ours
        self._await_ready(ours)
        threading.Thread(target=self._listen, args=(ours,), daemon=True).start()
        return ours

    def _await_ready(self, channel: socket.socket) -> None:
        channel.settimeout(READY_SECONDS)
        try:
            data = channel.recv(PACKET)
        except OSError as error:
            self._fail(f"the fork server did not start ({error})")
        finally:
            channel.settimeout(None)
        try:
            Ready.from_json(loads(data or b"{}", what="the fork server", limit=PACKET))
        except RecordError:  # its log says why
            self._fail("the fork server did not start (see its log)")

    def _listen(self, channel: socket.socket) -> None:
        """Dispatch the server's answers: a job's pid, a child's end."""
        while True:
            try:
                message = parse(loads(channel.recv(PACKET) or b"null", what="the fork server",
                                      limit=PACKET), SERVER)
            except (OSError, RecordError):  # closed, or not its protocol: as good as gone
                self._gone()
                return
            if isinstance(message, Forked):
                self._started.pop(message.job).set_result(message.pid)
            elif isinstance(message, Exited):
                ended = self._ended.setdefault(message.pid, Future())
                if not ended.done():
                    ended.set_result(message.code)

    def _gone(self) -> None:
        """The server died: waiters learn it (their children died with it)."""
        for future in [*self._started.values(), *self._ended.values()]:
            if not future.done():
                future.set_result(-signal.SIGKILL)
        self._channel = None

    def _fail(self, why: str) -> None:
        self._broken = why
        raise ForkServerError(why)
