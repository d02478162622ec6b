"""`import-submissions`: a class as the LMS hands it over (Canvas, Gradescope, Moodle) made a
students folder: one `<student>.py` (and `<student>.weights.h5`) per student, their latest, and
roster.csv naming each student on the LMS (docs/contracts.md). Pure: no TensorFlow, no student
code; the download is read through unpack.py (checked whole before anything is written).

- Canvas "Download Submissions": one flat folder, every file renamed
  `<lastfirst>_[LATE_]<user id>_<attachment id>_<original name>[-<n>].<ext>`.
- Gradescope "Export Submissions": `submission_<id>/` folders and `submission_metadata.yml`.
- Moodle "Download all submissions": `<Full Name>_<id>_assignsubmission_file_/` folders.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pytest_akida_grade import late as late_policy
from pytest_akida_grade import roster
from pytest_akida_grade.names import WEIGHTS_SUFFIX, normalise, unique
from pytest_akida_grade.report import unpack
from pytest_akida_grade.report.unpack import Member, Refused

LMS_NAMES = ("canvas", "gradescope", "moodle")
ID_COLUMNS = {"canvas": ("ID",), "gradescope": ("submission_id", "emails", "sid"),
              "moodle": ("moodle_id",)}
# A text entry has no attachment id (doejane_12345_text.html).
CANVAS = re.compile(r"(?P<who>[^_]+)_(?:(?P<late>LATE)_)?(?P<user>\d+)_(?:(?P<attachment>\d+)_)?"
                    r"(?P<rest>.+)")
MOODLE = re.compile(r"(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?P<kind>[a-z]+)_?")
# "Download submissions in folders" unticked: Jane Doe_4242_assignsubmission_file_model.py
MOODLE_FLAT = re.compile(r"(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?P<kind>[a-z]+)_"
                         r"(?P<original>.+)")
GRADESCOPE_METADATA = "submission_metadata.yml"


@dataclass(frozen=True)
class Handed:
    """One file a student handed in: its original name, which is newer (larger `order`), the
    LMS's late flag (Canvas) and its submission time (Gradescope's, Moodle's file time)."""
    original: str
    member: Member
    order: tuple[float, ...]
    late: bool = False
    submitted: datetime | None = None


@dataclass
class Student:
    key: str  # who the LMS says it is (a user id, an email, a folder)
    name: str
    ids: dict[str, str]
    handed: list[Handed] = field(default_factory=list)
    rank: tuple[str, ...] = ()  # between two submissions of one student: the larger is newer


@dataclass(frozen=True)
class Planned:
    """What the import writes for one student."""
    stem: str
    student: Student
    module: Handed | None
    weights: Handed | None

    @property
    def handed_in(self) -> tuple[Handed, ...]:
        return tuple(h for h in (self.module, self.weights) if h is not None)

    @property
    def submitted(self) -> datetime | None:
        """When the files graded were handed in (the latest), when the LMS says."""
        return max((h.submitted for h in self.handed_in if h.submitted), default=None)

    def lateness(self, due: datetime | None) -> tuple[bool, float | None]:
        """Late, and by how many days when the LMS gave a time and a due date is known."""
        if due is not None and self.submitted is not None:
            days = late_policy.days_late(self.submitted, due)
            return days > 0, days
        return any(h.late for h in self.handed_in), None


# ---------------------------------------------------------------- the three layouts


def _canvas_original(rest: str) -> tuple[str, int]:
    """`model-1.py` -> ("model.py", 1): Canvas numbers a resubmitted file's name."""
    ext = WEIGHTS_SUFFIX if rest.endswith(WEIGHTS_SUFFIX) else os.path.splitext(rest)[1]
    base = rest[: len(rest) - len(ext)]
    numbered = re.fullmatch(r"(.*)-(\d+)", base)
    return (numbered[1] + ext, int(numbered[2])) if numbered else (rest, 0)


def canvas(members: Sequence[Member]) -> tuple[list[Student], list[str]]:
    students: dict[str, Student] = {}
    unknown = []
    for member in members:
        found = CANVAS.fullmatch(member.path.name)
        if found is None:
            unknown.append(str(member.path))
            continue
        original, number = _canvas_original(found["rest"])
        student = students.setdefault(found["user"], Student(
            found["user"], found["who"], {"ID": found["user"]}))
        attachment = int(found["attachment"] or 0)
        student.handed.append(Handed(original, member, (attachment, number),
                                     found["late"] is not None))
    return list(students.values()), unknown


def moodle(members: Sequence[Member]) -> tuple[list[Student], list[str]]:
    students: dict[str, Student] = {}
    unknown = []
    for member in members:
        folder = next((part for part in member.path.parts[:-1] if MOODLE.fullmatch(part)), None)
        found = MOODLE.fullmatch(folder) if folder else MOODLE_FLAT.fullmatch(member.path.name)
        if found is None:
            unknown.append(str(member.path))
            continue
        student = students.setdefault(found["id"], Student(
            found["id"], found["name"], {"moodle_id": found["id"]}))
        original = member.path.name if folder else found["original"]
        student.handed.append(Handed(original, member, (member.mtime,),
                                     submitted=datetime.fromtimestamp(member.mtime).astimezone()))
    return list(students.values()), unknown


