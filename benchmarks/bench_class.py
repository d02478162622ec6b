"""A class at the speed of its compute: the harness on N students against one bare workflow.

Run: `.venv/bin/python benchmarks/bench_class.py [--students 8] [--rss-students 50]`. Not a test.
In one run, on this machine:

1. Prepare once: train student_models/three_convs.py for --epochs epoch(s) on all of MNIST and
   save the weights; N distinct pre-trained submissions are copies of it (each a different
   source, so nothing is shared through the cache).
2. Bare: the assignment's calls for one student, no harness (bench_grading.BARE).
3. The class, all seven software checks, empty cache: `-n 0` and `-n auto`; the wall time per
   student as a ratio of the bare run (target <= 0.5x, aim 0.3x); peak RSS per process (from the
   grader's trace: sandbox children, the warm evaluator, the trainer).
4. Fast checks only (`loads`, `layer_whitelist`, `relu_bounded`, `quantization_scheme`,
   `v1_constraints`), `-n auto`: per student after start-up = (T(N) - T(1)) / (N - 1) (<= 2 s).
5. One pre-trained student, all software checks (<= 1.3x bare), and its unchanged re-grade
   (<= 0.35x the first).
6. The warm evaluator over --rss-students grade jobs of distinct weights: RSS after the last
   <= 1.2x after the first.
7. --train-students students who train (default recipe, 1 epoch), `-n auto`: the class time and
   how busy both cores were (CPU time / wall time / cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bench_grading as bench
import numpy as np

NAME = "student"
FAST = "loads or layer_whitelist or relu_bounded or quantization_scheme or v1_constraints"


@dataclass
class ClassRun:
    seconds: float
    cpu_seconds: float
    trace: list[dict[str, object]]
    outcomes: dict[str, dict[str, str]]


def make_class(directory: Path, count: int, weights: Path | None, source: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for index in range(count):
        name = f"{NAME}{index:03d}"
        (directory / f"{name}.py").write_text(source.read_text() + f"\n# copy {index}\n")
        if weights is not None:
            shutil.copyfile(weights, directory / f"{name}.weights.h5")


def grade_class(work: Path, students: Path, label: str, npz: Path, *extra: str) -> ClassRun:
    """pytest on the class with an empty cache; wall and CPU time, the trace, the outcomes."""
    cache, trace, grades = work / f"cache-{label}", work / f"trace-{label}.jsonl", \
        work / f"grades-{label}.json"
    shutil.rmtree(cache, ignore_errors=True)
    trace.unlink(missing_ok=True)
    os.environ["AKIDA_GRADE_TRACE"] = str(trace)
    before = os.times()
    run = bench.run([sys.executable, "-m", "pytest", "--akida-students", str(students),
                     "-o", f"akida_cache_dir={cache}", f"--akida-mnist={npz}",
                     f"--akida-json={grades}", "-p", "no:randomly", "-p", "no:cacheprovider",
                     "-q", *extra], work, work / label)
    after = os.times()
    del os.environ["AKIDA_GRADE_TRACE"]
    cpu = (after.children_user - before.children_user) + (after.children_system
                                                          - before.children_system)
    records = json.loads(grades.read_text())["students"]
    outcomes = {r["student"]: {c: v["outcome"] for c, v in r["checks"].items()} for r in records}
    lines = trace.read_text().splitlines() if trace.exists() else []
    return ClassRun(run.seconds, cpu, [json.loads(line) for line in lines], outcomes)


def peaks(trace: list[dict[str, object]]) -> str:
    found: dict[str, float] = {}
    for record in trace:
        value = record.get("rss_mb") or record.get("peak_rss_mb")
        if isinstance(value, int | float):
            role = str(record["role"])
            found[role] = max(found.get(role, 0.0), float(value))
    return ", ".join(f"{role} {mb:.0f} MB" for role, mb in sorted(found.items()))


def evaluator_growth(work: Path, npz: Path, weights: Path, count: int) -> tuple[float, float]:
    """RSS of one warm evaluator after its first and its last of `count` grade jobs."""
    from pytest_akida_grade import data
    from pytest_akida_grade.evaluator import jobs
    from pytest_akida_grade.evaluator.client import Evaluator
    from pytest_akida_grade.sandbox import launch, policy
    from pytest_akida_grade.sandbox.watch import ChildJob

    scratch = Path(tempfile.mkdtemp(prefix="akida-bench-"))
    os.chmod(scratch, 0o711)
    staging = work / "growth"
    staging.mkdir(exist_ok=True)
    module = work / "growth.py"
    module.write_text(bench.STUDENT.read_text())
    job = ChildJob(name="growth", module=module, weights=weights, phases=("build",), seed=0,
              train_data=None, seconds=300, timeout_source="bench", build_seconds=300,
              build_timeout_source="bench", memory_bytes=6 << 30)
    launch.run(policy.choose("auto"), job, scratch, staging, lambda m: None, lambda p, d: None)
    export = staging / "build"
    source = data.resolve_mnist(npz, work / "mnist")
    spec = jobs.DataSpec(path=str(source.path), sha256=source.sha256, seed=0,
                         validation_split=0.1, train_limit=0, test_limit=0)
    trace = work / "trace-growth.jsonl"
    os.environ["AKIDA_GRADE_TRACE"] = str(trace)
    evaluator = Evaluator("evaluator", scratch, 12 << 30, 1, lambda s, m: None)
    with np.load(export / "weights.npz") as loaded:
        arrays = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
    try:
        for index in range(count):  # distinct weights each time: nothing to reuse
            noise = np.random.default_rng(index)
            variant = staging / f"weights-{index}.npz"
            np.savez(variant, *[a + noise.normal(0, 1e-3, a.shape).astype(a.dtype)
                                for a in arrays])
            evaluator.call(jobs.Grade(
                architecture=str(export / "model.json"), weights=str(variant), data=spec,
                out=str(staging / "model.fbz"), weight_bits=4, activation_bits=4, attempts=1,
                calibration_samples=1024, seed=0, route="bench"), f"job{index}", 600, "bench")
            variant.unlink()
    finally:
        evaluator.close()
        del os.environ["AKIDA_GRADE_TRACE"]
        shutil.rmtree(scratch, ignore_errors=True)
    rss = [float(json.loads(line)["rss_mb"]) for line in trace.read_text().splitlines()]
    return rss[0], rss[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--train-students", type=int, default=4)
    parser.add_argument("--rss-students", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=1, help="pre-training epochs (default 1)")
    parser.add_argument("--keep", type=Path, help="work here and keep it")
    args = parser.parse_args()
    with bench.work_dir(args.keep, "akida-bench-class-") as work:
        return bench_class(work, args)


def bench_class(work: Path, args: argparse.Namespace) -> int:
    python, n = sys.executable, args.students
    npz = bench.resolve_mnist(work)
    weights = work / "pretrained.weights.h5"
    print(f"(1) pre-training {bench.STUDENT.name}, {args.epochs} epoch(s)", flush=True)
    bench.run([python, "-c", bench.TRAIN, str(bench.STUDENT), str(npz), str(weights),
               str(args.epochs)], work, work / "train")
    print("(2) bare workflow", flush=True)
    bare = bench.run([python, "-c", bench.BARE, str(bench.STUDENT), str(weights), str(npz),
                      str(bench.CALIBRATION_SAMPLES)], work, work / "bare").seconds
    students, software = work / "students", ("-k", "not hardware_quality")
    make_class(students, n, weights, bench.STUDENT)
    rows = []
    for workers in ("0", "auto"):
        print(f"(3) class of {n} pre-trained students, -n {workers}", flush=True)
        run = grade_class(work, students, f"class-n{workers}", npz, "-n", workers, *software)
        rows.append((f"class of {n}, all software checks, -n {workers}", run.seconds / n,
                     bare, 0.5, peaks(run.trace)))
    print(f"(4) fast checks only, -n auto: {n} students and 1", flush=True)
    fast_n = grade_class(work, students, "fast-n", npz, "-n", "auto", "-k", FAST).seconds
    single = work / "single"
    make_class(single, 1, weights, bench.STUDENT)
    fast_1 = grade_class(work, single, "fast-1", npz, "-n", "auto", "-k", FAST).seconds
    fast_per_student = (fast_n - fast_1) / max(1, n - 1)
    print("(5) one pre-trained student, all software checks, then its re-grade", flush=True)
    first = grade_class(work, single, "single", npz, *software)
    again_started = time.monotonic()
    bench.run([python, "-m", "pytest", "--akida-students", str(single), "-o",
               f"akida_cache_dir={work / 'cache-single'}", f"--akida-mnist={npz}", "-q",
               "-p", "no:cacheprovider", *software], work, work / "again")
    again = time.monotonic() - again_started
    growth = None
    if args.rss_students:
        print(f"(6) one warm evaluator, {args.rss_students} grade jobs", flush=True)
        growth = evaluator_growth(work, npz, weights, args.rss_students)
    print(f"(7) {args.train_students} students who train (default recipe, 1 epoch)", flush=True)
    trainers = work / "trainers"
    make_class(trainers, args.train_students, None, bench.STUDENT)
    training = grade_class(work, trainers, "train", npz, "-n", "auto", "-o", "akida_epochs=1",
                           *software)
    cores = len(os.sched_getaffinity(0))

    print(f"\nmachine: {cores} cores; bare workflow (one student): {bare:.1f} s")
    for label, per_student, reference, target, rss in rows:
        ratio = per_student / reference
        print(f"{label:48s} {per_student:6.1f} s/student = {ratio:.2f}x bare "
              f"(target <= {target}x) {'OK' if ratio <= target else 'OVER'}; peak RSS: {rss}")
    print(f"{'fast checks only, -n auto, after start-up':48s} {fast_per_student:6.1f} s/student "
          f"(target <= 2 s) {'OK' if fast_per_student <= 2 else 'OVER'}; start-up and 1 "
          f"student {fast_1:.1f} s")
    print(f"{'one pre-trained student, all software checks':48s} {first.seconds:6.1f} s = "
          f"{first.seconds / bare:.2f}x bare (target <= 1.3x)")
    print(f"{'its unchanged re-grade':48s} {again:6.1f} s = {again / first.seconds:.2f}x the "
          f"first (target <= 0.35x)")
    if growth is not None:
        print(f"{'warm evaluator RSS, first and last job':48s} {growth[0]:.0f} MB -> "
              f"{growth[1]:.0f} MB = {growth[1] / growth[0]:.2f}x (target <= 1.2x)")
    print(f"{f'{args.train_students} students who train, -n auto':48s} {training.seconds:6.1f} s;"
          f" cores busy {training.cpu_seconds / training.seconds / cores:.0%} "
          f"(CPU {training.cpu_seconds:.0f} s); peak RSS: {peaks(training.trace)}")
    print(f"outcomes of the single student: {first.outcomes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
