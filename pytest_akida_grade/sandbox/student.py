"""Runs INSIDE the sandbox: `python -I student.py REQUEST.json`. The only code that runs a
submission. It imports nothing from this package (only the standard library, numpy, tf_keras and,
for a notebook, nbformat) and hands over files, which the trusted side validates; nothing it says
is believed.

1. Confine itself before any student code runs: lower its resource limits, then (when started
   as root inside bubblewrap) drop to the unprivileged uid the launcher chose.
2. build: run the submission (import a module; a notebook's code cells in order, read here with
   nbformat: the file is hostile), seed, take its model: build_model() (the weights file loaded
   when there is one) or, in the handout's shape, `model_keras` as the code left it (trained by
   its own code, or not). Export out/build/{model.json, weights.npz, meta.json} (and a
   notebook's code as source.py) and say "exported build".
3. train (only when asked and the submission has its own train()): call train() on the training
   split it was given, export out/train/weights.npz and say "exported train".

keras.datasets.mnist.load_data() works offline here: the training split, and as its "test" the
held-out validation split (never the grader's test set: the sandbox has no copy of it).
The protocol is JSON lines on the original stdout (the events of watch.py, whose protocol block
this file holds a copy of, with codec.py's block); the student's prints go to stderr.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import linecache
import math
import os
import re
import resource
import sys
import tempfile
import traceback
import types
import typing
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import IO, Any, ClassVar, TypeVar

# ---------------------------------------------------------------------------- the codec
# (in codec.py and in sandbox/student.py, identical to "end of the codec": the child imports
# nothing from the package; tests/test_sandbox_messages.py keeps the two the same)

DEPTH = 64  # levels of nesting: far beyond any record, message or model.json
VALUES = 1_000_000
WIDEST_INT = 1 << 63


class RecordError(ValueError):
    """Not readable JSON, or not the record it should be: what is wrong, naming the field."""


def loads(data: str | bytes, *, what: str, limit: int, depth: int = DEPTH,
          values: int = VALUES, finite: bool = True) -> object:
    """JSON read from a file or a line this process did not write: at most `limit` characters,
    `depth` levels and `values` values, and (`finite`) no NaN, infinity or integer beyond 64
    bits. RecordError names `what` and the problem; nothing else escapes (a RecursionError
    included)."""
    if len(data) > limit:
        raise RecordError(f"{what} is larger than {_size(limit)}")
    try:
        found = json.loads(data)
    except RecursionError:  # deeper than the interpreter's stack: far past `depth`
        raise RecordError(f"{what} is nested more than {depth} levels deep") from None
    except ValueError as error:  # not JSON, not UTF-8, an integer of thousands of digits
        raise RecordError(f"{what} is not valid JSON ({str(error)[:200]})") from None
    _bounded(found, what, depth, values, finite)
    return found


def load(path: Path | str, *, what: str, limit: int, depth: int = DEPTH, values: int = VALUES,
         finite: bool = True) -> object:
    """`loads` of a file, read no further than its limit (one that cannot be read is a
    RecordError too)."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise RecordError(f"{what}: no such file") from None
    except OSError as error:
        raise RecordError(f"{what}: cannot read it ({error.strerror or error})") from None
    return loads(data, what=what, limit=limit, depth=depth, values=values, finite=finite)


def _bounded(found: object, what: str, depth: int, values: int, finite: bool) -> None:
    pending, seen = [(found, 0)], 0
    while pending:
        value, level = pending.pop()
        seen += 1
        if seen > values:
            raise RecordError(f"{what} holds more than {values:,} values")
        if level > depth:
            raise RecordError(f"{what} is nested more than {depth} levels deep")
        if isinstance(value, dict):
            pending.extend((item, level + 1) for item in value.values())
            pending.extend((key, level + 1) for key in value)
        elif isinstance(value, str) and not _unicode(value):
            raise RecordError(f"{what} holds text that is not Unicode (a lone surrogate)")
        elif isinstance(value, list):
            pending.extend((item, level + 1) for item in value)
        elif finite and isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"{what} holds a number that is not finite ({value})")
        elif finite and type(value) is int and abs(value) >= WIDEST_INT:
            raise RecordError(f"{what} holds a whole number beyond 64 bits")


