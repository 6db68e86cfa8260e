"""End of `arc-kit run`: score.json and report.md when solutions are known, the per-stage summary, the exit status."""

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arc_kit import __version__
from arc_kit.base.config import to_dict
from arc_kit.base.files import atomic_write_json, atomic_write_text
from arc_kit.base.progress import fmt_seconds
from arc_kit.data import TaskSet
from arc_kit.report_html import StageRow
from arc_kit.run.config import RunConfig
from arc_kit.run.directory import REPORT_FILE, SCORE_FILE, SUBMISSION_FILE
from arc_kit.run.html_report import write_run_html
from arc_kit.run.plan import Budget, Plan
from arc_kit.run.watchdog import StageResult
from arc_kit.scoring import score_submission, score_votes
from arc_kit.submission import FillReport, read_submission, validate_submission
from arc_kit.vote import Candidate, VoteConfig

# Exit statuses of `arc-kit run` (a bad config, task source or run directory is an ArcKitError: 2).
EXIT_OK = 0  # every stage finished (a planned deadline and views trimmed by the plan are normal)
EXIT_STAGE_FAILED = 4  # a valid submission.json was written, but a stage raised, produced NaN or was killed
EXIT_NO_SUBMISSION = 1  # the final submission.json is unreadable or invalid (never expected)


@dataclass
class RunRecord:
    """What a finished `arc-kit run` hands its reports (report.md, the summary, the exit status)."""

    cfg: RunConfig
    out: Path  # the run directory
    task_set: TaskSet  # the selected tasks (and the unselected ones, which get fallback attempts)
    budget: Budget
    log: logging.Logger
    manifest: dict[str, Any]  # run.json: provenance hashes
    stages: dict[str, dict[str, Any]]  # state.json's per-stage results (status, seconds, steps, hardware, ...)
    timings: list[StageResult]  # one per stage run (or kept) by this invocation, in order
    failures: list[str]  # "stage status: reason" of every stage that did not finish normally
    fill: FillReport  # what the last vote had to take from the fallback
    votes: dict[str, list[list[Candidate]]]  # the last vote behind submission.json ({}: fallback only)
    vote_config: VoteConfig
    plan: Plan | None  # OUT/plan.json (None: training did not plan)


def _hardware(r: RunRecord) -> dict:
    for stage in ("train", "infer"):
        hw = r.stages.get(stage, {}).get("hardware")
        if hw:
            return hw
    import os
    import platform

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_cores": os.cpu_count()}


