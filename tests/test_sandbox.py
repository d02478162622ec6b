"""The sandbox against hostile submissions, one attack a test, straight through launch.run.

Every attack here happens at import time, before TensorFlow is needed, so each run costs a
fraction of a second (or the few seconds of its deadline). Attacks are bounded: a burst of at
most a few dozen processes, a gigabyte or two of memory, a few MB of output.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_akida_grade import data
from pytest_akida_grade.sandbox import launch, policy, watch
from pytest_akida_grade.sandbox.watch import ChildJob


def _chosen() -> policy.Policy:
    try:
        return policy.choose("auto", data.test_set_copies(None, None))
    except policy.SandboxUnavailable as error:  # root with neither: the tests that need one skip
        return policy.Off(str(error))


BWRAP = _chosen()
needs_bwrap = pytest.mark.skipif(BWRAP.mode != "bwrap", reason=f"no bubblewrap: {BWRAP.why}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid sandbox needs root")
# The uid mode's own condition: a Python a fresh uid can run. This one when it can (a venv made
# from the system Python, as `make setup` makes it), else /usr/bin/python3 for the attacks made
# at import time (no numpy there: nothing is exported).
UID_PROBLEM = policy._uid_problem(sys.executable) if os.geteuid() == 0 else "not root"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin")
UID = policy.FreshUid(python=sys.executable if UID_PROBLEM is None
                      else SYSTEM_PYTHON or "python3")
needs_uid = pytest.mark.skipif(os.geteuid() != 0 or SYSTEM_PYTHON is None,
                               reason="the uid sandbox needs root and /usr/bin/python3")
needs_uid_python = pytest.mark.skipif(
    UID_PROBLEM is not None, reason=f"a fresh uid cannot run this Python: {UID_PROBLEM}")
MODES = [pytest.param(BWRAP, id="bwrap", marks=needs_bwrap),
         pytest.param(UID, id="uid", marks=needs_uid),
         pytest.param("bwrap-forked", id="bwrap-forked", marks=needs_bwrap),
         pytest.param("uid-forked", id="uid-forked", marks=needs_uid_python)]
# Modes whose child can build and export a model (tf_keras there).
EXPORTING = [pytest.param(BWRAP, id="bwrap", marks=needs_bwrap),
             pytest.param(UID, id="uid", marks=needs_uid_python),
             pytest.param("bwrap-forked", id="bwrap-forked", marks=needs_bwrap),
             pytest.param("uid-forked", id="uid-forked", marks=needs_uid_python)]


def _fork_server(sandbox: policy.Policy) -> Iterator[tuple[launch.ForkServer, Path]]:
    """One fork server (zygote.py, TensorFlow imported once) for the module."""
    jobs = Path(tempfile.mkdtemp(prefix="akida-test-jobs-"))
    os.chmod(jobs, 0o711)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    server = launch.ForkServer(lambda fd: sandbox.fork_server_command(jobs, env, fd), env,
                               jobs / "zygote.log", host_pids=sandbox.host_pids)
    with server._lock:  # started now: the tests' clocks do not count its TensorFlow import
        server._ensure_started()
    yield server, jobs
    server.close()
    shutil.rmtree(jobs, ignore_errors=True)


@pytest.fixture(scope="module")
def bwrap_fork_server() -> Iterator[tuple[launch.ForkServer, Path]]:
    yield from _fork_server(BWRAP)


@pytest.fixture(scope="module")
def uid_fork_server() -> Iterator[tuple[launch.ForkServer, Path]]:
    yield from _fork_server(UID)


def run(tmp_path: Path, source: str, sandbox: policy.Policy | str = BWRAP, *,
        seconds: float = 20, memory: int = 1 << 30, processes: int = 64,
        request: pytest.FixtureRequest | None = None) -> tuple[launch.RunEnd, list[str]]:
    """Run `source` as submission mallory.py; the run's end and its progress messages.
    `sandbox="bwrap-forked"` or `"uid-forked"`: a fork of the module's fork server in that mode
    (the `request` gives it)."""
    forks = None
    if isinstance(sandbox, str):
        assert request is not None
        forks, jobs = request.getfixturevalue(f"{sandbox.split('-')[0]}_fork_server")
        sandbox = BWRAP if sandbox == "bwrap-forked" else UID
    assert isinstance(sandbox, policy.Policy)
    module = tmp_path / "students" / "mallory.py"
    module.parent.mkdir(exist_ok=True)
    module.write_text(source)
    # The grader's scratch is in the system's temp directory, where a fresh uid can reach it;
    # pytest's tmp_path is private to root.
    scratch = Path(tempfile.mkdtemp(prefix="akida-test-", dir=jobs if forks else None))
    os.chmod(scratch, 0o711)
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    job = ChildJob(name="mallory", module=module, weights=None, phases=("build",), seed=0,
              train_data=None, seconds=seconds, timeout_source="the test's limit",
              build_seconds=seconds, build_timeout_source="the test's limit",
              memory_bytes=memory, processes=processes)
    messages: list[str] = []
    try:
        end = launch.run(sandbox, job, scratch, staging, messages.append,
                         lambda phase, path: None, forks=forks)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return end, messages


@pytest.fixture
def marker() -> Iterator[str]:
    """A word no other process on the machine has in its command line."""
    word = f"akida{os.getpid()}x{time.monotonic_ns()}"
    yield word
    subprocess.run(["pkill", "-KILL", "-f", word], check=False)


def processes_with(word: str) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if word in line and "ps -eo" not in line]


# ---------------------------------------------------------------------------- time and output


@pytest.mark.parametrize("sandbox", MODES)
def test_it_stops_a_child_that_floods_its_output_and_keeps_only_a_short_tail(
        tmp_path: Path, sandbox: policy.Policy | str,
        request: pytest.FixtureRequest) -> None:
    if isinstance(sandbox, str):  # its fork server started before the clock
        request.getfixturevalue(f"{sandbox.split('-')[0]}_fork_server")
    started = time.monotonic()
    end, _ = run(tmp_path, "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n", sandbox,
                 request=request)
    assert end.failure is not None and "wrote more than 64 MB of output" in end.failure
    assert len(end.failure) < 2500 and not end.repeatable
    assert time.monotonic() - started < 15


def test_it_stops_a_child_that_floods_every_descriptor_it_inherited(tmp_path: Path) -> None:
    source = ("import os\nwhile True:\n    for fd in range(3, 64):\n        try:\n"
              "            os.write(fd, b'{\"event\": \"progress\", \"message\": \"'\n"
              "                     + b'y' * 60000)\n"
              "        except OSError:\n            pass\n")
    started = time.monotonic()
    end, messages = run(tmp_path, source)
    assert end.failure is not None and "flooded the grader's channel" in end.failure
    assert messages == [] and time.monotonic() - started < 15


def test_it_stops_a_child_that_closes_its_output_and_spins(tmp_path: Path) -> None:
    started = time.monotonic()
    end, _ = run(tmp_path, "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
                 seconds=4)
    assert end.failure is not None
    assert end.failure.startswith("did not finish within 4 s (the limit set by the test's limit)")
    assert time.monotonic() - started < 10


def test_it_believes_no_forged_event_and_cleans_forged_text(tmp_path: Path) -> None:
    forged = (b'{"event": "result", "result": {"akida_accuracy": 1}}\n'
              b'{"event": "progress", "message": "\\u001b[2Jowned"}\n'
              b'{"event": "exported", "phase": "build"}\n')
    source = (f"import os\nfor fd in range(1, 64):\n    try:\n        os.write(fd, {forged!r})\n"
              "    except OSError:\n        pass\n")
    end, messages = run(tmp_path, source)
    assert end.exported == frozenset()  # "exported" without files hands over nothing
    assert end.failure == ("the sandbox exported no build files (out/build is missing or not a "
                           "directory)")
    assert "?[2Jowned" in messages and not any("\x1b" in m for m in messages)


# ---------------------------------------------------------------------------- processes, memory


@pytest.mark.parametrize("sandbox", MODES)
def test_no_process_it_starts_outlives_the_run_even_in_its_own_session(
        tmp_path: Path, sandbox: policy.Policy | str, marker: str,
        request: pytest.FixtureRequest) -> None:
    source = ("import subprocess\n"
              f"for i in range(12):\n    subprocess.Popen(['sleep', '9{marker[-6:]}'], "
              "start_new_session=i % 2 == 0)\n"
              f"subprocess.Popen(['sh', '-c', 'sleep 600; echo {marker}'], "
              "start_new_session=True)\n"
              "import os\nos._exit(0)\n")
    end, _ = run(tmp_path, source, sandbox, request=request)
    assert end.failure is not None and "exit code 0 before it reported" in end.failure
    time.sleep(0.5)
    assert processes_with(marker) == []
    assert processes_with(f"sleep 9{marker[-6:]}") == []


@pytest.mark.parametrize("sandbox", MODES)
def test_a_burst_of_processes_stops_at_the_process_limit(tmp_path: Path,
                                                         sandbox: policy.Policy | str,
        request: pytest.FixtureRequest) -> None:
    source = ("import os, time\nn = 0\ntry:\n    while n < 300:\n        if os.fork() == 0:\n"
              "            time.sleep(30)\n            os._exit(0)\n        n += 1\n"
              "except OSError as error:\n    raise SystemExit(f'stopped after {n}: {error}')\n")
    end, _ = run(tmp_path, source, sandbox, processes=32, request=request)
    assert end.failure is not None and "stopped after" in end.failure, end.failure
    forked = int(end.failure.split("stopped after ")[1].split(":")[0])
    assert forked < 32 and "Resource temporarily unavailable" in end.failure


@pytest.mark.parametrize("sandbox", MODES)
def test_a_memory_hog_is_stopped_by_the_limit_with_a_message_naming_it(
        tmp_path: Path, sandbox: policy.Policy | str,
        request: pytest.FixtureRequest) -> None:
    end, _ = run(tmp_path, "hog = bytearray(3 << 30)\nhog[::4096] = b'x' * len(hog[::4096])\n",
                 sandbox, memory=1 << 30, request=request)
    assert end.failure is not None and "MemoryError" in end.failure
    assert "the sandbox allows 1 GB of memory: akida_memory_limit" in end.failure


# ---------------------------------------------------------------------------- what it can reach


@pytest.mark.parametrize("sandbox", MODES)
def test_it_cannot_touch_a_classmate_the_grader_or_the_host(tmp_path: Path,
                                                            sandbox: policy.Policy | str,
        request: pytest.FixtureRequest) -> None:
    classmate = tmp_path / "students" / "alice.py"
    classmate.parent.mkdir()
    classmate.write_text("def build_model():\n    pass\n")
    grader_file = Path(__file__).resolve().parents[1] / "pytest_akida_grade" / "catalog.py"
    before = {path: path.read_bytes() for path in (classmate, grader_file)}
    host_tmp = Path("/tmp") / f"akida-escape-{os.getpid()}"
    source = ("done = []\n"
              f"for target in {[str(classmate), str(grader_file), str(host_tmp)]!r}:\n"
              "    try:\n        open(target, 'w').write('owned')\n"
              "        done.append(target)\n    except OSError:\n        pass\n"
              "raise SystemExit(f'wrote {done}')\n")
    end, _ = run(tmp_path, source, sandbox, request=request)
    assert end.failure is not None
    assert {path: path.read_bytes() for path in before} == before
    # uid: its own file in the shared /tmp
    assert not host_tmp.exists() or sandbox in (UID, "uid-forked")
    host_tmp.unlink(missing_ok=True)
    # Only its own /tmp (a private tmpfs under bwrap) took the write.
    assert str(classmate) not in end.failure and str(grader_file) not in end.failure


@needs_bwrap
def test_it_sees_neither_its_classmates_nor_the_test_set(tmp_path: Path) -> None:
    classmate = tmp_path / "students" / "alice.py"
    classmate.parent.mkdir()
    classmate.write_text("SECRET = 1\n")
    copies = [str(path) for path in data.test_set_copies(None, tmp_path / "cache")]
    hub = data._hub_pickle_path()
    source = ("import os\nseen = []\n"
              f"for target in {[str(classmate), *copies, str(hub)]!r}:\n"
              "    if os.path.exists(target) and (os.path.isdir(target) and os.listdir(target)"
              " or os.path.isfile(target) and os.path.getsize(target)):\n"
              "        seen.append(target)\n"
              "raise SystemExit(f'saw {seen}')\n")
    end, _ = run(tmp_path, source)
    assert end.failure is not None and "saw []" in end.failure, end.failure


@needs_bwrap
def test_it_gets_an_allow_listed_environment_and_no_network(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        source = ("import os, socket\ntry:\n"
                  f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                  "    net = 'connected'\nexcept OSError as error:\n    net = 'no network'\n"
                  "raise SystemExit(f'{net}; env {sorted(os.environ)}')\n")
        end, _ = run(tmp_path, source)
    assert end.failure is not None and "no network" in end.failure
    env = set(end.failure.split("env [")[1].split("]")[0].replace("'", "").split(", "))
    assert env <= {"HOME", "KERAS_HOME", "LANG", "MPLCONFIGDIR", "PATH", "PWD",
                   "PYTHONUNBUFFERED", "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS",
                   "TMPDIR"}, env


# ---------------------------------------------------------------------------- its hand-over

# A model built, then its hand-over swapped by the attack once student.py has written it (its
# export() wrapped: student.py is __main__ in a fresh process, `student` in a fork).
SWAPPER = """
import os, sys
import tf_keras as keras

