"""Optimisers as the TRM reference trains: Adam-atan2 (or AdamW), sparse sign-SGD for puzzle rows, LR schedule, EMA."""

import math
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch.optim import Optimizer


class AdamAtan2(Optimizer):
    """Adam with atan2 in place of m / (sqrt(v) + eps), decoupled weight decay; pure PyTorch.

    Same math as the `adam-atan2` CUDA kernel the reference trains with (a = b = 1):
        p <- p * (1 - lr * wd)
        m <- lerp(m, g, 1 - beta1);  v <- lerp(v, g*g, 1 - beta2)
        p <- p - (lr / (1 - beta1^t)) * atan2(m, sqrt(v) / sqrt(1 - beta2^t))
    The update is bounded by lr * pi/2 per element and needs no epsilon.
    """

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1):
        if lr < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamAtan2: invalid lr={lr}, betas={betas} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params, grads, ms, vs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if params:
                self._update(params, grads, ms, vs, steps, group)

    @staticmethod
    def _update(params, grads, ms, vs, steps, group) -> None:
        """The update over a list of tensors with `torch._foreach_*` kernels (one launch per op, not per
        parameter); only atan2 has no foreach form. Step counters stay CPU scalars: reading them needs no
        device synchronisation."""
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)
        torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1.0 - beta2)
        # parameters that missed steps (no gradient) have their own count: one bias correction per count
        by_t: dict[float, list[int]] = {}
        for i, s in enumerate(steps):
            by_t.setdefault(s.item(), []).append(i)
        for t, idx in by_t.items():
            denom = torch._foreach_sqrt([vs[i] for i in idx])
            torch._foreach_div_(denom, math.sqrt(1.0 - beta2**t))
            updates = [torch.atan2(ms[i], d) for i, d in zip(idx, denom, strict=False)]
            torch._foreach_add_([params[i] for i in idx], updates, alpha=-lr / (1.0 - beta1**t))


