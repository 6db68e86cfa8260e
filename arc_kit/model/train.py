"""Trainer: deep supervision as the TRM reference trains (carried batch, one supervision step per call), with resume."""

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from arc_kit.base.errors import ArcKitError
from arc_kit.base.progress import progress
from arc_kit.model.batches import BatchPrefetcher, BatchSampler
from arc_kit.model.config import TrainConfig
from arc_kit.model.dataset import TrainData
from arc_kit.model.device import bf16_supported, resolve_device
from arc_kit.model.focus import TaskFocus
from arc_kit.model.optim import EMA, SparseEmbeddingSignSGD, build_optimizer, lr_at
from arc_kit.model.train_state import TrainerState
from arc_kit.model.trm import TRM, Carry


class NonFiniteLoss(ArcKitError):
    """The loss became NaN or infinite: training diverged (lower the learning rate)."""


def total_steps(config: TrainConfig, data: TrainData) -> int:
    """The reference's step budget: epochs * tasks * mean examples per puzzle / global batch (or max_steps)."""
    if config.max_steps > 0:
        return config.max_steps
    return max(1, int(config.epochs * data.steps_per_epoch(config.global_batch_size)))


class Trainer(TrainerState):
    """Owns the optimisers, schedule, EMA, the carried batch and the data stream of one training run.

    `step()` runs one supervision step; `train(until=..., should_stop=...)` loops. With an accelerate
    Accelerator of N processes each process runs its slice of the global batch; gradients are summed
    across processes (the loss is divided by the global batch size, as the reference does).
    """

    def __init__(
        self,
        model: TRM,
        data: TrainData,
        config: TrainConfig,
        *,
        accelerator=None,
        log_path: str | Path | None = None,
        steps: int | None = None,
    ):
        self.config, self.data, self.acc = config, data, accelerator
        self.rank = accelerator.process_index if accelerator else 0
        self.world = accelerator.num_processes if accelerator else 1
        self.is_main = accelerator.is_main_process if accelerator else True
        if config.global_batch_size % self.world:
            raise ArcKitError(
                f"train config: global_batch_size {config.global_batch_size} is not a multiple "
                f"of the {self.world} processes"
            )
        self.local_batch = config.global_batch_size // self.world
        self.device = accelerator.device if accelerator is not None else resolve_device(config.device, "train.device")
        self.model = model.to(self.device)
        self.total_steps = steps if steps is not None else total_steps(config, data)
        self.step_count = 0
        self.carry = None
        # crops: one carried batch per bucket length (a batch's rows all share one length; halted rows are
        # replaced from the same bucket the next time it is drawn)
        self.carries: dict[int, Carry] = {}
        self.log_path = Path(log_path) if log_path else None
        self._step_seconds: list[float] = []
        self.compile_seconds: float | None = None  # the first step's time when compiling (train.compile)
        if config.compile not in ("off", "default"):
            raise ArcKitError(f"train config: compile must be off or default, got '{config.compile}'")

        # Same seed on every process: identical model init elsewhere, identical global batches here;
        # the exploration draws differ per rank like the reference (seed + rank).
        torch.manual_seed(config.seed + self.rank)
        self.sampler = BatchSampler(data, config.global_batch_size, seed=config.seed)
        self.focus = TaskFocus(data, self.device, config.focus_floor) if config.focus else None

        emb = getattr(model, "puzzle_emb", None)
        self.params = {n: p for n, p in model.named_parameters()}
        if config.freeze_network:
            for p in self.params.values():
                p.requires_grad_(False)
        self.optimizers = []
        if emb is not None:
            self.optimizers.append(
                (
                    "puzzle_emb",
                    SparseEmbeddingSignSGD(emb, lr=0.0, weight_decay=config.puzzle_emb_weight_decay),
                    config.puzzle_emb_lr,
                )
            )
        if not config.freeze_network:
            self.optimizers.append(
                (
                    "net",
                    build_optimizer(
                        config.optimizer,
                        list(self.params.values()),
                        lr=0.0,
                        betas=(config.beta1, config.beta2),
                        weight_decay=config.weight_decay,
                    ),
                    config.lr,
                )
            )
        self.ema = EMA(model, config.ema_rate) if config.ema else None

        self.autocast = self._autocast_dtype()
        # Divergence is tracked on the device (first non-finite step and its loss) and read at sync points.
        self._bad = torch.zeros(2, device=self.device)
        self._forward_loss = self._make_forward_loss()
        # This process's rows of each batch, built in a background thread while the previous step runs
        self.batches = BatchPrefetcher(
            self.sampler,
            self.rank * self.local_batch,
            (self.rank + 1) * self.local_batch,
            pin=self.device.type == "cuda",
        )
        # Benchmarks set this to {} to get seconds per phase of each step (data, forward, backward,
        # optimizer, sync); it waits for the device between phases, so leave it None when training.
        self.phase_seconds: dict[str, float] | None = None
        self._phase_t = 0.0

    # ------------------------------------------------------------------ setup helpers

    def _autocast_dtype(self) -> torch.dtype | None:
        p = self.config.precision
        if p not in ("auto", "float32", "bfloat16"):
            raise ArcKitError(f"train config: precision must be auto, float32 or bfloat16, got '{p}'")
        if self.device.type != "cuda" or p == "float32":
            return None
        if bf16_supported(self.device):
            return torch.bfloat16
        if p == "bfloat16":
            raise ArcKitError("train config: precision bfloat16 needs a GPU that supports it (not T4-class)")
        return None

    def _make_forward_loss(self) -> Callable:
        """(carry, batch) -> (new carry, loss, metrics): the model's supervision step and the loss, compiled
        with torch.compile when asked. The compiled function shares the model's parameters; the model
        itself stays a plain module (checkpoints, EMA copies and prediction never see the compiled code)."""
        from arc_kit.model.loss import compute_loss

        model, loss_type = self.model, self.config.loss_type

        def forward_loss(carry, batch):
            carry, outputs = model(carry, batch)
            # labels of the data each row works on (rows that did not halt keep their old example)
            rows: dict[str, torch.Tensor] = {}
            loss, metrics = compute_loss(
                outputs, carry.current_data["labels"], carry.halted, carry.steps, loss_type=loss_type, rows=rows
            )
            return carry, loss, metrics, rows

        return torch.compile(forward_loss) if self.config.compile == "default" else forward_loss

    def _local_batch(self) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in self.batches.next().items()}

    def _all_reduce_grads(self) -> None:
        """Sum gradients over processes in one flat buffer (the reference all-reduces per parameter)."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if self.world == 1 or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        i = 0
        for g in grads:
            g.copy_(flat[i : i + g.numel()].view_as(g))
            i += g.numel()

    def _sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(values)
        return values

    # ------------------------------------------------------------------ training

    def step(self) -> dict:
        """One supervision step on the carried batch; halted rows restart on fresh examples. Returns the
        metrics (reading them waits for the device; raises NonFiniteLoss if the loss is not finite)."""
        keys, values = self._step()
        return self._read_metrics(keys, values)

    def _step(self) -> tuple[list[str], torch.Tensor]:
        """One supervision step that never waits for the device: returns the metric names and their
        (process-local) values still on the device."""
        t0 = time.perf_counter()
        self._phase(None)
        self.step_count += 1
        self.model.train()
        batch = self._local_batch()
        crops = self.data.crops is not None
        if crops:
            self.carry = self.carries.get(batch["inputs"].shape[1])
        if self.carry is None:
            self.carry = self.model.initial_carry(batch)
        self._phase("data")
        ctx = torch.autocast("cuda", dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with ctx:
            carry, loss, metrics, rows = self._forward_loss(self.carry, batch)
        if self.focus is not None:
            self.focus.record(carry.current_data["puzzle_identifiers"], rows["counted"], rows["exact"])
        self._phase("forward")
        with torch.no_grad():  # remember the first non-finite step and its loss, without a host sync
            first = ~torch.isfinite(loss.detach()) & (self._bad[0] == 0)
            self._bad = torch.stack(
                [
                    torch.where(first, float(self.step_count), self._bad[0]),
                    torch.where(first, loss.detach().float(), self._bad[1]),
                ]
            )
        (loss / self.config.global_batch_size).backward()
        self._all_reduce_grads()
        self._phase("backward")
        self._lrs = {}
        for name, opt, base_lr in self.optimizers:
            lr = lr_at(
                self.step_count, base_lr, self.config.lr_warmup_steps, self.total_steps, self.config.lr_min_ratio
            )
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            self._lrs[name] = lr
        if self.ema is not None:
            self.ema.update(self.model)
        self.carry = carry
        if crops:
            self.carries[batch["inputs"].shape[1]] = carry
        self._phase("optimizer")
        # host time: on a GPU the host runs at most a few steps ahead of the device, so on average it
        # is the device's step time too. The first compiled step is the compile time: kept apart, so the
        # deadline planning (steps_by) uses the steps' own time.
        if self.config.compile != "off" and self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - t0
        else:
            self._step_seconds.append(time.perf_counter() - t0)
        keys = sorted(metrics)
        return keys, torch.stack([metrics[k].detach().float() for k in keys])

    def _phase(self, name: str | None) -> None:
        """With `phase_seconds` set: wait for the device and add the time since the last mark to `name`."""
        if self.phase_seconds is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if name is not None:
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + now - self._phase_t
        self._phase_t = now

    def _check_finite(self, bad: torch.Tensor | None = None) -> None:
        """Raise NonFiniteLoss (on every process together) if any step so far had a non-finite loss."""
        local = self._bad.cpu() if bad is None else bad
        flag = (
            self._sum_over_processes(torch.tensor([float(local[0] > 0)], device=self.device))
            if self.world > 1
            else local[:1]
        )
        if float(flag[0]) > 0:
            where = (
                f"training step {int(local[0])}: loss is {float(local[1])}"
                if local[0] > 0
                else "training: the loss became non-finite on another process"
            )
            raise NonFiniteLoss(f"{where} (diverged; lower train.lr or check the data)")

    @torch.no_grad()
    def _read_metrics(self, keys: list[str], values: torch.Tensor) -> dict:
        """Metrics of one step to the host (one device sync): summed over processes; losses per sequence of
        the global batch, the rest per halted sequence (as the reference). Raises NonFiniteLoss first."""
        self._phase(None)
        local = torch.cat([values, self._bad])
        reduced = self._sum_over_processes(values.clone())
        host = torch.cat([local, reduced]).cpu()
        self._phase("sync")
        self._check_finite(host[len(keys) : len(keys) + 2])
        v = dict(zip(keys, host[len(keys) + 2 :].tolist(), strict=False))
        count = max(v["count"], 1.0)
        out = {
            k: x / (self.config.global_batch_size if k.endswith("loss") else count)
            for k, x in v.items()
            if k != "count"
        }
        out["count"] = int(v["count"])
        out["loss"] = out["lm_loss"] + 0.5 * (out["q_halt_loss"] + out.get("q_continue_loss", 0.0))
        out.update({"step": self.step_count, "lr": self._lrs.get("net", self._lrs.get("puzzle_emb", 0.0))})
        recent = self._step_seconds[-max(1, self.config.log_every) :]
        out["step_seconds"] = sum(recent) / len(recent) if recent else 0.0
        return out

    @property
    def step_seconds(self) -> list[float]:
        """Host seconds of every step so far in this process (read-only use: thread re-checks, rates)."""
        return self._step_seconds

    def steps_by(self, until: float) -> int | None:
        """The step count reached by the deadline `until` (time.time() seconds) at the recent step time;
        None before the first step."""
        recent = self._step_seconds[-20:]
        if not recent:
            return None
        return self.step_count + int(max(0.0, until - time.time()) / (sum(recent) / len(recent)))

    def _stop_vote(
        self, until: float | None, should_stop: Callable | None, limit: float, on_step: Callable | None
    ) -> bool:
        """This process's view (host only): the step limit is reached, the next step cannot finish by the
        deadline, or `should_stop()` says so. `on_step()` (the per-step hook) runs first."""
        if on_step is not None:
            on_step()
        stop = self.step_count >= limit
        fit = self.steps_by(until) if until is not None else None  # None before the first timed step
        if fit is not None:
            stop |= fit <= self.step_count  # do not start a step that cannot finish
        elif until is not None:
            stop |= time.time() >= until
        if should_stop is not None:
            stop |= bool(should_stop())
        return stop

    def _agree(self, stop: bool, until: float | None) -> tuple[bool, int | None]:
        """Data parallel, at a sync point: stop if any process votes so (or the next all-reduce would hang),
        and the last step every process can finish by the deadline (the slowest process's count)."""
        fit = self.steps_by(until) if until is not None else None
        never = float(2**52)
        votes = torch.tensor([float(stop), -float(fit) if fit is not None else -never], device=self.device)
        torch.distributed.all_reduce(votes, op=torch.distributed.ReduceOp.MAX)
        stop, fit_all = bool(votes[0] > 0), -float(votes[1])
        return stop, (int(fit_all) if fit_all < never else None)

    def train(
        self,
        until: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        max_steps: float | None = None,
        checkpoint_dir: str | Path | None = None,
        on_step: Callable[[], None] | None = None,
        **save_kwargs,
    ) -> dict:
        """Run steps until `max_steps` (default: total_steps, the schedule's length; math.inf: no step limit),
        the wall-clock deadline `until` (time.time() seconds),
        or `should_stop()` says so. `on_step()`, a per-step hook (re-planning, snapshots, fault injection), runs
        where the stop is decided. Saves to `checkpoint_dir` every `checkpoint_every` steps and at the end.
        Returns the last metrics (plus 'stopped': why).

        The host waits for the device only at sync points: every `log_every` steps, at checkpoints, after
        the first step and after the last. There the metrics are read (and logged), a non-finite loss
        since the last sync point raises NonFiniteLoss, and data-parallel processes agree on stopping.
        With one process the deadline and `should_stop()` are checked before every step (host only); with
        several, at sync points, and the deadline's last step is planned there from the measured rate."""
        limit = max_steps if max_steps is not None else self.total_steps
        shown = int(min(limit, self.total_steps))
        bar = progress(shown, "train", self.config.progress and self.is_main, unit="step", initial=self.step_count)
        every = max(1, self.config.log_every)
        last: dict = {}
        pending = None  # (names, device values) of the last step's metrics, not read yet
        plan = None  # data parallel: the last step the deadline allows, agreed at the last sync point
        try:
            stop = self._stop_vote(until, should_stop, limit, on_step)
            if self.world > 1:
                stop, plan = self._agree(stop, until)
            first = True
            while not stop:
                pending = self._step()
                n = self.step_count
                fit = self.steps_by(until) if until is not None else None  # None after only a compiling step
                if fit is not None:  # time left: the steps that fit by the deadline, not max_steps
                    bar.total = max(n, min(limit, fit))
                bar.update(1)
                checkpoint = bool(
                    checkpoint_dir and self.config.checkpoint_every and n % self.config.checkpoint_every == 0
                )
                sync = first or n % every == 0 or checkpoint or n >= limit or (plan is not None and n >= plan)
                first = False
                if sync:
                    last, pending = self._read_metrics(*pending), None
                    if self.focus is not None and self.focus.due(n, self.config.focus_every):
                        # new task weights from the next batch on (every process alike)
                        self.batches.set_focus(self.focus.update(n, self._sum_over_processes))
                    if n % every == 0:
                        self.log(last)
                    bar.set_postfix(
                        loss=f"{last['loss']:.4f}",
                        exact=f"{last['exact_accuracy']:.3f}",
                        steps=f"{last['steps']:.2f}",
                        refresh=False,
                    )
                    if checkpoint and checkpoint_dir:
                        self.save(checkpoint_dir, **save_kwargs)
                if self.world == 1:
                    stop = self._stop_vote(until, should_stop, limit, on_step)
                elif sync:
                    stop, plan = self._agree(self._stop_vote(until, should_stop, limit, on_step), until)
                else:
                    stop = n >= limit or (plan is not None and n >= plan)
            if pending is not None:
                last = self._read_metrics(*pending)
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


def measure_train_rate(model, canvas: int, batch_size: int, device, autocast, repeats: int = 2) -> float:
    """Sequences per second of one training supervision step (forward + backward, no optimiser update): the
    start-up probe a run plans its training time with."""
    from arc_kit.model.loss import compute_loss

    B, L = batch_size, canvas * canvas
    batch = {
        "inputs": torch.full((B, L), 2, dtype=torch.int32, device=device),
        "labels": torch.full((B, L), 2, dtype=torch.int32, device=device),
        "puzzle_identifiers": torch.zeros(B, dtype=torch.int32, device=device),
    }
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