def _unicode(text: str) -> bool:
    """Text UTF-8 can write (JSON's \\ud800 escapes decode to what it cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _size(limit: int) -> str:
    return f"{limit >> 20} MB" if limit >= 1 << 20 else f"{limit >> 10} KB"


@dataclass(frozen=True, kw_only=True)
class Record:
    """A typed JSON object: every field known, present unless defaulted, of its type."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls: type[R], data: object) -> R:
        """The record `data` is; RecordError naming the field at fault."""
        return _record(cls, data, cls.__name__)


R = TypeVar("R", bound=Record)
M = TypeVar("M", bound="Message")


@dataclass(frozen=True, kw_only=True)
class Message(Record):
    """`{TAG: KIND, field: value, ...}` on the wire."""

    TAG: ClassVar[str] = "kind"
    KIND: ClassVar[str]

    def to_json(self) -> dict[str, object]:
        return {self.TAG: self.KIND, **asdict(self)}

    @classmethod
    def from_json(cls: type[M], data: object) -> M:
        if not isinstance(data, dict) or data.get(cls.TAG) != cls.KIND:
            raise RecordError(f"not a {cls.KIND!r} message: {_shown(data)}")
        fields_only = {key: value for key, value in data.items() if key != cls.TAG}
        return _record(cls, fields_only, cls.__name__)


def parse(data: object, kinds: tuple[type[Message], ...]) -> Message:
    """The message among `kinds` (one family: one TAG) that `data` says it is."""
    tag = kinds[0].TAG
    if not isinstance(data, dict):
        raise RecordError(f"not a JSON object: {_shown(data)}")
    kind = data.get(tag)
    for message in kinds:
        if kind == message.KIND:
            return message.from_json(data)
    raise RecordError(f"unknown {tag} {_shown(kind)}: expected one of "
                      + ", ".join(message.KIND for message in kinds))


def _record(kind: type[R], data: object, where: str) -> R:
    if not isinstance(data, dict):
        _refuse(where, kind, data)
    known = {field.name: field for field in fields(kind)}
    unknown = sorted(str(key)[:40] for key in data if key not in known)
    if unknown:
        raise RecordError(f"{where}: unknown fields {unknown}")
    missing = [name for name, field in known.items() if name not in data
               and field.default is MISSING and field.default_factory is MISSING]
    if missing:
        raise RecordError(f"{where}: missing fields {missing}")
    hints = typing.get_type_hints(kind)
    return kind(**{key: _value(f"{where}.{key}", hints[key], value)
                   for key, value in data.items()})


def _value(where: str, hint: object, value: object) -> object:
    """`value` as `hint`: str, int, float, bool, object, an Enum, a Record, a union,
    tuple[X, ...], tuple[X, Y], dict[X, Y]."""
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = None  # what is wrong inside the option whose shape fits: say that
        for option in args:  # the first that fits (None, int and float before a wider one)
            try:
                return _value(where, option, value)
            except RecordError as error:
                inner = inner or (None if str(error).startswith(f"{where}: ") else error)
        if inner is not None:
            raise inner
    elif origin is tuple and isinstance(value, list | tuple):  # JSON's array, or to_json's
        if args[-1] is not Ellipsis and len(args) != len(value):
            raise RecordError(f"{where}: expected {len(args)} items, got {len(value)}")
        kinds = args[:1] * len(value) if args[-1] is Ellipsis else args
        return tuple(_value(f"{where}[{i}]", kinds[i], item) for i, item in enumerate(value))
    elif origin is dict and isinstance(value, dict):
        return {_value(where, args[0], key): _value(f"{where}[{str(key)[:40]!r}]", args[1], item)
                for key, item in value.items()}
    elif hint is object or hint is typing.Any:  # any JSON value, as it is
        return value
    elif isinstance(hint, type) and issubclass(hint, Record):
        return _record(hint, value, where)
    elif isinstance(hint, type) and issubclass(hint, enum.Enum) and type(value) is str:
        try:
            return hint(value)
        except ValueError:
            pass
    elif hint is float and type(value) is int:
        return float(value)
    elif origin is None and type(value) is hint:
        return value
    _refuse(where, hint, value)


def _refuse(where: str, hint: object, value: object) -> typing.NoReturn:
    expected = "an object" if isinstance(hint, type) and issubclass(hint, Record) \
        else _named(hint)
    raise RecordError(f"{where}: expected {expected}, got {_shown(value)}")


