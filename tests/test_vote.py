"""Voting strategies on hand-made predictions with known answers; ties, weights, filters, unknown tasks."""

import math
import random

import pytest

from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task, TaskSet
from arc_kit.predictions import Prediction
from arc_kit.vote import VoteConfig, grid_key, load_vote_config, rank, sigmoid, tally, vote

A, B, C, D = [[1]], [[2]], [[3]], [[4, 4]]


def task_set(n_test=1, tid="t"):
    task = Task(tid, [Pair([[0]], [[1]])], [Pair([[5, 5]], [[1]]) for _ in range(n_test)])
    return TaskSet({tid: task}, source="hand-made")


def P(grid, q=0.0, tid="t", i=0, aug=None, w=None):
    extra = {} if w is None else {"weight": w}
    return Prediction(tid, i, aug or f"{tid}|||t1|||0123456789", grid, q, extra)


def top(preds, **cfg):
    ranked = vote(preds, task_set(), VoteConfig(**cfg))["t"][0]
    return [c.grid for c in ranked]


def test_reference_ranks_by_votes_then_mean_confidence():
    preds = [P(A, -3), P(A, -3), P(A, -3), P(B, 5), P(B, 5), P(C, 9)]
    assert top(preds) == [A, B, C]  # 3 votes beat 2 beat 1, whatever the confidence
    # equal votes: the higher MEAN sigmoid(q_halt) wins (not the sum)
    preds = [P(A, 1.0), P(A, 1.0), P(B, 3.0), P(B, -1.0)]
    assert sigmoid(1.0) > (sigmoid(3.0) + sigmoid(-1.0)) / 2
    assert top(preds) == [A, B]


def test_candidate_fields():
    ranked = vote([P(A, 0.0), P(A, 2.0), P(B, 1.0)], task_set())["t"][0]
    a = ranked[0]
    assert a.grid == A and a.votes == 2 and a.count == 2 and a.key == grid_key(A) == bytes([1, 1, 1])
    assert a.mean_q == pytest.approx((0.5 + sigmoid(2.0)) / 2)
    assert a.score == 2


def test_full_tie_is_broken_by_canonical_grid_order_whatever_the_input_order():
    preds = [P(g, 0.3) for g in (C, A, D, B)]
    expected = sorted([A, B, C, D], key=grid_key)
    for seed in range(5):
        random.Random(seed).shuffle(preds)
        for strategy in ("reference", "plurality", "confidence", "filtered"):
            assert top(preds, strategy=strategy) == expected


def test_plurality_tie_breaks():
    ident = P(B, -5.0, aug="t")  # the un-augmented view predicted B, with low confidence
    preds = [P(A, 4.0), ident]
    assert top(preds, strategy="plurality", tie_break="confidence") == [A, B]
    assert top(preds, strategy="plurality", tie_break="identity") == [B, A]
    preds = [P(C, 4.0), P(B, -4.0)]
    assert top(preds, strategy="plurality", tie_break="canonical") == [B, C]  # same shape: cells 2 < 3
    # votes still come first
    assert top([P(C, -9), P(C, -9), P(B, 9, aug="t")], strategy="plurality", tie_break="identity") == [C, B]


def test_confidence_sums_sigmoid():
    # 3 unsure votes (3 * 0.12) lose to 1 sure vote (0.9999)
    preds = [P(A, -2.0)] * 3 + [P(B, 10.0)]
    assert top(preds, strategy="confidence") == [B, A]
    assert top(preds, strategy="reference") == [A, B]
    ranked = vote(preds, task_set(), VoteConfig(strategy="confidence"))["t"][0]
    assert ranked[0].score == pytest.approx(sigmoid(10.0))
    assert ranked[1].score == pytest.approx(3 * sigmoid(-2.0))


def test_filtered_drops_then_ranks_like_reference():
    preds = [P(A, -4.0)] * 3 + [P(B, 2.0)] * 2 + [P(C, 5.0)]
    assert top(preds, strategy="filtered", min_votes=2) == [A, B]
    assert top(preds, strategy="filtered", min_votes=2, min_confidence=0.5) == [B]
    assert top(preds, strategy="filtered", min_votes=4) == []
    # refill: dropped candidates come back (best first) only to fill the attempts
    assert top(preds, strategy="filtered", min_votes=2, min_confidence=0.5, refill=True) == [B, A]


