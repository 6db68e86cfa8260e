"""Scoring: per-task vs per-output scores, pass@k, missing tasks, bootstrap intervals, paired comparisons."""

import warnings

import pytest

from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task, TaskSet, load_tasks
from arc_kit.predictions import Prediction
from arc_kit.scoring import (
    Comparison,
    ScoreReport,
    bootstrap_ci,
    compare_reports,
    report_ks,
    score_submission,
    score_votes,
)
from arc_kit.submission import build_submission
from arc_kit.vote import VoteConfig, vote

X, Y, Z = [[1, 2]], [[3], [4]], [[5]]


def truth_set():
    """a: 1 test (answer X); b: 2 tests (answers Y, Z); c: 1 test (answer Z)."""

    def task(tid, outs):
        return Task(tid, [Pair([[0]], [[0]])], [Pair([[9]], o) for o in outs])

    return TaskSet({"a": task("a", [X]), "b": task("b", [Y, Z]), "c": task("c", [Z])}, source="hand-made")


def entry(a1, a2):
    return {"attempt_1": a1, "attempt_2": a2}


def test_per_task_and_per_output_scores_differ_on_multi_test_tasks():
    sub = {"a": [entry(X, Z)], "b": [entry(Y, Z), entry(X, X)], "c": [entry(X, X)]}
    r = score_submission(sub, truth_set())
    assert r.fractions() == {"a": 1.0, "b": 0.5, "c": 0.0}  # 2 tests, 1 solved -> 0.5
    assert r.score_per_task == pytest.approx(1.5 / 3)
    assert r.score_per_output == pytest.approx(2 / 4)
    assert r.ranks == {"a": [1], "b": [1, None], "c": [None]}


def test_pass_at_1_uses_attempt_1_only():
    sub = {"a": [entry(Z, X)], "b": [entry(Y, Z), entry(X, Z)], "c": [entry(Z, X)]}
    r = score_submission(sub, truth_set())
    assert r.pass_at(1) == pytest.approx((0 + 0.5 + 1) / 3)
    assert r.pass_at(2) == pytest.approx(1.0)
    assert r.pass_at_per_output(1) == pytest.approx(2 / 4)
    assert r.to_json()["pass_at"] == {"1": r.pass_at(1), "2": 1.0}


def test_missing_tasks_score_zero_and_extra_tasks_are_ignored():
    sub = {"a": [entry(X, X)], "zzz": [entry(X, X)]}
    r = score_submission(sub, truth_set())
    assert list(r.ranks) == ["a", "b", "c"]  # iterates over the ground truth, never the submission
    assert r.score_per_task == pytest.approx(1 / 3)
    assert r.score_per_output == pytest.approx(1 / 4)
    assert r.missing == ["b", "c"] and r.extra == ["zzz"]
    assert any("task b: missing" in p for p in r.problems)


def test_wrong_shapes_and_malformed_entries_count_as_wrong():
    sub = {
        "a": [entry([[1], [2]], [[1, 2, 0]])],  # transposed / padded: wrong
        "b": [entry([[True], [4]], "junk"), 5],  # booleans equal to ints are still not a grid
        "c": "nope",
    }
    r = score_submission(sub, truth_set())
    assert r.score_per_output == 0 and r.score_per_task == 0
    sub["b"][0]["attempt_1"] = [[3], [4]]
    assert score_submission(sub, truth_set()).fractions()["b"] == 0.5
    with pytest.raises(ArcKitError, match="JSON object"):
        score_submission([], truth_set())


def test_tasks_dropped_as_invalid_score_zero():
    ts = truth_set()
    ts.invalid = {"bad": 2}
    r = score_submission({"a": [entry(X, X)], "bad": [entry([[0]], [[0]])] * 2}, ts)
    assert r.ranks["bad"] == [None, None] and r.invalid == ["bad"] and r.extra == []
    assert r.score_per_task == pytest.approx(1 / 4) and r.score_per_output == pytest.approx(1 / 6)
    assert r.to_json()["invalid_tasks"] == ["bad"]


def test_truth_without_outputs_is_an_error():
    ts = truth_set()
    ts.tasks["b"].test[1].output = None
    with pytest.raises(ArcKitError, match="task b: test 1 has no known output.*--solutions"):
        score_submission({}, ts)


def test_to_json_shape():
    r = score_submission({"a": [entry(X, X)]}, truth_set())
    j = r.to_json()
    for key in (
        "score_per_output",
        "score_per_task",
        "ci95",
        "tasks",
        "pass_at",
        "pass_at_per_output",
        "n_tasks",
        "n_outputs",
        "missing_tasks",
    ):
        assert key in j
    assert j["tasks"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert len(j["ci95"]) == 2 and j["ci95"][0] <= j["score_per_task"] <= j["ci95"][1]
    assert (j["n_tasks"], j["n_outputs"], j["n_solved_outputs"]) == (3, 4, 1)
    assert "task" in r.table() and "per-task score" in r.summary()


def test_bootstrap_degenerate_cases_are_exact_and_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's degenerate-distribution warning must not escape
        assert bootstrap_ci([1.0] * 50) == (1.0, 1.0)
        assert bootstrap_ci([0.0] * 7) == (0.0, 0.0)
        assert bootstrap_ci([0.5]) == (0.5, 0.5)
        assert bootstrap_ci([]) == (0.0, 0.0)
        lo, hi = bootstrap_ci([0, 1] * 20)
    assert 0.3 < lo < 0.5 < hi < 0.7


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    x = [0, 0, 1, 0.5, 0, 1, 0, 0, 0, 1, 0, 0]
    assert bootstrap_ci(x) == bootstrap_ci(list(x))
    lo, hi = bootstrap_ci(x)
    assert 0 <= lo < sum(x) / len(x) < hi <= 1


def test_report_ks():
    assert report_ks(2) == [1, 2]
    assert report_ks(1) == [1, 2]
    assert report_ks(5) == [1, 2, 3, 4, 5]
    assert report_ks(64) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50, 64]


