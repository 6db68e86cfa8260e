"""Training examples: tasks x augmentations -> encoded (inputs, labels, puzzle_identifiers) batches, translated on the canvas."""

from dataclasses import dataclass, field

import numpy as np
import torch

from arc_kit.augment import IDENTITY, Augmentation
from arc_kit.encoding import encode_pair, loss_labels
from arc_kit.errors import ArcKitError
from arc_kit.identifiers import BLANK   # puzzle-embedding row 0, as the reference builder numbers them


@dataclass
class DataConfig:
    # Task sets whose demonstration AND test pairs (with known outputs) are training examples,
    # e.g. arc-agi-1/training. Bundled names or paths, as data.load_tasks takes them.
    sources: list[str] = field(default_factory=list)
    # Task sets whose demonstration pairs only are trained on (the tasks to be solved);
    # `arc-kit train --tasks SOURCE` appends here.
    demo_sources: list[str] = field(default_factory=list)
    num_augmentations: int = 1000   # augmented versions per task besides the identity (reference --num-aug;
                                    # fewer when a task has fewer distinct ones)
    augmentation: str = "reference"  # shipped config in configs/augmentation/ (or a YAML path)
    seed: int = 42                  # seed of the augmentation draws (not of the training run)
    canvas: int = 30                # square canvas side: 30 = reference (900 tokens); smaller for task-sized models
    translate: bool = True          # random translation of each example on the canvas (same offset for input and output)


@dataclass
class Puzzle:
    """One augmented version of a task: its embedding row, and its pairs made on demand.

    The pairs are stored once per task in the original frame (`base`, uint8 arrays shared by all
    versions) and augmented when drawn: a 1000-version pretraining build then costs the memory of
    the tasks, not of a million augmented copies."""
    name: str                                     # "TASK|||t3|||0123456789" or "TASK"
    identifier: int                               # row in the puzzle-embedding table
    base: list[tuple[np.ndarray, np.ndarray]]     # (input, output) pairs in the task's own frame
    aug: Augmentation = IDENTITY

    def __len__(self) -> int:
        return len(self.base)

    def pair(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        inp, out = self.base[j]
        return self.aug.apply_array(inp), self.aug.apply_array(out)

    def shape(self, j: int) -> tuple[int, int]:
        """(rows, cols) the augmented pair needs on the canvas (the larger of input and output)."""
        inp, out = self.base[j]
        h, w = max(inp.shape[0], out.shape[0]), max(inp.shape[1], out.shape[1])
        return (w, h) if self.aug.k in (1, 3, 6, 7) else (h, w)   # rotations by 90/270 and transposes swap

    @property
    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.pair(j) for j in range(len(self.base))]


def build_puzzle_names(names: list[str], existing: list[str] | None = None) -> list[str]:
    """Embedding-row list: row 0 `<blank>`, then `existing` rows unchanged, then new names in order."""
    out = list(existing) if existing else [BLANK]
    if out[0] != BLANK:
        raise ArcKitError(f"puzzle names: row 0 must be '{BLANK}', found '{out[0]}'")
    seen = set(out)
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def _grid_array(grid, canvas: int, task_id: str, where: str) -> np.ndarray:
    a = np.asarray(grid, dtype=np.uint8)
    if a.ndim != 2 or a.shape[0] > canvas or a.shape[1] > canvas:
        raise ArcKitError(f"{where}: task {task_id}: grid of shape {a.shape} does not fit the {canvas}x{canvas} canvas")
    return a


