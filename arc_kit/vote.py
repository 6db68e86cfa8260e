"""Voting: group identical predicted grids per test input and rank them into attempts by a configured strategy."""

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.data import Grid, TaskSet
from arc_kit.invariants import Invariants, task_invariants
from arc_kit.predictions import Prediction

STRATEGIES = ("reference", "plurality", "confidence", "filtered", "consistency", "votes-consistency")
CONSISTENCY_STRATEGIES = ("consistency", "votes-consistency")  # need stored consistency scores (consistency.jsonl)
AGGREGATES = ("sum", "mean")
ATTEMPTS = 2  # attempts per test input in a Kaggle submission
TIE_BREAKS = ("confidence", "identity", "canonical")
FALLBACKS = ("input", "zeros")


@dataclass
class VoteConfig:
    # reference:  rank by (weighted) vote count, then mean sigmoid(q_halt) -- the TRM evaluator's rule
    # plurality:  rank by (weighted) vote count, ties broken by `tie_break`
    # confidence: rank by the sum of weight * sigmoid(q_halt) over the candidate's votes
    # filtered:   drop candidates with votes < min_votes or mean confidence < min_confidence, then reference
    # consistency: rank by the candidate's log-probability under every scored view (arc_kit/consistency.py)
    # votes-consistency: votes first, consistency breaks ties (consistency_weight 0), or
    #               log(votes) + consistency_weight x consistency (consistency_weight > 0)
    strategy: str = "reference"
    tie_break: str = (
        "confidence"  # plurality only: "confidence" | "identity" (the un-augmented view's grid) | "canonical"
    )
    min_votes: float = 1.0  # filtered: weighted votes a candidate needs to be kept (a positive integer)
    min_confidence: float = 0.0  # filtered: mean sigmoid(q_halt) a candidate needs to be kept (in [0, 1])
    refill: bool = False  # filtered: when fewer than 2 survive, refill from the dropped ones (best first)
    fallback: str = "input"  # missing attempts: "input" = the test input grid, then [[0]]; "zeros" = [[0]]
    consistency_aggregate: str = "mean"  # "sum" of log-probabilities over views, or "mean" per scored cell
    consistency_weight: float = 0.0  # votes-consistency: 0 = tie-break only, > 0 = weight in log(votes) + w x score
    # Vote weight of each training snapshot (inference.snapshots), by fraction: {"0.6": 0.5}; unlisted: 1.0.
    # It scales both the votes and the consistency scores of that snapshot's views.
    snapshot_weights: dict[str, float] = field(default_factory=dict)
    # Rank a candidate that breaks an invariant every demonstration shares (output size, palette:
    # arc_kit/invariants.py) below every candidate that keeps it; among themselves the strategy decides.
    invariants: bool = False

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
        if self.consistency_aggregate not in AGGREGATES:
            raise ArcKitError(
                f"voting config: consistency_aggregate '{self.consistency_aggregate}' unknown (known: sum, mean)"
            )
        if not (math.isfinite(self.consistency_weight) and self.consistency_weight >= 0):
            raise ArcKitError(f"voting config: consistency_weight must be >= 0, got {self.consistency_weight!r}")
        for k, w in self.snapshot_weights.items():
            try:
                frac = float(k)
            except ValueError:
                frac = math.nan
            if not 0 < frac <= 1:
                raise ArcKitError(f"voting config: snapshot_weights key {k!r} is not a training fraction in (0, 1]")
            if not (math.isfinite(w) and w >= 0):
                raise ArcKitError(f"voting config: snapshot_weights[{k}] must be a finite number >= 0, got {w!r}")

    def snapshot_weight(self, snapshot: float) -> float:
        """The vote weight of training snapshot `snapshot` (a fraction; unlisted: 1.0)."""
        return next((float(w) for k, w in self.snapshot_weights.items() if float(k) == snapshot), 1.0)


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


