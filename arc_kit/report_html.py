"""The run explorer: report.html from typed views of a run (overview, one card per task); self-contained."""

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

from arc_kit.data import Grid, TaskSet
from arc_kit.render import PALETTE
from arc_kit.report_assets import CSS, JS
from arc_kit.scoring import ScoreReport, report_ks
from arc_kit.vote import Candidate

MARKS = ("solved", "found", "unsolved", "unknown")  # unknown: no solution to judge against
TOP_CANDIDATES = 5  # candidates shown per test input


@dataclass
class CandidateView:
    grid: Grid
    votes: float
    q: float | None = None  # weighted mean sigmoid(q_halt) of its votes, where recorded


@dataclass
class OutputView:
    """One test input: what the model was asked, what it answered, and (when known) the answer."""

    input: Grid
    attempts: list[Grid]  # the two attempts of the submission
    candidates: list[CandidateView] = field(default_factory=list)  # the top ones, best first
    n_candidates: int = 0  # distinct grids the model predicted (all of them, not only the top ones)
    answer: Grid | None = None
    answer_rank: int | None = None  # 1-based rank of the answer among all candidates (None: not found / unknown)

    @property
    def mark(self) -> str:
        """solved (an attempt is the answer), found (a candidate is, but was not selected), unsolved, unknown."""
        if self.answer is None:
            return "unknown"
        if any(a == self.answer for a in self.attempts):
            return "solved"
        return "found" if self.answer_rank is not None else "unsolved"


@dataclass
class TaskView:
    task_id: str
    train: list[tuple[Grid, Grid | None]]  # demonstrations (input, output)
    outputs: list[OutputView]
    by_config: dict[str, float] = field(default_factory=dict)  # revote config -> fraction of outputs solved

    @property
    def solved(self) -> float:
        return sum(o.mark == "solved" for o in self.outputs) / max(1, len(self.outputs))

    @property
    def mark(self) -> str:
        marks = [o.mark for o in self.outputs]
        if not marks or "unknown" in marks:
            return "unknown"
        if all(m == "solved" for m in marks):
            return "solved"
        return "found" if "found" in marks else "unsolved"

    @property
    def top_votes(self) -> float:
        return max((o.candidates[0].votes for o in self.outputs if o.candidates), default=0.0)


@dataclass
class StageRow:
    name: str
    status: str
    seconds: float
    detail: str = ""


@dataclass
class RevoteRow:
    """One voting config of `arc-kit revote` (revote.revote's row), for the side-by-side table."""

    config: str
    strategy: str
    pass_at_1: float
    score_per_task: float
    score_per_output: float
    ci95: tuple[float, float]
    vs_first: str = ""  # paired comparison with the first config ("" for the first)


