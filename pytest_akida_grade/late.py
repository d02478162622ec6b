"""The late policy (akida_late_penalty): how much of a late submission's points it loses, and how
late a submission was (its time against the due date). Pure: the standard library only.

A policy, as an instructor writes it (README, "Late submissions"):

    none                        no penalty (a late submission is still shown as late)
    20%          (or 0.2)       a late submission loses 20 % of its points, however late
    10% per day                 10 % per started day late (24 hours), up to all of them
    10% per day, at most 50%    the same, never more than 50 %: half the points is the floor

A submission known late only by a flag (Canvas's LATE, no time) counts as one day late. The
record keeps what was applied (`late_penalty`: the policy, the days counted, the fraction lost);
catalog.score takes that fraction off the points every report shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

DAY_SECONDS = 86400.0
NONE = ("", "none", "0", "0%")
_FRACTION = r"(\d+(?:\.\d+)?)\s*(%?)"
_POLICY = re.compile(rf"{_FRACTION}(\s+per\s+day(?:\s*,\s*at\s+most\s+{_FRACTION})?)?",
                     re.IGNORECASE)
_TIME = re.compile(r"(\d{4}-\d\d-\d\d)(?:[ T](\d\d:\d\d(?::\d\d)?)(?:\.(\d+))?)?\s*"
                   r"(Z|[+-]\d\d:?\d\d)?")
POLICY_HELP = ("none; a fixed fraction of the points ('20%' or '0.2'); a fraction per started "
               "day late ('10% per day'), optionally capped ('10% per day, at most 50%')")


@dataclass(frozen=True)
class LatePolicy:
    """`fraction` of the points, once or per started day late, never more than `cap`."""

    text: str
    fraction: float
    per_day: bool = False
    cap: float = 1.0

    def applied(self, days_late: float | None) -> dict[str, object]:
        """The record's `late_penalty`: the policy, the days counted (per day: at least one;
        None when the policy does not count days) and the fraction of the points lost."""
        if not self.per_day:
            return {"policy": self.text, "days": None, "fraction": self.fraction}
        days = max(1, math.ceil(days_late - 1e-9)) if days_late is not None else 1
        return {"policy": self.text, "days": days,
                "fraction": round(min(self.cap, self.fraction * days), 6)}


def _share(number: str, percent: str, text: str) -> float:
    value = float(number) / (100.0 if percent else 1.0)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{text!r}: a penalty is a fraction between 0 and 1 (or 0% to 100%); "
                         f"write {POLICY_HELP}")
    return value


def parse_policy(text: str) -> LatePolicy | None:
    """A policy as written (see the module's docstring); None for no penalty; ValueError naming
    the forms it takes."""
    cleaned = " ".join(text.split())
    if cleaned.lower() in NONE:
        return None
    found = _POLICY.fullmatch(cleaned)
    if found is None:
        raise ValueError(f"cannot read the late penalty {cleaned!r}; write {POLICY_HELP}")
    fraction = _share(found[1], found[2], cleaned)
    cap = _share(found[4], found[5], cleaned) if found[4] else 1.0
    return LatePolicy(cleaned, fraction, per_day=found[3] is not None, cap=cap)


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date and time ('2026-04-26 23:59', '2026-04-26T23:59:00+02:00', Gradescope's
    '2026-04-26 17:34:00.861687000 Z'), aware; without a zone, this machine's local time. A date
    alone is its midnight, or with `end_of_day` its last second (a due date)."""
    found = _TIME.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"cannot read the time {text.strip()!r}; write it as YYYY-MM-DD HH:MM "
                         "(optionally :SS and a zone such as +02:00 or Z)")
    day, clock, fraction, zone = found.groups()
    stamp = f"{day}T{clock or ('23:59:59' if end_of_day else '00:00')}"
    stamp += f".{(fraction or '')[:6].ljust(6, '0')}" if fraction else ""
    if zone:
        stamp += "+00:00" if zone == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.astimezone()


def parse_due(text: str) -> datetime:
    """A due date (akida_due, --due): a date alone means the end of that day."""
    return parse_time(text, end_of_day=True)


def days_late(submitted: datetime, due: datetime) -> float:
    """How late, in days (0 when on time)."""
    return max(0.0, (submitted - due).total_seconds() / DAY_SECONDS)


def iso(moment: datetime) -> str:
    """A time as roster.csv keeps it: ISO 8601 to the second, with its zone."""
    return moment.replace(microsecond=0).isoformat()


def penalize(records: Iterable[Mapping[str, object]],
             policy: LatePolicy | None) -> list[dict[str, object]]:
    """Copies of the records with the policy's `late_penalty` on the late ones (and none on the
    others, nor on any when there is no policy)."""
    done = []
    for record in records:
        copy = {key: value for key, value in record.items() if key != "late_penalty"}
        if policy is not None and record.get("late") is True:
            days = record.get("days_late")
            copy["late_penalty"] = policy.applied(
                float(days) if isinstance(days, int | float) and not isinstance(days, bool)
                else None)
        done.append(copy)
    return done


def describe(record: Mapping[str, object]) -> str:
    """'late 2 days: -20 % (10% per day, at most 50%)', or '' when no penalty applies."""
    penalty = record.get("late_penalty")
    if not isinstance(penalty, Mapping):
        return ""
    days = penalty.get("days")
    counted = f" {days} day{'s' if days != 1 else ''}" if isinstance(days, int) else ""
    fraction = float(penalty.get("fraction", 0.0))
    return f"late{counted}: -{fraction * 100:g} % ({penalty.get('policy')})"

