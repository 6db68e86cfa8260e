"""Scoring: pass@k against ground truth (per-task and per-output), bootstrap intervals and paired comparisons."""

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from arc_kit.base.errors import ArcKitError
from arc_kit.data import Grid, TaskSet, grid_problem
from arc_kit.submission import fallback_grids, validate_submission

if TYPE_CHECKING:
    from arc_kit.vote import Candidate

N_RESAMPLES = 10_000  # bootstrap resamples: fixed so that intervals are reproducible
SEED = 0
CONFIDENCE = 0.95
ALPHA = 0.05  # significance level of `compare`


def _as_list(grid: object) -> object:
    return grid.tolist() if hasattr(grid, "tolist") else grid


def first_correct(ranked: list[Any], truth: object) -> int | None:
    """1-based rank of the first attempt equal to `truth` (malformed attempts never count), or None."""
    truth = _as_list(truth)
    for r, g in enumerate(ranked, 1):
        if g == truth and grid_problem(g) is None:  # grid_problem: [[True]] == [[1]] in Python, but is not a grid
            return r
    return None


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; [s, s] when every value is the same (or n < 2)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (0.0, 0.0)
    m = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        return (m, m)  # scipy warns (degenerate distribution) and may give NaN here: the answer is exact
    from scipy import stats

    kwargs = dict(confidence_level=confidence, n_resamples=n_resamples, method="percentile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = stats.bootstrap((x,), np.mean, rng=np.random.default_rng(seed), **kwargs)
        except TypeError:  # scipy < 1.15 calls it random_state
            res = stats.bootstrap((x,), np.mean, random_state=np.random.default_rng(seed), **kwargs)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (m, m)
    return (lo, hi)


def report_ks(max_k: int) -> list[int]:
    """The k of pass@k worth reporting: 1, 2, ..., 10, then 20, 50, 100, ... up to max_k (always 1 and 2)."""
    ks = {1, 2} | set(range(3, min(max_k, 10) + 1))
    ks |= {k for k in (20, 50, 100, 200, 500, 1000, 2000, 5000) if k <= max_k}
    ks.add(max(max_k, 2))
    return sorted(ks)


@dataclass
class ScoreReport:
    # task id -> per test output: 1-based rank of the first correct attempt, None when no attempt is right
    ranks: dict[str, list[int | None]]
    max_k: int = 2  # attempts per test input (2 for a submission; candidates for predictions)
    kind: str = "submission"  # "submission" | "predictions"
    source: str = ""  # where the ground truth came from
    missing: list[str] = field(default_factory=list)  # ground-truth tasks the submission lacks (scored 0)
    extra: list[str] = field(default_factory=list)  # submission tasks not in the ground truth (ignored)
    problems: list[str] = field(default_factory=list)  # format problems (affected attempts count as wrong)
    invalid: list[str] = field(default_factory=list)  # tasks dropped as invalid when loading: scored 0
    # predictions only: task id -> per test output, how many distinct grids the model predicted (fallback grids
    # not counted). Coverage is pass@k over all of them: well above pass@2, selection loses answers the model found.
    model_candidates: dict[str, list[int]] = field(default_factory=dict)

    def fractions(self, k: int = 2) -> dict[str, float]:
        """task id -> fraction of its test outputs solved within k attempts."""
        return {t: sum(r is not None and r <= k for r in rs) / len(rs) for t, rs in self.ranks.items()}

    def pass_at(self, k: int = 2) -> float:
        """Per-task score: mean over tasks of the fraction of test outputs solved (ARC Prize / TRM paper)."""
        f = list(self.fractions(k).values())
        return sum(f) / len(f) if f else 0.0

    def pass_at_per_output(self, k: int = 2) -> float:
        """Per-output score: solved test outputs / all test outputs (Kaggle's evaluation page wording)."""
        rs = [r for t in self.ranks.values() for r in t]
        return sum(r is not None and r <= k for r in rs) / len(rs) if rs else 0.0

    @property
    def score_per_task(self) -> float:
        return self.pass_at(2)

    @property
    def score_per_output(self) -> float:
        return self.pass_at_per_output(2)

    def coverage(self) -> tuple[float, float] | None:
        """(per task, per output) share of test outputs whose answer is among the model's own candidates; None
        for a submission (two attempts, no candidate list)."""
        if self.kind != "predictions":
            return None
        hit = {
            t: [r is not None and r <= n for r, n in zip(rs, self.model_candidates.get(t, [0] * len(rs)), strict=True)]
            for t, rs in self.ranks.items()
        }
        per_task = [sum(h) / len(h) for h in hit.values() if h]
        outs = [x for h in hit.values() for x in h]
        return (sum(per_task) / len(per_task) if per_task else 0.0, sum(outs) / len(outs) if outs else 0.0)

    def ci95(self, k: int = 2) -> tuple[float, float]:
        return bootstrap_ci(list(self.fractions(k).values()))

    def to_json(self) -> dict[str, Any]:
        """The object `arc-kit score --json` prints (and a run's score.json holds)."""
        ks = report_ks(self.max_k)
        n_out = sum(len(r) for r in self.ranks.values())
        cov = self.coverage()
        return {
            "score_per_task": self.score_per_task,
            "score_per_output": self.score_per_output,
            "ci95": list(self.ci95()),
            "ci_method": {
                "method": "percentile bootstrap over tasks",
                "confidence": CONFIDENCE,
                "n_resamples": N_RESAMPLES,
                "seed": SEED,
            },
            "pass_at": {str(k): self.pass_at(k) for k in ks},
            "pass_at_per_output": {str(k): self.pass_at_per_output(k) for k in ks},
            "coverage": None if cov is None else {"per_task": cov[0], "per_output": cov[1]},
            "n_tasks": len(self.ranks),
            "n_outputs": n_out,
            "n_solved_outputs": sum(r is not None and r <= 2 for t in self.ranks.values() for r in t),
            "kind": self.kind,
            "source": self.source,
            "missing_tasks": list(self.missing),
            "extra_tasks": list(self.extra),
            "invalid_tasks": list(self.invalid),
            "n_problems": len(self.problems),
            "tasks": self.fractions(2),
            "ranks": {t: list(r) for t, r in self.ranks.items()},
        }

    def summary(self) -> str:
        lo, hi = self.ci95()
        n_out = sum(len(r) for r in self.ranks.values())
        solved = sum(r is not None and r <= 2 for t in self.ranks.values() for r in t)
        ks = report_ks(self.max_k)
        shown = ks if len(ks) <= 8 else ks[:4] + ks[-3:]
        lines = [
            f"per-task score (pass@2):   {self.score_per_task:.4f}  95% CI [{lo:.4f}, {hi:.4f}]  "
            f"({len(self.ranks)} tasks)",
            f"per-output score (pass@2): {self.score_per_output:.4f}  ({solved}/{n_out} test outputs)",
            "pass@k per task:   " + "  ".join(f"@{k} {self.pass_at(k):.4f}" for k in shown),
            "pass@k per output: " + "  ".join(f"@{k} {self.pass_at_per_output(k):.4f}" for k in shown),
        ]
        cov = self.coverage()
        if cov is not None:
            lines.append(f"coverage (any model candidate): {cov[0]:.4f} per task, {cov[1]:.4f} per output")
        if self.missing:
            lines.append(
                f"missing from the {self.kind} (scored 0): {len(self.missing)} task(s): "
                + ", ".join(self.missing[:10])
                + (", ..." if len(self.missing) > 10 else "")
            )
        if self.invalid:
            lines.append(f"invalid tasks (unreadable, scored 0): {len(self.invalid)}")
        if self.extra:
            lines.append(f"not in the ground truth (ignored): {len(self.extra)} task(s)")
        if self.problems:
            lines.append(f"format problems (those attempts count as wrong): {len(self.problems)}")
        return "\n".join(lines)

    def table(self) -> str:
        """Per-task table: id, test outputs, solved at pass@1 / pass@2, rank of the correct attempt."""
        w = max([4] + [len(t) for t in self.ranks])
        lines = [f"{'task':<{w}}  tests  @1  @2  fraction  ranks"]
        for t, rs in self.ranks.items():
            s1 = sum(r is not None and r <= 1 for r in rs)
            s2 = sum(r is not None and r <= 2 for r in rs)
            rk = " ".join("-" if r is None else str(r) for r in rs)
            lines.append(f"{t:<{w}}  {len(rs):>5}  {s1:>2}  {s2:>2}  {s2 / len(rs):>8.3f}  {rk}")
        return "\n".join(lines)


def _truth(task_set: TaskSet) -> dict[str, list[Grid | None]]:
    for tid, task in task_set.tasks.items():
        for i, p in enumerate(task.test):
            if p.output is None:
                raise ArcKitError(
                    f"{task_set.source or task.source}: task {tid}: test {i} has no known output; "
                    "scoring needs solutions (give --solutions FILE or a source that has them)"
                )
    return {tid: [p.output for p in task.test] for tid, task in task_set.tasks.items()}


def score_ranked(
    ranked: dict[str, list[list[Any]]],
    task_set: TaskSet,
    max_k: int = 2,
    kind: str = "submission",
    problems: list[str] | None = None,
) -> ScoreReport:
    """ranked: task id -> per test input, a best-first list of grids. Iterates over the ground truth."""
    truth = _truth(task_set)
    ranks, missing = {}, []
    for tid, outs in truth.items():
        per_test = ranked.get(tid)
        if per_test is None:
            missing.append(tid)
            per_test = []
        ranks[tid] = [first_correct(per_test[i] if i < len(per_test) else [], out) for i, out in enumerate(outs)]
    # tasks dropped as invalid (lenient loading) have no usable truth but were asked: they score 0
    invalid = getattr(task_set, "invalid", None) or {}
    for tid, n in invalid.items():
        ranks.setdefault(tid, [None] * max(1, int(n)))
    extra = [t for t in ranked if t not in truth and t not in invalid]
    return ScoreReport(
        ranks,
        max_k,
        kind,
        task_set.source,
        missing,
        extra,
        list(problems or []),
        [t for t in invalid if t not in truth],
    )


def score_submission(sub: dict[str, Any], task_set: TaskSet) -> ScoreReport:
    """pass@1 = attempt_1, pass@2 = either attempt. Malformed parts count as wrong and are listed."""
    if not isinstance(sub, dict):
        raise ArcKitError("submission must be a JSON object mapping task ids to lists")
    ranked = {}
    for tid, entries in sub.items():
        entries = entries if isinstance(entries, list) else []
        ranked[tid] = [[e.get("attempt_1"), e.get("attempt_2")] if isinstance(e, dict) else [] for e in entries]
    problems = [p for p in validate_submission(sub, task_set) if "not in the tasks" not in p]
    return score_ranked(ranked, task_set, 2, "submission", problems)


def score_votes(votes: dict[str, list[list["Candidate"]]], task_set: TaskSet, fallback: str = "input") -> ScoreReport:
    """Score voted predictions: the ranked list is the candidates, then the fallback grids, so that
    pass@2 equals the score of the submission build_submission makes from the same votes."""
    ranked: dict[str, list[list[Any]]] = {}
    max_k = 2
    n_model: dict[str, list[int]] = {}  # n_model: task -> per test input, the model's own candidates (no fallback)
    for tid, task in task_set.tasks.items():
        per_test = []
        for i, pair in enumerate(task.test):
            cands = votes.get(tid, [])
            grids = [c.grid for c in (cands[i] if i < len(cands) else [])]
            n_model.setdefault(tid, []).append(len(grids))
            for g in fallback_grids(pair.input, fallback):
                if g not in grids:
                    grids.append(g)
            per_test.append(grids)
            max_k = max(max_k, len(grids))
        ranked[tid] = per_test
    report = score_ranked(ranked, task_set, max_k, "predictions")
    report.model_candidates = {t: n_model.get(t, [0] * len(rs)) for t, rs in report.ranks.items()}
    return report


@dataclass
class Comparison:
    """Paired comparison of two scorings of the same tasks (B against A) on per-task pass@2 scores."""

    tasks: list[str]
    a: list[float]
    b: list[float]
    name_a: str = "A"
    name_b: str = "B"

    def _diff(self) -> np.ndarray:
        return np.asarray(self.b, dtype=np.float64) - np.asarray(self.a, dtype=np.float64)

    def stats(self) -> dict[str, Any]:
        from scipy import stats

        d = self._diff()
        wins_b, wins_a = int((d > 0).sum()), int((d < 0).sum())
        n_disc = wins_a + wins_b
        # Sign test (exact binomial on the tasks where A and B differ; McNemar's exact test when the
        # per-task scores are 0/1, as they mostly are in ARC): the verdict test.
        p_sign = float(stats.binomtest(wins_b, n_disc, 0.5).pvalue) if n_disc else 1.0
        # Wilcoxon signed-rank (uses the size of each difference, e.g. 0.5 on two-test tasks): reported too.
        if n_disc:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p_wil = float(stats.wilcoxon(d[d != 0]).pvalue)
        else:
            p_wil = 1.0
        lo, hi = bootstrap_ci(d) if d.size else (0.0, 0.0)
        significant = n_disc > 0 and p_sign < ALPHA
        if significant:
            verdict = f"{self.name_b} beats {self.name_a}" if wins_b > wins_a else f"{self.name_a} beats {self.name_b}"
            verdict += f" (sign test p={p_sign:.3g} < {ALPHA})"
        else:
            verdict = (
                f"no significant difference between {self.name_a} and {self.name_b} "
                f"(sign test p={p_sign:.3g} >= {ALPHA})"
            )
        return {
            "n_tasks": len(self.tasks),
            "score_a": float(np.mean(self.a)) if self.a else 0.0,
            "score_b": float(np.mean(self.b)) if self.b else 0.0,
            "mean_diff": float(d.mean()) if d.size else 0.0,
            "ci95_diff": [lo, hi],
            "wins_b": wins_b,
            "wins_a": wins_a,
            "ties": int(d.size - n_disc),
            "p_sign": p_sign,
            "p_wilcoxon": p_wil,
            "alpha": ALPHA,
            "significant": bool(significant),
            "b_beats_a": bool(significant and wins_b > wins_a),
            "verdict": verdict,
        }


def compare_reports(a: ScoreReport, b: ScoreReport, name_a: str = "A", name_b: str = "B", k: int = 2) -> Comparison:
    """Pair two reports task by task (they must score the same ground-truth tasks)."""
    if list(a.ranks) != list(b.ranks):
        raise ArcKitError(f"{name_a} and {name_b} were scored on different tasks; compare needs the same tasks")
    fa, fb = a.fractions(k), b.fractions(k)
    tasks = list(a.ranks)
    return Comparison(tasks, [fa[t] for t in tasks], [fb[t] for t in tasks], name_a, name_b)
