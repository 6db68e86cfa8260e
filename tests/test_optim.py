"""Optimisers, schedule and EMA against hand computations."""

import math

import numpy as np
import pytest
import torch

from arc_kit.model.optim import (EMA, AdamAtan2, SparseEmbeddingSignSGD, build_optimizer, load_optimizer_state_tensors,
                           lr_at, optimizer_state_tensors, sparse_sign_sgd_)


def test_adam_atan2_matches_hand_computation():
    p0 = np.array([0.5, -1.0, 2.0, 0.0])
    grads = [np.array([0.1, -0.2, 0.3, 0.0]), np.array([-0.4, 0.1, 0.0, 1e-3])]
    lr, b1, b2, wd = 1e-2, 0.9, 0.95, 0.1
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = AdamAtan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    x, m, v = p0.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor(g)
        opt.step()
        x = x * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr / (1 - b1 ** t) * np.arctan2(m, np.sqrt(v) / math.sqrt(1 - b2 ** t))
        # element 3 has a zero gradient at t=1: it still decays but takes no Adam step (atan2(0, 0) = 0)
        np.testing.assert_allclose(p.detach().numpy(), x, rtol=0, atol=1e-12)
    assert opt.state[p]["step"].item() == 2


def test_adam_atan2_update_is_bounded_without_epsilon():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = AdamAtan2([p], lr=1.0, weight_decay=0.0)
    p.grad = torch.tensor([1e-10, 1e18, -5.0])
    opt.step()
    # first step: m = 0.1 g, sqrt(v / (1 - b2)) = |g|, so each element moves lr / (1 - b1) * atan2(0.1, 1)
    # whatever the gradient's scale; a tiny gradient is not blown up by a missing epsilon
    step = 1.0 / (1 - 0.9) * math.atan2(0.1, 1.0)
    torch.testing.assert_close(p.detach(), torch.tensor([-step, -step, step]))


def test_adamw_selectable_and_unknown_rejected():
    p = torch.nn.Parameter(torch.ones(2))
    assert isinstance(build_optimizer("adamw", [p], 1e-3, (0.9, 0.95), 0.1), torch.optim.AdamW)
    assert isinstance(build_optimizer("adam_atan2", [p], 1e-3, (0.9, 0.95), 0.1), AdamAtan2)
    with pytest.raises(ValueError):
        build_optimizer("sgd", [p], 1e-3, (0.9, 0.95), 0.1)


def test_sparse_sign_sgd_updates_only_batch_rows_once():
    w = torch.arange(12, dtype=torch.float32).view(4, 3).clone()
    ids = torch.tensor([1, 3, 1], dtype=torch.int32)
    grads = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -0.5], [-3.0, 1.0, 0.0]])
    before = w.clone()
    sparse_sign_sgd_(w, ids, grads, lr=0.1, weight_decay=0.5)
    decay = 1 - 0.1 * 0.5
    # row 1: summed gradient [-2, -1, 0] -> sign [-1, -1, 0]; decayed once
    torch.testing.assert_close(w[1], before[1] * decay - 0.1 * torch.tensor([-1.0, -1.0, 0.0]))
    torch.testing.assert_close(w[3], before[3] * decay - 0.1 * torch.tensor([1.0, 1.0, -1.0]))
    torch.testing.assert_close(w[[0, 2]], before[[0, 2]])   # rows not in the batch: untouched, no decay


def test_sparse_embedding_optimizer_reads_model_leaf():
    class Emb(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weights", torch.zeros(5, 2))
            self.local_weights = None
            self.local_ids = None
    emb = Emb()
    opt = SparseEmbeddingSignSGD(emb, lr=0.01, weight_decay=0.1)
    opt.step()   # no forward yet: nothing to do
    emb.local_ids = torch.tensor([2, 4])
    emb.local_weights = emb.weights[emb.local_ids].requires_grad_(True)
    (emb.local_weights * torch.tensor([[1.0, -1.0], [2.0, 0.0]])).sum().backward()
    opt.step()
    torch.testing.assert_close(emb.weights[2], torch.tensor([-0.01, 0.01]))
    torch.testing.assert_close(emb.weights[4], torch.tensor([-0.01, 0.0]))
    assert emb.weights[[0, 1, 3]].abs().sum() == 0
    opt.zero_grad()
    assert emb.local_weights.grad is None


def test_lr_schedule_reference_values():
    assert lr_at(0, 1e-4, 2000, 10000) == 0.0
    assert lr_at(1, 1e-4, 2000, 10000) == pytest.approx(1e-4 / 2000)
    assert lr_at(1000, 1e-4, 2000, 10000) == pytest.approx(5e-5)
    # min_ratio 1.0: constant after warm-up
    assert lr_at(2000, 1e-4, 2000, 10000, 1.0) == pytest.approx(1e-4)
    assert lr_at(9999, 1e-4, 2000, 10000, 1.0) == pytest.approx(1e-4)
    # cosine to min_ratio * lr: halfway is the mean, the end is the floor
    assert lr_at(6000, 1.0, 2000, 10000, 0.1) == pytest.approx(0.55)
    assert lr_at(10000, 1.0, 2000, 10000, 0.1) == pytest.approx(0.1)
    assert lr_at(10000, 1.0, 2000, 10000, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_ema_parameters_only():
    m = torch.nn.Linear(2, 1)
    m.register_buffer("table", torch.zeros(3))
    ema = EMA(m, rate=0.9)
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
        m.table.add_(5.0)
    ema.update(m)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * w0 + 0.1 * (w0 + 1))
    assert "table" not in ema.shadow
    other = torch.nn.Linear(2, 1)
    other.register_buffer("table", torch.full((3,), 7.0))
    ema.copy_to(other)
    torch.testing.assert_close(other.weight, ema.shadow["weight"])
    assert torch.all(other.table == 7.0)   # buffers untouched
    fresh = EMA(m, rate=0.9)
    fresh.load_state_tensors(ema.state_tensors())
    torch.testing.assert_close(fresh.shadow["weight"], ema.shadow["weight"])


@pytest.mark.parametrize("name", ["adam_atan2", "adamw"])
def test_optimizer_state_round_trip(name):
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    oa = build_optimizer(name, list(a.parameters()), 1e-2, (0.9, 0.95), 0.1)
    ob = build_optimizer(name, list(b.parameters()), 1e-2, (0.9, 0.95), 0.1)
    x = torch.randn(4, 3)
    for _ in range(2):
        a(x).square().sum().backward()
        oa.step()
        oa.zero_grad()
    names = {id(p): n for n, p in a.named_parameters()}
    tensors = optimizer_state_tensors(oa, names, "optim.net")
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    b.load_state_dict(a.state_dict())
    load_optimizer_state_tensors(ob, dict(b.named_parameters()), "optim.net", tensors)
    for m, o in ((a, oa), (b, ob)):
        m(x).square().sum().backward()
        o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