def gradescope(members: Sequence[Member]) -> tuple[list[Student], list[str]]:
    metadata = [m for m in members if m.path.name == GRADESCOPE_METADATA]
    if not metadata:
        raise Refused(f"no {GRADESCOPE_METADATA}: not a Gradescope 'Export Submissions' download")
    top = min(metadata, key=lambda m: len(m.path.parts))
    submissions = parse_gradescope_metadata(top.read().decode("utf-8", "replace"))
    root = top.path.parent
    students: dict[str, Student] = {}
    unknown = []
    for member in members:
        relative = member.path.relative_to(root) if member.path.is_relative_to(root) else None
        folder = relative.parts[0] if relative is not None and len(relative.parts) > 1 else ""
        if member is top or folder not in submissions:
            unknown += [] if member is top else [str(member.path)]
            continue
        _gradescope_student(students, folder, submissions[folder]).handed.append(
            Handed(member.path.name, member, (member.mtime,),
                   submitted=_created(submissions[folder].created_at)))
    return _latest_per_person(students), unknown


def _created(text: str) -> datetime | None:
    """Gradescope's created_at ('2026-04-26 17:34:00.861687000 Z'), or None when unreadable."""
    try:
        return late_policy.parse_time(text) if text else None
    except ValueError:
        return None


def _gradescope_student(students: dict[str, Student], folder: str,
                        meta: GradescopeSubmission) -> Student:
    if folder not in students:
        people = meta.submitters
        names = "; ".join(p.get("name", "") for p in people if p.get("name"))
        ids = {"submission_id": folder.removeprefix("submission_"),
               "emails": roster.join(p["email"] for p in people if p.get("email")),
               "sid": roster.join(p["sid"] for p in people if p.get("sid"))}
        students[folder] = Student(folder, names or folder, ids, rank=(meta.created_at, folder))
    return students[folder]


def _latest_per_person(students: dict[str, Student]) -> list[Student]:
    """A person in two submissions (alone, then in a group) keeps the newer one only."""
    newest: dict[str, Student] = {}
    for student in sorted(students.values(), key=lambda s: s.rank):
        for person in (student.ids.get("emails") or student.key).split(roster.LIST_SEPARATOR):
            newest[person] = student
    kept = {id(s) for s in newest.values()}
    return [s for s in students.values() if id(s) in kept]


# ---------------------------------------------------------------- submission_metadata.yml


@dataclass
class GradescopeSubmission:
    submitters: list[dict[str, str]] = field(default_factory=list)
    created_at: str = ""


