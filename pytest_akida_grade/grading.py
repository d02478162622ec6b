"""The orchestrator: one student's stages, each run at most once, cached, and prefetched.

    build     sandboxed child (student code): its model exported -> evaluator: rules, v1 fit
    grade     trained weights (weights file | the child's train() | trusted default recipe)
              -> evaluator: float / quantized / Akida accuracy, the .fbz
    hardware  the board (board.py), a recording, or nothing (hardware.py)

The plugin asks for a check's verdict; stages run in background threads (the next student's
while this one is judged) and their typed results go to verdicts.py. No pytest here.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_akida_grade import catalog, data, scrub, similarity, verdicts
from pytest_akida_grade.background import Background, Progress
from pytest_akida_grade.cache import Cache, build_key, grade_keys
from pytest_akida_grade.discovery import Submission, find_class
from pytest_akida_grade.evaluator import jobs
from pytest_akida_grade.evaluator.client import Pool, memory_per_process
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.hardware import Hardware
from pytest_akida_grade.quality import Run
from pytest_akida_grade.results import (
    Built,
    Declarations,
    Graded,
    HarnessError,
    ResultError,
    Stage,
    Verdict,
    built_and_graded_from_json,
    built_from_json,
    declarations_from_json,
    graded_from_json,
    to_json,
    with_model,
)
from pytest_akida_grade.sandbox import launch
from pytest_akida_grade.sandbox.policy import Policy
from pytest_akida_grade.sandbox.watch import Job
from pytest_akida_grade.settings import Settings

if TYPE_CHECKING:
    from pytest_akida_grade.board import Bench

log = logging.getLogger("pytest_akida_grade")
T = TypeVar("T")
FINGERPRINT_MAX_BYTES = 64 << 20  # larger exports are compared by their hashes alone
TIMEOUT = "akida_timeout / --akida-timeout"
GRADE_TIMEOUT = "akida_grade_timeout / --akida-grade-timeout"


class Grader:
    """Session-wide (one per pytest process): the data set once, each student's stages once."""

    def __init__(self, settings: Settings, cache: Cache, scratch: Path, policy: Policy,
                 progress: Progress = lambda student, message: None) -> None:
        self.settings, self.cache, self.scratch, self.policy = settings, cache, scratch, policy
        self.background = Background(progress)
        self.wanted_grades: set[str] = set()  # submissions with an accuracy check selected
        self.following: dict[str, Submission] = {}  # the student after each, in run order
        self.current = ""  # the student pytest is judging now: its jobs go first
        self.children = launch.Children(  # a pool of its own: stages wait on its runs
            policy, scratch, self.background.report,
            lambda key: self._stop.is_set() or key in self._unwanted)
        self._stop = threading.Event()
        self._unwanted: set[str] = set()
        self.data = data.Dataset(
            settings.mnist, cache.root or scratch / "mnist", seed=settings.seed,
            validation_split=settings.validation_split, train_limit=settings.train_limit,
            test_limit=settings.test_limit)
        # As many warm trusted processes as this worker's share of the cores, one thread each:
        # their jobs are mostly serial, one thread is as fast and the same figures under any -n.
        # Trusted, but a model can be huge: their memory is bounded too.
        # xdist's workers in this session, 1 without xdist.
        self.workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        share = max(1, len(os.sched_getaffinity(0)) // self.workers)
        self.trusted = Pool(share, scratch,
                            memory_per_process(share * self.workers, 2 * settings.memory_limit),
                            self.background.report)
        self._fused: dict[str, Stage[Graded]] = {}  # grades computed with their build
        self._bench: Bench | None = None  # opened on first use
        self._fingerprints: dict[tuple[str, str], dict[str, Any]] = {}
        self._hardware = Hardware(settings, self.bench)

    def close(self) -> None:
        self._stop.set()  # a child still working for nobody is stopped, not waited for
        self.background.close()
        self.children.close()
        self.trusted.close()

    # ------------------------------------------------------------------ the plugin's API

    def verdict(self, submission: Submission, check: str) -> Verdict:
        """The check's verdict, in words for the student (the full text to the log);
        HarnessError when the grader itself cannot give one."""
        verdict = self._verdict(submission, check)
        message = scrub.for_student(verdict.message)
        if message != verdict.message:
            log.info("%s %s, in full: %s", submission.name, check, verdict.message)
        return replace(verdict, message=message)

    def _verdict(self, submission: Submission, check: str) -> Verdict:
        stage = catalog.BY_NAME[check].stage
        if stage == "build":
            return verdicts.FAST[check](self.build(submission))
        built = self.build(submission)
        if built.result is not None and built.result.not_rebuilt is not None:
            return verdicts.not_rebuilt(built.result.not_rebuilt)  # never graded: skipped
        if stage == "grade":
            judge = verdicts.quantized_accuracy if check == "quantized_accuracy" \
                else verdicts.akida_accuracy
            return judge(self.grade(submission), self.settings.min_accuracy)
        verdict, printout = verdicts.hardware(
            self.hardware(submission), self._peek_graded(submission), submission.name,
            self.settings.quality_max)
        for line in printout:
            self.background.progress(submission.name, line)
        return verdict

    def fingerprint(self, submission: Submission) -> dict[str, Any]:
        """What the class report compares students by (similarity.py): from the bytes of the
        files and of what the sandbox handed over, never their code; the trained weights once
        the grade ran, else the build's. Computed once per state (every check asks); never
        fails a check: what cannot be read is left out."""
        built = self.background.finished(("build", str(submission.path)))
        route = built.result.route if isinstance(built, Stage) and built.result else None
        trained = route not in (None, "weights file") and \
            self._peek_graded(submission) is not None
        memo = (str(submission.path), f"{route}:{trained}")
        if memo not in self._fingerprints:
            try:
                model, weights, kind = self._fingerprinted_files(submission, route, trained)
            except (HarnessError, OSError):
                model, weights, kind = None, None, "none"
            weights_file = submission.weights_path
            self._fingerprints[memo] = similarity.fingerprint(
                _small(submission.path),
                _sha256(weights_file),
                _small(model), _small(weights), kind)
        return self._fingerprints[memo]

    def _fingerprinted_files(self, submission: Submission, route: str | None,
                             trained: bool) -> tuple[Path | None, Path | None, str]:
        if route is None:
            return None, None, "none"
        if trained:
            hit = self.cache.load("trained", self._keys(submission)["trained"])
            if hit is not None:
                return hit.file("model.json"), hit.file("weights.npz"), route
        files = self._build_files(submission)
        kind = route if route == "weights file" else "initial"
        return files / "model.json", files / "weights.npz", kind

    def judge(self, submission: Submission) -> None:
        """pytest is at this student: start its stages (if not yet) and the next few's (enough
        to keep every trusted process busy; the student being judged goes first)."""
        self.current = str(submission.path)
        self.prefetch(submission)
        following = self.following.get(str(submission.path))
        for _ in range(2 * len(self.trusted.processes)):
            if following is None:
                break
            self.prefetch(following)
            following = self.following.get(str(following.path))

    def _urgency(self, submission: Submission) -> Callable[[], int]:
        return lambda: 0 if str(submission.path) == self.current else 1

    def prefetch(self, submission: Submission) -> None:
        """Start this student's stages in the background (the next student's, typically)."""
        self._future("build", submission, self._build)
        if str(submission.path) in self.wanted_grades:
            self._future("grade", submission, self._grade)

    def build(self, submission: Submission) -> Stage[Built]:
        stage: Stage[Built] = self._wait(self._future("build", submission, self._build))
        if not stage.ok:  # it cannot be graded: stop a training child (it may hang too)
            self._unwanted.add(str(submission.path))
        return stage

    def grade(self, submission: Submission) -> Stage[Graded]:
        return self._wait(self._future("grade", submission, self._grade))

    def hardware(self, submission: Submission) -> Stage[Run]:
        """In pytest's thread: the board is opened once and used under its lock."""
        return self._hardware.run(str(submission.path), submission.name,
                                  lambda: self.grade(submission), self.data.split)

    def class_list(self) -> list[Submission]:
        """Every submission of the configured students directories, in this shard."""
        return find_class(self.settings.students, self.settings.shard)

    def bench(self) -> Bench:
        """The session's board (opened once, used under its lock); akida imported only here."""
        from pytest_akida_grade.board import Bench

        if self._bench is None:
            self._bench = Bench(self.settings.device)
        return self._bench

    def flush_progress(self) -> None:
        self.background.flush()

    # ------------------------------------------------------------------ stages, once each

    def _future(self, stage: str, submission: Submission,
                body: Callable[[Submission], Stage[T]]) -> concurrent.futures.Future[Stage[T]]:
        return self.background.once((stage, str(submission.path)), lambda: body(submission))

    def _wait(self, future: concurrent.futures.Future[Stage[T]]) -> Stage[T]:
        return self.background.wait(future)

    def _peek_graded(self, submission: Submission) -> Graded | None:
        """The grade when it already ran: never train just to annotate a figure."""
        stage = self.background.finished(("grade", str(submission.path)))
        return stage.result if isinstance(stage, Stage) and stage.ok else None

    # ------------------------------------------------------------------ the sandbox

    def _job(self, submission: Submission, train: bool) -> Job:
        s, weights = self.settings, submission.weights_path
        return Job(
            name=submission.name, module=submission.path,
            weights=weights if weights.is_file() else None,
            phases=("build", "train") if train else ("build",), seed=s.seed,
            train_data=self.data.fit_file(self.scratch / "data") if train else None,
            seconds=s.grade_timeout if train else s.timeout,
            timeout_source=GRADE_TIMEOUT if train else TIMEOUT,
            build_seconds=s.timeout, build_timeout_source=TIMEOUT, memory_bytes=s.memory_limit)

    def _handed_over(self, submission: Submission, phase: str, train: bool) -> Stage[Path]:
        return self.children.handed_over(str(submission.path), phase, train,
                                         lambda: self._job(submission, train))

    # ------------------------------------------------------------------ build

    def _build_key(self, submission: Submission) -> str:
        pretrained = submission.weights_path.is_file()
        return build_key(submission.fingerprint(), self.settings,
                         self.data.source().sha256 if pretrained else None)

    def _build(self, submission: Submission) -> Stage[Built]:
        key = self._build_key(submission)
        with self.cache.lock("build", key):
            hit = self.cache.load("build", key)
            if hit is not None:
                return hit.stage(built_from_json)
            return self._built(submission, key)

    def _built(self, submission: Submission, key: str) -> Stage[Built]:
        self.trusted.start()  # a miss: the trusted processes start beside the child
        exported = self._handed_over(submission, "build", self._will_train(submission))
        if exported.result is None:
            stage: Stage[Built] = Stage(failure=exported.failure,
                                        repeatable=exported.repeatable)
        else:
            stage = self._inspect(submission, exported.result)
        if stage.repeatable:
            files = {name: exported.result / name for name in ("model.json", "weights.npz")} \
                if stage.ok and exported.result else {}
            self.cache.store("build", key, {"result": to_json(stage.result) if stage.result
                                            else None, "failure": stage.failure}, files)
        return stage

    def _will_train(self, submission: Submission) -> bool:
        if str(submission.path) not in self.wanted_grades:
            return False
        try:
            return self.cache.load("trained", self._keys(submission)["trained"]) is None
        except HarnessError:  # no data set: the grade stage will say so, not the build
            return False

    def _inspect(self, submission: Submission, export: Path) -> Stage[Built]:
        declared = _declarations(export, submission.weights_path.is_file())
        if declared.result is None:
            return Stage(failure=declared.failure)
        job = jobs.Inspect(architecture=str(export / "model.json"),
                           weights=str(export / "weights.npz"), seed=self.settings.seed,
                           weight_bits=declared.result.weight_bits,
                           activation_bits=declared.result.activation_bits,
                           route=declared.result.route)
        if declared.result.route != "weights file":
            return self._inspected(submission, job)
        if str(submission.path) in self.wanted_grades:
            return self._inspect_and_grade(submission, job)
        return self._inspected(submission, self._calibrated(job))

    def _calibrated(self, job: jobs.Inspect) -> jobs.Inspect:
        """On the grade's first calibration images (a pre-trained model)."""
        return replace(job, calibration=jobs.Calibration(
            data=self._data(), samples=self.settings.calibration_samples))

    def _data(self) -> jobs.DataSpec:
        return jobs.DataSpec(**self.data.request())

    def _inspected(self, submission: Submission, job: jobs.Inspect) -> Stage[Built]:
        """The evaluator's inspection."""
        reply = self.trusted.call(job, submission.name, self.settings.timeout, TIMEOUT,
                                  self._urgency(submission))
        return reply.stage(built_from_json, submission.name)

    def _inspect_and_grade(self, submission: Submission, job: jobs.Inspect) -> Stage[Built]:
        """A pre-trained model wanted graded: one job, one conversion for both stages; the grade
        is stored (cache, or memory without one) for the grade stage to find."""
        s, keys = self.settings, self._keys(submission)
        with self.cache.lock("grade", keys["grade"]):
            if self.cache.load("grade", keys["grade"]) is not None:  # another worker's
                return self._inspected(submission, self._calibrated(job))
            out = self._staged("model.fbz")
            grade = self._grade_job(job.architecture, job.weights, out, job, "weights file")
            reply = self.trusted.call(jobs.InspectAndGrade(inspect=job, grade=grade),
                                      submission.name, s.timeout + s.grade_timeout,
                                      GRADE_TIMEOUT, self._urgency(submission))
            both = reply.stage(built_and_graded_from_json, submission.name)
            if both.result is None:
                return Stage(failure=both.failure, repeatable=both.repeatable)
            built, graded = both.result
            self._fused[str(submission.path)] = graded if graded.result is None else \
                self._stored_grade(keys["grade"], graded.result, out)
            return Stage(result=built)

    def _grade_job(self, architecture: str, weights: str, out: Path,
                   declared: Declarations | jobs.Inspect, training: str) -> jobs.Grade:
        s = self.settings
        return jobs.Grade(architecture=architecture, weights=weights, data=self._data(),
                          out=str(out), weight_bits=declared.weight_bits,
                          activation_bits=declared.activation_bits, attempts=s.quantize_attempts,
                          calibration_samples=s.calibration_samples, seed=s.seed,
                          training=training)

    def _build_files(self, submission: Submission) -> Path:
        """The build's model.json and weights.npz: from the cache, or from the child."""
        hit = self.cache.load("build", self._build_key(submission))
        if hit is not None and hit.file("model.json").is_file():
            return hit.directory
        exported = self._handed_over(submission, "build", False)
        if exported.result is None:
            raise HarnessError(f"the build of {submission.name} passed but its files are gone")
        return exported.result

    # ------------------------------------------------------------------ grade

    def _keys(self, submission: Submission) -> dict[str, str]:
        return grade_keys(submission.fingerprint(), self.settings, self.data.source().sha256)

    def _grade(self, submission: Submission) -> Stage[Graded]:
        """Starts with the child's hand-over, not after the evaluator's inspection of it: both
        run side by side; a submission that fails its build is not graded all the same."""
        declared = self._declared(submission)
        if declared.result is None:
            return _not_loaded(self.build(submission))
        if declared.result.route == "weights file":  # the build's job grades it too
            built = self.build(submission)
            fused = self._fused.get(str(submission.path))
            if not built.ok:
                return _not_loaded(built)
            if fused is not None:
                return fused
        keys = self._keys(submission)
        with self.cache.lock("grade", keys["grade"]):
            hit = self.cache.load("grade", keys["grade"])
            if hit is not None:
                stage = hit.stage(graded_from_json)
                stage = Stage(result=with_model(stage.result, str(hit.file("model.fbz")))) \
                    if stage.result else stage
            else:
                stage = self._graded(submission, declared.result, keys)
        built = self.build(submission)
        return stage if built.ok else _not_loaded(built)

    def _declared(self, submission: Submission) -> Stage[Declarations]:
        """The route and the bits: from the cached build, else from the child's hand-over."""
        key = self._build_key(submission)
        if not self.children.started(str(submission.path)) and self.cache.busy("build", key):
            with self.cache.lock("build", key):  # another worker builds it: wait for its entry
                pass
        hit = self.cache.load("build", key)
        if hit is not None:
            built = hit.stage(built_from_json).result
            return Stage(result=Declarations(built.route, built.weight_bits,
                                             built.activation_bits)) if built else \
                Stage(failure="the build failed")
        exported = self._handed_over(submission, "build", self._will_train(submission))
        if exported.result is None:
            return Stage(failure=exported.failure)
        return _declarations(exported.result, submission.weights_path.is_file())

    def _graded(self, submission: Submission, declared: Declarations,
                keys: dict[str, str]) -> Stage[Graded]:
        self.trusted.start()
        trained = self._trained(submission, declared.route, keys["trained"])
        if trained.result is None:
            return Stage(failure=trained.failure, repeatable=trained.repeatable)
        return self._evaluate(submission, declared, *trained.result, keys["grade"])

    def _trained(self, submission: Submission, route: str,
                 key: str) -> Stage[tuple[Path, Path, str]]:
        """(the architecture, the trained weights, the training route)."""
        hit = self.cache.load("trained", key)
        if hit is not None:
            return Stage(result=(hit.file("model.json"), hit.file("weights.npz"),
                                 f"{route} (cached)"))
        files = self._build_files(submission)
        if route == "train()":
            exported = self._handed_over(submission, "train", True)
            if exported.result is None:
                return Stage(failure=exported.failure, repeatable=exported.repeatable)
            weights = exported.result / "weights.npz"
        elif route == "default recipe":
            weights = self._staged("weights.npz")
            s = self.settings
            reply = self.trusted.call(jobs.Train(
                architecture=str(files / "model.json"), weights=str(files / "weights.npz"),
                data=self._data(), out=str(weights), epochs=s.epochs, batch_size=s.batch_size,
                seed=s.seed), submission.name, s.grade_timeout, GRADE_TIMEOUT,
                self._urgency(submission))
            failed = reply.stage(lambda result: result, submission.name)
            if not failed.ok:
                return Stage(failure=failed.failure, repeatable=failed.repeatable)
        else:
            weights = files / "weights.npz"
        entry = self.cache.store("trained", key, {"route": route},
                                 {"model.json": files / "model.json", "weights.npz": weights})
        if entry is None:  # no cache: the files where they are
            return Stage(result=(files / "model.json", weights, route))
        return Stage(result=(entry.file("model.json"), entry.file("weights.npz"), route))

    def _evaluate(self, submission: Submission, declared: Declarations, architecture: Path,
                  weights: Path, training: str, key: str) -> Stage[Graded]:
        out = self._staged("model.fbz")
        job = self._grade_job(str(architecture), str(weights), out, declared, training)
        reply = self.trusted.call(job, submission.name, self.settings.grade_timeout,
                                  GRADE_TIMEOUT, self._urgency(submission))
        stage = reply.stage(graded_from_json, submission.name)
        return stage if stage.result is None else self._stored_grade(key, stage.result, out)

    def _stored_grade(self, key: str, graded: Graded, model: Path) -> Stage[Graded]:
        """The grade, cached with its model (where the cache keeps it, when there is one)."""
        entry = self.cache.store("grade", key, to_json(graded), {"model.fbz": model})
        return Stage(result=with_model(graded, str(entry.file("model.fbz") if entry else model)))

    def _staged(self, name: str) -> Path:
        """A fresh path for a trusted process's output, out of every child's reach."""
        return Path(tempfile.mkdtemp(dir=self.children.staging())) / name


# ---------------------------------------------------------------------------- helpers


def _small(path: Path | None) -> bytes | None:
    """A file's bytes when it is small enough to fingerprint, else None."""
    try:
        if path is None or not path.is_file() or path.stat().st_size > FINGERPRINT_MAX_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _sha256(path: Path) -> str | None:
    try:
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None


def _not_loaded(built: Stage[Built]) -> Stage[Graded]:
    """Not graded because it did not build; the first line of why (loads has all of it)."""
    why = (built.failure or "").strip().split("\n", 1)[0]
    return Stage(failure="the submission did not load (see the loads check)"
                 + (f": {why}" if why else ""))


def _declarations(export: Path, pretrained: bool) -> Stage[Declarations]:
    """The route and the bits the sandbox handed over (meta.json), checked."""
    try:
        return Stage(result=declarations_from_json(
            json.loads((export / "meta.json").read_bytes()), pretrained))
    except (ValueError, ResultError) as error:
        return Stage(failure=f"the sandbox handed over unusable declarations ({error})")
