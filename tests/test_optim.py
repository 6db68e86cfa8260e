"""Optimisers, schedule and EMA against hand computations."""

import math

import numpy as np
import pytest
import torch

from arc_kit.model.optim import (
    EMA,
    AdamAtan2,
    SparseEmbeddingSignSGD,
    build_optimizer,
    load_optimizer_state_tensors,
    lr_at,
    optimizer_state_tensors,
    sparse_sign_sgd_,
)


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
        x = x - lr / (1 - b1**t) * np.arctan2(m, np.sqrt(v) / math.sqrt(1 - b2**t))
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
    torch.testing.assert_close(w[[0, 2]], before[[0, 2]])  # rows not in the batch: untouched, no decay


def test_sparse_embedding_optimizer_reads_model_leaf():
    class Emb(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weights", torch.zeros(5, 2))
            self.local_weights = None
            self.local_ids = None

    emb = Emb()
    opt = SparseEmbeddingSignSGD(emb, lr=0.01, weight_decay=0.1)
    opt.step()  # no forward yet: nothing to do
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
    assert torch.all(other.table == 7.0)  # buffers untouched
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
    for pa, pb in zip(a.parameters(), b.parameters(), strict=False):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def _adam_atan2_per_parameter(params, state, lr, betas, wd):
    """The pre-foreach implementation, one parameter at a time: the oracle for the foreach update."""
    beta1, beta2 = betas
    for p in params:
        if p.grad is None:
            continue
        st = state.setdefault(p, {"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
        st["step"] += 1
        t, m, v = st["step"], st["m"], st["v"]
        p.mul_(1.0 - lr * wd)
        m.lerp_(p.grad, 1.0 - beta1)
        v.lerp_(p.grad * p.grad, 1.0 - beta2)
        p.add_(torch.atan2(m, v.sqrt() / math.sqrt(1.0 - beta2**t)), alpha=-lr / (1.0 - beta1**t))


@torch.no_grad()
def test_foreach_adam_atan2_and_ema_equal_the_per_parameter_updates():
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    fast = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    slow = [torch.nn.Parameter(p.detach().clone()) for p in fast]
    opt = AdamAtan2(fast, lr=3e-2, betas=(0.9, 0.95), weight_decay=0.1)
    module = torch.nn.Module()
    for i, p in enumerate(fast):
        module.register_parameter(f"p{i}", p)
    ema = EMA(module, rate=0.8)
    ema_slow = [p.detach().clone() for p in fast]
    state: dict = {}
    for step in range(6):
        for i, (f, s) in enumerate(zip(fast, slow, strict=False)):
            g = torch.randn(f.shape, generator=gen) * 10 ** (i - 2)
            # parameter 2 misses step 1: its own step count (bias correction) falls behind the others
            f.grad = s.grad = None if (i == 2 and step == 1) else g
        opt.step()
        _adam_atan2_per_parameter(slow, state, lr=3e-2, betas=(0.9, 0.95), wd=0.1)
        ema.update(module)
        for e, s in zip(ema_slow, slow, strict=False):
            e.mul_(0.8).add_(s, alpha=0.2)
        for f, s in zip(fast, slow, strict=False):
            torch.testing.assert_close(f, s, rtol=1e-6, atol=1e-7)
        for n, e in zip(ema.shadow, ema_slow, strict=False):
            torch.testing.assert_close(ema.shadow[n], e, rtol=1e-6, atol=1e-7)
    assert [opt.state[p]["step"].item() for p in fast] == [6, 6, 5, 6]
    # copy_to writes the averages into a model's parameters
    ema.copy_to(module)
    for p, e in zip(fast, ema_slow, strict=False):
        torch.testing.assert_close(p, e, rtol=1e-6, atol=1e-7)