def task_pairs(task, canvas: int, use_test_pairs: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """A task's training pairs as uint8 arrays: demonstrations, plus test pairs with known outputs if asked."""
    pairs = list(task.train) + ([p for p in task.test if p.output is not None] if use_test_pairs else [])
    where = task.source or "tasks"
    return [(_grid_array(p.input, canvas, task.id, where), _grid_array(p.output, canvas, task.id, where)) for p in pairs]


class TrainData:
    """Groups (one per task) of puzzles (augmented versions) of examples (pairs), and batch encoding."""

    def __init__(self, groups: list[list[Puzzle]], puzzle_names: list[str], canvas: int = 30, translate: bool = True):
        self.groups = [g for g in groups if g and any(len(p) for p in g)]
        if not self.groups:
            raise ArcKitError("training data: no task has a demonstration pair to train on")
        self.puzzle_names = puzzle_names
        self.canvas = canvas
        self.translate = translate

    @classmethod
    def from_tasks(cls, tasks, num_augmentations: int | list[int], augment_config=None, seed: int = 42, canvas: int = 30,
                   translate: bool = True, use_test_pairs: bool | list[bool] = False,
                   puzzle_names: list[str] | None = None) -> "TrainData":
        """Build from a list of Task. `num_augmentations` (one count, or one per task) versions besides the identity;
        `use_test_pairs` (one flag, or one per task) also trains on test pairs with known outputs. `puzzle_names` (e.g. a loaded checkpoint's rows) keeps existing rows; new
        augmented puzzles are appended after them."""
        from arc_kit.augment import sample_augmentations
        tasks = list(tasks)
        flags = use_test_pairs if isinstance(use_test_pairs, list) else [use_test_pairs] * len(tasks)
        counts = num_augmentations if isinstance(num_augmentations, list) else [num_augmentations] * len(tasks)
        per_task = []
        for task, flag, count in zip(tasks, flags, counts):
            # Identity first, then up to `count` distinct versions; the draws depend on (seed, task id).
            augs = sample_augmentations(task, count, seed, augment_config)
            per_task.append((task_pairs(task, canvas, flag), [(aug.name(task.id), aug) for aug in augs]))
        names = build_puzzle_names([n for _, versions in per_task for n, _ in versions], puzzle_names)
        row = {n: i for i, n in enumerate(names)}
        groups = [[Puzzle(n, row[n], base, aug) for n, aug in versions] for base, versions in per_task]
        return cls(groups, names, canvas=canvas, translate=translate)

    @property
    def seq_len(self) -> int:
        return self.canvas * self.canvas

    @property
    def num_puzzles(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def mean_puzzle_examples(self) -> float:
        return sum(len(p) for g in self.groups for p in g) / max(1, self.num_puzzles)

    def steps_per_epoch(self, global_batch_size: int) -> float:
        """The reference's epoch: every task once, one random version each."""
        return len(self.groups) * self.mean_puzzle_examples / global_batch_size

    def encode(self, examples: list[tuple[Puzzle, int]], offsets: np.ndarray) -> dict[str, np.ndarray]:
        """Encode (puzzle, pair index) examples at canvas offsets [B, 2] -> inputs/labels [B, L], puzzle_identifiers [B].

        int32 throughout; label PAD positions become IGNORE_LABEL_ID (not trained), EOS stays (trained)."""
        B, L = len(examples), self.seq_len
        inputs = np.zeros((B, L), dtype=np.int32)
        labels = np.zeros((B, L), dtype=np.uint8)
        ids = np.zeros((B,), dtype=np.int32)
        for b, (puzzle, j) in enumerate(examples):
            inp, out = puzzle.pair(j)
            x, y = encode_pair(inp, out, canvas=self.canvas, offset=(int(offsets[b, 0]), int(offsets[b, 1])))
            inputs[b], labels[b], ids[b] = x, y, puzzle.identifier
        return {"inputs": inputs, "labels": loss_labels(labels, np.int32), "puzzle_identifiers": ids}


class BatchSampler:
    """Endless stream of global batches in the reference order, reproducible and resumable.

    Tasks are visited in shuffled order (a new permutation each epoch); for each, one random
    version is drawn and all its examples (random order) go into the batch, cut at the batch
    size. Every data-parallel process draws the same global batch and keeps its own slice.
    All randomness comes from one torch.Generator, so the state is three tensors.
    """

    def __init__(self, data: TrainData, global_batch_size: int, seed: int = 0):
        self.data = data
        self.batch_size = global_batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.zeros(0, dtype=torch.int64)
        self.pos = 0

    def _next_group(self) -> int:
        if self.pos >= len(self.order):
            self.order = torch.randperm(len(self.data.groups), generator=self.generator)
            self.pos = 0
        self.pos += 1
        return int(self.order[self.pos - 1])

    def next_batch(self) -> dict[str, np.ndarray]:
        g = self.generator
        examples: list[tuple[Puzzle, int]] = []
        while len(examples) < self.batch_size:
            group = self.data.groups[self._next_group()]
            puzzle = group[int(torch.randint(len(group), (1,), generator=g))]
            take = min(len(puzzle), self.batch_size - len(examples))
            order = torch.randperm(len(puzzle), generator=g)[:take]
            examples.extend((puzzle, int(j)) for j in order)
        offsets = np.zeros((len(examples), 2), dtype=np.int64)
        if self.data.translate:
            u = torch.rand((len(examples), 2), generator=g, dtype=torch.float64).numpy()
            for b, (puzzle, j) in enumerate(examples):
                room = self.data.canvas - np.array(puzzle.shape(j))
                offsets[b] = np.floor(u[b] * (room + 1)).astype(np.int64)
        return self.data.encode(examples, offsets)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"sampler.generator": self.generator.get_state(), "sampler.order": self.order.clone(),
                "sampler.pos": torch.tensor(self.pos, dtype=torch.int64)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(tensors["sampler.generator"].clone())
        self.order = tensors["sampler.order"].clone()
        self.pos = int(tensors["sampler.pos"])


def load_train_data(config: DataConfig, puzzle_names: list[str] | None = None) -> TrainData:
    """Tasks named in `config` -> TrainData (augmentations drawn with config.seed)."""
    from arc_kit.augment import AugmentConfig
    from arc_kit.config import load_config
    from arc_kit.data import load_tasks
    tasks, flags = [], []
    for source, use_test in [(s, True) for s in config.sources] + [(s, False) for s in config.demo_sources]:
        for task in load_tasks(source).tasks.values():
            tasks.append(task)
            flags.append(use_test)
    if not tasks:
        raise ArcKitError("training data: no tasks (set data.sources or data.demo_sources, or pass --tasks)")
    aug_config = load_config(AugmentConfig, config.augmentation, subdir="augmentation")
    return TrainData.from_tasks(tasks, config.num_augmentations, aug_config, seed=config.seed, canvas=config.canvas,
                                translate=config.translate, use_test_pairs=flags, puzzle_names=puzzle_names)
