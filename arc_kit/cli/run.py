"""Command `arc-kit run`: test-time training, augmented inference and voting under a hard time budget."""

from arc_kit.base.errors import ArcKitError
from arc_kit.cli.common import add_config_args
from arc_kit.run.config import check_run_config, load_run_config
from arc_kit.run.pipeline import supervise


def run_config_from_args(args):
    """The RunConfig of an `arc-kit run` command line: the config, its overrides, then the path options."""
    if args.config is None:
        raise ArcKitError("run: --config is required (a YAML file or a shipped name such as cpu-demo)")
    overrides = list(args.overrides)
    if args.minutes is not None:
        import math

        if not math.isfinite(args.minutes) or args.minutes <= 0:
            raise ArcKitError(f"--minutes: must be a finite number of minutes > 0, got {args.minutes}")
        overrides.append(f"budget.total_minutes={args.minutes!r}")
    if args.no_progress:
        overrides.append("output.progress=false")
    cfg = load_run_config(args.config, overrides)
    # Path options are paths, never YAML (`--checkpoint 010` is not 8, `--tasks "a #1.json"` is not `a`).
    if args.tasks:
        # a new source starts a fresh selection: the config's selection was made for its own source
        given = {o.split("=", 1)[0].strip() for o in args.overrides}
        cfg.tasks.source = args.tasks
        for key in ("solutions", "ids", "max_size", "limit"):
            if f"tasks.{key}" not in given:
                setattr(cfg.tasks, key, None)
    if args.checkpoint:
        cfg.model.checkpoint = args.checkpoint
    return check_run_config(cfg, str(args.config))


def cmd_run(args) -> int:
    from pathlib import Path

    cfg = run_config_from_args(args)
    out = Path(args.out) if args.out else Path(cfg.output.dir.format(name=cfg.name or "run"))
    return supervise(cfg, out, fresh=args.fresh, config_label=str(args.config))


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="test-time train, predict and vote into submission.json under a time budget",
        description="Load tasks (leniently), write a fallback submission at once, then test-time train on the tasks' "
        "demonstrations, run augmented inference, vote, and score when solutions are known. "
        "Re-running with the same --out resumes. Exit status: 0 every stage finished; 4 a valid "
        "submission.json was written but a stage failed; 2 bad config, tasks, checkpoint or run directory, "
        "or a run directory another arc-kit command holds (nothing touched).",
    )
    add_config_args(p, required=True)
    p.add_argument(
        "--tasks",
        metavar="SOURCE",
        default=None,
        help="task source replacing the config's tasks.source; starts a fresh selection (the config's "
        "tasks.ids/max_size/limit/solutions apply only when given again as overrides)",
    )
    p.add_argument("--checkpoint", metavar="MODEL_DIR", default=None, help="start from this model checkpoint")
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: output.dir of the config)")
    p.add_argument("--fresh", action="store_true", help="discard a previous run in --out instead of resuming it")
    p.add_argument("--minutes", type=float, default=None, help="shorthand for budget.total_minutes=M")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=cmd_run)
