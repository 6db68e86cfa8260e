"""Augmented inference: every test input under M views, batched across tasks, decoded back to the original frame."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from arc_kit.augment import Augmentation, split_name
from arc_kit.base.progress import progress
from arc_kit.crops import bucket_length, crop_board, crop_positions, encode_crop, oriented
from arc_kit.data import Task
from arc_kit.encoding import IGNORE_LABEL_ID, crop_tokens, encode_grid
from arc_kit.predictions import Prediction, PredictionWriter, parse_prediction, record_empty_views

if TYPE_CHECKING:
    from arc_kit.predictions import Prediction


@dataclass(frozen=True)
class View:
    """One model call's worth of work: test input `test_index` of `task_id` under augmentation `name`."""

    task_id: str
    test_index: int
    name: str  # full augmentation name: "TASK|||t1|||0123456789" or plain "TASK"
    rank: int  # position of this augmentation in the task's view list (0 = identity)
    row: int  # puzzle-embedding row the model uses for this augmented puzzle (0 = <blank>)
    canvas: int  # canvas side the input is encoded on
    crop: tuple[int, int] | None = None  # crop-mode models: (H, W) of this view's crop (arc_kit.crops), oriented

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.task_id, self.test_index, self.name)

    @property
    def length(self) -> int:
        """Tokens of this view's sequence: its crop's bucket length, or the canvas."""
        return bucket_length(self.crop[0] * self.crop[1]) if self.crop else self.canvas * self.canvas


@dataclass
class InferStats:
    planned: int = 0  # views this call was asked to run (finished ones excluded)
    written: int = 0  # predictions written (main process: all processes together)
    empty: int = 0  # views whose output decoded to no grid (nothing written)
    skipped_cap: int = 0  # views dropped by the per-task time cap
    skipped_time: int = 0  # views not run because the deadline came first
    seconds: float = 0.0
    seq_per_s: float = 0.0
    steps: int = 0  # supervision steps run, summed over views (this process; early halting lowers it)
    capped_tasks: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.written} predictions written in {self.seconds:.1f}s ({self.seq_per_s:.1f} views/s)"
        if self.empty:
            s += f", {self.empty} decoded empty"
        if self.skipped_cap:
            s += f", {self.skipped_cap} dropped by the per-task cap ({len(self.capped_tasks)} tasks)"
        if self.skipped_time:
            s += f", {self.skipped_time} not run (deadline)"
        return s


def plan_views(
    tasks: dict[str, Task],
    names: dict[str, list[str]],
    rows: dict[str, int],
    canvases: dict[str, int],
    n_views: int,
    done: set | None = None,
    crops: dict[str, tuple[int, int]] | None = None,
) -> list[View]:
    """Views to run, rank-major: every test input's view 0, then every view 1, ...

    Rank-major order means that a run cut short by its deadline has the same number of views for
    every task (the augmentation count is trimmed evenly) instead of all views for some tasks and none
    for others. `names[task]` lists the task's augmentation names, identity first; a name without a
    row in `rows` uses row 0 (the reference's <blank> puzzle). `done` holds keys already predicted.
    `crops` (crop-mode models): each task's crop in its own frame (crops.task_crop); a view gets it oriented
    for its augmentation.
    """
    done = done or set()
    per_rank: list[list[View]] = []
    for tid, task in tasks.items():
        for r, name in enumerate(names.get(tid, [tid])[:n_views]):
            while len(per_rank) <= r:
                per_rank.append([])
            for i in range(len(task.test)):
                crop = oriented(crops[tid], split_name(name)[1].k) if crops else None
                v = View(tid, i, name, r, rows.get(name, 0), canvases[tid], crop)
                if v.key not in done:
                    per_rank[r].append(v)
    return [v for views in per_rank for v in views]


def split_views(views: list[View], num_processes: int, tasks: dict[str, Task]) -> list[list[View]]:
    """Deal whole tasks to processes, balancing estimated cost (views x canvas cells); deterministic."""
    cost: dict[str, int] = {}
    for v in views:
        cost[v.task_id] = cost.get(v.task_id, 0) + v.length
    load = [0] * num_processes
    owner = {}
    for tid in sorted(cost, key=lambda t: (-cost[t], t)):
        p = min(range(num_processes), key=lambda i: (load[i], i))
        owner[tid] = p
        load[p] += cost[tid]
    out: list[list[View]] = [[] for _ in range(num_processes)]
    for v in views:
        out[owner[v.task_id]].append(v)
    return out


