"""Invariants of the demonstrations (output size, palette) and the voting rule that ranks breakers last."""

import json

import pytest
import yaml

from arc_kit.data import Pair, Task, TaskSet, load_tasks
from arc_kit.invariants import Invariants, allowed_colours, implied_shape, task_invariants
from arc_kit.predictions import Prediction
from arc_kit.vote import VoteConfig, load_vote_config, vote


def grid(h, w, colour=1):
    return [[colour] * w for _ in range(h)]


def task(pairs, test_input, tid="t"):
    return Task(tid, [Pair(i, o) for i, o in pairs], [Pair(test_input)])


def test_same_size_rule_gives_the_test_inputs_shape():
    t = task([(grid(2, 3), grid(2, 3)), (grid(4, 4), grid(4, 4))], grid(5, 2))
    assert implied_shape(t, 0) == ((5, 2), "same")


def test_fixed_size_rule_gives_the_one_output_shape():
    t = task([(grid(2, 3), grid(1, 1)), (grid(4, 4), grid(1, 1))], grid(5, 2))
    assert implied_shape(t, 0) == ((1, 1), "fixed")


def test_ratio_rule_scales_the_test_input():
    t = task([(grid(2, 3), grid(4, 9)), (grid(1, 1), grid(2, 3))], grid(3, 2))
    assert implied_shape(t, 0) == ((6, 6), "ratio")
    # a ratio that does not land on whole cells for this input: no size rule
    t = task([(grid(2, 2), grid(1, 1)), (grid(4, 4), grid(2, 2))], grid(3, 3))
    assert implied_shape(t, 0) == (None, "")


def test_rules_that_disagree_leave_the_size_open_and_agreeing_rules_are_named():
    # every input 3x3 and every output 3x3: "same" says 5x5 for a 5x5 test input, "fixed" says 3x3
    t = task([(grid(3, 3), grid(3, 3)), (grid(3, 3), grid(3, 3))], grid(5, 5))
    assert implied_shape(t, 0) == (None, "")
    t = task([(grid(3, 3), grid(3, 3)), (grid(3, 3), grid(3, 3))], grid(3, 3))
    assert implied_shape(t, 0) == ((3, 3), "same+fixed")


def test_no_rule_from_one_demonstration_or_mixed_sizes():
    assert implied_shape(task([(grid(2, 2), grid(2, 2))], grid(3, 3)), 0) == (None, "")
    assert allowed_colours(task([(grid(2, 2), grid(2, 2))], grid(3, 3)), 0) is None
    t = task([(grid(2, 2), grid(1, 3)), (grid(3, 3), grid(2, 2))], grid(3, 3))
    assert implied_shape(t, 0) == (None, "")


def test_palette_is_the_test_inputs_colours_plus_those_demonstrations_introduced():
    t = task([([[1, 2]], [[1, 7]]), ([[3, 3]], [[3, 3]])], [[4, 5]])
    assert allowed_colours(t, 0) == frozenset({4, 5, 7})  # 1, 2, 3 appear only in demonstration inputs


def test_broken_names_each_invariant():
    inv = Invariants(shape=(1, 2), shape_rule="same", colours=frozenset({4, 5}))
    assert inv.broken([[4, 5]]) == ()
    assert inv.broken([[4], [5]]) == ("size",)
    assert inv.broken([[4, 9]]) == ("palette",)
    assert inv.broken([[9]]) == ("size", "palette")
    assert Invariants().broken([[9]]) == ()  # no rule: nothing is broken


@pytest.mark.parametrize("source", ["arc-agi-1/evaluation", "arc-agi-1/training"])
def test_known_answers_almost_never_break_an_invariant(source):
    """The rule is answer-blind; on the public sets the true answers keep it (1 exception in ARC-AGI-1 training)."""
    tasks = load_tasks(source)
    broken = [
        (t.id, i) for t in tasks.tasks.values() for i, p in enumerate(t.test) if task_invariants(t, i).broken(p.output)
    ]
    total = sum(len(t.test) for t in tasks.tasks.values())
    assert total > 400 and len(broken) <= 1, broken


# ---- voting


def _pred(grid_, q=0.0):
    return Prediction("t", 0, "t|||t1|||0123456789", grid_, q, {})


def _voting_task():
    # same-size task over colours {1, 2}; the demonstrations introduce colour 3
    t = Task("t", [Pair([[1, 2]], [[3, 2]]), Pair([[2, 2]], [[3, 3]])], [Pair([[1, 1]], [[3, 1]])])
    return TaskSet({"t": t}, source="hand-made")


def test_a_candidate_breaking_an_invariant_ranks_below_every_candidate_keeping_them():
    wrong_size, off_palette, keeps = [[3, 1, 1]], [[9, 1]], [[3, 1]]
    preds = [_pred(wrong_size)] * 3 + [_pred(off_palette)] * 2 + [_pred(keeps)]
    plain = vote(preds, _voting_task(), VoteConfig())["t"][0]
    assert [c.grid for c in plain] == [wrong_size, off_palette, keeps]  # votes alone
    ranked = vote(preds, _voting_task(), VoteConfig(invariants=True))["t"][0]
    assert [c.grid for c in ranked] == [keeps, wrong_size, off_palette]  # then votes among the breakers
    assert [c.broken for c in ranked] == [(), ("size",), ("palette",)]
    assert ranked[1].to_json()["broken"] == ["size"]


def test_invariants_apply_under_every_strategy():
    preds = [_pred([[3, 1, 1]], 5.0)] * 2 + [_pred([[3, 1]], -5.0)]
    for strategy in ("reference", "plurality", "confidence", "filtered"):
        ranked = vote(preds, _voting_task(), VoteConfig(strategy=strategy, invariants=True))["t"][0]
        assert ranked[0].grid == [[3, 1]], strategy


def test_voting_config_key_and_revote(tmp_path, capsys):
    from arc_kit.cli.main import main

    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump({"strategy": "reference", "invariants": True}))
    assert load_vote_config(str(path)).invariants is True
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    t = {"train": [{"input": [[1, 2]], "output": [[3, 2]]}, {"input": [[2, 2]], "output": [[3, 3]]}]}
    t["test"] = [{"input": [[1, 1]], "output": [[3, 1]]}]
    (tasks / "t.json").write_text(json.dumps(t))
    lines = [
        {"task_id": "t", "test_index": 0, "augmentation": "t", "grid": g, "q_halt": 0.0}
        for g in ([[3, 1, 1]], [[3, 1, 1]], [[3, 1, 1]], [[5, 5]], [[5, 5]], [[3, 1]])
    ]
    preds = tmp_path / "predictions.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in lines))
    argv = ["revote", str(preds), "--tasks", str(tasks), "--configs", "reference", str(path), "--json"]
    assert main(argv) == 0
    rows = {r["config"]: r for r in json.loads(capsys.readouterr().out)["configs"]}
    # pass@2: votes alone rank [3,1,1] and [5,5] first; with invariants the answer comes first
    assert rows["reference"]["score_per_output"] == 0.0 and rows["inv"]["score_per_output"] == 1.0