def build_optimizer(name: str, params, lr: float, betas: tuple[float, float], weight_decay: float) -> Optimizer:
    """`adam_atan2` (reference) or `adamw` (torch's, eps 1e-8, decoupled weight decay)."""
    if name == "adam_atan2":
        return AdamAtan2(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer '{name}' (known: adam_atan2, adamw)")


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sparse_sign_sgd_(
    weights: torch.Tensor, ids: torch.Tensor, grads: torch.Tensor, lr: float, weight_decay: float
) -> None:
    """In place: rows `ids` of `weights` [N, D] take a sign-SGD step with decoupled weight decay.

    ids [B] may repeat (several examples of one puzzle in a batch): their gradients [B, D] are summed
    first, so each row moves once per step. Rows not in `ids` are untouched (no decay either).
    Works at the batch's size with no data-dependent shapes (no `unique`), so on a GPU it never makes the
    host wait: gradients are summed at each id's first example, every example reads its id's sum, and
    the rows of repeated ids, computed identically, are written with the same values.
    """
    first = (ids[:, None] == ids[None, :]).int().argmax(dim=1)  # [B] first example with the same id
    g = torch.zeros_like(grads).index_add_(0, first, grads)[first]  # [B, D] the id's summed gradient
    rows = weights[ids.long()]
    rows.mul_(1.0 - lr * weight_decay).add_(torch.sign(g).to(rows.dtype), alpha=-lr)
    weights[ids.long()] = rows


class SparseRows(Protocol):
    """What SparseEmbeddingSignSGD needs of the embedding (trm.PuzzleEmbedding): the table and the last
    training forward's leaf rows with their ids."""

    weights: torch.Tensor
    local_weights: torch.Tensor | None
    local_ids: torch.Tensor | None


class SparseEmbeddingSignSGD:
    """Sign-SGD for the puzzle-embedding table, as the reference's CastedSparseEmbeddingSignSGD_Distributed.

    `embedding` is the model's PuzzleEmbedding: its table `weights` [N, D] is a buffer; each training
    forward leaves the batch's rows as a leaf `local_weights` [B, D] (requires grad) and their ids in
    `local_ids` [B]. Under data parallel every process gathers all processes' (ids, grads), so every
    copy of the table takes the same update. Stateless; `param_groups` holds lr and weight_decay so the
    schedule sets it like a torch optimiser's.
    """

    def __init__(self, embedding: SparseRows, lr: float = 1e-2, weight_decay: float = 0.1):
        self.embedding = embedding
        self.param_groups: list[dict[str, Any]] = [dict(lr=lr, weight_decay=weight_decay)]
        self.state: dict = {}

    @torch.no_grad()
    def step(self) -> None:
        local, ids = self.embedding.local_weights, self.embedding.local_ids
        if local is None or ids is None or local.grad is None:  # no training forward since the last step
            return
        grad = local.grad
        world = _world_size()
        if world > 1:
            # all_gather (not all_gather_into_tensor) works on gloo (CPU) as well as nccl.
            grads_all = [torch.empty_like(grad) for _ in range(world)]
            ids_all = [torch.empty_like(ids) for _ in range(world)]
            dist.all_gather(grads_all, grad.contiguous())
            dist.all_gather(ids_all, ids.contiguous())
            grad, ids = torch.cat(grads_all), torch.cat(ids_all)
        group = self.param_groups[0]
        sparse_sign_sgd_(self.embedding.weights, ids, grad, group["lr"], group["weight_decay"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        local = self.embedding.local_weights
        if local is not None:
            local.grad = None


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 1.0) -> float:
    """Reference schedule: linear warm-up to base_lr over `warmup_steps`, then cosine down to min_ratio * base_lr.

    `step` counts from 1 for the first update (the reference increments before computing the LR).
    min_ratio 1.0 gives warm-up then constant.
    """
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


class EMA:
    """Exponential moving average of a model's parameters (not buffers: the puzzle table is excluded).

    shadow <- rate * shadow + (1 - rate) * param after every optimizer step, starting from the
    parameters at registration, as the reference EMAHelper.
    """

    def __init__(self, model: torch.nn.Module, rate: float = 0.999):
        self.rate = rate
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}
        self._shadows = list(self.shadow.values())  # in named_parameters() order, for the foreach update

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        params = [p.detach() for p in model.parameters()]
        torch._foreach_mul_(self._shadows, self.rate)
        torch._foreach_add_(self._shadows, params, alpha=1.0 - self.rate)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite `model`'s parameters with the averages (buffers, e.g. the puzzle table, stay)."""
        torch._foreach_copy_([p for p in model.parameters()], self._shadows)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{n}": t for n, t in self.shadow.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for n in self.shadow:
            self.shadow[n].copy_(tensors[f"ema.{n}"])


def optimizer_state_tensors(opt: Optimizer, names: dict[int, str], prefix: str) -> dict[str, torch.Tensor]:
    """Flatten an optimizer's per-parameter state into `{prefix}.{param name}.{key}` tensors (safetensors-ready).

    Hyperparameters are not saved: they come from the config, and the LR from the schedule.
    """
    out = {}
    for p, st in opt.state.items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            out[f"{prefix}.{names[id(p)]}.{k}"] = t.detach().cpu().contiguous()
    return out


def load_optimizer_state_tensors(
    opt: Optimizer, params: dict[str, torch.nn.Parameter], prefix: str, tensors: dict[str, torch.Tensor]
) -> None:
    """Inverse of optimizer_state_tensors: `params` maps the saved names to the live parameters."""
    head = prefix + "."
    for key, t in tensors.items():
        if not key.startswith(head):
            continue
        name, k = key[len(head) :].rsplit(".", 1)
        p = params[name]
        opt.state[p][k] = t.clone() if t.ndim == 0 else t.to(p.device, p.dtype).clone()
