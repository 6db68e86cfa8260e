"""submission.json: built complete from votes with a documented fallback, every validation rule, atomic writes."""

import json

import pytest

from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task, TaskSet
from arc_kit.predictions import Prediction
from arc_kit.submission import (
    FillReport,
    build_submission,
    fallback_submission,
    read_submission,
    validate_submission,
    write_submission,
)
from arc_kit.vote import VoteConfig, vote

IN1, IN2, IN3 = [[1, 1], [1, 0]], [[2]], [[3, 3, 3]]


def make_set(invalid=None):
    tasks = {
        "one": Task("one", [Pair([[0]], [[1]])], [Pair(IN1)]),
        "two": Task("two", [Pair([[0]], [[1]])], [Pair(IN2), Pair(IN3)]),
    }
    return TaskSet(tasks, source="hand-made", invalid=dict(invalid or {}))


def P(tid, i, grid, q=0.0):
    return Prediction(tid, i, tid, grid, q)


def test_build_from_votes_with_input_fallback():
    ts = make_set()
    preds = [P("one", 0, [[7]]), P("one", 0, [[7]]), P("one", 0, [[8]]), P("two", 1, [[9]])]
    report = FillReport()
    sub = build_submission(vote(preds, ts, VoteConfig()), ts, "input", report)
    assert sub == {
        "one": [{"attempt_1": [[7]], "attempt_2": [[8]]}],
        "two": [
            {"attempt_1": IN2, "attempt_2": [[0]]},  # no candidate: test input, then [[0]]
            {"attempt_1": [[9]], "attempt_2": IN3},
        ],  # one candidate: attempt_2 = test input
    }
    assert validate_submission(sub, ts) == []
    assert (report.n_tasks, report.n_test_inputs, report.n_attempts, report.n_voted) == (2, 3, 6, 3)
    assert report.filled == [
        "task two: test 0: attempt_1 <- test input",
        "task two: test 0: attempt_2 <- [[0]]",
        "task two: test 1: attempt_2 <- test input",
    ]
    assert "3/6 attempts from votes, 3 from the fallback" in report.summary()


def test_fallback_avoids_repeating_the_candidate():
    ts = make_set()
    sub = build_submission(vote([P("one", 0, IN1)], ts, VoteConfig()), ts)  # the model echoed the input
    assert sub["one"] == [{"attempt_1": IN1, "attempt_2": [[0]]}]


def test_zeros_fallback():
    ts = make_set()
    sub = build_submission(vote([P("one", 0, [[7]])], ts, VoteConfig()), ts, "zeros")
    assert sub["one"] == [{"attempt_1": [[7]], "attempt_2": [[0]]}]
    assert sub["two"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}] * 2


def test_invalid_tasks_get_zero_grids_for_every_test_input():
    ts = make_set(invalid={"bad": 3})
    report = FillReport()
    sub = build_submission({}, ts, "input", report)
    assert sub["bad"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}] * 3
    assert report.invalid_tasks == ["bad"] and "1 invalid task(s)" in report.summary()
    assert validate_submission(sub, ts) == []
    assert list(sub) == ["one", "two", "bad"]


def test_fallback_submission_is_valid_and_uses_inputs():
    ts = make_set(invalid={"bad": 1})
    sub = fallback_submission(ts)
    assert validate_submission(sub, ts) == []
    assert sub["one"][0] == {"attempt_1": IN1, "attempt_2": [[0]]}


def test_votes_for_unknown_tasks_are_ignored():
    ts = make_set()
    sub = build_submission({"ghost": [[]]}, ts)
    assert "ghost" not in sub and validate_submission(sub, ts) == []


def test_ranked_candidates_beyond_two_are_not_used():
    ts = make_set()
    preds = [P("one", 0, [[k]], q=k) for k in (3, 4, 5)]
    sub = build_submission(vote(preds, ts, VoteConfig()), ts)
    assert sub["one"] == [{"attempt_1": [[5]], "attempt_2": [[4]]}]  # equal votes: higher confidence first