def _named(hint: object) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_named(option) for option in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _shown(value: object) -> str:
    if isinstance(value, dict | list | tuple):  # never a structure's repr (its size, depth)
        return f"{type(value).__name__} of {len(value)}"
    return f"{type(value).__name__} {repr(value)[:60]}"

# ---------------------------------------------------------------------------- end of the codec


# ---------------------------------------------------------------------------- the protocol
# (in watch.py and in student.py, identical to "end of the protocol": the child imports
# nothing from the package; tests/test_sandbox_messages.py keeps the two the same)


@dataclass(frozen=True, kw_only=True)
class Limits(Record):
    """The child's resource limits, each lowered before any student code runs."""

    memory: int
    file_size: int
    open_files: int
    core: int
    cpu_seconds: int
    processes: int | None = None  # none when off: a normal user's count includes their desktop


@dataclass(frozen=True, kw_only=True)
class Request(Message):
    """What the child runs, paths as it sees them; `env` for a fork (the server's is not its)."""

    KIND: ClassVar[str] = "request"
    module: str
    phases: tuple[str, ...]
    weights_file: str | None
    seed: int
    train_data: str | None  # the training split (x, y), validation (x_val, y_val): to train
    out: str
    cwd: str
    limits: Limits
    uid: int | None  # the fresh uid it drops to, when it starts as root
    env: dict[str, str] | None = None
    mnist: str | None = None  # what keras' mnist.load_data() serves (those splits); None: none


@dataclass(frozen=True, kw_only=True)
class ProgressEvent(Message):
    TAG: ClassVar[str] = "event"
    KIND: ClassVar[str] = "progress"
    message: str


@dataclass(frozen=True, kw_only=True)
class Failed(Message):
    """The submission's fault (or, said plainly, ours on it): the message is for the student."""

    TAG: ClassVar[str] = "event"
    KIND: ClassVar[str] = "failed"
    message: str


@dataclass(frozen=True, kw_only=True)
class Exported(Message):
    """The phase's files are written (the launcher copies them out of its reach)."""

    TAG: ClassVar[str] = "event"
    KIND: ClassVar[str] = "exported"
    phase: str
    peak_rss_mb: float = 0.0  # the benchmarks' trace only: nothing it says is used for a grade


EVENTS: tuple[type[Message], ...] = (ProgressEvent, Failed, Exported)


@dataclass(frozen=True, kw_only=True)
class Fork(Message):
    """To the fork server, with the child's protocol and output pipes: fork job `job`."""

    KIND: ClassVar[str] = "fork"
    job: int
    request: str  # the request file, as the server sees it


@dataclass(frozen=True, kw_only=True)
class Ready(Message):
    KIND: ClassVar[str] = "ready"
    pid: int


@dataclass(frozen=True, kw_only=True)
class Forked(Message):
    KIND: ClassVar[str] = "forked"
    job: int
    pid: int


@dataclass(frozen=True, kw_only=True)
class Exited(Message):
    KIND: ClassVar[str] = "exited"
    pid: int
    code: int


SERVER: tuple[type[Message], ...] = (Ready, Forked, Exited)  # what the fork server says

# ---------------------------------------------------------------------------- end of the protocol


LIMITS = {"memory": resource.RLIMIT_AS, "processes": resource.RLIMIT_NPROC,
          "file_size": resource.RLIMIT_FSIZE, "cpu_seconds": resource.RLIMIT_CPU,
          "open_files": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}


class Refusal(Exception):
    """The submission is at fault; the message is for the student."""


class Channel:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def send(self, message: Message) -> None:
        self.stream.write(json.dumps(message.to_json()) + "\n")
        self.stream.flush()

    def progress(self, message: str) -> None:
        self.send(ProgressEvent(message=message))


# ---------------------------------------------------------------------------- confinement


def confine(limits: Limits, uid: int | None) -> None:
    """Lower every limit (no privilege needed), then give up root for good when we have it."""
    for name, value in asdict(limits).items():
        if value is not None:
            resource.setrlimit(LIMITS[name], (value, value))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # clears every capability bwrap left us (CAP_SETUID...)


