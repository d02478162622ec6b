"""How this machine confines a submission's process, chosen once per session.

- bwrap: bubblewrap, read-only system and Python trees, the run's own input and scratch
  directories only, tmpfs /tmp, no network, private PID/IPC/UTS namespaces, dies with us. As
  root it then drops to a fresh unprivileged uid (so RLIMIT_NPROC counts only its processes and
  no root-owned file is its own); as a normal user it runs in a user namespace.
- uid: root without a working bubblewrap (a Docker container such as Gradescope's): a fresh
  unprivileged uid and resource limits, no namespaces. It can read world-readable files; the
  interpreter and this package must be among them.
- off: resource limits only (a student on a laptop checking their own file).

A submission never runs as root unless `off` is asked for by name: as root, when neither
bubblewrap nor a fresh uid works, choosing is a usage error that says why and how to fix it.

Whatever the mode, the child gets resource limits, an allow-listed environment and `python -I`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, TypedDict

ModeName = Literal["bwrap", "uid", "off"]
Setting = Literal["auto", "required", "off"]
SETTINGS: tuple[Setting, ...] = ("auto", "required", "off")

CODE_DIR = Path(__file__).resolve().parent  # student.py lives here
UID_BASE = 1 << 30  # fresh uids far above any real account
TMPFS_BYTES = 512 << 20  # the sandbox's /tmp: in memory, so bounded
SYSTEM_TREES = ("/usr", "/etc", "/opt")  # read-only; /etc for the loader cache and locales
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROBE_SECONDS = 60.0
Bind = tuple[str, Path, str]  # (--ro-bind | --bind, host path, path inside)


class PopenUser(TypedDict, total=False):
    """subprocess.Popen's arguments that start a child as another user."""

    user: int | None
    group: int | None
    extra_groups: list[int]


class SandboxUnavailable(Exception):
    """`--akida-sandbox=required` but this machine cannot confine a submission; says why."""


@dataclass(frozen=True)
class Policy:
    """A way to confine a submission's process: one subclass a mode (the table `MODES`), one
    instance a session. The launcher asks it, never compares modes."""

    mode: ClassVar[ModeName]
    why: str = ""  # why not a stronger mode (empty when bwrap)
    hidden: tuple[Path, ...] = ()  # never visible inside bwrap (test-set copies, cache, classes)
    python: str = sys.executable
    root: bool = field(default_factory=lambda: os.geteuid() == 0)

    @staticmethod
    def problem(hidden: tuple[Path, ...], python: str) -> str | None:
        """None when this mode works on this machine (its probe); else why not."""
        return None

    def describe(self) -> str:
        return self._text() + (f"; {self.why}" if self.why else "")

    def _text(self) -> str:
        raise NotImplementedError

    @property
    def forks(self) -> bool:
        """Whether jobs may be forks of one fork server (zygote.py): each its own fresh uid
        (root), or nothing to isolate (off). A normal user's namespace has one uid for all."""
        return self.root

    def run_uid(self) -> int | None:
        """The fresh uid one run gets (its processes and files its alone), or None."""
        return fresh_uid() if self.root else None

    def child_uid(self, uid: int | None, forked: bool) -> int | None:
        """The uid the child drops to itself (student.py), after its limits."""
        return uid

    def popen_user(self, uid: int | None) -> PopenUser:
        """subprocess.Popen's user arguments for a fresh child."""
        return {}

    def paths_inside(self, forked: bool) -> bool:
        """Whether the child sees its files at the sandbox's own paths (/sandbox/...)."""
        return False

    @property
    def limits_processes(self) -> bool:
        """Whether RLIMIT_NPROC means anything (root ignores it; a user's count is shared)."""
        return True

    @property
    def host_pids(self) -> bool:
        """Whether its children's pids are this host's (not a PID namespace's)."""
        return True

    def wrap(self, binds: list[Bind], env: dict[str, str], argv: list[str]) -> list[str]:
        """The command that runs `argv` confined (`binds`: what it sees besides the system)."""
        return argv

    def fork_server_command(self, jobs: Path, env: dict[str, str], fd: int) -> list[str]:
        """zygote.py with its socket on `fd`."""
        return [self.python, "-I", str(CODE_DIR / "zygote.py"), str(fd)]


