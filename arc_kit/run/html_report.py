"""report.html of a run directory, or of predictions files with their tasks: gathers the view and writes the page."""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from arc_kit import __version__
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_text, read_json
from arc_kit.consistency import CONSISTENCY_FILE, read_consistency
from arc_kit.data import TaskSet, load_tasks, parse_ids
from arc_kit.predictions import PREDICTIONS_FILE, iter_predictions, parse_weighted_path
from arc_kit.report_html import ReportView, StageRow, build_html, revote_rows, task_views
from arc_kit.revote import config_names, revote
from arc_kit.run.checks import load_run_tasks
from arc_kit.run.config import RunConfig, load_run_config
from arc_kit.run.directory import (
    CONFIG_FILE,
    PLAN_FILE,
    REPORT_HTML_FILE,
    STATE_FILE,
    SUBMISSION_FILE,
    TASKS_FILE,
    TTT_DIR,
    load_saved_tasks,
)
from arc_kit.scoring import ScoreReport, score_submission, score_votes
from arc_kit.submission import build_submission, read_submission
from arc_kit.vote import CONSISTENCY_STRATEGIES, Candidate, Tally, add_consistency, load_vote_config, rank_tally, tally

METRICS_FILE = f"{TTT_DIR}/metrics.jsonl"  # the trainer's metrics (one line per log_every steps)
EXTRA_CONFIGS = ("plurality", "confidence")  # compared beside the run's own voting config when answers are known


@dataclass
class ReportInputs:
    """What `arc-kit report` was asked for: a run directory, or predictions files with their tasks."""

    paths: list[str]  # one run directory, or predictions .jsonl files (FILE[:WEIGHT])
    tasks: str | None = None  # task source (required for predictions; for a run: replaces the run's own)
    solutions: str | None = None
    ids: str | None = None
    configs: list[str] = field(default_factory=list)  # voting configs side by side (the first one selects)
    consistency: list[str] = field(default_factory=list)
    output: str | None = None  # default: RUN/report.html, or report.html beside the first predictions file


# ---------------------------------------------------------------- pieces of a run directory


def read_losses(path: Path) -> list[tuple[int, float]]:
    """(step, loss) from the trainer's metrics.jsonl; a later phase restarts its step count, so steps continue
    from the previous phase's last one. Unreadable lines are skipped (the file may be mid-write)."""
    out: list[tuple[int, float]] = []
    if not path.is_file():
        return out
    offset = last = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            step, loss = int(row["step"]), float(row["loss"])
        except (ValueError, KeyError, TypeError):
            continue
        if step + offset < last:  # a new phase (or a resumed trainer) started counting again
            offset = last
        last = step + offset
        out.append((last, loss))
    return out


def _read(path: Path, what: str) -> dict:
    try:
        obj = read_json(path, what) if path.is_file() else {}
    except ArcKitError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _plan_value(key: str, v: object) -> str:
    if isinstance(v, (int, float)) and (key == "created" or key.endswith("_until")) and v > 1e9:
        return time.strftime("%H:%M:%S UTC", time.gmtime(v))  # a time.time() moment
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_plan_value('', x)}" for k, x in v.items())
    return str(v)


def plan_rows(plan: dict) -> list[tuple[str, str]]:
    """plan.json as (setting, value) rows; moments as clock times, its notes last."""
    rows = [(k, _plan_value(k, v)) for k, v in plan.items() if k != "notes"]
    return rows + [("note", str(n)) for n in plan.get("notes", [])]


def state_stages(state: dict) -> list[StageRow]:
    """Stage rows from state.json (a rebuilt report: the parent's fallback and vote timings are not saved)."""
    rows = []
    for name, d in state.get("stages", {}).items():
        what = []
        if name == "train" and d.get("steps") is not None:
            what.append(f"{d['steps']} steps" + (f", loss {d['loss']:.4f}" if isinstance(d.get("loss"), float) else ""))
        if d.get("written") is not None:
            what.append(f"{d['written']} predictions ({d.get('views_per_input')} views/input)")
        if d.get("message"):
            what.append(str(d["message"]))
        rows.append(StageRow(name, str(d.get("status", "?")), float(d.get("seconds") or 0.0), "; ".join(what)))
    return rows