def take_stdout() -> Channel:
    """Keep the real stdout for the protocol; point fd 1 (and sys.stdout) at stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return Channel(protocol)


# ---------------------------------------------------------------------------- the submission

HANDOUT_MODEL = "model_keras"  # the handout's name for the student's Keras model
# Declared bits: our names first, then the handout's; W4A4 when neither is there.
BITS = {"weight_bits": ("WEIGHT_BITS", "weight_precision"),
        "activation_bits": ("ACTIVATION_BITS", "activation_bit")}
DEFAULT_BITS = 4
NOTEBOOK_BYTES = 32 << 20  # outputs (plots) included; a larger notebook is refused unread
SOURCE_CHARS = 8 << 20  # a notebook's code handed over for the class's similarity report
SHOWN_CHARS = 200  # of a line not run, in the record
STOPPED_CHARS = 2000  # of the error that stopped a run
NOT_RUN_SHOWN = 50  # lines not run, listed in the record
# IPython, not Python: a line magic or a shell line, alone or assigned (`files = !ls`).
MAGIC_LINE = re.compile(r"\s*(?:[\w.]+(?:\s*,\s*[\w.]+)*\s*=\s*)?[%!]")
PYTHON_CELL_MAGICS = ("%%time", "%%capture")  # they wrap Python: the body runs, not the magic
# Routes, as the trusted side's results.Route spells them (the sandbox imports nothing of ours).
WEIGHTS_FILE, TRAIN, OWN_TRAINING, DEFAULT_RECIPE = \
    "weights file", "train()", "own training", "default recipe"


@dataclass
class Loaded:
    """A submission run to its end, or to the statement that stopped it: its names; the files
    its frames come from (the traceback in the student's words); for a notebook, its cells."""

    module: ModuleType
    path: Path
    files: dict[str, str]  # a frame's file name -> the student's name for it
    cells: int = 0  # a notebook's code cells (0: a module)
    ran: int = 0  # of them, run to their end
    stopped: str | None = None  # what stopped the run, in the student's words
    not_run: list[str] = field(default_factory=list)  # IPython's lines (magics, shell)
    source: str | None = None  # a notebook's code, for the similarity report

    def handout_shaped(self) -> bool:
        """The handout's model_keras, and no build_model() (which would be the model)."""
        names = vars(self.module)
        return not callable(names.get("build_model")) and HANDOUT_MODEL in names

    def traceback(self, error: BaseException) -> str:
        """The exception with only the frames in the student's code: no harness noise."""
        if isinstance(error, SyntaxError) and error.filename in self.files:
            return (f"a syntax error in {self.files[error.filename]}, line {error.lineno}: "
                    f"{error.msg}")
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if f.filename in self.files]
        where = "".join(f"\n  {self.files[f.filename]}, line {f.lineno}, in {f.name}: {f.line}"
                        for f in frames)
        return f"{type(error).__name__}: {error}{where}"

    def run_record(self, route: str) -> dict[str, Any] | None:
        """meta.json's "run": how a notebook or a module in the handout's shape ran."""
        if not self.cells and not self.handout_shaped():
            return None  # a build_model() module: nothing to say
        return {"model": HANDOUT_MODEL if self.handout_shaped() else "build_model()",
                "cells": self.cells, "ran": self.ran,
                "stopped": None if self.stopped is None else self.stopped[:STOPPED_CHARS],
                "not_run": self.not_run[:NOT_RUN_SHOWN], "load_data": MNIST.served,
                "fitted": route == OWN_TRAINING}


def import_submission(path: Path) -> Loaded:
    """Import the student's module by path, under a name that cannot clash with anything. An
    import that raises fails, unless the module is in the handout's shape and its model_keras
    exists by then: it is graded as a notebook would be, the run stopped there."""
    name = f"akida_submission_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise Refusal(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loaded = Loaded(module, path, {str(path): path.name})
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise Refusal(f"{path.name} has a syntax error on line {error.lineno}: {error.msg}") \
            from None
    except BaseException as error:  # SystemExit included: a student's exit() is their failure
        loaded.stopped = f"importing {path.name} raised {loaded.traceback(error)}"
        if not loaded.handout_shaped():
            raise Refusal(loaded.stopped) from None
    return loaded


# ---------------------------------------------------------------------------- a notebook


