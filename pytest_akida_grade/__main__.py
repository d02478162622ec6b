"""`python -m pytest_akida_grade COMMAND ...`: the instructor's tools (see report.cli)."""

from __future__ import annotations

import sys

from pytest_akida_grade.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
