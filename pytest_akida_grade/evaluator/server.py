"""The warm trusted process: `python -m pytest_akida_grade.evaluator.server --memory BYTES`.

It imports TensorFlow, quantizeml, cnn2snn and akida once and then serves one job after another
(client.py sends them): inspect, train, grade, and inspect+grade (a pre-trained model: one
conversion serves both). It never imports student code, so it can stay
warm across students. Between jobs it drops every model and what TensorFlow keeps of them (a
custom-gradient registry entry per quantized model would otherwise grow it by ~60 MB a student).

Protocol: one JSON object per line on stdin; on the original stdout, `{"id", "progress"}` lines
then one reply `{"id", "ok": result}` or `{"id", "failure": message}` (the submission's fault)
or `{"id", "error": message, "traceback": ...}` (ours), with `rss_mb` and `seconds`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

from pytest_akida_grade.background import OnProgress
from pytest_akida_grade.data import Split, split
from pytest_akida_grade.evaluator import jobs, pipeline
from pytest_akida_grade.evaluator.rebuild import SubmissionError
from pytest_akida_grade.results import Built, BuiltAndGraded


class Server:
    def __init__(self, protocol: IO[str], memory: int = 0) -> None:
        self.protocol, self.memory = protocol, memory

    def send(self, **message: Any) -> None:
        self.protocol.write(json.dumps(message) + "\n")
        self.protocol.flush()

    def serve(self, requests: IO[str]) -> None:
        for line in requests:
            request = json.loads(line)
            started = time.monotonic()
            reply = self.handle(request)
            housekeeping()
            self.send(id=request["id"], **reply, rss_mb=rss_mb(),
                      seconds=round(time.monotonic() - started, 3))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        truncate_log()
        try:
            return {"ok": run(jobs.from_json(request), self.progress(request["id"]))}
        except SubmissionError as error:
            return {"failure": str(error)}
        except Exception as error:
            if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError":
                return {"failure": out_of_memory(self.memory)}
            # our own failure: say so, with the traceback
            return {"error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-4000:]}

    def progress(self, job: int) -> OnProgress:
        return lambda message: self.send(id=job, progress=message)


def out_of_memory(limit: int) -> str:
    """The student's failure when their model needs more than a trusted process may take."""
    return (f"evaluating the model needed more memory than the grader allows one evaluation "
            f"({limit / (1 << 30):.1f} GB of address space); use a smaller model")


def run(job: jobs.Job, progress: OnProgress) -> dict[str, Any]:
    """One job, typed (jobs.py): its result as JSON."""
    if isinstance(job, jobs.Inspect):
        return inspect(job).to_json()
    if isinstance(job, jobs.Train):
        pipeline.train(Path(job.architecture), Path(job.weights), dataset(job.data),
                       Path(job.out), epochs=job.epochs, batch_size=job.batch_size,
                       seed=job.seed, progress=progress)
        return {}
    grade = job if isinstance(job, jobs.Grade) else job.grade
    seed(grade.seed)
    if isinstance(job, jobs.Grade):
        return pipeline.grade(job, dataset(job.data), progress).to_json()
    built, graded = pipeline.inspect_and_grade(job, dataset(grade.data), progress)
    return BuiltAndGraded(built=built, graded=None if isinstance(graded, str) else graded,
                          grade_failure=graded if isinstance(graded, str) else None).to_json()


def inspect(job: jobs.Inspect) -> Built:
    seed(job.seed)
    samples = None
    if job.calibration is not None:  # a pre-trained model: the grade's first calibration
        samples = pipeline.first_calibration(dataset(job.calibration.data),
                                             job.calibration.samples, job.seed)
    return pipeline.inspect(Path(job.architecture), Path(job.weights), job.weight_bits,
                            job.activation_bits, job.route, job.seed, samples)


@functools.lru_cache(maxsize=2)
def dataset(spec: jobs.DataSpec) -> Split:
    """MNIST split as the grader configured it; kept between students (sha256 in the key)."""
    return split(Path(spec.path), seed=spec.seed, validation_split=spec.validation_split,
                 train_limit=spec.train_limit, test_limit=spec.test_limit)


def seed(value: int) -> None:
    import tf_keras as keras

    keras.utils.set_random_seed(value)


def housekeeping() -> None:
    """Forget every model of the last job so the process does not grow from one to the next."""
    import tf_keras as keras
    from tensorflow.python.framework import ops

    keras.backend.clear_session()
    registry = ops._gradient_registry._registry  # quantizeml's tf.custom_gradient, one a model
    for name in [name for name in registry if name.startswith("CustomGradient-")]:
        del registry[name]
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: the memory is reused, only not returned
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def truncate_log() -> None:
    """stderr is a log file the client reads after a crash: keep only the current job's."""
    try:
        if os.path.isfile(f"/proc/self/fd/{sys.stderr.fileno()}"):
            os.ftruncate(sys.stderr.fileno(), 0)
    except OSError:
        pass


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pytest_akida_grade.evaluator.server")
    parser.add_argument("--memory", type=int, required=True, help="address-space limit, bytes")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads per pool")
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (args.memory, args.memory))
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # Keras and quantizeml print progress bars: keep them off the protocol
    sys.stdout = sys.stderr
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import akida  # noqa: F401  (imported once, here, not during the first student's job)
    import cnn2snn  # noqa: F401
    import quantizeml.models  # noqa: F401

    server = Server(protocol, args.memory)
    server.send(id=0, ok={"ready": True, "pid": os.getpid()}, rss_mb=rss_mb(), seconds=0.0)
    server.serve(sys.stdin)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))
