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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_akida_grade import catalog, similarity
from pytest_akida_grade.quality import QUALITY_MAX
from pytest_akida_grade.report import autograder, canvas, files, lms, plot, table, unpack
from pytest_akida_grade.report.files import ReportError, format_number, format_quality

PROG = "python -m pytest_akida_grade"

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
    _add_autograder_parser(commands)
    _add_results_parser(commands)
    _add_import_parser(commands)
    _add_canvas_parser(commands)
    return parser


def _add_import_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "import-submissions", help="make a students folder of an LMS download",
        description="Write one <student>.py (and <student>.weights.h5) per student, their "
        "latest, and roster.csv (the LMS's names, ids, late flags) from a Canvas, Gradescope "
        "or Moodle download (the zip or its unzipped folder). An unsafe download (paths "
        "climbing out, links, oversized) is refused before anything is written.")
    cmd.add_argument("source", metavar="SOURCE", help="the LMS's zip or its unzipped folder")
    cmd.add_argument("--from", dest="lms", required=True, choices=lms.LMS_NAMES,
                     help="the LMS the download comes from")
    cmd.add_argument("--out", required=True, metavar="DIR", help="the students folder to write")
    cmd.add_argument("--force", action="store_true",
                     help="write into a non-empty DIR (over a previous import's files)")


def _add_autograder_parser(commands: Commands) -> None:
    cmd = commands.add_parser(
        "gradescope-autograder", help="write a Gradescope autograder zip (setup.sh, "
        "run_autograder, the settings)",
        description="Write the zip for Gradescope's 'Zip file upload': setup.sh installs "
        "a supported Python (the image's own, else 3.11) and the stack pinned to this "
        "environment's versions, run_autograder grades "
        "/autograder/submission/<name>.py with these settings. Settings are checked first: on "
        "an error nothing is written.")
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


def _summary_line(record: Mapping[str, object]) -> str:
    quality = files.metric(record, "quality")
    shown = "no quality" if quality is None else f"quality {format_quality(quality)}"
    earned, maximum = (value if files.is_number(value := record.get(key)) else 0.0
                       for key in ("points", "max_points"))
    return (f"{record['student']}: {format_number(earned)} / {format_number(maximum)} points, "
            f"{shown}")


@dataclass(frozen=True)
class Settings:
    """What the outputs depend on: points, the quality bar, what students see on Gradescope."""

    points: Mapping[str, float]
    quality_max: float
    view: files.GradescopeView


def _settings(args: argparse.Namespace) -> Settings:
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
    return Settings(points, quality_max or QUALITY_MAX, view)


def _write(args: argparse.Namespace, records: list[dict[str, object]], settings: Settings,
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
    records = catalog.with_points(files.merge([files.read_json(path) for path in args.inputs]),
                                  settings.points)
    left_out = {item["file"]: item for path in args.inputs
                for item in files.read_not_graded(path)}  # one line per file, the last wins
    _write(args, records, settings, list(left_out.values()))
    for record in records:
        print(_summary_line(record))
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
    print(f"{args.out}: {_summary_line(catalog.with_points([record], settings.points)[0])}")
    return 0


def _canvas_command(args: argparse.Namespace) -> int:
    records = files.read_json(args.grades)
    grades = {str(r["student"]): format_number(
        points if files.is_number(points := r.get("points"))
        else catalog.score(r, catalog.DEFAULT_POINTS)[0]) for r in records}
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
    return 0


def _import_command(args: argparse.Namespace) -> int:
    planned, unknown = lms.import_submissions(Path(args.source), args.lms, Path(args.out),
                                              force=args.force)
    for line in lms.summary(planned, unknown):
        print(line)
    graded = sum(1 for item in planned if item.module is not None)
    print(f"wrote {graded} modules and {Path(args.out) / 'roster.csv'} "
          f"({len(planned) - graded} students without a module)")
    return 0


COMMANDS = {"merge": _merge_command, "gradescope-autograder": _autograder_command,
            "gradescope-results": _results_command, "import-submissions": _import_command,
            "canvas": _canvas_command}


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_akida_grade COMMAND ...`; errors go to stderr with exit status 2."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message already
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return COMMANDS[args.command](args)
    except (ReportError, autograder.AutograderError, catalog.PointsError, unpack.Refused,
            canvas.ReportError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