def _facts(cfg: RunConfig, task_set: TaskSet, state: dict, n_pred: int) -> list[tuple[str, str]]:
    facts = [
        ("kit version", __version__),
        ("tasks", f"{task_set.source}: {len(task_set.tasks)} tasks"),
        ("checkpoint", cfg.model.checkpoint or "none (trained from scratch)"),
        ("voting", cfg.voting),
        ("budget", f"{cfg.budget.total_minutes} min"),
        ("predictions", str(n_pred)),
    ]
    train = state.get("stages", {}).get("train", {})
    hw = train.get("hardware") or state.get("stages", {}).get("infer", {}).get("hardware") or {}
    if hw:
        gpu = f" {hw['gpu']} x{hw.get('gpus', 1)}" if hw.get("gpu") else ""
        facts.append(
            (
                "hardware",
                f"{hw.get('device', '?')}{gpu}, {hw.get('cpu_cores', '?')} cores, torch {hw.get('torch', '?')}",
            )
        )
    threads = train.get("threads") or hw.get("threads")
    if threads:
        rechecks = train.get("thread_rechecks") or []
        facts.append(("threads", f"{threads}" + (f" (re-checked {len(rechecks)}x)" if rechecks else "")))
    return facts


def run_task_set(out: Path, cfg: RunConfig, notes: list[str]) -> TaskSet:
    """The run's tasks with their solutions when its task source still has them, else the run's own tasks.json
    (no test outputs: the report then shows no answers)."""
    saved = load_saved_tasks(out / TASKS_FILE)
    try:
        full = load_run_tasks(cfg)
    except ArcKitError as e:
        notes.append(f"solutions not loaded ({e}): answers are not shown")
        return saved
    if set(full.tasks) != set(saved.tasks):
        notes.append(f"{cfg.tasks.source}: holds other tasks than the run's {TASKS_FILE}: answers are not shown")
        return saved
    return full


# ---------------------------------------------------------------- votes, scores, configs side by side


def _tally(specs: list[str], task_set: TaskSet, consistency: list[Path], notes: list[str]) -> Tally:
    paths, weights = zip(*(parse_weighted_path(s) for s in specs), strict=True)
    t = tally(iter_predictions(list(paths), list(weights), notes), task_set)
    notes += t.problems
    if consistency:
        add_consistency(t, read_consistency(consistency, notes))
    return t


def _fill(
    view: ReportView,
    t: Tally,
    task_set: TaskSet,
    configs: list[str],
    sub: dict | None,
    votes: dict[str, list[list[Candidate]]] | None = None,
) -> None:
    """Tasks, score and the side-by-side configs of the view: `configs[0]` is the one whose votes are shown
    (`votes`: already ranked under it, else ranked here from the tally)."""
    config = load_vote_config(configs[0])
    if votes is None:
        votes = rank_tally(t, task_set, config)
    if sub is None:
        sub = build_submission(votes, task_set, config.fallback)
    known = bool(task_set.tasks) and all(task.has_solutions for task in task_set.tasks.values())
    by_config: dict[str, dict[str, float]] = {}
    if known:
        score: ScoreReport = score_submission(sub, task_set)
        voted = score_votes(votes, task_set, config.fallback)
        view.score = voted if voted.fractions(2) == score.fractions(2) else score
        if len(configs) > 1:
            for spec, name in zip(configs, config_names(configs), strict=True):
                c = load_vote_config(spec)
                by_config[name] = score_votes(rank_tally(t, task_set, c), task_set, c.fallback).fractions(2)
            view.revote = revote_rows(revote(t, task_set, configs))
    view.tasks = task_views(task_set, votes, sub, by_config)


