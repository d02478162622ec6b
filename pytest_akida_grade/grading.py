"""The orchestrator: one student's stages (stages.py), composed in one direction, each run at most
once, cached, and prefetched.

    build     hand-over (sandboxed child: student code) -> inspection (evaluator): rules, v1 fit
    grade     hand-over -> training -> evaluation: float / quantized / Akida accuracy, the .fbz
              (a pre-trained model wanted graded: inspection and evaluation in one job, fused)
    hardware  the grade's .fbz on the board (board.py), a recording, or nothing (hardware.py)

The plugin tells the grader its plan once (`plan`), then asks for verdicts; stages run in
background threads (the next students' while this one is judged) and their typed results go to
verdicts.py. What a stage needs is passed to it; the collaborators (children, trusted processes,
data set, hardware) are passed in here, so tests drive the orchestrator with fakes. No pytest here.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_akida_grade import catalog, data, similarity, verdicts
from pytest_akida_grade.background import Background, Progress
from pytest_akida_grade.cache import Cache, FilesOnly, build_key, grade_keys
from pytest_akida_grade.discovery import Shape, Submission, find_class
from pytest_akida_grade.evaluator.client import Pool, memory_per_process
from pytest_akida_grade.fileio import file_sha256
from pytest_akida_grade.hardware import Hardware
from pytest_akida_grade.quality import Run
from pytest_akida_grade.results import (
    Built,
    Graded,
    HarnessError,
    Route,
    Stage,
    Verdict,
    with_model,
)
from pytest_akida_grade.sandbox import launch
from pytest_akida_grade.stages import (
    Children,
    Data,
    Evaluation,
    Export,
    HandOver,
    Inspection,
    Trained,
    Training,
    Trusted,
    declared_by,
)
from pytest_akida_grade.verdicts import Evidence

if TYPE_CHECKING:
    from pytest_akida_grade.board import Bench
    from pytest_akida_grade.sandbox.policy import Policy
    from pytest_akida_grade.settings import Settings

log = logging.getLogger("pytest_akida_grade")
T = TypeVar("T")
FINGERPRINT_MAX_BYTES = 64 << 20  # larger exports are compared by their hashes alone


@dataclass(frozen=True)
class Build:
    """The build stage's end, and the grade when the same job computed it (the fused path)."""

    built: Stage[Built]
    fused: Stage[Graded] | None = None


class Cancelled:
    """Which children work for nobody: the session is over, or their build already failed."""

    def __init__(self) -> None:
        self._over = threading.Event()
        self._keys: set[str] = set()

    def __call__(self, key: str) -> bool:
        return self._over.is_set() or key in self._keys

    def add(self, key: str) -> None:
        self._keys.add(key)

    def all(self) -> None:
        self._over.set()


class Entries:
    """A student's cache entries (cache.py): the build, its trained weights and the grade, keyed
    by the student's files, the settings and the data set. Only the orchestrator reads them."""

    def __init__(self, cache: Cache, settings: Settings, data: Data) -> None:
        self.cache, self.settings, self.data = cache, settings, data

    def build_key(self, submission: Submission) -> str:
        """A build that may hand over trained weights (a weights file, or a submission whose
        own code trains) depends on the data set too."""
        pretrained = submission.weights_path.is_file() or submission.shape.trains_itself
        return build_key(submission.content_hashes(), self.settings,
                         self.data.source().sha256 if pretrained else None)

    def key(self, kind: str, submission: Submission) -> str:
        """The "trained" or the "grade" entry's key."""
        return grade_keys(submission.content_hashes(), self.settings,
                          self.data.source().sha256)[kind]

    def load_build(self, key: str) -> Stage[Built] | None:
        hit = self.cache.load("build", key, Built)
        return None if hit is None else hit.stage

    def load_export(self, submission: Submission, building_here: bool) -> Stage[Export] | None:
        """The build's files and declarations from its entry (another worker's: waited for)."""
        key = self.build_key(submission)
        if not building_here and self.cache.busy("build", key):
            with self.cache.lock("build", key):
                pass
        hit = self.cache.load("build", key, Built)
        if hit is None:
            return None
        built = hit.stage.result
        if built is None:
            return Stage(failure="the build failed")
        if not hit.file("model.json").is_file():  # an entry without the files: ask the child
            return None
        return Stage(result=Export(hit.directory, declared_by(built)))

    def store_build(self, key: str, built: Stage[Built], export: Export | None) -> None:
        """A repeatable end only (not a timeout or a crash); the files of a build that passed."""
        if not built.repeatable:
            return
        files = {name: export.files / name for name in ("model.json", "weights.npz",
                                                         "source.py")
                 if (export.files / name).is_file()} if built.ok and export else {}
        self.cache.store("build", key, built, files)

    def has_trained(self, submission: Submission) -> bool:
        return self.cache.load("trained", self.key("trained", submission), FilesOnly) is not None

    def load_trained(self, submission: Submission, route: Route) -> Trained | None:
        hit = self.cache.load("trained", self.key("trained", submission), FilesOnly)
        return None if hit is None else Trained(
            hit.file("model.json"), hit.file("weights.npz"), route, cached=True)

    def store_trained(self, submission: Submission, trained: Trained) -> Trained:
        entry = self.cache.store("trained", self.key("trained", submission),
                                 Stage(result=FilesOnly()), {
                                     "model.json": trained.architecture,
                                     "weights.npz": trained.weights})
        return trained if entry is None else replace(  # no cache: the files where they are
            trained, architecture=entry.file("model.json"), weights=entry.file("weights.npz"))

    def load_grade(self, key: str) -> Stage[Graded] | None:
        hit = self.cache.load("grade", key, Graded)
        return None if hit is None else _with_model(hit.stage, hit.file("model.fbz"))

    def store_grade(self, key: str, graded: Stage[Graded]) -> Stage[Graded]:
        """The grade, cached with its model (where the cache keeps it, when there is one)."""
        if graded.result is None:
            return graded
        model = Path(graded.result.model_path)
        entry = self.cache.store("grade", key, graded, {"model.fbz": model})
        return _with_model(graded, entry.file("model.fbz") if entry else model)


