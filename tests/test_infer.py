"""Augmented inference: view planning, batching, decoding back to the original frame, deadlines, caps, 2 processes."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_trm_config

from arc_kit.augment import Augmentation
from arc_kit.data import Pair, Task
from arc_kit.infer import (
    InferOptions,
    View,
    decode_views,
    encode_views,
    make_batches,
    plan_views,
    predict_views,
    run_inference,
    split_views,
)
from arc_kit.predictions import read_predictions


def _task(tid: str, n_test: int = 1, h: int = 2, w: int = 3, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)

    def g():
        return rng.integers(0, 10, size=(h, w)).tolist()

    return Task(tid, [Pair(g(), g())], [Pair(g(), g()) for _ in range(n_test)])


AUGS = [
    Augmentation(),
    Augmentation(1, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9)),
    Augmentation(6),
    Augmentation(7, (0, 9, 8, 7, 6, 5, 4, 3, 2, 1)),
]


def _names(tasks):
    return {tid: [a.name(tid) for a in AUGS] for tid in tasks}


class EchoModel(torch.nn.Module):
    """Predicts its input canvas (the identity task): decoded and inverted, every view must give the test input."""

    class config:
        halt_max_steps = 2

    def __init__(self, delay: float = 0.0, q: float = 0.5):
        super().__init__()
        self.delay, self.q, self.calls, self.starts = delay, q, 0, []

    def predict(self, batch):
        self.calls += 1
        self.starts.append(time.time())
        time.sleep(self.delay)
        x = batch["inputs"].long()
        return {"preds": x, "q_halt": torch.full((x.shape[0],), self.q)}


def test_plan_views_is_rank_major_and_skips_finished_views():
    tasks = {"a": _task("a", n_test=2), "b": _task("b", seed=1)}
    views = plan_views(tasks, _names(tasks), rows={}, canvases={"a": 4, "b": 4}, n_views=3)
    assert [v.rank for v in views] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [(v.task_id, v.test_index) for v in views[:3]] == [("a", 0), ("a", 1), ("b", 0)]
    assert all(v.row == 0 for v in views)  # names without a puzzle row use <blank>
    done = {views[0].key, views[4].key}
    rest = plan_views(tasks, _names(tasks), rows={}, canvases={"a": 4, "b": 4}, n_views=3, done=done)
    assert len(rest) == 7 and not {v.key for v in rest} & done


def test_split_views_deals_whole_tasks_deterministically():
    tasks = {f"t{i}": _task(f"t{i}", n_test=1 + i % 2, seed=i) for i in range(7)}
    views = plan_views(tasks, _names(tasks), {}, {t: 3 + i for i, t in enumerate(tasks)}, 4)
    parts = split_views(views, 2, tasks)
    assert sorted(v.key for p in parts for v in p) == sorted(v.key for v in views)
    owners = [{v.task_id for v in p} for p in parts]
    assert not owners[0] & owners[1] and owners[0] and owners[1]
    assert split_views(views, 2, tasks) == parts


def test_make_batches_never_mixes_canvases():
    views = [View("a", 0, "a", 0, 0, 4)] * 5 + [View("b", 0, "b", 0, 0, 6)] * 3
    batches = make_batches(views, 4)
    assert [len(b) for b in batches] == [4, 1, 3]
    assert all(len({v.canvas for v in b}) == 1 for b in batches)


def test_every_view_decodes_back_to_the_original_frame():
    tasks = {"a": _task("a", n_test=2, h=2, w=5), "b": _task("b", h=4, w=1, seed=3)}
    views = plan_views(tasks, _names(tasks), {}, {"a": 6, "b": 6}, len(AUGS))
    batch = encode_views(views, tasks)
    assert batch["inputs"].shape == (len(views), 36)
    preds = predict_views(EchoModel(), views, tasks, batch_size=3)
    assert len(preds) == len(views)
    for p in preds:
        assert p.grid == tasks[p.task_id].test[p.test_index].input, p.augmentation
        assert p.extra["rank"] == AUGS.index(Augmentation.from_name(p.augmentation))


def test_empty_decodes_are_counted_not_written():
    views = [View("a", 0, "a", 0, 0, 3)]
    tokens = np.zeros((1, 9), dtype=np.uint8)  # all PAD: nothing to crop
    preds, empty = decode_views(views, tokens, np.zeros(1))
    assert preds == [] and empty == views


def test_decode_all_steps_stops_at_each_views_last_step():
    # two views, three supervision steps; view 1 halted after step 2 and its step-1 answer is blank
    views = [View("a", 0, "a", 0, 0, 3), View("a", 0, "a|||t6|||0123456789", 1, 0, 3)]
    grid = np.array([[2, 3, 1], [4, 5, 1], [1, 1, 1]], dtype=np.uint8).reshape(-1)  # 2x2 grid, EOS frame
    tokens = np.stack([np.stack([grid, grid])] * 3)  # [S=3, B=2, L=9]
    tokens[0, 1] = 0
    q = np.array([[0.5, np.nan], [1.0, 2.0], [1.5, 9.0]])  # [S, B]
    preds, empty = decode_views(views, tokens, q, {"model": "m"}, steps_run=np.array([3, 2]))
    assert empty == []
    assert [(p.augmentation, p.extra["step"], p.q_halt) for p in preds] == [
        ("a", 1, 0.5),
        ("a", 2, 1.0),
        ("a", 3, 1.5),
        ("a|||t6|||0123456789", 2, 2.0),
    ]
    assert preds[-1].grid == [[0, 2], [1, 3]] and preds[0].extra == {"model": "m", "step": 1, "rank": 0}
    # final answers only: steps_run names the step; a blank final answer makes the view empty
    preds, empty = decode_views(views, tokens[0], q[0], steps_run=np.array([3, 2]))
    assert [p.extra for p in preds] == [{"step": 3, "rank": 0}] and empty == [views[1]]


def test_run_inference_appends_every_prediction(tmp_path):
    tasks = {f"t{i}": _task(f"t{i}", seed=i) for i in range(3)}
    views = plan_views(tasks, _names(tasks), {}, {t: 4 for t in tasks}, 4)
    out = tmp_path / "p.jsonl"
    stats = run_inference(EchoModel(), views, tasks, out, InferOptions(batch_size=5, show_progress=False))
    preds = read_predictions(out)
    assert stats.written == len(preds) == 12
    assert {(p.task_id, p.test_index, p.augmentation) for p in preds} == {v.key for v in views}


def test_run_inference_stops_before_the_deadline_with_views_evenly_trimmed(tmp_path):
    tasks = {f"t{i}": _task(f"t{i}", seed=i) for i in range(4)}
    views = plan_views(tasks, _names(tasks), {}, {t: 4 for t in tasks}, 4)
    out = tmp_path / "p.jsonl"
    model = EchoModel(delay=0.3)
    deadline = time.time() + 1.0
    stats = run_inference(model, views, tasks, out, InferOptions(batch_size=4, deadline=deadline, show_progress=False))
    assert model.calls == stats.written // 4 and all(t < deadline for t in model.starts)  # no batch began late
    assert 0 < stats.written < 16 and stats.skipped_time == 16 - stats.written
    ranks = [p.extra["rank"] for p in read_predictions(out)]
    assert ranks == sorted(ranks) and ranks.count(0) == 4  # every task got its identity view first


def test_task_time_cap_drops_only_the_slow_task(tmp_path):
    tasks = {"big": _task("big", n_test=4), "small": _task("small", seed=1)}
    names = dict(_names(tasks), small=["small"])  # small: 1 view; big: 4 test inputs x 4 views
    views = plan_views(tasks, names, {}, {"big": 4, "small": 4}, 4)
    # batches of 1 view, 0.05 s each: the cap of 0.12 s stops "big" after 3 views
    stats = run_inference(
        EchoModel(delay=0.05),
        views,
        tasks,
        tmp_path / "p.jsonl",
        InferOptions(batch_size=1, task_time_cap=0.12, show_progress=False),
    )
    preds = read_predictions(tmp_path / "p.jsonl")
    assert stats.capped_tasks == ["big"]
    assert sum(p.task_id == "small" for p in preds) == 1
    assert sum(p.task_id == "big" for p in preds) < 16
    assert stats.skipped_cap == 16 - sum(p.task_id == "big" for p in preds)


# ---------------------------------------------------------------- two processes (accelerate on CPU)


def _tiny_checkpoint(path: Path, tasks: dict) -> None:
    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.model.trm import TRM

    names = ["<blank>"] + [n for tid in tasks for n in _names(tasks)[tid]]
    torch.manual_seed(0)
    model = TRM(tiny_trm_config(seq_len=36, num_puzzle_identifiers=len(names)))
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
        model.lm_head.weight.mul_(20)  # confident, varied outputs: decodes are grids, not empty crops
    save_checkpoint(path, model, names)


def _infer_worker(ckpt: str, out: str, tasks_json: str) -> None:
    import os

    from arc_kit.model.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    acc = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under debug_launcher; never in the parent (forked state)
        from accelerate import Accelerator

        acc = Accelerator(cpu=True)
    tasks = {
        tid: Task(tid, [Pair(**p) for p in t["train"]], [Pair(**p) for p in t["test"]])
        for tid, t in json.loads(tasks_json).items()
    }
    model, info = load_checkpoint(ckpt)
    rows = {n: i for i, n in enumerate(info.puzzle_names)}
    views = plan_views(tasks, _names(tasks), rows, {t: 6 for t in tasks}, len(AUGS))
    run_inference(model, views, tasks, out, InferOptions(batch_size=3, accelerator=acc, show_progress=False))


@pytest.mark.e2e
def test_two_processes_write_the_same_predictions_as_one(tmp_path):
    # In a fresh interpreter with 1 torch thread from the start: forking a process whose OpenMP pool
    # has run (as pytest's has) deadlocks the children.
    import subprocess
    import sys

    script = f"""
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_infer import _task, _tiny_checkpoint, _infer_worker
from accelerate import debug_launcher
tasks = {{f"t{{i}}": _task(f"t{{i}}", n_test=1 + i % 2, h=2 + i % 3, w=3, seed=i) for i in range(5)}}
_tiny_checkpoint({str(tmp_path / "ckpt")!r}, tasks)
tj = json.dumps({{tid: {{"train": [vars(p) for p in t.train], "test": [vars(p) for p in t.test]}}
                 for tid, t in tasks.items()}})
_infer_worker({str(tmp_path / "ckpt")!r}, {str(tmp_path / "one.jsonl")!r}, tj)
debug_launcher(_infer_worker, args=({str(tmp_path / "ckpt")!r}, {str(tmp_path / "two.jsonl")!r}, tj), num_processes=2)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    one = sorted(read_predictions(tmp_path / "one.jsonl"), key=lambda p: (p.task_id, p.test_index, p.augmentation))
    two = sorted(read_predictions(tmp_path / "two.jsonl"), key=lambda p: (p.task_id, p.test_index, p.augmentation))
    assert len(one) > 10
    assert [(p.task_id, p.test_index, p.augmentation, p.grid) for p in one] == [
        (p.task_id, p.test_index, p.augmentation, p.grid) for p in two
    ]
    assert [p.q_halt for p in one] == pytest.approx([p.q_halt for p in two], abs=1e-4)
