"""Student names from file names: what pytest would import, what is a plain name, how any
other stem is normalised and made unique. Pure: discovery.py (grading) and report/lms.py (the
importer) name students by one rule.
"""

from __future__ import annotations

import keyword
import re
import unicodedata

WEIGHTS_SUFFIX = ".weights.h5"
NOTEBOOK, MODULE = ".ipynb", ".py"
SUBMISSION_SUFFIXES = (NOTEBOOK, MODULE)  # the handout's notebook first: on a tie, it wins


def is_pytest_name(name: str) -> bool:
    """A file pytest itself would import (conftest, test modules, packages): never a student's."""
    stem = name.lower().removesuffix(".py")  # lower: on a case-blind disk Test_x.py is test_x
    return (stem in ("conftest", "__init__") or stem.startswith("test_")
            or stem.endswith("_test"))


def is_plain_name(stem: str) -> bool:
    """A student name as it is: ASCII, a Python name, not a keyword nor a pytest file's stem."""
    return (stem.isascii() and stem.isidentifier() and not keyword.iskeyword(stem)
            and not stem.startswith("_") and not is_pytest_name(stem))


def normalise(stem: str) -> str:
    """A plain name for any file stem: accents dropped, other characters runs of `_`."""
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_") or "student"
    if name[0].isdigit() or name.lower().startswith("test_") or \
            name.lower() in ("test", "conftest", "init"):
        name = "student_" + name
    if name.lower().endswith("_test") or keyword.iskeyword(name):
        name += "_py"
    return name


def pytest_would_import(name: str) -> bool:
    """A module of a pytest name (its default python_files, conftest, a package's __init__), or
    a `.pth` (run by `site` wherever it lands)."""
    lower = name.lower()
    return lower.endswith(".pth") or (lower.endswith(".py") and is_pytest_name(name))


def unique(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`... the first not taken yet (then taken)."""
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    taken.add(name)
    return name