@dataclass
class ReportView:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # provenance: (label, value)
    score: ScoreReport | None = None
    stages: list[StageRow] = field(default_factory=list)
    plan: list[tuple[str, str]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)  # (training step, loss)
    revote: list[RevoteRow] = field(default_factory=list)
    tasks: list[TaskView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- views from the kit's data


def task_views(
    task_set: TaskSet,
    votes: dict[str, list[list[Candidate]]],
    submission: dict[str, list[dict[str, Grid]]],
    by_config: dict[str, dict[str, float]] | None = None,
    top: int = TOP_CANDIDATES,
) -> list[TaskView]:
    """One TaskView per task of `task_set`: its attempts from `submission`, its ranked candidates from `votes`
    (vote.rank_tally's result), the answer when the task set has it; `by_config`: config -> task -> solved."""
    views = []
    for tid, task in task_set.tasks.items():
        outputs = []
        for i, pair in enumerate(task.test):
            ranked = votes.get(tid, [])
            cands = ranked[i] if i < len(ranked) else []
            entry = submission.get(tid, [])
            attempts = [entry[i][k] for k in ("attempt_1", "attempt_2")] if i < len(entry) else []
            rank = next((j + 1 for j, c in enumerate(cands) if c.grid == pair.output), None)
            outputs.append(
                OutputView(
                    input=pair.input,
                    attempts=attempts,
                    candidates=[CandidateView(c.grid, c.votes, c.mean_q if c.conf_sum else None) for c in cands[:top]],
                    n_candidates=len(cands),
                    answer=pair.output,
                    answer_rank=rank if pair.output is not None else None,
                )
            )
        per = {name: fr[tid] for name, fr in (by_config or {}).items() if tid in fr}
        views.append(TaskView(tid, [(p.input, p.output) for p in task.train], outputs, per))
    return views


def revote_rows(result: dict[str, Any]) -> list[RevoteRow]:
    """revote.revote's result -> table rows."""
    rows = []
    for r in result["configs"]:
        vs = ""
        if "vs_first" in r:
            v = r["vs_first"]
            vs = f"{v['mean_diff']:+.4f} (+{v['wins_b']}/-{v['wins_a']}, p={v['p_sign']:.3g}) {v['verdict']}"
        rows.append(
            RevoteRow(
                r["config"],
                r["strategy"],
                r["pass_at_1"],
                r["score_per_task"],
                r["score_per_output"],
                (r["ci95"][0], r["ci95"][1]),
                vs,
            )
        )
    return rows


# ---------------------------------------------------------------- HTML


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    num = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in num else ''}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def loss_svg(losses: list[tuple[int, float]], width: int = 560, height: int = 180, max_points: int = 600) -> str:
    """The training-loss curve as an inline SVG polyline (log-scaled loss when it spans a decade or more)."""
    pts = [(s, v) for s, v in losses if math.isfinite(v) and v > 0]
    if len(pts) < 2:
        return "<p>no training metrics recorded</p>"
    stride = max(1, math.ceil(len(pts) / max_points))
    pts = pts[::stride] + ([pts[-1]] if (len(pts) - 1) % stride else [])
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    use_log = hi / lo >= 10
    f = math.log10 if use_log else (lambda v: v)
    flo, fhi = f(lo), f(hi)
    s0, s1 = pts[0][0], pts[-1][0]
    m = 40  # px margin for the labels

    def xy(s: int, v: float) -> str:
        x = m + (width - m - 8) * ((s - s0) / max(1, s1 - s0))
        y = 8 + (height - 28) * (1 - (f(v) - flo) / ((fhi - flo) or 1.0))
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(s, v) for s, v in pts)
    scale = " (log scale)" if use_log else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" id="loss-curve">'
        f'<rect x="{m}" y="8" width="{width - m - 8}" height="{height - 28}" fill="#fff" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#0074D9" stroke-width="1.5" points="{line}"/>'
        f'<text x="2" y="16" font-size="11">{hi:.3g}</text><text x="2" y="{height - 20}" font-size="11">{lo:.3g}</text>'
        f'<text x="{m}" y="{height - 4}" font-size="11">step {s0}</text>'
        f'<text x="{width - 8}" y="{height - 4}" font-size="11" text-anchor="end">step {s1}; loss{scale}</text></svg>'
    )


def _score_html(score: ScoreReport) -> str:
    lo, hi = score.ci95()
    rows = [
        ["per task (pass@2)", f"{score.score_per_task:.4f}", f"95% CI [{lo:.4f}, {hi:.4f}]"],
        ["per output (pass@2)", f"{score.score_per_output:.4f}", ""],
    ]
    rows += [
        [f"pass@{k}", f"{score.pass_at(k):.4f}", f"per output {score.pass_at_per_output(k):.4f}"]
        for k in report_ks(score.max_k)
    ]
    cov = score.coverage()
    if cov is not None:
        rows.append(["coverage (answer among all candidates)", f"{cov[0]:.4f}", f"per output {cov[1]:.4f}"])
    n_out = sum(len(r) for r in score.ranks.values())
    rows.append(["tasks / test outputs", f"{len(score.ranks)} / {n_out}", score.source])
    return _table(["score", "value", ""], rows, {1})


def _card(i: int, t: TaskView) -> str:
    mark = t.mark
    frac = f"{sum(o.mark == 'solved' for o in t.outputs)}/{len(t.outputs)} solved" if mark != "unknown" else ""
    cfg = " ".join(f"{name} {'✓' if v >= 1 else '½' if v > 0 else '✗'}" for name, v in t.by_config.items())
    return (
        f'<section class="card" data-task="{_e(t.task_id)}" data-mark="{mark}" data-index="{i}" '
        f'data-votes="{t.top_votes:g}"><h3>{_e(t.task_id)}<span class="mark {mark}">'
        f"{'found, not selected' if mark == 'found' else mark}</span>"
        f'<span class="cfg">{_e(frac)}</span>' + (f'<span class="cfg">{_e(cfg)}</span>' if cfg else "") + "</h3>"
        '<div class="grids"></div></section>'
    )


