"""The user properties a graded test carries (to the recorder, the reports, across xdist): one key
each, written by the items (items.py, course.py), read back by `Tagged.of` (recorder.py, html.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

STUDENT = "akida_student"
CHECK = "akida_check"
FILE = "akida_file"
MESSAGE = "akida_message"
METRICS = "akida_metrics"
FINGERPRINT = "akida_fingerprint"

UserProperties = list[tuple[str, object]]


def tag(properties: UserProperties, student: str, check: str, file: str) -> None:
    """Mark a test as `check` of `student`'s submission `file`."""
    properties += [(STUDENT, student), (CHECK, check), (FILE, file)]


@dataclass(frozen=True)
class Tagged:
    """A graded test's properties, read back."""

    student: str
    check: str
    file: str = ""
    message: str | None = None
    metrics: Mapping[str, object] = field(default_factory=dict)
    fingerprint: Mapping[str, object] | None = None

    @classmethod
    def of(cls, properties: Iterable[tuple[str, object]]) -> Tagged | None:
        """None for a test that is not a check of a student."""
        found = dict(properties)
        student, check = found.get(STUDENT), found.get(CHECK)
        if student is None or check is None:
            return None
        message, metrics, fingerprint = found.get(MESSAGE), found.get(METRICS), \
            found.get(FINGERPRINT)
        return cls(str(student), str(check), str(found.get(FILE) or ""),
                   None if message is None else str(message),
                   metrics if isinstance(metrics, Mapping) else {},
                   fingerprint if isinstance(fingerprint, Mapping) else None)


def replaced(properties: UserProperties, key: str, value: object) -> UserProperties:
    """The properties with `key`'s value replaced (where it is present)."""
    return [(name, value if name == key else old) for name, old in properties]
