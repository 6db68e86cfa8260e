"""Commands `vote`, `validate`, `score`, `compare`, `revote`: from predictions to a checked, scored submission."""

import json
import re
import sys
from pathlib import Path

from arc_kit.base.config import config_roots
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import (
    atomic_write_text,
    check_writable_dir,
    check_writable_file,
    is_within,
    path_exists,
    read_json,
    refuse_input_as_output,
)
from arc_kit.cli.common import add_config_args, add_task_args, task_input_files, tasks_from_args
from arc_kit.consistency import attach_consistency
from arc_kit.predictions import parse_weighted_path
from arc_kit.revote import config_names, read_predictions_files, revote, score_files
from arc_kit.scoring import compare_reports
from arc_kit.submission import (
    FillReport,
    build_submission,
    expected_test_counts,
    validate_submission,
    write_submission,
)
from arc_kit.vote import CONSISTENCY_STRATEGIES, load_vote_config, rank_tally, tally

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _eprint(*a) -> None:
    print(*a, file=sys.stderr)


def _split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """Positional items -> (prediction file specs, key=value overrides). argparse hands every positional to
    the first nargs='+' argument, so overrides written after the files arrive mixed with them."""
    files, overrides = [], []
    for x in items:
        if _OVERRIDE.match(x) and not path_exists(parse_weighted_path(x)[0]):
            overrides.append(x)
        else:
            files.append(x)
    return files, overrides


def _inputs(args, prediction_specs=()) -> list[str | Path]:
    """Every file a command reads: predictions (weights stripped), tasks, solutions, ids, config."""
    out: list[str | Path | None] = [parse_weighted_path(s)[0] for s in prediction_specs]
    out += task_input_files(args)
    out.append(getattr(args, "submission", None))
    config = getattr(args, "config", None)
    if config and Path(config).exists():
        out.append(config)
    return [p for p in out if p is not None and not isinstance(p, list)]


def _check_outputs(args, prediction_specs, outputs: list[tuple[str, str | None]]) -> None:
    """Output files are writable names, not one of the inputs, and not each other."""
    inputs = _inputs(args, prediction_specs)
    given = [(opt, out) for opt, out in outputs if out]
    for i, (opt, out) in enumerate(given):
        check_writable_file(out, opt)
        refuse_input_as_output(out, inputs + [o for _, o in given[:i]], opt)


def _print_notes(notes: list[str], limit: int = 20) -> None:
    for n in notes[:limit]:
        _eprint(f"note: {n}")
    if len(notes) > limit:
        _eprint(f"note: ... and {len(notes) - limit} more")


# -----------------------------------------------------------------------------
# vote


def cmd_vote(args) -> int:
    files, overrides = _split_items(list(args.predictions) + list(args.overrides))
    _check_outputs(args, files, [("-o", args.output), ("--report", args.report)])
    # lenient: a broken task must not cost the whole submission; it gets [[0]] attempts
    task_set = tasks_from_args(args, lenient=True)
    _print_notes(task_set.problems)
    config = load_vote_config(args.config, overrides)
    notes: list[str] = []
    preds = read_predictions_files(files, notes)
    t = tally(preds, task_set)
    notes += t.problems
    attach_consistency(t, files, args.consistency, config.strategy in CONSISTENCY_STRATEGIES, notes)
    votes = rank_tally(t, task_set, config)
    report = FillReport()
    sub = build_submission(votes, task_set, config.fallback, report)
    bad = validate_submission(sub, task_set)
    if bad:  # cannot happen for a correct build_submission: refuse to write a broken file
        raise RuntimeError(f"built submission is invalid: {bad[0]}")  # a bug: exit 3
    write_submission(args.output, sub)
    _print_notes(notes)
    _eprint(
        f"voted {t.n_predictions} prediction(s) from {len(files)} file(s) with '{config.strategy}' "
        f"({t.n_ignored} ignored)"
    )
    _eprint(report.summary())
    if args.report:
        atomic_write_text(args.report, "\n".join(report.filled) + ("\n" if report.filled else ""))
    _eprint(f"wrote {args.output}")
    return 0


# -----------------------------------------------------------------------------
# validate


def cmd_validate(args) -> int:
    sub = read_json(args.submission, "submission file")
    task_set = tasks_from_args(args, lenient=True)  # tasks dropped as invalid still need entries
    _print_notes(task_set.problems)
    problems = validate_submission(sub, task_set)
    if problems:
        for p in problems:
            print(f"{args.submission}: {p}")
        _eprint(f"invalid: {len(problems)} problem(s)")
        return 1
    counts = expected_test_counts(task_set)
    print(f"{args.submission}: valid ({len(counts)} tasks, {sum(counts.values())} test inputs)")
    return 0


