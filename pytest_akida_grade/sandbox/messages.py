"""The sandbox's messages, typed: the launcher's request to the child (launch.py -> student.py),
the child's events (student.py -> watch.py), the fork server's protocol (forks.py <-> zygote.py).

One frozen, keyword-only dataclass per message, with its JSON form. The sandboxed side imports
nothing from this package: student.py holds a copy of the block below (zygote.py uses that
copy), kept identical by tests/test_sandbox_messages.py. What the child sends is parsed, never
trusted: `from_json` and `parse` refuse an unknown kind, an unknown or missing field, or a value of
the wrong type with a MessageError naming it.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, TypeVar

# ---------------------------------------------------------------------------- the protocol
# (in messages.py and in student.py, identical to "end of the protocol": the child imports
# nothing from the package; tests/test_sandbox_messages.py keeps the two the same)


class MessageError(ValueError):
    """Not one of our messages: what is wrong with it, for the log (never shown as ours)."""


@dataclass(frozen=True, kw_only=True)
class Record:
    """A typed JSON object: every field known, present unless defaulted, of its type."""


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
            raise MessageError(f"not a {cls.KIND!r} message: {_shown(data)}")
        return _record(cls, {key: value for key, value in data.items() if key != cls.TAG})


def parse(data: object, kinds: tuple[type[Message], ...]) -> Message:
    """The message among `kinds` (one family: one TAG) that `data` says it is."""
    tag = kinds[0].TAG
    if not isinstance(data, dict):
        raise MessageError(f"not a JSON object: {_shown(data)}")
    kind = data.get(tag)
    for message in kinds:
        if kind == message.KIND:
            return message.from_json(data)
    raise MessageError(f"unknown {tag} {_shown(kind)}: expected one of "
                       + ", ".join(message.KIND for message in kinds))


def _record(kind: type[R], data: dict[object, object]) -> R:
    hints = typing.get_type_hints(kind)
    unknown = sorted(map(str, set(data) - {field.name for field in fields(kind)}))
    if unknown:
        raise MessageError(f"{kind.__name__}: unknown fields {unknown}")
    values = {str(key): _value(f"{kind.__name__}.{key}", hints[str(key)], value)
              for key, value in data.items()}
    try:
        return kind(**values)
    except TypeError as error:  # a field missing
        raise MessageError(f"{kind.__name__}: {error}") from None


def _value(where: str, hint: object, value: object) -> object:
    """`value` as `hint` (str, int, float, a Record, X | None, tuple[X, ...], dict[X, Y])."""
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if type(None) in args:
        return None if value is None else _value(where, args[0], value)
    if origin is tuple and isinstance(value, list):
        return tuple(_value(f"{where}[{i}]", args[0], item) for i, item in enumerate(value))
    if origin is dict and isinstance(value, dict):
        return {_value(where, args[0], key): _value(f"{where}[{key!r}]", args[1], item)
                for key, item in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record) and isinstance(value, dict):
        return _record(hint, value)
    if hint is float and type(value) is int:
        return float(value)
    if origin is None and type(value) is hint:
        return value
    return _refuse(where, hint, value)


def _refuse(where: str, hint: object, value: object) -> typing.NoReturn:
    expected = hint.__name__ if isinstance(hint, type) else str(hint)
    raise MessageError(f"{where}: expected {expected}, got {_shown(value)}")


def _shown(value: object) -> str:
    return f"{type(value).__name__} {repr(value)[:60]}"


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
