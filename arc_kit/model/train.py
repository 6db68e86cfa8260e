"""Trainer: deep supervision as the TRM reference trains (carried batch, one supervision step per call), with resume."""

import contextlib
import copy
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from arc_kit.model.config import TrainConfig
from arc_kit.model.dataset import BatchSampler, TrainData
from arc_kit.errors import ArcKitError
from arc_kit.model.optim import (EMA, SparseEmbeddingSignSGD, build_optimizer, load_optimizer_state_tensors, lr_at,
                    optimizer_state_tensors)


class NonFiniteLoss(ArcKitError):
    """The loss became NaN or infinite: training diverged (lower the learning rate)."""


def total_steps(config: TrainConfig, data: TrainData) -> int:
    """The reference's step budget: epochs * tasks * mean examples per puzzle / global batch (or max_steps)."""
    if config.max_steps > 0:
        return config.max_steps
    return max(1, int(config.epochs * data.steps_per_epoch(config.global_batch_size)))


def _flatten(obj, prefix: str, out: dict) -> dict:
    """Tensors of a (nested) dataclass / dict, e.g. the model's carry, as {'prefix.a.b': tensor}."""
    if torch.is_tensor(obj):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}", out)
    elif hasattr(obj, "__dataclass_fields__"):
        for k in obj.__dataclass_fields__:
            _flatten(getattr(obj, k), f"{prefix}.{k}", out)
    return out