def read_notebook(path: Path) -> list[str]:
    """The code cells' sources, read with nbformat here, where a hostile file belongs."""
    import nbformat

    size = path.stat().st_size
    if size > NOTEBOOK_BYTES:
        raise Refusal(f"{path.name} is {size / (1 << 20):.0f} MB, more than the "
                      f"{NOTEBOOK_BYTES >> 20} MB a notebook may have: clear its outputs "
                      "(Edit > Clear All Outputs), save it and hand it in again")
    try:
        notebook = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
        return [cell.get("source") if isinstance(cell.get("source"), str) else ""
                for cell in notebook.cells if cell.get("cell_type") == "code"]
    except Exception as error:  # not JSON, not a notebook, nested too deep...
        why = "its JSON is nested too deeply" if isinstance(error, RecursionError) else \
            f"{type(error).__name__}: {str(error)[:300]}"
        raise Refusal(f"{path.name} is not a notebook Jupyter can open ({why}); save it from "
                      "Jupyter and hand it in again") from None


def python_of(cell: str) -> tuple[str, list[str]]:
    """A code cell as Python, and its IPython lines, which are not run: a cell magic (the body
    of %%time and %%capture runs), line magics and shell lines (`%pip ...`, `!ls`,
    `x = !ls`), each left as `pass`. A cell that is Python already runs as it is."""
    lines = cell.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        if first.split()[0] not in PYTHON_CELL_MAGICS:
            return "", [first]
        body, dropped = python_of("\n".join(lines[1:]))
        return body, [first, *dropped]
    try:
        compile(cell, "<cell>", "exec", dont_inherit=True)
        return cell, []
    except Exception:  # a syntax error (magics?), null bytes, nested too deep
        pass
    kept, dropped = [], []
    for line in lines:
        if MAGIC_LINE.match(line):
            dropped.append(line.strip())
            line = line[: len(line) - len(line.lstrip())] + "pass"
        kept.append(line)
    return "\n".join(kept), dropped


def run_notebook(path: Path, cells: list[tuple[str, list[str]]], channel: Channel) -> Loaded:
    """Its code cells (python_of each) in order, in one namespace (`__main__`, as Jupyter's),
    until one raises."""
    loaded = Loaded(ModuleType("__main__"), path, {}, cells=len(cells),
                    source="\n\n".join(code for code, _ in cells)[:SOURCE_CHARS])
    loaded.not_run = [f"code cell {number}: {line[:SHOWN_CHARS]}"
                      for number, (_, dropped) in enumerate(cells, 1) for line in dropped]
    for number, (code, _) in enumerate(cells, 1):
        filename = f"<{path.name}, code cell {number}>"
        loaded.files[filename] = f"code cell {number}"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        channel.progress(f"running code cell {number} of {len(cells)}")
        try:
            exec(compile(code, filename, "exec", dont_inherit=True), vars(loaded.module))
        except BaseException as error:  # SystemExit and KeyboardInterrupt stop it too
            loaded.stopped = f"code cell {number} raised {loaded.traceback(error)}"
            break
        loaded.ran = number
    return loaded


def run_submission(request: Request, channel: Channel) -> Loaded:
    """The submission run: a notebook read first (a file that is not one fails before any
    import), then its cells; a module imported."""
    path = Path(request.module)
    if path.suffix == ".ipynb":
        cells = [python_of(cell) for cell in read_notebook(path)]
        prepare(request)
        return run_notebook(path, cells, channel)
    prepare(request)
    return import_submission(path)


def prepare(request: Request) -> None:
    """A submission whose own code may train (a notebook, the handout's shape: it is given
    MNIST) runs seeded, as build_model() is called, with keras' MNIST served. A build_model()
    module is imported as it was: no TensorFlow before its own imports."""
    if request.mnist is not None:
        import tf_keras as keras

        keras.utils.set_random_seed(request.seed)  # its model's weights are drawn as it runs
        MNIST.install(request.mnist)


