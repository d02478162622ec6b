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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_akida_grade import data
from pytest_akida_grade.sandbox import launch, policy
from pytest_akida_grade.sandbox.watch import Job

BWRAP = policy.choose("auto", data.test_set_copies(None, None))
needs_bwrap = pytest.mark.skipif(BWRAP.mode != "bwrap", reason=f"no bubblewrap: {BWRAP.why}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid sandbox needs root")
# A Python outside root's home, so that a fresh uid can run it: the uid mode's own condition.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin")
UID = policy.Policy("uid", python=SYSTEM_PYTHON or "python3")
needs_uid = pytest.mark.skipif(os.geteuid() != 0 or SYSTEM_PYTHON is None,
                               reason="the uid sandbox needs root and /usr/bin/python3")
MODES = [pytest.param(BWRAP, id="bwrap", marks=needs_bwrap),
         pytest.param(UID, id="uid", marks=needs_uid),
         pytest.param("forked", id="bwrap-forked", marks=needs_bwrap)]


@pytest.fixture(scope="module")
def fork_server() -> Iterator[tuple[launch.ForkServer, Path]]:
    """One fork server (zygote.py in bubblewrap, TensorFlow imported once) for the module."""
    jobs = Path(tempfile.mkdtemp(prefix="akida-test-jobs-"))
    os.chmod(jobs, 0o711)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    server = launch.ForkServer(lambda fd: policy.fork_server_command(BWRAP, jobs, env, fd), env,
                               jobs / "zygote.log", host_pids=False)
    yield server, jobs
    server.close()
    shutil.rmtree(jobs, ignore_errors=True)


def run(tmp_path: Path, source: str, sandbox: policy.Policy | str = BWRAP, *,
        seconds: float = 20, memory: int = 1 << 30, processes: int = 64,
        request: pytest.FixtureRequest | None = None) -> tuple[launch.RunEnd, list[str]]:
    """Run `source` as submission mallory.py; the run's end and its progress messages.
    `sandbox="forked"`: a fork of the module's fork server (the `request` gives it)."""
    forks = None
    if sandbox == "forked":
        assert request is not None
        forks, jobs = request.getfixturevalue("fork_server")
        sandbox = BWRAP
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
    job = Job("mallory", module, None, ("build",), 0, None, seconds, "the test's limit",
                     seconds, "the test's limit", memory, processes)
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
    assert end.failure == "the sandbox exported no build files (out/build is missing)"
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
    assert not host_tmp.exists() or sandbox == UID  # uid: its own file in the shared /tmp
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
                   "PYTHONUNBUFFERED", "TF_CPP_MIN_LOG_LEVEL", "TMPDIR"}, env


# ---------------------------------------------------------------------------- the mode


def test_required_is_refused_where_no_sandbox_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy.shutil, "which", lambda name: None)
    monkeypatch.setattr(policy, "_uid_problem", lambda: "a fresh uid cannot run Python")
    with pytest.raises(policy.SandboxUnavailable, match="bwrap is not installed"):
        policy.choose("required")
    chosen = policy.choose("auto")
    assert chosen.mode == "off" and "bwrap is not installed" in chosen.describe()


def test_off_is_off_and_says_so() -> None:
    chosen = policy.choose("off")
    assert chosen.mode == "off" and "turned off" in chosen.describe()


@needs_bwrap
def test_a_forked_child_is_confined_as_a_fresh_one(tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    source = ("import os, resource, sys\n"
              "raise SystemExit(f'uid {os.getuid()} gid {os.getgid()} "
              "as {resource.getrlimit(resource.RLIMIT_AS)[1]} "
              "tf {\"tensorflow\" in sys.modules} cwd {os.getcwd()}')\n")
    end, _ = run(tmp_path, source, "forked", request=request)
    server, jobs = request.getfixturevalue("fork_server")
    assert server._broken is None and server._process is not None  # it did fork it
    assert end.failure is not None
    uid = int(end.failure.split("uid ")[1].split()[0])
    assert uid >= policy.UID_BASE and f"gid {uid}" in end.failure
    assert f"as {1 << 30}" in end.failure and "tf True" in end.failure
    assert f"cwd {jobs}" in end.failure and end.failure.split("cwd ")[1].startswith(str(jobs))