@dataclass(frozen=True)
class Bubblewrap(Policy):
    """Namespaces, a read-only system, the run's own files only; as root, a fresh uid too."""

    mode: ClassVar[ModeName] = "bwrap"

    @staticmethod
    def problem(hidden: tuple[Path, ...], python: str) -> str | None:
        return _bwrap_problem(hidden, python)

    def _text(self) -> str:
        return "bubblewrap (namespaces, read-only system, own scratch only" + (
            ", fresh unprivileged uid)" if self.root else ", user namespace)")

    def paths_inside(self, forked: bool) -> bool:
        return not forked  # a fork of the fork server sees the host's paths

    @property
    def host_pids(self) -> bool:
        return False

    def wrap(self, binds: list[Bind], env: dict[str, str], argv: list[str]) -> list[str]:
        return bwrap_command(self, binds, "/", env, argv)  # student.py enters its scratch

    def fork_server_command(self, jobs: Path, env: dict[str, str], fd: int) -> list[str]:
        """In bubblewrap the server sees the jobs directory (where each job's own directories
        are its uid's alone) at its real path, and a /tmp no job may write."""
        code = Path("/sandbox/code")
        argv = [self.python, "-I", str(code / "zygote.py"), str(fd)]
        return bwrap_command(self, [("--ro-bind", CODE_DIR, str(code)),
                                    ("--bind", jobs, str(jobs))], "/", env, argv, tmp_mode="0755")


@dataclass(frozen=True)
class FreshUid(Policy):
    """Root without bubblewrap (Docker, Gradescope): a fresh unprivileged uid and limits."""

    mode: ClassVar[ModeName] = "uid"

    @staticmethod
    def problem(hidden: tuple[Path, ...], python: str) -> str | None:
        return _uid_problem(python) if os.geteuid() == 0 else \
            "not root, so no other uid to use"

    def _text(self) -> str:
        return "a fresh unprivileged uid with resource limits (no namespaces)"

    def child_uid(self, uid: int | None, forked: bool) -> int | None:
        return uid if forked else None  # a fresh process is started as it (popen_user)

    def popen_user(self, uid: int | None) -> PopenUser:
        return {"user": uid, "group": uid, "extra_groups": []}


@dataclass(frozen=True)
class Off(Policy):
    """Resource limits only (a student on a laptop checking their own file)."""

    mode: ClassVar[ModeName] = "off"

    def _text(self) -> str:
        return "off: resource limits only; submissions run as this user" + (
            " (root)" if self.root else "")

    @property
    def forks(self) -> bool:
        return True  # nothing is isolated anyway

    def run_uid(self) -> int | None:
        return None

    @property
    def limits_processes(self) -> bool:
        return False


MODES: dict[ModeName, type[Policy]] = {"bwrap": Bubblewrap, "uid": FreshUid, "off": Off}
STRONGEST_FIRST: tuple[type[Policy], ...] = (Bubblewrap, FreshUid)


def fresh_uid() -> int:
    """An unused uid (and gid) for one run: its processes and files are its alone."""
    return UID_BASE + secrets.randbelow(1 << 29)


def choose(setting: Setting, hidden: tuple[Path, ...] = (),
           python: str = sys.executable) -> Policy:
    """The strongest mode that works here (the table, strongest first). Never root's own uid
    unless asked (`off`); a normal user's `auto` falls back to `off`, `required` refuses to."""
    if setting == "off":
        return Off("turned off (--akida-sandbox=off)", hidden, python)
    problems: list[str] = []
    for mode in STRONGEST_FIRST:
        problem = mode.problem(hidden, python)
        if problem is None:
            return mode("; ".join(problems), hidden, python)
        problems.append(f"{_NAMED[mode.mode]} unavailable ({problem})")
    why = "; ".join(problems)
    if os.geteuid() != 0 and setting != "required":
        return Off(why, hidden, python)
    raise SandboxUnavailable(_unavailable(setting, problems))


_NAMED: dict[ModeName, str] = {"bwrap": "bubblewrap", "uid": "an unprivileged uid",
                               "off": "off"}


def _unavailable(setting: Setting, problems: list[str]) -> str:
    if os.geteuid() != 0:
        return (f"--akida-sandbox=required, but no sandbox works here: {'; '.join(problems)}. "
                "Install bubblewrap (apt-get install bubblewrap) or grade as root, or use "
                "--akida-sandbox=auto.")
    return (f"--akida-sandbox={setting}: as root, no sandbox works here, and submissions never "
            f"run as root. {'; '.join(problems)}. Fix one: install bubblewrap (apt-get install "
            "bubblewrap); or grade with a Python every user can run, e.g. a venv made from the "
            "system Python (/usr/bin/python3.11 -m venv; `make setup` makes .venv so); or, for "
            "your own code only, --akida-sandbox=off.")


# ---------------------------------------------------------------------------- bubblewrap


