"""Focus: during training, tasks whose examples the model already reproduces are drawn less often.

Under a fixed budget every step spent on a task the model already solves on its augmented demonstrations is a
step not spent on one it does not. The trainer records, for every halted sequence, whether its prediction was
exactly right (`record`, on the device, no host sync); every `focus_every` steps, at a sync point, `update` turns
each task's recent exact-match rate into a sampling weight

    weight = 1 - (1 - floor) * rate        (rate 0: weight 1, drawn as often as now; rate 1: weight `floor`)

and the batch sampler skips a task drawn from its shuffled order with probability 1 - weight (BatchSampler).
The rate is an exponential average over update windows (a task the model stops reproducing comes back), and a
task not drawn in a window keeps its rate. Rates are summed over data-parallel processes before use, so every
process draws the same global batches.
"""

import numpy as np
import torch

from arc_kit.model.dataset import TrainData

DECAY = 0.5  # weight of the previous rate in each window's update (0.5: about the last two windows count)


class TaskFocus:
    """Per-task exact-match rates of the training examples, and the sampling weights they give."""

    def __init__(self, data: TrainData, device: torch.device, floor: float):
        # embedding row -> task (group) index; rows this data does not train (row 0, a checkpoint's others): -1
        n_rows = 1 + max(p.identifier for g in data.groups for p in g)
        group_of_row = torch.full((n_rows,), -1, dtype=torch.int64)
        for i, group in enumerate(data.groups):
            for p in group:
                group_of_row[p.identifier] = i
        self.group_of_row = group_of_row.to(device)
        self.floor = floor
        n = len(data.groups)
        # this process's window: [2, tasks] (sequences counted, sequences exactly right), float on the device
        self.window = torch.zeros((2, n), dtype=torch.float32, device=device)
        self.rate = np.zeros(n, dtype=np.float64)  # exact-match rate per task (exponential average)
        self.seen = np.zeros(n, dtype=bool)  # the task has had a window with a counted sequence
        self.updated_at = 0  # the training step of the last update

    def due(self, step: int, every: int) -> bool:
        return step - self.updated_at >= every

    @torch.no_grad()
    def record(self, puzzle_ids: torch.Tensor, counted: torch.Tensor, exact: torch.Tensor) -> None:
        """One step's halted sequences: puzzle_identifiers [B], counted [B] bool (halted, with labels), exact [B]
        bool (every labelled token right). Stays on the device."""
        ids = puzzle_ids.long().clamp(0, len(self.group_of_row) - 1)
        group = self.group_of_row[ids]
        keep = (group >= 0) & counted
        idx = group.clamp_min(0)
        self.window[0].index_add_(0, idx, keep.float())
        self.window[1].index_add_(0, idx, (keep & exact).float())

    @torch.no_grad()
    def update(self, step: int, reduce=None) -> np.ndarray:
        """Fold the window into the rates at training step `step` (`reduce`: sums a tensor over processes in
        place) and return the sampling weight of every task [tasks] float64 in [floor, 1]. Waits for the device."""
        self.updated_at = step
        window = self.window.clone()
        if reduce is not None:
            window = reduce(window)
        counts, hits = window.cpu().double().numpy()
        self.window.zero_()
        drawn = counts > 0
        fresh = hits[drawn] / counts[drawn]
        self.rate[drawn] = np.where(self.seen[drawn], DECAY * self.rate[drawn] + (1 - DECAY) * fresh, fresh)
        self.seen |= drawn
        return self.weights()

    def weights(self) -> np.ndarray:
        return 1.0 - (1.0 - self.floor) * self.rate

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The rates (all processes share them); each process's open window is in `window_tensors`."""
        return {
            "focus.rate": torch.from_numpy(self.rate.copy()),
            "focus.seen": torch.from_numpy(self.seen.copy()),
            "focus.updated_at": torch.tensor(self.updated_at, dtype=torch.int64),
        }

    def window_tensors(self) -> dict[str, torch.Tensor]:
        return {"focus.window": self.window.detach().cpu().clone()}

    def load_state_tensors(self, t: dict[str, torch.Tensor], window: torch.Tensor | None = None) -> None:
        if "focus.rate" in t and len(t["focus.rate"]) == len(self.rate):
            self.rate = t["focus.rate"].double().numpy().copy()
            self.seen = t["focus.seen"].bool().numpy().copy()
            self.updated_at = int(t["focus.updated_at"])
        if window is not None and window.shape == self.window.shape:
            self.window.copy_(window.to(self.window.device))
