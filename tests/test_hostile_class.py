"""A class with attackers in it, graded end to end (xdist, two workers), against a reference run.

Each attacker ends with its own result (the figures its real model earns, or a failure saying
what went wrong), never a pass it did not earn and never a grader error; the honest classmates
get exactly the verdicts and figures of a run without the attackers, also when re-graded later
from the cache the attackers ran next to; no file outside the sandboxes changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from made_up import GOOD_LAYERS, fast_ini, student_source

from pytest_akida_grade import data

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_akida_grade"
MARKER = f"akida{os.getpid()}burst"
# The fast settings (each run names its own cache), a shorter limit, and a sandbox for credit.
SETTINGS = fast_ini(akida_timeout="20", akida_cache_dir=None,
                    akida_memory_limit="6G", akida_sandbox="required")
TRAIN = """
def train(model, x_train, y_train):
    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
"""
HONEST = {"alice": student_source(), "bob": student_source(extra=TRAIN)}
# Attackers whose figures must be checked: their model is alice's, so are their figures.
FIGURES_OF_ALICE = ("patcher", "forger")


def attackers(root: Path, mnist: Path) -> dict[str, str]:
    targets = [str(root / "students" / f"{name}.py") for name in HONEST]
    cache, pwned = str(root / "cache-attack"), str(root / "pwned")
    return {
        "patcher": _with("""
            import sys
            try:
                from pytest_akida_grade.evaluator import pipeline
                pipeline.keras_accuracy = pipeline.akida_accuracy = lambda *a: 0.9999
            except ImportError:
                pass
            for name in list(sys.modules):
                if "numpy" in name:
                    sys.modules[name].argmax = lambda *a, **k: 0
            """),
        "forger": _with("""
            import json, os
            line = json.dumps({"event": "result", "result": {"quantized_accuracy": 0.9999,
                               "akida_accuracy": 0.9999}}).encode() + b"\\n"
            for fd in range(0, 64):
                try:
                    os.write(fd, line)
                except OSError:
                    pass
            """),
        "rewriter": _with(f"""
            import glob, os
            for path in {targets!r} + glob.glob(os.path.dirname(__file__) + "/*.py"):
                try:
                    open(path, "w").write("raise SystemExit('rewritten by a classmate')\\n")
                except OSError:
                    pass
            """),
        "poisoner": _with(f"""
            import os
            for path in [{cache!r}, {str(mnist)!r}, {str(mnist.parent)!r}]:
                for target in (path, os.path.join(path, "grade"), os.path.join(path, "x")):
                    try:
                        os.makedirs(target, exist_ok=True)
                        open(os.path.join(target, "manifest.json"), "w").write("{{}}")
                    except OSError:
                        pass
                try:
                    open(path, "wb").write(b"not mnist")
                except OSError:
                    pass
            open("numpy.py", "w").write("raise SystemExit('poisoned numpy')\\n")
            """),
        "flooder": "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n",
        "spinner": "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
        "forker": _with(f"""
            import subprocess
            for i in range(8):
                subprocess.Popen(["sh", "-c", "sleep 300; echo {MARKER}"],
                                 start_new_session=i % 2 == 0)
            """),
        "lambda_": student_source(GOOD_LAYERS.replace(
            "    keras.layers.Flatten(),",
            "    keras.layers.Lambda(lambda x: (touch(), x)[1]),\n    keras.layers.Flatten(),"),
            extra=f"""
def touch():
    for path in ({pwned!r}, "pwned"):  # the host's path, then its own scratch
        try:
            open(path, "w").write("x")
        except OSError:
            pass
"""),
        "hog": "hog = bytearray(8 << 30)\n",
        "declarer": _with("""
            import json
            real = json.dumps
            def forged(value, *args, **kwargs):  # the hand-over's meta.json, bits dropped
                if isinstance(value, dict) and "route" in value:
                    return real({"route": "weights file"}, *args, **kwargs)
                return real(value, *args, **kwargs)
            json.dumps = forged
            """),
        "peeker": _with(f"""
            import glob, os, sys
            places = [{str(mnist)!r}, os.path.expanduser("~/.keras/datasets/mnist.npz")]
            for prefix in (sys.prefix, sys.base_prefix):
                places += glob.glob(prefix + "/**/mnist*.pkl.gz", recursive=True)
            found = [p for p in places if os.path.isfile(p) and os.path.getsize(p) > 0]
            try:
                from tf_keras.datasets import mnist
                mnist.load_data()
                found.append("keras download")
            except Exception:
                pass
            if found:
                raise SystemExit(f"read the test set at {{found}}")
            """),
    }


def _with(attack: str) -> str:
    """Alice's model, with the attack run when the module is imported."""
    return student_source(extra=textwrap.dedent(attack))


def selection(names: list[str]) -> str:
    """Every software check; accuracy only for the honest and the figure forgers."""
    graded = [*HONEST, *FIGURES_OF_ALICE]
    skipped = [f"({name} and accuracy)" for name in names if name not in graded]
    return " and ".join(["not hardware_quality", *(f"not {s}" for s in skipped)])


