"""`python -m pytest_akida_grade COMMAND`: merge grade files and write the reports (`merge`), build
a Gradescope autograder (`gradescope-autograder`), write one student's results.json
(`gradescope-results`, which the autograder's run_autograder calls).

Errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pytest_akida_grade import catalog, labkit, late, similarity
from pytest_akida_grade.quality import QUALITY_MAX
from pytest_akida_grade.report import (
    autograder,
    canvas,
    compare,
    files,
    lms,
    moodle,
    plot,
    recording,
    table,
    unpack,
)
from pytest_akida_grade.report.files import ReportError, format_number, format_quality

PROG = "python -m pytest_akida_grade"
T = TypeVar("T")
KEEP = object()  # --late-penalty not given: each record keeps the penalty it was graded with

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Combine and export Akida grade files; build a Gradescope "
        "autograder.")
    commands = parser.add_subparsers(dest="command", required=True)
    merge_cmd = commands.add_parser(
        "merge", help="merge --akida-json files (e.g. from shards) and write grade files",
        description="Merge grade files; for a student in several, later files win per check.")
    merge_cmd.add_argument("inputs", nargs="+", metavar="FILE.json", help="grade files to merge")
    merge_cmd.add_argument("--json", metavar="OUT", help="write the merged grade file")
    merge_cmd.add_argument("--csv", metavar="OUT", help="write a gradebook CSV")
    merge_cmd.add_argument("--html", metavar="OUT", help="write a standalone HTML report")
    merge_cmd.add_argument("--gradescope", metavar="DIR",
                           help="write DIR/<student>/results.json for Gradescope")
    _add_settings(merge_cmd)
    merge_cmd.add_argument("--replay", metavar="BOARD.json", help="a board recording "
                           "(measure's --record, --akida-record): its figures give "
                           "hardware_quality, as --akida-replay would")
    merge_cmd.add_argument("--late-penalty", type=_typed(late.parse_policy), default=KEEP,
                           metavar="POLICY", help="apply this late policy to the late students "
                           f"instead of the files' own ({late.POLICY_HELP})")
    _add_autograder_parser(commands)
    _add_results_parser(commands)
    _add_import_parser(commands)
    _add_canvas_parser(commands)
    _add_moodle_parser(commands)
    _add_compare_parser(commands)
    _add_measure_parser(commands)
    return parser


def _add_import_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "import-submissions", help="make a students folder of an LMS download",
        description="Write one <student>.ipynb or <student>.py (and <student>.weights.h5) "
        "per student, their latest, and roster.csv (the LMS's names, ids, late flags) from a "
        "Canvas, Gradescope or Moodle download (the zip or its unzipped folder). An unsafe "
        "download (paths climbing out, links, oversized) is refused before anything is written.")
    cmd.add_argument("source", metavar="SOURCE", help="the LMS's zip or its unzipped folder")
    cmd.add_argument("--from", dest="lms", required=True, choices=lms.LMS_NAMES,
                     help="the LMS the download comes from")
    cmd.add_argument("--out", required=True, metavar="DIR", help="the students folder to write")
    cmd.add_argument("--force", action="store_true",
                     help="write into a non-empty DIR (over a previous import's files)")
    cmd.add_argument("--due", type=_typed(late.parse_due), metavar="WHEN",
                     help="the due date (YYYY-MM-DD HH:MM, optionally a zone; a date alone is "
                     "its last second; else this machine's time zone): a Gradescope or Moodle "
                     "submission after it is late in the roster, with the days")


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser raising ValueError: its message, not argparse's."""
    def typed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return typed


def _add_autograder_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "gradescope-autograder", help="write a Gradescope autograder zip (setup.sh, "
        "run_autograder, the settings)",
        description="Write the zip for Gradescope's 'Zip file upload': setup.sh installs "
        "a supported Python (the image's own, else 3.11) and the stack pinned to this "
        "environment's versions, run_autograder grades "
        "/autograder/submission/<name>.ipynb (or <name>.py) with these settings. Settings are "
        "checked first: on an error nothing is written.")
    cmd.add_argument("out", metavar="OUT.zip", help="the zip to write")
    cmd.add_argument("--ini", metavar="FILE", help="settings: the akida_* keys and addopts of "
                     "a pytest ini file ([pytest]) or a pyproject.toml")
    cmd.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="a setting (akida_timeout=60; akida_points=loads = 2, once a line); "
                     "after --ini's")
    cmd.add_argument("--pytest-args", action="append", default=[], metavar="ARGS",
                     help="pytest arguments for run_autograder, appended to addopts "
                     "(e.g. --pytest-args=\"-k 'not hardware_quality'\")")
    cmd.add_argument("--replay", metavar="FILE", help="a board recording (--akida-record) to "
                     "bundle and replay: students are its names, the submissions' file stems")