def _assign(obj, path: list[str], value: torch.Tensor):
    """Inverse of _flatten for one tensor: returns obj with the leaf at `path` replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        obj[head] = _assign(obj[head], rest, value)
    else:
        setattr(obj, head, _assign(getattr(obj, head), rest, value))
    return obj


class Trainer:
    """Owns the optimisers, schedule, EMA, the carried batch and the data stream of one training run.

    `step()` runs one supervision step; `train(until=..., should_stop=...)` loops. With an accelerate
    Accelerator of N processes each process runs its slice of the global batch; gradients are summed
    across processes (the loss is divided by the global batch size, as the reference does).
    """

    def __init__(self, model: torch.nn.Module, data: TrainData, config: TrainConfig, *, accelerator=None,
                 log_path: str | Path | None = None, steps: int | None = None):
        self.config, self.data, self.acc = config, data, accelerator
        self.rank = accelerator.process_index if accelerator else 0
        self.world = accelerator.num_processes if accelerator else 1
        self.is_main = accelerator.is_main_process if accelerator else True
        if config.global_batch_size % self.world:
            raise ArcKitError(f"train config: global_batch_size {config.global_batch_size} is not a multiple "
                              f"of the {self.world} processes")
        self.local_batch = config.global_batch_size // self.world
        from arc_kit.model.device import resolve_device
        self.device = accelerator.device if accelerator is not None else resolve_device(config.device, "train.device")
        self.model = model.to(self.device)
        self.total_steps = steps if steps is not None else total_steps(config, data)
        self.step_count = 0
        self.carry = None
        self.log_path = Path(log_path) if log_path else None
        self._step_seconds: list[float] = []

        # Same seed on every process: identical model init elsewhere, identical global batches here;
        # the exploration draws differ per rank like the reference (seed + rank).
        torch.manual_seed(config.seed + self.rank)
        self.sampler = BatchSampler(data, config.global_batch_size, seed=config.seed)

        emb = getattr(model, "puzzle_emb", None)
        self.params = {n: p for n, p in model.named_parameters()}
        if config.freeze_network:
            for p in self.params.values():
                p.requires_grad_(False)
        self.optimizers: list[tuple[str, torch.optim.Optimizer, float]] = []
        if emb is not None:
            self.optimizers.append(("puzzle_emb", SparseEmbeddingSignSGD(
                emb, lr=0.0, weight_decay=config.puzzle_emb_weight_decay), config.puzzle_emb_lr))
        if not config.freeze_network:
            self.optimizers.append(("net", build_optimizer(
                config.optimizer, list(self.params.values()), lr=0.0, betas=(config.beta1, config.beta2),
                weight_decay=config.weight_decay), config.lr))
        self.ema = EMA(model, config.ema_rate) if config.ema else None

        self.autocast = self._autocast_dtype()

    # ------------------------------------------------------------------ setup helpers

    def _autocast_dtype(self) -> torch.dtype | None:
        p = self.config.precision
        if p not in ("auto", "float32", "bfloat16"):
            raise ArcKitError(f"train config: precision must be auto, float32 or bfloat16, got '{p}'")
        from arc_kit.model.device import bf16_supported
        if self.device.type != "cuda" or p == "float32":
            return None
        if bf16_supported(self.device):
            return torch.bfloat16
        if p == "bfloat16":
            raise ArcKitError("train config: precision bfloat16 needs a GPU that supports it (not T4-class)")
        return None

    def _local_batch(self) -> dict[str, torch.Tensor]:
        full = self.sampler.next_batch()
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        return {k: torch.from_numpy(np.ascontiguousarray(v[lo:hi])).to(self.device) for k, v in full.items()}

    def _all_reduce_grads(self) -> None:
        """Sum gradients over processes in one flat buffer (the reference all-reduces per parameter)."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if self.world == 1 or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].view_as(g))
            i += g.numel()

    def _sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(values)
        return values

    # ------------------------------------------------------------------ training

    def step(self) -> dict:
        """One supervision step on the carried batch; halted rows restart on fresh examples. Returns metrics."""
        from arc_kit.model.loss import compute_loss
        t0 = time.perf_counter()
        self.step_count += 1
        self.model.train()
        batch = self._local_batch()
        if self.carry is None:
            self.carry = self.model.initial_carry(batch)
        ctx = torch.autocast("cuda", dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with ctx:
            carry, outputs = self.model(self.carry, batch)
            # labels of the data each row works on (rows that did not halt keep their old example)
            loss, metrics = compute_loss(outputs, carry.current_data["labels"], carry.halted, carry.steps,
                                         loss_type=self.config.loss_type)
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=self.device)
        if self._sum_over_processes(bad).item() > 0:   # every process raises together (no hung all-reduce)
            self.step_count -= 1
            raise NonFiniteLoss(f"training step {self.step_count + 1}: loss is {loss.item()} "
                                f"(diverged; lower train.lr or check the data)")
        (loss / self.config.global_batch_size).backward()
        self._all_reduce_grads()
        lrs = {}
        for name, opt, base_lr in self.optimizers:
            lr = lr_at(self.step_count, base_lr, self.config.lr_warmup_steps, self.total_steps, self.config.lr_min_ratio)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            lrs[name] = lr
        if self.ema is not None:
            self.ema.update(self.model)
        self.carry = carry
        metrics = self._reduce_metrics(metrics)
        metrics.update({"step": self.step_count, "lr": lrs.get("net", lrs.get("puzzle_emb", 0.0))})
        self._step_seconds.append(time.perf_counter() - t0)
        metrics["step_seconds"] = self._step_seconds[-1]
        return metrics

    @torch.no_grad()
    def _reduce_metrics(self, metrics: dict[str, torch.Tensor]) -> dict:
        """Sum over processes; losses per sequence of the global batch, the rest per halted sequence (as the reference)."""
        keys = sorted(metrics)
        v = self._sum_over_processes(torch.stack([metrics[k].detach().float() for k in keys]).to(self.device))
        v = dict(zip(keys, v.cpu().tolist()))
        count = max(v["count"], 1.0)
        out = {k: x / (self.config.global_batch_size if k.endswith("loss") else count) for k, x in v.items() if k != "count"}
        out["count"] = int(v["count"])
        out["loss"] = out["lm_loss"] + 0.5 * (out["q_halt_loss"] + out.get("q_continue_loss", 0.0))
        return out

    def steps_by(self, until: float) -> int | None:
        """The step count reached by the deadline `until` (time.time() seconds) at the recent step time;
        None before the first step."""
        recent = self._step_seconds[-20:]
        if not recent:
            return None
        return self.step_count + int(max(0.0, until - time.time()) / (sum(recent) / len(recent)))

    def _should_stop(self, until: float | None, should_stop: Callable[[], bool] | None, max_steps: int) -> bool:
        stop = self.step_count >= max_steps
        if until is not None and self._step_seconds:
            stop |= self.steps_by(until) <= self.step_count   # do not start a step that cannot finish
        elif until is not None:
            stop |= time.time() >= until
        if should_stop is not None:
            stop |= bool(should_stop())
        if self.world > 1:   # every process must agree, or the next all-reduce hangs
            flag = self._sum_over_processes(torch.tensor([float(stop)], device=self.device))
            stop = bool(flag.item() > 0)
        return stop

    def train(self, until: float | None = None, should_stop: Callable[[], bool] | None = None,
              max_steps: int | None = None, checkpoint_dir: str | Path | None = None, **save_kwargs) -> dict:
        """Run steps until total steps / `max_steps`, the wall-clock deadline `until` (time.time() seconds),
        or `should_stop()` says so. Saves to `checkpoint_dir` every `checkpoint_every` steps and at the end.
        Returns the last metrics (plus 'stopped': why)."""
        from tqdm import tqdm
        limit = min(self.total_steps, max_steps if max_steps is not None else self.total_steps)
        bar = tqdm(total=limit, initial=self.step_count, file=sys.stderr, dynamic_ncols=True,
                   disable=not (self.config.progress and self.is_main), desc="train")
        last: dict = {}
        try:
            while not self._should_stop(until, should_stop, limit):
                last = self.step()
                if self.step_count % max(1, self.config.log_every) == 0:
                    self.log(last)
                if until is not None:   # time left: the steps that fit by the deadline, not max_steps
                    bar.total = max(self.step_count, min(limit, self.steps_by(until)))
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}", exact=f"{last['exact_accuracy']:.3f}",
                                steps=f"{last['steps']:.2f}", refresh=False)
                if checkpoint_dir and self.config.checkpoint_every and self.step_count % self.config.checkpoint_every == 0:
                    self.save(checkpoint_dir, **save_kwargs)
        finally:
            bar.close()
        if checkpoint_dir:
            self.save(checkpoint_dir, **save_kwargs)
        last["stopped"] = "steps" if self.step_count >= limit else "deadline_or_callback"
        return last

    def log(self, metrics: dict) -> None:
        if self.log_path is None or not self.is_main:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: v for k, v in metrics.items()}) + "\n")

    # ------------------------------------------------------------------ weights, save and resume

    def ema_model(self) -> torch.nn.Module:
        """A copy of the model with the EMA parameters (and the live puzzle table), in eval mode."""
        m = copy.deepcopy(self.model)
        if self.ema is not None:
            self.ema.copy_to(m)
        return m.eval()

    def _rank_tensors(self) -> dict[str, torch.Tensor]:
        """State that differs per process: RNG (halting exploration) and its slice of the carried batch."""
        t = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.carry is not None:
            _flatten(self.carry, "carry", t)
        return {f"rank{self.rank}.{k}": v.detach().cpu().contiguous() for k, v in t.items()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything a resumed run needs besides the checkpoint's model file, as named tensors.
        Collective under data parallel: every process must call it (it gathers the per-rank state)."""
        names = {id(p): n for n, p in self.params.items()}
        t = {f"param.{n}": p.detach() for n, p in self.params.items()}
        for name, opt, _ in self.optimizers:
            if isinstance(opt, torch.optim.Optimizer):
                t.update(optimizer_state_tensors(opt, names, f"optim.{name}"))
        if self.ema is not None:
            t.update(self.ema.state_tensors())
        t.update(self.sampler.state_tensors())
        t["step"] = torch.tensor(self.step_count, dtype=torch.int64)
        t["total_steps"] = torch.tensor(self.total_steps, dtype=torch.int64)
        t["world_size"] = torch.tensor(self.world, dtype=torch.int64)
        mine = self._rank_tensors()
        if self.world > 1:
            parts = [None] * self.world
            torch.distributed.all_gather_object(parts, mine)   # in memory between our own processes
            for part in parts:
                t.update(part)
        else:
            t.update(mine)
        return {k: v.detach().cpu().contiguous() for k, v in t.items()}

    @torch.no_grad()
    def load_state_tensors(self, t: dict[str, torch.Tensor]) -> None:
        for n, p in self.params.items():
            p.copy_(t[f"param.{n}"])
        for name, opt, _ in self.optimizers:
            if isinstance(opt, torch.optim.Optimizer):
                load_optimizer_state_tensors(opt, self.params, f"optim.{name}", t)
        if self.ema is not None:
            self.ema.load_state_tensors(t)
        self.sampler.load_state_tensors(t)
        self.step_count = int(t["step"])
        mine = f"rank{self.rank}."
        if f"{mine}rng.torch" in t:
            torch.set_rng_state(t[f"{mine}rng.torch"])
        if f"{mine}rng.cuda" in t and self.device.type == "cuda":
            torch.cuda.set_rng_state(t[f"{mine}rng.cuda"], self.device)
        carry_keys = [k for k in t if k.startswith(mine + "carry.")]
        self.carry = None   # a different process count restarts the carried batch (fresh examples)
        if carry_keys and int(t.get("world_size", torch.tensor(1))) == self.world:
            carry = self.model.initial_carry(self._peek_batch())
            for k in carry_keys:
                carry = _assign(carry, k.split(".")[2:], t[k].to(self.device))
            self.carry = carry

    def _peek_batch(self) -> dict[str, torch.Tensor]:
        """A batch of the right shapes without advancing the data stream (to rebuild the carry)."""
        L = self.data.seq_len
        return {"inputs": torch.zeros((self.local_batch, L), dtype=torch.int32, device=self.device),
                "labels": torch.zeros((self.local_batch, L), dtype=torch.int32, device=self.device),
                "puzzle_identifiers": torch.zeros((self.local_batch,), dtype=torch.int32, device=self.device)}

    def save(self, directory: str | Path, extra_config: dict | None = None) -> None:
        """Write a checkpoint directory (arc_kit.model.checkpoint format) that `load_state` resumes exactly.

        model.safetensors / puzzle_emb.safetensors hold the EMA weights (what prediction uses) and the live
        puzzle table; optimizer.safetensors holds the optimiser state plus the rest of the training state
        (raw weights `param.*`, data stream `sampler.*`, RNG and carried batch `rank{r}.*`, `step`);
        ema.safetensors the averages; config.yaml gets a `train:` section (+ `extra_config` sections, e.g. data).
        Collective under data parallel (call it on every process); only the main process writes."""
        from arc_kit.model.checkpoint import save_checkpoint
        from arc_kit.config import to_dict
        state = self.state_tensors()
        if not self.is_main:
            return
        ema = {k: v for k, v in state.items() if k.startswith("ema.")}
        rest = {k: v for k, v in state.items() if not k.startswith("ema.")}
        extra = {"train": to_dict(self.config), **(extra_config or {})}
        save_checkpoint(directory, self.ema_model(), self.data.puzzle_names, extra_config=extra,
                        optimizer_state=rest, ema_state=ema or None)

    def load_state(self, directory: str | Path) -> None:
        """Continue the run saved in `directory` by `save`: raw weights, puzzle table, optimiser/EMA state,
        data stream, RNG, carried batch and step. The trainer must have been built with the same model
        architecture, data and config (e.g. model from load_checkpoint(directory) or a fresh TRM)."""
        from arc_kit.model.checkpoint import STATE_FILES, load_model_tensors, read_checkpoint_info
        info = read_checkpoint_info(directory)
        state = info.state("optimizer")
        if state is None or "step" not in state:
            raise ArcKitError(f"{Path(directory) / STATE_FILES['optimizer']}: no training state to resume from")
        if info.puzzle_names != self.data.puzzle_names:
            raise ArcKitError(f"{Path(directory)}: its puzzle rows differ from this run's training data "
                              f"({len(info.puzzle_names)} vs {len(self.data.puzzle_names)} rows)")
        # buffers (puzzle table, H_init/L_init) from the model files; the EMA parameters there are then
        # replaced by the raw ones
        self.model.load_state_dict(load_model_tensors(directory, self.device))
        state.update(info.state("ema") or {})
        self.load_state_tensors(state)


def measure_train_rate(model, canvas: int, batch_size: int, device, autocast, repeats: int = 2) -> float:
    """Sequences per second of one training supervision step (forward + backward, no optimiser update): the
    start-up probe a run plans its training time with."""
    from arc_kit.model.loss import compute_loss
    B, L = batch_size, canvas * canvas
    batch = {"inputs": torch.full((B, L), 2, dtype=torch.int32, device=device),
             "labels": torch.full((B, L), 2, dtype=torch.int32, device=device),
             "puzzle_identifiers": torch.zeros(B, dtype=torch.int32, device=device)}
    model.train()
    ctx = (lambda: torch.autocast("cuda", dtype=autocast)) if autocast is not None else contextlib.nullcontext
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        with ctx():
            carry = model.initial_carry(batch)
            carry, outputs = model(carry, batch)
            loss, _ = compute_loss(outputs, carry.current_data["labels"], carry.halted, carry.steps)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    emb = getattr(model, "puzzle_emb", None)
    if emb is not None:
        emb.local_weights = emb.local_ids = None
    model.eval()
    return B / float(np.median(times[1:]))
