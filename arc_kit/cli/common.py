"""Command-line helpers shared by the command modules: config and task-source arguments."""

import argparse

from arc_kit.data import TaskSet, load_tasks, parse_ids


def add_config_args(
    parser: argparse.ArgumentParser, default: str | None = None, help_name: str = "", required: bool = False
) -> None:
    """`--config PATH_OR_NAME` (shown as required where it is) plus trailing `key=value` overrides."""
    parser.add_argument(
        "--config", default=default, required=required, help=f"YAML file or the name of a shipped config{help_name}"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides as dotted key=value pairs")


def add_task_args(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """SOURCE (or --tasks SOURCE), --solutions, --ids, --max-size, --limit; the source lands in args.tasks."""
    what = "challenges JSON file, directory of task JSON files, or bundled set (e.g. arc-agi-2/evaluation)"
    if positional:
        parser.add_argument("tasks", metavar="SOURCE", help=what)
    else:
        parser.add_argument("--tasks", metavar="SOURCE", required=True, help=what)
    parser.add_argument(
        "--solutions",
        metavar="FILE",
        default=None,
        help="solutions JSON (default: *_solutions.json beside a *_challenges.json)",
    )
    parser.add_argument("--ids", metavar="IDS", default=None, help="only these tasks: a,b,c or @file.txt")
    parser.add_argument(
        "--max-size",
        type=int,
        metavar="N",
        default=None,
        help="only tasks whose visible grids (demonstrations, test inputs) fit N x N",
    )
    parser.add_argument("--limit", type=int, metavar="N", default=None, help="only the first N tasks")


def tasks_from_args(args: argparse.Namespace, lenient: bool = False) -> TaskSet:
    ids = parse_ids(args.ids) if getattr(args, "ids", None) else None
    return load_tasks(
        args.tasks,
        solutions=getattr(args, "solutions", None),
        ids=ids,
        max_size=getattr(args, "max_size", None),
        limit=getattr(args, "limit", None),
        lenient=lenient,
    )


def task_input_files(args: argparse.Namespace) -> list[str]:
    """The files a command reads for its tasks (source, solutions given or found beside it, --ids @file):
    none of them may be an output."""
    source = str(getattr(args, "tasks", "") or "")
    files = [source] if source else []
    solutions = getattr(args, "solutions", None)
    if solutions:
        files.append(str(solutions))
    elif source.endswith("_challenges.json"):
        files.append(source[: -len("_challenges.json")] + "_solutions.json")
    ids = getattr(args, "ids", None)
    if ids and ids.startswith("@"):
        files.append(ids[1:])
    return files