class _Grids:
    """The page's grid table: each distinct grid once, as "012/340", referenced by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, g: Grid | None) -> int:
        if not g:
            return -1
        s = "/".join("".join(str(int(v)) for v in row) for row in g)
        return self.index.setdefault(s, len(self.index))


def page_data(tasks: list[TaskView]) -> dict[str, Any]:
    """The JSON the page's script draws the cards from."""
    gi = _Grids()
    out = []
    for t in tasks:
        tests = [
            {
                "input": gi(o.input),
                "attempts": [gi(a) for a in o.attempts],
                "answer": gi(o.answer),
                "n": o.n_candidates,
                "cands": [
                    [gi(c.grid), round(c.votes, 3), None if c.q is None else round(c.q, 3)] for c in o.candidates
                ],
            }
            for o in t.outputs
        ]
        out.append({"id": t.task_id, "train": [[gi(a), gi(b)] for a, b in t.train], "tests": tests})
    return {"palette": PALETTE, "G": list(gi.index), "tasks": out}


def build_html(view: ReportView) -> str:
    """The whole page: overview tables, loss curve, filter/sort controls and one card per task (cards carry
    data-task, data-mark and data-votes; the script draws their grids from the embedded data)."""
    counts = {m: sum(t.mark == m for t in view.tasks) for m in MARKS}
    parts = [f"<h1>{_e(view.title)}</h1>"]
    if view.facts:
        parts.append(
            '<ul class="facts">' + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in view.facts) + "</ul>"
        )
    parts += [f'<p class="note">{_e(n)}</p>' for n in view.notes]
    if view.score is not None:
        parts += ["<h2>Score</h2>", _score_html(view.score)]
    if view.revote:
        parts += [
            "<h2>Voting configs side by side</h2>",
            _table(
                ["config", "strategy", "task@1", "task@2", "output@2", "95% CI (task@2)", "vs first"],
                [
                    [r.config, r.strategy, f"{r.pass_at_1:.4f}", f"{r.score_per_task:.4f}", f"{r.score_per_output:.4f}"]
                    + [f"[{r.ci95[0]:.4f}, {r.ci95[1]:.4f}]", r.vs_first or "(baseline)"]
                    for r in view.revote
                ],
                {2, 3, 4},
            ),
        ]
    if view.stages:
        rows = [[s.name, s.status, f"{s.seconds:.1f}", s.detail] for s in view.stages]
        parts += ["<h2>Stages</h2>", _table(["stage", "status", "seconds", "result"], rows, {2})]
    if view.plan:
        parts += ["<h2>Plan</h2>", _table(["setting", "value"], [[k, v] for k, v in view.plan])]
    if view.losses:
        parts += ["<h2>Training loss</h2>", loss_svg(view.losses)]
    summary = ", ".join(f"{counts[m]} {'found but not selected' if m == 'found' else m}" for m in MARKS if counts[m])
    parts += [
        f"<h2>Tasks ({len(view.tasks)}: {_e(summary or 'none')})</h2>",
        '<div id="controls">show: '
        + "".join(
            f'<button data-filter="{f}">{label}</button>'
            for f, label in (
                ("all", "all"),
                ("solved", "solved"),
                ("unsolved", "unsolved"),
                ("found", "found, not selected"),
            )
        )
        + ' &nbsp; sort: <button data-sort="votes">by votes</button><button data-sort="id">by id</button>'
        + ' &nbsp; <span id="shown"></span> shown</div>',
        '<div id="cards">' + "".join(_card(i, t) for i, t in enumerate(view.tasks)) + "</div>",
        '<pre id="selftest"></pre>',
    ]
    data = json.dumps(page_data(view.tasks), separators=(",", ":")).replace("<", "\\u003c")
    # errors of the page's own script land in the DOM too (data-errors), for a reader without a console
    catch = (
        'window.addEventListener("error",function(e){var b=document.body;'
        'b.dataset.errors=(b.dataset.errors||"")+String(e.message)+"\\n";});'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(view.title)}</title><style>{CSS}</style><script>{catch}</script></head><body>"
        + "\n".join(parts)
        + f'\n<script type="application/json" id="report-data">{data}</script>\n<script>{JS}</script>\n</body></html>\n'
    )