def candidate_hash(grid: Grid) -> str:
    """Short stable name of a grid (consistency.jsonl keys): the first 16 hex digits of sha1(grid_key)."""
    return hashlib.sha1(grid_key(grid)).hexdigest()[:16]


@dataclass
class Candidate:
    grid: Grid
    key: bytes  # grid_key(grid)
    votes: float = 0.0  # sum of the weights of the predictions that produced this grid
    count: int = 0  # number of prediction lines (unweighted)
    conf_sum: float = 0.0  # sum of weight * sigmoid(q_halt)
    identity: bool = False  # produced by the un-augmented view (augmentation name == task id)
    score: float = 0.0  # the strategy's primary ranking value (set by rank())
    by_snapshot: dict[float, list[float]] = field(default_factory=dict)  # snapshot -> [votes, conf_sum]
    consistency: float = -math.inf  # aggregated consistency log-score (set by rank() from the tally's scores)
    broken: tuple[str, ...] = ()  # the task's invariants this grid breaks ("size", "palette"; set by rank())

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
            "consistency": self.consistency if math.isfinite(self.consistency) else None,
            "broken": list(self.broken),
        }


@dataclass
class Tally:
    """Predictions grouped by identical grid: (task_id, test_index) -> {grid_key: Candidate}."""

    groups: dict[tuple[str, int], dict[bytes, Candidate]] = field(default_factory=dict)
    n_predictions: int = 0
    n_ignored: int = 0
    problems: list[str] = field(default_factory=list)
    # (task_id, test_index) -> {(snapshot, view name): {candidate_hash: (log-probability or None, cells)}}
    consistency: dict[tuple[str, int], dict[tuple[float, str], dict[str, tuple[float | None, int]]]] = field(
        default_factory=dict
    )


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
        snap = c.by_snapshot.setdefault(p.snapshot, [0.0, 0.0])
        snap[0] += w
        snap[1] += w * sigmoid(p.q_halt)
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


def add_consistency(t: Tally, records: Iterable[dict[str, Any]]) -> None:
    """Merge consistency.jsonl records ({task_id, test_index, augmentation, snapshot, scores}) into the tally;
    records of test inputs the tally does not know are skipped (their predictions were ignored too)."""
    for r in records:
        key = (r["task_id"], r["test_index"])
        if key not in t.groups:
            continue
        per = t.consistency.setdefault(key, {}).setdefault((float(r.get("snapshot", 1.0)), r["augmentation"]), {})
        for h, (logp, cells) in r["scores"].items():
            per[h] = (None if logp is None else float(logp), int(cells))


def _sort_key(c: Candidate, config: VoteConfig) -> tuple[float | bytes, ...]:
    """Descending rank key; the last element (the canonical grid key) makes every order total and deterministic.
    With `invariants`, the number of broken invariants comes first."""
    key = _strategy_key(c, config)
    return (len(c.broken), *key) if config.invariants else key


def _strategy_key(c: Candidate, config: VoteConfig) -> tuple[float | bytes, ...]:
    s = config.strategy
    if s in ("reference", "filtered"):
        return (-c.votes, -c.mean_q, c.key)
    if s == "confidence":
        return (-c.conf_sum, -c.votes, c.key)
    if s == "consistency":
        return (-c.consistency, -c.votes, -c.mean_q, c.key)
    if s == "votes-consistency":
        if config.consistency_weight > 0:
            return (-c.score, -c.votes, c.key)
        return (-c.votes, -c.consistency, -c.mean_q, c.key)
    # plurality
    if config.tie_break == "confidence":
        return (-c.votes, -c.mean_q, c.key)
    if config.tie_break == "identity":
        return (-c.votes, not c.identity, c.key)
    return (-c.votes, c.key)


