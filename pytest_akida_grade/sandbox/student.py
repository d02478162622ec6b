"""Runs INSIDE the sandbox: `python -I student.py REQUEST.json`. The only code that imports a
submission. It imports nothing from this package (only the standard library, numpy and tf_keras)
and hands over files, which the trusted side validates; nothing it says is believed.

1. Confine itself before any student code runs: lower its resource limits, then (when started
   as root inside bubblewrap) drop to the unprivileged uid the launcher chose.
2. build: import the module, seed, call build_model(), load the weights file when there is one,
   export out/build/{model.json, weights.npz, meta.json} and say "exported build".
3. train (only when asked and the submission has its own train()): call train() on the training
   split it was given, export out/train/weights.npz and say "exported train".

The protocol is JSON lines on the original stdout (the events of watch.py, whose protocol block
this file holds a copy of, with codec.py's block); the student's prints go to stderr.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import math
import os
import resource
import sys
import traceback
import types
import typing
import uuid
from dataclasses import MISSING, asdict, dataclass, fields
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
    train_data: str | None  # the training split (x, y) when it may train
    out: str
    cwd: str
    limits: Limits
    uid: int | None  # the fresh uid it drops to, when it starts as root
    env: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Progress(Message):
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


EVENTS: tuple[type[Message], ...] = (Progress, Failed, Exported)


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
        self.send(Progress(message=message))


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


def import_submission(path: Path) -> ModuleType:
    """Import the student's module by path, under a name that cannot clash with anything."""
    name = f"akida_submission_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise Refusal(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise Refusal(f"{path.name} has a syntax error on line {error.lineno}: {error.msg}") \
            from None
    except BaseException as error:  # SystemExit included: a student's exit() is their failure
        raise Refusal(f"importing {path.name} raised {student_traceback(error, path)}") from None
    return module


def student_traceback(error: BaseException, path: Path) -> str:
    """The exception with only the frames in the student's file: no harness noise."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == str(path)]
    where = "".join(f"\n  {path.name}, line {f.lineno}, in {f.name}: {f.line}" for f in frames)
    return f"{type(error).__name__}: {error}{where}"


def plain(value: Any) -> Any:
    """A declared constant as JSON: numbers, strings, booleans and None as they are, a numpy
    integer as an int, anything else as its repr (which the rules then refuse)."""
    if isinstance(value, bool | str | float | int) or value is None:
        return value if type(value) in (bool, str, float, int) or value is None else repr(value)
    if hasattr(value, "__index__") and type(value).__name__ != "bool_":
        return int(value.__index__())
    return repr(value)[:200]


def build_model(module: ModuleType, path: Path) -> Any:
    import tf_keras as keras

    build = getattr(module, "build_model", None)
    if not callable(build):
        raise Refusal(f"{path.name} has no build_model() function")
    try:
        model = build()
    except BaseException as error:
        raise Refusal(f"build_model() raised {student_traceback(error, path)}") from None
    if not isinstance(model, keras.Model):
        raise Refusal(not_a_model(model, "build_model()"))
    return model


def not_a_model(model: object, source: str) -> str:
    if any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__):
        return (f"{source} returned a Keras 3 model (from `import keras` or `tensorflow.keras`); "
                "the Akida tools only accept tf_keras models: write `import tf_keras as keras`")
    return (f"{source} returned {type(model).__name__}, not a tf_keras model "
            "(did you forget `return model`?)")


def load_weights(model: Any, weights: Path, shown_as: str) -> None:
    try:
        model.load_weights(str(weights))
    except Exception as error:
        if weights.name.endswith(".weights.h5") and _load_legacy_h5(model, weights):
            return
        raise Refusal(f"{shown_as} does not fit the model build_model() returns ({error}); save "
                      "it with model.save_weights() from the same architecture, or delete it") \
            from None


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


def route(request: Request, module: ModuleType) -> str:
    """The contract's order: a weights file beside the module, its train(), the default."""
    if request.weights_file:
        return "weights file"
    return "train()" if callable(getattr(module, "train", None)) else "default recipe"


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


def build(request: Request, channel: Channel, module: ModuleType) -> Any:
    import tf_keras as keras

    path = Path(request.module)
    if "train" in vars(module) and not callable(module.train):
        raise Refusal("train is defined but is not a function: define "
                      "train(model, x_train, y_train) or remove it")
    keras.utils.set_random_seed(request.seed)  # build_model() draws the initial weights
    model = build_model(module, path)
    if request.weights_file:
        load_weights(model, Path(request.weights_file), f"{path.stem}.weights.h5")
    meta = {"weight_bits": plain(getattr(module, "WEIGHT_BITS", 4)),
            "activation_bits": plain(getattr(module, "ACTIVATION_BITS", 4)),
            "route": route(request, module)}
    export(Path(request.out) / "build", model, meta)
    channel.send(Exported(phase="build", peak_rss_mb=peak_rss_mb()))
    return model


def train(request: Request, channel: Channel, module: ModuleType, model: Any) -> None:
    import numpy as np
    import tf_keras as keras

    path = Path(request.module)
    if request.train_data is None:
        raise RuntimeError("no training split was given")  # ours: main() says so plainly
    with np.load(request.train_data, allow_pickle=False) as data:
        x, y = data["x"][..., np.newaxis].astype("float32"), data["y"]
    channel.progress("calling the submission's train()")
    try:
        returned = module.train(model, x, y)
    except BaseException as error:
        raise Refusal(f"train() raised {student_traceback(error, path)}") from None
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
    module = import_submission(Path(request.module))
    model = build(request, channel, module)
    if "train" in request.phases and route(request, module) == "train()":
        train(request, channel, module, model)


def main(argv: list[str]) -> int:
    request = Request.from_json(load(argv[0], what="the request", limit=1 << 20))
    if request.env is not None:  # forked by zygote.py: its environment is not ours
        os.environ.clear()
        os.environ.update(request.env)
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
