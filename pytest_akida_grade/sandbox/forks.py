"""The launcher's side of the sandbox's fork server (zygote.py): start it, hand it jobs.

A submission's process then costs no TensorFlow import: it is a fork of a confined process that
imported it once. Used where every job can get its own fresh uid (bubblewrap as root, the uid
mode) or where nothing is isolated anyway (off); elsewhere each job is a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO

from pytest_akida_grade.sandbox.messages import SERVER, Exited, Fork, Forked, Ready, parse

READY_SECONDS = 180.0


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
            data = channel.recv(1 << 16)
        except OSError as error:
            self._fail(f"the fork server did not start ({error})")
        finally:
            channel.settimeout(None)
        try:
            Ready.from_json(json.loads(data or b"{}"))
        except ValueError:  # its log says why
            self._fail("the fork server did not start (see its log)")

    def _listen(self, channel: socket.socket) -> None:
        """Dispatch the server's answers: a job's pid, a child's end."""
        while True:
            try:
                message = parse(json.loads(channel.recv(1 << 16) or b"null"), SERVER)
            except (OSError, ValueError):  # closed, or not its protocol: as good as gone
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