def _add_results_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "gradescope-results", help="write one student's Gradescope results.json",
        description="Write Gradescope's results.json from an --akida-json file holding exactly "
        "one student.")
    cmd.add_argument("grades", metavar="GRADES.json", help="an --akida-json file, one student")
    cmd.add_argument("out", metavar="OUT.json", help="the results.json to write")
    _add_settings(cmd)


def _add_settings(cmd: argparse.ArgumentParser) -> None:
    """The grading settings a command's outputs depend on: the ini the class was graded with,
    then flags."""
    defaults = ", ".join(f"{k}={format_number(v)}" for k, v in catalog.DEFAULT_POINTS.items())
    cmd.add_argument("--ini", metavar="FILE",
                     help="take akida_points, akida_quality_max, akida_visibility, "
                     "akida_stdout_visibility and akida_leaderboard from this ini file (a "
                     "pytest.ini or pyproject.toml), as the plugin's own results do")
    cmd.add_argument("--points", action="extend", nargs="+", default=[], metavar="CHECK=PTS",
                     help=f"points per check, after --ini's (default: {defaults})")
    cmd.add_argument("--quality-max", type=float, default=None,
                     help=f"full credit below this quality (default: --ini's, else "
                     f"{format_number(QUALITY_MAX)})")


def _add_canvas_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "canvas", help="fill an assignment's column of a Canvas gradebook export",
        description="Write Canvas's gradebook export back with the assignment's column filled "
        "with each student's points (every other cell unchanged), ready for Canvas's import. "
        "A student is the row whose --match column equals their file stem (or, with --roster, "
        "the roster's value for it). On an error nothing is written.")
    cmd.add_argument("grades", metavar="GRADES.json", help="an --akida-json (or merged) file")
    cmd.add_argument("--gradebook", required=True, metavar="EXPORT.csv",
                     help="Canvas's gradebook export (Grades > Export > Export Entire Gradebook)")
    cmd.add_argument("--assignment", required=True, metavar="NAME",
                     help="the assignment: its column's name, or the name before ' (id)'")
    cmd.add_argument("--out", required=True, metavar="OUT.csv", help="the CSV to import")
    cmd.add_argument("--match", default=canvas.DEFAULT_MATCH, metavar="COLUMN",
                     help="the export's column holding the student's name (default: "
                     "%(default)s), compared case-insensitively")
    cmd.add_argument("--roster", metavar="ROSTER.csv", help="a CSV with a 'student' column "
                     "(file stems) and a column named as --match, when names differ")


def _add_moodle_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "moodle", help="write a CSV for Moodle's gradebook import (Import grades: CSV file)",
        description="Write the grades as Moodle's 'Import grades: CSV file' reads them: a user "
        "column named as Moodle's field (so that Moodle maps it), 'Assignment: NAME (Real)' with "
        "each student's points and 'Assignment: NAME (Feedback)' with the points before and "
        "after a late penalty. A group's emails give one row each. On an error nothing is "
        "written.")
    cmd.add_argument("grades", metavar="GRADES.json", help="an --akida-json (or merged) file")
    cmd.add_argument("--out", required=True, metavar="OUT.csv", help="the CSV to import")
    cmd.add_argument("--assignment", required=True, metavar="NAME",
                     help="the assignment's name in Moodle (its grade item: 'Assignment: NAME')")
    cmd.add_argument("--identifier", choices=tuple(moodle.IDENTIFIERS), default="email",
                     help="the user field Moodle finds each student by (default: %(default)s)")
    cmd.add_argument("--roster", metavar="ROSTER.csv", help="a CSV with a 'student' column "
                     "(file stems) and the identifier's column (import-submissions' roster: "
                     "Gradescope's 'emails', 'sid'; or a column you add); without it the "
                     "student's name is the username")
    cmd.add_argument("--match", metavar="COLUMN", help="the roster's column holding the "
                     "identifier (default: emails for email, sid for idnumber)")
    cmd.add_argument("--out-of", type=float, metavar="N", help="scale the points to a grade "
                     "out of N (the grade item's maximum; default: the points as they are)")
    cmd.add_argument("--no-feedback", action="store_true", help="leave out the feedback column")


def _add_measure_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "measure", help="on the lab machine: run each graded student's model on the board and "
        "record the figures",
        description="Run each student's converted model, kept by a graded run's --akida-fbz "
        "DIR, on the Akida board: one at a time under the board lock, with progress, on the test "
        "set it was graded on. Writes the recording --akida-record writes (figures, or the "
        "board's refusal); then `merge GRADES.json... --replay BOARD.json` (or pytest "
        "--akida-replay BOARD.json) gives hardware_quality. A student already recorded for the "
        "same model is not measured again. Exit status 1 when some could not be measured.")
    cmd.add_argument("grades", nargs="+", metavar="GRADES.json",
                     help="the class's grade files (each shard's --akida-json)")
    cmd.add_argument("--fbz", required=True, metavar="DIR",
                     help="the kit: every shard's --akida-fbz folder, copied into one")
    cmd.add_argument("--device", type=int, metavar="N",
                     help="the N-th board of akida.devices() (default: the first)")
    cmd.add_argument("--record", required=True, metavar="BOARD.json",
                     help="the recording to write (added to, when it exists)")
    cmd.add_argument("--quality-max", type=float, default=QUALITY_MAX,
                     help="the bar in the printout (default: %(default)s)")