def run_view(
    out: Path,
    task_set: TaskSet | None = None,
    stages: list[StageRow] | None = None,
    configs: list[str] | None = None,
    votes: dict[str, list[list[Candidate]]] | None = None,
) -> ReportView:
    """The report of run directory `out` (task_set: the run's tasks with solutions, when the caller has them;
    votes: the run's last vote, which spares reading predictions.jsonl again when no other config is compared)."""
    out = Path(out)
    if not (out / CONFIG_FILE).is_file() or not (out / TASKS_FILE).is_file():
        raise ArcKitError(f"{out}: not a run directory (no {CONFIG_FILE} and {TASKS_FILE})")
    cfg = load_run_config(out / CONFIG_FILE)
    view = ReportView(title=f"arc-kit run: {cfg.name or out.name}")
    if task_set is None:
        task_set = run_task_set(out, cfg, view.notes)
    state = _read(out / STATE_FILE, "run state")
    sub = read_submission(out / SUBMISSION_FILE) if (out / SUBMISSION_FILE).is_file() else None
    preds = out / PREDICTIONS_FILE
    needs_consistency = load_vote_config(cfg.voting).strategy in CONSISTENCY_STRATEGIES
    cons = [out / CONSISTENCY_FILE] if needs_consistency and (out / CONSISTENCY_FILE).is_file() else []
    if configs is None:
        configs = [cfg.voting] + [c for c in EXTRA_CONFIGS if c != cfg.voting]
    configs = configs or [cfg.voting]
    reuse = votes is not None and len(configs) == 1
    t = _tally([str(preds)], task_set, cons, view.notes) if preds.is_file() and not reuse else Tally()
    _fill(view, t, task_set, configs, sub, votes if reuse else None)
    n_pred = sum(c.count for per in (votes or {}).values() for cs in per for c in cs) if reuse else t.n_predictions
    view.facts = _facts(cfg, task_set, state, n_pred)
    saved = {s.name: s for s in state_stages(state)}
    view.stages = [StageRow(s.name, s.status, s.seconds, s.detail or saved.get(s.name, s).detail) for s in stages or []]
    view.stages = view.stages or list(saved.values())
    view.plan = plan_rows(_read(out / PLAN_FILE, "plan"))
    view.losses = read_losses(out / METRICS_FILE)
    return view


def write_run_html(
    out: Path,
    task_set: TaskSet | None = None,
    stages: list[StageRow] | None = None,
    configs: list[str] | None = None,
    votes: dict[str, list[list[Candidate]]] | None = None,
) -> Path:
    """Write OUT/report.html (run_view's arguments); returns its path."""
    path = Path(out) / REPORT_HTML_FILE
    atomic_write_text(path, build_html(run_view(Path(out), task_set, stages, configs, votes)))
    return path


def predictions_view(specs: list[str], task_set: TaskSet, configs: list[str], consistency: list[str]) -> ReportView:
    """The report of predictions files voted with `configs[0]` (the others side by side)."""
    view = ReportView(title=f"arc-kit predictions: {', '.join(Path(parse_weighted_path(s)[0]).name for s in specs)}")
    needs = any(load_vote_config(c).strategy in CONSISTENCY_STRATEGIES for c in configs)
    cons = [Path(c) for c in consistency]
    if not cons and needs:
        cons = sorted({p for s in specs if (p := parse_weighted_path(s)[0].parent / CONSISTENCY_FILE).is_file()})
    t = _tally(specs, task_set, cons, view.notes)
    _fill(view, t, task_set, configs, None)
    view.facts = [
        ("kit version", __version__),
        ("tasks", f"{task_set.source}: {len(task_set.tasks)} tasks"),
        ("predictions", f"{t.n_predictions} from {len(specs)} file(s) ({t.n_ignored} ignored)"),
        ("voting", configs[0]),
    ]
    return view


def build_report(req: ReportInputs) -> tuple[Path, ReportView]:
    """`arc-kit report`: the view of a run directory or of predictions files, written as HTML; (path, view)."""
    if not req.paths:
        raise ArcKitError("no run directory or predictions file given")
    first = parse_weighted_path(req.paths[0])[0]
    configs = list(req.configs) or None
    ids = parse_ids(req.ids) if req.ids else None
    tasks = load_tasks(req.tasks, solutions=req.solutions, ids=ids, lenient=True) if req.tasks else None
    if first.is_dir():
        if len(req.paths) > 1:
            raise ArcKitError(f"{first}: a run directory comes alone (not with other paths)")
        view = run_view(first, tasks, None, configs)
        path = Path(req.output) if req.output else first / REPORT_HTML_FILE
    else:
        if tasks is None:
            raise ArcKitError("predictions files need --tasks (and --solutions to mark answers)")
        for s in req.paths:
            if not parse_weighted_path(s)[0].is_file():
                raise ArcKitError(f"{s}: no such run directory or predictions file")
        view = predictions_view(list(req.paths), tasks, configs or ["reference", *EXTRA_CONFIGS], req.consistency)
        path = Path(req.output) if req.output else first.parent / REPORT_HTML_FILE
    if path.resolve() in {parse_weighted_path(s)[0].resolve() for s in req.paths}:
        raise ArcKitError(f"-o {path}: is one of the inputs")
    atomic_write_text(path, build_html(view))
    return path, view
