"""What the installed plugin costs a pytest run that grades nobody (issue 27: at most 0.15 s).

Run: `.venv/bin/python benchmarks/bench_inert.py [--runs 15]`. Not a test. An unrelated one-test
suite in a temporary directory (no ini of ours) is run with this venv's pytest, alternately with
the plugin and with `-p no:akida_grade`; the medians of the wall times and their difference are
printed, and the processes the run started (none may be ours: no sandbox probe, no evaluator).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "def test_arithmetic():\n    assert 1 + 1 == 2\n"
TARGET_SECONDS = 0.15


def _seconds(directory: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                   cwd=directory, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        (directory / "test_mine.py").write_text(SUITE)
        _seconds(directory, [])  # warm the file cache
        with_plugin, without = [], []
        for _ in range(runs):
            with_plugin.append(_seconds(directory, []))
            without.append(_seconds(directory, ["-p", "no:akida_grade"]))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(f"unrelated suite, median of {runs}: {a:.3f} s with the plugin, {b:.3f} s without "
          f"(-p no:akida_grade): +{a - b:.3f} s (target <= {TARGET_SECONDS} s)")
    return 0 if a - b <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