def _add_compare_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "compare", help="the students whose outcome, points or figures changed between two "
        "grade files",
        description="After a regrade: each student whose check outcomes, points or figures "
        "(metrics) differ between OLD and NEW, with the check or figure and both values, then a "
        "line counting them. Exit status 0 whether or not anything changed.")
    cmd.add_argument("old", metavar="OLD.json", help="the earlier --akida-json (or merged) file")
    cmd.add_argument("new", metavar="NEW.json", help="the later one")


def _summary_line(record: Mapping[str, object], points: Mapping[str, float]) -> str:
    quality = files.metric(record, "quality")
    shown = "no quality" if quality is None else f"quality {format_quality(quality)}"
    return f"{record['student']}: {files.points_text(record, points)}, {shown}"


@dataclass(frozen=True)
class OutputSettings:
    """What the outputs depend on: points, the quality bar, what students see on Gradescope."""

    points: Mapping[str, float]
    quality_max: float
    view: files.GradescopeView


def _settings(args: argparse.Namespace) -> OutputSettings:
    """--ini's settings (as the plugin reads them from its ini), then --points, --quality-max."""
    lines, quality_max = autograder.results_settings(args.ini) if args.ini else ([], None)
    view = files.GradescopeView(*autograder.results_view(args.ini)) if args.ini \
        else files.GradescopeView()
    if args.quality_max is not None:
        quality_max = args.quality_max
    if quality_max is not None:
        _check_quality_max(quality_max)
    points = catalog.parse_points([*lines, *args.points], where=f"{args.ini}: akida_points and "
                                  "--points" if args.ini else "--points")
    return OutputSettings(points, quality_max or QUALITY_MAX, view)


def _write(args: argparse.Namespace, records: list[dict[str, object]], settings: OutputSettings,
           not_graded: list[dict[str, str]]) -> None:
    similar = similarity.similar_pairs(records)  # across shards: the records' fingerprints
    points, quality_max = settings.points, settings.quality_max
    if args.json:
        files.write_json(records, args.json, not_graded=not_graded, similar=similar)
    if args.csv:
        files.write_csv(records, args.csv, points)
    if args.html:
        svg = plot.quality_plot_svg(records, quality_max=quality_max)
        page = table.standalone_html(records, points, plot_svg=svg, quality_max=quality_max,
                                     not_graded=not_graded, similar=similar)
        files.write_text(args.html, page)
    if args.gradescope:
        files.write_gradescope(records, args.gradescope, points, quality_max=quality_max,
                               view=settings.view)


