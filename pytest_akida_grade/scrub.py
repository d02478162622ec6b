"""A message as a student may read it: no traceback of ours, no host path, no TensorFlow op name.

Pure. `for_student` is applied once, where a verdict or a grader error leaves the grader for the
terminal and the report files; the full text goes to the instructor's log beside it. What a
student needs stays: the layer, the rule, the fix, the exception's own line, frames of their own
file as `alice.py, line 12`.
"""

from __future__ import annotations

import re

TRACEBACK_HEAD = re.compile(r"^\s*Traceback \(most recent call last\):\s*$")
FRAME = re.compile(r'^\s*File "([^"]*)", line (\d+)(?:, in (.*))?$')
DEFINED_AT = re.compile(r"^\s*Defined at \(most recent call last\):\s*$")
FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}")
NODE = re.compile(r"\[\[\{\{node [^}]*\}\}\]\]|\{\{node [^}]*\}\}")
DETECTED_AT = re.compile(r"Detected at node [^\n]*?(?=(?:\s*Defined at|\n|$))")
CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
OBJECT_REPR = re.compile(r"<([\w.]+\.)?(\w+) (?:object|at) [^>]*>")
# An absolute path of two or more parts: shown as its last part.
PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")
GRAPH_ERROR = re.compile(r"Graph execution error:\s*")


def for_student(text: str) -> str:
    """The message with our internals taken out (see the module's docstring)."""
    lines = _without_tracebacks(text.splitlines())
    cleaned = "\n".join(lines)
    for pattern, replacement in ((FUNCTION_NODE, ""), (NODE, ""), (DETECTED_AT, ""),
                                 (GRAPH_ERROR, ""), (CLASS_REPR, r"\1"), (OBJECT_REPR, r"\2"),
                                 (PATH, r"\1")):
        cleaned = pattern.sub(replacement, cleaned)
    cleaned = re.sub(r"[ \t]+\n", "\n", cleaned)
    return re.sub(r"\n{3,}", "\n\n", cleaned).strip()


def _without_tracebacks(lines: list[str]) -> list[str]:
    """Drop traceback headers and frames (and the source line under each); a frame of a file
    that is not installed code becomes `name.py, line N, in f`."""
    kept: list[str] = []
    skip_source = False
    for line in lines:
        if TRACEBACK_HEAD.match(line) or DEFINED_AT.match(line):
            skip_source = False
            continue
        frame = FRAME.match(line)
        if frame:
            skip_source = True
            if _own_code(frame.group(1)):
                name = frame.group(1).rsplit("/", 1)[-1]
                kept.append(f"  {name}, line {frame.group(2)}, in {frame.group(3) or '?'}")
            continue
        if skip_source and line.startswith("    "):
            skip_source = False
            continue
        skip_source = False
        kept.append(line)
    return kept


def _own_code(filename: str) -> bool:
    """A student's file (the sandbox's copy of it), not a library's or the grader's."""
    return filename.endswith(".py") and not any(
        part in filename for part in ("site-packages", "dist-packages", "/lib/python",
                                      "pytest_akida_grade", "<frozen"))
