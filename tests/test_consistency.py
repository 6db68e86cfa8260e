"""Consistency scoring and snapshot weights on hand-made cases with known answers (stub models, fixed logits)."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import write_task_dir

from arc_kit.augment import Augmentation
from arc_kit.base.errors import ArcKitError
from arc_kit.consistency import (
    candidates_by_input,
    read_consistency,
    score_view,
    score_views,
    scored_keys,
)
from arc_kit.data import load_tasks
from arc_kit.encoding import VOCAB_SIZE, encode_grid
from arc_kit.infer import View
from arc_kit.model.loss import log_stablemax
from arc_kit.predictions import Prediction, done_view_keys, parse_prediction
from arc_kit.vote import VoteConfig, add_consistency, candidate_hash, load_vote_config, rank_tally, tally

INPUT = [[1, 2, 0], [3, 1, 0]]  # not symmetric: a wrong frame transform would not match the view's input
OTHER = [[5, 5, 5], [5, 5, 5]]
VIEWS = [Augmentation(), Augmentation(1, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9)), Augmentation(5, tuple(range(9, -1, -1)))]


class EchoModel(torch.nn.Module):
    """Predicts that the output equals the (augmented) input: logits 4 on the input's token, 0 elsewhere."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def predict(self, batch, early_halt=False, return_logits=False):
        self.calls += 1
        inputs = batch["inputs"].long()
        return {"logits": 4.0 * torch.nn.functional.one_hot(inputs, VOCAB_SIZE).float()}


@pytest.fixture
def task_set(tmp_path):
    task = {"train": [{"input": INPUT, "output": INPUT}], "test": [{"input": INPUT, "output": INPUT}]}
    return load_tasks(write_task_dir(tmp_path / "tasks", {"t0": task}))


def views(canvas=4):
    return [View("t0", 0, a.name("t0"), r, 0, canvas) for r, a in enumerate(VIEWS)]


def preds(grid_votes):
    """Predictions: each (grid, n) gives n votes from the first n views (q_halt 0)."""
    return [Prediction("t0", 0, VIEWS[i].name("t0"), g, 0.0) for g, n in grid_votes for i in range(n)]


def test_score_view_counts_cells_and_eos_not_corner_and_reads_the_right_tokens():
    canvas = 3
    v = View("t0", 0, "t0", 0, 0, canvas)
    logp = np.log(np.full((canvas * canvas, VOCAB_SIZE), 1.0 / VOCAB_SIZE))
    small, big, full = [[4]], [[1, 2], [3, 4]], [[1] * 3] * 3
    s = score_view(logp, v, {"s": small, "b": big, "f": full, "x": [[1] * 4] * 4})
    assert s["s"][1] == 3 and s["b"][1] == 8 and s["f"][1] == 9  # 1+1+1, 4+2+2, 9 + no EOS inside the canvas
    assert s["s"][0] == pytest.approx(3 * math.log(1 / VOCAB_SIZE))
    assert s["x"] == (None, 0)  # 4x4 does not fit a 3x3 canvas: -inf
    # certainty on exactly the candidate's labels: log-probability 0; any other token there costs
    sharp = np.full((9, VOCAB_SIZE), -50.0)
    sharp[np.arange(9), encode_grid(big, 3)] = 0.0
    assert score_view(sharp, v, {"b": big})["b"][0] == 0.0
    assert score_view(sharp, v, {"s": small})["s"][0] < -40


