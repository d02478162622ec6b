"""Runs INSIDE the sandbox: the fork server, `python -I zygote.py FD` (FD: its socket).

It imports numpy and tf_keras once (two of the three seconds a submission's process spends before
its first line runs), then forks one child a job. A child confines itself exactly as a fresh
student.py process does (limits, then a fresh unprivileged uid) before it imports the
submission; it never runs in this process, which only forks, reaps and reports. Like
student.py, it imports nothing from this package: its messages are student.py's copy of
watch.py's.

Protocol on the socket (SOCK_SEQPACKET, one JSON object a message): this says Ready, then the
launcher sends Fork (job n, the request's path) with two descriptors (the child's protocol and
output pipes); this answers Forked (job n, its pid), then Exited (pid, code) when the child ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same file, as mypy finds it
    from pytest_akida_grade.sandbox import student
else:  # the file beside us: the package is not importable in the sandbox
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import student


def serve(channel: socket.socket) -> None:
    import numpy  # noqa: F401  (the costly imports, once, before any fork)
    import tf_keras  # noqa: F401

    lock = threading.Lock()  # the reaper and the main loop both send

    def send(message: student.Message) -> None:
        with lock:
            channel.send(json.dumps(message.to_json()).encode())

    threading.Thread(target=reap, args=(send,), daemon=True).start()
    send(student.Ready(pid=os.getpid()))
    while True:
        data, fds, _, _ = socket.recv_fds(channel, 1 << 16, 2)
        if not data:
            return  # the launcher is gone: so are we (bubblewrap takes the children with it)
        job = student.Fork.from_json(student.loads(data, what="a job", limit=1 << 16))
        pid = os.fork()
        if pid == 0:
            child(channel, fds, job.request)
        for fd in fds:
            os.close(fd)
        send(student.Forked(job=job.job, pid=pid))


def child(channel: socket.socket, fds: list[int], request: str) -> None:
    """In the fork: the job's pipes as stdout and stderr, its own session, then student.py."""
    code = 1
    try:
        channel.close()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        code = student.main([request])
    finally:
        os._exit(code)


def reap(send: Callable[[student.Message], None]) -> None:
    """Report every child's end (the launcher waits for it, not for the pipes)."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            threading.Event().wait(0.2)
            continue
        send(student.Exited(pid=pid, code=os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
