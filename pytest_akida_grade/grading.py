"""One student's grading, stage by stage, each stage run at most once and cached.

inspect  (child process, seconds): build the model, its layers, the Akida 1.0 fit truth.
grade    (child process, training): float / quantized / Akida accuracy, the converted model.
hardware (this process): the board, a replayed recording, or nothing.

No pytest here: the plugin asks for stages and turns them into check outcomes (checks.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_akida_grade import isolation
from pytest_akida_grade.cache import Cache, cache_key
from pytest_akida_grade.discovery import Submission
from pytest_akida_grade.settings import Settings


class HarnessError(Exception):
    """The grader, not the student, could not do its job (no data, no board, a bug)."""


@dataclass
class Stage:
    result: dict[str, Any] | None = None  # the stage's figures, when it ran to the end
    failure: str | None = None  # why the submission failed this stage (student-facing)
    repeatable: bool = True  # False for a timeout or a crash: not worth caching

    @property
    def ok(self) -> bool:
        return self.failure is None and self.result is not None


@dataclass
class Board:
    """How hardware_quality is measured this session (see hardware.py)."""

    device: Any = None  # an opened akida device
    replay: dict[str, Any] = field(default_factory=dict)  # student -> hardware.Measurement
    replay_path: Path | None = None
    lock_path: Path | None = None


Progress = Callable[[str, str], None]  # (student, message)


class Grader:
    """Session-wide: resolves the data set once and memoizes each student's stages."""

    def __init__(self, settings: Settings, cache: Cache, scratch: Path,
                 progress: Progress = lambda student, message: None) -> None:
        self.settings = settings
        self.cache = cache
        self.scratch = scratch  # artifacts when the cache is off
        self.progress = progress
        self._mnist: Any = None
        self._stages: dict[tuple[str, str], Stage] = {}
        self.board = Board()
        self._board_ready = False
        # One background grading at a time: with the foreground's inspect, both cores busy.
        self._background = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="akida-grade")
        self._grading: dict[str, concurrent.futures.Future[Stage]] = {}
        self._pending_progress: queue.Queue[tuple[str, str]] = queue.Queue()
        self._stop = threading.Event()
        self._unwanted: set[str] = set()  # submissions whose background grading must stop

    def close(self) -> None:
        self._stop.set()  # a child still training for nobody is stopped, not waited for
        self._background.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ data

    def mnist(self) -> Any:
        """The validated MNIST file (data.MnistSource), resolved once per session."""
        if self._mnist is None:
            from pytest_akida_grade import data

            data_cache = self.cache.root or self.scratch
            try:
                self._mnist = data.resolve_mnist(
                    self.settings.mnist, data_cache, explicit_origin=self._mnist_origin())
            except data.MnistError as error:
                raise HarnessError(str(error)) from None
        return self._mnist

    def _mnist_origin(self) -> str:
        return "--akida-mnist / AKIDA_GRADE_MNIST / akida_mnist"

    # ------------------------------------------------------------------ stages

    def inspect(self, submission: Submission) -> Stage:
        stage = self._memo("inspect", submission, self._inspect)
        if not stage.ok:  # it cannot be graded: stop a prefetched training (it may hang too)
            self._unwanted.add(str(submission.path))
        return stage

    def grade(self, submission: Submission) -> Stage:
        return self._memo("grade", submission, self._grade)

    def peek(self, stage: str, submission: Submission) -> Stage | None:
        """A stage already run this session, without running it."""
        return self._stages.get((stage, str(submission.path)))

    def _memo(self, stage: str, submission: Submission,
              run: Callable[[Submission], Stage]) -> Stage:
        key = (stage, str(submission.path))
        if key not in self._stages:
            self._stages[key] = run(submission)
        return self._stages[key]

    def _inspect(self, submission: Submission) -> Stage:
        key = cache_key("inspect", **submission.fingerprint(), seed=self.settings.seed)
        weights = submission.weights_path
        request = {"stage": "inspect", "path": str(submission.path), "seed": self.settings.seed,
                   "weights_file": str(weights) if weights.is_file() else None}
        return self._run_cached("inspect", key, submission, request, self.settings.timeout,
                                "akida_timeout / --akida-timeout", files={})

    def prefetch_grade(self, submission: Submission) -> None:
        """Start training in the background while the fast checks run (2 cores, 2 processes)."""
        with contextlib.suppress(HarnessError):  # grade() will raise it where it belongs
            self._start_grade(submission)

    def _grade(self, submission: Submission) -> Stage:
        inspected = self.inspect(submission)
        if not inspected.ok:  # the first line of why: the loads check has all of it
            why = (inspected.failure or "").strip().split("\n", 1)[0]
            return Stage(failure="the submission did not load (see the loads check)"
                         + (f": {why}" if why else ""))
        future = self._start_grade(submission)
        while True:  # relay the background child's progress from this (pytest's) thread
            try:
                stage = future.result(timeout=0.2)
            except TimeoutError:
                self.flush_progress()
                continue
            self.flush_progress()
            return stage

    def _start_grade(self, submission: Submission) -> concurrent.futures.Future[Stage]:
        if str(submission.path) in self._grading:
            return self._grading[str(submission.path)]
        keys = self._grade_keys(submission)
        hit = self.cache.load("grade", keys["grade"])
        future: concurrent.futures.Future[Stage] = concurrent.futures.Future()
        if hit is not None:
            future.set_result(self._from_entry(hit))
        else:
            future = self._background.submit(self._grade_in_child, submission, keys)
        self._grading[str(submission.path)] = future
        return future

    def _grade_keys(self, submission: Submission) -> dict[str, str]:
        """Everything training and evaluation depend on; the source and weights decide the route."""
        s, data = self.settings, self.mnist().sha256
        trained = cache_key(
            "trained", **submission.fingerprint(), epochs=s.epochs, batch_size=s.batch_size,
            seed=s.seed, validation_split=s.validation_split, train_limit=s.train_limit,
            data=data)
        grade = cache_key("grade", trained=trained, attempts=s.quantize_attempts,
                          calibration=s.calibration_samples, test_limit=s.test_limit)
        return {"trained": trained, "grade": grade}

    def _grade_in_child(self, submission: Submission, keys: dict[str, str]) -> Stage:
        s = self.settings
        artifacts = Path(tempfile.mkdtemp(prefix=f"{submission.name}-", dir=self.scratch))
        trained = self.cache.load("trained", keys["trained"])
        request = {
            "stage": "grade", "path": str(submission.path), "mnist": str(self.mnist().path),
            "weights_file": str(submission.weights_path),
            "trained_weights": str(trained.file("weights.h5")) if trained else None,
            "epochs": s.epochs, "batch_size": s.batch_size, "seed": s.seed,
            "validation_split": s.validation_split, "train_limit": s.train_limit,
            "test_limit": s.test_limit, "quantize_attempts": s.quantize_attempts,
            "calibration_samples": s.calibration_samples,
            "artifacts": {"weights": str(artifacts / "weights.h5"),
                          "model": str(artifacts / "model.fbz")},
        }
        stage = self._run(submission, request, s.grade_timeout,
                          "akida_grade_timeout / --akida-grade-timeout",
                          lambda: self._stop.is_set() or str(submission.path) in self._unwanted)
        if stage.ok:
            if trained is None:
                self.cache.store("trained", keys["trained"], {},
                                 {"weights.h5": artifacts / "weights.h5"})
            entry = self.cache.store("grade", keys["grade"], stage.result or {},
                                     {"model.fbz": artifacts / "model.fbz"})
            model = entry.file("model.fbz") if entry else artifacts / "model.fbz"
            stage.result = {**(stage.result or {}), "model_path": str(model)}
        return stage

    # ------------------------------------------------------------------ progress

    def _report(self, student: str, message: str) -> None:
        """Progress from any thread; only pytest's own thread may write to the terminal."""
        if threading.current_thread() is threading.main_thread():
            self.flush_progress()
            self.progress(student, message)
        else:
            self._pending_progress.put((student, message))

    def flush_progress(self) -> None:
        while True:
            try:
                student, message = self._pending_progress.get_nowait()
            except queue.Empty:
                return
            self.progress(student, message)

    @staticmethod
    def _from_entry(entry: Any) -> Stage:
        result = {**entry.result, "model_path": str(entry.file("model.fbz"))}
        return Stage(result=result)

    # ------------------------------------------------------------------ child processes

    def _run_cached(self, kind: str, key: str, submission: Submission, request: dict[str, Any],
                    timeout: float, timeout_source: str, files: dict[str, Path]) -> Stage:
        hit = self.cache.load(kind, key)
        if hit is not None:
            return Stage(result=hit.result.get("result"), failure=hit.result.get("failure"))
        stage = self._run(submission, request, timeout, timeout_source)
        if stage.repeatable:
            self.cache.store(kind, key, {"result": stage.result, "failure": stage.failure}, files)
        return stage

    def _run(self, submission: Submission, request: dict[str, Any], timeout: float,
             timeout_source: str, cancelled: Callable[[], bool] = lambda: False) -> Stage:
        outcome = isolation.run_stage(
            request, timeout=timeout, timeout_source=timeout_source,
            on_progress=lambda message: self._report(submission.name, message),
            cancelled=cancelled)
        stage = Stage()
        if outcome.result is None:
            stage.failure, stage.repeatable = outcome.error, False
        elif "error" in outcome.result:
            if not outcome.result.get("student_fault"):
                raise HarnessError(
                    f"the grader failed on {submission.name}: {outcome.result['error']}\n"
                    f"{outcome.result.get('traceback', '')}")
            stage.failure = outcome.result["error"]
        else:
            stage.result = outcome.result
        return stage

    # ------------------------------------------------------------------ hardware_quality

    def hardware(self, submission: Submission) -> Stage:
        return self._memo("hardware", submission, self._hardware)

    def _hardware(self, submission: Submission) -> Stage:
        if self.settings.use_device:
            return self._measure(submission)
        if self.settings.replay is not None:
            return self._replayed(submission)
        return Stage(result={"source": "none"})

    def _prepare_board(self) -> Board:
        """Open the board (or read the recording) once per process."""
        if self._board_ready:
            return self.board
        from pytest_akida_grade import hardware

        try:
            if self.settings.use_device:
                self.board.device = hardware.open_device(self.settings.device)
                self.board.lock_path = Path(tempfile.gettempdir()) / "akida-grade-board.lock"
            elif self.settings.replay is not None:
                self.board.replay = hardware.load_replay(self.settings.replay)
                self.board.replay_path = self.settings.replay
        except (hardware.BoardError, hardware.ReplayError) as error:
            raise HarnessError(str(error)) from None
        self._board_ready = True
        return self.board

    def _measure(self, submission: Submission) -> Stage:
        from pytest_akida_grade import data, hardware

        board = self._prepare_board()
        graded = self.grade(submission)
        if not graded.ok:
            return Stage(failure=f"not measured: {graded.failure}")
        (_, _), (x_test, y_test) = data.load_mnist(self.mnist().path)
        if self.settings.test_limit:
            x_test, y_test = x_test[: self.settings.test_limit], y_test[: self.settings.test_limit]
        model_path = Path((graded.result or {})["model_path"])
        assert board.lock_path is not None
        try:
            with hardware.BoardLock(board.lock_path):
                measurement = hardware.measure(model_path, board.device, x_test, y_test)
        except hardware.BoardError as error:
            raise HarnessError(str(error)) from None
        except (RuntimeError, ValueError) as error:  # akida's mapper: the model does not fit
            return Stage(failure=f"the model cannot run on the AKD1000: {error}")
        if self.settings.record is not None:
            hardware.write_record(self.settings.record, {submission.name: measurement})
        return Stage(result={"source": "device", "measurement": measurement})

    def _replayed(self, submission: Submission) -> Stage:
        from pytest_akida_grade import hardware

        board = self._prepare_board()
        measurement = board.replay.get(submission.name)
        if measurement is None:
            return Stage(result={"source": "none",
                                 "why": f"{board.replay_path} has no figures for "
                                        f"{submission.name}"})
        if measurement.model_sha256:
            graded = self.grade(submission)
            model = (graded.result or {}).get("model_path")
            if model is None or hardware.file_sha256(Path(model)) != measurement.model_sha256:
                raise HarnessError(
                    f"the figures for {submission.name} in {board.replay_path} were recorded "
                    "for another model: the converted model's sha256 no longer matches. "
                    "Re-measure on the board (--akida-device --akida-record FILE).")
        return Stage(result={"source": "replay", "measurement": measurement})