def _scalar(text: str) -> str:
    """A YAML plain or quoted scalar (the shapes Gradescope writes), as text."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def parse_gradescope_metadata(text: str) -> dict[str, GradescopeSubmission]:
    """Gradescope's export metadata, exactly its shape (no YAML library, nothing executed):

        submission_123:
          :submitters:
          - :name: Jane Doe
            :sid: '42'
            :email: jane@example.edu
          :created_at: 2026-04-26 17:34:00.861687000 Z
          :results: ...            (anything else: ignored)
    """
    found: dict[str, GradescopeSubmission] = {}
    current: GradescopeSubmission | None = None
    section = ""
    for line in text.splitlines():
        top = re.fullmatch(r"(submission_\d+):\s*", line)
        if top:
            current = found.setdefault(top[1], GradescopeSubmission())
            continue
        entry = re.fullmatch(r"  (- )?:(\w+):\s*(.*)", line)
        if current is None or (entry is None and not line.startswith("    :")):
            continue
        if entry is not None and entry[1] is None:  # a key of the submission
            section = entry[2]
            if section == "created_at":
                current.created_at = _scalar(entry[3])
            continue
        item = entry or re.fullmatch(r"    ():(\w+):\s*(.*)", line)
        if section == "submitters" and item is not None:
            if item[1]:
                current.submitters.append({})
            if current.submitters:
                current.submitters[-1][item[2]] = _scalar(item[3])
    return found


# ---------------------------------------------------------------- what to write


LAYOUTS: dict[str, Callable[[Sequence[Member]], tuple[list[Student], list[str]]]] = {
    "canvas": canvas, "gradescope": gradescope, "moodle": moodle}


def _latest(handed: list[Handed], suffix: str, prefer: str = "") -> Handed | None:
    """The newest file ending in `suffix`, the one named `prefer` first (a module's weights)."""
    chosen = [h for h in handed if h.original.lower().endswith(suffix)
              and (suffix != ".py" or not h.original.lower().endswith(WEIGHTS_SUFFIX))]
    named = [h for h in chosen if h.original == prefer]
    return max(named or chosen, key=lambda h: (h.order, h.original), default=None)


def plan(students: Sequence[Student]) -> list[Planned]:
    """Each student's module and weights (the newest), under a unique plain stem (the LMS's
    name normalised; `_2`, `_3`... in the order of the LMS's key when two names meet)."""
    taken: set[str] = set()
    planned = []
    for student in sorted(students, key=lambda s: (normalise(s.name), s.key)):
        stem = unique(normalise(student.name), taken)
        module = _latest(student.handed, ".py")
        prefer = module.original.removesuffix(".py") + WEIGHTS_SUFFIX if module else ""
        planned.append(Planned(stem, student, module,
                               _latest(student.handed, WEIGHTS_SUFFIX, prefer)))
    return sorted(planned, key=lambda p: p.stem)


def roster_text(planned: Sequence[Planned], lms: str, due: datetime | None = None) -> str:
    columns = (*roster.COLUMNS, *ID_COLUMNS[lms])
    rows = []
    for item in planned:
        handed = [h for h in (item.module, item.weights) if h] if item.module \
            else item.student.handed
        late, days = item.lateness(due)
        rows.append({"student": item.stem, "name": item.student.name,
                     "late": "true" if late else "false",
                     "submitted": late_policy.iso(item.submitted) if item.submitted else "",
                     "days_late": f"{days:.4f}" if days is not None else "",
                     "files": roster.join(sorted(h.original for h in handed)),
                     "module": f"{item.stem}.py" if item.module else "",
                     "weights": f"{item.stem}{WEIGHTS_SUFFIX}" if item.weights else "",
                     **{key: item.student.ids.get(key, "") for key in ID_COLUMNS[lms]}})
    return roster.to_csv(rows, columns)


# ---------------------------------------------------------------- writing the folder


def _previous_import(out: Path) -> list[Path]:
    """The files a previous import wrote (its roster's modules and weights): replaced by
    --force, so that a student gone from the new download is not graded from the old one."""
    try:
        entries = roster.read(out / roster.NAME)
    except roster.RosterError:
        return []
    names = [e.module for e in entries if e.module]
    names += [e.module.removesuffix(".py") + WEIGHTS_SUFFIX for e in entries if e.module]
    return [out / name for name in names if Path(name).name == name]


def _check_out(out: Path, force: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise Refused(f"--out {out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise Refused(f"--out {out}: not empty; nothing was written (--force writes over the "
                      "files of a previous import)")


def write(planned: Sequence[Planned], lms: str, out: Path, force: bool,
          due: datetime | None = None) -> None:
    """Write every file into a fresh folder beside `out`, then move them in: a download that
    fails to read (a member not the size it said) leaves `out` as it was."""
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".akida-import-", dir=out.parent))
    try:
        for item in planned:
            for handed, suffix in ((item.module, ".py"), (item.weights, WEIGHTS_SUFFIX)):
                if handed is not None and item.module is not None:
                    (staging / f"{item.stem}{suffix}").write_bytes(handed.member.read())
        (staging / roster.NAME).write_text(roster_text(planned, lms, due), encoding="utf-8")
        out.mkdir(exist_ok=True)
        for old in _previous_import(out) if force else []:
            old.unlink(missing_ok=True)
        for path in sorted(staging.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_submissions(source: Path, lms: str, out: Path, *, force: bool = False,
                       limits: unpack.Limits = unpack.LIMITS, due: datetime | None = None
                       ) -> tuple[list[Planned], list[str]]:
    """Read, check and write a class (see the module's docstring): the students planned and
    the files of the download no student was found for. With `due`, a submission time after it
    (Gradescope's, Moodle's) makes the student late in the roster, with the days."""
    if lms not in LAYOUTS:
        raise Refused(f"--from {lms}: one of {', '.join(LMS_NAMES)}")
    _check_out(out, force)
    students, unknown = LAYOUTS[lms](unpack.members(source, limits))
    planned = plan(students)
    write(planned, lms, out, force, due)
    return planned, unknown


def _late_note(item: Planned, due: datetime | None) -> str:
    late, days = item.lateness(due)
    return "" if not late else " (late)" if days is None else f" (late: {days:.2f} days)"


def summary(planned: Sequence[Planned], unknown: Sequence[str],
            due: datetime | None = None) -> list[str]:
    """The command's lines: each student's files, those with no module, what was not used."""
    lines = []
    for item in planned:
        late = _late_note(item, due)
        if item.module is None:
            handed = ", ".join(sorted(h.original for h in item.student.handed)) or "nothing"
            lines.append(f"{item.stem} ({item.student.name}): no module (.py) handed in; "
                         f"handed in: {handed}")
            continue
        chosen = [h for h in (item.module, item.weights) if h]
        unused = sorted(str(h.member.path.name) for h in item.student.handed if h not in chosen)
        lines.append(f"{item.stem} ({item.student.name}){late}: "
                     + ", ".join(h.member.path.name for h in chosen)
                     + (f"; older or other files not used: {', '.join(unused)}" if unused else ""))
    lines += [f"{path}: not a submission of this layout, not imported" for path in unknown]
    return lines