def make_batches(views: list[View], batch_size: int) -> list[list[View]]:
    """Consecutive chunks of at most `batch_size` views sharing one canvas (order kept). Crop views are first
    grouped by sequence length within each view rank (a stable sort), so a model call never mixes lengths and a
    run cut short still has the same views for every task."""
    if any(v.crop for v in views):
        views = sorted(views, key=lambda v: (v.rank, v.length))
    batches: list[list[View]] = []
    cur: list[View] = []
    for v in views:
        if cur and (len(cur) >= batch_size or v.length != cur[0].length or v.canvas != cur[0].canvas):
            batches.append(cur)
            cur = []
        cur.append(v)
    if cur:
        batches.append(cur)
    return batches


def encode_views(views: list[View], tasks: dict[str, Task]) -> dict[str, np.ndarray]:
    """Batch arrays: inputs [B, canvas^2] int32 (augmented test input at the top-left), puzzle_identifiers [B].
    Crop views: inputs [B, length] on each view's crop (right-padded) with coordinate positions [B, length]."""
    if views[0].crop:
        return _encode_crop_views(views, tasks)
    c = views[0].canvas
    inputs = np.zeros((len(views), c * c), dtype=np.int32)
    for b, v in enumerate(views):
        aug = split_name(v.name)[1]
        inputs[b] = encode_grid(
            aug.apply_array(np.asarray(tasks[v.task_id].test[v.test_index].input, dtype=np.uint8)), c
        )
    ids = np.array([v.row for v in views], dtype=np.int32)
    return {"inputs": inputs, "labels": np.full_like(inputs, IGNORE_LABEL_ID), "puzzle_identifiers": ids}


def _encode_crop_views(views: list[View], tasks: dict[str, Task]) -> dict[str, np.ndarray]:
    n = views[0].length
    inputs = np.zeros((len(views), n), dtype=np.int32)
    crops = np.zeros((len(views), 2), dtype=np.int64)
    for b, v in enumerate(views):
        assert v.crop is not None and v.length == n  # make_batches never mixes lengths
        aug = split_name(v.name)[1]
        grid = aug.apply_array(np.asarray(tasks[v.task_id].test[v.test_index].input, dtype=np.uint8))
        inputs[b] = encode_crop(grid, v.crop, n)
        crops[b] = v.crop
    return {
        "inputs": inputs,
        "labels": np.full_like(inputs, IGNORE_LABEL_ID),
        "puzzle_identifiers": np.array([v.row for v in views], dtype=np.int32),
        "positions": crop_positions(crops, np.zeros_like(crops), n),  # inference: the crop at (0, 0)
    }