def build_model():
    return keras.Sequential([keras.layers.Flatten(input_shape=(28, 28, 1)),
                             keras.layers.Dense(10)])

runner = sys.modules.get("student") or sys.modules["__main__"]
real_export = runner.export

def export(directory, model, meta=None):
    real_export(directory, model, meta)
    swap(directory)

runner.export = export
"""
SWAPS = {
    "fifo": ("os.unlink(d / 'model.json')\n    os.mkfifo(d / 'model.json')",
             "the exported model.json is not a regular file"),
    "file symlink": ("os.unlink(d / 'model.json')\n    os.symlink('/dev/zero', d / 'model.json')",
                     "the exported model.json is a symbolic link, not a file"),
    "directory symlink": ("os.rename(d, str(d) + '-real')\n"
                          "    os.symlink(str(d) + '-real', d)",
                          "exported no build files (out/build is missing or not a directory)"),
}


@pytest.mark.parametrize("swap", SWAPS)
@pytest.mark.parametrize("sandbox", EXPORTING)
def test_a_hand_over_swapped_for_a_fifo_or_a_symlink_is_refused_without_blocking(
        tmp_path: Path, sandbox: policy.Policy | str, swap: str,
        request: pytest.FixtureRequest) -> None:
    if not isinstance(sandbox, str) and (swap != "fifo" or sandbox == UID):
        pytest.skip("a fresh process costs a TensorFlow import: the forks (bwrap and uid as "
                    "root) try every swap, bwrap's fresh process (a normal user's) the FIFO")
    code, words = SWAPS[swap]
    # A generous deadline (a fresh process imports TensorFlow): blocking would end in it.
    end, _ = run(tmp_path, SWAPPER + f"\ndef swap(d):\n    {code}\n", sandbox, seconds=120,
                 memory=4 << 30, processes=512, request=request)
    assert end.failure is not None and words in end.failure, end.failure
    assert end.exported == frozenset()
    assert not (tmp_path / "staging" / "build" / "model.json").exists()


def test_a_hand_over_that_is_not_the_childs_own_file_is_refused(tmp_path: Path) -> None:
    """A hard link to a file it may only read (a uid sandbox where the kernel allows it)."""
    work = tmp_path / "work"
    (work / "out" / "build").mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(work, 12345, 12345)
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    os.link(foreign, work / "out" / "build" / "model.json")
    problem = watch.snapshot(work / "out" / "build", tmp_path / "staging", {"model.json": 1 << 20})
    if os.geteuid() == 0:
        assert problem == "the exported model.json is not the submission's own file (a link to " \
                          "another)"
        os.chown(work, os.geteuid(), os.getegid())
    assert watch.snapshot(work / "out" / "build", tmp_path / "copy",
                          {"model.json": 1 << 20}) is None
    assert (tmp_path / "copy" / "model.json").read_text() == "{}"


# ---------------------------------------------------------------------------- what it can kill

# Bounded: as root it attacks nothing (a broken sandbox must not take the shared machine down);
# as its own uid it tries every pid it can see, its parent, pid 1 and kill(-1).
KILLER = """
import os, signal
if os.geteuid() == 0 or os.getuid() == 0:
    raise SystemExit("ran as root: attacked nothing")
