"""Focus: exact-match rates per task, the weights they give, the sampler that follows them, and exact resume."""

import json

import numpy as np
import pytest
import torch
from helpers import tiny_trm_config

from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task
from arc_kit.model.batches import BatchPrefetcher, BatchSampler
from arc_kit.model.dataset import TrainData
from arc_kit.model.focus import DECAY, TaskFocus
from arc_kit.model.train import TrainConfig, Trainer
from arc_kit.model.trm import TRM


def _task(tid, n_train=3, size=3):
    def grid(i):
        return [[(r * size + c + i) % 5 + 1 for c in range(size)] for r in range(size)]

    return Task(tid, [Pair(grid(i), grid(i + 1)) for i in range(n_train)], [Pair(grid(9))])


def _data(n_tasks=4, crops=False):
    tasks = [_task(f"t{i}") for i in range(n_tasks)]
    return TrainData.from_tasks(tasks, 2, seed=0, canvas=4, crops=crops)


def _group_of(data):
    return {p.identifier: g for g, group in enumerate(data.groups) for p in group}


def _draws(sampler, data, batches=300):
    group_of = _group_of(data)
    counts = np.zeros(len(data.groups))
    for _ in range(batches):
        for pid in sampler.next_batch()["puzzle_identifiers"]:
            counts[group_of[int(pid)]] += 1
    return counts


@pytest.mark.parametrize("crops", [False, True])
def test_sampler_draws_a_task_in_proportion_to_its_weight(crops):
    data = _data(crops=crops)
    sampler = BatchSampler(data, 6, seed=0)
    sampler.set_focus(np.array([1.0, 0.25, 1.0, 1.0]))
    counts = _draws(sampler, data)
    others = counts[[0, 2, 3]].mean()
    assert 0.15 < counts[1] / others < 0.35, counts  # about a quarter as often
    assert counts[[0, 2, 3]].min() > 0.8 * others  # the rest equally often


def test_weights_of_one_draw_exactly_the_unweighted_stream():
    data = _data()
    plain, weighted = BatchSampler(data, 6, seed=3), BatchSampler(data, 6, seed=3)
    weighted.set_focus(np.ones(len(data.groups)))
    for _ in range(20):
        a, b = plain.next_batch(), weighted.next_batch()
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_prefetcher_redraws_the_batch_built_ahead_with_new_weights():
    data = _data()
    ref = BatchSampler(data, 6, seed=1)
    ref.next_batch()
    ref.set_focus(np.array([0.1, 1.0, 1.0, 1.0]))
    expected = ref.next_batch()
    pre = BatchPrefetcher(BatchSampler(data, 6, seed=1), 0, 6)
    pre.next()  # builds the second batch ahead with the old (no) weights
    pre.set_focus(np.array([0.1, 1.0, 1.0, 1.0]))
    got = pre.next()
    assert all(torch.equal(got[k], torch.from_numpy(expected[k])) for k in expected)
    assert torch.equal(pre.state_tensors()["sampler.focus"], torch.tensor([0.1, 1.0, 1.0, 1.0], dtype=torch.float64))


def test_task_focus_rates_decay_and_keep_undrawn_tasks():
    data = _data(n_tasks=3)
    focus = TaskFocus(data, torch.device("cpu"), floor=0.2)
    row = {g: data.groups[g][0].identifier for g in range(3)}
    ids = torch.tensor([row[0], row[0], row[1], row[1], 0])  # row 0 (<blank>) is no task: ignored
    counted = torch.tensor([True, True, True, False, True])
    exact = torch.tensor([True, True, False, True, True])
    focus.record(ids, counted, exact)
    w = focus.update(step=5)
    np.testing.assert_allclose(focus.rate, [1.0, 0.0, 0.0])  # task 1's uncounted exact row does not count
    np.testing.assert_allclose(w, [0.2, 1.0, 1.0])
    assert list(focus.seen) == [True, True, False] and focus.updated_at == 5
    assert focus.due(25, 20) and not focus.due(24, 20)
    focus.record(torch.tensor([row[0], row[2]]), torch.tensor([True, True]), torch.tensor([False, True]))
    focus.update(step=25)
    # a seen task decays towards the new window; a first window is taken as it is; task 1 kept its rate
    np.testing.assert_allclose(focus.rate, [DECAY * 1.0, 0.0, 1.0])
    assert float(focus.window.abs().sum()) == 0.0


def test_focus_floor_is_checked():
    with pytest.raises(ArcKitError, match="focus_floor"):
        TrainConfig(focus=True, focus_floor=0.0)
    with pytest.raises(ArcKitError, match="focus_every"):
        TrainConfig(focus=True, focus_every=0)


def _trainer(data, log=None):
    torch.manual_seed(0)
    arch = dict(seq_len=data.seq_len, num_puzzle_identifiers=len(data.puzzle_names), halt_max_steps=1)
    cfg = TrainConfig(
        global_batch_size=6,
        max_steps=40,
        lr=1e-3,
        lr_warmup_steps=2,
        ema=False,
        progress=False,
        seed=0,
        log_every=1,
        focus=True,
        focus_every=3,
    )
    tr = Trainer(TRM(tiny_trm_config(**arch)), data, cfg, log_path=log)
    # as if the model had reproduced task 0 already: its weight drops below 1 at the first update
    tr.focus.rate[0], tr.focus.seen[0] = 1.0, True
    return tr


def test_trainer_updates_the_weights_and_resumes_exactly(tmp_path):
    data = _data()
    full = _trainer(data, tmp_path / "full.jsonl")
    full.train(max_steps=12)
    assert full.focus.updated_at == 12 and full.sampler.focus is not None
    assert full.sampler.focus[0] < 1.0 and np.all(full.sampler.focus >= 0.25)
    counted = full.focus.seen.sum()
    assert counted == len(data.groups)  # every task was drawn and counted

    first = _trainer(data, tmp_path / "resumed.jsonl")
    first.train(max_steps=7, checkpoint_dir=tmp_path / "ck")
    resumed = _trainer(data, tmp_path / "resumed.jsonl")
    resumed.load_state(tmp_path / "ck")
    resumed.train(max_steps=12)
    np.testing.assert_allclose(resumed.focus.rate, full.focus.rate)
    full_log, resumed_log = ((tmp_path / f).read_text().splitlines() for f in ("full.jsonl", "resumed.jsonl"))
    assert len(resumed_log) == len(full_log) == 12
    losses = [[json.loads(x)["loss"] for x in log] for log in (full_log, resumed_log)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6, atol=1e-7)