def P(tid, i, grid, q=0.0):
    return Prediction(tid, i, tid, grid, q)


def test_voted_predictions_pass_at_k_and_consistency_with_the_submission():
    ts = truth_set()
    preds = (
        [P("a", 0, Z)] * 3
        + [P("a", 0, [[7]])] * 2
        + [P("a", 0, X)]  # truth ranked 3rd
        + [P("b", 0, Y)]
        + [P("c", 0, [[8]])]
    )  # b test 1 and c: fallback only
    votes = vote(preds, ts, VoteConfig())
    r = score_votes(votes, ts)
    assert r.kind == "predictions"
    assert r.ranks["a"] == [3] and r.ranks["b"][0] == 1 and r.ranks["c"] == [None]
    assert r.max_k == 5  # a: 3 candidates, then the fallback grids: test input and [[0]]
    assert r.pass_at(2) == pytest.approx(0.5 / 3) and r.pass_at(3) == pytest.approx(1.5 / 3)
    assert set(r.to_json()["pass_at"]) == {"1", "2", "3", "4", "5"}
    # pass@2 of voted predictions == the score of the submission built from the same votes
    sub = build_submission(votes, ts)
    s = score_submission(sub, ts)
    assert s.ranks == {t: [x if x is not None and x <= 2 else None for x in rs] for t, rs in r.ranks.items()}


def test_fallback_input_can_score_when_the_answer_is_the_input():
    ts = truth_set()
    ts.tasks["c"].test[0].input = Z  # identity task: the input fallback is right
    r = score_votes({}, ts)
    assert r.ranks["c"] == [1]
    assert score_votes({}, ts, fallback="zeros").ranks["c"] == [None]


def test_paired_comparison_verdicts():
    tasks = [f"t{i}" for i in range(20)]
    a = [0.0] * 20
    b = [1.0] * 12 + [0.0] * 8
    st = Comparison(tasks, a, b).stats()
    assert st["significant"] and st["b_beats_a"] and st["verdict"].startswith("B beats A")
    assert st["wins_b"] == 12 and st["ties"] == 8 and st["p_sign"] == pytest.approx(2 * 0.5**12)
    assert st["mean_diff"] == pytest.approx(0.6) and st["ci95_diff"][0] > 0
    st = Comparison(tasks, b, a).stats()
    assert st["significant"] and not st["b_beats_a"] and st["verdict"].startswith("A beats B")
    # 3 wins out of 3 differing tasks is not enough evidence
    st = Comparison(tasks, a, [1.0] * 3 + [0.0] * 17).stats()
    assert not st["significant"] and "no significant difference" in st["verdict"]
    st = Comparison(tasks, a, a).stats()
    assert st["p_sign"] == 1.0 and st["p_wilcoxon"] == 1.0 and st["ci95_diff"] == [0.0, 0.0]


def test_compare_reports_pairs_tasks():
    ts = truth_set()
    ra = score_submission({"a": [entry(X, X)]}, ts)
    rb = score_submission({"a": [entry(X, X)], "c": [entry(Z, Z)]}, ts)
    c = compare_reports(ra, rb)
    assert (c.a, c.b) == ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    other = ScoreReport({"q": [1]})
    with pytest.raises(ArcKitError, match="different tasks"):
        compare_reports(ra, other)


def test_bundled_arc_agi_2_evaluation_true_solutions_and_input_baseline():
    ts = load_tasks("arc-agi-2/evaluation")
    assert len(ts.tasks) == 120 and ts.tasks[next(iter(ts.tasks))].has_solutions
    perfect = {t: [entry(p.output, p.output) for p in task.test] for t, task in ts.tasks.items()}
    r = score_submission(perfect, ts)
    assert r.score_per_task == 1.0 and r.score_per_output == 1.0 and r.ci95() == (1.0, 1.0)
    assert r.to_json()["n_outputs"] == 167
    inputs = {t: [entry(p.input, p.input) for p in task.test] for t, task in ts.tasks.items()}
    r = score_submission(inputs, ts)
    # honest: exactly the test outputs that equal their input count (none in this set)
    expected = sum(p.input == p.output for task in ts.tasks.values() for p in task.test)
    assert r.score_per_output == expected / 167
    assert r.score_per_task < 0.05


def test_coverage_counts_every_model_candidate_but_no_fallback():
    from arc_kit.data import Pair, Task, TaskSet
    from arc_kit.scoring import score_votes
    from arc_kit.vote import Candidate

    truth = [[7]]
    ts = TaskSet({"t": Task("t", [Pair([[1]], [[2]])], [Pair([[3]], truth), Pair([[7]], [[7]])])})
    c = lambda g: Candidate(grid=g, key=str(g).encode())  # noqa: E731
    # test 0: the answer is the model's third candidate (lost by selection); test 1: the model found nothing,
    # the fallback (the test input [[7]]) happens to be right: it is a pass@2 hit but not model coverage
    votes = {"t": [[c([[1]]), c([[2]]), c([[7]])], []]}
    rep = score_votes(votes, ts)
    assert rep.score_per_output == 0.5 and rep.coverage() == (0.5, 0.5)
    assert rep.to_json()["coverage"] == {"per_task": 0.5, "per_output": 0.5}