def stage_lines(r: RunRecord) -> list[str]:
    """One line per stage: status, time and what it produced."""
    lines = []
    for t in r.timings:
        d = r.stages.get(t.name, {})
        what = ""
        if t.name == "train" and d.get("steps") is not None:
            loss = d.get("loss")
            what = f"{d['steps']} steps" + (f", loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
            if d.get("puzzles"):
                what += f", {d['puzzles']} puzzles, canvas {d.get('canvas')}"
            if d.get("thread_rechecks"):
                what += f", threads re-checked {len(d['thread_rechecks'])}x (ended on {d.get('threads')})"
        elif t.name == "infer" and d.get("written") is not None:
            what = (
                f"{d['written']} predictions ({d.get('views_per_input')} views/input"
                + (f", {d['already_done']} resumed" if d.get("already_done") else "")
                + (f", {d['skipped_time']} cut by the deadline" if d.get("skipped_time") else "")
                + ")"
            )
        elif t.name == "vote":
            what = r.fill.summary()
        msg = f" ({t.message})" if t.message else ""
        lines.append(f"{t.name:<9} {t.status:<8} {fmt_seconds(t.seconds):>8}  {what}{msg}")
    return lines


def write_report(r: RunRecord, report) -> None:
    """report.md: provenance, time per stage, score and the best and worst tasks."""
    cfg, m = r.cfg, r.manifest
    hw = _hardware(r)
    plan = r.plan
    lines = [
        f"# arc-kit run: {cfg.name or 'run'}",
        "",
        f"- kit version: {__version__}",
        f"- config: {m.get('config_label') or cfg.name} (hash {m['config_hash']}, resume key {m['resume_key']})",
        f"- tasks: {r.task_set.source}: {len(r.task_set.tasks)} tasks (hash {m['tasks_hash']})"
        + (f", {len(r.task_set.invalid)} invalid" if r.task_set.invalid else "")
        + (
            f"; {len(r.task_set.unselected)} more outside the selection (fallback attempts, not scored)"
            if r.task_set.unselected
            else ""
        ),
        f"- checkpoint: {cfg.model.checkpoint or 'none (trained from scratch)'}"
        + (f" (hash {m['checkpoint_hash']})" if m.get("checkpoint_hash") else ""),
        f"- model: {cfg.model.arch.describe()}",
        f"- hardware: {hw.get('device', '?')}"
        + (f" {hw['gpu']} x{hw.get('gpus', 1)}" if hw.get("gpu") else "")
        + f", {hw.get('cpu_cores', '?')} cores ({hw.get('cores_free', '?')} free), {hw.get('threads', '?')} "
        f"torch threads x {cfg.runtime.num_processes} process(es); {hw.get('platform', '')}; "
        f"torch {hw.get('torch', '?')}",
        f"- budget: {cfg.budget.total_minutes} min (margin {cfg.budget.safety_margin_minutes} min); "
        f"wall time {fmt_seconds(r.budget.elapsed())}",
        f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        "",
    ]
    if plan is not None:
        lines += [
            f"Plan: {plan.train_steps} training steps, {plan.ttt_augmentations} augmentations "
            f"per task, {plan.infer_views} views per test input (measured {plan.train_seq_per_s:.1f} "
            f"train / {plan.infer_seq_per_s:.1f} inference sequences/s, "
            + (
                f"per-task crops, probed on a {plan.canvas}x{plan.canvas} square)."
                if plan.crops
                else f"canvas {plan.canvas})."
            )
        ]
        lines += [f"- {n}" for n in plan.notes] + [""]
    lines += ["## Stages", "", "```"] + stage_lines(r) + ["```", ""]
    if r.failures:
        lines += [
            "**Failed:** " + "; ".join(r.failures) + " (exit status 4: the submission is valid but not what "
            "the plan intended; see run.log)",
            "",
        ]
    if report is not None:
        lo, hi = report.ci95()
        fr = report.fractions(2)
        ranked = sorted(fr.items(), key=lambda kv: (-kv[1], kv[0]))
        lines += [
            "## Score",
            "",
            "```",
            report.summary(),
            "```",
            "",
            "Best tasks: " + (", ".join(f"{t} ({v:.2f})" for t, v in ranked[:5] if v > 0) or "none solved"),
            "",
            "Worst tasks: " + ", ".join(f"{t} ({v:.2f})" for t, v in ranked[::-1][:5]),
            "",
        ]
    lines += ["## Config", "", "```yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(), "```", ""]
    atomic_write_text(r.out / REPORT_FILE, "\n".join(lines))


def finish(r: RunRecord) -> int:
    """Score (when every selected task has its solutions), write report.md, print the summary; the exit status:
    0 when every stage finished, 4 when the submission is valid but a stage failed, 1 when it is not valid."""
    log, out = r.log, r.out
    try:
        sub = read_submission(out / SUBMISSION_FILE)
        problems = validate_submission(sub, r.task_set)
    except Exception as e:
        log.error(f"submission: unreadable at the end ({type(e).__name__}: {e})")
        return EXIT_NO_SUBMISSION
    if problems:
        log.error(f"submission: invalid at the end: {problems[0]}")
        return EXIT_NO_SUBMISSION
    report = None
    if r.task_set.tasks and all(t.has_solutions for t in r.task_set.tasks.values()):
        try:
            report = score_submission(sub, r.task_set)
            if r.votes:
                # the votes behind submission.json, scored: the same two attempts (checked), plus pass@k and
                # coverage over every candidate (what `arc-kit score predictions.jsonl --vote CONFIG` prints)
                voted = score_votes(r.votes, r.task_set, r.vote_config.fallback)
                if voted.fractions(2) == report.fractions(2):
                    report = voted
            atomic_write_json(out / SCORE_FILE, report.to_json())
        except Exception as e:
            log.info(f"score: failed ({type(e).__name__}: {e})")
    try:
        write_report(r, report)
    except Exception as e:
        log.info(f"report: failed ({type(e).__name__}: {e})")
    try:  # the run explorer: the same run as a page of grids (a failure costs the page, never the run)
        stages = [StageRow(t.name, t.status, t.seconds, t.message or "") for t in r.timings]
        write_run_html(out, r.task_set, stages, [r.cfg.voting], r.votes or None)
    except Exception as e:
        log.info(f"report.html: failed ({type(e).__name__}: {e})")
    print("\n".join(["stage     status       time  result"] + stage_lines(r)), file=sys.stderr)
    print(
        f"wall time {fmt_seconds(r.budget.elapsed())} of {fmt_seconds(60 * r.cfg.budget.total_minutes)}; "
        f"outputs in {out}",
        file=sys.stderr,
    )
    if report is not None:
        lo, hi = report.ci95()
        print(
            f"score: {report.score_per_task:.4f} per task (95% CI [{lo:.4f}, {hi:.4f}]), "
            f"{report.score_per_output:.4f} per output, {len(report.ranks)} tasks"
        )
    else:
        print(f"submission: {out / SUBMISSION_FILE} (no solutions known: not scored)")
    if r.failures:
        log.error(
            "FAILED: " + "; ".join(r.failures) + f" -- {out / SUBMISSION_FILE} is valid (exit status "
            f"{EXIT_STAGE_FAILED}); see {out / 'run.log'}"
        )
        return EXIT_STAGE_FAILED
    return EXIT_OK