def test_likelier_candidate_under_every_view_wins_over_more_votes(tmp_path, task_set):
    tasks = task_set.tasks
    model = EchoModel()
    p = preds([(OTHER, 3), (INPUT, 1)])  # OTHER has more votes; the model finds INPUT likelier in every view
    cands = candidates_by_input(p)
    path = tmp_path / "consistency.jsonl"
    stats = score_views(model, views(), tasks, cands, path, batch_size=2)
    assert stats["views"] == 3 and stats["scores"] == 6 and model.calls == 2  # one pass per view, 2 batches
    records = read_consistency(path)
    for r in records:
        s = r["scores"]
        assert s[candidate_hash(INPUT)][0] > s[candidate_hash(OTHER)][0]  # in every view's own frame
    # mapped into each view's frame (transposed, colours permuted), INPUT matches every view's input cell for cell:
    # the same score and the same 6 + 3 + 2 scored cells under every view
    assert len({tuple(r["scores"][candidate_hash(INPUT)]) for r in records}) == 1
    assert records[0]["scores"][candidate_hash(INPUT)][1] == 11
    t = tally(p, task_set)
    add_consistency(t, records)
    ref = rank_tally(t, task_set, load_vote_config("reference"))["t0"][0]
    assert ref[0].grid == OTHER
    for name in ("consistency", "votes-consistency"):
        cfg = load_vote_config(name, ["consistency_weight=5.0"] if name == "votes-consistency" else [])
        best = rank_tally(t, task_set, cfg)["t0"][0]
        assert best[0].grid == INPUT, name
    # votes first, consistency only breaks ties: the 3-vote grid still wins
    assert rank_tally(t, task_set, load_vote_config("votes-consistency"))["t0"][0][0].grid == OTHER
    # resume: everything stored is skipped, no model call
    again = score_views(model, views(), tasks, cands, path, done=scored_keys(records))
    assert again["views"] == 0 and model.calls == 2 and read_consistency(path) == records


def test_exact_log_stablemax_value(tmp_path, task_set):
    p = preds([(INPUT, 1)])
    score_views(EchoModel(), views()[:1], task_set.tasks, candidates_by_input(p), tmp_path / "c.jsonl")
    (rec,) = read_consistency(tmp_path / "c.jsonl")
    labels = encode_grid(INPUT, 4)
    logits = 4.0 * torch.nn.functional.one_hot(torch.from_numpy(labels).long(), VOCAB_SIZE).double()
    want = log_stablemax(logits)[torch.arange(16), torch.from_numpy(labels).long()][torch.from_numpy(labels) != 0]
    assert rec["scores"][candidate_hash(INPUT)] == [pytest.approx(float(want.sum())), 6 + 2 + 3]


def records(scores_by_view):
    return [
        {"task_id": "t0", "test_index": 0, "augmentation": v, "snapshot": s, "scores": sc}
        for (s, v), sc in scores_by_view.items()
    ]


def test_sum_versus_mean_with_two_candidate_sizes(task_set):
    small, big = [[1]], [[1, 2], [2, 1]]
    p = [Prediction("t0", 0, "t0", small, 0.0), Prediction("t0", 0, "t0", big, 0.0)]
    hs, hb = candidate_hash(small), candidate_hash(big)
    # two views; small: 3 cells each, -1.2 per view; big: 8 cells each, -2.4 per view
    t = tally(p, task_set)
    add_consistency(
        t, records({(1.0, "t0"): {hs: [-1.2, 3], hb: [-2.4, 8]}, (1.0, "v2"): {hs: [-1.2, 3], hb: [-2.4, 8]}})
    )
    by_sum = rank_tally(t, task_set, VoteConfig("consistency", consistency_aggregate="sum"))["t0"][0]
    by_mean = rank_tally(t, task_set, VoteConfig("consistency", consistency_aggregate="mean"))["t0"][0]
    assert [c.grid for c in by_sum] == [small, big] and by_sum[0].consistency == pytest.approx(-2.4)
    assert [c.grid for c in by_mean] == [big, small] and by_mean[0].consistency == pytest.approx(-4.8 / 16)


def test_candidate_not_fitting_a_view_scores_minus_inf_and_incomplete_views_are_left_out(task_set):
    a, b = [[1]], [[2]]
    p = [Prediction("t0", 0, "t0", a, 0.0)] * 3 + [Prediction("t0", 0, "t0", b, 0.0)]
    ha, hb = candidate_hash(a), candidate_hash(b)
    t = tally(p, task_set)
    # view v3 scored only `a` (cut by the deadline): it is not used, so a's -0.1 there changes nothing
    add_consistency(t, records({(1.0, "t0"): {ha: [None, 0], hb: [-5.0, 3]}, (1.0, "v3"): {ha: [-0.1, 3]}}))
    ranked = rank_tally(t, task_set, VoteConfig("consistency"))["t0"][0]
    assert [c.grid for c in ranked] == [b, a] and ranked[1].consistency == -math.inf
    assert ranked[1].to_json()["consistency"] is None
    # no scores at all: the ranking falls back to votes
    t2 = tally(p, task_set)
    assert rank_tally(t2, task_set, VoteConfig("consistency"))["t0"][0][0].grid == a