def good():
    return {
        "one": [{"attempt_1": [[1]], "attempt_2": [[2]]}],
        "two": [{"attempt_1": [[1]], "attempt_2": [[2]]}, {"attempt_1": [[3]], "attempt_2": [[4]]}],
    }


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s.pop("two"), "task two: missing (expected 2 test input(s))"),
        (lambda s: s.update(extra=[]), "task extra: not in the tasks (unknown task id)"),
        (lambda s: s["two"].pop(), "task two: 1 entries, expected 2 (one per test input)"),
        (lambda s: s.update(one={"attempt_1": [[1]]}), "task one: expected a list of 1 attempt dict(s), got dict"),
        (lambda s: s["one"].__setitem__(0, [[1]]), "task one: test 0: expected a dict with attempt_1 and attempt_2"),
        (lambda s: s["one"][0].pop("attempt_2"), "task one: test 0: missing attempt_2"),
        (lambda s: s["one"][0].update(attempt_3=[[1]]), "task one: test 0: unexpected key 'attempt_3'"),
        (
            lambda s: s["one"][0].update(attempt_1=[[1, 2], [3]]),
            "task one: test 0: attempt_1: ragged grid: row 1 has 1 cells",
        ),
        (
            lambda s: s["one"][0].update(attempt_1=[[True]]),
            "task one: test 0: attempt_1: cell [0][0] is true (a boolean)",
        ),
        (lambda s: s["one"][0].update(attempt_2=[[10]]), "task one: test 0: attempt_2: cell [0][0] is 10"),
        (lambda s: s["one"][0].update(attempt_2=[[1.0]]), "task one: test 0: attempt_2: cell [0][0] is 1.0"),
        (lambda s: s["one"][0].update(attempt_2=[["1"]]), "attempt_2: cell [0][0] is '1'"),
        (lambda s: s["one"][0].update(attempt_2=[[0]] * 31), "attempt_2: grid is 31x1, at most 30x30 allowed"),
        (lambda s: s["one"][0].update(attempt_2=[[0] * 31]), "attempt_2: grid is 1x31, at most 30x30 allowed"),
        (lambda s: s["one"][0].update(attempt_2=[]), "attempt_2: empty grid (no rows)"),
        (lambda s: s["one"][0].update(attempt_2=[[]]), "attempt_2: row 0 is empty"),
        (lambda s: s["one"][0].update(attempt_2=None), "attempt_2: expected a grid (list of rows), got null"),
    ],
)
def test_every_validation_rule(mutate, expected):
    ts = make_set()
    sub = good()
    assert validate_submission(sub, ts) == []
    mutate(sub)
    problems = validate_submission(sub, ts)
    assert len(problems) == 1 and expected in problems[0], problems


def test_every_problem_is_listed_and_top_level_must_be_an_object():
    ts = make_set(invalid={"bad": 2})
    problems = validate_submission({"one": [], "zzz": []}, ts)
    assert problems == [
        "task one: 0 entries, expected 1 (one per test input)",
        "task two: missing (expected 2 test input(s))",
        "task bad: missing (expected 2 test input(s))",
        "task zzz: not in the tasks (unknown task id)",
    ]
    assert validate_submission([1, 2], ts) == ["submission must be a JSON object mapping task ids to lists, got list"]


def test_write_is_atomic_and_readable(tmp_path, monkeypatch):
    path = tmp_path / "out" / "submission.json"
    write_submission(path, good())
    assert read_submission(path) == good()
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]  # no temp file left behind
    # a failure in the middle of writing leaves the old file intact
    import arc_kit.base.files as files

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        write_submission(path, {"new": []})
    assert json.loads(path.read_text()) == good()
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]


def test_read_submission_errors(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("[1]")
    with pytest.raises(ArcKitError, match="s.json: a submission must be a JSON object"):
        read_submission(p)
    p.write_text("{")
    with pytest.raises(ArcKitError, match="s.json: malformed JSON at line 1"):
        read_submission(p)
