"""The Trainer's checkpoints: exact resume state (weights, optimiser, EMA, data stream, RNG, carry) as named tensors.

Everything a run needs to continue exactly is saved as named tensors and loaded back."""

import copy
from pathlib import Path

import torch

from arc_kit.base.config import to_dict
from arc_kit.base.errors import ArcKitError
from arc_kit.model.batches import BatchPrefetcher
from arc_kit.model.config import TrainConfig
from arc_kit.model.dataset import TrainData
from arc_kit.model.focus import TaskFocus
from arc_kit.model.optim import EMA, SparseEmbeddingSignSGD, load_optimizer_state_tensors, optimizer_state_tensors
from arc_kit.model.trm import TRM, Carry


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


class TrainerState:
    """Save and exact resume for `train.Trainer` (a mixin: it uses the trainer's model, optimisers, EMA,
    batch stream, carry and step count)."""

    # set by Trainer.__init__
    config: TrainConfig
    data: TrainData
    model: TRM
    device: torch.device
    rank: int
    world: int
    is_main: bool
    local_batch: int
    params: dict[str, torch.nn.Parameter]
    optimizers: list[tuple[str, torch.optim.Optimizer | SparseEmbeddingSignSGD, float]]
    ema: EMA | None
    batches: BatchPrefetcher
    carry: Carry | None
    carries: dict[int, Carry]
    step_count: int
    total_steps: int
    focus: TaskFocus | None

    def _check_finite(self, bad: torch.Tensor | None = None) -> None:
        """Raise if the loss became non-finite (Trainer implements it)."""
        raise NotImplementedError

    def ema_model(self) -> TRM:
        """A copy of the model with the EMA parameters (and the live puzzle table), in eval mode."""
        m = copy.deepcopy(self.model)
        if self.ema is not None:
            self.ema.copy_to(m)
        return m.eval()

    def _rank_tensors(self) -> dict[str, torch.Tensor]:
        """State that differs per process: RNG (halting exploration) and its slice of the carried batch."""
        t = {"rng.torch": torch.get_rng_state()}
        if self.focus is not None:  # this process's open window of exact matches
            t.update(self.focus.window_tensors())
        if self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.carries:  # crops: one carried batch per bucket length
            for n, carry in self.carries.items():
                _flatten(carry, f"carries{n}", t)
        elif self.carry is not None:
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
        # the data stream as the next step will see it (a batch built ahead is drawn again on resume)
        t.update(self.batches.state_tensors())
        if self.focus is not None:
            t.update(self.focus.state_tensors())
        t["step"] = torch.tensor(self.step_count, dtype=torch.int64)
        t["total_steps"] = torch.tensor(self.total_steps, dtype=torch.int64)
        t["world_size"] = torch.tensor(self.world, dtype=torch.int64)
        mine = self._rank_tensors()
        if self.world > 1:
            parts: list[dict[str, torch.Tensor]] = [{} for _ in range(self.world)]  # filled by the gather
            torch.distributed.all_gather_object(parts, mine)  # in memory between our own processes
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
        self.batches.load_state_tensors(t)
        self.step_count = int(t["step"])
        mine = f"rank{self.rank}."
        if self.focus is not None:
            self.focus.load_state_tensors(t, t.get(f"{mine}focus.window"))
        if f"{mine}rng.torch" in t:
            torch.set_rng_state(t[f"{mine}rng.torch"])
        if f"{mine}rng.cuda" in t and self.device.type == "cuda":
            torch.cuda.set_rng_state(t[f"{mine}rng.cuda"], self.device)
        carry_keys = [k for k in t if k.startswith(mine + "carry.")]
        self.carry = None  # a different process count restarts the carried batch (fresh examples)
        if carry_keys and int(t.get("world_size", torch.tensor(1))) == self.world:
            # a batch of the saved data's keys and shapes (e.g. coordinate `positions`, any crop length)
            saved = {k.split(".")[3]: t[k] for k in carry_keys if k.split(".")[2] == "current_data"}
            peek = {name: torch.zeros_like(v, device=self.device) for name, v in saved.items()} or self._peek_batch()
            carry = self.model.initial_carry(peek)
            for k in carry_keys:
                carry = _assign(carry, k.split(".")[2:], t[k].to(self.device))
            self.carry = carry
        self.carries = {}
        if int(t.get("world_size", torch.tensor(1))) == self.world:
            for length in sorted({int(k.split(".")[1][7:]) for k in t if k.startswith(mine + "carries")}):
                keys = [k for k in t if k.startswith(f"{mine}carries{length}.")]
                saved = {k.split(".")[3]: t[k] for k in keys if k.split(".")[2] == "current_data"}
                carry = self.model.initial_carry(
                    {name: torch.zeros_like(v, device=self.device) for name, v in saved.items()}
                )
                for k in keys:
                    carry = _assign(carry, k.split(".")[2:], t[k].to(self.device))
                self.carries[length] = carry

    def _peek_batch(self) -> dict[str, torch.Tensor]:
        """A batch of the right shapes without advancing the data stream (to rebuild the carry)."""
        L = self.data.seq_len
        return {
            "inputs": torch.zeros((self.local_batch, L), dtype=torch.int32, device=self.device),
            "labels": torch.zeros((self.local_batch, L), dtype=torch.int32, device=self.device),
            "puzzle_identifiers": torch.zeros((self.local_batch,), dtype=torch.int32, device=self.device),
        }

    def save(self, directory: str | Path, extra_config: dict | None = None) -> None:
        """Write a checkpoint directory (arc_kit.checkpoint format) that `load_state` resumes exactly.

        model.safetensors / puzzle_emb.safetensors hold the EMA weights (what prediction uses) and the live
        puzzle table; optimizer.safetensors holds the optimiser state plus the rest of the training state
        (raw weights `param.*`, data stream `sampler.*`, RNG and carried batch `rank{r}.*`, `step`);
        ema.safetensors the averages; config.yaml gets a `train:` section (+ `extra_config` sections, e.g. data).
        Collective under data parallel (call it on every process); only the main process writes."""
        from arc_kit.model.checkpoint import save_checkpoint

        self._check_finite()  # never save weights a non-finite loss has poisoned
        state = self.state_tensors()
        if not self.is_main:
            return
        ema = {k: v for k, v in state.items() if k.startswith("ema.")}
        rest = {k: v for k, v in state.items() if not k.startswith("ema.")}
        extra = {"train": to_dict(self.config), **(extra_config or {})}
        save_checkpoint(
            directory,
            self.ema_model(),
            self.data.puzzle_names,
            extra_config=extra,
            optimizer_state=rest,
            ema_state=ema or None,
        )

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
            raise ArcKitError(
                f"{Path(directory)}: its puzzle rows differ from this run's training data "
                f"({len(info.puzzle_names)} vs {len(self.data.puzzle_names)} rows)"
            )
        # buffers (puzzle table, H_init/L_init) from the model files; the EMA parameters there are then
        # replaced by the raw ones
        self.model.load_state_dict(load_model_tensors(directory, self.device))
        state.update(info.state("ema") or {})
        self.load_state_tensors(state)