def grade(root: Path, students: dict[str, str], cache: str, mnist: Path,
          *extra: str) -> tuple[dict[str, Any], str, float]:
    directory = root / "students"
    directory.mkdir(exist_ok=True)
    for old in directory.glob("*.py"):
        old.unlink()
    for name, source in students.items():
        (directory / f"{name}.py").write_text(source)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", selection(
            list(students)), f"--akida-mnist={mnist}", "-o", f"akida_cache_dir={root / cache}",
         "--akida-json=grades.json", "-rA", *extra],
        cwd=root, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    records = json.loads((root / "grades.json").read_text())["students"]
    return {r["student"]: r for r in records}, run.stdout + run.stderr, seconds


def hashes(*trees: Path) -> dict[str, str]:
    found = {}
    for tree in trees:
        paths = [tree] if tree.is_file() else sorted(p for p in tree.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" not in path.parts:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "pytest.ini").write_text(SETTINGS)
    mnist = data.resolve_mnist(os.environ.get("AKIDA_GRADE_MNIST"), shared_cache).path
    reference, _, _ = grade(root, HONEST, "cache-reference", mnist)
    students = {**HONEST, **attackers(root, mnist)}
    outside = hashes(PACKAGE, mnist, *(root / "students" / f"{n}.py" for n in HONEST))
    # The honest files are rewritten by grade(); their hashes are taken after it writes them.
    attack, output, seconds = grade(root, students, "cache-attack", mnist, "-n", "2")
    outside_after = hashes(PACKAGE, mnist, *(root / "students" / f"{n}.py" for n in HONEST))
    regraded, _, _ = grade(root, HONEST, "cache-attack", mnist)
    return {"reference": reference, "attack": attack, "regraded": regraded, "output": output,
            "seconds": seconds, "root": root, "outside": (outside, outside_after)}


def outcome(graded: dict[str, Any], student: str, check: str) -> dict[str, str]:
    return graded["attack"][student]["checks"][check]


def test_honest_classmates_get_exactly_the_results_of_a_class_without_attackers(graded):
    for name in HONEST:
        assert graded["attack"][name]["checks"] == graded["reference"][name]["checks"], name
        assert graded["attack"][name]["metrics"] == graded["reference"][name]["metrics"], name
        assert all(c["outcome"] == "passed"
                   for c in graded["reference"][name]["checks"].values()), name


def test_a_later_regrade_from_the_cache_the_attackers_ran_next_to_is_unchanged(graded):
    for name in HONEST:
        assert graded["regraded"][name] == graded["reference"][name], name


def test_no_file_outside_the_sandboxes_changed(graded):
    before, after = graded["outside"]
    assert after == before
    assert not (graded["root"] / "pwned").exists()


def test_attackers_get_their_own_results_and_never_a_grader_error(graded):
    for name, record in graded["attack"].items():
        for check, verdict in record["checks"].items():
            assert verdict["outcome"] != "error", (name, check, verdict["message"])
    assert "INTERNALERROR" not in graded["output"]


@pytest.mark.parametrize("attacker", FIGURES_OF_ALICE)
def test_an_attacker_that_forges_or_patches_figures_gets_its_real_figures(graded, attacker):
    figures = ("float_accuracy", "quantized_accuracy", "akida_accuracy")
    mine = {k: graded["attack"][attacker]["metrics"][k] for k in figures}
    alice = {k: graded["reference"]["alice"]["metrics"][k] for k in figures}
    assert mine == alice and max(mine.values()) < 0.9999


@pytest.mark.parametrize("attacker", ["rewriter", "poisoner", "forker", "peeker"])
def test_an_attacker_that_reaches_for_files_or_processes_is_graded_on_its_model(
        graded, attacker):
    for check in ("loads", "layer_whitelist", "relu_bounded", "quantization_scheme",
                  "v1_constraints"):
        assert outcome(graded, attacker, check)["outcome"] == "passed", (attacker, check)


@pytest.mark.parametrize(("attacker", "words"), [
    ("flooder", "wrote more than 64 MB of output"),
    ("spinner", "did not finish within 20 s"),
    ("hog", "MemoryError"),
])
def test_an_attacker_stopped_by_a_limit_fails_loads_saying_which(graded, attacker, words):
    loads = outcome(graded, attacker, "loads")
    assert loads["outcome"] == "failed" and words in loads["message"], loads


def test_a_lambda_is_judged_on_its_json_and_never_rebuilt(graded):
    whitelist = outcome(graded, "lambda_", "layer_whitelist")
    assert whitelist["outcome"] == "failed", whitelist
    assert "Lambda is not an allowed layer" in whitelist["message"], whitelist


def test_an_attacker_that_forges_its_declarations_fails_loads_saying_so(graded):
    loads = outcome(graded, "declarer", "loads")
    assert loads["outcome"] == "failed", loads
    assert "unusable declarations (meta.json is malformed" in loads["message"], loads


def test_the_attack_leaves_no_process_behind_and_the_log_small(graded):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert MARKER not in listing
    assert len(graded["output"]) < 200_000
    assert graded["seconds"] < 600