class Mnist:
    """keras.datasets.mnist.load_data() in the sandbox (tf_keras's, so tensorflow.keras's too):
    offline, the training split and, as its "test", the held-out validation split; never the
    grader's test set, of which the sandbox has no copy."""

    def __init__(self) -> None:
        self.data = ""
        self.served = False

    def install(self, data: str) -> None:
        """Before any student code runs: every binding of keras' load_data becomes ours."""
        import tf_keras.datasets.mnist  # noqa: F401  (its public module and its source)

        self.data = data
        original = sys.modules["tf_keras.src.datasets.mnist"].load_data
        for module in list(sys.modules.values()):
            names = getattr(module, "__dict__", None)  # no attribute lookup: lazy modules load
            if isinstance(names, dict) and names.get("load_data") is original:
                names["load_data"] = self.load_data

    def load_data(self, path: str = "mnist.npz") -> Any:
        import numpy as np

        with np.load(self.data, allow_pickle=False) as split:
            found = (split["x"], split["y"]), (split["x_val"], split["y_val"])
        self.served = True
        return found


MNIST = Mnist()


# ---------------------------------------------------------------------------- the model


def plain(value: Any) -> Any:
    """A declared constant as JSON: numbers, strings, booleans and None as they are, a numpy
    integer as an int, anything else as its repr (which the rules then refuse)."""
    if isinstance(value, bool | str | float | int) or value is None:
        return value if type(value) in (bool, str, float, int) or value is None else repr(value)
    if hasattr(value, "__index__") and type(value).__name__ != "bool_":
        return int(value.__index__())
    return repr(value)[:200]


def declared_bits(module: ModuleType) -> dict[str, Any]:
    names = vars(module)
    return {key: plain(next((names[name] for name in spelled if name in names), DEFAULT_BITS))
            for key, spelled in BITS.items()}


def model_and_route(request: Request, loaded: Loaded) -> tuple[Any, str]:
    """build_model()'s model (the weights file loaded), or the handout's model_keras as the code
    left it; and how it is trained: the contract's order, a weights file beside it first."""
    import tf_keras as keras

    if loaded.handout_shaped():
        model = vars(loaded.module)[HANDOUT_MODEL]
        if not isinstance(model, keras.Model):
            raise Refusal(not_a_model(model, f"{HANDOUT_MODEL} is", loaded))
    else:
        keras.utils.set_random_seed(request.seed)  # build_model() draws the initial weights
        model = build_model(loaded)
    if request.weights_file:
        load_weights(model, Path(request.weights_file), f"{loaded.path.stem}.weights.h5",
                     HANDOUT_MODEL if loaded.handout_shaped() else "the model build_model() "
                                                                   "returns")
        return model, WEIGHTS_FILE
    if loaded.handout_shaped():
        return model, OWN_TRAINING if fitted(model) else DEFAULT_RECIPE
    return model, TRAIN if callable(getattr(loaded.module, "train", None)) else DEFAULT_RECIPE


def build_model(loaded: Loaded) -> Any:
    import tf_keras as keras

    build = vars(loaded.module).get("build_model")
    if not callable(build):
        what = f"{loaded.path.name} has no build_model() function and no {HANDOUT_MODEL} (the " \
               "handout's model): define one of them"
        if loaded.stopped:
            what = f"{loaded.stopped}\nthe later code was not run, and by then {what}"
        raise Refusal(what)
    try:
        model = build()
    except BaseException as error:
        raise Refusal(f"build_model() raised {loaded.traceback(error)}") from None
    if not isinstance(model, keras.Model):
        raise Refusal(not_a_model(model, "build_model() returned", loaded))
    return model


def not_a_model(model: object, source: str, loaded: Loaded) -> str:
    if any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__):
        found = (f"{source} a Keras 3 model (from `import keras`); the Akida tools only accept "
                 "tf_keras models: write `import tf_keras as keras` (or `from tensorflow import "
                 "keras`)")
    else:
        found = f"{source} {type(model).__name__}, not a tf_keras model" + (
            " (did you forget `return model`?)" if "returned" in source else "")
    return f"{loaded.stopped}\nthe later code was not run; {found}" if loaded.stopped else found


def fitted(model: Any) -> bool:
    """Trained by the submission's own code: its optimizer took a step (fit(), train_on_batch)."""
    try:
        return int(model.optimizer.iterations) > 0
    except Exception:  # never compiled
        return False


def load_weights(model: Any, weights: Path, shown_as: str, fitted_to: str) -> None:
    try:
        model.load_weights(str(weights))
    except Exception as error:
        if weights.name.endswith(".weights.h5") and _load_legacy_h5(model, weights):
            return
        raise Refusal(f"{shown_as} does not fit {fitted_to} ({error}); save it with "
                      "model.save_weights() from the same architecture, or delete it") from None


