"""Voting: group identical predicted grids per test input and rank them into attempts by a configured strategy."""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from arc_kit.config import load_config
from arc_kit.data import Grid, TaskSet
from arc_kit.errors import ArcKitError
from arc_kit.predictions import Prediction

STRATEGIES = ("reference", "plurality", "confidence", "filtered")
ATTEMPTS = 2  # attempts per test input in a Kaggle submission
TIE_BREAKS = ("confidence", "identity", "canonical")
FALLBACKS = ("input", "zeros")


@dataclass
class VoteConfig:
    # reference:  rank by (weighted) vote count, then mean sigmoid(q_halt) -- the TRM evaluator's rule
    # plurality:  rank by (weighted) vote count, ties broken by `tie_break`
    # confidence: rank by the sum of weight * sigmoid(q_halt) over the candidate's votes
    # filtered:   drop candidates with votes < min_votes or mean confidence < min_confidence, then reference
    strategy: str = "reference"
    tie_break: str = (
        "confidence"  # plurality only: "confidence" | "identity" (the un-augmented view's grid) | "canonical"
    )
    min_votes: float = 1.0  # filtered: weighted votes a candidate needs to be kept (a positive integer)
    min_confidence: float = 0.0  # filtered: mean sigmoid(q_halt) a candidate needs to be kept (in [0, 1])
    refill: bool = False  # filtered: when fewer than 2 survive, refill from the dropped ones (best first)
    fallback: str = "input"  # missing attempts: "input" = the test input grid, then [[0]]; "zeros" = [[0]]

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ArcKitError(f"voting config: strategy '{self.strategy}' unknown (known: {', '.join(STRATEGIES)})")
        if self.tie_break not in TIE_BREAKS:
            raise ArcKitError(f"voting config: tie_break '{self.tie_break}' unknown (known: {', '.join(TIE_BREAKS)})")
        if self.fallback not in FALLBACKS:
            raise ArcKitError(f"voting config: fallback '{self.fallback}' unknown (known: {', '.join(FALLBACKS)})")
        # filtered thresholds: a count of (weighted) votes, and a mean sigmoid, which lies in [0, 1]
        if not (math.isfinite(self.min_votes) and self.min_votes >= 1 and self.min_votes == int(self.min_votes)):
            raise ArcKitError(f"voting config: min_votes must be a positive integer, got {self.min_votes!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ArcKitError(f"voting config: min_confidence must lie in [0, 1], got {self.min_confidence!r}")


def sigmoid(x: float) -> float:
    # numerically stable for large |x|
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def grid_key(grid: Grid) -> bytes:
    """Canonical serialisation of a valid grid: bytes (rows, columns, cells row-major).

    Identical grids share a key, different grids never do; it is the grouping key and the final
    tie-break (smaller shape first, then the cells in row-major order), so every ranking is total.
    """
    return bytes((len(grid), len(grid[0]))) + bytes(chain.from_iterable(grid))


@dataclass
class Candidate:
    grid: Grid
    key: bytes  # grid_key(grid)
    votes: float = 0.0  # sum of the weights of the predictions that produced this grid
    count: int = 0  # number of prediction lines (unweighted)
    conf_sum: float = 0.0  # sum of weight * sigmoid(q_halt)
    identity: bool = False  # produced by the un-augmented view (augmentation name == task id)
    score: float = 0.0  # the strategy's primary ranking value (set by rank())

    @property
    def mean_q(self) -> float:
        """Weighted mean sigmoid(q_halt) of the votes (the reference evaluator's tie-break)."""
        return self.conf_sum / self.votes if self.votes > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "votes": self.votes,
            "count": self.count,
            "mean_q": self.mean_q,
            "score": self.score,
            "identity": self.identity,
        }


@dataclass
class Tally:
    """Predictions grouped by identical grid: (task_id, test_index) -> {grid_key: Candidate}."""

    groups: dict[tuple[str, int], dict[bytes, Candidate]] = field(default_factory=dict)
    n_predictions: int = 0
    n_ignored: int = 0
    problems: list[str] = field(default_factory=list)


