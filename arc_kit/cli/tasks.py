"""Commands `arc-kit tasks` (list and summarise tasks) and `arc-kit show` (draw one task)."""

import json
import sys
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import check_writable_file, refuse_input_as_output
from arc_kit.cli.common import add_task_args, task_input_files, tasks_from_args
from arc_kit.data import Task, load_tasks, task_id_problem, visible_grids
from arc_kit.render import save_task_picture
from arc_kit.submission import submission_attempts


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "tasks",
        help="list and summarise the tasks of a source",
        description="List tasks (id, demonstrations, test inputs, largest grid, solutions) and summary counts.",
    )
    add_task_args(p)
    p.add_argument("--lenient", action="store_true", help="skip invalid tasks and list them instead of failing")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_tasks)

    p = subparsers.add_parser(
        "show",
        help="draw a task (and a submission's attempts) as PNG or SVG",
        description="Draw a task's pairs; with --submission, its attempts beside the "
        "truth (green frame: right, red: wrong).",
    )
    p.add_argument("task_id", metavar="TASK_ID", help="id of the task to draw")
    p.add_argument(
        "--tasks",
        metavar="SOURCE",
        required=True,
        help="challenges JSON file, directory of task JSON files, or bundled set",
    )
    p.add_argument("--solutions", metavar="FILE", default=None, help="solutions JSON for the truth")
    p.add_argument("--submission", metavar="FILE", default=None, help="submission.json whose attempts to draw")
    p.add_argument(
        "-o", "--output", metavar="FILE", default=None, help="picture to write: .png or .svg (default: TASK_ID.png)"
    )
    p.set_defaults(func=cmd_show)


def task_row(task: Task) -> dict:
    grids = visible_grids(task)  # test outputs are answers: sizes, like selections, never look at them
    return {
        "id": task.id,
        "train": len(task.train),
        "test": len(task.test),
        "max_height": max(len(g) for g in grids),
        "max_width": max(len(g[0]) for g in grids),
        "has_solutions": task.has_solutions,
        "version": task.version,
    }


def cmd_tasks(args) -> int:
    ts = tasks_from_args(args, lenient=args.lenient)
    rows = [task_row(t) for t in ts.tasks.values()]
    sizes = [max(r["max_height"], r["max_width"]) for r in rows]
    summary = {
        "tasks": len(rows),
        "test_inputs": sum(r["test"] for r in rows),
        "demonstration_pairs": sum(r["train"] for r in rows),
        "with_solutions": sum(r["has_solutions"] for r in rows),
        "multi_test_tasks": sum(r["test"] > 1 for r in rows),
        "max_grid_size": max(sizes, default=0),
        "fit": {str(n): sum(s <= n for s in sizes) for n in (10, 15, 20, 30)},  # tasks fitting n x n
        "invalid": len(ts.invalid),
    }
    if args.json:
        print(
            json.dumps(
                {"source": ts.source, "summary": summary, "tasks": rows, "invalid": ts.invalid, "problems": ts.problems}
            )
        )
        return 0
    for line in ts.problems:
        print(f"warning: {line}", file=sys.stderr)
    if rows:
        w = max(8, max(len(r["id"]) for r in rows))
        print(f"{'task':<{w}}  train  test  max grid  solutions")
        for r in rows:
            size = f"{r['max_height']}x{r['max_width']}"
            print(
                f"{r['id']:<{w}}  {r['train']:>5}  {r['test']:>4}  {size:>8}  {'yes' if r['has_solutions'] else 'no'}"
            )
        print()
    fit = ", ".join(f"{v} fit {k}x{k}" for k, v in summary["fit"].items())
    print(
        f"{ts.source}: {summary['tasks']} tasks, {summary['demonstration_pairs']} demonstration pairs, "
        f"{summary['test_inputs']} test inputs ({summary['multi_test_tasks']} tasks with several), "
        f"{summary['with_solutions']} with solutions"
    )
    print(f"grid sizes: largest {summary['max_grid_size']}; {fit}")
    if ts.invalid:
        print(f"invalid (skipped): {len(ts.invalid)}: {', '.join(ts.invalid)}")
    return 0


def cmd_show(args) -> int:
    problem = task_id_problem(args.task_id)
    if problem:  # the default output name is TASK_ID.png: it must stay in the current folder
        raise ArcKitError(f"TASK_ID: {problem}")
    output = args.output or f"{args.task_id}.png"
    if Path(output).suffix.lower() not in (".png", ".svg"):
        raise ArcKitError(f"-o {output}: picture must end in .png or .svg")
    check_writable_file(output, "-o")
    refuse_input_as_output(output, task_input_files(args) + [args.submission], "-o")
    task = load_tasks(args.tasks, solutions=args.solutions, ids=[args.task_id]).tasks[args.task_id]
    attempts = submission_attempts(args.submission, task) if args.submission else None
    out = save_task_picture(task, output, attempts)
    print(f"wrote {out}")
    return 0