def bwrap_command(policy: Policy, binds: list[Bind], workdir: str,
                  env: dict[str, str], argv: list[str], tmp_mode: str = "1777") -> list[str]:
    """`binds`: (--ro-bind | --bind, host path, path inside) besides the system and Python."""
    command = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if policy.root:  # keep only what student.py needs to drop to its fresh uid
        command += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user", "--disable-userns"]
    command += _system_binds()
    command += ["--proc", "/proc", "--dev", "/dev", "--perms", tmp_mode, "--size",
                str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    made: set[str] = {"/", "/tmp", "/proc", "/dev"}
    for tree in python_trees(policy.python):
        command += _bind("--ro-bind", tree, str(tree), made)
    for kind, source, target in binds:
        command += _bind(kind, source, target, made)
    command += _masks(policy, made)
    command += ["--chdir", workdir, "--clearenv"]
    for key, value in sorted(env.items()):
        command += ["--setenv", key, value]
    return [*command, "--", *argv]


def _system_binds() -> list[str]:
    found: list[str] = []
    for tree in SYSTEM_TREES:
        if Path(tree).is_dir():
            found += ["--ro-bind", tree, tree]
    for link in MERGED_USR:
        path = Path(link)
        if path.is_symlink():
            found += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            found += ["--ro-bind", link, link]
    return found


def python_trees(python: str) -> list[Path]:
    """The interpreter's trees (a venv and the Python it was made from), outermost first."""
    trees = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(sys.exec_prefix).resolve(), Path(os.path.realpath(python)).parent.parent}
    kept = [t for t in trees if not any(o != t and t.is_relative_to(o) for o in trees)]
    return sorted(t for t in kept if not _under_system(t))


def _under_system(path: Path) -> bool:
    return any(path.is_relative_to(tree) for tree in SYSTEM_TREES)


def _bind(kind: str, source: Path, target: str, made: set[str]) -> list[str]:
    """A bind whose missing parent directories are created traversable (0755)."""
    args: list[str] = []
    for parent in reversed(Path(target).parents):
        if str(parent) not in made and not _under_system(parent):
            args += ["--perms", "0755", "--dir", str(parent)]
        made.add(str(parent))
    made.add(target)
    return [*args, kind, str(source), target]


def _masks(policy: Policy, made: set[str]) -> list[str]:
    """Cover what must stay unseen where it lies inside a tree that is bound (a data file in
    site-packages, say): an empty tmpfs over a directory, /dev/null over a file."""
    bound = [*map(Path, SYSTEM_TREES), *python_trees(policy.python)]
    args: list[str] = []
    for path in policy.hidden:
        if not path.exists() or not any(path.is_relative_to(tree) for tree in bound):
            continue
        args += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
        made.add(str(path))
    return args


def _bwrap_problem(hidden: tuple[Path, ...], python: str) -> str | None:
    """None when bubblewrap can start our Python in the sandbox here; else why not."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed: apt-get install bubblewrap"
    probe = Bubblewrap(hidden=hidden, python=python)
    argv = [probe.python, "-I", "-c", "import numpy, sys; sys.exit(0)"]
    command = bwrap_command(probe, [], "/tmp", {"PATH": "/usr/bin:/bin"}, argv)
    return _run_probe(command)


def _uid_problem(python: str) -> str | None:
    """None when a fresh uid can run our Python and read student.py; else why not (naming the
    directory closed to other users when there is one: pyenv or conda under a 0700 /root)."""
    student = CODE_DIR / "student.py"
    code = f"import numpy; open({str(student)!r}).close()"
    problem = _run_probe([python, "-I", "-c", code], user=fresh_uid())
    if problem is None:
        return None
    closed = closed_to_others([Path(python), Path(os.path.realpath(python)), student])
    return f"{problem}" + (f" ({closed})" if closed else "")


def closed_to_others(paths: list[Path]) -> str | None:
    """The first directory above `paths` that other users cannot enter, said plainly."""
    for path in paths:
        for directory in reversed(path.absolute().parents):
            with contextlib.suppress(OSError):
                mode = directory.stat().st_mode
                if not mode & stat.S_IXOTH:
                    return (f"{directory} is closed to other users (mode "
                            f"{stat.S_IMODE(mode):04o}), and {path} lies under it")
    return None


def _run_probe(command: list[str], user: int | None = None) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_SECONDS,
                              stdin=subprocess.DEVNULL, user=user, group=user,
                              extra_groups=[] if user is not None else None, cwd="/")
    except (OSError, subprocess.SubprocessError) as error:
        return f"{type(error).__name__}: {error}"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return last[:300]