def run_model(
    model, batch: dict[str, np.ndarray], device, autocast=None, early_halt: bool = False, all_steps: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Evaluation-mode TRM on one batch: every sequence runs up to halt_max_steps supervision steps.

    Returns predicted tokens [B, L] (argmax of the last step's logits), q_halt logits [B] as float64 and the
    steps each sequence ran [B] (None for a module without `predict`). `early_halt` stops each sequence at its
    first q_halt > 0; `all_steps` returns every step's answer ([S, B, L] and [S, B]). `autocast` (e.g.
    torch.bfloat16) runs the forward under CUDA autocast, as training did.
    """
    import contextlib

    import torch

    tb = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    ctx = torch.autocast("cuda", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        if hasattr(model, "predict"):
            kw = {"early_halt": True} if early_halt else {}
            if all_steps:
                kw["return_all_steps"] = True
            out = model.predict(tb, **kw)
            tokens, q = (out["all_preds"], out["all_q_halt"]) if all_steps else (out["preds"], out["q_halt"])
            steps = out["steps_run"].cpu().numpy() if "steps_run" in out else None
            return (tokens.to(torch.uint8).cpu().numpy(), q.float().cpu().numpy().astype(np.float64), steps)
        carry = model.initial_carry(tb)  # any module with the reference ACT interface
        outputs = None
        for _ in range(int(model.config.halt_max_steps)):
            carry, outputs = model(carry, tb)
            if bool(carry.halted.all()):
                break
        if outputs is None:  # the loop never ran
            raise ValueError(f"halt_max_steps must be at least 1, got {model.config.halt_max_steps}")
        tokens = outputs["logits"].argmax(-1).to(torch.uint8).cpu().numpy()
        return tokens, outputs["q_halt_logits"].float().cpu().numpy().astype(np.float64), None


def decode_views(
    views: list[View], tokens: np.ndarray, q: np.ndarray, extra: dict | None = None, steps_run: np.ndarray | None = None
) -> tuple[list, list[View]]:
    """(Predictions, views decoded empty) of one batch: crop by the reference rule, map back to the original frame.

    tokens [B, L] and q_halt logits [B]: each view's final answer; or [S, B, L] and [S, B]: one answer per
    supervision step, each prediction's extra["step"] saying which (1-based). `steps_run` [B] (steps each
    sequence ran; early halt): a final answer's extra["step"], and with all steps the last step kept (later
    steps repeat the answer). A view is "empty" when its final answer crops to no grid (nothing written).
    """
    all_steps = tokens.ndim == 3
    per_step = [(s + 1, tokens[s], q[s]) for s in range(tokens.shape[0])] if all_steps else [(None, tokens, q)]
    preds, empty = [], []
    for b, v in enumerate(views):
        aug: Augmentation = split_name(v.name)[1]
        last = int(steps_run[b]) if steps_run is not None else (len(per_step) if all_steps else None)
        for step, tok, q_s in per_step:
            if step is not None and last is not None and step > last:
                break  # early-halted: later steps repeat the answer
            grid = crop_tokens(crop_board(tok[b], v.crop), 30) if v.crop else crop_tokens(tok[b], v.canvas)
            if grid.size == 0:
                if step is None or step == last:  # the view's final answer
                    empty.append(v)
                continue
            x = dict(extra or {})
            final = step or last
            if final is not None:
                x["step"] = int(final)
            x["rank"] = v.rank
            q_b = float(q_s[b]) if np.isfinite(q_s[b]) else 0.0
            preds.append(Prediction(v.task_id, v.test_index, v.name, aug.invert(grid), q_b, x))
    return preds, empty


def predict_views(
    model, views: list[View], tasks: dict[str, Task], batch_size: int, device="cpu", autocast=None
) -> list:
    """All predictions for `views` in memory (no file, no deadline): for tests and small jobs."""
    out = []
    for batch in make_batches(views, batch_size):
        tokens, q, _ = run_model(model, encode_views(batch, tasks), device, autocast)
        out.extend(decode_views(batch, tokens, q)[0])
    return out


def _quiet(message: str) -> None:
    pass


@dataclass
class InferOptions:
    """How run_inference runs: batching, device, deadline and caps, data parallelism, logging and extras."""

    batch_size: int = 256
    device: Any = "cpu"  # a torch.device or its name
    autocast: Any = None  # torch dtype to autocast to (None: the model's own)
    deadline: float | None = None  # epoch seconds: no batch starts that would likely end after it
    task_time_cap: float = 0.0  # seconds of batch time per task (0: none); beyond it the task's views are dropped
    accelerator: Any = None  # accelerate.Accelerator: data parallel over its processes
    show_progress: bool = True
    extra: dict | None = None  # fields added to every prediction line
    log: Callable[[str], None] = _quiet
    fault: Callable[[str], None] = _quiet  # fault injection hook (tests), called once per batch
    empty_path: str | Path | None = None  # keys of views whose answer decoded to no grid are appended here
    early_halt: bool = False  # see run_model
    all_steps: bool = False  # see run_model
    annotate: "Callable[[Prediction], None] | None" = None  # may add fields to each prediction before it is written
    progress_desc: str = "inference"


def run_inference(
    model, views: list[View], tasks: dict[str, Task], out_path: str | Path | None, options: InferOptions | None = None
) -> InferStats:
    """Run `views` and append their predictions to `out_path` batch by batch (crash-safe).

    Data parallel when `accelerator` has several processes: whole tasks are dealt to processes, every
    process runs its own batches, and after each round the main process gathers everyone's predictions
    and alone writes them. All processes take the same number of rounds and stop together (deadline).
    `deadline` (epoch seconds): no batch starts that would likely end after it. `task_time_cap`
    (seconds, 0 = none): a task's share of batch time beyond it drops that task's remaining views.
    `empty_path`: the keys of views whose answer decoded to no grid are appended there (a resume skips them).
    `early_halt` / `all_steps`: see run_model; `annotate` may add fields to each prediction before it is written.
    This one loop serves `arc-kit run` (deadline, data parallel) and `arc-kit predict` (published checkpoints).
    """
    o = options or InferOptions()
    batch_size, device, autocast, deadline = o.batch_size, o.device, o.autocast, o.deadline
    task_time_cap = o.task_time_cap
    accelerator, extra, log, fault, empty_path = o.accelerator, o.extra, o.log, o.fault, o.empty_path
    early_halt, all_steps, annotate = o.early_halt, o.all_steps, o.annotate
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    is_main = rank == 0
    all_batches = [make_batches(p, batch_size) for p in (split_views(views, world, tasks) if world > 1 else [views])]
    n_rounds = max((len(b) for b in all_batches), default=0)
    batches = all_batches[rank]
    stats = InferStats(planned=len(views))
    spent: dict[str, float] = {}
    capped: set[str] = set()
    writer = PredictionWriter(out_path) if (is_main and out_path is not None) else None
    bar = progress(len(views), o.progress_desc, o.show_progress and is_main, unit="view")
    t0 = time.time()
    last_batch_s = 0.0
    done_local = 0
    try:
        for r in range(n_rounds):
            batch = batches[r] if r < len(batches) else []
            n_all = len(batch)
            batch = [v for v in batch if v.task_id not in capped]
            n_cut = n_all - len(batch)
            want_stop = deadline is not None and time.time() + 1.2 * last_batch_s > deadline
            preds: list = []
            empty_keys: list = []
            ran_batch = 0
            if batch and not want_stop:
                fault("infer")
                tb = time.time()
                tokens, q, steps_run = run_model(
                    model, encode_views(batch, tasks), device, autocast, early_halt=early_halt, all_steps=all_steps
                )
                preds, empty_views = decode_views(batch, tokens, q, extra, steps_run=steps_run)
                if annotate is not None:
                    for pred in preds:
                        annotate(pred)
                if steps_run is not None:
                    stats.steps += int(steps_run.sum())
                empty_keys = [v.key for v in empty_views]
                last_batch_s = time.time() - tb
                for v in batch:  # charge each task its share of the batch time
                    spent[v.task_id] = spent.get(v.task_id, 0.0) + last_batch_s / len(batch)
                    if task_time_cap > 0 and spent[v.task_id] > task_time_cap and v.task_id not in capped:
                        capped.add(v.task_id)
                        log(
                            f"inference: task {v.task_id} reached its {task_time_cap:.0f}s cap; "
                            "its remaining views are dropped"
                        )
                done_local += len(batch)
                ran_batch = len(batch)
            if world > 1:
                from accelerate.utils import gather_object

                gathered = gather_object([(want_stop, [p.to_json() for p in preds], empty_keys, ran_batch, n_cut)])
                stop = any(g[0] for g in gathered)
                if is_main:
                    preds = [parse_prediction(o, "gathered prediction") for g in gathered for o in g[1]]
                    empty_keys = [tuple(k) for g in gathered for k in g[2]]
                    n_batch = sum(g[3] for g in gathered)
                    n_cut = sum(g[4] for g in gathered)
                else:
                    n_batch = ran_batch
            else:
                stop, n_batch = want_stop, ran_batch
            # What finished is kept even in the round that hits the deadline (other processes may have run
            # their batch while one process decided to stop).
            if writer is not None:
                writer.write(preds)
                if empty_path is not None:
                    record_empty_views(empty_path, empty_keys)
            stats.written += len(preds)
            stats.empty += len(empty_keys)
            stats.skipped_cap += n_cut
            bar.update(n_batch + n_cut)
            if stop:
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    stats.seconds = time.time() - t0
    ran = stats.written + stats.empty if is_main else done_local
    stats.seq_per_s = ran / stats.seconds if stats.seconds > 0 else 0.0
    stats.capped_tasks = sorted(capped)
    stats.skipped_time = max(0, stats.planned - ran - stats.skipped_cap) if is_main else 0
    return stats


def measure_infer_rate(model, canvas: int, batch_size: int, device="cpu", repeats: int = 1, autocast=None) -> float:
    """Views per second of evaluation-mode inference on a blank batch of `batch_size` at `canvas` (all halt steps)."""
    c = canvas
    batch = {
        "inputs": np.full((batch_size, c * c), 2, dtype=np.int32),
        "labels": np.full((batch_size, c * c), IGNORE_LABEL_ID, dtype=np.int32),
        "puzzle_identifiers": np.zeros(batch_size, dtype=np.int32),
    }
    run_model(model, batch, device, autocast)  # warm-up (allocations, kernels)
    t = time.time()
    for _ in range(repeats):
        run_model(model, batch, device, autocast)
    return batch_size * repeats / max(time.time() - t, 1e-6)


def encode_view_output(view: View, grid: np.ndarray) -> np.ndarray | None:
    """Label tokens [L] of an output grid already in the view's frame, laid out exactly as encode_views lays out
    the view's input (consistency scoring reads the view's logits at these cells); None when it does not fit."""
    h, w = grid.shape
    if view.crop is not None:  # crop views: the crop's cells row-major, right-padded to the bucket length
        if h > view.crop[0] or w > view.crop[1]:
            return None
        return encode_crop(grid, view.crop, view.length)
    if h > view.canvas or w > view.canvas:
        return None
    return encode_grid(grid, view.canvas)