class Fingerprints:
    """What the class report compares students by (similarity.py): from the bytes of their files
    and of what the sandbox handed over, never their code. Once per state (every check asks);
    never fails a check: what cannot be read is left out."""

    def __init__(self, entries: Entries, exported: Callable[[Submission], Stage[Export]]) -> None:
        self.entries, self.exported = entries, exported
        self._memo: dict[tuple[str, str], dict[str, Any]] = {}

    def of(self, submission: Submission, route: Route | None, trained: bool) -> dict[str, Any]:
        memo = (str(submission.path), f"{route}:{trained}")
        if memo not in self._memo:
            try:
                files = self._files(submission, route, trained) if route else None
                source = self._source(submission) if route else None
            except (HarnessError, OSError):
                files, source = None, None
            model, weights, label = files or (None, None, "none")
            self._memo[memo] = similarity.fingerprint(
                _small(source), _sha256(submission.weights_path), _small(model),
                _small(weights), label)
        return self._memo[memo]

    def _source(self, submission: Submission) -> Path | None:
        """A module's own file; a notebook's code as its sandbox read it (the trusted side
        never parses a notebook)."""
        if submission.shape is not Shape.NOTEBOOK:
            return submission.path
        export = self.exported(submission)
        return None if export.result is None else export.result.files / "source.py"

    def _files(self, submission: Submission, route: Route,
               trained: bool) -> tuple[Path, Path, str] | None:
        """The architecture and weights to compare, and what made the weights: the route, or
        "initial" (the build's own weights, before any training)."""
        cached = self.entries.load_trained(submission, route) if trained else None
        if cached is not None:
            return cached.architecture, cached.weights, route.value
        export = self.exported(submission)
        if export.result is None:
            return None
        files = export.result.files
        label = route.value if route.pretrained else similarity.INITIAL
        return files / "model.json", files / "weights.npz", label


