"""The one codec for typed JSON: what crosses a process (sandbox messages, evaluator jobs and
replies), what is stored (cache entries, stage results, board recordings), and the one hardened
reader every reader of a file or a line it did not write itself goes through.

`loads` refuses what is too large, nested too deeply, too many values, or numbers that are not
finite or beyond 64 bits, with an error naming what was read; a `RecursionError` never escapes it.
A `Record` is a frozen dataclass with its JSON form: `from_json` refuses an unknown or missing
field, or a value of the wrong type, naming the field (`Built.v1.bits[0]: expected int, got str
'4'`). A `Message` is a record tagged with its kind, `{TAG: KIND, field: value, ...}`; `parse`
picks the kind of a family. `arrays` is the one reader of a weights file (`.npz`).

The sandboxed side imports nothing from this package: sandbox/student.py holds a copy of the
block below, byte for byte (tests/test_sandbox_messages.py keeps the two the same). No imports
from this package: every module may use it.
"""

from __future__ import annotations

import enum
import io
import json
import math
import types
import typing
import zipfile
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

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


# ---------------------------------------------------------------------------- arrays


def arrays(source: Path | bytes, *, what: str, limit: int,
           names: tuple[str, ...] | None = None) -> list[npt.NDArray[np.generic]]:
    """The arrays of an `.npz`, read as data: uncompressed, unencrypted members of at most `limit`
    bytes in all, no pickle; `names` in that order (default: arr_0, arr_1, ... as `np.savez` of a
    list writes them). RecordError saying what is wrong, whatever numpy or zipfile raise on a
    hostile file."""
    try:
        with zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source)) as zipped:
            members = zipped.infolist()
            wanted = names or tuple(f"arr_{index}" for index in range(len(members)))
            if sorted(member.filename for member in members) != sorted(f"{n}.npy" for n in wanted):
                raise RecordError(f"{what} is not " + (", ".join(wanted) if names else
                                                       "a list of arrays (np.savez of a list)"))
            if any(member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1
                   for member in members) or sum(m.file_size for m in members) > limit:
                raise RecordError(f"{what} is not a plain .npz of arrays within {_size(limit)}")
            return [_array(zipped, f"{name}.npy") for name in wanted]
    except RecordError:
        raise
    except Exception as error:  # a hostile file fails in any of zipfile's and numpy's ways
        raise RecordError(f"{what} cannot be read ({type(error).__name__}: "
                          f"{str(error)[:200]})") from None


def _array(zipped: zipfile.ZipFile, name: str) -> npt.NDArray[np.generic]:
    with zipped.open(name) as member:
        found = np.load(member, allow_pickle=False)
    if not isinstance(found, np.ndarray):  # a member that is itself an archive
        raise RecordError(f"{name} is not an array")
    return found
