"""Command `arc-kit run`: test-time training, augmented inference and voting under a hard time budget."""

from .cli import add_config_args


def cmd_run(args) -> int:
    from pathlib import Path

    from .errors import ArcKitError
    from .pipeline import run
    from .run_config import load_run_config
    overrides = list(args.overrides)
    if args.tasks:
        overrides.append(f"tasks.source={args.tasks}")
    if args.checkpoint:
        overrides.append(f"model.checkpoint={args.checkpoint}")
    if args.minutes is not None:
        overrides.append(f"budget.total_minutes={args.minutes}")
    if args.no_progress:
        overrides.append("output.progress=false")
    if args.config is None:
        raise ArcKitError("run: --config is required (a YAML file or a shipped name such as cpu-demo)")
    cfg = load_run_config(args.config, overrides)
    out = Path(args.out) if args.out else Path(cfg.output.dir.format(name=cfg.name or "run"))
    return run(cfg, out, fresh=args.fresh, config_label=str(args.config))


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="test-time train, predict and vote into submission.json under a time budget",
        description="Load tasks (leniently), write a fallback submission at once, then test-time train on the tasks' "
                    "demonstrations, run augmented inference, vote, and score when solutions are known. "
                    "Re-running with the same --out resumes.")
    add_config_args(p)
    p.add_argument("--tasks", metavar="SOURCE", default=None,
                   help="task source replacing the config's tasks.source (its selections still apply)")
    p.add_argument("--checkpoint", metavar="MODEL_DIR", default=None, help="start from this model checkpoint")
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: output.dir of the config)")
    p.add_argument("--fresh", action="store_true", help="discard a previous run in --out instead of resuming it")
    p.add_argument("--minutes", type=float, default=None, help="shorthand for budget.total_minutes=M")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=cmd_run)