def tally(predictions: Iterable[Prediction], task_set: TaskSet) -> Tally:
    """Count every prediction line as one (weighted) vote. Unknown tasks / test indices are reported, not counted."""
    t = Tally()
    unknown: dict[str, int] = {}
    bad_index: dict[tuple[str, int], int] = {}
    for p in predictions:
        task = task_set.tasks.get(p.task_id)
        if task is None:
            unknown[p.task_id] = unknown.get(p.task_id, 0) + 1
            t.n_ignored += 1
            continue
        if p.test_index >= len(task.test):
            bad_index[(p.task_id, p.test_index)] = bad_index.get((p.task_id, p.test_index), 0) + 1
            t.n_ignored += 1
            continue
        w = p.weight
        group = t.groups.setdefault((p.task_id, p.test_index), {})
        key = grid_key(p.grid)
        c = group.get(key)
        if c is None:
            c = group[key] = Candidate(grid=p.grid, key=key)
        c.votes += w
        c.count += 1
        c.conf_sum += w * sigmoid(p.q_halt)
        c.identity = c.identity or p.augmentation == p.task_id
        t.n_predictions += 1
    invalid = getattr(task_set, "invalid", {}) or {}
    for tid, n in unknown.items():
        why = "task was dropped as invalid" if tid in invalid else "task not in the task set"
        t.problems.append(f"task {tid}: {n} prediction(s) ignored ({why})")
    for (tid, i), n in bad_index.items():
        t.problems.append(
            f"task {tid}: {n} prediction(s) for test_index {i} ignored "
            f"(task has {len(task_set.tasks[tid].test)} test input(s))"
        )
    return t


def _sort_key(c: Candidate, config: VoteConfig) -> tuple[float | bytes, ...]:
    """Descending rank key; the last element (the canonical grid key) makes every order total and deterministic."""
    s = config.strategy
    if s in ("reference", "filtered"):
        return (-c.votes, -c.mean_q, c.key)
    if s == "confidence":
        return (-c.conf_sum, -c.votes, c.key)
    # plurality
    if config.tie_break == "confidence":
        return (-c.votes, -c.mean_q, c.key)
    if config.tie_break == "identity":
        return (-c.votes, not c.identity, c.key)
    return (-c.votes, c.key)


def rank(candidates: Iterable[Candidate], config: VoteConfig) -> list[Candidate]:
    """Rank one test input's candidates (best first) under `config`."""
    out = []
    for c in candidates:
        # copy so that several configs can rank the same tally without sharing `score`
        c = Candidate(c.grid, c.key, c.votes, c.count, c.conf_sum, c.identity)
        c.score = c.conf_sum if config.strategy == "confidence" else c.votes
        out.append(c)
    out.sort(key=lambda c: _sort_key(c, config))
    if config.strategy == "filtered":
        kept = [c for c in out if c.votes >= config.min_votes and c.mean_q >= config.min_confidence]
        if config.refill and len(kept) < ATTEMPTS:
            kept_keys = {c.key for c in kept}
            kept += [c for c in out if c.key not in kept_keys][: ATTEMPTS - len(kept)]
        out = kept
    return out


def rank_tally(t: Tally, task_set: TaskSet, config: VoteConfig) -> dict[str, list[list[Candidate]]]:
    """task_id -> one ranked candidate list per test input, for every task of the task set (empty when no votes)."""
    votes: dict[str, list[list[Candidate]]] = {}
    for tid, task in task_set.tasks.items():
        votes[tid] = [rank(t.groups.get((tid, i), {}).values(), config) for i in range(len(task.test))]
    return votes


def vote(
    predictions: Iterable[Prediction],
    task_set: TaskSet,
    config: VoteConfig | None = None,
    problems: list[str] | None = None,
) -> dict[str, list[list[Candidate]]]:
    """Predictions -> ranked candidates per task and test input. Notes on ignored lines go to `problems`."""
    config = config or VoteConfig()
    t = tally(predictions, task_set)
    if problems is not None:
        problems.extend(t.problems)
    return rank_tally(t, task_set, config)


def load_vote_config(name_or_path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> VoteConfig:
    """A shipped voting config by name (`reference`, `plurality`, ...) or a YAML path, plus key=value overrides."""
    return load_config(VoteConfig, name_or_path or "reference", overrides, subdir="voting")
