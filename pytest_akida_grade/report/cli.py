"""`python -m pytest_akida_grade merge FILE.json ...`: merge grade files and write the reports.

Errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from typing import Any

from pytest_akida_grade import catalog
from pytest_akida_grade.quality import QUALITY_MAX
from pytest_akida_grade.report import files, plot, table
from pytest_akida_grade.report.files import ReportError, format_number, format_quality

PROG = "python -m pytest_akida_grade"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="Combine and export Akida grade files.")
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
    defaults = ", ".join(f"{k}={format_number(v)}" for k, v in catalog.DEFAULT_POINTS.items())
    merge_cmd.add_argument("--points", action="extend", nargs="+", default=[],
                           metavar="CHECK=PTS", help=f"points per check (default: {defaults})")
    merge_cmd.add_argument("--quality-max", type=float, default=QUALITY_MAX,
                           help="full credit below this quality (default: %(default)s)")
    return parser


def _summary_line(record: Mapping[str, Any]) -> str:
    quality = files.metric(record, "quality")
    shown = "no quality" if quality is None else f"quality {format_quality(quality)}"
    return (f"{record['student']}: {format_number(record['points'])} / "
            f"{format_number(record['max_points'])} points, {shown}")


def _write(args: argparse.Namespace, records: list[dict[str, Any]],
           points: Mapping[str, float]) -> None:
    if args.json:
        files.write_json(records, args.json)
    if args.csv:
        files.write_csv(records, args.csv, points)
    if args.html:
        svg = plot.quality_plot_svg(records, quality_max=args.quality_max)
        page = table.standalone_html(records, points, plot_svg=svg, quality_max=args.quality_max)
        files.write_text(args.html, page)
    if args.gradescope:
        files.write_gradescope(records, args.gradescope, points, quality_max=args.quality_max)


def _merge_command(args: argparse.Namespace) -> int:
    if not math.isfinite(args.quality_max) or args.quality_max <= 0:
        raise ReportError(f"--quality-max: {args.quality_max} must be a positive number")
    points = catalog.parse_points(args.points, where="--points")
    records = catalog.with_points(files.merge([files.read_json(path) for path in args.inputs]),
                                  points)
    _write(args, records, points)
    for record in records:
        print(_summary_line(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_akida_grade merge ...`; errors go to stderr with exit status 2."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message already
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _merge_command(args)
    except (ReportError, catalog.PointsError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