def test_snapshot_field_weights_and_resume_keys(tmp_path, task_set):
    a, b = [[1]], [[2]]
    p = [Prediction("t0", 0, "t0", a, 0.0, {"snapshot": 0.5}) for _ in range(3)]
    p += [Prediction("t0", 0, "t0", b, 0.0), Prediction("t0", 0, "v1", b, 0.0, {"snapshot": 1.0})]
    t = tally(p, task_set)
    assert rank_tally(t, task_set, VoteConfig())["t0"][0][0].grid == a  # pooled: 3 votes against 2
    down = VoteConfig(snapshot_weights={"0.5": 0.5})
    ranked = rank_tally(t, task_set, down)["t0"][0]
    assert ranked[0].grid == b and ranked[1].votes == pytest.approx(1.5)
    with pytest.raises(ArcKitError, match="snapshot_weights"):
        VoteConfig(snapshot_weights={"1.5": 1.0})
    with pytest.raises(ArcKitError, match="snapshot"):
        parse_prediction({**p[0].to_json(), "snapshot": 0}, "x:1")
    # (snapshot, view) is a prediction's identity: each snapshot resumes its own views
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(x.to_json()) + "\n" for x in p[:1] + p[3:]))
    assert done_view_keys(tmp_path, 0.5) == {("t0", 0, "t0")}
    assert done_view_keys(tmp_path, 1.0) == {("t0", 0, "t0"), ("t0", 0, "v1")}


def test_bad_consistency_lines_are_named(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"task_id": "t0", "test_index": 0, "augmentation": "t0", "scores": {"h": [0.5, 3]}}\n')
    with pytest.raises(ArcKitError, match=r"c.jsonl:1: scores"):
        read_consistency(path)
    path.write_text('{"task_id": "t0", "test_index": 0, "augmentation": "t0", "scores": {}}\n{"task_id"')
    notes: list[str] = []
    assert len(read_consistency(path, notes)) == 1 and "truncated" in notes[0]


def test_plan_reserves_inference_time_for_every_pass():
    from arc_kit.run.plan import plan_run

    kw = dict(
        n_test_inputs=10,
        infer_views=8,
        infer_seq_per_s=10.0,
        train_seq_per_s=100.0,
        batch_size=16,
        max_steps=10_000,
        n_demo_pairs=20,
        ttt_augmentations=16,
        train_share=0.5,
        min_infer_share=0.0,
        startup_seconds=0.0,
    )
    one = plan_run(600, **kw)
    three = plan_run(600, **kw, infer_passes=3.0)  # e.g. three snapshots
    assert one.infer_seconds == pytest.approx(8.0) and three.infer_seconds == pytest.approx(24.0)
    assert three.train_seconds == pytest.approx(one.train_seconds - 16.0)
    # not enough time for every pass: the views are trimmed so that all passes fit
    short = plan_run(100, **kw, infer_passes=8.0)  # needs 64 s, has 50 s: 6 views x 8 passes x 10 inputs fit
    assert short.infer_views == 6 and short.infer_seconds == pytest.approx(50.0)


def test_snapshot_settings_are_checked():
    from arc_kit.run.config import load_run_config

    assert load_run_config(None, ["inference.snapshots=[0.5, 1.0]"]).inference.snapshots == [0.5, 1.0]
    for bad in ("[0.5]", "[0.0, 1.0]", "[1.0, 1.0]", "[1.5, 1.0]"):
        with pytest.raises(ArcKitError, match="inference.snapshots"):
            load_run_config(None, [f"inference.snapshots={bad}"])


def test_snapshot_saver_saves_each_fraction_once(tmp_path):
    import logging

    from arc_kit.run.snapshots import SnapshotSaver, snapshot_dir

    saved = []

    class Saver(SnapshotSaver):
        def _save(self, trainer, fraction):
            saved.append(fraction)
            (snapshot_dir(self.out, fraction)).mkdir(parents=True)
            (snapshot_dir(self.out, fraction) / "model.safetensors").write_bytes(b"")

    log = logging.getLogger("test")
    s = Saver(tmp_path, [0.25, 0.5, 1.0], True, log)
    for step in range(1, 9):
        s(None, step, 8)
    assert saved == [0.25, 0.5] and s.finish() == []
    # a resumed run finds them saved and saves nothing again; a fraction never reached is reported
    again = Saver(tmp_path, [0.25, 0.5, 0.9, 1.0], True, log)
    again(None, 5, 8)
    assert saved == [0.25, 0.5] and again.finish() == [0.9]