def _load_legacy_h5(model: Any, weights: Path) -> bool:
    """tf_keras reads `*.weights.h5` as the Keras 3 format; a renamed legacy .h5 is fine too."""
    legacy = Path(os.environ.get("TMPDIR", "/tmp")) / f"legacy-{uuid.uuid4().hex}.h5"
    legacy.write_bytes(weights.read_bytes())
    try:
        model.load_weights(str(legacy))
    except Exception:
        return False
    finally:
        legacy.unlink(missing_ok=True)
    return True


def peak_rss_mb() -> float:
    """For the benchmarks' trace only: nothing it says is used for a grade."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------- export


def export(directory: Path, model: Any, meta: dict[str, Any] | None = None) -> None:
    """Architecture as JSON, weights as a plain .npz (no pickle), declarations as JSON."""
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    try:
        architecture = model.to_json()
    except Exception as error:
        raise Refusal(
            "the model's architecture cannot be exported with model.to_json() "
            f"({type(error).__name__}: {error}); build it with keras.models.Sequential([...]) "
            "or the functional API, from tf_keras' own layers") from None
    (directory / "model.json").write_text(architecture)
    with (directory / "weights.npz").open("wb") as handle:
        np.savez(handle, *[np.asarray(w) for w in model.get_weights()])
    if meta is not None:
        (directory / "meta.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------------------- phases


def build(request: Request, channel: Channel, loaded: Loaded) -> tuple[Any, str]:
    """The model exported with its declarations; the model and its route."""
    if "train" in vars(loaded.module) and not callable(loaded.module.train):
        raise Refusal("train is defined but is not a function: define "
                      "train(model, x_train, y_train) or remove it")
    model, route = model_and_route(request, loaded)
    meta = {**declared_bits(loaded.module), "route": route}
    run_record = loaded.run_record(route)
    if run_record is not None:
        meta["run"] = run_record
    if loaded.source is not None:  # a notebook's code, for the class's similarity report
        (Path(request.out) / "build").mkdir(parents=True, exist_ok=True)
        (Path(request.out) / "build" / "source.py").write_text(loaded.source, errors="replace")
    export(Path(request.out) / "build", model, meta)
    channel.send(Exported(phase="build", peak_rss_mb=peak_rss_mb()))
    return model, route


def train(request: Request, channel: Channel, loaded: Loaded, model: Any) -> None:
    import numpy as np
    import tf_keras as keras

    if request.train_data is None:
        raise RuntimeError("no training split was given")  # ours: main() says so plainly
    with np.load(request.train_data, allow_pickle=False) as data:
        x, y = data["x"][..., np.newaxis].astype("float32"), data["y"]
    channel.progress("calling the submission's train()")
    try:
        returned = loaded.module.train(model, x, y)
    except BaseException as error:
        raise Refusal(f"train() raised {loaded.traceback(error)}") from None
    if isinstance(returned, keras.Model) and returned is not model:
        try:
            model.set_weights(returned.get_weights())
        except Exception as error:
            raise Refusal(f"train() returned a model whose weights do not fit the model "
                          f"build_model() returns ({error}); return the model it was given") \
                from None
    export(Path(request.out) / "train", model)
    channel.send(Exported(phase="train", peak_rss_mb=peak_rss_mb()))


def run(request: Request, channel: Channel) -> None:
    loaded = run_submission(request, channel)
    model, route = build(request, channel, loaded)
    if "train" in request.phases and route == TRAIN:
        train(request, channel, loaded, model)


def main(argv: list[str]) -> int:
    request = Request.from_json(load(argv[0], what="the request", limit=1 << 20))
    if request.env is not None:  # forked by zygote.py: its environment is not ours
        os.environ.clear()
        os.environ.update(request.env)
        tempfile.tempdir = None  # the server's, cached: not writable (autograph writes there)
    confine(request.limits, request.uid)
    os.chdir(request.cwd)  # only its new uid may enter its scratch
    channel = take_stdout()
    try:
        run(request, channel)
    except Refusal as error:
        channel.send(Failed(message=str(error)))
    except BaseException as error:  # our own code failed on this submission: say so plainly
        channel.send(Failed(message=f"the grading sandbox failed: {type(error).__name__}: "
                                    f"{error}"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
