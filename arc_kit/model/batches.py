"""Batches of training examples: the seeded, resumable sampler and the background prefetcher."""

import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from arc_kit.model.dataset import TrainData


class BatchSampler:
    """Endless stream of global batches in the reference order, reproducible and resumable.

    Tasks are visited in shuffled order (a new permutation each epoch); for each, one random
    version is drawn and all its examples (random order) go into the batch, cut at the batch
    size. Every data-parallel process draws the same global batch and keeps its own slice.
    All randomness comes from one torch.Generator, so the state is three tensors.

    With crops, each step first draws the batch's length bucket (weighted by the bucket's share of the
    examples) and fills the batch from that bucket's tasks in the same order, one permutation stream per
    bucket: every row of a batch, on every process, has the same length.
    """

    def __init__(self, data: TrainData, global_batch_size: int, seed: int = 0):
        self.data = data
        self.batch_size = global_batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.zeros(0, dtype=torch.int64)
        self.pos = 0
        self.lengths: list[int] = []  # crops: the bucket lengths in use, ascending
        self.focus: np.ndarray | None = None  # task weights in (0, 1] (None: every task as often)
        if data.crops is not None:
            self.lengths = sorted({int(n) for n in data.group_length})
            self.bucket_groups = {n: np.flatnonzero(data.group_length == n) for n in self.lengths}
            self.examples = np.array([sum(len(p) for p in g) / len(g) for g in data.groups])  # per version, mean
            self._bucket_weights()
            self.orders = {n: torch.zeros(0, dtype=torch.int64) for n in self.lengths}
            self.positions = dict.fromkeys(self.lengths, 0)

    def _bucket_weights(self) -> None:
        """Each bucket's share of the examples drawn (its tasks' examples, times their focus weights)."""
        w = self.examples * (self.focus if self.focus is not None else 1.0)
        self.weights = torch.tensor([w[self.bucket_groups[n]].sum() for n in self.lengths])

    def set_focus(self, weights: np.ndarray | None) -> None:
        """Task weights [tasks] in (0, 1] from the next draw on (None: uniform again)."""
        self.focus = None if weights is None else np.asarray(weights, dtype=np.float64).copy()
        if self.lengths:
            self._bucket_weights()

    def _kept(self, group: int) -> bool:
        """Whether a task drawn from the order is used (always, unless its focus weight is below 1)."""
        if self.focus is None or self.focus[group] >= 1.0:
            return True
        return float(torch.rand((), generator=self.generator, dtype=torch.float64)) < self.focus[group]

    def _next_group(self) -> int:
        while True:
            if self.pos >= len(self.order):
                self.order = torch.randperm(len(self.data.groups), generator=self.generator)
                self.pos = 0
            self.pos += 1
            group = int(self.order[self.pos - 1])
            if self._kept(group):
                return group

    def _next_bucket_group(self, n: int) -> int:
        while True:
            if self.positions[n] >= len(self.orders[n]):
                self.orders[n] = torch.randperm(len(self.bucket_groups[n]), generator=self.generator)
                self.positions[n] = 0
            self.positions[n] += 1
            group = int(self.bucket_groups[n][int(self.orders[n][self.positions[n] - 1])])
            if self._kept(group):
                return group

    def next_batch(self, lo: int = 0, hi: int | None = None) -> dict[str, np.ndarray]:
        """The next global batch's rows [lo, hi) (default: all). Every process draws the whole batch's
        randomness (the stream stays in step) but encodes only its own rows."""
        g, data = self.generator, self.data
        length = None
        if self.lengths:
            length = self.lengths[int(torch.multinomial(self.weights, 1, generator=g))]
        puzzles: list[int] = []
        pairs: list[int] = []
        while len(pairs) < self.batch_size:
            group = self._next_group() if length is None else self._next_bucket_group(length)
            p = int(torch.randint(len(data.groups[group]), (1,), generator=g))
            take = min(len(data.groups[group][p]), self.batch_size - len(pairs))
            order = torch.randperm(len(data.groups[group][p]), generator=g)[:take]
            puzzles.extend([data._group_start[group] + p] * take)
            pairs.extend(order.tolist())
        hi = self.batch_size if hi is None else hi
        puzzles_a, pairs_a = np.array(puzzles[lo:hi], dtype=np.int64), np.array(pairs[lo:hi], dtype=np.int64)
        offsets = np.zeros((len(puzzles_a), 2), dtype=np.int64)
        if data.translate:
            u = torch.rand((self.batch_size, 2), generator=g, dtype=torch.float64).numpy()[lo:hi]
            if data.crops is not None:  # the crop window moves on the 30x30 grid; the grid stays in its corner
                size = data._pz_crop[puzzles_a]
            else:
                rows = data._pz_pairs[puzzles_a] + pairs_a
                size = data._dims[rows].max(axis=1)  # [n, 2] larger of input and output
                k = data._pz_k[puzzles_a]
                size = np.where(np.isin(k, (1, 3, 6, 7))[:, None], size[:, ::-1], size)
            offsets = np.floor(u * (data.canvas - size + 1)).astype(np.int64)
        return data.encode(puzzles_a, pairs_a, offsets, length)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {
            "sampler.generator": self.generator.get_state(),
            "sampler.order": self.order.clone(),
            "sampler.pos": torch.tensor(self.pos, dtype=torch.int64),
        }
        for n in self.lengths:
            t[f"sampler.order{n}"] = self.orders[n].clone()
            t[f"sampler.pos{n}"] = torch.tensor(self.positions[n], dtype=torch.int64)
        if self.focus is not None:
            t["sampler.focus"] = torch.from_numpy(self.focus.copy())
        return t

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(tensors["sampler.generator"].clone())
        self.order = tensors["sampler.order"].clone()
        self.pos = int(tensors["sampler.pos"])
        for n in self.lengths:
            self.orders[n] = tensors[f"sampler.order{n}"].clone()
            self.positions[n] = int(tensors[f"sampler.pos{n}"])
        focus = tensors.get("sampler.focus")
        self.set_focus(focus.numpy() if focus is not None and len(focus) == len(self.data.groups) else None)