def _check_quality_max(value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ReportError(f"--quality-max: {value} must be a positive number")


def _merge_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    records = files.merge([files.read_json(path) for path in args.inputs])
    if args.replay:
        records, notes = recording.replayed(records, recording.read(args.replay), args.replay,
                                            settings.quality_max)
        for note in notes:
            print(note)
    if args.late_penalty is not KEEP:
        records = late.penalize(records, args.late_penalty)
    records = catalog.with_points(records, settings.points)
    left_out = {item["file"]: item for path in args.inputs
                for item in files.read_not_graded(path)}  # one line per file, the last wins
    _write(args, records, settings, list(left_out.values()))
    for record in records:
        print(_summary_line(record, settings.points))
    for item in left_out.values():
        print(f"{item['file']}: not graded: {item['reason']}")
    return 0


def _autograder_command(args: argparse.Namespace) -> int:
    settings = autograder.autograder_settings(ini=args.ini, options=args.option,
                                              pytest_args=args.pytest_args, replay=args.replay)
    for note in settings.notes:
        print(f"{PROG} gradescope-autograder: note: {note}", file=sys.stderr)
    names = autograder.write_autograder(args.out, settings)
    print(f"wrote {args.out}: " + ", ".join(names))
    return 0


def _single_record(path: str) -> dict[str, object]:
    records = files.read_json(path)
    if len(records) != 1:
        names = ", ".join(str(r["student"]) for r in records) or "none"
        raise ReportError(f"{path}: holds {len(records)} students ({names}); gradescope-results "
                          "needs exactly one (grade one submission per run)")
    return records[0]


def _results_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    record = _single_record(args.grades)
    result = files.gradescope_result(record, settings.points, quality_max=settings.quality_max,
                                     view=settings.view)
    files.write_text(args.out, json.dumps(result, indent=2, ensure_ascii=False,
                                          allow_nan=False) + "\n")
    print(f"{args.out}: {_summary_line(record, settings.points)}")
    return 0


def _canvas_command(args: argparse.Namespace) -> int:
    records = files.read_json(args.grades)
    grades = {str(r["student"]): format_number(files.stored_points(r)[0]) for r in records}
    roster = canvas.read_roster(args.roster, args.match) if args.roster else None
    done = canvas.fill(canvas.read_gradebook(args.gradebook), grades, assignment=args.assignment,
                       match=args.match, roster=roster, where=f"--gradebook {args.gradebook}")
    files.write_text(args.out, done.text)
    print(f"{args.out}: {done.column}: {len(done.filled)} students filled"
          + (f" (Points Possible {done.points_possible})" if done.points_possible else ""))
    for label, names in (("graded but not in the gradebook", done.not_in_gradebook),
                         ("in the gradebook without a grade", done.without_grade)):
        if names:
            print(f"{label}: " + ", ".join(names))
    _print_late(records)
    return 0


def _print_late(records: list[files.Record]) -> None:
    """The late students' points, before and after the penalty (the LMS files hold the after)."""
    for record in records:
        earned, why = files.stored_points(record)
        if why:
            print(f"{record['student']}: {format_number(earned)} points {why}")


def _moodle_command(args: argparse.Namespace) -> int:
    records = files.read_json(args.grades)
    if args.roster:
        users: dict[str, str] | None = canvas.read_roster(
            args.roster, args.match or moodle.ROSTER_COLUMNS[args.identifier])
    elif args.identifier != "username":
        raise ReportError(f"--identifier {args.identifier} needs --roster: a CSV giving each "
                          "student's " + moodle.IDENTIFIERS[args.identifier].lower())
    else:
        users = None
    written = moodle.grades_csv(records, assignment=args.assignment,
                                identifier=args.identifier, users=users, out_of=args.out_of,
                                feedback=not args.no_feedback)
    files.write_text(args.out, written.text)
    print(f"{args.out}: {written.rows} rows for {moodle.grade_item(args.assignment)} "
          f"(users by {moodle.IDENTIFIERS[args.identifier]})")
    if written.without_user:
        print("graded but not in the roster (not written): " + ", ".join(written.without_user))
    _print_late(records)
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    old, new = files.read_json(args.old), files.read_json(args.new)
    found = compare.changes(old, new, old_name=args.old, new_name=args.new)
    for change in found:
        print(change)
    students = len({str(r["student"]) for r in [*old, *new]})
    print(compare.summary(found, students))
    return 0


MEASURE_FLAGS = ("--device N", "grade with --akida-fbz DIR elsewhere and run measure on the "
                 "machine the board is in")


def _measure_command(args: argparse.Namespace) -> int:
    from pytest_akida_grade import board, measure  # akida: only on the lab machine

    _check_quality_max(args.quality_max)
    students = measure.wanted(files.merge([files.read_json(path) for path in args.grades]))
    try:
        bench = board.Bench(args.device, flags=MEASURE_FLAGS)
        print(f"measure: {len(students)} students, on {bench.describe()}", flush=True)
        kit = labkit.read(Path(args.fbz), [w.student for w in students if w.sha256])
        tally = measure.Session(kit, bench, Path(args.record), lambda line: print(line,
                                flush=True), args.quality_max).run(students)
    except board.BoardError as error:
        raise ReportError(f"measure needs the lab board: {error}") from None
    except labkit.KitError as error:
        raise ReportError(str(error)) from None
    print(f"{args.record}: {tally.line()}")
    return 1 if tally.problems else 0


def _import_command(args: argparse.Namespace) -> int:
    planned, unknown = lms.import_submissions(Path(args.source), args.lms, Path(args.out),
                                              force=args.force, due=args.due)
    for line in lms.summary(planned, unknown, args.due):
        print(line)
    graded = sum(1 for item in planned if item.module is not None)
    print(f"wrote {graded} submissions (notebooks and modules) and "
          f"{Path(args.out) / 'roster.csv'} ({len(planned) - graded} students without one)")
    return 0


COMMANDS = {"merge": _merge_command, "gradescope-autograder": _autograder_command,
            "gradescope-results": _results_command, "import-submissions": _import_command,
            "canvas": _canvas_command, "moodle": _moodle_command,
            "compare": _compare_command, "measure": _measure_command}


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_akida_grade COMMAND ...`; errors go to stderr with exit status 2."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message already
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return COMMANDS[args.command](args)
    except (ReportError, autograder.AutograderError, catalog.LineError, unpack.Refused,
            canvas.CanvasError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