# -----------------------------------------------------------------------------
# score / compare


def cmd_score(args) -> int:
    task_set = tasks_from_args(args)
    notes: list[str] = []
    report = score_files(args.submission, task_set, args.vote, notes)
    _print_notes(notes + report.problems)
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    if not args.no_table:
        print(report.table())
        print()
    print(report.summary())
    return 0


def cmd_compare(args) -> int:
    task_set = tasks_from_args(args)
    notes: list[str] = []
    a = score_files([args.a], task_set, args.vote, notes)
    b = score_files([args.b], task_set, args.vote, notes)
    _print_notes(notes)
    st = compare_reports(a, b, "A", "B").stats()
    if args.json:
        fa, fb = a.fractions(), b.fractions()
        print(
            json.dumps(
                {
                    "a": {
                        "file": args.a,
                        "score_per_task": a.score_per_task,
                        "score_per_output": a.score_per_output,
                        "ci95": list(a.ci95()),
                    },
                    "b": {
                        "file": args.b,
                        "score_per_task": b.score_per_task,
                        "score_per_output": b.score_per_output,
                        "ci95": list(b.ci95()),
                    },
                    "comparison": st,
                    "tasks": {t: [fa[t], fb[t]] for t in fa},
                }
            )
        )
        return 0
    for name, f, r in (("A", args.a, a), ("B", args.b, b)):
        lo, hi = r.ci95()
        print(f"{name}: {f}: per-task {r.score_per_task:.4f} [{lo:.4f}, {hi:.4f}]  per-output {r.score_per_output:.4f}")
    lo, hi = st["ci95_diff"]
    print(f"B - A per task: {st['mean_diff']:+.4f}  95% CI [{lo:+.4f}, {hi:+.4f}]  over {st['n_tasks']} tasks")
    print(
        f"tasks B better: {st['wins_b']}, A better: {st['wins_a']}, same: {st['ties']}  "
        f"(sign test p={st['p_sign']:.3g}, Wilcoxon p={st['p_wilcoxon']:.3g})"
    )
    print(st["verdict"])
    return 0


# -----------------------------------------------------------------------------
# revote


def _shipped_voting_configs() -> list[str]:
    names = {f.stem for r in config_roots() for f in (r / "voting").glob("*.yaml") if not f.stem.startswith("_")}
    order = ["reference", "plurality", "confidence", "filtered", "consistency", "votes-consistency"]
    return [n for n in order if n in names] + sorted(names - set(order))


def _check_revote_output(args, names: list[str]) -> None:
    """-o DIR is a folder name, and none of the files revote writes there is an input."""
    out = Path(args.output)
    check_writable_dir(out, "-o")
    inputs = _inputs(args, args.predictions) + list(args.configs or [])
    refuse_input_as_output(out / "revote.json", inputs, "-o")
    for name in names:
        check_writable_dir(out / name, "-o")
        for inp in inputs:
            if Path(inp).exists() and is_within(inp, out / name):
                raise ArcKitError(
                    f"-o {args.output}: revote rewrites {out / name}, which holds an input ({inp}); "
                    "choose another output folder"
                )


def cmd_revote(args) -> int:
    import contextlib

    from arc_kit.run.lock import RunLock

    specs = args.configs or _shipped_voting_configs()
    if args.output:
        _check_revote_output(args, config_names(specs))
    strategies = [load_vote_config(spec).strategy for spec in specs]  # every config checked before any work
    task_set = tasks_from_args(args)
    notes: list[str] = []
    preds = read_predictions_files(args.predictions, notes)
    t = tally(preds, task_set)  # group once, rank under every config
    needed = any(s in CONSISTENCY_STRATEGIES for s in strategies)
    attach_consistency(t, args.predictions, args.consistency, needed, notes)
    _print_notes(notes + t.problems)
    with RunLock(args.output, "arc-kit revote") if args.output else contextlib.nullcontext():
        result = revote(
            t,
            task_set,
            specs,
            output=args.output,
            meta={"predictions": list(args.predictions), "n_predictions": t.n_predictions},
        )
    rows = result["configs"]
    if args.json:
        print(json.dumps(result))
        return 0
    w = max(6, *(len(r["config"]) for r in rows))
    print(
        f"{'config':<{w}}  {'task@1':>7}  {'task@2':>7}  {'output@2':>8}  {'95% CI (task@2)':<17}  "
        f"vs {rows[0]['config']}"
    )
    for r in rows:
        lo, hi = r["ci95"]
        vs = "(baseline)"
        if "vs_first" in r:
            v = r["vs_first"]
            mark = (
                "better" if v["significant"] and v["wins_b"] > v["wins_a"] else "worse" if v["significant"] else "n.s."
            )
            vs = f"{v['mean_diff']:+.4f} +{v['wins_b']}/-{v['wins_a']} p={v['p_sign']:.3g} {mark}"
        print(
            f"{r['config']:<{w}}  {r['pass_at_1']:>7.4f}  {r['score_per_task']:>7.4f}  "
            f"{r['score_per_output']:>8.4f}  [{lo:.4f}, {hi:.4f}]  {vs}"
        )
    if args.output:
        _eprint(f"wrote {args.output}/<config>/submission.json, score.json and {args.output}/revote.json")
    return 0


