"""Re-voting experiments: one tally of cached predictions ranked under several voting configs, scored and compared."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json, open_read
from arc_kit.consistency import attach_consistency
from arc_kit.data import TaskSet
from arc_kit.predictions import Prediction, is_predictions_file, iter_predictions, parse_weighted_path
from arc_kit.scoring import ScoreReport, compare_reports, score_submission, score_votes
from arc_kit.submission import build_submission, is_submission_file, read_submission, write_submission
from arc_kit.vote import CONSISTENCY_STRATEGIES, Tally, load_vote_config, rank_tally, tally


def config_names(specs: list[str]) -> list[str]:
    """One name per voting config (its output sub-folder and table row): its file stem or shipped name, made unique."""
    names: list[str] = []
    for spec in specs:
        name = Path(spec).stem if spec.endswith((".yaml", ".yml")) else spec
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def revote(
    t: Tally, task_set: TaskSet, specs: list[str], output: str | Path | None = None, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Rank the tally `t` under every voting config in `specs` (names or YAML paths), score each against the task
    set's solutions and compare it with the first (paired, per task). With `output`, each config's
    submission.json and score.json go to OUTPUT/<config>/ and the table to OUTPUT/revote.json.
    Returns {"source", "n_tasks", **meta, "configs": [one row per config]}."""
    rows: list[dict[str, Any]] = []
    reports: list[tuple[str, ScoreReport]] = []
    for spec, name in zip(specs, config_names(specs), strict=True):
        config = load_vote_config(spec)
        votes = rank_tally(t, task_set, config)
        report = score_votes(votes, task_set, config.fallback)
        row = {
            "config": name,
            "path": spec,
            "strategy": config.strategy,
            "score_per_task": report.score_per_task,
            "score_per_output": report.score_per_output,
            "ci95": list(report.ci95()),
            "pass_at_1": report.pass_at(1),
            "pass_at_1_per_output": report.pass_at_per_output(1),
        }
        if reports:
            st = compare_reports(reports[0][1], report, reports[0][0], name).stats()
            row["vs_first"] = {
                k: st[k]
                for k in (
                    "mean_diff",
                    "ci95_diff",
                    "wins_b",
                    "wins_a",
                    "ties",
                    "p_sign",
                    "p_wilcoxon",
                    "significant",
                    "verdict",
                )
            }
        rows.append(row)
        reports.append((name, report))
        if output:
            out = Path(output) / name
            write_submission(out / "submission.json", build_submission(votes, task_set, config.fallback))
            atomic_write_json(out / "score.json", report.to_json())
    result = {"source": task_set.source, **(meta or {}), "n_tasks": len(task_set.tasks), "configs": rows}
    if output:
        atomic_write_json(Path(output) / "revote.json", result, indent=1)
    return result


def score_files(specs: list[str], task_set: TaskSet, vote_config: str | None, notes: list[str]) -> ScoreReport:
    """A submission.json or (voted) predictions file(s) -> ScoreReport."""
    first = Path(specs[0])
    if len(specs) > 1 or vote_config is not None or is_predictions_file(first):
        config = load_vote_config(vote_config or "reference")
        t = tally(read_predictions_files(specs, notes), task_set)
        notes += t.problems
        attach_consistency(t, specs, None, config.strategy in CONSISTENCY_STRATEGIES, notes)
        return score_votes(rank_tally(t, task_set, config), task_set, config.fallback)
    return score_submission(read_submission(first), task_set)


def read_predictions_files(specs: list[str], problems: list[str]) -> Iterator[Prediction]:
    """Stream the predictions of FILE[:WEIGHT] specs (voting keeps only distinct grids in memory)."""
    if not specs:
        raise ArcKitError("no predictions file given")
    paths, weights = zip(*(parse_weighted_path(s) for s in specs), strict=False)
    for p in paths:  # the stream is lazy: fail on a missing or unreadable file before any work
        open_read(p, "predictions file").close()
        if is_submission_file(p):
            raise ArcKitError(
                f"{p}: is a submission.json (task id -> attempts), not a predictions file: "
                "score a submission without --vote, vote only predictions"
            )
    return iter_predictions(list(paths), list(weights), problems)
