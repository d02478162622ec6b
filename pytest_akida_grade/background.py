"""Work in background threads, each piece started at most once; progress relayed in order.

The grader runs a student's stages here (the next students' while pytest judges this one).
Progress may come from any thread, but only pytest's own thread writes to the terminal: the
messages wait in a queue until it flushes them, also while it waits for a stage.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
Progress = Callable[[str, str], None]  # (student, message): the terminal shows it
OnProgress = Callable[[str], None]  # one student's message, where the student is known


class Background:
    def __init__(self, progress: Progress, threads: int = 64) -> None:
        # Stages wait on other stages: a pool wider than the look-ahead ever needs, so a waiting
        # thread never holds the place of what it waits for.
        self.progress = progress
        self._pool = concurrent.futures.ThreadPoolExecutor(threads,
                                                           thread_name_prefix="akida-stage")
        self._started: dict[Hashable, concurrent.futures.Future[Any]] = {}  # of any result type
        self._lock = threading.Lock()
        self._messages: queue.Queue[tuple[str, str]] = queue.Queue()

    def once(self, key: Hashable, body: Callable[[], T]) -> concurrent.futures.Future[T]:
        """The piece of work under `key`: started now unless it already was."""
        with self._lock:
            if key not in self._started:
                self._started[key] = self._pool.submit(body)
            return self._started[key]

    def finished(self, key: Hashable) -> object | None:
        """The result of the work under `key` if it already finished well; never waits."""
        future = self._started.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        result: object = future.result()
        return result

    def wait(self, future: concurrent.futures.Future[T]) -> T:
        """Wait; in pytest's thread, relay the background's progress meanwhile."""
        if threading.current_thread() is not threading.main_thread():
            return future.result()
        while True:
            try:
                result = future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                self.flush()
                continue
            self.flush()
            return result

    def report(self, student: str, message: str) -> None:
        """Progress from any thread; pytest's own thread writes it (flush)."""
        self._messages.put((student, message))

    def flush(self) -> None:
        while True:
            try:
                student, message = self._messages.get_nowait()
            except queue.Empty:
                return
            self.progress(student, message)

    def close(self) -> None:
        """Work not yet started is dropped; running work is waited for."""
        self._pool.shutdown(wait=True, cancel_futures=True)