# -----------------------------------------------------------------------------


def add_commands(subparsers) -> None:
    preds_help = "predictions .jsonl file(s); FILE:WEIGHT weights every line of a file (e.g. a.jsonl:2.0)"
    cons_help = (
        "consistency scores (a run's consistency.jsonl) for the consistency strategies "
        "(default: consistency.jsonl beside the predictions, when there)"
    )

    p = subparsers.add_parser(
        "vote",
        help="vote predictions into a complete, valid submission.json",
        description="Vote predictions (one line = one vote) into submission.json. "
        "key=value overrides of the voting config may follow the files.",
    )
    p.add_argument("predictions", nargs="+", metavar="PREDICTIONS", help=preds_help)
    add_task_args(p, positional=False)
    add_config_args(
        p, default="reference", help_name=" under configs/voting/: reference, plurality, confidence, filtered"
    )
    p.add_argument("-o", "--output", default="submission.json", help="submission file (default submission.json)")
    p.add_argument("--report", metavar="FILE", default=None, help="write one line per fallback-filled attempt")
    p.add_argument("--consistency", nargs="+", metavar="FILE", default=None, help=cons_help)
    p.set_defaults(func=cmd_vote)

    p = subparsers.add_parser(
        "validate",
        help="check a submission.json against the tasks (exit 0 valid, 1 not)",
        description="Check that a submission.json has every task and test input with two valid "
        "attempts: exit 0 when valid, 1 with one line per problem, 2 when a file "
        "cannot be read.",
    )
    p.add_argument("submission", metavar="SUBMISSION", help="submission.json to check")
    add_task_args(p, positional=False)
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser(
        "score",
        help="score a submission.json or voted predictions against solutions",
        description="Score a submission.json (or predictions .jsonl files, voted first) against "
        "the tasks' solutions: per task and per test output, pass@1 and pass@2, "
        "with a 95% confidence interval. Malformed attempts count as wrong.",
    )
    p.add_argument(
        "submission",
        nargs="+",
        metavar="SUBMISSION",
        help="submission.json (pass@1 = attempt_1, pass@2 = either) or predictions .jsonl file(s)",
    )
    add_task_args(p, positional=False)
    p.add_argument(
        "--vote", metavar="CONFIG", default=None, help="voting config for predictions files (default reference)"
    )
    p.add_argument("--json", action="store_true", help="print only the score JSON object on stdout")
    p.add_argument("--no-table", action="store_true", help="omit the per-task table")
    p.set_defaults(func=cmd_score)

    p = subparsers.add_parser(
        "compare",
        help="does B beat A on the same tasks? (paired sign test)",
        description="Score two submissions (or predictions files) on the same tasks and test "
        "whether B beats A: per-task differences, sign test and Wilcoxon test.",
    )
    p.add_argument("a", metavar="SUB_A", help="submission.json or predictions .jsonl")
    p.add_argument("b", metavar="SUB_B", help="submission.json or predictions .jsonl")
    add_task_args(p, positional=False)
    p.add_argument("--vote", metavar="CONFIG", default=None, help="voting config for predictions files")
    p.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser(
        "revote",
        help="re-vote cached predictions under several voting configs and score each",
        description="Vote the same predictions under several voting configs, score each against "
        "the solutions and compare them with the first (the baseline).",
    )
    p.add_argument("predictions", nargs="+", metavar="PREDICTIONS", help=preds_help)
    add_task_args(p, positional=False)
    p.add_argument(
        "--configs",
        nargs="+",
        metavar="CONFIG",
        default=None,
        help="voting configs (paths or shipped names; default: every shipped one); the first is the baseline",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default=None,
        help="write DIR/<config>/submission.json and score.json, and DIR/revote.json",
    )
    p.add_argument("--consistency", nargs="+", metavar="FILE", default=None, help=cons_help)
    p.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    p.set_defaults(func=cmd_revote)