def aggregate_consistency(
    scores: dict[tuple[float, str], dict[str, tuple[float | None, int]]], hashes: list[str], config: VoteConfig
) -> dict[str, float]:
    """Candidate hash -> aggregated log-score over the views that scored EVERY candidate of the test input (so all
    are compared on the same views; a view cut short by the deadline is left out). `sum`: the snapshot-weighted
    sum of log-probabilities; `mean`: that sum over the weighted count of scored cells. A candidate that does not
    fit a view scores -inf; with no complete view every candidate scores -inf (the ranking falls to votes)."""
    total = dict.fromkeys(hashes, 0.0)
    cells = dict.fromkeys(hashes, 0.0)
    complete = 0
    for (snap, _view), per in scores.items():
        w = config.snapshot_weight(snap)
        if w == 0 or any(h not in per for h in hashes):
            continue
        complete += 1
        for h in hashes:
            logp, n = per[h]
            total[h] += -math.inf if logp is None else w * logp
            cells[h] += w * n
    if not complete:
        return dict.fromkeys(hashes, -math.inf)
    if config.consistency_aggregate == "sum":
        return total
    return {h: total[h] / cells[h] if cells[h] > 0 and math.isfinite(total[h]) else -math.inf for h in hashes}


def rank(
    candidates: Iterable[Candidate],
    config: VoteConfig,
    consistency: dict[tuple[float, str], dict[str, tuple[float | None, int]]] | None = None,
    invariants: Invariants | None = None,
) -> list[Candidate]:
    """Rank one test input's candidates (best first) under `config`; `consistency`: the test input's stored view
    scores (Tally.consistency), used by the consistency strategies; `invariants`: the test input's
    (arc_kit.invariants.task_invariants), used when config.invariants is on."""
    out = []
    for c in candidates:
        # copy so that several configs can rank the same tally without sharing `score`
        by_snap = {s: list(v) for s, v in c.by_snapshot.items()}
        c = Candidate(c.grid, c.key, c.votes, c.count, c.conf_sum, c.identity, by_snapshot=by_snap)
        if config.snapshot_weights and by_snap:
            c.votes = sum(config.snapshot_weight(s) * v[0] for s, v in by_snap.items())
            c.conf_sum = sum(config.snapshot_weight(s) * v[1] for s, v in by_snap.items())
        if config.invariants and invariants is not None:
            c.broken = invariants.broken(c.grid)
        out.append(c)
    if config.strategy in CONSISTENCY_STRATEGIES and out:
        hashes = [candidate_hash(c.grid) for c in out]
        agg = aggregate_consistency(consistency or {}, hashes, config)
        for c, h in zip(out, hashes, strict=True):
            c.consistency = agg[h]
    for c in out:
        if config.strategy == "confidence":
            c.score = c.conf_sum
        elif config.strategy == "consistency":
            c.score = c.consistency
        elif config.strategy == "votes-consistency" and config.consistency_weight > 0:
            log_votes = math.log(c.votes) if c.votes > 0 else -math.inf
            c.score = log_votes + config.consistency_weight * c.consistency
        else:
            c.score = c.votes
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
        votes[tid] = [
            rank(
                t.groups.get((tid, i), {}).values(),
                config,
                t.consistency.get((tid, i)),
                task_invariants(task, i) if config.invariants else None,
            )
            for i in range(len(task.test))
        ]
    return votes


def vote(
    predictions: Iterable[Prediction],
    task_set: TaskSet,
    config: VoteConfig | None = None,
    problems: list[str] | None = None,
    consistency: Iterable[dict[str, Any]] | None = None,
) -> dict[str, list[list[Candidate]]]:
    """Predictions -> ranked candidates per task and test input. Notes on ignored lines go to `problems`.
    `consistency`: consistency.jsonl records (arc_kit.consistency.read_consistency) for the consistency strategies."""
    config = config or VoteConfig()
    t = tally(predictions, task_set)
    if consistency is not None:
        add_consistency(t, consistency)
    if problems is not None:
        problems.extend(t.problems)
    return rank_tally(t, task_set, config)


def load_vote_config(name_or_path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> VoteConfig:
    """A shipped voting config by name (`reference`, `plurality`, ...) or a YAML path, plus key=value overrides."""
    return load_config(VoteConfig, name_or_path or "reference", overrides, subdir="voting")