class Grader:
    """Session-wide (one per pytest process): the data set once, each student's stages once."""

    def __init__(self, settings: Settings, cache: Cache, scratch: Path, *, children: Children,
                 trusted: Trusted, data: Data, hardware: Hardware, background: Background,
                 cancelled: Cancelled, workers: int = 1) -> None:
        self.settings, self.cache, self.scratch, self.workers = settings, cache, scratch, workers
        self.children, self.trusted, self.data = children, trusted, data
        self.background, self.cancelled, self._hardware = background, cancelled, hardware
        self.entries = Entries(cache, settings, data)
        self.hand_over = HandOver(settings, children, data, scratch)
        self.inspection = Inspection(settings, trusted, data, children)
        self.training = Training(settings, self.hand_over, trusted, data)
        self.evaluation = Evaluation(settings, trusted, data, children)
        self._wanted: frozenset[str] = frozenset()  # students with an accuracy check selected
        self._following: dict[str, Submission] = {}  # the student after each, in run order
        self._current = ""  # the student pytest is judging now: its jobs go first
        self.fingerprints = Fingerprints(self.entries, self._cached_or_child_export)

    def close(self) -> None:
        self.cancelled.all()  # a child still working for nobody is stopped, not waited for
        self.background.close()
        self.children.close()
        self.trusted.close()

    # ------------------------------------------------------------------ the plugin's API

    def plan(self, checks: Iterable[tuple[Submission, str]]) -> None:
        """The checks this session will ask for, in run order: whose grades are wanted (their
        training starts with their build) and, alone in the session, who follows whom (under
        several workers the next student may be another worker's: xdist decides late)."""
        checks = list(checks)
        self._wanted = frozenset(str(s.path) for s, check in checks if check in catalog.ACCURACY)
        order = list(dict.fromkeys(s for s, _ in checks))
        self._following = {str(a.path): b for a, b in itertools.pairwise(order)} \
            if self.workers == 1 else {}

    def verdict(self, submission: Submission, name: str) -> Verdict:
        """The check's verdict: its catalog entry judges the evidence its stage made (the
        message as the tools wrote it: it is scrubbed where it leaves for a student, session.py);
        HarnessError when the grader itself cannot give one."""
        check = catalog.BY_NAME[name]
        assert check.verdict is not None, f"{name} is a course check"
        evidence = Evidence(name, self.wait_build(submission), student=submission.name,
                            min_accuracy=self.settings.min_accuracy,
                            quality_max=self.settings.quality_max)
        built = evidence.built.result
        if check.stage != "build" and built is not None and built.not_rebuilt is not None:
            return verdicts.not_rebuilt(built.not_rebuilt)  # never graded: skipped
        if check.stage == "grade":
            evidence = replace(evidence, graded=self.wait_grade(submission))
        elif check.stage == "hardware":
            evidence = replace(evidence, run=self.run_hardware(submission),
                               graded=self._finished_grade(submission))
        verdict = check.verdict(evidence)
        for line in verdict.printout:
            self.background.progress(submission.name, line)
        return verdict

    def focus(self, submission: Submission) -> None:
        """pytest is at this student: start its stages (if not yet) and the next few's (enough
        to keep every trusted process busy; the student being judged goes first)."""
        self._current = str(submission.path)
        following: Submission | None = submission
        for _ in range(1 + 2 * self.trusted.size):
            if following is None:
                break
            self.prefetch(following)
            following = self._following.get(str(following.path))

    def prefetch(self, submission: Submission) -> None:
        """Start this student's stages in the background (the next student's, typically)."""
        self._start("build", submission, self._compute_build)
        if str(submission.path) in self._wanted:
            self._start("grade", submission, self._compute_grade)

    def wait_build(self, submission: Submission) -> Stage[Built]:
        return self._wait_build(submission).built

    def wait_grade(self, submission: Submission) -> Stage[Graded]:
        return self.background.wait(self._start("grade", submission, self._compute_grade))

    def run_hardware(self, submission: Submission) -> Stage[Run]:
        """In pytest's thread: the board is opened once and used under its lock."""
        return self._hardware.run(str(submission.path), submission.name,
                                  lambda: self.wait_grade(submission), self.data.split)

    def class_list(self) -> list[Submission]:
        """Every submission of the configured students directories, in this shard."""
        return find_class(self.settings.students, self.settings.shard)

    def bench(self) -> Bench:
        """The session's board (opened once, used under its lock); akida imported only then."""
        return self._hardware.bench()

    def similarity_fingerprint(self, submission: Submission) -> dict[str, Any]:
        """The trained weights' once the grade ran (never trained for it), else the build's."""
        build = self.background.finished(("build", str(submission.path)))
        built = build.built.result if isinstance(build, Build) else None
        route = None if built is None else built.route
        return self.fingerprints.of(submission, route, route is not None
                                    and not route.pretrained
                                    and self._finished_grade(submission) is not None)

    # ------------------------------------------------------------------ composition

    def _start(self, stage: str, submission: Submission,
              body: Callable[[Submission], T]) -> concurrent.futures.Future[T]:
        return self.background.once((stage, str(submission.path)), lambda: body(submission))

    def _urgency(self, submission: Submission) -> Callable[[], int]:
        return lambda: 0 if str(submission.path) == self._current else 1

    def _finished_grade(self, submission: Submission) -> Stage[Graded] | None:
        """The grade when it already ran: never train just to annotate a figure."""
        stage = self.background.finished(("grade", str(submission.path)))
        return stage if isinstance(stage, Stage) and stage.ok and \
            isinstance(stage.result, Graded) else None

    def _wait_build(self, submission: Submission) -> Build:
        build = self.background.wait(self._start("build", submission, self._compute_build))
        if not build.built.ok:  # it cannot be graded: stop a training child (it may hang too)
            self.cancelled.add(str(submission.path))
        return build

    def _child_export(self, submission: Submission) -> Stage[Export]:
        """The child's hand-over. It trains right after its build (one start, one import) when
        the grade is wanted and no trained weights are cached."""
        train = str(submission.path) in self._wanted
        try:
            train = train and not self.entries.has_trained(submission)
        except HarnessError:  # no data set: the grade stage will say so, not the build
            train = False
        return self.hand_over.export(submission, train)

    def _cached_or_child_export(self, submission: Submission) -> Stage[Export]:
        """The build's files and declarations: from its cache entry, else from the child."""
        cached = self.entries.load_export(submission, self.children.started(str(submission.path)))
        return cached or self.background.wait(self._start("export", submission, self._child_export))

    def _compute_build(self, submission: Submission) -> Build:
        key = self.entries.build_key(submission)
        with self.cache.lock("build", key):
            cached = self.entries.load_build(key)
            if cached is not None:
                return Build(cached)
            self.trusted.start()  # a miss: the trusted processes start beside the child
            export = self.background.wait(self._start("export", submission, self._child_export))
            build = Build(Stage(failure=export.failure, repeatable=export.repeatable)) \
                if export.result is None else self._inspect(submission, export.result)
            self.entries.store_build(key, build.built, export.result)
            return build

    def _inspect(self, submission: Submission, export: Export) -> Build:
        urgency = self._urgency(submission)
        if not export.declarations.route.pretrained or \
                str(submission.path) not in self._wanted:
            return Build(self.inspection.inspect(submission, export, urgency))
        key = self.entries.key("grade", submission)
        with self.cache.lock("grade", key):  # one conversion for the build and the grade
            if self.entries.load_grade(key) is not None:  # another worker's
                return Build(self.inspection.inspect(submission, export, urgency))
            built, graded = self.inspection.inspect_and_grade(submission, export, urgency)
            return Build(built, self.entries.store_grade(key, graded))

    def _compute_grade(self, submission: Submission) -> Stage[Graded]:
        """Starts with the child's hand-over, not after the evaluator's inspection of it: both
        run side by side; a submission that fails its build is not graded all the same."""
        export = self._cached_or_child_export(submission)
        if export.result is None:
            return _not_loaded(self.wait_build(submission))
        if export.result.declarations.route.pretrained:  # its build's job grades it
            build = self._wait_build(submission)
            if not build.built.ok:
                return _not_loaded(build.built)
            if build.fused is not None:
                return build.fused
        key = self.entries.key("grade", submission)
        with self.cache.lock("grade", key):
            stage = self.entries.load_grade(key) or \
                self._train_and_evaluate(submission, export.result, key)
        built = self.wait_build(submission)
        return stage if built.ok else _not_loaded(built)

    def _train_and_evaluate(self, submission: Submission, export: Export,
                            key: str) -> Stage[Graded]:
        self.trusted.start()
        route = export.declarations.route
        trained = self.entries.load_trained(submission, route)
        if trained is None:
            weights = self.training.train(submission, export, self._urgency(submission))
            if weights.result is None:
                return Stage(failure=weights.failure, repeatable=weights.repeatable)
            trained = self.entries.store_trained(submission, Trained(
                export.files / "model.json", weights.result, route))
        return self.entries.store_grade(key, self.evaluation.evaluate(
            submission, trained, export.declarations, self._urgency(submission)))


