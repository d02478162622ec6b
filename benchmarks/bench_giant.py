"""Peak memory of every process while grading a class that holds a giant architecture.

Run: `.venv/bin/python benchmarks/bench_giant.py`. Not a test. A class of student_models/
three_convs.py and a submission whose hand-over claims a 1,200,000-unit Dense (940 million
parameters; its real model is small, the exported JSON is forged) is graded with every software
check on a small subset; the RSS of the pytest process and of each of its descendants (sandboxed
children, trusted evaluators) is sampled every 0.2 s. Target: no process above 3 GB, and the giant
refused before anything is allocated (its v1_constraints message gives both numbers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORGE = '''
import json
from tf_keras.src.engine import training
real = training.Model.to_json
def to_json(self, **kwargs):
    config = json.loads(real(self, **kwargs))
    layers = config["config"]["layers"]
    giant = [{"module": "keras.layers", "class_name": "Flatten", "config": {"name": "flat"}},
             {"module": "keras.layers", "class_name": "Dense",
              "config": {"name": "giant", "units": 1200000}}]
    config["config"]["layers"] = layers[:2] + giant + layers[-1:]
    for layer in config["config"]["layers"]:
        layer.pop("build_config", None)
    return json.dumps(config)
training.Model.to_json = to_json
'''
SETTINGS = """[pytest]
akida_students = students
akida_epochs = 1
akida_train_limit = 3000
akida_test_limit = 500
akida_calibration_samples = 128
"""


def rss_tree(pid: int) -> dict[int, tuple[str, int]]:
    """(command, RSS bytes) of `pid` and every descendant."""
    found: dict[int, tuple[str, int, int]] = {}  # pid -> (name, RSS, parent)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
            found[int(proc.name)] = (fields["Name"].strip(), rss, int(fields["PPid"]))
        except (OSError, KeyError, ValueError):
            continue
    family, changed = {pid}, True
    while changed:
        changed = False
        for child, entry in found.items():
            if child not in family and entry[2] in family:
                family.add(child)
                changed = True
    return {p: (found[p][0], found[p][1]) for p in family if p in found}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-giant-"))
    (work / "pytest.ini").write_text(SETTINGS)
    students = work / "students"
    students.mkdir()
    source = (ROOT / "student_models" / "three_convs.py").read_text()
    (students / "honest.py").write_text(source)
    (students / "giant.py").write_text(source + FORGE)
    peaks: dict[int, tuple[str, int]] = {}
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            "-k", "not hardware_quality", "--akida-json=grades.json"],
                           cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def sample() -> None:
        while run.poll() is None:
            for pid, (name, rss) in rss_tree(run.pid).items():
                if rss > peaks.get(pid, ("", 0))[1]:
                    peaks[pid] = (name, rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run.communicate()
    sampler.join()
    records = {r["student"]: r for r in json.loads((work / "grades.json").read_text())["students"]}
    print(f"graded in {time.monotonic() - started:.1f} s")
    print("giant v1_constraints:", records["giant"]["checks"]["v1_constraints"]["message"])
    for pid, (name, rss) in sorted(peaks.items(), key=lambda item: -item[1][1])[:8]:
        print(f"  peak RSS {rss / (1 << 20):8.0f} MB  pid {pid} {name}")
    worst = max(rss for _, rss in peaks.values())
    print(f"largest process: {worst / (1 << 30):.2f} GB (target < 3 GB)")
    return 0 if worst < 3 << 30 else 1


if __name__ == "__main__":
    sys.exit(main())