me, reached = os.getpid(), []
pids = {os.getppid(), 1, *(int(p) for p in os.listdir("/proc") if p.isdigit())} - {me}
for sig in (signal.SIGSTOP, signal.SIGKILL):
    for pid in sorted(pids):
        try:
            os.kill(pid, sig)
            reached.append(pid)
        except OSError:
            pass
    try:  # succeeds when anything else is there, reached or not: the sentinels tell
        os.kill(-1, sig)
    except OSError:
        pass
raise SystemExit(f"reached {sorted(set(reached))}")
"""


@pytest.mark.parametrize("sandbox", MODES)
def test_a_child_that_kills_what_it_can_reach_reaches_nothing_of_others(
        tmp_path: Path, sandbox: policy.Policy | str, marker: str,
        request: pytest.FixtureRequest) -> None:
    grader = subprocess.Popen(["sleep", f"60{marker[-6:]}"])  # stands for the grader
    uid = policy.fresh_uid() if os.geteuid() == 0 else None
    classmate = subprocess.Popen(["sleep", f"61{marker[-6:]}"], user=uid, group=uid,
                                 extra_groups=[] if uid else None)  # another submission's uid
    try:
        end, _ = run(tmp_path, KILLER, sandbox, request=request)
        assert end.failure is not None and "reached []" in end.failure, end.failure
        assert grader.poll() is None and classmate.poll() is None
        if isinstance(sandbox, str):  # the fork server serves the next job
            server, _ = request.getfixturevalue(f"{sandbox.split('-')[0]}_fork_server")
            assert server._process is not None and server._process.poll() is None
            again, _ = run(tmp_path, "raise SystemExit('next')\n", sandbox, request=request)
            assert again.failure is not None and "next" in again.failure
    finally:
        for process in (grader, classmate):
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------- the mode


def _no_bwrap(monkeypatch: pytest.MonkeyPatch, root: bool, uid_problem: str | None) -> None:
    """This machine as one without bubblewrap, as root or not, whose fresh uid has a problem."""
    monkeypatch.setattr(policy.shutil, "which", lambda name: None)
    monkeypatch.setattr(policy.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(policy, "_uid_problem", lambda python: uid_problem)


def test_as_root_without_bubblewrap_auto_and_required_use_a_fresh_uid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bwrap(monkeypatch, root=True, uid_problem=None)
    for setting in ("auto", "required"):
        chosen = policy.choose(setting)  # type: ignore[arg-type]
        assert chosen.mode == "uid" and "bwrap is not installed" in chosen.describe()


def test_as_root_with_neither_sandbox_auto_is_an_error_saying_why_and_how_to_fix_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bwrap(monkeypatch, root=True, uid_problem="PermissionError: /root is closed")
    for setting in ("auto", "required"):
        with pytest.raises(policy.SandboxUnavailable) as raised:
            policy.choose(setting)  # type: ignore[arg-type]
        message = str(raised.value)
        for words in (f"--akida-sandbox={setting}", "submissions never run as root",
                      "bwrap is not installed", "PermissionError: /root is closed",
                      "install bubblewrap", "a venv made from the system Python",
                      "for your own code only, --akida-sandbox=off"):
            assert words in message, (words, message)
    chosen = policy.choose("off")  # asked for by name: still there, and says it is root
    assert chosen.mode == "off" and "run as this user (root)" in chosen.describe()


def test_the_plugin_refuses_to_grade_as_root_with_neither_sandbox(
        grading: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bwrap(monkeypatch, root=True, uid_problem="PermissionError: /root is closed")
    (grading.path / "students" / "alice.py").write_text("def build_model():\n    pass\n")
    result = grading.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*as root, no sandbox works here*install bubblewrap*"])
    result = grading.runpytest("--collect-only", "--akida-sandbox=off")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["akida-grade sandbox: off*run as this user (root)*"])


def test_a_normal_user_without_bubblewrap_still_gets_off_from_auto_and_an_error_from_required(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bwrap(monkeypatch, root=False, uid_problem="never asked")
    with pytest.raises(policy.SandboxUnavailable, match="bwrap is not installed"):
        policy.choose("required")
    chosen = policy.choose("auto")
    assert chosen.mode == "off" and "bwrap is not installed" in chosen.describe()
    assert "not root, so no other uid to use" in chosen.describe()


@needs_root
def test_a_python_under_a_directory_closed_to_others_fails_the_real_uid_probe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pyenv or conda under a 0700 /root, as on our machines: a real probe, a fresh uid."""
    closed = Path(tempfile.mkdtemp(prefix="akida-home-"))  # 0700, in the open /tmp
    try:
        python = closed / "python3"
        python.symlink_to(SYSTEM_PYTHON or sys.executable)
        problem = policy._uid_problem(str(python))
        assert problem is not None and "Permission denied" in problem, problem
        assert f"({closed} is closed to other users (mode 0700)" in problem, problem
        monkeypatch.setattr(policy.shutil, "which", lambda name: None)
        with pytest.raises(policy.SandboxUnavailable, match="closed to other users"):
            policy.choose("auto", python=str(python))
    finally:
        shutil.rmtree(closed)