# ---------------------------------------------------------------------------- helpers


def create(settings: Settings, cache: Cache, scratch: Path, policy: Policy, *, workers: int = 1,
           progress: Progress = lambda student, message: None) -> Grader:
    """With the real collaborators: sandboxed children, warm trusted processes (this worker's
    share of the cores, memory bounded: a model can be huge), MNIST, the board. `workers`: the
    pytest processes sharing this machine (xdist's)."""
    background, cancelled = Background(progress), Cancelled()
    share = max(1, len(os.sched_getaffinity(0)) // workers)
    return Grader(
        settings, cache, scratch, workers=workers, background=background,
        cancelled=cancelled,
        children=launch.Children(policy, scratch, background.report, cancelled),
        trusted=Pool(share, scratch, memory_per_process(share * workers,
                                                        2 * settings.memory_limit),
                     background.report),
        data=data.Dataset(settings.mnist, cache.root or scratch / "mnist",
                          seed=settings.seed, validation_split=settings.validation_split,
                          train_limit=settings.train_limit, test_limit=settings.test_limit),
        hardware=Hardware(settings, _board_opener(settings)))


def _board_opener(settings: Settings) -> Callable[[], Bench]:
    """The session's board, opened on first use; akida imported only then."""
    opened: list[Bench] = []
    lock = threading.Lock()

    def bench() -> Bench:
        from pytest_akida_grade.board import Bench

        with lock:
            if not opened:
                opened.append(Bench(settings.device))
            return opened[0]

    return bench


def _with_model(stage: Stage[Graded], model: Path) -> Stage[Graded]:
    return Stage(result=with_model(stage.result, str(model))) if stage.result else stage


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