def test_weights_count_as_votes():
    preds = [P(A, 0.0), P(A, 0.0), P(B, 0.0, w=3.0)]
    assert top(preds) == [B, A]
    assert top(preds, strategy="confidence") == [B, A]  # 3 * 0.5 > 2 * 0.5
    ranked = vote(preds, task_set(), VoteConfig())["t"][0]
    assert (ranked[0].votes, ranked[0].count) == (3.0, 1)
    # weight 0 keeps the line in the count but gives it no vote
    assert top([P(A, 0.0, w=0.0), P(B, -9.0)]) == [B, A]


def test_multiple_test_inputs_are_voted_separately():
    ts = task_set(n_test=2)
    votes = vote([P(A, i=0), P(B, i=1), P(B, i=1)], ts, VoteConfig())
    assert [[c.grid for c in v] for v in votes["t"]] == [[A], [B]]


def test_unknown_tasks_and_test_indices_are_reported_and_ignored():
    ts = task_set()
    ts.invalid = {"broken": 1}
    problems = []
    votes = vote([P(A), P(B, tid="nope"), P(B, tid="nope"), P(C, i=3), P(D, tid="broken")], ts, VoteConfig(), problems)
    assert list(votes) == ["t"] and [c.grid for c in votes["t"][0]] == [A]
    assert any("task nope: 2 prediction(s) ignored" in p for p in problems)
    assert any("task t: 1 prediction(s) for test_index 3 ignored" in p for p in problems)
    assert any("task broken" in p and "invalid" in p for p in problems)
    t = tally([P(A), P(B, tid="nope")], ts)
    assert (t.n_predictions, t.n_ignored) == (1, 1)


def test_tasks_without_predictions_get_empty_lists():
    ts = task_set(n_test=2)
    assert vote([], ts, VoteConfig()) == {"t": [[], []]}


def test_rank_does_not_mutate_shared_tally():
    t = tally([P(A, 3.0), P(B, -1.0), P(B, -1.0)], task_set())
    cands = t.groups[("t", 0)].values()
    r1 = rank(cands, VoteConfig(strategy="confidence"))
    r2 = rank(cands, VoteConfig(strategy="reference"))
    assert r1[0].grid == A and r1[0].score == pytest.approx(sigmoid(3.0))  # 0.95 > 2 * 0.27
    assert r2[0].grid == B and r2[0].score == 2


def test_canonical_order_is_shape_then_cells():
    grids = [[[0, 0]], [[9]], [[1], [0]], [[0, 1]], [[5]]]
    assert sorted(grids, key=grid_key) == [[[5]], [[9]], [[0, 0]], [[0, 1]], [[1], [0]]]
    assert len({grid_key(g) for g in ([[1, 2, 3, 4]], [[1, 2], [3, 4]], [[1], [2], [3], [4]])}) == 3


def test_sigmoid_is_stable():
    assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0 and sigmoid(0.0) == 0.5
    assert math.isclose(sigmoid(-2.0), 1 / (1 + math.exp(2.0)))


def test_shipped_configs_load():
    for name, strategy in [
        ("reference", "reference"),
        ("plurality", "plurality"),
        ("confidence", "confidence"),
        ("filtered", "filtered"),
    ]:
        cfg = load_vote_config(name)
        assert cfg.strategy == strategy and cfg.fallback == "input"
    assert load_vote_config("filtered").min_votes == 2
    assert load_vote_config("filtered", ["min_votes=3", "fallback=zeros"]).min_votes == 3
    assert load_vote_config(None) == VoteConfig()


def test_bad_configs_are_clear_errors(tmp_path):
    with pytest.raises(ArcKitError, match="strategy 'majority' unknown"):
        load_vote_config("reference", ["strategy=majority"])
    with pytest.raises(ArcKitError, match="fallback"):
        VoteConfig(fallback="random")
    with pytest.raises(ArcKitError, match="unknown config key 'min_vote'"):
        load_vote_config("reference", ["min_vote=2"])
    with pytest.raises(ArcKitError, match="no such config"):
        load_vote_config("nonexistent-voting")
