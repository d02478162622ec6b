"""A class with attackers in it, graded end to end (xdist, two workers), against a reference run,
in every sandbox a root grader gets that works on this machine: bubblewrap, and a fresh uid
(bubblewrap hidden, as in a container without it; where this Python is one a fresh uid can run).
A mode this machine does not have is skipped, saying why. Every attack on the sandbox is also
made by the cells of a notebook shaped like the handout's (`*_nb.ipynb`), classmates in the same
run, with hostile notebook files of their own (nested, oversized).

Each attacker ends with its own result (the figures its real model earns, or a failure saying
what went wrong), never a pass it did not earn and never a grader error; the honest classmates
get exactly the verdicts and figures of a run without the attackers, also when re-graded later
from the cache the attackers ran next to; no file outside the sandboxes changes. In the same run:
hand-overs that attack their readers (meta.json nested past the recursion limit or mistyped, a
weights file flagged encrypted, a Rescaling that overflows) and hostile file names (formulas,
HTML, names that differ only by Unicode normalisation, a collision after normalising), which
reach the gradebook and the HTML report only as text, each with its own weights file.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from made_up import GOOD_LAYERS, HANDOUT_MODEL, fast_ini, notebook, save_weights, student_source

from pytest_akida_grade import data
from pytest_akida_grade.fileio import NUMBER
from pytest_akida_grade.sandbox import policy

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_akida_grade"
MARKER = f"akida{os.getpid()}burst"
# The fast settings (each run names its own cache) and a sandbox for credit. Their limit (60 s)
# binds the trusted inspection too: a shorter one failed honest students on a loaded machine
# (make test's two workers, beside other jobs), for the spinner's wait saved.
LIMIT = 60
# A notebook's whole run has akida_grade_timeout (its training is in it): the looping notebook
# waits it out beside the class, in every mode. It binds the honest grades too (~10 s each here),
# with the margin the inspection's limit has; the message says which setting stopped it.
GRADE_LIMIT = 60
SETTINGS = fast_ini(akida_timeout=str(LIMIT), akida_grade_timeout=str(GRADE_LIMIT),
                    akida_cache_dir=None, akida_memory_limit="6G", akida_sandbox="required")
TRAIN = """
def train(model, x_train, y_train):
    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
"""
HONEST = {"alice": student_source(), "bob": student_source(extra=TRAIN)}
# Attackers whose figures must be checked: their model is alice's, so are their figures.
FIGURES_OF_ALICE = ("patcher", "forger")
# The uid mode as on a root without bubblewrap: the class's conftest hides bubblewrap.
HIDE_BWRAP = """
from pytest_akida_grade.sandbox import policy
policy._bwrap_problem = lambda hidden, python: "hidden by the test"
"""
HEADERS = {"bwrap": "akida-grade sandbox: bubblewrap (namespaces",
           "uid": "akida-grade sandbox: a fresh unprivileged uid"}
# Every mode grades the attacks on the sandbox itself: files (rewriter, poisoner, peeker, the
# lambda_ run at build time), processes (forker, killer), limits (flooder, hog), the hand-over
# swapped after export (swapper, linker), and the hostile hand-overs of issue 17 (lookup,
# vectorizer, giant, nan, huge, constant, an honest relu6). In the first mode only (bubblewrap
# where it works; the suite's time): the spinner costs its deadline; the figure forgers, the
# declarer, issue 28's hand-overs and file names hand over what the trusted side judges alike
# whichever sandbox built it; so is the regrade. Each attack is made by a notebook too
# (NOTEBOOKS), in the same modes, but the looping notebook runs in every mode: its deadline
# passes while the class is graded.
READERS = ("nester", "mistyped", "encrypted", "overflow")  # issue 28's hostile hand-overs
ONCE = ("spinner", *FIGURES_OF_ALICE, "declarer", *READERS)
# Hostile file names (issue 28), graded in the first mode too (each holds alice's model).
NFC, NFD = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
HTML_NAME = "<img src=x onerror=alert(1)>"
NAMES = ("=2+5", "@SUM(1)", "student_2_5", NFC, NFD, HTML_NAME)
NOT_UTF8 = os.fsdecode(b"\xff\xfebad.py")  # bytes no report can write: listed, not graded
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Its hand-over swapped once student.py has written it, before the grader copies it (student.py
# is `student` in a fork, __main__ in a fresh process).
SWAP = """
import os, sys
runner = sys.modules.get("student") or sys.modules["__main__"]
real_export = runner.export
def export(directory, model, meta=None):
    real_export(directory, model, meta)
    {swap}