@needs_uid_python
def test_as_root_without_bubblewrap_a_python_every_user_can_run_gets_the_uid_mode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy.shutil, "which", lambda name: None)
    assert policy.choose("auto").mode == "uid"


def test_off_is_off_and_says_so() -> None:
    chosen = policy.choose("off")
    assert chosen.mode == "off" and "turned off" in chosen.describe()


@pytest.mark.parametrize("sandbox", [
    pytest.param("bwrap-forked", marks=needs_bwrap),
    pytest.param("uid-forked", marks=needs_uid_python)])
def test_a_forked_child_is_confined_as_a_fresh_one(tmp_path: Path, sandbox: str,
                                                   request: pytest.FixtureRequest) -> None:
    source = ("import os, resource, sys\n"
              "raise SystemExit(f'uid {os.getuid()} gid {os.getgid()} "
              "as {resource.getrlimit(resource.RLIMIT_AS)[1]} "
              "tf {\"tensorflow\" in sys.modules} cwd {os.getcwd()}')\n")
    end, _ = run(tmp_path, source, sandbox, request=request)
    server, jobs = request.getfixturevalue(f"{sandbox.split('-')[0]}_fork_server")
    assert server._broken is None and server._process is not None  # it did fork it
    assert end.failure is not None
    uid = int(end.failure.split("uid ")[1].split()[0])
    assert uid >= policy.UID_BASE and f"gid {uid}" in end.failure
    assert f"as {1 << 30}" in end.failure and "tf True" in end.failure
    assert f"cwd {jobs}" in end.failure and end.failure.split("cwd ")[1].startswith(str(jobs))
