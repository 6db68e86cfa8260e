"""Command `report`: the HTML run explorer (report.html) of a run directory, or of predictions files."""

import sys

from arc_kit.run.html_report import ReportInputs, build_report


def cmd_report(args) -> int:
    req = ReportInputs(
        paths=list(args.paths),
        tasks=args.tasks,
        solutions=args.solutions,
        ids=args.ids,
        configs=list(args.configs or []),
        consistency=list(args.consistency or []),
        output=args.output,
    )
    path, view = build_report(req)
    for note in view.notes[:20]:
        print(f"note: {note}", file=sys.stderr)
    marks = [t.mark for t in view.tasks]
    counts = ", ".join(f"{marks.count(m)} {m}" for m in ("solved", "found", "unsolved", "unknown") if marks.count(m))
    print(f"wrote {path} ({len(view.tasks)} tasks: {counts or 'none'})")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write report.html (the run explorer) for a run directory or predictions files",
        description="Build report.html: scores, stage timings, plan, training loss, and one card per task with "
        "its demonstrations, attempts, top candidates and (when known) the answer. Give a run directory "
        "(writes RUN/report.html), or predictions .jsonl files with --tasks (and --solutions). --configs "
        "compares voting configs side by side; the first one picks the attempts shown.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_OR_PREDICTIONS", help="a run directory, or predictions files")
    p.add_argument("--tasks", metavar="SOURCE", default=None, help="task source (needed for predictions files)")
    p.add_argument("--solutions", metavar="FILE", default=None, help="solutions JSON (answers and scores)")
    p.add_argument("--ids", metavar="IDS", default=None, help="only these tasks: a,b,c or @file.txt")
    p.add_argument(
        "--configs",
        nargs="+",
        metavar="CONFIG",
        default=None,
        help="voting configs side by side (default: the run's own, plurality, confidence)",
    )
    p.add_argument("--consistency", nargs="+", metavar="FILE", default=None, help="consistency.jsonl file(s)")
    p.add_argument("-o", "--output", metavar="FILE", default=None, help="the page (default RUN/report.html)")
    p.set_defaults(func=cmd_report)