class BatchPrefetcher:
    """One process's rows [lo, hi) of the sampler's global batches, each built in a background thread
    while the previous step runs (pinned memory when `pin`, for asynchronous copies to a GPU).

    `state_tensors()` is the sampler's state before the batch built ahead was drawn, so a checkpoint
    resumes on exactly the batch the next step would have taken. `seconds` adds up the thread's time."""

    def __init__(self, sampler: BatchSampler, lo: int, hi: int, pin: bool = False):
        self.sampler, self.lo, self.hi, self.pin = sampler, lo, hi, pin
        self.seconds = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[dict[str, torch.Tensor], Future] | None = None

    def _build(self) -> dict[str, torch.Tensor]:
        t = time.perf_counter()
        batch = {k: torch.from_numpy(v) for k, v in self.sampler.next_batch(self.lo, self.hi).items()}
        if self.pin:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        self.seconds += time.perf_counter() - t
        return batch

    def _submit(self) -> tuple[dict[str, torch.Tensor], Future]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arc-kit-batches")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        self._pending = (self.sampler.state_tensors(), self._pool.submit(self._build))
        return self._pending

    def next(self) -> dict[str, torch.Tensor]:
        """The next batch (waiting for it if the thread is not done), and start building the one after."""
        pending = self._pending if self._pending is not None else self._submit()
        batch = pending[1].result()
        self._submit()
        return batch

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self._pending[0] if self._pending is not None else self.sampler.state_tensors()

    def set_focus(self, weights: np.ndarray | None) -> None:
        """New task weights from the next batch on: the batch built ahead, drawn with the old ones, is dropped
        and drawn again, so the stream (and a resume from a checkpoint saved now) depends only on the step."""
        self.load_state_tensors(self.state_tensors())
        self.sampler.set_focus(weights)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Drop the batch built ahead (waiting for the thread to leave the sampler) and restore the stream."""
        if self._pending is not None:
            self._pending[1].exception()
            self._pending = None
        self.sampler.load_state_tensors(tensors)