runner.export = export
"""
# Each attack on the sandbox again, made by a notebook's cells (the same class, the same modes):
# as the handout has it, model_keras, then each attack in a cell of its own. Attacks whose
# submission is graded on its model share a notebook (one inspection: the class's time); those
# that end the run, or its hand-over, have one each. The figure forgers keep alice's
# build_model() (their figures must be alice's); a limit's attacker has no model.
NOTEBOOKS = {"reacher_nb": ("rewriter", "poisoner", "peeker", "killer", "forker"),  # the
             # killer before the burst: its own uid's processes are its to signal
             "figures_nb": ("patcher", "forger"), "declarer_nb": ("declarer",),
             "swapper_nb": ("swapper",), "linker_nb": ("linker",)}
WHOLE_MODULE = {"lambda_nb": "lambda_", "flooder_nb": "flooder", "hog_nb": "hog"}  # a notebook
# of one cell: the module's attack as it is. The looping notebook sleeps in its loop: the module
# spinner shows that a spinning child is stopped; this one that a notebook's deadline is
# akida_grade_timeout, without holding a core for it.
LOOPING = "import os, time\nos.close(1)\nos.close(2)\nwhile True:\n    time.sleep(0.5)\n"
LOOPING_NB = "looping_nb"
# A notebook's code has no __file__: the rewriter reaches for its own folder from its scratch.
OWN_FOLDER = 'os.path.dirname(__file__)'
NOTEBOOK_FOLDER = 'os.path.join(os.getcwd(), "..", "in")'


def meta_as(text: str) -> str:
    """Alice's model whose hand-over's meta.json is `text` (its JSON writer patched)."""
    return _with(f"""
        import json
        real = json.dumps
        def forged(value, *args, **kwargs):
            if isinstance(value, dict) and "route" in value:
                return {text}
            return real(value, *args, **kwargs)
        json.dumps = forged
        """)


# Its weights.npz rewritten after export with every member flagged encrypted: numpy's reader
# raised a RuntimeError (not a ValueError) in the evaluator and in the fingerprint.
ENCRYPTED = SWAP.format(swap="""data = bytearray((directory / 'weights.npz').read_bytes())
    for signature, offset in ((b'PK\\x03\\x04', 6), (b'PK\\x01\\x02', 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 1
            at = data.find(signature, at + 1)
    (directory / 'weights.npz').write_bytes(bytes(data))""")


def readers(root: Path) -> dict[str, str]:
    """Issue 28's hand-overs, each aimed at a reader of the trusted side."""
    return {"nester": meta_as('"[" * 40000'),
            "mistyped": meta_as('real({"route": "train()", "weight_bits": [[4]], '
                                '"activation_bits": 4})'),
            "encrypted": _with(ENCRYPTED),
            "overflow": student_source(GOOD_LAYERS.replace("1. / 255", "3e38"))}


# Hand-overs that are hostile themselves (issue 17): the trusted side reads their JSON as data and
# rebuilds only what is on its closed list; bad numbers fail in the student's words.
SECRET = "TOPSECRET-first-line-of-a-root-only-file"
BAD_NUMBERS = {"nan": "the weights of layer 'conv2d' (kernel) contain NaN: training diverged",
               "huge": "the weights of layer 'conv2d' (kernel) reach 3e+38",
               "constant": "outputs the same values for every image"}
NOT_REBUILT = ("lookup", "vectorizer", "giant")
INTERNALS = ("Traceback", 'File "/', "{{function_node", "<class '", "object at 0x",
             "RecursionError", "_pytest")


def forged(layers: str) -> str:
    """Alice's model whose exported JSON gains `layers` before its classifier (a patched
    to_json: the sandbox built the real model, the hand-over says otherwise)."""
    return student_source(extra=textwrap.dedent(f"""
        import json
        from tf_keras.src.engine import training
        real = training.Model.to_json
        def to_json(self, **kwargs):
            config = json.loads(real(self, **kwargs))
            config["config"]["layers"][-2:-2] = {layers}
            for layer in config["config"]["layers"]:
                layer.pop("build_config", None)  # tf_keras rebuilds without them
            return json.dumps(config)
        training.Model.to_json = to_json
        """))


def weights_set_to(expression: str) -> str:
    """Alice's model whose own train() leaves every weight as `expression` of its shape."""
    return student_source(extra=f"""
import numpy as np

def train(model, x_train, y_train):
    model.set_weights([{expression} for w in model.get_weights()])
""")


def hand_overs(root: Path) -> dict[str, str]:
    """The hostile hand-overs; a root-only file (0600) their layers name."""
    secret = root / "secret.txt"
    secret.write_text(f"{SECRET}\nsecond line\n")
    secret.chmod(0o600)
    layer = {"module": "keras.layers", "registered_name": None}
    return {
        "relu6": student_source(GOOD_LAYERS.replace("keras.layers.ReLU(max_value=3.0)",
                                                    'keras.layers.Activation("relu6")')),
        "lookup": forged(repr([{**layer, "class_name": "IntegerLookup",
                                "config": {"name": "lookup", "vocabulary": str(secret)}}])),
        "vectorizer": forged(repr([{**layer, "class_name": "TextVectorization",
                                    "config": {"name": "text", "vocabulary": str(secret)}}])),
        "giant": forged(repr([{**layer, "class_name": "Flatten", "config": {"name": "flat"}},
                              {**layer, "class_name": "Dense",
                               "config": {"name": "giant", "units": 1_200_000}}])),
        "nan": weights_set_to("np.full(w.shape, np.nan, 'float32')"),
        "huge": weights_set_to("np.full(w.shape, 3e38, 'float32')"),
        "constant": weights_set_to("np.zeros(w.shape, 'float32')"),
    }


def attacks(root: Path, mnist: Path) -> dict[str, str]:
    """The attacks made while the submission runs (a module's import, a notebook's cell), each
    on alice's model."""
    targets = [str(root / "students" / f"{name}.py") for name in HONEST]
    cache = str(root / "cache-attack")
    with np.load(mnist) as real:  # the grader's test set begins so: the sandbox never sees it
        test_labels = real["y_test"][:64].tobytes()
    found = {
        "patcher": """
            import sys
            try:
                from pytest_akida_grade.evaluator import pipeline
                pipeline.keras_accuracy = pipeline.akida_accuracy = lambda *a: 0.9999
            except ImportError:
                pass
            for name in list(sys.modules):
                if "numpy" in name:
                    sys.modules[name].argmax = lambda *a, **k: 0
            """,
        "forger": """
            import json, os
            line = json.dumps({"event": "result", "result": {"quantized_accuracy": 0.9999,
                               "akida_accuracy": 0.9999}}).encode() + b"\\n"
            for fd in range(0, 64):
                try:
                    os.write(fd, line)
                except OSError:
                    pass
            """,
        "rewriter": f"""
            import glob, os
            for path in {targets!r} + glob.glob({OWN_FOLDER} + "/*.py"):
                try:
                    open(path, "w").write("raise SystemExit('rewritten by a classmate')\\n")
                except OSError:
                    pass
            """,
        "poisoner": f"""
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
            """,
        "forker": f"""
            import subprocess
            for i in range(8):
                subprocess.Popen(["sh", "-c", "sleep 300; echo {MARKER}"],
                                 start_new_session=i % 2 == 0)
            """,
        "declarer": """
            import json
            real = json.dumps
            def forged(value, *args, **kwargs):  # the hand-over's meta.json, bits dropped
                if isinstance(value, dict) and "route" in value:
                    return real({"route": "weights file"}, *args, **kwargs)
                return real(value, *args, **kwargs)
            json.dumps = forged
            """,
        "swapper": SWAP.format(swap="os.unlink(directory / 'model.json'); "
                                    "os.mkfifo(directory / 'model.json')"),
        "linker": SWAP.format(swap=(
            f"os.unlink(directory / 'model.json'); os.symlink({targets[0]!r}, "
            "directory / 'model.json'); os.unlink(directory / 'weights.npz'); "
            "os.symlink('/dev/zero', directory / 'weights.npz')")),
        "killer": """
            import os, signal
            if os.geteuid() == 0 or os.getuid() == 0:  # bounded: a broken sandbox harms nobody
                raise SystemExit("ran as root: attacked nothing")
            me, reached = os.getpid(), []
            pids = {os.getppid(), 1, *(int(p) for p in os.listdir("/proc") if p.isdigit())}
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in sorted(pids - {me}):
                    try:
                        os.kill(pid, sig)
                        reached.append(pid)
                    except OSError:
                        pass
                try:
                    os.kill(-1, sig)  # all it may signal (never itself)
                except OSError:
                    pass
            if reached:
                raise SystemExit(f"reached {sorted(set(reached))}")
            """,
        # keras' load_data(): a module's finds nothing; a notebook's gives the training and
        # validation splits, never the test set.
        "peeker": f"""
            import glob, os, sys, sysconfig
            places = [{str(mnist)!r}, os.path.expanduser("~/.keras/datasets/mnist.npz")]
            for base in (sys.prefix, sys.base_prefix):  # site-packages (base: /usr for Debian's)
                lib = sysconfig.get_paths(vars={{"base": base, "platbase": base}})["purelib"]
                places += glob.glob(lib + "/**/mnist*.pkl.gz", recursive=True)
            found = [p for p in places if os.path.isfile(p) and os.path.getsize(p) > 0]
            try:  # a module: keras' own, which finds no copy and no network
                from tf_keras.datasets import mnist
                (_, _), (_, y_test) = mnist.load_data()
                if len(y_test) == 10000 or y_test[:64].tobytes() == {test_labels!r}:
                    found.append("the test set from keras' load_data()")
            except Exception:
                pass
            if found:
                raise SystemExit(f"read the test set at {{found}}")
            """,
    }
    return {name: textwrap.dedent(code) for name, code in found.items()}


# Attackers with no model: the limits stop them.
SCRIPTS = {"flooder": "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n",
           "spinner": "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
           "hog": "hog = bytearray(8 << 30)\n"}


def lambda_source(root: Path) -> str:
    """Alice's model with a Lambda that writes files when it runs (at the build: the export)."""
    return student_source(GOOD_LAYERS.replace(
        "    keras.layers.Flatten(),",
        "    keras.layers.Lambda(lambda x: (touch(), x)[1]),\n    keras.layers.Flatten(),"),
        extra=f"""
def touch():
    for path in ({str(root / "pwned")!r}, "pwned"):  # the host's path, then its own scratch
        try:
            open(path, "w").write("x")
        except OSError:
            pass
""")


def attackers(root: Path, mnist: Path) -> dict[str, str]:
    at_import = {name: _with(code) for name, code in attacks(root, mnist).items()}
    return {**hand_overs(root), **readers(root), **at_import, **SCRIPTS,
            "lambda_": lambda_source(root)}


def notebooks(root: Path, mnist: Path) -> dict[str, str]:
    """The attacks on the sandbox made by notebooks (file name -> its text), and hostile notebook
    files: nested too deep for a JSON reader, larger than the cap."""
    code, modules = attacks(root, mnist), attackers(root, mnist)
    made = {name: notebook([modules[module]]) for name, module in WHOLE_MODULE.items()}
    made[LOOPING_NB] = notebook([LOOPING])
    for name, made_by in NOTEBOOKS.items():
        cells = [code[attack].replace(OWN_FOLDER, NOTEBOOK_FOLDER) for attack in made_by]
        made[name] = notebook(
            [*cells, HONEST["alice"]] if name == "figures_nb" else
            ["from tensorflow import keras\n\n" + HANDOUT_MODEL, *cells,
             "weight_precision = 4\nactivation_bit = 4"])
    made["nested_nb"] = "[" * 100_000 + "]" * 100_000
    made["giant_nb"] = '{"cells": [], "padding": "' + "x" * (33 << 20) + '"}'
    return {f"{name}.ipynb": text for name, text in made.items()}


def in_every_mode(notebook_name: str) -> bool:
    """A notebook graded in every mode, not the first only: the attacks whose sandbox matters
    (the looping notebook too: it costs its deadline, not a core)."""
    name = notebook_name.removesuffix(".ipynb")
    return not set(NOTEBOOKS.get(name, (WHOLE_MODULE.get(name, name),))) & set(ONCE)


def _with(attack: str) -> str:
    """Alice's model, with the attack run when the module is imported."""
    return student_source(extra=textwrap.dedent(attack))


def selection() -> str:
    """Every software check; accuracy only for the honest, the figure forgers and the hostile
    hand-overs (bad numbers fail it, a model not rebuilt skips it)."""
    graded = [*HONEST, *FIGURES_OF_ALICE, *BAD_NUMBERS, *NOT_REBUILT, "figures_nb"]
    return f"not hardware_quality and (not accuracy or {' or '.join(graded)})"


def grade(root: Path, students: dict[str, str], cache: str, mnist: Path,
          *extra: str, files: dict[str, bytes] | None = None,
          ) -> tuple[dict[str, Any], str, float]:
    """The class graded: `students` as <name>.py, `files` (hostile names, weights) as named."""
    directory = root / "students"
    directory.mkdir(exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for name, source in students.items():
        (directory / f"{name}.py").write_text(source)
    for name, content in (files or {}).items():
        (directory / name).write_bytes(content)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", selection(),
         f"--akida-mnist={mnist}", "-o", f"akida_cache_dir={root / cache}",
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


@functools.cache
def mode_problem(mode: str) -> str | None:
    """Why this machine cannot grade in `mode` as root would (None: it can)."""
    problem = policy.MODES[mode].problem((), sys.executable)  # type: ignore[index]
    return None if problem is None else f"no {mode} sandbox here: {problem}"


def modes() -> list[str]:
    """The modes this machine has, bubblewrap first."""
    return [mode for mode in HEADERS if mode_problem(mode) is None]


def sandboxed(root: Path, mode: str) -> None:
    """A class directory graded in `mode` (the uid mode: bubblewrap hidden by its conftest)."""
    (root / "pytest.ini").write_text(SETTINGS)
    if mode == "uid":
        (root / "conftest.py").write_text(HIDE_BWRAP)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory,
              shared_cache: Path) -> tuple[dict[str, Any], Path]:
    """The honest classmates graded alone, in the first mode this machine has; the test set."""
    if not modes():
        pytest.skip("no sandbox a root grader gets works here: " + "; ".join(
            str(mode_problem(mode)) for mode in HEADERS))
    root = tmp_path_factory.mktemp("hostile-reference")
    sandboxed(root, modes()[0])
    mnist = data.resolve_mnist(os.environ.get("AKIDA_GRADE_MNIST"), shared_cache).path
    return grade(root, HONEST, "cache-reference", mnist)[0], mnist


def hostile_names(root: Path) -> dict[str, bytes]:
    """Files with hostile names (each alice's model); the two Josés (differing only by Unicode
    normalisation) each with a weights file: NFC's fits its model, NFD's does not."""
    found = {f"{name}.py": student_source().encode() for name in (*NAMES, NOT_UTF8[:-3])}
    module = root / "weights-source.py"
    module.write_text(student_source())
    save_weights(module, root / "fits.weights.h5")
    found[f"{NFC}.weights.h5"] = (root / "fits.weights.h5").read_bytes()
    found[f"{NFD}.weights.h5"] = b"not the weights of this model"
    return found


@pytest.fixture(scope="module", params=list(HEADERS))
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           reference: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    mode = request.param
    if mode_problem(mode) is not None:
        pytest.skip(str(mode_problem(mode)))
    first = mode == modes()[0]
    root = tmp_path_factory.mktemp(f"hostile-{mode}")
    sandboxed(root, mode)
    mnist = reference[1]
    students = {name: source for name, source in {**HONEST, **attackers(root, mnist)}.items()
                if first or name not in ONCE}
    (root / "students").mkdir()
    for name, source in HONEST.items():  # as grade() writes them
        (root / "students" / f"{name}.py").write_text(source)
    outside = hashes(PACKAGE, mnist, *(root / "students" / f"{n}.py" for n in HONEST))
    named = hostile_names(root) if first else {}
    by_notebooks = {name: text.encode() for name, text in notebooks(root, mnist).items()
                    if first or in_every_mode(name)}
    attack, output, seconds = grade(
        root, students, "cache-attack", mnist, "-n", "2", "--akida-csv=gradebook.csv",
        "--html=report.html", "--self-contained-html", files={**named, **by_notebooks})
    outside_after = hashes(PACKAGE, mnist, *(root / "students" / f"{n}.py" for n in HONEST))
    not_graded = json.loads((root / "grades.json").read_text()).get("not_graded", [])
    regraded = grade(root, HONEST, "cache-attack", mnist)[0] if first else None
    return {"mode": mode, "reference": reference[0], "attack": attack, "regraded": regraded,
            "output": output, "seconds": seconds, "root": root, "named": named,
            "not_graded": not_graded, "outside": (outside, outside_after)}


def record(graded: dict[str, Any], student: str) -> dict[str, Any]:
    if student not in graded["attack"]:
        pytest.skip(f"{student} is graded in the first mode only")
    found: dict[str, Any] = graded["attack"][student]
    return found


def outcome(graded: dict[str, Any], student: str, check: str) -> dict[str, str]:
    return record(graded, student)["checks"][check]


def test_the_class_ran_in_the_sandbox_it_was_meant_for(graded):
    assert HEADERS[graded["mode"]] in graded["output"], graded["output"][:3000]


def test_honest_classmates_get_exactly_the_results_of_a_class_without_attackers(graded):
    for name in HONEST:
        assert graded["attack"][name]["checks"] == graded["reference"][name]["checks"], name
        assert graded["attack"][name]["metrics"] == graded["reference"][name]["metrics"], name
        assert all(c["outcome"] == "passed"
                   for c in graded["reference"][name]["checks"].values()), name


def test_a_later_regrade_from_the_cache_the_attackers_ran_next_to_is_unchanged(graded):
    if graded["regraded"] is None:
        pytest.skip("regraded in the first mode only")
    def graded_alike(record: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key != "seconds"}  # wall time

    for name in HONEST:
        assert graded_alike(graded["regraded"][name]) == graded_alike(graded["reference"][name])


def test_no_file_outside_the_sandboxes_changed(graded):
    before, after = graded["outside"]
    assert after == before
    assert not (graded["root"] / "pwned").exists()


def test_attackers_get_their_own_results_and_never_a_grader_error(graded):
    for name, record in graded["attack"].items():
        for check, verdict in record["checks"].items():
            assert verdict["outcome"] != "error", (name, check, verdict["message"])
    assert "INTERNALERROR" not in graded["output"]


@pytest.mark.parametrize("attacker", [*FIGURES_OF_ALICE, "figures_nb"])
def test_an_attacker_that_forges_or_patches_figures_gets_its_real_figures(graded, attacker):
    figures = ("float_accuracy", "quantized_accuracy", "akida_accuracy")
    mine = {k: record(graded, attacker)["metrics"][k] for k in figures}
    alice = {k: graded["reference"]["alice"]["metrics"][k] for k in figures}
    assert mine == alice and max(mine.values()) < 0.9999


@pytest.mark.parametrize("attacker", [*NOTEBOOKS["reacher_nb"], "reacher_nb"])
def test_an_attacker_that_reaches_for_files_or_processes_is_graded_on_its_model(
        graded, attacker):
    for check in ("loads", "layer_whitelist", "relu_bounded", "quantization_scheme",
                  "v1_constraints"):
        assert outcome(graded, attacker, check)["outcome"] == "passed", (attacker, check)
    # A notebook is graded when a cell raises: its attack cells must have reached nothing.
    assert "the run stopped" not in outcome(graded, attacker, "loads")["message"]


@pytest.mark.parametrize(("attacker", "words"), [
    ("flooder", "wrote more than 64 MB of output"),
    ("spinner", f"did not finish within {LIMIT} s (the limit set by akida_timeout"),
    ("hog", "MemoryError"),
    ("flooder_nb", "wrote more than 64 MB of output"),
    (LOOPING_NB, f"did not finish within {GRADE_LIMIT} s (the limit set by "
                 "akida_grade_timeout"),
    ("hog_nb", "code cell 1 raised MemoryError"),
    ("nested_nb", "nested_nb.ipynb is not a notebook Jupyter can open"),
    ("giant_nb", "giant_nb.ipynb is 33 MB, more than the 32 MB a notebook may have"),
])
def test_an_attacker_stopped_by_a_limit_fails_loads_saying_which(graded, attacker, words):
    loads = outcome(graded, attacker, "loads")
    assert loads["outcome"] == "failed" and words in loads["message"], loads


@pytest.mark.parametrize("attacker", ["lambda_", "lambda_nb"])
def test_a_lambda_is_judged_on_its_json_and_never_rebuilt(graded, attacker):
    whitelist = outcome(graded, attacker, "layer_whitelist")
    assert whitelist["outcome"] == "failed", whitelist
    assert "Lambda is not an allowed layer" in whitelist["message"], whitelist


@pytest.mark.parametrize(("attacker", "words"), [
    ("swapper", "the exported model.json is not a regular file"),
    ("linker", "the exported model.json is a symbolic link, not a file"),
    ("swapper_nb", "the exported model.json is not a regular file"),
    ("linker_nb", "the exported model.json is a symbolic link, not a file"),
])
def test_an_attacker_that_swaps_its_hand_over_after_export_fails_loads_saying_so(
        graded, attacker, words):
    loads = outcome(graded, attacker, "loads")
    assert loads["outcome"] == "failed" and words in loads["message"], loads


@pytest.mark.parametrize("attacker", ["declarer", "declarer_nb"])
def test_an_attacker_that_forges_its_declarations_fails_loads_saying_so(graded, attacker):
    loads = outcome(graded, attacker, "loads")
    assert loads["outcome"] == "failed", loads
    assert "unusable declarations (meta.json is malformed" in loads["message"], loads


def test_the_attack_leaves_no_process_behind_and_the_log_small(graded):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert MARKER not in listing
    assert len(graded["output"]) < 200_000
    assert graded["seconds"] < 600


@pytest.mark.parametrize("attacker", ["lookup", "vectorizer"])
def test_a_layer_naming_a_file_loads_fails_the_whitelist_and_the_file_is_never_read(
        graded, attacker):
    assert outcome(graded, attacker, "loads")["outcome"] == "passed"
    whitelist = outcome(graded, attacker, "layer_whitelist")
    assert whitelist["outcome"] == "failed" and "is not an allowed layer" in whitelist["message"]
    for check in ("quantized_accuracy", "akida_accuracy"):
        verdict = outcome(graded, attacker, check)
        assert verdict["outcome"] == "skipped", verdict
        assert "does not rebuild this model" in verdict["message"]
    assert SECRET not in graded["output"] and SECRET not in json.dumps(graded["attack"])


def test_a_giant_architecture_is_refused_before_allocation_with_both_numbers(graded):
    v1 = outcome(graded, "giant", "v1_constraints")
    assert v1["outcome"] == "failed"
    assert "954,004,810 parameters" in v1["message"] and "16,000,000" in v1["message"]
    assert outcome(graded, "giant", "akida_accuracy")["outcome"] == "skipped"


@pytest.mark.parametrize(("attacker", "words"), list(BAD_NUMBERS.items()))
def test_bad_numbers_fail_the_accuracy_checks_in_the_students_words(graded, attacker, words):
    assert outcome(graded, attacker, "loads")["outcome"] == "passed"
    for check in ("quantized_accuracy", "akida_accuracy"):
        verdict = outcome(graded, attacker, check)
        assert verdict["outcome"] == "failed" and words in verdict["message"], verdict


def test_an_honest_relu6_activation_loads_and_fails_only_the_whitelist(graded):
    assert outcome(graded, "relu6", "loads")["outcome"] == "passed"
    whitelist = outcome(graded, "relu6", "layer_whitelist")
    assert whitelist["outcome"] == "failed" and "ReLU(max_value=6.0)" in whitelist["message"]
    assert outcome(graded, "relu6", "relu_bounded")["outcome"] == "passed"


def test_no_message_carries_a_traceback_a_host_path_or_an_op_name(graded):
    private = (str(PACKAGE.parent), str(graded["root"]))
    for name, verdicts in graded["attack"].items():
        for check, verdict in verdicts["checks"].items():
            for internal in (*INTERNALS, *private):
                assert internal not in verdict["message"], (name, check, internal)


# ---------------------------------------------------------------------------- issue 28


@pytest.mark.parametrize(("attacker", "words"), [
    ("nester", "unusable declarations (meta.json is nested more than 64 levels deep)"),
    ("mistyped", "meta.json is malformed: Declarations.weight_bits: expected int | float | str"),
    ("encrypted", "the exported weights file is not a plain .npz of arrays"),
])
def test_a_hand_over_that_attacks_its_reader_fails_loads_in_the_students_words(
        graded, attacker, words):
    loads = outcome(graded, attacker, "loads")
    assert loads["outcome"] == "failed" and words in loads["message"], loads
    skipped = [verdict["outcome"] for check, verdict in record(graded, attacker)["checks"].items()
               if check != "loads"]
    assert set(skipped) == {"skipped"}, skipped


def test_a_rescaling_that_overflows_is_named_instead_of_the_layer_after_it(graded):
    v1 = outcome(graded, "overflow", "v1_constraints")
    assert v1["outcome"] == "failed", v1
    said = v1["message"].split("the Akida tools said:")[0]  # their words blame the ReLU
    assert "layer 0 'rescaling' (Rescaling): its outputs overflow" in said, v1
    assert "template's pattern" not in said and "'re_lu'" not in said, v1


def by_file(graded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not graded["named"]:
        pytest.skip("hostile file names are graded in the first mode only")
    return {r["file"]: r for r in graded["attack"].values() if "file" in r}


def test_hostile_file_names_are_graded_each_as_its_own_student(graded):
    files = by_file(graded)
    assert {f"{name}.py" for name in NAMES} <= set(files), sorted(files)
    students = [files[f"{name}.py"]["student"] for name in NAMES]
    assert len(set(students)) == len(NAMES), students  # collisions made unique
    for name in NAMES:
        checks = files[f"{name}.py"]["checks"]
        assert all(v["outcome"] != "error" for v in checks.values()), (name, checks)
        if name != NFD:  # alice's model: every fast check passes
            assert checks["layer_whitelist"]["outcome"] == "passed", (name, checks)


def test_a_name_that_is_not_utf8_is_listed_as_not_graded_saying_why(graded):
    by_file(graded)
    listed = {item["file"]: item for item in graded["not_graded"]}
    assert "\ufffd\ufffdbad.py" in listed, listed
    assert "not valid UTF-8" in listed["\ufffd\ufffdbad.py"]["reason"]


def test_names_that_differ_only_by_normalisation_each_get_their_own_weights(graded):
    files = by_file(graded)
    for name in (NFC, NFD):
        own = hashlib.sha256(graded["named"][f"{name}.weights.h5"]).hexdigest()
        assert files[f"{name}.py"]["fingerprint"]["weights_file"] == own, name
    assert files[f"{NFC}.py"]["checks"]["loads"]["outcome"] == "passed"
    nfd = files[f"{NFD}.py"]["checks"]["loads"]
    assert nfd["outcome"] == "failed" and "does not fit the model" in nfd["message"], nfd


def test_no_gradebook_cell_is_a_formula_and_no_name_is_raw_html(graded):
    by_file(graded)
    with (graded["root"] / "gradebook.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = [cell for row in rows for cell in row.values()]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(c)]
    assert {"'=2+5.py", "'@SUM(1).py"} <= {row["file"] for row in rows}
    page = (graded["root"] / "report.html").read_text()
    assert HTML_NAME not in page and "<img src=x" not in page
